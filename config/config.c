/* config.c - load a libconfig file and the environment into struct config.
 *
 * Order: defaults, then the file, then SENDONCE_* environment variables
 * (secrets included), then derived defaults and the cross-field rules that
 * refuse dangerous set-ups. Values are stored through config_store.c, so
 * each is checked the same way whatever its source.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_internal.h"
#include "template.h"

extern char **environ;

/* ---- the file --------------------------------------------------------- */

static const struct key_desc *key_find(const struct section_desc *sec,
                                       const char *name)
{
  for (size_t i = 0; i < sec->n_keys; i++) {
    if (strcmp(sec->keys[i].name, name) == 0)
      return &sec->keys[i];
  }
  return NULL;
}

/* secret_key_of: for "password_file", the secret key "password". */
static const struct key_desc *secret_key_of(const struct section_desc *sec,
                                            const char *name)
{
  size_t len = strlen(name);
  char stem[64];
  if (len <= 5 || len - 5 >= sizeof(stem) ||
      strcmp(name + len - 5, "_file") != 0)
    return NULL;
  memcpy(stem, name, len - 5);
  stem[len - 5] = '\0';
  const struct key_desc *key = key_find(sec, stem);
  return key && key->type == KEY_SECRET ? key : NULL;
}

static int walk_group(struct loader *ld, const config_setting_t *group,
                      const struct section_desc *sec, void *base,
                      const char *path);

static int set_from_setting(struct loader *ld, const struct key_desc *key,
                            void *base, config_setting_t *s, const char *kp)
{
  struct where w = {config_setting_source_file(s),
                    config_setting_source_line(s), NULL};
  void *field = config_field(base, key);
  int t = config_setting_type(s);
  char env[128];

  switch (key->type) {
    case KEY_BOOL:
      if (t != CONFIG_TYPE_BOOL)
        return config__fail(ld, SO_ERR_INVALID, &w, kp,
                            "expected a boolean (true or false)");
      *(bool *)field = config_setting_get_bool(s) != 0;
      return config__origin_set(ld, field, &w);
    case KEY_INT:
    case KEY_SIZE:
      if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return config__fail(ld, SO_ERR_INVALID, &w, kp, "expected an integer");
      return config__store_int(ld, key, field, config_setting_get_int64(s), &w,
                               kp);
    case KEY_STRING:
      if (t != CONFIG_TYPE_STRING)
        return config__fail(ld, SO_ERR_INVALID, &w, kp, "expected a string");
      return config__store_string(ld, key, field, config_setting_get_string(s),
                                  &w, kp);
    case KEY_ENUM:
      if (t != CONFIG_TYPE_STRING)
        return config__fail(ld, SO_ERR_INVALID, &w, kp, "expected a string");
      return config__store_enum(ld, key, field, config_setting_get_string(s),
                                &w, kp);
    case KEY_STRLIST:
    case KEY_INTLIST: {
      const config_setting_t *elems[CONFIG_MAX_URIS + CONFIG_MAX_RETRY_DELAYS];
      size_t n = 1;
      elems[0] = s;
      if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) {
        int len = config_setting_length(s);
        n = len < 0 ? 0 : (size_t)len;
        if (n > key->cap)
          return config__fail(ld, SO_ERR_INVALID, &w, kp,
                              "must have at most %zu elements", key->cap);
        for (size_t i = 0; i < n; i++)
          elems[i] = config_setting_get_elem(s, (unsigned)i);
      } else if (t == CONFIG_TYPE_GROUP) {
        return config__fail(ld, SO_ERR_INVALID, &w, kp,
                            "expected a list [ ... ]");
      }
      return config__store_list(ld, key, base, NULL, elems, n, &w, kp);
    }
    case KEY_SECRET:
      config__env_name(env, sizeof(env), kp, "");
      return config__fail(
          ld, SO_ERR_INVALID, &w, kp,
          "secrets are not read from the config file; use %s_file or "
          "the environment variable %s",
          key->name, env);
    case KEY_GROUP:
      if (t != CONFIG_TYPE_GROUP)
        return config__fail(ld, SO_ERR_INVALID, &w, kp,
                            "expected a group { ... }");
      return walk_group(ld, s, key->sub, field, kp);
  }
  return config__fail(ld, SO_ERR_INTERNAL, &w, kp, "unhandled key type");
}

static int walk_group(struct loader *ld, const config_setting_t *group,
                      const struct section_desc *sec, void *base,
                      const char *path)
{
  int n = config_setting_length(group);
  for (int i = 0; i < n; i++) {
    config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
    const char *name = config_setting_name(s);
    const struct key_desc *key = key_find(sec, name);
    struct where w = {config_setting_source_file(s),
                      config_setting_source_line(s), NULL};
    char kp[256];
    int rc;

    snprintf(kp, sizeof(kp), "%s.%s", path, name);
    if (key) {
      rc = set_from_setting(ld, key, base, s, kp);
    } else if ((key = secret_key_of(sec, name)) != NULL) {
      if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return config__fail(ld, SO_ERR_INVALID, &w, kp, "expected a file name");
      rc = config__secret_read(ld, key, config_field(base, key),
                               config_setting_get_string(s), &w, kp);
    } else {
      rc = config__fail_unknown(ld, &w, path, name, sec);
    }
    if (rc < 0)
      return rc;
  }
  return SO_OK;
}

/* apply_defaults: every key of `sec` that has a default gets it. */
static int apply_defaults(struct loader *ld, const struct section_desc *sec,
                          void *base, const char *path)
{
  for (size_t i = 0; i < sec->n_keys; i++) {
    const struct key_desc *key = &sec->keys[i];
    char kp[256];
    int rc = SO_OK;
    snprintf(kp, sizeof(kp), "%s.%s", path, key->name);
    if (key->type == KEY_GROUP)
      rc = apply_defaults(ld, key->sub, config_field(base, key), kp);
    else if (key->def)
      rc = config__set_from_text(ld, key, base, key->def, NULL, kp);
    if (rc < 0)
      return rc;
  }
  return SO_OK;
}

/* provider_add: the provider for `channel`, created with its defaults
 * when new. */
static int provider_add(struct loader *ld, const char *channel,
                        const struct where *w, struct config_provider **out)
{
  struct config *cfg = ld->cfg;
  char kp[256];
  size_t len = strlen(channel);

  snprintf(kp, sizeof(kp), "providers.%s", channel);
  /* Lower case only: the channel is also spelled in upper case in its
   * environment variables, and must map back to one name. */
  if (len == 0 || len > 32 || !(channel[0] >= 'a' && channel[0] <= 'z') ||
      strspn(channel, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
    return config__fail(ld, SO_ERR_INVALID, w, kp,
                        "a channel name is 1-32 of [a-z0-9_], starting with a "
                        "letter");
  for (size_t i = 0; i < cfg->n_providers; i++) {
    if (strcmp(cfg->providers[i].channel, channel) == 0) {
      *out = &cfg->providers[i];
      return SO_OK;
    }
  }
  if (cfg->n_providers == CONFIG_MAX_PROVIDERS)
    return config__fail(ld, SO_ERR_INVALID, w, kp,
                        "more than %d provider channels", CONFIG_MAX_PROVIDERS);
  struct config_provider *p = &cfg->providers[cfg->n_providers];
  memset(p, 0, sizeof(*p));
  p->channel = strdup(channel);
  if (!p->channel)
    return config__fail(ld, SO_ERR_NOMEM, w, kp, "out of memory");
  cfg->n_providers++;
  int rc = apply_defaults(ld, &config_provider_section, p, kp);
  if (rc == SO_OK)
    rc = config__origin_set(ld, &p->channel, w);
  *out = p;
  return rc;
}

static int walk_providers(struct loader *ld, const config_setting_t *group)
{
  struct where w = {config_setting_source_file(group),
                    config_setting_source_line(group), NULL};
  if (config_setting_type(group) != CONFIG_TYPE_GROUP)
    return config__fail(ld, SO_ERR_INVALID, &w, "providers",
                        "expected a group of channels { email = { ... }; }");
  int n = config_setting_length(group);
  for (int i = 0; i < n; i++) {
    config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
    const char *name = config_setting_name(s);
    struct config_provider *p = NULL;
    char kp[256];

    w.file = config_setting_source_file(s);
    w.line = config_setting_source_line(s);
    snprintf(kp, sizeof(kp), "providers.%s", name);
    if (config_setting_type(s) != CONFIG_TYPE_GROUP)
      return config__fail(
          ld, SO_ERR_INVALID, &w, kp,
          "expected a group of provider settings { url = ...; }");
    int rc = provider_add(ld, name, &w, &p);
    if (rc == SO_OK)
      rc = walk_group(ld, s, &config_provider_section, p, kp);
    if (rc < 0)
      return rc;
  }
  return SO_OK;
}

static int walk_root(struct loader *ld)
{
  config_setting_t *root = config_root_setting(&ld->lc);
  int n = config_setting_length(root);
  for (int i = 0; i < n; i++) {
    config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
    const char *name = config_setting_name(s);
    struct where w = {config_setting_source_file(s),
                      config_setting_source_line(s), NULL};
    const struct section_desc *sec = NULL;
    int rc;

    for (size_t j = 0; j < config_n_sections; j++) {
      if (strcmp(config_sections[j]->name, name) == 0)
        sec = config_sections[j];
    }
    if (strcmp(name, "providers") == 0) {
      rc = walk_providers(ld, s);
    } else if (!sec) {
      const char *names[16];
      size_t k = 0;
      for (; k < config_n_sections; k++)
        names[k] = config_sections[k]->name;
      names[k++] = "providers";
      const char *hint = config__suggest(name, names, k);
      if (hint)
        rc = config__fail(ld, SO_ERR_INVALID, &w, name,
                          "unknown section (did you mean '%s'?)", hint);
      else
        rc = config__fail(ld, SO_ERR_INVALID, &w, name, "unknown section");
    } else if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
      rc = config__fail(ld, SO_ERR_INVALID, &w, name,
                        "expected a group { ... }");
    } else {
      rc = walk_group(ld, s, sec, (char *)ld->cfg + sec->offset, name);
    }
    if (rc < 0)
      return rc;
  }
  return SO_OK;
}

/* ---- the environment -------------------------------------------------- */

/* An empty variable counts as unset: service managers and container
 * runtimes often export KEY= for "nothing". */
static const char *env_get(const char *name)
{
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static int env_section(struct loader *ld, const struct section_desc *sec,
                       void *base, const char *path)
{
  for (size_t i = 0; i < sec->n_keys; i++) {
    const struct key_desc *key = &sec->keys[i];
    char kp[256], kpf[272], name[160], name_file[176];
    const char *v;
    int rc = SO_OK;

    snprintf(kp, sizeof(kp), "%s.%s", path, key->name);
    config__env_name(name, sizeof(name), kp, "");
    struct where w = {NULL, 0, name};
    if (key->type == KEY_GROUP) {
      rc = env_section(ld, key->sub, config_field(base, key), kp);
    } else if (key->type == KEY_SECRET) {
      /* The value itself wins over a file naming it. */
      config__env_name(name_file, sizeof(name_file), kp, "_FILE");
      snprintf(kpf, sizeof(kpf), "%s_file", kp);
      struct where wf = {NULL, 0, name_file};
      if ((v = env_get(name_file)) != NULL)
        rc = config__secret_read(ld, key, config_field(base, key), v, &wf, kpf);
      if (rc == SO_OK && (v = env_get(name)) != NULL)
        rc = config__store_string(ld, key, config_field(base, key), v, &w, kp);
    } else if ((v = env_get(name)) != NULL) {
      rc = config__set_from_text(ld, key, base, v, &w, kp);
    }
    if (rc < 0)
      return rc;
  }
  return SO_OK;
}

/* env_names: every variable name `sec` answers to, for unknown-variable
 * checks and suggestions. Returns how many were written. */
static size_t env_names(const struct section_desc *sec, const char *path,
                        char (*out)[160], size_t cap)
{
  size_t n = 0;
  for (size_t i = 0; i < sec->n_keys && n < cap; i++) {
    const struct key_desc *key = &sec->keys[i];
    char kp[256];
    snprintf(kp, sizeof(kp), "%s.%s", path, key->name);
    if (key->type == KEY_GROUP) {
      n += env_names(key->sub, kp, out + n, cap - n);
      continue;
    }
    config__env_name(out[n++], 160, kp, "");
    if (key->type == KEY_SECRET && n < cap)
      config__env_name(out[n++], 160, kp, "_FILE");
  }
  return n;
}

/* env_check_one: is `var` one of the names of `sec` under `path`? If
 * not, a close name goes to hint (when hint is still empty). */
static bool env_check_one(const struct section_desc *sec, const char *path,
                          const char *var, char *hint, size_t hintlen)
{
  char names[64][160];
  const char *list[64];
  size_t n = env_names(sec, path, names, 64);
  for (size_t i = 0; i < n; i++) {
    if (strcmp(var, names[i]) == 0)
      return true;
    list[i] = names[i];
  }
  const char *close = config__suggest(var, list, n);
  if (close && !hint[0])
    snprintf(hint, hintlen, "%s", close);
  return false;
}

/* env_check_unknown: a SENDONCE_<SECTION>_* variable that names no key
 * is a typo that would silently do nothing: refuse it. */
static int env_check_unknown(struct loader *ld)
{
  for (char **e = environ; e && *e; e++) {
    char var[160], prefix[64], hint[160] = "";
    size_t len = strcspn(*e, "=");
    const char *value = (*e)[len] ? *e + len + 1 : "";
    bool known = false, claimed = false;

    /* Empty counts as unset (env_get), here too. */
    if (strncmp(*e, "SENDONCE_", 9) != 0 || len >= sizeof(var) || !*value)
      continue;
    memcpy(var, *e, len);
    var[len] = '\0';
    for (size_t i = 0; i < config_n_sections && !known; i++) {
      config__env_name(prefix, sizeof(prefix), config_sections[i]->name, "_");
      if (strncmp(var, prefix, strlen(prefix)) != 0)
        continue;
      claimed = true;
      known = env_check_one(config_sections[i], config_sections[i]->name, var,
                            hint, sizeof(hint));
    }
    if (strncmp(var, "SENDONCE_PROVIDERS_", 19) == 0) {
      claimed = true;
      for (size_t i = 0; i < ld->cfg->n_providers && !known; i++) {
        char path[64];
        snprintf(path, sizeof(path), "providers.%s",
                 ld->cfg->providers[i].channel);
        known = env_check_one(&config_provider_section, path, var, hint,
                              sizeof(hint));
      }
    }
    if (!claimed || known)
      continue;
    struct where w = {NULL, 0, var};
    if (hint[0])
      return config__fail(ld, SO_ERR_INVALID, &w, "environment",
                          "unknown variable (did you mean %s?)", hint);
    if (strncmp(var, "SENDONCE_PROVIDERS_", 19) == 0)
      return config__fail(
          ld, SO_ERR_INVALID, &w, "environment",
          "names no key of a known provider channel (channels come "
          "from the file's providers group or SENDONCE_PROVIDERS)");
    return config__fail(ld, SO_ERR_INVALID, &w, "environment",
                        "unknown variable");
  }
  return SO_OK;
}

static int env_apply(struct loader *ld)
{
  struct config *cfg = ld->cfg;
  int rc;

  for (size_t i = 0; i < config_n_sections; i++) {
    const struct section_desc *sec = config_sections[i];
    rc = env_section(ld, sec, (char *)cfg + sec->offset, sec->name);
    if (rc < 0)
      return rc;
  }
  /* SENDONCE_PROVIDERS=email,sms defines channels the file may not have,
   * so a deployment can be configured by its environment alone. */
  const char *list = env_get("SENDONCE_PROVIDERS");
  if (list) {
    struct where w = {NULL, 0, "SENDONCE_PROVIDERS"};
    char *copy = strdup(list);
    if (!copy)
      return config__fail(ld, SO_ERR_NOMEM, &w, "providers", "out of memory");
    rc = SO_OK;
    for (char *p = copy; rc == SO_OK && *p;) {
      size_t n = strcspn(p, ",");
      char *next = p[n] ? p + n + 1 : p + n;
      p[n] = '\0';
      while (*p == ' ')
        p++;
      for (char *end = p + strlen(p); end > p && end[-1] == ' ';)
        *--end = '\0';
      struct config_provider *prov = NULL;
      rc = provider_add(ld, p, &w, &prov);
      p = next;
    }
    free(copy);
    if (rc < 0)
      return rc;
  }
  for (size_t i = 0; i < cfg->n_providers; i++) {
    char path[64];
    snprintf(path, sizeof(path), "providers.%s", cfg->providers[i].channel);
    rc = env_section(ld, &config_provider_section, &cfg->providers[i], path);
    if (rc < 0)
      return rc;
  }
  return env_check_unknown(ld);
}

/* ---- derived defaults and cross-field rules ---------------------------- */

static int dup_into(struct loader *ld, char **slot, const char *value,
                    const char *kp)
{
  if (*slot || !value)
    return SO_OK;
  *slot = strdup(value);
  return *slot ? SO_OK
               : config__fail(ld, SO_ERR_NOMEM, NULL, kp, "out of memory");
}

static int derive(struct loader *ld)
{
  struct config *cfg = ld->cfg;
  int rc;

  for (size_t i = 0; i < config_n_sections; i++) {
    const struct section_desc *sec = config_sections[i];
    for (size_t k = 0; k < sec->n_keys; k++) {
      const struct key_desc *key = &sec->keys[k];
      char value[512];
      char kp[256];
      if (!key->default_cb)
        continue;
      key->default_cb(value, sizeof(value));
      snprintf(kp, sizeof(kp), "%s.%s", sec->name, key->name);
      rc =
          dup_into(ld, config_field((char *)cfg + sec->offset, key), value, kp);
      if (rc < 0)
        return rc;
    }
  }
  rc = dup_into(ld, &cfg->watchdog.mgmt_user, cfg->broker.user,
                "watchdog.mgmt_user");
  if (rc == SO_OK)
    rc = dup_into(ld, &cfg->watchdog.mgmt_password, cfg->broker.password,
                  "watchdog.mgmt_password");
  return rc;
}

/* at: where to report a rule about fields a and b: where a was set, else
 * where b was, else the file as a whole. */
static const struct where *at(const struct loader *ld, const void *a,
                              const void *b, struct where *buf)
{
  const struct where *w = config__origin_of(ld, a, buf);
  return w ? w : config__origin_of(ld, b, buf);
}

static int validate(struct loader *ld)
{
  const struct config *c = ld->cfg;
  struct where buf;
  const struct where *w;

  w = at(ld, &c->broker.reconnect_min_ms, &c->broker.reconnect_max_ms, &buf);
  if (c->broker.reconnect_min_ms > c->broker.reconnect_max_ms)
    return config__fail(ld, SO_ERR_INVALID, w, "broker.reconnect_min_ms",
                        "%d exceeds broker.reconnect_max_ms (%d)",
                        c->broker.reconnect_min_ms, c->broker.reconnect_max_ms);
  w = at(ld, &c->broker.tls.cert_file, &c->broker.tls.key_file, &buf);
  if (!c->broker.tls.cert_file != !c->broker.tls.key_file)
    return config__fail(
        ld, SO_ERR_INVALID, w, "broker.tls.cert_file",
        "broker.tls.cert_file and broker.tls.key_file go together");

  w = at(ld, &c->registry.backend, NULL, &buf);
  if (c->registry.backend == CONFIG_REGISTRY_SQLITE && !c->registry.sqlite_path)
    return config__fail(ld, SO_ERR_INVALID, w, "registry.sqlite_path",
                        "required when registry.backend = \"sqlite\"");
  if (c->registry.backend == CONFIG_REGISTRY_POSTGRESQL &&
      !c->registry.pg_conninfo)
    return config__fail(ld, SO_ERR_INVALID, w, "registry.pg_conninfo",
                        "required when registry.backend = \"postgresql\"");

  /* A renewal blocked behind a busy registry for longer than the renewal
   * period could cost a live worker its lease. */
  long long renew_ms = (long long)c->registry.lease_ttl_s * 1000 / 3;
  w = at(ld, &c->registry.busy_timeout_ms, &c->registry.lease_ttl_s, &buf);
  if (c->registry.busy_timeout_ms > renew_ms)
    return config__fail(
        ld, SO_ERR_INVALID, w, "registry.busy_timeout_ms",
        "%d ms exceeds the lease renewal period (lease_ttl_s / 3 = "
        "%lld ms): a renewal waiting on a busy registry could lose "
        "a live worker its lease",
        c->registry.busy_timeout_ms, renew_ms);

  w = at(ld, &c->watchdog.grace_s, &c->registry.lease_ttl_s, &buf);
  if (c->watchdog.grace_s < c->registry.lease_ttl_s)
    return config__fail(
        ld, SO_ERR_INVALID, w, "watchdog.grace_s",
        "%d s is shorter than registry.lease_ttl_s (%d s): the "
        "watchdog would republish campaigns whose worker is alive "
        "and still renewing its lease",
        c->watchdog.grace_s, c->registry.lease_ttl_s);

  if (c->metrics.enabled) {
    const int *ports[] = {&c->metrics.publisher_port, &c->metrics.consumer_port,
                          &c->metrics.watchdog_port};
    const char *names[] = {"metrics.publisher_port", "metrics.consumer_port",
                           "metrics.watchdog_port"};
    for (size_t i = 1; i < 3; i++) {
      for (size_t j = 0; j < i; j++) {
        if (*ports[i] == *ports[j])
          return config__fail(ld, SO_ERR_INVALID,
                              at(ld, ports[i], ports[j], &buf), names[i],
                              "same port as %s (%d): the three daemons "
                              "may share a host",
                              names[j], *ports[i]);
      }
    }
  }

  for (size_t i = 0; i < c->n_providers; i++) {
    const struct config_provider *p = &c->providers[i];
    char kp[128];
    snprintf(kp, sizeof(kp), "providers.%s.url", p->channel);
    if (!p->url)
      return config__fail(ld, SO_ERR_INVALID,
                          config__origin_of(ld, &p->channel, &buf), kp,
                          "required");
    /* Several recipients per request need a {{#recipients}} section to
     * render them into one body. */
    struct template *t = NULL;
    char terr[200];
    bool batch = false;
    if (template_parse(p->body_template, &t, terr, sizeof(terr)) == SO_OK)
      batch = template_is_batch(t);
    template_free(t);
    snprintf(kp, sizeof(kp), "providers.%s.batch_size", p->channel);
    if (p->batch_size > 1 && !batch)
      return config__fail(ld, SO_ERR_INVALID,
                          at(ld, &p->batch_size, &p->body_template, &buf), kp,
                          "%d needs a body_template with a "
                          "{{#recipients}}...{{/recipients}} section",
                          p->batch_size);
  }
  return SO_OK;
}

/* ---- load ------------------------------------------------------------- */

/* find_file: the file to load, or NULL for defaults alone. An explicit
 * path (argument or $SENDONCE_CONFIG) must exist; the default places may
 * not. */
static int find_file(struct loader *ld, const char *path, const char **out)
{
  static const char *const places[] = {
      "sendonce.conf", SENDONCE_SYSCONFDIR "/sendonce/sendonce.conf"};
  const char *env = env_get("SENDONCE_CONFIG");

  *out = NULL;
  if (path || env) {
    *out = path ? path : env;
    if (access(*out, R_OK) < 0) {
      int e = errno;
      char where[300];
      snprintf(where, sizeof(where), "%s%s", *out,
               path ? "" : " (from SENDONCE_CONFIG)");
      if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s: cannot read: %s", where,
                 strerror(e));
      return e == ENOENT ? SO_ERR_NOTFOUND : SO_ERR_IO;
    }
    return SO_OK;
  }
  for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
    if (access(places[i], F_OK) == 0) {
      *out = places[i];
      return SO_OK;
    }
  }
  return SO_OK;
}

static int read_file(struct loader *ld, const char *path)
{
  struct config *cfg = ld->cfg;
  cfg->path = strdup(path);
  ld->dir = strdup(path);
  if (!cfg->path || !ld->dir)
    return config__fail(ld, SO_ERR_NOMEM, NULL, "config", "out of memory");
  char *slash = strrchr(ld->dir, '/');
  if (slash == ld->dir)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    memcpy(ld->dir, ".", 2);

  config_init(&ld->lc);
  ld->lc_live = true;
  config_set_include_dir(&ld->lc, ld->dir);
  if (!config_read_file(&ld->lc, path)) {
    if (config_error_type(&ld->lc) == CONFIG_ERR_FILE_IO) {
      if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s: cannot read: %s", path,
                 strerror(errno));
      return SO_ERR_IO;
    }
    const char *file = config_error_file(&ld->lc);
    if (ld->err && ld->errlen)
      snprintf(ld->err, ld->errlen, "%s:%d: syntax: %s", file ? file : path,
               config_error_line(&ld->lc), config_error_text(&ld->lc));
    return SO_ERR_INVALID;
  }
  return walk_root(ld);
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
  struct loader ld = {.cfg = cfg, .err = err, .errlen = errlen};
  const char *file = NULL;
  int rc;

  memset(cfg, 0, sizeof(*cfg));
  if (err && errlen)
    err[0] = '\0';
  for (size_t i = 0; i < config_n_sections; i++) {
    const struct section_desc *sec = config_sections[i];
    rc = apply_defaults(&ld, sec, (char *)cfg + sec->offset, sec->name);
    if (rc < 0)
      goto fail;
  }
  rc = find_file(&ld, path, &file);
  if (rc == SO_OK && file)
    rc = read_file(&ld, file);
  if (rc == SO_OK)
    rc = env_apply(&ld);
  if (rc == SO_OK)
    rc = derive(&ld);
  if (rc == SO_OK)
    rc = validate(&ld);
fail:
  /* The origins point into the libconfig tree: drop them together. */
  if (ld.lc_live)
    config_destroy(&ld.lc);
  free(ld.origins);
  free(ld.dir);
  return rc;
}
