/* metrics.c - a Prometheus registry (text format 0.0.4) and its HTTP
 * endpoint on libmicrohttpd. */
#include "metrics.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A rendered page never grows past this: a registry of a few hundred
 * samples takes a few kB, so hitting the cap means a bug. */
#define METRICS_RENDER_CAP (4u << 20)

enum sample_kind {
  SAMPLE_VALUE,     /* an atomic, owned or borrowed */
  SAMPLE_CALLBACK,  /* a gauge computed at scrape time */
  SAMPLE_HISTOGRAM, /* buckets, owned or borrowed */
};

struct metrics_histogram {
  int64_t *bounds; /* owned copy */
  size_t n;
  atomic_llong *counts; /* n + 1 per-bucket counts */
  atomic_llong sum;
};

struct sample {
  enum sample_kind kind;
  char *label_name; /* NULL: no label */
  char *label_value;
  atomic_llong own;          /* SAMPLE_VALUE when owned */
  const atomic_llong *value; /* SAMPLE_VALUE: &own or borrowed */
  double (*cb)(void *arg);   /* SAMPLE_CALLBACK */
  void *cb_arg;
  const int64_t *bounds; /* SAMPLE_HISTOGRAM */
  size_t n_bounds;
  double scale;
  const atomic_llong *counts;     /* n_bounds + 1 per-bucket counts */
  const atomic_llong *sum;        /* or NULL */
  struct metrics_histogram *hist; /* owned histogram, or NULL */
};

struct family {
  char *name;
  char *help;
  const char *type; /* "counter", "gauge", "histogram" */
  struct sample **samples;
  size_t n_samples;
};

struct metrics {
  pthread_mutex_t lock; /* registration vs rendering */
  struct family *families;
  size_t n_families;
};

struct metrics *metrics_new(void)
{
  struct metrics *m = calloc(1, sizeof(*m));
  if (!m)
    return NULL;
  if (pthread_mutex_init(&m->lock, NULL) != 0) {
    free(m);
    return NULL;
  }
  return m;
}

static void sample_free(struct sample *s)
{
  if (!s)
    return;
  if (s->hist) {
    free(s->hist->bounds);
    free(s->hist->counts);
    free(s->hist);
  }
  free(s->label_name);
  free(s->label_value);
  free(s);
}

void metrics_free(struct metrics *m)
{
  if (!m)
    return;
  for (size_t i = 0; i < m->n_families; i++) {
    struct family *f = &m->families[i];
    for (size_t j = 0; j < f->n_samples; j++)
      sample_free(f->samples[j]);
    free(f->samples);
    free(f->name);
    free(f->help);
  }
  free(m->families);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

/* ---- registration ----------------------------------------------------- */

static bool name_valid(const char *name, bool colon_ok)
{
  if (!name || !*name)
    return false;
  for (const char *p = name; *p; p++) {
    char c = *p;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon_ok && c == ':');
    if (!alpha && !(p != name && c >= '0' && c <= '9'))
      return false;
  }
  return true;
}

/* label_split: "name=value" into two owned strings on s. */
static int label_split(struct sample *s, const char *label)
{
  if (!label)
    return SO_OK;
  const char *eq = strchr(label, '=');
  if (!eq)
    return SO_ERR_INVALID;
  size_t nlen = (size_t)(eq - label);
  s->label_name = strndup(label, nlen);
  s->label_value = strdup(eq + 1);
  if (!s->label_name || !s->label_value)
    return SO_ERR_NOMEM;
  /* "le" belongs to histogram buckets; names starting "__" are reserved. */
  if (!name_valid(s->label_name, false) || strcmp(s->label_name, "le") == 0 ||
      strncmp(s->label_name, "__", 2) == 0)
    return SO_ERR_INVALID;
  return SO_OK;
}

static bool same_label(const struct sample *a, const struct sample *b)
{
  if (!a->label_name || !b->label_name)
    return !a->label_name && !b->label_name;
  return strcmp(a->label_name, b->label_name) == 0 &&
         strcmp(a->label_value, b->label_value) == 0;
}

/* family_get: the family `name`, created when new; refuses a type or help
 * that differs from the first registration. Called with the lock held. */
static int family_get(struct metrics *m, const char *name, const char *help,
                      const char *type, struct family **out)
{
  for (size_t i = 0; i < m->n_families; i++) {
    struct family *f = &m->families[i];
    if (strcmp(f->name, name) == 0) {
      if (strcmp(f->type, type) != 0 || strcmp(f->help, help) != 0)
        return SO_ERR_INVALID;
      *out = f;
      return SO_OK;
    }
  }
  struct family *grown =
      realloc(m->families, (m->n_families + 1) * sizeof(*grown));
  if (!grown)
    return SO_ERR_NOMEM;
  m->families = grown;
  struct family *f = &m->families[m->n_families];
  memset(f, 0, sizeof(*f));
  f->name = strdup(name);
  f->help = strdup(help);
  f->type = type;
  if (!f->name || !f->help) {
    free(f->name);
    free(f->help);
    return SO_ERR_NOMEM;
  }
  m->n_families++;
  *out = f;
  return SO_OK;
}

/* add_sample: validate and file s (taking ownership) under its family. */
static int add_sample(struct metrics *m, const char *name, const char *help,
                      const char *type, const char *label, struct sample *s)
{
  int rc = SO_ERR_INVALID;
  struct family *f = NULL;

  if (!m || !s)
    goto fail_unlocked;
  if (!name_valid(name, true) || !help || strchr(help, '\n'))
    goto fail_unlocked;
  if ((rc = label_split(s, label)) != SO_OK)
    goto fail_unlocked;
  pthread_mutex_lock(&m->lock);
  if ((rc = family_get(m, name, help, type, &f)) != SO_OK)
    goto fail;
  rc = SO_ERR_INVALID;
  for (size_t i = 0; i < f->n_samples; i++) {
    if (same_label(f->samples[i], s))
      goto fail;
  }
  struct sample **grown =
      realloc(f->samples, (f->n_samples + 1) * sizeof(*grown));
  rc = SO_ERR_NOMEM;
  if (!grown)
    goto fail;
  f->samples = grown;
  f->samples[f->n_samples++] = s;
  pthread_mutex_unlock(&m->lock);
  return SO_OK;

fail:
  pthread_mutex_unlock(&m->lock);
fail_unlocked:
  sample_free(s);
  return rc;
}

static int owned_value(struct metrics *m, const char *name, const char *label,
                       const char *help, const char *type, atomic_llong **out)
{
  struct sample *s = calloc(1, sizeof(*s));
  if (!s)
    return SO_ERR_NOMEM;
  s->kind = SAMPLE_VALUE;
  atomic_init(&s->own, 0);
  s->value = &s->own;
  int rc = add_sample(m, name, help, type, label, s);
  if (rc == SO_OK && out)
    *out = &s->own;
  return rc;
}

int metrics_counter(struct metrics *m, const char *name, const char *label,
                    const char *help, atomic_llong **out)
{
  return owned_value(m, name, label, help, "counter", out);
}

int metrics_gauge(struct metrics *m, const char *name, const char *label,
                  const char *help, atomic_llong **out)
{
  return owned_value(m, name, label, help, "gauge", out);
}

int metrics_expose(struct metrics *m, enum metrics_type type, const char *name,
                   const char *label, const char *help,
                   const atomic_llong *value)
{
  if (!value)
    return SO_ERR_INVALID;
  struct sample *s = calloc(1, sizeof(*s));
  if (!s)
    return SO_ERR_NOMEM;
  s->kind = SAMPLE_VALUE;
  s->value = value;
  return add_sample(m, name, help,
                    type == METRICS_COUNTER ? "counter" : "gauge", label, s);
}

int metrics_gauge_cb(struct metrics *m, const char *name, const char *label,
                     const char *help, double (*cb)(void *arg), void *arg)
{
  if (!cb)
    return SO_ERR_INVALID;
  struct sample *s = calloc(1, sizeof(*s));
  if (!s)
    return SO_ERR_NOMEM;
  s->kind = SAMPLE_CALLBACK;
  s->cb = cb;
  s->cb_arg = arg;
  return add_sample(m, name, help, "gauge", label, s);
}

static bool bounds_valid(const int64_t *bounds, size_t n, double scale)
{
  if (!bounds || n == 0 || !(scale > 0))
    return false;
  for (size_t i = 1; i < n; i++) {
    if (bounds[i] <= bounds[i - 1])
      return false;
  }
  return true;
}

int metrics_expose_histogram(struct metrics *m, const char *name,
                             const char *label, const char *help,
                             const int64_t *bounds, size_t n, double scale,
                             const atomic_llong *counts,
                             const atomic_llong *sum)
{
  if (!bounds_valid(bounds, n, scale) || !counts)
    return SO_ERR_INVALID;
  struct sample *s = calloc(1, sizeof(*s));
  if (!s)
    return SO_ERR_NOMEM;
  s->kind = SAMPLE_HISTOGRAM;
  s->bounds = bounds;
  s->n_bounds = n;
  s->scale = scale;
  s->counts = counts;
  s->sum = sum;
  return add_sample(m, name, help, "histogram", label, s);
}

int metrics_histogram(struct metrics *m, const char *name, const char *label,
                      const char *help, const int64_t *bounds, size_t n,
                      double scale, struct metrics_histogram **out)
{
  if (!bounds_valid(bounds, n, scale))
    return SO_ERR_INVALID;
  struct sample *s = calloc(1, sizeof(*s));
  struct metrics_histogram *h = calloc(1, sizeof(*h));
  if (!s || !h)
    goto nomem;
  s->hist = h;
  h->n = n;
  h->bounds = malloc(n * sizeof(*h->bounds));
  h->counts = malloc((n + 1) * sizeof(*h->counts));
  if (!h->bounds || !h->counts)
    goto nomem;
  memcpy(h->bounds, bounds, n * sizeof(*h->bounds));
  for (size_t i = 0; i <= n; i++)
    atomic_init(&h->counts[i], 0);
  atomic_init(&h->sum, 0);
  s->kind = SAMPLE_HISTOGRAM;
  s->bounds = h->bounds;
  s->n_bounds = n;
  s->scale = scale;
  s->counts = h->counts;
  s->sum = &h->sum;
  int rc = add_sample(m, name, help, "histogram", label, s);
  if (rc == SO_OK && out)
    *out = h;
  return rc;

nomem:
  if (h) {
    free(h->bounds);
    free(h->counts);
  }
  free(h);
  free(s);
  return SO_ERR_NOMEM;
}

void metrics_observe(struct metrics_histogram *h, int64_t value)
{
  size_t i = 0;
  while (i < h->n && value > h->bounds[i])
    i++;
  atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum, (long long)value, memory_order_relaxed);
}

/* ---- rendering -------------------------------------------------------- */

struct buf {
  char *data;
  size_t len;
  size_t cap;
  bool failed;
};

static void buf_printf(struct buf *b, const char *fmt, ...) SO_PRINTF(2, 3);

static void buf_printf(struct buf *b, const char *fmt, ...)
{
  va_list ap;
  if (b->failed)
    return;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = true;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t want = b->cap * 2 > b->len + (size_t)n + 1 ? b->cap * 2
                                                      : b->len + (size_t)n + 1;
    char *grown = want <= METRICS_RENDER_CAP ? realloc(b->data, want) : NULL;
    if (!grown) {
      b->failed = true;
      return;
    }
    b->data = grown;
    b->cap = want;
  }
}

/* buf_label_value: a label value escaped as the format wants (\\ \" \n). */
static void buf_label_value(struct buf *b, const char *v)
{
  for (; *v && !b->failed; v++) {
    if (*v == '\\')
      buf_printf(b, "\\\\");
    else if (*v == '"')
      buf_printf(b, "\\\"");
    else if (*v == '\n')
      buf_printf(b, "\\n");
    else
      buf_printf(b, "%c", *v);
  }
}

/* buf_help: HELP text escapes only backslash and newline. */
static void buf_help(struct buf *b, const char *v)
{
  for (; *v && !b->failed; v++) {
    if (*v == '\\')
      buf_printf(b, "\\\\");
    else
      buf_printf(b, "%c", *v);
  }
}

/* buf_double: the format's spelling of a float ("+Inf", "NaN", or %.15g,
 * which keeps 0.005 as 0.005). */
static void buf_double(struct buf *b, double v)
{
  if (v != v)
    buf_printf(b, "NaN");
  else if (v > 1e308 * 10)
    buf_printf(b, "+Inf");
  else if (v < -1e308 * 10)
    buf_printf(b, "-Inf");
  else
    buf_printf(b, "%.15g", v);
}

/* buf_labels: {name="value"[,le="x"]} or nothing. */
static void buf_labels(struct buf *b, const struct sample *s, const char *le)
{
  if (!s->label_name && !le)
    return;
  buf_printf(b, "{");
  if (s->label_name) {
    buf_printf(b, "%s=\"", s->label_name);
    buf_label_value(b, s->label_value);
    buf_printf(b, "\"%s", le ? "," : "");
  }
  if (le)
    buf_printf(b, "le=\"%s\"", le);
  buf_printf(b, "}");
}

static void render_histogram(struct buf *b, const char *name,
                             const struct sample *s)
{
  long long cumulative = 0;
  char le[64];
  for (size_t i = 0; i <= s->n_bounds; i++) {
    cumulative += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    if (i < s->n_bounds)
      snprintf(le, sizeof(le), "%.15g", (double)s->bounds[i] / s->scale);
    else
      snprintf(le, sizeof(le), "+Inf");
    buf_printf(b, "%s_bucket", name);
    buf_labels(b, s, le);
    buf_printf(b, " %lld\n", cumulative);
  }
  if (s->sum) {
    buf_printf(b, "%s_sum", name);
    buf_labels(b, s, NULL);
    buf_printf(b, " ");
    buf_double(b, (double)atomic_load_explicit(s->sum, memory_order_relaxed) /
                      s->scale);
    buf_printf(b, "\n");
  }
  /* _count is the +Inf bucket, so the two always agree. */
  buf_printf(b, "%s_count", name);
  buf_labels(b, s, NULL);
  buf_printf(b, " %lld\n", cumulative);
}

static void render_family(struct buf *b, const struct family *f)
{
  buf_printf(b, "# HELP %s ", f->name);
  buf_help(b, f->help);
  buf_printf(b, "\n# TYPE %s %s\n", f->name, f->type);
  for (size_t i = 0; i < f->n_samples; i++) {
    const struct sample *s = f->samples[i];
    switch (s->kind) {
      case SAMPLE_VALUE:
        buf_printf(b, "%s", f->name);
        buf_labels(b, s, NULL);
        buf_printf(b, " %lld\n",
                   atomic_load_explicit(s->value, memory_order_relaxed));
        break;
      case SAMPLE_CALLBACK:
        buf_printf(b, "%s", f->name);
        buf_labels(b, s, NULL);
        buf_printf(b, " ");
        buf_double(b, s->cb(s->cb_arg));
        buf_printf(b, "\n");
        break;
      case SAMPLE_HISTOGRAM:
        render_histogram(b, f->name, s);
        break;
    }
  }
}

char *metrics_render(struct metrics *m, size_t *len)
{
  struct buf b = {malloc(4096), 0, 4096, false};
  if (!b.data)
    return NULL;
  b.data[0] = '\0';
  pthread_mutex_lock(&m->lock);
  for (size_t i = 0; i < m->n_families && !b.failed; i++)
    render_family(&b, &m->families[i]);
  pthread_mutex_unlock(&m->lock);
  if (b.failed) {
    free(b.data);
    return NULL;
  }
  if (len)
    *len = b.len;
  return b.data;
}

/* ---- the HTTP server -------------------------------------------------- */

struct metrics_server {
  struct metrics *m;
  struct MHD_Daemon *daemon;
  int fd;
  int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *type, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
  struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result rc = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return rc;
}

static enum MHD_Result handle_cb(void *cls, struct MHD_Connection *c,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
  struct metrics_server *s = cls;
  static const char text[] = "text/plain; charset=utf-8";
  (void)version;
  (void)upload_data;
  (void)req_cls;

  /* A request body is never wanted: swallow it and answer at the end. */
  if (*upload_data_size != 0) {
    *upload_data_size = 0;
    return MHD_YES;
  }
  bool known = strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0;
  if (!known)
    return reply(c, MHD_HTTP_NOT_FOUND, text, (char *)"not found\n", 10,
                 MHD_RESPMEM_PERSISTENT);
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text,
                 (char *)"method not allowed\n", 19, MHD_RESPMEM_PERSISTENT);
  if (strcmp(url, "/healthz") == 0)
    return reply(c, MHD_HTTP_OK, text, (char *)"ok\n", 3,
                 MHD_RESPMEM_PERSISTENT);
  size_t len = 0;
  char *page = metrics_render(s->m, &len);
  if (!page)
    return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text,
                 (char *)"out of memory\n", 14, MHD_RESPMEM_PERSISTENT);
  return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", page,
               len, MHD_RESPMEM_MUST_FREE);
}

/* listen_on: bind and listen ourselves, so a taken port is reported with
 * the system's reason (MHD only says it failed), and port 0 can be read
 * back with getsockname(). */
static int listen_on(const char *address, int port, int *fd_out, int *port_out,
                     char *err, size_t errlen)
{
  struct addrinfo hints = {0}, *ai = NULL;
  char service[16];
  int fd = -1;

  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  snprintf(service, sizeof(service), "%d", port);
  if (port < 0 || port > 65535 ||
      getaddrinfo(address, service, &hints, &ai) != 0 || !ai) {
    snprintf(err, errlen,
             "metrics: cannot listen on %s:%d: not a numeric address and port",
             address, port);
    return SO_ERR_INVALID;
  }
  fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  int one = 1;
  /* SO_REUSEADDR lets a restarted daemon bind past TIME_WAIT; Linux still
   * refuses a port another socket listens on. */
  if (fd < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
    int e = errno;
    snprintf(err, errlen, "metrics: cannot listen on %s:%d: %s", address, port,
             strerror(e));
    if (fd >= 0)
      close(fd);
    freeaddrinfo(ai);
    return SO_ERR_IO;
  }
  freeaddrinfo(ai);

  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    snprintf(err, errlen, "metrics: getsockname: %s", strerror(errno));
    close(fd);
    return SO_ERR_IO;
  }
  *port_out = ss.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  *fd_out = fd;
  return SO_OK;
}

int metrics_serve(struct metrics *m, const char *address, int port,
                  struct metrics_server **out, char *err, size_t errlen)
{
  if (!address)
    address = "127.0.0.1";
  *out = NULL;
  struct metrics_server *s = calloc(1, sizeof(*s));
  if (!s) {
    snprintf(err, errlen, "metrics: out of memory");
    return SO_ERR_NOMEM;
  }
  s->m = m;
  int rc = listen_on(address, port, &s->fd, &s->port, err, errlen);
  if (rc != SO_OK) {
    free(s);
    return rc;
  }
  /* One internal thread polls and answers: a scrape is quick, and a slow
   * client is cut off by the connection timeout. */
  s->daemon = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, handle_cb,
      s, MHD_OPTION_LISTEN_SOCKET, s->fd, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned int)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32,
      MHD_OPTION_END);
  if (!s->daemon) {
    snprintf(err, errlen, "metrics: cannot start the HTTP server on %s:%d",
             address, s->port);
    close(s->fd);
    free(s);
    return SO_ERR_IO;
  }
  *out = s;
  return SO_OK;
}

struct metrics_server *metrics_serve_or_log(struct metrics *m,
                                            const char *address, int port,
                                            const char *who)
{
  struct metrics_server *srv = NULL;
  char err[512] = "";
  if (metrics_serve(m, address, port, &srv, err, sizeof(err)) != SO_OK) {
    log_error("%s: %s (running without /metrics)", who, err);
    return NULL;
  }
  log_info("%s: metrics on http://%s:%d/metrics", who,
           address ? address : "127.0.0.1", metrics_server_port(srv));
  return srv;
}

int metrics_server_port(const struct metrics_server *s)
{
  return s ? s->port : 0;
}

void metrics_server_stop(struct metrics_server *s)
{
  if (!s)
    return;
  /* MHD_stop_daemon joins the thread and closes the listening socket we
   * handed it (closing it again could close someone else's descriptor). */
  MHD_stop_daemon(s->daemon);
  free(s);
}
