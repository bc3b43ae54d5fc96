// hakmem.cpp — the API: every exported C and C++ allocation function, and hak_init.
//
// Call tree (fast paths inline, everything rare behind one cold call):
//   malloc(n) → hak_alloc_impl
//     n ≤ 32 KiB : tiny_alloc_fast(size_to_class(n))     [tiny_alloc_fast.inc.h]
//                  miss → tiny_alloc_miss → hak_init (once) → tiny_refill [tiny_heap.cpp]
//     larger     : span_alloc → arena_alloc (≤ 1 MiB spans) [page_arena.cpp]
//                              → large_alloc (mappings)     [large.cpp]
//   free(p)   → hak_free_impl                               [hak_free_api.inc.h]
// Everything else (calloc, realloc, the aligned functions, operator new/delete) is built on
// these. Like all of core/ it is compiled without exceptions but with unwind tables, so the
// std::bad_alloc that operator new raises through libstdc++ unwinds through its frames, and the
// library needs no C++ runtime.
// Debug variant: every block handed out is announced to valgrind's memcheck here (vg_alloc),
// every block freed in hak_free_impl (valgrind_support.h).
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#include <atomic>
#include <new>

#include "canary.h"
#include "decay.h"
#include "decay_thread.h"
#include "diag.h"
#include "fork_locks.h"
#include "guarded.h"
#include "hakmem.h"
#include "hakmem_build_flags.h"
#include "large.h"
#include "new_kind.h"
#include "os.h"
#include "page_arena.h"
#include "prof.h"
#include "region_map.h"
#include "seed_heap.h"
#include "shared_pool.h"
#include "size_class.h"
#include "span.h"
#include "span_cache.h"
#include "stats.h"
#include "options.h"
#include "superslab.h"
#include "tiny_heap.h"
#include "valgrind_support.h"

extern "C" {
void __libc_free(void*);
void* __libc_realloc(void*, size_t);
}

// The C++ runtime pieces operator new needs, reached through weak references: a C program
// never loads libstdc++, and the library depends on libc alone.
std::new_handler hak_cxx_get_new_handler() noexcept __asm__("_ZSt15get_new_handlerv") __attribute__((weak));
[[noreturn]] void hak_cxx_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv") __attribute__((weak));

namespace hak {

#define HAK_IN_HAKMEM_CPP 1
#include "tiny_alloc_fast.inc.h"
#include "tiny_free_fast_v2.inc.h"
#include "hak_free_api.inc.h"

namespace {

// ---------------------------------------------------------------------------------------
// Initialisation: lazily, on the first slow path of any thread; safe as the first call of
// the process (before main, inside other libraries' constructors).
std::atomic<int> g_init_state{0};  // 0 not started, 1 running, 2 done
pid_t g_init_pid = 0;              // the process that initialised hakmem (a fork child's differs)

// fork() in a process with one thread (a shell, make) takes no lock: no other thread can hold
// one or be half-way through a change, and each lock written after the fork costs the parent
// and the child a copy-on-write fault on its page (fork_locks.h). glibc's malloc skips its
// own locks the same way. Set before the fork, read after it; stored only when it changes
// (after a fork the page is the parent's and the child's: a store would copy it).
bool g_fork_unlocked = false;

void fork_prepare() {
  const bool single = __libc_single_threaded != 0;
  if (g_fork_unlocked != single) g_fork_unlocked = single;
  if (g_fork_unlocked) return;
  tiny_lock();
  shared_pool_lock();
  arena_lock();
  large_lock();
  guarded_lock();
  prof_lock();
  seed_lock();
}
void fork_parent() {
  if (g_fork_unlocked) return;
  seed_unlock();
  prof_unlock();
  guarded_unlock();
  large_unlock();
  arena_unlock();
  shared_pool_unlock();
  tiny_unlock();
}
void fork_child() {
  decay_thread_reinit_after_fork();  // the child has no decay thread, whatever the parent had
  if (g_fork_unlocked) return;
  seed_reinit_after_fork();
  prof_reinit_after_fork();
  guarded_reinit_after_fork();
  large_reinit_after_fork();
  arena_reinit_after_fork();
  shared_pool_reinit_after_fork();
  tiny_reinit_after_fork();
}

HAK_SLOW_PATH void hak_init_slow() {
  int expect = 0;
  if (g_init_state.compare_exchange_strong(expect, 1, std::memory_order_acq_rel)) {
    os_init();
    fork_locks_prefault();
    g_init_pid = getpid();
    link_key_init();  // before the first block is linked
    options_init();
    if (options().stats) os_stderr_keep();  // the table at exit reaches stderr even if the program closed it
    static_assert(offsetof(detail::Tables, start_lim) == offsetof(detail::Tables, start_mul) + 256 * sizeof(uint64_t) &&
                  kStartTablesBytes <= kRegionFrontBytes, "free's constants: one contiguous copy in the map's front page");
    if (!region_map_init(detail::kTables.start_mul, kStartTablesBytes)) hak_fatal("cannot reserve the region map");
    tiny_init_thread_key();
    decay_thread_set_worker(decay_background, options().decay_thread);
    // Guarded sampling: memcheck tracks the heap itself (and the pool's protections would
    // only confuse it).
    if (options().guard != 0 && !(kValgrind && vg_running()) && guarded_init(options().guard) && !kGuardInline)
      alloc_tables_sample_upto(kSmallMax + kCanaryTail);  // every class: the tables see n + kCanaryTail
    // The heap profiler (off under memcheck, like the guarded pool).
    if (!(kValgrind && vg_running())) prof_init(g_init_pid);
    g_init_state.store(2, std::memory_order_release);
    pthread_atfork(fork_prepare, fork_parent, fork_child);  // may allocate: we are ready
    if (options().verbose) options_print();
    return;
  }
  while (g_init_state.load(std::memory_order_acquire) != 2) sched_yield();
}

HAK_FAST_PATH void ensure_init() {
  if (HAK_UNLIKELY(g_init_state.load(std::memory_order_acquire) != 2)) hak_init_slow();
}

constexpr size_t kMaxRequest = size_t(PTRDIFF_MAX);
constexpr size_t kMaxAlign = size_t(1) << 30;

HAK_SLOW_PATH void* fail_nomem() {
  errno = ENOMEM;
  return nullptr;
}

// ---------------------------------------------------------------------------------------
// Spans: everything above 32 KiB, aligned requests no size class can serve, and the blocks
// the heap profiler samples (`sampled`: the span starts with the sample's record, prof.h).
HAK_SLOW_PATH void* span_alloc_as(size_t n, size_t align, bool zero, bool sampled) {
  ensure_init();
  if (n > kMaxRequest || align > kMaxAlign) return fail_nomem();
  if (n == 0) n = 1;  // the block must lie inside its span (aligned_alloc(2 MiB, 0))
  // Large blocks always leave room for the heap profiler's record before their header, so that
  // realloc can sample or unsample one where it stands (hak_realloc_impl): 48 bytes of a mapping
  // of more than 1 MiB.
  size_t min_lead = sampled ? kProfLead : 16;
  size_t lead = align <= min_lead ? min_lead : sampled ? align + min_lead : align;
  size_t total = n + lead;
  if (total > kArenaMaxSpan && min_lead < kProfLead) {
    min_lead = kProfLead;
    lead = align <= min_lead ? min_lead : align + min_lead;
    total = n + lead;
  }
  bool fresh = false;
  char* start;
  size_t bytes;
  if (total <= kArenaMaxSpan) {
    bytes = (total + kArenaPage - 1) & ~(kArenaPage - 1);
    size_t got = 0;
    start = static_cast<char*>(span_cache_take(bytes, &got));  // this thread's recent frees first
    if (start != nullptr) bytes = got;
    else start = static_cast<char*>(arena_alloc(bytes, &fresh));
  } else {
    if (total > kMaxRequest) return fail_nomem();
    bytes = (total + kLargeAlign - 1) & ~(kLargeAlign - 1);
    start = static_cast<char*>(large_alloc(bytes, &fresh));
  }
  if (start == nullptr) return fail_nomem();
  char* block = align <= min_lead ? start + min_lead
                                  : reinterpret_cast<char*>((uintptr_t(start) + min_lead + align - 1) & ~(uintptr_t(align) - 1));
  SpanHeader* h = span_header_of(block);
  if constexpr (kValgrind) {
    // The span may hold earlier blocks, NOACCESS to memcheck: all of it is, but its header.
    vg_noaccess(start, bytes);
    vg_undefined(h, sizeof(SpanHeader));
  }
  h->magic = sampled ? kSpanMagicSampled : kSpanMagicLive;
  h->offset = uint32_t(block - start);
  h->array = 0;
  h->span_bytes = bytes;
  if (zero && !fresh) {
    if constexpr (kValgrind) vg_undefined(block, n);
    memset(block, 0, n);
  }
  if (sampled) prof_record_alloc(start, block, n, align);
  decay_tick();
  return block;
}

// The heap profiler's count ran out: whether this allocation of n bytes is sampled (the first
// allocation of the process may be: initialisation comes first).
HAK_SLOW_PATH bool prof_take_sample(size_t n) {
  ensure_init();
  int64_t gap;
  bool sample = prof_sample_now(n, kProfThreadCounter, &gap);
  t_prof_left = gap;
  return sample;
}

// A span for a request of n bytes, counted by the heap profiler (out of line: malloc's fast
// path only jumps here, and needs no stack frame).
HAK_SLOW_PATH void* span_alloc(size_t n, size_t align, bool zero) {
  const bool prof_sample = prof_countdown(n) && prof_take_sample(n);
  // Guarded sampling takes spans up to kGuardSpanMax here (its countdown, on this slow path),
  // unless the heap profiler samples this one (as for small blocks: tiny_alloc_counted).
  if (HAK_UNLIKELY(guarded_rate() != 0) && !prof_sample && n <= kGuardSpanMax && align <= 4096 &&
      guarded_should_sample()) {
    if (void* p = guarded_alloc(n, align)) {
      if (zero) memset(p, 0, n);  // a span slot's pages were given back at its last free
      return p;
    }
  }
  return span_alloc_as(n, align, zero, prof_sample);
}

}  // namespace

// A pointer the region map does not know: is it a block of glibc's malloc (allocated through
// __libc_malloc, or before hakmem was interposed)? Reads the chunk header glibc keeps before
// it (without faulting on a wild address) and checks it against where glibc puts chunks:
// the main arena's brk heap, a mapping of its own (IS_MMAPPED), or a 64 MiB-aligned heap of
// another arena (NON_MAIN_ARENA) whose heap_info names a readable arena. Rare path.
bool glibc_owns(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if ((a & 15) != 0 || a < 4096) return false;  // glibc's chunks are 16-byte aligned on x86-64
  uintptr_t hdr[2];                             // prev_size, size | flags
  if (!os_read_safely(reinterpret_cast<const void*>(a - 16), hdr, sizeof hdr)) return false;
  uintptr_t size = hdr[1] & ~uintptr_t(7);
  if (size < 32 || (size & 15) != 0 || size > kMaxRequest) return false;
  if (hdr[1] & 2) {  // IS_MMAPPED
    uintptr_t page = os_page_size();
    return ((a - 16 - hdr[0]) & (page - 1)) == 0 && ((size + hdr[0]) & (page - 1)) == 0;
  }
  if (hdr[1] & 4) {  // NON_MAIN_ARENA: heap_info {arena, prev, size, ...} at the heap's start
    constexpr uintptr_t kHeapMax = uintptr_t(64) << 20;
    uintptr_t heap = a & ~(kHeapMax - 1), info[3], arena;
    return os_read_safely(reinterpret_cast<const void*>(heap), info, sizeof info) &&
           info[2] <= kHeapMax && a - 16 + size <= heap + info[2] &&
           os_read_safely(reinterpret_cast<const void*>(info[0]), &arena, sizeof arena);
  }
  uintptr_t lo, hi;
  return os_brk_heap(&lo, &hi) && a - 16 >= lo && a - 16 + size <= hi;
}

HAK_SLOW_PATH void* tiny_alloc_miss(int cls, bool may_borrow) {
  ensure_init();
  // Release: a class's first blocks (up to 4 KiB) come packed from the seed (seed_heap.h); not for an
  // aligned request (may_borrow false: the class was chosen for its alignment).
  if (may_borrow && seed_serves(cls))
    if (void* p = seed_alloc(cls)) return p;
  void* p = tiny_refill(cls, may_borrow);
  if constexpr (kDebug) {
    if (p != nullptr) tiny_debug_check_alloc(p, region_map_lookup(p));  // maybe a larger class
  }
  return p;
}

// A miss of malloc's path (tiny_alloc_sized). Class 0: guarded sampling is on and n may be
// sampled (release, debug), or the fast path's countdown ran out (secure): a guarded block,
// or the class's own. Before initialisation the tables were not set yet: the first malloc of
// the process may be sampled too.
// Secure variant: block p, if it is a Tiny/Mid block, holds n bytes for the program from now
// on: its canary and size record go after them (canary.h). The block's own class (the region
// map's): a refill may hand out a block of a slightly larger class.
HAK_FAST_PATH void* canary_armed(void* p, size_t n) {
  if constexpr (kCanary) {
    uint8_t id = region_map_lookup(p);
    if (HAK_LIKELY(is_class_id(id))) canary_arm(p, class_to_size(id), n);
  }
  return p;
}

HAK_SLOW_PATH void* tiny_alloc_miss_sized_raw(size_t n, int cls);

HAK_SLOW_PATH void* tiny_alloc_miss_sized(size_t n, int cls) {
  if constexpr (kCanary) return canary_armed(tiny_alloc_miss_sized_raw(n, cls), n);
  return tiny_alloc_miss_sized_raw(n, cls);
}

// The same, from malloc's fast path: the class from n again, from the same tables (they change
// between the two reads only while another thread initialises, when guarded sampling may
// start sending n to class 0: a class or 0, either is a correct miss).
HAK_SLOW_PATH void* tiny_alloc_miss_n(size_t n) { return tiny_alloc_miss_sized(n, size_to_class_alloc(n + kCanaryTail)); }

// tiny_alloc_miss_sized without the canary.
HAK_SLOW_PATH void* tiny_alloc_miss_sized_raw(size_t n, int cls) {
  // Release: a block the last refill reserved (tiny_heap.h, TlsBump), before anything else
  // (class 0 never has one). Out of malloc's inline path, whose hit it would lengthen.
  if constexpr (kBumpCarve) {
    if (void* p = tiny_bump_take(cls)) return p;
  }
  if (HAK_LIKELY(cls != 0 && g_init_state.load(std::memory_order_acquire) == 2)) return tiny_alloc_miss(cls, true);
  ensure_init();
  bool sample;
  if constexpr (kGuardInline) sample = cls == 0 && guarded_countdown_expired();
  else sample = size_to_class_alloc(n + kCanaryTail) == 0 && guarded_should_sample();
  if (sample)  // n ≤ kSmallMax: a small slot up to kGuardMaxSize, a span slot above
    if (void* p = guarded_alloc(n, 16)) return p;
  return tiny_alloc_fast(size_to_class(n + kCanaryTail));
}

// malloc's path found the class's heap-profiler count run out (tiny_alloc_sized): a sampled
// block is a span of its own; otherwise the class's block as usual.
HAK_SLOW_PATH void* tiny_alloc_prof(size_t n, int cls) {
  const bool was_ready = g_init_state.load(std::memory_order_acquire) == 2;
  ensure_init();
  int64_t gap;
  bool sample = prof_sample_now(n, uint32_t(cls), &gap);
  t_prof_class_left[cls] = int32_t(gap);
  TlsCache tc = t_cache[cls];
  if (sample)
    if (void* p = span_alloc_as(n, 16, false, true)) return p;
  // The process's first malloc chose its class before initialisation set the tables (guarded
  // sampling may send it to class 0): tiny_alloc_miss_sized's first-malloc path decides.
  if (HAK_UNLIKELY(!was_ready)) return tiny_alloc_miss_sized(n, 0);
  if (HAK_LIKELY(tc.head != nullptr)) {
    void* p = tiny_cache_pop(tc, cls);
    if constexpr (kDebug) tiny_debug_check_alloc(p, cls);
    if constexpr (kCanary) canary_arm(p, class_to_size(cls), n);
    return p;
  }
  return tiny_alloc_miss_sized(n, cls);
}

// ---------------------------------------------------------------------------------------
// The bytes the program may use in block p; op names the call in a report (a secure-variant
// canary found overwritten, an invalid pointer).
size_t hak_usable_size_impl(const void* p, const char* op = "malloc_usable_size");

// Debug variant under valgrind: block p (n bytes asked for) goes to the program. memcheck
// gets it as a heap block of n bytes (defined if zeroed), and the rest of its usable size
// NOACCESS. Called after the block left its list, never before.
HAK_FAST_PATH void vg_alloc(void* p, size_t n, bool zeroed) {
  if (p != nullptr && vg_running()) {
    size_t usable = hak_usable_size_impl(p);
    vg_malloclike(p, n, zeroed);
    if (usable > n) vg_noaccess(static_cast<char*>(p) + n, usable - n);
  }
}

// The block for n bytes, not announced to memcheck yet.
// Above alloc_direct_max(): spans, and every request while the heap profiler counts, which
// takes the counted path inline (a call to it cost Larson and random_mixed a few per cent
// more with the profiler on).
HAK_FAST_PATH void* alloc_block(size_t n) {
  if (HAK_LIKELY(n <= alloc_direct_max())) return tiny_alloc_sized(n);  // secure: armed there
  if (n <= kSmallMax) return tiny_alloc_counted(n);
  return span_alloc(n, 16, false);
}

HAK_FAST_PATH void* hak_alloc_impl(size_t n) {
  void* p = alloc_block(n);
  if constexpr (kValgrind) vg_alloc(p, n, false);
  return p;
}

// Alignment is a power of two here.
HAK_FAST_PATH void* aligned_block(size_t align, size_t n) {
  if (align <= 16) return alloc_block(n < 16 && align == 16 ? 16 : n);
  if (prof_countdown(n) && prof_take_sample(n)) return span_alloc_as(n, align, false, true);
  if (HAK_UNLIKELY(guarded_rate() != 0) && align <= 4096 && n <= kGuardSpanMax && guarded_should_sample())
    if (void* p = guarded_alloc(n, align)) return p;
  if (align <= 4096 && n <= kMidMax - kCanaryTail) {
    size_t m = n + kCanaryTail < align ? align : n + kCanaryTail;
    if (m <= kMidMax) {
      // A class whose size is a multiple of the alignment: slabs start on 4 KiB boundaries,
      // so every block of it is aligned.
      for (int cls = size_to_class(m); cls <= kNumClasses; ++cls) {
        if (class_to_size(cls) % align == 0) return canary_armed(tiny_alloc_fast(cls, false), n);
      }
    }
  }
  return span_alloc(n, align, false);
}

void* hak_alloc_aligned(size_t align, size_t n) {
  void* p = aligned_block(align, n);
  if constexpr (kValgrind) vg_alloc(p, n, false);
  return p;
}

size_t hak_usable_size_impl(const void* p, const char* op) {
  uint8_t id = region_map_lookup(p);
  if (HAK_LIKELY(is_class_id(id))) {
    // Secure and debug: the bytes asked for, the canary checked (canary.h). A block holding
    // the free-block key is looked for first (tiny_suspect_check: a freed block is reported,
    // whether or not the free left its canary whole).
    if constexpr (kCanary) {
      if (canary_on()) {
        if (key_held_live(p)) tiny_suspect_check(const_cast<void*>(p), id, op);
        size_t n;
        if (HAK_UNLIKELY(!canary_intact(p, class_to_size(id), &n))) tiny_canary_failed(const_cast<void*>(p), id, op);
        return n;
      }
    }
    return class_to_size(id);
  }
  if (p == nullptr) return 0;
  if (id == kRegionSpan) {
    SpanHeader* h = span_header_of(p);
    if (!span_is_live(h)) hak_fatal("malloc_usable_size(%p): invalid pointer", p);
    return span_usable(h);
  }
  if (id == kRegionGuarded) return guarded_usable(p, "malloc_usable_size");
  if (id == kRegionSeed) return seed_usable(p, op);
  if (id == kRegionFreeSlab || id == kRegionLargeFree) hak_fatal("malloc_usable_size(%p): invalid pointer", p);
  if (!glibc_owns(p)) hak_fatal("malloc_usable_size(%p): invalid pointer (not from malloc)", p);
  // glibc's chunk header: size field with flag bits; mmapped chunks carry 16 bytes overhead.
  size_t field = static_cast<const size_t*>(p)[-1];
  size_t chunk = field & ~size_t(7);
  return (field & 2) ? chunk - 16 : chunk - 8;
}

// Debug variant under valgrind: realloc keeps block p; memcheck's size for it goes from
// `have` to n bytes.
HAK_FAST_PATH void vg_realloc_in_place(void* p, size_t have, size_t n) {
  if (have != n && vg_running()) vg_resizeinplace(p, have, n);
}

// realloc of a Large block to a Large size, without a copy: grown in place (free memory after
// it), else its pages moved (mremap) to a free extent or a new mapping; shrunk by giving the
// tail back. nullptr: not done this way (the caller copies; errno untouched), or n too big.
// Under memcheck the pages must not move behind valgrind's back: growth in place only.
void* large_realloc(void* p, size_t n) {
  SpanHeader* h = span_header_of(p);
  size_t bytes = size_t(h->span_bytes);
  char* start = static_cast<char*>(p) - h->offset;
  if (n > kMaxRequest - h->offset - kLargeAlign) return nullptr;
  size_t need = (h->offset + n + kLargeAlign - 1) & ~(kLargeAlign - 1);
  if (need == bytes) {
    if constexpr (kValgrind) vg_realloc_in_place(p, vg_block_size(p, bytes - h->offset), n);
    return p;
  }
  if (need < bytes) {
    if (kValgrind && vg_running()) return nullptr;
    large_shrink(start, bytes, need);
    h->span_bytes = need;
    return p;
  }
  if (large_grow_in_place(start, bytes, need)) {
    h->span_bytes = need;
    if constexpr (kValgrind) vg_realloc_in_place(p, vg_block_size(p, bytes - h->offset), n);
    return p;
  }
  if (kValgrind && vg_running()) return nullptr;
  size_t offset = h->offset;  // h moves with the old pages
  char* moved = static_cast<char*>(large_move(start, bytes, need));
  if (moved == nullptr) return nullptr;
  char* q = moved + offset;
  span_header_of(q)->span_bytes = need;
  return q;
}

void* hak_realloc_impl(void* p, size_t n) {
  if (p == nullptr) return hak_alloc_impl(n);
  if (n == 0) {
    hak_free_impl(p);
    return nullptr;
  }
  uint8_t id = region_map_lookup(p);
  if (id == kRegionNone) {  // glibc's block stays glibc's
    if (!glibc_owns(p)) hak_fatal("realloc(%p): invalid pointer (not from malloc: in neither hakmem's nor glibc's heap)", p);
    return __libc_realloc(p, n);
  }
  if (id == kRegionGuarded) {
    size_t have = guarded_usable(p, "realloc");  // reports a freed or interior pointer
    void* q = hak_alloc_impl(n);
    if (q == nullptr) return nullptr;
    memcpy(q, p, n < have ? n : have);
    guarded_free(p);
    return q;
  }
  if (id == kRegionSpan && !span_is_live(span_header_of(p)))
    hak_fatal("realloc(%p): invalid pointer (a freed span block, or not the start of one)", p);
  if (id == kRegionSpan && span_header_of(p)->magic == kSpanMagicSampled &&
      !(span_header_of(p)->span_bytes > kArenaMaxSpan && n > kArenaMaxSpan)) {
    // A sampled span block is not resized where it is (spans below Large never are): a new
    // block (sampled or not), a copy, and the free that retires the sample.
    size_t have = span_usable(span_header_of(p));
    if constexpr (kValgrind) have = vg_block_size(p, have);
    void* q = hak_alloc_impl(n);
    if (q == nullptr) return nullptr;
    memcpy(q, p, n < have ? n : have);
    hak_free_impl(p);
    return q;
  }
  if (id == kRegionSeed) seed_usable(p, "realloc");  // reports a freed or interior pointer
  if (id == kRegionFreeSlab) hak_fatal("realloc(%p): invalid pointer (inside a hakmem SuperSlab but in no live slab)", p);
  if (id == kRegionLargeFree) hak_fatal("realloc(%p): invalid pointer (in freed Large memory; freed already?)", p);
  if (is_class_id(id) && run_block_index(slab_of_block(p), p) == UINT32_MAX) {
    // Named as free names it: unaligned, in the SuperSlab header, past the run's last block,
    // inside a block (tiny_suspect_check reports each and does not return for them).
    tiny_suspect_check(p, id, "realloc");
    hak_fatal("realloc(%p): invalid pointer (inside a %zu-byte block of size class %d, not at its start)", p,
              class_to_size(id), int(id));
  }
  // A freed block (its free-block key: free_link.h) is reported here, as free reports it.
  if (is_class_id(id) && key_held_live(p)) tiny_suspect_check(p, id, "realloc");
  size_t old = hak_usable_size_impl(p, "realloc");
  // What the program may read: under memcheck, the size the block was announced with.
  size_t have = old;
  if constexpr (kValgrind) have = vg_block_size(p, old);
  if (id == kRegionSpan && span_header_of(p)->span_bytes > kArenaMaxSpan && n > kArenaMaxSpan) {
    // Large to Large, in place or by moving pages. For the heap profiler it is a new allocation
    // of n bytes: counted, sampled or not afresh (the old sample retired first: its record
    // moves with the pages).
    SpanHeader* h = span_header_of(p);
    const size_t offset = h->offset;
    bool sample = prof_countdown(n) && prof_take_sample(n) && offset >= kProfLead;
    if (h->magic == kSpanMagicSampled) {
      prof_record_free(static_cast<char*>(p) - offset);
      h->magic = kSpanMagicLive;
    }
    void* q = large_realloc(p, n);
    if (q != nullptr) {
      if (sample) {
        span_header_of(q)->magic = kSpanMagicSampled;
        prof_record_alloc(static_cast<char*>(q) - offset, q, n, n);
      }
      return q;
    }
  }
  // Keep the block when the new size fits and wastes at most half of it.
  if (n <= old && n >= old / 2) {
    if constexpr (kValgrind) vg_realloc_in_place(p, have, n);
    if constexpr (kCanary) canary_armed(p, n);  // the canary moves to the new end
    return p;
  }
  if (id == kRegionSpan && n <= old && old - n < 64 * 1024) {
    if constexpr (kValgrind) vg_realloc_in_place(p, have, n);
    return p;
  }
  void* q = hak_alloc_impl(n);  // announced before the copy: memcheck copies the V bits
  if (q == nullptr) return nullptr;  // errno set; p untouched
  memcpy(q, p, n < have ? n : have);
  hak_free_impl(p);
  return q;
}

void* hak_calloc_impl(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  if (total <= kSmallMax) {
    void* p = alloc_block(total);  // a class's block (or a sampled span)
    if (p != nullptr) {
      if constexpr (kValgrind) vg_alloc(p, total, true);
      memset(p, 0, total);  // [0, total): the canary after it stays (tiny_alloc_sized armed it)
    }
    return p;
  }
  void* p = span_alloc(total, 16, true);
  if constexpr (kValgrind) vg_alloc(p, total, true);
  return p;
}

// malloc_usable_size: under memcheck, the size the block was asked for (as with memcheck's
// own malloc), so a program that uses all of it stays within what memcheck allows.
HAK_FAST_PATH size_t usable_size_api(const void* p) {
  size_t u = hak_usable_size_impl(p);
  if constexpr (kValgrind) {
    if (u != 0 && region_map_lookup(p) != kRegionNone) u = vg_block_size(p, u);
  }
  return u;
}

bool hak_trim_impl() {
  ensure_init();
  bool released = tiny_trim_current_thread();
  released |= span_cache_flush();
  released |= tiny_trim_cached_heaps();
  released |= shared_pool_trim();
  released |= arena_trim();
  released |= large_trim();
  return released;
}

// ---------------------------------------------------------------------------------------
// C++ operator new: on failure call the installed new_handler and retry; throw
// std::bad_alloc when there is none (nothrow forms return nullptr).
HAK_SLOW_PATH void* cxx_new_slow(size_t n, size_t align, bool nothrow) {
  for (;;) {
    void* p = align != 0 ? hak_alloc_aligned(align, n) : hak_alloc_impl(n);
    if (p != nullptr) return p;
    std::new_handler handler = hak_cxx_get_new_handler ? hak_cxx_get_new_handler() : nullptr;
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      if (hak_cxx_throw_bad_alloc) hak_cxx_throw_bad_alloc();
      hak_fatal("operator new(%zu): out of memory, and no C++ runtime to throw std::bad_alloc", n);
    }
    handler();
  }
}

HAK_FAST_PATH void* cxx_new(size_t n) {
  void* p = hak_alloc_impl(n);
  if (HAK_LIKELY(p != nullptr)) return p;
  return cxx_new_slow(n, 0, false);
}
HAK_FAST_PATH void* cxx_new_aligned(size_t n, std::align_val_t al, bool nothrow) {
  size_t a = size_t(al);
  if (HAK_UNLIKELY(a == 0 || (a & (a - 1)) != 0)) {
    if (nothrow) return nullptr;
    return cxx_new_slow(size_t(-1), 0, false);  // invalid alignment: behaves as out of memory
  }
  void* p = hak_alloc_aligned(a, n);
  if (HAK_LIKELY(p != nullptr)) return p;
  return cxx_new_slow(n, a, nothrow);
}

}  // namespace hak

using namespace hak;

// ---------------------------------------------------------------------------------------
// The C API.
HAK_EXPORT HAK_HOT_ENTRY void* malloc(size_t n) noexcept { return hak_alloc_impl(n); }
HAK_EXPORT HAK_HOT_ENTRY void free(void* p) noexcept { hak_free_impl(p); }
HAK_EXPORT void* calloc(size_t count, size_t size) noexcept { return hak_calloc_impl(count, size); }
HAK_EXPORT void* realloc(void* p, size_t n) noexcept { return hak_realloc_impl(p, n); }

HAK_EXPORT void* reallocarray(void* p, size_t count, size_t size) noexcept {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return hak_realloc_impl(p, total);
}

HAK_EXPORT int posix_memalign(void** out, size_t align, size_t n) noexcept {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = hak_alloc_aligned(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

HAK_EXPORT void* aligned_alloc(size_t align, size_t n) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return hak_alloc_aligned(align, n);
}

HAK_EXPORT void* memalign(size_t align, size_t n) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return hak_alloc_aligned(align, n);
}

HAK_EXPORT void* valloc(size_t n) noexcept {
  ensure_init();
  return hak_alloc_aligned(os_page_size(), n);
}

HAK_EXPORT void* pvalloc(size_t n) noexcept {
  ensure_init();
  size_t page = os_page_size();
  size_t rounded;
  if (__builtin_add_overflow(n, page - 1, &rounded)) {
    errno = ENOMEM;
    return nullptr;
  }
  rounded &= ~(page - 1);
  return hak_alloc_aligned(page, rounded ? rounded : page);
}

HAK_EXPORT size_t malloc_usable_size(void* p) noexcept { return usable_size_api(p); }
HAK_EXPORT int malloc_trim(size_t) noexcept { return hak_trim_impl() ? 1 : 0; }

// glibc's fields, filled with hakmem's figures: arena = SuperSlabs + page arena + seed heap mapped,
// hblks/hblkhd = Large mappings, uordblks = bytes in blocks out of their slabs/spans (in use
// or in thread caches), fordblks = the rest of arena, keepcost = Large cache.
HAK_EXPORT struct mallinfo2 mallinfo2() noexcept {
  ensure_init();
  hak_stats_t st;
  stats_collect(&st);
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof(mi));
  mi.arena = size_t(st.tiny_mapped_bytes + st.arena_mapped_bytes + st.seed_mapped_bytes);
  mi.ordblks = size_t(st.slabs_in_use + st.arena_chunks);
  mi.hblks = size_t(st.large_live);
  mi.hblkhd = size_t(st.large_live_bytes);
  mi.uordblks = size_t(st.tiny_in_use_bytes + st.mid_in_use_bytes + st.arena_used_bytes);
  mi.fordblks = mi.arena > mi.uordblks ? mi.arena - mi.uordblks : 0;
  mi.usmblks = size_t(st.peak_mapped_bytes);
  mi.keepcost = size_t(st.large_cached_bytes);
  return mi;
}

HAK_EXPORT struct mallinfo mallinfo() noexcept {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;
  auto clamp = [](size_t v) { return int(v > size_t(INT32_MAX) ? INT32_MAX : v); };
  mi.arena = clamp(m2.arena);
  mi.ordblks = clamp(m2.ordblks);
  mi.smblks = 0;
  mi.hblks = clamp(m2.hblks);
  mi.hblkhd = clamp(m2.hblkhd);
  mi.usmblks = 0;
  mi.fsmblks = 0;
  mi.uordblks = clamp(m2.uordblks);
  mi.fordblks = clamp(m2.fordblks);
  mi.keepcost = clamp(m2.keepcost);
  return mi;
}

HAK_EXPORT void malloc_stats() noexcept { hak_stats_print(); }

// glibc's XML form. Written with write(2) to the stream's file descriptor after flushing it
// (stdio may allocate, and the allocator calls nothing that may); a stream without a file
// descriptor (open_memstream, fmemopen) gets EBADF.
HAK_EXPORT int malloc_info(int opts, FILE* fp) noexcept {
  if (opts != 0) {
    errno = EINVAL;
    return -1;
  }
  int fd = fp != nullptr ? fileno(fp) : -1;
  if (fd < 0) {
    errno = EBADF;
    return -1;
  }
  ensure_init();
  fflush(fp);
  stats_write_xml(
      [](const char* line, void* ctx) {
        int out = *static_cast<int*>(ctx);
        size_t len = strlen(line);
        while (len > 0) {
          ssize_t n = write(out, line, len);
          if (n < 0) {
            if (errno == EINTR) continue;
            return;
          }
          line += n;
          len -= size_t(n);
        }
      },
      &fd);
  return 0;
}

// ---------------------------------------------------------------------------------------
// The hak_* API (hakmem.h).
HAK_EXPORT void* hak_malloc(size_t n) { return hak_alloc_impl(n); }
HAK_EXPORT void* hak_calloc(size_t count, size_t size) { return hak_calloc_impl(count, size); }
HAK_EXPORT void* hak_realloc(void* p, size_t n) { return hak_realloc_impl(p, n); }
HAK_EXPORT void hak_free(void* p) { hak_free_impl(p); }
HAK_EXPORT void* hak_aligned_alloc(size_t align, size_t n) {
  if (align == 0 || (align & (align - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return hak_alloc_aligned(align, n);
}
HAK_EXPORT size_t hak_usable_size(const void* p) { return usable_size_api(p); }
HAK_EXPORT int hak_trim(void) { return hak_trim_impl() ? 1 : 0; }
HAK_EXPORT int hak_heap_check(void) {
  ensure_init();
  return heap_check_all() ? 1 : 0;
}
HAK_EXPORT void hak_stats_get(hak_stats_t* out) {
  ensure_init();
  stats_collect(out);
}
HAK_EXPORT void hak_stats_print(void) {
  ensure_init();
  stats_print();
}
HAK_EXPORT size_t hak_prof_set(size_t mean_bytes) {
  ensure_init();
  if (kValgrind && vg_running()) return 0;  // memcheck tracks the heap itself
  size_t old = prof_set(mean_bytes);
  // The calling thread's counts run out at its next allocation of each class and draw their
  // first gaps; other threads' do when their counts run out (sampler.h).
  for (int c = 0; c <= kNumClasses; ++c) t_prof_class_left[c] = 0;
  t_prof_left = 0;
  return old;
}
HAK_EXPORT int hak_prof_dump(const char* path) {
  ensure_init();
  return prof_dump(path, false);
}
HAK_EXPORT int hak_prof_dump_peak(const char* path) {
  ensure_init();
  return prof_dump(path, true);
}
HAK_EXPORT void hak_prof_leak_report(int max_stacks) {
  ensure_init();
  prof_leak_report(max_stacks <= 0 ? 20 : max_stacks);
}

// At exit (a destructor of the library, or of the program that links it statically): the
// exiting thread's cached blocks go back to their runs, where they are checked, so that a
// double free still in a cache whose free-block key the program erased is reported rather
// than lost with the process; then HAKMEM_STATS=1 prints the table. Other threads' caches
// are theirs (they may still be running). Not in a process that did not initialise hakmem
// itself: a forked child (a shell's subshell, `$(...)`, but also a daemon after daemon()).
// Its cache started as its parent's, which the parent's own exit checks; its frees were
// checked at the call (free-block key; what goes unreported is a double free whose key the
// child erased); and sending the blocks back writes into pages it shares with the parent: 9
// copy-on-write faults per subshell of bash, a tenth of what the subshell costs
// (docs/BENCHMARKS.md, "Short processes").
__attribute__((destructor)) static void hak_at_exit() {
  if (g_init_state.load(std::memory_order_acquire) != 2) return;
  if (getpid() == g_init_pid) tiny_flush_current_thread();
  prof_at_exit();
  if (options().stats) stats_print();
}

// ---------------------------------------------------------------------------------------
// C++ operator new / delete, every form.
#define HAK_CXX_EXPORT __attribute__((visibility("default")))

// Sized delete (secure and debug variants): the size must be one the block could have been
// allocated for. A Tiny/Mid block serves sizes of its class, or of a class up to
// max(32 bytes, 1/8) smaller (a miss may hand out a neighbour's block: tiny_refill's borrow);
// a span or Large block, sizes above half its usable size. An aligned block only has to hold
// the size (its class was chosen for the alignment). Whatever free itself reports (a freed,
// foreign or interior pointer) is left to it.
HAK_SLOW_PATH void sized_delete_check(void* p, size_t n, size_t align) {
  if (p == nullptr) return;
  uint8_t id = region_map_lookup(p);
  bool tiny = is_class_id(id);
  size_t usable;
  bool ok;
  if (id == kRegionGuarded) {
    usable = guarded_usable(p, "operator delete");  // the size asked for: exactly
    ok = n == usable;
  } else if (id == kRegionSpan && span_header_of(p)->magic == kSpanMagicSampled) {
    usable = prof_requested_size(static_cast<char*>(p) - span_header_of(p)->offset);  // exactly, too
    ok = n == usable;
  } else {
    if (tiny) {
      if (run_block_index(slab_of_block(p), p) == UINT32_MAX) return;
      if (key_held_live(p)) return;  // a freed block (free_link.h)
    } else if (id != kRegionSpan || !span_is_live(span_header_of(p))) {
      return;
    }
    usable = hak_usable_size_impl(p, "operator delete");
    ok = n <= usable;
  }
  if (ok && align <= 16 && id != kRegionGuarded && !(id == kRegionSpan && span_header_of(p)->magic == kSpanMagicSampled)) {
    if (tiny) {
      size_t own = class_to_size(size_to_class(n));
      ok = usable <= own + (own / 8 > 32 ? own / 8 : 32);
    } else {
      ok = n > usable / 2;
    }
  }
  if (!ok)
    hak_fatal("operator delete(%p, %zu): wrong size (the block holds %zu bytes: it was allocated for another size)", p,
              n, usable);
}
HAK_FAST_PATH void cxx_delete(void* p, bool array) {
  new_kind_check_delete(p, array);
  hak_free_impl(p);
}
HAK_FAST_PATH void sized_delete(void* p, size_t n, size_t align, bool array) {
  if constexpr (kSecure || kDebug) sized_delete_check(p, n, align);
  cxx_delete(p, array);
}
HAK_CXX_EXPORT HAK_HOT_ENTRY void* operator new(size_t n) { return new_kind(cxx_new(n), false); }
HAK_CXX_EXPORT void* operator new[](size_t n) { return new_kind(cxx_new(n), true); }
HAK_CXX_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept {
  void* p = hak_alloc_impl(n);
  return new_kind(HAK_LIKELY(p != nullptr) ? p : cxx_new_slow(n, 0, true), false);
}
HAK_CXX_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  void* p = hak_alloc_impl(n);
  return new_kind(HAK_LIKELY(p != nullptr) ? p : cxx_new_slow(n, 0, true), true);
}
HAK_CXX_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_kind(cxx_new_aligned(n, a, false), false); }
HAK_CXX_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_kind(cxx_new_aligned(n, a, false), true); }
HAK_CXX_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_kind(cxx_new_aligned(n, a, true), false);
}
HAK_CXX_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_kind(cxx_new_aligned(n, a, true), true);
}
HAK_CXX_EXPORT HAK_HOT_ENTRY void operator delete(void* p) noexcept { cxx_delete(p, false); }
HAK_CXX_EXPORT void operator delete[](void* p) noexcept { cxx_delete(p, true); }
HAK_CXX_EXPORT HAK_HOT_ENTRY void operator delete(void* p, size_t n) noexcept { sized_delete(p, n, 0, false); }
HAK_CXX_EXPORT void operator delete[](void* p, size_t n) noexcept { sized_delete(p, n, 0, true); }
HAK_CXX_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { cxx_delete(p, false); }
HAK_CXX_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { cxx_delete(p, true); }
HAK_CXX_EXPORT void operator delete(void* p, std::align_val_t) noexcept { cxx_delete(p, false); }
HAK_CXX_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { cxx_delete(p, true); }
HAK_CXX_EXPORT void operator delete(void* p, size_t n, std::align_val_t a) noexcept { sized_delete(p, n, size_t(a), false); }
HAK_CXX_EXPORT void operator delete[](void* p, size_t n, std::align_val_t a) noexcept { sized_delete(p, n, size_t(a), true); }
HAK_CXX_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { cxx_delete(p, false); }
HAK_CXX_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { cxx_delete(p, true); }
