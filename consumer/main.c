/* sendonce-consumer: consumes campaign-due triggers, claims each campaign
 * in the registry and sends it through its channel's provider.
 *
 * main() parses the command line, loads the config, and runs the verb;
 * the logic lives in consumer.c (wire a verb by setting its run_cb below).
 */
#include <stddef.h>

#include "cli.h"
#include "config.h"
#include "consumer.h"

static const struct cli_verb verbs[] = {
    {"run", NULL, "daemon: consume and send campaigns until SIGTERM",
     consumer_run_cb},
};

static const struct cli_program program = {
    .name = "sendonce-consumer",
    .summary =
        "Consumes campaign-due triggers, claims each campaign in the\n"
        "registry and sends it once.",
    .verbs = verbs,
    .n_verbs = sizeof(verbs) / sizeof(verbs[0]),
};

int main(int argc, char **argv)
{
  return cli_main(&program, argc, argv);
}
