/* test_registry_pg_steps.c - the PostgreSQL registry's merged steps as
 * one statement each:
 *  - a new campaign's register_claim_mark and a mark_finish are each one
 *    statement, one round trip and one commit (what the registry's
 *    backend ran last, in pg_stat_activity, is the step's statement, not
 *    a COMMIT), and an existing campaign's register_claim_mark claims
 *    and marks in one statement (after the insert that found it);
 *  - a new campaign whose id has delivery rows left behind (its campaign
 *    row deleted by hand before the cascade existed): the one-statement
 *    claim meets a unique violation, writes nothing, and the step runs
 *    as a transaction with lookups, answering as registry.h says.
 * The answers themselves are the shared suite's (test_registry_marks.c).
 *
 * Real PostgreSQL (scripts/setup), a schema of its own, dropped at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integration/registry_suite.h"
#include "integration/registry_testdb.h"
#include "registry.h"

static struct testdb db;

static int group_setup(void **state)
{
  (void)state;
  testdb_create(&db, REGISTRY_POSTGRESQL);
  registry_close(testdb_open(&db)); /* applies the migrations */
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  testdb_destroy(&db);
  return 0;
}

/* A registry whose connection is named after this run's schema. */
static struct registry *open_named(char *conninfo, size_t len)
{
  snprintf(conninfo, len, "%s application_name=%s", db.pg_conninfo,
           db.pg_schema);
  struct registry_options opt = testdb_options(&db);
  opt.pg_conninfo = conninfo;
  return testdb_open_with(&opt);
}

/* The statement the named registry connection ran last. */
static char *last_statement(void)
{
  char sql[256];
  snprintf(sql, sizeof(sql),
           "SELECT query FROM pg_stat_activity WHERE application_name = '%s'",
           db.pg_schema);
  return testdb_query(&db, sql);
}

/* The last statement was a finish's (its text is cut at
 * track_activity_query_size, so only its start is checked), not COMMIT. */
static void assert_finish_last(void)
{
  char *q = last_statement();
  assert_int_equal(strncmp(q, "WITH t AS", 9), 0);
  assert_non_null(strstr(q, "INTO deliveries") ||
                  strstr(q, "UPDATE deliveries"));
  free(q);
}

static void test_one_statement_per_step(void **state)
{
  (void)state;
  char conninfo[1024];
  struct registry *r = open_named(conninfo, sizeof(conninfo));
  int64_t now = 0;
  REG_OK(r, registry_now(r, &now));
  struct registry_new_campaign nc = {"steps-1", now - 1000, "email", "{}"};
  struct registry_mark m[] = {{"u-1", DELIVERY_INFLIGHT, NULL}};
  bool created = false, marked = false, pend[1] = {false};
  struct registry_claim cl;
  REG_OK(r, registry_register_claim_mark(r, &nc, "w1", 60000, m, 1, &created,
                                         &cl, pend, &marked));
  assert_true(created && marked && pend[0]);
  char *q = last_statement();
  assert_non_null(strstr(q, "INSERT INTO campaigns"));
  assert_non_null(strstr(q, "INSERT INTO deliveries"));
  /* Each id marked once: the lean form, one array and no UNION ALL. */
  assert_null(strstr(q, "UNION ALL"));
  free(q);

  /* One that exists (registered by a publisher) is claimed and marked by
   * one statement after the insert found it. */
  struct registry_new_campaign pub = {"steps-0", now - 1000, "email", "{}"};
  REG_OK(r, registry_register(r, &pub, CAMPAIGN_PUBLISHED, &created));
  struct registry_claim cl0;
  REG_OK(r, registry_register_claim_mark(r, &pub, "w1", 60000, m, 1, &created,
                                         &cl0, pend, &marked));
  assert_false(created);
  assert_true(marked && pend[0]);
  assert_int_equal(cl0.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl0.fence, 1);
  q = last_statement();
  assert_non_null(strstr(q, "UPDATE campaigns c SET state = 'PROCESSING'"));
  assert_non_null(strstr(q, "UPDATE deliveries"));
  free(q);

  /* The common last batch (SENT only), and one of mixed outcomes. */
  m[0].state = DELIVERY_SENT;
  struct registry_counts counts;
  REG_OK(r, registry_mark_finish(r, "steps-1", cl.fence, m, 1, 1, &counts));
  assert_int_equal(counts.sent, 1);
  assert_finish_last();

  nc.campaign_id = "steps-2";
  struct registry_mark two[] = {{"u-1", DELIVERY_INFLIGHT, NULL},
                                {"u-2", DELIVERY_INFLIGHT, NULL}};
  bool pend2[2];
  REG_OK(r, registry_register_claim_mark(r, &nc, "w1", 60000, two, 2, &created,
                                         &cl, pend2, &marked));
  two[0].state = DELIVERY_SENT;
  two[1].state = DELIVERY_REJECTED;
  two[1].error = "400";
  REG_OK(r, registry_mark_finish(r, "steps-2", cl.fence, two, 2, 2, &counts));
  assert_int_equal(counts.sent, 1);
  assert_int_equal(counts.rejected, 1);
  assert_finish_last();

  /* A new campaign whose marks repeat an id (a retried send) takes the
   * general form, with the tries group: still one statement. */
  nc.campaign_id = "steps-3";
  struct registry_mark again[] = {{"u-1", DELIVERY_INFLIGHT, NULL},
                                  {"u-1", DELIVERY_INFLIGHT, NULL}};
  REG_OK(r, registry_register_claim_mark(r, &nc, "w1", 60000, again, 2,
                                         &created, &cl, pend2, &marked));
  assert_true(created && marked);
  q = last_statement();
  assert_non_null(strstr(q, "UNION ALL"));
  free(q);
  assert_int_equal(testdb_query_int(&db,
                                    "SELECT attempts FROM deliveries "
                                    "WHERE campaign_id = 'steps-3'"),
                   2);

  /* The SENT-only finish over rows INFLIGHT, final and absent: the first
   * become SENT, the final stay, the absent are inserted SENT; only the
   * changes count. */
  nc.campaign_id = "steps-4";
  struct registry_mark ab[] = {{"a", DELIVERY_INFLIGHT, NULL},
                               {"b", DELIVERY_INFLIGHT, NULL}};
  REG_OK(r, registry_register_claim_mark(r, &nc, "w1", 60000, ab, 2, &created,
                                         &cl, pend2, &marked));
  const struct registry_mark b_sent[] = {{"b", DELIVERY_SENT, NULL}};
  REG_OK(r, registry_mark(r, "steps-4", cl.fence, b_sent, 1));
  const struct registry_mark abc[] = {{"a", DELIVERY_SENT, NULL},
                                      {"b", DELIVERY_SENT, NULL},
                                      {"c", DELIVERY_SENT, NULL}};
  REG_OK(r, registry_mark_finish(r, "steps-4", cl.fence, abc, 3, 3, &counts));
  assert_int_equal(counts.sent, 3);
  assert_int_equal(counts.rejected, 0);
  assert_finish_last();
  char *rows = testdb_delivery_rows(&db, "steps-4");
  assert_string_equal(rows, "a|SENT|1|~\nb|SENT|1|~\nc|SENT|1|~\n");
  free(rows);
  /* Again, with the campaign DONE: refused, nothing written. */
  assert_int_equal(
      registry_mark_finish(r, "steps-4", cl.fence, abc, 3, 3, &counts),
      SO_ERR_STALE_FENCE);
  registry_close(r);
}

static void test_new_campaign_with_rows_left(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&db);
  testdb_exec(&db,
              "INSERT INTO deliveries (campaign_id, recipient_id, "
              "state, attempts, updated_at) VALUES "
              "('left', 'x', 'SENT', 1, 0), ('left', 'y', 'INFLIGHT', 1, 0)");
  int64_t now = 0;
  REG_OK(r, registry_now(r, &now));
  struct registry_new_campaign nc = {"left", now - 1000, "email", "{}"};
  struct registry_mark m[] = {{"x", DELIVERY_INFLIGHT, NULL},
                              {"y", DELIVERY_INFLIGHT, NULL},
                              {"z", DELIVERY_INFLIGHT, NULL}};
  bool pend[3] = {true, false, false};
  (void)suite_claim_new(r, &nc, "w1", m, 3, pend);
  assert_false(pend[0]);
  assert_true(pend[1]);
  assert_true(pend[2]);
  char *rows = testdb_delivery_rows(&db, "left");
  assert_string_equal(rows, "x|SENT|1|~\ny|INFLIGHT|2|~\nz|INFLIGHT|1|~\n");
  free(rows);
  registry_close(r);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_statement_per_step),
      cmocka_unit_test(test_new_campaign_with_rows_left),
  };
  return cmocka_run_group_tests_name("registry_pg_steps", tests, group_setup,
                                     group_teardown);
}
