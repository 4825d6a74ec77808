/* bare_curl.c - the HTTP ceiling for bench/run.
 *
 *   bare_curl URL N CONCURRENCY KEYPREFIX
 *
 * N POSTs to URL from one curl multi handle with CONCURRENCY requests in
 * flight on keep-alive connections, each with its own body (the shape of
 * sendonce's default body template, KEYPREFIX as the campaign id),
 * "Idempotency-Key: KEYPREFIX:u-<i>" and the sender's Content-Type and
 * User-Agent lines: the bytes the sender puts on the wire for a campaign
 * whose id is as long as KEYPREFIX. Responses discarded, no bookkeeping:
 * what sendonce's sender would reach if sending were all it did. So it asks of
 * curl no more per request than the sender does: the URL parsed once
 * (CURLOPT_CURLU), no proxy lookups when the environment names no proxy,
 * no signal handling, header list and options set once per handle. Prints
 * "requests=N seconds=S rate=R errors=E machine_cpu_us=C" (errors:
 * transfers that failed or answered other than 2xx; C: the whole
 * machine's busy CPU per request, the sink's included, see
 * machine_cpu.h). Not a test: a measuring tool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "machine_cpu.h"

struct slot {
  CURL *easy;
  struct curl_slist key_node;   /* -> key_header, then ctype_node */
  struct curl_slist ctype_node; /* Content-Type */
  char key_header[192];
  char body[384];
};

static size_t discard_cb(char *ptr, size_t size, size_t n, void *ud)
{
  (void)ptr;
  (void)ud;
  return size * n;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long parse_long(const char *s)
{
  char *end = NULL;
  long v = strtol(s, &end, 10);
  return (*end == '\0' && v > 0) ? v : -1;
}

/* proxy_env: whether a variable curl consults for an http(s) proxy is
 * set (the sender's rule for saying "no proxy" outright). */
static int proxy_env(void)
{
  static const char *const vars[] = {"no_proxy",    "NO_PROXY",    "http_proxy",
                                     "https_proxy", "HTTPS_PROXY", "all_proxy",
                                     "ALL_PROXY"};
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
    if (getenv(vars[i]))
      return 1;
  return 0;
}

/* slot_init: the options that are the same for every request. */
static int slot_init(struct slot *s, CURLU *url)
{
  /* The sender's fixed lines, joined in one entry as it joins them
   * (lib/sender.c, fixed_headers): the User-Agent is part of its
   * contract, and curl formats every header byte of every request. */
  static char ctype[] =
      "Content-Type: application/json\r\n"
      "User-Agent: sendonce/" SENDONCE_VERSION;
  if (!(s->easy = curl_easy_init()))
    return -1;
  s->key_node.data = s->key_header;
  s->key_node.next = &s->ctype_node;
  s->ctype_node.data = ctype;
  s->ctype_node.next = NULL;
  curl_easy_setopt(s->easy, CURLOPT_CURLU, url);
  curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
  if (!proxy_env()) {
    curl_easy_setopt(s->easy, CURLOPT_PROXY, "");
    curl_easy_setopt(s->easy, CURLOPT_NOPROXY, "");
  }
  curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, &s->key_node);
  curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard_cb);
  curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
  return 0;
}

static void start(CURLM *multi, struct slot *s, const char *prefix, long i)
{
  snprintf(s->key_header, sizeof(s->key_header), "Idempotency-Key: %s:u-%ld",
           prefix, i);
  snprintf(s->body, sizeof(s->body),
           "{\"campaign_id\":\"%s\",\"recipient_id\":\"u-%ld\","
           "\"address\":\"user%ld@example.org\"}",
           prefix, i, i);
  curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
  curl_multi_add_handle(multi, s->easy);
}

int main(int argc, char **argv)
{
  if (argc != 5) {
    fputs("usage: bare_curl URL N CONCURRENCY KEYPREFIX\n", stderr);
    return 2;
  }
  const char *url = argv[1];
  long total = parse_long(argv[2]);
  long conc = parse_long(argv[3]);
  const char *prefix = argv[4];
  if (total <= 0 || conc <= 0 || conc > 4096) {
    fputs("bare_curl: bad count\n", stderr);
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return 1;
  CURLM *multi = curl_multi_init();
  struct slot *slots = calloc((size_t)conc, sizeof(*slots));
  CURLU *u = curl_url();
  if (multi == NULL || slots == NULL || u == NULL ||
      curl_url_set(u, CURLUPART_URL, url,
                   CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
    return 1;
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);
  long started = 0, done = 0, errors = 0;
  double busy0 = machine_busy_s();
  double t0 = now_s();
  for (long i = 0; i < conc && started < total; i++) {
    if (slot_init(&slots[i], u) != 0)
      return 1;
    start(multi, &slots[i], prefix, started++);
  }
  while (done < total) {
    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK)
      return 1;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
      if (m->msg != CURLMSG_DONE)
        continue;
      struct slot *s = NULL;
      long code = 0;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      if (m->data.result != CURLE_OK || code < 200 || code > 299)
        errors++;
      done++;
      curl_multi_remove_handle(multi, s->easy);
      if (started < total)
        start(multi, s, prefix, started++);
    }
    if (done < total && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
      return 1;
  }
  double dt = now_s() - t0;
  /* The whole machine's CPU per request: curl, the sink and the kernel. */
  double cpu_us = machine_cpu_us_per_op(busy0, machine_busy_s(), total);
  printf("requests=%ld seconds=%.3f rate=%.1f errors=%ld machine_cpu_us=%.1f\n",
         total, dt, (double)total / dt, errors, cpu_us);
  for (long i = 0; i < conc; i++) {
    if (slots[i].easy) {
      curl_multi_remove_handle(multi, slots[i].easy);
      curl_easy_cleanup(slots[i].easy);
    }
  }
  free(slots);
  curl_multi_cleanup(multi);
  curl_url_cleanup(u);
  curl_global_cleanup();
  return errors ? 1 : 0;
}
