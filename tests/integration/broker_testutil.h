/* broker_testutil.h - helpers of the broker integration tests: options for
 * the real RabbitMQ from testenv, unique topologies, child processes
 * (socat fronts), the management API.
 */
#ifndef SENDONCE_BROKER_TESTUTIL_H
#define SENDONCE_BROKER_TESTUTIL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

#include "broker.h"
#include "topology.h"

/* bt_options: options for `uri` (NULL: SENDONCE_BROKER_URI) with the test
 * user/password, heartbeat 5 s, connect 2 s, op 2 s, backoff 50..400 ms,
 * and topology `t` (may be NULL). */
void bt_options(struct broker_options *o, const char *uri,
                const struct topology *t);

/* bt_uri_port: SENDONCE_BROKER_URI with host:port replaced by
 * 127.0.0.1:<port> (same vhost). Static buffer. */
const char *bt_uri_port(const char *scheme, const char *host, int port);

/* bt_topology: a unique prefix, delivery limit 5, retry delays 1 s, 30 s. */
void bt_topology(struct topology *t);

/* bt_open: broker_open + broker_connect, asserting success. */
struct broker *bt_open(const struct broker_options *o);

/* bt_publish: a confirmed publish that must succeed. */
void bt_publish(struct broker *b, const char *exchange, const char *key,
                const char *id, const char *body);

/* bt_get_wait: broker_get until a message arrives (asserting within
 * timeout_ms). Caller frees. */
struct broker_delivery *bt_get_wait(struct broker *b, const char *queue,
                                    int timeout_ms);

/* bt_poll_wait: broker_poll until a delivery arrives on any consumer
 * (asserting within timeout_ms). Caller frees. */
struct broker_delivery *bt_poll_wait(struct broker *b, int timeout_ms);

/* bt_free_port: a loopback TCP port that was free a moment ago. */
int bt_free_port(void);

/* bt_spawn: start argv in its own process group; waits until `port`
 * accepts connections (if > 0). */
pid_t bt_spawn(char *const argv[], int port);

/* bt_kill: SIGCONT + SIGTERM to the process group, and reap. */
void bt_kill(pid_t pid);

/* bt_mgmt_get: GET <mgmt url>/api/<path> as JSON (caller puts it), or
 * NULL on 404. Credentials go through libcurl, never argv. */
json_object *bt_mgmt_get(const char *path);

/* bt_vhost: the vhost of SENDONCE_BROKER_URI ("sendonce"). */
const char *bt_vhost(void);

#endif /* SENDONCE_BROKER_TESTUTIL_H */
