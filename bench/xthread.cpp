// xthread — cross-thread producer/consumer: blocks allocated in one thread, freed in another.
//
//   xthread [producers] [consumers] [blocks_per_producer] [min_size] [max_size] [batch] [seed]
//   defaults: 2          2           2000000               16         256        64      1
//
// In the manner of xmalloc-test (the "xmalloc" stress test by Lever and Boreham, used in
// mimalloc-bench; independent implementation): <producers> threads allocate blocks of random
// size in [min_size, max_size], fill them, and pass them in batches of <batch> through a
// bounded queue to <consumers> threads, which check and free them. No block is ever freed by
// the thread that allocated it, so this is the worst case for allocators with per-thread
// caches: every free is remote, and the memory must flow back to the producers.
//
// The queue holds at most 64 batches per consumer; producers wait when it is full, so live
// memory is bounded by about producers x batch + queue x batch blocks.
// Throughput = blocks / elapsed (one op = one malloc in a producer + one free in a consumer).
//
// When the process may run on at least as many CPUs as there are threads, each thread is
// pinned to a CPU of its own, so that every free crosses cores as the benchmark means it to.
// Unpinned, one producer and one consumer on a 2-CPU machine ran either on two CPUs or, in
// some rounds, time-sharing one (no block crossing caches: 3x faster), and the medians of
// a few rounds depended on which. With more threads than CPUs the scheduler places them.
// Smoke: xthread 1 1 20000
#include "bench_queue.h"
#include "bench_util.h"

#include <pthread.h>
#include <sched.h>

#include <cstdlib>
#include <thread>
#include <vector>

namespace {

const char kUsage[] =
    "usage: xthread [producers] [consumers] [blocks_per_producer] [min_size] [max_size] [batch] "
    "[seed]\n"
    "  producers            allocating threads, 1-1024 (default 2)\n"
    "  consumers            freeing threads, 1-1024 (default 2)\n"
    "  blocks_per_producer  blocks each producer allocates, 1-10000000000 (default 2000000)\n"
    "  min_size max_size    block size range, 1-16777216, min <= max (default 16 256)\n"
    "  batch                blocks per queue transfer, 1-65536 (default 64)\n"
    "  seed                 random seed (default 1)\n";

struct Block {
  void* p;
  uint32_t size;
  uint64_t tag;
};
using Batch = std::vector<Block>;

using BatchQueue = bench::BatchQueue<Batch>;

}  // namespace

int main(int argc, char** argv) {
  if (argc > 8) bench::usage_exit(kUsage, "too many arguments");
  const unsigned producers = bench::arg_u64(argc, argv, 1, "producers", 2, 1, 1024, kUsage);
  const unsigned consumers = bench::arg_u64(argc, argv, 2, "consumers", 2, 1, 1024, kUsage);
  const uint64_t per_producer =
      bench::arg_u64(argc, argv, 3, "blocks_per_producer", 2000000, 1, 10000000000ull, kUsage);
  const uint64_t min_size = bench::arg_u64(argc, argv, 4, "min_size", 16, 1, 1 << 24, kUsage);
  const uint64_t max_size =
      bench::arg_u64(argc, argv, 5, "max_size", 256, min_size, 1 << 24, kUsage);
  const uint64_t batch = bench::arg_u64(argc, argv, 6, "batch", 64, 1, 65536, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 7, "seed", 1, 0, UINT64_MAX, kUsage);
  const double live_bound = double(producers + 64.0 * consumers) * double(batch) * double(max_size);
  if (live_bound > 16.0 * (1ull << 30)) bench::usage_exit(kUsage, "live memory bound exceeds 16 GiB");

  BatchQueue queue(64 * size_t{consumers});
  queue.set_producers(producers);
  std::vector<uint64_t> freed(consumers, 0);

  auto producer = [&](unsigned index) {
    bench::Rng rng(seed * 7919 + index);
    uint64_t tag = uint64_t{index} << 40;
    Batch b;
    b.reserve(batch);
    for (uint64_t i = 0; i < per_producer; ++i) {
      size_t size = rng.range(min_size, max_size);
      void* p = std::malloc(size);
      bench::check_alloc(p, size, "xthread");
      bench::fill_block(p, size, ++tag);
      bench::escape(p);
      b.push_back(Block{p, static_cast<uint32_t>(size), tag});
      if (b.size() == batch) {
        queue.push(std::move(b));
        b = Batch();
        b.reserve(batch);
      }
    }
    if (!b.empty()) queue.push(std::move(b));
    queue.producer_done();
  };
  auto consumer = [&](unsigned index) {
    Batch b;
    uint64_t n = 0;
    while (queue.pop(b)) {
      for (const Block& blk : b) {
        bench::check_block(blk.p, blk.size, blk.tag, "xthread");
        std::free(blk.p);
      }
      n += b.size();
    }
    freed[index] = n;
  };

  // CPUs for the threads (consumers first), when there is one for each.
  std::vector<int> cpus;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  const bool pin = cpus.size() >= size_t{producers} + consumers;
  auto pin_to = [&](std::thread& t, size_t slot) {
    if (!pin) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[slot], &one);
    pthread_setaffinity_np(t.native_handle(), sizeof one, &one);  // best effort
  };

  const double start = bench::now_seconds();
  std::vector<std::thread> threads;
  for (unsigned c = 0; c < consumers; ++c) {
    threads.emplace_back(consumer, c);
    pin_to(threads.back(), c);
  }
  for (unsigned p = 0; p < producers; ++p) {
    threads.emplace_back(producer, p);
    pin_to(threads.back(), consumers + p);
  }
  for (std::thread& t : threads) t.join();
  const double elapsed = bench::now_seconds() - start;

  uint64_t total = 0;
  for (uint64_t n : freed) total += n;
  if (total != per_producer * producers) {
    std::fprintf(stderr, "xthread: freed %" PRIu64 " blocks, expected %" PRIu64 "\n", total,
                 per_producer * producers);
    return 1;
  }
  std::printf("xthread: producers = %u, consumers = %u, blocks = %" PRIu64
              ", sizes = [%" PRIu64 ", %" PRIu64 "], batch = %" PRIu64 ", threads %s\n",
              producers, consumers, total, min_size, max_size, batch,
              pin ? "pinned one per CPU" : "not pinned");
  std::printf("Elapsed = %.3f s\n", elapsed);
  bench::print_throughput(double(total), elapsed);
  bench::print_peak_rss();
  return 0;
}
