/* registry_sqlite_db.c - the SQLite registry's statements, statement
 * cache, transactions and row readers (see registry_sqlite_db.h). */
#include "registry_sqlite_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry_sqlite_schema.h"

#define NOW REGISTRY_SQLITE_NOW
#define CAMPAIGN_COLS                                                  \
  "campaign_id, state, scheduled_at, channel, payload, owner, fence, " \
  "lease_until, attempts, total, sent, rejected, republished, "        \
  "republished_at, progress_at, updated_at, paused, last_error, " NOW

/* Multi-row marks: ST_MARK_INFLIGHT and ST_MARK_FINAL for 4, 16 or 64
 * recipients in one statement. Each statement execution has a fixed cost
 * (cursors opened and allocated, the record buffers, the halt) about as
 * large as a row's own work, so writing a run of marks with one statement
 * per row spent half its instructions on statements. ?1 the campaign id,
 * ?2 the step's time, ?3 (final) the state; then, in the order the rows
 * appear, each row's anonymous parameters (SQLite numbers a bare ? one
 * past the largest so far): its recipient id (INFLIGHT), or its recipient
 * id and error (final). Rows are applied in order, as separate statements
 * would be: a later row of the same id sees the earlier one. */
#define MARK_INFLIGHT_COLS                                            \
  "INSERT INTO deliveries (campaign_id, updated_at, state, attempts," \
  " recipient_id) VALUES "
#define MARK_INFLIGHT_ROW "(?1, ?2, 'INFLIGHT', 1, ?)"
#define MARK_INFLIGHT_UPSERT                                   \
  " ON CONFLICT (campaign_id, recipient_id) DO UPDATE SET"     \
  " attempts = attempts + 1, updated_at = excluded.updated_at" \
  " WHERE state = 'INFLIGHT'"
#define MARK_FINAL_COLS                                               \
  "INSERT INTO deliveries (campaign_id, updated_at, state, attempts," \
  " recipient_id, error) VALUES "
#define MARK_FINAL_ROW "(?1, ?2, ?3, 1, ?, ?)"
#define MARK_FINAL_UPSERT                                  \
  " ON CONFLICT (campaign_id, recipient_id) DO UPDATE SET" \
  " state = excluded.state, error = excluded.error,"       \
  " updated_at = excluded.updated_at WHERE state NOT IN ('SENT', 'REJECTED')"
#define MARK_SENT_HEAD                                                  \
  "UPDATE deliveries SET state = 'SENT', error = NULL, updated_at = ?2" \
  " WHERE campaign_id = ?1 AND state = 'INFLIGHT' AND recipient_id IN ("
#define ROWS_4(r) r "," r "," r "," r
#define ROWS_16(r) ROWS_4(r) "," ROWS_4(r) "," ROWS_4(r) "," ROWS_4(r)
#define ROWS_64(r) ROWS_16(r) "," ROWS_16(r) "," ROWS_16(r) "," ROWS_16(r)

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT job",
    [ST_SAVEPOINT_RELEASE] = "RELEASE job",
    [ST_SAVEPOINT_ROLLBACK] = "ROLLBACK TO job",
    [ST_NOW] = "SELECT " NOW,
    [ST_STATE] = "SELECT state FROM campaigns WHERE campaign_id = ?1",
    [ST_REGISTER] =
        "INSERT INTO campaigns (campaign_id, state, scheduled_at, channel,"
        " payload, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, " NOW
        ", " NOW ") ON CONFLICT (campaign_id) DO NOTHING",
    /* A campaign first seen from its trigger, inserted already claimed:
     * what ST_REGISTER then ST_CLAIM make of a new row (fence 1), in one
     * write. ?2 owner, ?6 the lease ttl, ?9 the step's time. */
    [ST_REGISTER_CLAIMED] =
        "INSERT INTO campaigns (campaign_id, state, scheduled_at, channel,"
        " payload, owner, fence, lease_until, progress_at, created_at,"
        " updated_at) VALUES (?1, 'PROCESSING', ?3, ?4, ?5, ?2, 1, ?9 + ?6,"
        " ?9, ?9, ?9) ON CONFLICT (campaign_id) DO NOTHING",
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
        " WHERE campaign_id = ?1",
    [ST_CLAIM_INFO] = "SELECT state, fence, lease_until, paused, " NOW
                      " FROM campaigns WHERE campaign_id = ?1",
    [ST_FENCE_INFO] = "SELECT state, fence, lease_until, paused, " NOW
                      ", sent, rejected FROM campaigns WHERE campaign_id = ?1",
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
    [ST_MARK_INFLIGHT_4] =
        MARK_INFLIGHT_COLS ROWS_4(MARK_INFLIGHT_ROW) MARK_INFLIGHT_UPSERT,
    [ST_MARK_INFLIGHT_16] =
        MARK_INFLIGHT_COLS ROWS_16(MARK_INFLIGHT_ROW) MARK_INFLIGHT_UPSERT,
    [ST_MARK_INFLIGHT_64] =
        MARK_INFLIGHT_COLS ROWS_64(MARK_INFLIGHT_ROW) MARK_INFLIGHT_UPSERT,
    [ST_MARK_FINAL_4] =
        MARK_FINAL_COLS ROWS_4(MARK_FINAL_ROW) MARK_FINAL_UPSERT,
    [ST_MARK_FINAL_16] =
        MARK_FINAL_COLS ROWS_16(MARK_FINAL_ROW) MARK_FINAL_UPSERT,
    [ST_MARK_FINAL_64] =
        MARK_FINAL_COLS ROWS_64(MARK_FINAL_ROW) MARK_FINAL_UPSERT,
    [ST_BUMP] =
        "UPDATE campaigns SET sent = sent + ?2, rejected = rejected"
        " + ?3, progress_at =  ?9 , updated_at =  ?9"
        " WHERE campaign_id = ?1",
    [ST_SET_TOTAL] =
        "UPDATE campaigns SET total = ?2, updated_at =  ?9"
        " WHERE campaign_id = ?1",
    /* ?2: the total when finishing; NULL (complete) keeps it. */
    [ST_COMPLETE] =
        "UPDATE campaigns SET state = 'DONE', owner = NULL,"
        " lease_until = 0, total = COALESCE(?2, total), updated_at =  ?9"
        " WHERE campaign_id = ?1",
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
    [ST_MARK_SENT_4] = MARK_SENT_HEAD ROWS_4("?") ")",
    [ST_MARK_SENT_16] = MARK_SENT_HEAD ROWS_16("?") ")",
    [ST_MARK_SENT_64] = MARK_SENT_HEAD ROWS_64("?") ")",
    [ST_REPUBLISH] =
        "UPDATE campaigns SET republished = republished + 1,"
        " republished_at = " NOW ", updated_at = " NOW
        " WHERE campaign_id = ?1 AND state = ?2 AND fence = ?3"
        " AND republished < ?6 AND (republished_at = 0 OR republished_at "
        "<= " NOW " - ?5) AND (state <> 'PROCESSING' OR lease_until <= " NOW
        " - ?4)",
};

void rsdb_close(struct registry_sqlite *s)
{
  for (int i = 0; i < ST_COUNT; i++) {
    sqlite3_finalize(s->stmts[i]);
    s->stmts[i] = NULL;
  }
  sqlite3_close_v2(s->db);
  s->db = NULL;
}

/* Record an SQLite failure with what we were doing; BUSY past the busy
 * timeout means other processes hold the write lock: unavailable. */
int rsdb_error(struct registry_sqlite *s, int rc, const char *what)
{
  int status = registry_sqlite_status(rc);
  if (status == SO_OK)
    status = SO_ERR_INTERNAL;
  return registry_set_error(&s->base, status, "registry sqlite: %s: %s (%s)",
                            what, sqlite3_errmsg(s->db), sqlite3_errstr(rc));
}

/* stmt: the cached statement `id`, reset with its bindings cleared; NULL
 * with the error recorded in *rc if it cannot be prepared. */
sqlite3_stmt *rsdb_stmt(struct registry_sqlite *s, enum stmt_id id, int *rc)
{
  sqlite3_stmt *st = s->stmts[id];
  if (!st) {
    int src = sqlite3_prepare_v3(s->db, stmt_sql[id], -1,
                                 SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (src != SQLITE_OK) {
      *rc = rsdb_error(s, src, "preparing a statement");
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
int rsdb_step(struct registry_sqlite *s, sqlite3_stmt *st, bool *row,
              const char *what)
{
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
    if (row)
      *row = rc == SQLITE_ROW;
    return SO_OK;
  }
  int status = rsdb_error(s, rc, what);
  sqlite3_reset(st);
  return status;
}

/* exec_stmt: run a statement that returns no rows of interest; *changes
 * (if not NULL) gets the number of rows it changed. */
int rsdb_exec(struct registry_sqlite *s, sqlite3_stmt *st, int *changes,
              const char *what)
{
  int rc = sqlite3_step(st);
  while (rc == SQLITE_ROW)
    rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    int status = rsdb_error(s, rc, what);
    sqlite3_reset(st);
    return status;
  }
  if (changes)
    *changes = sqlite3_changes(s->db);
  sqlite3_reset(st);
  return SO_OK;
}

int rsdb_mark_chunk(struct registry_sqlite *s, const char *id, int64_t now,
                    const char *final_state, const struct registry_mark *m,
                    size_t k, int *changes)
{
  static const enum stmt_id stmts[2][3] = {
      {ST_MARK_INFLIGHT_4, ST_MARK_INFLIGHT_16, ST_MARK_INFLIGHT_64},
      {ST_MARK_FINAL_4, ST_MARK_FINAL_16, ST_MARK_FINAL_64},
  };
  bool final = final_state != NULL;
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s,
                               stmts[final][k == 64   ? 2
                                            : k == 16 ? 1
                                                      : 0],
                               &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, now);
  if (final)
    rsdb_bind_text(st, 3, final_state);
  for (size_t j = 0; j < k; j++) {
    if (final) {
      rsdb_bind_text(st, 4 + 2 * (int)j, m[j].recipient_id);
      rsdb_bind_text(st, 5 + 2 * (int)j, m[j].error);
    } else {
      rsdb_bind_text(st, 3 + (int)j, m[j].recipient_id);
    }
  }
  return rsdb_exec(s, st, changes, "marking deliveries");
}

int rsdb_mark_sent_chunk(struct registry_sqlite *s, const char *id, int64_t now,
                         const struct registry_mark *m, size_t k, int *changes)
{
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s,
                               k == 64   ? ST_MARK_SENT_64
                               : k == 16 ? ST_MARK_SENT_16
                                         : ST_MARK_SENT_4,
                               &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, now);
  for (size_t j = 0; j < k; j++)
    rsdb_bind_text(st, 3 + (int)j, m[j].recipient_id);
  return rsdb_exec(s, st, changes, "marking deliveries sent");
}

static int rsdb_simple(struct registry_sqlite *s, enum stmt_id id,
                       const char *what)
{
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, id, &rc);
  return st ? rsdb_exec(s, st, NULL, what) : rc;
}

int rsdb_begin(struct registry_sqlite *s, bool write)
{
  return rsdb_simple(s, write ? ST_BEGIN_IMMEDIATE : ST_BEGIN,
                     write ? "waiting for the write lock" : "starting a read");
}

/* tx_end: commit after success, roll back after failure; returns the
 * first failure. */
int rsdb_end(struct registry_sqlite *s, int rc)
{
  if (rc == SO_OK) {
    rc = rsdb_simple(s, ST_COMMIT, "committing");
    if (rc == SO_OK)
      return SO_OK;
  }
  if (!sqlite3_get_autocommit(s->db)) {
    /* Keep the first failure's message: the rollback's is less useful. */
    char saved[REGISTRY_ERRMSG_LEN];
    memcpy(saved, s->base.errmsg, sizeof(saved));
    (void)rsdb_simple(s, ST_ROLLBACK, "rolling back");
    memcpy(s->base.errmsg, saved, sizeof(saved));
  }
  return rc;
}

int rsdb_savepoint(struct registry_sqlite *s)
{
  return rsdb_simple(s, ST_SAVEPOINT, "opening a savepoint");
}

int rsdb_savepoint_end(struct registry_sqlite *s, int rc)
{
  if (rc != SO_OK) {
    rc = rsdb_simple(s, ST_SAVEPOINT_ROLLBACK, "undoing a failed step");
    if (rc)
      return rc;
  }
  return rsdb_simple(s, ST_SAVEPOINT_RELEASE, "releasing a savepoint");
}

void rsdb_bind_text(sqlite3_stmt *st, int i, const char *text)
{
  if (text)
    sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

int rsdb_parse_state(struct registry_sqlite *s, sqlite3_stmt *st, int col,
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
int rsdb_state_of(struct registry_sqlite *s, const char *id,
                  enum campaign_state *out)
{
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, ST_STATE, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  bool row = false;
  rc = rsdb_step(s, st, &row, "reading state");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = rsdb_parse_state(s, st, 0, out);
  sqlite3_reset(st);
  return rc;
}

/* ---- reading campaigns ------------------------------------------------ */

static char *rsdb_column_dup(sqlite3_stmt *st, int col, bool *oom)
{
  const unsigned char *text = sqlite3_column_text(st, col);
  if (!text)
    return NULL;
  char *copy = strdup((const char *)text);
  if (!copy)
    *oom = true;
  return copy;
}

int rsdb_read_campaign(struct registry_sqlite *s, sqlite3_stmt *st,
                       struct registry_campaign *c)
{
  memset(c, 0, sizeof(*c));
  bool oom = false;
  c->campaign_id = rsdb_column_dup(st, 0, &oom);
  int rc = rsdb_parse_state(s, st, 1, &c->state);
  c->scheduled_at_ms = sqlite3_column_int64(st, 2);
  c->channel = rsdb_column_dup(st, 3, &oom);
  c->payload = rsdb_column_dup(st, 4, &oom);
  c->owner = rsdb_column_dup(st, 5, &oom);
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
  c->last_error = rsdb_column_dup(st, 17, &oom);
  c->registry_now_ms = sqlite3_column_int64(st, 18);
  if (oom && !rc)
    rc = registry_set_error(&s->base, SO_ERR_NOMEM, "registry sqlite: OOM");
  if (rc)
    registry_campaign_free(c);
  return rc;
}

/* read_list: every row of a bound SELECT of CAMPAIGN_COLS. */
int rsdb_read_list(struct registry_sqlite *s, sqlite3_stmt *st,
                   struct registry_campaign **out, size_t *n)
{
  struct registry_campaign *list = NULL;
  size_t count = 0, cap = 0;
  int rc = SO_OK;
  for (;;) {
    bool row = false;
    rc = rsdb_step(s, st, &row, "listing campaigns");
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
    rc = rsdb_read_campaign(s, st, &list[count]);
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
