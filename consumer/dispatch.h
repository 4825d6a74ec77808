/* dispatch.h - the connection owner's loop and the queues between it and
 * the workers.
 *
 * rabbitmq-c is not thread-safe, so one thread (the owner) makes every
 * broker call: it pumps broker_poll(), hands deliveries to the workers
 * through a job queue, and executes what the workers ask for (ack, nack,
 * publish with a confirm, events) in the order they asked, woken by an
 * eventfd that broker_poll() watches.
 *
 * The rule that keeps campaigns from being lost: a request that publishes
 * a copy of a delivery (retry queue, DLQ) and then settles it acks the
 * delivery only after the broker confirmed the copy; if the publish fails
 * the delivery is nacked back to its queue instead. A publish without a
 * delivery (a resume trigger) is retried until it is confirmed or the
 * shutdown deadline passes.
 */
#ifndef SENDONCE_CONSUMER_DISPATCH_H
#define SENDONCE_CONSUMER_DISPATCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "events.h"
#include "stats.h"
#include "status.h"
#include "topology.h"

struct dispatch;

/* What to do with a delivery once the optional publish is confirmed. */
enum dispatch_settle {
  DISPATCH_ACK = 0,
  DISPATCH_NACK_REQUEUE = 1,
};

/* A message to publish. Strings are copied by the dispatch_* calls. */
struct dispatch_publish {
  const char *exchange;    /* "" = default exchange (a retry queue) */
  const char *routing_key; /* queue name, "campaign.due", ... */
  const char *body;
  size_t body_len;
  const char *message_id; /* campaign id (required) */
  int attempt;            /* x-sendonce-attempt */
  const char *error;      /* x-sendonce-error, or NULL */
};

/* dispatch_new: queues and the wake eventfd for `b` (borrowed, owned by
 * the calling thread from now on) with `n_workers` workers. A delivery
 * that waits `park_ms` (0 = forever) for a free worker is moved to the
 * shortest retry queue (see park_waiting in dispatch.c). Returns SO_OK,
 * SO_ERR_NOMEM or SO_ERR_IO (no eventfd). */
int dispatch_new(struct broker *b, const struct topology *t,
                 struct consumer_stats *stats, int n_workers, int park_ms,
                 struct dispatch **out) SO_MUST_CHECK;

/* dispatch_delivery_attempt: the x-sendonce-attempt header, 0 if absent or
 * not a number. */
int dispatch_delivery_attempt(const struct broker_delivery *dl);

/* dispatch_free: free whatever is still queued. NULL is a no-op. */
void dispatch_free(struct dispatch *d);

/* dispatch_run: the owner's loop. Runs until `*stop` > 0 (a signal), then
 * stops consuming, nacks (requeue) the deliveries no worker took, and
 * keeps executing the workers' requests until every worker has called
 * dispatch_worker_exit() and every request is done (resume triggers get
 * `drain_ms`; with `*stop` >= 2 they get 1 s). Returns SO_OK, or the
 * broker's status when the session cannot go on (topology changed, login
 * refused); the workers are told to stop either way. */
int dispatch_run(struct dispatch *d, const volatile sig_atomic_t *stop,
                 int drain_ms);

/* dispatch_on_tick: have dispatch_run() call cb(arg) on its own thread
 * once per loop (at least every 200 ms), e.g. to act on a SIGHUP the
 * signal handler only noted. Set it before dispatch_run(). */
void dispatch_on_tick(struct dispatch *d, void (*cb)(void *arg), void *arg);

/* ---- the workers' side (thread-safe) -------------------------------- */

/* dispatch_take: the next delivery (the caller owns it), waiting up to
 * timeout_ms. NULL on timeout or once the dispatch is closing. Deliveries
 * of an old channel generation (the broker requeued them) are dropped
 * here. */
struct broker_delivery *dispatch_take(struct dispatch *d, int timeout_ms);

/* dispatch_closing: true once the owner stopped consuming: a worker with
 * no campaign should exit. */
bool dispatch_closing(const struct dispatch *d);

/* dispatch_settle: publish `pub` (may be NULL) with a confirm, then ack or
 * nack(requeue) the delivery (generation, tag); a failed publish nacks it
 * with requeue instead of acking. */
void dispatch_settle(struct dispatch *d, const struct broker_delivery *dl,
                     enum dispatch_settle how,
                     const struct dispatch_publish *pub);

/* dispatch_publish: publish with a confirm, retrying with backoff until
 * the broker confirms it (or the shutdown deadline passes). */
void dispatch_publish(struct dispatch *d, const struct dispatch_publish *pub);

/* dispatch_event: publish a lifecycle event (best effort; copied). */
void dispatch_event(struct dispatch *d, const struct event *e);

/* dispatch_worker_exit: a worker is done for good. */
void dispatch_worker_exit(struct dispatch *d);

#endif /* SENDONCE_CONSUMER_DISPATCH_H */
