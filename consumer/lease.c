/* lease.c - the lease renewal thread (see lease.h). */
#include "lease.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

struct lease_entry {
  struct lease_entry *next;
  char *campaign_id;
  int64_t fence;
  int64_t due_ms;       /* monotonic: next renewal */
  atomic_llong held_ms; /* monotonic: the lease runs at least until here
                           (the start of the claim or of the last renewal
                           that succeeded, + ttl) */
  int64_t margin_ms;    /* presume it lost this long before held_ms */
  atomic_bool lost;
};

struct lease {
  struct registry_options ro;
  int64_t ttl_ms;
  struct consumer_stats *stats;
  struct registry *reg; /* the thread's own handle */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cond;
  bool stop;
  struct lease_entry *entries;
};

/* The renewal retry after the registry could not be reached: soon, so a
 * short outage costs no lease, but not in a tight loop. */
#define LEASE_RETRY_MS 1000

static void renew_one(struct lease *l, struct lease_entry *e, int64_t now)
{
  char err[512] = "";
  if (!l->reg && registry_open(&l->ro, &l->reg, err, sizeof(err)) != SO_OK) {
    stats_add(&l->stats->renewal_failures, 1);
    log_warn("consumer: lease: registry unreachable: %s campaign=%s fence=%lld",
             err, e->campaign_id, (long long)e->fence);
    e->due_ms = now + LEASE_RETRY_MS;
    return;
  }
  int64_t lag = now - e->due_ms;
  stats_lag(l->stats, lag);
  int rc = registry_renew(l->reg, e->campaign_id, e->fence, l->ttl_ms);
  if (rc == SO_OK) {
    /* The registry set lease_until = its now + ttl after we called: the
     * lease certainly lasts until our call's start + ttl. */
    atomic_store(&e->held_ms, (long long)(now + l->ttl_ms));
    stats_add(&l->stats->renewals, 1);
    e->due_ms = now + l->ttl_ms / 3;
    log_debug("consumer: renewed campaign=%s fence=%lld lag_ms=%lld",
              e->campaign_id, (long long)e->fence, (long long)lag);
    return;
  }
  if (rc == SO_ERR_STALE_FENCE) {
    atomic_store(&e->lost, true);
    log_warn(
        "consumer: lease refused campaign=%s fence=%lld: %s (taken "
        "over, expired, cancelled or just ended; the worker stops)",
        e->campaign_id, (long long)e->fence, registry_errmsg(l->reg));
    e->due_ms = INT64_MAX;
    return;
  }
  stats_add(&l->stats->renewal_failures, 1);
  log_warn("consumer: lease: renew failed campaign=%s fence=%lld status=%s: %s",
           e->campaign_id, (long long)e->fence, so_strerror(rc),
           registry_errmsg(l->reg));
  e->due_ms = now + LEASE_RETRY_MS;
}

static void *lease_main(void *arg)
{
  struct lease *l = arg;
  pthread_mutex_lock(&l->mu);
  while (!l->stop) {
    int64_t now = clock_monotonic_ms();
    /* The mutex is held while renewing: lease_add/remove wait at most one
     * registry call, and an entry cannot vanish under us. */
    for (struct lease_entry *e = l->entries; e; e = e->next) {
      if (atomic_load(&e->lost))
        continue;
      if (e->due_ms <= now)
        renew_one(l, e, now);
      (void)lease_lost(e); /* logs a presumed expiry */
    }
    struct timespec until = clock_deadline(CLOCK_REALTIME, 100 * 1000000L);
    (void)pthread_cond_timedwait(&l->cond, &l->mu, &until);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

int lease_start(const struct registry_options *ro, int ttl_s,
                struct consumer_stats *stats, struct lease **out)
{
  *out = NULL;
  struct lease *l = calloc(1, sizeof(*l));
  if (!l)
    return SO_ERR_NOMEM;
  l->ro = *ro;
  l->ttl_ms = (int64_t)ttl_s * 1000;
  l->stats = stats;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cond, NULL);
  if (pthread_create(&l->thread, NULL, lease_main, l) != 0) {
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mu);
    free(l);
    return SO_ERR_INTERNAL;
  }
  *out = l;
  return SO_OK;
}

void lease_stop(struct lease *l)
{
  if (!l)
    return;
  pthread_mutex_lock(&l->mu);
  l->stop = true;
  pthread_cond_signal(&l->cond);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->thread, NULL);
  while (l->entries) {
    struct lease_entry *e = l->entries;
    l->entries = e->next;
    free(e->campaign_id);
    free(e);
  }
  registry_close(l->reg);
  pthread_cond_destroy(&l->cond);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

struct lease_entry *lease_add(struct lease *l, const char *campaign_id,
                              int64_t fence, int64_t claimed_at_ms)
{
  struct lease_entry *e = calloc(1, sizeof(*e));
  if (!e || !(e->campaign_id = strdup(campaign_id))) {
    free(e);
    return NULL;
  }
  e->fence = fence;
  e->due_ms = claimed_at_ms + l->ttl_ms / 3;
  e->margin_ms = l->ttl_ms / 6;
  atomic_init(&e->held_ms, (long long)(claimed_at_ms + l->ttl_ms));
  atomic_init(&e->lost, false);
  pthread_mutex_lock(&l->mu);
  e->next = l->entries;
  l->entries = e;
  pthread_mutex_unlock(&l->mu);
  return e;
}

void lease_remove(struct lease *l, struct lease_entry *e)
{
  if (!e)
    return;
  pthread_mutex_lock(&l->mu);
  for (struct lease_entry **pp = &l->entries; *pp; pp = &(*pp)->next) {
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  }
  pthread_mutex_unlock(&l->mu);
  free(e->campaign_id);
  free(e);
}

/* A registry we cannot reach cannot refuse us, but the lease runs out all
 * the same, and then someone may take over. So the lease also counts as
 * lost shortly before it can have expired (margin: a sixth of the ttl).
 * Checked here, by the worker, rather than only by the renewal thread,
 * which may itself be blocked in a renewal the registry does not answer. */
bool lease_lost(const struct lease_entry *ce)
{
  struct lease_entry *e = (struct lease_entry *)ce;
  if (atomic_load(&e->lost))
    return true;
  int64_t now = clock_monotonic_ms();
  int64_t held = atomic_load(&e->held_ms);
  if (now < held - e->margin_ms)
    return false;
  if (!atomic_exchange(&e->lost, true))
    log_error(
        "consumer: lease presumed expired campaign=%s fence=%lld: "
        "no renewal confirmed for %lld ms (registry unreachable or "
        "busy); the worker stops sending",
        e->campaign_id, (long long)e->fence,
        (long long)(now - held + (e->margin_ms * 6)));
  return true;
}

void lease_set_lost(struct lease_entry *e)
{
  atomic_store(&e->lost, true);
}
