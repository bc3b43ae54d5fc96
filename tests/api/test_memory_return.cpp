// test_memory_return.cpp — memory goes back to the OS (issue 2, "Memory return"): allocate
// about 1 GiB in small blocks, free it all, call malloc_trim(0); the resident set must fall
// back to within max(10% of the start, 16 MiB) of where it started. The same for Mid-sized and
// Large blocks. Every test prints RSS at start, peak, after free and after trim.
#include <criterion/criterion.h>

#include <malloc.h>
#include <sys/mman.h>

#include "api_test_util.h"

static const size_t MiB = 1u << 20;

struct Phase { size_t start, peak, freed, trimmed; };

static void report(const char* what, const Phase& ph) {
  char line[512];
  snprintf(line, sizeof line,
           "%s: RSS start %zu MiB, peak %zu MiB, after free %zu MiB, after malloc_trim(0) (or the "
           "wait) %zu MiB",
           what, ph.start / MiB, ph.peak / MiB, ph.freed / MiB, ph.trimmed / MiB);
  cr_log_info("%s", line);
  fprintf(stderr, "%s\n", line);
  if (linked_with_hakmem()) {
    hak_stats_t st;
    hak_stats_get(&st);
    fprintf(stderr, "%s: hak_stats mapped %lu MiB (tiny %lu, arena %lu, large %lu, large cached "
            "%lu), superslabs live %lu retired %lu, madvise %lu mmap %lu munmap %lu\n", what,
            (unsigned long)(st.mapped_bytes / MiB), (unsigned long)(st.tiny_mapped_bytes / MiB),
            (unsigned long)(st.arena_mapped_bytes / MiB),
            (unsigned long)(st.large_mapped_bytes / MiB),
            (unsigned long)(st.large_cached_bytes / MiB), (unsigned long)st.superslabs_live,
            (unsigned long)st.superslabs_retired, (unsigned long)st.madvise_calls,
            (unsigned long)st.mmap_calls, (unsigned long)st.munmap_calls);
  }
}

static void check_returned(const char* what, const Phase& ph, size_t requested) {
  size_t slack = ph.start / 10 > 16 * MiB ? ph.start / 10 : 16 * MiB;
  cr_assert_geq(ph.peak, ph.start + requested / 2,
                "%s: RSS peak %zu MiB is implausibly low for %zu MiB allocated (blocks not "
                "touched?)", what, ph.peak / MiB, requested / MiB);
  cr_assert_leq(ph.trimmed, ph.start + slack,
                "%s: after free + malloc_trim(0) RSS is %zu MiB, start was %zu MiB: more than "
                "%zu MiB was not given back", what, ph.trimmed / MiB, ph.start / MiB, slack / MiB);
}

// Allocates `total` bytes in blocks of size_fn() bytes, each fully written, frees them in a
// scrambled order, trims. The pointer array is mapped directly (not through malloc) and
// unmapped before the last two measurements, so it counts only at the peak.
template <class SizeFn>
static Phase churn(size_t total, size_t max_blocks, SizeFn size_fn) {
  // Warm the allocator up so its fixed start-up cost is in "start".
  free(malloc(16));
  malloc_trim(0);
  Phase ph = {rss_bytes(), 0, 0, 0};
  size_t arr_bytes = max_blocks * sizeof(void*);
  void** arr = (void**)mmap(nullptr, arr_bytes, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(arr, MAP_FAILED, "mmap of the pointer array failed");
  size_t n = 0, bytes = 0;
  while (bytes < total && n < max_blocks) {
    size_t s = size_fn(n);
    void* p = malloc(s);
    cr_assert_not_null(p, "malloc(%zu) failed after %zu MiB", s, bytes / MiB);
    memset(p, (int)(n & 0xff) | 1, s);
    arr[n++] = p;
    bytes += s;
  }
  ph.peak = rss_bytes();
  // Scrambled order: stride through the array with a step coprime to n.
  size_t step = 7919;
  while (n % step == 0) step += 2;
  for (size_t i = 0, k = 0; i < n; i++, k = (k + step) % n) {
    free(arr[k]);
    arr[k] = nullptr;
  }
  for (size_t i = 0; i < n; i++)
    cr_assert_null(arr[i], "scrambled free missed block %zu", i);
  munmap(arr, arr_bytes);
  ph.freed = rss_bytes();
  int r = malloc_trim(0);
  cr_assert(r == 0 || r == 1, "malloc_trim(0) returned %d", r);
  ph.trimmed = rss_bytes();
  return ph;
}

Test(memory_return, one_GiB_of_small_blocks, .timeout = 240) {
  const size_t total = 1024 * MiB;
  Rng rng(1);
  Phase ph = churn(total, 16u << 20, [&](size_t) { return (size_t)rng.range(16, 256); });
  report("1 GiB in 16-256 B blocks", ph);
  check_returned("1 GiB in 16-256 B blocks", ph, total);
  // And the heap is usable afterwards.
  for (int i = 0; i < 100000; i++) {
    void* p = malloc(16 + i % 240);
    cr_assert_not_null(p);
    free(p);
  }
}

Test(memory_return, half_GiB_of_mid_blocks, .timeout = 240) {
  const size_t total = 512 * MiB;
  Rng rng(2);
  Phase ph = churn(total, 1u << 20, [&](size_t) { return (size_t)rng.range(1025, 256 * 1024); });
  report("512 MiB in 1 KiB-256 KiB blocks", ph);
  check_returned("512 MiB in 1 KiB-256 KiB blocks", ph, total);
}

Test(memory_return, half_GiB_of_large_blocks, .timeout = 240) {
  const size_t total = 512 * MiB;
  Rng rng(3);
  Phase ph = churn(total, 4096, [&](size_t) { return (size_t)rng.range(MiB, 8 * MiB); });
  report("512 MiB in 1-8 MiB blocks", ph);
  check_returned("512 MiB in 1-8 MiB blocks", ph, total);
}

// Without malloc_trim: DESIGN.md says empty SuperSlabs and Large spans go back to the OS
// "after a short delay". Free 256 MiB of small blocks and 256 MiB of large ones, then keep the
// process lightly active (a small malloc/free every millisecond) for up to 5 seconds.
Test(memory_return, released_after_a_delay_without_trim, .timeout = 120) {
  free(malloc(16));
  malloc_trim(0);
  const size_t start = rss_bytes();
  enum { SMALL = (256u << 20) / 128, LARGE = 64 };
  void** arr = (void**)mmap(nullptr, (SMALL + LARGE) * sizeof(void*), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(arr, MAP_FAILED);
  for (size_t i = 0; i < SMALL; i++) {
    arr[i] = malloc(128);
    cr_assert_not_null(arr[i]);
    memset(arr[i], 0x11, 128);
  }
  for (size_t i = SMALL; i < SMALL + LARGE; i++) {
    arr[i] = malloc(4u << 20);
    cr_assert_not_null(arr[i]);
    memset(arr[i], 0x22, 4u << 20);
  }
  const size_t peak = rss_bytes();
  for (size_t i = 0; i < SMALL + LARGE; i++) free(arr[i]);
  munmap(arr, (SMALL + LARGE) * sizeof(void*));
  const size_t freed = rss_bytes();
  const size_t slack = start / 10 > 16 * MiB ? start / 10 : 16 * MiB;
  size_t now = freed;
  int ms = 0;
  for (; ms < 5000 && now > start + slack; ms++) {
    usleep(1000);
    void* p = malloc(64);
    escape(p);
    free(p);
    if (ms % 10 == 0) now = rss_bytes();
  }
  cr_log_info("no trim: %d ms of light activity after the free", ms);
  report("no trim", Phase{start, peak, freed, now});
  cr_assert_leq(now, start + slack, "512 MiB freed, no malloc_trim: RSS still %zu MiB after "
                "%d ms (start %zu MiB); empty SuperSlabs/Large spans are not released after a "
                "delay", now / MiB, ms, start / MiB);
}

// Every size class used a little, then left alone while the program keeps allocating one
// other size (slow paths run, so decay does): the run each class kept for its next malloc and
// the runs the pool cached go back within a few seconds, without malloc_trim.
Test(memory_return, classes_left_alone_give_their_runs_back_without_trim, .timeout = 120) {
  free(malloc(16));
  malloc_trim(0);
  const size_t start = rss_bytes();
  enum { SIZES = 2048, EACH = 2 };  // 16 B to 32 KiB in 16-byte steps: every class
  static void* blocks[SIZES * EACH];
  for (size_t i = 0; i < SIZES * EACH; i++) {
    size_t n = 16 * (1 + i / EACH);
    blocks[i] = malloc(n);
    cr_assert_not_null(blocks[i]);
    memset(blocks[i], 0x33, n);
  }
  const size_t peak = rss_bytes();
  for (void* p : blocks) free(p);
  const size_t freed = rss_bytes();
  const size_t slack = 4 * MiB;
  static void* q[1000];
  size_t now = freed;
  int ms = 0;
  for (; ms < 5000 && now > start + slack; ms++) {
    usleep(1000);
    for (void*& p : q) escape(p = malloc(64));  // more than a TLS list holds: refills, flushes
    for (void* p : q) free(p);
    if (ms % 10 == 0) now = rss_bytes();
  }
  report("classes left alone", Phase{start, peak, freed, now});
  if (!linked_with_hakmem()) return;  // the bound below is hakmem's promise, not every allocator's
  cr_assert_leq(now, start + slack, "every class used and left alone: RSS still %zu MiB after %d ms of other "
                "activity (start %zu MiB, peak %zu MiB)", now / MiB, ms, start / MiB, peak / MiB);
}

// Blocks of a few sizes interleaved, most freed, a few survivors scattered over the heap:
// trimming must still give back the pages around them (no "one live block pins a GiB").
Test(memory_return, scattered_survivors, .timeout = 240) {
  free(malloc(16));
  malloc_trim(0);
  const size_t start = rss_bytes();
  enum { N = 3u << 20 };
  void** arr = (void**)mmap(nullptr, N * sizeof(void*), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(arr, MAP_FAILED);
  size_t bytes = 0;
  for (size_t i = 0; i < N; i++) {
    size_t s = 32 + (i % 7) * 48 + (i % 97 == 0 ? 3000 : 0);
    arr[i] = malloc(s);
    cr_assert_not_null(arr[i]);
    memset(arr[i], 0x77, s);
    bytes += s;
  }
  const size_t peak = rss_bytes();
  size_t kept = 0, kept_bytes = 0;
  for (size_t i = 0; i < N; i++) {
    if (i % 4099 == 0) {  // one survivor in ~4099 blocks (~every 600 KiB)
      kept++;
      kept_bytes += 32 + (i % 7) * 48 + (i % 97 == 0 ? 3000 : 0);
      continue;
    }
    free(arr[i]);
  }
  malloc_trim(0);
  const size_t trimmed = rss_bytes();
  char line[300];
  snprintf(line, sizeof line, "scattered survivors: %zu MiB allocated, %zu blocks (%zu KiB) kept; "
           "RSS start %zu MiB, peak %zu MiB, after trim %zu MiB", bytes / MiB, kept,
           kept_bytes / 1024, start / MiB, peak / MiB, trimmed / MiB);
  cr_log_info("%s", line);
  fprintf(stderr, "%s\n", line);
  for (size_t i = 0; i < N; i += 4099) free(arr[i]);
  munmap(arr, N * sizeof(void*));
  // The survivors pin at most one slab each (64 KiB): ~190 slabs = ~12 MiB, plus the array.
  const size_t bound = start + N * sizeof(void*) + kept * 64 * 1024 + 32 * MiB;
  cr_assert_leq(trimmed, bound, "with %zu scattered survivors, RSS after trim is %zu MiB "
                "(start %zu MiB, peak %zu MiB); want <= %zu MiB", kept, trimmed / MiB,
                start / MiB, peak / MiB, bound / MiB);
}
