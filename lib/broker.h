/* broker.h - one AMQP session with RabbitMQ (rabbitmq-c 0.11 underneath).
 *
 * A session is one connection with two channels:
 *   channel 1: topology, basic.qos/consume, deliveries, basic.get, acks;
 *   channel 2: publishing, in confirm mode (confirm.select).
 * A publish that the broker refuses with a channel error (e.g. an unknown
 * exchange) closes only channel 2, never the consumers' channel.
 *
 * Threads: a `struct broker` is NOT thread-safe (nor is rabbitmq-c). One
 * thread owns it and makes every call; other threads hand work to that
 * thread (e.g. through an eventfd that broker_poll() can watch).
 *
 * Bounded calls: every function returns within a bound derived from the
 * options (connect_timeout_ms per URI for (re)connecting, op_timeout_ms
 * for an RPC or a confirm), even when the broker or the network stops
 * answering: rabbitmq-c can block without bound in a socket send, so each
 * call arms a per-session guard (a thread) that shuts the socket down when
 * a library call overruns its timeout by more than 1 s; the call then
 * fails and the session is down.
 *
 * Connection loss: any I/O error, heartbeat timeout, confirm timeout or
 * server connection.close marks the session down and closes the socket.
 * The next call that needs the connection reconnects when the backoff
 * (reconnect_min_ms doubling to reconnect_max_ms, with jitter) has passed,
 * trying the URIs in order starting after the one that was lost, and
 * restores in order: connection, channels, topology (if given), basic.qos,
 * the remembered consumers. Until then calls fail fast with
 * SO_ERR_UNAVAILABLE.
 *
 * Generations: every delivery carries the generation of the channel it
 * arrived on. The generation changes whenever channel 1 is (re)opened, i.e.
 * after every reconnect and after a channel error; the broker has then
 * requeued every unacked delivery of the old generation, and acking or
 * nacking one of them is a no-op returning SO_ERR_CONFLICT.
 *
 * Bounds in numbers: an RPC or a confirm wait, op_timeout_ms (+1 s for
 * the guard); a call that (re)connects, up to n_uris x connect_timeout_ms
 * plus op_timeout_ms per step of the restore; broker_poll(), its
 * timeout_ms plus the same. broker_ack()/broker_nack() never reconnect.
 *
 * Typical use (one thread):
 *   consumer:  broker_open(opts with topology) -> broker_connect() (refuse
 *              to start on SO_ERR_CONFLICT) -> broker_consume(queue,
 *              prefetch) -> loop { broker_poll(b, 200, eventfd, &d);
 *              hand d to a worker; for each result from the workers:
 *              broker_publish_confirmed() (retry queue, DLX copy) then
 *              broker_ack(d->generation, d->tag) } -> on SIGTERM
 *              broker_cancel_all(), nack(requeue) what is still queued,
 *              broker_close().
 *   watchdog:  broker_get(dlq) / broker_nack(requeue) to inspect the DLQ,
 *              broker_queue_counts(), broker_publish_confirmed() to the
 *              main exchange; call broker_poll(b, 0, -1, &d) when idle
 *              between passes to keep heartbeats going.
 *   publisher: broker_publish_confirmed() per due campaign; broker_poll()
 *              while idle.
 *
 * Secrets: the password is used for the login only; it is never logged and
 * never part of an error message.
 */
#ifndef SENDONCE_BROKER_H
#define SENDONCE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"

struct broker;
struct topology;

#define BROKER_MAX_URIS CONFIG_MAX_URIS
#define BROKER_MAX_CONSUMERS 4

/* Session options. Strings are borrowed: they must outlive the session
 * (broker_options_from_config() points them into a struct config). */
struct broker_options {
  const char *uris[BROKER_MAX_URIS]; /* amqp[s]://host[:port][/vhost], tried
                                        in order; the vhost is URL-decoded
                                        ("%2f" is "/"); no password here */
  size_t n_uris;
  const char *user;          /* login user; NULL: the URI's user */
  const char *password;      /* secret; NULL: empty */
  const char *program;       /* connection name "sendonce-<program>@host:pid" */
  int heartbeat_s;           /* AMQP heartbeat, > 0 (0 is refused) */
  int connect_timeout_ms;    /* per URI: TCP connect + TLS + AMQP handshake */
  int op_timeout_ms;         /* one RPC (declare, qos, get) or one confirm */
  int reconnect_min_ms;      /* first backoff after a failure */
  int reconnect_max_ms;      /* backoff cap */
  const char *tls_ca_file;   /* amqps://: CA bundle (PEM); NULL: the
                                system bundle
                                /etc/ssl/certs/ca-certificates.crt */
  const char *tls_cert_file; /* amqps://: client certificate or NULL */
  const char *tls_key_file;  /* amqps://: client key or NULL */
  bool tls_verify_peer;      /* verify the broker's chain and hostname */
  const struct topology *topology; /* declared after every (re)connect, or
                                      NULL; borrowed */
};

/* broker_options_from_config: fill *opts from the broker section, pointing
 * into *cfg (which must outlive the session). op_timeout_ms is the
 * config's confirm_timeout_ms. `program` is e.g. "consumer". */
void broker_options_from_config(struct broker_options *opts,
                                const struct config_broker *cfg,
                                const char *program);

/* broker_open: validate the options and create a session, not yet
 * connected (call broker_connect(), or let the first call connect).
 * Returns SO_OK with *out set (free with broker_close()), SO_ERR_INVALID
 * with the reason in err (no URI, a bad URI, a password in a URI,
 * heartbeat 0, amqps verifying without a CA file nor a system bundle),
 * SO_ERR_NOMEM. */
int broker_open(const struct broker_options *opts, struct broker **out,
                char *err, size_t errlen) SO_MUST_CHECK;

/* broker_connect: connect now, trying every URI once in order (starting
 * after the one last lost), then declare the topology and restore the
 * consumers. A no-op when already connected. Ignores the backoff (use it
 * at start, to refuse a bad set-up early). Returns SO_OK;
 * SO_ERR_UNAVAILABLE (no URI answered; the last cause is in err),
 * SO_ERR_REFUSED (login refused: bad user/password/vhost),
 * SO_ERR_CONFLICT (the topology exists with other arguments: err names the
 * argument, what we want, what exists and how to fix it; see topology.h),
 * SO_ERR_TIMEOUT. */
int broker_connect(struct broker *b, char *err, size_t errlen) SO_MUST_CHECK;

/* broker_close: close channels and connection (bounded), free every queued
 * delivery and the session. NULL is a no-op. */
void broker_close(struct broker *b);

/* broker_is_up: true while connected with both channels open. */
bool broker_is_up(const struct broker *b);

/* broker_generation: the current generation of channel 1 (0 before the
 * first connect); see "Generations" above. */
uint64_t broker_generation(const struct broker *b);

/* broker_current_uri: the URI of the live (or last) connection, or NULL
 * before the first connect. Owned by the session. */
const char *broker_current_uri(const struct broker *b);

/* broker_connection_name: "sendonce-<program>@<host>:<pid>", the client
 * property connection_name shown by the management UI and rabbitmqctl.
 * Owned by the session. */
const char *broker_connection_name(const struct broker *b);

/* broker_disconnect: drop the connection at once as if it were lost (no
 * close handshake) and start the backoff. For tests and for callers that
 * detect a problem the session cannot see. */
void broker_disconnect(struct broker *b);

/* ---- consuming ---------------------------------------------------- */

/* A string header: an extra header to publish (borrowed), or a header of a
 * delivery (owned by the delivery). In deliveries, integer and boolean
 * values are rendered as decimal / "true" / "false"; tables and arrays are
 * left out (x-death is summarised in the delivery). */
struct broker_header {
  const char *name;
  const char *value;
};

/* A message received with broker_poll() or broker_get(). Everything is
 * owned by the struct and released with broker_delivery_free(); it holds
 * no pointer into the session, so it may be handed to another thread. */
struct broker_delivery {
  uint64_t tag;         /* delivery tag, valid within `generation` only */
  uint64_t generation;  /* channel generation it arrived on */
  bool redelivered;     /* the broker delivered it before */
  char *consumer_queue; /* queue it was consumed/got from */
  char *exchange;       /* exchange it was published to ("" default) */
  char *routing_key;    /* routing key it was published with */
  char *message_id;     /* property message_id, or NULL */
  char *content_type;   /* property content_type, or NULL */
  int64_t timestamp_s;  /* property timestamp (s since epoch), or 0 */
  void *body;           /* body bytes, NUL-terminated for convenience */
  size_t body_len;      /* body length, without the terminator */
  struct broker_header *headers; /* scalar headers, in arrival order */
  size_t n_headers;
  int64_t delivery_count; /* x-delivery-count (quorum redeliveries) or 0 */
  int64_t death_count;    /* sum of the x-death "count" fields, or 0 */
  char *death_reason;     /* first (latest) x-death "reason", or NULL */
  char *death_queue;      /* first (latest) x-death "queue", or NULL */
};

/* broker_delivery_header: the value of header `name`, or NULL. Owned by
 * the delivery. */
const char *broker_delivery_header(const struct broker_delivery *d,
                                   const char *name);

/* broker_delivery_free: release a delivery. NULL is a no-op. */
void broker_delivery_free(struct broker_delivery *d);

/* broker_consume: remember a consumer of `queue` (manual acks) with
 * `prefetch` unacked deliveries per consumer (basic.qos, prefetch >= 1)
 * and start it now if connected (else at the next connect). Each
 * reconnect re-issues it. Returns SO_OK; SO_ERR_INVALID (bad argument,
 * too many consumers); SO_ERR_UNAVAILABLE / SO_ERR_TIMEOUT (it stays
 * remembered and starts at the next connect); SO_ERR_NOTFOUND (no such
 * queue: it is forgotten; err says so). */
int broker_consume(struct broker *b, const char *queue, int prefetch, char *err,
                   size_t errlen) SO_MUST_CHECK;

/* broker_cancel_all: stop every consumer (basic.cancel) and forget them.
 * Deliveries already on their way still arrive through broker_poll():
 * nack them with requeue. Returns SO_OK or SO_ERR_UNAVAILABLE (down: the
 * consumers are forgotten anyway and the broker dropped them with the
 * connection). */
int broker_cancel_all(struct broker *b) SO_MUST_CHECK;

/* broker_poll: the pump. Services heartbeats and the connection, and
 * waits up to timeout_ms for the next delivery. Call it from the owning
 * thread's loop at least every heartbeat_s / 2, even when idle.
 * If wake_fd >= 0, the wait also ends early (SO_ERR_TIMEOUT) when wake_fd
 * becomes readable (it is not read). Returns:
 *   SO_OK with *out set: a delivery (caller owns it);
 *   SO_ERR_TIMEOUT: nothing arrived (or wake_fd is readable);
 *   SO_ERR_UNAVAILABLE: down and not (yet) reconnected; the call slept
 *     at most timeout_ms, until the next reconnect attempt is due;
 *   SO_ERR_CONFLICT: a reconnect found the topology changed (err says how;
 *     the caller should stop);
 *   SO_ERR_REFUSED: a reconnect was refused at login. */
int broker_poll(struct broker *b, int timeout_ms, int wake_fd,
                struct broker_delivery **out, char *err,
                size_t errlen) SO_MUST_CHECK;

/* broker_ack: basic.ack of one delivery. Returns SO_OK (sent, or queued
 * inside a batch: see broker_batch_begin());
 * SO_ERR_CONFLICT (stale generation: nothing sent, the broker already
 * requeued it); SO_ERR_UNAVAILABLE (down, or lost while sending). */
int broker_ack(struct broker *b, uint64_t generation,
               uint64_t tag) SO_MUST_CHECK;

/* broker_nack: basic.nack of one delivery (basic.reject semantics).
 * requeue=true puts it back in its queue (redelivered later, counted by
 * the quorum delivery limit); requeue=false dead-letters it through the
 * queue's DLX (no reason header can be added: to dead-letter with a reason
 * publish a copy to the DLX with broker_publish_confirmed() and ack).
 * Returns like broker_ack(). */
int broker_nack(struct broker *b, uint64_t generation, uint64_t tag,
                bool requeue) SO_MUST_CHECK;

/* broker_batch_begin: until the matching broker_batch_end(), acks, nacks
 * and unconfirmed publishes are queued in the session instead of each
 * being written on its own, and acks that settle the lowest outstanding
 * deliveries of the generation go out as one basic.ack with multiple
 * set (never covering a delivery not settled by the caller). Nothing
 * anyone waits for is delayed: every call that waits for the broker (a
 * confirmed publish, an RPC, broker_poll) writes the queue first.
 * Batches nest; a no-op on TLS connections (rabbitmq-c writes those). */
void broker_batch_begin(struct broker *b);

/* broker_batch_end: end a batch; the outermost end writes what is queued
 * (one send(2) when it fits the socket buffer). Returns SO_OK, or like
 * broker_ack() when the write failed (the connection is then down, and
 * the broker requeues what was not acked). */
int broker_batch_end(struct broker *b);

/* broker_get: basic.get one message from `queue` without auto-ack (e.g.
 * the watchdog reading the DLQ); ack/nack it like a delivery. Returns
 * SO_OK with *out set (caller owns it); SO_ERR_NOTFOUND: the queue is
 * empty; SO_ERR_INVALID: no such queue (err says so); SO_ERR_UNAVAILABLE;
 * SO_ERR_TIMEOUT. */
int broker_get(struct broker *b, const char *queue,
               struct broker_delivery **out, char *err,
               size_t errlen) SO_MUST_CHECK;

/* broker_queue_counts: passive queue.declare: messages ready (not
 * counting unacked ones) and consumers of `queue`, exact as of now
 * (unlike the management API's sampled statistics). Either out pointer
 * may be NULL. Returns SO_OK; SO_ERR_NOTFOUND: no such queue (the broker
 * closed channel 1 for it: the generation changes, like after a channel
 * error); SO_ERR_UNAVAILABLE; SO_ERR_TIMEOUT. */
int broker_queue_counts(struct broker *b, const char *queue, uint32_t *messages,
                        uint32_t *consumers, char *err,
                        size_t errlen) SO_MUST_CHECK;

/* ---- publishing (broker_confirm.c) --------------------------------- */

/* A message to publish. Borrowed for the duration of the call. Every
 * message gets: delivery_mode 2 (persistent), content_type
 * application/json, app_id "sendonce", timestamp now, message_id, and
 * the headers x-sendonce-campaign (= message_id) and x-sendonce-attempt,
 * then the extra string headers (e.g. x-sendonce-error,
 * x-sendonce-reason). */
struct broker_message {
  const char *exchange; /* "" = the default exchange (queue by name) */
  const char *routing_key;
  const void *body;
  size_t body_len;
  const char *message_id;              /* campaign id; required */
  int attempt;                         /* x-sendonce-attempt, >= 0 */
  const struct broker_header *headers; /* extra headers or NULL */
  size_t n_headers;
  bool mandatory; /* unroutable -> returned -> SO_ERR_REFUSED */
};

/* broker_publish_confirmed: publish one message on the confirm channel
 * and wait (at most op_timeout_ms) for the broker's confirm. Deliveries
 * for consumers that arrive meanwhile are kept for broker_poll().
 * Returns:
 *   SO_OK: the broker acked it (and did not return it): it is in every
 *     queue it routed to, on disk for durable queues;
 *   SO_ERR_REFUSED: not published: nacked (e.g. a full reject-publish
 *     queue), returned as unroutable (mandatory), or the channel was
 *     closed by the broker (e.g. no such exchange); err says which;
 *   SO_ERR_TIMEOUT: no confirm in time; the connection is dropped (the
 *     message may or may not have been enqueued: treat as not published,
 *     consumers deduplicate);
 *   SO_ERR_UNAVAILABLE: down, or lost before the confirm (not published);
 *   SO_ERR_INVALID: bad message (no message_id, negative attempt).
 * May reconnect first when the session is down and the backoff allows. */
int broker_publish_confirmed(struct broker *b, const struct broker_message *m,
                             char *err, size_t errlen) SO_MUST_CHECK;

/* broker_publish_unconfirmed: publish one best-effort message (a
 * lifecycle event) on a channel of its own, not in confirm mode, and
 * return once it is written: no round trip. A broker-side refusal (no
 * such exchange, no permission) closes that channel only: the message
 * and any sent just before it are lost, consuming and confirmed
 * publishing carry on, and the channel is reopened by a later call (not
 * within a second of the close: calls meanwhile fail fast). Never for a
 * message that must not be lost. Returns:
 *   SO_OK: written to the connection (not a promise it was enqueued);
 *   SO_ERR_UNAVAILABLE: down, lost while sending, or the channel is held
 *     closed after a refusal;
 *   SO_ERR_TIMEOUT: the send overran op_timeout_ms (connection dropped);
 *   SO_ERR_INVALID: bad message, or mandatory set (no returns here).
 * May reconnect first when the session is down and the backoff allows. */
int broker_publish_unconfirmed(struct broker *b, const struct broker_message *m,
                               char *err, size_t errlen) SO_MUST_CHECK;

#endif /* SENDONCE_BROKER_H */
