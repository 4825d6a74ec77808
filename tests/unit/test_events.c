/* test_events.c - event_to_json: the body other services parse. It is
 * written by hand (lib/events.c), so these cases parse it back with json-c
 * and check every field, the escapes and the fields left out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "events.h"

/* parse: the body as a json-c object; fails the test if it is not JSON. */
static json_object *parse(const struct event *e)
{
  char *body = event_to_json(e);
  assert_non_null(body);
  json_tokener *tok = json_tokener_new();
  assert_non_null(tok);
  json_object *o = json_tokener_parse_ex(tok, body, (int)strlen(body) + 1);
  assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
  json_tokener_free(tok);
  free(body);
  assert_true(json_object_is_type(o, json_type_object));
  return o;
}

static const char *str(json_object *o, const char *key)
{
  json_object *v = NULL;
  assert_true(json_object_object_get_ex(o, key, &v));
  assert_true(json_object_is_type(v, json_type_string));
  return json_object_get_string(v);
}

static int64_t num(json_object *o, const char *key)
{
  json_object *v = NULL;
  assert_true(json_object_object_get_ex(o, key, &v));
  assert_true(json_object_is_type(v, json_type_int));
  return json_object_get_int64(v);
}

static void test_every_field(void **state)
{
  (void)state;
  struct event e;
  event_init(&e, EVENT_CAMPAIGN_PROGRESS, "consumer", "spring-sale.2026");
  e.owner = "host:123:w1";
  e.reason = "ok";
  e.fence = 3;
  e.sent = 0; /* zero is a value, not "absent" */
  e.rejected = 2;
  e.total = INT64_MAX;
  json_object *o = parse(&e);
  assert_string_equal(str(o, "event"), "campaign.progress");
  assert_string_equal(str(o, "campaign_id"), "spring-sale.2026");
  assert_string_equal(str(o, "source"), "consumer");
  assert_string_equal(str(o, "owner"), "host:123:w1");
  assert_string_equal(str(o, "reason"), "ok");
  assert_true(strlen(str(o, "at")) >= 20); /* RFC 3339 with a zone */
  assert_int_equal(num(o, "fence"), 3);
  assert_int_equal(num(o, "sent"), 0);
  assert_int_equal(num(o, "rejected"), 2);
  assert_true(num(o, "total") == INT64_MAX);
  assert_int_equal(json_object_object_length(o), 10);
  json_object_put(o);
}

static void test_absent_fields_left_out(void **state)
{
  (void)state;
  struct event e;
  event_init(&e, EVENT_ALERT, "watchdog", NULL);
  json_object *o = parse(&e);
  assert_string_equal(str(o, "event"), event_kind_name(EVENT_ALERT));
  assert_string_equal(str(o, "source"), "watchdog");
  const char *absent[] = {"campaign_id", "owner",    "reason", "fence",
                          "sent",        "rejected", "total"};
  for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
    assert_false(json_object_object_get_ex(o, absent[i], NULL));
  assert_int_equal(json_object_object_length(o), 3); /* event, at, source */
  json_object_put(o);
}

/* A provider's reason can hold anything: quotes, backslashes, control
 * bytes, non-ASCII. It must come back byte for byte. */
static void test_reason_escapes(void **state)
{
  (void)state;
  char reason[64];
  size_t n = 0;
  const char *parts[] = {"a\"b\\c/", "\n\r\t\b\f", "\x01\x1f\x7f",
                         "caf\xc3\xa9"};
  for (size_t i = 0; i < 4; i++) {
    memcpy(reason + n, parts[i], strlen(parts[i]));
    n += strlen(parts[i]);
  }
  reason[n] = '\0';
  struct event e;
  event_init(&e, EVENT_CAMPAIGN_DEAD, "consumer", "c1");
  e.reason = reason;
  json_object *o = parse(&e);
  assert_string_equal(str(o, "reason"), reason);
  json_object_put(o);
}

/* Every byte escaped at once: the buffer is sized for the worst case. */
static void test_worst_case_size(void **state)
{
  (void)state;
  char reason[4097];
  memset(reason, '\x01', sizeof(reason) - 1);
  reason[sizeof(reason) - 1] = '\0';
  struct event e;
  event_init(&e, EVENT_CAMPAIGN_DEAD, "consumer", "c1");
  e.reason = reason;
  e.owner = reason;
  json_object *o = parse(&e);
  assert_string_equal(str(o, "reason"), reason);
  assert_string_equal(str(o, "owner"), reason);
  json_object_put(o);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_field),
      cmocka_unit_test(test_absent_fields_left_out),
      cmocka_unit_test(test_reason_escapes),
      cmocka_unit_test(test_worst_case_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
