// span_cache.cpp — the per-thread stash of freed arena spans (see span_cache.h).
#include "span_cache.h"

#include <stdint.h>

#include "hakmem_build_flags.h"
#include "page_arena.h"

namespace hak {
namespace {

// Entries 0..n-1, oldest first. Zero-initialised TLS: an untouched thread has an empty stash.
struct SpanStash {
  void* start[kSpanCacheEntries];
  size_t bytes[kSpanCacheEntries];
  int n;
  size_t total;
  bool exited;
};
HAK_TLS SpanStash t_stash;

// Removes entries i .. i+k-1, keeping the others in order.
void remove_range(SpanStash& st, int i, int k) {
  for (int j = i; j < i + k; ++j) st.total -= st.bytes[j];
  for (int j = i + k; j < st.n; ++j) {
    st.start[j - k] = st.start[j];
    st.bytes[j - k] = st.bytes[j];
  }
  st.n -= k;
}

// Takes the k oldest entries out of the stash into starts/bytes, for the arena afterwards
// (span_cache_put says why they leave first).
void detach_front(SpanStash& st, int k, void** starts, size_t* bytes) {
  for (int i = 0; i < k; ++i) {
    starts[i] = st.start[i];
    bytes[i] = st.bytes[i];
  }
  remove_range(st, 0, k);
}

void append(SpanStash& st, void* start, size_t bytes) {
  st.start[st.n] = start;
  st.bytes[st.n] = bytes;
  ++st.n;
  st.total += bytes;
}

}  // namespace

void* span_cache_take(size_t bytes, size_t* got) {
  SpanStash& st = t_stash;
  size_t most = bytes + bytes / 4;
  for (int i = st.n - 1; i >= 0; --i) {  // most recently freed first
    if (st.bytes[i] >= bytes && st.bytes[i] <= most) {
      void* p = st.start[i];
      *got = st.bytes[i];
      remove_range(st, i, 1);
      return p;
    }
  }
  return nullptr;
}

void span_cache_put(void* start, size_t bytes) {
  SpanStash& st = t_stash;
  if (HAK_UNLIKELY(st.exited || bytes > kSpanCacheBytes / 2)) {
    arena_free(start, bytes);
    return;
  }
  // Room for it: the oldest spans (the front) go to the arena, under one lock. They leave the
  // stash before the arena has them: the arena may start the idle-decay thread, whose
  // pthread_create allocates, and that malloc, on this thread, must not take them again.
  int drop = 0;
  size_t total = st.total;
  while (st.n - drop == kSpanCacheEntries || total + bytes > kSpanCacheBytes) total -= st.bytes[drop++];
  if (drop == 1) {  // the common case: one span out, one in, no array copied
    void* old = st.start[0];
    const size_t old_bytes = st.bytes[0];
    remove_range(st, 0, 1);
    append(st, start, bytes);
    arena_free(old, old_bytes);
    return;
  }
  void* old_start[kSpanCacheEntries];
  size_t old_bytes[kSpanCacheEntries];
  if (drop != 0) detach_front(st, drop, old_start, old_bytes);
  append(st, start, bytes);
  if (drop != 0) arena_free_many(old_start, old_bytes, drop);
}

// Empties the stash before the arena sees its spans (span_cache_put says why).
bool span_cache_flush() {
  SpanStash& st = t_stash;
  const int n = st.n;
  if (n == 0) return false;
  void* old_start[kSpanCacheEntries];
  size_t old_bytes[kSpanCacheEntries];
  detach_front(st, n, old_start, old_bytes);
  arena_free_many(old_start, old_bytes, n);
  return true;
}

void span_cache_thread_exit() {
  t_stash.exited = true;  // first: a span freed while the flush runs goes to the arena
  span_cache_flush();
}

size_t span_cache_bytes() { return t_stash.total; }

}  // namespace hak
