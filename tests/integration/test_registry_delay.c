/* test_registry_delay.c - the SQLite group commit's commit delay
 * (registry.commit_delay_us), with threads of one process on one real
 * database file, each with its own handle as the consumer's workers:
 * steps of handles that queued lately are gathered into one COMMIT even
 * when they come milliseconds apart; a lone handle is never delayed, however
 * often it commits; a delay out of range is refused.
 *
 * Threads never call cmocka's asserts (they longjmp); they record a failure
 * and the test thread asserts after joining them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "registry.h"
#include "registry_sqlite_group.h"
#include "registry_testdb.h"
#include "testenv.h"

/* Long next to a commit on any disk, so that a late thread on a loaded
 * machine is still gathered; the test never waits for it when all come. */
#define DELAY_US 100000 /* the largest allowed */
#define SIBLINGS 4
#define SPACING_MS 10 /* between the siblings' steps within a round */
#define WARMUP_ROUNDS 6
#define ID_LEN 128

static struct testdb db;

static struct registry *open_delayed(int delay_us)
{
  struct registry_options opt = testdb_options(&db);
  opt.commit_delay_us = delay_us;
  return testdb_open_with(&opt);
}

static int reg(struct registry *r, const char *id)
{
  struct registry_new_campaign c = {id, 1000, "email", "{\"schema\":1}"};
  bool created = false;
  int rc = registry_register(r, &c, CAMPAIGN_SCHEDULED, &created);
  return rc ? rc : created ? SO_OK : SO_ERR_CONFLICT;
}

/* query_count: the campaigns whose id starts with `prefix`. */
static long long query_count(const char *prefix)
{
  char sql[256];
  snprintf(sql, sizeof(sql),
           "SELECT COUNT(*) FROM campaigns WHERE campaign_id LIKE '%s.%%'",
           prefix);
  return testdb_query_int(&db, sql);
}

static void group_stats(struct rsg_stats *out)
{
  struct rsg_group *g = NULL;
  char err[256];
  assert_int_equal(rsg_acquire(db.sqlite_path, &g, err, sizeof(err)), SO_OK);
  rsg_stats_get(g, out);
  rsg_release(g);
}

/* ---- siblings gathered ---------------------------------------------------
 */

struct sibling {
  pthread_t th;
  int index;
  int rounds;
  int round0; /* the first round's number, for unique ids */
  const char *prefix;
  struct registry *r;
  pthread_barrier_t *start;
  int failed; /* status of the first failed step */
};

/* Each round: all siblings start together, sibling i queues its step
 * i * SPACING_MS later: without a delay, each step is a COMMIT of its own. */
static void *sibling_run(void *arg)
{
  struct sibling *s = arg;
  for (int k = 0; k < s->rounds; k++) {
    pthread_barrier_wait(s->start);
    clock_sleep_ms((int64_t)s->index * SPACING_MS, NULL);
    char id[ID_LEN];
    snprintf(id, sizeof(id), "%s.r%d.s%d", s->prefix, s->round0 + k, s->index);
    int rc = reg(s->r, id);
    if (rc && !s->failed)
      s->failed = rc;
  }
  return NULL;
}

static void run_rounds(struct sibling *ss, pthread_barrier_t *start, int round0,
                       int rounds)
{
  for (int i = 0; i < SIBLINGS; i++) {
    ss[i].round0 = round0;
    ss[i].rounds = rounds;
    ss[i].start = start;
    assert_int_equal(pthread_create(&ss[i].th, NULL, sibling_run, &ss[i]), 0);
  }
  for (int i = 0; i < SIBLINGS; i++) {
    assert_int_equal(pthread_join(ss[i].th, NULL), 0);
    if (ss[i].failed)
      fail_msg("sibling %d: %s: %s", i, so_strerror(ss[i].failed),
               registry_errmsg(ss[i].r));
  }
}

static void test_siblings_share_a_commit(void **state)
{
  (void)state;
  char *prefix = testenv_unique("delay-sib");
  struct sibling ss[SIBLINGS] = {0};
  for (int i = 0; i < SIBLINGS; i++) {
    ss[i] = (struct sibling){.index = i, .prefix = prefix};
    ss[i].r = open_delayed(DELAY_US);
  }
  pthread_barrier_t start;
  assert_int_equal(pthread_barrier_init(&start, NULL, SIBLINGS), 0);
  /* The group learns that four handles queue steps, often. */
  run_rounds(ss, &start, 0, WARMUP_ROUNDS);
  struct rsg_stats before, after;
  group_stats(&before);
  int64_t t0 = clock_monotonic_ms();
  run_rounds(ss, &start, WARMUP_ROUNDS, 1);
  int64_t ms = clock_monotonic_ms() - t0;
  group_stats(&after);
  unsigned long long batches = after.batches - before.batches;
  unsigned long long jobs = after.jobs - before.jobs;
  unsigned long long delays = after.delays - before.delays;
  print_message(
      "%llu steps %d ms apart in %llu commit(s), %llu delayed, "
      "%lld ms\n",
      jobs, SPACING_MS, batches, delays, (long long)ms);
  assert_int_equal(jobs, SIBLINGS);
  /* Without the delay: one COMMIT per step (they come 10 ms apart). The
   * leader waited, and all (or, on a very loaded machine, all but a late
   * one) joined its COMMIT. */
  assert_true(delays >= 1);
  assert_true(batches <= 2);
  /* It stopped waiting when the last sibling came, not at the deadline. */
  assert_true(ms < (SIBLINGS - 1) * SPACING_MS + DELAY_US / 1000);
  for (int i = 0; i < SIBLINGS; i++)
    registry_close(ss[i].r);
  pthread_barrier_destroy(&start);
  assert_int_equal(query_count(prefix), SIBLINGS * (WARMUP_ROUNDS + 1));
  free(prefix);
}

/* ---- a lone handle -------------------------------------------------------
 */

#define LONE_STEPS 60

static void test_lone_handle_never_waits(void **state)
{
  (void)state;
  char *prefix = testenv_unique("delay-lone");
  struct registry *r = open_delayed(DELAY_US);
  struct rsg_stats before, after;
  group_stats(&before);
  int64_t t0 = clock_monotonic_ms();
  for (int k = 0; k < LONE_STEPS; k++) {
    char id[ID_LEN];
    snprintf(id, sizeof(id), "%s.c%d", prefix, k);
    assert_int_equal(reg(r, id), SO_OK);
  }
  int64_t ms = clock_monotonic_ms() - t0;
  group_stats(&after);
  print_message("%d steps of one handle in %lld ms, %llu delayed\n", LONE_STEPS,
                (long long)ms, after.delays - before.delays);
  /* Its steps come far more often than once per delay: only the count of
   * siblings keeps it from waiting 100 ms for a step that only it could
   * queue, and it is blocked in this one. */
  assert_int_equal(after.delays - before.delays, 0);
  assert_int_equal(after.batches - before.batches, LONE_STEPS);
  assert_true(ms < LONE_STEPS * (DELAY_US / 1000) / 4);
  registry_close(r);
  assert_int_equal(query_count(prefix), LONE_STEPS);
  free(prefix);
}

static void test_delay_out_of_range(void **state)
{
  (void)state;
  struct registry_options opt = testdb_options(&db);
  struct registry *r = NULL;
  char err[256] = "";
  opt.commit_delay_us = -1;
  assert_int_equal(registry_open(&opt, &r, err, sizeof(err)), SO_ERR_INVALID);
  assert_null(r);
  assert_non_null(strstr(err, "commit_delay_us"));
  opt.commit_delay_us = 100001;
  assert_int_equal(registry_open(&opt, &r, err, sizeof(err)), SO_ERR_INVALID);
  assert_null(r);
}

static int delay_setup(void **state)
{
  (void)state;
  testdb_create(&db, REGISTRY_SQLITE);
  return 0;
}

static int delay_teardown(void **state)
{
  (void)state;
  testdb_destroy(&db);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lone_handle_never_waits),
      cmocka_unit_test(test_siblings_share_a_commit),
      cmocka_unit_test(test_delay_out_of_range),
  };
  return cmocka_run_group_tests_name("registry_delay_sqlite", tests,
                                     delay_setup, delay_teardown);
}
