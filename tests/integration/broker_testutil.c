/* broker_testutil.c - helpers of the broker integration tests. */
#include "broker_testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "testenv.h"

void bt_options(struct broker_options *o, const char *uri,
                const struct topology *t)
{
  memset(o, 0, sizeof(*o));
  o->uris[0] = uri ? uri : testenv_get("SENDONCE_BROKER_URI");
  o->n_uris = 1;
  o->user = testenv_get("SENDONCE_BROKER_USER");
  o->password = testenv_get("SENDONCE_BROKER_PASSWORD");
  o->program = "test";
  o->heartbeat_s = 5;
  o->connect_timeout_ms = 2000;
  o->op_timeout_ms = 2000;
  o->reconnect_min_ms = 50;
  o->reconnect_max_ms = 400;
  o->topology = t;
}

const char *bt_vhost(void)
{
  static char vhost[128];
  const char *uri = testenv_get("SENDONCE_BROKER_URI");
  const char *p = strstr(uri, "://");
  p = p ? strchr(p + 3, '/') : NULL;
  snprintf(vhost, sizeof(vhost), "%s", p && p[1] ? p + 1 : "%2f");
  return vhost;
}

const char *bt_uri_port(const char *scheme, const char *host, int port)
{
  static char buf[2][256];
  static int which;
  which ^= 1;
  snprintf(buf[which], sizeof(buf[which]), "%s://%s:%d/%s", scheme, host, port,
           bt_vhost());
  return buf[which];
}

void bt_topology(struct topology *t)
{
  static const int delays[] = {30, 1};
  char err[256] = "";
  char *prefix = testenv_unique("sotest");
  int rc = topology_init(t, prefix, 5, delays, 2, err, sizeof(err));
  free(prefix);
  if (rc)
    fail_msg("topology_init: %s", err);
}

struct broker *bt_open(const struct broker_options *o)
{
  struct broker *b = NULL;
  char err[1024] = "";
  int rc = broker_open(o, &b, err, sizeof(err));
  if (rc)
    fail_msg("broker_open: %s: %s", so_strerror(rc), err);
  rc = broker_connect(b, err, sizeof(err));
  if (rc)
    fail_msg("broker_connect: %s: %s", so_strerror(rc), err);
  return b;
}

void bt_publish(struct broker *b, const char *exchange, const char *key,
                const char *id, const char *body)
{
  char err[1024] = "";
  struct broker_message m = {
      .exchange = exchange,
      .routing_key = key,
      .body = body,
      .body_len = strlen(body),
      .message_id = id,
      .mandatory = true,
  };
  int rc = broker_publish_confirmed(b, &m, err, sizeof(err));
  if (rc)
    fail_msg("publish %s: %s: %s", id, so_strerror(rc), err);
}

struct broker_delivery *bt_get_wait(struct broker *b, const char *queue,
                                    int timeout_ms)
{
  int64_t until = clock_monotonic_ms() + timeout_ms;
  char err[512] = "";
  for (;;) {
    struct broker_delivery *d = NULL;
    int rc = broker_get(b, queue, &d, err, sizeof(err));
    if (rc == SO_OK)
      return d;
    if (rc != SO_ERR_NOTFOUND)
      fail_msg("broker_get %s: %s: %s", queue, so_strerror(rc), err);
    if (clock_monotonic_ms() > until)
      fail_msg("nothing arrived in %s within %d ms", queue, timeout_ms);
    clock_sleep_ms(50, NULL);
  }
}

struct broker_delivery *bt_poll_wait(struct broker *b, int timeout_ms)
{
  struct broker_delivery *d = NULL;
  char err[512] = "";
  int64_t until = clock_monotonic_ms() + timeout_ms;
  while (!d && clock_monotonic_ms() < until) {
    int rc = broker_poll(b, 100, -1, &d, err, sizeof(err));
    if (rc != SO_OK && rc != SO_ERR_TIMEOUT && rc != SO_ERR_UNAVAILABLE)
      fail_msg("broker_poll: %s: %s", so_strerror(rc), err);
  }
  if (!d)
    fail_msg("no delivery within %d ms", timeout_ms);
  return d;
}

int bt_free_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t len = sizeof(a);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static bool port_open(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

pid_t bt_spawn(char *const argv[], int port)
{
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    execvp(argv[0], argv);
    _exit(127);
  }
  setpgid(pid, pid);
  if (port > 0) {
    for (int i = 0; i < 200 && !port_open(port); i++)
      clock_sleep_ms(25, NULL);
    if (!port_open(port))
      fail_msg("%s did not listen on port %d", argv[0], port);
  }
  return pid;
}

void bt_kill(pid_t pid)
{
  kill(-pid, SIGCONT);
  kill(-pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

struct bt_buf {
  char *data;
  size_t len;
};

static size_t bt_write_cb(char *ptr, size_t size, size_t n, void *ud)
{
  struct bt_buf *b = ud;
  char *p = realloc(b->data, b->len + size * n + 1);
  if (!p)
    return 0;
  memcpy(p + b->len, ptr, size * n);
  b->len += size * n;
  p[b->len] = '\0';
  b->data = p;
  return size * n;
}

json_object *bt_mgmt_get(const char *path)
{
  char url[1024];
  struct bt_buf buf = {0};
  long code = 0;
  snprintf(url, sizeof(url), "%s/api/%s",
           testenv_get("SENDONCE_WATCHDOG_MGMT_URL"), path);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_USERNAME, testenv_get("SENDONCE_BROKER_USER"));
  curl_easy_setopt(c, CURLOPT_PASSWORD,
                   testenv_get("SENDONCE_BROKER_PASSWORD"));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, bt_write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK)
    fail_msg("management GET %s: %s", url, curl_easy_strerror(rc));
  if (code == 404) {
    free(buf.data);
    return NULL;
  }
  if (code != 200)
    fail_msg("management GET %s: HTTP %ld", url, code);
  json_object *j = json_tokener_parse(buf.data ? buf.data : "");
  free(buf.data);
  assert_non_null(j);
  return j;
}
