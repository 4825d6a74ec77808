/* sender_internal.h - what sender.c and sender_request.c share.
 *
 * Not part of the API: callers use sender.h. sender.c owns the public
 * functions, the scheduling (slots, rate tokens, backoff timers) and the
 * poll loop; sender_request.c builds requests, runs their outcomes through
 * the retry policy and records results. Internal functions are marked
 * with a double underscore.
 */
#ifndef SENDONCE_SENDER_INTERNAL_H
#define SENDONCE_SENDER_INTERNAL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "sender.h"
#include "template.h"

/* A queued recipient: copies of sender_recipient's strings. Items are
 * recycled (sender->free_items) with their buffer, so a steady stream of
 * recipients costs one allocation each: the id, which its result takes. */
struct item {
  char *id;              /* owned until its result takes it */
  const char *address;   /* in buf */
  const char *vars_json; /* in buf, or NULL */
  char *buf;             /* address and vars, each NUL-terminated */
  size_t buf_cap;
  int64_t queued_ms; /* monotonic time of sender_submit() */
  struct item *next;
};

struct request;

/* A transfer slot: one curl easy handle with the provider's fixed options
 * (URL, timeouts, method, callbacks, error buffer) set once, reused for
 * request after request - a new easy handle per request costs a large
 * zeroed allocation and ~20 options each time. A request borrows a slot
 * for one attempt; per attempt only its header list and body change. The
 * response and error text live here because they belong to the attempt.
 * curl resets its per-transfer state (status, Retry-After, error) when a
 * transfer starts, so a handle that ended in a timeout or a connection
 * error is as good as new. */
struct slot {
  CURL *easy;
  struct request *rq;     /* the request in transfer; NULL while idle */
  struct slot *next_free; /* sender->free_slots */
  size_t resp_len;
  char errbuf[CURL_ERROR_SIZE];
  char resp[SENDER_RESPONSE_CAP];
};

/* One HTTP request for one recipient or one batch, across its attempts.
 * Requests are recycled (sender->free_reqs) with their buffers: body,
 * key line and item array keep their capacity for the next request. */
struct request {
  struct slot *slot;   /* while in transfer (active), else NULL */
  struct item **items; /* the recipients it carries: &one or arr */
  size_t n_items;
  struct item *one;  /* items points here when it carries one recipient */
  struct item **arr; /* items of a batch; kept with its capacity */
  size_t arr_cap;
  char *body; /* rendered once, sent on every attempt */
  size_t body_len;
  size_t body_cap;
  char *key_line; /* "Idempotency-Key: <key>", the only header of its own */
  size_t key_cap;
  const char *key;             /* the key: points into key_line */
  struct curl_slist key_node;  /* key_line, then sender->headers */
  int attempts;                /* requests made so far */
  bool active;                 /* attached to the multi handle */
  int64_t not_before_ms;       /* while waiting: monotonic time of the retry */
  int last_status;             /* HTTP status of the last attempt, 0 if none */
  struct request *prev, *next; /* sender->reqs, all live requests */
};

struct sender {
  struct template *tpl;
  char *campaign_id;
  char *url;
  CURLU *curlu;   /* url, parsed once for every request (CURLOPT_CURLU) */
  bool proxy_env; /* a proxy variable curl would read is set */
  char *method;   /* NULL for POST */
  char *auth_header;
  long timeout_ms;
  int concurrency;
  int rate_per_s; /* 0 = unlimited */
  int batch_size;
  int max_retries;
  int retry_base_ms;
  CURLM *multi;
  struct curl_slist *headers; /* "Expect:", then the other fixed lines
                                 as one CRLF-joined entry; shared by all
                                 requests (after each one's key line) */
  char *key_prefix; /* "Idempotency-Key: <campaign_id>:" (batch_size 1) */
  size_t key_prefix_len;
  struct slot **slots; /* concurrency entries, made on first use */
  size_t n_slots;
  struct slot *free_slots; /* idle slots */
  struct item *free_items; /* recycled, at most SENDER_POOL_ITEMS */
  size_t n_free_items;
  struct request *free_reqs; /* recycled, at most SENDER_POOL_REQS */
  size_t n_free_reqs;
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
  bool draining; /* sender_drain(): nothing new starts, nothing retried */
};

/* How many idle items and requests a sender keeps for reuse: more items
 * than a caller keeps in flight (the consumer's mark batch may exceed
 * sender_capacity()) and requests for every slot plus retries, so the
 * steady state allocates nothing but ids. Pooled buffers over
 * SENDER_POOL_BUF_MAX bytes are freed, not kept: one huge body must not
 * pin its memory. */
#define SENDER_POOL_ITEMS(s) \
  (1024 + 2 * (size_t)(s)->concurrency * (size_t)(s)->batch_size)
#define SENDER_POOL_BUF_MAX 65536
#define SENDER_POOL_REQS(s) (2 * (size_t)(s)->concurrency)

/* sender__item_new: an empty item (recycled or new) holding copies of
 * address and vars_json; its id is the caller's to set. NULL if out of
 * memory. */
struct item *sender__item_new(struct sender *s, const char *address,
                              const char *vars_json);

/* sender__item_put: done with an item: frees its id (unless a result took
 * it) and recycles or frees the rest; NULL is a no-op. */
void sender__item_put(struct sender *s, struct item *it);

/* sender__pools_free: release the recycled items and requests. */
void sender__pools_free(struct sender *s);

/* sender__request_free: detach (if attached) and release a request and
 * the items it still holds. */
void sender__request_free(struct sender *s, struct request *rq);

/* sender__request_attach: start (or restart, for a retry) a request's
 * transfer in an idle slot; takes a rate token. The caller keeps
 * n_active below the concurrency, so a slot is always free or can be
 * made. Returns SO_OK, SO_ERR_NOMEM (no slot could be made) or
 * SO_ERR_INTERNAL. */
int sender__request_attach(struct sender *s, struct request *rq);

/* sender__start_retry: attach a waiting request whose backoff is over. If
 * no slot can be made, the request gives up (as a new one would). Returns
 * SO_OK or SO_ERR_INTERNAL. */
int sender__start_retry(struct sender *s, struct request *rq);

/* sender__slots_free: release every slot (none may be in transfer). */
void sender__slots_free(struct sender *s);

/* sender__start_new: build and attach a request for the next batch_size
 * queued recipients (recipients that cannot be rendered are REJECTED on
 * the spot). Returns SO_OK or SO_ERR_INTERNAL. */
int sender__start_new(struct sender *s);

/* sender__collect: take finished transfers from the multi handle and turn
 * each into results or a scheduled retry. */
void sender__collect(struct sender *s);

#endif /* SENDONCE_SENDER_INTERNAL_H */
