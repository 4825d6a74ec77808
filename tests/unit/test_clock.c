/* test_clock.c - RFC 3339 parsing/formatting and the sleep helper. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"

struct valid_case {
  const char *text;
  int64_t ms;
};

/* Expected values computed independently (date -u -d ... +%s). */
static const struct valid_case valid_cases[] = {
    {"1970-01-01T00:00:00Z", 0},
    {"1970-01-01T00:00:00.001Z", 1},
    {"2026-11-27T09:00:00Z", INT64_C(1795770000000)},
    {"2026-11-27t09:00:00z", INT64_C(1795770000000)},
    {"2026-11-27T10:00:00.250+01:00", INT64_C(1795770000250)},
    {"2026-11-27T04:30:00-04:30", INT64_C(1795770000000)},
    {"2026-11-27T09:00:00-00:00", INT64_C(1795770000000)},
    {"2026-11-27T09:00:00.5Z", INT64_C(1795770000500)},
    {"2026-11-27T09:00:00.12Z", INT64_C(1795770000120)},
    {"2026-11-27T09:00:00.123456789Z", INT64_C(1795770000123)},
    {"2000-02-29T12:00:00Z", INT64_C(951825600000)},
    {"2024-02-29T00:00:00Z", INT64_C(1709164800000)},
    {"1969-12-31T23:59:59.999Z", -1},
    {"1900-01-01T00:00:00Z", INT64_C(-2208988800000)},
    {"0000-01-01T00:00:00Z", INT64_C(-62167219200000)},
    {"9999-12-31T23:59:59.999Z", INT64_C(253402300799999)},
    {"2026-12-31T23:59:59+23:59", INT64_C(1798675259000)},
    {"2038-01-19T03:14:08Z", INT64_C(2147483648000)},
};

static const char *const invalid_cases[] = {
    "",
    "2026-11-27",
    "2026-11-27T09:00:00",       /* offset required */
    "2026-11-27 09:00:00Z",      /* space instead of T */
    "2026-11-27T09:00Z",         /* seconds required */
    "2026-11-27T09:00:00.Z",     /* empty fraction */
    "2026-11-27T09:00:00,5Z",    /* comma fraction */
    "2026-13-01T00:00:00Z",      /* month 13 */
    "2026-00-01T00:00:00Z",      /* month 0 */
    "2026-04-31T00:00:00Z",      /* 31st of April */
    "2026-02-29T00:00:00Z",      /* not a leap year */
    "1900-02-29T00:00:00Z",      /* century, not leap */
    "2026-01-00T00:00:00Z",      /* day 0 */
    "2026-01-32T00:00:00Z",      /* day 32 */
    "2026-11-27T24:00:00Z",      /* hour 24 */
    "2026-11-27T09:60:00Z",      /* minute 60 */
    "2016-12-31T23:59:60Z",      /* leap second: rejected */
    "2026-11-27T09:00:00+24:00", /* offset hour */
    "2026-11-27T09:00:00+01:60", /* offset minute */
    "2026-11-27T09:00:00+0100",  /* offset without colon */
    "2026-11-27T09:00:00+01",    /* short offset */
    "2026-11-27T09:00:00ZZ",     /* trailing data */
    "2026-11-27T09:00:00Z ",     /* trailing space */
    " 2026-11-27T09:00:00Z",     /* leading space */
    "26-11-27T09:00:00Z",        /* 2-digit year */
    "+2026-11-27T09:00:00Z",     /* signed year */
    "2026-1-27T09:00:00Z",       /* 1-digit month */
    "2026/11/27T09:00:00Z",      /* wrong separator */
    "2026-11-27T9:00:00Z",       /* 1-digit hour */
    "2026-11-27T09:00:00UTC",    /* zone name */
    "２026-11-27T09:00:00Z",     /* non-ASCII digit */
};

static void test_valid(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof valid_cases / sizeof valid_cases[0]; i++) {
    int64_t ms = 42;
    int rc = clock_parse_rfc3339(valid_cases[i].text, &ms);
    if (rc != SO_OK || ms != valid_cases[i].ms)
      print_error("case %zu: %s -> rc=%d ms=%lld want %lld\n", i,
                  valid_cases[i].text, rc, (long long)ms,
                  (long long)valid_cases[i].ms);
    assert_int_equal(rc, SO_OK);
    assert_int_equal(ms, valid_cases[i].ms);
  }
}

static void test_invalid(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof invalid_cases / sizeof invalid_cases[0]; i++) {
    int64_t ms = 42;
    int rc = clock_parse_rfc3339(invalid_cases[i], &ms);
    if (rc != SO_ERR_INVALID)
      print_error("case %zu: '%s' accepted as %lld\n", i, invalid_cases[i],
                  (long long)ms);
    assert_int_equal(rc, SO_ERR_INVALID);
    assert_int_equal(ms, 42); /* untouched on failure */
  }
  int64_t ms;
  assert_int_equal(clock_parse_rfc3339(NULL, &ms), SO_ERR_INVALID);
}

static void test_format(void **state)
{
  (void)state;
  char buf[CLOCK_RFC3339_LEN];
  assert_int_equal(clock_format_rfc3339(0, buf, sizeof buf), SO_OK);
  assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
  assert_int_equal(clock_format_rfc3339(-1, buf, sizeof buf), SO_OK);
  assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
  assert_int_equal(
      clock_format_rfc3339(INT64_C(1795770000250), buf, sizeof buf), SO_OK);
  assert_string_equal(buf, "2026-11-27T09:00:00.250Z");
  assert_int_equal(clock_format_rfc3339(INT64_C(951825600000), buf, sizeof buf),
                   SO_OK);
  assert_string_equal(buf, "2000-02-29T12:00:00.000Z");
  /* Buffer too short, year out of range. */
  char small[10];
  assert_int_equal(clock_format_rfc3339(0, small, sizeof small),
                   SO_ERR_TOO_LARGE);
  assert_int_equal(
      clock_format_rfc3339(INT64_C(253402300800000), buf, sizeof buf),
      SO_ERR_INVALID);
  assert_int_equal(
      clock_format_rfc3339(INT64_C(-62167219200001), buf, sizeof buf),
      SO_ERR_INVALID);
}

/* Every valid case formats and parses back to the same instant, and a
 * sweep over days (incl. leap days, pre-epoch) round-trips too. */
static void test_round_trip(void **state)
{
  (void)state;
  char buf[CLOCK_RFC3339_LEN];
  for (size_t i = 0; i < sizeof valid_cases / sizeof valid_cases[0]; i++) {
    int64_t back = 0;
    assert_int_equal(clock_format_rfc3339(valid_cases[i].ms, buf, sizeof buf),
                     SO_OK);
    assert_int_equal(clock_parse_rfc3339(buf, &back), SO_OK);
    assert_int_equal(back, valid_cases[i].ms);
  }
  /* From 1600 to 2400 in steps of 1 day + 1 h + 1 s + 7 ms. */
  const int64_t step = INT64_C(86400000) + 3600000 + 1000 + 7;
  for (int64_t ms = INT64_C(-11676096000000); ms < INT64_C(13569465600000);
       ms += step) {
    int64_t back = 0;
    assert_int_equal(clock_format_rfc3339(ms, buf, sizeof buf), SO_OK);
    assert_int_equal(clock_parse_rfc3339(buf, &back), SO_OK);
    assert_int_equal(back, ms);
  }
}

static void test_now_and_monotonic(void **state)
{
  (void)state;
  /* After 2025-01-01 and before 2100-01-01. */
  int64_t now = clock_now_ms();
  assert_true(now > INT64_C(1735689600000));
  assert_true(now < INT64_C(4102444800000));
  int64_t a = clock_monotonic_ms();
  int64_t b = clock_monotonic_ms();
  assert_true(b >= a);
}

/* clock_deadline: `ns` after a reading of the clock taken just before,
 * normalized (0 <= tv_nsec < 10^9) also when the nanoseconds carry into
 * the seconds, on the clock asked for. */
static void test_deadline(void **state)
{
  (void)state;
  const int64_t waits[] = {0, 1, 999999999, 1000000000, 1500000000};
  const clockid_t clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC};
  for (size_t c = 0; c < 2; c++) {
    for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
      struct timespec before, after;
      clock_gettime(clocks[c], &before);
      struct timespec d = clock_deadline(clocks[c], waits[i]);
      clock_gettime(clocks[c], &after);
      assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
      int64_t d_ns = (int64_t)d.tv_sec * 1000000000 + d.tv_nsec;
      int64_t lo = (int64_t)before.tv_sec * 1000000000 + before.tv_nsec;
      int64_t hi = (int64_t)after.tv_sec * 1000000000 + after.tv_nsec;
      assert_true(d_ns >= lo + waits[i]);
      assert_true(d_ns <= hi + waits[i]);
    }
  }
}

static void test_sleep(void **state)
{
  (void)state;
  int64_t t0 = clock_monotonic_ms();
  clock_sleep_ms(120, NULL);
  int64_t t1 = clock_monotonic_ms();
  assert_true(t1 - t0 >= 120);
  assert_true(t1 - t0 < 2000);

  /* A raised stop flag returns at once, even for a long sleep. */
  volatile sig_atomic_t stop = 1;
  t0 = clock_monotonic_ms();
  clock_sleep_ms(60000, &stop);
  assert_true(clock_monotonic_ms() - t0 < 100);

  /* Without the flag raised, the full time passes. */
  stop = 0;
  t0 = clock_monotonic_ms();
  clock_sleep_ms(130, &stop);
  t1 = clock_monotonic_ms();
  assert_true(t1 - t0 >= 130);

  /* Zero and negative durations return at once. */
  t0 = clock_monotonic_ms();
  clock_sleep_ms(0, NULL);
  clock_sleep_ms(-5, NULL);
  assert_true(clock_monotonic_ms() - t0 < 50);
}

static volatile sig_atomic_t alarm_stop;

static void on_alarm(int sig)
{
  (void)sig;
  alarm_stop = 1;
}

/* A signal that sets the flag ends a sleep early. */
static void test_sleep_stopped_by_signal(void **state)
{
  (void)state;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
  alarm_stop = 0;
  alarm(1);
  int64_t t0 = clock_monotonic_ms();
  clock_sleep_ms(30000, &alarm_stop);
  int64_t took = clock_monotonic_ms() - t0;
  assert_true(alarm_stop);
  assert_true(took >= 900);
  assert_true(took < 3000);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_now_and_monotonic),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_sleep),
      cmocka_unit_test(test_sleep_stopped_by_signal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
