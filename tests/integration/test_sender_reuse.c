/* test_sender_reuse.c - the sender reuses one curl easy handle per
 * concurrency slot; these tests prove a reused handle always carries the
 * request it was given: its own Idempotency-Key with its own body, also
 * right after the handle's previous transfer was retried, timed out or
 * could not connect. The oracle is sendonce-sink's request log, which has
 * the key and a hash (FNV-1a 64) of the body of every request it got. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "clock.h"
#include "sender.h"
#include "sender_testutil.h"
#include "sink_client.h"
#include "testenv.h"
#include "template.h"

/* One line of the sink's log. */
struct logline {
  char key[128];
  uint64_t body_hash;
  int status;
  bool replayed; /* honour mode: the first answer repeated */
};

struct sinklog {
  struct logline *l;
  size_t n;
};

static struct sink_client *sink_start(const char *const *args)
{
  char err[256] = "";
  struct sink_client *k = sink_client_start(args, err, sizeof(err));
  if (!k)
    fail_msg("sink_client_start: %s", err);
  return k;
}

/* log_read: every request in the sink's log file (flushed by /stats or
 * by the sink's exit). */
static struct sinklog log_read(const char *path)
{
  struct sinklog g = {NULL, 0};
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[1024];
  size_t cap = 0;
  while (fgets(line, sizeof(line), f)) {
    json_object *o = json_tokener_parse(line);
    assert_non_null(o);
    if (g.n == cap) {
      cap = cap ? cap * 2 : 256;
      g.l = realloc(g.l, cap * sizeof(*g.l));
      assert_non_null(g.l);
    }
    struct logline *e = &g.l[g.n++];
    snprintf(e->key, sizeof(e->key), "%s", test_json_str(o, "key"));
    e->body_hash = strtoull(test_json_str(o, "body_hash"), NULL, 16);
    json_object *st;
    assert_true(json_object_object_get_ex(o, "status", &st));
    e->status = json_object_get_int(st);
    json_object *rp;
    e->replayed = json_object_object_get_ex(o, "replayed", &rp) &&
                  json_object_get_boolean(rp);
    json_object_put(o);
  }
  fclose(f);
  return g;
}

/* expected_hash: the FNV-1a 64 hash of recipient r-<i>'s body, rendered
 * independently of the sender from the same template and data. */
static uint64_t expected_hash(const char *campaign, size_t i)
{
  char err[256] = "", id[32], addr[64], vars[64];
  struct template *t = NULL;
  assert_int_equal(template_parse(test_tpl_single, &t, err, sizeof(err)),
                   SO_OK);
  assert_int_equal(template_bind(t, campaign, test_content, err, sizeof(err)),
                   SO_OK);
  snprintf(id, sizeof(id), "r-%zu", i);
  snprintf(addr, sizeof(addr), "r-%zu@example.org", i);
  snprintf(vars, sizeof(vars), "{\"name\":\"N\\\"%zu\"}", i);
  struct template_recipient r = {id, addr, vars};
  char *body = NULL;
  size_t len = 0, bad = 0;
  assert_int_equal(
      template_render(t, &r, 1, &body, &len, &bad, err, sizeof(err)), SO_OK);
  uint64_t h = 14695981039346656037ULL;
  for (size_t k = 0; k < len; k++) {
    h ^= (unsigned char)body[k];
    h *= 1099511628211ULL;
  }
  free(body);
  template_free(t);
  return h;
}

/* check_key: every request the sink got under recipient i's key carried
 * i's body; returns how many there were, *accepted how many got a 200
 * that was not a replay. */
static size_t check_key(const struct sinklog *g, const char *campaign, size_t i,
                        size_t *accepted)
{
  char key[128];
  snprintf(key, sizeof(key), "%s:r-%zu", campaign, i);
  uint64_t want = expected_hash(campaign, i);
  size_t seen = 0;
  *accepted = 0;
  for (size_t k = 0; k < g->n; k++) {
    if (strcmp(g->l[k].key, key) != 0)
      continue;
    if (g->l[k].body_hash != want)
      fail_msg("key %s arrived with body hash %016" PRIx64
               ", its body is %016" PRIx64,
               key, g->l[k].body_hash, want);
    seen++;
    if (g->l[k].status == 200 && !g->l[k].replayed)
      (*accepted)++;
  }
  return seen;
}

static void submit_range(struct sender *s, size_t from, size_t to)
{
  for (size_t i = from; i < to; i++) {
    char id[32], addr[64], vars[64];
    snprintf(id, sizeof(id), "r-%zu", i);
    snprintf(addr, sizeof(addr), "r-%zu@example.org", i);
    snprintf(vars, sizeof(vars), "{\"name\":\"N\\\"%zu\"}", i);
    struct sender_recipient r = {id, addr, vars};
    assert_int_equal(sender_submit(s, &r), SO_OK);
  }
}

/* poll_some: poll for up to ms, storing outcomes by recipient number. */
static void poll_some(struct sender *s, int64_t ms, struct sender_result *out,
                      size_t n)
{
  int64_t end = clock_monotonic_ms() + ms;
  while (sender_in_flight(s) > 0 && clock_monotonic_ms() < end) {
    struct sender_result res[8];
    size_t k = 0;
    assert_int_equal(sender_poll(s, 20, res, 8, &k), SO_OK);
    for (size_t j = 0; j < k; j++) {
      size_t idx;
      assert_int_equal(sscanf(res[j].recipient_id, "r-%zu", &idx), 1);
      assert_true(idx < n);
      assert_null(out[idx].recipient_id);
      out[idx] = res[j];
    }
  }
}

/* Many requests through three slots, 30% of answers 500s: retries and new
 * requests take turns on the same handles. Every key arrives with its own
 * body on every attempt, and is accepted exactly once. */
static void test_reuse_interleaved_retries(void **state)
{
  (void)state;
  char *log = testenv_unique("/tmp/sendonce-reuse-retries");
  const char *args[] = {
      "--error-rate", "0.3", "--seed", "5", "--latency-ms", "1",
      "--log",        log,   NULL};
  struct sink_client *k = sink_start(args);
  struct config_provider p =
      test_provider(sink_client_port(k), test_tpl_single);
  p.concurrency = 3;
  p.max_retries = 30;
  p.retry_base_ms = 2;
  const char *camp = "camp-reuse";
  struct sender *s = test_new_sender(&p, camp);
  const size_t n = 300;
  struct outcomes o;
  test_drive(s, n, &o, 50, 60000);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_true(st.retries > 30);           /* retries really were interleaved */
  json_object *js = sink_client_stats(k); /* flushes the log */
  assert_non_null(js);
  assert_int_equal(sink_client_stat(js, "accepted"), (int64_t)n);
  assert_int_equal(sink_client_stat(js, "accepted_duplicates"), 0);
  assert_int_equal(sink_client_stat(js, "total"), (int64_t)st.requests);
  json_object_put(js);
  struct sinklog g = log_read(log);
  assert_int_equal(g.n, st.requests);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
    size_t accepted;
    size_t seen = check_key(&g, camp, i, &accepted);
    assert_int_equal(seen, (size_t)o.r[i].attempts);
    assert_int_equal(accepted, 1);
  }
  free(g.l);
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
  assert_int_equal(sink_client_stop(k), 0);
  unlink(log);
  free(log);
}

/* Batches of five through two slots with 30% 500s: every attempt under a
 * batch key carries the same body, the sink accepts each key once, and
 * each recipient (the refs in the accepted bodies) exactly once. */
static void test_reuse_batches_with_retries(void **state)
{
  (void)state;
  char *log = testenv_unique("/tmp/sendonce-reuse-batch");
  const char *args[] = {"--error-rate", "0.3",   "--seed", "9", "--batch-ids",
                        "messages.ref", "--log", log,      NULL};
  struct sink_client *k = sink_start(args);
  struct config_provider p = test_provider(sink_client_port(k), test_tpl_batch);
  p.batch_size = 5;
  p.concurrency = 2;
  p.max_retries = 30;
  p.retry_base_ms = 2;
  struct sender *s = test_new_sender(&p, "camp-rb");
  const size_t n = 100;
  struct outcomes o;
  test_drive_ex(s, n, &o, 50, 60000, true);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(o.r[i].outcome, SENDER_SENT);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_true(st.retries > 3);
  json_object *js = sink_client_stats(k);
  assert_non_null(js);
  assert_int_equal(sink_client_stat(js, "accepted"), (int64_t)(n / 5));
  assert_int_equal(sink_client_stat(js, "accepted_duplicates"), 0);
  assert_int_equal(sink_client_stat(js, "recipient_accepted"), (int64_t)n);
  assert_int_equal(sink_client_stat(js, "recipient_accepted_duplicates"), 0);
  json_object_put(js);
  struct sinklog g = log_read(log);
  assert_int_equal(g.n, st.requests);
  for (size_t a = 0; a < g.n; a++) {
    size_t accepted = 0;
    for (size_t b = 0; b < g.n; b++) {
      if (strcmp(g.l[a].key, g.l[b].key) != 0)
        continue;
      if (g.l[a].body_hash != g.l[b].body_hash)
        fail_msg("key %s arrived with two different bodies", g.l[a].key);
      accepted += g.l[b].status == 200;
    }
    assert_int_equal(accepted, 1);
  }
  free(g.l);
  test_outcomes_free(&o);
  sender_free(s);
  test_provider_free(&p);
  assert_int_equal(sink_client_stop(k), 0);
  unlink(log);
  free(log);
}

/* One slot, so one easy handle for everything. The provider hangs: the
 * first attempts time out, and while r-0 waits for its retry the handle
 * moves on to r-1, r-2, ... Then the provider recovers. Every request
 * the sink saw - the timed-out ones it answered late included - carried
 * the body of its own key, and each recipient is accepted once. */
static void test_reuse_after_timeout(void **state)
{
  (void)state;
  char *log = testenv_unique("/tmp/sendonce-reuse-timeout");
  const char *args[] = {"--honour-idempotency", "--log", log, NULL};
  struct sink_client *k = sink_start(args);
  assert_int_equal(sink_client_mode(k, "{\"hang\":true}"), 200);
  struct config_provider p =
      test_provider(sink_client_port(k), test_tpl_single);
  p.concurrency = 1;
  p.timeout_ms = 150;
  p.max_retries = 20;
  p.retry_base_ms = 40;
  const char *camp = "camp-timeout";
  struct sender *s = test_new_sender(&p, camp);
  const size_t n = 6;
  struct sender_result out[6];
  memset(out, 0, sizeof(out));
  submit_range(s, 0, n);
  poll_some(s, 700, out, n);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_true(st.requests >= 2); /* attempts timed out */
  assert_int_equal(sink_client_mode(k, "{\"hang\":false}"), 200);
  poll_some(s, 30000, out, n);
  assert_int_equal(sender_in_flight(s), 0);
  json_object *js = sink_client_stats(k);
  assert_non_null(js);
  assert_int_equal(sink_client_stat(js, "accepted_duplicates"), 0);
  json_object_put(js);
  struct sinklog g = log_read(log);
  size_t timed_out = 0;
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(out[i].outcome, SENDER_SENT);
    if (out[i].attempts > 1)
      timed_out++;
    size_t accepted;
    assert_true(check_key(&g, camp, i, &accepted) >= 1);
    assert_int_equal(accepted, 1);
    sender_result_cleanup(&out[i]);
  }
  assert_true(timed_out >= 1);
  free(g.l);
  sender_free(s);
  test_provider_free(&p);
  assert_int_equal(sink_client_stop(k), 0);
  unlink(log);
  free(log);
}

/* One slot again. r-0 goes through; then the provider is gone (connection
 * refused) while r-1..r-4 are tried and retried on the one handle; then a
 * provider comes back on the same port. Each key it gets carries its own
 * body, once. */
static void test_reuse_after_connect_failure(void **state)
{
  (void)state;
  char *log1 = testenv_unique("/tmp/sendonce-reuse-conn1");
  char *log2 = testenv_unique("/tmp/sendonce-reuse-conn2");
  const char *args1[] = {"--log", log1, NULL};
  struct sink_client *k = sink_start(args1);
  char port[16];
  snprintf(port, sizeof(port), "%d", sink_client_port(k));
  struct config_provider p =
      test_provider(sink_client_port(k), test_tpl_single);
  p.concurrency = 1;
  p.max_retries = 12;
  p.retry_base_ms = 10;
  const char *camp = "camp-conn";
  struct sender *s = test_new_sender(&p, camp);
  const size_t n = 5;
  struct sender_result out[5];
  memset(out, 0, sizeof(out));
  submit_range(s, 0, 1);
  poll_some(s, 10000, out, n);
  assert_int_equal(out[0].outcome, SENDER_SENT);
  assert_int_equal(sink_client_stop(k), 0);

  submit_range(s, 1, n);
  poll_some(s, 300, out, n);
  struct sender_stats st;
  sender_stats(s, &st);
  assert_true(st.retries >= 2); /* refused, retried on the same handle */
  const char *args2[] = {"--port", port, "--log", log2, NULL};
  k = sink_start(args2);
  poll_some(s, 30000, out, n);
  assert_int_equal(sender_in_flight(s), 0);
  assert_int_equal(sink_client_stop(k), 0); /* flushes the log */

  struct sinklog g = log_read(log2);
  size_t refused = 0;
  for (size_t i = 1; i < n; i++) {
    assert_int_equal(out[i].outcome, SENDER_SENT);
    if (out[i].attempts > 1)
      refused++;
    size_t accepted;
    assert_int_equal(check_key(&g, camp, i, &accepted), 1);
    assert_int_equal(accepted, 1);
  }
  assert_true(refused >= 1);
  for (size_t i = 0; i < n; i++)
    sender_result_cleanup(&out[i]);
  free(g.l);
  sender_free(s);
  test_provider_free(&p);
  unlink(log1);
  unlink(log2);
  free(log1);
  free(log2);
}

/* A connect that never completes (a listener whose accept queue is full
 * drops the SYN) ends after timeout_ms like any other hang - the total
 * timeout bounds the connect phase too - and is retried, then GAVE_UP. */
static void test_connect_hang_times_out(void **state)
{
  (void)state;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int filler = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(l >= 0 && filler >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(l, 0), 0);
  assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
  /* fills the accept queue of one: later SYNs are dropped */
  assert_int_equal(connect(filler, (struct sockaddr *)&a, sizeof(a)), 0);
  struct config_provider p = test_provider(ntohs(a.sin_port), test_tpl_single);
  p.concurrency = 1;
  p.timeout_ms = 300;
  p.max_retries = 1;
  p.retry_base_ms = 1;
  struct sender *s = test_new_sender(&p, "camp-syn");
  struct sender_result out[1];
  memset(out, 0, sizeof(out));
  int64_t t0 = clock_monotonic_ms();
  submit_range(s, 0, 1);
  poll_some(s, 10000, out, 1);
  int64_t took = clock_monotonic_ms() - t0;
  assert_int_equal(out[0].outcome, SENDER_GAVE_UP);
  assert_int_equal(out[0].attempts, 2);
  assert_non_null(strstr(out[0].reason, "timeout after 300 ms"));
  assert_true(took >= 2 * 300 - 50);
  if (took > 2 * 300 + 2 * test_poll_slack_ms() + 500)
    fail_msg("two 300 ms connect timeouts took %lld ms", (long long)took);
  sender_result_cleanup(&out[0]);
  sender_free(s);
  test_provider_free(&p);
  close(filler);
  close(l);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reuse_interleaved_retries),
      cmocka_unit_test(test_reuse_batches_with_retries),
      cmocka_unit_test(test_reuse_after_timeout),
      cmocka_unit_test(test_reuse_after_connect_failure),
      cmocka_unit_test(test_connect_hang_times_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
