/* stats.h - the consumer's counters, shared by every thread.
 *
 * Plain atomics, so any thread may bump them without a lock and a future
 * /metrics endpoint (issue 9) can read them while the consumer runs.
 * Counters only grow; the fields marked "gauge" go up and down.
 */
#ifndef SENDONCE_CONSUMER_STATS_H
#define SENDONCE_CONSUMER_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* Upper bounds (ms) of the renewal-lag histogram buckets; one more bucket
 * counts everything above the last. */
#define STATS_LAG_BUCKETS 6
extern const int64_t stats_lag_bounds_ms[STATS_LAG_BUCKETS];

/* The same for the time from handing a recipient to the sender to its
 * outcome (the provider's latency, retries included). */
#define STATS_LATENCY_BUCKETS 8
extern const int64_t stats_latency_bounds_ms[STATS_LATENCY_BUCKETS];

struct consumer_stats {
  /* deliveries by outcome */
  atomic_llong deliveries;        /* taken by a worker */
  atomic_llong claimed;           /* claimed: we processed the campaign */
  atomic_llong duplicates;        /* DONE/HELD/PAUSED triggers acked */
  atomic_llong duplicates_done;   /* of which: campaign DONE or DEAD */
  atomic_llong duplicates_held;   /* of which: live lease elsewhere */
  atomic_llong duplicates_paused; /* of which: paused by an operator */
  atomic_llong invalid;           /* dead-lettered as unparsable */
  atomic_llong deferred;          /* registry unreachable: retry queue */
  atomic_llong requeued;          /* nacked back at shutdown or failure */
  atomic_llong stale_skipped;     /* old-generation deliveries dropped */
  atomic_llong parked;            /* no free worker: to a retry queue */
  /* campaigns by result */
  atomic_llong campaigns_done;
  atomic_llong campaigns_dead;     /* expired, provider down, bad list */
  atomic_llong campaigns_released; /* shutdown, pause, provider down */
  atomic_llong campaigns_lost;     /* stale fence: someone took over */
  atomic_llong campaigns_cancelled;
  atomic_llong active_campaigns; /* gauge: claims held now */
  /* recipients */
  atomic_llong sent;
  atomic_llong rejected;
  atomic_llong in_flight; /* gauge: recipients handed to senders */
  /* lease renewals */
  atomic_llong renewals;
  atomic_llong renewal_failures; /* registry unreachable or busy */
  atomic_llong renewal_lag_max_ms;
  atomic_llong renewal_lag[STATS_LAG_BUCKETS + 1];
  /* provider latency per recipient (submit to outcome) */
  atomic_llong latency[STATS_LATENCY_BUCKETS + 1];
  atomic_llong latency_count;
  atomic_llong latency_sum_ms;
  atomic_llong latency_max_ms;
  /* the broker */
  atomic_llong publish_failures; /* confirms that did not come */
};

/* stats_add: add n to a counter (relaxed: counters order nothing). */
static inline void stats_add(atomic_llong *c, long long n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline long long stats_get(const atomic_llong *c)
{
  return atomic_load_explicit(c, memory_order_relaxed);
}

/* stats_init: zero every counter. */
void stats_init(struct consumer_stats *s);

/* stats_lag: record one renewal's lag (how late it ran), ms. */
void stats_lag(struct consumer_stats *s, int64_t lag_ms);

/* stats_latency: record one recipient's submit-to-outcome time, ms. */
void stats_latency(struct consumer_stats *s, int64_t ms);

/* stats_log_summary: one info line with every counter, e.g. at exit. */
void stats_log_summary(const struct consumer_stats *s);

#endif /* SENDONCE_CONSUMER_STATS_H */
