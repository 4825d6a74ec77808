/* timing.c - see timing.h. */
#include "timing.h"

#include <stdlib.h>

struct slot {
  uint64_t key; /* 0 = empty, 1 = deleted */
  int64_t start_ms;
};

struct timing {
  struct slot *slots;
  size_t mask;
  size_t used;      /* live + deleted */
  size_t max_slots; /* the table grows up to this size, never beyond */
};

static uint64_t hash_id(const char *id)
{
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  return h < 2 ? h + 2 : h; /* 0 and 1 are markers */
}

/* The table starts this small and doubles as recipients pile up: a
 * campaign of one recipient (one timing table per campaign) then clears
 * 256 bytes instead of the 32 KiB a full-size table of a 500-recipient
 * batch costs, which was most of the consumer's calloc time. */
#define TIMING_MIN_SLOTS 16

struct timing *timing_new(size_t cap)
{
  size_t n = TIMING_MIN_SLOTS;
  while (n < cap * 2)
    n *= 2;
  struct timing *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  t->max_slots = n;
  n = TIMING_MIN_SLOTS;
  t->slots = calloc(n, sizeof(*t->slots));
  if (!t->slots) {
    free(t);
    return NULL;
  }
  t->mask = n - 1;
  return t;
}

void timing_free(struct timing *t)
{
  if (!t)
    return;
  free(t->slots);
  free(t);
}

/* rebuild: drop the tombstones once they crowd the table, and double it
 * while it is below its full size and the live entries alone fill half
 * of it (out of memory: the table stays as it is). */
static void rebuild(struct timing *t)
{
  size_t old_n = t->mask + 1;
  size_t live = 0;
  for (size_t i = 0; i < old_n; i++)
    live += t->slots[i].key >= 2;
  size_t n = old_n;
  if (n < t->max_slots && live * 2 >= n)
    n *= 2;
  struct slot *old = t->slots;
  struct slot *fresh = calloc(n, sizeof(*fresh));
  if (!fresh)
    return;
  t->slots = fresh;
  t->mask = n - 1;
  t->used = 0;
  for (size_t i = 0; i < old_n; i++) {
    if (old[i].key < 2)
      continue;
    size_t j = old[i].key & t->mask;
    while (fresh[j].key)
      j = (j + 1) & t->mask;
    fresh[j] = old[i];
    t->used++;
  }
  free(old);
}

void timing_put(struct timing *t, const char *id, int64_t now_ms)
{
  if (!t)
    return;
  if ((t->used + 1) * 4 > (t->mask + 1) * 3) {
    rebuild(t);
    if ((t->used + 1) * 4 > (t->mask + 1) * 3)
      return; /* full of live entries: not timed */
  }
  uint64_t k = hash_id(id);
  size_t i = k & t->mask;
  while (t->slots[i].key >= 2 && t->slots[i].key != k)
    i = (i + 1) & t->mask;
  if (t->slots[i].key == 0)
    t->used++;
  t->slots[i].key = k;
  t->slots[i].start_ms = now_ms;
}

bool timing_take(struct timing *t, const char *id, int64_t now_ms,
                 int64_t *elapsed_ms)
{
  if (!t)
    return false;
  uint64_t k = hash_id(id);
  size_t i = k & t->mask;
  for (size_t probes = 0; probes <= t->mask; probes++) {
    if (t->slots[i].key == 0)
      return false;
    if (t->slots[i].key == k) {
      t->slots[i].key = 1;
      *elapsed_ms = now_ms - t->slots[i].start_ms;
      return true;
    }
    i = (i + 1) & t->mask;
  }
  return false;
}
