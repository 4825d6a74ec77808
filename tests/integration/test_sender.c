/* test_sender.c - the provider sender against a real HTTP server.
 *
 * The server (sender_testutil.h) is a small libmicrohttpd daemon on
 * 127.0.0.1 started by each case, which records every request and answers
 * according to a mode: ok, 500 for a while, 429 with Retry-After, a fixed
 * status, or hang.
 */
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
#include <unistd.h>

#include "clock.h"
#include "sender_testutil.h"
#include "sender.h"

/* ---- cases ----------------------------------------------------------------
 */

/* 1,000 recipients at concurrency 16: each SENT once, each request carries
 * its own key, the rendered body, the headers; connections are reused. */
static void test_thousand_sent_once(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_OK);
  sv->latency_ms = 2;
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.concurrency = 16;
  struct sender *s = test_new_sender(&p, "camp-1000");
  struct outcomes o;
  test_drive(s, 1000, &o, 100, 60000);
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
    assert_int_equal(srv_recs_for(sv, key, &at), 1);
    json_object *body = json_tokener_parse(sv->recs[at].body);
    assert_non_null(body);
    assert_string_equal(test_json_str(body, "to"), addr);
    assert_string_equal(test_json_str(body, "campaign"), "camp-1000");
    assert_string_equal(test_json_str(body, "name"), name);
    assert_string_equal(test_json_str(body, "subject"), "Spring \"sale\"");
    json_object_put(body);
    assert_string_equal(sv->recs[at].auth, test_secret);
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
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
  srv_stop(sv);
}

/* 500s for 400 ms and the first 40 requests, then recovery: all SENT;
 * every retry repeats the key and the body; exactly one request per key
 * succeeded. */
static void test_500_then_recovery(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_FAIL_UNTIL);
  sv->fail_until_ms = 400;
  sv->fail_first = 40;
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.concurrency = 8;
  p.max_retries = 8;
  p.retry_base_ms = 50;
  struct sender *s = test_new_sender(&p, "camp-500");
  struct outcomes o;
  test_drive(s, 40, &o, 100, 30000);
  size_t retried = 0;
  for (size_t i = 0; i < 40; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
    char key[64];
    snprintf(key, sizeof(key), "camp-500:r-%zu", i);
    size_t first = 0;
    size_t c = srv_recs_for(sv, key, &first);
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
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
  srv_stop(sv);
}

/* run_429: each key's first request gets a 429 with Retry-After (delta
 * seconds or an HTTP-date); the retry must wait for it. */
static void run_429(bool http_date)
{
  struct srv *sv = srv_start(MODE_429_FIRST);
  sv->retry_after_date = http_date;
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.retry_base_ms = 10;
  struct sender *s = test_new_sender(&p, "camp-429");
  struct outcomes o;
  test_drive(s, 4, &o, 100, 20000);
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
    assert_int_equal(o.r[i].attempts, 2);
    char key[64];
    snprintf(key, sizeof(key), "camp-429:r-%zu", i);
    size_t first = 0;
    assert_int_equal(srv_recs_for(sv, key, &first), 2);
    int64_t t1 = sv->recs[first].t_ms, t2 = -1;
    for (size_t j = first + 1; j < sv->n; j++)
      if (strcmp(sv->recs[j].key, key) == 0)
        t2 = sv->recs[j].t_ms;
    assert_int_equal(sv->recs[first].status, 429);
    /* "1", or a date 2 s ahead at 1 s resolution: at least ~1 s either
     * way, where the backoff alone would have retried after ~10 ms */
    if (t2 - t1 < 900)
      fail_msg("retry after %lld ms despite Retry-After", (long long)(t2 - t1));
  }
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
  srv_stop(sv);
}

/* 429 with Retry-After: 1 - the retry waits a second. */
static void test_429_retry_after(void **state)
{
  (void)state;
  run_429(false);
}

/* 429 with Retry-After as an HTTP-date. */
static void test_429_retry_after_date(void **state)
{
  (void)state;
  run_429(true);
}

/* A fixed answer from the provider, n recipients. */
static void run_status(int status, const char *body, size_t body_len,
                       int max_retries, struct outcomes *o, struct srv **svp)
{
  struct srv *sv = srv_start(MODE_STATUS);
  sv->status = status;
  sv->resp_body = body;
  sv->resp_len = body_len;
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.max_retries = max_retries;
  struct sender *s = test_new_sender(&p, "camp-st");
  test_drive(s, 3, o, 100, 20000);
  sender_free(s);
  test_provider_free(&p);
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
  test_outcomes_free(&o);
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
  test_outcomes_free(&o);
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
    assert_null(strstr(o.r[i].reason, "test-test_secret"));
  }
  assert_int_equal(sv->n, 3);
  test_outcomes_free(&o);
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
  test_outcomes_free(&o);
  srv_stop(sv);
  free(body);
}

/* A hanging test_provider: every attempt ends at timeout_ms, is retried with
 * the same key, and the recipient is GAVE_UP after max_retries; meanwhile
 * sender_poll() keeps returning within its timeout (checked by test_drive). */
static void test_hang_times_out_and_gives_up(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_HANG);
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.timeout_ms = 300;
  p.max_retries = 2;
  p.retry_base_ms = 20;
  p.concurrency = 3;
  struct sender *s = test_new_sender(&p, "camp-hang");
  struct outcomes o;
  int64_t t0 = clock_monotonic_ms();
  test_drive(s, 3, &o, 50, 20000);
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
    assert_int_equal(srv_recs_for(sv, key, NULL), 3);
  }
  assert_int_equal(sv->n, 9);
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
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
  sv->fail_first = 1; /* r-0's first attempt */
  sv->latency_ms = 500;
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.concurrency = 1;
  p.retry_base_ms = 20;
  struct sender *s = test_new_sender(&p, "camp-spin");
  struct outcomes o;
  int64_t wall0 = clock_monotonic_ms(), cpu0 = thread_cpu_ms();
  test_drive(s, 3, &o, 1000, 20000);
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
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
  srv_stop(sv);
}

/* 50 requests per second: 100 requests take at least ~2 s. */
static void test_rate_limit(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_OK);
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.concurrency = 16;
  p.rate_per_s = 50;
  struct sender *s = test_new_sender(&p, "camp-rate");
  struct outcomes o;
  int64_t t0 = clock_monotonic_ms();
  test_drive(s, 100, &o, 100, 30000);
  int64_t took = clock_monotonic_ms() - t0;
  if (took < 1900)
    fail_msg("100 requests at 50/s took only %lld ms", (long long)took);
  for (size_t i = 0; i < 100; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  assert_int_equal(sv->n, 100);
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
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
  struct config_provider p = test_provider(sv->port, test_tpl_batch);
  p.batch_size = 10;
  p.concurrency = 2;
  struct sender *s = test_new_sender(&p, "camp-b");
  struct outcomes o;
  test_drive_ex(s, 95, &o, 100, 20000, true);
  for (size_t i = 0; i < 95; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  assert_int_equal(sv->n, 10);
  unsigned char seen[95] = {0};
  size_t partial = 0;
  for (size_t j = 0; j < sv->n; j++) {
    json_object *body = json_tokener_parse(sv->recs[j].body);
    assert_non_null(body);
    assert_string_equal(test_json_str(body, "campaign"), "camp-b");
    json_object *msgs;
    assert_true(json_object_object_get_ex(body, "messages", &msgs));
    size_t k = json_object_array_length(msgs);
    assert_true(k == 10 || k == 5);
    partial += k == 5;
    const char *ids[10];
    for (size_t m = 0; m < k; m++) {
      json_object *it = json_object_array_get_idx(msgs, m);
      ids[m] = test_json_str(it, "ref");
      size_t idx;
      assert_int_equal(sscanf(ids[m], "r-%zu", &idx), 1);
      assert_true(idx < 95);
      assert_int_equal(seen[idx]++, 0);
      char addr[64];
      snprintf(addr, sizeof(addr), "r-%zu@example.org", idx);
      assert_string_equal(test_json_str(it, "to"), addr);
    }
    char key[SENDER_BATCH_KEY_MAX];
    assert_int_equal(sender_batch_key("camp-b", ids, k, key, sizeof(key)),
                     SO_OK);
    assert_string_equal(sv->recs[j].key, key);
    json_object_put(body);
  }
  assert_int_equal(partial, 1);
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
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
  struct config_provider p = test_provider(sv->port, test_tpl_batch);
  p.batch_size = 3;
  struct sender *s = test_new_sender(&p, "camp-r");
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
  test_provider_free(&p);
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
  struct config_provider p = test_provider(ntohs(a.sin_port), test_tpl_single);
  p.max_retries = 2;
  p.retry_base_ms = 10;
  struct sender *s = test_new_sender(&p, "camp-refused");
  struct outcomes o;
  test_drive(s, 2, &o, 100, 10000);
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_GAVE_UP);
    assert_int_equal(o.r[i].attempts, 3);
    assert_non_null(strstr(o.r[i].reason, "curl: "));
  }
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
}

/* cancel_all drops queued and hanging work at once. */
static void test_cancel_all(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_HANG);
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.concurrency = 2;
  struct sender *s = test_new_sender(&p, "camp-cancel");
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
  test_provider_free(&p);
  srv_stop(sv);
}

/* id_index: N of "r-N", -1 if it is not one. */
static int id_index(const char *id)
{
  char *end = NULL;
  if (!id || strncmp(id, "r-", 2) != 0)
    return -1;
  long n = strtol(id + 2, &end, 10);
  return *end || n < 0 || n > 1000 ? -1 : (int)n;
}

/* sender_drain: requests waiting for a retry and queued recipients are
 * dropped at once; requests in transfer are awaited and their outcomes
 * returned (SENT, or GAVE_UP without a retry); nothing new starts. */
static void test_drain_awaits_transfers(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_FAIL_UNTIL);
  sv->fail_first = 5; /* r-0..r-3, then one of the second wave */
  sv->latency_ms = 300;
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.concurrency = 4;
  p.max_retries = 5;
  p.retry_base_ms = 4000; /* the first wave waits 2-4 s to retry */
  struct sender *s = test_new_sender(&p, "camp-drain");
  for (int i = 0; i < 10; i++) {
    char id[16];
    snprintf(id, sizeof(id), "r-%d", i);
    struct sender_recipient r = {id, "x@y", "{\"name\":\"n\"}"};
    assert_int_equal(sender_submit(s, &r), SO_OK);
  }
  /* Until the second wave (r-4..r-7) is on the wire. */
  struct sender_result res[16];
  size_t k;
  int64_t until = clock_monotonic_ms() + 3000;
  for (;;) {
    assert_int_equal(sender_poll(s, 10, res, 16, &k), SO_OK);
    assert_int_equal(k, 0);
    pthread_mutex_lock(&sv->mu);
    size_t seen = sv->n;
    pthread_mutex_unlock(&sv->mu);
    if (seen >= 8)
      break;
    assert_true(clock_monotonic_ms() < until);
  }
  /* The fifth arrival (one of r-4..r-7) got the last 500. */
  pthread_mutex_lock(&sv->mu);
  int failed = id_index(strrchr(sv->recs[4].key, ':') + 1);
  pthread_mutex_unlock(&sv->mu);
  assert_true(failed >= 4 && failed <= 7);
  /* r-0..r-3 wait for a retry, r-8 and r-9 are queued: dropped. */
  assert_int_equal(sender_drain(s), 6);
  assert_int_equal(sender_in_flight(s), 4);
  struct sender_recipient late = {"r-10", "x@y", NULL};
  assert_int_equal(sender_submit(s, &late), SO_ERR_CONFLICT);
  bool got[10] = {false};
  int64_t t0 = clock_monotonic_ms();
  while (sender_in_flight(s) > 0) {
    assert_true(clock_monotonic_ms() - t0 < 2000);
    assert_int_equal(sender_poll(s, 100, res, 16, &k), SO_OK);
    for (size_t i = 0; i < k; i++) {
      int n = id_index(res[i].recipient_id);
      assert_true(n >= 4 && n <= 7);
      assert_false(got[n]);
      got[n] = true;
      assert_int_equal(res[i].attempts, 1);
      if (n == failed) {
        assert_int_equal(res[i].outcome, SENDER_GAVE_UP);
        assert_int_equal(res[i].http_status, 500);
        assert_non_null(strstr(res[i].reason, "not retried"));
      } else {
        assert_int_equal(res[i].outcome, SENDER_SENT);
      }
      sender_result_cleanup(&res[i]);
    }
  }
  for (int n = 4; n <= 7; n++)
    assert_true(got[n]);
  /* Nothing more reaches the provider: no retry, no queued recipient. */
  assert_int_equal(sender_poll(s, 300, res, 16, &k), SO_OK);
  assert_int_equal(k, 0);
  pthread_mutex_lock(&sv->mu);
  assert_int_equal(sv->n, 8);
  pthread_mutex_unlock(&sv->mu);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_int_equal(st.requests, 8);
  assert_int_equal(st.retries, 0);
  /* A rebind ends the drain. */
  char err[256];
  assert_int_equal(
      sender_rebind(s, "camp-drain-2", test_content, err, sizeof(err)), SO_OK);
  assert_int_equal(sender_submit(s, &late), SO_OK);
  sender_free(s);
  test_provider_free(&p);
  srv_stop(sv);
}

/* One sender, two campaigns: the second uses the new campaign id in keys
 * and bodies, and the warm connections (no new ones). */
static void test_rebind_keeps_connections(void **state)
{
  (void)state;
  struct srv *sv = srv_start(MODE_OK);
  struct config_provider p = test_provider(sv->port, test_tpl_single);
  p.concurrency = 2;
  struct sender *s = test_new_sender(&p, "camp-a");
  struct outcomes o;
  test_drive(s, 20, &o, 100, 10000);
  test_outcomes_free(&o);
  int conns = sv->connections;
  assert_true(conns >= 1 && conns <= 2);
  char err[256];
  assert_int_equal(
      sender_rebind(s, "camp-b", "{\"subject\":\"B\"}", err, sizeof(err)),
      SO_OK);
  test_drive(s, 20, &o, 100, 10000);
  for (size_t i = 0; i < 20; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  test_outcomes_free(&o);
  assert_int_equal(sv->n, 40);
  assert_int_equal(srv_recs_for(sv, "camp-b:r-7", NULL), 1);
  size_t at = 0;
  assert_int_equal(srv_recs_for(sv, "camp-b:r-0", &at), 1);
  assert_non_null(strstr(sv->recs[at].body, "\"subject\":\"B\""));
  assert_int_equal(sv->connections, conns);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_int_equal(st.sent, 20);
  /* busy: refused; bad test_content: refused, old campaign kept */
  struct sender_recipient r = {"x", "x@y", "{\"name\":\"n\"}"};
  assert_int_equal(sender_submit(s, &r), SO_OK);
  assert_int_equal(sender_rebind(s, "camp-c", NULL, err, sizeof(err)),
                   SO_ERR_CONFLICT);
  assert_int_equal(sender_cancel_all(s), 1);
  assert_int_equal(sender_rebind(s, "camp-c", "{}", err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_non_null(strstr(err, "content.subject"));
  /* the failed rebind left camp-b in place: its key and its body */
  test_drive(s, 1, &o, 100, 10000);
  assert_int_equal(o.r[0].outcome, SENDER_SENT);
  test_outcomes_free(&o);
  assert_int_equal(srv_recs_for(sv, "camp-b:r-0", NULL), 2);
  assert_int_equal(srv_recs_for(sv, "camp-c:r-0", NULL), 0);
  at = sv->n - 1;
  assert_string_equal(sv->recs[at].key, "camp-b:r-0");
  assert_non_null(strstr(sv->recs[at].body, "\"campaign\":\"camp-b\""));
  assert_non_null(strstr(sv->recs[at].body, "\"subject\":\"B\""));
  sender_free(s);
  test_provider_free(&p);
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
      {NULL, NULL, "Authorization Bearer test-test_secret-7f3a", 1,
       "auth_header"},
      {NULL, NULL, "X-Key: a\r\nX-Evil: b", 1, "auth_header"},
      {NULL, NULL, NULL, 5, "{{#recipients}}"},
      {NULL, "{\"to\":\"{{addr}}\"}", NULL, 1, "unknown placeholder"},
      {NULL, "{\"s\":\"{{content.nope}}\"}", NULL, 1, "content.nope"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct config_provider p = test_provider(1, test_tpl_single);
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
    struct sender *s = sender_new(&p, "c", test_content, err, sizeof(err));
    if (s || !strstr(err, cases[i].needle))
      fail_msg("case %zu: sender=%p err=%s", i, (void *)s, err);
    assert_null(strstr(err, "test-test_secret"));
    test_provider_free(&p);
  }
  /* and submit refuses a recipient id that would inject a header */
  struct config_provider p = test_provider(1, test_tpl_single);
  struct sender *s = test_new_sender(&p, "c");
  struct sender_recipient bad = {"a\r\nX-Evil: 1", "x@y", NULL};
  assert_int_equal(sender_submit(s, &bad), SO_ERR_INVALID);
  struct sender_recipient noaddr = {"a", NULL, NULL};
  assert_int_equal(sender_submit(s, &noaddr), SO_ERR_INVALID);
  sender_free(s);
  test_provider_free(&p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thousand_sent_once),
      cmocka_unit_test(test_500_then_recovery),
      cmocka_unit_test(test_429_retry_after),
      cmocka_unit_test(test_429_retry_after_date),
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
      cmocka_unit_test(test_drain_awaits_transfers),
      cmocka_unit_test(test_rebind_keeps_connections),
      cmocka_unit_test(test_new_refuses_bad_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
