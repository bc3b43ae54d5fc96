// test_canary.cpp — the canaries after Tiny/Mid blocks of the secure and debug variants
// (canary.h), from the attacker's side: a program writes past the bytes it asked for, then goes
// on; the free (or realloc, or malloc_usable_size) of that block must abort with the exact
// report. And from the user's side: a correct program that uses every byte
// malloc_usable_size reports, that resizes in place and that allocates aligned or zeroed
// blocks is never reported.
// Every test is skipped in the release variant, which has no canaries (nor does the debug
// variant under valgrind, whose memcheck reports the write itself).
#include <criterion/criterion.h>

#include "death_test.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "canary.h"
#include "region_map.h"
#include "size_class.h"

// The overflows (and the uses of freed blocks) are the point.
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wuse-after-free"

namespace {

void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

using death_test::expect_abort;
using death_test::run_child;

void skip_without_canaries() {
  if (!hak::kCanary) cr_skip_test("canaries are the secure and debug variants'");
}

// The byte the overflows write: 0x22, unless a one-byte overflow of that value could leave
// what it hits intact: one of the canary's four bytes (random, per process: canary.h), or of
// the size record of a block with no canary bytes (4 bytes between the program's and the end).
// 1 run of the test program in 30 failed so before.
unsigned char fill_byte() {
  const uint64_t v = hak::canary_word();
  const uint32_t canary = uint32_t(v), record = (4u | 4u << 16) ^ hak::canary_record_key(v);
  for (unsigned f = 0x22;; ++f) {
    bool clash = false;
    for (int i = 0; i < 4; ++i) clash |= ((canary >> (8 * i)) & 255) == f || ((record >> (8 * i)) & 255) == f;
    if (!clash) return (unsigned char)f;
  }
}

// malloc(n), the block written up to n + by, then freed: the report must name the block's
// class size, n and the first byte past n.
void overflow_then_free(size_t n, size_t by, const char* message) {
  expect_abort("overflow", message, [n, by] {
    char* p = static_cast<char*>(malloc(n));
    escape(p);
    memset(p, fill_byte(), n + by);
    escape(p);
    free(p);
  });
}

}  // namespace

Test(canary, one_byte_past_a_tiny_block_is_reported_at_free) {
  skip_without_canaries();
  overflow_then_free(40, 1, "free(0x");
  char found[128];
  snprintf(found, sizeof found, "heap buffer overflow: 40 bytes asked for, the 48-byte block was written past them at +40 (found 0x%02x)",
           fill_byte());
  overflow_then_free(40, 1, found);
  overflow_then_free(1, 1, "heap buffer overflow: 1 bytes asked for, the 16-byte block was written past them at +1");
  overflow_then_free(100, 1, "heap buffer overflow: 100 bytes asked for, the 112-byte block was written past them at +100");
}

Test(canary, one_byte_past_a_mid_block_is_reported_at_free) {
  skip_without_canaries();
  overflow_then_free(3000, 1, "heap buffer overflow: 3000 bytes asked for, the 3008-byte block was written past them at +3000");
  overflow_then_free(20000, 1, "heap buffer overflow: 20000 bytes asked for, the 20480-byte block was written past them at +20000");
  overflow_then_free(32764, 1, "the last four bytes of the 32768-byte block (its size record, after the canary) were overwritten");
}

Test(canary, a_block_without_canary_bytes_has_its_size_record_checked) {
  skip_without_canaries();
  // 28 + 4 = 32: the record is all that follows the program's bytes.
  overflow_then_free(28, 1, "free(0x");
  overflow_then_free(28, 1, "heap buffer overflow: the last four bytes of the 32-byte block (its size record, after the canary) were overwritten");
  overflow_then_free(12, 3, "the last four bytes of the 16-byte block");
}

Test(canary, a_long_overflow_is_reported_too) {
  skip_without_canaries();
  // Over the canary and the record: the record is read first, and named.
  overflow_then_free(48, 32, "heap buffer overflow: the last four bytes of the 64-byte block (its size record, after the canary) were overwritten");
  expect_abort("memcpy overflow", "the last four bytes of the 3008-byte block", [] {
    static char src[4096];
    char* p = static_cast<char*>(malloc(3000));
    escape(p);
    memcpy(p, src, 3064);
    escape(p);
    free(p);
  });
}

Test(canary, realloc_and_usable_size_check_the_block_first) {
  skip_without_canaries();
  expect_abort("realloc", "realloc(0x", [] {
    char* p = static_cast<char*>(malloc(40));
    escape(p);
    p[40] = char(fill_byte());
    escape(p);
    void* q = realloc(p, 400);
    escape(q);
  });
  expect_abort("malloc_usable_size", "malloc_usable_size(0x", [] {
    char* p = static_cast<char*>(malloc(40));
    escape(p);
    p[41] = char(fill_byte());
    escape(p);
    size_t u = malloc_usable_size(p);
    escape(&u);
  });
}

// malloc_usable_size of a freed block: reported whether or not the free left its canary whole
// (a 40-byte block's canary survives its free; a 16-byte block's link and key cover it). The
// block is found on the thread's list of its class, or back in its run after malloc_trim has
// flushed the list. At d061b66 the secure variant returned 40 and 3000 for the 40- and
// 3000-byte blocks and called the 16-byte one a double free; the debug variant called all
// three a double free.
Test(canary, usable_size_of_a_freed_block_is_reported) {
  skip_without_canaries();
  for (size_t n : {size_t(16), size_t(40), size_t(3000)}) {
    std::string what = "usable size of a freed " + std::to_string(n) + "-byte block";
    expect_abort(what.c_str(), "): invalid pointer (a freed block of size class", [n] {
      char* p = static_cast<char*>(malloc(n));
      escape(p);
      free(p);
      size_t u = malloc_usable_size(p);
      escape(&u);
    });
  }
  expect_abort("usable size of a freed block back in its run", "): invalid pointer (a freed block of size class", [] {
    // 2000 blocks, more than a run of the class holds: the last ones come from runs carved
    // fresh for them, so p's neighbours, kept, share its run and keep it.
    static char* keep[2000];
    for (char*& b : keep) escape(b = static_cast<char*>(malloc(64)));
    char* p = keep[1900];
    free(p);
    malloc_trim(0);
    size_t u = malloc_usable_size(p);
    escape(&u);
  });
}

Test(canary, zeroed_aligned_and_resized_blocks_are_covered) {
  skip_without_canaries();
  expect_abort("calloc", "100 bytes asked for, the 112-byte block was written past them at +100", [] {
    char* p = static_cast<char*>(calloc(10, 10));
    escape(p);
    p[100] = char(fill_byte());
    escape(p);
    free(p);
  });
  expect_abort("posix_memalign", "100 bytes asked for, the 128-byte block was written past them at +100", [] {
    void* v = nullptr;
    if (posix_memalign(&v, 64, 100) != 0) _exit(3);
    char* p = static_cast<char*>(v);
    escape(p);
    p[100] = char(fill_byte());
    escape(p);
    free(p);
  });
  expect_abort("realloc in place", "60 bytes asked for, the 112-byte block was written past them at +60", [] {
    char* p = static_cast<char*>(malloc(100));
    escape(p);
    char* q = static_cast<char*>(realloc(p, 60));
    if (q != p) _exit(3);  // kept in place: the canary moved to the new end
    q[60] = char(fill_byte());
    escape(q);
    free(q);
  });
}

// The user's side: nothing is reported for a program that stays within its blocks.
Test(canary, a_correct_program_is_never_reported) {
  skip_without_canaries();
  int status = 0;
  std::string err = run_child(
      [] {
        void* keep[4000];
        size_t k = 0;
        for (size_t n = 0; n <= 33000; n += (n < 1100 ? 1 : 37)) {
          char* p = static_cast<char*>(malloc(n));
          if (p == nullptr) _exit(2);
          size_t u = malloc_usable_size(p);
          if (u < n) _exit(4);
          if (n <= hak::kMidMax - hak::kCanaryTail && u != n) _exit(5);  // exactly what was asked for
          memset(p, 0x5C, u);  // every usable byte
          if (n % 3 == 0) p = static_cast<char*>(realloc(p, n / 2 + 1));
          if (n % 5 == 0 && k < 4000) keep[k++] = p;
          else free(p);
        }
        for (size_t a = 32; a <= 4096; a *= 2) {
          void* v = nullptr;
          if (posix_memalign(&v, a, a + 5) != 0 || uintptr_t(v) % a != 0) _exit(6);
          memset(v, 1, malloc_usable_size(v));
          free(v);
        }
        char* z = static_cast<char*>(calloc(7, 9));
        for (int i = 0; i < 63; ++i)
          if (z[i] != 0) _exit(7);
        free(z);
        while (k > 0) free(keep[--k]);
      },
      &status);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d, stderr: %s", status, err.c_str());
  cr_assert(err.empty(), "unexpected report: %s", err.c_str());
}
