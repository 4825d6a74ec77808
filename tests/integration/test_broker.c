/* test_broker.c - the AMQP session and the topology against the real
 * RabbitMQ: idempotent declaration checked through the management API,
 * confirmed publishes with their properties, returns and nacks, the DLX
 * and retry paths, argument-mismatch diagnosis, failover, reconnect after
 * a server-side close (with stale generations), heartbeats while idle,
 * the poll's wake fd. Each test declares its own prefix and deletes it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_impl.h"
#include "broker_testutil.h"
#include "clock.h"
#include "log.h"
#include "testenv.h"

static void cleanup(struct broker *b, const struct topology *t)
{
  assert_int_equal(topology_delete(b, t), SO_OK);
  broker_close(b);
}

static const char *jstr(json_object *o, const char *key)
{
  json_object *v = NULL;
  if (!json_object_object_get_ex(o, key, &v))
    return NULL;
  return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *key)
{
  json_object *v = NULL;
  if (!json_object_object_get_ex(o, key, &v))
    return -1;
  return json_object_get_int64(v);
}

static json_object *mgmt_object(const char *kind, const char *name)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s/%s", kind, bt_vhost(), name);
  json_object *j = bt_mgmt_get(path);
  if (!j)
    fail_msg("%s %s does not exist", kind, name);
  return j;
}

static void test_topology_declared_twice(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b1 = bt_open(&o);
  /* A second process declaring the same topology changes nothing. */
  struct broker *b2 = bt_open(&o);
  char err[512];
  assert_int_equal(topology_declare(b2, &t, err, sizeof(err)), SO_OK);
  broker_close(b2);

  json_object *q = mgmt_object("queues", t.campaigns);
  json_object *args = NULL;
  assert_true(json_object_object_get_ex(q, "arguments", &args));
  assert_string_equal(jstr(args, "x-queue-type"), "quorum");
  assert_int_equal(jint(args, "x-delivery-limit"), 5);
  assert_string_equal(jstr(args, "x-dead-letter-exchange"), t.dlx);
  assert_string_equal(jstr(args, "x-dead-letter-strategy"), "at-least-once");
  assert_string_equal(jstr(args, "x-overflow"), "reject-publish");
  assert_true(json_object_get_boolean(json_object_object_get(q, "durable")));
  json_object_put(q);

  q = mgmt_object("queues", t.retry[0].queue);
  assert_string_equal(t.retry[0].queue + strlen(t.exchange), ".retry.1s");
  assert_true(json_object_object_get_ex(q, "arguments", &args));
  assert_string_equal(jstr(args, "x-queue-type"), "quorum");
  assert_int_equal(jint(args, "x-message-ttl"), 1000);
  assert_string_equal(jstr(args, "x-dead-letter-exchange"), t.exchange);
  assert_string_equal(jstr(args, "x-dead-letter-routing-key"),
                      TOPOLOGY_ROUTING_KEY_DUE);
  json_object_put(q);
  q = mgmt_object("queues", t.retry[1].queue);
  assert_true(json_object_object_get_ex(q, "arguments", &args));
  assert_int_equal(jint(args, "x-message-ttl"), 30000);
  json_object_put(q);

  q = mgmt_object("queues", t.dead);
  assert_true(json_object_object_get_ex(q, "arguments", &args));
  assert_string_equal(jstr(args, "x-queue-type"), "quorum");
  json_object_put(q);

  const char *ex[][2] = {
      {t.exchange, "direct"}, {t.dlx, "fanout"}, {t.events, "topic"}};
  for (size_t i = 0; i < 3; i++) {
    json_object *e = mgmt_object("exchanges", ex[i][0]);
    assert_string_equal(jstr(e, "type"), ex[i][1]);
    assert_true(json_object_get_boolean(json_object_object_get(e, "durable")));
    json_object_put(e);
  }
  cleanup(b1, &t);
  /* The delete really deleted. */
  char path[512];
  snprintf(path, sizeof(path), "queues/%s/%s", bt_vhost(), t.campaigns);
  assert_null(bt_mgmt_get(path));
}

static void test_publish_properties_and_get(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  const char *body = "{\"schema\":1,\"campaign_id\":\"c-1\"}";
  struct broker_header extra[] = {{"x-sendonce-reason", "test"}};
  struct broker_message m = {
      .exchange = t.exchange,
      .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
      .body = body,
      .body_len = strlen(body),
      .message_id = "c-1",
      .attempt = 3,
      .headers = extra,
      .n_headers = 1,
      .mandatory = true,
  };
  assert_int_equal(broker_publish_confirmed(b, &m, err, sizeof(err)), SO_OK);

  struct broker_delivery *d = bt_get_wait(b, t.campaigns, 5000);
  assert_int_equal(d->body_len, strlen(body));
  assert_memory_equal(d->body, body, d->body_len);
  assert_string_equal(d->message_id, "c-1");
  assert_string_equal(d->content_type, "application/json");
  assert_string_equal(d->exchange, t.exchange);
  assert_string_equal(d->routing_key, TOPOLOGY_ROUTING_KEY_DUE);
  assert_string_equal(broker_delivery_header(d, "x-sendonce-campaign"), "c-1");
  assert_string_equal(broker_delivery_header(d, "x-sendonce-attempt"), "3");
  assert_string_equal(broker_delivery_header(d, "x-sendonce-reason"), "test");
  assert_true(d->timestamp_s > clock_now_ms() / 1000 - 60);
  assert_false(d->redelivered);
  assert_int_equal(d->generation, broker_generation(b));

  /* nack with requeue: it comes back, flagged redelivered. */
  assert_int_equal(broker_nack(b, d->generation, d->tag, true), SO_OK);
  broker_delivery_free(d);
  d = bt_get_wait(b, t.campaigns, 5000);
  assert_true(d->redelivered);
  assert_string_equal(d->message_id, "c-1");
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
  assert_int_equal(broker_get(b, t.campaigns, &d, err, sizeof(err)),
                   SO_ERR_NOTFOUND);

  /* Exact counts by passive declare. */
  uint32_t messages = 99, consumers = 99;
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-2", "{}");
  assert_int_equal(broker_queue_counts(b, t.campaigns, &messages, &consumers,
                                       err, sizeof(err)),
                   SO_OK);
  assert_int_equal(messages, 1);
  assert_int_equal(consumers, 0);
  assert_int_equal(broker_queue_counts(b, "sotest-no-such-queue", &messages,
                                       NULL, err, sizeof(err)),
                   SO_ERR_NOTFOUND);
  assert_true(broker_is_up(b));
  cleanup(b, &t);
}

static void test_unroutable_is_returned(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  struct broker_message m = {
      .exchange = t.exchange,
      .routing_key = "no.such.key",
      .body = "{}",
      .body_len = 2,
      .message_id = "c-unroutable",
      .mandatory = true,
  };
  assert_int_equal(broker_publish_confirmed(b, &m, err, sizeof(err)),
                   SO_ERR_REFUSED);
  assert_non_null(strstr(err, "unroutable"));
  /* An unknown exchange closes the publish channel only. */
  m.exchange = "sotest-no-such-exchange";
  assert_int_equal(broker_publish_confirmed(b, &m, err, sizeof(err)),
                   SO_ERR_REFUSED);
  assert_non_null(strstr(err, "NOT_FOUND"));
  uint64_t gen = broker_generation(b);
  /* The session carries on: the next publish works, same generation. */
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-after", "{}");
  assert_int_equal(broker_generation(b), gen);
  struct broker_delivery *d = bt_get_wait(b, t.campaigns, 5000);
  assert_string_equal(d->message_id, "c-after");
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
  cleanup(b, &t);
}

static void test_full_queue_nacks(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  char tiny[TOPOLOGY_NAME_MAX + 8];
  snprintf(tiny, sizeof(tiny), "%s.tiny", t.exchange);
  /* A classic queue holding one message, refusing more. */
  amqp_table_entry_t a[2];
  a[0].key = amqp_cstring_bytes("x-max-length");
  a[0].value.kind = AMQP_FIELD_KIND_I64;
  a[0].value.value.i64 = 1;
  a[1].key = amqp_cstring_bytes("x-overflow");
  a[1].value.kind = AMQP_FIELD_KIND_UTF8;
  a[1].value.value.bytes = amqp_cstring_bytes("reject-publish");
  amqp_table_t args = {2, a};
  amqp_queue_declare(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(tiny), 0, 1, 0,
                     0, args);
  assert_int_equal(amqp_get_rpc_reply(b->conn).reply_type,
                   AMQP_RESPONSE_NORMAL);

  bt_publish(b, "", tiny, "c-first", "{}");
  struct broker_message m = {
      .exchange = "",
      .routing_key = tiny,
      .body = "{}",
      .body_len = 2,
      .message_id = "c-second",
      .mandatory = true,
  };
  assert_int_equal(broker_publish_confirmed(b, &m, err, sizeof(err)),
                   SO_ERR_REFUSED);
  assert_non_null(strstr(err, "nack"));
  struct broker_delivery *d = bt_get_wait(b, tiny, 2000);
  assert_string_equal(d->message_id, "c-first");
  broker_delivery_free(d);
  amqp_queue_delete(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(tiny), 0, 0);
  assert_int_equal(amqp_get_rpc_reply(b->conn).reply_type,
                   AMQP_RESPONSE_NORMAL);
  cleanup(b, &t);
}

static void test_dead_letter_and_retry(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";

  /* nack without requeue: the main queue dead-letters it to the DLQ. */
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-dl", "{}");
  struct broker_delivery *d = bt_get_wait(b, t.campaigns, 5000);
  assert_int_equal(broker_nack(b, d->generation, d->tag, false), SO_OK);
  broker_delivery_free(d);
  d = bt_get_wait(b, t.dead, 5000);
  assert_string_equal(d->message_id, "c-dl");
  assert_int_equal(d->death_count, 1);
  assert_string_equal(d->death_reason, "rejected");
  assert_string_equal(d->death_queue, t.campaigns);
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);

  /* Our own dead-lettering with a reason: a confirmed copy to the DLX. */
  struct broker_header why[] = {{"x-sendonce-error", "bad-json"}};
  struct broker_message m = {.exchange = t.dlx,
                             .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
                             .body = "{",
                             .body_len = 1,
                             .message_id = "c-bad",
                             .headers = why,
                             .n_headers = 1,
                             .mandatory = true};
  assert_int_equal(broker_publish_confirmed(b, &m, err, sizeof(err)), SO_OK);
  d = bt_get_wait(b, t.dead, 5000);
  assert_string_equal(broker_delivery_header(d, "x-sendonce-error"),
                      "bad-json");
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);

  /* The 1 s retry queue sends it back to the main queue. */
  const char *rq = topology_retry_queue(&t, 1);
  assert_string_equal(rq, t.retry[0].queue);
  assert_string_equal(topology_retry_queue(&t, 2), t.retry[1].queue);
  assert_string_equal(topology_retry_queue(&t, 999), t.retry[1].queue);
  int64_t t0 = clock_monotonic_ms();
  m = (struct broker_message){.exchange = "",
                              .routing_key = rq,
                              .body = "{}",
                              .body_len = 2,
                              .message_id = "c-retry",
                              .attempt = 1,
                              .mandatory = true};
  assert_int_equal(broker_publish_confirmed(b, &m, err, sizeof(err)), SO_OK);
  d = bt_get_wait(b, t.campaigns, 15000);
  assert_true(clock_monotonic_ms() - t0 >= 900);
  assert_string_equal(d->message_id, "c-retry");
  assert_string_equal(d->death_reason, "expired");
  assert_string_equal(d->death_queue, rq);
  assert_string_equal(broker_delivery_header(d, "x-sendonce-attempt"), "1");
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
  cleanup(b, &t);
}

static void test_mismatch_is_explained(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  /* Someone made P.campaigns a classic queue without our arguments. */
  bt_options(&o, NULL, NULL);
  struct broker *plain = bt_open(&o);
  amqp_queue_declare(plain->conn, BROKER_CH_MAIN,
                     amqp_cstring_bytes(t.campaigns), 0, 1, 0, 0,
                     amqp_empty_table);
  assert_int_equal(amqp_get_rpc_reply(plain->conn).reply_type,
                   AMQP_RESPONSE_NORMAL);

  bt_options(&o, NULL, &t);
  struct broker *b = NULL;
  char err[1024] = "";
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_OK);
  assert_int_equal(broker_connect(b, err, sizeof(err)), SO_ERR_CONFLICT);
  /* RabbitMQ names the first argument it checks that differs (in 3.10:
   * x-dead-letter-exchange); the message must name it, both values and
   * the fix. */
  assert_non_null(strstr(err, t.campaigns));
  assert_non_null(strstr(err, "already exists with a different x-"));
  assert_non_null(strstr(err, "none (not set)"));
  assert_non_null(strstr(err, "topology.prefix"));
  assert_false(broker_is_up(b));
  broker_close(b);
  /* The explicit declare on a live session says the same, and the
   * session survives it (the channel is reopened). */
  assert_int_equal(topology_declare(plain, &t, err, sizeof(err)),
                   SO_ERR_CONFLICT);
  assert_non_null(strstr(err, "already exists with a different x-"));
  assert_true(broker_is_up(plain));
  cleanup(plain, &t);
}

static int count_fds(void)
{
  int n = 0;
  for (int fd = 0; fd < 1024; fd++)
    if (fcntl(fd, F_GETFD) != -1)
      n++;
  return n;
}

static void test_failover_to_second_uri(void **state)
{
  (void)state;
  int fds = count_fds();
  struct broker_options o;
  bt_options(&o, NULL, NULL);
  int closed = bt_free_port(); /* nobody listens there */
  o.uris[0] = bt_uri_port("amqp", "127.0.0.1", closed);
  o.uris[1] = testenv_get("SENDONCE_BROKER_URI");
  o.n_uris = 2;
  struct broker *b = bt_open(&o);
  assert_string_equal(broker_current_uri(b), o.uris[1]);
  assert_true(broker_is_up(b));
  broker_disconnect(b); /* a loss and a reconnect leak nothing either */
  char err[256];
  clock_sleep_ms(500, NULL);
  assert_int_equal(broker_connect(b, err, sizeof(err)), SO_OK);
  broker_close(b);
  assert_int_equal(count_fds(), fds);
}

/* Close our connection from the server side, as an operator would. */
static void close_from_server(const char *conn_name)
{
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "rabbitmqctl -q list_connections pid client_properties | "
           "grep -F '%s' | cut -f1 | while read -r pid; do "
           "rabbitmqctl -q close_connection \"$pid\" sendonce-test "
           "</dev/null; done",
           conn_name);
  assert_int_equal(system(cmd), 0);
}

static void test_reconnect_after_server_close(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  assert_int_equal(broker_consume(b, t.campaigns, 2, err, sizeof(err)), SO_OK);
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-rc", "{}");
  struct broker_delivery *d = NULL;
  int rc = SO_ERR_TIMEOUT;
  for (int i = 0; i < 50 && rc == SO_ERR_TIMEOUT; i++)
    rc = broker_poll(b, 100, -1, &d, err, sizeof(err));
  assert_int_equal(rc, SO_OK);
  uint64_t gen1 = d->generation, tag1 = d->tag;
  assert_false(d->redelivered);
  assert_string_equal(d->consumer_queue, t.campaigns);
  broker_delivery_free(d);

  close_from_server(broker_connection_name(b));
  /* The pump notices, reconnects, re-consumes; the broker redelivers. */
  d = NULL;
  int64_t until = clock_monotonic_ms() + 20000;
  while (!d && clock_monotonic_ms() < until) {
    rc = broker_poll(b, 200, -1, &d, err, sizeof(err));
    assert_true(rc == SO_OK || rc == SO_ERR_TIMEOUT ||
                rc == SO_ERR_UNAVAILABLE);
  }
  assert_non_null(d);
  assert_string_equal(d->message_id, "c-rc");
  assert_true(d->redelivered);
  assert_true(d->generation > gen1);
  /* The old delivery tag is void: acking it is refused, not sent. */
  assert_int_equal(broker_ack(b, gen1, tag1), SO_ERR_CONFLICT);
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
  assert_true(broker_is_up(b));
  assert_int_equal(broker_cancel_all(b), SO_OK);
  cleanup(b, &t);
}

static void test_deliveries_kept_during_confirm_wait(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  assert_int_equal(broker_consume(b, t.campaigns, 10, err, sizeof(err)), SO_OK);
  /* Each publish waits for its confirm while earlier messages are
   * delivered to our own consumer on the same connection. */
  char id[32];
  for (int i = 0; i < 5; i++) {
    snprintf(id, sizeof(id), "c-%d", i);
    bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, id, "{}");
  }
  /* They arrived while we waited for confirms, and were kept. */
  assert_non_null(b->pending_head);
  for (int i = 0; i < 5; i++) {
    struct broker_delivery *d = bt_poll_wait(b, 5000);
    snprintf(id, sizeof(id), "c-%d", i);
    assert_string_equal(d->message_id, id);
    assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
    broker_delivery_free(d);
  }
  cleanup(b, &t);
}

static void test_channel_error_reopens(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  assert_int_equal(broker_consume(b, t.campaigns, 1, err, sizeof(err)), SO_OK);
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-ch", "{}");
  struct broker_delivery *d = bt_poll_wait(b, 5000);
  uint64_t gen = d->generation;
  /* An unknown delivery tag makes the broker close channel 1. */
  assert_int_equal(broker_ack(b, gen, d->tag + 1000), SO_OK);
  broker_delivery_free(d);
  d = bt_poll_wait(b, 10000);
  assert_string_equal(d->message_id, "c-ch");
  assert_true(d->redelivered);
  assert_true(d->generation > gen);
  assert_int_equal(broker_ack(b, gen, d->tag), SO_ERR_CONFLICT);
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
  cleanup(b, &t);
}

static void test_consume_missing_queue(void **state)
{
  (void)state;
  struct broker_options o;
  bt_options(&o, NULL, NULL);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  assert_int_equal(
      broker_consume(b, "sotest-no-such-queue", 1, err, sizeof(err)),
      SO_ERR_NOTFOUND);
  assert_non_null(strstr(err, "sotest-no-such-queue"));
  struct broker_delivery *d = NULL;
  assert_int_equal(broker_poll(b, 100, -1, &d, err, sizeof(err)),
                   SO_ERR_TIMEOUT);
  assert_true(broker_is_up(b));
  broker_close(b);
}

static void test_queue_deleted_under_consumer(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  assert_int_equal(broker_consume(b, t.campaigns, 1, err, sizeof(err)), SO_OK);
  /* Someone deletes the queue: the broker cancels our consumer (we asked
   * for consumer_cancel_notify); re-consuming finds no queue, so the
   * consumer is dropped and the session carries on. */
  bt_options(&o, NULL, NULL);
  struct broker *other = bt_open(&o);
  assert_int_equal(topology_delete(other, &t), SO_OK);
  broker_close(other);
  struct broker_delivery *d = NULL;
  int64_t until = clock_monotonic_ms() + 5000;
  while (b->n_consumers > 0 && clock_monotonic_ms() < until) {
    int rc = broker_poll(b, 100, -1, &d, err, sizeof(err));
    assert_int_equal(rc, SO_ERR_TIMEOUT);
  }
  assert_int_equal(b->n_consumers, 0);
  assert_int_equal(broker_poll(b, 100, -1, &d, err, sizeof(err)),
                   SO_ERR_TIMEOUT);
  assert_true(broker_is_up(b));
  broker_close(b);
}

static void test_cancel_stops_deliveries(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  char err[512] = "";
  assert_int_equal(broker_consume(b, t.campaigns, 5, err, sizeof(err)), SO_OK);
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-before", "{}");
  struct broker_delivery *d = bt_poll_wait(b, 5000);
  assert_string_equal(d->message_id, "c-before");
  /* Shutdown order: stop consuming, then give back what we hold. */
  assert_int_equal(broker_cancel_all(b), SO_OK);
  assert_int_equal(broker_nack(b, d->generation, d->tag, true), SO_OK);
  broker_delivery_free(d);
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-after", "{}");
  int64_t until = clock_monotonic_ms() + 1000;
  while (clock_monotonic_ms() < until) {
    assert_int_equal(broker_poll(b, 200, -1, &d, err, sizeof(err)),
                     SO_ERR_TIMEOUT);
  }
  /* Both wait in the queue for the next consumer. */
  uint32_t messages = 0;
  assert_int_equal(
      broker_queue_counts(b, t.campaigns, &messages, NULL, err, sizeof(err)),
      SO_OK);
  assert_int_equal(messages, 2);
  cleanup(b, &t);
}

static void test_idle_pump_keeps_heartbeats(void **state)
{
  (void)state;
  struct broker_options o;
  bt_options(&o, NULL, NULL);
  o.heartbeat_s = 1; /* the broker drops us after ~2 s of silence */
  struct broker *b = bt_open(&o);
  uint64_t gen = broker_generation(b);
  struct broker_delivery *d = NULL;
  char err[256];
  int64_t until = clock_monotonic_ms() + 4500;
  while (clock_monotonic_ms() < until)
    assert_int_equal(broker_poll(b, 700, -1, &d, err, sizeof(err)),
                     SO_ERR_TIMEOUT);
  assert_true(broker_is_up(b));
  assert_int_equal(broker_generation(b), gen);
  broker_close(b);
}

static void test_poll_wakes_on_fd(void **state)
{
  (void)state;
  struct broker_options o;
  bt_options(&o, NULL, NULL);
  struct broker *b = bt_open(&o);
  int p[2];
  assert_int_equal(pipe(p), 0);
  assert_int_equal(write(p[1], "x", 1), 1);
  struct broker_delivery *d = NULL;
  char err[256];
  int64_t t0 = clock_monotonic_ms();
  assert_int_equal(broker_poll(b, 5000, p[0], &d, err, sizeof(err)),
                   SO_ERR_TIMEOUT);
  assert_true(clock_monotonic_ms() - t0 < 1000);
  close(p[0]);
  close(p[1]);
  broker_close(b);
}

static void test_bad_options_refused(void **state)
{
  (void)state;
  struct broker_options o;
  struct broker *b = NULL;
  char err[512];
  bt_options(&o, NULL, NULL);
  o.heartbeat_s = 0;
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_ERR_INVALID);
  assert_non_null(strstr(err, "heartbeat"));
  bt_options(&o, "amqp://u:secret@127.0.0.1/x", NULL);
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_ERR_INVALID);
  assert_null(strstr(err, "secret"));
  bt_options(&o, "amqps://127.0.0.1/x", NULL);
  o.tls_verify_peer = true;
  o.tls_ca_file = "/nonexistent/ca.pem";
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_OK);
  assert_int_equal(broker_connect(b, err, sizeof(err)), SO_ERR_INVALID);
  assert_non_null(strstr(err, "ca_file"));
  broker_close(b);
  /* A message without an id, or with a negative attempt, is refused
   * before anything is sent (no connection needed). */
  bt_options(&o, NULL, NULL);
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_OK);
  struct broker_message m = {
      .exchange = "", .routing_key = "q", .body = "{}", .body_len = 2};
  assert_int_equal(broker_publish_confirmed(b, &m, err, sizeof(err)),
                   SO_ERR_INVALID);
  m.message_id = "c-1";
  m.attempt = -1;
  assert_int_equal(broker_publish_confirmed(b, &m, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_false(broker_is_up(b));
  broker_close(b);
  /* A wrong password is refused at login, and never echoed. */
  bt_options(&o, NULL, NULL);
  o.password = "not-the-password";
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_OK);
  assert_int_equal(broker_connect(b, err, sizeof(err)), SO_ERR_REFUSED);
  assert_null(strstr(err, "not-the-password"));
  broker_close(b);
}

int main(void)
{
  /* BROKER_TEST_FILTER=test_x runs one case; SENDONCE_TEST_DEBUG=1 logs. */
  if (getenv("BROKER_TEST_FILTER"))
    cmocka_set_test_filter(getenv("BROKER_TEST_FILTER"));
  if (getenv("SENDONCE_TEST_DEBUG"))
    log_set_level(LOG_LEVEL_DEBUG);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_options_refused),
      cmocka_unit_test(test_topology_declared_twice),
      cmocka_unit_test(test_publish_properties_and_get),
      cmocka_unit_test(test_unroutable_is_returned),
      cmocka_unit_test(test_full_queue_nacks),
      cmocka_unit_test(test_dead_letter_and_retry),
      cmocka_unit_test(test_mismatch_is_explained),
      cmocka_unit_test(test_failover_to_second_uri),
      cmocka_unit_test(test_reconnect_after_server_close),
      cmocka_unit_test(test_deliveries_kept_during_confirm_wait),
      cmocka_unit_test(test_channel_error_reopens),
      cmocka_unit_test(test_consume_missing_queue),
      cmocka_unit_test(test_queue_deleted_under_consumer),
      cmocka_unit_test(test_cancel_stops_deliveries),
      cmocka_unit_test(test_idle_pump_keeps_heartbeats),
      cmocka_unit_test(test_poll_wakes_on_fd),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
