/* registry_sqlite.c - the SQLite registry backend (embedded default: one
 * host, several processes sharing one WAL database file).
 *
 * How the guarantees of registry.h are kept here:
 *  - Every step that reads and then writes runs in BEGIN IMMEDIATE, which
 *    takes the database's single write lock first: two processes can never
 *    both see "lease expired" and both claim. Writes that are one statement
 *    run in the same kind of transaction, so there is one code path.
 *  - Times come from REGISTRY_SQLITE_NOW inside the statement, never from
 *    the process; see registry.h on what "the registry's clock" means for
 *    SQLite.
 *  - A fenced op first checks (state PROCESSING, fence, lease live) inside
 *    its transaction, then writes; the write lock means nothing can change
 *    between the check and the write.
 *  - Prepared statements are cached per handle (SQLITE_PREPARE_PERSISTENT).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "registry_backend.h"
#include "registry_sqlite_schema.h"

#define NOW REGISTRY_SQLITE_NOW
#define CAMPAIGN_COLS                                                  \
  "campaign_id, state, scheduled_at, channel, payload, owner, fence, " \
  "lease_until, attempts, total, sent, rejected, republished, "        \
  "republished_at, progress_at, updated_at, paused, last_error, " NOW

enum stmt_id {
  ST_BEGIN,
  ST_BEGIN_IMMEDIATE,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_NOW,
  ST_STATE,
  ST_REGISTER,
  ST_BEGIN_PUBLISH,
  ST_MARK_PUBLISHED,
  ST_LIST_DUE,
  ST_CLAIM,
  ST_CLAIM_INFO,
  ST_FENCE_INFO,
  ST_RENEW,
  ST_DELIVERY_STATE,
  ST_MARK_INFLIGHT,
  ST_MARK_FINAL,
  ST_BUMP,
  ST_SET_TOTAL,
  ST_COMPLETE,
  ST_RELEASE,
  ST_FAIL,
  ST_MARK_DEAD,
  ST_PAUSE,
  ST_CANCEL,
  ST_REPLAY,
  ST_GET,
  ST_LIST_ALL,
  ST_LIST_STATE,
  ST_LIST_OVERDUE,
  ST_REPUBLISH,
  ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_NOW] = "SELECT " NOW,
    [ST_STATE] = "SELECT state FROM campaigns WHERE campaign_id = ?1",
    [ST_REGISTER] =
        "INSERT INTO campaigns (campaign_id, state, scheduled_at, channel,"
        " payload, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, " NOW
        ", " NOW ") ON CONFLICT (campaign_id) DO NOTHING",
    [ST_BEGIN_PUBLISH] =
        "UPDATE campaigns SET publish_owner = ?2, publish_until = " NOW
        " + ?3, updated_at = " NOW
        " WHERE campaign_id = ?1"
        " AND state = 'SCHEDULED' AND paused = 0 AND (publish_owner IS NULL"
        " OR publish_owner = ?2 OR publish_until <= " NOW ")",
    [ST_MARK_PUBLISHED] =
        "UPDATE campaigns SET state = 'PUBLISHED', publish_owner = NULL,"
        " publish_until = 0, updated_at = " NOW
        " WHERE campaign_id = ?1 AND state = 'SCHEDULED'",
    [ST_LIST_DUE] = "SELECT " CAMPAIGN_COLS
                    " FROM campaigns WHERE state = 'SCHEDULED' AND paused = 0"
                    " AND scheduled_at <= " NOW
                    " + ?1 ORDER BY scheduled_at, campaign_id LIMIT ?2",
    [ST_CLAIM] =
        "UPDATE campaigns SET state = 'PROCESSING', owner = ?2,"
        " fence = fence + 1, lease_until = ?9 + ?3, progress_at = ?9,"
        " updated_at = ?9, publish_owner = NULL, publish_until = 0"
        " WHERE campaign_id = ?1 RETURNING fence, lease_until",
    [ST_CLAIM_INFO] = "SELECT state, fence, lease_until, paused, " NOW
                      " FROM campaigns WHERE campaign_id = ?1",
    [ST_FENCE_INFO] = "SELECT state, fence, lease_until > " NOW ", paused, " NOW
                      " FROM campaigns WHERE campaign_id = ?1",
    [ST_RENEW] =
        "UPDATE campaigns SET lease_until =  ?9"
        " + ?2, updated_at =  ?9  WHERE campaign_id = ?1",
    [ST_DELIVERY_STATE] =
        "SELECT state FROM deliveries WHERE campaign_id = ?1"
        " AND recipient_id = ?2",
    [ST_MARK_INFLIGHT] =
        "INSERT INTO deliveries (campaign_id, recipient_id, state, attempts,"
        " updated_at) VALUES (?1, ?2, 'INFLIGHT', 1,  ?9"
        ")"
        " ON CONFLICT (campaign_id, recipient_id) DO UPDATE SET"
        " attempts = attempts + 1, updated_at = excluded.updated_at"
        " WHERE state = 'INFLIGHT'",
    [ST_MARK_FINAL] =
        "INSERT INTO deliveries (campaign_id, recipient_id, state, attempts,"
        " error, updated_at) VALUES (?1, ?2, ?3, 1, ?4,  ?9"
        ")"
        " ON CONFLICT (campaign_id, recipient_id) DO UPDATE SET"
        " state = excluded.state, error = excluded.error,"
        " updated_at = excluded.updated_at"
        " WHERE state NOT IN ('SENT', 'REJECTED')",
    [ST_BUMP] =
        "UPDATE campaigns SET sent = sent + ?2, rejected = rejected"
        " + ?3, progress_at =  ?9 , updated_at =  ?9"
        " WHERE campaign_id = ?1",
    [ST_SET_TOTAL] =
        "UPDATE campaigns SET total = ?2, updated_at =  ?9"
        " WHERE campaign_id = ?1",
    [ST_COMPLETE] =
        "UPDATE campaigns SET state = 'DONE', owner = NULL,"
        " lease_until = 0, updated_at =  ?9  WHERE campaign_id = ?1",
    [ST_RELEASE] =
        "UPDATE campaigns SET state = 'PUBLISHED', owner = NULL,"
        " lease_until = 0, attempts = attempts + ?2,"
        " last_error = COALESCE(?3, last_error), updated_at =  ?9"
        " WHERE campaign_id = ?1 RETURNING attempts",
    [ST_FAIL] =
        "UPDATE campaigns SET state = 'DEAD', owner = NULL,"
        " lease_until = 0, last_error = ?2, updated_at =  ?9"
        " WHERE campaign_id = ?1",
    [ST_MARK_DEAD] =
        "UPDATE campaigns SET state = 'DEAD', owner = NULL, lease_until = 0,"
        " publish_owner = NULL, publish_until = 0, last_error = ?2,"
        " updated_at = " NOW
        " WHERE campaign_id = ?1"
        " AND state NOT IN ('DONE', 'DEAD')",
    [ST_PAUSE] = "UPDATE campaigns SET paused = ?2, updated_at = " NOW
                 " WHERE campaign_id = ?1 AND state NOT IN ('DONE', 'DEAD')",
    [ST_CANCEL] =
        "UPDATE campaigns SET state = 'DEAD', owner = NULL, lease_until = 0,"
        " publish_owner = NULL, publish_until = 0,"
        " last_error = 'cancelled', updated_at = " NOW
        " WHERE campaign_id = ?1 AND state NOT IN ('DONE', 'DEAD')",
    [ST_REPLAY] =
        "UPDATE campaigns SET state = 'PUBLISHED', attempts = 0,"
        " republished = 0, republished_at = 0, paused = 0, owner = NULL,"
        " lease_until = 0, updated_at = " NOW
        " WHERE campaign_id = ?1 AND state = 'DEAD'",
    [ST_GET] = "SELECT " CAMPAIGN_COLS " FROM campaigns WHERE campaign_id = ?1",
    [ST_LIST_ALL] = "SELECT " CAMPAIGN_COLS
                    " FROM campaigns"
                    " ORDER BY scheduled_at DESC, campaign_id LIMIT ?1",
    [ST_LIST_STATE] = "SELECT " CAMPAIGN_COLS
                      " FROM campaigns WHERE state = ?2"
                      " ORDER BY scheduled_at DESC, campaign_id LIMIT ?1",
    [ST_LIST_OVERDUE] = "SELECT " CAMPAIGN_COLS
                        " FROM campaigns WHERE state NOT IN ('DONE', 'DEAD')"
                        " AND scheduled_at < " NOW
                        " - ?1"
                        " ORDER BY scheduled_at, campaign_id LIMIT ?2",
    [ST_REPUBLISH] =
        "UPDATE campaigns SET republished = republished + 1,"
        " republished_at = " NOW ", updated_at = " NOW
        " WHERE campaign_id = ?1 AND state = ?2 AND fence = ?3"
        " AND republished < ?6 AND (republished_at = 0 OR republished_at "
        "<= " NOW " - ?5) AND (state <> 'PROCESSING' OR lease_until <= " NOW
        " - ?4)",
};

static const char *const delivery_state_names[] = {"INFLIGHT", "SENT",
                                                   "REJECTED"};

struct registry_sqlite {
  struct registry base;
  sqlite3 *db;
  struct registry_sqlite_busy busy;
  sqlite3_stmt *stmts[ST_COUNT];
};

static struct registry_sqlite *to_sqlite(struct registry *r)
{
  return (struct registry_sqlite *)r;
}

/* Record an SQLite failure with what we were doing; BUSY past the busy
 * timeout means other processes hold the write lock: unavailable. */
static int db_error(struct registry_sqlite *s, int rc, const char *what)
{
  int status = registry_sqlite_status(rc);
  if (status == SO_OK)
    status = SO_ERR_INTERNAL;
  return registry_set_error(&s->base, status, "registry sqlite: %s: %s (%s)",
                            what, sqlite3_errmsg(s->db), sqlite3_errstr(rc));
}

/* stmt: the cached statement `id`, reset with its bindings cleared; NULL
 * with the error recorded in *rc if it cannot be prepared. */
static sqlite3_stmt *stmt(struct registry_sqlite *s, enum stmt_id id, int *rc)
{
  sqlite3_stmt *st = s->stmts[id];
  if (!st) {
    int src = sqlite3_prepare_v3(s->db, stmt_sql[id], -1,
                                 SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (src != SQLITE_OK) {
      *rc = db_error(s, src, "preparing a statement");
      return NULL;
    }
    s->stmts[id] = st;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  *rc = SO_OK;
  return st;
}

/* step: one sqlite3_step; SO_OK with *row telling whether a row came. */
static int step(struct registry_sqlite *s, sqlite3_stmt *st, bool *row,
                const char *what)
{
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
    if (row)
      *row = rc == SQLITE_ROW;
    return SO_OK;
  }
  int status = db_error(s, rc, what);
  sqlite3_reset(st);
  return status;
}

/* exec_stmt: run a statement that returns no rows of interest; *changes
 * (if not NULL) gets the number of rows it changed. */
static int exec_stmt(struct registry_sqlite *s, sqlite3_stmt *st, int *changes,
                     const char *what)
{
  int rc = sqlite3_step(st);
  while (rc == SQLITE_ROW)
    rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    int status = db_error(s, rc, what);
    sqlite3_reset(st);
    return status;
  }
  if (changes)
    *changes = sqlite3_changes(s->db);
  sqlite3_reset(st);
  return SO_OK;
}

static int simple(struct registry_sqlite *s, enum stmt_id id, const char *what)
{
  int rc;
  sqlite3_stmt *st = stmt(s, id, &rc);
  return st ? exec_stmt(s, st, NULL, what) : rc;
}

static int tx_begin(struct registry_sqlite *s, bool write)
{
  return simple(s, write ? ST_BEGIN_IMMEDIATE : ST_BEGIN,
                write ? "waiting for the write lock" : "starting a read");
}

/* tx_end: commit after success, roll back after failure; returns the
 * first failure. */
static int tx_end(struct registry_sqlite *s, int rc)
{
  if (rc == SO_OK) {
    rc = simple(s, ST_COMMIT, "committing");
    if (rc == SO_OK)
      return SO_OK;
  }
  if (!sqlite3_get_autocommit(s->db)) {
    /* Keep the first failure's message: the rollback's is less useful. */
    char saved[REGISTRY_ERRMSG_LEN];
    memcpy(saved, s->base.errmsg, sizeof(saved));
    (void)simple(s, ST_ROLLBACK, "rolling back");
    memcpy(s->base.errmsg, saved, sizeof(saved));
  }
  return rc;
}

static void bind_text(sqlite3_stmt *st, int i, const char *text)
{
  if (text)
    sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

static int parse_state(struct registry_sqlite *s, sqlite3_stmt *st, int col,
                       enum campaign_state *out)
{
  const char *name = (const char *)sqlite3_column_text(st, col);
  if (!name || campaign_state_parse(name, out) != SO_OK)
    return registry_set_error(&s->base, SO_ERR_INTERNAL,
                              "registry sqlite: unknown state '%s'",
                              name ? name : "(null)");
  return SO_OK;
}

/* state_of: the campaign's state in *out; SO_ERR_NOTFOUND if absent. Used
 * to tell "absent" from "wrong state" after an update changed nothing. */
static int state_of(struct registry_sqlite *s, const char *id,
                    enum campaign_state *out)
{
  int rc;
  sqlite3_stmt *st = stmt(s, ST_STATE, &rc);
  if (!st)
    return rc;
  bind_text(st, 1, id);
  bool row = false;
  rc = step(s, st, &row, "reading state");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = parse_state(s, st, 0, out);
  sqlite3_reset(st);
  return rc;
}

/* ---- reading campaigns ------------------------------------------------ */

static char *column_dup(sqlite3_stmt *st, int col, bool *oom)
{
  const unsigned char *text = sqlite3_column_text(st, col);
  if (!text)
    return NULL;
  char *copy = strdup((const char *)text);
  if (!copy)
    *oom = true;
  return copy;
}

static int read_campaign(struct registry_sqlite *s, sqlite3_stmt *st,
                         struct registry_campaign *c)
{
  memset(c, 0, sizeof(*c));
  bool oom = false;
  c->campaign_id = column_dup(st, 0, &oom);
  int rc = parse_state(s, st, 1, &c->state);
  c->scheduled_at_ms = sqlite3_column_int64(st, 2);
  c->channel = column_dup(st, 3, &oom);
  c->payload = column_dup(st, 4, &oom);
  c->owner = column_dup(st, 5, &oom);
  c->fence = sqlite3_column_int64(st, 6);
  c->lease_until_ms = sqlite3_column_int64(st, 7);
  c->attempts = sqlite3_column_int(st, 8);
  c->total = sqlite3_column_int64(st, 9);
  c->sent = sqlite3_column_int64(st, 10);
  c->rejected = sqlite3_column_int64(st, 11);
  c->republished = sqlite3_column_int(st, 12);
  c->republished_at_ms = sqlite3_column_int64(st, 13);
  c->progress_at_ms = sqlite3_column_int64(st, 14);
  c->updated_at_ms = sqlite3_column_int64(st, 15);
  c->paused = sqlite3_column_int(st, 16) != 0;
  c->last_error = column_dup(st, 17, &oom);
  c->registry_now_ms = sqlite3_column_int64(st, 18);
  if (oom && !rc)
    rc = registry_set_error(&s->base, SO_ERR_NOMEM, "registry sqlite: OOM");
  if (rc)
    registry_campaign_free(c);
  return rc;
}

/* read_list: every row of a bound SELECT of CAMPAIGN_COLS. */
static int read_list(struct registry_sqlite *s, sqlite3_stmt *st,
                     struct registry_campaign **out, size_t *n)
{
  struct registry_campaign *list = NULL;
  size_t count = 0, cap = 0;
  int rc = SO_OK;
  for (;;) {
    bool row = false;
    rc = step(s, st, &row, "listing campaigns");
    if (rc || !row)
      break;
    if (count == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      struct registry_campaign *grown = realloc(list, ncap * sizeof(*list));
      if (!grown) {
        rc = registry_set_error(&s->base, SO_ERR_NOMEM, "registry: OOM");
        break;
      }
      list = grown;
      cap = ncap;
    }
    rc = read_campaign(s, st, &list[count]);
    if (rc)
      break;
    count++;
  }
  sqlite3_reset(st);
  if (rc) {
    registry_campaigns_free(list, count);
    return rc;
  }
  *out = list;
  *n = count;
  return SO_OK;
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
  sqlite3_stmt *st = stmt(s, ST_FENCE_INFO, &rc);
  if (!st)
    return rc;
  bind_text(st, 1, id);
  bool row = false;
  rc = step(s, st, &row, "reading the lease");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = parse_state(s, st, 0, &fi->state);
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

/* fenced_update: the common shape of renew, set_total, complete and fail:
 * check the fence, then run `id_stmt` bound to the campaign id (and the
 * optional int64 / text second parameter). */
static int fenced_update(struct registry_sqlite *s, enum stmt_id which,
                         const char *id, int64_t fence, const int64_t *arg_i,
                         const char *arg_s, const char *what)
{
  int rc = tx_begin(s, true);
  if (rc)
    return rc;
  int64_t now = 0;
  rc = fence_check(s, id, fence, &now);
  if (!rc) {
    sqlite3_stmt *st = stmt(s, which, &rc);
    if (st) {
      bind_text(st, 1, id);
      sqlite3_bind_int64(st, 9, now);
      if (arg_i)
        sqlite3_bind_int64(st, 2, *arg_i);
      else if (arg_s)
        bind_text(st, 2, arg_s);
      rc = exec_stmt(s, st, NULL, what);
    }
  }
  return tx_end(s, rc);
}

/* ---- the ops ------------------------------------------------------------ */

static void sqlite_close(struct registry *r)
{
  struct registry_sqlite *s = to_sqlite(r);
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(s->stmts[i]);
  sqlite3_close_v2(s->db);
  free(s);
}

static int sqlite_now(struct registry *r, int64_t *now_ms)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = stmt(s, ST_NOW, &rc);
  if (!st)
    return rc;
  bool row = false;
  rc = step(s, st, &row, "reading the clock");
  if (!rc && row)
    *now_ms = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return rc;
}

static int sqlite_register(struct registry *r,
                           const struct registry_new_campaign *c,
                           enum campaign_state initial, bool *created)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc = tx_begin(s, true);
  if (rc)
    return rc;
  sqlite3_stmt *st = stmt(s, ST_REGISTER, &rc);
  int changes = 0;
  if (st) {
    bind_text(st, 1, c->campaign_id);
    bind_text(st, 2, campaign_state_name(initial));
    sqlite3_bind_int64(st, 3, c->scheduled_at_ms);
    bind_text(st, 4, c->channel);
    bind_text(st, 5, c->payload);
    rc = exec_stmt(s, st, &changes, "registering");
  }
  rc = tx_end(s, rc);
  if (!rc)
    *created = changes == 1;
  return rc;
}

/* won_update: an unfenced single UPDATE whose success is "a row changed";
 * when none did, tell absent (NOTFOUND) from "not in that state" (false). */
static int won_update(struct registry_sqlite *s, enum stmt_id which,
                      const char *id, const char *owner, int64_t ttl_ms,
                      bool *won, const char *what)
{
  int rc = tx_begin(s, true);
  if (rc)
    return rc;
  sqlite3_stmt *st = stmt(s, which, &rc);
  int changes = 0;
  if (st) {
    bind_text(st, 1, id);
    if (owner) {
      bind_text(st, 2, owner);
      sqlite3_bind_int64(st, 3, ttl_ms);
    }
    rc = exec_stmt(s, st, &changes, what);
  }
  enum campaign_state state;
  if (!rc && changes == 0)
    rc = state_of(s, id, &state);
  rc = tx_end(s, rc);
  if (!rc)
    *won = changes == 1;
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

static int sqlite_list_due(struct registry *r, int64_t ahead_ms, size_t limit,
                           struct registry_campaign **out, size_t *n)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = stmt(s, ST_LIST_DUE, &rc);
  if (!st)
    return rc;
  sqlite3_bind_int64(st, 1, ahead_ms);
  sqlite3_bind_int64(st, 2, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  return read_list(s, st, out, n);
}

/* claim_read: the row as it stands and the registry's now, and what a
 * claim makes of it: *claimable, or out->kind DONE / HELD / PAUSED. One
 * reading of the clock decides and (in sqlite_claim) sets the lease, so
 * "expired" and "new lease" are measured at the same instant. */
static int claim_read(struct registry_sqlite *s, const char *id,
                      struct registry_claim *out, bool *claimable)
{
  int rc;
  sqlite3_stmt *st = stmt(s, ST_CLAIM_INFO, &rc);
  if (!st)
    return rc;
  bind_text(st, 1, id);
  bool row = false;
  rc = step(s, st, &row, "reading the claim");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = parse_state(s, st, 0, &out->state);
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

static int sqlite_claim(struct registry *r, const char *id, const char *owner,
                        int64_t ttl_ms, struct registry_claim *out)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc = tx_begin(s, true);
  if (rc)
    return rc;
  bool claimable = false;
  rc = claim_read(s, id, out, &claimable);
  sqlite3_stmt *st = rc || !claimable ? NULL : stmt(s, ST_CLAIM, &rc);
  if (st) {
    bind_text(st, 1, id);
    bind_text(st, 2, owner);
    sqlite3_bind_int64(st, 3, ttl_ms);
    sqlite3_bind_int64(st, 9, out->registry_now_ms);
    bool row = false;
    rc = step(s, st, &row, "claiming");
    if (!rc && !row)
      rc = registry_set_error(&s->base, SO_ERR_INTERNAL,
                              "registry: claim of '%s' updated no row", id);
    if (!rc) {
      out->kind = REGISTRY_CLAIM_CLAIMED;
      out->state = CAMPAIGN_PROCESSING;
      out->fence = sqlite3_column_int64(st, 0);
      out->lease_until_ms = sqlite3_column_int64(st, 1);
      rc = exec_stmt(s, st, NULL, "claiming"); /* finish RETURNING */
    }
  }
  return tx_end(s, rc);
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
  int rc = tx_begin(s, false);
  if (rc)
    return rc;
  int64_t now = 0;
  rc = fence_check(s, id, fence, &now);
  sqlite3_stmt *st = rc ? NULL : stmt(s, ST_DELIVERY_STATE, &rc);
  for (size_t i = 0; st && !rc && i < n; i++) {
    sqlite3_reset(st);
    bind_text(st, 1, id);
    bind_text(st, 2, recipient_ids[i]);
    bool row = false;
    rc = step(s, st, &row, "reading deliveries");
    if (!rc) {
      const char *state = row ? (const char *)sqlite3_column_text(st, 0) : "";
      needs_send[i] = !state || (strcmp(state, "SENT") != 0 &&
                                 strcmp(state, "REJECTED") != 0);
    }
  }
  if (st)
    sqlite3_reset(st);
  return tx_end(s, rc);
}

static int mark_one(struct registry_sqlite *s, const char *id, int64_t now,
                    const struct registry_mark *m, int64_t *sent,
                    int64_t *rejected)
{
  int rc;
  bool final = m->state != DELIVERY_INFLIGHT;
  sqlite3_stmt *st = stmt(s, final ? ST_MARK_FINAL : ST_MARK_INFLIGHT, &rc);
  if (!st)
    return rc;
  bind_text(st, 1, id);
  bind_text(st, 2, m->recipient_id);
  sqlite3_bind_int64(st, 9, now);
  if (final) {
    bind_text(st, 3, delivery_state_names[m->state]);
    bind_text(st, 4, m->error);
  }
  int changes = 0;
  rc = exec_stmt(s, st, &changes, "marking a delivery");
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

static int sqlite_mark(struct registry *r, const char *id, int64_t fence,
                       const struct registry_mark *marks, size_t n)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc = tx_begin(s, true);
  if (rc)
    return rc;
  int64_t now = 0;
  rc = fence_check(s, id, fence, &now);
  int64_t sent = 0, rejected = 0;
  for (size_t i = 0; !rc && i < n; i++)
    rc = mark_one(s, id, now, &marks[i], &sent, &rejected);
  if (!rc && sent + rejected > 0) {
    sqlite3_stmt *st = stmt(s, ST_BUMP, &rc);
    if (st) {
      bind_text(st, 1, id);
      sqlite3_bind_int64(st, 2, sent);
      sqlite3_bind_int64(st, 3, rejected);
      sqlite3_bind_int64(st, 9, now);
      rc = exec_stmt(s, st, NULL, "counting marks");
    }
  }
  return tx_end(s, rc);
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

static int sqlite_release(struct registry *r, const char *id, int64_t fence,
                          bool count_attempt, const char *reason, int *attempts)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc = tx_begin(s, true);
  if (rc)
    return rc;
  int64_t now = 0;
  rc = fence_check(s, id, fence, &now);
  sqlite3_stmt *st = rc ? NULL : stmt(s, ST_RELEASE, &rc);
  if (st) {
    bind_text(st, 1, id);
    sqlite3_bind_int(st, 2, count_attempt ? 1 : 0);
    sqlite3_bind_int64(st, 9, now);
    bind_text(st, 3, reason);
    bool row = false;
    rc = step(s, st, &row, "releasing");
    if (!rc && row && attempts)
      *attempts = sqlite3_column_int(st, 0);
    if (!rc)
      rc = exec_stmt(s, st, NULL, "releasing");
  }
  return tx_end(s, rc);
}

static int sqlite_fail(struct registry *r, const char *id, int64_t fence,
                       const char *reason)
{
  return fenced_update(to_sqlite(r), ST_FAIL, id, fence, NULL, reason,
                       "failing");
}

/* operator_update: mark_dead, pause, resume, cancel, replay: one UPDATE
 * guarded by the allowed states; when it changes nothing, say why. */
static int operator_update(struct registry_sqlite *s, enum stmt_id which,
                           const char *id, const char *arg_s, int arg_i,
                           const char *what)
{
  int rc = tx_begin(s, true);
  if (rc)
    return rc;
  sqlite3_stmt *st = stmt(s, which, &rc);
  int changes = 0;
  if (st) {
    bind_text(st, 1, id);
    if (arg_s)
      bind_text(st, 2, arg_s);
    else if (which == ST_PAUSE)
      sqlite3_bind_int(st, 2, arg_i);
    rc = exec_stmt(s, st, &changes, what);
  }
  enum campaign_state state = CAMPAIGN_SCHEDULED;
  if (!rc && changes == 0)
    rc = state_of(s, id, &state);
  if (!rc && changes == 0 && !(which == ST_MARK_DEAD && state == CAMPAIGN_DEAD))
    rc = registry_set_error(&s->base, SO_ERR_CONFLICT,
                            "registry: %s: campaign '%s' is %s", what, id,
                            campaign_state_name(state));
  return tx_end(s, rc);
}

static int sqlite_mark_dead(struct registry *r, const char *id,
                            const char *reason)
{
  return operator_update(to_sqlite(r), ST_MARK_DEAD, id, reason, 0,
                         "marking dead");
}

static int sqlite_pause(struct registry *r, const char *id)
{
  return operator_update(to_sqlite(r), ST_PAUSE, id, NULL, 1, "pausing");
}

static int sqlite_resume(struct registry *r, const char *id)
{
  return operator_update(to_sqlite(r), ST_PAUSE, id, NULL, 0, "resuming");
}

static int sqlite_cancel(struct registry *r, const char *id)
{
  return operator_update(to_sqlite(r), ST_CANCEL, id, NULL, 0, "cancelling");
}

static int sqlite_replay(struct registry *r, const char *id)
{
  return operator_update(to_sqlite(r), ST_REPLAY, id, NULL, 0, "replaying");
}

static int sqlite_control(struct registry *r, const char *id, int64_t fence,
                          enum registry_control *out)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc = tx_begin(s, false);
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
  return tx_end(s, rc);
}

static int sqlite_get(struct registry *r, const char *id,
                      struct registry_campaign *out)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = stmt(s, ST_GET, &rc);
  if (!st)
    return rc;
  bind_text(st, 1, id);
  bool row = false;
  rc = step(s, st, &row, "reading a campaign");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = read_campaign(s, st, out);
  sqlite3_reset(st);
  return rc;
}

static int sqlite_list(struct registry *r, int state, size_t limit,
                       struct registry_campaign **out, size_t *n)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = stmt(s, state < 0 ? ST_LIST_ALL : ST_LIST_STATE, &rc);
  if (!st)
    return rc;
  sqlite3_bind_int64(st, 1, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  if (state >= 0)
    bind_text(st, 2, campaign_state_name((enum campaign_state)state));
  return read_list(s, st, out, n);
}

static int sqlite_list_overdue(struct registry *r, int64_t grace_ms,
                               size_t limit, struct registry_campaign **out,
                               size_t *n)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = stmt(s, ST_LIST_OVERDUE, &rc);
  if (!st)
    return rc;
  sqlite3_bind_int64(st, 1, grace_ms);
  sqlite3_bind_int64(st, 2, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  return read_list(s, st, out, n);
}

static int sqlite_record_republish(struct registry *r, const char *id,
                                   enum campaign_state expected_state,
                                   int64_t expected_fence, int64_t grace_ms,
                                   int64_t backoff_ms, int max_republishes,
                                   bool *won)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc = tx_begin(s, true);
  if (rc)
    return rc;
  sqlite3_stmt *st = stmt(s, ST_REPUBLISH, &rc);
  int changes = 0;
  if (st) {
    bind_text(st, 1, id);
    bind_text(st, 2, campaign_state_name(expected_state));
    sqlite3_bind_int64(st, 3, expected_fence);
    sqlite3_bind_int64(st, 4, grace_ms);
    sqlite3_bind_int64(st, 5, backoff_ms);
    sqlite3_bind_int(st, 6, max_republishes);
    rc = exec_stmt(s, st, &changes, "recording a republish");
  }
  enum campaign_state state;
  if (!rc && changes == 0)
    rc = state_of(s, id, &state);
  rc = tx_end(s, rc);
  if (!rc)
    *won = changes == 1;
  return rc;
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
    .release = sqlite_release,
    .fail = sqlite_fail,
    .mark_dead = sqlite_mark_dead,
    .pause = sqlite_pause,
    .resume = sqlite_resume,
    .cancel = sqlite_cancel,
    .control = sqlite_control,
    .replay = sqlite_replay,
    .get = sqlite_get,
    .list = sqlite_list,
    .list_overdue = sqlite_list_overdue,
    .record_republish = sqlite_record_republish,
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
  s->base.ops = &sqlite_ops;
  *out = &s->base;
  return SO_OK;
}
