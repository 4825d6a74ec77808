/* watchdog_testutil.c - a private world for one watchdog test. */
#include "watchdog_testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "integration/broker_testutil.h"
#include "testenv.h"

void wt_setup(struct wt *t, enum registry_backend backend, int grace_s,
              const char *extra)
{
  memset(t, 0, sizeof(*t));
  testdb_create(&t->db, backend);
  t->prefix = testenv_unique("wdtest");
  static const int delays[] = {1, 30};
  char err[1024] = "";
  if (topology_init(&t->topo, t->prefix, 5, delays, 2, err, sizeof(err)))
    fail_msg("topology_init: %s", err);

  /* Secrets through the environment, as in production; children
   * inherit them. */
  setenv("SENDONCE_BROKER_PASSWORD", testenv_get("SENDONCE_BROKER_PASSWORD"),
         1);
  if (backend == REGISTRY_POSTGRESQL) {
    setenv("SENDONCE_REGISTRY_PASSWORD",
           testenv_get("SENDONCE_REGISTRY_PASSWORD"), 1);
    /* testenv exports the base conninfo, and the environment overrides
     * the file: point the override at this run's schema. */
    setenv("SENDONCE_REGISTRY_PG_CONNINFO", t->db.pg_conninfo, 1);
  }
  const char *dir = getenv("TMPDIR");
  snprintf(t->conf_path, sizeof(t->conf_path), "%s/%s.conf", dir ? dir : "/tmp",
           t->prefix);
  FILE *f = fopen(t->conf_path, "w");
  assert_non_null(f);
  fprintf(f,
          "broker = { uri = [ \"%s\" ]; user = \"%s\"; heartbeat_s = 5;\n"
          "  connect_timeout_ms = 2000; confirm_timeout_ms = 5000;\n"
          "  reconnect_min_ms = 100; reconnect_max_ms = 1000; };\n"
          "topology = { prefix = \"%s\"; delivery_limit = 5;\n"
          "  retry_delays_s = [ 1, 30 ]; };\n",
          testenv_get("SENDONCE_BROKER_URI"),
          testenv_get("SENDONCE_BROKER_USER"), t->prefix);
  if (backend == REGISTRY_POSTGRESQL)
    fprintf(f, "registry = { backend = \"postgresql\"; pg_conninfo = \"%s\";\n",
            t->db.pg_conninfo);
  else
    fprintf(f, "registry = { backend = \"sqlite\"; sqlite_path = \"%s\";\n",
            t->db.sqlite_path);
  fprintf(f,
          "  busy_timeout_ms = 900; lease_ttl_s = 3; };\n"
          "watchdog = { interval_s = 1; grace_s = %d; stuck_after_s = 30;\n"
          "  republish_backoff_s = 60; max_republishes = 5;\n"
          "  mgmt_url = \"%s\"; };\n"
          "log = { level = \"info\"; };\n%s\n%s\n",
          grace_s, testenv_get("SENDONCE_WATCHDOG_MGMT_URL"),
          /* Several watchdogs run at once here: one port each, or none. */
          extra && strstr(extra, "metrics") ? ""
                                            : "metrics = { enabled = false; };",
          extra ? extra : "");
  fclose(f);
  if (config_load(&t->cfg, t->conf_path, err, sizeof(err)))
    fail_msg("config_load %s: %s", t->conf_path, err);

  struct broker_options o;
  bt_options(&o, NULL, &t->topo);
  t->b = bt_open(&o);
  t->reg = testdb_open(&t->db);
}

void wt_teardown(struct wt *t)
{
  if (t->b) {
    if (topology_delete(t->b, &t->topo) != SO_OK)
      fprintf(stderr, "teardown: topology_delete %s failed\n", t->prefix);
    broker_close(t->b);
  }
  registry_close(t->reg);
  config_free(&t->cfg);
  testdb_destroy(&t->db);
  if (t->conf_path[0])
    unlink(t->conf_path);
  free(t->prefix);
  memset(t, 0, sizeof(*t));
}

char *wt_payload(const char *id, int n, const char *url)
{
  size_t cap = 512 + (size_t)n * 96 + (url ? strlen(url) : 0);
  char *p = malloc(cap);
  assert_non_null(p);
  int off = snprintf(p, cap,
                     "{\"schema\":1,\"campaign_id\":\"%s\",\"scheduled_at\":"
                     "\"2026-01-01T00:00:00Z\",\"channel\":\"email\","
                     "\"content\":{\"subject\":\"hi\"},",
                     id);
  if (url) {
    off +=
        snprintf(p + off, cap - (size_t)off, "\"recipients_url\":\"%s\"}", url);
    return p;
  }
  off += snprintf(p + off, cap - (size_t)off, "\"recipients\":[");
  for (int i = 0; i < n; i++)
    off += snprintf(p + off, cap - (size_t)off,
                    "%s{\"id\":\"u%d\",\"address\":\"u%d@example.org\"}",
                    i ? "," : "", i, i);
  snprintf(p + off, cap - (size_t)off, "]}");
  return p;
}

void wt_register(struct wt *t, const char *id, enum campaign_state state,
                 int ago_s, int n_recipients)
{
  char *payload = wt_payload(id, n_recipients, NULL);
  struct registry_new_campaign nc = {
      .campaign_id = id,
      .scheduled_at_ms = clock_now_ms() - (int64_t)ago_s * 1000,
      .channel = "email",
      .payload = payload,
  };
  bool created = false;
  assert_int_equal(registry_register(t->reg, &nc, state, &created), SO_OK);
  assert_true(created);
  free(payload);
}

struct watchdog *wt_watchdog(struct wt *t, bool one_shot, bool dry_run)
{
  struct watchdog_options o = {.dry_run = dry_run, .one_shot = one_shot};
  struct watchdog *w = NULL;
  char err[1024] = "";
  int rc = watchdog_open(&t->cfg, &o, &w, err, sizeof(err));
  if (rc)
    fail_msg("watchdog_open: %s: %s", so_strerror(rc), err);
  return w;
}

bool wt_pass(struct watchdog *w, const char *id, struct watchdog_row *row,
             struct watchdog_report *keep)
{
  struct watchdog_report r;
  char err[1024] = "";
  int rc = watchdog_pass(w, &r, err, sizeof(err));
  if (rc)
    fail_msg("watchdog_pass: %s: %s", so_strerror(rc), err);
  bool found = false;
  for (size_t i = 0; i < r.n; i++) {
    if (strcmp(r.rows[i].c.campaign_id, id) == 0) {
      *row = r.rows[i];
      memset(&row->c, 0, sizeof(row->c));
      row->c.state = r.rows[i].c.state;
      found = true;
    }
  }
  if (keep)
    *keep = r;
  else
    watchdog_report_free(&r);
  return found;
}

uint32_t wt_ready(struct wt *t, const char *queue)
{
  uint32_t n = 0;
  char err[512] = "";
  int rc = broker_queue_counts(t->b, queue, &n, NULL, err, sizeof(err));
  if (rc)
    fail_msg("broker_queue_counts %s: %s", queue, err);
  return n;
}

uint32_t wt_wait_ready(struct wt *t, const char *queue, uint32_t want,
                       int timeout_ms)
{
  int64_t end = clock_monotonic_ms() + timeout_ms;
  uint32_t n = wt_ready(t, queue);
  while (n != want && clock_monotonic_ms() < end) {
    clock_sleep_ms(100, NULL);
    n = wt_ready(t, queue);
  }
  if (n != want)
    fprintf(stderr, "wt_wait_ready %s: %u, want %u\n", queue, n, want);
  return n;
}

int wt_drain(struct wt *t, const char *queue, const char *id,
             const char *reason, int *matching)
{
  int n = 0;
  if (matching)
    *matching = 0;
  for (;;) {
    struct broker_delivery *d = NULL;
    char err[512] = "";
    int rc = broker_get(t->b, queue, &d, err, sizeof(err));
    if (rc == SO_ERR_NOTFOUND)
      break;
    if (rc)
      fail_msg("broker_get %s: %s", queue, err);
    n++;
    const char *r = broker_delivery_header(d, "x-sendonce-reason");
    if (matching && d->message_id && strcmp(d->message_id, id) == 0 &&
        (!reason || (r && strcmp(r, reason) == 0)))
      (*matching)++;
    assert_int_equal(broker_ack(t->b, d->generation, d->tag), SO_OK);
    broker_delivery_free(d);
  }
  return n;
}

struct registry_campaign wt_get(struct wt *t, const char *id)
{
  struct registry_campaign c;
  memset(&c, 0, sizeof(c));
  int rc = registry_get(t->reg, id, &c);
  if (rc)
    fail_msg("registry_get %s: %s", id, so_strerror(rc));
  return c;
}

static char **build_argv(struct wt *t, const char *bin, const char *const *args)
{
  size_t n = 0;
  while (args[n])
    n++;
  char **argv = calloc(n + 4, sizeof(*argv));
  assert_non_null(argv);
  argv[0] = (char *)bin;
  argv[1] = (char *)"--config";
  argv[2] = t->conf_path;
  for (size_t i = 0; i < n; i++)
    argv[3 + i] = (char *)args[i];
  return argv;
}

int wt_run(struct wt *t, const char *bin, const char *const *args, char *out,
           size_t outlen)
{
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  char **argv = build_argv(t, bin, args);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execv(bin, argv);
    _exit(127);
  }
  free(argv);
  close(fds[1]);
  size_t len = 0;
  for (;;) {
    char buf[4096];
    ssize_t k = read(fds[0], buf, sizeof(buf));
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    size_t room = outlen - 1 - len;
    size_t take = (size_t)k < room ? (size_t)k : room;
    memcpy(out + len, buf, take);
    len += take;
  }
  out[len] = '\0';
  close(fds[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
    ;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

pid_t wt_spawn(struct wt *t, const char *bin, const char *const *args,
               const char *log)
{
  char **argv = build_argv(t, bin, args);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0600)
                 : open("/dev/null", O_WRONLY);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(bin, argv);
    _exit(127);
  }
  free(argv);
  return pid;
}

int wt_stop(pid_t pid)
{
  int st = 0;
  kill(pid, SIGCONT);
  kill(pid, SIGTERM);
  for (int i = 0; i < 150; i++) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    clock_sleep_ms(100, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return 128 + SIGKILL;
}
