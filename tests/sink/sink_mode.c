/* sink_mode.c - the sink's answering mode and its JSON form. */
#include "sink_mode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sink_mode_init(struct sink_mode *m)
{
  memset(m, 0, sizeof(*m));
  m->retry_after_s = 1;
}

void sink_mode_cleanup(struct sink_mode *m)
{
  if (m->reject_pattern != NULL) {
    regfree(&m->reject_re);
    free(m->reject_pattern);
    m->reject_pattern = NULL;
  }
}

int sink_mode_set_pattern(struct sink_mode *m, const char *pattern, char *err,
                          size_t errlen)
{
  regex_t re;
  char *copy = NULL;
  if (pattern != NULL) {
    int rc = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char why[128];
      regerror(rc, &re, why, sizeof(why));
      snprintf(err, errlen, "reject pattern: %s", why);
      return -1;
    }
    copy = strdup(pattern);
    if (copy == NULL) {
      regfree(&re);
      snprintf(err, errlen, "reject pattern: out of memory");
      return -1;
    }
  }
  sink_mode_cleanup(m);
  if (copy != NULL) {
    m->reject_pattern = copy;
    m->reject_re = re;
  }
  return 0;
}

static int get_rate(struct json_object *obj, const char *name, double *out,
                    char *err, size_t errlen)
{
  struct json_object *v;
  if (!json_object_object_get_ex(obj, name, &v))
    return 0;
  if (!json_object_is_type(v, json_type_double) &&
      !json_object_is_type(v, json_type_int)) {
    snprintf(err, errlen, "%s: must be a number", name);
    return -1;
  }
  double d = json_object_get_double(v);
  if (!(d >= 0.0 && d <= 1.0)) {
    snprintf(err, errlen, "%s: must be between 0 and 1", name);
    return -1;
  }
  *out = d;
  return 0;
}

static int get_int(struct json_object *obj, const char *name, int64_t *out,
                   int *present, char *err, size_t errlen)
{
  struct json_object *v;
  if (!json_object_object_get_ex(obj, name, &v))
    return 0;
  if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
    snprintf(err, errlen, "%s: must be a non-negative integer", name);
    return -1;
  }
  *out = json_object_get_int64(v);
  if (present != NULL)
    *present = 1;
  return 0;
}

static int get_bool(struct json_object *obj, const char *name, bool *out,
                    char *err, size_t errlen)
{
  struct json_object *v;
  if (!json_object_object_get_ex(obj, name, &v))
    return 0;
  if (!json_object_is_type(v, json_type_boolean)) {
    snprintf(err, errlen, "%s: must be true or false", name);
    return -1;
  }
  *out = json_object_get_boolean(v) != 0;
  return 0;
}

static const char *const known_fields[] = {
    "latency_ms",  "error_rate", "fail_until_ms",      "status_429",
    "retry_after", "hang",       "honour_idempotency", "reject_pattern",
};

int sink_mode_apply_json(struct sink_mode *m, struct json_object *obj,
                         int64_t now_mono, char *err, size_t errlen)
{
  if (!json_object_is_type(obj, json_type_object)) {
    snprintf(err, errlen, "mode: body must be a JSON object");
    return -1;
  }
  /* A typo in a test's mode change must not pass silently. */
  json_object_object_foreach(obj, name, unused)
  {
    (void)unused;
    size_t i = 0;
    size_t n = sizeof(known_fields) / sizeof(known_fields[0]);
    while (i < n && strcmp(known_fields[i], name) != 0)
      i++;
    if (i == n) {
      snprintf(err, errlen, "mode: unknown field %s", name);
      return -1;
    }
  }
  /* Validate everything into a copy first, so a bad field changes nothing. */
  struct sink_mode next = *m;
  int64_t fail_ms = 0;
  int fail_present = 0;
  if (get_int(obj, "latency_ms", &next.latency_ms, NULL, err, errlen) != 0 ||
      get_rate(obj, "error_rate", &next.error_rate, err, errlen) != 0 ||
      get_int(obj, "fail_until_ms", &fail_ms, &fail_present, err, errlen) !=
          0 ||
      get_rate(obj, "status_429", &next.rate_429, err, errlen) != 0 ||
      get_int(obj, "retry_after", &next.retry_after_s, NULL, err, errlen) !=
          0 ||
      get_bool(obj, "hang", &next.hang, err, errlen) != 0 ||
      get_bool(obj, "honour_idempotency", &next.honour, err, errlen) != 0)
    return -1;
  struct json_object *pat;
  if (json_object_object_get_ex(obj, "reject_pattern", &pat)) {
    const char *text = NULL;
    if (json_object_is_type(pat, json_type_string))
      text = json_object_get_string(pat);
    else if (pat != NULL) {
      snprintf(err, errlen, "reject_pattern: must be a string or null");
      return -1;
    }
    if (text != NULL && text[0] == '\0')
      text = NULL;
    /* The pattern is the last thing that can fail; set it on m itself. */
    if (sink_mode_set_pattern(m, text, err, errlen) != 0)
      return -1;
  }
  m->latency_ms = next.latency_ms;
  m->error_rate = next.error_rate;
  m->rate_429 = next.rate_429;
  m->retry_after_s = next.retry_after_s;
  m->hang = next.hang;
  m->honour = next.honour;
  if (fail_present)
    m->fail_until_mono = fail_ms > 0 ? now_mono + fail_ms : 0;
  return 0;
}

struct json_object *sink_mode_to_json(const struct sink_mode *m,
                                      int64_t now_mono)
{
  struct json_object *o = json_object_new_object();
  if (o == NULL)
    return NULL;
  int64_t left = m->fail_until_mono - now_mono;
  json_object_object_add(o, "latency_ms", json_object_new_int64(m->latency_ms));
  json_object_object_add(o, "error_rate",
                         json_object_new_double(m->error_rate));
  json_object_object_add(o, "fail_remaining_ms",
                         json_object_new_int64(left > 0 ? left : 0));
  json_object_object_add(o, "status_429", json_object_new_double(m->rate_429));
  json_object_object_add(o, "retry_after",
                         json_object_new_int64(m->retry_after_s));
  json_object_object_add(o, "hang", json_object_new_boolean(m->hang));
  json_object_object_add(o, "honour_idempotency",
                         json_object_new_boolean(m->honour));
  json_object_object_add(o, "reject_pattern",
                         m->reject_pattern != NULL
                             ? json_object_new_string(m->reject_pattern)
                             : NULL);
  return o;
}

void sink_mode_decide(const struct sink_mode *m, const char *recipient,
                      int64_t now_mono, double roll_500, double roll_429,
                      struct sink_answer *out)
{
  out->retry_after_s = 0;
  if (m->fail_until_mono > 0 && now_mono < m->fail_until_mono) {
    out->status = 500;
    out->reason = "failing on purpose (fail_until)";
  } else if (m->reject_pattern != NULL && recipient != NULL &&
             regexec(&m->reject_re, recipient, 0, NULL, 0) == 0) {
    out->status = 422;
    out->reason = "recipient matches the reject pattern";
  } else if (roll_500 < m->error_rate) {
    out->status = 500;
    out->reason = "failing on purpose (error_rate)";
  } else if (roll_429 < m->rate_429) {
    out->status = 429;
    out->retry_after_s = m->retry_after_s;
    out->reason = "rate limited on purpose";
  } else {
    out->status = 200;
    out->reason = "accepted";
  }
}
