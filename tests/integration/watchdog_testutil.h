/* watchdog_testutil.h - a private world for one watchdog test: a registry
 * (SQLite file or PostgreSQL schema), a topology with a unique prefix on
 * the real RabbitMQ, a config file naming both, and helpers to look at
 * queues and registry rows and to run the programs. */
#ifndef SENDONCE_WATCHDOG_TESTUTIL_H
#define SENDONCE_WATCHDOG_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "config.h"
#include "integration/registry_testdb.h"
#include "topology.h"
#include "watchdog.h"

struct wt {
  struct testdb db;
  char *prefix;
  char conf_path[512];
  struct config cfg;
  struct topology topo;
  struct broker *b;     /* the test's own session (topology declared) */
  struct registry *reg; /* the test's own registry handle */
};

/* wt_setup: the world, with `extra` appended to the config file (libconfig
 * text, e.g. a providers section; may be NULL) and the watchdog's
 * grace_s/interval_s. Aborts on failure. */
void wt_setup(struct wt *t, enum registry_backend backend, int grace_s,
              const char *extra);
void wt_teardown(struct wt *t);

/* wt_payload: a valid campaign-due body for `id` with `n` inline
 * recipients, or a recipients_url when url is not NULL. Caller frees. */
char *wt_payload(const char *id, int n, const char *url);

/* wt_register: register `id` in `state` (SCHEDULED or PUBLISHED), due
 * `ago_s` seconds ago, with wt_payload(id, n_recipients, NULL). */
void wt_register(struct wt *t, const char *id, enum campaign_state state,
                 int ago_s, int n_recipients);

/* wt_watchdog: a watchdog on the test's config. */
struct watchdog *wt_watchdog(struct wt *t, bool one_shot, bool dry_run);

/* wt_pass: one pass; returns the row of `id` copied into *row (verdict and
 * outcome; row->c is not kept) and whether it was in the report. */
bool wt_pass(struct watchdog *w, const char *id, struct watchdog_row *row,
             struct watchdog_report *keep);

/* wt_ready: exact ready count of `queue`. */
uint32_t wt_ready(struct wt *t, const char *queue);

/* wt_wait_ready: poll wt_ready until it equals `want` or timeout_ms pass;
 * returns the last count. */
uint32_t wt_wait_ready(struct wt *t, const char *queue, uint32_t want,
                       int timeout_ms);

/* wt_drain: basic.get + ack every message of `queue`; returns how many,
 * and counts those whose message_id is `id` and whose x-sendonce-reason
 * header equals `reason` (when not NULL) in *matching. */
int wt_drain(struct wt *t, const char *queue, const char *id,
             const char *reason, int *matching);

/* wt_get: the registry row of `id` (asserting it exists). Free with
 * registry_campaign_free(). */
struct registry_campaign wt_get(struct wt *t, const char *id);

/* wt_run: run `bin` with argv (argv[0] ignored; --config is added before
 * the rest), capturing stdout into out (NUL-terminated, truncated).
 * Returns the exit status (or 128 + signal). */
int wt_run(struct wt *t, const char *bin, const char *const *args, char *out,
           size_t outlen);

/* wt_spawn: start `bin --config <conf> args...` in the background with
 * stdout/stderr to /dev/null unless log is set (then appended to it). */
pid_t wt_spawn(struct wt *t, const char *bin, const char *const *args,
               const char *log);

/* wt_stop: SIGTERM (after SIGCONT), wait up to 15 s, then SIGKILL; returns
 * the exit status. */
int wt_stop(pid_t pid);

#endif /* SENDONCE_WATCHDOG_TESTUTIL_H */
