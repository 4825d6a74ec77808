/* strictjson.h - a strict RFC 8259 syntax check that runs before json-c.
 *
 * json-c accepts more than JSON, even with JSON_TOKENER_STRICT: single
 * quotes, NaN and Infinity, raw control characters in strings, invalid
 * UTF-8, lone surrogate escapes (turned into U+FFFD), integers beyond 64
 * bits (saturated), and it keeps the last of repeated keys silently. Input
 * from other services must mean the same to every parser, so the campaign-
 * due codec checks the text with this first and hands json-c (or its own
 * reader, msg_scan.c) only what passes; the member count lets it spot
 * repeated keys (json-c keeps one).
 */
#ifndef SENDONCE_STRICTJSON_H
#define SENDONCE_STRICTJSON_H

#include <stddef.h>

#include "status.h"

#define STRICTJSON_DEPTH_LIMIT 64 /* max_depth is clamped to this */

enum strictjson_error {
  STRICTJSON_OK = 0,
  STRICTJSON_BAD_UTF8, /* invalid UTF-8, or an unpaired surrogate escape */
  STRICTJSON_BAD_JSON, /* a syntax error, or no value at all */
  STRICTJSON_TOO_DEEP, /* objects/arrays nested deeper than max_depth */
  STRICTJSON_TRAILING, /* something other than whitespace after the value */
};

struct strictjson_result {
  enum strictjson_error error; /* STRICTJSON_OK or what went wrong */
  size_t offset;               /* byte offset of the error in the text */
  const char *reason;          /* static description of the error, or "" */
  size_t n_members;            /* object members in the whole text (when OK) */
  char root; /* first byte of the value: '{', '[', '"', '-', digit,
                't', 'f', 'n' (when OK) */
};

/* strictjson_check: check that text[0..len) is one JSON value, nested at
 * most max_depth deep (root = 1), with optional surrounding whitespace,
 * valid UTF-8, integers within [-2^63, 2^64 - 1], and no "\u0000" escape
 * in an object key. Fills *res; returns SO_OK or SO_ERR_INVALID. */
int strictjson_check(const char *text, size_t len, int max_depth,
                     struct strictjson_result *res);

/* strictjson_utf8_valid: the length of the longest valid UTF-8 prefix of
 * text[0..len) (== len when it is all valid). Overlong forms, surrogates
 * and code points above U+10FFFF are invalid. */
size_t strictjson_utf8_valid(const char *text, size_t len);

#endif /* SENDONCE_STRICTJSON_H */
