// page_arena.cpp — the page arena (see page_arena.h).
#include "page_arena.h"

#include <pthread.h>

#include <string.h>

#include "decay_thread.h"
#include "diag.h"
#include "fork_locks.h"
#include "large.h"
#include "os.h"
#include "region_map.h"

namespace hak {

#define HAK_IN_PAGE_ARENA_CPP 1
#include "page_arena.inc.h"

namespace {

constexpr uint64_t kChunkMagic = 0x68616b6d41726e61ull;  // "hakmArna"

struct ArenaChunk {
  uint64_t magic;
  ArenaChunk* next;
  ArenaChunk* prev;
  size_t used_pages;   // pages in live spans (page 0, the header, not counted)
  size_t dirty_pages;  // free pages that may be resident
  size_t max_run;      // upper bound on the longest run of free pages (skips hopeless chunks)
  size_t max_dirty_run;  // upper bound on the longest run of dirty free pages
  PageBitmap used;     // bit set: page in a live span (bit 0: the header)
  PageBitmap dirty;    // bit set: free page that was used since it was last decommitted
};
static_assert(sizeof(ArenaChunk) <= kArenaPage, "arena header must fit its page");

pthread_mutex_t& g_lock = g_fork_locks.arena;
ArenaChunk* g_chunks = nullptr;  // most recently created first
size_t g_chunk_count = 0, g_used_pages = 0, g_dirty_pages = 0;
// The fewest free pages resident since the last decay pass: that many were not needed for a
// whole period (the pass returns them).
size_t g_dirty_min = 0;
// The recent peak of pages in live spans: the most since the last decay pass and in the
// period before it (the pass rotates them: no clock read per span).
size_t g_peak_cur = 0, g_peak_prev = 0;

void note_used_locked() {
  if (g_used_pages > g_peak_cur) g_peak_cur = g_used_pages;
}

// Free pages the arena may keep resident: kArenaDirtyMin plus the room to the recent peak.
size_t dirty_limit_locked() {
  size_t peak = g_peak_cur > g_peak_prev ? g_peak_cur : g_peak_prev;
  return kArenaDirtyMin + (peak > g_used_pages ? peak - g_used_pages : 0) * kArenaPage;
}

ArenaChunk* chunk_of(void* p) {
  return reinterpret_cast<ArenaChunk*>(reinterpret_cast<uintptr_t>(p) & ~(uintptr_t(kArenaChunkSize) - 1));
}

void chunk_link(ArenaChunk* c) {
  c->prev = nullptr;
  c->next = g_chunks;
  if (g_chunks) g_chunks->prev = c;
  g_chunks = c;
}

void chunk_unlink(ArenaChunk* c) {
  if (c->prev) c->prev->next = c->next;
  else g_chunks = c->next;
  if (c->next) c->next->prev = c->prev;
}

// Decommits the dirty free pages of c (in OS-page-aligned pieces).
void chunk_purge(ArenaChunk* c) {
  size_t os_page = os_page_size();
  size_t i = c->dirty.find(1, true);
  while (i < kArenaPagesPerChunk) {
    size_t end = c->dirty.find(i, false);
    char* lo = reinterpret_cast<char*>(c) + i * kArenaPage;
    char* hi = reinterpret_cast<char*>(c) + end * kArenaPage;
    char* alo = reinterpret_cast<char*>((uintptr_t(lo) + os_page - 1) & ~(uintptr_t(os_page) - 1));
    char* ahi = reinterpret_cast<char*>(uintptr_t(hi) & ~(uintptr_t(os_page) - 1));
    if (alo < ahi) os_decommit(alo, size_t(ahi - alo));
    c->dirty.assign(i, end - i, false);
    g_dirty_pages -= end - i;
    c->dirty_pages -= end - i;
    i = c->dirty.find(end, true);
  }
  c->max_dirty_run = 0;
}

// Unmaps an empty chunk. Caller holds the lock and has unlinked it.
void chunk_destroy(ArenaChunk* c) {
  g_dirty_pages -= c->dirty_pages;
  --g_chunk_count;
  region_map_set(c, kArenaChunkSize, kRegionNone);
  os_unmap(c, kArenaChunkSize);
}

// A chunk cut from freed Large memory: its resident pages become dirty free pages (spans take
// them first; the bound and the decay return them), the others are decommitted, so that they
// read as zero for certain (a page swapped out is not resident either) and count as clean.
// Counting every page dirty put spans on pages the freed block never touched while touched
// ones sat free (sort: its 8 MiB buffer, 6 MiB of it written, became three chunks; docs/
// BENCHMARKS.md, "Arena: dirty pages first").
void recycled_pages(ArenaChunk* c) {
  unsigned char vec[kArenaPagesPerChunk];
  if (os_page_size() != kArenaPage || !os_residency(c, kArenaChunkSize, vec)) {
    c->dirty.assign(1, kArenaPagesPerChunk - 1, true);
    c->dirty_pages = c->max_dirty_run = kArenaPagesPerChunk - 1;
    return;
  }
  for (size_t i = 1; i < kArenaPagesPerChunk;) {
    const bool resident = vec[i] & 1;
    size_t j = i + 1;
    while (j < kArenaPagesPerChunk && bool(vec[j] & 1) == resident) ++j;
    if (resident) {
      c->dirty.assign(i, j - i, true);
      c->dirty_pages += j - i;
      if (j - i > c->max_dirty_run) c->max_dirty_run = j - i;
    } else {
      os_decommit(reinterpret_cast<char*>(c) + i * kArenaPage, (j - i) * kArenaPage);
    }
    i = j;
  }
}

// A new chunk: freed Large memory if the page heap has an aligned 2 MiB of it (its resident
// pages count as dirty free pages: recycled_pages), else, unless large_only, a new mapping.
// nullptr if neither. The caller links it (adopt_locked).
ArenaChunk* chunk_create(bool large_only) {
  bool recycled = true;
  void* m = large_take_aligned(kArenaChunkSize, kArenaChunkSize);
  if (m == nullptr) {
    if (large_only) return nullptr;
    recycled = false;
    m = os_map_aligned(kArenaChunkSize, kArenaChunkSize);
    if (m == nullptr) return nullptr;
  }
  if (!region_map_set(m, kArenaChunkSize, kRegionSpan)) {
    os_unmap(m, kArenaChunkSize);
    return nullptr;
  }
  auto* c = static_cast<ArenaChunk*>(m);
  if (recycled) {
    memset(static_cast<void*>(c), 0, sizeof(ArenaChunk));  // as a new mapping's would read
    recycled_pages(c);
  }
  c->magic = kChunkMagic;
  c->used.assign(0, 1, true);  // the header page
  c->max_run = kArenaPagesPerChunk - 1;
  return c;
}

void* take_span(ArenaChunk* c, size_t first, size_t pages, bool* zeroed) {
  c->used.assign(first, pages, true);
  size_t dirty = c->dirty.count_range(first, pages);
  // No page of the span was used since the chunk was mapped or the page decommitted
  // (MADV_DONTNEED: private anonymous pages read as zero again; chunk_purge decommits whole
  // arena pages when they are OS pages).
  if (zeroed != nullptr) *zeroed = dirty == 0 && os_page_size() == kArenaPage;
  if (dirty != 0) {
    c->dirty.assign(first, pages, false);
    c->dirty_pages -= dirty;
    g_dirty_pages -= dirty;
    if (g_dirty_pages < g_dirty_min) g_dirty_min = g_dirty_pages;
  }
  c->used_pages += pages;
  g_used_pages += pages;
  note_used_locked();
  return reinterpret_cast<char*>(c) + first * kArenaPage;
}

// Gives back what chunk c holds that is free: the whole chunk if it is empty (and may be
// unmapped), else its resident free pages. Returns true if anything was released.
bool chunk_release_free(ArenaChunk* c, bool may_unmap) {
  if (c->used_pages == 0 && may_unmap) {
    chunk_unlink(c);
    chunk_destroy(c);
    return true;
  }
  if (c->dirty_pages == 0) return false;
  chunk_purge(c);
  return true;
}

// Oldest chunks first: unmap empty ones (never the newest) and decommit the others' free
// pages, until at most `target` bytes of free pages are resident.
bool release_dirty_locked(size_t target) {
  bool released = false;
  ArenaChunk* t = g_chunks;
  while (t && t->next) t = t->next;
  while (t != nullptr && g_dirty_pages * kArenaPage > target) {
    ArenaChunk* prev = t->prev;
    released |= chunk_release_free(t, t != g_chunks);
    t = prev;
  }
  return released;
}

}  // namespace

bool arena_decay() {
  pthread_mutex_lock(&g_lock);
  // Pages that stayed free and resident through the whole period go back.
  bool released = g_dirty_min != 0 && release_dirty_locked((g_dirty_pages - g_dirty_min) * kArenaPage);
  g_dirty_min = g_dirty_pages;
  g_peak_prev = g_peak_cur;
  g_peak_cur = g_used_pages;
  pthread_mutex_unlock(&g_lock);
  return released;
}

size_t arena_dirty_bytes() {
  pthread_mutex_lock(&g_lock);
  size_t d = g_dirty_pages * kArenaPage;
  pthread_mutex_unlock(&g_lock);
  return d;
}

namespace {

// Takes the first run of `pages` dirty pages of c (dirty) or of free pages (!dirty), or
// returns nullptr and sets the chunk's bound on such runs to the longest there is. Caller
// holds the lock.
void* place_locked(ArenaChunk* c, size_t pages, bool dirty, bool* zeroed) {
  size_t& bound = dirty ? c->max_dirty_run : c->max_run;
  if (bound < pages) return nullptr;
  size_t longest = 0;
  size_t first = dirty ? c->dirty.find_run(pages, true, &longest) : c->used.find_run(pages, false, &longest);
  if (first < kArenaPagesPerChunk) return take_span(c, first, pages, zeroed);
  bound = longest;  // exact now: smaller requests that cannot fit skip the chunk too
  return nullptr;
}

// Links a new chunk and places the span in it, on its dirty pages if it has a run of them.
void* adopt_locked(ArenaChunk* c, size_t pages, bool* zeroed) {
  chunk_link(c);
  ++g_chunk_count;
  g_dirty_pages += c->dirty_pages;
  void* p = place_locked(c, pages, true, zeroed);
  return p != nullptr ? p : place_locked(c, pages, false, zeroed);
}

}  // namespace

// Where a span goes, cheapest for the resident set first:
//   1. a run of dirty pages of a chunk (first fit, newest chunks first): resident already;
//   2. a chunk cut from freed Large memory (its resident pages are dirty ones);
//   3. free pages of a chunk (first fit): never used, or decommitted;
//   4. a new mapping.
// Placing a span on clean pages while enough freed ones sit resident elsewhere grows the
// resident set by its size for nothing (z3, sort: docs/BENCHMARKS.md, "Arena: dirty pages
// first").
void* arena_alloc(size_t bytes, bool* zeroed) {
  size_t pages = bytes / kArenaPage;
  HAK_ASSERT(bytes % kArenaPage == 0 && bytes <= kArenaMaxSpan && pages > 0);
  pthread_mutex_lock(&g_lock);
  if (g_dirty_pages >= pages) {
    for (ArenaChunk* c = g_chunks; c != nullptr; c = c->next) {
      if (c->max_dirty_run < pages) continue;
      if (void* p = place_locked(c, pages, true, zeroed)) {
        pthread_mutex_unlock(&g_lock);
        return p;
      }
    }
  }
  pthread_mutex_unlock(&g_lock);
  ArenaChunk* fresh = chunk_create(true);  // outside the lock: the page heap has its own
  pthread_mutex_lock(&g_lock);
  if (fresh != nullptr) {
    void* p = adopt_locked(fresh, pages, zeroed);
    pthread_mutex_unlock(&g_lock);
    return p;
  }
  for (ArenaChunk* c = g_chunks; c != nullptr; c = c->next) {
    if (c->max_run < pages) continue;
    if (void* p = place_locked(c, pages, false, zeroed)) {
      pthread_mutex_unlock(&g_lock);
      return p;
    }
  }
  pthread_mutex_unlock(&g_lock);
  fresh = chunk_create(false);  // the syscall happens outside the lock
  if (fresh == nullptr) return nullptr;
  pthread_mutex_lock(&g_lock);
  void* p = adopt_locked(fresh, pages, zeroed);
  pthread_mutex_unlock(&g_lock);
  return p;
}

namespace {

// Returns a span's pages to their chunk. Caller holds the lock.
void free_locked(void* span, size_t bytes) {
  size_t pages = bytes / kArenaPage;
  ArenaChunk* c = chunk_of(span);
  size_t first = size_t(static_cast<char*>(span) - reinterpret_cast<char*>(c)) / kArenaPage;
  if constexpr (kDebug) {
    for (size_t i = first; i < first + pages; ++i) {
      if (!c->used.test(i)) hak_fatal("page arena: freeing page %zu of chunk %p twice", i, static_cast<void*>(c));
    }
  }
  c->used.assign(first, pages, false);
  c->dirty.assign(first, pages, true);
  {
    // The freed run merges with its free neighbours: that run may be the new longest.
    size_t lo = first;
    while (lo > 1 && !c->used.test(lo - 1)) --lo;
    size_t hi = c->used.find(first + pages, true);
    if (hi - lo > c->max_run) c->max_run = hi - lo;
    // And with its dirty neighbours, a run of resident free pages.
    lo = first;
    while (lo > 1 && c->dirty.test(lo - 1)) --lo;
    hi = c->dirty.find(first + pages, false);
    if (hi - lo > c->max_dirty_run) c->max_dirty_run = hi - lo;
  }
  c->used_pages -= pages;
  c->dirty_pages += pages;
  g_used_pages -= pages;
  g_dirty_pages += pages;
}

// After frees: the bound, and whether the idle-decay thread must be woken. Unlocks.
void after_free_unlock() {
  note_used_locked();
  size_t limit = dirty_limit_locked();
  if (g_dirty_pages * kArenaPage > limit) release_dirty_locked(limit);
  size_t dirty = g_dirty_pages * kArenaPage;
  pthread_mutex_unlock(&g_lock);
  if (dirty >= kArenaWakeDirty) decay_thread_wake_for(dirty);  // what stays resident must go back if the program stops
}

}  // namespace

void arena_free(void* span, size_t bytes) {
  pthread_mutex_lock(&g_lock);
  free_locked(span, bytes);
  after_free_unlock();
}

void arena_free_many(void* const* spans, const size_t* bytes, int n) {
  if (n == 0) return;
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < n; ++i) free_locked(spans[i], bytes[i]);
  after_free_unlock();
}

bool arena_trim() {
  pthread_mutex_lock(&g_lock);
  bool released = false;
  g_dirty_min = 0;
  for (ArenaChunk* c = g_chunks; c != nullptr;) {
    ArenaChunk* next = c->next;
    released |= chunk_release_free(c, true);
    c = next;
  }
  pthread_mutex_unlock(&g_lock);
  return released;
}

ArenaStats arena_stats() {
  pthread_mutex_lock(&g_lock);
  size_t peak = g_peak_cur > g_peak_prev ? g_peak_cur : g_peak_prev;
  ArenaStats st{g_chunk_count, g_chunk_count * kArenaChunkSize, g_used_pages * kArenaPage, g_dirty_pages * kArenaPage,
                peak * kArenaPage};
  pthread_mutex_unlock(&g_lock);
  return st;
}

void arena_lock() { pthread_mutex_lock(&g_lock); }
void arena_unlock() { pthread_mutex_unlock(&g_lock); }
void arena_reinit_after_fork() { pthread_mutex_init(&g_lock, nullptr); }

bool arena_is_valid() {
  pthread_mutex_lock(&g_lock);
  bool ok = true;
  size_t used = 0, dirty = 0;
  for (ArenaChunk* c = g_chunks; c != nullptr && ok; c = c->next) {
    if (c->magic != kChunkMagic || !c->used.test(0) || c->used.count() != c->used_pages + 1 ||
        c->dirty.count() != c->dirty_pages) {
      diag_print("invariant: arena chunk %p bitmaps disagree with its counters", static_cast<void*>(c));
      ok = false;
    }
    for (size_t i = 0; i < kBitmapWords && ok; ++i) {
      if (c->used.w[i] & c->dirty.w[i]) {
        diag_print("invariant: arena chunk %p has pages both used and dirty", static_cast<void*>(c));
        ok = false;
      }
    }
    // The search hints are upper bounds: a longer run would never be looked for there.
    if (ok && (c->used.find_run(c->max_run + 1, false) < kArenaPagesPerChunk ||
               c->dirty.find_run(c->max_dirty_run + 1, true) < kArenaPagesPerChunk)) {
      diag_print("invariant: arena chunk %p has a free run longer than its hint", static_cast<void*>(c));
      ok = false;
    }
    used += c->used_pages;
    dirty += c->dirty_pages;
  }
  if (ok && (used != g_used_pages || dirty != g_dirty_pages)) {
    diag_print("invariant: arena totals disagree with the chunks");
    ok = false;
  }
  pthread_mutex_unlock(&g_lock);
  return ok;
}

bool arena_span_is_used(const void* span, size_t bytes) {
  auto* c = chunk_of(const_cast<void*>(span));
  size_t first = size_t(static_cast<const char*>(span) - reinterpret_cast<char*>(c)) / kArenaPage;
  size_t pages = bytes / kArenaPage;
  pthread_mutex_lock(&g_lock);
  bool known = false;
  for (ArenaChunk* k = g_chunks; k != nullptr && !known; k = k->next) known = k == c;
  bool ok = known && first >= 1 && first + pages <= kArenaPagesPerChunk;
  for (size_t i = first; ok && i < first + pages; ++i) ok = c->used.test(i);
  pthread_mutex_unlock(&g_lock);
  return ok;
}

}  // namespace hak
