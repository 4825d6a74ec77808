/* verdict.c - the watchdog's decision table (see verdict.h). Pure. */
#include "verdict.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void say(struct verdict *v, const char *fmt, ...) SO_PRINTF(2, 3);

static void say(struct verdict *v, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
  va_end(ap);
}

static void set(struct verdict *v, enum verdict_kind kind,
                enum verdict_action action, bool attention)
{
  v->kind = kind;
  v->action = action;
  v->attention = attention;
}

static long long secs(int64_t ms)
{
  return (long long)(ms / 1000);
}

/* Progress, rate and ETA of a campaign being processed. */
static void progress(const struct registry_campaign *c,
                     const struct verdict_prev *prev, struct verdict *v)
{
  int64_t now = c->registry_now_ms;
  int64_t done = c->sent + c->rejected;
  v->progress_age_ms = c->progress_at_ms > 0 ? now - c->progress_at_ms : -1;
  if (prev && prev->fence == c->fence && now > prev->at_ms &&
      done >= prev->done) {
    v->rate_per_s =
        (double)(done - prev->done) * 1000.0 / (double)(now - prev->at_ms);
  }
  if (v->rate_per_s > 0 && c->total > 0 && c->total >= done)
    v->eta_ms = (int64_t)((double)(c->total - done) * 1000.0 / v->rate_per_s);
}

/* Whether a republish may be tried now; otherwise says why not. */
static enum verdict_action may_republish(const struct registry_campaign *c,
                                         const struct verdict_config *cfg,
                                         enum verdict_action want,
                                         struct verdict *v, const char *what)
{
  int64_t now = c->registry_now_ms;
  if (c->republished >= cfg->max_republishes) {
    say(v, "%s; republish cap reached (%d of %d): a person must look", what,
        c->republished, cfg->max_republishes);
    return VERDICT_ACTION_ALERT;
  }
  if (c->republished_at_ms > 0 &&
      now - c->republished_at_ms < cfg->backoff_ms) {
    say(v, "%s; last republish %llds ago, backoff %llds", what,
        secs(now - c->republished_at_ms), secs(cfg->backoff_ms));
    return VERDICT_ACTION_NONE;
  }
  return want;
}

static void decide_leased(const struct registry_campaign *c,
                          const struct verdict_broker *q,
                          const struct verdict_config *cfg,
                          const struct verdict_prev *prev, struct verdict *v)
{
  progress(c, prev, v);
  const char *dlq_note = q->in_dlq ? "; a stale copy of its trigger is in the "
                                     "DLQ"
                                   : "";
  if (v->progress_age_ms >= 0 && v->progress_age_ms > cfg->stuck_after_ms) {
    set(v, VERDICT_STUCK, VERDICT_ACTION_ALERT, true);
    say(v,
        "leased by %s (fence %lld) but no progress for %llds (stuck_after "
        "%llds): provider hanging?%s",
        c->owner ? c->owner : "?", (long long)c->fence,
        secs(v->progress_age_ms), secs(cfg->stuck_after_ms), dlq_note);
    return;
  }
  set(v, VERDICT_IN_PROGRESS, VERDICT_ACTION_NONE, q->in_dlq);
  char eta[48] = "unknown";
  if (v->eta_ms >= 0)
    snprintf(eta, sizeof(eta), "%llds", secs(v->eta_ms));
  say(v, "%s (fence %lld), %lld/%lld done, %.1f/s, ETA %s%s",
      c->owner ? c->owner : "?", (long long)c->fence,
      (long long)(c->sent + c->rejected), (long long)c->total, v->rate_per_s,
      eta, dlq_note);
}

static void decide_expired(const struct registry_campaign *c,
                           const struct verdict_config *cfg,
                           const struct verdict_prev *prev, struct verdict *v)
{
  progress(c, prev, v);
  v->rate_per_s = 0;
  v->eta_ms = -1;
  if (v->lease_age_ms <= cfg->grace_ms) {
    set(v, VERDICT_IN_PROGRESS, VERDICT_ACTION_NONE, false);
    say(v, "lease of %s expired %llds ago; waiting for grace (%llds)",
        c->owner ? c->owner : "nobody", secs(v->lease_age_ms),
        secs(cfg->grace_ms));
    return;
  }
  char what[VERDICT_REASON_LEN];
  snprintf(what, sizeof(what),
           "lease of %s (fence %lld) expired %llds ago, %lld/%lld done",
           c->owner ? c->owner : "nobody", (long long)c->fence,
           secs(v->lease_age_ms), (long long)(c->sent + c->rejected),
           (long long)c->total);
  set(v, VERDICT_STALLED, VERDICT_ACTION_TAKEOVER, true);
  say(v, "%s: takeover trigger", what);
  v->action = may_republish(c, cfg, VERDICT_ACTION_TAKEOVER, v, what);
}

static void decide_published(const struct registry_campaign *c,
                             const struct verdict_broker *q,
                             const struct verdict_config *cfg,
                             struct verdict *v)
{
  if (!q->known) {
    set(v, VERDICT_QUEUED, VERDICT_ACTION_NONE, false);
    say(v, "broker facts unknown this pass: assuming queued");
    return;
  }
  if (q->ready > 0 || q->unacked > 0) {
    set(v, VERDICT_QUEUED, VERDICT_ACTION_NONE, false);
    say(v,
        "queued: %lld ready and %lld unacked ahead or in flight, %lld "
        "consumers",
        (long long)q->ready, (long long)q->unacked, (long long)q->consumers);
    return;
  }
  if (q->queue_idle_ms < 0 || q->queue_idle_ms <= cfg->grace_ms) {
    set(v, VERDICT_QUEUED, VERDICT_ACTION_NONE, false);
    say(v, "queues empty for %llds of %llds grace: watching",
        secs(q->queue_idle_ms < 0 ? 0 : q->queue_idle_ms), secs(cfg->grace_ms));
    return;
  }
  char what[VERDICT_REASON_LEN];
  snprintf(what, sizeof(what),
           "PUBLISHED but the queues have been empty and idle for %llds "
           "(grace %llds)",
           secs(q->queue_idle_ms), secs(cfg->grace_ms));
  set(v, VERDICT_TRIGGER_LOST, VERDICT_ACTION_REPUBLISH, true);
  say(v, "%s: republish", what);
  v->action = may_republish(c, cfg, VERDICT_ACTION_REPUBLISH, v, what);
}

void verdict_decide(const struct registry_campaign *c,
                    const struct verdict_broker *q,
                    const struct verdict_config *cfg,
                    const struct verdict_prev *prev, struct verdict *v)
{
  int64_t now = c->registry_now_ms;
  memset(v, 0, sizeof(*v));
  v->progress_age_ms = -1;
  v->eta_ms = -1;
  v->lease_age_ms = c->lease_until_ms > 0 ? now - c->lease_until_ms : 0;
  /* PROCESSING without any lease (never expected) ages from its last
   * write, so such a row still ends up stalled rather than ignored. */
  if (c->state == CAMPAIGN_PROCESSING && c->lease_until_ms <= 0)
    v->lease_age_ms = c->updated_at_ms > 0 ? now - c->updated_at_ms : 0;

  switch (c->state) {
    case CAMPAIGN_DONE:
      set(v, VERDICT_OK, VERDICT_ACTION_NONE, false);
      say(v, "done: %lld sent, %lld rejected", (long long)c->sent,
          (long long)c->rejected);
      return;
    case CAMPAIGN_DEAD:
      set(v, VERDICT_DEAD, VERDICT_ACTION_NONE, true);
      say(v, "dead: %s%s", c->last_error ? c->last_error : "no reason recorded",
          q->in_dlq ? " (trigger in the DLQ)" : "");
      return;
    case CAMPAIGN_PROCESSING:
      if (c->lease_until_ms > now) {
        decide_leased(c, q, cfg, prev, v);
        return;
      }
      break;
    case CAMPAIGN_SCHEDULED:
    case CAMPAIGN_PUBLISHED:
      break;
  }

  if (q->in_dlq) {
    set(v, VERDICT_DEAD, VERDICT_ACTION_MARK_DEAD, true);
    say(v, "trigger in the DLQ: %s",
        q->dlq_reason ? q->dlq_reason : "no reason given");
    return;
  }
  if (c->paused) {
    set(v, VERDICT_PAUSED, VERDICT_ACTION_NONE, false);
    say(v, "paused by an operator (%s); resume re-triggers it",
        campaign_state_name(c->state));
    return;
  }
  switch (c->state) {
    case CAMPAIGN_SCHEDULED:
      set(v, VERDICT_PUBLISHER_MISSING, VERDICT_ACTION_PUBLISH, true);
      say(v, "SCHEDULED and due %llds ago: no publisher published it",
          secs(now - c->scheduled_at_ms));
      return;
    case CAMPAIGN_PROCESSING:
      decide_expired(c, cfg, prev, v);
      return;
    case CAMPAIGN_PUBLISHED:
      decide_published(c, q, cfg, v);
      return;
    case CAMPAIGN_DONE:
    case CAMPAIGN_DEAD:
      break;
  }
  set(v, VERDICT_OK, VERDICT_ACTION_NONE, false);
  say(v, "unexpected state");
}

const char *verdict_kind_name(enum verdict_kind kind)
{
  switch (kind) {
    case VERDICT_OK:
      return "ok";
    case VERDICT_IN_PROGRESS:
      return "in_progress";
    case VERDICT_STUCK:
      return "stuck";
    case VERDICT_QUEUED:
      return "queued";
    case VERDICT_TRIGGER_LOST:
      return "trigger_lost";
    case VERDICT_STALLED:
      return "stalled";
    case VERDICT_DEAD:
      return "dead";
    case VERDICT_PUBLISHER_MISSING:
      return "publisher_missing";
    case VERDICT_PAUSED:
      return "paused";
  }
  return "?";
}

const char *verdict_kind_label(enum verdict_kind kind)
{
  switch (kind) {
    case VERDICT_IN_PROGRESS:
      return "in progress";
    case VERDICT_TRIGGER_LOST:
      return "trigger lost";
    case VERDICT_PUBLISHER_MISSING:
      return "publisher missing";
    default:
      return verdict_kind_name(kind);
  }
}

const char *verdict_action_name(enum verdict_action action)
{
  switch (action) {
    case VERDICT_ACTION_NONE:
      return "none";
    case VERDICT_ACTION_REPUBLISH:
      return "republish";
    case VERDICT_ACTION_TAKEOVER:
      return "takeover";
    case VERDICT_ACTION_PUBLISH:
      return "publish";
    case VERDICT_ACTION_MARK_DEAD:
      return "mark_dead";
    case VERDICT_ACTION_ALERT:
      return "alert";
  }
  return "?";
}
