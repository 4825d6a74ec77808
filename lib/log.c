/* log.c - leveled, structured logging to stderr.
 *
 * The JSON format turns the message's trailing key=value fields (values
 * bare, or quoted "..." with \" \\ \n \t escapes) into JSON members
 * beside the human part: "consumer: claimed campaign=x fence=3" becomes
 * {"ts":..,"level":"info","msg":"consumer: claimed","campaign":"x",
 * "fence":"3"}. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

static _Atomic int current_level = LOG_LEVEL_INFO;
static _Atomic int current_format = LOG_FORMAT_KV;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
  atomic_store(&current_level, (int)level);
}

enum log_level log_get_level(void)
{
  return (enum log_level)atomic_load(&current_level);
}

void log_set_format(enum log_format format)
{
  atomic_store(&current_format, (int)format);
}

const char *log_level_name(enum log_level level)
{
  if ((int)level < 0 || (int)level > LOG_LEVEL_DEBUG)
    return "unknown";
  return level_names[level];
}

int log_level_parse(const char *name, enum log_level *out)
{
  for (int i = 0; i <= LOG_LEVEL_DEBUG; i++) {
    if (name && strcmp(name, level_names[i]) == 0) {
      *out = (enum log_level)i;
      return SO_OK;
    }
  }
  if (name && strcmp(name, "warning") == 0) {
    *out = LOG_LEVEL_WARN;
    return SO_OK;
  }
  return SO_ERR_INVALID;
}

int log_format_parse(const char *name, enum log_format *out)
{
  if (name && (strcmp(name, "kv") == 0 || strcmp(name, "text") == 0)) {
    *out = LOG_FORMAT_KV;
    return SO_OK;
  }
  if (name && strcmp(name, "json") == 0) {
    *out = LOG_FORMAT_JSON;
    return SO_OK;
  }
  return SO_ERR_INVALID;
}

/* Append n bytes of s to buf as the inside of a JSON string, stopping
 * short of cap - 7 (room for one escape and the closing bytes). Returns the
 * new length. */
static size_t append_json_escaped_n(char *buf, size_t len, size_t cap,
                                    const char *s, size_t n)
{
  for (size_t i = 0; i < n && s[i] && len + 7 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      buf[len++] = '\\';
      buf[len++] = (char)c;
    } else if (c < 0x20) {
      len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
    } else {
      buf[len++] = (char)c;
    }
  }
  return len;
}

static size_t append_raw(char *buf, size_t len, size_t cap, const char *s)
{
  size_t n = strlen(s);
  if (len + n + 4 > cap)
    return len;
  memcpy(buf + len, s, n);
  return len + n;
}

/* ---- trailing key=value fields, for the JSON format ------------------ */

static int is_key_start(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_key_char(char c)
{
  return is_key_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

/* One key=value field: key [k0, k1), value [v0, v1) (inside the quotes
 * when quoted). */
struct kv_span {
  const char *k0, *k1, *v0, *v1;
  int quoted;
};

/* kv_scan: parse one field at p; returns the end of the field or NULL. A
 * quoted value ends at an unescaped '"'; a bare one at a space. */
static const char *kv_scan(const char *p, struct kv_span *f)
{
  if (!is_key_start(*p))
    return NULL;
  f->k0 = p;
  while (is_key_char(*p))
    p++;
  f->k1 = p;
  if (*p != '=')
    return NULL;
  p++;
  if (*p == '"') {
    f->quoted = 1;
    f->v0 = ++p;
    while (*p && *p != '"') {
      if (*p == '\\' && p[1])
        p++;
      p++;
    }
    if (*p != '"')
      return NULL;
    f->v1 = p++;
  } else {
    f->quoted = 0;
    f->v0 = p;
    while (*p && *p != ' ')
      p++;
    f->v1 = p;
  }
  return *p == '\0' || *p == ' ' ? p : NULL;
}

/* kv_run_from: whether everything from p to the end is key=value fields
 * separated by spaces. */
static int kv_run_from(const char *p)
{
  struct kv_span f;
  while (*p) {
    if (!(p = kv_scan(p, &f)))
      return 0;
    while (*p == ' ')
      p++;
  }
  return 1;
}

/* kv_split: where the trailing fields start (the end of msg if none). The
 * human part is what comes before. */
static const char *kv_split(const char *msg)
{
  const char *p = msg;
  for (;;) {
    if (*p && *p != ' ' && (p == msg || p[-1] == ' ') && kv_run_from(p))
      return p;
    if (!*p)
      return p;
    p++;
  }
}

/* append_json_value: a field's value as a JSON string body, undoing the
 * \" \\ \n \t escapes of a quoted value. */
static size_t append_json_value(char *buf, size_t len, size_t cap,
                                const struct kv_span *f)
{
  if (!f->quoted)
    return append_json_escaped_n(buf, len, cap, f->v0, (size_t)(f->v1 - f->v0));
  for (const char *p = f->v0; p < f->v1; p++) {
    char c = *p;
    if (c == '\\' && p + 1 < f->v1) {
      c = *++p;
      if (c == 'n')
        c = '\n';
      else if (c == 't')
        c = '\t';
      else if (c == 'r')
        c = '\r';
    }
    len = append_json_escaped_n(buf, len, cap, &c, 1);
  }
  return len;
}

/* format_json: {"ts":..,"level":..,"msg":"<human part>","key":"value",..}.
 * Every value is a string: the message is text, and a reader that wants
 * numbers converts the fields it knows. A field named like one of ours
 * (ts, level, msg) is written with a leading underscore. */
static size_t format_json(char *line, size_t cap, const char *ts,
                          const char *level, const char *msg)
{
  const char *split = kv_split(msg);
  const char *human_end = split;
  while (human_end > msg && human_end[-1] == ' ')
    human_end--;

  /* Keep room for "}\n" whatever happens below. */
  size_t room = cap - 2;
  size_t len = (size_t)snprintf(line, room,
                                "{\"ts\":\"%s\",\"level\":\"%s\","
                                "\"msg\":\"",
                                ts, level);
  len = append_json_escaped_n(line, len, room, msg, (size_t)(human_end - msg));
  len = append_raw(line, len, room, "\"");

  struct kv_span f;
  const char *p = split;
  while (*p && (p = kv_scan(p, &f)) != NULL) {
    size_t klen = (size_t)(f.k1 - f.k0);
    int ours = (klen == 2 && strncmp(f.k0, "ts", 2) == 0) ||
               (klen == 5 && strncmp(f.k0, "level", 5) == 0) ||
               (klen == 3 && strncmp(f.k0, "msg", 3) == 0);
    size_t mark = len;
    len = append_raw(line, len, room, ours ? ",\"_" : ",\"");
    len = append_json_escaped_n(line, len, room, f.k0, klen);
    len = append_raw(line, len, room, "\":\"");
    len = append_json_value(line, len, room, &f);
    if (len + 8 >= room) {
      /* Out of room: drop this field whole rather than write half of it. */
      len = mark;
      break;
    }
    len = append_raw(line, len, room, "\"");
    while (*p == ' ')
      p++;
  }
  memcpy(line + len, "}\n", 2);
  return len + 2;
}

/* The longest message: longer ones are cut (the line stays whole). */
#define LOG_MSG_MAX 2048

/* format_ts: the line's time, "2026-11-28T09:53:11.123Z", into ts (at
 * least CLOCK_RFC3339_LEN bytes); returns its length. clock's formatter
 * writes its fixed-width digits directly (no gmtime_r, strftime or
 * snprintf, which every line paid before). */
static size_t format_ts(char *ts)
{
  if (clock_format_rfc3339(clock_now_ms(), ts, CLOCK_RFC3339_LEN) != SO_OK) {
    memcpy(ts, "-", 2); /* a clock past year 9999 */
    return 1;
  }
  return strlen(ts);
}

void log_write(enum log_level level, const char *fmt, ...)
{
  char line[4608];
  char ts[CLOCK_RFC3339_LEN];
  va_list ap;

  size_t tslen = format_ts(ts);
  const char *name = log_level_name(level);
  size_t len;
  if (atomic_load(&current_format) == LOG_FORMAT_JSON) {
    char msg[LOG_MSG_MAX];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    len = format_json(line, sizeof(line), ts, name, msg);
  } else {
    /* "ts=<ts> level=<name> <msg>\n", the message formatted in place
     * (no second pass over it). */
    size_t nlen = strlen(name);
    memcpy(line, "ts=", 3);
    memcpy(line + 3, ts, tslen);
    len = 3 + tslen;
    memcpy(line + len, " level=", 7);
    len += 7;
    memcpy(line + len, name, nlen);
    len += nlen;
    line[len++] = ' ';
    va_start(ap, fmt);
    int n = vsnprintf(line + len, LOG_MSG_MAX, fmt, ap);
    va_end(ap);
    if (n > 0)
      len += (size_t)n < LOG_MSG_MAX ? (size_t)n : LOG_MSG_MAX - 1;
    line[len++] = '\n';
  }
  /* One write per line keeps lines whole across threads and processes,
   * and nothing waits in a buffer for a crash to lose. */
  ssize_t ignored = write(STDERR_FILENO, line, len);
  (void)ignored;
}
