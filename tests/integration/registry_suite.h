/* registry_suite.h - shared pieces of the one registry suite that runs
 * against both backends (registry_suite.c: these helpers;
 * test_registry.c: single-process cases of the campaign's life;
 * test_registry_marks.c: delivery marks and the merged steps, its own
 * executable; test_registry_procs.c: cases with several processes). */
#ifndef SENDONCE_REGISTRY_SUITE_H
#define SENDONCE_REGISTRY_SUITE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "registry.h"
#include "registry_testdb.h"

/* The database of this run (created by the group setup). */
extern struct testdb suite_db;

/* REG_RC: the call must return `want` (REG_OK: registry_testdb.h). */
#define REG_RC(r, want, expr)                                     \
  do {                                                            \
    int rc_ = (expr);                                             \
    if (rc_ != (want))                                            \
      fail_msg("%s -> %s, want %s (%s)", #expr, so_strerror(rc_), \
               so_strerror(want), registry_errmsg(r));            \
  } while (0)

/* suite_id: a campaign id unique to this run (owned; free()). */
char *suite_id(const char *base);

/* suite_new_campaign: what a trigger for `id` carries (channel email, a
 * minimal payload), due at scheduled_at_ms. */
struct registry_new_campaign suite_new_campaign(const char *id,
                                                int64_t scheduled_at_ms);

/* suite_register: register a campaign or fail the test. */
void suite_register(struct registry *r, const char *id,
                    enum campaign_state initial, int64_t scheduled_at_ms);

/* suite_get: registry_get that must succeed (*c owned:
 * registry_campaign_free). */
void suite_get(struct registry *r, const char *id, struct registry_campaign *c);

/* suite_mark: one registry_mark that must succeed. */
void suite_mark(struct registry *r, const char *id, int64_t fence,
                const char *rcpt, enum delivery_state state);

/* suite_claim: registry_claim that must succeed (any kind). */
struct registry_claim suite_claim(struct registry *r, const char *id,
                                  const char *owner, int64_t ttl_ms);

/* suite_claim_new: registry_register_claim_mark of a campaign the
 * registry does not hold yet, which must come back created, CLAIMED with
 * fence 1 and its n marks written; pending[i] as the call answers. */
struct registry_claim suite_claim_new(struct registry *r,
                                      const struct registry_new_campaign *nc,
                                      const char *owner,
                                      const struct registry_mark *marks,
                                      size_t n, bool *pending);

/* suite_now: the registry's clock or fail. */
int64_t suite_now(struct registry *r);

/* suite_wait_lease_expired: poll the registry's clock until the lease of
 * `id` has expired on it (registry now >= lease_until). */
void suite_wait_lease_expired(struct registry *r, const char *id);

/* suite_deliveries: the raw delivery rows of a campaign (owned text). */
char *suite_deliveries(const char *id);

/* suite_group_setup / suite_group_teardown: the cmocka group fixtures of
 * a suite executable: create the schema in suite_db (testdb_create()d
 * by main) / drop it. */
int suite_group_setup(void **state);
int suite_group_teardown(void **state);

/* Surroundings: schema, locks, clocks (test_registry_env.c). */
void test_schema_newer_refused(void **state);
void test_open_failures(void **state);
void test_lock_held_elsewhere(void **state);
void test_clock_skew(void **state);

/* registry_child_main: the child mode, "--child <sqlite|pg> <path|conninfo>
 * <verb> <id> <owner> <ttl>", run under faketime by test_clock_skew. */
int registry_child_main(int argc, char **argv);

/* The multi-process cases (test_registry_procs.c). */
void test_race_claims(void **state);
void test_kill_mid_batch(void **state);
void test_publish_race(void **state);
void test_republish_race(void **state);

#endif /* SENDONCE_REGISTRY_SUITE_H */
