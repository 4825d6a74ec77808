/* sink_client.h - start, drive and stop a sendonce-sink from a test.
 *
 * Link the `sendonce_sink_client` library (tests/sink.cmake); it knows where
 * the sink binary was built ($SENDONCE_SINK_BIN overrides) and builds it
 * first. The sink listens on a free loopback port and dies with the test
 * process (PR_SET_PDEATHSIG), so a crashed test leaves no server behind.
 *
 *   const char *args[] = {"--honour-idempotency", NULL};
 *   struct sink_client *s = sink_client_start(args, err, sizeof(err));
 *   ... point the provider URL at sink_client_url(s) ...
 *   struct json_object *st = sink_client_stats(s);
 *   assert accepted_duplicates == 0 ...
 *   sink_client_stop(s);
 */
#ifndef SENDONCE_SINK_CLIENT_H
#define SENDONCE_SINK_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

struct sink_client;

/* sink_client_start: run the sink with `args` (NULL-terminated, may be NULL;
 * --port 0 is added) and wait for its port. NULL with a message in err on
 * failure. */
struct sink_client *sink_client_start(const char *const *args, char *err,
                                      size_t errlen);

/* sink_client_stop: SIGTERM, wait, free. Returns the sink's exit status
 * (0 for a clean shutdown), -1 if it did not exit within 10 s (then it is
 * killed). NULL is a no-op returning 0. */
int sink_client_stop(struct sink_client *s);

/* sink_client_pid: the sink's process id. */
int sink_client_pid(const struct sink_client *s);

/* sink_client_port / sink_client_url: where it listens;
 * url is "http://127.0.0.1:N" (no trailing slash), owned by s. */
int sink_client_port(const struct sink_client *s);
const char *sink_client_url(const struct sink_client *s);

/* sink_client_stats: GET /stats, parsed; the caller json_object_put()s it.
 * NULL on failure. */
struct json_object *sink_client_stats(struct sink_client *s);

/* sink_client_stat: one integer counter of a stats object ("total",
 * "unique_keys", "accepted_duplicates", ...); -1 if absent. */
int64_t sink_client_stat(struct json_object *stats, const char *name);

/* sink_client_mode: POST /mode with a JSON text. Returns the HTTP status
 * (200 when applied) or -1 when the request failed. */
int sink_client_mode(struct sink_client *s, const char *json);

/* sink_client_reset: POST /reset. Returns the HTTP status or -1. */
int sink_client_reset(struct sink_client *s);

#endif /* SENDONCE_SINK_CLIENT_H */
