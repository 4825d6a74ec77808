/* recipients.h - stream a campaign's recipients in batches.
 *
 * A campaign lists its recipients inline (already parsed by msg_parse) or
 * as `recipients_url`: a JSON-lines stream, one recipient object per line
 * ({"id":"u-1","address":"a@example.org","vars":{...}}; id defaults to the
 * address), fetched with libcurl from file://, http:// or https:// only.
 * The stream is never held whole: the reader keeps a buffer of about one
 * line (a line is capped, MSG_RECIPIENT_LINE_MAX by default) and pauses
 * the transfer until the consumer pulls the next batch.
 *
 * Per line: a blank line is skipped; a line that breaks the recipient
 * rules (msg_parse_recipient_line) or is over the cap comes out as a
 * REJECTED item with its reason, never an error, and its id is the line's
 * "id" (else "address") when it can be read, else "line:<n>"; a repeated
 * id is dropped and counted (the delivery ledger has one row per id: a
 * second item would resend or overwrite the first outcome). Detecting
 * repeats costs 8-16 bytes per recipient (a set of 64-bit id hashes); turn
 * it off with opts.no_dedupe for lists known to be unique.
 *
 * A fetch failure (bad or unsupported scheme, missing file, HTTP status
 * >= 400, refused connection, a transfer that breaks or stalls) is an
 * error of the whole campaign: recipients_next_batch returns it, and the
 * consumer retries or dead-letters. Reading always starts at the top of
 * the stream; what to skip on a resume is the delivery ledger's business.
 *
 * A reader is used by one thread at a time; several readers may run in
 * parallel threads once the program has called curl_global_init() (at
 * start, before threads: curl's lazy global init is not thread-safe).
 */
#ifndef SENDONCE_RECIPIENTS_H
#define SENDONCE_RECIPIENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "status.h"

/* One recipient as read. Owned strings; release with
 * recipients_items_cleanup(). */
struct recipients_item {
  struct msg_recipient r; /* r.id always set; r.address and r.vars_json
                             are NULL when rejected */
  bool rejected;          /* the line broke the rules: mark it REJECTED */
  char *reason;           /* why, "<code>: <detail>" (msg.h codes, plus
                             too_large); NULL when not rejected */
  uint64_t line;          /* 1-based line in the stream (inline: index+1) */
};

/* Reader options; a zeroed struct (or NULL) means the defaults. */
struct recipients_opts {
  size_t line_max;         /* bytes per line; 0 = MSG_RECIPIENT_LINE_MAX */
  bool no_dedupe;          /* don't look for repeated ids */
  long connect_timeout_ms; /* 0 = 10 s */
  long stall_timeout_ms;   /* no byte for this long while we wait: fail;
                              0 = 60 s */
};

/* Counters of what the reader has seen so far. */
struct recipients_stats {
  uint64_t lines;      /* lines read, blank ones included */
  uint64_t accepted;   /* items that passed the rules */
  uint64_t rejected;   /* items yielded as rejected */
  uint64_t duplicates; /* lines dropped for a repeated id */
  uint64_t blank;      /* blank lines skipped */
  uint64_t bytes;      /* bytes received */
};

struct recipients_reader;

/* recipients_open: a reader over the recipients of `m`: its inline list
 * (borrowed: `m` must outlive the reader) or its recipients_url. Nothing is
 * fetched yet. Returns SO_OK, SO_ERR_INVALID (no recipients, or a URL that
 * is not file/http/https; `err` says why) or SO_ERR_NOMEM. The caller
 * closes *out with recipients_close(). */
int recipients_open(const struct msg *m, const struct recipients_opts *opts,
                    struct recipients_reader **out, char *err,
                    size_t errlen) SO_MUST_CHECK;

/* recipients_open_url: the same for a URL alone. */
int recipients_open_url(const char *url, const struct recipients_opts *opts,
                        struct recipients_reader **out, char *err,
                        size_t errlen) SO_MUST_CHECK;

/* recipients_next_batch: fill out[0..max) with the next items; *n gets how
 * many. SO_OK with *n == 0 means the end of the stream. On a fetch failure
 * returns SO_ERR_NOTFOUND (no such file, HTTP 404/410), SO_ERR_INVALID
 * (unsupported scheme, bad URL), SO_ERR_UNAVAILABLE (refused connection,
 * HTTP 5xx or other errors), SO_ERR_TIMEOUT (connect or stall timeout),
 * SO_ERR_IO (the transfer broke) or SO_ERR_NOMEM, with the reason in
 * `err`; items already filled in this call are then released (*n = 0),
 * and the reader keeps failing. */
int recipients_next_batch(struct recipients_reader *rd,
                          struct recipients_item *out, size_t max, size_t *n,
                          char *err, size_t errlen) SO_MUST_CHECK;

/* recipients_items_cleanup: free what items[0..n) own and zero them. */
void recipients_items_cleanup(struct recipients_item *items, size_t n);

/* recipients_get_stats: the counters so far. */
void recipients_get_stats(const struct recipients_reader *rd,
                          struct recipients_stats *out);

/* recipients_close: stop any transfer and free the reader; NULL is a
 * no-op. */
void recipients_close(struct recipients_reader *rd);

#endif /* SENDONCE_RECIPIENTS_H */
