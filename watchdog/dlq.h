/* dlq.h - reading the dead-letter queue without losing or reordering it.
 *
 * Why AMQP and not the management API's "get messages": both take the
 * messages with a get and put them back with a reject-requeue; the
 * management API does it on a channel of its own, one HTTP request per
 * batch, and its "ack_requeue_true" returns each message as soon as it was
 * read, so a second batch would read the same head messages again. Over
 * AMQP we can do it in one pass on our own session: basic.get every
 * message (holding each one unacked, so the next get moves on), then
 * basic.nack(requeue) them all in the order they came. RabbitMQ puts a
 * requeued message back at its original position when it can, so the
 * queue's order is kept; and if the watchdog dies half-way, the broker
 * requeues whatever it held when the connection closes: nothing is lost.
 * (The DLQ has no x-delivery-limit, so being read never dead-letters a
 * message out of it.)
 *
 * A replay reads the same way, then acks (removes) only the copies of the
 * replayed campaign and requeues the rest.
 *
 * Caveat: while one reader holds the DLQ's messages, another reader sees
 * it empty. Two watchdogs reading at the same instant can therefore miss
 * a dead trigger for one pass; every action they take is still an atomic
 * registry transition, so the worst case is one extra trigger that the
 * consumer's claim drops.
 */
#ifndef SENDONCE_DLQ_H
#define SENDONCE_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "status.h"

struct broker;
struct dlq;

/* One message in the DLQ. Strings are owned by the struct dlq. */
struct dlq_entry {
  char campaign_id[MSG_CAMPAIGN_ID_MAX + 1]; /* "" when none could be told */
  const char *reason;  /* x-sendonce-error, else x-death reason, else
                          "unknown" */
  const char *queue;   /* x-death queue it died in, or "" */
  int64_t death_count; /* sum of x-death counts */
};

/* dlq_read: basic.get every message of `queue` (at most `limit`), holding
 * them unacked. The caller must end with dlq_finish(). Returns SO_OK with
 * *out set; a broker failure (the messages taken so far are requeued). */
int dlq_read(struct broker *b, const char *queue, size_t limit,
             struct dlq **out, char *err, size_t errlen) SO_MUST_CHECK;

/* dlq_count / dlq_entry_at: the messages read, in queue order. */
size_t dlq_count(const struct dlq *d);
const struct dlq_entry *dlq_entry_at(const struct dlq *d, size_t i);

/* dlq_truncated: true when the queue held more than `limit`. */
bool dlq_truncated(const struct dlq *d);

/* dlq_find: the first entry of campaign `id`, or NULL. */
const struct dlq_entry *dlq_find(const struct dlq *d, const char *id);

/* dlq_finish: requeue every held message in order, except that the
 * copies of campaign `remove_id` (when not NULL) are acked (removed).
 * Frees d. Returns SO_OK or the first failure (a message whose nack
 * failed is requeued by the broker when the channel closes anyway); NULL
 * d is a no-op. *removed (may be NULL) gets the number acked. */
int dlq_finish(struct broker *b, struct dlq *d, const char *remove_id,
               size_t *removed);

#endif /* SENDONCE_DLQ_H */
