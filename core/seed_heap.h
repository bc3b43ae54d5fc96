// seed_heap.h — a process's first small blocks (16 B to 4 KiB, every class), packed together.
//
// Holds: one 128 KiB mapping, 64 KiB-aligned, marked kRegionSeed in the region map: a byte per
// 16-byte granule naming the size class of the block that starts there (0: none), a bit per
// granule set while that block is out, then the blocks, carved in address order whatever their
// class, each aligned as a run would align it (up to a cache line); a free list per class
// (linked through the blocks' first word), and per class how many blocks the seed has handed
// out. One lock (fork_locks.h), for frees, seed_usable and the statistics (seed malloc runs
// only while the process has one thread). Release variant only: the
// secure and debug variants keep every block in a run, where their canaries, poison words and
// checkers look for it.
// Calls: os (the mapping), region_map (marking it), size_class, diag.
//
// Why: a slab run holds blocks of one class, so the first block of each class a process uses
// costs a page of its own: a short process (tr, sed, awk: 15-25 classes, 20-120 KiB of
// blocks) touched a page per class where glibc's heap packs the same blocks into a few (a page
// fault is ~2 µs here; docs/BENCHMARKS.md, "Short processes"). Each class's first
// seed_quota(cls) blocks come from here instead; after that the class takes runs as before,
// so a class in steady use costs the seed nothing. The count includes reuse: a loop that
// allocates and frees one block leaves the seed after its first seed_quota blocks (every seed
// malloc and free is a slow path of ~60 instructions; a run's block is 21 and 30). The seed
// serves only while the process has a single thread: it packs blocks whatever asks for them,
// and two threads' blocks side by side would share cache lines that a run's never share
// (docs/BENCHMARKS.md, "The seed heap and false sharing"); from the second thread on, every
// class takes runs and the seed only takes back its blocks (under its lock, from any thread).
//
// A seed block never enters a thread's cache (free sends it straight back to the seed), so
// the caches, runs and their checks never see one. free checks it at the call: a pointer that
// does not start a block is an invalid pointer, a block whose bit is clear a double free.
// Aligned requests never come here (a power-of-two class's run blocks are aligned to their
// size; a seed block at most to 64 bytes). The seed stays mapped for the process's life (at most
// 128 KiB resident).
#ifndef HAKMEM_SEED_HEAP_H
#define HAKMEM_SEED_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "hakmem_build_flags.h"
#include "size_class.h"

namespace hak {

inline constexpr bool kSeedHeap = !kSecure && !kDebug;
inline constexpr size_t kSeedBytes = 128 * 1024;
inline constexpr int kSeedClasses = 129;          // classes 1..128: blocks of 16 B to 4 KiB
inline constexpr size_t kSeedClassBytes = 4096;   // a class's blocks from the seed: this many bytes,
inline constexpr uint32_t kSeedClassBlocks = 2;   // but at least this many blocks

// How many blocks each class (< kSeedClasses) takes from the seed in the process's life.
struct SeedQuotas {
  uint16_t of[kSeedClasses];
};
constexpr SeedQuotas make_seed_quotas() {
  SeedQuotas q{};
  for (int c = 1; c < kSeedClasses; ++c) {
    uint32_t by_bytes = uint32_t(kSeedClassBytes / detail::class_size_of(c));
    q.of[c] = uint16_t(by_bytes > kSeedClassBlocks ? by_bytes : kSeedClassBlocks);
  }
  return q;
}
inline constexpr SeedQuotas kSeedQuotas = make_seed_quotas();
HAK_FAST_PATH constexpr uint32_t seed_quota(int cls) { return kSeedQuotas.of[cls]; }

namespace detail {
extern std::atomic<uint16_t> g_seed_served[kSeedClasses] __attribute__((visibility("hidden")));
}

// Where the seed carves a block of `size` bytes when the next free byte is at offset `cur` of
// its (64 KiB-aligned) mapping: at the alignment the block would have in a run of its class,
// the largest power of two dividing its size, up to a cache line (64 B). Packed at 16 bytes, a
// 128-byte array of two threads' 64-byte counters straddled three lines, and Larson with 2
// threads, whose lanes are such an array, ran at 0.4x (docs/BENCHMARKS.md, "The seed heap and
// false sharing").
HAK_FAST_PATH constexpr size_t seed_carve_offset(size_t cur, size_t size) {
  size_t align = size & (~size + 1);
  if (align > 64) align = 64;
  return (cur + align - 1) & ~(align - 1);
}
static_assert(seed_carve_offset(16, 128) == 64 && seed_carve_offset(80, 48) == 80 && seed_carve_offset(80, 96) == 96 &&
                  seed_carve_offset(64, 4096) == 64,
              "blocks aligned as in a run, at most to a cache line");

// Whether a malloc of class cls (not aligned) should ask the seed: a class up to 4 KiB that has not
// used up its quota (the first seed_alloc after the process has had a second thread closes
// every class's). A relaxed load; seed_alloc decides.
HAK_FAST_PATH bool seed_serves(int cls) {
  return kSeedHeap && cls < kSeedClasses &&
         detail::g_seed_served[cls].load(std::memory_order_relaxed) < seed_quota(cls);
}

// A block of class cls from the seed (its free list first, else carved), or nullptr: the
// class's quota is used up, the seed is full or could not be mapped, or the process has (had)
// a second thread.
void* seed_alloc(int cls);

// free(p) of an address in the seed (region map kRegionSeed): reports an invalid pointer or a
// double free (aborts), else puts the block on its class's list. `op` names the call.
void seed_free(void* p, const char* op = "free");

// The usable size of seed block p; reports p (aborts) unless it is a block that is out.
size_t seed_usable(const void* p, const char* op);

struct SeedStats {
  uint64_t mapped_bytes;   // 0 before the first seed block, else kSeedBytes
  uint64_t in_use_bytes;   // blocks out
};
SeedStats seed_stats();
// Per class c (1 ≤ c < kSeedClasses): blocks out, and blocks carved (out or on its free list).
void seed_class_stats(uint64_t out[], uint64_t carved[]);

// Tests only: the seed hands out nothing from now on (blocks already out stay valid).
void seed_disable();

// Fork handling (the seed's lock).
void seed_lock();
void seed_unlock();
void seed_reinit_after_fork();

}  // namespace hak

#endif  // HAKMEM_SEED_HEAP_H
