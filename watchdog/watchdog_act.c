/* watchdog_act.c - carrying out a verdict, and the replay verb. Every
 * change is an atomic registry transition first, a confirmed publish
 * second: of several watchdogs (and publishers) exactly one acts. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "dlq.h"
#include "events.h"
#include "log.h"
#include "watchdog_internal.h"

static void outcome(struct watchdog_row *row, const char *fmt, ...)
    SO_PRINTF(2, 3);

static void outcome(struct watchdog_row *row, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(row->outcome, sizeof(row->outcome), fmt, ap);
  va_end(ap);
}

/* A confirmed publish of the registry's payload to the main exchange. */
static int publish_trigger(struct watchdog *w,
                           const struct registry_campaign *c,
                           const char *reason, int attempt, char *err,
                           size_t errlen)
{
  if (!c->payload || !*c->payload) {
    snprintf(err, errlen, "no payload in the registry");
    return SO_ERR_INVALID;
  }
  struct broker_header h[] = {{"x-sendonce-reason", reason}};
  struct broker_message m = {
      .exchange = w->topo.exchange,
      .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
      .body = c->payload,
      .body_len = strlen(c->payload),
      .message_id = c->campaign_id,
      .attempt = attempt,
      .headers = h,
      .n_headers = 1,
      .mandatory = true, /* unroutable must count as not published */
  };
  return broker_publish_confirmed(w->broker, &m, err, errlen);
}

static void emit(struct watchdog *w, enum event_kind kind,
                 const struct registry_campaign *c, const char *reason)
{
  if (w->opt.dry_run)
    return;
  struct event e;
  event_init(&e, kind, "watchdog", c->campaign_id);
  e.reason = reason;
  e.fence = c->fence;
  e.owner = c->owner;
  e.sent = c->sent;
  e.rejected = c->rejected;
  e.total = c->total;
  (void)events_publish(w->broker, &w->topo, &e);
}

static void act_republish(struct watchdog *w, struct watchdog_row *row,
                          bool takeover)
{
  const struct registry_campaign *c = &row->c;
  const char *reason = takeover ? "takeover" : "trigger_lost";
  if (w->opt.dry_run) {
    outcome(row, "dry-run: would republish (%s)", reason);
    return;
  }
  bool won = false;
  int rc = registry_record_republish(w->reg, c->campaign_id, c->state, c->fence,
                                     w->vc.grace_ms, w->vc.backoff_ms,
                                     w->vc.max_republishes, &won);
  if (rc) {
    outcome(row, "failed: registry: %s", registry_errmsg(w->reg));
    row->failed = true;
    return;
  }
  if (!won) {
    outcome(row,
            "not republished: another watchdog acted or the campaign "
            "moved on");
    return;
  }
  int attempt = c->republished + 1;
  char why[512] = "";
  rc = publish_trigger(w, c, reason, attempt, why, sizeof(why));
  if (rc) {
    /* Recorded but not published: the next try comes after the backoff
     * (and counts towards the cap), so a broker outage cannot make us
     * publish in a tight loop. */
    outcome(row, "failed: republish recorded but not published: %s", why);
    row->failed = true;
    log_error(
        "watchdog: republish not published: %s campaign=%s reason=%s "
        "attempt=%d",
        why, c->campaign_id, reason, attempt);
    return;
  }
  outcome(row, "republished (%s, attempt %d)", reason, attempt);
  log_warn("watchdog: republished campaign=%s reason=%s attempt=%d fence=%lld",
           c->campaign_id, reason, attempt, (long long)c->fence);
  emit(w, takeover ? EVENT_CAMPAIGN_STALLED : EVENT_CAMPAIGN_REPUBLISHED, c,
       reason);
}

static void act_publish(struct watchdog *w, struct watchdog_row *row)
{
  const struct registry_campaign *c = &row->c;
  if (w->opt.dry_run) {
    outcome(row, "dry-run: would publish");
    return;
  }
  bool won = false;
  int rc = registry_begin_publish(w->reg, c->campaign_id, w->owner,
                                  w->publish_lease_ms, &won);
  if (rc) {
    outcome(row, "failed: registry: %s", registry_errmsg(w->reg));
    row->failed = true;
    return;
  }
  if (!won) {
    outcome(row, "not published: a publisher or another watchdog holds it");
    return;
  }
  char why[512] = "";
  rc = publish_trigger(w, c, "publisher_missing", 0, why, sizeof(why));
  if (rc) {
    /* Still SCHEDULED: our publish lease expires and someone retries. */
    outcome(row, "failed: not published: %s", why);
    row->failed = true;
    return;
  }
  rc = registry_mark_published(w->reg, c->campaign_id, &won);
  if (rc) {
    /* Published but not marked: when the publish lease expires it may be
     * published again; the claim drops the duplicate. */
    outcome(row, "published, but the PUBLISHED mark failed: %s",
            registry_errmsg(w->reg));
    row->failed = true;
    return;
  }
  outcome(row, "published");
  log_warn("watchdog: published for a missing publisher campaign=%s",
           c->campaign_id);
  emit(w, EVENT_CAMPAIGN_REPUBLISHED, c, "publisher_missing");
}

static void act_mark_dead(struct watchdog *w, struct watchdog_row *row)
{
  const struct registry_campaign *c = &row->c;
  char reason[300];
  snprintf(reason, sizeof(reason), "dlq: %s", row->dlq_reason);
  if (w->opt.dry_run) {
    outcome(row, "dry-run: would mark DEAD (%s)", reason);
    return;
  }
  int rc = registry_mark_dead(w->reg, c->campaign_id, reason);
  if (rc == SO_ERR_CONFLICT) {
    outcome(row, "not marked: the campaign is DONE");
    return;
  }
  if (rc) {
    outcome(row, "failed: registry: %s", registry_errmsg(w->reg));
    row->failed = true;
    return;
  }
  outcome(row, "marked DEAD (%s)", reason);
  log_warn("watchdog: marked dead campaign=%s reason=\"%s\"", c->campaign_id,
           reason);
  emit(w, EVENT_CAMPAIGN_DEAD, c, reason);
}

void watchdog_act(struct watchdog *w, struct watchdog_row *row,
                  const struct verdict_broker *vb,
                  const struct watchdog_hist *h)
{
  enum verdict_action a = row->v.action;
  bool changed = !h || h->last != row->v.kind || h->last_action != a;
  outcome(row, "none");
  if ((a == VERDICT_ACTION_REPUBLISH || a == VERDICT_ACTION_TAKEOVER ||
       a == VERDICT_ACTION_PUBLISH) &&
      !vb->known) {
    /* Without the broker we can neither publish nor know the DLQ. */
    outcome(row, "skipped: broker facts unavailable");
    return;
  }
  switch (a) {
    case VERDICT_ACTION_NONE:
      return;
    case VERDICT_ACTION_REPUBLISH:
      act_republish(w, row, false);
      return;
    case VERDICT_ACTION_TAKEOVER:
      act_republish(w, row, true);
      return;
    case VERDICT_ACTION_PUBLISH:
      act_publish(w, row);
      return;
    case VERDICT_ACTION_MARK_DEAD:
      act_mark_dead(w, row);
      return;
    case VERDICT_ACTION_ALERT:
      outcome(row, "alert");
      if (changed)
        emit(w,
             row->v.kind == VERDICT_STUCK ? EVENT_CAMPAIGN_STUCK : EVENT_ALERT,
             &row->c, row->v.reason);
      return;
  }
}

static void msgf(char *msg, size_t msglen, const char *fmt, ...)
    SO_PRINTF(3, 4);

static void msgf(char *msg, size_t msglen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, msglen, fmt, ap);
  va_end(ap);
}

/* Replay order, for crash safety (nothing lost, nothing doubled):
 *  1. read the DLQ, holding its messages (a crash requeues them);
 *  2. registry_replay: DEAD -> PUBLISHED, one winner among operators, so
 *     two replays at once publish once;
 *  3. publish a fresh trigger from the registry's payload, confirmed;
 *  4. ack the DLQ copies, requeue the rest.
 * A crash after 2 leaves the campaign PUBLISHED with its DLQ copy back in
 * the DLQ: the next watchdog pass marks it DEAD again (a trigger in the
 * DLQ), and the operator replays again. A crash after 3 leaves a stale
 * DLQ copy: once a consumer has claimed the fresh trigger the live lease
 * wins over it (verdict.h); a duplicate trigger is dropped by the claim.
 * A failed publish at 3 puts the campaign back to DEAD with its reason. */
int watchdog_replay(struct watchdog *w, const char *id, char *msg,
                    size_t msglen)
{
  struct registry_campaign c = {0};
  struct dlq *d = NULL;
  char why[512] = "";
  int rc = registry_get(w->reg, id, &c);
  if (rc) {
    msgf(msg, msglen, "%s",
         rc == SO_ERR_NOTFOUND ? "no such campaign in the registry"
                               : registry_errmsg(w->reg));
    return rc;
  }
  if (c.state != CAMPAIGN_DEAD) {
    msgf(msg, msglen, "campaign %s is %s, not DEAD: nothing to replay", id,
         campaign_state_name(c.state));
    rc = SO_ERR_CONFLICT;
    goto out;
  }
  bool uncertain = false;
  if ((rc = watchdog_read_dlq(w, &d, &uncertain, why, sizeof(why)))) {
    msgf(msg, msglen, "cannot read the DLQ: %s", why);
    goto out;
  }
  if (uncertain) {
    /* Replaying without removing the copy would leave a PUBLISHED
     * campaign with its trigger in the DLQ: the next pass marks it DEAD. */
    msgf(msg, msglen,
         "the DLQ is being read by another process (a watchdog?): try "
         "again");
    rc = SO_ERR_UNAVAILABLE;
    goto out;
  }
  size_t copies = 0;
  for (size_t i = 0; i < dlq_count(d); i++)
    copies += strcmp(dlq_entry_at(d, i)->campaign_id, id) == 0;
  if (w->opt.dry_run) {
    msgf(msg, msglen,
         "dry-run: would replay %s (DEAD: %s): DEAD -> PUBLISHED, publish a "
         "fresh trigger, remove %zu DLQ cop%s",
         id, c.last_error ? c.last_error : "no reason", copies,
         copies == 1 ? "y" : "ies");
    goto out;
  }
  if ((rc = registry_replay(w->reg, id))) {
    msgf(msg, msglen, "%s",
         rc == SO_ERR_CONFLICT ? "not DEAD any more (another replay won?)"
                               : registry_errmsg(w->reg));
    goto out;
  }
  rc = publish_trigger(w, &c, "replay", 0, why, sizeof(why));
  if (rc) {
    int rc2 = registry_mark_dead(w->reg, id,
                                 c.last_error ? c.last_error : "replay failed");
    msgf(msg, msglen, "trigger not published (%s); campaign put back to DEAD%s",
         why,
         rc2 ? " FAILED: it is PUBLISHED without a trigger; the watchdog "
               "will republish it"
             : "");
    goto out;
  }
  size_t removed = 0;
  int frc = dlq_finish(w->broker, d, id, &removed);
  d = NULL;
  msgf(msg, msglen,
       "replayed %s: DEAD -> PUBLISHED, fresh trigger published, %zu DLQ "
       "cop%s removed%s",
       id, removed, removed == 1 ? "y" : "ies",
       frc ? " (some DLQ copies could not be removed: a stale copy is "
             "harmless once a worker holds the campaign)"
           : "");
  log_warn("watchdog: replayed campaign=%s dlq_copies_removed=%zu", id,
           removed);
  emit(w, EVENT_CAMPAIGN_REPUBLISHED, &c, "replay");
out:
  (void)dlq_finish(w->broker, d, NULL, NULL);
  registry_campaign_free(&c);
  return rc;
}
