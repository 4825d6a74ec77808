/* registry_backend.h - the seam between registry.c and its backends.
 *
 * Internal to the registry: only registry.c, registry_sqlite.c and
 * registry_pg.c include this. A backend is one instance of struct
 * registry_ops (as rabbitmq-c's socket class is the seam of its
 * transports); registry.c validates arguments, then calls through the
 * table. Every op has the meaning and status codes of the registry.h
 * function of the same name. Ops marked optional may be NULL: registry.c
 * then composes them from the others.
 */
#ifndef SENDONCE_REGISTRY_BACKEND_H
#define SENDONCE_REGISTRY_BACKEND_H

#include "registry.h"

#define REGISTRY_ERRMSG_LEN 512

struct registry_ops {
  const char *name; /* "sqlite", "postgresql" */
  void (*close)(struct registry *r);
  int (*now)(struct registry *r, int64_t *now_ms);
  int (*register_campaign)(struct registry *r,
                           const struct registry_new_campaign *c,
                           enum campaign_state initial, bool *created);
  int (*begin_publish)(struct registry *r, const char *id, const char *owner,
                       int64_t ttl_ms, bool *won);
  int (*mark_published)(struct registry *r, const char *id, bool *won);
  int (*list_due)(struct registry *r, int64_t ahead_ms, size_t limit,
                  struct registry_campaign **out, size_t *n);
  int (*claim)(struct registry *r, const char *id, const char *owner,
               int64_t ttl_ms, struct registry_claim *out);
  /* optional: register_claim + (when CLAIMED) mark_pending in one
   * transaction; *marked set */
  int (*register_claim_mark)(struct registry *r,
                             const struct registry_new_campaign *c,
                             const char *owner, int64_t ttl_ms,
                             const struct registry_mark *marks, size_t n,
                             bool *created, struct registry_claim *out,
                             bool *pending, bool *marked);
  int (*renew)(struct registry *r, const char *id, int64_t fence,
               int64_t ttl_ms);
  int (*pending)(struct registry *r, const char *id, int64_t fence,
                 const char *const *recipient_ids, size_t n, bool *needs_send);
  int (*mark)(struct registry *r, const char *id, int64_t fence,
              const struct registry_mark *marks, size_t n);
  int (*set_total)(struct registry *r, const char *id, int64_t fence,
                   int64_t total);
  int (*complete)(struct registry *r, const char *id, int64_t fence);
  /* optional: register (PUBLISHED) + claim in one transaction */
  int (*register_claim)(struct registry *r,
                        const struct registry_new_campaign *c,
                        const char *owner, int64_t ttl_ms, bool *created,
                        struct registry_claim *out);
  /* optional: set_total + complete in one transaction; counts not NULL */
  int (*finish)(struct registry *r, const char *id, int64_t fence,
                int64_t total, struct registry_counts *counts);
  /* optional: pending + mark in one transaction */
  int (*mark_pending)(struct registry *r, const char *id, int64_t fence,
                      const struct registry_mark *marks, size_t n,
                      bool *pending);
  /* optional: mark + finish in one transaction; counts not NULL */
  int (*mark_finish)(struct registry *r, const char *id, int64_t fence,
                     const struct registry_mark *marks, size_t n, int64_t total,
                     struct registry_counts *counts);
  int (*release)(struct registry *r, const char *id, int64_t fence,
                 bool count_attempt, const char *reason, int *attempts);
  int (*fail)(struct registry *r, const char *id, int64_t fence,
              const char *reason);
  int (*mark_dead)(struct registry *r, const char *id, const char *reason);
  int (*pause)(struct registry *r, const char *id);
  int (*resume)(struct registry *r, const char *id);
  int (*cancel)(struct registry *r, const char *id);
  int (*control)(struct registry *r, const char *id, int64_t fence,
                 enum registry_control *out);
  int (*replay)(struct registry *r, const char *id);
  int (*get)(struct registry *r, const char *id, struct registry_campaign *out);
  int (*list)(struct registry *r, int state, size_t limit,
              struct registry_campaign **out, size_t *n);
  int (*list_overdue)(struct registry *r, int64_t grace_ms, size_t limit,
                      struct registry_campaign **out, size_t *n);
  int (*record_republish)(struct registry *r, const char *id,
                          enum campaign_state expected_state,
                          int64_t expected_fence, int64_t grace_ms,
                          int64_t backoff_ms, int max_republishes, bool *won);
};

/* The common head of every backend's handle: a backend's struct starts
 * with `struct registry base;` and casts. */
struct registry {
  const struct registry_ops *ops;
  char errmsg[REGISTRY_ERRMSG_LEN];
};

/* Backend constructors, called by registry_open(). Each fills *out with a
 * handle whose ops are set, or returns a status with err filled. */
int registry_sqlite_open(const struct registry_options *opt,
                         struct registry **out, char *err, size_t errlen);
int registry_pg_open(const struct registry_options *opt, struct registry **out,
                     char *err, size_t errlen);

/* registry_set_error: printf into r->errmsg; returns `status` so a backend
 * can `return registry_set_error(r, SO_ERR_IO, "...", ...)`. */
int registry_set_error(struct registry *r, int status, const char *fmt, ...)
    SO_PRINTF(3, 4);

#endif /* SENDONCE_REGISTRY_BACKEND_H */
