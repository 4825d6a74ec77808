/* registry_pg_internal.h - what registry_pg.c's ops share with the
 * backend's other op file, registry_pg_mark_ops.c: the fenced-change
 * helpers, the campaign peek and the claim. Internal to registry_pg*.c;
 * each function has the status codes of the op it serves.
 */
#ifndef SENDONCE_REGISTRY_PG_INTERNAL_H
#define SENDONCE_REGISTRY_PG_INTERNAL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "registry_backend.h"
#include "registry_pg_conn.h"

/* Whether an op may simply run again after the connection broke in the
 * middle of it (it may have committed): yes when running it twice leaves
 * the same state and answer. */
enum { ONCE = 0, IDEMPOTENT = 1 };

static inline struct registry_pg *pg(struct registry *base)
{
  return (struct registry_pg *)base;
}

static inline void fmt_i64(char buf[24], int64_t v)
{
  snprintf(buf, 24, "%" PRId64, v);
}

/* pg_run: run statement `id` with the connection check and bounded
 * retries (`idempotent`: IDEMPOTENT or ONCE, see pg_conn_again). On
 * success *out (if out) owns the rows (PQclear). */
int pg_run(struct registry_pg *r, enum pg_stmt id, const char *what,
           int nparams, const char *const *params, int idempotent,
           PGresult **out) SO_MUST_CHECK;

/* The row of S_PEEK, the current state of one campaign. */
struct pg_peek {
  enum campaign_state state;
  bool paused;
  int64_t fence;
  int64_t lease_until;
  int64_t now;
};

/* pg_peek: read a campaign's state; SO_ERR_NOTFOUND if absent. */
int pg_peek(struct registry_pg *r, const char *id,
            struct pg_peek *p) SO_MUST_CHECK;

/* pg_stale: the SO_ERR_STALE_FENCE of a fenced op `what`, saying why
 * from p (returned, with errmsg set). */
int pg_stale(struct registry_pg *r, const char *what, const char *id,
             int64_t fence, const struct pg_peek *p);

/* pg_fenced: run fenced statement `id` ($1 id, $2 fence) with the
 * connection check and retries (`idempotent`: IDEMPOTENT or ONCE); when
 * it changed nothing, SO_ERR_NOTFOUND if the campaign is absent, else
 * SO_ERR_STALE_FENCE. On success *out (if out) owns the rows (PQclear). */
int pg_fenced(struct registry_pg *r, enum pg_stmt id, const char *what,
              int nparams, const char *const *params, int idempotent,
              PGresult **out) SO_MUST_CHECK;

/* pg_claimed_row: fill out with a claim that happened, from the row
 * S_CLAIM, S_REGISTER_CLAIM or S_REGISTER_CLAIM_MARK returned (fence,
 * lease_until, registry now); frees res. */
void pg_claimed_row(PGresult *res, struct registry_claim *out);

/* pg_claim: the claim op (registry_claim). */
int pg_claim(struct registry *base, const char *id, const char *owner,
             int64_t ttl_ms, struct registry_claim *out) SO_MUST_CHECK;

#endif /* SENDONCE_REGISTRY_PG_INTERNAL_H */
