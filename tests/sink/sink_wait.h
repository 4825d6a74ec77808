/* sink_wait.h - requests that wait before being answered.
 *
 * A waiting request's connection is suspended (MHD_suspend_connection), so
 * it holds no server thread; one timer thread resumes it at its deadline,
 * and MHD then calls the handler again, which answers. Hung requests have
 * no deadline: they wait until released (hang turned off) or shutdown.
 */
#ifndef SENDONCE_SINK_WAIT_H
#define SENDONCE_SINK_WAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

/* Embedded in the request; valid until the request completes. */
struct sink_waiter {
  struct MHD_Connection *conn; /* set by the caller */
  bool shutdown;               /* released by shutdown: answer 503 */
  /* private to sink_wait */
  int64_t deadline; /* monotonic ms; hung: INT64_MAX */
  size_t heap_index;
  struct sink_waiter *prev, *next; /* the hung list */
};

struct sink_wait;

/* sink_wait_new: start the timer thread; NULL on failure. */
struct sink_wait *sink_wait_new(void);

/* sink_wait_add: suspend the waiter's connection (call from the MHD
 * handler) until `latency_ms` from now, or until released if `hang`.
 * Returns false, with waiter->shutdown set and nothing suspended, when the
 * sink is shutting down: answer at once. */
bool sink_wait_add(struct sink_wait *w, struct sink_waiter *waiter, bool hang,
                   int64_t latency_ms);

/* sink_wait_release_hung: resume every hung request (hang was turned off);
 * the handler answers them by the mode in force. */
void sink_wait_release_hung(struct sink_wait *w);

/* sink_wait_shutdown: resume every waiting request with ->shutdown set and
 * refuse new ones. Call before MHD_stop_daemon. */
void sink_wait_shutdown(struct sink_wait *w);

/* sink_wait_free: stop the timer thread; NULL is a no-op. */
void sink_wait_free(struct sink_wait *w);

#endif /* SENDONCE_SINK_WAIT_H */
