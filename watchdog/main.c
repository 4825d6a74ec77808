/* sendonce-watchdog: reconciles the registry with the broker and the DLQ;
 * reports every overdue campaign with its reason and republishes only the
 * provably orphaned.
 *
 * main() parses the command line, loads the config, and runs the verb;
 * the logic lives in watchdog.c (wire a verb by setting its run_cb below).
 */
#include <stddef.h>

#include "cli.h"
#include "config.h"

static const struct cli_verb verbs[] = {
    {"run", "[--dry-run]", "daemon: a reconciliation pass every interval",
     NULL},
    {"check", "[--dry-run]", "one pass, then exit; non-zero on an alert", NULL},
    {"status", NULL, "print each overdue campaign and its verdict", NULL},
    {"replay", "CAMPAIGN_ID", "send a dead campaign's trigger back from DLQ",
     NULL},
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
  struct cli_options opt;
  struct config cfg;
  int status;

  if (!cli_parse(&program, argc, argv, &opt, &status))
    return status;
  if (!cli_load_config(&program, &opt, &cfg, &status)) {
    config_free(&cfg);
    return status;
  }
  status = cli_run_verb(&program, &opt, &cfg, argc, argv);
  config_free(&cfg);
  return status;
}
