/* broker_impl.h - the session's insides, shared by broker.c,
 * broker_confirm.c and topology.c only. Callers use broker.h.
 */
#ifndef SENDONCE_BROKER_IMPL_H
#define SENDONCE_BROKER_IMPL_H

#include <sys/time.h>

#include <amqp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"

#define BROKER_CH_MAIN 1   /* topology, consumers, get, acks */
#define BROKER_CH_PUB 2    /* publishing in confirm mode */
#define BROKER_CH_EVENTS 3 /* best-effort publishing, no confirms */
#define BROKER_TEXT_MAX 512
#define BROKER_GUARD_SLACK_MS 1000 /* guard deadline = call timeout + this */
#define BROKER_EVENTS_HOLD_MS 1000 /* no reopen of channel 3 this soon */

/* The guard: a thread that shuts the socket down when a call overruns its
 * deadline, because rabbitmq-c polls without a deadline while sending. */
struct broker_guard {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int fd;              /* socket to shut down; valid while armed */
  int64_t deadline_ms; /* monotonic */
  int64_t wake_ms;     /* the thread sleeps until then; 0 = until told */
  bool armed;
  bool fired;
  bool stop;
  bool started;
};

struct broker_consumer {
  char *queue; /* owned */
  int prefetch;
  char tag[128]; /* consumer tag while active, else "" */
  bool active;   /* basic.consume-ok seen on this generation */
};

struct broker_pending {
  struct broker_delivery *d;
  struct broker_pending *next;
};

/* What the broker said about the one outstanding publish. */
enum broker_pub_state {
  BROKER_PUB_IDLE = 0,
  BROKER_PUB_WAITING = 1,
  BROKER_PUB_ACKED = 2,
  BROKER_PUB_NACKED = 3,
  BROKER_PUB_CLOSED = 4, /* channel 2 closed by the broker */
};

struct broker {
  struct broker_options opts; /* strings borrowed from the caller */
  char conn_name[256];
  amqp_connection_state_t conn; /* NULL while down */
  int guard_fd;                 /* our dup of the socket, -1 while down */
  bool main_open;               /* channel 1 usable */
  bool pub_open;                /* channel 2 usable, confirm mode on */
  bool ev_open;                 /* channel 3 usable (opened on demand) */
  int64_t ev_hold_ms; /* monotonic: channel 3 not reopened before this */
  uint64_t generation;
  size_t uri_index; /* URI of the live or last connection */
  bool connected_once;
  int backoff_ms;          /* current backoff; 0 = none yet */
  int64_t next_attempt_ms; /* monotonic; 0 = now */
  uint32_t rng;            /* backoff jitter state (xorshift32) */
  struct broker_consumer consumers[BROKER_MAX_CONSUMERS];
  size_t n_consumers;
  struct broker_pending *pending_head, *pending_tail;
  /* publisher confirms */
  uint64_t pub_seq; /* tag of the last publish on channel 2 */
  enum broker_pub_state pub_state;
  bool pub_returned;
  char pub_text[BROKER_TEXT_MAX]; /* return / nack / close reason */
  /* last server channel/connection close */
  int reply_code;
  char reply_text[BROKER_TEXT_MAX];
  struct broker_guard guard;
  /* frames the session writes itself (broker_out.c) */
  bool raw;           /* plain TCP: our frames may go to the socket */
  int batch;          /* broker_batch_begin() depth */
  unsigned char *out; /* whole frames not yet written */
  size_t out_len, out_cap;
  uint64_t *unacked; /* outstanding tags of channel 1, ascending */
  size_t n_unacked, unacked_cap;
  bool untracked; /* a tag could not be recorded: no multiple acks */
  uint64_t *acks; /* acks held until the buffer is written */
  size_t n_acks, acks_cap;
  uint64_t n_writes;     /* buffers written (for tests) */
  uint64_t n_multi_acks; /* multiple acks written (for tests) */
};

/* broker__guard: arm the guard for the next `timeout_ms` +
 * BROKER_GUARD_SLACK_MS (re-arming moves the deadline). No-op while
 * down. */
void broker__guard(struct broker *b, int timeout_ms);

/* broker__unguard: disarm. If the guard fired, the connection is dropped
 * and SO_ERR_TIMEOUT returned; else SO_OK. broker__reply() disarms too:
 * arm before each library call, end the span with one of the two. */
int broker__unguard(struct broker *b);

/* broker__lost: drop the connection (no handshake), fail the outstanding
 * publish, start the backoff. `why` is logged. */
void broker__lost(struct broker *b, const char *why);

/* broker__ensure: make the session usable: reconnect when down and the
 * backoff allows, reopen closed channels. Returns like broker_connect(),
 * SO_ERR_UNAVAILABLE while the backoff runs. */
int broker__ensure(struct broker *b, char *err, size_t errlen);

/* broker__reply: turn an RPC reply on `ch` into a status. A server
 * channel.close is answered (close-ok), the channel marked closed, its
 * code and text kept in reply_code/reply_text; a connection.close or a
 * library error drops the connection. err gets "<what>: <cause>".
 * 404 -> SO_ERR_NOTFOUND, 406 -> SO_ERR_CONFLICT, 403 -> SO_ERR_REFUSED,
 * library timeout -> SO_ERR_TIMEOUT, else SO_ERR_UNAVAILABLE. */
int broker__reply(struct broker *b, amqp_rpc_reply_t r, amqp_channel_t ch,
                  const char *what, char *err, size_t errlen);

/* broker__open_main: (re)open channel 1 (new generation). */
int broker__open_main(struct broker *b, char *err, size_t errlen);

/* broker__restore_consumers: re-issue basic.qos + basic.consume for every
 * remembered consumer not active on this generation (broker_consume.c).
 * A consumer whose queue is gone is forgotten (logged). */
int broker__restore_consumers(struct broker *b, char *err, size_t errlen);

/* broker__pending_purge: free every queued delivery (broker_consume.c). */
void broker__pending_purge(struct broker *b);

/* broker__read_frame: read one frame (waiting at most timeout_ms; 0 =
 * only what is buffered) and act on it: deliveries are queued, confirms
 * recorded, closes answered. Returns SO_OK, SO_ERR_TIMEOUT (no frame) or
 * SO_ERR_UNAVAILABLE (lost). */
int broker__read_frame(struct broker *b, int timeout_ms);

/* broker__events_closed: the broker closed channel 3 (close-ok already
 * sent): mark it down and hold off reopening it for
 * BROKER_EVENTS_HOLD_MS (broker_confirm.c). */
void broker__events_closed(struct broker *b);

/* broker__out_delivered: channel 1 delivered `tag` (broker_out.c). */
void broker__out_delivered(struct broker *b, uint64_t tag);

/* broker__out_settle: ack or nack `tag` through the buffer; inside a
 * batch an ack is held until the buffer is written. Plain TCP only. */
int broker__out_settle(struct broker *b, uint64_t tag, bool ack, bool requeue);

/* broker__out_publish: one message (method, header, body frames) on `ch`
 * into the buffer; written like an ack, except on BROKER_CH_PUB, where
 * the caller flushes and then waits for the confirm. Plain TCP only. */
int broker__out_publish(struct broker *b, amqp_channel_t ch,
                        const char *exchange, const char *routing_key,
                        bool mandatory, amqp_basic_properties_t *p,
                        amqp_bytes_t body);

/* broker__flush: write the held acks and the buffer (one send when it
 * fits the socket). Call it before anything that waits for the broker,
 * with no guard armed. SO_OK, SO_ERR_UNAVAILABLE (down: the buffer is
 * dropped), SO_ERR_TIMEOUT (the broker stopped reading: dropped). */
int broker__flush(struct broker *b);

/* broker__conn_flush: broker__flush() when connected and something is
 * queued, else SO_OK. */
int broker__conn_flush(struct broker *b);

/* broker__out_reset: forget the buffer, held acks and outstanding tags
 * (the connection or channel 1 is gone); broker__out_free also frees. */
void broker__out_reset(struct broker *b);
void broker__out_free(struct broker *b);

/* broker__bytes_dup: a NUL-terminated malloc'd copy, or NULL. */
char *broker__bytes_dup(amqp_bytes_t bytes);

#endif /* SENDONCE_BROKER_IMPL_H */
