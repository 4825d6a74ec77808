/* test_watchdog_e2e.c - the watchdog with real consumers, the real broker,
 * one registry backend (argv[1]: sqlite | pg) and sendonce-sink as the
 * provider.
 *
 *  incident_replay: the incident this project exists for. A campaign that
 *    takes over 60 s at the sink and a second one due at the same moment,
 *    two watchdogs at a 1 s interval with a 5 s grace (lease ttl 3 s):
 *    zero republishes of the long campaign, "in progress" with growing
 *    progress on every pass, the second campaign completes, every
 *    recipient of both arrives exactly once.
 *  sigstop_takeover: a consumer SIGSTOPped past its lease: the watchdog
 *    republishes one takeover trigger, another consumer resumes with
 *    fence+1; after SIGCONT the stopped worker's next fenced write fails
 *    and it stops; raw duplicates within the in-flight window, none
 *    accepted twice by a sink that honours keys.
 *  queued_lost_poison: a campaign waiting behind a busy consumer past its
 *    grace is reported queued and never republished; a trigger purged
 *    while PUBLISHED is republished once and completes; a poison campaign
 *    (its recipients file missing) is dead, listed by check; replay after
 *    the fix brings it back and it completes.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "e2e/consumer_harness.h"
#include "testenv.h"

static enum registry_backend backend;

struct wd_proc {
  pid_t pid;
  char log[400];
};

/* A watchdog config: the consumer's config plus a watchdog section. */
static const char *wd_config(struct harness *h, const struct harness_conf *c,
                             int grace_s)
{
  static char path[420];
  const char *base = harness_config(h, "watchdog", c);
  snprintf(path, sizeof(path), "%s", base);
  FILE *f = fopen(path, "a");
  assert_non_null(f);
  fprintf(f,
          "watchdog = { interval_s = 1; grace_s = %d; stuck_after_s = 60;\n"
          "  republish_backoff_s = 30; max_republishes = 5;\n"
          "  mgmt_url = \"%s\"; };\n",
          grace_s, testenv_get("SENDONCE_WATCHDOG_MGMT_URL"));
  assert_int_equal(fclose(f), 0);
  return path;
}

static void wd_start(struct harness *h, struct wd_proc *p, const char *config,
                     const char *name)
{
  snprintf(p->log, sizeof(p->log), "%s/%s.log", h->dir, name);
  p->pid = fork();
  assert_true(p->pid >= 0);
  if (p->pid == 0) {
    FILE *f = freopen(p->log, "a", stderr);
    (void)f;
    execl(SENDONCE_WATCHDOG_BIN, SENDONCE_WATCHDOG_BIN, "--config", config,
          "run", (char *)NULL);
    _exit(127);
  }
}

static int wd_stop(struct wd_proc *p)
{
  int st = 0;
  kill(p->pid, SIGTERM);
  for (int i = 0; i < 150; i++) {
    if (waitpid(p->pid, &st, WNOHANG) == p->pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    clock_sleep_ms(100, NULL);
  }
  kill(p->pid, SIGKILL);
  waitpid(p->pid, &st, 0);
  return -1;
}

static int count(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

/* The watchdog's verdict lines about `id` in one log: every one must be
 * "in progress"; `sent` must never go down and must grow between passes.
 * Returns the number of lines; *grew / *pairs count the passes where
 * progress grew (while not yet complete). */
static int check_in_progress(const char *log, const char *id, long long total,
                             int *grew, int *pairs)
{
  char *s = harness_slurp(log);
  char key[160];
  snprintf(key, sizeof(key), " campaign=%s ", id);
  int lines = 0;
  long long last = -1;
  *grew = *pairs = 0;
  char *save = NULL;
  for (char *line = s; line && *line; line = save) {
    char *nl = strchr(line, '\n');
    save = nl ? nl + 1 : NULL;
    if (nl)
      *nl = '\0';
    if (!strstr(line, key) || !strstr(line, " state="))
      continue;
    lines++;
    if (!strstr(line, "watchdog: in progress: "))
      fail_msg("%s: a verdict other than in progress: %s", log, line);
    const char *p = strstr(line, " sent=");
    assert_non_null(p);
    long long sent = strtoll(p + 6, NULL, 10);
    if (sent < last)
      fail_msg("%s: progress went down (%lld -> %lld)", log, last, sent);
    if (last >= 0 && last < total) {
      (*pairs)++;
      if (sent > last)
        (*grew)++;
    }
    last = sent;
  }
  free(s);
  return lines;
}

/* ---- the incident replay ----------------------------------------------- */

#define LONG_N 600 /* 600 x 400 ms / 4 in flight = 60 s */
#define SHORT_N 40

static void test_incident_replay(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "400", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  /* testenv exports the base conninfo and the environment overrides the
   * file: point the children at this run's schema. */
  if (backend == REGISTRY_POSTGRESQL)
    setenv("SENDONCE_REGISTRY_PG_CONNINFO", h.db.pg_conninfo, 1);
  struct harness_conf c = {.lease_ttl_s = 3,
                           .mark_batch_size = 5,
                           .workers = 2,
                           .concurrency = 4,
                           .timeout_ms = 5000};
  struct harness_proc a, b;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  harness_start(&h, &b, harness_config(&h, "b", &c), "b");
  char *long_body =
      harness_body("long", harness_recipients_file(&h, "long", LONG_N));
  char *short_body =
      harness_body("second", harness_recipients_file(&h, "second", SHORT_N));
  /* Both due at the same moment (yesterday, 09:00): "due minutes ago". */
  harness_publish(&h, "long", long_body);
  harness_publish(&h, "second", short_body);
  struct registry_campaign rc =
      harness_wait_state(&h, "long", CAMPAIGN_PROCESSING, 15000);
  registry_campaign_free(&rc);

  const char *conf = wd_config(&h, &c, 5);
  struct wd_proc w1, w2;
  wd_start(&h, &w1, conf, "wd1");
  wd_start(&h, &w2, conf, "wd2");
  int64_t t0 = clock_monotonic_ms();

  rc = harness_wait_state(&h, "second", CAMPAIGN_DONE, 60000);
  assert_int_equal(rc.sent, SHORT_N);
  assert_int_equal(rc.republished, 0);
  registry_campaign_free(&rc);
  rc = harness_wait_state(&h, "long", CAMPAIGN_DONE, 180000);
  int64_t took = clock_monotonic_ms() - t0;
  print_message(
      "incident: long campaign done %lld s after the watchdogs "
      "started\n",
      (long long)(took / 1000));
  assert_int_equal(rc.sent, LONG_N);
  assert_int_equal(rc.fence, 1);
  assert_int_equal(rc.republished, 0);
  registry_campaign_free(&rc);
  assert_true(took >= 50000); /* it really was long */

  assert_int_equal(wd_stop(&w1), 0);
  assert_int_equal(wd_stop(&w2), 0);
  /* Every recipient of both exactly once. */
  assert_int_equal(harness_sink_stat(&h, "unique_keys"), LONG_N + SHORT_N);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(harness_sink_stat(&h, "accepted_duplicates"), 0);

  /* What the watchdogs said, pass by pass. */
  struct wd_proc *ws[2] = {&w1, &w2};
  for (int i = 0; i < 2; i++) {
    int grew = 0, pairs = 0;
    int lines = check_in_progress(ws[i]->log, "long", LONG_N, &grew, &pairs);
    print_message(
        "%s: %d in-progress verdicts, progress grew on %d of %d "
        "passes\n",
        ws[i]->log, lines, grew, pairs);
    assert_true(lines >= 40);
    /* Marks are written in batches of 5 (~10 recipients/s), so a pass
     * sees growth unless two passes fall within one batch. */
    assert_true(grew * 10 >= pairs * 9);
    char *s = harness_slurp(ws[i]->log);
    assert_int_equal(count(s, "republished campaign=long"), 0);
    assert_int_equal(count(s, "stalled"), 0);
    assert_int_equal(count(s, "trigger lost"), 0);
    free(s);
  }
  assert_int_equal(harness_log_count(&a, "LOST"), 0);
  assert_int_equal(harness_log_count(&b, "LOST"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_stop(&b, SIGTERM, 15000), 0);
  free(long_body);
  free(short_body);
  harness_teardown(&h);
}

/* ---- a consumer SIGSTOPped past its lease ------------------------------- */

#define STP_N 3000

static void test_sigstop_takeover(void **state)
{
  (void)state;
  const char *args[] = {"--honour-idempotency", "--latency-ms", "20", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  if (backend == REGISTRY_POSTGRESQL)
    setenv("SENDONCE_REGISTRY_PG_CONNINFO", h.db.pg_conninfo, 1);
  struct harness_conf c = {.lease_ttl_s = 3, .concurrency = 8};
  struct harness_proc a, b;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *body = harness_body("stp", harness_recipients_file(&h, "stp", STP_N));
  harness_publish(&h, "stp", body);
  assert_true(harness_wait_log(&a, "claimed campaign=stp fence=1", 10000));
  harness_start(&h, &b, harness_config(&h, "b", &c), "b");
  const char *conf = wd_config(&h, &c, 5);
  struct wd_proc w1, w2;
  wd_start(&h, &w1, conf, "wd1");
  wd_start(&h, &w2, conf, "wd2");
  assert_true(harness_wait_sink(&h, "total", 300, 30000));
  assert_int_equal(kill(a.pid, SIGSTOP), 0);
  int64_t stopped_at = clock_monotonic_ms();
  /* The lease it last renewed (a renewal in flight lands within ms). */
  clock_sleep_ms(300, NULL);
  struct registry_campaign at_stop = {0};
  assert_int_equal(registry_get(h.reg, "stp", &at_stop), SO_OK);
  int64_t lease_at_stop = at_stop.lease_until_ms;
  registry_campaign_free(&at_stop);

  /* Lease 3 s + grace 5 s + a pass: the takeover, claimed by b. */
  int64_t fence = 0;
  while (clock_monotonic_ms() - stopped_at < 40000) {
    struct registry_campaign rc = {0};
    assert_int_equal(registry_get(h.reg, "stp", &rc), SO_OK);
    fence = rc.fence;
    registry_campaign_free(&rc);
    if (fence >= 2)
      break;
    clock_sleep_ms(200, NULL);
  }
  assert_int_equal(fence, 2);
  int64_t takeover_ms = clock_monotonic_ms() - stopped_at;
  print_message("sigstop: taken over %lld ms after SIGSTOP\n",
                (long long)takeover_ms);
  /* Never before the lease had been expired for the grace period. */
  struct registry_campaign at_takeover = {0};
  assert_int_equal(registry_get(h.reg, "stp", &at_takeover), SO_OK);
  assert_true(at_takeover.republished_at_ms >= lease_at_stop + 5000);
  registry_campaign_free(&at_takeover);
  assert_true(harness_wait_log(&b, "claimed campaign=stp fence=2", 10000));

  assert_int_equal(kill(a.pid, SIGCONT), 0);
  assert_true(
      harness_wait_log(&a, "campaign LOST campaign=stp fence=1", 20000));
  struct registry_campaign rc =
      harness_wait_state(&h, "stp", CAMPAIGN_DONE, 90000);
  assert_int_equal(rc.fence, 2);
  assert_int_equal(rc.sent, STP_N);
  assert_int_equal(rc.republished, 1); /* two watchdogs, one takeover */
  registry_campaign_free(&rc);

  assert_int_equal(wd_stop(&w1), 0);
  assert_int_equal(wd_stop(&w2), 0);
  char *l1 = harness_slurp(w1.log), *l2 = harness_slurp(w2.log);
  assert_int_equal(count(l1, "republished campaign=stp reason=takeover") +
                       count(l2, "republished campaign=stp reason=takeover"),
                   1);
  free(l1);
  free(l2);

  assert_int_equal(harness_sink_stat(&h, "unique_keys"), STP_N);
  /* Resent at most the in-flight window: unmarked outcomes (up to two
   * batches of marks) plus the requests in transfer, from the stopped
   * worker (before it stopped and until it noticed) and its successor. */
  int64_t raw = harness_sink_stat(&h, "raw_duplicates");
  int window = 2 * 50 + 2 * 8;
  print_message("sigstop: raw_duplicates=%lld (window %d)\n", (long long)raw,
                window);
  assert_true(raw <= window);
  assert_int_equal(harness_sink_stat(&h, "accepted_duplicates"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  assert_int_equal(harness_stop(&b, SIGTERM, 15000), 0);
  free(body);
  harness_teardown(&h);
}

/* ---- queued behind a busy consumer, a purged trigger, a poison --------- */

/* Run the watchdog binary with `verb` and `arg` (may be NULL), stdout in
 * out; returns the exit status. */
static int wd_run(const char *config, const char *verb, const char *arg,
                  char *out, size_t outlen)
{
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl(SENDONCE_WATCHDOG_BIN, SENDONCE_WATCHDOG_BIN, "--config", config,
          "--log-level", "error", verb, arg, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  size_t len = 0;
  ssize_t k;
  while (len + 1 < outlen &&
         (k = read(fds[0], out + len, outlen - 1 - len)) > 0)
    len += (size_t)k;
  out[len] = '\0';
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Verdict lines about `id` while it was in `state`: how many, and how many
 * of them said `label`. */
static void verdicts_in_state(const char *log, const char *id,
                              const char *state, const char *label, int *n,
                              int *with_label)
{
  char *s = harness_slurp(log);
  char key[160], st[64];
  snprintf(key, sizeof(key), " campaign=%s ", id);
  snprintf(st, sizeof(st), " state=%s ", state);
  *n = *with_label = 0;
  char *next = NULL;
  for (char *line = s; line && *line; line = next) {
    char *nl = strchr(line, '\n');
    next = nl ? nl + 1 : NULL;
    if (nl)
      *nl = '\0';
    if (!strstr(line, key) || !strstr(line, st))
      continue;
    (*n)++;
    *with_label += strstr(line, label) != NULL;
  }
  free(s);
}

#define BUSY_N 600 /* 600 x 100 ms / 4 in flight = 15 s */
#define WAIT_N 20
#define PURGED_N 30
#define POISON_N 25

static void test_queued_lost_poison(void **state)
{
  (void)state;
  const char *args[] = {"--latency-ms", "100", NULL};
  struct harness h;
  harness_setup(&h, backend, args);
  if (backend == REGISTRY_POSTGRESQL)
    setenv("SENDONCE_REGISTRY_PG_CONNINFO", h.db.pg_conninfo, 1);
  struct harness_conf c = {
      .lease_ttl_s = 3, .mark_batch_size = 5, .workers = 1, .concurrency = 4};
  struct harness_proc a;
  harness_start(&h, &a, harness_config(&h, "a", &c), "a");
  char *busy =
      harness_body("busy", harness_recipients_file(&h, "busy", BUSY_N));
  harness_publish(&h, "busy", busy);
  assert_true(harness_wait_log(&a, "claimed campaign=busy fence=1", 10000));
  /* Behind it (one worker, busy for 15 s): a campaign that waits,
   * registered and published as the publisher does it. */
  char *waiting =
      harness_body("waiting", harness_recipients_file(&h, "waiting", WAIT_N));
  struct registry_new_campaign wc = {.campaign_id = "waiting",
                                     .scheduled_at_ms = clock_now_ms() - 60000,
                                     .channel = "email",
                                     .payload = waiting};
  bool created = false;
  assert_int_equal(registry_register(h.reg, &wc, CAMPAIGN_PUBLISHED, &created),
                   SO_OK);
  harness_publish(&h, "waiting", waiting);
  /* A poison: its recipients file is missing (the operator fixes that
   * later by putting it back). */
  char url[400];
  snprintf(url, sizeof(url), "%s",
           harness_recipients_file(&h, "poison", POISON_N));
  char path[400], hidden[420];
  snprintf(path, sizeof(path), "%s", url + strlen("file://"));
  snprintf(hidden, sizeof(hidden), "%s.hidden", path);
  assert_int_equal(rename(path, hidden), 0);
  char *poison = harness_body("poison", url);
  harness_publish(&h, "poison", poison);
  /* A trigger purged before anyone saw it: the registry knows the
   * campaign (the publisher registered it), no queue holds it. */
  char *purged =
      harness_body("purged", harness_recipients_file(&h, "purged", PURGED_N));
  struct registry_new_campaign nc = {.campaign_id = "purged",
                                     .scheduled_at_ms = clock_now_ms() - 60000,
                                     .channel = "email",
                                     .payload = purged};
  assert_int_equal(registry_register(h.reg, &nc, CAMPAIGN_PUBLISHED, &created),
                   SO_OK);

  const char *conf = wd_config(&h, &c, 5);
  struct wd_proc w1, w2;
  wd_start(&h, &w1, conf, "wd1");
  wd_start(&h, &w2, conf, "wd2");

  struct registry_campaign rc =
      harness_wait_state(&h, "busy", CAMPAIGN_DONE, 60000);
  registry_campaign_free(&rc);
  rc = harness_wait_state(&h, "waiting", CAMPAIGN_DONE, 30000);
  assert_int_equal(rc.republished, 0);
  assert_int_equal(rc.sent, WAIT_N);
  registry_campaign_free(&rc);
  rc = harness_wait_state(&h, "poison", CAMPAIGN_DEAD, 30000);
  assert_int_equal(rc.republished, 0);
  registry_campaign_free(&rc);
  rc = harness_wait_state(&h, "purged", CAMPAIGN_DONE, 30000);
  assert_int_equal(rc.republished, 1);
  assert_int_equal(rc.sent, PURGED_N);
  registry_campaign_free(&rc);

  /* The operator's view: check lists the dead one with its reason and
   * exits 1; status says where its trigger is. */
  char out[32768];
  assert_int_equal(wd_run(conf, "check", NULL, out, sizeof(out)), 1);
  assert_non_null(strstr(out, "poison"));
  assert_non_null(strstr(out, "DLQ: 1 message(s)"));
  assert_int_equal(wd_run(conf, "status", "poison", out, sizeof(out)), 1);
  assert_non_null(strstr(out, "in DLQ:       yes"));
  /* Fix the cause, replay: it completes, once. */
  assert_int_equal(rename(hidden, path), 0);
  assert_int_equal(wd_run(conf, "replay", "poison", out, sizeof(out)), 0);
  rc = harness_wait_state(&h, "poison", CAMPAIGN_DONE, 30000);
  assert_int_equal(rc.sent, POISON_N);
  assert_int_equal(rc.republished, 0);
  registry_campaign_free(&rc);

  assert_int_equal(wd_stop(&w1), 0);
  assert_int_equal(wd_stop(&w2), 0);
  /* "waiting" was reported queued while it waited, never anything else
   * while PUBLISHED, and never republished. */
  int n1, q1, n2, q2;
  verdicts_in_state(w1.log, "waiting", "PUBLISHED", "watchdog: queued: ", &n1,
                    &q1);
  verdicts_in_state(w2.log, "waiting", "PUBLISHED", "watchdog: queued: ", &n2,
                    &q2);
  print_message("waiting: %d + %d verdicts while PUBLISHED, %d + %d queued\n",
                n1, n2, q1, q2);
  assert_true(n1 + n2 >= 10); /* waited well past its grace */
  assert_int_equal(q1, n1);
  assert_int_equal(q2, n2);
  char *l1 = harness_slurp(w1.log), *l2 = harness_slurp(w2.log);
  assert_int_equal(count(l1, "republished campaign=waiting") +
                       count(l2, "republished campaign=waiting"),
                   0);
  assert_int_equal(count(l1, "republished campaign=purged") +
                       count(l2, "republished campaign=purged"),
                   1);
  free(l1);
  free(l2);
  assert_int_equal(harness_sink_stat(&h, "unique_keys"),
                   BUSY_N + WAIT_N + PURGED_N + POISON_N);
  assert_int_equal(harness_sink_stat(&h, "raw_duplicates"), 0);
  assert_int_equal(harness_stop(&a, SIGTERM, 15000), 0);
  free(busy);
  free(waiting);
  free(poison);
  free(purged);
  harness_teardown(&h);
}

int main(int argc, char **argv)
{
  if (argc != 3) {
    fprintf(stderr,
            "usage: %s sqlite|pg "
            "incident_replay|sigstop_takeover|queued_lost_poison\n",
            argv[0]);
    return 2;
  }
  backend = testdb_backend_parse(argv[1]);
  const struct CMUnitTest incident[] = {
      cmocka_unit_test(test_incident_replay),
  };
  const struct CMUnitTest sigstop[] = {
      cmocka_unit_test(test_sigstop_takeover),
  };
  const struct CMUnitTest queued[] = {
      cmocka_unit_test(test_queued_lost_poison),
  };
  if (strcmp(argv[2], "queued_lost_poison") == 0)
    return cmocka_run_group_tests(queued, NULL, NULL);
  if (strcmp(argv[2], "incident_replay") == 0)
    return cmocka_run_group_tests(incident, NULL, NULL);
  if (strcmp(argv[2], "sigstop_takeover") == 0)
    return cmocka_run_group_tests(sigstop, NULL, NULL);
  fprintf(stderr, "unknown test %s\n", argv[2]);
  return 2;
}
