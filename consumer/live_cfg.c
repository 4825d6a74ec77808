/* live_cfg.c - SIGHUP-reloadable settings of the consumer (live_cfg.h). */
#include "live_cfg.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config_reload.h"

struct live_cfg {
  pthread_mutex_t mu;
  /* A shallow copy of the config loaded at start: the reload writes only
   * its int fields, so its strings stay those of the original. Written by
   * the reloading thread under mu; read by workers under mu. */
  struct config cur;
};

struct live_cfg *live_cfg_new(const struct config *cfg)
{
  struct live_cfg *lc = calloc(1, sizeof(*lc));
  if (!lc)
    return NULL;
  if (pthread_mutex_init(&lc->mu, NULL) != 0) {
    free(lc);
    return NULL;
  }
  lc->cur = *cfg;
  return lc;
}

void live_cfg_free(struct live_cfg *lc)
{
  if (!lc)
    return;
  pthread_mutex_destroy(&lc->mu);
  free(lc);
}

bool live_cfg_provider(struct live_cfg *lc, const char *channel,
                       struct config_provider *out)
{
  pthread_mutex_lock(&lc->mu);
  const struct config_provider *p = config_provider_find(&lc->cur, channel);
  if (p)
    *out = *p;
  pthread_mutex_unlock(&lc->mu);
  return p != NULL;
}

int live_cfg_reload(struct live_cfg *lc, char *err, size_t errlen)
{
  /* Load and merge into a copy outside the lock (file I/O), then publish
   * it whole; this thread is the only writer, so nothing changes cur in
   * between. */
  pthread_mutex_lock(&lc->mu);
  struct config next = lc->cur;
  pthread_mutex_unlock(&lc->mu);
  int rc = config_reload_safe(&next, NULL, NULL, 0, err, errlen);
  if (rc != SO_OK)
    return rc;
  pthread_mutex_lock(&lc->mu);
  lc->cur = next;
  pthread_mutex_unlock(&lc->mu);
  return SO_OK;
}
