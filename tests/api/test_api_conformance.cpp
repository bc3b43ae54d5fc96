// test_api_conformance.cpp — every function of the C and C++ allocation API, with the edge
// cases glibc documents (issue 2, "API conformance"). Linked with libhakmem.a, so every call
// below reaches hakmem; see api_test_util.h for building the same file against glibc.
#include <criterion/criterion.h>

#include <malloc.h>
#include <stdarg.h>
#include <dirent.h>
#include <limits.h>
#include <regex.h>

#include <algorithm>
#include <new>
#include <string>
#include <vector>

#include "api_test_util.h"

extern "C" {
// glibc's own allocator, to make pointers hakmem did not allocate ("foreign" pointers).
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void  __libc_free(void*);
}

static const size_t kPage = 4096;

static bool is_aligned(const void* p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

// --------------------------------------------------------------------------------------------
// free / malloc(0) / realloc edge cases

Test(api, free_null_is_noop) {
  for (int i = 0; i < 1000; i++) free(NULL);
  ::operator delete(nullptr);
  ::operator delete[](nullptr);
  ::operator delete(nullptr, std::nothrow);
  ::operator delete(nullptr, std::align_val_t(64));
  ::operator delete[](nullptr, std::align_val_t(4096));
  void* p = malloc(32);
  cr_assert_not_null(p, "malloc(32) failed after free(NULL)");
  free(p);
}

Test(api, malloc_zero_unique_and_freeable) {
  enum { N = 2000 };
  std::vector<void*> v;
  for (int i = 0; i < N; i++) {
    void* p = malloc(opaque(0));
    cr_assert_not_null(p, "malloc(0) returned NULL (call %d); glibc returns a unique pointer", i);
    cr_assert(is_aligned(p, 8), "malloc(0) = %p is not 8-byte aligned", p);
    v.push_back(p);
  }
  std::vector<void*> s(v);
  std::sort(s.begin(), s.end());
  cr_assert(std::adjacent_find(s.begin(), s.end()) == s.end(),
            "malloc(0) returned the same pointer twice while both were live");
  for (void* p : v) free(p);

  void* c = calloc(opaque(0), 1);
  cr_assert_not_null(c, "calloc(0, 1) returned NULL");
  void* c2 = calloc(5, opaque(0));
  cr_assert_not_null(c2, "calloc(5, 0) returned NULL");
  cr_assert_neq(c, c2, "calloc(0,..) returned the same pointer twice");
  free(c);
  free(c2);

  void* n0 = ::operator new(opaque(0));
  void* n1 = ::operator new(opaque(0));
  cr_assert(n0 && n1 && n0 != n1, "operator new(0) must return distinct non-null pointers");
  ::operator delete(n0);
  ::operator delete(n1);
}

Test(api, realloc_null_is_malloc) {
  void* p = realloc(NULL, opaque(100));
  cr_assert_not_null(p, "realloc(NULL, 100) returned NULL");
  cr_assert_geq(malloc_usable_size(p), 100u, "realloc(NULL,100): usable size %zu < 100",
                malloc_usable_size(p));
  fill_pattern(p, 100, 1);
  free(p);
  void* q = realloc(NULL, opaque(0));
  cr_assert_not_null(q, "realloc(NULL, 0) must behave as malloc(0) (non-NULL)");
  free(q);
  void* big = realloc(NULL, opaque(5u << 20));
  cr_assert_not_null(big, "realloc(NULL, 5 MiB) returned NULL");
  fill_sparse(big, 5u << 20, 2);
  free(big);
}

Test(api, realloc_zero_frees_and_returns_null) {
  const size_t sizes[] = {1, 16, 100, 1024, 4000, 70000, 300000, 2u << 20};
  for (size_t s : sizes) {
    void* p = malloc(s);
    cr_assert_not_null(p);
    fill_sparse(p, s, s);
    void* r = realloc(p, opaque(0));
    cr_assert_null(r, "realloc(p, 0) for a %zu-byte block returned %p; glibc frees and returns NULL",
                   s, r);
  }
  // If realloc(p, 0) leaked the block, 200k rounds of 16 KiB would add ~3 GiB of RSS.
  size_t before = rss_bytes();
  for (int i = 0; i < 200000; i++) {
    void* p = malloc(opaque(16384));
    cr_assert_not_null(p);
    memset(p, 1, 64);
    escape(realloc(p, opaque(0)));
  }
  size_t after = rss_bytes();
  cr_assert_lt(after, before + (64u << 20),
               "realloc(p,0) seems to leak: RSS grew from %zu to %zu bytes", before, after);
}

// --------------------------------------------------------------------------------------------
// Sizes, alignment and usable size

struct Block { uint8_t* p; size_t n, usable; };

Test(api, every_size_0_to_4096_and_geometric_to_32MiB, .timeout = 120) {
  std::vector<Block> live;
  live.reserve(4200);
  for (size_t n = 0; n <= 4096; n++) {
    uint8_t* p = (uint8_t*)malloc(opaque(n));
    cr_assert_not_null(p, "malloc(%zu) returned NULL", n);
    size_t a = required_alignment(n);
    cr_assert(is_aligned(p, a), "malloc(%zu) = %p is not %zu-byte aligned", n, (void*)p, a);
    size_t u = malloc_usable_size(p);
    cr_assert_geq(u, n, "malloc_usable_size(malloc(%zu)) = %zu < %zu", n, u, n);
    fill_pattern(p, u, n);  // the whole usable size is the caller's to write
    live.push_back({p, n, u});
  }
  for (const Block& b : live) {
    size_t bad = check_pattern(b.p, b.usable, b.n);
    cr_assert_eq(bad, SIZE_MAX, "block malloc(%zu) at %p was overwritten at byte %zu "
                 "(overlapping blocks?)", b.n, (void*)b.p, bad);
  }
  std::vector<Block> s(live);
  std::sort(s.begin(), s.end(), [](const Block& x, const Block& y) { return x.p < y.p; });
  for (size_t i = 1; i < s.size(); i++)
    cr_assert_leq((uintptr_t)s[i - 1].p + s[i - 1].usable, (uintptr_t)s[i].p,
                  "blocks overlap: malloc(%zu)=%p usable %zu and malloc(%zu)=%p", s[i - 1].n,
                  (void*)s[i - 1].p, s[i - 1].usable, s[i].n, (void*)s[i].p);
  // Free in an interleaved order (odd ones first), then the rest.
  for (size_t i = 1; i < live.size(); i += 2) free(live[i].p);
  for (size_t i = 0; i < live.size(); i += 2) free(live[i].p);

  // Geometric from 4 KiB to 32 MiB (factor ~1.19 plus odd offsets), two live at a time.
  Block prev = {nullptr, 0, 0};
  for (double d = 4096; d <= 32.0 * 1024 * 1024 + 1; d *= 1.19) {
    for (size_t delta : {(size_t)0, (size_t)1, (size_t)15}) {
      size_t n = (size_t)d + delta;
      uint8_t* p = (uint8_t*)malloc(opaque(n));
      cr_assert_not_null(p, "malloc(%zu) returned NULL", n);
      cr_assert(is_aligned(p, 16), "malloc(%zu) = %p is not 16-byte aligned", n, (void*)p);
      size_t u = malloc_usable_size(p);
      cr_assert_geq(u, n, "malloc_usable_size(malloc(%zu)) = %zu < %zu", n, u, n);
      fill_sparse(p, u, n);
      if (prev.p) {
        size_t bad = check_sparse(prev.p, prev.usable, prev.n);
        cr_assert_eq(bad, SIZE_MAX, "malloc(%zu) block corrupted at byte %zu after malloc(%zu)",
                     prev.n, bad, n);
        free(prev.p);
      }
      prev = {p, n, u};
    }
  }
  free(prev.p);
}

Test(api, malloc_usable_size_null_is_zero) {
  cr_assert_eq(malloc_usable_size(NULL), 0u, "malloc_usable_size(NULL) must be 0");
}

// Every power-of-two alignment from 1 to 1 MiB with sizes 0, 1, a-1, a, a+1, 3a, through
// posix_memalign, aligned_alloc, memalign and aligned operator new/new[] (throwing and nothrow).
Test(api, every_power_of_two_alignment, .timeout = 120) {
  for (size_t a = 1; a <= (1u << 20); a <<= 1) {
    const size_t sizes[] = {0, 1, a - 1, a, a + 1, 3 * a};
    std::vector<Block> live;
    for (size_t n : sizes) {
      for (int fn = 0; fn < 7; fn++) {
        void* p = nullptr;
        const char* name = "";
        size_t want = a;
        switch (fn) {
          case 0: {
            name = "posix_memalign";
            int rc = posix_memalign(&p, opaque(a), opaque(n));
            if (a < sizeof(void*)) {  // not a multiple of sizeof(void*): EINVAL by definition
              cr_assert_eq(rc, EINVAL, "posix_memalign(align=%zu) must return EINVAL, got %d", a, rc);
              continue;
            }
            cr_assert_eq(rc, 0, "posix_memalign(align=%zu, size=%zu) returned %d", a, n, rc);
            break;
          }
          case 1: name = "aligned_alloc"; p = aligned_alloc(opaque(a), opaque(n)); break;
          case 2: name = "memalign"; p = memalign(opaque(a), opaque(n)); break;
          case 3: name = "operator new(align_val_t)";
            p = ::operator new(opaque(n), std::align_val_t(a)); break;
          case 4: name = "operator new[](align_val_t)";
            p = ::operator new[](opaque(n), std::align_val_t(a)); break;
          case 5: name = "operator new(align_val_t, nothrow)";
            p = ::operator new(opaque(n), std::align_val_t(a), std::nothrow); break;
          case 6: name = "operator new[](align_val_t, nothrow)";
            p = ::operator new[](opaque(n), std::align_val_t(a), std::nothrow); break;
        }
        cr_assert_not_null(p, "%s(align=%zu, size=%zu) returned NULL", name, a, n);
        cr_assert(is_aligned(p, want), "%s(align=%zu, size=%zu) = %p is misaligned", name, a, n, p);
        if (fn <= 2) {
          size_t u = malloc_usable_size(p);
          cr_assert_geq(u, n, "%s(align=%zu, size=%zu): usable size %zu < size", name, a, n, u);
        }
        fill_sparse(p, n, a * 7 + n + fn);
        live.push_back({(uint8_t*)p, n, (size_t)fn});
      }
    }
    for (const Block& b : live) {
      size_t bad = check_sparse(b.p, b.n, a * 7 + b.n + b.usable);
      cr_assert_eq(bad, SIZE_MAX, "aligned block (align=%zu size=%zu fn=%zu) corrupted at byte %zu",
                   a, b.n, b.usable, bad);
      switch (b.usable) {  // (usable holds the function index here)
        case 0: case 1: case 2: free(b.p); break;
        case 3: ::operator delete(b.p, std::align_val_t(a)); break;
        case 4: ::operator delete[](b.p, std::align_val_t(a)); break;
        case 5: ::operator delete(b.p, b.n, std::align_val_t(a)); break;
        case 6: ::operator delete[](b.p, std::align_val_t(a), std::nothrow); break;
      }
    }
  }
}

Test(api, valloc_and_pvalloc) {
  const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 65536, 100000, 3u << 20};
  for (size_t n : sizes) {
    void* v = valloc(opaque(n));
    cr_assert_not_null(v, "valloc(%zu) returned NULL", n);
    cr_assert(is_aligned(v, kPage), "valloc(%zu) = %p is not page aligned", n, v);
    cr_assert_geq(malloc_usable_size(v), n, "valloc(%zu): usable size %zu", n,
                  malloc_usable_size(v));
    memset(v, 0xab, n);
    void* pv = pvalloc(opaque(n));
    cr_assert_not_null(pv, "pvalloc(%zu) returned NULL", n);
    cr_assert(is_aligned(pv, kPage), "pvalloc(%zu) = %p is not page aligned", n, pv);
    size_t rounded = (n + kPage - 1) & ~(kPage - 1);
    cr_assert_geq(malloc_usable_size(pv), rounded,
                  "pvalloc(%zu): usable size %zu < size rounded up to a page (%zu)", n,
                  malloc_usable_size(pv), rounded);
    memset(pv, 0xcd, rounded);  // pvalloc's rounded-up size is the caller's
    free(v);
    free(pv);
  }
}

// --------------------------------------------------------------------------------------------
// Bad alignments, overflow and impossible sizes

Test(api, bad_alignment) {
  const size_t bad_pm[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4097, (1u << 20) + 8, SIZE_MAX};
  for (size_t a : bad_pm) {
    void* p = (void*)0x1234;
    int rc = posix_memalign(&p, opaque(a), 64);
    cr_assert_eq(rc, EINVAL, "posix_memalign(align=%zu) returned %d, want EINVAL", a, rc);
    cr_assert_eq(p, (void*)0x1234, "posix_memalign(align=%zu) modified *memptr on error", a);
  }
  if (!linked_with_hakmem()) {
    cr_log_info("glibc 2.36 rounds up non-power-of-two alignments in aligned_alloc/memalign; "
                "their EINVAL checks are hakmem-only");
    return;
  }
  const size_t bad[] = {3, 6, 24, 48, 100, 4097, (1u << 20) + 16, (SIZE_MAX >> 1) + 2, SIZE_MAX};
  for (size_t a : bad) {
    errno = 0;
    void* p = aligned_alloc(opaque(a), 64);
    cr_assert_null(p, "aligned_alloc(align=%zu) (not a power of two) returned %p, want NULL", a, p);
    cr_assert_eq(errno, EINVAL, "aligned_alloc(align=%zu): errno %d, want EINVAL", a, errno);
    errno = 0;
    p = memalign(opaque(a), 64);
    cr_assert_null(p, "memalign(align=%zu) (not a power of two) returned %p, want NULL", a, p);
    cr_assert_eq(errno, EINVAL, "memalign(align=%zu): errno %d, want EINVAL", a, errno);
  }
}

#define EXPECT_ENOMEM(expr)                                                                  \
  do {                                                                                       \
    errno = 0;                                                                               \
    void* p_ = (expr);                                                                       \
    int e_ = errno;                                                                          \
    cr_assert_null(p_, "%s returned %p, want NULL", #expr, p_);                              \
    cr_assert_eq(e_, ENOMEM, "%s: errno = %d (%s), want ENOMEM", #expr, e_, strerror(e_));   \
  } while (0)

Test(api, impossible_sizes_give_enomem) {
  const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 4096, SIZE_MAX / 2,
                         (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX, (size_t)1 << 62,
                         (size_t)1 << 48};
  for (size_t n : huge) {
    errno = 0;
    void* p = malloc(opaque(n));
    int e = errno;
    cr_assert_null(p, "malloc(%zu) returned %p, want NULL", n, p);
    cr_assert_eq(e, ENOMEM, "malloc(%zu): errno %d, want ENOMEM", n, e);
    EXPECT_ENOMEM(realloc(NULL, opaque(n)));
    EXPECT_ENOMEM(calloc(1, opaque(n)));
    EXPECT_ENOMEM(calloc(opaque(n), 1));
    EXPECT_ENOMEM(aligned_alloc(64, opaque(n)));
    EXPECT_ENOMEM(aligned_alloc(1u << 20, opaque(n)));
    EXPECT_ENOMEM(memalign(4096, opaque(n)));
    EXPECT_ENOMEM(valloc(opaque(n)));
    EXPECT_ENOMEM(pvalloc(opaque(n)));
    void* q = (void*)0x5678;
    int rc = posix_memalign(&q, 64, opaque(n));
    cr_assert_eq(rc, ENOMEM, "posix_memalign(64, %zu) returned %d, want ENOMEM", n, rc);
    cr_assert_eq(q, (void*)0x5678, "posix_memalign(64, %zu) modified *memptr on error", n);
    rc = posix_memalign(&q, 1u << 20, opaque(n));
    cr_assert_eq(rc, ENOMEM, "posix_memalign(1 MiB, %zu) returned %d, want ENOMEM", n, rc);
  }
  // A valid but impossible alignment (2^63).
  void* q = nullptr;
  int rc = posix_memalign(&q, opaque((SIZE_MAX >> 1) + 1), 16);
  cr_assert(rc == ENOMEM || rc == EINVAL, "posix_memalign(align=2^63) returned %d", rc);
}

// A failed realloc leaves the old block valid; GCC cannot know that it failed.
#pragma GCC diagnostic ignored "-Wuse-after-free"
Test(api, multiplication_overflow_gives_enomem) {
  // calloc
  EXPECT_ENOMEM(calloc(opaque(SIZE_MAX), 2));
  EXPECT_ENOMEM(calloc(2, opaque(SIZE_MAX / 2 + 1)));
  EXPECT_ENOMEM(calloc(opaque((size_t)1 << 32), opaque(((size_t)1 << 32) + 1)));
  EXPECT_ENOMEM(calloc(opaque(((size_t)1 << 33) + 3), opaque((size_t)1 << 31)));
  EXPECT_ENOMEM(calloc(opaque(SIZE_MAX / 16 + 1), 16));
  // reallocarray, from NULL and from a live block (which must stay intact)
  EXPECT_ENOMEM(reallocarray(NULL, opaque(SIZE_MAX / 2), 3));
  EXPECT_ENOMEM(reallocarray(NULL, opaque((size_t)1 << 33), opaque((size_t)1 << 33)));
  void* p = malloc(200);
  cr_assert_not_null(p);
  fill_pattern(p, 200, 42);
  EXPECT_ENOMEM(reallocarray(p, opaque(SIZE_MAX / 8 + 1), 8));
  EXPECT_ENOMEM(realloc(p, opaque(SIZE_MAX - 8)));
  EXPECT_ENOMEM(realloc(p, opaque((size_t)PTRDIFF_MAX + 1)));
  cr_assert_eq(check_pattern(p, 200, 42), SIZE_MAX, "a failed realloc damaged the old block");
  void* r = reallocarray(p, 10, 30);
  cr_assert_not_null(r, "reallocarray(p, 10, 30) failed");
  cr_assert_eq(check_pattern(r, 200, 42), SIZE_MAX, "reallocarray lost the contents");
  cr_assert_geq(malloc_usable_size(r), 300u);
  free(r);
  // Alignment round-ups that overflow: size close to SIZE_MAX with a big alignment.
  for (size_t a = 16; a <= (1u << 20); a <<= 2) {
    size_t n = SIZE_MAX - a / 2;
    EXPECT_ENOMEM(aligned_alloc(opaque(a), opaque(n)));
    EXPECT_ENOMEM(memalign(opaque(a), opaque(n)));
    void* q = nullptr;
    int rc = posix_memalign(&q, opaque(a), opaque(n));
    cr_assert_eq(rc, ENOMEM, "posix_memalign(%zu, SIZE_MAX-%zu) returned %d", a, a / 2, rc);
  }
  EXPECT_ENOMEM(pvalloc(opaque(SIZE_MAX - kPage / 2)));  // rounding up to a page overflows
  EXPECT_ENOMEM(valloc(opaque(SIZE_MAX - kPage / 2)));
  // The allocator still works afterwards.
  void* ok = calloc(1000, 1000);
  cr_assert_not_null(ok);
  free(ok);
}

// --------------------------------------------------------------------------------------------
// calloc zeroes, including reused blocks

Test(api, calloc_zeroes_reused_blocks, .timeout = 120) {
  const size_t sizes[] = {1,     8,     16,    24,     48,      100,     256,     512,
                          1000,  1024,  1025,  2048,   4000,    8192,    16384,   65536,
                          65537, 200000, 1u << 20, (1u << 20) + 1, 3u << 20, 9u << 20};
  for (size_t s : sizes) {
    const int rounds = s >= (1u << 20) ? 6 : 40;
    const int batch = s >= 65536 ? 4 : 256;
    for (int r = 0; r < rounds; r++) {
      std::vector<void*> v;
      for (int i = 0; i < batch; i++) {
        void* p = malloc(opaque(s));
        cr_assert_not_null(p);
        memset(p, 0xA5, malloc_usable_size(p));  // dirty the whole usable area
        v.push_back(p);
      }
      for (void* p : v) free(p);
      v.clear();
      for (int i = 0; i < batch; i++) {
        // alternate the split between count and size
        uint8_t* p = (uint8_t*)(i & 1 ? calloc(opaque(s), 1) : calloc(1, opaque(s)));
        cr_assert_not_null(p, "calloc(%zu) failed", s);
        cr_assert(all_zero(p, s), "calloc(%zu) returned a non-zero block (round %d, #%d)", s, r, i);
        memset(p, 0x5A, s);
        v.push_back(p);
      }
      for (void* p : v) free(p);
    }
  }
  // calloc(count, size) with both > 1
  for (size_t c = 1; c < 5000; c = c * 3 + 1) {
    uint32_t* p = (uint32_t*)calloc(opaque(c), sizeof(uint32_t));
    cr_assert_not_null(p);
    cr_assert(all_zero(p, c * 4), "calloc(%zu, 4) not zeroed", c);
    cr_assert_geq(malloc_usable_size(p), c * 4);
    free(p);
  }
}

// --------------------------------------------------------------------------------------------
// realloc keeps contents across tiers

static void realloc_chain(const std::vector<size_t>& chain, uint64_t seed) {
  uint8_t* p = nullptr;
  size_t have = 0;
  for (size_t i = 0; i < chain.size(); i++) {
    size_t n = chain[i];
    uint8_t* q = (uint8_t*)realloc(p, opaque(n));
    cr_assert_not_null(q, "realloc(%zu -> %zu) returned NULL (step %zu)", have, n, i);
    size_t keep = std::min(have, n);
    size_t bad = check_pattern(q, keep, seed + i);
    cr_assert_eq(bad, SIZE_MAX,
                 "realloc %zu -> %zu (step %zu, %p -> %p) lost the contents at byte %zu of %zu",
                 have, n, i, (void*)p, (void*)q, bad, keep);
    cr_assert(is_aligned(q, required_alignment(n)), "realloc(.., %zu) = %p misaligned", n, (void*)q);
    cr_assert_geq(malloc_usable_size(q), n, "realloc(.., %zu): usable size %zu", n,
                  malloc_usable_size(q));
    fill_pattern(q, n, seed + i + 1);
    p = q;
    have = n;
  }
  free(p);
}

Test(api, realloc_preserves_contents_across_tiers, .timeout = 120) {
  realloc_chain({1, 65536, 4u << 20, 100, 1024, 1025, 2u << 20, 17, 33u << 20, 8, 0x10000 + 3,
                 600000, 1u << 20, 200, 5000, 1},
                1000);
  realloc_chain({16, 32, 48, 64, 96, 128, 256, 512, 768, 1024, 1536, 2048, 4096, 8192, 16384,
                 32768, 65536, 131072, 262144, 524288, 1u << 20, 2u << 20, 4u << 20, 8u << 20,
                 16u << 20},
                2000);
  realloc_chain({16u << 20, 8u << 20, 4u << 20, 2u << 20, 1u << 20, 524288, 262144, 131072,
                 65536, 32768, 16384, 8192, 4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 1},
                3000);
  // many small steps, growing then shrinking
  std::vector<size_t> steps;
  for (size_t n = 1; n < 3u << 20; n = n * 5 / 4 + 1) steps.push_back(n);
  for (size_t i = steps.size(); i-- > 0;) steps.push_back(steps[i] + 7);
  realloc_chain(steps, 4000);
  // realloc of a block that came from an aligned allocation
  for (size_t a = 32; a <= (1u << 20); a <<= 3) {
    void* p = aligned_alloc(a, 3 * a);
    cr_assert_not_null(p);
    fill_pattern(p, 3 * a, a);
    void* q = realloc(p, 5 * a);
    cr_assert_not_null(q);
    cr_assert_eq(check_pattern(q, 3 * a, a), SIZE_MAX, "realloc of aligned_alloc(%zu) block "
                 "lost its contents", a);
    q = realloc(q, a / 2);
    cr_assert_eq(check_pattern(q, a / 2, a), SIZE_MAX, "shrinking realloc of aligned block "
                 "(align %zu) lost its contents", a);
    free(q);
  }
}

// --------------------------------------------------------------------------------------------
// malloc_trim, mallinfo2

Test(api, malloc_trim_then_allocate) {
  std::vector<void*> v;
  for (int i = 0; i < 20000; i++) v.push_back(malloc(16 + (i % 64) * 16));
  for (int i = 0; i < 64; i++) v.push_back(malloc(300000 + i * 4096));
  for (void* p : v) free(p);
  int r = malloc_trim(0);
  cr_assert(r == 0 || r == 1, "malloc_trim(0) returned %d, want 0 or 1", r);
  r = malloc_trim(1u << 20);
  cr_assert(r == 0 || r == 1, "malloc_trim(1 MiB) returned %d, want 0 or 1", r);
  v.clear();
  for (int i = 0; i < 20000; i++) {
    size_t n = 16 + (i % 64) * 16;
    uint8_t* p = (uint8_t*)malloc(n);
    cr_assert_not_null(p, "malloc(%zu) failed after malloc_trim", n);
    fill_pattern(p, n, i);
    v.push_back(p);
  }
  for (int i = 0; i < 20000; i++) {
    cr_assert_eq(check_pattern(v[i], 16 + (i % 64) * 16, i), SIZE_MAX,
                 "block %d corrupted after malloc_trim", i);
    free(v[i]);
  }
  void* big = malloc(5u << 20);
  cr_assert_not_null(big);
  memset(big, 1, 5u << 20);
  free(big);
  r = malloc_trim(0);
  cr_assert(r == 0 || r == 1, "malloc_trim(0) returned %d", r);
}

Test(api, mallinfo2_plausible) {
  std::vector<void*> v;
  for (int i = 0; i < 16384; i++) {
    void* p = malloc(1024);
    memset(p, 1, 1024);
    v.push_back(p);
  }
  void* big = malloc(4u << 20);
  memset(big, 2, 4u << 20);
  struct mallinfo2 mi = mallinfo2();
  cr_log_info("mallinfo2: arena=%zu ordblks=%zu hblks=%zu hblkhd=%zu uordblks=%zu fordblks=%zu "
              "keepcost=%zu", mi.arena, mi.ordblks, mi.hblks, mi.hblkhd, mi.uordblks, mi.fordblks,
              mi.keepcost);
  cr_assert_gt(mi.arena, 0u, "mallinfo2().arena is 0 after allocating 16 MiB in 1 KiB blocks");
  cr_assert_geq(mi.arena + mi.hblkhd, 20u << 20,
                "mallinfo2: arena (%zu) + hblkhd (%zu) < the 20 MiB live", mi.arena, mi.hblkhd);
  for (void* p : v) free(p);
  free(big);
}

// --------------------------------------------------------------------------------------------
// C++ operator new / delete, every form

Test(api, operator_new_delete_every_form) {
  const size_t sizes[] = {0, 1, 8, 16, 24, 100, 1024, 1025, 4096, 65536, 70000, 1u << 20,
                          (1u << 20) + 5, 5u << 20};
  for (size_t n : sizes) {
    void* p[12];
    p[0] = ::operator new(opaque(n));
    p[1] = ::operator new[](opaque(n));
    p[2] = ::operator new(opaque(n), std::nothrow);
    p[3] = ::operator new[](opaque(n), std::nothrow);
    p[4] = ::operator new(opaque(n));
    p[5] = ::operator new[](opaque(n));
    p[6] = ::operator new(opaque(n), std::nothrow);
    p[7] = ::operator new[](opaque(n), std::nothrow);
    p[8] = ::operator new(opaque(n), std::align_val_t(64));
    p[9] = ::operator new[](opaque(n), std::align_val_t(128));
    p[10] = ::operator new(opaque(n), std::align_val_t(4096), std::nothrow);
    p[11] = ::operator new[](opaque(n), std::align_val_t(256), std::nothrow);
    const size_t align[12] = {16, 16, 16, 16, 16, 16, 16, 16, 64, 128, 4096, 256};
    for (int i = 0; i < 12; i++) {
      cr_assert_not_null(p[i], "operator new form %d (size %zu) returned null", i, n);
      size_t a = n >= 16 ? align[i] : std::max(align[i] == 16 ? (size_t)8 : align[i], (size_t)8);
      cr_assert(is_aligned(p[i], a), "operator new form %d (size %zu) = %p not %zu-aligned", i,
                n, p[i], a);
      fill_pattern(p[i], n, i * 1000 + n);
    }
    for (int i = 0; i < 12; i++)
      cr_assert_eq(check_pattern(p[i], n, i * 1000 + n), SIZE_MAX,
                   "operator new form %d (size %zu) block corrupted", i, n);
    ::operator delete(p[0]);
    ::operator delete[](p[1]);
    ::operator delete(p[2], std::nothrow);
    ::operator delete[](p[3], std::nothrow);
    ::operator delete(p[4], n);
    ::operator delete[](p[5], n);
    ::operator delete(p[6], n);
    ::operator delete[](p[7], n);
    ::operator delete(p[8], n, std::align_val_t(64));
    ::operator delete[](p[9], n, std::align_val_t(128));
    ::operator delete(p[10], std::align_val_t(4096), std::nothrow);
    ::operator delete[](p[11], std::align_val_t(256), std::nothrow);
    // the remaining aligned delete forms
    void* a1 = ::operator new(opaque(n), std::align_val_t(32));
    void* a2 = ::operator new[](opaque(n), std::align_val_t(1u << 16));
    void* a3 = ::operator new(opaque(n), std::align_val_t(512));
    void* a4 = ::operator new[](opaque(n), std::align_val_t(8));
    cr_assert(a1 && a2 && a3 && a4);
    cr_assert(is_aligned(a2, 1u << 16), "operator new[](%zu, align 64 KiB) = %p", n, a2);
    ::operator delete(a1, std::align_val_t(32));
    ::operator delete[](a2, std::align_val_t(1u << 16));
    ::operator delete(a3, std::align_val_t(512), std::nothrow);
    ::operator delete[](a4, n, std::align_val_t(8));
  }
  // new-expressions
  struct alignas(64) A64 { char c[80]; };
  struct alignas(8192) A8K { char c[10]; };
  A64* x = new A64[33];
  A8K* y = new A8K;
  cr_assert(is_aligned(x, 64) && is_aligned(y, 8192), "over-aligned new-expression misaligned");
  delete[] x;
  delete y;
  std::vector<std::string> strs;
  for (int i = 0; i < 10000; i++) strs.push_back(std::string(i % 300, 'a' + i % 26));
  for (int i = 0; i < 10000; i++) cr_assert_eq(strs[i].size(), (size_t)(i % 300));
}

static int g_handler_calls;
static void* g_reserve;
static void handler_frees_reserve_then_uninstalls() {
  g_handler_calls++;
  if (g_handler_calls == 1) {
    free(g_reserve);  // "free some memory" — not enough for the absurd request
    g_reserve = nullptr;
  } else {
    std::set_new_handler(nullptr);  // give up: operator new must now throw
  }
}

Test(api, operator_new_failure_calls_new_handler_then_throws) {
  const size_t huge = opaque((size_t)1 << 62);
  struct Case { const char* name; int kind; };
  const Case cases[] = {{"new", 0}, {"new[]", 1}, {"new(align 64)", 2}, {"new[](align 4096)", 3}};
  for (const Case& c : cases) {
    g_handler_calls = 0;
    g_reserve = malloc(1u << 20);
    std::set_new_handler(handler_frees_reserve_then_uninstalls);
    bool threw = false;
    void* p = nullptr;
    try {
      switch (c.kind) {
        case 0: p = ::operator new(huge); break;
        case 1: p = ::operator new[](huge); break;
        case 2: p = ::operator new(huge, std::align_val_t(64)); break;
        case 3: p = ::operator new[](huge, std::align_val_t(4096)); break;
      }
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    escape(p);
    std::set_new_handler(nullptr);
    cr_assert(threw, "operator %s(2^62) did not throw std::bad_alloc (returned %p)", c.name, p);
    cr_assert_eq(g_handler_calls, 2,
                 "operator %s(2^62): new_handler called %d times, want 2 (free reserve, "
                 "then uninstall)", c.name, g_handler_calls);
    cr_assert_null(g_reserve);
  }
  // No handler: throws at once.
  bool threw = false;
  try {
    escape(::operator new(huge));
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  cr_assert(threw, "operator new(2^62) without a new_handler did not throw std::bad_alloc");
  threw = false;
  try {
    escape(::operator new(opaque(SIZE_MAX)));
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  cr_assert(threw, "operator new(SIZE_MAX) did not throw std::bad_alloc");
  // nothrow forms return nullptr.
  cr_assert_null(::operator new(huge, std::nothrow), "operator new(2^62, nothrow) != nullptr");
  cr_assert_null(::operator new[](huge, std::nothrow), "operator new[](2^62, nothrow) != nullptr");
  cr_assert_null(::operator new(huge, std::align_val_t(64), std::nothrow),
                 "operator new(2^62, align 64, nothrow) != nullptr");
  cr_assert_null(::operator new[](huge, std::align_val_t(1u << 20), std::nothrow),
                 "operator new[](2^62, align 1 MiB, nothrow) != nullptr");
  // nothrow with a handler: the handler runs, and when it gives up the result is nullptr.
  g_handler_calls = 1;  // skip the "free reserve" step
  std::set_new_handler(handler_frees_reserve_then_uninstalls);
  void* p = ::operator new(huge, std::nothrow);
  std::set_new_handler(nullptr);
  cr_assert_null(p, "operator new(2^62, nothrow) with a handler returned %p", p);
  cr_assert_eq(g_handler_calls, 2, "nothrow new: new_handler called %d times, want 1",
               g_handler_calls - 1);
}

static int g_ok_handler_calls;
static void handler_that_succeeds() {
  g_ok_handler_calls++;
  std::set_new_handler(nullptr);
}

Test(api, new_handler_not_called_on_success) {
  g_ok_handler_calls = 0;
  std::set_new_handler(handler_that_succeeds);
  for (int i = 0; i < 1000; i++) {
    void* p = ::operator new(opaque(16 + i * 97));
    ::operator delete(p);
  }
  std::set_new_handler(nullptr);
  cr_assert_eq(g_ok_handler_calls, 0, "new_handler called %d times for allocations that fit",
               g_ok_handler_calls);
}

// --------------------------------------------------------------------------------------------
// Foreign pointers and allocations made inside libc

Test(api, foreign_glibc_pointers_go_to_glibc) {
  // Pointers from glibc's own allocator must be accepted by free, realloc and
  // malloc_usable_size (DESIGN: "foreign pointers go to glibc").
  const size_t sizes[] = {1, 24, 100, 1000, 5000, 100000, 1u << 20, 8u << 20};
  for (size_t n : sizes) {
    void* p = __libc_malloc(n);
    cr_assert_not_null(p);
    cr_assert_geq(malloc_usable_size(p), n, "malloc_usable_size(glibc block of %zu) = %zu", n,
                  malloc_usable_size(p));
    fill_pattern(p, n, n);
    free(p);

    void* q = __libc_malloc(n);
    fill_pattern(q, n, n + 1);
    void* r = realloc(q, opaque(n * 2 + 10));
    cr_assert_not_null(r, "realloc(glibc block %zu -> %zu) failed", n, n * 2 + 10);
    cr_assert_eq(check_pattern(r, n, n + 1), SIZE_MAX, "realloc of a glibc block lost contents");
    r = realloc(r, opaque(n / 2 + 1));
    cr_assert_eq(check_pattern(r, n / 2 + 1, n + 1), SIZE_MAX, "shrinking realloc of a glibc "
                 "block lost contents");
    free(r);

    void* z = __libc_calloc(1, n);
    free(z);
    void* m = __libc_memalign(256, n);
    cr_assert(is_aligned(m, 256));
    cr_assert_geq(malloc_usable_size(m), n);
    free(m);
    void* zero = __libc_realloc(nullptr, n);
    escape(realloc(zero, opaque(0)));
  }
}

static int do_asprintf(char** out, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vasprintf(out, fmt, ap);
  va_end(ap);
  return r;
}

Test(api, libc_functions_that_allocate) {
  for (int i = 0; i < 2000; i++) {
    char* s = strdup("hakmem strdup test string");
    char* t = strndup("abcdefghijklmnopqrstuvwxyz", (size_t)(i % 26));
    cr_assert_str_eq(s, "hakmem strdup test string");
    cr_assert_eq(strlen(t), (size_t)(i % 26));
    char* a = nullptr;
    cr_assert_geq(do_asprintf(&a, "%d-%s-%0*d", i, s, i % 500, 7), 0);
    free(s);
    free(t);
    free(a);
  }
  char* buf = nullptr;
  size_t len = 0;
  FILE* ms = open_memstream(&buf, &len);
  cr_assert_not_null(ms);
  for (int i = 0; i < 100000; i++) fprintf(ms, "line %d\n", i);
  fclose(ms);
  cr_assert_gt(len, 600000u);
  FILE* f = fmemopen(buf, len, "r");
  char* line = nullptr;
  size_t cap = 0;
  int lines = 0;
  while (getline(&line, &cap, f) > 0) lines++;
  fclose(f);
  free(line);
  free(buf);
  cr_assert_eq(lines, 100000);
  char* rp = realpath("/proc/self/../self/.", nullptr);
  cr_assert_not_null(rp);
  free(rp);
  regex_t re;
  cr_assert_eq(regcomp(&re, "^(a|b)+c[0-9]{2,5}$", REG_EXTENDED), 0);
  cr_assert_eq(regexec(&re, "ababac123", 0, nullptr, 0), 0);
  regfree(&re);
  struct dirent** names = nullptr;
  int n = scandir("/proc/self", &names, nullptr, alphasort);
  cr_assert_gt(n, 5);
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

// --------------------------------------------------------------------------------------------
// Single-threaded random churn over every function, contents checked

Test(api, random_churn_all_functions, .timeout = 120) {
  enum { SLOTS = 4096, OPS = 400000 };
  struct Slot { uint8_t* p; size_t n; uint64_t seed; int kind; size_t align; };
  std::vector<Slot> s(SLOTS, Slot{nullptr, 0, 0, 0, 0});
  Rng rng(12345);
  auto pick_size = [&]() -> size_t {
    uint64_t r = rng.below(1000);
    if (r < 700) return rng.range(0, 1024);
    if (r < 950) return rng.range(1025, 65536);
    if (r < 995) return rng.range(65537, 1u << 20);
    return rng.range((1u << 20) + 1, 6u << 20);
  };
  auto release = [&](Slot& x) {
    size_t bad = check_sparse(x.p, x.n, x.seed);
    cr_assert_eq(bad, SIZE_MAX, "block %p (%zu bytes, kind %d) corrupted at byte %zu",
                 (void*)x.p, x.n, x.kind, bad);
    switch (x.kind) {
      case 3: ::operator delete(x.p, x.n); break;
      case 4: ::operator delete[](x.p, std::align_val_t(x.align)); break;
      default: free(x.p);
    }
    x.p = nullptr;
  };
  for (uint64_t op = 0; op < OPS; op++) {
    Slot& x = s[rng.below(SLOTS)];
    if (x.p && rng.below(4) == 0 && x.kind <= 2) {  // realloc
      size_t n = pick_size();
      size_t bad = check_sparse(x.p, x.n, x.seed);
      cr_assert_eq(bad, SIZE_MAX, "block corrupted before realloc (op %lu)", (unsigned long)op);
      uint8_t* q = (uint8_t*)realloc(x.p, n);
      if (n == 0) {
        cr_assert_null(q);
        x.p = nullptr;
        continue;
      }
      cr_assert_not_null(q);
      size_t keep = std::min(x.n, n);
      // the sparse pattern of the old size is only valid at the old size's positions
      if (keep == x.n) {
        bad = check_sparse(q, keep, x.seed);
        cr_assert_eq(bad, SIZE_MAX, "realloc %zu -> %zu lost contents at %zu", x.n, n, bad);
      } else {
        bad = check_pattern(q, std::min(keep, (size_t)64), x.seed);
        cr_assert_eq(bad, SIZE_MAX, "realloc %zu -> %zu lost contents at %zu", x.n, n, bad);
      }
      x.p = q;
      x.n = n;
      x.seed = op;
      x.kind = 0;
      fill_sparse(q, n, x.seed);
      continue;
    }
    if (x.p) release(x);
    size_t n = pick_size();
    x.kind = (int)rng.below(5);
    x.seed = op;
    switch (x.kind) {
      case 0: x.p = (uint8_t*)malloc(n); break;
      case 1:
        x.p = (uint8_t*)calloc(1, n);
        cr_assert(x.p && all_zero(x.p, std::min(n, (size_t)4096)), "calloc(%zu) not zeroed", n);
        break;
      case 2: {
        x.align = (size_t)16 << rng.below(9);
        void* p = nullptr;
        cr_assert_eq(posix_memalign(&p, x.align, n), 0);
        x.p = (uint8_t*)p;
        break;
      }
      case 3: x.p = (uint8_t*)::operator new(n); break;
      case 4:
        x.align = (size_t)32 << rng.below(8);
        x.p = (uint8_t*)::operator new[](n, std::align_val_t(x.align));
        break;
    }
    cr_assert_not_null(x.p, "allocation of %zu bytes (kind %d) failed", n, x.kind);
    if (x.kind == 2 || x.kind == 4)
      cr_assert(is_aligned(x.p, x.align), "aligned allocation %zu/%zu misaligned", n, x.align);
    else
      cr_assert(is_aligned(x.p, required_alignment(n)), "allocation of %zu misaligned", n);
    x.n = n;
    fill_sparse(x.p, n, x.seed);
  }
  for (Slot& x : s)
    if (x.p) release(x);
}

// Heap memory is never executable: the mapping that holds a block of each tier (Tiny, Mid,
// span, Large) has no 'x' in /proc/self/maps.
Test(api, heap_memory_is_never_executable) {
  const size_t sizes[] = {48, 3000, 100000, 8u << 20};
  void* blocks[4];
  for (int i = 0; i < 4; ++i) {
    blocks[i] = malloc(sizes[i]);
    cr_assert_not_null(blocks[i]);
    memset(blocks[i], 0x90, sizes[i]);
  }
  for (int i = 0; i < 4; ++i) {
    uintptr_t a = reinterpret_cast<uintptr_t>(blocks[i]);
    FILE* f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    char line[512];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
      unsigned long lo, hi;
      char perms[8];
      if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3) continue;
      if (a < lo || a >= hi) continue;
      found = true;
      cr_assert(strchr(perms, 'x') == nullptr, "block of %zu bytes at %p lies in an executable mapping: %s",
                sizes[i], blocks[i], line);
      cr_assert(perms[0] == 'r' && perms[1] == 'w', "block of %zu bytes: mapping not read-write: %s", sizes[i], line);
    }
    fclose(f);
    cr_assert(found, "block of %zu bytes at %p is in no mapping", sizes[i], blocks[i]);
  }
  for (void* b : blocks) free(b);
}
