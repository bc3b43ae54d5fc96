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
  // Room for it: the oldest spans (the front) go to the arena, under one lock.
  int drop = 0;
  size_t total = st.total;
  while (st.n - drop == kSpanCacheEntries || total + bytes > kSpanCacheBytes) total -= st.bytes[drop++];
  if (drop != 0) {
    arena_free_many(st.start, st.bytes, drop);
    remove_range(st, 0, drop);
  }
  st.start[st.n] = start;
  st.bytes[st.n] = bytes;
  ++st.n;
  st.total += bytes;
}

bool span_cache_flush() {
  SpanStash& st = t_stash;
  if (st.n == 0) return false;
  arena_free_many(st.start, st.bytes, st.n);
  st.n = 0;
  st.total = 0;
  return true;
}

void span_cache_thread_exit() {
  span_cache_flush();
  t_stash.exited = true;
}

size_t span_cache_bytes() { return t_stash.total; }

}  // namespace hak
