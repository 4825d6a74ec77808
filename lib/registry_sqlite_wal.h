/* registry_sqlite_wal.h - the group writer's WAL file kept longer than its
 * frames (internal to registry_sqlite_group.c; rsw_ marks these names).
 *
 * Why: SQLite appends each commit's frames to the WAL file and then
 * fdatasync()s it. While the file grows (a fresh WAL, and every WAL after
 * the last connection closed and SQLite deleted it, until it reaches the
 * checkpoint threshold, ~33 MB), each of those fdatasync calls must also
 * commit the file's new size and blocks to the file system's journal: on
 * ext4 about twice the time of an fdatasync of blocks the file already
 * had (tmp test on the dev VM: 16 KiB appended 195-215 us, overwritten
 * 96-98 us). bench/run row 1 (5,000 campaigns) grew the WAL for its whole
 * run: COMMIT took 370-570 us there, 260-270 us with the file written
 * ahead. So the group's leader, holding the write lock, writes zeroes past
 * the end of the file ahead of the frames, a MiB at a time: one slow
 * fdatasync per MiB instead of one per commit.
 *
 * Safe for SQLite: bytes past the last valid frame are never read as
 * frames (a frame carries the header's salts and a running checksum, and
 * recovery stops at the first that does not match), and zeroes are only
 * ever written past the end of the file while the writer holds the WAL
 * write lock, so they never overwrite a frame of this or of another
 * process. SQLite only shrinks a WAL for journal_size_limit or a TRUNCATE
 * checkpoint, neither of which the registry uses. */
#ifndef SENDONCE_REGISTRY_SQLITE_WAL_H
#define SENDONCE_REGISTRY_SQLITE_WAL_H

#include <stdint.h>

#include <sqlite3.h>

/* What the writer knows of its WAL file. Used only by the thread that
 * leads a batch (the group's `leading` orders them). */
struct rsw {
  int fd;              /* the -wal file, write-only; -1: not kept ahead */
  int64_t frame_bytes; /* one frame: a page and its 24-byte header */
  int64_t frames;      /* valid frames after the writer's last commit */
  int64_t ready;       /* the file is at least this long */
};

/* rsw_open: for the writer connection `db` on `path`: installs the WAL
 * hook that counts the frames (and runs the automatic checkpoint the hook
 * replaces, at the same threshold) and opens the -wal file. Without the
 * file (or the page size) the WAL is left to grow as SQLite grows it. */
void rsw_open(struct rsw *w, sqlite3 *db, const char *path);

/* rsw_close: the file descriptor (the connection's hook dies with it). */
void rsw_close(struct rsw *w);

/* rsw_ensure: with the write lock held (after BEGIN IMMEDIATE, before any
 * statement of the transaction), make the file at least a MiB longer than
 * the frames committed so far, writing zeroes past its end and syncing
 * them. Nothing to do, and no system call, while it already is. */
void rsw_ensure(struct rsw *w);

#endif /* SENDONCE_REGISTRY_SQLITE_WAL_H */
