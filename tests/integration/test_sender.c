/* test_sender.c - the provider sender against a real HTTP server.
 *
 * The server is a small libmicrohttpd daemon on 127.0.0.1 started by this
 * test (thread per connection), which records every request (its
 * Idempotency-Key, body, headers and arrival time) and answers according
 * to a mode: ok, fail (500) for a while, 429 with Retry-After on the first
 * request of each key, a fixed status, or hang.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "sender.h"

enum mode {
  MODE_OK,
  MODE_FAIL_UNTIL, /* 500 until fail_until_ms after start, then 200 */
  MODE_429_FIRST,  /* first request per key: 429 + Retry-After: 1 */
  MODE_STATUS,     /* always `status` with `resp_body` */
  MODE_HANG,       /* never answer (until the server stops) */
};

struct rec {
  char *key;
  char *body;
  char *auth;
  char *ua;
  char *ctype;
  int64_t t_ms;
  int status;
};

struct srv {
  struct MHD_Daemon *d;
  int port;
  pthread_mutex_t mu;
  struct rec *recs;
  size_t n, cap;
  enum mode mode;
  int64_t start_ms;
  int fail_until_ms;
  int status;
  const char *resp_body;
  size_t resp_len;
  int latency_ms;
  int active, max_active, connections;
  atomic_int stopping;
};

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
  bool retry_after = false;
  pthread_mutex_lock(&sv->mu);
  switch (sv->mode) {
    case MODE_OK:
    case MODE_HANG:
      break;
    case MODE_FAIL_UNTIL:
      if (r.t_ms - sv->start_ms < sv->fail_until_ms)
        r.status = 500;
      break;
    case MODE_429_FIRST:
      if (count_key(sv, r.key) == 0) {
        r.status = 429;
        retry_after = true;
      }
      break;
    case MODE_STATUS:
      r.status = sv->status;
      body = sv->resp_body;
      body_len = sv->resp_len;
      break;
  }
  enum mode mode = sv->mode;
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
  if (retry_after)
    MHD_add_response_header(resp, "Retry-After", "1");
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

static struct srv *srv_start(enum mode mode)
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

static void srv_stop(struct srv *sv)
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

static const char *const tpl_single =
    "{\"to\":\"{{address}}\",\"ref\":\"{{recipient_id}}\","
    "\"campaign\":\"{{campaign_id}}\",\"name\":\"{{vars.name}}\","
    "\"subject\":\"{{content.subject}}\"}";
static const char *const tpl_batch =
    "{\"campaign\":\"{{campaign_id}}\",\"messages\":[{{#recipients}}"
    "{\"to\":\"{{address}}\",\"ref\":\"{{recipient_id}}\","
    "\"name\":\"{{vars.name}}\"}{{/recipients}}]}";
static const char *const content = "{\"subject\":\"Spring \\\"sale\\\"\"}";
static const char *const secret = "Bearer test-secret-7f3a";

static struct config_provider provider(int port, const char *tpl)
{
  char url[64];
  char auth[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/send", port);
  snprintf(auth, sizeof(auth), "Authorization: %s", secret);
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

static void provider_free(struct config_provider *p)
{
  free(p->channel);
  free(p->url);
  free(p->method);
  free(p->body_template);
  free(p->auth_header);
}

static struct sender *new_sender(const struct config_provider *p,
                                 const char *campaign)
{
  char err[256] = "";
  struct sender *s = sender_new(p, campaign, content, err, sizeof(err));
  if (!s)
    print_error("sender_new: %s\n", err);
  assert_non_null(s);
  return s;
}

/* Outcomes collected by drive(), indexed by recipient number. */
struct outcomes {
  struct sender_result *r; /* r[i] for recipient "r-<i>" */
  size_t n;
  size_t seen;
};

/* poll_slack_ms: how much later than its timeout sender_poll() may
 * return: scheduling noise, 200 ms; under valgrind, where curl's own CPU
 * work is 50 times slower, set SENDER_TEST_POLL_SLACK_MS. */
static int64_t poll_slack_ms(void)
{
  const char *v = getenv("SENDER_TEST_POLL_SLACK_MS");
  long n = v ? strtol(v, NULL, 10) : 0;
  return n > 0 ? n : 200;
}

/* drive_ex: submit recipients r-0..r-(n-1) as the consumer would (within
 * sender_capacity, or all at once), poll until all are done, and check
 * that each sender_poll() returned within its timeout. Fails after
 * `limit_ms`. */
static void drive_ex(struct sender *s, size_t n, struct outcomes *out,
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
    if (took > poll_ms + poll_slack_ms())
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

static void drive(struct sender *s, size_t n, struct outcomes *out, int poll_ms,
                  int64_t limit_ms)
{
  drive_ex(s, n, out, poll_ms, limit_ms, false);
}

static void outcomes_free(struct outcomes *o)
{
  for (size_t i = 0; i < o->n; i++)
    sender_result_cleanup(&o->r[i]);
  free(o->r);
}

/* recs_for: requests the server saw with `key`. */
static size_t recs_for(struct srv *sv, const char *key, size_t *first)
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

static const char *json_str(json_object *o, const char *name)
{
  json_object *v;
  assert_true(json_object_object_get_ex(o, name, &v));
  return json_object_get_string(v);
}

/* ---- cases ----------------------------------------------------------------
 */

/* 1,000 recipients at concurrency 16: each SENT once, each request carries
 * its own key, the rendered body, the headers; connections are reused. */
static void test_thousand_sent_once(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_OK);
  sv->latency_ms = 2;
  struct config_provider p = provider(sv->port, tpl_single);
  p.concurrency = 16;
  struct sender *s = new_sender(&p, "camp-1000");
  struct outcomes o;
  drive(s, 1000, &o, 100, 60000);
  for (size_t i = 0; i < 1000; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
    assert_int_equal(o.r[i].http_status, 200);
    assert_int_equal(o.r[i].attempts, 1);
  }
  assert_int_equal(sv->n, 1000);
  for (size_t i = 0; i < 1000; i++) {
    char key[64], addr[64], name[32];
    snprintf(key, sizeof(key), "camp-1000:r-%zu", i);
    snprintf(addr, sizeof(addr), "r-%zu@example.org", i);
    snprintf(name, sizeof(name), "N\"%zu", i);
    size_t at = 0;
    assert_int_equal(recs_for(sv, key, &at), 1);
    json_object *body = json_tokener_parse(sv->recs[at].body);
    assert_non_null(body);
    assert_string_equal(json_str(body, "to"), addr);
    assert_string_equal(json_str(body, "campaign"), "camp-1000");
    assert_string_equal(json_str(body, "name"), name);
    assert_string_equal(json_str(body, "subject"), "Spring \"sale\"");
    json_object_put(body);
    assert_string_equal(sv->recs[at].auth, secret);
    assert_string_equal(sv->recs[at].ctype, "application/json");
    assert_memory_equal(sv->recs[at].ua, "sendonce/", 9);
  }
  /* the cap holds, and it is used */
  assert_true(sv->max_active <= 16);
  assert_true(sv->max_active >= 4);
  /* keep-alive: a pool of connections, not one per request */
  if (sv->connections > 16)
    fail_msg("%d connections for 1000 requests", sv->connections);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_int_equal(st.requests, 1000);
  assert_int_equal(st.retries, 0);
  assert_int_equal(st.sent, 1000);
  assert_int_equal(sender_in_flight(s), 0);
  outcomes_free(&o);
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

/* 500s for 400 ms, then recovery: all SENT; every retry repeats the key
 * and the body; exactly one request per key succeeded. */
static void test_500_then_recovery(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_FAIL_UNTIL);
  sv->fail_until_ms = 400;
  struct config_provider p = provider(sv->port, tpl_single);
  p.concurrency = 8;
  p.max_retries = 8;
  p.retry_base_ms = 50;
  struct sender *s = new_sender(&p, "camp-500");
  struct outcomes o;
  drive(s, 40, &o, 100, 30000);
  size_t retried = 0;
  for (size_t i = 0; i < 40; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
    char key[64];
    snprintf(key, sizeof(key), "camp-500:r-%zu", i);
    size_t first = 0;
    size_t c = recs_for(sv, key, &first);
    assert_int_equal((size_t)o.r[i].attempts, c);
    retried += c > 1;
    size_t ok = 0;
    for (size_t j = 0; j < sv->n; j++) {
      if (strcmp(sv->recs[j].key, key) != 0)
        continue;
      assert_string_equal(sv->recs[j].body, sv->recs[first].body);
      ok += sv->recs[j].status == 200;
    }
    assert_int_equal(ok, 1);
  }
  /* the first wave all hit the outage */
  assert_true(retried >= 8);
  /* no key was invented along the way */
  for (size_t j = 0; j < sv->n; j++)
    assert_memory_equal(sv->recs[j].key, "camp-500:r-", 11);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_int_equal(st.requests, sv->n);
  assert_int_equal(st.retries, sv->n - 40);
  outcomes_free(&o);
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

/* 429 with Retry-After: 1 - the retry waits a second, although the
 * backoff alone would have retried after ~10 ms. */
static void test_429_retry_after(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_429_FIRST);
  struct config_provider p = provider(sv->port, tpl_single);
  p.retry_base_ms = 10;
  struct sender *s = new_sender(&p, "camp-429");
  struct outcomes o;
  drive(s, 4, &o, 100, 20000);
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
    assert_int_equal(o.r[i].attempts, 2);
    char key[64];
    snprintf(key, sizeof(key), "camp-429:r-%zu", i);
    size_t first = 0;
    assert_int_equal(recs_for(sv, key, &first), 2);
    int64_t t1 = sv->recs[first].t_ms, t2 = -1;
    for (size_t j = first + 1; j < sv->n; j++)
      if (strcmp(sv->recs[j].key, key) == 0)
        t2 = sv->recs[j].t_ms;
    assert_int_equal(sv->recs[first].status, 429);
    if (t2 - t1 < 900)
      fail_msg("retry after %lld ms despite Retry-After: 1",
               (long long)(t2 - t1));
  }
  outcomes_free(&o);
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

/* A fixed answer from the provider, n recipients. */
static void run_status(int status, const char *body, size_t body_len,
                       int max_retries, struct outcomes *o, struct srv **svp)
{
  struct srv *sv = srv_start(MODE_STATUS);
  sv->status = status;
  sv->resp_body = body;
  sv->resp_len = body_len;
  struct config_provider p = provider(sv->port, tpl_single);
  p.max_retries = max_retries;
  struct sender *s = new_sender(&p, "camp-st");
  drive(s, 3, o, 100, 20000);
  sender_free(s);
  provider_free(&p);
  *svp = sv;
}

static void test_409_is_sent(void **state)
{
  (void)state;
  struct outcomes o;
  struct srv *sv;
  run_status(409, "{\"error\":\"duplicate\"}", 21, 3, &o, &sv);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
    assert_int_equal(o.r[i].http_status, 409);
    assert_int_equal(o.r[i].attempts, 1);
  }
  assert_int_equal(sv->n, 3);
  outcomes_free(&o);
  srv_stop(sv);
}

static void test_422_rejected_with_reason(void **state)
{
  (void)state;
  struct outcomes o;
  struct srv *sv;
  const char *body = "{\"error\":\n  \"invalid address\"}";
  run_status(422, body, strlen(body), 3, &o, &sv);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_REJECTED);
    assert_int_equal(o.r[i].http_status, 422);
    assert_int_equal(o.r[i].attempts, 1);
    assert_non_null(strstr(o.r[i].reason, "HTTP 422"));
    assert_non_null(strstr(o.r[i].reason, "{'error': 'invalid address'}"));
    assert_null(strchr(o.r[i].reason, '\n'));
  }
  assert_int_equal(sv->n, 3); /* a rejection is not retried */
  outcomes_free(&o);
  srv_stop(sv);
}

/* A wrong key is the provider set-up's fault, not the recipients': give
 * up at once (the consumer releases the campaign), do not reject. */
static void test_401_gives_up_at_once(void **state)
{
  (void)state;
  struct outcomes o;
  struct srv *sv;
  run_status(401, "unauthorized", 12, 5, &o, &sv);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_GAVE_UP);
    assert_int_equal(o.r[i].attempts, 1);
    assert_non_null(strstr(o.r[i].reason, "401"));
    assert_null(strstr(o.r[i].reason, "test-secret"));
  }
  assert_int_equal(sv->n, 3);
  outcomes_free(&o);
  srv_stop(sv);
}

/* A provider answering with a huge body: the reason stays short. */
static void test_huge_response_body(void **state)
{
  (void)state;
  size_t big = 4u << 20;
  char *body = malloc(big);
  assert_non_null(body);
  memset(body, 'x', big);
  struct outcomes o;
  struct srv *sv;
  run_status(400, body, big, 0, &o, &sv);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_REJECTED);
    assert_true(strlen(o.r[i].reason) < SENDER_REASON_MAX);
    assert_non_null(strstr(o.r[i].reason, "HTTP 400: xxxx"));
  }
  outcomes_free(&o);
  srv_stop(sv);
  free(body);
}

/* A hanging provider: every attempt ends at timeout_ms, is retried with
 * the same key, and the recipient is GAVE_UP after max_retries; meanwhile
 * sender_poll() keeps returning within its timeout (checked by drive). */
static void test_hang_times_out_and_gives_up(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_HANG);
  struct config_provider p = provider(sv->port, tpl_single);
  p.timeout_ms = 300;
  p.max_retries = 2;
  p.retry_base_ms = 20;
  p.concurrency = 3;
  struct sender *s = new_sender(&p, "camp-hang");
  struct outcomes o;
  int64_t t0 = clock_monotonic_ms();
  drive(s, 3, &o, 50, 20000);
  int64_t took = clock_monotonic_ms() - t0;
  assert_true(took >= 3 * 300 - 50);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_GAVE_UP);
    assert_int_equal(o.r[i].attempts, 3);
    assert_int_equal(o.r[i].http_status, 0);
    assert_non_null(strstr(o.r[i].reason, "gave up after 3 attempts"));
    assert_non_null(strstr(o.r[i].reason, "timeout after 300 ms"));
    char key[64];
    snprintf(key, sizeof(key), "camp-hang:r-%zu", i);
    assert_int_equal(recs_for(sv, key, NULL), 3);
  }
  assert_int_equal(sv->n, 9);
  outcomes_free(&o);
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

static int64_t thread_cpu_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A retry that is due while every slot is busy must not make the poll
 * loop spin: it waits for a transfer to finish. */
static void test_no_spin_while_slots_busy(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_FAIL_UNTIL);
  sv->fail_until_ms = 100;
  sv->latency_ms = 500;
  struct config_provider p = provider(sv->port, tpl_single);
  p.concurrency = 1;
  p.retry_base_ms = 20;
  struct sender *s = new_sender(&p, "camp-spin");
  struct outcomes o;
  int64_t wall0 = clock_monotonic_ms(), cpu0 = thread_cpu_ms();
  drive(s, 3, &o, 1000, 20000);
  int64_t wall = clock_monotonic_ms() - wall0, cpu = thread_cpu_ms() - cpu0;
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  assert_int_equal(o.r[0].attempts, 2); /* r-0 hit the outage */
  assert_true(wall >= 4 * 500);
  /* r-0's retry is due ~30 ms after r-1 starts, ~470 ms before the slot
   * frees: a spinning loop burns a good part of that (~140 ms measured), a
   * waiting one next to none (~2 ms) */
  if (cpu * 25 > wall)
    fail_msg("poll loop burnt %lld ms CPU in %lld ms", (long long)cpu,
             (long long)wall);
  outcomes_free(&o);
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

/* 50 requests per second: 100 requests take at least ~2 s. */
static void test_rate_limit(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_OK);
  struct config_provider p = provider(sv->port, tpl_single);
  p.concurrency = 16;
  p.rate_per_s = 50;
  struct sender *s = new_sender(&p, "camp-rate");
  struct outcomes o;
  int64_t t0 = clock_monotonic_ms();
  drive(s, 100, &o, 100, 30000);
  int64_t took = clock_monotonic_ms() - t0;
  if (took < 1900)
    fail_msg("100 requests at 50/s took only %lld ms", (long long)took);
  for (size_t i = 0; i < 100; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  assert_int_equal(sv->n, 100);
  outcomes_free(&o);
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

/* batch_size 10: one request per 10 recipients (the last one partial, sent
 * after the linger), the body holds the rendered batch, the key is the
 * documented batch key. The recipients are all queued up front, so the
 * grouping does not depend on timing. */
static void test_batch(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_OK);
  struct config_provider p = provider(sv->port, tpl_batch);
  p.batch_size = 10;
  p.concurrency = 2;
  struct sender *s = new_sender(&p, "camp-b");
  struct outcomes o;
  drive_ex(s, 95, &o, 100, 20000, true);
  for (size_t i = 0; i < 95; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  assert_int_equal(sv->n, 10);
  unsigned char seen[95] = {0};
  size_t partial = 0;
  for (size_t j = 0; j < sv->n; j++) {
    json_object *body = json_tokener_parse(sv->recs[j].body);
    assert_non_null(body);
    assert_string_equal(json_str(body, "campaign"), "camp-b");
    json_object *msgs;
    assert_true(json_object_object_get_ex(body, "messages", &msgs));
    size_t k = json_object_array_length(msgs);
    assert_true(k == 10 || k == 5);
    partial += k == 5;
    const char *ids[10];
    for (size_t m = 0; m < k; m++) {
      json_object *it = json_object_array_get_idx(msgs, m);
      ids[m] = json_str(it, "ref");
      size_t idx;
      assert_int_equal(sscanf(ids[m], "r-%zu", &idx), 1);
      assert_true(idx < 95);
      assert_int_equal(seen[idx]++, 0);
      char addr[64];
      snprintf(addr, sizeof(addr), "r-%zu@example.org", idx);
      assert_string_equal(json_str(it, "to"), addr);
    }
    char key[SENDER_BATCH_KEY_MAX];
    assert_int_equal(sender_batch_key("camp-b", ids, k, key, sizeof(key)),
                     SO_OK);
    assert_string_equal(sv->recs[j].key, key);
    json_object_put(body);
  }
  assert_int_equal(partial, 1);
  outcomes_free(&o);
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

static void test_batch_key(void **state)
{
  (void)state;
  const char *a[] = {"u-1", "u-2", "u-3"};
  const char *b[] = {"u-3", "u-1", "u-2"};
  const char *c[] = {"u-1", "u-2", "u-4"};
  const char *d[] = {"u-1u", "-2"};
  const char *e[] = {"u-1", "u-2"};
  char ka[SENDER_BATCH_KEY_MAX], kb[SENDER_BATCH_KEY_MAX],
      kc[SENDER_BATCH_KEY_MAX], kd[SENDER_BATCH_KEY_MAX],
      ke[SENDER_BATCH_KEY_MAX];
  assert_int_equal(sender_batch_key("c1", a, 3, ka, sizeof(ka)), SO_OK);
  assert_int_equal(sender_batch_key("c1", b, 3, kb, sizeof(kb)), SO_OK);
  assert_int_equal(sender_batch_key("c1", c, 3, kc, sizeof(kc)), SO_OK);
  assert_int_equal(sender_batch_key("c1", d, 2, kd, sizeof(kd)), SO_OK);
  assert_int_equal(sender_batch_key("c1", e, 2, ke, sizeof(ke)), SO_OK);
  assert_string_equal(ka, kb);
  assert_string_not_equal(ka, kc);
  assert_string_not_equal(kd, ke);
  assert_int_equal(strlen(ka), strlen("c1:batch:") + 16);
  assert_memory_equal(ka, "c1:batch:", 9);
  char small[8];
  assert_int_equal(sender_batch_key("c1", a, 3, small, sizeof(small)),
                   SO_ERR_TOO_LARGE);
}

/* A recipient whose body cannot be rendered is REJECTED without a
 * request; the rest of its batch still goes out. */
static void test_render_failure_rejects_one(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_OK);
  struct config_provider p = provider(sv->port, tpl_batch);
  p.batch_size = 3;
  struct sender *s = new_sender(&p, "camp-r");
  struct sender_recipient r[3] = {{"a", "a@x", "{\"name\":\"A\"}"},
                                  {"b", "b@x", "{\"nom\":\"B\"}"},
                                  {"c", "c@x", "{\"name\":\"C\"}"}};
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(sender_submit(s, &r[i]), SO_OK);
  size_t got = 0, sent = 0, rejected = 0;
  int64_t t0 = clock_monotonic_ms();
  while (sender_in_flight(s) > 0 && clock_monotonic_ms() - t0 < 10000) {
    struct sender_result res[4];
    size_t k;
    assert_int_equal(sender_poll(s, 100, res, 4, &k), SO_OK);
    for (size_t i = 0; i < k; i++) {
      got++;
      if (strcmp(res[i].recipient_id, "b") == 0) {
        assert_int_equal(res[i].outcome, SENDER_REJECTED);
        assert_int_equal(res[i].attempts, 0);
        assert_non_null(strstr(res[i].reason, "vars.name missing"));
        rejected++;
      } else {
        assert_int_equal(res[i].outcome, SENDER_SENT);
        sent++;
      }
      sender_result_cleanup(&res[i]);
    }
  }
  assert_int_equal(got, 3);
  assert_int_equal(sent, 2);
  assert_int_equal(rejected, 1);
  assert_int_equal(sv->n, 1);
  assert_null(strstr(sv->recs[0].body, "b@x"));
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

/* Nobody listening: connection errors are retried, then GAVE_UP. */
static void test_connection_refused(void **state)
{
  (void)state;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t alen = sizeof(a);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
  close(fd); /* the port is now (very likely) closed */
  struct config_provider p = provider(ntohs(a.sin_port), tpl_single);
  p.max_retries = 2;
  p.retry_base_ms = 10;
  struct sender *s = new_sender(&p, "camp-refused");
  struct outcomes o;
  drive(s, 2, &o, 100, 10000);
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_GAVE_UP);
    assert_int_equal(o.r[i].attempts, 3);
    assert_non_null(strstr(o.r[i].reason, "curl: "));
  }
  outcomes_free(&o);
  sender_free(s);
  provider_free(&p);
}

/* cancel_all drops queued and hanging work at once. */
static void test_cancel_all(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_HANG);
  struct config_provider p = provider(sv->port, tpl_single);
  p.concurrency = 2;
  struct sender *s = new_sender(&p, "camp-cancel");
  for (int i = 0; i < 5; i++) {
    char id[16];
    snprintf(id, sizeof(id), "r-%d", i);
    struct sender_recipient r = {id, "x@y", "{\"name\":\"n\"}"};
    assert_int_equal(sender_submit(s, &r), SO_OK);
  }
  struct sender_result res[4];
  size_t k;
  assert_int_equal(sender_poll(s, 200, res, 4, &k), SO_OK);
  assert_int_equal(k, 0);
  assert_int_equal(sender_in_flight(s), 5);
  assert_int_equal(sender_cancel_all(s), 5);
  assert_int_equal(sender_in_flight(s), 0);
  int64_t t0 = clock_monotonic_ms();
  assert_int_equal(sender_poll(s, 1000, res, 4, &k), SO_OK);
  assert_int_equal(k, 0);
  assert_true(clock_monotonic_ms() - t0 < 500); /* idle: returns at once */
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

/* One sender, two campaigns: the second uses the new campaign id in keys
 * and bodies, and the warm connections (no new ones). */
static void test_rebind_keeps_connections(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_OK);
  struct config_provider p = provider(sv->port, tpl_single);
  p.concurrency = 2;
  struct sender *s = new_sender(&p, "camp-a");
  struct outcomes o;
  drive(s, 20, &o, 100, 10000);
  outcomes_free(&o);
  int conns = sv->connections;
  assert_true(conns >= 1 && conns <= 2);
  char err[256];
  assert_int_equal(
      sender_rebind(s, "camp-b", "{\"subject\":\"B\"}", err, sizeof(err)),
      SO_OK);
  drive(s, 20, &o, 100, 10000);
  for (size_t i = 0; i < 20; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  outcomes_free(&o);
  assert_int_equal(sv->n, 40);
  assert_int_equal(recs_for(sv, "camp-b:r-7", NULL), 1);
  size_t at = 0;
  assert_int_equal(recs_for(sv, "camp-b:r-0", &at), 1);
  assert_non_null(strstr(sv->recs[at].body, "\"subject\":\"B\""));
  assert_int_equal(sv->connections, conns);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_int_equal(st.sent, 20);
  /* busy: refused; bad content: refused, old campaign kept */
  struct sender_recipient r = {"x", "x@y", "{\"name\":\"n\"}"};
  assert_int_equal(sender_submit(s, &r), SO_OK);
  assert_int_equal(sender_rebind(s, "camp-c", NULL, err, sizeof(err)),
                   SO_ERR_CONFLICT);
  assert_int_equal(sender_cancel_all(s), 1);
  assert_int_equal(sender_rebind(s, "camp-c", "{}", err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_non_null(strstr(err, "content.subject"));
  sender_free(s);
  provider_free(&p);
  srv_stop(sv);
}

static void test_new_refuses_bad_settings(void **state)
{
  (void)state;
  static const struct {
    const char *url, *tpl, *auth;
    int batch;
    const char *needle;
  } cases[] = {
      {"ftp://127.0.0.1/x", NULL, NULL, 1, "http(s) URL"},
      {"not a url", NULL, NULL, 1, "http(s) URL"},
      {NULL, NULL, "Authorization Bearer test-secret-7f3a", 1, "auth_header"},
      {NULL, NULL, "X-Key: a\r\nX-Evil: b", 1, "auth_header"},
      {NULL, NULL, NULL, 5, "{{#recipients}}"},
      {NULL, "{\"to\":\"{{addr}}\"}", NULL, 1, "unknown placeholder"},
      {NULL, "{\"s\":\"{{content.nope}}\"}", NULL, 1, "content.nope"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct config_provider p = provider(1, tpl_single);
    if (cases[i].url) {
      free(p.url);
      p.url = strdup(cases[i].url);
    }
    if (cases[i].tpl) {
      free(p.body_template);
      p.body_template = strdup(cases[i].tpl);
    }
    if (cases[i].auth) {
      free(p.auth_header);
      p.auth_header = strdup(cases[i].auth);
    }
    p.batch_size = cases[i].batch;
    char err[256] = "";
    struct sender *s = sender_new(&p, "c", content, err, sizeof(err));
    if (s || !strstr(err, cases[i].needle))
      fail_msg("case %zu: sender=%p err=%s", i, (void *)s, err);
    assert_null(strstr(err, "test-secret"));
    provider_free(&p);
  }
  /* and submit refuses a recipient id that would inject a header */
  struct config_provider p = provider(1, tpl_single);
  struct sender *s = new_sender(&p, "c");
  struct sender_recipient bad = {"a\r\nX-Evil: 1", "x@y", NULL};
  assert_int_equal(sender_submit(s, &bad), SO_ERR_INVALID);
  struct sender_recipient noaddr = {"a", NULL, NULL};
  assert_int_equal(sender_submit(s, &noaddr), SO_ERR_INVALID);
  sender_free(s);
  provider_free(&p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thousand_sent_once),
      cmocka_unit_test(test_500_then_recovery),
      cmocka_unit_test(test_429_retry_after),
      cmocka_unit_test(test_409_is_sent),
      cmocka_unit_test(test_422_rejected_with_reason),
      cmocka_unit_test(test_401_gives_up_at_once),
      cmocka_unit_test(test_huge_response_body),
      cmocka_unit_test(test_hang_times_out_and_gives_up),
      cmocka_unit_test(test_no_spin_while_slots_busy),
      cmocka_unit_test(test_rate_limit),
      cmocka_unit_test(test_batch),
      cmocka_unit_test(test_batch_key),
      cmocka_unit_test(test_render_failure_rejects_one),
      cmocka_unit_test(test_connection_refused),
      cmocka_unit_test(test_cancel_all),
      cmocka_unit_test(test_rebind_keeps_connections),
      cmocka_unit_test(test_new_refuses_bad_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
