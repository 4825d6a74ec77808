/* test_metrics.c - the Prometheus registry: exact exposition text,
 * lock-free updates from threads, and the HTTP endpoint scraped with
 * libcurl on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* ---- exposition, table-driven ---------------------------------------- */

static atomic_llong borrowed = 42;
static atomic_llong lag_counts[4] = {1, 2, 0, 3};
static atomic_llong lag_sum = 9500;
static const int64_t lag_bounds[3] = {100, 1000, 5000};

static double quarter_cb(void *arg)
{
  (void)arg;
  return 0.25;
}

static void setup_counter(struct metrics *m)
{
  atomic_llong *v = NULL;
  assert_int_equal(metrics_counter(m, "sendonce_published_total", NULL,
                                   "Campaign-due messages published.", &v),
                   SO_OK);
  metrics_add(v, 3);
}

static void setup_labels(struct metrics *m)
{
  static const char *const outcomes[] = {"outcome=sent", "outcome=rejected",
                                         "outcome=gave_up"};
  for (int i = 0; i < 3; i++) {
    atomic_llong *v = NULL;
    assert_int_equal(metrics_counter(m, "sendonce_recipients_total",
                                     outcomes[i], "Recipients by outcome.", &v),
                     SO_OK);
    metrics_add(v, 10 * (i + 1));
  }
}

static void setup_escapes(struct metrics *m)
{
  atomic_llong *v = NULL;
  assert_int_equal(metrics_gauge(m, "x_gauge", "reason=a\"b\\c\nd",
                                 "Help with \\ backslash.", &v),
                   SO_OK);
  metrics_set(v, -7);
}

static void setup_borrowed(struct metrics *m)
{
  assert_int_equal(metrics_expose(m, METRICS_GAUGE, "sendonce_claims_held",
                                  NULL, "Claims held now.", &borrowed),
                   SO_OK);
  assert_int_equal(metrics_gauge_cb(m, "sendonce_ratio", "kind=q",
                                    "A computed gauge.", quarter_cb, NULL),
                   SO_OK);
}

static void setup_histogram(struct metrics *m)
{
  static const int64_t bounds[] = {5, 10, 100};
  struct metrics_histogram *h = NULL;
  assert_int_equal(
      metrics_histogram(m, "sendonce_provider_latency_seconds", "channel=email",
                        "Provider latency.", bounds, 3, 1000.0, &h),
      SO_OK);
  metrics_observe(h, 3);
  metrics_observe(h, 5); /* on the bound: le is inclusive */
  metrics_observe(h, 7);
  metrics_observe(h, 50);
  metrics_observe(h, 1000);
}

static void setup_borrowed_histogram(struct metrics *m)
{
  assert_int_equal(
      metrics_expose_histogram(m, "sendonce_lease_renewal_lag_seconds", NULL,
                               "Renewal lag.", lag_bounds, 3, 1000.0,
                               lag_counts, &lag_sum),
      SO_OK);
  assert_int_equal(
      metrics_expose_histogram(m, "no_sum", NULL, "No sum.", lag_bounds, 3, 1.0,
                               lag_counts, NULL),
      SO_OK);
}

static const struct render_case {
  const char *name;
  void (*setup)(struct metrics *m);
  const char *want;
} render_cases[] = {
    {"empty", NULL, ""},
    {"counter", setup_counter,
     "# HELP sendonce_published_total Campaign-due messages published.\n"
     "# TYPE sendonce_published_total counter\n"
     "sendonce_published_total 3\n"},
    {"labels", setup_labels,
     "# HELP sendonce_recipients_total Recipients by outcome.\n"
     "# TYPE sendonce_recipients_total counter\n"
     "sendonce_recipients_total{outcome=\"sent\"} 10\n"
     "sendonce_recipients_total{outcome=\"rejected\"} 20\n"
     "sendonce_recipients_total{outcome=\"gave_up\"} 30\n"},
    {"escapes", setup_escapes,
     "# HELP x_gauge Help with \\\\ backslash.\n"
     "# TYPE x_gauge gauge\n"
     "x_gauge{reason=\"a\\\"b\\\\c\\nd\"} -7\n"},
    {"borrowed and callback", setup_borrowed,
     "# HELP sendonce_claims_held Claims held now.\n"
     "# TYPE sendonce_claims_held gauge\n"
     "sendonce_claims_held 42\n"
     "# HELP sendonce_ratio A computed gauge.\n"
     "# TYPE sendonce_ratio gauge\n"
     "sendonce_ratio{kind=\"q\"} 0.25\n"},
    {"histogram", setup_histogram,
     "# HELP sendonce_provider_latency_seconds Provider latency.\n"
     "# TYPE sendonce_provider_latency_seconds histogram\n"
     "sendonce_provider_latency_seconds_bucket{channel=\"email\",le=\"0.005\"}"
     " 2\n"
     "sendonce_provider_latency_seconds_bucket{channel=\"email\",le=\"0.01\"}"
     " 3\n"
     "sendonce_provider_latency_seconds_bucket{channel=\"email\",le=\"0.1\"}"
     " 4\n"
     "sendonce_provider_latency_seconds_bucket{channel=\"email\",le=\"+Inf\"}"
     " 5\n"
     "sendonce_provider_latency_seconds_sum{channel=\"email\"} 1.065\n"
     "sendonce_provider_latency_seconds_count{channel=\"email\"} 5\n"},
    {"borrowed histogram", setup_borrowed_histogram,
     "# HELP sendonce_lease_renewal_lag_seconds Renewal lag.\n"
     "# TYPE sendonce_lease_renewal_lag_seconds histogram\n"
     "sendonce_lease_renewal_lag_seconds_bucket{le=\"0.1\"} 1\n"
     "sendonce_lease_renewal_lag_seconds_bucket{le=\"1\"} 3\n"
     "sendonce_lease_renewal_lag_seconds_bucket{le=\"5\"} 3\n"
     "sendonce_lease_renewal_lag_seconds_bucket{le=\"+Inf\"} 6\n"
     "sendonce_lease_renewal_lag_seconds_sum 9.5\n"
     "sendonce_lease_renewal_lag_seconds_count 6\n"
     "# HELP no_sum No sum.\n"
     "# TYPE no_sum histogram\n"
     "no_sum_bucket{le=\"100\"} 1\n"
     "no_sum_bucket{le=\"1000\"} 3\n"
     "no_sum_bucket{le=\"5000\"} 3\n"
     "no_sum_bucket{le=\"+Inf\"} 6\n"
     "no_sum_count 6\n"},
};

static void test_render_table(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof(render_cases) / sizeof(render_cases[0]); i++) {
    const struct render_case *c = &render_cases[i];
    struct metrics *m = metrics_new();
    assert_non_null(m);
    if (c->setup)
      c->setup(m);
    size_t len = 99;
    char *got = metrics_render(m, &len);
    assert_non_null(got);
    if (strcmp(got, c->want) != 0)
      print_error("case %s:\n--- got\n%s--- want\n%s", c->name, got, c->want);
    assert_string_equal(got, c->want);
    assert_int_equal(len, strlen(c->want));
    free(got);
    metrics_free(m);
  }
}

/* ---- registration errors -------------------------------------------- */

static void test_register_refusals(void **state)
{
  (void)state;
  struct metrics *m = metrics_new();
  atomic_llong *v = NULL;
  static const int64_t bounds[] = {10, 5};
  struct metrics_histogram *h = NULL;

  assert_non_null(m);
  assert_int_equal(metrics_counter(m, "a_total", "k=v", "A.", &v), SO_OK);
  /* bad names */
  assert_int_equal(metrics_counter(m, "9lives", NULL, "A.", &v),
                   SO_ERR_INVALID);
  assert_int_equal(metrics_counter(m, "has-dash", NULL, "A.", &v),
                   SO_ERR_INVALID);
  assert_int_equal(metrics_counter(m, "", NULL, "A.", &v), SO_ERR_INVALID);
  /* same name and label twice */
  assert_int_equal(metrics_counter(m, "a_total", "k=v", "A.", &v),
                   SO_ERR_INVALID);
  /* a family keeps its type and help */
  assert_int_equal(metrics_gauge(m, "a_total", "k=w", "A.", &v),
                   SO_ERR_INVALID);
  assert_int_equal(metrics_counter(m, "a_total", "k=w", "Other.", &v),
                   SO_ERR_INVALID);
  /* labels: name=value, not "le", not reserved, valid name */
  assert_int_equal(metrics_counter(m, "b_total", "novalue", "B.", &v),
                   SO_ERR_INVALID);
  assert_int_equal(metrics_counter(m, "b_total", "le=1", "B.", &v),
                   SO_ERR_INVALID);
  assert_int_equal(metrics_counter(m, "b_total", "__x=1", "B.", &v),
                   SO_ERR_INVALID);
  assert_int_equal(metrics_counter(m, "b_total", "a:b=1", "B.", &v),
                   SO_ERR_INVALID);
  assert_int_equal(metrics_counter(m, "b_total", NULL, "two\nlines", &v),
                   SO_ERR_INVALID);
  /* bounds must ascend; scale must be positive */
  assert_int_equal(metrics_histogram(m, "h", NULL, "H.", bounds, 2, 1.0, &h),
                   SO_ERR_INVALID);
  assert_int_equal(
      metrics_histogram(m, "h", NULL, "H.", bounds + 1, 1, 0.0, &h),
      SO_ERR_INVALID);
  assert_int_equal(metrics_expose(m, METRICS_GAUGE, "g", NULL, "G.", NULL),
                   SO_ERR_INVALID);
  /* the refusals left nothing behind */
  char *got = metrics_render(m, NULL);
  assert_string_equal(got,
                      "# HELP a_total A.\n# TYPE a_total counter\n"
                      "a_total{k=\"v\"} 0\n");
  free(got);
  metrics_free(m);
  metrics_free(NULL);
}

/* ---- concurrency ------------------------------------------------------ */

#define N_THREADS 4
#define N_ADDS 200000

struct bumper {
  atomic_llong *counter;
  struct metrics_histogram *hist;
};

static void *bump_thread(void *arg)
{
  struct bumper *b = arg;
  for (int i = 0; i < N_ADDS; i++) {
    metrics_add(b->counter, 1);
    metrics_observe(b->hist, i % 3); /* 0, 1, 2 */
  }
  return NULL;
}

static void test_concurrent_updates(void **state)
{
  (void)state;
  static const int64_t bounds[] = {0, 1};
  struct metrics *m = metrics_new();
  struct bumper b = {0};
  pthread_t t[N_THREADS];

  assert_int_equal(metrics_counter(m, "c_total", NULL, "C.", &b.counter),
                   SO_OK);
  assert_int_equal(
      metrics_histogram(m, "h", NULL, "H.", bounds, 2, 1.0, &b.hist), SO_OK);
  for (int i = 0; i < N_THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, bump_thread, &b), 0);
  /* Scrape while they run: rendering must not block or tear. */
  for (int i = 0; i < 20; i++)
    free(metrics_render(m, NULL));
  for (int i = 0; i < N_THREADS; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);

  long long total = (long long)N_THREADS * N_ADDS;
  assert_int_equal(atomic_load(b.counter), total);
  char want[1024];
  /* N_ADDS = 3k + 2: i%3 == 0 and == 1 occur k + 1 times, == 2 k times. */
  long long k = N_ADDS / 3;
  long long zeros = N_THREADS * (k + 1), ones = N_THREADS * (k + 1);
  long long twos = N_THREADS * k;
  snprintf(want, sizeof(want),
           "# HELP c_total C.\n# TYPE c_total counter\nc_total %lld\n"
           "# HELP h H.\n# TYPE h histogram\n"
           "h_bucket{le=\"0\"} %lld\nh_bucket{le=\"1\"} %lld\n"
           "h_bucket{le=\"+Inf\"} %lld\nh_sum %lld\nh_count %lld\n",
           total, zeros, zeros + ones, total, ones + 2 * twos, total);
  char *got = metrics_render(m, NULL);
  assert_string_equal(got, want);
  free(got);
  metrics_free(m);
}

/* ---- HTTP ------------------------------------------------------------- */

struct fetched {
  long status;
  char body[8192];
  size_t len;
  char type[128];
};

static size_t body_cb(char *data, size_t size, size_t n, void *arg)
{
  struct fetched *f = arg;
  size_t len = size * n;
  if (f->len + len >= sizeof(f->body))
    return 0;
  memcpy(f->body + f->len, data, len);
  f->len += len;
  f->body[f->len] = '\0';
  return len;
}

static void fetch(int port, const char *path, const char *method,
                  struct fetched *f)
{
  char url[128];
  memset(f, 0, sizeof(*f));
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (method)
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f->status);
  char *type = NULL;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
  if (type)
    snprintf(f->type, sizeof(f->type), "%s", type);
  curl_easy_cleanup(c);
}

static void test_http_scrape(void **state)
{
  (void)state;
  struct metrics *m = metrics_new();
  struct metrics_server *srv = NULL;
  atomic_llong *v = NULL;
  char err[256] = "";
  struct fetched f;

  assert_int_equal(
      metrics_counter(m, "sendonce_published_total", NULL, "Published.", &v),
      SO_OK);
  assert_int_equal(metrics_serve(m, "127.0.0.1", 0, &srv, err, sizeof(err)),
                   SO_OK);
  int port = metrics_server_port(srv);
  assert_true(port > 0 && port <= 65535);

  metrics_add(v, 5);
  fetch(port, "/metrics", NULL, &f);
  assert_int_equal(f.status, 200);
  assert_string_equal(f.type, "text/plain; version=0.0.4; charset=utf-8");
  assert_string_equal(f.body,
                      "# HELP sendonce_published_total Published.\n"
                      "# TYPE sendonce_published_total counter\n"
                      "sendonce_published_total 5\n");
  /* a second scrape sees the new value */
  metrics_add(v, 2);
  fetch(port, "/metrics", NULL, &f);
  assert_non_null(strstr(f.body, "sendonce_published_total 7\n"));

  fetch(port, "/healthz", NULL, &f);
  assert_int_equal(f.status, 200);
  assert_string_equal(f.body, "ok\n");
  fetch(port, "/nope", NULL, &f);
  assert_int_equal(f.status, 404);
  fetch(port, "/metrics/x", NULL, &f);
  assert_int_equal(f.status, 404);
  fetch(port, "/metrics", "POST", &f);
  assert_int_equal(f.status, 405);

  metrics_server_stop(srv);
  metrics_server_stop(NULL);
  metrics_free(m);
}

static void test_port_in_use(void **state)
{
  (void)state;
  struct metrics *m = metrics_new();
  struct metrics_server *a = NULL, *b = NULL;
  char err[256] = "", want[256];

  assert_int_equal(metrics_serve(m, NULL, 0, &a, err, sizeof(err)), SO_OK);
  int port = metrics_server_port(a);
  assert_int_equal(metrics_serve(m, "127.0.0.1", port, &b, err, sizeof(err)),
                   SO_ERR_IO);
  assert_null(b);
  snprintf(want, sizeof(want),
           "metrics: cannot listen on 127.0.0.1:%d: Address already in use",
           port);
  assert_string_equal(err, want);

  /* Once stopped, the port is free again (SO_REUSEADDR). */
  metrics_server_stop(a);
  assert_int_equal(metrics_serve(m, "127.0.0.1", port, &b, err, sizeof(err)),
                   SO_OK);
  assert_int_equal(metrics_server_port(b), port);
  metrics_server_stop(b);

  assert_int_equal(metrics_serve(m, "localhost", 0, &b, err, sizeof(err)),
                   SO_ERR_INVALID);
  assert_non_null(strstr(err, "not a numeric address"));
  assert_int_equal(metrics_serve(m, "127.0.0.1", 70000, &b, err, sizeof(err)),
                   SO_ERR_INVALID);
  metrics_free(m);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render_table),
      cmocka_unit_test(test_register_refusals),
      cmocka_unit_test(test_concurrent_updates),
      cmocka_unit_test(test_http_scrape),
      cmocka_unit_test(test_port_in_use),
  };
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
