/* msg.c - the campaign-due message codec: parsing and validation (see
 * msg.h for the rules); the encoder is in msg_encode.c. */
#include "msg.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "msg_internal.h"
#include "strictjson.h"

#define SNIPPET_MAX 40 /* bytes of user data quoted in an error */

int msg__fail(int rc, char *err, size_t errlen, const char *code,
              const char *fmt, ...)
{
  if (err && errlen > 0) {
    int n = snprintf(err, errlen, "%s: ", code);
    if (n >= 0 && (size_t)n < errlen) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return rc;
}

/* Quote user bytes for an error as printable ASCII: anything else becomes
 * \xNN, and long values are cut with "...". */
static const char *snippet(const char *s, size_t n, char *buf, size_t buflen)
{
  size_t o = 0;
  for (size_t i = 0; i < n && o + 8 < buflen; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i >= SNIPPET_MAX) {
      memcpy(buf + o, "...", 3);
      o += 3;
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      buf[o++] = (char)c;
    } else {
      snprintf(buf + o, buflen - o, "\\x%02x", c);
      o += 4;
    }
  }
  buf[o] = '\0';
  return buf;
}

static char *dup_len(const char *s, size_t n)
{
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static size_t count_members(struct json_object *v)
{
  size_t n = 0;
  if (json_object_is_type(v, json_type_object)) {
    /* The iterator, not json_object_object_foreach: that macro uses a
     * GNU statement expression outside strict C. */
    struct json_object_iterator it = json_object_iter_begin(v);
    struct json_object_iterator end = json_object_iter_end(v);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
      n += 1 + count_members(json_object_iter_peek_value(&it));
  } else if (json_object_is_type(v, json_type_array)) {
    size_t len = json_object_array_length(v);
    for (size_t i = 0; i < len; i++)
      n += count_members(json_object_array_get_idx(v, i));
  }
  return n;
}

int msg__parse_object(const char *text, size_t len, const char *not_object_code,
                      struct json_object **out, char *err, size_t errlen)
{
  static const char *const codes[] = {
      [STRICTJSON_BAD_UTF8] = MSG_ERR_BAD_UTF8,
      [STRICTJSON_BAD_JSON] = MSG_ERR_BAD_JSON,
      [STRICTJSON_TOO_DEEP] = MSG_ERR_TOO_DEEP,
      [STRICTJSON_TRAILING] = MSG_ERR_TRAILING_DATA,
  };
  struct strictjson_result res;

  *out = NULL;
  if (len > INT_MAX)
    return msg__fail(SO_ERR_TOO_LARGE, err, errlen, MSG_ERR_TOO_LARGE,
                     "%zu bytes", len);
  if (strictjson_check(text, len, MSG_MAX_DEPTH, &res) != SO_OK)
    return msg__fail(SO_ERR_INVALID, err, errlen, codes[res.error],
                     "%s at offset %zu", res.reason, res.offset);
  if (res.root != '{')
    return msg__fail(SO_ERR_INVALID, err, errlen, not_object_code,
                     "the JSON value is not an object");

  struct json_tokener *tok = json_tokener_new_ex(MSG_MAX_DEPTH + 1);
  if (!tok)
    return msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_JSON, "no memory");
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
  struct json_object *root = json_tokener_parse_ex(tok, text, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  json_tokener_free(tok);
  /* The strict check passed, so json-c failing here is unexpected. */
  if (!root || jerr != json_tokener_success) {
    json_object_put(root);
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_JSON, "%s",
                     json_tokener_error_desc(jerr));
  }
  /* json-c keeps one of repeated keys: fewer members than the text has
   * means some object repeated a key. */
  size_t kept = count_members(root);
  if (kept != res.n_members) {
    json_object_put(root);
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_DUPLICATE_KEY,
                     "%zu members in the text, %zu distinct", res.n_members,
                     kept);
  }
  *out = root;
  return SO_OK;
}

/* Charset rules of campaign ids and channel names. */
int msg__check_name(const char *s, size_t n, size_t max, bool allow_colon,
                    const char *code, char *err, size_t errlen)
{
  char q[64];
  if (n == 0)
    return msg__fail(SO_ERR_INVALID, err, errlen, code, "empty");
  if (n > max)
    return msg__fail(SO_ERR_INVALID, err, errlen, code,
                     "%zu bytes, at most %zu allowed", n, max);
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
        (c == ':' && allow_colon))
      continue;
    return msg__fail(SO_ERR_INVALID, err, errlen, code,
                     "contains '%s' at offset %zu",
                     snippet(&s[i], 1, q, sizeof q), i);
  }
  return SO_OK;
}

int msg_validate_campaign_id(const char *id, char *err, size_t errlen)
{
  if (!id)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_CAMPAIGN_ID,
                     "missing");
  return msg__check_name(id, strlen(id), MSG_CAMPAIGN_ID_MAX, true,
                         MSG_ERR_BAD_CAMPAIGN_ID, err, errlen);
}

/* Recipient ids and addresses: 1..max bytes, no C0, DEL or C1 control
 * characters (they would end up in HTTP headers and logs). UTF-8 validity
 * was checked on the whole text. */
int msg__check_printable(const char *s, size_t n, size_t max, const char *where,
                         const char *field, char *err, size_t errlen)
{
  if (n == 0)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENT,
                     "%s%s: empty", where, field);
  if (n > max)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENT,
                     "%s%s: %zu bytes, at most %zu allowed", where, field, n,
                     max);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    bool c1 = c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
              (unsigned char)s[i + 1] <= 0x9f;
    if (c < 0x20 || c == 0x7f || c1)
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENT,
                       "%s%s: control character at offset %zu", where, field,
                       i);
  }
  return SO_OK;
}

/* An optional member of `obj` of JSON type `type`: SO_OK with *out set,
 * SO_ERR_NOTFOUND if absent, SO_ERR_INVALID if present with another type. */
static int member(struct json_object *obj, const char *key, enum json_type type,
                  struct json_object **out)
{
  if (!json_object_object_get_ex(obj, key, out))
    return SO_ERR_NOTFOUND;
  return json_object_is_type(*out, type) ? SO_OK : SO_ERR_INVALID;
}

static const char *type_name(struct json_object *v)
{
  return json_type_to_name(json_object_get_type(v));
}

/* Parse the recipient object `obj` into r; `where` prefixes details
 * ("recipients[3]." or ""). */
static int parse_recipient(struct json_object *obj, const char *where,
                           struct msg_recipient *r, char *err, size_t errlen)
{
  struct json_object *v;
  int rc;

  memset(r, 0, sizeof *r);
  if (!json_object_is_type(obj, json_type_object))
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENT,
                     "%snot an object but %s", where, type_name(obj));
  rc = member(obj, "address", json_type_string, &v);
  if (rc != SO_OK)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENT,
                     "%saddress: %s", where,
                     rc == SO_ERR_NOTFOUND ? "missing" : "not a string");
  const char *addr = json_object_get_string(v);
  size_t addr_len = (size_t)json_object_get_string_len(v);
  rc = msg__check_printable(addr, addr_len, MSG_ADDRESS_MAX, where, "address",
                            err, errlen);
  if (rc != SO_OK)
    return rc;
  const char *id = addr;
  size_t id_len = addr_len;
  rc = member(obj, "id", json_type_string, &v);
  if (rc == SO_ERR_INVALID)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENT,
                     "%sid: not a string", where);
  if (rc == SO_OK) {
    id = json_object_get_string(v);
    id_len = (size_t)json_object_get_string_len(v);
    rc = msg__check_printable(id, id_len, MSG_RECIPIENT_ID_MAX, where, "id",
                              err, errlen);
    if (rc != SO_OK)
      return rc;
  }
  rc = member(obj, "vars", json_type_object, &v);
  if (rc == SO_ERR_INVALID)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENT,
                     "%svars: not an object", where);
  r->address = dup_len(addr, addr_len);
  r->id = dup_len(id, id_len);
  if (rc == SO_OK)
    r->vars_json = strdup(json_object_to_json_string_ext(
        v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  if (!r->address || !r->id || (rc == SO_OK && !r->vars_json)) {
    msg_recipient_cleanup(r);
    return msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_RECIPIENT,
                     "no memory");
  }
  return SO_OK;
}

static int cmp_recipient_id(const void *a, const void *b)
{
  const struct msg_recipient *const *x = a, *const *y = b;
  return strcmp((*x)->id, (*y)->id);
}

/* Inline recipients must have distinct ids: the delivery ledger is keyed
 * by (campaign, recipient id), so a repeated id would silently be skipped. */
int msg__check_unique_ids(const struct msg *m, char *err, size_t errlen)
{
  const struct msg_recipient **sorted =
      malloc(m->n_recipients * sizeof *sorted);
  char q[SNIPPET_MAX * 4 + 8];
  int rc = SO_OK;

  if (!sorted)
    return msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_RECIPIENTS,
                     "no memory");
  for (size_t i = 0; i < m->n_recipients; i++)
    sorted[i] = &m->recipients[i];
  qsort(sorted, m->n_recipients, sizeof *sorted, cmp_recipient_id);
  for (size_t i = 1; i < m->n_recipients; i++) {
    if (strcmp(sorted[i - 1]->id, sorted[i]->id) == 0) {
      rc = msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_DUPLICATE_RECIPIENT,
                     "id '%s' at recipients[%zu] and recipients[%zu]",
                     snippet(sorted[i]->id, strlen(sorted[i]->id), q, sizeof q),
                     (size_t)(sorted[i - 1] - m->recipients),
                     (size_t)(sorted[i] - m->recipients));
      break;
    }
  }
  free(sorted);
  return rc;
}

static int parse_recipients(struct json_object *arr, struct msg *m, char *err,
                            size_t errlen)
{
  size_t n = json_object_array_length(arr);
  char where[48];

  if (n == 0)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENTS,
                     "empty array");
  m->recipients = calloc(n, sizeof *m->recipients);
  if (!m->recipients)
    return msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_RECIPIENTS,
                     "no memory");
  for (size_t i = 0; i < n; i++) {
    snprintf(where, sizeof where, "recipients[%zu].", i);
    int rc = parse_recipient(json_object_array_get_idx(arr, i), where,
                             &m->recipients[i], err, errlen);
    if (rc != SO_OK)
      return rc; /* msg_free releases the ones already parsed */
    m->n_recipients = i + 1;
  }
  return msg__check_unique_ids(m, err, errlen);
}

int msg__check_url(const char *s, size_t n, char *err, size_t errlen)
{
  static const char *const schemes[] = {"file://", "http://", "https://"};
  if (n == 0 || n > MSG_URL_MAX)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENTS_URL,
                     "%zu bytes, 1..%d allowed", n, MSG_URL_MAX);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c == 0x7f)
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENTS_URL,
                       "space or control character at offset %zu", i);
  }
  for (size_t k = 0; k < sizeof schemes / sizeof schemes[0]; k++) {
    size_t sl = strlen(schemes[k]);
    if (n < sl || strncasecmp(s, schemes[k], sl) != 0)
      continue;
    const char *rest = s + sl;
    size_t rest_len = n - sl;
    /* file: an absolute path, optionally after "localhost"; http(s): a
     * host before any path. */
    if (k == 0 && (rest_len > 0 && rest[0] == '/'))
      return SO_OK;
    if (k == 0 && rest_len > 10 && strncasecmp(rest, "localhost/", 10) == 0)
      return SO_OK;
    if (k > 0 && rest_len > 0 && rest[0] != '/' && rest[0] != '?' &&
        rest[0] != '#')
      return SO_OK;
    return msg__fail(
        SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENTS_URL,
        k == 0 ? "file URL without an absolute path" : "URL without a host");
  }
  return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENTS_URL,
                   "scheme must be file, http or https");
}

/* A required or optional RFC 3339 string member. */
static int parse_time(struct json_object *root, const char *key,
                      const char *code, int64_t *out, char *err, size_t errlen)
{
  struct json_object *v;
  char q[SNIPPET_MAX * 4 + 8];
  int rc = member(root, key, json_type_string, &v);
  if (rc == SO_ERR_NOTFOUND)
    return rc;
  if (rc != SO_OK)
    return msg__fail(SO_ERR_INVALID, err, errlen, code, "not a string but %s",
                     type_name(v));
  const char *s = json_object_get_string(v);
  size_t n = (size_t)json_object_get_string_len(v);
  if (strlen(s) != n || clock_parse_rfc3339(s, out) != SO_OK)
    return msg__fail(SO_ERR_INVALID, err, errlen, code, "'%s' is not RFC 3339",
                     snippet(s, n, q, sizeof q));
  return SO_OK;
}

static int parse_channel(struct json_object *root,
                         const struct msg_rules *rules, struct msg *m,
                         char *err, size_t errlen)
{
  struct json_object *v;
  char q[SNIPPET_MAX * 4 + 8];
  int rc = member(root, "channel", json_type_string, &v);
  if (rc != SO_OK)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_CHANNEL, "%s",
                     rc == SO_ERR_NOTFOUND ? "missing" : "not a string");
  const char *s = json_object_get_string(v);
  size_t n = (size_t)json_object_get_string_len(v);
  rc = msg__check_name(s, n, MSG_CHANNEL_MAX, false, MSG_ERR_BAD_CHANNEL, err,
                       errlen);
  if (rc != SO_OK)
    return rc;
  if (rules && rules->channels) {
    size_t i = 0;
    while (i < rules->n_channels && strcmp(rules->channels[i], s) != 0)
      i++;
    if (i == rules->n_channels)
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_UNKNOWN_CHANNEL,
                       "'%s' is not configured", snippet(s, n, q, sizeof q));
  }
  m->channel = dup_len(s, n);
  return m->channel ? SO_OK
                    : msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_CHANNEL,
                                "no memory");
}

static int parse_fields(struct json_object *root, const struct msg_rules *rules,
                        struct msg *m, char *err, size_t errlen)
{
  struct json_object *v, *list, *url;
  int rc;

  rc = member(root, "schema", json_type_int, &v);
  if (rc != SO_OK)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_SCHEMA, "%s",
                     rc == SO_ERR_NOTFOUND ? "missing" : "not an integer");
  int64_t schema = json_object_get_int64(v);
  if (schema != MSG_SCHEMA_VERSION)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_UNSUPPORTED_SCHEMA,
                     "schema %s, this program reads %d",
                     json_object_to_json_string(v), MSG_SCHEMA_VERSION);
  m->schema = MSG_SCHEMA_VERSION;

  rc = member(root, "campaign_id", json_type_string, &v);
  if (rc != SO_OK)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_CAMPAIGN_ID, "%s",
                     rc == SO_ERR_NOTFOUND ? "missing" : "not a string");
  const char *id = json_object_get_string(v);
  size_t id_len = (size_t)json_object_get_string_len(v);
  rc = msg__check_name(id, id_len, MSG_CAMPAIGN_ID_MAX, true,
                       MSG_ERR_BAD_CAMPAIGN_ID, err, errlen);
  if (rc != SO_OK)
    return rc;
  if (!(m->campaign_id = dup_len(id, id_len)))
    return msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_CAMPAIGN_ID,
                     "no memory");

  rc = parse_time(root, "scheduled_at", MSG_ERR_BAD_SCHEDULED_AT,
                  &m->scheduled_at_ms, err, errlen);
  if (rc == SO_ERR_NOTFOUND)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_SCHEDULED_AT,
                     "missing");
  if (rc != SO_OK)
    return rc;

  if ((rc = parse_channel(root, rules, m, err, errlen)) != SO_OK)
    return rc;

  rc = member(root, "content", json_type_object, &v);
  if (rc != SO_OK)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_CONTENT, "%s",
                     rc == SO_ERR_NOTFOUND ? "missing" : "not an object");
  m->content_json = strdup(json_object_to_json_string_ext(
      v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  if (!m->content_json)
    return msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_CONTENT,
                     "no memory");

  bool has_list = json_object_object_get_ex(root, "recipients", &list);
  bool has_url = json_object_object_get_ex(root, "recipients_url", &url);
  if (has_list && has_url)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_RECIPIENTS_BOTH,
                     "give recipients or recipients_url, not both");
  if (!has_list && !has_url)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_RECIPIENTS_MISSING,
                     "give recipients or recipients_url");
  if (has_list) {
    if (!json_object_is_type(list, json_type_array))
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENTS,
                       "not an array but %s", type_name(list));
    if ((rc = parse_recipients(list, m, err, errlen)) != SO_OK)
      return rc;
  } else {
    if (!json_object_is_type(url, json_type_string))
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENTS_URL,
                       "not a string but %s", type_name(url));
    const char *s = json_object_get_string(url);
    size_t n = (size_t)json_object_get_string_len(url);
    if ((rc = msg__check_url(s, n, err, errlen)) != SO_OK)
      return rc;
    if (!(m->recipients_url = dup_len(s, n)))
      return msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_RECIPIENTS_URL,
                       "no memory");
  }

  rc = parse_time(root, "not_after", MSG_ERR_BAD_NOT_AFTER, &m->not_after_ms,
                  err, errlen);
  if (rc == SO_OK) {
    m->has_not_after = true;
    if (m->not_after_ms <= m->scheduled_at_ms)
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_NOT_AFTER_ORDER,
                       "not_after is not later than scheduled_at");
  } else if (rc != SO_ERR_NOTFOUND) {
    return rc;
  }
  return SO_OK;
}

int msg__parse_slow(const char *body, size_t len, const struct msg_rules *rules,
                    struct msg **out, char *err, size_t errlen)
{
  size_t max =
      rules && rules->max_bytes ? rules->max_bytes : MSG_DEFAULT_MAX_BYTES;
  struct json_object *root = NULL;
  struct msg *m = NULL;
  int rc;

  *out = NULL;
  if (err && errlen)
    err[0] = '\0';
  if (len > max)
    return msg__fail(SO_ERR_TOO_LARGE, err, errlen, MSG_ERR_TOO_LARGE,
                     "%zu bytes, at most %zu allowed", len, max);
  if (!body)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_JSON, "no body");
  rc = msg__parse_object(body, len, MSG_ERR_NOT_OBJECT, &root, err, errlen);
  if (rc != SO_OK)
    goto fail;
  if (!(m = calloc(1, sizeof *m))) {
    rc = msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_JSON, "no memory");
    goto fail;
  }
  rc = parse_fields(root, rules, m, err, errlen);
  if (rc != SO_OK)
    goto fail;
  json_object_put(root);
  *out = m;
  return SO_OK;
fail:
  msg_free(m);
  json_object_put(root);
  return rc;
}

int msg_parse(const char *body, size_t len, const struct msg_rules *rules,
              struct msg **out, char *err, size_t errlen)
{
  /* Valid messages take the fast path (msg_fast.c); whatever it declines,
   * every invalid message included, the json-c path, which also words
   * the error. */
  if (msg__fast_parse(body, len, rules, out) == SO_OK) {
    if (err && errlen)
      err[0] = '\0';
    return SO_OK;
  }
  return msg__parse_slow(body, len, rules, out, err, errlen);
}

int msg__parse_recipient_line_slow(const char *line, size_t len,
                                   struct msg_recipient *out, char *err,
                                   size_t errlen)
{
  struct json_object *root = NULL;
  int rc;

  memset(out, 0, sizeof *out);
  if (err && errlen)
    err[0] = '\0';
  if (len > MSG_RECIPIENT_LINE_MAX)
    return msg__fail(SO_ERR_TOO_LARGE, err, errlen, MSG_ERR_TOO_LARGE,
                     "%zu bytes, at most %d allowed", len,
                     MSG_RECIPIENT_LINE_MAX);
  if (!line)
    return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_JSON, "no line");
  rc = msg__parse_object(line, len, MSG_ERR_BAD_RECIPIENT, &root, err, errlen);
  if (rc == SO_OK)
    rc = parse_recipient(root, "", out, err, errlen);
  json_object_put(root);
  return rc;
}

int msg_parse_recipient_line(const char *line, size_t len,
                             struct msg_recipient *out, char *err,
                             size_t errlen)
{
  /* Valid lines take the fast path; anything it is not sure about, and
   * every invalid line, the json-c path, which also words the error. */
  if (msg__fast_recipient_line(line, len, out) == SO_OK) {
    if (err && errlen)
      err[0] = '\0';
    return SO_OK;
  }
  return msg__parse_recipient_line_slow(line, len, out, err, errlen);
}

void msg_recipient_cleanup(struct msg_recipient *r)
{
  if (!r)
    return;
  free(r->id);
  free(r->address);
  free(r->vars_json);
  memset(r, 0, sizeof *r);
}

void msg_free(struct msg *m)
{
  if (!m)
    return;
  free(m->campaign_id);
  free(m->channel);
  free(m->content_json);
  for (size_t i = 0; i < m->n_recipients; i++)
    msg_recipient_cleanup(&m->recipients[i]);
  free(m->recipients);
  free(m->recipients_url);
  free(m);
}

/* Tolerant scan for a top-level "campaign_id": "..." in text that may not
 * be valid JSON or UTF-8. Tracks strings and nesting only. */
static int peek_scan(const char *body, size_t len, const char **id,
                     size_t *id_len)
{
  static const char key[] = "\"campaign_id\"";
  const size_t key_len = sizeof key - 1;
  int depth = 0;
  size_t i = 0;

  while (i < len) {
    char c = body[i];
    if (c == '{' || c == '[') {
      depth++;
      i++;
    } else if (c == '}' || c == ']') {
      depth--;
      i++;
    } else if (c != '"') {
      i++;
    } else if (depth == 1 && len - i >= key_len &&
               memcmp(body + i, key, key_len) == 0) {
      size_t j = i + key_len;
      while (j < len && strchr(" \t\r\n", body[j]) && body[j])
        j++;
      if (j < len && body[j] == ':') {
        j++;
        while (j < len && strchr(" \t\r\n", body[j]) && body[j])
          j++;
        if (j < len && body[j] == '"') {
          size_t start = ++j;
          while (j < len && body[j] != '"' && body[j] != '\\')
            j++;
          if (j < len && body[j] == '"') {
            *id = body + start;
            *id_len = j - start;
            return SO_OK;
          }
        }
      }
      i += key_len;
    } else {
      /* Skip any other string, honouring escapes. */
      for (i++; i < len && body[i] != '"'; i++)
        if (body[i] == '\\')
          i++;
      i++;
    }
  }
  return SO_ERR_NOTFOUND;
}

int msg_peek_campaign_id(const char *body, size_t len, char *out, size_t outlen)
{
  struct json_object *root = NULL, *v;
  const char *id = NULL;
  size_t id_len = 0;
  char scratch[MSG_ERR_LEN];
  int rc = SO_ERR_NOTFOUND;

  if (!body || !out)
    return SO_ERR_NOTFOUND;
  /* Valid JSON: ask json-c (escapes and all). Otherwise scan. */
  if (len <= INT_MAX && msg__parse_object(body, len, MSG_ERR_NOT_OBJECT, &root,
                                          scratch, sizeof scratch) == SO_OK) {
    if (member(root, "campaign_id", json_type_string, &v) == SO_OK) {
      id = json_object_get_string(v);
      id_len = (size_t)json_object_get_string_len(v);
    }
  } else if (peek_scan(body, len, &id, &id_len) != SO_OK) {
    id = NULL;
  }
  if (id && msg__check_name(id, id_len, MSG_CAMPAIGN_ID_MAX, true,
                            MSG_ERR_BAD_CAMPAIGN_ID, NULL, 0) == SO_OK) {
    if (outlen > id_len) {
      memcpy(out, id, id_len);
      out[id_len] = '\0';
      rc = SO_OK;
    } else {
      rc = SO_ERR_TOO_LARGE;
    }
  }
  json_object_put(root);
  return rc;
}
