/* cli.h - the command line the three programs share.
 *
 *   sendonce-<program> [COMMON OPTIONS] VERB [VERB OPTIONS] [ARGS]
 *
 * Common options: --help, --version, --config FILE, --log-level LEVEL,
 * --log-format kv|json, --print-config. They may come before the verb, and
 * (except --help and --version, which the verb answers) after it too:
 * cli_parse() takes those out of argv, so everything the verb sees is its
 * own. A program's main() is
 * `return cli_main(&program, argc, argv);`: cli_parse(), cli_load_config(),
 * cli_run_verb() and config_free() in turn.
 *
 * Nothing here exits: each function says what main() should return.
 */
#ifndef SENDONCE_CLI_H
#define SENDONCE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* Exit statuses shared by the programs. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1 /* the verb ran and failed */
#define CLI_EXIT_USAGE 2   /* bad option, unknown or missing verb */
#define CLI_EXIT_CONFIG CONFIG_EXIT_BAD /* bad configuration (also 2) */

/* A verb's entry point. argv[0] is the verb itself and argv[argc] is NULL,
 * so the verb can parse its own options with getopt_long (cli_run_verb()
 * resets optind to 1 before the call). cfg is loaded, validated and
 * outlives the call. Returns a process exit status (CLI_EXIT_*, or a
 * verb-specific one its help documents). */
typedef int (*cli_verb_cb)(const struct config *cfg, int argc, char **argv);

struct cli_verb {
  const char *name;     /* "run" */
  const char *synopsis; /* arguments for --help, e.g. "[--dry-run]" */
  const char *summary;  /* one line for --help */
  cli_verb_cb run_cb;   /* NULL: not available in this build */
};

struct cli_program {
  const char *name;             /* "sendonce-publisher" */
  const char *summary;          /* one line for --help */
  const struct cli_verb *verbs; /* the verbs, in --help order */
  size_t n_verbs;
};

/* What the common options asked for. Strings point into argv. */
struct cli_options {
  const char *config_path; /* --config, or NULL for the search path */
  const char *log_level;   /* --log-level, or NULL for the config's */
  const char *log_format;  /* --log-format, or NULL for the config's */
  bool print_config;       /* --print-config: print and exit */
  int verb_index;          /* argv index of the verb; argc when none */
  int argc;                /* argc once the common options given after the
                              verb were taken out of argv */
};

/* cli_parse: parse the common options (getopt_long up to the verb, then
 * the common options after it, which it removes from argv). Returns true to
 * go on. Returns false when main()
 * should return *exit_status at once: after --help or --version (0, text
 * on stdout) or a bad option (CLI_EXIT_USAGE, message on stderr). */
bool cli_parse(const struct cli_program *prog, int argc, char **argv,
               struct cli_options *opt, int *exit_status);

/* cli_load_config: config_load() from --config (or the search path), then
 * --log-level/--log-format over the config's log section, then
 * log_set_level()/log_set_format(). Returns true to go on. Returns false
 * when main() should return *exit_status: after a bad configuration
 * (CONFIG_EXIT_BAD, "prog: file:line: key: message" on stderr) or after
 * --print-config (0, config on stdout). *cfg must be released with
 * config_free() either way. */
bool cli_load_config(const struct cli_program *prog,
                     const struct cli_options *opt, struct config *cfg,
                     int *exit_status);

/* cli_run_verb: run the verb named at argv[opt->verb_index]; a missing,
 * unknown or not-built verb is a usage error (message on stderr). Returns
 * the exit status for main(). */
int cli_run_verb(const struct cli_program *prog, const struct cli_options *opt,
                 const struct config *cfg, int argc, char **argv);

/* cli_main: the whole of a program's main(): parse the common options,
 * load the config, run the verb, release the config. Returns the exit
 * status. */
int cli_main(const struct cli_program *prog, int argc, char **argv);

/* cli_usage: print --help text to `out`. */
void cli_usage(const struct cli_program *prog, FILE *out);

#endif /* SENDONCE_CLI_H */
