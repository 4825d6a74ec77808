/* registry_suite.c - the helpers every file of the one registry suite
 * shares (registry_suite.h): the run's database, campaign ids, and the
 * calls that must succeed. */
#include "registry_suite.h"

#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "testenv.h"

struct testdb suite_db;

char *suite_id(const char *base)
{
  return testenv_unique(base);
}

struct registry_new_campaign suite_new_campaign(const char *id,
                                                int64_t scheduled_at_ms)
{
  return (struct registry_new_campaign){
      .campaign_id = id,
      .scheduled_at_ms = scheduled_at_ms,
      .channel = "email",
      .payload = "{\"schema\":1}",
  };
}

void suite_register(struct registry *r, const char *id,
                    enum campaign_state initial, int64_t scheduled_at_ms)
{
  struct registry_new_campaign c = suite_new_campaign(id, scheduled_at_ms);
  bool created = false;
  REG_OK(r, registry_register(r, &c, initial, &created));
  assert_true(created);
}

int64_t suite_now(struct registry *r)
{
  int64_t now = 0;
  REG_OK(r, registry_now(r, &now));
  return now;
}

void suite_wait_lease_expired(struct registry *r, const char *id)
{
  struct registry_campaign c;
  REG_OK(r, registry_get(r, id, &c));
  int64_t until = c.lease_until_ms;
  registry_campaign_free(&c);
  for (int i = 0; i < 2000 && suite_now(r) < until; i++)
    clock_sleep_ms(5, NULL);
  assert_true(suite_now(r) >= until);
}

char *suite_deliveries(const char *id)
{
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT recipient_id, state, attempts, error, updated_at FROM "
           "deliveries WHERE campaign_id = '%s' ORDER BY recipient_id",
           id);
  return testdb_query(&suite_db, sql);
}

void suite_get(struct registry *r, const char *id, struct registry_campaign *c)
{
  REG_OK(r, registry_get(r, id, c));
}

struct registry_claim suite_claim(struct registry *r, const char *id,
                                  const char *owner, int64_t ttl_ms)
{
  struct registry_claim cl;
  REG_OK(r, registry_claim(r, id, owner, ttl_ms, &cl));
  return cl;
}

struct registry_claim suite_claim_new(struct registry *r,
                                      const struct registry_new_campaign *nc,
                                      const char *owner,
                                      const struct registry_mark *marks,
                                      size_t n, bool *pending)
{
  bool created = false, marked = false;
  struct registry_claim cl;
  REG_OK(r, registry_register_claim_mark(r, nc, owner, 60000, marks, n,
                                         &created, &cl, pending, &marked));
  assert_true(created);
  assert_true(marked);
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  assert_int_equal(cl.fence, 1);
  return cl;
}

void suite_mark(struct registry *r, const char *id, int64_t fence,
                const char *rcpt, enum delivery_state state)
{
  struct registry_mark m = {.recipient_id = rcpt, .state = state};
  REG_OK(r, registry_mark(r, id, fence, &m, 1));
}

int suite_group_setup(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db); /* creates the schema */
  registry_close(r);
  return 0;
}

int suite_group_teardown(void **state)
{
  (void)state;
  testdb_destroy(&suite_db);
  return 0;
}
