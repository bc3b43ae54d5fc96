// memory_return — how much of what a program freed is back with the OS once it goes idle.
//
//   memory_return [kind] [amount] [idle_ms] [seed]
//   defaults:      0      1024     2000      1
//
// kind 0: <amount> MiB of blocks of 16 to 256 bytes (sizes at random) allocated and filled,
//         then all freed;
// kind 1: <amount> MiB of 1 MiB blocks, the same way;
// kind 2: <amount> threads, 8 at a time, each allocating 64 blocks of 16 to 256 bytes,
//         filling them, freeing them and exiting (what a thread pool that keeps replacing its
//         threads leaves behind: their caches and heaps).
// Then the program sleeps for <idle_ms> without a single allocator call (no malloc_trim): an
// allocator that returns memory only from inside malloc or free keeps what it holds. The
// resident set (/proc/self/statm) is read before, at the peak, right after the frees and at
// the end; the pointer array is the program's own mapping (its pages are not counted in the
// peak), unmapped before the frees are measured.
//
//   Overhead = (RSS at the end - RSS before) / bytes freed
//   Returned = (RSS at the peak - RSS at the end) / (RSS at the peak - RSS before)  (kinds 0, 1)
//
// 0 would be perfect (everything back); 1 keeps it all. Every block is checked before it is
// freed. Throughput = blocks allocated (and filled) per second.
// Smoke: memory_return 0 8 50
#include "bench_util.h"

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include <cstdlib>

namespace {

const char kUsage[] =
    "usage: memory_return [kind] [amount] [idle_ms] [seed]\n"
    "  kind     0: blocks of 16-256 B, 1: blocks of 1 MiB, 2: threads that start and exit (default 0)\n"
    "  amount   MiB allocated (kinds 0, 1: 1-65536, default 1024) or threads (kind 2: 1-1000000,\n"
    "           default 16000)\n"
    "  idle_ms  sleep after the frees, no allocator call, 0-600000 (default 2000)\n"
    "  seed     random seed (default 1)\n";

constexpr size_t kMiB = size_t(1) << 20;
constexpr int kThreadBlocks = 64;
constexpr int kThreadsAtOnce = 8;

void sleep_ms(uint64_t ms) {
  timespec t{time_t(ms / 1000), long(ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0) {
  }
}

struct ThreadArg {
  uint64_t seed;
  uint64_t bytes;  // out: what the thread allocated
};

void* thread_body(void* v) {
  ThreadArg* a = static_cast<ThreadArg*>(v);
  bench::Rng rng(a->seed);
  void* blocks[kThreadBlocks];
  size_t sizes[kThreadBlocks];
  uint64_t bytes = 0;
  for (int i = 0; i < kThreadBlocks; ++i) {
    sizes[i] = size_t(rng.range(16, 256));
    blocks[i] = std::malloc(sizes[i]);
    bench::check_alloc(blocks[i], sizes[i], "memory_return (thread)");
    bench::fill_block(blocks[i], sizes[i], a->seed + uint64_t(i));
    bytes += sizes[i];
  }
  for (int i = 0; i < kThreadBlocks; ++i) {
    bench::check_block(blocks[i], sizes[i], a->seed + uint64_t(i), "memory_return (thread)");
    std::free(blocks[i]);
  }
  a->bytes = bytes;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 5) bench::usage_exit(kUsage, "too many arguments");
  const uint64_t kind = bench::arg_u64(argc, argv, 1, "kind", 0, 0, 2, kUsage);
  const uint64_t amount = kind == 2 ? bench::arg_u64(argc, argv, 2, "amount", 16000, 1, 1000000, kUsage)
                                    : bench::arg_u64(argc, argv, 2, "amount", 1024, 1, 65536, kUsage);
  const uint64_t idle_ms = bench::arg_u64(argc, argv, 3, "idle_ms", 2000, 0, 600000, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 4, "seed", 1, 0, UINT64_MAX, kUsage);

  {
    void* warm = std::malloc(64);
    bench::escape(warm);
    std::free(warm);
  }
  const long long before = bench::current_rss_bytes();
  long long peak = before;
  uint64_t blocks = 0, freed_bytes = 0;
  double elapsed = 0;

  if (kind == 2) {
    const double start = bench::now_seconds();
    ThreadArg args[kThreadsAtOnce];
    pthread_t th[kThreadsAtOnce];
    for (uint64_t done = 0; done < amount;) {
      const int n = amount - done < kThreadsAtOnce ? int(amount - done) : kThreadsAtOnce;
      for (int i = 0; i < n; ++i) {
        args[i] = ThreadArg{seed * 1000003 + (done + uint64_t(i)) * uint64_t(kThreadBlocks), 0};
        if (pthread_create(&th[i], nullptr, thread_body, &args[i]) != 0) {
          std::fprintf(stderr, "memory_return: pthread_create failed after %" PRIu64 " threads\n", done);
          return 1;
        }
      }
      for (int i = 0; i < n; ++i) {
        pthread_join(th[i], nullptr);
        freed_bytes += args[i].bytes;
      }
      done += uint64_t(n);
      blocks += uint64_t(n) * kThreadBlocks;
      const long long now = bench::current_rss_bytes();
      if (now > peak) peak = now;
    }
    elapsed = bench::now_seconds() - start;
  } else {
    const size_t total = size_t(amount) * kMiB;
    // At most one pointer per 16 bytes, in the program's own mapping (not the heap), touched
    // in order: its resident pages are subtracted from the peak. The sizes are drawn again
    // from the same seed at the frees.
    const size_t slots = kind == 0 ? total / 16 + 1 : size_t(amount);
    const size_t array_bytes = slots * sizeof(char*);
    char** ptrs = static_cast<char**>(mmap(nullptr, array_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (ptrs == MAP_FAILED) {
      std::fprintf(stderr, "memory_return: cannot map the pointer array\n");
      return 1;
    }
    bench::Rng rng(seed);
    const double start = bench::now_seconds();
    uint64_t bytes = 0;
    while (bytes < total) {
      const size_t n = kind == 0 ? size_t(rng.range(16, 256)) : kMiB;
      char* p = static_cast<char*>(std::malloc(n));
      bench::check_alloc(p, n, "memory_return");
      if (kind == 1) std::memset(p, int(blocks), n);
      bench::fill_block(p, n, blocks + 1);
      ptrs[blocks++] = p;
      bytes += n;
    }
    elapsed = bench::now_seconds() - start;
    const long long array_resident = (long long)((blocks * sizeof(char*) + 4095) & ~uint64_t(4095));
    peak = bench::current_rss_bytes() - array_resident;
    bench::Rng again(seed);
    for (uint64_t i = 0; i < blocks; ++i) {
      const size_t n = kind == 0 ? size_t(again.range(16, 256)) : kMiB;
      bench::check_block(ptrs[i], n, i + 1, "memory_return");
      std::free(ptrs[i]);
    }
    freed_bytes = bytes;
    munmap(ptrs, array_bytes);
  }
  const long long after_free = bench::current_rss_bytes();
  sleep_ms(idle_ms);
  const long long end = bench::current_rss_bytes();

  static const char* const kKinds[] = {"blocks of 16-256 B", "blocks of 1 MiB", "threads that start and exit"};
  if (kind == 2)
    std::printf("memory_return: %" PRIu64 " %s (%d at a time, %d blocks each), then %" PRIu64 " ms idle\n", amount,
                kKinds[kind], kThreadsAtOnce, kThreadBlocks, idle_ms);
  else
    std::printf("memory_return: %" PRIu64 " MiB in %s, all freed, then %" PRIu64 " ms idle\n", amount, kKinds[kind], idle_ms);
  std::printf("RSS before = %lld KiB, at the peak = %lld KiB, after the frees = %lld KiB, at the end = %lld KiB "
              "(%+lld KiB)\n",
              before / 1024, peak / 1024, after_free / 1024, end / 1024, (end - before) / 1024);
  if (kind != 2 && peak > before)
    std::printf("Returned = %.1f %% of the peak's growth\n", 100.0 * double(peak - end) / double(peak - before));
  std::printf("Overhead = %.4f resident bytes per freed byte at the end\n",
              freed_bytes == 0 ? 0.0 : double(end - before) / double(freed_bytes));
  bench::print_throughput(double(blocks), elapsed);
  bench::print_peak_rss();
  return 0;
}
