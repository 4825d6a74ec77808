/* registry_sqlite_read.c - the SQLite backend's plain reads: the
 * registry's clock, one campaign, and the campaign lists (all, by state,
 * due, overdue). Each is one statement on the caller's own connection,
 * outside any transaction and outside the group commit, like every read
 * of the backend (registry_sqlite.c). */
#include "registry_sqlite_read.h"

#include <stdint.h>

#include <sqlite3.h>

#include "registry_sqlite_db.h"

static struct registry_sqlite *to_sqlite(struct registry *r)
{
  return (struct registry_sqlite *)r;
}

int rsrd_now(struct registry *r, int64_t *now_ms)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, ST_NOW, &rc);
  if (!st)
    return rc;
  bool row = false;
  rc = rsdb_step(s, st, &row, "reading the clock");
  if (!rc && row)
    *now_ms = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return rc;
}

/* list_by_ms: the campaign lists whose statement takes a duration in ms
 * (?1: how far ahead, or the grace) and a row limit (?2). */
static int list_by_ms(struct registry *r, enum stmt_id which, int64_t ms,
                      size_t limit, struct registry_campaign **out, size_t *n)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, which, &rc);
  if (!st)
    return rc;
  sqlite3_bind_int64(st, 1, ms);
  sqlite3_bind_int64(st, 2, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  return rsdb_read_list(s, st, out, n);
}

int rsrd_list_due(struct registry *r, int64_t ahead_ms, size_t limit,
                  struct registry_campaign **out, size_t *n)
{
  return list_by_ms(r, ST_LIST_DUE, ahead_ms, limit, out, n);
}

int rsrd_get(struct registry *r, const char *id, struct registry_campaign *out)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, ST_GET, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  bool row = false;
  rc = rsdb_step(s, st, &row, "reading a campaign");
  if (!rc && !row)
    rc = registry_set_error(&s->base, SO_ERR_NOTFOUND,
                            "registry: no campaign '%s'", id);
  if (!rc)
    rc = rsdb_read_campaign(s, st, out);
  sqlite3_reset(st);
  return rc;
}

int rsrd_list(struct registry *r, int state, size_t limit,
              struct registry_campaign **out, size_t *n)
{
  struct registry_sqlite *s = to_sqlite(r);
  int rc;
  sqlite3_stmt *st = rsdb_stmt(s, state < 0 ? ST_LIST_ALL : ST_LIST_STATE, &rc);
  if (!st)
    return rc;
  sqlite3_bind_int64(st, 1, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  if (state >= 0)
    rsdb_bind_text(st, 2, campaign_state_name((enum campaign_state)state));
  return rsdb_read_list(s, st, out, n);
}

int rsrd_list_overdue(struct registry *r, int64_t grace_ms, size_t limit,
                      struct registry_campaign **out, size_t *n)
{
  return list_by_ms(r, ST_LIST_OVERDUE, grace_ms, limit, out, n);
}
