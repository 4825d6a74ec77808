/* sender_testutil.h - what the sender tests share: a small recording
 * HTTP server (libmicrohttpd on 127.0.0.1, thread per connection) and a
 * driver that feeds a sender the way the consumer does.
 *
 * The server records every request (Idempotency-Key, body, headers, arrival
 * time, answer) and answers by mode: ok, 500 for a while, 429 with
 * Retry-After on each key's first request, a fixed status, or hang.
 * The driver submits recipients "r-<i>" (address "r-<i>@example.org",
 * vars {"name": "N\"<i>"}) and checks each sender_poll() returns within
 * its timeout.
 */
#ifndef SENDONCE_SENDER_TESTUTIL_H
#define SENDONCE_SENDER_TESTUTIL_H

#include <json-c/json.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sender.h"

enum srv_mode {
  MODE_OK,
  MODE_FAIL_UNTIL, /* 500 until fail_until_ms after start and for the
                      first fail_first requests, then 200 */
  MODE_429_FIRST,  /* first request per key: 429 + Retry-After */
  MODE_STATUS,     /* always `status` with `resp_body` */
  MODE_HANG,       /* never answer (until the server stops) */
};

struct rec {
  char *key;
  char *body;
  char *auth;
  char *ua;
  char *ctype;
  int64_t t_ms;
  int status;
};

struct srv {
  struct MHD_Daemon *d;
  int port;
  pthread_mutex_t mu;
  struct rec *recs;
  size_t n, cap;
  enum srv_mode mode;
  int64_t start_ms;
  int fail_until_ms;
  size_t fail_first; /* counts, unlike time, also under valgrind */
  int status;
  const char *resp_body;
  size_t resp_len;
  int latency_ms;
  bool retry_after_date; /* MODE_429_FIRST: Retry-After as an HTTP-date
                            2 s ahead instead of "1" */
  int active, max_active, connections;
  atomic_int stopping;
};

/* srv_start: a server on a free loopback port, in `mode`; tune its
 * fields (latency_ms, status, ...) before the first request. */
struct srv *srv_start(enum srv_mode mode);

/* srv_stop: release hung requests, stop, free. */
void srv_stop(struct srv *sv);

/* srv_recs_for: requests seen with `key`; *first (if not NULL) gets the
 * index of the first. */
size_t srv_recs_for(struct srv *sv, const char *key, size_t *first);

extern const char *const test_tpl_single; /* one recipient per body */
extern const char *const test_tpl_batch;  /* {{#recipients}} section */
extern const char *const test_content;    /* campaign content JSON */
extern const char *const test_secret;     /* auth header value */

/* test_provider: provider settings for http://127.0.0.1:<port>/send with
 * `tpl`; concurrency 4, 3 retries from 20 ms, 5 s timeout, no rate limit.
 * Release with test_provider_free(). */
struct config_provider test_provider(int port, const char *tpl);
void test_provider_free(struct config_provider *p);

/* test_new_sender: sender_new() that must succeed. */
struct sender *test_new_sender(const struct config_provider *p,
                               const char *campaign);

/* Outcomes collected by test_drive(), indexed by recipient number. */
struct outcomes {
  struct sender_result *r; /* r[i] for recipient "r-<i>" */
  size_t n;
  size_t seen;
};

/* test_poll_slack_ms: how much later than its timeout sender_poll() may
 * return (SENDER_TEST_POLL_SLACK_MS, default 200). */
int64_t test_poll_slack_ms(void);

/* test_drive_ex: submit recipients r-0..r-(n-1) (within sender_capacity,
 * or all at once), poll every `poll_ms` until all are done; fails after
 * `limit_ms`. out->r[i] is recipient r-<i>'s result. */
void test_drive_ex(struct sender *s, size_t n, struct outcomes *out,
                   int poll_ms, int64_t limit_ms, bool all_at_once);
void test_drive(struct sender *s, size_t n, struct outcomes *out, int poll_ms,
                int64_t limit_ms);
void test_outcomes_free(struct outcomes *o);

/* test_json_str: the string member `name` of `o`, which must exist. */
const char *test_json_str(json_object *o, const char *name);

#endif /* SENDONCE_SENDER_TESTUTIL_H */
