/* verdict.h - what the watchdog makes of one campaign: a pure function of
 * the registry row, the broker's facts and the config. No I/O, no clock:
 * every time comes in as an input, so each row of DESIGN.md's "Watchdog
 * rules" table is a unit test.
 *
 * The rows, in the order they are checked (the first that applies wins):
 *
 *  1. DONE                          -> ok          (nothing to do)
 *  2. DEAD                          -> dead        (report last_error)
 *  3. PROCESSING, lease live, no    -> stuck       (alert, never republish)
 *     progress for stuck_after
 *  4. PROCESSING, lease live        -> in progress (progress, rate, ETA;
 *                                                   never republish)
 *     Rows 3-4 win over a copy of the trigger in the DLQ: while a live
 *     worker holds the campaign such a copy is stale (e.g. a replay that
 *     was interrupted before it removed it): alert, never mark it dead.
 *  5. trigger in the DLQ            -> dead        (mark the registry DEAD
 *                                                   with the DLQ's reason)
 *  6. paused                        -> paused      (an operator's hold;
 *                                                   resume re-triggers)
 *  7. SCHEDULED (past due)          -> publisher missing (publish it)
 *  8. PROCESSING, lease expired     -> stalled     (takeover trigger)
 *     for more than grace
 *  9. PROCESSING, lease expired     -> in progress ("lease expired Ns ago,
 *     for less than grace                           waiting for grace")
 * 10. PUBLISHED, broker unknown or  -> queued      (report position)
 *     backlog (ready or unacked in
 *     the main or retry queues)
 * 11. PUBLISHED, queues empty and   -> trigger lost (republish)
 *     idle for more than grace
 * 12. PUBLISHED, queues empty for   -> queued      ("watching")
 *     less than grace
 *
 * Republish actions (rows 6, 9, 12) also honour the cap and the backoff:
 * a campaign at max_republishes gets action ALERT instead (a person must
 * look); one inside its backoff window gets NONE ("backoff"). The
 * registry's own transition re-checks all of this atomically; the verdict
 * only decides whether to try.
 */
#ifndef SENDONCE_VERDICT_H
#define SENDONCE_VERDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

enum verdict_kind {
  VERDICT_OK = 0,
  VERDICT_IN_PROGRESS,
  VERDICT_STUCK,
  VERDICT_QUEUED,
  VERDICT_TRIGGER_LOST,
  VERDICT_STALLED,
  VERDICT_DEAD,
  VERDICT_PUBLISHER_MISSING,
  VERDICT_PAUSED,
};

enum verdict_action {
  VERDICT_ACTION_NONE = 0,
  VERDICT_ACTION_REPUBLISH, /* trigger lost: record, then publish */
  VERDICT_ACTION_TAKEOVER,  /* stalled: record, then publish takeover */
  VERDICT_ACTION_PUBLISH,   /* SCHEDULED: begin_publish, mark_published */
  VERDICT_ACTION_MARK_DEAD, /* trigger in the DLQ: registry DEAD */
  VERDICT_ACTION_ALERT,     /* a person must look; nothing automatic */
};

/* What the broker says, as far as it concerns one campaign. */
struct verdict_broker {
  bool known;             /* the counts below were read this pass */
  int64_t ready;          /* ready messages, main + retry queues */
  int64_t unacked;        /* unacknowledged, main + retry queues */
  int64_t consumers;      /* consumers of the main queue */
  int64_t queue_idle_ms;  /* how long the main + retry queues have been
                             seen with nothing ready or unacked; -1 unknown */
  bool in_dlq;            /* a trigger of this campaign is in the DLQ */
  const char *dlq_reason; /* its x-sendonce-error / x-death reason, or NULL */
};

/* The watchdog's settings, in ms. */
struct verdict_config {
  int64_t grace_ms;
  int64_t stuck_after_ms;
  int64_t backoff_ms;
  int max_republishes;
};

#define VERDICT_REASON_LEN 256

struct verdict {
  enum verdict_kind kind;
  enum verdict_action action;
  bool attention;          /* needs a person's attention (check exits 1) */
  int64_t lease_age_ms;    /* now - lease_until: < 0 = ms left on a live lease;
                              0 when there is no lease */
  int64_t progress_age_ms; /* now - progress_at, or -1 if never */
  double rate_per_s;       /* recipients done per s since the previous
                              observation, or 0 when unknown */
  int64_t eta_ms;          /* estimated ms to done, or -1 unknown */
  char reason[VERDICT_REASON_LEN]; /* one line for a person */
};

/* An earlier observation of the same campaign (for the rate). */
struct verdict_prev {
  int64_t fence; /* the fence then: another claim restarts the rate */
  int64_t done;  /* sent + rejected then */
  int64_t at_ms; /* registry time then */
};

/* verdict_decide: the verdict on campaign `c` (a registry row; its
 * registry_now_ms is "now") given broker facts `q`, settings `cfg` and an
 * earlier observation `prev` (NULL: none; the rate is then unknown).
 * Pure; never fails. */
void verdict_decide(const struct registry_campaign *c,
                    const struct verdict_broker *q,
                    const struct verdict_config *cfg,
                    const struct verdict_prev *prev, struct verdict *out);

/* verdict_kind_name: "in_progress", "trigger_lost", ... (for JSON and
 * logs). verdict_kind_label: "in progress", "trigger lost", ... (for a
 * person). verdict_action_name: "none", "republish", "takeover",
 * "publish", "mark_dead", "alert". */
const char *verdict_kind_name(enum verdict_kind kind);
const char *verdict_kind_label(enum verdict_kind kind);
const char *verdict_action_name(enum verdict_action action);

#endif /* SENDONCE_VERDICT_H */
