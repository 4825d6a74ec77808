/* sendonce-watchdog: reconciles the registry with the broker and the DLQ;
 * reports every overdue campaign with its reason and republishes only the
 * provably orphaned.
 *
 * main() parses the command line, loads the config, and runs the verb;
 * the logic lives in watchdog.c (passes), verdict.c (the decision table)
 * and verbs.c (options, the loop, the printed report).
 */
#include <stddef.h>

#include "cli.h"
#include "config.h"
#include "verbs.h"

static const struct cli_verb verbs[] = {
    {"run", "[--dry-run]", "daemon: a reconciliation pass every interval",
     verbs_run},
    {"check", "[--dry-run] [--json]",
     "one pass, as a table; 1: needs attention, 2: error", verbs_check},
    {"status", "[--json] CAMPAIGN_ID", "everything known about one campaign",
     verbs_status},
    {"replay", "[--dry-run] CAMPAIGN_ID",
     "a DEAD campaign back from the DLQ, PUBLISHED", verbs_replay},
};

static const struct cli_program program = {
    .name = "sendonce-watchdog",
    .summary =
        "Reconciles registry, broker and DLQ; republishes only the\n"
        "campaigns that are provably orphaned.",
    .verbs = verbs,
    .n_verbs = sizeof(verbs) / sizeof(verbs[0]),
};

int main(int argc, char **argv)
{
  return cli_main(&program, argc, argv);
}
