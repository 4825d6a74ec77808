/* strictjson.c - a strict RFC 8259 syntax check (see strictjson.h).
 *
 * Recursive descent; the recursion is bounded by max_depth, itself capped
 * by STRICTJSON_DEPTH_LIMIT, so hostile nesting cannot exhaust the stack. */
#include "strictjson.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct scan {
  const unsigned char *start; /* first byte of the text */
  const unsigned char *p;     /* next byte to read */
  const unsigned char *end;   /* one past the last byte */
  int depth;                  /* current nesting */
  int max_depth;
  size_t n_members;
  struct strictjson_result *res;
};

size_t strictjson_utf8_valid(const char *text, size_t len)
{
  const unsigned char *s = (const unsigned char *)text;
  size_t i = 0;

  while (i < len) {
    /* Eight ASCII bytes at a time: most of the text is ASCII. */
    uint64_t word;
    while (len - i >= sizeof word) {
      memcpy(&word, s + i, sizeof word);
      if (word & UINT64_C(0x8080808080808080))
        break;
      i += sizeof word;
    }
    if (i == len)
      break;
    unsigned c = s[i];
    size_t n;
    unsigned min, cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1, min = 0x80, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2, min = 0x800, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3, min = 0x10000, cp = c & 0x07;
    } else {
      return i; /* continuation byte, 0xc0/0xc1 (overlong) or > 0xf4 */
    }
    if (len - i <= n)
      return i;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return i;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += n + 1;
  }
  return len;
}

/* Record the first error; always returns -1 so callers can `return`. */
static int fail(struct scan *s, enum strictjson_error error, const char *why)
{
  if (s->res->error == STRICTJSON_OK) {
    s->res->error = error;
    s->res->reason = why;
    s->res->offset = (size_t)(s->p - s->start);
  }
  return -1;
}

static void skip_ws(struct scan *s)
{
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static int hex4(struct scan *s, unsigned *out)
{
  unsigned v = 0;
  if (s->end - s->p < 4)
    return fail(s, STRICTJSON_BAD_JSON, "truncated \\u escape");
  for (int i = 0; i < 4; i++) {
    unsigned c = s->p[i], d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return fail(s, STRICTJSON_BAD_JSON, "bad hex digit in \\u escape");
    v = v * 16 + d;
  }
  s->p += 4;
  *out = v;
  return 0;
}

/* The bytes that end a run of plain string content: controls (refused),
 * the closing quote and the backslash of an escape. */
#define STOP4(c) [c] = 1, [c + 1] = 1, [c + 2] = 1, [c + 3] = 1
static const unsigned char string_stop[256] = {
    STOP4(0x00), STOP4(0x04), STOP4(0x08), STOP4(0x0c), STOP4(0x10),
    STOP4(0x14), STOP4(0x18), STOP4(0x1c), ['"'] = 1,   ['\\'] = 1};

/* s->p is on the opening quote. UTF-8 was validated beforehand. */
static int scan_string(struct scan *s, bool is_key)
{
  s->p++;
  for (;;) {
    /* Plain bytes first, through locals: s->p and s->end would be
     * reloaded around every byte read (a char may alias them). */
    const unsigned char *p = s->p, *end = s->end;
    while (p < end && !string_stop[*p])
      p++;
    s->p = p;
    if (s->p >= s->end)
      return fail(s, STRICTJSON_BAD_JSON, "unterminated string");
    unsigned c = *s->p;
    if (c == '"') {
      s->p++;
      return 0;
    }
    if (c < 0x20)
      return fail(s, STRICTJSON_BAD_JSON, "control character in string");
    if (c != '\\') {
      s->p++;
      continue;
    }
    s->p++;
    if (s->p >= s->end)
      return fail(s, STRICTJSON_BAD_JSON, "unterminated string");
    c = *s->p;
    if (strchr("\"\\/bfnrt", (int)c) && c != '\0') {
      s->p++;
      continue;
    }
    if (c != 'u')
      return fail(s, STRICTJSON_BAD_JSON, "bad escape in string");
    const unsigned char *esc = s->p - 1;
    unsigned cu, lo;
    s->p++;
    if (hex4(s, &cu))
      return -1;
    if (cu == 0 && is_key) {
      s->p = esc;
      return fail(s, STRICTJSON_BAD_JSON, "\\u0000 in object key");
    }
    if (cu >= 0xdc00 && cu <= 0xdfff) {
      s->p = esc;
      return fail(s, STRICTJSON_BAD_UTF8, "unpaired low surrogate escape");
    }
    if (cu >= 0xd800 && cu <= 0xdbff) {
      if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u') {
        s->p = esc;
        return fail(s, STRICTJSON_BAD_UTF8, "unpaired high surrogate escape");
      }
      s->p += 2;
      if (hex4(s, &lo))
        return -1;
      if (lo < 0xdc00 || lo > 0xdfff) {
        s->p = esc;
        return fail(s, STRICTJSON_BAD_UTF8, "unpaired high surrogate escape");
      }
    }
  }
}

static bool is_digit(const struct scan *s)
{
  return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

/* Does the digit string d[0..n) exceed the decimal number `limit`? */
static bool digits_exceed(const unsigned char *d, size_t n, const char *limit)
{
  size_t ln = strlen(limit);
  if (n != ln)
    return n > ln;
  return memcmp(d, limit, n) > 0;
}

static int scan_number(struct scan *s)
{
  const unsigned char *begin = s->p;
  bool negative = false, integer = true;
  if (*s->p == '-') {
    negative = true;
    s->p++;
  }
  const unsigned char *digits = s->p;
  if (!is_digit(s))
    return fail(s, STRICTJSON_BAD_JSON, "digit expected");
  if (*s->p == '0') {
    s->p++;
    if (is_digit(s))
      return fail(s, STRICTJSON_BAD_JSON, "leading zero in number");
  } else {
    while (is_digit(s))
      s->p++;
  }
  size_t ndigits = (size_t)(s->p - digits);
  if (s->p < s->end && *s->p == '.') {
    integer = false;
    s->p++;
    if (!is_digit(s))
      return fail(s, STRICTJSON_BAD_JSON, "digit expected after '.'");
    while (is_digit(s))
      s->p++;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    integer = false;
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
      s->p++;
    if (!is_digit(s))
      return fail(s, STRICTJSON_BAD_JSON, "digit expected in exponent");
    while (is_digit(s))
      s->p++;
  }
  /* json-c saturates integers beyond 64 bits: refuse rather than change
   * the value on the way through. */
  if (integer && digits_exceed(digits, ndigits,
                               negative ? "9223372036854775808"
                                        : "18446744073709551615")) {
    s->p = begin;
    return fail(s, STRICTJSON_BAD_JSON, "integer out of 64-bit range");
  }
  return 0;
}

static int scan_literal(struct scan *s, const char *word)
{
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
    return fail(s, STRICTJSON_BAD_JSON, "unexpected character");
  s->p += n;
  return 0;
}

static int scan_value(struct scan *s);

static int scan_container(struct scan *s, bool is_object)
{
  unsigned char close = is_object ? '}' : ']';
  if (++s->depth > s->max_depth)
    return fail(s, STRICTJSON_TOO_DEEP, "nesting too deep");
  s->p++;
  skip_ws(s);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    s->depth--;
    return 0;
  }
  for (;;) {
    if (is_object) {
      if (s->p >= s->end || *s->p != '"')
        return fail(s, STRICTJSON_BAD_JSON, "object key expected");
      if (scan_string(s, true))
        return -1;
      skip_ws(s);
      if (s->p >= s->end || *s->p != ':')
        return fail(s, STRICTJSON_BAD_JSON, "':' expected");
      s->p++;
      s->n_members++;
    }
    if (scan_value(s))
      return -1;
    skip_ws(s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      skip_ws(s);
      continue;
    }
    if (s->p < s->end && *s->p == close) {
      s->p++;
      s->depth--;
      return 0;
    }
    return fail(s, STRICTJSON_BAD_JSON,
                is_object ? "',' or '}' expected" : "',' or ']' expected");
  }
}

static int scan_value(struct scan *s)
{
  skip_ws(s);
  if (s->p >= s->end)
    return fail(s, STRICTJSON_BAD_JSON, "value expected");
  switch (*s->p) {
    case '{':
      return scan_container(s, true);
    case '[':
      return scan_container(s, false);
    case '"':
      return scan_string(s, false);
    case 't':
      return scan_literal(s, "true");
    case 'f':
      return scan_literal(s, "false");
    case 'n':
      return scan_literal(s, "null");
    default:
      if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
        return scan_number(s);
      return fail(s, STRICTJSON_BAD_JSON, "unexpected character");
  }
}

int strictjson_check(const char *text, size_t len, int max_depth,
                     struct strictjson_result *res)
{
  struct scan s = {
      .start = (const unsigned char *)text,
      .p = (const unsigned char *)text,
      .end = (const unsigned char *)text + len,
      .max_depth = max_depth > STRICTJSON_DEPTH_LIMIT ? STRICTJSON_DEPTH_LIMIT
                                                      : max_depth,
      .res = res,
  };
  memset(res, 0, sizeof *res);
  res->reason = "";

  size_t valid = strictjson_utf8_valid(text, len);
  if (valid != len) {
    s.p = s.start + valid;
    fail(&s, STRICTJSON_BAD_UTF8, "invalid UTF-8 sequence");
    return SO_ERR_INVALID;
  }
  skip_ws(&s);
  if (s.p >= s.end) {
    fail(&s, STRICTJSON_BAD_JSON, "no JSON value");
    return SO_ERR_INVALID;
  }
  char root = (char)*s.p;
  if (scan_value(&s))
    return SO_ERR_INVALID;
  skip_ws(&s);
  if (s.p != s.end) {
    fail(&s, STRICTJSON_TRAILING, "data after the JSON value");
    return SO_ERR_INVALID;
  }
  res->n_members = s.n_members;
  res->root = root;
  return SO_OK;
}
