/* test_broker_faults.c - the session when the path to the broker misbehaves:
 *  - the paused proxy: socat between us and RabbitMQ, SIGSTOPped; a
 *    confirmed publish (small, then one too big for the socket buffers)
 *    must come back with an error within a bound, not hang;
 *  - TLS: socat as a TLS front of the real broker with a throwaway CA;
 *    the right CA works, a wrong CA is refused with a clear message.
 * The shared broker is never reconfigured or restarted.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_testutil.h"
#include "clock.h"
#include "testenv.h"

#define OP_TIMEOUT_MS 1500

static pid_t start_proxy(int port)
{
  char listen[128], target[64];
  snprintf(listen, sizeof(listen),
           "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", port);
  snprintf(target, sizeof(target), "TCP:127.0.0.1:5672");
  char prog[] = "socat";
  char *argv[] = {prog, listen, target, NULL};
  return bt_spawn(argv, port);
}

static int publish(struct broker *b, const struct topology *t, const char *id,
                   const void *body, size_t len, int64_t *took_ms)
{
  char err[512] = "";
  struct broker_message m = {.exchange = t->exchange,
                             .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
                             .body = body,
                             .body_len = len,
                             .message_id = id,
                             .mandatory = true};
  int64_t t0 = clock_monotonic_ms();
  int rc = broker_publish_confirmed(b, &m, err, sizeof(err));
  *took_ms = clock_monotonic_ms() - t0;
  return rc;
}

static void test_paused_proxy_publish_returns(void **state)
{
  (void)state;
  struct topology t;
  struct broker_options o;
  int64_t took;
  bt_topology(&t);
  int port = bt_free_port();
  pid_t proxy = start_proxy(port);
  bt_options(&o, bt_uri_port("amqp", "127.0.0.1", port), &t);
  o.op_timeout_ms = OP_TIMEOUT_MS;
  o.heartbeat_s = 30; /* the bound must come from us, not the heartbeat */
  struct broker *small = bt_open(&o);
  struct broker *large = bt_open(&o);
  bt_publish(small, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-before", "{}");

  assert_int_equal(kill(-proxy, SIGSTOP), 0);
  /* A small message fits the socket buffers; its confirm never comes. */
  int rc = publish(small, &t, "c-paused", "{}", 2, &took);
  assert_int_equal(rc, SO_ERR_TIMEOUT);
  assert_true(took < 3 * OP_TIMEOUT_MS);
  assert_false(broker_is_up(small));

  /* A message larger than every socket buffer on the way: the send itself
   * blocks inside rabbitmq-c, and only the guard can end it. */
  size_t big_len = 32u << 20;
  char *big = malloc(big_len);
  assert_non_null(big);
  memset(big, ' ', big_len);
  rc = publish(large, &t, "c-big", big, big_len, &took);
  assert_int_equal(rc, SO_ERR_TIMEOUT);
  assert_true(took < 3 * OP_TIMEOUT_MS);
  assert_false(broker_is_up(large));
  free(big);

  /* Reconnecting through the paused proxy is bounded too (TCP connects,
   * the AMQP handshake never completes). */
  clock_sleep_ms(500, NULL); /* past the backoff */
  struct broker_delivery *d = NULL;
  char err[512];
  int64_t t0 = clock_monotonic_ms();
  rc = broker_poll(small, 100, -1, &d, err, sizeof(err));
  assert_int_not_equal(rc, SO_OK);
  assert_true(clock_monotonic_ms() - t0 <
              3 * (OP_TIMEOUT_MS + o.connect_timeout_ms));

  /* The path comes back: so does the session. */
  assert_int_equal(kill(-proxy, SIGCONT), 0);
  int64_t until = clock_monotonic_ms() + 15000;
  while (!broker_is_up(small) && clock_monotonic_ms() < until) {
    rc = broker_poll(small, 100, -1, &d, err, sizeof(err));
    broker_delivery_free(d);
    d = NULL;
  }
  assert_true(broker_is_up(small));
  assert_int_equal(publish(small, &t, "c-after", "{}", 2, &took), SO_OK);
  broker_close(small);
  broker_close(large);
  bt_kill(proxy);

  /* What reached the queue: c-before first; c-after confirmed. (c-paused
   * may or may not have arrived: its outcome was unknown, which is what
   * SO_ERR_TIMEOUT says.) */
  bt_options(&o, NULL, &t);
  struct broker *b = bt_open(&o);
  d = bt_get_wait(b, t.campaigns, 5000);
  assert_string_equal(d->message_id, "c-before");
  broker_delivery_free(d);
  bool after = false;
  while (broker_get(b, t.campaigns, &d, err, sizeof(err)) == SO_OK) {
    assert_string_not_equal(d->message_id, "c-big");
    after = after || strcmp(d->message_id, "c-after") == 0;
    broker_delivery_free(d);
  }
  assert_true(after);
  assert_int_equal(topology_delete(b, &t), SO_OK);
  broker_close(b);
}

static void test_paused_proxy_idle_pump_notices(void **state)
{
  (void)state;
  struct broker_options o;
  int port = bt_free_port();
  pid_t proxy = start_proxy(port);
  bt_options(&o, bt_uri_port("amqp", "127.0.0.1", port), NULL);
  o.heartbeat_s = 1;
  o.reconnect_min_ms = 5000; /* keep it down once it is down */
  o.reconnect_max_ms = 5000;
  struct broker *b = bt_open(&o);
  assert_int_equal(kill(-proxy, SIGSTOP), 0);
  /* An idle consumer's pump must notice the silence (2 missed heartbeats)
   * by itself: nothing else will ever close this socket. */
  struct broker_delivery *d = NULL;
  char err[256];
  int rc = SO_ERR_TIMEOUT;
  int64_t t0 = clock_monotonic_ms();
  while (rc == SO_ERR_TIMEOUT && clock_monotonic_ms() - t0 < 10000)
    rc = broker_poll(b, 200, -1, &d, err, sizeof(err));
  assert_int_equal(rc, SO_ERR_UNAVAILABLE);
  assert_true(clock_monotonic_ms() - t0 < 3 * 2000);
  assert_false(broker_is_up(b));
  broker_close(b);
  bt_kill(proxy);
}

static void test_failover_on_loss(void **state)
{
  (void)state;
  struct broker_options o;
  int port_a = bt_free_port();
  pid_t a = start_proxy(port_a);
  int port_b = bt_free_port();
  pid_t b_proxy = start_proxy(port_b);
  bt_options(&o, bt_uri_port("amqp", "127.0.0.1", port_a), NULL);
  o.uris[1] = bt_uri_port("amqp", "127.0.0.1", port_b);
  o.n_uris = 2;
  struct broker *b = bt_open(&o);
  assert_string_equal(broker_current_uri(b), o.uris[0]);
  uint64_t gen = broker_generation(b);
  /* Node A goes away (its proxy dies, closing our connection). */
  bt_kill(a);
  struct broker_delivery *d = NULL;
  char err[256];
  int64_t until = clock_monotonic_ms() + 10000;
  while (clock_monotonic_ms() < until &&
         (!broker_is_up(b) || broker_generation(b) == gen))
    assert_int_not_equal(broker_poll(b, 100, -1, &d, err, sizeof(err)), SO_OK);
  assert_true(broker_is_up(b));
  assert_string_equal(broker_current_uri(b), o.uris[1]);
  assert_true(broker_generation(b) > gen);
  broker_close(b);
  bt_kill(b_proxy);
}

/* A proxy whose upstream is gone (a load balancer in front of a broker
 * that is restarting) accepts and then hangs up during the handshake. That
 * is transient: SO_ERR_UNAVAILABLE, so daemons retry with backoff, never
 * SO_ERR_REFUSED, which they treat as a bad login and give up on. Once the
 * upstream is back, the same session connects. */
static void test_hangup_during_login_is_transient(void **state)
{
  (void)state;
  int upstream = bt_free_port(); /* nothing listens here yet */
  int port = bt_free_port();
  char listen[128], target[64];
  snprintf(listen, sizeof(listen),
           "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", port);
  snprintf(target, sizeof(target), "TCP:127.0.0.1:%d", upstream);
  char prog[] = "socat";
  char *argv[] = {prog, listen, target, NULL};
  pid_t front = bt_spawn(argv, port);

  struct broker_options o;
  struct broker *b = NULL;
  char err[256] = "";
  bt_options(&o, bt_uri_port("amqp", "127.0.0.1", port), NULL);
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 100;
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_OK);
  assert_int_equal(broker_connect(b, err, sizeof(err)), SO_ERR_UNAVAILABLE);
  assert_false(broker_is_up(b));

  /* The upstream comes back: a relay to the real broker on that port. */
  char listen2[128];
  snprintf(listen2, sizeof(listen2),
           "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", upstream);
  char target2[] = "TCP:127.0.0.1:5672";
  char *argv2[] = {prog, listen2, target2, NULL};
  pid_t relay = bt_spawn(argv2, upstream);
  assert_int_equal(broker_connect(b, err, sizeof(err)), SO_OK);
  assert_true(broker_is_up(b));
  broker_close(b);
  bt_kill(relay);
  bt_kill(front);
}

/* Write a CA and a server certificate for localhost / 127.0.0.1. */
static void make_certs(const char *dir, const char *name)
{
  char cmd[2048];
  snprintf(cmd, sizeof(cmd),
           "cd '%s' && "
           "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "
           "'/CN=%s test CA' -keyout %s-ca.key -out %s-ca.pem "
           ">/dev/null 2>&1 && "
           "openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' "
           "-keyout %s-server.key -out %s-server.csr >/dev/null 2>&1 && "
           "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > %s.ext "
           "&& openssl x509 -req -in %s-server.csr -CA %s-ca.pem -CAkey "
           "%s-ca.key -CAcreateserial -days 1 -extfile %s.ext -out "
           "%s-server.pem >/dev/null 2>&1",
           dir, name, name, name, name, name, name, name, name, name, name,
           name);
  assert_int_equal(system(cmd), 0);
}

static void test_tls_front(void **state)
{
  (void)state;
  char dir[] = "/tmp/sendonce-tls-XXXXXX";
  assert_non_null(mkdtemp(dir));
  make_certs(dir, "good");
  make_certs(dir, "other");
  int port = bt_free_port();
  char listen[1024], path[512], ca_good[512], ca_other[512];
  snprintf(listen, sizeof(listen),
           "OPENSSL-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,verify=0,"
           "cert=%s/good-server.pem,key=%s/good-server.key",
           port, dir, dir);
  char target[] = "TCP:127.0.0.1:5672";
  char prog[] = "socat";
  char *argv[] = {prog, listen, target, NULL};
  pid_t front = bt_spawn(argv, port);
  snprintf(ca_good, sizeof(ca_good), "%s/good-ca.pem", dir);
  snprintf(ca_other, sizeof(ca_other), "%s/other-ca.pem", dir);

  struct topology t;
  struct broker_options o;
  bt_topology(&t);
  /* The right CA: a verified TLS session, confirmed publish. */
  bt_options(&o, bt_uri_port("amqps", "localhost", port), &t);
  o.tls_ca_file = ca_good;
  o.tls_verify_peer = true;
  struct broker *b = bt_open(&o);
  bt_publish(b, t.exchange, TOPOLOGY_ROUTING_KEY_DUE, "c-tls", "{}");
  struct broker_delivery *d = bt_get_wait(b, t.campaigns, 5000);
  assert_string_equal(d->message_id, "c-tls");
  assert_int_equal(broker_ack(b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
  assert_int_equal(topology_delete(b, &t), SO_OK);
  broker_close(b);

  /* A CA that did not sign the server's certificate: refused, clearly. */
  o.tls_ca_file = ca_other;
  char err[1024] = "";
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_OK);
  int rc = broker_connect(b, err, sizeof(err));
  assert_int_equal(rc, SO_ERR_UNAVAILABLE);
  assert_non_null(strstr(err, "certificate verification"));
  assert_false(broker_is_up(b));
  broker_close(b);

  bt_kill(front);

  /* A front that requires a client certificate (signed by the "other"
   * CA): without one the handshake fails, with one it works. */
  port = bt_free_port();
  snprintf(listen, sizeof(listen),
           "OPENSSL-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,verify=1,"
           "cafile=%s,cert=%s/good-server.pem,key=%s/good-server.key",
           port, ca_other, dir, dir);
  front = bt_spawn(argv, port);
  char cert[512], key[512];
  snprintf(cert, sizeof(cert), "%s/other-server.pem", dir);
  snprintf(key, sizeof(key), "%s/other-server.key", dir);
  bt_options(&o, bt_uri_port("amqps", "localhost", port), NULL);
  o.tls_ca_file = ca_good;
  o.tls_verify_peer = true;
  assert_int_equal(broker_open(&o, &b, err, sizeof(err)), SO_OK);
  assert_int_not_equal(broker_connect(b, err, sizeof(err)), SO_OK);
  broker_close(b);
  o.tls_cert_file = cert;
  o.tls_key_file = key;
  b = bt_open(&o);
  assert_true(broker_is_up(b));
  broker_close(b);
  bt_kill(front);

  snprintf(path, sizeof(path), "rm -rf '%s'", dir);
  assert_int_equal(system(path), 0);
}

int main(void)
{
  if (getenv("BROKER_TEST_FILTER"))
    cmocka_set_test_filter(getenv("BROKER_TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paused_proxy_publish_returns),
      cmocka_unit_test(test_paused_proxy_idle_pump_notices),
      cmocka_unit_test(test_failover_on_loss),
      cmocka_unit_test(test_hangup_during_login_is_transient),
      cmocka_unit_test(test_tls_front),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
