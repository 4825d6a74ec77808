/* status.c - names for the project-wide status codes. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>

const char *so_strerror(int status)
{
  switch (status) {
    case SO_OK:
      return "ok";
    case SO_ERR_NOMEM:
      return "out of memory";
    case SO_ERR_INVALID:
      return "invalid input";
    case SO_ERR_NOTFOUND:
      return "not found";
    case SO_ERR_IO:
      return "input/output error";
    case SO_ERR_UNAVAILABLE:
      return "server unavailable";
    case SO_ERR_TIMEOUT:
      return "timed out";
    case SO_ERR_STALE_FENCE:
      return "stale fence: lease lost";
    case SO_ERR_CONFLICT:
      return "conflicting state";
    case SO_ERR_REFUSED:
      return "refused by peer";
    case SO_ERR_SCHEMA:
      return "unsupported schema version";
    case SO_ERR_PROTOCOL:
      return "protocol error";
    case SO_ERR_TOO_LARGE:
      return "too large";
    case SO_ERR_INTERNAL:
      return "internal error";
    default:
      return "unknown error";
  }
}

void so_errf(char *err, size_t errlen, const char *fmt, ...)
{
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}
