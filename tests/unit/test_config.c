/* test_config.c - config_load(): defaults, every section's keys, the
 * search path, environment overrides, secrets from the environment and
 * from files, a table of bad configs (exact "file:line: key:" prefix and
 * status), printing (re-parsable, secrets never shown), and the common
 * command line (cli.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "log.h"

extern char **environ;

static char tmpdir[64];
static char paths[64][PATH_MAX];
static size_t n_paths;

/* clear_env: no SENDONCE_* variable of the caller's leaks into a test. */
static void clear_env(void)
{
  char names[128][128];
  size_t n = 0;
  for (char **e = environ; *e && n < 128; e++) {
    size_t len = strcspn(*e, "=");
    if (strncmp(*e, "SENDONCE_", 9) == 0 && len < sizeof(names[0])) {
      memcpy(names[n], *e, len);
      names[n++][len] = '\0';
    }
  }
  for (size_t i = 0; i < n; i++)
    unsetenv(names[i]);
}

/* write_file: tmpdir/name with `text` and `mode`; returns the path. */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
  assert_true(n_paths < 64);
  char *path = paths[n_paths++];
  snprintf(path, PATH_MAX, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(chmod(path, mode), 0);
  return path;
}

static int setup(void **state)
{
  (void)state;
  clear_env();
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/sendonce-test-config-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  n_paths = 0;
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  for (size_t i = 0; i < n_paths; i++)
    unlink(paths[i]);
  rmdir(tmpdir);
  clear_env();
  return 0;
}

/* load: write `text` to tmpdir/test.conf and load it. */
static int load(const char *text, struct config *cfg, char *err, size_t errlen,
                const char **path)
{
  const char *p = write_file("test.conf", text, 0600);
  if (path)
    *path = p;
  int rc = config_load(cfg, p, err, errlen);
  if (rc < 0)
    print_message("load: %s\n", err);
  return rc;
}

static void test_defaults(void **state)
{
  struct config cfg;
  char err[512];
  (void)state;

  assert_int_equal(load("", &cfg, err, sizeof(err), NULL), SO_OK);
  assert_int_equal(cfg.broker.n_uris, 1);
  assert_string_equal(cfg.broker.uris[0], "amqp://127.0.0.1:5672/sendonce");
  assert_null(cfg.broker.user);
  assert_null(cfg.broker.password);
  assert_int_equal(cfg.broker.heartbeat_s, 30);
  assert_int_equal(cfg.broker.connect_timeout_ms, 10000);
  assert_int_equal(cfg.broker.confirm_timeout_ms, 30000);
  assert_int_equal(cfg.broker.reconnect_min_ms, 500);
  assert_int_equal(cfg.broker.reconnect_max_ms, 30000);
  assert_null(cfg.broker.tls.ca_file);
  assert_true(cfg.broker.tls.verify_peer);
  assert_string_equal(cfg.topology.prefix, "sendonce");
  assert_int_equal(cfg.topology.delivery_limit, 5);
  assert_int_equal(cfg.topology.n_retry_delays, 3);
  assert_int_equal(cfg.topology.retry_delays_s[0], 5);
  assert_int_equal(cfg.topology.retry_delays_s[1], 30);
  assert_int_equal(cfg.topology.retry_delays_s[2], 300);
  assert_int_equal(cfg.registry.backend, CONFIG_REGISTRY_SQLITE);
  assert_string_equal(cfg.registry.sqlite_path,
                      "/var/lib/sendonce/registry.db");
  assert_null(cfg.registry.pg_conninfo);
  assert_null(cfg.registry.pg_password);
  assert_int_equal(cfg.registry.busy_timeout_ms, 5000);
  assert_int_equal(cfg.registry.lease_ttl_s, 60);
  assert_int_equal(cfg.registry.mark_batch_size, 100);
  assert_int_equal(cfg.registry.commit_delay_us, 1000);
  assert_int_equal(cfg.consumer.workers, 4);
  assert_int_equal(cfg.consumer.max_attempts, 5);
  assert_int_equal(cfg.consumer.max_message_bytes, 1024 * 1024);
  /* owner defaults to host:pid */
  char suffix[32];
  snprintf(suffix, sizeof(suffix), ":%ld", (long)getpid());
  assert_non_null(cfg.consumer.owner);
  assert_non_null(strstr(cfg.consumer.owner, suffix));
  assert_int_equal(cfg.n_providers, 0);
  assert_int_equal(cfg.watchdog.interval_s, 30);
  assert_int_equal(cfg.watchdog.grace_s, 300);
  assert_int_equal(cfg.watchdog.stuck_after_s, 600);
  assert_int_equal(cfg.watchdog.republish_backoff_s, 60);
  assert_int_equal(cfg.watchdog.max_republishes, 5);
  assert_string_equal(cfg.watchdog.mgmt_url, "http://127.0.0.1:15672");
  assert_true(cfg.metrics.enabled);
  assert_string_equal(cfg.metrics.address, "127.0.0.1");
  assert_int_equal(cfg.metrics.publisher_port, 9641);
  assert_int_equal(cfg.metrics.consumer_port, 9642);
  assert_int_equal(cfg.metrics.watchdog_port, 9643);
  assert_int_equal(cfg.log.level, LOG_LEVEL_INFO);
  assert_int_equal(cfg.log.format, LOG_FORMAT_KV);
  /* The host:pid default is this process's: printed as "" so a printed
   * config reused by another consumer does not share the identity. */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  config_print(&cfg, f);
  assert_int_equal(fclose(f), 0);
  assert_non_null(strstr(buf, "  owner = \"\"; # default, now \""));
  free(buf);
  config_free(&cfg);
  config_free(&cfg); /* a freed config is a zeroed one: safe again */
}

static const char full_config[] =
    "broker = {\n"
    "  uri = [ \"amqp://10.0.0.1:5672/v\", \"amqps://10.0.0.2:5671/v\" ];\n"
    "  user = \"svc\";\n"
    "  heartbeat_s = 11; connect_timeout_ms = 2000;\n"
    "  confirm_timeout_ms = 3000; reconnect_min_ms = 100;\n"
    "  reconnect_max_ms = 9000;\n"
    "  tls = { ca_file = \"/ca.pem\"; cert_file = \"/c.pem\";\n"
    "          key_file = \"/k.pem\"; verify_peer = false; };\n"
    "};\n"
    "topology = { prefix = \"acme.so\"; delivery_limit = 7;\n"
    "             retry_delays_s = [ 1, 60 ]; };\n"
    "registry = { backend = \"postgresql\"; sqlite_path = \"\";\n"
    "  pg_conninfo = \"host=db dbname=so\"; busy_timeout_ms = 1000;\n"
    "  lease_ttl_s = 30; mark_batch_size = 50; commit_delay_us = 0; };\n"
    "consumer = { workers = 16; max_attempts = 3;\n"
    "  max_message_bytes = 65536; owner = \"node-a\"; };\n"
    "providers = {\n"
    "  email = { url = \"https://mail.example/send\"; method = \"PUT\";\n"
    "    body_template = \"{\\\"m\\\":[{{#recipients}}"
    "{\\\"to\\\":\\\"{{address}}\\\"}{{/recipients}}]}\";\n"
    "    timeout_ms = 1500; concurrency = 3; rate_per_s = 10;\n"
    "    batch_size = 2; max_retries = 4; retry_base_ms = 250; };\n"
    "  sms = { url = \"http://127.0.0.1:18080/sms\"; };\n"
    "};\n"
    "watchdog = { interval_s = 5; grace_s = 45; stuck_after_s = 90;\n"
    "  republish_backoff_s = 20; max_republishes = 2;\n"
    "  mgmt_url = \"https://rmq:15671\"; mgmt_user = \"ops\"; };\n"
    "metrics = { enabled = false; address = \"0.0.0.0\";\n"
    "  publisher_port = 1; consumer_port = 2; watchdog_port = 3; };\n"
    "log = { level = \"debug\"; format = \"json\"; };\n";

static void test_every_key(void **state)
{
  struct config cfg;
  char err[512];
  const char *path;
  (void)state;

  assert_int_equal(load(full_config, &cfg, err, sizeof(err), &path), SO_OK);
  assert_string_equal(cfg.path, path);
  assert_int_equal(cfg.broker.n_uris, 2);
  assert_string_equal(cfg.broker.uris[1], "amqps://10.0.0.2:5671/v");
  assert_string_equal(cfg.broker.user, "svc");
  assert_int_equal(cfg.broker.heartbeat_s, 11);
  assert_int_equal(cfg.broker.connect_timeout_ms, 2000);
  assert_int_equal(cfg.broker.confirm_timeout_ms, 3000);
  assert_int_equal(cfg.broker.reconnect_min_ms, 100);
  assert_int_equal(cfg.broker.reconnect_max_ms, 9000);
  assert_string_equal(cfg.broker.tls.ca_file, "/ca.pem");
  assert_string_equal(cfg.broker.tls.cert_file, "/c.pem");
  assert_string_equal(cfg.broker.tls.key_file, "/k.pem");
  assert_false(cfg.broker.tls.verify_peer);
  assert_string_equal(cfg.topology.prefix, "acme.so");
  assert_int_equal(cfg.topology.delivery_limit, 7);
  assert_int_equal(cfg.topology.n_retry_delays, 2);
  assert_int_equal(cfg.topology.retry_delays_s[1], 60);
  assert_int_equal(cfg.registry.backend, CONFIG_REGISTRY_POSTGRESQL);
  assert_null(cfg.registry.sqlite_path); /* "" is unset */
  assert_string_equal(cfg.registry.pg_conninfo, "host=db dbname=so");
  assert_int_equal(cfg.registry.busy_timeout_ms, 1000);
  assert_int_equal(cfg.registry.lease_ttl_s, 30);
  assert_int_equal(cfg.registry.mark_batch_size, 50);
  assert_int_equal(cfg.registry.commit_delay_us, 0);
  assert_int_equal(cfg.consumer.workers, 16);
  assert_int_equal(cfg.consumer.max_attempts, 3);
  assert_int_equal(cfg.consumer.max_message_bytes, 65536);
  assert_string_equal(cfg.consumer.owner, "node-a");
  assert_int_equal(cfg.n_providers, 2);
  const struct config_provider *p = config_provider_find(&cfg, "email");
  assert_non_null(p);
  assert_string_equal(p->url, "https://mail.example/send");
  assert_string_equal(p->method, "PUT");
  assert_string_equal(p->body_template,
                      "{\"m\":[{{#recipients}}{\"to\":\"{{address}}\"}"
                      "{{/recipients}}]}");
  assert_int_equal(p->timeout_ms, 1500);
  assert_int_equal(p->concurrency, 3);
  assert_int_equal(p->rate_per_s, 10);
  assert_int_equal(p->batch_size, 2);
  assert_int_equal(p->max_retries, 4);
  assert_int_equal(p->retry_base_ms, 250);
  assert_null(p->auth_header);
  p = config_provider_find(&cfg, "sms");
  assert_non_null(p);
  assert_string_equal(p->method, "POST"); /* provider defaults */
  assert_int_equal(p->concurrency, 8);
  assert_int_equal(p->timeout_ms, 10000);
  assert_non_null(strstr(p->body_template, "{{recipient_id}}"));
  assert_null(config_provider_find(&cfg, "push"));
  assert_null(config_provider_find(&cfg, NULL));
  assert_int_equal(cfg.watchdog.interval_s, 5);
  assert_int_equal(cfg.watchdog.grace_s, 45);
  assert_int_equal(cfg.watchdog.stuck_after_s, 90);
  assert_int_equal(cfg.watchdog.republish_backoff_s, 20);
  assert_int_equal(cfg.watchdog.max_republishes, 2);
  assert_string_equal(cfg.watchdog.mgmt_url, "https://rmq:15671");
  assert_string_equal(cfg.watchdog.mgmt_user, "ops");
  assert_false(cfg.metrics.enabled);
  assert_string_equal(cfg.metrics.address, "0.0.0.0");
  assert_int_equal(cfg.metrics.watchdog_port, 3);
  assert_int_equal(cfg.log.level, LOG_LEVEL_DEBUG);
  assert_int_equal(cfg.log.format, LOG_FORMAT_JSON);
  config_free(&cfg);

  /* A single URI may be a plain string. */
  assert_int_equal(
      load("broker = { uri = \"amqp://h/v\"; };", &cfg, err, sizeof(err), NULL),
      SO_OK);
  assert_int_equal(cfg.broker.n_uris, 1);
  assert_string_equal(cfg.broker.uris[0], "amqp://h/v");
  config_free(&cfg);
}

static void test_search_path(void **state)
{
  struct config cfg;
  char err[512], cwd[PATH_MAX];
  (void)state;

  const char *env_conf =
      write_file("env.conf", "log = { level = \"warn\"; };", 0600);
  setenv("SENDONCE_CONFIG", env_conf, 1);
  assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), SO_OK);
  assert_string_equal(cfg.path, env_conf);
  assert_int_equal(cfg.log.level, LOG_LEVEL_WARN);
  config_free(&cfg);

  /* An explicit --config wins over $SENDONCE_CONFIG. */
  const char *arg_conf =
      write_file("arg.conf", "log = { level = \"error\"; };", 0600);
  assert_int_equal(config_load(&cfg, arg_conf, err, sizeof(err)), SO_OK);
  assert_int_equal(cfg.log.level, LOG_LEVEL_ERROR);
  config_free(&cfg);

  /* A named file that does not exist is an error, not the defaults. */
  setenv("SENDONCE_CONFIG", "/nonexistent/sendonce.conf", 1);
  assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), SO_ERR_NOTFOUND);
  assert_string_equal(err,
                      "/nonexistent/sendonce.conf (from SENDONCE_CONFIG): "
                      "cannot read: No such file or directory");
  config_free(&cfg);
  unsetenv("SENDONCE_CONFIG");
  assert_int_equal(config_load(&cfg, "/nonexistent/x.conf", err, sizeof(err)),
                   SO_ERR_NOTFOUND);
  assert_int_equal(strncmp(err, "/nonexistent/x.conf: cannot read", 32), 0);
  config_free(&cfg);

  /* ./sendonce.conf */
  write_file("sendonce.conf", "consumer = { workers = 9; };", 0600);
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir(tmpdir), 0);
  int rc = config_load(&cfg, NULL, err, sizeof(err));
  assert_int_equal(chdir(cwd), 0);
  assert_int_equal(rc, SO_OK);
  assert_string_equal(cfg.path, "sendonce.conf");
  assert_int_equal(cfg.consumer.workers, 9);
  config_free(&cfg);

  /* Otherwise the installed file, else the defaults alone. */
  const char *sys = SENDONCE_SYSCONFDIR "/sendonce/sendonce.conf";
  assert_int_equal(chdir("/"), 0); /* a directory without sendonce.conf */
  rc = config_load(&cfg, NULL, err, sizeof(err));
  assert_int_equal(chdir(cwd), 0);
  if (access(sys, F_OK) == 0) {
    assert_int_equal(rc, SO_OK);
    assert_string_equal(cfg.path, sys);
  } else {
    assert_int_equal(rc, SO_OK);
    assert_null(cfg.path);
    assert_int_equal(cfg.consumer.workers, 4);
  }
  config_free(&cfg);
}

static void test_env_overrides(void **state)
{
  struct config cfg;
  char err[512];
  (void)state;

  setenv("SENDONCE_BROKER_URI", "amqp://a:5672/v, amqp://b:5672/v", 1);
  setenv("SENDONCE_BROKER_HEARTBEAT_S", "15", 1);
  setenv("SENDONCE_BROKER_TLS_VERIFY_PEER", "no", 1);
  setenv("SENDONCE_TOPOLOGY_RETRY_DELAYS_S", "1,2", 1);
  setenv("SENDONCE_REGISTRY_BACKEND", "postgresql", 1);
  setenv("SENDONCE_REGISTRY_PG_CONNINFO", "host=127.0.0.1 dbname=x", 1);
  setenv("SENDONCE_CONSUMER_MAX_MESSAGE_BYTES", "2048", 1);
  setenv("SENDONCE_CONSUMER_OWNER", "", 1); /* empty: unset */
  setenv("SENDONCE_WATCHDOG_GRACE_S", "900", 1);
  setenv("SENDONCE_METRICS_ENABLED", "false", 1);
  setenv("SENDONCE_LOG_LEVEL", "debug", 1);
  setenv("SENDONCE_LOG_FORMAT", "json", 1);
  setenv("SENDONCE_PROVIDERS_EMAIL_TIMEOUT_MS", "1234", 1);
  setenv("SENDONCE_PROVIDERS", "sms, push_web", 1);
  setenv("SENDONCE_PROVIDERS_SMS_URL", "http://127.0.0.1:18080/sms", 1);
  setenv("SENDONCE_PROVIDERS_PUSH_WEB_URL", "http://127.0.0.1:1/push", 1);
  setenv("SENDONCE_PROVIDERS_PUSH_WEB_CONCURRENCY", "10", 1);

  assert_int_equal(load("broker = { heartbeat_s = 20; };\n"
                        "providers = { email = { url = \"http://e/\";\n"
                        "  timeout_ms = 999; }; };\n",
                        &cfg, err, sizeof(err), NULL),
                   SO_OK);
  assert_int_equal(cfg.broker.n_uris, 2);
  assert_string_equal(cfg.broker.uris[0], "amqp://a:5672/v");
  assert_string_equal(cfg.broker.uris[1], "amqp://b:5672/v");
  assert_int_equal(cfg.broker.heartbeat_s, 15); /* env wins over file */
  assert_false(cfg.broker.tls.verify_peer);
  assert_int_equal(cfg.topology.n_retry_delays, 2);
  assert_int_equal(cfg.topology.retry_delays_s[1], 2);
  assert_int_equal(cfg.registry.backend, CONFIG_REGISTRY_POSTGRESQL);
  assert_string_equal(cfg.registry.pg_conninfo, "host=127.0.0.1 dbname=x");
  assert_int_equal(cfg.consumer.max_message_bytes, 2048);
  assert_non_null(cfg.consumer.owner);
  assert_int_equal(cfg.watchdog.grace_s, 900);
  assert_false(cfg.metrics.enabled);
  assert_int_equal(cfg.log.level, LOG_LEVEL_DEBUG);
  assert_int_equal(cfg.log.format, LOG_FORMAT_JSON);
  assert_int_equal(cfg.n_providers, 3);
  assert_int_equal(config_provider_find(&cfg, "email")->timeout_ms, 1234);
  assert_string_equal(config_provider_find(&cfg, "sms")->url,
                      "http://127.0.0.1:18080/sms");
  const struct config_provider *p = config_provider_find(&cfg, "push_web");
  assert_non_null(p);
  assert_int_equal(p->concurrency, 10);
  config_free(&cfg);
}

struct env_case {
  const char *var;
  const char *value;
  int status;
  const char *want; /* exact prefix of the error */
};

static const struct env_case env_cases[] = {
    {"SENDONCE_BROKER_HEARTBEAT_S", "abc", SO_ERR_INVALID,
     "env SENDONCE_BROKER_HEARTBEAT_S: broker.heartbeat_s: expected an "
     "integer (got \"abc\")"},
    {"SENDONCE_BROKER_HEARTBEATS", "5", SO_ERR_INVALID,
     "env SENDONCE_BROKER_HEARTBEATS: environment: unknown variable (did you "
     "mean SENDONCE_BROKER_HEARTBEAT_S?)"},
    {"SENDONCE_PROVIDERS_EMAIL_URLL", "http://x/", SO_ERR_INVALID,
     "env SENDONCE_PROVIDERS_EMAIL_URLL: environment: unknown variable (did "
     "you mean SENDONCE_PROVIDERS_EMAIL_URL?)"},
    {"SENDONCE_REGISTRY_BACKEND", "mysql", SO_ERR_INVALID,
     "env SENDONCE_REGISTRY_BACKEND: registry.backend: must be one of "
     "sqlite|postgresql"},
    {"SENDONCE_PROVIDERS_PUSH_URL", "http://x/", SO_ERR_INVALID,
     "env SENDONCE_PROVIDERS_PUSH_URL: environment: names no key of a known "
     "provider channel"},
    {"SENDONCE_BROKER_URI", "amqp://u:hunter2@h/v", SO_ERR_INVALID,
     "env SENDONCE_BROKER_URI: broker.uri: element 1: a broker URI must not "
     "carry a password"},
    {"SENDONCE_METRICS_ENABLED", "maybe", SO_ERR_INVALID,
     "env SENDONCE_METRICS_ENABLED: metrics.enabled: expected true or false"},
    {"SENDONCE_TOPOLOGY_RETRY_DELAYS_S", "5,x", SO_ERR_INVALID,
     "env SENDONCE_TOPOLOGY_RETRY_DELAYS_S: topology.retry_delays_s: element "
     "2: expected an integer"},
    {"SENDONCE_PROVIDERS", "email,Bad", SO_ERR_INVALID,
     "env SENDONCE_PROVIDERS: providers.Bad: a channel name is"},
    {"SENDONCE_BROKER_PASSWORD_FILE", "/nonexistent/pw", SO_ERR_NOTFOUND,
     "env SENDONCE_BROKER_PASSWORD_FILE: broker.password_file: cannot read "
     "secret file /nonexistent/pw"},
    {"SENDONCE_WATCHDOG_GRACE_S", "10", SO_ERR_INVALID,
     "env SENDONCE_WATCHDOG_GRACE_S: watchdog.grace_s: 10 s is shorter than "
     "registry.lease_ttl_s (60 s)"},
    {"SENDONCE_PROVIDERS_EMAIL_AUTH_HEADER", "Bearer hunter2", SO_ERR_INVALID,
     "env SENDONCE_PROVIDERS_EMAIL_AUTH_HEADER: providers.email.auth_header: "
     "must be a header line"},
};

static void test_env_errors(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof(env_cases) / sizeof(env_cases[0]); i++) {
    const struct env_case *c = &env_cases[i];
    struct config cfg;
    char err[512];
    setenv(c->var, c->value, 1);
    int rc = load(
        "providers = { email = { url = \"http://e/\"; };\n"
        "  sms = { url = \"http://s/\"; }; };",
        &cfg, err, sizeof(err), NULL);
    unsetenv(c->var);
    config_free(&cfg);
    print_message("case %s: %s\n", c->var, err);
    assert_int_equal(rc, c->status);
    assert_int_equal(strncmp(err, c->want, strlen(c->want)), 0);
    assert_null(strstr(err, "hunter2"));
  }
}

static void test_secrets_env(void **state)
{
  struct config cfg;
  char err[512];
  (void)state;

  setenv("SENDONCE_BROKER_PASSWORD", "b-secret", 1);
  setenv("SENDONCE_REGISTRY_PASSWORD", "r-secret", 1);
  setenv("SENDONCE_PROVIDERS_EMAIL_AUTH_HEADER", "Authorization: Bearer e", 1);
  assert_int_equal(load("broker = { user = \"svc\"; };\n"
                        "providers = { email = { url = \"http://e/\"; }; };",
                        &cfg, err, sizeof(err), NULL),
                   SO_OK);
  assert_string_equal(cfg.broker.password, "b-secret");
  assert_string_equal(cfg.registry.pg_password, "r-secret");
  assert_string_equal(config_provider_find(&cfg, "email")->auth_header,
                      "Authorization: Bearer e");
  /* The management login defaults to the broker's. */
  assert_string_equal(cfg.watchdog.mgmt_user, "svc");
  assert_string_equal(cfg.watchdog.mgmt_password, "b-secret");
  config_free(&cfg);

  /* A provider variable for a channel that is not defined is refused. */
  assert_int_equal(load("", &cfg, err, sizeof(err), NULL), SO_ERR_INVALID);
  assert_non_null(strstr(err, "SENDONCE_PROVIDERS_EMAIL_AUTH_HEADER"));
  config_free(&cfg);
  unsetenv("SENDONCE_PROVIDERS_EMAIL_AUTH_HEADER");

  setenv("SENDONCE_WATCHDOG_MGMT_PASSWORD", "m-secret", 1);
  assert_int_equal(load("", &cfg, err, sizeof(err), NULL), SO_OK);
  assert_string_equal(cfg.watchdog.mgmt_password, "m-secret");
  config_free(&cfg);
}

static void test_secrets_file(void **state)
{
  struct config cfg;
  char err[512];
  (void)state;

  write_file("broker.pw", "pw-from-file\n", 0600);
  const char *reg = write_file("registry.pw", "reg-pw\r\n", 0640);
  const char *hdr = write_file("email.auth", "X-Api-Key: k1\n", 0600);
  char text[1024];
  snprintf(text, sizeof(text),
           "broker = { password_file = \"broker.pw\"; };\n" /* relative */
           "registry = { password_file = \"%s\"; };\n"
           "providers = { email = { url = \"http://e/\";\n"
           "  auth_header_file = \"%s\"; }; };\n",
           reg, hdr);
  assert_int_equal(load(text, &cfg, err, sizeof(err), NULL), SO_OK);
  assert_string_equal(cfg.broker.password, "pw-from-file");
  assert_string_equal(cfg.registry.pg_password, "reg-pw");
  assert_string_equal(config_provider_find(&cfg, "email")->auth_header,
                      "X-Api-Key: k1");
  config_free(&cfg);

  /* The environment's value wins over a file. */
  setenv("SENDONCE_BROKER_PASSWORD", "from-env", 1);
  assert_int_equal(load(text, &cfg, err, sizeof(err), NULL), SO_OK);
  assert_string_equal(cfg.broker.password, "from-env");
  config_free(&cfg);
  unsetenv("SENDONCE_BROKER_PASSWORD");

  /* SENDONCE_..._FILE names a file too; a world-readable one loads (with
   * a warning). */
  const char *wr = write_file("world.pw", "open-pw", 0644);
  setenv("SENDONCE_WATCHDOG_MGMT_PASSWORD_FILE", wr, 1);
  assert_int_equal(load("", &cfg, err, sizeof(err), NULL), SO_OK);
  assert_string_equal(cfg.watchdog.mgmt_password, "open-pw");
  config_free(&cfg);
  unsetenv("SENDONCE_WATCHDOG_MGMT_PASSWORD_FILE");

  /* Empty, multi-line and missing files are errors. */
  const char *empty = write_file("empty.pw", "\n", 0600);
  const char *two = write_file("two.pw", "a\nb\n", 0600);
  const char *cases[][2] = {
      {empty, "is empty"},
      {two, "must be a single line"},
      {"/nonexistent/none.pw", "cannot read secret file"},
  };
  for (size_t i = 0; i < 3; i++) {
    const char *path;
    snprintf(text, sizeof(text), "\nregistry = { password_file = \"%s\"; };\n",
             cases[i][0]);
    int rc = load(text, &cfg, err, sizeof(err), &path);
    config_free(&cfg);
    assert_true(rc < 0);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s:2: registry.password_file: ", path);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);
    assert_non_null(strstr(err, cases[i][1]));
  }
}

struct bad_case {
  const char *text;
  int line;
  const char *want; /* after "path:line: " */
  int status;
};

static const struct bad_case bad_cases[] = {
    {"broker = {\n  heartbeat_s = 0;\n};", 2,
     "broker.heartbeat_s: must be between 1 and 3600 (got 0)", SO_ERR_INVALID},
    {"broker = { tls = { verify_peer = \"yes\"; }; };", 1,
     "broker.tls.verify_peer: expected a boolean", SO_ERR_INVALID},
    {"broker = { tls = { ca_fil = \"x\"; }; };", 1,
     "broker.tls.ca_fil: unknown key (did you mean 'ca_file'?)",
     SO_ERR_INVALID},
    {"broker = {\n password = \"hunter2\";\n};", 2,
     "broker.password: secrets are not read from the config file; use "
     "password_file or the environment variable SENDONCE_BROKER_PASSWORD",
     SO_ERR_INVALID},
    {"watchdog = { mgmt_password = \"hunter2\"; };", 1,
     "watchdog.mgmt_password: secrets are not read from the config file; use "
     "mgmt_password_file or the environment variable "
     "SENDONCE_WATCHDOG_MGMT_PASSWORD",
     SO_ERR_INVALID},
    {"watchdog = { mgmt_url = \"http://u:hunter2@h:15672\"; };", 1,
     "watchdog.mgmt_url: a URL must not carry a password", SO_ERR_INVALID},
    {"broker = { uri = \"amqp://u:hunter2@h/v\"; };", 1,
     "broker.uri: element 1: a broker URI must not carry a password",
     SO_ERR_INVALID},
    {"broker = { uri = \"http://h/v\"; };", 1,
     "broker.uri: element 1: not a valid broker URI", SO_ERR_INVALID},
    {"broker = { uri = [ 1 ]; };", 1,
     "broker.uri: element 1: elements must be strings", SO_ERR_INVALID},
    {"broker = { uri = [\"amqp://a/\",\"amqp://a/\",\"amqp://a/\","
     "\"amqp://a/\",\"amqp://a/\",\"amqp://a/\",\"amqp://a/\",\"amqp://a/\","
     "\"amqp://a/\"]; };",
     1, "broker.uri: must have at most 8 elements", SO_ERR_INVALID},
    {"broker = { reconnect_min_ms = 5000;\n reconnect_max_ms = 1000; };", 1,
     "broker.reconnect_min_ms: 5000 exceeds broker.reconnect_max_ms (1000)",
     SO_ERR_INVALID},
    {"broker = { tls = {\n cert_file = \"/c.pem\"; }; };", 2,
     "broker.tls.cert_file: broker.tls.cert_file and broker.tls.key_file go "
     "together",
     SO_ERR_INVALID},
    {"topology = { prefix = \"a b\"; };", 1,
     "topology.prefix: may only contain", SO_ERR_INVALID},
    {"topology = { retry_delays_s = [ 0 ]; };", 1,
     "topology.retry_delays_s: element 1: must be between 1 and 86400",
     SO_ERR_INVALID},
    {"registry = { backend = \"sqlite\";\n sqlite_path = \"\"; };", 1,
     "registry.sqlite_path: required when registry.backend = \"sqlite\"",
     SO_ERR_INVALID},
    {"registry = { lease_ttl_s = 2; };", 1,
     "registry.lease_ttl_s: must be between 3 and 86400 (got 2): the lease is "
     "renewed every ttl/3",
     SO_ERR_INVALID},
    {"registry = {\n lease_ttl_s = 600; };", 2,
     "watchdog.grace_s: 300 s is shorter than registry.lease_ttl_s (600 s)",
     SO_ERR_INVALID},
    {"consumer = { max_message_bytes = 10; };", 1,
     "consumer.max_message_bytes: must be between 1024", SO_ERR_INVALID},
    {"consumer = { workers = 4.0; };", 1,
     "consumer.workers: expected an integer", SO_ERR_INVALID},
    {"providers = { email = 1; };", 1,
     "providers.email: expected a group of provider settings", SO_ERR_INVALID},
    {"providers = {\n email = { url = \"ftp://x/\"; }; };", 2,
     "providers.email.url: must be an http:// or https:// URL", SO_ERR_INVALID},
    {"providers = { email = { url = \"http://x/\";\n method = \"DELETE\"; }; "
     "};",
     2, "providers.email.method: must be one of POST|PUT|PATCH|GET",
     SO_ERR_INVALID},
    {"providers = { email = { url = \"http://x/\";\n urll = \"x\"; }; };", 2,
     "providers.email.urll: unknown key (did you mean 'url'?)", SO_ERR_INVALID},
    {"providers = { email = { url = \"http://x/\";\n"
     " body_template = \"{\\\"a\\\":\\\"{{nope}}\\\"}\"; }; };",
     2, "providers.email.body_template: offset ", SO_ERR_INVALID},
    {"providers = { email = { url = \"http://x/\";\n batch_size = 10; }; };", 2,
     "providers.email.batch_size: 10 needs a body_template with a "
     "{{#recipients}}",
     SO_ERR_INVALID},
    {"registry = { pasword_file = \"/x\"; };", 1,
     "registry.pasword_file: unknown key (did you mean 'password_file'?)",
     SO_ERR_INVALID},
    {"log = { format = \"xml\"; };", 1,
     "log.format: must be one of kv|json (got \"xml\")", SO_ERR_INVALID},
    {"metrics = { watchdog_port = 70000; };", 1,
     "metrics.watchdog_port: must be between 1 and 65535", SO_ERR_INVALID},
    {"log = { level = \"info\"; }\nlog = { level = \"info\"; };", 2,
     "syntax: ", SO_ERR_INVALID},
    {"zzz = 1;", 1, "zzz: unknown section", SO_ERR_INVALID},
};

static void test_bad_configs(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
    const struct bad_case *c = &bad_cases[i];
    struct config cfg;
    char err[512], want[PATH_MAX + 256];
    const char *path;
    int rc = load(c->text, &cfg, err, sizeof(err), &path);
    config_free(&cfg);
    snprintf(want, sizeof(want), "%s:%d: %s", path, c->line, c->want);
    print_message("case %zu: %s\n", i, err);
    assert_int_equal(rc, c->status);
    err[strlen(want) < sizeof(err) ? strlen(want) : sizeof(err) - 1] = '\0';
    assert_string_equal(err, want);
  }
}

/* print_to_string: config_print() output, owned by the caller. */
static char *print_to_string(const struct config *cfg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  config_print(cfg, f);
  assert_int_equal(fclose(f), 0);
  return buf;
}

static void test_print(void **state)
{
  struct config cfg, again;
  char err[512];
  (void)state;

  setenv("SENDONCE_BROKER_PASSWORD", "b-SECRET", 1);
  setenv("SENDONCE_PROVIDERS_SMS_AUTH_HEADER", "Authorization: x-SECRET", 1);
  assert_int_equal(load(full_config, &cfg, err, sizeof(err), NULL), SO_OK);
  char *out = print_to_string(&cfg);
  assert_null(strstr(out, "SECRET"));
  /* broker, watchdog (defaulted from broker), sms header */
  size_t redacted = 0, unset = 0;
  for (const char *p = out; (p = strstr(p, "\"<redacted>\"")) != NULL; p++)
    redacted++;
  for (const char *p = out; (p = strstr(p, "\"<unset>\"")) != NULL; p++)
    unset++;
  assert_int_equal(redacted, 3);
  assert_int_equal(unset, 2); /* registry password, email header */

  /* What is printed loads again to the same configuration. */
  assert_int_equal(load(out, &again, err, sizeof(err), NULL), SO_OK);
  char *out2 = print_to_string(&again);
  const char *body1 = strchr(out, '\n'), *body2 = strchr(out2, '\n');
  assert_string_equal(body1, body2); /* all but the "loaded from" line */
  free(out);
  free(out2);
  config_free(&again);
  config_free(&cfg);
}

static int fake_verb_argc;
static const char *fake_verb_arg0;

static int fake_verb_cb(const struct config *cfg, int argc, char **argv)
{
  assert_non_null(cfg);
  fake_verb_argc = argc;
  fake_verb_arg0 = argv[0];
  return 7;
}

static const struct cli_verb test_verbs[] = {
    {"run", "[--dry-run]", "run it", fake_verb_cb},
    {"later", NULL, "not built yet", NULL},
};

static const struct cli_program test_program = {
    "sendonce-test", "a test program", test_verbs, 2};

static void test_cli(void **state)
{
  struct cli_options opt;
  struct config cfg;
  int status = -1;
  (void)state;

  const char *conf =
      write_file("cli.conf", "log = { level = \"warn\"; };", 0600);
  char *argv[] = {(char *)"prog",      (char *)"--config",
                  (char *)conf,        (char *)"--log-level",
                  (char *)"debug",     (char *)"--log-format",
                  (char *)"json",      (char *)"run",
                  (char *)"--dry-run", NULL};
  int argc = 9;
  assert_true(cli_parse(&test_program, argc, argv, &opt, &status));
  assert_string_equal(opt.config_path, conf);
  assert_string_equal(opt.log_level, "debug");
  assert_int_equal(opt.verb_index, 7);
  assert_false(opt.print_config);
  assert_true(cli_load_config(&test_program, &opt, &cfg, &status));
  assert_int_equal(cfg.log.level, LOG_LEVEL_DEBUG); /* argv over the file */
  assert_int_equal(log_get_level(), LOG_LEVEL_DEBUG);
  assert_int_equal(cli_run_verb(&test_program, &opt, &cfg, argc, argv), 7);
  assert_int_equal(fake_verb_argc, 2);
  assert_string_equal(fake_verb_arg0, "run");
  config_free(&cfg);
  log_set_level(LOG_LEVEL_INFO);
  log_set_format(LOG_FORMAT_KV);

  char *bad_opt[] = {(char *)"prog", (char *)"--frob", (char *)"run", NULL};
  assert_false(cli_parse(&test_program, 3, bad_opt, &opt, &status));
  assert_int_equal(status, CLI_EXIT_USAGE);
  char *no_verb[] = {(char *)"prog", NULL};
  assert_false(cli_parse(&test_program, 1, no_verb, &opt, &status));
  assert_int_equal(status, CLI_EXIT_USAGE);
  char *later[] = {(char *)"prog", (char *)"later", NULL};
  assert_false(cli_parse(&test_program, 2, later, &opt, &status));
  assert_int_equal(status, CLI_EXIT_USAGE);
  char *bad_level[] = {(char *)"prog", (char *)"--log-level", (char *)"loud",
                       (char *)"run", NULL};
  assert_false(cli_parse(&test_program, 4, bad_level, &opt, &status));
  assert_int_equal(status, CLI_EXIT_USAGE);
  char *version[] = {(char *)"prog", (char *)"--version", NULL};
  assert_false(cli_parse(&test_program, 2, version, &opt, &status));
  assert_int_equal(status, CLI_EXIT_OK);

  /* --print-config needs no verb; a bad config is CONFIG_EXIT_BAD. */
  const char *bad = write_file("bad.conf", "log = { level = 3; };", 0600);
  char *print[] = {(char *)"prog", (char *)"--config", (char *)bad,
                   (char *)"--print-config", NULL};
  assert_true(cli_parse(&test_program, 4, print, &opt, &status));
  assert_true(opt.print_config);
  assert_false(cli_load_config(&test_program, &opt, &cfg, &status));
  assert_int_equal(status, CONFIG_EXIT_BAD);
  config_free(&cfg);
}

/* Common options after the verb ("run --config FILE", as systemd units and
 * operators write it) are taken out of argv; the verb sees only its own. */
static void test_cli_options_after_verb(void **state)
{
  struct cli_options opt;
  struct config cfg;
  int status = -1;
  (void)state;

  const char *conf =
      write_file("after.conf", "log = { level = \"warn\"; };", 0600);
  char *argv[] = {
      (char *)"prog", (char *)"run",       (char *)"--config",
      (char *)conf,   (char *)"--dry-run", (char *)"--log-level=debug",
      (char *)"--",   (char *)"--config",  NULL};
  int argc = 8;
  assert_true(cli_parse(&test_program, argc, argv, &opt, &status));
  assert_string_equal(opt.config_path, conf);
  assert_string_equal(opt.log_level, "debug");
  assert_int_equal(opt.verb_index, 1);
  assert_int_equal(opt.argc, 5);
  assert_string_equal(argv[2], "--dry-run");
  assert_string_equal(argv[3], "--");
  assert_string_equal(argv[4], "--config"); /* after "--": the verb's */
  assert_null(argv[5]);
  assert_true(cli_load_config(&test_program, &opt, &cfg, &status));
  assert_int_equal(cfg.log.level, LOG_LEVEL_DEBUG);
  assert_int_equal(cli_run_verb(&test_program, &opt, &cfg, argc, argv), 7);
  assert_int_equal(fake_verb_argc, 4);
  config_free(&cfg);
  log_set_level(LOG_LEVEL_INFO);

  char *missing[] = {(char *)"prog", (char *)"run", (char *)"--config", NULL};
  assert_false(cli_parse(&test_program, 3, missing, &opt, &status));
  assert_int_equal(status, CLI_EXIT_USAGE);
  char *bad_format[] = {(char *)"prog", (char *)"run",
                        (char *)"--log-format=xml", NULL};
  assert_false(cli_parse(&test_program, 3, bad_format, &opt, &status));
  assert_int_equal(status, CLI_EXIT_USAGE);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_search_path, setup, teardown),
      cmocka_unit_test_setup_teardown(test_env_overrides, setup, teardown),
      cmocka_unit_test_setup_teardown(test_env_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_secrets_env, setup, teardown),
      cmocka_unit_test_setup_teardown(test_secrets_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_configs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_print, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cli_options_after_verb, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
