/* sender.c - send recipients through a provider with curl's multi API.
 *
 * Shape: recipients wait in a FIFO queue; sender_poll() turns up to
 * batch_size of them into a request (rendered body, Idempotency-Key,
 * header list, easy handle) when a concurrency slot and a rate token are
 * free. A request that must be retried keeps its easy handle, body and key
 * and waits (not attached to the multi handle) until its backoff ends; it
 * is then re-added, so a retry is byte-for-byte the same request. Finished
 * recipients become results in a FIFO that sender_poll() hands out.
 */
#include "sender.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "template.h"

/* A queued recipient: owned copies of sender_recipient's strings. */
struct item {
  char *id;
  char *address;
  char *vars_json;
  int64_t queued_ms; /* monotonic time of sender_submit() */
  struct item *next;
};

/* One HTTP request for one recipient or one batch, across its attempts. */
struct request {
  struct sender *s;
  CURL *easy;
  struct item **items; /* the recipients it carries */
  size_t n_items;
  char *body; /* rendered once, sent on every attempt */
  size_t body_len;
  char *key; /* Idempotency-Key value */
  struct curl_slist *headers;
  int attempts;          /* requests made so far */
  bool active;           /* attached to the multi handle */
  int64_t not_before_ms; /* while waiting: monotonic time of the retry */
  int last_status;       /* HTTP status of the last attempt, 0 if none */
  char last_error[SENDER_REASON_MAX];
  char errbuf[CURL_ERROR_SIZE];
  char resp[SENDER_RESPONSE_CAP];
  size_t resp_len;
  struct request *prev, *next; /* sender->reqs, all live requests */
};

struct sender {
  struct template *tpl;
  char *campaign_id;
  char *url;
  char *method; /* NULL for POST */
  char *auth_header;
  long timeout_ms;
  int concurrency;
  int rate_per_s; /* 0 = unlimited */
  int batch_size;
  int max_retries;
  int retry_base_ms;
  CURLM *multi;
  struct item *q_head, *q_tail; /* submitted, no request yet */
  size_t q_len;
  struct request *reqs; /* active and waiting requests */
  size_t n_active;
  size_t in_flight; /* submitted, outcome not yet handed out */
  double tokens;    /* rate limit bucket */
  double bucket_cap;
  int64_t tokens_at_ms;
  uint64_t rng;
  struct sender_result *done; /* finished, not yet handed out */
  size_t done_head, done_len, done_cap;
  struct sender_stats stats;
};

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

/* ---- small helpers ---------------------------------------------------- */

static uint64_t rng_next(struct sender *s)
{
  /* xorshift64*: jitter only needs to decorrelate workers. */
  s->rng ^= s->rng >> 12;
  s->rng ^= s->rng << 25;
  s->rng ^= s->rng >> 27;
  return s->rng * 0x2545F4914F6CDD1DULL;
}

/* has_ctl: true if `s` holds a control character (header injection). */
static bool has_ctl(const char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return true;
  return false;
}

/* snippet: the response body as one line of printable ASCII, for a
 * reason that goes to logs and the registry. */
static void snippet(const char *in, size_t len, char *out, size_t outlen)
{
  size_t o = 0;
  bool space = false;
  for (size_t i = 0; i < len && o + 1 < outlen; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      space = o > 0;
      continue;
    }
    if (space && o + 2 < outlen)
      out[o++] = ' ';
    space = false;
    /* '"' becomes '\'' so the reason can sit in a quoted log field. */
    out[o++] = (c < 0x20 || c >= 0x7f) ? '?' : c == '"' ? '\'' : (char)c;
  }
  out[o] = '\0';
}

/* join: out = a + b, truncated to outlen - 1 bytes. Reasons are meant to
 * be cut short; this says so where snprintf would make gcc warn. */
static void join(char *out, size_t outlen, const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  if (la >= outlen)
    la = outlen - 1;
  if (lb > outlen - 1 - la)
    lb = outlen - 1 - la;
  memmove(out, a, la);
  memmove(out + la, b, lb);
  out[la + lb] = '\0';
}

static void item_free(struct item *it)
{
  if (!it)
    return;
  free(it->id);
  free(it->address);
  free(it->vars_json);
  free(it);
}

/* ---- results ---------------------------------------------------------- */

/* push_result: record the outcome of one item; takes its id. On NOMEM the
 * outcome is lost and in_flight is corrected, so the caller's loop still
 * ends; the recipient stays INFLIGHT in the registry and is resent, with
 * its key, on resume. */
static void push_result(struct sender *s, struct item *it,
                        enum sender_outcome o, int status, int attempts,
                        const char *reason)
{
  if (s->done_head > 0 && s->done_head + s->done_len == s->done_cap) {
    memmove(s->done, s->done + s->done_head, s->done_len * sizeof(*s->done));
    s->done_head = 0;
  }
  if (s->done_len == s->done_cap) {
    size_t cap = s->done_cap ? s->done_cap * 2 : 64;
    struct sender_result *d = realloc(s->done, cap * sizeof(*d));
    if (!d) {
      log_error("sender: out of memory recording recipient=%s", it->id);
      s->in_flight--;
      item_free(it);
      return;
    }
    s->done = d;
    s->done_cap = cap;
  }
  struct sender_result *r = &s->done[s->done_head + s->done_len++];
  memset(r, 0, sizeof(*r));
  r->recipient_id = it->id;
  it->id = NULL;
  r->outcome = o;
  r->http_status = status;
  r->attempts = attempts;
  snprintf(r->reason, sizeof(r->reason), "%s", reason ? reason : "");
  if (o == SENDER_SENT)
    s->stats.sent++;
  else if (o == SENDER_REJECTED)
    s->stats.rejected++;
  else
    s->stats.gave_up++;
  item_free(it);
}

/* ---- requests --------------------------------------------------------- */

static void request_unlink(struct sender *s, struct request *rq)
{
  if (rq->prev)
    rq->prev->next = rq->next;
  else
    s->reqs = rq->next;
  if (rq->next)
    rq->next->prev = rq->prev;
  rq->prev = rq->next = NULL;
}

/* request_free: detach and release a request; its items are freed unless
 * they were handed on (NULL entries). */
static void request_free(struct sender *s, struct request *rq)
{
  if (!rq)
    return;
  if (rq->active) {
    curl_multi_remove_handle(s->multi, rq->easy);
    rq->active = false;
    s->n_active--;
  }
  request_unlink(s, rq);
  curl_easy_cleanup(rq->easy);
  curl_slist_free_all(rq->headers);
  for (size_t i = 0; i < rq->n_items; i++)
    item_free(rq->items[i]);
  free(rq->items);
  free(rq->body);
  free(rq->key);
  free(rq);
}

/* request_finish: every item of the request gets the outcome. */
static void request_finish(struct sender *s, struct request *rq,
                           enum sender_outcome o, const char *reason)
{
  for (size_t i = 0; i < rq->n_items; i++) {
    push_result(s, rq->items[i], o, rq->last_status, rq->attempts, reason);
    rq->items[i] = NULL;
  }
  if (o != SENDER_SENT)
    log_warn(
        "sender: %s campaign=%s key=%s recipients=%zu attempts=%d "
        "reason=\"%s\"",
        sender_outcome_name(o), s->campaign_id, rq->key ? rq->key : "-",
        rq->n_items, rq->attempts, reason);
  request_free(s, rq);
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *user)
{
  struct request *rq = user;
  size_t n = size * nmemb;
  size_t room = sizeof(rq->resp) - rq->resp_len;
  /* Keep the head, discard the rest: a huge answer costs no memory. */
  memcpy(rq->resp + rq->resp_len, data, n < room ? n : room);
  rq->resp_len += n < room ? n : room;
  return n;
}

/* request_easy: the easy handle with every option of this request. */
static int request_easy(struct sender *s, struct request *rq)
{
  static const char ua[] = "sendonce/" SENDONCE_VERSION;
  CURL *e = curl_easy_init();
  if (!e)
    return SO_ERR_NOMEM;
  rq->easy = e;
  CURLcode c = CURLE_OK;
#define SET(opt, val) \
  if (c == CURLE_OK)  \
  c = curl_easy_setopt(e, opt, val)
  SET(CURLOPT_URL, s->url);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_NOSIGNAL, 1L);
  /* Never verbose: the debug output would print the auth header. */
  SET(CURLOPT_VERBOSE, 0L);
  SET(CURLOPT_TIMEOUT_MS, s->timeout_ms);
  SET(CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_USERAGENT, ua);
  SET(CURLOPT_HTTPHEADER, rq->headers);
  SET(CURLOPT_POSTFIELDS, rq->body);
  SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
  if (s->method)
    SET(CURLOPT_CUSTOMREQUEST, s->method);
  SET(CURLOPT_WRITEFUNCTION, write_cb);
  SET(CURLOPT_WRITEDATA, rq);
  SET(CURLOPT_ERRORBUFFER, rq->errbuf);
  SET(CURLOPT_PRIVATE, rq);
#undef SET
  if (c != CURLE_OK) {
    log_error("sender: curl option failed: %s", curl_easy_strerror(c));
    return SO_ERR_INTERNAL;
  }
  return SO_OK;
}

static int request_headers(struct sender *s, struct request *rq)
{
  size_t klen = strlen("Idempotency-Key: ") + strlen(rq->key) + 1;
  char *kh = malloc(klen);
  if (!kh)
    return SO_ERR_NOMEM;
  snprintf(kh, klen, "Idempotency-Key: %s", rq->key);
  /* "Expect:" off: a 100-continue round trip per large body costs a
   * second of latency on servers that never answer it. */
  const char *lines[] = {"Content-Type: application/json", kh,
                         "Expect:", s->auth_header};
  int rc = SO_OK;
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    if (!lines[i])
      continue;
    struct curl_slist *l = curl_slist_append(rq->headers, lines[i]);
    if (!l) {
      rc = SO_ERR_NOMEM;
      break;
    }
    rq->headers = l;
  }
  free(kh);
  return rc;
}

/* request_attach: start (or restart) the transfer. */
static int request_attach(struct sender *s, struct request *rq)
{
  rq->resp_len = 0;
  rq->errbuf[0] = '\0';
  CURLMcode mc = curl_multi_add_handle(s->multi, rq->easy);
  if (mc != CURLM_OK) {
    log_error("sender: curl_multi_add_handle: %s", curl_multi_strerror(mc));
    return SO_ERR_INTERNAL;
  }
  rq->active = true;
  rq->attempts++;
  if (s->rate_per_s > 0)
    s->tokens -= 1.0;
  s->n_active++;
  s->stats.requests++;
  if (rq->attempts > 1)
    s->stats.retries++;
  return SO_OK;
}

/* render: body for rq's items. A recipient that cannot be rendered is
 * REJECTED on its own and dropped from the request. Returns SO_OK with
 * rq->n_items possibly 0, or the error that fails the whole request. */
static int render(struct sender *s, struct request *rq, char *err,
                  size_t errlen)
{
  struct template_recipient *tr = malloc(rq->n_items * sizeof(*tr));
  if (!tr)
    return SO_ERR_NOMEM;
  for (;;) {
    if (rq->n_items == 0)
      break;
    for (size_t i = 0; i < rq->n_items; i++)
      tr[i] = (struct template_recipient){
          rq->items[i]->id, rq->items[i]->address, rq->items[i]->vars_json};
    size_t bad;
    int rc = template_render(s->tpl, tr, rq->n_items, &rq->body, &rq->body_len,
                             &bad, err, errlen);
    if (rc != SO_ERR_INVALID || bad >= rq->n_items) {
      free(tr);
      return rc;
    }
    char reason[SENDER_REASON_MAX];
    join(reason, sizeof(reason), "template: ", err);
    log_warn("sender: rejected campaign=%s recipient=%s reason=\"%s\"",
             s->campaign_id, rq->items[bad]->id, reason);
    push_result(s, rq->items[bad], SENDER_REJECTED, 0, 0, reason);
    memmove(&rq->items[bad], &rq->items[bad + 1],
            (rq->n_items - bad - 1) * sizeof(rq->items[0]));
    rq->n_items--;
  }
  free(tr);
  return SO_OK;
}

static int request_key(struct sender *s, struct request *rq)
{
  if (s->batch_size == 1) {
    size_t len = strlen(s->campaign_id) + strlen(rq->items[0]->id) + 2;
    if (!(rq->key = malloc(len)))
      return SO_ERR_NOMEM;
    snprintf(rq->key, len, "%s:%s", s->campaign_id, rq->items[0]->id);
    return SO_OK;
  }
  size_t len = strlen(s->campaign_id) + 32;
  const char **ids = malloc(rq->n_items * sizeof(*ids));
  if (!ids || !(rq->key = malloc(len))) {
    free(ids);
    return SO_ERR_NOMEM;
  }
  for (size_t i = 0; i < rq->n_items; i++)
    ids[i] = rq->items[i]->id;
  int rc = sender_batch_key(s->campaign_id, ids, rq->n_items, rq->key, len);
  free(ids);
  return rc;
}

/* start_new: a request for the next batch_size queued recipients. Returns
 * SO_OK (also when every recipient was rejected by the template) or
 * SO_ERR_INTERNAL. */
static int start_new(struct sender *s)
{
  char err[SENDER_REASON_MAX];
  size_t k =
      s->q_len < (size_t)s->batch_size ? s->q_len : (size_t)s->batch_size;
  struct request *rq = calloc(1, sizeof(*rq));
  struct item **items = calloc(k, sizeof(*items));
  if (!rq || !items) {
    free(rq);
    free(items);
    return SO_OK; /* try again on the next poll */
  }
  rq->s = s;
  rq->items = items;
  for (size_t i = 0; i < k; i++) {
    struct item *it = s->q_head;
    s->q_head = it->next;
    it->next = NULL;
    rq->items[rq->n_items++] = it;
  }
  if (!s->q_head)
    s->q_tail = NULL;
  s->q_len -= k;
  rq->next = s->reqs;
  if (s->reqs)
    s->reqs->prev = rq;
  s->reqs = rq;

  int rc = render(s, rq, err, sizeof(err));
  if (rc == SO_OK && rq->n_items == 0) {
    request_free(s, rq);
    return SO_OK;
  }
  if (rc == SO_OK)
    rc = request_key(s, rq);
  if (rc == SO_OK)
    rc = request_headers(s, rq);
  if (rc == SO_OK)
    rc = request_easy(s, rq);
  if (rc == SO_OK)
    rc = request_attach(s, rq);
  if (rc == SO_OK)
    return SO_OK;
  /* A body over the size cap is the data's fault; anything else is ours
   * and releases the campaign rather than rejecting recipients. */
  char reason[SENDER_REASON_MAX];
  join(reason, sizeof(reason), "cannot build request: ",
       rc == SO_ERR_TOO_LARGE || rc == SO_ERR_INVALID ? err : so_strerror(rc));
  request_finish(s, rq,
                 rc == SO_ERR_TOO_LARGE || rc == SO_ERR_INVALID
                     ? SENDER_REJECTED
                     : SENDER_GAVE_UP,
                 reason);
  return rc == SO_ERR_INTERNAL ? rc : SO_OK;
}

/* ---- outcomes of a transfer ------------------------------------------- */

enum verdict {
  VERDICT_SENT,
  VERDICT_REJECT,
  VERDICT_RETRY,
  VERDICT_GIVE_UP,
};

/* curl errors that no retry can fix: our own set-up is wrong. */
static bool curl_fatal(CURLcode c)
{
  return c == CURLE_UNSUPPORTED_PROTOCOL || c == CURLE_URL_MALFORMAT ||
         c == CURLE_NOT_BUILT_IN || c == CURLE_BAD_FUNCTION_ARGUMENT ||
         c == CURLE_UNKNOWN_OPTION;
}

/* judge: map a finished attempt to a verdict and a reason. */
static enum verdict judge(struct sender *s, struct request *rq, CURLcode res,
                          long status, char *why, size_t whylen)
{
  if (res != CURLE_OK) {
    const char *detail = rq->errbuf[0] ? rq->errbuf : curl_easy_strerror(res);
    char pre[64] = "curl: ";
    if (res == CURLE_OPERATION_TIMEDOUT)
      snprintf(pre, sizeof(pre), "timeout after %ld ms: ", s->timeout_ms);
    join(why, whylen, pre, detail);
    return curl_fatal(res) ? VERDICT_GIVE_UP : VERDICT_RETRY;
  }
  char body[SENDER_REASON_MAX];
  snippet(rq->resp, rq->resp_len, body, sizeof(body));
  char pre[32];
  snprintf(pre, sizeof(pre), body[0] ? "HTTP %ld: " : "HTTP %ld", status);
  join(why, whylen, pre, body);
  if (status >= 200 && status < 300) {
    why[0] = '\0';
    return VERDICT_SENT;
  }
  if (status == 409) {
    snprintf(why, whylen, "HTTP 409: already accepted under this key");
    return VERDICT_SENT;
  }
  if (status == 408 || status == 425 || status == 429 || status >= 500)
    return VERDICT_RETRY;
  /* Not the recipient's fault, and no retry helps: wrong URL, method or
   * credentials. Rejecting would brand every recipient of the campaign. */
  if (status < 200 || (status >= 300 && status < 400) || status == 401 ||
      status == 403 || status == 404 || status == 405 || status == 407)
    return VERDICT_GIVE_UP;
  return VERDICT_REJECT;
}

static int64_t backoff_ms(struct sender *s, int attempts)
{
  int64_t d = s->retry_base_ms;
  for (int i = 1; i < attempts && d < SENDER_BACKOFF_MAX_MS; i++)
    d *= 2;
  if (d > SENDER_BACKOFF_MAX_MS)
    d = SENDER_BACKOFF_MAX_MS;
  if (d <= 1)
    return d;
  /* Uniform in [d/2, d]: spread the retries of many requests that failed
   * together, but never retry much sooner than planned. */
  return d / 2 + (int64_t)(rng_next(s) % (uint64_t)(d / 2 + 1));
}

static void handle_done(struct sender *s, struct request *rq, CURLcode res)
{
  long status = 0;
  curl_off_t retry_after = 0;
  char why[SENDER_REASON_MAX];
  curl_easy_getinfo(rq->easy, CURLINFO_RESPONSE_CODE, &status);
  if (curl_easy_getinfo(rq->easy, CURLINFO_RETRY_AFTER, &retry_after) !=
      CURLE_OK)
    retry_after = 0;
  curl_multi_remove_handle(s->multi, rq->easy);
  rq->active = false;
  s->n_active--;
  rq->last_status = res == CURLE_OK ? (int)status : 0;

  enum verdict v = judge(s, rq, res, status, why, sizeof(why));
  if (v == VERDICT_SENT) {
    request_finish(s, rq, SENDER_SENT, why);
    return;
  }
  if (v == VERDICT_REJECT) {
    request_finish(s, rq, SENDER_REJECTED, why);
    return;
  }
  if (v == VERDICT_RETRY && rq->attempts <= s->max_retries) {
    int64_t delay = backoff_ms(s, rq->attempts);
    if ((status == 429 || status == 503) && retry_after > 0) {
      int64_t ra = retry_after > SENDER_RETRY_AFTER_MAX_MS / 1000
                       ? SENDER_RETRY_AFTER_MAX_MS
                       : (int64_t)retry_after * 1000;
      if (ra > delay)
        delay = ra;
    }
    rq->not_before_ms = clock_monotonic_ms() + delay;
    snprintf(rq->last_error, sizeof(rq->last_error), "%s", why);
    log_debug(
        "sender: retry campaign=%s key=%s attempt=%d delay_ms=%lld "
        "cause=\"%s\"",
        s->campaign_id, rq->key, rq->attempts + 1, (long long)delay, why);
    return;
  }
  char reason[SENDER_REASON_MAX];
  char pre[64] = "provider refused: ";
  if (v == VERDICT_RETRY)
    snprintf(pre, sizeof(pre), "gave up after %d attempts: ", rq->attempts);
  join(reason, sizeof(reason), pre, why);
  request_finish(s, rq, SENDER_GAVE_UP, reason);
}

static void collect(struct sender *s)
{
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(s->multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    struct request *rq = NULL;
    CURLcode res = m->data.result; /* m dies with remove_handle */
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&rq);
    if (rq)
      handle_done(s, rq, res);
  }
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
  while (s->n_active < (size_t)s->concurrency) {
    struct request *due = next_retry(s);
    if (due && due->not_before_ms > now)
      due = NULL;
    if ((!due && !new_ready(s, now)) || !have_token(s, now))
      return SO_OK;
    int rc = due ? request_attach(s, due) : start_new(s);
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
    collect(s);
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
  struct item *it = calloc(1, sizeof(*it));
  if (!it)
    return SO_ERR_NOMEM;
  it->id = strdup(r->id);
  it->address = strdup(r->address);
  it->vars_json = r->vars_json ? strdup(r->vars_json) : NULL;
  if (!it->id || !it->address || (r->vars_json && !it->vars_json)) {
    item_free(it);
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

size_t sender_cancel_all(struct sender *s)
{
  size_t dropped = 0;
  while (s->reqs) {
    dropped += s->reqs->n_items;
    request_free(s, s->reqs);
  }
  while (s->q_head) {
    struct item *it = s->q_head;
    s->q_head = it->next;
    item_free(it);
    dropped++;
  }
  s->q_tail = NULL;
  s->q_len = 0;
  s->in_flight -= dropped;
  return dropped;
}

void sender_stats(const struct sender *s, struct sender_stats *out)
{
  *out = s->stats;
}

void sender_free(struct sender *s)
{
  if (!s)
    return;
  sender_cancel_all(s);
  for (size_t i = 0; i < s->done_len; i++)
    sender_result_cleanup(&s->done[s->done_head + i]);
  free(s->done);
  if (s->multi)
    curl_multi_cleanup(s->multi);
  template_free(s->tpl);
  free(s->campaign_id);
  free(s->url);
  free(s->method);
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
  if (!(s->multi = curl_multi_init()))
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
