/* consumer.c - the `run` verb: config -> broker session -> workers + lease
 * thread -> the owner's loop (dispatch.c) -> exit status. */
#include "consumer.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "cli.h"
#include "consumer_metrics.h"
#include "dispatch.h"
#include "lease.h"
#include "live_cfg.h"
#include "log.h"
#include "stats.h"
#include "topology.h"
#include "worker.h"

/* Signals seen: 1 = drain and release, 2 = hurry. Written by the handler
 * only; every loop polls it. */
static volatile sig_atomic_t stop_signals;

static void on_signal(int sig)
{
  (void)sig;
  if (stop_signals < 2)
    stop_signals++;
}

/* SIGHUP: set by the handler, acted on by the owner's loop (on_tick). */
static volatile sig_atomic_t reload_requested;

static void on_hup(int sig)
{
  (void)sig;
  reload_requested = 1;
}

static void install_signals(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* A reload is no reason to cut a read or write short. */
  sa.sa_handler = on_hup;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* on_tick: the owner's loop, between polls: a SIGHUP reloads the safe
 * settings (live_cfg.h); a bad file keeps the old config whole. */
static void on_tick(void *arg)
{
  struct live_cfg *live = arg;
  if (!reload_requested)
    return;
  reload_requested = 0;
  char err[1024] = "";
  log_info("consumer: SIGHUP: reloading the config");
  int rc = live_cfg_reload(live, err, sizeof(err));
  if (rc != SO_OK)
    log_error("consumer: reload refused, kept the old config: %s status=%s",
              err, so_strerror(rc));
}

/* check_registry: open the registry once at start to refuse a database we
 * cannot use (newer schema, bad path); one that is merely down only
 * defers triggers, so the consumer starts anyway. */
static int check_registry(const struct worker_shared *sh)
{
  struct registry *r = NULL;
  char err[512] = "";
  int rc = registry_open(&sh->ro, &r, err, sizeof(err));
  registry_close(r);
  if (rc == SO_OK)
    return SO_OK;
  if (rc == SO_ERR_UNAVAILABLE || rc == SO_ERR_TIMEOUT) {
    log_warn(
        "consumer: registry unreachable at start: %s (triggers go to "
        "a retry queue until it answers)",
        err);
    return SO_OK;
  }
  log_error("consumer: registry refused: %s status=%s", err, so_strerror(rc));
  return rc;
}

int consumer_run_cb(const struct config *cfg, int argc, char **argv)
{
  if (argc > 1) {
    bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
    if (!help)
      fprintf(stderr, "sendonce-consumer run: unexpected argument '%s'\n",
              argv[1]);
    fprintf(help ? stdout : stderr,
            "usage: sendonce-consumer [OPTIONS] run\n"
            "Consume campaign-due triggers and send each campaign once, "
            "until SIGTERM\n(a second SIGTERM hurries the shutdown).\n");
    return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  }
  int exit_status = CLI_EXIT_FAILURE;
  char err[1024] = "";
  struct topology topo;
  struct broker *b = NULL;
  struct dispatch *d = NULL;
  struct lease *lease = NULL;
  struct worker *workers = NULL;
  struct live_cfg *live = NULL;
  struct consumer_metrics *metrics = NULL;
  struct consumer_stats stats;
  struct worker_shared sh;
  int n_started = 0;
  int nw = cfg->consumer.workers;

  stats_init(&stats);
  memset(&sh, 0, sizeof(sh));
  worker_shared_init(&sh, cfg);
  if (cfg->n_providers == 0) {
    log_error(
        "consumer: no provider configured: every campaign would be "
        "dead-lettered as unknown_channel; add a providers section");
    return CONFIG_EXIT_BAD;
  }
  if (topology_from_config(&topo, &cfg->topology, err, sizeof(err))) {
    log_error("consumer: topology: %s", err);
    return CONFIG_EXIT_BAD;
  }
  /* curl's global init is not thread-safe: before any thread. */
  curl_global_init(CURL_GLOBAL_DEFAULT);
  install_signals();
  metrics = consumer_metrics_start(cfg, &stats);
  if (check_registry(&sh) != SO_OK)
    goto out;

  struct broker_options bo;
  broker_options_from_config(&bo, &cfg->broker, "consumer");
  bo.topology = &topo;
  int rc = broker_open(&bo, &b, err, sizeof(err));
  if (rc == SO_OK)
    rc = broker_connect(b, err, sizeof(err));
  if (rc == SO_ERR_CONFLICT || rc == SO_ERR_INVALID) {
    log_error("consumer: refusing to start: %s", err);
    exit_status = CONFIG_EXIT_BAD;
    goto out;
  }
  if (rc == SO_ERR_REFUSED || rc == SO_ERR_NOMEM) {
    log_error("consumer: broker: %s status=%s", err, so_strerror(rc));
    goto out;
  }
  if (rc != SO_OK)
    log_warn("consumer: broker unreachable at start: %s (retrying)", err);
  rc = broker_consume(b, topo.campaigns, nw, err, sizeof(err));
  if (rc == SO_ERR_NOTFOUND || rc == SO_ERR_INVALID) {
    log_error("consumer: consume %s: %s", topo.campaigns, err);
    goto out;
  }

  /* A trigger waits at most two lease periods for a free worker. */
  int park_ms = cfg->registry.lease_ttl_s * 2000;
  if (dispatch_new(b, &topo, &stats, nw, park_ms, &d) != SO_OK ||
      lease_start(&sh.ro, cfg->registry.lease_ttl_s, &stats, &lease) != SO_OK ||
      !(live = live_cfg_new(cfg)) ||
      !(workers = calloc((size_t)nw, sizeof(*workers)))) {
    log_error("consumer: cannot start: out of memory or threads");
    goto out;
  }
  sh.topo = &topo;
  sh.dispatch = d;
  sh.lease = lease;
  sh.stats = &stats;
  sh.live = live;
  sh.stop = &stop_signals;
  dispatch_on_tick(d, on_tick, live);
  for (; n_started < nw; n_started++)
    if (worker_start(&workers[n_started], &sh, n_started) != SO_OK)
      break;
  /* Workers that never started count as exited for the owner's loop. */
  for (int i = n_started; i < nw; i++)
    dispatch_worker_exit(d);
  if (n_started == 0) {
    log_error("consumer: cannot start worker threads");
    stop_signals = 2;
  }
  log_info(
      "consumer: running owner=%s workers=%d queue=%s prefetch=%d "
      "lease_ttl_s=%d mark_batch_size=%d registry=%s",
      cfg->consumer.owner, n_started, topo.campaigns, nw,
      cfg->registry.lease_ttl_s, cfg->registry.mark_batch_size,
      cfg->registry.backend == CONFIG_REGISTRY_POSTGRESQL ? "postgresql"
                                                          : "sqlite");
  int drain_ms = cfg->registry.lease_ttl_s * 1000;
  if (drain_ms > 30000)
    drain_ms = 30000;
  rc = dispatch_run(d, &stop_signals, drain_ms);
  exit_status = rc == SO_OK && n_started > 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
out:
  for (int i = 0; i < n_started; i++)
    worker_join(&workers[i]);
  free(workers);
  lease_stop(lease);
  dispatch_free(d);
  broker_close(b);
  live_cfg_free(live);
  /* The server reads the stats in place: stop it before they go. */
  consumer_metrics_stop(metrics);
  stats_log_summary(&stats);
  log_info("consumer: exit status=%d", exit_status);
  curl_global_cleanup();
  return exit_status;
}
