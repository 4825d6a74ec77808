/* metrics.h - a Prometheus registry and its /metrics HTTP endpoint.
 *
 * A registry holds families (one name, one HELP, one TYPE) of samples;
 * each sample carries at most one label (e.g. outcome="sent"), fixed when
 * it is registered. Values are atomics, so worker threads update them
 * without a lock; the HTTP thread reads them while rendering.
 *
 * Three ways to give a sample its value:
 *   - owned:     metrics_counter() / metrics_gauge() return an atomic the
 *                registry owns; bump it with metrics_add() / metrics_set().
 *   - borrowed:  metrics_expose() reads an atomic_llong that lives
 *                elsewhere (e.g. a field of the consumer's struct
 *                consumer_stats), so nothing is copied or kept in sync.
 *   - computed:  metrics_gauge_cb() calls a function at each scrape (e.g.
 *                a queue depth the program already knows).
 * Histograms have fixed integer bucket bounds in the unit they are
 * observed in (e.g. ms) and a `scale` dividing them for exposition (1000:
 * exposed in seconds, as Prometheus names want). metrics_histogram() owns
 * its buckets; metrics_expose_histogram() borrows per-bucket counts.
 *
 * Exposition is text format 0.0.4: families in registration order, each
 * "# HELP", "# TYPE", then its samples in registration order; histograms
 * as cumulative _bucket{le=...} lines, _sum and _count.
 *
 * Threading: register everything before metrics_serve() or while holding
 * no expectation of order: registration and rendering share a mutex, value
 * updates are lock-free. Borrowed atomics and callback arguments must
 * outlive the registry's server (stop it first).
 */
#ifndef SENDONCE_METRICS_H
#define SENDONCE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct metrics;
struct metrics_histogram;
struct metrics_server;

enum metrics_type {
  METRICS_COUNTER = 0, /* only grows; name should end in _total */
  METRICS_GAUGE = 1,   /* goes up and down */
};

/* metrics_new: an empty registry, or NULL when out of memory. */
struct metrics *metrics_new(void);

/* metrics_free: release the registry. Stop its server first. NULL: no-op. */
void metrics_free(struct metrics *m);

/* Registering a sample. `name` is a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*);
 * `help` one line of text; `label` NULL for none, else "name=value" split
 * at the first '=' (the value is escaped on output; a label name "le" is
 * refused). A family's samples must share type and help; the first
 * registration fixes them. Registering the same name and label twice is
 * refused. Each returns SO_OK, SO_ERR_INVALID (bad name, label, type
 * mismatch, duplicate) or SO_ERR_NOMEM. */

/* metrics_counter / metrics_gauge: an owned value starting at 0, stored in
 * *out (valid until metrics_free()). */
int metrics_counter(struct metrics *m, const char *name, const char *label,
                    const char *help, atomic_llong **out) SO_MUST_CHECK;
int metrics_gauge(struct metrics *m, const char *name, const char *label,
                  const char *help, atomic_llong **out) SO_MUST_CHECK;

/* metrics_expose: a sample whose value is read from *value at each scrape. */
int metrics_expose(struct metrics *m, enum metrics_type type, const char *name,
                   const char *label, const char *help,
                   const atomic_llong *value) SO_MUST_CHECK;

/* metrics_gauge_cb: a gauge computed by cb(arg) at each scrape, on the
 * HTTP thread (so cb must be thread-safe and quick). */
int metrics_gauge_cb(struct metrics *m, const char *name, const char *label,
                     const char *help, double (*cb)(void *arg),
                     void *arg) SO_MUST_CHECK;

/* metrics_histogram: an owned histogram with n ascending upper bounds
 * (copied; a +Inf bucket is added) in the observed unit, exposed divided
 * by scale (> 0). *out is valid until metrics_free(). */
int metrics_histogram(struct metrics *m, const char *name, const char *label,
                      const char *help, const int64_t *bounds, size_t n,
                      double scale,
                      struct metrics_histogram **out) SO_MUST_CHECK;

/* metrics_expose_histogram: a histogram read from elsewhere: counts[0..n]
 * are the per-bucket (not cumulative) counts, counts[n] everything above
 * bounds[n-1]; sum may be NULL (no _sum line is written then). bounds,
 * counts and sum are borrowed. */
int metrics_expose_histogram(struct metrics *m, const char *name,
                             const char *label, const char *help,
                             const int64_t *bounds, size_t n, double scale,
                             const atomic_llong *counts,
                             const atomic_llong *sum) SO_MUST_CHECK;

/* Updating values: lock-free, from any thread. */
static inline void metrics_add(atomic_llong *v, long long n)
{
  atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

static inline void metrics_set(atomic_llong *v, long long n)
{
  atomic_store_explicit(v, n, memory_order_relaxed);
}

/* metrics_observe: count one observation (in the histogram's unit). */
void metrics_observe(struct metrics_histogram *h, int64_t value);

/* metrics_render: the exposition text, NUL-terminated, length in *len
 * (may be NULL). Caller frees. NULL when out of memory. */
char *metrics_render(struct metrics *m, size_t *len);

/* metrics_serve: serve m over HTTP on its own thread (libmicrohttpd):
 *   GET /metrics  200, Content-Type: text/plain; version=0.0.4
 *   GET /healthz  200 "ok\n"
 *   anything else 404 (405 for another method on those two paths).
 * `address` is a numeric IPv4 or IPv6 address (NULL: 127.0.0.1); port 0
 * picks a free port (metrics_server_port() tells which). Returns SO_OK
 * and the server in *out, or SO_ERR_INVALID (bad address), SO_ERR_IO
 * (cannot listen: "metrics: cannot listen on 127.0.0.1:9642: Address
 * already in use" in err), SO_ERR_NOMEM. */
int metrics_serve(struct metrics *m, const char *address, int port,
                  struct metrics_server **out, char *err,
                  size_t errlen) SO_MUST_CHECK;

/* metrics_serve_or_log: metrics_serve() for a daemon, where metrics are an
 * aid and not the job: logs "<who>: metrics on http://ADDR:PORT/metrics",
 * or the error with "(running without /metrics)", and returns the server
 * or NULL; the caller carries on either way. */
struct metrics_server *metrics_serve_or_log(struct metrics *m,
                                            const char *address, int port,
                                            const char *who);

/* metrics_server_port: the port the server listens on. */
int metrics_server_port(const struct metrics_server *s);

/* metrics_server_stop: stop serving (waits for the HTTP thread), close the
 * socket and free the server. NULL: no-op. */
void metrics_server_stop(struct metrics_server *s);

#endif /* SENDONCE_METRICS_H */
