// mid_large_mix — random churn of Mid and Large blocks (1 KiB to 1 MiB), optionally threaded.
//
//   mid_large_mix [cycles] [ws] [seed] [min_size] [max_size] [threads]
//   defaults:      1000000  256  1      1024       1048576    1
//
// Like bench_random_mixed, but for the tiers above Tiny: each thread owns <ws> slots; each
// cycle picks a random slot and frees its block (after checking it) or allocates a new one.
// Sizes are drawn log-uniformly from [min_size, max_size] (every power-of-two band equally
// likely), as real programs allocate many more 4 KiB buffers than 900 KiB ones; a uniform draw
// would make almost every block larger than 512 KiB. A new block has its pattern written and
// one byte stored in each 4 KiB page, as a program filling a buffer would, so an allocator
// that returns memory to the OS on every free pays the page faults again on the next malloc —
// that cost is part of what this measures, next to span management and caching.
//
// Throughput = cycles (all threads) / elapsed. Peak RSS shows what the caching costs.
// Smoke: mid_large_mix 2000 32
#include "bench_util.h"

#include <cmath>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

const char kUsage[] =
    "usage: mid_large_mix [cycles] [ws] [seed] [min_size] [max_size] [threads]\n"
    "  cycles    random malloc-or-free steps per thread, 1-10000000000 (default 1000000)\n"
    "  ws        working-set slots per thread, 1-1000000 (default 256)\n"
    "  seed      random seed (default 1)\n"
    "  min_size  smallest block, 1-1073741824 (default 1024)\n"
    "  max_size  largest block, min_size-1073741824 (default 1048576)\n"
    "  threads   threads, each with its own slots, 1-256 (default 1)\n";

struct Slot {
  char* p;
  size_t size;
  uint64_t tag;
};

struct Params {
  uint64_t cycles, ws, seed, min_size, max_size;
};

void run_thread(const Params& prm, unsigned index) {
  std::vector<Slot> slots(prm.ws, Slot{nullptr, 0, 0});
  bench::Rng rng(prm.seed * 104729 + index);
  const double log_lo = std::log2(double(prm.min_size));
  const double log_span = std::log2(double(prm.max_size) + 1) - log_lo;
  uint64_t next_tag = uint64_t{index} << 40;
  for (uint64_t i = 0; i < prm.cycles; ++i) {
    Slot& s = slots[rng.below(prm.ws)];
    if (s.p != nullptr) {
      bench::check_block(s.p, s.size, s.tag, "mid_large_mix");
      std::free(s.p);
      s.p = nullptr;
      continue;
    }
    double u = double(rng.next() >> 11) * 0x1.0p-53;
    size_t size = static_cast<size_t>(std::exp2(log_lo + u * log_span));
    if (size < prm.min_size) size = prm.min_size;
    if (size > prm.max_size) size = prm.max_size;
    char* p = static_cast<char*>(std::malloc(size));
    bench::check_alloc(p, size, "mid_large_mix");
    for (size_t off = 4096; off < size; off += 4096) p[off] = static_cast<char>(i);
    s.tag = ++next_tag;
    bench::fill_block(p, size, s.tag);  // after the page touches: they may hit the windows
    bench::escape(p);
    s.p = p;
    s.size = size;
  }
  for (Slot& s : slots) {
    if (s.p == nullptr) continue;
    bench::check_block(s.p, s.size, s.tag, "mid_large_mix");
    std::free(s.p);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 7) bench::usage_exit(kUsage, "too many arguments");
  Params prm;
  prm.cycles = bench::arg_u64(argc, argv, 1, "cycles", 1000000, 1, 10000000000ull, kUsage);
  prm.ws = bench::arg_u64(argc, argv, 2, "ws", 256, 1, 1000000, kUsage);
  prm.seed = bench::arg_u64(argc, argv, 3, "seed", 1, 0, UINT64_MAX, kUsage);
  prm.min_size = bench::arg_u64(argc, argv, 4, "min_size", 1024, 1, 1u << 30, kUsage);
  prm.max_size = bench::arg_u64(argc, argv, 5, "max_size", 1 << 20, prm.min_size, 1u << 30, kUsage);
  const unsigned threads = bench::arg_u64(argc, argv, 6, "threads", 1, 1, 256, kUsage);
  if (double(threads) * double(prm.ws) * double(prm.max_size) > 64.0 * (1ull << 30))
    bench::usage_exit(kUsage, "threads x ws x max_size exceeds 64 GiB");

  const double start = bench::now_seconds();
  if (threads == 1) {
    run_thread(prm, 0);
  } else {
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(run_thread, std::cref(prm), t);
    for (std::thread& t : pool) t.join();
  }
  const double elapsed = bench::now_seconds() - start;

  std::printf("mid_large_mix: cycles = %" PRIu64 " x %u threads, ws = %" PRIu64 ", sizes = [%" PRIu64
              ", %" PRIu64 "] log-uniform, seed = %" PRIu64 "\n",
              prm.cycles, threads, prm.ws, prm.min_size, prm.max_size, prm.seed);
  std::printf("Elapsed = %.3f s\n", elapsed);
  bench::print_throughput(double(prm.cycles) * threads, elapsed);
  bench::print_peak_rss();
  return 0;
}
