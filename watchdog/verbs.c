/* verbs.c - run, check, status and replay (see verbs.h): option parsing,
 * the loop, and the report as a table or JSON. */
#include "verbs.h"

#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "config_reload.h"
#include "log.h"
#include "watchdog.h"
#include "wd_metrics.h"

#define EXIT_ATTENTION 1
#define EXIT_ERROR 2

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
  (void)sig;
  stop_flag = 1;
}

/* SIGHUP: noted by the handler, acted on between passes. */
static volatile sig_atomic_t reload_flag;

static void on_hup(int sig)
{
  (void)sig;
  reload_flag = 1;
}

struct verb_opts {
  bool dry_run;
  bool json;
  const char *id;
};

/* Parse [--dry-run] [--json] [ID]; `allowed` lists which apply. */
static int parse(int argc, char **argv, bool allow_json, bool want_id,
                 struct verb_opts *o)
{
  static const struct option longopts[] = {
      {"dry-run", no_argument, NULL, 'n'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  memset(o, 0, sizeof(*o));
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
      case 'n':
        o->dry_run = true;
        break;
      case 'j':
        if (!allow_json)
          goto usage;
        o->json = true;
        break;
      default:
        goto usage;
    }
  }
  if (want_id) {
    if (optind != argc - 1)
      goto usage;
    o->id = argv[optind];
  } else if (optind != argc) {
    goto usage;
  }
  return 0;
usage:
  fprintf(stderr, "sendonce-watchdog %s: usage: %s%s%s\n", argv[0],
          "[--dry-run]", allow_json ? " [--json]" : "",
          want_id ? " CAMPAIGN_ID" : "");
  return -1;
}

static struct watchdog *open_watchdog(const struct config *cfg, bool dry_run,
                                      bool one_shot)
{
  struct watchdog_options wo = {.dry_run = dry_run, .one_shot = one_shot};
  struct watchdog *w = NULL;
  char err[1024] = "";
  int rc = watchdog_open(cfg, &wo, &w, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "sendonce-watchdog: %s\n", err[0] ? err : so_strerror(rc));
    return NULL;
  }
  return w;
}

static void fmt_lease(const struct watchdog_row *row, char *buf, size_t len)
{
  const struct registry_campaign *c = &row->c;
  if (c->state != CAMPAIGN_PROCESSING)
    snprintf(buf, len, "-");
  else if (row->v.lease_age_ms < 0)
    snprintf(buf, len, "%llds left", (long long)(-row->v.lease_age_ms / 1000));
  else
    snprintf(buf, len, "expired %llds",
             (long long)(row->v.lease_age_ms / 1000));
}

static void fmt_progress(const struct registry_campaign *c, char *buf,
                         size_t len)
{
  long long done = (long long)(c->sent + c->rejected);
  if (c->total > 0)
    snprintf(buf, len, "%lld/%lld %lld%%", done, (long long)c->total,
             done * 100 / (long long)c->total);
  else if (c->fence > 0)
    snprintf(buf, len, "%lld/?", done);
  else
    snprintf(buf, len, "-");
}

static void print_table(const struct watchdog_report *r, bool dry_run)
{
  int w = 8;
  for (size_t i = 0; i < r->n; i++) {
    int l = (int)strlen(r->rows[i].c.campaign_id);
    if (l > w)
      w = l > 48 ? 48 : l;
  }
  if (r->n == 0) {
    printf("no overdue campaigns\n");
  } else {
    printf("%-*s  %-10s  %-17s  %-16s  %-12s  %s\n", w, "CAMPAIGN", "STATE",
           "VERDICT", "PROGRESS", "LEASE", "ACTION");
    for (size_t i = 0; i < r->n; i++) {
      const struct watchdog_row *row = &r->rows[i];
      char lease[32], prog[48];
      fmt_lease(row, lease, sizeof(lease));
      fmt_progress(&row->c, prog, sizeof(prog));
      printf("%-*s  %-10s  %-17s  %-16s  %-12s  %s\n", w, row->c.campaign_id,
             campaign_state_name(row->c.state), verdict_kind_label(row->v.kind),
             prog, lease, row->outcome);
      printf("%-*s    %s\n", w, "", row->v.reason);
    }
  }
  if (r->q.known)
    printf("main queue: %lld ready, %lld unacked, %lld consumer(s)",
           (long long)r->q.ready, (long long)r->q.unacked,
           (long long)r->q.consumers);
  else
    printf("main queue: unknown (%s)", r->q.error);
  if (r->q.utilisation >= 0)
    printf(", utilisation %.0f%%", r->q.utilisation * 100);
  printf("; retry queues: %lld ready", (long long)r->q.retry_ready);
  if (r->dlq_known)
    printf("; DLQ: %zu message(s)%s\n", r->dlq_count,
           r->dlq_truncated ? " or more" : "");
  else
    printf("; DLQ: unknown\n");
  if (r->alert_no_consumer)
    printf("ALERT: no consumer on the main queue: nothing will be sent\n");
  if (r->alert_dlq)
    printf(
        "ALERT: the DLQ is not empty (%zu message(s), %zu of campaigns "
        "not listed above): see `status ID`, fix, then `replay ID`\n",
        r->dlq_count, r->dlq_unmatched);
  if (r->alert_broker)
    printf("ALERT: broker facts missing: %s\n",
           r->q.error[0] ? r->q.error
                         : "the DLQ could not be read, or another "
                           "reader (a watchdog?) held its messages");
  printf("%s%s\n", r->attention ? "needs attention" : "healthy",
         dry_run ? " (dry run: nothing was changed)" : "");
}

/* status ID: the registry row, then the one-row table and queue facts. */
static void print_status(const struct watchdog_report *r)
{
  const struct watchdog_row *row = &r->rows[0];
  const struct registry_campaign *c = &row->c;
  char t[CLOCK_RFC3339_LEN] = "?", lease[32], prog[48];
  (void)clock_format_rfc3339(c->scheduled_at_ms, t, sizeof(t));
  fmt_lease(row, lease, sizeof(lease));
  fmt_progress(c, prog, sizeof(prog));
  printf("campaign:     %s\n", c->campaign_id);
  printf("state:        %s%s\n", campaign_state_name(c->state),
         c->paused ? " (paused)" : "");
  printf("scheduled_at: %s\n", t);
  printf("channel:      %s\n", c->channel ? c->channel : "-");
  printf("owner:        %s (fence %lld, lease %s)\n", c->owner ? c->owner : "-",
         (long long)c->fence, lease);
  printf("progress:     %s (%lld sent, %lld rejected)", prog,
         (long long)c->sent, (long long)c->rejected);
  if (row->v.progress_age_ms >= 0)
    printf(", last progress %llds ago",
           (long long)(row->v.progress_age_ms / 1000));
  printf("\nattempts:     %d\nrepublished:  %d\nlast_error:   %s\n",
         c->attempts, c->republished, c->last_error ? c->last_error : "-");
  if (!r->dlq_known)
    printf("in DLQ:       unknown (the DLQ could not be read)\n");
  else if (row->in_dlq)
    printf("in DLQ:       yes: %s\n", row->dlq_reason);
  else
    printf("in DLQ:       no\n");
}

static json_object *jstr(const char *s)
{
  return s ? json_object_new_string(s) : json_object_new_null();
}

static json_object *row_json(const struct watchdog_row *row)
{
  const struct registry_campaign *c = &row->c;
  json_object *o = json_object_new_object();
  json_object_object_add(o, "campaign_id", jstr(c->campaign_id));
  json_object_object_add(o, "state", jstr(campaign_state_name(c->state)));
  json_object_object_add(o, "verdict", jstr(verdict_kind_name(row->v.kind)));
  json_object_object_add(o, "action", jstr(verdict_action_name(row->v.action)));
  json_object_object_add(o, "outcome", jstr(row->outcome));
  json_object_object_add(o, "reason", jstr(row->v.reason));
  json_object_object_add(
      o, "attention", json_object_new_boolean(row->v.attention || row->failed));
  json_object_object_add(o, "fence", json_object_new_int64(c->fence));
  json_object_object_add(o, "owner", jstr(c->owner));
  json_object_object_add(o, "sent", json_object_new_int64(c->sent));
  json_object_object_add(o, "rejected", json_object_new_int64(c->rejected));
  json_object_object_add(o, "total", json_object_new_int64(c->total));
  json_object_object_add(o, "lease_age_ms",
                         json_object_new_int64(row->v.lease_age_ms));
  json_object_object_add(o, "progress_age_ms",
                         json_object_new_int64(row->v.progress_age_ms));
  json_object_object_add(o, "rate_per_s",
                         json_object_new_double(row->v.rate_per_s));
  json_object_object_add(o, "eta_ms", json_object_new_int64(row->v.eta_ms));
  json_object_object_add(o, "republished", json_object_new_int(c->republished));
  json_object_object_add(o, "attempts", json_object_new_int(c->attempts));
  json_object_object_add(o, "paused", json_object_new_boolean(c->paused));
  json_object_object_add(o, "last_error", jstr(c->last_error));
  json_object_object_add(o, "in_dlq", json_object_new_boolean(row->in_dlq));
  json_object_object_add(
      o, "dlq_reason",
      row->in_dlq ? jstr(row->dlq_reason) : json_object_new_null());
  char t[CLOCK_RFC3339_LEN];
  json_object_object_add(
      o, "scheduled_at",
      clock_format_rfc3339(c->scheduled_at_ms, t, sizeof(t)) == SO_OK
          ? jstr(t)
          : json_object_new_null());
  return o;
}

static void print_json(const struct watchdog_report *r, bool dry_run)
{
  json_object *o = json_object_new_object();
  json_object_object_add(o, "healthy", json_object_new_boolean(!r->attention));
  json_object_object_add(o, "dry_run", json_object_new_boolean(dry_run));
  json_object *q = json_object_new_object();
  json_object_object_add(q, "known", json_object_new_boolean(r->q.known));
  json_object_object_add(q, "ready", json_object_new_int64(r->q.ready));
  json_object_object_add(q, "unacked", json_object_new_int64(r->q.unacked));
  json_object_object_add(q, "consumers", json_object_new_int64(r->q.consumers));
  json_object_object_add(q, "utilisation",
                         r->q.utilisation >= 0
                             ? json_object_new_double(r->q.utilisation)
                             : json_object_new_null());
  json_object_object_add(q, "retry_ready",
                         json_object_new_int64(r->q.retry_ready));
  json_object_object_add(
      q, "error", r->q.known ? json_object_new_null() : jstr(r->q.error));
  json_object_object_add(o, "queue", q);
  json_object *d = json_object_new_object();
  json_object_object_add(d, "known", json_object_new_boolean(r->dlq_known));
  json_object_object_add(d, "count",
                         json_object_new_int64((int64_t)r->dlq_count));
  json_object_object_add(d, "truncated",
                         json_object_new_boolean(r->dlq_truncated));
  json_object_object_add(d, "unmatched",
                         json_object_new_int64((int64_t)r->dlq_unmatched));
  json_object_object_add(o, "dlq", d);
  json_object *alerts = json_object_new_array();
  if (r->alert_no_consumer)
    json_object_array_add(alerts, jstr("no_consumer"));
  if (r->alert_dlq)
    json_object_array_add(alerts, jstr("dlq_not_empty"));
  if (r->alert_broker)
    json_object_array_add(alerts, jstr("broker_facts_missing"));
  json_object_object_add(o, "alerts", alerts);
  json_object *rows = json_object_new_array();
  for (size_t i = 0; i < r->n; i++)
    json_object_array_add(rows, row_json(&r->rows[i]));
  json_object_object_add(o, "campaigns", rows);
  printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
  json_object_put(o);
}

static int report_exit(const struct watchdog_report *r)
{
  if (r->alert_broker)
    return EXIT_ERROR;
  return r->attention ? EXIT_ATTENTION : CLI_EXIT_OK;
}

int verbs_check(const struct config *cfg, int argc, char **argv)
{
  struct verb_opts o;
  if (parse(argc, argv, true, false, &o))
    return CLI_EXIT_USAGE;
  struct watchdog *w = open_watchdog(cfg, o.dry_run, true);
  if (!w)
    return EXIT_ERROR;
  struct watchdog_report r;
  char err[1024] = "";
  int rc = watchdog_pass(w, &r, err, sizeof(err));
  int status;
  if (rc) {
    fprintf(stderr, "sendonce-watchdog: check: %s\n", err);
    status = EXIT_ERROR;
  } else {
    if (o.json)
      print_json(&r, o.dry_run);
    else
      print_table(&r, o.dry_run);
    status = report_exit(&r);
    watchdog_report_free(&r);
  }
  fflush(stdout);
  watchdog_close(w);
  return status;
}

int verbs_status(const struct config *cfg, int argc, char **argv)
{
  struct verb_opts o;
  if (parse(argc, argv, true, true, &o))
    return CLI_EXIT_USAGE;
  struct watchdog *w = open_watchdog(cfg, true, true);
  if (!w)
    return EXIT_ERROR;
  struct watchdog_report r;
  char err[1024] = "";
  int rc = watchdog_status(w, o.id, &r, err, sizeof(err));
  int status;
  if (rc) {
    fprintf(stderr, "sendonce-watchdog: status %s: %s\n", o.id, err);
    status = rc == SO_ERR_NOTFOUND ? EXIT_ATTENTION : EXIT_ERROR;
  } else {
    if (o.json) {
      print_json(&r, false);
    } else {
      print_status(&r);
      print_table(&r, false);
    }
    status = report_exit(&r);
    watchdog_report_free(&r);
  }
  fflush(stdout);
  watchdog_close(w);
  return status;
}

int verbs_replay(const struct config *cfg, int argc, char **argv)
{
  struct verb_opts o;
  if (parse(argc, argv, false, true, &o))
    return CLI_EXIT_USAGE;
  struct watchdog *w = open_watchdog(cfg, o.dry_run, true);
  if (!w)
    return EXIT_ERROR;
  char msg[1024] = "";
  int rc = watchdog_replay(w, o.id, msg, sizeof(msg));
  printf("%s\n", msg);
  fflush(stdout);
  watchdog_close(w);
  if (rc == SO_OK)
    return CLI_EXIT_OK;
  return rc == SO_ERR_CONFLICT || rc == SO_ERR_NOTFOUND ? EXIT_ATTENTION
                                                        : EXIT_ERROR;
}

/* reload_if_asked: after a SIGHUP, the safe settings of the file into
 * *live (a bad file keeps it whole); the pass interval is re-read. */
static void reload_if_asked(struct config *live, int64_t *interval_ms)
{
  if (!reload_flag)
    return;
  reload_flag = 0;
  char err[1024] = "";
  log_info("watchdog: SIGHUP: reloading the config");
  int rc = config_reload_safe(live, NULL, NULL, 0, err, sizeof(err));
  if (rc != SO_OK)
    log_error("watchdog: reload refused, kept the old config: %s status=%s",
              err, so_strerror(rc));
  *interval_ms = (int64_t)live->watchdog.interval_s * 1000;
}

int verbs_run(const struct config *cfg, int argc, char **argv)
{
  struct verb_opts o;
  if (parse(argc, argv, false, false, &o))
    return CLI_EXIT_USAGE;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_hup;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGHUP, &sa, NULL);
  /* The running config: a shallow copy of the one loaded at start, whose
   * int thresholds a SIGHUP may change (config_reload.h); the watchdog
   * re-reads them at each pass. Single-threaded: no lock needed. */
  struct config live = *cfg;
  cfg = &live;
  struct watchdog *w = open_watchdog(cfg, o.dry_run, false);
  if (!w)
    return EXIT_ERROR;
  int64_t interval_ms = (int64_t)cfg->watchdog.interval_s * 1000;
  log_info(
      "watchdog: running interval_s=%d grace_s=%d stuck_after_s=%d "
      "backoff_s=%d max_republishes=%d dry_run=%d",
      cfg->watchdog.interval_s, cfg->watchdog.grace_s,
      cfg->watchdog.stuck_after_s, cfg->watchdog.republish_backoff_s,
      cfg->watchdog.max_republishes, o.dry_run ? 1 : 0);
  struct wd_metrics *metrics = wd_metrics_start(cfg);
  while (!stop_flag) {
    int64_t t0 = clock_monotonic_ms();
    struct watchdog_report r;
    char err[1024] = "";
    int rc = watchdog_pass(w, &r, err, sizeof(err));
    if (rc) {
      log_error("watchdog: pass failed: %s", err);
      wd_metrics_update(metrics, NULL);
    } else {
      wd_metrics_update(metrics, &r);
      watchdog_report_free(&r);
    }
    /* Idle in slices of at most a second so a SIGHUP is applied soon,
     * and a new interval counts from this pass's start. */
    for (;;) {
      reload_if_asked(&live, &interval_ms);
      int64_t left = interval_ms - (clock_monotonic_ms() - t0);
      if (left <= 0 || stop_flag)
        break;
      watchdog_idle(w, left < 1000 ? left : 1000, &stop_flag);
    }
  }
  log_info("watchdog: stopping (signal)");
  wd_metrics_stop(metrics);
  watchdog_close(w);
  return CLI_EXIT_OK;
}
