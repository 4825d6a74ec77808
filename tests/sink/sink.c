/* sink.c - sendonce-sink: the HTTP provider stand-in of the test suite.
 *
 * Every POST/PUT to a path other than /stats, /reset and /mode is a "send":
 * it must carry an Idempotency-Key (else 400, counted apart); its recipient
 * is the X-Recipient header, else the key's part after its last ':'. The
 * sink counts it (see sink_state.h), logs it as one JSON line, and answers
 * according to its mode (see sink_mode.h). Control:
 *   GET  /stats   counters as JSON (flushes the log)
 *   POST /reset   forget keys and counters, truncate the log
 *   GET  /mode, POST /mode   read or change the mode (JSON)
 *   GET  /files/NAME         NAME from --static-dir (serves test streams)
 *
 * Latency and hang never block a server thread: the connection is
 * suspended and a timer thread resumes it when its time has come, so a
 * small thread pool serves thousands of waiting requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "sink_keys.h"
#include "sink_state.h"
#include "sink_wait.h"

#define MODE_BODY_MAX (64 * 1024)
#define BATCH_BODY_MAX (4 * 1024 * 1024) /* send bodies read for ids */

enum route {
  ROUTE_SEND,
  ROUTE_STATS,
  ROUTE_RESET,
  ROUTE_MODE_GET,
  ROUTE_MODE_SET,
  ROUTE_FILE,
  ROUTE_OTHER
};

struct server {
  struct sink_state *state;
  struct sink_wait *wait;
  const char *static_dir;
  char *batch_array; /* --batch-ids ARRAY.FIELD, split; NULL = off */
  char *batch_field;
};

/* One request in progress (MHD's per-connection-request context). */
struct req {
  struct sink_waiter waiter; /* first: sink_wait hands it back */
  enum route route;
  bool arrived; /* counted by sink_state_arrival */
  bool waiting; /* suspended once; the next call answers */
  char *path, *key, *recipient;
  uint64_t body_hash;
  char *body; /* /mode, or a send body with --batch-ids; capped */
  size_t body_len;
  bool body_too_large;
};

/* Atomic, not just sig_atomic_t: the signal may be handled on one of
 * libmicrohttpd's threads while the main thread reads the flag. */
static atomic_bool stop_requested;

static void on_signal(int sig)
{
  (void)sig;
  atomic_store(&stop_requested, true);
}

static void req_free(struct req *r)
{
  if (r == NULL)
    return;
  free(r->path);
  free(r->key);
  free(r->recipient);
  free(r->body);
  free(r);
}

static enum MHD_Result queue_text(struct MHD_Connection *conn, int status,
                                  const char *text, int64_t retry_after_s,
                                  bool replayed)
{
  if (text == NULL)
    text = "{\"error\":\"out of memory\"}";
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_MUST_COPY);
  if (resp == NULL)
    return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", "application/json");
  if (retry_after_s > 0) {
    char value[24];
    snprintf(value, sizeof(value), "%" PRId64, retry_after_s);
    MHD_add_response_header(resp, "Retry-After", value);
  }
  if (replayed)
    MHD_add_response_header(resp, "Idempotent-Replayed", "true");
  enum MHD_Result rc = MHD_queue_response(conn, (unsigned int)status, resp);
  MHD_destroy_response(resp);
  return rc;
}

static enum MHD_Result queue_owned(struct MHD_Connection *conn, int status,
                                   char *text)
{
  enum MHD_Result rc = queue_text(conn, status, text, 0, false);
  free(text);
  return rc;
}

static enum route classify(const char *method, const char *url,
                           const struct server *srv)
{
  bool post = strcmp(method, "POST") == 0;
  bool get = strcmp(method, "GET") == 0;
  if (get && strcmp(url, "/stats") == 0)
    return ROUTE_STATS;
  if (post && strcmp(url, "/reset") == 0)
    return ROUTE_RESET;
  if (get && strcmp(url, "/mode") == 0)
    return ROUTE_MODE_GET;
  if (post && strcmp(url, "/mode") == 0)
    return ROUTE_MODE_SET;
  if (get && srv->static_dir != NULL && strncmp(url, "/files/", 7) == 0)
    return ROUTE_FILE;
  if ((post || strcmp(method, "PUT") == 0) && strcmp(url, "/stats") != 0 &&
      strcmp(url, "/reset") != 0 && strcmp(url, "/mode") != 0)
    return ROUTE_SEND;
  return ROUTE_OTHER;
}

static char *dup_or_null(const char *s)
{
  return s != NULL ? strdup(s) : NULL;
}

static struct req *req_new(struct MHD_Connection *conn, const char *url,
                           enum route route)
{
  struct req *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->route = route;
  r->waiter.conn = conn;
  r->body_hash = SINK_FNV_OFFSET;
  if (route != ROUTE_SEND)
    return r;
  const char *key =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
  const char *rcpt =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Recipient");
  if (key != NULL && key[0] == '\0')
    key = NULL;
  if (rcpt == NULL && key != NULL) {
    const char *colon = strrchr(key, ':');
    rcpt = colon != NULL ? colon + 1 : key;
  }
  r->path = strdup(url);
  r->key = dup_or_null(key);
  r->recipient = dup_or_null(rcpt);
  if (r->path == NULL || (key != NULL && r->key == NULL) ||
      (rcpt != NULL && r->recipient == NULL)) {
    req_free(r);
    return NULL;
  }
  return r;
}

static void take_body(const struct server *srv, struct req *r, const char *data,
                      size_t len)
{
  size_t cap = MODE_BODY_MAX;
  if (r->route == ROUTE_SEND) {
    r->body_hash = sink_fnv1a(r->body_hash, data, len);
    if (srv->batch_array == NULL)
      return;
    cap = BATCH_BODY_MAX;
  } else if (r->route != ROUTE_MODE_SET) {
    return;
  }
  if (r->body_too_large)
    return;
  if (r->body_len + len > cap) {
    r->body_too_large = true;
    return;
  }
  char *grown = realloc(r->body, r->body_len + len + 1);
  if (grown == NULL) {
    r->body_too_large = true;
    return;
  }
  memcpy(grown + r->body_len, data, len);
  r->body_len += len;
  grown[r->body_len] = '\0';
  r->body = grown;
}

/* The recipient ids of a batch body: srv->batch_array's elements'
 * srv->batch_field strings. *ids points into *root (put it after use). */
static void batch_ids(const struct server *srv, const struct req *r,
                      struct json_object **root, const char ***ids, size_t *n)
{
  struct json_object *arr;
  *root = NULL;
  *ids = NULL;
  *n = 0;
  if (srv->batch_array == NULL || r->body == NULL || r->body_too_large)
    return;
  *root = json_tokener_parse(r->body);
  if (*root == NULL ||
      !json_object_object_get_ex(*root, srv->batch_array, &arr) ||
      !json_object_is_type(arr, json_type_array))
    return;
  size_t len = json_object_array_length(arr);
  *ids = calloc(len + 1, sizeof(**ids));
  if (*ids == NULL)
    return;
  for (size_t i = 0; i < len; i++) {
    struct json_object *v, *el = json_object_array_get_idx(arr, i);
    if (json_object_object_get_ex(el, srv->batch_field, &v) &&
        json_object_is_type(v, json_type_string))
      (*ids)[(*n)++] = json_object_get_string(v);
  }
}

static enum MHD_Result answer_send(struct server *srv, struct req *r,
                                   struct MHD_Connection *conn)
{
  struct sink_request sr = {r->path,      r->key, r->recipient,
                            r->body_hash, NULL,   0};
  if (!r->waiting) {
    bool hang;
    int64_t latency_ms;
    sink_state_arrival(srv->state, &sr, &hang, &latency_ms);
    r->arrived = true;
    if (hang || latency_ms > 0) {
      r->waiting = true;
      if (sink_wait_add(srv->wait, &r->waiter, hang, latency_ms))
        return MHD_YES; /* suspended; the next call answers */
    }
  }
  struct json_object *root;
  const char **ids;
  batch_ids(srv, r, &root, &ids, &sr.n_batch_ids);
  sr.batch_ids = ids;
  struct sink_reply reply;
  sink_state_answer(srv->state, &sr, r->waiter.shutdown, &reply);
  free(ids);
  json_object_put(root);
  enum MHD_Result rc = queue_text(conn, reply.status, reply.body,
                                  reply.retry_after_s, reply.replayed);
  free(reply.body);
  return rc;
}

static enum MHD_Result answer_mode_set(struct server *srv, struct req *r,
                                       struct MHD_Connection *conn)
{
  char err[256];
  if (r->body_too_large)
    return queue_text(conn, 413, "{\"error\":\"mode body too large\"}", 0,
                      false);
  struct json_object *obj = json_tokener_parse(r->body != NULL ? r->body : "");
  if (obj == NULL)
    return queue_text(conn, 400, "{\"error\":\"mode: body is not JSON\"}", 0,
                      false);
  struct sink_mode *mode = sink_state_lock_mode(srv->state);
  int rc =
      sink_mode_apply_json(mode, obj, sink_now_mono_ms(), err, sizeof(err));
  bool hang = mode->hang;
  sink_state_unlock_mode(srv->state);
  json_object_put(obj);
  if (rc != 0) {
    struct json_object *e = json_object_new_object();
    json_object_object_add(e, "error", json_object_new_string(err));
    char *text = dup_or_null(json_object_to_json_string_ext(
        e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(e);
    return queue_owned(conn, 400, text);
  }
  if (!hang)
    sink_wait_release_hung(srv->wait);
  return queue_owned(conn, 200, sink_state_mode_json(srv->state));
}

static enum MHD_Result answer_file(struct server *srv, const char *url,
                                   struct MHD_Connection *conn)
{
  const char *name = url + 7;
  char path[PATH_MAX];
  /* One path component of plain characters: nothing can escape the dir. */
  if (name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL ||
      strlen(name) > 255)
    return queue_text(conn, 400, "{\"error\":\"bad file name\"}", 0, false);
  snprintf(path, sizeof(path), "%s/%s", srv->static_dir, name);
  int fd = open(path, O_RDONLY);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    if (fd >= 0)
      close(fd);
    return queue_text(conn, 404, "{\"error\":\"no such file\"}", 0, false);
  }
  struct MHD_Response *resp =
      MHD_create_response_from_fd64((uint64_t)sb.st_size, fd);
  if (resp == NULL) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", "application/x-ndjson");
  enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return rc;
}

static enum MHD_Result handle_cb(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
  struct server *srv = cls;
  struct req *r = *con_cls;
  (void)version;
  if (r == NULL) {
    r = req_new(conn, url, classify(method, url, srv));
    if (r == NULL)
      return MHD_NO;
    *con_cls = r;
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    take_body(srv, r, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  switch (r->route) {
    case ROUTE_SEND:
      return answer_send(srv, r, conn);
    case ROUTE_STATS:
      return queue_owned(conn, 200, sink_state_stats_json(srv->state));
    case ROUTE_RESET:
      sink_state_reset(srv->state);
      return queue_text(conn, 200, "{\"reset\":true}", 0, false);
    case ROUTE_MODE_GET:
      return queue_owned(conn, 200, sink_state_mode_json(srv->state));
    case ROUTE_MODE_SET:
      return answer_mode_set(srv, r, conn);
    case ROUTE_FILE:
      return answer_file(srv, url, conn);
    case ROUTE_OTHER:
      break;
  }
  return queue_text(conn, 405, "{\"error\":\"method or path not allowed\"}", 0,
                    false);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
  struct server *srv = cls;
  struct req *r = *con_cls;
  (void)conn;
  (void)toe;
  if (r == NULL)
    return;
  if (r->arrived)
    sink_state_completed(srv->state);
  req_free(r);
  *con_cls = NULL;
}

struct options {
  unsigned port;
  unsigned threads;
  unsigned max_connections;
  unsigned idle_timeout_s;
  const char *log_path;
  const char *static_dir;
  const char *batch_ids; /* ARRAY.FIELD */
  uint64_t seed;
};

static void usage(FILE *out)
{
  fputs(
      "usage: sendonce-sink [options]\n"
      "  --port N              listen on 127.0.0.1:N (default 18080; 0 = any\n"
      "                        free port); prints \"listening port=N\"\n"
      "  --log FILE            append one JSON line per send request\n"
      "  --threads N           server threads (default 4)\n"
      "  --max-connections N   open connections (default 10000, capped by\n"
      "                        the open-file limit)\n"
      "  --idle-timeout-s N    close a connection idle this long (default\n"
      "                        60; waiting and hung requests never time out)\n"
      "  --latency-ms N        wait N ms before answering\n"
      "  --error-rate P        answer 500 to a fraction P (0..1)\n"
      "  --fail-until-ms T     answer 500 until T ms after start\n"
      "  --status-429 P        answer 429 to a fraction P (0..1)\n"
      "  --retry-after S       Retry-After seconds of a 429 (default 1)\n"
      "  --hang                accept and never answer (until POST /mode)\n"
      "  --honour-idempotency  replay the first answer of a repeated key\n"
      "  --reject-pattern RE   answer 422 to recipients matching RE (POSIX\n"
      "                        extended regex; a plain word matches as a\n"
      "                        substring)\n"
      "  --static-dir DIR      serve GET /files/NAME from DIR\n"
      "  --batch-ids ARR.FIELD count batch members: the FIELD strings of the\n"
      "                        body's top-level array ARR are recipient ids\n"
      "  --seed N              seed of the failure rolls\n"
      "  --help\n"
      "Send requests: POST/PUT any other path with an Idempotency-Key header;\n"
      "the recipient is X-Recipient, else the key after its last ':'.\n"
      "Control: GET /stats, POST /reset, GET|POST /mode (JSON).\n",
      out);
}

static int parse_int(const char *s, int64_t max, int64_t *out)
{
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max)
    return -1;
  *out = v;
  return 0;
}

static int parse_rate(const char *s, double *out)
{
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0))
    return -1;
  *out = v;
  return 0;
}

/* Parse one "--flag value" pair (value NULL for switches); 0 or -1. */
static int apply_flag(struct options *o, struct sink_mode *m, const char *name,
                      const char *value, char *err, size_t errlen)
{
  int64_t n = 0;
  int rc = 0;
  if (strcmp(name, "--port") == 0) {
    rc = parse_int(value, 65535, &n);
    o->port = (unsigned)n;
  } else if (strcmp(name, "--threads") == 0) {
    rc = parse_int(value, 256, &n);
    rc = rc == 0 && n >= 1 ? 0 : -1;
    o->threads = (unsigned)n;
  } else if (strcmp(name, "--max-connections") == 0) {
    rc = parse_int(value, 1000000, &n);
    rc = rc == 0 && n >= 1 ? 0 : -1;
    o->max_connections = (unsigned)n;
  } else if (strcmp(name, "--idle-timeout-s") == 0) {
    rc = parse_int(value, 86400, &n);
    o->idle_timeout_s = (unsigned)n;
  } else if (strcmp(name, "--log") == 0) {
    o->log_path = value;
  } else if (strcmp(name, "--static-dir") == 0) {
    o->static_dir = value;
  } else if (strcmp(name, "--batch-ids") == 0) {
    const char *dot = strchr(value, '.');
    rc = dot != NULL && dot != value && dot[1] != '\0' ? 0 : -1;
    o->batch_ids = value;
  } else if (strcmp(name, "--seed") == 0) {
    rc = parse_int(value, INT64_MAX, &n);
    o->seed = (uint64_t)n;
  } else if (strcmp(name, "--latency-ms") == 0) {
    rc = parse_int(value, 3600000, &m->latency_ms);
  } else if (strcmp(name, "--error-rate") == 0) {
    rc = parse_rate(value, &m->error_rate);
  } else if (strcmp(name, "--fail-until-ms") == 0) {
    rc = parse_int(value, INT64_MAX / 2, &n);
    m->fail_until_mono = n > 0 ? sink_now_mono_ms() + n : 0;
  } else if (strcmp(name, "--status-429") == 0) {
    rc = parse_rate(value, &m->rate_429);
  } else if (strcmp(name, "--retry-after") == 0) {
    rc = parse_int(value, 86400, &m->retry_after_s);
  } else if (strcmp(name, "--reject-pattern") == 0) {
    return sink_mode_set_pattern(m, value, err, errlen);
  }
  if (rc != 0)
    snprintf(err, errlen, "%s: bad value '%s'", name, value);
  return rc;
}

static const char *const value_flags[] = {
    "--port",           "--threads",        "--log",
    "--static-dir",     "--seed",           "--latency-ms",
    "--error-rate",     "--fail-until-ms",  "--status-429",
    "--retry-after",    "--reject-pattern", "--max-connections",
    "--idle-timeout-s", "--batch-ids",
};

static bool takes_value(const char *name)
{
  for (size_t i = 0; i < sizeof(value_flags) / sizeof(value_flags[0]); i++)
    if (strcmp(value_flags[i], name) == 0)
      return true;
  return false;
}

/* Returns 0, 1 for --help, or -1 with a message in err. */
static int parse_args(int argc, char **argv, struct options *o,
                      struct sink_mode *m, char *err, size_t errlen)
{
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
      return 1;
    if (strcmp(a, "--hang") == 0) {
      m->hang = true;
    } else if (strcmp(a, "--honour-idempotency") == 0) {
      m->honour = true;
    } else if (takes_value(a)) {
      if (i + 1 >= argc) {
        snprintf(err, errlen, "%s needs a value", a);
        return -1;
      }
      if (apply_flag(o, m, a, argv[++i], err, errlen) != 0)
        return -1;
    } else {
      snprintf(err, errlen, "unknown argument '%s'", a);
      return -1;
    }
  }
  return 0;
}

static struct MHD_Daemon *start_daemon(struct server *srv,
                                       const struct options *o)
{
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)o->port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
                       MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  /* Idle keep-alive connections are closed after idle_timeout_s, so a
   * client's connection cache cannot hold every slot; suspended (waiting,
   * hung) connections never time out in libmicrohttpd. */
  return MHD_start_daemon(
      flags, (uint16_t)o->port, NULL, NULL, handle_cb, srv,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
      (unsigned int)o->threads, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, srv,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)o->idle_timeout_s,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned int)o->max_connections,
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024, MHD_OPTION_END);
}

/* Raise the open-file limit as far as allowed and keep the connection
 * limit under it (with room for the log, the listener, epoll fds). */
static void fit_connection_limit(struct options *o)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      getrlimit(RLIMIT_NOFILE, &rl);
  }
  rlim_t room = rl.rlim_cur > 128 ? rl.rlim_cur - 64 : 64;
  if (rl.rlim_cur != RLIM_INFINITY && o->max_connections > room)
    o->max_connections = (unsigned)room;
}

static void install_signals(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv)
{
  struct options opt = {.port = 18080,
                        .threads = 4,
                        .max_connections = 10000,
                        .idle_timeout_s = 60,
                        .seed = (uint64_t)sink_now_ms()};
  struct sink_mode flags_mode;
  char err[256];
  struct server srv = {0};
  struct MHD_Daemon *d = NULL;
  int status = 1;

  sink_mode_init(&flags_mode);
  int rc = parse_args(argc, argv, &opt, &flags_mode, err, sizeof(err));
  if (rc != 0) {
    sink_mode_cleanup(&flags_mode);
    if (rc > 0) {
      usage(stdout);
      return 0;
    }
    fprintf(stderr, "sendonce-sink: %s\n", err);
    usage(stderr);
    return 2;
  }
  srv.static_dir = opt.static_dir;
  if (opt.batch_ids != NULL) {
    const char *dot = strchr(opt.batch_ids, '.');
    srv.batch_array = strndup(opt.batch_ids, (size_t)(dot - opt.batch_ids));
    srv.batch_field = strdup(dot + 1);
    if (srv.batch_array == NULL || srv.batch_field == NULL) {
      sink_mode_cleanup(&flags_mode);
      fputs("sendonce-sink: out of memory\n", stderr);
      return 1;
    }
  }
  fit_connection_limit(&opt);
  srv.state = sink_state_new(opt.log_path, opt.seed, err, sizeof(err));
  if (srv.state == NULL) {
    fprintf(stderr, "sendonce-sink: %s\n", err);
    sink_mode_cleanup(&flags_mode);
    return 1;
  }
  /* The state takes the parsed mode (and its compiled pattern) over. */
  *sink_state_lock_mode(srv.state) = flags_mode;
  sink_state_unlock_mode(srv.state);
  install_signals();
  srv.wait = sink_wait_new();
  if (srv.wait == NULL)
    goto fail;
  d = start_daemon(&srv, &opt);
  if (d == NULL) {
    fprintf(stderr, "sendonce-sink: cannot listen on 127.0.0.1:%u\n", opt.port);
    goto fail;
  }
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  printf("listening port=%u\n", info != NULL ? info->port : opt.port);
  fflush(stdout);

  int64_t last_flush = sink_now_mono_ms();
  while (!atomic_load(&stop_requested)) {
    struct timespec nap = {0, 50 * 1000000L};
    nanosleep(&nap, NULL);
    if (sink_now_mono_ms() - last_flush >= 1000) {
      sink_state_flush(srv.state);
      last_flush = sink_now_mono_ms();
    }
  }
  /* Answer whatever waits (503), give the answers a moment to leave, then
   * stop the server; the state's free flushes the log. */
  sink_wait_shutdown(srv.wait);
  struct timespec grace = {0, 200 * 1000000L};
  nanosleep(&grace, NULL);
  status = 0;
fail:
  if (d != NULL)
    MHD_stop_daemon(d);
  sink_wait_free(srv.wait);
  sink_state_free(srv.state);
  free(srv.batch_array);
  free(srv.batch_field);
  return status;
}
