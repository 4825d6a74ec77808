/* verbs.h - the command-line verbs of sendonce-publisher (cli_verb_cb).
 *
 * Exit statuses: 0 success; 1 the verb ran and failed (registry or broker
 * down, campaign exists or is in the wrong state); 2 bad usage or input.
 */
#ifndef SENDONCE_VERBS_H
#define SENDONCE_VERBS_H

#include "config.h"

/* schedule --id ID --at TIME --channel NAME --content FILE
 *          (--recipients FILE | --recipients-url URL) [--not-after TIME] */
int verbs_schedule(const struct config *cfg, int argc, char **argv);

/* publish ID: publish a SCHEDULED campaign's trigger now. */
int verbs_publish(const struct config *cfg, int argc, char **argv);

/* cancel ID / pause ID / resume ID (resume re-triggers a PUBLISHED or
 * PROCESSING campaign). */
int verbs_cancel(const struct config *cfg, int argc, char **argv);
int verbs_pause(const struct config *cfg, int argc, char **argv);
int verbs_resume(const struct config *cfg, int argc, char **argv);

/* run: the daemon; exits 0 on SIGTERM/SIGINT. */
int verbs_run(const struct config *cfg, int argc, char **argv);

#endif /* SENDONCE_VERBS_H */
