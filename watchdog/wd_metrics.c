/* wd_metrics.c - the watchdog's /metrics (see wd_metrics.h). */
#include "wd_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define N_KINDS (VERDICT_PAUSED + 1)

static const char *const action_names[] = {"republish", "takeover", "publish",
                                           "mark_dead"};
static const enum verdict_action action_kinds[] = {
    VERDICT_ACTION_REPUBLISH, VERDICT_ACTION_TAKEOVER, VERDICT_ACTION_PUBLISH,
    VERDICT_ACTION_MARK_DEAD};
#define N_ACTIONS (sizeof(action_kinds) / sizeof(action_kinds[0]))

struct wd_metrics {
  struct metrics *m;
  struct metrics_server *srv;
  atomic_llong *passes, *failures;
  atomic_llong *kinds[N_KINDS];
  atomic_llong *actions[N_ACTIONS];
  atomic_llong *no_consumer, *dlq_alert, *broker_alert;
  atomic_llong *dlq, *ready, *consumers;
};

static int register_all(struct wd_metrics *w)
{
  struct metrics *m = w->m;
  int rc;
  if ((rc = metrics_counter(m, "sendonce_watchdog_passes_total", NULL,
                            "Reconciliation passes run", &w->passes)) ||
      (rc = metrics_counter(m, "sendonce_watchdog_pass_failures_total", NULL,
                            "Passes that failed (registry unreachable)",
                            &w->failures)))
    return rc;
  for (int k = 0; k < N_KINDS; k++) {
    char label[64];
    snprintf(label, sizeof(label), "verdict=%s",
             verdict_kind_name((enum verdict_kind)k));
    if ((rc = metrics_gauge(m, "sendonce_watchdog_campaigns", label,
                            "Overdue campaigns by verdict in the last pass",
                            &w->kinds[k])))
      return rc;
  }
  for (size_t a = 0; a < N_ACTIONS; a++) {
    char label[64];
    snprintf(label, sizeof(label), "action=%s", action_names[a]);
    if ((rc = metrics_counter(m, "sendonce_watchdog_actions_total", label,
                              "Actions carried out (registry transition "
                              "won and trigger published, or marked dead)",
                              &w->actions[a])))
      return rc;
  }
  const char *help = "1 while the alert stands (last pass)";
  if ((rc = metrics_gauge(m, "sendonce_watchdog_alert", "alert=no_consumer",
                          help, &w->no_consumer)) ||
      (rc = metrics_gauge(m, "sendonce_watchdog_alert", "alert=dlq_not_empty",
                          help, &w->dlq_alert)) ||
      (rc = metrics_gauge(m, "sendonce_watchdog_alert",
                          "alert=broker_facts_missing", help,
                          &w->broker_alert)) ||
      (rc = metrics_gauge(m, "sendonce_watchdog_dlq_messages", NULL,
                          "Messages in the DLQ (last pass)", &w->dlq)) ||
      (rc = metrics_gauge(m, "sendonce_watchdog_queue_ready", NULL,
                          "Ready messages in the main queue (last pass)",
                          &w->ready)) ||
      (rc = metrics_gauge(m, "sendonce_watchdog_queue_consumers", NULL,
                          "Consumers of the main queue (last pass)",
                          &w->consumers)))
    return rc;
  return SO_OK;
}

struct wd_metrics *wd_metrics_start(const struct config *cfg)
{
  if (!cfg->metrics.enabled)
    return NULL;
  struct wd_metrics *w = calloc(1, sizeof(*w));
  if (!w || !(w->m = metrics_new()) || register_all(w) != SO_OK) {
    log_warn("watchdog: metrics: cannot set up the registry");
    goto fail;
  }
  w->srv = metrics_serve_or_log(w->m, cfg->metrics.address,
                                cfg->metrics.watchdog_port, "watchdog");
  if (!w->srv)
    goto fail;
  return w;
fail:
  wd_metrics_stop(w);
  return NULL;
}

/* Whether the row's action was carried out (not a dry run, not lost). */
static bool carried_out(const struct watchdog_row *row)
{
  return strncmp(row->outcome, "republished", 11) == 0 ||
         strcmp(row->outcome, "published") == 0 ||
         strncmp(row->outcome, "marked DEAD", 11) == 0;
}

void wd_metrics_update(struct wd_metrics *w, const struct watchdog_report *r)
{
  if (!w)
    return;
  if (!r) {
    metrics_add(w->failures, 1);
    return;
  }
  metrics_add(w->passes, 1);
  long long per_kind[N_KINDS] = {0};
  for (size_t i = 0; i < r->n; i++) {
    const struct watchdog_row *row = &r->rows[i];
    per_kind[row->v.kind]++;
    if (!carried_out(row))
      continue;
    for (size_t a = 0; a < N_ACTIONS; a++)
      if (row->v.action == action_kinds[a])
        metrics_add(w->actions[a], 1);
  }
  for (int k = 0; k < N_KINDS; k++)
    metrics_set(w->kinds[k], per_kind[k]);
  metrics_set(w->no_consumer, r->alert_no_consumer);
  metrics_set(w->dlq_alert, r->alert_dlq);
  metrics_set(w->broker_alert, r->alert_broker);
  metrics_set(w->dlq, (long long)r->dlq_count);
  metrics_set(w->ready, r->q.ready);
  metrics_set(w->consumers, r->q.consumers);
}

void wd_metrics_stop(struct wd_metrics *w)
{
  if (!w)
    return;
  metrics_server_stop(w->srv);
  metrics_free(w->m);
  free(w);
}
