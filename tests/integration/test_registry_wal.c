/* test_registry_wal.c - the SQLite registry's WAL file written ahead of
 * its frames (lib/registry_sqlite_wal.h), on a real database file: the
 * file is longer than its frames after a commit, a copy of the database
 * with that zero-filled tail recovers every committed step, and the
 * automatic checkpoint, whose hook the writer replaces, still runs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"
#include "registry_testdb.h"
#include "testenv.h"

#define MIB (1024 * 1024)

static struct testdb db;

static long long file_size(const char *path, const char *suffix)
{
  char p[1024];
  int n = snprintf(p, sizeof(p), "%s%s", path, suffix);
  assert_true(n > 0 && (size_t)n < sizeof(p));
  struct stat sb;
  return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void reg(struct registry *r, const char *id, const char *payload)
{
  struct registry_new_campaign c = {id, 1000, "email", payload};
  bool created = false;
  int rc = registry_register(r, &c, CAMPAIGN_SCHEDULED, &created);
  if (rc != SO_OK || !created)
    fail_msg("register %s: %s: %s", id, so_strerror(rc), registry_errmsg(r));
}

/* One small step commits a few pages; the file is then a MiB longer than
 * them (SQLite alone leaves it just as long as its frames). */
static void test_wal_written_ahead(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&db);
  char *id = testenv_unique("wal-ahead");
  reg(r, id, "{\"schema\":1}");
  long long wal = file_size(db.sqlite_path, "-wal");
  assert_true(wal >= MIB);
  free(id);
  registry_close(r);
}

static void copy_file(const char *from, const char *to)
{
  FILE *in = fopen(from, "rb");
  FILE *out = fopen(to, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
    assert_int_equal(fwrite(buf, 1, n, out), n);
  assert_int_equal(fclose(in), 0);
  assert_int_equal(fclose(out), 0);
}

static long long copy_query_int(sqlite3 *c, const char *sql)
{
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(c, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  long long v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* What a crash leaves: the database file and the WAL, zeroes past the
 * last frame, no -shm. Opening the copy recovers from the WAL: every
 * committed step is there and the database is sound. */
static void test_copy_with_zero_tail_recovers(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&db);
  char *prefix = testenv_unique("wal-copy");
  char id[256];
  for (int i = 0; i < 20; i++) {
    snprintf(id, sizeof(id), "%s.%d", prefix, i);
    reg(r, id, "{\"schema\":1}");
  }
  char src[1024], copy[1024], copy_wal[1024];
  snprintf(src, sizeof(src), "%s-wal", db.sqlite_path);
  snprintf(copy, sizeof(copy), "%s.copy", db.sqlite_path);
  snprintf(copy_wal, sizeof(copy_wal), "%s.copy-wal", db.sqlite_path);
  copy_file(db.sqlite_path, copy);
  copy_file(src, copy_wal);
  registry_close(r);
  assert_true(file_size(copy, "-wal") >= MIB);

  sqlite3 *c = NULL;
  assert_int_equal(sqlite3_open_v2(copy, &c, SQLITE_OPEN_READWRITE, NULL),
                   SQLITE_OK);
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT COUNT(*) FROM campaigns WHERE campaign_id LIKE '%s.%%'",
           prefix);
  assert_int_equal(copy_query_int(c, sql), 20);
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(c, "PRAGMA integrity_check", -1, &st, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
  sqlite3_finalize(st);
  sqlite3_close(c);
  unlink(copy_wal);
  snprintf(copy_wal, sizeof(copy_wal), "%s.copy-shm", db.sqlite_path);
  unlink(copy_wal);
  unlink(copy);
  free(prefix);
}

/* The writer's WAL hook replaces SQLite's automatic checkpoint: past the
 * threshold (8,192 frames, ~32 MiB) it must still copy the pages into the
 * database file, which until then holds little more than the schema. */
static void test_checkpoint_still_runs(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&db);
  char *prefix = testenv_unique("wal-ckpt");
  size_t pad = 256 * 1024;
  char *payload = malloc(pad + 64);
  assert_non_null(payload);
  int off = snprintf(payload, 64, "{\"schema\":1,\"pad\":\"");
  memset(payload + off, 'x', pad);
  snprintf(payload + off + pad, 64 - (size_t)off, "\"}");
  long long before = file_size(db.sqlite_path, "");
  char id[256];
  /* ~64 overflow pages a step: 160 steps are ~10,000 frames. */
  for (int i = 0; i < 160; i++) {
    snprintf(id, sizeof(id), "%s.%d", prefix, i);
    reg(r, id, payload);
  }
  long long after = file_size(db.sqlite_path, "");
  assert_true(before < 8 * MIB);
  assert_true(after >= 16 * MIB);
  free(payload);
  free(prefix);
  registry_close(r);
}

static int wal_setup(void **state)
{
  (void)state;
  testdb_create(&db, REGISTRY_SQLITE);
  return 0;
}

static int wal_teardown(void **state)
{
  (void)state;
  testdb_destroy(&db);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wal_written_ahead),
      cmocka_unit_test(test_copy_with_zero_tail_recovers),
      cmocka_unit_test(test_checkpoint_still_runs),
  };
  return cmocka_run_group_tests_name("registry_wal_sqlite", tests, wal_setup,
                                     wal_teardown);
}
