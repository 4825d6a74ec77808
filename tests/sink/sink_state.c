/* sink_state.c - counters, key set, request log and answer decisions. */
#include "sink_state.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "sink_keys.h"

#define KEY_LIST_CAP 1000 /* keys listed per duplicate list in /stats */
#define PATH_CAP 64       /* distinct paths counted; the rest is "(other)" */
#define LOG_BUFFER (1u << 20)

struct path_count {
  char *path;
  uint64_t count;
};

struct key_list {
  const char *keys[KEY_LIST_CAP]; /* point into the key set's arena */
  size_t n;
  bool truncated;
};

struct sink_state {
  pthread_mutex_t lock;
  struct sink_mode mode;
  struct sink_keys *keys;
  uint64_t rng; /* splitmix64 state for the failure rolls */
  uint64_t total, missing_key, raw_duplicates, honoured_duplicates;
  uint64_t accepted, accepted_duplicates, in_flight;
  uint64_t by_status[600];
  struct path_count paths[PATH_CAP + 1]; /* last slot: "(other)" */
  size_t npaths;
  struct key_list duplicated;     /* keys that arrived more than once */
  struct key_list accepted_twice; /* keys accepted more than once */
  struct sink_keys *recipients;   /* "<campaign>:<id>" of batch members */
  uint64_t recipient_accepted, recipient_accepted_duplicates;
  struct key_list recipient_twice; /* batch members accepted twice */
  FILE *log;
  char *log_buf;
};

int64_t sink_now_mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sink_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A uniform draw in [0,1) (splitmix64; quality is ample for fault rates). */
static double roll(struct sink_state *st)
{
  uint64_t z = (st->rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0;
}

struct sink_state *sink_state_new(const char *log_path, uint64_t seed,
                                  char *err, size_t errlen)
{
  struct sink_state *st = calloc(1, sizeof(*st));
  if (st == NULL)
    goto nomem;
  pthread_mutex_init(&st->lock, NULL);
  sink_mode_init(&st->mode);
  st->rng = seed;
  st->keys = sink_keys_new();
  st->recipients = sink_keys_new();
  if (st->keys == NULL || st->recipients == NULL)
    goto nomem;
  if (log_path != NULL) {
    st->log = fopen(log_path, "a");
    if (st->log == NULL) {
      snprintf(err, errlen, "cannot open log file %s", log_path);
      sink_state_free(st);
      return NULL;
    }
    st->log_buf = malloc(LOG_BUFFER);
    if (st->log_buf == NULL)
      goto nomem;
    setvbuf(st->log, st->log_buf, _IOFBF, LOG_BUFFER);
  }
  return st;
nomem:
  snprintf(err, errlen, "out of memory");
  sink_state_free(st);
  return NULL;
}

static void clear_counts(struct sink_state *st)
{
  st->total = st->missing_key = st->raw_duplicates = 0;
  st->honoured_duplicates = st->accepted = st->accepted_duplicates = 0;
  memset(st->by_status, 0, sizeof(st->by_status));
  for (size_t i = 0; i < st->npaths; i++)
    free(st->paths[i].path);
  memset(st->paths, 0, sizeof(st->paths));
  st->npaths = 0;
  memset(&st->duplicated, 0, sizeof(st->duplicated));
  memset(&st->accepted_twice, 0, sizeof(st->accepted_twice));
  st->recipient_accepted = st->recipient_accepted_duplicates = 0;
  memset(&st->recipient_twice, 0, sizeof(st->recipient_twice));
}

void sink_state_free(struct sink_state *st)
{
  if (st == NULL)
    return;
  if (st->log != NULL)
    fclose(st->log); /* flushes */
  free(st->log_buf);
  clear_counts(st);
  sink_keys_free(st->keys);
  sink_keys_free(st->recipients);
  sink_mode_cleanup(&st->mode);
  pthread_mutex_destroy(&st->lock);
  free(st);
}

struct sink_mode *sink_state_lock_mode(struct sink_state *st)
{
  pthread_mutex_lock(&st->lock);
  return &st->mode;
}

void sink_state_unlock_mode(struct sink_state *st)
{
  pthread_mutex_unlock(&st->lock);
}

static void list_add(struct key_list *list, const char *key)
{
  if (list->n < KEY_LIST_CAP)
    list->keys[list->n++] = key;
  else
    list->truncated = true;
}

static void count_path(struct sink_state *st, const char *path)
{
  for (size_t i = 0; i < st->npaths; i++) {
    if (strcmp(st->paths[i].path, path) == 0) {
      st->paths[i].count++;
      return;
    }
  }
  if (st->npaths < PATH_CAP) {
    char *copy = strdup(path);
    if (copy != NULL) {
      st->paths[st->npaths].path = copy;
      st->paths[st->npaths++].count = 1;
      return;
    }
  }
  st->paths[PATH_CAP].count++;
}

void sink_state_arrival(struct sink_state *st, const struct sink_request *req,
                        bool *hang, int64_t *latency_ms)
{
  pthread_mutex_lock(&st->lock);
  st->total++;
  st->in_flight++;
  count_path(st, req->path);
  if (req->key == NULL) {
    st->missing_key++;
  } else {
    int created;
    struct sink_key *k =
        sink_keys_upsert(st->keys, req->key, strlen(req->key), &created);
    if (k != NULL) {
      k->arrivals++;
      if (!created)
        st->raw_duplicates++;
      if (k->arrivals == 2)
        list_add(&st->duplicated, k->key);
    }
  }
  /* A request without a key is a client bug: answer it at once. */
  *hang = req->key != NULL && st->mode.hang;
  *latency_ms = req->key != NULL ? st->mode.latency_ms : 0;
  pthread_mutex_unlock(&st->lock);
}

void sink_state_completed(struct sink_state *st)
{
  pthread_mutex_lock(&st->lock);
  if (st->in_flight > 0)
    st->in_flight--;
  pthread_mutex_unlock(&st->lock);
}

/* Write `s` as a JSON string (with quotes), or null. */
static void put_json_str(FILE *f, const char *s)
{
  if (s == NULL) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static void log_line(struct sink_state *st, const struct sink_request *req,
                     int status, bool replayed)
{
  if (st->log == NULL)
    return;
  fprintf(st->log, "{\"ts_ms\":%" PRId64 ",\"path\":", sink_now_ms());
  put_json_str(st->log, req->path);
  fputs(",\"key\":", st->log);
  put_json_str(st->log, req->key);
  fputs(",\"recipient\":", st->log);
  put_json_str(st->log, req->recipient);
  fprintf(st->log,
          ",\"body_hash\":\"%016" PRIx64 "\",\"status\":%d,\"replayed\":%s}\n",
          req->body_hash, status, replayed ? "true" : "false");
}

/* Count each member of an accepted batch as "<campaign>:<id>". */
static void count_batch(struct sink_state *st, const struct sink_request *req)
{
  const char *key = req->key;
  const char *cut = NULL;
  for (const char *p = strstr(key, ":batch:"); p != NULL;
       p = strstr(p + 1, ":batch:"))
    cut = p;
  if (cut == NULL)
    cut = strrchr(key, ':');
  size_t clen = cut != NULL ? (size_t)(cut - key) : strlen(key);
  for (size_t i = 0; i < req->n_batch_ids; i++) {
    size_t ilen = strlen(req->batch_ids[i]);
    char *full = malloc(clen + ilen + 2);
    if (full == NULL)
      return;
    memcpy(full, key, clen);
    full[clen] = ':';
    memcpy(full + clen + 1, req->batch_ids[i], ilen + 1);
    int created;
    struct sink_key *k =
        sink_keys_upsert(st->recipients, full, clen + 1 + ilen, &created);
    free(full);
    if (k == NULL)
      return;
    st->recipient_accepted++;
    if (++k->accepted > 1)
      st->recipient_accepted_duplicates++;
    if (k->accepted == 2)
      list_add(&st->recipient_twice, k->key);
  }
}

/* Decide under the lock; returns the reason text for the body. */
static const char *decide(struct sink_state *st, const struct sink_request *req,
                          bool shutting_down, struct sink_reply *out)
{
  struct sink_answer ans;
  if (req->key == NULL) {
    out->status = 400;
    return "missing Idempotency-Key header";
  }
  if (shutting_down) {
    out->status = 503;
    return "sink shutting down";
  }
  int created;
  struct sink_key *k =
      sink_keys_upsert(st->keys, req->key, strlen(req->key), &created);
  if (k != NULL && st->mode.honour && k->stored_status != 0) {
    out->status = k->stored_status;
    out->replayed = true;
    st->honoured_duplicates++;
    return "idempotent replay";
  }
  double r500 = roll(st);
  double r429 = roll(st);
  sink_mode_decide(&st->mode, req->recipient, sink_now_mono_ms(), r500, r429,
                   &ans);
  out->status = ans.status;
  out->retry_after_s = ans.retry_after_s;
  if (k == NULL)
    return ans.reason;
  if (ans.status >= 200 && ans.status < 300) {
    st->accepted++;
    if (++k->accepted > 1)
      st->accepted_duplicates++;
    if (k->accepted == 2)
      list_add(&st->accepted_twice, k->key);
    count_batch(st, req);
  }
  /* A provider keeps the outcome of a request it processed (accepted or
   * rejected), not of one it failed or throttled: those may be retried. */
  if (k->stored_status == 0 && ans.status < 500 && ans.status != 429)
    k->stored_status = ans.status;
  return ans.reason;
}

void sink_state_answer(struct sink_state *st, const struct sink_request *req,
                       bool shutting_down, struct sink_reply *out)
{
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&st->lock);
  const char *reason = decide(st, req, shutting_down, out);
  if (out->status >= 100 && out->status < 600)
    st->by_status[out->status]++;
  log_line(st, req, out->status, out->replayed);
  pthread_mutex_unlock(&st->lock);

  struct json_object *o = json_object_new_object();
  if (o == NULL)
    return;
  json_object_object_add(o, out->status < 300 ? "status" : "error",
                         json_object_new_string(reason));
  json_object_object_add(
      o, "key", req->key != NULL ? json_object_new_string(req->key) : NULL);
  json_object_object_add(
      o, "recipient",
      req->recipient != NULL ? json_object_new_string(req->recipient) : NULL);
  out->body = strdup(json_object_to_json_string_ext(
      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(o);
}

static struct json_object *key_list_json(const struct key_list *list)
{
  struct json_object *a = json_object_new_array();
  for (size_t i = 0; a != NULL && i < list->n; i++)
    json_object_array_add(a, json_object_new_string(list->keys[i]));
  return a;
}

static void add_u64(struct json_object *o, const char *name, uint64_t v)
{
  json_object_object_add(o, name, json_object_new_int64((int64_t)v));
}

char *sink_state_stats_json(struct sink_state *st)
{
  struct json_object *o = json_object_new_object();
  struct json_object *by_status = json_object_new_object();
  struct json_object *by_path = json_object_new_object();
  char *text = NULL;
  if (o == NULL || by_status == NULL || by_path == NULL) {
    json_object_put(by_status);
    json_object_put(by_path);
    goto done;
  }
  pthread_mutex_lock(&st->lock);
  if (st->log != NULL)
    fflush(st->log);
  add_u64(o, "total", st->total);
  add_u64(o, "unique_keys", sink_keys_count(st->keys));
  add_u64(o, "raw_duplicates", st->raw_duplicates);
  add_u64(o, "honoured_duplicates", st->honoured_duplicates);
  add_u64(o, "accepted", st->accepted);
  add_u64(o, "accepted_duplicates", st->accepted_duplicates);
  add_u64(o, "missing_key", st->missing_key);
  add_u64(o, "in_flight", st->in_flight);
  for (int s = 100; s < 600; s++) {
    char name[8];
    if (st->by_status[s] == 0)
      continue;
    snprintf(name, sizeof(name), "%d", s);
    add_u64(by_status, name, st->by_status[s]);
  }
  for (size_t i = 0; i < st->npaths; i++)
    add_u64(by_path, st->paths[i].path, st->paths[i].count);
  if (st->paths[PATH_CAP].count > 0)
    add_u64(by_path, "(other)", st->paths[PATH_CAP].count);
  json_object_object_add(o, "by_status", by_status);
  json_object_object_add(o, "by_path", by_path);
  json_object_object_add(o, "duplicated_keys", key_list_json(&st->duplicated));
  json_object_object_add(o, "duplicated_keys_truncated",
                         json_object_new_boolean(st->duplicated.truncated));
  json_object_object_add(o, "accepted_twice_keys",
                         key_list_json(&st->accepted_twice));
  json_object_object_add(o, "accepted_twice_keys_truncated",
                         json_object_new_boolean(st->accepted_twice.truncated));
  add_u64(o, "recipient_accepted", st->recipient_accepted);
  add_u64(o, "recipient_accepted_duplicates",
          st->recipient_accepted_duplicates);
  json_object_object_add(o, "recipient_twice_keys",
                         key_list_json(&st->recipient_twice));
  json_object_object_add(o, "mode",
                         sink_mode_to_json(&st->mode, sink_now_mono_ms()));
  pthread_mutex_unlock(&st->lock);
  text = strdup(json_object_to_json_string_ext(
      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
done:
  json_object_put(o);
  return text;
}

char *sink_state_mode_json(struct sink_state *st)
{
  pthread_mutex_lock(&st->lock);
  struct json_object *o = sink_mode_to_json(&st->mode, sink_now_mono_ms());
  pthread_mutex_unlock(&st->lock);
  if (o == NULL)
    return NULL;
  char *text = strdup(json_object_to_json_string_ext(
      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(o);
  return text;
}

void sink_state_reset(struct sink_state *st)
{
  pthread_mutex_lock(&st->lock);
  clear_counts(st);
  sink_keys_clear(st->keys);
  sink_keys_clear(st->recipients);
  if (st->log != NULL) {
    fflush(st->log);
    /* The log is opened for appending, so the next line lands at 0. */
    if (ftruncate(fileno(st->log), 0) != 0)
      fputs("sink: reset: cannot truncate the log\n", stderr);
  }
  pthread_mutex_unlock(&st->lock);
}

void sink_state_flush(struct sink_state *st)
{
  pthread_mutex_lock(&st->lock);
  if (st->log != NULL)
    fflush(st->log);
  pthread_mutex_unlock(&st->lock);
}
