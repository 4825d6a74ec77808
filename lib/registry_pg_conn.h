/* registry_pg_conn.h - the PostgreSQL registry's connection layer: connect
 * and reconnect, lazily prepared statements, SQLSTATE -> status mapping,
 * bounded retries and schema migrations. Internal to registry_pg*.c.
 *
 * Reconnect semantics: every op starts with pg_conn_ready(), which notices a
 * connection the server closed while we were idle (restart,
 * pg_terminate_backend) and reconnects before running anything, so that
 * op runs on the new connection. A connection lost *during* a statement is
 * ambiguous (the statement may have committed): an idempotent op is run
 * once more on a new connection, any other op returns SO_ERR_UNAVAILABLE
 * and the next call reconnects. While the server is down every op returns
 * SO_ERR_UNAVAILABLE after at most connect_timeout.
 */
#ifndef SENDONCE_REGISTRY_PG_CONN_H
#define SENDONCE_REGISTRY_PG_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "registry_backend.h"

/* The registry's clock as an SQL expression: integer milliseconds since
 * the epoch on the SERVER's clock, so workers on hosts with skewed clocks
 * all see one clock.
 *
 * clock_timestamp(), not now(): now() is frozen at the start of the
 * transaction, however long ago that was, so in any transaction of more
 * than one statement (the migration; any op someone wraps in BEGIN later)
 * now() + ttl would grant a lease already partly used up and judge a lease
 * live after it expired. clock_timestamp() is the instant the expression
 * is evaluated. Each op is one autocommitted statement that reads it once,
 * in a one-row subquery, so the decision (lease_until <= now) and the
 * write (lease_until = now + ttl, RETURNING now) use one instant. That
 * instant is the statement's start: a statement that waited on a row lock
 * decides with a time older by the wait (bounded by statement_timeout).
 * That errs the safe way: a claim may see a lease that expired during the
 * wait as still live (HELD, the trigger comes again), and a fenced write
 * is protected from a takeover by the row lock and the fence, which
 * PostgreSQL re-checks on the newest row version after the wait. */
#define PG_NOW_MS "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

/* The planner settings of a registry connection.
 *
 * plan_cache_mode = force_generic_plan: a prepared statement is planned
 * once per connection. The hot statements (marks, pending) are written
 * so that their generic plan looks each recipient up by its key (the
 * tests check the generic plans), so planning them again for every batch
 * buys nothing and costs 0.5-1 ms of the server's CPU per batch, as much
 * as executing a batch of 100. With auto, PostgreSQL keeps planning when
 * the custom plans look cheaper, which depends on the batch's size and
 * the statement's shape: one variant of the mark statement, tried with a
 * recipient per batch, cost 0.72 ms of server CPU per batch under auto
 * against 0.22-0.26 ms with its generic plan.
 *
 * enable_seqscan and enable_bitmapscan off: every registry statement
 * reads a few rows by a key, and must go on doing so while deliveries
 * grows by thousands of rows a second under statistics (and generic
 * plans) made when it was small: a plan that scans a table that looked
 * tiny, or a campaign's whole primary-key range, grows with the
 * campaign. With these off the planner takes the key's index (or, for
 * the mark statements' UPDATEs, the row addresses those lookups found),
 * whatever the statistics; where no index fits (an operator's list of
 * all campaigns) it still scans, as these only add a cost. */
#define PG_SESSION_PLANNER                                               \
  "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; " \
  "SET enable_bitmapscan = off"

/* Upper bound of statement ids (enum pg_stmt below). */
#define PG_STMT_MAX 40

struct registry_pg {
  struct registry base;       /* first: registry.c casts */
  PGconn *conn;               /* never NULL once open */
  int statement_timeout_ms;   /* 0 = none */
  bool prepared[PG_STMT_MAX]; /* per connection: cleared on reconnect */
  bool lost;      /* the connection broke during the current attempt */
  bool retryable; /* the last failure was 40001/40P01 (retry whole op) */
  bool doomed;    /* the server announced it is closing the connection */
  bool down;      /* the last reconnect failed (logged once) */
  /* registry_options.publish_async_commit: the publish steps run as
   * S_*_PUBLISHED_ASYNC. */
  bool publish_async;

  /* The mark statements' (registry_pg_mark_ops.c, mark_run). */
  bool unique_violation; /* the last failure was 23505 */
  bool marks_check;      /* look first INFLIGHT marks' rows up first */
};

/* pg_conn_open: connect (conninfo expanded as dbname, password added from
 * opt, connect_timeout and application_name defaulted), set the session
 * up and migrate the schema. On failure err is filled and r->conn may be
 * non-NULL (the caller PQfinish()es it). */
int pg_conn_open(struct registry_pg *r, const struct registry_options *opt,
                 char *err, size_t errlen) SO_MUST_CHECK;

/* pg_conn_ready: start an attempt: clear the per-attempt flags and make
 * sure the connection is usable, reconnecting if the server dropped it.
 * SO_ERR_UNAVAILABLE (errmsg set) while the server cannot be reached. */
int pg_conn_ready(struct registry_pg *r) SO_MUST_CHECK;

/* pg_conn_again: after an attempt that returned `rc`, should the op run
 * again? Yes for a serialization failure or deadlock (a few times, with a
 * short pause), and once for a connection lost mid-statement if the op is
 * `idempotent`. *attempt counts attempts made. */
bool pg_conn_again(struct registry_pg *r, int rc, int *attempt,
                   bool idempotent);

/* pg_conn_exec: run statement `id` (prepared on first use per connection)
 * with text parameters. On success *out (if out) owns the result (PQclear);
 * on failure errmsg says what `what` failed with and the SQLSTATE is
 * mapped to a status. */
int pg_conn_exec(struct registry_pg *r, int id, const char *sql,
                 const char *what, int nparams, const char *const *values,
                 PGresult **out) SO_MUST_CHECK;

/* pg_conn_simple: run SQL without parameters through the simple query
 * protocol (several statements allowed); result discarded. */
int pg_conn_simple(struct registry_pg *r, const char *sql,
                   const char *what) SO_MUST_CHECK;

/* pg_conn_status: map a failed result's SQLSTATE to a status, noting
 * connection loss and retryable failures in r. */
int pg_conn_status(struct registry_pg *r, const PGresult *res);

/* The PostgreSQL schema version this program knows: the number of its
 * migrations. Each backend counts its own, because a backend's physical
 * schema can change (storage parameters, table layout) without the
 * other's. A database that is newer is refused. */
#define REGISTRY_PG_SCHEMA_VERSION 3

/* pg_migrate: apply the schema migrations up to REGISTRY_PG_SCHEMA_VERSION in
 * one transaction under an advisory lock (registry_pg_schema.c). A newer
 * database gives SO_ERR_SCHEMA. */
int pg_migrate(struct registry_pg *r, char *err, size_t errlen) SO_MUST_CHECK;

/* registry_pg_migration: the SQL of migration `version` (1-based: it
 * brings the schema from version-1 to version), NULL if there is none.
 * For tests that build an older schema. */
const char *registry_pg_migration(int version);

/* ---- the statements (registry_pg_schema.c) ------------------------ */

/* Every statement an op runs, prepared once per connection. */
enum pg_stmt {
  S_NOW,
  S_PEEK,
  S_REGISTER,
  S_BEGIN_PUBLISH,
  S_MARK_PUBLISHED,
  S_BEGIN_PUBLISH_ASYNC, /* the same two, committed asynchronously */
  S_MARK_PUBLISHED_ASYNC,
  S_LIST_DUE,
  S_CLAIM,
  S_REGISTER_CLAIM,
  S_RENEW,
  S_PENDING,
  S_MARK,
  S_MARK_PENDING,
  S_MARK_FINISH,
  S_MARK_FINISH_SENT,
  S_REGISTER_CLAIM_MARK,
  S_REGISTER_CLAIM_MARK_ONCE,
  S_CLAIM_MARK,
  S_SET_TOTAL,
  S_COMPLETE,
  S_FINISH,
  S_RELEASE,
  S_FAIL,
  S_MARK_DEAD,
  S_PAUSE,
  S_RESUME,
  S_CANCEL,
  S_REPLAY,
  S_GET,
  S_LIST,
  S_LIST_OVERDUE,
  S_REPUBLISH,
  S_COUNT,
};

extern const char *const registry_pg_sql[S_COUNT];

/* Column positions of the campaign rows that S_GET, S_LIST, S_LIST_DUE and
 * S_LIST_OVERDUE return (the last is the registry's now). */
enum {
  COL_ID,
  COL_STATE,
  COL_SCHEDULED,
  COL_CHANNEL,
  COL_PAYLOAD,
  COL_OWNER,
  COL_FENCE,
  COL_LEASE,
  COL_ATTEMPTS,
  COL_TOTAL,
  COL_SENT,
  COL_REJECTED,
  COL_REPUBLISHED,
  COL_REPUBLISHED_AT,
  COL_PROGRESS,
  COL_UPDATED,
  COL_PAUSED,
  COL_ERROR,
  COL_NOW,
};

/* ---- text-format helpers ------------------------------------------ */

/* A growable buffer with a hard cap, for array literals. */
struct pg_buf {
  char *data;
  size_t len;
  size_t cap;
  bool overflow; /* an append failed: the buffer is unusable */
};

/* pg_buf_array: build the text literal of a PostgreSQL text[] from n
 * strings taken at `stride` bytes apart starting at `first` (a pointer to a
 * `const char *` member), NULL elements written as NULL. */
int pg_buf_array(struct pg_buf *b, const void *first, size_t stride,
                 size_t n) SO_MUST_CHECK;
void pg_buf_free(struct pg_buf *b);

/* pg_get_i64 / pg_get_bool: a field of a text-format result; a NULL field
 * reads as 0 / false. */
int64_t pg_get_i64(const PGresult *res, int row, int col);
bool pg_get_bool(const PGresult *res, int row, int col);

#endif /* SENDONCE_REGISTRY_PG_CONN_H */
