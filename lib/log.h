/* log.h - leveled, structured logging to stderr.
 *
 * Lines read `ts=... level=... component: action: cause key=value ...`
 * (or one JSON object per line with LOG_FORMAT_JSON). The macros check the
 * level before formatting, so a debug line costs nothing when debug is off.
 * Never pass a secret: nothing here can tell one from a campaign id.
 * Thread-safe: one line is written with one write(2).
 */
#ifndef SENDONCE_LOG_H
#define SENDONCE_LOG_H

#include "status.h"

enum log_level {
  LOG_LEVEL_ERROR = 0,
  LOG_LEVEL_WARN = 1,
  LOG_LEVEL_INFO = 2,
  LOG_LEVEL_DEBUG = 3,
};

enum log_format {
  LOG_FORMAT_KV = 0,   /* ts=... level=... msg="..." */
  LOG_FORMAT_JSON = 1, /* {"ts":..., "level":..., "msg":...} */
};

/* log_set_level / log_set_format: safe to call from any thread. */
void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
enum log_level log_get_level(void);

/* log_level_parse: "error", "warn", "info", "debug" -> level.
 * Returns SO_OK or SO_ERR_INVALID. */
int log_level_parse(const char *name, enum log_level *out) SO_MUST_CHECK;
const char *log_level_name(enum log_level level);

/* log_format_parse: "kv" (or "text"), "json" -> format. */
int log_format_parse(const char *name, enum log_format *out) SO_MUST_CHECK;

/* log_write: use the macros below. `fmt` produces the message; by
 * convention it ends in key=value fields, e.g.
 *   log_info("consumer: claimed campaign=%s fence=%lld", id, fence); */
void log_write(enum log_level level, const char *fmt, ...) SO_PRINTF(2, 3);

#define LOG_AT(lvl, ...)                    \
  do {                                      \
    if ((int)log_get_level() >= (int)(lvl)) \
      log_write((lvl), __VA_ARGS__);        \
  } while (0)

#define log_error(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif /* SENDONCE_LOG_H */
