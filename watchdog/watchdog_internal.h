/* watchdog_internal.h - what watchdog.c and watchdog_act.c share; not for
 * other callers (see watchdog.h). */
#ifndef SENDONCE_WATCHDOG_INTERNAL_H
#define SENDONCE_WATCHDOG_INTERNAL_H

#include <signal.h>

#include "msg.h"
#include "topology.h"
#include "verdict.h"
#include "watchdog.h"

struct broker;
struct mgmt;

/* What the daemon remembers of a campaign from the previous pass. */
struct watchdog_hist {
  char id[MSG_CAMPAIGN_ID_MAX + 1];
  struct verdict_prev prev; /* for the rate */
  enum verdict_kind last;   /* for events on a change only */
  enum verdict_action last_action;
};

struct watchdog {
  const struct config *cfg;
  struct watchdog_options opt;
  struct verdict_config vc;
  struct topology topo;
  struct registry *reg;
  struct broker *broker;
  struct mgmt *mgmt;
  char owner[300];          /* "watchdog@host:pid" (publish lease owner) */
  int64_t publish_lease_ms; /* registry_begin_publish ttl */
  int64_t empty_since_ms;   /* monotonic; 0 = queues not (known) empty */
  struct watchdog_hist *hist;
  size_t n_hist;
  bool alert_no_consumer_on, alert_dlq_on;
  int64_t alert_no_consumer_sent, alert_dlq_sent; /* monotonic ms */
};

/* watchdog_read_dlq: dlq_read() of the DLQ; when it reads empty although
 * the management API counts messages in it (another reader holds them, or
 * a requeue is still landing), read again up to WATCHDOG_DLQ_RETRIES times
 * ~200 ms apart; if it still reads empty, *uncertain = true. *out must be
 * ended with dlq_finish(). */
#define WATCHDOG_DLQ_RETRIES 5
struct dlq;
int watchdog_read_dlq(struct watchdog *w, struct dlq **out, bool *uncertain,
                      char *err, size_t errlen) SO_MUST_CHECK;

/* watchdog_act: carry out row->v.action (or only describe it with
 * dry_run), filling row->outcome and row->failed. `h` is the previous
 * pass's memory of the campaign (NULL: none) so that alert events go out
 * on a change, not on every pass. */
void watchdog_act(struct watchdog *w, struct watchdog_row *row,
                  const struct verdict_broker *vb,
                  const struct watchdog_hist *h);

#endif /* SENDONCE_WATCHDOG_INTERNAL_H */
