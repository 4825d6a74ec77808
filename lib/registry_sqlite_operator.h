/* registry_sqlite_operator.h - the operators' and the watchdog's steps of
 * the SQLite backend (internal: only registry_sqlite.c includes this, for
 * its ops table). rsop_ marks these names; each has the meaning and the
 * status codes of the registry.h function of the same name. */
#ifndef SENDONCE_REGISTRY_SQLITE_OPERATOR_H
#define SENDONCE_REGISTRY_SQLITE_OPERATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "registry_backend.h"

int rsop_mark_dead(struct registry *r, const char *id, const char *reason);
int rsop_pause(struct registry *r, const char *id);
int rsop_resume(struct registry *r, const char *id);
int rsop_cancel(struct registry *r, const char *id);
int rsop_replay(struct registry *r, const char *id);
int rsop_record_republish(struct registry *r, const char *id,
                          enum campaign_state expected_state,
                          int64_t expected_fence, int64_t grace_ms,
                          int64_t backoff_ms, int max_republishes, bool *won);

#endif /* SENDONCE_REGISTRY_SQLITE_OPERATOR_H */
