/* test_verdict.c - every row of DESIGN.md's watchdog table, and its edges,
 * against the pure decision function. Table-driven: one line per case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "verdict.h"

#define NOW 1800000000000LL /* registry clock, ms */
#define S 1000LL
#define NONE INT64_MIN /* "field not set" (0 in the row) */

static const struct verdict_config cfg = {
    .grace_ms = 5 * S,
    .stuck_after_ms = 20 * S,
    .backoff_ms = 10 * S,
    .max_republishes = 3,
};

struct vcase {
  const char *name;
  enum campaign_state state;
  int64_t lease_rel;    /* lease_until - now; NONE = no lease */
  int64_t progress_rel; /* progress_at - now; NONE = never */
  int64_t updated_rel;  /* updated_at - now */
  int republished;
  int64_t republished_rel; /* republished_at - now; NONE = never */
  bool paused;
  int64_t sent, total;
  /* broker */
  bool known;
  int64_t ready, unacked, consumers, idle_ms;
  bool in_dlq;
  /* expected */
  enum verdict_kind kind;
  enum verdict_action action;
  bool attention;
};

/* Shorthands for the broker facts. */
#define EMPTY_IDLE(ms) true, 0, 0, 1, (ms), false
#define BACKLOG(r, u) true, (r), (u), 1, 0, false
#define UNKNOWN false, 0, 0, 0, -1, false
#define IN_DLQ true, 0, 0, 1, 0, true

static const struct vcase cases[] = {
    /* PROCESSING, lease live -> in progress, never republish: whatever
     * the queues say (the incident: a long campaign looks "overdue"). */
    {"live lease", CAMPAIGN_PROCESSING, 3 * S, -1 * S, -1 * S, 0, NONE, false,
     50, 100, EMPTY_IDLE(3600 * S), VERDICT_IN_PROGRESS, VERDICT_ACTION_NONE,
     false},
    {"live lease, 1 ms left", CAMPAIGN_PROCESSING, 1, -1 * S, -1 * S, 0, NONE,
     false, 50, 100, EMPTY_IDLE(3600 * S), VERDICT_IN_PROGRESS,
     VERDICT_ACTION_NONE, false},
    {"live lease, broker unknown", CAMPAIGN_PROCESSING, 3 * S, -1 * S, -1 * S,
     0, NONE, false, 0, -1, UNKNOWN, VERDICT_IN_PROGRESS, VERDICT_ACTION_NONE,
     false},
    {"live lease, progress exactly stuck_after ago", CAMPAIGN_PROCESSING, 3 * S,
     -20 * S, -1 * S, 0, NONE, false, 1, 9, BACKLOG(0, 0), VERDICT_IN_PROGRESS,
     VERDICT_ACTION_NONE, false},
    /* ... no progress for stuck_after -> stuck: alert, never republish. */
    {"stuck", CAMPAIGN_PROCESSING, 3 * S, -20 * S - 1, -1 * S, 0, NONE, false,
     1, 9, EMPTY_IDLE(3600 * S), VERDICT_STUCK, VERDICT_ACTION_ALERT, true},
    {"stuck, broker unknown", CAMPAIGN_PROCESSING, 3 * S, -600 * S, -1 * S, 0,
     NONE, false, 1, 9, UNKNOWN, VERDICT_STUCK, VERDICT_ACTION_ALERT, true},
    /* A live lease wins over a stale copy of the trigger in the DLQ. */
    {"live lease, copy in DLQ", CAMPAIGN_PROCESSING, 3 * S, -1 * S, -1 * S, 0,
     NONE, false, 5, 9, IN_DLQ, VERDICT_IN_PROGRESS, VERDICT_ACTION_NONE, true},
    /* PUBLISHED with a backlog or busy consumers -> queued. */
    {"queued behind ready", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S, 0, NONE,
     false, 0, -1, BACKLOG(7, 0), VERDICT_QUEUED, VERDICT_ACTION_NONE, false},
    {"queued, consumers busy (unacked)", CAMPAIGN_PUBLISHED, NONE, NONE,
     -3600 * S, 0, NONE, false, 0, -1, BACKLOG(0, 2), VERDICT_QUEUED,
     VERDICT_ACTION_NONE, false},
    {"queued, broker unknown", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S, 0,
     NONE, false, 0, -1, UNKNOWN, VERDICT_QUEUED, VERDICT_ACTION_NONE, false},
    /* PUBLISHED, queues empty and idle for more than grace -> trigger
     * lost: republish; exactly grace is not more than grace. */
    {"empty, idle exactly grace", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S, 0,
     NONE, false, 0, -1, EMPTY_IDLE(5 * S), VERDICT_QUEUED, VERDICT_ACTION_NONE,
     false},
    {"empty, idle unknown", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S, 0, NONE,
     false, 0, -1, EMPTY_IDLE(-1), VERDICT_QUEUED, VERDICT_ACTION_NONE, false},
    {"trigger lost", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S, 0, NONE, false,
     0, -1, EMPTY_IDLE(5 * S + 1), VERDICT_TRIGGER_LOST,
     VERDICT_ACTION_REPUBLISH, true},
    {"trigger lost, inside backoff", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S,
     1, -10 * S + 1, false, 0, -1, EMPTY_IDLE(60 * S), VERDICT_TRIGGER_LOST,
     VERDICT_ACTION_NONE, true},
    {"trigger lost, backoff just over", CAMPAIGN_PUBLISHED, NONE, NONE,
     -3600 * S, 1, -10 * S, false, 0, -1, EMPTY_IDLE(60 * S),
     VERDICT_TRIGGER_LOST, VERDICT_ACTION_REPUBLISH, true},
    {"trigger lost, cap reached", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S, 3,
     -3000 * S, false, 0, -1, EMPTY_IDLE(60 * S), VERDICT_TRIGGER_LOST,
     VERDICT_ACTION_ALERT, true},
    {"trigger lost, one below cap", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S,
     2, -3000 * S, false, 0, -1, EMPTY_IDLE(60 * S), VERDICT_TRIGGER_LOST,
     VERDICT_ACTION_REPUBLISH, true},
    /* PROCESSING, lease expired for more than grace -> stalled. */
    {"lease expired within grace", CAMPAIGN_PROCESSING, -5 * S, -30 * S,
     -30 * S, 0, NONE, false, 5, 9, EMPTY_IDLE(60 * S), VERDICT_IN_PROGRESS,
     VERDICT_ACTION_NONE, false},
    {"lease expired just now", CAMPAIGN_PROCESSING, 0, -1 * S, -1 * S, 0, NONE,
     false, 5, 9, EMPTY_IDLE(60 * S), VERDICT_IN_PROGRESS, VERDICT_ACTION_NONE,
     false},
    {"stalled", CAMPAIGN_PROCESSING, -5 * S - 1, -30 * S, -30 * S, 0, NONE,
     false, 5, 9, EMPTY_IDLE(0), VERDICT_STALLED, VERDICT_ACTION_TAKEOVER,
     true},
    {"stalled, even with a backlog", CAMPAIGN_PROCESSING, -60 * S, -90 * S,
     -90 * S, 0, NONE, false, 5, 9, BACKLOG(100, 3), VERDICT_STALLED,
     VERDICT_ACTION_TAKEOVER, true},
    {"stalled, inside backoff", CAMPAIGN_PROCESSING, -60 * S, -90 * S, -90 * S,
     1, -1 * S, false, 5, 9, EMPTY_IDLE(0), VERDICT_STALLED,
     VERDICT_ACTION_NONE, true},
    {"stalled, cap reached", CAMPAIGN_PROCESSING, -60 * S, -90 * S, -90 * S, 3,
     -600 * S, false, 5, 9, EMPTY_IDLE(0), VERDICT_STALLED,
     VERDICT_ACTION_ALERT, true},
    {"processing without a lease", CAMPAIGN_PROCESSING, NONE, -90 * S, -60 * S,
     0, NONE, false, 5, 9, EMPTY_IDLE(0), VERDICT_STALLED,
     VERDICT_ACTION_TAKEOVER, true},
    /* Trigger in the DLQ, or DEAD -> dead; never republish. */
    {"published, trigger in DLQ", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S, 0,
     NONE, false, 0, -1, IN_DLQ, VERDICT_DEAD, VERDICT_ACTION_MARK_DEAD, true},
    {"expired lease, trigger in DLQ", CAMPAIGN_PROCESSING, -60 * S, -90 * S,
     -90 * S, 0, NONE, false, 5, 9, IN_DLQ, VERDICT_DEAD,
     VERDICT_ACTION_MARK_DEAD, true},
    {"scheduled, trigger in DLQ", CAMPAIGN_SCHEDULED, NONE, NONE, -3600 * S, 0,
     NONE, false, 0, -1, IN_DLQ, VERDICT_DEAD, VERDICT_ACTION_MARK_DEAD, true},
    {"dead", CAMPAIGN_DEAD, NONE, NONE, -3600 * S, 0, NONE, false, 0, -1,
     EMPTY_IDLE(3600 * S), VERDICT_DEAD, VERDICT_ACTION_NONE, true},
    {"dead, in DLQ", CAMPAIGN_DEAD, NONE, NONE, -3600 * S, 0, NONE, false, 0,
     -1, IN_DLQ, VERDICT_DEAD, VERDICT_ACTION_NONE, true},
    /* SCHEDULED, past due -> publisher missing: publish it. */
    {"publisher missing", CAMPAIGN_SCHEDULED, NONE, NONE, -3600 * S, 0, NONE,
     false, 0, -1, EMPTY_IDLE(0), VERDICT_PUBLISHER_MISSING,
     VERDICT_ACTION_PUBLISH, true},
    {"publisher missing, broker unknown", CAMPAIGN_SCHEDULED, NONE, NONE,
     -3600 * S, 0, NONE, false, 0, -1, UNKNOWN, VERDICT_PUBLISHER_MISSING,
     VERDICT_ACTION_PUBLISH, true},
    /* Paused by an operator: never republished (resume re-triggers). */
    {"paused, published", CAMPAIGN_PUBLISHED, NONE, NONE, -3600 * S, 0, NONE,
     true, 0, -1, EMPTY_IDLE(3600 * S), VERDICT_PAUSED, VERDICT_ACTION_NONE,
     false},
    {"paused, scheduled", CAMPAIGN_SCHEDULED, NONE, NONE, -3600 * S, 0, NONE,
     true, 0, -1, EMPTY_IDLE(0), VERDICT_PAUSED, VERDICT_ACTION_NONE, false},
    {"paused, lease expired", CAMPAIGN_PROCESSING, -60 * S, -90 * S, -90 * S, 0,
     NONE, true, 5, 9, EMPTY_IDLE(0), VERDICT_PAUSED, VERDICT_ACTION_NONE,
     false},
    {"paused, live lease", CAMPAIGN_PROCESSING, 3 * S, -1 * S, -1 * S, 0, NONE,
     true, 5, 9, EMPTY_IDLE(0), VERDICT_IN_PROGRESS, VERDICT_ACTION_NONE,
     false},
    {"done", CAMPAIGN_DONE, NONE, -1 * S, -1 * S, 0, NONE, false, 9, 9,
     EMPTY_IDLE(0), VERDICT_OK, VERDICT_ACTION_NONE, false},
};

static struct registry_campaign row_of(const struct vcase *t)
{
  struct registry_campaign c;
  memset(&c, 0, sizeof(c));
  c.campaign_id = (char *)"c-1";
  c.owner = (char *)"host:1:w1";
  c.state = t->state;
  c.scheduled_at_ms = NOW - 3600 * S;
  c.fence = t->state == CAMPAIGN_PROCESSING ? 4 : 0;
  c.lease_until_ms = t->lease_rel == NONE ? 0 : NOW + t->lease_rel;
  c.progress_at_ms = t->progress_rel == NONE ? 0 : NOW + t->progress_rel;
  c.updated_at_ms = NOW + t->updated_rel;
  c.republished = t->republished;
  c.republished_at_ms =
      t->republished_rel == NONE ? 0 : NOW + t->republished_rel;
  c.paused = t->paused;
  c.sent = t->sent;
  c.total = t->total;
  c.last_error = t->state == CAMPAIGN_DEAD ? (char *)"provider_down" : NULL;
  c.registry_now_ms = NOW;
  return c;
}

static void test_table(void **state)
{
  (void)state;
  int failures = 0;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const struct vcase *t = &cases[i];
    struct registry_campaign c = row_of(t);
    struct verdict_broker q = {
        .known = t->known,
        .ready = t->ready,
        .unacked = t->unacked,
        .consumers = t->consumers,
        .queue_idle_ms = t->idle_ms,
        .in_dlq = t->in_dlq,
        .dlq_reason = t->in_dlq ? "bad_json: x" : NULL,
    };
    struct verdict v;
    verdict_decide(&c, &q, &cfg, NULL, &v);
    if (v.kind != t->kind || v.action != t->action ||
        v.attention != t->attention || v.reason[0] == '\0') {
      print_error(
          "case '%s': got %s/%s attention=%d, want %s/%s "
          "attention=%d (reason: %s)\n",
          t->name, verdict_kind_name(v.kind), verdict_action_name(v.action),
          v.attention, verdict_kind_name(t->kind),
          verdict_action_name(t->action), t->attention, v.reason);
      failures++;
    }
  }
  assert_int_equal(failures, 0);
}

/* The one guarantee the project exists for, stated on its own: no input
 * whatsoever makes a PROCESSING campaign with a live lease republished. */
static void test_live_lease_never_republished(void **state)
{
  (void)state;
  const int64_t idles[] = {-1, 0, 5 * S + 1, 86400 * S};
  const int64_t progress[] = {0, -1, -20 * S - 1, -86400 * S};
  for (size_t a = 0; a < 4; a++)
    for (size_t b = 0; b < 4; b++)
      for (int dlq = 0; dlq < 2; dlq++)
        for (int known = 0; known < 2; known++) {
          struct vcase t = cases[0];
          t.progress_rel = progress[b] == 0 ? NONE : progress[b];
          struct registry_campaign c = row_of(&t);
          struct verdict_broker q = {.known = known,
                                     .queue_idle_ms = idles[a],
                                     .in_dlq = dlq,
                                     .dlq_reason = "x"};
          struct verdict v;
          verdict_decide(&c, &q, &cfg, NULL, &v);
          assert_true(v.kind == VERDICT_IN_PROGRESS || v.kind == VERDICT_STUCK);
          assert_true(v.action == VERDICT_ACTION_NONE ||
                      v.action == VERDICT_ACTION_ALERT);
        }
}

static void test_rate_and_eta(void **state)
{
  (void)state;
  struct registry_campaign c = row_of(&cases[0]);
  c.sent = 300;
  c.rejected = 0;
  c.total = 1000;
  struct verdict_broker q = {.known = true, .consumers = 1};
  struct verdict_prev prev = {
      .fence = c.fence, .done = 100, .at_ms = NOW - 10 * S};
  struct verdict v;
  verdict_decide(&c, &q, &cfg, &prev, &v);
  assert_int_equal(v.kind, VERDICT_IN_PROGRESS);
  assert_true(v.rate_per_s > 19.99 && v.rate_per_s < 20.01);
  assert_int_equal(v.eta_ms, 35 * S); /* 700 left at 20/s */
  assert_non_null(strstr(v.reason, "300/1000"));
  assert_int_equal(v.lease_age_ms, -3 * S);

  /* Another claim (fence) since: the rate restarts, unknown. */
  prev.fence = c.fence - 1;
  verdict_decide(&c, &q, &cfg, &prev, &v);
  assert_true(v.rate_per_s == 0);
  assert_int_equal(v.eta_ms, -1);
}

static void test_names(void **state)
{
  (void)state;
  assert_string_equal(verdict_kind_name(VERDICT_TRIGGER_LOST), "trigger_lost");
  assert_string_equal(verdict_kind_label(VERDICT_IN_PROGRESS), "in progress");
  assert_string_equal(verdict_kind_label(VERDICT_PUBLISHER_MISSING),
                      "publisher missing");
  assert_string_equal(verdict_action_name(VERDICT_ACTION_TAKEOVER), "takeover");
  assert_string_equal(verdict_action_name(VERDICT_ACTION_MARK_DEAD),
                      "mark_dead");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_live_lease_never_republished),
      cmocka_unit_test(test_rate_and_eta),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
