/* msg_fast.c - msg_parse and msg_parse_recipient_line without json-c, for
 * input that is valid and that msg_scan.c can read with certainty.
 *
 * json-c's tokener switches the locale on every call and builds a tree
 * only to be read once: most of the cost of parsing a trigger or a
 * recipient line. Here the text is checked by strictjson_check, read by
 * msg_scan.c, and held to the same rules with the same functions
 * (msg__check_*) as the json-c path in msg.c. Anything else - every
 * invalid input included - is declined, and the caller takes the json-c
 * path, so error reasons are worded in one place only. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "msg.h"
#include "msg_internal.h"
#include "strictjson.h"

/* Declined: take the json-c path. Never leaves msg_fast.c. */
#define DECLINE SO_ERR_INVALID

static bool is_string(const struct msg__value *v)
{
  return v->p && v->p[0] == '"';
}

static bool is_object(const struct msg__value *v)
{
  return v->p && v->p[0] == '{';
}

/* The bytes of a string value, malloc'd and NUL-terminated; *n gets the
 * length (a \u0000 escape can put a NUL before it). */
static int dup_string(const struct msg__value *v, char **out, size_t *n)
{
  char *s = malloc(v->len); /* the quotes leave room for the NUL */
  if (!s)
    return SO_ERR_NOMEM;
  *n = msg__scan_string(v, s);
  s[*n] = '\0';
  *out = s;
  return SO_OK;
}

/* An object or array value as json-c prints it; malloc'd. */
static int dup_compact(const struct msg__value *v, char **out)
{
  char *s = malloc(v->len + 1);
  if (!s)
    return SO_ERR_NOMEM;
  s[msg__scan_compact(v, s)] = '\0';
  *out = s;
  return SO_OK;
}

static int recipient_string(const struct msg__value *v, size_t max, char **out)
{
  size_t n;
  if (!is_string(v) || dup_string(v, out, &n) != SO_OK)
    return DECLINE;
  if (msg__check_printable(*out, n, max, "", "", NULL, 0) != SO_OK) {
    free(*out);
    *out = NULL;
    return DECLINE;
  }
  return SO_OK;
}

/* parse_recipient of msg.c on the recipient object `obj`. */
static int recipient(const struct msg__value *obj, struct msg_recipient *r)
{
  static const char *const names[] = {"address", "id", "vars"};
  struct msg__value v[3];
  int rc;

  memset(r, 0, sizeof *r);
  if (!is_object(obj) || !msg__scan_object(obj->p, obj->len, names, 3, v))
    return DECLINE;
  if ((v[1].p && !is_string(&v[1])) || (v[2].p && !is_object(&v[2])))
    return DECLINE;
  rc = recipient_string(&v[0], MSG_ADDRESS_MAX, &r->address);
  if (rc == SO_OK && v[1].p)
    rc = recipient_string(&v[1], MSG_RECIPIENT_ID_MAX, &r->id);
  else if (rc == SO_OK && !(r->id = strdup(r->address)))
    rc = SO_ERR_NOMEM;
  if (rc == SO_OK && v[2].p)
    rc = dup_compact(&v[2], &r->vars_json);
  if (rc != SO_OK)
    msg_recipient_cleanup(r);
  return rc;
}

/* Checked text with an object at the root. */
static bool checked_object(const char *text, size_t len)
{
  struct strictjson_result res;
  return text && len <= INT_MAX &&
         strictjson_check(text, len, MSG_MAX_DEPTH, &res) == SO_OK &&
         res.root == '{';
}

int msg__fast_recipient_line(const char *line, size_t len,
                             struct msg_recipient *out)
{
  memset(out, 0, sizeof *out);
  if (len > MSG_RECIPIENT_LINE_MAX || !checked_object(line, len))
    return DECLINE;
  return recipient(&(struct msg__value){line, len}, out);
}

/* parse_time of msg.c: a present RFC 3339 string. */
static int parse_time(const struct msg__value *v, int64_t *out)
{
  char *s;
  size_t n;
  if (!is_string(v) || dup_string(v, &s, &n) != SO_OK)
    return DECLINE;
  int rc =
      strlen(s) == n && clock_parse_rfc3339(s, out) == SO_OK ? SO_OK : DECLINE;
  free(s);
  return rc;
}

static int parse_channel(const struct msg__value *v,
                         const struct msg_rules *rules, struct msg *m)
{
  size_t n;
  if (!is_string(v) || dup_string(v, &m->channel, &n) != SO_OK ||
      msg__check_name(m->channel, n, MSG_CHANNEL_MAX, false, "", NULL, 0))
    return DECLINE;
  if (rules && rules->channels) {
    size_t i = 0;
    while (i < rules->n_channels && strcmp(rules->channels[i], m->channel))
      i++;
    if (i == rules->n_channels)
      return DECLINE;
  }
  return SO_OK;
}

static int parse_recipients(const struct msg__value *list, struct msg *m)
{
  struct msg__iter it;
  struct msg__value elem;
  size_t n = 0;

  if (!list->p || list->p[0] != '[')
    return DECLINE;
  msg__scan_iter(list, &it);
  while (msg__scan_next(&it, &elem))
    n++;
  if (n == 0 || !(m->recipients = calloc(n, sizeof *m->recipients)))
    return DECLINE;
  msg__scan_iter(list, &it);
  while (m->n_recipients < n && msg__scan_next(&it, &elem)) {
    if (recipient(&elem, &m->recipients[m->n_recipients]) != SO_OK)
      return DECLINE; /* msg_free releases the ones already parsed */
    m->n_recipients++;
  }
  if (m->n_recipients != n || msg__check_unique_ids(m, NULL, 0) != SO_OK)
    return DECLINE;
  return SO_OK;
}

/* parse_fields of msg.c. */
static int parse_fields(const struct msg__value *v,
                        const struct msg_rules *rules, struct msg *m)
{
  enum { SCHEMA, ID, AT, CHANNEL, CONTENT, LIST, URL, NOT_AFTER };
  size_t n;

  /* json-c reads the integer 1 only from the text "1". */
  if (!v[SCHEMA].p || v[SCHEMA].len != 1 || v[SCHEMA].p[0] != '1')
    return DECLINE;
  m->schema = MSG_SCHEMA_VERSION;
  if (!is_string(&v[ID]) || dup_string(&v[ID], &m->campaign_id, &n) ||
      msg__check_name(m->campaign_id, n, MSG_CAMPAIGN_ID_MAX, true, "", NULL,
                      0))
    return DECLINE;
  if (parse_time(&v[AT], &m->scheduled_at_ms) != SO_OK ||
      parse_channel(&v[CHANNEL], rules, m) != SO_OK ||
      !is_object(&v[CONTENT]) || dup_compact(&v[CONTENT], &m->content_json))
    return DECLINE;
  if ((v[LIST].p != NULL) == (v[URL].p != NULL))
    return DECLINE;
  if (v[LIST].p && parse_recipients(&v[LIST], m) != SO_OK)
    return DECLINE;
  if (v[URL].p &&
      (!is_string(&v[URL]) || dup_string(&v[URL], &m->recipients_url, &n) ||
       msg__check_url(m->recipients_url, n, NULL, 0)))
    return DECLINE;
  if (v[NOT_AFTER].p) {
    if (parse_time(&v[NOT_AFTER], &m->not_after_ms) != SO_OK ||
        m->not_after_ms <= m->scheduled_at_ms)
      return DECLINE;
    m->has_not_after = true;
  }
  return SO_OK;
}

int msg__fast_parse(const char *body, size_t len, const struct msg_rules *rules,
                    struct msg **out)
{
  static const char *const names[] = {
      "schema",  "campaign_id", "scheduled_at",   "channel",
      "content", "recipients",  "recipients_url", "not_after"};
  size_t max =
      rules && rules->max_bytes ? rules->max_bytes : MSG_DEFAULT_MAX_BYTES;
  struct msg__value v[8];
  struct msg *m;

  *out = NULL;
  if (len > max || !checked_object(body, len) ||
      !msg__scan_object(body, len, names, 8, v))
    return DECLINE;
  if (!(m = calloc(1, sizeof *m)))
    return DECLINE;
  if (parse_fields(v, rules, m) != SO_OK) {
    msg_free(m);
    return DECLINE;
  }
  *out = m;
  return SO_OK;
}
