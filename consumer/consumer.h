/* consumer.h - the `run` verb of sendonce-consumer: wire the broker
 * session, the workers, the lease thread and the owner's loop. */
#ifndef SENDONCE_CONSUMER_CONSUMER_H
#define SENDONCE_CONSUMER_CONSUMER_H

#include "config.h"

/* consumer_run_cb: consume and send until SIGTERM/SIGINT; a second signal
 * hurries the shutdown. Returns 0 after a clean shutdown, CONFIG_EXIT_BAD
 * when the set-up is refused (topology mismatch, no provider), 1 on other
 * failures. */
int consumer_run_cb(const struct config *cfg, int argc, char **argv);

#endif /* SENDONCE_CONSUMER_CONSUMER_H */
