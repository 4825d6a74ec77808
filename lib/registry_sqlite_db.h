/* registry_sqlite_db.h - internals of the SQLite registry backend, shared
 * by registry_sqlite.c (the ops) and registry_sqlite_db.c (statements,
 * statement cache, transactions, row readers). Nothing else includes it.
 * rsdb_ marks these internal names.
 *
 * Conventions: every function returning int returns SO_OK or a negative
 * status with the handle's errmsg filled. Statements bind the campaign id
 * as ?1; statements that run after a fence check take the step's registry
 * time as ?9 (see fence_check in registry_sqlite.c). */
#ifndef SENDONCE_REGISTRY_SQLITE_DB_H
#define SENDONCE_REGISTRY_SQLITE_DB_H

#include <stdbool.h>

#include <sqlite3.h>

#include "registry_backend.h"
#include "registry_sqlite_schema.h"

enum stmt_id {
  ST_BEGIN,
  ST_BEGIN_IMMEDIATE,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_SAVEPOINT,
  ST_SAVEPOINT_RELEASE,
  ST_SAVEPOINT_ROLLBACK,
  ST_NOW,
  ST_STATE,
  ST_REGISTER,
  ST_REGISTER_CLAIMED,
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
  ST_MARK_INFLIGHT_4, /* the same marks, 4, 16 or 64 rows per statement */
  ST_MARK_INFLIGHT_16,
  ST_MARK_INFLIGHT_64,
  ST_MARK_FINAL_4,
  ST_MARK_FINAL_16,
  ST_MARK_FINAL_64,
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
  ST_MARK_SENT_4, /* SENT for INFLIGHT rows: a plain UPDATE, 4/16/64 ids */
  ST_MARK_SENT_16,
  ST_MARK_SENT_64,
  ST_COUNT
};

struct rsg_group;

struct registry_sqlite {
  struct registry base;
  sqlite3 *db;
  struct registry_sqlite_busy busy;
  sqlite3_stmt *stmts[ST_COUNT];
  struct rsg_group *group; /* write steps of this process on this file */
  /* The group commit's delay when this handle leads (0: none), and the
   * group's epoch in which this handle last queued a job (both
   * registry_sqlite_group.c). */
  int64_t commit_delay_ns;
  unsigned rsg_epoch;
  /* registry_options.publish_async_commit: the publish steps run on `db`
   * (synchronous=NORMAL), outside the group (registry_sqlite.c). */
  bool publish_async;
};

/* rsdb_close: finalize the cached statements and close the connection
 * (NULL-safe); the struct itself is the caller's. */
void rsdb_close(struct registry_sqlite *s);

/* rsdb_error: record an SQLite failure with what we were doing; returns
 * the mapped status (BUSY past the busy timeout -> SO_ERR_UNAVAILABLE). */
int rsdb_error(struct registry_sqlite *s, int rc, const char *what);

/* rsdb_stmt: the cached statement `id`, reset with its bindings cleared;
 * NULL with the status in *rc if it cannot be prepared. */
sqlite3_stmt *rsdb_stmt(struct registry_sqlite *s, enum stmt_id id, int *rc);

/* rsdb_step: one sqlite3_step; *row (if not NULL) says whether a row came. */
int rsdb_step(struct registry_sqlite *s, sqlite3_stmt *st, bool *row,
              const char *what);

/* rsdb_exec: step to the end and reset; *changes (if not NULL) gets the
 * number of rows the statement changed. */
int rsdb_exec(struct registry_sqlite *s, sqlite3_stmt *st, int *changes,
              const char *what);

/* rsdb_mark_chunk: k (4, 16 or 64) consecutive marks m[0..k) in one
 * statement: INFLIGHT when final_state is NULL, else all final_state
 * ("SENT" or "REJECTED") with each mark's error; stamped `now`. *changes
 * gets how many rows it wrote (inserted, or updated because they were
 * still pending). */
int rsdb_mark_chunk(struct registry_sqlite *s, const char *id, int64_t now,
                    const char *final_state, const struct registry_mark *m,
                    size_t k, int *changes);

/* rsdb_mark_sent_chunk: k (4, 16 or 64) SENT marks m[0..k) as one plain
 * UPDATE of the rows that are INFLIGHT; *changes gets how many it moved
 * (absent rows and rows already final are left alone). */
int rsdb_mark_sent_chunk(struct registry_sqlite *s, const char *id, int64_t now,
                         const struct registry_mark *m, size_t k, int *changes);

/* rsdb_begin: BEGIN IMMEDIATE (write) or BEGIN (read). rsdb_end: commit
 * when rc is SO_OK, else roll back keeping the first failure's message;
 * returns the first failure. */
int rsdb_begin(struct registry_sqlite *s, bool write);
int rsdb_end(struct registry_sqlite *s, int rc);

/* rsdb_savepoint: inside a write transaction, open the savepoint of one
 * group-commit job. rsdb_savepoint_end: release it when the job's rc is
 * SO_OK, else roll back to it (undoing only that job's writes) and
 * release it. Returns SO_OK when the transaction can go on, else the
 * failure that ends it (not the job's own rc). */
int rsdb_savepoint(struct registry_sqlite *s);
int rsdb_savepoint_end(struct registry_sqlite *s, int rc);

/* rsdb_bind_text: bind text (SQLITE_STATIC: it must outlive the step) or
 * NULL. */
void rsdb_bind_text(sqlite3_stmt *st, int i, const char *text);

/* rsdb_parse_state: column `col` as a campaign state name. */
int rsdb_parse_state(struct registry_sqlite *s, sqlite3_stmt *st, int col,
                     enum campaign_state *out);

/* rsdb_state_of: a campaign's state; SO_ERR_NOTFOUND if absent. */
int rsdb_state_of(struct registry_sqlite *s, const char *id,
                  enum campaign_state *out);

/* rsdb_read_campaign: the current row of a SELECT of the campaign columns
 * (ST_GET, ST_LIST_*) into *c (owned; registry_campaign_free). */
int rsdb_read_campaign(struct registry_sqlite *s, sqlite3_stmt *st,
                       struct registry_campaign *c);

/* rsdb_read_list: every row of such a bound SELECT, then reset. *out is
 * an owned array of *n (registry_campaigns_free). */
int rsdb_read_list(struct registry_sqlite *s, sqlite3_stmt *st,
                   struct registry_campaign **out, size_t *n);

#endif /* SENDONCE_REGISTRY_SQLITE_DB_H */
