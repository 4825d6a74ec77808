/* bare_amqp.c - the broker's ceiling for bench/run, and its trigger
 * publisher.
 *
 *   bare_amqp ceiling PREFIX N PREFETCH
 *     declares the quorum queue PREFIX.bare, publishes N small persistent
 *     messages to it with publisher confirms (one connection, a window of
 *     BARE_WINDOW unconfirmed) while a second connection consumes them
 *     with manual acks and basic.qos PREFETCH, no processing; deletes the
 *     queue. Prints "messages=N seconds=S rate=R t0_ms=T machine_cpu_us=C"
 *     (C: the whole machine's busy CPU per message, the broker's
 *     included; see machine_cpu.h).
 *   bare_amqp publish PREFIX N IDPREFIX CHANNEL
 *     publishes N campaign-due triggers (campaign IDPREFIX-<i>, one inline
 *     recipient) to the exchange PREFIX, routing key campaign.due, with the
 *     same confirmed window: the "publisher" of sendonce's end-to-end row.
 *     Prints "messages=N seconds=S rate=R t0_ms=T" (T: first publish, ms
 *     since the epoch).
 *   bare_amqp events PREFIX N
 *     publishes N lifecycle-event-shaped messages (the consumer's
 *     properties, header and body size) without confirms to a topic
 *     exchange PREFIX.bare-events that no queue is bound to, as the
 *     consumer publishes its events, then one round trip on the channel
 *     so that the broker has handled them all; deletes the exchange.
 *     Prints "messages=N seconds=S rate=R machine_cpu_us=C".
 *
 * Broker from SENDONCE_BROKER_URI, SENDONCE_BROKER_USER and
 * SENDONCE_BROKER_PASSWORD (environment only: never argv). Not a test: a
 * measuring tool, it exits 1 on any broker error.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "machine_cpu.h"

/* Unconfirmed publishes in flight: enough to hide the confirm round trip,
 * small enough that a quorum queue's batching is exercised as in use. */
#define BARE_WINDOW 256

struct bare_opts {
  bool ceiling;
  bool events;
  const char *prefix;
  long n;
  int prefetch;
  const char *id_prefix;
  const char *channel;
};

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long epoch_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die_reply(const char *what, amqp_rpc_reply_t r)
{
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
    fprintf(stderr, "bare_amqp: %s: %s\n", what,
            amqp_error_string2(r.library_error));
  else
    fprintf(stderr, "bare_amqp: %s: reply type %d\n", what, (int)r.reply_type);
  exit(1);
}

static amqp_connection_state_t bare_connect(void)
{
  const char *uri = getenv("SENDONCE_BROKER_URI");
  const char *user = getenv("SENDONCE_BROKER_USER");
  const char *pass = getenv("SENDONCE_BROKER_PASSWORD");
  if (!uri || !user || !pass) {
    fputs("bare_amqp: SENDONCE_BROKER_URI, _USER, _PASSWORD needed\n", stderr);
    exit(1);
  }
  char *copy = strdup(uri);
  struct amqp_connection_info ci;
  if (!copy || amqp_parse_url(copy, &ci) != AMQP_STATUS_OK) {
    fputs("bare_amqp: bad SENDONCE_BROKER_URI\n", stderr);
    exit(1);
  }
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t *s = amqp_tcp_socket_new(c);
  if (!s || amqp_socket_open(s, ci.host, ci.port) != AMQP_STATUS_OK) {
    fputs("bare_amqp: cannot connect\n", stderr);
    exit(1);
  }
  amqp_rpc_reply_t r =
      amqp_login(c, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, user, pass);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die_reply("login", r);
  free(copy);
  amqp_channel_open(c, 1);
  r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die_reply("channel.open", r);
  return c;
}

static void bare_close(amqp_connection_state_t c)
{
  amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
}

/* Reads confirms until at most `max_outstanding` publishes are unconfirmed. */
static void wait_confirms(amqp_connection_state_t c, uint64_t published,
                          uint64_t *confirmed, uint64_t max_outstanding)
{
  while (published - *confirmed > max_outstanding) {
    amqp_frame_t f;
    struct timeval tv = {30, 0};
    int st = amqp_simple_wait_frame_noblock(c, &f, &tv);
    if (st != AMQP_STATUS_OK) {
      fprintf(stderr, "bare_amqp: waiting for confirms: %s\n",
              amqp_error_string2(st));
      exit(1);
    }
    if (f.frame_type != AMQP_FRAME_METHOD)
      continue;
    if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      const amqp_basic_ack_t *a = f.payload.method.decoded;
      *confirmed = a->delivery_tag;
    } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
      fputs("bare_amqp: publish nacked\n", stderr);
      exit(1);
    } else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
      fputs("bare_amqp: channel closed by the broker\n", stderr);
      exit(1);
    }
    amqp_maybe_release_buffers(c);
  }
}

static void build_body(const struct bare_opts *o, long i, char *buf, size_t len,
                       char *id, size_t idlen)
{
  if (o->ceiling) {
    snprintf(id, idlen, "bare-%ld", i);
    snprintf(buf, len, "{\"n\":%ld}", i);
    return;
  }
  snprintf(id, idlen, "%s-%ld", o->id_prefix, i);
  snprintf(buf, len,
           "{\"schema\":1,\"campaign_id\":\"%s\","
           "\"scheduled_at\":\"2026-01-01T00:00:00Z\",\"channel\":\"%s\","
           "\"content\":{\"subject\":\"bench\"},\"recipients\":"
           "[{\"id\":\"u-1\",\"address\":\"u1@example.org\"}]}",
           id, o->channel);
}

static double publish_all(const struct bare_opts *o, long long *t0_ms)
{
  amqp_connection_state_t c = bare_connect();
  amqp_confirm_select(c, 1);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die_reply("confirm.select", r);
  char exch[128], rk[128];
  if (o->ceiling) {
    exch[0] = '\0';
    snprintf(rk, sizeof(rk), "%s.bare", o->prefix);
  } else {
    snprintf(exch, sizeof(exch), "%s", o->prefix);
    snprintf(rk, sizeof(rk), "campaign.due");
  }
  uint64_t published = 0, confirmed = 0;
  double t0 = now_s();
  *t0_ms = epoch_ms();
  for (long i = 0; i < o->n; i++) {
    char body[512], id[160];
    build_body(o, i, body, sizeof(body), id, sizeof(id));
    amqp_basic_properties_t p = {0};
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_MESSAGE_ID_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = 2;
    p.message_id = amqp_cstring_bytes(id);
    int st = amqp_basic_publish(c, 1, amqp_cstring_bytes(exch),
                                amqp_cstring_bytes(rk), 0, 0, &p,
                                amqp_cstring_bytes(body));
    if (st != AMQP_STATUS_OK) {
      fprintf(stderr, "bare_amqp: publish: %s\n", amqp_error_string2(st));
      exit(1);
    }
    published++;
    wait_confirms(c, published, &confirmed, BARE_WINDOW);
  }
  wait_confirms(c, published, &confirmed, 0);
  double dt = now_s() - t0;
  bare_close(c);
  return dt;
}

struct consume_arg {
  const struct bare_opts *o;
  amqp_connection_state_t conn;
  double end; /* monotonic s of the last ack */
};

static void *consume_main(void *ud)
{
  struct consume_arg *a = ud;
  amqp_connection_state_t c = a->conn;
  long got = 0;
  while (got < a->o->n) {
    amqp_envelope_t env;
    struct timeval tv = {60, 0};
    amqp_maybe_release_buffers(c);
    amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
      die_reply("consume", r);
    if (amqp_basic_ack(c, 1, env.delivery_tag, 0) != AMQP_STATUS_OK) {
      fputs("bare_amqp: ack failed\n", stderr);
      exit(1);
    }
    amqp_destroy_envelope(&env);
    got++;
  }
  a->end = now_s();
  return NULL;
}

static void declare_queue(amqp_connection_state_t c, const char *q)
{
  amqp_table_entry_t args[2];
  args[0].key = amqp_cstring_bytes("x-queue-type");
  args[0].value.kind = AMQP_FIELD_KIND_UTF8;
  args[0].value.value.bytes = amqp_cstring_bytes("quorum");
  args[1].key = amqp_cstring_bytes("x-delivery-limit");
  args[1].value.kind = AMQP_FIELD_KIND_I32;
  args[1].value.value.i32 = 5;
  amqp_table_t t = {2, args};
  amqp_queue_declare(c, 1, amqp_cstring_bytes(q), 0, 1, 0, 0, t);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die_reply("queue.declare", r);
}

static int run_ceiling(const struct bare_opts *o)
{
  char q[160];
  snprintf(q, sizeof(q), "%s.bare", o->prefix);
  struct consume_arg a = {o, bare_connect(), 0};
  declare_queue(a.conn, q);
  amqp_basic_qos(a.conn, 1, 0, (uint16_t)o->prefetch, 0);
  amqp_basic_consume(a.conn, 1, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 0,
                     0, amqp_empty_table);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(a.conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die_reply("basic.consume", r);
  pthread_t th;
  if (pthread_create(&th, NULL, consume_main, &a) != 0)
    return 1;
  long long t0_ms;
  double busy0 = machine_busy_s();
  double t0 = now_s();
  (void)publish_all(o, &t0_ms);
  pthread_join(th, NULL);
  double dt = a.end - t0;
  double cpu_us = machine_cpu_us_per_op(busy0, machine_busy_s(), o->n);
  printf("messages=%ld seconds=%.3f rate=%.1f t0_ms=%lld machine_cpu_us=%.1f\n",
         o->n, dt, (double)o->n / dt, t0_ms, cpu_us);
  amqp_queue_delete(a.conn, 1, amqp_cstring_bytes(q), 0, 0);
  bare_close(a.conn);
  return 0;
}

/* The lifecycle events' shape (lib/events.c): routing key and header
 * x-sendonce-event = kind, message_id = campaign id, a JSON body. */
static void publish_event(amqp_connection_state_t c, const char *exch, long i)
{
  char id[64], body[320];
  snprintf(id, sizeof(id), "c1sqlite-1795866351-%ld", i);
  snprintf(body, sizeof(body),
           "{\"event\":\"campaign.claimed\",\"campaign_id\":\"%s\","
           "\"at\":\"2026-11-28T11:45:52.123Z\",\"source\":\"consumer\","
           "\"owner\":\"host:12345:w3\",\"fence\":1}",
           id);
  amqp_table_entry_t h = {.key = amqp_cstring_bytes("x-sendonce-event")};
  h.value.kind = AMQP_FIELD_KIND_UTF8;
  h.value.value.bytes = amqp_cstring_bytes("campaign.claimed");
  amqp_basic_properties_t p = {0};
  p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
             AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
  p.content_type = amqp_cstring_bytes("application/json");
  p.delivery_mode = 2;
  p.message_id = amqp_cstring_bytes(id);
  p.headers = (amqp_table_t){1, &h};
  int st = amqp_basic_publish(c, 1, amqp_cstring_bytes(exch),
                              amqp_cstring_bytes("campaign.claimed"), 0, 0, &p,
                              amqp_cstring_bytes(body));
  if (st != AMQP_STATUS_OK) {
    fprintf(stderr, "bare_amqp: publish: %s\n", amqp_error_string2(st));
    exit(1);
  }
}

static int run_events(const struct bare_opts *o)
{
  char exch[160];
  snprintf(exch, sizeof(exch), "%s.bare-events", o->prefix);
  amqp_connection_state_t c = bare_connect();
  amqp_exchange_declare(c, 1, amqp_cstring_bytes(exch),
                        amqp_cstring_bytes("topic"), 0, 0, 0, 0,
                        amqp_empty_table);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die_reply("exchange.declare", r);
  double busy0 = machine_busy_s();
  double t0 = now_s();
  for (long i = 0; i < o->n; i++)
    publish_event(c, exch, i);
  /* A channel handles its frames in order: once this answers, the broker
   * has routed (and dropped) every event before it. */
  amqp_exchange_declare(c, 1, amqp_cstring_bytes(exch),
                        amqp_cstring_bytes("topic"), 1, 0, 0, 0,
                        amqp_empty_table);
  r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die_reply("exchange.declare (passive)", r);
  double dt = now_s() - t0;
  double cpu_us = machine_cpu_us_per_op(busy0, machine_busy_s(), o->n);
  printf("messages=%ld seconds=%.3f rate=%.1f machine_cpu_us=%.1f\n", o->n, dt,
         (double)o->n / dt, cpu_us);
  amqp_exchange_delete(c, 1, amqp_cstring_bytes(exch), 0);
  bare_close(c);
  return 0;
}

static long parse_long(const char *s)
{
  char *end = NULL;
  long v = strtol(s, &end, 10);
  return (*end == '\0' && v > 0) ? v : -1;
}

int main(int argc, char **argv)
{
  struct bare_opts o = {0};
  if (argc == 5 && strcmp(argv[1], "ceiling") == 0) {
    o.ceiling = true;
    o.prefix = argv[2];
    o.n = parse_long(argv[3]);
    o.prefetch = (int)parse_long(argv[4]);
  } else if (argc == 4 && strcmp(argv[1], "events") == 0) {
    o.events = true;
    o.prefix = argv[2];
    o.n = parse_long(argv[3]);
    o.prefetch = 1;
  } else if (argc == 6 && strcmp(argv[1], "publish") == 0) {
    o.prefix = argv[2];
    o.n = parse_long(argv[3]);
    o.prefetch = 1;
    o.id_prefix = argv[4];
    o.channel = argv[5];
  } else {
    fputs(
        "usage: bare_amqp ceiling PREFIX N PREFETCH\n"
        "       bare_amqp publish PREFIX N IDPREFIX CHANNEL\n"
        "       bare_amqp events PREFIX N\n",
        stderr);
    return 2;
  }
  if (o.n <= 0 || o.prefetch <= 0 || o.prefetch > 65535) {
    fputs("bare_amqp: bad count\n", stderr);
    return 2;
  }
  if (o.ceiling)
    return run_ceiling(&o);
  if (o.events)
    return run_events(&o);
  long long t0_ms;
  double dt = publish_all(&o, &t0_ms);
  printf("messages=%ld seconds=%.3f rate=%.1f t0_ms=%lld\n", o.n, dt,
         (double)o.n / dt, t0_ms);
  return 0;
}
