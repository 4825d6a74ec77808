/* test_consumer_timing.c - the consumer's in-flight timing table and its
 * stats histograms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "stats.h"
#include "timing.h"

static void test_put_take(void **state)
{
  (void)state;
  struct timing *t = timing_new(4);
  assert_non_null(t);
  int64_t ms = -1;
  assert_false(timing_take(t, "a", 100, &ms));
  timing_put(t, "a", 100);
  timing_put(t, "b", 150);
  assert_true(timing_take(t, "b", 400, &ms));
  assert_int_equal(ms, 250);
  assert_false(timing_take(t, "b", 400, &ms)); /* taken once */
  assert_true(timing_take(t, "a", 1100, &ms));
  assert_int_equal(ms, 1000);
  timing_free(t);
}

/* Many rounds through a small table: tombstones must not fill it. */
static void test_churn_and_full(void **state)
{
  (void)state;
  struct timing *t = timing_new(8);
  char id[32];
  for (int round = 0; round < 1000; round++) {
    for (int i = 0; i < 8; i++) {
      snprintf(id, sizeof(id), "r%d-%d", round, i);
      timing_put(t, id, round);
    }
    for (int i = 0; i < 8; i++) {
      int64_t ms;
      snprintf(id, sizeof(id), "r%d-%d", round, i);
      assert_true(timing_take(t, id, round + 5, &ms));
      assert_int_equal(ms, 5);
    }
  }
  /* Over capacity: extra entries are not timed, nothing breaks. */
  int timed = 0;
  for (int i = 0; i < 100; i++) {
    snprintf(id, sizeof(id), "x%d", i);
    timing_put(t, id, 0);
  }
  for (int i = 0; i < 100; i++) {
    int64_t ms;
    snprintf(id, sizeof(id), "x%d", i);
    timed += timing_take(t, id, 1, &ms);
  }
  assert_true(timed >= 8 && timed < 100);
  timing_free(t);
  timing_free(NULL);
}

/* The table starts small and grows: a full batch in flight (the size the
 * consumer asks for) is timed whole, and so is the next one. */
static void test_grows_to_capacity(void **state)
{
  (void)state;
  struct timing *t = timing_new(500);
  char id[32];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 500; i++) {
      snprintf(id, sizeof(id), "g%d-%d", round, i);
      timing_put(t, id, round * 10);
    }
    for (int i = 0; i < 500; i++) {
      int64_t ms = 0;
      snprintf(id, sizeof(id), "g%d-%d", round, i);
      assert_true(timing_take(t, id, round * 10 + 7, &ms));
      assert_int_equal(ms, 7);
    }
  }
  /* Its full size is 1,024 slots, at most three quarters of them live:
   * past that, entries go untimed. */
  int timed = 0;
  for (int i = 0; i < 4000; i++) {
    snprintf(id, sizeof(id), "y%d", i);
    timing_put(t, id, 0);
  }
  for (int i = 0; i < 4000; i++) {
    int64_t ms;
    snprintf(id, sizeof(id), "y%d", i);
    timed += timing_take(t, id, 1, &ms);
  }
  assert_true(timed >= 700 && timed <= 768);
  timing_free(t);
}

static void test_histograms(void **state)
{
  (void)state;
  struct consumer_stats s;
  stats_init(&s);
  stats_latency(&s, 5);     /* <= 10 */
  stats_latency(&s, 10);    /* <= 10 */
  stats_latency(&s, 11);    /* <= 50 */
  stats_latency(&s, 99999); /* above every bound */
  assert_int_equal(stats_get(&s.latency[0]), 2);
  assert_int_equal(stats_get(&s.latency[1]), 1);
  assert_int_equal(stats_get(&s.latency[STATS_LATENCY_BUCKETS]), 1);
  assert_int_equal(stats_get(&s.latency_count), 4);
  assert_int_equal(stats_get(&s.latency_max_ms), 99999);
  stats_lag(&s, -3);
  stats_lag(&s, 300);
  assert_int_equal(stats_get(&s.renewal_lag[0]), 1);
  assert_int_equal(stats_get(&s.renewal_lag[3]), 1); /* <= 1000 */
  assert_int_equal(stats_get(&s.renewal_lag_max_ms), 300);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_take),
      cmocka_unit_test(test_churn_and_full),
      cmocka_unit_test(test_grows_to_capacity),
      cmocka_unit_test(test_histograms),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
