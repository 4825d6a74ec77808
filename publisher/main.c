/* sendonce-publisher: registers campaigns and publishes each one's
 * campaign-due trigger when it falls due.
 *
 * main() parses the command line, loads the config, and runs the verb;
 * the verbs' logic lives in publisher.c (wire a verb by setting its run_cb
 * below).
 */
#include <stddef.h>

#include "cli.h"
#include "config.h"
#include "list.h"
#include "verbs.h"

static const struct cli_verb verbs[] = {
    {"schedule", "--id ID --at TIME ...",
     "register a campaign to publish when due", verbs_schedule},
    {"publish", "CAMPAIGN_ID", "publish a registered campaign's trigger now",
     verbs_publish},
    {"list", "[--state S] [--json]", "list campaigns in the registry",
     list_verb},
    {"cancel", "CAMPAIGN_ID", "cancel a campaign: it will not be sent",
     verbs_cancel},
    {"pause", "CAMPAIGN_ID", "pause a campaign (between batches)", verbs_pause},
    {"resume", "CAMPAIGN_ID", "resume a paused campaign", verbs_resume},
    {"run", NULL, "daemon: publish campaigns as they fall due", verbs_run},
};

static const struct cli_program program = {
    .name = "sendonce-publisher",
    .summary =
        "Registers campaigns and publishes each one's trigger, once,\n"
        "when it falls due.",
    .verbs = verbs,
    .n_verbs = sizeof(verbs) / sizeof(verbs[0]),
};

int main(int argc, char **argv)
{
  return cli_main(&program, argc, argv);
}
