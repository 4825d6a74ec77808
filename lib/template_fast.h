/* template_fast.h - JSON values for the body template without json-c:
 * for template.c only (it renders recipients' vars and a campaign's
 * content through here when sure, else through json-c).
 *
 * json-c costs ~10k instructions per parse (json_tokener_parse_ex also
 * switches the locale on every call), once per campaign for the content
 * and once per recipient for the vars. Text that strictjson_check accepts
 * at most TEMPLATE_FAST_DEPTH deep (json-c refuses 32) means the same to
 * json-c, and msg_scan.c reads it byte for byte as json-c would (see
 * there); whatever these functions are unsure of, they decline. */
#ifndef SENDONCE_TEMPLATE_FAST_H
#define SENDONCE_TEMPLATE_FAST_H

#include <stdbool.h>
#include <stddef.h>

#include "msg_internal.h"

#define TEMPLATE_FAST_DEPTH 16
#define TEMPLATE_FAST_NAMES 16 /* MSG_SCAN_MAX_NAMES in msg_scan.c */
#define TEMPLATE_KEY_MAX 256   /* template.c's lookup() key buffer */

/* template_fast_object: text[0..len) if it is strict JSON with an object
 * at the root: *root is all of it, and names[0..n_names) (n_names <=
 * TEMPLATE_FAST_NAMES) are looked up at its top level (vals[i].p NULL for
 * an absent one; with none, only the syntax is checked). False when not
 * sure (invalid, repeated or escaped keys, too deep): the caller must take
 * the json-c path. */
bool template_fast_object(const char *text, size_t len,
                          const char *const *names, size_t n_names,
                          struct msg__value *root,
                          struct msg__value *vals) SO_MUST_CHECK;

/* template_fast_find: follow the dotted path[0..len) from the object
 * value *v (within what template_fast_object accepted) as template.c's
 * lookup() does in json-c's tree; *v becomes the value found. False when
 * absent or not sure. */
bool template_fast_find(struct msg__value *v, const char *path,
                        size_t len) SO_MUST_CHECK;

/* template_fast_text: what template.c escapes into the body for value *v:
 * a string's bytes, nothing for null, else json-c's compact text. Writes
 * to dst (room for v->len bytes is enough; may contain NUL bytes) and
 * returns the length. */
size_t template_fast_text(const struct msg__value *v, char *dst);

#endif /* SENDONCE_TEMPLATE_FAST_H */
