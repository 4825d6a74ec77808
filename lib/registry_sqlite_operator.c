/* registry_sqlite_operator.c - the SQLite backend's steps that operators
 * and the watchdog take, apart from a worker's: mark dead, pause, resume,
 * cancel, replay (one guarded UPDATE each, saying why when it changes
 * nothing) and record_republish. Each is a group-commit job like every
 * write step of the backend (registry_sqlite_group.h). */
#include "registry_sqlite_operator.h"

#include <sqlite3.h>

#include "registry_sqlite_db.h"
#include "registry_sqlite_group.h"

static struct registry_sqlite *to_sqlite(struct registry *r)
{
  return (struct registry_sqlite *)r;
}

/* operator_update: mark_dead, pause, resume, cancel, replay: one UPDATE
 * guarded by the allowed states; when it changes nothing, say why. */
struct operator_step {
  enum stmt_id which;
  const char *id;
  const char *arg_s;
  int arg_i;
  const char *what;
};

static int operator_job(struct registry_sqlite *x, void *arg)
{
  const struct operator_step *a = arg;
  int rc;
  sqlite3_stmt *st = rsdb_stmt(x, a->which, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  if (a->arg_s)
    rsdb_bind_text(st, 2, a->arg_s);
  else if (a->which == ST_PAUSE)
    sqlite3_bind_int(st, 2, a->arg_i);
  int changes = 0;
  rc = rsdb_exec(x, st, &changes, a->what);
  enum campaign_state state = CAMPAIGN_SCHEDULED;
  if (!rc && changes == 0)
    rc = rsdb_state_of(x, a->id, &state);
  if (!rc && changes == 0 &&
      !(a->which == ST_MARK_DEAD && state == CAMPAIGN_DEAD))
    rc = registry_set_error(&x->base, SO_ERR_CONFLICT,
                            "registry: %s: campaign '%s' is %s", a->what, a->id,
                            campaign_state_name(state));
  return rc;
}

static int operator_update(struct registry_sqlite *s, enum stmt_id which,
                           const char *id, const char *arg_s, int arg_i,
                           const char *what)
{
  struct operator_step a = {which, id, arg_s, arg_i, what};
  return rsg_run(s->group, s, operator_job, &a);
}

int rsop_mark_dead(struct registry *r, const char *id, const char *reason)
{
  return operator_update(to_sqlite(r), ST_MARK_DEAD, id, reason, 0,
                         "marking dead");
}

int rsop_pause(struct registry *r, const char *id)
{
  return operator_update(to_sqlite(r), ST_PAUSE, id, NULL, 1, "pausing");
}

int rsop_resume(struct registry *r, const char *id)
{
  return operator_update(to_sqlite(r), ST_PAUSE, id, NULL, 0, "resuming");
}

int rsop_cancel(struct registry *r, const char *id)
{
  return operator_update(to_sqlite(r), ST_CANCEL, id, NULL, 0, "cancelling");
}

int rsop_replay(struct registry *r, const char *id)
{
  return operator_update(to_sqlite(r), ST_REPLAY, id, NULL, 0, "replaying");
}

struct republish_step {
  const char *id;
  enum campaign_state expected_state;
  int64_t expected_fence;
  int64_t grace_ms;
  int64_t backoff_ms;
  int max_republishes;
  int changes;
};

static int republish_job(struct registry_sqlite *x, void *arg)
{
  struct republish_step *a = arg;
  int rc;
  sqlite3_stmt *st = rsdb_stmt(x, ST_REPUBLISH, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, a->id);
  rsdb_bind_text(st, 2, campaign_state_name(a->expected_state));
  sqlite3_bind_int64(st, 3, a->expected_fence);
  sqlite3_bind_int64(st, 4, a->grace_ms);
  sqlite3_bind_int64(st, 5, a->backoff_ms);
  sqlite3_bind_int(st, 6, a->max_republishes);
  rc = rsdb_exec(x, st, &a->changes, "recording a republish");
  enum campaign_state state;
  if (!rc && a->changes == 0)
    rc = rsdb_state_of(x, a->id, &state);
  return rc;
}

int rsop_record_republish(struct registry *r, const char *id,
                          enum campaign_state expected_state,
                          int64_t expected_fence, int64_t grace_ms,
                          int64_t backoff_ms, int max_republishes, bool *won)
{
  struct republish_step a = {id,       expected_state, expected_fence,
                             grace_ms, backoff_ms,     max_republishes,
                             0};
  int rc = rsg_run(to_sqlite(r)->group, to_sqlite(r), republish_job, &a);
  if (!rc)
    *won = a.changes == 1;
  return rc;
}
