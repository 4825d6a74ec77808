/* mgmt.c - the RabbitMQ management HTTP API client (see mgmt.h). */
#include "mgmt.h"

#include <amqp.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MGMT_MAX_BODY (1024 * 1024) /* a queue object is a few KiB */
#define MGMT_URL_MAX 4096

struct mgmt {
  CURL *curl; /* one handle: keeps the connection alive between passes */
  char *url;  /* base URL without a trailing '/' */
  char *user;
  char *password;
  char *vhost_enc; /* URL-encoded vhost */
  long timeout_ms;
};

struct body {
  char *data;
  size_t len;
  bool too_large;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void scrub_free(char *s)
{
  if (!s)
    return;
  /* volatile so the compiler keeps the wipe of a secret. */
  volatile char *p = s;
  while (*p)
    *p++ = '\0';
  free(s);
}

int mgmt_vhost_from_uri(const char *uri, char *out, size_t outlen)
{
  struct amqp_connection_info ci;
  size_t n = strlen(uri);
  char *buf = malloc(n + 1);
  if (!buf)
    return SO_ERR_NOMEM;
  memcpy(buf, uri, n + 1);
  /* amqp_parse_url decodes the vhost in place, as the broker session
   * does, so both name the same vhost. */
  if (amqp_parse_url(buf, &ci) != AMQP_STATUS_OK) {
    free(buf);
    return SO_ERR_INVALID;
  }
  const char *vhost = ci.vhost && ci.vhost[0] ? ci.vhost : "/";
  int rc = SO_OK;
  if (strlen(vhost) >= outlen)
    rc = SO_ERR_TOO_LARGE;
  else
    snprintf(out, outlen, "%s", vhost);
  free(buf);
  return rc;
}

static char *dup_str(const char *s)
{
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d)
    memcpy(d, s, n + 1);
  return d;
}

int mgmt_open(const struct mgmt_options *o, struct mgmt **out, char *err,
              size_t errlen)
{
  *out = NULL;
  if (!o->url || (strncmp(o->url, "http://", 7) != 0 &&
                  strncmp(o->url, "https://", 8) != 0)) {
    so_errf(err, errlen, "mgmt: url must be http:// or https://");
    return SO_ERR_INVALID;
  }
  if (!o->user || !*o->user) {
    so_errf(err, errlen, "mgmt: no user for the management API");
    return SO_ERR_INVALID;
  }
  if (!o->vhost || !*o->vhost) {
    so_errf(err, errlen, "mgmt: no vhost");
    return SO_ERR_INVALID;
  }
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != CURLE_OK) {
    so_errf(err, errlen, "mgmt: curl_global_init: %s",
            curl_easy_strerror(curl_init_rc));
    return SO_ERR_INTERNAL;
  }
  struct mgmt *m = calloc(1, sizeof(*m));
  if (!m)
    return SO_ERR_NOMEM;
  m->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
  m->url = dup_str(o->url);
  m->user = dup_str(o->user);
  m->password = dup_str(o->password ? o->password : "");
  m->curl = curl_easy_init();
  if (!m->url || !m->user || !m->password || !m->curl)
    goto nomem;
  size_t ul = strlen(m->url);
  while (ul > 0 && m->url[ul - 1] == '/')
    m->url[--ul] = '\0';
  char *enc = curl_easy_escape(m->curl, o->vhost, 0);
  if (!enc)
    goto nomem;
  m->vhost_enc = dup_str(enc);
  curl_free(enc);
  if (!m->vhost_enc)
    goto nomem;
  *out = m;
  return SO_OK;
nomem:
  mgmt_close(m);
  return SO_ERR_NOMEM;
}

void mgmt_close(struct mgmt *m)
{
  if (!m)
    return;
  if (m->curl)
    curl_easy_cleanup(m->curl);
  free(m->url);
  free(m->user);
  scrub_free(m->password);
  free(m->vhost_enc);
  free(m);
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
  struct body *b = userdata;
  size_t n = size * nmemb;
  if (b->len + n > MGMT_MAX_BODY) {
    b->too_large = true;
    return 0; /* aborts the transfer: every response has a size cap */
  }
  char *d = realloc(b->data, b->len + n + 1);
  if (!d)
    return 0;
  memcpy(d + b->len, ptr, n);
  b->len += n;
  d[b->len] = '\0';
  b->data = d;
  return n;
}

/* GET <base>/api/<path> into *body; maps transport and HTTP errors. */
static int http_get(struct mgmt *m, const char *path, struct body *body,
                    char *err, size_t errlen)
{
  char url[MGMT_URL_MAX];
  int n = snprintf(url, sizeof(url), "%s/api/%s", m->url, path);
  if (n < 0 || (size_t)n >= sizeof(url)) {
    so_errf(err, errlen, "mgmt: URL too long");
    return SO_ERR_TOO_LARGE;
  }
  CURL *c = m->curl;
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
  curl_easy_setopt(c, CURLOPT_USERNAME, m->user);
  curl_easy_setopt(c, CURLOPT_PASSWORD, m->password);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, m->timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, m->timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    if (body->too_large) {
      so_errf(err, errlen, "mgmt: GET /api/%s: answer over %d bytes", path,
              MGMT_MAX_BODY);
      return SO_ERR_TOO_LARGE;
    }
    so_errf(err, errlen, "mgmt: GET /api/%s: %s", path, curl_easy_strerror(rc));
    return rc == CURLE_OPERATION_TIMEDOUT ? SO_ERR_TIMEOUT : SO_ERR_UNAVAILABLE;
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code == 200)
    return SO_OK;
  if (code == 401 || code == 403) {
    so_errf(err, errlen,
            "mgmt: management API refused the credentials of user '%s' "
            "(HTTP %ld): the user needs the management (or monitoring) tag, "
            "access to the vhost and the right password",
            m->user, code);
    return SO_ERR_REFUSED;
  }
  if (code == 404) {
    so_errf(err, errlen, "mgmt: GET /api/%s: not found (HTTP 404)", path);
    return SO_ERR_NOTFOUND;
  }
  so_errf(err, errlen, "mgmt: GET /api/%s: HTTP %ld", path, code);
  return code >= 500 ? SO_ERR_UNAVAILABLE : SO_ERR_PROTOCOL;
}

static int64_t json_int_or(json_object *o, const char *key, int64_t dflt)
{
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v) || !v)
    return dflt;
  if (!json_object_is_type(v, json_type_int) &&
      !json_object_is_type(v, json_type_double))
    return dflt;
  return json_object_get_int64(v);
}

int mgmt_queue_get(struct mgmt *m, const char *queue, struct mgmt_queue *out,
                   char *err, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  out->utilisation = -1;
  char *qenc = curl_easy_escape(m->curl, queue, 0);
  if (!qenc)
    return SO_ERR_NOMEM;
  char path[1024];
  int n = snprintf(path, sizeof(path), "queues/%s/%s", m->vhost_enc, qenc);
  curl_free(qenc);
  if (n < 0 || (size_t)n >= sizeof(path)) {
    so_errf(err, errlen, "mgmt: queue name too long");
    return SO_ERR_TOO_LARGE;
  }
  struct body body = {0};
  int rc = http_get(m, path, &body, err, errlen);
  if (rc) {
    free(body.data);
    return rc;
  }
  json_object *j = json_tokener_parse(body.data ? body.data : "");
  free(body.data);
  if (!j || !json_object_is_type(j, json_type_object)) {
    json_object_put(j);
    so_errf(err, errlen, "mgmt: GET /api/%s: not a JSON object", path);
    return SO_ERR_PROTOCOL;
  }
  /* A queue the broker has only just created (or one on a node that is
   * down) may lack the statistics fields: absent counts read as 0. */
  out->ready = json_int_or(j, "messages_ready", 0);
  out->unacked = json_int_or(j, "messages_unacknowledged", 0);
  out->consumers = json_int_or(j, "consumers", 0);
  json_object *v;
  if (json_object_object_get_ex(j, "consumer_utilisation", &v) && v &&
      (json_object_is_type(v, json_type_double) ||
       json_object_is_type(v, json_type_int)))
    out->utilisation = json_object_get_double(v);
  if (json_object_object_get_ex(j, "state", &v) && v &&
      json_object_is_type(v, json_type_string))
    snprintf(out->state, sizeof(out->state), "%s", json_object_get_string(v));
  json_object_put(j);
  return SO_OK;
}
