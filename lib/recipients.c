/* recipients.c - inline lists and JSON-lines streams, pulled in batches. */
#include "recipients.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "log.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_STALL_TIMEOUT_MS 60000L
#define POLL_MS 100
/* Room for one chunk from curl beside a line being assembled. */
#define CHUNK_ROOM (2 * CURL_MAX_WRITE_SIZE)

/* A set of 64-bit id hashes: open addressing, 0 marks an empty slot. */
struct idset {
  uint64_t *slots;
  size_t nslots; /* a power of two, or 0 before the first add */
  size_t count;
};

struct recipients_reader {
  struct recipients_opts opts;
  struct recipients_stats stats;
  struct idset seen;
  /* inline source */
  const struct msg_recipient *list;
  size_t list_n, list_pos;
  /* URL source: file:// is read directly, the rest through curl */
  char *url;
  char *file_path; /* decoded path of a file:// URL */
  int fd;          /* open file, or -1 */
  CURLM *multi;
  CURL *easy;
  char curl_err[CURL_ERROR_SIZE];
  char *buf;
  size_t cap, start, end; /* unread bytes are buf[start..end) */
  size_t scan;            /* buf[start..scan) holds no newline */
  bool discarding;        /* dropping the rest of an over-long line */
  bool paused;            /* the write callback paused the transfer */
  bool started, eof;      /* eof: the transfer completed */
  int failed;             /* sticky status of a failed fetch, 0 = none */
  char fail_reason[256];
  int64_t last_progress_ms;
};

static int64_t mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_err(char *err, size_t errlen, int status, const char *fmt, ...)
    SO_PRINTF(4, 5);
static int set_err(char *err, size_t errlen, int status, const char *fmt, ...)
{
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return status;
}

static uint64_t hash_id(const char *s)
{
  uint64_t h = 14695981039346656037ULL;
  for (; *s != '\0'; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  /* splitmix64 finaliser: FNV's low bits are weak as a table index. */
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
  h ^= h >> 31;
  return h != 0 ? h : 1;
}

static int idset_grow(struct idset *s)
{
  size_t nslots = s->nslots != 0 ? s->nslots * 2 : 1024;
  uint64_t *slots = calloc(nslots, sizeof(*slots));
  if (slots == NULL)
    return SO_ERR_NOMEM;
  for (size_t i = 0; i < s->nslots; i++) {
    if (s->slots[i] == 0)
      continue;
    size_t j = (size_t)s->slots[i] & (nslots - 1);
    while (slots[j] != 0)
      j = (j + 1) & (nslots - 1);
    slots[j] = s->slots[i];
  }
  free(s->slots);
  s->slots = slots;
  s->nslots = nslots;
  return SO_OK;
}

/* idset_add: 1 if `h` is new (now added), 0 if seen before, or NOMEM. */
static int idset_add(struct idset *s, uint64_t h)
{
  if ((s->count + 1) * 10 > s->nslots * 7 && idset_grow(s) != SO_OK)
    return SO_ERR_NOMEM;
  size_t i = (size_t)h & (s->nslots - 1);
  while (s->slots[i] != 0) {
    if (s->slots[i] == h)
      return 0;
    i = (i + 1) & (s->nslots - 1);
  }
  s->slots[i] = h;
  s->count++;
  return 1;
}

static void apply_defaults(struct recipients_opts *o)
{
  if (o->line_max == 0)
    o->line_max = MSG_RECIPIENT_LINE_MAX;
  if (o->connect_timeout_ms <= 0)
    o->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  if (o->stall_timeout_ms <= 0)
    o->stall_timeout_ms = DEFAULT_STALL_TIMEOUT_MS;
}

static bool scheme_allowed(const char *url)
{
  static const char *const schemes[] = {"file://", "http://", "https://"};
  for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
    if (strncasecmp(url, schemes[i], strlen(schemes[i])) == 0)
      return true;
  return false;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
  struct recipients_reader *rd = ud;
  size_t len = size * nmemb;
  if (rd->end + len > rd->cap && rd->start > 0) {
    memmove(rd->buf, rd->buf + rd->start, rd->end - rd->start);
    rd->end -= rd->start;
    rd->scan -= rd->start;
    rd->start = 0;
  }
  if (rd->end + len > rd->cap) {
    /* Back-pressure: curl keeps this chunk and offers it again once the
     * consumer has pulled the complete lines before it. */
    if (memchr(rd->buf + rd->scan, '\n', rd->end - rd->scan) != NULL) {
      rd->paused = true;
      return CURL_WRITEFUNC_PAUSE;
    }
    /* No complete line and no room: one line is over the cap. Drop what
     * we have of it; take_line reports it when its end arrives. */
    rd->discarding = true;
    rd->start = rd->scan = rd->end = 0;
    if (len > rd->cap) {
      /* Not with curl's CURL_MAX_WRITE_SIZE chunks; kept safe anyway. */
      char *grown = realloc(rd->buf, len);
      if (grown == NULL)
        return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
      rd->buf = grown;
      rd->cap = len;
    }
  }
  memcpy(rd->buf + rd->end, data, len);
  rd->end += len;
  rd->stats.bytes += len;
  return len;
}

static int open_common(const struct recipients_opts *opts,
                       struct recipients_reader **out)
{
  struct recipients_reader *rd = calloc(1, sizeof(*rd));
  if (rd == NULL)
    return SO_ERR_NOMEM;
  rd->fd = -1;
  if (opts != NULL)
    rd->opts = *opts;
  apply_defaults(&rd->opts);
  *out = rd;
  return SO_OK;
}

static int hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* The local path of a file URL (what follows "file://"): an empty host or
 * "localhost", then an absolute path, percent-decoded, up to a '?' or
 * '#'. */
static int file_url_path(const char *rest, char **out, char *err, size_t errlen)
{
  if (strncasecmp(rest, "localhost/", 10) == 0)
    rest += 9;
  if (rest[0] != '/')
    return set_err(err, errlen, SO_ERR_INVALID,
                   "recipients: a file URL must name a local absolute path");
  size_t len = strcspn(rest, "?#");
  char *path = malloc(len + 1);
  if (path == NULL)
    return set_err(err, errlen, SO_ERR_NOMEM, "recipients: out of memory");
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int hi, lo;
    if (rest[i] == '%' && i + 2 < len && (hi = hex_value(rest[i + 1])) >= 0 &&
        (lo = hex_value(rest[i + 2])) >= 0 && (hi | lo) != 0) {
      path[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else if (rest[i] == '%') {
      free(path);
      return set_err(err, errlen, SO_ERR_INVALID,
                     "recipients: bad percent-escape in a file URL");
    } else {
      path[o++] = rest[i];
    }
  }
  path[o] = '\0';
  *out = path;
  return SO_OK;
}

int recipients_open_url(const char *url, const struct recipients_opts *opts,
                        struct recipients_reader **out, char *err,
                        size_t errlen)
{
  *out = NULL;
  if (url == NULL || !scheme_allowed(url))
    return set_err(err, errlen, SO_ERR_INVALID,
                   "recipients: unsupported URL scheme (file, http, https "
                   "only)");
  struct recipients_reader *rd;
  int rc = open_common(opts, &rd);
  if (rc != SO_OK)
    return set_err(err, errlen, rc, "recipients: out of memory");
  rd->url = strdup(url);
  rd->cap = rd->opts.line_max + 1 + CHUNK_ROOM;
  rd->buf = malloc(rd->cap);
  if (rd->url == NULL || rd->buf == NULL) {
    recipients_close(rd);
    return set_err(err, errlen, SO_ERR_NOMEM, "recipients: out of memory");
  }
  if (strncasecmp(url, "file://", 7) == 0) {
    rc = file_url_path(url + 7, &rd->file_path, err, errlen);
    if (rc != SO_OK) {
      recipients_close(rd);
      return rc;
    }
    *out = rd;
    return SO_OK;
  }
  rd->multi = curl_multi_init();
  rd->easy = curl_easy_init();
  if (rd->multi == NULL || rd->easy == NULL) {
    recipients_close(rd);
    return set_err(err, errlen, SO_ERR_NOMEM, "recipients: out of memory");
  }
  CURL *e = rd->easy;
  CURLcode c = curl_easy_setopt(e, CURLOPT_URL, rd->url);
  /* Both layers refuse other schemes, redirects included (file:// never
   * reaches curl: see open_file). */
  if (c == CURLE_OK)
    c = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  if (c == CURLE_OK)
    c = curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (c != CURLE_OK) {
    recipients_close(rd);
    return set_err(err, errlen, SO_ERR_INVALID, "recipients: bad URL: %s",
                   curl_easy_strerror(c));
  }
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, rd->opts.connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, rd);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, rd->curl_err);
  *out = rd;
  return SO_OK;
}

int recipients_open(const struct msg *m, const struct recipients_opts *opts,
                    struct recipients_reader **out, char *err, size_t errlen)
{
  *out = NULL;
  if (m->recipients_url != NULL)
    return recipients_open_url(m->recipients_url, opts, out, err, errlen);
  if (m->recipients == NULL || m->n_recipients == 0)
    return set_err(err, errlen, SO_ERR_INVALID,
                   "recipients: the campaign has no recipients");
  struct recipients_reader *rd;
  int rc = open_common(opts, &rd);
  if (rc != SO_OK)
    return set_err(err, errlen, rc, "recipients: out of memory");
  rd->list = m->recipients;
  rd->list_n = m->n_recipients;
  *out = rd;
  return SO_OK;
}

void recipients_close(struct recipients_reader *rd)
{
  if (rd == NULL)
    return;
  if (rd->multi != NULL && rd->easy != NULL && rd->started)
    curl_multi_remove_handle(rd->multi, rd->easy);
  curl_easy_cleanup(rd->easy);
  curl_multi_cleanup(rd->multi);
  if (rd->fd >= 0)
    close(rd->fd);
  free(rd->file_path);
  free(rd->buf);
  free(rd->url);
  free(rd->seen.slots);
  free(rd);
}

void recipients_get_stats(const struct recipients_reader *rd,
                          struct recipients_stats *out)
{
  *out = rd->stats;
}

void recipients_items_cleanup(struct recipients_item *items, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    msg_recipient_cleanup(&items[i].r);
    free(items[i].reason);
    memset(&items[i], 0, sizeof(items[i]));
  }
}

/* A failed fetch is sticky: every later call returns the same. */
static int fail(struct recipients_reader *rd, int status, const char *fmt, ...)
    SO_PRINTF(3, 4);
static int fail(struct recipients_reader *rd, int status, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rd->fail_reason, sizeof(rd->fail_reason), fmt, ap);
  va_end(ap);
  rd->failed = status;
  return status;
}

/* The URL is never part of a reason: it may carry credentials. */
static int fail_from_curl(struct recipients_reader *rd, CURLcode res)
{
  const char *detail =
      rd->curl_err[0] != '\0' ? rd->curl_err : curl_easy_strerror(res);
  long code = 0;
  switch (res) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return fail(rd, SO_ERR_INVALID, "recipients: bad URL: %s", detail);
    case CURLE_FILE_COULDNT_READ_FILE:
      return fail(rd, SO_ERR_NOTFOUND, "recipients: cannot read file: %s",
                  detail);
    case CURLE_HTTP_RETURNED_ERROR:
      curl_easy_getinfo(rd->easy, CURLINFO_RESPONSE_CODE, &code);
      return fail(
          rd, code == 404 || code == 410 ? SO_ERR_NOTFOUND : SO_ERR_UNAVAILABLE,
          "recipients: HTTP status %ld", code);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return fail(rd, SO_ERR_UNAVAILABLE, "recipients: cannot connect: %s",
                  detail);
    case CURLE_OPERATION_TIMEDOUT:
      return fail(rd, SO_ERR_TIMEOUT, "recipients: timed out: %s", detail);
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR:
      return fail(rd, SO_ERR_NOMEM, "recipients: out of memory");
    default:
      return fail(rd, SO_ERR_IO, "recipients: transfer failed: %s", detail);
  }
}

static int check_done(struct recipients_reader *rd)
{
  CURLMsg *m;
  int queued;
  while ((m = curl_multi_info_read(rd->multi, &queued)) != NULL) {
    if (m->msg != CURLMSG_DONE)
      continue;
    if (m->data.result != CURLE_OK)
      return fail_from_curl(rd, m->data.result);
    rd->eof = true;
  }
  return SO_OK;
}

/* libcurl cannot pause a file:// transfer (it reads the whole file in
 * one go and refuses CURL_WRITEFUNC_PAUSE), which would mean buffering the
 * whole list: local files are read here, one buffer at a time. */
static int open_file(struct recipients_reader *rd)
{
  struct stat sb;
  rd->fd = open(rd->file_path, O_RDONLY | O_CLOEXEC);
  if (rd->fd < 0)
    return fail(rd, errno == ENOENT ? SO_ERR_NOTFOUND : SO_ERR_IO,
                "recipients: cannot read file: %s", strerror(errno));
  if (fstat(rd->fd, &sb) != 0 || S_ISDIR(sb.st_mode))
    return fail(rd, SO_ERR_IO, "recipients: cannot read file: %s",
                "a directory");
  return SO_OK;
}

static int drive_file(struct recipients_reader *rd)
{
  if (rd->start > 0) {
    memmove(rd->buf, rd->buf + rd->start, rd->end - rd->start);
    rd->end -= rd->start;
    rd->scan -= rd->start;
    rd->start = 0;
  }
  for (;;) {
    ssize_t got = read(rd->fd, rd->buf + rd->end, rd->cap - rd->end);
    if (got > 0) {
      rd->end += (size_t)got;
      rd->stats.bytes += (uint64_t)got;
      return SO_OK;
    }
    if (got == 0) {
      rd->eof = true;
      return SO_OK;
    }
    if (errno != EINTR)
      return fail(rd, SO_ERR_IO, "recipients: reading the file: %s",
                  strerror(errno));
  }
}

/* Move the transfer on once: deliver data or wait up to POLL_MS for it. */
static int drive(struct recipients_reader *rd)
{
  if (rd->file_path != NULL)
    return drive_file(rd);
  uint64_t before = rd->stats.bytes;
  if (rd->paused) {
    rd->paused = false;
    curl_easy_pause(rd->easy, CURLPAUSE_CONT);
  }
  int running;
  CURLMcode mc = curl_multi_perform(rd->multi, &running);
  if (mc != CURLM_OK)
    return fail(rd, SO_ERR_IO, "recipients: curl: %s", curl_multi_strerror(mc));
  int rc = check_done(rd);
  if (rc != SO_OK)
    return rc;
  int64_t now = mono_ms();
  if (rd->eof || rd->paused || rd->stats.bytes != before) {
    rd->last_progress_ms = now;
    return SO_OK;
  }
  if (now - rd->last_progress_ms > rd->opts.stall_timeout_ms)
    return fail(rd, SO_ERR_TIMEOUT,
                "recipients: no data for %ld ms: the stream stalled",
                rd->opts.stall_timeout_ms);
  mc = curl_multi_poll(rd->multi, NULL, 0, POLL_MS, NULL);
  if (mc != CURLM_OK)
    return fail(rd, SO_ERR_IO, "recipients: curl: %s", curl_multi_strerror(mc));
  return SO_OK;
}

/* The next complete line (without its '\n'), or the rest at the end of the
 * stream. *too_long: it was over the cap and is (partly) gone. */
static bool take_line(struct recipients_reader *rd, const char **line,
                      size_t *len, bool *too_long)
{
  char *nl = memchr(rd->buf + rd->scan, '\n', rd->end - rd->scan);
  if (nl != NULL) {
    size_t pos = (size_t)(nl - rd->buf);
    *line = rd->buf + rd->start;
    *len = pos - rd->start;
    *too_long = rd->discarding || *len > rd->opts.line_max;
    rd->discarding = false;
    rd->start = rd->scan = pos + 1;
    return true;
  }
  rd->scan = rd->end;
  if (rd->end - rd->start > rd->opts.line_max) {
    /* Over the cap with no end in sight: keep nothing of it. */
    rd->discarding = true;
    rd->start = rd->scan = rd->end = 0;
  }
  if (rd->eof && (rd->end > rd->start || rd->discarding)) {
    *line = rd->buf + rd->start;
    *len = rd->end - rd->start;
    *too_long = rd->discarding;
    rd->discarding = false;
    rd->start = rd->scan = rd->end;
    return true;
  }
  return false;
}

static bool is_blank(const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
      return false;
  return true;
}

/* The id of a rejected line, if it has a readable one: "id", else
 * "address", as 1..MSG_RECIPIENT_ID_MAX printable ASCII characters (the
 * id goes into the ledger and logs, so nothing doubtful is kept). */
static char *extract_id(const char *line, size_t len)
{
  if (len > MSG_RECIPIENT_LINE_MAX)
    return NULL;
  struct json_tokener *tok = json_tokener_new();
  if (tok == NULL)
    return NULL;
  struct json_object *o = json_tokener_parse_ex(tok, line, (int)len);
  json_tokener_free(tok);
  char *id = NULL;
  static const char *const names[] = {"id", "address"};
  for (size_t i = 0; o != NULL && id == NULL && i < 2; i++) {
    struct json_object *v;
    if (!json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, names[i], &v) ||
        !json_object_is_type(v, json_type_string))
      continue;
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    bool ok = n >= 1 && n <= MSG_RECIPIENT_ID_MAX;
    for (size_t k = 0; ok && k < n; k++)
      ok = s[k] >= 0x20 && s[k] < 0x7f;
    if (ok)
      id = strdup(s);
  }
  json_object_put(o);
  return id;
}

static char *synthetic_id(uint64_t line)
{
  char buf[32];
  snprintf(buf, sizeof(buf), "line:%llu", (unsigned long long)line);
  return strdup(buf);
}

/* Turn one line into *item; *keep says whether it is yielded. */
static int consume_line(struct recipients_reader *rd, const char *line,
                        size_t len, bool too_long, struct recipients_item *item,
                        bool *keep)
{
  char why[MSG_ERR_LEN];
  uint64_t no = ++rd->stats.lines;
  *keep = false;
  memset(item, 0, sizeof(*item));
  item->line = no;
  if (too_long) {
    snprintf(why, sizeof(why), "%s: line %llu is over %zu bytes",
             MSG_ERR_TOO_LARGE, (unsigned long long)no, rd->opts.line_max);
  } else if (is_blank(line, len)) {
    rd->stats.blank++;
    return SO_OK;
  } else {
    int rc = msg_parse_recipient_line(line, len, &item->r, why, sizeof(why));
    if (rc == SO_ERR_NOMEM)
      return rc;
    if (rc == SO_OK)
      goto parsed;
    item->r.id = extract_id(line, len);
  }
  item->rejected = true;
  item->reason = strdup(why);
  if (item->r.id == NULL)
    item->r.id = synthetic_id(no);
  if (item->reason == NULL || item->r.id == NULL)
    goto nomem;
parsed:
  if (!rd->opts.no_dedupe) {
    int fresh = idset_add(&rd->seen, hash_id(item->r.id));
    if (fresh < 0)
      goto nomem;
    if (fresh == 0) {
      rd->stats.duplicates++;
      log_debug("recipients: repeated id dropped line=%llu",
                (unsigned long long)no);
      recipients_items_cleanup(item, 1);
      return SO_OK;
    }
  }
  if (item->rejected)
    rd->stats.rejected++;
  else
    rd->stats.accepted++;
  *keep = true;
  return SO_OK;
nomem:
  recipients_items_cleanup(item, 1);
  return SO_ERR_NOMEM;
}

static char *dup_or_null(const char *s)
{
  return s != NULL ? strdup(s) : NULL;
}

static int next_inline(struct recipients_reader *rd,
                       struct recipients_item *out, size_t max, size_t *n)
{
  while (*n < max && rd->list_pos < rd->list_n) {
    const struct msg_recipient *src = &rd->list[rd->list_pos];
    struct recipients_item *it = &out[*n];
    memset(it, 0, sizeof(*it));
    it->line = ++rd->list_pos;
    it->r.id = dup_or_null(src->id);
    it->r.address = dup_or_null(src->address);
    it->r.vars_json = dup_or_null(src->vars_json);
    (*n)++;
    if (it->r.id == NULL || it->r.address == NULL ||
        (src->vars_json != NULL && it->r.vars_json == NULL))
      return SO_ERR_NOMEM;
    rd->stats.lines++;
    rd->stats.accepted++;
  }
  return SO_OK;
}

int recipients_next_batch(struct recipients_reader *rd,
                          struct recipients_item *out, size_t max, size_t *n,
                          char *err, size_t errlen)
{
  int rc = SO_OK;
  *n = 0;
  if (rd->list != NULL) {
    rc = next_inline(rd, out, max, n);
    goto done;
  }
  if (rd->failed != 0)
    return set_err(err, errlen, rd->failed, "%s", rd->fail_reason);
  if (!rd->started && rd->file_path != NULL) {
    rd->started = true;
    rc = open_file(rd);
    if (rc != SO_OK)
      goto done;
  } else if (!rd->started) {
    if (curl_multi_add_handle(rd->multi, rd->easy) != CURLM_OK) {
      rc = fail(rd, SO_ERR_NOMEM, "recipients: out of memory");
      goto done;
    }
    rd->started = true;
  }
  /* Only time spent waiting inside this call counts towards a stall. */
  rd->last_progress_ms = mono_ms();
  while (*n < max) {
    const char *line;
    size_t len;
    bool too_long, keep;
    if (take_line(rd, &line, &len, &too_long)) {
      rc = consume_line(rd, line, len, too_long, &out[*n], &keep);
      if (rc != SO_OK)
        goto done;
      if (keep)
        (*n)++;
      continue;
    }
    if (rd->eof)
      break;
    rc = drive(rd);
    if (rc != SO_OK)
      goto done;
  }
done:
  if (rc == SO_OK)
    return SO_OK;
  recipients_items_cleanup(out, *n);
  *n = 0;
  if (rd->failed == 0 && rc == SO_ERR_NOMEM)
    fail(rd, rc, "recipients: out of memory");
  return set_err(err, errlen, rc, "%s",
                 rd->failed != 0 ? rd->fail_reason : so_strerror(rc));
}
