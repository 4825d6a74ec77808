/* test_registry_pg_only.c - what only the PostgreSQL registry has: a
 * server that goes away and comes back, a backend killed under us (idle
 * and mid-statement), a newer schema, unreachable and silent servers,
 * statement_timeout, concurrent first openers.
 *
 * Runs against the real PostgreSQL of scripts/setup, in a schema of its own
 * per test; the shared server is never restarted: a server "going away" is
 * a TCP relay in this process that we stop and start, and a killed backend
 * is pg_terminate_backend() from a second connection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "registry.h"
#include "registry_backend.h"
#include "registry_pg_conn.h"
#include "registry_testdb.h"
#include "testenv.h"

/* ---- a private schema per test ---------------------------------------- */

struct pgdb {
  char *schema;   /* unique, unquoted identifier */
  char *appname;  /* application_name of the registry's connection */
  char *conninfo; /* base + search_path + application_name */
};

static PGconn *admin_connect(void)
{
  const char *keys[] = {"dbname", "password", NULL};
  const char *vals[] = {testenv_get("SENDONCE_REGISTRY_PG_CONNINFO"),
                        testenv_get("SENDONCE_REGISTRY_PASSWORD"), NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c || PQstatus(c) != CONNECTION_OK)
    fail_msg("admin connect: %s", c ? PQerrorMessage(c) : "out of memory");
  return c;
}

/* admin_query: run SQL on c; the first field of the first row (owned) or
 * NULL when there is none. */
static char *admin_query(PGconn *c, const char *sql)
{
  PGresult *res = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail_msg("admin SQL %s: %s", sql, PQerrorMessage(c));
  char *out = NULL;
  if (st == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0)
    out = strdup(PQgetvalue(res, 0, 0));
  PQclear(res);
  return out;
}

static void admin_exec(PGconn *c, const char *sql)
{
  free(admin_query(c, sql));
}

static char *underscored(const char *base)
{
  char *s = testenv_unique(base);
  for (char *p = s; *p; p++) {
    if (*p == '-')
      *p = '_';
  }
  return s;
}

/* Schemas created and not yet dropped: a failing test jumps out before
 * its pgdb_destroy, and the group teardown drops what is left. */
#define PGDB_MAX 32
static char *pgdb_live[PGDB_MAX];

static void pgdb_remember(const char *schema, bool add)
{
  for (int i = 0; i < PGDB_MAX; i++) {
    if (add && !pgdb_live[i]) {
      pgdb_live[i] = strdup(schema);
      return;
    }
    if (!add && pgdb_live[i] && strcmp(pgdb_live[i], schema) == 0) {
      free(pgdb_live[i]);
      pgdb_live[i] = NULL;
      return;
    }
  }
}

static void drop_schema(const char *schema)
{
  PGconn *c = admin_connect();
  char sql[256];
  snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
  admin_exec(c, sql);
  PQfinish(c);
}

static int pgdb_teardown(void **state)
{
  (void)state;
  for (int i = 0; i < PGDB_MAX; i++) {
    if (pgdb_live[i]) {
      drop_schema(pgdb_live[i]);
      free(pgdb_live[i]);
      pgdb_live[i] = NULL;
    }
  }
  return 0;
}

/* pgdb_create: a fresh schema; the registry connects with `host_port`
 * ("host=... port=...", or NULL for the configured server). */
static void pgdb_create(struct pgdb *d, const char *host_port)
{
  d->schema = underscored("sendonce_pgonly");
  d->appname = underscored("sendonce_pgonly_app");
  const char *base = testenv_get("SENDONCE_REGISTRY_PG_CONNINFO");
  size_t len = strlen(base) + 2 * strlen(d->schema) + 160;
  d->conninfo = malloc(len);
  assert_non_null(d->conninfo);
  snprintf(d->conninfo, len,
           "%s options='-csearch_path=%s' application_name=%s "
           "connect_timeout=2 %s",
           base, d->schema, d->appname, host_port ? host_port : "");
  PGconn *c = admin_connect();
  char sql[256];
  snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", d->schema);
  admin_exec(c, sql);
  PQfinish(c);
  pgdb_remember(d->schema, true);
}

static void pgdb_destroy(struct pgdb *d)
{
  drop_schema(d->schema);
  pgdb_remember(d->schema, false);
  free(d->schema);
  free(d->appname);
  free(d->conninfo);
}

static struct registry_options pg_options(const char *conninfo,
                                          int busy_timeout_ms)
{
  struct registry_options o = {
      .backend = REGISTRY_POSTGRESQL,
      .pg_conninfo = conninfo,
      .pg_password = testenv_get("SENDONCE_REGISTRY_PASSWORD"),
      .busy_timeout_ms = busy_timeout_ms,
  };
  return o;
}

static struct registry *open_ok(const char *conninfo, int busy_timeout_ms)
{
  struct registry_options o = pg_options(conninfo, busy_timeout_ms);
  struct registry *r = NULL;
  char err[512] = "";
  int rc = registry_open(&o, &r, err, sizeof(err));
  if (rc != SO_OK)
    fail_msg("registry_open: %s: %s", so_strerror(rc), err);
  return r;
}

static void register_published(struct registry *r, const char *id)
{
  int64_t now = 0;
  REG_OK(r, registry_now(r, &now));
  struct registry_new_campaign c = {id, now - 1000, "email", "{}"};
  bool created = false;
  REG_OK(r, registry_register(r, &c, CAMPAIGN_PUBLISHED, &created));
  assert_true(created);
}

/* backend_pids: the backends of the registry's connection, as "pid,pid". */
static char *backend_pids(PGconn *admin, const struct pgdb *d,
                          const char *extra_where)
{
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT coalesce(string_agg(pid::text, ','), '') FROM "
           "pg_stat_activity WHERE application_name = '%s' %s",
           d->appname, extra_where ? extra_where : "");
  return admin_query(admin, sql);
}

/* wait_for: poll until backend_pids(extra_where) is non-empty (or, with
 * `gone`, empty); fail after 10 s. Returns the pids (owned). */
static char *wait_for(PGconn *admin, const struct pgdb *d,
                      const char *extra_where, bool gone)
{
  int64_t deadline = clock_monotonic_ms() + 10000;
  for (;;) {
    char *pids = backend_pids(admin, d, extra_where);
    if ((*pids != '\0') != gone)
      return pids;
    free(pids);
    if (clock_monotonic_ms() > deadline)
      fail_msg("timed out waiting for backends of %s (%s)", d->appname,
               extra_where ? extra_where : "any");
    clock_sleep_ms(20, NULL);
  }
}

static void terminate(PGconn *admin, const char *pid)
{
  char sql[128];
  snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", pid);
  char *ok = admin_query(admin, sql);
  assert_string_equal(ok, "t");
  free(ok);
}

/* ---- (a) a backend terminated while we are idle ------------------------ */

static void test_terminated_idle_reconnects(void **state)
{
  (void)state;
  struct pgdb d;
  pgdb_create(&d, NULL);
  struct registry *r = open_ok(d.conninfo, 5000);
  register_published(r, "idle-1");
  register_published(r, "idle-2");

  PGconn *admin = admin_connect();
  char *before = wait_for(admin, &d, NULL, false);
  terminate(admin, before);
  char sql[96];
  snprintf(sql, sizeof(sql), "AND pid = %s", before);
  free(wait_for(admin, &d, sql, true));

  /* The dead connection is noticed before the op runs, so even a claim
   * (which is never retried blindly) runs whole on the new connection. */
  struct registry_claim cl;
  REG_OK(r, registry_claim(r, "idle-1", "w1", 60000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 1);
  char *after = wait_for(admin, &d, NULL, false);
  assert_string_not_equal(before, after);

  /* Again, and a read this time. */
  terminate(admin, after);
  snprintf(sql, sizeof(sql), "AND pid = %s", after);
  free(wait_for(admin, &d, sql, true));
  struct registry_campaign c;
  REG_OK(r, registry_get(r, "idle-1", &c));
  assert_int_equal(c.state, CAMPAIGN_PROCESSING);
  assert_string_equal(c.owner, "w1");
  registry_campaign_free(&c);
  /* Prepared statements were re-made on the new connection. */
  REG_OK(r, registry_claim(r, "idle-2", "w1", 60000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);

  free(before);
  free(after);
  PQfinish(admin);
  registry_close(r);
  pgdb_destroy(&d);
}

/* ---- (a) a backend terminated in the middle of a statement ------------- */

struct blocked_call {
  struct registry *r;
  const char *id;
  bool renew; /* renew (idempotent) instead of claim (not) */
  int64_t fence;
  int rc;
  struct registry_claim claim;
};

static void *blocked_call_run(void *arg)
{
  struct blocked_call *b = arg;
  if (b->renew)
    b->rc = registry_renew(b->r, b->id, b->fence, 60000);
  else
    b->rc = registry_claim(b->r, b->id, "w2", 60000, &b->claim);
  return NULL;
}

/* Lock the campaign's row from a second connection, start the call (it
 * waits on the lock), kill its backend while it waits. */
static void test_terminated_mid_statement(void **state)
{
  (void)state;
  struct pgdb d;
  pgdb_create(&d, NULL);
  struct registry *r = open_ok(d.conninfo, 30000);
  register_published(r, "mid-1");
  struct registry_claim cl;
  REG_OK(r, registry_claim(r, "mid-1", "w1", 60000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  register_published(r, "mid-2");

  PGconn *admin = admin_connect();
  PGconn *locker = admin_connect();
  char sql[256];
  snprintf(sql, sizeof(sql),
           "BEGIN; SELECT 1 FROM %s.campaigns WHERE campaign_id IN "
           "('mid-1', 'mid-2') FOR UPDATE",
           d.schema);
  admin_exec(locker, sql);

  /* Idempotent (renew): run again on a new connection, and succeeds once
   * the lock is gone. */
  struct blocked_call b = {
      .r = r, .id = "mid-1", .renew = true, .fence = cl.fence};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, blocked_call_run, &b), 0);
  char *first = wait_for(admin, &d, "AND wait_event_type = 'Lock'", false);
  terminate(admin, first);
  snprintf(sql, sizeof(sql), "AND wait_event_type = 'Lock' AND pid <> %s",
           first);
  char *second = wait_for(admin, &d, sql, false);
  admin_exec(locker, "ROLLBACK");
  assert_int_equal(pthread_join(th, NULL), 0);
  if (b.rc != SO_OK)
    fail_msg("renew after a mid-statement kill: %s: %s", so_strerror(b.rc),
             registry_errmsg(r));

  /* Not idempotent (claim): SO_ERR_UNAVAILABLE, and the next call works. */
  snprintf(sql, sizeof(sql),
           "BEGIN; SELECT 1 FROM %s.campaigns WHERE campaign_id = 'mid-2' "
           "FOR UPDATE",
           d.schema);
  admin_exec(locker, sql);
  struct blocked_call c = {.r = r, .id = "mid-2"};
  assert_int_equal(pthread_create(&th, NULL, blocked_call_run, &c), 0);
  char *third = wait_for(admin, &d, "AND wait_event_type = 'Lock'", false);
  terminate(admin, third);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(c.rc, SO_ERR_UNAVAILABLE);
  assert_non_null(strstr(registry_errmsg(r), "postgresql"));
  admin_exec(locker, "ROLLBACK");
  REG_OK(r, registry_claim(r, "mid-2", "w2", 60000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);

  free(first);
  free(second);
  free(third);
  PQfinish(locker);
  PQfinish(admin);
  registry_close(r);
  pgdb_destroy(&d);
}

/* ---- a server that goes away and comes back (a TCP relay) -------------- */

#define RELAY_MAX 16

struct relay {
  int port;          /* where the relay listens */
  int upstream_port; /* the real server's port on 127.0.0.1 */
  atomic_int stop;   /* set to stop the thread */
  pthread_t thread;
  int listen_fd;
};

static int relay_listen(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 16), 0);
  return fd;
}

static int local_port(int fd)
{
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  return ntohs(a.sin_port);
}

static int relay_dial(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Copy what is readable on from to to; false on EOF or error. */
static bool relay_pump(int from, int to)
{
  char buf[16384];
  ssize_t n = read(from, buf, sizeof(buf));
  if (n <= 0)
    return false;
  for (ssize_t off = 0; off < n;) {
    ssize_t w = write(to, buf + off, (size_t)(n - off));
    if (w <= 0)
      return false;
    off += w;
  }
  return true;
}

static void *relay_run(void *arg)
{
  struct relay *rl = arg;
  int pair[RELAY_MAX][2];
  int npairs = 0;
  while (!atomic_load(&rl->stop)) {
    struct pollfd p[1 + 2 * RELAY_MAX];
    p[0] = (struct pollfd){.fd = rl->listen_fd, .events = POLLIN};
    for (int i = 0; i < npairs; i++) {
      p[1 + 2 * i] = (struct pollfd){.fd = pair[i][0], .events = POLLIN};
      p[2 + 2 * i] = (struct pollfd){.fd = pair[i][1], .events = POLLIN};
    }
    if (poll(p, (nfds_t)(1 + 2 * npairs), 20) <= 0)
      continue;
    for (int i = npairs - 1; i >= 0; i--) {
      bool ok = true;
      if (p[1 + 2 * i].revents)
        ok = relay_pump(pair[i][0], pair[i][1]);
      if (ok && p[2 + 2 * i].revents)
        ok = relay_pump(pair[i][1], pair[i][0]);
      if (!ok) {
        close(pair[i][0]);
        close(pair[i][1]);
        pair[i][0] = pair[npairs - 1][0];
        pair[i][1] = pair[npairs - 1][1];
        npairs--;
      }
    }
    if ((p[0].revents & POLLIN) && npairs < RELAY_MAX) {
      int c = accept(rl->listen_fd, NULL, NULL);
      int u = c >= 0 ? relay_dial(rl->upstream_port) : -1;
      if (c >= 0 && u >= 0) {
        pair[npairs][0] = c;
        pair[npairs][1] = u;
        npairs++;
      } else {
        if (c >= 0)
          close(c);
        if (u >= 0)
          close(u);
      }
    }
  }
  /* "The server went away": every connection and the listener close. */
  for (int i = 0; i < npairs; i++) {
    close(pair[i][0]);
    close(pair[i][1]);
  }
  close(rl->listen_fd);
  return NULL;
}

static void relay_start(struct relay *rl)
{
  rl->listen_fd = relay_listen(rl->port);
  rl->port = local_port(rl->listen_fd);
  atomic_store(&rl->stop, 0);
  assert_int_equal(pthread_create(&rl->thread, NULL, relay_run, rl), 0);
}

static void relay_stop(struct relay *rl)
{
  atomic_store(&rl->stop, 1);
  assert_int_equal(pthread_join(rl->thread, NULL), 0);
}

/* The configured server's port (host is loopback by the rules). */
static int server_port(void)
{
  char *err = NULL;
  PQconninfoOption *opts =
      PQconninfoParse(testenv_get("SENDONCE_REGISTRY_PG_CONNINFO"), &err);
  assert_non_null(opts);
  int port = 5432;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (strcmp(o->keyword, "port") == 0 && o->val)
      port = (int)strtol(o->val, NULL, 10);
  }
  PQconninfoFree(opts);
  return port;
}

static void test_server_down_and_back(void **state)
{
  (void)state;
  struct relay rl = {.port = 0, .upstream_port = server_port()};
  relay_start(&rl);
  char hp[64];
  snprintf(hp, sizeof(hp), "host=127.0.0.1 port=%d", rl.port);
  struct pgdb d;
  pgdb_create(&d, hp);
  struct registry *r = open_ok(d.conninfo, 5000);
  register_published(r, "down-1");

  relay_stop(&rl);
  /* Down: every call is SO_ERR_UNAVAILABLE at once (connection refused),
   * with a message, and nothing crashes or hangs. */
  for (int i = 0; i < 3; i++) {
    int64_t t0 = clock_monotonic_ms();
    struct registry_campaign c;
    assert_int_equal(registry_get(r, "down-1", &c), SO_ERR_UNAVAILABLE);
    assert_non_null(strstr(registry_errmsg(r), "postgresql"));
    struct registry_claim cl;
    assert_int_equal(registry_claim(r, "down-1", "w1", 60000, &cl),
                     SO_ERR_UNAVAILABLE);
    int64_t now = 0;
    assert_int_equal(registry_now(r, &now), SO_ERR_UNAVAILABLE);
    assert_true(clock_monotonic_ms() - t0 < 3000);
  }

  relay_start(&rl); /* same port */
  struct registry_claim cl;
  REG_OK(r, registry_claim(r, "down-1", "w1", 60000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);

  registry_close(r);
  relay_stop(&rl);
  pgdb_destroy(&d);
}

/* ---- (c) unreachable and silent servers -------------------------------- */

static void test_unreachable_port(void **state)
{
  (void)state;
  /* A port nobody listens on: bind one, learn it, close it. */
  int fd = relay_listen(0);
  int port = local_port(fd);
  close(fd);
  char conninfo[256];
  snprintf(conninfo, sizeof(conninfo),
           "host=127.0.0.1 port=%d dbname=sendonce user=sendonce "
           "connect_timeout=2",
           port);
  struct registry_options o = pg_options(conninfo, 1000);
  struct registry *r = NULL;
  char err[512] = "";
  int64_t t0 = clock_monotonic_ms();
  assert_int_equal(registry_open(&o, &r, err, sizeof(err)), SO_ERR_UNAVAILABLE);
  assert_null(r);
  assert_true(clock_monotonic_ms() - t0 < 3000);
  assert_non_null(strstr(err, "connect"));
  /* The password never appears in a message. */
  assert_null(strstr(err, testenv_get("SENDONCE_REGISTRY_PASSWORD")));
}

static void test_silent_server_times_out(void **state)
{
  (void)state;
  /* A listener that never accepts: TCP connects, no server ever answers.
   * libpq must give up after connect_timeout, not hang. */
  int fd = relay_listen(0);
  char conninfo[256];
  snprintf(conninfo, sizeof(conninfo),
           "host=127.0.0.1 port=%d dbname=sendonce user=sendonce "
           "connect_timeout=2",
           local_port(fd));
  struct registry_options o = pg_options(conninfo, 1000);
  struct registry *r = NULL;
  char err[512] = "";
  int64_t t0 = clock_monotonic_ms();
  assert_int_equal(registry_open(&o, &r, err, sizeof(err)), SO_ERR_UNAVAILABLE);
  int64_t took = clock_monotonic_ms() - t0;
  assert_null(r);
  assert_true(took >= 1500);
  assert_true(took < 6000);
  close(fd);
}

/* ---- (b) a newer schema is refused ------------------------------------- */

static void test_newer_schema_refused(void **state)
{
  (void)state;
  struct pgdb d;
  pgdb_create(&d, NULL);
  registry_close(open_ok(d.conninfo, 5000));
  PGconn *admin = admin_connect();
  char sql[256];
  snprintf(sql, sizeof(sql), "SELECT max(version) FROM %s.schema_version",
           d.schema);
  char *v = admin_query(admin, sql);
  assert_int_equal(strtol(v, NULL, 10), REGISTRY_PG_SCHEMA_VERSION);
  free(v);
  snprintf(sql, sizeof(sql),
           "INSERT INTO %s.schema_version (version, applied_at) "
           "VALUES (%d, 0)",
           d.schema, REGISTRY_PG_SCHEMA_VERSION + 1);
  admin_exec(admin, sql);

  struct registry_options o = pg_options(d.conninfo, 5000);
  struct registry *r = NULL;
  char err[512] = "";
  assert_int_equal(registry_open(&o, &r, err, sizeof(err)), SO_ERR_SCHEMA);
  assert_null(r);
  assert_non_null(strstr(err, "newer"));
  /* Refusing changed nothing. */
  snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.schema_version",
           d.schema);
  v = admin_query(admin, sql);
  assert_int_equal(strtol(v, NULL, 10), REGISTRY_PG_SCHEMA_VERSION + 1);
  free(v);
  PQfinish(admin);
  pgdb_destroy(&d);
}

/* ---- concurrent first openers ------------------------------------------ */

struct opener {
  const char *conninfo;
  int rc;
  char err[256];
};

static void *opener_run(void *arg)
{
  struct opener *o = arg;
  struct registry_options opt = pg_options(o->conninfo, 5000);
  struct registry *r = NULL;
  o->rc = registry_open(&opt, &r, o->err, sizeof(o->err));
  registry_close(r);
  return NULL;
}

static void test_concurrent_first_open(void **state)
{
  (void)state;
  struct pgdb d;
  pgdb_create(&d, NULL);
  struct opener o[6];
  pthread_t th[6];
  for (int i = 0; i < 6; i++) {
    o[i] = (struct opener){.conninfo = d.conninfo};
    assert_int_equal(pthread_create(&th[i], NULL, opener_run, &o[i]), 0);
  }
  for (int i = 0; i < 6; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    if (o[i].rc != SO_OK)
      fail_msg("opener %d: %s: %s", i, so_strerror(o[i].rc), o[i].err);
  }
  PGconn *admin = admin_connect();
  char sql[256];
  snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.schema_version",
           d.schema);
  char *v = admin_query(admin, sql);
  /* Each migration applied once: one row per version. */
  assert_int_equal(strtol(v, NULL, 10), REGISTRY_PG_SCHEMA_VERSION);
  free(v);
  PQfinish(admin);
  pgdb_destroy(&d);
}

/* ---- statement_timeout -------------------------------------------------- */

static void test_statement_timeout(void **state)
{
  (void)state;
  struct pgdb d;
  pgdb_create(&d, NULL);
  struct registry *r = open_ok(d.conninfo, 300);
  register_published(r, "slow-1");
  PGconn *locker = admin_connect();
  char sql[256];
  snprintf(sql, sizeof(sql),
           "BEGIN; SELECT 1 FROM %s.campaigns WHERE campaign_id = 'slow-1' "
           "FOR UPDATE",
           d.schema);
  admin_exec(locker, sql);
  int64_t t0 = clock_monotonic_ms();
  struct registry_claim cl;
  assert_int_equal(registry_claim(r, "slow-1", "w1", 60000, &cl),
                   SO_ERR_UNAVAILABLE);
  assert_non_null(strstr(registry_errmsg(r), "statement timeout"));
  int64_t took = clock_monotonic_ms() - t0;
  assert_true(took >= 250);
  assert_true(took < 5000);
  admin_exec(locker, "ROLLBACK");
  REG_OK(r, registry_claim(r, "slow-1", "w1", 60000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  PQfinish(locker);
  registry_close(r);
  pgdb_destroy(&d);
}

/* ---- marks travel as text[] literals ---------------------------------- */

/* deliveries_of: "recipient|state|attempts|error" lines, by recipient. */
static char *deliveries_of(PGconn *admin, const struct pgdb *d, const char *id)
{
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT coalesce(string_agg(recipient_id || '|' || state || '|' "
           "|| attempts || '|' || coalesce(error, '~'), E'\\n' ORDER BY "
           "recipient_id COLLATE \"C\"), '') FROM %s.deliveries WHERE "
           "campaign_id = '%s'",
           d->schema, id);
  return admin_query(admin, sql);
}

/* Recipient ids and errors are arbitrary strings: quotes, backslashes,
 * commas, braces, blanks and the word NULL must survive the array literal;
 * a batch with repeated recipients applies its marks in order. */
static void test_marks_odd_strings_and_repeats(void **state)
{
  (void)state;
  struct pgdb d;
  pgdb_create(&d, NULL);
  struct registry *r = open_ok(d.conninfo, 5000);
  register_published(r, "odd-1");
  struct registry_claim cl;
  REG_OK(r, registry_claim(r, "odd-1", "w1", 60000, &cl));
  const char *odd[] = {
      "a\"b", "c\\d", "e,f", "{g}", " h ", "NULL", "\xc3\xa9t\xc3\xa9"};
  enum { NODD = sizeof(odd) / sizeof(odd[0]) };
  struct registry_mark m[NODD];
  for (size_t i = 0; i < NODD; i++)
    m[i] = (struct registry_mark){odd[i], DELIVERY_REJECTED, odd[i]};
  REG_OK(r, registry_mark(r, "odd-1", cl.fence, m, NODD));
  bool need[NODD + 1];
  const char *ask[NODD + 1];
  for (size_t i = 0; i < NODD; i++)
    ask[i] = odd[i];
  ask[NODD] = "never-marked";
  REG_OK(r, registry_pending(r, "odd-1", cl.fence, ask, NODD + 1, need));
  for (size_t i = 0; i < NODD; i++) {
    if (need[i])
      fail_msg("recipient '%s' should be done", odd[i]);
  }
  assert_true(need[NODD]);

  /* An INFLIGHT row, then a batch that repeats recipients. */
  struct registry_mark first = {"c", DELIVERY_INFLIGHT, NULL};
  REG_OK(r, registry_mark(r, "odd-1", cl.fence, &first, 1));
  struct registry_mark batch[] = {
      {"a", DELIVERY_INFLIGHT, NULL}, {"a", DELIVERY_SENT, NULL},
      {"a", DELIVERY_INFLIGHT, NULL}, {"b", DELIVERY_REJECTED, "first"},
      {"b", DELIVERY_SENT, NULL},     {"c", DELIVERY_INFLIGHT, NULL},
      {"c", DELIVERY_INFLIGHT, NULL}, {"c", DELIVERY_SENT, NULL},
  };
  REG_OK(r, registry_mark(r, "odd-1", cl.fence, batch,
                          sizeof(batch) / sizeof(batch[0])));
  struct registry_campaign c;
  REG_OK(r, registry_get(r, "odd-1", &c));
  assert_int_equal(c.sent, 2);            /* a, c */
  assert_int_equal(c.rejected, NODD + 1); /* the odd ones, b */
  registry_campaign_free(&c);

  PGconn *admin = admin_connect();
  char *rows = deliveries_of(admin, &d, "odd-1");
  const char *want =
      " h |REJECTED|1| h \n"
      "NULL|REJECTED|1|NULL\n"
      "a|SENT|1|~\n"
      "a\"b|REJECTED|1|a\"b\n"
      "b|REJECTED|1|first\n"
      "c|SENT|3|~\n"
      "c\\d|REJECTED|1|c\\d\n"
      "e,f|REJECTED|1|e,f\n"
      "{g}|REJECTED|1|{g}\n"
      "\xc3\xa9t\xc3\xa9|REJECTED|1|\xc3\xa9t\xc3\xa9";
  assert_string_equal(rows, want);
  free(rows);

  /* A big batch goes in one statement, all of it counted. */
  enum { BIG = 5000 };
  struct registry_mark *big = calloc(BIG, sizeof(*big));
  char(*names)[16] = calloc(BIG, sizeof(*names));
  assert_non_null(big);
  assert_non_null(names);
  for (int i = 0; i < BIG; i++) {
    snprintf(names[i], sizeof(names[i]), "big-%d", i);
    big[i] = (struct registry_mark){names[i], DELIVERY_SENT, NULL};
  }
  REG_OK(r, registry_mark(r, "odd-1", cl.fence, big, BIG));
  REG_OK(r, registry_mark(r, "odd-1", cl.fence, big, BIG)); /* no-op */
  REG_OK(r, registry_get(r, "odd-1", &c));
  assert_int_equal(c.sent, 2 + BIG);
  registry_campaign_free(&c);
  free(big);
  free(names);

  PQfinish(admin);
  registry_close(r);
  pgdb_destroy(&d);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_terminated_idle_reconnects),
      cmocka_unit_test(test_terminated_mid_statement),
      cmocka_unit_test(test_server_down_and_back),
      cmocka_unit_test(test_unreachable_port),
      cmocka_unit_test(test_silent_server_times_out),
      cmocka_unit_test(test_newer_schema_refused),
      cmocka_unit_test(test_concurrent_first_open),
      cmocka_unit_test(test_statement_timeout),
      cmocka_unit_test(test_marks_odd_strings_and_repeats),
  };
  return cmocka_run_group_tests(tests, NULL, pgdb_teardown);
}
