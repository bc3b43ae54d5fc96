// realloc_grow — a buffer grown by realloc, the way a string builder, a vector of bytes or a
// serialiser's output grows: from 4 KiB up to max_mib MiB, each step by `factor`/100 (200:
// doubling; 150: CPython's and many vectors' 1.5×, 125: CPython's list growth), writing the
// new part after every step (every byte, as an appender does), then freed; `rounds` times.
//
//   realloc_grow [rounds] [max_mib] [factor] [seed]
//   defaults:     20       256       200      1
//
// An allocator that copies on every growth pays the copy and the page faults of a fresh
// buffer at each step; one that grows in place (free pages after the block) or moves the pages
// (mremap) pays neither. The contents are checked after every step (a pattern in the first,
// middle and last words of the old part), so a realloc that loses data fails the run.
//
// Output: throughput in bytes appended per second (every round appends max_mib MiB), minor
// page faults per round, peak RSS.
// Smoke: realloc_grow 2 8
#include "bench_util.h"

namespace {

const char kUsage[] =
    "usage: realloc_grow [rounds] [max_mib] [factor] [seed]\n"
    "  rounds   buffers grown from 4 KiB to max_mib and freed, 1-100000 (default 20)\n"
    "  max_mib  final size in MiB, 1-4096 (default 256)\n"
    "  factor   growth per step in percent, 110-400 (default 200: doubling)\n"
    "  seed     random seed for the contents (default 1)\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc > 5) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t rounds = bench::arg_u64(argc, argv, 1, "rounds", 20, 1, 100000, kUsage);
  const uint64_t max_mib = bench::arg_u64(argc, argv, 2, "max_mib", 256, 1, 4096, kUsage);
  const uint64_t factor = bench::arg_u64(argc, argv, 3, "factor", 200, 110, 400, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 4, "seed", 1, 0, UINT64_MAX, kUsage);
  const size_t max_bytes = size_t(max_mib) << 20;

  uint64_t steps = 0;
  const long faults0 = bench::minor_faults();
  const double start = bench::now_seconds();
  for (uint64_t r = 0; r < rounds; ++r) {
    const uint64_t tag = bench::mix64(seed + r);
    size_t size = 4096;
    char* p = static_cast<char*>(std::malloc(size));
    bench::check_alloc(p, size, "realloc_grow");
    std::memset(p, int(tag & 0xff), size);
    bench::fill_block(p, size, tag);
    while (size < max_bytes) {
      size_t next = size / 100 * factor;
      if (next > max_bytes) next = max_bytes;
      char* q = static_cast<char*>(std::realloc(p, next));
      bench::check_alloc(q, next, "realloc_grow");
      bench::check_block(q, size, tag, "realloc_grow");  // the old contents moved intact
      std::memset(q + size, int(tag & 0xff), next - size);
      bench::fill_block(q, next, tag);
      bench::escape(q);
      p = q;
      size = next;
      ++steps;
    }
    bench::check_block(p, size, tag, "realloc_grow");
    std::free(p);
  }
  const double elapsed = bench::now_seconds() - start;
  const long faults = bench::minor_faults() - faults0;

  std::printf("realloc_grow: rounds = %" PRIu64 ", 4 KiB -> %" PRIu64 " MiB by %" PRIu64 "%%, %" PRIu64
              " reallocs\n",
              rounds, max_mib, factor, steps);
  std::printf("Elapsed = %.3f s\n", elapsed);
  std::printf("Page faults = %ld (%.0f per round; the final buffer alone is %zu pages)\n", faults,
              double(faults) / double(rounds), max_bytes / 4096);
  bench::print_throughput(double(rounds) * double(max_bytes), elapsed);
  bench::print_peak_rss();
  return 0;
}
