/* template_fast.c - JSON values for the body template without json-c
 * (see template_fast.h). */
#include "template_fast.h"

#include <string.h>

#include "strictjson.h"

bool template_fast_object(const char *text, size_t len,
                          const char *const *names, size_t n_names,
                          struct msg__value *root, struct msg__value *vals)
{
  struct strictjson_result res;
  if (strictjson_check(text, len, TEMPLATE_FAST_DEPTH, &res) != SO_OK ||
      res.root != '{')
    return false;
  *root = (struct msg__value){text, len};
  /* Nothing to find: json-c reads this as an object too, whatever the
   * keys (it keeps the last of repeated ones), so no walk is needed. */
  return n_names == 0 || msg__scan_object(text, len, names, n_names, vals);
}

bool template_fast_find(struct msg__value *v, const char *path, size_t len)
{
  const char *end = path + len;
  for (;;) {
    const char *dot = memchr(path, '.', (size_t)(end - path));
    size_t n = dot ? (size_t)(dot - path) : (size_t)(end - path);
    char key[TEMPLATE_KEY_MAX];
    const char *keys[1] = {key};
    struct msg__value sub;
    /* json-c's lookup() fails on a name this long, or on a non-object */
    if (n >= TEMPLATE_KEY_MAX || v->p[0] != '{')
      return false;
    memcpy(key, path, n);
    key[n] = '\0';
    if (!msg__scan_object(v->p, v->len, keys, 1, &sub) || !sub.p)
      return false;
    *v = sub;
    if (!dot)
      return true;
    path = dot + 1;
  }
}

size_t template_fast_text(const struct msg__value *v, char *dst)
{
  if (v->p[0] == 'n')
    return 0; /* null renders as nothing */
  if (v->p[0] == '"')
    return msg__scan_string(v, dst);
  return msg__scan_compact(v, dst);
}
