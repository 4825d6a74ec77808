/* test_registry_group.c - the SQLite registry's group commit, with many
 * threads of one process on one real database file (each thread with its
 * own handle, as the consumer's workers have): every step's result is
 * checked against the database afterwards; a group in which one job fails
 * (stale fence, unknown campaign) while the others commit; two handles of
 * one process interleaved with another process on the same file; handles
 * opened and closed while others commit.
 *
 * Threads never call cmocka's asserts (they longjmp); they count failures
 * with a detail, and the test thread asserts after joining them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "registry.h"
#include "registry_sqlite_group.h"
#include "registry_testdb.h"
#include "testenv.h"

#define TTL_MS (10 * 60 * 1000)
#define THREADS 8
#define ID_LEN 128

static struct testdb db;

/* ---- helpers -------------------------------------------------------------
 */

struct worker {
  pthread_t th;
  int index;
  const char *prefix;
  struct registry *r;
  int failures;
  char detail[800];
  long long ops; /* write steps that returned SO_OK */
  void *arg;
};

/* Record the first failure of a worker (the test thread reports it). */
static void worker_fail(struct worker *w, const char *what, int rc)
{
  if (w->failures++ == 0)
    snprintf(w->detail, sizeof(w->detail), "thread %d: %s -> %s: %s", w->index,
             what, so_strerror(rc), w->r ? registry_errmsg(w->r) : "");
}

#define STEP_OK(w, what, expr)       \
  do {                               \
    int rc_ = (expr);                \
    if (rc_ != SO_OK) {              \
      worker_fail((w), (what), rc_); \
      goto done;                     \
    }                                \
    (w)->ops++;                      \
  } while (0)

static void run_workers(struct worker *ws, int n, void *(*fn)(void *))
{
  for (int i = 0; i < n; i++)
    assert_int_equal(pthread_create(&ws[i].th, NULL, fn, &ws[i]), 0);
  for (int i = 0; i < n; i++)
    assert_int_equal(pthread_join(ws[i].th, NULL), 0);
}

static void assert_workers_ok(const struct worker *ws, int n)
{
  for (int i = 0; i < n; i++) {
    if (ws[i].failures)
      fail_msg("%d failure(s); first: %s", ws[i].failures, ws[i].detail);
  }
}

static int reg(struct registry *r, const char *id, enum campaign_state st)
{
  struct registry_new_campaign c = {id, 1000, "email", "{\"schema\":1}"};
  bool created = false;
  int rc = registry_register(r, &c, st, &created);
  return rc ? rc : created ? SO_OK : SO_ERR_CONFLICT;
}

static int mark1(struct registry *r, const char *id, int64_t fence,
                 const char *recipient, enum delivery_state st)
{
  struct registry_mark m = {.recipient_id = recipient, .state = st};
  return registry_mark(r, id, fence, &m, 1);
}

static long long query_int(const char *fmt, ...) SO_PRINTF(1, 2);

static long long query_int(const char *fmt, ...)
{
  char sql[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof(sql), fmt, ap);
  va_end(ap);
  return testdb_query_int(&db, sql);
}

/* ---- many threads, distinct campaigns ------------------------------------
 */

#define DISTINCT_PER_THREAD 80 /* x 6 write steps = 480 per thread */

/* The consumer's whole life of a one-recipient campaign, per campaign:
 * register, claim, INFLIGHT, SENT, set_total, complete. */
static void *distinct_worker(void *arg)
{
  struct worker *w = arg;
  for (int k = 0; k < DISTINCT_PER_THREAD; k++) {
    char id[ID_LEN];
    snprintf(id, sizeof(id), "%s.t%d.c%d", w->prefix, w->index, k);
    STEP_OK(w, "register", reg(w->r, id, CAMPAIGN_PUBLISHED));
    struct registry_claim cl;
    STEP_OK(w, "claim", registry_claim(w->r, id, "w", TTL_MS, &cl));
    if (cl.kind != REGISTRY_CLAIM_CLAIMED || cl.fence != 1) {
      worker_fail(w, "claim kind/fence", SO_ERR_INTERNAL);
      goto done;
    }
    STEP_OK(w, "inflight", mark1(w->r, id, cl.fence, "r1", DELIVERY_INFLIGHT));
    STEP_OK(w, "sent", mark1(w->r, id, cl.fence, "r1", DELIVERY_SENT));
    STEP_OK(w, "set_total", registry_set_total(w->r, id, cl.fence, 1));
    STEP_OK(w, "complete", registry_complete(w->r, id, cl.fence));
  }
done:
  return NULL;
}

static void test_threads_distinct(void **state)
{
  (void)state;
  char *prefix = testenv_unique("gc-distinct");
  struct worker ws[THREADS] = {0};
  for (int i = 0; i < THREADS; i++) {
    ws[i] = (struct worker){.index = i, .prefix = prefix};
    ws[i].r = testdb_open(&db);
  }
  /* The group the handles share (one more reference keeps it, and its
   * counts, alive until the end of the test). */
  struct rsg_group *g = NULL;
  char err[256];
  assert_int_equal(rsg_acquire(db.sqlite_path, &g, err, sizeof(err)), SO_OK);
  struct rsg_stats before;
  rsg_stats_get(g, &before);
  int64_t t0 = clock_monotonic_ms();
  run_workers(ws, THREADS, distinct_worker);
  int64_t ms = clock_monotonic_ms() - t0;
  assert_workers_ok(ws, THREADS);
  /* Every thread that slept for its turn was woken once, with news: its
   * step done, or the lead handed to it. A batch that woke every waiter
   * (a broadcast) shows as idle wake-ups. */
  struct rsg_stats st;
  rsg_stats_get(g, &st);
  rsg_release(g);
  unsigned long long batches = st.batches - before.batches;
  unsigned long long jobs = st.jobs - before.jobs;
  unsigned long long waits = st.waits - before.waits;
  unsigned long long handoffs = st.handoffs - before.handoffs;
  print_message(
      "%llu jobs in %llu batches, %llu waits, %llu hand-offs, "
      "%llu idle wake-ups\n",
      jobs, batches, waits, handoffs, st.idle_wakes - before.idle_wakes);
  assert_int_equal(jobs, THREADS * DISTINCT_PER_THREAD * 6);
  assert_int_equal(st.idle_wakes - before.idle_wakes, 0);
  assert_int_equal(st.wakes - before.wakes, waits);
  assert_int_equal(waits, jobs - batches + handoffs);
  long long ops = 0;
  for (int i = 0; i < THREADS; i++) {
    ops += ws[i].ops;
    registry_close(ws[i].r);
  }
  print_message("%lld write steps from %d threads in %lld ms\n", ops, THREADS,
                (long long)ms);
  assert_int_equal(ops, THREADS * DISTINCT_PER_THREAD * 6);

  /* What every thread was told is what the database holds. */
  long long n = THREADS * DISTINCT_PER_THREAD;
  assert_int_equal(query_int("SELECT COUNT(*) FROM campaigns WHERE "
                             "campaign_id LIKE '%s.%%' AND state = 'DONE'"
                             " AND fence = 1 AND total = 1 AND sent = 1"
                             " AND rejected = 0 AND owner IS NULL",
                             prefix),
                   n);
  assert_int_equal(query_int("SELECT COUNT(*) FROM deliveries WHERE "
                             "campaign_id LIKE '%s.%%' AND recipient_id = "
                             "'r1' AND state = 'SENT' AND attempts = 1",
                             prefix),
                   n);
  assert_int_equal(
      query_int("SELECT COUNT(*) FROM campaigns WHERE campaign_id LIKE '%s.%%'",
                prefix),
      n);
  free(prefix);
}

/* ---- many threads, shared campaigns -------------------------------------
 */

#define SHARED_CAMPAIGNS 4
#define SHARED_MARKS 60 /* per thread: x (INFLIGHT + SENT) */

struct shared_ctx {
  char ids[SHARED_CAMPAIGNS][ID_LEN];
  int64_t fences[SHARED_CAMPAIGNS];
  atomic_int claimed[SHARED_CAMPAIGNS]; /* CLAIMED answers per campaign */
  atomic_llong sent_ok[SHARED_CAMPAIGNS];
};

/* Every thread races to claim every campaign (exactly one may win: the
 * leases are long), then all threads mark their own recipients on the
 * shared campaigns under the winner's fence. */
static void *shared_claim_worker(void *arg)
{
  struct worker *w = arg;
  struct shared_ctx *ctx = w->arg;
  for (int c = 0; c < SHARED_CAMPAIGNS; c++) {
    struct registry_claim cl;
    STEP_OK(w, "claim", registry_claim(w->r, ctx->ids[c], "w", TTL_MS, &cl));
    if (cl.kind == REGISTRY_CLAIM_CLAIMED) {
      atomic_fetch_add(&ctx->claimed[c], 1);
      ctx->fences[c] = cl.fence; /* read after join */
    } else if (cl.kind != REGISTRY_CLAIM_HELD) {
      worker_fail(w, "claim kind", SO_ERR_INTERNAL);
    }
  }
done:
  return NULL;
}

static void *shared_mark_worker(void *arg)
{
  struct worker *w = arg;
  struct shared_ctx *ctx = w->arg;
  for (int k = 0; k < SHARED_MARKS; k++) {
    int c = (k + w->index) % SHARED_CAMPAIGNS;
    char rid[64];
    snprintf(rid, sizeof(rid), "t%d-r%d", w->index, k);
    STEP_OK(w, "inflight",
            mark1(w->r, ctx->ids[c], ctx->fences[c], rid, DELIVERY_INFLIGHT));
    STEP_OK(w, "sent",
            mark1(w->r, ctx->ids[c], ctx->fences[c], rid, DELIVERY_SENT));
    atomic_fetch_add(&ctx->sent_ok[c], 1);
    if (k % 10 == 0)
      STEP_OK(w, "renew",
              registry_renew(w->r, ctx->ids[c], ctx->fences[c], TTL_MS));
  }
done:
  return NULL;
}

static void test_threads_shared(void **state)
{
  (void)state;
  char *prefix = testenv_unique("gc-shared");
  struct shared_ctx *ctx = calloc(1, sizeof(*ctx));
  assert_non_null(ctx);
  struct registry *setup = testdb_open(&db);
  for (int c = 0; c < SHARED_CAMPAIGNS; c++) {
    snprintf(ctx->ids[c], ID_LEN, "%s.%d", prefix, c);
    assert_int_equal(reg(setup, ctx->ids[c], CAMPAIGN_PUBLISHED), SO_OK);
  }
  registry_close(setup);

  struct worker ws[THREADS] = {0};
  for (int i = 0; i < THREADS; i++) {
    ws[i] = (struct worker){.index = i, .prefix = prefix, .arg = ctx};
    ws[i].r = testdb_open(&db);
  }
  run_workers(ws, THREADS, shared_claim_worker);
  assert_workers_ok(ws, THREADS);
  for (int c = 0; c < SHARED_CAMPAIGNS; c++) {
    assert_int_equal(atomic_load(&ctx->claimed[c]), 1);
    assert_int_equal(ctx->fences[c], 1);
  }
  run_workers(ws, THREADS, shared_mark_worker);
  assert_workers_ok(ws, THREADS);
  for (int i = 0; i < THREADS; i++)
    registry_close(ws[i].r);

  for (int c = 0; c < SHARED_CAMPAIGNS; c++) {
    long long want = atomic_load(&ctx->sent_ok[c]);
    assert_int_equal(want, THREADS * SHARED_MARKS / SHARED_CAMPAIGNS);
    assert_int_equal(query_int("SELECT sent FROM campaigns WHERE "
                               "campaign_id = '%s' AND fence = 1 AND state ="
                               " 'PROCESSING'",
                               ctx->ids[c]),
                     want);
    assert_int_equal(query_int("SELECT COUNT(*) FROM deliveries WHERE "
                               "campaign_id = '%s' AND state = 'SENT'"
                               " AND attempts = 1",
                               ctx->ids[c]),
                     want);
  }
  free(ctx);
  free(prefix);
}

/* ---- one job of a group fails, the others commit -------------------------
 */

enum group_role { ROLE_GOOD, ROLE_STALE, ROLE_MISSING };

struct group_job {
  enum group_role role;
  char id[ID_LEN];
  int64_t fence;
  int rc;
  char detail[512];
};

static void *group_worker(void *arg)
{
  struct worker *w = arg;
  struct group_job *job = w->arg;
  struct registry_mark m[2] = {{.recipient_id = "a", .state = DELIVERY_SENT},
                               {.recipient_id = "b", .state = DELIVERY_SENT}};
  if (job->role == ROLE_STALE)
    job->rc = registry_complete(w->r, job->id, job->fence + 1);
  else
    job->rc = registry_mark(w->r, job->id, job->fence, m, 2);
  snprintf(job->detail, sizeof(job->detail), "%s", registry_errmsg(w->r));
  return NULL;
}

/* Another connection holds the write lock while all threads submit, so
 * their jobs queue behind the first leader and then commit as one group:
 * one stale fence and one unknown campaign among them must fail alone. */
static void test_group_one_job_fails(void **state)
{
  (void)state;
  char *prefix = testenv_unique("gc-group");
  struct group_job jobs[THREADS];
  struct registry *setup = testdb_open(&db);
  for (int i = 0; i < THREADS; i++) {
    struct group_job *j = &jobs[i];
    j->role = i == 3 ? ROLE_STALE : i == 5 ? ROLE_MISSING : ROLE_GOOD;
    snprintf(j->id, ID_LEN, "%s.%d", prefix, i);
    if (j->role == ROLE_MISSING) {
      j->fence = 1; /* a valid fence of a campaign never registered */
      continue;
    }
    assert_int_equal(reg(setup, j->id, CAMPAIGN_PUBLISHED), SO_OK);
    struct registry_claim cl;
    assert_int_equal(registry_claim(setup, j->id, "w", TTL_MS, &cl), SO_OK);
    j->fence = cl.fence;
  }
  registry_close(setup);

  struct worker ws[THREADS] = {0};
  for (int i = 0; i < THREADS; i++) {
    ws[i] = (struct worker){.index = i, .prefix = prefix, .arg = &jobs[i]};
    ws[i].r = testdb_open(&db); /* busy timeout 5 s: outlasts the lock */
  }
  struct testdb_lock *lock = testdb_lock_campaign(&db, jobs[0].id);
  /* The first thread becomes the leader and waits for the lock; the rest
   * queue behind it and form the next group. */
  assert_int_equal(pthread_create(&ws[0].th, NULL, group_worker, &ws[0]), 0);
  clock_sleep_ms(50, NULL);
  for (int i = 1; i < THREADS; i++)
    assert_int_equal(pthread_create(&ws[i].th, NULL, group_worker, &ws[i]), 0);
  clock_sleep_ms(300, NULL);
  testdb_unlock(lock);
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_join(ws[i].th, NULL), 0);
  for (int i = 0; i < THREADS; i++)
    registry_close(ws[i].r);

  for (int i = 0; i < THREADS; i++) {
    const struct group_job *j = &jobs[i];
    long long rows = query_int(
        "SELECT COUNT(*) FROM deliveries WHERE campaign_id = '%s'"
        " AND state = 'SENT'",
        j->id);
    if (j->role == ROLE_GOOD) {
      if (j->rc != SO_OK)
        fail_msg("job %d: %s (%s)", i, so_strerror(j->rc), j->detail);
      assert_string_equal(j->detail, "no error");
      assert_int_equal(rows, 2);
      assert_int_equal(query_int("SELECT sent FROM campaigns WHERE "
                                 "campaign_id = '%s' AND state = "
                                 "'PROCESSING'",
                                 j->id),
                       2);
    } else if (j->role == ROLE_STALE) {
      assert_int_equal(j->rc, SO_ERR_STALE_FENCE);
      assert_non_null(strstr(j->detail, "stale fence"));
      assert_int_equal(rows, 0);
      assert_int_equal(query_int("SELECT COUNT(*) FROM campaigns WHERE "
                                 "campaign_id = '%s' AND state = "
                                 "'PROCESSING' AND fence = 1",
                                 j->id),
                       1);
    } else {
      assert_int_equal(j->rc, SO_ERR_NOTFOUND);
      assert_non_null(strstr(j->detail, j->id));
      assert_int_equal(rows, 0);
    }
  }
  free(prefix);
}

/* ---- two handles of one process and another process ----------------------
 */

#define XPROC_CAMPAIGNS 120
#define XPROC_THREADS 2

/* Every thread of both processes walks all campaigns (each from its own
 * starting point) and claims; the one winner of each marks its recipient
 * SENT and completes. The leases are long, so exactly one claim of each
 * campaign may succeed across both processes. */
static void *xproc_worker(void *arg)
{
  struct worker *w = arg;
  for (int k = 0; k < XPROC_CAMPAIGNS; k++) {
    int n = (k + w->index * 37) % XPROC_CAMPAIGNS;
    char id[ID_LEN];
    snprintf(id, sizeof(id), "%s.%d", w->prefix, n);
    struct registry_claim cl;
    STEP_OK(w, "claim", registry_claim(w->r, id, "w", TTL_MS, &cl));
    if (cl.kind != REGISTRY_CLAIM_CLAIMED)
      continue;
    char rid[64];
    snprintf(rid, sizeof(rid), "p%ld-t%d", (long)getpid(), w->index);
    STEP_OK(w, "sent", mark1(w->r, id, cl.fence, rid, DELIVERY_SENT));
    STEP_OK(w, "complete", registry_complete(w->r, id, cl.fence));
    w->arg = (void *)((intptr_t)w->arg + 1); /* campaigns won */
  }
done:
  return NULL;
}

/* Run XPROC_THREADS threads with a handle each; returns campaigns won, or
 * -1 after printing the first failure. */
static int xproc_run(const char *prefix, int first_index)
{
  struct worker ws[XPROC_THREADS] = {0};
  for (int i = 0; i < XPROC_THREADS; i++) {
    ws[i] = (struct worker){.index = first_index + i, .prefix = prefix};
    ws[i].r = testdb_open(&db);
  }
  for (int i = 0; i < XPROC_THREADS; i++)
    if (pthread_create(&ws[i].th, NULL, xproc_worker, &ws[i]))
      return -1;
  int won = 0, failed = 0;
  for (int i = 0; i < XPROC_THREADS; i++) {
    pthread_join(ws[i].th, NULL);
    won += (int)(intptr_t)ws[i].arg;
    if (ws[i].failures) {
      fprintf(stderr, "%s\n", ws[i].detail);
      failed = 1;
    }
    registry_close(ws[i].r);
  }
  return failed ? -1 : won;
}

static void test_two_handles_and_another_process(void **state)
{
  (void)state;
  char *prefix = testenv_unique("gc-xproc");
  struct registry *setup = testdb_open(&db);
  for (int n = 0; n < XPROC_CAMPAIGNS; n++) {
    char id[ID_LEN];
    snprintf(id, sizeof(id), "%s.%d", prefix, n);
    assert_int_equal(reg(setup, id, CAMPAIGN_PUBLISHED), SO_OK);
  }
  registry_close(setup); /* no handle crosses fork() */

  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    int won = xproc_run(prefix, XPROC_THREADS);
    if (write(fds[1], &won, sizeof(won)) != (ssize_t)sizeof(won))
      won = -1;
    _exit(won < 0 ? 1 : 0);
  }
  close(fds[1]);
  int won = xproc_run(prefix, 0);
  int child_won = -1;
  ssize_t got = read(fds[0], &child_won, sizeof(child_won));
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(got, (ssize_t)sizeof(child_won));
  assert_true(won >= 0);
  print_message("campaigns won: this process %d, the other %d\n", won,
                child_won);
  assert_int_equal(won + child_won, XPROC_CAMPAIGNS);

  assert_int_equal(query_int("SELECT COUNT(*) FROM campaigns WHERE "
                             "campaign_id LIKE '%s.%%' AND state = 'DONE'"
                             " AND fence = 1 AND sent = 1",
                             prefix),
                   XPROC_CAMPAIGNS);
  assert_int_equal(query_int("SELECT COUNT(*) FROM deliveries WHERE "
                             "campaign_id LIKE '%s.%%' AND state = 'SENT'",
                             prefix),
                   XPROC_CAMPAIGNS);
  free(prefix);
}

/* ---- handles opened and closed while others commit -----------------------
 */

#define CHURN_WRITERS 5
#define CHURN_OPENERS 3
#define CHURN_ROUNDS 40

static atomic_bool churn_stop;

static void *churn_writer(void *arg)
{
  struct worker *w = arg;
  for (int k = 0; !atomic_load(&churn_stop) || k < CHURN_ROUNDS; k++) {
    char id[ID_LEN];
    snprintf(id, sizeof(id), "%s.w%d.%d", w->prefix, w->index, k);
    STEP_OK(w, "register", reg(w->r, id, CAMPAIGN_PUBLISHED));
    struct registry_claim cl;
    STEP_OK(w, "claim", registry_claim(w->r, id, "w", TTL_MS, &cl));
    STEP_OK(w, "sent", mark1(w->r, id, cl.fence, "r", DELIVERY_SENT));
    STEP_OK(w, "complete", registry_complete(w->r, id, cl.fence));
    w->arg = (void *)((intptr_t)w->arg + 1);
  }
done:
  return NULL;
}

/* Open a handle, write one step, close it; again and again. The last
 * close of a group and the first open of the next happen while the
 * writers' groups commit. */
static void *churn_opener(void *arg)
{
  struct worker *w = arg;
  for (int k = 0; k < CHURN_ROUNDS; k++) {
    struct registry_options opt = testdb_options(&db);
    char err[512];
    int rc = registry_open(&opt, &w->r, err, sizeof(err));
    if (rc) {
      w->r = NULL;
      worker_fail(w, err, rc);
      return NULL;
    }
    char id[ID_LEN];
    snprintf(id, sizeof(id), "%s.o%d.%d", w->prefix, w->index, k);
    rc = reg(w->r, id, CAMPAIGN_SCHEDULED);
    if (rc)
      worker_fail(w, "register", rc);
    registry_close(w->r);
    w->r = NULL;
    if (rc)
      return NULL;
  }
  return NULL;
}

static void test_close_reopen_while_committing(void **state)
{
  (void)state;
  char *prefix = testenv_unique("gc-churn");
  atomic_store(&churn_stop, false);
  struct worker writers[CHURN_WRITERS] = {0};
  struct worker openers[CHURN_OPENERS] = {0};
  for (int i = 0; i < CHURN_WRITERS; i++) {
    writers[i] = (struct worker){.index = i, .prefix = prefix};
    writers[i].r = testdb_open(&db);
    assert_int_equal(
        pthread_create(&writers[i].th, NULL, churn_writer, &writers[i]), 0);
  }
  for (int i = 0; i < CHURN_OPENERS; i++) {
    openers[i] = (struct worker){.index = i, .prefix = prefix};
    assert_int_equal(
        pthread_create(&openers[i].th, NULL, churn_opener, &openers[i]), 0);
  }
  for (int i = 0; i < CHURN_OPENERS; i++)
    assert_int_equal(pthread_join(openers[i].th, NULL), 0);
  atomic_store(&churn_stop, true);
  long long done = 0;
  for (int i = 0; i < CHURN_WRITERS; i++) {
    assert_int_equal(pthread_join(writers[i].th, NULL), 0);
    done += (intptr_t)writers[i].arg;
    registry_close(writers[i].r);
  }
  assert_workers_ok(openers, CHURN_OPENERS);
  assert_workers_ok(writers, CHURN_WRITERS);
  assert_int_equal(query_int("SELECT COUNT(*) FROM campaigns WHERE "
                             "campaign_id LIKE '%s.o%%' AND state = "
                             "'SCHEDULED'",
                             prefix),
                   CHURN_OPENERS * CHURN_ROUNDS);
  assert_int_equal(query_int("SELECT COUNT(*) FROM campaigns WHERE "
                             "campaign_id LIKE '%s.w%%' AND state = 'DONE'"
                             " AND sent = 1 AND fence = 1",
                             prefix),
                   done);
  assert_true(done >= CHURN_WRITERS * CHURN_ROUNDS);
  free(prefix);
}

static int group_setup(void **state)
{
  (void)state;
  testdb_create(&db, REGISTRY_SQLITE);
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  testdb_destroy(&db);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threads_distinct),
      cmocka_unit_test(test_threads_shared),
      cmocka_unit_test(test_group_one_job_fails),
      cmocka_unit_test(test_two_handles_and_another_process),
      cmocka_unit_test(test_close_reopen_while_committing),
  };
  return cmocka_run_group_tests_name("registry_group_sqlite", tests,
                                     group_setup, group_teardown);
}
