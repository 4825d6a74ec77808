/* config_reload.h - re-read the config file on SIGHUP and apply what is
 * safe to change while a process runs.
 *
 * The new file is loaded into a fresh struct config exactly as at start
 * (file, then environment, then validation). If it is invalid, nothing
 * changes and the error reads "file:line: key: message". If it is valid,
 * only the settings below are copied into the running config; every other
 * key that changed is reported ("reload: registry.backend changed: needs
 * a restart; kept the old value") and keeps its old value.
 *
 * Safe, because they are read again per request, per campaign or per pass
 * and nothing is built from them once and kept:
 *   log.level, log.format           applied at once (log_set_level/format)
 *   providers.<ch>.rate_per_s       read by each new sender (sender_new(),
 *   providers.<ch>.concurrency      i.e. from the next campaign on; a
 *   providers.<ch>.timeout_ms       sender reused with sender_rebind()
 *   providers.<ch>.max_retries      keeps the values it was created with)
 *   providers.<ch>.retry_base_ms
 *   watchdog.interval_s, grace_s,   thresholds of the next pass, once the
 *   stuck_after_s,                  watchdog re-derives them from the
 *   republish_backoff_s,            config at each pass
 *   max_republishes
 * Not safe (need a restart): everything that opened a connection or a
 * file, sized a thread pool, declared the topology or names an identity -
 * broker.*, topology.*, registry.*, consumer.*, metrics.*, every secret,
 * a provider's url, method, body_template, auth_header and batch_size, the
 * watchdog's management API settings, and adding or removing a provider.
 *
 * The merged config is checked again against the rules that tie a safe key
 * to a kept one (watchdog.grace_s >= the running registry.lease_ttl_s); a
 * merge that breaks one is refused whole.
 */
#ifndef SENDONCE_CONFIG_RELOAD_H
#define SENDONCE_CONFIG_RELOAD_H

#include <stddef.h>

#include "config.h"
#include "status.h"

/* config_reload_safe: load `path` (NULL: current->path, the file loaded at
 * start) and, if valid, copy the safe settings into *current and apply the
 * log settings. Each applied change ("reload: log.level: info -> debug")
 * and each ignored one is logged (info / warn) and, when report is not
 * NULL, appended to it one per line (truncated to reportlen). Values of
 * secrets are never written, only their names.
 * Returns SO_OK (also when nothing changed or only unsafe keys changed) or
 * the load's status (SO_ERR_INVALID, SO_ERR_IO, SO_ERR_NOTFOUND, ...) with
 * the reason in err; *current is then left exactly as it was.
 * Threading: writes plain int fields of *current. Call it where no other
 * thread reads those fields at the same time (e.g. under the lock that
 * guards the workers' reads of the providers), or on a copy that is then
 * published to them. */
int config_reload_safe(struct config *current, const char *path, char *report,
                       size_t reportlen, char *err,
                       size_t errlen) SO_MUST_CHECK;

#endif /* SENDONCE_CONFIG_RELOAD_H */
