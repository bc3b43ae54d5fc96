// after_peak — what a program keeps resident after its peak, when the blocks that survive the
// peak are scattered among those freed.
//
//   after_peak [count] [size] [keep_percent] [seconds] [seed] [sizes]
//   defaults:   8000    16384  10             2.5       1      0
//
// Allocates <count> blocks of <size> bytes and fills them (the peak), frees all but a random
// <keep_percent> of them, then goes on with light work for <seconds>: small blocks (64 to
// 1024 bytes) allocated and freed in bursts of 1000 with a 1 ms pause between, as a server's
// quiet hours would, their sizes drawn at random (sizes 0) or taken in order, 64, 65, ...
// 1024, 64, ... (sizes 1: runs of requests of one size class). The resident set (/proc/self/statm) is read before the peak, at it,
// right after the frees and at the end; the survivors are checked at the end.
//
//   Overhead = (RSS at the end - RSS before) / bytes still live
//
// 1.00 would be perfect. An allocator that keeps a part-used run, page or slab resident as
// long as one of its blocks lives keeps nearly the whole peak (about 1/keep_percent x 100);
// one that gives back the free pages inside them, or coalesces and trims, comes down.
// Throughput = blocks allocated at the peak per second (including the fill).
// Smoke: after_peak 300 16384 10 0.05
#include "bench_util.h"

#include <unistd.h>

#include <cstdlib>
#include <vector>

namespace {

const char kUsage[] =
    "usage: after_peak [count] [size] [keep_percent] [seconds] [seed]\n"
    "  count         blocks at the peak, 1-10000000 (default 8000)\n"
    "  size          block size in bytes, 16-16777216 (default 16384)\n"
    "  keep_percent  blocks that survive the peak, 1-100 (default 10)\n"
    "  seconds       light work after the frees, 0-3600 (default 2.5)\n"
    "  seed          random seed (default 1)\n"
    "  sizes         light work's sizes: 0 random, 1 in order (default 0)\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc > 7) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t count = bench::arg_u64(argc, argv, 1, "count", 8000, 1, 10000000, kUsage);
  const uint64_t size = bench::arg_u64(argc, argv, 2, "size", 16384, 16, 1 << 24, kUsage);
  const uint64_t keep = bench::arg_u64(argc, argv, 3, "keep_percent", 10, 1, 100, kUsage);
  const double seconds = bench::arg_seconds(argc, argv, 4, "seconds", 2.5, 0, 3600, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 5, "seed", 1, 0, UINT64_MAX, kUsage);
  const bool in_order = bench::arg_u64(argc, argv, 6, "sizes", 0, 0, 1, kUsage) == 1;
  if (double(count) * double(size) > 16.0 * (1ull << 30)) bench::usage_exit(kUsage, "count x size exceeds 16 GiB");

  std::vector<char*> ptrs(count, nullptr);
  std::vector<char*> small(64, nullptr);
  std::vector<uint32_t> small_size(64, 0);
  std::vector<uint64_t> small_tag(64, 0);
  bench::Rng rng(seed);
  {
    void* warm = std::malloc(size);
    bench::escape(warm);
    std::free(warm);
  }
  const long long before = bench::current_rss_bytes();
  const double start = bench::now_seconds();
  for (uint64_t i = 0; i < count; ++i) {
    char* p = static_cast<char*>(std::malloc(size));
    bench::check_alloc(p, size, "after_peak");
    std::memset(p, static_cast<int>(i), size);
    bench::fill_block(p, size, i + 1);
    ptrs[i] = p;
  }
  const double elapsed = bench::now_seconds() - start;
  const long long peak = bench::current_rss_bytes();

  uint64_t live = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (rng.range(0, 99) < keep) {
      live += size;
      continue;
    }
    bench::check_block(ptrs[i], size, i + 1, "after_peak");
    std::free(ptrs[i]);
    ptrs[i] = nullptr;
  }
  const long long freed = bench::current_rss_bytes();

  const double quiet_start = bench::now_seconds();
  uint64_t bursts = 0;
  while (bench::now_seconds() - quiet_start < seconds) {
    for (int j = 0; j < 1000; ++j) {
      const size_t k = size_t(j) % small.size();
      if (small[k] != nullptr) {
        bench::check_block(small[k], small_size[k], small_tag[k], "after_peak (light work)");
        std::free(small[k]);
      }
      small_size[k] = in_order ? uint32_t(64 + (bursts * 1000 + uint64_t(j)) % 961) : uint32_t(rng.range(64, 1024));
      small[k] = static_cast<char*>(std::malloc(small_size[k]));
      bench::check_alloc(small[k], small_size[k], "after_peak (light work)");
      small_tag[k] = bursts * 1000 + uint64_t(j) + 1;
      bench::fill_block(small[k], small_size[k], small_tag[k]);
    }
    ++bursts;
    usleep(1000);
  }
  const long long end = bench::current_rss_bytes();
  for (uint64_t i = 0; i < count; ++i)
    if (ptrs[i] != nullptr) {
      bench::check_block(ptrs[i], size, i + 1, "after_peak");
      std::free(ptrs[i]);
    }
  for (size_t k = 0; k < small.size(); ++k) {
    if (small[k] != nullptr) bench::check_block(small[k], small_size[k], small_tag[k], "after_peak (light work)");
    std::free(small[k]);
  }

  std::printf("after_peak: count = %" PRIu64 ", size = %" PRIu64 ", %" PRIu64 " %% kept, %.2f s of light work (sizes %s)\n",
              count, size, keep, seconds, in_order ? "in order" : "random");
  std::printf("RSS before = %lld KiB, at the peak = %lld KiB, after the frees = %lld KiB, at the end = %lld KiB, "
              "live = %" PRIu64 " KiB\n",
              before / 1024, peak / 1024, freed / 1024, end / 1024, live / 1024);
  std::printf("Overhead = %.3f resident bytes per live byte at the end\n", live == 0 ? 0.0 : double(end - before) / double(live));
  bench::print_throughput(double(count), elapsed);
  bench::print_peak_rss();
  return 0;
}
