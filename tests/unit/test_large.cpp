// test_large.cpp — the Large tier's policy (large.h) over the page heap: spans 64 KiB-aligned
// and registered; freed memory reused by a request of any smaller size (split) and merged
// with its free neighbours; the bound tied to the recent peak; decay by age on the next
// operation and, with no operation at all, by the idle-decay thread; trim; growth in place,
// moves without a copy and shrinking; fork; fault injection (debug variant).
#include <criterion/criterion.h>

#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "large.h"
#include "os.h"
#include "region_map.h"

using namespace hak;

namespace {

constexpr size_t MiB = 1024 * 1024;

char* alloc(size_t bytes, bool* fresh) {
  char* p = static_cast<char*>(large_alloc(bytes, fresh));
  cr_assert_not_null(p, "large_alloc(%zu) failed", bytes);
  return p;
}

// Starts from an empty heap (Criterion's start-up may have left memory in it).
void start_clean() {
  large_trim();
  LargeStats st = large_stats();
  cr_assert_eq(st.cached, 0u);
  cr_assert_eq(st.cached_bytes, 0u);
}

void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

// Lets the recent-peak windows pass, so that earlier tests' peaks do not widen the bound.
void forget_the_peak() {
  sleep_ms(long(2 * kLargePeakWindowNs / 1000000) + 50);
  large_trim();
}

}  // namespace

Test(large, fresh_mappings_are_aligned_registered_and_counted) {
  start_clean();
  LargeStats st0 = large_stats();
  bool fresh = false;
  char* p = alloc(2 * MiB, &fresh);
  cr_assert(fresh, "a mapping straight from the OS is fresh");
  cr_assert_eq(uintptr_t(p) % kLargeAlign, 0u, "64 KiB-aligned");
  cr_assert_eq(region_map_lookup(p), kRegionSpan);
  cr_assert_eq(region_map_lookup(p + 2 * MiB - 1), kRegionSpan);
  cr_assert_eq(p[0], 0, "fresh memory is zero");
  memset(p, 0xAA, 2 * MiB);
  LargeStats st1 = large_stats();
  cr_assert_eq(st1.live, st0.live + 1);
  cr_assert_eq(st1.live_bytes, st0.live_bytes + 2 * MiB);
  large_free(p, 2 * MiB);
  LargeStats st2 = large_stats();
  cr_assert_eq(st2.live, st0.live);
  cr_assert_eq(st2.live_bytes, st0.live_bytes);
  cr_assert_eq(st2.cached, 1u, "freed memory is kept");
  cr_assert_eq(st2.cached_bytes, 2 * MiB);
  cr_assert_eq(region_map_lookup(p), kRegionLargeFree, "kept memory is marked free");
  cr_assert(large_is_valid());
}

Test(large, freed_memory_is_reused_resident_without_a_syscall) {
  start_clean();
  bool fresh = true;
  char* p = alloc(3 * MiB, &fresh);
  p[100] = 42;
  large_free(p, 3 * MiB);
  OsCounters c0 = os_counters();
  char* q = alloc(3 * MiB, &fresh);
  cr_assert_eq(q, p, "the freed memory is reused");
  cr_assert_not(fresh, "reused memory is not fresh (it is not zero)");
  cr_assert_eq(q[100], 42, "it keeps its contents (callers zero it if asked)");
  OsCounters c1 = os_counters();
  cr_assert_eq(c1.mmap_calls + c1.munmap_calls, c0.mmap_calls + c0.munmap_calls, "reuse makes no syscall");
  large_free(q, 3 * MiB);
}

Test(large, a_much_smaller_request_is_cut_from_a_bigger_free_extent) {
  start_clean();
  bool fresh;
  char* big = alloc(16 * MiB, &fresh);
  memset(big, 1, 16 * MiB);
  large_free(big, 16 * MiB);
  uint64_t mmaps0 = os_counters().mmap_calls;
  char* a = alloc(2 * MiB, &fresh);
  char* b = alloc(5 * MiB, &fresh);
  cr_assert_eq(a, big, "2 MiB from the 16 MiB extent (no 1.25x size match needed)");
  cr_assert_eq(b, big + 2 * MiB, "the next request from the rest");
  cr_assert_not(fresh);
  cr_assert_eq(os_counters().mmap_calls, mmaps0);
  LargeStats st = large_stats();
  cr_assert_eq(st.cached, 1u);
  cr_assert_eq(st.cached_bytes, 9 * MiB);
  large_free(a, 2 * MiB);
  large_free(b, 5 * MiB);
  st = large_stats();
  cr_assert_eq(st.cached, 1u, "the pieces merged back into one extent");
  cr_assert_eq(st.cached_bytes, 16 * MiB);
  cr_assert(large_is_valid());
}

Test(large, the_heap_keeps_no_more_than_the_recent_peak_allows) {
  forget_the_peak();
  bool fresh;
  char* x = alloc(32 * MiB, &fresh);
  large_free(x, 32 * MiB);
  LargeStats st = large_stats();
  cr_assert_eq(st.recent_peak_bytes, 32 * MiB);
  cr_assert_eq(st.cached_bytes, 32 * MiB, "at the peak's room (32 - 0) + slack, all of it stays");
  // 40 MiB fits nowhere: a new mapping; now 40 MiB live, the peak is 40, the room is 0, and the
  // bound (0 + 40/2) cuts the kept 32 MiB down to 20.
  char* y = alloc(40 * MiB, &fresh);
  cr_assert(fresh);
  st = large_stats();
  cr_assert_eq(st.recent_peak_bytes, 40 * MiB);
  cr_assert_eq(st.cached_bytes, 20 * MiB, "kept %lu MiB", (unsigned long)(st.cached_bytes / MiB));
  cr_assert_eq(region_map_lookup(x + 20 * MiB), kRegionNone, "the top of the old extent went back");
  cr_assert_eq(region_map_lookup(x), kRegionLargeFree, "its bottom is still kept");
  large_free(y, 40 * MiB);
  cr_assert(large_is_valid());
}

// The next operation returns it, or the idle-decay thread did already.
Test(large, memory_unused_for_a_second_goes_back) {
  start_clean();
  bool fresh;
  char* p = alloc(4 * MiB, &fresh);
  large_free(p, 4 * MiB);
  char* live = alloc(2 * MiB, &fresh);  // from p's extent: 2 MiB of it stays kept
  cr_assert_eq(large_stats().cached_bytes, 2 * MiB);
  uint64_t unmaps0 = os_counters().munmap_calls;
  sleep_ms(long(kLargeDecayNs / 1000000) + 50);
  char* q = alloc(6 * MiB, &fresh);  // a miss; the old extent is due
  cr_assert_eq(large_stats().cached_bytes, 0u, "the aged extent was returned");
  cr_assert_geq(os_counters().munmap_calls, unmaps0 + 1);
  large_free(q, 6 * MiB);
  large_free(live, 2 * MiB);
}

Test(large, an_idle_process_gets_its_memory_back_from_the_decay_thread) {
  start_clean();
  bool fresh;
  // 40 MiB: enough to start the thread (decay_thread.h, kDecayThreadStartBytes).
  char* p = alloc(40 * MiB, &fresh);
  memset(p, 3, 40 * MiB);
  large_free(p, 40 * MiB);
  cr_assert_eq(large_stats().cached_bytes, 40 * MiB);
  // No allocator call at all from here: only the background thread can return it.
  long waited = 0;
  while (waited < 3000) {
    sleep_ms(50);
    waited += 50;
    if (region_map_lookup(p) == kRegionNone) break;
  }
  cr_assert_eq(region_map_lookup(p), kRegionNone, "still kept after %ld ms of idleness", waited);
  // The age limit is 1 s and the tick 250 ms: about 1.25 s, 2 s allowed for a loaded machine.
  cr_assert_leq(waited, 2000, "returned after %ld ms; the age limit is 1 s, the tick 250 ms", waited);
  cr_assert_eq(large_stats().cached_bytes, 0u);
}

Test(large, trim_returns_every_free_extent) {
  start_clean();
  bool fresh;
  char* a = alloc(2 * MiB, &fresh);
  char* keep = alloc(3 * MiB, &fresh);
  char* b = alloc(5 * MiB, &fresh);
  large_free(a, 2 * MiB);
  large_free(b, 5 * MiB);
  LargeStats st0 = large_stats();
  cr_assert_geq(st0.cached_bytes, 7 * MiB);
  cr_assert(large_trim(), "trim had memory to return");
  LargeStats st1 = large_stats();
  cr_assert_eq(st1.cached, 0u);
  cr_assert_eq(st1.cached_bytes, 0u);
  cr_assert_eq(st1.live, st0.live, "live spans are not touched");
  cr_assert_eq(region_map_lookup(a), kRegionNone);
  cr_assert_eq(region_map_lookup(b), kRegionNone);
  cr_assert_eq(region_map_lookup(keep), kRegionSpan);
  cr_assert_not(large_trim(), "nothing left to return");
  large_free(keep, 3 * MiB);
}

Test(large, growth_in_place_takes_the_free_extent_after_the_span) {
  start_clean();
  bool fresh;
  char* big = alloc(16 * MiB, &fresh);
  large_free(big, 16 * MiB);
  char* p = alloc(2 * MiB, &fresh);
  cr_assert_eq(p, big);
  p[0] = 5;
  uint64_t sys0 = os_counters().mmap_calls;
  cr_assert(large_grow_in_place(p, 2 * MiB, 10 * MiB));
  cr_assert_eq(os_counters().mmap_calls, sys0, "no syscall");
  cr_assert_eq(region_map_lookup(p + 10 * MiB - 1), kRegionSpan);
  LargeStats st = large_stats();
  cr_assert_eq(st.cached_bytes, 6 * MiB);
  cr_assert_not(large_grow_in_place(p, 10 * MiB, 16 * MiB + kLargeAlign),
                "the free extent after the span holds 6 MiB, not 6 MiB + 64 KiB");
  cr_assert_eq(p[0], 5);
  cr_assert(large_grow_in_place(p, 10 * MiB, 16 * MiB), "all of it");
  cr_assert_eq(large_stats().cached_bytes, 0u);
  large_free(p, 16 * MiB);
  cr_assert(large_is_valid());
}

Test(large, a_move_carries_the_contents_and_frees_the_old_range) {
  start_clean();
  bool fresh;
  char* p = alloc(4 * MiB, &fresh);
  for (size_t i = 0; i < 4 * MiB; i += 4096) p[i] = char(i >> 12);
  char* q = static_cast<char*>(large_move(p, 4 * MiB, 12 * MiB));
  cr_assert_not_null(q);
  cr_assert_neq(q, p);
  for (size_t i = 0; i < 4 * MiB; i += 4096) cr_assert_eq(q[i], char(i >> 12), "page %zu lost", i >> 12);
  cr_assert_eq(region_map_lookup(q + 12 * MiB - 1), kRegionSpan);
  cr_assert_neq(region_map_lookup(p), kRegionSpan, "the old range is no longer a live span");
  LargeStats st = large_stats();
  cr_assert_eq(st.live_bytes % kLargeAlign, 0u);
  large_free(q, 12 * MiB);
  cr_assert(large_is_valid());
}

Test(large, shrinking_gives_the_tail_to_the_heap) {
  start_clean();
  bool fresh;
  char* p = alloc(8 * MiB, &fresh);
  uint64_t live0 = large_stats().live_bytes;
  large_shrink(p, 8 * MiB, 3 * MiB);
  LargeStats st = large_stats();
  cr_assert_eq(st.live_bytes, live0 - 5 * MiB);
  cr_assert_eq(st.cached_bytes, 5 * MiB);
  cr_assert_eq(region_map_lookup(p + 3 * MiB - 1), kRegionSpan);
  cr_assert_eq(region_map_lookup(p + 3 * MiB), kRegionLargeFree);
  large_free(p, 3 * MiB);
  cr_assert_eq(large_stats().cached, 1u, "the span and its old tail merged");
  cr_assert(large_is_valid());
}

// A SuperSlab or arena chunk cut from a free extent (large_take_aligned): the extent's ends
// shorter than the aligned range go back to the OS at once; an end as long stays. The free
// extent is [p + 1 MiB, p + 8 MiB), 1 MiB past a 64 KiB boundary whatever p's alignment: the
// 2 MiB range is cut at the first 2 MiB boundary inside it.
Test(large, an_aligned_take_returns_the_short_ends_around_it) {
  start_clean();
  bool fresh;
  char* p = alloc(8 * MiB, &fresh);
  memset(p, 1, 8 * MiB);
  large_shrink(p, 8 * MiB, 1 * MiB);
  char* lo = p + 1 * MiB;
  char* hi = p + 8 * MiB;
  const size_t A = 2 * MiB;
  char* q = static_cast<char*>(large_take_aligned(A, A));
  cr_assert_not_null(q);
  char* want = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(lo) + A - 1) & ~uintptr_t(A - 1));
  cr_assert_eq(q, want, "cut at %p, expected the first 2 MiB boundary %p", static_cast<void*>(q), static_cast<void*>(want));
  size_t front = size_t(q - lo), back = size_t(hi - (q + A));
  size_t kept = (front >= A ? front : 0) + (back >= A ? back : 0);
  cr_assert_eq(large_stats().cached_bytes, kept, "front %zu and back %zu bytes: %zu kept, expected %zu", front, back,
               size_t(large_stats().cached_bytes), kept);
  if (front != 0 && front < A) {
    cr_assert_eq(region_map_lookup(lo), kRegionNone, "the short front end left the heap");
    unsigned char vec;
    cr_assert_neq(mincore(lo, 4096, &vec), 0, "the short front end is unmapped");
  }
  if (back != 0 && back < A) cr_assert_eq(region_map_lookup(q + A), kRegionNone, "the short back end left the heap");
  cr_assert_eq(region_map_lookup(q), kRegionSpan);
  memset(q, 2, A);  // the range itself is the caller's
  cr_assert(large_is_valid());
  large_free(p, 1 * MiB);
  os_unmap(q, A);
  region_map_set(q, A, kRegionNone);
  large_trim();
}

Test(large, a_fork_child_reuses_and_returns_what_the_parent_kept) {
  start_clean();
  // 40 MiB: enough for the child to start its own decay thread (kDecayThreadStartBytes).
  bool fresh;
  char* p = alloc(40 * MiB, &fresh);
  memset(p, 7, 40 * MiB);
  large_free(p, 40 * MiB);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    bool f;
    char* q = static_cast<char*>(large_alloc(40 * MiB, &f));
    int ok = q == p && !f && q[12345] == 7;
    large_free(q, 40 * MiB);
    // The child's own decay thread returns it while the child sleeps.
    for (int i = 0; i < 40 && region_map_lookup(p) != kRegionNone; ++i) sleep_ms(50);
    ok = ok && region_map_lookup(p) == kRegionNone && large_is_valid();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child could not reuse or return the memory");
  cr_assert(large_is_valid());
}

Test(large, when_mappings_fail_the_kept_memory_still_serves_and_the_rest_is_null) {
  if (kRelease) {
    cr_skip_test("fault injection is a debug-variant hook");
    return;
  }
  start_clean();
  bool fresh;
  char* p = alloc(16 * MiB, &fresh);
  large_free(p, 16 * MiB);
  os_fault_injection_set(1);  // every mapping from now on fails
  char* a = static_cast<char*>(large_alloc(8 * MiB, &fresh));
  cr_assert_eq(a, p, "served from the heap without a mapping");
  char* b = static_cast<char*>(large_alloc(32 * MiB, &fresh));
  cr_assert_null(b, "a request the heap cannot hold fails cleanly");
  cr_assert_null(large_move(a, 8 * MiB, 64 * MiB), "a move with nowhere to go fails");
  cr_assert_eq(region_map_lookup(a), kRegionSpan, "the span survives the failed move");
  os_fault_injection_set(0);
  cr_assert(large_is_valid());
  large_free(a, 8 * MiB);
}
