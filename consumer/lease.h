/* lease.h - the one thread that renews every active campaign's lease.
 *
 * Renewal runs apart from sending, on its own registry handle, so a slow or
 * hanging provider can never cost a live worker its lease. Each campaign
 * is renewed at a third of the ttl. When the registry refuses a renewal
 * with SO_ERR_STALE_FENCE (the lease expired or someone took over) the
 * entry is flagged lost; its worker checks the flag before every registry
 * write and while it polls its sender, and stops at once.
 */
#ifndef SENDONCE_CONSUMER_LEASE_H
#define SENDONCE_CONSUMER_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "registry.h"
#include "stats.h"
#include "status.h"

struct lease;
struct lease_entry;

/* lease_start: start the renewal thread. `ro` is copied (its strings are
 * borrowed and must outlive the thread); the registry is opened lazily and
 * reopened after failures. Returns SO_OK, SO_ERR_NOMEM or SO_ERR_INTERNAL
 * (no thread). */
int lease_start(const struct registry_options *ro, int ttl_s,
                struct consumer_stats *stats, struct lease **out) SO_MUST_CHECK;

/* lease_stop: stop and join the thread, free every entry. NULL: no-op. */
void lease_stop(struct lease *l);

/* lease_add: renew `campaign_id` with `fence` from now on; the claim
 * started at `claimed_at_ms` (monotonic), so the lease is known to last
 * until claimed_at_ms + ttl and the first renewal is due at ttl/3 from it.
 * NULL when out of memory. */
struct lease_entry *lease_add(struct lease *l, const char *campaign_id,
                              int64_t fence, int64_t claimed_at_ms);

/* lease_remove: stop renewing and free the entry. NULL is a no-op. */
void lease_remove(struct lease *l, struct lease_entry *e);

/* lease_lost: true once a renewal was refused for a stale fence (or the
 * worker said so with lease_set_lost), or once no renewal has been
 * confirmed until shortly before the lease could have expired (the
 * registry unreachable): then it is logged once as presumed expired. */
bool lease_lost(const struct lease_entry *e);
void lease_set_lost(struct lease_entry *e);

#endif /* SENDONCE_CONSUMER_LEASE_H */
