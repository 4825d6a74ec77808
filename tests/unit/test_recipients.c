/* test_recipients.c - the streaming recipients reader.
 *
 * file:// and http:// streams (http from a sendonce-sink in static-file
 * mode, started here on a free loopback port), bad and over-long lines,
 * repeated ids, fetch failures, refused schemes, and a 1,000,000-line file
 * read with bounded memory (peak RSS measured).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "msg.h"
#include "recipients.h"
#include "sink_client.h"
#include "testenv.h"

/* Under ASan, freed memory sits in a quarantine (256 MB by default) that
 * would swamp the peak-RSS measurement; keep it small. Unused otherwise. */
const char *__asan_default_options(void);
__attribute__((used)) const char *__asan_default_options(void)
{
  return "quarantine_size_mb=1";
}

static char tmpdir[256];

static char *path_in_tmp(const char *name)
{
  size_t len = strlen(tmpdir) + strlen(name) + 2;
  char *p = malloc(len);
  assert_non_null(p);
  snprintf(p, len, "%s/%s", tmpdir, name);
  return p;
}

static char *write_file(const char *name, const char *text)
{
  char *path = path_in_tmp(name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static char *file_url(const char *path)
{
  size_t len = strlen(path) + 8;
  char *u = malloc(len);
  assert_non_null(u);
  snprintf(u, len, "file://%s", path);
  return u;
}

/* Read a whole stream in batches of `batch`; returns the items (caller
 * cleans up) and their count; *status gets the last status. */
static struct recipients_item *read_all(const char *url,
                                        const struct recipients_opts *opts,
                                        size_t batch, size_t *count,
                                        int *status, char *err, size_t errlen)
{
  struct recipients_reader *rd;
  size_t cap = 64, n = 0;
  struct recipients_item *all = calloc(cap, sizeof(*all));
  assert_non_null(all);
  assert_int_equal(recipients_open_url(url, opts, &rd, err, errlen), SO_OK);
  struct recipients_item *b = calloc(batch, sizeof(*b));
  assert_non_null(b);
  for (;;) {
    size_t got;
    *status = recipients_next_batch(rd, b, batch, &got, err, errlen);
    if (*status != SO_OK || got == 0)
      break;
    assert_true(got <= batch);
    if (n + got > cap) {
      cap = (n + got) * 2;
      all = realloc(all, cap * sizeof(*all));
      assert_non_null(all);
    }
    memcpy(all + n, b, got * sizeof(*b));
    n += got;
  }
  free(b);
  recipients_close(rd);
  *count = n;
  return all;
}

static const char mixed_lines[] =
    "{\"id\":\"u-1\",\"address\":\"a@example.org\",\"vars\":{\"name\":\"A\"}}\n"
    "{\"address\":\"b@example.org\"}\r\n"
    "   \n"
    "this is not json\n"
    "{\"id\":\"u-5\",\"address\":5}\n"
    "{\"id\":\"u-1\",\"address\":\"again@example.org\"}\n"
    "{\"id\":\"u-7\",\"address\":\"g@example.org\"}";

static void check_mixed(struct recipients_item *items, size_t n)
{
  assert_int_equal(n, 5);
  assert_string_equal(items[0].r.id, "u-1");
  assert_string_equal(items[0].r.address, "a@example.org");
  assert_non_null(strstr(items[0].r.vars_json, "\"name\""));
  assert_false(items[0].rejected);
  assert_int_equal(items[0].line, 1);
  assert_string_equal(items[1].r.id, "b@example.org"); /* id = address */
  assert_null(items[1].r.vars_json);
  assert_int_equal(items[1].line, 2);
  assert_true(items[2].rejected);
  assert_string_equal(items[2].r.id, "line:4");
  assert_null(items[2].r.address);
  assert_true(strncmp(items[2].reason, "bad_json", 8) == 0);
  assert_true(items[3].rejected);
  assert_string_equal(items[3].r.id, "u-5"); /* the bad line's own id */
  assert_true(strncmp(items[3].reason, "bad_recipient", 13) == 0);
  assert_int_equal(items[3].line, 5);
  /* line 6 repeats u-1: dropped. The last line has no '\n'. */
  assert_string_equal(items[4].r.id, "u-7");
  assert_false(items[4].rejected);
  assert_int_equal(items[4].line, 7);
}

static void test_file_good_and_bad_lines(void **state)
{
  (void)state;
  char *path = write_file("mixed.jsonl", mixed_lines);
  char *url = file_url(path);
  char err[256];
  struct recipients_reader *rd;
  struct recipients_item b[2];
  size_t n, sizes[8], calls = 0;
  assert_int_equal(recipients_open_url(url, NULL, &rd, err, sizeof(err)),
                   SO_OK);
  struct recipients_item all[8];
  size_t total = 0;
  do {
    assert_int_equal(recipients_next_batch(rd, b, 2, &n, err, sizeof(err)),
                     SO_OK);
    assert_true(calls < 8 && total + n <= 8);
    sizes[calls++] = n;
    memcpy(all + total, b, n * sizeof(b[0]));
    total += n;
  } while (n > 0);
  assert_int_equal(calls, 4); /* 2, 2, 1, then the end */
  assert_int_equal(sizes[0], 2);
  assert_int_equal(sizes[2], 1);
  check_mixed(all, total);
  /* The end is the end, again and again. */
  assert_int_equal(recipients_next_batch(rd, b, 2, &n, err, sizeof(err)),
                   SO_OK);
  assert_int_equal(n, 0);
  struct recipients_stats st;
  recipients_get_stats(rd, &st);
  assert_int_equal(st.lines, 7);
  assert_int_equal(st.accepted, 3);
  assert_int_equal(st.rejected, 2);
  assert_int_equal(st.duplicates, 1);
  assert_int_equal(st.blank, 1);
  assert_int_equal(st.bytes, strlen(mixed_lines));
  recipients_close(rd);
  recipients_items_cleanup(all, total);

  /* Without dedupe the repeated id comes out too. */
  struct recipients_opts opts = {.no_dedupe = true};
  int status;
  struct recipients_item *items =
      read_all(url, &opts, 100, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_OK);
  assert_int_equal(n, 6);
  assert_string_equal(items[4].r.id, "u-1");
  recipients_items_cleanup(items, n);
  free(items);
  unlink(path);
  free(path);
  free(url);
}

static void test_huge_line_rejected_stream_goes_on(void **state)
{
  (void)state;
  char *path = path_in_tmp("huge.jsonl");
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"id\":\"u-1\",\"address\":\"a@example.org\"}\n", f);
  /* 200 KiB: three times the cap, spanning many curl chunks. */
  fputs("{\"id\":\"u-huge\",\"address\":\"h@example.org\",\"vars\":{\"x\":\"",
        f);
  for (int i = 0; i < 200 * 1024; i++)
    fputc('x', f);
  fputs("\"}}\n", f);
  fputs("{\"id\":\"u-3\",\"address\":\"c@example.org\"}\n", f);
  /* A line just under the cap is fine. */
  fputs("{\"id\":\"u-4\",\"address\":\"d@example.org\",\"vars\":{\"x\":\"", f);
  for (int i = 0; i < 60 * 1024; i++)
    fputc('y', f);
  fputs("\"}}\n", f);
  /* And an over-long last line without a newline. */
  for (int i = 0; i < 100 * 1024; i++)
    fputc('z', f);
  fclose(f);
  char *url = file_url(path);
  char err[256];
  size_t n;
  int status;
  struct recipients_item *items =
      read_all(url, NULL, 3, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_OK);
  assert_int_equal(n, 5);
  assert_string_equal(items[0].r.id, "u-1");
  assert_true(items[1].rejected);
  assert_string_equal(items[1].r.id, "line:2");
  assert_true(strncmp(items[1].reason, "too_large", 9) == 0);
  assert_string_equal(items[2].r.id, "u-3");
  assert_false(items[2].rejected);
  assert_string_equal(items[3].r.id, "u-4");
  assert_false(items[3].rejected);
  assert_true(items[4].rejected);
  assert_string_equal(items[4].r.id, "line:5");
  recipients_items_cleanup(items, n);
  free(items);

  /* A smaller cap applies too. */
  struct recipients_opts opts = {.line_max = 1024};
  items = read_all(url, &opts, 10, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_OK);
  assert_int_equal(n, 5);
  assert_true(items[3].rejected); /* u-4's 60 KiB line is over 1 KiB now */
  assert_string_equal(items[3].r.id, "line:4");
  recipients_items_cleanup(items, n);
  free(items);
  unlink(path);
  free(path);
  free(url);
}

static long peak_rss_kb(void)
{
  struct rusage ru;
  assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
  return ru.ru_maxrss;
}

/* Stream `url` until its end or `limit` items; returns the item count. */
static uint64_t stream_count(const char *url,
                             const struct recipients_opts *opts, uint64_t limit)
{
  struct recipients_reader *rd;
  struct recipients_item b[256];
  char err[256];
  size_t n;
  uint64_t total = 0;
  assert_int_equal(recipients_open_url(url, opts, &rd, err, sizeof(err)),
                   SO_OK);
  do {
    int rc = recipients_next_batch(rd, b, 256, &n, err, sizeof(err));
    if (rc != SO_OK)
      fail_msg("next_batch: %s", err);
    for (size_t i = 0; i < n; i++)
      assert_false(b[i].rejected);
    total += n;
    recipients_items_cleanup(b, n);
  } while (n > 0 && total < limit);
  recipients_close(rd); /* mid-stream when limited */
  return total;
}

static void test_million_lines_bounded_memory(void **state)
{
  (void)state;
  const long lines = 1000000;
  char *path = path_in_tmp("million.jsonl");
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (long i = 0; i < lines; i++)
    fprintf(f,
            "{\"id\":\"u-%07ld\",\"address\":\"user%07ld@example.org\","
            "\"vars\":{\"n\":%ld}}\n",
            i, i, i);
  long file_kb = ftell(f) / 1024;
  fclose(f);
  assert_true(file_kb > 64 * 1024);
  char *url = file_url(path);

  /* The stream itself: a buffer of about one line, whatever the size of
   * the file (peak RSS is the process's; it only ever grows). */
  long before = peak_rss_kb();
  struct recipients_opts plain = {.no_dedupe = true};
  assert_int_equal(stream_count(url, &plain, UINT64_MAX), (uint64_t)lines);
  long grown = peak_rss_kb() - before;
  print_message("file=%ld KiB, peak RSS growth streaming it: %ld KiB\n",
                file_kb, grown);
  assert_true(grown < 8 * 1024);

  /* Looking for repeated ids costs 8 bytes a slot at <= 70 % load: for
   * 200,000 ids 2^19 slots (4 MiB), plus the old table while growing. */
  before = peak_rss_kb();
  assert_in_range(stream_count(url, NULL, 200000), 200000, 200000 + 255);
  grown = peak_rss_kb() - before;
  print_message("peak RSS growth with 200000 ids remembered: %ld KiB\n", grown);
  assert_true(grown < 16 * 1024);
  unlink(path);
  free(path);
  free(url);
}

static struct sink_client *start_static_sink(void)
{
  const char *args[] = {"--static-dir", tmpdir, NULL};
  char err[256];
  struct sink_client *s = sink_client_start(args, err, sizeof(err));
  if (s == NULL)
    fail_msg("%s", err);
  return s;
}

static void test_http_stream(void **state)
{
  (void)state;
  char *path = write_file("http-mixed.jsonl", mixed_lines);
  char *big = path_in_tmp("http-big.jsonl");
  FILE *f = fopen(big, "w");
  assert_non_null(f);
  const long lines = 100000;
  for (long i = 0; i < lines; i++)
    fprintf(f, "{\"id\":\"h-%ld\",\"address\":\"h%ld@example.org\"}\n", i, i);
  fclose(f);
  struct sink_client *s = start_static_sink();
  char url[512], err[256];
  size_t n;
  int status;
  snprintf(url, sizeof(url), "%s/files/http-mixed.jsonl", sink_client_url(s));
  struct recipients_item *items =
      read_all(url, NULL, 4, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_OK);
  check_mixed(items, n);
  recipients_items_cleanup(items, n);
  free(items);

  /* Many chunks, small batches: the transfer pauses and resumes. */
  snprintf(url, sizeof(url), "%s/files/http-big.jsonl", sink_client_url(s));
  assert_int_equal(stream_count(url, NULL, UINT64_MAX), (uint64_t)lines);

  /* A 48 MiB line over http is dropped as it streams, never buffered. */
  char *giant = path_in_tmp("http-giant.jsonl");
  f = fopen(giant, "w");
  assert_non_null(f);
  fputs("{\"address\":\"first@example.org\"}\n{\"address\":\"", f);
  char chunk[4096];
  memset(chunk, 'g', sizeof(chunk));
  for (int i = 0; i < 48 * 256; i++)
    fwrite(chunk, 1, sizeof(chunk), f);
  fputs("\"}\n{\"address\":\"last@example.org\"}\n", f);
  fclose(f);
  snprintf(url, sizeof(url), "%s/files/http-giant.jsonl", sink_client_url(s));
  long before = peak_rss_kb();
  items = read_all(url, NULL, 4, &n, &status, err, sizeof(err));
  long grown = peak_rss_kb() - before;
  print_message("48 MiB line over http: peak RSS growth %ld KiB\n", grown);
  assert_true(grown < 16 * 1024);
  assert_int_equal(status, SO_OK);
  assert_int_equal(n, 3);
  assert_string_equal(items[0].r.id, "first@example.org");
  assert_true(items[1].rejected);
  assert_true(strncmp(items[1].reason, "too_large", 9) == 0);
  assert_string_equal(items[2].r.id, "last@example.org");
  recipients_items_cleanup(items, n);
  free(items);
  unlink(giant);
  free(giant);

  snprintf(url, sizeof(url), "%s/files/missing.jsonl", sink_client_url(s));
  items = read_all(url, NULL, 4, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_ERR_NOTFOUND);
  assert_int_equal(n, 0);
  assert_non_null(strstr(err, "404"));
  free(items);
  assert_int_equal(sink_client_stop(s), 0);
  unlink(path);
  unlink(big);
  free(path);
  free(big);
}

/* A loopback port nobody listens on. */
static int closed_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static void test_fetch_failures(void **state)
{
  (void)state;
  char url[256], err[256];
  size_t n;
  int status;
  struct recipients_item *items;

  snprintf(url, sizeof(url), "http://127.0.0.1:%d/list.jsonl", closed_port());
  items = read_all(url, NULL, 4, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_ERR_UNAVAILABLE);
  assert_int_equal(n, 0);
  assert_non_null(strstr(err, "connect"));
  free(items);

  char *missing = path_in_tmp("no-such-file.jsonl");
  char *murl = file_url(missing);
  items = read_all(murl, NULL, 4, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_ERR_NOTFOUND);
  assert_int_equal(n, 0);
  free(items);
  free(missing);
  free(murl);

  /* A server that accepts and never answers: a stall, not a hang. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(fd, 4), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow.jsonl",
           ntohs(sa.sin_port));
  struct recipients_opts opts = {.stall_timeout_ms = 300};
  items = read_all(url, &opts, 4, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_ERR_TIMEOUT);
  free(items);
  close(fd);
}

/* A one-shot HTTP server: answers one connection with a canned text and
 * closes, whatever the canned text promised. */
struct canned {
  int fd;
  const char *text;
};

static void *canned_main(void *arg)
{
  struct canned *c = arg;
  int conn = accept(c->fd, NULL, NULL);
  if (conn < 0)
    return NULL;
  char req[4096];
  ssize_t got = read(conn, req, sizeof(req)); /* the request; not checked */
  (void)got;
  size_t len = strlen(c->text);
  ssize_t put = write(conn, c->text, len);
  (void)put;
  close(conn);
  return NULL;
}

static int canned_status(const char *text, char *err, size_t errlen,
                         size_t *items)
{
  struct canned c = {socket(AF_INET, SOCK_STREAM, 0), text};
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(c.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(c.fd, 4), 0);
  assert_int_equal(getsockname(c.fd, (struct sockaddr *)&sa, &len), 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, canned_main, &c), 0);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/list.jsonl",
           ntohs(sa.sin_port));
  int status;
  struct recipients_item *all =
      read_all(url, NULL, 10, items, &status, err, errlen);
  recipients_items_cleanup(all, *items);
  free(all);
  pthread_join(t, NULL);
  close(c.fd);
  return status;
}

static void test_broken_transfers(void **state)
{
  (void)state;
  char err[256];
  size_t n;
  /* Promises 100000 bytes, sends two lines, hangs up. */
  assert_int_equal(
      canned_status("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
                    "{\"address\":\"a@example.org\"}\n"
                    "{\"address\":\"b@example.org\"}\n",
                    err, sizeof(err), &n),
      SO_ERR_IO);
  assert_int_equal(n, 0);
  assert_non_null(strstr(err, "transfer"));
  assert_int_equal(canned_status("HTTP/1.1 503 Service Unavailable\r\n"
                                 "Content-Length: 0\r\n\r\n",
                                 err, sizeof(err), &n),
                   SO_ERR_UNAVAILABLE);
  assert_non_null(strstr(err, "503"));
  assert_int_equal(canned_status("HTTP/1.1 410 Gone\r\nContent-Length: 0"
                                 "\r\n\r\n",
                                 err, sizeof(err), &n),
                   SO_ERR_NOTFOUND);
  /* A good answer from the same server, to show the harness works. */
  assert_int_equal(canned_status("HTTP/1.1 200 OK\r\nContent-Length: 28\r\n\r\n"
                                 "{\"address\":\"a@example.org\"}\n",
                                 err, sizeof(err), &n),
                   SO_OK);
  assert_int_equal(n, 1);
}

static void test_unsupported_schemes_refused(void **state)
{
  (void)state;
  static const char *const urls[] = {
      "ftp://127.0.0.1/list.jsonl",   "gopher://127.0.0.1/list",
      "dict://127.0.0.1/d:word",      "FTP://127.0.0.1/list.jsonl",
      "scp://127.0.0.1/etc/passwd",   "file:/etc/passwd",
      "/var/lib/sendonce/list.jsonl", "",
  };
  for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
    struct recipients_reader *rd = (struct recipients_reader *)1;
    char err[256] = "";
    assert_int_equal(recipients_open_url(urls[i], NULL, &rd, err, sizeof(err)),
                     SO_ERR_INVALID);
    assert_null(rd);
    assert_non_null(strstr(err, "scheme"));
  }
  /* Upper-case allowed schemes are still allowed. */
  char *path = write_file("upper.jsonl", "{\"address\":\"u@example.org\"}\n");
  char url[512], err[256];
  snprintf(url, sizeof(url), "FILE://%s", path);
  size_t n;
  int status;
  struct recipients_item *items =
      read_all(url, NULL, 4, &n, &status, err, sizeof(err));
  assert_int_equal(status, SO_OK);
  assert_int_equal(n, 1);
  recipients_items_cleanup(items, n);
  free(items);
  unlink(path);
  free(path);
}

static void test_inline_recipients(void **state)
{
  (void)state;
  static const char body[] =
      "{\"schema\":1,\"campaign_id\":\"c-1\",\"scheduled_at\":"
      "\"2026-11-27T09:00:00Z\",\"channel\":\"email\",\"content\":{},"
      "\"recipients\":[{\"id\":\"u-1\",\"address\":\"a@example.org\"},"
      "{\"address\":\"b@example.org\",\"vars\":{\"k\":1}},"
      "{\"id\":\"u-3\",\"address\":\"c@example.org\"}]}";
  struct msg *m;
  char err[256];
  assert_int_equal(msg_parse(body, strlen(body), NULL, &m, err, sizeof(err)),
                   SO_OK);
  struct recipients_reader *rd;
  assert_int_equal(recipients_open(m, NULL, &rd, err, sizeof(err)), SO_OK);
  struct recipients_item b[2];
  size_t n;
  assert_int_equal(recipients_next_batch(rd, b, 2, &n, err, sizeof(err)),
                   SO_OK);
  assert_int_equal(n, 2);
  assert_string_equal(b[0].r.id, "u-1");
  assert_string_equal(b[1].r.id, "b@example.org");
  assert_non_null(b[1].r.vars_json);
  assert_int_equal(b[1].line, 2);
  recipients_items_cleanup(b, n);
  assert_int_equal(recipients_next_batch(rd, b, 2, &n, err, sizeof(err)),
                   SO_OK);
  assert_int_equal(n, 1);
  assert_string_equal(b[0].r.address, "c@example.org");
  recipients_items_cleanup(b, n);
  assert_int_equal(recipients_next_batch(rd, b, 2, &n, err, sizeof(err)),
                   SO_OK);
  assert_int_equal(n, 0);
  recipients_close(rd);
  msg_free(m);

  /* The URL of a message is used when it has one. */
  struct msg bad = {0};
  bad.recipients_url = (char *)(uintptr_t) "gopher://x/";
  assert_int_equal(recipients_open(&bad, NULL, &rd, err, sizeof(err)),
                   SO_ERR_INVALID);
  bad.recipients_url = NULL;
  assert_int_equal(recipients_open(&bad, NULL, &rd, err, sizeof(err)),
                   SO_ERR_INVALID);
}

static int setup_dir(void **state)
{
  (void)state;
  char *base = testenv_unique("recipients");
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/%s", base);
  free(base);
  return mkdir(tmpdir, 0700);
}

static int remove_dir(void **state)
{
  (void)state;
  /* A failed test leaves its file behind: remove every one we make. */
  static const char *const names[] = {
      "million.jsonl",    "mixed.jsonl",    "huge.jsonl",       "upper.jsonl",
      "http-mixed.jsonl", "http-big.jsonl", "http-giant.jsonl",
  };
  char path[512];
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
    unlink(path);
  }
  return rmdir(tmpdir);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      /* First, while the process's peak RSS is still low. */
      cmocka_unit_test(test_million_lines_bounded_memory),
      cmocka_unit_test(test_file_good_and_bad_lines),
      cmocka_unit_test(test_huge_line_rejected_stream_goes_on),
      cmocka_unit_test(test_inline_recipients),
      cmocka_unit_test(test_unsupported_schemes_refused),
      cmocka_unit_test(test_fetch_failures),
      cmocka_unit_test(test_broken_transfers),
      cmocka_unit_test(test_http_stream),
  };
  return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
