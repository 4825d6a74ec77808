/* pub_metrics.c - the publisher's /metrics (see pub_metrics.h). */
#include "pub_metrics.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"

struct pub_metrics {
  struct metrics *m;
  struct metrics_server *srv;
  atomic_llong *published, *failures, *pass_failures, *broker_up, *unmarked;
  struct metrics_histogram *lateness, *confirm;
};

/* Lateness buckets, ms: the promise is "within 1 s of the due time". */
static const int64_t lateness_bounds[] = {50,   100,  250,   500,   1000,
                                          2000, 5000, 10000, 60000, 300000};

/* Publish-to-confirm buckets, ms: a broker answers in a few ms; seconds
 * mean a struggling broker (the bound is broker.confirm_timeout_ms). */
static const int64_t confirm_bounds[] = {5,   10,  25,   50,   100,
                                         250, 500, 1000, 2500, 5000};

static int register_all(struct pub_metrics *pm)
{
  struct metrics *m = pm->m;
  int rc;
  if ((rc = metrics_counter(m, "sendonce_publisher_published_total", NULL,
                            "Triggers published with a confirm and marked "
                            "PUBLISHED",
                            &pm->published)) ||
      (rc =
           metrics_counter(m, "sendonce_publisher_publish_failures_total", NULL,
                           "Publishes not confirmed (nack, return, timeout, "
                           "lost connection): left SCHEDULED and retried",
                           &pm->failures)) ||
      (rc = metrics_counter(m, "sendonce_publisher_pass_failures_total", NULL,
                            "Passes over the due campaigns that failed",
                            &pm->pass_failures)) ||
      (rc =
           metrics_gauge(m, "sendonce_publisher_broker_up", NULL,
                         "1 while the broker session is up", &pm->broker_up)) ||
      (rc = metrics_gauge(m, "sendonce_publisher_unmarked", NULL,
                          "Confirmed triggers whose PUBLISHED mark is "
                          "pending (registry unreachable)",
                          &pm->unmarked)))
    return rc;
  if ((rc = metrics_histogram(
           m, "sendonce_publisher_lateness_seconds", NULL,
           "Confirm time minus the campaign's scheduled_at", lateness_bounds,
           sizeof(lateness_bounds) / sizeof(lateness_bounds[0]), 1000.0,
           &pm->lateness)))
    return rc;
  return metrics_histogram(
      m, "sendonce_publisher_confirm_latency_seconds", NULL,
      "Time from publish to the broker's confirm", confirm_bounds,
      sizeof(confirm_bounds) / sizeof(confirm_bounds[0]), 1000.0, &pm->confirm);
}

struct pub_metrics *pub_metrics_start(const struct config *cfg)
{
  if (!cfg->metrics.enabled)
    return NULL;
  struct pub_metrics *pm = calloc(1, sizeof(*pm));
  if (!pm || !(pm->m = metrics_new()) || register_all(pm) != SO_OK) {
    log_warn("publisher: metrics: cannot set up the registry (no memory)");
    goto fail;
  }
  pm->srv = metrics_serve_or_log(pm->m, cfg->metrics.address,
                                 cfg->metrics.publisher_port, "publisher");
  if (!pm->srv)
    goto fail;
  return pm;
fail:
  pub_metrics_stop(pm);
  return NULL;
}

void pub_metrics_stop(struct pub_metrics *pm)
{
  if (!pm)
    return;
  metrics_server_stop(pm->srv);
  metrics_free(pm->m);
  free(pm);
}

void pub_metrics_published(struct pub_metrics *pm, int64_t lateness_ms)
{
  if (!pm)
    return;
  metrics_add(pm->published, 1);
  metrics_observe(pm->lateness, lateness_ms > 0 ? lateness_ms : 0);
}

void pub_metrics_confirm_latency(struct pub_metrics *pm, int64_t ms)
{
  if (pm)
    metrics_observe(pm->confirm, ms > 0 ? ms : 0);
}

void pub_metrics_publish_failed(struct pub_metrics *pm)
{
  if (pm)
    metrics_add(pm->failures, 1);
}

void pub_metrics_pass_failed(struct pub_metrics *pm)
{
  if (pm)
    metrics_add(pm->pass_failures, 1);
}

void pub_metrics_state(struct pub_metrics *pm, bool broker_up,
                       long long unmarked)
{
  if (!pm)
    return;
  metrics_set(pm->broker_up, broker_up ? 1 : 0);
  metrics_set(pm->unmarked, unmarked);
}
