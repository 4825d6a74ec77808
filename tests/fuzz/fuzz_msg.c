/* fuzz_msg.c - libFuzzer target for the campaign-due codec.
 *
 * Every input goes through msg_parse, msg_peek_campaign_id and
 * msg_parse_recipient_line. A message that parses must encode, the
 * encoding must parse, and encoding that again must give the same bytes
 * (the canonical form is a fixed point). A refusal must carry a known
 * reason code in printable ASCII. The fast paths of msg_parse and
 * msg_parse_recipient_line must agree with the json-c paths
 * (msg__parse_slow, msg__parse_recipient_line_slow) on every input: status,
 * reason and every field, byte for byte. Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "msg_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const codes[] = {
    MSG_ERR_TOO_LARGE,
    MSG_ERR_BAD_UTF8,
    MSG_ERR_BAD_JSON,
    MSG_ERR_TOO_DEEP,
    MSG_ERR_TRAILING_DATA,
    MSG_ERR_NOT_OBJECT,
    MSG_ERR_DUPLICATE_KEY,
    MSG_ERR_BAD_SCHEMA,
    MSG_ERR_UNSUPPORTED_SCHEMA,
    MSG_ERR_BAD_CAMPAIGN_ID,
    MSG_ERR_BAD_SCHEDULED_AT,
    MSG_ERR_BAD_CHANNEL,
    MSG_ERR_UNKNOWN_CHANNEL,
    MSG_ERR_BAD_CONTENT,
    MSG_ERR_RECIPIENTS_MISSING,
    MSG_ERR_RECIPIENTS_BOTH,
    MSG_ERR_BAD_RECIPIENTS,
    MSG_ERR_BAD_RECIPIENT,
    MSG_ERR_DUPLICATE_RECIPIENT,
    MSG_ERR_BAD_RECIPIENTS_URL,
    MSG_ERR_BAD_NOT_AFTER,
    MSG_ERR_NOT_AFTER_ORDER,
};

static void check(int ok, const char *what, const char *detail)
{
  if (!ok) {
    fprintf(stderr, "fuzz_msg: %s: %s\n", what, detail ? detail : "");
    abort();
  }
}

static void check_err(int rc, const char *err)
{
  check(rc == SO_ERR_INVALID || rc == SO_ERR_TOO_LARGE, "unexpected status",
        so_strerror(rc));
  size_t n = strcspn(err, ":");
  int known = 0;
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    known |= strlen(codes[i]) == n && strncmp(err, codes[i], n) == 0;
  check(known && err[n] == ':', "unknown reason code", err);
  for (const char *p = err; *p; p++)
    check(*p >= 0x20 && *p < 0x7f, "non-printable reason", err);
}

static void check_same(const struct msg *a, const struct msg *b)
{
  check(strcmp(a->campaign_id, b->campaign_id) == 0, "campaign_id changed",
        b->campaign_id);
  check(a->scheduled_at_ms == b->scheduled_at_ms, "scheduled_at changed",
        a->campaign_id);
  check(strcmp(a->channel, b->channel) == 0, "channel changed", b->channel);
  check(strcmp(a->content_json, b->content_json) == 0, "content changed",
        b->content_json);
  check(a->n_recipients == b->n_recipients, "recipient count changed", NULL);
  for (size_t i = 0; i < a->n_recipients; i++) {
    const struct msg_recipient *x = &a->recipients[i], *y = &b->recipients[i];
    check(strcmp(x->id, y->id) == 0, "recipient id changed", y->id);
    check(strcmp(x->address, y->address) == 0, "address changed", y->address);
    check((x->vars_json == NULL) == (y->vars_json == NULL) &&
              (!x->vars_json || strcmp(x->vars_json, y->vars_json) == 0),
          "vars changed", y->vars_json);
  }
  check((a->recipients_url == NULL) == (b->recipients_url == NULL) &&
            (!a->recipients_url ||
             strcmp(a->recipients_url, b->recipients_url) == 0),
        "recipients_url changed", b->recipients_url);
  check(a->has_not_after == b->has_not_after &&
            (!a->has_not_after || a->not_after_ms == b->not_after_ms),
        "not_after changed", a->campaign_id);
}

/* msg_parse (fast path first) and the json-c path must agree exactly. */
static void parse_differential(const char *body, size_t size,
                               const struct msg_rules *rules, int rc,
                               const struct msg *m, const char *err)
{
  char err_slow[MSG_ERR_LEN];
  struct msg *s = NULL;
  int rc_slow =
      msg__parse_slow(body, size, rules, &s, err_slow, sizeof err_slow);
  check(rc == rc_slow, "fast/slow msg_parse status differs", err_slow);
  if (rc == SO_OK) {
    check(m && s && m->schema == s->schema, "fast/slow schema differs", NULL);
    check_same(m, s);
  } else {
    check(strcmp(err, err_slow) == 0, "fast/slow msg_parse reason differs",
          err_slow);
  }
  msg_free(s);
}

/* Parse; if valid, check encode -> parse -> encode is a fixed point. */
static void parse_round_trip(const char *body, size_t size)
{
  static const char *const channels[] = {"email", "sms"};
  const struct msg_rules rules = {
      .max_bytes = 65536, .channels = channels, .n_channels = 2};
  char err[MSG_ERR_LEN];
  struct msg *m = NULL;

  int rc = msg_parse(body, size, &rules, &m, err, sizeof err);
  parse_differential(body, size, &rules, rc, m, err);
  if (rc == SO_OK) {
    char *e1 = NULL, *e2 = NULL;
    size_t l1 = 0, l2 = 0;
    struct msg *m2 = NULL;
    check(m != NULL, "no message", NULL);
    rc = msg_encode(m, &e1, &l1, err, sizeof err);
    check(rc == SO_OK, "encode of a parsed message failed", err);
    rc = msg_parse(e1, l1, NULL, &m2, err, sizeof err);
    check(rc == SO_OK, "encoding does not parse", err);
    check_same(m, m2);
    rc = msg_encode(m2, &e2, &l2, err, sizeof err);
    check(rc == SO_OK, "re-encode failed", err);
    check(l1 == l2 && memcmp(e1, e2, l1) == 0, "encoding not stable", e2);
    free(e1);
    free(e2);
    msg_free(m2);
    msg_free(m);
  } else {
    check(m == NULL, "message on failure", NULL);
    check_err(rc, err);
  }
}

/* Most mutations break a message; to exercise the round trip of arbitrary
 * JSON (numbers, escapes, Unicode) the input is also tried as `content`
 * and as one recipient's `vars` of an otherwise valid message. */
static void parse_wrapped(const uint8_t *data, size_t size, const char *pre,
                          const char *post)
{
  size_t lp = strlen(pre), lq = strlen(post);
  char *body = malloc(lp + size + lq);
  if (!body)
    return;
  memcpy(body, pre, lp);
  memcpy(body + lp, data, size);
  memcpy(body + lp + size, post, lq);
  parse_round_trip(body, lp + size + lq);
  free(body);
}

static int same_str(const char *a, const char *b)
{
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* The fast and the json-c recipient line parsers must agree exactly. */
static void recipient_differential(const char *line, size_t len)
{
  char err_fast[MSG_ERR_LEN], err_slow[MSG_ERR_LEN];
  struct msg_recipient f, s;
  int rc_fast =
      msg_parse_recipient_line(line, len, &f, err_fast, sizeof err_fast);
  int rc_slow =
      msg__parse_recipient_line_slow(line, len, &s, err_slow, sizeof err_slow);
  check(rc_fast == rc_slow, "fast/slow status differs", err_slow);
  if (rc_fast == SO_OK) {
    check(same_str(f.id, s.id), "fast/slow id differs", s.id);
    check(same_str(f.address, s.address), "fast/slow address differs",
          s.address);
    check(same_str(f.vars_json, s.vars_json), "fast/slow vars differ",
          s.vars_json);
  } else {
    check(strcmp(err_fast, err_slow) == 0, "fast/slow reason differs",
          err_slow);
    check(f.id == NULL && f.address == NULL && f.vars_json == NULL,
          "recipient filled on failure", NULL);
  }
  msg_recipient_cleanup(&f);
  msg_recipient_cleanup(&s);
}

/* The input as a whole line, and in the places of the values the fast
 * path decodes (address, id) and re-serializes (vars). */
static void recipient_wrapped(const uint8_t *data, size_t size, const char *pre,
                              const char *post)
{
  size_t lp = strlen(pre), lq = strlen(post);
  char *line = malloc(lp + size + lq);
  if (!line)
    return;
  memcpy(line, pre, lp);
  memcpy(line + lp, data, size);
  memcpy(line + lp + size, post, lq);
  recipient_differential(line, lp + size + lq);
  free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *body = (const char *)data;
  char err[MSG_ERR_LEN];
  int rc;

  parse_round_trip(body, size);
  parse_wrapped(data, size,
                "{\"schema\":1,\"campaign_id\":\"c\",\"scheduled_at\":"
                "\"2026-11-27T09:00:00Z\",\"channel\":\"sms\",\"content\":",
                ",\"recipients_url\":\"file:///l\"}");
  parse_wrapped(data, size,
                "{\"schema\":1,\"campaign_id\":\"c\",\"scheduled_at\":"
                "\"2026-11-27T09:00:00Z\",\"channel\":\"sms\",\"content\":{},"
                "\"recipients\":[{\"address\":\"a\",\"vars\":",
                "}]}");

  char id[MSG_CAMPAIGN_ID_MAX + 1];
  if (msg_peek_campaign_id(body, size, id, sizeof id) == SO_OK)
    check(msg_validate_campaign_id(id, NULL, 0) == SO_OK, "peeked a bad id",
          id);

  recipient_differential(body, size);
  recipient_wrapped(data, size, "{\"address\":\"a\",\"vars\":", "}");
  recipient_wrapped(data, size, "{\"id\":\"i\",\"address\":", "}\n");
  recipient_wrapped(data, size, " {\"address\":\"a\",\"id\":", "} ");

  struct msg_recipient r;
  rc = msg_parse_recipient_line(body, size, &r, err, sizeof err);
  if (rc == SO_OK) {
    check(r.id && r.address && r.id[0] && r.address[0], "empty recipient",
          NULL);
    msg_recipient_cleanup(&r);
  } else {
    check(r.id == NULL && r.address == NULL && r.vars_json == NULL,
          "recipient filled on failure", NULL);
    check_err(rc, err);
  }
  return 0;
}
