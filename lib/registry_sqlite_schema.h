/* registry_sqlite_schema.h - the SQLite registry's connection set-up and
 * schema migrations (internal to registry_sqlite.c). */
#ifndef SENDONCE_REGISTRY_SQLITE_SCHEMA_H
#define SENDONCE_REGISTRY_SQLITE_SCHEMA_H

#include <stddef.h>
#include <time.h>

#include <sqlite3.h>

#include "status.h"

/* The registry's clock as an SQL expression: integer milliseconds since
 * the Unix epoch, read by SQLite itself. SQLite returns the same 'now' for
 * every use within one sqlite3_step(), so a statement that both decides
 * (lease_until <= now) and writes (lease_until = now + ttl) sees one
 * instant. (unixepoch('subsec') would do, but arrived in SQLite 3.42 and
 * Debian 12 ships 3.40.) */
#define REGISTRY_SQLITE_NOW \
  "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"

/* The busy handler's state; lives as long as the connection. */
struct registry_sqlite_busy {
  int timeout_ms;
  struct timespec start;
};

/* The automatic checkpoint's threshold, in WAL frames (pages): see
 * registry_sqlite_setup in the .c for why it is not SQLite's 1,000. */
#define REGISTRY_SQLITE_CHECKPOINT_PAGES 8192

/* The SQLite schema version this program knows: the number of its
 * migrations. Each backend counts its own, because a backend's physical
 * schema can change (table layout) without the other's. */
#define REGISTRY_SQLITE_SCHEMA_VERSION 2

/* registry_sqlite_setup: open `path` (creating it), set the pragmas the
 * registry relies on (WAL, synchronous=FULL, foreign keys), install a busy
 * handler that waits up to busy_timeout_ms (default 5 s) for the write
 * lock, and apply the schema migrations up to REGISTRY_SQLITE_SCHEMA_VERSION in
 * one transaction. A database with a newer schema gives SO_ERR_SCHEMA. On
 * success *out is an open connection owned by the caller
 * (sqlite3_close_v2), using *busy until closed; on failure *out is NULL
 * and err says why. */
int registry_sqlite_setup(const char *path, int busy_timeout_ms,
                          struct registry_sqlite_busy *busy, sqlite3 **out,
                          char *err, size_t errlen) SO_MUST_CHECK;

/* registry_sqlite_relax: make `db` (set up by registry_sqlite_setup)
 * commit without an fsync (synchronous=NORMAL) and checkpoint later than
 * the other connections: for a handle's publish steps with
 * registry_options.publish_async_commit (see the .c for what survives a
 * crash). SO_OK, or a status with err filled. */
int registry_sqlite_relax(sqlite3 *db, char *err, size_t errlen) SO_MUST_CHECK;

/* registry_sqlite_status: map an SQLite result code to our status:
 * BUSY/LOCKED -> SO_ERR_UNAVAILABLE, NOMEM -> SO_ERR_NOMEM, I/O, full
 * disk, corruption -> SO_ERR_IO, anything else -> SO_ERR_INTERNAL. */
int registry_sqlite_status(int sqlite_rc);

#endif /* SENDONCE_REGISTRY_SQLITE_SCHEMA_H */
