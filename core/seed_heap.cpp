// seed_heap.cpp — a process's first small blocks, packed (see seed_heap.h).
//
// Layout of the mapping (kSeedBytes, 64 KiB-aligned):
//   [0, 8 KiB)        class of the block starting at each 16-byte granule (0: none): the
//                     first 4 KiB covers the first 64 KiB, so a short process touches one page
//   [8 KiB, 9 KiB)    out-bits, one per granule (set while the block starting there is out)
//   then              each class's free list and counts (SeedMeta), then the blocks, carved in
//                     address order, each its class's size, aligned as a run aligns it
//                     (seed_carve_offset: gaps between blocks read as class 0): the page the
//                     first blocks are carved in holds all of that (none in the library's .bss,
//                     where they took a page of their own)
#include "seed_heap.h"

#include <errno.h>
#include <pthread.h>
#include <sys/single_threaded.h>

#include "diag.h"
#include "fork_locks.h"
#include "free_link.h"
#include "os.h"
#include "region_map.h"

namespace hak {
namespace detail {
std::atomic<uint16_t> g_seed_served[kSeedClasses];
}  // namespace detail

namespace {

constexpr size_t kGranules = kSeedBytes / 16;
constexpr size_t kTableBytes = kGranules;             // one byte per granule
constexpr size_t kBitsBytes = kGranules / 8;          // one bit per granule
struct SeedMeta {
  void* free[kSeedClasses];       // free list per class, linked through the blocks' first word
  uint32_t out[kSeedClasses];     // blocks out per class (stats)
  uint32_t carved[kSeedClasses];  // blocks carved per class (stats)
};
constexpr size_t kMetaStart = kTableBytes + kBitsBytes;
constexpr size_t kBlocksStart = (kMetaStart + sizeof(SeedMeta) + 15) & ~size_t(15);
static_assert(kBlocksStart % 16 == 0 && kBlocksStart < kSeedBytes, "the seed's metadata leaves room for blocks");
static_assert(kSeedBytes % kRegionUnit == 0, "the seed is whole region-map units");

pthread_mutex_t& g_lock = g_fork_locks.seed;

// The seed's lock (free, statistics), taken only once the process has had a second thread:
// glibc clears __libc_single_threaded before a second thread starts, in the thread that starts
// it, so while it reads true no other thread can be here (glibc's malloc skips its own locks
// so).
struct Locked {
  const bool held = __libc_single_threaded == 0;
  Locked() {
    if (held) pthread_mutex_lock(&g_lock);
  }
  ~Locked() {
    if (held) pthread_mutex_unlock(&g_lock);
  }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;
};
char* g_base = nullptr;     // the mapping (nullptr until the first block)
char* g_cur = nullptr;      // next byte to carve

uint8_t* table() { return reinterpret_cast<uint8_t*>(g_base); }
uint64_t* bits() { return reinterpret_cast<uint64_t*>(g_base + kTableBytes); }
SeedMeta* meta() { return reinterpret_cast<SeedMeta*>(g_base + kMetaStart); }
size_t granule(const void* p) { return size_t(static_cast<const char*>(p) - g_base) >> 4; }
bool bit(size_t g) { return (bits()[g >> 6] >> (g & 63)) & 1; }
void set_bit(size_t g) { bits()[g >> 6] |= uint64_t(1) << (g & 63); }
void clear_bit(size_t g) { bits()[g >> 6] &= ~(uint64_t(1) << (g & 63)); }

// The class of the block p starts, 0 when p does not start one (outside the carved part,
// unaligned, inside a block, or in the gap before a block carved at its alignment). Any
// thread: an entry is written once, before its block is handed out.
int class_at(const void* p) {
  const char* c = static_cast<const char*>(p);
  if (g_base == nullptr || c < g_base + kBlocksStart || c >= __atomic_load_n(&g_cur, __ATOMIC_ACQUIRE)) return 0;
  if ((reinterpret_cast<uintptr_t>(p) & 15) != 0) return 0;
  return __atomic_load_n(&table()[granule(p)], __ATOMIC_RELAXED);
}

// The start of the block p falls in, or nullptr (for the message of an interior pointer).
const char* block_containing(const void* p, int* cls_out) {
  const char* c = static_cast<const char*>(p);
  if (g_base == nullptr || c < g_base + kBlocksStart || c >= g_cur) return nullptr;
  for (size_t g = granule(p);; --g) {
    if (int cls = table()[g]) {
      const char* b = g_base + g * 16;
      if (c < b + detail::class_size_of(cls)) {
        *cls_out = cls;
        return b;
      }
      return nullptr;
    }
    if (g * 16 == kBlocksStart) return nullptr;
  }
}

[[noreturn]] void report_invalid(const void* p, const char* op) {
  int cls = 0;
  if (block_containing(p, &cls) != nullptr)
    hak_fatal("%s(%p): invalid pointer (inside a %zu-byte block of size class %d, not at its start)", op, p,
              size_t(detail::class_size_of(cls)), cls);
  hak_fatal("%s(%p): invalid pointer (in hakmem's seed heap, not the start of a block)", op, p);
}

// No class asks the seed again (seed_serves): its mapping failed, or tests turned it off.
void close_every_class() {
  for (int c = 1; c < kSeedClasses; ++c) detail::g_seed_served[c].store(uint16_t(seed_quota(c)), std::memory_order_relaxed);
}

bool map_seed() {
  void* m = os_map_aligned(kSeedBytes, kRegionUnit);
  if (m == nullptr) return false;
  if (!region_map_set(m, kSeedBytes, kRegionSeed)) {
    os_unmap(m, kSeedBytes);
    return false;
  }
  g_base = static_cast<char*>(m);
  // The metadata page's first touch is a write: seed_alloc reads a free list there before it
  // writes the counts, and a read first would map the zero page only for the write to fault
  // again (docs/BENCHMARKS.md, "Short processes: writes first").
  __atomic_store_n(&meta()->free[0], nullptr, __ATOMIC_RELAXED);
  __atomic_store_n(&g_cur, g_base + kBlocksStart, __ATOMIC_RELEASE);
  return true;
}

}  // namespace

void* seed_alloc(int cls) {
  if (!seed_serves(cls)) return nullptr;
  // Only while the process has one thread: the seed packs blocks whatever asks for them, so two
  // threads' first blocks would share lines (a thread's run never holds another's fresh blocks).
  // glibc clears __libc_single_threaded before a second thread starts, in the thread that
  // starts it, and never sets it again (a fork child of a threaded process reads false too): no
  // other thread can be in here, and no lock is needed (seed_free takes it: the blocks handed
  // out may be freed by any thread later).
  if (!__libc_single_threaded) {
    close_every_class();
    return nullptr;
  }
  const size_t size = class_to_size(cls);
  const uint32_t served = detail::g_seed_served[cls].load(std::memory_order_relaxed);
  if (served >= seed_quota(cls)) return nullptr;
  if (HAK_UNLIKELY(g_base == nullptr)) {
    const int saved = errno;  // the caller takes a run instead, and reports its own failure
    const bool mapped = map_seed();
    errno = saved;
    if (!mapped) {
      close_every_class();  // no second try: every miss would map again
      return nullptr;
    }
  }
  SeedMeta* m = meta();
  void* p = m->free[cls];
  if (p != nullptr) {
    void* next = *static_cast<void**>(p);
    // The block is free (its bit clear), and its link is nullptr or another free block of the
    // class (a write after free otherwise: the list would hand out whatever it now says; a
    // block linked to itself would be handed out twice).
    if (bit(granule(p)) || (next != nullptr && (next == p || class_at(next) != cls || bit(granule(next)))))
      link_corrupted(p, next, cls);
    m->free[cls] = next;
  } else {
    char* b = g_base + seed_carve_offset(size_t(g_cur - g_base), size);
    if (b + size > g_base + kSeedBytes) {
      detail::g_seed_served[cls].store(uint16_t(seed_quota(cls)), std::memory_order_relaxed);  // full for this size
      return nullptr;
    }
    p = b;
    __atomic_store_n(&table()[granule(p)], uint8_t(cls), __ATOMIC_RELAXED);
    __atomic_store_n(&g_cur, b + size, __ATOMIC_RELEASE);
    ++m->carved[cls];
  }
  set_bit(granule(p));
  ++m->out[cls];
  detail::g_seed_served[cls].store(uint16_t(served + 1), std::memory_order_relaxed);
  return p;
}

void seed_free(void* p, const char* op) {
  const int cls = class_at(p);
  if (cls == 0) report_invalid(p, op);
  const size_t g = granule(p);
  {
    Locked lock;
    if (bit(g)) {
      clear_bit(g);
      SeedMeta* m = meta();
      *static_cast<void**>(p) = m->free[cls];
      m->free[cls] = p;
      --m->out[cls];
      return;
    }
  }  // reported without the lock: a handler of the program's abort may free
  hak_fatal("%s(%p): double free (block of size class %d, %zu bytes)", op, p, cls, class_to_size(cls));
}

size_t seed_usable(const void* p, const char* op) {
  const int cls = class_at(p);
  if (cls == 0) report_invalid(p, op);
  bool out;
  {
    Locked lock;
    out = bit(granule(p));
  }
  if (!out) hak_fatal("%s(%p): invalid pointer (a freed block of size class %d)", op, p, cls);
  return class_to_size(cls);
}

SeedStats seed_stats() {
  Locked lock;
  SeedStats s{g_base != nullptr ? kSeedBytes : 0, 0};
  for (int c = 1; c < kSeedClasses && g_base != nullptr; ++c) s.in_use_bytes += uint64_t(meta()->out[c]) * class_to_size(c);
  return s;
}

void seed_class_stats(uint64_t out[], uint64_t carved[]) {
  Locked lock;
  for (int c = 1; c < kSeedClasses; ++c) {
    out[c] = g_base != nullptr ? meta()->out[c] : 0;
    carved[c] = g_base != nullptr ? meta()->carved[c] : 0;
  }
}

void seed_disable() { close_every_class(); }

void seed_lock() { pthread_mutex_lock(&g_lock); }
void seed_unlock() { pthread_mutex_unlock(&g_lock); }
void seed_reinit_after_fork() { pthread_mutex_init(&g_lock, nullptr); }

}  // namespace hak
