/* registry_pg_schema.c - the PostgreSQL registry's schema migrations.
 *
 * Same tables and column names as the SQLite backend
 * (registry_sqlite_schema.c), in PostgreSQL types: times are BIGINT
 * milliseconds since the epoch on the server's clock, states are their
 * names. Table names are never schema-qualified: the connection's
 * search_path picks the schema, so a deployment (or a test run) can keep
 * its registry in a schema of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry_pg_conn.h"

/* Migration N brings the schema from version N-1 to N. Append only: a
 * released migration is never edited. */
static const char *const migrations[] = {
    /* 1: campaigns and their deliveries */
    "CREATE TABLE campaigns ("
    " campaign_id text PRIMARY KEY,"
    " state text NOT NULL CHECK (state IN ('SCHEDULED','PUBLISHED',"
    "   'PROCESSING','DONE','DEAD')),"
    " scheduled_at bigint NOT NULL,"
    " channel text NOT NULL,"
    " payload text NOT NULL,"
    " owner text,"
    " fence bigint NOT NULL DEFAULT 0,"
    " lease_until bigint NOT NULL DEFAULT 0,"
    " publish_owner text,"
    " publish_until bigint NOT NULL DEFAULT 0,"
    " paused boolean NOT NULL DEFAULT false,"
    " attempts integer NOT NULL DEFAULT 0,"
    " total bigint NOT NULL DEFAULT -1,"
    " sent bigint NOT NULL DEFAULT 0,"
    " rejected bigint NOT NULL DEFAULT 0,"
    " republished integer NOT NULL DEFAULT 0,"
    " republished_at bigint NOT NULL DEFAULT 0,"
    " progress_at bigint NOT NULL DEFAULT 0,"
    " created_at bigint NOT NULL,"
    " updated_at bigint NOT NULL,"
    " last_error text);"
    "CREATE INDEX campaigns_state_due ON campaigns (state, scheduled_at);"
    "CREATE TABLE deliveries ("
    " campaign_id text NOT NULL REFERENCES campaigns (campaign_id)"
    "   ON DELETE CASCADE,"
    " recipient_id text NOT NULL,"
    " state text NOT NULL CHECK (state IN ('INFLIGHT','SENT','REJECTED')),"
    " attempts integer NOT NULL DEFAULT 0,"
    " error text,"
    " updated_at bigint NOT NULL,"
    " PRIMARY KEY (campaign_id, recipient_id));",
};

#define MIGRATION_COUNT ((int)(sizeof(migrations) / sizeof(migrations[0])))

_Static_assert(MIGRATION_COUNT == REGISTRY_SCHEMA_VERSION,
               "one migration per schema version");

static int read_version(struct registry_pg *r, int *version)
{
  PGresult *res = PQexec(r->conn,
                         "SELECT coalesce(max(version), 0) FROM "
                         "schema_version");
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    int rc = pg_conn_status(r, res);
    const char *msg = PQerrorMessage(r->conn);
    registry_set_error(&r->base, rc,
                       "registry postgresql: reading schema version: %.*s",
                       (int)strcspn(msg, "\n"), msg);
    PQclear(res);
    return rc;
  }
  *version = (int)pg_get_i64(res, 0, 0);
  PQclear(res);
  return SO_OK;
}

static int apply(struct registry_pg *r, int *from)
{
  /* Concurrent openers of one registry (several consumers starting at
   * once) serialise on an advisory lock held until COMMIT, so exactly one
   * applies each migration and the others find it done. The key is per
   * schema: registries in different schemas do not wait for each other. */
  int rc = pg_conn_simple(r,
                          "SELECT pg_advisory_xact_lock(hashtext("
                          "'sendonce.registry:' || "
                          "coalesce(current_schema(), '')))",
                          "locking for migration");
  if (!rc)
    rc = pg_conn_simple(r,
                        "CREATE TABLE IF NOT EXISTS schema_version ("
                        " version integer PRIMARY KEY,"
                        " applied_at bigint NOT NULL)",
                        "creating schema_version");
  int version = 0;
  if (!rc)
    rc = read_version(r, &version);
  if (rc)
    return rc;
  *from = version;
  if (version > REGISTRY_SCHEMA_VERSION)
    return registry_set_error(
        &r->base, SO_ERR_SCHEMA,
        "registry postgresql: database schema version %d is newer than "
        "this program's %d; upgrade sendonce before using this database",
        version, REGISTRY_SCHEMA_VERSION);
  for (int v = version + 1; !rc && v <= REGISTRY_SCHEMA_VERSION; v++) {
    char what[64];
    snprintf(what, sizeof(what), "applying migration %d", v);
    rc = pg_conn_simple(r, migrations[v - 1], what);
    if (!rc) {
      char sql[160];
      snprintf(sql, sizeof(sql),
               "INSERT INTO schema_version (version, applied_at) "
               "VALUES (%d, " PG_NOW_MS ")",
               v);
      rc = pg_conn_simple(r, sql, what);
    }
  }
  return rc;
}

int pg_migrate(struct registry_pg *r, char *err, size_t errlen)
{
  int rc = pg_conn_simple(r, "BEGIN", "starting migration");
  int from = 0;
  if (!rc)
    rc = apply(r, &from);
  if (!rc)
    rc = pg_conn_simple(r, "COMMIT", "committing migration");
  if (rc) {
    snprintf(err, errlen, "%s", r->base.errmsg);
    if (PQstatus(r->conn) == CONNECTION_OK)
      PQclear(PQexec(r->conn, "ROLLBACK"));
    return rc;
  }
  if (from < REGISTRY_SCHEMA_VERSION)
    log_info("registry: postgresql: schema migrated from=%d to=%d", from,
             REGISTRY_SCHEMA_VERSION);
  return SO_OK;
}
