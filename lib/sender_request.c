/* sender_request.c - one provider request: build, judge, retry, record;
 * and the slots (reused easy handles) its attempts run in.
 *
 * A request carries one recipient or one batch across all its attempts:
 * the body is rendered and the Idempotency-Key line built once; every
 * attempt, in whichever slot is idle, sends that same header list and
 * body, so every attempt is byte-for-byte the same request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "log.h"
#include "sender_internal.h"

/* libcurl's connect timeout when CURLOPT_CONNECTTIMEOUT_MS is not set
 * (DEFAULT_CONNECT_TIMEOUT). */
#define SENDER_CURL_CONNECT_TIMEOUT_MS 300000L

/* Bodies up to this size never get curl's "Expect: 100-continue". */
#define SENDER_EXPECT_MIN_BODY 1024

static uint64_t rng_next(struct sender *s)
{
  /* xorshift64*: jitter only needs to decorrelate workers. */
  s->rng ^= s->rng >> 12;
  s->rng ^= s->rng << 25;
  s->rng ^= s->rng >> 27;
  return s->rng * 0x2545F4914F6CDD1DULL;
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

/* grow: make *p hold at least `need` bytes, keeping its contents. */
static int grow(char **p, size_t *cap, size_t need)
{
  if (need <= *cap)
    return SO_OK;
  size_t c = *cap ? *cap : 64;
  while (c < need)
    c *= 2;
  char *n = realloc(*p, c);
  if (!n)
    return SO_ERR_NOMEM;
  *p = n;
  *cap = c;
  return SO_OK;
}

struct item *sender__item_new(struct sender *s, const char *address,
                              const char *vars_json)
{
  struct item *it = s->free_items;
  if (it) {
    s->free_items = it->next;
    s->n_free_items--;
    it->next = NULL;
  } else if (!(it = calloc(1, sizeof(*it)))) {
    return NULL;
  }
  size_t al = strlen(address) + 1;
  size_t vl = vars_json ? strlen(vars_json) + 1 : 0;
  if (grow(&it->buf, &it->buf_cap, al + vl) != SO_OK) {
    sender__item_put(s, it);
    return NULL;
  }
  memcpy(it->buf, address, al);
  it->address = it->buf;
  it->vars_json = NULL;
  if (vars_json) {
    memcpy(it->buf + al, vars_json, vl);
    it->vars_json = it->buf + al;
  }
  return it;
}

void sender__item_put(struct sender *s, struct item *it)
{
  if (!it)
    return;
  free(it->id);
  it->id = NULL;
  if (s->n_free_items < SENDER_POOL_ITEMS(s) &&
      it->buf_cap <= SENDER_POOL_BUF_MAX) {
    it->next = s->free_items;
    s->free_items = it;
    s->n_free_items++;
    return;
  }
  free(it->buf);
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
      sender__item_put(s, it);
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
  join(r->reason, sizeof(r->reason), reason ? reason : "", "");
  if (o == SENDER_SENT)
    s->stats.sent++;
  else if (o == SENDER_REJECTED)
    s->stats.rejected++;
  else
    s->stats.gave_up++;
  sender__item_put(s, it);
}

/* ---- slots ------------------------------------------------------------- */

static size_t write_cb(char *data, size_t size, size_t nmemb, void *user)
{
  struct slot *sl = user;
  size_t n = size * nmemb;
  size_t room = sizeof(sl->resp) - sl->resp_len;
  /* Keep the head, discard the rest: a huge answer costs no memory. */
  memcpy(sl->resp + sl->resp_len, data, n < room ? n : room);
  sl->resp_len += n < room ? n : room;
  return n;
}

/* slot_new: an easy handle with every option that is the same for all of
 * the sender's requests. */
static int slot_new(struct sender *s, struct slot **out)
{
  /* Not zeroed: the buffers are reset per attempt. */
  struct slot *sl = malloc(sizeof(*sl));
  if (!sl)
    return SO_ERR_NOMEM;
  sl->rq = NULL;
  sl->next_free = NULL;
  sl->resp_len = 0;
  sl->errbuf[0] = '\0';
  CURL *e = sl->easy = curl_easy_init();
  if (!e) {
    free(sl);
    return SO_ERR_NOMEM;
  }
  CURLcode c = CURLE_OK;
#define SET(opt, val) \
  if (c == CURLE_OK)  \
  c = curl_easy_setopt(e, opt, val)
  /* The URL parsed once: given as text, curl parses it again for every
   * request and takes it apart into its parts (~11,000 instructions). */
  SET(CURLOPT_CURLU, s->curlu);
  /* With no proxy variable in the environment, say "no proxy" outright:
   * otherwise curl reads five variables per request to find that out.
   * When one is set, curl keeps reading them (and honours them). */
  if (!s->proxy_env) {
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_NOPROXY, "");
  }
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_NOSIGNAL, 1L);
  /* Never verbose: the debug output would print the auth header. */
  SET(CURLOPT_VERBOSE, 0L);
  SET(CURLOPT_TIMEOUT_MS, s->timeout_ms);
  /* The total timeout bounds the connect phase as well, so a connect
   * timeout of the same value only costs curl a second timer per request
   * (set and cleared: ~800 instructions). curl's own connect timeout is
   * 300 s: only a longer timeout_ms needs the option to reach it. */
  if (s->timeout_ms > SENDER_CURL_CONNECT_TIMEOUT_MS)
    SET(CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  /* Over https, wait for the first connection to say whether it speaks
   * HTTP/2 rather than open `concurrency` connections at once: the
   * requests then share one multiplexed connection. */
  if (strncasecmp(s->url, "https:", 6) == 0)
    SET(CURLOPT_PIPEWAIT, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  if (s->method)
    SET(CURLOPT_CUSTOMREQUEST, s->method);
  SET(CURLOPT_WRITEFUNCTION, write_cb);
  SET(CURLOPT_WRITEDATA, sl);
  SET(CURLOPT_ERRORBUFFER, sl->errbuf);
  SET(CURLOPT_PRIVATE, sl);
#undef SET
  if (c != CURLE_OK) {
    log_error("sender: curl option failed: %s", curl_easy_strerror(c));
    curl_easy_cleanup(e);
    free(sl);
    return SO_ERR_INTERNAL;
  }
  *out = sl;
  return SO_OK;
}

/* slot_take: an idle slot, made if none is idle. The most recently used
 * comes first: its memory is still warm. */
static int slot_take(struct sender *s, struct slot **out)
{
  struct slot *sl = s->free_slots;
  if (sl) {
    s->free_slots = sl->next_free;
    *out = sl;
    return SO_OK;
  }
  if (s->n_slots >= (size_t)s->concurrency) {
    log_error("sender: no idle slot with %zu active", s->n_active);
    return SO_ERR_INTERNAL; /* a bug: the caller checks n_active */
  }
  int rc = slot_new(s, &sl);
  if (rc != SO_OK)
    return rc;
  s->slots[s->n_slots++] = sl;
  *out = sl;
  return SO_OK;
}

/* slot_put: back to the idle list. The handle keeps pointing at the last
 * request's header node and body; curl reads them only during a transfer,
 * and the next attach replaces both before the next one starts. */
static void slot_put(struct sender *s, struct slot *sl)
{
  sl->rq = NULL;
  sl->next_free = s->free_slots;
  s->free_slots = sl;
}

void sender__slots_free(struct sender *s)
{
  for (size_t i = 0; i < s->n_slots; i++) {
    curl_easy_cleanup(s->slots[i]->easy);
    free(s->slots[i]);
  }
  free(s->slots);
  s->slots = NULL;
  s->n_slots = 0;
  s->free_slots = NULL;
}

/* ---- requests --------------------------------------------------------- */

/* request_release: free a request that is no longer in any list. */
static void request_release(struct request *rq)
{
  free(rq->arr);
  free(rq->body);
  free(rq->key_line);
  free(rq);
}

/* request_new: a blank request, recycled (buffers kept) or new, with
 * room for k items. NULL if out of memory. */
static struct request *request_new(struct sender *s, size_t k)
{
  struct request *rq = s->free_reqs;
  if (rq) {
    s->free_reqs = rq->next;
    s->n_free_reqs--;
  } else if (!(rq = calloc(1, sizeof(*rq)))) {
    return NULL;
  }
  if (k > 1 && k > rq->arr_cap) {
    struct item **arr = realloc(rq->arr, k * sizeof(*arr));
    if (!arr) {
      request_release(rq);
      return NULL;
    }
    rq->arr = arr;
    rq->arr_cap = k;
  }
  /* Everything but the buffers starts blank, as from calloc. */
  struct request blank = {0};
  blank.arr = rq->arr;
  blank.arr_cap = rq->arr_cap;
  blank.body = rq->body;
  blank.body_cap = rq->body_cap;
  blank.key_line = rq->key_line;
  blank.key_cap = rq->key_cap;
  *rq = blank;
  rq->items = k > 1 ? rq->arr : &rq->one;
  return rq;
}

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

/* request_detach: end the request's transfer (finished or aborted) and
 * give its slot back. */
static void request_detach(struct sender *s, struct request *rq)
{
  curl_multi_remove_handle(s->multi, rq->slot->easy);
  slot_put(s, rq->slot);
  rq->slot = NULL;
  rq->active = false;
  s->n_active--;
}

/* request_free: detach and release a request; its items are freed unless
 * they were handed on (NULL entries). */
void sender__request_free(struct sender *s, struct request *rq)
{
  if (!rq)
    return;
  if (rq->active)
    request_detach(s, rq);
  request_unlink(s, rq);
  for (size_t i = 0; i < rq->n_items; i++)
    sender__item_put(s, rq->items[i]);
  rq->n_items = 0;
  if (s->n_free_reqs < SENDER_POOL_REQS(s) &&
      rq->body_cap <= SENDER_POOL_BUF_MAX) {
    rq->next = s->free_reqs;
    s->free_reqs = rq;
    s->n_free_reqs++;
    return;
  }
  request_release(rq);
}

void sender__pools_free(struct sender *s)
{
  while (s->free_items) {
    struct item *it = s->free_items;
    s->free_items = it->next;
    free(it->buf);
    free(it);
  }
  s->n_free_items = 0;
  while (s->free_reqs) {
    struct request *rq = s->free_reqs;
    s->free_reqs = rq->next;
    request_release(rq);
  }
  s->n_free_reqs = 0;
}

/* request_finish: every item of the request gets the outcome. */
static void request_finish(struct sender *s, struct request *rq,
                           enum sender_outcome o, const char *reason)
{
  for (size_t i = 0; i < rq->n_items; i++) {
    push_result(s, rq->items[i], o, rq->last_status, rq->attempts, reason);
    rq->items[i] = NULL;
  }
  /* A rejection is the recipient's business (a bad address); giving up
   * means the provider is in trouble and the campaign will be released. */
  enum log_level lvl = o == SENDER_GAVE_UP ? LOG_LEVEL_WARN : LOG_LEVEL_INFO;
  if (o != SENDER_SENT)
    LOG_AT(lvl,
           "sender: %s campaign=%s key=%s recipients=%zu attempts=%d "
           "reason=\"%s\"",
           sender_outcome_name(o), s->campaign_id, rq->key ? rq->key : "-",
           rq->n_items, rq->attempts, reason);
  sender__request_free(s, rq);
}

/* request_attach: start (or restart) the transfer in an idle slot. Only
 * what differs between requests is set here. */
int sender__request_attach(struct sender *s, struct request *rq)
{
  struct slot *sl;
  int rc = slot_take(s, &sl);
  if (rc != SO_OK)
    return rc;
  sl->resp_len = 0;
  sl->errbuf[0] = '\0';
  CURLcode c = curl_easy_setopt(sl->easy, CURLOPT_HTTPHEADER, &rq->key_node);
  if (c == CURLE_OK)
    c = curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)rq->body_len);
  if (c == CURLE_OK)
    c = curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDS, rq->body);
  if (c != CURLE_OK) {
    log_error("sender: curl option failed: %s", curl_easy_strerror(c));
    slot_put(s, sl);
    return SO_ERR_INTERNAL;
  }
  CURLMcode mc = curl_multi_add_handle(s->multi, sl->easy);
  if (mc != CURLM_OK) {
    log_error("sender: curl_multi_add_handle: %s", curl_multi_strerror(mc));
    slot_put(s, sl);
    return SO_ERR_INTERNAL;
  }
  sl->rq = rq;
  rq->slot = sl;
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

int sender__start_retry(struct sender *s, struct request *rq)
{
  int rc = sender__request_attach(s, rq);
  if (rc != SO_ERR_NOMEM)
    return rc;
  request_finish(s, rq, SENDER_GAVE_UP, "cannot build request: out of memory");
  return SO_OK;
}

/* render: body for rq's items. A recipient that cannot be rendered is
 * REJECTED on its own and dropped from the request. Returns SO_OK with
 * rq->n_items possibly 0, or the error that fails the whole request. */
static int render(struct sender *s, struct request *rq, char *err,
                  size_t errlen)
{
  /* One recipient per request is the common case: no allocation. */
  struct template_recipient few[8];
  struct template_recipient *tr = rq->n_items <= sizeof(few) / sizeof(few[0])
                                      ? few
                                      : malloc(rq->n_items * sizeof(*tr));
  if (!tr)
    return SO_ERR_NOMEM;
  int rc = SO_OK;
  while (rq->n_items > 0) {
    for (size_t i = 0; i < rq->n_items; i++)
      tr[i] = (struct template_recipient){
          rq->items[i]->id, rq->items[i]->address, rq->items[i]->vars_json};
    size_t bad;
    rc = template_render_into(s->tpl, tr, rq->n_items, &rq->body, &rq->body_cap,
                              &rq->body_len, &bad, err, errlen);
    if (rc != SO_ERR_INVALID || bad >= rq->n_items)
      break;
    char reason[SENDER_REASON_MAX];
    join(reason, sizeof(reason), "template: ", err);
    log_info("sender: rejected campaign=%s recipient=%s reason=\"%s\"",
             s->campaign_id, rq->items[bad]->id, reason);
    push_result(s, rq->items[bad], SENDER_REJECTED, 0, 0, reason);
    memmove(&rq->items[bad], &rq->items[bad + 1],
            (rq->n_items - bad - 1) * sizeof(rq->items[0]));
    rq->n_items--;
    rc = SO_OK;
  }
  if (tr != few)
    free(tr);
  return rc;
}

/* request_key: the request's "Idempotency-Key: <key>" line, which heads
 * its header list; the fixed lines follow (sender->headers). Written into
 * the request's reused buffer. */
static int request_key(struct sender *s, struct request *rq)
{
  static const char name[] = "Idempotency-Key: ";
  const size_t nl = sizeof(name) - 1;
  if (s->batch_size == 1) {
    size_t pl = s->key_prefix_len, il = strlen(rq->items[0]->id);
    if (grow(&rq->key_line, &rq->key_cap, pl + il + 1) != SO_OK)
      return SO_ERR_NOMEM;
    memcpy(rq->key_line, s->key_prefix, pl);
    memcpy(rq->key_line + pl, rq->items[0]->id, il + 1);
  } else {
    size_t len = nl + strlen(s->campaign_id) + 32;
    const char **ids = malloc(rq->n_items * sizeof(*ids));
    if (!ids || grow(&rq->key_line, &rq->key_cap, len) != SO_OK) {
      free(ids);
      return SO_ERR_NOMEM;
    }
    for (size_t i = 0; i < rq->n_items; i++)
      ids[i] = rq->items[i]->id;
    memcpy(rq->key_line, name, nl);
    int rc = sender_batch_key(s->campaign_id, ids, rq->n_items,
                              rq->key_line + nl, len - nl);
    free(ids);
    if (rc != SO_OK)
      return rc;
  }
  rq->key = rq->key_line + nl;
  rq->key_node.data = rq->key_line;
  /* libcurl adds "Expect: 100-continue" only to bodies over its
   * threshold (1,024 bytes in old releases, 1 MiB since 2020), so a small
   * body needs no "Expect:" line to turn it off - and every custom
   * header costs curl a printf per request. */
  rq->key_node.next =
      rq->body_len > SENDER_EXPECT_MIN_BODY ? s->headers : s->headers->next;
  return SO_OK;
}

/* start_new: a request for the next batch_size queued recipients. Returns
 * SO_OK (also when every recipient was rejected by the template) or
 * SO_ERR_INTERNAL. */
int sender__start_new(struct sender *s)
{
  char err[SENDER_REASON_MAX] = "";
  size_t k =
      s->q_len < (size_t)s->batch_size ? s->q_len : (size_t)s->batch_size;
  struct request *rq = request_new(s, k);
  if (!rq)
    return SO_OK; /* try again on the next poll */
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
    sender__request_free(s, rq);
    return SO_OK;
  }
  if (rc == SO_OK)
    rc = request_key(s, rq);
  if (rc == SO_OK)
    rc = sender__request_attach(s, rq);
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

/* judge: map a finished attempt (its response and error text are in the
 * slot) to a verdict and a reason. */
static enum verdict judge(struct sender *s, const struct slot *sl, CURLcode res,
                          long status, char *why, size_t whylen)
{
  if (res != CURLE_OK) {
    const char *detail = sl->errbuf[0] ? sl->errbuf : curl_easy_strerror(res);
    char pre[64] = "curl: ";
    if (res == CURLE_OPERATION_TIMEDOUT)
      snprintf(pre, sizeof(pre), "timeout after %ld ms: ", s->timeout_ms);
    join(why, whylen, pre, detail);
    return curl_fatal(res) ? VERDICT_GIVE_UP : VERDICT_RETRY;
  }
  /* The common answer first: an accepted request has no reason. */
  if (status >= 200 && status < 300) {
    why[0] = '\0';
    return VERDICT_SENT;
  }
  if (status == 409) {
    snprintf(why, whylen, "HTTP 409: already accepted under this key");
    return VERDICT_SENT;
  }
  char body[SENDER_REASON_MAX];
  snippet(sl->resp, sl->resp_len, body, sizeof(body));
  char pre[32];
  snprintf(pre, sizeof(pre), body[0] ? "HTTP %ld: " : "HTTP %ld", status);
  join(why, whylen, pre, body);
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

static void handle_done(struct sender *s, struct slot *sl, CURLcode res)
{
  struct request *rq = sl->rq;
  long status = 0;
  curl_off_t retry_after = 0;
  char why[SENDER_REASON_MAX];
  curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &status);
  /* Retry-After counts only for a 429 or 503 (see below). */
  if ((status == 429 || status == 503) &&
      curl_easy_getinfo(sl->easy, CURLINFO_RETRY_AFTER, &retry_after) !=
          CURLE_OK)
    retry_after = 0;
  rq->last_status = res == CURLE_OK ? (int)status : 0;
  /* Judge before the slot goes back: the answer is in its buffers. */
  enum verdict v = judge(s, sl, res, status, why, sizeof(why));
  request_detach(s, rq);

  if (v == VERDICT_SENT) {
    request_finish(s, rq, SENDER_SENT, why);
    return;
  }
  if (v == VERDICT_REJECT) {
    request_finish(s, rq, SENDER_REJECTED, why);
    return;
  }
  if (v == VERDICT_RETRY && s->draining) {
    /* Not accepted (or, after a timeout, unknown - as it would be for a
     * retry): the caller stops, and a resume sends it with the same key. */
    char reason[SENDER_REASON_MAX];
    join(reason, sizeof(reason), "not retried (draining): ", why);
    request_finish(s, rq, SENDER_GAVE_UP, reason);
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

void sender__collect(struct sender *s)
{
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(s->multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    struct slot *sl = NULL;
    CURLcode res = m->data.result; /* m dies with remove_handle */
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
    if (sl && sl->rq)
      handle_done(s, sl, res);
  }
}
