/* registry_pg_conn.c - the PostgreSQL registry's connection layer. */
#include "registry_pg_conn.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Default seconds libpq waits for a connection; a conninfo value wins. */
#define PG_CONNECT_TIMEOUT_S "5"
/* Serialization failures and deadlocks: how many attempts in all. */
#define PG_MAX_ATTEMPTS 4
/* Array literals: a batch of marks is capped well above any sane batch. */
#define PG_BUF_CAP ((size_t)64 * 1024 * 1024)

/* Copy a libpq message without its trailing newline(s). */
static void pg_trim(char *dst, size_t dstlen, const char *msg)
{
  snprintf(dst, dstlen, "%s", msg && *msg ? msg : "unknown error");
  size_t n = strlen(dst);
  while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == '\r'))
    dst[--n] = '\0';
}

/* SQLSTATE -> status. A failure without a SQLSTATE came from libpq itself
 * (the connection broke): unavailable. */
static int pg_sqlstate_status(const char *state)
{
  if (!state || strlen(state) != 5)
    return SO_ERR_UNAVAILABLE;
  if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
    return SO_ERR_CONFLICT;
  /* statement_timeout, lock_timeout: a row locked elsewhere for longer
   * than busy_timeout_ms. The registry is busy, as SQLite's SQLITE_BUSY,
   * and callers treat both alike: unavailable for now, defer the work. The
   * statement was rolled back and the connection is fine. */
  if (strcmp(state, "57014") == 0 || strcmp(state, "55P03") == 0)
    return SO_ERR_UNAVAILABLE;
  if (strncmp(state, "57P", 3) == 0)
    return SO_ERR_UNAVAILABLE; /* admin/crash shutdown, cannot connect now */
  static const struct {
    const char cls[3];
    int status;
  } classes[] = {
      {"08", SO_ERR_UNAVAILABLE}, /* connection exception */
      {"53", SO_ERR_UNAVAILABLE}, /* insufficient resources: disk, memory */
      {"23", SO_ERR_CONFLICT},    /* integrity constraint violation */
      {"22", SO_ERR_INVALID},     /* data exception */
      {"28", SO_ERR_REFUSED},     /* invalid authorization */
      {"3D", SO_ERR_INVALID},     /* no such database */
      {"3F", SO_ERR_INVALID},     /* no such schema */
      {"42", SO_ERR_INTERNAL},    /* our SQL or a missing table: a bug */
      {"58", SO_ERR_IO},          /* system error */
  };
  for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
    if (strncmp(state, classes[i].cls, 2) == 0)
      return classes[i].status;
  }
  return SO_ERR_IO;
}

int pg_conn_status(struct registry_pg *r, const PGresult *res)
{
  if (PQstatus(r->conn) == CONNECTION_BAD) {
    r->lost = true;
    return SO_ERR_UNAVAILABLE;
  }
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  int rc = pg_sqlstate_status(state);
  if (rc == SO_ERR_CONFLICT && state && state[0] == '4' && state[1] == '0')
    r->retryable = true;
  /* A unique violation: the op may want to run again (marks, see
   * registry_pg_mark_ops.c). */
  r->unique_violation = state && strcmp(state, "23505") == 0;
  /* A terminated backend answers the statement with a FATAL 57P01 before
   * libpq has read the EOF that follows: the connection is lost all the
   * same. */
  if (state && (strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0))
    r->lost = true;
  return rc;
}

/* Record a failed statement in errmsg; returns the mapped status. */
static int pg_fail(struct registry_pg *r, const PGresult *res, const char *what)
{
  int rc = pg_conn_status(r, res);
  char msg[REGISTRY_ERRMSG_LEN];
  const char *text = res ? PQresultErrorMessage(res) : "";
  pg_trim(msg, sizeof(msg), *text ? text : PQerrorMessage(r->conn));
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  return registry_set_error(&r->base, rc, "registry postgresql: %s: %s%s%s%s",
                            what, msg, state ? " (SQLSTATE " : "",
                            state ? state : "", state ? ")" : "");
}

int pg_conn_exec(struct registry_pg *r, int id, const char *sql,
                 const char *what, int nparams, const char *const *values,
                 PGresult **out)
{
  if (out)
    *out = NULL;
  if (id < 0 || id >= PG_STMT_MAX)
    return registry_set_error(&r->base, SO_ERR_INTERNAL,
                              "registry postgresql: %s: bad statement id %d",
                              what, id);
  char name[24];
  snprintf(name, sizeof(name), "sendonce_%d", id);
  if (!r->prepared[id]) {
    PGresult *p = PQprepare(r->conn, name, sql, 0, NULL);
    if (!p || PQresultStatus(p) != PGRES_COMMAND_OK) {
      char ctx[96];
      snprintf(ctx, sizeof(ctx), "preparing %s", what);
      int rc = pg_fail(r, p, ctx);
      PQclear(p);
      return rc;
    }
    PQclear(p);
    r->prepared[id] = true;
  }
  PGresult *res = PQexecPrepared(r->conn, name, nparams, values, NULL, NULL, 0);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    int rc = pg_fail(r, res, what);
    PQclear(res);
    return rc;
  }
  if (out)
    *out = res;
  else
    PQclear(res);
  return SO_OK;
}

int pg_conn_simple(struct registry_pg *r, const char *sql, const char *what)
{
  PGresult *res = PQexec(r->conn, sql);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  int rc = SO_OK;
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
    rc = pg_fail(r, res, what);
  PQclear(res);
  return rc;
}

/* Notices go to the log, not to libpq's default stderr printer. A FATAL
 * that arrives while we are idle is the server telling us why it is about
 * to close the connection (shutdown, pg_terminate_backend): libpq hands it
 * here, and we take it as the end of the connection even before the
 * socket's EOF arrives. */
static void pg_notice_cb(void *arg, const PGresult *res)
{
  struct registry_pg *r = arg;
  const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (severity &&
      (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
    r->doomed = true;
  char msg[REGISTRY_ERRMSG_LEN];
  pg_trim(msg, sizeof(msg), PQresultErrorMessage(res));
  log_debug("registry: postgresql: server notice: %s", msg);
}

/* Per-connection settings, run after every (re)connect: PG_SESSION_PLANNER
 * (see registry_pg_conn.h) and the statement timeout. */
static int pg_session_setup(struct registry_pg *r)
{
  memset(r->prepared, 0, sizeof(r->prepared));
  char sql[192];
  snprintf(sql, sizeof(sql), PG_SESSION_PLANNER "; SET statement_timeout = %d",
           r->statement_timeout_ms > 0 ? r->statement_timeout_ms : 0);
  return pg_conn_simple(r, sql, "setting up the session");
}

int pg_conn_open(struct registry_pg *r, const struct registry_options *opt,
                 char *err, size_t errlen)
{
  r->statement_timeout_ms = opt->busy_timeout_ms;
  /* Defaults first: with expand_dbname the conninfo's own values (inserted
   * where "dbname" stands) override them. The password comes last, from
   * the options, so it never has to be in a string someone might log. */
  const char *keys[10];
  const char *vals[10];
  int k = 0;
  keys[k] = "connect_timeout", vals[k++] = PG_CONNECT_TIMEOUT_S;
  keys[k] = "fallback_application_name", vals[k++] = "sendonce";
  /* A server that vanishes without closing the socket (host down) is
   * noticed within about a minute instead of the kernel's two hours. */
  keys[k] = "keepalives_idle", vals[k++] = "30";
  keys[k] = "keepalives_interval", vals[k++] = "10";
  keys[k] = "keepalives_count", vals[k++] = "3";
  /* ... and one that vanishes while our statement is unacknowledged, in
   * 30 s rather than after the kernel's 15 minutes of retransmissions. */
  keys[k] = "tcp_user_timeout", vals[k++] = "30000";
  keys[k] = "dbname", vals[k++] = opt->pg_conninfo;
  if (opt->pg_password && *opt->pg_password)
    keys[k] = "password", vals[k++] = opt->pg_password;
  keys[k] = NULL, vals[k] = NULL;

  r->conn = PQconnectdbParams(keys, vals, 1);
  if (!r->conn) {
    snprintf(err, errlen, "registry postgresql: connect: out of memory");
    return SO_ERR_NOMEM;
  }
  if (PQstatus(r->conn) != CONNECTION_OK) {
    char msg[REGISTRY_ERRMSG_LEN];
    pg_trim(msg, sizeof(msg), PQerrorMessage(r->conn));
    snprintf(err, errlen, "registry postgresql: connect: %s", msg);
    return SO_ERR_UNAVAILABLE;
  }
  PQsetNoticeReceiver(r->conn, pg_notice_cb, r);
  int rc = pg_session_setup(r);
  if (!rc)
    rc = pg_migrate(r, err, errlen);
  else
    snprintf(err, errlen, "%s", r->base.errmsg);
  return rc;
}

/* Did the server close an idle connection? A terminated backend sends a
 * FATAL (which libpq hands to pg_notice_cb while idle) and closes the
 * socket; reading the pending input shows either. A socket with nothing to
 * read is presumed alive: the statement will tell. */
static bool pg_idle_alive(struct registry_pg *r)
{
  for (int i = 0; i < 4; i++) {
    struct pollfd p = {.fd = PQsocket(r->conn), .events = POLLIN};
    if (p.fd < 0)
      return false;
    if (poll(&p, 1, 0) <= 0)
      break;
    if (!PQconsumeInput(r->conn))
      return false;
    (void)PQisBusy(r->conn); /* parses what arrived: runs pg_notice_cb */
    if (r->doomed)
      return false;
    PGnotify *n;
    while ((n = PQnotifies(r->conn)) != NULL)
      PQfreemem(n);
  }
  return PQstatus(r->conn) == CONNECTION_OK;
}

int pg_conn_ready(struct registry_pg *r)
{
  r->lost = false;
  r->retryable = false;
  r->unique_violation = false;
  if (PQstatus(r->conn) == CONNECTION_OK && pg_idle_alive(r)) {
    /* Nothing of ours spans calls: a transaction left open by a failure
     * is rolled back before the next op. */
    if (PQtransactionStatus(r->conn) != PQTRANS_IDLE)
      return pg_conn_simple(r, "ROLLBACK", "rolling back");
    return SO_OK;
  }
  /* One warning when the connection goes, one line when it is back: a
   * worker calling every few milliseconds while the server is down must
   * not flood the log. */
  if (!r->down)
    log_warn("registry: postgresql: connection lost, reconnecting");
  PQreset(r->conn);
  r->doomed = false;
  if (PQstatus(r->conn) != CONNECTION_OK) {
    char msg[REGISTRY_ERRMSG_LEN];
    pg_trim(msg, sizeof(msg), PQerrorMessage(r->conn));
    if (!r->down)
      log_warn("registry: postgresql: server unreachable: %s", msg);
    r->down = true;
    return registry_set_error(&r->base, SO_ERR_UNAVAILABLE,
                              "registry postgresql: reconnect: %s", msg);
  }
  int rc = pg_session_setup(r);
  if (rc)
    return rc;
  r->down = false;
  log_info("registry: postgresql: reconnected");
  return SO_OK;
}

bool pg_conn_again(struct registry_pg *r, int rc, int *attempt, bool idempotent)
{
  (*attempt)++;
  if (rc == SO_OK)
    return false;
  if (r->retryable && *attempt < PG_MAX_ATTEMPTS) {
    /* A deadlock victim that retries at once tends to meet the same
     * partner: back off a little, more each time. */
    struct timespec ts = {0, (long)(*attempt) * 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return true;
  }
  return r->lost && idempotent && *attempt < 2;
}

/* ---- text-format helpers ------------------------------------------- */

static int pg_buf_reserve(struct pg_buf *b, size_t more)
{
  if (b->overflow)
    return SO_ERR_TOO_LARGE;
  if (more > PG_BUF_CAP || b->len + more + 1 > PG_BUF_CAP) {
    b->overflow = true;
    return SO_ERR_TOO_LARGE;
  }
  if (b->len + more + 1 <= b->cap)
    return SO_OK;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more + 1)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->overflow = true;
    return SO_ERR_NOMEM;
  }
  b->data = p;
  b->cap = cap;
  return SO_OK;
}

static int pg_buf_add(struct pg_buf *b, const char *s, size_t n)
{
  int rc = pg_buf_reserve(b, n);
  if (rc)
    return rc;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return SO_OK;
}

/* One element: double-quoted, with '"' and '\' backslash-escaped, so any
 * string (commas, braces, spaces, the word NULL) survives. */
static int pg_buf_element(struct pg_buf *b, const char *s)
{
  if (!s)
    return pg_buf_add(b, "NULL", 4);
  int rc = pg_buf_add(b, "\"", 1);
  const char *p = s;
  while (!rc && *p) {
    size_t run = strcspn(p, "\"\\");
    if (run) {
      rc = pg_buf_add(b, p, run);
      p += run;
    } else {
      char esc[2] = {'\\', *p};
      rc = pg_buf_add(b, esc, 2);
      p++;
    }
  }
  return rc ? rc : pg_buf_add(b, "\"", 1);
}

int pg_buf_array(struct pg_buf *b, const void *first, size_t stride, size_t n)
{
  b->len = 0;
  int rc = pg_buf_add(b, "{", 1);
  const char *base = first;
  for (size_t i = 0; !rc && i < n; i++) {
    const char *s;
    memcpy(&s, base + i * stride, sizeof(s));
    if (i > 0)
      rc = pg_buf_add(b, ",", 1);
    if (!rc)
      rc = pg_buf_element(b, s);
  }
  return rc ? rc : pg_buf_add(b, "}", 1);
}

void pg_buf_free(struct pg_buf *b)
{
  free(b->data);
  memset(b, 0, sizeof(*b));
}

int64_t pg_get_i64(const PGresult *res, int row, int col)
{
  if (PQgetisnull(res, row, col))
    return 0;
  return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

bool pg_get_bool(const PGresult *res, int row, int col)
{
  return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}
