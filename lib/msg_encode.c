/* msg_encode.c - the canonical JSON of a campaign-due message. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "msg.h"
#include "msg_internal.h"

/* Add `v` (a new reference, may be NULL on allocation failure) to obj. */
static int put(struct json_object *obj, const char *key, struct json_object *v)
{
  if (!v || json_object_object_add(obj, key, v) != 0) {
    json_object_put(v);
    return SO_ERR_NOMEM;
  }
  return SO_OK;
}

/* A NULL string is left out; msg_encode's final check names it. */
static int put_str(struct json_object *obj, const char *key, const char *s)
{
  return s ? put(obj, key, json_object_new_string(s)) : SO_OK;
}

static struct json_object *new_time(int64_t ms)
{
  char buf[CLOCK_RFC3339_LEN];
  if (clock_format_rfc3339(ms, buf, sizeof buf) != SO_OK)
    return NULL;
  return json_object_new_string(buf);
}

/* Parse stored JSON object text back into a tree for encoding. */
static int embed(struct json_object *obj, const char *key, const char *json,
                 const char *code, char *err, size_t errlen)
{
  struct json_object *v;
  char sub[MSG_ERR_LEN];
  if (!json)
    return msg__fail(SO_ERR_INVALID, err, errlen, code, "%s: missing", key);
  int rc = msg__parse_object(json, strlen(json), code, &v, sub, sizeof sub);
  if (rc != SO_OK)
    return msg__fail(rc, err, errlen, code, "%s: %s", key, sub);
  return put(obj, key, v);
}

static int encode_recipients(const struct msg *m, struct json_object *root,
                             char *err, size_t errlen)
{
  struct json_object *arr = json_object_new_array();
  if (put(root, "recipients", arr) != SO_OK)
    return SO_ERR_NOMEM;
  for (size_t i = 0; i < m->n_recipients; i++) {
    const struct msg_recipient *r = &m->recipients[i];
    struct json_object *o = json_object_new_object();
    if (!o || json_object_array_add(arr, o) != 0) {
      json_object_put(o);
      return SO_ERR_NOMEM;
    }
    if (!r->address)
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_RECIPIENT,
                       "recipients[%zu].address: missing", i);
    int rc = put_str(o, "id", r->id ? r->id : r->address);
    if (rc == SO_OK)
      rc = put_str(o, "address", r->address);
    if (rc == SO_OK && r->vars_json)
      rc = embed(o, "vars", r->vars_json, MSG_ERR_BAD_RECIPIENT, err, errlen);
    if (rc != SO_OK)
      return rc;
  }
  return SO_OK;
}

static int build(const struct msg *m, struct json_object *root, char *err,
                 size_t errlen)
{
  int rc = put(root, "schema", json_object_new_int(m->schema));
  if (rc == SO_OK)
    rc = put_str(root, "campaign_id", m->campaign_id);
  if (rc == SO_OK) {
    rc = put(root, "scheduled_at", new_time(m->scheduled_at_ms));
    if (rc != SO_OK)
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_SCHEDULED_AT,
                       "not representable");
  }
  if (rc == SO_OK)
    rc = put_str(root, "channel", m->channel);
  if (rc == SO_OK)
    rc = embed(root, "content", m->content_json, MSG_ERR_BAD_CONTENT, err,
               errlen);
  if (rc == SO_OK && m->recipients)
    rc = encode_recipients(m, root, err, errlen);
  if (rc == SO_OK && m->recipients_url)
    rc = put_str(root, "recipients_url", m->recipients_url);
  if (rc == SO_OK && m->has_not_after) {
    rc = put(root, "not_after", new_time(m->not_after_ms));
    if (rc != SO_OK)
      return msg__fail(SO_ERR_INVALID, err, errlen, MSG_ERR_BAD_NOT_AFTER,
                       "not representable");
  }
  return rc;
}

int msg_encode(const struct msg *m, char **out, size_t *outlen, char *err,
               size_t errlen)
{
  struct json_object *root = json_object_new_object();
  char *text = NULL;
  int rc;

  *out = NULL;
  if (err && errlen)
    err[0] = '\0';
  if (!root)
    return msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_JSON, "no memory");
  rc = build(m, root, err, errlen);
  if (rc == SO_ERR_NOMEM && !(err && errlen && err[0]))
    msg__fail(rc, err, errlen, MSG_ERR_BAD_JSON, "no memory");
  if (rc != SO_OK)
    goto fail;
  size_t len = 0;
  const char *s = json_object_to_json_string_length(
      root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
  if (!s || !(text = malloc(len + 1))) {
    rc = msg__fail(SO_ERR_NOMEM, err, errlen, MSG_ERR_BAD_JSON, "no memory");
    goto fail;
  }
  memcpy(text, s, len + 1);
  /* Only valid messages leave here: the publisher relies on it. */
  struct msg_rules rules = {.max_bytes = len ? len : 1};
  struct msg *check = NULL;
  rc = msg_parse(text, len, &rules, &check, err, errlen);
  msg_free(check);
  if (rc != SO_OK)
    goto fail;
  json_object_put(root);
  *out = text;
  if (outlen)
    *outlen = len;
  return SO_OK;
fail:
  free(text);
  json_object_put(root);
  return rc;
}
