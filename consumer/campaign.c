/* campaign.c - send one claimed campaign (see campaign.h).
 *
 * Two threads share a campaign: this one (the worker's) only drives the
 * sender, and the worker's mark writer (mark_writer.h) does the registry
 * work of the batches: reading the list, the pending check, the INFLIGHT
 * marks of the next batches and the outcome marks. This thread waits on
 * the registry only at the end (every outcome durable before DONE, the
 * release after a drain) and when the writer's window is full.
 */
#include "campaign.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mark_writer.h"
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
 * recreates the trigger). The mark writer uses the same pause. */
#define REGISTRY_RETRY_MS MARK_WRITER_RETRY_MS

struct run {
  struct worker *w;
  struct registry *reg; /* this thread's: the end-of-campaign writes */
  struct mark_writer *mw;
  bool bound; /* the campaign is bound to the mark writer */
  const struct msg *m;
  const char *id;
  const char *body;
  size_t body_len;
  int64_t fence;
  struct lease_entry *le;
  struct sender *s;
  struct timing *timing; /* submit times of recipients in flight */
  struct recipients_reader *rd;
  size_t batch;           /* mark_batch_size */
  int64_t total;          /* unique recipients seen (the list's size) */
  int64_t sent, rejected; /* this run, committed */
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

/* unbind: take the writer's counters and let it go (it drops outcomes not
 * written yet: they stay INFLIGHT). Before any end-of-campaign write, so
 * the writer never writes after a release or completion. */
static void unbind(struct run *r)
{
  if (!r->bound)
    return;
  /* The counters after the end: a pass that was running meanwhile has
   * committed its outcomes. */
  mark_writer_end(r->mw);
  struct mark_writer_status st;
  mark_writer_status(r->mw, &st);
  r->total = st.total;
  r->sent = st.sent;
  r->rejected = st.rejected;
  r->bound = false;
}

/* unbind_take: unbind, taking the outcomes the writer has not written yet
 * for the caller's last step (owned: free_marks). */
static int unbind_take(struct run *r, struct registry_mark **marks, size_t *n)
{
  int rc = mark_writer_end_take(r->mw, marks, n);
  struct mark_writer_status st;
  mark_writer_status(r->mw, &st);
  r->total = st.total;
  r->sent = st.sent;
  r->rejected = st.rejected;
  r->bound = false;
  return rc;
}

static void free_marks(struct registry_mark *marks, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free((char *)marks[i].recipient_id);
    free((char *)marks[i].error);
  }
  free(marks);
}

/* submit: hand a prepared batch (INFLIGHT committed) to the sender. */
static void submit(struct run *r, struct mark_writer_batch *b)
{
  size_t submitted = 0;
  int64_t now = clock_monotonic_ms();
  for (size_t i = 0; i < b->n; i++) {
    const struct recipients_item *it = &b->items[i];
    struct sender_recipient sr = {it->r.id, it->r.address, it->r.vars_json};
    if (sender_submit(r->s, &sr) != SO_OK) {
      /* Out of memory: it stays INFLIGHT and a resume sends it. */
      log_error(
          "consumer: submit failed campaign=%s fence=%lld "
          "recipient=%s",
          r->id, (long long)r->fence, it->r.id);
      continue;
    }
    timing_put(r->timing, it->r.id, now);
    submitted++;
  }
  stats_add(&r->w->sh->stats->in_flight, (long long)submitted);
  mark_writer_batch_free(b);
}

/* collect: poll the sender once and queue the outcomes for the writer.
 * Returns true when a recipient GAVE_UP (the provider is down). */
static bool collect(struct run *r, int timeout_ms)
{
  struct sender_result res[64];
  struct registry_mark marks[64];
  size_t n = 0, nm = 0;
  if (sender_poll(r->s, timeout_ms, res, 64, &n) != SO_OK)
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
      bool ok = x->outcome == SENDER_SENT;
      stats_add(ok ? &st->sent : &st->rejected, 1);
      marks[nm++] = (struct registry_mark){
          .recipient_id = x->recipient_id,
          .state = ok ? DELIVERY_SENT : DELIVERY_REJECTED,
          .error = ok ? NULL : strdup(x->reason),
      };
      x->recipient_id = NULL;
    }
    sender_result_cleanup(x);
  }
  /* A refusal means the lease is lost: the caller sees it next. */
  if (mark_writer_put(r->mw, marks, nm) != SO_OK)
    log_debug("consumer: outcomes dropped, lease lost campaign=%s", r->id);
  return gave_up;
}

/* send_loop: take prepared batches, poll, queue outcomes, until the
 * campaign ends for us. */
static enum run_end send_loop(struct run *r)
{
  for (;;) {
    if (lost(r))
      return END_LOST;
    if (dispatch_closing(r->w->sh->dispatch))
      return END_STOP;
    struct mark_writer_status st;
    mark_writer_status(r->mw, &st);
    if (st.control == REGISTRY_CONTROL_PAUSE)
      return END_PAUSE;
    if (st.control == REGISTRY_CONTROL_CANCEL)
      return END_CANCEL;
    if (st.list_status) {
      r->list_status = st.list_status;
      snprintf(r->reason, sizeof(r->reason), "%s", st.reason);
      return END_LIST_FAIL;
    }
    /* Keep about one batch queued behind the one in transfer: enough to
     * keep the connections busy; the writer's window bounds the rest. */
    struct mark_writer_batch b;
    while (sender_in_flight(r->s) < r->batch &&
           mark_writer_take(r->mw, sender_in_flight(r->s), &b))
      submit(r, &b);
    size_t in_flight = sender_in_flight(r->s);
    if (in_flight == 0) {
      if (!st.eof) {
        /* The next batch is on its way (or prepared here, see
         * mark_writer_wait). */
        mark_writer_wait(r->mw, 0, 100, r->reg);
        continue;
      }
      /* Every outcome is in: the ones not written yet go into the
       * finish's own transaction (finish_done). */
      return END_DONE;
    }
    /* Poll briefly while a batch may be coming, else until an outcome. */
    bool hungry = in_flight < r->batch && !st.eof;
    if (collect(r, hungry ? 5 : 100))
      return END_GAVE_UP;
  }
}

/* drain: every early end (give-up, list failure, pause, shutdown) comes
 * here before it releases. Nothing new starts and nothing is retried:
 * queued recipients and requests waiting for a retry were not accepted
 * and stay INFLIGHT (a resume sends them with the same key); so do the
 * prepared batches never handed to the sender. Requests on the wire may
 * be accepted, so they are awaited - each ends within the provider's
 * timeout_ms - and their outcomes written; releasing without them would
 * have the resume send them a second time. The wait ends early only if
 * the lease is lost (nothing can be written) or a second signal asks to
 * hurry; what is still on the wire then is cancelled and left INFLIGHT. */
static void drain(struct run *r)
{
  if (!r->bound)
    return;
  mark_writer_hold(r->mw);
  size_t dropped = sender_drain(r->s);
  stats_add(&r->w->sh->stats->in_flight, -(long long)dropped);
  int64_t budget_ms = (int64_t)r->timeout_ms + 1000;
  int64_t until = clock_monotonic_ms() + budget_ms;
  while (sender_in_flight(r->s) > 0 && clock_monotonic_ms() < until &&
         !lost(r) && !worker_hurry(r->w))
    (void)collect(r, 100);
  dropped = sender_cancel_all(r->s);
  stats_add(&r->w->sh->stats->in_flight, -(long long)dropped);
  /* Outcomes that finished before the cancel: record them all, or a
   * resume would resend them. */
  while (sender_in_flight(r->s) > 0 && !lost(r))
    (void)collect(r, 0);
  if (mark_writer_sync(r->mw, clock_monotonic_ms() + budget_ms, r->w->sh->stop,
                       r->reg) != SO_OK)
    log_warn("consumer: drain left outcomes unwritten campaign=%s fence=%lld",
             r->id, (long long)r->fence);
}

/* abandon: stop at once without writing (lost lease, cancelled). */
static void abandon(struct run *r)
{
  unbind(r);
  if (!r->s)
    return;
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
  struct registry_mark *marks = NULL;
  size_t n = 0;
  if (unbind_take(r, &marks, &n) != SO_OK) {
    /* The outcomes are gone, so DONE would be a lie: leave the lease to
     * lapse; the watchdog recreates the trigger and a resume sends what
     * is still INFLIGHT, with the same keys. */
    log_error("consumer: out of memory finishing campaign=%s fence=%lld", r->id,
              (long long)r->fence);
    return;
  }
  int64_t until = lease_deadline(r);
  int rc = SO_ERR_STALE_FENCE;
  /* The last outcomes, set_total and complete: one transaction where the
   * backend can (every outcome is durable with DONE, never after it). It
   * answers the counters as DONE left them (earlier runs of a resumed
   * campaign included), for the log line and the event. A lease the
   * writer found lost meanwhile writes nothing. */
  struct registry_counts counts = {r->sent, r->rejected};
  if (!lost(r)) {
    do
      rc = regcheck(r,
                    registry_mark_finish(r->reg, r->id, r->fence, marks, n,
                                         r->total, &counts),
                    "finish");
    while (again(r, rc, until));
  }
  free_marks(marks, n);
  if (rc != SO_OK)
    return; /* a stale fence is counted by finish() */
  r->settled = true;
  stats_add(&st->campaigns_done, 1);
  r->sent = counts.sent;
  r->rejected = counts.rejected;
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
      unbind(r);
      if (!lost(r))
        release_now(r, end == END_PAUSE);
      break;
    case END_GAVE_UP:
    case END_LIST_FAIL:
    case END_FATAL:
      drain(r);
      unbind(r);
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

static bool same_str(const char *a, const char *b)
{
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* same_provider: whether a sender made with settings a can serve a
 * campaign that starts under settings b (a SIGHUP may have changed them). */
static bool same_provider(const struct config_provider *a,
                          const struct config_provider *b)
{
  return same_str(a->channel, b->channel) && same_str(a->url, b->url) &&
         same_str(a->method, b->method) &&
         same_str(a->body_template, b->body_template) &&
         same_str(a->auth_header, b->auth_header) &&
         a->timeout_ms == b->timeout_ms && a->concurrency == b->concurrency &&
         a->rate_per_s == b->rate_per_s && a->batch_size == b->batch_size &&
         a->max_retries == b->max_retries &&
         a->retry_base_ms == b->retry_base_ms;
}

/* take_sender: the worker's idle sender rebound to this campaign when it
 * was made with the same settings, so campaign after campaign reuses its
 * keep-alive connections (a one-recipient campaign would otherwise open a
 * connection for its one request); else a new one. NULL with the reason in
 * err when the content cannot be sent. */
static struct sender *take_sender(struct worker *w,
                                  const struct config_provider *p,
                                  const struct msg *m, char *err, size_t errlen)
{
  struct sender *s = w->sender;
  w->sender = NULL;
  if (s && same_provider(&w->sender_prov, p)) {
    int rc = sender_rebind(s, m->campaign_id, m->content_json, err, errlen);
    if (rc == SO_OK)
      return s;
    if (rc == SO_ERR_INVALID) {
      w->sender = s; /* this campaign's content is bad; the sender is fine */
      return NULL;
    }
  }
  sender_free(s);
  s = sender_new(p, m->campaign_id, m->content_json, err, errlen);
  if (s)
    w->sender_prov = *p;
  return s;
}

/* keep_sender: an idle sender waits in the worker for the next campaign;
 * one with transfers left (cannot happen after finish(), but cheap to
 * check) is freed, which aborts them. */
static void keep_sender(struct worker *w, struct sender *s)
{
  if (s && sender_in_flight(s) == 0 && !w->sender)
    w->sender = s;
  else
    sender_free(s);
}

void campaign_run(struct worker *w, const struct msg *m, const char *body,
                  size_t body_len, int64_t fence, int64_t claimed_at_ms,
                  const bool *premarked)
{
  const struct config *cfg = w->sh->cfg;
  struct run r = {
      .w = w,
      .reg = w->reg,
      .mw = w->mw,
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
  r.timing = timing_new(r.batch * 2); /* the sender holds < 2 batches */
  if (!r.le || !r.timing) {
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
  r.s = p ? take_sender(w, p, m, err, sizeof(err)) : NULL;
  r.timeout_ms = p ? p->timeout_ms : 0;
  if (!r.s) {
    snprintf(r.reason, sizeof(r.reason), "bad_content: %s",
             p ? err : "no provider for the channel");
    end = END_FATAL;
  } else if (recipients_open(m, NULL, &r.rd, err, sizeof(err)) != SO_OK) {
    snprintf(r.reason, sizeof(r.reason), "bad_recipients_url: %s", err);
    end = END_FATAL;
  } else {
    struct mark_writer_job job = {
        .campaign_id = r.id,
        .owner = w->owner,
        .fence = fence,
        .le = r.le,
        .rd = r.rd,
        .batch = r.batch,
        .pre = premarked ? m->recipients : NULL,
        .pre_pending = premarked,
        .n_pre = premarked ? m->n_recipients : 0,
    };
    if (mark_writer_begin(r.mw, &job) != SO_OK) {
      log_error("consumer: out of memory campaign=%s fence=%lld", r.id,
                (long long)fence);
      goto out;
    }
    r.bound = true;
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
  unbind(&r);
  stats_add(&w->sh->stats->in_flight,
            -(long long)(r.s ? sender_in_flight(r.s) : 0));
  recipients_close(r.rd);
  keep_sender(w, r.s);
  lease_remove(w->sh->lease, r.le);
  timing_free(r.timing);
  stats_add(&w->sh->stats->active_campaigns, -1);
}
