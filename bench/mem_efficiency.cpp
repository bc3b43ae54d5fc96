// mem_efficiency — resident memory per byte of live payload.
//
//   mem_efficiency [count] [size] [seed]
//   defaults:       1000000 64     1
//
// Allocates <count> blocks of <size> bytes (size 0 = random sizes in [16, 1024], drawn with
// <seed>), writes every byte of each (so all of the payload is resident), and compares the
// resident set (/proc/self/statm) before and after:
//
//   overhead = (RSS after - RSS before) / payload bytes
//
// 1.00 is perfect; headers, size-class rounding, slab slack and metadata push it higher. The
// "before" reading is taken after the pointer array exists and after one warm-up malloc/free,
// so the allocator's fixed start-up cost is not charged to the objects. Then half the blocks
// (every other one) are freed and the RSS read again: an allocator that can reuse or release
// the holes keeps the figure low. Finally everything is freed and the RSS after the run is
// reported (what the allocator keeps cached).
// Throughput = allocations per second of the fill phase (including the writes).
// Smoke: mem_efficiency 10000 64
#include "bench_util.h"

#include <cstdlib>
#include <vector>

namespace {

const char kUsage[] =
    "usage: mem_efficiency [count] [size] [seed]\n"
    "  count  live objects, 1-100000000 (default 1000000)\n"
    "  size   object size in bytes, 0-16777216; 0 = random in [16, 1024] (default 64)\n"
    "  seed   random seed for size 0 (default 1)\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc > 4) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t count = bench::arg_u64(argc, argv, 1, "count", 1000000, 1, 100000000, kUsage);
  const uint64_t fixed = bench::arg_u64(argc, argv, 2, "size", 64, 0, 1 << 24, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 3, "seed", 1, 0, UINT64_MAX, kUsage);
  if (double(count) * double(fixed == 0 ? 1024 : fixed) > 16.0 * (1ull << 30))
    bench::usage_exit(kUsage, "count x size exceeds 16 GiB");

  std::vector<char*> ptrs(count, nullptr);
  std::vector<uint32_t> sizes(count);
  bench::Rng rng(seed);
  for (uint64_t i = 0; i < count; ++i) sizes[i] = fixed != 0 ? fixed : rng.range(16, 1024);
  {
    void* warm = std::malloc(fixed != 0 ? fixed : 64);
    bench::escape(warm);
    std::free(warm);
  }

  const long long before = bench::current_rss_bytes();
  uint64_t payload = 0;
  const double start = bench::now_seconds();
  for (uint64_t i = 0; i < count; ++i) {
    size_t n = sizes[i];
    char* p = static_cast<char*>(std::malloc(n));
    bench::check_alloc(p, n, "mem_efficiency");
    std::memset(p, static_cast<int>(i), n);
    bench::fill_block(p, n, i + 1);
    ptrs[i] = p;
    payload += n;
  }
  const double elapsed = bench::now_seconds() - start;
  const long long full = bench::current_rss_bytes();

  uint64_t half_payload = payload;
  for (uint64_t i = 0; i < count; i += 2) {
    bench::check_block(ptrs[i], sizes[i], i + 1, "mem_efficiency");
    std::free(ptrs[i]);
    ptrs[i] = nullptr;
    half_payload -= sizes[i];
  }
  const long long half = bench::current_rss_bytes();
  for (uint64_t i = 1; i < count; i += 2) {
    bench::check_block(ptrs[i], sizes[i], i + 1, "mem_efficiency");
    std::free(ptrs[i]);
  }
  const long long after = bench::current_rss_bytes();

  auto ratio = [](long long rss, long long base, uint64_t bytes) {
    return bytes == 0 ? 0.0 : double(rss - base) / double(bytes);
  };
  if (fixed != 0)
    std::printf("mem_efficiency: count = %" PRIu64 ", size = %" PRIu64 "\n", count, fixed);
  else
    std::printf("mem_efficiency: count = %" PRIu64 ", size = random 16-1024\n", count);
  std::printf("Payload = %" PRIu64 " bytes, RSS before = %lld, full = %lld, half freed = %lld, "
              "all freed = %lld bytes\n",
              payload, before, full, half, after);
  std::printf("Overhead = %.3f resident bytes per payload byte\n", ratio(full, before, payload));
  std::printf("Overhead after freeing half = %.3f resident bytes per live payload byte\n",
              ratio(half, before, half_payload));
  std::printf("Retained after freeing all = %lld KiB\n", (after - before) / 1024);
  bench::print_throughput(double(count), elapsed);
  bench::print_peak_rss();
  return 0;
}
