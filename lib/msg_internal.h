/* msg_internal.h - shared between msg.c and msg_encode.c only.
 * Not for other modules: use msg.h. Names carry the msg__ mark. */
#ifndef SENDONCE_MSG_INTERNAL_H
#define SENDONCE_MSG_INTERNAL_H

#include <json-c/json.h>
#include <stddef.h>

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

#endif /* SENDONCE_MSG_INTERNAL_H */
