/* dlq.c - read the DLQ in one pass and put it back in order (see dlq.h). */
#include "dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"

struct dlq {
  struct broker_delivery **held; /* in the order they were got */
  struct dlq_entry *entries;     /* one per held delivery */
  size_t n, cap;
  bool truncated;
};

static void entry_fill(struct dlq_entry *e, const struct broker_delivery *d)
{
  const char *id = d->message_id;
  if (!id || msg_validate_campaign_id(id, NULL, 0) != SO_OK)
    id = broker_delivery_header(d, "x-sendonce-campaign");
  if (id && msg_validate_campaign_id(id, NULL, 0) == SO_OK) {
    snprintf(e->campaign_id, sizeof(e->campaign_id), "%s", id);
  } else if (msg_peek_campaign_id(d->body, d->body_len, e->campaign_id,
                                  sizeof(e->campaign_id)) != SO_OK) {
    e->campaign_id[0] = '\0';
  }
  e->reason = broker_delivery_header(d, "x-sendonce-error");
  if (!e->reason)
    e->reason = d->death_reason ? d->death_reason : "unknown";
  e->queue = d->death_queue ? d->death_queue : "";
  e->death_count = d->death_count;
}

static int grow(struct dlq *q)
{
  if (q->n < q->cap)
    return SO_OK;
  size_t cap = q->cap ? q->cap * 2 : 16;
  struct broker_delivery **h = realloc(q->held, cap * sizeof(*h));
  if (!h)
    return SO_ERR_NOMEM;
  q->held = h;
  struct dlq_entry *e = realloc(q->entries, cap * sizeof(*e));
  if (!e)
    return SO_ERR_NOMEM;
  q->entries = e;
  q->cap = cap;
  return SO_OK;
}

int dlq_read(struct broker *b, const char *queue, size_t limit,
             struct dlq **out, char *err, size_t errlen)
{
  struct dlq *q = calloc(1, sizeof(*q));
  int rc = SO_OK;
  *out = NULL;
  if (!q)
    return SO_ERR_NOMEM;
  for (;;) {
    if (q->n >= limit) {
      /* One more get tells whether there is more; hold it too so the
       * order is kept when everything goes back. */
      struct broker_delivery *extra = NULL;
      rc = broker_get(b, queue, &extra, err, errlen);
      if (rc == SO_OK) {
        q->truncated = true;
        if ((rc = grow(q))) {
          broker_delivery_free(extra);
          goto fail;
        }
        q->held[q->n] = extra;
        entry_fill(&q->entries[q->n], extra);
        q->n++;
      } else if (rc != SO_ERR_NOTFOUND) {
        goto fail;
      }
      break;
    }
    struct broker_delivery *d = NULL;
    rc = broker_get(b, queue, &d, err, errlen);
    if (rc == SO_ERR_NOTFOUND)
      break;
    if (rc)
      goto fail;
    if ((rc = grow(q))) {
      broker_delivery_free(d);
      goto fail;
    }
    q->held[q->n] = d;
    entry_fill(&q->entries[q->n], d);
    q->n++;
  }
  *out = q;
  return SO_OK;
fail:
  (void)dlq_finish(b, q, NULL, NULL);
  return rc;
}

size_t dlq_count(const struct dlq *d)
{
  return d ? d->n : 0;
}

const struct dlq_entry *dlq_entry_at(const struct dlq *d, size_t i)
{
  return d && i < d->n ? &d->entries[i] : NULL;
}

bool dlq_truncated(const struct dlq *d)
{
  return d && d->truncated;
}

const struct dlq_entry *dlq_find(const struct dlq *d, const char *id)
{
  for (size_t i = 0; d && i < d->n; i++)
    if (d->entries[i].campaign_id[0] &&
        strcmp(d->entries[i].campaign_id, id) == 0)
      return &d->entries[i];
  return NULL;
}

int dlq_finish(struct broker *b, struct dlq *d, const char *remove_id,
               size_t *removed)
{
  int first = SO_OK;
  size_t n_removed = 0;
  if (removed)
    *removed = 0;
  if (!d)
    return SO_OK;
  for (size_t i = 0; i < d->n; i++) {
    struct broker_delivery *m = d->held[i];
    bool remove =
        remove_id && strcmp(d->entries[i].campaign_id, remove_id) == 0;
    int rc = remove ? broker_ack(b, m->generation, m->tag)
                    : broker_nack(b, m->generation, m->tag, true);
    if (rc == SO_OK && remove)
      n_removed++;
    if (rc && first == SO_OK) {
      first = rc;
      log_warn("watchdog: dlq: %s failed: %s campaign=%s",
               remove ? "ack" : "requeue", so_strerror(rc),
               d->entries[i].campaign_id);
    }
    broker_delivery_free(m);
  }
  free(d->held);
  free(d->entries);
  free(d);
  if (removed)
    *removed = n_removed;
  return first;
}
