/* registry_pg_marks.h - the parameters of the PostgreSQL mark statements
 * (S_MARK, S_MARK_PENDING) and their pending answer. Internal to
 * registry_pg*.c.
 *
 * A call's marks are applied in order per recipient, as SQLite applies
 * them one by one. Here they are first collapsed to one effect per
 * recipient (the first SENT/REJECTED wins, the INFLIGHT marks before it
 * count attempts) and sorted into the groups the statement writes with
 * the cheapest SQL that fits each: a SENT for a row that is INFLIGHT is a
 * plain UPDATE (HOT), a first INFLIGHT a plain INSERT, and only the rare
 * rest (REJECTED, repeats) an INSERT ... ON CONFLICT.
 */
#ifndef SENDONCE_REGISTRY_PG_MARKS_H
#define SENDONCE_REGISTRY_PG_MARKS_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "registry.h"
#include "registry_pg_conn.h"

/* The statements' array parameters, after $1 (id) and $2 (fence); $12
 * says whether to look the first INFLIGHT marks' rows up (MARK_WITH). */
#define PG_MARKS_NPARAMS 9

struct pg_marks_effect; /* one recipient's collapsed effect */

struct pg_marks {
  struct pg_buf params[PG_MARKS_NPARAMS]; /* $3 ... $11, text literals */
  struct pg_marks_effect *eff;            /* sorted by recipient id */
  size_t n_eff;
  size_t *of_mark; /* mark position -> its recipient's index in eff */
  bool *written;   /* per eff: the statement wrote it (pg_marks_pending) */
};

/* pg_marks_build: collapse n marks into pm (zeroed by the caller or a
 * previous pg_marks_free). The strings of marks must outlive pm.
 * SO_ERR_NOMEM when out of memory. */
int pg_marks_build(struct pg_marks *pm, const struct registry_mark *marks,
                   size_t n) SO_MUST_CHECK;

/* pg_marks_pending: pending[0..n) from S_MARK_PENDING's rows (column 0
 * the recipient ids the statement wrote, a NULL row for the fence
 * verdict): a mark is pending when its recipient was written, that is
 * was absent or INFLIGHT. */
void pg_marks_pending(const struct pg_marks *pm, const PGresult *res,
                      bool *pending, size_t n);

/* pg_marks_fresh: after pg_marks_pending, whether there were recipients
 * marked INFLIGHT once and every one was written (as a fresh one is): a
 * hint that the next call's need no lookup. */
bool pg_marks_fresh(const struct pg_marks *pm);

/* pg_marks_free: release what pg_marks_build allocated; pm is zeroed. */
void pg_marks_free(struct pg_marks *pm);

#endif /* SENDONCE_REGISTRY_PG_MARKS_H */
