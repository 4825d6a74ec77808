/* registry_pg.c - the PostgreSQL registry backend (several hosts).
 *
 * Every op is one SQL statement, so it is atomic by itself and needs no
 * explicit transaction: a state change is an UPDATE whose WHERE clause is
 * the whole precondition (state, fence, lease on the server's clock), and
 * READ COMMITTED re-checks that clause on the newest row version when the
 * statement had to wait for a concurrent writer. The only places that
 * read before they write take a row lock in the same statement (marks:
 * SELECT ... FOR UPDATE in a CTE). When a change did not happen, a second
 * read tells why (absent, stale fence, wrong state).
 *
 * Connection handling, SQLSTATE mapping and retries live in
 * registry_pg_conn.c; the SQL of every op and the migrations in
 * registry_pg_schema.c; the ops that write delivery marks (alone, or with
 * a finish or a claim in one statement) in registry_pg_mark_ops.c,
 * which shares this file's helpers through registry_pg_internal.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry_pg_internal.h"
#include "registry_pg_mark_ops.h"

/* pg_run: one statement with the connection check and bounded retries. */
int pg_run(struct registry_pg *r, enum pg_stmt id, const char *what,
           int nparams, const char *const *params, int idempotent,
           PGresult **out)
{
  int attempt = 0;
  int rc;
  do {
    rc = pg_conn_ready(r);
    if (!rc)
      rc = pg_conn_exec(r, (int)id, registry_pg_sql[id], what, nparams, params,
                        out);
  } while (pg_conn_again(r, rc, &attempt, idempotent == IDEMPOTENT));
  return rc;
}

/* pg_peek: read a campaign's state; SO_ERR_NOTFOUND if absent. */
int pg_peek(struct registry_pg *r, const char *id, struct pg_peek *p)
{
  const char *params[] = {id};
  PGresult *res = NULL;
  int rc =
      pg_run(r, S_PEEK, "reading campaign state", 1, params, IDEMPOTENT, &res);
  if (rc)
    return rc;
  if (PQntuples(res) == 0) {
    PQclear(res);
    return registry_set_error(&r->base, SO_ERR_NOTFOUND,
                              "registry postgresql: campaign %s not found", id);
  }
  if (campaign_state_parse(PQgetvalue(res, 0, 0), &p->state)) {
    rc = registry_set_error(&r->base, SO_ERR_INTERNAL,
                            "registry postgresql: campaign %s: bad state %s",
                            id, PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
  }
  p->paused = pg_get_bool(res, 0, 1);
  p->fence = pg_get_i64(res, 0, 2);
  p->lease_until = pg_get_i64(res, 0, 3);
  p->now = pg_get_i64(res, 0, 4);
  PQclear(res);
  return SO_OK;
}

/* change: run a state change that returns a row when it happened.
 * *changed (if not NULL) says whether it did; *out gets the result. */
static int change(struct registry_pg *r, enum pg_stmt id, const char *what,
                  int nparams, const char *const *params, int idempotent,
                  bool *changed, PGresult **out)
{
  PGresult *res = NULL;
  int rc = pg_run(r, id, what, nparams, params, idempotent, &res);
  if (rc)
    return rc;
  if (changed)
    *changed = PQntuples(res) > 0;
  if (out)
    *out = res;
  else
    PQclear(res);
  return SO_OK;
}

/* pg_stale: the SO_ERR_STALE_FENCE of a fenced op, saying why. */
int pg_stale(struct registry_pg *r, const char *what, const char *id,
             int64_t fence, const struct pg_peek *p)
{
  char lease[48];
  if (p->lease_until == 0)
    snprintf(lease, sizeof(lease), "no lease");
  else if (p->now < p->lease_until)
    snprintf(lease, sizeof(lease), "lease live");
  else
    snprintf(lease, sizeof(lease), "lease expired %" PRId64 " ms ago",
             p->now - p->lease_until);
  return registry_set_error(
      &r->base, SO_ERR_STALE_FENCE,
      "registry postgresql: %s: campaign %s: stale "
      "fence (ours %" PRId64 ", current %" PRId64 ", state %s, %s)",
      what, id, fence, p->fence, campaign_state_name(p->state), lease);
}

/* pg_fenced: a fenced change ($1 id, $2 fence); when it did not happen,
 * SO_ERR_NOTFOUND if the campaign is absent, else SO_ERR_STALE_FENCE. */
int pg_fenced(struct registry_pg *r, enum pg_stmt id, const char *what,
              int nparams, const char *const *params, int idempotent,
              PGresult **out)
{
  bool changed = false;
  PGresult *res = NULL;
  int rc = change(r, id, what, nparams, params, idempotent, &changed, &res);
  if (rc)
    return rc;
  if (changed) {
    if (out)
      *out = res;
    else
      PQclear(res);
    return SO_OK;
  }
  PQclear(res);
  struct pg_peek p;
  rc = pg_peek(r, params[0], &p);
  if (rc)
    return rc;
  return pg_stale(r, what, params[0], strtoll(params[1], NULL, 10), &p);
}

/* absent_or: after a change that did not happen: SO_ERR_NOTFOUND if the
 * campaign is absent, else `status` with `why`. */
static int absent_or(struct registry_pg *r, const char *id, int status,
                     const char *what, const char *why)
{
  struct pg_peek p;
  int rc = pg_peek(r, id, &p);
  if (rc)
    return rc;
  if (status == SO_OK)
    return SO_OK;
  return registry_set_error(&r->base, status,
                            "registry postgresql: %s: campaign %s is %s%s",
                            what, id, campaign_state_name(p.state), why);
}

/* ---- rows -> structs ------------------------------------------------ */

static char *dup_field(const PGresult *res, int row, int col, bool *oom)
{
  if (PQgetisnull(res, row, col))
    return NULL;
  char *s = strdup(PQgetvalue(res, row, col));
  if (!s)
    *oom = true;
  return s;
}

static int row_campaign(struct registry_pg *r, const PGresult *res, int row,
                        struct registry_campaign *c)
{
  memset(c, 0, sizeof(*c));
  bool oom = false;
  c->campaign_id = dup_field(res, row, COL_ID, &oom);
  c->channel = dup_field(res, row, COL_CHANNEL, &oom);
  c->payload = dup_field(res, row, COL_PAYLOAD, &oom);
  c->owner = dup_field(res, row, COL_OWNER, &oom);
  c->last_error = dup_field(res, row, COL_ERROR, &oom);
  if (oom) {
    registry_campaign_free(c);
    return registry_set_error(&r->base, SO_ERR_NOMEM,
                              "registry postgresql: out of memory");
  }
  if (campaign_state_parse(PQgetvalue(res, row, COL_STATE), &c->state)) {
    registry_campaign_free(c);
    return registry_set_error(&r->base, SO_ERR_INTERNAL,
                              "registry postgresql: bad state %s",
                              PQgetvalue(res, row, COL_STATE));
  }
  c->scheduled_at_ms = pg_get_i64(res, row, COL_SCHEDULED);
  c->fence = pg_get_i64(res, row, COL_FENCE);
  c->lease_until_ms = pg_get_i64(res, row, COL_LEASE);
  c->attempts = (int)pg_get_i64(res, row, COL_ATTEMPTS);
  c->total = pg_get_i64(res, row, COL_TOTAL);
  c->sent = pg_get_i64(res, row, COL_SENT);
  c->rejected = pg_get_i64(res, row, COL_REJECTED);
  c->republished = (int)pg_get_i64(res, row, COL_REPUBLISHED);
  c->republished_at_ms = pg_get_i64(res, row, COL_REPUBLISHED_AT);
  c->progress_at_ms = pg_get_i64(res, row, COL_PROGRESS);
  c->updated_at_ms = pg_get_i64(res, row, COL_UPDATED);
  c->paused = pg_get_bool(res, row, COL_PAUSED);
  c->registry_now_ms = pg_get_i64(res, row, COL_NOW);
  return SO_OK;
}

/* list_query: a statement returning campaign rows -> an owned array. */
static int list_query(struct registry_pg *r, enum pg_stmt id, const char *what,
                      int nparams, const char *const *params,
                      struct registry_campaign **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  PGresult *res = NULL;
  int rc = pg_run(r, id, what, nparams, params, IDEMPOTENT, &res);
  if (rc)
    return rc;
  int rows = PQntuples(res);
  if (rows == 0) {
    PQclear(res);
    return SO_OK;
  }
  struct registry_campaign *list = calloc((size_t)rows, sizeof(*list));
  if (!list) {
    PQclear(res);
    return registry_set_error(&r->base, SO_ERR_NOMEM,
                              "registry postgresql: out of memory");
  }
  for (int i = 0; i < rows; i++) {
    rc = row_campaign(r, res, i, &list[i]);
    if (rc) {
      registry_campaigns_free(list, (size_t)i);
      PQclear(res);
      return rc;
    }
  }
  PQclear(res);
  *out = list;
  *n = (size_t)rows;
  return SO_OK;
}

static void fmt_limit(char buf[24], size_t limit)
{
  fmt_i64(buf, limit > (size_t)INT64_MAX ? INT64_MAX : (int64_t)limit);
}

/* ---- the ops ------------------------------------------------------- */

static void pg_close(struct registry *base)
{
  struct registry_pg *r = pg(base);
  PQfinish(r->conn);
  free(r);
}

static int pg_now(struct registry *base, int64_t *now_ms)
{
  PGresult *res = NULL;
  int rc =
      pg_run(pg(base), S_NOW, "reading the clock", 0, NULL, IDEMPOTENT, &res);
  if (rc)
    return rc;
  *now_ms = pg_get_i64(res, 0, 0);
  PQclear(res);
  return SO_OK;
}

static int pg_register(struct registry *base,
                       const struct registry_new_campaign *c,
                       enum campaign_state initial, bool *created)
{
  char at[24];
  fmt_i64(at, c->scheduled_at_ms);
  const char *p[] = {c->campaign_id, campaign_state_name(initial), at,
                     c->channel, c->payload};
  return change(pg(base), S_REGISTER, "registering", 5, p, ONCE, created, NULL);
}

static int pg_begin_publish(struct registry *base, const char *id,
                            const char *owner, int64_t ttl_ms, bool *won)
{
  struct registry_pg *r = pg(base);
  char ttl[24];
  fmt_i64(ttl, ttl_ms);
  const char *p[] = {id, owner, ttl};
  int rc = change(r, r->publish_async ? S_BEGIN_PUBLISH_ASYNC : S_BEGIN_PUBLISH,
                  "taking the publish lease", 3, p, ONCE, won, NULL);
  if (rc || *won)
    return rc;
  return absent_or(r, id, SO_OK, NULL, NULL);
}

static int pg_mark_published(struct registry *base, const char *id, bool *won)
{
  struct registry_pg *r = pg(base);
  const char *p[] = {id};
  int rc =
      change(r, r->publish_async ? S_MARK_PUBLISHED_ASYNC : S_MARK_PUBLISHED,
             "marking published", 1, p, ONCE, won, NULL);
  if (rc || *won)
    return rc;
  return absent_or(r, id, SO_OK, NULL, NULL);
}

static int pg_list_due(struct registry *base, int64_t ahead_ms, size_t limit,
                       struct registry_campaign **out, size_t *n)
{
  char ahead[24], lim[24];
  fmt_i64(ahead, ahead_ms);
  fmt_limit(lim, limit);
  const char *p[] = {ahead, lim};
  return list_query(pg(base), S_LIST_DUE, "listing due campaigns", 2, p, out,
                    n);
}

/* Classify a campaign that the claim UPDATE did not take. Returns 1 when it
 * has become claimable since (try again). */
static int claim_verdict(const struct pg_peek *p, struct registry_claim *out)
{
  out->fence = p->fence;
  out->state = p->state;
  out->lease_until_ms = p->lease_until;
  out->registry_now_ms = p->now;
  if (p->state == CAMPAIGN_DONE || p->state == CAMPAIGN_DEAD)
    out->kind = REGISTRY_CLAIM_DONE;
  else if (p->state == CAMPAIGN_PROCESSING && p->now < p->lease_until)
    out->kind = REGISTRY_CLAIM_HELD;
  else if (p->paused)
    out->kind = REGISTRY_CLAIM_PAUSED;
  else
    return 1;
  return 0;
}

/* pg_claimed_row: a claim that happened, from the row S_CLAIM or
 * S_REGISTER_CLAIM returned (fence, lease_until, registry now); frees res. */
void pg_claimed_row(PGresult *res, struct registry_claim *out)
{
  out->kind = REGISTRY_CLAIM_CLAIMED;
  out->state = CAMPAIGN_PROCESSING;
  out->fence = pg_get_i64(res, 0, 0);
  out->lease_until_ms = pg_get_i64(res, 0, 1);
  out->registry_now_ms = pg_get_i64(res, 0, 2);
  PQclear(res);
}

int pg_claim(struct registry *base, const char *id, const char *owner,
             int64_t ttl_ms, struct registry_claim *out)
{
  struct registry_pg *r = pg(base);
  char ttl[24];
  fmt_i64(ttl, ttl_ms);
  const char *p[] = {id, owner, ttl};
  /* The UPDATE is the claim. If it did not happen, the read that follows
   * says why; should the campaign have become claimable in between (a
   * release, an expiry), the claim is simply tried again. A lost
   * connection is not retried: the claim may have committed, and a second
   * try would report our own claim as HELD. */
  for (int round = 0; round < 5; round++) {
    PGresult *res = NULL;
    bool claimed = false;
    int rc = change(r, S_CLAIM, "claiming", 3, p, ONCE, &claimed, &res);
    if (rc)
      return rc;
    if (claimed) {
      pg_claimed_row(res, out);
      return SO_OK;
    }
    PQclear(res);
    struct pg_peek pk;
    rc = pg_peek(r, id, &pk);
    if (rc)
      return rc;
    if (claim_verdict(&pk, out) == 0)
      return SO_OK;
  }
  return registry_set_error(&r->base, SO_ERR_CONFLICT,
                            "registry postgresql: claiming campaign %s: "
                            "its state kept changing; try again",
                            id);
}

/* register_claim: one statement when the campaign is new (the common
 * case for triggers other services publish), else pg_claim. */
static int pg_register_claim(struct registry *base,
                             const struct registry_new_campaign *c,
                             const char *owner, int64_t ttl_ms, bool *created,
                             struct registry_claim *out)
{
  struct registry_pg *r = pg(base);
  char at[24], ttl[24];
  fmt_i64(at, c->scheduled_at_ms);
  fmt_i64(ttl, ttl_ms);
  const char *p[] = {c->campaign_id, at, c->channel, c->payload, owner, ttl};
  PGresult *res = NULL;
  /* ONCE, as a claim: after a lost connection the insert may have
   * committed, and a retry would report our own claim as HELD. */
  int rc = change(r, S_REGISTER_CLAIM, "registering and claiming", 6, p, ONCE,
                  created, &res);
  if (rc)
    return rc;
  if (!*created) {
    PQclear(res);
    return pg_claim(base, c->campaign_id, owner, ttl_ms, out);
  }
  pg_claimed_row(res, out);
  return SO_OK;
}

static int pg_renew(struct registry *base, const char *id, int64_t fence,
                    int64_t ttl_ms)
{
  char f[24], ttl[24];
  fmt_i64(f, fence);
  fmt_i64(ttl, ttl_ms);
  const char *p[] = {id, f, ttl};
  return pg_fenced(pg(base), S_RENEW, "renewing the lease", 3, p, IDEMPOTENT,
                   NULL);
}

/* flag_positions: flags[0..n) = !value, then flags[pos - 1] = value for
 * each 1-based position in column `col` of res (NULL rows skipped): how
 * the statements that answer per recipient say which ones. */
static void flag_positions(const PGresult *res, int col, bool *flags, size_t n,
                           bool value)
{
  for (size_t i = 0; i < n; i++)
    flags[i] = !value;
  for (int row = 0; row < PQntuples(res); row++) {
    if (PQgetisnull(res, row, col))
      continue;
    int64_t pos = pg_get_i64(res, row, col);
    if (pos >= 1 && (size_t)pos <= n)
      flags[pos - 1] = value;
  }
}

static int pg_pending(struct registry *base, const char *id, int64_t fence,
                      const char *const *recipient_ids, size_t n,
                      bool *needs_send)
{
  struct registry_pg *r = pg(base);
  struct pg_buf ids = {0};
  int rc = n ? pg_buf_array(&ids, &recipient_ids[0], sizeof(char *), n)
             : pg_buf_array(&ids, NULL, 0, 0);
  if (rc) {
    pg_buf_free(&ids);
    return registry_set_error(base, rc,
                              "registry postgresql: pending: %zu ids: %s", n,
                              so_strerror(rc));
  }
  char f[24];
  fmt_i64(f, fence);
  const char *p[] = {id, f, ids.data};
  PGresult *res = NULL;
  rc = pg_run(r, S_PENDING, "reading pending recipients", 3, p, IDEMPOTENT,
              &res);
  pg_buf_free(&ids);
  if (rc)
    return rc;
  if (PQntuples(res) < 1 || !pg_get_bool(res, 0, 0)) {
    PQclear(res);
    struct pg_peek pk;
    rc = pg_peek(r, id, &pk);
    if (rc)
      return rc;
    return pg_stale(r, "reading pending recipients", id, fence, &pk);
  }
  flag_positions(res, 1, needs_send, n, false);
  PQclear(res);
  return SO_OK;
}

static int pg_set_total(struct registry *base, const char *id, int64_t fence,
                        int64_t total)
{
  char f[24], t[24];
  fmt_i64(f, fence);
  fmt_i64(t, total);
  const char *p[] = {id, f, t};
  return pg_fenced(pg(base), S_SET_TOTAL, "setting the total", 3, p, IDEMPOTENT,
                   NULL);
}

static int pg_complete(struct registry *base, const char *id, int64_t fence)
{
  char f[24];
  fmt_i64(f, fence);
  const char *p[] = {id, f};
  return pg_fenced(pg(base), S_COMPLETE, "completing", 2, p, ONCE, NULL);
}

static int pg_finish(struct registry *base, const char *id, int64_t fence,
                     int64_t total, struct registry_counts *counts)
{
  char f[24], t[24];
  fmt_i64(f, fence);
  fmt_i64(t, total);
  const char *p[] = {id, f, t};
  PGresult *res = NULL;
  int rc = pg_fenced(pg(base), S_FINISH, "finishing", 3, p, ONCE, &res);
  if (rc)
    return rc;
  counts->sent = pg_get_i64(res, 0, 0);
  counts->rejected = pg_get_i64(res, 0, 1);
  PQclear(res);
  return SO_OK;
}

static int pg_release(struct registry *base, const char *id, int64_t fence,
                      bool count_attempt, const char *reason, int *attempts)
{
  char f[24];
  fmt_i64(f, fence);
  const char *p[] = {id, f, count_attempt ? "true" : "false", reason};
  PGresult *res = NULL;
  int rc = pg_fenced(pg(base), S_RELEASE, "releasing", 4, p, ONCE, &res);
  if (rc)
    return rc;
  if (attempts)
    *attempts = (int)pg_get_i64(res, 0, 0);
  PQclear(res);
  return SO_OK;
}

static int pg_fail_op(struct registry *base, const char *id, int64_t fence,
                      const char *reason)
{
  char f[24];
  fmt_i64(f, fence);
  const char *p[] = {id, f, reason};
  return pg_fenced(pg(base), S_FAIL, "failing", 3, p, ONCE, NULL);
}

static int pg_mark_dead(struct registry *base, const char *id,
                        const char *reason)
{
  struct registry_pg *r = pg(base);
  const char *p[] = {id, reason};
  bool changed = false;
  int rc = change(r, S_MARK_DEAD, "marking dead", 2, p, ONCE, &changed, NULL);
  if (rc || changed)
    return rc;
  /* Not changed: absent, DONE (refused) or DEAD already (its first reason
   * stays, and that is success). */
  struct pg_peek pk;
  rc = pg_peek(r, id, &pk);
  if (rc || pk.state == CAMPAIGN_DEAD)
    return rc;
  return registry_set_error(base, SO_ERR_CONFLICT,
                            "registry postgresql: marking dead: campaign %s "
                            "is %s",
                            id, campaign_state_name(pk.state));
}

static int operator_op(struct registry *base, enum pg_stmt s, const char *what,
                       const char *id)
{
  struct registry_pg *r = pg(base);
  const char *p[] = {id};
  bool changed = false;
  int rc = change(r, s, what, 1, p, ONCE, &changed, NULL);
  if (rc || changed)
    return rc;
  return absent_or(r, id, SO_ERR_CONFLICT, what, " (already finished)");
}

static int pg_pause(struct registry *base, const char *id)
{
  return operator_op(base, S_PAUSE, "pausing", id);
}

static int pg_resume(struct registry *base, const char *id)
{
  return operator_op(base, S_RESUME, "resuming", id);
}

static int pg_cancel(struct registry *base, const char *id)
{
  return operator_op(base, S_CANCEL, "cancelling", id);
}

static int pg_control(struct registry *base, const char *id, int64_t fence,
                      enum registry_control *out)
{
  struct registry_pg *r = pg(base);
  struct pg_peek pk;
  int rc = pg_peek(r, id, &pk);
  if (rc)
    return rc;
  if (pk.fence == fence && pk.state == CAMPAIGN_DEAD) {
    *out = REGISTRY_CONTROL_CANCEL;
    return SO_OK;
  }
  if (pk.fence == fence && pk.state == CAMPAIGN_PROCESSING &&
      pk.now < pk.lease_until) {
    *out = pk.paused ? REGISTRY_CONTROL_PAUSE : REGISTRY_CONTROL_RUN;
    return SO_OK;
  }
  return pg_stale(r, "reading operator control", id, fence, &pk);
}

static int pg_replay(struct registry *base, const char *id)
{
  struct registry_pg *r = pg(base);
  const char *p[] = {id};
  bool changed = false;
  int rc = change(r, S_REPLAY, "replaying", 1, p, ONCE, &changed, NULL);
  if (rc || changed)
    return rc;
  return absent_or(r, id, SO_ERR_CONFLICT, "replaying", " (not DEAD)");
}

static int pg_get(struct registry *base, const char *id,
                  struct registry_campaign *out)
{
  struct registry_pg *r = pg(base);
  const char *p[] = {id};
  PGresult *res = NULL;
  int rc = pg_run(r, S_GET, "reading a campaign", 1, p, IDEMPOTENT, &res);
  if (rc)
    return rc;
  if (PQntuples(res) == 0)
    rc = registry_set_error(base, SO_ERR_NOTFOUND,
                            "registry postgresql: campaign %s not found", id);
  else
    rc = row_campaign(r, res, 0, out);
  PQclear(res);
  return rc;
}

static int pg_list(struct registry *base, int state, size_t limit,
                   struct registry_campaign **out, size_t *n)
{
  char lim[24];
  fmt_limit(lim, limit);
  const char *p[] = {
      state < 0 ? NULL : campaign_state_name((enum campaign_state)state), lim};
  return list_query(pg(base), S_LIST, "listing campaigns", 2, p, out, n);
}

static int pg_list_overdue(struct registry *base, int64_t grace_ms,
                           size_t limit, struct registry_campaign **out,
                           size_t *n)
{
  char grace[24], lim[24];
  fmt_i64(grace, grace_ms);
  fmt_limit(lim, limit);
  const char *p[] = {grace, lim};
  return list_query(pg(base), S_LIST_OVERDUE, "listing overdue campaigns", 2, p,
                    out, n);
}

static int pg_record_republish(struct registry *base, const char *id,
                               enum campaign_state expected_state,
                               int64_t expected_fence, int64_t grace_ms,
                               int64_t backoff_ms, int max_republishes,
                               bool *won)
{
  struct registry_pg *r = pg(base);
  char f[24], g[24], b[24], m[24];
  fmt_i64(f, expected_fence);
  fmt_i64(g, grace_ms);
  fmt_i64(b, backoff_ms);
  fmt_i64(m, max_republishes);
  const char *p[] = {id, campaign_state_name(expected_state), f, g, b, m};
  int rc =
      change(r, S_REPUBLISH, "recording a republish", 6, p, ONCE, won, NULL);
  if (rc || *won)
    return rc;
  return absent_or(r, id, SO_OK, NULL, NULL);
}

static const struct registry_ops pg_ops = {
    .name = "postgresql",
    .close = pg_close,
    .now = pg_now,
    .register_campaign = pg_register,
    .begin_publish = pg_begin_publish,
    .mark_published = pg_mark_published,
    .list_due = pg_list_due,
    .claim = pg_claim,
    .renew = pg_renew,
    .pending = pg_pending,
    .mark = pg_mark,
    .set_total = pg_set_total,
    .complete = pg_complete,
    .register_claim = pg_register_claim,
    .register_claim_mark = pg_register_claim_mark,
    .finish = pg_finish,
    .mark_pending = pg_mark_pending,
    .mark_finish = pg_mark_finish,
    .release = pg_release,
    .fail = pg_fail_op,
    .mark_dead = pg_mark_dead,
    .pause = pg_pause,
    .resume = pg_resume,
    .cancel = pg_cancel,
    .control = pg_control,
    .replay = pg_replay,
    .get = pg_get,
    .list = pg_list,
    .list_overdue = pg_list_overdue,
    .record_republish = pg_record_republish,
};

int registry_pg_open(const struct registry_options *opt, struct registry **out,
                     char *err, size_t errlen)
{
  *out = NULL;
  struct registry_pg *r = calloc(1, sizeof(*r));
  if (!r) {
    snprintf(err, errlen, "registry postgresql: out of memory");
    return SO_ERR_NOMEM;
  }
  r->base.ops = &pg_ops;
  r->publish_async = opt->publish_async_commit;
  int rc = pg_conn_open(r, opt, err, errlen);
  if (rc) {
    PQfinish(r->conn);
    free(r);
    return rc;
  }
  *out = &r->base;
  return SO_OK;
}
