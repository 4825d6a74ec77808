/* registry.h - the deduplication and processing registry: the source of
 * truth for every campaign and every recipient's delivery.
 *
 * Two backends sit behind this one interface: SQLite (embedded default: one
 * host, several processes, WAL) and PostgreSQL (several hosts). Both keep
 * the same schema and pass the same test suite.
 *
 * Guarantees, for every backend:
 *  - Each operation is one atomic step: it happens whole or not at all, and
 *    concurrent callers in any number of processes see it so.
 *  - Lease times are computed on the registry's clock (SQLite: the host's
 *    clock inside the SQL statement; PostgreSQL: the server's clock), never
 *    from a time a caller passes in, so clock skew between workers cannot
 *    break a lease. With PostgreSQL, workers on hosts with skewed clocks
 *    all see the one server clock. SQLite is one host by design: its clock
 *    is read by the SQLite library inside each process, which on one host
 *    is the one kernel clock all processes share; a process whose own
 *    clock is faked or wrong (libfaketime, a container with another time
 *    namespace) is a broken registry clock, and SQLite cannot defend
 *    against it. Use PostgreSQL when workers run on several hosts.
 *  - A fenced op is refused (SO_ERR_STALE_FENCE) when the lease expired,
 *    even if nobody has taken the campaign yet: a lease is live while
 *    registry now < lease_until, and a claim may take it over once
 *    lease_until <= now, so a fenced write and a takeover never overlap.
 *  - A fenced operation (one taking `fence`) succeeds only while the caller
 *    is still the campaign's owner with that fence and the campaign is
 *    PROCESSING with a live lease (release and complete included). Otherwise
 *    it changes nothing and returns SO_ERR_STALE_FENCE: the caller has lost
 *    the campaign and must stop at once.
 *  - A server that cannot be reached gives SO_ERR_UNAVAILABLE, never a
 *    crash; the PostgreSQL backend reconnects on the next call. So does a
 *    registry that cannot answer within busy_timeout_ms because another
 *    process holds the lock the step needs (SQLite's write lock, a
 *    PostgreSQL row lock or statement timeout): to a caller both mean
 *    "the registry cannot decide now, try later" (the consumer defers the
 *    trigger to a retry queue), and the two backends must not differ.
 *  - Each step reads the registry's clock once: its decisions and every
 *    time it writes (lease_until, progress_at, deliveries' updated_at)
 *    are that one instant.
 *
 * Times are int64 milliseconds since the Unix epoch (UTC). A `struct
 * registry` is not thread-safe: use one per thread. Nor may a handle cross
 * fork(): open it in the process that uses it, and do not fork while one
 * is open unless the child only exec()s or _exit()s. (SQLite keeps lock
 * state per process: a child inheriting an open connection to the same
 * file can believe it holds locks it does not, and two processes then
 * claim one campaign. The race test caught exactly that.)
 */
#ifndef SENDONCE_REGISTRY_H
#define SENDONCE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"

struct registry;

enum registry_backend {
  REGISTRY_SQLITE = 0,
  REGISTRY_POSTGRESQL = 1,
};

struct registry_options {
  enum registry_backend backend;
  const char *sqlite_path; /* SQLite: database file */
  const char *pg_conninfo; /* PostgreSQL: libpq conninfo, no password */
  const char *pg_password; /* PostgreSQL: password or NULL; never logged */
  int busy_timeout_ms;     /* how long one step may wait for a lock held
                              elsewhere before SO_ERR_UNAVAILABLE (SQLite
                              busy handler; PG statement_timeout); 0 means
                              the default, 5000 ms */
  int commit_delay_us;     /* SQLite: how long a group commit may wait for
                              other threads' steps before its COMMIT, when
                              they come that often (0: never waits) */
  /* registry_begin_publish and registry_mark_published on this handle
   * return once committed (atomic and visible to every other handle as
   * ever) without waiting for the disk; every other step stays durable.
   * For the publisher daemon, where every campaign due behind a slow flush
   * would wait for it. See registry_begin_publish for why losing such a
   * step in a crash is safe. */
  bool publish_async_commit;
};

enum campaign_state {
  CAMPAIGN_SCHEDULED = 0,  /* registered, not yet due/published */
  CAMPAIGN_PUBLISHED = 1,  /* a trigger is (or should be) in a queue */
  CAMPAIGN_PROCESSING = 2, /* a worker holds (or held) the lease */
  CAMPAIGN_DONE = 3,       /* every recipient SENT or REJECTED */
  CAMPAIGN_DEAD = 4,       /* given up, with last_error as the reason */
};

/* campaign_state_name / campaign_state_parse: "SCHEDULED" ... "DEAD". */
const char *campaign_state_name(enum campaign_state state);
int campaign_state_parse(const char *name,
                         enum campaign_state *out) SO_MUST_CHECK;

enum delivery_state {
  DELIVERY_INFLIGHT = 0, /* handed to the provider, outcome unknown */
  DELIVERY_SENT = 1,     /* provider accepted it (2xx, 409) */
  DELIVERY_REJECTED = 2, /* provider refused it (other 4xx) or bad line */
};

/* A campaign as the registry knows it. Strings are owned by the struct and
 * released by registry_campaign_free(). */
struct registry_campaign {
  char *campaign_id;
  enum campaign_state state;
  int64_t scheduled_at_ms;
  char *channel;
  char *payload;          /* the campaign-due JSON body */
  char *owner;            /* NULL when no lease */
  int64_t fence;          /* last fence handed out; 0 = never claimed */
  int64_t lease_until_ms; /* 0 = no lease */
  int attempts;           /* releases counted towards max_attempts */
  int64_t total;          /* recipients known so far (-1 = unknown) */
  int64_t sent;
  int64_t rejected;
  int republished;           /* watchdog republishes */
  int64_t republished_at_ms; /* 0 = never */
  int64_t progress_at_ms;    /* last delivery mark or claim; 0 = never */
  int64_t updated_at_ms;
  bool paused;
  char *last_error;        /* reason for DEAD or last release; may be NULL */
  int64_t registry_now_ms; /* the registry's clock when this was read: use
                              it (not the local clock) for lease age */
};

void registry_campaign_free(struct registry_campaign *c);

/* registry_options_from_config: fill *opts from the registry section,
 * pointing into *cfg (which must outlive every registry_open() that uses
 * them). */
void registry_options_from_config(struct registry_options *opts,
                                  const struct config_registry *cfg);

/* registry_open: connect (PG) or open (SQLite, creating the file), apply
 * the schema migrations this program knows, and refuse a database whose
 * schema is newer (SO_ERR_SCHEMA). On failure *out is NULL and err says
 * what failed and why. */
int registry_open(const struct registry_options *opt, struct registry **out,
                  char *err, size_t errlen) SO_MUST_CHECK;
void registry_close(struct registry *r);

/* registry_errmsg: detail of the last failure on this handle (static
 * until the next call on it). */
const char *registry_errmsg(const struct registry *r);

/* registry_now: the registry's clock (see the top of this file). */
int registry_now(struct registry *r, int64_t *now_ms) SO_MUST_CHECK;

/* ---- registration and publishing ---------------------------------- */

struct registry_new_campaign {
  const char *campaign_id;
  int64_t scheduled_at_ms;
  const char *channel;
  const char *payload; /* campaign-due JSON */
};

/* registry_register: insert the campaign in `initial` state (SCHEDULED from
 * the publisher, PUBLISHED when first seen as another service's trigger) if
 * it is not there yet. *created says whether this call inserted it; an
 * existing campaign is left untouched. */
int registry_register(struct registry *r, const struct registry_new_campaign *c,
                      enum campaign_state initial, bool *created) SO_MUST_CHECK;

/* registry_begin_publish: take the short publish lease of a SCHEDULED,
 * not paused campaign (no live publish lease held by another owner; lease
 * = now + ttl_ms on the registry's clock). *won = false in any other
 * state; SO_ERR_NOTFOUND if absent. Exactly one of racing publishers and
 * watchdogs wins (*won); the winner publishes with a confirm and then calls
 * registry_mark_published. If it dies in between, the publish lease
 * expires and another publishes again: a trigger may be published twice
 * (the claim sorts that out), never zero times.
 *
 * With publish_async_commit (registry_options), this step and
 * registry_mark_published commit without waiting for the disk: a crash of
 * the machine (SQLite) or of the database server (PostgreSQL) may forget
 * the newest of them, but never keeps a later durable step without them
 * (the registry's log is flushed in order: any durable commit after them,
 * by any process, makes them durable too). Forgotten, the campaign reads
 * SCHEDULED again, with or without the lease, while its trigger may be in
 * a queue: it is published again once the lease (if kept) expires, a
 * duplicate trigger the claim drops; never zero times, as a SCHEDULED
 * campaign past due is published by the publisher or the watchdog. The
 * steps that rely on a campaign's state being durable (the claim before
 * its ack, the watchdog's record_republish) are durable themselves. */
int registry_begin_publish(struct registry *r, const char *campaign_id,
                           const char *owner, int64_t ttl_ms,
                           bool *won) SO_MUST_CHECK;

/* registry_mark_published: SCHEDULED -> PUBLISHED, publish lease cleared,
 * one winner among any number of racing callers (*won; false if the
 * campaign is in any other state). SO_ERR_NOTFOUND if absent. */
int registry_mark_published(struct registry *r, const char *campaign_id,
                            bool *won) SO_MUST_CHECK;

/* registry_list_due: SCHEDULED, not paused, scheduled_at <= registry now +
 * ahead_ms, oldest first, at most `limit`. *out is an owned array of
 * *n campaigns; free with registry_campaigns_free(). */
int registry_list_due(struct registry *r, int64_t ahead_ms, size_t limit,
                      struct registry_campaign **out, size_t *n) SO_MUST_CHECK;
void registry_campaigns_free(struct registry_campaign *list, size_t n);

/* ---- claim and lease ----------------------------------------------- */

enum registry_claim_kind {
  REGISTRY_CLAIM_CLAIMED = 0, /* ours: state PROCESSING, fence+1 */
  REGISTRY_CLAIM_DONE = 1,    /* DONE or DEAD: duplicate trigger */
  REGISTRY_CLAIM_HELD = 2,    /* PROCESSING, live lease, another owner */
  REGISTRY_CLAIM_PAUSED = 3,  /* paused by an operator: resume re-triggers */
};

struct registry_claim {
  enum registry_claim_kind kind;
  int64_t fence;             /* CLAIMED: our fence; else the current one */
  enum campaign_state state; /* the state after the call */
  int64_t lease_until_ms;    /* the lease now recorded (CLAIMED: ours; HELD:
                                the holder's; else 0 or the stale value) */
  int64_t registry_now_ms;   /* the registry's clock at the claim: the lease
                                is live while registry now < lease_until_ms */
};

/* registry_claim: one atomic step. If the campaign is PUBLISHED,
 * SCHEDULED, or PROCESSING with an expired (or cleared) lease, and not
 * paused: state PROCESSING, owner = owner, fence = fence + 1, lease = now +
 * ttl_ms, progress_at = now, publish lease cleared. SO_ERR_NOTFOUND if
 * absent (register first). Otherwise, checked in this order: DONE or DEAD
 * -> DONE; PROCESSING with a live lease (whoever holds it, the caller's
 * own owner id included: a second trigger for a campaign being worked on
 * is a duplicate) -> HELD; paused -> PAUSED. A lease is live while
 * registry now < lease_until. A caller that gets CLAIMED may ack its
 * trigger once this returns: the claim is committed durably. */
int registry_claim(struct registry *r, const char *campaign_id,
                   const char *owner, int64_t ttl_ms,
                   struct registry_claim *out) SO_MUST_CHECK;

/* registry_register_claim: registry_register(c, PUBLISHED) then
 * registry_claim(c->campaign_id, owner, ttl_ms), what a consumer does with
 * every trigger (a campaign first seen from another service's message is
 * registered then). Backends that can run both in one transaction do (one
 * commit instead of two); the answers are those of the two calls. */
int registry_register_claim(struct registry *r,
                            const struct registry_new_campaign *c,
                            const char *owner, int64_t ttl_ms, bool *created,
                            struct registry_claim *out) SO_MUST_CHECK;

/* registry_renew: lease = now + ttl_ms (fenced: the lease must still be
 * live; a lease that expired is lost even if nobody took it yet). */
int registry_renew(struct registry *r, const char *campaign_id, int64_t fence,
                   int64_t ttl_ms) SO_MUST_CHECK;

/* ---- deliveries ------------------------------------------------------ */

/* registry_pending: for each of n recipient ids, needs_send[i] = true
 * unless it is already SENT or REJECTED (INFLIGHT counts as pending: its
 * outcome is unknown and the same Idempotency-Key makes a resend safe).
 * Fenced, so a worker that lost its lease learns it here too. */
int registry_pending(struct registry *r, const char *campaign_id, int64_t fence,
                     const char *const *recipient_ids, size_t n,
                     bool *needs_send) SO_MUST_CHECK;

struct registry_mark {
  const char *recipient_id;
  enum delivery_state state;
  const char *error; /* reason for REJECTED, or NULL */
};

/* registry_mark: write n marks in one transaction (all or nothing),
 * fenced. SENT/REJECTED also bump the campaign's counters (only on a state
 * change, so a repeated mark never counts twice) and progress_at. A mark
 * never moves a recipient out of SENT or REJECTED. */
int registry_mark(struct registry *r, const char *campaign_id, int64_t fence,
                  const struct registry_mark *marks, size_t n) SO_MUST_CHECK;

/* registry_mark_pending: registry_pending of every mark's recipient, then
 * registry_mark of all n marks, as one fenced step (one transaction): what
 * a worker does to prepare a batch. pending[i] gets what registry_pending
 * would have answered for marks[i].recipient_id just before the call
 * (true unless already SENT or REJECTED), so for an INFLIGHT mark it is
 * "send this one": true means the recipient is now INFLIGHT with this
 * call's attempt counted, false that it was final and nothing was
 * written for it. Rows, attempts and counters end exactly as registry_mark
 * leaves them (an INFLIGHT mark on a final recipient is a no-op; a
 * SENT/REJECTED mark counts only when it moves a recipient out of
 * INFLIGHT or absence), and a repeated id gets the same answer at each of
 * its positions. With a stale fence nothing is written and *pending is
 * unspecified. Backends that cannot run it as one step run the two calls
 * in turn (a pending answer may then be a little older than the write;
 * INFLIGHT marks never leave a final state either way). */
int registry_mark_pending(struct registry *r, const char *campaign_id,
                          int64_t fence, const struct registry_mark *marks,
                          size_t n, bool *pending) SO_MUST_CHECK;

/* registry_register_claim_mark: registry_register_claim, and when that
 * answers CLAIMED, registry_mark_pending(marks) under the new fence in the
 * same step (one commit where the backend can): for a worker that knows
 * a small campaign's recipients before the claim, so their INFLIGHT marks
 * cost no commit of their own. The claim's answers (*created, *out) are
 * registry_register_claim's. *marked says whether the marks were written:
 * then pending[i] is registry_mark_pending's answer for marks[i]. It is
 * false for any answer but CLAIMED (nothing is marked), and also when a
 * backend that runs the two in turn could not write the marks after the
 * claim committed: the claim stands (the caller acks its trigger) and the
 * caller marks them itself. */
int registry_register_claim_mark(struct registry *r,
                                 const struct registry_new_campaign *c,
                                 const char *owner, int64_t ttl_ms,
                                 const struct registry_mark *marks, size_t n,
                                 bool *created, struct registry_claim *out,
                                 bool *pending, bool *marked) SO_MUST_CHECK;

/* registry_set_total: record the recipient count once known (fenced). */
int registry_set_total(struct registry *r, const char *campaign_id,
                       int64_t fence, int64_t total) SO_MUST_CHECK;

/* ---- ends of processing ---------------------------------------------- */

/* registry_complete: PROCESSING -> DONE, lease cleared (fenced). */
int registry_complete(struct registry *r, const char *campaign_id,
                      int64_t fence) SO_MUST_CHECK;

/* A campaign's outcome counters. */
struct registry_counts {
  int64_t sent;
  int64_t rejected;
};

/* registry_finish: registry_set_total(total) then registry_complete, in
 * one transaction where the backend can (fenced: a stale fence writes
 * neither). *counts (if not NULL) gets the counters as DONE left them,
 * for the caller's log line and event without another read. */
int registry_finish(struct registry *r, const char *campaign_id, int64_t fence,
                    int64_t total,
                    struct registry_counts *counts) SO_MUST_CHECK;

/* registry_mark_finish: registry_mark(marks) then registry_finish(total)
 * as one fenced step: a campaign's last outcomes and its DONE in one
 * transaction where the backend can (one commit instead of two). A stale
 * fence writes neither; *counts (if not NULL) as registry_finish, the
 * marks of this call counted. Backends that cannot run both as one step
 * run the two calls in turn (the marks may then be committed without the
 * DONE, as when a worker dies between two calls). */
int registry_mark_finish(struct registry *r, const char *campaign_id,
                         int64_t fence, const struct registry_mark *marks,
                         size_t n, int64_t total,
                         struct registry_counts *counts) SO_MUST_CHECK;

/* registry_release: PROCESSING -> PUBLISHED, lease and owner cleared,
 * fence and progress kept (fenced). With count_attempt, attempts + 1;
 * a non-NULL `reason` is recorded as last_error either way; *attempts (if
 * not NULL) gets the new count. The caller then publishes the resume
 * trigger. */
int registry_release(struct registry *r, const char *campaign_id, int64_t fence,
                     bool count_attempt, const char *reason,
                     int *attempts) SO_MUST_CHECK;

/* registry_fail: PROCESSING -> DEAD with reason (fenced). */
int registry_fail(struct registry *r, const char *campaign_id, int64_t fence,
                  const char *reason) SO_MUST_CHECK;

/* registry_mark_dead: any state but DONE -> DEAD with reason, lease and
 * owner cleared (fence kept), unfenced: for a trigger found in the DLQ, an
 * expired not_after before a claim, or an operator's cancel. A campaign
 * already DEAD stays so with its first reason (SO_OK). SO_ERR_CONFLICT if
 * DONE; SO_ERR_NOTFOUND if absent. */
int registry_mark_dead(struct registry *r, const char *campaign_id,
                       const char *reason) SO_MUST_CHECK;

/* ---- operators --------------------------------------------------------- */

/* registry_pause / registry_resume: set or clear the paused flag of a
 * campaign that is not DONE/DEAD. Workers notice it between batches through
 * registry_control. registry_cancel: DEAD with reason "cancelled", lease
 * and owner cleared, fence kept. Each returns SO_ERR_CONFLICT on a DONE or
 * DEAD campaign and SO_ERR_NOTFOUND if absent. */
int registry_pause(struct registry *r, const char *campaign_id) SO_MUST_CHECK;
int registry_resume(struct registry *r, const char *campaign_id) SO_MUST_CHECK;
int registry_cancel(struct registry *r, const char *campaign_id) SO_MUST_CHECK;

enum registry_control {
  REGISTRY_CONTROL_RUN = 0,
  REGISTRY_CONTROL_PAUSE = 1,
  REGISTRY_CONTROL_CANCEL = 2,
};

/* registry_control: what an operator wants of a campaign we hold (fenced:
 * a cancelled campaign is DEAD, so its worker gets CANCEL here rather than
 * SO_ERR_STALE_FENCE when its fence is otherwise current). RUN or PAUSE
 * need state PROCESSING, our fence and a live lease; CANCEL needs state
 * DEAD and our fence; anything else is SO_ERR_STALE_FENCE. */
int registry_control(struct registry *r, const char *campaign_id, int64_t fence,
                     enum registry_control *out) SO_MUST_CHECK;

/* registry_replay: DEAD -> PUBLISHED (attempts, republished and
 * republished_at reset, paused cleared, last_error kept), for an operator
 * who fixed the cause; the caller then publishes a trigger.
 * SO_ERR_CONFLICT unless DEAD; SO_ERR_NOTFOUND if absent. */
int registry_replay(struct registry *r, const char *campaign_id) SO_MUST_CHECK;

/* ---- reading ------------------------------------------------------------ */

/* registry_get: one campaign; SO_ERR_NOTFOUND if absent. Free with
 * registry_campaign_free(). */
int registry_get(struct registry *r, const char *campaign_id,
                 struct registry_campaign *out) SO_MUST_CHECK;

/* registry_list: campaigns, most recently scheduled first, optionally only
 * those in `state` (pass -1 for all), at most `limit`. */
int registry_list(struct registry *r, int state, size_t limit,
                  struct registry_campaign **out, size_t *n) SO_MUST_CHECK;

/* registry_list_overdue: the watchdog's query: campaigns not DONE/DEAD with
 * scheduled_at < registry now - grace_ms, oldest first, at most `limit`;
 * each row carries registry_now_ms for lease and progress ages. */
int registry_list_overdue(struct registry *r, int64_t grace_ms, size_t limit,
                          struct registry_campaign **out,
                          size_t *n) SO_MUST_CHECK;

/* registry_record_republish: the watchdog's atomic "I republish this"
 * record. *won is true only if the campaign is still in `expected_state`
 * with `expected_fence`, republished < max_republishes, and the last
 * republish was at least backoff_ms ago on the registry's clock; then
 * republished + 1 and republished_at = now. Of racing watchdogs exactly
 * one wins. For a PROCESSING campaign it also requires the lease to have
 * expired at least grace_ms ago (lease_until <= now - grace_ms).
 * SO_ERR_NOTFOUND if absent. */
int registry_record_republish(struct registry *r, const char *campaign_id,
                              enum campaign_state expected_state,
                              int64_t expected_fence, int64_t grace_ms,
                              int64_t backoff_ms, int max_republishes,
                              bool *won) SO_MUST_CHECK;

#endif /* SENDONCE_REGISTRY_H */
