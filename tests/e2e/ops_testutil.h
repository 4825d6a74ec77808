/* ops_testutil.h - what the operations e2e tests (test_ops_e2e.c) use
 * beside the consumer harness: scraping /metrics and reading samples,
 * editing config files, the publisher and the watchdog as children, and a
 * queue of the test's own on the events exchange (rabbitmq-c directly).
 * Every function fails the test on an unexpected error.
 */
#ifndef SENDONCE_OPS_TESTUTIL_H
#define SENDONCE_OPS_TESTUTIL_H

#include <amqp.h>
#include <json-c/json.h>
#include <stddef.h>

#include "e2e/consumer_harness.h"

/* ops_scrape: GET http://127.0.0.1:<port>/metrics (must answer 200).
 * Caller frees. */
char *ops_scrape(int port);

/* ops_metric: the value of one sample ("name" or "name{label=\"v\"}");
 * NAN when absent. ops_imetric: the same as an integer, failing when
 * absent. */
double ops_metric(const char *text, const char *sample);
long long ops_imetric(const char *text, const char *sample);

/* ops_check_histogram: the _bucket lines of `name` are cumulative, end in
 * le="+Inf", and that bucket equals _count. Returns _count. */
long long ops_check_histogram(const char *text, const char *name);

/* ops_spit: write a file whole (via a rename, so a reload never reads half
 * of it; harness_slurp reads one). ops_file_replace: replace the first
 * `from` with `to`. */
void ops_spit(const char *path, const char *text);
void ops_file_replace(const char *path, const char *from, const char *to);

/* ops_config: the harness config `name` plus `extra` (more sections);
 * returns its path (static buffer). */
const char *ops_config(struct harness *h, const char *name,
                       const struct harness_conf *c, const char *extra);

/* ops_spawn: run argv with our environment minus SENDONCE_* (the config
 * decides) plus the secrets; stdout and stderr to <dir>/<name>.log.
 * ops_run_wait: the same, waiting for the exit status. */
void ops_spawn(struct harness *h, struct harness_proc *p, const char *name,
               char *const argv[]);
int ops_run_wait(struct harness *h, const char *name, char *const argv[]);

/* A server-named exclusive queue bound to an exchange with '#'. */
struct evq {
  amqp_connection_state_t conn;
  char queue[256];
};

/* One event as it arrived. */
struct event_seen {
  char kind[64];
  char message_id[160];
  char header_event[160];
  json_object *body;
};

/* evq_open: declare, bind and consume (no acks) on a connection of ours. */
void evq_open(struct evq *q, const char *exchange);
void evq_close(struct evq *q);

/* evq_drain: every event that arrives until none has for quiet_ms. */
size_t evq_drain(struct evq *q, struct event_seen *out, size_t max,
                 int quiet_ms);

/* ops_jstr: a string member or NULL; ops_jint: an integer member, -1 when
 * absent (fails when present but not an integer). */
const char *ops_jstr(json_object *o, const char *k);
long long ops_jint(json_object *o, const char *k);

#endif /* SENDONCE_OPS_TESTUTIL_H */
