/* test_watchdog.c - the watchdog against the real RabbitMQ and one registry
 * backend (argv[1]: sqlite | pg), without consumers: each row of the
 * watchdog table that can be staged by hand, with two watchdogs at once
 * where a race is possible.
 *
 * Times: grace 3 s (the shortest a 3 s lease allows), passes every 0.5 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "clock.h"
#include "mgmt.h"
#include "integration/broker_testutil.h"
#include "integration/watchdog_testutil.h"
#include "testenv.h"

#define GRACE_S 3

static enum registry_backend backend;

static int setup(void **state)
{
  struct wt *t = calloc(1, sizeof(*t));
  wt_setup(t, backend, GRACE_S, NULL);
  *state = t;
  return 0;
}

static int teardown(void **state)
{
  wt_teardown(*state);
  free(*state);
  return 0;
}

/* Run passes of w1 and w2 alternately for `ms`, every 250 ms each;
 * counts the verdicts of `id` by kind. */
static void passes(struct watchdog *w1, struct watchdog *w2, const char *id,
                   int64_t ms, int counts[VERDICT_PAUSED + 1])
{
  int64_t end = clock_monotonic_ms() + ms;
  while (clock_monotonic_ms() < end) {
    struct watchdog *ws[2] = {w1, w2};
    for (int i = 0; i < 2; i++) {
      if (!ws[i])
        continue;
      struct watchdog_row row;
      if (wt_pass(ws[i], id, &row, NULL) && counts)
        counts[row.v.kind]++;
      clock_sleep_ms(250, NULL);
    }
  }
}

/* A trigger purged from the queue while PUBLISHED: republished once by
 * two watchdogs over many passes; exactly one new message. */
static void test_trigger_lost_republished_once(void **state)
{
  struct wt *t = *state;
  const char *id = "lost-1";
  wt_register(t, id, CAMPAIGN_PUBLISHED, 60, 3);
  char *body = wt_payload(id, 3, NULL);
  bt_publish(t->b, t->topo.exchange, TOPOLOGY_ROUTING_KEY_DUE, id, body);
  free(body);
  /* The purge: take it off the queue for good. */
  assert_int_equal(wt_drain(t, t->topo.campaigns, id, NULL, NULL), 1);

  struct watchdog *w1 = wt_watchdog(t, false, false);
  struct watchdog *w2 = wt_watchdog(t, false, false);
  int counts[VERDICT_PAUSED + 1] = {0};
  passes(w1, w2, id, (GRACE_S + 5) * 1000, counts);
  assert_true(counts[VERDICT_TRIGGER_LOST] >= 1);
  assert_true(counts[VERDICT_QUEUED] >= 1); /* before grace, and after */

  struct registry_campaign c = wt_get(t, id);
  assert_int_equal(c.republished, 1);
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  registry_campaign_free(&c);
  int matching = 0;
  assert_int_equal(
      wt_drain(t, t->topo.campaigns, id, "trigger_lost", &matching), 1);
  assert_int_equal(matching, 1);
  watchdog_close(w1);
  watchdog_close(w2);
}

/* A campaign behind a backlog past its grace: queued on every pass, never
 * republished, the queue untouched. */
static void test_backlog_queued_never_republished(void **state)
{
  struct wt *t = *state;
  const char *id = "behind-1";
  for (int i = 0; i < 5; i++) {
    char other[32];
    snprintf(other, sizeof(other), "ahead-%d", i);
    char *body = wt_payload(other, 1, NULL);
    bt_publish(t->b, t->topo.exchange, TOPOLOGY_ROUTING_KEY_DUE, other, body);
    free(body);
  }
  wt_register(t, id, CAMPAIGN_PUBLISHED, 60, 3);
  char *body = wt_payload(id, 3, NULL);
  bt_publish(t->b, t->topo.exchange, TOPOLOGY_ROUTING_KEY_DUE, id, body);
  free(body);

  struct watchdog *w1 = wt_watchdog(t, false, false);
  struct watchdog *w2 = wt_watchdog(t, false, false);
  int counts[VERDICT_PAUSED + 1] = {0};
  passes(w1, w2, id, (GRACE_S + 4) * 1000, counts);
  int total = 0;
  for (int k = 0; k <= VERDICT_PAUSED; k++)
    total += counts[k];
  assert_true(total >= 10);
  assert_int_equal(counts[VERDICT_QUEUED], total);

  struct registry_campaign c = wt_get(t, id);
  assert_int_equal(c.republished, 0);
  registry_campaign_free(&c);
  assert_int_equal(wt_ready(t, t->topo.campaigns), 6);
  watchdog_close(w1);
  watchdog_close(w2);
}

/* The incident in miniature, without a consumer: PROCESSING with a lease
 * the test keeps renewing, long past due and past grace, queues empty: in
 * progress on every pass, never republished. */
static void test_live_lease_in_progress(void **state)
{
  struct wt *t = *state;
  const char *id = "long-1";
  wt_register(t, id, CAMPAIGN_PUBLISHED, 600, 3);
  struct registry_claim cl;
  assert_int_equal(registry_claim(t->reg, id, "test-worker", 4000, &cl), SO_OK);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);

  struct watchdog *w1 = wt_watchdog(t, false, false);
  struct watchdog *w2 = wt_watchdog(t, false, false);
  int counts[VERDICT_PAUSED + 1] = {0};
  int total = 0;
  int64_t end = clock_monotonic_ms() + (GRACE_S + 6) * 1000;
  while (clock_monotonic_ms() < end) {
    assert_int_equal(registry_renew(t->reg, id, cl.fence, 4000), SO_OK);
    struct watchdog_row row;
    assert_true(wt_pass(w1, id, &row, NULL));
    counts[row.v.kind]++;
    assert_true(wt_pass(w2, id, &row, NULL));
    counts[row.v.kind]++;
    total += 2;
    clock_sleep_ms(300, NULL);
  }
  assert_true(total >= 12);
  assert_int_equal(counts[VERDICT_IN_PROGRESS], total);
  struct registry_campaign c = wt_get(t, id);
  assert_int_equal(c.republished, 0);
  assert_int_equal(c.fence, cl.fence);
  registry_campaign_free(&c);
  assert_int_equal(wt_ready(t, t->topo.campaigns), 0);
  watchdog_close(w1);
  watchdog_close(w2);
}

/* Lease expired for more than grace: stalled, exactly one takeover
 * trigger between two watchdogs. */
static void test_stalled_one_takeover(void **state)
{
  struct wt *t = *state;
  const char *id = "stalled-1";
  wt_register(t, id, CAMPAIGN_PUBLISHED, 600, 3);
  struct registry_claim cl;
  assert_int_equal(registry_claim(t->reg, id, "dead-worker", 1000, &cl), SO_OK);
  struct watchdog *w1 = wt_watchdog(t, false, false);
  struct watchdog *w2 = wt_watchdog(t, false, false);
  int counts[VERDICT_PAUSED + 1] = {0};
  passes(w1, w2, id, (GRACE_S + 5) * 1000, counts);
  assert_true(counts[VERDICT_IN_PROGRESS] >= 1); /* expired, within grace */
  assert_true(counts[VERDICT_STALLED] >= 1);
  struct registry_campaign c = wt_get(t, id);
  assert_int_equal(c.republished, 1);
  assert_int_equal(c.state, CAMPAIGN_PROCESSING);
  registry_campaign_free(&c);
  int matching = 0;
  assert_int_equal(wt_drain(t, t->topo.campaigns, id, "takeover", &matching),
                   1);
  assert_int_equal(matching, 1);
  /* The takeover trigger is claimable: fence + 1. */
  struct registry_claim cl2;
  assert_int_equal(registry_claim(t->reg, id, "new-worker", 5000, &cl2), SO_OK);
  assert_int_equal(cl2.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl2.fence, cl.fence + 1);
  watchdog_close(w1);
  watchdog_close(w2);
}

static void publish_dead(struct wt *t, const char *id, const char *why)
{
  char *body = wt_payload(id, 3, NULL);
  struct broker_header h[] = {{"x-sendonce-error", why}};
  struct broker_message m = {
      .exchange = t->topo.dlx,
      .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
      .body = body,
      .body_len = strlen(body),
      .message_id = id,
      .headers = h,
      .n_headers = 1,
  };
  char err[512] = "";
  assert_int_equal(broker_publish_confirmed(t->b, &m, err, sizeof(err)), SO_OK);
  free(body);
}

/* A poison campaign in the DLQ: dead, registry DEAD with the DLQ's
 * reason, never republished, the DLQ intact; replay brings it back. */
static void test_dead_from_dlq_and_replay(void **state)
{
  struct wt *t = *state;
  const char *id = "poison-1";
  wt_register(t, id, CAMPAIGN_PUBLISHED, 60, 3);
  publish_dead(t, "other-dead", "bad_json: unrelated");
  publish_dead(t, id, "crashed: delivery limit");
  struct watchdog *w1 = wt_watchdog(t, false, false);
  struct watchdog *w2 = wt_watchdog(t, false, false);
  int counts[VERDICT_PAUSED + 1] = {0};
  passes(w1, w2, id, (GRACE_S + 3) * 1000, counts);
  assert_true(counts[VERDICT_DEAD] >= 1); /* then DEAD: not overdue any more */
  assert_int_equal(counts[VERDICT_TRIGGER_LOST], 0);
  struct registry_campaign c = wt_get(t, id);
  assert_int_equal(c.state, CAMPAIGN_DEAD);
  assert_int_equal(c.republished, 0);
  assert_non_null(c.last_error);
  assert_non_null(strstr(c.last_error, "crashed: delivery limit"));
  registry_campaign_free(&c);
  assert_int_equal(wt_ready(t, t->topo.campaigns), 0);
  assert_int_equal(wt_wait_ready(t, t->topo.dead, 2, 5000), 2); /* intact */

  /* status says so; check exits 1 (dead, DLQ not empty, no consumer). */
  char out[16384];
  const char *st[] = {"status", id, NULL};
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, st, out, sizeof(out)), 1);
  assert_non_null(strstr(out, "in DLQ:       yes: crashed: delivery limit"));

  /* replay --dry-run changes nothing; replay does it. */
  const char *dry[] = {"replay", "--dry-run", id, NULL};
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, dry, out, sizeof(out)), 0);
  assert_non_null(strstr(out, "dry-run"));
  c = wt_get(t, id);
  assert_int_equal(c.state, CAMPAIGN_DEAD);
  registry_campaign_free(&c);
  const char *rp[] = {"replay", id, NULL};
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, rp, out, sizeof(out)), 0);
  assert_non_null(strstr(out, "1 DLQ copy removed"));
  c = wt_get(t, id);
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  registry_campaign_free(&c);
  /* The other one stays. (A requeued quorum-queue message can take a
   * moment to show in the count again.) */
  assert_int_equal(wt_wait_ready(t, t->topo.dead, 1, 5000), 1);
  int matching = 0;
  assert_int_equal(wt_drain(t, t->topo.campaigns, id, "replay", &matching), 1);
  assert_int_equal(matching, 1);
  /* A second replay is refused: not DEAD. */
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, rp, out, sizeof(out)), 1);
  watchdog_close(w1);
  watchdog_close(w2);
}

/* SCHEDULED past due, no publisher: two watchdogs (and a publisher, when
 * built) start at the same moment: published exactly once. */
static void test_publisher_missing_published_once(void **state)
{
  struct wt *t = *state;
  const char *id = "nopub-1";
  wt_register(t, id, CAMPAIGN_SCHEDULED, 60, 3);
  const char *chk[] = {"check", NULL};
  const char *run[] = {"run", NULL};
  pid_t pub = -1;
  if (access(SENDONCE_PUBLISHER_BIN, X_OK) == 0)
    pub = wt_spawn(t, SENDONCE_PUBLISHER_BIN, run, NULL);
  pid_t a = wt_spawn(t, SENDONCE_WATCHDOG_BIN, chk, NULL);
  pid_t b = wt_spawn(t, SENDONCE_WATCHDOG_BIN, chk, NULL);
  int st;
  assert_int_equal(waitpid(a, &st, 0), a);
  assert_int_equal(waitpid(b, &st, 0), b);
  /* Let the publisher finish whatever it started. */
  for (int i = 0; i < 30; i++) {
    struct registry_campaign c = wt_get(t, id);
    bool done = c.state == CAMPAIGN_PUBLISHED;
    registry_campaign_free(&c);
    if (done)
      break;
    clock_sleep_ms(100, NULL);
  }
  clock_sleep_ms(1000, NULL);
  if (pub > 0)
    assert_int_equal(wt_stop(pub), 0);
  struct registry_campaign c = wt_get(t, id);
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  registry_campaign_free(&c);
  int matching = 0;
  assert_int_equal(wt_drain(t, t->topo.campaigns, id, NULL, &matching), 1);
  assert_int_equal(matching, 1);
}

/* No consumer on the main queue: check exits 1 and says so; JSON too. */
static void test_check_no_consumer(void **state)
{
  struct wt *t = *state;
  char out[16384];
  const char *chk[] = {"check", NULL};
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, chk, out, sizeof(out)), 1);
  assert_non_null(strstr(out, "no consumer on the main queue"));
  assert_non_null(strstr(out, "needs attention"));
  const char *js[] = {"check", "--json", NULL};
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, js, out, sizeof(out)), 1);
  assert_non_null(strstr(out, "\"no_consumer\""));

  /* With a consumer (ours) and nothing overdue: healthy, exit 0. */
  char err[512] = "";
  assert_int_equal(broker_consume(t->b, t->topo.campaigns, 1, err, sizeof(err)),
                   SO_OK);
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, chk, out, sizeof(out)), 0);
  assert_non_null(strstr(out, "healthy"));
  assert_int_equal(broker_cancel_all(t->b), SO_OK);
}

/* A snapshot of what --dry-run must not change. */
static char *snapshot(struct wt *t, const char *const *ids, size_t n)
{
  size_t cap = 4096;
  char *s = calloc(1, cap);
  assert_non_null(s);
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    struct registry_campaign c = wt_get(t, ids[i]);
    off += (size_t)snprintf(
        s + off, cap - off,
        "%s state=%d fence=%lld lease=%lld rep=%d "
        "rep_at=%lld upd=%lld err=%s\n",
        ids[i], (int)c.state, (long long)c.fence, (long long)c.lease_until_ms,
        c.republished, (long long)c.republished_at_ms,
        (long long)c.updated_at_ms, c.last_error ? c.last_error : "-");
    registry_campaign_free(&c);
  }
  /* The DLQ holds one message throughout; a requeue after a read can take
   * a few ms to show in the count again. */
  snprintf(s + off, cap - off, "main=%u dead=%u\n",
           wt_ready(t, t->topo.campaigns),
           wt_wait_ready(t, t->topo.dead, 1, 3000));
  return s;
}

/* --dry-run changes nothing, with every action due at once; the same
 * check without it does act (so the dry run had something to skip). */
static void test_dry_run_changes_nothing(void **state)
{
  struct wt *t = *state;
  const char *ids[] = {"dry-lost", "dry-sched", "dry-dead", "dry-stalled"};
  wt_register(t, ids[0], CAMPAIGN_PUBLISHED, 60, 2);
  wt_register(t, ids[1], CAMPAIGN_SCHEDULED, 60, 2);
  wt_register(t, ids[2], CAMPAIGN_PUBLISHED, 60, 2);
  publish_dead(t, ids[2], "bad_recipient: test");
  wt_register(t, ids[3], CAMPAIGN_PUBLISHED, 60, 2);
  struct registry_claim cl;
  assert_int_equal(registry_claim(t->reg, ids[3], "gone", 500, &cl), SO_OK);
  /* Past grace for the stalled lease and for "PUBLISHED since". */
  clock_sleep_ms((GRACE_S + 1) * 1000, NULL);

  char *before = snapshot(t, ids, 4);
  char out[16384];
  const char *dry[] = {"check", "--dry-run", NULL};
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, dry, out, sizeof(out)), 1);
  assert_non_null(strstr(out, "dry-run: would republish (trigger_lost)"));
  assert_non_null(strstr(out, "dry-run: would publish"));
  assert_non_null(strstr(out, "dry-run: would mark DEAD"));
  assert_non_null(strstr(out, "dry-run: would republish (takeover)"));
  const char *run[] = {"run", "--dry-run", NULL};
  pid_t p = wt_spawn(t, SENDONCE_WATCHDOG_BIN, run, NULL);
  clock_sleep_ms(3000, NULL);
  assert_int_equal(wt_stop(p), 0);
  char *after = snapshot(t, ids, 4);
  assert_string_equal(before, after);

  const char *chk[] = {"check", NULL};
  assert_int_equal(wt_run(t, SENDONCE_WATCHDOG_BIN, chk, out, sizeof(out)), 1);
  char *acted = snapshot(t, ids, 4);
  assert_string_not_equal(before, acted);
  struct registry_campaign c = wt_get(t, ids[0]);
  assert_int_equal(c.republished, 1);
  registry_campaign_free(&c);
  c = wt_get(t, ids[1]);
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  registry_campaign_free(&c);
  c = wt_get(t, ids[2]);
  assert_int_equal(c.state, CAMPAIGN_DEAD);
  registry_campaign_free(&c);
  c = wt_get(t, ids[3]);
  assert_int_equal(c.republished, 1);
  registry_campaign_free(&c);
  assert_int_equal(wt_ready(t, t->topo.campaigns), 3);
  free(before);
  free(after);
  free(acted);
}

/* A live lease without progress for stuck_after: stuck (an alert, check
 * exits 1), never republished. A paused campaign whose trigger is gone:
 * paused, never republished (resume re-triggers it). */
static void test_stuck_and_paused(void **state)
{
  struct wt *t = *state;
  wt_register(t, "stuck-1", CAMPAIGN_PUBLISHED, 600, 3);
  wt_register(t, "paused-1", CAMPAIGN_PUBLISHED, 600, 3);
  assert_int_equal(registry_pause(t->reg, "paused-1"), SO_OK);
  struct registry_claim cl;
  assert_int_equal(registry_claim(t->reg, "stuck-1", "hung", 60000, &cl),
                   SO_OK);
  t->cfg.watchdog.stuck_after_s = 2; /* read when the watchdog opens */
  struct watchdog *w = wt_watchdog(t, false, false);
  struct watchdog_row row;
  assert_true(wt_pass(w, "stuck-1", &row, NULL));
  assert_int_equal(row.v.kind, VERDICT_IN_PROGRESS);
  clock_sleep_ms((GRACE_S + 1) * 1000, NULL);
  for (int i = 0; i < 3; i++) {
    struct watchdog_report r;
    assert_true(wt_pass(w, "stuck-1", &row, &r));
    assert_int_equal(row.v.kind, VERDICT_STUCK);
    assert_int_equal(row.v.action, VERDICT_ACTION_ALERT);
    assert_true(r.attention);
    watchdog_report_free(&r);
    assert_true(wt_pass(w, "paused-1", &row, NULL));
    assert_int_equal(row.v.kind, VERDICT_PAUSED);
    assert_int_equal(row.v.action, VERDICT_ACTION_NONE);
    clock_sleep_ms(300, NULL);
  }
  watchdog_close(w);
  struct registry_campaign c = wt_get(t, "stuck-1");
  assert_int_equal(c.republished, 0);
  assert_int_equal(c.fence, cl.fence);
  registry_campaign_free(&c);
  c = wt_get(t, "paused-1");
  assert_int_equal(c.republished, 0);
  registry_campaign_free(&c);
  assert_int_equal(wt_ready(t, t->topo.campaigns), 0);
}

struct body {
  char buf[65536];
  size_t len;
};

static size_t body_cb(char *p, size_t size, size_t n, void *arg)
{
  struct body *b = arg;
  size_t k = size * n;
  size_t room = sizeof(b->buf) - 1 - b->len;
  memcpy(b->buf + b->len, p, k < room ? k : room);
  b->len += k < room ? k : room;
  b->buf[b->len] = '\0';
  return k;
}

/* The daemon: SIGTERM ends it cleanly (exit 0); /metrics counts its
 * passes, the republish it carried out and the standing alert. */
static void test_run_metrics_sigterm(void **state)
{
  struct wt *t = *state;
  int port = bt_free_port();
  char extra[128];
  snprintf(extra, sizeof(extra),
           "metrics = { enabled = true; watchdog_port = %d; };", port);
  wt_teardown(t);
  wt_setup(t, backend, GRACE_S, extra);
  wt_register(t, "m-lost", CAMPAIGN_PUBLISHED, 60, 2);
  const char *run[] = {"run", NULL};
  pid_t p = wt_spawn(t, SENDONCE_WATCHDOG_BIN, run, NULL);
  clock_sleep_ms((GRACE_S + 4) * 1000, NULL);
  struct body b = {.len = 0};
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_cleanup(c);
  assert_int_equal(wt_stop(p), 0);
  const char *needle = "\nsendonce_watchdog_passes_total ";
  const char *passes = strstr(b.buf, needle);
  assert_non_null(passes);
  assert_true(strtol(passes + strlen(needle), NULL, 10) >= 3);
  assert_non_null(
      strstr(b.buf, "sendonce_watchdog_actions_total{action=\"republish\"} 1"));
  assert_non_null(
      strstr(b.buf, "sendonce_watchdog_alert{alert=\"no_consumer\"} 1"));
  struct registry_campaign rc = wt_get(t, "m-lost");
  assert_int_equal(rc.republished, 1);
  registry_campaign_free(&rc);
}

/* PUT/POST/DELETE on the management API (test set-up only). */
static long mgmt_call(const char *method, const char *path, const char *json)
{
  char url[1024];
  snprintf(url, sizeof(url), "%s/api/%s",
           testenv_get("SENDONCE_WATCHDOG_MGMT_URL"), path);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  struct curl_slist *h =
      curl_slist_append(NULL, "Content-Type: application/json");
  struct body sink = {.len = 0};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_USERNAME, testenv_get("SENDONCE_BROKER_USER"));
  curl_easy_setopt(c, CURLOPT_PASSWORD,
                   testenv_get("SENDONCE_BROKER_PASSWORD"));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, json ? json : "");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  long code = 0;
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return code;
}

/* Alerts and actions go out as events on the events exchange: a lost
 * trigger republished (campaign.republished), an expired lease
 * (campaign.stalled), a stuck campaign (campaign.stuck, once, not every
 * pass), no consumer and a non-empty DLQ (alert). */
static void test_events(void **state)
{
  struct wt *t = *state;
  char q[256], path[512];
  snprintf(q, sizeof(q), "%s.test-events", t->prefix);
  snprintf(path, sizeof(path), "queues/%s/%s", bt_vhost(), q);
  long code = mgmt_call("PUT", path, "{\"durable\":false}");
  assert_true(code == 201 || code == 204);
  snprintf(path, sizeof(path), "bindings/%s/e/%s/q/%s", bt_vhost(),
           t->topo.events, q);
  code = mgmt_call("POST", path, "{\"routing_key\":\"#\"}");
  assert_true(code == 201 || code == 204);

  wt_register(t, "ev-lost", CAMPAIGN_PUBLISHED, 60, 2);
  wt_register(t, "ev-stalled", CAMPAIGN_PUBLISHED, 60, 2);
  wt_register(t, "ev-stuck", CAMPAIGN_PUBLISHED, 60, 2);
  struct registry_claim cl;
  assert_int_equal(registry_claim(t->reg, "ev-stalled", "gone", 500, &cl),
                   SO_OK);
  assert_int_equal(registry_claim(t->reg, "ev-stuck", "hung", 60000, &cl),
                   SO_OK);
  publish_dead(t, "ev-unknown", "bad_json: test");
  t->cfg.watchdog.stuck_after_s = 2;
  struct watchdog *w = wt_watchdog(t, false, false);
  passes(w, NULL, "ev-lost", (GRACE_S + 3) * 1000, NULL);
  watchdog_close(w);

  int republished = 0, stalled = 0, stuck = 0, no_consumer = 0, dlq = 0;
  for (;;) {
    struct broker_delivery *d = NULL;
    char err[256];
    int rc = broker_get(t->b, q, &d, err, sizeof(err));
    if (rc == SO_ERR_NOTFOUND)
      break;
    assert_int_equal(rc, SO_OK);
    const char *body = d->body;
    republished += d->routing_key &&
                   strcmp(d->routing_key, "campaign.republished") == 0 &&
                   strstr(body, "\"ev-lost\"") != NULL;
    stalled += d->routing_key &&
               strcmp(d->routing_key, "campaign.stalled") == 0 &&
               strstr(body, "\"ev-stalled\"") != NULL;
    stuck += d->routing_key && strcmp(d->routing_key, "campaign.stuck") == 0;
    no_consumer += strstr(body, "\"no_consumer\"") != NULL;
    dlq += strstr(body, "\"dlq_not_empty\"") != NULL;
    assert_int_equal(broker_ack(t->b, d->generation, d->tag), SO_OK);
    broker_delivery_free(d);
  }
  snprintf(path, sizeof(path), "queues/%s/%s", bt_vhost(), q);
  assert_int_equal(mgmt_call("DELETE", path, NULL), 204);
  print_message(
      "events: republished=%d stalled=%d stuck=%d no_consumer=%d "
      "dlq=%d\n",
      republished, stalled, stuck, no_consumer, dlq);
  assert_int_equal(republished, 1);
  assert_int_equal(stalled, 1);
  assert_int_equal(stuck, 1);       /* on the change, not on every pass */
  assert_int_equal(no_consumer, 1); /* standing alert: repeated after 5 min */
  assert_int_equal(dlq, 1);
}

/* The management client: vhost from a URI like the broker reads it, a
 * queue's facts, a missing queue, and refused credentials with a clear
 * message that does not carry the password. */
static void test_mgmt_client(void **state)
{
  struct wt *t = *state;
  char vhost[64];
  assert_int_equal(
      mgmt_vhost_from_uri("amqp://h:5672/sendonce", vhost, sizeof(vhost)),
      SO_OK);
  assert_string_equal(vhost, "sendonce");
  assert_int_equal(mgmt_vhost_from_uri("amqps://h/%2f", vhost, sizeof(vhost)),
                   SO_OK);
  assert_string_equal(vhost, "/");
  assert_int_equal(mgmt_vhost_from_uri("amqp://h", vhost, sizeof(vhost)),
                   SO_OK);
  assert_string_equal(vhost, "/");
  assert_int_equal(mgmt_vhost_from_uri("http://h/x", vhost, sizeof(vhost)),
                   SO_ERR_INVALID);
  assert_int_equal(mgmt_vhost_from_uri("amqp://h/sendonce", vhost, 4),
                   SO_ERR_TOO_LARGE);

  struct mgmt_options mo = {
      .url = testenv_get("SENDONCE_WATCHDOG_MGMT_URL"),
      .user = testenv_get("SENDONCE_BROKER_USER"),
      .password = testenv_get("SENDONCE_BROKER_PASSWORD"),
      .vhost = bt_vhost(),
      .timeout_ms = 5000,
  };
  struct mgmt *m = NULL;
  char err[512] = "";
  assert_int_equal(mgmt_open(&mo, &m, err, sizeof(err)), SO_OK);
  struct mgmt_queue q;
  assert_int_equal(mgmt_queue_get(m, t->topo.campaigns, &q, err, sizeof(err)),
                   SO_OK);
  assert_int_equal(q.consumers, 0);
  assert_int_equal(q.unacked, 0);
  /* A queue declared a moment ago has no statistics yet: state "". */
  assert_true(q.state[0] == '\0' || strcmp(q.state, "running") == 0);
  assert_int_equal(
      mgmt_queue_get(m, "no-such-queue-here", &q, err, sizeof(err)),
      SO_ERR_NOTFOUND);
  mgmt_close(m);

  mo.password = "definitely-not-the-password";
  assert_int_equal(mgmt_open(&mo, &m, err, sizeof(err)), SO_OK);
  assert_int_equal(mgmt_queue_get(m, t->topo.campaigns, &q, err, sizeof(err)),
                   SO_ERR_REFUSED);
  assert_non_null(strstr(err, "management API refused the credentials"));
  assert_non_null(strstr(err, "management (or monitoring) tag"));
  assert_null(strstr(err, "definitely-not-the-password"));
  mgmt_close(m);

  mo.url = "ftp://127.0.0.1/";
  assert_int_equal(mgmt_open(&mo, &m, err, sizeof(err)), SO_ERR_INVALID);
  mo.url = "http://127.0.0.1:1";
  mo.password = "x";
  assert_int_equal(mgmt_open(&mo, &m, err, sizeof(err)), SO_OK);
  assert_int_equal(mgmt_queue_get(m, "q", &q, err, sizeof(err)),
                   SO_ERR_UNAVAILABLE);
  mgmt_close(m);
}

int main(int argc, char **argv)
{
  if (argc != 2) {
    fprintf(stderr, "usage: %s sqlite|pg\n", argv[0]);
    return 2;
  }
  backend = testdb_backend_parse(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_trigger_lost_republished_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_backlog_queued_never_republished,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_live_lease_in_progress, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stalled_one_takeover, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dead_from_dlq_and_replay, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_publisher_missing_published_once,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_no_consumer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dry_run_changes_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stuck_and_paused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mgmt_client, setup, teardown),
      cmocka_unit_test_setup_teardown(test_events, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_metrics_sigterm, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
