/* dispatch.c - the connection owner's loop (see dispatch.h). */
#include "dispatch.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "msg.h"

/* A delivery waiting for a worker. */
struct job {
  struct broker_delivery *d;
  int64_t since_ms; /* monotonic: when it arrived */
  struct job *next;
};

/* One request of a worker, executed by the owner in arrival order. */
struct action {
  struct action *next;
  bool has_delivery;
  uint64_t generation, tag;
  enum dispatch_settle how;
  bool has_pub;
  char *exchange, *routing_key, *body, *message_id, *error;
  size_t body_len;
  int attempt;
  bool has_event;
  enum event_kind ev_kind;
  char *ev_campaign; /* or NULL */
  char *ev_body;     /* the event's JSON, made on the worker's thread */
  int tries;
  int64_t due_ms; /* monotonic: retry not before */
};

struct dispatch {
  struct broker *b;
  const struct topology *t;
  struct consumer_stats *stats;
  int efd;
  /* Writes to efd begun (counted before each write) and writes read back
   * (the owner's, the sum of the counts it read): the owner reads efd only
   * when they differ, as a read of an empty eventfd is a system call that
   * returns EAGAIN. Whenever efd is readable they differ, so the owner
   * never polls a readable efd without reading it. */
  atomic_ullong efd_written;
  uint64_t efd_read;
  pthread_mutex_t mu;
  /* One token per queued job (more after begin_close or park_waiting took
   * jobs without one, and one per worker once closing): a worker sleeps
   * on it, not on a condition variable, as a worker woken from
   * pthread_cond_wait takes the mutex as contended and pays a futex wake
   * when it releases it, whether anyone waits or not. sem_post makes no
   * system call when no worker sleeps. */
  sem_t jobs_sem;
  struct job *jobs_head, *jobs_tail;
  struct action *acts_head, *acts_tail;
  int workers_alive;
  bool owner_busy; /* the owner takes the list again before it sleeps */
  atomic_bool closing;
  atomic_ullong generation;
  struct action *retry_head; /* publishes waiting to be retried (owner) */
  int park_ms;               /* a trigger waits this long for a worker */
  void (*tick)(void *arg);   /* called once per owner loop, or NULL */
  void *tick_arg;
};

static void action_free(struct action *a)
{
  if (!a)
    return;
  free(a->exchange);
  free(a->routing_key);
  free(a->body);
  free(a->message_id);
  free(a->error);
  free(a->ev_campaign);
  free(a->ev_body);
  free(a);
}

static void wake(struct dispatch *d)
{
  uint64_t one = 1;
  atomic_fetch_add(&d->efd_written, 1);
  if (write(d->efd, &one, sizeof(one)) < 0) {
    /* Nothing was added: the owner must not wait for it. (EAGAIN would
     * mean a counter near 2^64, already non-zero: the owner wakes.) */
    atomic_fetch_sub(&d->efd_written, 1);
    if (errno != EAGAIN)
      log_error("consumer: wake: write eventfd failed errno=%d", errno);
  }
}

int dispatch_new(struct broker *b, const struct topology *t,
                 struct consumer_stats *stats, int n_workers, int park_ms,
                 struct dispatch **out)
{
  *out = NULL;
  struct dispatch *d = calloc(1, sizeof(*d));
  if (!d)
    return SO_ERR_NOMEM;
  d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (d->efd < 0) {
    free(d);
    return SO_ERR_IO;
  }
  d->b = b;
  d->t = t;
  d->stats = stats;
  d->workers_alive = n_workers;
  d->park_ms = park_ms;
  pthread_mutex_init(&d->mu, NULL);
  if (sem_init(&d->jobs_sem, 0, 0) != 0) {
    pthread_mutex_destroy(&d->mu);
    close(d->efd);
    free(d);
    return SO_ERR_IO;
  }
  atomic_init(&d->efd_written, 0);
  atomic_init(&d->closing, false);
  atomic_init(&d->generation, broker_generation(b));
  *out = d;
  return SO_OK;
}

void dispatch_free(struct dispatch *d)
{
  if (!d)
    return;
  while (d->jobs_head) {
    struct job *j = d->jobs_head;
    d->jobs_head = j->next;
    broker_delivery_free(j->d);
    free(j);
  }
  for (struct action *a = d->acts_head, *n; a; a = n) {
    n = a->next;
    action_free(a);
  }
  for (struct action *a = d->retry_head, *n; a; a = n) {
    n = a->next;
    action_free(a);
  }
  sem_destroy(&d->jobs_sem);
  pthread_mutex_destroy(&d->mu);
  close(d->efd);
  free(d);
}

/* ---- the workers' side --------------------------------------------- */

struct broker_delivery *dispatch_take(struct dispatch *d, int timeout_ms)
{
  struct timespec until =
      clock_deadline(CLOCK_REALTIME, (int64_t)timeout_ms * 1000000);
  for (;;) {
    if (atomic_load(&d->closing))
      return NULL;
    if (sem_timedwait(&d->jobs_sem, &until) != 0) {
      if (errno == EINTR)
        continue;
      return NULL; /* ETIMEDOUT */
    }
    if (atomic_load(&d->closing))
      return NULL;
    pthread_mutex_lock(&d->mu);
    struct job *j = d->jobs_head;
    if (j) {
      d->jobs_head = j->next;
      if (!d->jobs_head)
        d->jobs_tail = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    if (!j)
      continue; /* the token of a job the owner took back */
    struct broker_delivery *dl = j->d;
    free(j);
    /* The broker requeued deliveries of an old channel: another copy
     * is on its way, and this one cannot be acked anyway. */
    if (dl->generation != atomic_load(&d->generation)) {
      stats_add(&d->stats->stale_skipped, 1);
      broker_delivery_free(dl);
      continue;
    }
    return dl;
  }
}

bool dispatch_closing(const struct dispatch *d)
{
  return atomic_load(&((struct dispatch *)d)->closing);
}

static char *dup_n(const char *s, size_t n)
{
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static char *dup_opt(const char *s)
{
  return s ? strdup(s) : NULL;
}

/* fill_pub: copy a publish request into a; false when out of memory. */
static bool fill_pub(struct action *a, const struct dispatch_publish *p)
{
  a->has_pub = true;
  a->exchange = strdup(p->exchange ? p->exchange : "");
  a->routing_key = strdup(p->routing_key ? p->routing_key : "");
  a->body = dup_n(p->body, p->body_len);
  a->body_len = p->body_len;
  a->message_id = strdup(p->message_id ? p->message_id : "unknown");
  a->error = dup_opt(p->error);
  a->attempt = p->attempt;
  return a->exchange && a->routing_key && a->body && a->message_id &&
         (!p->error || a->error);
}

static void post(struct dispatch *d, struct action *a)
{
  pthread_mutex_lock(&d->mu);
  /* Only the first request of a list wakes the owner: run_actions reads
   * the eventfd before it takes the list, so a request added to a list
   * not taken yet is found by that take (a write(2) and an owner wake-up
   * less per request that comes with others: an ack and its claimed
   * event). Nor does a request posted while the owner is busy with the
   * previous list: it takes the list again before it sleeps. */
  bool first = !d->acts_head && !d->owner_busy;
  if (d->acts_tail)
    d->acts_tail->next = a;
  else
    d->acts_head = a;
  d->acts_tail = a;
  pthread_mutex_unlock(&d->mu);
  if (first)
    wake(d);
}

void dispatch_settle(struct dispatch *d, const struct broker_delivery *dl,
                     enum dispatch_settle how,
                     const struct dispatch_publish *pub)
{
  struct action *a = calloc(1, sizeof(*a));
  if (!a || (pub && !fill_pub(a, pub))) {
    /* Out of memory: leave the delivery unacked; the broker redelivers
     * it when the connection goes, and the claim sorts it out. */
    log_error("consumer: out of memory settling a delivery tag=%llu",
              (unsigned long long)dl->tag);
    action_free(a);
    return;
  }
  a->has_delivery = true;
  a->generation = dl->generation;
  a->tag = dl->tag;
  a->how = how;
  post(d, a);
}

void dispatch_publish(struct dispatch *d, const struct dispatch_publish *pub)
{
  struct action *a = calloc(1, sizeof(*a));
  if (!a || !fill_pub(a, pub)) {
    log_error("consumer: out of memory publishing campaign=%s",
              pub->message_id);
    action_free(a);
    return;
  }
  post(d, a);
}

void dispatch_event(struct dispatch *d, const struct event *e)
{
  struct action *a = calloc(1, sizeof(*a));
  if (!a)
    return;
  /* The body is made here, on the worker's thread, not by the owner: the
   * owner is the one thread every campaign goes through. */
  struct event ev = *e;
  ev.source = "consumer";
  a->has_event = true;
  a->ev_kind = e->kind;
  a->ev_campaign = dup_opt(e->campaign_id);
  a->ev_body = event_to_json(&ev);
  if (!a->ev_body || (e->campaign_id && !a->ev_campaign)) {
    action_free(a);
    return;
  }
  post(d, a);
}

void dispatch_worker_exit(struct dispatch *d)
{
  pthread_mutex_lock(&d->mu);
  d->workers_alive--;
  pthread_mutex_unlock(&d->mu);
  wake(d);
}

/* ---- the owner's side ---------------------------------------------- */

/* execute: one request. Returns false when a publish without a delivery
 * failed and must be retried later (the action is kept). */
static bool execute(struct dispatch *d, struct action *a)
{
  char err[512] = "";
  if (a->has_pub) {
    struct broker_header h = {"x-sendonce-error", a->error};
    struct broker_message m = {
        .exchange = a->exchange,
        .routing_key = a->routing_key,
        .body = a->body,
        .body_len = a->body_len,
        .message_id = a->message_id,
        .attempt = a->attempt,
        .headers = a->error ? &h : NULL,
        .n_headers = a->error ? 1 : 0,
        .mandatory = true,
    };
    int rc = broker_publish_confirmed(d->b, &m, err, sizeof(err));
    if (rc != SO_OK) {
      stats_add(&d->stats->publish_failures, 1);
      log_warn(
          "consumer: publish failed: %s campaign=%s exchange=%s "
          "routing_key=%s status=%s",
          err, a->message_id, a->exchange, a->routing_key, so_strerror(rc));
      if (!a->has_delivery)
        return false;
      /* Never ack what we could not pass on: back to its queue. */
      a->how = DISPATCH_NACK_REQUEUE;
      stats_add(&d->stats->requeued, 1);
    }
  }
  if (a->has_delivery) {
    int rc = a->how == DISPATCH_ACK
                 ? broker_ack(d->b, a->generation, a->tag)
                 : broker_nack(d->b, a->generation, a->tag, true);
    if (rc == SO_ERR_CONFLICT)
      log_debug("consumer: settle of an old generation ignored tag=%llu",
                (unsigned long long)a->tag);
    else if (rc != SO_OK)
      log_warn(
          "consumer: settle failed tag=%llu status=%s (the broker "
          "redelivers it)",
          (unsigned long long)a->tag, so_strerror(rc));
  }
  if (a->has_event)
    (void)events_send_json(d->b, d->t, a->ev_kind, a->ev_campaign, a->ev_body,
                           strlen(a->ev_body));
  return true;
}

/* take_actions: the workers' list, leaving it empty. `again`: the owner
 * takes the list again before it sleeps, so posts need not wake it. */
static struct action *take_actions(struct dispatch *d, bool again)
{
  pthread_mutex_lock(&d->mu);
  struct action *list = d->acts_head;
  d->acts_head = d->acts_tail = NULL;
  d->owner_busy = again && list;
  pthread_mutex_unlock(&d->mu);
  return list;
}

/* run_list: execute requests in order; a publish that must be retried
 * goes to the retry list. */
static void run_list(struct dispatch *d, struct action *list, int64_t now)
{
  while (list) {
    struct action *a = list;
    list = a->next;
    a->next = NULL;
    if (execute(d, a)) {
      action_free(a);
      continue;
    }
    a->tries = 1;
    a->due_ms = now + 200;
    struct action **tail = &d->retry_head;
    while (*tail)
      tail = &(*tail)->next;
    *tail = a;
  }
}

/* Lists run_actions takes before the owner polls the broker again,
 * however fast the workers post. */
#define DISPATCH_ACTION_ROUNDS 4

/* run_actions: due retries, then everything the workers posted, in one
 * broker batch: the acks and events of a turn leave in one write (a
 * confirmed publish writes what is queued before it waits). */
static void run_actions(struct dispatch *d, bool hurry)
{
  uint64_t n;
  if (atomic_load(&d->efd_written) != d->efd_read) {
    /* EAGAIN: a worker counted its write but has not made it yet. */
    if (read(d->efd, &n, sizeof(n)) == (ssize_t)sizeof(n))
      d->efd_read += n;
    else if (errno != EAGAIN)
      log_error("consumer: read eventfd failed errno=%d", errno);
  }
  struct action *list = take_actions(d, true);
  int64_t now = clock_monotonic_ms();
  broker_batch_begin(d->b);
  /* Retries first: they were asked for earlier. */
  struct action **pp = &d->retry_head;
  while (*pp) {
    struct action *a = *pp;
    if (a->due_ms > now && !hurry) {
      pp = &a->next;
      continue;
    }
    *pp = a->next;
    a->next = NULL;
    if (execute(d, a)) {
      action_free(a);
    } else {
      a->tries++;
      a->due_ms = now + (a->tries < 6 ? 200LL << a->tries : 10000);
      a->next = *pp;
      *pp = a;
      pp = &a->next;
    }
  }
  for (int round = 1; list; round++) {
    run_list(d, list, now);
    /* Requests posted meanwhile did not wake us: take them now, a few
     * rounds at most (the broker must be polled too). The last take
     * clears owner_busy, so what is posted after it wakes us. */
    list = round <= DISPATCH_ACTION_ROUNDS
               ? take_actions(d, round < DISPATCH_ACTION_ROUNDS)
               : NULL;
  }
  (void)broker_batch_end(d->b);
}

/* requeue: nack a delivery back to its queue. A failure needs nothing
 * more: a lost connection or an old generation means the broker has
 * requeued it already. */
static void requeue(struct dispatch *d, const struct broker_delivery *dl)
{
  if (broker_nack(d->b, dl->generation, dl->tag, true) == SO_OK)
    stats_add(&d->stats->requeued, 1);
}

/* begin_close: stop consuming and give back what no worker took. */
static void begin_close(struct dispatch *d)
{
  if (broker_cancel_all(d->b) != SO_OK)
    log_warn("consumer: cancel: broker down (it drops our consumers)");
  pthread_mutex_lock(&d->mu);
  atomic_store(&d->closing, true);
  struct job *j = d->jobs_head;
  d->jobs_head = d->jobs_tail = NULL;
  int sleepers = d->workers_alive;
  pthread_mutex_unlock(&d->mu);
  /* A token for every worker, so that each one sleeping wakes up and sees
   * `closing`. */
  for (int i = 0; i < sleepers; i++)
    sem_post(&d->jobs_sem);
  while (j) {
    struct job *next = j->next;
    requeue(d, j->d);
    broker_delivery_free(j->d);
    free(j);
    j = next;
  }
}

int dispatch_delivery_attempt(const struct broker_delivery *dl)
{
  const char *v = broker_delivery_header(dl, "x-sendonce-attempt");
  if (!v)
    return 0;
  char *end = NULL;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < 0 || n > 1000000)
    return 0;
  return (int)n;
}

/* park_waiting: every worker is busy with a long campaign. A trigger held
 * unacked meanwhile would meet the broker's consumer_timeout (the channel
 * is closed and the trigger requeued, which the quorum delivery limit
 * counts), and another consumer with a free worker could take it now. So
 * one that waited park_ms goes to the shortest retry queue (confirmed,
 * then acked): never lost, never counted as a failed delivery. */
static void park_waiting(struct dispatch *d)
{
  if (d->park_ms <= 0 || d->t->n_retry == 0)
    return;
  for (;;) {
    int64_t now = clock_monotonic_ms();
    pthread_mutex_lock(&d->mu);
    struct job *j = d->jobs_head;
    if (!j || now - j->since_ms < d->park_ms) {
      pthread_mutex_unlock(&d->mu);
      return;
    }
    d->jobs_head = j->next;
    if (!d->jobs_head)
      d->jobs_tail = NULL;
    pthread_mutex_unlock(&d->mu);
    struct broker_delivery *dl = j->d;
    int64_t waited = now - j->since_ms;
    free(j);
    if (dl->generation == broker_generation(d->b)) {
      char id[MSG_CAMPAIGN_ID_MAX + 1];
      const char *mid =
          dl->message_id && *dl->message_id ? dl->message_id : "unknown";
      if (msg_peek_campaign_id(dl->body, dl->body_len, id, sizeof(id)) == SO_OK)
        mid = id;
      struct action a = {
          .has_pub = true,
          .exchange = (char *)"",
          .routing_key = (char *)d->t->retry[0].queue,
          .body = dl->body,
          .body_len = dl->body_len,
          .message_id = (char *)mid,
          .attempt = dispatch_delivery_attempt(dl),
          .has_delivery = true,
          .generation = dl->generation,
          .tag = dl->tag,
          .how = DISPATCH_ACK,
      };
      log_info(
          "consumer: no free worker: trigger parked campaign=%s "
          "waited_ms=%lld retry_queue=%s",
          mid, (long long)waited, d->t->retry[0].queue);
      stats_add(&d->stats->parked, 1);
      (void)execute(d, &a);
    }
    broker_delivery_free(dl);
  }
}

static void push_job(struct dispatch *d, struct broker_delivery *dl)
{
  struct job *j = malloc(sizeof(*j));
  if (!j) {
    requeue(d, dl);
    broker_delivery_free(dl);
    return;
  }
  j->d = dl;
  j->since_ms = clock_monotonic_ms();
  j->next = NULL;
  pthread_mutex_lock(&d->mu);
  if (d->jobs_tail)
    d->jobs_tail->next = j;
  else
    d->jobs_head = j;
  d->jobs_tail = j;
  pthread_mutex_unlock(&d->mu);
  /* Posted after the unlock: a worker woken while the owner still held
   * the mutex would go straight back to sleep on it (a futex wait, and a
   * wake when the owner unlocks). */
  sem_post(&d->jobs_sem);
}

void dispatch_on_tick(struct dispatch *d, void (*cb)(void *arg), void *arg)
{
  d->tick = cb;
  d->tick_arg = arg;
}

int dispatch_run(struct dispatch *d, const volatile sig_atomic_t *stop,
                 int drain_ms)
{
  int status = SO_OK;
  int64_t deadline = 0;
  char err[1024];
  for (;;) {
    bool stopping = *stop > 0 || status != SO_OK;
    if (stopping && !atomic_load(&d->closing)) {
      log_info("consumer: stopping: no new deliveries, releasing campaigns");
      begin_close(d);
      deadline = clock_monotonic_ms() + drain_ms;
    }
    struct broker_delivery *dl = NULL;
    err[0] = '\0';
    int rc = broker_poll(d->b, 200, d->efd, &dl, err, sizeof(err));
    atomic_store(&d->generation, broker_generation(d->b));
    if (rc == SO_OK) {
      if (atomic_load(&d->closing)) {
        requeue(d, dl);
        broker_delivery_free(dl);
      } else {
        push_job(d, dl);
      }
    } else if (rc == SO_ERR_CONFLICT || rc == SO_ERR_REFUSED) {
      log_error("consumer: broker: %s status=%s", err, so_strerror(rc));
      status = rc;
    }
    if (d->tick)
      d->tick(d->tick_arg);
    bool hurry = *stop >= 2;
    run_actions(d, hurry);
    if (!atomic_load(&d->closing))
      park_waiting(d);
    if (!atomic_load(&d->closing))
      continue;
    pthread_mutex_lock(&d->mu);
    bool idle = d->workers_alive == 0 && !d->acts_head;
    pthread_mutex_unlock(&d->mu);
    if (!idle)
      continue;
    if (!d->retry_head)
      break;
    if (clock_monotonic_ms() > deadline || hurry) {
      for (struct action *a = d->retry_head; a; a = a->next)
        log_error(
            "consumer: gave up publishing campaign=%s routing_key=%s "
            "(the watchdog recreates a lost trigger)",
            a->message_id, a->routing_key);
      break;
    }
  }
  return status;
}
