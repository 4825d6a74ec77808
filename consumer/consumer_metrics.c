/* consumer_metrics.c - the consumer's /metrics (see consumer_metrics.h). */
#include "consumer_metrics.h"

#include <stdlib.h>

#include "log.h"

struct consumer_metrics {
  struct metrics *m;
  struct metrics_server *srv;
};

static double latency_max_cb(void *arg)
{
  const struct consumer_stats *s = arg;
  return (double)stats_get(&s->latency_max_ms) / 1000.0;
}

static double lag_max_cb(void *arg)
{
  const struct consumer_stats *s = arg;
  return (double)stats_get(&s->renewal_lag_max_ms) / 1000.0;
}

int consumer_metrics_register(struct metrics *m, struct consumer_stats *s)
{
  static const char deliveries_help[] =
      "Campaign-due deliveries by what became of them.";
  static const char campaigns_help[] =
      "Campaigns this consumer finished processing, by result.";
  const struct {
    const char *name, *label, *help;
    enum metrics_type type;
    const atomic_llong *v;
  } t[] = {
      {"sendonce_consumer_deliveries_received_total", NULL,
       "Campaign-due deliveries taken by a worker.", METRICS_COUNTER,
       &s->deliveries},
      {"sendonce_consumer_deliveries_total", "outcome=claimed", deliveries_help,
       METRICS_COUNTER, &s->claimed},
      {"sendonce_consumer_deliveries_total", "outcome=duplicate",
       deliveries_help, METRICS_COUNTER, &s->duplicates},
      {"sendonce_consumer_deliveries_total", "outcome=invalid", deliveries_help,
       METRICS_COUNTER, &s->invalid},
      {"sendonce_consumer_deliveries_total", "outcome=deferred",
       deliveries_help, METRICS_COUNTER, &s->deferred},
      {"sendonce_consumer_deliveries_total", "outcome=requeued",
       deliveries_help, METRICS_COUNTER, &s->requeued},
      {"sendonce_consumer_deliveries_total", "outcome=stale", deliveries_help,
       METRICS_COUNTER, &s->stale_skipped},
      {"sendonce_consumer_deliveries_total", "outcome=parked", deliveries_help,
       METRICS_COUNTER, &s->parked},
      {"sendonce_consumer_duplicate_triggers_total", "reason=done",
       "Duplicate triggers acked and dropped, by why.", METRICS_COUNTER,
       &s->duplicates_done},
      {"sendonce_consumer_duplicate_triggers_total", "reason=held",
       "Duplicate triggers acked and dropped, by why.", METRICS_COUNTER,
       &s->duplicates_held},
      {"sendonce_consumer_duplicate_triggers_total", "reason=paused",
       "Duplicate triggers acked and dropped, by why.", METRICS_COUNTER,
       &s->duplicates_paused},
      {"sendonce_consumer_campaigns_total", "result=done", campaigns_help,
       METRICS_COUNTER, &s->campaigns_done},
      {"sendonce_consumer_campaigns_total", "result=dead", campaigns_help,
       METRICS_COUNTER, &s->campaigns_dead},
      {"sendonce_consumer_campaigns_total", "result=released", campaigns_help,
       METRICS_COUNTER, &s->campaigns_released},
      {"sendonce_consumer_campaigns_total", "result=lost", campaigns_help,
       METRICS_COUNTER, &s->campaigns_lost},
      {"sendonce_consumer_campaigns_total", "result=cancelled", campaigns_help,
       METRICS_COUNTER, &s->campaigns_cancelled},
      {"sendonce_consumer_claims_held", NULL,
       "Campaigns this consumer holds a lease on.", METRICS_GAUGE,
       &s->active_campaigns},
      {"sendonce_consumer_recipients_total", "outcome=sent",
       "Recipients marked, by outcome.", METRICS_COUNTER, &s->sent},
      {"sendonce_consumer_recipients_total", "outcome=rejected",
       "Recipients marked, by outcome.", METRICS_COUNTER, &s->rejected},
      {"sendonce_consumer_requests_in_flight", NULL,
       "Recipients handed to the senders, not yet marked.", METRICS_GAUGE,
       &s->in_flight},
      {"sendonce_consumer_lease_renewals_total", "result=ok",
       "Lease renewals, by result.", METRICS_COUNTER, &s->renewals},
      {"sendonce_consumer_lease_renewals_total", "result=failed",
       "Lease renewals, by result.", METRICS_COUNTER, &s->renewal_failures},
      {"sendonce_consumer_publish_failures_total", NULL,
       "Publishes whose confirm did not come.", METRICS_COUNTER,
       &s->publish_failures},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    int rc =
        metrics_expose(m, t[i].type, t[i].name, t[i].label, t[i].help, t[i].v);
    if (rc != SO_OK)
      return rc;
  }
  int rc = metrics_expose_histogram(
      m, "sendonce_consumer_lease_renewal_lag_seconds", NULL,
      "How late each lease renewal ran.", stats_lag_bounds_ms,
      STATS_LAG_BUCKETS, 1000.0, s->renewal_lag, NULL);
  if (rc == SO_OK)
    rc = metrics_gauge_cb(m, "sendonce_consumer_lease_renewal_lag_max_seconds",
                          NULL, "The worst lease renewal lag seen.", lag_max_cb,
                          s);
  if (rc == SO_OK)
    rc = metrics_expose_histogram(
        m, "sendonce_consumer_provider_latency_seconds", NULL,
        "Per recipient, from handing it to the sender to its outcome.",
        stats_latency_bounds_ms, STATS_LATENCY_BUCKETS, 1000.0, s->latency,
        &s->latency_sum_ms);
  if (rc == SO_OK)
    rc = metrics_gauge_cb(m, "sendonce_consumer_provider_latency_max_seconds",
                          NULL, "The slowest recipient seen.", latency_max_cb,
                          s);
  return rc;
}

struct consumer_metrics *consumer_metrics_start(const struct config *cfg,
                                                struct consumer_stats *s)
{
  if (!cfg->metrics.enabled)
    return NULL;
  struct consumer_metrics *cm = calloc(1, sizeof(*cm));
  if (!cm || !(cm->m = metrics_new()) ||
      consumer_metrics_register(cm->m, s) != SO_OK) {
    log_error("consumer: metrics: cannot set up the registry");
    goto fail;
  }
  cm->srv = metrics_serve_or_log(cm->m, cfg->metrics.address,
                                 cfg->metrics.consumer_port, "consumer");
  if (!cm->srv)
    goto fail;
  return cm;
fail:
  consumer_metrics_stop(cm);
  return NULL;
}

void consumer_metrics_stop(struct consumer_metrics *cm)
{
  if (!cm)
    return;
  metrics_server_stop(cm->srv);
  metrics_free(cm->m);
  free(cm);
}
