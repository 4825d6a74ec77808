/* list.h - `sendonce-publisher list`: the registry's campaigns as a table
 * for people or as JSON for machines.
 */
#ifndef SENDONCE_LIST_H
#define SENDONCE_LIST_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "registry.h"

/* list [--state STATE] [--limit N] [--json] (a cli_verb_cb). */
int list_verb(const struct config *cfg, int argc, char **argv);

/* list_print_table / list_print_json: write campaigns[0..n) to out. */
void list_print_table(const struct registry_campaign *campaigns, size_t n,
                      FILE *out);
void list_print_json(const struct registry_campaign *campaigns, size_t n,
                     FILE *out);

#endif /* SENDONCE_LIST_H */
