// test_large_reuse.cpp — big buffers that a program reuses cost no page faults, realloc of
// Large blocks keeps every byte whether it grows in place, moves its pages or shrinks, and an
// idle program gets its freed Large memory back. Through the public API (malloc, realloc,
// free), as a program sees it; page faults counted with getrusage.
#include <criterion/criterion.h>

#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "api_test_util.h"

static const size_t MiB = 1u << 20;

static long minor_faults() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

// One byte per page, derived from the tag and the page, so a lost or shifted page is seen.
static void stamp(char* p, size_t n, unsigned tag) {
  for (size_t i = 0; i < n; i += 4096) p[i] = char(tag * 31 + (i >> 12));
}
static void check_stamp(const char* p, size_t n, unsigned tag, const char* what) {
  for (size_t i = 0; i < n; i += 4096)
    cr_assert_eq(p[i], char(tag * 31 + (i >> 12)), "%s: page %zu of %zu lost its contents", what, i >> 12, n >> 12);
}

Test(large_reuse, buffers_reused_in_a_loop_fault_only_the_first_time) {
  if (!linked_with_hakmem()) cr_skip_test("hakmem's promise");
  enum { LIVE = 6, OPS = 120 };
  char* slot[LIVE] = {};
  size_t size[LIVE] = {};
  Rng rng(7);
  long faults_warm = 0;
  size_t pages_after = 0;
  for (int op = 0; op < OPS; ++op) {
    if (op == 2 * LIVE) faults_warm = minor_faults();  // every slot has had a buffer, twice
    int i = int(rng.range(0, LIVE - 1));
    if (slot[i] != nullptr) {
      check_stamp(slot[i], size[i], unsigned(op), "reused buffer");
      free(slot[i]);
    }
    size[i] = size_t(rng.range(2, 12)) * MiB + size_t(rng.range(0, 255)) * 4096;
    slot[i] = static_cast<char*>(malloc(size[i]));
    cr_assert_not_null(slot[i]);
    memset(slot[i], op & 0xff, size[i]);
    for (int j = 0; j < LIVE; ++j)
      if (slot[j] != nullptr) stamp(slot[j], size[j], unsigned(op + 1));
    if (op >= 2 * LIVE) pages_after += size[i] / 4096;
  }
  long faults = minor_faults() - faults_warm;
  for (char* p : slot) free(p);
  cr_log_info("%ld faults for %zu pages of buffers after the warm-up", faults, pages_after);
  // Measured 4.1 % alone and 5.6 % in a parallel test run (where the kernel places new
  // mappings decides which free extents can merge, so a request sometimes fits none); before
  // the page heap, every page of every buffer faulted again (about 100 %).
  cr_assert_leq(double(faults), 0.10 * double(pages_after),
                "%ld page faults for %zu pages of reused buffers (over 10%%): freed Large memory "
                "was given back and faulted in again", faults, pages_after);
}

Test(large_reuse, growth_by_doubling_keeps_every_byte_and_a_second_round_does_not_fault) {
  const size_t top = 256 * MiB;
  long round_faults[2];
  for (int round = 0; round < 2; ++round) {
    long f0 = minor_faults();
    size_t n = 4096;
    char* p = static_cast<char*>(malloc(n));
    cr_assert_not_null(p);
    stamp(p, n, 1);
    while (n < top) {
      size_t m = n * 2;
      char* q = static_cast<char*>(realloc(p, m));
      cr_assert_not_null(q, "realloc to %zu failed", m);
      check_stamp(q, n, 1, "doubling");
      stamp(q + n, m - n, 1000);  // the new half, written as an appender writes it
      for (size_t i = n; i < m; i += 4096) q[i] = char(31 + (i >> 12));
      p = q;
      n = m;
    }
    check_stamp(p, n, 1, "doubling, final");
    free(p);
    round_faults[round] = minor_faults() - f0;
  }
  cr_log_info("faults: first round %ld, second %ld (%zu pages)", round_faults[0], round_faults[1], top / 4096);
  if (!linked_with_hakmem()) return;
  cr_assert_leq(round_faults[0], long(top / 4096) * 5 / 4,
                "the first round faulted %ld times for %zu pages: growth copies instead of moving "
                "pages", round_faults[0], top / 4096);
  cr_assert_leq(round_faults[1], long(top / 4096) / 20,
                "the second round faulted %ld times: the freed 256 MiB were not reused",
                round_faults[1]);
}

Test(large_reuse, realloc_in_place_when_the_memory_after_is_free) {
  if (!linked_with_hakmem()) cr_skip_test("hakmem's promise");
  char* big = static_cast<char*>(malloc(64 * MiB));
  cr_assert_not_null(big);
  memset(big, 1, 64 * MiB);
  free(big);
  char* p = static_cast<char*>(malloc(2 * MiB));
  stamp(p, 2 * MiB, 5);
  char* q = static_cast<char*>(realloc(p, 40 * MiB));
  cr_assert_eq(q, p, "grown in place into the free memory after it");
  check_stamp(q, 2 * MiB, 5, "in place");
  cr_assert_geq(malloc_usable_size(q), 40 * MiB);
  free(q);
}

Test(large_reuse, shrink_then_grow_keeps_the_prefix) {
  char* p = static_cast<char*>(malloc(64 * MiB));
  cr_assert_not_null(p);
  stamp(p, 64 * MiB, 9);
  char* q = static_cast<char*>(realloc(p, 3 * MiB));
  cr_assert_not_null(q);
  check_stamp(q, 3 * MiB, 9, "after shrinking");
  cr_assert_geq(malloc_usable_size(q), 3 * MiB);
  if (linked_with_hakmem()) {
    cr_assert_eq(q, p, "a Large block shrinks in place");
    cr_assert_lt(malloc_usable_size(q), 4 * MiB, "the tail went back");
  }
  char* r = static_cast<char*>(realloc(q, 100 * MiB));
  cr_assert_not_null(r);
  check_stamp(r, 3 * MiB, 9, "after growing again");
  stamp(r, 100 * MiB, 10);
  char* s = static_cast<char*>(realloc(r, 100));
  cr_assert_not_null(s);
  cr_assert_eq(s[0], char(10 * 31), "the first byte survives a shrink to a small block");
  free(s);
}

Test(large_reuse, aligned_large_blocks_realloc_and_free) {
  void* p = nullptr;
  cr_assert_eq(posix_memalign(&p, 2 * MiB, 6 * MiB), 0);
  cr_assert_eq(uintptr_t(p) % (2 * MiB), 0u);
  stamp(static_cast<char*>(p), 6 * MiB, 3);
  char* q = static_cast<char*>(realloc(p, 30 * MiB));
  cr_assert_not_null(q);
  cr_assert_eq(uintptr_t(q) % 16, 0u);
  check_stamp(q, 6 * MiB, 3, "aligned block grown");
  cr_assert_geq(malloc_usable_size(q), 30 * MiB);
  free(q);
}

Test(large_reuse, calloc_of_reused_memory_reads_zero) {
  char* p = static_cast<char*>(malloc(8 * MiB));
  memset(p, 0x5a, 8 * MiB);
  free(p);
  char* q = static_cast<char*>(calloc(1, 6 * MiB));
  cr_assert_not_null(q);
  for (size_t i = 0; i < 6 * MiB; i += 512) cr_assert_eq(q[i], 0, "calloc byte %zu is not zero", i);
  cr_assert_eq(q[6 * MiB - 1], 0);
  free(q);
}

// The program frees 1 GiB of 1 MiB blocks and then makes no call at all: within 2 s, 95 % of
// it must be back with the OS (the idle-decay thread), without malloc_trim.
Test(large_reuse, an_idle_program_gets_1_GiB_of_1_MiB_blocks_back_within_2_s, .timeout = 120) {
  free(malloc(16));
  malloc_trim(0);
  const size_t start = rss_bytes();
  enum { N = 1024 };
  static char* blocks[N];
  for (int i = 0; i < N; ++i) {
    blocks[i] = static_cast<char*>(malloc(MiB));
    cr_assert_not_null(blocks[i]);
    memset(blocks[i], i & 0xff, MiB);
  }
  const size_t peak = rss_bytes();
  for (int i = 0; i < N; ++i) free(blocks[i]);
  const size_t freed = rss_bytes();
  size_t now = freed;
  int ms = 0;
  for (; ms < 2000 && now > start + (N * MiB) / 20; ms += 50) {
    sleep_ms(50);
    now = rss_bytes();
  }
  cr_log_info("RSS start %zu MiB, peak %zu, after free %zu, after %d ms idle %zu", start / MiB, peak / MiB,
              freed / MiB, ms, now / MiB);
  cr_assert_geq(peak, start + N * MiB / 2, "blocks not resident?");
  cr_assert_leq(now, start + (N * MiB) / 20,
                "%d ms after freeing 1 GiB, RSS is %zu MiB above the start (more than 5 %% kept)", ms,
                (now - start) / MiB);
}
