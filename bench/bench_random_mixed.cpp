// bench_random_mixed — single-thread random churn of small objects.
//
//   bench_random_mixed [cycles] [ws] [seed] [min_size] [max_size]
//   defaults:           10000000  8192  1     16         1040
//
// A working set of <ws> slots starts empty. Each cycle picks a random slot: if it holds a
// block, the block is checked and freed; otherwise a block of random size in
// [min_size, max_size] is allocated, filled with its pattern and its first byte written (as a
// program would initialise a new object). In steady state about half the slots are live, so
// the heap holds ws/2 objects of mixed sizes that are allocated and freed in random order —
// the pattern that defeats simple LIFO caches and exercises size-class lookup, free-list reuse
// and fragmentation. The 16-1040 default range straddles hakmem's Tiny/Mid boundary (1 KiB).
//
// Prints "Throughput = N ops/s" (one op = one cycle: a malloc or a free) and the peak RSS.
// Smoke: bench_random_mixed 100000 256
#include "bench_util.h"

#include <cstdlib>
#include <vector>

namespace {

const char kUsage[] =
    "usage: bench_random_mixed [cycles] [ws] [seed] [min_size] [max_size]\n"
    "  cycles    random malloc-or-free steps, 1-10000000000 (default 10000000)\n"
    "  ws        working-set slots, 1-100000000 (default 8192)\n"
    "  seed      random seed (default 1)\n"
    "  min_size  smallest block in bytes, 1-268435456 (default 16)\n"
    "  max_size  largest block in bytes, min_size-268435456 (default 1040)\n";

struct Slot {
  char* p;
  size_t size;
  uint64_t tag;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 6) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t cycles = bench::arg_u64(argc, argv, 1, "cycles", 10000000, 1, 10000000000ull, kUsage);
  const uint64_t ws = bench::arg_u64(argc, argv, 2, "ws", 8192, 1, 100000000, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 3, "seed", 1, 0, UINT64_MAX, kUsage);
  const uint64_t min_size = bench::arg_u64(argc, argv, 4, "min_size", 16, 1, 1u << 28, kUsage);
  const uint64_t max_size =
      bench::arg_u64(argc, argv, 5, "max_size", 1040, min_size, 1u << 28, kUsage);
  if (double(ws) * double(max_size) > 64.0 * (1ull << 30))
    bench::usage_exit(kUsage, "ws x max_size exceeds 64 GiB");

  std::vector<Slot> slots(ws, Slot{nullptr, 0, 0});
  bench::Rng rng(seed);
  uint64_t next_tag = 1, mallocs = 0;

  const double start = bench::now_seconds();
  for (uint64_t i = 0; i < cycles; ++i) {
    Slot& s = slots[rng.below(ws)];
    if (s.p != nullptr) {
      bench::check_block(s.p, s.size, s.tag, "bench_random_mixed");
      std::free(s.p);
      s.p = nullptr;
    } else {
      size_t size = rng.range(min_size, max_size);
      char* p = static_cast<char*>(std::malloc(size));
      bench::check_alloc(p, size, "bench_random_mixed");
      s.tag = next_tag++;
      bench::fill_block(p, size, s.tag);  // includes the first byte
      bench::escape(p);
      s.p = p;
      s.size = size;
      ++mallocs;
    }
  }
  const double elapsed = bench::now_seconds() - start;

  for (Slot& s : slots) {
    if (s.p == nullptr) continue;
    bench::check_block(s.p, s.size, s.tag, "bench_random_mixed");
    std::free(s.p);
  }
  std::printf("bench_random_mixed: cycles = %" PRIu64 ", ws = %" PRIu64 ", sizes = [%" PRIu64
              ", %" PRIu64 "], seed = %" PRIu64 "\n",
              cycles, ws, min_size, max_size, seed);
  std::printf("Elapsed = %.3f s, mallocs = %" PRIu64 ", frees = %" PRIu64 "\n", elapsed, mallocs,
              mallocs);
  bench::print_throughput(double(cycles), elapsed);
  bench::print_peak_rss();
  return 0;
}
