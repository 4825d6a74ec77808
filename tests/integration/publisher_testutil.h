/* publisher_testutil.h - helpers of the sendonce-publisher tests: a private
 * registry (either backend) and topology per test, a config file naming
 * them, the real binary run as a CLI verb or as the `run` daemon, and
 * checks of what reached the main queue.
 *
 * The binary gets a clean environment (no SENDONCE_* from the caller, so a
 * developer's settings cannot redirect it) plus the two passwords, which
 * travel in the environment, never in argv or the config file.
 */
#ifndef SENDONCE_PUBLISHER_TESTUTIL_H
#define SENDONCE_PUBLISHER_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "registry.h"
#include "registry_testdb.h"
#include "topology.h"

struct pt {
  struct testdb db;
  struct topology topo; /* its prefix is this test's own */
  char dir[256];        /* private temp directory */
  char conf[300];       /* config file for the binary */
  char content[300];    /* a valid --content file */
  char recipients[300]; /* a valid --recipients file (JSON lines) */
  struct broker *b;     /* the test's own session (checks) */
  struct registry *reg; /* the test's own registry handle (checks) */
  int n_logs;           /* daemons started so far (log file names) */
  int busy_timeout_ms;  /* registry.busy_timeout_ms in the config */
  int metrics_port;     /* metrics.publisher_port; 0: metrics disabled */
};

/* pt_backend: the backend this run tests (set by main from argv). */
extern enum registry_backend pt_backend;

/* pt_setup / pt_teardown: create and remove everything above; the config
 * points at the real broker (pt_write_config changes the URI). */
void pt_setup(struct pt *t);
void pt_teardown(struct pt *t);

/* pt_write_config: (re)write t->conf with broker `uri` (NULL: the real
 * one) and confirm/connect timeouts of `timeout_ms`. */
void pt_write_config(struct pt *t, const char *uri, int timeout_ms);

/* pt_cli: run `sendonce-publisher --config t->conf ARGS...` (NULL-ended)
 * and wait for it (at most timeout_ms, else fail). Returns its exit
 * status; *out / *err (may be NULL) get its stdout / stderr (caller
 * frees). */
int pt_cli(struct pt *t, int timeout_ms, char **out, char **err, ...);

/* pt_daemon_start: start `run` in its own process group, stderr to a log
 * file in t->dir. pt_daemon_stop: SIGTERM, wait (bounded), assert exit 0.
 * pt_daemon_log: the daemon's log so far (caller frees). */
pid_t pt_daemon_start(struct pt *t, int *log_index);
void pt_daemon_stop(pid_t pid);
char *pt_daemon_log(struct pt *t, int log_index);

/* pt_register: register campaign `id` due at due_ms as SCHEDULED through
 * the registry API (fast, for many campaigns). */
void pt_register(struct pt *t, const char *id, int64_t due_ms);

/* pt_state: the campaign's state (fails if absent). */
enum campaign_state pt_state(struct pt *t, const char *id);

/* pt_count_state: campaigns in `state` (registry_list). */
size_t pt_count_state(struct pt *t, enum campaign_state state);

/* pt_drain: take (and ack) every message in the main queue; returns how
 * many and fills ids[0..max) with owned copies of their message_id. */
size_t pt_drain(struct pt *t, char **ids, size_t max);

/* pt_count_id: occurrences of `id` in ids[0..n). */
size_t pt_count_id(char **ids, size_t n, const char *id);
void pt_free_ids(char **ids, size_t n);

/* pt_write_file: write text to <t->dir>/<name>; returns the path (static
 * per call site is not enough: the caller copies it). */
void pt_write_file(struct pt *t, const char *name, const char *text, char *path,
                   size_t pathlen);

#endif /* SENDONCE_PUBLISHER_TESTUTIL_H */
