/* config_store.c - storing configuration values, wherever they come from.
 *
 * A value from the file, the environment or a default reaches its field
 * only through the functions here, so a range, a rule or a secret's
 * handling is checked in one place. Each stored field remembers where its
 * value came from, so an error - even a cross-field one found later -
 * names the file and line or the variable.
 */
#include "config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- errors and origins ---------------------------------------------- */

static void where_format(const struct where *w, const char *path, char *buf,
                         size_t len)
{
  if (w && w->env)
    snprintf(buf, len, "env %s", w->env);
  else if (w && w->file)
    snprintf(buf, len, "%s:%u", w->file, w->line);
  else
    snprintf(buf, len, "%s", path ? path : "(defaults)");
}

int config__fail(struct loader *ld, int status, const struct where *w,
                 const char *key, const char *fmt, ...)
{
  char loc[512];
  char msg[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  where_format(w, ld->cfg->path, loc, sizeof(loc));
  if (ld->err && ld->errlen)
    snprintf(ld->err, ld->errlen, "%s: %s: %s", loc, key, msg);
  return status;
}

int config__origin_set(struct loader *ld, const void *field,
                       const struct where *w)
{
  struct origin *o = NULL;
  for (size_t i = 0; i < ld->n_origins; i++) {
    if (ld->origins[i].field == field)
      o = &ld->origins[i];
  }
  if (!o) {
    if (ld->n_origins == ld->cap_origins) {
      size_t cap = ld->cap_origins ? ld->cap_origins * 2 : 64;
      struct origin *grown = realloc(ld->origins, cap * sizeof(*grown));
      if (!grown)
        return config__fail(ld, SO_ERR_NOMEM, w, "config", "out of memory");
      ld->origins = grown;
      ld->cap_origins = cap;
    }
    o = &ld->origins[ld->n_origins++];
  }
  memset(o, 0, sizeof(*o));
  o->field = field;
  o->file = w ? w->file : NULL;
  o->line = w ? w->line : 0;
  if (w && w->env)
    snprintf(o->env, sizeof(o->env), "%s", w->env);
  return SO_OK;
}

/* origin_of: where `field` was set, or NULL for a built-in default. */
const struct where *config__origin_of(const struct loader *ld,
                                      const void *field, struct where *buf)
{
  for (size_t i = 0; i < ld->n_origins; i++) {
    const struct origin *o = &ld->origins[i];
    if (o->field == field && (o->file || o->env[0])) {
      buf->file = o->file;
      buf->line = o->line;
      buf->env = o->env[0] ? o->env : NULL;
      return buf;
    }
  }
  return NULL;
}

/* Levenshtein distance, capped: enough for a "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  size_t row[65];
  if (la > 64 || lb > 64)
    return SIZE_MAX;
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (row[j] + 1 < best)
        best = row[j] + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* suggest: the closest of `names` to `name` (within 2 edits), or NULL. */
const char *config__suggest(const char *name, const char *const *names,
                            size_t n)
{
  const char *best = NULL;
  size_t best_d = 3;
  for (size_t i = 0; i < n; i++) {
    size_t d = edit_distance(name, names[i]);
    if (d < best_d) {
      best = names[i];
      best_d = d;
    }
  }
  return best;
}

int config__fail_unknown(struct loader *ld, const struct where *w,
                         const char *path, const char *name,
                         const struct section_desc *sec)
{
  const char *names[40];
  char file_names[8][64]; /* "<secret>_file" for each secret key */
  size_t n = 0, n_files = 0;
  char key[256];
  for (size_t i = 0; sec && i < sec->n_keys && n < 40; i++) {
    const struct key_desc *k = &sec->keys[i];
    /* A secret is only ever spelled <key>_file in a file. */
    if (k->type != KEY_SECRET) {
      names[n++] = k->name;
    } else if (n_files < 8) {
      snprintf(file_names[n_files], sizeof(file_names[0]), "%s_file", k->name);
      names[n++] = file_names[n_files++];
    }
  }
  const char *hint = config__suggest(name, names, n);
  snprintf(key, sizeof(key), "%s%s%s", path, *path ? "." : "", name);
  if (hint)
    return config__fail(ld, SO_ERR_INVALID, w, key,
                        "unknown key (did you mean '%s'?)", hint);
  return config__fail(ld, SO_ERR_INVALID, w, key, "unknown key");
}

/* ---- storing values (one place for every range and rule) ------------- */

int config__store_int(struct loader *ld, const struct key_desc *key,
                      void *field, long long v, const struct where *w,
                      const char *kp)
{
  if (v < key->min || v > key->max)
    return config__fail(ld, SO_ERR_INVALID, w, kp,
                        "must be between %lld and %lld (got %lld)%s%s",
                        key->min, key->max, v, key->why ? ": " : "",
                        key->why ? key->why : "");
  if (key->type == KEY_SIZE)
    *(size_t *)field = (size_t)v;
  else
    *(int *)field = (int)v;
  return config__origin_set(ld, field, w);
}

int config__store_string(struct loader *ld, const struct key_desc *key,
                         void *field, const char *v, const struct where *w,
                         const char *kp)
{
  char why[256];
  size_t len = strlen(v);
  bool secret = key->type == KEY_SECRET;
  char **slot = field;

  if (len == 0 && key->min == 0) {
    free(*slot);
    *slot = NULL;
    return config__origin_set(ld, field, w);
  }
  if ((long long)len < key->min)
    return config__fail(ld, SO_ERR_INVALID, w, kp, "must not be empty");
  if ((long long)len > key->max)
    return config__fail(ld, SO_ERR_INVALID, w, kp,
                        "longer than %lld characters", key->max);
  /* The rules never echo the value: a secret must not reach an error. */
  if (key->check_cb && key->check_cb(v, why, sizeof(why)) < 0)
    return config__fail(ld, SO_ERR_INVALID, w, kp, "%s", why);
  char *copy = strdup(v);
  if (!copy)
    return config__fail(ld, SO_ERR_NOMEM, w, kp, "out of memory");
  if (*slot && secret)
    memset(*slot, 0, strlen(*slot));
  free(*slot);
  *slot = copy;
  return config__origin_set(ld, field, w);
}

int config__store_enum(struct loader *ld, const struct key_desc *key,
                       void *field, const char *v, const struct where *w,
                       const char *kp)
{
  char allowed[128] = "";
  size_t used = 0;
  for (int i = 0; key->names[i]; i++) {
    if (strcmp(v, key->names[i]) == 0) {
      *(int *)field = i;
      return config__origin_set(ld, field, w);
    }
    int n = snprintf(allowed + used, sizeof(allowed) - used, "%s%s",
                     i ? "|" : "", key->names[i]);
    if (n > 0 && (size_t)n < sizeof(allowed) - used)
      used += (size_t)n;
  }
  return config__fail(ld, SO_ERR_INVALID, w, kp,
                      "must be one of %s (got \"%s\")", allowed, v);
}

static size_t *list_count(void *base, const struct key_desc *key)
{
  return (size_t *)((char *)base + key->count_offset);
}

/* store_list: replace a list with `n` elements given as strings (env,
 * default) or as libconfig settings (file). Exactly one of texts and
 * elems is non-NULL. */
int config__store_list(struct loader *ld, const struct key_desc *key,
                       void *base, const char *const *texts,
                       const config_setting_t *const *elems, size_t n,
                       const struct where *w, const char *kp)
{
  void *field = config_field(base, key);
  size_t *count = list_count(base, key);
  char why[256];

  if (n == 0)
    return config__fail(ld, SO_ERR_INVALID, w, kp,
                        "must have at least one element");
  if (n > key->cap)
    return config__fail(ld, SO_ERR_INVALID, w, kp,
                        "must have at most %zu elements", key->cap);
  if (key->type == KEY_STRLIST) {
    char *fresh[CONFIG_MAX_URIS] = {0};
    for (size_t i = 0; i < n; i++) {
      const char *s = texts ? texts[i] : config_setting_get_string(elems[i]);
      if (!s || !*s || (long long)strlen(s) > key->max ||
          (key->check_cb && key->check_cb(s, why, sizeof(why)) < 0)) {
        if (!s)
          snprintf(why, sizeof(why), "elements must be strings");
        else if (!*s)
          snprintf(why, sizeof(why), "elements must not be empty");
        else if ((long long)strlen(s) > key->max)
          snprintf(why, sizeof(why), "element longer than %lld", key->max);
        for (size_t j = 0; j < i; j++)
          free(fresh[j]);
        return config__fail(ld, SO_ERR_INVALID, w, kp, "element %zu: %s", i + 1,
                            why);
      }
      fresh[i] = strdup(s);
      if (!fresh[i]) {
        for (size_t j = 0; j < i; j++)
          free(fresh[j]);
        return config__fail(ld, SO_ERR_NOMEM, w, kp, "out of memory");
      }
    }
    char **list = field;
    for (size_t i = 0; i < *count; i++)
      free(list[i]);
    for (size_t i = 0; i < key->cap; i++)
      list[i] = i < n ? fresh[i] : NULL;
  } else {
    int fresh[CONFIG_MAX_RETRY_DELAYS];
    for (size_t i = 0; i < n; i++) {
      long long v = 0;
      char *end = NULL;
      if (texts) {
        errno = 0;
        v = strtoll(texts[i], &end, 10);
        if (errno || end == texts[i] || *end)
          return config__fail(ld, SO_ERR_INVALID, w, kp,
                              "element %zu: expected an integer (got \"%s\")",
                              i + 1, texts[i]);
      } else {
        int t = config_setting_type(elems[i]);
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
          return config__fail(ld, SO_ERR_INVALID, w, kp,
                              "element %zu: expected an integer", i + 1);
        v = config_setting_get_int64(elems[i]);
      }
      if (v < key->min || v > key->max)
        return config__fail(
            ld, SO_ERR_INVALID, w, kp,
            "element %zu: must be between %lld and %lld (got %lld)", i + 1,
            key->min, key->max, v);
      for (size_t j = 0; j < i; j++) {
        if (fresh[j] == (int)v)
          return config__fail(
              ld, SO_ERR_INVALID, w, kp,
              "element %zu: %lld is listed twice (one queue per "
              "delay)",
              i + 1, v);
      }
      fresh[i] = (int)v;
    }
    memcpy(field, fresh, n * sizeof(int));
  }
  *count = n;
  return config__origin_set(ld, field, w);
}

static int parse_bool(const char *v, bool *out)
{
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcmp(v, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcmp(v, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

/* set_from_text: a value spelled as text (environment or default). */
int config__set_from_text(struct loader *ld, const struct key_desc *key,
                          void *base, const char *text, const struct where *w,
                          const char *kp)
{
  void *field = config_field(base, key);
  switch (key->type) {
    case KEY_BOOL: {
      bool b;
      if (parse_bool(text, &b) < 0)
        return config__fail(ld, SO_ERR_INVALID, w, kp,
                            "expected true or false (got \"%s\")", text);
      *(bool *)field = b;
      return config__origin_set(ld, field, w);
    }
    case KEY_INT:
    case KEY_SIZE: {
      char *end = NULL;
      errno = 0;
      long long v = strtoll(text, &end, 10);
      if (errno || end == text || *end)
        return config__fail(ld, SO_ERR_INVALID, w, kp,
                            "expected an integer (got \"%s\")", text);
      return config__store_int(ld, key, field, v, w, kp);
    }
    case KEY_STRING:
    case KEY_SECRET:
      return config__store_string(ld, key, field, text, w, kp);
    case KEY_ENUM:
      return config__store_enum(ld, key, field, text, w, kp);
    case KEY_STRLIST:
    case KEY_INTLIST: {
      /* Comma-separated; blanks around an element are ignored. */
      char *copy = strdup(text);
      const char *parts[CONFIG_MAX_URIS + CONFIG_MAX_RETRY_DELAYS + 1];
      size_t n = 0;
      if (!copy)
        return config__fail(ld, SO_ERR_NOMEM, w, kp, "out of memory");
      for (char *p = copy; *p && n < sizeof(parts) / sizeof(parts[0]);) {
        char *comma = strchr(p, ',');
        char *end = comma ? comma : p + strlen(p);
        char *next = comma ? comma + 1 : end;
        while (p < end && (*p == ' ' || *p == '\t'))
          p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
          end--;
        *end = '\0';
        parts[n++] = p;
        p = next;
      }
      int rc = config__store_list(ld, key, base, parts, NULL, n, w, kp);
      free(copy);
      return rc;
    }
    case KEY_GROUP:
      break;
  }
  return config__fail(ld, SO_ERR_INTERNAL, w, kp, "cannot be set from text");
}

/* ---- secrets ---------------------------------------------------------- */

/* secret_read: store the contents of the secret file `path` (trailing
 * line ending stripped) in `field`. `kp` names the *_file setting. */
int config__secret_read(struct loader *ld, const struct key_desc *key,
                        void *field, const char *path, const struct where *w,
                        const char *kp)
{
  char full[PATH_MAX];
  char buf[CONFIG_SECRET_MAX_BYTES + 1];
  struct stat st;
  size_t len = 0;
  int rc;

  /* A relative path in the file is relative to the file, as an operator
   * reading it would expect; one from the environment is relative to the
   * working directory. */
  if (path[0] != '/' && ld->dir && !w->env)
    snprintf(full, sizeof(full), "%s/%s", ld->dir, path);
  else
    snprintf(full, sizeof(full), "%s", path);
  int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return config__fail(ld, errno == ENOENT ? SO_ERR_NOTFOUND : SO_ERR_IO, w,
                        kp, "cannot read secret file %s: %s", full,
                        strerror(errno));
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return config__fail(ld, SO_ERR_IO, w, kp,
                        "secret file %s is not a regular file", full);
  }
  if (st.st_mode & S_IROTH)
    log_warn("config: secret file is world-readable key=%s path=%s", kp, full);
  for (;;) {
    ssize_t n = read(fd, buf + len, sizeof(buf) - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = config__fail(ld, SO_ERR_IO, w, kp, "cannot read secret file %s: %s",
                        full, strerror(errno));
      goto done;
    }
    if (n == 0)
      break;
    len += (size_t)n;
    if (len == sizeof(buf)) {
      rc = config__fail(ld, SO_ERR_TOO_LARGE, w, kp,
                        "secret file %s is larger than %d bytes", full,
                        CONFIG_SECRET_MAX_BYTES);
      goto done;
    }
  }
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
    len--;
  buf[len] = '\0';
  if (memchr(buf, '\0', len)) {
    rc = config__fail(ld, SO_ERR_INVALID, w, kp,
                      "secret file %s holds a NUL byte", full);
    goto done;
  }
  if (len == 0) {
    rc = config__fail(ld, SO_ERR_INVALID, w, kp, "secret file %s is empty",
                      full);
    goto done;
  }
  rc = config__store_string(ld, key, field, buf, w, kp);
done:
  memset(buf, 0, sizeof(buf));
  close(fd);
  return rc;
}

/* env_name: "broker.tls.ca_file" -> "SENDONCE_BROKER_TLS_CA_FILE". */
void config__env_name(char *buf, size_t len, const char *kp, const char *suffix)
{
  size_t i = 0;
  int n = snprintf(buf, len, "SENDONCE_%s%s", kp, suffix);
  if (n < 0)
    return;
  for (i = 9; buf[i]; i++) {
    if (buf[i] == '.')
      buf[i] = '_';
    else if (buf[i] >= 'a' && buf[i] <= 'z')
      buf[i] = (char)(buf[i] - 'a' + 'A');
  }
}
