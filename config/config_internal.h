/* config_internal.h - the descriptor tables behind struct config, and the
 * loader that fills it through them.
 *
 * Internal to config/ (config_keys.c describes the keys, config_store.c
 * stores values, config.c walks the file and the environment,
 * config_print.c prints). A key is described once - name, type, default,
 * range, rule, secret - and every path (file, environment, default,
 * printing, freeing) treats it the same way. Callers use config.h, never
 * this header; its symbols carry a config__ prefix.
 */
#ifndef SENDONCE_CONFIG_INTERNAL_H
#define SENDONCE_CONFIG_INTERNAL_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

enum key_type {
  KEY_BOOL,    /* bool */
  KEY_INT,     /* int */
  KEY_SIZE,    /* size_t */
  KEY_STRING,  /* char *, owned; min 0 means "" is unset (NULL) */
  KEY_ENUM,    /* an enum stored as int, spelled by names[] */
  KEY_STRLIST, /* char *[cap] plus a size_t count; a string is a list of 1 */
  KEY_INTLIST, /* int[cap] plus a size_t count */
  KEY_SECRET,  /* char *, only from the environment or a <key>_file */
  KEY_GROUP,   /* a nested group described by sub */
};

struct section_desc;

struct key_desc {
  const char *name; /* key in the file; env name is its upper case */
  enum key_type type;
  size_t offset; /* of the field in the section's struct */
  long long min; /* numbers and list elements: range; strings: length */
  long long max;
  const char *def; /* default, spelled as in the environment; NULL: unset */
  const char *why; /* appended to a range error: why the bound exists */
  const char *const *names; /* KEY_ENUM: value i is names[i], NULL-ended */
  size_t count_offset;      /* lists: offset of the size_t element count */
  size_t cap;               /* lists: capacity */
  /* Extra rule for a string (or list element, or secret): returns 0, or
   * -1 with the reason in why. Must not copy a secret into why. */
  int (*check_cb)(const char *value, char *why, size_t whylen);
  /* KEY_STRING: a default that depends on the process (consumer.owner is
   * host:pid), written to buf at load when the key is unset. Printed as ""
   * when the value is still that default, so a printed config reused by
   * another process does not hand it this process's identity. */
  void (*default_cb)(char *buf, size_t len);
  const struct section_desc *sub; /* KEY_GROUP */
};

struct section_desc {
  const char *name; /* "broker", "tls" ... */
  size_t offset;    /* of the section in its parent */
  const struct key_desc *keys;
  size_t n_keys;
};

/* The top-level sections, in file order, except providers. */
extern const struct section_desc *const config_sections[];
extern const size_t config_n_sections;

/* The keys of one providers.<channel> group (struct config_provider). */
extern const struct section_desc config_provider_section;

/* config_field: the field `key` describes inside `base`. */
static inline void *config_field(void *base, const struct key_desc *key)
{
  return (char *)base + key->offset;
}

static inline const void *config_cfield(const void *base,
                                        const struct key_desc *key)
{
  return (const char *)base + key->offset;
}

/* config_section_free: release the strings of one section (recursively). */
void config_section_free(const struct section_desc *sec, void *base);

/* ---- the loader (config_store.c) ------------------------------------- */

#define CONFIG_SECRET_MAX_BYTES 8192

/* Where a value came from: a file line, an environment variable, or the
 * built-in default (neither). */
struct where {
  const char *file; /* owned by the libconfig tree; NULL when not a file */
  unsigned line;
  const char *env; /* variable name, or NULL */
};

/* struct origin: the where of one stored field. */
struct origin {
  const void *field;
  const char *file;
  unsigned line;
  char env[96];
};

/* struct loader: the state of one config_load() call. */
struct loader {
  struct config *cfg;
  config_t lc;
  bool lc_live;
  char *dir; /* directory of the config file, or NULL */
  struct origin *origins;
  size_t n_origins;
  size_t cap_origins;
  char *err;
  size_t errlen;
};

/* config__fail: write "where: key: message" to the caller's err buffer
 * (where: "file:line", "env NAME", or the file/"(defaults)" when w is
 * NULL). Returns status, so callers can `return config__fail(...)`. */
int config__fail(struct loader *ld, int status, const struct where *w,
                 const char *key, const char *fmt, ...) SO_PRINTF(5, 6);

/* config__origin_set / config__origin_of: remember where a field's value
 * came from; origin_of returns NULL for a built-in default. */
int config__origin_set(struct loader *ld, const void *field,
                       const struct where *w) SO_MUST_CHECK;
const struct where *config__origin_of(const struct loader *ld,
                                      const void *field, struct where *buf);

/* config__suggest: the closest of names to name within 2 edits, or NULL. */
const char *config__suggest(const char *name, const char *const *names,
                            size_t n);

/* config__fail_unknown: "path.name: unknown key (did you mean ...)". */
int config__fail_unknown(struct loader *ld, const struct where *w,
                         const char *path, const char *name,
                         const struct section_desc *sec);

/* Store one value into the field `key` describes, after its range and
 * rule; kp is the dotted key path for messages. */
int config__store_int(struct loader *ld, const struct key_desc *key,
                      void *field, long long v, const struct where *w,
                      const char *kp) SO_MUST_CHECK;
int config__store_string(struct loader *ld, const struct key_desc *key,
                         void *field, const char *v, const struct where *w,
                         const char *kp) SO_MUST_CHECK;
int config__store_enum(struct loader *ld, const struct key_desc *key,
                       void *field, const char *v, const struct where *w,
                       const char *kp) SO_MUST_CHECK;
/* config__store_list: exactly one of texts (env, default) and elems (the
 * file's list elements) is non-NULL. */
int config__store_list(struct loader *ld, const struct key_desc *key,
                       void *base, const char *const *texts,
                       const config_setting_t *const *elems, size_t n,
                       const struct where *w, const char *kp) SO_MUST_CHECK;

/* config__set_from_text: a value spelled as text (environment, default):
 * parsed by type, lists comma-separated. */
int config__set_from_text(struct loader *ld, const struct key_desc *key,
                          void *base, const char *text, const struct where *w,
                          const char *kp) SO_MUST_CHECK;

/* config__secret_read: store the contents of secret file `path` (trailing
 * line ending stripped; missing, unreadable or empty is an error; a
 * world-readable file is warned about). kp names the *_file setting. */
int config__secret_read(struct loader *ld, const struct key_desc *key,
                        void *field, const char *path, const struct where *w,
                        const char *kp) SO_MUST_CHECK;

/* config__env_name: "broker.tls.ca_file" + suffix ->
 * "SENDONCE_BROKER_TLS_CA_FILE<suffix>". */
void config__env_name(char *buf, size_t len, const char *kp,
                      const char *suffix);

#endif /* SENDONCE_CONFIG_INTERNAL_H */
