/* clock.h - time in sendonce: milliseconds since the Unix epoch, UTC.
 *
 * Wall-clock times (due times, not_after) travel as int64 milliseconds.
 * Lease arithmetic never uses these: it is done on the registry's clock.
 * Deadlines and timeouts inside a process use clock_monotonic_ms().
 */
#ifndef SENDONCE_CLOCK_H
#define SENDONCE_CLOCK_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "status.h"

/* clock_now_ms: CLOCK_REALTIME in ms since the epoch. */
int64_t clock_now_ms(void);

/* clock_monotonic_ms: CLOCK_MONOTONIC in ms; only differences mean
 * anything. */
int64_t clock_monotonic_ms(void);

/* clock_deadline: the time `ns` (>= 0) nanoseconds from now on `clock`,
 * as the absolute deadline of a timed wait: CLOCK_REALTIME for
 * sem_timedwait and default condition variables, CLOCK_MONOTONIC for
 * condition variables set to it. */
struct timespec clock_deadline(clockid_t clock, int64_t ns);

/* clock_parse_rfc3339: parse an RFC 3339 date-time ("2026-11-27T09:00:00Z",
 * "2026-11-27T10:00:00.250+01:00"; 'T'/'t' and 'Z'/'z' accepted, an offset
 * is required) into ms since the epoch. Fractions beyond ms are truncated.
 * Years 0000-9999; a fraction needs at least one digit; offsets up to
 * +/-23:59. A leap second (second 60) is REJECTED: POSIX time cannot
 * represent it and a campaign is never due at one.
 * Returns SO_OK or SO_ERR_INVALID (bad syntax, out-of-range field, e.g. a
 * 31st of April, a 29th of February outside a leap year, or hour 24). */
int clock_parse_rfc3339(const char *text, int64_t *out_ms) SO_MUST_CHECK;

/* clock_format_rfc3339: format ms since the epoch as UTC with millisecond
 * precision ("2026-11-27T09:00:00.000Z") into buf. Returns SO_OK,
 * SO_ERR_TOO_LARGE if buf is shorter than CLOCK_RFC3339_LEN, or
 * SO_ERR_INVALID if the year falls outside 0000-9999. */
#define CLOCK_RFC3339_LEN 32
int clock_format_rfc3339(int64_t ms, char *buf, size_t buflen);

/* clock_sleep_ms: sleep, resuming after signals until `ms` elapsed or
 * `*stop` (if not NULL) becomes non-zero (noticed within 50 ms). */
void clock_sleep_ms(int64_t ms, const volatile sig_atomic_t *stop);

#endif /* SENDONCE_CLOCK_H */
