/* sink_wait.c - a min-heap of deadlines and a timer thread. */
#include "sink_wait.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct sink_wait {
  pthread_mutex_t lock;
  pthread_cond_t cond; /* on CLOCK_MONOTONIC */
  pthread_t thread;
  struct sink_waiter **heap; /* min-heap by deadline */
  size_t n, cap;
  struct sink_waiter *hung; /* doubly linked */
  bool stopping;            /* shutdown: refuse new waiters */
  bool quit;                /* the timer thread exits */
};

static int64_t mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void heap_swap(struct sink_wait *w, size_t a, size_t b)
{
  struct sink_waiter *t = w->heap[a];
  w->heap[a] = w->heap[b];
  w->heap[b] = t;
  w->heap[a]->heap_index = a;
  w->heap[b]->heap_index = b;
}

static void heap_up(struct sink_wait *w, size_t i)
{
  while (i > 0 && w->heap[(i - 1) / 2]->deadline > w->heap[i]->deadline) {
    heap_swap(w, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void heap_down(struct sink_wait *w, size_t i)
{
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < w->n && w->heap[l]->deadline < w->heap[m]->deadline)
      m = l;
    if (r < w->n && w->heap[r]->deadline < w->heap[m]->deadline)
      m = r;
    if (m == i)
      return;
    heap_swap(w, i, m);
    i = m;
  }
}

static struct sink_waiter *heap_pop(struct sink_wait *w)
{
  struct sink_waiter *top = w->heap[0];
  w->n--;
  if (w->n > 0) {
    w->heap[0] = w->heap[w->n];
    w->heap[0]->heap_index = 0;
    heap_down(w, 0);
  }
  return top;
}

static void *timer_main(void *arg)
{
  struct sink_wait *w = arg;
  pthread_mutex_lock(&w->lock);
  while (!w->quit) {
    int64_t now = mono_ms();
    while (w->n > 0 && w->heap[0]->deadline <= now)
      MHD_resume_connection(heap_pop(w)->conn);
    if (w->n == 0) {
      pthread_cond_wait(&w->cond, &w->lock);
      continue;
    }
    int64_t at = w->heap[0]->deadline;
    struct timespec ts = {(time_t)(at / 1000), (long)(at % 1000) * 1000000L};
    pthread_cond_timedwait(&w->cond, &w->lock, &ts);
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

struct sink_wait *sink_wait_new(void)
{
  struct sink_wait *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return NULL;
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cond, &attr);
  pthread_condattr_destroy(&attr);
  pthread_mutex_init(&w->lock, NULL);
  if (pthread_create(&w->thread, NULL, timer_main, w) != 0) {
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return NULL;
  }
  return w;
}

bool sink_wait_add(struct sink_wait *w, struct sink_waiter *waiter, bool hang,
                   int64_t latency_ms)
{
  pthread_mutex_lock(&w->lock);
  if (w->stopping) {
    waiter->shutdown = true;
    pthread_mutex_unlock(&w->lock);
    return false;
  }
  if (!hang && w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 256;
    struct sink_waiter **grown = realloc(w->heap, cap * sizeof(*grown));
    if (grown == NULL) {
      pthread_mutex_unlock(&w->lock);
      return false; /* answer now rather than not at all */
    }
    w->heap = grown;
    w->cap = cap;
  }
  /* Suspend before the waiter becomes visible to the timer thread, so a
   * resume can never precede the suspend. */
  MHD_suspend_connection(waiter->conn);
  if (hang) {
    waiter->deadline = INT64_MAX;
    waiter->prev = NULL;
    waiter->next = w->hung;
    if (w->hung != NULL)
      w->hung->prev = waiter;
    w->hung = waiter;
  } else {
    waiter->deadline = mono_ms() + latency_ms;
    waiter->heap_index = w->n;
    w->heap[w->n++] = waiter;
    heap_up(w, waiter->heap_index);
    if (waiter->heap_index == 0)
      pthread_cond_signal(&w->cond);
  }
  pthread_mutex_unlock(&w->lock);
  return true;
}

static void release_hung_locked(struct sink_wait *w)
{
  struct sink_waiter *h = w->hung;
  w->hung = NULL;
  while (h != NULL) {
    struct sink_waiter *next = h->next;
    h->shutdown = w->stopping;
    MHD_resume_connection(h->conn);
    h = next;
  }
}

void sink_wait_release_hung(struct sink_wait *w)
{
  pthread_mutex_lock(&w->lock);
  release_hung_locked(w);
  pthread_mutex_unlock(&w->lock);
}

void sink_wait_shutdown(struct sink_wait *w)
{
  pthread_mutex_lock(&w->lock);
  w->stopping = true;
  release_hung_locked(w);
  while (w->n > 0) {
    struct sink_waiter *x = heap_pop(w);
    x->shutdown = true;
    MHD_resume_connection(x->conn);
  }
  pthread_mutex_unlock(&w->lock);
}

void sink_wait_free(struct sink_wait *w)
{
  if (w == NULL)
    return;
  pthread_mutex_lock(&w->lock);
  w->quit = true;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, NULL);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->lock);
  free(w->heap);
  free(w);
}
