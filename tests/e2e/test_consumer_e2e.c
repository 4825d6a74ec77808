/* test_consumer_e2e.c - the real sendonce-consumer against the real
 * RabbitMQ, a registry of the backend named on the command line ("sqlite"
 * or "pg"), and sendonce-sink as the provider: the oracle for "every
 * recipient once". A second argument "long" runs only the 1,000,000-
 * recipient memory check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "consumer_harness.h"
#include "integration/broker_testutil.h"

static enum registry_backend backend;

/* What a crash can resend, for the default harness config
 * (mark_batch_size 50): recipients marked INFLIGHT whose SENT mark is not
 * written yet: outcomes waiting to be written (at most two batches) plus
 * what the sender holds (less than two batches; only those in transfer or
 * finished reach the provider). Measured: 17-57 after kill -9, ~100 when
 * the registry stops taking marks. */
#define IN_FLIGHT_WINDOW (4 * 50)

/* ---- every recipient once, duplicate triggers dropped ----------------- */

static void test_ten_thousand_once_with_duplicate_triggers(void **state)
{
  (void)state;
  struct harness h;
  harness_setup(&h, backend, NULL);
  struct harness_conf c = {.mark_batch_size = 100};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body =
      harness_body("big-10k", harness_recipients_file(&h, "big", 10000));
  harness_publish(&h, "big-10k", body);
  assert_true(harness_wait_log(&a, "claimed campaign=big-10k fence=1", 10000));
  /* Four more triggers while it is processing: a watchdog gone wrong. */
  for (int i = 0; i < 4; i++)
    harness_publish(&h, "big-10k", body);
  struct registry_campaign rc =
      harness_wait_state(&h, "big-10k", CAMPAIGN_DONE, 120000);
  assert_int_equal(rc.sent, 10000);
  assert_int_equal(rc.total, 10000);
  assert_int_equal(rc.fence, 1);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 10000);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(harness_sink_stat(&h, "accepted"), 10000);
  /* Let the duplicates reach the consumer before it stops. */
  int64_t until = clock_monotonic_ms() + 10000;
  while (harness_log_count(&a, "duplicate trigger acked campaign=big-10k") <
             4 &&
         clock_monotonic_ms() < until)
    clock_sleep_ms(50, NULL);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_summary(&a, "claimed"), 1);
  assert_int_equal(harness_summary(&a, "duplicates"), 4);
  assert_int_equal(harness_summary(&a, "campaigns_done"), 1);
  free(body);
  harness_teardown(&h);
}

/* ---- provider down for 10 s ------------------------------------------- */

static void test_provider_500_for_10s_then_recovers(void **state)
{
  (void)state;
  struct harness h;
  harness_setup(&h, backend, NULL);
  /* Backoff 250..500 ms doubling: eight retries outlast 10 s. */
  struct harness_conf c = {.max_retries = 8, .retry_base_ms = 500};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  assert_int_equal(sink_client_mode(h.sink, "{\"fail_until_ms\":10000}"), 200);
  char *body = harness_body("down-10s", harness_recipients_file(&h, "d", 2000));
  harness_publish(&h, "down-10s", body);
  struct registry_campaign rc =
      harness_wait_state(&h, "down-10s", CAMPAIGN_DONE, 90000);
  assert_int_equal(rc.sent, 2000);
  registry_campaign_free(&rc);
  assert_true(harness_sink_stat(&h, "total") > 2000); /* it did fail */
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 2000);
  assert_int_equal(harness_sink_stat(&h, "accepted"), 2000);
  assert_int_equal(harness_sink_stat(&h, "accepted_duplicates"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  free(body);
  harness_teardown(&h);
}

/* ---- a provider that hangs longer than the lease ---------------------- */

static void test_hang_longer_than_lease_keeps_lease(void **state)
{
  (void)state;
  const char *args[] = {"--honour-idempotency", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = {.lease_ttl_s = 3,
                           .timeout_ms = 1000,
                           .max_retries = 20,
                           .retry_base_ms = 200};
  struct harness_proc a, b;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  assert_int_equal(sink_client_mode(h.sink, "{\"hang\":true}"), 200);
  char *body = harness_body("hang", harness_recipients_file(&h, "h", 300));
  harness_publish(&h, "hang", body);
  assert_true(harness_wait_log(&a, "claimed campaign=hang fence=1", 10000));
  harness_start(&h, &b, harness_config(&h, "b", &c), "b");
  /* Twice the lease ttl with every request hanging, and a takeover trigger
   * as a confused watchdog would send it: the lease must still be ours. */
  clock_sleep_ms(3000, NULL);
  harness_publish(&h, "hang", body);
  clock_sleep_ms(3000, NULL);
  struct registry_campaign rc = {0};
  assert_int_equal(registry_get(h.reg, "hang", &rc), SO_OK);
  assert_int_equal(rc.state, CAMPAIGN_PROCESSING);
  assert_int_equal(rc.fence, 1);
  assert_true(rc.lease_until_ms > rc.registry_now_ms);
  registry_campaign_free(&rc);
  assert_true(harness_sink_stat(&h, "in_flight") > 0);
  assert_int_equal(sink_client_mode(h.sink, "{\"hang\":false}"), 200);
  rc = harness_wait_state(&h, "hang", CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.fence, 1);
  assert_int_equal(rc.sent, 300);
  registry_campaign_free(&rc);
  /* Timed-out requests were retried under the same key... */
  assert_true(harness_sink_stat(&h, "raw_duplicates") > 0);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 300);
  /* ...and a provider that honours keys sent nothing twice. */
  assert_int_equal(harness_sink_stat(&h, "accepted_duplicates"), 0);
  assert_int_equal(harness_log_count(&b, "claimed campaign=hang"), 0);
  assert_int_equal(harness_log_count(&a, "LOST"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_stop(&b, SIGTERM, 15000), 0);
  assert_true(harness_summary(&a, "renewals") >= 3);
  free(body);
  harness_teardown(&h);
}

/* ---- kill -9 mid-campaign, takeover ------------------------------------ */

static void test_kill9_takeover_finishes(void **state)
{
  (void)state;
  const char *args[] = {"--honour-idempotency", "--latency-ms", "2", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = {.lease_ttl_s = 3};
  struct harness_proc a, b;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body = harness_body("k9", harness_recipients_file(&h, "k9", 5000));
  harness_publish(&h, "k9", body);
  assert_true(harness_wait_log(&a, "claimed campaign=k9 fence=1", 10000));
  harness_start(&h, &b, harness_config(&h, "b", &c), "b");
  assert_true(harness_wait_sink(&h, "total", 1000, 30000));
  assert_int_equal(harness_stop(&a, SIGKILL, 5000), 128 + SIGKILL);
  int64_t sent_before = harness_sink_stat(&h, "accepted");
  assert_true(sent_before < 5000);
  /* The watchdog's job, done by the test: once the lease expired,
   * republish the takeover trigger. */
  for (;;) {
    struct registry_campaign rc = {0};
    assert_int_equal(registry_get(h.reg, "k9", &rc), SO_OK);
    bool expired = rc.lease_until_ms <= rc.registry_now_ms;
    registry_campaign_free(&rc);
    if (expired)
      break;
    clock_sleep_ms(100, NULL);
  }
  harness_publish(&h, "k9", body);
  struct registry_campaign rc =
      harness_wait_state(&h, "k9", CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.fence, 2);
  assert_int_equal(rc.sent, 5000);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 5000);
  /* Resent at most the in-flight window (see IN_FLIGHT_WINDOW). */
  int64_t raw = harness_sink_stat(&h, "raw_duplicates");
  print_message("kill -9: raw_duplicates=%lld (window %d)\n", (long long)raw,
                IN_FLIGHT_WINDOW);
  assert_true(raw <= IN_FLIGHT_WINDOW);
  assert_int_equal(harness_sink_stat(&h, "accepted_duplicates"), 0);
  assert_int_equal(harness_stop(&b, SIGTERM, 15000), 0);
  free(body);
  harness_teardown(&h);
}

/* ---- SIGTERM hands over at once --------------------------------------- */

static void test_sigterm_hands_over_at_once(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "3", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = {.lease_ttl_s = 6};
  struct harness_proc a, b;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body = harness_body("term", harness_recipients_file(&h, "t", 5000));
  harness_publish(&h, "term", body);
  assert_true(harness_wait_log(&a, "claimed campaign=term fence=1", 10000));
  harness_start(&h, &b, harness_config(&h, "b", &c), "b");
  assert_true(harness_wait_sink(&h, "total", 500, 30000));
  int64_t t0 = clock_monotonic_ms();
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_true(harness_wait_log(&b, "claimed campaign=term fence=2", 6000));
  int64_t handover = clock_monotonic_ms() - t0;
  print_message("sigterm: handover in %lld ms (lease ttl 6000)\n",
                (long long)handover);
  assert_true(handover < 6000);
  assert_int_equal(harness_summary(&a, "campaigns_released"), 1);
  struct registry_campaign rc =
      harness_wait_state(&h, "term", CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.sent, 5000);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 5000);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(harness_stop(&b, SIGTERM, 15000), 0);
  free(body);
  harness_teardown(&h);
}

/* ---- bad messages go to the DLQ with their reason ------------------- */

struct bad {
  char name[128];
  char reason[64];
  char *body;
  size_t len;
  bool seen;
};

static char *slurp(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t cap = 1 << 17;
  char *buf = malloc(cap);
  assert_non_null(buf);
  *len = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[*len] = '\0';
  return buf;
}

static size_t load_bad(struct bad *out, size_t max)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/tests/data/bad-messages/EXPECTED",
           SENDONCE_SOURCE_DIR);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[256];
  size_t n = 0;
  while (fgets(line, sizeof(line), f) && n < max) {
    if (line[0] == '#' || line[0] == '\n')
      continue;
    struct bad *b = &out[n];
    memset(b, 0, sizeof(*b));
    assert_int_equal(sscanf(line, "%127s %63s", b->name, b->reason), 2);
    char file[1024];
    snprintf(file, sizeof(file), "%s/tests/data/bad-messages/%.127s",
             SENDONCE_SOURCE_DIR, b->name);
    b->body = slurp(file, &b->len);
    n++;
  }
  fclose(f);
  return n;
}

static void test_bad_messages_dead_lettered_with_reason(void **state)
{
  (void)state;
  struct harness h;
  harness_setup(&h, backend, NULL);
  struct harness_conf c = {0};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  struct bad bad[64];
  size_t n = load_bad(bad, 60);
  assert_true(n >= 20);
  /* One more kind: a recipients_url that cannot be read. */
  struct bad *u = &bad[n++];
  memset(u, 0, sizeof(*u));
  snprintf(u->name, sizeof(u->name), "unreachable-recipients-url");
  snprintf(u->reason, sizeof(u->reason), "recipients_unreachable");
  u->body = harness_body("no-list", "file:///nonexistent/sendonce/list.jsonl");
  u->len = strlen(u->body);
  char err[512];
  for (size_t i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof(id), "bad-%zu", i);
    struct broker_message m = {.exchange = h.topo.exchange,
                               .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
                               .body = bad[i].body,
                               .body_len = bad[i].len,
                               .message_id = id};
    assert_int_equal(broker_publish_confirmed(h.b, &m, err, sizeof(err)),
                     SO_OK);
  }
  /* The consumer goes on: a good campaign after them completes. */
  char *good = harness_body("after-bad", harness_recipients_file(&h, "g", 100));
  harness_publish(&h, "after-bad", good);
  struct registry_campaign rc =
      harness_wait_state(&h, "after-bad", CAMPAIGN_DONE, 30000);
  assert_int_equal(rc.sent, 100);
  registry_campaign_free(&rc);
  rc = harness_wait_state(&h, "no-list", CAMPAIGN_DEAD, 10000);
  registry_campaign_free(&rc);
  for (size_t k = 0; k < n; k++) {
    struct broker_delivery *d = bt_get_wait(h.b, h.topo.dead, 10000);
    size_t i = 0;
    while (i < n && (bad[i].seen || bad[i].len != d->body_len ||
                     memcmp(bad[i].body, d->body, d->body_len) != 0))
      i++;
    if (i == n)
      fail_msg("unexpected DLQ message id=%s", d->message_id);
    bad[i].seen = true;
    const char *why = broker_delivery_header(d, "x-sendonce-error");
    assert_non_null(why);
    size_t rl = strlen(bad[i].reason);
    if (strncmp(why, bad[i].reason, rl) != 0 || (why[rl] && why[rl] != ':'))
      fail_msg("%s: x-sendonce-error \"%s\", expected %s", bad[i].name, why,
               bad[i].reason);
    assert_int_equal(broker_ack(h.b, d->generation, d->tag), SO_OK);
    broker_delivery_free(d);
  }
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_summary(&a, "invalid"), (long long)(n - 1));
  assert_int_equal(harness_summary(&a, "campaigns_done"), 1);
  for (size_t i = 0; i < n; i++)
    free(bad[i].body);
  free(good);
  harness_teardown(&h);
}

/* ---- operators: pause, resume, cancel; not_after --------------------- */

static void test_pause_resume_cancel(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "5", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = {0};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  const char *url = harness_recipients_file(&h, "p", 3000);
  char *body = harness_body("pz", url);
  harness_publish(&h, "pz", body);
  assert_true(harness_wait_sink(&h, "total", 300, 30000));
  /* Pause: the worker stops between batches and releases, no trigger. */
  assert_int_equal(registry_pause(h.reg, "pz"), SO_OK);
  assert_true(harness_wait_log(&a, "released campaign=pz fence=1 reason=paused",
                               10000));
  struct registry_campaign rc =
      harness_wait_state(&h, "pz", CAMPAIGN_PUBLISHED, 5000);
  assert_true(rc.paused);
  registry_campaign_free(&rc);
  int64_t at_pause = harness_sink_stat(&h, "total");
  clock_sleep_ms(1500, NULL);
  assert_int_equal(harness_sink_stat(&h, "total"), at_pause);
  assert_true(at_pause < 3000);
  /* A trigger while paused is acked as a duplicate, not sent. */
  harness_publish(&h, "pz", body);
  assert_true(
      harness_wait_log(&a, "campaign=pz fence=1 verdict=paused", 10000));
  /* Resume re-triggers; it finishes from the ledger. */
  assert_int_equal(registry_resume(h.reg, "pz"), SO_OK);
  harness_publish(&h, "pz", body);
  rc = harness_wait_state(&h, "pz", CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.fence, 2);
  assert_int_equal(rc.sent, 3000);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 3000);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);

  /* Cancel: the worker stops at the next check and writes nothing. */
  char *body2 = harness_body("cz", url);
  harness_publish(&h, "cz", body2);
  assert_true(harness_wait_log(&a, "claimed campaign=cz fence=1", 10000));
  assert_true(harness_wait_sink(&h, "total", 3300, 30000));
  assert_int_equal(registry_cancel(h.reg, "cz"), SO_OK);
  assert_true(
      harness_wait_log(&a, "cancelled by an operator campaign=cz", 10000));
  int64_t at_cancel = harness_sink_stat(&h, "total");
  clock_sleep_ms(1000, NULL);
  assert_int_equal(harness_sink_stat(&h, "total"), at_cancel);
  assert_true(at_cancel < 6000);
  rc = harness_wait_state(&h, "cz", CAMPAIGN_DEAD, 1000);
  registry_campaign_free(&rc);

  /* not_after already past: DEAD "expired", nothing sent. */
  char late[1024];
  snprintf(late, sizeof(late),
           "{\"schema\":1,\"campaign_id\":\"late\","
           "\"scheduled_at\":\"2020-01-01T09:00:00Z\",\"channel\":\"email\","
           "\"content\":{},\"recipients\":[{\"address\":\"x@example.org\"}],"
           "\"not_after\":\"2020-01-01T10:00:00Z\"}");
  int64_t before = harness_sink_stat(&h, "total");
  harness_publish(&h, "late", late);
  rc = harness_wait_state(&h, "late", CAMPAIGN_DEAD, 10000);
  assert_non_null(rc.last_error);
  assert_non_null(strstr(rc.last_error, "expired"));
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "total"), before);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_summary(&a, "campaigns_cancelled"), 1);
  free(body);
  free(body2);
  harness_teardown(&h);
}

/* ---- a provider that stays down: released, then DEAD ------------------ */

static void test_provider_down_released_then_dead(void **state)
{
  (void)state;
  const char *args[] = {"--error-rate", "1", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = {.max_retries = 1, .max_attempts = 2};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body = harness_body("down", harness_recipients_file(&h, "dn", 20));
  harness_publish(&h, "down", body);
  /* First give-up: released with the attempt counted, trigger to the 1 s
   * retry queue; it comes back, the second give-up makes it DEAD. */
  assert_true(
      harness_wait_log(&a, "released campaign=down fence=1 attempts=1", 15000));
  struct registry_campaign rc =
      harness_wait_state(&h, "down", CAMPAIGN_DEAD, 20000);
  assert_int_equal(rc.fence, 2);
  assert_non_null(rc.last_error);
  assert_non_null(strstr(rc.last_error, "provider_down"));
  registry_campaign_free(&rc);
  struct broker_delivery *d = bt_get_wait(h.b, h.topo.dead, 10000);
  assert_string_equal(d->message_id, "down");
  const char *why = broker_delivery_header(d, "x-sendonce-error");
  assert_non_null(why);
  assert_int_equal(strncmp(why, "provider_down", 13), 0);
  assert_int_equal(broker_ack(h.b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_summary(&a, "campaigns_dead"), 1);
  assert_int_equal(harness_summary(&a, "sent"), 0);
  free(body);
  harness_teardown(&h);
}

/* ---- a give-up waits for the requests on the wire ------------------- */

/* One recipient exhausts its retries while others are in transfer (300 ms
 * each, 8 at a time). The provider accepts some of those: their SENT marks
 * must be written before the release, or the resume sends them again - a
 * recipient getting it twice with no worker dying (promise 2). The
 * provider recovers once the campaign is released. */
static void test_give_up_records_requests_in_flight(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "300", "--error-rate", "0.5", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  /* Two attempts at 50% 500s: a quarter of the recipients give up. */
  struct harness_conf c = {
      .workers = 1, .max_retries = 1, .retry_base_ms = 100};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body = harness_body("gu", harness_recipients_file(&h, "gu", 300));
  harness_publish(&h, "gu", body);
  /* The resume waits 1 s in the retry queue: the provider heals first. */
  assert_true(
      harness_wait_log(&a, "released campaign=gu fence=1 attempts=1", 20000));
  assert_int_equal(sink_client_mode(h.sink, "{\"error_rate\":0}"), 200);
  struct registry_campaign rc =
      harness_wait_state(&h, "gu", CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.sent, 300);
  assert_int_equal(rc.fence, 2);
  registry_campaign_free(&rc);
  /* Nobody got it twice: what the provider accepted before the release
   * was marked SENT and the resume skipped it. */
  assert_int_equal(harness_sink_stat(&h, "accepted_duplicates"), 0);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 300);
  assert_int_equal(harness_sink_stat(&h, "accepted"), 300);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_summary(&a, "campaigns_released"), 1);
  assert_int_equal(harness_summary(&a, "campaigns_done"), 1);
  free(body);
  harness_teardown(&h);
}

/* ---- connection loss: reconnect while the workers keep sending -------- */

static pid_t proxy_start(int port)
{
  char listen[128];
  snprintf(listen, sizeof(listen),
           "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", port);
  char target[] = "TCP:127.0.0.1:5672";
  char prog[] = "socat";
  char *argv[] = {prog, listen, target, NULL};
  return bt_spawn(argv, port);
}

static void test_connection_loss_keeps_sending(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "2", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  int port = bt_free_port();
  pid_t proxy = proxy_start(port);
  struct harness_conf c = {.broker_uri =
                               bt_uri_port("amqp", "127.0.0.1", port)};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body = harness_body("cut", harness_recipients_file(&h, "cut", 5000));
  harness_publish(&h, "cut", body);
  assert_true(harness_wait_log(&a, "claimed campaign=cut fence=1", 10000));
  assert_true(harness_wait_sink(&h, "total", 500, 30000));
  /* Cut every connection through the proxy; sending must go on. */
  bt_kill(proxy);
  int64_t at_cut = harness_sink_stat(&h, "total");
  clock_sleep_ms(1500, NULL);
  assert_true(harness_sink_stat(&h, "total") > at_cut);
  proxy = proxy_start(port);
  assert_true(harness_wait_log(&a, "generation=2", 15000));
  /* Consuming resumed: a duplicate trigger is seen and dropped. */
  harness_publish(&h, "cut", body);
  assert_true(
      harness_wait_log(&a, "duplicate trigger acked campaign=cut", 15000));
  struct registry_campaign rc =
      harness_wait_state(&h, "cut", CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.fence, 1);
  assert_int_equal(rc.sent, 5000);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 5000);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  bt_kill(proxy);
  free(body);
  harness_teardown(&h);
}

/* ---- inline recipients, a provider that rejects one ------------------- */

static void test_inline_recipients_with_reject(void **state)
{
  (void)state;
  const char *args[] = {"--reject-pattern", "nobody", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = {0};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  const char *body =
      "{\"schema\":1,\"campaign_id\":\"inl\","
      "\"scheduled_at\":\"2026-11-27T09:00:00Z\",\"channel\":\"sms\","
      "\"content\":{\"text\":\"hi\"},\"recipients\":["
      "{\"address\":\"+15550001\"},"
      "{\"id\":\"nobody\",\"address\":\"+15550002\"},"
      "{\"id\":\"u-3\",\"address\":\"+15550003\",\"vars\":{\"n\":3}}]}";
  harness_publish(&h, "inl", body);
  struct registry_campaign rc =
      harness_wait_state(&h, "inl", CAMPAIGN_DONE, 20000);
  assert_int_equal(rc.total, 3);
  assert_int_equal(rc.sent, 2);
  assert_int_equal(rc.rejected, 1);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "total"), 3);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  harness_teardown(&h);
}

/* ---- every worker busy: a waiting trigger is parked, not timed out ----- */

static void test_busy_workers_park_waiting_trigger(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "20", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  /* One worker, lease 3 s: a trigger waits at most 6 s for it. */
  struct harness_conf c = {.workers = 1, .lease_ttl_s = 3};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *long_body =
      harness_body("busy", harness_recipients_file(&h, "busy", 4000));
  harness_publish(&h, "busy", long_body);
  assert_true(harness_wait_log(&a, "claimed campaign=busy fence=1", 10000));
  char *small = harness_body("waiting", harness_recipients_file(&h, "w", 10));
  harness_publish(&h, "waiting", small);
  assert_true(harness_wait_log(
      &a, "no free worker: trigger parked campaign=waiting", 15000));
  struct registry_campaign rc =
      harness_wait_state(&h, "busy", CAMPAIGN_DONE, 60000);
  registry_campaign_free(&rc);
  rc = harness_wait_state(&h, "waiting", CAMPAIGN_DONE, 30000);
  assert_int_equal(rc.fence, 1);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 4010);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_true(harness_summary(&a, "parked") >= 1);
  free(long_body);
  free(small);
  harness_teardown(&h);
}

/* ---- the registry stops answering mid-campaign ------------------------ */

/* A worker that cannot renew cannot be told it lost the lease, but the
 * lease runs out all the same: it must stop sending before then, so a
 * takeover never overlaps it. */
static void test_registry_lost_mid_campaign_stops_sending(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "2", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct harness_conf c = {.lease_ttl_s = 3};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body = harness_body("part", harness_recipients_file(&h, "part", 5000));
  harness_publish(&h, "part", body);
  assert_true(harness_wait_sink(&h, "total", 500, 30000));
  struct testdb_lock *lock = testdb_lock_campaign(&h.db, "part");
  assert_true(
      harness_wait_log(&a, "lease presumed expired campaign=part", 6000));
  assert_true(harness_wait_log(&a, "campaign LOST campaign=part", 5000));
  int64_t stopped = harness_sink_stat(&h, "total");
  clock_sleep_ms(1000, NULL);
  assert_int_equal(harness_sink_stat(&h, "total"), stopped);
  assert_true(stopped < 5000);
  testdb_unlock(lock);
  /* The watchdog's takeover, by the test, once the lease expired. */
  for (;;) {
    struct registry_campaign rc = {0};
    assert_int_equal(registry_get(h.reg, "part", &rc), SO_OK);
    bool expired = rc.lease_until_ms <= rc.registry_now_ms;
    registry_campaign_free(&rc);
    if (expired)
      break;
    clock_sleep_ms(100, NULL);
  }
  harness_publish(&h, "part", body);
  struct registry_campaign rc =
      harness_wait_state(&h, "part", CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.fence, 2);
  registry_campaign_free(&rc);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 5000);
  int64_t raw = harness_sink_stat(&h, "raw_duplicates");
  print_message("registry lost: raw_duplicates=%lld (window %d)\n",
                (long long)raw, IN_FLIGHT_WINDOW);
  assert_true(raw <= IN_FLIGHT_WINDOW);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  free(body);
  harness_teardown(&h);
}

/* ---- registry unreachable: retry queue, nothing sent ----------------- */

static void test_registry_unreachable_defers(void **state)
{
  (void)state;
  struct harness h;
  harness_setup(&h, backend, NULL);
  char conninfo[200];
  snprintf(conninfo, sizeof(conninfo),
           "host=127.0.0.1 port=%d dbname=sendonce user=sendonce "
           "connect_timeout=2",
           bt_free_port());
  struct harness_conf c = {.pg_conninfo = conninfo};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body = harness_body("no-reg", harness_recipients_file(&h, "r", 10));
  harness_publish(&h, "no-reg", body);
  /* Deferred to the 1 s retry queue, back, then to the 30 s one. */
  assert_true(harness_wait_log(&a, "attempt=2", 15000));
  uint32_t msgs = 0;
  char err[256];
  int64_t until = clock_monotonic_ms() + 5000;
  do {
    assert_int_equal(broker_queue_counts(h.b, h.topo.retry[1].queue, &msgs,
                                         NULL, err, sizeof(err)),
                     SO_OK);
  } while (msgs != 1 && clock_monotonic_ms() < until);
  assert_int_equal(msgs, 1);
  assert_int_equal(harness_sink_stat(&h, "total"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_true(harness_summary(&a, "deferred") >= 2);
  assert_int_equal(harness_summary(&a, "claimed"), 0);
  free(body);
  harness_teardown(&h);
}

/* ---- a million recipients in bounded memory ------------------------- */

static long vm_hwm_kib(pid_t pid)
{
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long v = -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmHWM:", 6) == 0)
      v = strtol(line + 6, NULL, 10);
  fclose(f);
  return v;
}

static void test_million_recipients_bounded_rss(void **state)
{
  (void)state;
  struct harness h;
  harness_setup(&h, backend, NULL);
  struct harness_conf c = {.mark_batch_size = 500, .concurrency = 16};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body =
      harness_body("million", harness_recipients_file(&h, "m", 1000000));
  harness_publish(&h, "million", body);
  struct registry_campaign rc =
      harness_wait_state(&h, "million", CAMPAIGN_DONE, 3600000);
  assert_int_equal(rc.sent, 1000000);
  registry_campaign_free(&rc);
  long hwm = vm_hwm_kib(a.pid);
  print_message("million: consumer VmHWM=%ld KiB (limit %d KiB)\n", hwm,
                CONSUMER_RSS_LIMIT_KIB);
  assert_true(hwm > 0 && hwm < CONSUMER_RSS_LIMIT_KIB);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), 1000000);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  free(body);
  harness_teardown(&h);
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: %s sqlite|pg [long]\n", argv[0]);
    return 2;
  }
  backend = testdb_backend_parse(argv[1]);
  /* CONSUMER_E2E_FILTER=test_kill9* runs the matching cases only. */
  const char *filter = getenv("CONSUMER_E2E_FILTER");
  if (filter)
    cmocka_set_test_filter(filter);
  if (argc > 2 && strcmp(argv[2], "long") == 0) {
    const char *on = getenv("SENDONCE_TEST_LONG");
    if (!on || strcmp(on, "1") != 0) {
      fprintf(stderr, "skipped: set SENDONCE_TEST_LONG=1 to run it\n");
      return 77;
    }
    if (CONSUMER_RSS_LIMIT_KIB == 0) {
      fprintf(stderr,
              "skipped: the peak-RSS check needs a build without "
              "sanitizers\n");
      return 77;
    }
    const struct CMUnitTest longt[] = {
        cmocka_unit_test(test_million_recipients_bounded_rss),
    };
    return cmocka_run_group_tests_name("consumer_e2e_long", longt, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ten_thousand_once_with_duplicate_triggers),
      cmocka_unit_test(test_bad_messages_dead_lettered_with_reason),
      cmocka_unit_test(test_sigterm_hands_over_at_once),
      cmocka_unit_test(test_kill9_takeover_finishes),
      cmocka_unit_test(test_hang_longer_than_lease_keeps_lease),
      cmocka_unit_test(test_provider_500_for_10s_then_recovers),
      cmocka_unit_test(test_pause_resume_cancel),
      cmocka_unit_test(test_provider_down_released_then_dead),
      cmocka_unit_test(test_give_up_records_requests_in_flight),
      cmocka_unit_test(test_connection_loss_keeps_sending),
      cmocka_unit_test(test_inline_recipients_with_reject),
      cmocka_unit_test(test_busy_workers_park_waiting_trigger),
      cmocka_unit_test(test_registry_lost_mid_campaign_stops_sending),
  };
  int failed = cmocka_run_group_tests_name("consumer_e2e", tests, NULL, NULL);
  /* The unreachable registry is PostgreSQL at a closed port: once. */
  if (backend == REGISTRY_POSTGRESQL) {
    const struct CMUnitTest pg[] = {
        cmocka_unit_test(test_registry_unreachable_defers),
    };
    failed += cmocka_run_group_tests_name("consumer_e2e_pg", pg, NULL, NULL);
  }
  return failed;
}
