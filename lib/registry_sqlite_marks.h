/* registry_sqlite_marks.h - the SQLite registry's delivery marks, as a
 * fenced step writes them (internal to registry_sqlite.c): runs of
 * consecutive marks of one state go 64, 16 or 4 rows per statement
 * (registry_sqlite_db.c), the rest one at a time. rsmk_ marks these
 * internal names. */
#ifndef SENDONCE_REGISTRY_SQLITE_MARKS_H
#define SENDONCE_REGISTRY_SQLITE_MARKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry_sqlite_db.h"

/* rsmk_write: inside the step's transaction, after its fence check, write
 * marks[0..n) in order, stamped `now`. *sent / *rejected are increased by
 * the rows each moved into SENT / REJECTED (a repeated mark changes and
 * counts nothing). changed (if not NULL) gets per mark whether it wrote
 * its row, that is whether the recipient was pending (absent or INFLIGHT)
 * at that point. SO_OK or the failure, with the handle's errmsg. */
int rsmk_write(struct registry_sqlite *s, const char *id, int64_t now,
               const struct registry_mark *marks, size_t n, bool *changed,
               int64_t *sent, int64_t *rejected);

/* rsmk_same_answers: pending[i] = pending[j] for the first j < i whose
 * recipient id equals marks[i]'s. slot: cap zeroed entries, cap a power
 * of two of at least 2n (the caller allocates, so that running out of
 * memory comes before the write, not after). */
void rsmk_same_answers(const struct registry_mark *marks, size_t n,
                       size_t *slot, size_t cap, bool *pending);

#endif /* SENDONCE_REGISTRY_SQLITE_MARKS_H */
