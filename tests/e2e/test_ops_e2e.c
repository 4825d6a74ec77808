/* test_ops_e2e.c - operations end to end (issue 9): /metrics, events and
 * SIGHUP of the real daemons, on the real broker, one registry backend
 * (argv[1]: sqlite | pg) and sendonce-sink as the provider.
 *
 *  metrics_events: an exclusive queue of the test's own bound to
 *    <prefix>.events with '#'; three campaigns scheduled with the
 *    publisher's `schedule` verb (one of 2,000 recipients, ten of which the
 *    sink rejects), published by `sendonce-publisher run`, sent by a
 *    consumer; an invalid trigger; two duplicate triggers once the big one
 *    is DONE; then a watchdog with no consumer left. The consumer's
 *    /metrics is scraped while it sends and after, and checked against the
 *    sink's /stats; the publisher's published_total == 3; the watchdog's
 *    alert and verdict gauges. Every event is checked against
 *    docs/events.md.
 *  sighup: the consumer, the watchdog and the publisher re-read their
 *    config: a new log level (the consumer's debug lines appear), provider
 *    settings, the watchdog's interval, an invalid file (error with
 *    file:line, old config kept, still sending), an unsafe change
 *    (registry.backend: needs a restart, ignored).
 *  metrics_port_taken: the consumer logs the error and sends anyway.
 */
#include <amqp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <amqp_tcp_socket.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "e2e/consumer_harness.h"
#include "e2e/ops_testutil.h"
#include "integration/broker_testutil.h"
#include "testenv.h"

extern char **environ;

static enum registry_backend backend;

static void check_common(const struct event_seen *e, const char *source)
{
  json_object *b = e->body;
  const char *ev = ops_jstr(b, "event");
  if (!ev || strcmp(ev, e->kind) != 0 || strcmp(e->header_event, e->kind) != 0)
    fail_msg("event %s: event/header disagree: %s header=%s", e->kind,
             json_object_to_json_string(b), e->header_event);
  const char *src = ops_jstr(b, "source");
  assert_non_null(src);
  assert_string_equal(src, source);
  const char *at = ops_jstr(b, "at");
  /* RFC 3339 UTC, ms: 2026-11-28T00:55:06.176Z */
  if (!at || strlen(at) != 24 || at[10] != 'T' || at[23] != 'Z')
    fail_msg("event %s: bad at: %s", e->kind, json_object_to_json_string(b));
  json_object_object_foreach(b, key, val)
  {
    (void)key;
    if (json_object_is_type(val, json_type_null))
      fail_msg("event %s: null member: %s", e->kind,
               json_object_to_json_string(b));
  }
  const char *id = ops_jstr(b, "campaign_id");
  assert_string_equal(e->message_id, id ? id : e->kind);
}

/* ---- metrics and events end to end --------------------------------------- */

#define BIG_N 2000
#define SMALL_N 20
#define N_CAMPAIGNS 3

static void test_metrics_events(void **state)
{
  (void)state;
  /* Recipient ids u-0..u-1999: u-107, u-117, ... u-197 are rejected. */
  const char *args[] = {"--latency-ms", "10", "--reject-pattern", "^u-1[0-9]7$",
                        NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct evq q;
  evq_open(&q, h.topo.events);
  int cport = bt_free_port(), pport = bt_free_port(), wport = bt_free_port();
  char extra[512];
  snprintf(extra, sizeof(extra),
           "metrics = { enabled = true; address = \"127.0.0.1\";\n"
           "  consumer_port = %d; publisher_port = %d; watchdog_port = %d; };\n"
           "watchdog = { interval_s = 1; grace_s = 5; stuck_after_s = 60;\n"
           "  mgmt_url = \"%s\"; };\n",
           cport, pport, wport, testenv_get("SENDONCE_WATCHDOG_MGMT_URL"));
  struct harness_conf c = {.workers = 2, .concurrency = 8};
  char conf[420];
  snprintf(conf, sizeof(conf), "%s", ops_config(&h, "ops", &c, extra));

  /* Three campaigns in the registry, through the publisher's verb. */
  char content[400];
  snprintf(content, sizeof(content), "%s/content.json", h.dir);
  ops_spit(content, "{\"subject\":\"hello\"}\n");
  const char *ids[N_CAMPAIGNS] = {"big", "small-1", "small-2"};
  for (int i = 0; i < N_CAMPAIGNS; i++) {
    char url[400];
    snprintf(url, sizeof(url), "%s",
             harness_recipients_file(&h, ids[i], i == 0 ? BIG_N : SMALL_N));
    char *argv[] = {(char *)SENDONCE_PUBLISHER_BIN,
                    (char *)"--config",
                    conf,
                    (char *)"schedule",
                    (char *)"--id",
                    (char *)ids[i],
                    (char *)"--at",
                    (char *)"now",
                    (char *)"--channel",
                    (char *)"email",
                    (char *)"--content",
                    content,
                    (char *)"--recipients-url",
                    url,
                    NULL};
    assert_int_equal(ops_run_wait(&h, "schedule", argv), 0);
  }

  struct harness_proc cons, pub, wd;
  harness_start(&h, &cons, conf, "consumer");
  assert_true(harness_wait_log(&cons, "consumer: metrics on http://", 5000));
  /* An invalid trigger: dead-lettered, trigger.invalid. */
  bt_publish(h.b, h.topo.exchange, TOPOLOGY_ROUTING_KEY_DUE, "fax-blast",
             "{\"schema\":1,\"campaign_id\":\"fax-blast\","
             "\"scheduled_at\":\"2026-11-27T09:00:00Z\",\"channel\":\"fax\","
             "\"content\":{},\"recipients\":[{\"address\":\"1\"}]}");
  char *pargv[] = {(char *)SENDONCE_PUBLISHER_BIN, (char *)"--config", conf,
                   (char *)"run", NULL};
  ops_spawn(&h, &pub, "publisher", pargv);

  /* While it sends: a claim held, progress between 0 and all. */
  struct registry_campaign rc =
      harness_wait_state(&h, "big", CAMPAIGN_PROCESSING, 30000);
  registry_campaign_free(&rc);
  assert_true(harness_wait_sink(&h, "total", 200, 30000));
  char *during = ops_scrape(cport);
  long long held = ops_imetric(during, "sendonce_consumer_claims_held");
  long long sent_during = ops_imetric(
      during, "sendonce_consumer_recipients_total{outcome=\"sent\"}");
  long long in_flight =
      ops_imetric(during, "sendonce_consumer_requests_in_flight");
  print_message("during: claims_held=%lld sent=%lld in_flight=%lld\n", held,
                sent_during, in_flight);
  assert_true(held >= 1 && held <= 2);
  assert_true(sent_during < BIG_N + 2 * SMALL_N);
  /* Handed to the senders, not yet marked: at most two batches a worker
   * (mark_batch_size 50). */
  assert_true(in_flight >= 0 && in_flight <= 2 * 2 * 50);
  ops_check_histogram(during, "sendonce_consumer_provider_latency_seconds");
  free(during);

  for (int i = 0; i < N_CAMPAIGNS; i++) {
    rc = harness_wait_state(&h, ids[i], CAMPAIGN_DONE, 120000);
    registry_campaign_free(&rc);
  }
  /* Two duplicate triggers for the finished campaign. */
  char *body = harness_body("big", harness_recipients_file(&h, "dup", 1));
  harness_publish(&h, "big", body);
  harness_publish(&h, "big", body);
  free(body);
  int64_t until = clock_monotonic_ms() + 20000;
  char *after = NULL;
  for (;;) {
    after = ops_scrape(cport);
    if (ops_metric(
            after,
            "sendonce_consumer_duplicate_triggers_total{reason=\"done\"}") >=
            2 ||
        clock_monotonic_ms() > until)
      break;
    free(after);
    clock_sleep_ms(100, NULL);
  }

  /* The consumer's numbers against the sink's. */
  json_object *st = sink_client_stats(h.sink);
  assert_non_null(st);
  int64_t unique = sink_client_stat(st, "unique_keys");
  int64_t accepted = sink_client_stat(st, "accepted");
  json_object *by_status = NULL;
  assert_true(json_object_object_get_ex(st, "by_status", &by_status));
  json_object *r422 = NULL;
  int64_t rejected_sink = json_object_object_get_ex(by_status, "422", &r422)
                              ? json_object_get_int64(r422)
                              : 0;
  assert_int_equal(sink_client_stat(st, "accepted_duplicates"), 0);
  json_object_put(st);
  long long sent = ops_imetric(
      after, "sendonce_consumer_recipients_total{outcome=\"sent\"}");
  long long rejected = ops_imetric(
      after, "sendonce_consumer_recipients_total{outcome=\"rejected\"}");
  print_message(
      "after: sent=%lld rejected=%lld sink unique=%lld accepted=%lld "
      "422=%lld\n",
      sent, rejected, (long long)unique, (long long)accepted,
      (long long)rejected_sink);
  assert_int_equal(rejected_sink, 10);
  assert_int_equal(rejected, rejected_sink);
  assert_int_equal(sent, accepted);
  assert_int_equal(sent + rejected, unique);
  assert_int_equal(sent + rejected, BIG_N + 2 * SMALL_N);
  assert_int_equal(ops_imetric(after,
                               "sendonce_consumer_duplicate_triggers_total{"
                               "reason=\"done\"}"),
                   2);
  assert_int_equal(ops_imetric(after,
                               "sendonce_consumer_duplicate_triggers_total{"
                               "reason=\"held\"}"),
                   0);
  assert_int_equal(
      ops_imetric(after,
                  "sendonce_consumer_deliveries_total{outcome=\"duplicate\"}"),
      2);
  assert_int_equal(
      ops_imetric(after,
                  "sendonce_consumer_deliveries_total{outcome=\"invalid\"}"),
      1);
  assert_int_equal(
      ops_imetric(after,
                  "sendonce_consumer_deliveries_total{outcome=\"claimed\"}"),
      N_CAMPAIGNS);
  assert_int_equal(
      ops_imetric(after, "sendonce_consumer_deliveries_received_total"),
      N_CAMPAIGNS + 3);
  assert_int_equal(
      ops_imetric(after, "sendonce_consumer_campaigns_total{result=\"done\"}"),
      N_CAMPAIGNS);
  assert_int_equal(
      ops_imetric(after, "sendonce_consumer_campaigns_total{result=\"dead\"}"),
      0);
  assert_int_equal(ops_imetric(after, "sendonce_consumer_claims_held"), 0);
  assert_int_equal(ops_imetric(after, "sendonce_consumer_requests_in_flight"),
                   0);
  assert_int_equal(
      ops_check_histogram(after, "sendonce_consumer_provider_latency_seconds"),
      sent + rejected);
  long long renewals =
      ops_check_histogram(after, "sendonce_consumer_lease_renewal_lag_seconds");
  assert_true(renewals >= 0);
  assert_true(strstr(after,
                     "# TYPE sendonce_consumer_provider_latency_seconds "
                     "histogram\n") != NULL);
  free(after);

  /* The publisher published the three. */
  char *pm = ops_scrape(pport);
  assert_int_equal(ops_imetric(pm, "sendonce_publisher_published_total"),
                   N_CAMPAIGNS);
  assert_int_equal(ops_imetric(pm, "sendonce_publisher_publish_failures_total"),
                   0);
  assert_int_equal(
      ops_check_histogram(pm, "sendonce_publisher_confirm_latency_seconds"),
      N_CAMPAIGNS);
  assert_int_equal(
      ops_check_histogram(pm, "sendonce_publisher_lateness_seconds"),
      N_CAMPAIGNS);
  free(pm);
  assert_int_equal(harness_stop(&pub, SIGTERM, 15000), 0);

  /* Without a consumer the watchdog alerts; the DLQ holds the invalid one;
   * a PUBLISHED campaign due a minute ago waits in the main queue. */
  assert_int_equal(harness_stop(&cons, SIGTERM, 30000), 0);
  char *wbody =
      harness_body("waiting", harness_recipients_file(&h, "waiting", 1));
  struct registry_new_campaign nc = {
      .campaign_id = "waiting",
      .scheduled_at_ms = clock_now_ms() - 60000,
      .channel = "email",
      .payload = wbody,
  };
  bool created = false;
  assert_int_equal(registry_register(h.reg, &nc, CAMPAIGN_PUBLISHED, &created),
                   SO_OK);
  assert_true(created);
  harness_publish(&h, "waiting", wbody);
  free(wbody);
  char *wargv[] = {(char *)SENDONCE_WATCHDOG_BIN, (char *)"--config", conf,
                   (char *)"run", NULL};
  ops_spawn(&h, &wd, "watchdog", wargv);
  until = clock_monotonic_ms() + 20000;
  char *wm = NULL;
  for (;;) {
    clock_sleep_ms(300, NULL);
    if (!harness_wait_log(&wd, "watchdog: metrics on http://", 100))
      continue;
    wm = ops_scrape(wport);
    double passes = ops_metric(wm, "sendonce_watchdog_passes_total");
    if ((!isnan(passes) && passes >= 2) || clock_monotonic_ms() > until)
      break;
    free(wm);
  }
  assert_int_equal(
      ops_imetric(wm, "sendonce_watchdog_alert{alert=\"no_consumer\"}"), 1);
  assert_int_equal(
      ops_imetric(wm, "sendonce_watchdog_alert{alert=\"dlq_not_empty\"}"), 1);
  assert_int_equal(ops_imetric(wm, "sendonce_watchdog_queue_consumers"), 0);
  assert_int_equal(ops_imetric(wm, "sendonce_watchdog_dlq_messages"), 1);
  assert_int_equal(
      ops_imetric(wm, "sendonce_watchdog_campaigns{verdict=\"queued\"}"), 1);
  assert_int_equal(ops_imetric(wm, "sendonce_watchdog_queue_ready"), 1);
  /* The DONE ones are not overdue: no other verdict. */
  const char *verdicts[] = {"in_progress", "stuck", "trigger_lost", "stalled",
                            "dead"};
  for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++) {
    char s[128];
    snprintf(s, sizeof(s), "sendonce_watchdog_campaigns{verdict=\"%s\"}",
             verdicts[i]);
    assert_int_equal(ops_imetric(wm, s), 0);
  }
  free(wm);
  assert_int_equal(harness_stop(&wd, SIGTERM, 15000), 0);

  /* The events, in order per campaign. */
  static struct event_seen ev[4000];
  size_t n = evq_drain(&q, ev, sizeof(ev) / sizeof(ev[0]), 1000);
  int claimed = 0, done = 0, dup = 0, invalid = 0, alerts = 0, progress = 0;
  int dlq_alerts = 0;
  long long last_sent = -1;
  bool big_done = false;
  for (size_t i = 0; i < n; i++) {
    struct event_seen *e = &ev[i];
    json_object *b = e->body;
    const char *id = ops_jstr(b, "campaign_id");
    bool big = id && strcmp(id, "big") == 0;
    if (strcmp(e->kind, "alert") == 0) {
      check_common(e, "watchdog");
      const char *reason = ops_jstr(b, "reason");
      assert_non_null(reason);
      if (!id && strcmp(reason, "no_consumer") == 0)
        alerts++;
      if (!id && strcmp(reason, "dlq_not_empty") == 0)
        dlq_alerts++;
      continue;
    }
    check_common(e, "consumer");
    if (strcmp(e->kind, "trigger.invalid") == 0) {
      assert_non_null(id);
      assert_string_equal(id, "fax-blast");
      const char *reason = ops_jstr(b, "reason");
      assert_non_null(reason);
      if (strncmp(reason, "unknown_channel", 15) != 0)
        fail_msg("trigger.invalid: %s", json_object_to_json_string(b));
      invalid++;
      continue;
    }
    if (!big)
      continue;
    if (strcmp(e->kind, "campaign.claimed") == 0) {
      assert_int_equal(claimed + progress + done, 0); /* first */
      assert_int_equal(ops_jint(b, "fence"), 1);
      assert_non_null(ops_jstr(b, "owner"));
      assert_int_equal(ops_jint(b, "sent"), -1); /* not on a claim */
      claimed++;
    } else if (strcmp(e->kind, "campaign.progress") == 0) {
      assert_int_equal(claimed, 1);
      assert_false(big_done);
      assert_int_equal(ops_jint(b, "fence"), 1);
      long long s = ops_jint(b, "sent");
      assert_true(s >= last_sent && ops_jint(b, "rejected") >= 0);
      last_sent = s;
      progress++;
    } else if (strcmp(e->kind, "campaign.done") == 0) {
      assert_int_equal(ops_jint(b, "fence"), 1);
      assert_int_equal(ops_jint(b, "total"), BIG_N);
      assert_int_equal(ops_jint(b, "sent") + ops_jint(b, "rejected"), BIG_N);
      assert_int_equal(ops_jint(b, "rejected"), 10);
      assert_true(ops_jint(b, "sent") >= last_sent);
      big_done = true;
      done++;
    } else if (strcmp(e->kind, "trigger.duplicate") == 0) {
      assert_true(big_done);
      assert_string_equal(ops_jstr(b, "reason"), "done");
      assert_int_equal(ops_jint(b, "fence"), 1);
      dup++;
    } else {
      fail_msg("unexpected event %s: %s", e->kind,
               json_object_to_json_string(b));
    }
  }
  print_message(
      "events: %zu total; big: claimed=%d progress=%d done=%d duplicate=%d; "
      "invalid=%d no_consumer alerts=%d dlq alerts=%d\n",
      n, claimed, progress, done, dup, invalid, alerts, dlq_alerts);
  assert_int_equal(claimed, 1);
  assert_true(progress >= 1);
  assert_int_equal(done, 1);
  assert_int_equal(dup, 2);
  assert_int_equal(invalid, 1);
  assert_true(alerts >= 1);
  assert_true(dlq_alerts >= 1);
  for (size_t i = 0; i < n; i++)
    json_object_put(ev[i].body);
  evq_close(&q);
  harness_teardown(&h);
}

/* ---- SIGHUP -------------------------------------------------------------- */

/* run_one: publish a campaign of n recipients and wait for DONE. */
static void run_one(struct harness *h, const char *id, long n)
{
  char *body = harness_body(id, harness_recipients_file(h, id, n));
  harness_publish(h, id, body);
  free(body);
  struct registry_campaign rc = harness_wait_state(h, id, CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.sent, n);
  registry_campaign_free(&rc);
}

static void test_sighup(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "20", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  int wport = bt_free_port();
  char extra[512];
  snprintf(extra, sizeof(extra),
           "metrics = { enabled = true; consumer_port = %d;\n"
           "  watchdog_port = %d; };\n"
           "watchdog = { interval_s = 1; grace_s = 5; stuck_after_s = 60;\n"
           "  mgmt_url = \"%s\"; };\n",
           bt_free_port(), wport, testenv_get("SENDONCE_WATCHDOG_MGMT_URL"));
  struct harness_conf c = {.concurrency = 4};
  char conf[420];
  snprintf(conf, sizeof(conf), "%s", ops_config(&h, "hup", &c, extra));
  char *original = harness_slurp(conf);
  struct harness_proc cons, wd, pub;
  harness_start(&h, &cons, conf, "consumer");
  char *wargv[] = {(char *)SENDONCE_WATCHDOG_BIN, (char *)"--config", conf,
                   (char *)"run", NULL};
  ops_spawn(&h, &wd, "watchdog", wargv);
  char *pargv[] = {(char *)SENDONCE_PUBLISHER_BIN, (char *)"--config", conf,
                   (char *)"run", NULL};
  ops_spawn(&h, &pub, "publisher", pargv);
  assert_true(harness_wait_log(&wd, "watchdog: running", 15000));
  assert_true(harness_wait_log(&pub, "publisher: running", 15000));
  run_one(&h, "before", 20);
  assert_int_equal(harness_log_count(&cons, "level=debug"), 0);

  /* 1. Safe changes: the log level, a provider's concurrency, the
   * watchdog's interval. */
  ops_file_replace(conf, "level = \"info\"", "level = \"debug\"");
  ops_file_replace(conf, "concurrency = 4", "concurrency = 2");
  ops_file_replace(conf, "interval_s = 1", "interval_s = 2");
  kill(cons.pid, SIGHUP);
  kill(wd.pid, SIGHUP);
  kill(pub.pid, SIGHUP);
  assert_true(
      harness_wait_log(&cons, "reload: log.level: info -> debug", 5000));
  assert_true(harness_wait_log(
      &cons, "reload: providers.email.concurrency: 4 -> 2", 1000));
  assert_true(
      harness_wait_log(&wd, "reload: watchdog.interval_s: 1 -> 2", 5000));
  assert_true(harness_wait_log(&wd, "reload: log.level: info -> debug", 1000));
  assert_true(harness_wait_log(&pub, "reload: log.level: info -> debug", 5000));
  /* A campaign long enough for lease renewals, logged at debug. */
  run_one(&h, "debug", 300);
  assert_true(harness_log_count(&cons, "level=debug") > 0);
  assert_true(harness_log_count(&cons, "consumer: renewed campaign=debug") > 0);

  /* 2. An invalid file: the error with file:line, the old config kept. */
  ops_spit(conf, "log = { level = \"loud\"; };\nconsumer = { workers = ; };\n");
  kill(cons.pid, SIGHUP);
  kill(wd.pid, SIGHUP);
  kill(pub.pid, SIGHUP);
  char where[450];
  snprintf(where, sizeof(where), "%s:", conf);
  assert_true(harness_wait_log(&cons, "consumer: reload refused", 5000));
  assert_true(harness_wait_log(&wd, "watchdog: reload refused", 5000));
  assert_true(harness_wait_log(&pub, "publisher: reload refused", 5000));
  char *log = harness_slurp(cons.log);
  const char *line = strstr(log, "consumer: reload refused");
  assert_non_null(line);
  const char *at = strstr(line, where);
  assert_non_null(at);
  assert_true(at[strlen(where)] >= '1' && at[strlen(where)] <= '9');
  free(log);
  assert_int_equal(kill(cons.pid, 0), 0);
  assert_int_equal(kill(wd.pid, 0), 0);
  assert_int_equal(kill(pub.pid, 0), 0);
  int debug_lines = harness_log_count(&cons, "level=debug");
  run_one(&h, "after-invalid", 300);
  /* Still at debug: the old config was kept whole. */
  assert_true(harness_log_count(&cons, "level=debug") > debug_lines);

  /* 3. An unsafe change: needs a restart, ignored; the rest applies. */
  ops_spit(conf, original);
  if (backend == REGISTRY_SQLITE)
    ops_file_replace(
        conf, "backend = \"sqlite\";",
        "backend = \"postgresql\"; pg_conninfo = \"host=127.0.0.1\";");
  else
    ops_file_replace(conf, "backend = \"postgresql\";",
                     "backend = \"sqlite\";");
  kill(cons.pid, SIGHUP);
  assert_true(harness_wait_log(
      &cons,
      "reload: registry.backend changed: needs a restart; kept the old value",
      5000));
  assert_true(
      harness_wait_log(&cons, "reload: log.level: debug -> info", 1000));
  run_one(&h, "after-unsafe", 20);
  assert_int_equal(harness_stop(&cons, SIGTERM, 30000), 0);
  assert_int_equal(harness_stop(&wd, SIGTERM, 15000), 0);
  assert_int_equal(harness_stop(&pub, SIGTERM, 15000), 0);
  free(original);
  harness_teardown(&h);
}

/* ---- a metrics port that is taken ------------------------------------------
 */

/* The consumer logs the error and sends anyway (docs/operations.md). */
static void test_metrics_port_taken(void **state)
{
  (void)state;
  struct harness h;
  harness_setup(&h, backend, NULL);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 1), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  char extra[128];
  snprintf(extra, sizeof(extra), "metrics = { consumer_port = %d; };\n",
           ntohs(a.sin_port));
  struct harness_conf c = {0};
  struct harness_proc cons;
  harness_start(&h, &cons, ops_config(&h, "taken", &c, extra), "consumer");
  assert_true(harness_wait_log(&cons, "(running without /metrics)", 5000));
  assert_true(harness_log_count(&cons, "level=error consumer: metrics:") == 1);
  run_one(&h, "without-metrics", 20);
  assert_int_equal(harness_stop(&cons, SIGTERM, 30000), 0);
  close(fd);
  harness_teardown(&h);
}

int main(int argc, char **argv)
{
  backend = argc > 1 && strcmp(argv[1], "pg") == 0 ? REGISTRY_POSTGRESQL
                                                   : REGISTRY_SQLITE;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_events),
      cmocka_unit_test(test_sighup),
      cmocka_unit_test(test_metrics_port_taken),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
