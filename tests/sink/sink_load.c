/* sink_load.c - sendonce-sink-load: a bare curl-multi load loop.
 *
 * Measures the sink's ceiling: N requests at a fixed concurrency, each a
 * POST with a distinct Idempotency-Key, keep-alive connections. Prints
 * "requests=N seconds=S rps=R errors=E". Not a test: a measuring tool.
 *
 * usage: sendonce-sink-load URL [requests] [concurrency]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

struct slot {
  CURL *easy;
  struct curl_slist *headers;
  char key_header[96];
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

static long parse_count(const char *s, long dflt)
{
  if (s == NULL)
    return dflt;
  char *end;
  long v = strtol(s, &end, 10);
  return (*end == '\0' && v > 0) ? v : dflt;
}

static void start(CURLM *multi, struct slot *s, const char *url, long n)
{
  curl_slist_free_all(s->headers);
  snprintf(s->key_header, sizeof(s->key_header), "Idempotency-Key: load:r-%ld",
           n);
  s->headers = curl_slist_append(NULL, s->key_header);
  curl_easy_setopt(s->easy, CURLOPT_URL, url);
  curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, "{\"x\":1}");
  curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
  curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard_cb);
  curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
  curl_multi_add_handle(multi, s->easy);
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fputs("usage: sendonce-sink-load URL [requests] [concurrency]\n", stderr);
    return 2;
  }
  const char *url = argv[1];
  long total = parse_count(argc > 2 ? argv[2] : NULL, 100000);
  long conc = parse_count(argc > 3 ? argv[3] : NULL, 64);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM *multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);
  struct slot *slots = calloc((size_t)conc, sizeof(*slots));
  if (multi == NULL || slots == NULL)
    return 1;
  long started = 0, done = 0, errors = 0;
  double t0 = now_s();
  for (long i = 0; i < conc && started < total; i++) {
    slots[i].easy = curl_easy_init();
    start(multi, &slots[i], url, started++);
  }
  while (done < total) {
    int running, queued;
    curl_multi_perform(multi, &running);
    CURLMsg *m;
    while ((m = curl_multi_info_read(multi, &queued)) != NULL) {
      if (m->msg != CURLMSG_DONE)
        continue;
      struct slot *s;
      long code = 0;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      if (m->data.result != CURLE_OK || code != 200)
        errors++;
      done++;
      curl_multi_remove_handle(multi, s->easy);
      if (started < total)
        start(multi, s, url, started++);
    }
    if (done < total)
      curl_multi_poll(multi, NULL, 0, 100, NULL);
  }
  double secs = now_s() - t0;
  printf("requests=%ld seconds=%.3f rps=%.0f errors=%ld concurrency=%ld\n",
         total, secs, (double)total / secs, errors, conc);
  for (long i = 0; i < conc; i++) {
    curl_slist_free_all(slots[i].headers);
    curl_easy_cleanup(slots[i].easy);
  }
  free(slots);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  return errors == 0 ? 0 : 1;
}
