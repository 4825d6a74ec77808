/* schedule.h - build a campaign's campaign-due payload from what an
 * operator gives `sendonce-publisher schedule`.
 *
 * The payload is built with msg_encode() and then parsed back with
 * msg_parse() under the configured rules (channels, max_message_bytes), so
 * a campaign the publisher accepts is one every consumer accepts too.
 */
#ifndef SENDONCE_SCHEDULE_H
#define SENDONCE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"

/* What the operator asked for. Strings are borrowed. */
struct schedule_input {
  const char *campaign_id;
  int64_t scheduled_at_ms;     /* due time, ms since the epoch, UTC */
  const char *channel;         /* must be a configured provider channel */
  const char *content_path;    /* file holding the content JSON object */
  const char *recipients_path; /* JSON array or JSON lines, or NULL */
  const char *recipients_url;  /* JSON-lines URL, or NULL */
  bool has_not_after;
  int64_t not_after_ms;
};

/* What was built. Owned; release with schedule_result_cleanup(). */
struct schedule_result {
  char *payload;       /* canonical campaign-due JSON, NUL-terminated */
  size_t payload_len;  /* bytes, without the terminator */
  size_t n_recipients; /* inline recipients (0 with a URL) */
};

/* schedule_build: read the files, build and check the payload. Returns
 * SO_OK; SO_ERR_INVALID (bad input: err says which file/field and why,
 * with the msg.h reason code); SO_ERR_TOO_LARGE (the payload is over
 * consumer.max_message_bytes; err suggests --recipients-url for an inline
 * list); SO_ERR_NOTFOUND / SO_ERR_IO (a file cannot be read); SO_ERR_NOMEM.
 */
int schedule_build(const struct schedule_input *in, const struct config *cfg,
                   struct schedule_result *out, char *err,
                   size_t errlen) SO_MUST_CHECK;

/* schedule_result_cleanup: free what *r owns and zero it. */
void schedule_result_cleanup(struct schedule_result *r);

/* schedule_parse_time: "now" (the local clock) or an RFC 3339 date-time
 * with offset. Returns SO_OK or SO_ERR_INVALID. */
int schedule_parse_time(const char *text, int64_t *out_ms) SO_MUST_CHECK;

#endif /* SENDONCE_SCHEDULE_H */
