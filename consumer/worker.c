/* worker.c - parse, claim, hand the claimed campaign to campaign_run(). */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"
#include "clock.h"
#include "log.h"
#include "msg.h"

void worker_shared_init(struct worker_shared *sh, const struct config *cfg)
{
  sh->cfg = cfg;
  registry_options_from_config(&sh->ro, &cfg->registry);
  sh->n_channels = 0;
  for (size_t i = 0; i < cfg->n_providers && i < CONFIG_MAX_PROVIDERS; i++)
    sh->channels[sh->n_channels++] = cfg->providers[i].channel;
}

struct registry *worker_registry(struct worker *w)
{
  if (w->reg)
    return w->reg;
  char err[512] = "";
  int rc = registry_open(&w->sh->ro, &w->reg, err, sizeof(err));
  if (rc != SO_OK) {
    log_error("consumer: registry unreachable: %s status=%s worker=%d", err,
              so_strerror(rc), w->index);
    w->reg = NULL;
  }
  return w->reg;
}

bool worker_hurry(const struct worker *w)
{
  return *w->sh->stop >= 2;
}

/* defer: the registry cannot decide now: move the trigger to a retry queue
 * (published with a confirm, then acked). Never a send without a claim. */
static void defer(struct worker *w, const struct broker_delivery *dl,
                  const char *campaign_id, const char *why)
{
  const struct topology *t = w->sh->topo;
  int attempt = dispatch_delivery_attempt(dl) + 1;
  size_t i = t->n_retry ? (size_t)attempt - 1 : 0;
  if (t->n_retry && i >= t->n_retry)
    i = t->n_retry - 1;
  stats_add(&w->sh->stats->deferred, 1);
  if (!t->n_retry) {
    log_warn(
        "consumer: registry unavailable, no retry queue: requeue "
        "campaign=%s cause=%s",
        campaign_id, why);
    clock_sleep_ms(1000, NULL);
    dispatch_settle(w->sh->dispatch, dl, DISPATCH_NACK_REQUEUE, NULL);
    return;
  }
  log_warn(
      "consumer: registry unavailable: trigger deferred campaign=%s "
      "retry_queue=%s attempt=%d cause=%s",
      campaign_id, t->retry[i].queue, attempt, why);
  struct dispatch_publish pub = {
      .exchange = "",
      .routing_key = t->retry[i].queue,
      .body = dl->body,
      .body_len = dl->body_len,
      .message_id = campaign_id,
      .attempt = attempt,
  };
  dispatch_settle(w->sh->dispatch, dl, DISPATCH_ACK, &pub);
}

/* dead_letter_invalid: a copy to the DLX with the reason, then ack; the
 * consumer goes on with the next message. */
static void dead_letter_invalid(struct worker *w,
                                const struct broker_delivery *dl,
                                const char *reason)
{
  char id[MSG_CAMPAIGN_ID_MAX + 1];
  if (msg_peek_campaign_id(dl->body, dl->body_len, id, sizeof(id)) != SO_OK)
    snprintf(id, sizeof(id), "invalid.%" PRId64 ".%" PRIu64, clock_now_ms(),
             dl->tag);
  stats_add(&w->sh->stats->invalid, 1);
  log_warn("consumer: invalid trigger dead-lettered campaign=%s reason=\"%s\"",
           id, reason);
  struct dispatch_publish pub = {
      .exchange = w->sh->topo->dlx,
      .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
      .body = dl->body,
      .body_len = dl->body_len,
      .message_id = id,
      .attempt = dispatch_delivery_attempt(dl),
      .error = reason,
  };
  dispatch_settle(w->sh->dispatch, dl, DISPATCH_ACK, &pub);
  struct event e;
  event_init(&e, EVENT_TRIGGER_INVALID, "consumer", id);
  e.reason = reason;
  dispatch_event(w->sh->dispatch, &e);
}

static void duplicate(struct worker *w, const struct broker_delivery *dl,
                      const char *id, const struct registry_claim *cl)
{
  struct consumer_stats *st = w->sh->stats;
  const char *verdict = "done";
  stats_add(&st->duplicates, 1);
  if (cl->kind == REGISTRY_CLAIM_HELD) {
    verdict = "held";
    stats_add(&st->duplicates_held, 1);
  } else if (cl->kind == REGISTRY_CLAIM_PAUSED) {
    verdict = "paused";
    stats_add(&st->duplicates_paused, 1);
  } else {
    stats_add(&st->duplicates_done, 1);
  }
  dispatch_settle(w->sh->dispatch, dl, DISPATCH_ACK, NULL);
  log_info(
      "consumer: duplicate trigger acked campaign=%s fence=%lld "
      "verdict=%s state=%s",
      id, (long long)cl->fence, verdict, campaign_state_name(cl->state));
  struct event e;
  event_init(&e, EVENT_TRIGGER_DUPLICATE, "consumer", id);
  e.reason = verdict;
  e.fence = cl->fence;
  dispatch_event(w->sh->dispatch, &e);
}

/* expire: claimed past not_after: the campaign is not started late. */
static void expire(struct worker *w, const struct msg *m, int64_t fence)
{
  char reason[128];
  char when[CLOCK_RFC3339_LEN] = "?";
  (void)clock_format_rfc3339(m->not_after_ms, when, sizeof(when));
  snprintf(reason, sizeof(reason), "expired: not_after %s has passed", when);
  int rc = registry_fail(w->reg, m->campaign_id, fence, reason);
  if (rc != SO_OK) {
    log_warn("consumer: expire failed campaign=%s fence=%lld status=%s: %s",
             m->campaign_id, (long long)fence, so_strerror(rc),
             registry_errmsg(w->reg));
    return;
  }
  stats_add(&w->sh->stats->campaigns_dead, 1);
  log_warn("consumer: campaign dead campaign=%s fence=%lld reason=\"%s\"",
           m->campaign_id, (long long)fence, reason);
  struct event e;
  event_init(&e, EVENT_CAMPAIGN_DEAD, "consumer", m->campaign_id);
  e.reason = reason;
  e.fence = fence;
  e.owner = w->owner;
  dispatch_event(w->sh->dispatch, &e);
}

/* A small campaign's INFLIGHT marks, written with its claim: every
 * recipient of an inline list that fits one mark batch. Not for a
 * campaign with a not_after: one claimed too late goes DEAD unsent, and
 * its recipients must not read as handed to the provider. */
struct premark {
  struct registry_mark *marks;
  bool *pending; /* registry_register_claim_mark's answers */
  size_t n;      /* 0: the campaign takes the common path */
  bool marked;
};

static void premark_init(struct premark *p, const struct msg *m, size_t batch)
{
  memset(p, 0, sizeof(*p));
  if (!m->recipients || m->n_recipients > batch || m->has_not_after)
    return;
  p->marks = calloc(m->n_recipients, sizeof(*p->marks));
  p->pending = calloc(m->n_recipients, sizeof(*p->pending));
  if (!p->marks || !p->pending) {
    free(p->marks); /* the common path then marks them */
    free(p->pending);
    memset(p, 0, sizeof(*p));
    return;
  }
  for (size_t i = 0; i < m->n_recipients; i++)
    p->marks[i] = (struct registry_mark){.recipient_id = m->recipients[i].id,
                                         .state = DELIVERY_INFLIGHT};
  p->n = m->n_recipients;
}

static void premark_cleanup(struct premark *p)
{
  free(p->marks);
  free(p->pending);
}

static void process(struct worker *w, const struct broker_delivery *dl)
{
  const struct worker_shared *sh = w->sh;
  stats_add(&sh->stats->deliveries, 1);
  struct msg_rules rules = {
      .max_bytes = sh->cfg->consumer.max_message_bytes,
      .channels = sh->channels,
      .n_channels = sh->n_channels,
  };
  char perr[MSG_ERR_LEN] = "";
  struct msg *m = NULL;
  if (msg_parse(dl->body, dl->body_len, &rules, &m, perr, sizeof(perr)) !=
      SO_OK) {
    dead_letter_invalid(w, dl, perr[0] ? perr : "bad_json: unparsable");
    return;
  }
  const char *id = m->campaign_id;
  struct premark pre;
  premark_init(&pre, m, (size_t)sh->cfg->registry.mark_batch_size);
  struct registry *r = worker_registry(w);
  if (!r) {
    defer(w, dl, id, "registry_open failed");
    goto out;
  }
  struct registry_new_campaign nc = {
      .campaign_id = id,
      .scheduled_at_ms = m->scheduled_at_ms,
      .channel = m->channel,
      .payload = dl->body, /* NUL-terminated; valid JSON has no NUL */
  };
  bool created = false;
  struct registry_claim cl = {0};
  int64_t ttl_ms = (int64_t)sh->cfg->registry.lease_ttl_s * 1000;
  /* The lease is counted from before the claim: it can only end later.
   * Register (a trigger from another service) and claim: one transaction
   * where the backend can; with a small campaign's INFLIGHT marks. */
  int64_t claimed_at = clock_monotonic_ms();
  int rc =
      pre.n ? registry_register_claim_mark(r, &nc, w->owner, ttl_ms, pre.marks,
                                           pre.n, &created, &cl, pre.pending,
                                           &pre.marked)
            : registry_register_claim(r, &nc, w->owner, ttl_ms, &created, &cl);
  if (rc != SO_OK) {
    char why[300];
    snprintf(why, sizeof(why), "%s: %s", so_strerror(rc), registry_errmsg(r));
    defer(w, dl, id, why);
    goto out;
  }
  if (cl.kind != REGISTRY_CLAIM_CLAIMED) {
    duplicate(w, dl, id, &cl);
    goto out;
  }
  /* The claim is durable: from now on the registry carries the campaign,
   * not this delivery (a long send must not hit consumer_timeout). */
  dispatch_settle(sh->dispatch, dl, DISPATCH_ACK, NULL);
  stats_add(&sh->stats->claimed, 1);
  log_info(
      "consumer: claimed campaign=%s fence=%lld owner=%s new=%s "
      "redelivered=%s",
      id, (long long)cl.fence, w->owner, created ? "yes" : "no",
      dl->redelivered ? "yes" : "no");
  struct event e;
  event_init(&e, EVENT_CAMPAIGN_CLAIMED, "consumer", id);
  e.fence = cl.fence;
  e.owner = w->owner;
  dispatch_event(sh->dispatch, &e);
  if (m->has_not_after && cl.registry_now_ms >= m->not_after_ms)
    expire(w, m, cl.fence);
  else
    campaign_run(w, m, dl->body, dl->body_len, cl.fence, claimed_at,
                 pre.marked ? pre.pending : NULL);
out:
  premark_cleanup(&pre);
  msg_free(m);
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  while (!dispatch_closing(w->sh->dispatch)) {
    struct broker_delivery *dl = dispatch_take(w->sh->dispatch, 200);
    if (!dl)
      continue;
    process(w, dl);
    broker_delivery_free(dl);
  }
  sender_free(w->sender); /* a sender belongs to the thread that made it */
  w->sender = NULL;
  dispatch_worker_exit(w->sh->dispatch);
  return NULL;
}

int worker_start(struct worker *w, const struct worker_shared *sh, int index)
{
  memset(w, 0, sizeof(*w));
  w->sh = sh;
  w->index = index;
  snprintf(w->owner, sizeof(w->owner), "%s:w%d", sh->cfg->consumer.owner,
           index);
  int rc = mark_writer_start(&sh->ro, sh->dispatch, index, &w->mw);
  if (rc != SO_OK)
    return rc;
  if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
    mark_writer_stop(w->mw);
    w->mw = NULL;
    return SO_ERR_INTERNAL;
  }
  w->started = true;
  return SO_OK;
}

void worker_join(struct worker *w)
{
  if (w->started)
    pthread_join(w->thread, NULL);
  w->started = false;
  mark_writer_stop(w->mw);
  w->mw = NULL;
  registry_close(w->reg);
  w->reg = NULL;
}
