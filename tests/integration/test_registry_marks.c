/* test_registry_marks.c - the registry suite's cases of delivery marks
 * and the merged steps (register_claim_mark, mark_finish, and
 * register_claim with finish), run once per backend like test_registry.c:
 *   test_registry_marks sqlite    (ctest: registry_marks_sqlite)
 *   test_registry_marks pg        (ctest: registry_marks_pg)
 * Each case checks the answers and the rows against those of the plain
 * calls the merged ones stand for. */
#include "registry_suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cases ----------------------------------------------------------------
 */

/* The merged steps a consumer takes per trigger and at the end: the same
 * answers and rows as the calls they merge, and a stale fence writes
 * nothing. */
static void test_register_claim_and_finish(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("merged");
  struct registry_new_campaign nc = suite_new_campaign(id, suite_now(r) - 1000);
  bool created = false;
  struct registry_claim cl;
  REG_OK(r, registry_register_claim(r, &nc, "worker-a", 10000, &created, &cl));
  assert_true(created);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 1);
  assert_int_equal(cl.lease_until_ms - cl.registry_now_ms, 10000);
  struct registry_campaign c;
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_PROCESSING);
  assert_string_equal(c.owner, "worker-a");
  assert_string_equal(c.channel, "email");
  int64_t total_before = c.total;
  registry_campaign_free(&c);

  /* A second trigger: registered already, held by worker-a. */
  REG_OK(r, registry_register_claim(r, &nc, "worker-b", 10000, &created, &cl));
  assert_false(created);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_HELD);
  assert_int_equal(cl.fence, 1);

  /* A stale fence sets neither the total nor the state. */
  REG_RC(r, SO_ERR_STALE_FENCE, registry_finish(r, id, 2, 7, NULL));
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_PROCESSING);
  assert_int_equal(c.total, total_before);
  registry_campaign_free(&c);
  REG_RC(r, SO_ERR_INVALID, registry_finish(r, id, 1, -1, NULL));

  struct registry_mark outcomes[] = {
      {.recipient_id = "r1", .state = DELIVERY_SENT},
      {.recipient_id = "r2", .state = DELIVERY_SENT},
      {.recipient_id = "r3", .state = DELIVERY_REJECTED, .error = "bad"},
  };
  REG_OK(r, registry_mark(r, id, 1, outcomes, 3));
  struct registry_counts counts = {-1, -1};
  REG_OK(r, registry_finish(r, id, 1, 7, &counts));
  assert_int_equal(counts.sent, 2); /* as DONE left them */
  assert_int_equal(counts.rejected, 1);
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_DONE);
  assert_int_equal(c.total, 7);
  assert_null(c.owner);
  assert_int_equal(c.lease_until_ms, 0);
  registry_campaign_free(&c);
  REG_RC(r, SO_ERR_STALE_FENCE, registry_finish(r, id, 1, 7, NULL));
  REG_OK(r, registry_register_claim(r, &nc, "worker-b", 10000, &created, &cl));
  assert_false(created);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_DONE);
  free(id);
  registry_close(r);
}

/* SENT and REJECTED recipients are never handed out again, across any
 * number of takeovers with new fences. */
static void test_pending_across_takeovers(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("takeover");
  suite_register(r, id, CAMPAIGN_PUBLISHED, suite_now(r));
  const char *ids[] = {"s1", "s2", "j1", "i1", "n1"};
  int64_t fence = 0;
  for (int round = 0; round < 4; round++) {
    struct registry_claim cl =
        suite_claim(r, id, round % 2 ? "w-odd" : "w-even", 600);
    assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
    assert_int_equal(cl.fence, fence + 1);
    fence = cl.fence;
    bool need[5];
    REG_OK(r, registry_pending(r, id, fence, ids, 5, need));
    if (round == 0) {
      struct registry_mark m[] = {
          {.recipient_id = "s1", .state = DELIVERY_SENT},
          {.recipient_id = "s2", .state = DELIVERY_INFLIGHT},
          {.recipient_id = "s2", .state = DELIVERY_SENT},
          {.recipient_id = "j1", .state = DELIVERY_REJECTED, .error = "4xx"},
          {.recipient_id = "i1", .state = DELIVERY_INFLIGHT},
      };
      REG_OK(r, registry_mark(r, id, fence, m, 5));
    } else {
      assert_false(need[0]);
      assert_false(need[1]);
      assert_false(need[2]);
      assert_true(need[3]); /* INFLIGHT: outcome unknown, resend safe */
      assert_true(need[4]);
      /* A confused worker re-marking them moves nothing. */
      suite_mark(r, id, fence, "s1", DELIVERY_INFLIGHT);
      suite_mark(r, id, fence, "j1", DELIVERY_SENT);
    }
    struct registry_campaign c;
    suite_get(r, id, &c);
    assert_int_equal(c.sent, 2);
    assert_int_equal(c.rejected, 1);
    registry_campaign_free(&c);
    suite_wait_lease_expired(r, id); /* the holder "dies" */
  }
  char *rows = suite_deliveries(id);
  assert_non_null(strstr(rows, "j1|REJECTED|1|4xx|"));
  assert_non_null(strstr(rows, "s1|SENT|1|"));
  free(rows);
  free(id);
  registry_close(r);
}

/* The rows of a campaign without its id or times, to compare two
 * campaigns (owned text). */
static char *delivery_rows(const char *id)
{
  return testdb_delivery_rows(&suite_db, id);
}

/* A claimed campaign with i1, i2 INFLIGHT, s1 SENT, j1 REJECTED. */
static char *mark_pending_setup(struct registry *r, const char *base)
{
  char *id = suite_id(base);
  suite_register(r, id, CAMPAIGN_PUBLISHED, suite_now(r));
  assert_int_equal(suite_claim(r, id, "w", 60000).fence, 1);
  struct registry_mark m[] = {
      {.recipient_id = "i1", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "i2", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "s1", .state = DELIVERY_SENT},
      {.recipient_id = "j1", .state = DELIVERY_REJECTED, .error = "4xx"},
  };
  REG_OK(r, registry_mark(r, id, 1, m, 4));
  return id;
}

/* registry_mark_pending answers and writes as registry_pending followed
 * by registry_mark: the same batch on two campaigns in the same state,
 * one each way, then the expected values themselves. */
static void test_mark_pending(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *a = mark_pending_setup(r, "mp-two");
  char *b = mark_pending_setup(r, "mp-one");
  struct registry_mark m[] = {
      {.recipient_id = "i2", .state = DELIVERY_SENT}, /* an outcome */
      {.recipient_id = "n1", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "i1", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "s1", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "j1", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "n2", .state = DELIVERY_REJECTED, .error = "bad"},
      {.recipient_id = "n1", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "s1", .state = DELIVERY_SENT},
      {.recipient_id = "i2", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "n3", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "n3", .state = DELIVERY_SENT},
  };
  enum { N = sizeof(m) / sizeof(m[0]) };
  const bool want[N] = {true, true,  true, false, false, true,
                        true, false, true, true,  true};
  const char *ids[N];
  for (size_t i = 0; i < N; i++)
    ids[i] = m[i].recipient_id;
  bool two[N], one[N];
  memset(one, 0, sizeof(one));
  REG_OK(r, registry_pending(r, a, 1, ids, N, two));
  REG_OK(r, registry_mark(r, a, 1, m, N));
  REG_OK(r, registry_mark_pending(r, b, 1, m, N, one));
  for (size_t i = 0; i < N; i++) {
    assert_int_equal(two[i], want[i]);
    assert_int_equal(one[i], want[i]);
  }
  char *rows_a = delivery_rows(a);
  char *rows_b = delivery_rows(b);
  assert_string_equal(rows_a, rows_b);
  /* (~ is NULL.) i1 counts a second attempt, n1 two, an INFLIGHT mark after a
   * final one (i2, n3's order reversed) changes nothing. */
  assert_string_equal(rows_b,
                      "i1|INFLIGHT|2|~\n"
                      "i2|SENT|1|~\n"
                      "j1|REJECTED|1|4xx\n"
                      "n1|INFLIGHT|2|~\n"
                      "n2|REJECTED|1|bad\n"
                      "n3|SENT|1|~\n"
                      "s1|SENT|1|~\n");
  struct registry_campaign ca, cb;
  suite_get(r, a, &ca);
  suite_get(r, b, &cb);
  assert_int_equal(cb.sent, 3);     /* s1, i2, n3 */
  assert_int_equal(cb.rejected, 2); /* j1, n2 */
  assert_int_equal(ca.sent, cb.sent);
  assert_int_equal(ca.rejected, cb.rejected);
  registry_campaign_free(&ca);

  /* Again: everything final reads false and counts nothing more; the
   * INFLIGHT ones stay pending and count an attempt. */
  REG_OK(r, registry_mark_pending(r, b, 1, m, N, one));
  const bool again[N] = {false, true,  true,  false, false, false,
                         true,  false, false, false, false};
  for (size_t i = 0; i < N; i++)
    assert_int_equal(one[i], again[i]);
  registry_campaign_free(&cb);
  suite_get(r, b, &cb);
  assert_int_equal(cb.sent, 3);
  assert_int_equal(cb.rejected, 2);
  registry_campaign_free(&cb);
  free(rows_b);
  rows_b = delivery_rows(b);
  assert_non_null(strstr(rows_b, "i1|INFLIGHT|3|~\n"));
  assert_non_null(strstr(rows_b, "n1|INFLIGHT|4|~\n"));
  assert_non_null(strstr(rows_b, "s1|SENT|1|~\n"));

  /* An empty call is a fence check; a bad mark is refused whole. */
  REG_OK(r, registry_mark_pending(r, b, 1, NULL, 0, NULL));
  REG_RC(r, SO_ERR_STALE_FENCE, registry_mark_pending(r, b, 2, NULL, 0, NULL));
  struct registry_mark bad[] = {
      {.recipient_id = "n9", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "", .state = DELIVERY_SENT},
  };
  REG_RC(r, SO_ERR_INVALID, registry_mark_pending(r, b, 1, bad, 2, one));
  REG_RC(r, SO_ERR_INVALID, registry_mark_pending(r, b, 1, m, N, NULL));
  char *rows_c = delivery_rows(b);
  assert_string_equal(rows_b, rows_c);
  free(rows_a);
  free(rows_b);
  free(rows_c);
  free(a);
  free(b);
  registry_close(r);
}

/* registry_mark_finish: the last outcomes and DONE as one fenced step,
 * written as registry_mark then registry_finish would write them; a stale
 * fence or a bad argument writes neither. */
static void test_mark_finish(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = mark_pending_setup(r, "mark-finish");
  struct registry_mark m[] = {
      {.recipient_id = "i1", .state = DELIVERY_SENT},
      {.recipient_id = "i2", .state = DELIVERY_REJECTED, .error = "4xx"},
      {.recipient_id = "s1", .state = DELIVERY_SENT}, /* already final */
  };
  char *before = delivery_rows(id);
  struct registry_counts counts = {-1, -1};
  REG_RC(r, SO_ERR_STALE_FENCE,
         registry_mark_finish(r, id, 2, m, 3, 4, &counts));
  REG_RC(r, SO_ERR_INVALID, registry_mark_finish(r, id, 1, m, 3, -1, NULL));
  struct registry_mark bad[] = {{.recipient_id = "", .state = DELIVERY_SENT}};
  REG_RC(r, SO_ERR_INVALID, registry_mark_finish(r, id, 1, bad, 1, 4, NULL));
  char *after = delivery_rows(id);
  assert_string_equal(before, after);
  struct registry_campaign c;
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_PROCESSING);
  assert_int_equal(c.sent, 1);
  registry_campaign_free(&c);

  REG_OK(r, registry_mark_finish(r, id, 1, m, 3, 4, &counts));
  assert_int_equal(counts.sent, 2); /* s1 and i1: s1 counts once */
  assert_int_equal(counts.rejected, 2);
  free(after);
  after = delivery_rows(id);
  assert_string_equal(after,
                      "i1|SENT|1|~\n"
                      "i2|REJECTED|1|4xx\n"
                      "j1|REJECTED|1|4xx\n"
                      "s1|SENT|1|~\n");
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_DONE);
  assert_int_equal(c.total, 4);
  assert_null(c.owner);
  assert_int_equal(c.lease_until_ms, 0);
  registry_campaign_free(&c);
  REG_RC(r, SO_ERR_STALE_FENCE, registry_mark_finish(r, id, 1, m, 3, 4, NULL));

  /* With no marks it is registry_finish. */
  char *e = suite_id("mark-finish-empty");
  suite_register(r, e, CAMPAIGN_PUBLISHED, suite_now(r));
  assert_int_equal(suite_claim(r, e, "w", 60000).fence, 1);
  REG_OK(r, registry_mark_finish(r, e, 1, NULL, 0, 0, NULL));
  suite_get(r, e, &c);
  assert_int_equal(c.state, CAMPAIGN_DONE);
  registry_campaign_free(&c);
  free(e);
  free(before);
  free(after);
  free(id);
  registry_close(r);
}

/* registry_register_claim_mark: the claim's answers are
 * registry_register_claim's; the marks are written (and answered as
 * registry_mark_pending's) only under a claim this call made. */
static void test_register_claim_mark(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("claim-mark");
  struct registry_new_campaign nc = suite_new_campaign(id, suite_now(r) - 1000);
  struct registry_mark m[] = {
      {.recipient_id = "a", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "b", .state = DELIVERY_INFLIGHT},
  };
  bool created = false, marked = false, pend[2] = {false, false};
  struct registry_claim cl = suite_claim_new(r, &nc, "w1", m, 2, pend);
  assert_int_equal(cl.lease_until_ms - cl.registry_now_ms, 60000);
  assert_true(pend[0] && pend[1]);
  char *rows = delivery_rows(id);
  assert_string_equal(rows, "a|INFLIGHT|1|~\nb|INFLIGHT|1|~\n");
  free(rows);

  /* Held by w1: a duplicate marks nothing. */
  REG_OK(r, registry_register_claim_mark(r, &nc, "w2", 60000, m, 2, &created,
                                         &cl, pend, &marked));
  assert_false(created);
  assert_false(marked);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_HELD);
  /* A bad mark is refused before anything is written. */
  struct registry_mark bad[] = {{.recipient_id = "", .state = 0}};
  REG_RC(r, SO_ERR_INVALID,
         registry_register_claim_mark(r, &nc, "w2", 60000, bad, 1, &created,
                                      &cl, pend, &marked));
  rows = delivery_rows(id);
  assert_string_equal(rows, "a|INFLIGHT|1|~\nb|INFLIGHT|1|~\n");
  free(rows);

  /* A takeover after a release: claimed with fence 2, a (SENT) is not
   * pending, b counts a second attempt. */
  struct registry_mark sent[] = {{.recipient_id = "a", .state = DELIVERY_SENT}};
  REG_OK(r, registry_mark(r, id, 1, sent, 1));
  REG_OK(r, registry_release(r, id, 1, false, NULL, NULL));
  REG_OK(r, registry_register_claim_mark(r, &nc, "w2", 60000, m, 2, &created,
                                         &cl, pend, &marked));
  assert_false(created);
  assert_true(marked);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 2);
  assert_false(pend[0]);
  assert_true(pend[1]);
  rows = delivery_rows(id);
  assert_string_equal(rows, "a|SENT|1|~\nb|INFLIGHT|2|~\n");
  free(rows);

  /* Paused: no claim, no marks. */
  REG_OK(r, registry_release(r, id, 2, false, NULL, NULL));
  REG_OK(r, registry_pause(r, id));
  REG_OK(r, registry_register_claim_mark(r, &nc, "w3", 60000, m, 2, &created,
                                         &cl, pend, &marked));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_PAUSED);
  assert_false(marked);
  rows = delivery_rows(id);
  assert_string_equal(rows, "a|SENT|1|~\nb|INFLIGHT|2|~\n");
  free(rows);
  free(id);
  registry_close(r);
}

/* The shapes the merged steps' common cases take (one statement each
 * on PostgreSQL): a new campaign's repeated INFLIGHT marks, and a last
 * batch of SENT marks only, for rows INFLIGHT, absent and already SENT,
 * refused whole with a stale fence. */
static void test_merged_step_shapes(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("shapes");
  struct registry_new_campaign nc = suite_new_campaign(id, suite_now(r) - 1000);
  struct registry_mark m[] = {
      {.recipient_id = "a", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "b", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "a", .state = DELIVERY_INFLIGHT},
      {.recipient_id = "s", .state = DELIVERY_INFLIGHT},
  };
  bool pend[4] = {false};
  (void)suite_claim_new(r, &nc, "w1", m, 4, pend);
  assert_true(pend[0] && pend[1] && pend[2] && pend[3]);
  char *rows = delivery_rows(id);
  assert_string_equal(rows, "a|INFLIGHT|2|~\nb|INFLIGHT|1|~\ns|INFLIGHT|1|~\n");
  free(rows);

  struct registry_mark s1[] = {{.recipient_id = "s", .state = DELIVERY_SENT}};
  REG_OK(r, registry_mark(r, id, 1, s1, 1));
  struct registry_mark fin[] = {
      {.recipient_id = "a", .state = DELIVERY_SENT},
      {.recipient_id = "c", .state = DELIVERY_SENT}, /* absent */
      {.recipient_id = "s", .state = DELIVERY_SENT}, /* already SENT */
      {.recipient_id = "b", .state = DELIVERY_SENT},
  };
  struct registry_counts counts = {-1, -1};
  REG_RC(r, SO_ERR_STALE_FENCE,
         registry_mark_finish(r, id, 2, fin, 4, 4, &counts));
  rows = delivery_rows(id);
  assert_string_equal(rows, "a|INFLIGHT|2|~\nb|INFLIGHT|1|~\ns|SENT|1|~\n");
  free(rows);
  REG_OK(r, registry_mark_finish(r, id, 1, fin, 4, 4, &counts));
  assert_int_equal(counts.sent, 4); /* s counted once, by its own mark */
  assert_int_equal(counts.rejected, 0);
  rows = delivery_rows(id);
  assert_string_equal(rows,
                      "a|SENT|2|~\nb|SENT|1|~\nc|SENT|1|~\n"
                      "s|SENT|1|~\n");
  free(rows);
  struct registry_campaign c;
  suite_get(r, id, &c);
  assert_int_equal(c.state, CAMPAIGN_DONE);
  assert_int_equal(c.total, 4);
  assert_int_equal(c.sent, 4);
  assert_null(c.owner);
  assert_int_equal(c.lease_until_ms, 0);
  registry_campaign_free(&c);
  REG_RC(r, SO_ERR_STALE_FENCE,
         registry_mark_finish(r, id, 1, fin, 4, 4, NULL));
  free(id);
  registry_close(r);
}

int main(int argc, char **argv)
{
  const char *backend = argc > 1 ? argv[1] : getenv("SENDONCE_TEST_BACKEND");
  testdb_create(&suite_db, testdb_backend_parse(backend ? backend : "sqlite"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_register_claim_and_finish),
      cmocka_unit_test(test_pending_across_takeovers),
      cmocka_unit_test(test_mark_pending),
      cmocka_unit_test(test_mark_finish),
      cmocka_unit_test(test_register_claim_mark),
      cmocka_unit_test(test_merged_step_shapes),
  };
  return cmocka_run_group_tests_name(
      suite_db.backend == REGISTRY_POSTGRESQL ? "registry_marks_pg"
                                              : "registry_marks_sqlite",
      tests, suite_group_setup, suite_group_teardown);
}
