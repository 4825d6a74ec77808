/* test_msg.c - the campaign-due codec: every rule, the bad-message corpus,
 * the round trip, the best-effort campaign id and recipient lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"

#ifndef SENDONCE_TEST_DATA_DIR
#error "SENDONCE_TEST_DATA_DIR must name tests/data"
#endif

static const char *const channels[] = {"email", "sms"};
static const struct msg_rules rules = {
    .max_bytes = 65536, .channels = channels, .n_channels = 2};

/* The pieces of a valid message, to vary one rule at a time. */
#define SCHEMA "\"schema\":1"
#define ID "\"campaign_id\":\"spring-sale-2026\""
#define AT "\"scheduled_at\":\"2026-11-27T09:00:00Z\""
#define CH "\"channel\":\"email\""
#define CT "\"content\":{\"subject\":\"Hi\",\"template\":\"Hello {{name}}\"}"
#define RC "\"recipients\":[{\"id\":\"u-1\",\"address\":\"a@example.org\"}]"
#define URL "\"recipients_url\":\"file:///var/lib/sendonce/lists/s.jsonl\""
#define BASE SCHEMA "," ID "," AT "," CH "," CT
#define MSG(...) "{" __VA_ARGS__ "}"
#define VALID MSG(BASE "," RC)
#define WITH_RC(r) MSG(BASE ",\"recipients\":[" r "]")
/* 31 nested arrays inside the root object: depth 32, the limit. */
#define NEST31                      \
  "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[" \
  "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
#define NEST32 "[" NEST31 "]"

struct parse_case {
  const char *name;
  const char *body;
  size_t len;       /* 0: strlen(body) */
  size_t max_bytes; /* 0: rules.max_bytes */
  int rc;           /* expected status */
  const char *code; /* expected first token of err, or NULL when OK */
};

static const struct parse_case cases[] = {
    /* valid */
    {"minimal inline", VALID, 0, 0, SO_OK, NULL},
    {"url instead of list", MSG(BASE "," URL), 0, 0, SO_OK, NULL},
    {"http url", MSG(BASE ",\"recipients_url\":\"http://h/x\""), 0, 0, SO_OK,
     NULL},
    {"HTTPS url upper case", MSG(BASE ",\"recipients_url\":\"HTTPS://h\""), 0,
     0, SO_OK, NULL},
    {"file://localhost", MSG(BASE ",\"recipients_url\":\"file://localhost/x\""),
     0, 0, SO_OK, NULL},
    {"not_after later",
     MSG(BASE "," RC ",\"not_after\":\"2026-11-27T09:00:01Z\""), 0, 0, SO_OK,
     NULL},
    {"unknown fields ignored",
     MSG(BASE "," RC ",\"priority\":[1,{}],\"x\":null"), 0, 0, SO_OK, NULL},
    {"whitespace around", " \r\n\t" VALID "\n ", 0, 0, SO_OK, NULL},
    {"id defaults to address", WITH_RC("{\"address\":\"a@x\"}"), 0, 0, SO_OK,
     NULL},
    {"utf-8 id and escapes",
     WITH_RC("{\"id\":\"Zo\\u00eb \xe2\x98\x83\","
             "\"address\":\"\\ud83d\\ude00@x\"}"),
     0, 0, SO_OK, NULL},
    {"vars object", WITH_RC("{\"address\":\"a\",\"vars\":{\"n\":[1,2.5e3]}}"),
     0, 0, SO_OK, NULL},
    {"campaign id charset",
     MSG(SCHEMA ",\"campaign_id\":\"A-z.0_9:x\"," AT "," CH "," CT "," RC), 0,
     0, SO_OK, NULL},
    {"exactly max_bytes", VALID, 0, sizeof(VALID) - 1, SO_OK, NULL},
    {"depth 32 content", MSG(BASE "," RC ",\"x\":" NEST31), 0, 0, SO_OK, NULL},

    /* size, encoding, syntax */
    {"over max_bytes", VALID, 0, sizeof(VALID) - 2, SO_ERR_TOO_LARGE,
     MSG_ERR_TOO_LARGE},
    {"empty body", "", 0, 0, SO_ERR_INVALID, MSG_ERR_BAD_JSON},
    {"blank body", "  \n", 0, 0, SO_ERR_INVALID, MSG_ERR_BAD_JSON},
    {"invalid utf-8 byte", MSG(BASE "," RC ",\"x\":\"\xff\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_UTF8},
    {"overlong utf-8", MSG(BASE "," RC ",\"x\":\"\xc0\xaf\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_UTF8},
    {"utf-8 surrogate", MSG(BASE "," RC ",\"x\":\"\xed\xa0\x80\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_UTF8},
    {"truncated utf-8", MSG(BASE "," RC ",\"x\":\"\xe2\x98\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_UTF8},
    {"lone surrogate escape", MSG(BASE "," RC ",\"x\":\"\\udc00\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_UTF8},
    {"not json", "campaign", 0, 0, SO_ERR_INVALID, MSG_ERR_BAD_JSON},
    {"truncated json", "{\"schema\":1,", 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_JSON},
    {"trailing garbage", VALID "x", 0, 0, SO_ERR_INVALID,
     MSG_ERR_TRAILING_DATA},
    {"two objects", VALID VALID, 0, 0, SO_ERR_INVALID, MSG_ERR_TRAILING_DATA},
    {"embedded NUL after object", VALID "\0", sizeof(VALID), 0, SO_ERR_INVALID,
     MSG_ERR_TRAILING_DATA},
    {"array root", "[" VALID "]", 0, 0, SO_ERR_INVALID, MSG_ERR_NOT_OBJECT},
    {"number root", "1", 0, 0, SO_ERR_INVALID, MSG_ERR_NOT_OBJECT},
    {"null root", "null", 0, 0, SO_ERR_INVALID, MSG_ERR_NOT_OBJECT},
    {"deep nesting", MSG(BASE "," RC ",\"x\":" NEST32), 0, 0, SO_ERR_INVALID,
     MSG_ERR_TOO_DEEP},
    {"trailing comma", MSG(BASE "," RC ","), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_JSON},
    {"single quotes", MSG(BASE "," RC ",'x':1"), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_JSON},
    {"NaN", MSG(BASE "," RC ",\"x\":NaN"), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_JSON},
    {"leading zero", MSG(BASE "," RC ",\"x\":01"), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_JSON},
    {"raw tab in string", MSG(BASE "," RC ",\"x\":\"a\tb\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_JSON},
    {"bad escape", MSG(BASE "," RC ",\"x\":\"\\q\""), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_JSON},
    {"integer beyond 64 bits", MSG(BASE "," RC ",\"x\":18446744073709551616"),
     0, 0, SO_ERR_INVALID, MSG_ERR_BAD_JSON},
    {"NUL escape in key", MSG(BASE "," RC ",\"schema\\u0000\":2"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_JSON},
    {"duplicate top-level key", MSG(BASE "," RC ",\"channel\":\"sms\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_DUPLICATE_KEY},
    {"duplicate nested key", MSG(BASE "," RC ",\"x\":{\"a\":1,\"a\":{}}"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_DUPLICATE_KEY},

    /* schema */
    {"schema missing", MSG(ID "," AT "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_SCHEMA},
    {"schema string", MSG("\"schema\":\"1\"," ID "," AT "," CH "," CT "," RC),
     0, 0, SO_ERR_INVALID, MSG_ERR_BAD_SCHEMA},
    {"schema float", MSG("\"schema\":1.0," ID "," AT "," CH "," CT "," RC), 0,
     0, SO_ERR_INVALID, MSG_ERR_BAD_SCHEMA},
    {"schema null", MSG("\"schema\":null," ID "," AT "," CH "," CT "," RC), 0,
     0, SO_ERR_INVALID, MSG_ERR_BAD_SCHEMA},
    {"schema 2", MSG("\"schema\":2," ID "," AT "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_UNSUPPORTED_SCHEMA},
    {"schema 0", MSG("\"schema\":0," ID "," AT "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_UNSUPPORTED_SCHEMA},

    /* campaign_id */
    {"campaign id missing", MSG(SCHEMA "," AT "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CAMPAIGN_ID},
    {"campaign id empty",
     MSG(SCHEMA ",\"campaign_id\":\"\"," AT "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CAMPAIGN_ID},
    {"campaign id slash",
     MSG(SCHEMA ",\"campaign_id\":\"a/b\"," AT "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CAMPAIGN_ID},
    {"campaign id space",
     MSG(SCHEMA ",\"campaign_id\":\"a b\"," AT "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CAMPAIGN_ID},
    {"campaign id non-ascii",
     MSG(SCHEMA ",\"campaign_id\":\"caf\xc3\xa9\"," AT "," CH "," CT "," RC), 0,
     0, SO_ERR_INVALID, MSG_ERR_BAD_CAMPAIGN_ID},
    {"campaign id NUL escape",
     MSG(SCHEMA ",\"campaign_id\":\"a\\u0000b\"," AT "," CH "," CT "," RC), 0,
     0, SO_ERR_INVALID, MSG_ERR_BAD_CAMPAIGN_ID},
    {"campaign id number",
     MSG(SCHEMA ",\"campaign_id\":7," AT "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CAMPAIGN_ID},

    /* scheduled_at */
    {"scheduled_at missing", MSG(SCHEMA "," ID "," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_SCHEDULED_AT},
    {"scheduled_at no offset",
     MSG(SCHEMA "," ID ",\"scheduled_at\":\"2026-11-27T09:00:00\"," CH "," CT
                "," RC),
     0, 0, SO_ERR_INVALID, MSG_ERR_BAD_SCHEDULED_AT},
    {"scheduled_at 31 April",
     MSG(SCHEMA "," ID ",\"scheduled_at\":\"2026-04-31T09:00:00Z\"," CH "," CT
                "," RC),
     0, 0, SO_ERR_INVALID, MSG_ERR_BAD_SCHEDULED_AT},
    {"scheduled_at epoch number",
     MSG(SCHEMA "," ID ",\"scheduled_at\":1796202000," CH "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_SCHEDULED_AT},

    /* channel */
    {"channel missing", MSG(SCHEMA "," ID "," AT "," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CHANNEL},
    {"channel not string",
     MSG(SCHEMA "," ID "," AT ",\"channel\":[]," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CHANNEL},
    {"channel bad chars",
     MSG(SCHEMA "," ID "," AT ",\"channel\":\"e mail\"," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CHANNEL},
    {"unknown channel",
     MSG(SCHEMA "," ID "," AT ",\"channel\":\"fax\"," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_UNKNOWN_CHANNEL},
    {"channel case matters",
     MSG(SCHEMA "," ID "," AT ",\"channel\":\"Email\"," CT "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_UNKNOWN_CHANNEL},

    /* content */
    {"content missing", MSG(SCHEMA "," ID "," AT "," CH "," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CONTENT},
    {"content string",
     MSG(SCHEMA "," ID "," AT "," CH ",\"content\":\"x\"," RC), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_CONTENT},
    {"content array", MSG(SCHEMA "," ID "," AT "," CH ",\"content\":[]," RC), 0,
     0, SO_ERR_INVALID, MSG_ERR_BAD_CONTENT},

    /* recipients / recipients_url */
    {"both", MSG(BASE "," RC "," URL), 0, 0, SO_ERR_INVALID,
     MSG_ERR_RECIPIENTS_BOTH},
    {"neither", MSG(BASE), 0, 0, SO_ERR_INVALID, MSG_ERR_RECIPIENTS_MISSING},
    {"empty recipients", MSG(BASE ",\"recipients\":[]"), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_RECIPIENTS},
    {"recipients object", MSG(BASE ",\"recipients\":{}"), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_RECIPIENTS},
    {"recipients null", MSG(BASE ",\"recipients\":null"), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_RECIPIENTS},
    {"recipient not object", WITH_RC("\"a@x\""), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_RECIPIENT},
    {"recipient no address", WITH_RC("{\"id\":\"u\"}"), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_RECIPIENT},
    {"recipient address number", WITH_RC("{\"address\":5}"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
    {"recipient address empty", WITH_RC("{\"address\":\"\"}"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
    {"recipient address newline", WITH_RC("{\"address\":\"a\\nb\"}"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
    {"recipient id not string", WITH_RC("{\"id\":1,\"address\":\"a\"}"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
    {"recipient id DEL", WITH_RC("{\"id\":\"u\x7f\",\"address\":\"a\"}"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
    {"recipient id C1 control",
     WITH_RC("{\"id\":\"u\\u0085\",\"address\":\"a\"}"), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_RECIPIENT},
    {"recipient vars string", WITH_RC("{\"address\":\"a\",\"vars\":\"x\"}"), 0,
     0, SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
    {"second recipient bad", WITH_RC("{\"address\":\"a\"},{\"address\":null}"),
     0, 0, SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
    {"duplicate recipient id",
     WITH_RC("{\"id\":\"u\",\"address\":\"a\"},{\"address\":\"b\"},"
             "{\"id\":\"u\",\"address\":\"c\"}"),
     0, 0, SO_ERR_INVALID, MSG_ERR_DUPLICATE_RECIPIENT},
    {"duplicate defaulted id",
     WITH_RC("{\"address\":\"a\"},{\"id\":\"a\",\"address\":\"b\"}"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_DUPLICATE_RECIPIENT},
    {"url ftp", MSG(BASE ",\"recipients_url\":\"ftp://h/x\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENTS_URL},
    {"url relative", MSG(BASE ",\"recipients_url\":\"lists/x.jsonl\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENTS_URL},
    {"url file no path", MSG(BASE ",\"recipients_url\":\"file://host/x\""), 0,
     0, SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENTS_URL},
    {"url http no host", MSG(BASE ",\"recipients_url\":\"http:///x\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENTS_URL},
    {"url with space", MSG(BASE ",\"recipients_url\":\"http://h/a b\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENTS_URL},
    {"url empty", MSG(BASE ",\"recipients_url\":\"\""), 0, 0, SO_ERR_INVALID,
     MSG_ERR_BAD_RECIPIENTS_URL},
    {"url array", MSG(BASE ",\"recipients_url\":[\"http://h\"]"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENTS_URL},

    /* not_after */
    {"not_after before",
     MSG(BASE "," RC ",\"not_after\":\"2026-11-27T08:00:00Z\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_NOT_AFTER_ORDER},
    {"not_after equal",
     MSG(BASE "," RC ",\"not_after\":\"2026-11-27T10:00:00+01:00\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_NOT_AFTER_ORDER},
    {"not_after bad syntax", MSG(BASE "," RC ",\"not_after\":\"noon\""), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_NOT_AFTER},
    {"not_after null", MSG(BASE "," RC ",\"not_after\":null"), 0, 0,
     SO_ERR_INVALID, MSG_ERR_BAD_NOT_AFTER},
};

/* The first token of err: up to the first ':'. */
static void assert_code(const char *err, const char *code, const char *name)
{
  size_t n = strcspn(err, ":");
  if (strlen(code) != n || strncmp(err, code, n) != 0)
    print_error("case '%s': want code %s, got '%s'\n", name, code, err);
  assert_int_equal(strlen(code), n);
  assert_memory_equal(err, code, n);
  /* Printable ASCII only: it becomes an AMQP header value. */
  for (const char *p = err; *p; p++)
    assert_true(*p >= 0x20 && *p < 0x7f);
}

static void test_parse_table(void **state)
{
  (void)state;
  size_t n = sizeof cases / sizeof cases[0];
  assert_true(n >= 40);
  for (size_t i = 0; i < n; i++) {
    const struct parse_case *c = &cases[i];
    struct msg_rules r = rules;
    if (c->max_bytes)
      r.max_bytes = c->max_bytes;
    char err[MSG_ERR_LEN] = "untouched";
    struct msg *m = (struct msg *)&r; /* must be overwritten */
    int rc = msg_parse(c->body, c->len ? c->len : strlen(c->body), &r, &m, err,
                       sizeof err);
    if (rc != c->rc)
      print_error("case '%s': rc %d, want %d (%s)\n", c->name, rc, c->rc, err);
    assert_int_equal(rc, c->rc);
    if (rc == SO_OK) {
      assert_non_null(m);
      assert_string_equal(err, "");
      msg_free(m);
    } else {
      assert_null(m);
      assert_code(err, c->code, c->name);
    }
  }
}

static void test_parse_fields(void **state)
{
  (void)state;
  static const char body[] =
      MSG(BASE
          ",\"recipients\":[{\"id\":\"u-1\",\"address\":\"a@example.org\","
          "\"vars\":{\"name\":\"Ann\", \"n\": 2}},{\"address\":\"b@x\"}],"
          "\"not_after\":\"2026-11-27T13:00:00.5+01:00\",\"future\":true");
  struct msg *m = NULL;
  char err[MSG_ERR_LEN];
  assert_int_equal(msg_parse(body, strlen(body), &rules, &m, err, sizeof err),
                   SO_OK);
  assert_int_equal(m->schema, 1);
  assert_string_equal(m->campaign_id, "spring-sale-2026");
  assert_int_equal(m->scheduled_at_ms, INT64_C(1795770000000));
  assert_string_equal(m->channel, "email");
  assert_string_equal(m->content_json,
                      "{\"subject\":\"Hi\",\"template\":\"Hello {{name}}\"}");
  assert_int_equal(m->n_recipients, 2);
  assert_string_equal(m->recipients[0].id, "u-1");
  assert_string_equal(m->recipients[0].address, "a@example.org");
  assert_string_equal(m->recipients[0].vars_json, "{\"name\":\"Ann\",\"n\":2}");
  assert_string_equal(m->recipients[1].id, "b@x");
  assert_string_equal(m->recipients[1].address, "b@x");
  assert_null(m->recipients[1].vars_json);
  assert_null(m->recipients_url);
  assert_true(m->has_not_after);
  assert_int_equal(m->not_after_ms, INT64_C(1795770000000) + 3 * 3600000 + 500);
  msg_free(m);

  static const char url[] = MSG(BASE "," URL);
  assert_int_equal(msg_parse(url, strlen(url), NULL, &m, err, sizeof err),
                   SO_OK);
  assert_null(m->recipients);
  assert_int_equal(m->n_recipients, 0);
  assert_string_equal(m->recipients_url,
                      "file:///var/lib/sendonce/lists/s.jsonl");
  assert_false(m->has_not_after);
  msg_free(m);
  msg_free(NULL);
}

/* Without a channel list any well-formed channel passes; the detail names
 * the offending byte and offset. */
static void test_rules_and_details(void **state)
{
  (void)state;
  static const char fax[] =
      MSG(SCHEMA "," ID "," AT ",\"channel\":\"fax\"," CT "," RC);
  struct msg *m = NULL;
  char err[MSG_ERR_LEN];
  assert_int_equal(msg_parse(fax, strlen(fax), NULL, &m, err, sizeof err),
                   SO_OK);
  assert_string_equal(m->channel, "fax");
  msg_free(m);

  static const char slash[] =
      MSG(SCHEMA ",\"campaign_id\":\"spri/ng\"," AT "," CH "," CT "," RC);
  assert_int_equal(msg_parse(slash, strlen(slash), &rules, &m, err, sizeof err),
                   SO_ERR_INVALID);
  assert_string_equal(err, "bad_campaign_id: contains '/' at offset 4");

  /* A tiny err buffer is filled safely; NULL err is allowed. */
  char tiny[5];
  assert_int_equal(
      msg_parse(slash, strlen(slash), &rules, &m, tiny, sizeof tiny),
      SO_ERR_INVALID);
  assert_string_equal(tiny, "bad_");
  assert_int_equal(msg_parse(slash, strlen(slash), &rules, &m, NULL, 0),
                   SO_ERR_INVALID);

  /* User bytes are escaped in details. */
  static const char nl[] =
      MSG(SCHEMA "," ID ",\"scheduled_at\":\"x\\n\\u00e9\"," CH "," CT "," RC);
  assert_int_equal(msg_parse(nl, strlen(nl), &rules, &m, err, sizeof err),
                   SO_ERR_INVALID);
  assert_string_equal(err,
                      "bad_scheduled_at: 'x\\x0a\\xc3\\xa9' is not RFC 3339");

  /* The body need not be NUL-terminated: only len bytes are read. */
  char *copy = malloc(sizeof(VALID) - 1);
  assert_non_null(copy);
  memcpy(copy, VALID, sizeof(VALID) - 1);
  assert_int_equal(
      msg_parse(copy, sizeof(VALID) - 1, &rules, &m, err, sizeof err), SO_OK);
  msg_free(m);
  free(copy);
}

static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *bigger = realloc(buf, cap * 2);
      if (!bigger) {
        free(buf);
        buf = NULL;
      }
      buf = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  *len = n;
  return buf;
}

/* Every file in bad-messages/ is refused with the code EXPECTED names, and
 * the campaign id, when it can be found at all, is the file's own. */
static void test_bad_corpus(void **state)
{
  (void)state;
  FILE *f = fopen(SENDONCE_TEST_DATA_DIR "/bad-messages/EXPECTED", "r");
  assert_non_null(f);
  char line[256];
  size_t files = 0, peeked = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n')
      continue;
    char name[128], code[64], path[512];
    assert_int_equal(sscanf(line, "%127s %63s", name, code), 2);
    snprintf(path, sizeof path, "%s/bad-messages/%s", SENDONCE_TEST_DATA_DIR,
             name);
    size_t len = 0;
    char *body = read_file(path, &len);
    if (!body)
      print_error("cannot read %s\n", path);
    assert_non_null(body);
    struct msg *m = NULL;
    char err[MSG_ERR_LEN] = "";
    int rc = msg_parse(body, len, &rules, &m, err, sizeof err);
    if (rc == SO_OK)
      print_error("%s: accepted\n", name);
    assert_int_not_equal(rc, SO_OK);
    assert_null(m);
    assert_code(err, code, name);
    assert_int_equal(rc, strcmp(code, MSG_ERR_TOO_LARGE) == 0 ? SO_ERR_TOO_LARGE
                                                              : SO_ERR_INVALID);

    char id[MSG_CAMPAIGN_ID_MAX + 1], want[32];
    snprintf(want, sizeof want, "bad-msg-%.2s", name);
    if (msg_peek_campaign_id(body, len, id, sizeof id) == SO_OK) {
      if (strcmp(id, want) != 0)
        print_error("%s: peeked '%s'\n", name, id);
      assert_string_equal(id, want);
      peeked++;
    }
    free(body);
    files++;
  }
  fclose(f);
  assert_true(files >= 30);
  /* All but the ones without a readable top-level id. */
  assert_true(peeked + 8 >= files);
}

static int round_trip(const char *body, size_t len)
{
  struct msg *a = NULL, *b = NULL;
  char *e1 = NULL, *e2 = NULL;
  size_t l1 = 0, l2 = 0;
  char err[MSG_ERR_LEN];
  assert_int_equal(msg_parse(body, len, &rules, &a, err, sizeof err), SO_OK);
  assert_int_equal(msg_encode(a, &e1, &l1, err, sizeof err), SO_OK);
  assert_int_equal(strlen(e1), l1);
  assert_int_equal(msg_parse(e1, l1, &rules, &b, err, sizeof err), SO_OK);
  assert_int_equal(msg_encode(b, &e2, &l2, err, sizeof err), SO_OK);
  /* Canonical: encoding the re-parsed message changes nothing. */
  assert_string_equal(e1, e2);
  /* And the decoded values survive. */
  assert_string_equal(a->campaign_id, b->campaign_id);
  assert_int_equal(a->scheduled_at_ms, b->scheduled_at_ms);
  assert_string_equal(a->channel, b->channel);
  assert_string_equal(a->content_json, b->content_json);
  assert_int_equal(a->n_recipients, b->n_recipients);
  for (size_t i = 0; i < a->n_recipients; i++) {
    assert_string_equal(a->recipients[i].id, b->recipients[i].id);
    assert_string_equal(a->recipients[i].address, b->recipients[i].address);
    if (a->recipients[i].vars_json)
      assert_string_equal(a->recipients[i].vars_json,
                          b->recipients[i].vars_json);
    else
      assert_null(b->recipients[i].vars_json);
  }
  if (a->recipients_url)
    assert_string_equal(a->recipients_url, b->recipients_url);
  assert_int_equal(a->has_not_after, b->has_not_after);
  assert_int_equal(a->not_after_ms, b->not_after_ms);
  msg_free(a);
  msg_free(b);
  free(e1);
  free(e2);
  return 0;
}

static void test_round_trip(void **state)
{
  (void)state;
  static const char *const names[] = {"01-inline.json", "02-url-file.json",
                                      "03-sms-unicode.json",
                                      "04-url-https.json"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/good-messages/%s", SENDONCE_TEST_DATA_DIR,
             names[i]);
    char *body = read_file(path, &len);
    assert_non_null(body);
    round_trip(body, len);
    free(body);
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (cases[i].rc == SO_OK)
      round_trip(cases[i].body,
                 cases[i].len ? cases[i].len : strlen(cases[i].body));
}

static void test_encode(void **state)
{
  (void)state;
  char id[] = "c-1", ch[] = "sms", content[] = "{ \"text\" : \"hi\" }";
  char addr[] = "+15550100", url[] = "https://h/l.jsonl";
  struct msg_recipient r = {.address = addr};
  struct msg m = {.schema = 1,
                  .campaign_id = id,
                  .scheduled_at_ms = INT64_C(1795770000000),
                  .channel = ch,
                  .content_json = content,
                  .recipients = &r,
                  .n_recipients = 1,
                  .has_not_after = true,
                  .not_after_ms = INT64_C(1795770000001)};
  char *out = NULL, err[MSG_ERR_LEN];
  size_t len = 0;
  assert_int_equal(msg_encode(&m, &out, &len, err, sizeof err), SO_OK);
  assert_string_equal(out,
                      "{\"schema\":1,\"campaign_id\":\"c-1\","
                      "\"scheduled_at\":\"2026-11-27T09:00:00.000Z\","
                      "\"channel\":\"sms\",\"content\":{\"text\":\"hi\"},"
                      "\"recipients\":[{\"id\":\"+15550100\","
                      "\"address\":\"+15550100\"}],"
                      "\"not_after\":\"2026-11-27T09:00:00.001Z\"}");
  free(out);

  /* Invalid messages are refused with the same codes as msg_parse. */
  m.recipients_url = url;
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_ERR_INVALID);
  assert_null(out);
  assert_code(err, MSG_ERR_RECIPIENTS_BOTH, "encode both");
  m.recipients = NULL;
  m.n_recipients = 0;
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_OK);
  free(out);

  char bad_id[] = "c/1";
  m.campaign_id = bad_id;
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_ERR_INVALID);
  assert_code(err, MSG_ERR_BAD_CAMPAIGN_ID, "encode bad id");
  m.campaign_id = NULL;
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_ERR_INVALID);
  assert_code(err, MSG_ERR_BAD_CAMPAIGN_ID, "encode no id");
  m.campaign_id = id;

  char not_object[] = "[1]", not_json[] = "{x}";
  m.content_json = not_object;
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_ERR_INVALID);
  assert_code(err, MSG_ERR_BAD_CONTENT, "encode content array");
  m.content_json = not_json;
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_ERR_INVALID);
  assert_code(err, MSG_ERR_BAD_CONTENT, "encode content not json");
  m.content_json = content;

  m.schema = 2;
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_ERR_INVALID);
  assert_code(err, MSG_ERR_UNSUPPORTED_SCHEMA, "encode schema 2");
  m.schema = 1;
  m.not_after_ms = m.scheduled_at_ms;
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_ERR_INVALID);
  assert_code(err, MSG_ERR_NOT_AFTER_ORDER, "encode not_after");
  m.has_not_after = false;
  m.scheduled_at_ms = INT64_C(253402300800000); /* year 10000 */
  assert_int_equal(msg_encode(&m, &out, NULL, err, sizeof err), SO_ERR_INVALID);
  assert_code(err, MSG_ERR_BAD_SCHEDULED_AT, "encode year 10000");
}

static void test_validate_campaign_id(void **state)
{
  (void)state;
  char err[MSG_ERR_LEN];
  char longest[MSG_CAMPAIGN_ID_MAX + 2];
  memset(longest, 'a', sizeof longest);
  longest[MSG_CAMPAIGN_ID_MAX] = '\0';
  assert_int_equal(msg_validate_campaign_id(longest, err, sizeof err), SO_OK);
  assert_int_equal(msg_validate_campaign_id("spring-sale-2026", NULL, 0),
                   SO_OK);
  assert_int_equal(msg_validate_campaign_id("a.b_c:d-E9", err, sizeof err),
                   SO_OK);
  longest[MSG_CAMPAIGN_ID_MAX] = 'a';
  longest[MSG_CAMPAIGN_ID_MAX + 1] = '\0';
  assert_int_equal(msg_validate_campaign_id(longest, err, sizeof err),
                   SO_ERR_INVALID);
  assert_string_equal(err, "bad_campaign_id: 129 bytes, at most 128 allowed");
  assert_int_equal(msg_validate_campaign_id("", err, sizeof err),
                   SO_ERR_INVALID);
  assert_string_equal(err, "bad_campaign_id: empty");
  assert_int_equal(msg_validate_campaign_id(NULL, err, sizeof err),
                   SO_ERR_INVALID);
  assert_int_equal(msg_validate_campaign_id("ab\x01", err, sizeof err),
                   SO_ERR_INVALID);
  assert_string_equal(err, "bad_campaign_id: contains '\\x01' at offset 2");
  assert_int_equal(msg_validate_campaign_id("a*", err, sizeof err),
                   SO_ERR_INVALID);
}

static void test_peek(void **state)
{
  (void)state;
  struct peek_case {
    const char *body;
    int rc;
    const char *id;
  } pc[] = {
      {VALID, SO_OK, "spring-sale-2026"},
      {"{\"campaign_id\":\"c\\u002d1\"}", SO_OK, "c-1"}, /* valid: json-c */
      {"{\"x\":\"\xff\",\"campaign_id\" : \"c-2\"", SO_OK, "c-2"},
      {"{\"content\":{\"campaign_id\":\"inner\"},\"campaign_id\":\"c-3\"} x",
       SO_OK, "c-3"},
      {"{\"content\":{\"campaign_id\":\"inner\"}} x", SO_ERR_NOTFOUND, NULL},
      {"{\"s\":\"\\\"campaign_id\\\":\\\"no\\\"\"}x", SO_ERR_NOTFOUND, NULL},
      {"{\"campaign_id\":\"a/b\"}", SO_ERR_NOTFOUND, NULL},
      {"{\"campaign_id\":\"a/b\"", SO_ERR_NOTFOUND, NULL},
      {"{\"campaign_id\":7}", SO_ERR_NOTFOUND, NULL},
      {"{\"campaign_id\":\"unterminated", SO_ERR_NOTFOUND, NULL},
      {"{\"campaign_id\"", SO_ERR_NOTFOUND, NULL},
      {"", SO_ERR_NOTFOUND, NULL},
      {"[{\"campaign_id\":\"c-4\"}]", SO_ERR_NOTFOUND, NULL},
  };
  for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
    char id[MSG_CAMPAIGN_ID_MAX + 1] = "";
    int rc =
        msg_peek_campaign_id(pc[i].body, strlen(pc[i].body), id, sizeof id);
    if (rc != pc[i].rc)
      print_error("peek case %zu: rc %d\n", i, rc);
    assert_int_equal(rc, pc[i].rc);
    if (pc[i].id)
      assert_string_equal(id, pc[i].id);
  }
  /* Only len bytes are read. */
  char id[8];
  assert_int_equal(
      msg_peek_campaign_id("{\"campaign_id\":\"c-5\"}", 18, id, sizeof id),
      SO_ERR_NOTFOUND);
  assert_int_equal(
      msg_peek_campaign_id("{\"campaign_id\":\"c-123456\"}", 25, id, 4),
      SO_ERR_TOO_LARGE);
}

static void test_recipient_line(void **state)
{
  (void)state;
  struct msg_recipient r;
  char err[MSG_ERR_LEN];
  static const char ok[] =
      "{\"id\":\"u-9\",\"address\":\"z@x\",\"vars\":{\"a\":[true]}}\r\n";
  assert_int_equal(
      msg_parse_recipient_line(ok, strlen(ok), &r, err, sizeof err), SO_OK);
  assert_string_equal(r.id, "u-9");
  assert_string_equal(r.address, "z@x");
  assert_string_equal(r.vars_json, "{\"a\":[true]}");
  msg_recipient_cleanup(&r);
  assert_null(r.id);
  msg_recipient_cleanup(NULL);

  struct line_case {
    const char *line;
    int rc;
    const char *code;
  } lc[] = {
      {"{\"address\":\"a\"}", SO_OK, NULL},
      {"", SO_ERR_INVALID, MSG_ERR_BAD_JSON},
      {"\n", SO_ERR_INVALID, MSG_ERR_BAD_JSON},
      {"[]", SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
      {"{\"id\":\"u\"}", SO_ERR_INVALID, MSG_ERR_BAD_RECIPIENT},
      {"{\"address\":\"a\"} {}", SO_ERR_INVALID, MSG_ERR_TRAILING_DATA},
      {"{\"address\":\"a\xfe\"}", SO_ERR_INVALID, MSG_ERR_BAD_UTF8},
      {"{\"address\":\"a\",\"address\":\"b\"}", SO_ERR_INVALID,
       MSG_ERR_DUPLICATE_KEY},
      {"{\"address\":\"a\",\"vars\":null}", SO_ERR_INVALID,
       MSG_ERR_BAD_RECIPIENT},
      {"{\"address\":\"a\",", SO_ERR_INVALID, MSG_ERR_BAD_JSON},
  };
  for (size_t i = 0; i < sizeof lc / sizeof lc[0]; i++) {
    int rc = msg_parse_recipient_line(lc[i].line, strlen(lc[i].line), &r, err,
                                      sizeof err);
    if (rc != lc[i].rc)
      print_error("line case %zu: rc %d (%s)\n", i, rc, err);
    assert_int_equal(rc, lc[i].rc);
    if (rc == SO_OK) {
      assert_string_equal(r.id, "a");
      msg_recipient_cleanup(&r);
    } else {
      assert_null(r.id);
      assert_null(r.address);
      assert_code(err, lc[i].code, lc[i].line);
    }
  }
  /* The line cap. */
  size_t big = MSG_RECIPIENT_LINE_MAX + 1;
  char *line = malloc(big);
  assert_non_null(line);
  memset(line, ' ', big);
  assert_int_equal(msg_parse_recipient_line(line, big, &r, err, sizeof err),
                   SO_ERR_TOO_LARGE);
  assert_code(err, MSG_ERR_TOO_LARGE, "big line");
  free(line);
}

/* A large inline list parses, and duplicate detection is not quadratic. */
static void test_many_recipients(void **state)
{
  (void)state;
  const size_t n = 20000;
  size_t cap = n * 48 + 512, len = 0;
  char *body = malloc(cap);
  assert_non_null(body);
  len += (size_t)snprintf(body, cap, "{" BASE ",\"recipients\":[");
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(body + len, cap - len,
                            "%s{\"address\":\"user%zu@example.org\"}",
                            i ? "," : "", i);
  len += (size_t)snprintf(body + len, cap - len, "]}");
  struct msg_rules r = rules;
  r.max_bytes = cap;
  struct msg *m = NULL;
  char err[MSG_ERR_LEN];
  assert_int_equal(msg_parse(body, len, &r, &m, err, sizeof err), SO_OK);
  assert_int_equal(m->n_recipients, n);
  assert_string_equal(m->recipients[n - 1].id, "user19999@example.org");
  msg_free(m);
  free(body);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_table),
      cmocka_unit_test(test_parse_fields),
      cmocka_unit_test(test_rules_and_details),
      cmocka_unit_test(test_bad_corpus),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_encode),
      cmocka_unit_test(test_validate_campaign_id),
      cmocka_unit_test(test_peek),
      cmocka_unit_test(test_recipient_line),
      cmocka_unit_test(test_many_recipients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
