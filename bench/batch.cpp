// batch — allocate N blocks of one size, then free all N; repeat with other N and sizes.
//
//   batch [rounds] [min_n] [max_n] [min_size] [max_size] [seed] [order]
//   defaults: 20000  25      1600    16         4096       1      0
//
// The pattern of glibc's own malloc benchmark (bench-malloc-simple: a batch of N
// same-sized allocations, then their frees) and of programs that build a structure and
// drop it whole (a parser's nodes, a request's buffers). Each round draws N log-uniformly in
// [min_n, max_n] and the size log-uniformly in [min_size, max_size], allocates the N blocks
// (each gets the pattern of bench_util.h), then checks and frees them: order 0 frees in
// allocation order (FIFO), 1 in reverse (LIFO), 2 in a shuffled order. A batch bigger than the
// thread cache of its class is what this measures: the refill and flush paths, not the hit.
//
// Throughput = blocks / elapsed (one op = one malloc + one free). Peak RSS shows what the
// batches leave behind.
// Smoke: batch 200 25 200
#include "bench_util.h"

#include <cmath>
#include <vector>

namespace {

const char kUsage[] =
    "usage: batch [rounds] [min_n] [max_n] [min_size] [max_size] [seed] [order]\n"
    "  rounds     batches, 1-100000000 (default 20000)\n"
    "  min_n      fewest blocks in a batch, 1-1000000 (default 25)\n"
    "  max_n      most blocks in a batch, min_n-1000000 (default 1600)\n"
    "  min_size   smallest block, 1-1048576 (default 16)\n"
    "  max_size   largest block, min_size-1048576 (default 4096)\n"
    "  seed       random seed (default 1)\n"
    "  order      0: free in allocation order, 1: reverse, 2: shuffled (default 0)\n";

double log_uniform(bench::Rng& rng, double lo, double hi) {
  double u = double(rng.next() >> 11) * 0x1.0p-53;
  return std::exp2(std::log2(lo) + u * (std::log2(hi + 1) - std::log2(lo)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 8) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t rounds = bench::arg_u64(argc, argv, 1, "rounds", 20000, 1, 100000000, kUsage);
  const uint64_t min_n = bench::arg_u64(argc, argv, 2, "min_n", 25, 1, 1000000, kUsage);
  const uint64_t max_n = bench::arg_u64(argc, argv, 3, "max_n", 1600, min_n, 1000000, kUsage);
  const uint64_t min_size = bench::arg_u64(argc, argv, 4, "min_size", 16, 1, 1 << 20, kUsage);
  const uint64_t max_size = bench::arg_u64(argc, argv, 5, "max_size", 4096, min_size, 1 << 20, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 6, "seed", 1, 0, UINT64_MAX, kUsage);
  const uint64_t order = bench::arg_u64(argc, argv, 7, "order", 0, 0, 2, kUsage);
  if (double(max_n) * double(max_size) > 4.0 * (1ull << 30)) bench::usage_exit(kUsage, "max_n x max_size exceeds 4 GiB");

  std::vector<void*> blocks(max_n);
  std::vector<uint32_t> idx(max_n);
  bench::Rng rng(seed);
  uint64_t ops = 0, tag = 0;
  const double start = bench::now_seconds();
  for (uint64_t r = 0; r < rounds; ++r) {
    size_t n = size_t(log_uniform(rng, double(min_n), double(max_n)));
    if (n < min_n) n = min_n;
    if (n > max_n) n = max_n;
    size_t size = size_t(log_uniform(rng, double(min_size), double(max_size)));
    if (size < min_size) size = min_size;
    if (size > max_size) size = max_size;
    const uint64_t tag0 = tag;
    for (size_t i = 0; i < n; ++i) {
      void* p = std::malloc(size);
      bench::check_alloc(p, size, "batch");
      bench::fill_block(p, size, ++tag);
      blocks[i] = p;
    }
    for (size_t i = 0; i < n; ++i) idx[i] = uint32_t(order == 1 ? n - 1 - i : i);
    if (order == 2) {
      for (size_t i = n; i > 1; --i) std::swap(idx[i - 1], idx[rng.below(i)]);
    }
    for (size_t k = 0; k < n; ++k) {
      size_t i = idx[k];
      bench::check_block(blocks[i], size, tag0 + 1 + i, "batch");
      std::free(blocks[i]);
    }
    ops += n;
  }
  const double elapsed = bench::now_seconds() - start;

  std::printf("batch: rounds = %" PRIu64 ", n = [%" PRIu64 ", %" PRIu64 "], sizes = [%" PRIu64 ", %" PRIu64
              "] log-uniform, order = %s, seed = %" PRIu64 ", %" PRIu64 " blocks\n",
              rounds, min_n, max_n, min_size, max_size, order == 0 ? "fifo" : order == 1 ? "lifo" : "shuffled", seed, ops);
  std::printf("Elapsed = %.3f s\n", elapsed);
  bench::print_throughput(double(ops), elapsed);
  bench::print_peak_rss();
  return 0;
}
