/* test_registry_procs.c - registry cases with several processes: racing
 * claims with a lease/fence checker, kill -9 in the middle of a batch,
 * and the SCHEDULED->PUBLISHED and republish races.
 *
 * Children fork, open their own registry handle, never touch the parent's,
 * report through a log file and their exit status, and end with _exit. */
#include "registry_suite.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"

/* ---- process helpers ------------------------------------------------------
 */

struct barrier {
  int fds[2];
};

static void barrier_init(struct barrier *b)
{
  assert_int_equal(pipe(b->fds), 0);
}

/* In a child: block until the parent releases everyone at once. */
static void barrier_wait(struct barrier *b)
{
  close(b->fds[1]);
  char ch;
  while (read(b->fds[0], &ch, 1) < 0 && errno == EINTR) {
  }
  close(b->fds[0]);
}

static void barrier_release(struct barrier *b)
{
  close(b->fds[0]);
  close(b->fds[1]);
}

typedef int (*child_fn)(int index, void *arg);

/* spawn: fork n children running fn(index, arg) after the barrier; their
 * pids go to pids[]. */
static void spawn(int n, pid_t *pids, struct barrier *b, child_fn fn, void *arg)
{
  fflush(NULL);
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      barrier_wait(b);
      int rc = fn(i, arg);
      fflush(NULL);
      _exit(rc);
    }
    pids[i] = pid;
  }
}

/* reap: wait for every child; each must have exited 0. */
static void reap(int n, const pid_t *pids)
{
  int failed = 0;
  for (int i = 0; i < n; i++) {
    int status = 0;
    while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "child %d: status 0x%x\n", i, status);
      failed++;
    }
  }
  assert_int_equal(failed, 0);
}

static char *log_path(const char *prefix, int index)
{
  const char *dir = getenv("TMPDIR");
  size_t len = strlen(dir ? dir : "/tmp") + strlen(prefix) + 32;
  char *path = malloc(len);
  assert_non_null(path);
  snprintf(path, len, "%s/%s.%d.log", dir ? dir : "/tmp", prefix, index);
  return path;
}

static void child_fail(FILE *log, struct registry *r, const char *what, int rc)
{
  fprintf(stderr, "child %d: %s -> %s: %s\n", (int)getpid(), what,
          so_strerror(rc), r ? registry_errmsg(r) : "");
  if (log)
    fflush(log);
}

/* ---- racing claims ------------------------------------------------------- */

#define RACE_PROCS 8
#define RACE_ATTEMPTS 1000
#define RACE_CAMPAIGNS 100

struct race_ctx {
  const char *prefix; /* campaign ids are <prefix>.<n> */
};

static void race_id(char *buf, size_t len, const char *prefix, int n)
{
  snprintf(buf, len, "%s.%d", prefix, n);
}

/* One racer: claim random campaigns with short leases; while it believes
 * it holds one, do fenced marks (recipient "f<fence>-w<k>") and renewals,
 * logging every outcome with the registry's own times:
 *   C <n> <fence> <registry now> <lease_until>   a granted claim
 *   L <n> <fence> <lease_until>                  a lease seen after renew
 *   W <n> <fence> <k> <status>                   a fenced mark's outcome */
static int race_child(int index, void *arg)
{
  const struct race_ctx *ctx = arg;
  struct registry *r = testdb_open(&suite_db);
  char *path = log_path(ctx->prefix, index);
  FILE *log = fopen(path, "w");
  free(path);
  if (!log)
    return 3;
  unsigned seed = (unsigned)getpid() * 2654435761u;
  char owner[32], id[200];
  snprintf(owner, sizeof(owner), "racer-%d", index);
  int rc = 0;
  for (int i = 0; i < RACE_ATTEMPTS && rc == 0; i++) {
    /* Three attempts in four go to five hot campaigns, so claims meet
     * live leases and leases expire under their holders' feet. */
    int n =
        rand_r(&seed) % 4 ? rand_r(&seed) % 5 : rand_r(&seed) % RACE_CAMPAIGNS;
    int64_t ttl = 20 + rand_r(&seed) % 31;
    race_id(id, sizeof(id), ctx->prefix, n);
    struct registry_claim cl;
    rc = registry_claim(r, id, owner, ttl, &cl);
    if (rc) {
      child_fail(log, r, "claim", rc);
      break;
    }
    if (cl.kind != REGISTRY_CLAIM_CLAIMED) {
      clock_sleep_ms(rand_r(&seed) % 3, NULL);
      continue;
    }
    fprintf(log, "C %d %lld %lld %lld\n", n, (long long)cl.fence,
            (long long)cl.registry_now_ms, (long long)cl.lease_until_ms);
    int writes = 1 + rand_r(&seed) % 2;
    for (int k = 0; k < writes; k++) {
      /* Pauses around the ttl: some writes land after the lease is gone. */
      clock_sleep_ms(rand_r(&seed) % (ttl / 2 + 5), NULL);
      if (rand_r(&seed) % 3 == 0) {
        int rr = registry_renew(r, id, cl.fence, ttl);
        if (rr == SO_OK) {
          struct registry_campaign c;
          rr = registry_get(r, id, &c);
          if (rr == SO_OK && c.fence == cl.fence &&
              c.state == CAMPAIGN_PROCESSING)
            fprintf(log, "L %d %lld %lld\n", n, (long long)cl.fence,
                    (long long)c.lease_until_ms);
          registry_campaign_free(&c);
        }
        if (rr != SO_OK && rr != SO_ERR_STALE_FENCE) {
          child_fail(log, r, "renew", rc = rr);
          break;
        }
      }
      char rcpt[64];
      snprintf(rcpt, sizeof(rcpt), "f%lld-w%d", (long long)cl.fence, k);
      struct registry_mark m = {.recipient_id = rcpt, .state = DELIVERY_SENT};
      int wr = registry_mark(r, id, cl.fence, &m, 1);
      fprintf(log, "W %d %lld %d %d\n", n, (long long)cl.fence, k, wr);
      if (wr != SO_OK && wr != SO_ERR_STALE_FENCE) {
        child_fail(log, r, "mark", rc = wr);
        break;
      }
      if (wr == SO_ERR_STALE_FENCE)
        break; /* a worker that lost its lease stops at once */
    }
  }
  fclose(log);
  registry_close(r);
  return rc ? 1 : 0;
}

struct race_claim {
  int64_t fence, now, until, max_until;
  bool seen;
};

struct race_write {
  int n, k;
  int64_t fence;
  int status;
};

struct race_row {
  int n;
  int64_t fence;
  int k;
  int64_t at;
};

static int row_cmp(const void *a, const void *b)
{
  const struct race_row *x = a, *y = b;
  if (x->n != y->n)
    return x->n < y->n ? -1 : 1;
  if (x->fence != y->fence)
    return x->fence < y->fence ? -1 : 1;
  return x->k - y->k;
}

#define MAX_FENCE 4000

void test_race_claims(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *prefix = suite_id("race");
  char id[200];
  for (int n = 0; n < RACE_CAMPAIGNS; n++) {
    race_id(id, sizeof(id), prefix, n);
    suite_register(r, id, CAMPAIGN_PUBLISHED, 1000);
  }
  struct race_ctx ctx = {.prefix = prefix};
  struct barrier b;
  barrier_init(&b);
  pid_t pids[RACE_PROCS];
  int64_t t0 = clock_monotonic_ms();
  /* No handle may cross fork(): SQLite keeps per-process lock state that a
   * child would wrongly inherit (registry.h). */
  registry_close(r);
  spawn(RACE_PROCS, pids, &b, race_child, &ctx);
  barrier_release(&b);
  reap(RACE_PROCS, pids);
  r = testdb_open(&suite_db);
  print_message("race: %d processes done in %lld ms\n", RACE_PROCS,
                (long long)(clock_monotonic_ms() - t0));

  /* Gather every log. */
  struct race_claim(*claims)[MAX_FENCE + 1] =
      calloc(RACE_CAMPAIGNS, sizeof(*claims));
  size_t nwrites = 0, capw = 4096;
  struct race_write *writes = malloc(capw * sizeof(*writes));
  assert_non_null(claims);
  assert_non_null(writes);
  long long total_claims = 0, stale_writes = 0;
  for (int i = 0; i < RACE_PROCS; i++) {
    char *path = log_path(prefix, i);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    while (fgets(line, sizeof(line), f)) {
      int n, k, status;
      long long fence, a, c;
      if (sscanf(line, "C %d %lld %lld %lld", &n, &fence, &a, &c) == 4) {
        assert_true(fence >= 1 && fence <= MAX_FENCE);
        struct race_claim *cl = &claims[n][fence];
        if (cl->seen)
          fail_msg("campaign %d: fence %lld granted twice", n, fence);
        *cl = (struct race_claim){fence, a, c, c, true};
        total_claims++;
      } else if (sscanf(line, "L %d %lld %lld", &n, &fence, &c) == 3) {
        /* Logged after the claim line of the same process. */
        assert_true(claims[n][fence].seen);
        if (c > claims[n][fence].max_until)
          claims[n][fence].max_until = c;
      } else if (sscanf(line, "W %d %lld %d %d", &n, &fence, &k, &status) ==
                 4) {
        if (nwrites == capw) {
          capw *= 2;
          writes = realloc(writes, capw * sizeof(*writes));
          assert_non_null(writes);
        }
        writes[nwrites++] = (struct race_write){n, k, fence, status};
        stale_writes += status == SO_ERR_STALE_FENCE;
      } else {
        fail_msg("bad log line: %s", line);
      }
    }
    fclose(f);
    unlink(path);
    free(path);
  }
  print_message("race: %lld claims, %zu writes, %lld refused as stale\n",
                total_claims, nwrites, stale_writes);
  assert_true(total_claims > RACE_CAMPAIGNS); /* takeovers happened */

  /* Leases: per campaign, fences 1..K all granted, in registry-time order,
   * each granted only once the previous lease (as renewed) had ended. */
  for (int n = 0; n < RACE_CAMPAIGNS; n++) {
    race_id(id, sizeof(id), prefix, n);
    struct registry_campaign c;
    REG_OK(r, registry_get(r, id, &c));
    int64_t k_max = c.fence;
    registry_campaign_free(&c);
    for (int64_t f = 1; f <= k_max; f++) {
      if (!claims[n][f].seen)
        fail_msg("campaign %d: fence %lld issued but never logged", n,
                 (long long)f);
      if (f > 1) {
        const struct race_claim *prev = &claims[n][f - 1];
        const struct race_claim *cur = &claims[n][f];
        if (cur->now < prev->max_until)
          fail_msg(
              "campaign %d: fence %lld granted at %lld while fence "
              "%lld held a lease until %lld",
              n, (long long)f, (long long)cur->now, (long long)(f - 1),
              (long long)prev->max_until);
      }
    }
    for (int64_t f = k_max + 1; f <= MAX_FENCE; f++) {
      if (claims[n][f].seen)
        fail_msg("campaign %d: fence %lld logged, registry says %lld", n,
                 (long long)f, (long long)k_max);
    }
  }

  /* Fenced writes: one that succeeded happened (registry time) within its
   * fence's tenure; one that was refused left no row. */
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT campaign_id, recipient_id, updated_at FROM deliveries "
           "WHERE campaign_id LIKE '%s.%%'",
           prefix);
  char *text = testdb_query(&suite_db, sql);
  size_t nrows = 0, caprows = 1024;
  struct race_row *rows = malloc(caprows * sizeof(*rows));
  assert_non_null(rows);
  size_t plen = strlen(prefix);
  for (char *line = text; *line;) {
    char *eol = strchr(line, '\n');
    assert_non_null(eol);
    *eol = '\0';
    struct race_row row;
    long long fence, at;
    if (strncmp(line, prefix, plen) != 0 ||
        sscanf(line + plen, ".%d|f%lld-w%d|%lld", &row.n, &fence, &row.k,
               &at) != 4)
      fail_msg("unexpected delivery row: %s", line);
    row.fence = fence;
    row.at = at;
    if (nrows == caprows) {
      caprows *= 2;
      rows = realloc(rows, caprows * sizeof(*rows));
      assert_non_null(rows);
    }
    rows[nrows++] = row;
    line = eol + 1;
  }
  free(text);
  qsort(rows, nrows, sizeof(*rows), row_cmp);
  size_t ok_writes = 0;
  for (size_t i = 0; i < nwrites; i++) {
    const struct race_write *w = &writes[i];
    struct race_row key = {.n = w->n, .fence = w->fence, .k = w->k};
    struct race_row *row = bsearch(&key, rows, nrows, sizeof(*rows), row_cmp);
    if (w->status != SO_OK) {
      if (row)
        fail_msg("campaign %d: refused write f%lld-w%d left a row", w->n,
                 (long long)w->fence, w->k);
      continue;
    }
    ok_writes++;
    if (!row)
      fail_msg("campaign %d: accepted write f%lld-w%d has no row", w->n,
               (long long)w->fence, w->k);
    const struct race_claim *mine = &claims[w->n][w->fence];
    if (row->at < mine->now || row->at >= mine->max_until)
      fail_msg(
          "campaign %d: write f%lld-w%d at %lld outside its lease "
          "[%lld, %lld)",
          w->n, (long long)w->fence, w->k, (long long)row->at,
          (long long)mine->now, (long long)mine->max_until);
    if (w->fence < MAX_FENCE && claims[w->n][w->fence + 1].seen &&
        row->at >= claims[w->n][w->fence + 1].now)
      fail_msg(
          "campaign %d: write by fence %lld at %lld after fence %lld "
          "was granted at %lld",
          w->n, (long long)w->fence, (long long)row->at,
          (long long)(w->fence + 1), (long long)claims[w->n][w->fence + 1].now);
  }
  assert_int_equal(ok_writes, nrows); /* nothing written that was refused */
  assert_true(ok_writes > 0);
  free(rows);
  free(writes);
  free(claims);
  free(prefix);
  registry_close(r);
}

/* ---- kill -9 in the middle of a batch ---------------------------------------
 */

#define KILL_ROUNDS 4
#define KILL_BATCH 400

struct kill_ctx {
  const char *id;
  int64_t fence;
  int round;
  int ready_fd; /* a byte is written here after the first batch */
};

/* Write big batches of marks in a loop until killed. */
static int kill_child(int index, void *arg)
{
  (void)index;
  const struct kill_ctx *ctx = arg;
  struct registry *r = testdb_open(&suite_db);
  struct registry_mark *marks = calloc(KILL_BATCH, sizeof(*marks));
  char(*names)[48] = calloc(KILL_BATCH, sizeof(*names));
  if (!marks || !names)
    return 3;
  for (int batch = 0;; batch++) {
    for (int i = 0; i < KILL_BATCH; i++) {
      snprintf(names[i], sizeof(names[i]), "k%d-b%d-r%d", ctx->round, batch, i);
      marks[i].recipient_id = names[i];
      marks[i].state = i % 7 == 0 ? DELIVERY_REJECTED : DELIVERY_SENT;
      marks[i].error = i % 7 == 0 ? "refused" : NULL;
    }
    int rc = registry_mark(r, ctx->id, ctx->fence, marks, KILL_BATCH);
    if (rc) {
      child_fail(NULL, r, "mark", rc);
      return 1;
    }
    if (batch == 0 && write(ctx->ready_fd, "x", 1) != 1)
      return 4;
  }
}

/* After each kill: every batch is all there or absent, and the counters
 * equal the rows. */
static void kill_check(const char *id)
{
  char *text = suite_deliveries(id);
  enum { MAX_BATCHES = 4096 };
  static int counts[KILL_ROUNDS][MAX_BATCHES];
  memset(counts, 0, sizeof(counts));
  for (char *line = text; *line;) {
    char *eol = strchr(line, '\n');
    assert_non_null(eol);
    *eol = '\0';
    int round, batch, i;
    char state[16];
    if (sscanf(line, "k%d-b%d-r%d|%15[A-Z]|", &round, &batch, &i, state) != 4)
      fail_msg("unexpected row %s", line);
    assert_true(round < KILL_ROUNDS && batch < MAX_BATCHES);
    counts[round][batch]++;
    assert_string_equal(state, i % 7 == 0 ? "REJECTED" : "SENT");
    line = eol + 1;
  }
  free(text);
  for (int round = 0; round < KILL_ROUNDS; round++) {
    for (int batch = 0; batch < MAX_BATCHES; batch++) {
      if (counts[round][batch] != 0 && counts[round][batch] != KILL_BATCH)
        fail_msg("round %d batch %d: %d of %d rows: a torn batch", round, batch,
                 counts[round][batch], KILL_BATCH);
    }
  }
  /* Counters against rows in one statement, so one snapshot: with
   * PostgreSQL the killed client's last statement may still be running on
   * the server and commit between two separate reads (legitimately: its
   * lease is live). */
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT c.sent - (SELECT count(*) FROM deliveries d WHERE "
           "d.campaign_id = c.campaign_id AND d.state = 'SENT'), c.rejected - "
           "(SELECT count(*) FROM deliveries d WHERE d.campaign_id = "
           "c.campaign_id AND d.state = 'REJECTED') FROM campaigns c WHERE "
           "c.campaign_id = '%s'",
           id);
  char *diff = testdb_query(&suite_db, sql);
  assert_string_equal(diff, "0|0\n");
  free(diff);
}

/* The counters, read through the registry, equal the rows once no other
 * writer is left. */
static void kill_check_counters(struct registry *r, const char *id)
{
  char *text = suite_deliveries(id);
  long long sent = 0, rejected = 0;
  for (const char *p = text; (p = strchr(p, '|')) != NULL; p++) {
    sent += strncmp(p, "|SENT|", 6) == 0;
    rejected += strncmp(p, "|REJECTED|", 10) == 0;
  }
  free(text);
  struct registry_campaign c;
  REG_OK(r, registry_get(r, id, &c));
  assert_int_equal(c.sent, sent);
  assert_int_equal(c.rejected, rejected);
  assert_true(sent > 0);
  registry_campaign_free(&c);
}

void test_kill_mid_batch(void **state)
{
  (void)state;
  struct registry *r = testdb_open(&suite_db);
  char *id = suite_id("kill");
  suite_register(r, id, CAMPAIGN_PUBLISHED, 1000);
  struct registry_claim cl;
  REG_OK(r, registry_claim(r, id, "victim", 600000, &cl));
  assert_int_equal(cl.kind, REGISTRY_CLAIM_CLAIMED);
  unsigned seed = (unsigned)getpid();
  for (int round = 0; round < KILL_ROUNDS; round++) {
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    struct kill_ctx ctx = {
        .id = id, .fence = cl.fence, .round = round, .ready_fd = ready[1]};
    struct barrier b;
    barrier_init(&b);
    pid_t pid;
    registry_close(r); /* no handle crosses fork() */
    spawn(1, &pid, &b, kill_child, &ctx);
    r = testdb_open(&suite_db);
    barrier_release(&b);
    close(ready[1]);
    char ch;
    assert_int_equal(read(ready[0], &ch, 1), 1); /* one batch is in */
    close(ready[0]);
    clock_sleep_ms(rand_r(&seed) % 300, NULL);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    kill_check(id);
  }
  /* The registry is usable after the kills: the holder still writes. (On
   * PostgreSQL this mark also waits out a killed client's statement still
   * running on the server: both lock the campaign's row.) */
  struct registry_mark m = {.recipient_id = "k0-b4095-r1",
                            .state = DELIVERY_SENT};
  REG_OK(r, registry_mark(r, id, cl.fence, &m, 1));
  kill_check_counters(r, id);
  free(id);
  registry_close(r);
}

/* ---- publish and republish races
 * ---------------------------------------------- */

#define PUB_PROCS 4
#define PUB_CAMPAIGNS 25

struct pub_ctx {
  const char *prefix;
};

/* For each campaign <prefix>.b<n>: begin_publish, and the winner marks it
 * published (logged "B n" / "M n"); for <prefix>.m<n>: mark_published
 * straight away (logged "D n" when won); for <prefix>.r<n>:
 * record_republish (logged "R n" when won). All racers go in the same
 * order, so each campaign is contended by all at once. */
static int pub_child(int index, void *arg)
{
  const struct pub_ctx *ctx = arg;
  struct registry *r = testdb_open(&suite_db);
  char *path = log_path(ctx->prefix, index);
  FILE *log = fopen(path, "w");
  free(path);
  if (!log)
    return 3;
  char owner[32], id[200];
  snprintf(owner, sizeof(owner), "publisher-%d", index);
  int rc = 0;
  for (int n = 0; n < PUB_CAMPAIGNS && !rc; n++) {
    bool won = false;
    snprintf(id, sizeof(id), "%s.b%d", ctx->prefix, n);
    rc = registry_begin_publish(r, id, owner, 60000, &won);
    if (!rc && won) {
      fprintf(log, "B %d\n", n);
      rc = registry_mark_published(r, id, &won);
      if (!rc && won)
        fprintf(log, "M %d\n", n);
    }
    snprintf(id, sizeof(id), "%s.m%d", ctx->prefix, n);
    if (!rc)
      rc = registry_mark_published(r, id, &won);
    if (!rc && won)
      fprintf(log, "D %d\n", n);
    snprintf(id, sizeof(id), "%s.r%d", ctx->prefix, n);
    if (!rc)
      rc = registry_record_republish(r, id, CAMPAIGN_PUBLISHED, 0, 0, 600000, 5,
                                     &won);
    if (!rc && won)
      fprintf(log, "R %d\n", n);
  }
  if (rc)
    child_fail(log, r, "publish race", rc);
  fclose(log);
  registry_close(r);
  return rc ? 1 : 0;
}

static void run_publish_races(bool check_publish)
{
  struct registry *r = testdb_open(&suite_db);
  char *prefix = suite_id("pubrace");
  char id[200];
  for (int n = 0; n < PUB_CAMPAIGNS; n++) {
    snprintf(id, sizeof(id), "%s.b%d", prefix, n);
    suite_register(r, id, CAMPAIGN_SCHEDULED, 1000);
    snprintf(id, sizeof(id), "%s.m%d", prefix, n);
    suite_register(r, id, CAMPAIGN_SCHEDULED, 1000);
    snprintf(id, sizeof(id), "%s.r%d", prefix, n);
    suite_register(r, id, CAMPAIGN_PUBLISHED, 1000);
  }
  struct pub_ctx ctx = {.prefix = prefix};
  struct barrier b;
  barrier_init(&b);
  pid_t pids[PUB_PROCS];
  registry_close(r); /* no handle crosses fork() */
  spawn(PUB_PROCS, pids, &b, pub_child, &ctx);
  barrier_release(&b);
  reap(PUB_PROCS, pids);
  r = testdb_open(&suite_db);

  int wins[4][PUB_CAMPAIGNS] = {{0}}; /* B, M, D, R */
  int begin_winner[PUB_CAMPAIGNS], mark_winner[PUB_CAMPAIGNS];
  for (int i = 0; i < PUB_PROCS; i++) {
    char *path = log_path(prefix, i);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char kind;
    int n;
    while (fscanf(f, " %c %d", &kind, &n) == 2) {
      const char *kinds = "BMDR";
      const char *at = strchr(kinds, kind);
      assert_non_null(at);
      assert_true(n >= 0 && n < PUB_CAMPAIGNS);
      wins[at - kinds][n]++;
      if (kind == 'B')
        begin_winner[n] = i;
      if (kind == 'M')
        mark_winner[n] = i;
    }
    fclose(f);
    unlink(path);
    free(path);
  }
  for (int n = 0; n < PUB_CAMPAIGNS; n++) {
    struct registry_campaign c;
    if (check_publish) {
      assert_int_equal(wins[0][n], 1); /* one begin_publish winner */
      assert_int_equal(wins[1][n], 1); /* ... who marked it published */
      assert_int_equal(begin_winner[n], mark_winner[n]);
      assert_int_equal(wins[2][n], 1); /* one mark_published winner */
      snprintf(id, sizeof(id), "%s.b%d", prefix, n);
      REG_OK(r, registry_get(r, id, &c));
      assert_int_equal(c.state, CAMPAIGN_PUBLISHED);
      registry_campaign_free(&c);
    } else {
      assert_int_equal(wins[3][n], 1); /* one republish recorded */
      snprintf(id, sizeof(id), "%s.r%d", prefix, n);
      REG_OK(r, registry_get(r, id, &c));
      assert_int_equal(c.republished, 1);
      registry_campaign_free(&c);
    }
  }
  free(prefix);
  registry_close(r);
}

void test_publish_race(void **state)
{
  (void)state;
  run_publish_races(true);
}

void test_republish_race(void **state)
{
  (void)state;
  run_publish_races(false);
}
