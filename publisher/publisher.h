/* publisher.h - publishing campaign-due triggers, once, when due.
 *
 * A publisher holds the registry and (opened on first need) the broker
 * session with the topology. Publishing one campaign is three steps:
 * registry_begin_publish (the short publish lease: of several publishers
 * and watchdogs exactly one wins), a confirmed publish, and
 * registry_mark_published only after the broker's confirm. A failed
 * publish leaves the campaign SCHEDULED: the same publisher may retry at
 * once (the lease is its own), others once the lease expires. A crash
 * between the confirm and the mark publishes the trigger twice (the
 * consumer's claim sorts that out), never zero times.
 *
 * Not thread-safe: one thread owns a publisher.
 */
#ifndef SENDONCE_PUBLISHER_H
#define SENDONCE_PUBLISHER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "registry.h"
#include "status.h"

struct publisher;

/* What publishing one campaign came to. */
enum publisher_outcome {
  PUBLISHER_PUBLISHED = 0, /* confirmed and marked PUBLISHED */
  PUBLISHER_NOT_DUE = 1,   /* not ours to publish: not SCHEDULED, paused,
                              or another publisher holds the lease */
  PUBLISHER_FAILED = 2,    /* not published (broker or registry); left
                              SCHEDULED, err says why */
  PUBLISHER_UNMARKED = 3,  /* confirmed, but the PUBLISHED mark failed:
                              kept in memory and retried first */
};

/* What a publisher is opened for. */
enum publisher_mode {
  PUBLISHER_ONE_SHOT = 0, /* a CLI verb: every registry step is durable
                             before it returns */
  PUBLISHER_DAEMON = 1,   /* publisher_run: the publish lease and the
                             PUBLISHED mark commit without waiting for the
                             disk (registry_options.publish_async_commit),
                             so a slow flush cannot hold up every campaign
                             due behind it */
};

/* publisher_open: open the registry named by cfg (the broker session is
 * opened lazily) for `mode`. cfg is borrowed and must outlive the
 * publisher. Returns SO_OK with *out set; SO_ERR_UNAVAILABLE /
 * SO_ERR_SCHEMA / SO_ERR_IO... from registry_open with err filled. */
int publisher_open(const struct config *cfg, enum publisher_mode mode,
                   struct publisher **out, char *err,
                   size_t errlen) SO_MUST_CHECK;

/* publisher_close: close the broker session and the registry. NULL is a
 * no-op. */
void publisher_close(struct publisher *p);

/* publisher_registry: the registry handle (owned by the publisher). */
struct registry *publisher_registry(struct publisher *p);

/* publisher_owner: this process's name in the registry's publish lease,
 * "publisher@<host>:<pid>". */
const char *publisher_owner(const struct publisher *p);

/* publisher_connect: open the broker session if needed and connect now
 * (declaring the topology). Returns SO_OK or broker_connect()'s status
 * with err filled. */
int publisher_connect(struct publisher *p, char *err,
                      size_t errlen) SO_MUST_CHECK;

/* publisher_publish: publish campaign `c` (as read from the registry)
 * through the three steps above. Returns the outcome; err says why for
 * NOT_DUE and FAILED. *rc_out (may be NULL) gets the failing status. */
enum publisher_outcome publisher_publish(struct publisher *p,
                                         const struct registry_campaign *c,
                                         int *rc_out, char *err, size_t errlen);

/* publisher_trigger: publish a trigger for `c` with a confirm and no
 * registry transition (a resume of a PUBLISHED or PROCESSING campaign).
 * Returns SO_OK or broker_publish_confirmed()'s status with err. */
int publisher_trigger(struct publisher *p, const struct registry_campaign *c,
                      char *err, size_t errlen) SO_MUST_CHECK;

/* publisher_on_tick: have publisher_run() call cb(arg) on its thread once
 * per loop (about every tick), e.g. to act on a SIGHUP the handler only
 * noted. */
void publisher_on_tick(struct publisher *p, void (*cb)(void *arg), void *arg);

/* publisher_run: the daemon loop: every ~200 ms publish every due
 * campaign; keep the broker session alive while idle; reconnect with
 * backoff. Returns SO_OK once *stop becomes non-zero (after the publish in
 * flight), or SO_ERR_CONFLICT when the topology on the broker differs from
 * ours (err says how; a person must fix it). */
int publisher_run(struct publisher *p, const volatile sig_atomic_t *stop,
                  char *err, size_t errlen) SO_MUST_CHECK;

#endif /* SENDONCE_PUBLISHER_H */
