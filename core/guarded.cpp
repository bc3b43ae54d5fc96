// guarded.cpp — the guarded pool (see guarded.h).
#include "guarded.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <atomic>

#include "diag.h"
#include "fork_locks.h"
#include "os.h"
#include "region_map.h"
#include "stack_trace.h"

namespace hak {

HAK_TLS int64_t t_guard_left;

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kStride = kGuardMaxSize + kPage;       // a slot's pages and the guard after them
constexpr size_t kSpanStride = kGuardSpanMax + kPage;   // the same for a span slot
constexpr int kAllSlots = kGuardSlots + kGuardSpanSlots;
// The pool: a guard page, then kGuardSlots slots and kGuardSpanSlots span slots each followed
// by a guard page; whole region-map units, so that no other mapping shares a unit with it.
constexpr size_t kSpanSlotsAt = kPage + kGuardSlots * kStride;
constexpr size_t kPoolBytes = (kSpanSlotsAt + kGuardSpanSlots * kSpanStride + kRegionUnit - 1) & ~(kRegionUnit - 1);
constexpr uint8_t kPattern = 0xA5;  // the spare bytes of a live block's pages

enum : uint8_t { kSlotNever = 0, kSlotLive = 1, kSlotFreed = 2 };

struct Slot {
  uintptr_t block;  // the pointer handed out
  size_t size;      // bytes asked for
  size_t bytes;     // accessible bytes from the slot's start (whole pages) while live
  std::atomic<uint8_t> state;
  uint8_t array;  // allocated by operator new[]
  uint8_t alloc_frames, free_frames;
  uint32_t alloc_tid, free_tid;
  uintptr_t alloc_pc[kGuardFrames];
  uintptr_t free_pc[kGuardFrames];
};

char* g_pool = nullptr;
Slot* g_slots = nullptr;  // kAllSlots entries, in a mapping of their own
uint64_t g_rate = 0;
pthread_mutex_t& g_lock = g_fork_locks.guarded;

// The slots of one size: those never used yet come first, then the freed ones, oldest first
// (reused last).
struct Tier {
  int first, count;
  int fifo[kGuardSlots > kGuardSpanSlots ? kGuardSlots : kGuardSpanSlots];
  int head, queued, next_never;
  int take() {
    if (next_never < count) return first + next_never++;
    if (queued == 0) return -1;
    int i = fifo[head];
    head = (head + 1) % count;
    --queued;
    return i;
  }
  void put(int i) { fifo[(head + queued++) % count] = i; }
};
Tier g_small = {0, kGuardSlots, {}, 0, 0, 0};
Tier g_spans = {kGuardSlots, kGuardSpanSlots, {}, 0, 0, 0};
Tier& tier_of(int i) { return i < kGuardSlots ? g_small : g_spans; }
uint64_t g_place = 0;  // alternates the placement
uint64_t g_allocs = 0, g_live = 0, g_full = 0;
struct sigaction g_prev_segv;

HAK_TLS bool t_drawn;     // this thread drew its countdown
HAK_TLS uint64_t t_rng;

char* slot_base(int i) {
  return i < kGuardSlots ? g_pool + kPage + size_t(i) * kStride
                         : g_pool + kSpanSlotsAt + size_t(i - kGuardSlots) * kSpanStride;
}
// Bytes a slot's block may have (its pages before the guard page).
size_t slot_room(int i) { return i < kGuardSlots ? kGuardMaxSize : kGuardSpanMax; }

// The slot whose pages or following guard page hold address a; -1 for the first guard page
// and the pool's tail.
int slot_index(uintptr_t a) {
  uintptr_t lo = uintptr_t(g_pool) + kPage;
  if (a < lo) return -1;
  if (a < uintptr_t(g_pool) + kSpanSlotsAt) return int((a - lo) / kStride);
  size_t i = (a - (uintptr_t(g_pool) + kSpanSlotsAt)) / kSpanStride;
  return i < size_t(kGuardSpanSlots) ? kGuardSlots + int(i) : -1;
}

void print_stack(const char* what, uint32_t tid, const uintptr_t* pcs, int n) {
  diag_print("%s by thread %u:", what, unsigned(tid));
  stack_print(pcs, n, stack_own_prefix(pcs, n));
}

void print_stacks(const Slot& s, bool freed) {
  print_stack("the block was allocated", s.alloc_tid, s.alloc_pc, s.alloc_frames);
  if (freed) print_stack("and freed", s.free_tid, s.free_pc, s.free_frames);
}

// The first byte of [lo, hi) that is not kPattern, or 0. Eight bytes at a time.
uintptr_t first_not_pattern(const uint8_t* lo, const uint8_t* hi) {
  constexpr uint64_t kWord = 0x0101010101010101ull * kPattern;
  while (lo < hi && (uintptr_t(lo) & 7) != 0) {
    if (*lo != kPattern) return uintptr_t(lo);
    ++lo;
  }
  for (; lo + 8 <= hi; lo += 8) {
    uint64_t w;
    memcpy(&w, lo, 8);
    if (w != kWord) break;
  }
  for (; lo < hi; ++lo)
    if (*lo != kPattern) return uintptr_t(lo);
  return 0;
}

// The first spare byte of live slot s that lost its pattern, or 0.
uintptr_t first_bad_spare(const Slot& s) {
  const auto* base = reinterpret_cast<const uint8_t*>(slot_base(int(&s - g_slots)));
  const auto* block = reinterpret_cast<const uint8_t*>(s.block);
  if (uintptr_t bad = first_not_pattern(base, block)) return bad;
  return first_not_pattern(block + s.size, base + s.bytes);
}

// "heap-buffer-overflow at A: K bytes after the N-byte guarded block B" or the underflow's.
void print_bounds_error(uintptr_t a, const Slot& s, const char* how) {
  if (a >= s.block + s.size)
    diag_print("heap-buffer-overflow at %p: %zu bytes after the %zu-byte guarded block %p%s", reinterpret_cast<void*>(a),
               size_t(a - (s.block + s.size)), s.size, reinterpret_cast<void*>(s.block), how);
  else
    diag_print("heap-buffer-underflow at %p: %zu bytes before the %zu-byte guarded block %p%s",
               reinterpret_cast<void*>(a), size_t(s.block - a), s.size, reinterpret_cast<void*>(s.block), how);
}

[[noreturn]] void die() {
  // The report is out: SIGABRT's default action (a handler of the program's could return).
  signal(SIGABRT, SIG_DFL);
  abort();
}

// A fault at address a inside the pool: which block, and what happened to it.
[[noreturn]] void report_fault(uintptr_t a, int access) {
  const char* how = access == 1 ? " (write)" : access == 0 ? " (read)" : "";
  int i = slot_index(a);
  if (i >= 0) {
    // In a guard page: the nearer of the blocks on either side.
    uintptr_t rel = a - uintptr_t(slot_base(i));
    if (rel >= slot_room(i) && i + 1 < kAllSlots) {
      const Slot& l = g_slots[i];
      const Slot& r = g_slots[i + 1];
      bool use_r = l.state.load() == kSlotNever ||
                   (r.state.load() != kSlotNever && r.block - a < a - (l.block + l.size));
      if (use_r) ++i;
    }
  }
  if (i < 0 || g_slots[i].state.load() == kSlotNever) {
    diag_print("wild access at %p inside the guarded pool (no block there)%s", reinterpret_cast<void*>(a), how);
    die();
  }
  const Slot& s = g_slots[i];
  bool freed = s.state.load() == kSlotFreed;
  uintptr_t base = uintptr_t(slot_base(i));
  if (freed && a >= base && a < base + slot_room(i)) {
    diag_print("use-after-free at %p: %zu bytes into the freed %zu-byte guarded block %p%s", reinterpret_cast<void*>(a),
               a >= s.block ? size_t(a - s.block) : 0, s.size, reinterpret_cast<void*>(s.block), how);
  } else {
    print_bounds_error(a, s, how);
  }
  print_stacks(s, freed);
  die();
}

void on_segv(int sig, siginfo_t* si, void* uctx) {
  uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
  if (g_pool != nullptr && a >= uintptr_t(g_pool) && a < uintptr_t(g_pool) + kPoolBytes) {
    int access = -1;
#if defined(__x86_64__)
    if (uctx != nullptr) access = (static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_ERR] & 2) != 0 ? 1 : 0;
#endif
    report_fault(a, access);
  }
  // Not ours: the program's handler, or the default action (the fault happens again on return).
  if (g_prev_segv.sa_flags & SA_SIGINFO) {
    if (g_prev_segv.sa_sigaction != nullptr) {
      g_prev_segv.sa_sigaction(sig, si, uctx);
      return;
    }
  } else if (g_prev_segv.sa_handler != SIG_DFL && g_prev_segv.sa_handler != SIG_IGN) {
    g_prev_segv.sa_handler(sig);
    return;
  }
  signal(SIGSEGV, SIG_DFL);
}

uint64_t draw() {
  if (t_rng == 0) t_rng = os_random_u64() | 1;
  t_rng ^= t_rng << 13;
  t_rng ^= t_rng >> 7;
  t_rng ^= t_rng << 17;
  return 1 + t_rng % (2 * g_rate - 1);  // mean g_rate
}

}  // namespace

bool guarded_init(uint64_t rate) {
  if (rate == 0 || g_pool != nullptr) return g_pool != nullptr;
  if (os_page_size() != kPage) return false;  // the slot geometry assumes 4 KiB pages
  auto* pool = static_cast<char*>(os_map_aligned(kPoolBytes, kRegionUnit));
  if (pool == nullptr) return false;
  auto* slots = static_cast<Slot*>(os_map((sizeof(Slot) * kAllSlots + kPage - 1) & ~(kPage - 1)));
  if (slots == nullptr || !os_protect(pool, kPoolBytes, false) || !region_map_set(pool, kPoolBytes, kRegionGuarded)) {
    os_unmap(pool, kPoolBytes);
    return false;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  g_slots = slots;
  g_rate = rate;
  g_pool = pool;
  sigaction(SIGSEGV, &sa, &g_prev_segv);
  return true;
}

uint64_t guarded_rate() { return g_pool != nullptr ? g_rate : 0; }

bool guarded_countdown_expired() {
  if (g_pool == nullptr) {
    t_guard_left = INT64_MAX;  // off: out of reach
    return false;
  }
  bool drawn = t_drawn;
  t_drawn = true;
  t_guard_left = int64_t(draw()) - 1;  // the draw-th allocation from here is sampled
  return drawn || g_rate == 1;
}

void* guarded_alloc(size_t n, size_t align) {
  if (align < 16) align = 16;
  if (n > kGuardSpanMax || align > kPage) return nullptr;
  pthread_mutex_lock(&g_lock);
  int i = (n <= kGuardMaxSize ? g_small : g_spans).take();
  if (i < 0) {
    ++g_full;
    pthread_mutex_unlock(&g_lock);
    return nullptr;
  }
  bool at_end = (g_place++ & 1) == 0;  // the first block is flush with the guard after it
  ++g_allocs;
  ++g_live;
  pthread_mutex_unlock(&g_lock);
  Slot& s = g_slots[i];
  char* base = slot_base(i);
  size_t bytes = n == 0 ? kPage : (n + kPage - 1) & ~(kPage - 1);
  if (!os_protect(base, bytes, true)) {
    pthread_mutex_lock(&g_lock);  // give the slot back as never used would be wrong: reuse it last
    tier_of(i).put(i);
    --g_live;
    pthread_mutex_unlock(&g_lock);
    return nullptr;
  }
  char* block = at_end ? reinterpret_cast<char*>((uintptr_t(base) + bytes - n) & ~(uintptr_t(align) - 1)) : base;
  memset(base, kPattern, size_t(block - base));
  memset(block + n, kPattern, size_t(base + bytes - (block + n)));
  s.block = uintptr_t(block);
  s.size = n;
  s.bytes = bytes;
  s.array = 0;
  s.alloc_tid = os_thread_id();
  s.alloc_frames = uint8_t(stack_capture_any(s.alloc_pc, kGuardFrames));
  s.free_frames = 0;
  s.state.store(kSlotLive, std::memory_order_release);
  return block;
}

size_t guarded_usable(const void* p, const char* op) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int i = slot_index(a);
  if (i < 0 || g_slots[i].state.load(std::memory_order_acquire) == kSlotNever)
    hak_fatal("%s(%p): invalid pointer (inside the guarded pool, in no block)", op, p);
  Slot& s = g_slots[i];
  if (a != s.block) {
    if (s.state.load() == kSlotLive && a > s.block && a < s.block + s.size)
      hak_fatal("%s(%p): invalid pointer (%zu bytes into the %zu-byte guarded block %p)", op, p, size_t(a - s.block),
                s.size, reinterpret_cast<void*>(s.block));
    hak_fatal("%s(%p): invalid pointer (inside the guarded pool, not a block's start)", op, p);
  }
  if (s.state.load() == kSlotFreed) {
    bool is_free = strcmp(op, "free") == 0;
    diag_print("%s(%p): %s the %zu-byte guarded block", op, p, is_free ? "double free of" : "use of freed", s.size);
    print_stacks(s, true);
    hak_fatal("%s(%p): %s", op, p, is_free ? "double free" : "invalid pointer (a freed block)");
  }
  return s.size;
}

void guarded_free(void* p) {
  guarded_usable(p, "free");
  Slot& s = g_slots[slot_index(uintptr_t(p))];
  uint8_t live = kSlotLive;
  if (!s.state.compare_exchange_strong(live, kSlotFreed)) hak_fatal("free(%p): double free", p);
  s.free_tid = os_thread_id();
  s.free_frames = uint8_t(stack_capture_any(s.free_pc, kGuardFrames));
  if (uintptr_t bad = first_bad_spare(s)) {
    print_bounds_error(bad, s, " (found at free: a byte beside the block was written)");
    print_stacks(s, true);
    die();
  }
  // Inaccessible. A small slot's pages stay resident (at most the 16 slots' worth) for its
  // next block, which saves a system call per sample; a span slot's go back to the system.
  const int i = int(&s - g_slots);
  os_protect(slot_base(i), s.bytes, false);  // first: a write racing the free faults
  if (i >= kGuardSlots) os_decommit(slot_base(i), s.bytes);
  pthread_mutex_lock(&g_lock);
  tier_of(i).put(i);
  --g_live;
  pthread_mutex_unlock(&g_lock);
}

bool guarded_is_array(const void* p) {
  int i = slot_index(uintptr_t(p));
  return i >= 0 && g_slots[i].block == uintptr_t(p) && g_slots[i].array != 0;
}

void guarded_set_array(const void* p, bool array) {
  int i = slot_index(uintptr_t(p));
  if (i >= 0 && g_slots[i].block == uintptr_t(p)) g_slots[i].array = array ? 1 : 0;
}

GuardedStats guarded_stats() {
  pthread_mutex_lock(&g_lock);
  GuardedStats st{g_allocs, g_live, g_full};
  pthread_mutex_unlock(&g_lock);
  return st;
}

void guarded_lock() { pthread_mutex_lock(&g_lock); }
void guarded_unlock() { pthread_mutex_unlock(&g_lock); }
void guarded_reinit_after_fork() { pthread_mutex_init(&g_lock, nullptr); }

}  // namespace hak
