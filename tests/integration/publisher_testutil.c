/* publisher_testutil.c - helpers of the sendonce-publisher tests. */
#include "publisher_testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_testutil.h"
#include "clock.h"
#include "msg.h"
#include "testenv.h"

#ifndef SENDONCE_PUBLISHER_BIN
#error "SENDONCE_PUBLISHER_BIN must name the built sendonce-publisher"
#endif

extern char **environ;

enum registry_backend pt_backend = REGISTRY_SQLITE;

static void path_in(const struct pt *t, const char *name, char *out, size_t len)
{
  int n = snprintf(out, len, "%s/%s", t->dir, name);
  assert_true(n > 0 && (size_t)n < len);
}

void pt_write_file(struct pt *t, const char *name, const char *text, char *path,
                   size_t pathlen)
{
  path_in(t, name, path, pathlen);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

void pt_write_config(struct pt *t, const char *uri, int timeout_ms)
{
  FILE *f = fopen(t->conf, "w");
  assert_non_null(f);
  fprintf(f,
          "broker = { uri = \"%s\"; user = \"%s\"; heartbeat_s = 5;\n"
          "  confirm_timeout_ms = %d; connect_timeout_ms = %d;\n"
          "  reconnect_min_ms = 100; reconnect_max_ms = 1000; };\n"
          "topology = { prefix = \"%s\"; delivery_limit = 5;\n"
          "  retry_delays_s = [ 1, 30 ]; };\n",
          uri ? uri : testenv_get("SENDONCE_BROKER_URI"),
          testenv_get("SENDONCE_BROKER_USER"), timeout_ms, timeout_ms,
          t->topo.exchange);
  if (pt_backend == REGISTRY_POSTGRESQL)
    fprintf(f,
            "registry = { backend = \"postgresql\"; pg_conninfo = \"%s\";\n"
            "  busy_timeout_ms = %d; };\n",
            t->db.pg_conninfo, t->busy_timeout_ms);
  else
    fprintf(f,
            "registry = { backend = \"sqlite\"; sqlite_path = \"%s\";\n"
            "  busy_timeout_ms = %d; };\n",
            t->db.sqlite_path, t->busy_timeout_ms);
  fprintf(f,
          "consumer = { max_message_bytes = 4096; };\n"
          "providers = { email = { url = \"http://127.0.0.1:9/email\"; };\n"
          "  sms = { url = \"http://127.0.0.1:9/sms\"; }; };\n"
          "log = { level = \"info\"; };\n");
  if (t->metrics_port > 0)
    fprintf(f,
            "metrics = { enabled = true; address = \"127.0.0.1\";\n"
            "  publisher_port = %d; };\n",
            t->metrics_port);
  else
    fprintf(f, "metrics = { enabled = false; };\n");
  assert_int_equal(fclose(f), 0);
}

void pt_setup(struct pt *t)
{
  memset(t, 0, sizeof(*t));
  t->busy_timeout_ms = 5000;
  testdb_create(&t->db, pt_backend);
  bt_topology(&t->topo);
  char *unique = testenv_unique("sendonce-pubtest");
  const char *tmp = getenv("TMPDIR");
  snprintf(t->dir, sizeof(t->dir), "%s/%s", tmp ? tmp : "/tmp", unique);
  free(unique);
  assert_int_equal(mkdir(t->dir, 0700), 0);
  path_in(t, "sendonce.conf", t->conf, sizeof(t->conf));
  pt_write_config(t, NULL, 2000);
  pt_write_file(t, "content.json", "{\"subject\":\"Hi\",\"template\":\"t\"}\n",
                t->content, sizeof(t->content));
  pt_write_file(t, "recipients.jsonl",
                "{\"id\":\"u-1\",\"address\":\"a@example.org\"}\n"
                "{\"address\":\"b@example.org\",\"vars\":{\"n\":2}}\n",
                t->recipients, sizeof(t->recipients));
  struct broker_options o;
  bt_options(&o, NULL, &t->topo);
  t->b = bt_open(&o);
  t->reg = testdb_open(&t->db);
}

void pt_teardown(struct pt *t)
{
  if (topology_delete(t->b, &t->topo) != SO_OK)
    fprintf(stderr, "pt: topology_delete %s failed\n", t->topo.exchange);
  broker_close(t->b);
  registry_close(t->reg);
  testdb_destroy(&t->db);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
  if (system(cmd) != 0)
    fprintf(stderr, "pt: could not remove %s\n", t->dir);
}

/* The child's environment: ours without SENDONCE_*, plus the passwords. */
static char **child_env(void)
{
  static char *env[512];
  static char broker_pw[512], registry_pw[512];
  size_t n = 0;
  for (char **e = environ; *e && n < 500; e++)
    if (strncmp(*e, "SENDONCE_", 9) != 0)
      env[n++] = *e;
  snprintf(broker_pw, sizeof(broker_pw), "SENDONCE_BROKER_PASSWORD=%s",
           testenv_get("SENDONCE_BROKER_PASSWORD"));
  env[n++] = broker_pw;
  if (pt_backend == REGISTRY_POSTGRESQL) {
    snprintf(registry_pw, sizeof(registry_pw), "SENDONCE_REGISTRY_PASSWORD=%s",
             testenv_get("SENDONCE_REGISTRY_PASSWORD"));
    env[n++] = registry_pw;
  }
  env[n] = NULL;
  return env;
}

static pid_t spawn(struct pt *t, char **argv, const char *out_path,
                   const char *err_path)
{
  char **env = child_env();
  (void)t;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || fe < 0)
      _exit(126);
    dup2(fd, 1);
    dup2(fe, 2);
    execve(SENDONCE_PUBLISHER_BIN, argv, env);
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  buf[len] = '\0';
  fclose(f);
  return buf;
}

/* Wait for pid at most timeout_ms; returns the exit status, or -1 after
 * killing it when it overran. */
static int wait_bounded(pid_t pid, int timeout_ms)
{
  int64_t until = clock_monotonic_ms() + timeout_ms;
  int ws = 0;
  for (;;) {
    pid_t r = waitpid(pid, &ws, WNOHANG);
    assert_true(r >= 0);
    if (r == pid)
      break;
    if (clock_monotonic_ms() > until) {
      kill(-pid, SIGKILL);
      waitpid(pid, &ws, 0);
      return -1;
    }
    clock_sleep_ms(10, NULL);
  }
  if (WIFSIGNALED(ws))
    return 128 + WTERMSIG(ws);
  return WEXITSTATUS(ws);
}

int pt_cli(struct pt *t, int timeout_ms, char **out, char **err, ...)
{
  char *argv[32];
  size_t n = 0;
  char prog[] = "sendonce-publisher", copt[] = "--config";
  argv[n++] = prog;
  argv[n++] = copt;
  argv[n++] = t->conf;
  va_list ap;
  va_start(ap, err);
  for (char *a; (a = va_arg(ap, char *)) != NULL && n < 31;)
    argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  char op[300], ep[300];
  path_in(t, "cli.out", op, sizeof(op));
  path_in(t, "cli.err", ep, sizeof(ep));
  pid_t pid = spawn(t, argv, op, ep);
  int status = wait_bounded(pid, timeout_ms);
  char *o = slurp(op), *e = slurp(ep);
  if (status < 0)
    fail_msg("%s %s did not finish within %d ms; stderr:\n%s", argv[3],
             n > 4 ? argv[4] : "", timeout_ms, e);
  if (out)
    *out = o;
  else
    free(o);
  if (err)
    *err = e;
  else
    free(e);
  return status;
}

pid_t pt_daemon_start(struct pt *t, int *log_index)
{
  char prog[] = "sendonce-publisher", copt[] = "--config", run[] = "run";
  char *argv[] = {prog, copt, t->conf, run, NULL};
  char op[300], ep[300], name[64];
  *log_index = t->n_logs++;
  snprintf(name, sizeof(name), "daemon-%d.out", *log_index);
  path_in(t, name, op, sizeof(op));
  snprintf(name, sizeof(name), "daemon-%d.log", *log_index);
  path_in(t, name, ep, sizeof(ep));
  return spawn(t, argv, op, ep);
}

void pt_daemon_stop(pid_t pid)
{
  kill(-pid, SIGCONT);
  assert_int_equal(kill(pid, SIGTERM), 0);
  int status = wait_bounded(pid, 20000);
  if (status != 0)
    fail_msg("publisher daemon exited with %d after SIGTERM (want 0)", status);
}

char *pt_daemon_log(struct pt *t, int log_index)
{
  char ep[300], name[64];
  snprintf(name, sizeof(name), "daemon-%d.log", log_index);
  path_in(t, name, ep, sizeof(ep));
  return slurp(ep);
}

void pt_register(struct pt *t, const char *id, int64_t due_ms)
{
  char addr[] = "a@example.org", rid[] = "u-1";
  char content[] = "{\"subject\":\"s\"}", channel[] = "email";
  struct msg_recipient r = {.id = rid, .address = addr};
  struct msg m = {.schema = MSG_SCHEMA_VERSION,
                  .campaign_id = (char *)id,
                  .scheduled_at_ms = due_ms,
                  .channel = channel,
                  .content_json = content,
                  .recipients = &r,
                  .n_recipients = 1};
  char *payload = NULL, err[MSG_ERR_LEN];
  if (msg_encode(&m, &payload, NULL, err, sizeof(err)) != SO_OK)
    fail_msg("msg_encode %s: %s", id, err);
  struct registry_new_campaign nc = {.campaign_id = id,
                                     .scheduled_at_ms = due_ms,
                                     .channel = channel,
                                     .payload = payload};
  bool created = false;
  int rc = registry_register(t->reg, &nc, CAMPAIGN_SCHEDULED, &created);
  if (rc != SO_OK)
    fail_msg("registry_register %s: %s", id, registry_errmsg(t->reg));
  assert_true(created);
  free(payload);
}

enum campaign_state pt_state(struct pt *t, const char *id)
{
  struct registry_campaign c = {0};
  int rc = registry_get(t->reg, id, &c);
  if (rc != SO_OK)
    fail_msg("registry_get %s: %s", id, so_strerror(rc));
  enum campaign_state s = c.state;
  registry_campaign_free(&c);
  return s;
}

size_t pt_count_state(struct pt *t, enum campaign_state state)
{
  struct registry_campaign *list = NULL;
  size_t n = 0;
  int rc = registry_list(t->reg, (int)state, 1000000, &list, &n);
  if (rc != SO_OK)
    fail_msg("registry_list: %s", registry_errmsg(t->reg));
  registry_campaigns_free(list, n);
  return n;
}

size_t pt_drain(struct pt *t, char **ids, size_t max)
{
  size_t n = 0;
  char err[512] = "";
  /* Our own session may first learn here that the broker restarted: it
   * reconnects with backoff, so retry for a while. */
  int64_t retry_until = clock_monotonic_ms() + 30000;
  for (;;) {
    struct broker_delivery *d = NULL;
    int rc = broker_get(t->b, t->topo.campaigns, &d, err, sizeof(err));
    if (rc == SO_ERR_NOTFOUND)
      return n;
    if ((rc == SO_ERR_UNAVAILABLE || rc == SO_ERR_TIMEOUT) &&
        clock_monotonic_ms() < retry_until) {
      clock_sleep_ms(100, NULL);
      continue;
    }
    if (rc != SO_OK)
      fail_msg("broker_get %s: %s: %s", t->topo.campaigns, so_strerror(rc),
               err);
    if (n < max)
      ids[n] = strdup(d->message_id ? d->message_id : "");
    n++;
    /* A connection lost between get and ack requeues the message; the
     * next get then takes it again: count by id, not by get. */
    if (broker_ack(t->b, d->generation, d->tag) != SO_OK) {
      if (n <= max)
        free(ids[n - 1]);
      n--;
    }
    broker_delivery_free(d);
  }
}

size_t pt_count_id(char **ids, size_t n, const char *id)
{
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    if (ids[i] && strcmp(ids[i], id) == 0)
      c++;
  return c;
}

void pt_free_ids(char **ids, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(ids[i]);
}
