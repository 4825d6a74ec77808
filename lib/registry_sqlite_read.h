/* registry_sqlite_read.h - the SQLite backend's plain reads (internal:
 * only registry_sqlite.c includes this, for its ops table). rsrd_ marks
 * these names; each has the meaning and the status codes of the
 * registry.h function of the same name. */
#ifndef SENDONCE_REGISTRY_SQLITE_READ_H
#define SENDONCE_REGISTRY_SQLITE_READ_H

#include <stddef.h>
#include <stdint.h>

#include "registry_backend.h"

int rsrd_now(struct registry *r, int64_t *now_ms);
int rsrd_get(struct registry *r, const char *id, struct registry_campaign *out);
int rsrd_list(struct registry *r, int state, size_t limit,
              struct registry_campaign **out, size_t *n);
int rsrd_list_due(struct registry *r, int64_t ahead_ms, size_t limit,
                  struct registry_campaign **out, size_t *n);
int rsrd_list_overdue(struct registry *r, int64_t grace_ms, size_t limit,
                      struct registry_campaign **out, size_t *n);

#endif /* SENDONCE_REGISTRY_SQLITE_READ_H */
