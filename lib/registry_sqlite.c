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
 *  - Statements, their cache and the row readers: registry_sqlite_db.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "registry_backend.h"
#include "registry_sqlite_db.h"
#include "registry_sqlite_group.h"
#include "registry_sqlite_operator.h"
#include "registry_sqlite_schema.h"

static const char *const delivery_state_names[] = {"INFLIGHT", "SENT",
                                                   "REJECTED"};

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
    fi->live = sqlite3_column_int(st, 2) != 0;
    fi->paused = sqlite3_column_int(st, 3) != 0;
    fi->now = sqlite3_column_int64(st, 4);
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
static int fence_check(struct registry_sqlite *s, const char *id, int64_t fence,
                       int64_t *now)
{
  struct fence_info fi;
  int rc = fence_read(s, id, &fi);
  if (rc)
    return rc;
  *now = fi.now;
  if (fi.state != CAMPAIGN_PROCESSING || fi.fence != fence || !fi.live)
    return registry_set_error(
        &s->base, SO_ERR_STALE_FENCE,
        "registry: stale fence: campaign=%s fence=%lld current_fence=%lld "
        "state=%s lease_live=%d",
        id, (long long)fence, (long long)fi.fence,
        campaign_state_name(fi.state), fi.live ? 1 : 0);
  return SO_OK;
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

static int sqlite_now(struct registry *r, int64_t *now_ms)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, ST_NOW, &rc);
  if (!st)
    return rc;
  bool row = false;
  rc = rsdb_step(s, st, &row, "reading the clock");
  if (!rc && row)
    *now_ms = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return rc;
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

static int sqlite_begin_publish(struct registry *r, const char *id,
                                const char *owner, int64_t ttl_ms, bool *won)
{
  return won_update(to_sqlite(r), ST_BEGIN_PUBLISH, id, owner, ttl_ms, won,
                    "taking the publish lease");
}

static int sqlite_mark_published(struct registry *r, const char *id, bool *won)
{
  return won_update(to_sqlite(r), ST_MARK_PUBLISHED, id, NULL, 0, won,
                    "marking published");
}

/* list_by_ms: the campaign lists whose statement takes a duration in ms
 * (?1: how far ahead, or the grace) and a row limit (?2). */
static int list_by_ms(struct registry *r, enum stmt_id which, int64_t ms,
                      size_t limit, struct registry_campaign **out, size_t *n)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, which, &rc);
  if (!st)
    return rc;
  sqlite3_bind_int64(st, 1, ms);
  sqlite3_bind_int64(st, 2, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  return rsdb_read_list(s, st, out, n);
}

static int sqlite_list_due(struct registry *r, int64_t ahead_ms, size_t limit,
                           struct registry_campaign **out, size_t *n)
{
  return list_by_ms(r, ST_LIST_DUE, ahead_ms, limit, out, n);
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

static int register_claim_job(struct registry_sqlite *x, void *arg)
{
  struct register_claim_step *a = arg;
  int rc = register_job(x, &a->reg);
  return rc ? rc : claim_job(x, &a->claim);
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

/* mark_one: one mark; *changed (if not NULL) says whether it wrote the
 * row, that is whether the recipient was pending (absent or INFLIGHT). */
static int mark_one(struct registry_sqlite *s, const char *id, int64_t now,
                    const struct registry_mark *m, int64_t *sent,
                    int64_t *rejected, bool *changed)
{
  int rc;
  bool final = m->state != DELIVERY_INFLIGHT;
  sqlite3_stmt *st =
      rsdb_stmt(s, final ? ST_MARK_FINAL : ST_MARK_INFLIGHT, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  rsdb_bind_text(st, 2, m->recipient_id);
  sqlite3_bind_int64(st, 9, now);
  if (final) {
    rsdb_bind_text(st, 3, delivery_state_names[m->state]);
    rsdb_bind_text(st, 4, m->error);
  }
  int changes = 0;
  rc = rsdb_exec(s, st, &changes, "marking a delivery");
  if (changed)
    *changed = changes == 1;
  /* Counted only when this statement moved the row into SENT/REJECTED:
   * a repeated mark changes nothing and counts nothing. */
  if (!rc && final && changes == 1) {
    if (m->state == DELIVERY_SENT)
      (*sent)++;
    else
      (*rejected)++;
  }
  return rc;
}

struct mark_step {
  const char *id;
  int64_t fence;
  const struct registry_mark *marks;
  size_t n;
  bool *changed; /* NULL, or per mark: mark_one's *changed */
};

static int mark_job(struct registry_sqlite *x, void *arg)
{
  const struct mark_step *a = arg;
  int64_t now = 0;
  int rc = fence_check(x, a->id, a->fence, &now);
  int64_t sent = 0, rejected = 0;
  for (size_t i = 0; !rc && i < a->n; i++)
    rc = mark_one(x, a->id, now, &a->marks[i], &sent, &rejected,
                  a->changed ? &a->changed[i] : NULL);
  if (rc || sent + rejected == 0)
    return rc;
  sqlite3_stmt *st = rsdb_stmt(x, ST_BUMP, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  sqlite3_bind_int64(st, 2, sent);
  sqlite3_bind_int64(st, 3, rejected);
  sqlite3_bind_int64(st, 9, now);
  return rsdb_exec(x, st, NULL, "counting marks");
}

static int sqlite_mark(struct registry *r, const char *id, int64_t fence,
                       const struct registry_mark *marks, size_t n)
{
  struct mark_step a = {id, fence, marks, n, NULL};
  return write_step(to_sqlite(r), mark_job, &a);
}

/* mark_pending: the marks written as mark_job writes them, each telling
 * whether it wrote its row: no read more than registry_mark, and nothing
 * more under the write lock. The first mark of an id writes its row iff
 * the recipient was pending before the call (a final row is never
 * written); a later one of the same id may find it made final by this
 * call, so every mark of an id takes the answer of its first. */
struct mark_pos {
  const char *id;
  size_t i;
};

static int by_id_then_position(const void *pa, const void *pb)
{
  const struct mark_pos *a = pa, *b = pb;
  int c = strcmp(a->id, b->id);
  return c ? c : (a->i > b->i) - (a->i < b->i);
}

static int sqlite_mark_pending(struct registry *r, const char *id,
                               int64_t fence, const struct registry_mark *marks,
                               size_t n, bool *pending)
{
  struct mark_pos *order = malloc((n ? n : 1) * sizeof(*order));
  if (!order)
    return registry_set_error(r, SO_ERR_NOMEM, "registry: out of memory");
  struct mark_step a = {id, fence, marks, n, pending};
  int rc = write_step(to_sqlite(r), mark_job, &a);
  if (rc == SO_OK && n > 1) {
    for (size_t i = 0; i < n; i++)
      order[i] = (struct mark_pos){marks[i].recipient_id, i};
    qsort(order, n, sizeof(*order), by_id_then_position);
    for (size_t i = 1; i < n; i++) {
      if (strcmp(order[i].id, order[i - 1].id) == 0)
        pending[order[i].i] = pending[order[i - 1].i];
    }
  }
  free(order);
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

/* finish: set_total then complete in one job (each checks the fence; the
 * second check is in the same transaction, so it cannot fail where the
 * first passed, and costs one index lookup). */
struct finish_step {
  struct fenced_step steps[2];
  struct registry_counts *counts;
};

static int finish_job(struct registry_sqlite *x, void *arg)
{
  struct finish_step *a = arg;
  int rc = fenced_job(x, &a->steps[0]);
  if (!rc)
    rc = fenced_job(x, &a->steps[1]);
  sqlite3_stmt *st = rc ? NULL : rsdb_stmt(x, ST_COUNTS, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->steps[0].id);
  bool row = false;
  rc = rsdb_step(x, st, &row, "reading the counters");
  if (!rc && row) {
    a->counts->sent = sqlite3_column_int64(st, 0);
    a->counts->rejected = sqlite3_column_int64(st, 1);
  }
  sqlite3_reset(st);
  return rc;
}

static int sqlite_finish(struct registry *r, const char *id, int64_t fence,
                         int64_t total, struct registry_counts *counts)
{
  struct finish_step a = {
      {{ST_SET_TOTAL, id, fence, &total, NULL, "setting the total"},
       {ST_COMPLETE, id, fence, NULL, NULL, "completing"}},
      counts,
  };
  return write_step(to_sqlite(r), finish_job, &a);
}

/* marks_at: what mark_job writes after its fence check, stamped `now`:
 * for the merged steps below, whose transaction has settled the fence
 * already (each fence read costs ~10,000 instructions). */
static int marks_at(struct registry_sqlite *x, const struct mark_step *a,
                    int64_t now)
{
  int rc = SO_OK;
  int64_t sent = 0, rejected = 0;
  for (size_t i = 0; !rc && i < a->n; i++)
    rc = mark_one(x, a->id, now, &a->marks[i], &sent, &rejected,
                  a->changed ? &a->changed[i] : NULL);
  if (rc || sent + rejected == 0)
    return rc;
  sqlite3_stmt *st = rsdb_stmt(x, ST_BUMP, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  sqlite3_bind_int64(st, 2, sent);
  sqlite3_bind_int64(st, 3, rejected);
  sqlite3_bind_int64(st, 9, now);
  return rsdb_exec(x, st, NULL, "counting marks");
}

/* update_at: a fenced_job statement without its fence check, stamped
 * `now` (the caller's transaction checked the fence). */
static int update_at(struct registry_sqlite *x, const struct fenced_step *a,
                     int64_t now)
{
  int rc;
  sqlite3_stmt *st = rsdb_stmt(x, a->which, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  sqlite3_bind_int64(st, 9, now);
  if (a->arg_i)
    sqlite3_bind_int64(st, 2, *a->arg_i);
  return rsdb_exec(x, st, NULL, a->what);
}

/* mark_finish: one fence check, then what mark_job and finish_job write,
 * all stamped with the check's instant: the last outcomes and DONE share
 * one commit. */
struct mark_finish_step {
  struct mark_step mark;
  struct finish_step finish;
};

static int mark_finish_job(struct registry_sqlite *x, void *arg)
{
  struct mark_finish_step *a = arg;
  int64_t now = 0;
  int rc = fence_check(x, a->mark.id, a->mark.fence, &now);
  if (!rc)
    rc = marks_at(x, &a->mark, now);
  for (int i = 0; !rc && i < 2; i++)
    rc = update_at(x, &a->finish.steps[i], now);
  sqlite3_stmt *st = rc ? NULL : rsdb_stmt(x, ST_COUNTS, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->mark.id);
  bool row = false;
  rc = rsdb_step(x, st, &row, "reading the counters");
  if (!rc && row) {
    a->finish.counts->sent = sqlite3_column_int64(st, 0);
    a->finish.counts->rejected = sqlite3_column_int64(st, 1);
  }
  sqlite3_reset(st);
  return rc;
}

static int sqlite_mark_finish(struct registry *r, const char *id, int64_t fence,
                              const struct registry_mark *marks, size_t n,
                              int64_t total, struct registry_counts *counts)
{
  struct mark_finish_step a = {
      {id, fence, marks, n, NULL},
      {{{ST_SET_TOTAL, id, fence, &total, NULL, "setting the total"},
        {ST_COMPLETE, id, fence, NULL, NULL, "completing"}},
       counts},
  };
  return write_step(to_sqlite(r), mark_finish_job, &a);
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
  int rc = register_claim_job(x, &a->rc);
  if (rc || a->rc.claim.out->kind != REGISTRY_CLAIM_CLAIMED)
    return rc;
  /* Our claim, just made under the write lock: the marks need no fence
   * check, and carry the claim's instant. */
  return marks_at(x, &a->mark, a->rc.claim.out->registry_now_ms);
}

static int sqlite_register_claim_mark(struct registry *r,
                                      const struct registry_new_campaign *c,
                                      const char *owner, int64_t ttl_ms,
                                      const struct registry_mark *marks,
                                      size_t n, bool *created,
                                      struct registry_claim *out, bool *pending,
                                      bool *marked)
{
  struct register_claim_mark_step a = {
      {{c, CAMPAIGN_PUBLISHED, 0}, {c->campaign_id, owner, ttl_ms, out}},
      {c->campaign_id, 0, marks, n, pending},
  };
  int rc = write_step(to_sqlite(r), register_claim_mark_job, &a);
  if (rc)
    return rc;
  *created = a.rc.reg.changes == 1;
  *marked = out->kind == REGISTRY_CLAIM_CLAIMED;
  if (!*marked || n < 2)
    return SO_OK;
  /* A repeated id answers as its first mark did (see mark_pending). */
  struct mark_pos *order = malloc(n * sizeof(*order));
  if (!order) {
    /* The step committed: only the answers of repeated ids are unsure. */
    *marked = false;
    return SO_OK;
  }
  for (size_t i = 0; i < n; i++)
    order[i] = (struct mark_pos){marks[i].recipient_id, i};
  qsort(order, n, sizeof(*order), by_id_then_position);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(order[i].id, order[i - 1].id) == 0)
      pending[order[i].i] = pending[order[i - 1].i];
  }
  free(order);
  return SO_OK;
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
    rc = fence_check(s, id, fence, &fi.now);
  if (!rc && fi.state == CAMPAIGN_PROCESSING)
    *out = fi.paused ? REGISTRY_CONTROL_PAUSE : REGISTRY_CONTROL_RUN;
  return rsdb_end(s, rc);
}

static int sqlite_get(struct registry *r, const char *id,
                      struct registry_campaign *out)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, ST_GET, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  bool row = false;
  rc = rsdb_step(s, st, &row, "reading a campaign");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = rsdb_read_campaign(s, st, out);
  sqlite3_reset(st);
  return rc;
}

static int sqlite_list(struct registry *r, int state, size_t limit,
                       struct registry_campaign **out, size_t *n)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, state < 0 ? ST_LIST_ALL : ST_LIST_STATE, &rc);
  if (!st)
    return rc;
  sqlite3_bind_int64(st, 1, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  if (state >= 0)
    rsdb_bind_text(st, 2, campaign_state_name((enum campaign_state)state));
  return rsdb_read_list(s, st, out, n);
}

static int sqlite_list_overdue(struct registry *r, int64_t grace_ms,
                               size_t limit, struct registry_campaign **out,
                               size_t *n)
{
  return list_by_ms(r, ST_LIST_OVERDUE, grace_ms, limit, out, n);
}

static const struct registry_ops sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .now = sqlite_now,
    .register_campaign = sqlite_register,
    .begin_publish = sqlite_begin_publish,
    .mark_published = sqlite_mark_published,
    .list_due = sqlite_list_due,
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
    .get = sqlite_get,
    .list = sqlite_list,
    .list_overdue = sqlite_list_overdue,
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
  if (rc) {
    free(s);
    return rc;
  }
  rc = rsg_acquire(opt->sqlite_path, &s->group, err, errlen);
  if (rc) {
    sqlite3_close_v2(s->db);
    free(s);
    return rc;
  }
  s->base.ops = &sqlite_ops;
  *out = &s->base;
  return SO_OK;
}
