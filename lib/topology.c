/* topology.c - names, declaration and argument-mismatch diagnosis of the
 * broker objects (docs/topology.md says why each argument is there).
 */
#include "topology.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_impl.h"
#include "log.h"

/* ---- names ------------------------------------------------------------ */

static bool prefix_ok(const char *p)
{
  size_t n = strlen(p);
  if (n == 0 || n > 100)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
              c == '-';
    if (!ok)
      return false;
  }
  return true;
}

static int cmp_int(const void *a, const void *b)
{
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

int topology_init(struct topology *t, const char *prefix, int delivery_limit,
                  const int *retry_delays_s, size_t n_retry, char *err,
                  size_t errlen)
{
  int delays[TOPOLOGY_MAX_RETRY];
  memset(t, 0, sizeof(*t));
  if (!prefix || !prefix_ok(prefix)) {
    so_errf(err, errlen,
            "topology: prefix must be 1..100 chars of [A-Za-z0-9._:-]");
    return SO_ERR_INVALID;
  }
  if (delivery_limit < 1) {
    so_errf(err, errlen, "topology: delivery_limit must be >= 1");
    return SO_ERR_INVALID;
  }
  if (n_retry > TOPOLOGY_MAX_RETRY) {
    so_errf(err, errlen, "topology: at most %d retry delays",
            TOPOLOGY_MAX_RETRY);
    return SO_ERR_INVALID;
  }
  if (n_retry)
    memcpy(delays, retry_delays_s, n_retry * sizeof(int));
  qsort(delays, n_retry, sizeof(int), cmp_int);
  for (size_t i = 0; i < n_retry; i++) {
    /* x-message-ttl is a 32-bit count of milliseconds in practice. */
    if (delays[i] < 1 || delays[i] > 86400 * 24 ||
        (i > 0 && delays[i] == delays[i - 1])) {
      so_errf(err, errlen,
              "topology: retry delays must be distinct, 1..%d seconds",
              86400 * 24);
      return SO_ERR_INVALID;
    }
  }
  snprintf(t->exchange, sizeof(t->exchange), "%s", prefix);
  snprintf(t->campaigns, sizeof(t->campaigns), "%s.campaigns", prefix);
  snprintf(t->dlx, sizeof(t->dlx), "%s.dlx", prefix);
  snprintf(t->dead, sizeof(t->dead), "%s.dead", prefix);
  snprintf(t->events, sizeof(t->events), "%s.events", prefix);
  for (size_t i = 0; i < n_retry; i++) {
    t->retry[i].delay_s = delays[i];
    snprintf(t->retry[i].queue, sizeof(t->retry[i].queue), "%s.retry.%ds",
             prefix, delays[i]);
  }
  t->n_retry = n_retry;
  t->delivery_limit = delivery_limit;
  return SO_OK;
}

int topology_from_config(struct topology *t, const struct config_topology *c,
                         char *err, size_t errlen)
{
  return topology_init(t, c->prefix, c->delivery_limit, c->retry_delays_s,
                       c->n_retry_delays, err, errlen);
}

const char *topology_retry_queue(const struct topology *t, int delay_s)
{
  if (t->n_retry == 0)
    return NULL;
  for (size_t i = 0; i < t->n_retry; i++)
    if (t->retry[i].delay_s >= delay_s)
      return t->retry[i].queue;
  return t->retry[t->n_retry - 1].queue;
}

/* ---- mismatch diagnosis --------------------------------------------- */

/* Copy the text between `from` (just after) and `to` (or end) into out. */
static const char *between(const char *s, const char *from, const char *to,
                           char *out, size_t outlen)
{
  const char *a = strstr(s, from);
  if (!a)
    return NULL;
  a += strlen(from);
  const char *z = to ? strstr(a, to) : a + strlen(a);
  if (!z)
    return NULL;
  snprintf(out, outlen, "%.*s", (int)(z - a), a);
  return z;
}

int topology_explain_mismatch(const char *reply_text, char *out, size_t outlen)
{
  char arg[128], kind[32], name[256], want[256], have[256];
  const char *p =
      between(reply_text, "inequivalent arg '", "'", arg, sizeof(arg));
  if (p)
    p = between(p, "' for ", " '", kind, sizeof(kind));
  if (p)
    p = between(p, " '", "'", name, sizeof(name));
  if (p)
    p = between(p, "received ", " but current is ", want, sizeof(want));
  if (p)
    p = between(p, " but current is ", NULL, have, sizeof(have));
  if (!p) {
    snprintf(out, outlen, "%s", reply_text);
    return SO_ERR_INVALID;
  }
  /* "the value 'quorum' of type 'longstr'" reads better as "'quorum'";
   * "none" means the argument is not set at all. */
  char *w = strncmp(want, "the value ", 10) == 0 ? want + 10 : want;
  char *h = strncmp(have, "the value ", 10) == 0 ? have + 10 : have;
  char *cut;
  if ((cut = strstr(w, " of type '")) != NULL)
    *cut = '\0';
  if ((cut = strstr(h, " of type '")) != NULL)
    *cut = '\0';
  const char *hv = strcmp(h, "none") == 0 ? "none (not set)" : h;
  const char *wv = strcmp(w, "none") == 0 ? "none (not set)" : w;
  snprintf(out, outlen,
           "%s '%s' already exists with a different %s: sendonce declares "
           "%s, the broker has %s. Fix: delete the %s (move its messages "
           "first, e.g. with a shovel) so it is re-created, or choose "
           "another topology.prefix. (broker said: %s)",
           kind, name, arg, wv, hv, kind, reply_text);
  return SO_OK;
}

/* ---- declare ---------------------------------------------------------- */

/* End an RPC on channel 1: a PRECONDITION_FAILED becomes the operator's
 * message and channel 1 is reopened (the broker closed it). */
static int finish(struct broker *b, const char *what, const char *name,
                  char *err, size_t errlen)
{
  char why[BROKER_TEXT_MAX];
  int rc = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_MAIN, what,
                         why, sizeof(why));
  if (rc == SO_OK)
    return SO_OK;
  if (rc == SO_ERR_CONFLICT) {
    if (topology_explain_mismatch(b->reply_text, err, errlen) != SO_OK)
      so_errf(err, errlen, "topology: %s %s: %s", what, name, b->reply_text);
    log_error("topology: %s", err);
  } else {
    so_errf(err, errlen, "topology: %s %s: %s", what, name, why);
  }
  if (b->conn && !b->main_open) {
    int rc2 = broker__open_main(b, NULL, 0);
    (void)rc2; /* the caller learns of a loss at its next call */
  }
  return rc;
}

static int declare_exchange(struct broker *b, const char *name,
                            const char *type, char *err, size_t errlen)
{
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_exchange_declare(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(name),
                        amqp_cstring_bytes(type), 0, 1, 0, 0, amqp_empty_table);
  return finish(b, "exchange.declare", name, err, errlen);
}

static void arg_str(amqp_table_entry_t *e, const char *key, const char *v)
{
  e->key = amqp_cstring_bytes(key);
  e->value.kind = AMQP_FIELD_KIND_UTF8;
  e->value.value.bytes = amqp_cstring_bytes(v);
}

static void arg_long(amqp_table_entry_t *e, const char *key, int64_t v)
{
  e->key = amqp_cstring_bytes(key);
  e->value.kind = AMQP_FIELD_KIND_I64;
  e->value.value.i64 = v;
}

static int declare_queue(struct broker *b, const char *name,
                         amqp_table_entry_t *args, int n_args, char *err,
                         size_t errlen)
{
  amqp_table_t table = {n_args, args};
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_queue_declare(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(name), 0, 1, 0,
                     0, table);
  return finish(b, "queue.declare", name, err, errlen);
}

static int bind(struct broker *b, const char *queue, const char *exchange,
                const char *key, char *err, size_t errlen)
{
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_queue_bind(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(queue),
                  amqp_cstring_bytes(exchange), amqp_cstring_bytes(key),
                  amqp_empty_table);
  return finish(b, "queue.bind", queue, err, errlen);
}

int topology_declare(struct broker *b, const struct topology *t, char *err,
                     size_t errlen)
{
  amqp_table_entry_t a[6];
  int rc;
  if (!b->conn || !b->main_open) {
    so_errf(err, errlen, "topology: broker not connected");
    return SO_ERR_UNAVAILABLE;
  }
  if ((rc = declare_exchange(b, t->exchange, "direct", err, errlen)) ||
      (rc = declare_exchange(b, t->dlx, "fanout", err, errlen)) ||
      (rc = declare_exchange(b, t->events, "topic", err, errlen)))
    return rc;

  arg_str(&a[0], "x-queue-type", "quorum");
  arg_long(&a[1], "x-delivery-limit", t->delivery_limit);
  arg_str(&a[2], "x-dead-letter-exchange", t->dlx);
  arg_str(&a[3], "x-dead-letter-strategy", "at-least-once");
  arg_str(&a[4], "x-overflow", "reject-publish");
  if ((rc = declare_queue(b, t->campaigns, a, 5, err, errlen)) ||
      (rc = bind(b, t->campaigns, t->exchange, TOPOLOGY_ROUTING_KEY_DUE, err,
                 errlen)))
    return rc;

  arg_str(&a[0], "x-queue-type", "quorum");
  if ((rc = declare_queue(b, t->dead, a, 1, err, errlen)) ||
      (rc = bind(b, t->dead, t->dlx, "", err, errlen)))
    return rc;

  for (size_t i = 0; i < t->n_retry; i++) {
    arg_str(&a[0], "x-queue-type", "quorum");
    arg_long(&a[1], "x-message-ttl", (int64_t)t->retry[i].delay_s * 1000);
    arg_str(&a[2], "x-dead-letter-exchange", t->exchange);
    arg_str(&a[3], "x-dead-letter-routing-key", TOPOLOGY_ROUTING_KEY_DUE);
    arg_str(&a[4], "x-dead-letter-strategy", "at-least-once");
    arg_str(&a[5], "x-overflow", "reject-publish");
    if ((rc = declare_queue(b, t->retry[i].queue, a, 6, err, errlen)))
      return rc;
  }
  log_info("topology: declared prefix=%s retry_queues=%zu delivery_limit=%d",
           t->exchange, t->n_retry, t->delivery_limit);
  return SO_OK;
}

/* ---- delete ------------------------------------------------------------ */

static int delete_one(struct broker *b, bool queue, const char *name)
{
  char err[BROKER_TEXT_MAX];
  if (!b->conn || !b->main_open) {
    int rc = broker__ensure(b, err, sizeof(err));
    if (rc)
      return rc;
  }
  broker__guard(b, b->opts.op_timeout_ms);
  if (queue)
    amqp_queue_delete(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(name), 0, 0);
  else
    amqp_exchange_delete(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(name), 0);
  int rc = finish(b, queue ? "queue.delete" : "exchange.delete", name, err,
                  sizeof(err));
  return rc == SO_ERR_NOTFOUND ? SO_OK : rc;
}

int topology_delete(struct broker *b, const struct topology *t)
{
  int first = SO_OK, rc;
  const char *queues[2 + TOPOLOGY_MAX_RETRY];
  size_t nq = 0;
  queues[nq++] = t->campaigns;
  queues[nq++] = t->dead;
  for (size_t i = 0; i < t->n_retry; i++)
    queues[nq++] = t->retry[i].queue;
  for (size_t i = 0; i < nq; i++)
    if ((rc = delete_one(b, true, queues[i])) && !first)
      first = rc;
  const char *exchanges[] = {t->exchange, t->dlx, t->events};
  for (size_t i = 0; i < 3; i++)
    if ((rc = delete_one(b, false, exchanges[i])) && !first)
      first = rc;
  return first;
}
