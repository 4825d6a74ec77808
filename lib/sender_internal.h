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
  bool draining; /* sender_drain(): nothing new starts, nothing retried */
};

/* sender__item_free: release a queued recipient; NULL is a no-op. */
void sender__item_free(struct item *it);

/* sender__request_free: detach (if attached) and release a request and
 * the items it still holds. */
void sender__request_free(struct sender *s, struct request *rq);

/* sender__request_attach: start (or restart, for a retry) a request's
 * transfer; takes a rate token. Returns SO_OK or SO_ERR_INTERNAL. */
int sender__request_attach(struct sender *s, struct request *rq);

/* sender__start_new: build and attach a request for the next batch_size
 * queued recipients (recipients that cannot be rendered are REJECTED on
 * the spot). Returns SO_OK or SO_ERR_INTERNAL. */
int sender__start_new(struct sender *s);

/* sender__collect: take finished transfers from the multi handle and turn
 * each into results or a scheduled retry. */
void sender__collect(struct sender *s);

#endif /* SENDONCE_SENDER_INTERNAL_H */
