/* consumer_harness.h - drive the real sendonce-consumer in end-to-end
 * tests: a private topology on the real RabbitMQ, a private registry on
 * either backend, a sendonce-sink as the provider, generated config files,
 * consumer processes with their logs, and the checks the tests share.
 */
#ifndef SENDONCE_CONSUMER_HARNESS_H
#define SENDONCE_CONSUMER_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "integration/registry_testdb.h"
#include "registry.h"
#include "sink_client.h"
#include "topology.h"

struct harness {
  struct testdb db;
  struct topology topo;
  struct broker *b; /* the test's own session */
  struct sink_client *sink;
  struct registry *reg; /* the test's own registry handle */
  char dir[256];        /* private scratch directory */
};

/* Settings of one generated config (zero = the harness default). */
struct harness_conf {
  int lease_ttl_s;         /* default 4 */
  int mark_batch_size;     /* default 50 */
  int workers;             /* default 2 */
  int concurrency;         /* default 8 */
  int timeout_ms;          /* provider request timeout, default 2000 */
  int max_retries;         /* default 3 */
  int retry_base_ms;       /* default 100 */
  int max_attempts;        /* default 5 */
  const char *pg_conninfo; /* override (an unreachable server) or NULL */
  const char *broker_uri;  /* override (a proxy) or NULL */
};

struct harness_proc {
  pid_t pid;
  char log[300];
};

/* harness_setup: database, topology (delays 1 s and 30 s), sink with
 * `sink_args` (NULL-terminated or NULL). Aborts the test on failure. */
void harness_setup(struct harness *h, enum registry_backend backend,
                   const char *const *sink_args);
void harness_teardown(struct harness *h);

/* harness_config: write a config file named `name` in h->dir; returns its
 * path (static buffer, valid until the next call). */
const char *harness_config(struct harness *h, const char *name,
                           const struct harness_conf *c);

/* harness_start: run sendonce-consumer with that config; its stderr goes
 * to <dir>/<name>.log. Waits until it logs "consumer: running". */
/* harness_child_env: our environment without SENDONCE_* (the config file
 * must decide, not the test.env values testenv put in our environment),
 * plus the two secrets, which never go on argv. A calloc'd array of
 * borrowed strings (the secrets in static buffers). */
char **harness_child_env(void);

/* harness_slurp: a whole file, NUL-terminated (caller frees). */
char *harness_slurp(const char *path);

void harness_start(struct harness *h, struct harness_proc *p,
                   const char *config, const char *name);

/* harness_stop: send `sig` and wait up to timeout_ms; returns the exit
 * status (128+signal when killed by one), -1 if it did not exit (then it is
 * SIGKILLed). */
int harness_stop(struct harness_proc *p, int sig, int timeout_ms);

/* harness_recipients_file: n JSON lines "u-<i>"; returns a file:// URL
 * (static buffer). */
const char *harness_recipients_file(struct harness *h, const char *name,
                                    long n);

/* harness_body: a valid campaign-due body for `id` with recipients_url
 * `url` (channel email). Caller frees. */
char *harness_body(const char *id, const char *url);

/* harness_publish: a confirmed publish of a trigger to the main exchange. */
void harness_publish(struct harness *h, const char *id, const char *body);

/* harness_wait_state: poll the registry until `id` is in `state`; fails the
 * test after timeout_ms. Returns the campaign (caller frees). */
struct registry_campaign harness_wait_state(struct harness *h, const char *id,
                                            enum campaign_state state,
                                            int timeout_ms);

/* harness_wait_log: wait until the process log contains `needle`; returns
 * false after timeout_ms. */
bool harness_wait_log(const struct harness_proc *p, const char *needle,
                      int timeout_ms);

/* harness_log_count: occurrences of `needle` in the log. */
int harness_log_count(const struct harness_proc *p, const char *needle);

/* harness_summary: the value of `key` in the consumer's exit summary
 * line, -1 if absent. */
long long harness_summary(const struct harness_proc *p, const char *key);

/* harness_sink_stat: one counter of the sink's /stats. */
int64_t harness_sink_stat(struct harness *h, const char *name);

/* harness_wait_sink: until the sink's `name` >= value, or timeout. */
bool harness_wait_sink(struct harness *h, const char *name, int64_t value,
                       int timeout_ms);

#endif /* SENDONCE_CONSUMER_HARNESS_H */
