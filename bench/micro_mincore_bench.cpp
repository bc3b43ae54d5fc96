// micro_mincore_bench — what it costs free() to find out what kind of pointer it was given.
//
//   micro_mincore_bench [iterations] [pointers] [seed]
//   defaults:            2000000      4096       1
//
// The original hakmem put a 1-byte header in front of each block and read it on free. For a
// pointer at the very start of a page the header sits on the previous page, which may not be
// mapped, so free first asked the kernel with mincore(). This program measures, on this
// machine, the three ways a free() can classify a pointer (DESIGN.md, "Changed, on purpose" 2):
//
//   (a) mincore always:  mincore() on the page of p-1, then read the header byte at p-1;
//   (b) hybrid:          mincore() only when p is within 16 bytes of a page start, else read
//                        the header byte directly (p-1 is then on p's own, mapped, page);
//   (c) region map:      one load, map[p >> 16], from a byte-per-64-KiB map of the whole 47-bit
//                        address space, reserved with MAP_NORESERVE (2 GiB of address space,
//                        untouched pages read as zero = "not ours") — the scheme hakmem uses.
//
// The region map here is the benchmark's own small copy of the scheme; it does not depend on
// hakmem. The pointers are a realistic mix: half at random 16-byte-aligned offsets in a "heap"
// the benchmark maps and registers in its map, half from malloc() (foreign: id 0). Each method's
// answers are checked (mincore must report the page resident; the map must return the id the
// benchmark registered, or 0 for malloc's blocks); a wrong answer exits with status 3.
//
// Prints ns and TSC cycles per classification for each method, the share of pointers that
// made the hybrid call mincore, and "Throughput = N ops/s" for the region map.
// Smoke: micro_mincore_bench 20000 256
#include "bench_util.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#else
#define HAVE_TSC 0
#endif

namespace {

const char kUsage[] =
    "usage: micro_mincore_bench [iterations] [pointers] [seed]\n"
    "  iterations  classifications per method, 1-1000000000 (default 2000000)\n"
    "  pointers    distinct pointers cycled through (a power of two), 2-1048576 (default 4096)\n"
    "  seed        random seed (default 1)\n";

constexpr unsigned kRegionShift = 16;                                 // 64 KiB per map entry
constexpr uint64_t kMapEntries = uint64_t{1} << (47 - kRegionShift);  // 2^31 entries
constexpr size_t kHeapBytes = size_t{8} << 20;                        // the benchmark's "heap"

uint64_t read_tsc() {
#if HAVE_TSC
  return __rdtsc();
#else
  return 0;
#endif
}

struct Timing {
  double ns_per_call;
  double cycles_per_call;
};

// Runs classify(p) `iterations` times over the pointer set; returns the per-call cost.
template <class F>
Timing time_method(const std::vector<uint8_t*>& ptrs, uint64_t iterations, F&& classify) {
  const size_t mask = ptrs.size() - 1;
  uint64_t sink = 0;
  const double t0 = bench::now_seconds();
  const uint64_t c0 = read_tsc();
  for (uint64_t i = 0; i < iterations; ++i) sink += classify(ptrs[i & mask]);
  const uint64_t c1 = read_tsc();
  const double t1 = bench::now_seconds();
  bench::escape(&sink);
  asm volatile("" : : "r"(sink));
  return Timing{(t1 - t0) * 1e9 / double(iterations), double(c1 - c0) / double(iterations)};
}

[[noreturn]] void wrong(const char* method, const void* p, long got, long want) {
  std::fprintf(stderr,
               "MEMORY CHECK FAILED: micro_mincore_bench: %s classified %p as %ld, expected %ld\n",
               method, p, got, want);
  std::_Exit(bench::kExitMemoryError);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 4) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t iterations =
      bench::arg_u64(argc, argv, 1, "iterations", 2000000, 1, 1000000000, kUsage);
  const uint64_t npointers = bench::arg_u64(argc, argv, 2, "pointers", 4096, 2, 1 << 20, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 3, "seed", 1, 0, UINT64_MAX, kUsage);
  if ((npointers & (npointers - 1)) != 0) bench::usage_exit(kUsage, "pointers: not a power of two");

  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  bench::Rng rng(seed);

  // The region map: reserved, never explicitly committed; the kernel supplies zero pages on
  // first touch (reads) and real pages only where we write.
  void* map_mem = mmap(nullptr, kMapEntries, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  uint8_t* region_map = map_mem == MAP_FAILED ? nullptr : static_cast<uint8_t*>(map_mem);
  if (region_map == nullptr)
    std::printf("region map: 2 GiB MAP_NORESERVE reservation refused; method (c) skipped\n");

  // The "heap": 8 MiB aligned to 64 KiB, every page touched, each 64 KiB region registered
  // with its own id (1..127, as a size-class id would be).
  void* raw = mmap(nullptr, kHeapBytes + (1u << kRegionShift), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    std::perror("micro_mincore_bench: mmap");
    return 1;
  }
  uintptr_t heap_base = (reinterpret_cast<uintptr_t>(raw) + (1u << kRegionShift) - 1) &
                        ~((uintptr_t{1} << kRegionShift) - 1);
  uint8_t* heap = reinterpret_cast<uint8_t*>(heap_base);
  for (size_t off = 0; off < kHeapBytes; off += page) heap[off] = 0x5A;
  auto heap_id = [&](const uint8_t* p) -> uint8_t {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (a < heap_base || a >= heap_base + kHeapBytes) return 0;
    return static_cast<uint8_t>(1 + ((a - heap_base) >> kRegionShift) % 127);
  };
  if (region_map != nullptr)
    for (size_t off = 0; off < kHeapBytes; off += size_t{1} << kRegionShift)
      region_map[(heap_base + off) >> kRegionShift] = heap_id(heap + off);

  // The pointer set: even indices in our heap, odd ones from malloc (foreign).
  std::vector<uint8_t*> ptrs(npointers);
  std::vector<uint8_t*> foreign;
  std::vector<size_t> foreign_size;
  size_t near_page_start = 0;
  for (size_t i = 0; i < npointers; ++i) {
    if (i % 2 == 0) {
      // A block start: 16-byte aligned, at least 16 bytes into the heap.
      ptrs[i] = heap + 16 + rng.below((kHeapBytes - 32) / 16) * 16;
    } else {
      size_t size = rng.range(16, 1024);
      uint8_t* p = static_cast<uint8_t*>(std::malloc(size));
      bench::check_alloc(p, size, "micro_mincore_bench");
      bench::fill_block(p, size, i);
      foreign.push_back(p);
      foreign_size.push_back(size);
      ptrs[i] = p;
    }
    if ((reinterpret_cast<uintptr_t>(ptrs[i]) & (page - 1)) < 16) ++near_page_start;
  }

  // Check every method's answer once before timing it.
  for (uint8_t* p : ptrs) {
    unsigned char vec = 0;
    uintptr_t pg = (reinterpret_cast<uintptr_t>(p) - 1) & ~(uintptr_t{page} - 1);
    // Our heap's pages are all touched, so mincore must see them. For malloc's blocks the
    // page before may be unmapped or not resident (a block at the start of a fresh mapping):
    // any answer is right there, and the methods then read no header.
    const bool resident = mincore(reinterpret_cast<void*>(pg), 1, &vec) == 0 && (vec & 1) != 0;
    if (heap_id(p) != 0 && !resident) wrong("mincore", p, 0, 1);
    if (region_map != nullptr && region_map[reinterpret_cast<uintptr_t>(p) >> kRegionShift] !=
                                     heap_id(p))
      wrong("region map", p, region_map[reinterpret_cast<uintptr_t>(p) >> kRegionShift],
            heap_id(p));
  }

  // (a) mincore always, then the header byte.
  auto mincore_always = [page](uint8_t* p) -> uint64_t {
    unsigned char vec = 0;
    uintptr_t pg = (reinterpret_cast<uintptr_t>(p) - 1) & ~(uintptr_t{page} - 1);
    if (mincore(reinterpret_cast<void*>(pg), 1, &vec) != 0 || (vec & 1) == 0) return 0;
    return p[-1];
  };
  // (b) hybrid: mincore only when p-1 may be on another page.
  auto hybrid = [page](uint8_t* p) -> uint64_t {
    if ((reinterpret_cast<uintptr_t>(p) & (page - 1)) < 16) [[unlikely]] {
      unsigned char vec = 0;
      uintptr_t pg = (reinterpret_cast<uintptr_t>(p) - 1) & ~(uintptr_t{page} - 1);
      if (mincore(reinterpret_cast<void*>(pg), 1, &vec) != 0 || (vec & 1) == 0) return 0;
    }
    return p[-1];
  };
  // (c) region map: one load.
  auto region_lookup = [region_map](uint8_t* p) -> uint64_t {
    return region_map[reinterpret_cast<uintptr_t>(p) >> kRegionShift];
  };

  Timing a = time_method(ptrs, iterations, mincore_always);
  Timing b = time_method(ptrs, iterations, hybrid);
  Timing c{0, 0};
  if (region_map != nullptr) c = time_method(ptrs, iterations, region_lookup);

  for (size_t i = 0; i < foreign.size(); ++i) {
    bench::check_block(foreign[i], foreign_size[i], 2 * i + 1, "micro_mincore_bench");
    std::free(foreign[i]);
  }

  std::printf("micro_mincore_bench: iterations = %" PRIu64 ", pointers = %" PRIu64
              " (half heap, half malloc), page = %zu, near a page start = %.2f%%\n",
              iterations, npointers, page, 100.0 * double(near_page_start) / double(npointers));
  std::printf("%-16s %12s %14s\n", "method", "ns/call", "cycles/call");
  std::printf("%-16s %12.2f %14.1f\n", "mincore_always", a.ns_per_call, a.cycles_per_call);
  std::printf("%-16s %12.2f %14.1f\n", "hybrid", b.ns_per_call, b.cycles_per_call);
  if (region_map != nullptr) {
    std::printf("%-16s %12.2f %14.1f\n", "region_map", c.ns_per_call, c.cycles_per_call);
    bench::print_throughput(double(iterations), c.ns_per_call * 1e-9 * double(iterations));
  } else {
    bench::print_throughput(double(iterations), b.ns_per_call * 1e-9 * double(iterations));
  }
  if (!HAVE_TSC) std::printf("(no TSC on this architecture: cycles are 0)\n");
  bench::print_peak_rss();
  return 0;
}
