/* registry_pg_mark_ops.h - the PostgreSQL backend's ops that write
 * delivery marks (internal: only registry_pg.c includes this, for its ops
 * table). Each has the meaning and the status codes of the registry.h
 * function of the same name without the pg_ prefix. */
#ifndef SENDONCE_REGISTRY_PG_MARK_OPS_H
#define SENDONCE_REGISTRY_PG_MARK_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry_backend.h"

int pg_mark(struct registry *base, const char *id, int64_t fence,
            const struct registry_mark *marks, size_t n);
int pg_mark_pending(struct registry *base, const char *id, int64_t fence,
                    const struct registry_mark *marks, size_t n, bool *pending);
int pg_mark_finish(struct registry *base, const char *id, int64_t fence,
                   const struct registry_mark *marks, size_t n, int64_t total,
                   struct registry_counts *counts);
int pg_register_claim_mark(struct registry *base,
                           const struct registry_new_campaign *c,
                           const char *owner, int64_t ttl_ms,
                           const struct registry_mark *marks, size_t n,
                           bool *created, struct registry_claim *out,
                           bool *pending, bool *marked);

#endif /* SENDONCE_REGISTRY_PG_MARK_OPS_H */
