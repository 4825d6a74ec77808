/* registry_pg_mark_ops.c - the PostgreSQL backend's ops that write
 * delivery marks: mark and mark_pending (one statement, S_MARK or
 * S_MARK_PENDING, built by registry_pg_marks.c), and the two merged steps
 * that take the marks with a finish (mark_finish) or with a first claim
 * (register_claim_mark) in one statement where they can: one round trip
 * and one WAL flush (a transaction of BEGIN, two statements and COMMIT
 * took four round trips). The other ops and the helpers these share are
 * registry_pg.c's (registry_pg_internal.h).
 */
#include "registry_pg_mark_ops.h"

#include <string.h>

#include "registry_pg_internal.h"
#include "registry_pg_marks.h"

/* marks_params: the parameters of S_MARK / S_MARK_PENDING for marks
 * built into pm ($1 id, $2 fence, the arrays, then whether to look the
 * first INFLIGHT marks' rows up). */
#define MARKS_NPARAMS (3 + PG_MARKS_NPARAMS)
static void marks_params(const char *p[MARKS_NPARAMS], const char *id,
                         const char *fence, const struct pg_marks *pm,
                         bool lookup)
{
  p[0] = id;
  p[1] = fence;
  for (size_t i = 0; i < PG_MARKS_NPARAMS; i++)
    p[2 + i] = pm->params[i].data;
  p[2 + PG_MARKS_NPARAMS] = lookup ? "true" : "false";
}

/* Positions in pg_marks.params of the groups' arrays that the merged
 * steps' lean statements take ($3, $4, $8 and $11 of MARK_WITH). */
enum {
  PM_SENT = 0,     /* ids whose first mark is SENT */
  PM_INFLIGHT = 1, /* ids marked INFLIGHT once, nothing final */
  PM_TRIES_ID = 5, /* the rest: ids ... */
  PM_TRIES = 8,    /* ... and their INFLIGHT marks */
};

/* only_group: whether every array of pm but params[keep] is empty. */
static bool only_group(const struct pg_marks *pm, size_t keep)
{
  for (size_t i = 0; i < PG_MARKS_NPARAMS; i++) {
    if (i != keep && strcmp(pm->params[i].data, "{}") != 0)
      return false;
  }
  return true;
}

/* marks_build: pg_marks_build, its failure told on the handle. */
static int marks_build(struct registry *base, struct pg_marks *pm,
                       const struct registry_mark *marks, size_t n)
{
  int rc = pg_marks_build(pm, marks, n);
  if (rc)
    return registry_set_error(base, rc, "registry postgresql: marks: %s",
                              so_strerror(rc));
  return SO_OK;
}

/* mark_run: S_MARK or S_MARK_PENDING for the call's marks; *pending (if
 * not NULL) gets which marks' recipients were pending. */
static int mark_run(struct registry *base, enum pg_stmt stmt, const char *id,
                    int64_t fence, const struct registry_mark *marks, size_t n,
                    bool *pending)
{
  struct registry_pg *r = pg(base);
  struct pg_marks pm = {0};
  int rc = marks_build(base, &pm, marks, n);
  if (rc)
    return rc;
  char f[24];
  fmt_i64(f, fence);
  const char *p[MARKS_NPARAMS];
  PGresult *res = NULL;
  /* The recipients marked INFLIGHT once are normally fresh, so the
   * statement inserts them without looking them up first, unless a
   * recent call met existing rows (a resumed campaign). When it meets
   * one, the insert fails (a unique violation, nothing written) and the
   * op runs again with the lookups; they stay on until a call finds
   * every such recipient fresh. A second unique violation is a row
   * committed while the statement waited for the campaign's lock (its
   * snapshot is older): a new attempt sees it. */
  for (int attempt = 0;; attempt++) {
    marks_params(p, id, f, &pm, r->marks_check);
    /* Idempotent: a repeated mark changes nothing and counts nothing. */
    rc = pg_fenced(r, stmt, "writing delivery marks", MARKS_NPARAMS, p,
                   IDEMPOTENT, pending ? &res : NULL);
    if (rc != SO_ERR_CONFLICT || !r->unique_violation || attempt == 2)
      break;
    r->marks_check = true;
  }
  if (!rc && pending) {
    pg_marks_pending(&pm, res, pending, n);
    if (r->marks_check && pg_marks_fresh(&pm))
      r->marks_check = false;
    PQclear(res);
  }
  pg_marks_free(&pm);
  return rc;
}

int pg_mark(struct registry *base, const char *id, int64_t fence,
            const struct registry_mark *marks, size_t n)
{
  return mark_run(base, S_MARK, id, fence, marks, n, NULL);
}

/* mark_pending: the rows name the recipients that were pending; every
 * other mark's recipient was final. (A retry after a lost connection sees
 * this call's own INFLIGHT rows as pending, which is what it would have
 * answered anyway; its final marks then read as not pending, which only
 * the counters could care about, and they count on the server.) */
int pg_mark_pending(struct registry *base, const char *id, int64_t fence,
                    const struct registry_mark *marks, size_t n, bool *pending)
{
  return mark_run(base, S_MARK_PENDING, id, fence, marks, n, pending);
}

/* mark_finish: the marks and the finish as one statement (S_MARK_FINISH:
 * one round trip, one commit). Not retried on a lost connection (ONCE,
 * as a finish): the caller sees SO_ERR_UNAVAILABLE and tries again. */
int pg_mark_finish(struct registry *base, const char *id, int64_t fence,
                   const struct registry_mark *marks, size_t n, int64_t total,
                   struct registry_counts *counts)
{
  struct registry_pg *r = pg(base);
  struct pg_marks ma = {0};
  int rc = marks_build(base, &ma, marks, n);
  if (rc)
    return rc;
  char f[24], t[24];
  fmt_i64(f, fence);
  fmt_i64(t, total);
  PGresult *res = NULL;
  /* No row back: the fence was refused (or the campaign is absent), and
   * pg_fenced reads why. A last batch of SENT marks only (the common
   * one) takes the statement without the other groups' CTEs. */
  if (only_group(&ma, PM_SENT)) {
    const char *ps[] = {id, f, ma.params[PM_SENT].data, t};
    rc = pg_fenced(r, S_MARK_FINISH_SENT, "finishing", 4, ps, ONCE, &res);
  } else {
    /* Rows looked up first: the outcomes are for rows that exist, and a
     * unique violation would fail the finish. */
    const char *p[MARKS_NPARAMS + 1];
    marks_params(p, id, f, &ma, true);
    p[MARKS_NPARAMS] = t;
    rc = pg_fenced(r, S_MARK_FINISH, "finishing", MARKS_NPARAMS + 1, p, ONCE,
                   &res);
  }
  if (!rc) {
    counts->sent = pg_get_i64(res, 0, 0);
    counts->rejected = pg_get_i64(res, 0, 1);
    PQclear(res);
  }
  pg_marks_free(&ma);
  return rc;
}

/* register_claim_mark_tx: inside the caller's transaction, insert the
 * campaign already claimed (S_REGISTER_CLAIM) and mark under fence 1;
 * *created false (nothing written) when it existed. */
static int register_claim_mark_tx(struct registry_pg *r, const char *const *pc,
                                  const struct pg_marks *ma, size_t n,
                                  bool *created, struct registry_claim *out,
                                  bool *pending)
{
  PGresult *res = NULL;
  int rc = pg_conn_exec(r, S_REGISTER_CLAIM, registry_pg_sql[S_REGISTER_CLAIM],
                        "registering and claiming", 6, pc, &res);
  *created = !rc && PQntuples(res) > 0;
  if (!*created) {
    PQclear(res);
    return rc ? rc : pg_conn_simple(r, "ROLLBACK", "rolling back");
  }
  pg_claimed_row(res, out);
  char f[24];
  fmt_i64(f, out->fence);
  /* Looked up first, as in mark_finish: a unique violation (rows left by
   * a campaign of the same id deleted by hand) could not be retried. */
  const char *pm[MARKS_NPARAMS];
  marks_params(pm, pc[0], f, ma, true);
  res = NULL;
  rc = pg_conn_exec(r, S_MARK_PENDING, registry_pg_sql[S_MARK_PENDING],
                    "writing delivery marks", MARKS_NPARAMS, pm, &res);
  if (!rc && PQntuples(res) == 0)
    rc = registry_set_error(&r->base, SO_ERR_INTERNAL,
                            "registry postgresql: campaign %s: the claim "
                            "just made refused its own marks",
                            pc[0]);
  if (!rc)
    pg_marks_pending(ma, res, pending, n);
  PQclear(res);
  return rc ? rc : pg_conn_simple(r, "COMMIT", "committing the claim");
}

/* all_inflight: whether every mark is INFLIGHT (marks that count
 * nothing, as a first claim's are). */
static bool all_inflight(const struct registry_mark *marks, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (marks[i].state != DELIVERY_INFLIGHT)
      return false;
  }
  return true;
}

/* register_claim_mark_one: S_REGISTER_CLAIM_MARK, a new campaign inserted
 * claimed and marked in one statement (one round trip, one commit).
 * *created false when the campaign existed (nothing written). */
static int register_claim_mark_one(struct registry_pg *r, const char *const *pc,
                                   const struct pg_marks *ma, size_t n,
                                   bool *created, struct registry_claim *out,
                                   bool *pending)
{
  PGresult *res = NULL;
  int rc;
  /* ONCE, as a claim: after a lost connection the insert may have
   * committed, and a retry would report our own claim as HELD. */
  if (only_group(ma, PM_INFLIGHT)) {
    /* Ids marked INFLIGHT once only (a first claim's): the lean form,
     * without the other group's parameters. */
    const char *lean[] = {
        pc[0], ma->params[PM_INFLIGHT].data, pc[1], pc[2], pc[3], pc[4], pc[5]};
    rc = pg_run(r, S_REGISTER_CLAIM_MARK_ONCE, "registering and claiming",
                (int)(sizeof(lean) / sizeof(lean[0])), lean, ONCE, &res);
  } else {
    const char *p[] = {pc[0],
                       ma->params[PM_INFLIGHT].data,
                       ma->params[PM_TRIES_ID].data,
                       ma->params[PM_TRIES].data,
                       pc[1],
                       pc[2],
                       pc[3],
                       pc[4],
                       pc[5]};
    rc = pg_run(r, S_REGISTER_CLAIM_MARK, "registering and claiming",
                (int)(sizeof(p) / sizeof(p[0])), p, ONCE, &res);
  }
  if (rc)
    return rc;
  *created = PQntuples(res) > 0;
  if (!*created) {
    PQclear(res);
    return SO_OK;
  }
  /* Every recipient was absent (else the INSERT would have failed), so
   * every mark was pending. */
  for (size_t i = 0; i < n; i++)
    pending[i] = true;
  pg_claimed_row(res, out);
  return SO_OK;
}

/* claim_mark_one: S_CLAIM_MARK, a campaign that exists claimed and
 * marked in one statement; *claimed false (nothing written) when it was
 * not claimable. */
static int claim_mark_one(struct registry_pg *r, const char *id,
                          const char *owner, const char *ttl,
                          const struct pg_marks *ma, size_t n,
                          struct registry_claim *out, bool *pending,
                          bool *claimed)
{
  /* $2 is the owner here: S_CLAIM_MARK has no fence parameter. */
  const char *p[MARKS_NPARAMS + 1];
  marks_params(p, id, owner, ma, true);
  p[MARKS_NPARAMS] = ttl;
  PGresult *res = NULL;
  /* ONCE, as a claim (see register_claim_mark_one). */
  int rc =
      pg_run(r, S_CLAIM_MARK, "claiming", MARKS_NPARAMS + 1, p, ONCE, &res);
  if (rc)
    return rc;
  *claimed = false;
  for (int row = 0; row < PQntuples(res); row++) {
    if (!PQgetisnull(res, row, 0))
      continue;
    *claimed = true;
    out->kind = REGISTRY_CLAIM_CLAIMED;
    out->state = CAMPAIGN_PROCESSING;
    out->fence = pg_get_i64(res, row, 1);
    out->lease_until_ms = pg_get_i64(res, row, 2);
    out->registry_now_ms = pg_get_i64(res, row, 3);
  }
  if (*claimed)
    pg_marks_pending(ma, res, pending, n);
  PQclear(res);
  return SO_OK;
}

/* register_claim_mark: a campaign first seen here is inserted claimed and
 * marked in one statement (S_REGISTER_CLAIM_MARK) or, for marks other
 * than INFLIGHT, one transaction (BEGIN, S_REGISTER_CLAIM, S_MARK_PENDING,
 * COMMIT): one WAL flush instead of two. One that existed is claimed and
 * marked by S_CLAIM_MARK (INFLIGHT marks), else in two steps (claim,
 * then marks if claimed). Not retried on a lost connection, as a claim. */
int pg_register_claim_mark(struct registry *base,
                           const struct registry_new_campaign *c,
                           const char *owner, int64_t ttl_ms,
                           const struct registry_mark *marks, size_t n,
                           bool *created, struct registry_claim *out,
                           bool *pending, bool *marked)
{
  struct registry_pg *r = pg(base);
  struct pg_marks ma = {0};
  int rc = marks_build(base, &ma, marks, n);
  if (rc)
    goto out;
  char at[24], ttl[24];
  fmt_i64(at, c->scheduled_at_ms);
  fmt_i64(ttl, ttl_ms);
  const char *pc[] = {c->campaign_id, at, c->channel, c->payload, owner, ttl};
  /* INFLIGHT marks (a first claim's): one statement. A unique violation
   * (rows of a campaign of this id deleted by hand, nothing written) and
   * any other marks take the transaction. */
  bool one = all_inflight(marks, n);
  if (one)
    rc = register_claim_mark_one(r, pc, &ma, n, created, out, pending);
  if (!one || (rc == SO_ERR_CONFLICT && r->unique_violation)) {
    rc = pg_conn_ready(r);
    if (!rc)
      rc = pg_conn_simple(r, "BEGIN", "beginning the claim");
    if (!rc)
      rc = register_claim_mark_tx(r, pc, &ma, n, created, out, pending);
  }
  if (rc)
    goto out;
  if (*created) {
    *marked = true;
    goto out;
  }
  if (one) {
    /* It existed: claimed and marked in one statement, unless it is not
     * claimable (pg_claim says why) or a unique violation (rows a
     * previous holder committed while we waited for its lock; nothing
     * written) sends it the two-step way. */
    bool claimed = false;
    rc = claim_mark_one(r, c->campaign_id, owner, ttl, &ma, n, out, pending,
                        &claimed);
    if (!rc && claimed) {
      *marked = true;
      goto out;
    }
    if (rc && !(rc == SO_ERR_CONFLICT && r->unique_violation))
      goto out;
  }
  rc = pg_claim(base, c->campaign_id, owner, ttl_ms, out);
  if (!rc && out->kind == REGISTRY_CLAIM_CLAIMED)
    *marked = pg_mark_pending(base, c->campaign_id, out->fence, marks, n,
                              pending) == SO_OK;
out:
  pg_marks_free(&ma);
  return rc;
}
