/* test_publisher_disruptive.c - the broker restarts while two `run`
 * daemons publish 1,000 campaigns: afterwards every campaign is PUBLISHED
 * in the registry and its trigger is in the main queue at least once.
 *
 * Two disruptions: `rabbitmqctl stop_app` / `start_app` (a clean stop
 * that closes every connection), and kill -9 of the broker's Erlang VM
 * followed by scripts/setup to start it again.
 *
 * A third, gentle variant (SENDONCE_TEST_DISRUPTIVE=dry) only closes
 * the daemons' own connections through the management API: it exercises
 * the same reconnect path without touching anyone else.
 *
 * DISRUPTIVE: it stops the shared local RabbitMQ, so every other test
 * running at the time fails. It is labelled `disruptive` and runs only
 * when SENDONCE_TEST_DISRUPTIVE=1 is set (else it exits 77, which ctest
 * reports as skipped): run it alone, e.g.
 *   SENDONCE_TEST_DISRUPTIVE=1 ctest --test-dir build -L disruptive
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "broker_testutil.h"
#include "clock.h"
#include "publisher_testutil.h"
#include "testenv.h"

#ifndef SENDONCE_SOURCE_DIR
#error "SENDONCE_SOURCE_DIR must name the source tree (scripts/setup)"
#endif

#define N_CAMPAIGNS 1000
#define RMQ_NODE "rabbit@localhost"

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

static void sh(const char *cmd)
{
  fprintf(stderr, "disruptive: $ %s\n", cmd);
  int rc = system(cmd);
  if (rc != 0)
    fail_msg("command failed (status %d): %s", rc, cmd);
}

static void stop_start_app(void)
{
  sh("rabbitmqctl -q -n " RMQ_NODE " stop_app");
  clock_sleep_ms(2000, NULL);
  sh("rabbitmqctl -q -n " RMQ_NODE " start_app");
  sh("rabbitmqctl -q -n " RMQ_NODE " await_startup --timeout 120");
}

/* The exact pid of the broker's VM, asked of the broker itself. */
static long broker_os_pid(void)
{
  FILE *p = popen("rabbitmqctl -q -n " RMQ_NODE " eval 'os:getpid().'", "r");
  assert_non_null(p);
  char line[64] = "";
  if (!fgets(line, sizeof(line), p))
    line[0] = '\0';
  pclose(p);
  char *digits = line + strspn(line, "\"");
  char *end = NULL;
  long pid = strtol(digits, &end, 10);
  if (end == digits || pid <= 1)
    fail_msg("cannot read the broker's pid (got '%s')", line);
  return pid;
}

static void kill9_restart(void)
{
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "kill -9 %ld", broker_os_pid());
  sh(cmd);
  clock_sleep_ms(2000, NULL);
  sh(SENDONCE_SOURCE_DIR "/scripts/setup >/dev/null");
  sh("rabbitmqctl -q -n " RMQ_NODE " await_startup --timeout 120");
}

/* The daemons being disrupted, for the gentle variant. */
static pid_t daemons[2];

static void mgmt_delete_connection(const char *name)
{
  char path[512], url[1024];
  char *escaped = curl_easy_escape(NULL, name, 0);
  assert_non_null(escaped);
  snprintf(path, sizeof(path), "connections/%s", escaped);
  curl_free(escaped);
  snprintf(url, sizeof(url), "%s/api/%s",
           testenv_get("SENDONCE_WATCHDOG_MGMT_URL"), path);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
  curl_easy_setopt(c, CURLOPT_USERNAME, testenv_get("SENDONCE_BROKER_USER"));
  curl_easy_setopt(c, CURLOPT_PASSWORD,
                   testenv_get("SENDONCE_BROKER_PASSWORD"));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK || code >= 300)
    fail_msg("DELETE %s: %s HTTP %ld", url, curl_easy_strerror(rc), code);
}

/* Close the connections of our two daemons, server-side. */
static void close_our_connections(void)
{
  int64_t until = clock_now_ms() + 20000;
  size_t closed = 0;
  while (closed == 0 && clock_now_ms() < until) {
    json_object *list = bt_mgmt_get("connections");
    assert_non_null(list);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
      json_object *conn = json_object_array_get_idx(list, i), *props, *cn, *nm;
      if (!json_object_object_get_ex(conn, "client_properties", &props) ||
          !json_object_object_get_ex(props, "connection_name", &cn) ||
          !json_object_object_get_ex(conn, "name", &nm))
        continue;
      const char *cname = json_object_get_string(cn);
      for (int d = 0; d < 2; d++) {
        char suffix[32];
        snprintf(suffix, sizeof(suffix), ":%ld", (long)daemons[d]);
        size_t ls = strlen(suffix), lc = strlen(cname);
        if (strncmp(cname, "sendonce-publisher@", 19) == 0 && lc > ls &&
            strcmp(cname + lc - ls, suffix) == 0) {
          fprintf(stderr, "disruptive: closing %s\n", cname);
          mgmt_delete_connection(json_object_get_string(nm));
          closed++;
        }
      }
    }
    json_object_put(list);
    if (closed == 0)
      clock_sleep_ms(500, NULL); /* the management stats lag a little */
  }
  assert_true(closed > 0);
}

static void publish_through(struct pt *t, void (*disrupt)(void))
{
  int64_t due = clock_now_ms() + 2000;
  for (int i = 0; i < N_CAMPAIGNS; i++) {
    char id[32];
    snprintf(id, sizeof(id), "d-%04d", i);
    pt_register(t, id, due);
  }
  int log_a, log_b;
  pid_t a = pt_daemon_start(t, &log_a);
  pid_t b = pt_daemon_start(t, &log_b);
  daemons[0] = a;
  daemons[1] = b;

  /* Disrupt in the middle of publishing. */
  int64_t until = clock_now_ms() + 60000;
  size_t published;
  while ((published = pt_count_state(t, CAMPAIGN_PUBLISHED)) < 50) {
    if (clock_now_ms() > until)
      fail_msg("publishing did not start (%zu published)", published);
    clock_sleep_ms(20, NULL);
  }
  fprintf(stderr, "disruptive: %zu of %d published when the broker went\n",
          published, N_CAMPAIGNS);
  disrupt();

  until = clock_now_ms() + 180000;
  while ((published = pt_count_state(t, CAMPAIGN_PUBLISHED)) < N_CAMPAIGNS) {
    if (clock_now_ms() > until)
      fail_msg("only %zu of %d published within 180 s of the restart",
               published, N_CAMPAIGNS);
    clock_sleep_ms(200, NULL);
  }
  pt_daemon_stop(a);
  pt_daemon_stop(b);
  assert_int_equal(pt_count_state(t, CAMPAIGN_SCHEDULED), 0);

  char **ids = calloc(4 * N_CAMPAIGNS, sizeof(*ids));
  assert_non_null(ids);
  size_t n = pt_drain(t, ids, 4 * N_CAMPAIGNS);
  size_t kept = n < 4 * N_CAMPAIGNS ? n : 4 * N_CAMPAIGNS;
  size_t missing = 0;
  for (int i = 0; i < N_CAMPAIGNS; i++) {
    char id[32];
    snprintf(id, sizeof(id), "d-%04d", i);
    if (pt_count_id(ids, kept, id) == 0) {
      fprintf(stderr, "disruptive: %s is PUBLISHED but not in the queue\n", id);
      missing++;
    }
  }
  fprintf(stderr,
          "disruptive: %zu messages for %d campaigns (%zu duplicates)\n", n,
          N_CAMPAIGNS, n - (size_t)N_CAMPAIGNS + missing);
  pt_free_ids(ids, kept);
  free(ids);
  assert_int_equal(missing, 0);
}

static void test_stop_app_start_app(void **state)
{
  publish_through(*state, stop_start_app);
}

static void test_kill9_broker(void **state)
{
  publish_through(*state, kill9_restart);
}

static void test_connections_closed(void **state)
{
  publish_through(*state, close_our_connections);
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: %s sqlite|pg\n", argv[0]);
    return 2;
  }
  const char *opt_in = getenv("SENDONCE_TEST_DISRUPTIVE");
  bool dry = opt_in && strcmp(opt_in, "dry") == 0;
  if (!dry && (!opt_in || strcmp(opt_in, "1") != 0)) {
    fprintf(stderr,
            "%s: restarts the shared RabbitMQ; set SENDONCE_TEST_DISRUPTIVE=1 "
            "and run it alone (ctest -L disruptive)\n",
            argv[0]);
    return 77;
  }
  pt_backend = testdb_backend_parse(argv[1]);
  const struct CMUnitTest gentle[] = {
      cmocka_unit_test_setup_teardown(test_connections_closed, setup, teardown),
  };
  if (dry)
    return cmocka_run_group_tests_name(argv[1], gentle, NULL, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_stop_app_start_app, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kill9_broker, setup, teardown),
  };
  return cmocka_run_group_tests_name(argv[1], tests, NULL, NULL);
}
