/* mark_writer.c - a worker's registry writer (see mark_writer.h). */
#include "mark_writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "events.h"
#include "log.h"

#define CONTROL_EVERY_MS 1000
#define PROGRESS_EVERY_MS 1000

struct mark_writer {
  const struct registry_options *ro;
  struct dispatch *d;
  int index;
  struct registry *reg; /* the writer thread's own; lazily opened */
  pthread_t thread;
  bool started;

  pthread_mutex_t mu;
  pthread_cond_t work; /* the writer waits for work here */
  pthread_cond_t done; /* the sending thread waits for news here */
  bool quit;

  /* ---- the campaign; everything below is guarded by mu ---- */
  bool active;
  struct mark_writer_job job;
  size_t window;   /* MARK_WRITER_WINDOW_BATCHES * batch */
  bool busy;       /* the writer is in registry calls for the job */
  bool held;       /* prepare no more batches */
  bool sync;       /* write queued outcomes now */
  bool read_eof;   /* the reader has no more */
  int list_status; /* the reader failed */
  char reason[MARK_WRITER_REASON_MAX];
  enum registry_control control;
  int64_t total, sent, rejected;
  int64_t next_control_ms, retry_at_ms, oldest_ms, last_progress_ms;
  /* Outcomes to write, oldest first: out[0..n_out), of capacity out_cap;
   * while busy the writer reads the first ones without the lock (the
   * sending thread only appends). */
  struct registry_mark *out;
  size_t n_out, out_cap;
  /* Prepared batches, a FIFO ring. */
  struct mark_writer_batch prep[MARK_WRITER_PREPARED];
  size_t prep_head, n_prep;

  /* ---- the writer thread's own (and mark_writer_end's, once idle) ---- */
  struct recipients_item *staged; /* read, not yet marked INFLIGHT */
  size_t n_staged;
  bool *needs;                /* the call's pending answers */
  struct registry_mark *call; /* one registry_mark_pending call's marks */
  size_t cap_batch;           /* the batch size the buffers are for */
};

/* One pass of the writer's registry work, decided under the lock and done
 * without it; its results are applied under the lock. */
struct pass {
  struct registry *reg; /* the handle of the thread doing the pass */
  bool ctl;             /* check the operator's control */
  size_t slots;         /* prepare this many batches (free prepared slots) */
  size_t k;             /* outcomes out[0..k) to write */
  /* results */
  int ctl_rc;
  enum registry_control control;
  int read_rc; /* the reader's failure */
  char reason[MARK_WRITER_REASON_MAX];
  size_t read_n; /* items read this pass */
  bool eof;
  int rc; /* the mark write's status */
  struct mark_writer_batch batches[MARK_WRITER_PREPARED];
  size_t n_batches;
  int64_t line_rejected; /* bad lines marked REJECTED */
  bool lost;
};

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
  if (ms < 1)
    ms = 1;
  struct timespec ts = clock_deadline(CLOCK_MONOTONIC, ms * 1000000);
  (void)pthread_cond_timedwait(cv, mu, &ts);
}

static struct registry *writer_registry(struct mark_writer *mw)
{
  if (mw->reg)
    return mw->reg;
  char err[512] = "";
  int rc = registry_open(mw->ro, &mw->reg, err, sizeof(err));
  if (rc != SO_OK) {
    log_error(
        "consumer: mark writer: registry unreachable: %s status=%s "
        "worker=%d",
        err, so_strerror(rc), mw->index);
    mw->reg = NULL;
  }
  return mw->reg;
}

/* check: log a failed registry step; a stale fence flags the lease lost so
 * the sending thread (and the lease thread) stop at once. */
static int check(struct mark_writer *mw, struct pass *p, int rc,
                 const char *what)
{
  const struct mark_writer_job *j = &mw->job;
  if (rc == SO_ERR_STALE_FENCE) {
    lease_set_lost(j->le);
    p->lost = true;
    log_error(
        "consumer: STALE FENCE campaign=%s fence=%lld op=%s: %s (lease "
        "lost or campaign cancelled; stopping at once)",
        j->campaign_id, (long long)j->fence, what, registry_errmsg(p->reg));
  } else if (rc != SO_OK) {
    log_warn(
        "consumer: registry %s failed campaign=%s fence=%lld status=%s: %s",
        what, j->campaign_id, (long long)j->fence, so_strerror(rc),
        p->reg ? registry_errmsg(p->reg) : "no connection");
  }
  return rc;
}

/* read_staged: the next p->slots batches of the list into mw->staged. */
static void read_staged(struct mark_writer *mw, struct pass *p)
{
  size_t b = mw->job.batch;
  while (mw->n_staged < p->slots * b) {
    char err[400] = "";
    size_t n = 0;
    int rc = recipients_next_batch(mw->job.rd, mw->staged + mw->n_staged, b, &n,
                                   err, sizeof(err));
    if (rc != SO_OK) {
      p->read_rc = rc;
      snprintf(p->reason, sizeof(p->reason), "recipients_unreachable: %s", err);
      return;
    }
    if (n == 0) {
      p->eof = true;
      return;
    }
    mw->n_staged += n;
    p->read_n += n;
  }
}

/* take_batches: move the staged items that need a send into
 * p->batches, mark_batch_size at most in each (the rest is freed); count
 * bad lines. Called once their marks committed. */
static void take_batches(struct mark_writer *mw, struct pass *p)
{
  size_t b = mw->job.batch;
  struct mark_writer_batch *cur = NULL;
  for (size_t i = 0; i < mw->n_staged; i++) {
    struct recipients_item *it = &mw->staged[i];
    if (!mw->needs[i])
      continue;
    if (it->rejected) {
      p->line_rejected++;
      continue;
    }
    if (!cur || cur->n == b) {
      if (p->n_batches == MARK_WRITER_PREPARED)
        break; /* cannot happen: at most slots * batch are staged */
      cur = &p->batches[p->n_batches++];
      cur->items = calloc(b, sizeof(*cur->items));
      if (!cur->items) {
        /* No memory for the batch: it stays INFLIGHT, a resume sends
         * it. */
        log_error(
            "consumer: out of memory for a batch campaign=%s "
            "fence=%lld",
            mw->job.campaign_id, (long long)mw->job.fence);
        p->n_batches--;
        break;
      }
    }
    cur->items[cur->n++] = *it;
    memset(it, 0, sizeof(*it));
  }
  recipients_items_cleanup(mw->staged, mw->n_staged);
  mw->n_staged = 0;
}

/* premarked: the staged items are exactly the recipients the claim
 * marked (job.pre), in order and none rejected: their marks and pending
 * answers are committed already. Anything else (it cannot happen with an
 * inline list, read whole in the first pass) is marked as usual. */
static bool premarked(const struct mark_writer *mw)
{
  const struct mark_writer_job *j = &mw->job;
  if (!j->n_pre || mw->n_staged != j->n_pre)
    return false;
  for (size_t i = 0; i < mw->n_staged; i++) {
    const struct recipients_item *it = &mw->staged[i];
    if (it->rejected || strcmp(it->r.id, j->pre[i].id) != 0)
      return false;
  }
  return true;
}

/* run_pass: the registry work of one pass, without the lock. */
static void run_pass(struct mark_writer *mw, struct pass *p)
{
  const struct mark_writer_job *j = &mw->job;
  struct registry *reg = p->reg;
  p->rc = SO_OK;
  if (p->ctl) {
    if (lease_lost(j->le)) {
      p->lost = true;
      return;
    }
    p->ctl_rc = reg ? check(mw, p,
                            registry_control(reg, j->campaign_id, j->fence,
                                             &p->control),
                            "control")
                    : SO_ERR_UNAVAILABLE;
    if (p->lost)
      return;
  }
  if (!p->slots && !p->k)
    return;
  if (!reg) {
    p->rc = SO_ERR_UNAVAILABLE;
    return;
  }
  size_t nc = 0;
  for (size_t i = 0; i < p->k; i++)
    mw->call[nc++] = mw->out[i];
  size_t first = nc; /* the staged items' marks start here */
  bool pre = false;
  if (p->slots) {
    if (!mw->n_staged)
      read_staged(mw, p);
    pre = premarked(mw);
    for (size_t i = 0; !pre && i < mw->n_staged; i++) {
      const struct recipients_item *it = &mw->staged[i];
      mw->call[nc++] = (struct registry_mark){
          .recipient_id = it->r.id,
          .state = it->rejected ? DELIVERY_REJECTED : DELIVERY_INFLIGHT,
          .error = it->rejected ? it->reason : NULL,
      };
    }
  }
  if (!nc && !pre)
    return;
  if (lease_lost(j->le)) {
    p->lost = true;
    return;
  }
  /* Outcomes and the next batch's marks: one fenced transaction, which
   * also says which staged recipients were still pending (only those are
   * now INFLIGHT, or REJECTED by this call, and only those are sent). */
  if (nc)
    p->rc = check(mw, p,
                  registry_mark_pending(reg, j->campaign_id, j->fence, mw->call,
                                        nc, mw->needs),
                  "mark");
  if (p->rc != SO_OK)
    return;
  if (pre) {
    memcpy(mw->needs, j->pre_pending, mw->n_staged * sizeof(*mw->needs));
    mw->job.n_pre = 0; /* once */
    take_batches(mw, p);
  } else if (nc > first) {
    memmove(mw->needs, mw->needs + first, (nc - first) * sizeof(*mw->needs));
    take_batches(mw, p);
  }
}

/* apply: the pass's results, under the lock. */
static void apply(struct mark_writer *mw, struct pass *p, int64_t now)
{
  if (p->ctl) {
    mw->next_control_ms = now + CONTROL_EVERY_MS;
    if (p->ctl_rc == SO_OK)
      mw->control = p->control;
  }
  if (p->read_rc) {
    mw->list_status = p->read_rc;
    snprintf(mw->reason, sizeof(mw->reason), "%s", p->reason);
  }
  mw->total += (int64_t)p->read_n;
  if (p->eof)
    mw->read_eof = true;
  if (p->lost)
    return;
  if (p->rc != SO_OK) {
    mw->retry_at_ms = now + MARK_WRITER_RETRY_MS;
    return;
  }
  for (size_t i = 0; i < p->k; i++) {
    if (mw->out[i].state == DELIVERY_SENT)
      mw->sent++;
    else
      mw->rejected++;
    free((char *)mw->out[i].recipient_id);
    free((char *)mw->out[i].error);
  }
  if (p->k) {
    mw->n_out -= p->k;
    memmove(mw->out, mw->out + p->k, mw->n_out * sizeof(*mw->out));
    mw->oldest_ms = now;
    if (!mw->n_out)
      mw->sync = false;
  }
  mw->rejected += p->line_rejected;
  /* Room for them: the slots were free when the pass began, and only this
   * thread fills them. */
  for (size_t i = 0; i < p->n_batches; i++) {
    size_t tail = (mw->prep_head + mw->n_prep) % MARK_WRITER_PREPARED;
    mw->prep[tail] = p->batches[i];
    mw->n_prep++;
  }
  if ((p->k || p->line_rejected) &&
      now - mw->last_progress_ms >= PROGRESS_EVERY_MS) {
    mw->last_progress_ms = now;
    struct event e;
    event_init(&e, EVENT_CAMPAIGN_PROGRESS, "consumer", mw->job.campaign_id);
    e.fence = mw->job.fence;
    e.owner = mw->job.owner;
    e.sent = mw->sent;
    e.rejected = mw->rejected;
    dispatch_event(mw->d, &e);
  }
}

static bool want_prep(const struct mark_writer *mw)
{
  return !mw->held && !mw->read_eof && !mw->list_status &&
         mw->n_prep < MARK_WRITER_PREPARED;
}

/* outcomes_due: write now, or let a few more gather (fewer, larger
 * transactions) - never longer than MARK_WRITER_LINGER_MS. */
static bool outcomes_due(const struct mark_writer *mw, int64_t now)
{
  if (!mw->n_out)
    return false;
  return mw->sync || mw->held || mw->n_out >= mw->job.batch ||
         now - mw->oldest_ms >= MARK_WRITER_LINGER_MS;
}

/* plan: under the lock, what a pass should do now; false if nothing. */
static bool plan(const struct mark_writer *mw, int64_t now, struct pass *p)
{
  *p = (struct pass){0};
  bool can = now >= mw->retry_at_ms;
  p->ctl = now >= mw->next_control_ms;
  if (can && want_prep(mw))
    p->slots = MARK_WRITER_PREPARED - mw->n_prep;
  if (p->slots || (can && outcomes_due(mw, now)))
    p->k = mw->n_out < mw->window ? mw->n_out : mw->window;
  return p->ctl || p->slots || p->k;
}

/* next_wake: when plan() may next have something to do (monotonic ms). */
static int64_t next_wake(const struct mark_writer *mw, int64_t now)
{
  int64_t wake = mw->next_control_ms;
  bool can = now >= mw->retry_at_ms;
  if (mw->n_out) {
    int64_t at = mw->oldest_ms + MARK_WRITER_LINGER_MS;
    if (at < mw->retry_at_ms)
      at = mw->retry_at_ms;
    if (at < wake)
      wake = at;
  }
  if (!can && want_prep(mw) && mw->retry_at_ms < wake)
    wake = mw->retry_at_ms;
  return wake;
}

/* do_pass: run a planned pass on `reg` and apply it. Called with the
 * lock, which is dropped meanwhile; `busy` keeps the other thread out of
 * the pass's buffers. */
static void do_pass(struct mark_writer *mw, struct pass *p,
                    struct registry *reg)
{
  p->reg = reg;
  mw->busy = true;
  pthread_mutex_unlock(&mw->mu);
  run_pass(mw, p);
  pthread_mutex_lock(&mw->mu);
  mw->busy = false;
  apply(mw, p, clock_monotonic_ms());
  pthread_cond_broadcast(&mw->done);
}

/* steal: the sending thread has nothing to drive, so rather than wake
 * the writer and wait for it, it does the due pass itself on its own
 * registry handle: a one-recipient campaign then costs no thread
 * hand-off. Called with the lock; true if it did a pass. */
static bool steal(struct mark_writer *mw, struct registry *reg)
{
  struct pass p;
  if (!reg || mw->busy || !mw->active || lease_lost(mw->job.le) ||
      !plan(mw, clock_monotonic_ms(), &p))
    return false;
  do_pass(mw, &p, reg);
  return true;
}

static void *writer_main(void *arg)
{
  struct mark_writer *mw = arg;
  pthread_mutex_lock(&mw->mu);
  while (!mw->quit) {
    if (!mw->active || mw->busy || lease_lost(mw->job.le)) {
      timed_wait(&mw->work, &mw->mu, 100);
      continue;
    }
    int64_t now = clock_monotonic_ms();
    struct pass p;
    if (!plan(mw, now, &p)) {
      timed_wait(&mw->work, &mw->mu, next_wake(mw, now) - now);
      continue;
    }
    if (!mw->reg) {
      /* Opening can take a while: not under the lock (busy keeps the
       * campaign's buffers and mark_writer_end waiting). */
      mw->busy = true;
      pthread_mutex_unlock(&mw->mu);
      struct registry *reg = writer_registry(mw);
      pthread_mutex_lock(&mw->mu);
      mw->busy = false;
      pthread_cond_broadcast(&mw->done);
      if (!reg)
        mw->retry_at_ms = clock_monotonic_ms() + MARK_WRITER_RETRY_MS;
      continue; /* plan again: the campaign may have ended meanwhile */
    }
    do_pass(mw, &p, mw->reg);
  }
  pthread_mutex_unlock(&mw->mu);
  return NULL;
}

int mark_writer_start(const struct registry_options *ro, struct dispatch *d,
                      int index, struct mark_writer **out)
{
  *out = NULL;
  struct mark_writer *mw = calloc(1, sizeof(*mw));
  if (!mw)
    return SO_ERR_NOMEM;
  mw->ro = ro;
  mw->d = d;
  mw->index = index;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&mw->mu, NULL);
  pthread_cond_init(&mw->work, &ca);
  pthread_cond_init(&mw->done, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&mw->thread, NULL, writer_main, mw) != 0) {
    mark_writer_stop(mw);
    return SO_ERR_INTERNAL;
  }
  mw->started = true;
  *out = mw;
  return SO_OK;
}

void mark_writer_stop(struct mark_writer *mw)
{
  if (!mw)
    return;
  if (mw->started) {
    pthread_mutex_lock(&mw->mu);
    mw->quit = true;
    pthread_cond_broadcast(&mw->work);
    pthread_mutex_unlock(&mw->mu);
    pthread_join(mw->thread, NULL);
  }
  registry_close(mw->reg);
  free(mw->staged);
  free(mw->needs);
  free(mw->call);
  free(mw->out);
  pthread_cond_destroy(&mw->work);
  pthread_cond_destroy(&mw->done);
  pthread_mutex_destroy(&mw->mu);
  free(mw);
}

/* ensure_buffers: sized for `batch`; kept between campaigns. */
static int ensure_buffers(struct mark_writer *mw, size_t batch)
{
  if (mw->cap_batch == batch)
    return SO_OK;
  size_t window = MARK_WRITER_WINDOW_BATCHES * batch;
  free(mw->staged);
  free(mw->needs);
  free(mw->call);
  free(mw->out);
  size_t ahead = MARK_WRITER_PREPARED * batch;
  mw->staged = calloc(ahead, sizeof(*mw->staged));
  mw->needs = calloc(window + ahead, sizeof(*mw->needs));
  /* out holds the window plus slack; a call writes at most a window of
   * outcomes and the INFLIGHT marks of every prepared slot. */
  mw->out_cap = window + batch;
  mw->out = calloc(mw->out_cap, sizeof(*mw->out));
  mw->call = calloc(window + ahead, sizeof(*mw->call));
  if (!mw->staged || !mw->needs || !mw->out || !mw->call) {
    mw->cap_batch = 0;
    return SO_ERR_NOMEM;
  }
  mw->cap_batch = batch;
  return SO_OK;
}

int mark_writer_begin(struct mark_writer *mw, const struct mark_writer_job *job)
{
  pthread_mutex_lock(&mw->mu);
  /* The writer is idle (no job): its buffers are ours to resize. */
  int rc = ensure_buffers(mw, job->batch);
  if (rc == SO_OK) {
    int64_t now = clock_monotonic_ms();
    mw->job = *job;
    mw->window = MARK_WRITER_WINDOW_BATCHES * job->batch;
    mw->held = mw->sync = mw->read_eof = false;
    mw->list_status = SO_OK;
    mw->reason[0] = '\0';
    mw->control = REGISTRY_CONTROL_RUN;
    mw->total = mw->sent = mw->rejected = 0;
    mw->next_control_ms = now + CONTROL_EVERY_MS;
    mw->retry_at_ms = 0;
    mw->oldest_ms = now;
    mw->last_progress_ms = now;
    mw->n_out = mw->n_prep = mw->prep_head = 0;
    mw->n_staged = 0;
    /* No wake-up: the sending thread, idle until a batch is ready, does
     * the first pass itself (steal). */
    mw->active = true;
  }
  pthread_mutex_unlock(&mw->mu);
  return rc;
}

/* takeable: a prepared batch fits the window now. */
static bool takeable(const struct mark_writer *mw, size_t in_flight)
{
  return mw->n_prep &&
         in_flight + mw->n_out + mw->prep[mw->prep_head].n <= mw->window;
}

bool mark_writer_take(struct mark_writer *mw, size_t in_flight,
                      struct mark_writer_batch *out)
{
  bool got = false;
  pthread_mutex_lock(&mw->mu);
  if (takeable(mw, in_flight)) {
    struct mark_writer_batch *b = &mw->prep[mw->prep_head];
    *out = *b;
    *b = (struct mark_writer_batch){0};
    mw->prep_head = (mw->prep_head + 1) % MARK_WRITER_PREPARED;
    mw->n_prep--;
    got = true;
    if (want_prep(mw))
      pthread_cond_signal(&mw->work); /* room to prepare the next */
  }
  pthread_mutex_unlock(&mw->mu);
  return got;
}

void mark_writer_batch_free(struct mark_writer_batch *b)
{
  recipients_items_cleanup(b->items, b->n);
  free(b->items);
  *b = (struct mark_writer_batch){0};
}

static void free_marks(struct registry_mark *marks, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free((char *)marks[i].recipient_id);
    free((char *)marks[i].error);
  }
}

int mark_writer_put(struct mark_writer *mw, struct registry_mark *marks,
                    size_t n)
{
  if (!n)
    return SO_OK;
  pthread_mutex_lock(&mw->mu);
  /* Back-pressure: the window keeps this from waiting in practice. */
  while (mw->n_out + n > mw->out_cap && !lease_lost(mw->job.le)) {
    pthread_cond_signal(&mw->work);
    timed_wait(&mw->done, &mw->mu, 100);
  }
  if (lease_lost(mw->job.le)) {
    pthread_mutex_unlock(&mw->mu);
    free_marks(marks, n);
    return SO_ERR_STALE_FENCE;
  }
  if (!mw->n_out)
    mw->oldest_ms = clock_monotonic_ms();
  memcpy(mw->out + mw->n_out, marks, n * sizeof(*marks));
  mw->n_out += n;
  if (mw->n_out >= mw->job.batch || mw->held || mw->sync)
    pthread_cond_signal(&mw->work);
  pthread_mutex_unlock(&mw->mu);
  return SO_OK;
}

void mark_writer_wait(struct mark_writer *mw, size_t in_flight, int timeout_ms,
                      struct registry *reg)
{
  pthread_mutex_lock(&mw->mu);
  /* Not while a batch could be taken: the caller would find it at once.
   * A full window waits too, until the writer commits outcomes. */
  if (!takeable(mw, in_flight) && !steal(mw, reg))
    timed_wait(&mw->done, &mw->mu, timeout_ms);
  pthread_mutex_unlock(&mw->mu);
}

void mark_writer_hold(struct mark_writer *mw)
{
  pthread_mutex_lock(&mw->mu);
  mw->held = true;
  pthread_cond_signal(&mw->work);
  pthread_mutex_unlock(&mw->mu);
}

int mark_writer_sync(struct mark_writer *mw, int64_t until_ms,
                     const volatile sig_atomic_t *hurry, struct registry *reg)
{
  pthread_mutex_lock(&mw->mu);
  mw->sync = true;
  for (;;) {
    if (lease_lost(mw->job.le))
      break;
    if (!mw->n_out)
      break;
    int64_t left = until_ms - clock_monotonic_ms();
    if (left <= 0 || (hurry && *hurry >= 2))
      break;
    if (steal(mw, reg))
      continue;
    pthread_cond_signal(&mw->work);
    timed_wait(&mw->done, &mw->mu, left < 100 ? left : 100);
  }
  int rc = lease_lost(mw->job.le) ? SO_ERR_STALE_FENCE
           : mw->n_out            ? SO_ERR_UNAVAILABLE
                                  : SO_OK;
  pthread_mutex_unlock(&mw->mu);
  return rc;
}

void mark_writer_status(struct mark_writer *mw, struct mark_writer_status *out)
{
  pthread_mutex_lock(&mw->mu);
  out->eof = mw->read_eof && mw->n_prep == 0;
  out->list_status = mw->list_status;
  /* Called on every turn of the sending loop: copy the reason only when
   * there is one. */
  if (mw->list_status)
    memcpy(out->reason, mw->reason, sizeof(out->reason));
  else
    out->reason[0] = '\0';
  out->control = mw->control;
  out->total = mw->total;
  out->sent = mw->sent;
  out->rejected = mw->rejected;
  pthread_mutex_unlock(&mw->mu);
}

/* end: unbind; the queued outcomes go to *taken (if not NULL and there
 * is memory for them), else they are dropped. */
static int end(struct mark_writer *mw, struct registry_mark **taken,
               size_t *n_taken)
{
  int rc = SO_OK;
  pthread_mutex_lock(&mw->mu);
  /* No pass starts from here on. `held` alone made the queued outcomes
   * due: the writer, done with the pass being waited for, started the
   * next one before this thread could take the lock, and wrote them in a
   * commit of their own right before the caller's last step
   * (test_mark_writer_end). */
  mw->held = true;
  mw->active = false;
  while (mw->busy)
    timed_wait(&mw->done, &mw->mu, 100);
  if (taken && mw->n_out) {
    *taken = malloc(mw->n_out * sizeof(**taken));
    if (*taken) {
      memcpy(*taken, mw->out, mw->n_out * sizeof(**taken));
      *n_taken = mw->n_out;
      mw->n_out = 0;
    } else {
      rc = SO_ERR_NOMEM;
    }
  }
  free_marks(mw->out, mw->n_out);
  mw->n_out = 0;
  while (mw->n_prep) {
    mark_writer_batch_free(&mw->prep[mw->prep_head]);
    mw->prep_head = (mw->prep_head + 1) % MARK_WRITER_PREPARED;
    mw->n_prep--;
  }
  recipients_items_cleanup(mw->staged, mw->n_staged);
  mw->n_staged = 0;
  mw->sync = false;
  pthread_mutex_unlock(&mw->mu);
  return rc;
}

void mark_writer_end(struct mark_writer *mw)
{
  (void)end(mw, NULL, NULL);
}

int mark_writer_end_take(struct mark_writer *mw, struct registry_mark **marks,
                         size_t *n)
{
  *marks = NULL;
  *n = 0;
  return end(mw, marks, n);
}
