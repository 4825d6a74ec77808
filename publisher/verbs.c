/* verbs.c - schedule, publish, cancel, pause, resume and run. */
#include "verbs.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "config_reload.h"
#include "log.h"
#include "msg.h"
#include "publisher.h"
#include "registry.h"
#include "schedule.h"

#define PROG "sendonce-publisher"
#define ERR_LEN 1024

static int usage(const char *verb, const char *synopsis, const char *why)
{
  if (why)
    fprintf(stderr, PROG " %s: %s\n", verb, why);
  fprintf(stderr, "usage: " PROG " [OPTIONS] %s %s\n", verb, synopsis);
  return CLI_EXIT_USAGE;
}

static int open_publisher(const struct config *cfg, const char *verb,
                          enum publisher_mode mode, struct publisher **p)
{
  char err[ERR_LEN] = "";
  int rc = publisher_open(cfg, mode, p, err, sizeof(err));
  if (rc == SO_OK)
    return CLI_EXIT_OK;
  fprintf(stderr, PROG " %s: registry: %s\n", verb, err);
  return CLI_EXIT_FAILURE;
}

/* ---- schedule ------------------------------------------------------- */

#define SCHEDULE_SYNOPSIS                                    \
  "--id ID --at now|RFC3339 --channel NAME --content FILE\n" \
  "         (--recipients FILE | --recipients-url URL) [--not-after RFC3339]"

enum {
  OPT_ID = 1,
  OPT_AT,
  OPT_CHANNEL,
  OPT_CONTENT,
  OPT_RECIPIENTS,
  OPT_RECIPIENTS_URL,
  OPT_NOT_AFTER,
};

static int parse_schedule_args(int argc, char **argv, struct schedule_input *in)
{
  static const struct option opts[] = {
      {"id", required_argument, NULL, OPT_ID},
      {"at", required_argument, NULL, OPT_AT},
      {"channel", required_argument, NULL, OPT_CHANNEL},
      {"content", required_argument, NULL, OPT_CONTENT},
      {"recipients", required_argument, NULL, OPT_RECIPIENTS},
      {"recipients-url", required_argument, NULL, OPT_RECIPIENTS_URL},
      {"not-after", required_argument, NULL, OPT_NOT_AFTER},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *at = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case OPT_ID:
        in->campaign_id = optarg;
        break;
      case OPT_AT:
        at = optarg;
        break;
      case OPT_CHANNEL:
        in->channel = optarg;
        break;
      case OPT_CONTENT:
        in->content_path = optarg;
        break;
      case OPT_RECIPIENTS:
        in->recipients_path = optarg;
        break;
      case OPT_RECIPIENTS_URL:
        in->recipients_url = optarg;
        break;
      case OPT_NOT_AFTER:
        if (clock_parse_rfc3339(optarg, &in->not_after_ms) != SO_OK)
          return usage("schedule", SCHEDULE_SYNOPSIS,
                       "--not-after: not an RFC 3339 date-time with offset "
                       "(e.g. 2026-11-27T12:00:00Z)");
        in->has_not_after = true;
        break;
      case 'h':
        printf("usage: " PROG " [OPTIONS] schedule " SCHEDULE_SYNOPSIS "\n");
        return -1;
      default:
        return usage("schedule", SCHEDULE_SYNOPSIS, NULL);
    }
  }
  if (optind < argc)
    return usage("schedule", SCHEDULE_SYNOPSIS, "unexpected argument");
  if (!in->campaign_id || !at || !in->channel || !in->content_path)
    return usage("schedule", SCHEDULE_SYNOPSIS,
                 "--id, --at, --channel and --content are required");
  if (!in->recipients_path == !in->recipients_url)
    return usage("schedule", SCHEDULE_SYNOPSIS,
                 "give exactly one of --recipients and --recipients-url");
  if (schedule_parse_time(at, &in->scheduled_at_ms) != SO_OK)
    return usage("schedule", SCHEDULE_SYNOPSIS,
                 "--at: \"now\" or an RFC 3339 date-time with offset "
                 "(e.g. 2026-11-27T09:00:00Z)");
  if (in->has_not_after && in->not_after_ms <= clock_now_ms()) {
    fprintf(stderr, PROG
            " schedule: --not-after is already past: the campaign "
            "would expire before it starts\n");
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

int verbs_schedule(const struct config *cfg, int argc, char **argv)
{
  struct schedule_input in = {0};
  struct schedule_result res = {0};
  struct publisher *p = NULL;
  char err[ERR_LEN] = "";
  int status = parse_schedule_args(argc, argv, &in);
  if (status != CLI_EXIT_OK)
    return status < 0 ? CLI_EXIT_OK : status;

  int rc = schedule_build(&in, cfg, &res, err, sizeof(err));
  if (rc != SO_OK) {
    fprintf(stderr, PROG " schedule: %s\n", err);
    return rc == SO_ERR_NOMEM ? CLI_EXIT_FAILURE : CLI_EXIT_USAGE;
  }
  if ((status = open_publisher(cfg, "schedule", PUBLISHER_ONE_SHOT, &p)) !=
      CLI_EXIT_OK)
    goto done;
  struct registry_new_campaign nc = {
      .campaign_id = in.campaign_id,
      .scheduled_at_ms = in.scheduled_at_ms,
      .channel = in.channel,
      .payload = res.payload,
  };
  bool created = false;
  rc = registry_register(publisher_registry(p), &nc, CAMPAIGN_SCHEDULED,
                         &created);
  if (rc != SO_OK) {
    fprintf(stderr, PROG " schedule: registry: %s\n",
            registry_errmsg(publisher_registry(p)));
    status = CLI_EXIT_FAILURE;
    goto done;
  }
  if (!created) {
    struct registry_campaign c = {0};
    const char *state = "unknown";
    if (registry_get(publisher_registry(p), in.campaign_id, &c) == SO_OK)
      state = campaign_state_name(c.state);
    fprintf(stderr,
            PROG
            " schedule: campaign %s already exists (state %s); "
            "left unchanged (a campaign id is used once)\n",
            in.campaign_id, state);
    registry_campaign_free(&c);
    status = CLI_EXIT_FAILURE;
    goto done;
  }
  char due[CLOCK_RFC3339_LEN] = "";
  if (clock_format_rfc3339(in.scheduled_at_ms, due, sizeof(due)) != SO_OK)
    snprintf(due, sizeof(due), "?");
  if (in.recipients_url)
    printf("scheduled %s at %s on %s, recipients from %s (%zu bytes)\n",
           in.campaign_id, due, in.channel, in.recipients_url, res.payload_len);
  else
    printf("scheduled %s at %s on %s, %zu recipients inline (%zu bytes)\n",
           in.campaign_id, due, in.channel, res.n_recipients, res.payload_len);
  log_info("publisher: scheduled campaign=%s scheduled_at=%s channel=%s",
           in.campaign_id, due, in.channel);
done:
  publisher_close(p);
  schedule_result_cleanup(&res);
  return status;
}

/* ---- verbs on one campaign -------------------------------------------- */

/* The one CAMPAIGN_ID argument of publish/cancel/pause/resume. */
static const char *one_id(const char *verb, int argc, char **argv, int *status)
{
  char err[MSG_ERR_LEN];
  *status = CLI_EXIT_OK;
  if (argc == 2 && strcmp(argv[1], "--help") == 0) {
    printf("usage: " PROG " [OPTIONS] %s CAMPAIGN_ID\n", verb);
    return NULL;
  }
  if (argc != 2) {
    *status = usage(verb, "CAMPAIGN_ID", "needs exactly one campaign id");
    return NULL;
  }
  if (msg_validate_campaign_id(argv[1], err, sizeof(err)) != SO_OK) {
    fprintf(stderr, PROG " %s: %s\n", verb, err);
    *status = CLI_EXIT_USAGE;
    return NULL;
  }
  return argv[1];
}

/* registry_get with the usual messages; CLI_EXIT_OK when found. */
static int get_campaign(struct publisher *p, const char *verb, const char *id,
                        struct registry_campaign *c)
{
  int rc = registry_get(publisher_registry(p), id, c);
  if (rc == SO_OK)
    return CLI_EXIT_OK;
  if (rc == SO_ERR_NOTFOUND)
    fprintf(stderr, PROG " %s: no campaign %s in the registry\n", verb, id);
  else
    fprintf(stderr, PROG " %s: registry: %s\n", verb,
            registry_errmsg(publisher_registry(p)));
  return CLI_EXIT_FAILURE;
}

int verbs_publish(const struct config *cfg, int argc, char **argv)
{
  struct publisher *p = NULL;
  struct registry_campaign c = {0};
  char err[ERR_LEN] = "";
  int status;
  const char *id = one_id("publish", argc, argv, &status);
  if (!id)
    return status;
  if ((status = open_publisher(cfg, "publish", PUBLISHER_ONE_SHOT, &p)) !=
      CLI_EXIT_OK)
    return status;
  if ((status = get_campaign(p, "publish", id, &c)) != CLI_EXIT_OK)
    goto done;
  if (c.state != CAMPAIGN_SCHEDULED) {
    bool gone = c.state == CAMPAIGN_DEAD;
    if (gone)
      fprintf(stderr,
              PROG
              " publish: campaign %s is already DEAD (%s); nothing "
              "published\n",
              id, c.last_error ? c.last_error : "no reason recorded");
    else
      printf("publish: campaign %s is already %s; nothing published\n", id,
             campaign_state_name(c.state));
    status = gone ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
    goto done;
  }
  if (c.paused) {
    fprintf(stderr, PROG " publish: campaign %s is paused; resume it first\n",
            id);
    status = CLI_EXIT_FAILURE;
    goto done;
  }
  /* Connect before taking the publish lease: a broker that cannot be
   * reached then leaves no lease behind to delay the daemons. */
  int rc = publisher_connect(p, err, sizeof(err));
  if (rc != SO_OK) {
    fprintf(stderr,
            PROG " publish: %s not published (%s): %s; it stays SCHEDULED\n",
            id, so_strerror(rc), err);
    status = CLI_EXIT_FAILURE;
    goto done;
  }
  switch (publisher_publish(p, &c, &rc, err, sizeof(err))) {
    case PUBLISHER_PUBLISHED:
      printf("published %s\n", id);
      status = CLI_EXIT_OK;
      break;
    case PUBLISHER_UNMARKED:
      fprintf(stderr,
              PROG
              " publish: %s: the trigger is out, but the registry "
              "still says SCHEDULED: %s\n",
              id, err);
      status = CLI_EXIT_FAILURE;
      break;
    case PUBLISHER_NOT_DUE:
      fprintf(stderr, PROG " publish: %s\n", err);
      status = CLI_EXIT_FAILURE;
      break;
    case PUBLISHER_FAILED:
      fprintf(stderr,
              PROG
              " publish: %s not published (%s): %s; it stays "
              "SCHEDULED\n",
              id, so_strerror(rc), err);
      status = CLI_EXIT_FAILURE;
      break;
  }
done:
  registry_campaign_free(&c);
  publisher_close(p);
  return status;
}

enum op { OP_CANCEL, OP_PAUSE, OP_RESUME };

static int operator_verb(const struct config *cfg, int argc, char **argv,
                         enum op op)
{
  static const char *const names[] = {"cancel", "pause", "resume"};
  const char *verb = names[op];
  struct publisher *p = NULL;
  struct registry_campaign c = {0};
  char err[ERR_LEN] = "";
  int status;
  const char *id = one_id(verb, argc, argv, &status);
  if (!id)
    return status;
  if ((status = open_publisher(cfg, verb, PUBLISHER_ONE_SHOT, &p)) !=
      CLI_EXIT_OK)
    return status;
  struct registry *reg = publisher_registry(p);
  int rc = op == OP_CANCEL  ? registry_cancel(reg, id)
           : op == OP_PAUSE ? registry_pause(reg, id)
                            : registry_resume(reg, id);
  if (rc == SO_ERR_NOTFOUND || rc == SO_ERR_CONFLICT) {
    if (rc == SO_ERR_NOTFOUND)
      fprintf(stderr, PROG " %s: no campaign %s in the registry\n", verb, id);
    else if (get_campaign(p, verb, id, &c) == CLI_EXIT_OK)
      fprintf(stderr, PROG " %s: campaign %s is already %s%s%s\n", verb, id,
              campaign_state_name(c.state), c.last_error ? ": " : "",
              c.last_error ? c.last_error : "");
    status = CLI_EXIT_FAILURE;
    goto done;
  }
  if (rc != SO_OK) {
    fprintf(stderr, PROG " %s: registry: %s\n", verb, registry_errmsg(reg));
    status = CLI_EXIT_FAILURE;
    goto done;
  }
  if ((status = get_campaign(p, verb, id, &c)) != CLI_EXIT_OK)
    goto done;
  log_info("publisher: %s campaign=%s state=%s", verb, id,
           campaign_state_name(c.state));
  if (op != OP_RESUME ||
      (c.state != CAMPAIGN_PUBLISHED && c.state != CAMPAIGN_PROCESSING)) {
    printf("%s %s: state %s%s\n",
           op == OP_CANCEL  ? "cancelled"
           : op == OP_PAUSE ? "paused"
                            : "resumed",
           id, campaign_state_name(c.state),
           op == OP_PAUSE && c.state != CAMPAIGN_SCHEDULED
               ? " (workers pause it between batches)"
               : "");
    goto done;
  }
  /* Workers drop the triggers of a paused campaign (claim: PAUSED), so a
   * resumed one that was already out needs a fresh trigger; if a worker
   * still holds it, the claim makes this one a harmless duplicate. */
  if ((rc = publisher_trigger(p, &c, err, sizeof(err))) != SO_OK) {
    fprintf(stderr,
            PROG
            " resume: %s is resumed but its trigger was not "
            "published (%s): %s; run resume again\n",
            id, so_strerror(rc), err);
    status = CLI_EXIT_FAILURE;
    goto done;
  }
  printf("resumed %s: state %s, trigger published\n", id,
         campaign_state_name(c.state));
done:
  registry_campaign_free(&c);
  publisher_close(p);
  return status;
}

int verbs_cancel(const struct config *cfg, int argc, char **argv)
{
  return operator_verb(cfg, argc, argv, OP_CANCEL);
}

int verbs_pause(const struct config *cfg, int argc, char **argv)
{
  return operator_verb(cfg, argc, argv, OP_PAUSE);
}

int verbs_resume(const struct config *cfg, int argc, char **argv)
{
  return operator_verb(cfg, argc, argv, OP_RESUME);
}

/* ---- run -------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
  (void)sig;
  stop_requested = 1;
}

/* SIGHUP: noted by the handler, acted on by the loop (reload_tick). */
static volatile sig_atomic_t reload_requested;

static void on_hup(int sig)
{
  (void)sig;
  reload_requested = 1;
}

/* reload_tick: the safe settings of the file into *arg, a copy of the
 * config (the publisher itself uses none of them but the log settings,
 * applied at once); a bad file keeps the old config whole. */
static void reload_tick(void *arg)
{
  struct config *live = arg;
  if (!reload_requested)
    return;
  reload_requested = 0;
  char err[ERR_LEN] = "";
  log_info("publisher: SIGHUP: reloading the config");
  int rc = config_reload_safe(live, NULL, NULL, 0, err, sizeof(err));
  if (rc != SO_OK)
    log_error("publisher: reload refused, kept the old config: %s status=%s",
              err, so_strerror(rc));
}

int verbs_run(const struct config *cfg, int argc, char **argv)
{
  struct publisher *p = NULL;
  char err[ERR_LEN] = "";
  if (argc > 1) {
    if (strcmp(argv[1], "--help") == 0) {
      printf("usage: " PROG " [OPTIONS] run\n");
      return CLI_EXIT_OK;
    }
    if (strncmp(argv[1], "--", 2) == 0)
      return usage("run", "",
                   "takes no options; common options such as --config go "
                   "before the verb: " PROG " --config FILE run");
    return usage("run", "", "takes no arguments");
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  sa.sa_handler = on_hup;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGHUP, &sa, NULL);

  int status = open_publisher(cfg, "run", PUBLISHER_DAEMON, &p);
  if (status != CLI_EXIT_OK)
    return status;
  /* A shallow copy: the reload writes only its int fields. */
  struct config live = *cfg;
  publisher_on_tick(p, reload_tick, &live);
  int rc = publisher_run(p, &stop_requested, err, sizeof(err));
  if (rc != SO_OK) {
    fprintf(stderr, PROG " run: %s\n", err);
    status = rc == SO_ERR_CONFLICT || rc == SO_ERR_INVALID ? CLI_EXIT_CONFIG
                                                           : CLI_EXIT_FAILURE;
  }
  publisher_close(p);
  return status;
}
