/* registry_sqlite_marks.c - writing a fenced step's delivery marks and
 * the pending answers of repeated ids (see registry_sqlite_marks.h). */
#include "registry_sqlite_marks.h"

#include <stdint.h>
#include <string.h>

static const char *const delivery_state_names[] = {"INFLIGHT", "SENT",
                                                   "REJECTED"};

/* mark_one: one mark; *changed (if not NULL) says whether it wrote the
 * row, that is whether the recipient was pending (absent or INFLIGHT). */
static int mark_one(struct registry_sqlite *s, const char *id, int64_t now,
                    const struct registry_mark *m, int64_t *sent,
                    int64_t *rejected, bool *changed)
{
  int rc;
  bool final = m->state != DELIVERY_INFLIGHT;
  sqlite3_stmt *st =
      rsdb_stmt(s, final ? ST_MARK_FINAL : ST_MARK_INFLIGHT, &rc);
  if (!st)
    return rc;
  rsdb_bind_text(st, 1, id);
  rsdb_bind_text(st, 2, m->recipient_id);
  sqlite3_bind_int64(st, 9, now);
  if (final) {
    rsdb_bind_text(st, 3, delivery_state_names[m->state]);
    rsdb_bind_text(st, 4, m->error);
  }
  int changes = 0;
  rc = rsdb_exec(s, st, &changes, "marking a delivery");
  if (changed)
    *changed = changes == 1;
  /* Counted only when this statement moved the row into SENT/REJECTED:
   * a repeated mark changes nothing and counts nothing. */
  if (!rc && final && changes == 1) {
    if (m->state == DELIVERY_SENT)
      (*sent)++;
    else
      (*rejected)++;
  }
  return rc;
}

/* mark_run: marks[0..k) (one state, k a chunk size) as one statement,
 * counting what moved into SENT/REJECTED. A statement only says how many
 * rows it wrote, so when the caller wants to know per mark (`changed`)
 * the chunk runs in a savepoint: all k written (the usual case: fresh
 * recipients, outcomes of INFLIGHT ones) means every one was pending;
 * fewer, and the chunk is undone and written a mark at a time by
 * mark_one, which tells each. */
static int mark_run(struct registry_sqlite *s, const char *id, int64_t now,
                    const struct registry_mark *m, size_t k, int64_t *sent,
                    int64_t *rejected, bool *changed)
{
  int rc = changed ? rsdb_savepoint(s) : SO_OK;
  int changes = 0;
  /* SENT for rows that are INFLIGHT (nearly always: the outcome of a
   * request whose INFLIGHT mark committed): a plain UPDATE. Only when it
   * does not move all k does the upsert run, for the rest. */
  bool is_sent = m[0].state == DELIVERY_SENT;
  if (!rc && is_sent)
    rc = rsdb_mark_sent_chunk(s, id, now, m, k, &changes);
  if (!rc && (!is_sent || (changes != (int)k && !changed))) {
    int more = 0;
    rc = rsdb_mark_chunk(s, id, now,
                         m[0].state == DELIVERY_INFLIGHT
                             ? NULL
                             : delivery_state_names[m[0].state],
                         m, k, &more);
    changes += more;
  }
  bool all = !rc && changes == (int)k;
  if (changed) {
    /* SO_ERR_CONFLICT only asks for the rollback to the savepoint. */
    int end = rsdb_savepoint_end(s, all ? SO_OK : SO_ERR_CONFLICT);
    rc = rc ? rc : end;
  }
  if (rc)
    return rc;
  if (changed && !all) {
    for (size_t j = 0; !rc && j < k; j++)
      rc = mark_one(s, id, now, &m[j], sent, rejected, &changed[j]);
    return rc;
  }
  for (size_t j = 0; changed && j < k; j++)
    changed[j] = true;
  if (m[0].state == DELIVERY_SENT)
    *sent += changes;
  else if (m[0].state == DELIVERY_REJECTED)
    *rejected += changes;
  return SO_OK;
}

/* chunk_size: how many of the n marks from m on go into one statement:
 * the largest chunk (64, 16, 4) that their run of one state fills, else
 * 1 (mark_one). */
static size_t chunk_size(const struct registry_mark *m, size_t n)
{
  size_t run = 1;
  while (run < n && run < 64 && m[run].state == m[0].state)
    run++;
  return run >= 64 ? 64 : run >= 16 ? 16 : run >= 4 ? 4 : 1;
}

int rsmk_write(struct registry_sqlite *s, const char *id, int64_t now,
               const struct registry_mark *marks, size_t n, bool *changed,
               int64_t *sent, int64_t *rejected)
{
  int rc = SO_OK;
  for (size_t i = 0, k = 0; !rc && i < n; i += k) {
    k = chunk_size(&marks[i], n - i);
    bool *c = changed ? &changed[i] : NULL;
    if (k == 1)
      rc = mark_one(s, id, now, &marks[i], sent, rejected, c);
    else
      rc = mark_run(s, id, now, &marks[i], k, sent, rejected, c);
  }
  return rc;
}

static uint64_t id_hash(const char *id)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)id; *p; p++)
    h = (h ^ *p) * 1099511628211ull;
  return h;
}

/* A sort of the n ids did this at ~700 instructions per mark. */
void rsmk_same_answers(const struct registry_mark *marks, size_t n,
                       size_t *slot, size_t cap, bool *pending)
{
  for (size_t i = 0; i < n; i++) {
    const char *rid = marks[i].recipient_id;
    size_t at = (size_t)id_hash(rid) & (cap - 1);
    while (slot[at] && strcmp(marks[slot[at] - 1].recipient_id, rid) != 0)
      at = (at + 1) & (cap - 1);
    if (slot[at])
      pending[i] = pending[slot[at] - 1];
    else
      slot[at] = i + 1;
  }
}
