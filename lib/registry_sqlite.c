/* registry_sqlite.c - the SQLite registry backend (embedded default: one
 * host, several processes sharing one WAL database file).
 *
 * How the guarantees of registry.h are kept here:
 *  - Every step that reads and then writes runs in BEGIN IMMEDIATE, which
 *    takes the database's single write lock first: two processes can never
 *    both see "lease expired" and both claim. Writes that are one statement
 *    run in the same kind of transaction, so there is one code path.
 *  - Times come from REGISTRY_SQLITE_NOW, evaluated by SQLite, never from
 *    the process's own clock calls; see registry.h on what "the registry's
 *    clock" means for SQLite. A step that decides and then writes reads
 *    that clock once, in its first statement, and binds the value to the
 *    statements that follow (?9): "lease expired" and "new lease from now"
 *    are measured at one instant, and every row it writes carries it.
 *  - A fenced op first checks (state PROCESSING, fence, lease live) inside
 *    its transaction, then writes; the write lock means nothing can change
 *    between the check and the write.
 *  - Every write step is a job of the process's group commit
 *    (registry_sqlite_group.c): the steps of all threads that arrive
 *    together run in one BEGIN IMMEDIATE transaction, each in its own
 *    savepoint, with one COMMIT (one fsync) for all. A step returns only
 *    after that COMMIT, so "returned" still means "committed durably", and
 *    each job reads the clock itself, so each step still has its own
 *    instant. Reads run on the caller's own connection, outside the group.
 *  - Statements, their cache and the row readers: registry_sqlite_db.c;
 *    how a step's delivery marks are written: registry_sqlite_marks.c;
 *    the plain reads (clock, get, lists): registry_sqlite_read.c; the
 *    operators' and the watchdog's steps: registry_sqlite_operator.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "registry_backend.h"
#include "registry_sqlite_db.h"
#include "registry_sqlite_group.h"
#include "registry_sqlite_marks.h"
#include "registry_sqlite_operator.h"
#include "registry_sqlite_read.h"
#include "registry_sqlite_schema.h"

static struct registry_sqlite *to_sqlite(struct registry *r)
{
  return (struct registry_sqlite *)r;
}

/* ---- the fence ---------------------------------------------------------- */

/* fence_info: inside a transaction, what a fenced op needs to know. */
struct fence_info {
  enum campaign_state state;
  int64_t fence;
  bool live;
  bool paused;
  int64_t now; /* the transaction's time, stamped on what it writes */
  struct registry_counts counts; /* sent and rejected as read */
};

static int fence_read(struct registry_sqlite *s, const char *id,
                      struct fence_info *fi)
{
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, ST_FENCE_INFO, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  bool row = false;
  rc = rsdb_step(s, st, &row, "reading the lease");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = rsdb_parse_state(s, st, 0, &fi->state);
  if (!rc) {
    fi->fence = sqlite3_column_int64(st, 1);
    fi->paused = sqlite3_column_int(st, 3) != 0;
    fi->now = sqlite3_column_int64(st, 4);
    /* Compared here, not in SQL: the clock expression costs ~1,000
     * instructions per use, and `now` is read anyway. */
    fi->live = sqlite3_column_int64(st, 2) > fi->now;
    fi->counts.sent = sqlite3_column_int64(st, 5);
    fi->counts.rejected = sqlite3_column_int64(st, 6);
  }
  sqlite3_reset(st);
  return rc;
}

/* fence_check: SO_OK only if the campaign is PROCESSING under `fence` with
 * a live lease; else SO_ERR_STALE_FENCE saying what was found. *now gets
 * the registry time of the check: the writes that follow in the same
 * transaction stamp it (bound as ?9), so everything a fenced op writes
 * carries the instant at which its lease was seen live, as PostgreSQL's
 * now() (transaction start) does. */
static int fence_verify(struct registry_sqlite *s, const char *id,
                        int64_t fence, const struct fence_info *fi)
{
  if (fi->state != CAMPAIGN_PROCESSING || fi->fence != fence || !fi->live)
    return registry_set_error(
        &s->base, SO_ERR_STALE_FENCE,
        "registry: stale fence: campaign=%s fence=%lld current_fence=%lld "
        "state=%s lease_live=%d",
        id, (long long)fence, (long long)fi->fence,
        campaign_state_name(fi->state), fi->live ? 1 : 0);
  return SO_OK;
}

static int fence_check(struct registry_sqlite *s, const char *id, int64_t fence,
                       int64_t *now)
{
  struct fence_info fi;
  int rc = fence_read(s, id, &fi);
  if (rc)
    return rc;
  *now = fi.now;
  return fence_verify(s, id, fence, &fi);
}

/* ---- write steps -------------------------------------------------------- */

/* write_step: run fn(exec, arg) as a job of this process's group commit
 * on the file. The job's statements run on whichever handle leads the
 * group (`exec`, inside its transaction); the step's arguments and results
 * travel in `arg`, which lives on the caller's stack: the caller waits
 * until its job's transaction has committed or failed. */
static int write_step(struct registry_sqlite *s, rsg_job_fn fn, void *arg)
{
  return rsg_run(s->group, s, fn, arg);
}

/* fenced_update: the common shape of renew, set_total, complete and fail:
 * check the fence, then run `which` bound to the campaign id (and the
 * optional int64 / text second parameter). */
struct fenced_step {
  enum stmt_id which;
  const char *id;
  int64_t fence;
  const int64_t *arg_i;
  const char *arg_s;
  const char *what;
};

static int fenced_job(struct registry_sqlite *x, void *arg)
{
  const struct fenced_step *a = arg;
  int64_t now = 0;
  int rc = fence_check(x, a->id, a->fence, &now);
  sqlite3_stmt *st = rc ? NULL : rsdb_stmt(x, a->which, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  sqlite3_bind_int64(st, 9, now);
  if (a->arg_i)
    sqlite3_bind_int64(st, 2, *a->arg_i);
  else if (a->arg_s)
    rsdb_bind_text(st, 2, a->arg_s);
  return rsdb_exec(x, st, NULL, a->what);
}

static int fenced_update(struct registry_sqlite *s, enum stmt_id which,
                         const char *id, int64_t fence, const int64_t *arg_i,
                         const char *arg_s, const char *what)
{
  struct fenced_step a = {which, id, fence, arg_i, arg_s, what};
  return write_step(s, fenced_job, &a);
}

/* ---- the ops ------------------------------------------------------------ */

static void sqlite_close(struct registry *r)
{
  struct registry_sqlite *s = to_sqlite(r);
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(s->stmts[i]);
  sqlite3_close_v2(s->db);
  rsg_release(s->group);
  free(s);
}

struct register_step {
  const struct registry_new_campaign *c;
  enum campaign_state initial;
  int changes;
};

static int register_job(struct registry_sqlite *x, void *arg)
{
  struct register_step *a = arg;
  int rc;
  sqlite3_stmt *st = rsdb_stmt(x, ST_REGISTER, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->c->campaign_id);
  rsdb_bind_text(st, 2, campaign_state_name(a->initial));
  sqlite3_bind_int64(st, 3, a->c->scheduled_at_ms);
  rsdb_bind_text(st, 4, a->c->channel);
  rsdb_bind_text(st, 5, a->c->payload);
  return rsdb_exec(x, st, &a->changes, "registering");
}

static int sqlite_register(struct registry *r,
                           const struct registry_new_campaign *c,
                           enum campaign_state initial, bool *created)
{
  struct register_step a = {c, initial, 0};
  int rc = write_step(to_sqlite(r), register_job, &a);
  if (!rc)
    *created = a.changes == 1;
  return rc;
}

/* won_update: an unfenced single UPDATE whose success is "a row changed";
 * when none did, tell absent (NOTFOUND) from "not in that state" (false). */
struct won_step {
  enum stmt_id which;
  const char *id;
  const char *owner;
  int64_t ttl_ms;
  const char *what;
  int changes;
};

static int won_job(struct registry_sqlite *x, void *arg)
{
  struct won_step *a = arg;
  int rc;
  sqlite3_stmt *st = rsdb_stmt(x, a->which, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  if (a->owner) {
    rsdb_bind_text(st, 2, a->owner);
    sqlite3_bind_int64(st, 3, a->ttl_ms);
  }
  rc = rsdb_exec(x, st, &a->changes, a->what);
  enum campaign_state state;
  if (!rc && a->changes == 0)
    rc = rsdb_state_of(x, a->id, &state);
  return rc;
}

static int won_update(struct registry_sqlite *s, enum stmt_id which,
                      const char *id, const char *owner, int64_t ttl_ms,
                      bool *won, const char *what)
{
  struct won_step a = {which, id, owner, ttl_ms, what, 0};
  int rc = write_step(s, won_job, &a);
  if (!rc)
    *won = a.changes == 1;
  return rc;
}

/* publish_step: begin_publish or mark_published. On a handle with
 * publish_async the step runs in its own BEGIN IMMEDIATE on the handle's
 * own connection, set to synchronous=NORMAL (registry_sqlite_relax): its
 * COMMIT appends to the WAL and returns without an fsync. Not a job of the
 * group: a batch has one COMMIT and one synchronous setting (SQLite
 * refuses to change it inside a transaction), so a relaxed job there
 * would either cost the fsync it is meant to skip or take away the
 * durability of the jobs it shares the COMMIT with. It is as atomic as
 * ever (the same write lock, the same statement) and visible to every
 * connection once it returns; only its durability waits for the next
 * fsync of the WAL (any process's durable commit, or a checkpoint), which
 * covers every frame written before it. */
static int publish_step(struct registry_sqlite *s, enum stmt_id which,
                        const char *id, const char *owner, int64_t ttl_ms,
                        bool *won, const char *what)
{
  if (!s->publish_async)
    return won_update(s, which, id, owner, ttl_ms, won, what);
  struct won_step a = {which, id, owner, ttl_ms, what, 0};
  int rc = rsdb_begin(s, true);
  if (rc)
    return rc;
  rc = rsdb_end(s, won_job(s, &a));
  if (!rc)
    *won = a.changes == 1;
  return rc;
}

static int sqlite_begin_publish(struct registry *r, const char *id,
                                const char *owner, int64_t ttl_ms, bool *won)
{
  return publish_step(to_sqlite(r), ST_BEGIN_PUBLISH, id, owner, ttl_ms, won,
                      "taking the publish lease");
}

static int sqlite_mark_published(struct registry *r, const char *id, bool *won)
{
  return publish_step(to_sqlite(r), ST_MARK_PUBLISHED, id, NULL, 0, won,
                      "marking published");
}

/* claim_read: the row as it stands and the registry's now, and what a
 * claim makes of it: *claimable, or out->kind DONE / HELD / PAUSED. One
 * reading of the clock decides and (in sqlite_claim) sets the lease, so
 * "expired" and "new lease" are measured at the same instant. */
static int claim_read(struct registry_sqlite *s, const char *id,
                      struct registry_claim *out, bool *claimable)
{
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, ST_CLAIM_INFO, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  bool row = false;
  rc = rsdb_step(s, st, &row, "reading the claim");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = rsdb_parse_state(s, st, 0, &out->state);
  if (!rc) {
    out->fence = sqlite3_column_int64(st, 1);
    out->lease_until_ms = sqlite3_column_int64(st, 2);
    bool paused = sqlite3_column_int(st, 3) != 0;
    out->registry_now_ms = sqlite3_column_int64(st, 4);
    *claimable = false;
    if (out->state == CAMPAIGN_DONE || out->state == CAMPAIGN_DEAD)
      out->kind = REGISTRY_CLAIM_DONE;
    else if (out->state == CAMPAIGN_PROCESSING &&
             out->lease_until_ms > out->registry_now_ms)
      out->kind = REGISTRY_CLAIM_HELD;
    else if (paused)
      out->kind = REGISTRY_CLAIM_PAUSED;
    else
      *claimable = true;
  }
  sqlite3_reset(st);
  return rc;
}

struct claim_step {
  const char *id;
  const char *owner;
  int64_t ttl_ms;
  struct registry_claim *out;
};

static int claim_job(struct registry_sqlite *x, void *arg)
{
  const struct claim_step *a = arg;
  struct registry_claim *out = a->out;
  bool claimable = false;
  int rc = claim_read(x, a->id, out, &claimable);
  sqlite3_stmt *st = rc || !claimable ? NULL : rsdb_stmt(x, ST_CLAIM, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  rsdb_bind_text(st, 2, a->owner);
  sqlite3_bind_int64(st, 3, a->ttl_ms);
  sqlite3_bind_int64(st, 9, out->registry_now_ms);
  /* No RETURNING (an ephemeral table per claim: ~20,000 instructions):
   * the write lock has been held since claim_read, so the new fence is the
   * one read plus one, and the lease is the bound time plus the TTL. */
  int changes = 0;
  rc = rsdb_exec(x, st, &changes, "claiming");
  if (!rc && changes != 1)
    rc = registry_set_error(&x->base, SO_ERR_INTERNAL,
                            "registry: claim of '%s' updated no row", a->id);
  if (!rc) {
    out->kind = REGISTRY_CLAIM_CLAIMED;
    out->state = CAMPAIGN_PROCESSING;
    out->fence += 1;
    out->lease_until_ms = out->registry_now_ms + a->ttl_ms;
  }
  return rc;
}

static int sqlite_claim(struct registry *r, const char *id, const char *owner,
                        int64_t ttl_ms, struct registry_claim *out)
{
  struct claim_step a = {id, owner, ttl_ms, out};
  return write_step(to_sqlite(r), claim_job, &a);
}

/* register_claim: both steps in one job, so one commit carries them. */
struct register_claim_step {
  struct register_step reg;
  struct claim_step claim;
};

/* A new campaign (the usual case: a trigger seen first by its consumer)
 * is inserted already claimed, in one statement stamped with one reading
 * of the clock; only when the row exists does the claim read and update
 * it. Measured: ~20,000 instructions less per new campaign than insert,
 * claim read and claim UPDATE (which also moved the row's entry in the
 * state index). */
static int register_claim_job(struct registry_sqlite *x, void *arg)
{
  struct register_claim_step *a = arg;
  const struct registry_new_campaign *c = a->reg.c;
  int rc;
  sqlite3_stmt *st = rsdb_stmt(x, ST_NOW, &rc);
  if (!st)
    return rc;
  bool row = false;
  rc = rsdb_step(x, st, &row, "reading the clock");
  int64_t now = row ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  st = rc ? NULL : rsdb_stmt(x, ST_REGISTER_CLAIMED, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, c->campaign_id);
  rsdb_bind_text(st, 2, a->claim.owner);
  sqlite3_bind_int64(st, 3, c->scheduled_at_ms);
  rsdb_bind_text(st, 4, c->channel);
  rsdb_bind_text(st, 5, c->payload);
  sqlite3_bind_int64(st, 6, a->claim.ttl_ms);
  sqlite3_bind_int64(st, 9, now);
  rc = rsdb_exec(x, st, &a->reg.changes, "registering claimed");
  if (rc || a->reg.changes != 1)
    return rc ? rc : claim_job(x, &a->claim);
  *a->claim.out = (struct registry_claim){
      .kind = REGISTRY_CLAIM_CLAIMED,
      .state = CAMPAIGN_PROCESSING,
      .fence = 1,
      .lease_until_ms = now + a->claim.ttl_ms,
      .registry_now_ms = now,
  };
  return SO_OK;
}

static int sqlite_register_claim(struct registry *r,
                                 const struct registry_new_campaign *c,
                                 const char *owner, int64_t ttl_ms,
                                 bool *created, struct registry_claim *out)
{
  struct register_claim_step a = {{c, CAMPAIGN_PUBLISHED, 0},
                                  {c->campaign_id, owner, ttl_ms, out}};
  int rc = write_step(to_sqlite(r), register_claim_job, &a);
  if (!rc)
    *created = a.reg.changes == 1;
  return rc;
}

static int sqlite_renew(struct registry *r, const char *id, int64_t fence,
                        int64_t ttl_ms)
{
  return fenced_update(to_sqlite(r), ST_RENEW, id, fence, &ttl_ms, NULL,
                       "renewing");
}

static int sqlite_pending(struct registry *r, const char *id, int64_t fence,
                          const char *const *recipient_ids, size_t n,
                          bool *needs_send)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc = rsdb_begin(s, false);
  if (rc)
    return rc;
  int64_t now = 0;
  rc = fence_check(s, id, fence, &now);
  sqlite3_stmt *st = rc ? NULL : rsdb_stmt(s, ST_DELIVERY_STATE, &rc);
  for (size_t i = 0; st && !rc && i < n; i++) {
    sqlite3_reset(st);
    rsdb_bind_text(st, 1, id);
    rsdb_bind_text(st, 2, recipient_ids[i]);
    bool row = false;
    rc = rsdb_step(s, st, &row, "reading deliveries");
    if (!rc) {
      const char *state = row ? (const char *)sqlite3_column_text(st, 0) : "";
      needs_send[i] = !state || (strcmp(state, "SENT") != 0 &&
                                 strcmp(state, "REJECTED") != 0);
    }
  }
  if (st)
    sqlite3_reset(st);
  return rsdb_end(s, rc);
}

struct mark_step {
  const char *id;
  int64_t fence;
  const struct registry_mark *marks;
  size_t n;
  bool *changed; /* NULL, or per mark: whether it wrote (rsmk_write) */
};

/* marks_write: the step's marks and the counters they move, stamped
 * `now`, inside a transaction that has checked the fence. */
static int marks_write(struct registry_sqlite *x, const struct mark_step *a,
                       int64_t now, int64_t *sent, int64_t *rejected)
{
  int rc =
      rsmk_write(x, a->id, now, a->marks, a->n, a->changed, sent, rejected);
  if (rc || *sent + *rejected == 0)
    return rc;
  sqlite3_stmt *st = rsdb_stmt(x, ST_BUMP, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  sqlite3_bind_int64(st, 2, *sent);
  sqlite3_bind_int64(st, 3, *rejected);
  sqlite3_bind_int64(st, 9, now);
  return rsdb_exec(x, st, NULL, "counting marks");
}

static int mark_job(struct registry_sqlite *x, void *arg)
{
  const struct mark_step *a = arg;
  int64_t now = 0;
  int64_t sent = 0, rejected = 0;
  int rc = fence_check(x, a->id, a->fence, &now);
  return rc ? rc : marks_write(x, a, now, &sent, &rejected);
}

static int sqlite_mark(struct registry *r, const char *id, int64_t fence,
                       const struct registry_mark *marks, size_t n)
{
  struct mark_step a = {id, fence, marks, n, NULL};
  return write_step(to_sqlite(r), mark_job, &a);
}

/* answer_slots: the table rsmk_same_answers needs for n marks (none for
 * one mark), allocated before the write: out of memory must not come
 * after it. */
static int answer_slots(size_t n, size_t **slot, size_t *cap)
{
  *cap = 16;
  while (*cap < 2 * n)
    *cap *= 2;
  *slot = n > 1 ? calloc(*cap, sizeof(**slot)) : NULL;
  return n > 1 && !*slot ? SO_ERR_NOMEM : SO_OK;
}

/* mark_pending: the marks written as mark_job writes them, each telling
 * whether it wrote its row: no read more than registry_mark, and nothing
 * more under the write lock. The first mark of an id writes its row iff
 * the recipient was pending before the call (a final row is never
 * written); a later one of the same id may find it made final by this
 * call, so every mark of an id takes the answer of its first. */
static int sqlite_mark_pending(struct registry *r, const char *id,
                               int64_t fence, const struct registry_mark *marks,
                               size_t n, bool *pending)
{
  size_t cap;
  size_t *slot = NULL;
  if (answer_slots(n, &slot, &cap) != SO_OK)
    return registry_set_error(r, SO_ERR_NOMEM, "registry: out of memory");
  struct mark_step a = {id, fence, marks, n, pending};
  int rc = write_step(to_sqlite(r), mark_job, &a);
  if (rc == SO_OK && slot)
    rsmk_same_answers(marks, n, slot, cap, pending);
  free(slot);
  return rc;
}

static int sqlite_set_total(struct registry *r, const char *id, int64_t fence,
                            int64_t total)
{
  return fenced_update(to_sqlite(r), ST_SET_TOTAL, id, fence, &total, NULL,
                       "setting the total");
}

static int sqlite_complete(struct registry *r, const char *id, int64_t fence)
{
  return fenced_update(to_sqlite(r), ST_COMPLETE, id, fence, NULL, NULL,
                       "completing");
}

/* mark_finish: the marks, set_total and complete in one job: one fence
 * read (which also reads the counters; the write lock is held from the
 * read to the commit), the marks, and one UPDATE, ST_COMPLETE with the
 * total bound, all stamped with the read's instant: the last outcomes and
 * DONE share one commit. The counters DONE leaves are the fence read's
 * plus what the marks moved. finish is the same job without marks. */
struct mark_finish_step {
  struct mark_step mark;
  int64_t total;
  struct registry_counts *counts;
};

static int mark_finish_job(struct registry_sqlite *x, void *arg)
{
  struct mark_finish_step *a = arg;
  struct fence_info fi;
  int64_t sent = 0, rejected = 0;
  int rc = fence_read(x, a->mark.id, &fi);
  if (!rc)
    rc = fence_verify(x, a->mark.id, a->mark.fence, &fi);
  if (!rc)
    rc = marks_write(x, &a->mark, fi.now, &sent, &rejected);
  sqlite3_stmt *st = rc ? NULL : rsdb_stmt(x, ST_COMPLETE, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->mark.id);
  sqlite3_bind_int64(st, 2, a->total);
  sqlite3_bind_int64(st, 9, fi.now);
  rc = rsdb_exec(x, st, NULL, "completing");
  if (!rc) {
    a->counts->sent = fi.counts.sent + sent;
    a->counts->rejected = fi.counts.rejected + rejected;
  }
  return rc;
}

static int sqlite_mark_finish(struct registry *r, const char *id, int64_t fence,
                              const struct registry_mark *marks, size_t n,
                              int64_t total, struct registry_counts *counts)
{
  struct mark_finish_step a = {{id, fence, marks, n, NULL}, total, counts};
  return write_step(to_sqlite(r), mark_finish_job, &a);
}

static int sqlite_finish(struct registry *r, const char *id, int64_t fence,
                         int64_t total, struct registry_counts *counts)
{
  return sqlite_mark_finish(r, id, fence, NULL, 0, total, counts);
}

/* register_claim_mark: register, claim and, when claimed, the marks
 * under the new fence, in one job: one commit, and a failure of the marks
 * undoes the claim too (the caller then defers its trigger). */
struct register_claim_mark_step {
  struct register_claim_step rc;
  struct mark_step mark;
};

static int register_claim_mark_job(struct registry_sqlite *x, void *arg)
{
  struct register_claim_mark_step *a = arg;
  int64_t sent = 0, rejected = 0;
  int rc = register_claim_job(x, &a->rc);
  if (rc || a->rc.claim.out->kind != REGISTRY_CLAIM_CLAIMED)
    return rc;
  /* Our claim, just made under the write lock: the marks need no fence
   * check, and carry the claim's instant. */
  return marks_write(x, &a->mark, a->rc.claim.out->registry_now_ms, &sent,
                     &rejected);
}

static int sqlite_register_claim_mark(struct registry *r,
                                      const struct registry_new_campaign *c,
                                      const char *owner, int64_t ttl_ms,
                                      const struct registry_mark *marks,
                                      size_t n, bool *created,
                                      struct registry_claim *out, bool *pending,
                                      bool *marked)
{
  size_t cap;
  size_t *slot = NULL;
  if (answer_slots(n, &slot, &cap) != SO_OK)
    return registry_set_error(r, SO_ERR_NOMEM, "registry: out of memory");
  struct register_claim_mark_step a = {
      {{c, CAMPAIGN_PUBLISHED, 0}, {c->campaign_id, owner, ttl_ms, out}},
      {c->campaign_id, 0, marks, n, pending},
  };
  int rc = write_step(to_sqlite(r), register_claim_mark_job, &a);
  if (!rc) {
    *created = a.rc.reg.changes == 1;
    *marked = out->kind == REGISTRY_CLAIM_CLAIMED;
    /* A repeated id answers as its first mark did (see mark_pending). */
    if (*marked && slot)
      rsmk_same_answers(marks, n, slot, cap, pending);
  }
  free(slot);
  return rc;
}

struct release_step {
  const char *id;
  int64_t fence;
  bool count_attempt;
  const char *reason;
  int *attempts;
};

static int release_job(struct registry_sqlite *x, void *arg)
{
  const struct release_step *a = arg;
  int64_t now = 0;
  int rc = fence_check(x, a->id, a->fence, &now);
  sqlite3_stmt *st = rc ? NULL : rsdb_stmt(x, ST_RELEASE, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  sqlite3_bind_int(st, 2, a->count_attempt ? 1 : 0);
  sqlite3_bind_int64(st, 9, now);
  rsdb_bind_text(st, 3, a->reason);
  bool row = false;
  rc = rsdb_step(x, st, &row, "releasing");
  if (!rc && row && a->attempts)
    *a->attempts = sqlite3_column_int(st, 0);
  if (!rc)
    rc = rsdb_exec(x, st, NULL, "releasing");
  return rc;
}

static int sqlite_release(struct registry *r, const char *id, int64_t fence,
                          bool count_attempt, const char *reason, int *attempts)
{
  struct release_step a = {id, fence, count_attempt, reason, attempts};
  return write_step(to_sqlite(r), release_job, &a);
}

static int sqlite_fail(struct registry *r, const char *id, int64_t fence,
                       const char *reason)
{
  return fenced_update(to_sqlite(r), ST_FAIL, id, fence, NULL, reason,
                       "failing");
}

static int sqlite_control(struct registry *r, const char *id, int64_t fence,
                          enum registry_control *out)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc = rsdb_begin(s, false);
  if (rc)
    return rc;
  struct fence_info fi;
  rc = fence_read(s, id, &fi);
  if (!rc && fi.fence == fence && fi.state == CAMPAIGN_DEAD)
    *out = REGISTRY_CONTROL_CANCEL;
  else if (!rc)
    rc = fence_verify(s, id, fence, &fi);
  if (!rc && fi.state == CAMPAIGN_PROCESSING)
    *out = fi.paused ? REGISTRY_CONTROL_PAUSE : REGISTRY_CONTROL_RUN;
  return rsdb_end(s, rc);
}

static const struct registry_ops sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .now = rsrd_now,
    .register_campaign = sqlite_register,
    .begin_publish = sqlite_begin_publish,
    .mark_published = sqlite_mark_published,
    .list_due = rsrd_list_due,
    .claim = sqlite_claim,
    .renew = sqlite_renew,
    .pending = sqlite_pending,
    .mark = sqlite_mark,
    .set_total = sqlite_set_total,
    .complete = sqlite_complete,
    .register_claim = sqlite_register_claim,
    .register_claim_mark = sqlite_register_claim_mark,
    .finish = sqlite_finish,
    .mark_pending = sqlite_mark_pending,
    .mark_finish = sqlite_mark_finish,
    .release = sqlite_release,
    .fail = sqlite_fail,
    .mark_dead = rsop_mark_dead,
    .pause = rsop_pause,
    .resume = rsop_resume,
    .cancel = rsop_cancel,
    .control = sqlite_control,
    .replay = rsop_replay,
    .get = rsrd_get,
    .list = rsrd_list,
    .list_overdue = rsrd_list_overdue,
    .record_republish = rsop_record_republish,
};

int registry_sqlite_open(const struct registry_options *opt,
                         struct registry **out, char *err, size_t errlen)
{
  *out = NULL;
  struct registry_sqlite *s = calloc(1, sizeof(*s));
  if (!s) {
    snprintf(err, errlen, "registry sqlite: out of memory");
    return SO_ERR_NOMEM;
  }
  int rc = registry_sqlite_setup(opt->sqlite_path, opt->busy_timeout_ms,
                                 &s->busy, &s->db, err, errlen);
  if (!rc && opt->publish_async_commit)
    rc = registry_sqlite_relax(s->db, err, errlen);
  if (rc) {
    sqlite3_close_v2(s->db);
    free(s);
    return rc;
  }
  s->publish_async = opt->publish_async_commit;
  rc = rsg_acquire(opt->sqlite_path, &s->group, err, errlen);
  if (rc) {
    sqlite3_close_v2(s->db);
    free(s);
    return rc;
  }
  s->commit_delay_ns = (int64_t)opt->commit_delay_us * 1000;
  s->base.ops = &sqlite_ops;
  *out = &s->base;
  return SO_OK;
}
