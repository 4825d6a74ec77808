/* mark_writer.h - a worker's registry writer: the registry work of the
 * campaign its worker is sending, done on a thread of its own so that the
 * sending thread keeps driving curl while marks are committed.
 *
 * One writer per worker, started with the worker and living as long as it,
 * with its own registry handle opened lazily (a handle is not thread-safe).
 * While a campaign is bound to it (mark_writer_begin .. mark_writer_end) it
 *  - prepares the next batches ahead of the sending thread: reads
 *    mark_batch_size recipients and, in one registry_mark_pending step,
 *    marks those still pending INFLIGHT (bad lines REJECTED) and learns
 *    which they were; a batch (of those only) is handed out
 *    (mark_writer_take) only once that step is committed. At most
 *    MARK_WRITER_PREPARED batches wait;
 *  - writes the outcomes the sending thread queues (mark_writer_put), all
 *    that are queued (at most the window), in that same step when the next
 *    batches are prepared, else in one of their own;
 *  - checks the operator's pause/cancel about once a second.
 * Every write is fenced; the lease flag is checked before each one, and a
 * stale fence sets it (lease_set_lost) so every path stops at once. A write
 * the registry cannot take now ("unavailable", a busy lock) is retried
 * after MARK_WRITER_RETRY_MS with its outcomes kept.
 *
 * The window: recipients submitted to the sender whose outcome is not
 * committed yet (in the sender, or queued/being written here) are at most
 * MARK_WRITER_WINDOW_BATCHES * mark_batch_size: mark_writer_take refuses a
 * batch that would pass it. That is what a crash can resend (with the same
 * Idempotency-Key). Prepared batches that were never handed out are
 * INFLIGHT too, but never reached the provider.
 *
 * Threading: every function but mark_writer_start/stop is called by the
 * worker's sending thread; the writer's own thread does the registry work
 * - except when the sending thread waits with nothing to drive (the first
 * batch, the last outcomes, a drain): then it does the due pass itself on
 * its own registry handle rather than pay two thread hand-offs. Either
 * way one pass runs at a time, with the same checks.
 */
#ifndef SENDONCE_CONSUMER_MARK_WRITER_H
#define SENDONCE_CONSUMER_MARK_WRITER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"
#include "lease.h"
#include "recipients.h"
#include "registry.h"
#include "status.h"

#define MARK_WRITER_PREPARED 4       /* prepared batches that may wait */
#define MARK_WRITER_WINDOW_BATCHES 4 /* the window, in mark_batch_size */
#define MARK_WRITER_RETRY_MS 300     /* after an "unavailable" write */
#define MARK_WRITER_LINGER_MS 50     /* a short batch of outcomes waits */
#define MARK_WRITER_REASON_MAX 512

struct mark_writer;

/* The campaign a writer works for. Everything is borrowed until
 * mark_writer_end(); the reader is used by the writer's thread only. */
struct mark_writer_job {
  const char *campaign_id;
  const char *owner; /* for progress events */
  int64_t fence;
  struct lease_entry *le;
  struct recipients_reader *rd;
  size_t batch; /* registry.mark_batch_size */
  /* The list's first n_pre recipients (pre[0..n_pre)) were marked INFLIGHT
   * with the claim, pre_pending[i] saying which were pending: a first
   * read of exactly those is handed out without a registry step of its
   * own. n_pre 0: none. */
  const struct msg_recipient *pre;
  const bool *pre_pending;
  size_t n_pre;
};

/* A prepared batch: its INFLIGHT marks are committed. The caller owns
 * items[0..n) and frees them with mark_writer_batch_free(). */
struct mark_writer_batch {
  struct recipients_item *items;
  size_t n;
};

/* What the writer knows of the campaign so far. */
struct mark_writer_status {
  bool eof;        /* the list is read to its end and every prepared batch has
                      been handed out */
  int list_status; /* recipients_next_batch's failure, SO_OK if none */
  char reason[MARK_WRITER_REASON_MAX]; /* "recipients_unreachable: ..." */
  enum registry_control control;       /* the operator's last word */
  int64_t total;                       /* unique recipients read so far */
  int64_t sent, rejected;              /* committed by this run */
};

/* mark_writer_start: start the thread of worker `index`. `ro` and `d`
 * must outlive it. Returns SO_OK, SO_ERR_NOMEM or SO_ERR_INTERNAL. */
int mark_writer_start(const struct registry_options *ro, struct dispatch *d,
                      int index, struct mark_writer **out) SO_MUST_CHECK;

/* mark_writer_stop: join the thread, close its registry. NULL: no-op. The
 * writer must have no campaign (mark_writer_end). */
void mark_writer_stop(struct mark_writer *mw);

/* mark_writer_begin: bind a campaign; the writer starts preparing.
 * Returns SO_OK or SO_ERR_NOMEM (nothing bound). */
int mark_writer_begin(struct mark_writer *mw,
                      const struct mark_writer_job *job) SO_MUST_CHECK;

/* mark_writer_take: a prepared batch, without waiting, if one is ready and
 * it fits the window with `in_flight` recipients in the sender. */
bool mark_writer_take(struct mark_writer *mw, size_t in_flight,
                      struct mark_writer_batch *out);
void mark_writer_batch_free(struct mark_writer_batch *b);

/* mark_writer_put: queue n outcome marks (SENT/REJECTED) for writing; takes
 * ownership of each recipient_id and error (malloc'd), also on failure.
 * Waits only while the queue is full. Returns SO_OK, or
 * SO_ERR_STALE_FENCE once the lease is lost (the marks are dropped). */
int mark_writer_put(struct mark_writer *mw, struct registry_mark *marks,
                    size_t n) SO_MUST_CHECK;

/* mark_writer_wait: unless a prepared batch fits the window now (with
 * `in_flight` in the sender): if the writer is idle and a pass is due, do
 * it here on `reg` (the caller's own registry handle, or NULL), else wait
 * up to timeout_ms for the writer's next pass. */
void mark_writer_wait(struct mark_writer *mw, size_t in_flight, int timeout_ms,
                      struct registry *reg);

/* mark_writer_hold: prepare no more batches (a drain). */
void mark_writer_hold(struct mark_writer *mw);

/* mark_writer_sync: have every queued outcome written now - on `reg` (the
 * caller's handle, may be NULL) when the writer is idle, else by the
 * writer - and wait until it is committed, the lease is lost, *hurry >= 2
 * (may be NULL) or until_ms (monotonic) passes. Returns SO_OK when
 * nothing is left to write, SO_ERR_STALE_FENCE once the lease is lost,
 * else SO_ERR_UNAVAILABLE. */
int mark_writer_sync(struct mark_writer *mw, int64_t until_ms,
                     const volatile sig_atomic_t *hurry,
                     struct registry *reg) SO_MUST_CHECK;

/* mark_writer_status: a snapshot of the above. */
void mark_writer_status(struct mark_writer *mw, struct mark_writer_status *out);

/* mark_writer_end: unbind the campaign once the writer is between two
 * registry calls (a pass already running finishes; no other starts);
 * outcomes still queued are dropped unwritten (they stay INFLIGHT),
 * prepared batches freed. The status read after it includes what that
 * last pass committed. */
void mark_writer_end(struct mark_writer *mw);

/* mark_writer_end_take: mark_writer_end, but the outcomes still queued
 * are handed to the caller instead of dropped, so that it writes them in
 * its own last step (registry_mark_finish: the outcomes and DONE in one
 * commit). *marks (NULL when none) and each mark's recipient_id and error
 * are the caller's to free. SO_ERR_NOMEM: they were dropped (they stay
 * INFLIGHT). */
int mark_writer_end_take(struct mark_writer *mw, struct registry_mark **marks,
                         size_t *n) SO_MUST_CHECK;

#endif /* SENDONCE_CONSUMER_MARK_WRITER_H */
