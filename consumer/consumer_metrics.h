/* consumer_metrics.h - the consumer daemon's Prometheus /metrics endpoint
 * (metrics.address : metrics.consumer_port): its struct consumer_stats
 * exposed in place, nothing copied (names in docs/operations.md).
 *
 * Metrics are an aid, not the job: a port that cannot be bound is logged
 * as an error and the consumer sends without them (as the publisher and
 * the watchdog do). Every function accepts NULL.
 */
#ifndef SENDONCE_CONSUMER_METRICS_H
#define SENDONCE_CONSUMER_METRICS_H

#include "config.h"
#include "metrics.h"
#include "stats.h"
#include "status.h"

struct consumer_metrics;

/* consumer_metrics_register: every consumer sample of `s` in `m`. s must
 * outlive m's server. Returns SO_OK or the registry's status. */
int consumer_metrics_register(struct metrics *m,
                              struct consumer_stats *s) SO_MUST_CHECK;

/* consumer_metrics_start: register and serve, or NULL when
 * metrics.enabled is false or the endpoint cannot be set up (logged). */
struct consumer_metrics *consumer_metrics_start(const struct config *cfg,
                                                struct consumer_stats *s);

/* consumer_metrics_stop: stop serving (before the stats go away), free. */
void consumer_metrics_stop(struct consumer_metrics *cm);

#endif /* SENDONCE_CONSUMER_METRICS_H */
