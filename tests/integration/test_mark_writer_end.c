/* test_mark_writer_end.c - a worker's mark writer (consumer/mark_writer.h)
 * on a real SQLite registry: when the campaign ends while the writer's
 * thread is inside a pass, the outcomes queued meanwhile go to the
 * caller's last step (mark_writer_end_take), not into a commit of the
 * writer's own right before it (a spare commit per such campaign). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lease.h"
#include "mark_writer.h"
#include "msg.h"
#include "recipients.h"
#include "registry.h"
#include "registry_testdb.h"
#include "stats.h"
#include "testenv.h"

static struct testdb db;

struct ender {
  pthread_t th;
  struct mark_writer *mw;
  struct registry_mark *marks;
  size_t n;
  int rc;
};

static void *ender_run(void *arg)
{
  struct ender *e = arg;
  e->rc = mark_writer_end_take(e->mw, &e->marks, &e->n);
  return NULL;
}

static void test_end_during_a_pass_takes_the_outcomes(void **state)
{
  (void)state;
  char *id = testenv_unique("mw-end");
  char body[1024];
  int len = snprintf(
      body, sizeof(body),
      "{\"schema\":1,\"campaign_id\":\"%s\","
      "\"scheduled_at\":\"2026-11-27T09:00:00Z\",\"channel\":\"email\","
      "\"content\":{\"subject\":\"Hi\",\"template\":\"Hello\"},"
      "\"recipients\":[{\"id\":\"r1\",\"address\":\"a@example.org\"},"
      "{\"id\":\"r2\",\"address\":\"b@example.org\"},"
      "{\"id\":\"r3\",\"address\":\"c@example.org\"}]}",
      id);
  assert_true(len > 0 && (size_t)len < sizeof(body));
  struct msg *m = NULL;
  char err[512] = "";
  struct msg_rules rules = {0};
  assert_int_equal(msg_parse(body, (size_t)len, &rules, &m, err, sizeof(err)),
                   SO_OK);

  struct registry *r = testdb_open(&db);
  struct registry_new_campaign nc = {id, 1000, "email", body};
  bool created = false;
  struct registry_claim cl = {0};
  assert_int_equal(
      registry_register_claim(r, &nc, "test:w0", 60000, &created, &cl), SO_OK);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);

  struct registry_options ro = testdb_options(&db);
  struct lease *lease = NULL;
  static struct consumer_stats stats;
  assert_int_equal(lease_start(&ro, 60, &stats, &lease), SO_OK);
  struct lease_entry *le = lease_add(lease, id, cl.fence, clock_monotonic_ms());
  assert_non_null(le);
  struct recipients_reader *rd = NULL;
  assert_int_equal(recipients_open(m, NULL, &rd, err, sizeof(err)), SO_OK);
  /* No dispatch: the test ends long before a progress event is due. */
  struct mark_writer *mw = NULL;
  assert_int_equal(mark_writer_start(&ro, NULL, 0, &mw), SO_OK);

  /* A first campaign opens the writer thread's registry (a pass of its
   * own, unhindered). */
  struct recipients_reader *warm_rd = NULL;
  assert_int_equal(recipients_open(m, NULL, &warm_rd, err, sizeof(err)), SO_OK);
  struct mark_writer_job warm = {
      .campaign_id = id,
      .owner = "test:w0",
      .fence = cl.fence,
      .le = le,
      .rd = warm_rd,
      .batch = 2,
  };
  /* The campaign under test: the same, read afresh. */
  struct mark_writer_job job = warm;
  job.rd = rd;
  assert_int_equal(mark_writer_begin(mw, &warm), SO_OK);
  clock_sleep_ms(400, NULL);
  mark_writer_end(mw);
  recipients_close(warm_rd);
  testdb_exec(&db, "DELETE FROM deliveries");
  /* Done with that pass, the writer slept until the campaign's control
   * read was due (1 s after its begin); past it, with no campaign, it
   * naps 100 ms at a time, so it finds the next one soon. */
  clock_sleep_ms(800, NULL);

  /* The writer's first pass (INFLIGHT marks of the list) waits for the
   * write lock, which another connection holds. */
  struct testdb_lock *lock = testdb_lock_campaign(&db, id);
  assert_int_equal(mark_writer_begin(mw, &job), SO_OK);
  /* The writer's thread finds the job within its 100 ms nap. Everything
   * after stays well within the 1 s after which a pass would be due a
   * progress event (there is no dispatch here). */
  clock_sleep_ms(300, NULL);
  /* An outcome queued while the pass runs: one, below the batch, so the
   * writer leaves it for later. */
  struct registry_mark out = {.recipient_id = strdup("r1"),
                              .state = DELIVERY_SENT};
  assert_non_null(out.recipient_id);
  assert_int_equal(mark_writer_put(mw, &out, 1), SO_OK);
  /* The campaign ends meanwhile: the end waits for the pass. */
  struct ender e = {.mw = mw};
  assert_int_equal(pthread_create(&e.th, NULL, ender_run, &e), 0);
  clock_sleep_ms(100, NULL);
  testdb_unlock(lock);
  assert_int_equal(pthread_join(e.th, NULL), 0);

  /* The outcome is the caller's to write with DONE: still INFLIGHT in the
   * registry, and handed over. */
  assert_int_equal(e.rc, SO_OK);
  assert_int_equal(e.n, 1);
  assert_string_equal(e.marks[0].recipient_id, "r1");
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT COUNT(*) FROM deliveries WHERE campaign_id = '%s' AND "
           "state = 'SENT'",
           id);
  assert_int_equal(testdb_query_int(&db, sql), 0);
  snprintf(sql, sizeof(sql),
           "SELECT COUNT(*) FROM deliveries WHERE campaign_id = '%s' AND "
           "state = 'INFLIGHT'",
           id);
  assert_int_equal(testdb_query_int(&db, sql), 3);

  for (size_t i = 0; i < e.n; i++) {
    free((char *)e.marks[i].recipient_id);
    free((char *)e.marks[i].error);
  }
  free(e.marks);
  mark_writer_stop(mw);
  recipients_close(rd);
  lease_remove(lease, le);
  lease_stop(lease);
  registry_close(r);
  msg_free(m);
  free(id);
}

static int mw_setup(void **state)
{
  (void)state;
  testdb_create(&db, REGISTRY_SQLITE);
  return 0;
}

static int mw_teardown(void **state)
{
  (void)state;
  testdb_destroy(&db);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_end_during_a_pass_takes_the_outcomes),
  };
  return cmocka_run_group_tests_name("mark_writer_end_sqlite", tests, mw_setup,
                                     mw_teardown);
}
