/* test_template.c - the provider body template: placeholders, escaping,
 * batch sections and the errors a config author would make. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

static struct template *parse_ok(const char *text)
{
  char err[256] = "";
  struct template *t = NULL;
  int rc = template_parse(text, &t, err, sizeof(err));
  if (rc != SO_OK)
    print_error("template_parse(%s): %s\n", text, err);
  assert_int_equal(rc, SO_OK);
  assert_non_null(t);
  return t;
}

static void bind_ok(struct template *t, const char *content)
{
  char err[256] = "";
  int rc = template_bind(t, "camp-1", content, err, sizeof(err));
  if (rc != SO_OK)
    print_error("template_bind: %s\n", err);
  assert_int_equal(rc, SO_OK);
}

/* render_one: render a single recipient; returns the owned body. */
static char *render_one(struct template *t, const char *id, const char *addr,
                        const char *vars)
{
  struct template_recipient r = {id, addr, vars};
  char *out = NULL, err[256] = "";
  size_t len = 0, bad = 99;
  int rc = template_render(t, &r, 1, &out, &len, &bad, err, sizeof(err));
  if (rc != SO_OK)
    print_error("template_render: %s\n", err);
  assert_int_equal(rc, SO_OK);
  assert_int_equal(len, strlen(out));
  return out;
}

static void test_placeholders(void **state)
{
  (void)state;
  struct template *t = parse_ok(
      "{\"to\":\"{{address}}\",\"ref\":\"{{ recipient_id }}\","
      "\"c\":\"{{campaign_id}}\",\"name\":\"{{vars.name}}\","
      "\"city\":\"{{vars.addr.city}}\",\"subj\":\"{{content.subject}}\"}");
  assert_false(template_is_batch(t));
  bind_ok(t, "{\"subject\":\"Spring sale\",\"unused\":1}");
  char *out = render_one(t, "u-1", "a@example.org",
                         "{\"name\":\"Ann\",\"addr\":{\"city\":\"Oslo\"}}");
  assert_string_equal(out,
                      "{\"to\":\"a@example.org\",\"ref\":\"u-1\","
                      "\"c\":\"camp-1\",\"name\":\"Ann\",\"city\":\"Oslo\","
                      "\"subj\":\"Spring sale\"}");
  free(out);
  template_free(t);
}

/* Values that would break the JSON are escaped; the output parses and
 * round-trips to the original value. */
static void test_escaping(void **state)
{
  (void)state;
  static const char *const nasty[] = {"say \"hi\"",
                                      "back\\slash",
                                      "line\nbreak\ttab\r",
                                      "ctl\x01\x1f",
                                      "caf\xc3\xa9 \xe2\x82\xac",
                                      "}} {{address}}",
                                      "</script>"};
  struct template *t = parse_ok("{\"v\":\"{{vars.v}}\"}");
  bind_ok(t, NULL);
  for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++) {
    json_object *vars = json_object_new_object();
    json_object_object_add(vars, "v", json_object_new_string(nasty[i]));
    char *out = render_one(t, "u", "a", json_object_to_json_string(vars));
    json_object *parsed = json_tokener_parse(out);
    assert_non_null(parsed);
    json_object *v;
    assert_true(json_object_object_get_ex(parsed, "v", &v));
    assert_string_equal(json_object_get_string(v), nasty[i]);
    json_object_put(parsed);
    json_object_put(vars);
    free(out);
  }
  template_free(t);
}

static void test_value_types(void **state)
{
  (void)state;
  struct template *t = parse_ok(
      "n={{vars.n}} f={{vars.f}} b={{vars.b}} z=[{{vars.z}}] "
      "o={{vars.o}} a={{content.list}}");
  bind_ok(t, "{\"list\":[1,\"x\"]}");
  char *out = render_one(
      t, "u", "a",
      "{\"n\":42,\"f\":1.5,\"b\":true,\"z\":null,\"o\":{\"k\":\"v\"}}");
  assert_string_equal(out,
                      "n=42 f=1.5 b=true z=[] o={\\\"k\\\":\\\"v\\\"} "
                      "a=[1,\\\"x\\\"]");
  free(out);
  template_free(t);
}

static void test_missing_var_fails_recipient(void **state)
{
  (void)state;
  struct template *t = parse_ok("{\"n\":\"{{vars.first_name}}\"}");
  bind_ok(t, NULL);
  struct template_recipient r = {"u-7", "a@x", "{\"last\":\"X\"}"};
  char *out = (char *)1, err[256] = "";
  size_t len, bad = 99;
  assert_int_equal(
      template_render(t, &r, 1, &out, &len, &bad, err, sizeof(err)),
      SO_ERR_INVALID);
  assert_null(out);
  assert_int_equal(bad, 0);
  assert_non_null(strstr(err, "vars.first_name"));
  assert_non_null(strstr(err, "u-7"));
  /* vars that are not an object are that recipient's fault too */
  r.vars_json = "[1,2]";
  assert_int_equal(
      template_render(t, &r, 1, &out, &len, &bad, err, sizeof(err)),
      SO_ERR_INVALID);
  assert_int_equal(bad, 0);
  template_free(t);
}

static void test_bind_checks_content(void **state)
{
  (void)state;
  struct template *t = parse_ok("{\"s\":\"{{content.subject}}\"}");
  char err[256] = "";
  assert_int_equal(template_bind(t, "c", "{\"body\":\"x\"}", err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_non_null(strstr(err, "content.subject"));
  assert_int_equal(template_bind(t, "c", "not json", err, sizeof(err)),
                   SO_ERR_INVALID);
  /* unbound: refuses to render */
  struct template_recipient r = {"u", "a", NULL};
  char *out;
  size_t len, bad;
  assert_int_equal(
      template_render(t, &r, 1, &out, &len, &bad, err, sizeof(err)),
      SO_ERR_INVALID);
  assert_int_equal(bad, 1);
  template_free(t);
}

static void test_batch_section(void **state)
{
  (void)state;
  struct template *t = parse_ok(
      "{\"campaign\":\"{{campaign_id}}\",\"s\":\"{{content.s}}\","
      "\"messages\":[{{#recipients}}{\"to\":\"{{address}}\","
      "\"ref\":\"{{recipient_id}}\",\"n\":\"{{vars.n}}\"}{{/recipients}}]}");
  assert_true(template_is_batch(t));
  bind_ok(t, "{\"s\":\"S\"}");
  struct template_recipient r[3] = {{"u-1", "a@x", "{\"n\":\"A\"}"},
                                    {"u-2", "b@x", "{\"n\":\"B\"}"},
                                    {"u-3", "c@x", "{\"n\":\"C\"}"}};
  char *out = NULL, err[256];
  size_t len, bad;
  assert_int_equal(template_render(t, r, 3, &out, &len, &bad, err, sizeof(err)),
                   SO_OK);
  assert_string_equal(out,
                      "{\"campaign\":\"camp-1\",\"s\":\"S\",\"messages\":["
                      "{\"to\":\"a@x\",\"ref\":\"u-1\",\"n\":\"A\"},"
                      "{\"to\":\"b@x\",\"ref\":\"u-2\",\"n\":\"B\"},"
                      "{\"to\":\"c@x\",\"ref\":\"u-3\",\"n\":\"C\"}]}");
  free(out);
  /* one recipient of the batch is broken: its index comes back */
  r[1].vars_json = "{}";
  assert_int_equal(template_render(t, r, 3, &out, &len, &bad, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_null(out);
  assert_int_equal(bad, 1);
  template_free(t);
}

static void test_single_needs_one(void **state)
{
  (void)state;
  struct template *t = parse_ok("{\"to\":\"{{address}}\"}");
  bind_ok(t, NULL);
  struct template_recipient r[2] = {{"a", "a", NULL}, {"b", "b", NULL}};
  char *out, err[256];
  size_t len, bad;
  assert_int_equal(template_render(t, r, 2, &out, &len, &bad, err, sizeof(err)),
                   SO_ERR_INVALID);
  template_free(t);
}

static void test_syntax_errors(void **state)
{
  (void)state;
  static const struct {
    const char *text;
    const char *needle;
  } cases[] = {
      {"{\"to\":\"{{address\"}", "unterminated"},
      {"{\"to\":\"{{email}}\"}", "unknown placeholder {{email}}"},
      {"{{vars.}}", "unknown placeholder"},
      {"{{vars..x}}", "unknown placeholder"},
      {"{{content}}", "unknown placeholder"},
      {"[{{#recipients}}{{address}}]", "not closed"},
      {"[{{address}}{{/recipients}}]", "without"},
      {"{{#recipients}}{{/recipients}}{{#recipients}}{{/recipients}}",
       "only one"},
      {"{\"x\":\"{{address}}\",[{{#recipients}}{{/recipients}}]}", "outside"},
      {"{\"x\":\"{{vars.n}}\",[{{#recipients}}{{address}}{{/recipients}}]}",
       "outside"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char err[256] = "";
    struct template *t = (struct template *)1;
    int rc = template_parse(cases[i].text, &t, err, sizeof(err));
    if (rc != SO_ERR_INVALID || !strstr(err, cases[i].needle))
      print_error("case %zu (%s): rc=%d err=%s\n", i, cases[i].text, rc, err);
    assert_int_equal(rc, SO_ERR_INVALID);
    assert_null(t);
    assert_non_null(strstr(err, cases[i].needle));
  }
  char err[64];
  struct template *t;
  assert_int_equal(template_parse(NULL, &t, err, sizeof(err)), SO_ERR_INVALID);
}

static void test_literal_only_and_empty(void **state)
{
  (void)state;
  struct template *t = parse_ok("{\"fixed\":true}");
  bind_ok(t, NULL);
  char *out = render_one(t, "u", "a", NULL);
  assert_string_equal(out, "{\"fixed\":true}");
  free(out);
  template_free(t);
  t = parse_ok("");
  bind_ok(t, NULL);
  out = render_one(t, "u", "a", NULL);
  assert_string_equal(out, "");
  free(out);
  template_free(t);
  template_free(NULL);
}

/* One caller buffer across renders and rebinds: each body is exactly
 * its own (a shorter one after a longer one is cut at its NUL), the
 * per-campaign parts (campaign id, content, also inside the section)
 * follow a rebind, a failed rebind keeps the old campaign, and a failed
 * render leaves the buffer usable. */
static void test_render_into_reuses_buffer(void **state)
{
  (void)state;
  struct template *t = parse_ok(
      "{\"c\":\"{{campaign_id}}\",\"m\":[{{#recipients}}{\"c\":"
      "\"{{campaign_id}}\",\"s\":\"{{content.s}}\",\"to\":\"{{address}}\","
      "\"n\":\"{{vars.n}}\"}{{/recipients}}],\"s\":\"{{content.s}}\"}");
  bind_ok(t, "{\"s\":\"S\\\"1\"}");
  struct template_recipient r[2] = {
      {"u-1", "long-address@example.org", "{\"n\":\"A\"}"},
      {"u-2", "b@x", "{\"n\":\"B\"}"}};
  char *buf = NULL, err[256] = "";
  size_t cap = 0, len = 0, bad = 9;
  assert_int_equal(
      template_render_into(t, r, 2, &buf, &cap, &len, &bad, err, sizeof(err)),
      SO_OK);
  assert_string_equal(buf,
                      "{\"c\":\"camp-1\",\"m\":["
                      "{\"c\":\"camp-1\",\"s\":\"S\\\"1\","
                      "\"to\":\"long-address@example.org\",\"n\":\"A\"},"
                      "{\"c\":\"camp-1\",\"s\":\"S\\\"1\",\"to\":\"b@x\","
                      "\"n\":\"B\"}],\"s\":\"S\\\"1\"}");
  assert_int_equal(len, strlen(buf));
  char *first = buf;
  assert_int_equal(template_render_into(t, &r[1], 1, &buf, &cap, &len, &bad,
                                        err, sizeof(err)),
                   SO_OK);
  assert_ptr_equal(buf, first); /* no new allocation for a shorter body */
  assert_string_equal(buf,
                      "{\"c\":\"camp-1\",\"m\":[{\"c\":\"camp-1\","
                      "\"s\":\"S\\\"1\",\"to\":\"b@x\",\"n\":\"B\"}],"
                      "\"s\":\"S\\\"1\"}");
  assert_int_equal(len, strlen(buf));
  /* a rebind that fails keeps the campaign; one that works replaces it */
  assert_int_equal(template_bind(t, "camp-2", "{}", err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_int_equal(template_bind(t, "camp-2", "{\"s\":7}", err, sizeof(err)),
                   SO_OK);
  assert_int_equal(template_render_into(t, &r[1], 1, &buf, &cap, &len, &bad,
                                        err, sizeof(err)),
                   SO_OK);
  assert_string_equal(buf,
                      "{\"c\":\"camp-2\",\"m\":[{\"c\":\"camp-2\","
                      "\"s\":\"7\",\"to\":\"b@x\",\"n\":\"B\"}],"
                      "\"s\":\"7\"}");
  /* a recipient that cannot be rendered, then one that can */
  r[0].vars_json = "{}";
  assert_int_equal(
      template_render_into(t, r, 2, &buf, &cap, &len, &bad, err, sizeof(err)),
      SO_ERR_INVALID);
  assert_int_equal(bad, 0);
  assert_int_equal(template_render_into(t, &r[1], 1, &buf, &cap, &len, &bad,
                                        err, sizeof(err)),
                   SO_OK);
  assert_int_equal(len, strlen(buf));
  assert_string_equal(buf,
                      "{\"c\":\"camp-2\",\"m\":[{\"c\":\"camp-2\","
                      "\"s\":\"7\",\"to\":\"b@x\",\"n\":\"B\"}],"
                      "\"s\":\"7\"}");
  free(buf);
  template_free(t);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_placeholders),
      cmocka_unit_test(test_escaping),
      cmocka_unit_test(test_value_types),
      cmocka_unit_test(test_missing_var_fails_recipient),
      cmocka_unit_test(test_bind_checks_content),
      cmocka_unit_test(test_batch_section),
      cmocka_unit_test(test_single_needs_one),
      cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_literal_only_and_empty),
      cmocka_unit_test(test_render_into_reuses_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
