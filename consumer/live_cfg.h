/* live_cfg.h - the consumer's settings that SIGHUP may change while the
 * workers run (the providers' rate, concurrency, timeouts and retries;
 * the log level and format), and the reload that changes them.
 *
 * The reload runs on the owner's thread: config_reload_safe() works on a
 * private copy (loading the file takes no lock), and the result is
 * published under a mutex that the workers also take to copy a provider's
 * settings when a campaign starts. So a campaign keeps the settings it
 * started with, and the next campaign a worker starts uses the new ones.
 * Everything else a worker reads from the config is fixed at start.
 */
#ifndef SENDONCE_CONSUMER_LIVE_CFG_H
#define SENDONCE_CONSUMER_LIVE_CFG_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "status.h"

struct live_cfg;

/* live_cfg_new: live settings starting from `cfg` (borrowed: it must
 * outlive the live_cfg, and its strings are shared, never changed).
 * NULL when out of memory. */
struct live_cfg *live_cfg_new(const struct config *cfg);

/* live_cfg_free: NULL is a no-op. No worker may use it any more. */
void live_cfg_free(struct live_cfg *lc);

/* live_cfg_provider: copy the current settings of `channel` into *out (its
 * strings point into the config given at start). Thread-safe. false when
 * no provider serves the channel. */
bool live_cfg_provider(struct live_cfg *lc, const char *channel,
                       struct config_provider *out);

/* live_cfg_reload: re-read the config file and publish its safe settings
 * (config_reload.h). On a bad file nothing changes and the error, with
 * file:line, is in err. Call from one thread only (the owner's). */
int live_cfg_reload(struct live_cfg *lc, char *err,
                    size_t errlen) SO_MUST_CHECK;

#endif /* SENDONCE_CONSUMER_LIVE_CFG_H */
