/* registry.c - the registry's public face: argument checks common to both
 * backends, then a call through the backend's ops table. */
#include "registry.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry_backend.h"

#define REGISTRY_ID_MAX 128
#define REGISTRY_OWNER_MAX 256

static const char *const campaign_state_names[] = {
    "SCHEDULED", "PUBLISHED", "PROCESSING", "DONE", "DEAD",
};

const char *campaign_state_name(enum campaign_state state)
{
  if ((int)state < 0 || (size_t)state >= sizeof(campaign_state_names) /
                                             sizeof(campaign_state_names[0]))
    return "UNKNOWN";
  return campaign_state_names[state];
}

int campaign_state_parse(const char *name, enum campaign_state *out)
{
  if (!name || !out)
    return SO_ERR_INVALID;
  for (size_t i = 0;
       i < sizeof(campaign_state_names) / sizeof(campaign_state_names[0]);
       i++) {
    if (strcmp(name, campaign_state_names[i]) == 0) {
      *out = (enum campaign_state)i;
      return SO_OK;
    }
  }
  return SO_ERR_INVALID;
}

static bool campaign_state_valid(int state)
{
  return state >= CAMPAIGN_SCHEDULED && state <= CAMPAIGN_DEAD;
}

void registry_campaign_free(struct registry_campaign *c)
{
  if (!c)
    return;
  free(c->campaign_id);
  free(c->channel);
  free(c->payload);
  free(c->owner);
  free(c->last_error);
  memset(c, 0, sizeof(*c));
}

void registry_campaigns_free(struct registry_campaign *list, size_t n)
{
  if (!list)
    return;
  for (size_t i = 0; i < n; i++)
    registry_campaign_free(&list[i]);
  free(list);
}

int registry_set_error(struct registry *r, int status, const char *fmt, ...)
{
  if (!r)
    return status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
  va_end(ap);
  return status;
}

const char *registry_errmsg(const struct registry *r)
{
  if (!r)
    return "no registry handle";
  return r->errmsg[0] ? r->errmsg : "no error";
}

int registry_open(const struct registry_options *opt, struct registry **out,
                  char *err, size_t errlen)
{
  if (!out)
    return SO_ERR_INVALID;
  *out = NULL;
  if (!opt) {
    snprintf(err, errlen, "registry: no options");
    return SO_ERR_INVALID;
  }
  if (opt->busy_timeout_ms < 0) {
    snprintf(err, errlen, "registry: busy_timeout_ms must be >= 0");
    return SO_ERR_INVALID;
  }
  if (opt->commit_delay_us < 0 || opt->commit_delay_us > 100000) {
    snprintf(err, errlen, "registry: commit_delay_us must be 0..100000");
    return SO_ERR_INVALID;
  }
  switch (opt->backend) {
    case REGISTRY_SQLITE:
      if (!opt->sqlite_path || !*opt->sqlite_path) {
        snprintf(err, errlen, "registry: sqlite_path is empty");
        return SO_ERR_INVALID;
      }
      return registry_sqlite_open(opt, out, err, errlen);
    case REGISTRY_POSTGRESQL:
      if (!opt->pg_conninfo) {
        snprintf(err, errlen, "registry: pg_conninfo is missing");
        return SO_ERR_INVALID;
      }
      return registry_pg_open(opt, out, err, errlen);
  }
  snprintf(err, errlen, "registry: unknown backend %d", (int)opt->backend);
  return SO_ERR_INVALID;
}

void registry_close(struct registry *r)
{
  if (r)
    r->ops->close(r);
}

/* Each public call starts from a clean message, so registry_errmsg never
 * describes an older failure. */
static int registry_begin_call(struct registry *r)
{
  if (!r)
    return SO_ERR_INVALID;
  r->errmsg[0] = '\0';
  return SO_OK;
}

/* The campaign id rules of DESIGN.md: 1-128 chars of [A-Za-z0-9._:-]. */
static int check_id(struct registry *r, const char *id)
{
  if (!id || !*id)
    return registry_set_error(r, SO_ERR_INVALID, "campaign id is empty");
  size_t len = strlen(id);
  if (len > REGISTRY_ID_MAX)
    return registry_set_error(
        r, SO_ERR_INVALID, "campaign id longer than %d chars", REGISTRY_ID_MAX);
  for (size_t i = 0; i < len; i++) {
    char ch = id[i];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' ||
              ch == '-';
    if (!ok)
      return registry_set_error(r, SO_ERR_INVALID,
                                "campaign id has a character outside "
                                "[A-Za-z0-9._:-] at offset %zu",
                                i);
  }
  return SO_OK;
}

static int check_owner(struct registry *r, const char *owner)
{
  if (!owner || !*owner)
    return registry_set_error(r, SO_ERR_INVALID, "owner is empty");
  if (strlen(owner) > REGISTRY_OWNER_MAX)
    return registry_set_error(r, SO_ERR_INVALID, "owner longer than %d chars",
                              REGISTRY_OWNER_MAX);
  return SO_OK;
}

static int check_ttl(struct registry *r, int64_t ttl_ms)
{
  if (ttl_ms <= 0)
    return registry_set_error(r, SO_ERR_INVALID, "ttl_ms must be > 0");
  return SO_OK;
}

/* Fences start at 1: 0 means "never claimed", so no caller holds it. */
static int check_fence(struct registry *r, int64_t fence)
{
  if (fence <= 0)
    return registry_set_error(r, SO_ERR_INVALID, "fence must be > 0");
  return SO_OK;
}

static int check_id_fence(struct registry *r, const char *id, int64_t fence)
{
  int rc = check_id(r, id);
  return rc ? rc : check_fence(r, fence);
}

#define CHECK(expr)   \
  do {                \
    int rc_ = (expr); \
    if (rc_ < 0)      \
      return rc_;     \
  } while (0)

#define CHECK_NOT_NULL(r, p)                                            \
  do {                                                                  \
    if (!(p))                                                           \
      return registry_set_error((r), SO_ERR_INVALID, "%s is NULL", #p); \
  } while (0)

int registry_now(struct registry *r, int64_t *now_ms)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, now_ms);
  return r->ops->now(r, now_ms);
}

static int check_new_campaign(struct registry *r,
                              const struct registry_new_campaign *c,
                              const bool *created)
{
  CHECK_NOT_NULL(r, c);
  CHECK_NOT_NULL(r, created);
  CHECK(check_id(r, c->campaign_id));
  if (!c->channel || !*c->channel)
    return registry_set_error(r, SO_ERR_INVALID, "channel is empty");
  if (!c->payload)
    return registry_set_error(r, SO_ERR_INVALID, "payload is NULL");
  return SO_OK;
}

int registry_register(struct registry *r, const struct registry_new_campaign *c,
                      enum campaign_state initial, bool *created)
{
  CHECK(registry_begin_call(r));
  CHECK(check_new_campaign(r, c, created));
  if (initial != CAMPAIGN_SCHEDULED && initial != CAMPAIGN_PUBLISHED)
    return registry_set_error(r, SO_ERR_INVALID,
                              "initial state must be SCHEDULED or PUBLISHED");
  *created = false;
  return r->ops->register_campaign(r, c, initial, created);
}

int registry_begin_publish(struct registry *r, const char *campaign_id,
                           const char *owner, int64_t ttl_ms, bool *won)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, won);
  *won = false;
  CHECK(check_id(r, campaign_id));
  CHECK(check_owner(r, owner));
  CHECK(check_ttl(r, ttl_ms));
  return r->ops->begin_publish(r, campaign_id, owner, ttl_ms, won);
}

int registry_mark_published(struct registry *r, const char *campaign_id,
                            bool *won)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, won);
  *won = false;
  CHECK(check_id(r, campaign_id));
  return r->ops->mark_published(r, campaign_id, won);
}

static int check_list_out(struct registry *r, size_t limit,
                          struct registry_campaign **out, size_t *n)
{
  CHECK_NOT_NULL(r, out);
  CHECK_NOT_NULL(r, n);
  *out = NULL;
  *n = 0;
  if (limit == 0)
    return registry_set_error(r, SO_ERR_INVALID, "limit must be > 0");
  return SO_OK;
}

int registry_list_due(struct registry *r, int64_t ahead_ms, size_t limit,
                      struct registry_campaign **out, size_t *n)
{
  CHECK(registry_begin_call(r));
  CHECK(check_list_out(r, limit, out, n));
  if (ahead_ms < 0)
    return registry_set_error(r, SO_ERR_INVALID, "ahead_ms must be >= 0");
  return r->ops->list_due(r, ahead_ms, limit, out, n);
}

int registry_claim(struct registry *r, const char *campaign_id,
                   const char *owner, int64_t ttl_ms,
                   struct registry_claim *out)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, out);
  memset(out, 0, sizeof(*out));
  CHECK(check_id(r, campaign_id));
  CHECK(check_owner(r, owner));
  CHECK(check_ttl(r, ttl_ms));
  return r->ops->claim(r, campaign_id, owner, ttl_ms, out);
}

int registry_register_claim(struct registry *r,
                            const struct registry_new_campaign *c,
                            const char *owner, int64_t ttl_ms, bool *created,
                            struct registry_claim *out)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, out);
  memset(out, 0, sizeof(*out));
  if (!r->ops->register_claim) {
    int rc = registry_register(r, c, CAMPAIGN_PUBLISHED, created);
    return rc ? rc : registry_claim(r, c->campaign_id, owner, ttl_ms, out);
  }
  CHECK(check_new_campaign(r, c, created));
  CHECK(check_owner(r, owner));
  CHECK(check_ttl(r, ttl_ms));
  *created = false;
  return r->ops->register_claim(r, c, owner, ttl_ms, created, out);
}

static int check_marks(struct registry *r, const struct registry_mark *marks,
                       size_t n);

int registry_register_claim_mark(struct registry *r,
                                 const struct registry_new_campaign *c,
                                 const char *owner, int64_t ttl_ms,
                                 const struct registry_mark *marks, size_t n,
                                 bool *created, struct registry_claim *out,
                                 bool *pending, bool *marked)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, out);
  CHECK_NOT_NULL(r, marked);
  memset(out, 0, sizeof(*out));
  *marked = false;
  CHECK(check_marks(r, marks, n));
  if (n > 0)
    CHECK_NOT_NULL(r, pending);
  if (!r->ops->register_claim_mark) {
    int rc = registry_register_claim(r, c, owner, ttl_ms, created, out);
    if (rc || out->kind != REGISTRY_CLAIM_CLAIMED)
      return rc;
    /* The claim is committed whatever follows: a failure of the marks
     * only means the caller marks them itself. */
    *marked = registry_mark_pending(r, c->campaign_id, out->fence, marks, n,
                                    pending) == SO_OK;
    return SO_OK;
  }
  CHECK(check_new_campaign(r, c, created));
  CHECK(check_owner(r, owner));
  CHECK(check_ttl(r, ttl_ms));
  *created = false;
  return r->ops->register_claim_mark(r, c, owner, ttl_ms, marks, n, created,
                                     out, pending, marked);
}

int registry_renew(struct registry *r, const char *campaign_id, int64_t fence,
                   int64_t ttl_ms)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  CHECK(check_ttl(r, ttl_ms));
  return r->ops->renew(r, campaign_id, fence, ttl_ms);
}

int registry_pending(struct registry *r, const char *campaign_id, int64_t fence,
                     const char *const *recipient_ids, size_t n,
                     bool *needs_send)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  if (n > 0) {
    CHECK_NOT_NULL(r, recipient_ids);
    CHECK_NOT_NULL(r, needs_send);
  }
  for (size_t i = 0; i < n; i++) {
    if (!recipient_ids[i] || !*recipient_ids[i])
      return registry_set_error(r, SO_ERR_INVALID, "recipient id %zu is empty",
                                i);
  }
  return r->ops->pending(r, campaign_id, fence, recipient_ids, n, needs_send);
}

static int check_marks(struct registry *r, const struct registry_mark *marks,
                       size_t n)
{
  if (n > 0)
    CHECK_NOT_NULL(r, marks);
  for (size_t i = 0; i < n; i++) {
    if (!marks[i].recipient_id || !*marks[i].recipient_id)
      return registry_set_error(r, SO_ERR_INVALID,
                                "mark %zu: recipient id is empty", i);
    if (marks[i].state != DELIVERY_INFLIGHT &&
        marks[i].state != DELIVERY_SENT && marks[i].state != DELIVERY_REJECTED)
      return registry_set_error(r, SO_ERR_INVALID,
                                "mark %zu: unknown delivery state %d", i,
                                (int)marks[i].state);
  }
  return SO_OK;
}

int registry_mark(struct registry *r, const char *campaign_id, int64_t fence,
                  const struct registry_mark *marks, size_t n)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  CHECK(check_marks(r, marks, n));
  return r->ops->mark(r, campaign_id, fence, marks, n);
}

/* The composed form: the pending read, then the marks. */
static int mark_pending_composed(struct registry *r, const char *campaign_id,
                                 int64_t fence,
                                 const struct registry_mark *marks, size_t n,
                                 bool *pending)
{
  const char **ids = malloc((n ? n : 1) * sizeof(*ids));
  if (!ids)
    return registry_set_error(r, SO_ERR_NOMEM, "registry: out of memory");
  for (size_t i = 0; i < n; i++)
    ids[i] = marks[i].recipient_id;
  int rc = registry_pending(r, campaign_id, fence, ids, n, pending);
  free(ids);
  return rc ? rc : registry_mark(r, campaign_id, fence, marks, n);
}

int registry_mark_pending(struct registry *r, const char *campaign_id,
                          int64_t fence, const struct registry_mark *marks,
                          size_t n, bool *pending)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  CHECK(check_marks(r, marks, n));
  if (n > 0)
    CHECK_NOT_NULL(r, pending);
  if (!r->ops->mark_pending)
    return mark_pending_composed(r, campaign_id, fence, marks, n, pending);
  return r->ops->mark_pending(r, campaign_id, fence, marks, n, pending);
}

int registry_set_total(struct registry *r, const char *campaign_id,
                       int64_t fence, int64_t total)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  if (total < 0)
    return registry_set_error(r, SO_ERR_INVALID, "total must be >= 0");
  return r->ops->set_total(r, campaign_id, fence, total);
}

int registry_complete(struct registry *r, const char *campaign_id,
                      int64_t fence)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  return r->ops->complete(r, campaign_id, fence);
}

int registry_finish(struct registry *r, const char *campaign_id, int64_t fence,
                    int64_t total, struct registry_counts *counts)
{
  CHECK(registry_begin_call(r));
  struct registry_counts ignored;
  if (!counts)
    counts = &ignored;
  if (!r->ops->finish) {
    int rc = registry_set_total(r, campaign_id, fence, total);
    if (!rc)
      rc = registry_complete(r, campaign_id, fence);
    struct registry_campaign c = {0};
    if (!rc && counts != &ignored && !registry_get(r, campaign_id, &c)) {
      counts->sent = c.sent;
      counts->rejected = c.rejected;
    }
    registry_campaign_free(&c);
    return rc;
  }
  CHECK(check_id_fence(r, campaign_id, fence));
  if (total < 0)
    return registry_set_error(r, SO_ERR_INVALID, "total must be >= 0");
  return r->ops->finish(r, campaign_id, fence, total, counts);
}

int registry_mark_finish(struct registry *r, const char *campaign_id,
                         int64_t fence, const struct registry_mark *marks,
                         size_t n, int64_t total,
                         struct registry_counts *counts)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  CHECK(check_marks(r, marks, n));
  if (total < 0)
    return registry_set_error(r, SO_ERR_INVALID, "total must be >= 0");
  if (!r->ops->mark_finish) {
    int rc = registry_mark(r, campaign_id, fence, marks, n);
    return rc ? rc : registry_finish(r, campaign_id, fence, total, counts);
  }
  struct registry_counts ignored;
  return r->ops->mark_finish(r, campaign_id, fence, marks, n, total,
                             counts ? counts : &ignored);
}

int registry_release(struct registry *r, const char *campaign_id, int64_t fence,
                     bool count_attempt, const char *reason, int *attempts)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  return r->ops->release(r, campaign_id, fence, count_attempt, reason,
                         attempts);
}

int registry_fail(struct registry *r, const char *campaign_id, int64_t fence,
                  const char *reason)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id_fence(r, campaign_id, fence));
  if (!reason || !*reason)
    return registry_set_error(r, SO_ERR_INVALID, "reason is empty");
  return r->ops->fail(r, campaign_id, fence, reason);
}

int registry_mark_dead(struct registry *r, const char *campaign_id,
                       const char *reason)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id(r, campaign_id));
  if (!reason || !*reason)
    return registry_set_error(r, SO_ERR_INVALID, "reason is empty");
  return r->ops->mark_dead(r, campaign_id, reason);
}

int registry_pause(struct registry *r, const char *campaign_id)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id(r, campaign_id));
  return r->ops->pause(r, campaign_id);
}

int registry_resume(struct registry *r, const char *campaign_id)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id(r, campaign_id));
  return r->ops->resume(r, campaign_id);
}

int registry_cancel(struct registry *r, const char *campaign_id)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id(r, campaign_id));
  return r->ops->cancel(r, campaign_id);
}

int registry_control(struct registry *r, const char *campaign_id, int64_t fence,
                     enum registry_control *out)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, out);
  CHECK(check_id_fence(r, campaign_id, fence));
  return r->ops->control(r, campaign_id, fence, out);
}

int registry_replay(struct registry *r, const char *campaign_id)
{
  CHECK(registry_begin_call(r));
  CHECK(check_id(r, campaign_id));
  return r->ops->replay(r, campaign_id);
}

int registry_get(struct registry *r, const char *campaign_id,
                 struct registry_campaign *out)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, out);
  memset(out, 0, sizeof(*out));
  CHECK(check_id(r, campaign_id));
  return r->ops->get(r, campaign_id, out);
}

int registry_list(struct registry *r, int state, size_t limit,
                  struct registry_campaign **out, size_t *n)
{
  CHECK(registry_begin_call(r));
  CHECK(check_list_out(r, limit, out, n));
  if (state != -1 && !campaign_state_valid(state))
    return registry_set_error(r, SO_ERR_INVALID, "unknown state %d", state);
  return r->ops->list(r, state, limit, out, n);
}

int registry_list_overdue(struct registry *r, int64_t grace_ms, size_t limit,
                          struct registry_campaign **out, size_t *n)
{
  CHECK(registry_begin_call(r));
  CHECK(check_list_out(r, limit, out, n));
  if (grace_ms < 0)
    return registry_set_error(r, SO_ERR_INVALID, "grace_ms must be >= 0");
  return r->ops->list_overdue(r, grace_ms, limit, out, n);
}

int registry_record_republish(struct registry *r, const char *campaign_id,
                              enum campaign_state expected_state,
                              int64_t expected_fence, int64_t grace_ms,
                              int64_t backoff_ms, int max_republishes,
                              bool *won)
{
  CHECK(registry_begin_call(r));
  CHECK_NOT_NULL(r, won);
  *won = false;
  CHECK(check_id(r, campaign_id));
  if (!campaign_state_valid((int)expected_state))
    return registry_set_error(r, SO_ERR_INVALID, "unknown state %d",
                              (int)expected_state);
  if (expected_fence < 0 || grace_ms < 0 || backoff_ms < 0 ||
      max_republishes < 0)
    return registry_set_error(r, SO_ERR_INVALID,
                              "fence, grace, backoff and max must be >= 0");
  return r->ops->record_republish(r, campaign_id, expected_state,
                                  expected_fence, grace_ms, backoff_ms,
                                  max_republishes, won);
}

void registry_options_from_config(struct registry_options *opts,
                                  const struct config_registry *cfg)
{
  *opts = (struct registry_options){
      .backend = cfg->backend == CONFIG_REGISTRY_POSTGRESQL
                     ? REGISTRY_POSTGRESQL
                     : REGISTRY_SQLITE,
      .sqlite_path = cfg->sqlite_path,
      .pg_conninfo = cfg->pg_conninfo,
      .pg_password = cfg->pg_password,
      .busy_timeout_ms = cfg->busy_timeout_ms,
      .commit_delay_us = cfg->commit_delay_us,
  };
}
