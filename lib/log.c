/* log.c - leveled, structured logging to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* Append `s` to buf as the inside of a JSON string. Returns the new length. */
static size_t append_json_escaped(char *buf, size_t len, size_t cap,
                                  const char *s)
{
  for (; *s && len + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
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

void log_write(enum log_level level, const char *fmt, ...)
{
  char msg[2048];
  char line[4608];
  char ts[32];
  struct timespec now;
  struct tm tm;
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);

  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  size_t tslen = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + tslen, sizeof(ts) - tslen, ".%03ldZ", now.tv_nsec / 1000000L);

  size_t len;
  if (atomic_load(&current_format) == LOG_FORMAT_JSON) {
    len = (size_t)snprintf(line, sizeof(line),
                           "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                           log_level_name(level));
    len = append_json_escaped(line, len, sizeof(line) - 3, msg);
    memcpy(line + len, "\"}\n", 3);
    len += 3;
  } else {
    int n = snprintf(line, sizeof(line), "ts=%s level=%s %s\n", ts,
                     log_level_name(level), msg);
    len = n < 0 ? 0 : (size_t)n;
    if (len >= sizeof(line)) {
      len = sizeof(line) - 1;
      line[len - 1] = '\n';
    }
  }
  /* One write per line keeps lines whole across threads and processes. */
  ssize_t ignored = write(STDERR_FILENO, line, len);
  (void)ignored;
}
