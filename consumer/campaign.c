/* campaign.c - send one claimed campaign (see campaign.h). */
#include "campaign.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "recipients.h"
#include "registry.h"
#include "sender.h"
#include "timing.h"

/* How a run ends (see campaign.h). */
enum run_end {
  END_DONE,
  END_STOP,      /* shutdown: release + resume trigger now */
  END_PAUSE,     /* operator pause: release, no trigger */
  END_CANCEL,    /* operator cancel: nothing more to write */
  END_LOST,      /* stale fence */
  END_GAVE_UP,   /* provider down: release with attempt counted */
  END_LIST_FAIL, /* recipients stream failed */
  END_FATAL,     /* cannot send at all (template/content): DEAD */
};

/* Registry calls that get "unavailable" are retried for this long before
 * the run gives up on them (the lease then lapses and the watchdog
 * recreates the trigger). */
#define REGISTRY_RETRY_MS 300

struct run {
  struct worker *w;
  struct registry *reg;
  const struct msg *m;
  const char *id;
  const char *body;
  size_t body_len;
  int64_t fence;
  struct lease_entry *le;
  struct sender *s;
  struct timing *timing; /* submit times of recipients in flight */
  struct recipients_reader *rd;
  size_t batch; /* mark_batch_size */
  /* the batch read but not yet handed to the sender */
  struct recipients_item *items;
  size_t n_items;
  bool *needs;
  struct registry_mark *tmp_marks;
  const char **ids;
  /* outcome marks waiting to be written */
  struct registry_mark *marks;
  size_t n_marks;
  int64_t last_flush_ms;
  int64_t last_progress_ms;
  int64_t next_control_ms;
  int64_t retry_at_ms; /* a registry write failed: not before this */
  bool eof;
  int64_t total;          /* unique recipients seen (the list's size) */
  int64_t sent, rejected; /* this run */
  char reason[512];       /* why it ended, for GAVE_UP / LIST_FAIL */
  int list_status;        /* recipients_next_batch's failure */
  long timeout_ms;        /* the provider's: bounds a request on the wire */
  bool settled;           /* a final write (complete, release, fail)
                             succeeded: a lease refusal after it is
                             expected, not a loss */
};

static bool lost(struct run *r)
{
  return lease_lost(r->le);
}

/* regcheck: classify a registry status; a stale fence marks the lease
 * lost so every other path stops too. Returns rc. */
static int regcheck(struct run *r, int rc, const char *what)
{
  if (rc == SO_ERR_STALE_FENCE) {
    lease_set_lost(r->le);
    log_error(
        "consumer: STALE FENCE campaign=%s fence=%lld op=%s: %s (lease "
        "lost or campaign cancelled; stopping at once)",
        r->id, (long long)r->fence, what, registry_errmsg(r->reg));
  } else if (rc != SO_OK) {
    log_warn(
        "consumer: registry %s failed campaign=%s fence=%lld status=%s: "
        "%s",
        what, r->id, (long long)r->fence, so_strerror(rc),
        registry_errmsg(r->reg));
  }
  return rc;
}

static void free_marks(struct run *r)
{
  for (size_t i = 0; i < r->n_marks; i++) {
    free((char *)r->marks[i].recipient_id);
    free((char *)r->marks[i].error);
  }
  r->n_marks = 0;
}

/* flush: write the outcome marks in one transaction. */
static int flush(struct run *r)
{
  if (!r->n_marks)
    return SO_OK;
  if (lost(r))
    return SO_ERR_STALE_FENCE;
  int rc = regcheck(
      r, registry_mark(r->reg, r->id, r->fence, r->marks, r->n_marks), "mark");
  if (rc != SO_OK) {
    r->retry_at_ms = clock_monotonic_ms() + REGISTRY_RETRY_MS;
    return rc;
  }
  for (size_t i = 0; i < r->n_marks; i++) {
    if (r->marks[i].state == DELIVERY_SENT)
      r->sent++;
    else
      r->rejected++;
  }
  free_marks(r);
  int64_t now = clock_monotonic_ms();
  r->last_flush_ms = now;
  if (now - r->last_progress_ms >= 1000) {
    r->last_progress_ms = now;
    struct event e;
    event_init(&e, EVENT_CAMPAIGN_PROGRESS, "consumer", r->id);
    e.fence = r->fence;
    e.owner = r->w->owner;
    e.sent = r->sent;
    e.rejected = r->rejected;
    dispatch_event(r->w->sh->dispatch, &e);
  }
  return SO_OK;
}

/* add_mark: take ownership of id (and a copy of error). */
static void add_mark(struct run *r, char *id, enum delivery_state st,
                     const char *error)
{
  r->marks[r->n_marks++] = (struct registry_mark){
      .recipient_id = id,
      .state = st,
      .error = error ? strdup(error) : NULL,
  };
}

/* feed: read the next batch (if none is waiting), ask the ledger which are
 * pending, mark those INFLIGHT (and bad lines REJECTED) in one step, then
 * hand them to the sender. Returns SO_OK or a registry status (the batch
 * stays for a retry). Sets r->eof at the end and END_LIST_FAIL causes. */
static int feed(struct run *r)
{
  if (!r->n_items) {
    char err[512] = "";
    size_t n = 0;
    int rc =
        recipients_next_batch(r->rd, r->items, r->batch, &n, err, sizeof(err));
    if (rc != SO_OK) {
      r->list_status = rc;
      snprintf(r->reason, sizeof(r->reason), "recipients_unreachable: %s", err);
      return rc;
    }
    if (n == 0) {
      r->eof = true;
      return SO_OK;
    }
    r->n_items = n;
    r->total += (int64_t)n;
  }
  const char **ids = r->ids;
  for (size_t i = 0; i < r->n_items; i++)
    ids[i] = r->items[i].r.id;
  if (lost(r))
    return SO_ERR_STALE_FENCE;
  int rc = regcheck(
      r, registry_pending(r->reg, r->id, r->fence, ids, r->n_items, r->needs),
      "pending");
  if (rc != SO_OK)
    return rc;
  size_t nm = 0;
  for (size_t i = 0; i < r->n_items; i++) {
    if (!r->needs[i])
      continue;
    const struct recipients_item *it = &r->items[i];
    r->tmp_marks[nm++] = (struct registry_mark){
        .recipient_id = it->r.id,
        .state = it->rejected ? DELIVERY_REJECTED : DELIVERY_INFLIGHT,
        .error = it->rejected ? it->reason : NULL,
    };
  }
  if (nm) {
    if (lost(r))
      return SO_ERR_STALE_FENCE;
    rc = regcheck(r, registry_mark(r->reg, r->id, r->fence, r->tmp_marks, nm),
                  "mark");
    if (rc != SO_OK)
      return rc;
  }
  size_t submitted = 0;
  for (size_t i = 0; i < r->n_items; i++) {
    const struct recipients_item *it = &r->items[i];
    if (!r->needs[i])
      continue;
    if (it->rejected) {
      r->rejected++;
      continue;
    }
    struct sender_recipient sr = {it->r.id, it->r.address, it->r.vars_json};
    if (sender_submit(r->s, &sr) != SO_OK) {
      /* Out of memory: it stays INFLIGHT and a resume sends it. */
      log_error(
          "consumer: submit failed campaign=%s fence=%lld "
          "recipient=%s",
          r->id, (long long)r->fence, it->r.id);
      continue;
    }
    timing_put(r->timing, it->r.id, clock_monotonic_ms());
    submitted++;
  }
  stats_add(&r->w->sh->stats->in_flight, (long long)submitted);
  recipients_items_cleanup(r->items, r->n_items);
  r->n_items = 0;
  return SO_OK;
}

/* collect: poll the sender once and turn outcomes into marks. Returns
 * true when a recipient GAVE_UP (the provider is down). */
static bool collect(struct run *r, int timeout_ms)
{
  struct sender_result res[64];
  size_t n = 0;
  size_t room = r->batch * 2 - r->n_marks;
  if (room > 64)
    room = 64;
  if (room == 0) {
    clock_sleep_ms(50, NULL); /* marks wait for a registry retry */
    return false;
  }
  if (sender_poll(r->s, timeout_ms, res, room, &n) != SO_OK)
    log_error("consumer: sender poll failed campaign=%s fence=%lld", r->id,
              (long long)r->fence);
  bool gave_up = false;
  struct consumer_stats *st = r->w->sh->stats;
  stats_add(&st->in_flight, -(long long)n);
  int64_t now = clock_monotonic_ms();
  for (size_t i = 0; i < n; i++) {
    struct sender_result *x = &res[i];
    int64_t took;
    if (x->recipient_id && timing_take(r->timing, x->recipient_id, now, &took))
      stats_latency(st, took);
    if (x->outcome == SENDER_GAVE_UP) {
      /* Left INFLIGHT: a resume resends it with the same key. The first
       * give-up is the reason; those a drain stops from retrying are not. */
      if (!r->reason[0])
        snprintf(r->reason, sizeof(r->reason), "provider_down: %s", x->reason);
      gave_up = true;
    } else {
      enum delivery_state ds =
          x->outcome == SENDER_SENT ? DELIVERY_SENT : DELIVERY_REJECTED;
      stats_add(x->outcome == SENDER_SENT ? &st->sent : &st->rejected, 1);
      add_mark(r, x->recipient_id, ds,
               ds == DELIVERY_REJECTED ? x->reason : NULL);
      x->recipient_id = NULL;
    }
    sender_result_cleanup(x);
  }
  return gave_up;
}

/* control: the operator's wishes, checked about once a second. */
static enum run_end control(struct run *r, bool *stop)
{
  *stop = false;
  int64_t now = clock_monotonic_ms();
  if (now < r->next_control_ms)
    return END_DONE;
  r->next_control_ms = now + 1000;
  enum registry_control c = REGISTRY_CONTROL_RUN;
  int rc =
      regcheck(r, registry_control(r->reg, r->id, r->fence, &c), "control");
  if (rc == SO_ERR_STALE_FENCE) {
    *stop = true;
    return END_LOST;
  }
  if (rc != SO_OK || c == REGISTRY_CONTROL_RUN)
    return END_DONE;
  *stop = true;
  return c == REGISTRY_CONTROL_PAUSE ? END_PAUSE : END_CANCEL;
}

/* send_loop: feed, poll and flush until the campaign ends for us. */
static enum run_end send_loop(struct run *r)
{
  for (;;) {
    if (lost(r))
      return END_LOST;
    if (dispatch_closing(r->w->sh->dispatch))
      return END_STOP;
    bool stop;
    enum run_end c = control(r, &stop);
    if (stop)
      return c;
    int64_t now = clock_monotonic_ms();
    bool can_write = now >= r->retry_at_ms;
    /* Keep about one batch queued behind the one in transfer: enough to
     * keep the connections busy, small enough to bound the in-flight
     * window a crash can resend. */
    if (!r->eof && can_write && sender_in_flight(r->s) < r->batch &&
        r->n_marks < r->batch) {
      int rc = feed(r);
      if (r->list_status)
        return END_LIST_FAIL;
      if (rc == SO_ERR_STALE_FENCE)
        return END_LOST;
      if (rc != SO_OK)
        r->retry_at_ms = now + REGISTRY_RETRY_MS;
    }
    bool wait = r->eof || !can_write || sender_in_flight(r->s) >= r->batch;
    if (wait && sender_in_flight(r->s) == 0 && !r->eof)
      clock_sleep_ms(50, NULL); /* nothing to poll: a registry retry */
    if (collect(r, wait ? 100 : 0))
      return END_GAVE_UP;
    now = clock_monotonic_ms();
    bool idle = r->eof && sender_in_flight(r->s) == 0;
    if (r->n_marks && now >= r->retry_at_ms &&
        (r->n_marks >= r->batch || idle || now - r->last_flush_ms >= 500)) {
      if (flush(r) == SO_ERR_STALE_FENCE)
        return END_LOST;
    }
    if (idle && r->n_marks == 0)
      return END_DONE;
    if (idle)
      clock_sleep_ms(50, NULL); /* waiting for a registry retry */
  }
}

/* drain: every early end (give-up, list failure, pause, shutdown) comes
 * here before it releases. Nothing new starts and nothing is retried:
 * queued recipients and requests waiting for a retry were not accepted
 * and stay INFLIGHT (a resume sends them with the same key). Requests on
 * the wire may be accepted, so they are awaited - each ends within the
 * provider's timeout_ms - and their outcomes written; releasing without
 * them would have the resume send them a second time. The wait ends early
 * only if the lease is lost (nothing can be written) or a second signal
 * asks to hurry; what is still on the wire then is cancelled and left
 * INFLIGHT. */
static void drain(struct run *r)
{
  size_t dropped = sender_drain(r->s);
  stats_add(&r->w->sh->stats->in_flight, -(long long)dropped);
  int64_t budget_ms = (int64_t)r->timeout_ms + 1000;
  int64_t until = clock_monotonic_ms() + budget_ms;
  while (sender_in_flight(r->s) > 0 && clock_monotonic_ms() < until &&
         !lost(r) && !worker_hurry(r->w)) {
    (void)collect(r, 100);
    if (r->n_marks >= r->batch)
      (void)flush(r);
  }
  dropped = sender_cancel_all(r->s);
  stats_add(&r->w->sh->stats->in_flight, -(long long)dropped);
  /* Outcomes that finished before the cancel: record them all, or a
   * resume would resend them. */
  while (sender_in_flight(r->s) > 0 && !lost(r)) {
    (void)collect(r, 0);
    if (r->n_marks >= r->batch && flush(r) != SO_OK)
      break;
  }
  int64_t give_up = clock_monotonic_ms() + budget_ms;
  while (r->n_marks && !lost(r) && flush(r) != SO_ERR_STALE_FENCE &&
         r->n_marks && clock_monotonic_ms() < give_up && !worker_hurry(r->w))
    clock_sleep_ms(REGISTRY_RETRY_MS, NULL);
}

/* abandon: stop at once without writing (lost lease, cancelled). */
static void abandon(struct run *r)
{
  size_t dropped = sender_cancel_all(r->s);
  stats_add(&r->w->sh->stats->in_flight, -(long long)dropped);
  struct sender_result res[64];
  size_t n;
  do {
    n = 0;
    if (sender_poll(r->s, 0, res, 64, &n) != SO_OK)
      break;
    stats_add(&r->w->sh->stats->in_flight, -(long long)n);
    for (size_t i = 0; i < n; i++)
      sender_result_cleanup(&res[i]);
  } while (n);
  free_marks(r);
}

/* again: after a registry step returned rc, whether to try it once more:
 * only for "unavailable"-like failures, while the lease could still be
 * ours (after that the watchdog recreates the trigger) and no second
 * signal asked us to hurry. */
static bool again(struct run *r, int rc, int64_t until_ms)
{
  if (rc == SO_OK || rc == SO_ERR_STALE_FENCE || lost(r) ||
      worker_hurry(r->w) || clock_monotonic_ms() >= until_ms)
    return false;
  clock_sleep_ms(REGISTRY_RETRY_MS, NULL);
  return true;
}

static int64_t lease_deadline(const struct run *r)
{
  return clock_monotonic_ms() +
         (int64_t)r->w->sh->cfg->registry.lease_ttl_s * 1000;
}

static void emit(struct run *r, enum event_kind k, const char *reason)
{
  struct event e;
  event_init(&e, k, "consumer", r->id);
  e.fence = r->fence;
  e.owner = r->w->owner;
  e.reason = reason;
  e.sent = r->sent;
  e.rejected = r->rejected;
  if (k == EVENT_CAMPAIGN_DONE)
    e.total = r->total;
  dispatch_event(r->w->sh->dispatch, &e);
}

/* publish_trigger: the resume trigger (main exchange or a retry queue) or
 * the DLQ copy; the owner retries it until the broker confirms it. */
static void publish_trigger(struct run *r, const char *exchange,
                            const char *key, int attempt, const char *error)
{
  struct dispatch_publish pub = {
      .exchange = exchange,
      .routing_key = key,
      .body = r->body,
      .body_len = r->body_len,
      .message_id = r->id,
      .attempt = attempt,
      .error = error,
  };
  dispatch_publish(r->w->sh->dispatch, &pub);
}

static void finish_done(struct run *r)
{
  struct consumer_stats *st = r->w->sh->stats;
  int64_t until = lease_deadline(r);
  int rc;
  do
    rc = regcheck(r, registry_set_total(r->reg, r->id, r->fence, r->total),
                  "set_total");
  while (again(r, rc, until));
  if (rc == SO_OK) {
    do
      rc = regcheck(r, registry_complete(r->reg, r->id, r->fence), "complete");
    while (again(r, rc, until));
  }
  if (rc != SO_OK)
    return; /* a stale fence is counted by finish() */
  r->settled = true;
  stats_add(&st->campaigns_done, 1);
  struct registry_campaign c = {0};
  if (registry_get(r->reg, r->id, &c) == SO_OK) {
    r->sent = c.sent;
    r->rejected = c.rejected;
  }
  registry_campaign_free(&c);
  log_info(
      "consumer: done campaign=%s fence=%lld total=%lld sent=%lld "
      "rejected=%lld",
      r->id, (long long)r->fence, (long long)r->total, (long long)r->sent,
      (long long)r->rejected);
  emit(r, EVENT_CAMPAIGN_DONE, NULL);
}

/* give_up_or_retry: provider down or a list that could not be read: count
 * an attempt; after max_attempts the campaign is DEAD and its trigger goes
 * to the DLQ with the reason, else a resume trigger to a retry queue. */
static void give_up_or_retry(struct run *r, bool permanent)
{
  const struct worker_shared *sh = r->w->sh;
  struct registry_campaign c = {0};
  int attempts = 0;
  if (registry_get(r->reg, r->id, &c) == SO_OK)
    attempts = c.attempts;
  registry_campaign_free(&c);
  if (permanent || attempts + 1 >= sh->cfg->consumer.max_attempts) {
    int64_t until = lease_deadline(r);
    int rc;
    do
      rc = regcheck(r, registry_fail(r->reg, r->id, r->fence, r->reason),
                    "fail");
    while (again(r, rc, until));
    if (rc != SO_OK)
      return;
    r->settled = true;
    stats_add(&sh->stats->campaigns_dead, 1);
    log_error(
        "consumer: campaign dead campaign=%s fence=%lld attempts=%d "
        "reason=\"%s\"",
        r->id, (long long)r->fence, attempts + 1, r->reason);
    publish_trigger(r, sh->topo->dlx, TOPOLOGY_ROUTING_KEY_DUE, attempts + 1,
                    r->reason);
    emit(r, EVENT_CAMPAIGN_DEAD, r->reason);
    return;
  }
  int now_attempts = attempts + 1;
  int64_t until = lease_deadline(r);
  int rc;
  do
    rc = regcheck(r,
                  registry_release(r->reg, r->id, r->fence, true, r->reason,
                                   &now_attempts),
                  "release");
  while (again(r, rc, until));
  if (rc != SO_OK)
    return;
  r->settled = true;
  stats_add(&sh->stats->campaigns_released, 1);
  const struct topology *t = sh->topo;
  const char *q = NULL;
  if (t->n_retry) {
    size_t i = (size_t)(now_attempts > 0 ? now_attempts - 1 : 0);
    q = t->retry[i < t->n_retry ? i : t->n_retry - 1].queue;
  }
  log_warn(
      "consumer: released campaign=%s fence=%lld attempts=%d "
      "retry_queue=%s reason=\"%s\"",
      r->id, (long long)r->fence, now_attempts, q ? q : "-", r->reason);
  if (q)
    publish_trigger(r, "", q, now_attempts, NULL);
  else
    publish_trigger(r, t->exchange, TOPOLOGY_ROUTING_KEY_DUE, now_attempts,
                    NULL);
  emit(r, EVENT_CAMPAIGN_RELEASED, r->reason);
}

/* release_now: shutdown or pause: checkpoint, clear the lease (fenced), and
 * for a shutdown publish the resume trigger so another consumer resumes
 * from the ledger at once rather than after the lease would expire. */
static void release_now(struct run *r, bool pause)
{
  const struct worker_shared *sh = r->w->sh;
  const char *why = pause ? "paused" : "shutdown";
  int64_t until = lease_deadline(r);
  int rc;
  do
    rc =
        regcheck(r, registry_release(r->reg, r->id, r->fence, false, why, NULL),
                 "release");
  while (again(r, rc, until));
  if (rc != SO_OK)
    return;
  r->settled = true;
  stats_add(&sh->stats->campaigns_released, 1);
  log_info(
      "consumer: released campaign=%s fence=%lld reason=%s sent=%lld "
      "rejected=%lld",
      r->id, (long long)r->fence, why, (long long)r->sent,
      (long long)r->rejected);
  if (!pause)
    publish_trigger(r, sh->topo->exchange, TOPOLOGY_ROUTING_KEY_DUE, 0, NULL);
  emit(r, EVENT_CAMPAIGN_RELEASED, why);
}

/* cancelled: a stale fence also means "cancelled" when an operator made the
 * campaign DEAD while we held it (a write can race the control check);
 * registry_control tells the two apart with a read, not a write. */
static bool cancelled(struct run *r)
{
  enum registry_control c = REGISTRY_CONTROL_RUN;
  return registry_control(r->reg, r->id, r->fence, &c) == SO_OK &&
         c == REGISTRY_CONTROL_CANCEL;
}

static void finish(struct run *r, enum run_end end)
{
  struct consumer_stats *st = r->w->sh->stats;
  if ((end == END_LOST || lost(r)) && cancelled(r))
    end = END_CANCEL;
  switch (end) {
    case END_DONE:
      finish_done(r);
      break;
    case END_STOP:
    case END_PAUSE:
      drain(r);
      if (!lost(r))
        release_now(r, end == END_PAUSE);
      break;
    case END_GAVE_UP:
    case END_LIST_FAIL:
    case END_FATAL:
      drain(r);
      if (!lost(r))
        give_up_or_retry(
            r, end == END_FATAL || (end == END_LIST_FAIL &&
                                    (r->list_status == SO_ERR_NOTFOUND ||
                                     r->list_status == SO_ERR_INVALID)));
      break;
    case END_CANCEL:
      abandon(r);
      stats_add(&st->campaigns_cancelled, 1);
      log_warn(
          "consumer: cancelled by an operator campaign=%s fence=%lld "
          "sent=%lld",
          r->id, (long long)r->fence, (long long)r->sent);
      return;
    case END_LOST:
      break;
  }
  if (lost(r) && !r->settled) {
    abandon(r);
    stats_add(&st->campaigns_lost, 1);
    log_error(
        "consumer: campaign LOST campaign=%s fence=%lld owner=%s: "
        "stopped without writing (another worker holds it now)",
        r->id, (long long)r->fence, r->w->owner);
  }
}

void campaign_run(struct worker *w, const struct msg *m, const char *body,
                  size_t body_len, int64_t fence, int64_t claimed_at_ms)
{
  const struct config *cfg = w->sh->cfg;
  struct run r = {
      .w = w,
      .reg = w->reg,
      .m = m,
      .id = m->campaign_id,
      .body = body,
      .body_len = body_len,
      .fence = fence,
      .batch = (size_t)cfg->registry.mark_batch_size,
  };
  char err[512] = "";
  stats_add(&w->sh->stats->active_campaigns, 1);
  r.le = lease_add(w->sh->lease, r.id, fence, claimed_at_ms);
  r.items = calloc(r.batch, sizeof(*r.items));
  r.needs = calloc(r.batch, sizeof(*r.needs));
  r.tmp_marks = calloc(r.batch, sizeof(*r.tmp_marks));
  r.marks = calloc(r.batch * 2, sizeof(*r.marks));
  r.ids = calloc(r.batch, sizeof(*r.ids));
  r.timing = timing_new(r.batch * 2);
  if (!r.le || !r.items || !r.needs || !r.tmp_marks || !r.marks || !r.ids) {
    /* No memory to run it: leave the lease to lapse; the watchdog
     * recreates the trigger. */
    log_error("consumer: out of memory campaign=%s fence=%lld", r.id,
              (long long)fence);
    goto out;
  }
  enum run_end end;
  /* The provider's settings as of now: a SIGHUP changes them for the
   * campaigns started after it, never under a running sender. */
  struct config_provider prov;
  const struct config_provider *p =
      w->sh->live
          ? (live_cfg_provider(w->sh->live, m->channel, &prov) ? &prov : NULL)
          : config_provider_find(cfg, m->channel);
  r.s = p ? sender_new(p, r.id, m->content_json, err, sizeof(err)) : NULL;
  r.timeout_ms = p ? p->timeout_ms : 0;
  if (!r.s) {
    snprintf(r.reason, sizeof(r.reason), "bad_content: %s",
             p ? err : "no provider for the channel");
    end = END_FATAL;
  } else if (recipients_open(m, NULL, &r.rd, err, sizeof(err)) != SO_OK) {
    snprintf(r.reason, sizeof(r.reason), "bad_recipients_url: %s", err);
    end = END_FATAL;
  } else {
    r.last_progress_ms = clock_monotonic_ms();
    end = send_loop(&r);
  }
  if (end == END_FATAL && !r.s) {
    /* finish() drains a sender: give it an idle one. */
    log_error("consumer: cannot send campaign=%s fence=%lld reason=\"%s\"",
              r.id, (long long)fence, r.reason);
    if (!lost(&r))
      give_up_or_retry(&r, true);
  } else {
    finish(&r, end);
  }
out:
  stats_add(&w->sh->stats->in_flight,
            -(long long)(r.s ? sender_in_flight(r.s) : 0));
  recipients_items_cleanup(r.items, r.n_items);
  free_marks(&r);
  recipients_close(r.rd);
  sender_free(r.s);
  lease_remove(w->sh->lease, r.le);
  free(r.items);
  free(r.needs);
  free(r.tmp_marks);
  free(r.marks);
  free(r.ids);
  timing_free(r.timing);
  stats_add(&w->sh->stats->active_campaigns, -1);
}
