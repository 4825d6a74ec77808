/* config.h - the effective configuration of a sendonce process.
 *
 * One libconfig file (see config/sendonce.conf.example), every key
 * overridable by an environment variable SENDONCE_<SECTION>_<KEY>
 * (upper case; e.g. SENDONCE_BROKER_URI, SENDONCE_REGISTRY_BACKEND,
 * SENDONCE_PROVIDERS_EMAIL_URL). Secrets (broker password, registry
 * password, management password, provider auth headers) come only from the
 * environment or from a file named in the config; never from argv, and
 * config_print() redacts them.
 *
 * Plain data: every string is owned by the struct and released by
 * config_free(). Durations carry their unit in the field name.
 */
#ifndef SENDONCE_CONFIG_H
#define SENDONCE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "status.h"

#define CONFIG_MAX_URIS 8
#define CONFIG_MAX_PROVIDERS 16
#define CONFIG_MAX_RETRY_DELAYS 8

/* Exit status for a bad configuration (sysexits-like, fixed by DESIGN). */
#define CONFIG_EXIT_BAD 2

struct config_tls {
  char *ca_file;    /* CA bundle that verifies the broker; NULL = system */
  char *cert_file;  /* client certificate (PEM) or NULL */
  char *key_file;   /* client key (PEM) or NULL */
  bool verify_peer; /* verify the broker's certificate and hostname */
};

struct config_broker {
  char *uris[CONFIG_MAX_URIS]; /* amqp[s]://host:port/vhost, tried in order;
                                  a URI must not carry a password */
  size_t n_uris;
  char *user;             /* login user (overrides the URI's user) */
  char *password;         /* secret: env SENDONCE_BROKER_PASSWORD or
                             password_file */
  int heartbeat_s;        /* AMQP heartbeat; 0 disables (refused) */
  int connect_timeout_ms; /* TCP + AMQP handshake bound */
  int confirm_timeout_ms; /* bound on waiting for a publisher confirm */
  int reconnect_min_ms;   /* first reconnect backoff */
  int reconnect_max_ms;   /* backoff cap */
  struct config_tls tls;  /* used for amqps:// URIs */
};

struct config_topology {
  char *prefix;       /* name prefix: "<prefix>", "<prefix>.campaigns"
                         ... default "sendonce" */
  int delivery_limit; /* x-delivery-limit of the main queue */
  int retry_delays_s[CONFIG_MAX_RETRY_DELAYS]; /* one retry queue each */
  size_t n_retry_delays;
};

enum config_registry_backend {
  CONFIG_REGISTRY_SQLITE = 0,
  CONFIG_REGISTRY_POSTGRESQL = 1,
};

struct config_registry {
  enum config_registry_backend backend; /* "sqlite" (default) | "postgresql" */
  char *sqlite_path;   /* SQLite file; default /var/lib/sendonce/registry.db */
  char *pg_conninfo;   /* libpq conninfo without password */
  char *pg_password;   /* secret: env SENDONCE_REGISTRY_PASSWORD or
                          password_file */
  int busy_timeout_ms; /* SQLite busy timeout / PG statement timeout */
  int lease_ttl_s;     /* claim lease; renewed at ttl/3 */
  int mark_batch_size; /* delivery marks written per transaction */
  int commit_delay_us; /* SQLite: group commit's wait for other steps */
};

struct config_consumer {
  int workers;              /* worker threads; prefetch = workers */
  int max_attempts;         /* releases before a campaign goes DEAD */
  size_t max_message_bytes; /* larger campaign-due bodies are dead-lettered */
  char *owner;              /* owner name in the registry; default host:pid */
};

struct config_provider {
  char *channel;       /* channel name, e.g. "email", "sms" */
  char *url;           /* provider endpoint (http/https) */
  char *method;        /* HTTP method, default "POST" */
  char *body_template; /* JSON body with {{address}}, {{vars.X}},
                          {{content.X}}, {{campaign_id}}, {{recipient_id}} */
  char *auth_header;   /* secret: full header line, e.g. "Authorization:
                          Bearer ..."; env SENDONCE_PROVIDERS_<CH>_AUTH_HEADER
                          or auth_header_file */
  int timeout_ms;      /* per request */
  int concurrency;     /* requests in flight */
  int rate_per_s;      /* 0 = unlimited */
  int batch_size;      /* recipients per request; 1 = one each */
  int max_retries;     /* per request, for timeouts/429/5xx */
  int retry_base_ms;   /* backoff base; jittered, doubled per retry */
};

struct config_watchdog {
  int interval_s;          /* pass interval */
  int grace_s;             /* overdue by more than this before acting */
  int stuck_after_s;       /* no progress for this long while leased: stuck */
  int republish_backoff_s; /* minimum time between republishes */
  int max_republishes;     /* cap per campaign */
  char *mgmt_url;          /* management API base, http://127.0.0.1:15672 */
  char *mgmt_user;         /* default: broker.user */
  char *mgmt_password;     /* secret: env SENDONCE_WATCHDOG_MGMT_PASSWORD or
                              mgmt_password_file; default broker password */
};

struct config_metrics {
  bool enabled;
  char *address;      /* listen address, default 127.0.0.1 */
  int publisher_port; /* default 9641 */
  int consumer_port;  /* default 9642 */
  int watchdog_port;  /* default 9643 */
};

struct config_log {
  enum log_level level;
  enum log_format format;
};

struct config {
  char *path; /* file loaded, or NULL when defaults only */
  struct config_broker broker;
  struct config_topology topology;
  struct config_registry registry;
  struct config_consumer consumer;
  struct config_provider providers[CONFIG_MAX_PROVIDERS];
  size_t n_providers;
  struct config_watchdog watchdog;
  struct config_metrics metrics;
  struct config_log log;
};

/* config_load: fill *cfg from `path` (NULL: the default search path,
 * $SENDONCE_CONFIG, ./sendonce.conf, SENDONCE_SYSCONFDIR/sendonce/
 * sendonce.conf; defaults alone if none exists), then apply environment
 * overrides, read secret files and validate.
 * On failure returns SO_ERR_INVALID (or SO_ERR_IO / SO_ERR_NOTFOUND for an
 * unreadable file or secret file) and writes "file:line: key: message" to
 * err. Unknown keys are errors. *cfg must be released with config_free()
 * either way. */
int config_load(struct config *cfg, const char *path, char *err,
                size_t errlen) SO_MUST_CHECK;

/* config_free: release every string; safe on a zeroed or failed config. */
void config_free(struct config *cfg);

/* config_provider_find: the provider for `channel`, or NULL. */
const struct config_provider *config_provider_find(const struct config *cfg,
                                                   const char *channel);

/* config_print: write the effective config in libconfig syntax with every
 * secret replaced by "<redacted>" (or "<unset>"). */
void config_print(const struct config *cfg, FILE *out);

#endif /* SENDONCE_CONFIG_H */
