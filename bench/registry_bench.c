/* registry_bench.c - claims/s and delivery marks/s of both registry
 * backends, at mark batch sizes 1, 100 and 1,000, and one-recipient
 * campaigns/s.
 *
 *   registry_bench [--backend sqlite|postgresql|both] [--seconds S]
 *                  [--count N] [--prefill N] [--threads T]
 *                  [--ops claim,mark,campaign] [--commit-delay-us US]
 *
 * SQLite runs on a fresh file in $TMPDIR (or /tmp); PostgreSQL in a fresh
 * schema of the database in SENDONCE_REGISTRY_PG_CONNINFO (password in
 * SENDONCE_REGISTRY_PASSWORD; with the test suite built, the test env file
 * of scripts/setup is read too). Both are removed at the end.
 *
 * claim: one registry_claim of a PUBLISHED campaign per op (campaigns are
 * registered beforehand, untimed). mark: the sender's pattern, a batch of
 * fresh recipients marked INFLIGHT and then the same batch SENT; every
 * recipient mark counts as one op. campaign (only with --ops): a
 * one-recipient campaign's registry work as the consumer does it, two
 * steps (register+claim+INFLIGHT, then SENT+DONE), one op per campaign.
 * --ops picks the rows (default claim,mark). Each row runs for --seconds or
 * --count ops, whichever ends first. --prefill N first gives each mark row's
 * campaign N SENT deliveries (untimed), to show whether a batch's cost
 * grows with the campaign it is written to.
 *
 * --threads T runs every row with T threads of this one process, each
 * with its own registry handle and its own campaigns (as the consumer's
 * workers), and counts the ops of all of them: that is what SQLite's
 * group commit changes (one transaction for the steps of all threads that
 * arrive together). --count is then per row over all threads.
 * --commit-delay-us sets the SQLite handles' registry.commit_delay_us
 * (default 0, off; the consumer ships 1000).
 *
 * Every row also prints the whole machine's busy CPU per op (machine_cpu.h):
 * the database server's work and the kernel's are counted, which the
 * client's own CPU time would miss.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "machine_cpu.h"
#include "log.h"
#include "registry.h"
#ifdef BENCH_HAVE_TESTENV
#include "testenv.h"
#endif

#define BENCH_TTL_MS (60 * 60 * 1000)
#define BENCH_CLAIM_CHUNK 500
#define BENCH_ID_LEN 64

struct bench_opts {
  bool sqlite;
  bool postgresql;
  double seconds;      /* per row */
  long long count;     /* per row; 0 = no cap */
  long long prefill;   /* SENT deliveries written before each mark row */
  int threads;         /* threads of this process, one handle each */
  int commit_delay_us; /* SQLite: registry.commit_delay_us (0: off) */
  bool row_claim, row_mark, row_campaign; /* --ops */
};

struct bench_db {
  enum registry_backend backend;
  char path[256];       /* SQLite file */
  char schema[64];      /* PostgreSQL schema */
  char conninfo[1024];  /* PostgreSQL conninfo with search_path */
  const char *password; /* PostgreSQL password or NULL */
  const char *base_conninfo;
};

static void usage(FILE *out)
{
  fprintf(out,
          "usage: registry_bench [--backend sqlite|postgresql|both] "
          "[--seconds S] [--count N] [--prefill N] [--threads T]\n"
          "       [--ops claim,mark,campaign] [--commit-delay-us US]\n"
          "  PostgreSQL: SENDONCE_REGISTRY_PG_CONNINFO and "
          "SENDONCE_REGISTRY_PASSWORD\n");
}

/* parse_ops: "claim,mark,campaign" (any of them, comma-separated). */
static int parse_ops(const char *list, struct bench_opts *o)
{
  o->row_claim = o->row_mark = o->row_campaign = false;
  const char *p = list;
  while (*p) {
    size_t n = strcspn(p, ",");
    if (n == 5 && strncmp(p, "claim", n) == 0)
      o->row_claim = true;
    else if (n == 4 && strncmp(p, "mark", n) == 0)
      o->row_mark = true;
    else if (n == 8 && strncmp(p, "campaign", n) == 0)
      o->row_campaign = true;
    else
      return -1;
    p += n;
    if (*p == ',')
      p++;
  }
  return o->row_claim || o->row_mark || o->row_campaign ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
  *o = (struct bench_opts){.sqlite = true,
                           .postgresql = true,
                           .seconds = 2.0,
                           .threads = 1,
                           .row_claim = true,
                           .row_mark = true};
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(arg, "--backend") == 0 && val) {
      o->sqlite = strcmp(val, "sqlite") == 0 || strcmp(val, "both") == 0;
      o->postgresql =
          strcmp(val, "postgresql") == 0 || strcmp(val, "both") == 0;
      if (!o->sqlite && !o->postgresql)
        return -1;
    } else if (strcmp(arg, "--seconds") == 0 && val) {
      o->seconds = strtod(val, &end);
      if (*end || o->seconds <= 0)
        return -1;
    } else if (strcmp(arg, "--prefill") == 0 && val) {
      o->prefill = strtoll(val, &end, 10);
      if (*end || o->prefill < 0)
        return -1;
    } else if (strcmp(arg, "--threads") == 0 && val) {
      long t = strtol(val, &end, 10);
      if (*end || t < 1 || t > 256)
        return -1;
      o->threads = (int)t;
    } else if (strcmp(arg, "--ops") == 0 && val) {
      if (parse_ops(val, o))
        return -1;
    } else if (strcmp(arg, "--commit-delay-us") == 0 && val) {
      long us = strtol(val, &end, 10);
      if (*end || us < 0 || us > 100000)
        return -1;
      o->commit_delay_us = (int)us;
    } else if (strcmp(arg, "--count") == 0 && val) {
      o->count = strtoll(val, &end, 10);
      if (*end || o->count < 0)
        return -1;
    } else {
      return -1;
    }
    i++;
  }
  return 0;
}

static const char *bench_env(const char *name)
{
  const char *v = getenv(name);
  if (v && *v)
    return v;
#ifdef BENCH_HAVE_TESTENV
  return testenv_get(name);
#else
  return NULL;
#endif
}

/* ---- databases ---------------------------------------------------------- */

static PGconn *pg_admin(const struct bench_db *db)
{
  const char *keys[] = {"dbname", "password", NULL};
  const char *vals[] = {db->base_conninfo, db->password, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "registry_bench: postgresql: %s",
            c ? PQerrorMessage(c) : "out of memory\n");
    PQfinish(c);
    return NULL;
  }
  return c;
}

static int pg_admin_exec(const struct bench_db *db, const char *sql)
{
  PGconn *c = pg_admin(db);
  if (!c)
    return -1;
  PGresult *res = PQexec(c, sql);
  int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
  if (rc)
    fprintf(stderr, "registry_bench: %s: %s", sql, PQerrorMessage(c));
  PQclear(res);
  PQfinish(c);
  return rc;
}

static int db_create(struct bench_db *db, enum registry_backend backend)
{
  memset(db, 0, sizeof(*db));
  db->backend = backend;
  if (backend == REGISTRY_SQLITE) {
    const char *dir = getenv("TMPDIR");
    snprintf(db->path, sizeof(db->path), "%s/sendonce-bench-%ld.db",
             dir ? dir : "/tmp", (long)getpid());
    return 0;
  }
  db->base_conninfo = bench_env("SENDONCE_REGISTRY_PG_CONNINFO");
  db->password = bench_env("SENDONCE_REGISTRY_PASSWORD");
  if (!db->base_conninfo) {
    fprintf(stderr,
            "registry_bench: SENDONCE_REGISTRY_PG_CONNINFO is not "
            "set\n");
    return -1;
  }
  snprintf(db->schema, sizeof(db->schema), "sendonce_bench_%ld",
           (long)getpid());
  snprintf(db->conninfo, sizeof(db->conninfo), "%s options='-csearch_path=%s'",
           db->base_conninfo, db->schema);
  char sql[128];
  snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", db->schema);
  return pg_admin_exec(db, sql);
}

static void db_destroy(struct bench_db *db)
{
  if (db->backend == REGISTRY_SQLITE) {
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
      char p[300];
      snprintf(p, sizeof(p), "%s%s", db->path, suffix[i]);
      unlink(p);
    }
    return;
  }
  char sql[128];
  snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", db->schema);
  (void)pg_admin_exec(db, sql);
}

static struct registry *db_open(const struct bench_db *db, int commit_delay_us)
{
  struct registry_options o = {.backend = db->backend,
                               .sqlite_path = db->path,
                               .pg_conninfo = db->conninfo,
                               .pg_password = db->password,
                               .busy_timeout_ms = 10000,
                               .commit_delay_us = commit_delay_us};
  struct registry *r = NULL;
  char err[512];
  if (registry_open(&o, &r, err, sizeof(err))) {
    fprintf(stderr, "registry_bench: %s\n", err);
    return NULL;
  }
  return r;
}

/* ---- measurements ------------------------------------------------------- */

struct bench_row {
  const char *operation;
  size_t batch;
  long long ops;
  double seconds;
  /* The whole machine's busy CPU seconds over the timed span (every
   * process and the kernel: the database server's work included). */
  double busy0, busy1;
};

static bool row_done(const struct bench_opts *o, long long ops,
                     int64_t started_ms)
{
  if (o->count > 0 && ops >= o->count)
    return true;
  return (double)(clock_monotonic_ms() - started_ms) >= o->seconds * 1000;
}

static int fail(struct registry *r, const char *what, int rc)
{
  fprintf(stderr, "registry_bench: %s: %s: %s\n", what, so_strerror(rc),
          registry_errmsg(r));
  return rc;
}

/* The threads of one row: they register, claim and stop in step. */
struct bench_sync {
  pthread_barrier_t barrier;
  int64_t timed_ms;  /* claims: the timed phases so far (thread 0's) */
  double timed_busy; /* claims: machine busy seconds in those phases */
  bool stop;         /* claims: written by thread 0 between barriers */
};

/* Register `n` PUBLISHED campaigns claim-<tag>-<from>... (untimed). */
static int register_chunk(struct registry *r, int tag, long long from,
                          long long n)
{
  for (long long i = from; i < from + n; i++) {
    char id[BENCH_ID_LEN];
    snprintf(id, sizeof(id), "claim-%d-%lld", tag, i);
    struct registry_new_campaign c = {id, 1000, "email", "{}"};
    bool created = false;
    int rc = registry_register(r, &c, CAMPAIGN_PUBLISHED, &created);
    if (rc)
      return fail(r, "register", rc);
  }
  return 0;
}

/* Claims of thread `tag`: every thread registers a chunk (untimed), then
 * all claim theirs at once (timed by thread 0, from the barrier to the
 * barrier), until thread 0 says stop. */
static int bench_claims(struct registry *r, const struct bench_opts *o, int tag,
                        struct bench_sync *sync, struct bench_row *row)
{
  *row = (struct bench_row){.operation = "claim", .batch = 1};
  for (;;) {
    pthread_barrier_wait(&sync->barrier);
    if (sync->stop)
      break;
    int rc = register_chunk(r, tag, row->ops, BENCH_CLAIM_CHUNK);
    if (rc)
      return rc;
    pthread_barrier_wait(&sync->barrier);
    int64_t t0 = clock_monotonic_ms();
    double busy0 = tag == 0 ? machine_busy_s() : 0;
    for (int i = 0; i < BENCH_CLAIM_CHUNK; i++) {
      char id[BENCH_ID_LEN];
      snprintf(id, sizeof(id), "claim-%d-%lld", tag, row->ops);
      struct registry_claim cl;
      rc = registry_claim(r, id, "bench", BENCH_TTL_MS, &cl);
      if (rc)
        return fail(r, "claim", rc);
      if (cl.kind != REGISTRY_CLAIM_CLAIMED) {
        fprintf(stderr, "registry_bench: %s not claimed (kind %d)\n", id,
                (int)cl.kind);
        return SO_ERR_INTERNAL;
      }
      row->ops++;
      if (o->count > 0 && row->ops >= o->count)
        break;
    }
    pthread_barrier_wait(&sync->barrier);
    if (tag == 0) {
      sync->timed_ms += clock_monotonic_ms() - t0;
      sync->timed_busy += machine_busy_s() - busy0;
      sync->stop = (double)sync->timed_ms >= o->seconds * 1000 ||
                   (o->count > 0 && row->ops >= o->count);
    }
  }
  row->seconds = (double)sync->timed_ms / 1000.0;
  row->busy1 = sync->timed_busy;
  return 0;
}

/* bench_prefill: n SENT deliveries "p-<i>" in campaign id (untimed), in
 * batches of 5,000. */
static int bench_prefill(struct registry *r, const char *id, int64_t fence,
                         long long n)
{
  enum { CHUNK = 5000 };
  struct registry_mark *marks = calloc(CHUNK, sizeof(*marks));
  char(*names)[BENCH_ID_LEN] = calloc(CHUNK, sizeof(*names));
  int rc = marks && names ? 0 : SO_ERR_NOMEM;
  for (long long done = 0; !rc && done < n; done += CHUNK) {
    size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
    for (size_t i = 0; i < k; i++) {
      snprintf(names[i], sizeof(names[i]), "p-%lld", done + (long long)i);
      marks[i] = (struct registry_mark){names[i], DELIVERY_SENT, NULL};
    }
    rc = registry_mark(r, id, fence, marks, k);
    if (rc)
      fail(r, "prefill", rc);
  }
  free(marks);
  free(names);
  return rc;
}

static int bench_marks(struct registry *r, const struct bench_opts *o,
                       size_t batch, int tag, struct bench_row *row)
{
  *row = (struct bench_row){.operation = "mark", .batch = batch};
  char id[BENCH_ID_LEN];
  snprintf(id, sizeof(id), "marks-%zu-%d", batch, tag);
  struct registry_new_campaign c = {id, 1000, "email", "{}"};
  bool created = false;
  int rc = registry_register(r, &c, CAMPAIGN_PUBLISHED, &created);
  struct registry_claim cl = {0};
  if (!rc)
    rc = registry_claim(r, id, "bench", BENCH_TTL_MS, &cl);
  if (rc)
    return fail(r, "mark setup", rc);
  if (o->prefill > 0 && bench_prefill(r, id, cl.fence, o->prefill))
    return SO_ERR_INTERNAL;
  struct registry_mark *marks = calloc(batch, sizeof(*marks));
  char(*names)[BENCH_ID_LEN] = calloc(batch, sizeof(*names));
  if (!marks || !names) {
    free(marks);
    free(names);
    return SO_ERR_NOMEM;
  }
  long long next = 0;
  row->busy0 = machine_busy_s();
  int64_t started = clock_monotonic_ms();
  while (!row_done(o, row->ops, started)) {
    for (size_t i = 0; i < batch; i++) {
      snprintf(names[i], sizeof(names[i]), "u-%lld", next++);
      marks[i].recipient_id = names[i];
      marks[i].state = DELIVERY_INFLIGHT;
    }
    rc = registry_mark(r, id, cl.fence, marks, batch);
    for (size_t i = 0; !rc && i < batch; i++)
      marks[i].state = DELIVERY_SENT;
    if (!rc)
      rc = registry_mark(r, id, cl.fence, marks, batch);
    if (rc) {
      fail(r, "mark", rc);
      break;
    }
    row->ops += 2 * (long long)batch;
  }
  row->seconds = (double)(clock_monotonic_ms() - started) / 1000.0;
  row->busy1 = machine_busy_s();
  free(marks);
  free(names);
  return rc;
}

/* bench_campaigns: the registry work of one-recipient campaigns as the
 * consumer does it for a trigger from another service (row 1 of
 * bench/run): register, claim and mark the recipient INFLIGHT in one step,
 * then its SENT mark and DONE in one step. Every campaign is one op. */
static int bench_campaigns(struct registry *r, const struct bench_opts *o,
                           int tag, struct bench_row *row)
{
  *row = (struct bench_row){.operation = "campaign", .batch = 1};
  const char *payload =
      "{\"schema\":1,\"campaign_id\":\"x\",\"scheduled_at\":"
      "\"2026-01-01T00:00:00Z\",\"channel\":\"email\",\"content\":"
      "{\"subject\":\"bench\"},\"recipients\":[{\"id\":\"u-1\","
      "\"address\":\"u1@example.org\"}]}";
  int rc = 0;
  row->busy0 = machine_busy_s();
  int64_t started = clock_monotonic_ms();
  while (!rc && !row_done(o, row->ops, started)) {
    char id[BENCH_ID_LEN];
    snprintf(id, sizeof(id), "camp-%d-%lld", tag, row->ops);
    struct registry_new_campaign c = {id, 1000, "email", payload};
    struct registry_mark m = {"u-1", DELIVERY_INFLIGHT, NULL};
    bool created = false, pending = false, marked = false;
    struct registry_claim cl = {0};
    rc = registry_register_claim_mark(r, &c, "bench", BENCH_TTL_MS, &m, 1,
                                      &created, &cl, &pending, &marked);
    if (rc) {
      fail(r, "register_claim_mark", rc);
      break;
    }
    if (cl.kind != REGISTRY_CLAIM_CLAIMED || !marked) {
      fprintf(stderr, "registry_bench: %s not claimed and marked\n", id);
      rc = SO_ERR_INTERNAL;
      break;
    }
    m.state = DELIVERY_SENT;
    rc = registry_mark_finish(r, id, cl.fence, &m, 1, 1, NULL);
    if (rc)
      fail(r, "mark_finish", rc);
    else
      row->ops++;
  }
  row->seconds = (double)(clock_monotonic_ms() - started) / 1000.0;
  row->busy1 = machine_busy_s();
  return rc;
}

static void print_row(const char *backend, const struct bench_row *row)
{
  double cpu_us = machine_cpu_us_per_op(row->busy0, row->busy1, row->ops);
  printf("%-10s  %-9s  %6zu  %9lld  %8.2f  %12.0f  %13.1f\n", backend,
         row->operation, row->batch, row->ops, row->seconds,
         row->seconds > 0 ? (double)row->ops / row->seconds : 0.0, cpu_us);
  fflush(stdout);
}

/* The rows: claims (timed between barriers, see bench_claims), marks in
 * batches, and whole one-recipient campaigns. */
enum row_kind { ROW_CLAIM, ROW_MARK, ROW_CAMPAIGN };

/* One thread of a row: its own handle, its own campaigns. */
struct bench_thread {
  pthread_t th;
  int tag;
  const struct bench_opts *o; /* count already divided among threads */
  struct registry *r;
  struct bench_sync *sync;
  enum row_kind kind;
  size_t batch; /* ROW_MARK */
  struct bench_row row;
  int rc;
};

static void *bench_thread_main(void *arg)
{
  struct bench_thread *t = arg;
  if (t->kind == ROW_CLAIM) {
    t->rc = bench_claims(t->r, t->o, t->tag, t->sync, &t->row);
    if (t->rc) {
      /* The others would wait at the next barrier for ever. */
      fprintf(stderr, "registry_bench: thread %d failed\n", t->tag);
      exit(1);
    }
    return NULL;
  }
  pthread_barrier_wait(&t->sync->barrier); /* start together */
  if (t->kind == ROW_MARK)
    t->rc = bench_marks(t->r, t->o, t->batch, t->tag, &t->row);
  else
    t->rc = bench_campaigns(t->r, t->o, t->tag, &t->row);
  return NULL;
}

/* run_row: the row on every thread; *row gets all their ops over the
 * longest thread's time, and the machine's busy time from the first
 * thread's start to the last one's end (claims: over the timed phases). */
static int run_row(struct bench_thread *ts, int n, enum row_kind kind,
                   size_t batch, struct bench_row *row)
{
  struct bench_sync sync = {.timed_ms = 0, .stop = false};
  pthread_barrier_init(&sync.barrier, NULL, (unsigned)n);
  for (int i = 0; i < n; i++) {
    ts[i].sync = &sync;
    ts[i].kind = kind;
    ts[i].batch = batch;
    ts[i].rc = 0;
    if (pthread_create(&ts[i].th, NULL, bench_thread_main, &ts[i])) {
      fprintf(stderr, "registry_bench: cannot start a thread\n");
      exit(1);
    }
  }
  int rc = 0;
  *row = ts[0].row; /* only for the zero values; filled below */
  for (int i = 0; i < n; i++) {
    pthread_join(ts[i].th, NULL);
    const struct bench_row *t = &ts[i].row;
    rc = rc ? rc : ts[i].rc;
    if (i == 0) {
      *row = *t;
      continue;
    }
    row->ops += t->ops;
    if (t->seconds > row->seconds)
      row->seconds = t->seconds;
    if (t->busy0 < row->busy0)
      row->busy0 = t->busy0;
    if (t->busy1 > row->busy1)
      row->busy1 = t->busy1;
  }
  pthread_barrier_destroy(&sync.barrier);
  return rc;
}

static int bench_backend(enum registry_backend backend,
                         const struct bench_opts *o)
{
  const char *name = backend == REGISTRY_SQLITE ? "sqlite" : "postgresql";
  struct bench_db db;
  if (db_create(&db, backend))
    return 1;
  int n = o->threads;
  struct bench_opts per_thread = *o;
  if (o->count > 0)
    per_thread.count = (o->count + n - 1) / n;
  struct bench_thread *ts = calloc((size_t)n, sizeof(*ts));
  int rc = ts ? 0 : 1;
  for (int i = 0; !rc && i < n; i++) {
    ts[i] = (struct bench_thread){.tag = i, .o = &per_thread};
    ts[i].r = db_open(&db, o->commit_delay_us);
    rc = ts[i].r ? 0 : 1;
  }
  struct bench_row row;
  if (!rc && o->row_claim) {
    rc = run_row(ts, n, ROW_CLAIM, 1, &row);
    if (!rc)
      print_row(name, &row);
  }
  const size_t batches[] = {1, 100, 1000};
  for (size_t i = 0;
       !rc && o->row_mark && i < sizeof(batches) / sizeof(batches[0]); i++) {
    rc = run_row(ts, n, ROW_MARK, batches[i], &row);
    if (!rc)
      print_row(name, &row);
  }
  if (!rc && o->row_campaign) {
    rc = run_row(ts, n, ROW_CAMPAIGN, 1, &row);
    if (!rc)
      print_row(name, &row);
  }
  for (int i = 0; ts && i < n; i++)
    registry_close(ts[i].r);
  free(ts);
  db_destroy(&db);
  return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
  struct bench_opts o;
  if (parse_args(argc, argv, &o)) {
    usage(stderr);
    return 2;
  }
  log_set_level(LOG_LEVEL_WARN);
  printf("%-10s  %-9s  %6s  %9s  %8s  %12s  %13s  (threads %d)\n", "backend",
         "operation", "batch", "ops", "seconds", "per-second", "machine-us/op",
         o.threads);
  int rc = 0;
  if (o.sqlite)
    rc |= bench_backend(REGISTRY_SQLITE, &o);
  if (o.postgresql)
    rc |= bench_backend(REGISTRY_POSTGRESQL, &o);
  return rc;
}
