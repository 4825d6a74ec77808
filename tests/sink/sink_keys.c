/* sink_keys.c - open-addressing key set with an arena for the strings. */
#include "sink_keys.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK (1u << 20) /* 1 MiB per arena block */
#define INITIAL_SLOTS 1024u    /* a power of two */

struct arena_block {
  struct arena_block *next;
  size_t used;
  size_t size;
  char data[];
};

struct sink_keys {
  struct sink_key *slots; /* slots[i].key == NULL: empty */
  size_t nslots;          /* a power of two */
  size_t count;
  struct arena_block *arena;
};

uint64_t sink_fnv1a(uint64_t h, const void *data, size_t len)
{
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static void arena_free(struct arena_block *b)
{
  while (b != NULL) {
    struct arena_block *next = b->next;
    free(b);
    b = next;
  }
}

/* arena_dup: copy `len` bytes plus a NUL into the arena. A key longer than
 * a block gets a block of its own. */
static char *arena_dup(struct sink_keys *set, const char *s, size_t len)
{
  struct arena_block *b = set->arena;
  if (b == NULL || b->size - b->used < len + 1) {
    size_t size = len + 1 > ARENA_BLOCK ? len + 1 : ARENA_BLOCK;
    b = malloc(sizeof(*b) + size);
    if (b == NULL)
      return NULL;
    b->used = 0;
    b->size = size;
    b->next = set->arena;
    set->arena = b;
  }
  char *out = b->data + b->used;
  memcpy(out, s, len);
  out[len] = '\0';
  b->used += len + 1;
  return out;
}

struct sink_keys *sink_keys_new(void)
{
  struct sink_keys *set = calloc(1, sizeof(*set));
  if (set == NULL)
    return NULL;
  set->slots = calloc(INITIAL_SLOTS, sizeof(*set->slots));
  if (set->slots == NULL) {
    free(set);
    return NULL;
  }
  set->nslots = INITIAL_SLOTS;
  return set;
}

void sink_keys_free(struct sink_keys *set)
{
  if (set == NULL)
    return;
  arena_free(set->arena);
  free(set->slots);
  free(set);
}

void sink_keys_clear(struct sink_keys *set)
{
  arena_free(set->arena);
  set->arena = NULL;
  memset(set->slots, 0, set->nslots * sizeof(*set->slots));
  set->count = 0;
}

size_t sink_keys_count(const struct sink_keys *set)
{
  return set->count;
}

static size_t probe(const struct sink_keys *set, uint64_t hash, const char *key,
                    size_t len)
{
  size_t mask = set->nslots - 1;
  size_t i = (size_t)hash & mask;
  for (;;) {
    const struct sink_key *slot = &set->slots[i];
    if (slot->key == NULL)
      return i;
    if (slot->hash == hash && strncmp(slot->key, key, len) == 0 &&
        slot->key[len] == '\0')
      return i;
    i = (i + 1) & mask;
  }
}

static int grow(struct sink_keys *set)
{
  size_t nslots = set->nslots * 2;
  struct sink_key *slots = calloc(nslots, sizeof(*slots));
  if (slots == NULL)
    return -1;
  size_t mask = nslots - 1;
  for (size_t i = 0; i < set->nslots; i++) {
    if (set->slots[i].key == NULL)
      continue;
    size_t j = (size_t)set->slots[i].hash & mask;
    while (slots[j].key != NULL)
      j = (j + 1) & mask;
    slots[j] = set->slots[i];
  }
  free(set->slots);
  set->slots = slots;
  set->nslots = nslots;
  return 0;
}

struct sink_key *sink_keys_find(struct sink_keys *set, const char *key,
                                size_t len)
{
  uint64_t hash = sink_fnv1a(SINK_FNV_OFFSET, key, len);
  struct sink_key *slot = &set->slots[probe(set, hash, key, len)];
  return slot->key != NULL ? slot : NULL;
}

struct sink_key *sink_keys_upsert(struct sink_keys *set, const char *key,
                                  size_t len, int *created)
{
  *created = 0;
  /* Grow before inserting so probing always finds an empty slot and runs
   * stay short: load factor <= 0.7. */
  if ((set->count + 1) * 10 > set->nslots * 7 && grow(set) != 0)
    return NULL;
  uint64_t hash = sink_fnv1a(SINK_FNV_OFFSET, key, len);
  struct sink_key *slot = &set->slots[probe(set, hash, key, len)];
  if (slot->key != NULL)
    return slot;
  char *copy = arena_dup(set, key, len);
  if (copy == NULL)
    return NULL;
  memset(slot, 0, sizeof(*slot));
  slot->hash = hash;
  slot->key = copy;
  set->count++;
  *created = 1;
  return slot;
}
