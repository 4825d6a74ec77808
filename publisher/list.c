/* list.c - the registry's campaigns, at a glance or as JSON. */
#include "list.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "publisher.h"

#define PROG "sendonce-publisher"
#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 100000
#define CELL 160      /* bytes per table cell */
#define ERROR_COLS 60 /* last_error is cut to this many bytes */

enum col {
  COL_ID,
  COL_STATE,
  COL_DUE,
  COL_CHANNEL,
  COL_PROGRESS,
  COL_LEASE,
  COL_ERROR,
  N_COLS
};

static const char *const headers[N_COLS] = {
    "CAMPAIGN",   "STATE",         "SCHEDULED_AT", "CHANNEL",
    "SENT/TOTAL", "OWNER (LEASE)", "LAST_ERROR"};

/* "2026-11-27 09:00:00Z": seconds are enough for a person. */
static void fmt_time(int64_t ms, char *buf, size_t len)
{
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&s, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
    snprintf(buf, len, "?");
}

static void fmt_lease(const struct registry_campaign *c, char *buf, size_t len)
{
  if (!c->owner || !*c->owner) {
    snprintf(buf, len, "-");
    return;
  }
  int64_t left = c->lease_until_ms - c->registry_now_ms;
  if (c->lease_until_ms == 0)
    snprintf(buf, len, "%s (no lease)", c->owner);
  else if (left > 0)
    snprintf(buf, len, "%s (%llds left)", c->owner,
             (long long)((left + 999) / 1000));
  else
    snprintf(buf, len, "%s (expired %llds ago)", c->owner,
             (long long)(-left / 1000));
}

/* One row's cells; control characters in stored text become '?' so a
 * hostile campaign cannot paint the operator's terminal. */
static void row_cells(const struct registry_campaign *c,
                      char cells[N_COLS][CELL])
{
  snprintf(cells[COL_ID], CELL, "%s", c->campaign_id);
  snprintf(cells[COL_STATE], CELL, "%s%s", campaign_state_name(c->state),
           c->paused ? " (paused)" : "");
  fmt_time(c->scheduled_at_ms, cells[COL_DUE], CELL);
  snprintf(cells[COL_CHANNEL], CELL, "%s", c->channel ? c->channel : "-");
  if (c->total >= 0)
    snprintf(cells[COL_PROGRESS], CELL, "%lld/%lld", (long long)c->sent,
             (long long)c->total);
  else
    snprintf(cells[COL_PROGRESS], CELL, "%lld/?", (long long)c->sent);
  if (c->rejected > 0) {
    size_t used = strlen(cells[COL_PROGRESS]);
    snprintf(cells[COL_PROGRESS] + used, CELL - used, " (%lld rejected)",
             (long long)c->rejected);
  }
  fmt_lease(c, cells[COL_LEASE], CELL);
  if (c->last_error && *c->last_error) {
    size_t n = strlen(c->last_error);
    snprintf(cells[COL_ERROR], CELL, "%.*s%s", ERROR_COLS, c->last_error,
             n > ERROR_COLS ? "..." : "");
  } else {
    snprintf(cells[COL_ERROR], CELL, "-");
  }
  for (int i = 0; i < N_COLS; i++)
    for (char *s = cells[i]; *s; s++)
      if (iscntrl((unsigned char)*s))
        *s = '?';
}

/* Columns padded to their width; the last one is not padded. */
static void print_row(FILE *out, const char *const row[N_COLS],
                      const size_t width[N_COLS])
{
  for (int i = 0; i + 1 < N_COLS; i++)
    fprintf(out, "%-*s  ", (int)width[i], row[i]);
  fprintf(out, "%s\n", row[N_COLS - 1]);
}

void list_print_table(const struct registry_campaign *campaigns, size_t n,
                      FILE *out)
{
  size_t width[N_COLS];
  char(*cells)[N_COLS][CELL] = calloc(n ? n : 1, sizeof(*cells));
  if (!cells)
    return;
  for (int i = 0; i < N_COLS; i++)
    width[i] = strlen(headers[i]);
  for (size_t r = 0; r < n; r++) {
    row_cells(&campaigns[r], cells[r]);
    for (int i = 0; i < N_COLS; i++) {
      size_t w = strlen(cells[r][i]);
      if (w > width[i])
        width[i] = w;
    }
  }
  print_row(out, headers, width);
  for (size_t r = 0; r < n; r++) {
    const char *row[N_COLS];
    for (int i = 0; i < N_COLS; i++)
      row[i] = cells[r][i];
    print_row(out, row, width);
  }
  if (n == 0)
    fprintf(out, "(no campaigns)\n");
  free(cells);
}

static void put_str(json_object *o, const char *key, const char *v)
{
  json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

static void put_time(json_object *o, const char *key, int64_t ms)
{
  char buf[CLOCK_RFC3339_LEN];
  if (ms > 0 && clock_format_rfc3339(ms, buf, sizeof(buf)) == SO_OK)
    put_str(o, key, buf);
  else
    put_str(o, key, NULL);
}

void list_print_json(const struct registry_campaign *campaigns, size_t n,
                     FILE *out)
{
  json_object *arr = json_object_new_array();
  for (size_t i = 0; arr && i < n; i++) {
    const struct registry_campaign *c = &campaigns[i];
    json_object *o = json_object_new_object();
    if (!o)
      break;
    put_str(o, "campaign_id", c->campaign_id);
    put_str(o, "state", campaign_state_name(c->state));
    json_object_object_add(o, "paused", json_object_new_boolean(c->paused));
    put_time(o, "scheduled_at", c->scheduled_at_ms);
    put_str(o, "channel", c->channel);
    json_object_object_add(o, "total", json_object_new_int64(c->total));
    json_object_object_add(o, "sent", json_object_new_int64(c->sent));
    json_object_object_add(o, "rejected", json_object_new_int64(c->rejected));
    put_str(o, "owner", c->owner);
    json_object_object_add(o, "fence", json_object_new_int64(c->fence));
    put_time(o, "lease_until", c->lease_until_ms);
    json_object_object_add(o, "attempts", json_object_new_int(c->attempts));
    json_object_object_add(o, "republished",
                           json_object_new_int(c->republished));
    put_time(o, "progress_at", c->progress_at_ms);
    put_time(o, "updated_at", c->updated_at_ms);
    put_str(o, "last_error", c->last_error);
    json_object_array_add(arr, o);
  }
  fprintf(out, "%s\n",
          json_object_to_json_string_ext(
              arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(arr);
}

#define LIST_SYNOPSIS "[--state STATE] [--limit N] [--json]"

static int usage(const char *why)
{
  if (why)
    fprintf(stderr, PROG " list: %s\n", why);
  fprintf(stderr, "usage: " PROG " [OPTIONS] list " LIST_SYNOPSIS "\n");
  return CLI_EXIT_USAGE;
}

int list_verb(const struct config *cfg, int argc, char **argv)
{
  static const struct option opts[] = {
      {"state", required_argument, NULL, 's'},
      {"limit", required_argument, NULL, 'n'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int state = -1, c;
  size_t limit = LIST_DEFAULT_LIMIT;
  bool json = false;
  while ((c = getopt_long(argc, argv, "s:n:jh", opts, NULL)) != -1) {
    switch (c) {
      case 's': {
        char up[32];
        enum campaign_state st;
        size_t i = 0;
        for (; optarg[i] && i + 1 < sizeof(up); i++)
          up[i] = (char)toupper((unsigned char)optarg[i]);
        up[i] = '\0';
        if (campaign_state_parse(up, &st) != SO_OK)
          return usage(
              "--state: one of SCHEDULED, PUBLISHED, PROCESSING, "
              "DONE, DEAD");
        state = (int)st;
        break;
      }
      case 'n': {
        char *end = NULL;
        errno = 0;
        long v = strtol(optarg, &end, 10);
        if (errno || end == optarg || *end || v < 1 || v > LIST_MAX_LIMIT)
          return usage("--limit: a number from 1 to 100000");
        limit = (size_t)v;
        break;
      }
      case 'j':
        json = true;
        break;
      case 'h':
        printf("usage: " PROG " [OPTIONS] list " LIST_SYNOPSIS "\n");
        return CLI_EXIT_OK;
      default:
        return usage(NULL);
    }
  }
  if (optind < argc)
    return usage("unexpected argument");

  struct publisher *p = NULL;
  char err[1024] = "";
  if (publisher_open(cfg, PUBLISHER_ONE_SHOT, &p, err, sizeof(err)) != SO_OK) {
    fprintf(stderr, PROG " list: registry: %s\n", err);
    return CLI_EXIT_FAILURE;
  }
  struct registry_campaign *list = NULL;
  size_t n = 0;
  int status = CLI_EXIT_OK;
  if (registry_list(publisher_registry(p), state, limit, &list, &n) != SO_OK) {
    fprintf(stderr, PROG " list: registry: %s\n",
            registry_errmsg(publisher_registry(p)));
    status = CLI_EXIT_FAILURE;
  } else if (json) {
    list_print_json(list, n, stdout);
  } else {
    list_print_table(list, n, stdout);
  }
  registry_campaigns_free(list, n);
  publisher_close(p);
  return status;
}
