/* pub_metrics.h - the publisher daemon's Prometheus /metrics endpoint
 * (metrics.address : metrics.publisher_port):
 *
 *   sendonce_publisher_published_total        triggers confirmed and marked
 *   sendonce_publisher_publish_failures_total publishes not confirmed (left
 *                                             SCHEDULED, retried)
 *   sendonce_publisher_pass_failures_total    passes that failed (broker or
 *                                             registry unreachable)
 *   sendonce_publisher_lateness_seconds       histogram: confirm time minus
 *                                             scheduled_at
 *   sendonce_publisher_confirm_latency_seconds histogram: publish to confirm
 *   sendonce_publisher_broker_up              1 while the session is up
 *   sendonce_publisher_unmarked               confirmed, mark pending
 *
 * Metrics are an aid, not the job: a port that cannot be bound is logged
 * as an error and the daemon publishes without them. Every function accepts
 * NULL.
 */
#ifndef SENDONCE_PUB_METRICS_H
#define SENDONCE_PUB_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct pub_metrics;

/* pub_metrics_start: register and serve, or NULL when metrics.enabled is
 * false or the endpoint cannot be set up (logged). */
struct pub_metrics *pub_metrics_start(const struct config *cfg);

/* pub_metrics_stop: stop serving and free. */
void pub_metrics_stop(struct pub_metrics *pm);

/* Accounting, called by the publisher. */
void pub_metrics_published(struct pub_metrics *pm, int64_t lateness_ms);
void pub_metrics_publish_failed(struct pub_metrics *pm);
void pub_metrics_confirm_latency(struct pub_metrics *pm, int64_t ms);
void pub_metrics_pass_failed(struct pub_metrics *pm);
void pub_metrics_state(struct pub_metrics *pm, bool broker_up,
                       long long unmarked);

#endif /* SENDONCE_PUB_METRICS_H */
