/* broker_out.c - frames the session encodes and writes itself.
 *
 * rabbitmq-c writes every frame with a send(2) of its own: an ack is one
 * system call, a publish three (method, header, body). The consumer's
 * connection owner settles deliveries and sends lifecycle events in
 * bursts (an ack and a campaign.claimed event per claim, a campaign.done
 * per finish), and on loopback every send(2) that pushes a segment also
 * wakes the broker's reader. So on a plain TCP connection the session
 * encodes acks, nacks and best-effort publishes itself (rabbitmq-c's
 * public amqp_encode_method() / amqp_encode_properties()), queues them in
 * one buffer, and writes the buffer with one send(2): at once outside a
 * batch, and at broker_batch_end() or before anything waits for the
 * broker inside one. Frames rabbitmq-c writes (confirmed publishes, RPCs,
 * heartbeats, close-ok) never interleave with ours: the buffer holds whole
 * frames and is written whole before any of them (or the connection is
 * dropped). TLS connections keep rabbitmq-c's path: only it can write
 * through the TLS session.
 *
 * Acks inside a batch are held until the buffer is written, and then the
 * ones that settle the lowest outstanding tags of channel 1 go out as one
 * basic.ack with multiple=true: the broker settles them with one command
 * (for a quorum queue, one Raft log entry instead of one per tag). That is
 * safe only because the session knows every outstanding tag of the
 * generation (`unacked`, filled as deliveries are read): a multiple ack
 * never covers a tag the caller has not settled.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "broker.h"
#include "broker_impl.h"
#include "clock.h"
#include "log.h"

#define OUT_FRAME_OVERHEAD 8      /* type, channel, size; frame end */
#define OUT_FLUSH_AT (64 * 1024)  /* a batch writes early past this */
#define OUT_KEEP_CAP (256 * 1024) /* a larger buffer is freed when empty */
#define OUT_PROPS_MAX (1u << 20)  /* header frame properties bound */

/* ---- the buffer ------------------------------------------------------ */

/* out_room: room for n more bytes at out + out_len, or NULL. */
static unsigned char *out_room(struct broker *b, size_t n)
{
  if (b->out_cap - b->out_len < n) {
    size_t cap = b->out_cap ? b->out_cap : 4096;
    while (cap - b->out_len < n)
      cap *= 2;
    unsigned char *p = realloc(b->out, cap);
    if (!p)
      return NULL;
    b->out = p;
    b->out_cap = cap;
  }
  return b->out + b->out_len;
}

static void put16(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
  put16(p, v >> 16);
  put16(p + 2, v & 0xffff);
}

static void put64(unsigned char *p, uint64_t v)
{
  put32(p, (uint32_t)(v >> 32));
  put32(p + 4, (uint32_t)v);
}

/* frame_close: finish the frame that starts at out + out_len with a
 * payload of n bytes, and take it into the buffer. */
static void frame_close(struct broker *b, uint8_t type, amqp_channel_t ch,
                        size_t n)
{
  unsigned char *p = b->out + b->out_len;
  p[0] = type;
  put16(p + 1, ch);
  put32(p + 3, (uint32_t)n);
  p[7 + n] = AMQP_FRAME_END;
  b->out_len += n + OUT_FRAME_OVERHEAD;
}

/* put_method: a method frame; `room` bounds the encoded arguments. */
static int put_method(struct broker *b, amqp_channel_t ch,
                      amqp_method_number_t id, void *decoded, size_t room)
{
  unsigned char *p = out_room(b, room + 4 + OUT_FRAME_OVERHEAD);
  if (!p)
    return SO_ERR_NOMEM;
  put32(p + 7, id);
  amqp_bytes_t enc = {room, p + 11};
  int n = amqp_encode_method(id, decoded, enc);
  if (n < 0)
    return SO_ERR_INVALID;
  frame_close(b, AMQP_FRAME_METHOD, ch, (size_t)n + 4);
  return SO_OK;
}

/* put_header: a content header frame (class basic). */
static int put_header(struct broker *b, amqp_channel_t ch,
                      amqp_basic_properties_t *p, uint64_t body_size)
{
  for (size_t room = 512; room <= OUT_PROPS_MAX; room *= 2) {
    unsigned char *f = out_room(b, room + 12 + OUT_FRAME_OVERHEAD);
    if (!f)
      return SO_ERR_NOMEM;
    put16(f + 7, AMQP_BASIC_CLASS);
    put16(f + 9, 0); /* weight */
    put64(f + 11, body_size);
    amqp_bytes_t enc = {room, f + 19};
    int n = amqp_encode_properties(AMQP_BASIC_CLASS, p, enc);
    if (n >= 0) {
      frame_close(b, AMQP_FRAME_HEADER, ch, (size_t)n + 12);
      return SO_OK;
    }
  }
  return SO_ERR_INVALID;
}

static int put_body(struct broker *b, amqp_channel_t ch, amqp_bytes_t body)
{
  int fm = b->conn ? amqp_get_frame_max(b->conn) : 0;
  size_t chunk = fm > 4096 ? (size_t)fm - OUT_FRAME_OVERHEAD : 4096;
  const unsigned char *src = body.bytes;
  for (size_t off = 0; off < body.len; off += chunk) {
    size_t n = body.len - off < chunk ? body.len - off : chunk;
    unsigned char *f = out_room(b, n + OUT_FRAME_OVERHEAD);
    if (!f)
      return SO_ERR_NOMEM;
    memcpy(f + 7, src + off, n);
    frame_close(b, AMQP_FRAME_BODY, ch, n);
  }
  return SO_OK;
}

/* ---- outstanding tags of channel 1 ---------------------------------- */

void broker__out_delivered(struct broker *b, uint64_t tag)
{
  if (!b->raw || b->untracked)
    return;
  if (b->n_unacked == b->unacked_cap) {
    size_t cap = b->unacked_cap ? b->unacked_cap * 2 : 16;
    uint64_t *p = realloc(b->unacked, cap * sizeof(*p));
    if (!p) {
      /* Without the full list no multiple ack is safe: single acks only
       * until the next generation. */
      b->untracked = true;
      return;
    }
    b->unacked = p;
    b->unacked_cap = cap;
  }
  /* Tags grow within a generation: the list stays sorted. */
  b->unacked[b->n_unacked++] = tag;
}

static void untrack(struct broker *b, uint64_t tag)
{
  for (size_t i = 0; i < b->n_unacked; i++) {
    if (b->unacked[i] == tag) {
      memmove(&b->unacked[i], &b->unacked[i + 1],
              (b->n_unacked - i - 1) * sizeof(b->unacked[0]));
      b->n_unacked--;
      return;
    }
  }
}

static bool held(const struct broker *b, uint64_t tag)
{
  for (size_t i = 0; i < b->n_acks; i++)
    if (b->acks[i] == tag)
      return true;
  return false;
}

static int put_ack(struct broker *b, uint64_t tag, bool multiple)
{
  amqp_basic_ack_t m = {.delivery_tag = tag, .multiple = multiple};
  return put_method(b, BROKER_CH_MAIN, AMQP_BASIC_ACK_METHOD, &m, 16);
}

/* put_held_acks: the acks held in this batch, the lowest outstanding run
 * of them as one multiple ack. */
static int put_held_acks(struct broker *b)
{
  int rc = SO_OK;
  size_t k = 0;
  if (!b->untracked)
    while (k < b->n_unacked && held(b, b->unacked[k]))
      k++;
  uint64_t upto = k >= 2 ? b->unacked[k - 1] : 0;
  if (upto) {
    rc = put_ack(b, upto, true);
    if (rc == SO_OK) {
      b->n_multi_acks++;
      memmove(b->unacked, b->unacked + k,
              (b->n_unacked - k) * sizeof(b->unacked[0]));
      b->n_unacked -= k;
    }
  }
  for (size_t i = 0; i < b->n_acks && rc == SO_OK; i++) {
    uint64_t tag = b->acks[i];
    if (upto && tag <= upto)
      continue;
    rc = put_ack(b, tag, false);
    untrack(b, tag);
  }
  b->n_acks = 0;
  return rc;
}

/* ---- writing ---------------------------------------------------------- */

/* out_trim: empty the buffer; a large one is freed (one big message
 * should not pin its size for the session's life). */
static void out_trim(struct broker *b)
{
  b->out_len = 0;
  if (b->out_cap > OUT_KEEP_CAP) {
    free(b->out);
    b->out = NULL;
    b->out_cap = 0;
  }
}

void broker__out_reset(struct broker *b)
{
  out_trim(b);
  b->n_acks = 0;
  b->n_unacked = 0;
  b->untracked = false;
}

void broker__out_free(struct broker *b)
{
  free(b->out);
  free(b->unacked);
  free(b->acks);
  b->out = NULL;
  b->unacked = b->acks = NULL;
  b->out_cap = b->unacked_cap = b->acks_cap = 0;
  broker__out_reset(b);
}

/* send_all: the whole buffer or nothing usable: a partial write followed
 * by a frame of rabbitmq-c's would corrupt the stream, so a send that
 * cannot finish within op_timeout_ms drops the connection. */
static int send_all(struct broker *b)
{
  int fd = amqp_get_sockfd(b->conn);
  int64_t deadline = clock_monotonic_ms() + b->opts.op_timeout_ms;
  size_t off = 0;
  broker__guard(b, b->opts.op_timeout_ms);
  while (off < b->out_len) {
    ssize_t n =
        send(fd, b->out + off, b->out_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      off += (size_t)n;
      continue;
    }
    if (errno == EINTR)
      continue;
    int64_t left = deadline - clock_monotonic_ms();
    if ((errno != EAGAIN && errno != EWOULDBLOCK) || left <= 0)
      break;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    (void)poll(&p, 1, (int)left);
  }
  int err = errno;
  bool late = clock_monotonic_ms() >= deadline;
  if (broker__unguard(b) != SO_OK)
    return SO_ERR_TIMEOUT; /* dropped, buffer reset */
  if (off < b->out_len) {
    log_debug("broker: write failed errno=%d", err);
    broker__lost(
        b, late ? "write timed out (broker not reading?)" : "write failed");
    return late ? SO_ERR_TIMEOUT : SO_ERR_UNAVAILABLE;
  }
  b->n_writes++;
  out_trim(b);
  return SO_OK;
}

int broker__flush(struct broker *b)
{
  if (!b->conn) {
    broker__out_reset(b);
    return SO_ERR_UNAVAILABLE;
  }
  int rc = b->n_acks ? put_held_acks(b) : SO_OK;
  if (b->out_len) {
    int rc2 = send_all(b);
    if (rc2 != SO_OK)
      return rc2;
  }
  return rc;
}

int broker__conn_flush(struct broker *b)
{
  if (!b->conn || (!b->out_len && !b->n_acks))
    return SO_OK;
  return broker__flush(b);
}

/* queued: a frame went into the buffer; outside a batch, or once the
 * buffer is large, write it now. */
static int queued(struct broker *b)
{
  if (b->batch == 0 || b->out_len >= OUT_FLUSH_AT)
    return broker__flush(b);
  return SO_OK;
}

int broker__out_settle(struct broker *b, uint64_t tag, bool ack, bool requeue)
{
  int rc;
  if (ack && b->batch > 0) {
    if (b->n_acks == b->acks_cap) {
      size_t cap = b->acks_cap ? b->acks_cap * 2 : 16;
      uint64_t *p = realloc(b->acks, cap * sizeof(*p));
      if (!p)
        goto now;
      b->acks = p;
      b->acks_cap = cap;
    }
    b->acks[b->n_acks++] = tag;
    return SO_OK;
  }
now:
  if (ack) {
    rc = put_ack(b, tag, false);
  } else {
    amqp_basic_nack_t m = {
        .delivery_tag = tag, .multiple = 0, .requeue = requeue};
    rc = put_method(b, BROKER_CH_MAIN, AMQP_BASIC_NACK_METHOD, &m, 16);
  }
  if (rc != SO_OK)
    return rc;
  untrack(b, tag);
  return queued(b);
}

int broker__out_publish(struct broker *b, amqp_channel_t ch,
                        const char *exchange, const char *routing_key,
                        bool mandatory, amqp_basic_properties_t *p,
                        amqp_bytes_t body)
{
  size_t mark = b->out_len;
  amqp_basic_publish_t m = {
      .ticket = 0,
      .exchange = amqp_cstring_bytes(exchange),
      .routing_key = amqp_cstring_bytes(routing_key),
      .mandatory = mandatory,
      .immediate = 0,
  };
  size_t room = 2 + 1 + m.exchange.len + 1 + m.routing_key.len + 1;
  int rc = put_method(b, ch, AMQP_BASIC_PUBLISH_METHOD, &m, room);
  if (rc == SO_OK)
    rc = put_header(b, ch, p, body.len);
  if (rc == SO_OK)
    rc = put_body(b, ch, body);
  if (rc != SO_OK) {
    b->out_len = mark; /* never half a message on the wire */
    return rc;
  }
  /* A confirmed publish is written by its caller, who then waits. */
  return ch == BROKER_CH_PUB ? SO_OK : queued(b);
}

/* ---- batches ---------------------------------------------------------- */

void broker_batch_begin(struct broker *b)
{
  b->batch++;
}

int broker_batch_end(struct broker *b)
{
  if (b->batch > 0)
    b->batch--;
  if (b->batch > 0 || (!b->out_len && !b->n_acks))
    return SO_OK;
  return broker__flush(b);
}
