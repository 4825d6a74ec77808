/* bare_curl.c - the HTTP ceiling for bench/run.
 *
 *   bare_curl URL N CONCURRENCY KEYPREFIX
 *
 * N POSTs to URL from one curl multi handle with CONCURRENCY requests in
 * flight on keep-alive connections, each with its own body (the shape of
 * sendonce's default body template) and "Idempotency-Key:
 * KEYPREFIX:u-<i>", responses discarded, no bookkeeping: what sendonce's
 * sender would reach if sending were all it did. Prints "requests=N
 * seconds=S rate=R errors=E" (errors: transfers that failed or answered
 * other than 2xx). Not a test: a measuring tool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

struct slot {
  CURL *easy;
  struct curl_slist *headers;
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

static void start(CURLM *multi, struct slot *s, const char *url,
                  const char *prefix, long i)
{
  curl_slist_free_all(s->headers);
  snprintf(s->key_header, sizeof(s->key_header), "Idempotency-Key: %s:u-%ld",
           prefix, i);
  snprintf(s->body, sizeof(s->body),
           "{\"campaign_id\":\"%s\",\"recipient_id\":\"u-%ld\","
           "\"address\":\"user%ld@example.org\"}",
           prefix, i, i);
  s->headers = curl_slist_append(NULL, s->key_header);
  s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
  curl_easy_setopt(s->easy, CURLOPT_URL, url);
  curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
  curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
  curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard_cb);
  curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
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
  if (multi == NULL || slots == NULL)
    return 1;
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);
  long started = 0, done = 0, errors = 0;
  double t0 = now_s();
  for (long i = 0; i < conc && started < total; i++) {
    slots[i].easy = curl_easy_init();
    if (slots[i].easy == NULL)
      return 1;
    start(multi, &slots[i], url, prefix, started++);
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
        start(multi, s, url, prefix, started++);
    }
    if (done < total && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
      return 1;
  }
  double dt = now_s() - t0;
  printf("requests=%ld seconds=%.3f rate=%.1f errors=%ld\n", total, dt,
         (double)total / dt, errors);
  for (long i = 0; i < conc; i++) {
    if (slots[i].easy) {
      curl_multi_remove_handle(multi, slots[i].easy);
      curl_easy_cleanup(slots[i].easy);
    }
    curl_slist_free_all(slots[i].headers);
  }
  free(slots);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  return errors ? 1 : 0;
}
