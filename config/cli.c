/* cli.c - the command line the three programs share. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

enum {
  OPT_LOG_LEVEL = 256,
  OPT_LOG_FORMAT,
  OPT_PRINT_CONFIG,
};

static const struct option long_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"config", required_argument, NULL, 'c'},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
    {NULL, 0, NULL, 0},
};

void cli_usage(const struct cli_program *prog, FILE *out)
{
  bool missing = false;

  fprintf(out, "Usage: %s [OPTIONS] VERB [VERB OPTIONS] [ARGS]\n\n%s\n\n",
          prog->name, prog->summary);
  fputs("Verbs:\n", out);
  for (size_t i = 0; i < prog->n_verbs; i++) {
    const struct cli_verb *v = &prog->verbs[i];
    char head[64];
    snprintf(head, sizeof(head), "%s%s%s", v->name, v->synopsis ? " " : "",
             v->synopsis ? v->synopsis : "");
    fprintf(out, "%c %-24s %s\n", v->run_cb ? ' ' : '*', head, v->summary);
    missing = missing || !v->run_cb;
  }
  if (missing)
    fputs("  (* not available in this build)\n", out);
  fprintf(out,
          "\nOptions:\n"
          "  -c, --config FILE        configuration file; default: "
          "$SENDONCE_CONFIG,\n"
          "                           else ./sendonce.conf, else\n"
          "                           %s/sendonce/sendonce.conf\n"
          "      --log-level LEVEL    error|warn|info|debug (over log.level)\n"
          "      --log-format FORMAT  kv|json (over log.format)\n"
          "      --print-config       print the effective configuration "
          "(secrets\n"
          "                           redacted) and exit\n"
          "  -h, --help               print this help and exit\n"
          "  -V, --version            print the version and exit\n"
          "\n"
          "Every configuration key can also be set by an environment "
          "variable\n"
          "SENDONCE_<SECTION>_<KEY>, e.g. SENDONCE_BROKER_URI. Secrets come "
          "from\n"
          "the environment or *_file keys, never from the command line.\n"
          "\n"
          "Exit status: 0 success, 1 failure, 2 usage or configuration "
          "error.\n",
          SENDONCE_SYSCONFDIR);
}

static const struct cli_verb *verb_find(const struct cli_program *prog,
                                        const char *name)
{
  for (size_t i = 0; i < prog->n_verbs; i++) {
    if (strcmp(prog->verbs[i].name, name) == 0)
      return &prog->verbs[i];
  }
  return NULL;
}

/* verb_check: is `name` a verb this build can run? Says why not. */
static bool verb_check(const struct cli_program *prog, const char *name)
{
  const struct cli_verb *v = verb_find(prog, name);
  if (!v) {
    fprintf(stderr, "%s: unknown verb '%s' (try '%s --help')\n", prog->name,
            name, prog->name);
    return false;
  }
  if (!v->run_cb) {
    fprintf(stderr, "%s: verb '%s' is not available in this build\n",
            prog->name, name);
    return false;
  }
  return true;
}

/* common_option: if argv[i] is a common option that takes a value
 * (--config, -c, --log-level, --log-format, as "--opt VALUE" or
 * "--opt=VALUE") or --print-config, store it and return how many argv
 * entries it used (1 or 2); 0 if it is not a common option; -1 if its
 * value is missing or bad (message printed). */
static int common_option(const struct cli_program *prog, char **argv, int i,
                         int argc, struct cli_options *opt)
{
  static const struct {
    const char *name;
    int id;
  } valued[] = {{"--config", 'c'},
                {"-c", 'c'},
                {"--log-level", OPT_LOG_LEVEL},
                {"--log-format", OPT_LOG_FORMAT}};
  const char *arg = argv[i];
  if (strcmp(arg, "--print-config") == 0) {
    opt->print_config = true;
    return 1;
  }
  for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
    size_t len = strlen(valued[k].name);
    const char *value = NULL;
    int used = 0;
    if (strcmp(arg, valued[k].name) == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", prog->name, arg);
        return -1;
      }
      value = argv[i + 1];
      used = 2;
    } else if (len > 2 && strncmp(arg, valued[k].name, len) == 0 &&
               arg[len] == '=') {
      value = arg + len + 1;
      used = 1;
    } else {
      continue;
    }
    enum log_level level;
    enum log_format format;
    switch (valued[k].id) {
      case 'c':
        opt->config_path = value;
        break;
      case OPT_LOG_LEVEL:
        if (log_level_parse(value, &level) < 0) {
          fprintf(stderr, "%s: --log-level: must be error|warn|info|debug\n",
                  prog->name);
          return -1;
        }
        opt->log_level = value;
        break;
      default:
        if (log_format_parse(value, &format) < 0) {
          fprintf(stderr, "%s: --log-format: must be kv|json\n", prog->name);
          return -1;
        }
        opt->log_format = value;
        break;
    }
    return used;
  }
  return 0;
}

/* take_common_after_verb: operators write "sendonce-consumer run --config
 * FILE" as often as "--config FILE run"; accept the common options after
 * the verb too, and take them out of argv (shifting the rest, NULL
 * included) so the verb's own parser never sees them. Stops at "--". */
static bool take_common_after_verb(const struct cli_program *prog, char **argv,
                                   struct cli_options *opt, int *exit_status)
{
  int argc = opt->argc;
  int i = opt->verb_index + 1;
  while (i < argc && strcmp(argv[i], "--") != 0) {
    int used = common_option(prog, argv, i, argc, opt);
    if (used < 0) {
      *exit_status = CLI_EXIT_USAGE;
      return false;
    }
    if (used == 0) {
      i++;
      continue;
    }
    memmove(&argv[i], &argv[i + used],
            (size_t)(argc - i - used + 1) * sizeof(argv[0]));
    argc -= used;
  }
  opt->argc = argc;
  return true;
}

bool cli_parse(const struct cli_program *prog, int argc, char **argv,
               struct cli_options *opt, int *exit_status)
{
  int c;

  memset(opt, 0, sizeof(*opt));
  *exit_status = CLI_EXIT_OK;
  /* "+": stop at the first non-option, the verb; its options are its own. */
  optind = 1;
  while ((c = getopt_long(argc, argv, "+hVc:", long_options, NULL)) != -1) {
    switch (c) {
      case 'h':
        cli_usage(prog, stdout);
        return false;
      case 'V':
        printf("%s %s\n", prog->name, SENDONCE_VERSION);
        return false;
      case 'c':
        opt->config_path = optarg;
        break;
      case OPT_LOG_LEVEL: {
        enum log_level level;
        if (log_level_parse(optarg, &level) < 0) {
          fprintf(stderr, "%s: --log-level: must be error|warn|info|debug\n",
                  prog->name);
          *exit_status = CLI_EXIT_USAGE;
          return false;
        }
        opt->log_level = optarg;
        break;
      }
      case OPT_LOG_FORMAT: {
        enum log_format format;
        if (log_format_parse(optarg, &format) < 0) {
          fprintf(stderr, "%s: --log-format: must be kv|json\n", prog->name);
          *exit_status = CLI_EXIT_USAGE;
          return false;
        }
        opt->log_format = optarg;
        break;
      }
      case OPT_PRINT_CONFIG:
        opt->print_config = true;
        break;
      default:
        /* getopt_long has said what was wrong. */
        fprintf(stderr, "Try '%s --help'.\n", prog->name);
        *exit_status = CLI_EXIT_USAGE;
        return false;
    }
  }
  opt->verb_index = optind;
  opt->argc = argc;
  if (optind < argc && !take_common_after_verb(prog, argv, opt, exit_status))
    return false;
  if (opt->print_config)
    return true;
  if (optind >= argc) {
    fprintf(stderr, "%s: missing verb (try '%s --help')\n", prog->name,
            prog->name);
    *exit_status = CLI_EXIT_USAGE;
    return false;
  }
  if (!verb_check(prog, argv[optind])) {
    *exit_status = CLI_EXIT_USAGE;
    return false;
  }
  return true;
}

bool cli_load_config(const struct cli_program *prog,
                     const struct cli_options *opt, struct config *cfg,
                     int *exit_status)
{
  char err[1024];

  int rc = config_load(cfg, opt->config_path, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", prog->name, err[0] ? err : so_strerror(rc));
    *exit_status = CONFIG_EXIT_BAD;
    return false;
  }
  /* Both were checked by cli_parse(); the command line wins. */
  if (opt->log_level && log_level_parse(opt->log_level, &cfg->log.level) < 0)
    log_warn("cli: ignored --log-level value=%s", opt->log_level);
  if (opt->log_format &&
      log_format_parse(opt->log_format, &cfg->log.format) < 0)
    log_warn("cli: ignored --log-format value=%s", opt->log_format);
  log_set_level(cfg->log.level);
  log_set_format(cfg->log.format);
  if (opt->print_config) {
    config_print(cfg, stdout);
    *exit_status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    return false;
  }
  *exit_status = CLI_EXIT_OK;
  return true;
}

int cli_run_verb(const struct cli_program *prog, const struct cli_options *opt,
                 const struct config *cfg, int argc, char **argv)
{
  if (opt->verb_index >= argc) {
    fprintf(stderr, "%s: missing verb (try '%s --help')\n", prog->name,
            prog->name);
    return CLI_EXIT_USAGE;
  }
  const char *name = argv[opt->verb_index];
  if (!verb_check(prog, name))
    return CLI_EXIT_USAGE;
  /* The verb parses its own options from a fresh getopt state. */
  optind = 1;
  /* Common options found after the verb were taken out of argv. */
  if (opt->argc > 0 && opt->argc < argc)
    argc = opt->argc;
  return verb_find(prog, name)
      ->run_cb(cfg, argc - opt->verb_index, argv + opt->verb_index);
}

int cli_main(const struct cli_program *prog, int argc, char **argv)
{
  struct cli_options opt;
  struct config cfg;
  int status;

  if (!cli_parse(prog, argc, argv, &opt, &status))
    return status;
  if (!cli_load_config(prog, &opt, &cfg, &status)) {
    config_free(&cfg);
    return status;
  }
  status = cli_run_verb(prog, &opt, &cfg, argc, argv);
  config_free(&cfg);
  return status;
}
