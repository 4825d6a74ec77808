/* test_sender_wire.c - the exact bytes of every request the sender puts
 * on the wire: request line, every header in order, body. The sender
 * reuses one curl easy handle per concurrency slot, shares its fixed
 * header lines between requests and renders bodies from the template; the
 * provider must see the same request whatever the handle did before (a
 * retried 500, another recipient). The expected requests are written out
 * by hand here, so a change to any byte - a header added, dropped,
 * reordered or respelled - fails.
 *
 * The server is a raw HTTP/1.1 loop on 127.0.0.1 (keep-alive, one thread,
 * poll) that records each request's bytes as received and answers 500 to
 * the first request of every fifth recipient, so retries run in handles
 * that carried other requests in between.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sender.h"
#include "sender_testutil.h"

#define WIRE_MAX_CONN 32

/* One recorded request: its bytes as they arrived. */
struct wreq {
  char *bytes;
  size_t len;
};

struct wconn {
  int fd;
  char *buf;
  size_t len, cap;
};

struct wsrv {
  int lfd;
  int port;
  pthread_t th;
  atomic_int stop;
  struct wconn conns[WIRE_MAX_CONN];
  struct wreq *reqs; /* read after the thread has ended */
  size_t n, cap;
  bool fail_first_of_fifth; /* 500 on the first request of r-0, r-5, ... */
};

/* head_end: the "\r\n\r\n" that ends a request head in p[0..len), or
 * NULL. */
static const char *head_end(const char *p, size_t len)
{
  for (size_t i = 0; i + 4 <= len; i++)
    if (memcmp(p + i, "\r\n\r\n", 4) == 0)
      return p + i;
  return NULL;
}

/* header_value: the value of header `name` in the head [p, p + len), in a
 * static buffer; "" if absent. */
static const char *header_value(const char *p, size_t len, const char *name)
{
  static char v[256];
  size_t nl = strlen(name);
  v[0] = '\0';
  for (const char *l = p; l < p + len;) {
    const char *e = memchr(l, '\n', (size_t)(p + len - l));
    if (!e)
      break;
    if ((size_t)(e - l) > nl + 1 && strncasecmp(l, name, nl) == 0 &&
        l[nl] == ':') {
      const char *b = l + nl + 1;
      while (*b == ' ')
        b++;
      size_t vl = (size_t)(e - b);
      if (vl > 0 && b[vl - 1] == '\r')
        vl--;
      if (vl >= sizeof(v))
        vl = sizeof(v) - 1;
      memcpy(v, b, vl);
      v[vl] = '\0';
      break;
    }
    l = e + 1;
  }
  return v;
}

/* seen_key: requests recorded so far with this Idempotency-Key. */
static size_t seen_key(const struct wsrv *w, const char *key)
{
  size_t c = 0;
  for (size_t i = 0; i < w->n; i++) {
    const char *end = head_end(w->reqs[i].bytes, w->reqs[i].len);
    size_t hl = end ? (size_t)(end - w->reqs[i].bytes) + 2 : 0;
    c +=
        strcmp(header_value(w->reqs[i].bytes, hl, "Idempotency-Key"), key) == 0;
  }
  return c;
}

/* answer_for: 500 for the first request of every fifth recipient when so
 * configured, 200 otherwise. */
static const char *answer_for(struct wsrv *w, const char *key)
{
  static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
  static const char fail[] =
      "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
  const char *r = strstr(key, ":r-");
  if (!w->fail_first_of_fifth || !r)
    return ok;
  long i = strtol(r + 3, NULL, 10);
  return i % 5 == 0 && seen_key(w, key) == 1 ? fail : ok;
}

/* take_requests: record and answer every complete request in c's buffer.
 * Returns false when the connection must close. */
static bool take_requests(struct wsrv *w, struct wconn *c)
{
  for (;;) {
    const char *end = head_end(c->buf, c->len);
    if (!end)
      return true;
    size_t head = (size_t)(end - c->buf) + 4;
    long cl =
        strtol(header_value(c->buf, head - 2, "Content-Length"), NULL, 10);
    if (cl < 0 || head + (size_t)cl > c->len)
      return true;
    size_t total = head + (size_t)cl;
    if (w->n == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 64;
      w->reqs = realloc(w->reqs, w->cap * sizeof(*w->reqs));
      assert_non_null(w->reqs);
    }
    struct wreq *q = &w->reqs[w->n++];
    q->bytes = malloc(total + 1);
    assert_non_null(q->bytes);
    memcpy(q->bytes, c->buf, total);
    q->bytes[total] = '\0';
    q->len = total;
    char key[256]; /* header_value's buffer is reused by answer_for */
    snprintf(key, sizeof(key), "%s",
             header_value(c->buf, head - 2, "Idempotency-Key"));
    const char *ans = answer_for(w, key);
    size_t al = strlen(ans);
    if (write(c->fd, ans, al) != (ssize_t)al)
      return false;
    memmove(c->buf, c->buf + total, c->len - total);
    c->len -= total;
  }
}

static void conn_close(struct wconn *c)
{
  close(c->fd);
  free(c->buf);
  memset(c, 0, sizeof(*c));
  c->fd = -1;
}

static void *wsrv_main(void *arg)
{
  struct wsrv *w = arg;
  while (!atomic_load(&w->stop)) {
    struct pollfd pf[WIRE_MAX_CONN + 1];
    pf[0] = (struct pollfd){.fd = w->lfd, .events = POLLIN};
    for (int i = 0; i < WIRE_MAX_CONN; i++)
      pf[i + 1] = (struct pollfd){.fd = w->conns[i].fd, .events = POLLIN};
    if (poll(pf, WIRE_MAX_CONN + 1, 50) <= 0)
      continue;
    if (pf[0].revents & POLLIN) {
      int fd = accept(w->lfd, NULL, NULL);
      int slot = -1;
      for (int i = 0; fd >= 0 && i < WIRE_MAX_CONN && slot < 0; i++)
        if (w->conns[i].fd < 0)
          slot = i;
      if (fd >= 0 && slot < 0)
        close(fd);
      else if (fd >= 0)
        w->conns[slot].fd = fd;
    }
    for (int i = 0; i < WIRE_MAX_CONN; i++) {
      struct wconn *c = &w->conns[i];
      if (c->fd < 0 || !(pf[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      if (c->len + 4096 > c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8192;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
      }
      ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
      if (r <= 0) {
        conn_close(c);
        continue;
      }
      c->len += (size_t)r;
      if (!take_requests(w, c))
        conn_close(c);
    }
  }
  for (int i = 0; i < WIRE_MAX_CONN; i++)
    if (w->conns[i].fd >= 0)
      conn_close(&w->conns[i]);
  return NULL;
}

static struct wsrv *wsrv_start(bool fail_first_of_fifth)
{
  struct wsrv *w = calloc(1, sizeof(*w));
  assert_non_null(w);
  w->fail_first_of_fifth = fail_first_of_fifth;
  for (int i = 0; i < WIRE_MAX_CONN; i++)
    w->conns[i].fd = -1;
  w->lfd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(w->lfd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(w->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(w->lfd, 64), 0);
  socklen_t al = sizeof(a);
  assert_int_equal(getsockname(w->lfd, (struct sockaddr *)&a, &al), 0);
  w->port = ntohs(a.sin_port);
  assert_int_equal(pthread_create(&w->th, NULL, wsrv_main, w), 0);
  return w;
}

/* wsrv_stop: end the thread; the records stay readable until free. */
static void wsrv_stop(struct wsrv *w)
{
  atomic_store(&w->stop, 1);
  pthread_join(w->th, NULL);
  close(w->lfd);
}

static void wsrv_free(struct wsrv *w)
{
  for (size_t i = 0; i < w->n; i++)
    free(w->reqs[i].bytes);
  free(w->reqs);
  free(w);
}

/* expect: the request for recipient r-<i> with `body`, every byte of it. */
static char *expect(const struct wsrv *w, const char *target,
                    const char *campaign, size_t i, const char *auth,
                    const char *body)
{
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  assert_non_null(f);
  fprintf(f,
          "POST %s HTTP/1.1\r\n"
          "Host: 127.0.0.1:%d\r\n"
          "Accept: */*\r\n"
          "Idempotency-Key: %s:r-%zu\r\n"
          "Content-Type: application/json\r\n"
          "User-Agent: sendonce/%s\r\n",
          target, w->port, campaign, i, SENDONCE_VERSION);
  if (auth)
    fprintf(f, "%s\r\n", auth);
  fprintf(f, "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
  fclose(f);
  return out;
}

/* body_single: test_tpl_single rendered for r-<i> with test_content,
 * written out by hand; `pad` is appended to vars.name. */
static char *body_single(const char *campaign, size_t i, const char *pad)
{
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  assert_non_null(f);
  fprintf(f,
          "{\"to\":\"r-%zu@example.org\",\"ref\":\"r-%zu\","
          "\"campaign\":\"%s\",\"name\":\"N\\\"%zu%s\","
          "\"subject\":\"Spring \\\"sale\\\"\"}",
          i, i, campaign, i, pad);
  fclose(f);
  return out;
}

/* run: send recipients r-0..r-(n-1) (vars.name "N\"<i><pad>") to the
 * URL path `path` (NULL: test_provider's "/send"), and check every
 * request byte for byte, its request line naming `target`; returns how
 * many requests the server got. */
static size_t run_at(const char *path, const char *target, const char *campaign,
                     size_t n, const char *pad, bool with_auth)
{
  struct wsrv *w = wsrv_start(true);
  struct config_provider p = test_provider(w->port, test_tpl_single);
  if (path) {
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", w->port, path);
    free(p.url);
    p.url = strdup(url);
    assert_non_null(p.url);
  }
  p.concurrency = 4;
  p.max_retries = 2;
  p.retry_base_ms = 1;
  char *auth = with_auth ? strdup(p.auth_header) : NULL;
  if (!with_auth) {
    free(p.auth_header);
    p.auth_header = NULL;
  }
  char err[256] = "";
  struct sender *s = sender_new(&p, campaign, test_content, err, sizeof(err));
  if (!s)
    fail_msg("sender_new: %s", err);
  size_t next = 0, done = 0;
  while (done < n) {
    while (next < n && sender_capacity(s) > 0) {
      char id[32], addr[64], vars[2048];
      snprintf(id, sizeof(id), "r-%zu", next);
      snprintf(addr, sizeof(addr), "r-%zu@example.org", next);
      snprintf(vars, sizeof(vars), "{\"name\":\"N\\\"%zu%s\"}", next, pad);
      struct sender_recipient r = {id, addr, vars};
      assert_int_equal(sender_submit(s, &r), SO_OK);
      next++;
    }
    struct sender_result res[16];
    size_t got = 0;
    assert_int_equal(sender_poll(s, 1000, res, 16, &got), SO_OK);
    for (size_t k = 0; k < got; k++) {
      if (res[k].outcome != SENDER_SENT)
        fail_msg("%s: %s %s", res[k].recipient_id,
                 sender_outcome_name(res[k].outcome), res[k].reason);
      sender_result_cleanup(&res[k]);
    }
    done += got;
  }
  sender_free(s);
  wsrv_stop(w);

  size_t *seen = calloc(n, sizeof(*seen));
  assert_non_null(seen);
  for (size_t k = 0; k < w->n; k++) {
    const struct wreq *q = &w->reqs[k];
    const char *r = strstr(q->bytes, ":r-");
    assert_non_null(r);
    size_t i = (size_t)strtoul(r + 3, NULL, 10);
    assert_true(i < n);
    seen[i]++;
    char *body = body_single(campaign, i, pad);
    char *want = expect(w, target, campaign, i, auth, body);
    if (q->len != strlen(want) || memcmp(q->bytes, want, q->len) != 0)
      fail_msg("request %zu of r-%zu differs:\n--- got\n%s\n--- want\n%s", k, i,
               q->bytes, want);
    free(want);
    free(body);
  }
  /* every fifth recipient twice (its first answer was a 500), the rest
   * once */
  for (size_t i = 0; i < n; i++)
    assert_int_equal(seen[i], i % 5 == 0 ? 2 : 1);
  size_t total = w->n;
  free(seen);
  free(auth);
  wsrv_free(w);
  test_provider_free(&p);
  return total;
}

static size_t run(const char *campaign, size_t n, const char *pad,
                  bool with_auth)
{
  return run_at(NULL, "/send", campaign, n, pad, with_auth);
}

/* 200 recipients through 4 reused handles, retries among them: every
 * request exactly as written out, the auth header last of ours. */
static void test_wire_bytes(void **state)
{
  (void)state;
  assert_int_equal(run("camp-wire", 200, "", true), 240);
}

/* No auth header configured: no line for it, nothing else changes. */
static void test_wire_bytes_no_auth(void **state)
{
  (void)state;
  assert_int_equal(run("camp-wire-noauth", 50, "", false), 60);
}

/* Bodies over 1,024 bytes (the sender then adds "Expect:" to its header
 * list to keep curl from waiting for a 100-continue): still no Expect
 * line on the wire and the same headers. */
static void test_wire_bytes_large_body(void **state)
{
  (void)state;
  char pad[1201];
  memset(pad, 'x', sizeof(pad) - 1);
  pad[sizeof(pad) - 1] = '\0';
  assert_int_equal(run("camp-wire-large", 20, pad, true), 24);
}

/* The URL's path is normalised the way curl does (dot segments go) and
 * its query string kept as written. */
static void test_wire_url_path_and_query(void **state)
{
  (void)state;
  assert_int_equal(run_at("/v1/./x/../send?k=v%20w&z", "/v1/send?k=v%20w&z",
                          "camp-wire-url", 10, "", true),
                   12);
}

/* An auth header named like one of curl's own headers still replaces
 * curl's: here "Accept", so no "Accept: * / *" goes out, and the line
 * keeps its place after the sender's other lines. */
static void test_wire_auth_header_named_like_curls(void **state)
{
  (void)state;
  struct wsrv *w = wsrv_start(false);
  struct config_provider p = test_provider(w->port, test_tpl_single);
  free(p.auth_header);
  p.auth_header = strdup("Accept: application/vnd.test+json");
  struct sender *s = test_new_sender(&p, "camp-accept");
  struct sender_recipient r = {"r-0", "r-0@example.org", "{\"name\":\"n\"}"};
  assert_int_equal(sender_submit(s, &r), SO_OK);
  struct sender_result res[1];
  size_t got = 0;
  for (int i = 0; i < 100 && got == 0; i++)
    assert_int_equal(sender_poll(s, 100, res, 1, &got), SO_OK);
  assert_int_equal(got, 1);
  assert_int_equal(res[0].outcome, SENDER_SENT);
  sender_result_cleanup(&res[0]);
  sender_free(s);
  wsrv_stop(w);
  assert_int_equal(w->n, 1);
  char want[256];
  snprintf(want, sizeof(want),
           "POST /send HTTP/1.1\r\n"
           "Host: 127.0.0.1:%d\r\n"
           "Idempotency-Key: camp-accept:r-0\r\n"
           "Content-Type: application/json\r\n"
           "User-Agent: sendonce/%s\r\n"
           "Accept: application/vnd.test+json\r\n"
           "Content-Length: ",
           w->port, SENDONCE_VERSION);
  if (strncmp(w->reqs[0].bytes, want, strlen(want)) != 0)
    fail_msg("got\n%s\nwant a head of\n%s", w->reqs[0].bytes, want);
  wsrv_free(w);
  test_provider_free(&p);
}

/* A proxy in the environment is still honoured (the sender tells curl
 * "no proxy" only when no proxy variable is set): the request goes to
 * the proxy, in absolute form. */
static void test_wire_proxy_env_honoured(void **state)
{
  (void)state;
  struct wsrv *w = wsrv_start(false);
  char proxy[64];
  snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", w->port);
  assert_int_equal(setenv("http_proxy", proxy, 1), 0);
  struct config_provider p = test_provider(w->port, test_tpl_single);
  free(p.url);
  p.url = strdup("http://provider.invalid:81/send");
  struct sender *s = test_new_sender(&p, "camp-proxy");
  struct sender_recipient r = {"r-0", "r-0@example.org", "{\"name\":\"n\"}"};
  assert_int_equal(sender_submit(s, &r), SO_OK);
  struct sender_result res[1];
  size_t got = 0;
  for (int i = 0; i < 100 && got == 0; i++)
    assert_int_equal(sender_poll(s, 100, res, 1, &got), SO_OK);
  assert_int_equal(unsetenv("http_proxy"), 0);
  assert_int_equal(got, 1);
  assert_int_equal(res[0].outcome, SENDER_SENT);
  sender_result_cleanup(&res[0]);
  sender_free(s);
  wsrv_stop(w);
  assert_int_equal(w->n, 1);
  const char *line = "POST http://provider.invalid:81/send HTTP/1.1\r\n";
  assert_memory_equal(w->reqs[0].bytes, line, strlen(line));
  assert_non_null(
      strstr(w->reqs[0].bytes, "\r\nIdempotency-Key: camp-proxy:r-0\r\n"));
  wsrv_free(w);
  test_provider_free(&p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wire_bytes),
      cmocka_unit_test(test_wire_bytes_no_auth),
      cmocka_unit_test(test_wire_bytes_large_body),
      cmocka_unit_test(test_wire_url_path_and_query),
      cmocka_unit_test(test_wire_proxy_env_honoured),
      cmocka_unit_test(test_wire_auth_header_named_like_curls),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
