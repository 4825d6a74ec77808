/* config_keys.c - every configuration key, described once.
 *
 * One table per section: key, type, default, range, rule, secret. The
 * defaults are spelled as an environment variable would spell them, so a
 * default goes through the same parser and checks as an override does.
 * sendonce.conf.example documents the same keys for operators; keep the
 * two in step.
 */
#include "config_internal.h"

#include <amqp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "template.h"

#define F(type, field) .offset = offsetof(struct type, field)
#define NKEYS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- rules ----------------------------------------------------------- */

/* Where the userinfo of "scheme://userinfo@host/..." has a ':', the URI
 * carries a password. */
static int uri_has_password(const char *uri)
{
  const char *auth = strstr(uri, "://");
  if (!auth)
    return 0;
  auth += 3;
  size_t authlen = strcspn(auth, "/?#");
  const char *at = NULL;
  for (size_t i = 0; i < authlen; i++) {
    if (auth[i] == '@')
      at = auth + i;
  }
  return at && memchr(auth, ':', (size_t)(at - auth)) != NULL;
}

static int check_amqp_uri(const char *value, char *why, size_t whylen)
{
  /* Never echo the URI: when it is wrong it may hold a password. */
  if (uri_has_password(value)) {
    snprintf(why, whylen,
             "a broker URI must not carry a password; use "
             "broker.password_file or SENDONCE_BROKER_PASSWORD");
    return -1;
  }
  char *copy = strdup(value);
  if (!copy) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  struct amqp_connection_info info;
  amqp_default_connection_info(&info);
  int rc = amqp_parse_url(copy, &info);
  free(copy);
  if (rc != AMQP_STATUS_OK) {
    snprintf(why, whylen,
             "not a valid broker URI (amqp://host[:port]/vhost or "
             "amqps://...)");
    return -1;
  }
  return 0;
}

static int check_http_url(const char *value, char *why, size_t whylen)
{
  if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) {
    snprintf(why, whylen, "must be an http:// or https:// URL");
    return -1;
  }
  if (uri_has_password(value)) {
    snprintf(why, whylen,
             "a URL must not carry a password; use the matching "
             "*_password_file setting or environment variable");
    return -1;
  }
  return 0;
}

static int check_pg_conninfo(const char *value, char *why, size_t whylen)
{
  if (strstr(value, "password") || uri_has_password(value)) {
    snprintf(why, whylen,
             "must not carry a password; use registry.password_file or "
             "SENDONCE_REGISTRY_PASSWORD");
    return -1;
  }
  return 0;
}

/* Queue and exchange names are built from the prefix: keep it to the
 * characters that read well in the management UI and need no quoting. */
static int check_name(const char *value, char *why, size_t whylen)
{
  if (strspn(value,
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
             "0123456789._-") != strlen(value)) {
    snprintf(why, whylen, "may only contain letters, digits, '.', '_', '-'");
    return -1;
  }
  return 0;
}

static int check_http_method(const char *value, char *why, size_t whylen)
{
  static const char *const methods[] = {"POST", "PUT", "PATCH", "GET"};
  for (size_t i = 0; i < NKEYS(methods); i++) {
    if (strcmp(value, methods[i]) == 0)
      return 0;
  }
  snprintf(why, whylen, "must be one of POST|PUT|PATCH|GET");
  return -1;
}

/* A template that cannot be parsed would fail every campaign of its
 * channel: refuse it at start, with the template module's reason. */
static int check_template(const char *value, char *why, size_t whylen)
{
  struct template *t = NULL;
  char terr[200] = "";
  int rc = template_parse(value, &t, terr, sizeof(terr));
  template_free(t);
  if (rc == SO_OK)
    return 0;
  snprintf(why, whylen, "%s", rc == SO_ERR_NOMEM ? "out of memory" : terr);
  return -1;
}

/* A secret is sent as a header or a login: a line break in it would let
 * the value inject a header of its own. */
static int check_one_line(const char *value, char *why, size_t whylen)
{
  if (strpbrk(value, "\r\n")) {
    snprintf(why, whylen, "must be a single line");
    return -1;
  }
  return 0;
}

static int check_auth_header(const char *value, char *why, size_t whylen)
{
  if (check_one_line(value, why, whylen) < 0)
    return -1;
  const char *colon = strchr(value, ':');
  if (!colon || colon == value ||
      strcspn(value, " \t") < (size_t)(colon - value)) {
    snprintf(why, whylen, "must be a header line \"Name: value\"");
    return -1;
  }
  return 0;
}

/* host:pid names a consumer in the registry and the UI; two processes
 * must never share one (a claim by "me" would match the other). */
static void default_owner(char *buf, size_t len)
{
  char host[256];
  if (gethostname(host, sizeof(host)) < 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  snprintf(buf, len, "%s:%ld", host, (long)getpid());
}

/* ---- tables ---------------------------------------------------------- */

static const char *const backend_names[] = {"sqlite", "postgresql", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug",
                                          NULL};
static const char *const format_names[] = {"kv", "json", NULL};

static const struct key_desc tls_keys[] = {
    {.name = "ca_file",
     .type = KEY_STRING,
     F(config_tls, ca_file),
     .min = 0,
     .max = 4096},
    {.name = "cert_file",
     .type = KEY_STRING,
     F(config_tls, cert_file),
     .min = 0,
     .max = 4096},
    {.name = "key_file",
     .type = KEY_STRING,
     F(config_tls, key_file),
     .min = 0,
     .max = 4096},
    {.name = "verify_peer",
     .type = KEY_BOOL,
     F(config_tls, verify_peer),
     .def = "true"},
};

static const struct section_desc tls_section = {
    "tls", offsetof(struct config_broker, tls), tls_keys, NKEYS(tls_keys)};

static const struct key_desc broker_keys[] = {
    {.name = "uri",
     .type = KEY_STRLIST,
     F(config_broker, uris),
     .min = 1,
     .max = 2048,
     .def = "amqp://127.0.0.1:5672/sendonce",
     .count_offset = offsetof(struct config_broker, n_uris),
     .cap = CONFIG_MAX_URIS,
     .check_cb = check_amqp_uri},
    {.name = "user",
     .type = KEY_STRING,
     F(config_broker, user),
     .min = 0,
     .max = 256},
    {.name = "password",
     .type = KEY_SECRET,
     F(config_broker, password),
     .min = 1,
     .max = 1024,
     .check_cb = check_one_line},
    {.name = "heartbeat_s",
     .type = KEY_INT,
     F(config_broker, heartbeat_s),
     .min = 1,
     .max = 3600,
     .def = "30",
     .why = "without heartbeats a dead connection goes unnoticed"},
    {.name = "connect_timeout_ms",
     .type = KEY_INT,
     F(config_broker, connect_timeout_ms),
     .min = 100,
     .max = 600000,
     .def = "10000"},
    {.name = "confirm_timeout_ms",
     .type = KEY_INT,
     F(config_broker, confirm_timeout_ms),
     .min = 100,
     .max = 600000,
     .def = "30000"},
    {.name = "reconnect_min_ms",
     .type = KEY_INT,
     F(config_broker, reconnect_min_ms),
     .min = 10,
     .max = 600000,
     .def = "500"},
    {.name = "reconnect_max_ms",
     .type = KEY_INT,
     F(config_broker, reconnect_max_ms),
     .min = 10,
     .max = 3600000,
     .def = "30000"},
    {.name = "tls",
     .type = KEY_GROUP,
     F(config_broker, tls),
     .sub = &tls_section},
};

static const struct key_desc topology_keys[] = {
    {.name = "prefix",
     .type = KEY_STRING,
     F(config_topology, prefix),
     .min = 1,
     .max = 64,
     .def = "sendonce",
     .check_cb = check_name},
    {.name = "delivery_limit",
     .type = KEY_INT,
     F(config_topology, delivery_limit),
     .min = 1,
     .max = 1000,
     .def = "5",
     .why = "without a delivery limit a poison message is redelivered "
            "forever instead of reaching the dead-letter exchange"},
    {.name = "retry_delays_s",
     .type = KEY_INTLIST,
     F(config_topology, retry_delays_s),
     .min = 1,
     .max = 86400,
     .def = "5,30,300",
     .count_offset = offsetof(struct config_topology, n_retry_delays),
     .cap = CONFIG_MAX_RETRY_DELAYS},
};

static const struct key_desc registry_keys[] = {
    {.name = "backend",
     .type = KEY_ENUM,
     F(config_registry, backend),
     .def = "sqlite",
     .names = backend_names},
    {.name = "sqlite_path",
     .type = KEY_STRING,
     F(config_registry, sqlite_path),
     .min = 0,
     .max = 4096,
     .def = "/var/lib/sendonce/registry.db"},
    {.name = "pg_conninfo",
     .type = KEY_STRING,
     F(config_registry, pg_conninfo),
     .min = 0,
     .max = 4096,
     .check_cb = check_pg_conninfo},
    {.name = "password",
     .type = KEY_SECRET,
     F(config_registry, pg_password),
     .min = 1,
     .max = 1024,
     .check_cb = check_one_line},
    {.name = "busy_timeout_ms",
     .type = KEY_INT,
     F(config_registry, busy_timeout_ms),
     .min = 0,
     .max = 600000,
     .def = "5000"},
    {.name = "lease_ttl_s",
     .type = KEY_INT,
     F(config_registry, lease_ttl_s),
     .min = 3,
     .max = 86400,
     .def = "60",
     .why = "the lease is renewed every ttl/3 and must outlive three "
            "renewal periods of at least 1 s each"},
    {.name = "mark_batch_size",
     .type = KEY_INT,
     F(config_registry, mark_batch_size),
     .min = 1,
     .max = 10000,
     .def = "100"},
    {.name = "commit_delay_us",
     .type = KEY_INT,
     F(config_registry, commit_delay_us),
     .min = 0,
     .max = 100000,
     .def = "1000"},
};

static const struct key_desc consumer_keys[] = {
    {.name = "workers",
     .type = KEY_INT,
     F(config_consumer, workers),
     .min = 1,
     .max = 256,
     .def = "4"},
    {.name = "max_attempts",
     .type = KEY_INT,
     F(config_consumer, max_attempts),
     .min = 1,
     .max = 100,
     .def = "5"},
    {.name = "max_message_bytes",
     .type = KEY_SIZE,
     F(config_consumer, max_message_bytes),
     .min = 1024,
     .max = 64 * 1024 * 1024,
     .def = "1048576"},
    {.name = "owner",
     .type = KEY_STRING,
     F(config_consumer, owner),
     .min = 0,
     .max = 256,
     .default_cb = default_owner},
};

static const struct key_desc provider_keys[] = {
    {.name = "url",
     .type = KEY_STRING,
     F(config_provider, url),
     .min = 1,
     .max = 2048,
     .check_cb = check_http_url},
    {.name = "method",
     .type = KEY_STRING,
     F(config_provider, method),
     .min = 1,
     .max = 8,
     .def = "POST",
     .check_cb = check_http_method},
    {.name = "body_template",
     .type = KEY_STRING,
     F(config_provider, body_template),
     .min = 1,
     .max = 65536,
     .def = "{\"campaign_id\":\"{{campaign_id}}\","
            "\"recipient_id\":\"{{recipient_id}}\","
            "\"address\":\"{{address}}\"}",
     .check_cb = check_template},
    {.name = "auth_header",
     .type = KEY_SECRET,
     F(config_provider, auth_header),
     .min = 3,
     .max = 8192,
     .check_cb = check_auth_header},
    {.name = "timeout_ms",
     .type = KEY_INT,
     F(config_provider, timeout_ms),
     .min = 100,
     .max = 600000,
     .def = "10000"},
    {.name = "concurrency",
     .type = KEY_INT,
     F(config_provider, concurrency),
     .min = 1,
     .max = 1024,
     .def = "8"},
    {.name = "rate_per_s",
     .type = KEY_INT,
     F(config_provider, rate_per_s),
     .min = 0,
     .max = 1000000,
     .def = "0"},
    {.name = "batch_size",
     .type = KEY_INT,
     F(config_provider, batch_size),
     .min = 1,
     .max = 10000,
     .def = "1"},
    {.name = "max_retries",
     .type = KEY_INT,
     F(config_provider, max_retries),
     .min = 0,
     .max = 100,
     .def = "3"},
    {.name = "retry_base_ms",
     .type = KEY_INT,
     F(config_provider, retry_base_ms),
     .min = 1,
     .max = 600000,
     .def = "500"},
};

static const struct key_desc watchdog_keys[] = {
    {.name = "interval_s",
     .type = KEY_INT,
     F(config_watchdog, interval_s),
     .min = 1,
     .max = 86400,
     .def = "30"},
    {.name = "grace_s",
     .type = KEY_INT,
     F(config_watchdog, grace_s),
     .min = 1,
     .max = 604800,
     .def = "300"},
    {.name = "stuck_after_s",
     .type = KEY_INT,
     F(config_watchdog, stuck_after_s),
     .min = 1,
     .max = 604800,
     .def = "600"},
    {.name = "republish_backoff_s",
     .type = KEY_INT,
     F(config_watchdog, republish_backoff_s),
     .min = 1,
     .max = 86400,
     .def = "60"},
    {.name = "max_republishes",
     .type = KEY_INT,
     F(config_watchdog, max_republishes),
     .min = 0,
     .max = 1000,
     .def = "5"},
    {.name = "mgmt_url",
     .type = KEY_STRING,
     F(config_watchdog, mgmt_url),
     .min = 1,
     .max = 2048,
     .def = "http://127.0.0.1:15672",
     .check_cb = check_http_url},
    {.name = "mgmt_user",
     .type = KEY_STRING,
     F(config_watchdog, mgmt_user),
     .min = 0,
     .max = 256},
    {.name = "mgmt_password",
     .type = KEY_SECRET,
     F(config_watchdog, mgmt_password),
     .min = 1,
     .max = 1024,
     .check_cb = check_one_line},
};

static const struct key_desc metrics_keys[] = {
    {.name = "enabled",
     .type = KEY_BOOL,
     F(config_metrics, enabled),
     .def = "true"},
    {.name = "address",
     .type = KEY_STRING,
     F(config_metrics, address),
     .min = 1,
     .max = 255,
     .def = "127.0.0.1"},
    {.name = "publisher_port",
     .type = KEY_INT,
     F(config_metrics, publisher_port),
     .min = 1,
     .max = 65535,
     .def = "9641"},
    {.name = "consumer_port",
     .type = KEY_INT,
     F(config_metrics, consumer_port),
     .min = 1,
     .max = 65535,
     .def = "9642"},
    {.name = "watchdog_port",
     .type = KEY_INT,
     F(config_metrics, watchdog_port),
     .min = 1,
     .max = 65535,
     .def = "9643"},
};

static const struct key_desc log_keys[] = {
    {.name = "level",
     .type = KEY_ENUM,
     F(config_log, level),
     .def = "info",
     .names = level_names},
    {.name = "format",
     .type = KEY_ENUM,
     F(config_log, format),
     .def = "kv",
     .names = format_names},
};

/* Enum fields are written through an int. */
_Static_assert(sizeof(enum config_registry_backend) == sizeof(int),
               "enum stored as int");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum stored as int");

#define SECTION(n, t)                              \
  static const struct section_desc n##_section = { \
      #n, offsetof(struct config, t), n##_keys, NKEYS(n##_keys)}

SECTION(broker, broker);
SECTION(topology, topology);
SECTION(registry, registry);
SECTION(consumer, consumer);
SECTION(watchdog, watchdog);
SECTION(metrics, metrics);
SECTION(log, log);

const struct section_desc *const config_sections[] = {
    &broker_section,   &topology_section, &registry_section, &consumer_section,
    &watchdog_section, &metrics_section,  &log_section,
};
const size_t config_n_sections = NKEYS(config_sections);

const struct section_desc config_provider_section = {
    "providers", 0, provider_keys, NKEYS(provider_keys)};

/* ---- release --------------------------------------------------------- */

void config_section_free(const struct section_desc *sec, void *base)
{
  for (size_t i = 0; i < sec->n_keys; i++) {
    const struct key_desc *key = &sec->keys[i];
    void *field = config_field(base, key);
    switch (key->type) {
      case KEY_STRING:
      case KEY_SECRET: {
        char **s = field;
        if (key->type == KEY_SECRET && *s) {
          /* Do not leave a password lying in freed heap memory. */
          volatile char *p = *s;
          while (*p)
            *p++ = '\0';
        }
        free(*s);
        *s = NULL;
        break;
      }
      case KEY_STRLIST: {
        char **list = field;
        size_t *count = (size_t *)((char *)base + key->count_offset);
        for (size_t j = 0; j < *count; j++) {
          free(list[j]);
          list[j] = NULL;
        }
        *count = 0;
        break;
      }
      case KEY_GROUP:
        config_section_free(key->sub, field);
        break;
      case KEY_BOOL:
      case KEY_INT:
      case KEY_SIZE:
      case KEY_ENUM:
      case KEY_INTLIST:
        break;
    }
  }
}

void config_free(struct config *cfg)
{
  if (!cfg)
    return;
  for (size_t i = 0; i < config_n_sections; i++)
    config_section_free(config_sections[i],
                        (char *)cfg + config_sections[i]->offset);
  for (size_t i = 0; i < cfg->n_providers && i < CONFIG_MAX_PROVIDERS; i++) {
    config_section_free(&config_provider_section, &cfg->providers[i]);
    free(cfg->providers[i].channel);
  }
  free(cfg->path);
  memset(cfg, 0, sizeof(*cfg));
}

const struct config_provider *config_provider_find(const struct config *cfg,
                                                   const char *channel)
{
  if (!cfg || !channel)
    return NULL;
  for (size_t i = 0; i < cfg->n_providers; i++) {
    if (cfg->providers[i].channel &&
        strcmp(cfg->providers[i].channel, channel) == 0)
      return &cfg->providers[i];
  }
  return NULL;
}
