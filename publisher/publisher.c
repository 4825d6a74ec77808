/* publisher.c - publish each due campaign's trigger once, with confirms. */
#include "publisher.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "pub_metrics.h"
#include "topology.h"

/* Due campaigns are looked for at least this often: other processes (the
 * `schedule` verb, other services) add campaigns due sooner at any time. */
#define PUBLISHER_TICK_MS 200
/* Woken for a campaign's due time this long after it: a wake-up a moment
 * early (the registry's clock rounds to the ms, the wait truncates) would
 * find it not yet due and need one more short pass. */
#define PUBLISHER_WAKE_SLACK_MS 2
#define PUBLISHER_BATCH 100 /* due campaigns taken per registry read */
#define PUBLISHER_MAX_UNMARKED 1024
#define PUBLISHER_OWNER_MAX 300
#define PUBLISHER_WARN_EVERY_MS 10000 /* repeat a persisting failure */

struct publisher {
  const struct config *cfg;
  struct registry *reg;
  struct broker *broker; /* NULL until first needed */
  struct topology topo;
  char owner[PUBLISHER_OWNER_MAX];
  int64_t lease_ms; /* publish lease: outlives one bounded publish */
  /* Confirmed but not yet marked PUBLISHED (the registry failed at the
   * mark): retried before anything else, never published again. */
  char *unmarked[PUBLISHER_MAX_UNMARKED];
  size_t n_unmarked;
  struct pub_metrics *metrics; /* the daemon's /metrics, or NULL */
  void (*tick)(void *arg);     /* called once per loop, or NULL */
  void *tick_arg;
};

int publisher_open(const struct config *cfg, enum publisher_mode mode,
                   struct publisher **out, char *err, size_t errlen)
{
  struct publisher *p = calloc(1, sizeof(*p));
  int rc;
  *out = NULL;
  if (!p)
    return SO_ERR_NOMEM;
  p->cfg = cfg;
  if ((rc = topology_from_config(&p->topo, &cfg->topology, err, errlen)))
    goto fail;
  char host[256] = "localhost";
  if (gethostname(host, sizeof(host)) != 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  snprintf(p->owner, sizeof(p->owner), "publisher@%s:%ld", host,
           (long)getpid());
  /* The lease must outlive our slowest bounded attempt (connect to every
   * URI, then wait for the confirm), or a second publisher could take it
   * while we still wait for our confirm and publish again. */
  const struct config_broker *bc = &cfg->broker;
  p->lease_ms = (int64_t)bc->confirm_timeout_ms * 2 +
                (int64_t)bc->connect_timeout_ms * (int64_t)bc->n_uris + 5000;
  if (p->lease_ms < 30000)
    p->lease_ms = 30000;
  struct registry_options ro;
  registry_options_from_config(&ro, &cfg->registry);
  /* The daemon publishes every due campaign in one thread, each as lease,
   * confirmed publish, mark. With each registry step flushed, one slow
   * flush of the shared disk (107 ms, once 181 ms, where the median is
   * 0.3 ms) stretched the 200 ms tick and made every campaign due behind
   * it late. Neither step needs its own flush: forgotten in a crash, the
   * campaign reads SCHEDULED again and is published again, a duplicate the
   * claim drops (registry.h, registry_begin_publish). The CLI verbs keep
   * every step durable: `publish` tells a person the campaign was marked,
   * and they are one-offs whose latency nobody waits on. Measured (bench
   * row 3, SQLite): the daemon's fdatasync calls went from 217-272 per 200
   * campaigns to none. What is left is a wait for SQLite's write lock
   * while a consumer commits (about once per campaign, ~1 ms: the mark
   * meets the claim of the trigger just published); a slow flush there
   * holds up that consumer's own claims just as long, so it no longer adds
   * a stall of its own. */
  ro.publish_async_commit = mode == PUBLISHER_DAEMON;
  if ((rc = registry_open(&ro, &p->reg, err, errlen)))
    goto fail;
  *out = p;
  return SO_OK;
fail:
  publisher_close(p);
  return rc;
}

void publisher_close(struct publisher *p)
{
  if (!p)
    return;
  broker_close(p->broker);
  registry_close(p->reg);
  for (size_t i = 0; i < p->n_unmarked; i++)
    free(p->unmarked[i]);
  free(p);
}

struct registry *publisher_registry(struct publisher *p)
{
  return p->reg;
}

const char *publisher_owner(const struct publisher *p)
{
  return p->owner;
}

static int ensure_broker(struct publisher *p, char *err, size_t errlen)
{
  if (p->broker)
    return SO_OK;
  struct broker_options o;
  broker_options_from_config(&o, &p->cfg->broker, "publisher");
  o.topology = &p->topo;
  return broker_open(&o, &p->broker, err, errlen);
}

int publisher_connect(struct publisher *p, char *err, size_t errlen)
{
  int rc = ensure_broker(p, err, errlen);
  return rc ? rc : broker_connect(p->broker, err, errlen);
}

static int publish_message(struct publisher *p,
                           const struct registry_campaign *c, char *err,
                           size_t errlen)
{
  int rc = ensure_broker(p, err, errlen);
  if (rc)
    return rc;
  if (!c->payload || !*c->payload) {
    so_errf(err, errlen, "campaign %s has no payload in the registry",
            c->campaign_id);
    return SO_ERR_INVALID;
  }
  struct broker_message m = {
      .exchange = p->topo.exchange,
      .routing_key = TOPOLOGY_ROUTING_KEY_DUE,
      .body = c->payload,
      .body_len = strlen(c->payload),
      .message_id = c->campaign_id,
      .attempt = c->attempts > 0 ? c->attempts : 0,
      /* Unroutable (a missing binding) must count as not published. */
      .mandatory = true,
  };
  return broker_publish_confirmed(p->broker, &m, err, errlen);
}

int publisher_trigger(struct publisher *p, const struct registry_campaign *c,
                      char *err, size_t errlen)
{
  int rc = publish_message(p, c, err, errlen);
  if (rc == SO_OK)
    log_info("publisher: published trigger campaign=%s state=%s attempt=%d",
             c->campaign_id, campaign_state_name(c->state), c->attempts);
  return rc;
}

static bool is_unmarked(const struct publisher *p, const char *id)
{
  for (size_t i = 0; i < p->n_unmarked; i++)
    if (strcmp(p->unmarked[i], id) == 0)
      return true;
  return false;
}

static void remember_unmarked(struct publisher *p, const char *id)
{
  char *copy;
  if (is_unmarked(p, id) || p->n_unmarked == PUBLISHER_MAX_UNMARKED ||
      !(copy = strdup(id)))
    return; /* then it is published again: twice, never zero times */
  p->unmarked[p->n_unmarked++] = copy;
}

/* Retry the PUBLISHED marks the registry refused earlier. */
static void flush_unmarked(struct publisher *p)
{
  size_t i = 0;
  while (i < p->n_unmarked) {
    bool won = false;
    int rc = registry_mark_published(p->reg, p->unmarked[i], &won);
    if (rc != SO_OK && rc != SO_ERR_NOTFOUND)
      return; /* still down: keep them all */
    log_info("publisher: marked published campaign=%s late_mark=true",
             p->unmarked[i]);
    free(p->unmarked[i]);
    p->unmarked[i] = p->unmarked[--p->n_unmarked];
  }
}

enum publisher_outcome publisher_publish(struct publisher *p,
                                         const struct registry_campaign *c,
                                         int *rc_out, char *err, size_t errlen)
{
  const char *id = c->campaign_id;
  bool won = false;
  int dummy;
  int *rcp = rc_out ? rc_out : &dummy;
  char why[512] = "";

  *rcp = registry_begin_publish(p->reg, id, p->owner, p->lease_ms, &won);
  if (*rcp != SO_OK) {
    so_errf(err, errlen, "registry: %s", registry_errmsg(p->reg));
    return PUBLISHER_FAILED;
  }
  if (!won) {
    so_errf(err, errlen,
            "campaign %s is not SCHEDULED, is paused, or another publisher "
            "holds its publish lease",
            id);
    return PUBLISHER_NOT_DUE;
  }
  int64_t t0 = clock_monotonic_ms();
  *rcp = publish_message(p, c, why, sizeof(why));
  if (*rcp != SO_OK) {
    so_errf(err, errlen, "%s", why);
    log_warn(
        "publisher: not published: %s campaign=%s status=%s state=SCHEDULED",
        why, id, so_strerror(*rcp));
    pub_metrics_publish_failed(p->metrics);
    return PUBLISHER_FAILED;
  }
  int64_t confirm_ms = clock_monotonic_ms() - t0;
  pub_metrics_confirm_latency(p->metrics, confirm_ms);
  *rcp = registry_mark_published(p->reg, id, &won);
  if (*rcp != SO_OK && *rcp != SO_ERR_NOTFOUND) {
    so_errf(err, errlen, "published, but marking it PUBLISHED failed: %s",
            registry_errmsg(p->reg));
    log_warn(
        "publisher: published, mark failed: %s campaign=%s (the mark is "
        "retried; the trigger is not published again)",
        registry_errmsg(p->reg), id);
    remember_unmarked(p, id);
    return PUBLISHER_UNMARKED;
  }
  *rcp = SO_OK;
  int64_t late_ms = clock_now_ms() - c->scheduled_at_ms;
  pub_metrics_published(p->metrics, late_ms);
  char due[CLOCK_RFC3339_LEN] = "?";
  if (clock_format_rfc3339(c->scheduled_at_ms, due, sizeof(due)) != SO_OK)
    snprintf(due, sizeof(due), "?");
  log_info(
      "publisher: published campaign=%s scheduled_at=%s late_ms=%lld "
      "attempt=%d confirm_ms=%lld%s",
      id, due, (long long)late_ms, c->attempts, (long long)confirm_ms,
      won ? "" : " note=state-moved-on-meanwhile");
  return PUBLISHER_PUBLISHED;
}

/* One pass over the due campaigns. Returns how many were due (so the loop
 * can go on at once with a backlog), or a negative status when the broker
 * or the registry failed. The read also looks a tick ahead: *wake_at gets
 * the monotonic time the next campaign not yet due falls due (INT64_MAX if
 * none within a tick), so the loop sleeps until then rather than a whole
 * tick and publishes it on time. */
static int publish_due(struct publisher *p, const volatile sig_atomic_t *stop,
                       int64_t *wake_at, char *err, size_t errlen)
{
  struct registry_campaign *due = NULL;
  size_t n = 0;
  *wake_at = INT64_MAX;
  int rc =
      registry_list_due(p->reg, PUBLISHER_TICK_MS, PUBLISHER_BATCH, &due, &n);
  if (rc != SO_OK) {
    so_errf(err, errlen, "registry: %s", registry_errmsg(p->reg));
    return rc;
  }
  /* Taken after the read: the wait it starts can only end late, never
   * before the registry's clock reaches the due time. */
  int64_t read_at = clock_monotonic_ms();
  size_t n_due = 0;
  /* Oldest first: after the first one not yet due, all are later still. */
  while (n_due < n && due[n_due].scheduled_at_ms <= due[n_due].registry_now_ms)
    n_due++;
  if (n_due < n)
    *wake_at =
        read_at + (due[n_due].scheduled_at_ms - due[n_due].registry_now_ms);
  int result = (int)n_due;
  for (size_t i = 0; i < n_due && !*stop; i++) {
    if (is_unmarked(p, due[i].campaign_id))
      continue;
    int st = SO_OK;
    enum publisher_outcome o = publisher_publish(p, &due[i], &st, err, errlen);
    if (o == PUBLISHER_FAILED && st != SO_ERR_INVALID) {
      /* The broker or the registry is down: the rest would fail the same
       * way and hold publish leases for nothing. */
      result = st < 0 ? st : SO_ERR_UNAVAILABLE;
      break;
    }
    if (o == PUBLISHER_UNMARKED) {
      result = SO_ERR_UNAVAILABLE;
      break;
    }
  }
  registry_campaigns_free(due, n);
  return result;
}

/* How long the idle loop waits for the next pass: until the next campaign
 * falls due (wake_at, monotonic) and a little after, never longer than a
 * tick. A campaign that fell due during the pass gets a pass at once; it
 * is then due, so it never sets wake_at again: no spinning on it. */
static int idle_wait_ms(int64_t wake_at, int64_t now)
{
  if (wake_at == INT64_MAX)
    return PUBLISHER_TICK_MS;
  int64_t left = wake_at - now + PUBLISHER_WAKE_SLACK_MS;
  if (left <= 0)
    return 0;
  return left < PUBLISHER_TICK_MS ? (int)left : PUBLISHER_TICK_MS;
}

void publisher_on_tick(struct publisher *p, void (*cb)(void *arg), void *arg)
{
  p->tick = cb;
  p->tick_arg = arg;
}

int publisher_run(struct publisher *p, const volatile sig_atomic_t *stop,
                  char *err, size_t errlen)
{
  char why[1024] = "";
  int64_t warned_at = 0;
  bool failing = false;
  int result = SO_OK;

  int rc = publisher_connect(p, why, sizeof(why));
  if (rc == SO_ERR_CONFLICT || rc == SO_ERR_INVALID) {
    so_errf(err, errlen, "%s", why);
    return rc;
  }
  if (rc != SO_OK)
    log_warn("publisher: broker not reachable at start: %s (retrying)", why);
  log_info("publisher: running owner=%s exchange=%s publish_lease_ms=%lld",
           p->owner, p->topo.exchange, (long long)p->lease_ms);
  p->metrics = pub_metrics_start(p->cfg);

  while (!*stop) {
    int due = 0;
    int64_t wake_at = INT64_MAX;
    if (p->tick)
      p->tick(p->tick_arg);
    flush_unmarked(p);
    if (broker_is_up(p->broker))
      due = publish_due(p, stop, &wake_at, why, sizeof(why));
    pub_metrics_state(p->metrics, broker_is_up(p->broker),
                      (long long)p->n_unmarked);
    if (due < 0) {
      pub_metrics_pass_failed(p->metrics);
      int64_t now = clock_monotonic_ms();
      if (!failing || now - warned_at >= PUBLISHER_WARN_EVERY_MS) {
        log_warn("publisher: pass failed: %s status=%s", why, so_strerror(due));
        warned_at = now;
      }
      failing = true;
    } else if (failing && broker_is_up(p->broker)) {
      log_info("publisher: recovered");
      failing = false;
    }
    if (*stop)
      break;
    if (due >= PUBLISHER_BATCH)
      continue; /* a backlog: the next batch now */
    /* Idle: the broker pump keeps heartbeats going and reconnects with
     * backoff when the session is down. */
    struct broker_delivery *d = NULL;
    int64_t t0 = clock_monotonic_ms();
    int wait = idle_wait_ms(due < 0 ? INT64_MAX : wake_at, t0);
    rc = broker_poll(p->broker, wait, -1, &d, why, sizeof(why));
    broker_delivery_free(d);
    /* Never spin: whatever the pump said, a wait lasts about as long as
     * asked, and after a failure a whole tick. */
    int64_t spent = clock_monotonic_ms() - t0;
    int64_t least = rc == SO_ERR_TIMEOUT ? wait : PUBLISHER_TICK_MS;
    if (rc != SO_OK && spent < least / 2)
      clock_sleep_ms(least - spent, stop);
    if (rc == SO_ERR_CONFLICT) {
      /* The topology changed under us: a person must look. */
      so_errf(err, errlen, "%s", why);
      result = rc;
      break;
    }
    if (rc == SO_ERR_REFUSED || (rc == SO_ERR_UNAVAILABLE && why[0])) {
      int64_t now = clock_monotonic_ms();
      if (!failing || now - warned_at >= PUBLISHER_WARN_EVERY_MS) {
        log_warn("publisher: broker: %s status=%s", why, so_strerror(rc));
        warned_at = now;
      }
      failing = true;
      why[0] = '\0';
    }
  }
  pub_metrics_stop(p->metrics);
  p->metrics = NULL;
  if (result == SO_OK)
    log_info("publisher: stopping owner=%s", p->owner);
  return result;
}
