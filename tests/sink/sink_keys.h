/* sink_keys.h - the sink's set of Idempotency-Keys.
 *
 * An open-addressing hash table (linear probing, grown at 70 % load) whose
 * key strings live in a bump arena, so millions of keys cost one string copy
 * each and no per-key malloc. Not thread-safe: the sink holds its state
 * mutex around every call.
 */
#ifndef SENDONCE_SINK_KEYS_H
#define SENDONCE_SINK_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* One key's history. Pointers into the table are invalidated by the next
 * sink_keys_upsert() (the table may grow): look a key up again instead. */
struct sink_key {
  uint64_t hash;     /* FNV-1a 64 of the key */
  const char *key;   /* NUL-terminated, owned by the table */
  uint32_t arrivals; /* requests that carried this key */
  uint32_t accepted; /* 2xx answers that were not replays */
  int stored_status; /* first processed answer (honour mode); 0 = none */
};

struct sink_keys;

/* sink_keys_new: an empty set; NULL when out of memory. */
struct sink_keys *sink_keys_new(void);

/* sink_keys_free: release the set and every key; NULL is a no-op. */
void sink_keys_free(struct sink_keys *set);

/* sink_keys_clear: forget every key, keep the set usable. */
void sink_keys_clear(struct sink_keys *set);

/* sink_keys_upsert: the entry of `key` (len bytes), created with zero
 * counters if new (*created = 1). NULL when out of memory. */
struct sink_key *sink_keys_upsert(struct sink_keys *set, const char *key,
                                  size_t len, int *created);

/* sink_keys_find: the entry of `key`, or NULL. */
struct sink_key *sink_keys_find(struct sink_keys *set, const char *key,
                                size_t len);

/* sink_keys_count: number of distinct keys. */
size_t sink_keys_count(const struct sink_keys *set);

/* sink_fnv1a: FNV-1a 64 of `len` bytes, continuing from `h` (start with
 * SINK_FNV_OFFSET). Used for keys and for request bodies. */
#define SINK_FNV_OFFSET 14695981039346656037ULL
uint64_t sink_fnv1a(uint64_t h, const void *data, size_t len);

#endif /* SENDONCE_SINK_KEYS_H */
