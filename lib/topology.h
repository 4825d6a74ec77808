/* topology.h - the broker objects sendonce uses, their names and their
 * declaration (docs/topology.md explains each argument).
 *
 * With prefix P (config topology.prefix, default "sendonce"):
 *   P              exchange, direct, durable: campaign-due triggers,
 *                  routing key "campaign.due";
 *   P.campaigns    quorum queue bound to P with "campaign.due";
 *                  x-delivery-limit, x-dead-letter-exchange P.dlx,
 *                  x-dead-letter-strategy at-least-once,
 *                  x-overflow reject-publish;
 *   P.retry.<N>s   one quorum queue per retry delay N seconds, reached via
 *                  the default exchange by its name; x-message-ttl N s and
 *                  dead-lettering (at-least-once) back to P / campaign.due;
 *   P.dlx          exchange, fanout, durable;
 *   P.dead         quorum queue bound to P.dlx: the DLQ;
 *   P.events       exchange, topic, durable: lifecycle events.
 */
#ifndef SENDONCE_TOPOLOGY_H
#define SENDONCE_TOPOLOGY_H

#include <stddef.h>

#include "config.h"
#include "status.h"

#define TOPOLOGY_NAME_MAX 200
#define TOPOLOGY_MAX_RETRY CONFIG_MAX_RETRY_DELAYS
#define TOPOLOGY_ROUTING_KEY_DUE "campaign.due"

struct broker;

/* Names and arguments. Plain data, filled by topology_init(). */
struct topology {
  char exchange[TOPOLOGY_NAME_MAX];  /* P */
  char campaigns[TOPOLOGY_NAME_MAX]; /* P.campaigns */
  char dlx[TOPOLOGY_NAME_MAX];       /* P.dlx */
  char dead[TOPOLOGY_NAME_MAX];      /* P.dead */
  char events[TOPOLOGY_NAME_MAX];    /* P.events */
  struct {
    int delay_s;                   /* seconds before redelivery */
    char queue[TOPOLOGY_NAME_MAX]; /* P.retry.<delay_s>s */
  } retry[TOPOLOGY_MAX_RETRY];     /* ascending delays */
  size_t n_retry;
  int delivery_limit; /* x-delivery-limit of P.campaigns */
};

/* topology_init: names from `prefix` (1..100 chars of [A-Za-z0-9._:-]),
 * the delivery limit (>= 1) and retry delays (each >= 1 s, distinct; they
 * are sorted). Returns SO_OK or SO_ERR_INVALID with the reason in err. */
int topology_init(struct topology *t, const char *prefix, int delivery_limit,
                  const int *retry_delays_s, size_t n_retry, char *err,
                  size_t errlen) SO_MUST_CHECK;

/* topology_from_config: topology_init() from the topology section. */
int topology_from_config(struct topology *t, const struct config_topology *c,
                         char *err, size_t errlen) SO_MUST_CHECK;

/* topology_retry_queue: the retry queue for a wait of at least `delay_s`
 * (the shortest delay >= delay_s, else the longest). Publish to it via
 * the default exchange ("") with the queue name as routing key. NULL when
 * no retry delay is configured. Owned by *t. */
const char *topology_retry_queue(const struct topology *t, int delay_s);

/* topology_declare: declare every exchange, queue and binding on the
 * session's channel 1 (idempotent: the same declaration twice is a
 * no-op). broker_connect() calls it on every (re)connect when the options
 * name a topology. Returns SO_OK; SO_ERR_CONFLICT when an object exists
 * with other arguments: err names the object and the argument, what we
 * want and what exists, and how to fix it; SO_ERR_UNAVAILABLE /
 * SO_ERR_TIMEOUT / SO_ERR_REFUSED (permissions) with err. */
int topology_declare(struct broker *b, const struct topology *t, char *err,
                     size_t errlen) SO_MUST_CHECK;

/* topology_delete: delete every queue and exchange of *t (queues lose
 * their messages). For tests and operators' teardown. Returns SO_OK or
 * the first failure (it still tries the rest). */
int topology_delete(struct broker *b, const struct topology *t) SO_MUST_CHECK;

/* topology_explain_mismatch: turn a RabbitMQ PRECONDITION_FAILED reply
 * ("inequivalent arg 'x-queue-type' for queue 'q' in vhost 'v': received
 * the value 'quorum' of type 'longstr' but current is none") into an
 * operator's message in out: the object, the argument, wanted vs existing,
 * and the fix. Returns SO_OK, or SO_ERR_INVALID when the text is not an
 * argument mismatch (out then holds the raw text). Pure function. */
int topology_explain_mismatch(const char *reply_text, char *out, size_t outlen);

#endif /* SENDONCE_TOPOLOGY_H */
