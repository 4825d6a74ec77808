/* registry_sqlite_schema.c - open an SQLite registry and migrate its
 * schema.
 *
 * Durability: WAL with synchronous=FULL. A consumer acks its trigger as
 * soon as registry_claim returns, and a mark tells the sender a recipient
 * must never be sent again; both must survive not only a crash of the
 * process (WAL + NORMAL would do) but a power loss, or an acked campaign
 * could fall back to PUBLISHED with no trigger anywhere, and a SENT mark
 * could be forgotten. FULL costs one fsync of the WAL per commit; marks are
 * batched, so that is one fsync per batch. The one exception is the
 * publisher daemon's publish lease and PUBLISHED mark, whose loss costs at
 * most a duplicate trigger (registry.h, registry_begin_publish): its
 * handle's own connection is relaxed (registry_sqlite_relax). */
#include "registry_sqlite_schema.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "registry_backend.h"

#define DEFAULT_BUSY_TIMEOUT_MS 5000

/* The larger checkpoint threshold of a relaxed connection (see
 * registry_sqlite_relax), in WAL pages. */
#define RELAXED_CHECKPOINT_PAGES (4 * REGISTRY_SQLITE_CHECKPOINT_PAGES)

/* Migration N brings the schema from version N-1 to N. Append only: a
 * released migration is never edited. States are stored as their names,
 * so an operator reading the database with sqlite3 sees what we see.
 * Both state columns are checked with ORs, not IN (...): SQLite evaluates
 * an IN list of three or more through a temporary b-tree on every row
 * written, which was a third of the consumer's instructions for
 * deliveries.state (docs/BENCHMARKS.md) and ~33,000 instructions per
 * campaigns row written with its state (three per one-recipient
 * campaign: register, claim, complete). */
static const char *const migrations[] = {
    /* 1: campaigns and their deliveries */
    "CREATE TABLE campaigns ("
    " campaign_id TEXT PRIMARY KEY NOT NULL,"
    " state TEXT NOT NULL CHECK (state = 'SCHEDULED' OR state = 'PUBLISHED'"
    "   OR state = 'PROCESSING' OR state = 'DONE' OR state = 'DEAD'),"
    " scheduled_at INTEGER NOT NULL,"
    " channel TEXT NOT NULL,"
    " payload TEXT NOT NULL,"
    " owner TEXT,"
    " fence INTEGER NOT NULL DEFAULT 0,"
    " lease_until INTEGER NOT NULL DEFAULT 0,"
    " publish_owner TEXT,"
    " publish_until INTEGER NOT NULL DEFAULT 0,"
    " paused INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " total INTEGER NOT NULL DEFAULT -1,"
    " sent INTEGER NOT NULL DEFAULT 0,"
    " rejected INTEGER NOT NULL DEFAULT 0,"
    " republished INTEGER NOT NULL DEFAULT 0,"
    " republished_at INTEGER NOT NULL DEFAULT 0,"
    " progress_at INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " last_error TEXT);"
    "CREATE INDEX campaigns_state_due ON campaigns (state, scheduled_at);"
    "CREATE TABLE deliveries ("
    " campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id)"
    "   ON DELETE CASCADE,"
    " recipient_id TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state = 'INFLIGHT' OR state = 'SENT'"
    "   OR state = 'REJECTED'),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " error TEXT,"
    " updated_at INTEGER NOT NULL,"
    " PRIMARY KEY (campaign_id, recipient_id));",
    /* 2: deliveries WITHOUT ROWID, keyed by (campaign_id, recipient_id).
     * As a rowid table with a TEXT primary key it kept the key in a second
     * b-tree (its autoindex): every mark walked the autoindex, then the
     * table, and every new row was written to both. SQLite's documented
     * table rebuild (create new, copy, drop old, rename), run by migrate()
     * with foreign keys off and checked with foreign_key_check before it
     * commits; the FK to campaigns and its ON DELETE CASCADE are as before.
     * campaigns stays a rowid table: its payload (the whole campaign-due
     * body) makes rows of kilobytes, which in a WITHOUT ROWID table spill
     * to overflow pages past ~1,000 bytes (not ~4,000), and every UPDATE
     * of such a row rewrites it whole instead of in place. Measured, the
     * registry steps of a one-recipient campaign with a 3,000-byte payload:
     * 308k instructions before, 590k with both tables rebuilt, 295k with
     * deliveries alone (120 bytes: 266k, 255k, 253k). */
    "CREATE TABLE deliveries_v2 ("
    " campaign_id TEXT NOT NULL REFERENCES campaigns (campaign_id)"
    "   ON DELETE CASCADE,"
    " recipient_id TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state = 'INFLIGHT' OR state = 'SENT'"
    "   OR state = 'REJECTED'),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " error TEXT,"
    " updated_at INTEGER NOT NULL,"
    " PRIMARY KEY (campaign_id, recipient_id)) WITHOUT ROWID;"
    "INSERT INTO deliveries_v2 (campaign_id, recipient_id, state, attempts,"
    " error, updated_at)"
    " SELECT campaign_id, recipient_id, state, attempts, error, updated_at"
    " FROM deliveries;"
    "DROP TABLE deliveries;"
    "ALTER TABLE deliveries_v2 RENAME TO deliveries;",
};

#define MIGRATION_COUNT ((int)(sizeof(migrations) / sizeof(migrations[0])))

_Static_assert(MIGRATION_COUNT == REGISTRY_SQLITE_SCHEMA_VERSION,
               "one migration per schema version");

int registry_sqlite_status(int sqlite_rc)
{
  switch (sqlite_rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
      return SO_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return SO_ERR_UNAVAILABLE;
    case SQLITE_NOMEM:
      return SO_ERR_NOMEM;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return SO_ERR_IO;
    default:
      return SO_ERR_INTERNAL;
  }
}

/* SQLite's own busy handler backs off to 100 ms sleeps, long next to a
 * registry step of about a millisecond: with eight workers most of the
 * time went to sleeping while the lock was free. Ours polls every
 * 0.5-1.5 ms (jittered, so waiters do not wake in lockstep) until the
 * timeout, then SQLite returns SQLITE_BUSY (SO_ERR_UNAVAILABLE). */
static int64_t elapsed_ms(const struct timespec *since)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)(now.tv_sec - since->tv_sec) * 1000 +
         (now.tv_nsec - since->tv_nsec) / 1000000;
}

static int busy_cb(void *arg, int count)
{
  struct registry_sqlite_busy *busy = arg;
  if (count == 0)
    clock_gettime(CLOCK_MONOTONIC, &busy->start);
  else if (elapsed_ms(&busy->start) >= busy->timeout_ms)
    return 0;
  struct timespec pause = {0, 500000 + (long)(rand() % 1000) * 1000};
  nanosleep(&pause, NULL);
  return 1;
}

static int exec_sql(sqlite3 *db, const char *sql, const char *what, char *err,
                    size_t errlen)
{
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "registry sqlite: %s: %s", what,
             msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return registry_sqlite_status(rc);
  }
  return SO_OK;
}

static int read_version(sqlite3 *db, int *version, char *err, size_t errlen)
{
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(
      db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1, &st,
      NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    snprintf(err, errlen, "registry sqlite: reading schema version: %s",
             sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return registry_sqlite_status(rc);
  }
  *version = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return SO_OK;
}

/* fk_check: after migrations that rebuilt tables with foreign keys off,
 * every deliveries row must still have its campaign (step 10 of SQLite's
 * table rebuild); a row that does not fails the migration. */
static int fk_check(sqlite3 *db, char *err, size_t errlen)
{
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char *table = sqlite3_column_text(st, 0);
    snprintf(err, errlen,
             "registry sqlite: migration left a %s row without its campaign",
             table ? (const char *)table : "?");
    sqlite3_finalize(st);
    return SO_ERR_SCHEMA;
  }
  if (rc != SQLITE_DONE) {
    snprintf(err, errlen, "registry sqlite: checking foreign keys: %s",
             sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return registry_sqlite_status(rc);
  }
  sqlite3_finalize(st);
  return SO_OK;
}

/* All in one IMMEDIATE transaction: two processes opening a fresh file at
 * once serialise here, and the second finds the work done. The caller has
 * turned foreign keys off (they cannot be switched inside a transaction):
 * a table rebuild drops a parent table while its children still point at
 * it, which with them on would delete every child (ON DELETE CASCADE). */
static int migrate(sqlite3 *db, char *err, size_t errlen)
{
  int rc = exec_sql(db, "BEGIN IMMEDIATE", "starting migration", err, errlen);
  if (rc)
    return rc;
  rc = exec_sql(db,
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY NOT NULL,"
                " applied_at INTEGER NOT NULL)",
                "creating schema_version", err, errlen);
  int version = 0;
  if (!rc)
    rc = read_version(db, &version, err, errlen);
  if (!rc && version > REGISTRY_SQLITE_SCHEMA_VERSION) {
    snprintf(err, errlen,
             "registry sqlite: database schema version %d is newer than "
             "this program's %d; upgrade sendonce before using this "
             "database",
             version, REGISTRY_SQLITE_SCHEMA_VERSION);
    rc = SO_ERR_SCHEMA;
  }
  for (int v = version + 1; !rc && v <= REGISTRY_SQLITE_SCHEMA_VERSION; v++) {
    char what[64];
    snprintf(what, sizeof(what), "applying migration %d", v);
    rc = exec_sql(db, migrations[v - 1], what, err, errlen);
    if (!rc) {
      char sql[160];
      snprintf(sql, sizeof(sql),
               "INSERT INTO schema_version (version, applied_at) "
               "VALUES (%d, " REGISTRY_SQLITE_NOW ")",
               v);
      rc = exec_sql(db, sql, what, err, errlen);
    }
  }
  if (!rc && version < REGISTRY_SQLITE_SCHEMA_VERSION)
    rc = fk_check(db, err, errlen);
  if (rc) {
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  return exec_sql(db, "COMMIT", "committing migration", err, errlen);
}

static int set_wal(sqlite3 *db, char *err, size_t errlen)
{
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    snprintf(err, errlen, "registry sqlite: setting WAL mode: %s",
             sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return registry_sqlite_status(rc);
  }
  const unsigned char *mode = sqlite3_column_text(st, 0);
  bool wal = mode && strcmp((const char *)mode, "wal") == 0;
  sqlite3_finalize(st);
  if (!wal) {
    /* WAL is what lets readers run beside the one writer; on a file
     * system that cannot do it (no shared memory) we refuse. */
    snprintf(err, errlen,
             "registry sqlite: the database cannot use WAL mode (network "
             "file system?)");
    return SO_ERR_IO;
  }
  return SO_OK;
}

/* Debian's SQLite is built without lookaside memory, so every statement
 * mallocs its cursors and records afresh (about six allocations per
 * mark), and with memory statistics on (the default) each allocation and
 * free also takes a global mutex to count it: ~10% of a mark's
 * instructions. Nothing in sendonce reads those statistics or sets a soft
 * heap limit. The setting is process-wide and only possible before SQLite
 * initialises; when something else in the process initialised it first,
 * sqlite3_config refuses (SQLITE_MISUSE) and changes nothing, which is
 * fine: the statistics are a cost, not a correctness matter. */
static pthread_once_t memstatus_once = PTHREAD_ONCE_INIT;

static void memstatus_off(void)
{
  (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int registry_sqlite_setup(const char *path, int busy_timeout_ms,
                          struct registry_sqlite_busy *busy, sqlite3 **out,
                          char *err, size_t errlen)
{
  *out = NULL;
  sqlite3 *db = NULL;
  pthread_once(&memstatus_once, memstatus_off);
  int rc = sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "registry sqlite: open %s: %s", path,
             db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    rc = registry_sqlite_status(rc);
    goto fail;
  }
  sqlite3_extended_result_codes(db, 1);
  busy->timeout_ms =
      busy_timeout_ms > 0 ? busy_timeout_ms : DEFAULT_BUSY_TIMEOUT_MS;
  sqlite3_busy_handler(db, busy_cb, busy);
  rc = set_wal(db, err, errlen);
  if (!rc)
    rc = exec_sql(db, "PRAGMA synchronous=FULL", "setting synchronous", err,
                  errlen);
  /* Several busy connections keep the WAL from ever being reset, and the
   * default threshold (1,000 pages) then runs a checkpoint attempt on
   * nearly every commit: 45% of the consumer's instructions in the
   * one-recipient benchmark. A larger threshold lets checkpoints happen
   * less often and in bigger steps; the WAL stays bounded (~32 MiB).
   * Re-measured with group commit (registry_sqlite_group.c: one commit
   * for the steps of all threads, about 3.6 per commit in the benchmark):
   * auto-checkpoints were 0.15% of the consumer's instructions over
   * 10,000 one-recipient campaigns and added next to no fsyncs (16,743
   * fdatasync for about 16,500 commits), so they stay in the committing
   * connection rather than in a checkpointer of their own. */
  if (!rc && sqlite3_wal_autocheckpoint(db, REGISTRY_SQLITE_CHECKPOINT_PAGES) !=
                 SQLITE_OK) {
    snprintf(err, errlen, "registry sqlite: setting the checkpoint threshold");
    rc = SO_ERR_INTERNAL;
  }
  /* Off while migrating (see migrate), on for every step after. */
  if (!rc)
    rc = exec_sql(db, "PRAGMA foreign_keys=OFF", "disabling foreign keys", err,
                  errlen);
  if (!rc)
    rc = migrate(db, err, errlen);
  if (!rc)
    rc = exec_sql(db, "PRAGMA foreign_keys=ON", "enabling foreign keys", err,
                  errlen);
  if (rc)
    goto fail;
  *out = db;
  return SO_OK;
fail:
  sqlite3_close_v2(db);
  return rc;
}

/* Synchronous NORMAL in WAL mode: a COMMIT appends its frames to the WAL
 * and returns; the WAL is fsync'd before each checkpoint copies it into
 * the database (and the database after), and whenever any connection with
 * synchronous=FULL commits. A commit here is therefore safe from a crash
 * of the process, and from a crash of the machine once any later fsync of
 * the WAL happened. A machine crash before that loses the newest commits
 * as a whole and in order: SQLite's recovery keeps the WAL up to the first
 * frame whose checksum fails, and a later fsync covers every frame written
 * before it, so what survives is always a prefix of the commits, never a
 * later commit without an earlier one.
 *
 * A checkpoint still syncs (the WAL, then the database file), and the
 * auto-checkpoint runs in whichever connection commits past the threshold.
 * This connection's threshold is four times the others': while any other
 * process writes (a consumer commits several times per campaign), they
 * reach theirs first and do the checkpoints, so the relaxed steps do not
 * wait for them; when nothing else writes, the WAL is still checkpointed
 * here, at ~128 MiB, so it cannot grow without bound. */
int registry_sqlite_relax(sqlite3 *db, char *err, size_t errlen)
{
  int rc = exec_sql(db, "PRAGMA synchronous=NORMAL", "setting synchronous", err,
                    errlen);
  if (!rc &&
      sqlite3_wal_autocheckpoint(db, RELAXED_CHECKPOINT_PAGES) != SQLITE_OK) {
    snprintf(err, errlen, "registry sqlite: setting the checkpoint threshold");
    rc = SO_ERR_INTERNAL;
  }
  return rc;
}
