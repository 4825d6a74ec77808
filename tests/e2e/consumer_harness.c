/* consumer_harness.c - see consumer_harness.h. */
#include "consumer_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "integration/broker_testutil.h"
#include "testenv.h"

extern char **environ;

void harness_setup(struct harness *h, enum registry_backend backend,
                   const char *const *sink_args)
{
  memset(h, 0, sizeof(*h));
  char *u = testenv_unique("cons");
  snprintf(h->dir, sizeof(h->dir), "/tmp/sendonce-e2e-%s", u);
  free(u);
  assert_int_equal(mkdir(h->dir, 0700), 0);
  testdb_create(&h->db, backend);
  h->reg = testdb_open(&h->db);
  bt_topology(&h->topo);
  struct broker_options o;
  bt_options(&o, NULL, &h->topo);
  h->b = bt_open(&o);
  char err[512] = "";
  h->sink = sink_client_start(sink_args, err, sizeof(err));
  if (!h->sink)
    fail_msg("sink: %s", err);
}

void harness_teardown(struct harness *h)
{
  sink_client_stop(h->sink);
  if (topology_delete(h->b, &h->topo) != SO_OK)
    print_message("teardown: topology_delete failed\n");
  broker_close(h->b);
  registry_close(h->reg);
  testdb_destroy(&h->db);
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
  if (system(cmd) != 0)
    print_message("teardown: could not remove %s\n", h->dir);
}

const char *harness_config(struct harness *h, const char *name,
                           const struct harness_conf *c)
{
  static char path[400];
#define DEF(v, d) ((v) ? (v) : (d))
  snprintf(path, sizeof(path), "%s/%s.conf", h->dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f,
          "broker = { uri = \"%s\"; user = \"%s\"; heartbeat_s = 2;\n"
          "  connect_timeout_ms = 2000; confirm_timeout_ms = 5000;\n"
          "  reconnect_min_ms = 100; reconnect_max_ms = 1000; };\n",
          c->broker_uri ? c->broker_uri : testenv_get("SENDONCE_BROKER_URI"),
          testenv_get("SENDONCE_BROKER_USER"));
  fprintf(f,
          "topology = { prefix = \"%s\"; delivery_limit = %d;\n"
          "  retry_delays_s = [1, 30]; };\n",
          h->topo.exchange, h->topo.delivery_limit);
  int ttl = DEF(c->lease_ttl_s, 4);
  if (h->db.backend == REGISTRY_SQLITE && !c->pg_conninfo)
    fprintf(f, "registry = { backend = \"sqlite\"; sqlite_path = \"%s\";\n",
            h->db.sqlite_path);
  else
    fprintf(f, "registry = { backend = \"postgresql\"; pg_conninfo = \"%s\";\n",
            c->pg_conninfo ? c->pg_conninfo : h->db.pg_conninfo);
  fprintf(
      f, "  lease_ttl_s = %d; busy_timeout_ms = %d; mark_batch_size = %d; };\n",
      ttl, ttl * 1000 / 3, DEF(c->mark_batch_size, 50));
  fprintf(f,
          "consumer = { workers = %d; max_attempts = %d;\n"
          "  max_message_bytes = 65536; owner = \"%s\"; };\n",
          DEF(c->workers, 2), DEF(c->max_attempts, 5), name);
  const char *chans[] = {"email", "sms"};
  fprintf(f, "providers = {\n");
  for (int i = 0; i < 2; i++)
    fprintf(f,
            "  %s = { url = \"%s/%s\"; timeout_ms = %d; concurrency = %d;\n"
            "    max_retries = %d; retry_base_ms = %d; };\n",
            chans[i], sink_client_url(h->sink), chans[i],
            DEF(c->timeout_ms, 2000), DEF(c->concurrency, 8),
            DEF(c->max_retries, 3), DEF(c->retry_base_ms, 100));
  fprintf(f, "};\nlog = { level = \"info\"; };\n");
#undef DEF
  assert_int_equal(fclose(f), 0);
  return path;
}

char *harness_slurp(const char *path)
{
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = '\0';
  fclose(f);
  return s;
}

char **harness_child_env(void)
{
  size_t n = 0;
  while (environ[n])
    n++;
  char **env = calloc(n + 3, sizeof(*env));
  assert_non_null(env);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "SENDONCE_", 9) != 0)
      env[k++] = environ[i];
  static char bp[512], rp[512];
  snprintf(bp, sizeof(bp), "SENDONCE_BROKER_PASSWORD=%s",
           testenv_get("SENDONCE_BROKER_PASSWORD"));
  snprintf(rp, sizeof(rp), "SENDONCE_REGISTRY_PASSWORD=%s",
           testenv_get("SENDONCE_REGISTRY_PASSWORD"));
  env[k++] = bp;
  env[k++] = rp;
  env[k] = NULL;
  return env;
}

void harness_start(struct harness *h, struct harness_proc *p,
                   const char *config, const char *name)
{
  snprintf(p->log, sizeof(p->log), "%s/%s.log", h->dir, name);
  char **env = harness_child_env();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0)
      _exit(127);
    dup2(fd, 2);
    dup2(fd, 1);
    char *argv[] = {(char *)CONSUMER_BIN, (char *)"--config", (char *)config,
                    (char *)"run", NULL};
    execve(CONSUMER_BIN, argv, env);
    _exit(127);
  }
  free(env);
  p->pid = pid;
  if (!harness_wait_log(p, "consumer: running", 15000))
    fail_msg("consumer %s did not start; see %s", name, p->log);
}

int harness_stop(struct harness_proc *p, int sig, int timeout_ms)
{
  if (p->pid <= 0)
    return -1;
  kill(p->pid, sig);
  int64_t until = clock_monotonic_ms() + timeout_ms;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid)
      break;
    if (clock_monotonic_ms() > until) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &st, 0);
      p->pid = 0;
      return -1;
    }
    clock_sleep_ms(20, NULL);
  }
  p->pid = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

const char *harness_recipients_file(struct harness *h, const char *name, long n)
{
  static char url[400];
  char path[350];
  snprintf(path, sizeof(path), "%s/%s.jsonl", h->dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (long i = 0; i < n; i++)
    fprintf(f, "{\"id\":\"u-%ld\",\"address\":\"u%ld@example.org\"}\n", i, i);
  assert_int_equal(fclose(f), 0);
  snprintf(url, sizeof(url), "file://%s", path);
  return url;
}

char *harness_body(const char *id, const char *url)
{
  char *b = malloc(4096);
  assert_non_null(b);
  snprintf(b, 4096,
           "{\"schema\":1,\"campaign_id\":\"%s\","
           "\"scheduled_at\":\"2026-11-27T09:00:00Z\",\"channel\":\"email\","
           "\"content\":{\"subject\":\"hello\"},\"recipients_url\":\"%s\"}",
           id, url);
  return b;
}

void harness_publish(struct harness *h, const char *id, const char *body)
{
  bt_publish(h->b, h->topo.exchange, TOPOLOGY_ROUTING_KEY_DUE, id, body);
}

struct registry_campaign harness_wait_state(struct harness *h, const char *id,
                                            enum campaign_state state,
                                            int timeout_ms)
{
  int64_t until = clock_monotonic_ms() + timeout_ms;
  for (;;) {
    struct registry_campaign c = {0};
    int rc = registry_get(h->reg, id, &c);
    if (rc == SO_OK && c.state == state)
      return c;
    if (clock_monotonic_ms() > until)
      fail_msg("campaign %s: state %s, wanted %s (rc=%d) after %d ms", id,
               rc == SO_OK ? campaign_state_name(c.state) : "absent",
               campaign_state_name(state), rc, timeout_ms);
    registry_campaign_free(&c);
    /* Keep the test's session alive while it waits. */
    struct broker_delivery *d = NULL;
    char err[256];
    if (broker_poll(h->b, 100, -1, &d, err, sizeof(err)) == SO_OK)
      broker_delivery_free(d);
  }
}

static char *read_log(const struct harness_proc *p)
{
  FILE *f = fopen(p->log, "r");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 4096) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

int harness_log_count(const struct harness_proc *p, const char *needle)
{
  char *buf = read_log(p);
  int n = 0;
  for (const char *s = buf; s && (s = strstr(s, needle)); s += strlen(needle))
    n++;
  free(buf);
  return n;
}

bool harness_wait_log(const struct harness_proc *p, const char *needle,
                      int timeout_ms)
{
  int64_t until = clock_monotonic_ms() + timeout_ms;
  while (clock_monotonic_ms() < until) {
    if (harness_log_count(p, needle) > 0)
      return true;
    clock_sleep_ms(50, NULL);
  }
  return false;
}

long long harness_summary(const struct harness_proc *p, const char *key)
{
  char *buf = read_log(p);
  long long v = -1;
  const char *line = buf ? strstr(buf, "consumer: summary ") : NULL;
  char pat[64];
  snprintf(pat, sizeof(pat), " %s=", key);
  const char *k = line ? strstr(line, pat) : NULL;
  if (k)
    v = strtoll(k + strlen(pat), NULL, 10);
  free(buf);
  return v;
}

int64_t harness_sink_stat(struct harness *h, const char *name)
{
  json_object *st = sink_client_stats(h->sink);
  assert_non_null(st);
  int64_t v = sink_client_stat(st, name);
  json_object_put(st);
  return v;
}

bool harness_wait_sink(struct harness *h, const char *name, int64_t value,
                       int timeout_ms)
{
  int64_t until = clock_monotonic_ms() + timeout_ms;
  while (clock_monotonic_ms() < until) {
    if (harness_sink_stat(h, name) >= value)
      return true;
    clock_sleep_ms(50, NULL);
  }
  return false;
}
