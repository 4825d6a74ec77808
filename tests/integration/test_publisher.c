/* test_publisher.c - sendonce-publisher, the real binary, against the real
 * RabbitMQ and registry (backend from argv[1]: sqlite or pg):
 *  - schedule: validation like the consumer's, exit statuses, duplicates,
 *    an inline list over max_message_bytes;
 *  - publish/pause/resume/cancel and what reaches the queue, with our
 *    properties and headers;
 *  - list, as a table and as JSON;
 *  - the daemon: a due campaign is published promptly, a future one not
 *    before its time, a cancelled one never; SIGTERM exits 0;
 *  - two daemons over 50 campaigns: each published once;
 *  - a paused TCP proxy: `publish` fails within its bound and the campaign
 *    stays SCHEDULED; a daemon behind it recovers when the proxy resumes;
 *  - a locked registry: the daemon keeps running and publishes once the
 *    lock is gone;
 *  - a campaign-due message published by python3-pika lands in the main
 *    queue like ours;
 *  - the daemon's publish lease and mark commit without a flush, a CLI
 *    publish's durably (PostgreSQL);
 *  - the daemon wakes for a campaign's due time: of campaigns due 37 ms
 *    apart, most begin publishing within a few ms of it, as no daemon
 *    that looks every 200 ms tick could.
 */
#include <curl/curl.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "broker_testutil.h"
#include "clock.h"
#include "msg.h"
#include "publisher_testutil.h"
#include "testenv.h"

#define CLI_MS 30000 /* generous bound on one CLI run under ASan */

static int setup(void **state)
{
  struct pt *t = malloc(sizeof(*t));
  assert_non_null(t);
  pt_setup(t);
  *state = t;
  return 0;
}

static int teardown(void **state)
{
  pt_teardown(*state);
  free(*state);
  return 0;
}

static void at_ms(int64_t ms, char *buf, size_t len)
{
  assert_int_equal(clock_format_rfc3339(ms, buf, len), SO_OK);
}

/* Expect status `want` and `needle` in stderr. */
static void expect_cli_error(struct pt *t, int want, const char *needle, ...)
{
  char *argv[16];
  size_t n = 0;
  va_list ap;
  va_start(ap, needle);
  for (char *a; (a = va_arg(ap, char *)) != NULL && n < 15;)
    argv[n++] = a;
  va_end(ap);
  while (n < 15)
    argv[n++] = NULL;
  char *err = NULL;
  int st = pt_cli(t, CLI_MS, NULL, &err, argv[0], argv[1], argv[2], argv[3],
                  argv[4], argv[5], argv[6], argv[7], argv[8], argv[9],
                  argv[10], argv[11], argv[12], argv[13], argv[14], NULL);
  if (st != want || !strstr(err, needle))
    fail_msg("%s: want exit %d and '%s' in stderr; got %d:\n%s", argv[0], want,
             needle, st, err);
  free(err);
}

static void test_schedule_validates(void **state)
{
  struct pt *t = *state;
  char arr[300], bad[300], big[300], dup[300];
  char id[] = "spring-1", now[] = "now", email[] = "email";

  /* Good: JSON lines and a JSON array; the payload is what consumers
   * accept. */
  char *out = NULL;
  int st = pt_cli(t, CLI_MS, &out, NULL, "schedule", "--id", id, "--at", now,
                  "--channel", email, "--content", t->content, "--recipients",
                  t->recipients, NULL);
  assert_int_equal(st, 0);
  assert_non_null(strstr(out, "2 recipients"));
  free(out);
  pt_write_file(t, "r.json",
                "[{\"id\":\"x\",\"address\":\"x@example.org\"},\n"
                " {\"address\":\"y@example.org\",\"vars\":{\"k\":\"v\"}}]\n",
                arr, sizeof(arr));
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "schedule", "--id", "arr-1",
                          "--at", "2030-01-01T00:00:00Z", "--channel", "sms",
                          "--content", t->content, "--recipients", arr,
                          "--not-after", "2030-01-01T02:00:00+01:00", NULL),
                   0);
  struct registry_campaign c = {0};
  assert_int_equal(registry_get(t->reg, "arr-1", &c), SO_OK);
  assert_int_equal(c.state, CAMPAIGN_SCHEDULED);
  assert_string_equal(c.channel, "sms");
  struct msg *m = NULL;
  char err[MSG_ERR_LEN];
  assert_int_equal(
      msg_parse(c.payload, strlen(c.payload), NULL, &m, err, sizeof(err)),
      SO_OK);
  assert_int_equal(m->n_recipients, 2);
  assert_string_equal(m->recipients[1].id, "y@example.org");
  assert_true(m->has_not_after);
  assert_int_equal(m->not_after_ms - m->scheduled_at_ms, 3600 * 1000);
  msg_free(m);
  registry_campaign_free(&c);

  /* An existing id is reported and left alone. */
  expect_cli_error(t, 1, "already exists", "schedule", "--id", id, "--at",
                   "2031-01-01T00:00:00Z", "--channel", email, "--content",
                   t->content, "--recipients", t->recipients, NULL);
  assert_int_equal(pt_state(t, id), CAMPAIGN_SCHEDULED);

  /* Bad input: exit 2 with the reason. */
  expect_cli_error(t, 2, "unknown_channel", "schedule", "--id", "b1", "--at",
                   now, "--channel", "fax", "--content", t->content,
                   "--recipients", t->recipients, NULL);
  expect_cli_error(t, 2, "bad_campaign_id", "schedule", "--id", "no spaces",
                   "--at", now, "--channel", email, "--content", t->content,
                   "--recipients", t->recipients, NULL);
  expect_cli_error(t, 2, "--at", "schedule", "--id", "b2", "--at", "tomorrow",
                   "--channel", email, "--content", t->content, "--recipients",
                   t->recipients, NULL);
  expect_cli_error(t, 2, "exactly one", "schedule", "--id", "b3", "--at", now,
                   "--channel", email, "--content", t->content, "--recipients",
                   t->recipients, "--recipients-url",
                   "https://example.org/l.jsonl", NULL);
  expect_cli_error(t, 2, "bad_content", "schedule", "--id", "b4", "--at", now,
                   "--channel", email, "--content", arr, "--recipients",
                   t->recipients, NULL);
  expect_cli_error(t, 2, "bad_recipients_url", "schedule", "--id", "b5", "--at",
                   now, "--channel", email, "--content", t->content,
                   "--recipients-url", "ftp://example.org/l", NULL);
  pt_write_file(t, "bad.jsonl",
                "{\"address\":\"a@example.org\"}\n{\"id\":\"z\"}\n", bad,
                sizeof(bad));
  expect_cli_error(t, 2, "bad.jsonl:2: bad_recipient", "schedule", "--id", "b6",
                   "--at", now, "--channel", email, "--content", t->content,
                   "--recipients", bad, NULL);
  pt_write_file(t, "dup.json",
                "[{\"id\":\"a\",\"address\":\"a@x\"},{\"id\":\"a\","
                "\"address\":\"b@x\"}]",
                dup, sizeof(dup));
  expect_cli_error(t, 2, "duplicate_recipient", "schedule", "--id", "b7",
                   "--at", now, "--channel", email, "--content", t->content,
                   "--recipients", dup, NULL);
  expect_cli_error(t, 2, "No such file", "schedule", "--id", "b8", "--at", now,
                   "--channel", email, "--content", "/nonexistent/c.json",
                   "--recipients", t->recipients, NULL);
  /* max_message_bytes is 4096 in the test config: 100 recipients do not
   * fit, and the message says where big lists belong. */
  char *text = calloc(1, 100 * 80);
  assert_non_null(text);
  for (int i = 0; i < 100; i++) {
    size_t used = strlen(text);
    snprintf(text + used, 100 * 80 - used,
             "{\"id\":\"r-%d\",\"address\":\"user%d@example.org\"}\n", i, i);
  }
  pt_write_file(t, "big.jsonl", text, big, sizeof(big));
  free(text);
  expect_cli_error(t, 2, "--recipients-url", "schedule", "--id", "b9", "--at",
                   now, "--channel", email, "--content", t->content,
                   "--recipients", big, NULL);
  expect_cli_error(t, 2, "already past", "schedule", "--id", "b10", "--at",
                   "2020-01-01T00:00:00Z", "--channel", email, "--content",
                   t->content, "--recipients", t->recipients, "--not-after",
                   "2020-01-01T01:00:00Z", NULL);
  /* None of the refused ones was registered. */
  assert_int_equal(pt_count_state(t, CAMPAIGN_SCHEDULED), 2);
}

static void check_our_properties(const struct broker_delivery *d,
                                 const char *id)
{
  assert_string_equal(d->message_id, id);
  assert_string_equal(d->content_type, "application/json");
  assert_string_equal(d->routing_key, TOPOLOGY_ROUTING_KEY_DUE);
  assert_string_equal(broker_delivery_header(d, "x-sendonce-campaign"), id);
  assert_non_null(broker_delivery_header(d, "x-sendonce-attempt"));
  struct msg *m = NULL;
  char err[MSG_ERR_LEN];
  assert_int_equal(msg_parse(d->body, d->body_len, NULL, &m, err, sizeof(err)),
                   SO_OK);
  assert_string_equal(m->campaign_id, id);
  msg_free(m);
}

static void test_publish_pause_resume_cancel(void **state)
{
  struct pt *t = *state;
  char *out = NULL;
  pt_register(t, "p1", clock_now_ms() + 3600 * 1000);
  pt_register(t, "p2", clock_now_ms() + 3600 * 1000);

  /* publish now, with our properties; a second publish says so and adds
   * nothing. */
  assert_int_equal(pt_cli(t, CLI_MS, &out, NULL, "publish", "p1", NULL), 0);
  free(out);
  assert_int_equal(pt_state(t, "p1"), CAMPAIGN_PUBLISHED);
  struct broker_delivery *d = bt_get_wait(t->b, t->topo.campaigns, 5000);
  check_our_properties(d, "p1");
  assert_string_equal(broker_delivery_header(d, "x-sendonce-attempt"), "0");
  assert_int_equal(broker_ack(t->b, d->generation, d->tag), SO_OK);
  broker_delivery_free(d);
  assert_int_equal(pt_cli(t, CLI_MS, &out, NULL, "publish", "p1", NULL), 0);
  assert_non_null(strstr(out, "already PUBLISHED"));
  free(out);
  expect_cli_error(t, 1, "no campaign", "publish", "nope", NULL);
  expect_cli_error(t, 2, "CAMPAIGN_ID", "publish", NULL);

  /* A paused SCHEDULED campaign is not published, by hand or when due. */
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "pause", "p2", NULL), 0);
  expect_cli_error(t, 1, "paused", "publish", "p2", NULL);
  assert_int_equal(pt_cli(t, CLI_MS, &out, NULL, "resume", "p2", NULL), 0);
  assert_non_null(strstr(out, "SCHEDULED"));
  free(out);

  /* pause + resume of a PUBLISHED campaign publishes a fresh trigger
   * (workers drop the triggers of paused campaigns). */
  char *ids[8];
  assert_int_equal(pt_drain(t, ids, 8), 0);
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "pause", "p1", NULL), 0);
  assert_int_equal(pt_cli(t, CLI_MS, &out, NULL, "resume", "p1", NULL), 0);
  assert_non_null(strstr(out, "trigger published"));
  free(out);
  size_t n = pt_drain(t, ids, 8);
  assert_int_equal(n, 1);
  assert_string_equal(ids[0], "p1");
  pt_free_ids(ids, n);

  /* cancel: DEAD; a second cancel or a publish says so. */
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "cancel", "p2", NULL), 0);
  assert_int_equal(pt_state(t, "p2"), CAMPAIGN_DEAD);
  expect_cli_error(t, 1, "already DEAD", "cancel", "p2", NULL);
  expect_cli_error(t, 1, "already DEAD", "publish", "p2", NULL);
  assert_int_equal(pt_drain(t, ids, 8), 0);
}

static void test_list(void **state)
{
  struct pt *t = *state;
  char *out = NULL;
  pt_register(t, "list-a", clock_now_ms() + 3600 * 1000);
  pt_register(t, "list-b", clock_now_ms() + 7200 * 1000);
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "cancel", "list-b", NULL), 0);

  assert_int_equal(pt_cli(t, CLI_MS, &out, NULL, "list", NULL), 0);
  const char *cols[] = {"CAMPAIGN",   "STATE", "SCHEDULED_AT", "CHANNEL",
                        "SENT/TOTAL", "OWNER", "LAST_ERROR"};
  for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
    assert_non_null(strstr(out, cols[i]));
  const char *a = strstr(out, "list-a"), *b = strstr(out, "list-b");
  assert_non_null(a);
  assert_non_null(b);
  assert_true(b < a); /* most recently scheduled first */
  assert_non_null(strstr(a, "SCHEDULED"));
  assert_non_null(strstr(b, "DEAD"));
  assert_non_null(strstr(b, "cancelled"));
  assert_non_null(strstr(a, "email"));
  free(out);

  assert_int_equal(
      pt_cli(t, CLI_MS, &out, NULL, "list", "--json", "--state", "dead", NULL),
      0);
  json_object *j = json_tokener_parse(out);
  if (!j)
    fail_msg("list --json is not JSON:\n%s", out);
  assert_int_equal(json_object_array_length(j), 1);
  json_object *row = json_object_array_get_idx(j, 0), *v = NULL;
  assert_true(json_object_object_get_ex(row, "campaign_id", &v));
  assert_string_equal(json_object_get_string(v), "list-b");
  assert_true(json_object_object_get_ex(row, "state", &v));
  assert_string_equal(json_object_get_string(v), "DEAD");
  assert_true(json_object_object_get_ex(row, "sent", &v));
  assert_true(json_object_object_get_ex(row, "last_error", &v));
  json_object_put(j);
  free(out);

  assert_int_equal(pt_cli(t, CLI_MS, &out, NULL, "list", "--limit", "1", NULL),
                   0);
  assert_null(strstr(out, "list-a"));
  free(out);
  expect_cli_error(t, 2, "--state", "list", "--state", "LOST", NULL);
}

/* Wait until `id` is PUBLISHED (or later); returns the local time it was
 * first seen so, or fails after timeout_ms. */
static int64_t wait_published(struct pt *t, const char *id, int timeout_ms)
{
  int64_t until = clock_now_ms() + timeout_ms;
  for (;;) {
    int64_t now = clock_now_ms();
    if (pt_state(t, id) != CAMPAIGN_SCHEDULED)
      return now;
    if (now > until)
      fail_msg("campaign %s not published within %d ms", id, timeout_ms);
    clock_sleep_ms(25, NULL);
  }
}

static size_t scrape_cb(char *ptr, size_t size, size_t n, void *ud)
{
  char **buf = ud;
  size_t old = *buf ? strlen(*buf) : 0;
  char *grown = realloc(*buf, old + size * n + 1);
  if (!grown)
    return 0;
  memcpy(grown + old, ptr, size * n);
  grown[old + size * n] = '\0';
  *buf = grown;
  return size * n;
}

/* GET http://127.0.0.1:<port>/metrics; caller frees. */
static char *scrape(int port)
{
  char url[128], *body = NULL;
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, scrape_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  CURLcode rc = curl_easy_perform(c);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK || !body)
    fail_msg("GET %s: %s", url, curl_easy_strerror(rc));
  return body;
}

static void test_daemon_due_future_cancel(void **state)
{
  struct pt *t = *state;
  t->metrics_port = bt_free_port();
  pt_write_config(t, NULL, 2000);
  int log_ix;
  char due[CLOCK_RFC3339_LEN], future[CLOCK_RFC3339_LEN];
  char doomed[CLOCK_RFC3339_LEN];
  int64_t now = clock_now_ms();
  int64_t future_ms = now + 4000;
  at_ms(now - 1000, due, sizeof(due));
  at_ms(future_ms, future, sizeof(future));
  at_ms(now + 2500, doomed, sizeof(doomed));
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "schedule", "--id", "due",
                          "--at", due, "--channel", "email", "--content",
                          t->content, "--recipients", t->recipients, NULL),
                   0);
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "schedule", "--id", "future",
                          "--at", future, "--channel", "email", "--content",
                          t->content, "--recipients", t->recipients, NULL),
                   0);
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "schedule", "--id", "doomed",
                          "--at", doomed, "--channel", "email", "--content",
                          t->content, "--recipients", t->recipients, NULL),
                   0);
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "cancel", "doomed", NULL), 0);

  int64_t started = clock_now_ms();
  pid_t pid = pt_daemon_start(t, &log_ix);
  /* Due already: out promptly (generous: a start under ASan included). */
  int64_t seen = wait_published(t, "due", 10000);
  assert_true(seen - started < 10000);
  /* Future: not before its time, then within about a second of it. */
  int64_t seen_future = wait_published(t, "future", 15000);
  if (seen_future < future_ms)
    fail_msg("published %lld ms before its due time",
             (long long)(future_ms - seen_future));
  if (seen_future - future_ms > 3000)
    fail_msg("published %lld ms after its due time (want ~1 s)",
             (long long)(seen_future - future_ms));
  clock_sleep_ms(1000, NULL); /* give "doomed" every chance to go out */
  char *metrics = scrape(t->metrics_port);
  if (!strstr(metrics, "\nsendonce_publisher_published_total 2\n") ||
      !strstr(metrics, "\nsendonce_publisher_broker_up 1\n") ||
      !strstr(metrics, "sendonce_publisher_lateness_seconds_count 2\n"))
    fail_msg("unexpected /metrics:\n%s", metrics);
  free(metrics);
  pt_daemon_stop(pid);

  char *log = pt_daemon_log(t, log_ix);
  assert_non_null(strstr(log, "publisher: published campaign=due"));
  assert_non_null(strstr(log, "publisher: published campaign=future"));
  assert_null(strstr(log, "campaign=doomed"));
  free(log);
  assert_int_equal(pt_state(t, "doomed"), CAMPAIGN_DEAD);
  char *ids[8];
  size_t n = pt_drain(t, ids, 8);
  assert_int_equal(n, 2);
  assert_int_equal(pt_count_id(ids, n, "due"), 1);
  assert_int_equal(pt_count_id(ids, n, "future"), 1);
  pt_free_ids(ids, n);
}

static void test_two_daemons_publish_once(void **state)
{
  struct pt *t = *state;
  enum { N = 50 };
  int log_a, log_b;
  pid_t a = pt_daemon_start(t, &log_a);
  pid_t b = pt_daemon_start(t, &log_b);
  clock_sleep_ms(1500, NULL); /* both up and polling */
  int64_t due = clock_now_ms() + 500;
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "twin-%02d", i);
    pt_register(t, id, due);
  }
  int64_t until = clock_now_ms() + 30000;
  while (pt_count_state(t, CAMPAIGN_PUBLISHED) < N) {
    if (clock_now_ms() > until)
      fail_msg("only %zu of %d published in 30 s",
               pt_count_state(t, CAMPAIGN_PUBLISHED), (int)N);
    clock_sleep_ms(50, NULL);
  }
  clock_sleep_ms(500, NULL);
  pt_daemon_stop(a);
  pt_daemon_stop(b);

  char *ids[2 * N];
  size_t n = pt_drain(t, ids, 2 * N);
  assert_int_equal(n, N);
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "twin-%02d", i);
    if (pt_count_id(ids, n < 2 * N ? n : 2 * N, id) != 1)
      fail_msg("campaign %s is in the queue %zu times (want once)", id,
               pt_count_id(ids, n, id));
  }
  pt_free_ids(ids, n < 2 * N ? n : 2 * N);
}

static pid_t start_proxy(int port)
{
  char listen[128], target[64], prog[] = "socat";
  snprintf(listen, sizeof(listen),
           "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", port);
  snprintf(target, sizeof(target), "TCP:127.0.0.1:5672");
  char *argv[] = {prog, listen, target, NULL};
  return bt_spawn(argv, port);
}

static void test_paused_proxy(void **state)
{
  struct pt *t = *state;
  int port = bt_free_port();
  pid_t proxy = start_proxy(port);
  const int timeout_ms = 1500;
  pt_write_config(t, bt_uri_port("amqp", "127.0.0.1", port), timeout_ms);

  /* A daemon connected through the proxy publishes one campaign... */
  int log_ix;
  pid_t pid = pt_daemon_start(t, &log_ix);
  pt_register(t, "before", clock_now_ms());
  wait_published(t, "before", 15000);

  /* ...then the proxy freezes: the next campaign is not published (and
   * not marked), and the daemon keeps running. */
  assert_int_equal(kill(-proxy, SIGSTOP), 0);
  pt_register(t, "frozen", clock_now_ms());
  clock_sleep_ms(3 * timeout_ms + 1500, NULL);
  assert_int_equal(pt_state(t, "frozen"), CAMPAIGN_SCHEDULED);
  assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);

  /* A one-off `publish` through the frozen proxy fails within its bound
   * (connect + confirm timeouts and the session's 1 s guard, generously)
   * and leaves the campaign SCHEDULED. */
  pt_register(t, "by-hand", clock_now_ms() + 3600 * 1000);
  char *err = NULL;
  int64_t t0 = clock_monotonic_ms();
  int st = pt_cli(t, 30000, NULL, &err, "publish", "by-hand", NULL);
  int64_t took = clock_monotonic_ms() - t0;
  if (st != 1 || !strstr(err, "stays SCHEDULED"))
    fail_msg("publish via a frozen proxy: exit %d:\n%s", st, err);
  free(err);
  if (took > 4 * timeout_ms + 6000)
    fail_msg("publish via a frozen proxy took %lld ms", (long long)took);
  assert_int_equal(pt_state(t, "by-hand"), CAMPAIGN_SCHEDULED);
  /* It failed before taking the publish lease: nothing delays a daemon. */
  char *owner = testdb_query(
      &t->db,
      "SELECT publish_owner FROM campaigns WHERE campaign_id = 'by-hand'");
  assert_string_equal(owner, "~\n");
  free(owner);

  /* A daemon that cannot reach the broker still stops at once on SIGTERM
   * (within its bounded connect attempt). */
  int log_frozen;
  pid_t frozen = pt_daemon_start(t, &log_frozen);
  clock_sleep_ms(2000, NULL);
  t0 = clock_monotonic_ms();
  pt_daemon_stop(frozen);
  took = clock_monotonic_ms() - t0;
  if (took > timeout_ms + 5000)
    fail_msg("SIGTERM took %lld ms with the broker frozen", (long long)took);

  /* The proxy thaws: the daemon reconnects and publishes the rest. */
  assert_int_equal(kill(-proxy, SIGCONT), 0);
  wait_published(t, "frozen", 30000);
  pt_daemon_stop(pid);
  bt_kill(proxy);
  char *log = pt_daemon_log(t, log_ix);
  assert_non_null(strstr(log, "not published"));
  assert_non_null(strstr(log, "publisher: published campaign=frozen"));
  free(log);
  char *ids[8];
  size_t n = pt_drain(t, ids, 8);
  assert_true(n >= 2);
  assert_true(pt_count_id(ids, n, "before") >= 1);
  assert_true(pt_count_id(ids, n, "frozen") >= 1);
  assert_int_equal(pt_count_id(ids, n, "by-hand"), 0);
  pt_free_ids(ids, n);
}

/* A registry lock held by someone else, on a raw connection. */
struct lock {
  sqlite3 *lite;
  PGconn *pg;
};

static void lock_registry(struct pt *t, struct lock *l)
{
  memset(l, 0, sizeof(*l));
  if (pt_backend == REGISTRY_SQLITE) {
    assert_int_equal(sqlite3_open_v2(t->db.sqlite_path, &l->lite,
                                     SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(l->lite, "BEGIN EXCLUSIVE", NULL, NULL, NULL),
                     SQLITE_OK);
    return;
  }
  const char *keys[] = {"dbname", "password", NULL};
  const char *values[] = {t->db.pg_conninfo, t->db.pg_password, NULL};
  l->pg = PQconnectdbParams(keys, values, 1);
  assert_int_equal(PQstatus(l->pg), CONNECTION_OK);
  PGresult *r =
      PQexec(l->pg, "BEGIN; LOCK TABLE campaigns IN ACCESS EXCLUSIVE MODE");
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
}

static void unlock_registry(struct lock *l)
{
  if (l->lite) {
    assert_int_equal(sqlite3_exec(l->lite, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(l->lite);
  }
  if (l->pg) {
    PQclear(PQexec(l->pg, "ROLLBACK"));
    PQfinish(l->pg);
  }
}

static void test_registry_locked(void **state)
{
  struct pt *t = *state;
  t->busy_timeout_ms = 500;
  pt_write_config(t, NULL, 2000);
  int log_ix;
  pid_t pid = pt_daemon_start(t, &log_ix);
  pt_register(t, "warmup", clock_now_ms());
  wait_published(t, "warmup", 15000);

  /* Due in a moment, then the registry is locked past the due time. */
  pt_register(t, "behind-lock", clock_now_ms() + 1000);
  struct lock l;
  lock_registry(t, &l);
  clock_sleep_ms(3000, NULL);
  /* Still running: a registry that does not answer is not a crash. */
  assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);
  unlock_registry(&l);

  wait_published(t, "behind-lock", 15000);
  pt_daemon_stop(pid);
  char *log = pt_daemon_log(t, log_ix);
  if (!strstr(log, "publisher: pass failed") ||
      !strstr(log, "publisher: published campaign=behind-lock"))
    fail_msg("daemon log lacks the failure or the publish:\n%s", log);
  free(log);
  char *ids[8];
  size_t n = pt_drain(t, ids, 8);
  assert_int_equal(pt_count_id(ids, n, "behind-lock"), 1);
  pt_free_ids(ids, n);
}

static void test_pika_publish(void **state)
{
  struct pt *t = *state;
  char body_path[300];
  char body[512];
  char due[CLOCK_RFC3339_LEN];
  at_ms(clock_now_ms(), due, sizeof(due));
  snprintf(body, sizeof(body),
           "{\"schema\": 1, \"campaign_id\": \"from-python\", "
           "\"scheduled_at\": \"%s\", \"channel\": \"email\", "
           "\"content\": {\"subject\": \"Hi\"}, \"recipients\": "
           "[{\"id\": \"u-1\", \"address\": \"a@example.org\"}]}",
           due);
  pt_write_file(t, "python-body.json", body, body_path, sizeof(body_path));

  /* Ours first, for the comparison. */
  pt_register(t, "ours", clock_now_ms());
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "publish", "ours", NULL), 0);
  struct broker_delivery *ours = bt_get_wait(t->b, t->topo.campaigns, 5000);

  char cmd[1200];
  snprintf(cmd, sizeof(cmd),
           "SENDONCE_AMQP_HOST=127.0.0.1 SENDONCE_AMQP_VHOST='%s' "
           "SENDONCE_EXCHANGE='%s' /usr/bin/python3 '%s' '%s' 2>&1",
           bt_vhost(), t->topo.exchange, SENDONCE_PIKA_SCRIPT, body_path);
  /* The user and password reach the script through its environment. */
  setenv("SENDONCE_BROKER_USER", testenv_get("SENDONCE_BROKER_USER"), 1);
  setenv("SENDONCE_BROKER_PASSWORD", testenv_get("SENDONCE_BROKER_PASSWORD"),
         1);
  int rc = system(cmd);
  unsetenv("SENDONCE_BROKER_PASSWORD");
  if (rc != 0)
    fail_msg("python3-pika publish failed (status %d)", rc);

  struct broker_delivery *theirs = bt_get_wait(t->b, t->topo.campaigns, 5000);
  check_our_properties(theirs, "from-python");
  assert_string_equal(theirs->exchange, ours->exchange);
  assert_string_equal(theirs->routing_key, ours->routing_key);
  assert_string_equal(theirs->content_type, ours->content_type);
  assert_string_equal(broker_delivery_header(theirs, "x-sendonce-attempt"),
                      broker_delivery_header(ours, "x-sendonce-attempt"));
  assert_true(theirs->timestamp_s > 0);
  /* What the consumer checks: the body under the configured rules. */
  const char *const channels[] = {"email", "sms"};
  struct msg_rules rules = {
      .max_bytes = 4096, .channels = channels, .n_channels = 2};
  struct msg *m = NULL;
  char err[MSG_ERR_LEN];
  assert_int_equal(
      msg_parse(theirs->body, theirs->body_len, &rules, &m, err, sizeof(err)),
      SO_OK);
  msg_free(m);
  assert_int_equal(broker_ack(t->b, ours->generation, ours->tag), SO_OK);
  assert_int_equal(broker_ack(t->b, theirs->generation, theirs->tag), SO_OK);
  broker_delivery_free(ours);
  broker_delivery_free(theirs);
}

/* The daemon wakes for the next campaign's due time rather than looking
 * every 200 ms tick. Campaigns due 37 ms apart, the first ~1 s after the
 * daemon's last pass, cover every phase of a tick: a daemon that only
 * ticks starts each one's publish (T - due) mod 200 ms late, and as the
 * eight values are 37 ms apart around the 200 ms circle, at most three of
 * them (0, 22 and 37 ms past the smallest) can be under 59 ms. Waking for
 * each, it starts every one within a few ms. So the test asks that at
 * least WAKE_ON_TIME of them started within WAKE_START_MAX_MS: a loaded
 * machine may delay a few (that is not what is tested), a ticking daemon
 * fails it. The start is the log line's late_ms minus its confirm_ms, so a
 * slow broker confirm (the broker flushing its disk) counts for nothing. */
#define WAKE_N 8
#define WAKE_STEP_MS 37
#define WAKE_ON_TIME 5
#define WAKE_START_MAX_MS 50

/* publish_start_late: for `id`, the daemon's log's late_ms - confirm_ms:
 * how long after its due time its publish began; fails if not logged. */
static long long publish_start_late(const char *log, const char *id)
{
  char key[320];
  snprintf(key, sizeof(key), "publisher: published campaign=%s ", id);
  const char *line = strstr(log, key);
  if (!line)
    fail_msg("the daemon logged no publish of %s", id);
  const char *late = strstr(line, " late_ms=");
  const char *confirm = strstr(line, " confirm_ms=");
  const char *eol = strchr(line, '\n');
  long long l = 0, c = 0;
  if (!late || !confirm || (eol && confirm > eol) ||
      sscanf(late, " late_ms=%lld", &l) != 1 ||
      sscanf(confirm, " confirm_ms=%lld", &c) != 1)
    fail_msg("no late_ms/confirm_ms in: %.200s", line);
  return l - c;
}

static void test_daemon_wakes_when_due(void **state)
{
  struct pt *t = *state;
  int log_ix;
  pt_register(t, "wake-sync", clock_now_ms() - 1000);
  pid_t pid = pt_daemon_start(t, &log_ix);
  wait_published(t, "wake-sync", 10000); /* started, and idle from now */
  int64_t now = 0;
  assert_int_equal(registry_now(t->reg, &now), SO_OK);
  int64_t first = now + 1000;
  char id[WAKE_N][32];
  for (int i = 0; i < WAKE_N; i++) {
    snprintf(id[i], sizeof(id[i]), "wake-%d", i);
    pt_register(t, id[i], first + (int64_t)i * WAKE_STEP_MS);
  }
  wait_published(t, id[WAKE_N - 1], 10000);
  pt_daemon_stop(pid);

  char *log = pt_daemon_log(t, log_ix);
  int on_time = 0;
  for (int i = 0; i < WAKE_N; i++) {
    assert_int_equal(pt_state(t, id[i]), CAMPAIGN_PUBLISHED);
    long long late = publish_start_late(log, id[i]);
    print_message("%s: publish began %lld ms after its due time\n", id[i],
                  late);
    if (late <= -WAKE_START_MAX_MS)
      fail_msg("%s published %lld ms before its due time", id[i], -late);
    if (late < WAKE_START_MAX_MS)
      on_time++;
  }
  free(log);
  if (on_time < WAKE_ON_TIME)
    fail_msg(
        "%d of %d campaigns began publishing within %d ms of their due "
        "time (want at least %d)",
        on_time, WAKE_N, WAKE_START_MAX_MS, WAKE_ON_TIME);
  char *ids[WAKE_N + 2];
  size_t n = pt_drain(t, ids, WAKE_N + 2);
  assert_int_equal(n, WAKE_N + 1);
  pt_free_ids(ids, n);
}

/* The daemon's lease and mark commit without a flush, a CLI `publish`
 * durably (PUBLISHER_DAEMON / PUBLISHER_ONE_SHOT). Seen on PostgreSQL,
 * where a trigger records the synchronous_commit each update of the
 * campaigns ran under; the mode reaches both backends through the same
 * registry option, whose SQLite side registry_publish_async_sqlite checks
 * (no sync of the WAL for those steps). */
static void test_daemon_commits_async(void **state)
{
  struct pt *t = *state;
  if (pt_backend != REGISTRY_POSTGRESQL)
    skip();
  testdb_exec(&t->db,
              "CREATE TABLE sync_log (seq bigserial, campaign_id text, "
              " state text, sync text);"
              "CREATE FUNCTION sync_log_row() RETURNS trigger "
              "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO sync_log "
              "(campaign_id, state, sync) VALUES (NEW.campaign_id, "
              "NEW.state, current_setting('synchronous_commit')); "
              "RETURN NEW; END $$;"
              "CREATE TRIGGER sync_log_t AFTER UPDATE ON campaigns FOR EACH "
              "ROW EXECUTE FUNCTION sync_log_row();");
  pt_register(t, "by-hand", clock_now_ms() + 3600 * 1000);
  assert_int_equal(pt_cli(t, CLI_MS, NULL, NULL, "publish", "by-hand", NULL),
                   0);
  pt_register(t, "when-due", clock_now_ms() - 1000);
  int log_ix;
  pid_t pid = pt_daemon_start(t, &log_ix);
  wait_published(t, "when-due", 10000);
  pt_daemon_stop(pid);

  char *log = testdb_query(&t->db,
                           "SELECT campaign_id, state, sync FROM "
                           "sync_log ORDER BY seq");
  assert_string_equal(log,
                      "by-hand|SCHEDULED|on\n"
                      "by-hand|PUBLISHED|on\n"
                      "when-due|SCHEDULED|off\n"
                      "when-due|PUBLISHED|off\n");
  free(log);
  char *ids[8];
  size_t n = pt_drain(t, ids, 8);
  assert_int_equal(n, 2);
  pt_free_ids(ids, n);
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: %s sqlite|pg\n", argv[0]);
    return 2;
  }
  pt_backend = testdb_backend_parse(argv[1]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_schedule_validates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_publish_pause_resume_cancel, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_daemon_due_future_cancel, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_two_daemons_publish_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_paused_proxy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_registry_locked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_daemon_commits_async, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_daemon_wakes_when_due, setup,
                                      teardown),
      /* Last: it unsets SENDONCE_BROKER_PASSWORD, which the setup of any
       * test after it would need. */
      cmocka_unit_test_setup_teardown(test_pika_publish, setup, teardown),
  };
  return cmocka_run_group_tests_name(argv[1], tests, NULL, NULL);
}
