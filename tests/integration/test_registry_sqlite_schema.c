/* test_registry_sqlite_schema.c - the SQLite registry's schema versions:
 * a database written by a release that knew only migration 1 is brought
 * to version 2 (deliveries rebuilt WITHOUT ROWID) with every row intact
 * and usable (claim, pending, marks, finish on the old rows, foreign key
 * and ON DELETE CASCADE still there); a fresh database comes up at version
 * 2; a newer one (3) is refused untouched; a migration that would leave a
 * delivery without its campaign is rolled back whole.
 *
 * The version-1 database is written here by hand with migration 1's SQL
 * exactly as released (lib/registry_sqlite_schema.c never changes it),
 * the way that release's registry_open left it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "registry.h"
#include "registry_sqlite_schema.h"
#include "registry_testdb.h"

#define TTL_MS (10 * 60 * 1000)

/* Migration 1 and its schema_version table, as released. */
static const char v1_schema[] =
    "CREATE TABLE schema_version ("
    " version INTEGER PRIMARY KEY NOT NULL,"
    " applied_at INTEGER NOT NULL);"
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
    " PRIMARY KEY (campaign_id, recipient_id));"
    "INSERT INTO schema_version VALUES (1, 1764300000000);";

/* What the old release had written: a campaign whose worker died mid-way
 * (lease expired, one SENT, one REJECTED, one INFLIGHT), one waiting for
 * its claim, one DONE. */
static const char v1_rows[] =
    "INSERT INTO campaigns (campaign_id, state, scheduled_at, channel,"
    " payload, owner, fence, lease_until, attempts, total, sent, rejected,"
    " progress_at, created_at, updated_at, last_error) VALUES"
    " ('old-run', 'PROCESSING', 1764300000000, 'email', '{\"a\":1}',"
    "  'w-old', 3, 1000, 1, -1, 1, 1, 1764300001000, 1764300000000,"
    "  1764300001000, 'provider down'),"
    " ('old-pub', 'PUBLISHED', 1764300000500, 'sms', '{\"b\":2}',"
    "  NULL, 0, 0, 0, -1, 0, 0, 0, 1764300000000, 1764300000000, NULL),"
    " ('old-done', 'DONE', 1764299990000, 'email', '{\"c\":3}',"
    "  NULL, 1, 0, 0, 1, 1, 0, 1764299999000, 1764299990000,"
    "  1764299999000, NULL);"
    "INSERT INTO deliveries VALUES"
    " ('old-run', 'u-1', 'SENT', 1, NULL, 1764300000100),"
    " ('old-run', 'u-2', 'REJECTED', 1, 'bad address', 1764300000200),"
    " ('old-run', 'u-3', 'INFLIGHT', 2, NULL, 1764300000300),"
    " ('old-done', 'u-9', 'SENT', 1, NULL, 1764299998000);";

/* Every column of every row, in a fixed order: equal before and after a
 * migration means the rows came through intact. */
static const char dump_sql[] =
    "SELECT campaign_id, state, scheduled_at, channel, payload, owner,"
    " fence, lease_until, publish_owner, publish_until, paused, attempts,"
    " total, sent, rejected, republished, republished_at, progress_at,"
    " created_at, updated_at, last_error FROM campaigns"
    " ORDER BY campaign_id";
static const char dump_deliveries_sql[] =
    "SELECT campaign_id, recipient_id, state, attempts, error, updated_at"
    " FROM deliveries ORDER BY campaign_id, recipient_id";

/* ---- raw access ----------------------------------------------------------
 */

static sqlite3 *raw_open(const struct testdb *db)
{
  sqlite3 *conn = NULL;
  if (sqlite3_open_v2(db->sqlite_path, &conn,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      NULL) != SQLITE_OK)
    fail_msg("open %s: %s", db->sqlite_path,
             conn ? sqlite3_errmsg(conn) : "OOM");
  sqlite3_busy_timeout(conn, 10000);
  return conn;
}

static void raw_exec(sqlite3 *conn, const char *sql)
{
  char *msg = NULL;
  if (sqlite3_exec(conn, sql, NULL, NULL, &msg) != SQLITE_OK)
    fail_msg("%s: %s", sql, msg ? msg : "?");
}

/* write_v1: a database as the release with only migration 1 left it,
 * with `extra` (SQL, may be NULL) run after the rows. */
static void write_v1(const struct testdb *db, const char *extra)
{
  sqlite3 *conn = raw_open(db);
  raw_exec(conn, "PRAGMA journal_mode=WAL");
  raw_exec(conn, "BEGIN");
  raw_exec(conn, v1_schema);
  raw_exec(conn, v1_rows);
  if (extra)
    raw_exec(conn, extra);
  raw_exec(conn, "COMMIT");
  sqlite3_close(conn);
}

/* Which tables are WITHOUT ROWID: deliveries from version 2 on, campaigns
 * never (its rows carry the payload; see migration 2). */
static void check_without_rowid(const struct testdb *db, bool want)
{
  char *tables = testdb_query(db,
                              "SELECT name FROM sqlite_master"
                              " WHERE type = 'table'"
                              " AND sql LIKE '%WITHOUT ROWID' ORDER BY name");
  assert_string_equal(tables, want ? "deliveries\n" : "");
  free(tables);
}

/* The schema a version-2 database must have, however it got there. */
static void check_v2_schema(const struct testdb *db)
{
  assert_int_equal(
      testdb_query_int(db, "SELECT max(version) FROM schema_version"), 2);
  assert_int_equal(REGISTRY_SQLITE_SCHEMA_VERSION, 2);
  check_without_rowid(db, true);
  /* Nothing of the rebuild left behind, the index back on the new table. */
  char *tables =
      testdb_query(db,
                   "SELECT type, name, tbl_name FROM sqlite_master"
                   " WHERE name NOT LIKE 'sqlite_autoindex%' ORDER BY name");
  assert_string_equal(tables,
                      "table|campaigns|campaigns\n"
                      "index|campaigns_state_due|campaigns\n"
                      "table|deliveries|deliveries\n"
                      "table|schema_version|schema_version\n");
  free(tables);
  char *fk = testdb_query(db,
                          "SELECT \"table\", \"from\", \"to\", on_delete"
                          " FROM pragma_foreign_key_list('deliveries')");
  assert_string_equal(fk, "campaigns|campaign_id|campaign_id|CASCADE\n");
  free(fk);
}

/* ---- the migration from version 1 --------------------------------------
 */

static void test_v1_migrated_rows_intact(void **state)
{
  (void)state;
  struct testdb db;
  testdb_create(&db, REGISTRY_SQLITE);
  write_v1(&db, NULL);
  check_without_rowid(&db, false);
  char *before = testdb_query(&db, dump_sql);
  char *before_d = testdb_query(&db, dump_deliveries_sql);

  struct registry *r = testdb_open(&db);
  check_v2_schema(&db);
  assert_int_equal(testdb_query_int(&db, "SELECT count(*) FROM schema_version"),
                   2);
  char *after = testdb_query(&db, dump_sql);
  char *after_d = testdb_query(&db, dump_deliveries_sql);
  assert_string_equal(after, before);
  assert_string_equal(after_d, before_d);
  free(before);
  free(before_d);
  free(after);
  free(after_d);

  /* A second handle (and the group's writer) find it done. */
  struct registry *r2 = testdb_open(&db);
  registry_close(r2);
  assert_int_equal(testdb_query_int(&db, "SELECT count(*) FROM schema_version"),
                   2);

  /* The old rows work: the dead worker's campaign is taken over (its
   * lease expired long ago) and resumed from its ledger. */
  struct registry_claim cl;
  REG_OK(r, registry_claim(r, "old-run", "w-new", TTL_MS, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 4);
  struct registry_mark late = {"u-5", DELIVERY_SENT, NULL};
  assert_int_equal(registry_mark(r, "old-run", 3, &late, 1),
                   SO_ERR_STALE_FENCE);
  struct registry_mark staged[] = {
      {"u-1", DELIVERY_INFLIGHT, NULL},
      {"u-2", DELIVERY_INFLIGHT, NULL},
      {"u-3", DELIVERY_INFLIGHT, NULL},
      {"u-4", DELIVERY_INFLIGHT, NULL},
  };
  bool pending[4];
  REG_OK(r, registry_mark_pending(r, "old-run", cl.fence, staged, 4, pending));
  assert_false(pending[0]);
  assert_false(pending[1]);
  assert_true(pending[2]);
  assert_true(pending[3]);
  struct registry_mark outcomes[] = {
      {"u-3", DELIVERY_SENT, NULL},
      {"u-4", DELIVERY_REJECTED, "mailbox full"},
  };
  REG_OK(r, registry_mark(r, "old-run", cl.fence, outcomes, 2));
  struct registry_counts counts = {-1, -1};
  REG_OK(r, registry_finish(r, "old-run", cl.fence, 4, &counts));
  assert_int_equal(counts.sent, 2);
  assert_int_equal(counts.rejected, 2);
  char *rows = testdb_query(&db,
                            "SELECT recipient_id, state, attempts, error"
                            " FROM deliveries WHERE campaign_id = 'old-run'"
                            " ORDER BY recipient_id");
  assert_string_equal(rows,
                      "u-1|SENT|1|~\n"
                      "u-2|REJECTED|1|bad address\n"
                      "u-3|SENT|3|~\n"
                      "u-4|REJECTED|1|mailbox full\n");
  free(rows);
  struct registry_campaign c;
  REG_OK(r, registry_get(r, "old-run", &c));
  assert_int_equal(c.state, CAMPAIGN_DONE);
  assert_int_equal(c.total, 4);
  assert_string_equal(c.payload, "{\"a\":1}");
  registry_campaign_free(&c);

  REG_OK(r, registry_claim(r, "old-pub", "w-new", TTL_MS, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 1);
  REG_OK(r, registry_claim(r, "old-done", "w-new", TTL_MS, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_DONE);
  registry_close(r);

  /* The foreign key holds on the rebuilt tables: no delivery without its
   * campaign, and deleting a campaign deletes its deliveries. */
  sqlite3 *conn = raw_open(&db);
  raw_exec(conn, "PRAGMA foreign_keys=ON");
  assert_int_not_equal(
      sqlite3_exec(conn,
                   "INSERT INTO deliveries VALUES ('nope', 'u-1', 'SENT', 1,"
                   " NULL, 0)",
                   NULL, NULL, NULL),
      SQLITE_OK);
  raw_exec(conn, "DELETE FROM campaigns WHERE campaign_id = 'old-done'");
  sqlite3_close(conn);
  assert_int_equal(
      testdb_query_int(
          &db,
          "SELECT count(*) FROM deliveries WHERE campaign_id = 'old-done'"),
      0);
  testdb_destroy(&db);
}

/* A delivery whose campaign is missing (possible in a version-1 file
 * written with foreign keys off) fails the migration's check: nothing is
 * applied, the file stays at version 1 as it was, and the error says why. */
static void test_v1_orphan_rolls_back(void **state)
{
  (void)state;
  struct testdb db;
  testdb_create(&db, REGISTRY_SQLITE);
  write_v1(&db,
           "INSERT INTO deliveries VALUES ('gone', 'u-1', 'SENT', 1, NULL,"
           " 0)");
  char *before = testdb_query(&db, dump_deliveries_sql);
  struct registry_options opt = testdb_options(&db);
  struct registry *r = NULL;
  char err[512] = "";
  assert_int_equal(registry_open(&opt, &r, err, sizeof(err)), SO_ERR_SCHEMA);
  assert_null(r);
  assert_non_null(strstr(err, "deliveries"));
  assert_int_equal(
      testdb_query_int(&db, "SELECT max(version) FROM schema_version"), 1);
  check_without_rowid(&db, false);
  char *after = testdb_query(&db, dump_deliveries_sql);
  assert_string_equal(after, before);
  free(before);
  free(after);
  testdb_destroy(&db);
}

/* ---- fresh and newer databases -----------------------------------------
 */

static void test_fresh_is_v2(void **state)
{
  (void)state;
  struct testdb db;
  testdb_create(&db, REGISTRY_SQLITE);
  struct registry *r = testdb_open(&db);
  check_v2_schema(&db);
  assert_int_equal(testdb_query_int(&db, "SELECT count(*) FROM schema_version"),
                   2);
  /* A campaign and its deliveries go in and come out. */
  struct registry_new_campaign c = {"fresh-1", 1000, "email", "{}"};
  bool created = false;
  struct registry_claim cl;
  REG_OK(r, registry_register_claim(r, &c, "w", TTL_MS, &created, &cl));
  assert_true(created);
  struct registry_mark m = {"u-1", DELIVERY_SENT, NULL};
  REG_OK(r, registry_mark(r, "fresh-1", cl.fence, &m, 1));
  struct registry_counts counts = {0, 0};
  REG_OK(r, registry_finish(r, "fresh-1", cl.fence, 1, &counts));
  assert_int_equal(counts.sent, 1);
  struct registry_campaign got;
  REG_OK(r, registry_get(r, "fresh-1", &got));
  assert_int_equal(got.state, CAMPAIGN_DONE);
  assert_int_equal(got.total, 1);
  registry_campaign_free(&got);
  /* registry_complete shares finish's UPDATE (total bound as NULL): it
   * keeps the total that set_total wrote. */
  struct registry_new_campaign c2 = {"fresh-2", 1000, "email", "{}"};
  REG_OK(r, registry_register_claim(r, &c2, "w", TTL_MS, &created, &cl));
  REG_OK(r, registry_set_total(r, "fresh-2", cl.fence, 5));
  REG_OK(r, registry_complete(r, "fresh-2", cl.fence));
  REG_OK(r, registry_get(r, "fresh-2", &got));
  assert_int_equal(got.state, CAMPAIGN_DONE);
  assert_int_equal(got.total, 5);
  registry_campaign_free(&got);
  registry_close(r);
  testdb_destroy(&db);
}

static void test_v3_refused(void **state)
{
  (void)state;
  struct testdb db;
  testdb_create(&db, REGISTRY_SQLITE);
  registry_close(testdb_open(&db));
  testdb_exec(&db,
              "INSERT INTO schema_version (version, applied_at)"
              " VALUES (3, 0)");
  char *before = testdb_query(&db, "SELECT sql FROM sqlite_master ORDER BY 1");
  struct registry_options opt = testdb_options(&db);
  struct registry *r = NULL;
  char err[512] = "";
  assert_int_equal(registry_open(&opt, &r, err, sizeof(err)), SO_ERR_SCHEMA);
  assert_null(r);
  assert_non_null(strstr(err, "newer"));
  assert_non_null(strstr(err, "3"));
  char *after = testdb_query(&db, "SELECT sql FROM sqlite_master ORDER BY 1");
  assert_string_equal(after, before);
  assert_int_equal(testdb_query_int(&db, "SELECT count(*) FROM schema_version"),
                   3);
  free(before);
  free(after);
  testdb_destroy(&db);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v1_migrated_rows_intact),
      cmocka_unit_test(test_v1_orphan_rolls_back),
      cmocka_unit_test(test_fresh_is_v2),
      cmocka_unit_test(test_v3_refused),
  };
  return cmocka_run_group_tests_name("registry_sqlite_schema", tests, NULL,
                                     NULL);
}
