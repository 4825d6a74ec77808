/* watchdog.h - one reconciliation pass of registry + broker + DLQ, and the
 * operator's verbs on one campaign (status, replay).
 *
 * A pass: list the campaigns overdue by more than grace (registry) and the
 * DEAD campaigns whose trigger is in the DLQ (reported, never acted on), read
 * the queue facts (exact ready and consumer counts over AMQP, unacked from
 * the management API), read the DLQ (dlq.h), decide each campaign with
 * verdict_decide() and act on the verdict:
 *
 *   republish / takeover: registry_record_republish() first (the atomic
 *     transition: of several watchdogs exactly one wins; it re-checks
 *     state, fence, cap, backoff and, for a takeover, that the lease
 *     expired more than grace ago), then a confirmed publish of the
 *     registry's payload with x-sendonce-reason = trigger_lost | takeover
 *     and x-sendonce-attempt = the republish count;
 *   publish (SCHEDULED): registry_begin_publish(), confirmed publish,
 *     registry_mark_published() (publisher and watchdogs: one wins);
 *   mark dead: registry_mark_dead() with the DLQ's reason.
 *
 * With dry_run nothing is changed (no registry write, no publish, no
 * event, no DLQ removal); the report says what would have been done.
 * Every decision is logged with its inputs.
 *
 * "Queues empty and idle for more than grace" (trigger lost): a daemon
 * tracks across passes since when the main and retry queues have shown
 * nothing ready and nothing unacked; a campaign's idle time is the
 * shorter of that and how long it has been PUBLISHED (registry time since
 * its last change). A one-shot pass (check) has no history: it samples
 * the queues twice, WATCHDOG_RESAMPLE_MS apart, and if both samples are
 * empty uses how long the campaign has been PUBLISHED.
 *
 * Not thread-safe: one thread owns a watchdog.
 */
#ifndef SENDONCE_WATCHDOG_H
#define SENDONCE_WATCHDOG_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "registry.h"
#include "status.h"
#include "verdict.h"

#define WATCHDOG_RESAMPLE_MS 1500
#define WATCHDOG_MAX_CAMPAIGNS 1000 /* overdue campaigns judged per pass */
#define WATCHDOG_DLQ_LIMIT 10000    /* DLQ messages read per pass */
#define WATCHDOG_MAX_DEAD_ROWS 100  /* DEAD campaigns listed from the DLQ */

struct watchdog;

struct watchdog_options {
  bool dry_run;  /* decide and report; change nothing */
  bool one_shot; /* check/status: no history between passes */
};

/* One campaign in a report. */
struct watchdog_row {
  struct registry_campaign c; /* owned; freed with the report */
  struct verdict v;
  bool in_dlq;
  char dlq_reason[256];
  char outcome[256]; /* what was done: "none", "republished (attempt 1)",
                        "dry-run: would republish", "lost race: ..." */
  bool failed;       /* the action failed (attention) */
};

/* Queue facts of one pass. */
struct watchdog_queues {
  bool known;          /* every count below was read */
  int64_t ready;       /* main queue, exact (AMQP) */
  int64_t unacked;     /* main queue, management API (sampled) */
  int64_t consumers;   /* main queue, exact (AMQP) */
  double utilisation;  /* consumer utilisation, -1 unknown */
  int64_t retry_ready; /* all retry queues */
  int64_t idle_ms;     /* main + retry empty for this long (-1 unknown) */
  char error[256];     /* why not known */
};

struct watchdog_report {
  struct watchdog_row *rows;
  size_t n;
  struct watchdog_queues q;
  bool dlq_known;
  size_t dlq_count;     /* messages in the DLQ */
  bool dlq_truncated;   /* more than WATCHDOG_DLQ_LIMIT */
  size_t dlq_unmatched; /* DLQ messages of campaigns not in rows */
  bool alert_no_consumer;
  bool alert_dlq;
  bool alert_broker; /* broker or management API facts missing */
  bool attention;    /* any alert or any row needing attention */
  int64_t registry_now_ms;
};

/* watchdog_open: open the registry, the broker session (declaring the
 * topology; a failure to connect is not fatal here: passes report it) and
 * the management client. cfg must outlive the watchdog. */
int watchdog_open(const struct config *cfg, const struct watchdog_options *o,
                  struct watchdog **out, char *err,
                  size_t errlen) SO_MUST_CHECK;
void watchdog_close(struct watchdog *w);

/* watchdog_pass: one pass (see above). Returns SO_OK with *r filled (free
 * with watchdog_report_free()), or a registry failure with err (then *r
 * is empty). Broker trouble is reported in r (alert_broker), not
 * returned. */
int watchdog_pass(struct watchdog *w, struct watchdog_report *r, char *err,
                  size_t errlen) SO_MUST_CHECK;

/* watchdog_status: everything known about one campaign: a report with one
 * row (any state, not only overdue), the queue facts and the DLQ match.
 * Never acts. SO_ERR_NOTFOUND if the registry does not know it. */
int watchdog_status(struct watchdog *w, const char *id,
                    struct watchdog_report *r, char *err,
                    size_t errlen) SO_MUST_CHECK;

/* watchdog_replay: for an operator who fixed the cause: DEAD -> PUBLISHED
 * (registry_replay, one winner), a fresh trigger from the registry's
 * payload with a confirm, then the DLQ copies removed. msg says what was
 * done. Returns SO_OK; SO_ERR_CONFLICT (not DEAD, or another replay won);
 * SO_ERR_NOTFOUND; a broker or registry failure (err). With dry_run it
 * only says what it would do. */
int watchdog_replay(struct watchdog *w, const char *id, char *msg,
                    size_t msglen) SO_MUST_CHECK;

/* watchdog_idle: keep the broker session alive for up to ms (heartbeats),
 * returning early when *stop becomes non-zero. */
void watchdog_idle(struct watchdog *w, int64_t ms,
                   const volatile sig_atomic_t *stop);

void watchdog_report_free(struct watchdog_report *r);

#endif /* SENDONCE_WATCHDOG_H */
