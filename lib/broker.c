/* broker.c - the AMQP session: options, connect with failover and TLS,
 * the send guard, loss and reconnect with backoff, RPC replies.
 * Deliveries, consumers and acks are in broker_consume.c; publisher
 * confirms in broker_confirm.c.
 */
#include "broker.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "broker_impl.h"
#include "clock.h"
#include "log.h"
#include "topology.h"

#define BROKER_FRAME_MAX 131072
#define BROKER_URI_MAX 1024
#define BROKER_SYSTEM_CA_FILE                    \
  "/etc/ssl/certs/ca-certificates.crt" /* Debian \
                                        */

char *broker__bytes_dup(amqp_bytes_t bytes)
{
  char *s = malloc(bytes.len + 1);
  if (!s)
    return NULL;
  if (bytes.len)
    memcpy(s, bytes.bytes, bytes.len);
  s[bytes.len] = '\0';
  return s;
}

static struct timeval ms_timeval(int ms)
{
  struct timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

/* ---- the guard ------------------------------------------------------ */

static void *guard_main(void *arg)
{
  struct broker_guard *g = arg;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    if (!g->armed) {
      g->wake_ms = 0;
      pthread_cond_wait(&g->cv, &g->mu);
      continue;
    }
    int64_t now = clock_monotonic_ms();
    if (now >= g->deadline_ms) {
      /* shutdown() wakes a poll() blocked on this socket in rabbitmq-c;
       * the fd stays open (the owner closes it after disarming). */
      shutdown(g->fd, SHUT_RDWR);
      g->fired = true;
      g->armed = false;
      continue;
    }
    g->wake_ms = g->deadline_ms;
    struct timespec ts;
    ts.tv_sec = (time_t)(g->deadline_ms / 1000);
    ts.tv_nsec = (long)(g->deadline_ms % 1000) * 1000000L;
    pthread_cond_timedwait(&g->cv, &g->mu, &ts);
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

static int guard_start(struct broker_guard *g)
{
  pthread_condattr_t ca;
  g->fd = -1;
  if (pthread_mutex_init(&g->mu, NULL) != 0)
    return SO_ERR_NOMEM;
  if (pthread_condattr_init(&ca) != 0)
    goto fail_mu;
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&g->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0)
    goto fail_mu;
  if (pthread_create(&g->thread, NULL, guard_main, g) != 0)
    goto fail_cv;
  g->started = true;
  return SO_OK;
fail_cv:
  pthread_cond_destroy(&g->cv);
fail_mu:
  pthread_mutex_destroy(&g->mu);
  return SO_ERR_NOMEM;
}

static void guard_stop(struct broker_guard *g)
{
  if (!g->started)
    return;
  pthread_mutex_lock(&g->mu);
  g->stop = true;
  pthread_cond_signal(&g->cv);
  pthread_mutex_unlock(&g->mu);
  pthread_join(g->thread, NULL);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  g->started = false;
}

void broker__guard(struct broker *b, int timeout_ms)
{
  int fd = b->guard_fd;
  if (!b->conn || fd < 0)
    return;
  pthread_mutex_lock(&b->guard.mu);
  b->guard.fd = fd;
  /* The slack lets the call's own deadline (a confirm wait, an RPC
   * timeout) win the race: the guard is the backstop, not the clock. */
  int64_t deadline = clock_monotonic_ms() + timeout_ms + BROKER_GUARD_SLACK_MS;
  b->guard.deadline_ms = deadline;
  b->guard.armed = true;
  /* Wake the thread only when it would otherwise sleep past the new
   * deadline: it is idle (wake_ms 0), or waits for a later one. Re-arming
   * with a later deadline, and disarming, need no wake-up: at its wake
   * time the thread finds the current deadline (or none) and sleeps on.
   * A busy session arms and disarms a few times per message; signalling
   * each time cost the guard thread two wake-ups per publish. */
  if (b->guard.wake_ms == 0 || b->guard.wake_ms > deadline)
    pthread_cond_signal(&b->guard.cv);
  pthread_mutex_unlock(&b->guard.mu);
}

/* Disarm; report whether the guard fired since it was last armed. */
static bool guard_disarm(struct broker *b)
{
  pthread_mutex_lock(&b->guard.mu);
  bool fired = b->guard.fired;
  b->guard.armed = false;
  b->guard.fired = false;
  pthread_mutex_unlock(&b->guard.mu);
  return fired;
}

int broker__unguard(struct broker *b)
{
  if (guard_disarm(b)) {
    broker__lost(b, "a call overran its deadline (broker not reading?)");
    return SO_ERR_TIMEOUT;
  }
  return SO_OK;
}

/* ---- options, open, close ---------------------------------------- */

void broker_options_from_config(struct broker_options *opts,
                                const struct config_broker *cfg,
                                const char *program)
{
  memset(opts, 0, sizeof(*opts));
  for (size_t i = 0; i < cfg->n_uris && i < BROKER_MAX_URIS; i++)
    opts->uris[i] = cfg->uris[i];
  opts->n_uris = cfg->n_uris < BROKER_MAX_URIS ? cfg->n_uris : BROKER_MAX_URIS;
  opts->user = cfg->user;
  opts->password = cfg->password;
  opts->program = program;
  opts->heartbeat_s = cfg->heartbeat_s;
  opts->connect_timeout_ms = cfg->connect_timeout_ms;
  opts->op_timeout_ms = cfg->confirm_timeout_ms;
  opts->reconnect_min_ms = cfg->reconnect_min_ms;
  opts->reconnect_max_ms = cfg->reconnect_max_ms;
  opts->tls_ca_file = cfg->tls.ca_file;
  opts->tls_cert_file = cfg->tls.cert_file;
  opts->tls_key_file = cfg->tls.key_file;
  opts->tls_verify_peer = cfg->tls.verify_peer;
}

/* A URI must parse and must not carry a password (secrets never travel in
 * config strings that get logged or shown). */
static int check_uri(const char *uri, bool *tls, char *err, size_t errlen)
{
  char buf[BROKER_URI_MAX];
  struct amqp_connection_info ci;
  if (strlen(uri) >= sizeof(buf)) {
    so_errf(err, errlen, "broker: uri too long");
    return SO_ERR_INVALID;
  }
  const char *auth = strstr(uri, "://");
  if (auth) {
    auth += 3;
    size_t alen = strcspn(auth, "/");
    const char *at = memchr(auth, '@', alen);
    if (at && memchr(auth, ':', (size_t)(at - auth))) {
      so_errf(err, errlen,
              "broker: a uri must not carry a password (use broker.password "
              "from the environment or password_file)");
      return SO_ERR_INVALID;
    }
  }
  memcpy(buf, uri, strlen(uri) + 1);
  if (amqp_parse_url(buf, &ci) != AMQP_STATUS_OK) {
    so_errf(err, errlen,
            "broker: bad uri '%s' (want amqp[s]://host[:port][/vhost])", uri);
    return SO_ERR_INVALID;
  }
  *tls = ci.ssl != 0;
  return SO_OK;
}

int broker_open(const struct broker_options *opts, struct broker **out,
                char *err, size_t errlen)
{
  *out = NULL;
  if (opts->n_uris == 0 || opts->n_uris > BROKER_MAX_URIS) {
    so_errf(err, errlen, "broker: need 1..%d uris", BROKER_MAX_URIS);
    return SO_ERR_INVALID;
  }
  for (size_t i = 0; i < opts->n_uris; i++) {
    bool tls = false;
    if (!opts->uris[i]) {
      so_errf(err, errlen, "broker: uri %zu missing", i);
      return SO_ERR_INVALID;
    }
    int rc = check_uri(opts->uris[i], &tls, err, errlen);
    if (rc)
      return rc;
    if (tls && opts->tls_verify_peer && !opts->tls_ca_file &&
        access(BROKER_SYSTEM_CA_FILE, R_OK) != 0) {
      so_errf(err, errlen,
              "broker: %s needs broker.tls.ca_file to verify the broker (no "
              "system bundle %s)",
              opts->uris[i], BROKER_SYSTEM_CA_FILE);
      return SO_ERR_INVALID;
    }
  }
  if (opts->heartbeat_s <= 0 || opts->heartbeat_s > 3600) {
    so_errf(err, errlen,
            "broker: heartbeat_s must be 1..3600 (0 would let a dead broker "
            "go unnoticed)");
    return SO_ERR_INVALID;
  }
  if (opts->connect_timeout_ms <= 0 || opts->op_timeout_ms <= 0 ||
      opts->reconnect_min_ms <= 0 ||
      opts->reconnect_max_ms < opts->reconnect_min_ms) {
    so_errf(err, errlen,
            "broker: timeouts must be > 0 and reconnect_min_ms <= "
            "reconnect_max_ms");
    return SO_ERR_INVALID;
  }
  struct broker *b = calloc(1, sizeof(*b));
  if (!b)
    return SO_ERR_NOMEM;
  b->opts = *opts;
  b->guard_fd = -1;
  b->rng = (uint32_t)getpid() * 2654435761u ^ (uint32_t)clock_now_ms() ^
           (uint32_t)(uintptr_t)b;
  if (b->rng == 0)
    b->rng = 1;
  char host[128] = "localhost";
  gethostname(host, sizeof(host) - 1);
  snprintf(b->conn_name, sizeof(b->conn_name), "sendonce-%s@%s:%ld",
           opts->program ? opts->program : "client", host, (long)getpid());
  if (guard_start(&b->guard) != SO_OK) {
    free(b);
    return SO_ERR_NOMEM;
  }
  *out = b;
  return SO_OK;
}

static void pub_fail(struct broker *b, enum broker_pub_state state,
                     const char *why)
{
  if (b->pub_state == BROKER_PUB_WAITING) {
    b->pub_state = state;
    snprintf(b->pub_text, sizeof(b->pub_text), "%s", why);
  }
}

/* Forget the connection without a handshake. */
static void broker_drop(struct broker *b)
{
  guard_disarm(b);
  if (b->conn) {
    amqp_destroy_connection(b->conn);
    b->conn = NULL;
  }
  if (b->guard_fd >= 0) {
    close(b->guard_fd);
    b->guard_fd = -1;
  }
  b->main_open = false;
  b->pub_open = false;
  b->ev_open = false;
  broker__out_reset(b);
  for (size_t i = 0; i < b->n_consumers; i++) {
    b->consumers[i].active = false;
    b->consumers[i].tag[0] = '\0';
  }
  pub_fail(b, BROKER_PUB_CLOSED, "connection lost");
  /* The broker requeues what it had delivered on this connection: handing
   * out the queued copies now would only get them processed twice. */
  broker__pending_purge(b);
}

/* Next backoff: doubling from min to max, "equal jitter" (half fixed,
 * half random) so restarted clients do not reconnect in lockstep. */
static void backoff_next(struct broker *b)
{
  int max = b->opts.reconnect_max_ms;
  if (b->backoff_ms <= 0)
    b->backoff_ms = b->opts.reconnect_min_ms;
  else
    b->backoff_ms = b->backoff_ms > max / 2 ? max : b->backoff_ms * 2;
  int half = b->backoff_ms / 2;
  /* xorshift32: our own sequence, seeded per process and session, so
   * neither the caller's rand() nor a sibling process shares it. */
  b->rng ^= b->rng << 13;
  b->rng ^= b->rng >> 17;
  b->rng ^= b->rng << 5;
  int jitter = half > 0 ? (int)(b->rng % (uint32_t)(half + 1)) : 0;
  b->next_attempt_ms = clock_monotonic_ms() + half + jitter;
}

void broker__lost(struct broker *b, const char *why)
{
  /* A half-made connection's failure is reported by broker_connect(). */
  if (b->conn && (b->main_open || b->pub_open))
    log_warn("broker: connection lost: %s uri=%s generation=%llu", why,
             b->opts.uris[b->uri_index], (unsigned long long)b->generation);
  broker_drop(b);
  backoff_next(b);
}

void broker_disconnect(struct broker *b)
{
  broker__lost(b, "dropped on request");
}

void broker_close(struct broker *b)
{
  if (!b)
    return;
  if (b->conn) {
    /* Acks held in a batch go out before the channels close. */
    (void)broker__flush(b);
  }
  if (b->conn) {
    broker__guard(b, b->opts.op_timeout_ms);
    if (b->ev_open)
      amqp_channel_close(b->conn, BROKER_CH_EVENTS, AMQP_REPLY_SUCCESS);
    if (b->pub_open)
      amqp_channel_close(b->conn, BROKER_CH_PUB, AMQP_REPLY_SUCCESS);
    if (b->main_open)
      amqp_channel_close(b->conn, BROKER_CH_MAIN, AMQP_REPLY_SUCCESS);
    amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
    broker_drop(b);
  }
  guard_stop(&b->guard);
  broker__pending_purge(b);
  broker__out_free(b);
  for (size_t i = 0; i < b->n_consumers; i++)
    free(b->consumers[i].queue);
  free(b);
}

bool broker_is_up(const struct broker *b)
{
  return b->conn && b->main_open && b->pub_open;
}

uint64_t broker_generation(const struct broker *b)
{
  return b->generation;
}

const char *broker_current_uri(const struct broker *b)
{
  return b->connected_once ? b->opts.uris[b->uri_index] : NULL;
}

const char *broker_connection_name(const struct broker *b)
{
  return b->conn_name;
}

/* ---- replies -------------------------------------------------------- */

static int status_of_code(int code)
{
  switch (code) {
    case AMQP_NOT_FOUND:
      return SO_ERR_NOTFOUND;
    case AMQP_PRECONDITION_FAILED:
      return SO_ERR_CONFLICT;
    case AMQP_ACCESS_REFUSED:
    case AMQP_NOT_ALLOWED:
      return SO_ERR_REFUSED;
    default:
      return SO_ERR_UNAVAILABLE;
  }
}

int broker__reply(struct broker *b, amqp_rpc_reply_t r, amqp_channel_t ch,
                  const char *what, char *err, size_t errlen)
{
  /* Every RPC is guarded; the reply ends the guarded span. A guard that
   * fired shut the socket down: whatever the reply says, it is over. */
  if (guard_disarm(b)) {
    so_errf(err, errlen, "%s: timed out", what);
    broker__lost(b, "rpc overran its deadline");
    return SO_ERR_TIMEOUT;
  }
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return SO_OK;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION: {
      bool timeout = r.library_error == AMQP_STATUS_TIMEOUT;
      so_errf(err, errlen, "%s: %s", what,
              timeout ? "timed out" : amqp_error_string2(r.library_error));
      broker__lost(
          b, timeout ? "rpc timed out" : amqp_error_string2(r.library_error));
      return timeout ? SO_ERR_TIMEOUT : SO_ERR_UNAVAILABLE;
    }
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *m = r.reply.decoded;
        amqp_channel_close_ok_t ok = {0};
        b->reply_code = m->reply_code;
        snprintf(b->reply_text, sizeof(b->reply_text), "%.*s",
                 (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        amqp_send_method(b->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        if (ch == BROKER_CH_MAIN)
          b->main_open = false;
        else if (ch == BROKER_CH_PUB)
          b->pub_open = false;
        else if (ch == BROKER_CH_EVENTS)
          broker__events_closed(b);
        so_errf(err, errlen, "%s: %s", what, b->reply_text);
        return status_of_code(m->reply_code);
      }
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_t *m = r.reply.decoded;
        amqp_connection_close_ok_t ok = {0};
        int code = m->reply_code;
        b->reply_code = code;
        snprintf(b->reply_text, sizeof(b->reply_text), "%.*s",
                 (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        so_errf(err, errlen, "%s: broker closed the connection: %s", what,
                b->reply_text);
        broker__lost(b, "broker closed the connection");
        return code == AMQP_ACCESS_REFUSED || code == AMQP_NOT_ALLOWED
                   ? SO_ERR_REFUSED
                   : SO_ERR_UNAVAILABLE;
      }
      so_errf(err, errlen, "%s: unexpected server method 0x%08x", what,
              (unsigned)r.reply.id);
      broker__lost(b, "unexpected server method");
      return SO_ERR_PROTOCOL;
    default:
      so_errf(err, errlen, "%s: no reply", what);
      broker__lost(b, "no rpc reply");
      return SO_ERR_PROTOCOL;
  }
}

/* ---- connect ------------------------------------------------------ */

int broker__open_main(struct broker *b, char *err, size_t errlen)
{
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_channel_open(b->conn, BROKER_CH_MAIN);
  int rc = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_MAIN,
                         "channel.open", err, errlen);
  if (rc)
    return rc;
  b->main_open = true;
  b->generation++;
  /* New channel, new tags: acks of the old one are void. */
  b->n_acks = 0;
  b->n_unacked = 0;
  b->untracked = false;
  /* The broker requeued what was unacked on the old channel: queued
   * deliveries of the old generation would only be processed twice. */
  broker__pending_purge(b);
  for (size_t i = 0; i < b->n_consumers; i++) {
    b->consumers[i].active = false;
    b->consumers[i].tag[0] = '\0';
  }
  return SO_OK;
}

static int open_pub(struct broker *b, char *err, size_t errlen)
{
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_channel_open(b->conn, BROKER_CH_PUB);
  int rc = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_PUB,
                         "channel.open", err, errlen);
  if (rc)
    return rc;
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_confirm_select(b->conn, BROKER_CH_PUB);
  rc = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_PUB,
                     "confirm.select", err, errlen);
  if (rc)
    return rc;
  b->pub_open = true;
  b->pub_seq = 0; /* confirm tags restart at 1 on a new channel */
  return SO_OK;
}

static int tls_setup(struct broker *b, amqp_socket_t *sock, char *err,
                     size_t errlen)
{
  const struct broker_options *o = &b->opts;
  /* rabbitmq-c trusts nothing by default: without a ca_file, the system
   * bundle. */
  const char *ca = o->tls_ca_file ? o->tls_ca_file : BROKER_SYSTEM_CA_FILE;
  if (o->tls_verify_peer &&
      amqp_ssl_socket_set_cacert(sock, ca) != AMQP_STATUS_OK) {
    so_errf(err, errlen, "broker: cannot load tls ca_file %s", ca);
    return SO_ERR_INVALID;
  }
  if (o->tls_cert_file && o->tls_key_file &&
      amqp_ssl_socket_set_key(sock, o->tls_cert_file, o->tls_key_file) !=
          AMQP_STATUS_OK) {
    so_errf(err, errlen, "broker: cannot load tls cert_file/key_file %s",
            o->tls_cert_file);
    return SO_ERR_INVALID;
  }
  amqp_ssl_socket_set_verify_peer(sock, o->tls_verify_peer);
  amqp_ssl_socket_set_verify_hostname(sock, o->tls_verify_peer);
  return SO_OK;
}

static int login(struct broker *b, const char *vhost, const char *user,
                 char *err, size_t errlen)
{
  /* connection_name makes us findable in the UI and rabbitmqctl;
   * consumer_cancel_notify makes the broker tell us when it drops a
   * consumer (queue deleted, leader moved), so we can re-issue it.
   * rabbitmq-c merges these with its own default properties. */
  amqp_table_entry_t cap;
  cap.key = amqp_cstring_bytes("consumer_cancel_notify");
  cap.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  cap.value.value.boolean = 1;
  amqp_table_entry_t prop[2];
  prop[0].key = amqp_cstring_bytes("connection_name");
  prop[0].value.kind = AMQP_FIELD_KIND_UTF8;
  prop[0].value.value.bytes = amqp_cstring_bytes(b->conn_name);
  prop[1].key = amqp_cstring_bytes("capabilities");
  prop[1].value.kind = AMQP_FIELD_KIND_TABLE;
  prop[1].value.value.table.num_entries = 1;
  prop[1].value.value.table.entries = &cap;
  amqp_table_t props = {2, prop};
  broker__guard(b, b->opts.connect_timeout_ms);
  amqp_rpc_reply_t r = amqp_login_with_properties(
      b->conn, vhost, 0, BROKER_FRAME_MAX, b->opts.heartbeat_s, &props,
      AMQP_SASL_METHOD_PLAIN, user, b->opts.password ? b->opts.password : "");
  int rc = broker__reply(b, r, 0, "login", err, errlen);
  if (rc == SO_ERR_UNAVAILABLE &&
      r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
      r.library_error == AMQP_STATUS_CONNECTION_CLOSED) {
    /* rabbitmq-c advertises authentication_failure_close, so RabbitMQ
     * answers a bad user, password or vhost with connection.close
     * (ACCESS_REFUSED / NOT_ALLOWED), which broker__reply maps to
     * SO_ERR_REFUSED. A bare hang-up is something else: a broker stopping
     * or restarting, or a proxy in front of it losing its upstream. That
     * is transient, and the caller retries with backoff. */
    so_errf(err, errlen,
            "login: the connection closed during the handshake (broker "
            "restarting, or a proxy lost its upstream); vhost '%s'",
            vhost);
    return SO_ERR_UNAVAILABLE;
  }
  return rc;
}

/* Connect to uris[idx]: socket, TLS, login, channels, topology, consumers.
 * On failure the connection is dropped. */
static int connect_uri(struct broker *b, size_t idx, char *err, size_t errlen)
{
  const char *uri = b->opts.uris[idx];
  char buf[BROKER_URI_MAX];
  struct amqp_connection_info ci;
  int rc;
  snprintf(buf, sizeof(buf), "%s", uri);
  if (amqp_parse_url(buf, &ci) != AMQP_STATUS_OK) {
    so_errf(err, errlen, "broker: bad uri %s", uri);
    return SO_ERR_INVALID;
  }
  /* "amqp://host/" names the empty vhost; nobody means that. */
  const char *vhost = ci.vhost[0] ? ci.vhost : "/";
  const char *user = b->opts.user ? b->opts.user : ci.user;

  b->conn = amqp_new_connection();
  if (!b->conn)
    return SO_ERR_NOMEM;
  amqp_socket_t *sock =
      ci.ssl ? amqp_ssl_socket_new(b->conn) : amqp_tcp_socket_new(b->conn);
  if (!sock) {
    so_errf(err, errlen, "broker: cannot create socket");
    rc = SO_ERR_NOMEM;
    goto fail;
  }
  if (ci.ssl && (rc = tls_setup(b, sock, err, errlen)) != SO_OK)
    goto fail;
  struct timeval ctv = ms_timeval(b->opts.connect_timeout_ms);
  struct timeval rtv = ms_timeval(b->opts.op_timeout_ms);
  amqp_set_handshake_timeout(b->conn, &ctv);
  amqp_set_rpc_timeout(b->conn, &rtv);
  int st = amqp_socket_open_noblock(sock, ci.host, ci.port, &ctv);
  if (st != AMQP_STATUS_OK) {
    if (st == AMQP_STATUS_SSL_PEER_VERIFY_FAILED ||
        st == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED ||
        (ci.ssl && b->opts.tls_verify_peer &&
         st == AMQP_STATUS_SSL_CONNECTION_FAILED))
      so_errf(err, errlen,
              "broker: %s: TLS certificate verification failed (%s): check "
              "broker.tls.ca_file and the certificate's host name",
              uri, amqp_error_string2(st));
    else
      so_errf(err, errlen, "broker: %s: %s", uri, amqp_error_string2(st));
    rc = st == AMQP_STATUS_TIMEOUT ? SO_ERR_TIMEOUT : SO_ERR_UNAVAILABLE;
    goto fail;
  }
  b->uri_index = idx;
  b->raw = !ci.ssl;
  /* The guard shuts down its own duplicate of the socket: rabbitmq-c may
   * close its descriptor inside a call (heartbeat timeout), and the number
   * could be reused by another thread before we disarm. */
  b->guard_fd = fcntl(amqp_get_sockfd(b->conn), F_DUPFD_CLOEXEC, 0);
  if ((rc = login(b, vhost, user, err, errlen)) != SO_OK)
    goto fail;
  if ((rc = broker__open_main(b, err, errlen)) != SO_OK)
    goto fail;
  if ((rc = open_pub(b, err, errlen)) != SO_OK)
    goto fail;
  b->connected_once = true;
  if (b->opts.topology &&
      (rc = topology_declare(b, b->opts.topology, err, errlen)) != SO_OK)
    goto fail;
  if ((rc = broker__restore_consumers(b, err, errlen)) != SO_OK)
    goto fail;
  log_info("broker: connected uri=%s vhost=%s generation=%llu heartbeat_s=%d",
           uri, vhost, (unsigned long long)b->generation,
           amqp_get_heartbeat(b->conn));
  return SO_OK;
fail:
  broker_drop(b);
  return rc;
}

int broker_connect(struct broker *b, char *err, size_t errlen)
{
  if (b->conn)
    return broker__ensure(b, err, errlen);
  size_t n = b->opts.n_uris;
  size_t start = b->connected_once ? (b->uri_index + 1) % n : 0;
  int saved_backoff = b->backoff_ms;
  int rc = SO_ERR_UNAVAILABLE;
  for (size_t i = 0; i < n; i++) {
    size_t idx = (start + i) % n;
    rc = connect_uri(b, idx, err, errlen);
    if (rc == SO_OK) {
      b->backoff_ms = 0;
      b->next_attempt_ms = 0;
      return SO_OK;
    }
    log_warn("broker: connect failed uri=%s status=%s", b->opts.uris[idx],
             so_strerror(rc));
    /* A topology conflict or a bad local setting is the same for every
     * node of the cluster: trying the others only hides the message. */
    if (rc == SO_ERR_CONFLICT || rc == SO_ERR_INVALID || rc == SO_ERR_NOMEM)
      break;
  }
  b->backoff_ms = saved_backoff;
  backoff_next(b);
  return rc;
}

int broker__ensure(struct broker *b, char *err, size_t errlen)
{
  int rc;
  if (!b->conn) {
    int64_t wait = b->next_attempt_ms - clock_monotonic_ms();
    if (wait > 0) {
      so_errf(err, errlen, "broker: down; next reconnect in %lld ms",
              (long long)wait);
      return SO_ERR_UNAVAILABLE;
    }
    return broker_connect(b, err, errlen);
  }
  bool need_rpc = !b->main_open || !b->pub_open;
  for (size_t i = 0; i < b->n_consumers; i++)
    need_rpc = need_rpc || !b->consumers[i].active;
  /* An RPC reads: queued frames go first, so that nothing is ever read
   * (a channel closed, a generation ended) while frames of the old state
   * wait in the buffer. */
  if (need_rpc && (rc = broker__flush(b)) != SO_OK)
    return rc == SO_ERR_TIMEOUT ? SO_ERR_UNAVAILABLE : rc;
  if (!b->main_open && (rc = broker__open_main(b, err, errlen)) != SO_OK)
    return rc;
  /* After a reopen, a new consumer, or a consumer the broker cancelled. */
  for (size_t i = 0; i < b->n_consumers; i++) {
    if (!b->consumers[i].active) {
      if ((rc = broker__restore_consumers(b, err, errlen)) != SO_OK)
        return rc;
      break;
    }
  }
  if (!b->pub_open && (rc = open_pub(b, err, errlen)) != SO_OK)
    return rc;
  return SO_OK;
}

int broker_queue_counts(struct broker *b, const char *queue, uint32_t *messages,
                        uint32_t *consumers, char *err, size_t errlen)
{
  int rc = broker__conn_flush(b);
  if (rc == SO_OK)
    rc = broker__ensure(b, err, errlen);
  if (rc)
    return rc;
  broker__guard(b, b->opts.op_timeout_ms);
  amqp_queue_declare_ok_t *ok =
      amqp_queue_declare(b->conn, BROKER_CH_MAIN, amqp_cstring_bytes(queue), 1,
                         0, 0, 0, amqp_empty_table);
  rc = broker__reply(b, amqp_get_rpc_reply(b->conn), BROKER_CH_MAIN,
                     "queue.declare(passive)", err, errlen);
  if (rc == SO_ERR_NOTFOUND) {
    so_errf(err, errlen, "broker: no queue '%s'", queue);
    /* Reopen now so the session is whole again; a failure shows later. */
    int rc2 = broker__ensure(b, NULL, 0);
    (void)rc2;
    return SO_ERR_NOTFOUND;
  }
  if (rc)
    return rc;
  if (messages)
    *messages = ok->message_count;
  if (consumers)
    *consumers = ok->consumer_count;
  return SO_OK;
}
