/* stats.c - the consumer's counters. */
#include "stats.h"

#include <stddef.h>

#include "log.h"

const int64_t stats_lag_bounds_ms[STATS_LAG_BUCKETS] = {10,   50,   250,
                                                        1000, 5000, 20000};

void stats_init(struct consumer_stats *s)
{
  atomic_llong *c = (atomic_llong *)s;
  /* Every field is an atomic_llong: zero them one by one, as atomics. */
  for (size_t i = 0; i < sizeof(*s) / sizeof(atomic_llong); i++)
    atomic_init(&c[i], 0);
}

const int64_t stats_latency_bounds_ms[STATS_LATENCY_BUCKETS] = {
    10, 50, 100, 250, 500, 1000, 5000, 30000};

/* bucket: the first bound >= v, or n (above every bound). */
static size_t bucket(const int64_t *bounds, size_t n, int64_t v)
{
  size_t b = 0;
  while (b < n && v > bounds[b])
    b++;
  return b;
}

static void raise_max(atomic_llong *max, int64_t v)
{
  long long cur = stats_get(max);
  while (v > cur && !atomic_compare_exchange_weak(max, &cur, (long long)v))
    ;
}

void stats_latency(struct consumer_stats *s, int64_t ms)
{
  if (ms < 0)
    ms = 0;
  stats_add(
      &s->latency[bucket(stats_latency_bounds_ms, STATS_LATENCY_BUCKETS, ms)],
      1);
  stats_add(&s->latency_count, 1);
  stats_add(&s->latency_sum_ms, (long long)ms);
  raise_max(&s->latency_max_ms, ms);
}

void stats_lag(struct consumer_stats *s, int64_t lag_ms)
{
  if (lag_ms < 0)
    lag_ms = 0;
  stats_add(
      &s->renewal_lag[bucket(stats_lag_bounds_ms, STATS_LAG_BUCKETS, lag_ms)],
      1);
  raise_max(&s->renewal_lag_max_ms, lag_ms);
}

void stats_log_summary(const struct consumer_stats *s)
{
  long long n = stats_get(&s->latency_count);
  log_info(
      "consumer: summary deliveries=%lld claimed=%lld duplicates=%lld "
      "duplicates_done=%lld duplicates_held=%lld duplicates_paused=%lld "
      "invalid=%lld deferred=%lld requeued=%lld stale_skipped=%lld "
      "parked=%lld "
      "campaigns_done=%lld campaigns_dead=%lld campaigns_released=%lld "
      "campaigns_lost=%lld campaigns_cancelled=%lld sent=%lld rejected=%lld "
      "renewals=%lld renewal_failures=%lld renewal_lag_max_ms=%lld "
      "latency_avg_ms=%lld latency_max_ms=%lld publish_failures=%lld",
      stats_get(&s->deliveries), stats_get(&s->claimed),
      stats_get(&s->duplicates), stats_get(&s->duplicates_done),
      stats_get(&s->duplicates_held), stats_get(&s->duplicates_paused),
      stats_get(&s->invalid), stats_get(&s->deferred), stats_get(&s->requeued),
      stats_get(&s->stale_skipped), stats_get(&s->parked),
      stats_get(&s->campaigns_done), stats_get(&s->campaigns_dead),
      stats_get(&s->campaigns_released), stats_get(&s->campaigns_lost),
      stats_get(&s->campaigns_cancelled), stats_get(&s->sent),
      stats_get(&s->rejected), stats_get(&s->renewals),
      stats_get(&s->renewal_failures), stats_get(&s->renewal_lag_max_ms),
      n ? stats_get(&s->latency_sum_ms) / n : 0, stats_get(&s->latency_max_ms),
      stats_get(&s->publish_failures));
}
