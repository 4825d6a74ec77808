/* broker_consume.c - the session's inbound side: the frame loop (which
 * also records publisher confirms), deliveries, consumers, the poll pump,
 * acks and basic.get.
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "broker_impl.h"
#include "clock.h"
#include "log.h"

/* ---- deliveries ---------------------------------------------------- */

void broker_delivery_free(struct broker_delivery *d)
{
  if (!d)
    return;
  for (size_t i = 0; i < d->n_headers; i++) {
    free((char *)d->headers[i].name);
    free((char *)d->headers[i].value);
  }
  free(d->headers);
  free(d->consumer_queue);
  free(d->exchange);
  free(d->routing_key);
  free(d->message_id);
  free(d->content_type);
  free(d->body);
  free(d->death_reason);
  free(d->death_queue);
  free(d);
}

const char *broker_delivery_header(const struct broker_delivery *d,
                                   const char *name)
{
  for (size_t i = 0; i < d->n_headers; i++)
    if (strcmp(d->headers[i].name, name) == 0)
      return d->headers[i].value;
  return NULL;
}

/* A scalar field value as text; false for tables, arrays and the like. */
static bool value_text(const amqp_field_value_t *v, char *buf, size_t len)
{
  switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
      snprintf(buf, len, "%.*s", (int)v->value.bytes.len,
               (const char *)v->value.bytes.bytes);
      return true;
    case AMQP_FIELD_KIND_BOOLEAN:
      snprintf(buf, len, "%s", v->value.boolean ? "true" : "false");
      return true;
    case AMQP_FIELD_KIND_I8:
      snprintf(buf, len, "%d", (int)v->value.i8);
      return true;
    case AMQP_FIELD_KIND_U8:
      snprintf(buf, len, "%u", (unsigned)v->value.u8);
      return true;
    case AMQP_FIELD_KIND_I16:
      snprintf(buf, len, "%d", (int)v->value.i16);
      return true;
    case AMQP_FIELD_KIND_U16:
      snprintf(buf, len, "%u", (unsigned)v->value.u16);
      return true;
    case AMQP_FIELD_KIND_I32:
      snprintf(buf, len, "%" PRId32, v->value.i32);
      return true;
    case AMQP_FIELD_KIND_U32:
      snprintf(buf, len, "%" PRIu32, v->value.u32);
      return true;
    case AMQP_FIELD_KIND_I64:
      snprintf(buf, len, "%" PRId64, v->value.i64);
      return true;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      snprintf(buf, len, "%" PRIu64, v->value.u64);
      return true;
    default:
      return false;
  }
}

static int64_t value_int(const amqp_field_value_t *v)
{
  char buf[32];
  if (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES ||
      !value_text(v, buf, sizeof(buf)))
    return 0;
  return strtoll(buf, NULL, 10);
}

static char *value_dup(const amqp_field_value_t *v)
{
  if (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES)
    return NULL;
  return broker__bytes_dup(v->value.bytes);
}

/* x-death: an array of tables, latest first, each with count, reason,
 * queue, ... Summed and the latest named. */
static void parse_x_death(struct broker_delivery *d, const amqp_array_t *a)
{
  for (int i = 0; i < a->num_entries; i++) {
    const amqp_field_value_t *e = &a->entries[i];
    if (e->kind != AMQP_FIELD_KIND_TABLE)
      continue;
    const amqp_table_t *t = &e->value.table;
    for (int j = 0; j < t->num_entries; j++) {
      const amqp_table_entry_t *f = &t->entries[j];
      int klen = (int)f->key.len;
      const char *k = f->key.bytes;
      if (klen == 5 && memcmp(k, "count", 5) == 0)
        d->death_count += value_int(&f->value);
      else if (i == 0 && klen == 6 && memcmp(k, "reason", 6) == 0 &&
               !d->death_reason)
        d->death_reason = value_dup(&f->value);
      else if (i == 0 && klen == 5 && memcmp(k, "queue", 5) == 0 &&
               !d->death_queue)
        d->death_queue = value_dup(&f->value);
    }
  }
}

static int copy_headers(struct broker_delivery *d, const amqp_table_t *t)
{
  if (t->num_entries <= 0)
    return SO_OK;
  d->headers = calloc((size_t)t->num_entries, sizeof(*d->headers));
  if (!d->headers)
    return SO_ERR_NOMEM;
  for (int i = 0; i < t->num_entries; i++) {
    const amqp_table_entry_t *e = &t->entries[i];
    char buf[1024];
    if (e->key.len == 7 && memcmp(e->key.bytes, "x-death", 7) == 0 &&
        e->value.kind == AMQP_FIELD_KIND_ARRAY) {
      parse_x_death(d, &e->value.value.array);
      continue;
    }
    if (!value_text(&e->value, buf, sizeof(buf)))
      continue;
    char *name = broker__bytes_dup(e->key);
    char *value = strdup(buf);
    if (!name || !value) {
      free(name);
      free(value);
      return SO_ERR_NOMEM;
    }
    d->headers[d->n_headers].name = name;
    d->headers[d->n_headers].value = value;
    d->n_headers++;
    if (e->key.len == 16 && memcmp(e->key.bytes, "x-delivery-count", 16) == 0)
      d->delivery_count = value_int(&e->value);
  }
  return SO_OK;
}

/* Build an owned delivery from the method fields and the message. */
static struct broker_delivery *delivery_new(
    struct broker *b, uint64_t tag, bool redelivered, amqp_bytes_t exchange,
    amqp_bytes_t routing_key, const char *queue, const amqp_message_t *msg)
{
  struct broker_delivery *d = calloc(1, sizeof(*d));
  if (!d)
    return NULL;
  const amqp_basic_properties_t *p = &msg->properties;
  d->tag = tag;
  d->generation = b->generation;
  d->redelivered = redelivered;
  d->consumer_queue = strdup(queue ? queue : "");
  d->exchange = broker__bytes_dup(exchange);
  d->routing_key = broker__bytes_dup(routing_key);
  d->body = broker__bytes_dup(msg->body);
  d->body_len = msg->body.len;
  if (!d->consumer_queue || !d->exchange || !d->routing_key || !d->body)
    goto fail;
  if ((p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) &&
      !(d->message_id = broker__bytes_dup(p->message_id)))
    goto fail;
  if ((p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) &&
      !(d->content_type = broker__bytes_dup(p->content_type)))
    goto fail;
  if (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
    d->timestamp_s = (int64_t)p->timestamp;
  if ((p->_flags & AMQP_BASIC_HEADERS_FLAG) &&
      copy_headers(d, &p->headers) != SO_OK)
    goto fail;
  return d;
fail:
  broker_delivery_free(d);
  return NULL;
}

static void pending_push(struct broker *b, struct broker_delivery *d)
{
  struct broker_pending *p = malloc(sizeof(*p));
  if (!p) {
    /* Unacked, it is redelivered after the next reconnect. */
    log_error("broker: out of memory queueing delivery tag=%llu",
              (unsigned long long)d->tag);
    broker_delivery_free(d);
    return;
  }
  p->d = d;
  p->next = NULL;
  if (b->pending_tail)
    b->pending_tail->next = p;
  else
    b->pending_head = p;
  b->pending_tail = p;
}

static struct broker_delivery *pending_pop(struct broker *b)
{
  struct broker_pending *p = b->pending_head;
  if (!p)
    return NULL;
  b->pending_head = p->next;
  if (!b->pending_head)
    b->pending_tail = NULL;
  struct broker_delivery *d = p->d;
  free(p);
  return d;
}

void broker__pending_purge(struct broker *b)
{
  struct broker_delivery *d;
  while ((d = pending_pop(b)) != NULL)
    broker_delivery_free(d);
}

/* ---- the frame loop --------------------------------------------------- */

static const char *consumer_queue_of(struct broker *b, amqp_bytes_t tag)
{
  for (size_t i = 0; i < b->n_consumers; i++) {
    struct broker_consumer *c = &b->consumers[i];
    if (strlen(c->tag) == tag.len && memcmp(c->tag, tag.bytes, tag.len) == 0)
      return c->queue;
  }
  return NULL;
}

/* A delivery or a return: read its header and body frames. */
static int read_content(struct broker *b, amqp_channel_t ch,
                        amqp_message_t *msg)
{
  amqp_rpc_reply_t r = amqp_read_message(b->conn, ch, msg, 0);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    broker__lost(b, "reading a message failed");
    return SO_ERR_UNAVAILABLE;
  }
  return SO_OK;
}

static void on_confirm(struct broker *b, uint64_t tag, bool multiple, bool ack)
{
  if (b->pub_state != BROKER_PUB_WAITING)
    return;
  if (tag == b->pub_seq || (multiple && tag >= b->pub_seq)) {
    b->pub_state = ack ? BROKER_PUB_ACKED : BROKER_PUB_NACKED;
    if (!ack)
      snprintf(b->pub_text, sizeof(b->pub_text),
               "nacked by the broker (queue full with reject-publish, or "
               "an internal error)");
  }
}

static void on_channel_close(struct broker *b, amqp_channel_t ch,
                             const amqp_channel_close_t *m)
{
  amqp_channel_close_ok_t ok = {0};
  if (ch == BROKER_CH_EVENTS) {
    /* Events are best effort (docs/events.md): logged at debug, and the
     * channel reopened by a later event; deliveries and acks on channel
     * 1 go on. */
    amqp_send_method(b->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    log_debug("broker: broker closed the events channel: %d %.*s",
              m->reply_code, (int)m->reply_text.len,
              (const char *)m->reply_text.bytes);
    broker__events_closed(b);
    return;
  }
  b->reply_code = m->reply_code;
  snprintf(b->reply_text, sizeof(b->reply_text), "%.*s", (int)m->reply_text.len,
           (const char *)m->reply_text.bytes);
  amqp_send_method(b->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
  log_warn("broker: broker closed channel %u: %s", (unsigned)ch, b->reply_text);
  if (ch == BROKER_CH_PUB) {
    b->pub_open = false;
    if (b->pub_state == BROKER_PUB_WAITING) {
      b->pub_state = BROKER_PUB_CLOSED;
      snprintf(b->pub_text, sizeof(b->pub_text), "%s", b->reply_text);
    }
  } else {
    b->main_open = false;
  }
}

static int dispatch(struct broker *b, const amqp_frame_t *f)
{
  amqp_message_t msg;
  int rc;
  if (f->frame_type != AMQP_FRAME_METHOD)
    return SO_OK; /* stray content of a message we gave up on */
  amqp_channel_t ch = f->channel;
  void *m = f->payload.method.decoded;
  switch (f->payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
      amqp_basic_deliver_t *dm = m;
      uint64_t tag = dm->delivery_tag;
      bool redelivered = dm->redelivered;
      const char *queue = consumer_queue_of(b, dm->consumer_tag);
      if (ch == BROKER_CH_MAIN)
        broker__out_delivered(b, tag);
      if ((rc = read_content(b, ch, &msg)) != SO_OK)
        return rc;
      struct broker_delivery *d = delivery_new(
          b, tag, redelivered, dm->exchange, dm->routing_key, queue, &msg);
      amqp_destroy_message(&msg);
      if (!d) {
        log_error("broker: out of memory copying delivery tag=%llu",
                  (unsigned long long)tag);
        return SO_OK;
      }
      pending_push(b, d);
      return SO_OK;
    }
    case AMQP_BASIC_ACK_METHOD: {
      amqp_basic_ack_t *a = m;
      if (ch == BROKER_CH_PUB)
        on_confirm(b, a->delivery_tag, a->multiple, true);
      return SO_OK;
    }
    case AMQP_BASIC_NACK_METHOD: {
      amqp_basic_nack_t *n = m;
      if (ch == BROKER_CH_PUB)
        on_confirm(b, n->delivery_tag, n->multiple, false);
      return SO_OK;
    }
    case AMQP_BASIC_RETURN_METHOD: {
      amqp_basic_return_t *r = m;
      /* The return precedes the ack of the same message. */
      if (b->pub_state == BROKER_PUB_WAITING) {
        b->pub_returned = true;
        snprintf(b->pub_text, sizeof(b->pub_text),
                 "returned unroutable: %d %.*s (exchange '%.*s', routing "
                 "key '%.*s')",
                 r->reply_code, (int)r->reply_text.len,
                 (const char *)r->reply_text.bytes, (int)r->exchange.len,
                 (const char *)r->exchange.bytes, (int)r->routing_key.len,
                 (const char *)r->routing_key.bytes);
      }
      if ((rc = read_content(b, ch, &msg)) != SO_OK)
        return rc;
      amqp_destroy_message(&msg);
      return SO_OK;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
      on_channel_close(b, ch, m);
      return SO_OK;
    case AMQP_CONNECTION_CLOSE_METHOD: {
      amqp_connection_close_t *c = m;
      amqp_connection_close_ok_t ok = {0};
      b->reply_code = c->reply_code;
      snprintf(b->reply_text, sizeof(b->reply_text), "%.*s",
               (int)c->reply_text.len, (const char *)c->reply_text.bytes);
      amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      broker__lost(b, b->reply_text);
      return SO_ERR_UNAVAILABLE;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
      amqp_basic_cancel_t *c = m;
      for (size_t i = 0; i < b->n_consumers; i++) {
        struct broker_consumer *k = &b->consumers[i];
        if (strlen(k->tag) == c->consumer_tag.len &&
            memcmp(k->tag, c->consumer_tag.bytes, c->consumer_tag.len) == 0) {
          log_warn("broker: broker cancelled the consumer of queue=%s",
                   k->queue);
          k->active = false;
          k->tag[0] = '\0';
        }
      }
      return SO_OK;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
      log_warn("broker: broker blocked publishing (resource alarm)");
      return SO_OK;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
      log_info("broker: broker unblocked publishing");
      return SO_OK;
    default:
      return SO_OK;
  }
}

int broker__read_frame(struct broker *b, int timeout_ms)
{
  amqp_frame_t f;
  struct timeval tv;
  if (!b->conn)
    return SO_ERR_UNAVAILABLE;
  if (timeout_ms < 0)
    timeout_ms = 0;
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  int st = amqp_simple_wait_frame_noblock(b->conn, &f, &tv);
  if (st == AMQP_STATUS_TIMEOUT)
    return SO_ERR_TIMEOUT;
  if (st != AMQP_STATUS_OK) {
    broker__lost(b, amqp_error_string2(st));
    return SO_ERR_UNAVAILABLE;
  }
  int rc = dispatch(b, &f);
  if (b->conn)
    amqp_maybe_release_buffers(b->conn);
  return rc;
}

/* ---- consumers -------------------------------------------------------- */

static int start_consumer(struct broker *b, struct broker_consumer *c,
                          char *err, size_t errlen)
{
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_basic_qos(b->conn, BROKER_CH_MAIN, 0, (uint16_t)c->prefetch, 0);
  int rc = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_MAIN,
                         "basic.qos", err, errlen);
  if (rc)
    return rc;
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_basic_consume_ok_t *ok =
      amqp_basic_consume(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(c->queue),
                         amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  rc = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_MAIN,
                     "basic.consume", err, errlen);
  if (rc)
    return rc;
  snprintf(c->tag, sizeof(c->tag), "%.*s", (int)ok->consumer_tag.len,
           (const char *)ok->consumer_tag.bytes);
  c->active = true;
  log_info("broker: consuming queue=%s prefetch=%d generation=%llu", c->queue,
           c->prefetch, (unsigned long long)b->generation);
  return SO_OK;
}

static void consumer_forget(struct broker *b, size_t i)
{
  free(b->consumers[i].queue);
  memmove(&b->consumers[i], &b->consumers[i + 1],
          (b->n_consumers - i - 1) * sizeof(b->consumers[0]));
  b->n_consumers--;
}

int broker__restore_consumers(struct broker *b, char *err, size_t errlen)
{
  size_t i = 0;
  while (i < b->n_consumers) {
    struct broker_consumer *c = &b->consumers[i];
    if (c->active) {
      i++;
      continue;
    }
    int rc = start_consumer(b, c, err, errlen);
    if (rc == SO_ERR_NOTFOUND) {
      /* 404 closed channel 1: forget this consumer, reopen, start over
       * (the reopen ends every other consumer too). */
      log_error("broker: cannot consume queue=%s: %s; consumer dropped",
                c->queue, b->reply_text);
      consumer_forget(b, i);
      if ((rc = broker__open_main(b, err, errlen)) != SO_OK)
        return rc;
      i = 0;
      continue;
    }
    if (rc)
      return rc;
    i++;
  }
  return SO_OK;
}

int broker_consume(struct broker *b, const char *queue, int prefetch, char *err,
                   size_t errlen)
{
  if (!queue || !*queue || prefetch < 1 || prefetch > 65535) {
    so_errf(err, errlen, "broker: consume needs a queue and prefetch 1..65535");
    return SO_ERR_INVALID;
  }
  if (b->n_consumers >= BROKER_MAX_CONSUMERS) {
    so_errf(err, errlen, "broker: at most %d consumers", BROKER_MAX_CONSUMERS);
    return SO_ERR_INVALID;
  }
  struct broker_consumer *c = &b->consumers[b->n_consumers];
  memset(c, 0, sizeof(*c));
  c->queue = strdup(queue);
  if (!c->queue)
    return SO_ERR_NOMEM;
  c->prefetch = prefetch;
  const char *mine = c->queue;
  b->n_consumers++;
  /* ensure() starts every inactive consumer, this one included (or the
   * next connect will). */
  int rc = broker__ensure(b, err, errlen);
  for (size_t i = 0; i < b->n_consumers; i++)
    if (b->consumers[i].queue == mine)
      return rc;
  /* Forgotten by broker__restore_consumers(): the queue does not exist. */
  so_errf(err, errlen, "broker: no queue '%s' to consume from", queue);
  return SO_ERR_NOTFOUND;
}

int broker_cancel_all(struct broker *b)
{
  int rc = SO_OK;
  (void)broker__conn_flush(b);
  for (size_t i = 0; i < b->n_consumers; i++) {
    struct broker_consumer *c = &b->consumers[i];
    if (!c->active || !b->conn || !b->main_open)
      continue;
    broker__guard(b, b->opts.op_timeout_ms);
    amqp_basic_cancel(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(c->tag));
    int r = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_MAIN,
                          "basic.cancel", NULL, 0);
    if (r && !rc)
      rc = r;
  }
  while (b->n_consumers)
    consumer_forget(b, b->n_consumers - 1);
  if (!b->conn)
    rc = SO_ERR_UNAVAILABLE;
  return rc;
}

/* ---- the pump ------------------------------------------------------- */

/* Read one frame (drain: every frame already buffered, until a delivery
 * is queued) under the guard. SO_OK or SO_ERR_UNAVAILABLE (lost). */
static int read_guarded(struct broker *b, int timeout_ms, bool drain)
{
  int rc;
  /* A real (if tiny) wait: rabbitmq-c checks the broker's heartbeat
   * deadline when a wait times out, and an idle pump must notice a silent
   * broker by itself (test_paused_proxy_idle_pump_notices). */
  if (timeout_ms < 1)
    timeout_ms = 1;
  broker__guard(b, b->opts.op_timeout_ms + timeout_ms);
  do {
    rc = broker__read_frame(b, timeout_ms);
  } while (drain && rc == SO_OK && !b->pending_head && b->conn);
  if (rc == SO_ERR_UNAVAILABLE || !b->conn)
    return SO_ERR_UNAVAILABLE; /* broker__lost() disarmed the guard */
  return broker__unguard(b) == SO_OK ? SO_OK : SO_ERR_UNAVAILABLE;
}

/* Sleep until the deadline or wake_fd is readable. */
static void wait_down(int64_t until_ms, int wake_fd)
{
  int64_t ms = until_ms - clock_monotonic_ms();
  if (ms <= 0)
    return;
  struct pollfd p = {.fd = wake_fd, .events = POLLIN};
  poll(&p, wake_fd >= 0 ? 1 : 0, (int)ms);
}

int broker_poll(struct broker *b, int timeout_ms, int wake_fd,
                struct broker_delivery **out, char *err, size_t errlen)
{
  *out = NULL;
  int64_t deadline = clock_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  if ((*out = pending_pop(b)) != NULL)
    return SO_OK;
  /* Whatever is queued goes out before we read or sleep: the broker may
   * be waiting for an ack to deliver the next message. */
  (void)broker__conn_flush(b);
  int rc = broker__ensure(b, err, errlen);
  if (rc) {
    if (rc == SO_ERR_UNAVAILABLE || rc == SO_ERR_TIMEOUT) {
      int64_t until =
          b->next_attempt_ms < deadline ? b->next_attempt_ms : deadline;
      wait_down(until, wake_fd);
      return SO_ERR_UNAVAILABLE;
    }
    return rc;
  }
  /* Heartbeats are sent inside rabbitmq-c's read calls, so never block
   * longer than a fraction of the interval without making one. */
  int slice = b->opts.heartbeat_s * 1000 / 4;
  for (;;) {
    if (read_guarded(b, 0, true) != SO_OK) {
      so_errf(err, errlen, "broker: connection lost");
      return SO_ERR_UNAVAILABLE;
    }
    if ((*out = pending_pop(b)) != NULL)
      return SO_OK;
    if (!b->main_open) /* a channel error: the next call reopens it */
      return SO_ERR_TIMEOUT;
    int64_t left = deadline - clock_monotonic_ms();
    if (left <= 0)
      return SO_ERR_TIMEOUT;
    int wait = (int)(left < slice ? left : slice);
    struct pollfd p[2] = {{.fd = amqp_get_sockfd(b->conn), .events = POLLIN},
                          {.fd = wake_fd, .events = POLLIN}};
    int n = poll(p, wake_fd >= 0 ? 2 : 1, wait);
    if (n > 0 && wake_fd >= 0 && (p[1].revents & POLLIN))
      return SO_ERR_TIMEOUT;
    /* Data: let rabbitmq-c take a whole frame, bounded. */
    if (n > 0 && p[0].revents && read_guarded(b, wait, false) != SO_OK) {
      so_errf(err, errlen, "broker: connection lost");
      return SO_ERR_UNAVAILABLE;
    }
  }
}

/* ---- acks and get --------------------------------------------------- */

static int settle(struct broker *b, uint64_t generation, uint64_t tag, int how,
                  bool requeue)
{
  if (!b->conn)
    return SO_ERR_UNAVAILABLE;
  /* A closed channel 1 requeued its deliveries just like a new
   * generation did. */
  if (generation != b->generation || !b->main_open)
    return SO_ERR_CONFLICT;
  if (b->raw)
    return broker__out_settle(b, tag, how == 0, requeue) == SO_OK
               ? SO_OK
               : SO_ERR_UNAVAILABLE;
  broker__guard(b, b->opts.op_timeout_ms);
  int st = how == 0 ? amqp_basic_ack(b->conn, BROKER_CH_MAIN, tag, 0)
                    : amqp_basic_nack(b->conn, BROKER_CH_MAIN, tag, 0, requeue);
  if (broker__unguard(b) != SO_OK)
    return SO_ERR_UNAVAILABLE;
  if (st != AMQP_STATUS_OK) {
    broker__lost(b, amqp_error_string2(st));
    return SO_ERR_UNAVAILABLE;
  }
  return SO_OK;
}

int broker_ack(struct broker *b, uint64_t generation, uint64_t tag)
{
  return settle(b, generation, tag, 0, false);
}

int broker_nack(struct broker *b, uint64_t generation, uint64_t tag,
                bool requeue)
{
  return settle(b, generation, tag, 1, requeue);
}

int broker_get(struct broker *b, const char *queue,
               struct broker_delivery **out, char *err, size_t errlen)
{
  *out = NULL;
  if (b->n_consumers > 0) {
    /* basic.get on the consumers' channel could read a queued delivery's
     * frames as its own: keep get for sessions that do not consume. */
    so_errf(err, errlen, "broker: get on a session with consumers");
    return SO_ERR_INVALID;
  }
  int rc = broker__conn_flush(b);
  if (rc == SO_OK)
    rc = broker__ensure(b, err, errlen);
  if (rc)
    return rc;
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_rpc_reply_t r =
      amqp_basic_get(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(queue), 0);
  rc = broker__reply(b, r, BROKER_CH_MAIN, "basic.get", err, errlen);
  if (rc == SO_ERR_NOTFOUND) {
    so_errf(err, errlen, "broker: no queue '%s'", queue);
    return SO_ERR_INVALID;
  }
  if (rc)
    return rc;
  if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
    return SO_ERR_NOTFOUND;
  amqp_basic_get_ok_t *ok = r.reply.decoded;
  uint64_t tag = ok->delivery_tag;
  broker__out_delivered(b, tag);
  bool redelivered = ok->redelivered;
  amqp_bytes_t exchange = ok->exchange, routing_key = ok->routing_key;
  amqp_message_t msg;
  broker__guard(b, b->opts.op_timeout_ms);
  if ((rc = read_content(b, BROKER_CH_MAIN, &msg)) != SO_OK) {
    so_errf(err, errlen, "broker: basic.get: connection lost");
    return rc;
  }
  if ((rc = broker__unguard(b)) != SO_OK) {
    amqp_destroy_message(&msg);
    return rc;
  }
  *out = delivery_new(b, tag, redelivered, exchange, routing_key, queue, &msg);
  amqp_destroy_message(&msg);
  amqp_maybe_release_buffers(b->conn);
  return *out ? SO_OK : SO_ERR_NOMEM;
}
