/* test_consumer_pipeline.c - the consumer's registry writes run beside the
 * sending (consumer/mark_writer.h), and the pipeline keeps its promises
 * when the registry stalls: the real sendonce-consumer, the real RabbitMQ,
 * the registry backend named on the command line ("sqlite" or "pg") and
 * sendonce-sink as the oracle.
 *
 * Another connection holds the write lock every mark needs (SQLite: BEGIN
 * IMMEDIATE; PostgreSQL: the campaign row FOR UPDATE) for about 2 s, with
 * the consumer's busy_timeout longer than that. Meanwhile:
 *  - no request reaches the sink without a committed delivery row (the
 *    INFLIGHT mark commits before the hand-over to the sender);
 *  - sending goes on, but only up to the window: the recipients at the
 *    sink beyond the committed SENT rows stay within WINDOW, and the sink
 *    stops growing;
 *  - after the lock, the campaign completes, every recipient once.
 * And a kill -9 with the window full resends at most WINDOW.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "consumer_harness.h"
#include "integration/registry_testdb.h"
#include "mark_writer.h"

static enum registry_backend backend;

#define BATCH 50
#define N_RECIPIENTS 20000
/* Submitted recipients whose outcome is not committed: at most this many
 * (mark_writer.h), so a crash resends at most this many. */
#define WINDOW (MARK_WRITER_WINDOW_BATCHES * BATCH)
/* How long the test holds the lock; the consumer's busy_timeout (a third
 * of the lease ttl in the harness's config) is longer. */
#define HOLD_MS 2000
#define LEASE_TTL_S 9

static struct harness_conf conf(void)
{
  struct harness_conf c = {
      .lease_ttl_s = LEASE_TTL_S, /* busy_timeout_ms = 3000 > HOLD_MS */
      .mark_batch_size = BATCH,
      .workers = 1,
      .concurrency = 8,
  };
  return c;
}

static long long count_rows(struct harness *h, const char *id,
                            const char *state)
{
  char sql[300];
  if (state)
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM deliveries WHERE campaign_id = '%s' AND "
             "state = '%s'",
             id, state);
  else
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM deliveries WHERE campaign_id = '%s'", id);
  return testdb_query_int(&h->db, sql);
}

/* hold_lock: hold the registry's write lock on `id` for HOLD_MS and check
 * the invariants while it is held. Returns the sink's unique keys at the
 * end of the hold; *kill_pid (if > 0) is killed -9 just before release. */
static int64_t hold_lock(struct harness *h, const char *id,
                         struct harness_proc *kill_proc)
{
  struct testdb_lock *lk = testdb_lock_campaign(&h->db, id);
  int64_t t0 = clock_monotonic_ms();
  /* SENT rows cannot change while the lock is held. */
  long long sent_at_lock = count_rows(h, id, "SENT");
  int64_t first = harness_sink_stat(h, "unique_keys");
  int64_t last = first, at_half = -1;
  int samples = 0;
  while (clock_monotonic_ms() - t0 < HOLD_MS) {
    /* The sink first, then the rows: a request seen at the sink had its
     * row committed before it was sent, so rows >= sink always. */
    int64_t sink = harness_sink_stat(h, "unique_keys");
    long long rows = count_rows(h, id, NULL);
    long long sent = count_rows(h, id, "SENT");
    assert_int_equal(sent, sent_at_lock);
    if (sink > rows)
      fail_msg("sink has %lld recipients, only %lld rows committed",
               (long long)sink, rows);
    /* Sending goes on only up to the window beyond what is committed. */
    if (sink - sent > WINDOW)
      fail_msg("sink %lld - committed SENT %lld > window %d", (long long)sink,
               sent, WINDOW);
    if (at_half < 0 && clock_monotonic_ms() - t0 >= HOLD_MS / 2)
      at_half = sink;
    last = sink;
    samples++;
    clock_sleep_ms(100, NULL);
  }
  print_message(
      "lock held %d ms: SENT rows %lld, sink %lld at lock -> %lld at half "
      "-> %lld at the end (window %d, %d samples)\n",
      HOLD_MS, sent_at_lock, (long long)first, (long long)at_half,
      (long long)last, WINDOW, samples);
  /* The window is full well before the lock goes: sending has stopped. */
  assert_int_equal(last, at_half);
  assert_true(samples >= 5);
  if (kill_proc)
    assert_int_equal(harness_stop(kill_proc, SIGKILL, 5000), 128 + SIGKILL);
  testdb_unlock(lk);
  return last;
}

static void test_registry_lock_bounds_the_window(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "2", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = conf();
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body =
      harness_body("pipe", harness_recipients_file(&h, "p", N_RECIPIENTS));
  harness_publish(&h, "pipe", body);
  assert_true(harness_wait_log(&a, "claimed campaign=pipe fence=1", 10000));
  assert_true(harness_wait_sink(&h, "unique_keys", 1000, 60000));
  int64_t during = hold_lock(&h, "pipe", NULL);
  assert_true(during < N_RECIPIENTS);
  struct registry_campaign rc =
      harness_wait_state(&h, "pipe", CAMPAIGN_DONE, 180000);
  assert_int_equal(rc.sent, N_RECIPIENTS);
  assert_int_equal(rc.total, N_RECIPIENTS);
  assert_int_equal(rc.fence, 1);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), N_RECIPIENTS);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(count_rows(&h, "pipe", "SENT"), N_RECIPIENTS);
  assert_int_equal(harness_log_count(&a, "STALE FENCE"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_summary(&a, "campaigns_done"), 1);
  free(body);
  harness_teardown(&h);
}

static void test_kill9_with_full_window_resends_at_most_window(void **state)
{
  (void)state;
  const char *args[] = {"--honour-idempotency", "--latency-ms", "2", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = conf();
  c.lease_ttl_s = 3; /* quick takeover; the hold ends in a kill anyway */
  struct harness_proc a, b;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body =
      harness_body("pk9", harness_recipients_file(&h, "k", N_RECIPIENTS / 4));
  harness_publish(&h, "pk9", body);
  assert_true(harness_wait_log(&a, "claimed campaign=pk9 fence=1", 10000));
  assert_true(harness_wait_sink(&h, "unique_keys", 500, 60000));
  /* busy_timeout is 1 s here: the writer's marks fail "unavailable" and
   * are retried with their outcomes kept; the window still holds. The
   * lease is presumed lost after 2.5 s without a renewal, so hold less. */
  struct testdb_lock *lk = testdb_lock_campaign(&h.db, "pk9");
  clock_sleep_ms(1500, NULL);
  long long sent = count_rows(&h, "pk9", "SENT");
  int64_t sink = harness_sink_stat(&h, "unique_keys");
  print_message("kill -9 with the lock held: sink %lld, SENT rows %lld\n",
                (long long)sink, sent);
  assert_true(sink - sent <= WINDOW);
  assert_int_equal(harness_stop(&a, SIGKILL, 5000), 128 + SIGKILL);
  testdb_unlock(lk);
  for (;;) {
    struct registry_campaign rc = {0};
    assert_int_equal(registry_get(h.reg, "pk9", &rc), SO_OK);
    bool expired = rc.lease_until_ms <= rc.registry_now_ms;
    registry_campaign_free(&rc);
    if (expired)
      break;
    clock_sleep_ms(100, NULL);
  }
  harness_start(&h, &b, harness_config(&h, "b", &c), "b");
  harness_publish(&h, "pk9", body);
  struct registry_campaign rc =
      harness_wait_state(&h, "pk9", CAMPAIGN_DONE, 120000);
  assert_int_equal(rc.fence, 2);
  assert_int_equal(rc.sent, N_RECIPIENTS / 4);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), N_RECIPIENTS / 4);
  int64_t raw = harness_sink_stat(&h, "raw_duplicates");
  print_message("kill -9: raw_duplicates=%lld (window %d)\n", (long long)raw,
                WINDOW);
  assert_true(raw <= WINDOW);
  assert_int_equal(harness_sink_stat(&h, "accepted_duplicates"), 0);
  assert_int_equal(harness_stop(&b, SIGTERM, 15000), 0);
  free(body);
  harness_teardown(&h);
}

/* same_tx: with PostgreSQL, how many of the campaign's delivery rows were
 * last written by the transaction that last wrote its campaign row (one
 * xmin); -1 with SQLite, which has no such column. */
static long long same_tx(struct harness *h, const char *id)
{
  if (backend != REGISTRY_POSTGRESQL)
    return -1;
  char sql[300];
  snprintf(sql, sizeof(sql),
           "SELECT count(*) FROM deliveries d JOIN campaigns c USING "
           "(campaign_id) WHERE c.campaign_id = '%s' AND d.xmin = c.xmin",
           id);
  return testdb_query_int(&h->db, sql);
}

/* A small inline campaign takes two commits: its claim with the INFLIGHT
 * marks, and its outcomes with DONE (registry_register_claim_mark and
 * registry_mark_finish). Seen while the sink holds its requests: every row
 * INFLIGHT with one attempt, written with the claim; at the end every row
 * SENT, written with DONE. */
static void test_small_campaign_marks_with_claim_and_done(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "1500", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = conf();
  c.timeout_ms = 5000;
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  const char *body =
      "{\"schema\":1,\"campaign_id\":\"small\","
      "\"scheduled_at\":\"2026-11-27T09:00:00Z\",\"channel\":\"email\","
      "\"content\":{\"subject\":\"hi\"},\"recipients\":["
      "{\"address\":\"a@example.org\"},{\"address\":\"b@example.org\"},"
      "{\"address\":\"c@example.org\"}]}";
  harness_publish(&h, "small", body);
  assert_true(harness_wait_sink(&h, "total", 3, 10000));
  /* The requests are at the sink, their outcomes 1.5 s away. */
  assert_int_equal(count_rows(&h, "small", "INFLIGHT"), 3);
  char sql[200];
  snprintf(sql, sizeof(sql),
           "SELECT sum(attempts) FROM deliveries WHERE campaign_id = 'small'");
  assert_int_equal(testdb_query_int(&h.db, sql), 3);
  long long claimed_with = same_tx(&h, "small");
  struct registry_campaign rc =
      harness_wait_state(&h, "small", CAMPAIGN_DONE, 20000);
  assert_int_equal(rc.total, 3);
  assert_int_equal(rc.sent, 3);
  assert_int_equal(rc.fence, 1);
  registry_campaign_free(&rc);
  assert_int_equal(count_rows(&h, "small", "SENT"), 3);
  assert_int_equal(testdb_query_int(&h.db, sql), 3);
  long long done_with = same_tx(&h, "small");
  print_message("rows written with the claim: %lld, with DONE: %lld\n",
                claimed_with, done_with);
  if (backend == REGISTRY_POSTGRESQL) {
    assert_int_equal(claimed_with, 3);
    assert_int_equal(done_with, 3);
  }
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_summary(&a, "campaigns_done"), 1);
  harness_teardown(&h);
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: %s sqlite|pg\n", argv[0]);
    return 2;
  }
  backend = testdb_backend_parse(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry_lock_bounds_the_window),
      cmocka_unit_test(test_kill9_with_full_window_resends_at_most_window),
      cmocka_unit_test(test_small_campaign_marks_with_claim_and_done),
  };
  return cmocka_run_group_tests_name("consumer_pipeline", tests, NULL, NULL);
}
