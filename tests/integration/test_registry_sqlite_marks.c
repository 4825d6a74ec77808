/* test_registry_sqlite_marks.c - write steps whose SQLite statements are
 * shaped unlike the step they stand for, checked against what the plain
 * shape writes.
 *
 * A new campaign's register_claim is one INSERT of the claimed row: it
 * must write what registry_register then registry_claim write.
 *
 * The SQLite registry writes runs of marks
 * of one state 4, 16 or 64 rows per statement, and falls back to a mark at
 * a time when registry_mark_pending needs to know which rows a chunk
 * wrote. Checked against a model of registry.h's semantics, call by call:
 * random calls of registry_mark and registry_mark_pending over a small
 * pool of recipients, so that runs fill every chunk size and chunks meet
 * recipients already final, INFLIGHT ones and the same id twice; after
 * each call the pending answers, and at the end every delivery row
 * (state, attempts, error) and the campaign's counters, must be what the
 * model says. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "registry_testdb.h"

#define TTL_MS (10 * 60 * 1000)
#define POOL 300     /* recipients "r-0" .. "r-299" */
#define MAX_CALL 200 /* marks per call */
#define CALLS 150

/* One recipient as registry.h says it must end up. */
struct model_row {
  int state; /* -1 absent, else enum delivery_state */
  int attempts;
  char error[32];
};

struct model {
  struct model_row rows[POOL];
  long long sent, rejected;
};

static bool model_final(const struct model_row *m)
{
  return m->state == DELIVERY_SENT || m->state == DELIVERY_REJECTED;
}

/* One call: pending as it was before the call, then the marks in order. */
static void model_apply(struct model *md, const int *who,
                        const struct registry_mark *marks, size_t n,
                        bool *pending)
{
  for (size_t i = 0; i < n; i++)
    pending[i] = !model_final(&md->rows[who[i]]);
  for (size_t i = 0; i < n; i++) {
    struct model_row *m = &md->rows[who[i]];
    if (model_final(m))
      continue;
    if (marks[i].state == DELIVERY_INFLIGHT) {
      m->attempts = m->state < 0 ? 1 : m->attempts + 1;
      m->state = DELIVERY_INFLIGHT;
      continue;
    }
    if (m->state < 0)
      m->attempts = 1;
    m->state = (int)marks[i].state;
    snprintf(m->error, sizeof(m->error), "%s",
             marks[i].error ? marks[i].error : "");
    if (marks[i].state == DELIVERY_SENT)
      md->sent++;
    else
      md->rejected++;
  }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng(uint32_t below)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % below);
}

static char ids[POOL][16];
static char errors[POOL][32];

/* A call: runs of one state with lengths that fill 64, 16 and 4 row
 * chunks and leave remainders, from a window of the pool so that ids
 * repeat within a call and across calls. */
static size_t make_call(struct registry_mark *marks, int *who)
{
  size_t n = 1 + rng(MAX_CALL);
  int base = (int)rng(POOL);
  int window = 8 + (int)rng(POOL);
  size_t i = 0;
  while (i < n) {
    static const size_t lens[] = {1, 3, 4, 5, 16, 17, 30, 64, 70, 100};
    size_t len = lens[rng(sizeof(lens) / sizeof(lens[0]))];
    enum delivery_state st = (enum delivery_state)rng(3);
    for (size_t j = 0; j < len && i < n; j++, i++) {
      int k = (base + (int)rng((uint32_t)window)) % POOL;
      who[i] = k;
      marks[i].recipient_id = ids[k];
      marks[i].state = st;
      marks[i].error = st == DELIVERY_REJECTED ? errors[k] : NULL;
    }
  }
  return n;
}

static int by_id(const void *pa, const void *pb)
{
  return strcmp(ids[*(const int *)pa], ids[*(const int *)pb]);
}

static void check_rows(const struct testdb *db, const char *campaign,
                       const struct model *md)
{
  char sql[256];
  snprintf(sql, sizeof(sql),
           "SELECT recipient_id, state, attempts, COALESCE(error, '')"
           " FROM deliveries WHERE campaign_id = '%s' ORDER BY recipient_id",
           campaign);
  char *got = testdb_query(db, sql);
  /* The model's rows in the same order (ids sort as text). */
  int order[POOL];
  for (int k = 0; k < POOL; k++)
    order[k] = k;
  qsort(order, POOL, sizeof(order[0]), by_id);
  size_t cap = POOL * 64, len = 0;
  char *want = calloc(1, cap);
  assert_non_null(want);
  static const char *const names[] = {"INFLIGHT", "SENT", "REJECTED"};
  for (int o = 0; o < POOL; o++) {
    const struct model_row *m = &md->rows[order[o]];
    if (m->state >= 0)
      len += (size_t)snprintf(want + len, cap - len, "%s|%s|%d|%s\n",
                              ids[order[o]], names[m->state], m->attempts,
                              m->error);
  }
  assert_string_equal(got, want);
  free(got);
  free(want);
}

static void test_marks_match_model(void **state)
{
  (void)state;
  for (int k = 0; k < POOL; k++) {
    snprintf(ids[k], sizeof(ids[k]), "r-%d", k);
    snprintf(errors[k], sizeof(errors[k]), "bad address %d", k);
  }
  struct testdb db;
  testdb_create(&db, REGISTRY_SQLITE);
  struct registry *r = testdb_open(&db);
  struct registry_new_campaign c = {"marks-1", 1000, "email", "{}"};
  bool created = false;
  struct registry_claim cl;
  REG_OK(r, registry_register_claim(r, &c, "w", TTL_MS, &created, &cl));

  struct model md;
  memset(&md, 0, sizeof(md));
  for (int k = 0; k < POOL; k++)
    md.rows[k].state = -1;
  struct registry_mark marks[MAX_CALL];
  int who[MAX_CALL];
  bool pending[MAX_CALL], want[MAX_CALL];
  int chunked_fallbacks = 0;
  for (int call = 0; call < CALLS; call++) {
    size_t n = make_call(marks, who);
    model_apply(&md, who, marks, n, want);
    if (rng(3) == 0) {
      REG_OK(r, registry_mark(r, "marks-1", cl.fence, marks, n));
      continue;
    }
    REG_OK(r, registry_mark_pending(r, "marks-1", cl.fence, marks, n, pending));
    for (size_t i = 0; i < n; i++) {
      if (pending[i] != want[i])
        fail_msg("call %d mark %zu (%s %d): pending %d, want %d", call, i,
                 marks[i].recipient_id, (int)marks[i].state, pending[i],
                 want[i]);
      if (!want[i])
        chunked_fallbacks++;
    }
  }
  /* The calls did meet final recipients (the fallback path ran). */
  assert_true(chunked_fallbacks > 100);
  check_rows(&db, "marks-1", &md);
  struct registry_campaign got;
  REG_OK(r, registry_get(r, "marks-1", &got));
  assert_int_equal(got.sent, md.sent);
  assert_int_equal(got.rejected, md.rejected);
  registry_campaign_free(&got);

  /* A stale fence writes none of a chunked call. */
  struct registry_mark late[20];
  for (int i = 0; i < 20; i++)
    late[i] = (struct registry_mark){ids[i], DELIVERY_SENT, NULL};
  assert_int_equal(registry_mark(r, "marks-1", cl.fence + 1, late, 20),
                   SO_ERR_STALE_FENCE);
  check_rows(&db, "marks-1", &md);
  registry_close(r);
  testdb_destroy(&db);
}

static void test_register_claim_row(void **state)
{
  (void)state;
  struct testdb db;
  testdb_create(&db, REGISTRY_SQLITE);
  struct registry *r = testdb_open(&db);
  struct registry_new_campaign a = {"rc-merged", 1234, "sms", "{\"p\":1}"};
  struct registry_new_campaign b = {"rc-steps", 1234, "sms", "{\"p\":1}"};
  bool created = false;
  struct registry_claim cl;
  REG_OK(r, registry_register_claim(r, &a, "w-1", TTL_MS, &created, &cl));
  assert_true(created);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.state, CAMPAIGN_PROCESSING);
  assert_int_equal(cl.fence, 1);
  assert_int_equal(cl.lease_until_ms, cl.registry_now_ms + TTL_MS);
  REG_OK(r, registry_register(r, &b, CAMPAIGN_PUBLISHED, &created));
  REG_OK(r, registry_claim(r, "rc-steps", "w-1", TTL_MS, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  /* Every column but the id and the times, and the times' relations. */
  char *rows = testdb_query(
      &db,
      "SELECT state, scheduled_at, channel, payload, owner, fence,"
      " publish_owner, publish_until, paused, attempts, total, sent,"
      " rejected, republished, republished_at, last_error,"
      " lease_until - progress_at, progress_at = updated_at,"
      " created_at <= updated_at, updated_at > 0"
      " FROM campaigns ORDER BY campaign_id");
  char want[512];
  snprintf(
      want, sizeof(want),
      "PROCESSING|1234|sms|{\"p\":1}|w-1|1|~|0|0|0|-1|0|0|0|0|~|%d|1|1|1\n"
      "PROCESSING|1234|sms|{\"p\":1}|w-1|1|~|0|0|0|-1|0|0|0|0|~|%d|1|1|1\n",
      TTL_MS, TTL_MS);
  assert_string_equal(rows, want);
  free(rows);
  /* The state index has it (lists go through it) and is sound. */
  struct registry_campaign *list = NULL;
  size_t n = 0;
  REG_OK(r, registry_list(r, CAMPAIGN_PROCESSING, 10, &list, &n));
  assert_int_equal(n, 2);
  registry_campaigns_free(list, n);
  char *check = testdb_query(&db, "PRAGMA integrity_check");
  assert_string_equal(check, "ok\n");
  free(check);
  registry_close(r);
  testdb_destroy(&db);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_marks_match_model),
      cmocka_unit_test(test_register_claim_row),
  };
  return cmocka_run_group_tests_name("registry_sqlite_marks", tests, NULL,
                                     NULL);
}
