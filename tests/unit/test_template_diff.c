/* test_template_diff.c - template rendering of {{vars.*}} and
 * {{content.*}} compared with a json-c reference over generated JSON:
 * template.c reads vars and content without json-c when it is sure
 * (strictjson + msg_scan.c) and must give the same bytes, the same errors
 * and the same failing recipient as the json-c path it replaced, which
 * the reference here re-implements. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

/* A growing string for generated text and expected bodies. */
struct str {
  char *p;
  size_t len;
  size_t cap;
};

static void str_put(struct str *s, const char *data, size_t n)
{
  if (s->len + n + 1 > s->cap) {
    s->cap = (s->len + n + 1) * 2;
    s->p = realloc(s->p, s->cap);
    assert_non_null(s->p);
  }
  memcpy(s->p + s->len, data, n);
  s->len += n;
  s->p[s->len] = '\0';
}

static void str_puts(struct str *s, const char *z)
{
  str_put(s, z, strlen(z));
}

/* The reference: template.c's rendering before the fast path. */
static void ref_escaped(struct str *s, const char *v, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    char esc[8];
    const char *two = c == '"'    ? "\\\""
                      : c == '\\' ? "\\\\"
                      : c == '\n' ? "\\n"
                      : c == '\r' ? "\\r"
                      : c == '\t' ? "\\t"
                      : c == '\b' ? "\\b"
                      : c == '\f' ? "\\f"
                                  : NULL;
    if (two) {
      str_puts(s, two);
    } else if (c < 0x20) {
      snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)c);
      str_puts(s, esc);
    } else {
      str_put(s, (const char *)&v[i], 1);
    }
  }
}

/* ref_var: append vars.PATH of `vars`; false when the path is absent. */
static bool ref_var(struct str *s, json_object *vars, const char *path)
{
  json_object *cur = vars;
  char key[256];
  while (*path) {
    size_t n = strcspn(path, ".");
    if (n >= sizeof(key) || !json_object_is_type(cur, json_type_object))
      return false;
    memcpy(key, path, n);
    key[n] = '\0';
    if (!json_object_object_get_ex(cur, key, &cur))
      return false;
    path += n + (path[n] == '.');
  }
  if (!cur)
    return true; /* null: nothing */
  if (json_object_is_type(cur, json_type_string)) {
    ref_escaped(s, json_object_get_string(cur),
                (size_t)json_object_get_string_len(cur));
  } else {
    const char *z = json_object_to_json_string_ext(
        cur, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    ref_escaped(s, z, strlen(z));
  }
  return true;
}

/* ref_render: "<" vars.P1 "|" vars.P2 ... ">" for one recipient, the
 * shape of every template below; false when it must fail. */
static bool ref_render(struct str *s, const char *const *paths, size_t n,
                       const char *vars_json)
{
  json_object *vars = NULL;
  enum json_tokener_error jerr;
  bool ok = true;
  if (vars_json) {
    vars = json_tokener_parse_verbose(vars_json, &jerr);
    if (!vars || !json_object_is_type(vars, json_type_object)) {
      json_object_put(vars);
      return false;
    }
  }
  str_puts(s, "<");
  for (size_t i = 0; i < n && ok; i++) {
    if (i > 0)
      str_puts(s, "|");
    ok = vars && ref_var(s, vars, paths[i]);
  }
  str_puts(s, ">");
  json_object_put(vars);
  return ok;
}

/* The generator: a small xorshift, so every run checks the same inputs. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static unsigned rnd(unsigned n)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (unsigned)(rng_state % n);
}

/* Values strictjson accepts (the fast path's input) ... */
static const char *const scalars[] = {
    /* strings: escapes, unicode, json-c's surrogate quirk, bytes that
     * need escaping in the body */
    "\"Ada\"", "\"\"", "\"a\\\"b\"", "\"\\\\\"", "\"\\/x/\"",
    "\"\\n\\t\\r\\b\\f\"", "\"\\u00e9\\u20AC\"", "\"x\\u0000y\"",
    "\"\\u001f\\u007f\"", "\"\\ud83d\\ude00\"", "\"\\ud876\\udc00\"",
    "\"caf\xc3\xa9 <b>&amp;</b> 'q'\"", "\"\x7f\"", "\"{{vars.a}}\"",
    /* numbers */
    "0", "-0", "7", "-42", "1e5", "1E5", "1.50", "-0.0", "-0e1", "1.5e-3",
    "18446744073709551615", "9223372036854775807", "-9223372036854775808",
    "1e400", "-1e-400", "123456789012345678901234567890.5", "0.1e1",
    "-12.0E+02",
    /* literals */
    "true", "false", "null"};

/* ... and some it refuses but json-c may take (the json-c path's). */
static const char *const bad_scalars[] = {"\"\\ud800\"",
                                          "\"\xff\"",
                                          "\"a\tb\"",
                                          "'single'",
                                          "18446744073709551616",
                                          "-9223372036854775809",
                                          "01",
                                          "1.",
                                          "NaN",
                                          "Infinity",
                                          "+1",
                                          "nul",
                                          "True"};

/* Keys: the first four are common, the rest rare (escaped, with a dot,
 * 255 and 256 bytes long, non-ASCII). */
static const char *const keys[] = {"a",    "b",       "c",   "first_name",
                                   "",     "\\u0061", "a.b", "k255",
                                   "k256", "\xc3\xa9"};

static void gen_ws(struct str *s)
{
  static const char *const ws[] = {"", "", "", "", " ", "\n", "\t ", "\r\n"};
  str_puts(s, ws[rnd(8)]);
}

static void gen_key(struct str *s, const char *k)
{
  str_puts(s, "\"");
  if (k[0] == 'k' && k[1] == '2') { /* a 255- or 256-byte key */
    for (int i = 0; i < (k[3] == '5' ? 255 : 256); i++)
      str_puts(s, "k");
  } else {
    str_puts(s, k);
  }
  str_puts(s, "\"");
}

static void gen_value(struct str *s, int depth);

/* gen_members: an object's or array's members, mostly distinct keys,
 * now and then a repeated one or a trailing comma. */
static void gen_members(struct str *s, bool object, int depth)
{
  size_t n_keys = sizeof(keys) / sizeof(keys[0]);
  bool first = true;
  for (size_t i = 0; i < n_keys; i++) {
    /* common keys in 3 of 4 objects, rare ones in 1 of 32 */
    if (i < 4 ? rnd(4) == 0 : rnd(32) != 0)
      continue;
    int times = rnd(60) == 0 ? 2 : 1;
    for (int t = 0; t < times; t++) {
      if (!first)
        str_puts(s, ",");
      first = false;
      gen_ws(s);
      if (object) {
        gen_key(s, keys[i]);
        gen_ws(s);
        str_puts(s, ":");
        gen_ws(s);
      }
      gen_value(s, depth + 1);
      gen_ws(s);
    }
  }
  if (!first && rnd(60) == 0)
    str_puts(s, ",");
}

static void gen_value(struct str *s, int depth)
{
  unsigned pick = rnd(10);
  if (depth > 2 || pick < 8) {
    if (rnd(150) == 0)
      str_puts(s,
               bad_scalars[rnd(sizeof(bad_scalars) / sizeof(bad_scalars[0]))]);
    else
      str_puts(s, scalars[rnd(sizeof(scalars) / sizeof(scalars[0]))]);
    return;
  }
  bool object = pick < 10 && rnd(3) != 0;
  str_puts(s, object ? "{" : "[");
  gen_members(s, object, depth);
  str_puts(s, object ? "}" : "]");
}

/* gen_vars: a recipient's vars_json, mostly an object. */
static void gen_vars(struct str *s)
{
  unsigned pick = rnd(40);
  s->len = 0;
  str_puts(s, "");
  if (pick == 0) { /* nested deeper than either path allows, or not */
    unsigned depth = 10 + rnd(30);
    for (unsigned i = 0; i < depth; i++)
      str_puts(s, "{\"a\":");
    str_puts(s, "1");
    for (unsigned i = 0; i < depth; i++)
      str_puts(s, "}");
    return;
  }
  if (pick == 1) {
    static const char *const odd[] = {"[]", "null", "\"s\"", "",    "{",
                                      "1",  "{}x",  "{} ",   " {}", "{}{}"};
    str_puts(s, odd[rnd(10)]);
    return;
  }
  gen_ws(s);
  str_puts(s, "{");
  gen_members(s, true, 0);
  str_puts(s, "}");
  gen_ws(s);
  if (rnd(50) == 0)
    str_puts(s, rnd(2) ? "x" : ",");
}

/* The templates: each is "<{{vars.P1}}|...>" over these paths. */
static const char *const paths_a[] = {"a"};
static const char *const paths_b[] = {"b", "c", "first_name"};
static const char *const paths_c[] = {"a.a", "b.c", "a.b.c"};
static const char *const paths_d[] = {"\xc3\xa9", "c.a", "a"};
static const char *const paths_long[] = {
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", /* 255 */
    "a.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"}; /* nested, 256 */
/* more distinct first names than the fast path looks up at once */
static const char *const paths_many[] = {"a", "b", "c", "d", "e", "f",
                                         "g", "h", "i", "j", "k", "l",
                                         "m", "n", "o", "p", "q", "first_name"};
/* no vars at all: the vars must still be an object */
static const char *const paths_none[] = {NULL};

static const struct {
  const char *const *paths;
  size_t n;
} sets[] = {{paths_a, 1},    {paths_b, 3},     {paths_c, 3},   {paths_d, 3},
            {paths_long, 2}, {paths_many, 18}, {paths_none, 0}};

/* parse_paths: "<{{WHERE.P1}}|...>", in a section when `batch`. */
static struct template *parse_paths(const char *where, const char *const *paths,
                                    size_t n, bool batch)
{
  struct str text = {NULL, 0, 0};
  str_puts(&text, batch ? "[{{campaign_id}}{{#recipients}}<" : "<");
  for (size_t i = 0; i < n; i++) {
    str_puts(&text, i > 0 ? "|{{ " : "{{");
    str_puts(&text, where);
    str_puts(&text, paths[i]);
    str_puts(&text, "}}");
  }
  str_puts(&text, batch ? ">{{/recipients}}]" : ">");
  struct template *t = NULL;
  char err[256] = "";
  int rc = template_parse(text.p, &t, err, sizeof(err));
  if (rc != SO_OK)
    print_error("template_parse(%s): %s\n", text.p, err);
  assert_int_equal(rc, SO_OK);
  free(text.p);
  return t;
}

static struct template *make_template(const char *const *paths, size_t n,
                                      bool batch)
{
  struct template *t = parse_paths("vars.", paths, n, batch);
  char err[256] = "";
  assert_int_equal(template_bind(t, "c1", NULL, err, sizeof(err)), SO_OK);
  return t;
}

/* check_content: bind `content` to "<{{content.P1}}|...>" and render. */
static void check_content(struct template *t, const char *const *paths,
                          size_t n, const char *content, struct str *want)
{
  struct template_recipient r = {"r1", "a@x", NULL};
  char *out = NULL, err[256] = "";
  size_t len = 0, bad = 99;
  want->len = 0;
  bool ok = ref_render(want, paths, n, content ? content : "{}");
  int rc = template_bind(t, "c1", content, err, sizeof(err));
  if (ok != (rc == SO_OK))
    print_error("content %s: want %s, got %d: %s\n", content,
                ok ? want->p : "failure", rc, err);
  assert_int_equal(rc, ok ? SO_OK : SO_ERR_INVALID);
  if (!ok) {
    assert_true(strstr(err, "content") != NULL);
    return;
  }
  assert_int_equal(
      template_render(t, &r, 1, &out, &len, &bad, err, sizeof(err)), SO_OK);
  assert_string_equal(out, want->p);
  free(out);
}

static void check_single(struct template *t, const char *const *paths, size_t n,
                         const char *vars, struct str *want)
{
  struct template_recipient r = {"r1", "a@x", vars};
  char *out = NULL, err[256] = "";
  size_t len = 0, bad = 99;
  want->len = 0;
  bool ok = ref_render(want, paths, n, vars);
  int rc = template_render(t, &r, 1, &out, &len, &bad, err, sizeof(err));
  if (ok != (rc == SO_OK) || (ok && strcmp(out, want->p) != 0))
    print_error("vars %s: want %s (%d), got %s (%d: %s)\n",
                vars ? vars : "(null)", ok ? want->p : "failure", ok,
                out ? out : "", rc, err);
  assert_int_equal(rc, ok ? SO_OK : SO_ERR_INVALID);
  if (ok) {
    assert_string_equal(out, want->p);
    assert_int_equal(len, want->len);
  } else {
    assert_int_equal(bad, 0);
    assert_non_null(strstr(err, "r1"));
  }
  free(out);
}

/* check_batch: three recipients in one body; the first failing one is
 * the one reported. */
static void check_batch(struct template *t, const char *const *paths, size_t n,
                        const char *const vars[3], struct str *want)
{
  struct template_recipient r[3] = {
      {"r0", "a@x", vars[0]}, {"r1", "b@x", vars[1]}, {"r2", "c@x", vars[2]}};
  char *out = NULL, err[256] = "";
  size_t len = 0, bad = 99, want_bad = 3;
  want->len = 0;
  str_puts(want, "[c1");
  for (size_t j = 0; j < 3 && want_bad == 3; j++) {
    if (j > 0)
      str_puts(want, ",");
    if (!ref_render(want, paths, n, vars[j]))
      want_bad = j;
  }
  str_puts(want, "]");
  int rc = template_render(t, r, 3, &out, &len, &bad, err, sizeof(err));
  assert_int_equal(rc, want_bad == 3 ? SO_OK : SO_ERR_INVALID);
  if (want_bad == 3)
    assert_string_equal(out, want->p);
  else
    assert_int_equal(bad, want_bad);
  free(out);
}

static void test_generated_vars_match_json_c(void **state)
{
  (void)state;
  struct str vars[3] = {{NULL, 0, 0}, {NULL, 0, 0}, {NULL, 0, 0}};
  struct str want = {NULL, 0, 0};
  size_t n_sets = sizeof(sets) / sizeof(sets[0]);
  for (size_t k = 0; k < n_sets; k++) {
    struct template *single = make_template(sets[k].paths, sets[k].n, false);
    struct template *batch = make_template(sets[k].paths, sets[k].n, true);
    check_single(single, sets[k].paths, sets[k].n, NULL, &want);
    struct template *content =
        parse_paths("content.", sets[k].paths, sets[k].n, false);
    check_content(content, sets[k].paths, sets[k].n, NULL, &want);
    for (int i = 0; i < 3000; i++) {
      for (int j = 0; j < 3; j++)
        gen_vars(&vars[j]);
      /* the same text as a campaign's content (one shared reader) */
      check_content(content, sets[k].paths, sets[k].n, vars[1].p, &want);
      check_single(single, sets[k].paths, sets[k].n, vars[0].p, &want);
      const char *const v[3] = {vars[0].p, vars[1].p, vars[2].p};
      check_batch(batch, sets[k].paths, sets[k].n, v, &want);
    }
    template_free(single);
    template_free(batch);
    template_free(content);
  }
  for (int j = 0; j < 3; j++)
    free(vars[j].p);
  free(want.p);
}

/* Hand-picked cases the generator might reach rarely. */
static void test_fixed_vars_match_json_c(void **state)
{
  (void)state;
  static const char *const cases[] = {
      "{\"a\":\"x\",\"a\":\"y\"}",           /* repeated: json-c keeps y */
      "{\"a\":{\"a\":1,\"a\":2}}",           /* repeated, nested */
      "{\"\\u0061\":\"escaped key\"}",       /* json-c unescapes it */
      "{\"a\":-0,\"b\":{\"c\":-0.0}}",       /* -0 prints as 0 */
      "{\"a\":[1,-0,1e5,1.50,\"\\/\"]}",     /* re-printed compactly */
      "{ \"a\" : { \"b\" : [ 1 , { } ] } }", /* spaced, as json-c prints */
      "{\"a\":null}",                        /* renders nothing */
      "{\"a\":{\"b\":null}}",
      "{\"a\":\"\\ud876\\udc00\"}", /* json-c's surrogate quirk */
      "{\"a\":\"\\u0000\"}",        /* NUL inside the value */
      "{\"b\":1}",                  /* a absent */
      "{}",
      "{\"a\":1}garbage", /* json-c ignores what follows */
  };
  static const char *const paths[] = {"a", "a.a", "a.b"};
  struct str want = {NULL, 0, 0};
  for (size_t p = 0; p < 3; p++) {
    struct template *t = make_template(&paths[p], 1, false);
    struct template *c = parse_paths("content.", &paths[p], 1, false);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
      check_single(t, &paths[p], 1, cases[i], &want);
      check_content(c, &paths[p], 1, cases[i], &want);
    }
    template_free(t);
    template_free(c);
  }
  free(want.p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixed_vars_match_json_c),
      cmocka_unit_test(test_generated_vars_match_json_c),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
