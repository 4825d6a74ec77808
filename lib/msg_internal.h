/* msg_internal.h - shared between msg.c, msg_encode.c, msg_fast.c and
 * msg_scan.c only (and the fuzzer and test_msg_scan, which compare the fast
 * path with json-c's).
 * Not for other modules: use msg.h. Names carry the msg__ mark. */
#ifndef SENDONCE_MSG_INTERNAL_H
#define SENDONCE_MSG_INTERNAL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "msg.h"
#include "status.h"

/* msg__fail: fill err (may be NULL) with "<code>: <detail>"; returns rc. */
int msg__fail(int rc, char *err, size_t errlen, const char *code,
              const char *fmt, ...) SO_PRINTF(5, 6);

/* msg__parse_object: strict-check text[0..len) (strictjson), parse it with
 * json-c, refuse repeated keys, and require an object (else fail with
 * `not_object_code`). On success *out holds a reference the caller puts. */
int msg__parse_object(const char *text, size_t len, const char *not_object_code,
                      struct json_object **out, char *err,
                      size_t errlen) SO_MUST_CHECK;

/* The rules of msg.h that both paths apply, in msg.c. Each returns SO_OK
 * or SO_ERR_INVALID (NOMEM for unique ids) and words the error in err
 * (may be NULL). */
/* campaign ids (allow_colon) and channel names: 1..max of [A-Za-z0-9._-] */
int msg__check_name(const char *s, size_t n, size_t max, bool allow_colon,
                    const char *code, char *err, size_t errlen) SO_MUST_CHECK;
/* recipient ids and addresses: 1..max bytes, no C0, DEL or C1 */
int msg__check_printable(const char *s, size_t n, size_t max, const char *where,
                         const char *field, char *err,
                         size_t errlen) SO_MUST_CHECK;
/* recipients_url: scheme, host or absolute path, no spaces or controls */
int msg__check_url(const char *s, size_t n, char *err,
                   size_t errlen) SO_MUST_CHECK;
/* inline recipient ids are distinct */
int msg__check_unique_ids(const struct msg *m, char *err,
                          size_t errlen) SO_MUST_CHECK;

/* msg__parse_slow, msg__parse_recipient_line_slow: msg_parse and
 * msg_parse_recipient_line through a json-c tree, as they were before the
 * fast path (msg_fast.c). The public functions take these whenever the
 * fast path declines, which includes every invalid input, so errors are
 * always worded here. Same contracts as the public functions; the fuzzer
 * checks that both paths agree. */
int msg__parse_slow(const char *body, size_t len, const struct msg_rules *rules,
                    struct msg **out, char *err, size_t errlen) SO_MUST_CHECK;
int msg__parse_recipient_line_slow(const char *line, size_t len,
                                   struct msg_recipient *out, char *err,
                                   size_t errlen) SO_MUST_CHECK;

/* msg__fast_parse, msg__fast_recipient_line (msg_fast.c): the same
 * results without json-c, for input they are sure about. SO_OK with *out
 * filled exactly as the slow path would; anything else (invalid input,
 * unsure, no memory) means "take the slow path", with *out NULL / zeroed
 * and nothing to free. */
int msg__fast_parse(const char *body, size_t len, const struct msg_rules *rules,
                    struct msg **out) SO_MUST_CHECK;
int msg__fast_recipient_line(const char *line, size_t len,
                             struct msg_recipient *out) SO_MUST_CHECK;

/* A value inside JSON text: p[0..len) is its text, p == NULL if absent. */
struct msg__value {
  const char *p;
  size_t len;
};

/* msg__scan_object: text[0..len) must have passed strictjson_check with an
 * object at the root. Finds the top-level members named names[0..n_names)
 * (out[i].p is NULL for an absent one) and checks that no object anywhere
 * repeats a key. Returns false when it cannot be sure of giving what the
 * json-c path gives (a repeated or escaped key, an object of more than 32
 * members, more than 16 names): the caller must then take that path. */
bool msg__scan_object(const char *text, size_t len, const char *const *names,
                      size_t n_names, struct msg__value *out) SO_MUST_CHECK;

/* Walking the elements of an array value msg__scan_object accepted:
 * msg__scan_iter(array, &it), then msg__scan_next(&it, &elem) until it
 * returns false. */
struct msg__iter {
  const char *p;   /* next byte */
  const char *end; /* one past the array's text */
};
void msg__scan_iter(const struct msg__value *array, struct msg__iter *it);
bool msg__scan_next(struct msg__iter *it, struct msg__value *elem);

/* msg__scan_string: the unescaped bytes of the string value *v into dst
 * (room for v->len bytes is always enough); returns how many. Not
 * NUL-terminated; may contain NUL bytes (from \u0000). */
size_t msg__scan_string(const struct msg__value *v, char *dst);

/* msg__scan_compact: value *v as json-c's json_object_to_json_string_ext
 * (PLAIN | NOSLASHESCAPE) would print it, into dst (room for v->len bytes
 * is always enough); returns the length. Not NUL-terminated. Only for a
 * value msg__scan_object accepted. */
size_t msg__scan_compact(const struct msg__value *v, char *dst);

#endif /* SENDONCE_MSG_INTERNAL_H */
