// large_reuse — big buffers allocated, filled and freed again and again, a few to tens live.
//
//   large_reuse [ops] [live] [min_mib] [max_mib] [seed] [fill]
//   defaults:    2000  20     5         25        1      1
//
// The shape of a program that builds images, decompresses archives or serialises documents
// into fresh buffers: <live> slots; each op picks a random slot, checks and frees its buffer
// (if any) and allocates a new one of a size drawn log-uniformly from [min_mib, max_mib] MiB
// (rounded down to 4 KiB). fill = 1 writes the whole buffer (memset, as a program filling it
// would), fill = 0 one byte per 4 KiB page. Either way every page is touched, so an allocator
// that hands the pages back to the OS on free pays a page fault per 4 KiB on the next use:
// that is what this measures. The pattern windows (bench_util.h) are written after the fill
// and checked before the free.
//
// Output: throughput in bytes allocated and filled per second, the minor page faults of the timed part per
// buffer (getrusage; zero means every buffer reused resident memory), and peak RSS.
// Smoke: large_reuse 40 4 1 4
#include "bench_util.h"

#include <cmath>
#include <vector>

namespace {

const char kUsage[] =
    "usage: large_reuse [ops] [live] [min_mib] [max_mib] [seed] [fill]\n"
    "  ops      buffers allocated (each frees the slot's previous one), 1-10000000 (default 2000)\n"
    "  live     slots, the most buffers live at once, 1-1000 (default 20)\n"
    "  min_mib  smallest buffer in MiB, 1-1024 (default 5)\n"
    "  max_mib  largest buffer in MiB, min_mib-1024 (default 25)\n"
    "  seed     random seed (default 1)\n"
    "  fill     1: write every byte, 0: one byte per 4 KiB page (default 1)\n";

struct Slot {
  char* p;
  size_t size;
  uint64_t tag;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 7) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t ops = bench::arg_u64(argc, argv, 1, "ops", 2000, 1, 10000000, kUsage);
  const uint64_t live = bench::arg_u64(argc, argv, 2, "live", 20, 1, 1000, kUsage);
  const uint64_t min_mib = bench::arg_u64(argc, argv, 3, "min_mib", 5, 1, 1024, kUsage);
  const uint64_t max_mib = bench::arg_u64(argc, argv, 4, "max_mib", 25, min_mib, 1024, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 5, "seed", 1, 0, UINT64_MAX, kUsage);
  const bool fill = bench::arg_u64(argc, argv, 6, "fill", 1, 0, 1, kUsage) != 0;
  if (double(live) * double(max_mib) > 16.0 * 1024)
    bench::usage_exit(kUsage, "live x max_mib exceeds 16 GiB");

  std::vector<Slot> slots(live, Slot{nullptr, 0, 0});
  bench::Rng rng(seed);
  const double log_lo = std::log2(double(min_mib) * 1048576.0);
  const double log_span = std::log2(double(max_mib) * 1048576.0 + 1) - log_lo;
  uint64_t next_tag = 0, bytes = 0;
  const long faults0 = bench::minor_faults();
  const double start = bench::now_seconds();
  for (uint64_t i = 0; i < ops; ++i) {
    Slot& s = slots[rng.below(live)];
    if (s.p != nullptr) {
      bench::check_block(s.p, s.size, s.tag, "large_reuse");
      std::free(s.p);
    }
    double u = double(rng.next() >> 11) * 0x1.0p-53;
    size_t size = static_cast<size_t>(std::exp2(log_lo + u * log_span)) & ~size_t{4095};
    if (size < min_mib << 20) size = min_mib << 20;
    if (size > max_mib << 20) size = max_mib << 20;
    char* p = static_cast<char*>(std::malloc(size));
    bench::check_alloc(p, size, "large_reuse");
    if (fill) {
      std::memset(p, int(i & 0xff), size);
    } else {
      for (size_t off = 0; off < size; off += 4096) p[off] = static_cast<char>(i);
    }
    s.tag = ++next_tag;
    bench::fill_block(p, size, s.tag);
    bench::escape(p);
    s.p = p;
    s.size = size;
    bytes += size;
  }
  const double elapsed = bench::now_seconds() - start;
  const long faults = bench::minor_faults() - faults0;
  for (Slot& s : slots) {
    if (s.p == nullptr) continue;
    bench::check_block(s.p, s.size, s.tag, "large_reuse");
    std::free(s.p);
  }

  std::printf("large_reuse: ops = %" PRIu64 ", live = %" PRIu64 ", sizes = [%" PRIu64 ", %" PRIu64
              "] MiB log-uniform, fill = %d, seed = %" PRIu64 "\n",
              ops, live, min_mib, max_mib, int(fill), seed);
  std::printf("Elapsed = %.3f s\n", elapsed);
  std::printf("Bytes = %.1f MiB\n", double(bytes) / 1048576.0);
  std::printf("Page faults = %ld (%.1f per buffer, %.3f per 4 KiB used)\n", faults, double(faults) / double(ops),
              double(faults) / (double(bytes) / 4096.0));
  bench::print_throughput(double(bytes), elapsed);
  bench::print_peak_rss();
  return 0;
}
