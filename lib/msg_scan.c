/* msg_scan.c - read members out of JSON text that strictjson_check has
 * accepted, without building a json-c tree (see msg_internal.h).
 *
 * json-c costs ~10k instructions a line even for three short members
 * (json_tokener_parse_ex switches the locale on every call), which adds
 * up over a 200,000-line recipients list. The text has already been
 * checked byte by byte, so the walk here trusts its syntax and only has
 * to find member boundaries; what it produces must be byte for byte what
 * the json-c path gives (tests/fuzz/fuzz_msg.c compares the two). Where
 * that is not certain it answers "unsupported" and the caller uses json-c:
 *
 *  - an escaped object key (json-c unescapes keys before comparing them),
 *  - an object with more than MSG_SCAN_MAX_KEYS members (the repeated-key
 *    check here is quadratic).
 *
 * How json-c 0.16 re-serializes a value (json_object_to_json_string_ext
 * with JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), which
 * msg__scan_compact reproduces:
 *
 *  - no whitespace; members in text order; "," and ":" only,
 *  - strings unescaped (\uXXXX and surrogate pairs to UTF-8, with one
 *    json-c quirk: see unescape()) then escaped
 *    again: '"' '\\' \b \f \n \r \t as two-character escapes, any other
 *    byte below 0x20 as \u00xx (lower-case hex), everything else (DEL,
 *    '/', non-ASCII) raw,
 *  - integers printed from their int64/uint64 value: the same digits, but
 *    "-0" becomes "0",
 *  - numbers with a fraction or exponent keep their original text,
 *  - true, false, null as such.
 */
#include <stdbool.h>
#include <string.h>

#include "msg_internal.h"

#define MSG_SCAN_MAX_KEYS 32  /* members per object the fast path handles */
#define MSG_SCAN_MAX_NAMES 16 /* members msg__scan_object can look for */

struct walk {
  const char *p;   /* next byte */
  const char *end; /* one past the text */
};

static void skip_ws(struct walk *w)
{
  while (w->p < w->end &&
         (*w->p == ' ' || *w->p == '\t' || *w->p == '\n' || *w->p == '\r'))
    w->p++;
}

/* The bytes that end a run of plain string content in checked text. */
static const unsigned char string_stop[256] = {['"'] = 1, ['\\'] = 1};

/* w->p is on the opening quote; leaves it after the closing one. Sets
 * *escaped when the string has a backslash. */
static void skip_string(struct walk *w, bool *escaped)
{
  /* Locals: w->p and w->end would be reloaded around every byte read. */
  const char *p = w->p + 1, *end = w->end;
  for (;;) {
    while (p < end && !string_stop[(unsigned char)*p])
      p++;
    if (p >= end || *p == '"')
      break;
    *escaped = true;
    p += 2; /* the backslash and the byte it escapes */
  }
  w->p = p + 1;
}

static void skip_scalar(struct walk *w)
{
  while (w->p < w->end && *w->p != ',' && *w->p != '}' && *w->p != ']' &&
         *w->p != ' ' && *w->p != '\t' && *w->p != '\n' && *w->p != '\r')
    w->p++;
}

/* The members msg__scan_object looks for at the top level. */
struct wanted {
  const char *const *names;
  size_t lens[MSG_SCAN_MAX_NAMES];
  size_t n;
  struct msg__value *out;
};

static bool skip_value(struct walk *w, const struct wanted *top);

/* w->p is on '{' or '['. At the top level (top != NULL) the values of
 * the members it names are recorded in top->out[]. */
static bool skip_container(struct walk *w, const struct wanted *top)
{
  struct {
    const char *s;
    size_t n;
  } keys[MSG_SCAN_MAX_KEYS];
  size_t n_keys = 0;
  bool is_object = *w->p == '{';
  char close = is_object ? '}' : ']';

  w->p++;
  skip_ws(w);
  if (w->p < w->end && *w->p == close) {
    w->p++;
    return true;
  }
  while (w->p < w->end) {
    const char *key = NULL;
    size_t key_len = 0;
    if (is_object) {
      bool escaped = false;
      key = w->p + 1;
      skip_string(w, &escaped);
      key_len = (size_t)(w->p - 1 - key);
      if (escaped || n_keys == MSG_SCAN_MAX_KEYS)
        return false;
      for (size_t i = 0; i < n_keys; i++)
        if (keys[i].n == key_len && memcmp(keys[i].s, key, key_len) == 0)
          return false; /* the json-c path reports it */
      keys[n_keys].s = key;
      keys[n_keys].n = key_len;
      n_keys++;
      skip_ws(w);
      w->p++; /* ':' */
      skip_ws(w);
    }
    const char *start = w->p;
    if (!skip_value(w, NULL))
      return false;
    for (size_t i = 0; top && key && i < top->n; i++) {
      if (top->lens[i] == key_len && memcmp(top->names[i], key, key_len) == 0) {
        top->out[i].p = start;
        top->out[i].len = (size_t)(w->p - start);
      }
    }
    skip_ws(w);
    if (w->p < w->end && *w->p == ',') {
      w->p++;
      skip_ws(w);
      continue;
    }
    w->p++; /* the closing bracket */
    return true;
  }
  return false;
}

static bool skip_value(struct walk *w, const struct wanted *top)
{
  bool escaped = false;
  if (w->p >= w->end)
    return false;
  switch (*w->p) {
    case '{':
    case '[':
      return skip_container(w, top);
    case '"':
      skip_string(w, &escaped);
      return true;
    default:
      skip_scalar(w);
      return true;
  }
}

bool msg__scan_object(const char *text, size_t len, const char *const *names,
                      size_t n_names, struct msg__value *out)
{
  struct walk w = {text, text + len};
  struct wanted top = {.names = names, .n = n_names, .out = out};
  if (n_names > MSG_SCAN_MAX_NAMES)
    return false;
  for (size_t i = 0; i < n_names; i++) {
    top.lens[i] = strlen(names[i]);
    out[i] = (struct msg__value){NULL, 0};
  }
  skip_ws(&w);
  if (w.p >= w.end || *w.p != '{')
    return false;
  return skip_container(&w, &top);
}

void msg__scan_iter(const struct msg__value *array, struct msg__iter *it)
{
  it->p = array->p + 1;
  it->end = array->p + array->len;
}

bool msg__scan_next(struct msg__iter *it, struct msg__value *elem)
{
  struct walk w = {it->p, it->end};
  skip_ws(&w);
  if (w.p >= w.end || *w.p == ']')
    return false;
  const char *start = w.p;
  if (!skip_value(&w, NULL))
    return false;
  elem->p = start;
  elem->len = (size_t)(w.p - start);
  skip_ws(&w);
  if (w.p < w.end && *w.p == ',')
    w.p++;
  it->p = w.p;
  return true;
}

static unsigned hex_digit(char c)
{
  if (c >= '0' && c <= '9')
    return (unsigned)(c - '0');
  if (c >= 'a' && c <= 'f')
    return (unsigned)(c - 'a' + 10);
  return (unsigned)(c - 'A' + 10);
}

static unsigned hex4(const char *p)
{
  return hex_digit(p[0]) << 12 | hex_digit(p[1]) << 8 | hex_digit(p[2]) << 4 |
         hex_digit(p[3]);
}

/* Decode one escape at p (on the backslash) into dst; returns the bytes
 * written and advances *pp past the escape. Surrogates come in pairs:
 * strictjson_check refused lone ones. */
static size_t unescape(const char **pp, char *dst)
{
  const char *p = *pp;
  unsigned cp;
  switch (p[1]) {
    case 'b':
      *pp = p + 2, dst[0] = '\b';
      return 1;
    case 'f':
      *pp = p + 2, dst[0] = '\f';
      return 1;
    case 'n':
      *pp = p + 2, dst[0] = '\n';
      return 1;
    case 'r':
      *pp = p + 2, dst[0] = '\r';
      return 1;
    case 't':
      *pp = p + 2, dst[0] = '\t';
      return 1;
    case 'u':
      break;
    default: /* '"', '\\', '/' */
      *pp = p + 2, dst[0] = p[1];
      return 1;
  }
  cp = hex4(p + 2);
  *pp = p + 6;
  if (cp >= 0xd800 && cp <= 0xdbff) {
    cp = 0x10000 + ((cp - 0xd800) << 10) + (hex4(p + 8) - 0xdc00);
    *pp = p + 12;
    /* json-c 0.16 tests the combined code point with its surrogate
     * macros, which look at the low 16 bits only: a pair decoding to
     * U+xD800..U+xDFFF of any plane (e.g. U+2D800, CJK Ext. F) becomes
     * U+FFFD. Do the same, so both paths give the same bytes. */
    if ((cp & 0xf800) == 0xd800)
      cp = 0xfffd;
  }
  if (cp < 0x80) {
    dst[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    dst[0] = (char)(0xc0 | cp >> 6);
    dst[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    dst[0] = (char)(0xe0 | cp >> 12);
    dst[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    dst[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  dst[0] = (char)(0xf0 | cp >> 18);
  dst[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  dst[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  dst[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

size_t msg__scan_string(const struct msg__value *v, char *dst)
{
  const char *p = v->p + 1, *end = v->p + v->len - 1;
  size_t n = 0;
  while (p < end) {
    const char *run = p;
    while (p < end && *p != '\\')
      p++;
    memcpy(dst + n, run, (size_t)(p - run));
    n += (size_t)(p - run);
    if (p < end)
      n += unescape(&p, dst + n);
  }
  return n;
}

/* Append the string value at w->p as json-c writes it. */
static void compact_string(struct walk *w, char *dst, size_t *n)
{
  static const char hex[] = "0123456789abcdef";
  const char *p = w->p + 1;
  dst[(*n)++] = '"';
  for (;;) {
    const char *run = p;
    while (*p != '"' && *p != '\\')
      p++;
    memcpy(dst + *n, run, (size_t)(p - run));
    *n += (size_t)(p - run);
    if (*p == '"')
      break;
    char u[4];
    size_t k = unescape(&p, u);
    for (size_t i = 0; i < k; i++) {
      unsigned char c = (unsigned char)u[i];
      const char *two = c == '"'    ? "\\\""
                        : c == '\\' ? "\\\\"
                        : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f"
                        : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t"
                                    : NULL;
      if (two) {
        memcpy(dst + *n, two, 2);
        *n += 2;
      } else if (c < 0x20) {
        memcpy(dst + *n, "\\u00", 4);
        dst[*n + 4] = hex[c >> 4];
        dst[*n + 5] = hex[c & 0xf];
        *n += 6;
      } else {
        dst[(*n)++] = (char)c;
      }
    }
  }
  dst[(*n)++] = '"';
  w->p = p + 1;
}

static void compact_value(struct walk *w, char *dst, size_t *n)
{
  skip_ws(w);
  char c = *w->p;
  if (c == '"') {
    compact_string(w, dst, n);
  } else if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    dst[(*n)++] = c;
    w->p++;
    skip_ws(w);
    if (*w->p == close) {
      w->p++;
      dst[(*n)++] = close;
      return;
    }
    for (;;) {
      if (c == '{') {
        skip_ws(w);
        compact_string(w, dst, n); /* the key */
        skip_ws(w);
        w->p++;
        dst[(*n)++] = ':';
      }
      compact_value(w, dst, n);
      skip_ws(w);
      dst[(*n)++] = *w->p;
      if (*w->p++ == close)
        return;
    }
  } else {
    const char *start = w->p;
    skip_scalar(w);
    size_t k = (size_t)(w->p - start);
    /* json-c keeps the text of a double but prints an integer from its
     * value: only "-0" reads back differently. */
    if (k == 2 && start[0] == '-' && start[1] == '0')
      start++, k--;
    memcpy(dst + *n, start, k);
    *n += k;
  }
}

size_t msg__scan_compact(const struct msg__value *v, char *dst)
{
  struct walk w = {v->p, v->p + v->len};
  size_t n = 0;
  compact_value(&w, dst, &n);
  return n;
}
