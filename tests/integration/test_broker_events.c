/* test_broker_events.c - best-effort publishing (lifecycle events) on the
 * real RabbitMQ: broker_publish_unconfirmed() needs no round trip yet
 * delivers in order, and a broker-side refusal (no such exchange) closes
 * only its own channel: consuming, acks and confirmed publishing go on in
 * the same generation, and the events channel comes back after the
 * hold-off. And batches (broker_batch_begin/end): the acks and events of
 * a batch leave in one write, acks of the lowest outstanding deliveries
 * as one multiple ack that never covers a delivery not acked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker_impl.h"
#include "broker_testutil.h"
#include "clock.h"
#include "log.h"

static int send_nowait(struct broker *b, const char *exchange, const char *id)
{
  char err[512] = "";
  struct broker_header h = {"x-sendonce-event", "campaign.claimed"};
  struct broker_message m = {
      .exchange = exchange,
      .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
      .body = "{}",
      .body_len = 2,
      .message_id = id,
      .headers = &h,
      .n_headers = 1,
  };
  return broker_publish_unconfirmed(b, &m, err, sizeof(err));
}

/* Take the next delivery, check its id, ack it in the same generation. */
static void expect_next(struct broker *b, const char *id, uint64_t generation)
{
  struct broker_delivery *d = bt_poll_wait(b, 5000);
  assert_string_equal(d->message_id, id);
  assert_int_equal(d->generation, generation);
  assert_non_null(broker_delivery_header(d, "x-sendonce-campaign"));
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
}

/* A broker on a topology of its own, consuming its campaigns queue. */
static struct broker *open_consuming(struct topology *t)
{
  struct broker_options o;
  bt_topology(t);
  bt_options(&o, NULL, t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  assert_int_equal(broker_consume(b, t->campaigns, 10, err, sizeof(err)),
                   SO_OK);
  return b;
}

static void test_unconfirmed_delivers_in_order(void **state)
{
  (void)state;
  struct topology t;
  struct broker *b = open_consuming(&t);
  uint64_t gen = broker_generation(b);
  char err[512] = "";
  char id[32];
  for (int i = 0; i < 20; i++) {
    snprintf(id, sizeof(id), "ev-%d", i);
    assert_int_equal(send_nowait(b, t.exchange, id), SO_OK);
  }
  /* Nothing was waited for: no confirm channel state was touched. */
  assert_int_equal(b->pub_state, BROKER_PUB_IDLE);
  assert_true(b->ev_open);
  for (int i = 0; i < 20; i++) {
    snprintf(id, sizeof(id), "ev-%d", i);
    expect_next(b, id, gen);
  }
  /* A mandatory message is refused: there are no returns on channel 3. */
  struct broker_message m = {.exchange = t.exchange,
                             .routing_key = "x",
                             .message_id = "m",
                             .mandatory = true};
  assert_int_equal(broker_publish_unconfirmed(b, &m, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_int_equal(topology_delete(b, &t), SO_OK);
  broker_close(b);
}

static void test_refused_event_spares_consuming(void **state)
{
  (void)state;
  struct topology t;
  struct broker *b = open_consuming(&t);
  uint64_t gen = broker_generation(b);
  char err[512] = "";
  char missing[300];
  snprintf(missing, sizeof(missing), "%s.no-such-exchange", t.exchange);
  /* Written without a round trip; the broker answers with channel.close
   * 404 on channel 3 only. */
  assert_int_equal(send_nowait(b, missing, "lost-1"), SO_OK);
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "after-1", "{}");
  expect_next(b, "after-1", gen);
  /* Channels answer independently: pump until the close is read. */
  int64_t until = clock_monotonic_ms() + 5000;
  while (b->ev_open && clock_monotonic_ms() < until) {
    struct broker_delivery *d = NULL;
    int rc = broker_poll(b, 20, -1, &d, err, sizeof(err));
    assert_int_equal(rc, SO_ERR_TIMEOUT);
  }
  /* Channel 3 is down and held off; channel 1 never closed. */
  assert_false(b->ev_open);
  assert_true(b->main_open);
  assert_true(broker_is_up(b));
  assert_int_equal(send_nowait(b, t.exchange, "held"), SO_ERR_UNAVAILABLE);
  /* After the hold-off the events channel reopens and delivers again. */
  clock_sleep_ms(BROKER_EVENTS_HOLD_MS + 100, NULL);
  assert_int_equal(send_nowait(b, t.exchange, "back-1"), SO_OK);
  expect_next(b, "back-1", gen);
  assert_int_equal(broker_generation(b), gen);
  assert_int_equal(topology_delete(b, &t), SO_OK);
  broker_close(b);
}

/* Publish n triggers m1..mn and take their deliveries into d[]. */
static void deliver_n(struct broker *b, const struct topology *t,
                      struct broker_delivery **d, int n)
{
  char id[32];
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof(id), "m%d", i + 1);
    bt_publish(b, t->exchange, TOPOLOGY_ROUTING_KEY_DUE, id, "{}");
  }
  for (int i = 0; i < n; i++) {
    d[i] = bt_poll_wait(b, 5000);
    snprintf(id, sizeof(id), "m%d", i + 1);
    assert_string_equal(d[i]->message_id, id);
  }
}

static void ack_free(struct broker *b, struct broker_delivery *d)
{
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
}

/* reopen: a new plain session (no consumer) on t's broker. */
static struct broker *reopen(const struct topology *t)
{
  struct broker_options o;
  bt_options(&o, NULL, t);
  return bt_open(&o);
}

/* drop: delete the test's topology through b, then close b. */
static void drop(struct broker *b, const struct topology *t)
{
  assert_int_equal(topology_delete(b, t), SO_OK);
  broker_close(b);
}

/* After the session that consumed is gone: what its queue holds ready. */
static uint32_t ready_after_close(const struct topology *t, uint32_t want)
{
  struct broker *b = reopen(t);
  char err[512] = "";
  uint32_t n = 0;
  /* The broker requeues a closed channel's deliveries moments later. */
  int64_t until = clock_monotonic_ms() + 5000;
  do {
    assert_int_equal(
        broker_queue_counts(b, t->campaigns, &n, NULL, err, sizeof(err)),
        SO_OK);
    if (n == want)
      break;
    clock_sleep_ms(50, NULL);
  } while (clock_monotonic_ms() < until);
  broker_close(b);
  return n;
}

static void test_batch_is_one_write(void **state)
{
  (void)state;
  struct topology t;
  struct broker *b = open_consuming(&t);
  uint64_t gen = broker_generation(b);
  /* The first event opens the events channel, an RPC. */
  assert_int_equal(send_nowait(b, t.exchange, "ev-0"), SO_OK);
  expect_next(b, "ev-0", gen);
  struct broker_delivery *d[3];
  deliver_n(b, &t, d, 3);
  uint64_t writes = b->n_writes, multi = b->n_multi_acks;
  broker_batch_begin(b);
  ack_free(b, d[2]);
  ack_free(b, d[0]);
  assert_int_equal(send_nowait(b, t.exchange, "ev-1"), SO_OK);
  ack_free(b, d[1]);
  assert_int_equal(send_nowait(b, t.exchange, "ev-2"), SO_OK);
  /* Nothing has been written yet... */
  assert_int_equal(b->n_writes, writes);
  assert_int_equal(broker_batch_end(b), SO_OK);
  /* ...and then all of it at once, the three acks as one. */
  assert_int_equal(b->n_writes, writes + 1);
  assert_int_equal(b->n_multi_acks, multi + 1);
  expect_next(b, "ev-1", gen);
  expect_next(b, "ev-2", gen);
  assert_true(broker_is_up(b));
  assert_int_equal(broker_generation(b), gen);
  assert_int_equal(broker_cancel_all(b), SO_OK);
  broker_close(b);
  /* Everything was acked: nothing comes back. */
  assert_int_equal(ready_after_close(&t, 0), 0);
  drop(reopen(&t), &t);
}

static void test_multiple_ack_spares_unsettled(void **state)
{
  (void)state;
  struct topology t;
  struct broker *b = open_consuming(&t);
  struct broker_delivery *d[5];
  deliver_n(b, &t, d, 5);
  uint64_t multi = b->n_multi_acks;
  /* m1-m3 are the lowest outstanding: one multiple ack. */
  broker_batch_begin(b);
  ack_free(b, d[2]);
  ack_free(b, d[0]);
  ack_free(b, d[1]);
  assert_int_equal(broker_batch_end(b), SO_OK);
  assert_int_equal(b->n_multi_acks, multi + 1);
  /* m5 above an outstanding m4: a multiple ack would settle m4 too. */
  broker_batch_begin(b);
  ack_free(b, d[4]);
  assert_int_equal(broker_batch_end(b), SO_OK);
  assert_int_equal(b->n_multi_acks, multi + 1);
  broker_delivery_free(d[3]);
  assert_int_equal(broker_cancel_all(b), SO_OK);
  broker_close(b);
  /* m4 was never acked: the broker requeued it, and only it. */
  assert_int_equal(ready_after_close(&t, 1), 1);
  b = reopen(&t);
  struct broker_delivery *m4 = bt_get_wait(b, t.campaigns, 5000);
  assert_string_equal(m4->message_id, "m4");
  broker_delivery_free(m4);
  drop(b, &t);
}

static void test_nack_in_batch_not_covered(void **state)
{
  (void)state;
  struct topology t;
  struct broker *b = open_consuming(&t);
  struct broker_delivery *d[3];
  deliver_n(b, &t, d, 3);
  uint64_t multi = b->n_multi_acks;
  /* m2 goes back to its queue; m1 and m3 are acked with one multiple ack
   * written after the nack, which it cannot touch any more. */
  broker_batch_begin(b);
  ack_free(b, d[0]);
  assert_int_equal(broker_nack(b, d[1]->generation, d[1]->tag, true), SO_OK);
  broker_delivery_free(d[1]);
  ack_free(b, d[2]);
  assert_int_equal(broker_batch_end(b), SO_OK);
  assert_int_equal(b->n_multi_acks, multi + 1);
  /* The requeued m2 comes back on this very session. */
  struct broker_delivery *again = bt_poll_wait(b, 5000);
  assert_string_equal(again->message_id, "m2");
  ack_free(b, again);
  assert_int_equal(broker_cancel_all(b), SO_OK);
  broker_close(b);
  assert_int_equal(ready_after_close(&t, 0), 0);
  drop(reopen(&t), &t);
}

int main(void)
{
  if (getenv("SENDONCE_TEST_DEBUG"))
    log_set_level(LOG_LEVEL_DEBUG);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unconfirmed_delivers_in_order),
      cmocka_unit_test(test_refused_event_spares_consuming),
      cmocka_unit_test(test_batch_is_one_write),
      cmocka_unit_test(test_multiple_ack_spares_unsettled),
      cmocka_unit_test(test_nack_in_batch_not_covered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
