/* sender.h - send recipients through a channel's HTTP provider.
 *
 * One sender per worker thread (and channel), serving one campaign at a
 * time (sender_rebind() moves it to the next). It renders each
 * recipient's body from the provider's body_template (template.h), sends
 * it with libcurl's multi interface (keep-alive connection pool, HTTP/2
 * multiplexing where an https server offers it), at most
 * `concurrency` requests in flight and at most `rate_per_s` requests
 * started per second, and retries timeouts, connection errors, 408, 425,
 * 429 and 5xx with exponential backoff and jitter - every retry carrying
 * the SAME body and the SAME Idempotency-Key.
 *
 * Requests (the contract with a provider):
 *   <method> <url>              method default POST, body = rendered template
 *   Content-Type: application/json
 *   Idempotency-Key: <campaign_id>:<recipient_id>        (batch_size 1)
 *   Idempotency-Key: <campaign_id>:batch:<16 hex digits> (batch_size > 1)
 *   User-Agent: sendonce/<version>
 *   <auth_header>               the configured line, verbatim (a secret:
 *                               never logged, never in a result)
 *
 * The batch key is the 64-bit FNV-1a hash of the batch's recipient ids,
 * sorted bytewise, each followed by a NUL byte (sender_batch_key()). It is
 * the same for the same set of recipients in any order, so a retry of a
 * batch is recognised by the provider. A resumed campaign may group its
 * remaining recipients differently: batch keys protect retries, per-
 * recipient keys (batch_size 1) also protect resumes.
 *
 * Outcomes (per recipient; for a batch every member gets the request's):
 *   SENDER_SENT      2xx, or 409 (the provider already has this key).
 *   SENDER_REJECTED  any other 4xx, except the provider-level ones below;
 *                    also a recipient whose body cannot be rendered (a
 *                    missing vars.NAME) - no request is made for it.
 *                    The reason holds the status and a body snippet.
 *   SENDER_GAVE_UP   retries exhausted (1 + max_retries requests) on
 *                    timeouts, connection errors, 408/425/429/5xx; or at
 *                    once on a provider-level refusal that retrying cannot
 *                    fix and that is not the recipient's fault: 3xx, 401,
 *                    403, 404, 405, 407, an unusable URL. The consumer
 *                    releases the campaign for a later attempt instead of
 *                    rejecting every recipient because a key expired.
 *
 * Backoff: retry n (n = 1, 2, ...) waits a uniformly random time in
 * [d/2, d], d = retry_base_ms * 2^(n-1), d capped at SENDER_BACKOFF_MAX_MS.
 * A 429 (or 503) with Retry-After (delta-seconds or HTTP-date) waits at
 * least that long, capped at SENDER_RETRY_AFTER_MAX_MS.
 * Rate limit: a token bucket refilled at rate_per_s tokens per second,
 * holding at most max(1, rate_per_s / 100) tokens; every request, retries
 * included, takes one token.
 * Each request is bounded by timeout_ms (CURLOPT_TIMEOUT_MS), so a hanging
 * provider costs at most timeout_ms per attempt; response bodies are
 * captured up to SENDER_RESPONSE_CAP bytes, the rest is discarded.
 *
 * Life cycle: sender_rebind() moves an idle sender to the next campaign
 * of the same provider, so a worker keeps its warm connections; or create
 * and free a sender per campaign - both are fine.
 *
 * Threading: a sender and everything it returns belong to the thread that
 * created it; never share one between threads. Different senders in
 * different threads are independent (each has its own curl multi handle
 * and connection pool). sender_new() initialises libcurl once per process
 * (curl_global_init under pthread_once); a program that uses libcurl
 * elsewhere before starting threads may call curl_global_init itself.
 *
 * Typical worker loop:
 *   s = sender_new(provider, campaign_id, content_json, err, sizeof(err));
 *   while (more recipients or sender_in_flight(s) > 0) {
 *     while (sender_capacity(s) > 0 && next recipient r) {
 *       mark r INFLIGHT; sender_submit(s, &r);
 *     }
 *     sender_poll(s, 100, results, 64, &n);     // returns within 100 ms
 *     for each result: mark SENT / REJECTED; on GAVE_UP release the
 *       campaign: sender_drain(), then sender_poll() and mark until
 *       sender_in_flight() is 0 (requests on the wire may be accepted);
 *     sender_result_cleanup(&results[i]);
 *     check pause / cancel / lease between polls;
 *   }
 *   sender_free(s);
 */
#ifndef SENDONCE_SENDER_H
#define SENDONCE_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"

#define SENDER_RESPONSE_CAP 4096        /* response body bytes kept */
#define SENDER_REASON_MAX 256           /* result reason, with its NUL */
#define SENDER_BACKOFF_MAX_MS 60000     /* cap on one backoff delay */
#define SENDER_RETRY_AFTER_MAX_MS 60000 /* cap on an honoured Retry-After */
#define SENDER_BATCH_KEY_MAX 160        /* campaign id (<= 128) + suffix */
#define SENDER_BATCH_LINGER_MS 50       /* a partial batch waits this long */

struct sender;

/* A recipient to send. The strings are borrowed during sender_submit()
 * only (the sender copies them). */
struct sender_recipient {
  const char *id;        /* recipient id (Idempotency-Key suffix) */
  const char *address;   /* e-mail address, phone number, ... */
  const char *vars_json; /* the recipient's "vars" as JSON text, or NULL */
};

enum sender_outcome {
  SENDER_SENT = 0,     /* provider accepted it (2xx, or 409 duplicate) */
  SENDER_REJECTED = 1, /* provider refused this recipient (4xx), or it
                          could not be rendered: do not retry */
  SENDER_GAVE_UP = 2,  /* provider unavailable: release the campaign */
};

/* The outcome for one recipient. */
struct sender_result {
  char *recipient_id; /* owned: sender_result_cleanup() frees */
  enum sender_outcome outcome;
  int http_status;                /* last HTTP status; 0 if none was received
                                     (timeout, connection error, template) */
  int attempts;                   /* requests made for it (0: never sent) */
  char reason[SENDER_REASON_MAX]; /* why, for REJECTED / GAVE_UP (status,
                                     one-line printable-ASCII body snippet
                                     with " shown as ', or curl's error);
                                     "" or a note for SENT */
};

/* Counters since sender_new(); for logs and metrics. */
struct sender_stats {
  uint64_t requests; /* HTTP requests started, retries included */
  uint64_t retries;  /* of which retries */
  uint64_t sent;     /* recipients SENT */
  uint64_t rejected; /* recipients REJECTED */
  uint64_t gave_up;  /* recipients GAVE_UP */
};

/* sender_new: a sender for one campaign through provider `p`. Parses and
 * binds the body template (campaign id and the campaign's "content" JSON
 * object text, NULL for {}), checks the URL, method and auth header, and
 * sets up a curl multi handle. `p` is copied: it need not outlive the
 * sender. Returns the sender (free with sender_free()), or NULL with the
 * reason in err: a bad template or content (fix the campaign), bad
 * provider settings (fix the config: batch_size > 1 needs a template with a
 * {{#recipients}} section), or out of memory. */
struct sender *sender_new(const struct config_provider *p,
                          const char *campaign_id, const char *content_json,
                          char *err, size_t errlen);

/* sender_rebind: reuse an idle sender (sender_in_flight() == 0) for
 * another campaign through the same provider, keeping its connections
 * alive (no new TCP/TLS handshakes per campaign). Binds the template to
 * the new campaign id and content like sender_new(), restarts the
 * counters and ends a sender_drain(). Returns SO_OK; SO_ERR_CONFLICT if
 * recipients are still in flight; SO_ERR_INVALID (bad content,
 * content.NAME missing - the sender keeps its old campaign) or
 * SO_ERR_NOMEM, with the reason in err. */
int sender_rebind(struct sender *s, const char *campaign_id,
                  const char *content_json, char *err,
                  size_t errlen) SO_MUST_CHECK;

/* sender_free: abort every transfer, drop queued recipients and unread
 * results, release everything. NULL is a no-op. */
void sender_free(struct sender *s);

/* sender_submit: queue a recipient (copied). Nothing is sent until
 * sender_poll(). With batch_size > 1, queued recipients are grouped into
 * batches of batch_size; a partial batch is sent once its oldest recipient
 * has waited SENDER_BATCH_LINGER_MS (so the end of a campaign, or a slow
 * recipient stream, costs at most that). Never blocks and never refuses
 * for being busy - use sender_capacity() to keep the queue short. Returns
 * SO_OK, SO_ERR_INVALID (id or address missing), SO_ERR_CONFLICT (after
 * sender_drain()) or SO_ERR_NOMEM. */
int sender_submit(struct sender *s,
                  const struct sender_recipient *r) SO_MUST_CHECK;

/* sender_poll: start what the concurrency cap, the rate limit and the
 * backoff timers allow, drive transfers, and store up to `max` finished
 * outcomes in results[0..*n). Returns as soon as at least one outcome is
 * ready, when nothing is pending at all (at once), or when `timeout_ms`
 * has passed - never later than that (0 = just drive what is ready now).
 * Outcomes that did not fit stay for the next call. Each returned result
 * must be released with sender_result_cleanup(). Returns SO_OK (also with
 * *n == 0) or SO_ERR_INTERNAL if curl's multi interface failed (a bug). */
int sender_poll(struct sender *s, int timeout_ms, struct sender_result *results,
                size_t max, size_t *n) SO_MUST_CHECK;

/* sender_in_flight: recipients submitted whose outcome has not been
 * returned by sender_poll() yet (queued, in transfer, waiting to retry, or
 * finished but unread). The campaign's sending is over when this is 0. */
size_t sender_in_flight(const struct sender *s);

/* sender_capacity: how many more recipients to submit now to keep every
 * connection busy without queueing much: 2 * concurrency * batch_size
 * minus sender_in_flight(), or 0. Advice; sender_submit() does not
 * enforce it. */
size_t sender_capacity(const struct sender *s);

/* sender_cancel_all: drop every queued, waiting and in-transfer recipient
 * (transfers are aborted) and return how many were dropped. Their fate is
 * unknown - an aborted request may have reached the provider - so the
 * consumer leaves them INFLIGHT; a resume resends them with the same key.
 * Outcomes already finished are kept: drain them with sender_poll(s, 0,
 * ...) and record them. */
size_t sender_cancel_all(struct sender *s);

/* sender_drain: stop starting requests, for a caller about to end the
 * campaign (a give-up, a pause, a shutdown). Queued recipients and
 * requests waiting for a retry's backoff are dropped now and counted in
 * the return value: none of them was accepted (a waiting request's last
 * attempt was refused, or timed out - which its retry would have resent
 * anyway), so the consumer leaves them INFLIGHT and a resume sends them
 * with the same key. Requests in transfer go on: keep calling
 * sender_poll() until sender_in_flight() is 0 - each ends within
 * timeout_ms - and record their outcomes, since the provider may have
 * accepted them. One that ends in a retryable failure is not retried: it
 * comes back GAVE_UP. From now on sender_submit() refuses
 * (SO_ERR_CONFLICT) until sender_rebind(). */
size_t sender_drain(struct sender *s);

/* sender_stats: a copy of the counters. */
void sender_stats(const struct sender *s, struct sender_stats *out);

/* sender_result_cleanup: free what a result owns; leaves it zeroed. */
void sender_result_cleanup(struct sender_result *r);

/* sender_outcome_name: "sent", "rejected", "gave_up". */
const char *sender_outcome_name(enum sender_outcome o);

/* sender_batch_key: write "<campaign_id>:batch:<16 hex>" for the given
 * recipient ids (any order) into out. Returns SO_OK, SO_ERR_NOMEM, or
 * SO_ERR_TOO_LARGE if out is too short (SENDER_BATCH_KEY_MAX is enough
 * for a valid campaign id). */
int sender_batch_key(const char *campaign_id, const char *const *ids, size_t n,
                     char *out, size_t outlen) SO_MUST_CHECK;

#endif /* SENDONCE_SENDER_H */
