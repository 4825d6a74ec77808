/* broker_confirm.c - publishing with publisher confirms.
 *
 * rabbitmq-c 0.11 has no confirm helper. Channel 2 is put in confirm mode
 * when it opens; the broker then numbers our publishes 1, 2, ... on that
 * channel and answers each with basic.ack or basic.nack (possibly
 * `multiple`, covering every tag up to it). An unroutable mandatory
 * message comes back as basic.return first, then is acked: so a return
 * seen while waiting means "not published" even though an ack follows.
 *
 * One publish is outstanding at a time: the call waits for its confirm.
 * That keeps the mapping from confirm to caller trivial, and campaign
 * triggers are few. Frames for channel 1 (deliveries) that arrive while
 * we wait are queued by the frame loop for broker_poll(), never dropped.
 *
 * Best-effort messages (lifecycle events) go out on channel 3 instead,
 * not in confirm mode: nothing waits for them, and a broker-side refusal
 * (a missing exchange) closes channel 3 only, never the channel that
 * carries deliveries and acks, nor the one whose confirms count.
 */
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "broker_impl.h"
#include "clock.h"
#include "log.h"

#define BROKER_MAX_HEADERS 16

static void header_str(amqp_table_entry_t *e, const char *name,
                       const char *value)
{
  e->key = amqp_cstring_bytes(name);
  e->value.kind = AMQP_FIELD_KIND_UTF8;
  e->value.value.bytes = amqp_cstring_bytes(value);
}

/* Wait for the confirm of the outstanding publish until deadline_ms. */
static int wait_confirm(struct broker *b, int64_t deadline_ms)
{
  while (b->pub_state == BROKER_PUB_WAITING) {
    int64_t left = deadline_ms - clock_monotonic_ms();
    if (left <= 0)
      return SO_ERR_TIMEOUT;
    int rc = broker__read_frame(b, (int)left);
    if (rc == SO_ERR_UNAVAILABLE)
      return rc;
  }
  return SO_OK;
}

static int check_message(const struct broker_message *m, char *err,
                         size_t errlen)
{
  if (!m->message_id || !*m->message_id || m->attempt < 0 || !m->exchange ||
      !m->routing_key || (!m->body && m->body_len)) {
    so_errf(err, errlen,
            "broker: publish needs exchange, routing_key, message_id and "
            "attempt >= 0");
    return SO_ERR_INVALID;
  }
  if (m->n_headers > BROKER_MAX_HEADERS) {
    so_errf(err, errlen, "broker: at most %d extra headers",
            BROKER_MAX_HEADERS);
    return SO_ERR_INVALID;
  }
  for (size_t i = 0; i < m->n_headers; i++)
    if (!m->headers[i].name || !m->headers[i].value) {
      so_errf(err, errlen, "broker: header %zu has no name or value", i);
      return SO_ERR_INVALID;
    }
  return SO_OK;
}

/* ready_to_publish: a well-formed message and a live connection (a
 * connection that could not be made in time reads as unavailable). */
static int ready_to_publish(struct broker *b, const struct broker_message *m,
                            char *err, size_t errlen)
{
  int rc = check_message(m, err, errlen);
  if (rc)
    return rc;
  rc = broker__ensure(b, err, errlen);
  return rc == SO_ERR_TIMEOUT ? SO_ERR_UNAVAILABLE : rc;
}

/* The properties every message gets (broker.h); `entries` holds the
 * headers and must outlive the publish. */
static void set_props(const struct broker_message *m,
                      amqp_table_entry_t entries[2 + BROKER_MAX_HEADERS],
                      amqp_basic_properties_t *pp)
{
  amqp_basic_properties_t p;
  size_t n = 0;
  header_str(&entries[n++], "x-sendonce-campaign", m->message_id);
  entries[n].key = amqp_cstring_bytes("x-sendonce-attempt");
  entries[n].value.kind = AMQP_FIELD_KIND_I32;
  entries[n++].value.value.i32 = m->attempt;
  for (size_t i = 0; i < m->n_headers; i++)
    header_str(&entries[n++], m->headers[i].name, m->headers[i].value);
  memset(&p, 0, sizeof(p));
  p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
             AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_APP_ID_FLAG |
             AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_HEADERS_FLAG;
  p.content_type = amqp_cstring_bytes("application/json");
  p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
  p.message_id = amqp_cstring_bytes(m->message_id);
  p.app_id = amqp_cstring_bytes("sendonce");
  p.timestamp = (uint64_t)(clock_now_ms() / 1000);
  p.headers.num_entries = (int)n;
  p.headers.entries = entries;
  *pp = p;
}

static int finish_confirmed(struct broker *b, const struct broker_message *m,
                            int64_t deadline, char *err, size_t errlen);

int broker_publish_confirmed(struct broker *b, const struct broker_message *m,
                             char *err, size_t errlen)
{
  amqp_table_entry_t entries[2 + BROKER_MAX_HEADERS];
  amqp_basic_properties_t p;
  int rc = ready_to_publish(b, m, err, errlen);
  if (rc)
    return rc;
  set_props(m, entries, &p);
  amqp_bytes_t body = {m->body_len, (void *)(uintptr_t)m->body};

  int64_t deadline = clock_monotonic_ms() + b->opts.op_timeout_ms;
  b->pub_state = BROKER_PUB_WAITING;
  b->pub_returned = false;
  b->pub_text[0] = '\0';
  if (b->raw) {
    /* With whatever else is queued, in one write. */
    rc = broker__out_publish(b, BROKER_CH_PUB, m->exchange, m->routing_key,
                             m->mandatory, &p, body);
    if (rc == SO_OK)
      rc = broker__flush(b);
    if (rc != SO_OK) {
      b->pub_state = BROKER_PUB_IDLE;
      so_errf(err, errlen, "broker: publish %s: %s", m->message_id,
              rc == SO_ERR_TIMEOUT ? "send timed out" : so_strerror(rc));
      return rc == SO_ERR_TIMEOUT || rc == SO_ERR_INVALID ? rc
                                                          : SO_ERR_UNAVAILABLE;
    }
    b->pub_seq++;
    broker__guard(b, b->opts.op_timeout_ms);
    return finish_confirmed(b, m, deadline, err, errlen);
  }
  broker__guard(b, b->opts.op_timeout_ms);
  int st = amqp_basic_publish(
      b->conn, BROKER_CH_PUB, amqp_cstring_bytes(m->exchange),
      amqp_cstring_bytes(m->routing_key), m->mandatory, 0, &p, body);
  if (st != AMQP_STATUS_OK) {
    /* A fired guard has dropped the connection already. */
    bool fired = broker__unguard(b) != SO_OK;
    if (!fired)
      broker__lost(b, amqp_error_string2(st));
    b->pub_state = BROKER_PUB_IDLE;
    so_errf(err, errlen, "broker: publish %s: %s", m->message_id,
            fired ? "send timed out" : amqp_error_string2(st));
    return fired ? SO_ERR_TIMEOUT : SO_ERR_UNAVAILABLE;
  }
  b->pub_seq++;
  return finish_confirmed(b, m, deadline, err, errlen);
}

/* finish_confirmed: wait for the confirm of the publish just written
 * (under the guard) and say what it was. */
static int finish_confirmed(struct broker *b, const struct broker_message *m,
                            int64_t deadline, char *err, size_t errlen)
{
  int rc = wait_confirm(b, deadline);
  if (rc != SO_ERR_UNAVAILABLE && broker__unguard(b) != SO_OK)
    rc = SO_ERR_TIMEOUT;
  enum broker_pub_state state = b->pub_state;
  b->pub_state = BROKER_PUB_IDLE;
  if (rc == SO_ERR_TIMEOUT) {
    /* An unknown outcome on a live channel would leave a confirm we can
     * no longer match to anyone: start over on a fresh connection. */
    if (b->conn)
      broker__lost(b, "publisher confirm timed out");
    so_errf(err, errlen, "broker: publish %s: no confirm within %d ms",
            m->message_id, b->opts.op_timeout_ms);
    return SO_ERR_TIMEOUT;
  }
  if (rc == SO_ERR_UNAVAILABLE || state == BROKER_PUB_WAITING) {
    so_errf(err, errlen,
            "broker: publish %s: connection lost before the "
            "confirm",
            m->message_id);
    return SO_ERR_UNAVAILABLE;
  }
  if (state == BROKER_PUB_CLOSED) {
    so_errf(err, errlen, "broker: publish %s: %s", m->message_id,
            b->pub_text[0] ? b->pub_text : "channel closed");
    return b->conn ? SO_ERR_REFUSED : SO_ERR_UNAVAILABLE;
  }
  if (state == BROKER_PUB_NACKED || b->pub_returned) {
    so_errf(err, errlen, "broker: publish %s: %s", m->message_id, b->pub_text);
    return SO_ERR_REFUSED;
  }
  log_debug(
      "broker: published campaign=%s exchange=%s routing_key=%s "
      "attempt=%d",
      m->message_id, m->exchange, m->routing_key, m->attempt);
  return SO_OK;
}

/* ---- best effort: channel 3 ----------------------------------------- */

void broker__events_closed(struct broker *b)
{
  b->ev_open = false;
  /* A broker that refuses our events (no exchange, no permission) would
   * refuse the next one too: without a pause every event would cost a
   * channel.open round trip and a close. */
  b->ev_hold_ms = clock_monotonic_ms() + BROKER_EVENTS_HOLD_MS;
}

static int open_events(struct broker *b, char *err, size_t errlen)
{
  if (clock_monotonic_ms() < b->ev_hold_ms) {
    so_errf(err, errlen,
            "broker: the broker closed the events channel moments ago");
    return SO_ERR_UNAVAILABLE;
  }
  /* The RPC reads: nothing may wait in the buffer meanwhile. */
  int rc = broker__conn_flush(b);
  if (rc != SO_OK)
    return rc;
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_channel_open(b->conn, BROKER_CH_EVENTS);
  rc = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_EVENTS,
                     "channel.open", err, errlen);
  if (rc)
    return rc;
  b->ev_open = true;
  return SO_OK;
}

int broker_publish_unconfirmed(struct broker *b, const struct broker_message *m,
                               char *err, size_t errlen)
{
  amqp_table_entry_t entries[2 + BROKER_MAX_HEADERS];
  amqp_basic_properties_t p;
  if (m->mandatory) {
    so_errf(err, errlen,
            "broker: a mandatory message needs broker_publish_confirmed()");
    return SO_ERR_INVALID;
  }
  int rc = ready_to_publish(b, m, err, errlen);
  if (rc)
    return rc;
  if (!b->ev_open && (rc = open_events(b, err, errlen)) != SO_OK)
    return rc == SO_ERR_TIMEOUT ? SO_ERR_UNAVAILABLE : rc;
  set_props(m, entries, &p);
  amqp_bytes_t body = {m->body_len, (void *)(uintptr_t)m->body};
  if (b->raw) {
    rc = broker__out_publish(b, BROKER_CH_EVENTS, m->exchange, m->routing_key,
                             false, &p, body);
    if (rc != SO_OK)
      so_errf(err, errlen, "broker: publish %s: %s", m->message_id,
              so_strerror(rc));
    return rc == SO_OK || rc == SO_ERR_TIMEOUT || rc == SO_ERR_INVALID
               ? rc
               : SO_ERR_UNAVAILABLE;
  }
  /* Guarded like any send: a broker that stopped reading must not hold
   * the connection's owner forever. */
  broker__guard(b, b->opts.op_timeout_ms);
  int st = amqp_basic_publish(
      b->conn, BROKER_CH_EVENTS, amqp_cstring_bytes(m->exchange),
      amqp_cstring_bytes(m->routing_key), 0, 0, &p, body);
  if (broker__unguard(b) != SO_OK) {
    so_errf(err, errlen, "broker: publish %s: send timed out", m->message_id);
    return SO_ERR_TIMEOUT;
  }
  if (st != AMQP_STATUS_OK) {
    broker__lost(b, amqp_error_string2(st));
    so_errf(err, errlen, "broker: publish %s: %s", m->message_id,
            amqp_error_string2(st));
    return SO_ERR_UNAVAILABLE;
  }
  return SO_OK;
}
