/* registry_sqlite_group.c - group commit for the SQLite registry backend
 * (see registry_sqlite_group.h): the process-wide table of groups, the
 * job queue with its leader hand-off, and the one transaction a leader
 * runs for a batch of jobs. */
#include "registry_sqlite_group.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "registry_sqlite_wal.h"

/* At most this many jobs per transaction: a leader that has waited for
 * the lock must not then hold it, and its followers, for an unbounded
 * batch. Eight workers plus a lease thread never come close. */
#define RSG_MAX_BATCH 64

/* A handle counts as a sibling (a thread that may queue a job soon) when
 * it queued one within the last one or two epochs of this many commit
 * delays: a worker of the one-recipient benchmark queues a step every
 * ~3 ms, one that waits on a slow provider far more rarely. */
#define RSG_EPOCH_DELAYS 16

/* A job lives on its caller's stack. Its caller, when another thread leads,
 * sleeps on `wake`, which is posted exactly once: when a leader finished
 * the job (`done`) or handed the lead to it (`lead`), both set under the
 * group's mutex before the post. A semaphore, not the group's condition
 * variable: each batch wakes only the threads it has news for, where a
 * broadcast woke every waiter after every batch (bench/run row 1: most of
 * the workers' ~11 futex calls per campaign, each a context switch). And
 * sem_post may be called after the mutex is released (the waiter cannot
 * return before it), so a woken thread does not then block on the mutex. */
struct rsg_job {
  rsg_job_fn fn;
  void *arg;
  int status;
  bool done; /* a leader ran it */
  bool lead; /* a leader handed over: its caller leads the next batch */
  sem_t wake;
  struct rsg_job *next;
  char errmsg[REGISTRY_ERRMSG_LEN]; /* the job's detail when it failed */
};

/* See struct rsg_stats; atomics, as they are counted outside the mutex. */
struct rsg_counters {
  atomic_ullong batches, jobs, waits, wakes, handoffs, idle_wakes, delays;
};

/* What the commit delay knows of the jobs' arrivals (all under the
 * group's mutex; see wait_more). Jobs of handles without a delay are not
 * tracked: nothing reads the clock for them. */
struct rsg_arrivals {
  int64_t last_ns; /* the last tracked job's arrival (0: none yet) */
  int64_t gap_ns;  /* moving average of the gaps between arrivals */
  /* Handles that queued a job in the current and in the previous epoch
   * (an epoch is RSG_EPOCH_DELAYS delays long): the siblings a leader
   * may wait for. A handle counts once per epoch (its rsg_epoch). */
  unsigned epoch;
  int64_t epoch_start_ns;
  size_t active_cur, active_prev;
  /* A leader waits in wait_more: the queuer that brings the count of
   * jobs queued since it began waiting to `want` posts `arrived`. A
   * semaphore, not a condition variable: a thread woken from
   * pthread_cond_wait takes the mutex as contended, and its unlock then
   * pays a futex wake whether anyone waits or not. A post that comes
   * after its leader stopped waiting leaves a token the next wait
   * consumes; that wait re-checks its count and goes on waiting. */
  sem_t arrived;
  bool delaying;
  size_t arrivals, want;
};

struct rsg_group {
  /* The one connection every batch runs on, whichever thread leads. When
   * leaders ran batches on their own handles, the leader changed all the
   * time and each BEGIN found that another connection had committed since
   * its last transaction, so it dropped and reloaded its page cache; one
   * writer keeps its cache from commit to commit (only other processes'
   * commits invalidate it) and its statements stay prepared. Measured:
   * claims/s from 8 threads of one process (bench/run row 5) ~4,700 ->
   * ~14,300 on the 2-core dev machine. The handles' own connections still
   * serve reads. Only the leader of the moment uses it (`leading`). */
  struct registry_sqlite writer;
  struct rsw wal; /* the writer's WAL file, kept ahead of its frames */
  pid_t pid;
  dev_t dev; /* the database file: two spellings of a path are one group */
  ino_t ino;
  int refs; /* guarded by groups_mu */
  pthread_mutex_t mu;
  /* Some thread runs a batch, or was handed the lead and is waking up to
   * run the next one: whoever queues a job while it is set waits, and is
   * sure to be woken (see rsg_run). */
  bool leading;
  struct rsg_job *head, **tail;
  struct rsg_arrivals arr;
  struct rsg_counters stats;
  struct rsg_group *next; /* in `groups` */
};

/* ---- the table of groups ------------------------------------------------ */

static pthread_mutex_t groups_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rsg_group *groups;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void groups_lock(void)
{
  pthread_mutex_lock(&groups_mu);
}

static void groups_unlock(void)
{
  pthread_mutex_unlock(&groups_mu);
}

/* A child forked while another thread held groups_mu would inherit it
 * locked forever; holding it across fork() makes it free on both sides.
 * The child then never uses the parent's groups: they are keyed by pid. */
static void atfork_install(void)
{
  pthread_atfork(groups_lock, groups_unlock, groups_unlock);
}

/* writer_open: the group's writer connection on `path`, set up as every
 * handle's is; it must be the file that `sb` describes (the caller just
 * opened it), else the group would commit to another database. */
static int writer_open(struct rsg_group *g, const char *path,
                       const struct stat *sb, char *err, size_t errlen)
{
  int rc = registry_sqlite_setup(path, 0, &g->writer.busy, &g->writer.db, err,
                                 errlen);
  if (rc)
    return rc;
  struct stat now;
  if (stat(path, &now) != 0 || now.st_dev != sb->st_dev ||
      now.st_ino != sb->st_ino) {
    snprintf(err, errlen, "registry sqlite: %s was replaced while opening",
             path);
    rsdb_close(&g->writer);
    return SO_ERR_IO;
  }
  return SO_OK;
}

int rsg_acquire(const char *path, struct rsg_group **out, char *err,
                size_t errlen)
{
  *out = NULL;
  pthread_once(&atfork_once, atfork_install);
  /* Keyed by the file, not its name: two spellings of one path share a
   * group, and a file deleted and created anew under the same name while
   * a handle on the old one is open (its inode stays allocated) never
   * does, so a leader always runs a job on the job's own database. The
   * caller opened the file just before, so it exists. */
  struct stat sb;
  if (stat(path, &sb) != 0) {
    snprintf(err, errlen, "registry sqlite: stat %s: %s", path,
             strerror(errno));
    return SO_ERR_IO;
  }
  pid_t pid = getpid();
  groups_lock();
  struct rsg_group *g = groups;
  while (g && !(g->pid == pid && g->dev == sb.st_dev && g->ino == sb.st_ino))
    g = g->next;
  if (g) {
    g->refs++;
  } else {
    g = calloc(1, sizeof(*g));
    if (!g) {
      groups_unlock();
      snprintf(err, errlen, "registry sqlite: out of memory");
      return SO_ERR_NOMEM;
    }
    /* Opened under groups_mu so that a second handle of the same file
     * never finds a group without its writer; opening happens once per
     * group, not per step. The caller's busy timeout is only a default:
     * each leader's own applies while it leads (see rsg_run). */
    int rc = writer_open(g, path, &sb, err, errlen);
    if (rc) {
      groups_unlock();
      free(g);
      return rc;
    }
    rsw_open(&g->wal, g->writer.db, path);
    g->pid = pid;
    g->dev = sb.st_dev;
    g->ino = sb.st_ino;
    g->refs = 1;
    pthread_mutex_init(&g->mu, NULL);
    (void)sem_init(&g->arr.arrived, 0, 0); /* fails only for a value > max */
    g->tail = &g->head;
    g->next = groups;
    groups = g;
  }
  groups_unlock();
  *out = g;
  return SO_OK;
}

void rsg_release(struct rsg_group *g)
{
  if (!g)
    return;
  groups_lock();
  bool last = --g->refs == 0;
  if (last) {
    struct rsg_group **pp = &groups;
    while (*pp && *pp != g)
      pp = &(*pp)->next;
    if (*pp)
      *pp = g->next;
  }
  groups_unlock();
  if (!last)
    return;
  /* No job can be queued: every handle of the group is closed, and a
   * handle is only closed by its own thread, never while inside rsg_run. */
  rsdb_close(&g->writer);
  rsw_close(&g->wal);
  pthread_mutex_destroy(&g->mu);
  sem_destroy(&g->arr.arrived);
  free(g);
}

/* ---- one batch: one transaction ----------------------------------------- */

static void job_fail(struct rsg_job *job, int status, const char *detail)
{
  job->status = status;
  snprintf(job->errmsg, sizeof(job->errmsg), "%s", detail);
}

/* The whole transaction is lost (COMMIT failed, or SQLite rolled it back
 * under a job): every job that had not already failed on its own gets
 * that failure, so no caller believes a step committed that did not. */
static void batch_fail(struct registry_sqlite *exec, struct rsg_job **jobs,
                       size_t n, int status)
{
  for (size_t i = 0; i < n; i++) {
    if (jobs[i]->status == SO_OK)
      job_fail(jobs[i], status, exec->base.errmsg);
  }
}

/* run_job: one job in its own savepoint, so its failure (a stale fence, a
 * conflict) undoes only its own writes. Returns SO_OK while the
 * transaction can go on; else the status that ends the whole batch. */
static int run_job(struct registry_sqlite *exec, struct rsg_job *job)
{
  int rc = rsdb_savepoint(exec);
  if (rc)
    return rc;
  int st = job->fn(exec, job->arg);
  if (st)
    job_fail(job, st, exec->base.errmsg);
  /* Some errors (I/O, full disk, out of memory) make SQLite roll back the
   * whole transaction, not just the statement: nothing of this batch is
   * left to commit. */
  if (sqlite3_get_autocommit(exec->db))
    return st ? st : rsdb_error(exec, SQLITE_ABORT, "transaction lost");
  return rsdb_savepoint_end(exec, st);
}

/* ---- the commit delay -------------------------------------------------- */

static int64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* arrival_note: with g->mu held, a job of `self` was just queued at `now`:
 * the gap average and the epoch's siblings. Returns true when a leader
 * waits for exactly this job: the caller posts `arrived` once it has
 * released g->mu. */
static bool arrival_note(struct rsg_group *g, struct registry_sqlite *self,
                         int64_t now)
{
  struct rsg_arrivals *a = &g->arr;
  int64_t delay = self->commit_delay_ns;
  /* Capped, so that one long pause is forgotten after a few arrivals. */
  int64_t gap = a->last_ns ? now - a->last_ns : 4 * delay;
  if (gap > 4 * delay)
    gap = 4 * delay;
  a->gap_ns = a->last_ns ? a->gap_ns + (gap - a->gap_ns) / 8 : gap;
  a->last_ns = now;
  int64_t epoch_ns = RSG_EPOCH_DELAYS * delay;
  if (a->epoch == 0 || now - a->epoch_start_ns >= epoch_ns) {
    a->active_prev =
        now - a->epoch_start_ns >= 2 * epoch_ns ? 0 : a->active_cur;
    a->active_cur = 0;
    a->epoch++;
    a->epoch_start_ns = now;
  }
  if (self->rsg_epoch != a->epoch) {
    self->rsg_epoch = a->epoch;
    a->active_cur++;
  }
  return a->delaying && ++a->arrivals == a->want;
}

/* sem_wait_ns: wait on `sem` for at most `ns` nanoseconds (a signal or
 * the timeout ends it early: the caller re-checks). sem_timedwait takes a
 * CLOCK_REALTIME deadline; for a wait this short a clock step only
 * lengthens or shortens one delay. */
static void sem_wait_ns(sem_t *sem, int64_t ns)
{
  struct timespec ts = clock_deadline(CLOCK_REALTIME, ns);
  (void)sem_timedwait(sem, &ts);
}

/* wait_more: the batch of `n` jobs is about to COMMIT and nothing more is
 * queued. Each COMMIT costs an fsync, a few whole WAL pages (the pages a
 * job dirties are mostly the same few for every job: the tails of the
 * tables and indexes), its locks and its wake-ups, whatever the batch's
 * size; bench/run row 1 ran 2.7 jobs per COMMIT, half the batches a
 * single job. As PostgreSQL's commit_delay with commit_siblings, the
 * leader waits, up to the leader's commit delay from its first wait
 * (*deadline), for the jobs that are likely to come: only while fewer
 * handles are in the batch than queued jobs lately (the siblings; a lone
 * handle, such as the publisher's or the watchdog's, is never delayed)
 * and jobs have come at least once per delay on average. It returns as
 * soon as the siblings missing from the batch have queued. Returns true
 * when it waited. */
static bool wait_more(struct rsg_group *g, struct registry_sqlite *self,
                      size_t n, int64_t *deadline)
{
  struct rsg_arrivals *a = &g->arr;
  int64_t delay = self->commit_delay_ns;
  bool waited = false;
  pthread_mutex_lock(&g->mu);
  size_t active =
      a->active_cur > a->active_prev ? a->active_cur : a->active_prev;
  if (!g->head && n < active && a->last_ns && a->gap_ns <= delay) {
    int64_t now = mono_ns();
    if (!*deadline)
      *deadline = now + delay;
    if (now < *deadline) {
      a->delaying = true;
      a->arrivals = 0;
      a->want = active - n;
      /* Until the missing siblings' jobs came or the deadline passed; the
       * caller takes whatever came either way. */
      while (a->arrivals < a->want && now < *deadline) {
        pthread_mutex_unlock(&g->mu);
        sem_wait_ns(&a->arrived, *deadline - now);
        pthread_mutex_lock(&g->mu);
        now = mono_ns();
      }
      a->delaying = false;
      waited = true;
    }
  }
  pthread_mutex_unlock(&g->mu);
  return waited;
}

/* ---- one batch, continued ----------------------------------------------- */

/* take_more: the jobs queued since the batch was taken, appended to it up
 * to the cap; returns the batch's new size. */
static size_t take_more(struct rsg_group *g, struct rsg_job **batch, size_t n)
{
  pthread_mutex_lock(&g->mu);
  while (g->head && n < RSG_MAX_BATCH) {
    struct rsg_job *job = g->head;
    g->head = job->next;
    if (!g->head)
      g->tail = &g->head;
    job->next = NULL;
    batch[n++] = job;
  }
  pthread_mutex_unlock(&g->mu);
  return n;
}

/* run_first: the batch's first job, when it is alone so far, without a
 * savepoint (~4,000 instructions for SAVEPOINT and RELEASE): when it
 * fails, rolling back the whole transaction undoes exactly its writes, and
 * no other job has run; the batch then ends with it. Returns SO_OK while
 * the transaction can go on. */
static int run_first(struct registry_sqlite *exec, struct rsg_job *job)
{
  int st = job->fn(exec, job->arg);
  if (st) {
    job_fail(job, st, exec->base.errmsg);
    (void)rsdb_end(exec, st); /* rolls back if SQLite has not already */
    return st;
  }
  /* SQLite may have rolled back the whole transaction under a statement
   * whose failure the job did not report as such. */
  if (sqlite3_get_autocommit(exec->db)) {
    int rc = rsdb_error(exec, SQLITE_ABORT, "transaction lost");
    job_fail(job, rc, exec->base.errmsg);
    return rc;
  }
  return SO_OK;
}

/* run_batch: BEGIN IMMEDIATE on the group's writer, each job in turn, one
 * COMMIT. The jobs queued while the batch runs, or while its leader waits
 * for them (wait_more), join it before the COMMIT. Returns the batch's
 * final size. The leader waits for the write lock (other processes) with
 * its own busy timeout; a timeout there fails the batch as
 * SO_ERR_UNAVAILABLE, which every caller already treats as "try later". */
static size_t run_batch(struct rsg_group *g, struct registry_sqlite *self,
                        struct rsg_job **jobs, size_t n)
{
  struct registry_sqlite *exec = &g->writer;
  int rc = rsdb_begin(exec, true);
  if (rc) {
    batch_fail(exec, jobs, n, rc);
    return n;
  }
  /* The write lock is ours: the WAL file can be grown ahead of the frames
   * this COMMIT appends (registry_sqlite_wal.h). */
  rsw_ensure(&g->wal);
  size_t i = 0;
  if (n == 1) {
    if (run_first(exec, jobs[0]))
      return 1;
    i = 1;
  }
  int64_t deadline = 0;
  for (;;) {
    for (; !rc && i < n; i++)
      rc = run_job(exec, jobs[i]);
    if (rc)
      break;
    size_t more = take_more(g, jobs, n);
    if (more == n && self->commit_delay_ns > 0 && n < RSG_MAX_BATCH &&
        wait_more(g, self, n, &deadline))
      more = take_more(g, jobs, n);
    if (more == n)
      break;
    n = more;
  }
  if (deadline)
    atomic_fetch_add_explicit(&g->stats.delays, 1, memory_order_relaxed);
  if (rc) {
    rc = rsdb_end(exec, rc); /* rolls back what is left, keeps the detail */
    batch_fail(exec, jobs, n, rc);
    return n;
  }
  rc = rsdb_end(exec, SO_OK);
  if (rc)
    batch_fail(exec, jobs, n, rc);
  return n;
}

/* ---- the queue and the leader ------------------------------------------- */

static void queue_remove(struct rsg_group *g, struct rsg_job *job)
{
  struct rsg_job **pp = &g->head;
  while (*pp != job)
    pp = &(*pp)->next;
  *pp = job->next;
  if (g->tail == &job->next)
    g->tail = pp;
  job->next = NULL;
}

/* take_batch: the leader's own job first (so leading always finishes the
 * leader's step), then the oldest queued jobs up to the cap. */
static size_t take_batch(struct rsg_group *g, struct rsg_job *own,
                         struct rsg_job **batch)
{
  size_t n = 0;
  queue_remove(g, own);
  batch[n++] = own;
  while (g->head && n < RSG_MAX_BATCH) {
    struct rsg_job *job = g->head;
    queue_remove(g, job);
    batch[n++] = job;
  }
  return n;
}

/* wait_turn: sleep until a leader posts the job: it is done, or ours to
 * lead. No timeout: the leader's busy timeout bounds the batch, and a
 * leader always posts every job it took or handed the lead to. */
static void wait_turn(struct rsg_group *g, struct rsg_job *job)
{
  atomic_fetch_add_explicit(&g->stats.waits, 1, memory_order_relaxed);
  for (;;) {
    while (sem_wait(&job->wake) != 0)
      ; /* EINTR: a signal handler ran; the post is still to come */
    atomic_fetch_add_explicit(&g->stats.wakes, 1, memory_order_relaxed);
    /* The post orders the leader's writes (done, lead, status) before
     * these reads. A post carries news by construction; the count is the
     * check that no thread is ever woken for nothing. */
    if (job->done || job->lead)
      return;
    atomic_fetch_add_explicit(&g->stats.idle_wakes, 1, memory_order_relaxed);
  }
}

/* lead: with g->mu held and g->leading set for us, run one batch that
 * starts with our own job, then wake exactly its other jobs' callers and,
 * when jobs queued meanwhile, hand the lead to the oldest one's caller
 * (leading stays set, so no job waits with nobody to lead it). Returns
 * with g->mu released. */
static void lead(struct rsg_group *g, struct registry_sqlite *self,
                 struct rsg_job *own)
{
  struct rsg_job *batch[RSG_MAX_BATCH];
  size_t n = take_batch(g, own, batch);
  pthread_mutex_unlock(&g->mu);
  /* The leader's busy timeout governs the wait for the write lock, as
   * when batches ran on the leader's own connection. */
  g->writer.busy.timeout_ms = self->busy.timeout_ms;
  n = run_batch(g, self, batch, n);
  pthread_mutex_lock(&g->mu);
  for (size_t i = 0; i < n; i++)
    batch[i]->done = true;
  /* batch[0] is our own job: its slot carries the next leader, if any. */
  batch[0] = g->head;
  if (g->head)
    g->head->lead = true;
  else
    g->leading = false;
  pthread_mutex_unlock(&g->mu);
  atomic_fetch_add_explicit(&g->stats.batches, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&g->stats.jobs, n, memory_order_relaxed);
  if (batch[0])
    atomic_fetch_add_explicit(&g->stats.handoffs, 1, memory_order_relaxed);
  /* After its post a job's caller may return and its stack be reused: the
   * job is not touched again. */
  for (size_t i = batch[0] ? 0 : 1; i < n; i++)
    sem_post(&batch[i]->wake);
}

int rsg_run(struct rsg_group *g, struct registry_sqlite *self, rsg_job_fn fn,
            void *arg)
{
  struct rsg_job job = {.fn = fn, .arg = arg, .status = SO_OK};
  (void)sem_init(&job.wake, 0, 0); /* fails only for a value > max */
  int64_t now = self->commit_delay_ns > 0 ? mono_ns() : 0;
  pthread_mutex_lock(&g->mu);
  *g->tail = &job;
  g->tail = &job.next;
  bool arrived = now && arrival_note(g, self, now);
  if (g->leading) {
    /* A leader is at work: it, or one after it, takes our job. */
    pthread_mutex_unlock(&g->mu);
    /* Posted after the unlock, so the waiting leader does not wake only
     * to block on g->mu until we release it (a futex wait and a wake
     * more, and a context switch, per batch it delays). */
    if (arrived)
      sem_post(&g->arr.arrived);
    wait_turn(g, &job);
    if (job.lead) {
      /* Handed over while our job was still queued: leading stays set. */
      pthread_mutex_lock(&g->mu);
      lead(g, self, &job);
    }
  } else {
    /* Nobody leads: we lead one batch, then hand over, so no thread runs
     * others' work for long. (No leader, so none delays: `arrived` is
     * false here.) */
    g->leading = true;
    lead(g, self, &job);
  }
  sem_destroy(&job.wake);
  /* The leader's handle saw the other jobs' failures go by; the caller
   * sees only its own step's detail. */
  if (job.status)
    memcpy(self->base.errmsg, job.errmsg, sizeof(job.errmsg));
  else
    self->base.errmsg[0] = '\0';
  return job.status;
}

void rsg_stats_get(struct rsg_group *g, struct rsg_stats *out)
{
  out->batches = atomic_load(&g->stats.batches);
  out->jobs = atomic_load(&g->stats.jobs);
  out->waits = atomic_load(&g->stats.waits);
  out->wakes = atomic_load(&g->stats.wakes);
  out->handoffs = atomic_load(&g->stats.handoffs);
  out->idle_wakes = atomic_load(&g->stats.idle_wakes);
  out->delays = atomic_load(&g->stats.delays);
}
