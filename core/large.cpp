// large.cpp — Large spans and the keep-or-return policy over the page heap (see large.h).
#include "large.h"

#include <pthread.h>
#include <string.h>

#include "decay_thread.h"
#include "diag.h"
#include "fork_locks.h"
#include "os.h"
#include "page_heap.h"
#include "region_map.h"
#include "valgrind_support.h"

namespace hak {
namespace {

pthread_mutex_t& g_lock = g_fork_locks.large;
PageHeap g_heap;
uint64_t g_live = 0, g_live_bytes = 0;
// The recent peak: the most live bytes in the current window and in the one before it.
uint64_t g_window_start = 0, g_peak_cur = 0, g_peak_prev = 0;

// Ranges cut out of the heap under the lock, unmapped after it (munmap of resident memory
// takes a while: other threads' Large operations need not wait for it).
constexpr int kBatch = 16;
constexpr size_t kMoveMin = 1024 * 1024;
struct Release {
  ExtentRange r[kBatch];
  int n = 0;
  bool more = false;  // more is due than fitted in r
};

void note_live_locked(uint64_t now) {
  if (now - g_window_start >= kLargePeakWindowNs) {
    // A window with no operation at all saw only the live bytes of now.
    g_peak_prev = now - g_window_start >= 2 * kLargePeakWindowNs ? g_live_bytes : g_peak_cur;
    g_peak_cur = g_live_bytes;
    g_window_start = now;
  }
  if (g_live_bytes > g_peak_cur) g_peak_cur = g_live_bytes;
}

uint64_t recent_peak_locked() { return g_peak_cur > g_peak_prev ? g_peak_cur : g_peak_prev; }

// How many free bytes the heap may keep now.
size_t retain_limit_locked() {
  if (!decay_thread_available()) return kLargeRetainSlack;
  uint64_t peak = recent_peak_locked();
  uint64_t slack = peak / 2 > kLargeRetainSlack ? peak / 2 : kLargeRetainSlack;  // room for fragments
  return size_t((peak > g_live_bytes ? peak - g_live_bytes : 0) + slack);
}

bool expired(const FreeExtent* e, uint64_t now) { return now > e->freed_at && now - e->freed_at > kLargeDecayNs; }

// Cuts what the rules make due (oldest extents first) into rel.
void collect_locked(uint64_t now, Release* rel) {
  note_live_locked(now);
  size_t limit = retain_limit_locked();
  for (;;) {
    FreeExtent* e = g_heap.oldest();
    if (e == nullptr) break;
    size_t cut;
    if (expired(e, now)) cut = e->bytes;
    else if (g_heap.free_bytes() > limit) cut = g_heap.free_bytes() - limit;
    else break;
    if (rel->n == kBatch) {
      rel->more = true;
      return;
    }
    rel->r[rel->n++] = g_heap.cut_top(e, cut);
  }
  rel->more = false;
}

// Unlocks, unmaps what rel holds, and goes on while more is due. True if anything went back.
bool unlock_and_release(Release* rel) {
  bool released = rel->n != 0;
  for (;;) {
    pthread_mutex_unlock(&g_lock);
    for (int i = 0; i < rel->n; ++i) os_unmap(rel->r[i].base, rel->r[i].bytes);
    if (!rel->more) return released;
    rel->n = 0;
    pthread_mutex_lock(&g_lock);
    collect_locked(os_now_ns(), rel);
  }
}

void count_live_locked(int64_t blocks, int64_t bytes) {
  g_live += uint64_t(blocks);
  g_live_bytes += uint64_t(bytes);
}

// A new mapping of `bytes`, registered as a span and counted live. nullptr when refused.
void* map_new(size_t bytes) {
  void* m = os_map_aligned(bytes, kLargeAlign);
  if (m == nullptr && large_trim()) m = os_map_aligned(bytes, kLargeAlign);  // what we kept may be in the way
  if (m == nullptr) return nullptr;
  if (!region_map_set(m, bytes, kRegionSpan)) {
    os_unmap(m, bytes);
    return nullptr;
  }
  pthread_mutex_lock(&g_lock);
  count_live_locked(1, int64_t(bytes));
  Release rel;
  collect_locked(os_now_ns(), &rel);
  unlock_and_release(&rel);
  return m;
}

// A free extent of `bytes` from the heap, counted live; nullptr if none fits.
void* take_free(size_t bytes) {
  pthread_mutex_lock(&g_lock);
  void* p = g_heap.take(bytes);
  if (p != nullptr) count_live_locked(1, int64_t(bytes));
  Release rel;
  collect_locked(os_now_ns(), &rel);
  unlock_and_release(&rel);
  return p;
}

// Gives [base, base + bytes) to the heap (no longer live: the caller counted that).
void give_back_locked_and_unlock(void* base, size_t bytes) {
  uint64_t now = os_now_ns();
  g_heap.insert(base, bytes, now);
  Release rel;
  collect_locked(now, &rel);
  size_t held = g_heap.free_bytes();
  unlock_and_release(&rel);
  if (held != 0) decay_thread_wake_for(held);  // the memory kept must go back even if the program stops
}

// Returns [base, base + bytes) (mapped, resident, out of the heap) to the heap.
void give_back(void* base, size_t bytes) {
  pthread_mutex_lock(&g_lock);
  give_back_locked_and_unlock(base, bytes);
}

// Moves the contents of [from, from + bytes) to [to, to + bytes) by moving the pages
// (mremap, no copy). The kernel moves only a range inside one mapping, and a span may cross
// several (the page heap merges extents of separate mappings), so a refused range is halved
// down to kMoveMin; what still cannot move is copied and its pages go back to the heap.
// from's region map entries must already be kRegionNone.
void move_pages(char* from, size_t bytes, char* to) {
  if (os_remap_move(from, bytes, to)) return;
  if (bytes >= 2 * kMoveMin) {
    size_t half = (bytes / 2) & ~(kLargeAlign - 1);
    move_pages(from, half, to);
    move_pages(from + half, bytes - half, to + half);
    return;
  }
  memcpy(to, from, bytes);
  region_map_set(from, bytes, kRegionSpan);
  give_back(from, bytes);
}

}  // namespace

void* large_alloc(size_t bytes, bool* fresh) {
  void* p = take_free(bytes);
  if (p != nullptr) {
    *fresh = false;
    return p;
  }
  *fresh = true;
  return map_new(bytes);
}

void* large_take_aligned(size_t bytes, size_t align) {
  pthread_mutex_lock(&g_lock);
  void* p = g_heap.take_aligned(bytes, align);
  // The unaligned ends of the extent it came from, if shorter than `bytes`, go back now: the
  // program is filling this memory with small blocks, and an end of a freed buffer is not
  // what its next Large request is likely to fit (sqlite3 kept 2 MiB of them resident at its
  // peak, the ends of the 8 MiB array it grew and freed; docs/BENCHMARKS.md). An end that
  // merged with more free memory around it (bytes or more) stays.
  Release rel;
  if (p != nullptr) {
    FreeExtent* ends[2] = {g_heap.extent_ending_at(p), g_heap.extent_at(static_cast<char*>(p) + bytes)};
    for (FreeExtent* e : ends)
      if (e != nullptr && e->bytes < bytes) rel.r[rel.n++] = g_heap.cut_top(e, SIZE_MAX);
  }
  unlock_and_release(&rel);
  // To memcheck it was freed blocks' memory (NOACCESS): now it is the new owner's, accessible
  // as a new mapping's would be.
  if constexpr (kValgrind) {
    if (p != nullptr) vg_defined(p, bytes);
  }
  return p;
}

void large_free(void* base, size_t bytes) {
  pthread_mutex_lock(&g_lock);
  count_live_locked(-1, -int64_t(bytes));
  give_back_locked_and_unlock(base, bytes);
}

bool large_grow_in_place(void* base, size_t old_bytes, size_t new_bytes) {
  char* end = static_cast<char*>(base) + old_bytes;
  size_t extra = new_bytes - old_bytes;
  pthread_mutex_lock(&g_lock);
  bool ok = g_heap.take_at(end, extra);
  if (ok) count_live_locked(0, int64_t(extra));
  Release rel;
  collect_locked(os_now_ns(), &rel);
  unlock_and_release(&rel);
  if (ok) return true;
  // Address space nobody uses after the span: the kernel extends the mapping there.
  if (region_map_lookup(end) != kRegionNone || !os_remap_in_place(base, old_bytes, new_bytes)) return false;
  if (!region_map_set(end, extra, kRegionSpan)) {
    os_unmap(end, extra);
    return false;
  }
  pthread_mutex_lock(&g_lock);
  count_live_locked(0, int64_t(extra));
  note_live_locked(os_now_ns());
  pthread_mutex_unlock(&g_lock);
  return true;
}

void* large_move(void* base, size_t old_bytes, size_t new_bytes) {
  void* dest = take_free(new_bytes);  // resident: its pages past old_bytes need no fault
  if (dest == nullptr) dest = map_new(new_bytes);
  if (dest == nullptr) return nullptr;
  // The old range leaves the map first: once the kernel unmaps it, anyone may map it.
  region_map_set(base, old_bytes, kRegionNone);
  pthread_mutex_lock(&g_lock);
  count_live_locked(-1, -int64_t(old_bytes));
  pthread_mutex_unlock(&g_lock);
  move_pages(static_cast<char*>(base), old_bytes, static_cast<char*>(dest));
  return dest;
}

void large_shrink(void* base, size_t old_bytes, size_t new_bytes) {
  pthread_mutex_lock(&g_lock);
  count_live_locked(0, -int64_t(old_bytes - new_bytes));
  give_back_locked_and_unlock(static_cast<char*>(base) + new_bytes, old_bytes - new_bytes);
}

bool large_trim() {
  bool released = false;
  for (;;) {
    Release rel;
    pthread_mutex_lock(&g_lock);
    while (rel.n < kBatch && g_heap.oldest() != nullptr) rel.r[rel.n++] = g_heap.cut_top(g_heap.oldest(), SIZE_MAX);
    bool more = g_heap.oldest() != nullptr;
    pthread_mutex_unlock(&g_lock);
    for (int i = 0; i < rel.n; ++i) os_unmap(rel.r[i].base, rel.r[i].bytes);
    released |= rel.n != 0;
    if (!more) return released;
  }
}

bool large_decay(uint64_t now_ns) {
  pthread_mutex_lock(&g_lock);
  Release rel;
  collect_locked(now_ns, &rel);
  return unlock_and_release(&rel);
}

bool large_holds_free() {
  pthread_mutex_lock(&g_lock);
  bool holds = g_heap.free_bytes() != 0;
  pthread_mutex_unlock(&g_lock);
  return holds;
}

LargeStats large_stats() {
  pthread_mutex_lock(&g_lock);
  LargeStats st{g_live, g_live_bytes, g_heap.extents(), g_heap.free_bytes(), recent_peak_locked()};
  pthread_mutex_unlock(&g_lock);
  return st;
}

bool large_is_valid() {
  pthread_mutex_lock(&g_lock);
  bool ok = g_heap.is_valid();
  pthread_mutex_unlock(&g_lock);
  return ok;
}

void large_lock() { pthread_mutex_lock(&g_lock); }
void large_unlock() { pthread_mutex_unlock(&g_lock); }
void large_reinit_after_fork() { pthread_mutex_init(&g_lock, nullptr); }

}  // namespace hak
