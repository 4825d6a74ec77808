/* status.h - the project-wide status codes.
 *
 * Every fallible function in sendonce returns 0 (SO_OK) or one of these
 * negative codes. Library-specific codes (amqp_rpc_reply_t, CURLcode,
 * SQLite and libpq results) are translated at the module boundary and go
 * no further. Where detail matters, a function also fills a caller's
 * `char *err, size_t errlen` buffer.
 */
#ifndef SENDONCE_STATUS_H
#define SENDONCE_STATUS_H

enum so_status {
  SO_OK = 0,
  SO_ERR_NOMEM = -1,       /* allocation failed */
  SO_ERR_INVALID = -2,     /* bad argument, bad input, failed validation */
  SO_ERR_NOTFOUND = -3,    /* no such campaign, queue, file, key */
  SO_ERR_IO = -4,          /* system call or file failure */
  SO_ERR_UNAVAILABLE = -5, /* a server (broker, database, provider) is down */
  SO_ERR_TIMEOUT = -6,     /* a bounded wait ran out */
  SO_ERR_STALE_FENCE = -7, /* our lease was lost: stop at once */
  SO_ERR_CONFLICT = -8,    /* a state transition lost a race or is illegal */
  SO_ERR_REFUSED = -9,     /* the peer said no (nack, return, 4xx) */
  SO_ERR_SCHEMA = -10,     /* a database schema newer than this program */
  SO_ERR_PROTOCOL = -11,   /* the peer broke its protocol */
  SO_ERR_TOO_LARGE = -12,  /* a size cap was hit */
  SO_ERR_INTERNAL = -13,   /* a bug: an invariant did not hold */
};

/* so_strerror: a static, human-readable string for a status code. */
const char *so_strerror(int status);

/* Mark functions whose status must be looked at. */
#if defined(__GNUC__) || defined(__clang__)
#define SO_MUST_CHECK __attribute__((warn_unused_result))
#define SO_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define SO_MUST_CHECK
#define SO_PRINTF(fmt, args)
#endif

#include <stddef.h>

/* so_errf: printf into a caller's `char *err, size_t errlen` detail buffer
 * (the convention of every fallible function that explains itself).
 * Does nothing when err is NULL or errlen is 0; always NUL-terminates. */
void so_errf(char *err, size_t errlen, const char *fmt, ...) SO_PRINTF(3, 4);

#endif /* SENDONCE_STATUS_H */
