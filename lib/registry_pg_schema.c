/* registry_pg_schema.c - the SQL of the PostgreSQL registry: the schema
 * migrations and the statement of every op.
 *
 * Same tables and column names as the SQLite backend
 * (registry_sqlite_schema.c), in PostgreSQL types: times are BIGINT
 * milliseconds since the epoch on the server's clock, states are their
 * names. Table names are never schema-qualified: the connection's
 * search_path picks the schema, so a deployment (or a test run) can keep
 * its registry in a schema of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry_pg_conn.h"

/* Migration N brings the schema from version N-1 to N. Append only: a
 * released migration is never edited. */
static const char *const migrations[] = {
    /* 1: campaigns and their deliveries */
    "CREATE TABLE campaigns ("
    " campaign_id text PRIMARY KEY,"
    " state text NOT NULL CHECK (state IN ('SCHEDULED','PUBLISHED',"
    "   'PROCESSING','DONE','DEAD')),"
    " scheduled_at bigint NOT NULL,"
    " channel text NOT NULL,"
    " payload text NOT NULL,"
    " owner text,"
    " fence bigint NOT NULL DEFAULT 0,"
    " lease_until bigint NOT NULL DEFAULT 0,"
    " publish_owner text,"
    " publish_until bigint NOT NULL DEFAULT 0,"
    " paused boolean NOT NULL DEFAULT false,"
    " attempts integer NOT NULL DEFAULT 0,"
    " total bigint NOT NULL DEFAULT -1,"
    " sent bigint NOT NULL DEFAULT 0,"
    " rejected bigint NOT NULL DEFAULT 0,"
    " republished integer NOT NULL DEFAULT 0,"
    " republished_at bigint NOT NULL DEFAULT 0,"
    " progress_at bigint NOT NULL DEFAULT 0,"
    " created_at bigint NOT NULL,"
    " updated_at bigint NOT NULL,"
    " last_error text);"
    "CREATE INDEX campaigns_state_due ON campaigns (state, scheduled_at);"
    "CREATE TABLE deliveries ("
    " campaign_id text NOT NULL REFERENCES campaigns (campaign_id)"
    "   ON DELETE CASCADE,"
    " recipient_id text NOT NULL,"
    " state text NOT NULL CHECK (state IN ('INFLIGHT','SENT','REJECTED')),"
    " attempts integer NOT NULL DEFAULT 0,"
    " error text,"
    " updated_at bigint NOT NULL,"
    " PRIMARY KEY (campaign_id, recipient_id));",
    /* 2: deliveries laid out for the mark writer.
     *
     * fillfactor 50: a recipient's row is inserted INFLIGHT and updated
     * to SENT moments later. With full pages the new version goes to
     * another page and needs a new primary-key entry; with half of each
     * page left free it stays on its page as a HOT update (no column the
     * update sets is indexed), and pruning reclaims the old version. The
     * table ends no larger: non-HOT updates took the same space elsewhere,
     * and the primary key no longer grows with every update.
     *
     * The foreign key goes: its check ran a query per inserted row (12%
     * of the server's CPU per mark). Integrity holds without it: every
     * delivery row is written by a fenced mark statement, which first
     * locks the campaign's row FOR UPDATE and writes nothing unless that
     * row exists, is PROCESSING and carries the writer's fence; the lock
     * is held until commit, so the campaign cannot be deleted between the
     * check and the insert. What the key also did, ON DELETE CASCADE, a
     * statement trigger on campaigns does now for whoever deletes
     * campaigns by hand (the programs never do), and a second one does
     * for TRUNCATE, which the key used to refuse; their search_path is
     * the registry's schema, fixed when the migration runs. */
    "ALTER TABLE deliveries SET (fillfactor = 50);"
    "ALTER TABLE deliveries DROP CONSTRAINT deliveries_campaign_id_fkey;"
    "CREATE FUNCTION deliveries_cascade() RETURNS trigger "
    " LANGUAGE plpgsql SET search_path FROM CURRENT AS $$ BEGIN"
    " DELETE FROM deliveries d USING gone g"
    "  WHERE d.campaign_id = g.campaign_id;"
    " RETURN NULL; END $$;"
    "CREATE TRIGGER campaigns_delete_cascade AFTER DELETE ON campaigns"
    " REFERENCING OLD TABLE AS gone"
    " FOR EACH STATEMENT EXECUTE FUNCTION deliveries_cascade();"
    "CREATE FUNCTION deliveries_truncate() RETURNS trigger "
    " LANGUAGE plpgsql SET search_path FROM CURRENT AS $$ BEGIN"
    " TRUNCATE deliveries; RETURN NULL; END $$;"
    "CREATE TRIGGER campaigns_truncate_cascade AFTER TRUNCATE ON campaigns"
    " FOR EACH STATEMENT EXECUTE FUNCTION deliveries_truncate();",
    /* 3: the states' CHECKs as domains.
     *
     * A table's CHECK constraint is read back from its stored text,
     * planned and compiled again by every statement that inserts or
     * updates a row of the table, whichever columns it sets: ~5 us of
     * server CPU per statement, 6% of the server's CPU in a run of
     * one-recipient campaigns (4 such statements each). A domain's
     * constraint is planned once per connection (the type cache) and
     * checked only where a state is written. Same values allowed, same
     * error (check_violation) otherwise; the columns are still text to
     * every query. The domains get their constraints after the columns
     * change type, so the change is binary (no table rewrite: a domain
     * without constraints is its base type) and adding the constraints
     * only scans the rows. */
    "CREATE DOMAIN campaign_state AS text;"
    "CREATE DOMAIN delivery_state AS text;"
    "ALTER TABLE campaigns DROP CONSTRAINT campaigns_state_check,"
    " ALTER COLUMN state TYPE campaign_state;"
    "ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check,"
    " ALTER COLUMN state TYPE delivery_state;"
    "ALTER DOMAIN campaign_state ADD CONSTRAINT campaign_state_check"
    " CHECK (VALUE IN ('SCHEDULED','PUBLISHED','PROCESSING','DONE','DEAD'));"
    "ALTER DOMAIN delivery_state ADD CONSTRAINT delivery_state_check"
    " CHECK (VALUE IN ('INFLIGHT','SENT','REJECTED'));",
};

#define MIGRATION_COUNT ((int)(sizeof(migrations) / sizeof(migrations[0])))

_Static_assert(MIGRATION_COUNT == REGISTRY_PG_SCHEMA_VERSION,
               "one migration per schema version");

const char *registry_pg_migration(int version)
{
  if (version < 1 || version > MIGRATION_COUNT)
    return NULL;
  return migrations[version - 1];
}

/* ---- the statements of the ops ---------------------------------- */

/* A one-row subquery holding the registry's now, aliased t(n). */
#define NOW_T "(SELECT " PG_NOW_MS " AS n) t"

/* NOW_T that also sets synchronous_commit off for the statement's own
 * (implicit) transaction, as SET LOCAL would, without a round trip of its
 * own: the publish steps of a handle with publish_async_commit (see
 * registry.h). The server then answers the COMMIT before its WAL record
 * is flushed; the WAL writer flushes it within wal_writer_delay, and any
 * later synchronous commit flushes it first (the WAL is flushed in order,
 * so a crash never keeps a later commit without this one). The subquery is
 * volatile (clock_timestamp), so the planner neither folds it into the
 * UPDATE nor drops its unused column, and it is read whenever the UPDATE
 * finds its row; when it finds none nothing was written, and a transaction
 * that wrote nothing waits for no flush anyway. The setting ends with the
 * transaction: the session's other steps stay synchronous. */
#define NOW_T_ASYNC    \
  "(SELECT " PG_NOW_MS \
  " AS n, "            \
  "set_config('synchronous_commit', 'off', true) AS async_commit) t"

/* The publish lease and the PUBLISHED mark, over `now_t`. */
#define BEGIN_PUBLISH_SQL(now_t)                                    \
  "UPDATE campaigns SET publish_owner = $2, "                       \
  "publish_until = t.n + $3::bigint, updated_at = t.n FROM " now_t  \
  " WHERE campaign_id = $1 AND state = 'SCHEDULED' AND NOT paused " \
  "AND (publish_owner IS NULL OR publish_owner = $2 "               \
  "OR publish_until <= t.n) RETURNING 1"
#define MARK_PUBLISHED_SQL(now_t)                                    \
  "UPDATE campaigns SET state = 'PUBLISHED', publish_owner = NULL, " \
  "publish_until = 0, updated_at = t.n FROM " now_t                  \
  " WHERE campaign_id = $1 AND state = 'SCHEDULED' RETURNING 1"

/* The precondition of every fenced op, with $1 = id and $2 = fence. */
#define FENCED                                                        \
  "campaign_id = $1 AND fence = $2::bigint AND state = 'PROCESSING' " \
  "AND lease_until > t.n"

#define CAMPAIGN_COLS                                                  \
  "campaign_id, state, scheduled_at, channel, payload, owner, fence, " \
  "lease_until, attempts, total, sent, rejected, republished, "        \
  "republished_at, progress_at, updated_at, paused, last_error, t.n"

/* The lifecycle fields an op leaves when it ends a lease. */
#define NO_LEASE "owner = NULL, lease_until = 0, updated_at = t.n"

/* Columns of a new deliveries row. */
#define DELIVERY_COLS \
  "(campaign_id, recipient_id, state, attempts, error, updated_at)"

/* Every write below runs only once the fenced row lock is held. */
#define LOCKED "EXISTS (SELECT 1 FROM lock)"

/* S_MARK's work, shared by S_MARK_PENDING (see there): everything but
 * the final SELECT. $1 id, $2 fence, then the call's marks collapsed to
 * one effect per recipient and grouped (registry_pg_marks.c), each group
 * written by the cheapest statement that fits it:
 *  - $3, ids whose first mark is SENT: an UPDATE of the rows still
 *    INFLIGHT (sa; a HOT update, see migration 2), and for the others an
 *    insert of those absent (sn; rare: SENT normally follows our INFLIGHT);
 *  - $4, ids marked INFLIGHT once: a plain INSERT of those absent (bi),
 *    an attempt more for those INFLIGHT (bu), nothing for final ones.
 *    Which exist is one primary-key probe per id (bx), made only when $12
 *    is true: these are normally fresh recipients, so the caller first
 *    tries without (16% of the statement's CPU), and a unique violation
 *    (nothing written) makes it run again with the probe. A plain INSERT
 *    costs half of an ON CONFLICT one (no speculative insertion). No
 *    other transaction adds rows of this campaign meanwhile (every writer
 *    holds the campaign's row lock), but the snapshot predates the wait
 *    for that lock: rows its holder committed meanwhile make a unique
 *    violation, and the op runs again (mark_run in registry_pg_mark_ops.c);
 *  - $5-$7 (ids, states, errors), the rest whose first mark is final, and
 *    $8-$11 (ids, states, errors, tries), the rest: INSERT ... ON CONFLICT
 *    updating a row still INFLIGHT (w0 counts no attempt, w1 adds tries;
 *    the upsert cannot tell 0 tries from 1 by the proposed row).
 * Every id is in one group only, so no row is written twice. Each group
 * finds its rows by the full primary key (= ANY on the ids, or the
 * conflict arbiter): one probe per id whatever the planner's statistics,
 * so a batch costs the same in a campaign of any size. Nothing is written
 * unless the fenced lock (lock) holds. Only real changes come back (ch),
 * and only those bump the counters (bump; a batch that counts nothing
 * leaves the campaign row alone, as SQLite does). */
#define MARK_WITH MARK_T MARK_LOCK MARK_WRITES ", " MARK_COUNT ", " MARK_BUMP

/* The parts of MARK_WITH, which the merged steps below recombine. */
#define MARK_T "WITH t AS (SELECT " PG_NOW_MS " AS n), "
#define MARK_LOCK                                        \
  "lock AS (SELECT c.campaign_id FROM campaigns c, t "   \
  " WHERE c.campaign_id = $1 AND c.fence = $2::bigint "  \
  " AND c.state = 'PROCESSING' AND c.lease_until > t.n " \
  " FOR UPDATE OF c), "
#define MARK_WRITES                                                          \
  "sa AS (UPDATE deliveries d SET state = 'SENT', error = NULL, "            \
  " updated_at = t.n FROM t WHERE d.ctid = ANY (ARRAY(SELECT (SELECT "       \
  " x.ctid FROM deliveries x WHERE x.campaign_id = $1 "                      \
  " AND x.recipient_id = a.id) FROM unnest($3::text[]) AS a(id))) "          \
  " AND d.state = 'INFLIGHT' AND " LOCKED                                    \
  " RETURNING d.recipient_id AS id, d.state), "                              \
  "sn AS (INSERT INTO deliveries AS d " DELIVERY_COLS                        \
  " SELECT $1, a.id, 'SENT', 1, NULL, t.n "                                  \
  " FROM unnest($3::text[]) AS a(id), t WHERE " LOCKED                       \
  " AND a.id NOT IN (SELECT id FROM sa) ON CONFLICT DO NOTHING "             \
  " RETURNING d.recipient_id AS id, d.state), "                              \
  "bx AS (SELECT b.id, CASE WHEN $12::boolean THEN (SELECT x.state "         \
  " FROM deliveries x WHERE x.campaign_id = $1 "                             \
  " AND x.recipient_id = b.id) END AS state "                                \
  " FROM unnest($4::text[]) AS b(id)), "                                     \
  "bi AS (INSERT INTO deliveries AS d " DELIVERY_COLS                        \
  " SELECT $1, b.id, 'INFLIGHT', 1, NULL, t.n "                              \
  " FROM bx AS b, t WHERE " LOCKED                                           \
  " AND b.state IS NULL "                                                    \
  " RETURNING d.recipient_id AS id, d.state), "                              \
  "bu AS (UPDATE deliveries d SET attempts = d.attempts + 1, "               \
  " updated_at = t.n FROM t WHERE d.ctid = ANY (ARRAY(SELECT (SELECT "       \
  " x.ctid FROM deliveries x WHERE x.campaign_id = $1 "                      \
  " AND x.recipient_id = b.id) FROM bx AS b WHERE b.state = 'INFLIGHT')) "   \
  " AND d.state = 'INFLIGHT' AND " LOCKED                                    \
  " RETURNING d.recipient_id AS id, d.state), "                              \
  "w0 AS (INSERT INTO deliveries AS d " DELIVERY_COLS                        \
  " SELECT $1, g.id, g.st, 1, g.err, t.n "                                   \
  " FROM unnest($5::text[], $6::text[], $7::text[]) AS g(id, st, err), t "   \
  " WHERE " LOCKED                                                           \
  " ON CONFLICT (campaign_id, recipient_id) DO UPDATE "                      \
  " SET state = excluded.state, error = excluded.error, "                    \
  " updated_at = excluded.updated_at WHERE d.state = 'INFLIGHT' "            \
  " RETURNING d.recipient_id AS id, d.state), "                              \
  "w1 AS (INSERT INTO deliveries AS d " DELIVERY_COLS                        \
  " SELECT $1, g.id, g.st, g.tries, g.err, t.n "                             \
  " FROM unnest($8::text[], $9::text[], $10::text[], $11::int[]) "           \
  " AS g(id, st, err, tries), t WHERE " LOCKED                               \
  " ON CONFLICT (campaign_id, recipient_id) DO UPDATE "                      \
  " SET state = excluded.state, attempts = d.attempts + excluded.attempts, " \
  " error = CASE WHEN excluded.state = 'INFLIGHT' THEN d.error "             \
  " ELSE excluded.error END, updated_at = excluded.updated_at "              \
  " WHERE d.state = 'INFLIGHT' RETURNING d.recipient_id AS id, d.state), "   \
  "ch AS (SELECT id, state FROM sa UNION ALL SELECT id, state FROM sn "      \
  " UNION ALL SELECT id, state FROM bi UNION ALL SELECT id, state FROM bu "  \
  " UNION ALL SELECT id, state FROM w0 "                                     \
  " UNION ALL SELECT id, state FROM w1)"
#define MARK_COUNT                                               \
  "cnt AS (SELECT count(*) FILTER (WHERE state = 'SENT') AS s, " \
  " count(*) FILTER (WHERE state = 'REJECTED') AS j FROM ch)"
#define MARK_BUMP                                           \
  "bump AS (UPDATE campaigns c SET sent = c.sent + cnt.s, " \
  " rejected = c.rejected + cnt.j, progress_at = t.n, "     \
  " updated_at = t.n FROM cnt, t, lock "                    \
  " WHERE c.campaign_id = lock.campaign_id AND cnt.s + cnt.j > 0) "

/* S_MARK_FINISH: S_MARK then S_FINISH ($13 total) as one statement, so
 * one round trip and one commit: the counters' bump and the DONE are one
 * UPDATE of the campaign row (fin; one statement must not update a row
 * twice), made once the fenced lock holds, whatever the marks changed.
 * No row back means a stale fence (or no campaign), and nothing was
 * written. */
#define MARK_FINISH                                                            \
  MARK_T MARK_LOCK MARK_WRITES                                                 \
      ", " MARK_COUNT                                                          \
      ", "                                                                     \
      "fin AS (UPDATE campaigns c SET sent = c.sent + cnt.s, "                 \
      " rejected = c.rejected + cnt.j, progress_at = CASE WHEN cnt.s + cnt.j " \
      " > 0 THEN t.n ELSE c.progress_at END, state = 'DONE', "                 \
      " total = $13::bigint, owner = NULL, lease_until = 0, updated_at = t.n " \
      " FROM cnt, t, lock WHERE c.campaign_id = lock.campaign_id "             \
      " RETURNING c.sent, c.rejected) "                                        \
      "SELECT sent, rejected FROM fin"

/* S_MARK_FINISH_SENT: S_MARK_FINISH for the common last batch, SENT
 * marks only ($3; $4 total): only what that group needs, as the executor
 * sets up every CTE of a statement, used or not, and that set-up cost
 * more than the execution of a small batch. The group is one upsert (up):
 * a row still INFLIGHT becomes SENT, an absent one is inserted SENT, a
 * final one is left; each id comes once (registry_pg_marks.c), and only
 * real changes come back and count. One ModifyTable instead of an UPDATE
 * and an INSERT of those the UPDATE did not find (which needed a hashed
 * NOT IN and a count per CTE): ~6% less server CPU for row 1's two
 * statements (pgbench, 6 interleaved rounds), the same for 100 ids. */
#define MARK_FINISH_SENT                                                       \
  MARK_T MARK_LOCK                                                             \
      "up AS (INSERT INTO deliveries AS d " DELIVERY_COLS                      \
      " SELECT $1, a.id, 'SENT', 1, NULL, t.n "                                \
      " FROM unnest($3::text[]) AS a(id), t WHERE " LOCKED                     \
      " ON CONFLICT (campaign_id, recipient_id) DO UPDATE "                    \
      " SET state = 'SENT', error = NULL, updated_at = excluded.updated_at "   \
      " WHERE d.state = 'INFLIGHT' RETURNING 1), "                             \
      "cnt AS (SELECT count(*) AS s FROM up), "                                \
      "fin AS (UPDATE campaigns c SET sent = c.sent + cnt.s, "                 \
      " progress_at = CASE WHEN cnt.s > 0 THEN t.n ELSE c.progress_at END, "   \
      " state = 'DONE', total = $4::bigint, owner = NULL, lease_until = 0, "   \
      " updated_at = t.n FROM cnt, t, lock "                                   \
      " WHERE c.campaign_id = lock.campaign_id RETURNING c.sent, c.rejected) " \
      "SELECT sent, rejected FROM fin"

/* S_REGISTER_CLAIM_MARK: S_REGISTER_CLAIM and S_MARK_PENDING of INFLIGHT
 * marks for a new campaign as one statement: the INSERT of the claimed
 * campaign (fence 1, as S_REGISTER_CLAIM) is the lock the marks' INSERT
 * waits on; when the campaign existed neither writes and no row comes
 * back. $2 the ids marked INFLIGHT once, $3/$4 those marked more often
 * and how often (registry_pg_marks.c's groups), then $5 scheduled_at,
 * $6 channel, $7 payload, $8 owner, $9 ttl. A new campaign has no rows,
 * so the marks are a plain INSERT: rows someone left (a campaign of this
 * id deleted by hand, its rows kept) make a unique violation, nothing is
 * written, and the caller takes the transaction with lookups. INFLIGHT
 * marks count nothing, so the new row needs no bump. */
#define REGISTER_CLAIM_MARK                                                 \
  "WITH t AS (SELECT " PG_NOW_MS                                            \
  " AS n), "                                                                \
  "lock AS (INSERT INTO campaigns (campaign_id, state, scheduled_at, "      \
  " channel, payload, owner, fence, lease_until, progress_at, created_at, " \
  " updated_at) SELECT $1, 'PROCESSING', $5::bigint, $6, $7, $8, 1, "       \
  " t.n + $9::bigint, t.n, t.n, t.n FROM t "                                \
  " ON CONFLICT (campaign_id) DO NOTHING "                                  \
  " RETURNING fence, lease_until, progress_at), "                           \
  "ins AS (INSERT INTO deliveries " DELIVERY_COLS                           \
  " SELECT $1, g.id, 'INFLIGHT', g.tries, NULL, t.n FROM (SELECT a.id, 1 "  \
  " FROM unnest($2::text[]) AS a(id) UNION ALL SELECT b.id, b.tries "       \
  " FROM unnest($3::text[], $4::int[]) AS b(id, tries)) AS g(id, tries), "  \
  " t WHERE " LOCKED                                                        \
  ") "                                                                      \
  "SELECT fence, lease_until, progress_at FROM lock"

/* S_REGISTER_CLAIM_MARK_ONCE: S_REGISTER_CLAIM_MARK for the common call,
 * each id marked INFLIGHT once ($2): the INSERT reads that one array, not
 * the UNION ALL of both groups, whose set-up (an Append, a subquery and a
 * second function scan, set up at every execution) cost ~15 us of server
 * CPU per campaign, 5% of row 1's two statements. Then $3 scheduled_at,
 * $4 channel, $5 payload, $6 owner, $7 ttl. */
#define REGISTER_CLAIM_MARK_ONCE                                            \
  "WITH t AS (SELECT " PG_NOW_MS                                            \
  " AS n), "                                                                \
  "lock AS (INSERT INTO campaigns (campaign_id, state, scheduled_at, "      \
  " channel, payload, owner, fence, lease_until, progress_at, created_at, " \
  " updated_at) SELECT $1, 'PROCESSING', $3::bigint, $4, $5, $6, 1, "       \
  " t.n + $7::bigint, t.n, t.n, t.n FROM t "                                \
  " ON CONFLICT (campaign_id) DO NOTHING "                                  \
  " RETURNING fence, lease_until, progress_at), "                           \
  "ins AS (INSERT INTO deliveries " DELIVERY_COLS                           \
  " SELECT $1, a.id, 'INFLIGHT', 1, NULL, t.n "                             \
  " FROM unnest($2::text[]) AS a(id), t WHERE " LOCKED                      \
  ") "                                                                      \
  "SELECT fence, lease_until, progress_at FROM lock"

/* S_CLAIM_MARK: S_CLAIM and S_MARK_PENDING of INFLIGHT marks for a
 * campaign that exists, as one statement: the claim's UPDATE (S_CLAIM's,
 * $2 owner, $13 ttl) is the lock the marks wait on, and they are written
 * only if it claimed. The campaign may hold rows (a takeover, a resume),
 * so the marks look them up ($12 true). INFLIGHT marks count nothing:
 * no bump (a second write of the row). Rows: the claim's (NULL id,
 * fence, lease, now), then one per recipient written (id), as
 * S_MARK_PENDING; none when it did not claim (nothing was written). */
#define CLAIM_MARK                                                       \
  MARK_T                                                                 \
  "lock AS (UPDATE campaigns c SET state = 'PROCESSING', owner = $2, "   \
  " fence = c.fence + 1, lease_until = t.n + $13::bigint, "              \
  " progress_at = t.n, updated_at = t.n, publish_owner = NULL, "         \
  " publish_until = 0 FROM t WHERE c.campaign_id = $1 AND NOT c.paused " \
  " AND (c.state IN ('SCHEDULED', 'PUBLISHED') "                         \
  " OR (c.state = 'PROCESSING' AND c.lease_until <= t.n)) "              \
  " RETURNING c.campaign_id, c.fence, c.lease_until, t.n), " MARK_WRITES \
  " SELECT NULL::text, fence, lease_until, n FROM lock "                 \
  "UNION ALL SELECT id, NULL, NULL, NULL FROM ch"

_Static_assert(S_COUNT <= PG_STMT_MAX, "raise PG_STMT_MAX");

const char *const registry_pg_sql[S_COUNT] = {
    [S_NOW] = "SELECT " PG_NOW_MS,
    [S_PEEK] =
        "SELECT state, paused, fence, lease_until, t.n "
        "FROM campaigns, " NOW_T " WHERE campaign_id = $1",
    [S_REGISTER] =
        "INSERT INTO campaigns (campaign_id, state, scheduled_at, channel, "
        "payload, created_at, updated_at) "
        "SELECT $1, $2, $3::bigint, $4, $5, t.n, t.n FROM " NOW_T
        " ON CONFLICT (campaign_id) DO NOTHING RETURNING 1",
    [S_BEGIN_PUBLISH] = BEGIN_PUBLISH_SQL(NOW_T),
    [S_MARK_PUBLISHED] = MARK_PUBLISHED_SQL(NOW_T),
    [S_BEGIN_PUBLISH_ASYNC] = BEGIN_PUBLISH_SQL(NOW_T_ASYNC),
    [S_MARK_PUBLISHED_ASYNC] = MARK_PUBLISHED_SQL(NOW_T_ASYNC),
    [S_LIST_DUE] = "SELECT " CAMPAIGN_COLS " FROM campaigns, " NOW_T
                   " WHERE state = 'SCHEDULED' AND NOT paused "
                   "AND scheduled_at <= t.n + $1::bigint "
                   "ORDER BY scheduled_at, campaign_id LIMIT $2::bigint",
    [S_CLAIM] =
        "UPDATE campaigns SET state = 'PROCESSING', owner = $2, "
        "fence = fence + 1, lease_until = t.n + $3::bigint, "
        "progress_at = t.n, updated_at = t.n, publish_owner = NULL, "
        "publish_until = 0 FROM " NOW_T
        " WHERE campaign_id = $1 AND NOT paused "
        "AND (state IN ('SCHEDULED', 'PUBLISHED') "
        "OR (state = 'PROCESSING' AND lease_until <= t.n)) "
        "RETURNING fence, lease_until, t.n",
    /* A campaign first seen here is inserted already claimed, as
     * S_REGISTER (PUBLISHED) followed by S_CLAIM would leave it: fence 1,
     * our lease, progress from now. No row back means it existed: the
     * caller claims it with S_CLAIM. */
    [S_REGISTER_CLAIM] =
        "INSERT INTO campaigns (campaign_id, state, scheduled_at, channel, "
        "payload, owner, fence, lease_until, progress_at, created_at, "
        "updated_at) "
        "SELECT $1, 'PROCESSING', $2::bigint, $3, $4, $5, 1, "
        "t.n + $6::bigint, t.n, t.n, t.n FROM " NOW_T
        " ON CONFLICT (campaign_id) DO NOTHING "
        "RETURNING fence, lease_until, progress_at", /* progress_at = now */
    [S_RENEW] =
        "UPDATE campaigns SET lease_until = t.n + $3::bigint, "
        "updated_at = t.n FROM " NOW_T " WHERE " FENCED " RETURNING 1",
    /* One row with the fence verdict, plus one per recipient already
     * final (its 1-based position in $3). Each id's state is a scalar
     * subquery on the full primary key: PostgreSQL runs it per id as an
     * index lookup whatever its statistics say (a join could be planned
     * as a scan of all of the campaign's deliveries, whose cost grows with
     * the campaign). */
    [S_PENDING] =
        "WITH ok AS (SELECT EXISTS (SELECT 1 FROM campaigns, " NOW_T
        " WHERE " FENCED
        ") AS ok) "
        "SELECT ok.ok, r.i FROM ok LEFT JOIN "
        "(SELECT r.i FROM unnest($3::text[]) WITH ORDINALITY AS r(id, i) "
        " WHERE (SELECT d.state FROM deliveries d WHERE d.campaign_id = $1 "
        " AND d.recipient_id = r.id) <> 'INFLIGHT') r ON ok.ok",
    /* The marks (MARK_WITH); the one row returned is the fence verdict,
     * none with a stale fence (and then nothing was written). */
    [S_MARK] = MARK_WITH "SELECT 1 FROM lock",
    /* S_MARK that also says which recipients were pending before it:
     * exactly those it wrote (absent, or INFLIGHT and so updated; a final
     * row is never written; ch has each id at most once). A NULL row for
     * the fence verdict, then the id of each; no row at all with a stale
     * fence. */
    [S_MARK_PENDING] =
        MARK_WITH "SELECT NULL::text FROM lock UNION ALL SELECT id FROM ch",
    [S_MARK_FINISH] = MARK_FINISH,
    [S_MARK_FINISH_SENT] = MARK_FINISH_SENT,
    [S_REGISTER_CLAIM_MARK] = REGISTER_CLAIM_MARK,
    [S_REGISTER_CLAIM_MARK_ONCE] = REGISTER_CLAIM_MARK_ONCE,
    [S_CLAIM_MARK] = CLAIM_MARK,
    [S_SET_TOTAL] =
        "UPDATE campaigns SET total = $3::bigint, "
        "updated_at = t.n FROM " NOW_T " WHERE " FENCED " RETURNING 1",
    [S_COMPLETE] = "UPDATE campaigns SET state = 'DONE', " NO_LEASE
                   " FROM " NOW_T " WHERE " FENCED " RETURNING 1",
    [S_FINISH] =
        "UPDATE campaigns SET state = 'DONE', total = $3::bigint, " NO_LEASE
        " FROM " NOW_T " WHERE " FENCED " RETURNING sent, rejected",
    [S_RELEASE] =
        "UPDATE campaigns SET state = 'PUBLISHED', " NO_LEASE
        ", attempts = attempts + CASE WHEN $3::boolean THEN 1 ELSE 0 END, "
        "last_error = coalesce($4::text, last_error) FROM " NOW_T
        " WHERE " FENCED " RETURNING attempts",
    [S_FAIL] = "UPDATE campaigns SET state = 'DEAD', " NO_LEASE
               ", last_error = $3 FROM " NOW_T " WHERE " FENCED " RETURNING 1",
    [S_MARK_DEAD] = "UPDATE campaigns SET state = 'DEAD', " NO_LEASE
                    ", publish_owner = NULL, publish_until = 0, "
                    "last_error = $2 FROM " NOW_T
                    " WHERE campaign_id = $1 "
                    "AND state NOT IN ('DONE', 'DEAD') RETURNING 1",
    [S_PAUSE] =
        "UPDATE campaigns SET paused = true, updated_at = t.n "
        "FROM " NOW_T
        " WHERE campaign_id = $1 "
        "AND state NOT IN ('DONE', 'DEAD') RETURNING 1",
    [S_RESUME] =
        "UPDATE campaigns SET paused = false, updated_at = t.n "
        "FROM " NOW_T
        " WHERE campaign_id = $1 "
        "AND state NOT IN ('DONE', 'DEAD') RETURNING 1",
    [S_CANCEL] = "UPDATE campaigns SET state = 'DEAD', " NO_LEASE
                 ", publish_owner = NULL, publish_until = 0, "
                 "last_error = 'cancelled' FROM " NOW_T
                 " WHERE campaign_id = $1 "
                 "AND state NOT IN ('DONE', 'DEAD') RETURNING 1",
    [S_REPLAY] = "UPDATE campaigns SET state = 'PUBLISHED', " NO_LEASE
                 ", attempts = 0, republished = 0, republished_at = 0, "
                 "paused = false FROM " NOW_T
                 " WHERE campaign_id = $1 AND state = 'DEAD' RETURNING 1",
    [S_GET] = "SELECT " CAMPAIGN_COLS " FROM campaigns, " NOW_T
              " WHERE campaign_id = $1",
    [S_LIST] = "SELECT " CAMPAIGN_COLS " FROM campaigns, " NOW_T
               " WHERE ($1::text IS NULL OR state = $1::text) "
               "ORDER BY scheduled_at DESC, campaign_id LIMIT $2::bigint",
    [S_LIST_OVERDUE] = "SELECT " CAMPAIGN_COLS " FROM campaigns, " NOW_T
                       " WHERE state NOT IN ('DONE', 'DEAD') "
                       "AND scheduled_at < t.n - $1::bigint "
                       "ORDER BY scheduled_at, campaign_id "
                       "LIMIT $2::bigint",
    [S_REPUBLISH] =
        "UPDATE campaigns SET republished = republished + 1, "
        "republished_at = t.n, updated_at = t.n FROM " NOW_T
        " WHERE campaign_id = $1 AND state = $2 AND fence = $3::bigint "
        "AND republished < $6::integer "
        "AND (republished_at = 0 OR republished_at <= t.n - $5::bigint) "
        "AND (state <> 'PROCESSING' OR lease_until <= t.n - $4::bigint) "
        "RETURNING 1",
};

/* ---- migrations -------------------------------------------------- */

static int read_version(struct registry_pg *r, int *version)
{
  PGresult *res = PQexec(r->conn,
                         "SELECT coalesce(max(version), 0) FROM "
                         "schema_version");
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    int rc = pg_conn_status(r, res);
    const char *msg = PQerrorMessage(r->conn);
    registry_set_error(&r->base, rc,
                       "registry postgresql: reading schema version: %.*s",
                       (int)strcspn(msg, "\n"), msg);
    PQclear(res);
    return rc;
  }
  *version = (int)pg_get_i64(res, 0, 0);
  PQclear(res);
  return SO_OK;
}

static int apply(struct registry_pg *r, int *from)
{
  /* Concurrent openers of one registry (several consumers starting at
   * once) serialise on an advisory lock held until COMMIT, so exactly one
   * applies each migration and the others find it done. The key is per
   * schema: registries in different schemas do not wait for each other. */
  int rc = pg_conn_simple(r,
                          "SELECT pg_advisory_xact_lock(hashtext("
                          "'sendonce.registry:' || "
                          "coalesce(current_schema(), '')))",
                          "locking for migration");
  if (!rc)
    rc = pg_conn_simple(r,
                        "CREATE TABLE IF NOT EXISTS schema_version ("
                        " version integer PRIMARY KEY,"
                        " applied_at bigint NOT NULL)",
                        "creating schema_version");
  int version = 0;
  if (!rc)
    rc = read_version(r, &version);
  if (rc)
    return rc;
  *from = version;
  if (version > REGISTRY_PG_SCHEMA_VERSION)
    return registry_set_error(
        &r->base, SO_ERR_SCHEMA,
        "registry postgresql: database schema version %d is newer than "
        "this program's %d; upgrade sendonce before using this database",
        version, REGISTRY_PG_SCHEMA_VERSION);
  for (int v = version + 1; !rc && v <= REGISTRY_PG_SCHEMA_VERSION; v++) {
    char what[64];
    snprintf(what, sizeof(what), "applying migration %d", v);
    rc = pg_conn_simple(r, migrations[v - 1], what);
    if (!rc) {
      char sql[160];
      snprintf(sql, sizeof(sql),
               "INSERT INTO schema_version (version, applied_at) "
               "VALUES (%d, " PG_NOW_MS ")",
               v);
      rc = pg_conn_simple(r, sql, what);
    }
  }
  return rc;
}

int pg_migrate(struct registry_pg *r, char *err, size_t errlen)
{
  int rc = pg_conn_simple(r, "BEGIN", "starting migration");
  int from = 0;
  if (!rc)
    rc = apply(r, &from);
  if (!rc)
    rc = pg_conn_simple(r, "COMMIT", "committing migration");
  if (rc) {
    snprintf(err, errlen, "%s", r->base.errmsg);
    if (PQstatus(r->conn) == CONNECTION_OK)
      PQclear(PQexec(r->conn, "ROLLBACK"));
    return rc;
  }
  if (from < REGISTRY_PG_SCHEMA_VERSION)
    log_info("registry: postgresql: schema migrated from=%d to=%d", from,
             REGISTRY_PG_SCHEMA_VERSION);
  return SO_OK;
}
