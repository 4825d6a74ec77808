/* registry_sqlite_group.h - group commit for the SQLite registry backend
 * (internal to registry_sqlite*.c; rsg_ marks these names).
 *
 * Why: SQLite has one write lock per database and each commit costs an
 * fsync (synchronous=FULL). Eight worker threads with a handle each took
 * turns on that lock, one fsync per registry step. Handles of one process
 * on one database file now share a group: each write step becomes a job,
 * and whichever caller finds no leader active runs every queued job in
 * ONE transaction on the group's own writer connection, one SAVEPOINT per
 * job, and commits once. Every caller still returns only after its own job's
 * transaction committed, so the durability of each step is unchanged.
 *
 * A group is keyed by (pid, database file): a handle never shares a
 * group, nor a connection's work, with another process (SQLite's locks
 * are per process; see registry.h on fork()). */
#ifndef SENDONCE_REGISTRY_SQLITE_GROUP_H
#define SENDONCE_REGISTRY_SQLITE_GROUP_H

#include "registry_sqlite_db.h"

struct rsg_group;

/* One write step: `fn` runs the step's statements on `exec` (the group's
 * writer, already inside a transaction and a savepoint of its own) and
 * returns SO_OK or a status with exec's errmsg filled. It must not begin
 * or end transactions, and must read the registry clock itself. */
typedef int (*rsg_job_fn)(struct registry_sqlite *exec, void *arg);

/* rsg_acquire: the group of this process for the (existing) database file
 * at `path`, created on first use (refcounted) with its writer connection
 * opened on `path`. rsg_release drops one reference; the last closes the
 * writer and frees the group. */
int rsg_acquire(const char *path, struct rsg_group **out, char *err,
                size_t errlen) SO_MUST_CHECK;
void rsg_release(struct rsg_group *g);

/* rsg_run: run fn(exec, arg) as one job of a group commit and wait until
 * its transaction committed (or failed). `self` is the caller's handle: it
 * leads (on the group's writer, with self's busy timeout and commit delay)
 * when no other thread does, and on failure its errmsg gets the job's
 * detail. Jobs queued while a batch runs join it before its COMMIT; with a
 * commit delay, the leader also waits up to that long for the jobs of
 * other handles that queued lately (never when its own handle is the only
 * one; see wait_more in the .c). Returns the
 * job's status; a failed COMMIT, or a transaction SQLite rolled back whole,
 * fails every job of that group with the same status. */
int rsg_run(struct rsg_group *g, struct registry_sqlite *self, rsg_job_fn fn,
            void *arg);

/* Counts of a group since it was created, for tests that check how
 * threads are woken: `waits` callers slept for their turn (their job was
 * queued while a batch ran), `wakes` times such a sleeper woke up,
 * `handoffs` batches ended by handing the lead to a waiting caller,
 * `idle_wakes` wake-ups for nothing (the job neither done nor the caller's
 * to lead; 0 by design). At rest each sleeper woke once (wakes = waits)
 * and waits = jobs - batches + handoffs. */
struct rsg_stats {
  unsigned long long batches, jobs, waits, wakes, handoffs, idle_wakes;
  unsigned long long delays; /* batches whose leader waited for more jobs
                                before its COMMIT (the commit delay) */
};

void rsg_stats_get(struct rsg_group *g, struct rsg_stats *out);

#endif /* SENDONCE_REGISTRY_SQLITE_GROUP_H */
