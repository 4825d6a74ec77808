/* test_log.c - the logger as a reader of stderr sees it: the level filter,
 * the key=value line, the JSON line with the message's fields as members,
 * and whole lines from several threads at once. stderr is redirected to a
 * temporary file for each case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* ---- capturing stderr -------------------------------------------------- */

struct capture {
  int saved;
  int fd;
  char path[64];
};

static void capture_start(struct capture *c)
{
  snprintf(c->path, sizeof(c->path), "/tmp/test_log.XXXXXX");
  c->fd = mkstemp(c->path);
  assert_true(c->fd >= 0);
  c->saved = dup(STDERR_FILENO);
  assert_true(c->saved >= 0);
  assert_true(dup2(c->fd, STDERR_FILENO) >= 0);
}

/* capture_end: restore stderr; returns what was written (caller frees). */
static char *capture_end(struct capture *c)
{
  assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
  close(c->saved);
  off_t size = lseek(c->fd, 0, SEEK_END);
  assert_true(size >= 0);
  char *text = malloc((size_t)size + 1);
  assert_non_null(text);
  assert_int_equal(pread(c->fd, text, (size_t)size, 0), size);
  text[size] = '\0';
  close(c->fd);
  unlink(c->path);
  return text;
}

static int teardown_defaults(void **state)
{
  (void)state;
  log_set_level(LOG_LEVEL_INFO);
  log_set_format(LOG_FORMAT_KV);
  return 0;
}

/* strip_ts: the line without its leading "ts=<...> " (the time varies). */
static const char *strip_ts(const char *line)
{
  assert_memory_equal(line, "ts=", 3);
  /* ts=2026-11-28T00:50:54.123Z is 27 characters. */
  assert_int_equal(line[27], ' ');
  assert_int_equal(line[26], 'Z');
  return line + 28;
}

/* ---- levels and the key=value format ------------------------------- */

static void test_level_filter(void **state)
{
  (void)state;
  struct capture c;
  log_set_format(LOG_FORMAT_KV);
  log_set_level(LOG_LEVEL_WARN);
  capture_start(&c);
  log_debug("t: debug n=%d", 1);
  log_info("t: info n=%d", 2);
  log_warn("t: warn n=%d", 3);
  log_error("t: error n=%d", 4);
  char *out = capture_end(&c);

  char *second = strchr(out, '\n');
  assert_non_null(second);
  *second++ = '\0';
  assert_string_equal(strip_ts(out), "level=warn t: warn n=3");
  assert_string_equal(strip_ts(second), "level=error t: error n=4\n");
  free(out);

  log_set_level(LOG_LEVEL_DEBUG);
  capture_start(&c);
  log_debug("t: debug");
  out = capture_end(&c);
  assert_string_equal(strip_ts(out), "level=debug t: debug\n");
  free(out);

  enum log_level lv;
  assert_int_equal(log_level_parse("warning", &lv), SO_OK);
  assert_int_equal(lv, LOG_LEVEL_WARN);
  assert_int_equal(log_level_parse("loud", &lv), SO_ERR_INVALID);
  enum log_format fmt;
  assert_int_equal(log_format_parse("json", &fmt), SO_OK);
  assert_int_equal(fmt, LOG_FORMAT_JSON);
  assert_int_equal(log_format_parse("xml", &fmt), SO_ERR_INVALID);
}

/* ---- JSON ------------------------------------------------------------- */

static const struct json_case {
  const char *message;
  const char *msg;   /* the human part */
  const char *pairs; /* expected fields, "k=v|k=v" ("" for none) */
} json_cases[] = {
    {"consumer: claimed campaign=x fence=3", "consumer: claimed",
     "campaign=x|fence=3"},
    {"plain text, no fields", "plain text, no fields", ""},
    {"sender: rejected campaign=c reason=\"422 bad \\\"addr\\\"\\nline2\" n=1",
     "sender: rejected", "campaign=c|reason=422 bad \"addr\"\nline2|n=1"},
    {"spaces in a quoted value v=\"a b  c\"", "spaces in a quoted value",
     "v=a b  c"},
    /* a field in the middle is part of the text: only trailing ones count */
    {"a: x=1 then words y=2", "a: x=1 then words", "y=2"},
    {"only=fields here=too", "", "only=fields|here=too"},
    /* ours are renamed, control bytes escaped */
    {"m: clash msg=a level=b ts=c", "m: clash", "_msg=a|_level=b|_ts=c"},
    {"tab\there k=\"back\\\\slash\"", "tab\there", "k=back\\slash"},
    /* an unterminated quote is not a field */
    {"m: bad v=\"open", "m: bad v=\"open", ""},
    {"dotted key a.b-c=1", "dotted key", "a.b-c=1"},
    {"empty value k=", "empty value", "k="},
};

static void check_json_line(const char *line, const struct json_case *c)
{
  json_object *o = json_tokener_parse(line);
  if (!o)
    fail_msg("not JSON: %s", line);
  json_object *v = NULL;
  assert_true(json_object_object_get_ex(o, "ts", &v));
  assert_int_equal(strlen(json_object_get_string(v)), 24);
  assert_true(json_object_object_get_ex(o, "level", &v));
  assert_string_equal(json_object_get_string(v), "info");
  assert_true(json_object_object_get_ex(o, "msg", &v));
  assert_string_equal(json_object_get_string(v), c->msg);

  /* Exactly the expected fields, in order, after ts, level, msg. */
  char pairs[512];
  snprintf(pairs, sizeof(pairs), "%s", c->pairs);
  int i = 0, n_expected = 0;
  char *rest = pairs;
  json_object_object_foreach(o, key, val)
  {
    if (i++ < 3)
      continue;
    char *bar = strchr(rest, '|');
    if (bar)
      *bar = '\0';
    char *eq = strchr(rest, '=');
    assert_non_null(eq);
    *eq = '\0';
    assert_string_equal(key, rest);
    assert_true(json_object_is_type(val, json_type_string));
    assert_string_equal(json_object_get_string(val), eq + 1);
    n_expected++;
    rest = bar ? bar + 1 : rest + strlen(rest);
  }
  assert_int_equal(*rest, '\0');
  int want = c->pairs[0] ? 1 : 0;
  for (const char *p = c->pairs; *p; p++)
    want += *p == '|';
  assert_int_equal(n_expected, want);
  json_object_put(o);
}

static void test_json_fields(void **state)
{
  (void)state;
  log_set_level(LOG_LEVEL_INFO);
  log_set_format(LOG_FORMAT_JSON);
  for (size_t i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); i++) {
    struct capture c;
    capture_start(&c);
    log_info("%s", json_cases[i].message);
    char *out = capture_end(&c);
    size_t len = strlen(out);
    assert_true(len > 2);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1); /* one line */
    check_json_line(out, &json_cases[i]);
    free(out);
  }
}

static void test_json_exact_line(void **state)
{
  (void)state;
  struct capture c;
  log_set_format(LOG_FORMAT_JSON);
  capture_start(&c);
  log_warn("consumer: claimed campaign=%s fence=%d", "x", 3);
  char *out = capture_end(&c);
  /* {"ts":"2026-11-28T00:50:54.123Z" is 32 characters */
  assert_memory_equal(out, "{\"ts\":\"", 7);
  assert_string_equal(out + 32,
                      ",\"level\":\"warn\",\"msg\":\"consumer: claimed\","
                      "\"campaign\":\"x\",\"fence\":\"3\"}\n");
  free(out);
}

static void test_json_long_message(void **state)
{
  (void)state;
  static char big[3000];
  struct capture c;
  memset(big, 'a', sizeof(big) - 1);
  log_set_format(LOG_FORMAT_JSON);
  capture_start(&c);
  /* Far more than a line holds, mostly control bytes that escape 6x. */
  for (size_t i = 0; i < 700; i++)
    big[i] = '\x01';
  log_info("long %s k=v", big);
  log_info("t: many k=%s k2=%s", big + 1000, big + 1000);
  char *out = capture_end(&c);
  /* Two lines, each valid JSON. */
  char *nl = strchr(out, '\n');
  assert_non_null(nl);
  *nl = '\0';
  json_object *o = json_tokener_parse(out);
  assert_non_null(o);
  json_object_put(o);
  char *second = nl + 1;
  nl = strchr(second, '\n');
  assert_non_null(nl);
  assert_string_equal(nl, "\n");
  *nl = '\0';
  o = json_tokener_parse(second);
  assert_non_null(o);
  json_object_put(o);
  free(out);
}

/* A message longer than the logger takes is cut at 2,047 bytes, and the
 * line still ends in its newline. */
static void test_kv_long_message(void **state)
{
  (void)state;
  static char big[3000];
  struct capture c;
  memset(big, 'a', sizeof(big) - 1);
  log_set_format(LOG_FORMAT_KV);
  capture_start(&c);
  log_info("%s", big);
  log_info("t: after n=%d", 7);
  char *out = capture_end(&c);
  const char *body = strip_ts(out);
  assert_memory_equal(body, "level=info ", 11);
  body += 11;
  assert_int_equal(strspn(body, "a"), 2047);
  assert_int_equal(body[2047], '\n');
  assert_string_equal(strip_ts(body + 2048), "level=info t: after n=7\n");
  free(out);
}

/* Each line's time is the time it was written, to the millisecond,
 * across second boundaries (the calendar part is kept between lines). */
static void test_ts_is_now(void **state)
{
  (void)state;
  log_set_format(LOG_FORMAT_KV);
  int64_t start = clock_now_ms();
  int64_t seconds_seen = 0, last_sec = -1;
  for (int i = 0; clock_now_ms() - start < 1300; i++) {
    struct capture c;
    int64_t before = clock_now_ms();
    capture_start(&c);
    log_info("t: tick i=%d", i);
    char *out = capture_end(&c);
    int64_t after = clock_now_ms();
    char ts[32];
    assert_memory_equal(out, "ts=", 3);
    const char *sp = strchr(out, ' ');
    assert_non_null(sp);
    assert_int_equal(sp - out - 3, 24);
    memcpy(ts, out + 3, 24);
    ts[24] = '\0';
    int64_t ms = 0;
    assert_int_equal(clock_parse_rfc3339(ts, &ms), SO_OK);
    if (ms < before || ms > after)
      fail_msg("ts=%s is %lld, written between %lld and %lld", ts,
               (long long)ms, (long long)before, (long long)after);
    if (ms / 1000 != last_sec) {
      last_sec = ms / 1000;
      seconds_seen++;
    }
    free(out);
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 3000000};
    nanosleep(&pause, NULL);
  }
  assert_true(seconds_seen >= 2);
}

/* ---- threads ---------------------------------------------------------- */

#define N_THREADS 4

static int to_int(const char *s)
{
  char *end = NULL;
  long v = strtol(s, &end, 10);
  assert_true(end != s && *end == '\0');
  return (int)v;
}
#define N_LINES 2000

static void *log_thread(void *arg)
{
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < N_LINES; i++)
    log_info("t: line thread=%d i=%d pad=%s", id, i,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  return NULL;
}

static void test_threads_whole_lines(void **state)
{
  (void)state;
  for (int format = LOG_FORMAT_KV; format <= LOG_FORMAT_JSON; format++) {
    struct capture c;
    pthread_t t[N_THREADS];
    log_set_format((enum log_format)format);
    capture_start(&c);
    for (int i = 0; i < N_THREADS; i++)
      assert_int_equal(
          pthread_create(&t[i], NULL, log_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < N_THREADS; i++)
      assert_int_equal(pthread_join(t[i], NULL), 0);
    char *out = capture_end(&c);

    /* Every line whole, and each thread's lines all there in order. */
    int next[N_THREADS] = {0};
    int lines = 0;
    char *nl = NULL;
    for (char *line = out; *line; line = nl + 1) {
      nl = strchr(line, '\n');
      assert_non_null(nl); /* the last line ends too */
      *nl = '\0';
      int id = -1, i = -1;
      if (format == LOG_FORMAT_KV) {
        const char *p = strstr(line, "level=info t: line thread=");
        assert_non_null(p);
        assert_int_equal(
            sscanf(p, "level=info t: line thread=%d i=%d", &id, &i), 2);
        assert_non_null(strstr(line,
                               " pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
      } else {
        json_object *o = json_tokener_parse(line);
        json_object *v = NULL;
        if (!o)
          fail_msg("torn JSON line: %s", line);
        assert_true(json_object_object_get_ex(o, "thread", &v));
        id = to_int(json_object_get_string(v));
        assert_true(json_object_object_get_ex(o, "i", &v));
        i = to_int(json_object_get_string(v));
        json_object_put(o);
      }
      assert_true(id >= 0 && id < N_THREADS);
      assert_int_equal(i, next[id]);
      next[id]++;
      lines++;
    }
    assert_int_equal(lines, N_THREADS * N_LINES);
    free(out);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_level_filter, teardown_defaults),
      cmocka_unit_test_teardown(test_json_fields, teardown_defaults),
      cmocka_unit_test_teardown(test_json_exact_line, teardown_defaults),
      cmocka_unit_test_teardown(test_json_long_message, teardown_defaults),
      cmocka_unit_test_teardown(test_kv_long_message, teardown_defaults),
      cmocka_unit_test_teardown(test_ts_is_now, teardown_defaults),
      cmocka_unit_test_teardown(test_threads_whole_lines, teardown_defaults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
