/* test_topology.c - topology names, retry queue choice and the
 * argument-mismatch explanation (pure functions, no broker). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "topology.h"

static void test_names(void **state)
{
  (void)state;
  struct topology t;
  char err[256];
  const int delays[] = {300, 10, 60};
  assert_int_equal(topology_init(&t, "acme", 7, delays, 3, err, sizeof(err)),
                   SO_OK);
  assert_string_equal(t.exchange, "acme");
  assert_string_equal(t.campaigns, "acme.campaigns");
  assert_string_equal(t.dlx, "acme.dlx");
  assert_string_equal(t.dead, "acme.dead");
  assert_string_equal(t.events, "acme.events");
  assert_int_equal(t.n_retry, 3);
  assert_string_equal(t.retry[0].queue, "acme.retry.10s");
  assert_string_equal(t.retry[1].queue, "acme.retry.60s");
  assert_string_equal(t.retry[2].queue, "acme.retry.300s");
  assert_int_equal(t.delivery_limit, 7);
  assert_string_equal(topology_retry_queue(&t, 0), "acme.retry.10s");
  assert_string_equal(topology_retry_queue(&t, 11), "acme.retry.60s");
  assert_string_equal(topology_retry_queue(&t, 60), "acme.retry.60s");
  assert_string_equal(topology_retry_queue(&t, 10000), "acme.retry.300s");
  assert_int_equal(topology_init(&t, "acme", 7, NULL, 0, err, sizeof(err)),
                   SO_OK);
  assert_null(topology_retry_queue(&t, 5));
}

static void test_bad_input(void **state)
{
  (void)state;
  struct topology t;
  char err[256];
  const int dup[] = {10, 10};
  const int zero[] = {0};
  assert_int_equal(topology_init(&t, "", 5, NULL, 0, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_int_equal(topology_init(&t, "a b", 5, NULL, 0, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_int_equal(topology_init(&t, "a/b", 5, NULL, 0, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_int_equal(topology_init(&t, "ok", 0, NULL, 0, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_int_equal(topology_init(&t, "ok", 5, dup, 2, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_int_equal(topology_init(&t, "ok", 5, zero, 1, err, sizeof(err)),
                   SO_ERR_INVALID);
}

static void test_explain_mismatch(void **state)
{
  (void)state;
  char out[1024];
  static const struct {
    const char *reply;
    const char *must[4];
  } cases[] = {
      {"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue "
       "'p.campaigns' in vhost 'sendonce': received the value 'quorum' of "
       "type 'longstr' but current is none",
       {"queue 'p.campaigns'", "x-queue-type", "'quorum'", "none (not set)"}},
      {"PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue "
       "'p.campaigns' in vhost 'v': received the value '5' of type 'long' "
       "but current is the value '20' of type 'long'",
       {"x-delivery-limit", "'5'", "'20'", "topology.prefix"}},
      /* RabbitMQ 3.10's wording for numbers, and for an argument the
       * existing queue has and we do not declare. */
      {"PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue "
       "'q' in vhost 'v': received '7' but current is '5'",
       {"queue 'q'", "x-delivery-limit", "declares '7'", "has '5'"}},
      {"PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue "
       "'q' in vhost 'v': received none but current is the value '5' of type "
       "'signedint'",
       {"declares none (not set)", "has '5'", "x-delivery-limit", "'q'"}},
      {"PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'p' in "
       "vhost 'v': received 'direct' but current is 'fanout'",
       {"exchange 'p'", "different type", "'direct'", "'fanout'"}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_int_equal(
        topology_explain_mismatch(cases[i].reply, out, sizeof(out)), SO_OK);
    for (size_t j = 0; j < 4; j++)
      if (!strstr(out, cases[i].must[j]))
        fail_msg("case %zu: '%s' not in: %s", i, cases[i].must[j], out);
  }
  assert_int_equal(
      topology_explain_mismatch("NOT_FOUND - no queue 'x'", out, sizeof(out)),
      SO_ERR_INVALID);
  assert_string_equal(out, "NOT_FOUND - no queue 'x'");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_explain_mismatch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
