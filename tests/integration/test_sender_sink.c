/* test_sender_sink.c - the sender against sendonce-sink, the project's
 * provider stand-in and duplicate oracle (tests/sink): a flaky provider,
 * a provider that rejects some recipients, and one that hangs for a while
 * and then recovers. The sink is started by the test on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "sender.h"
#include "sender_testutil.h"
#include "sink_client.h"

static struct sink_client *sink_start(const char *const *args)
{
  char err[256] = "";
  struct sink_client *k = sink_client_start(args, err, sizeof(err));
  if (!k)
    fail_msg("sink_client_start: %s", err);
  return k;
}

static int64_t stat_of(struct sink_client *k, const char *name)
{
  json_object *st = sink_client_stats(k);
  assert_non_null(st);
  int64_t v = sink_client_stat(st, name);
  json_object_put(st);
  return v;
}

/* 30% of answers are 500s: every recipient is SENT, each accepted exactly
 * once by the provider, and the retries the sink saw are the sender's. */
static void test_flaky_provider(void **state)
{
  (void)state;
  const char *args[] = {
      "--error-rate", "0.3", "--latency-ms", "2", "--seed", "7", NULL};
  struct sink_client *k = sink_start(args);
  struct config_provider p =
      test_provider(sink_client_port(k), test_tpl_single);
  p.concurrency = 16;
  p.max_retries = 15;
  p.retry_base_ms = 5;
  struct sender *s = test_new_sender(&p, "camp-flaky");
  struct outcomes o;
  test_drive(s, 300, &o, 100, 60000);
  for (size_t i = 0; i < 300; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_true(st.retries > 0);
  assert_int_equal(stat_of(k, "total"), (int64_t)st.requests);
  assert_int_equal(stat_of(k, "unique_keys"), 300);
  assert_int_equal(stat_of(k, "raw_duplicates"), (int64_t)st.retries);
  assert_int_equal(stat_of(k, "accepted"), 300);
  assert_int_equal(stat_of(k, "accepted_duplicates"), 0);
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
  assert_int_equal(sink_client_stop(k), 0);
}

/* The sink rejects r-10..r-19 with a 422 and a JSON reason. */
static void test_rejected_recipients(void **state)
{
  (void)state;
  const char *args[] = {"--reject-pattern", "^r-1[0-9]$", NULL};
  struct sink_client *k = sink_start(args);
  struct config_provider p =
      test_provider(sink_client_port(k), test_tpl_single);
  struct sender *s = test_new_sender(&p, "camp-rej");
  struct outcomes o;
  test_drive(s, 40, &o, 100, 20000);
  for (size_t i = 0; i < 40; i++) {
    if (i >= 10 && i < 20) {
      assert_int_equal(o.r[i].outcome, SENDER_REJECTED);
      assert_int_equal(o.r[i].http_status, 422);
      assert_non_null(strstr(o.r[i].reason, "HTTP 422: {"));
    } else {
      assert_int_equal(o.r[i].outcome, SENDER_SENT);
    }
  }
  assert_int_equal(stat_of(k, "total"), 40); /* rejections not retried */
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
  assert_int_equal(sink_client_stop(k), 0);
}

/* The provider hangs, then recovers (POST /mode at runtime). Attempts
 * time out and are retried with the same key; a provider that honours the
 * key accepts each recipient once, although the hung requests it released
 * were processed too. sender_poll keeps returning on time throughout. */
static void test_hang_then_recover(void **state)
{
  (void)state;
  const char *args[] = {"--honour-idempotency", NULL};
  struct sink_client *k = sink_start(args);
  assert_int_equal(sink_client_mode(k, "{\"hang\":true}"), 200);
  struct config_provider p =
      test_provider(sink_client_port(k), test_tpl_single);
  p.timeout_ms = 200;
  p.max_retries = 20;
  p.retry_base_ms = 50;
  struct sender *s = test_new_sender(&p, "camp-hang");
  for (int i = 0; i < 5; i++) {
    char id[16], addr[32];
    snprintf(id, sizeof(id), "r-%d", i);
    snprintf(addr, sizeof(addr), "r-%d@example.org", i);
    struct sender_recipient r = {id, addr, "{\"name\":\"n\"}"};
    assert_int_equal(sender_submit(s, &r), SO_OK);
  }
  int64_t t0 = clock_monotonic_ms();
  bool recovered = false;
  size_t sent = 0;
  while (sender_in_flight(s) > 0) {
    int64_t now = clock_monotonic_ms();
    assert_true(now - t0 < 30000);
    if (!recovered && now - t0 > 700) {
      assert_int_equal(sink_client_mode(k, "{\"hang\":false}"), 200);
      recovered = true;
    }
    struct sender_result res[8];
    size_t n;
    assert_int_equal(sender_poll(s, 50, res, 8, &n), SO_OK);
    int64_t took = clock_monotonic_ms() - now;
    if (took > 50 + test_poll_slack_ms())
      fail_msg("sender_poll(50 ms) took %lld ms", (long long)took);
    for (size_t i = 0; i < n; i++) {
      assert_int_equal(res[i].outcome, SENDER_SENT);
      assert_true(res[i].attempts >= 2);
      sent++;
      sender_result_cleanup(&res[i]);
    }
  }
  assert_int_equal(sent, 5);
  assert_int_equal(stat_of(k, "unique_keys"), 5);
  assert_true(stat_of(k, "raw_duplicates") >= 5);
  assert_int_equal(stat_of(k, "accepted_duplicates"), 0);
  sender_free(s);
  test_provider_free(&p);
  assert_int_equal(sink_client_stop(k), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flaky_provider),
      cmocka_unit_test(test_rejected_recipients),
      cmocka_unit_test(test_hang_then_recover),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
