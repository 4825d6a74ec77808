/* schedule.c - a campaign-due payload from an operator's files. */
#include "schedule.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "msg.h"
#include "strictjson.h"

int schedule_parse_time(const char *text, int64_t *out_ms)
{
  if (strcmp(text, "now") == 0) {
    *out_ms = clock_now_ms();
    return SO_OK;
  }
  return clock_parse_rfc3339(text, out_ms);
}

/* Read a whole file of at most `cap` bytes into a NUL-terminated buffer.
 * SO_ERR_TOO_LARGE when it is longer: nothing bigger could fit the
 * message anyway, and reading it whole would be the mistake. */
static int read_capped(const char *path, size_t cap, char **out, size_t *len,
                       char *err, size_t errlen)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  int rc;
  if (!f) {
    so_errf(err, errlen, "%s: %s", path, strerror(errno));
    return errno == ENOENT ? SO_ERR_NOTFOUND : SO_ERR_IO;
  }
  if (!(buf = malloc(cap + 2))) {
    rc = SO_ERR_NOMEM;
    goto fail;
  }
  size_t n = fread(buf, 1, cap + 1, f);
  if (ferror(f)) {
    so_errf(err, errlen, "%s: read error", path);
    rc = SO_ERR_IO;
    goto fail;
  }
  if (n > cap) {
    so_errf(err, errlen, "%s: larger than max_message_bytes (%zu bytes)", path,
            cap);
    rc = SO_ERR_TOO_LARGE;
    goto fail;
  }
  buf[n] = '\0';
  fclose(f);
  *out = buf;
  *len = n;
  return SO_OK;
fail:
  free(buf);
  fclose(f);
  return rc;
}

static const char *skip_space(const char *p, const char *end)
{
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    p++;
  return p;
}

/* A JSON array of recipients: checked by the codec itself, by wrapping it
 * in an otherwise valid message, so an inline list follows exactly the
 * consumer's rules (unique ids included). */
static int recipients_from_array(const char *path, const char *text, size_t len,
                                 struct msg **holder, char *err, size_t errlen)
{
  static const char head[] =
      "{\"schema\":1,\"campaign_id\":\"x\",\"scheduled_at\":"
      "\"2000-01-01T00:00:00Z\",\"channel\":\"x\",\"content\":{},"
      "\"recipients\":";
  struct strictjson_result res;
  char sub[MSG_ERR_LEN];
  if (strictjson_check(text, len, MSG_MAX_DEPTH - 1, &res) != SO_OK) {
    so_errf(err, errlen, "%s: not valid JSON at byte %zu: %s", path, res.offset,
            res.reason);
    return SO_ERR_INVALID;
  }
  size_t total = sizeof(head) - 1 + len + 1;
  char *wrapped = malloc(total + 1);
  if (!wrapped)
    return SO_ERR_NOMEM;
  memcpy(wrapped, head, sizeof(head) - 1);
  memcpy(wrapped + sizeof(head) - 1, text, len);
  wrapped[total - 1] = '}';
  wrapped[total] = '\0';
  struct msg_rules rules = {.max_bytes = total};
  int rc = msg_parse(wrapped, total, &rules, holder, sub, sizeof(sub));
  free(wrapped);
  if (rc != SO_OK)
    so_errf(err, errlen, "%s: %s", path, sub);
  return rc == SO_ERR_NOMEM ? rc : (rc ? SO_ERR_INVALID : SO_OK);
}

/* JSON lines: one recipient object per line, blank lines skipped. */
static int recipients_from_lines(const char *path, const char *text, size_t len,
                                 struct msg *m, char *err, size_t errlen)
{
  const char *p = text, *end = text + len;
  size_t cap = 0, lineno = 0;
  char sub[MSG_ERR_LEN];
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *eol = nl ? nl : end;
    lineno++;
    if (skip_space(p, eol) == eol) {
      p = nl ? nl + 1 : end;
      continue;
    }
    if (m->n_recipients == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      struct msg_recipient *grown =
          realloc(m->recipients, ncap * sizeof(*grown));
      if (!grown)
        return SO_ERR_NOMEM;
      m->recipients = grown;
      cap = ncap;
    }
    struct msg_recipient *r = &m->recipients[m->n_recipients];
    int rc =
        msg_parse_recipient_line(p, (size_t)(eol - p), r, sub, sizeof(sub));
    if (rc != SO_OK) {
      so_errf(err, errlen, "%s:%zu: %s", path, lineno, sub);
      return rc == SO_ERR_NOMEM ? rc : SO_ERR_INVALID;
    }
    m->n_recipients++;
    p = nl ? nl + 1 : end;
  }
  return SO_OK;
}

static int read_recipients(const char *path, size_t cap, struct msg *m,
                           struct msg **holder, char *err, size_t errlen)
{
  char *text = NULL;
  size_t len = 0;
  int rc = read_capped(path, cap, &text, &len, err, errlen);
  if (rc == SO_ERR_TOO_LARGE) {
    so_errf(err, errlen,
            "%s: an inline recipient list must fit in one message "
            "(consumer.max_message_bytes = %zu); put big lists behind "
            "--recipients-url (a JSON-lines file or URL the consumers fetch)",
            path, cap);
    return rc;
  }
  if (rc != SO_OK)
    return rc;
  const char *first = skip_space(text, text + len);
  if (first < text + len && *first == '[') {
    rc = recipients_from_array(path, text, len, holder, err, errlen);
    if (rc == SO_OK) {
      m->recipients = (*holder)->recipients;
      m->n_recipients = (*holder)->n_recipients;
    }
  } else {
    rc = recipients_from_lines(path, text, len, m, err, errlen);
  }
  free(text);
  if (rc == SO_OK && m->n_recipients == 0) {
    so_errf(err, errlen, "%s: no recipients", path);
    rc = SO_ERR_INVALID;
  }
  return rc;
}

static void lines_free(struct msg *m)
{
  for (size_t i = 0; i < m->n_recipients; i++)
    msg_recipient_cleanup(&m->recipients[i]);
  free(m->recipients);
}

/* Check the encoded payload exactly as a consumer with this config will. */
static int check_like_consumer(const struct config *cfg, const char *payload,
                               size_t len, bool inline_list, char *err,
                               size_t errlen)
{
  const char *channels[CONFIG_MAX_PROVIDERS];
  char sub[MSG_ERR_LEN];
  for (size_t i = 0; i < cfg->n_providers; i++)
    channels[i] = cfg->providers[i].channel;
  struct msg_rules rules = {
      .max_bytes = cfg->consumer.max_message_bytes,
      .channels = channels,
      .n_channels = cfg->n_providers,
  };
  struct msg *back = NULL;
  int rc = msg_parse(payload, len, &rules, &back, sub, sizeof(sub));
  msg_free(back);
  if (rc == SO_ERR_TOO_LARGE) {
    so_errf(err, errlen,
            "the campaign-due message would be %zu bytes, over "
            "consumer.max_message_bytes (%zu)%s",
            len, cfg->consumer.max_message_bytes,
            inline_list ? "; put big recipient lists behind --recipients-url "
                          "(a JSON-lines file or URL the consumers fetch)"
                        : "");
    return rc;
  }
  if (rc != SO_OK) {
    if (strncmp(sub, MSG_ERR_UNKNOWN_CHANNEL,
                strlen(MSG_ERR_UNKNOWN_CHANNEL)) == 0) {
      size_t used = (size_t)snprintf(err, errlen, "%s (configured:", sub);
      for (size_t i = 0; i < cfg->n_providers && used < errlen; i++)
        used += (size_t)snprintf(err + used, errlen - used, " %s", channels[i]);
      if (used < errlen)
        snprintf(err + used, errlen - used, "%s)",
                 cfg->n_providers ? "" : " none");
    } else {
      so_errf(err, errlen, "%s", sub);
    }
    return rc == SO_ERR_NOMEM ? rc : SO_ERR_INVALID;
  }
  return SO_OK;
}

int schedule_build(const struct schedule_input *in, const struct config *cfg,
                   struct schedule_result *out, char *err, size_t errlen)
{
  struct msg m = {.schema = MSG_SCHEMA_VERSION};
  struct msg *holder = NULL; /* owns an array file's recipients */
  char *content = NULL;
  size_t content_len = 0;
  char sub[MSG_ERR_LEN];
  int rc;

  memset(out, 0, sizeof(*out));
  if ((rc = msg_validate_campaign_id(in->campaign_id, sub, sizeof(sub)))) {
    so_errf(err, errlen, "--id: %s", sub);
    return rc;
  }
  if (!in->recipients_path == !in->recipients_url) {
    so_errf(err, errlen,
            "give exactly one of --recipients and --recipients-url");
    return SO_ERR_INVALID;
  }
  size_t cap = cfg->consumer.max_message_bytes;
  rc = read_capped(in->content_path, cap, &content, &content_len, err, errlen);
  if (rc != SO_OK)
    return rc;
  if (in->recipients_path) {
    rc = read_recipients(in->recipients_path, cap, &m, &holder, err, errlen);
    if (rc != SO_OK)
      goto fail;
  }
  m.campaign_id = (char *)in->campaign_id;
  m.scheduled_at_ms = in->scheduled_at_ms;
  m.channel = (char *)in->channel;
  m.content_json = content;
  m.recipients_url = (char *)in->recipients_url;
  m.has_not_after = in->has_not_after;
  m.not_after_ms = in->not_after_ms;
  rc = msg_encode(&m, &out->payload, &out->payload_len, sub, sizeof(sub));
  if (rc != SO_OK) {
    so_errf(err, errlen, "%s%s", sub,
            strncmp(sub, MSG_ERR_BAD_CONTENT, strlen(MSG_ERR_BAD_CONTENT)) == 0
                ? " (--content must hold one JSON object)"
                : "");
    goto fail;
  }
  rc = check_like_consumer(cfg, out->payload, out->payload_len,
                           in->recipients_path != NULL, err, errlen);
  if (rc != SO_OK)
    goto fail;
  out->n_recipients = m.n_recipients;
  if (holder)
    msg_free(holder);
  else
    lines_free(&m);
  free(content);
  return SO_OK;
fail:
  if (holder)
    msg_free(holder);
  else
    lines_free(&m);
  free(content);
  schedule_result_cleanup(out);
  return rc;
}

void schedule_result_cleanup(struct schedule_result *r)
{
  free(r->payload);
  memset(r, 0, sizeof(*r));
}
