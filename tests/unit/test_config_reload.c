/* test_config_reload.c - config_reload_safe(): safe settings applied,
 * unsafe ones reported and kept, a bad new file keeping the old config
 * whole (with file:line), and a merge that would break a rule refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_reload.h"
#include "log.h"

extern char **environ;

static char dir[64];
static char conf[128];
static char secret[128];

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

static void write_text(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_true(fputs(text, f) >= 0);
  assert_int_equal(fclose(f), 0);
}

/* The base file; each test rewrites parts of it. */
struct knobs {
  const char *level;
  const char *backend_block;
  const char *prefix;
  const char *password_file;
  const char *url;
  int rate;
  int concurrency;
  int lease_ttl_s;
  int grace_s;
  int stuck_after_s;
  const char *extra_provider;
  const char *tail;
};

static const struct knobs base = {
    .level = "info",
    .backend_block = "backend = \"sqlite\"; sqlite_path = \"/tmp/r.db\";",
    .prefix = "sendonce",
    .password_file = NULL,
    .url = "http://127.0.0.1:1/send",
    .rate = 10,
    .concurrency = 2,
    .lease_ttl_s = 60,
    .grace_s = 120,
    .stuck_after_s = 300,
    .extra_provider = "",
    .tail = "",
};

static void write_conf(const struct knobs *k)
{
  char text[4096], pw[256] = "";
  if (k->password_file)
    snprintf(pw, sizeof(pw), "password_file = \"%s\";", k->password_file);
  snprintf(text, sizeof(text),
           "broker = { uri = \"amqp://127.0.0.1:5672/sendonce\"; "
           "user = \"u\"; %s };\n"
           "topology = { prefix = \"%s\"; };\n"
           "registry = { %s lease_ttl_s = %d; };\n"
           "providers = {\n"
           "  email = { url = \"%s\"; rate_per_s = %d; concurrency = %d; };\n"
           "  %s\n"
           "};\n"
           "watchdog = { grace_s = %d; stuck_after_s = %d; };\n"
           "log = { level = \"%s\"; format = \"kv\"; };\n"
           "%s",
           pw, k->prefix, k->backend_block, k->lease_ttl_s, k->url, k->rate,
           k->concurrency, k->extra_provider, k->grace_s, k->stuck_after_s,
           k->level, k->tail);
  write_text(conf, text);
}

/* printed: the whole effective config as text (secrets redacted). */
static char *printed(const struct config *cfg)
{
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  config_print(cfg, f);
  assert_int_equal(fclose(f), 0);
  return text;
}

static void load_base(struct config *cfg)
{
  char err[512];
  write_conf(&base);
  int rc = config_load(cfg, conf, err, sizeof(err));
  if (rc != SO_OK)
    fail_msg("base config: %s", err);
}

static int setup(void **state)
{
  (void)state;
  clear_env();
  snprintf(dir, sizeof(dir), "/tmp/sendonce-test-reload-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(conf, sizeof(conf), "%s/sendonce.conf", dir);
  snprintf(secret, sizeof(secret), "%s/broker.password", dir);
  write_text(secret, "s3cret-value\n");
  log_set_level(LOG_LEVEL_INFO);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  unlink(conf);
  unlink(secret);
  rmdir(dir);
  log_set_level(LOG_LEVEL_INFO);
  log_set_format(LOG_FORMAT_KV);
  return 0;
}

static void test_safe_applied(void **state)
{
  (void)state;
  struct config cfg;
  char report[2048], err[512];

  load_base(&cfg);
  struct knobs k = base;
  k.level = "debug";
  k.rate = 50;
  k.concurrency = 4;
  k.stuck_after_s = 600;
  write_conf(&k);
  assert_int_equal(
      config_reload_safe(&cfg, NULL, report, sizeof(report), err, sizeof(err)),
      SO_OK);
  assert_string_equal(report,
                      "reload: watchdog.stuck_after_s: 300 -> 600\n"
                      "reload: log.level: info -> debug\n"
                      "reload: providers.email.concurrency: 2 -> 4\n"
                      "reload: providers.email.rate_per_s: 10 -> 50\n");
  assert_int_equal(cfg.log.level, LOG_LEVEL_DEBUG);
  assert_int_equal(log_get_level(), LOG_LEVEL_DEBUG);
  assert_int_equal(cfg.providers[0].rate_per_s, 50);
  assert_int_equal(cfg.providers[0].concurrency, 4);
  assert_int_equal(cfg.watchdog.stuck_after_s, 600);

  /* Reloading the same file again changes nothing. */
  assert_int_equal(
      config_reload_safe(&cfg, conf, report, sizeof(report), err, sizeof(err)),
      SO_OK);
  assert_string_equal(report, "");
  config_free(&cfg);
}

static void test_unsafe_kept(void **state)
{
  (void)state;
  struct config cfg;
  char report[2048], err[512];

  load_base(&cfg);
  char *before = printed(&cfg);
  struct knobs k = base;
  k.backend_block =
      "backend = \"postgresql\"; pg_conninfo = \"host=127.0.0.1\"; "
      "sqlite_path = \"/tmp/r.db\";";
  k.prefix = "other";
  k.password_file = secret;
  k.url = "http://127.0.0.1:2/send";
  k.extra_provider = "sms = { url = \"http://127.0.0.1:3/sms\"; };";
  write_conf(&k);
  assert_int_equal(
      config_reload_safe(&cfg, NULL, report, sizeof(report), err, sizeof(err)),
      SO_OK);
  assert_string_equal(
      report,
      "reload: broker.password changed: needs a restart; kept the old value\n"
      "reload: topology.prefix changed: needs a restart; kept the old value\n"
      "reload: registry.backend changed: needs a restart; kept the old value\n"
      "reload: registry.pg_conninfo changed: needs a restart; kept the old "
      "value\n"
      "reload: watchdog.mgmt_password changed: needs a restart; kept the old "
      "value\n"
      "reload: providers.email.url changed: needs a restart; kept the old "
      "value\n"
      "reload: providers.sms added: needs a restart; not used\n");
  assert_null(strstr(report, "s3cret"));
  char *after = printed(&cfg);
  assert_string_equal(before, after);
  assert_null(cfg.broker.password);
  free(before);
  free(after);
  config_free(&cfg);
}

static void test_provider_removed(void **state)
{
  (void)state;
  struct config cfg;
  char report[1024], err[512];
  struct knobs k = base;
  k.extra_provider = "sms = { url = \"http://127.0.0.1:3/sms\"; };";
  write_conf(&k);
  assert_int_equal(config_load(&cfg, conf, err, sizeof(err)), SO_OK);
  write_conf(&base);
  assert_int_equal(
      config_reload_safe(&cfg, NULL, report, sizeof(report), err, sizeof(err)),
      SO_OK);
  assert_string_equal(
      report,
      "reload: providers.sms removed: needs a restart; kept the old "
      "value\n");
  assert_int_equal(cfg.n_providers, 2);
  config_free(&cfg);
}

static const struct bad_case {
  const char *tail;
  const char *want; /* after "<conf>:" */
} bad_cases[] = {
    {"metrics = { watchdog_port = 70000; };\n",
     "10: metrics.watchdog_port: must be between 1 and 65535"},
    {"metrics = { enabled = ; };\n", "10: syntax: "},
    {"nosuchsection = { a = 1; };\n", "10: nosuchsection: unknown"},
};

static void test_invalid_keeps_old(void **state)
{
  (void)state;
  struct config cfg;
  char report[1024], err[512], want[256];

  load_base(&cfg);
  char *before = printed(&cfg);
  for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
    struct knobs k = base;
    k.level = "debug"; /* a safe change that must not be applied either */
    k.rate = 99;
    k.tail = bad_cases[i].tail;
    write_conf(&k);
    snprintf(report, sizeof(report), "junk");
    int rc = config_reload_safe(&cfg, NULL, report, sizeof(report), err,
                                sizeof(err));
    assert_int_equal(rc, SO_ERR_INVALID);
    snprintf(want, sizeof(want), "%s:%s", conf, bad_cases[i].want);
    if (strncmp(err, want, strlen(want)) != 0)
      fail_msg("case %zu: got %s, want %s...", i, err, want);
    assert_string_equal(report, "");
    char *after = printed(&cfg);
    assert_string_equal(before, after);
    free(after);
    assert_int_equal(log_get_level(), LOG_LEVEL_INFO);
  }
  /* A file that is gone: the old config stays, the error says why. */
  unlink(conf);
  assert_true(config_reload_safe(&cfg, NULL, report, sizeof(report), err,
                                 sizeof(err)) < 0);
  assert_non_null(strstr(err, "cannot read"));
  char *after = printed(&cfg);
  assert_string_equal(before, after);
  free(after);
  free(before);
  config_free(&cfg);
}

static void test_merge_rule(void **state)
{
  (void)state;
  struct config cfg;
  char report[1024], err[512];

  load_base(&cfg);
  /* Valid on its own (grace 40 >= ttl 30), but the running lease ttl (60)
   * is kept until a restart, and grace 40 < 60 would republish live
   * campaigns. */
  struct knobs k = base;
  k.lease_ttl_s = 30;
  k.grace_s = 40;
  k.level = "debug";
  write_conf(&k);
  assert_int_equal(
      config_reload_safe(&cfg, NULL, report, sizeof(report), err, sizeof(err)),
      SO_ERR_INVALID);
  assert_non_null(strstr(err,
                         "watchdog.grace_s: 40 s is shorter than the "
                         "running registry.lease_ttl_s (60 s"));
  assert_int_equal(cfg.watchdog.grace_s, 120);
  assert_int_equal(cfg.log.level, LOG_LEVEL_INFO);
  config_free(&cfg);
}

static void test_no_file(void **state)
{
  (void)state;
  struct config cfg;
  char err[512];
  /* Defaults alone (no file at start): nothing to re-read. */
  assert_int_equal(chdir(dir), 0);
  assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), SO_OK);
  assert_null(cfg.path);
  assert_int_equal(config_reload_safe(&cfg, NULL, NULL, 0, err, sizeof(err)),
                   SO_ERR_NOTFOUND);
  assert_non_null(strstr(err, "no config file"));
  config_free(&cfg);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_safe_applied, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsafe_kept, setup, teardown),
      cmocka_unit_test_setup_teardown(test_provider_removed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_keeps_old, setup, teardown),
      cmocka_unit_test_setup_teardown(test_merge_rule, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_file, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
