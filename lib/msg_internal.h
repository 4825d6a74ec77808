/* msg_internal.h - shared between msg.c, msg_encode.c and msg_scan.c only
 * (and the fuzzer, which compares the fast path with json-c's).
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

/* msg__parse_recipient_line_slow: msg_parse_recipient_line through a json-c
 * tree, as it was before the fast path; the fast path falls back to it and
 * must give the same results. Same contract as msg_parse_recipient_line. */
int msg__parse_recipient_line_slow(const char *line, size_t len,
                                   struct msg_recipient *out, char *err,
                                   size_t errlen) SO_MUST_CHECK;

/* A value inside JSON text: p[0..len) is its text, p == NULL if absent. */
struct msg__value {
  const char *p;
  size_t len;
};

/* msg__scan_object: text[0..len) must have passed strictjson_check with an
 * object at the root. Finds the top-level members named names[0..n_names)
 * (out[i].p is NULL for an absent one) and checks that no object anywhere
 * repeats a key. Returns false when it cannot be sure of giving what the
 * json-c path gives (a repeated or escaped key, a very wide object): the
 * caller must then take that path. */
bool msg__scan_object(const char *text, size_t len, const char *const *names,
                      size_t n_names, struct msg__value *out) SO_MUST_CHECK;

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
