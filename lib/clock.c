/* clock.c - wall and monotonic time, RFC 3339 parsing and formatting.
 *
 * Civil-date arithmetic is done here rather than with timegm(), which is
 * not POSIX, or mktime(), which depends on the local time zone. */
#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#define MS_PER_S INT64_C(1000)
#define MS_PER_DAY INT64_C(86400000)

static int64_t timespec_ms(const struct timespec *ts)
{
  return (int64_t)ts->tv_sec * MS_PER_S + (int64_t)(ts->tv_nsec / 1000000);
}

int64_t clock_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return timespec_ms(&ts);
}

int64_t clock_monotonic_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return timespec_ms(&ts);
}

struct timespec clock_deadline(clockid_t clock, int64_t ns)
{
  struct timespec ts;
  clock_gettime(clock, &ts);
  int64_t t = (int64_t)ts.tv_nsec + ns;
  ts.tv_sec += (time_t)(t / 1000000000);
  ts.tv_nsec = (long)(t % 1000000000);
  return ts;
}

static int is_leap(int64_t y)
{
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil: eras of 400 years, March-based years so the leap day
 * is the last day of a year). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

/* Read exactly `n` decimal digits at *p into *out; advance *p. */
static int read_digits(const char **p, int n, int *out)
{
  int v = 0;
  for (int i = 0; i < n; i++) {
    char c = (*p)[i];
    if (c < '0' || c > '9')
      return SO_ERR_INVALID;
    v = v * 10 + (c - '0');
  }
  *p += n;
  *out = v;
  return SO_OK;
}

static int expect(const char **p, char a, char b)
{
  if (**p != a && **p != b)
    return SO_ERR_INVALID;
  (*p)++;
  return SO_OK;
}

int clock_parse_rfc3339(const char *text, int64_t *out_ms)
{
  const char *p = text;
  int year, mon, day, hour, min, sec, ms = 0;

  if (!text || !out_ms)
    return SO_ERR_INVALID;
  /* full-date "T" partial-time: every field has a fixed width. */
  if (read_digits(&p, 4, &year) || expect(&p, '-', '-') ||
      read_digits(&p, 2, &mon) || expect(&p, '-', '-') ||
      read_digits(&p, 2, &day) || expect(&p, 'T', 't') ||
      read_digits(&p, 2, &hour) || expect(&p, ':', ':') ||
      read_digits(&p, 2, &min) || expect(&p, ':', ':') ||
      read_digits(&p, 2, &sec))
    return SO_ERR_INVALID;
  if (*p == '.') {
    int ndigits = 0;
    p++;
    /* Any number of digits; the first three are milliseconds. */
    while (*p >= '0' && *p <= '9') {
      if (ndigits < 3)
        ms = ms * 10 + (*p - '0');
      ndigits++;
      p++;
    }
    if (ndigits == 0)
      return SO_ERR_INVALID;
    for (; ndigits < 3; ndigits++)
      ms *= 10;
  }
  int offset_min = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p == '-' ? -1 : 1, oh, om;
    p++;
    if (read_digits(&p, 2, &oh) || expect(&p, ':', ':') ||
        read_digits(&p, 2, &om) || oh > 23 || om > 59)
      return SO_ERR_INVALID;
    offset_min = sign * (oh * 60 + om);
  } else {
    return SO_ERR_INVALID; /* the offset is required */
  }
  if (*p != '\0')
    return SO_ERR_INVALID;
  /* Ranges. Second 60 (a leap second) is refused: see clock.h. */
  if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) ||
      hour > 23 || min > 59 || sec > 59)
    return SO_ERR_INVALID;

  int64_t days = days_from_civil(year, mon, day);
  int64_t secs =
      days * 86400 + hour * 3600 + min * 60 + sec - (int64_t)offset_min * 60;
  *out_ms = secs * MS_PER_S + ms;
  return SO_OK;
}

/* put_digits: v (0 <= v < 10^width) as exactly `width` decimal digits. */
static char *put_digits(char *p, int v, int width)
{
  for (int i = width - 1; i >= 0; i--) {
    p[i] = (char)('0' + v % 10);
    v /= 10;
  }
  return p + width;
}

int clock_format_rfc3339(int64_t ms, char *buf, size_t buflen)
{
  if (!buf || buflen < CLOCK_RFC3339_LEN)
    return SO_ERR_TOO_LARGE;
  /* Floor division: -1 ms is 1969-12-31T23:59:59.999Z. */
  int64_t days = ms / MS_PER_DAY;
  int64_t rem = ms % MS_PER_DAY;
  if (rem < 0) {
    rem += MS_PER_DAY;
    days--;
  }
  int64_t y;
  int m, d;
  civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999)
    return SO_ERR_INVALID;
  /* Fixed-width digits written directly: snprintf with seven
   * conversions cost ~3,500 instructions, and every event carries one. */
  char *p = buf;
  p = put_digits(p, (int)y, 4);
  *p++ = '-';
  p = put_digits(p, m, 2);
  *p++ = '-';
  p = put_digits(p, d, 2);
  *p++ = 'T';
  p = put_digits(p, (int)(rem / 3600000), 2);
  *p++ = ':';
  p = put_digits(p, (int)(rem / 60000 % 60), 2);
  *p++ = ':';
  p = put_digits(p, (int)(rem / 1000 % 60), 2);
  *p++ = '.';
  p = put_digits(p, (int)(rem % 1000), 3);
  *p++ = 'Z';
  *p = '\0';
  return SO_OK;
}

void clock_sleep_ms(int64_t ms, const volatile sig_atomic_t *stop)
{
  /* With a stop flag, sleep in short slices so a stop is noticed within
   * one slice even if the signal that set it landed on another thread. */
  const int64_t slice_ms = 50;
  int64_t deadline = clock_monotonic_ms() + ms;

  for (;;) {
    if (stop && *stop)
      return;
    int64_t left = deadline - clock_monotonic_ms();
    if (left <= 0)
      return;
    if (stop && left > slice_ms)
      left = slice_ms;
    struct timespec ts = {.tv_sec = (time_t)(left / 1000),
                          .tv_nsec = (long)(left % 1000) * 1000000L};
    if (nanosleep(&ts, NULL) != 0 && errno != EINTR)
      return;
  }
}
