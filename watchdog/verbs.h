/* verbs.h - the watchdog's command-line verbs (cli_verb_cb, see cli.h).
 *
 *   run [--dry-run]            daemon: a pass every watchdog.interval_s;
 *                              SIGTERM/SIGINT end it cleanly (exit 0)
 *   check [--dry-run] [--json] one pass printed as a table (or JSON);
 *                              exit 0 healthy, 1 something needs
 *                              attention, 2 on error
 *   status [--json] ID         everything known about one campaign; exits
 *                              like check
 *   replay [--dry-run] ID      DLQ -> main queue, DEAD -> PUBLISHED; exit
 *                              0 done, 1 refused (not DEAD...), 2 error
 */
#ifndef SENDONCE_WATCHDOG_VERBS_H
#define SENDONCE_WATCHDOG_VERBS_H

#include "config.h"

int verbs_run(const struct config *cfg, int argc, char **argv);
int verbs_check(const struct config *cfg, int argc, char **argv);
int verbs_status(const struct config *cfg, int argc, char **argv);
int verbs_replay(const struct config *cfg, int argc, char **argv);

#endif /* SENDONCE_WATCHDOG_VERBS_H */
