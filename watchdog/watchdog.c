/* watchdog.c - one reconciliation pass and the per-campaign verbs (see
 * watchdog.h). The decision itself is verdict.c; this file gathers its
 * inputs and carries out its action. */
#include "watchdog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "dlq.h"
#include "events.h"
#include "log.h"
#include "mgmt.h"
#include "topology.h"
#include "watchdog_internal.h"

#define ALERT_REPEAT_MS (5 * 60 * 1000) /* re-send a standing alert event */

/* derive_thresholds: the verdict thresholds from the config, at open and
 * again at each pass, so a SIGHUP reload of the config takes effect from
 * the next pass. */
static void derive_thresholds(struct watchdog *w)
{
  const struct config_watchdog *wc = &w->cfg->watchdog;
  w->vc.grace_ms = (int64_t)wc->grace_s * 1000;
  w->vc.stuck_after_ms = (int64_t)wc->stuck_after_s * 1000;
  w->vc.backoff_ms = (int64_t)wc->republish_backoff_s * 1000;
  w->vc.max_republishes = wc->max_republishes;
}

int watchdog_open(const struct config *cfg, const struct watchdog_options *o,
                  struct watchdog **out, char *err, size_t errlen)
{
  struct watchdog *w = calloc(1, sizeof(*w));
  int rc;
  *out = NULL;
  if (!w)
    return SO_ERR_NOMEM;
  w->cfg = cfg;
  w->opt = *o;
  derive_thresholds(w);
  if ((rc = topology_from_config(&w->topo, &cfg->topology, err, errlen)))
    goto fail;
  char host[256] = "localhost";
  if (gethostname(host, sizeof(host)) != 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  snprintf(w->owner, sizeof(w->owner), "watchdog@%s:%ld", host, (long)getpid());
  /* As the publisher's: the publish lease outlives our slowest bounded
   * publish, so nobody else publishes while we wait for our confirm. */
  const struct config_broker *bc = &cfg->broker;
  w->publish_lease_ms = (int64_t)bc->confirm_timeout_ms * 2 +
                        (int64_t)bc->connect_timeout_ms * (int64_t)bc->n_uris +
                        5000;
  if (w->publish_lease_ms < 30000)
    w->publish_lease_ms = 30000;

  struct registry_options ro;
  registry_options_from_config(&ro, &cfg->registry);
  if ((rc = registry_open(&ro, &w->reg, err, errlen)))
    goto fail;

  struct broker_options bo;
  broker_options_from_config(&bo, &cfg->broker, "watchdog");
  bo.topology = &w->topo;
  if ((rc = broker_open(&bo, &w->broker, err, errlen)))
    goto fail;
  char why[512];
  rc = broker_connect(w->broker, why, sizeof(why));
  if (rc == SO_ERR_CONFLICT) {
    /* A topology that differs is a set-up to refuse, not to work around. */
    so_errf(err, errlen, "%s", why);
    goto fail;
  }
  if (rc)
    log_warn("watchdog: broker not reachable yet: %s", why);

  char vhost[256];
  if (cfg->broker.n_uris == 0 ||
      mgmt_vhost_from_uri(cfg->broker.uris[0], vhost, sizeof(vhost))) {
    so_errf(err, errlen, "watchdog: cannot tell the vhost from broker.uris");
    rc = SO_ERR_INVALID;
    goto fail;
  }
  struct mgmt_options mo = {
      .url = cfg->watchdog.mgmt_url,
      .user = cfg->watchdog.mgmt_user && *cfg->watchdog.mgmt_user
                  ? cfg->watchdog.mgmt_user
                  : cfg->broker.user,
      .password = cfg->watchdog.mgmt_password,
      .vhost = vhost,
      .timeout_ms = 5000,
  };
  if ((rc = mgmt_open(&mo, &w->mgmt, err, errlen)))
    goto fail;
  *out = w;
  return SO_OK;
fail:
  watchdog_close(w);
  return rc;
}

void watchdog_close(struct watchdog *w)
{
  if (!w)
    return;
  mgmt_close(w->mgmt);
  broker_close(w->broker);
  registry_close(w->reg);
  free(w->hist);
  free(w);
}

void watchdog_idle(struct watchdog *w, int64_t ms,
                   const volatile sig_atomic_t *stop)
{
  int64_t end = clock_monotonic_ms() + ms;
  while (!*stop) {
    int64_t left = end - clock_monotonic_ms();
    if (left <= 0)
      return;
    struct broker_delivery *d = NULL;
    char why[256];
    /* Short slices so SIGTERM is noticed quickly; the pump services
     * heartbeats (and reconnects) meanwhile. */
    int rc = broker_poll(w->broker, left < 250 ? (int)left : 250, -1, &d, why,
                         sizeof(why));
    if (rc == SO_OK)
      broker_delivery_free(d); /* we consume nothing; never expected */
    else if (rc == SO_ERR_UNAVAILABLE)
      clock_sleep_ms(left < 250 ? left : 250, stop);
  }
}

void watchdog_report_free(struct watchdog_report *r)
{
  for (size_t i = 0; r->rows && i < r->n; i++)
    registry_campaign_free(&r->rows[i].c);
  free(r->rows);
  memset(r, 0, sizeof(*r));
}

/* Exact ready + consumers of the main queue and ready of the retry
 * queues over AMQP; unacked and utilisation from the management API. */
static void sample_queues(struct watchdog *w, struct watchdog_queues *q)
{
  char why[512] = "";
  uint32_t ready = 0, consumers = 0;
  memset(q, 0, sizeof(*q));
  q->utilisation = -1;
  q->idle_ms = -1;
  int rc = broker_queue_counts(w->broker, w->topo.campaigns, &ready, &consumers,
                               why, sizeof(why));
  if (rc) {
    snprintf(q->error, sizeof(q->error), "broker: %s: %s", so_strerror(rc),
             why);
    return;
  }
  q->ready = ready;
  q->consumers = consumers;
  for (size_t i = 0; i < w->topo.n_retry; i++) {
    uint32_t r = 0;
    rc = broker_queue_counts(w->broker, w->topo.retry[i].queue, &r, NULL, why,
                             sizeof(why));
    if (rc) {
      snprintf(q->error, sizeof(q->error), "broker: %s: %s: %s",
               w->topo.retry[i].queue, so_strerror(rc), why);
      return;
    }
    q->retry_ready += r;
  }
  struct mgmt_queue mq;
  rc = mgmt_queue_get(w->mgmt, w->topo.campaigns, &mq, why, sizeof(why));
  if (rc) {
    snprintf(q->error, sizeof(q->error), "%s", why);
    return;
  }
  q->unacked = mq.unacked;
  q->utilisation = mq.utilisation;
  q->known = true;
}

static bool queues_empty(const struct watchdog_queues *q)
{
  return q->known && q->ready == 0 && q->retry_ready == 0 && q->unacked == 0;
}

/* The queue facts of this pass, with the idle time tracked (daemon) or
 * re-sampled (one shot; only when it could matter). */
static void read_queues(struct watchdog *w, bool any_published,
                        struct watchdog_queues *q)
{
  int64_t now = clock_monotonic_ms();
  sample_queues(w, q);
  if (w->opt.one_shot) {
    if (queues_empty(q) && any_published) {
      /* A trigger between delivery and claim shows in no count: look
       * again a moment later before calling the queues idle. */
      clock_sleep_ms(WATCHDOG_RESAMPLE_MS, NULL);
      sample_queues(w, q);
      q->idle_ms = queues_empty(q) ? INT64_MAX : 0;
    } else {
      q->idle_ms = queues_empty(q) ? INT64_MAX : 0;
    }
    if (!q->known)
      q->idle_ms = -1;
    return;
  }
  if (!q->known) {
    w->empty_since_ms = 0; /* unknown breaks the streak: start again */
    q->idle_ms = -1;
  } else if (queues_empty(q)) {
    if (w->empty_since_ms == 0)
      w->empty_since_ms = now;
    q->idle_ms = now - w->empty_since_ms;
  } else {
    w->empty_since_ms = 0;
    q->idle_ms = 0;
  }
}

/* Broker facts for one campaign. */
static void campaign_facts(const struct watchdog_queues *q,
                           const struct registry_campaign *c,
                           const struct dlq *d, bool dlq_known,
                           struct verdict_broker *vb, struct watchdog_row *row)
{
  memset(vb, 0, sizeof(*vb));
  vb->known = q->known && dlq_known;
  vb->ready = q->ready + q->retry_ready;
  vb->unacked = q->unacked;
  vb->consumers = q->consumers;
  vb->queue_idle_ms = q->idle_ms;
  if (q->idle_ms > 0) {
    /* Idle only counts from when the campaign became PUBLISHED: a trigger
     * published a moment ago into long-empty queues is not lost. */
    int64_t state_age = c->registry_now_ms - c->updated_at_ms;
    if (state_age < 0)
      state_age = 0;
    if (state_age < vb->queue_idle_ms)
      vb->queue_idle_ms = state_age;
  }
  const struct dlq_entry *e = dlq_find(d, c->campaign_id);
  if (e) {
    vb->in_dlq = true;
    row->in_dlq = true;
    snprintf(row->dlq_reason, sizeof(row->dlq_reason), "%s", e->reason);
    vb->dlq_reason = row->dlq_reason;
  }
}

static struct watchdog_hist *hist_find(struct watchdog *w, const char *id)
{
  for (size_t i = 0; i < w->n_hist; i++)
    if (strcmp(w->hist[i].id, id) == 0)
      return &w->hist[i];
  return NULL;
}

/* Remember this pass's observations (for rates and alert transitions);
 * campaigns no longer overdue are forgotten. */
static void hist_update(struct watchdog *w, const struct watchdog_report *r)
{
  struct watchdog_hist *h = calloc(r->n ? r->n : 1, sizeof(*h));
  if (!h)
    return;
  for (size_t i = 0; i < r->n; i++) {
    const struct registry_campaign *c = &r->rows[i].c;
    snprintf(h[i].id, sizeof(h[i].id), "%s", c->campaign_id);
    h[i].prev.fence = c->fence;
    h[i].prev.done = c->sent + c->rejected;
    h[i].prev.at_ms = c->registry_now_ms;
    h[i].last = r->rows[i].v.kind;
    h[i].last_action = r->rows[i].v.action;
  }
  free(w->hist);
  w->hist = h;
  w->n_hist = r->n;
}

static void log_decision(const struct watchdog *w,
                         const struct watchdog_row *row,
                         const struct verdict_broker *vb)
{
  const struct registry_campaign *c = &row->c;
  enum log_level lvl = row->v.attention ? LOG_LEVEL_WARN : LOG_LEVEL_INFO;
  LOG_AT(lvl,
         "watchdog: %s: %s campaign=%s state=%s fence=%lld owner=%s "
         "lease_age_ms=%lld progress_age_ms=%lld sent=%lld rejected=%lld "
         "total=%lld republished=%d paused=%d ready=%lld unacked=%lld "
         "consumers=%lld idle_ms=%lld broker_known=%d in_dlq=%d action=%s "
         "outcome=\"%s\" dry_run=%d",
         verdict_kind_label(row->v.kind), row->v.reason, c->campaign_id,
         campaign_state_name(c->state), (long long)c->fence,
         c->owner ? c->owner : "-", (long long)row->v.lease_age_ms,
         (long long)row->v.progress_age_ms, (long long)c->sent,
         (long long)c->rejected, (long long)c->total, c->republished,
         c->paused ? 1 : 0, (long long)vb->ready, (long long)vb->unacked,
         (long long)vb->consumers, (long long)vb->queue_idle_ms,
         vb->known ? 1 : 0, vb->in_dlq ? 1 : 0,
         verdict_action_name(row->v.action), row->outcome,
         w->opt.dry_run ? 1 : 0);
}

static void global_alert(struct watchdog *w, bool on, bool *was_on,
                         int64_t *last_sent, const char *reason,
                         const char *text)
{
  int64_t now = clock_monotonic_ms();
  if (!on) {
    if (*was_on)
      log_info("watchdog: alert cleared: %s", reason);
    *was_on = false;
    return;
  }
  log_warn("watchdog: alert: %s reason=%s", text, reason);
  if (w->opt.dry_run)
    return;
  if (!*was_on || now - *last_sent >= ALERT_REPEAT_MS) {
    struct event e;
    event_init(&e, EVENT_ALERT, "watchdog", NULL);
    e.reason = reason;
    (void)events_publish(w->broker, &w->topo, &e);
    *last_sent = now;
  }
  *was_on = true;
}

static int any_published(const struct registry_campaign *list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (list[i].state == CAMPAIGN_PUBLISHED)
      return 1;
  return 0;
}

/* Read the DLQ and put it back at once (the pass only needs to know). */
int watchdog_read_dlq(struct watchdog *w, struct dlq **out, bool *uncertain,
                      char *err, size_t errlen)
{
  *out = NULL;
  *uncertain = false;
  int64_t held = 0;
  for (int attempt = 0;; attempt++) {
    struct dlq *d = NULL;
    int rc =
        dlq_read(w->broker, w->topo.dead, WATCHDOG_DLQ_LIMIT, &d, err, errlen);
    if (rc)
      return rc;
    if (dlq_count(d) > 0) {
      *out = d;
      return SO_OK;
    }
    /* Empty to us. While another reader (a second watchdog, a replay)
     * holds the DLQ's messages unacked, or a requeue is still landing, a
     * get finds nothing: ask the management API whether the DLQ holds
     * messages, and look again a moment later if so. */
    struct mgmt_queue mq;
    char why[256];
    int64_t in_dlq = 0;
    if (mgmt_queue_get(w->mgmt, w->topo.dead, &mq, why, sizeof(why)) == SO_OK)
      in_dlq = mq.ready + mq.unacked;
    if (in_dlq == 0 || attempt == WATCHDOG_DLQ_RETRIES) {
      held = in_dlq;
      *out = d;
      break;
    }
    (void)dlq_finish(w->broker, d, NULL, NULL);
    /* Spread the retries so two watchdogs do not stay in lockstep. */
    clock_sleep_ms(150 + (clock_monotonic_ms() % 100), NULL);
  }
  if (held > 0) {
    *uncertain = true;
    log_warn(
        "watchdog: the DLQ reads empty but holds %lld message(s) "
        "(another reader has them, or the count is stale): DLQ facts "
        "unknown this pass queue=%s",
        (long long)held, w->topo.dead);
  }
  return SO_OK;
}

static struct dlq *read_dlq(struct watchdog *w, struct watchdog_report *r)
{
  struct dlq *d = NULL;
  char why[512] = "";
  bool uncertain = false;
  int rc = watchdog_read_dlq(w, &d, &uncertain, why, sizeof(why));
  if (rc) {
    log_warn("watchdog: cannot read the DLQ: %s queue=%s", why, w->topo.dead);
    return NULL;
  }
  /* Uncertain counts as unknown: no decision may rest on "not in the
   * DLQ" (a trigger lost could be a poison held by another reader). */
  r->dlq_known = !uncertain;
  r->dlq_count = dlq_count(d);
  r->dlq_truncated = dlq_truncated(d);
  return d;
}

static bool listed(const struct registry_campaign *list, size_t n,
                   const char *id)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i].campaign_id, id) == 0)
      return true;
  return false;
}

/* The DEAD campaigns with a trigger in the DLQ that are not in `list`, at
 * most WATCHDOG_MAX_DEAD_ROWS; *out is owned by the caller. */
static size_t dead_in_dlq(struct watchdog *w, const struct dlq *d,
                          const struct registry_campaign *list, size_t n,
                          struct registry_campaign **out)
{
  size_t cnt = 0;
  *out = NULL;
  for (size_t i = 0; i < dlq_count(d) && cnt < WATCHDOG_MAX_DEAD_ROWS; i++) {
    const char *id = dlq_entry_at(d, i)->campaign_id;
    if (!id[0] || listed(list, n, id) || listed(*out, cnt, id))
      continue;
    struct registry_campaign c = {0};
    if (registry_get(w->reg, id, &c) != SO_OK)
      continue; /* unknown to the registry: counted as unmatched */
    if (c.state != CAMPAIGN_DEAD) {
      registry_campaign_free(&c);
      continue; /* not due long enough to be judged yet */
    }
    struct registry_campaign *grown = realloc(*out, (cnt + 1) * sizeof(**out));
    if (!grown) {
      registry_campaign_free(&c);
      break;
    }
    *out = grown;
    (*out)[cnt++] = c;
  }
  return cnt;
}

int watchdog_pass(struct watchdog *w, struct watchdog_report *r, char *err,
                  size_t errlen)
{
  struct registry_campaign *list = NULL;
  size_t n = 0;
  memset(r, 0, sizeof(*r));
  derive_thresholds(w);
  int rc = registry_list_overdue(w->reg, w->vc.grace_ms, WATCHDOG_MAX_CAMPAIGNS,
                                 &list, &n);
  if (rc) {
    so_errf(err, errlen, "registry: %s", registry_errmsg(w->reg));
    return rc;
  }
  if (n > 0 || registry_now(w->reg, &r->registry_now_ms) != SO_OK)
    r->registry_now_ms = n > 0 ? list[0].registry_now_ms : clock_now_ms();
  read_queues(w, any_published(list, n), &r->q);
  struct dlq *d = read_dlq(w, r);
  /* DEAD campaigns are not overdue any more, but one whose trigger sits in
   * the DLQ is what an operator looks for: list it too, with its reason. */
  struct registry_campaign *dead = NULL;
  size_t n_dead = dead_in_dlq(w, d, list, n, &dead);
  size_t total = n + n_dead;
  r->rows = calloc(total ? total : 1, sizeof(*r->rows));
  struct verdict_broker *vbs = calloc(total ? total : 1, sizeof(*vbs));
  if (!r->rows || !vbs) {
    (void)dlq_finish(w->broker, d, NULL, NULL);
    registry_campaigns_free(list, n);
    registry_campaigns_free(dead, n_dead);
    free(vbs);
    free(r->rows);
    r->rows = NULL;
    return SO_ERR_NOMEM;
  }
  r->n = total;
  for (size_t i = 0; i < total; i++) {
    struct watchdog_row *row = &r->rows[i];
    /* moved: the row owns the strings now */
    row->c = i < n ? list[i] : dead[i - n];
    campaign_facts(&r->q, &row->c, d, r->dlq_known, &vbs[i], row);
  }
  free(list); /* the arrays only; the strings moved to the rows */
  free(dead);
  for (size_t i = 0; i < dlq_count(d); i++) {
    const struct dlq_entry *e = dlq_entry_at(d, i);
    bool in_rows = false;
    for (size_t j = 0; j < total && !in_rows; j++)
      in_rows = strcmp(r->rows[j].c.campaign_id, e->campaign_id) == 0;
    if (!in_rows)
      r->dlq_unmatched++;
  }
  /* Put the DLQ back before acting: our actions publish and must not hold
   * the DLQ's messages meanwhile (each row has its own copy). */
  (void)dlq_finish(w->broker, d, NULL, NULL);
  n = total;

  for (size_t i = 0; i < n; i++) {
    struct watchdog_row *row = &r->rows[i];
    const struct watchdog_hist *h =
        w->opt.one_shot ? NULL : hist_find(w, row->c.campaign_id);
    verdict_decide(&row->c, &vbs[i], &w->vc, h ? &h->prev : NULL, &row->v);
    watchdog_act(w, row, &vbs[i], h);
    log_decision(w, row, &vbs[i]);
    if (row->v.attention || row->failed)
      r->attention = true;
  }
  free(vbs);

  r->alert_broker = !r->q.known || !r->dlq_known;
  if (r->alert_broker)
    log_warn("watchdog: alert: broker facts missing this pass: %s",
             r->q.error[0] ? r->q.error : "DLQ not readable");
  r->alert_no_consumer = r->q.known && r->q.consumers == 0;
  r->alert_dlq = r->dlq_known && r->dlq_count > 0;
  global_alert(w, r->alert_no_consumer, &w->alert_no_consumer_on,
               &w->alert_no_consumer_sent, "no_consumer",
               "no consumer on the main queue");
  global_alert(w, r->alert_dlq, &w->alert_dlq_on, &w->alert_dlq_sent,
               "dlq_not_empty", "the DLQ is not empty");
  if (r->alert_broker || r->alert_no_consumer || r->alert_dlq)
    r->attention = true;
  if (!w->opt.one_shot)
    hist_update(w, r);
  log_info(
      "watchdog: pass: overdue=%zu ready=%lld unacked=%lld "
      "consumers=%lld retry_ready=%lld dlq=%zu attention=%d dry_run=%d",
      n, (long long)r->q.ready, (long long)r->q.unacked,
      (long long)r->q.consumers, (long long)r->q.retry_ready, r->dlq_count,
      r->attention ? 1 : 0, w->opt.dry_run ? 1 : 0);
  return SO_OK;
}

int watchdog_status(struct watchdog *w, const char *id,
                    struct watchdog_report *r, char *err, size_t errlen)
{
  memset(r, 0, sizeof(*r));
  r->rows = calloc(1, sizeof(*r->rows));
  if (!r->rows)
    return SO_ERR_NOMEM;
  int rc = registry_get(w->reg, id, &r->rows[0].c);
  if (rc) {
    so_errf(err, errlen, "%s",
            rc == SO_ERR_NOTFOUND ? "no such campaign in the registry"
                                  : registry_errmsg(w->reg));
    free(r->rows);
    r->rows = NULL;
    return rc;
  }
  r->n = 1;
  r->registry_now_ms = r->rows[0].c.registry_now_ms;
  read_queues(w, r->rows[0].c.state == CAMPAIGN_PUBLISHED, &r->q);
  struct dlq *d = read_dlq(w, r);
  struct verdict_broker vb;
  campaign_facts(&r->q, &r->rows[0].c, d, r->dlq_known, &vb, &r->rows[0]);
  r->dlq_unmatched = r->dlq_count - (r->rows[0].in_dlq ? 1 : 0);
  (void)dlq_finish(w->broker, d, NULL, NULL);
  verdict_decide(&r->rows[0].c, &vb, &w->vc, NULL, &r->rows[0].v);
  snprintf(r->rows[0].outcome, sizeof(r->rows[0].outcome),
           "none (status never acts)");
  r->alert_broker = !r->q.known || !r->dlq_known;
  r->alert_no_consumer = r->q.known && r->q.consumers == 0;
  r->alert_dlq = r->dlq_known && r->dlq_count > 0;
  r->attention = r->rows[0].v.attention || r->alert_broker ||
                 r->alert_no_consumer || r->alert_dlq;
  return SO_OK;
}
