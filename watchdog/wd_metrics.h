/* wd_metrics.h - the watchdog daemon's Prometheus /metrics endpoint
 * (metrics.address : metrics.watchdog_port), fed from each pass's report.
 *
 *   sendonce_watchdog_passes_total, sendonce_watchdog_pass_failures_total
 *   sendonce_watchdog_campaigns{verdict="in_progress"|...}   last pass
 *   sendonce_watchdog_actions_total{action="republish"|"takeover"|
 *                                   "publish"|"mark_dead"}   carried out
 *   sendonce_watchdog_alert{alert="no_consumer"|"dlq_not_empty"|
 *                           "broker_facts_missing"}          0 or 1
 *   sendonce_watchdog_dlq_messages, sendonce_watchdog_queue_ready,
 *   sendonce_watchdog_queue_consumers                        last pass
 *
 * Metrics are an aid, not the job: a port that cannot be bound (a second
 * watchdog on the host) is logged and the daemon reconciles without them.
 */
#ifndef SENDONCE_WD_METRICS_H
#define SENDONCE_WD_METRICS_H

#include <stdbool.h>

#include "config.h"
#include "watchdog.h"

struct wd_metrics;

/* wd_metrics_start: register and serve, or NULL when metrics.enabled is
 * false or the endpoint cannot be set up (logged). */
struct wd_metrics *wd_metrics_start(const struct config *cfg);

/* wd_metrics_update: account one pass (r NULL: the pass failed). */
void wd_metrics_update(struct wd_metrics *m, const struct watchdog_report *r);

/* wd_metrics_stop: stop serving and free. NULL: no-op. */
void wd_metrics_stop(struct wd_metrics *m);

#endif /* SENDONCE_WD_METRICS_H */
