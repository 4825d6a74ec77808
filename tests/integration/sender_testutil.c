/* sender_testutil.c - the sender tests' HTTP server and driver. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "sender_testutil.h"

/* Per-connection upload buffer. */
struct upload {
  char *data;
  size_t len;
};

static char *dup_or_empty(const char *s)
{
  char *d = strdup(s ? s : "");
  assert_non_null(d);
  return d;
}

/* count_key: requests seen so far with this key (caller holds mu). */
static size_t count_key(const struct srv *sv, const char *key)
{
  size_t c = 0;
  for (size_t i = 0; i < sv->n; i++)
    c += strcmp(sv->recs[i].key, key) == 0;
  return c;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
                               const char *url, const char *method,
                               const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
  struct srv *sv = cls;
  struct upload *up = *con_cls;
  (void)url;
  (void)method;
  (void)version;
  if (!up) {
    *con_cls = calloc(1, sizeof(struct upload));
    return *con_cls ? MHD_YES : MHD_NO;
  }
  if (*upload_size) {
    char *p = realloc(up->data, up->len + *upload_size + 1);
    if (!p)
      return MHD_NO;
    memcpy(p + up->len, upload, *upload_size);
    up->data = p;
    up->len += *upload_size;
    up->data[up->len] = '\0';
    *upload_size = 0;
    return MHD_YES;
  }
  const char *key =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
  struct rec r = {dup_or_empty(key),
                  dup_or_empty(up->data),
                  dup_or_empty(MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                           "Authorization")),
                  dup_or_empty(MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                           "User-Agent")),
                  dup_or_empty(MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                           "Content-Type")),
                  clock_monotonic_ms(),
                  200};
  const char *body = "{\"ok\":true}";
  size_t body_len = strlen(body);
  char retry_after[64] = "";
  pthread_mutex_lock(&sv->mu);
  switch (sv->mode) {
    case MODE_OK:
    case MODE_HANG:
      break;
    case MODE_FAIL_UNTIL:
      if (r.t_ms - sv->start_ms < sv->fail_until_ms || sv->n < sv->fail_first)
        r.status = 500;
      break;
    case MODE_429_FIRST:
      if (count_key(sv, r.key) == 0) {
        r.status = 429;
        snprintf(retry_after, sizeof(retry_after), "1");
        if (sv->retry_after_date) {
          time_t at = time(NULL) + 2;
          struct tm tm;
          gmtime_r(&at, &tm);
          strftime(retry_after, sizeof(retry_after),
                   "%a, %d %b %Y %H:%M:%S GMT", &tm);
        }
      }
      break;
    case MODE_STATUS:
      r.status = sv->status;
      body = sv->resp_body;
      body_len = sv->resp_len;
      break;
  }
  enum srv_mode mode = sv->mode;
  if (sv->n == sv->cap) {
    sv->cap = sv->cap ? sv->cap * 2 : 256;
    sv->recs = realloc(sv->recs, sv->cap * sizeof(*sv->recs));
    assert_non_null(sv->recs);
  }
  sv->recs[sv->n++] = r;
  if (++sv->active > sv->max_active)
    sv->max_active = sv->active;
  int latency = sv->latency_ms;
  pthread_mutex_unlock(&sv->mu);

  if (latency > 0)
    clock_sleep_ms(latency, NULL);
  while (mode == MODE_HANG && !atomic_load(&sv->stopping))
    clock_sleep_ms(10, NULL);
  pthread_mutex_lock(&sv->mu);
  sv->active--;
  pthread_mutex_unlock(&sv->mu);
  if (mode == MODE_HANG)
    return MHD_NO; /* server stopping: drop the connection */

  struct MHD_Response *resp = MHD_create_response_from_buffer(
      body_len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
  if (retry_after[0])
    MHD_add_response_header(resp, "Retry-After", retry_after);
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)r.status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
  (void)cls;
  (void)c;
  (void)toe;
  struct upload *up = *con_cls;
  if (up)
    free(up->data);
  free(up);
  *con_cls = NULL;
}

static void notify_conn(void *cls, struct MHD_Connection *c, void **socket_ctx,
                        enum MHD_ConnectionNotificationCode toe)
{
  struct srv *sv = cls;
  (void)c;
  (void)socket_ctx;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    pthread_mutex_lock(&sv->mu);
    sv->connections++;
    pthread_mutex_unlock(&sv->mu);
  }
}

struct srv *srv_start(enum srv_mode mode)
{
  struct srv *sv = calloc(1, sizeof(*sv));
  assert_non_null(sv);
  pthread_mutex_init(&sv->mu, NULL);
  sv->mode = mode;
  sv->start_ms = clock_monotonic_ms();
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  sv->d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
          MHD_USE_ERROR_LOG,
      0, NULL, NULL, handler, sv, MHD_OPTION_SOCK_ADDR, &addr,
      MHD_OPTION_NOTIFY_COMPLETED, completed, sv, MHD_OPTION_NOTIFY_CONNECTION,
      notify_conn, sv, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
  assert_non_null(sv->d);
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
  assert_non_null(info);
  sv->port = info->port;
  assert_true(sv->port > 0);
  return sv;
}

void srv_stop(struct srv *sv)
{
  atomic_store(&sv->stopping, 1);
  MHD_stop_daemon(sv->d);
  for (size_t i = 0; i < sv->n; i++) {
    free(sv->recs[i].key);
    free(sv->recs[i].body);
    free(sv->recs[i].auth);
    free(sv->recs[i].ua);
    free(sv->recs[i].ctype);
  }
  free(sv->recs);
  pthread_mutex_destroy(&sv->mu);
  free(sv);
}

/* ---- sender side -------------------------------------------------------- */

const char *const test_tpl_single =
    "{\"to\":\"{{address}}\",\"ref\":\"{{recipient_id}}\","
    "\"campaign\":\"{{campaign_id}}\",\"name\":\"{{vars.name}}\","
    "\"subject\":\"{{content.subject}}\"}";
const char *const test_tpl_batch =
    "{\"campaign\":\"{{campaign_id}}\",\"messages\":[{{#recipients}}"
    "{\"to\":\"{{address}}\",\"ref\":\"{{recipient_id}}\","
    "\"name\":\"{{vars.name}}\"}{{/recipients}}]}";
const char *const test_content = "{\"subject\":\"Spring \\\"sale\\\"\"}";
const char *const test_secret = "Bearer test-secret-7f3a";

struct config_provider test_provider(int port, const char *tpl)
{
  char url[64];
  char auth[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/send", port);
  snprintf(auth, sizeof(auth), "Authorization: %s", test_secret);
  struct config_provider p = {0};
  p.channel = strdup("email");
  p.url = strdup(url);
  p.method = strdup("POST");
  p.body_template = strdup(tpl);
  p.auth_header = strdup(auth);
  p.timeout_ms = 5000;
  p.concurrency = 4;
  p.rate_per_s = 0;
  p.batch_size = 1;
  p.max_retries = 3;
  p.retry_base_ms = 20;
  return p;
}

void test_provider_free(struct config_provider *p)
{
  free(p->channel);
  free(p->url);
  free(p->method);
  free(p->body_template);
  free(p->auth_header);
}

struct sender *test_new_sender(const struct config_provider *p,
                               const char *campaign)
{
  char err[256] = "";
  struct sender *s = sender_new(p, campaign, test_content, err, sizeof(err));
  if (!s)
    print_error("sender_new: %s\n", err);
  assert_non_null(s);
  return s;
}

/* test_poll_slack_ms: how much later than its timeout sender_poll() may
 * return: scheduling noise, 200 ms; under valgrind, where curl's own CPU
 * work is 50 times slower, set SENDER_TEST_POLL_SLACK_MS. */
int64_t test_poll_slack_ms(void)
{
  const char *v = getenv("SENDER_TEST_POLL_SLACK_MS");
  long n = v ? strtol(v, NULL, 10) : 0;
  return n > 0 ? n : 200;
}

/* test_drive_ex: submit recipients r-0..r-(n-1) as the consumer would (within
 * sender_capacity, or all at once), poll until all are done, and check
 * that each sender_poll() returned within its timeout. Fails after
 * `limit_ms`. */
void test_drive_ex(struct sender *s, size_t n, struct outcomes *out,
                   int poll_ms, int64_t limit_ms, bool all_at_once)
{
  out->r = calloc(n, sizeof(*out->r));
  assert_non_null(out->r);
  out->n = n;
  out->seen = 0;
  size_t next = 0;
  int64_t start = clock_monotonic_ms();
  while (next < n || sender_in_flight(s) > 0) {
    while (next < n && (all_at_once || sender_capacity(s) > 0)) {
      char id[32], addr[64], vars[64];
      snprintf(id, sizeof(id), "r-%zu", next);
      snprintf(addr, sizeof(addr), "r-%zu@example.org", next);
      snprintf(vars, sizeof(vars), "{\"name\":\"N\\\"%zu\"}", next);
      struct sender_recipient r = {id, addr, vars};
      assert_int_equal(sender_submit(s, &r), SO_OK);
      next++;
    }
    struct sender_result res[16];
    size_t k = 99;
    int64_t t0 = clock_monotonic_ms();
    assert_int_equal(sender_poll(s, poll_ms, res, 16, &k), SO_OK);
    int64_t took = clock_monotonic_ms() - t0;
    if (took > poll_ms + test_poll_slack_ms())
      fail_msg("sender_poll(%d ms) took %lld ms", poll_ms, (long long)took);
    assert_true(k <= 16);
    for (size_t i = 0; i < k; i++) {
      size_t idx;
      assert_int_equal(sscanf(res[i].recipient_id, "r-%zu", &idx), 1);
      assert_true(idx < n);
      if (out->r[idx].recipient_id)
        fail_msg("recipient %zu reported twice", idx);
      out->r[idx] = res[i];
      out->seen++;
    }
    if (clock_monotonic_ms() - start > limit_ms)
      fail_msg("not done after %lld ms: %zu of %zu outcomes",
               (long long)limit_ms, out->seen, n);
  }
  assert_int_equal(out->seen, n);
}

void test_drive(struct sender *s, size_t n, struct outcomes *out, int poll_ms,
                int64_t limit_ms)
{
  test_drive_ex(s, n, out, poll_ms, limit_ms, false);
}

void test_outcomes_free(struct outcomes *o)
{
  for (size_t i = 0; i < o->n; i++)
    sender_result_cleanup(&o->r[i]);
  free(o->r);
}

/* srv_recs_for: requests the server saw with `key`. */
size_t srv_recs_for(struct srv *sv, const char *key, size_t *first)
{
  size_t c = 0;
  pthread_mutex_lock(&sv->mu);
  for (size_t i = 0; i < sv->n; i++) {
    if (strcmp(sv->recs[i].key, key) == 0) {
      if (c++ == 0 && first)
        *first = i;
    }
  }
  pthread_mutex_unlock(&sv->mu);
  return c;
}

const char *test_json_str(json_object *o, const char *name)
{
  json_object *v;
  assert_true(json_object_object_get_ex(o, name, &v));
  return json_object_get_string(v);
}
