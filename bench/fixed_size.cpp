// fixed_size — the hot path: malloc and free of one size in a tight loop.
//
//   fixed_size [iterations] [size] [batch]
//   defaults:   20000000     64     1
//
// Each iteration allocates <batch> blocks of <size> bytes, stores a tag in each, then checks
// and frees them in the same order. With batch = 1 this is a malloc/free pair on a warm
// thread cache: the best case, and what scripts/callgrind.sh turns into "instructions per
// pair" (it runs two iteration counts and divides the difference, so start-up cancels out).
// Larger batches make the allocator walk its free list further and refill it from slabs.
// Run it per size class (16, 64, 256, 1024 …) to see each class's fast path.
//
// The check here is lighter than elsewhere on purpose (8 bytes, or the whole block if
// smaller: written after malloc, compared before free), so the loop stays a few instructions
// beyond the allocator's own; blocks handed out twice in a batch are still caught.
// Throughput = iterations x batch / elapsed (one op = one malloc + one free).
// Smoke: fixed_size 100000 64
#include "bench_util.h"

#include <cstdlib>
#include <vector>

namespace {

const char kUsage[] =
    "usage: fixed_size [iterations] [size] [batch]\n"
    "  iterations  loop count, 1-100000000000 (default 20000000)\n"
    "  size        block size in bytes, 1-1073741824 (default 64)\n"
    "  batch       blocks allocated before they are freed, 1-1000000 (default 1)\n";

// The tag stored at the start of a block: 8 bytes of it, or the whole block when smaller.
// (Constant-size copies: a variable-length memcpy would compile to a slow `rep movsb`.)
inline void put_tag(char* p, size_t n, uint64_t tag) {
  if (n >= 8) [[likely]] {
    std::memcpy(p, &tag, 8);
  } else {
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<char>(tag >> (8 * i));
  }
}
inline void check_tag(const char* p, size_t n, uint64_t tag) {
  uint64_t got = 0, want = tag;
  if (n >= 8) [[likely]] {
    std::memcpy(&got, p, 8);
  } else {
    for (size_t i = 0; i < n; ++i) got |= uint64_t(uint8_t(p[i])) << (8 * i);
    want &= (uint64_t{1} << (8 * n)) - 1;
  }
  if (got != want) [[unlikely]]
    bench::memory_error("fixed_size", p, n, tag, 0, unsigned(got & 0xFF), unsigned(want & 0xFF));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 4) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t iterations =
      bench::arg_u64(argc, argv, 1, "iterations", 20000000, 1, 100000000000ull, kUsage);
  const uint64_t size = bench::arg_u64(argc, argv, 2, "size", 64, 1, 1u << 30, kUsage);
  const uint64_t batch = bench::arg_u64(argc, argv, 3, "batch", 1, 1, 1000000, kUsage);
  if (double(size) * double(batch) > 16.0 * (1ull << 30))
    bench::usage_exit(kUsage, "size x batch exceeds 16 GiB");

  std::vector<char*> blocks(batch);
  // Tags count from a value whose low bytes change every iteration, so that even a 1-byte
  // block handed out twice shows a mismatch.
  uint64_t tag = 0x0101010101010101ull;
  const double start = bench::now_seconds();
  if (batch == 1) {
    for (uint64_t i = 0; i < iterations; ++i) {
      char* p = static_cast<char*>(std::malloc(size));
      bench::check_alloc(p, size, "fixed_size");
      put_tag(p, size, ++tag);
      bench::escape(p);
      check_tag(p, size, tag);
      std::free(p);
    }
  } else {
    for (uint64_t i = 0; i < iterations; ++i) {
      for (uint64_t k = 0; k < batch; ++k) {
        char* p = static_cast<char*>(std::malloc(size));
        bench::check_alloc(p, size, "fixed_size");
        put_tag(p, size, tag + k);
        bench::escape(p);
        blocks[k] = p;
      }
      for (uint64_t k = 0; k < batch; ++k) {
        check_tag(blocks[k], size, tag + k);
        std::free(blocks[k]);
      }
      tag += batch;
    }
  }
  const double elapsed = bench::now_seconds() - start;

  std::printf("fixed_size: iterations = %" PRIu64 ", size = %" PRIu64 ", batch = %" PRIu64 "\n",
              iterations, size, batch);
  std::printf("Elapsed = %.3f s, %.2f ns per malloc+free\n", elapsed,
              elapsed * 1e9 / (double(iterations) * double(batch)));
  bench::print_throughput(double(iterations) * double(batch), elapsed);
  bench::print_peak_rss();
  return 0;
}
