/* test_registry_env.c - registry cases about its surroundings: a newer
 * schema, a lock held by someone else, and clocks that disagree (run under
 * faketime through this binary's child mode). Part of the one registry
 * suite (test_registry.c). */
#include "registry_suite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "testenv.h"

#define REGISTRY_DETAIL_LEN 512

/* A database whose schema is newer than this program is refused. */
void test_schema_newer_refused(void **state)
{
  (void)state;
  testdb_exec(&suite_db,
              "INSERT INTO schema_version (version, applied_at) "
              "VALUES (999, 0)");
  struct registry_options opt = testdb_options(&suite_db);
  struct registry *r = NULL;
  char err[512] = "";
  int rc = registry_open(&opt, &r, err, sizeof(err));
  testdb_exec(&suite_db, "DELETE FROM schema_version WHERE version = 999");
  assert_int_equal(rc, SO_ERR_SCHEMA);
  assert_null(r);
  assert_non_null(strstr(err, "999"));
  r = testdb_open(&suite_db);
  registry_close(r);
}

/* A registry that cannot be opened says why and leaves *out NULL: an
 * SQLite file in a missing directory or not a database (SO_ERR_IO), a
 * PostgreSQL server that is not there (SO_ERR_UNAVAILABLE). */
void test_open_failures(void **state)
{
  (void)state;
  struct registry_options opt = testdb_options(&suite_db);
  struct registry *r = (struct registry *)&opt; /* must be reset to NULL */
  char err[512] = "";
  char *path = NULL;
  int want;
  if (suite_db.backend == REGISTRY_POSTGRESQL) {
    opt.pg_conninfo =
        "host=127.0.0.1 port=1 dbname=sendonce user=sendonce "
        "connect_timeout=2";
    want = SO_ERR_UNAVAILABLE;
  } else {
    opt.sqlite_path = "/nonexistent-sendonce-dir/registry.db";
    want = SO_ERR_IO;
  }
  int rc = registry_open(&opt, &r, err, sizeof(err));
  if (rc != want)
    fail_msg("open: %s (%s), want %s", so_strerror(rc), err, so_strerror(want));
  assert_null(r);
  assert_true(strlen(err) > 10);
  if (suite_db.backend == REGISTRY_SQLITE) {
    /* A file that is not a database is refused, not overwritten. */
    path = testenv_unique("/tmp/sendonce-notadb");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 200; i++)
      fputs("this is not an SQLite database\n", f);
    fclose(f);
    opt.sqlite_path = path;
    err[0] = '\0';
    rc = registry_open(&opt, &r, err, sizeof(err));
    unlink(path);
    free(path);
    if (rc != SO_ERR_IO)
      fail_msg("open of a non-database: %s (%s)", so_strerror(rc), err);
    assert_null(r);
    assert_true(strlen(err) > 10);
  }
}

/* A write lock held elsewhere for longer than busy_timeout_ms gives
 * SO_ERR_UNAVAILABLE (the consumer then defers the trigger to a retry
 * queue) within about that time; readers are not blocked meanwhile. */
void test_lock_held_elsewhere(void **state)
{
  (void)state;
  struct registry *setup = testdb_open(&suite_db);
  char *id = suite_id("locked");
  suite_register(setup, id, CAMPAIGN_PUBLISHED, suite_now(setup));
  registry_close(setup);

  struct registry_options opt = testdb_options(&suite_db);
  opt.busy_timeout_ms = 300;
  struct registry *r = NULL;
  char err[512];
  assert_int_equal(registry_open(&opt, &r, err, sizeof(err)), SO_OK);
  struct testdb_lock *lock = testdb_lock_campaign(&suite_db, id);
  struct registry_claim cl;
  int64_t t0 = clock_monotonic_ms();
  int rc = registry_claim(r, id, "w", 10000, &cl);
  int64_t waited = clock_monotonic_ms() - t0;
  char detail[REGISTRY_DETAIL_LEN];
  snprintf(detail, sizeof(detail), "%s", registry_errmsg(r));
  struct registry_campaign c;
  int get_rc = registry_get(r, id, &c);
  testdb_unlock(lock);
  assert_int_equal(get_rc, SO_OK); /* a reader is not blocked */
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  registry_campaign_free(&c);
  if (rc != SO_ERR_UNAVAILABLE)
    fail_msg("claim under a held lock: %s (%s), want %s", so_strerror(rc),
             detail, so_strerror(SO_ERR_UNAVAILABLE));
  assert_string_not_equal(detail, "no error"); /* says what happened */
  assert_true(waited >= 250 && waited < 5000);

  /* The handle is usable once the lock is gone. */
  REG_OK(r, registry_claim(r, id, "w", 10000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 1);
  free(id);
  registry_close(r);
}

/* ---- clock skew ------------------------------------------------------------
 */

/* Run `verb args` of child mode under `faketime <offset>`; the child's
 * one output line is returned in out. Returns the child's exit status. */
static int run_faketime_child(const char *offset, const char *verb,
                              const char *id, const char *owner,
                              const char *ttl, char *out, size_t outlen)
{
  char self[1024];
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  assert_true(len > 0);
  self[len] = '\0';
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    /* libfaketime is preloaded ahead of the sanitizer runtime. */
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 1);
    const char *target = suite_db.backend == REGISTRY_POSTGRESQL
                             ? suite_db.pg_conninfo
                             : suite_db.sqlite_path;
    execlp("faketime", "faketime", offset, self, "--child",
           suite_db.backend == REGISTRY_POSTGRESQL ? "pg" : "sqlite", target,
           verb, id, owner, ttl, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  size_t got = 0;
  ssize_t k;
  while (got + 1 < outlen &&
         (k = read(fds[0], out + got, outlen - 1 - got)) > 0)
    got += (size_t)k;
  out[got] = '\0';
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void parse_claim_line(const char *line, struct registry_claim *cl)
{
  long long kind, fence, until, now;
  if (sscanf(line, "%lld %lld %lld %lld", &kind, &fence, &until, &now) != 4)
    fail_msg("child said: '%s'", line);
  cl->kind = (enum registry_claim_kind)kind;
  cl->fence = fence;
  cl->lease_until_ms = until;
  cl->registry_now_ms = now;
}

#define HOUR_MS 3600000LL

/* PostgreSQL: the server's clock decides, whatever the worker's clock
 * says. SQLite: the clock is read inside each process, so a process with a
 * faked clock IS the registry's clock (registry.h says so); what we can
 * and do check is that claim and expiry are computed consistently on that
 * one SQL clock. */
void test_clock_skew(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char out[256];
  bool pg = suite_db.backend == REGISTRY_POSTGRESQL;

  char *live = suite_id("skew-live");
  suite_register(r, live, CAMPAIGN_PUBLISHED, suite_now(r));
  struct registry_claim mine = suite_claim(r, live, "host-a", 60000);
  assert_int_equal(mine.fence, 1);
  /* A worker an hour ahead must not see our 60 s lease as expired. */
  int st = run_faketime_child("+1 hour", "claim", live, "host-fast", "60000",
                              out, sizeof(out));
  assert_int_equal(st, 0);
  struct registry_claim theirs;
  parse_claim_line(out, &theirs);
  int64_t now = suite_now(r);
  if (pg) {
    assert_int_equal(theirs.kind, REGISTRY_CLAIM_HELD);
    assert_int_equal(theirs.fence, 1);
    assert_true(llabs(theirs.registry_now_ms - now) < 10000);
    REG_OK(r, registry_renew(r, live, 1, 60000));
  } else {
    /* The child's SQL clock runs an hour ahead: to it the lease is over,
     * and the lease it is granted is measured on that same clock. */
    assert_true(llabs(theirs.registry_now_ms - now - HOUR_MS) < 10000);
    assert_int_equal(theirs.kind, REGISTRY_CLAIM_CLAIMED);
    assert_int_equal(theirs.fence, 2);
    assert_int_equal(theirs.lease_until_ms - theirs.registry_now_ms, 60000);
    REG_RC(r, SO_ERR_STALE_FENCE, registry_renew(r, live, 1, 60000));
  }

  /* A worker an hour behind must still take over an expired lease. */
  char *gone = suite_id("skew-gone");
  suite_register(r, gone, CAMPAIGN_PUBLISHED, suite_now(r));
  assert_int_equal(suite_claim(r, gone, "host-a", 100).fence, 1);
  suite_wait_lease_expired(r, gone);
  st = run_faketime_child("-1 hour", "claim", gone, "host-slow", "60000", out,
                          sizeof(out));
  assert_int_equal(st, 0);
  parse_claim_line(out, &theirs);
  now = suite_now(r);
  if (pg) {
    assert_int_equal(theirs.kind, REGISTRY_CLAIM_CLAIMED);
    assert_int_equal(theirs.fence, 2);
    assert_true(llabs(theirs.registry_now_ms - now) < 10000);
    assert_int_equal(theirs.lease_until_ms - theirs.registry_now_ms, 60000);
    REG_RC(r, SO_ERR_STALE_FENCE, registry_renew(r, gone, 1, 1000));
  } else {
    assert_true(llabs(theirs.registry_now_ms - now + HOUR_MS) < 10000);
    assert_int_equal(theirs.kind, REGISTRY_CLAIM_HELD);
    assert_int_equal(theirs.fence, 1);
  }

  /* Both: in a process whose whole clock is shifted, claim, renew and
   * expiry agree with each other (the child checks and says "ok"). */
  char *self_id = suite_id("skew-self");
  suite_register(r, self_id, CAMPAIGN_PUBLISHED, suite_now(r));
  st = run_faketime_child("+1 hour", "selfcheck", self_id, "host-fast", "1000",
                          out, sizeof(out));
  if (st != 0)
    fail_msg("selfcheck child: %s", out);
  assert_non_null(strstr(out, "ok"));
  free(live);
  free(gone);
  free(self_id);
  registry_close(r);
}

/* ---- child mode
 * -------------------------------------------------------------- */

static int child_selfcheck(struct registry *r, const char *id,
                           const char *owner, int64_t ttl)
{
  struct registry_claim a, b;
  if (registry_claim(r, id, owner, ttl, &a) || a.fence != 1 ||
      a.lease_until_ms - a.registry_now_ms != ttl)
    return printf("first claim wrong: %s\n", registry_errmsg(r)), 1;
  if (registry_renew(r, id, 1, ttl) != SO_OK)
    return printf("renew within the lease refused\n"), 1;
  if (registry_claim(r, id, "other", ttl, &b) || b.kind != REGISTRY_CLAIM_HELD)
    return printf("live lease not held\n"), 1;
  clock_sleep_ms(ttl + 100, NULL);
  if (registry_renew(r, id, 1, ttl) != SO_ERR_STALE_FENCE)
    return printf("renew after expiry accepted\n"), 1;
  if (registry_claim(r, id, "other", ttl, &b) ||
      b.kind != REGISTRY_CLAIM_CLAIMED || b.fence != 2 ||
      b.registry_now_ms < a.lease_until_ms)
    return printf("takeover after expiry wrong\n"), 1;
  printf("ok\n");
  return 0;
}

int registry_child_main(int argc, char **argv)
{
  if (argc < 8)
    return 2;
  struct testdb db = {.backend = testdb_backend_parse(argv[2])};
  if (db.backend == REGISTRY_POSTGRESQL) {
    db.pg_conninfo = argv[3];
    db.pg_password = testenv_get("SENDONCE_REGISTRY_PASSWORD");
  } else {
    db.sqlite_path = argv[3];
  }
  struct registry *r = testdb_open(&db);
  const char *verb = argv[4], *id = argv[5], *owner = argv[6];
  int64_t ttl = strtoll(argv[7], NULL, 10);
  int rc = 2;
  if (strcmp(verb, "claim") == 0) {
    struct registry_claim cl;
    rc = registry_claim(r, id, owner, ttl, &cl);
    if (rc == SO_OK)
      printf("%d %lld %lld %lld\n", (int)cl.kind, (long long)cl.fence,
             (long long)cl.lease_until_ms, (long long)cl.registry_now_ms);
    else
      printf("error %s\n", registry_errmsg(r));
    rc = rc ? 1 : 0;
  } else if (strcmp(verb, "selfcheck") == 0) {
    rc = child_selfcheck(r, id, owner, ttl);
  }
  fflush(stdout);
  registry_close(r);
  return rc;
}
