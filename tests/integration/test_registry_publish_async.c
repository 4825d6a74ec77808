/* test_registry_publish_async.c - registry_options.publish_async_commit
 * (the publisher daemon's handle): its publish lease and PUBLISHED mark
 * commit without waiting for the disk, and nothing else changes.
 *
 *  - SQLite: a VFS that passes every call to the default one counts the
 *    xSync calls: none for the lease or the mark of a relaxed handle, at
 *    least one for the same steps on a default handle and for any other
 *    step on the relaxed one (so the count can fail the test). The steps
 *    are atomic and visible to another handle at once, and survive the
 *    crash of the process that made them (_exit without closing).
 *  - PostgreSQL: a trigger on campaigns records the synchronous_commit in
 *    force when each row is updated: "off" for the relaxed handle's lease
 *    and mark, "on" for a default handle's and for every other step of the
 *    relaxed handle's session (the setting ends with its transaction).
 *
 * The shared registry suite also runs whole on relaxed handles
 * (SENDONCE_TEST_PUBLISH_ASYNC, tests/registry.cmake): the steps' answers
 * are the same. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "registry.h"
#include "registry_testdb.h"
#include "testenv.h"

static struct testdb db;

static struct registry *open_handle(bool async)
{
  struct registry_options opt = testdb_options(&db);
  opt.publish_async_commit = async;
  return testdb_open_with(&opt);
}

static char *unique_id(const char *base)
{
  char *id = testenv_unique(base);
  assert_non_null(id);
  return id;
}

static void reg(struct registry *r, const char *id)
{
  struct registry_new_campaign c = {id, 1000, "email", "{\"schema\":1}"};
  bool created = false;
  REG_OK(r, registry_register(r, &c, CAMPAIGN_SCHEDULED, &created));
  assert_true(created);
}

static enum campaign_state state_of(struct registry *r, const char *id)
{
  struct registry_campaign c;
  REG_OK(r, registry_get(r, id, &c));
  enum campaign_state st = c.state;
  registry_campaign_free(&c);
  return st;
}

/* ---- SQLite: a VFS that counts syncs ------------------------------------ */

/* Every file of the counting VFS: our head, then the default VFS's own
 * file object (szOsFile of ours covers both). */
struct count_file {
  sqlite3_file base;
  sqlite3_file *real;
  bool wal;
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs count_vfs;
static atomic_int wal_syncs; /* xSync on a WAL file */
static atomic_int db_syncs;  /* xSync on a database file (checkpoints) */

static sqlite3_file *real_of(sqlite3_file *f)
{
  return ((struct count_file *)f)->real;
}

static int cf_close(sqlite3_file *f)
{
  return real_of(f)->pMethods->xClose(real_of(f));
}

static int cf_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
  return real_of(f)->pMethods->xRead(real_of(f), buf, n, off);
}

static int cf_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
  return real_of(f)->pMethods->xWrite(real_of(f), buf, n, off);
}

static int cf_truncate(sqlite3_file *f, sqlite3_int64 size)
{
  return real_of(f)->pMethods->xTruncate(real_of(f), size);
}

static int cf_sync(sqlite3_file *f, int flags)
{
  atomic_fetch_add(((struct count_file *)f)->wal ? &wal_syncs : &db_syncs, 1);
  return real_of(f)->pMethods->xSync(real_of(f), flags);
}

static int cf_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
  return real_of(f)->pMethods->xFileSize(real_of(f), size);
}

static int cf_lock(sqlite3_file *f, int lock)
{
  return real_of(f)->pMethods->xLock(real_of(f), lock);
}

static int cf_unlock(sqlite3_file *f, int lock)
{
  return real_of(f)->pMethods->xUnlock(real_of(f), lock);
}

static int cf_check_reserved(sqlite3_file *f, int *out)
{
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int cf_file_control(sqlite3_file *f, int op, void *arg)
{
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

static int cf_sector_size(sqlite3_file *f)
{
  return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int cf_device_chars(sqlite3_file *f)
{
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

static int cf_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
                      void volatile **out)
{
  return real_of(f)->pMethods->xShmMap(real_of(f), pg, pgsz, extend, out);
}

static int cf_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
  return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}

static void cf_shm_barrier(sqlite3_file *f)
{
  real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int cf_shm_unmap(sqlite3_file *f, int delete_flag)
{
  return real_of(f)->pMethods->xShmUnmap(real_of(f), delete_flag);
}

static int cf_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
  return real_of(f)->pMethods->xFetch(real_of(f), off, amt, pp);
}

static int cf_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
  return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

static const sqlite3_io_methods count_io = {
    3,
    cf_close,
    cf_read,
    cf_write,
    cf_truncate,
    cf_sync,
    cf_file_size,
    cf_lock,
    cf_unlock,
    cf_check_reserved,
    cf_file_control,
    cf_sector_size,
    cf_device_chars,
    cf_shm_map,
    cf_shm_lock,
    cf_shm_barrier,
    cf_shm_unmap,
    cf_fetch,
    cf_unfetch,
};

static int cv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
                   int flags, int *out_flags)
{
  (void)vfs;
  struct count_file *cf = (struct count_file *)f;
  cf->real = (sqlite3_file *)(cf + 1);
  cf->wal = (flags & SQLITE_OPEN_WAL) != 0;
  int rc = real_vfs->xOpen(real_vfs, name, cf->real, flags, out_flags);
  /* No methods: SQLite calls no xClose on a file that failed to open. */
  cf->base.pMethods = rc == SQLITE_OK && cf->real->pMethods ? &count_io : NULL;
  return rc;
}

/* Installed as the default VFS before any connection opens, so every
 * connection of this process (the handles' and the group writer's) uses
 * it. Only the unix VFS's methods up to version 3 are passed on, which is
 * all it has. */
static void count_vfs_install(void)
{
  real_vfs = sqlite3_vfs_find(NULL);
  assert_non_null(real_vfs);
  assert_true(real_vfs->iVersion >= 1);
  count_vfs = *real_vfs;
  count_vfs.zName = "sendonce-count";
  count_vfs.szOsFile = (int)sizeof(struct count_file) + real_vfs->szOsFile + 16;
  count_vfs.xOpen = cv_open;
  assert_int_equal(sqlite3_vfs_register(&count_vfs, 1), SQLITE_OK);
}

static int syncs(void)
{
  return atomic_load(&wal_syncs) + atomic_load(&db_syncs);
}

/* The lease and the mark of a relaxed handle: no sync, visible at once;
 * the same steps of a default handle, and the claim of the relaxed one:
 * at least one sync each. */
static void test_sqlite_no_sync(void **state)
{
  (void)state;
  struct registry *durable = open_handle(false);
  struct registry *relaxed = open_handle(true);
  char *a = unique_id("async-a");
  char *b = unique_id("async-b");
  reg(durable, a);
  reg(durable, b);

  /* The counter works: a default handle's lease is flushed. */
  bool won = false;
  int before = syncs();
  REG_OK(durable, registry_begin_publish(durable, b, "pub-d", 60000, &won));
  assert_true(won);
  assert_true(syncs() > before);

  before = syncs();
  REG_OK(relaxed, registry_begin_publish(relaxed, a, "pub-r", 60000, &won));
  assert_true(won);
  assert_int_equal(syncs(), before);
  /* Committed and visible: the lease holds off another publisher. */
  REG_OK(durable, registry_begin_publish(durable, a, "pub-x", 60000, &won));
  assert_false(won);
  assert_int_equal(state_of(durable, a), CAMPAIGN_SCHEDULED);

  before = syncs();
  REG_OK(relaxed, registry_mark_published(relaxed, a, &won));
  assert_true(won);
  assert_int_equal(syncs(), before);
  assert_int_equal(state_of(durable, a), CAMPAIGN_PUBLISHED);
  /* One winner, whatever the handle. */
  REG_OK(durable, registry_mark_published(durable, a, &won));
  assert_false(won);

  /* The same answers as a default handle's for a campaign that moved on
   * and for one that is absent. */
  REG_OK(relaxed, registry_begin_publish(relaxed, a, "pub-r", 60000, &won));
  assert_false(won);
  assert_int_equal(registry_mark_published(relaxed, "async-absent", &won),
                   SO_ERR_NOTFOUND);

  /* Every other step of the relaxed handle stays durable. */
  before = syncs();
  struct registry_claim cl;
  REG_OK(relaxed, registry_claim(relaxed, a, "worker-1", 60000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_true(syncs() > before);

  /* And a default handle's mark is flushed. */
  before = syncs();
  REG_OK(durable, registry_mark_published(durable, b, &won));
  assert_true(won);
  assert_true(syncs() > before);

  free(a);
  free(b);
  registry_close(relaxed);
  registry_close(durable);
}

/* A relaxed step is in the OS's hands once it returns: the process dying
 * right after (no close, no checkpoint) loses nothing. Only the machine's
 * crash can, before the next sync. */
static void test_sqlite_process_crash(void **state)
{
  (void)state;
  char *id = unique_id("async-crash");
  struct registry *durable = open_handle(false);
  reg(durable, id);
  registry_close(durable); /* no handle open across the fork */

  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct registry_options opt = testdb_options(&db);
    opt.publish_async_commit = true;
    struct registry *r = NULL;
    char err[512] = "";
    bool won = false;
    if (registry_open(&opt, &r, err, sizeof(err)) != SO_OK ||
        registry_begin_publish(r, id, "pub-dead", 60000, &won) != SO_OK || !won)
      _exit(1);
    _exit(0); /* as a crash would: nothing closed */
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);

  struct registry *r = open_handle(false);
  bool won = true;
  REG_OK(r, registry_begin_publish(r, id, "pub-next", 60000, &won));
  assert_false(won); /* the dead publisher's lease is still there */
  registry_close(r);
  free(id);
}

/* ---- PostgreSQL: the setting each update ran under -------------------- */

static void pg_install_trigger(void)
{
  testdb_exec(&db,
              "CREATE TABLE IF NOT EXISTS sync_log (seq bigserial, "
              " campaign_id text, state text, sync text);"
              "CREATE OR REPLACE FUNCTION sync_log_row() RETURNS trigger "
              "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO sync_log "
              "(campaign_id, state, sync) VALUES (NEW.campaign_id, "
              "NEW.state, current_setting('synchronous_commit')); "
              "RETURN NEW; END $$;"
              "DROP TRIGGER IF EXISTS sync_log_t ON campaigns;"
              "CREATE TRIGGER sync_log_t AFTER UPDATE ON campaigns FOR EACH "
              "ROW EXECUTE FUNCTION sync_log_row();");
}

/* The settings the updates of `id` ran under, oldest first:
 * "STATE|sync\n" per update. Owned by the caller. */
static char *pg_log_of(const char *id)
{
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT state, sync FROM sync_log WHERE campaign_id = '%s' "
           "ORDER BY seq",
           id);
  return testdb_query(&db, sql);
}

static void test_pg_sync_off(void **state)
{
  (void)state;
  struct registry *durable = open_handle(false);
  struct registry *relaxed = open_handle(true);
  pg_install_trigger();
  char *a = unique_id("async-a");
  char *b = unique_id("async-b");
  reg(durable, a);
  reg(durable, b);

  bool won = false;
  REG_OK(relaxed, registry_begin_publish(relaxed, a, "pub-r", 60000, &won));
  assert_true(won);
  REG_OK(durable, registry_begin_publish(durable, a, "pub-x", 60000, &won));
  assert_false(won); /* committed and visible */
  REG_OK(relaxed, registry_mark_published(relaxed, a, &won));
  assert_true(won);
  assert_int_equal(state_of(durable, a), CAMPAIGN_PUBLISHED);
  /* The relaxed session's next step is synchronous again. */
  struct registry_claim cl;
  REG_OK(relaxed, registry_claim(relaxed, a, "worker-1", 60000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);

  REG_OK(durable, registry_begin_publish(durable, b, "pub-d", 60000, &won));
  assert_true(won);
  REG_OK(durable, registry_mark_published(durable, b, &won));
  assert_true(won);

  char *log_a = pg_log_of(a);
  char *log_b = pg_log_of(b);
  assert_string_equal(log_a,
                      "SCHEDULED|off\n"
                      "PUBLISHED|off\n"
                      "PROCESSING|on\n");
  assert_string_equal(log_b,
                      "SCHEDULED|on\n"
                      "PUBLISHED|on\n");
  free(log_a);
  free(log_b);
  free(a);
  free(b);
  registry_close(relaxed);
  registry_close(durable);
}

int main(int argc, char **argv)
{
  const char *backend = argc > 1 ? argv[1] : "sqlite";
  enum registry_backend be = testdb_backend_parse(backend);
  if (be == REGISTRY_SQLITE)
    count_vfs_install();
  testdb_create(&db, be);
  int rc;
  if (be == REGISTRY_SQLITE) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlite_no_sync),
        cmocka_unit_test(test_sqlite_process_crash),
    };
    rc = cmocka_run_group_tests_name("registry_publish_async_sqlite", tests,
                                     NULL, NULL);
  } else {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg_sync_off),
    };
    rc = cmocka_run_group_tests_name("registry_publish_async_pg", tests, NULL,
                                     NULL);
  }
  testdb_destroy(&db);
  return rc;
}
