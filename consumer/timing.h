/* timing.h - when each in-flight recipient was handed to the sender, so
 * the time to its outcome (queueing, transfer and retries: the provider's
 * latency as a campaign sees it) can go into the stats histogram.
 *
 * An open-addressing table keyed by a 64-bit hash of the recipient id,
 * starting small and growing up to a size fixed at creation: a few bytes
 * per recipient in flight, never per recipient of the campaign. When
 * full, new entries are simply not timed.
 */
#ifndef SENDONCE_CONSUMER_TIMING_H
#define SENDONCE_CONSUMER_TIMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct timing;

/* timing_new: room for about `cap` recipients in flight; NULL when out of
 * memory. */
struct timing *timing_new(size_t cap);
void timing_free(struct timing *t);

/* timing_put: remember that `id` started at `now_ms`. */
void timing_put(struct timing *t, const char *id, int64_t now_ms);

/* timing_take: how long ago `id` started (and forget it); false when it was
 * not timed. */
bool timing_take(struct timing *t, const char *id, int64_t now_ms,
                 int64_t *elapsed_ms);

#endif /* SENDONCE_CONSUMER_TIMING_H */
