/* test_publisher_schedule.c - the publisher's pure parts, no servers:
 * schedule_build (payloads from an operator's files, checked like a
 * consumer checks them) and the `list` table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "config.h"
#include "list.h"
#include "msg.h"
#include "schedule.h"

static char dir[256];
static struct config cfg;

static int group_setup(void **state)
{
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/sendonce-schedtest-XXXXXX");
  if (mkdtemp(dir) == NULL)
    return -1;
  memset(&cfg, 0, sizeof(cfg));
  cfg.providers[0].channel = (char *)"email";
  cfg.providers[1].channel = (char *)"sms";
  cfg.n_providers = 2;
  cfg.consumer.max_message_bytes = 2048;
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* Write `text` to a file in dir; returns its path (static, rotating). */
static const char *file(const char *name, const char *text)
{
  static char paths[4][300];
  static int which;
  char *p = paths[which++ % 4];
  snprintf(p, 300, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
  return p;
}

static struct schedule_input input(const char *recipients_text)
{
  struct schedule_input in = {
      .campaign_id = "c-1",
      .scheduled_at_ms = 1795770000000,
      .channel = "email",
      .content_path = file("content.json", " {\"subject\": \"Hi\"}\n"),
      .recipients_path =
          recipients_text ? file("recipients", recipients_text) : NULL,
  };
  return in;
}

static struct msg *build_ok(const struct schedule_input *in)
{
  struct schedule_result res;
  char err[1024] = "";
  int rc = schedule_build(in, &cfg, &res, err, sizeof(err));
  if (rc != SO_OK)
    fail_msg("schedule_build: %s: %s", so_strerror(rc), err);
  struct msg *m = NULL;
  assert_int_equal(
      msg_parse(res.payload, res.payload_len, NULL, &m, err, sizeof(err)),
      SO_OK);
  assert_int_equal(res.n_recipients, m->n_recipients);
  schedule_result_cleanup(&res);
  return m;
}

static void build_fails(const struct schedule_input *in, int want_rc,
                        const char *needle)
{
  struct schedule_result res;
  char err[1024] = "";
  int rc = schedule_build(in, &cfg, &res, err, sizeof(err));
  if (rc != want_rc || !strstr(err, needle))
    fail_msg("want %s with '%s'; got %s: %s", so_strerror(want_rc), needle,
             so_strerror(rc), err);
  assert_null(res.payload);
}

static void test_lines_and_array(void **state)
{
  (void)state;
  struct schedule_input in = input(
      "{\"id\":\"a\",\"address\":\"a@x\"}\n\n  \r\n"
      "{\"address\":\"b@x\",\"vars\":{\"n\":1}}\r\n");
  struct msg *m = build_ok(&in);
  assert_int_equal(m->n_recipients, 2);
  assert_string_equal(m->recipients[1].id, "b@x");
  assert_string_equal(m->recipients[1].vars_json, "{\"n\":1}");
  assert_string_equal(m->content_json, "{\"subject\":\"Hi\"}");
  msg_free(m);

  in =
      input("\n [ {\"address\":\"a@x\"}, {\"id\":\"2\",\"address\":\"b@x\"} ]");
  m = build_ok(&in);
  assert_int_equal(m->n_recipients, 2);
  assert_string_equal(m->recipients[0].id, "a@x");
  msg_free(m);

  in = input(NULL);
  in.recipients_url = "https://lists.example.org/l.jsonl";
  in.has_not_after = true;
  in.not_after_ms = in.scheduled_at_ms + 1000;
  m = build_ok(&in);
  assert_string_equal(m->recipients_url, "https://lists.example.org/l.jsonl");
  assert_true(m->has_not_after);
  msg_free(m);
}

static void test_refusals(void **state)
{
  (void)state;
  struct schedule_input in = input("{\"address\":\"a@x\"}\nnot json\n");
  build_fails(&in, SO_ERR_INVALID, "recipients:2: bad_json");
  in = input("[{\"address\":\"a@x\"},{\"address\":\"a@x\"}]");
  build_fails(&in, SO_ERR_INVALID, "duplicate_recipient");
  in = input("[{\"address\":\"a@x\",\"address\":\"b@x\"}]");
  build_fails(&in, SO_ERR_INVALID, "duplicate_key");
  in = input("[{\"address\":\"a@x\"},]");
  build_fails(&in, SO_ERR_INVALID, "not valid JSON");
  in = input("[]");
  build_fails(&in, SO_ERR_INVALID, "bad_recipients");
  in = input("\n\n");
  build_fails(&in, SO_ERR_INVALID, "no recipients");
  in = input("{\"address\":\"a@x\"}");
  in.channel = "fax";
  build_fails(&in, SO_ERR_INVALID, "configured: email sms");
  in = input("{\"address\":\"a@x\"}");
  in.campaign_id = "has space";
  build_fails(&in, SO_ERR_INVALID, "bad_campaign_id");
  in = input("{\"address\":\"a@x\"}");
  in.content_path = file("bad-content.json", "{\"a\":1,\"a\":2}");
  build_fails(&in, SO_ERR_INVALID, "bad_content");
  in = input("{\"address\":\"a@x\"}");
  in.recipients_url = "https://x/l";
  build_fails(&in, SO_ERR_INVALID, "exactly one");
  in = input("{\"address\":\"a@x\"}");
  in.has_not_after = true;
  in.not_after_ms = in.scheduled_at_ms;
  build_fails(&in, SO_ERR_INVALID, "not_after_order");
  in = input("{\"address\":\"a@x\"}");
  in.content_path = "/nonexistent/content.json";
  build_fails(&in, SO_ERR_NOTFOUND, "No such file");
}

static void test_too_large(void **state)
{
  (void)state;
  /* A file over max_message_bytes is refused before it is parsed... */
  char *big = calloc(1, 4096);
  assert_non_null(big);
  for (int i = 0; strlen(big) < 3000; i++) {
    size_t used = strlen(big);
    snprintf(big + used, 4096 - used, "{\"address\":\"user%d@example.org\"}\n",
             i);
  }
  struct schedule_input in = input(big);
  build_fails(&in, SO_ERR_TOO_LARGE, "--recipients-url");
  /* ...and a file that fits, but not once encoded, too. */
  big[1900] = '\0';
  char *nl = strrchr(big, '\n');
  nl[1] = '\0';
  in = input(big);
  build_fails(&in, SO_ERR_TOO_LARGE, "--recipients-url");
  free(big);
}

static void test_parse_time(void **state)
{
  (void)state;
  int64_t ms = 0, before = clock_now_ms();
  assert_int_equal(schedule_parse_time("now", &ms), SO_OK);
  assert_true(ms >= before && ms <= clock_now_ms());
  assert_int_equal(schedule_parse_time("2026-11-27T10:00:00+01:00", &ms),
                   SO_OK);
  assert_int_equal(ms, 1795770000000);
  assert_int_equal(schedule_parse_time("tomorrow", &ms), SO_ERR_INVALID);
  assert_int_equal(schedule_parse_time("2026-11-27T09:00:00", &ms),
                   SO_ERR_INVALID);
}

static void test_list_table(void **state)
{
  (void)state;
  struct registry_campaign c[2];
  memset(c, 0, sizeof(c));
  c[0].campaign_id = (char *)"spring";
  c[0].state = CAMPAIGN_PROCESSING;
  c[0].scheduled_at_ms = 1795770000000;
  c[0].channel = (char *)"email";
  c[0].owner = (char *)"host:12";
  c[0].lease_until_ms = 1795770030000;
  c[0].registry_now_ms = 1795770010000;
  c[0].total = 10;
  c[0].sent = 4;
  c[0].rejected = 1;
  c[0].paused = true;
  c[1].campaign_id = (char *)"evil";
  c[1].state = CAMPAIGN_DEAD;
  c[1].total = -1;
  c[1].last_error = (char *)"bad\x1b[31m";
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  list_print_table(c, 2, out);
  fclose(out);
  assert_non_null(strstr(text, "CAMPAIGN"));
  assert_non_null(strstr(text, "PROCESSING (paused)"));
  assert_non_null(strstr(text, "2026-11-27 09:00:00Z"));
  assert_non_null(strstr(text, "4/10 (1 rejected)"));
  assert_non_null(strstr(text, "host:12 (20s left)"));
  assert_non_null(strstr(text, "0/?"));
  assert_null(strchr(text, '\x1b')); /* no terminal escapes from data */
  assert_non_null(strstr(text, "bad?[31m"));
  free(text);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines_and_array), cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_too_large),       cmocka_unit_test(test_parse_time),
      cmocka_unit_test(test_list_table),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
