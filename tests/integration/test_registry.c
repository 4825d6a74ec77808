/* test_registry.c - the one registry suite, run once per backend:
 *   test_registry sqlite    (ctest: registry_sqlite)
 *   test_registry pg        (ctest: registry_pg)
 * Single-process cases of a campaign's life live here; racing processes,
 * kill -9 and the multi-process publish races in test_registry_procs.c;
 * schema, lock and clock-skew cases in test_registry_env.c; delivery
 * marks and the merged steps in test_registry_marks.c (an executable of
 * its own: registry_marks_sqlite, registry_marks_pg). The helpers all of
 * them share are in registry_suite.c.
 *
 * The binary also has a child mode, used by the clock-skew case to run a
 * registry call under faketime:
 *   test_registry --child <sqlite|pg> <path|conninfo> <verb> <args...> */
#include "registry_suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

/* ---- cases ----------------------------------------------------------------
 */

static void test_register_and_get(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("reg");
  int64_t due = clock_now_ms() + 60000;
  suite_register(r, id, CAMPAIGN_SCHEDULED, due);

  struct registry_campaign c;
  suite_get(r, id, &c);
  assert_string_equal(c.campaign_id, id);
  assert_int_equal(c.state, CAMPAIGN_SCHEDULED);
  assert_int_equal(c.scheduled_at_ms, due);
  assert_string_equal(c.channel, "email");
  assert_string_equal(c.payload, "{\"schema\":1}");
  assert_null(c.owner);
  assert_int_equal(c.fence, 0);
  assert_int_equal(c.lease_until_ms, 0);
  assert_int_equal(c.total, -1);
  assert_int_equal(c.sent + c.rejected + c.attempts + c.republished, 0);
  assert_false(c.paused);
  assert_null(c.last_error);
  /* One host: the registry's clock and ours agree to well within 5 s. */
  assert_true(llabs(c.registry_now_ms - clock_now_ms()) < 5000);
  assert_true(c.updated_at_ms <= c.registry_now_ms);
  int64_t updated = c.updated_at_ms;
  registry_campaign_free(&c);

  /* A second register changes nothing, whatever it carries. */
  struct registry_new_campaign again = {.campaign_id = id,
                                        .scheduled_at_ms = 1,
                                        .channel = "sms",
                                        .payload = "{}"};
  bool created = true;
  REG_OK(r, registry_register(r, &again, CAMPAIGN_PUBLISHED, &created));
  assert_false(created);
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_SCHEDULED);
  assert_int_equal(c.scheduled_at_ms, due);
  assert_string_equal(c.channel, "email");
  assert_string_equal(c.payload, "{\"schema\":1}");
  assert_int_equal(c.updated_at_ms, updated);
  registry_campaign_free(&c);

  char *id2 = suite_id("reg-pub");
  suite_register(r, id2, CAMPAIGN_PUBLISHED, due);
  suite_get(r, id2, &c);
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  registry_campaign_free(&c);

  /* Arguments both backends rely on registry.c to check. */
  struct registry_new_campaign bad = again;
  bad.campaign_id = "has space";
  REG_RC(r, SO_ERR_INVALID,
         registry_register(r, &bad, CAMPAIGN_SCHEDULED, &created));
  bad.campaign_id = "";
  REG_RC(r, SO_ERR_INVALID,
         registry_register(r, &bad, CAMPAIGN_SCHEDULED, &created));
  REG_RC(r, SO_ERR_INVALID,
         registry_register(r, &again, CAMPAIGN_PROCESSING, &created));
  struct registry_claim cl;
  REG_RC(r, SO_ERR_INVALID, registry_claim(r, id, "a", 0, &cl));
  REG_RC(r, SO_ERR_INVALID, registry_claim(r, id, "", 1000, &cl));
  REG_RC(r, SO_ERR_INVALID, registry_renew(r, id, 0, 1000));
  REG_RC(r, SO_ERR_NOTFOUND, registry_get(r, "no-such-campaign", &c));
  REG_RC(r, SO_ERR_NOTFOUND, registry_claim(r, "no-such", "a", 1000, &cl));
  free(id);
  free(id2);
  registry_close(r);
}

static void test_publish_steps(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  int64_t now = suite_now(r);
  char *id = suite_id("pub");
  char *later = suite_id("pub-later");
  suite_register(r, id, CAMPAIGN_SCHEDULED, now - 1000);
  suite_register(r, later, CAMPAIGN_SCHEDULED, now + 3600000);

  struct registry_campaign *list = NULL;
  size_t n = 0;
  bool seen_id = false, seen_later = false;
  REG_OK(r, registry_list_due(r, 0, 100000, &list, &n));
  for (size_t i = 0; i < n; i++) {
    seen_id |= strcmp(list[i].campaign_id, id) == 0;
    seen_later |= strcmp(list[i].campaign_id, later) == 0;
    assert_int_equal(list[i].state, CAMPAIGN_SCHEDULED);
  }
  registry_campaigns_free(list, n);
  assert_true(seen_id);
  assert_false(seen_later);
  REG_OK(r, registry_list_due(r, 7200000, 100000, &list, &n));
  seen_later = false;
  for (size_t i = 0; i < n; i++)
    seen_later |= strcmp(list[i].campaign_id, later) == 0;
  registry_campaigns_free(list, n);
  assert_true(seen_later);

  bool won = false;
  REG_OK(r, registry_begin_publish(r, id, "pub-a", 1000, &won));
  assert_true(won);
  REG_OK(r, registry_begin_publish(r, id, "pub-b", 1000, &won));
  assert_false(won);
  REG_OK(r, registry_begin_publish(r, id, "pub-a", 1000, &won));
  assert_true(won); /* its own publish lease, renewed */
  /* (Leases here are long enough for a loaded machine: the case must not
   * depend on the next call coming within a few ms.) */
  /* The publish lease runs out on the registry's clock: another wins. */
  int64_t t0 = suite_now(r);
  while (suite_now(r) < t0 + 1020)
    clock_sleep_ms(10, NULL);
  REG_OK(r, registry_begin_publish(r, id, "pub-b", 60000, &won));
  assert_true(won);

  REG_OK(r, registry_mark_published(r, id, &won));
  assert_true(won);
  REG_OK(r, registry_mark_published(r, id, &won));
  assert_false(won);
  REG_OK(r, registry_begin_publish(r, id, "pub-c", 300, &won));
  assert_false(won);
  struct registry_campaign c;
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  registry_campaign_free(&c);
  REG_OK(r, registry_list_due(r, 0, 100000, &list, &n));
  for (size_t i = 0; i < n; i++)
    assert_string_not_equal(list[i].campaign_id, id);
  registry_campaigns_free(list, n);

  /* A paused SCHEDULED campaign is neither due nor publishable. */
  REG_OK(r, registry_pause(r, later));
  REG_OK(r, registry_list_due(r, 7200000, 100000, &list, &n));
  for (size_t i = 0; i < n; i++)
    assert_string_not_equal(list[i].campaign_id, later);
  registry_campaigns_free(list, n);
  REG_OK(r, registry_begin_publish(r, later, "pub-a", 300, &won));
  assert_false(won);
  REG_OK(r, registry_resume(r, later));
  REG_OK(r, registry_begin_publish(r, later, "pub-a", 300, &won));
  assert_true(won);

  REG_RC(r, SO_ERR_NOTFOUND, registry_mark_published(r, "absent-1", &won));
  REG_RC(r, SO_ERR_NOTFOUND,
         registry_begin_publish(r, "absent-1", "p", 100, &won));
  free(id);
  free(later);
  registry_close(r);
}

static void test_claim_mark_complete(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("life");
  suite_register(r, id, CAMPAIGN_PUBLISHED, suite_now(r) - 1000);

  struct registry_claim cl = suite_claim(r, id, "worker-a", 10000);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 1);
  assert_int_equal(cl.state, CAMPAIGN_PROCESSING);
  assert_int_equal(cl.lease_until_ms - cl.registry_now_ms, 10000);
  struct registry_campaign c;
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_PROCESSING);
  assert_string_equal(c.owner, "worker-a");
  assert_int_equal(c.fence, 1);
  assert_int_equal(c.lease_until_ms, cl.lease_until_ms);
  assert_int_equal(c.progress_at_ms, cl.registry_now_ms);
  registry_campaign_free(&c);

  struct registry_claim other = suite_claim(r, id, "worker-b", 10000);
  assert_int_equal(other.kind, REGISTRY_CLAIM_HELD);
  assert_int_equal(other.fence, 1);
  assert_int_equal(other.lease_until_ms, cl.lease_until_ms);
  other = suite_claim(r, id, "worker-a", 10000); /* own duplicate trigger */
  assert_int_equal(other.kind, REGISTRY_CLAIM_HELD);
  assert_int_equal(other.fence, 1);

  REG_OK(r, registry_renew(r, id, 1, 20000));
  suite_get(r, id, &c);
  assert_true(c.lease_until_ms >= c.registry_now_ms + 19000);
  assert_true(c.lease_until_ms > cl.lease_until_ms);
  registry_campaign_free(&c);

  REG_OK(r, registry_set_total(r, id, 1, 3));
  const char *ids[] = {"r1", "r2", "r3"};
  bool need[3] = {false, false, false};
  REG_OK(r, registry_pending(r, id, 1, ids, 3, need));
  assert_true(need[0] && need[1] && need[2]);

  struct registry_mark batch[] = {
      {.recipient_id = "r1", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "r2", .state = DELIVERY_SENT},
      {.recipient_id = "r3", .state = DELIVERY_REJECTED, .error = "bad"},
  };
  REG_OK(r, registry_mark(r, id, 1, batch, 3));
  suite_get(r, id, &c);
  assert_int_equal(c.total, 3);
  assert_int_equal(c.sent, 1);
  assert_int_equal(c.rejected, 1);
  assert_true(c.progress_at_ms >= cl.registry_now_ms);
  registry_campaign_free(&c);
  REG_OK(r, registry_pending(r, id, 1, ids, 3, need));
  assert_true(need[0]);
  assert_false(need[1]);
  assert_false(need[2]);

  /* Repeated and backward marks change nothing and count nothing. */
  suite_mark(r, id, 1, "r2", DELIVERY_SENT);
  suite_mark(r, id, 1, "r3", DELIVERY_SENT);
  suite_mark(r, id, 1, "r2", DELIVERY_INFLIGHT);
  suite_mark(r, id, 1, "r1", DELIVERY_INFLIGHT); /* attempts 2 */
  suite_get(r, id, &c);
  assert_int_equal(c.sent, 1);
  assert_int_equal(c.rejected, 1);
  registry_campaign_free(&c);
  char *rows = suite_deliveries(id);
  assert_non_null(strstr(rows, "r1|INFLIGHT|2|"));
  assert_non_null(strstr(rows, "r2|SENT|1|"));
  assert_non_null(strstr(rows, "r3|REJECTED|1|bad|"));
  free(rows);
  suite_mark(r, id, 1, "r1", DELIVERY_SENT);
  suite_get(r, id, &c);
  assert_int_equal(c.sent, 2);
  registry_campaign_free(&c);

  enum registry_control ctl = REGISTRY_CONTROL_CANCEL;
  REG_OK(r, registry_control(r, id, 1, &ctl));
  assert_int_equal(ctl, REGISTRY_CONTROL_RUN);
  REG_OK(r, registry_pause(r, id));
  REG_OK(r, registry_control(r, id, 1, &ctl));
  assert_int_equal(ctl, REGISTRY_CONTROL_PAUSE);
  REG_OK(r, registry_resume(r, id));
  REG_OK(r, registry_control(r, id, 1, &ctl));
  assert_int_equal(ctl, REGISTRY_CONTROL_RUN);

  REG_OK(r, registry_complete(r, id, 1));
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_DONE);
  assert_null(c.owner);
  assert_int_equal(c.lease_until_ms, 0);
  assert_int_equal(c.fence, 1);
  registry_campaign_free(&c);
  cl = suite_claim(r, id, "worker-b", 10000);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_DONE);
  assert_int_equal(cl.fence, 1);
  assert_int_equal(cl.state, CAMPAIGN_DONE);
  REG_RC(r, SO_ERR_STALE_FENCE, registry_renew(r, id, 1, 1000));
  REG_RC(r, SO_ERR_STALE_FENCE, registry_complete(r, id, 1));
  REG_RC(r, SO_ERR_CONFLICT, registry_pause(r, id));
  REG_RC(r, SO_ERR_CONFLICT, registry_cancel(r, id));
  REG_RC(r, SO_ERR_CONFLICT, registry_mark_dead(r, id, "x"));
  REG_RC(r, SO_ERR_CONFLICT, registry_replay(r, id));
  free(id);
  registry_close(r);
}

static void test_release_fail_dead(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("rel");
  suite_register(r, id, CAMPAIGN_PUBLISHED, suite_now(r));
  struct registry_campaign c;

  assert_int_equal(suite_claim(r, id, "w", 10000).fence, 1);
  suite_mark(r, id, 1, "keep", DELIVERY_SENT);
  int attempts = -1;
  REG_OK(r, registry_release(r, id, 1, false, NULL, &attempts));
  assert_int_equal(attempts, 0);
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  assert_null(c.owner);
  assert_int_equal(c.lease_until_ms, 0);
  assert_int_equal(c.fence, 1);
  assert_int_equal(c.sent, 1); /* progress kept */
  registry_campaign_free(&c);

  struct registry_claim cl = suite_claim(r, id, "w2", 10000);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 2);
  REG_OK(r, registry_release(r, id, 2, true, "provider down", &attempts));
  assert_int_equal(attempts, 1);
  assert_int_equal(suite_claim(r, id, "w3", 10000).fence, 3);
  REG_OK(r, registry_release(r, id, 3, true, "still down", &attempts));
  assert_int_equal(attempts, 2);
  suite_get(r, id, &c);
  assert_int_equal(c.attempts, 2);
  assert_string_equal(c.last_error, "still down");
  registry_campaign_free(&c);

  assert_int_equal(suite_claim(r, id, "w4", 10000).fence, 4);
  REG_OK(r, registry_fail(r, id, 4, "boom"));
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_DEAD);
  assert_string_equal(c.last_error, "boom");
  assert_null(c.owner);
  registry_campaign_free(&c);
  assert_int_equal(suite_claim(r, id, "w5", 10000).kind, REGISTRY_CLAIM_DONE);
  enum registry_control ctl = REGISTRY_CONTROL_RUN;
  REG_OK(r, registry_control(r, id, 4, &ctl));
  assert_int_equal(ctl, REGISTRY_CONTROL_CANCEL);

  REG_OK(r, registry_replay(r, id));
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
  assert_int_equal(c.attempts, 0);
  assert_string_equal(c.last_error, "boom");
  registry_campaign_free(&c);
  REG_RC(r, SO_ERR_CONFLICT, registry_replay(r, id));
  assert_int_equal(suite_claim(r, id, "w5", 10000).fence, 5);

  /* An unfenced mark_dead (DLQ, expiry) stops the holder. */
  REG_OK(r, registry_mark_dead(r, id, "dlq"));
  REG_OK(r, registry_mark_dead(r, id, "again"));
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_DEAD);
  assert_string_equal(c.last_error, "dlq");
  assert_int_equal(c.fence, 5);
  assert_null(c.owner);
  registry_campaign_free(&c);
  REG_RC(r, SO_ERR_STALE_FENCE, registry_renew(r, id, 5, 1000));
  REG_RC(r, SO_ERR_NOTFOUND, registry_mark_dead(r, "absent-2", "x"));

  /* Cancel reaches the worker through control, as CANCEL. */
  char *id2 = suite_id("cancel");
  suite_register(r, id2, CAMPAIGN_PUBLISHED, suite_now(r));
  assert_int_equal(suite_claim(r, id2, "w", 10000).fence, 1);
  REG_OK(r, registry_cancel(r, id2));
  REG_OK(r, registry_control(r, id2, 1, &ctl));
  assert_int_equal(ctl, REGISTRY_CONTROL_CANCEL);
  REG_RC(r, SO_ERR_STALE_FENCE, registry_control(r, id2, 2, &ctl));
  suite_get(r, id2, &c);
  assert_int_equal(c.state, CAMPAIGN_DEAD);
  assert_string_equal(c.last_error, "cancelled");
  registry_campaign_free(&c);
  REG_RC(r, SO_ERR_CONFLICT, registry_cancel(r, id2));
  REG_RC(r, SO_ERR_CONFLICT, registry_pause(r, id2));
  REG_RC(r, SO_ERR_STALE_FENCE,
         registry_mark(r, id2, 1,
                       &(struct registry_mark){.recipient_id = "x",
                                               .state = DELIVERY_SENT},
                       1));

  /* A paused campaign is not claimed until resumed. */
  char *id3 = suite_id("paused");
  suite_register(r, id3, CAMPAIGN_PUBLISHED, suite_now(r));
  REG_OK(r, registry_pause(r, id3));
  cl = suite_claim(r, id3, "w", 10000);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_PAUSED);
  assert_int_equal(cl.fence, 0);
  REG_OK(r, registry_resume(r, id3));
  cl = suite_claim(r, id3, "w", 10000);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 1);
  free(id);
  free(id2);
  free(id3);
  registry_close(r);
}

/* Lists take far-past due times so this run's rows sort predictably among
 * those of the other cases. */
static void test_lists(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  int64_t now = suite_now(r);
  char *old_sched = suite_id("list-a");
  char *old_pub = suite_id("list-b");
  char *done = suite_id("list-c");
  char *future = suite_id("list-d");
  suite_register(r, old_sched, CAMPAIGN_SCHEDULED, 1000);
  suite_register(r, old_pub, CAMPAIGN_PUBLISHED, 2000);
  suite_register(r, done, CAMPAIGN_PUBLISHED, 3000);
  suite_register(r, future, CAMPAIGN_SCHEDULED, now + 3600000);
  assert_int_equal(suite_claim(r, done, "w", 10000).fence, 1);
  REG_OK(r, registry_complete(r, done, 1));

  struct registry_campaign *list = NULL;
  size_t n = 0;
  REG_OK(r, registry_list_overdue(r, 60000, 100000, &list, &n));
  int pos_a = -1, pos_b = -1;
  for (size_t i = 0; i < n; i++) {
    assert_true(list[i].state != CAMPAIGN_DONE &&
                list[i].state != CAMPAIGN_DEAD);
    assert_true(list[i].scheduled_at_ms < list[i].registry_now_ms - 60000);
    assert_true(llabs(list[i].registry_now_ms - now) < 60000);
    if (strcmp(list[i].campaign_id, old_sched) == 0)
      pos_a = (int)i;
    if (strcmp(list[i].campaign_id, old_pub) == 0)
      pos_b = (int)i;
    assert_string_not_equal(list[i].campaign_id, done);
    assert_string_not_equal(list[i].campaign_id, future);
  }
  registry_campaigns_free(list, n);
  assert_true(pos_a >= 0 && pos_b > pos_a); /* oldest first */

  REG_OK(r, registry_list(r, -1, 100000, &list, &n));
  int pos_d = -1;
  pos_a = pos_b = -1;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(list[i].campaign_id, old_sched) == 0)
      pos_a = (int)i;
    if (strcmp(list[i].campaign_id, old_pub) == 0)
      pos_b = (int)i;
    if (strcmp(list[i].campaign_id, future) == 0)
      pos_d = (int)i;
  }
  registry_campaigns_free(list, n);
  assert_true(pos_d >= 0 && pos_b > pos_d && pos_a > pos_b); /* newest 1st */

  REG_OK(r, registry_list(r, CAMPAIGN_DONE, 100000, &list, &n));
  bool seen_done = false;
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(list[i].state, CAMPAIGN_DONE);
    seen_done |= strcmp(list[i].campaign_id, done) == 0;
  }
  registry_campaigns_free(list, n);
  assert_true(seen_done);
  REG_OK(r, registry_list(r, -1, 2, &list, &n));
  assert_int_equal(n, 2);
  registry_campaigns_free(list, n);
  REG_RC(r, SO_ERR_INVALID, registry_list(r, 9, 10, &list, &n));
  free(old_sched);
  free(old_pub);
  free(done);
  free(future);
  registry_close(r);
}

static void test_record_republish(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("repub");
  suite_register(r, id, CAMPAIGN_PUBLISHED, 5000);
  bool won = false;
  REG_OK(r, registry_record_republish(r, id, CAMPAIGN_SCHEDULED, 0, 0, 0, 5,
                                      &won));
  assert_false(won); /* wrong state */
  REG_OK(r, registry_record_republish(r, id, CAMPAIGN_PUBLISHED, 1, 0, 0, 5,
                                      &won));
  assert_false(won); /* wrong fence */
  REG_OK(r, registry_record_republish(r, id, CAMPAIGN_PUBLISHED, 0, 0, 60000, 2,
                                      &won));
  assert_true(won);
  struct registry_campaign c;
  suite_get(r, id, &c);
  assert_int_equal(c.republished, 1);
  assert_true(c.republished_at_ms > 0);
  assert_true(llabs(c.republished_at_ms - c.registry_now_ms) < 5000);
  registry_campaign_free(&c);
  REG_OK(r, registry_record_republish(r, id, CAMPAIGN_PUBLISHED, 0, 0, 60000, 2,
                                      &won));
  assert_false(won); /* backoff */
  REG_OK(r, registry_record_republish(r, id, CAMPAIGN_PUBLISHED, 0, 0, 0, 2,
                                      &won));
  assert_true(won);
  REG_OK(r, registry_record_republish(r, id, CAMPAIGN_PUBLISHED, 0, 0, 0, 2,
                                      &won));
  assert_false(won); /* cap */

  /* PROCESSING: only after the lease expired at least grace ago. */
  char *id2 = suite_id("repub-proc");
  suite_register(r, id2, CAMPAIGN_PUBLISHED, 5000);
  assert_int_equal(suite_claim(r, id2, "w", 1000).fence, 1);
  REG_OK(r, registry_record_republish(r, id2, CAMPAIGN_PROCESSING, 1, 0, 0, 5,
                                      &won));
  assert_false(won); /* lease live */
  suite_wait_lease_expired(r, id2);
  REG_OK(r, registry_record_republish(r, id2, CAMPAIGN_PROCESSING, 1, 60000, 0,
                                      5, &won));
  assert_false(won); /* expired, but not grace ago */
  REG_OK(r, registry_record_republish(r, id2, CAMPAIGN_PROCESSING, 2, 0, 0, 5,
                                      &won));
  assert_false(won); /* wrong fence */
  REG_OK(r, registry_record_republish(r, id2, CAMPAIGN_PROCESSING, 1, 0, 0, 5,
                                      &won));
  assert_true(won);
  REG_RC(r, SO_ERR_NOTFOUND,
         registry_record_republish(r, "absent-3", CAMPAIGN_PUBLISHED, 0, 0, 0,
                                   5, &won));
  free(id);
  free(id2);
  registry_close(r);
}

static bool campaigns_equal(const struct registry_campaign *a,
                            const struct registry_campaign *b)
{
#define SAME_STR(f) \
  ((a->f == NULL && b->f == NULL) || (a->f && b->f && !strcmp(a->f, b->f)))
  return SAME_STR(campaign_id) && SAME_STR(channel) && SAME_STR(payload) &&
         SAME_STR(owner) && SAME_STR(last_error) && a->state == b->state &&
         a->scheduled_at_ms == b->scheduled_at_ms && a->fence == b->fence &&
         a->lease_until_ms == b->lease_until_ms && a->attempts == b->attempts &&
         a->total == b->total && a->sent == b->sent &&
         a->rejected == b->rejected && a->republished == b->republished &&
         a->republished_at_ms == b->republished_at_ms &&
         a->progress_at_ms == b->progress_at_ms &&
         a->updated_at_ms == b->updated_at_ms && a->paused == b->paused;
#undef SAME_STR
}

/* Every fenced op with a stale fence is refused and changes nothing, both
 * while the new holder's lease is live and after the old one expired
 * with nobody taking over. */
static void test_stale_fence(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("stale");
  suite_register(r, id, CAMPAIGN_PUBLISHED, suite_now(r));
  assert_int_equal(suite_claim(r, id, "old", 150).fence, 1);
  suite_mark(r, id, 1, "a", DELIVERY_SENT);
  suite_mark(r, id, 1, "b", DELIVERY_INFLIGHT);
  suite_wait_lease_expired(r, id);

  for (int round = 0; round < 2; round++) {
    /* round 0: expired, nobody took it; round 1: "new" holds fence 2. */
    if (round == 1)
      assert_int_equal(suite_claim(r, id, "new", 60000).fence, 2);
    struct registry_campaign before, after;
    suite_get(r, id, &before);
    char *rows_before = suite_deliveries(id);

    struct registry_mark m[] = {
        {.recipient_id = "b", .state = DELIVERY_SENT},
        {.recipient_id = "c", .state = DELIVERY_REJECTED, .error = "e"},
    };
    const char *ids[] = {"a", "b"};
    bool need[2];
    enum registry_control ctl;
    int attempts = -1;
    REG_RC(r, SO_ERR_STALE_FENCE, registry_renew(r, id, 1, 60000));
    REG_RC(r, SO_ERR_STALE_FENCE, registry_mark(r, id, 1, m, 2));
    REG_RC(r, SO_ERR_STALE_FENCE, registry_pending(r, id, 1, ids, 2, need));
    REG_RC(r, SO_ERR_STALE_FENCE, registry_mark_pending(r, id, 1, m, 2, need));
    REG_RC(r, SO_ERR_STALE_FENCE, registry_set_total(r, id, 1, 99));
    REG_RC(r, SO_ERR_STALE_FENCE, registry_control(r, id, 1, &ctl));
    REG_RC(r, SO_ERR_STALE_FENCE,
           registry_release(r, id, 1, true, "x", &attempts));
    REG_RC(r, SO_ERR_STALE_FENCE, registry_fail(r, id, 1, "x"));
    REG_RC(r, SO_ERR_STALE_FENCE, registry_complete(r, id, 1));
    REG_RC(r, SO_ERR_STALE_FENCE, registry_complete(r, id, 3)); /* future */

    suite_get(r, id, &after);
    char *rows_after = suite_deliveries(id);
    assert_true(campaigns_equal(&before, &after));
    assert_string_equal(rows_before, rows_after);
    assert_non_null(strstr(rows_after, "b|INFLIGHT|"));
    assert_null(strstr(rows_after, "c|"));
    registry_campaign_free(&before);
    registry_campaign_free(&after);
    free(rows_before);
    free(rows_after);
  }
  /* The new holder's fence works. */
  REG_OK(r, registry_renew(r, id, 2, 60000));
  free(id);
  registry_close(r);
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--child") == 0)
    return registry_child_main(argc, argv);
  const char *backend = argc > 1 ? argv[1] : getenv("SENDONCE_TEST_BACKEND");
  testdb_create(&suite_db, testdb_backend_parse(backend ? backend : "sqlite"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_register_and_get),
      cmocka_unit_test(test_publish_steps),
      cmocka_unit_test(test_claim_mark_complete),
      cmocka_unit_test(test_release_fail_dead),
      cmocka_unit_test(test_lists),
      cmocka_unit_test(test_record_republish),
      cmocka_unit_test(test_stale_fence),
      cmocka_unit_test(test_schema_newer_refused),
      cmocka_unit_test(test_open_failures),
      cmocka_unit_test(test_lock_held_elsewhere),
      cmocka_unit_test(test_clock_skew),
      cmocka_unit_test(test_publish_race),
      cmocka_unit_test(test_republish_race),
      cmocka_unit_test(test_kill_mid_batch),
      cmocka_unit_test(test_race_claims),
  };
  return cmocka_run_group_tests_name(
      suite_db.backend == REGISTRY_POSTGRESQL ? "registry_pg"
                                              : "registry_sqlite",
      tests, suite_group_setup, suite_group_teardown);
}
