/* ops_testutil.c - see ops_testutil.h. */
#include "ops_testutil.h"

#include <amqp_tcp_socket.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testenv.h"

extern char **environ;
/* ---- HTTP and the exposition text --------------------------------------- */

struct buf {
  char *p;
  size_t n;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
  struct buf *b = arg;
  size_t len = size * nmemb;
  char *p = realloc(b->p, b->n + len + 1);
  if (!p)
    return 0;
  memcpy(p + b->n, data, len);
  b->p = p;
  b->n += len;
  b->p[b->n] = '\0';
  return len;
}

/* scrape: GET http://127.0.0.1:<port>/metrics (must answer 200). */
char *ops_scrape(int port)
{
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
  struct buf b = {0};
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK || code != 200 || !b.p)
    fail_msg("GET %s: %s, HTTP %ld", url, curl_easy_strerror(rc), code);
  return b.p;
}

/* metric: the value of one sample ("name" or "name{label=\"v\"}"); NAN when
 * absent. */
double ops_metric(const char *text, const char *sample)
{
  char pat[256];
  snprintf(pat, sizeof(pat), "\n%s ", sample);
  const char *p = strstr(text, pat);
  if (!p)
    return NAN;
  return strtod(p + strlen(pat), NULL);
}

long long ops_imetric(const char *text, const char *sample)
{
  double v = ops_metric(text, sample);
  if (isnan(v))
    fail_msg("no sample %s in:\n%s", sample, text);
  return (long long)v;
}

/* check_histogram: the _bucket lines of `name` are cumulative, end in
 * le="+Inf", and that bucket equals _count. Returns _count. */
long long ops_check_histogram(const char *text, const char *name)
{
  char pat[200];
  snprintf(pat, sizeof(pat), "\n%s_bucket{le=\"", name);
  double last = -1, inf = -1;
  int n = 0;
  for (const char *p = text; (p = strstr(p, pat)); p += strlen(pat)) {
    const char *q = strstr(p + strlen(pat), "} ");
    assert_non_null(q);
    double v = strtod(q + 2, NULL);
    if (v < last)
      fail_msg("%s: buckets not cumulative:\n%s", name, text);
    last = v;
    if (strncmp(p + strlen(pat), "+Inf\"", 5) == 0)
      inf = v;
    n++;
  }
  if (n < 2 || inf < 0)
    fail_msg("%s: no buckets or no +Inf bucket:\n%s", name, text);
  char cnt[200];
  snprintf(cnt, sizeof(cnt), "%s_count", name);
  long long count = ops_imetric(text, cnt);
  assert_int_equal((long long)inf, count);
  assert_true(last == inf); /* +Inf is the last and largest */
  return count;
}

/* ---- files --------------------------------------------------------------- */

void ops_spit(const char *path, const char *text)
{
  /* Write then rename, so a reload never reads a half-written file. */
  char tmp[512];
  snprintf(tmp, sizeof(tmp), "%s.new", path);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(rename(tmp, path), 0);
}

/* file_replace: replace the first `from` with `to` in the file. */
void ops_file_replace(const char *path, const char *from, const char *to)
{
  char *s = harness_slurp(path);
  char *at = strstr(s, from);
  if (!at)
    fail_msg("%s: no '%s'", path, from);
  size_t len = strlen(s) - strlen(from) + strlen(to) + 1;
  char *out = malloc(len);
  assert_non_null(out);
  snprintf(out, len, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
  ops_spit(path, out);
  free(out);
  free(s);
}

/* ops_config: the harness config `name` plus `extra` (more sections). */
const char *ops_config(struct harness *h, const char *name,
                       const struct harness_conf *c, const char *extra)
{
  static char path[420];
  snprintf(path, sizeof(path), "%s", harness_config(h, name, c));
  FILE *f = fopen(path, "a");
  assert_non_null(f);
  fputs(extra, f);
  assert_int_equal(fclose(f), 0);
  return path;
}

/* ---- the publisher and the watchdog as child processes ------------------- */

/* spawn: argv with our environment minus SENDONCE_* (the config decides)
 * plus the secrets, stderr and stdout to p->log. */
void ops_spawn(struct harness *h, struct harness_proc *p, const char *name,
               char *const argv[])
{
  snprintf(p->log, sizeof(p->log), "%s/%s.log", h->dir, name);
  char **env = harness_child_env();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0)
      _exit(127);
    dup2(fd, 2);
    dup2(fd, 1);
    execve(argv[0], argv, env);
    _exit(127);
  }
  free(env);
  p->pid = pid;
}

int ops_run_wait(struct harness *h, const char *name, char *const argv[])
{
  struct harness_proc p;
  ops_spawn(h, &p, name, argv);
  int st = 0;
  assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the events queue (rabbitmq-c directly: a queue of our own) -----------
 */

static void amqp_ok(amqp_rpc_reply_t r, const char *what)
{
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    fail_msg("amqp: %s failed (reply type %d)", what, (int)r.reply_type);
}

/* evq_open: a server-named exclusive queue bound to `exchange` with '#',
 * consumed without acks by this connection only. */
void evq_open(struct evq *q, const char *exchange)
{
  char *uri = strdup(testenv_get("SENDONCE_BROKER_URI"));
  assert_non_null(uri);
  struct amqp_connection_info ci;
  assert_int_equal(amqp_parse_url(uri, &ci), AMQP_STATUS_OK);
  q->conn = amqp_new_connection();
  amqp_socket_t *s = amqp_tcp_socket_new(q->conn);
  assert_non_null(s);
  assert_int_equal(amqp_socket_open(s, ci.host, ci.port), AMQP_STATUS_OK);
  amqp_ok(amqp_login(q->conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                     testenv_get("SENDONCE_BROKER_USER"),
                     testenv_get("SENDONCE_BROKER_PASSWORD")),
          "login");
  free(uri);
  amqp_channel_open(q->conn, 1);
  amqp_ok(amqp_get_rpc_reply(q->conn), "channel.open");
  amqp_queue_declare_ok_t *d = amqp_queue_declare(q->conn, 1, amqp_empty_bytes,
                                                  0, 0, 1, 1, amqp_empty_table);
  amqp_ok(amqp_get_rpc_reply(q->conn), "queue.declare");
  snprintf(q->queue, sizeof(q->queue), "%.*s", (int)d->queue.len,
           (const char *)d->queue.bytes);
  amqp_queue_bind(q->conn, 1, amqp_cstring_bytes(q->queue),
                  amqp_cstring_bytes(exchange), amqp_cstring_bytes("#"),
                  amqp_empty_table);
  amqp_ok(amqp_get_rpc_reply(q->conn), "queue.bind");
  amqp_basic_consume(q->conn, 1, amqp_cstring_bytes(q->queue), amqp_empty_bytes,
                     0, 1, 1, amqp_empty_table);
  amqp_ok(amqp_get_rpc_reply(q->conn), "basic.consume");
}

void evq_close(struct evq *q)
{
  amqp_channel_close(q->conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(q->conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(q->conn);
}

static const char *header(const amqp_basic_properties_t *p, const char *key)
{
  static char v[160];
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
    return NULL;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    if (e->key.len == strlen(key) && !memcmp(e->key.bytes, key, e->key.len) &&
        e->value.kind == AMQP_FIELD_KIND_UTF8) {
      snprintf(v, sizeof(v), "%.*s", (int)e->value.value.bytes.len,
               (const char *)e->value.value.bytes.bytes);
      return v;
    }
  }
  return NULL;
}

/* evq_drain: every event that arrives until none has for quiet_ms. */
size_t evq_drain(struct evq *q, struct event_seen *out, size_t max,
                 int quiet_ms)
{
  size_t n = 0;
  for (;;) {
    amqp_envelope_t env;
    struct timeval tv = {.tv_sec = quiet_ms / 1000,
                         .tv_usec = (quiet_ms % 1000) * 1000};
    amqp_maybe_release_buffers(q->conn);
    amqp_rpc_reply_t r = amqp_consume_message(q->conn, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_TIMEOUT)
      return n;
    amqp_ok(r, "consume");
    assert_true(n < max);
    struct event_seen *e = &out[n++];
    snprintf(e->kind, sizeof(e->kind), "%.*s", (int)env.routing_key.len,
             (const char *)env.routing_key.bytes);
    snprintf(e->message_id, sizeof(e->message_id), "%.*s",
             (int)env.message.properties.message_id.len,
             (const char *)env.message.properties.message_id.bytes);
    const char *h = header(&env.message.properties, "x-sendonce-event");
    snprintf(e->header_event, sizeof(e->header_event), "%s", h ? h : "");
    char *body = strndup(env.message.body.bytes, env.message.body.len);
    assert_non_null(body);
    e->body = json_tokener_parse(body);
    if (!e->body)
      fail_msg("event %s: body is not JSON: %s", e->kind, body);
    free(body);
    amqp_destroy_envelope(&env);
  }
}

const char *ops_jstr(json_object *o, const char *k)
{
  json_object *v;
  if (!json_object_object_get_ex(o, k, &v) ||
      !json_object_is_type(v, json_type_string))
    return NULL;
  return json_object_get_string(v);
}

/* jint: an integer member, -1 when absent (never null: absent). */
long long ops_jint(json_object *o, const char *k)
{
  json_object *v;
  if (!json_object_object_get_ex(o, k, &v))
    return -1;
  if (!json_object_is_type(v, json_type_int))
    fail_msg("member %s is not an integer: %s", k,
             json_object_to_json_string(o));
  return json_object_get_int64(v);
}

/* check_common: what every event carries (docs/events.md). */
