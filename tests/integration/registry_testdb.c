/* registry_testdb.c - a private registry database per test run. */
#include "registry_testdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "testenv.h"

static void die(const char *what, const char *detail)
{
  fprintf(stderr, "registry testdb: %s: %s\n", what, detail ? detail : "");
  abort();
}

enum registry_backend testdb_backend_parse(const char *name)
{
  if (name && strcmp(name, "sqlite") == 0)
    return REGISTRY_SQLITE;
  if (name && strcmp(name, "pg") == 0)
    return REGISTRY_POSTGRESQL;
  die("unknown backend (want sqlite or pg)", name);
  return REGISTRY_SQLITE;
}

/* A growable text buffer for query results. */
struct text {
  char *buf;
  size_t len, cap;
};

static void text_add(struct text *t, const char *s)
{
  size_t n = strlen(s);
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 256;
    while (cap < t->len + n + 1)
      cap *= 2;
    char *grown = realloc(t->buf, cap);
    if (!grown)
      die("realloc", "out of memory");
    t->buf = grown;
    t->cap = cap;
  }
  memcpy(t->buf + t->len, s, n + 1);
  t->len += n;
}

/* ---- PostgreSQL --------------------------------------------------------- */

static PGconn *pg_connect(const char *conninfo, const char *password)
{
  const char *keys[] = {"dbname", "password", NULL};
  const char *values[] = {conninfo, password, NULL};
  PGconn *conn = PQconnectdbParams(keys, values, 1);
  if (!conn || PQstatus(conn) != CONNECTION_OK)
    die("connecting to PostgreSQL", conn ? PQerrorMessage(conn) : "OOM");
  return conn;
}

static PGresult *pg_run(const struct testdb *db, PGconn *conn, const char *sql)
{
  (void)db;
  PGresult *res = PQexec(conn, sql);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    fprintf(stderr, "registry testdb: SQL failed: %s\n", sql);
    die("PostgreSQL", PQerrorMessage(conn));
  }
  return res;
}

static void pg_create(struct testdb *db)
{
  const char *base = testenv_get("SENDONCE_REGISTRY_PG_CONNINFO");
  db->pg_password = testenv_get("SENDONCE_REGISTRY_PASSWORD");
  /* Unquoted identifiers and a plain option value: no dashes. */
  char *unique = testenv_unique("sendonce_regtest");
  for (char *p = unique; *p; p++) {
    if (*p == '-')
      *p = '_';
  }
  db->pg_schema = unique;
  size_t len = strlen(base) + strlen(unique) + 64;
  db->pg_conninfo = malloc(len);
  if (!db->pg_conninfo)
    die("malloc", "out of memory");
  snprintf(db->pg_conninfo, len, "%s options='-csearch_path=%s'", base, unique);
  PGconn *conn = pg_connect(base, db->pg_password);
  char sql[256];
  snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", unique);
  PQclear(pg_run(db, conn, sql));
  PQfinish(conn);
}

static void pg_destroy(struct testdb *db)
{
  PGconn *conn =
      pg_connect(testenv_get("SENDONCE_REGISTRY_PG_CONNINFO"), db->pg_password);
  char sql[256];
  PQclear(pg_run(db, conn, "SET client_min_messages = warning"));
  snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", db->pg_schema);
  PQclear(pg_run(db, conn, sql));
  PQfinish(conn);
}

static char *pg_query(const struct testdb *db, const char *sql)
{
  PGconn *conn = pg_connect(db->pg_conninfo, db->pg_password);
  PGresult *res = pg_run(db, conn, sql);
  struct text t = {0};
  text_add(&t, "");
  for (int row = 0; row < PQntuples(res); row++) {
    for (int col = 0; col < PQnfields(res); col++) {
      if (col)
        text_add(&t, "|");
      text_add(&t,
               PQgetisnull(res, row, col) ? "~" : PQgetvalue(res, row, col));
    }
    text_add(&t, "\n");
  }
  PQclear(res);
  PQfinish(conn);
  return t.buf;
}

/* ---- SQLite ------------------------------------------------------------- */

static sqlite3 *lite_connect(const struct testdb *db)
{
  sqlite3 *conn = NULL;
  if (sqlite3_open_v2(db->sqlite_path, &conn, SQLITE_OPEN_READWRITE, NULL) !=
      SQLITE_OK)
    die("opening the SQLite file", conn ? sqlite3_errmsg(conn) : "OOM");
  sqlite3_busy_timeout(conn, 10000);
  return conn;
}

static char *lite_query(const struct testdb *db, const char *sql)
{
  sqlite3 *conn = lite_connect(db);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(conn, sql, -1, &st, NULL) != SQLITE_OK)
    die(sql, sqlite3_errmsg(conn));
  struct text t = {0};
  text_add(&t, "");
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    for (int col = 0; col < sqlite3_column_count(st); col++) {
      if (col)
        text_add(&t, "|");
      const unsigned char *v = sqlite3_column_text(st, col);
      text_add(&t, v ? (const char *)v : "~");
    }
    text_add(&t, "\n");
  }
  if (rc != SQLITE_DONE)
    die(sql, sqlite3_errmsg(conn));
  sqlite3_finalize(st);
  sqlite3_close(conn);
  return t.buf;
}

/* ---- both ---------------------------------------------------------------- */

void testdb_create(struct testdb *db, enum registry_backend backend)
{
  memset(db, 0, sizeof(*db));
  db->backend = backend;
  if (backend == REGISTRY_POSTGRESQL) {
    pg_create(db);
    return;
  }
  const char *dir = getenv("TMPDIR");
  char *unique = testenv_unique("sendonce-registry");
  size_t len = strlen(dir ? dir : "/tmp") + strlen(unique) + 8;
  db->sqlite_path = malloc(len);
  if (!db->sqlite_path)
    die("malloc", "out of memory");
  snprintf(db->sqlite_path, len, "%s/%s.db", dir ? dir : "/tmp", unique);
  free(unique);
}

void testdb_destroy(struct testdb *db)
{
  if (db->backend == REGISTRY_POSTGRESQL) {
    pg_destroy(db);
  } else {
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
      char path[1024];
      snprintf(path, sizeof(path), "%s%s", db->sqlite_path, suffixes[i]);
      unlink(path);
    }
  }
  free(db->sqlite_path);
  free(db->pg_schema);
  free(db->pg_conninfo);
  memset(db, 0, sizeof(*db));
}

struct registry_options testdb_options(const struct testdb *db)
{
  struct registry_options opt = {
      .backend = db->backend,
      .sqlite_path = db->sqlite_path,
      .pg_conninfo = db->pg_conninfo,
      .pg_password = db->pg_password,
      .busy_timeout_ms = 10000,
      /* The suite run again on the publisher daemon's relaxed handles
       * (tests/registry.cmake): every answer must be the same. */
      .publish_async_commit = getenv("SENDONCE_TEST_PUBLISH_ASYNC") != NULL,
  };
  return opt;
}

struct registry *testdb_open_with(const struct registry_options *opt)
{
  struct registry *r = NULL;
  char err[512] = "";
  int rc = registry_open(opt, &r, err, sizeof(err));
  if (rc != SO_OK || !r)
    die("registry_open", err);
  return r;
}

struct registry *testdb_open(const struct testdb *db)
{
  struct registry_options opt = testdb_options(db);
  return testdb_open_with(&opt);
}

char *testdb_query(const struct testdb *db, const char *sql)
{
  return db->backend == REGISTRY_POSTGRESQL ? pg_query(db, sql)
                                            : lite_query(db, sql);
}

long long testdb_query_int(const struct testdb *db, const char *sql)
{
  char *text = testdb_query(db, sql);
  char *end = NULL;
  long long v = strtoll(text, &end, 10);
  if (end == text)
    die("not an integer result", sql);
  free(text);
  return v;
}

char *testdb_delivery_rows(const struct testdb *db, const char *campaign_id)
{
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT recipient_id, state, attempts, error FROM deliveries "
           "WHERE campaign_id = '%s' ORDER BY recipient_id",
           campaign_id);
  return testdb_query(db, sql);
}

struct testdb_lock {
  PGconn *pg;
  sqlite3 *lite;
};

struct testdb_lock *testdb_lock_campaign(const struct testdb *db,
                                         const char *id)
{
  struct testdb_lock *lock = calloc(1, sizeof(*lock));
  if (!lock)
    die("calloc", "out of memory");
  char sql[512];
  if (db->backend == REGISTRY_POSTGRESQL) {
    lock->pg = pg_connect(db->pg_conninfo, db->pg_password);
    PQclear(pg_run(db, lock->pg, "BEGIN"));
    snprintf(sql, sizeof(sql),
             "SELECT 1 FROM campaigns WHERE campaign_id = '%s' FOR UPDATE", id);
    PQclear(pg_run(db, lock->pg, sql));
    return lock;
  }
  lock->lite = lite_connect(db);
  char *msg = NULL;
  if (sqlite3_exec(lock->lite, "BEGIN IMMEDIATE", NULL, NULL, &msg) !=
      SQLITE_OK)
    die("BEGIN IMMEDIATE", msg);
  return lock;
}

void testdb_unlock(struct testdb_lock *lock)
{
  if (lock->pg) {
    PQclear(PQexec(lock->pg, "ROLLBACK"));
    PQfinish(lock->pg);
  }
  if (lock->lite) {
    sqlite3_exec(lock->lite, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(lock->lite);
  }
  free(lock);
}

void testdb_exec(const struct testdb *db, const char *sql)
{
  if (db->backend == REGISTRY_POSTGRESQL) {
    PGconn *conn = pg_connect(db->pg_conninfo, db->pg_password);
    PQclear(pg_run(db, conn, sql));
    PQfinish(conn);
    return;
  }
  sqlite3 *conn = lite_connect(db);
  char *msg = NULL;
  if (sqlite3_exec(conn, sql, NULL, NULL, &msg) != SQLITE_OK)
    die(sql, msg);
  sqlite3_close(conn);
}
