/* sender.c - send recipients through a provider with curl's multi API.
 *
 * Shape: recipients wait in a FIFO queue; sender_poll() turns up to
 * batch_size of them into a request (sender_request.c) when a concurrency
 * slot and a rate token are free; each attempt runs in one of up to
 * `concurrency` reused easy handles (struct slot). A request that must be
 * retried gives its slot back and waits, detached from the multi handle,
 * until its backoff ends. Finished recipients become results in a FIFO
 * that sender_poll() hands out.
 */
#include "sender.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "sender_internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *sender_outcome_name(enum sender_outcome o)
{
  switch (o) {
    case SENDER_SENT:
      return "sent";
    case SENDER_REJECTED:
      return "rejected";
    case SENDER_GAVE_UP:
      return "gave_up";
  }
  return "unknown";
}

void sender_result_cleanup(struct sender_result *r)
{
  if (!r)
    return;
  free(r->recipient_id);
  memset(r, 0, sizeof(*r));
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sender_batch_key(const char *campaign_id, const char *const *ids, size_t n,
                     char *out, size_t outlen)
{
  const char **sorted = malloc((n ? n : 1) * sizeof(*sorted));
  if (!sorted)
    return SO_ERR_NOMEM;
  memcpy(sorted, ids, n * sizeof(*sorted));
  qsort(sorted, n, sizeof(*sorted), cmp_str);
  uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 */
  for (size_t i = 0; i < n; i++) {
    /* Including the NUL keeps {"ab","c"} apart from {"a","bc"}. */
    for (const unsigned char *p = (const unsigned char *)sorted[i];; p++) {
      h ^= *p;
      h *= 0x100000001b3ULL;
      if (!*p)
        break;
    }
  }
  free(sorted);
  int w = snprintf(out, outlen, "%s:batch:%016llx", campaign_id,
                   (unsigned long long)h);
  return w < 0 || (size_t)w >= outlen ? SO_ERR_TOO_LARGE : SO_OK;
}

/* has_ctl: true if `s` holds a control character (header injection). */
static bool has_ctl(const char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return true;
  return false;
}

/* ---- scheduling ------------------------------------------------------- */

/* have_token: refill the bucket; true when a request may start now. */
static bool have_token(struct sender *s, int64_t now)
{
  if (s->rate_per_s <= 0)
    return true;
  if (now > s->tokens_at_ms) {
    s->tokens += (double)(now - s->tokens_at_ms) * s->rate_per_s / 1000.0;
    if (s->tokens > s->bucket_cap)
      s->tokens = s->bucket_cap;
    s->tokens_at_ms = now;
  }
  return s->tokens >= 1.0;
}

/* token_wait_ms: how long until the next token. */
static int64_t token_wait_ms(const struct sender *s)
{
  if (s->rate_per_s <= 0 || s->tokens >= 1.0)
    return 0;
  return (int64_t)((1.0 - s->tokens) * 1000.0 / s->rate_per_s) + 1;
}

/* next_retry: the waiting request due first, or NULL. */
static struct request *next_retry(const struct sender *s)
{
  struct request *best = NULL;
  for (struct request *rq = s->reqs; rq; rq = rq->next)
    if (!rq->active && (!best || rq->not_before_ms < best->not_before_ms))
      best = rq;
  return best;
}

/* new_ready: whether the queue may form a request now: a full batch, or a
 * partial one whose oldest recipient has lingered long enough. */
static bool new_ready(const struct sender *s, int64_t now)
{
  return s->q_len >= (size_t)s->batch_size ||
         (s->q_len > 0 && now - s->q_head->queued_ms >= SENDER_BATCH_LINGER_MS);
}

/* start_ready: fill free slots with due retries first, then new work. */
static int start_ready(struct sender *s, int64_t now)
{
  if (s->draining)
    return SO_OK;
  while (s->n_active < (size_t)s->concurrency) {
    struct request *due = next_retry(s);
    if (due && due->not_before_ms > now)
      due = NULL;
    if ((!due && !new_ready(s, now)) || !have_token(s, now))
      return SO_OK;
    int rc = due ? sender__start_retry(s, due) : sender__start_new(s);
    if (rc != SO_OK)
      return rc;
  }
  return SO_OK;
}

/* wait_ms: how long the next curl_multi_poll may sleep. */
static int wait_ms(struct sender *s, int64_t now, int64_t deadline)
{
  int64_t wake = deadline;
  /* Our own timers (a retry's backoff, a partial batch's linger, the next
   * rate token) matter only while a slot is free to act on them; with all
   * slots busy the next event is a transfer finishing, which curl sees.
   * Waking for them with no slot free would spin. */
  if (s->n_active < (size_t)s->concurrency) {
    struct request *rq = next_retry(s);
    int64_t ready = INT64_MAX;
    if (rq)
      ready = rq->not_before_ms;
    if (s->q_len > 0) {
      int64_t q = new_ready(s, now)
                      ? now
                      : s->q_head->queued_ms + SENDER_BATCH_LINGER_MS;
      if (q < ready)
        ready = q;
    }
    if (ready != INT64_MAX) {
      if (ready < now + token_wait_ms(s))
        ready = now + token_wait_ms(s);
      if (ready <= now)
        ready = now + 1; /* start_ready just ran: never spin on it */
      if (ready < wake)
        wake = ready;
    }
  }
  long ct = -1;
  if (curl_multi_timeout(s->multi, &ct) == CURLM_OK && ct >= 0 &&
      now + ct < wake)
    wake = now + ct;
  return wake > now ? (int)(wake - now) : 0;
}

int sender_poll(struct sender *s, int timeout_ms, struct sender_result *results,
                size_t max, size_t *n)
{
  int64_t now = clock_monotonic_ms();
  int64_t deadline = now + (timeout_ms > 0 ? timeout_ms : 0);
  *n = 0;
  for (;;) {
    int running, rc;
    if ((rc = start_ready(s, now)) != SO_OK)
      return rc;
    CURLMcode mc = curl_multi_perform(s->multi, &running);
    if (mc != CURLM_OK) {
      log_error("sender: curl_multi_perform: %s", curl_multi_strerror(mc));
      return SO_ERR_INTERNAL;
    }
    sender__collect(s);
    now = clock_monotonic_ms();
    if ((rc = start_ready(s, now)) != SO_OK)
      return rc;
    if (s->done_len > 0 || (s->q_len == 0 && !s->reqs) || now >= deadline)
      break;
    mc = curl_multi_poll(s->multi, NULL, 0, wait_ms(s, now, deadline), NULL);
    if (mc != CURLM_OK) {
      log_error("sender: curl_multi_poll: %s", curl_multi_strerror(mc));
      return SO_ERR_INTERNAL;
    }
    now = clock_monotonic_ms();
  }
  size_t k = s->done_len < max ? s->done_len : max;
  if (k > 0)
    memcpy(results, s->done + s->done_head, k * sizeof(*results));
  s->done_head += k;
  s->done_len -= k;
  if (s->done_len == 0)
    s->done_head = 0;
  s->in_flight -= k;
  *n = k;
  return SO_OK;
}

/* ---- life cycle --------------------------------------------------------- */

int sender_submit(struct sender *s, const struct sender_recipient *r)
{
  if (!r || !r->id || !r->id[0] || !r->address || has_ctl(r->id))
    return SO_ERR_INVALID;
  if (s->draining)
    return SO_ERR_CONFLICT;
  struct item *it = sender__item_new(s, r->address, r->vars_json);
  if (!it)
    return SO_ERR_NOMEM;
  if (!(it->id = strdup(r->id))) {
    sender__item_put(s, it);
    return SO_ERR_NOMEM;
  }
  it->queued_ms = clock_monotonic_ms();
  if (s->q_tail)
    s->q_tail->next = it;
  else
    s->q_head = it;
  s->q_tail = it;
  s->q_len++;
  s->in_flight++;
  return SO_OK;
}

size_t sender_in_flight(const struct sender *s)
{
  return s->in_flight;
}

size_t sender_capacity(const struct sender *s)
{
  size_t window = 2 * (size_t)s->concurrency * (size_t)s->batch_size;
  return s->in_flight < window ? window - s->in_flight : 0;
}

/* drop_queued: free every recipient not yet in a request; `dropped`
 * recipients already left with requests. Returns the total, now out of
 * the in-flight count. */
static size_t drop_queued(struct sender *s, size_t dropped)
{
  while (s->q_head) {
    struct item *it = s->q_head;
    s->q_head = it->next;
    sender__item_put(s, it);
    dropped++;
  }
  s->q_tail = NULL;
  s->q_len = 0;
  s->in_flight -= dropped;
  return dropped;
}

size_t sender_cancel_all(struct sender *s)
{
  size_t dropped = 0;
  while (s->reqs) {
    dropped += s->reqs->n_items;
    sender__request_free(s, s->reqs);
  }
  return drop_queued(s, dropped);
}

size_t sender_drain(struct sender *s)
{
  s->draining = true;
  size_t dropped = 0;
  /* Requests waiting for a retry: their last attempt was refused (5xx,
   * 429, ...) or timed out, so dropping one is no worse than the retry
   * that would have resent it. Requests in transfer are left alone. */
  for (struct request *rq = s->reqs, *next; rq; rq = next) {
    next = rq->next;
    if (rq->active)
      continue;
    dropped += rq->n_items;
    sender__request_free(s, rq);
  }
  return drop_queued(s, dropped);
}

/* key_prefix: "Idempotency-Key: <campaign_id>:", the start of every
 * per-recipient key line. Returns NULL if out of memory. */
static char *key_prefix(const char *campaign_id, size_t *len)
{
  static const char name[] = "Idempotency-Key: ";
  size_t nl = sizeof(name) - 1, cl = strlen(campaign_id);
  char *p = malloc(nl + cl + 2);
  if (!p)
    return NULL;
  memcpy(p, name, nl);
  memcpy(p + nl, campaign_id, cl);
  p[nl + cl] = ':';
  p[nl + cl + 1] = '\0';
  *len = nl + cl + 1;
  return p;
}

int sender_rebind(struct sender *s, const char *campaign_id,
                  const char *content_json, char *err, size_t errlen)
{
  char terr[256];
  if (s->in_flight > 0) {
    snprintf(err, errlen, "sender busy: %zu recipients in flight",
             s->in_flight);
    return SO_ERR_CONFLICT;
  }
  if (!campaign_id || !campaign_id[0]) {
    snprintf(err, errlen, "no campaign id");
    return SO_ERR_INVALID;
  }
  size_t pl = 0;
  char *id = strdup(campaign_id);
  char *prefix = key_prefix(campaign_id, &pl);
  if (!id || !prefix) {
    snprintf(err, errlen, "sender: out of memory");
    free(id);
    free(prefix);
    return SO_ERR_NOMEM;
  }
  int rc = template_bind(s->tpl, campaign_id, content_json, terr, sizeof(terr));
  if (rc != SO_OK) {
    snprintf(err, errlen, "campaign %s: body_template: %s", campaign_id, terr);
    free(id);
    free(prefix);
    return rc;
  }
  free(s->campaign_id);
  s->campaign_id = id;
  free(s->key_prefix);
  s->key_prefix = prefix;
  s->key_prefix_len = pl;
  s->draining = false;
  memset(&s->stats, 0, sizeof(s->stats));
  return SO_OK;
}

void sender_stats(const struct sender *s, struct sender_stats *out)
{
  *out = s->stats;
}

/* wipe: zero a secret before it is freed, so it does not linger in the
 * heap. volatile keeps the compiler from dropping the stores as dead. */
static void wipe(char *p)
{
  for (volatile char *c = p; *c; c++)
    *c = '\0';
}

void sender_free(struct sender *s)
{
  if (!s)
    return;
  sender_cancel_all(s);
  for (size_t i = 0; i < s->done_len; i++)
    sender_result_cleanup(&s->done[s->done_head + i]);
  free(s->done);
  /* The easy handles go before the multi handle that shared their
   * connections; none is attached any more (sender_cancel_all). */
  sender__slots_free(s);
  sender__pools_free(s);
  if (s->multi)
    curl_multi_cleanup(s->multi);
  curl_url_cleanup(s->curlu); /* after the easy handles that used it */
  for (struct curl_slist *l = s->headers; l; l = l->next)
    wipe(l->data); /* one line is the auth header */
  curl_slist_free_all(s->headers);
  template_free(s->tpl);
  free(s->campaign_id);
  free(s->key_prefix);
  free(s->url);
  free(s->method);
  if (s->auth_header)
    wipe(s->auth_header);
  free(s->auth_header);
  free(s);
}

/* check_provider: the settings sender_new() relies on. */
static int check_provider(const struct config_provider *p, char *err,
                          size_t errlen)
{
  const char *bad = NULL;
  if (!p->url || !p->url[0])
    bad = "url is missing";
  else if (p->timeout_ms < 1)
    bad = "timeout_ms must be >= 1";
  else if (p->concurrency < 1)
    bad = "concurrency must be >= 1";
  else if (p->batch_size < 1)
    bad = "batch_size must be >= 1";
  else if (p->rate_per_s < 0)
    bad = "rate_per_s must be >= 0";
  else if (p->max_retries < 0)
    bad = "max_retries must be >= 0";
  else if (p->retry_base_ms < 0)
    bad = "retry_base_ms must be >= 0";
  else if (p->method &&
           (!p->method[0] || strspn(p->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
                                 strlen(p->method)))
    bad = "method must be an upper-case HTTP method";
  else if (p->auth_header && p->auth_header[0] &&
           (has_ctl(p->auth_header) || p->auth_header[0] == ':' ||
            !strchr(p->auth_header, ':')))
    bad = "auth_header must be one \"Name: value\" line";
  if (!bad && p->url) {
    CURLU *u = curl_url();
    char *scheme = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, p->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
      bad = "url is not an http(s) URL";
    curl_free(scheme);
    curl_url_cleanup(u);
  }
  if (!bad)
    return SO_OK;
  /* The auth header is a secret: only its shape is described, never it. */
  snprintf(err, errlen, "provider %s: %s", p->channel ? p->channel : "?", bad);
  return SO_ERR_INVALID;
}

/* curl_sees_name: whether libcurl looks for a header of this name in
 * CURLOPT_HTTPHEADER (to leave out or replace one of its own, or to treat
 * the line specially). Such a line must head its own list entry. */
static bool curl_sees_name(const char *line)
{
  static const char *const names[] = {"Host",
                                      "Accept",
                                      "Accept-Encoding",
                                      "Content-Type",
                                      "Content-Length",
                                      "Transfer-Encoding",
                                      "Expect",
                                      "Connection",
                                      "Cookie",
                                      "User-Agent",
                                      "Referer",
                                      "TE",
                                      "Range",
                                      "Upgrade",
                                      "Proxy-Connection",
                                      "Proxy-Authorization"};
  size_t nl = strcspn(line, ":");
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strlen(names[i]) == nl && strncasecmp(line, names[i], nl) == 0)
      return true;
  return false;
}

/* fixed_headers: the header lines every request carries after its own
 * Idempotency-Key line. "Expect:" (first, so a request can skip it: see
 * request_key) turns off the 100-continue round trip that costs a second
 * on servers that never answer it. The User-Agent is a line here rather
 * than CURLOPT_USERAGENT, which curl would format anew per request.
 *
 * The other fixed lines travel as ONE list entry joined with CRLF. curl
 * formats every entry through its printf per request and walks the whole
 * list each time it looks for a header of its own, so each entry costs
 * ~800 instructions per request beyond its bytes; joined, the lines reach
 * the wire byte for byte as separate entries would (curl writes an entry
 * followed by CRLF). curl only looks at the start of an entry, so the
 * entry begins with Content-Type (curl checks for it to decide whether to
 * add its own form Content-Type), User-Agent follows (curl checks for it
 * only with CURLOPT_USERAGENT, which we do not set), and the auth header
 * joins them unless its name is one curl looks for (curl_sees_name): then
 * it stays an entry of its own, as before. ("Authorization" joins: curl
 * checks it only to drop it on a redirect, which we never follow.)
 * has_ctl() keeps CR and LF out of the auth header itself. */
static int fixed_headers(struct sender *s)
{
  static const char fixed[] =
      "Content-Type: application/json\r\n"
      "User-Agent: sendonce/" SENDONCE_VERSION;
  size_t fl = sizeof(fixed) - 1;
  bool join = s->auth_header && !curl_sees_name(s->auth_header);
  size_t al = join ? strlen(s->auth_header) : 0;
  char *line = malloc(fl + 2 + al + 1);
  if (!line)
    return SO_ERR_NOMEM;
  memcpy(line, fixed, fl + 1);
  if (join) {
    memcpy(line + fl, "\r\n", 2);
    memcpy(line + fl + 2, s->auth_header, al + 1);
  }
  struct curl_slist *l = curl_slist_append(NULL, "Expect:");
  struct curl_slist *all = l ? curl_slist_append(l, line) : NULL;
  if (all && s->auth_header && !join)
    all = curl_slist_append(all, s->auth_header);
  wipe(line); /* may hold the auth header */
  free(line);
  if (!all) {
    for (struct curl_slist *e = l; e; e = e->next)
      wipe(e->data);
    curl_slist_free_all(l);
    return SO_ERR_NOMEM;
  }
  s->headers = all;
  return SO_OK;
}

/* proxy_env: whether a variable libcurl consults to pick a proxy for an
 * http(s) URL is set (also empty: curl would then decide). */
static bool proxy_env(void)
{
  static const char *const vars[] = {"no_proxy",    "NO_PROXY",    "http_proxy",
                                     "https_proxy", "HTTPS_PROXY", "all_proxy",
                                     "ALL_PROXY"};
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
    if (getenv(vars[i]))
      return true;
  return false;
}

/* parse_url: the provider URL as a CURLU, parsed with the flags curl
 * itself uses for CURLOPT_URL, so requests name the same target. */
static CURLU *parse_url(const char *url)
{
  CURLU *u = curl_url();
  if (u && curl_url_set(u, CURLUPART_URL, url,
                        CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) !=
               CURLUE_OK) {
    curl_url_cleanup(u);
    u = NULL;
  }
  return u;
}

static char *dup_or_null(const char *v, bool *oom)
{
  if (!v || !v[0])
    return NULL;
  char *d = strdup(v);
  if (!d)
    *oom = true;
  return d;
}

struct sender *sender_new(const struct config_provider *p,
                          const char *campaign_id, const char *content_json,
                          char *err, size_t errlen)
{
  char terr[256];
  bool oom = false;
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != CURLE_OK) {
    snprintf(err, errlen, "curl_global_init: %s",
             curl_easy_strerror(curl_init_rc));
    return NULL;
  }
  if (!campaign_id || !campaign_id[0]) {
    snprintf(err, errlen, "no campaign id");
    return NULL;
  }
  if (check_provider(p, err, errlen) != SO_OK)
    return NULL;
  struct sender *s = calloc(1, sizeof(*s));
  if (!s)
    goto nomem;
  s->campaign_id = dup_or_null(campaign_id, &oom);
  if (!(s->key_prefix = key_prefix(campaign_id, &s->key_prefix_len)))
    oom = true;
  s->url = dup_or_null(p->url, &oom);
  if (p->method && strcmp(p->method, "POST") != 0)
    s->method = dup_or_null(p->method, &oom);
  s->auth_header = dup_or_null(p->auth_header, &oom);
  if (oom)
    goto nomem;
  s->timeout_ms = p->timeout_ms;
  s->concurrency = p->concurrency;
  s->rate_per_s = p->rate_per_s;
  s->batch_size = p->batch_size;
  s->max_retries = p->max_retries;
  s->retry_base_ms = p->retry_base_ms;

  int rc = template_parse(p->body_template, &s->tpl, terr, sizeof(terr));
  if (rc == SO_OK && p->batch_size > 1 && !template_is_batch(s->tpl)) {
    snprintf(terr, sizeof(terr),
             "batch_size %d needs a {{#recipients}}...{{/recipients}} "
             "section",
             p->batch_size);
    rc = SO_ERR_INVALID;
  }
  if (rc != SO_OK) {
    snprintf(err, errlen, "provider %s: body_template: %s",
             p->channel ? p->channel : "?", terr);
    goto fail;
  }
  if (template_bind(s->tpl, campaign_id, content_json, terr, sizeof(terr)) !=
      SO_OK) {
    snprintf(err, errlen, "campaign %s: body_template: %s", campaign_id, terr);
    goto fail;
  }
  s->proxy_env = proxy_env();
  if (!(s->curlu = parse_url(s->url)) || !(s->multi = curl_multi_init()) ||
      !(s->slots = calloc((size_t)p->concurrency, sizeof(*s->slots))) ||
      fixed_headers(s) != SO_OK)
    goto nomem;
  /* Keep-alive and HTTP/2 streams: one pool per sender, bounded by the
   * concurrency so a provider sees at most that many connections. */
  curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                    (long)p->concurrency);
  curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)p->concurrency);

  s->bucket_cap = p->rate_per_s / 100 > 1 ? p->rate_per_s / 100 : 1;
  s->tokens = s->bucket_cap;
  s->tokens_at_ms = clock_monotonic_ms();
  s->rng = (uint64_t)clock_now_ms() ^ ((uint64_t)(uintptr_t)s << 16) ^
           (uint64_t)getpid();
  if (!s->rng)
    s->rng = 0x9E3779B97F4A7C15ULL;
  return s;

nomem:
  snprintf(err, errlen, "sender: out of memory");
fail:
  sender_free(s);
  return NULL;
}
