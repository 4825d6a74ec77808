/* test_ops_e2e.c - operations end to end (issue 9): /metrics, events and
 * SIGHUP of the real daemons, on the real broker, one registry backend
 * (argv[1]: sqlite | pg) and sendonce-sink as the provider.
 *
 *  metrics_events: an exclusive queue of the test's own bound to
 *    <prefix>.events with '#'; three campaigns scheduled with the
 *    publisher's `schedule` verb (one of 2,000 recipients, ten of which the
 *    sink rejects), published by `sendonce-publisher run`, sent by a
 *    consumer; an invalid trigger; two duplicate triggers once the big one
 *    is DONE; then a watchdog with no consumer left. The consumer's
 *    /metrics is scraped while it sends and after, and checked against the
 *    sink's /stats; the publisher's published_total == 3; the watchdog's
 *    alert and verdict gauges. Every event is checked against
 *    docs/events.md.
 *  sighup: the consumer, the watchdog and the publisher re-read their
 *    config: a new log level (the consumer's debug lines appear), provider
 *    settings, the watchdog's interval, an invalid file (error with
 *    file:line, old config kept, still sending), an unsafe change
 *    (registry.backend: needs a restart, ignored).
 *  metrics_port_taken: the consumer logs the error and sends anyway.
 */
#include <amqp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <amqp_tcp_socket.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <json-c/json.h>
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

#include "clock.h"
#include "e2e/consumer_harness.h"
#include "integration/broker_testutil.h"
#include "testenv.h"

extern char **environ;

static enum registry_backend backend;

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
static char *scrape(int port)
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
static double metric(const char *text, const char *sample)
{
  char pat[256];
  snprintf(pat, sizeof(pat), "\n%s ", sample);
  const char *p = strstr(text, pat);
  if (!p)
    return NAN;
  return strtod(p + strlen(pat), NULL);
}

static long long imetric(const char *text, const char *sample)
{
  double v = metric(text, sample);
  if (isnan(v))
    fail_msg("no sample %s in:\n%s", sample, text);
  return (long long)v;
}

/* check_histogram: the _bucket lines of `name` are cumulative, end in
 * le="+Inf", and that bucket equals _count. Returns _count. */
static long long check_histogram(const char *text, const char *name)
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
  long long count = imetric(text, cnt);
  assert_int_equal((long long)inf, count);
  assert_true(last == inf); /* +Inf is the last and largest */
  return count;
}

/* ---- files --------------------------------------------------------------- */

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = '\0';
  fclose(f);
  return s;
}

static void spit(const char *path, const char *text)
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
static void file_replace(const char *path, const char *from, const char *to)
{
  char *s = slurp(path);
  char *at = strstr(s, from);
  if (!at)
    fail_msg("%s: no '%s'", path, from);
  size_t len = strlen(s) - strlen(from) + strlen(to) + 1;
  char *out = malloc(len);
  assert_non_null(out);
  snprintf(out, len, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
  spit(path, out);
  free(out);
  free(s);
}

/* ops_config: the harness config `name` plus `extra` (more sections). */
static const char *ops_config(struct harness *h, const char *name,
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
static void spawn(struct harness *h, struct harness_proc *p, const char *name,
                  char *const argv[])
{
  snprintf(p->log, sizeof(p->log), "%s/%s.log", h->dir, name);
  static char bp[512], rp[512];
  snprintf(bp, sizeof(bp), "SENDONCE_BROKER_PASSWORD=%s",
           testenv_get("SENDONCE_BROKER_PASSWORD"));
  snprintf(rp, sizeof(rp), "SENDONCE_REGISTRY_PASSWORD=%s",
           testenv_get("SENDONCE_REGISTRY_PASSWORD"));
  size_t n = 0;
  while (environ[n])
    n++;
  char **env = calloc(n + 3, sizeof(*env));
  assert_non_null(env);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "SENDONCE_", 9) != 0)
      env[k++] = environ[i];
  env[k++] = bp;
  env[k++] = rp;
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

static int run_wait(struct harness *h, const char *name, char *const argv[])
{
  struct harness_proc p;
  spawn(h, &p, name, argv);
  int st = 0;
  assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the events queue (rabbitmq-c directly: a queue of our own) -----------
 */

struct evq {
  amqp_connection_state_t conn;
  char queue[256];
};

static void amqp_ok(amqp_rpc_reply_t r, const char *what)
{
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    fail_msg("amqp: %s failed (reply type %d)", what, (int)r.reply_type);
}

/* evq_open: a server-named exclusive queue bound to `exchange` with '#',
 * consumed without acks by this connection only. */
static void evq_open(struct evq *q, const char *exchange)
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

static void evq_close(struct evq *q)
{
  amqp_channel_close(q->conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(q->conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(q->conn);
}

struct event_seen {
  char kind[64];
  char message_id[160];
  char header_event[160];
  json_object *body;
};

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
static size_t evq_drain(struct evq *q, struct event_seen *out, size_t max,
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

static const char *jstr(json_object *o, const char *k)
{
  json_object *v;
  if (!json_object_object_get_ex(o, k, &v) ||
      !json_object_is_type(v, json_type_string))
    return NULL;
  return json_object_get_string(v);
}

/* jint: an integer member, -1 when absent (never null: absent). */
static long long jint(json_object *o, const char *k)
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
static void check_common(const struct event_seen *e, const char *source)
{
  json_object *b = e->body;
  const char *ev = jstr(b, "event");
  if (!ev || strcmp(ev, e->kind) != 0 || strcmp(e->header_event, e->kind) != 0)
    fail_msg("event %s: event/header disagree: %s header=%s", e->kind,
             json_object_to_json_string(b), e->header_event);
  const char *src = jstr(b, "source");
  assert_non_null(src);
  assert_string_equal(src, source);
  const char *at = jstr(b, "at");
  /* RFC 3339 UTC, ms: 2026-11-28T00:55:06.176Z */
  if (!at || strlen(at) != 24 || at[10] != 'T' || at[23] != 'Z')
    fail_msg("event %s: bad at: %s", e->kind, json_object_to_json_string(b));
  json_object_object_foreach(b, key, val)
  {
    (void)key;
    if (json_object_is_type(val, json_type_null))
      fail_msg("event %s: null member: %s", e->kind,
               json_object_to_json_string(b));
  }
  const char *id = jstr(b, "campaign_id");
  assert_string_equal(e->message_id, id ? id : e->kind);
}

/* ---- metrics and events end to end --------------------------------------- */

#define BIG_N 2000
#define SMALL_N 20
#define N_CAMPAIGNS 3

static void test_metrics_events(void **state)
{
  (void)state;
  /* Recipient ids u-0..u-1999: u-107, u-117, ... u-197 are rejected. */
  const char *args[] = {"--latency-ms", "10", "--reject-pattern", "^u-1[0-9]7$",
                        NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  struct evq q;
  evq_open(&q, h.topo.events);
  int cport = bt_free_port(), pport = bt_free_port(), wport = bt_free_port();
  char extra[512];
  snprintf(extra, sizeof(extra),
           "metrics = { enabled = true; address = \"127.0.0.1\";\n"
           "  consumer_port = %d; publisher_port = %d; watchdog_port = %d; };\n"
           "watchdog = { interval_s = 1; grace_s = 5; stuck_after_s = 60;\n"
           "  mgmt_url = \"%s\"; };\n",
           cport, pport, wport, testenv_get("SENDONCE_WATCHDOG_MGMT_URL"));
  struct harness_conf c = {.workers = 2, .concurrency = 8};
  char conf[420];
  snprintf(conf, sizeof(conf), "%s", ops_config(&h, "ops", &c, extra));

  /* Three campaigns in the registry, through the publisher's verb. */
  char content[400];
  snprintf(content, sizeof(content), "%s/content.json", h.dir);
  spit(content, "{\"subject\":\"hello\"}\n");
  const char *ids[N_CAMPAIGNS] = {"big", "small-1", "small-2"};
  for (int i = 0; i < N_CAMPAIGNS; i++) {
    char url[400];
    snprintf(url, sizeof(url), "%s",
             harness_recipients_file(&h, ids[i], i == 0 ? BIG_N : SMALL_N));
    char *argv[] = {(char *)SENDONCE_PUBLISHER_BIN,
                    (char *)"--config",
                    conf,
                    (char *)"schedule",
                    (char *)"--id",
                    (char *)ids[i],
                    (char *)"--at",
                    (char *)"now",
                    (char *)"--channel",
                    (char *)"email",
                    (char *)"--content",
                    content,
                    (char *)"--recipients-url",
                    url,
                    NULL};
    assert_int_equal(run_wait(&h, "schedule", argv), 0);
  }

  struct harness_proc cons, pub, wd;
  harness_start(&h, &cons, conf, "consumer");
  assert_true(harness_wait_log(&cons, "consumer: metrics on http://", 5000));
  /* An invalid trigger: dead-lettered, trigger.invalid. */
  bt_publish(h.b, h.topo.exchange, TOPOLOGY_ROUTING_KEY_DUE, "fax-blast",
             "{\"schema\":1,\"campaign_id\":\"fax-blast\","
             "\"scheduled_at\":\"2026-11-27T09:00:00Z\",\"channel\":\"fax\","
             "\"content\":{},\"recipients\":[{\"address\":\"1\"}]}");
  char *pargv[] = {(char *)SENDONCE_PUBLISHER_BIN, (char *)"--config", conf,
                   (char *)"run", NULL};
  spawn(&h, &pub, "publisher", pargv);

  /* While it sends: a claim held, progress between 0 and all. */
  struct registry_campaign rc =
      harness_wait_state(&h, "big", CAMPAIGN_PROCESSING, 30000);
  registry_campaign_free(&rc);
  assert_true(harness_wait_sink(&h, "total", 200, 30000));
  char *during = scrape(cport);
  long long held = imetric(during, "sendonce_consumer_claims_held");
  long long sent_during =
      imetric(during, "sendonce_consumer_recipients_total{outcome=\"sent\"}");
  long long in_flight = imetric(during, "sendonce_consumer_requests_in_flight");
  print_message("during: claims_held=%lld sent=%lld in_flight=%lld\n", held,
                sent_during, in_flight);
  assert_true(held >= 1 && held <= 2);
  assert_true(sent_during < BIG_N + 2 * SMALL_N);
  /* Handed to the senders, not yet marked: at most two batches a worker
   * (mark_batch_size 50). */
  assert_true(in_flight >= 0 && in_flight <= 2 * 2 * 50);
  check_histogram(during, "sendonce_consumer_provider_latency_seconds");
  free(during);

  for (int i = 0; i < N_CAMPAIGNS; i++) {
    rc = harness_wait_state(&h, ids[i], CAMPAIGN_DONE, 120000);
    registry_campaign_free(&rc);
  }
  /* Two duplicate triggers for the finished campaign. */
  char *body = harness_body("big", harness_recipients_file(&h, "dup", 1));
  harness_publish(&h, "big", body);
  harness_publish(&h, "big", body);
  free(body);
  int64_t until = clock_monotonic_ms() + 20000;
  char *after = NULL;
  for (;;) {
    after = scrape(cport);
    if (metric(after,
               "sendonce_consumer_duplicate_triggers_total{reason=\"done\"}") >=
            2 ||
        clock_monotonic_ms() > until)
      break;
    free(after);
    clock_sleep_ms(100, NULL);
  }

  /* The consumer's numbers against the sink's. */
  json_object *st = sink_client_stats(h.sink);
  assert_non_null(st);
  int64_t unique = sink_client_stat(st, "unique_keys");
  int64_t accepted = sink_client_stat(st, "accepted");
  json_object *by_status = NULL;
  assert_true(json_object_object_get_ex(st, "by_status", &by_status));
  json_object *r422 = NULL;
  int64_t rejected_sink = json_object_object_get_ex(by_status, "422", &r422)
                              ? json_object_get_int64(r422)
                              : 0;
  assert_int_equal(sink_client_stat(st, "accepted_duplicates"), 0);
  json_object_put(st);
  long long sent =
      imetric(after, "sendonce_consumer_recipients_total{outcome=\"sent\"}");
  long long rejected = imetric(
      after, "sendonce_consumer_recipients_total{outcome=\"rejected\"}");
  print_message(
      "after: sent=%lld rejected=%lld sink unique=%lld accepted=%lld "
      "422=%lld\n",
      sent, rejected, (long long)unique, (long long)accepted,
      (long long)rejected_sink);
  assert_int_equal(rejected_sink, 10);
  assert_int_equal(rejected, rejected_sink);
  assert_int_equal(sent, accepted);
  assert_int_equal(sent + rejected, unique);
  assert_int_equal(sent + rejected, BIG_N + 2 * SMALL_N);
  assert_int_equal(imetric(after,
                           "sendonce_consumer_duplicate_triggers_total{"
                           "reason=\"done\"}"),
                   2);
  assert_int_equal(imetric(after,
                           "sendonce_consumer_duplicate_triggers_total{"
                           "reason=\"held\"}"),
                   0);
  assert_int_equal(
      imetric(after,
              "sendonce_consumer_deliveries_total{outcome=\"duplicate\"}"),
      2);
  assert_int_equal(
      imetric(after, "sendonce_consumer_deliveries_total{outcome=\"invalid\"}"),
      1);
  assert_int_equal(
      imetric(after, "sendonce_consumer_deliveries_total{outcome=\"claimed\"}"),
      N_CAMPAIGNS);
  assert_int_equal(
      imetric(after, "sendonce_consumer_deliveries_received_total"),
      N_CAMPAIGNS + 3);
  assert_int_equal(
      imetric(after, "sendonce_consumer_campaigns_total{result=\"done\"}"),
      N_CAMPAIGNS);
  assert_int_equal(
      imetric(after, "sendonce_consumer_campaigns_total{result=\"dead\"}"), 0);
  assert_int_equal(imetric(after, "sendonce_consumer_claims_held"), 0);
  assert_int_equal(imetric(after, "sendonce_consumer_requests_in_flight"), 0);
  assert_int_equal(
      check_histogram(after, "sendonce_consumer_provider_latency_seconds"),
      sent + rejected);
  long long renewals =
      check_histogram(after, "sendonce_consumer_lease_renewal_lag_seconds");
  assert_true(renewals >= 0);
  assert_true(strstr(after,
                     "# TYPE sendonce_consumer_provider_latency_seconds "
                     "histogram\n") != NULL);
  free(after);

  /* The publisher published the three. */
  char *pm = scrape(pport);
  assert_int_equal(imetric(pm, "sendonce_publisher_published_total"),
                   N_CAMPAIGNS);
  assert_int_equal(imetric(pm, "sendonce_publisher_publish_failures_total"), 0);
  assert_int_equal(
      check_histogram(pm, "sendonce_publisher_confirm_latency_seconds"),
      N_CAMPAIGNS);
  assert_int_equal(check_histogram(pm, "sendonce_publisher_lateness_seconds"),
                   N_CAMPAIGNS);
  free(pm);
  assert_int_equal(harness_stop(&pub, SIGTERM, 15000), 0);

  /* Without a consumer the watchdog alerts; the DLQ holds the invalid one. */
  assert_int_equal(harness_stop(&cons, SIGTERM, 30000), 0);
  char *wargv[] = {(char *)SENDONCE_WATCHDOG_BIN, (char *)"--config", conf,
                   (char *)"run", NULL};
  spawn(&h, &wd, "watchdog", wargv);
  until = clock_monotonic_ms() + 20000;
  char *wm = NULL;
  for (;;) {
    clock_sleep_ms(300, NULL);
    if (!harness_wait_log(&wd, "watchdog: metrics on http://", 100))
      continue;
    wm = scrape(wport);
    double passes = metric(wm, "sendonce_watchdog_passes_total");
    if ((!isnan(passes) && passes >= 2) || clock_monotonic_ms() > until)
      break;
    free(wm);
  }
  print_message("watchdog /metrics:\n%s", wm);
  assert_int_equal(
      imetric(wm, "sendonce_watchdog_alert{alert=\"no_consumer\"}"), 1);
  assert_int_equal(
      imetric(wm, "sendonce_watchdog_alert{alert=\"dlq_not_empty\"}"), 1);
  assert_int_equal(imetric(wm, "sendonce_watchdog_queue_consumers"), 0);
  assert_int_equal(imetric(wm, "sendonce_watchdog_dlq_messages"), 1);
  /* Every campaign is DONE: no verdict about any. */
  const char *verdicts[] = {"in_progress",  "stuck",   "queued",
                            "trigger_lost", "stalled", "dead"};
  for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++) {
    char s[128];
    snprintf(s, sizeof(s), "sendonce_watchdog_campaigns{verdict=\"%s\"}",
             verdicts[i]);
    assert_int_equal(imetric(wm, s), 0);
  }
  free(wm);
  assert_int_equal(harness_stop(&wd, SIGTERM, 15000), 0);

  /* The events, in order per campaign. */
  static struct event_seen ev[4000];
  size_t n = evq_drain(&q, ev, sizeof(ev) / sizeof(ev[0]), 1000);
  int claimed = 0, done = 0, dup = 0, invalid = 0, alerts = 0, progress = 0;
  long long last_sent = -1;
  bool big_done = false;
  for (size_t i = 0; i < n; i++) {
    struct event_seen *e = &ev[i];
    json_object *b = e->body;
    const char *id = jstr(b, "campaign_id");
    bool big = id && strcmp(id, "big") == 0;
    if (strcmp(e->kind, "alert") == 0) {
      check_common(e, "watchdog");
      const char *reason = jstr(b, "reason");
      assert_non_null(reason);
      if (!id && strcmp(reason, "no_consumer") == 0)
        alerts++;
      continue;
    }
    check_common(e, "consumer");
    if (strcmp(e->kind, "trigger.invalid") == 0) {
      assert_non_null(id);
      assert_string_equal(id, "fax-blast");
      const char *reason = jstr(b, "reason");
      assert_non_null(reason);
      if (strncmp(reason, "unknown_channel", 15) != 0)
        fail_msg("trigger.invalid: %s", json_object_to_json_string(b));
      invalid++;
      continue;
    }
    if (!big)
      continue;
    if (strcmp(e->kind, "campaign.claimed") == 0) {
      assert_int_equal(claimed + progress + done, 0); /* first */
      assert_int_equal(jint(b, "fence"), 1);
      assert_non_null(jstr(b, "owner"));
      assert_int_equal(jint(b, "sent"), -1); /* not on a claim */
      claimed++;
    } else if (strcmp(e->kind, "campaign.progress") == 0) {
      assert_int_equal(claimed, 1);
      assert_false(big_done);
      assert_int_equal(jint(b, "fence"), 1);
      long long s = jint(b, "sent");
      assert_true(s >= last_sent && jint(b, "rejected") >= 0);
      last_sent = s;
      progress++;
    } else if (strcmp(e->kind, "campaign.done") == 0) {
      assert_int_equal(jint(b, "fence"), 1);
      assert_int_equal(jint(b, "total"), BIG_N);
      assert_int_equal(jint(b, "sent") + jint(b, "rejected"), BIG_N);
      assert_int_equal(jint(b, "rejected"), 10);
      assert_true(jint(b, "sent") >= last_sent);
      big_done = true;
      done++;
    } else if (strcmp(e->kind, "trigger.duplicate") == 0) {
      assert_true(big_done);
      assert_string_equal(jstr(b, "reason"), "done");
      assert_int_equal(jint(b, "fence"), 1);
      dup++;
    } else {
      fail_msg("unexpected event %s: %s", e->kind,
               json_object_to_json_string(b));
    }
  }
  print_message(
      "events: %zu total; big: claimed=%d progress=%d done=%d duplicate=%d; "
      "invalid=%d no_consumer alerts=%d\n",
      n, claimed, progress, done, dup, invalid, alerts);
  assert_int_equal(claimed, 1);
  assert_true(progress >= 1);
  assert_int_equal(done, 1);
  assert_int_equal(dup, 2);
  assert_int_equal(invalid, 1);
  assert_true(alerts >= 1);
  for (size_t i = 0; i < n; i++)
    json_object_put(ev[i].body);
  evq_close(&q);
  harness_teardown(&h);
}

/* ---- SIGHUP -------------------------------------------------------------- */

/* run_one: publish a campaign of n recipients and wait for DONE. */
static void run_one(struct harness *h, const char *id, long n)
{
  char *body = harness_body(id, harness_recipients_file(h, id, n));
  harness_publish(h, id, body);
  free(body);
  struct registry_campaign rc = harness_wait_state(h, id, CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.sent, n);
  registry_campaign_free(&rc);
}

static void test_sighup(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "20", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  int wport = bt_free_port();
  char extra[512];
  snprintf(extra, sizeof(extra),
           "metrics = { enabled = true; consumer_port = %d;\n"
           "  watchdog_port = %d; };\n"
           "watchdog = { interval_s = 1; grace_s = 5; stuck_after_s = 60;\n"
           "  mgmt_url = \"%s\"; };\n",
           bt_free_port(), wport, testenv_get("SENDONCE_WATCHDOG_MGMT_URL"));
  struct harness_conf c = {.concurrency = 4};
  char conf[420];
  snprintf(conf, sizeof(conf), "%s", ops_config(&h, "hup", &c, extra));
  char *original = slurp(conf);
  struct harness_proc cons, wd, pub;
  harness_start(&h, &cons, conf, "consumer");
  char *wargv[] = {(char *)SENDONCE_WATCHDOG_BIN, (char *)"--config", conf,
                   (char *)"run", NULL};
  spawn(&h, &wd, "watchdog", wargv);
  char *pargv[] = {(char *)SENDONCE_PUBLISHER_BIN, (char *)"--config", conf,
                   (char *)"run", NULL};
  spawn(&h, &pub, "publisher", pargv);
  assert_true(harness_wait_log(&wd, "watchdog: running", 15000));
  assert_true(harness_wait_log(&pub, "publisher: running", 15000));
  run_one(&h, "before", 20);
  assert_int_equal(harness_log_count(&cons, "level=debug"), 0);

  /* 1. Safe changes: the log level, a provider's concurrency, the
   * watchdog's interval. */
  file_replace(conf, "level = \"info\"", "level = \"debug\"");
  file_replace(conf, "concurrency = 4", "concurrency = 2");
  file_replace(conf, "interval_s = 1", "interval_s = 2");
  kill(cons.pid, SIGHUP);
  kill(wd.pid, SIGHUP);
  kill(pub.pid, SIGHUP);
  assert_true(
      harness_wait_log(&cons, "reload: log.level: info -> debug", 5000));
  assert_true(harness_wait_log(
      &cons, "reload: providers.email.concurrency: 4 -> 2", 1000));
  assert_true(
      harness_wait_log(&wd, "reload: watchdog.interval_s: 1 -> 2", 5000));
  assert_true(harness_wait_log(&wd, "reload: log.level: info -> debug", 1000));
  assert_true(harness_wait_log(&pub, "reload: log.level: info -> debug", 5000));
  /* A campaign long enough for lease renewals, logged at debug. */
  run_one(&h, "debug", 300);
  assert_true(harness_log_count(&cons, "level=debug") > 0);
  assert_true(harness_log_count(&cons, "consumer: renewed campaign=debug") > 0);

  /* 2. An invalid file: the error with file:line, the old config kept. */
  spit(conf, "log = { level = \"loud\"; };\nconsumer = { workers = ; };\n");
  kill(cons.pid, SIGHUP);
  kill(wd.pid, SIGHUP);
  kill(pub.pid, SIGHUP);
  char where[450];
  snprintf(where, sizeof(where), "%s:", conf);
  assert_true(harness_wait_log(&cons, "consumer: reload refused", 5000));
  assert_true(harness_wait_log(&wd, "watchdog: reload refused", 5000));
  assert_true(harness_wait_log(&pub, "publisher: reload refused", 5000));
  char *log = slurp(cons.log);
  const char *line = strstr(log, "consumer: reload refused");
  assert_non_null(line);
  const char *at = strstr(line, where);
  assert_non_null(at);
  assert_true(at[strlen(where)] >= '1' && at[strlen(where)] <= '9');
  free(log);
  assert_int_equal(kill(cons.pid, 0), 0);
  assert_int_equal(kill(wd.pid, 0), 0);
  assert_int_equal(kill(pub.pid, 0), 0);
  int debug_lines = harness_log_count(&cons, "level=debug");
  run_one(&h, "after-invalid", 300);
  /* Still at debug: the old config was kept whole. */
  assert_true(harness_log_count(&cons, "level=debug") > debug_lines);

  /* 3. An unsafe change: needs a restart, ignored; the rest applies. */
  spit(conf, original);
  if (backend == REGISTRY_SQLITE)
    file_replace(conf, "backend = \"sqlite\";",
                 "backend = \"postgresql\"; pg_conninfo = \"host=127.0.0.1\";");
  else
    file_replace(conf, "backend = \"postgresql\";", "backend = \"sqlite\";");
  kill(cons.pid, SIGHUP);
  assert_true(harness_wait_log(
      &cons,
      "reload: registry.backend changed: needs a restart; kept the old value",
      5000));
  assert_true(
      harness_wait_log(&cons, "reload: log.level: debug -> info", 1000));
  run_one(&h, "after-unsafe", 20);
  assert_int_equal(harness_stop(&cons, SIGTERM, 30000), 0);
  assert_int_equal(harness_stop(&wd, SIGTERM, 15000), 0);
  assert_int_equal(harness_stop(&pub, SIGTERM, 15000), 0);
  free(original);
  harness_teardown(&h);
}

/* ---- a metrics port that is taken ------------------------------------------
 */

/* The consumer logs the error and sends anyway (docs/operations.md). */
static void test_metrics_port_taken(void **state)
{
  (void)state;
  struct harness h;
  harness_setup(&h, backend, NULL);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 1), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  char extra[128];
  snprintf(extra, sizeof(extra), "metrics = { consumer_port = %d; };\n",
           ntohs(a.sin_port));
  struct harness_conf c = {0};
  struct harness_proc cons;
  harness_start(&h, &cons, ops_config(&h, "taken", &c, extra), "consumer");
  assert_true(harness_wait_log(&cons, "(running without /metrics)", 5000));
  assert_true(harness_log_count(&cons, "level=error consumer: metrics:") == 1);
  run_one(&h, "without-metrics", 20);
  assert_int_equal(harness_stop(&cons, SIGTERM, 30000), 0);
  close(fd);
  harness_teardown(&h);
}

int main(int argc, char **argv)
{
  backend = argc > 1 && strcmp(argv[1], "pg") == 0 ? REGISTRY_POSTGRESQL
                                                   : REGISTRY_SQLITE;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_events),
      cmocka_unit_test(test_sighup),
      cmocka_unit_test(test_metrics_port_taken),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
