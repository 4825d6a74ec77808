/* test_sink.c - the test sink answers and counts as documented.
 *
 * Starts sendonce-sink on a free loopback port (no shared server needed,
 * hence label `unit`), sends requests with libcurl and checks the answers,
 * the /stats counters and the log file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "sink_client.h"
#include "testenv.h"

struct answer {
  long status;
  char retry_after[32];
  int replayed;
  char body[1024];
  size_t body_len;
};

static size_t header_cb(char *buf, size_t size, size_t n, void *ud)
{
  struct answer *a = ud;
  size_t len = size * n;
  const char *ra = "Retry-After:";
  if (len > strlen(ra) && strncasecmp(buf, ra, strlen(ra)) == 0) {
    size_t off = strlen(ra);
    while (off < len && buf[off] == ' ')
      off++;
    size_t vlen = 0;
    while (off + vlen < len && buf[off + vlen] != '\r' &&
           buf[off + vlen] != '\n' && vlen < sizeof(a->retry_after) - 1)
      vlen++;
    memcpy(a->retry_after, buf + off, vlen);
    a->retry_after[vlen] = '\0';
  }
  if (strncasecmp(buf, "Idempotent-Replayed: true", 25) == 0)
    a->replayed = 1;
  return len;
}

static size_t body_cb(char *buf, size_t size, size_t n, void *ud)
{
  struct answer *a = ud;
  size_t len = size * n;
  size_t room = sizeof(a->body) - 1 - a->body_len;
  size_t take = len < room ? len : room;
  memcpy(a->body + a->body_len, buf, take);
  a->body_len += take;
  a->body[a->body_len] = '\0';
  return len;
}

static void setup_post(CURL *c, struct sink_client *s, const char *path,
                       const char *key, const char *recipient, const char *body,
                       struct answer *a, struct curl_slist **headers)
{
  char url[256], line[256];
  snprintf(url, sizeof(url), "%s%s", sink_client_url(s), path);
  *headers = NULL;
  if (key != NULL) {
    snprintf(line, sizeof(line), "Idempotency-Key: %s", key);
    *headers = curl_slist_append(*headers, line);
  }
  if (recipient != NULL) {
    snprintf(line, sizeof(line), "X-Recipient: %s", recipient);
    *headers = curl_slist_append(*headers, line);
  }
  memset(a, 0, sizeof(*a));
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, *headers);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
}

/* POST `body` to the sink with the given key (NULL: none); the answer. */
static struct answer post_full(struct sink_client *s, const char *path,
                               const char *key, const char *recipient,
                               const char *body)
{
  struct answer a;
  struct curl_slist *headers;
  CURL *c = curl_easy_init();
  assert_non_null(c);
  setup_post(c, s, path, key, recipient, body, &a, &headers);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  return a;
}

static long post(struct sink_client *s, const char *key)
{
  return post_full(s, "/send", key, NULL, "{\"hello\":1}").status;
}

static struct sink_client *start(const char *const *args)
{
  char err[256];
  struct sink_client *s = sink_client_start(args, err, sizeof(err));
  if (s == NULL)
    fail_msg("%s", err);
  return s;
}

static void stop(struct sink_client *s)
{
  assert_int_equal(sink_client_stop(s), 0);
}

static int64_t stat_of(struct sink_client *s, const char *name)
{
  struct json_object *st = sink_client_stats(s);
  assert_non_null(st);
  int64_t v = sink_client_stat(st, name);
  json_object_put(st);
  return v;
}

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void test_counts_unique_and_duplicates(void **state)
{
  (void)state;
  struct sink_client *s = start(NULL);
  assert_int_equal(post(s, "camp:u-1"), 200);
  assert_int_equal(post(s, "camp:u-2"), 200);
  assert_int_equal(post(s, "camp:u-1"), 200);
  assert_int_equal(post(s, "camp:u-1"), 200);
  struct json_object *st = sink_client_stats(s);
  assert_non_null(st);
  assert_int_equal(sink_client_stat(st, "total"), 4);
  assert_int_equal(sink_client_stat(st, "unique_keys"), 2);
  assert_int_equal(sink_client_stat(st, "raw_duplicates"), 2);
  assert_int_equal(sink_client_stat(st, "accepted"), 4);
  assert_int_equal(sink_client_stat(st, "accepted_duplicates"), 2);
  assert_int_equal(sink_client_stat(st, "honoured_duplicates"), 0);
  assert_int_equal(sink_client_stat(st, "in_flight"), 0);
  struct json_object *dups, *by_status, *by_path, *v;
  assert_true(json_object_object_get_ex(st, "duplicated_keys", &dups));
  assert_int_equal(json_object_array_length(dups), 1);
  assert_string_equal(
      json_object_get_string(json_object_array_get_idx(dups, 0)), "camp:u-1");
  assert_true(json_object_object_get_ex(st, "by_status", &by_status));
  assert_true(json_object_object_get_ex(by_status, "200", &v));
  assert_int_equal(json_object_get_int(v), 4);
  assert_true(json_object_object_get_ex(st, "by_path", &by_path));
  assert_true(json_object_object_get_ex(by_path, "/send", &v));
  assert_int_equal(json_object_get_int(v), 4);
  json_object_put(st);

  assert_int_equal(sink_client_reset(s), 200);
  assert_int_equal(stat_of(s, "total"), 0);
  assert_int_equal(stat_of(s, "unique_keys"), 0);
  assert_int_equal(post(s, "camp:u-1"), 200);
  assert_int_equal(stat_of(s, "raw_duplicates"), 0);
  stop(s);
}

static void test_missing_key_is_400_and_counted_apart(void **state)
{
  (void)state;
  struct sink_client *s = start(NULL);
  struct answer a = post_full(s, "/send", NULL, NULL, "x");
  assert_int_equal(a.status, 400);
  assert_non_null(strstr(a.body, "Idempotency-Key"));
  assert_int_equal(post(s, ""), 400); /* an empty key is no key */
  assert_int_equal(stat_of(s, "missing_key"), 2);
  assert_int_equal(stat_of(s, "unique_keys"), 0);
  assert_int_equal(stat_of(s, "accepted"), 0);
  stop(s);
}

static void test_honour_mode_replays(void **state)
{
  (void)state;
  const char *args[] = {"--honour-idempotency", NULL};
  struct sink_client *s = start(args);
  struct answer first = post_full(s, "/send", "c:r1", NULL, "b");
  assert_int_equal(first.status, 200);
  assert_false(first.replayed);
  struct answer again = post_full(s, "/send", "c:r1", NULL, "b");
  assert_int_equal(again.status, 200);
  assert_true(again.replayed);
  assert_int_equal(stat_of(s, "honoured_duplicates"), 1);
  assert_int_equal(stat_of(s, "raw_duplicates"), 1);
  assert_int_equal(stat_of(s, "accepted"), 1);
  assert_int_equal(stat_of(s, "accepted_duplicates"), 0);

  /* A failed request is not remembered: its retry is processed anew. */
  assert_int_equal(sink_client_mode(s, "{\"error_rate\":1}"), 200);
  assert_int_equal(post(s, "c:r2"), 500);
  assert_int_equal(sink_client_mode(s, "{\"error_rate\":0}"), 200);
  struct answer retry = post_full(s, "/send", "c:r2", NULL, "b");
  assert_int_equal(retry.status, 200);
  assert_false(retry.replayed);
  assert_int_equal(stat_of(s, "honoured_duplicates"), 1);
  assert_int_equal(stat_of(s, "accepted"), 2);
  stop(s);
}

static void test_error_rate_and_runtime_mode(void **state)
{
  (void)state;
  const char *args[] = {"--error-rate", "1", NULL};
  struct sink_client *s = start(args);
  for (int i = 0; i < 5; i++)
    assert_int_equal(post(s, "e:r"), 500);
  assert_int_equal(stat_of(s, "raw_duplicates"), 4);
  assert_int_equal(stat_of(s, "accepted"), 0);
  assert_int_equal(sink_client_mode(s, "{\"error_rate\":0.0}"), 200);
  assert_int_equal(post(s, "e:r"), 200);

  /* Half the requests fail at rate 0.5 (loose bounds: 200 rolls). */
  assert_int_equal(sink_client_mode(s, "{\"error_rate\":0.5}"), 200);
  int fails = 0;
  for (int i = 0; i < 200; i++)
    fails += post(s, "e:half") == 500;
  assert_in_range(fails, 60, 140);

  /* A bad mode body changes nothing. */
  assert_int_equal(sink_client_mode(s, "{\"error_rate\":0,\"bogus\":1}"), 400);
  assert_int_equal(sink_client_mode(s, "{\"error_rate\":2}"), 400);
  assert_int_equal(sink_client_mode(s, "not json"), 400);
  assert_int_equal(sink_client_mode(s, "{\"reject_pattern\":\"(\"}"), 400);
  struct json_object *st = sink_client_stats(s), *mode, *rate;
  assert_true(json_object_object_get_ex(st, "mode", &mode));
  assert_true(json_object_object_get_ex(mode, "error_rate", &rate));
  assert_true(json_object_get_double(rate) == 0.5);
  json_object_put(st);
  stop(s);
}

static void test_fail_until_then_recover(void **state)
{
  (void)state;
  const char *args[] = {"--fail-until-ms", "60000", NULL};
  struct sink_client *s = start(args);
  assert_int_equal(post(s, "f:1"), 500);
  /* "500 for a while, then recover", set at runtime. */
  assert_int_equal(sink_client_mode(s, "{\"fail_until_ms\":1500}"), 200);
  int64_t t0 = now_ms();
  assert_int_equal(post(s, "f:1"), 500);
  while (now_ms() - t0 < 1600)
    sleep_ms(20);
  assert_int_equal(post(s, "f:1"), 200);
  assert_int_equal(stat_of(s, "accepted"), 1);
  stop(s);
}

static void test_429_with_retry_after(void **state)
{
  (void)state;
  const char *args[] = {"--status-429", "1", "--retry-after", "7", NULL};
  struct sink_client *s = start(args);
  struct answer a = post_full(s, "/send", "t:1", NULL, "b");
  assert_int_equal(a.status, 429);
  assert_string_equal(a.retry_after, "7");
  assert_int_equal(sink_client_mode(s, "{\"retry_after\":3}"), 200);
  a = post_full(s, "/send", "t:1", NULL, "b");
  assert_string_equal(a.retry_after, "3");
  assert_int_equal(sink_client_mode(s, "{\"status_429\":0}"), 200);
  assert_int_equal(post(s, "t:1"), 200);
  stop(s);
}

static void test_reject_pattern(void **state)
{
  (void)state;
  const char *args[] = {"--reject-pattern", "^bad", NULL};
  struct sink_client *s = start(args);
  struct answer a = post_full(s, "/send", "camp:with:colons:bad-1", NULL, "b");
  assert_int_equal(a.status, 422);
  struct json_object *body = json_tokener_parse(a.body), *v;
  assert_non_null(body);
  assert_true(json_object_object_get_ex(body, "error", &v));
  assert_non_null(strstr(json_object_get_string(v), "reject"));
  assert_true(json_object_object_get_ex(body, "recipient", &v));
  assert_string_equal(json_object_get_string(v), "bad-1");
  json_object_put(body);
  assert_int_equal(post(s, "camp:good-1"), 200);
  /* X-Recipient wins over the key. */
  assert_int_equal(
      post_full(s, "/send", "camp:x", "bad@example.org", "b").status, 422);
  assert_int_equal(sink_client_mode(s, "{\"reject_pattern\":\"example\"}"),
                   200);
  assert_int_equal(post_full(s, "/send", "camp:y", "a@example.org", "b").status,
                   422);
  assert_int_equal(post(s, "camp:bad-2"), 200);
  assert_int_equal(sink_client_mode(s, "{\"reject_pattern\":null}"), 200);
  assert_int_equal(post_full(s, "/send", "camp:z", "a@example.org", "b").status,
                   200);
  stop(s);
}

/* Run `n` requests at once with curl multi; returns ms taken and fills
 * codes[]. */
static int64_t post_parallel(struct sink_client *s, int n, long *codes)
{
  CURLM *m = curl_multi_init();
  CURL *easy[64];
  struct answer ans[64];
  struct curl_slist *hdrs[64];
  char key[64];
  assert_true(n <= 64);
  int64_t t0 = now_ms();
  for (int i = 0; i < n; i++) {
    easy[i] = curl_easy_init();
    snprintf(key, sizeof(key), "par:%d", i);
    setup_post(easy[i], s, "/send", key, NULL, "b", &ans[i], &hdrs[i]);
    curl_multi_add_handle(m, easy[i]);
  }
  int running = 1;
  while (running > 0) {
    curl_multi_perform(m, &running);
    if (running > 0)
      curl_multi_poll(m, NULL, 0, 100, NULL);
  }
  int64_t took = now_ms() - t0;
  for (int i = 0; i < n; i++) {
    curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &codes[i]);
    curl_multi_remove_handle(m, easy[i]);
    curl_easy_cleanup(easy[i]);
    curl_slist_free_all(hdrs[i]);
  }
  curl_multi_cleanup(m);
  return took;
}

static void test_latency_does_not_block_threads(void **state)
{
  (void)state;
  /* 2 server threads, 60 requests of 300 ms each: if a wait held a thread
   * this would take 9 s; suspended, it takes a little over 300 ms. */
  const char *args[] = {"--latency-ms", "300", "--threads", "2", NULL};
  struct sink_client *s = start(args);
  long codes[60];
  int64_t took = post_parallel(s, 60, codes);
  print_message("60 requests of 300 ms on 2 threads took %lld ms\n",
                (long long)took);
  for (int i = 0; i < 60; i++)
    assert_int_equal(codes[i], 200);
  assert_in_range(took, 300, 4500);
  assert_int_equal(stat_of(s, "unique_keys"), 60);
  stop(s);
}

static void test_hang_until_mode_changes(void **state)
{
  (void)state;
  /* Idle connections are closed after 1 s; a hung one is not idle. */
  const char *args[] = {"--hang", "--idle-timeout-s", "1", NULL};
  struct sink_client *s = start(args);
  CURLM *m = curl_multi_init();
  CURL *c = curl_easy_init();
  struct answer a;
  struct curl_slist *hdrs;
  setup_post(c, s, "/send", "h:1", NULL, "b", &a, &hdrs);
  curl_multi_add_handle(m, c);
  int running = 1;
  int64_t t0 = now_ms();
  while (now_ms() - t0 < 2000) {
    curl_multi_perform(m, &running);
    curl_multi_poll(m, NULL, 0, 50, NULL);
  }
  assert_int_equal(running, 1); /* still waiting for an answer */
  assert_int_equal(stat_of(s, "in_flight"), 1);
  assert_int_equal(stat_of(s, "total"), 1);
  assert_int_equal(sink_client_mode(s, "{\"hang\":false}"), 200);
  t0 = now_ms();
  while (running > 0 && now_ms() - t0 < 5000) {
    curl_multi_perform(m, &running);
    if (running > 0)
      curl_multi_poll(m, NULL, 0, 50, NULL);
  }
  assert_int_equal(running, 0);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
  assert_int_equal(a.status, 200);
  curl_multi_remove_handle(m, c);
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  curl_multi_cleanup(m);
  assert_int_equal(stat_of(s, "in_flight"), 0);
  stop(s);
}

static uint64_t fnv1a(const char *s)
{
  uint64_t h = 14695981039346656037ULL;
  for (; *s != '\0'; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

/* The log, line by line, as parsed JSON objects (at most max). */
static int read_log(const char *path, struct json_object **lines, int max)
{
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char buf[4096];
  int n = 0;
  while (fgets(buf, sizeof(buf), f) != NULL) {
    assert_true(n < max);
    lines[n] = json_tokener_parse(buf);
    assert_non_null(lines[n]);
    n++;
  }
  fclose(f);
  return n;
}

static const char *field(struct json_object *o, const char *name)
{
  struct json_object *v;
  assert_true(json_object_object_get_ex(o, name, &v));
  return json_object_get_string(v);
}

static void test_log_file(void **state)
{
  (void)state;
  char *base = testenv_unique("sink-log");
  char path[512];
  snprintf(path, sizeof(path), "/tmp/%s.jsonl", base);
  free(base);
  const char *args[] = {"--log", path, "--reject-pattern", "no", NULL};
  struct sink_client *s = start(args);
  assert_int_equal(post_full(s, "/v1/email", "k:yes", NULL, "body-1").status,
                   200);
  assert_int_equal(post_full(s, "/v1/sms", "k:no", NULL, "body-2").status, 422);
  assert_int_equal(post_full(s, "/v1/sms", NULL, NULL, "body-3").status, 400);
  /* A clean shutdown flushes the buffered lines. */
  stop(s);

  struct json_object *lines[8];
  int n = read_log(path, lines, 8);
  assert_int_equal(n, 3);
  char hash[32];
  assert_string_equal(field(lines[0], "path"), "/v1/email");
  assert_string_equal(field(lines[0], "key"), "k:yes");
  assert_string_equal(field(lines[0], "recipient"), "yes");
  snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)fnv1a("body-1"));
  assert_string_equal(field(lines[0], "body_hash"), hash);
  assert_string_equal(field(lines[0], "status"), "200");
  assert_true(strtoll(field(lines[0], "ts_ms"), NULL, 10) > 1700000000000LL);
  assert_string_equal(field(lines[1], "status"), "422");
  assert_string_equal(field(lines[1], "recipient"), "no");
  assert_string_equal(field(lines[2], "status"), "400");
  struct json_object *v;
  assert_true(json_object_object_get_ex(lines[2], "key", &v));
  assert_null(v);
  for (int i = 0; i < n; i++)
    json_object_put(lines[i]);

  /* /stats flushes too; /reset truncates. */
  const char *args2[] = {"--log", path, NULL};
  s = start(args2);
  assert_int_equal(sink_client_reset(s), 200);
  assert_int_equal(post(s, "k:again"), 200);
  assert_int_equal(stat_of(s, "total"), 1);
  n = read_log(path, lines, 8);
  assert_int_equal(n, 1);
  assert_string_equal(field(lines[0], "key"), "k:again");
  json_object_put(lines[0]);
  stop(s);
  unlink(path);
}

static void test_static_files(void **state)
{
  (void)state;
  char dir[] = "/tmp/sink-static-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof(path), "%s/list.jsonl", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"id\":\"u-1\",\"address\":\"a@example.org\"}\n", f);
  fclose(f);
  const char *args[] = {"--static-dir", dir, NULL};
  struct sink_client *s = start(args);
  char url[256];
  struct answer a;
  memset(&a, 0, sizeof(a));
  CURL *c = curl_easy_init();
  snprintf(url, sizeof(url), "%s/files/list.jsonl", sink_client_url(s));
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body,
                      "{\"id\":\"u-1\",\"address\":\"a@example.org\"}\n");
  snprintf(url, sizeof(url), "%s/files/missing.jsonl", sink_client_url(s));
  curl_easy_setopt(c, CURLOPT_URL, url);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
  assert_int_equal(a.status, 404);
  curl_easy_cleanup(c);
  stop(s);
  unlink(path);
  rmdir(dir);
}

static void test_batch_members_counted(void **state)
{
  (void)state;
  const char *args[] = {"--batch-ids", "messages.ref", NULL};
  struct sink_client *s = start(args);
  /* Two batches with different keys share recipient u-2: the keys alone
   * would not show that u-2 got the message twice. */
  assert_int_equal(post_full(s, "/batch", "c:1:batch:00000000000000aa", NULL,
                             "{\"messages\":[{\"to\":\"a\",\"ref\":\"u-1\"},"
                             "{\"to\":\"b\",\"ref\":\"u-2\"}]}")
                       .status,
                   200);
  assert_int_equal(post_full(s, "/batch", "c:1:batch:00000000000000bb", NULL,
                             "{\"messages\":[{\"to\":\"b\",\"ref\":\"u-2\"},"
                             "{\"to\":\"c\",\"ref\":\"u-3\"}]}")
                       .status,
                   200);
  /* A refused batch sends nobody. */
  assert_int_equal(sink_client_mode(s, "{\"error_rate\":1}"), 200);
  assert_int_equal(post_full(s, "/batch", "c:1:batch:00000000000000cc", NULL,
                             "{\"messages\":[{\"to\":\"a\",\"ref\":\"u-1\"}]}")
                       .status,
                   500);
  struct json_object *st = sink_client_stats(s), *twice;
  assert_non_null(st);
  assert_int_equal(sink_client_stat(st, "accepted_duplicates"), 0);
  assert_int_equal(sink_client_stat(st, "recipient_accepted"), 4);
  assert_int_equal(sink_client_stat(st, "recipient_accepted_duplicates"), 1);
  assert_true(json_object_object_get_ex(st, "recipient_twice_keys", &twice));
  assert_int_equal(json_object_array_length(twice), 1);
  assert_string_equal(
      json_object_get_string(json_object_array_get_idx(twice, 0)), "c:1:u-2");
  json_object_put(st);
  stop(s);
}

static void test_bad_flag_exits_2(void **state)
{
  (void)state;
  char err[256];
  const char *bad[][3] = {
      {"--bogus", NULL, NULL},      {"--error-rate", "1.5", NULL},
      {"--port", "70000", NULL},    {"--reject-pattern", "(", NULL},
      {"--latency-ms", NULL, NULL}, {"--max-connections", "0", NULL},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    /* It exits before reporting a port: start fails. */
    assert_null(sink_client_start(bad[i], err, sizeof(err)));
  }
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s --error-rate 2 2>/dev/null", SINK_BIN);
  int rc = system(cmd);
  assert_true(WIFEXITED(rc));
  assert_int_equal(WEXITSTATUS(rc), 2);
  snprintf(cmd, sizeof(cmd), "%s --help >/dev/null", SINK_BIN);
  rc = system(cmd);
  assert_int_equal(WEXITSTATUS(rc), 0);
}

int main(void)
{
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counts_unique_and_duplicates),
      cmocka_unit_test(test_missing_key_is_400_and_counted_apart),
      cmocka_unit_test(test_honour_mode_replays),
      cmocka_unit_test(test_error_rate_and_runtime_mode),
      cmocka_unit_test(test_fail_until_then_recover),
      cmocka_unit_test(test_429_with_retry_after),
      cmocka_unit_test(test_reject_pattern),
      cmocka_unit_test(test_latency_does_not_block_threads),
      cmocka_unit_test(test_hang_until_mode_changes),
      cmocka_unit_test(test_log_file),
      cmocka_unit_test(test_static_files),
      cmocka_unit_test(test_batch_members_counted),
      cmocka_unit_test(test_bad_flag_exits_2),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return failed;
}
