// test_faults.cpp — fault injection (issue 5, "Faults"): when the OS refuses memory, every API
// fails as its contract says, nothing already allocated is damaged, and allocation works
// again once memory is available.
//
// The hook (debug variant only, core/os.h): HAKMEM_FAULT_MMAP=N at start-up makes the N-th
// and later os_map/os_map_aligned calls of the process fail; hak::os_fault_injection_set(N)
// at run time counts from the call (1: the next mapping fails); 0 turns it off. What "N-th"
// counts (at start-up): every mapping hakmem made so far, its own
// metadata included — the region-map reservation (os_reserve: counted, but never refused,
// it happens once at start-up), thread-heap metadata chunks, SuperSlabs, arena chunks, Large
// mappings — and os_map_aligned may spend two calls on one mapping (the exact try, then an
// over-sized one to trim). So N does not name "the N-th malloc"; the sweep below tries every
// N from 1 up and checks what must hold for each.
//
// Memory hakmem already holds is still handed out while mmap fails (TLS lists, free slots
// of mapped SuperSlabs, retired SuperSlabs, free pages of arena chunks, the Large cache): that
// is correct, and it means one failing call proves nothing. So each API is driven to
// exhaustion with injection on: it must return NULL (ENOMEM) / throw std::bad_alloc after at
// most mapped_bytes / size successes (blocks cannot overlap and nothing new is mapped), and
// keep failing. Every block handed out, and every block allocated before, carries a pattern
// checked once injection is off; then every API and tier must work again.
//
// Assertions are collected in a fixed buffer while injection is on (Criterion's own
// reporting allocates) and checked after it is turned off.
#include <criterion/criterion.h>

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include <new>

#include "api_test_util.h"
#include "hakmem_build_flags.h"
#include "os.h"
#include "page_arena.h"
#include "shared_pool.h"
#include "tiny_heap.h"

extern char** environ;

namespace {

// One size per tier: Tiny, Mid (size class), page-arena span, Large.
const size_t kTiers[] = {16, 4096, 100 * 1024, 4u << 20};
// Bigger than anything the Large cache keeps (32 MiB): always needs a new mapping.
const size_t kHuge = 40u << 20;

enum Dealloc { kFree, kDelete, kDeleteArray, kDeleteAligned, kDeleteArrayAligned };

struct Rec {
  void* p;
  size_t n;
  size_t align;
  uint64_t seed;
  int dealloc;
};

// A growable array in memory mapped directly (not through malloc, which may be failing).
struct RawArray {
  Rec* v = nullptr;
  size_t n = 0, cap = 0;
  void init(size_t capacity) {
    cap = capacity;
    void* m = mmap(nullptr, cap * sizeof(Rec), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    v = m == MAP_FAILED ? nullptr : static_cast<Rec*>(m);
    n = 0;
  }
  bool push(const Rec& r) {
    if (v == nullptr || n == cap) return false;
    v[n++] = r;
    return true;
  }
};

// Failures noted while injection is on (no allocation: a static buffer).
char g_log[16384];
size_t g_log_len = 0;
int g_failures = 0;
__attribute__((format(printf, 1, 2))) void note(const char* fmt, ...) {
  ++g_failures;
  if (g_log_len + 2 >= sizeof g_log) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(g_log + g_log_len, sizeof g_log - g_log_len - 1, fmt, ap);
  va_end(ap);
  if (k > 0) g_log_len += size_t(k) < sizeof g_log - g_log_len - 1 ? size_t(k) : sizeof g_log - g_log_len - 1;
  g_log[g_log_len++] = '\n';
  g_log[g_log_len] = 0;
}

// Informational lines (how many blocks each API still got from memory already mapped).
char g_info[8192];
size_t g_info_len = 0;
__attribute__((format(printf, 1, 2))) void info(const char* fmt, ...) {
  if (g_info_len + 2 >= sizeof g_info) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(g_info + g_info_len, sizeof g_info - g_info_len - 1, fmt, ap);
  va_end(ap);
  if (k > 0) g_info_len += size_t(k) < sizeof g_info - g_info_len - 1 ? size_t(k) : sizeof g_info - g_info_len - 1;
  g_info[g_info_len++] = ' ';
  g_info[g_info_len] = 0;
}

void release(const Rec& r) {
  switch (r.dealloc) {
    case kFree: free(r.p); break;
    case kDelete: ::operator delete(r.p); break;
    case kDeleteArray: ::operator delete[](r.p); break;
    case kDeleteAligned: ::operator delete(r.p, std::align_val_t(r.align)); break;
    case kDeleteArrayAligned: ::operator delete[](r.p, std::align_val_t(r.align)); break;
  }
}

bool aligned_to(const void* p, size_t a) { return (uintptr_t(p) & (a - 1)) == 0; }

uint64_t g_seed = 1000;

// The state of one fault test: blocks allocated before injection ("survivors"), blocks handed
// out under injection ("kept"), and the mapped bytes when injection started.
struct FaultRun {
  RawArray survivors, kept;
  hak_stats_t start{};
  bool injecting = false;

  void setup() {
    if constexpr (!hak::kDebug) cr_skip_test("fault injection exists in the debug variant only");
    kept.init(size_t(8) << 20);
    survivors.init(4096);
    cr_assert(kept.v && survivors.v, "mmap for the test's own bookkeeping failed");
    // Blocks of every tier, by several APIs, some freed again (so caches hold something).
    const size_t sizes[] = {8, 16, 24, 100, 1000, 4096, 20000, 100 * 1024, 1u << 20, 4u << 20, kHuge};
    for (int round = 0; round < 3; ++round) {
      for (size_t n : sizes) {
        Rec r{nullptr, n, 16, ++g_seed, kFree};
        if (round == 0) r.p = malloc(n);
        else if (round == 1) r.p = calloc(1, n);
        else { r.p = ::operator new(n); r.dealloc = kDelete; }
        cr_assert_not_null(r.p, "allocation of %zu bytes failed before injection", n);
        fill_sparse(r.p, n, r.seed);
        survivors.push(r);
      }
    }
    for (size_t n : sizes) free(malloc(n));
  }

  void inject() {
    hak_stats_get(&start);
    injecting = true;
    hak::os_fault_injection_set(1);  // every os_map from now on
  }
  void lift() {
    hak::os_fault_injection_set(0);
    injecting = false;
  }

  // No more blocks of n bytes than fit in what was mapped when injection began.
  size_t bound(size_t n) const { return size_t(start.mapped_bytes) / (n < 16 ? 16 : n) + 64; }

  // Calls `alloc` (which returns a block or nullptr and sets err) until it fails; it must
  // fail with ENOMEM within bound(n) calls, and fail again on the next call.
  template <class F>
  void exhaust(const char* what, size_t n, size_t align, int dealloc, F alloc) {
    size_t lim = bound(n), got = 0;
    for (;;) {
      int err = 0;
      errno = 0;
      void* p = alloc(err);
      if (p == nullptr) {
        if (err != ENOMEM) note("%s(%zu): failed with error %d after %zu blocks, want ENOMEM", what, n, err, got);
        break;
      }
      size_t need = align > 16 ? align : (n >= 16 ? 16 : 8);
      if (!aligned_to(p, need)) note("%s(%zu) = %p under injection: not %zu-aligned", what, n, p, need);
      Rec r{p, n, align, ++g_seed, dealloc};
      fill_sparse(p, n, r.seed);
      if (!kept.push(r)) {
        note("%s(%zu): bookkeeping full", what, n);
        release(r);
        return;
      }
      if (++got > lim) {
        note("%s(%zu): still succeeding after %zu blocks with every mmap refused (%llu bytes were mapped)", what, n,
             got, (unsigned long long)start.mapped_bytes);
        return;
      }
    }
    int err = 0;
    errno = 0;
    void* again = alloc(err);
    if (again != nullptr) {
      note("%s(%zu): succeeded again right after failing, with mmap still refused", what, n);
      kept.push(Rec{again, n, align, 0, dealloc});  // seed 0: not checked, only freed
      fill_sparse(again, n, 0);
    } else if (err != ENOMEM) {
      note("%s(%zu): second failure with error %d, want ENOMEM", what, n, err);
    }
    info("%s(%zu):%zu", what, n, got);
  }

  // After lift(): everything intact, every API and tier works, everything frees; invariants.
  void finish() {
    if (injecting) lift();
    for (size_t i = 0; i < survivors.n; ++i) {
      const Rec& r = survivors.v[i];
      size_t at = check_sparse(r.p, r.n, r.seed);
      if (at != SIZE_MAX) note("block of %zu bytes allocated before injection damaged at byte %zu", r.n, at);
    }
    for (size_t i = 0; i < kept.n; ++i) {
      const Rec& r = kept.v[i];
      size_t at = check_sparse(r.p, r.n, r.seed);
      if (at != SIZE_MAX) note("block %p of %zu bytes handed out under injection damaged at byte %zu", r.p, r.n, at);
    }
    // Allocation works again: every tier, every API.
    for (size_t n : kTiers) {
      void* ps[9] = {};
      ps[0] = malloc(n);
      ps[1] = calloc(1, n);
      ps[2] = aligned_alloc(64, n);
      ps[3] = memalign(4096, n);
      ps[4] = valloc(n);
      ps[5] = pvalloc(n);
      if (posix_memalign(&ps[6], 256, n) != 0) ps[6] = nullptr;
      ps[7] = realloc(nullptr, n);
      ps[8] = ::operator new(n, std::nothrow);
      for (int k = 0; k < 9; ++k) {
        if (ps[k] == nullptr) {
          note("after injection off: allocation #%d of %zu bytes failed", k, n);
          continue;
        }
        if (k == 1 && !all_zero(ps[k], n)) note("after injection off: calloc(1, %zu) not zeroed", n);
        fill_sparse(ps[k], n, 7);
        if (check_sparse(ps[k], n, 7) != SIZE_MAX) note("after injection off: block of %zu unusable", n);
      }
      for (int k = 0; k < 8; ++k) free(ps[k]);
      ::operator delete(ps[8]);
      try {
        char* c = new char[n];
        c[0] = c[n - 1] = 1;
        delete[] c;
        void* a = ::operator new(n, std::align_val_t(4096));
        if (!aligned_to(a, 4096)) note("after injection off: aligned new(%zu, 4096) misaligned", n);
        ::operator delete(a, std::align_val_t(4096));
      } catch (const std::bad_alloc&) {
        note("after injection off: operator new(%zu) threw std::bad_alloc", n);
      }
    }
    void* big = malloc(kHuge);
    if (big == nullptr) note("after injection off: malloc(%zu) failed", kHuge);
    free(big);
    for (size_t i = 0; i < kept.n; ++i) release(kept.v[i]);
    for (size_t i = 0; i < survivors.n; ++i) release(survivors.v[i]);
    kept.n = survivors.n = 0;
    malloc_trim(0);
    if (!hak::tiny_heap_is_valid()) note("thread heap invariants broken after the fault test");
    if (!hak::shared_pool_is_valid()) note("shared pool / SuperSlab invariants broken after the fault test");
    if (!hak::arena_is_valid()) note("page arena invariants broken after the fault test");
    if (g_info_len) cr_log_info("blocks still served from mapped memory under injection: %s", g_info);
    cr_assert_eq(g_failures, 0, "%d failure(s):\n%s", g_failures, g_log);
  }
};

// ------------------------------------------------------------------------------------------
// Run-time hook: every API, every tier.

Test(faults, malloc_every_tier) {
  FaultRun f;
  f.setup();
  f.inject();
  for (size_t n : kTiers) f.exhaust("malloc", n, 16, kFree, [n](int& e) { void* p = malloc(n); e = errno; return p; });
  f.exhaust("malloc", kHuge, 16, kFree, [](int& e) { void* p = malloc(kHuge); e = errno; return p; });
  f.exhaust("realloc(NULL)", 24, 16, kFree, [](int& e) { void* p = realloc(nullptr, 24); e = errno; return p; });
  f.finish();
}

Test(faults, calloc_every_tier) {
  FaultRun f;
  f.setup();
  f.inject();
  for (size_t n : kTiers) {
    f.exhaust("calloc", n, 16, kFree, [n](int& e) {
      void* p = calloc(n / 16, 16);
      e = errno;
      if (p != nullptr && !all_zero(p, n < 65536 ? n : 65536)) note("calloc(%zu) under injection: not zeroed", n);
      return p;
    });
  }
  f.exhaust("calloc", kHuge, 16, kFree, [](int& e) { void* p = calloc(1, kHuge); e = errno; return p; });
  f.finish();
}

// realloc that must grow into fresh memory fails with ENOMEM and leaves the block untouched
// and usable; once injection is off the same realloc succeeds with the contents kept.
Test(faults, realloc_growing_keeps_block) {
  FaultRun f;
  f.setup();
  const size_t olds[] = {16, 100, 3000};
  Rec blocks[3];
  for (int i = 0; i < 3; ++i) {
    blocks[i] = Rec{malloc(olds[i]), olds[i], 16, ++g_seed, kFree};
    cr_assert_not_null(blocks[i].p);
    fill_pattern(blocks[i].p, olds[i], blocks[i].seed);
  }
  f.inject();
  for (size_t n : kTiers) {
    // First use up what is mapped for blocks of n bytes, so growing needs a new mapping.
    f.exhaust("malloc", n, 16, kFree, [n](int& e) { void* p = malloc(n); e = errno; return p; });
    for (Rec& b : blocks) {
      if (b.n >= n) continue;
      size_t usable = malloc_usable_size(b.p);
      for (int form = 0; form < 2; ++form) {
        errno = 0;
        void* q = form == 0 ? realloc(b.p, n) : reallocarray(b.p, n / 8, 8);
        int e = errno;
        if (q != nullptr) {
          note("%s(%zu -> %zu) succeeded under injection after malloc(%zu) was exhausted",
               form ? "reallocarray" : "realloc", b.n, n, n);
          b.p = q;  // keep following the block
          b.n = n < b.n ? n : b.n;
        } else if (e != ENOMEM) {
          note("%s(%zu -> %zu): NULL with errno %d, want ENOMEM", form ? "reallocarray" : "realloc", b.n, n, e);
        }
        if (check_pattern(b.p, b.n, b.seed) != SIZE_MAX) note("realloc failure damaged the %zu-byte block", b.n);
        if (q == nullptr && malloc_usable_size(b.p) != usable) note("realloc failure changed the block's usable size");
      }
    }
  }
  for (Rec& b : blocks) {
    errno = 0;
    void* q = realloc(b.p, kHuge);
    if (q != nullptr || errno != ENOMEM) note("realloc(%zu -> %zu) under injection = %p errno %d", b.n, kHuge, q, errno);
    if (q != nullptr) b.p = q;
  }
  f.lift();
  for (Rec& b : blocks) {
    if (check_pattern(b.p, b.n, b.seed) != SIZE_MAX) note("block of %zu bytes damaged by failed reallocs", b.n);
    void* q = realloc(b.p, 4u << 20);
    if (q == nullptr) {
      note("realloc(%zu -> 4 MiB) failed after injection off", b.n);
      free(b.p);
      continue;
    }
    if (check_pattern(q, b.n, b.seed) != SIZE_MAX) note("realloc(%zu -> 4 MiB) lost the contents", b.n);
    free(q);
  }
  f.finish();
}

Test(faults, aligned_functions_every_tier) {
  FaultRun f;
  f.setup();
  f.inject();
  for (size_t n : kTiers) {
    f.exhaust("posix_memalign(64)", n, 64, kFree, [n](int& e) {
      void* p = reinterpret_cast<void*>(uintptr_t(0xdead0));
      int rc = posix_memalign(&p, 64, n);
      e = rc;
      if (rc != 0 && p != reinterpret_cast<void*>(uintptr_t(0xdead0))) note("posix_memalign failed but wrote *memptr");
      return rc == 0 ? p : nullptr;
    });
    f.exhaust("aligned_alloc(64)", n, 64, kFree, [n](int& e) { void* p = aligned_alloc(64, n); e = errno; return p; });
    f.exhaust("aligned_alloc(8192)", n, 8192, kFree, [n](int& e) { void* p = aligned_alloc(8192, n); e = errno; return p; });
    f.exhaust("memalign(4096)", n, 4096, kFree, [n](int& e) { void* p = memalign(4096, n); e = errno; return p; });
    f.exhaust("valloc", n, 4096, kFree, [n](int& e) { void* p = valloc(n); e = errno; return p; });
    f.exhaust("pvalloc", n, 4096, kFree, [n](int& e) { void* p = pvalloc(n); e = errno; return p; });
  }
  f.exhaust("memalign(1 MiB)", kHuge, 1u << 20, kFree, [](int& e) { void* p = memalign(1u << 20, kHuge); e = errno; return p; });
  f.finish();
}

// Throwing forms: std::bad_alloc (no new_handler is installed).
template <class F>
void* catching(F f, int& e) {
  try {
    void* p = f();
    if (p == nullptr) note("a throwing operator new returned nullptr");
    e = p ? 0 : -1;
    return p;
  } catch (const std::bad_alloc&) {
    e = ENOMEM;
    return nullptr;
  }
}

Test(faults, operator_new_throws_bad_alloc) {
  FaultRun f;
  f.setup();
  cr_assert_null((void*)std::get_new_handler(), "a new_handler is installed");
  f.inject();
  for (size_t n : kTiers) {
    f.exhaust("new", n, 16, kDelete, [n](int& e) { return catching([n] { return ::operator new(n); }, e); });
    f.exhaust("new[]", n, 16, kDeleteArray, [n](int& e) { return catching([n] { return ::operator new[](n); }, e); });
    f.exhaust("new(align 64)", n, 64, kDeleteAligned,
              [n](int& e) { return catching([n] { return ::operator new(n, std::align_val_t(64)); }, e); });
    f.exhaust("new[](align 4096)", n, 4096, kDeleteArrayAligned,
              [n](int& e) { return catching([n] { return ::operator new[](n, std::align_val_t(4096)); }, e); });
  }
  f.exhaust("new", kHuge, 16, kDelete, [](int& e) { return catching([] { return ::operator new(kHuge); }, e); });
  f.finish();
}

Test(faults, nothrow_new_returns_nullptr) {
  FaultRun f;
  f.setup();
  f.inject();
  for (size_t n : kTiers) {
    f.exhaust("new(nothrow)", n, 16, kDelete, [n](int& e) {
      void* p = ::operator new(n, std::nothrow);
      e = p ? 0 : ENOMEM;
      return p;
    });
    f.exhaust("new[](nothrow)", n, 16, kDeleteArray, [n](int& e) {
      void* p = ::operator new[](n, std::nothrow);
      e = p ? 0 : ENOMEM;
      return p;
    });
    f.exhaust("new(align 256, nothrow)", n, 256, kDeleteAligned, [n](int& e) {
      void* p = ::operator new(n, std::align_val_t(256), std::nothrow);
      e = p ? 0 : ENOMEM;
      return p;
    });
    f.exhaust("new[](align 64, nothrow)", n, 64, kDeleteArrayAligned, [n](int& e) {
      void* p = ::operator new[](n, std::align_val_t(64), std::nothrow);
      e = p ? 0 : ENOMEM;
      return p;
    });
  }
  f.finish();
}

// ------------------------------------------------------------------------------------------
// new_handler: called on failure, then the allocation is retried.

int g_handler_calls = 0;
void handler_lifts_injection() {
  ++g_handler_calls;
  hak::os_fault_injection_set(0);  // "memory became available"
}
int g_handler_limit = 0;
void handler_gives_up() {
  if (++g_handler_calls >= g_handler_limit) std::set_new_handler(nullptr);
}

Test(faults, new_handler_then_success) {
  FaultRun f;
  f.setup();
  struct Case {
    const char* what;
    size_t n;
    int form;  // 0 new, 1 new[], 2 aligned new, 3 nothrow new
  } cases[] = {{"new", 16, 0}, {"new[]", 4096, 1}, {"new(align 4096)", 100 * 1024, 2}, {"new(nothrow)", kHuge, 3},
               {"new", 4u << 20, 0}, {"new", kHuge, 0}};
  for (const Case& c : cases) {
    f.inject();
    // Use up what is mapped for this size (with no handler: these fail plainly).
    f.exhaust("malloc", c.n, 16, kFree, [&](int& e) { void* p = malloc(c.n); e = errno; return p; });
    g_handler_calls = 0;
    std::set_new_handler(handler_lifts_injection);
    void* p = nullptr;
    try {
      switch (c.form) {
        case 0: p = ::operator new(c.n); break;
        case 1: p = ::operator new[](c.n); break;
        case 2: p = ::operator new(c.n, std::align_val_t(4096)); break;
        default: p = ::operator new(c.n, std::nothrow); break;
      }
    } catch (const std::bad_alloc&) {
      note("%s(%zu) threw although the new_handler made memory available", c.what, c.n);
    }
    std::set_new_handler(nullptr);
    f.injecting = false;
    if (g_handler_calls != 1) note("%s(%zu): new_handler called %d times, want 1", c.what, c.n, g_handler_calls);
    if (p == nullptr) {
      note("%s(%zu) failed after the new_handler", c.what, c.n);
      continue;
    }
    fill_sparse(p, c.n, 3);
    f.kept.push(Rec{p, c.n, 4096, 3, c.form == 1 ? kDeleteArray : c.form == 2 ? kDeleteAligned : kDelete});
  }
  f.finish();
}

Test(faults, new_handler_until_removed_then_bad_alloc) {
  FaultRun f;
  f.setup();
  f.inject();
  g_handler_calls = 0;
  g_handler_limit = 3;
  std::set_new_handler(handler_gives_up);
  bool threw = false;
  try {
    void* p = ::operator new(kHuge);
    note("operator new(%zu) = %p with mmap refused", kHuge, p);
    ::operator delete(p);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  int calls_throwing = g_handler_calls;
  g_handler_calls = 0;
  std::set_new_handler(handler_gives_up);
  void* q = ::operator new(kHuge, std::nothrow);
  int calls_nothrow = g_handler_calls;
  std::set_new_handler(nullptr);
  f.lift();
  cr_assert(threw, "operator new did not throw std::bad_alloc once the new_handler was removed");
  cr_assert_eq(calls_throwing, 3, "new_handler called %d times, want 3 (until it removed itself)", calls_throwing);
  cr_assert_null(q, "operator new(nothrow) = %p with mmap refused", q);
  cr_assert_eq(calls_nothrow, 3, "nothrow new called the new_handler %d times, want 3", calls_nothrow);
  f.finish();
}

// ------------------------------------------------------------------------------------------
// "N-th and later": with the hook set to N, exactly N-1 mappings happen in all.

Test(faults, nth_and_later_counts_mappings) {
  FaultRun f;
  f.setup();
  hak_stats_t s0, s1;
  // os_fault_injection_set(N) counts from the call: N = 1, the very next mapping fails.
  hak_stats_get(&s0);
  hak::os_fault_injection_set(1);
  errno = 0;
  void* p = malloc(kHuge);
  int e = errno;
  hak_stats_get(&s1);
  hak::os_fault_injection_set(0);
  cr_assert(p == nullptr && e == ENOMEM, "malloc(%zu) = %p errno %d with the next mmap refused", kHuge, p, e);
  cr_assert_eq(s1.mmap_calls, s0.mmap_calls, "a mapping happened although refused (%llu -> %llu calls)",
               (unsigned long long)s0.mmap_calls, (unsigned long long)s1.mmap_calls);

  // N = 3: two more mappings succeed (one or two Large blocks: os_map_aligned may need two
  // calls for one mapping), then all fail.
  hak_stats_get(&s0);
  hak::os_fault_injection_set(3);
  void* got[8];
  int ok = 0;
  for (int i = 0; i < 8; ++i) {
    got[ok] = malloc(kHuge);
    if (got[ok] == nullptr) continue;
    memset(got[ok], 0x5a, 4096);
    ++ok;
  }
  hak_stats_get(&s1);
  hak::os_fault_injection_set(0);
  for (int i = 0; i < ok; ++i) free(got[i]);
  cr_assert(ok >= 1 && ok <= 2, "%d huge blocks with 2 mappings allowed, want 1 or 2", ok);
  cr_assert_eq(s1.mmap_calls, s0.mmap_calls + 2, "mmap calls went from %llu to %llu with N = 3",
               (unsigned long long)s0.mmap_calls, (unsigned long long)s1.mmap_calls);
  f.finish();
}

// ------------------------------------------------------------------------------------------
// Threads under injection: a new thread (its heap may need a metadata mapping) gets blocks or
// ENOMEM, never a crash; frees across threads need no memory.

struct ThreadArgs {
  RawArray* main_blocks;
  size_t from, to;
  int ok, enomem, bad;
};

void* thread_under_injection(void* arg) {
  auto* a = static_cast<ThreadArgs*>(arg);
  for (size_t i = a->from; i < a->to; ++i) free(a->main_blocks->v[i].p);  // remote frees
  for (int i = 0; i < 200; ++i) {
    size_t n = kTiers[i % 4];
    errno = 0;
    void* p = malloc(n);
    if (p != nullptr) {
      fill_pattern(p, n < 256 ? n : 256, 9);
      if (check_pattern(p, n < 256 ? n : 256, 9) != SIZE_MAX) ++a->bad;
      free(p);
      ++a->ok;
    } else if (errno == ENOMEM) {
      ++a->enomem;
    } else {
      ++a->bad;
    }
  }
  return nullptr;
}

Test(faults, threads_under_injection) {
  FaultRun f;
  f.setup();
  RawArray mine;
  mine.init(4096);
  for (int i = 0; i < 1000; ++i) {
    size_t n = i % 2 ? 32 : 256;
    Rec r{malloc(n), n, 16, ++g_seed, kFree};
    cr_assert_not_null(r.p);
    fill_pattern(r.p, n, r.seed);
    mine.push(r);
  }
  f.inject();
  ThreadArgs args[4];
  pthread_t th[4];
  int started = 0;
  for (int t = 0; t < 4; ++t) {
    args[t] = ThreadArgs{&mine, size_t(t) * 250, size_t(t) * 250 + 125, 0, 0, 0};
    if (pthread_create(&th[t], nullptr, thread_under_injection, &args[t]) == 0) ++started;
    else break;
  }
  for (int t = 0; t < started; ++t) pthread_join(th[t], nullptr);
  // Blocks not freed by a thread (those of threads that could not start, and the second
  // halves) are checked and freed here.
  f.lift();
  for (int t = 0; t < started; ++t) {
    cr_assert_eq(args[t].bad, 0, "thread %d under injection: %d bad results", t, args[t].bad);
    cr_log_info("thread %d under injection: %d blocks, %d ENOMEM", t, args[t].ok, args[t].enomem);
  }
  for (int t = 0; t < 4; ++t) {
    size_t from = t < started ? size_t(t) * 250 + 125 : size_t(t) * 250;
    for (size_t i = from; i < size_t(t + 1) * 250; ++i) {
      const Rec& r = mine.v[i];
      cr_assert_eq(check_pattern(r.p, r.n, r.seed), SIZE_MAX, "block %zu damaged", i);
      free(r.p);
    }
  }
  f.finish();
}

// ------------------------------------------------------------------------------------------
// HAKMEM_FAULT_MMAP=N, from start-up: this binary re-executed with the variable set (and
// HAKMEM_FAULT_CHILD=1) runs fault_child() instead of Criterion, for N = 1, 2, 3, ...: every
// prefix of the mapping sequence is cut once. The child allocates through every API and tier
// (and from a second thread), checks each result is a usable block or NULL/ENOMEM, that
// mapping stopped at exactly N-1 calls if anything failed, then turns injection off and checks
// everything works and nothing was damaged. The libstdc++ emergency exception pool may be
// empty when N is small (its start-up malloc failed), so the child uses no throwing new.

[[noreturn]] void child_die(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (k < 0) k = 0;
  if (size_t(k) > sizeof buf - 2) k = int(sizeof buf - 2);
  buf[k++] = '\n';
  if (write(2, buf, size_t(k)) < 0) {}
  _exit(3);
}

struct ChildCounts {
  int ok = 0, enomem = 0;
};

void* child_alloc(int api, size_t n, int& err) {
  void* p = nullptr;
  errno = 0;
  switch (api % 7) {
    case 0: p = malloc(n); break;
    case 1: p = calloc(1, n); break;
    case 2: p = realloc(nullptr, n); break;
    case 3: p = aligned_alloc(64, n); break;
    case 4: {
      int rc = posix_memalign(&p, 4096, n);
      if (rc != 0) {
        errno = rc;
        p = nullptr;
      }
      break;
    }
    case 5: p = memalign(256, n); break;
    default:
      p = ::operator new(n, std::nothrow);
      if (p == nullptr) errno = ENOMEM;
      break;
  }
  err = errno;
  return p;
}

const size_t kChildSizes[] = {16, 24, 200, 4096, 30000, 100 * 1024, 700 * 1024, 4u << 20, kHuge};

// The child touches only the ends of big blocks (it runs ~50 times; page faults dominate).
void child_fill(void* p, size_t n, uint64_t seed) {
  if (n < 65536) return fill_sparse(p, n, seed, 64);
  fill_pattern(p, 256, seed);
  fill_pattern(static_cast<char*>(p) + n - 256, 256, seed);
}
size_t child_check(const void* p, size_t n, uint64_t seed) {
  if (n < 65536) return check_sparse(p, n, seed, 64);
  size_t at = check_pattern(p, 256, seed);
  return at != SIZE_MAX ? at : check_pattern((const char*)p + n - 256, 256, seed);
}

void* child_thread(void* arg) {
  auto* c = static_cast<ChildCounts*>(arg);
  for (int i = 0; i < 40; ++i) {
    size_t n = kChildSizes[i % 9];
    int err;
    void* p = child_alloc(i, n, err);
    if (p == nullptr) {
      if (err != ENOMEM) child_die("thread: api %d size %zu: NULL with errno %d", i % 7, n, err);
      ++c->enomem;
      continue;
    }
    child_fill(p, n, 11);
    if (child_check(p, n, 11) != SIZE_MAX) child_die("thread: block unusable");
    if (i % 7 == 6) ::operator delete(p);
    else free(p);
    ++c->ok;
  }
  return nullptr;
}

int fault_child() {
  const char* env = getenv("HAKMEM_FAULT_MMAP");
  uint64_t nth = env ? strtoull(env, nullptr, 10) : 0;
  RawArray blocks;
  blocks.init(4096);
  if (blocks.v == nullptr) child_die("mmap failed");
  ChildCounts main_c, thread_c;
  for (int i = 0; i < 126; ++i) {
    size_t n = kChildSizes[i % 9];
    int api = i / 9;
    int err;
    void* p = child_alloc(api, n, err);
    if (p == nullptr) {
      if (err != ENOMEM) child_die("N=%llu: api %d size %zu: NULL with errno %d", (unsigned long long)nth, api % 7, n, err);
      ++main_c.enomem;
    } else {
      if (!aligned_to(p, api % 7 == 4 ? 4096 : 16)) child_die("api %d size %zu: misaligned %p", api % 7, n, p);
      if (api % 7 == 1 && !all_zero(p, n < 65536 ? n : 4096)) child_die("calloc(%zu) not zeroed", n);
      child_fill(p, n, uint64_t(i) + 1);
      blocks.push(Rec{p, n, 16, uint64_t(i) + 1, api % 7 == 6 ? kDelete : kFree});
      ++main_c.ok;
    }
    if (i % 10 == 9 && blocks.n > 0) {  // free the oldest live block
      Rec r = blocks.v[0];
      if (child_check(r.p, r.n, r.seed) != SIZE_MAX) child_die("block of %zu damaged before free", r.n);
      release(r);
      blocks.v[0] = blocks.v[--blocks.n];
    }
    if (i == 63) {
      pthread_t t;
      if (pthread_create(&t, nullptr, child_thread, &thread_c) == 0) pthread_join(t, nullptr);
    }
  }
  hak_stats_t st;
  hak_stats_get(&st);
  int failures = main_c.enomem + thread_c.enomem;
  // The region map reservation is call 1 and is never refused.
  uint64_t limit = nth == 0 ? UINT64_MAX : (nth - 1 > 1 ? nth - 1 : 1);
  if (st.mmap_calls > limit) child_die("N=%llu: %llu mappings made", (unsigned long long)nth, (unsigned long long)st.mmap_calls);
  if (failures > 0 && st.mmap_calls != limit)
    child_die("N=%llu: allocations failed but only %llu mappings were made (want %llu)", (unsigned long long)nth,
              (unsigned long long)st.mmap_calls, (unsigned long long)limit);
  hak::os_fault_injection_set(0);
  for (size_t i = 0; i < blocks.n; ++i) {
    const Rec& r = blocks.v[i];
    if (child_check(r.p, r.n, r.seed) != SIZE_MAX) child_die("block of %zu bytes damaged", r.n);
  }
  for (size_t n : kChildSizes) {
    for (int api = 0; api < 7; ++api) {
      int err;
      void* p = child_alloc(api, n, err);
      if (p == nullptr) child_die("N=%llu, injection off: api %d size %zu failed (errno %d)", (unsigned long long)nth, api, n, err);
      child_fill(p, n, 5);
      if (api == 6) ::operator delete(p);
      else free(p);
    }
  }
  for (size_t i = 0; i < blocks.n; ++i) release(blocks.v[i]);
  if (!hak::tiny_heap_is_valid() || !hak::shared_pool_is_valid() || !hak::arena_is_valid()) child_die("invariants broken");
  printf("N=%llu ok=%d enomem=%d mmap_calls=%llu\n", (unsigned long long)nth, main_c.ok + thread_c.ok, failures,
         (unsigned long long)st.mmap_calls);
  fflush(stdout);
  return 0;
}

__attribute__((constructor(101))) void fault_child_entry() {
  const char* c = getenv("HAKMEM_FAULT_CHILD");
  if (c != nullptr && *c == '1') _exit(fault_child());
}

// Runs the child with HAKMEM_FAULT_MMAP=nth; returns its exit status (-1: timeout), and its
// report line in `out`.
int run_child(uint64_t nth, char* out, size_t out_len) {
  size_t nenv = 0;
  while (environ[nenv]) ++nenv;
  char** envp = static_cast<char**>(calloc(nenv + 3, sizeof(char*)));
  size_t k = 0;
  for (size_t i = 0; i < nenv; ++i) {
    if (strncmp(environ[i], "HAKMEM_FAULT_", 13) != 0) envp[k++] = environ[i];
  }
  char var[64];
  snprintf(var, sizeof var, "HAKMEM_FAULT_MMAP=%llu", (unsigned long long)nth);
  envp[k++] = var;
  envp[k++] = const_cast<char*>("HAKMEM_FAULT_CHILD=1");
  envp[k] = nullptr;
  int pipefd[2];
  if (pipe(pipefd) != 0) return -2;
  char exe[] = "/proc/self/exe";
  char* argv[] = {exe, nullptr};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 1);
    close(pipefd[0]);
    close(pipefd[1]);
    execve("/proc/self/exe", argv, envp);
    _exit(127);
  }
  free(envp);
  close(pipefd[1]);
  fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
  size_t got = 0;
  int status = 0;
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    ssize_t r = read(pipefd[0], out + got, out_len - 1 - got);
    if (r > 0) got += size_t(r);
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - t0.tv_sec > 30) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      close(pipefd[0]);
      return -1;
    }
    usleep(1000);
  }
  for (;;) {
    ssize_t r = read(pipefd[0], out + got, out_len - 1 - got);
    if (r <= 0) break;
    got += size_t(r);
  }
  out[got] = 0;
  close(pipefd[0]);
  return status;
}

Test(faults, env_sweep_every_nth_mapping, .timeout = 300) {
  if constexpr (!hak::kDebug) cr_skip_test("fault injection exists in the debug variant only");
  char out[512];
  // N = 0: injection off; the workload's mapping count bounds the sweep.
  int st = run_child(0, out, sizeof out);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child without injection: status %d", st);
  unsigned long long total = 0;
  int ok = 0, enomem = 0;
  cr_assert(sscanf(strstr(out, "mmap_calls=") ? strstr(out, "ok=") : "", "ok=%d enomem=%d mmap_calls=%llu", &ok, &enomem,
                   &total) == 3,
            "child report unreadable: %s", out);
  cr_assert_eq(enomem, 0, "allocations failed without injection: %s", out);
  unsigned long long last = total + 2;
  int with_failures = 0;
  for (unsigned long long n = 1; n <= last; ++n) {
    st = run_child(n, out, sizeof out);
    cr_assert(st != -1, "HAKMEM_FAULT_MMAP=%llu: child hung (killed after 30 s)", n);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "HAKMEM_FAULT_MMAP=%llu: child %s %d (see its stderr above)", n,
              WIFSIGNALED(st) ? "killed by signal" : "exited with", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    const char* rep = strstr(out, "ok=");
    cr_assert(rep && sscanf(rep, "ok=%d enomem=%d", &ok, &enomem) == 2, "N=%llu: report unreadable: %s", n, out);
    if (n <= 2) cr_assert_gt(enomem, 0, "HAKMEM_FAULT_MMAP=%llu: nothing failed although no mapping was allowed", n);
    if (enomem > 0) ++with_failures;
  }
  cr_log_info("HAKMEM_FAULT_MMAP=1..%llu (the workload makes %llu mappings): allocations failed cleanly in %d runs",
              last, total, with_failures);
}

}  // namespace
