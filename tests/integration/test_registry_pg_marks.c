/* test_registry_pg_marks.c - the PostgreSQL registry's delivery marks on a
 * campaign that already holds many deliveries:
 *  - a batch's work does not grow with the campaign: the buffers the mark
 *    and pending statements touch (EXPLAIN ANALYZE BUFFERS, with the
 *    table's statistics as stale as they are during a big campaign's run)
 *    are the same for a campaign of 0 and of 100,000 rows;
 *  - one batch mixing INFLIGHT, SENT and REJECTED marks, repeated ids and
 *    rows already in every state keeps the semantics of registry.h
 *    (a final state is never left, attempts counted as SQLite counts them,
 *    counters bumped only by real changes), and a repeated batch counts
 *    nothing;
 *  - migration 2 on a version-1 registry holding rows: rows kept, the
 *    INFLIGHT -> SENT update stays on its page (fillfactor), the foreign
 *    key gone and its ON DELETE CASCADE done by the trigger, and no mark
 *    writes a row for a campaign that does not exist;
 *  - migration 3 on a version-2 registry holding rows: no table rewritten,
 *    no table CHECK left, the same states refused, the campaign finishes.
 *
 * Real PostgreSQL (scripts/setup), a schema of its own, dropped at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <time.h>

#include "integration/registry_testdb.h"
#include "registry.h"
#include "registry_pg_conn.h"
#include "testenv.h"

/* Rows the big campaign holds before the batches; ids per batch. */
#define BIG_ROWS 100000
#define BATCH 200

static struct testdb db;

static int group_setup(void **state)
{
  (void)state;
  testdb_create(&db, REGISTRY_POSTGRESQL);
  registry_close(testdb_open(&db)); /* applies the migrations */
  /* No statistics while the table grows, as during a big campaign's run
   * (autovacuum analyzes at most once a minute): a plan that trusts them
   * is the plan that grows. */
  testdb_exec(&db, "ALTER TABLE deliveries SET (autovacuum_enabled = false)");
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  testdb_destroy(&db);
  return 0;
}

static int64_t claim(struct registry *r, const char *id)
{
  int64_t now = 0;
  REG_OK(r, registry_now(r, &now));
  struct registry_new_campaign c = {id, now - 1000, "email", "{}"};
  bool created = false;
  REG_OK(r, registry_register(r, &c, CAMPAIGN_PUBLISHED, &created));
  struct registry_claim cl;
  REG_OK(r, registry_claim(r, id, "w1", 600000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  return cl.fence;
}

/* ---- a batch costs the same in a campaign of any size ------------------ */

static PGconn *raw_connect(const struct testdb *d)
{
  const char *keys[] = {"dbname", "password", NULL};
  const char *vals[] = {d->pg_conninfo, d->pg_password, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c || PQstatus(c) != CONNECTION_OK)
    fail_msg("connect: %s", c ? PQerrorMessage(c) : "out of memory");
  return c;
}

static void raw_exec(PGconn *c, const char *sql)
{
  PGresult *res = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(res);
}

/* A text[] literal: "new-0" ... "new-<n-1>", or n copies of `word`. */
static char *array_of(const char *word, int n)
{
  size_t cap = (size_t)n * 24 + 8;
  char *s = malloc(cap);
  assert_non_null(s);
  size_t len = 0;
  s[len++] = '{';
  for (int i = 0; i < n; i++) {
    int w = word ? snprintf(s + len, cap - len, "%s%s", i ? "," : "", word)
                 : snprintf(s + len, cap - len, "%snew-%d", i ? "," : "", i);
    assert_true(w > 0 && (size_t)w < cap - len);
    len += (size_t)w;
  }
  s[len++] = '}';
  s[len] = '\0';
  return s;
}

/* buffers: EXPLAIN (ANALYZE, BUFFERS) of a prepared registry statement;
 * the shared buffers (hit + read) its top node accounts for, which
 * include every node and CTE under it. The statement runs for real. */
static long buffers(PGconn *c, const char *stmt, int nparams,
                    const char *const *params)
{
  size_t cap = 256;
  for (int i = 0; i < nparams; i++)
    cap += 2 * strlen(params[i]) + 8;
  char *sql = malloc(cap);
  assert_non_null(sql);
  size_t len = (size_t)snprintf(sql, cap,
                                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, "
                                "TIMING OFF) EXECUTE %s(",
                                stmt);
  for (int i = 0; i < nparams; i++) {
    char *lit = PQescapeLiteral(c, params[i], strlen(params[i]));
    assert_non_null(lit);
    len += (size_t)snprintf(sql + len, cap - len, "%s%s", i ? ", " : "", lit);
    PQfreemem(lit);
  }
  snprintf(sql + len, cap - len, ")");
  PGresult *res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", stmt, PQerrorMessage(c));
  free(sql);
  long total = -1;
  for (int row = 0; row < PQntuples(res) && total < 0; row++) {
    const char *line = PQgetvalue(res, row, 0);
    const char *b = strstr(line, "Buffers: shared");
    if (!b)
      continue;
    const char *hit = strstr(b, "hit=");
    const char *read = strstr(b, "read=");
    total = (hit ? strtol(hit + 4, NULL, 10) : 0) +
            (read ? strtol(read + 5, NULL, 10) : 0);
  }
  PQclear(res);
  assert_true(total >= 0);
  return total;
}

struct cost {
  long pending, inflight, sent;
};

/* One batch of BATCH new ids on campaign id: pending, INFLIGHT, SENT, as
 * the consumer runs them, in a transaction that is rolled back. The mark
 * statement's parameters are the groups of registry_pg_marks.c: $3 the
 * ids marked SENT, $4 those marked INFLIGHT (looked up first: $12), the
 * rest empty. */
static struct cost batch_cost(PGconn *c, const char *id, int64_t fence)
{
  char f[24];
  snprintf(f, sizeof(f), "%lld", (long long)fence);
  char *ids = array_of(NULL, BATCH);
  struct cost k;
  raw_exec(c, "BEGIN");
  const char *pp[] = {id, f, ids};
  k.pending = buffers(c, "pend", 3, pp);
  const char *pi[] = {id,   f,    "{}", ids,  "{}", "{}",
                      "{}", "{}", "{}", "{}", "{}", "true"};
  k.inflight = buffers(c, "mark", 12, pi);
  const char *ps[] = {id,   f,    ids,  "{}", "{}", "{}",
                      "{}", "{}", "{}", "{}", "{}", "true"};
  k.sent = buffers(c, "mark", 12, ps);
  raw_exec(c, "ROLLBACK");
  free(ids);
  return k;
}

static void prepare(PGconn *c, const char *name, const char *sql, int nparams)
{
  PGresult *res = PQprepare(c, name, sql, nparams, NULL);
  if (PQresultStatus(res) != PGRES_COMMAND_OK)
    fail_msg("prepare %s: %s", name, PQerrorMessage(c));
  PQclear(res);
}

static void test_batch_cost_flat_in_campaign_size(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&db);
  int64_t small_fence = claim(r, "small");
  int64_t big_fence = claim(r, "big");
  char sql[256];
  snprintf(sql, sizeof(sql),
           "INSERT INTO deliveries (campaign_id, recipient_id, state, "
           "attempts, updated_at) SELECT 'big', 'old-' || i, 'SENT', 1, 0 "
           "FROM generate_series(1, %d) i",
           BIG_ROWS);
  testdb_exec(&db, sql);

  /* The registry's own statements, with a custom plan for the actual
   * values and with the generic plan the registry uses
   * (PG_SESSION_PLANNER): both must look each id up. */
  PGconn *c = raw_connect(&db);
  raw_exec(c, PG_SESSION_PLANNER);
  prepare(c, "pend", registry_pg_sql[S_PENDING], 0);
  prepare(c, "mark", registry_pg_sql[S_MARK_PENDING], 0);
  const char *modes[] = {"force_custom_plan", "force_generic_plan"};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    char set[64];
    snprintf(set, sizeof(set), "SET plan_cache_mode = %s", modes[i]);
    raw_exec(c, set);
    struct cost small = batch_cost(c, "small", small_fence);
    struct cost big = batch_cost(c, "big", big_fence);
    print_message(
        "%s: buffers per batch of %d: pending %ld/%ld, INFLIGHT "
        "%ld/%ld, SENT %ld/%ld (empty/%d-row campaign)\n",
        modes[i], BATCH, small.pending, big.pending, small.inflight,
        big.inflight, small.sent, big.sent, BIG_ROWS);
    /* A lookup per id touches a few buffers per id; a scan of the big
     * campaign's rows would add thousands. */
    assert_true(big.pending <= small.pending + small.pending / 2 + 50);
    assert_true(big.inflight <= small.inflight + small.inflight / 2 + 50);
    assert_true(big.sent <= small.sent + small.sent / 2 + 50);
    assert_true(big.pending < 10 * BATCH);
    assert_true(big.sent < 20 * BATCH);
  }
  PQfinish(c);

  /* And the batch writes what it should through the registry itself. */
  struct registry_mark m[BATCH];
  char names[BATCH][16];
  for (int i = 0; i < BATCH; i++) {
    snprintf(names[i], sizeof(names[i]), "new-%d", i);
    m[i] = (struct registry_mark){names[i], DELIVERY_INFLIGHT, NULL};
  }
  REG_OK(r, registry_mark(r, "big", big_fence, m, BATCH));
  for (int i = 0; i < BATCH; i++)
    m[i].state = DELIVERY_SENT;
  REG_OK(r, registry_mark(r, "big", big_fence, m, BATCH));
  struct registry_campaign got;
  REG_OK(r, registry_get(r, "big", &got));
  assert_int_equal(got.sent, BATCH); /* the raw old rows counted nothing */
  registry_campaign_free(&got);
  assert_int_equal(testdb_query_int(&db,
                                    "SELECT count(*) FROM deliveries WHERE "
                                    "campaign_id = 'big' AND recipient_id "
                                    "LIKE 'new-%' AND state = 'SENT' AND "
                                    "attempts = 1"),
                   BATCH);
  registry_close(r);
}

/* The plans the statements keep while deliveries grows: made on an empty
 * table whose statistics say so (ANALYZE), cached (the generic plan) and
 * reused once the campaign holds many rows, as during a big campaign's
 * first minute. */
static void test_batch_cost_flat_as_table_grows(void **state)
{
  (void)state;
  struct testdb g;
  testdb_create(&g, REGISTRY_POSTGRESQL);
  struct registry *r = testdb_open(&g);
  int64_t fence = claim(r, "grow");
  testdb_exec(&g,
              "ALTER TABLE deliveries SET (autovacuum_enabled = false);"
              "ANALYZE deliveries");
  PGconn *c = raw_connect(&g);
  raw_exec(c, PG_SESSION_PLANNER);
  raw_exec(c, "SET plan_cache_mode = force_generic_plan");
  prepare(c, "pend", registry_pg_sql[S_PENDING], 0);
  prepare(c, "mark", registry_pg_sql[S_MARK_PENDING], 0);
  struct cost empty = batch_cost(c, "grow", fence);
  char sql[256];
  snprintf(sql, sizeof(sql),
           "INSERT INTO deliveries (campaign_id, recipient_id, state, "
           "attempts, updated_at) SELECT 'grow', 'old-' || i, 'SENT', 1, 0 "
           "FROM generate_series(1, %d) i",
           BIG_ROWS);
  testdb_exec(&g, sql);
  struct cost grown = batch_cost(c, "grow", fence);
  print_message(
      "cached generic plans: buffers per batch of %d: pending %ld/%ld, "
      "INFLIGHT %ld/%ld, SENT %ld/%ld (empty/%d-row table)\n",
      BATCH, empty.pending, grown.pending, empty.inflight, grown.inflight,
      empty.sent, grown.sent, BIG_ROWS);
  assert_true(grown.pending < 10 * BATCH);
  assert_true(grown.inflight < 10 * BATCH);
  assert_true(grown.sent < 20 * BATCH);
  PQfinish(c);
  registry_close(r);
  testdb_destroy(&g);
}

/* ---- a resumed campaign: INFLIGHT marks for rows that exist ----------- */

/* The mark statement first inserts recipients marked INFLIGHT without
 * looking them up; on a resumed campaign they exist, and the op must run
 * again with the lookups and answer as before, on a fresh handle and on
 * one that has just seen fresh recipients. */
static void test_resume_marks_existing_rows(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&db);
  int64_t fence = claim(r, "resume");
  testdb_exec(&db,
              "INSERT INTO deliveries (campaign_id, recipient_id, state, "
              "attempts, updated_at) SELECT 'resume', 'r-' || i, "
              "CASE WHEN i % 10 = 0 THEN 'INFLIGHT' ELSE 'SENT' END, 1, 0 "
              "FROM generate_series(0, 99) i");
  enum { N = 120 };
  struct registry_mark m[N];
  char names[N][16];
  bool pending[N];
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < N; i++) {
      /* round 0: r-0..r-99 exist, r-100..r-119 are fresh; round 1:
       * fresh r-150..r-219 first, then r-0..r-49 again. */
      int k = round == 0 ? i : (i + 150) % 220;
      snprintf(names[i], sizeof(names[i]), "r-%d", k);
      m[i] = (struct registry_mark){names[i], DELIVERY_INFLIGHT, NULL};
    }
    REG_OK(r, registry_mark_pending(r, "resume", fence, m, N, pending));
    for (int i = 0; i < N; i++) {
      int k = (int)strtol(names[i] + 2, NULL, 10);
      bool want = k >= 100 || k % 10 == 0; /* fresh, or INFLIGHT */
      if (pending[i] != want)
        fail_msg("round %d: pending(%s) = %d, want %d", round, names[i],
                 pending[i], want);
    }
  }
  /* Rows exist once each (100 + 20 + 70); r-10, INFLIGHT, counted an
   * attempt in each round. */
  assert_int_equal(testdb_query_int(&db,
                                    "SELECT count(*) FROM deliveries WHERE "
                                    "campaign_id = 'resume'"),
                   190);
  assert_int_equal(testdb_query_int(&db,
                                    "SELECT attempts FROM deliveries WHERE "
                                    "campaign_id = 'resume' AND "
                                    "recipient_id = 'r-10'"),
                   3);
  registry_close(r);
}

/* ---- a mark that waited for the lock of a writer of the same rows ----- */

struct race_mark {
  struct registry *r;
  int64_t fence;
  int rc;
};

static void *race_mark_main(void *arg)
{
  struct race_mark *m = arg;
  const struct registry_mark marks[] = {{"race-1", DELIVERY_INFLIGHT, NULL},
                                        {"race-2", DELIVERY_INFLIGHT, NULL}};
  m->rc = registry_mark(m->r, "race", m->fence, marks, 2);
  return NULL;
}

/* The mark statement's snapshot is taken before it waits for the
 * campaign's row lock; the holder inserts one of its recipients and
 * commits. The statement's plain INSERT then meets that row (a unique
 * violation): the op runs again and counts the row as INFLIGHT. */
static void test_mark_after_lock_wait(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&db);
  struct race_mark m = {r, claim(r, "race"), -1};
  PGconn *c = raw_connect(&db);
  raw_exec(c,
           "BEGIN; SELECT 1 FROM campaigns WHERE campaign_id = 'race' "
           "FOR UPDATE; INSERT INTO deliveries (campaign_id, recipient_id, "
           "state, attempts, updated_at) VALUES ('race', 'race-1', "
           "'INFLIGHT', 1, 0)");
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, race_mark_main, &m), 0);
  /* Until the mark waits for our lock. */
  long waiting = 0;
  for (int i = 0; i < 500 && !waiting; i++) {
    PGresult *res = PQexec(c,
                           "SELECT count(*) FROM pg_stat_activity WHERE "
                           "pg_backend_pid() = ANY (pg_blocking_pids(pid))");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    waiting = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (!waiting) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  assert_true(waiting > 0);
  raw_exec(c, "COMMIT");
  assert_int_equal(pthread_join(th, NULL), 0);
  if (m.rc != SO_OK)
    fail_msg("mark after the lock wait: %s: %s", so_strerror(m.rc),
             registry_errmsg(r));
  char *rows = testdb_query(&db,
                            "SELECT recipient_id, state, attempts FROM "
                            "deliveries WHERE campaign_id = 'race' "
                            "ORDER BY recipient_id");
  assert_string_equal(rows, "race-1|INFLIGHT|2\nrace-2|INFLIGHT|1\n");
  free(rows);
  PQfinish(c);
  registry_close(r);
}

/* ---- one mixed batch: the semantics of registry.h --------------------- */

static char *rows_of(const char *id)
{
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT recipient_id, state, attempts, error, updated_at = 5 "
           "FROM deliveries WHERE campaign_id = '%s' AND recipient_id NOT "
           "LIKE 'bulk-%%' ORDER BY recipient_id COLLATE \"C\"",
           id);
  return testdb_query(&db, sql);
}

static void test_mixed_batch_on_existing_rows(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&db);
  int64_t fence = claim(r, "mix");
  /* Many rows, and one in each state (updated_at 5 = untouched). */
  testdb_exec(&db,
              "INSERT INTO deliveries (campaign_id, recipient_id, state, "
              "attempts, updated_at) SELECT 'mix', 'bulk-' || i, 'SENT', 1, "
              "5 FROM generate_series(1, 20000) i;"
              "INSERT INTO deliveries (campaign_id, recipient_id, state, "
              "attempts, error, updated_at) VALUES "
              "('mix', 'j-old', 'REJECTED', 1, 'old', 5),"
              "('mix', 'i-old', 'INFLIGHT', 2, NULL, 5),"
              "('mix', 'i-old2', 'INFLIGHT', 1, 'prev', 5),"
              "('mix', 'i-old3', 'INFLIGHT', 1, NULL, 5),"
              "('mix', 's-old', 'SENT', 1, NULL, 5)");
  struct registry_campaign before;
  REG_OK(r, registry_get(r, "mix", &before));

  const struct registry_mark batch[] = {
      {"s-old", DELIVERY_INFLIGHT, NULL},  /* final: never left */
      {"s-old", DELIVERY_REJECTED, "x"},   /* ... nor replaced */
      {"j-old", DELIVERY_SENT, NULL},      /* final */
      {"i-old", DELIVERY_INFLIGHT, NULL},  /* +1 */
      {"n-2", DELIVERY_INFLIGHT, NULL},    /* new, 1 */
      {"i-old", DELIVERY_INFLIGHT, NULL},  /* +1 */
      {"i-old", DELIVERY_SENT, NULL},      /* SENT, 4 attempts */
      {"i-old", DELIVERY_INFLIGHT, NULL},  /* after SENT: nothing */
      {"i-old2", DELIVERY_INFLIGHT, NULL}, /* still INFLIGHT, 2, error kept */
      {"i-old3", DELIVERY_REJECTED, "no"}, /* REJECTED, attempts kept */
      {"i-old3", DELIVERY_SENT, NULL},     /* after REJECTED: nothing */
      {"n-1", DELIVERY_REJECTED, "bad"},   /* new, final first: 1 */
      {"n-2", DELIVERY_INFLIGHT, NULL},    /* 2 */
      {"n-2", DELIVERY_SENT, NULL},        /* SENT, 2 */
      {"n-3", DELIVERY_SENT, NULL},        /* new SENT, 1 */
      {"n-3", DELIVERY_INFLIGHT, NULL},    /* nothing */
      {"n-4", DELIVERY_INFLIGHT, NULL},    /* new INFLIGHT, 1 */
  };
  const size_t n = sizeof(batch) / sizeof(batch[0]);
  REG_OK(r, registry_mark(r, "mix", fence, batch, n));
  struct registry_campaign after;
  REG_OK(r, registry_get(r, "mix", &after));
  assert_int_equal(after.sent - before.sent, 3);         /* i-old n-2 n-3 */
  assert_int_equal(after.rejected - before.rejected, 2); /* i-old3 n-1 */
  assert_true(after.progress_at_ms >= before.progress_at_ms);
  char *rows = rows_of("mix");
  assert_string_equal(rows,
                      "i-old|SENT|4|~|f\n"
                      "i-old2|INFLIGHT|2|prev|f\n"
                      "i-old3|REJECTED|1|no|f\n"
                      "j-old|REJECTED|1|old|t\n"
                      "n-1|REJECTED|1|bad|f\n"
                      "n-2|SENT|2|~|f\n"
                      "n-3|SENT|1|~|f\n"
                      "n-4|INFLIGHT|1|~|f\n"
                      "s-old|SENT|1|~|t\n");
  free(rows);

  /* The same batch again: only the INFLIGHT rows count attempts. */
  REG_OK(r, registry_mark(r, "mix", fence, batch, n));
  struct registry_campaign again;
  REG_OK(r, registry_get(r, "mix", &again));
  assert_int_equal(again.sent, after.sent);
  assert_int_equal(again.rejected, after.rejected);
  assert_int_equal(again.progress_at_ms, after.progress_at_ms);
  /* ... and leave the campaign row alone, as SQLite does. */
  assert_int_equal(again.updated_at_ms, after.updated_at_ms);
  rows = rows_of("mix");
  assert_non_null(strstr(rows, "i-old2|INFLIGHT|3|prev|f\n"));
  assert_non_null(strstr(rows, "n-4|INFLIGHT|2|~|f\n"));
  assert_non_null(strstr(rows, "i-old|SENT|4|~|f\n"));
  assert_non_null(strstr(rows, "n-1|REJECTED|1|bad|f\n"));
  free(rows);
  assert_int_equal(testdb_query_int(&db,
                                    "SELECT count(*) FROM deliveries WHERE "
                                    "campaign_id = 'mix' AND updated_at = 5 "
                                    "AND recipient_id LIKE 'bulk-%'"),
                   20000);

  const char *ask[] = {"s-old", "j-old", "i-old", "i-old2", "i-old3",
                       "n-1",   "n-2",   "n-3",   "n-4",    "never"};
  const bool want[] = {false, false, false, true, false,
                       false, false, false, true, true};
  bool need[10];
  REG_OK(r, registry_pending(r, "mix", fence, ask, 10, need));
  for (int i = 0; i < 10; i++) {
    if (need[i] != want[i])
      fail_msg("pending(%s) = %d, want %d", ask[i], need[i], want[i]);
  }
  registry_campaign_free(&before);
  registry_campaign_free(&after);
  registry_campaign_free(&again);
  registry_close(r);
}

/* ---- migration 2 on a version-1 registry with rows -------------------- */

/* rows_on_pages: "recipient|heap page" lines of the campaign's n-* rows:
 * equal before and after an update when no row left its page. */
static char *rows_on_pages(const struct testdb *d, const char *id)
{
  char sql[256];
  snprintf(sql, sizeof(sql),
           "SELECT recipient_id, (ctid::text::point)[0]::bigint FROM "
           "deliveries WHERE campaign_id = '%s' AND recipient_id LIKE 'n-%%' "
           "ORDER BY recipient_id COLLATE \"C\"",
           id);
  return testdb_query(d, sql);
}

/* create_at_version: a new schema as a release at `version` left it:
 * migrations 1..version applied by hand and recorded, as registry_open
 * would find it. */
static void create_at_version(struct testdb *d, int version)
{
  testdb_create(d, REGISTRY_POSTGRESQL);
  testdb_exec(d,
              "CREATE TABLE schema_version (version integer PRIMARY KEY, "
              "applied_at bigint NOT NULL)");
  for (int v = 1; v <= version; v++) {
    char sql[96];
    testdb_exec(d, registry_pg_migration(v));
    snprintf(sql, sizeof(sql), "INSERT INTO schema_version VALUES (%d, 0)", v);
    testdb_exec(d, sql);
  }
}

static void test_migration_from_v1(void **state)
{
  (void)state;
  struct testdb old;
  create_at_version(&old, 1);
  testdb_exec(&old,
              "INSERT INTO campaigns (campaign_id, state, scheduled_at, "
              "channel, payload, owner, fence, lease_until, created_at, "
              "updated_at) VALUES ('run', 'PROCESSING', 0, 'email', '{}', "
              "'w1', 3, 4102444800000, 0, 0),"
              "('gone', 'DONE', 0, 'email', '{}', NULL, 1, 0, 0, 0);"
              "INSERT INTO deliveries (campaign_id, recipient_id, state, "
              "attempts, updated_at) SELECT 'gone', 'g-' || i, 'SENT', 1, 0 "
              "FROM generate_series(1, 1000) i;"
              "INSERT INTO deliveries (campaign_id, recipient_id, state, "
              "attempts, updated_at) VALUES ('run', 'i-1', 'INFLIGHT', 1, 0),"
              "('run', 's-1', 'SENT', 1, 0)");

  struct registry *r = testdb_open(&old); /* migrates 1 -> 2 */
  char sql[128];
  snprintf(sql, sizeof(sql), "SELECT max(version) FROM schema_version");
  assert_int_equal(testdb_query_int(&old, sql), REGISTRY_PG_SCHEMA_VERSION);
  assert_int_equal(testdb_query_int(&old, "SELECT count(*) FROM deliveries"),
                   1002);
  assert_int_equal(testdb_query_int(&old,
                                    "SELECT count(*) FROM pg_constraint "
                                    "WHERE conrelid = 'deliveries'::regclass "
                                    "AND contype = 'f'"),
                   0);

  /* The campaign goes on under its fence. */
  const struct registry_mark done[] = {{"i-1", DELIVERY_SENT, NULL},
                                       {"s-1", DELIVERY_SENT, NULL}};
  REG_OK(r, registry_mark(r, "run", 3, done, 2));
  struct registry_campaign got;
  REG_OK(r, registry_get(r, "run", &got));
  assert_int_equal(got.sent, 1);
  registry_campaign_free(&got);

  /* New rows: a batch marked INFLIGHT fills its pages only half, so the
   * SENT update finds room on the same page (a HOT update). With the
   * version-1 layout the first page is full and its rows move. */
  enum { N = 400 };
  struct registry_mark m[N];
  char names[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof(names[i]), "n-%03d", i);
    m[i] = (struct registry_mark){names[i], DELIVERY_INFLIGHT, NULL};
  }
  REG_OK(r, registry_mark(r, "run", 3, m, N));
  char *before = rows_on_pages(&old, "run");
  for (int i = 0; i < N; i++)
    m[i].state = DELIVERY_SENT;
  REG_OK(r, registry_mark(r, "run", 3, m, N));
  char *after = rows_on_pages(&old, "run");
  assert_string_equal(after, before);
  free(before);
  free(after);

  /* No row for a campaign that does not exist (the key used to say so;
   * the fenced lock does now). */
  assert_int_equal(registry_mark(r, "nope", 1, done, 2), SO_ERR_NOTFOUND);
  assert_int_equal(testdb_query_int(&old,
                                    "SELECT count(*) FROM deliveries "
                                    "WHERE campaign_id = 'nope'"),
                   0);

  /* Deleting a campaign still deletes its deliveries, and only its. */
  testdb_exec(&old, "DELETE FROM campaigns WHERE campaign_id = 'gone'");
  assert_int_equal(testdb_query_int(&old,
                                    "SELECT count(*) FROM deliveries "
                                    "WHERE campaign_id = 'gone'"),
                   0);
  assert_int_equal(testdb_query_int(&old,
                                    "SELECT count(*) FROM deliveries "
                                    "WHERE campaign_id = 'run'"),
                   2 + N);
  /* TRUNCATE, which the key refused, takes the deliveries too. */
  testdb_exec(&old, "TRUNCATE campaigns");
  assert_int_equal(testdb_query_int(&old, "SELECT count(*) FROM deliveries"),
                   0);
  registry_close(r);
  testdb_destroy(&old);
}

/* ---- migration 3 on a version-2 registry with rows -------------------- */

/* STATE_REFUSED: a DO block that fails unless `stmt` is refused by a
 * check (the domains' after migration 3, the tables' before). */
#define STATE_REFUSED(stmt)        \
  "DO $$ BEGIN " stmt              \
  "; RAISE EXCEPTION 'accepted'; " \
  "EXCEPTION WHEN check_violation THEN NULL; END $$"

static void test_migration_from_v2(void **state)
{
  (void)state;
  struct testdb old;
  create_at_version(&old, 2);
  testdb_exec(&old,
              "INSERT INTO campaigns (campaign_id, state, scheduled_at, "
              "channel, payload, owner, fence, lease_until, created_at, "
              "updated_at) VALUES ('run', 'PROCESSING', 0, 'email', '{}', "
              "'w1', 3, 4102444800000, 0, 0);"
              "INSERT INTO deliveries (campaign_id, recipient_id, state, "
              "attempts, updated_at) SELECT 'run', 'r-' || i, 'INFLIGHT', 1, "
              "0 FROM generate_series(1, 500) i");
  const char *files =
      "SELECT pg_relation_filenode('campaigns') || '|' || "
      "pg_relation_filenode('deliveries')";
  char *before = testdb_query(&old, files);

  struct registry *r = testdb_open(&old); /* migrates 2 -> 3 */
  assert_int_equal(testdb_query_int(&old,
                                    "SELECT max(version) FROM "
                                    "schema_version"),
                   REGISTRY_PG_SCHEMA_VERSION);
  /* The tables were not rewritten (a binary type change) and keep their
   * rows. */
  char *after = testdb_query(&old, files);
  assert_string_equal(after, before);
  free(before);
  free(after);
  assert_int_equal(testdb_query_int(&old, "SELECT count(*) FROM deliveries"),
                   500);
  /* No table CHECK left for every write to compile again (version 2 had
   * one on each table). */
  assert_int_equal(testdb_query_int(&old,
                                    "SELECT count(*) FROM pg_constraint "
                                    "WHERE conrelid IN ('campaigns'::regclass,"
                                    " 'deliveries'::regclass) "
                                    "AND contype = 'c'"),
                   0);
  /* A state outside each set is still refused, inserted or updated. */
  testdb_exec(&old,
              STATE_REFUSED("INSERT INTO campaigns (campaign_id, state, "
                            "scheduled_at, channel, payload, created_at, "
                            "updated_at) VALUES ('bad', 'SENT', 0, 'email', "
                            "'{}', 0, 0)"));
  testdb_exec(&old, STATE_REFUSED("UPDATE campaigns SET state = 'done' "
                                  "WHERE campaign_id = 'run'"));
  testdb_exec(&old, STATE_REFUSED("INSERT INTO deliveries (campaign_id, "
                                  "recipient_id, state, updated_at) VALUES "
                                  "('run', 'x', 'DONE', 0)"));
  testdb_exec(&old, STATE_REFUSED("UPDATE deliveries SET state = 'sent' "
                                  "WHERE campaign_id = 'run'"));

  /* The campaign goes on under its fence and finishes. */
  enum { N = 500 };
  struct registry_mark m[N];
  char names[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof(names[i]), "r-%d", i + 1);
    m[i] = (struct registry_mark){names[i], DELIVERY_SENT, NULL};
  }
  m[0].state = DELIVERY_REJECTED;
  m[0].error = "bounced";
  struct registry_counts counts = {0};
  REG_OK(r, registry_mark_finish(r, "run", 3, m, N, N, &counts));
  assert_int_equal(counts.sent, N - 1);
  assert_int_equal(counts.rejected, 1);
  assert_int_equal(testdb_query_int(&old,
                                    "SELECT count(*) FROM campaigns "
                                    "WHERE state = 'DONE' AND "
                                    "state::text = 'DONE'"),
                   1);
  registry_close(r);
  testdb_destroy(&old);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batch_cost_flat_in_campaign_size),
      cmocka_unit_test(test_batch_cost_flat_as_table_grows),
      cmocka_unit_test(test_mixed_batch_on_existing_rows),
      cmocka_unit_test(test_mark_after_lock_wait),
      cmocka_unit_test(test_resume_marks_existing_rows),
      cmocka_unit_test(test_migration_from_v1),
      cmocka_unit_test(test_migration_from_v2),
  };
  return cmocka_run_group_tests_name("registry_pg_marks", tests, group_setup,
                                     group_teardown);
}
