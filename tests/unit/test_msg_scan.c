/* test_msg_scan.c - the fast paths of msg_parse_recipient_line and
 * msg_parse (msg_fast.c, msg_scan.c): every case they special-case gives
 * the expected bytes, and exactly what the json-c paths
 * (msg__parse_recipient_line_slow, msg__parse_slow) give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"
#include "msg_internal.h"
#include "strictjson.h"

struct line_case {
  const char *line;
  int rc;
  const char *id;      /* expected on success */
  const char *address; /* expected on success */
  const char *vars;    /* expected on success, NULL = absent */
  const char *err;     /* expected on failure: the whole reason */
};

static const struct line_case cases[] = {
    /* The plain line of a list, with CRLF and surrounding blanks. */
    {"{\"id\":\"u-1\",\"address\":\"user1@example.org\"}\n", SO_OK, "u-1",
     "user1@example.org", NULL, NULL},
    {" \t{\"address\":\"a\"} \r\n", SO_OK, "a", "a", NULL, NULL},
    /* String escapes: \uXXXX, surrogate pairs, \/ and two-char escapes. */
    {"{\"address\":\"Jos\\u00e9@x\\/y\",\"id\":\"\\ud83d\\ude00 \\\"q\\\" "
     "\\\\\"}",
     SO_OK, "\xf0\x9f\x98\x80 \"q\" \\", "Jos\xc3\xa9@x/y", NULL, NULL},
    {"{\"address\":\"\\u0041\\u0800\\uFFFD\"}", SO_OK,
     "A\xe0\xa0\x80\xef\xbf\xbd", "A\xe0\xa0\x80\xef\xbf\xbd", NULL, NULL},
    /* json-c 0.16 turns an escaped pair for U+xD800..U+xDFFF of any plane
     * into U+FFFD; the fast path must do the same (other pairs decode). */
    {"{\"address\":\"\\ud977\\udc0f\",\"vars\":{\"k\":\"\\ud836\\udc00"
     "\\ud83d\\ude00\\udbff\\udfff\\ud800\\udc00\"}}",
     SO_OK, "\xef\xbf\xbd", "\xef\xbf\xbd",
     "{\"k\":\"\xef\xbf\xbd\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xf0\x90\x80\x80\"}",
     NULL},
    /* vars strings come out as json-c escapes them: '/', DEL and non-ASCII
     * raw, other controls \u00xx in lower case. */
    {"{\"address\":\"a\",\"vars\":{\"s\":\"a\\u0001\\/\\u007f\\n\\t\\b\\f\\r"
     "\\\"\\\\\\u00E9\\ud83d\\ude00\\u001F\\u0000\"}}",
     SO_OK, "a", "a",
     "{\"s\":\"a\\u0001/\x7f\\n\\t\\b\\f\\r\\\"\\\\\xc3\xa9\xf0\x9f\x98\x80"
     "\\u001f\\u0000\"}",
     NULL},
    {"{\"address\":\"a\",\"vars\":{\"k\\/\":\"\\u0022\",\"\xc3\xa9\":\"/\"}}",
     SO_OK, "a", "a", "{\"k/\":\"\\\"\",\"\xc3\xa9\":\"/\"}", NULL},
    /* Numbers: integers from their value ("-0" is 0), doubles verbatim. */
    {"{\"address\":\"a\",\"vars\":{\"z\":-0,\"i\":-12,\"u\":"
     "18446744073709551615,\"m\":-9223372036854775808,\"d\":1.50,\"e\":1E5,"
     "\"f\":-0.0,\"g\":-0e1,\"h\":1e400}}",
     SO_OK, "a", "a",
     "{\"z\":0,\"i\":-12,\"u\":18446744073709551615,\"m\":"
     "-9223372036854775808,\"d\":1.50,\"e\":1E5,\"f\":-0.0,\"g\":-0e1,\"h\":"
     "1e400}",
     NULL},
    /* Nesting and whitespace everywhere. */
    {"{ \"address\" : \"a\" , \"vars\" : { \"o\" : [ 1 , { \"b\" : [ ] } , "
     "{ } , [ ] ] ,\n\"t\" : true , \"f\" : false , \"n\" : null } }\r\n",
     SO_OK, "a", "a",
     "{\"o\":[1,{\"b\":[]},{},[]],\"t\":true,\"f\":false,\"n\":null}", NULL},
    {"{\"vars\":{},\"address\":\"a\",\"x\":{\"y\":[1,2]}}", SO_OK, "a", "a",
     "{}", NULL},
    /* Fallbacks to json-c: escaped keys and very wide objects. */
    {"{\"\\u0061ddress\":\"a\",\"i\\u0064\":\"b\"}", SO_OK, "b", "a", NULL,
     NULL},
    {"{\"address\":\"a\",\"vars\":{\"k1\":1,\"k2\":1,\"k3\":1,\"k4\":1,\"k5\":"
     "1,"
     "\"k6\":1,\"k7\":1,\"k8\":1,\"k9\":1,\"k10\":1,\"k11\":1,\"k12\":1,"
     "\"k13\":"
     "1,\"k14\":1,\"k15\":1,\"k16\":1,\"k17\":1,\"k18\":1,\"k19\":1,\"k20\":1,"
     "\"k21\":1,\"k22\":1,\"k23\":1,\"k24\":1,\"k25\":1,\"k26\":1,\"k27\":1,"
     "\"k28\":1,\"k29\":1,\"k30\":1,\"k31\":1,\"k32\":1,\"k33\":-0}}",
     SO_OK, "a", "a",
     "{\"k1\":1,\"k2\":1,\"k3\":1,\"k4\":1,\"k5\":1,\"k6\":1,\"k7\":1,\"k8\":1,"
     "\"k9\":1,\"k10\":1,\"k11\":1,\"k12\":1,\"k13\":1,\"k14\":1,\"k15\":1,"
     "\"k16\":1,\"k17\":1,\"k18\":1,\"k19\":1,\"k20\":1,\"k21\":1,\"k22\":1,"
     "\"k23\":1,\"k24\":1,\"k25\":1,\"k26\":1,\"k27\":1,\"k28\":1,\"k29\":1,"
     "\"k30\":1,\"k31\":1,\"k32\":1,\"k33\":0}",
     NULL},
    /* Repeated keys anywhere, also equal only once unescaped. */
    {"{\"address\":\"a\",\"address\":\"b\"}", SO_ERR_INVALID, NULL, NULL, NULL,
     "duplicate_key: 2 members in the text, 1 distinct"},
    {"{\"address\":\"a\",\"vars\":{\"o\":{\"k\":1,\"k\":2}}}", SO_ERR_INVALID,
     NULL, NULL, NULL, "duplicate_key: 5 members in the text, 4 distinct"},
    {"{\"address\":\"a\",\"vars\":{\"k\":1,\"\\u006b\":2}}", SO_ERR_INVALID,
     NULL, NULL, NULL, "duplicate_key: 4 members in the text, 3 distinct"},
    {"{\"address\":\"a\",\"other\":[{\"k\":1,\"k\":2}]}", SO_ERR_INVALID, NULL,
     NULL, NULL, "duplicate_key: 4 members in the text, 3 distinct"},
    /* Field errors, in parse_recipient's order and words. */
    {"{\"id\":\"u\"}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: address: missing"},
    {"{\"address\":null}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: address: not a string"},
    {"{\"address\":\"\",\"id\":5}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: address: empty"},
    {"{\"address\":\"a\\u0001\"}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: address: control character at offset 1"},
    {"{\"address\":\"ab\\u0000\"}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: address: control character at offset 2"},
    {"{\"address\":\"a\",\"id\":\"x\\u0085\"}", SO_ERR_INVALID, NULL, NULL,
     NULL, "bad_recipient: id: control character at offset 1"},
    {"{\"address\":\"a\",\"id\":\"\\u007f\"}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: id: control character at offset 0"},
    {"{\"address\":\"a\",\"id\":[],\"vars\":1}", SO_ERR_INVALID, NULL, NULL,
     NULL, "bad_recipient: id: not a string"},
    {"{\"address\":\"a\",\"id\":\"\"}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: id: empty"},
    {"{\"address\":\"a\",\"vars\":[]}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: vars: not an object"},
    {"{\"address\":\"a\",\"vars\":\"{}\"}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: vars: not an object"},
    /* What strictjson refuses keeps json-c's path wording. */
    {"", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_json: no JSON value at offset 0"},
    {" \r\n", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_json: no JSON value at offset 3"},
    {"[{\"address\":\"a\"}]", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_recipient: the JSON value is not an object"},
    {"{\"address\":\"\\ud800\"}", SO_ERR_INVALID, NULL, NULL, NULL,
     "bad_utf8: unpaired high surrogate escape at offset 12"},
};

static void expect_same(const struct msg_recipient *a, int rc_a,
                        const char *err_a, const struct msg_recipient *b,
                        int rc_b, const char *err_b)
{
  assert_int_equal(rc_a, rc_b);
  if (rc_a != SO_OK) {
    assert_string_equal(err_a, err_b);
    return;
  }
  assert_string_equal(a->id, b->id);
  assert_string_equal(a->address, b->address);
  if (a->vars_json || b->vars_json) {
    assert_non_null(a->vars_json);
    assert_non_null(b->vars_json);
    assert_string_equal(a->vars_json, b->vars_json);
  }
}

static void test_cases(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct line_case *c = &cases[i];
    char err[MSG_ERR_LEN], err_slow[MSG_ERR_LEN];
    struct msg_recipient r, s;
    size_t len = strlen(c->line);
    int rc = msg_parse_recipient_line(c->line, len, &r, err, sizeof err);
    int rc_slow = msg__parse_recipient_line_slow(c->line, len, &s, err_slow,
                                                 sizeof err_slow);
    if (rc != c->rc || (rc != SO_OK && strcmp(err, c->err) != 0))
      print_error("case %zu: rc %d (%s)\n", i, rc, rc ? err : "");
    assert_int_equal(rc, c->rc);
    if (rc == SO_OK) {
      assert_string_equal(r.id, c->id);
      assert_string_equal(r.address, c->address);
      if (c->vars) {
        assert_non_null(r.vars_json);
        assert_string_equal(r.vars_json, c->vars);
      } else {
        assert_null(r.vars_json);
      }
    } else {
      assert_string_equal(err, c->err);
      assert_null(r.id);
      assert_null(r.address);
      assert_null(r.vars_json);
    }
    expect_same(&r, rc, err, &s, rc_slow, err_slow);
    msg_recipient_cleanup(&r);
    msg_recipient_cleanup(&s);
  }
}

/* Size caps on the fast path: 256 bytes pass, 257 do not; an escape
 * counts as the bytes it decodes to. */
static void test_caps(void **state)
{
  (void)state;
  static const char *const fields[] = {"address", "id"};
  for (size_t f = 0; f < 2; f++) {
    for (size_t n = 255; n <= 257; n++) {
      char line[2048], err[MSG_ERR_LEN], err_slow[MSG_ERR_LEN];
      struct msg_recipient r, s;
      size_t o = (size_t)snprintf(line, sizeof line,
                                  "{\"address\":\"a\",\"%s\":\"", fields[f]);
      for (size_t k = 0; k + 1 < n; k++)
        line[o++] = 'x';
      memcpy(line + o, "\\u00e9\"}", 8); /* 2 bytes once decoded */
      o += 8;
      /* "address" given twice would be a repeated key: drop the first. */
      const char *text = line;
      if (f == 0) {
        text = line + 14;
        line[14] = '{';
      }
      size_t len = o - (size_t)(text - line);
      int rc = msg_parse_recipient_line(text, len, &r, err, sizeof err);
      int rc_slow = msg__parse_recipient_line_slow(text, len, &s, err_slow,
                                                   sizeof err_slow);
      assert_int_equal(rc, n + 1 <= 256 ? SO_OK : SO_ERR_INVALID);
      expect_same(&r, rc, err, &s, rc_slow, err_slow);
      msg_recipient_cleanup(&r);
      msg_recipient_cleanup(&s);
    }
  }
}

/* msg_parse: the fast path accepts only what the json-c path accepts, and
 * gives the same message; what it declines gets json-c's reason. */
#define HEAD                                                \
  "{\"schema\":1,\"campaign_id\":\"c-1\",\"scheduled_at\":" \
  "\"2026-11-27T09:00:00Z\",\"channel\":\"email\","
static const struct parse_case {
  const char *body;
  int rc;
  const char *content; /* expected content_json on success */
  const char *err;     /* expected reason on failure */
} parse_cases[] = {
    {HEAD "\"content\":{},\"recipients_url\":\"file:///l\"}", SO_OK, "{}",
     NULL},
    {HEAD "\"content\":{ \"s\" : \"\\u00e9\\/\\u001F\\ud836\\udc00\" , "
          "\"n\":[-0,1.0,2E3]},\"recipients\":[ {\"address\":\"a\"} , "
          "{\"id\":\"b\",\"address\":\"a\",\"vars\":{\"k\":\"\\/\"}} ],"
          "\"not_after\":\"2026-11-27T10:00:00+01:00:00\"}",
     SO_ERR_INVALID, NULL,
     "bad_not_after: '2026-11-27T10:00:00+01:00:00' is not RFC 3339"},
    {HEAD "\"content\":{ \"s\" : \"\\u00e9\\/\\u001F\\ud836\\udc00\" , "
          "\"n\":[-0,1.0,2E3]},\"recipients\":[ {\"address\":\"a\"} , "
          "{\"id\":\"b\",\"address\":\"a\",\"vars\":{\"k\":\"\\/\"}} ],"
          "\"not_after\":\"2026-11-27T10:00:00.5+01:00\"}",
     SO_OK, "{\"s\":\"\xc3\xa9/\\u001f\xef\xbf\xbd\",\"n\":[0,1.0,2E3]}", NULL},
    {HEAD "\"content\":{},\"recipients\":[{\"address\":\"a\"},"
          "{\"address\":\"a\"}]}",
     SO_ERR_INVALID, NULL,
     "duplicate_recipient: id 'a' at recipients[0] and recipients[1]"},
    {HEAD "\"content\":{},\"recipients\":[]}", SO_ERR_INVALID, NULL,
     "bad_recipients: empty array"},
    {HEAD "\"content\":{},\"recipients\":[{\"address\":\"a\"}],"
          "\"recipients_url\":\"file:///l\"}",
     SO_ERR_INVALID, NULL,
     "recipients_both: give recipients or recipients_url, not both"},
    {"{\"schema\":1.0,\"campaign_id\":\"c\"}", SO_ERR_INVALID, NULL,
     "bad_schema: not an integer"},
    {"{\"schema\":-0,\"campaign_id\":\"c\"}", SO_ERR_INVALID, NULL,
     "unsupported_schema: schema 0, this program reads 1"},
    {"{\"schema\":1,\"campaign_id\":\"c\\u0000\"}", SO_ERR_INVALID, NULL,
     "bad_campaign_id: contains '\\x00' at offset 1"},
    {HEAD "\"content\":{},\"recipients_url\":\"file:///l\",\"x\":[{},{\"a\":"
          "1,\"a\":1}]}",
     SO_ERR_INVALID, NULL, "duplicate_key: 9 members in the text, 8 distinct"},
    {"{\"schema\":1,\"campaign_id\":\"c\",\"scheduled_at\":"
     "\"2026-11-27T09:00:00Z\",\"channel\":\"fax\",\"content\":{},"
     "\"recipients_url\":\"file:///l\"}",
     SO_ERR_INVALID, NULL, "unknown_channel: 'fax' is not configured"},
};

static void test_parse(void **state)
{
  (void)state;
  static const char *const channels[] = {"email", "sms"};
  const struct msg_rules rules = {
      .max_bytes = 65536, .channels = channels, .n_channels = 2};
  for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
    const struct parse_case *c = &parse_cases[i];
    char err[MSG_ERR_LEN], err_slow[MSG_ERR_LEN];
    struct msg *m = NULL, *s = NULL;
    size_t len = strlen(c->body);
    int rc = msg_parse(c->body, len, &rules, &m, err, sizeof err);
    int rc_slow =
        msg__parse_slow(c->body, len, &rules, &s, err_slow, sizeof err_slow);
    if (rc != c->rc || (rc != SO_OK && strcmp(err, c->err) != 0))
      print_error("parse case %zu: rc %d (%s)\n", i, rc, rc ? err : "");
    assert_int_equal(rc, c->rc);
    assert_int_equal(rc_slow, c->rc);
    if (rc != SO_OK) {
      assert_null(m);
      assert_string_equal(err, c->err);
      assert_string_equal(err_slow, c->err);
      continue;
    }
    assert_string_equal(m->content_json, c->content);
    assert_string_equal(m->content_json, s->content_json);
    assert_string_equal(m->campaign_id, s->campaign_id);
    assert_string_equal(m->channel, s->channel);
    assert_true(m->scheduled_at_ms == s->scheduled_at_ms);
    assert_int_equal(m->has_not_after, s->has_not_after);
    assert_true(m->not_after_ms == s->not_after_ms);
    assert_int_equal(m->n_recipients, s->n_recipients);
    for (size_t k = 0; k < m->n_recipients; k++)
      expect_same(&m->recipients[k], SO_OK, "", &s->recipients[k], SO_OK, "");
    assert_true((m->recipients_url == NULL) == (s->recipients_url == NULL));
    if (m->recipients_url)
      assert_string_equal(m->recipients_url, s->recipients_url);
    msg_free(m);
    msg_free(s);
  }
}

/* strictjson_utf8_valid skips ASCII eight bytes at a time: a bad byte is
 * still found at its exact offset, wherever it falls in a word. */
static void test_utf8_offsets(void **state)
{
  (void)state;
  char buf[40];
  for (size_t len = 1; len <= sizeof buf; len++) {
    for (size_t pos = 0; pos < len; pos++) {
      memset(buf, 'a', sizeof buf);
      buf[pos] = (char)0xff;
      assert_int_equal(strictjson_utf8_valid(buf, len), pos);
      buf[pos] = (char)0xc3; /* a lead byte: valid only with its follower */
      if (pos + 1 < len) {
        buf[pos + 1] = (char)0xa9;
        assert_int_equal(strictjson_utf8_valid(buf, len), len);
        buf[pos + 1] = 'a';
      }
      assert_int_equal(strictjson_utf8_valid(buf, len), pos);
    }
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cases),
      cmocka_unit_test(test_caps),
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_utf8_offsets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
