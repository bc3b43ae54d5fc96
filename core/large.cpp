// large.cpp — Large mappings and their cache (see large.h).
#include "large.h"

#include <pthread.h>

#include "os.h"
#include "region_map.h"

namespace hak {
namespace {

struct CacheEntry {
  void* base;
  size_t bytes;
  uint64_t freed_at;
  bool resident;  // false: decommitted, reads as zero
};

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
CacheEntry g_cache[kLargeCacheEntries];
int g_cached = 0;
size_t g_cached_bytes = 0;
size_t g_cached_resident = 0;
uint64_t g_live = 0, g_live_bytes = 0;

void unmap_mapping(void* base, size_t bytes) {
  region_map_set(base, bytes, kRegionNone);
  os_unmap(base, bytes);
}

void remove_entry_locked(int i) {
  g_cached_bytes -= g_cache[i].bytes;
  if (g_cache[i].resident) g_cached_resident -= g_cache[i].bytes;
  g_cache[i] = g_cache[--g_cached];
}

// Moves the entries older than the age limit into `out` (to be unmapped outside the lock).
int take_expired_locked(uint64_t now, CacheEntry* out) {
  int n = 0;
  for (int i = 0; i < g_cached;) {
    if (now - g_cache[i].freed_at > kLargeCacheAgeNs) {
      out[n++] = g_cache[i];
      remove_entry_locked(i);
    } else {
      ++i;
    }
  }
  return n;
}

}  // namespace

void* large_alloc(size_t bytes, bool* fresh) {
  CacheEntry expired[kLargeCacheEntries + 1];
  int nexp = 0;
  void* hit = nullptr;
  bool hit_zero = false;
  pthread_mutex_lock(&g_lock);
  if (g_cached != 0) {
    int best = -1;
    for (int i = 0; i < g_cached; ++i) {
      size_t b = g_cache[i].bytes;
      if (b >= bytes && b - bytes <= bytes / 4 && (best < 0 || b < g_cache[best].bytes)) best = i;
    }
    if (best >= 0) {
      CacheEntry e = g_cache[best];
      remove_entry_locked(best);
      hit = e.base;
      hit_zero = !e.resident;
      // A little bigger: return its tail so accounting stays exact.
      if (e.bytes != bytes) expired[nexp++] = {static_cast<char*>(e.base) + bytes, e.bytes - bytes, 0, false};
    }
    nexp += take_expired_locked(os_now_ns(), expired + nexp);
  }
  if (hit != nullptr) {
    ++g_live;
    g_live_bytes += bytes;
  }
  pthread_mutex_unlock(&g_lock);
  for (int i = 0; i < nexp; ++i) unmap_mapping(expired[i].base, expired[i].bytes);
  if (hit != nullptr) {
    *fresh = hit_zero;
    return hit;
  }
  void* m = os_map_aligned(bytes, kLargeAlign);
  if (m == nullptr) return nullptr;
  if (!region_map_set(m, bytes, kRegionSpan)) {
    os_unmap(m, bytes);
    return nullptr;
  }
  pthread_mutex_lock(&g_lock);
  ++g_live;
  g_live_bytes += bytes;
  pthread_mutex_unlock(&g_lock);
  *fresh = true;
  return m;
}

void large_free(void* base, size_t bytes) {
  CacheEntry out[kLargeCacheEntries + 1];
  int nout = 0;
  uint64_t now = os_now_ns();
  pthread_mutex_lock(&g_lock);
  --g_live;
  g_live_bytes -= bytes;
  nout = take_expired_locked(now, out);
  if (bytes > kLargeCacheMaxEntry) {
    out[nout++] = {base, bytes, now, false};
    pthread_mutex_unlock(&g_lock);
    for (int i = 0; i < nout; ++i) unmap_mapping(out[i].base, out[i].bytes);
    return;
  }
  // Make room: evict the oldest entries until this one fits.
  while (g_cached != 0 && (g_cached == kLargeCacheEntries || g_cached_bytes + bytes > kLargeCacheBytes)) {
    int oldest = 0;
    for (int i = 1; i < g_cached; ++i)
      if (g_cache[i].freed_at < g_cache[oldest].freed_at) oldest = i;
    out[nout++] = g_cache[oldest];
    remove_entry_locked(oldest);
  }
  g_cache[g_cached++] = {base, bytes, now, true};
  g_cached_bytes += bytes;
  g_cached_resident += bytes;
  // Too much resident: take the oldest resident entries out, decommit them outside the lock
  // (nobody can reuse them meanwhile), and put them back as zero pages.
  CacheEntry dec[kLargeCacheEntries];
  int ndec = 0;
  while (g_cached_resident > kLargeCacheResident) {
    int oldest = -1;
    for (int i = 0; i < g_cached; ++i)
      if (g_cache[i].resident && (oldest < 0 || g_cache[i].freed_at < g_cache[oldest].freed_at)) oldest = i;
    dec[ndec++] = g_cache[oldest];
    remove_entry_locked(oldest);
  }
  pthread_mutex_unlock(&g_lock);
  for (int i = 0; i < nout; ++i) unmap_mapping(out[i].base, out[i].bytes);
  if (ndec == 0) return;
  for (int i = 0; i < ndec; ++i) os_decommit(dec[i].base, dec[i].bytes);
  pthread_mutex_lock(&g_lock);
  int nback = 0;
  for (int i = 0; i < ndec; ++i) {
    if (g_cached < kLargeCacheEntries && g_cached_bytes + dec[i].bytes <= kLargeCacheBytes) {
      dec[i].resident = false;
      g_cache[g_cached++] = dec[i];
      g_cached_bytes += dec[i].bytes;
    } else {
      dec[nback++] = dec[i];
    }
  }
  pthread_mutex_unlock(&g_lock);
  for (int i = 0; i < nback; ++i) unmap_mapping(dec[i].base, dec[i].bytes);
}

bool large_trim() {
  CacheEntry out[kLargeCacheEntries];
  pthread_mutex_lock(&g_lock);
  int n = g_cached;
  for (int i = 0; i < n; ++i) out[i] = g_cache[i];
  g_cached = 0;
  g_cached_bytes = 0;
  g_cached_resident = 0;
  pthread_mutex_unlock(&g_lock);
  for (int i = 0; i < n; ++i) unmap_mapping(out[i].base, out[i].bytes);
  return n != 0;
}

bool large_decay(uint64_t now_ns) {
  CacheEntry out[kLargeCacheEntries];
  pthread_mutex_lock(&g_lock);
  int n = take_expired_locked(now_ns, out);
  pthread_mutex_unlock(&g_lock);
  for (int i = 0; i < n; ++i) unmap_mapping(out[i].base, out[i].bytes);
  return n != 0;
}

LargeStats large_stats() {
  pthread_mutex_lock(&g_lock);
  LargeStats st{g_live, g_live_bytes, uint64_t(g_cached), g_cached_bytes};
  pthread_mutex_unlock(&g_lock);
  return st;
}

void large_lock() { pthread_mutex_lock(&g_lock); }
void large_unlock() { pthread_mutex_unlock(&g_lock); }
void large_reinit_after_fork() { pthread_mutex_init(&g_lock, nullptr); }

}  // namespace hak
