/* mgmt.h - a small client for the RabbitMQ management HTTP API (libcurl +
 * json-c): the per-queue facts the watchdog needs and AMQP cannot give
 * (unacknowledged messages, consumer utilisation).
 *
 * Exact counts of ready messages and consumers come cheaper and fresher
 * from AMQP (broker_queue_counts(), a passive declare); the management
 * API's numbers are statistics the broker samples every few seconds
 * (collect_statistics_interval, 5 s by default), so a caller must not read
 * them as "now".
 *
 * The DLQ is deliberately not read through this API: see
 * watchdog/dlq.h for why the watchdog reads it over AMQP instead.
 *
 * Credentials come from the caller (config: watchdog.mgmt_user /
 * mgmt_password) and go to libcurl only; they are never logged nor part of
 * an error message. https:// URLs use TLS with peer verification (the
 * system CA bundle). Every request is bounded by timeout_ms.
 *
 * Not thread-safe: one thread owns a `struct mgmt`.
 */
#ifndef SENDONCE_MGMT_H
#define SENDONCE_MGMT_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct mgmt;

/* Options; strings are copied by mgmt_open(). */
struct mgmt_options {
  const char *url;      /* base URL, "http://127.0.0.1:15672" (no /api) */
  const char *user;     /* login user */
  const char *password; /* secret; NULL: empty */
  const char *vhost;    /* vhost, plain (not URL-encoded), e.g. "/" */
  int timeout_ms;       /* bound on one request, connect included */
};

/* One queue as the management API reports it. */
struct mgmt_queue {
  int64_t ready;      /* messages_ready (sampled) */
  int64_t unacked;    /* messages_unacknowledged (sampled) */
  int64_t consumers;  /* consumers */
  double utilisation; /* consumer_utilisation 0..1, or -1 when absent */
  char state[32];     /* "running", "down", ... or "" */
};

/* mgmt_open: validate the options (http:// or https:// URL, a user) and
 * prepare a client; no request is made yet. Returns SO_OK with *out set
 * (free with mgmt_close()), SO_ERR_INVALID with the reason in err,
 * SO_ERR_NOMEM. */
int mgmt_open(const struct mgmt_options *o, struct mgmt **out, char *err,
              size_t errlen) SO_MUST_CHECK;

/* mgmt_close: release the client (and scrub the password). NULL is a
 * no-op. */
void mgmt_close(struct mgmt *m);

/* mgmt_queue_get: GET /api/queues/<vhost>/<queue> (both URL-encoded).
 * Returns SO_OK with *out filled; SO_ERR_NOTFOUND (no such queue or
 * vhost); SO_ERR_REFUSED (401/403: err says the user needs the management
 * tag); SO_ERR_UNAVAILABLE (cannot connect, 5xx); SO_ERR_TIMEOUT;
 * SO_ERR_PROTOCOL (not the JSON we expect). err says which. */
int mgmt_queue_get(struct mgmt *m, const char *queue, struct mgmt_queue *out,
                   char *err, size_t errlen) SO_MUST_CHECK;

/* mgmt_vhost_from_uri: the vhost of an AMQP URI exactly as the broker
 * session reads it (amqp[s]://host[:port][/vhost], "%2f" decoded; no
 * vhost or an empty one means "/"). Returns SO_OK, SO_ERR_INVALID (not an
 * AMQP URI) or SO_ERR_TOO_LARGE (outlen too small). Pure function. */
int mgmt_vhost_from_uri(const char *uri, char *out,
                        size_t outlen) SO_MUST_CHECK;

#endif /* SENDONCE_MGMT_H */
