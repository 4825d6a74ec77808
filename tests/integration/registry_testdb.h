/* registry_testdb.h - a fresh, private registry database for one run of the
 * registry suite, on either backend, plus raw SQL access for checks the
 * registry API does not offer (whole delivery rows, registry-time stamps
 * of marks, a faked newer schema).
 *
 * SQLite: a unique file under $TMPDIR (or /tmp). PostgreSQL: a schema with
 * a unique name in the database of SENDONCE_REGISTRY_PG_CONNINFO, reached
 * through conninfo "<base> options='-csearch_path=<schema>'", dropped at
 * the end. */
#ifndef SENDONCE_REGISTRY_TESTDB_H
#define SENDONCE_REGISTRY_TESTDB_H

#include "registry.h"

/* REG_OK: in a cmocka test, the registry call must return SO_OK; else the
 * test fails with the registry's detail. */
#define REG_OK(r, expr)                                                      \
  do {                                                                       \
    int rc_ = (expr);                                                        \
    if (rc_ != SO_OK)                                                        \
      fail_msg("%s -> %s: %s", #expr, so_strerror(rc_), registry_errmsg(r)); \
  } while (0)

struct testdb {
  enum registry_backend backend;
  char *sqlite_path; /* SQLite: the database file */
  char *pg_schema;   /* PostgreSQL: the schema of this run */
  char *pg_conninfo; /* PostgreSQL: base conninfo + search_path option */
  const char *pg_password;
};

/* testdb_backend_parse: "sqlite" or "pg"; aborts on anything else. */
enum registry_backend testdb_backend_parse(const char *name);

/* testdb_create / testdb_destroy: make and remove the private database.
 * Failures abort the test run (a missing server is a failure). */
void testdb_create(struct testdb *db, enum registry_backend backend);
void testdb_destroy(struct testdb *db);

/* testdb_options: registry_options for this database (pointers into db);
 * publish_async_commit when SENDONCE_TEST_PUBLISH_ASYNC is set. */
struct registry_options testdb_options(const struct testdb *db);

/* testdb_open: registry_open on this database; aborts on failure. */
struct registry *testdb_open(const struct testdb *db);

/* testdb_open_with: registry_open with `opt` (testdb_options, changed by
 * the caller); aborts on failure. */
struct registry *testdb_open_with(const struct registry_options *opt);

/* testdb_query: run one SELECT over a raw connection; every row becomes
 * its columns joined with '|' (NULL as "~") and ended by '\n'. Owned by
 * the caller (free()). Aborts on an SQL error. */
char *testdb_query(const struct testdb *db, const char *sql);

/* testdb_query_int: the first column of the first row as an integer. */
long long testdb_query_int(const struct testdb *db, const char *sql);

/* testdb_delivery_rows: a campaign's delivery rows without times, to
 * compare: "recipient|state|attempts|error" per row (NULL error "~"),
 * ordered by recipient. Owned by the caller (free()). */
char *testdb_delivery_rows(const struct testdb *db, const char *campaign_id);

/* testdb_exec: run statements over a raw connection; aborts on error. */
void testdb_exec(const struct testdb *db, const char *sql);

/* testdb_lock_campaign: from a raw connection, open a transaction that
 * holds the write lock a registry write on `id` needs (SQLite: BEGIN
 * IMMEDIATE, the database's one write lock; PostgreSQL: SELECT ... FOR
 * UPDATE of the campaign's row) until testdb_unlock. Aborts on error. */
struct testdb_lock;
struct testdb_lock *testdb_lock_campaign(const struct testdb *db,
                                         const char *id);
void testdb_unlock(struct testdb_lock *lock);

#endif /* SENDONCE_REGISTRY_TESTDB_H */
