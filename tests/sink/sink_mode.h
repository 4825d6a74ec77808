/* sink_mode.h - how the test sink answers: latency, failures, rejections.
 *
 * A mode is set by flags at start and changed at runtime by POST /mode with
 * a JSON object whose present fields replace the current ones:
 *   latency_ms (int)        wait before answering
 *   error_rate (0..1)       fraction answered 500
 *   fail_until_ms (int)     answer 500 for this many ms from now (0 = off)
 *   status_429 (0..1)       fraction answered 429 with Retry-After
 *   retry_after (int s)     the Retry-After value
 *   hang (bool)             accept and never answer until hang is turned off
 *                           or the sink shuts down
 *   honour_idempotency (bool)  replay the first processed answer of a key
 *   reject_pattern (string or null)  POSIX extended regex searched in the
 *                           recipient (so a plain word is a substring match);
 *                           a match is answered 422 with a JSON reason
 * Not thread-safe: the sink holds its state mutex around every call.
 */
#ifndef SENDONCE_SINK_MODE_H
#define SENDONCE_SINK_MODE_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

struct sink_mode {
  int64_t latency_ms;      /* wait before answering, ms */
  double error_rate;       /* fraction answered 500, 0..1 */
  int64_t fail_until_mono; /* monotonic ms until which all answer 500; 0 off */
  double rate_429;         /* fraction answered 429, 0..1 */
  int64_t retry_after_s;   /* Retry-After of a 429, seconds */
  bool hang;               /* never answer while set */
  bool honour;             /* replay the first processed answer of a key */
  char *reject_pattern;    /* owned; NULL = reject nobody */
  regex_t reject_re;       /* compiled reject_pattern */
};

/* What a request is answered, decided from the mode alone. */
struct sink_answer {
  int status;            /* HTTP status */
  int64_t retry_after_s; /* Retry-After header when > 0 */
  const char *reason;    /* static text for the JSON body */
};

/* sink_mode_init / sink_mode_cleanup: the defaults (answer 200 at once);
 * cleanup frees the pattern. */
void sink_mode_init(struct sink_mode *m);
void sink_mode_cleanup(struct sink_mode *m);

/* sink_mode_set_pattern: compile and set (or clear, with NULL) the reject
 * pattern. Returns 0, or -1 with a message in err. */
int sink_mode_set_pattern(struct sink_mode *m, const char *pattern, char *err,
                          size_t errlen);

/* sink_mode_apply_json: apply the fields present in `obj` (see above);
 * `now_mono` anchors fail_until_ms. All-or-nothing: on a bad field returns
 * -1 with a message in err and leaves the mode untouched. */
int sink_mode_apply_json(struct sink_mode *m, struct json_object *obj,
                         int64_t now_mono, char *err, size_t errlen);

/* sink_mode_to_json: the current mode as a new JSON object (caller puts). */
struct json_object *sink_mode_to_json(const struct sink_mode *m,
                                      int64_t now_mono);

/* sink_mode_decide: the answer for `recipient` now. roll_500 and roll_429
 * are uniform draws in [0,1). Order: fail-until window, reject pattern,
 * error rate, 429 rate, else 200. */
void sink_mode_decide(const struct sink_mode *m, const char *recipient,
                      int64_t now_mono, double roll_500, double roll_429,
                      struct sink_answer *out);

#endif /* SENDONCE_SINK_MODE_H */
