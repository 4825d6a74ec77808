/* registry_sqlite_wal.c - the group writer's WAL file kept longer than its
 * frames (see registry_sqlite_wal.h). */
#include "registry_sqlite_wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry_sqlite_schema.h"

#define WAL_HEADER_BYTES 32
#define FRAME_HEADER_BYTES 24
/* The file is kept at least this far ahead of the committed frames and
 * grown in steps of this size: a step costs about one fdatasync of its
 * size (~1.1 ms per MiB on the dev VM), against the ~100-300 us that each
 * of the ~35 commits of a MiB saves (bench/run row 1). */
#define AHEAD_BYTES (1 << 20)
#define ZERO_BYTES (256 * 1024) /* per write */

static char zeroes[ZERO_BYTES]; /* never written */

/* The automatic checkpoint is SQLite's own WAL hook
 * (sqlite3_wal_autocheckpoint), which this one replaces on the writer: it
 * runs the same passive checkpoint at the same threshold. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
  struct rsw *w = arg;
  w->frames = frames;
  if (frames >= REGISTRY_SQLITE_CHECKPOINT_PAGES)
    (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                    NULL);
  return SQLITE_OK;
}

static int64_t page_size(sqlite3 *db)
{
  sqlite3_stmt *st = NULL;
  int64_t n = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

void rsw_open(struct rsw *w, sqlite3 *db, const char *path)
{
  *w = (struct rsw){.fd = -1};
  sqlite3_wal_hook(db, wal_hook, w);
  int64_t page = page_size(db);
  char wal[4096];
  int len = snprintf(wal, sizeof(wal), "%s-wal", path);
  if (page <= 0 || len < 0 || (size_t)len >= sizeof(wal))
    return;
  /* Not created here: SQLite makes it when it opens the WAL (the set-up
   * read the schema through it). Kept open until the group goes: SQLite
   * only deletes the file once no connection has the database open, and
   * the writer has. No POSIX lock is ever taken on it (WAL locks are on
   * the -shm file), so this descriptor cannot drop one when closed. */
  w->fd = open(wal, O_WRONLY | O_CLOEXEC);
  w->frame_bytes = page + FRAME_HEADER_BYTES;
}

void rsw_close(struct rsw *w)
{
  if (w->fd >= 0)
    close(w->fd);
  w->fd = -1;
}

/* zero_fill: zeroes over [from, to) of the file; returns how far it got. */
static int64_t zero_fill(int fd, int64_t from, int64_t to)
{
  while (from < to) {
    int64_t left = to - from;
    size_t len = left < ZERO_BYTES ? (size_t)left : ZERO_BYTES;
    ssize_t done = pwrite(fd, zeroes, len, (off_t)from);
    if (done <= 0) {
      if (done < 0 && errno == EINTR)
        continue;
      break;
    }
    from += done;
  }
  return from;
}

void rsw_ensure(struct rsw *w)
{
  if (w->fd < 0)
    return;
  int64_t end = WAL_HEADER_BYTES + w->frames * w->frame_bytes + AHEAD_BYTES;
  if (end <= w->ready)
    return;
  struct stat sb;
  if (fstat(w->fd, &sb) != 0 || sb.st_nlink == 0) {
    rsw_close(w); /* not the WAL SQLite writes any more: leave it be */
    return;
  }
  /* Past the end of the file only: under the write lock nobody appends
   * frames meanwhile, and what the file holds is left as it is. */
  int64_t size = (int64_t)sb.st_size;
  if (size < end) {
    int64_t target = (end / AHEAD_BYTES + 1) * AHEAD_BYTES;
    size = zero_fill(w->fd, size, target);
    if (size < target || fdatasync(w->fd) != 0) {
      /* A full disk, say: SQLite's own writes will tell; stop trying. */
      rsw_close(w);
      return;
    }
  }
  w->ready = size;
}
