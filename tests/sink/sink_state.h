/* sink_state.h - what the test sink has seen, and how it answers.
 *
 * One mutex guards the answering mode, the key set, the counters and the
 * request log, so a /stats answer is a consistent snapshot. Counting:
 *   total              send requests that arrived (POST/PUT, any path but
 *                      the control paths), with or without a key
 *   missing_key        of those, without an Idempotency-Key (answered 400)
 *   unique_keys        distinct keys seen
 *   raw_duplicates     arrivals of a key already seen, whatever the answer
 *   honoured_duplicates  repeats answered as a replay (honour mode)
 *   accepted           2xx answers that were not replays: real sends
 *   accepted_duplicates  accepted answers for a key accepted before: a
 *                      recipient that got the message twice. The oracle.
 *   in_flight          arrived and not yet completed (waiting, hung, sending)
 *   recipient_accepted, recipient_accepted_duplicates  the same oracle per
 *                      recipient of a batch request (--batch-ids): each id
 *                      found in an accepted body counts as
 *                      "<campaign>:<id>", the campaign being the key before
 *                      its ":batch:" (else before its last ':')
 * The log file gets one JSON line per answered send request; it is written
 * through a large buffer and flushed on /stats, every second and at exit.
 */
#ifndef SENDONCE_SINK_STATE_H
#define SENDONCE_SINK_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sink_mode.h"

struct sink_state;

/* One send request, as the server saw it. Strings are NUL-terminated. */
struct sink_request {
  const char *path;      /* URL path */
  const char *key;       /* Idempotency-Key, NULL when missing */
  const char *recipient; /* X-Recipient, else the key after its last ':' */
  uint64_t body_hash;    /* FNV-1a 64 of the body */
  const char *const *batch_ids; /* recipient ids found in a batch body
                                   (--batch-ids), or NULL */
  size_t n_batch_ids;
};

/* How to answer it. */
struct sink_reply {
  int status;            /* HTTP status */
  int64_t retry_after_s; /* Retry-After header when > 0 */
  bool replayed;         /* send Idempotent-Replayed: true */
  char *body;            /* JSON body, owned by the caller (free()) */
};

/* sink_state_new: empty state; log_path may be NULL (no log). NULL with a
 * message in err on failure. */
struct sink_state *sink_state_new(const char *log_path, uint64_t seed,
                                  char *err, size_t errlen);
/* sink_state_free: flush the log and release everything; NULL is a no-op. */
void sink_state_free(struct sink_state *st);

/* sink_state_lock_mode / sink_state_unlock_mode: the mode, for changing
 * it; nothing else of the state may be called in between. */
struct sink_mode *sink_state_lock_mode(struct sink_state *st);
void sink_state_unlock_mode(struct sink_state *st);

/* sink_state_arrival: count a send request whose body has been read. Sets
 * how long to wait before answering: *hang, or *latency_ms (0 = now). */
void sink_state_arrival(struct sink_state *st, const struct sink_request *req,
                        bool *hang, int64_t *latency_ms);

/* sink_state_answer: decide the answer to `req` (503 when shutting_down),
 * count it and log it. out->body is NULL only when out of memory. */
void sink_state_answer(struct sink_state *st, const struct sink_request *req,
                       bool shutting_down, struct sink_reply *out);

/* sink_state_completed: a send request left (answered or dropped). */
void sink_state_completed(struct sink_state *st);

/* sink_state_stats_json: flush the log, then the counters as a JSON text
 * (owned by the caller, free()); NULL when out of memory. */
char *sink_state_stats_json(struct sink_state *st);

/* sink_state_mode_json: the mode as a JSON text (caller frees). */
char *sink_state_mode_json(struct sink_state *st);

/* sink_state_reset: forget every key and counter (not in_flight, not the
 * mode) and truncate the log. */
void sink_state_reset(struct sink_state *st);

/* sink_state_flush: write the buffered log lines out. */
void sink_state_flush(struct sink_state *st);

/* sink_now_mono_ms / sink_now_ms: monotonic and wall clocks, in ms. */
int64_t sink_now_mono_ms(void);
int64_t sink_now_ms(void);

#endif /* SENDONCE_SINK_STATE_H */
