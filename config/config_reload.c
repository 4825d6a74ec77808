/* config_reload.c - SIGHUP: load the file again and apply the settings that
 * are safe to change at runtime (see config_reload.h for which and why).
 *
 * The comparison walks the same descriptor tables as the loader, so a key
 * added to config_keys.c is compared (and, unless listed here as safe,
 * reported as needing a restart) without touching this file. */
#include "config_reload.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "log.h"

/* The safe keys: plain ints or enums that are read again per request,
 * campaign or pass. */
static const char *const safe_top[] = {
    "log.level",
    "log.format",
    "watchdog.interval_s",
    "watchdog.grace_s",
    "watchdog.stuck_after_s",
    "watchdog.republish_backoff_s",
    "watchdog.max_republishes",
};
static const char *const safe_provider[] = {
    "rate_per_s", "concurrency", "timeout_ms", "max_retries", "retry_base_ms",
};

struct reload {
  char *report;
  size_t reportlen;
  size_t used;
};

static void note(struct reload *r, bool applied, const char *fmt, ...)
    SO_PRINTF(3, 4);

/* note: one change, logged and appended to the caller's report. */
static void note(struct reload *r, bool applied, const char *fmt, ...)
{
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (applied)
    log_info("%s", line);
  else
    log_warn("%s", line);
  if (r->report && r->used + 1 < r->reportlen) {
    int n = snprintf(r->report + r->used, r->reportlen - r->used, "%s\n", line);
    if (n > 0)
      r->used += (size_t)n < r->reportlen - r->used
                     ? (size_t)n
                     : r->reportlen - r->used - 1;
  }
}

static bool str_equal(const char *a, const char *b)
{
  if (!a || !b)
    return a == b;
  return strcmp(a, b) == 0;
}

/* field_equal: whether the field `key` describes is the same in a and b
 * (groups are walked by the caller). */
static bool field_equal(const struct key_desc *key, const void *a,
                        const void *b)
{
  const void *fa = config_cfield(a, key), *fb = config_cfield(b, key);
  switch (key->type) {
    case KEY_BOOL:
      return *(const bool *)fa == *(const bool *)fb;
    case KEY_INT:
    case KEY_ENUM:
      return *(const int *)fa == *(const int *)fb;
    case KEY_SIZE:
      return *(const size_t *)fa == *(const size_t *)fb;
    case KEY_STRING:
    case KEY_SECRET:
      return str_equal(*(char *const *)fa, *(char *const *)fb);
    case KEY_STRLIST:
    case KEY_INTLIST: {
      size_t na = *(const size_t *)((const char *)a + key->count_offset);
      size_t nb = *(const size_t *)((const char *)b + key->count_offset);
      if (na != nb)
        return false;
      for (size_t i = 0; i < na; i++) {
        bool same =
            key->type == KEY_STRLIST
                ? str_equal(((char *const *)fa)[i], ((char *const *)fb)[i])
                : ((const int *)fa)[i] == ((const int *)fb)[i];
        if (!same)
          return false;
      }
      return true;
    }
    case KEY_GROUP:
      return true;
  }
  return false;
}

/* spell: an int or enum value as the file spells it. */
static void spell(const struct key_desc *key, int v, char *buf, size_t len)
{
  if (key->type == KEY_ENUM && v >= 0 && key->names) {
    for (int i = 0; key->names[i]; i++) {
      if (i == v) {
        snprintf(buf, len, "%s", key->names[i]);
        return;
      }
    }
  }
  snprintf(buf, len, "%d", v);
}

/* diff_section: compare one section of current (cur) with the fresh load;
 * copy safe changes into cur when `apply`, report the rest. `safe` tells
 * whether a dotted key path is safe. */
static void diff_section(struct reload *r, const struct section_desc *sec,
                         void *cur, const void *fresh, const char *path,
                         bool (*safe)(const char *kp))
{
  for (size_t i = 0; i < sec->n_keys; i++) {
    const struct key_desc *key = &sec->keys[i];
    char kp[256];
    snprintf(kp, sizeof(kp), "%s.%s", path, key->name);
    if (key->type == KEY_GROUP) {
      diff_section(r, key->sub, config_field(cur, key),
                   config_cfield(fresh, key), kp, safe);
      continue;
    }
    if (field_equal(key, cur, fresh))
      continue;
    if ((key->type == KEY_INT || key->type == KEY_ENUM) && safe(kp)) {
      int *to = config_field(cur, key);
      int from = *to, v = *(const int *)config_cfield(fresh, key);
      char a[64], b[64];
      spell(key, from, a, sizeof(a));
      spell(key, v, b, sizeof(b));
      *to = v;
      note(r, true, "reload: %s: %s -> %s", kp, a, b);
    } else {
      note(r, false, "reload: %s changed: needs a restart; kept the old value",
           kp);
    }
  }
}

static bool safe_top_key(const char *kp)
{
  for (size_t i = 0; i < sizeof(safe_top) / sizeof(safe_top[0]); i++) {
    if (strcmp(kp, safe_top[i]) == 0)
      return true;
  }
  return false;
}

/* safe_provider_key: "providers.<channel>.<key>" with a safe key. */
static bool safe_provider_key(const char *kp)
{
  const char *last = strrchr(kp, '.');
  if (!last || strncmp(kp, "providers.", 10) != 0)
    return false;
  for (size_t i = 0; i < sizeof(safe_provider) / sizeof(safe_provider[0]);
       i++) {
    if (strcmp(last + 1, safe_provider[i]) == 0)
      return true;
  }
  return false;
}

static void diff_providers(struct reload *r, struct config *cur,
                           const struct config *fresh)
{
  char kp[64];
  for (size_t i = 0; i < cur->n_providers; i++) {
    struct config_provider *p = &cur->providers[i];
    const struct config_provider *q = config_provider_find(fresh, p->channel);
    snprintf(kp, sizeof(kp), "providers.%s", p->channel);
    if (!q)
      note(r, false, "reload: %s removed: needs a restart; kept the old value",
           kp);
    else
      diff_section(r, &config_provider_section, p, q, kp, safe_provider_key);
  }
  for (size_t i = 0; i < fresh->n_providers; i++) {
    const char *ch = fresh->providers[i].channel;
    snprintf(kp, sizeof(kp), "providers.%s", ch);
    if (!config_provider_find(cur, ch))
      note(r, false, "reload: %s added: needs a restart; not used", kp);
  }
}

int config_reload_safe(struct config *current, const char *path, char *report,
                       size_t reportlen, char *err, size_t errlen)
{
  struct config fresh;
  struct reload r = {report, reportlen, 0};
  int rc;

  if (report && reportlen)
    report[0] = '\0';
  if (err && errlen)
    err[0] = '\0';
  if (!path)
    path = current->path;
  /* Without a file there is nothing to re-read: the config came from the
   * defaults and the environment, which a running process cannot see
   * change. Loading the search path now could pick up a file that was not
   * there at start; say so instead. */
  if (!path) {
    if (err && errlen)
      snprintf(err, errlen,
               "reload: no config file was loaded at start; nothing to "
               "reload");
    return SO_ERR_NOTFOUND;
  }
  rc = config_load(&fresh, path, err, errlen);
  if (rc != SO_OK)
    goto fail;

  /* A safe key may be tied by a rule to a kept one: check the merge. */
  if (fresh.watchdog.grace_s < current->registry.lease_ttl_s) {
    if (err && errlen)
      snprintf(err, errlen,
               "%s: watchdog.grace_s: %d s is shorter than the running "
               "registry.lease_ttl_s (%d s, kept until a restart); kept the "
               "old config",
               path, fresh.watchdog.grace_s, current->registry.lease_ttl_s);
    rc = SO_ERR_INVALID;
    goto fail;
  }

  for (size_t i = 0; i < config_n_sections; i++) {
    const struct section_desc *sec = config_sections[i];
    diff_section(&r, sec, (char *)current + sec->offset,
                 (const char *)&fresh + sec->offset, sec->name, safe_top_key);
  }
  diff_providers(&r, current, &fresh);
  log_set_level(current->log.level);
  log_set_format(current->log.format);

fail:
  config_free(&fresh);
  return rc;
}
