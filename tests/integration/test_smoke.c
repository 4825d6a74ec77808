/* test_smoke.c - the servers scripts/setup provides are there and usable.
 *
 * Talks to RabbitMQ and PostgreSQL directly (rabbitmq-c, libpq), not through
 * the sendonce library, so a failure here points at the environment rather
 * than at our code. Each part exercises what the design relies on: a quorum
 * queue, publisher confirms, a persistent message consumed with a manual
 * ack; a login with the registry role and a table round trip. A server that
 * is down fails the test: the suite never skips its servers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <cmocka.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <libpq-fe.h>

#include "testenv.h"

#define SMOKE_CHANNEL 1
#define SMOKE_WAIT_SECONDS 10

/* What a test holds, so the teardown can release it (and remove the queue
 * or table) even when an assertion ended the test half-way. */
struct smoke {
  char *uri;                    /* broker URI copy, parsed in place */
  amqp_connection_state_t conn; /* NULL until created */
  int channel_open;             /* channel SMOKE_CHANNEL is usable */
  char *queue;                  /* unique queue name; declared if non-NULL */
  amqp_envelope_t env;          /* the consumed delivery */
  int env_held;                 /* env must be destroyed */
  PGconn *pg;                   /* NULL until connected */
  char *table;                  /* unique table name */
  char *ident;                  /* `table` quoted */
  int table_exists;             /* the teardown must drop it */
  PGresult *res;                /* last result, NULL once cleared */
};

static int smoke_setup(void **state)
{
  struct smoke *s = calloc(1, sizeof(*s));
  if (!s)
    return -1;
  *state = s;
  return 0;
}

/* Best effort: the test has already passed or failed by now. */
static int smoke_teardown(void **state)
{
  struct smoke *s = *state;
  if (s->env_held)
    amqp_destroy_envelope(&s->env);
  if (s->conn) {
    if (s->channel_open && s->queue)
      amqp_queue_delete(s->conn, SMOKE_CHANNEL, amqp_cstring_bytes(s->queue), 0,
                        0);
    if (s->channel_open)
      amqp_channel_close(s->conn, SMOKE_CHANNEL, AMQP_REPLY_SUCCESS);
    amqp_connection_close(s->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(s->conn);
  }
  if (s->table_exists && PQstatus(s->pg) == CONNECTION_OK) {
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP TABLE %s", s->ident);
    PQclear(PQexec(s->pg, sql));
  }
  PQclear(s->res);
  PQfreemem(s->ident);
  PQfinish(s->pg);
  free(s->table);
  free(s->queue);
  free(s->uri);
  free(s);
  return 0;
}

/* ------------------------------------------------------------------ AMQP */

/* Fail the test with the broker's explanation when an RPC did not succeed. */
static void smoke_check_reply(amqp_rpc_reply_t r, const char *what)
{
  if (r.reply_type == AMQP_RESPONSE_NORMAL)
    return;
  char detail[256] = "";
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    snprintf(detail, sizeof(detail), "%s", amqp_error_string2(r.library_error));
  } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
             (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD ||
              r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)) {
    /* connection.close and channel.close share the code/text layout. */
    const amqp_channel_close_t *c = r.reply.decoded;
    snprintf(detail, sizeof(detail), "server %u: %.*s", c->reply_code,
             (int)c->reply_text.len, (const char *)c->reply_text.bytes);
  } else {
    snprintf(detail, sizeof(detail), "reply type %d", (int)r.reply_type);
  }
  fail_msg("%s: %s", what, detail);
}

/* Open s->conn and its channel with the test credentials; the vhost comes
 * from the broker URI. */
static void smoke_amqp_open(struct smoke *s)
{
  s->uri = strdup(testenv_get("SENDONCE_BROKER_URI"));
  assert_non_null(s->uri);
  struct amqp_connection_info info;
  amqp_default_connection_info(&info);
  assert_int_equal(amqp_parse_url(s->uri, &info), AMQP_STATUS_OK);

  s->conn = amqp_new_connection();
  assert_non_null(s->conn);
  amqp_socket_t *sock = amqp_tcp_socket_new(s->conn);
  assert_non_null(sock);
  struct timeval tv = {.tv_sec = SMOKE_WAIT_SECONDS, .tv_usec = 0};
  int rc = amqp_socket_open_noblock(sock, info.host, info.port, &tv);
  if (rc != AMQP_STATUS_OK)
    fail_msg("connect to %s:%d: %s (is RabbitMQ running? scripts/setup)",
             info.host, info.port, amqp_error_string2(rc));
  assert_int_equal(amqp_set_rpc_timeout(s->conn, &tv), AMQP_STATUS_OK);

  smoke_check_reply(
      amqp_login(s->conn, info.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 30,
                 AMQP_SASL_METHOD_PLAIN, testenv_get("SENDONCE_BROKER_USER"),
                 testenv_get("SENDONCE_BROKER_PASSWORD")),
      "login");
  amqp_channel_open(s->conn, SMOKE_CHANNEL);
  smoke_check_reply(amqp_get_rpc_reply(s->conn), "channel.open");
  s->channel_open = 1;
}

/* A clean close is part of what is tested; the teardown only frees. */
static void smoke_amqp_close(struct smoke *s)
{
  s->channel_open = 0;
  smoke_check_reply(
      amqp_channel_close(s->conn, SMOKE_CHANNEL, AMQP_REPLY_SUCCESS),
      "channel.close");
  smoke_check_reply(amqp_connection_close(s->conn, AMQP_REPLY_SUCCESS),
                    "connection.close");
  amqp_connection_state_t conn = s->conn;
  s->conn = NULL;
  assert_int_equal(amqp_destroy_connection(conn), AMQP_STATUS_OK);
}

/* Wait (bounded) for the confirm of publish number `tag`. */
static void smoke_wait_confirm(amqp_connection_state_t conn, uint64_t tag)
{
  time_t deadline = time(NULL) + SMOKE_WAIT_SECONDS;
  for (;;) {
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
    amqp_frame_t frame;
    int rc = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) {
      if (time(NULL) >= deadline)
        fail_msg("no publisher confirm within %d s", SMOKE_WAIT_SECONDS);
      continue;
    }
    if (rc != AMQP_STATUS_OK)
      fail_msg("waiting for confirm: %s", amqp_error_string2(rc));
    if (frame.frame_type != AMQP_FRAME_METHOD)
      continue;
    if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD)
      fail_msg("broker nacked the publish");
    if (frame.payload.method.id == AMQP_BASIC_RETURN_METHOD)
      fail_msg("broker returned the publish (unroutable)");
    if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      const amqp_basic_ack_t *ack = frame.payload.method.decoded;
      assert_int_equal(ack->delivery_tag, tag);
      return;
    }
  }
}

static void test_broker_quorum_confirm_roundtrip(void **state)
{
  struct smoke *s = *state;
  smoke_amqp_open(s);
  amqp_connection_state_t conn = s->conn;
  s->queue = testenv_unique("sendonce.smoke");
  amqp_bytes_t qname = amqp_cstring_bytes(s->queue);

  amqp_table_entry_t qargs_entries[1];
  qargs_entries[0].key = amqp_cstring_bytes("x-queue-type");
  qargs_entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
  qargs_entries[0].value.value.bytes = amqp_cstring_bytes("quorum");
  amqp_table_t qargs = {.num_entries = 1, .entries = qargs_entries};
  amqp_queue_declare_ok_t *declared =
      amqp_queue_declare(conn, SMOKE_CHANNEL, qname, 0, 1, 0, 0, qargs);
  smoke_check_reply(amqp_get_rpc_reply(conn), "queue.declare (quorum)");
  assert_non_null(declared);
  assert_int_equal(declared->message_count, 0);

  amqp_confirm_select(conn, SMOKE_CHANNEL);
  smoke_check_reply(amqp_get_rpc_reply(conn), "confirm.select");

  /* A body with the run's unique name, so an old message cannot pass. */
  char body[256];
  snprintf(body, sizeof(body), "{\"smoke\":\"%s\"}", s->queue);
  amqp_basic_properties_t props;
  memset(&props, 0, sizeof(props));
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.content_type = amqp_cstring_bytes("application/json");
  props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
  assert_int_equal(
      amqp_basic_publish(conn, SMOKE_CHANNEL, amqp_empty_bytes, qname, 1, 0,
                         &props, amqp_cstring_bytes(body)),
      AMQP_STATUS_OK);
  smoke_wait_confirm(conn, 1);

  amqp_basic_qos(conn, SMOKE_CHANNEL, 0, 1, 0);
  smoke_check_reply(amqp_get_rpc_reply(conn), "basic.qos");
  amqp_basic_consume(conn, SMOKE_CHANNEL, qname, amqp_empty_bytes, 0, 0, 0,
                     amqp_empty_table);
  smoke_check_reply(amqp_get_rpc_reply(conn), "basic.consume");

  amqp_envelope_t *env = &s->env;
  struct timeval tv = {.tv_sec = SMOKE_WAIT_SECONDS, .tv_usec = 0};
  amqp_maybe_release_buffers(conn);
  smoke_check_reply(amqp_consume_message(conn, env, &tv, 0),
                    "consume (bounded wait)");
  s->env_held = 1;
  assert_int_equal(env->message.body.len, strlen(body));
  assert_memory_equal(env->message.body.bytes, body, strlen(body));
  assert_int_equal(env->message.properties.delivery_mode,
                   AMQP_DELIVERY_PERSISTENT);
  assert_false(env->redelivered);
  assert_int_equal(amqp_basic_ack(conn, SMOKE_CHANNEL, env->delivery_tag, 0),
                   AMQP_STATUS_OK);
  s->env_held = 0;
  amqp_destroy_envelope(env);

  /* The ack took: the queue is empty when we delete it. */
  amqp_queue_delete_ok_t *deleted =
      amqp_queue_delete(conn, SMOKE_CHANNEL, qname, 0, 0);
  smoke_check_reply(amqp_get_rpc_reply(conn), "queue.delete");
  assert_non_null(deleted);
  assert_int_equal(deleted->message_count, 0);
  free(s->queue);
  s->queue = NULL;

  smoke_amqp_close(s);
}

/* ------------------------------------------------------------ PostgreSQL */

static void smoke_pg_open(struct smoke *s)
{
  /* The conninfo string goes in as an expanded dbname; the password is a
   * separate parameter so it is never part of a string anyone prints. */
  const char *const keys[] = {"dbname", "password", "connect_timeout",
                              "application_name", NULL};
  const char *const values[] = {testenv_get("SENDONCE_REGISTRY_PG_CONNINFO"),
                                testenv_get("SENDONCE_REGISTRY_PASSWORD"), "10",
                                "sendonce-smoke", NULL};
  s->pg = PQconnectdbParams(keys, values, 1);
  assert_non_null(s->pg);
  if (PQstatus(s->pg) != CONNECTION_OK)
    fail_msg("connect to PostgreSQL: %s (is it running? scripts/setup)",
             PQerrorMessage(s->pg));
}

/* Run `sql` into s->res (cleared first) and fail unless it has `want`. */
static void smoke_pg_exec(struct smoke *s, ExecStatusType want, const char *sql,
                          int nparams, const char *const *params)
{
  PQclear(s->res);
  s->res = PQexecParams(s->pg, sql, nparams, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(s->res) != want)
    fail_msg("%s: %s", sql, PQerrorMessage(s->pg));
}

static void test_registry_table_roundtrip(void **state)
{
  struct smoke *s = *state;
  smoke_pg_open(s);
  s->table = testenv_unique("sendonce_smoke");
  char *ident = PQescapeIdentifier(s->pg, s->table, strlen(s->table));
  assert_non_null(ident);
  s->ident = ident;

  char sql[512];
  snprintf(sql, sizeof(sql),
           "CREATE TABLE %s (id integer PRIMARY KEY, note text NOT NULL)",
           ident);
  smoke_pg_exec(s, PGRES_COMMAND_OK, sql, 0, NULL);
  s->table_exists = 1;

  snprintf(sql, sizeof(sql), "INSERT INTO %s (id, note) VALUES (1, $1)", ident);
  const char *const note[] = {s->table};
  smoke_pg_exec(s, PGRES_COMMAND_OK, sql, 1, note);
  assert_string_equal(PQcmdTuples(s->res), "1");

  snprintf(sql, sizeof(sql), "SELECT id, note FROM %s", ident);
  smoke_pg_exec(s, PGRES_TUPLES_OK, sql, 0, NULL);
  assert_int_equal(PQntuples(s->res), 1);
  assert_string_equal(PQgetvalue(s->res, 0, 0), "1");
  assert_string_equal(PQgetvalue(s->res, 0, 1), s->table);

  snprintf(sql, sizeof(sql), "DROP TABLE %s", ident);
  smoke_pg_exec(s, PGRES_COMMAND_OK, sql, 0, NULL);
  s->table_exists = 0;

  /* The drop took: the name is free again. */
  const char *const regclass[] = {ident};
  smoke_pg_exec(s, PGRES_TUPLES_OK, "SELECT to_regclass($1) IS NULL", 1,
                regclass);
  assert_string_equal(PQgetvalue(s->res, 0, 0), "t");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_broker_quorum_confirm_roundtrip,
                                      smoke_setup, smoke_teardown),
      cmocka_unit_test_setup_teardown(test_registry_table_roundtrip,
                                      smoke_setup, smoke_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
