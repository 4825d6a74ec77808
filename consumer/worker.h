/* worker.h - a worker thread: takes deliveries from the dispatch, parses,
 * claims, and runs the claimed campaigns (campaign.h).
 *
 * Each worker has its own registry handle (a handle is not thread-safe),
 * opened lazily so a registry that is down at start only defers triggers
 * to a retry queue instead of stopping the consumer. Each worker also has
 * a mark writer (mark_writer.h): a thread, started and joined with the
 * worker, with a registry handle of its own, that does the running
 * campaign's batch reads and marks while the worker's thread sends.
 */
#ifndef SENDONCE_CONSUMER_WORKER_H
#define SENDONCE_CONSUMER_WORKER_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "broker.h"
#include "config.h"
#include "dispatch.h"
#include "lease.h"
#include "live_cfg.h"
#include "mark_writer.h"
#include "registry.h"
#include "sender.h"
#include "stats.h"
#include "topology.h"

/* What every worker shares; read-only once the workers run. */
struct worker_shared {
  const struct config *cfg;
  const struct topology *topo;
  struct dispatch *dispatch;
  struct lease *lease;
  struct consumer_stats *stats;
  struct live_cfg *live; /* provider settings SIGHUP may change, or NULL */
  const volatile sig_atomic_t *stop; /* signals seen: 2 = hurry */
  struct registry_options ro;        /* points into cfg */
  const char *channels[CONFIG_MAX_PROVIDERS];
  size_t n_channels;
};

#define WORKER_OWNER_MAX 300

struct worker {
  const struct worker_shared *sh;
  int index;
  char owner[WORKER_OWNER_MAX]; /* "<consumer.owner>:w<index>" */
  struct registry *reg;         /* lazily opened; NULL when down */
  struct mark_writer *mw;       /* the campaign's registry writer */
  /* The last campaign's sender, idle, kept for the next campaign of the
   * same provider settings (warm keep-alive connections); used and freed
   * by the worker's thread only. */
  struct sender *sender;
  struct config_provider sender_prov; /* the settings it was made with */
  pthread_t thread;
  bool started;
};

/* worker_shared_init: registry options and channel names from cfg. */
void worker_shared_init(struct worker_shared *sh, const struct config *cfg);

/* worker_start: start worker `index` and its mark writer. Returns SO_OK,
 * SO_ERR_NOMEM or SO_ERR_INTERNAL. */
int worker_start(struct worker *w, const struct worker_shared *sh,
                 int index) SO_MUST_CHECK;

/* worker_join: wait for the thread, stop its mark writer and release its
 * registry handle. */
void worker_join(struct worker *w);

/* worker_registry: the worker's registry handle, opening it if needed;
 * NULL (logged) when the registry cannot be reached. */
struct registry *worker_registry(struct worker *w);

/* worker_hurry: a second signal asked for a prompt exit. */
bool worker_hurry(const struct worker *w);

#endif /* SENDONCE_CONSUMER_WORKER_H */
