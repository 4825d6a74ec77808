/* msg.h - the campaign-due message: parse, validate, encode.
 *
 * The contract is DESIGN.md "Campaign-due message";
 * docs/campaign-due.schema.json states the same rules for other services. A
 * body is accepted only if:
 *
 *  - it is at most `max_bytes` long (checked before anything else),
 *  - it is valid UTF-8 (no overlong forms, no surrogates, <= U+10FFFF) and
 *    escaped strings contain no unpaired \uD800-\uDFFF surrogate,
 *  - it is one strict RFC 8259 JSON value (no comments, single quotes,
 *    NaN/Infinity, trailing commas, raw control characters in strings,
 *    integers outside the 64-bit range) followed only by whitespace,
 *    nested at most MSG_MAX_DEPTH deep, and that value is an object,
 *  - no object anywhere in it repeats a key (different JSON parsers keep
 *    different copies of a repeated key, so another service and we could
 *    read different campaigns out of one body: refused),
 *  - `schema` is the integer 1 (an integer other than 1 is refused with
 *    its own code, so a newer publisher is easy to spot in the DLQ),
 *  - `campaign_id`: 1..128 bytes of [A-Za-z0-9._:-],
 *  - `scheduled_at`: RFC 3339 date-time with offset (see clock.h),
 *  - `channel`: 1..64 bytes of [A-Za-z0-9._-], and one of the configured
 *    channel names when the caller gives the list,
 *  - `content`: an object (kept as JSON text for the provider template),
 *  - exactly one of `recipients` (a non-empty array of recipient objects,
 *    recipient ids unique within it) and `recipients_url` (an absolute
 *    file://, http:// or https:// URL, 1..2048 bytes, no spaces or control
 *    characters; the scheme is matched case-insensitively),
 *  - `not_after` (optional): RFC 3339, strictly after `scheduled_at`.
 *
 * A recipient object has `address` (string, required), `id` (string,
 * optional, defaults to the address) and `vars` (object, optional). Both
 * `address` and `id` are 1..256 bytes with no control characters (C0, DEL,
 * C1). The same rules apply to one line of a recipients_url JSON-lines
 * stream (msg_parse_recipient_line).
 *
 * Unknown fields (top level and in recipients) are ignored for forward
 * compatibility; msg_encode does not carry them over. Known fields with the
 * wrong JSON type are refused; `null` is a wrong type, never "absent".
 *
 * Error reporting: on failure `err` receives "<code>: <detail>", printable
 * ASCII only (user bytes are escaped as \xNN), so it can go straight into
 * the x-sendonce-error header of a dead-lettered message. The first token
 * is one of the stable MSG_ERR_* codes below; the detail is for people and
 * may change.
 */
#ifndef SENDONCE_MSG_H
#define SENDONCE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define MSG_SCHEMA_VERSION 1
#define MSG_CAMPAIGN_ID_MAX 128  /* bytes */
#define MSG_CHANNEL_MAX 64       /* bytes */
#define MSG_RECIPIENT_ID_MAX 256 /* bytes */
#define MSG_ADDRESS_MAX 256      /* bytes */
#define MSG_URL_MAX 2048         /* bytes */
#define MSG_MAX_DEPTH 32         /* nesting of objects and arrays, root = 1 */
#define MSG_DEFAULT_MAX_BYTES (1024 * 1024) /* when rules->max_bytes == 0 */
#define MSG_RECIPIENT_LINE_MAX (64 * 1024)  /* one JSON-lines recipient */
/* A buffer this large always holds a full error string. */
#define MSG_ERR_LEN 256

/* Stable reason codes: the first token of `err`. */
#define MSG_ERR_TOO_LARGE "too_large" /* body over max_bytes */
#define MSG_ERR_BAD_UTF8 "bad_utf8"   /* invalid UTF-8 or lone surrogate */
#define MSG_ERR_BAD_JSON "bad_json"   /* not strict JSON, or empty */
#define MSG_ERR_TOO_DEEP "too_deep"   /* nesting over MSG_MAX_DEPTH */
#define MSG_ERR_TRAILING_DATA "trailing_data" /* more after the JSON value */
#define MSG_ERR_NOT_OBJECT "not_object"       /* root is not a JSON object */
#define MSG_ERR_DUPLICATE_KEY "duplicate_key" /* an object repeats a key */
#define MSG_ERR_BAD_SCHEMA "bad_schema" /* schema missing or not integer */
#define MSG_ERR_UNSUPPORTED_SCHEMA "unsupported_schema" /* integer != 1 */
#define MSG_ERR_BAD_CAMPAIGN_ID "bad_campaign_id"
#define MSG_ERR_BAD_SCHEDULED_AT "bad_scheduled_at"
#define MSG_ERR_BAD_CHANNEL "bad_channel"         /* missing, type, syntax */
#define MSG_ERR_UNKNOWN_CHANNEL "unknown_channel" /* not configured */
#define MSG_ERR_BAD_CONTENT "bad_content"         /* missing or not object */
#define MSG_ERR_RECIPIENTS_MISSING "recipients_missing" /* neither given */
#define MSG_ERR_RECIPIENTS_BOTH "recipients_both"       /* both given */
#define MSG_ERR_BAD_RECIPIENTS "bad_recipients" /* not an array, or empty */
#define MSG_ERR_BAD_RECIPIENT "bad_recipient"   /* one recipient is bad */
#define MSG_ERR_DUPLICATE_RECIPIENT "duplicate_recipient" /* same id twice */
#define MSG_ERR_BAD_RECIPIENTS_URL "bad_recipients_url"
#define MSG_ERR_BAD_NOT_AFTER "bad_not_after"     /* type or syntax */
#define MSG_ERR_NOT_AFTER_ORDER "not_after_order" /* not after scheduled_at */

/* One recipient. Every pointer is owned by the struct. */
struct msg_recipient {
  char *id;        /* 1..MSG_RECIPIENT_ID_MAX bytes; the address if not
                      given; unique within an inline list */
  char *address;   /* email address, phone number...: 1..MSG_ADDRESS_MAX
                      bytes, as given (not checked against the channel) */
  char *vars_json; /* compact JSON object text, or NULL when absent */
};

/* A campaign-due message. Plain data: every pointer is owned by the struct
 * and released by msg_free(). To build a message for msg_encode(), calloc
 * one and fill it with malloc'd strings (or your own storage, then don't
 * call msg_free()). */
struct msg {
  int schema;                       /* MSG_SCHEMA_VERSION */
  char *campaign_id;                /* 1..128 bytes of [A-Za-z0-9._:-] */
  int64_t scheduled_at_ms;          /* due time, ms since the epoch, UTC */
  char *channel;                    /* channel name, e.g. "email" */
  char *content_json;               /* compact JSON object text */
  struct msg_recipient *recipients; /* inline recipients, or NULL */
  size_t n_recipients;              /* > 0 iff recipients != NULL */
  char *recipients_url;             /* JSON-lines URL, or NULL */
  bool has_not_after;               /* not_after_ms is set */
  int64_t not_after_ms;             /* don't start after this, ms, UTC */
};

/* What msg_parse checks beyond the fixed rules. */
struct msg_rules {
  size_t max_bytes;            /* body size cap; 0 = MSG_DEFAULT_MAX_BYTES */
  const char *const *channels; /* configured channel names, or NULL to
                                  accept any well-formed name */
  size_t n_channels;
};

/* msg_parse: parse and validate a campaign-due body of `len` bytes (need
 * not be NUL-terminated). On success *out is a new message the caller
 * frees with msg_free(). `rules` may be NULL (defaults, any channel).
 * Returns SO_OK, SO_ERR_TOO_LARGE (over the cap), SO_ERR_INVALID (any rule
 * broken; `err` says which) or SO_ERR_NOMEM. `err` may be NULL. */
int msg_parse(const char *body, size_t len, const struct msg_rules *rules,
              struct msg **out, char *err, size_t errlen) SO_MUST_CHECK;

/* msg_encode: the canonical JSON of `m`: compact, fields in the order of
 * DESIGN.md, times as UTC with milliseconds ("...T09:00:00.000Z"), unknown
 * fields dropped. The result is checked with msg_parse (any channel), so
 * only valid messages come out. *out is NUL-terminated and malloc'd (the
 * caller frees it); *outlen (may be NULL) gets its length. Returns SO_OK,
 * SO_ERR_INVALID (`err` says why) or SO_ERR_NOMEM. */
int msg_encode(const struct msg *m, char **out, size_t *outlen, char *err,
               size_t errlen) SO_MUST_CHECK;

/* msg_free: release a message and everything it owns. NULL is a no-op. */
void msg_free(struct msg *m);

/* msg_peek_campaign_id: best effort, for naming a campaign in the DLQ when
 * the message as a whole is invalid: find a top-level "campaign_id" string
 * in `body` (even with bad UTF-8 elsewhere or trailing garbage) and copy it
 * into `out` if it passes msg_validate_campaign_id(). Never reads past
 * `len`. Returns SO_OK, SO_ERR_NOTFOUND (none, or not a valid id) or
 * SO_ERR_TOO_LARGE (outlen <= the id's length; MSG_CAMPAIGN_ID_MAX + 1 is
 * always enough). */
int msg_peek_campaign_id(const char *body, size_t len, char *out,
                         size_t outlen) SO_MUST_CHECK;

/* msg_validate_campaign_id: SO_OK if `id` (NUL-terminated) is 1..128 bytes
 * of [A-Za-z0-9._:-], else SO_ERR_INVALID with a "bad_campaign_id: ..."
 * reason in `err` (may be NULL). */
int msg_validate_campaign_id(const char *id, char *err,
                             size_t errlen) SO_MUST_CHECK;

/* msg_parse_recipient_line: parse one line of a recipients_url JSON-lines
 * stream ({"id":..., "address":..., "vars":{...}}) with the same rules as
 * an inline recipient. Exactly `len` bytes are read (no NUL needed);
 * surrounding whitespace and a trailing "\n" or "\r\n" are allowed; the reader
 * should skip blank lines itself (a blank line is refused as bad_json). Lines
 * over MSG_RECIPIENT_LINE_MAX bytes are refused (SO_ERR_TOO_LARGE). Uniqueness
 * of ids across a stream is the reader's business. On success `out` is
 * filled (owned strings; release with msg_recipient_cleanup()); on failure
 * it is left zeroed. Error codes: too_large, bad_utf8, bad_json, too_deep,
 * trailing_data, duplicate_key, bad_recipient (for a non-object too). */
int msg_parse_recipient_line(const char *line, size_t len,
                             struct msg_recipient *out, char *err,
                             size_t errlen) SO_MUST_CHECK;

/* msg_recipient_cleanup: free what `r` owns and zero it. NULL is a no-op. */
void msg_recipient_cleanup(struct msg_recipient *r);

#endif /* SENDONCE_MSG_H */
