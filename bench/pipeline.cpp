// pipeline — blocks of many sizes passed down a pipeline of threads and freed there, with
// idle periods: the shape of a server whose reader threads allocate requests, worker threads
// turn each into a response (a new block of another size; the request is freed) and writer
// threads free the responses.
//
//   pipeline [producers] [workers] [consumers] [blocks_per_producer] [min_size] [max_size]
//            [batch] [idle_every] [idle_us] [seed]
//   defaults: 2 2 2 300000 16 32768 64 50 500 1
//
// Sizes are log-uniform in [min_size, max_size] (as many 16-32 B blocks as 16-32 KiB ones).
// A producer allocates and fills blocks and hands them in batches to the workers' queue; it
// pauses idle_us microseconds after every idle_every batches (0: never), as a server does
// between bursts. A worker checks each block, allocates the response (another random size,
// filled), frees the request, and hands the responses on; a consumer checks and frees them.
// Every free is in a thread that did not allocate the block: requests are freed one stage
// down, responses two. Queues hold at most 64 batches per reading thread.
//
// Throughput = requests through the pipeline / elapsed (each: two mallocs, two remote frees).
// Smoke: pipeline 1 1 1 20000
#include "bench_queue.h"
#include "bench_util.h"

#include <cmath>
#include <thread>
#include <vector>

namespace {

const char kUsage[] =
    "usage: pipeline [producers] [workers] [consumers] [blocks_per_producer] [min_size] [max_size]\n"
    "                [batch] [idle_every] [idle_us] [seed]\n"
    "  producers workers consumers  threads per stage, 1-256 each (default 2 2 2)\n"
    "  blocks_per_producer          requests each producer makes, 1-1000000000 (default 300000)\n"
    "  min_size max_size            block sizes, log-uniform, 1-16777216 (default 16 32768)\n"
    "  batch                        blocks per queue transfer, 1-65536 (default 64)\n"
    "  idle_every idle_us           a producer pauses idle_us us after idle_every batches,\n"
    "                               0-1000000 each (default 50 500; 0: no pauses)\n"
    "  seed                         random seed (default 1)\n";

struct Block {
  void* p;
  uint32_t size;
  uint64_t tag;
};
using Batch = std::vector<Block>;

struct Sizes {
  double lo, span;
  size_t min, max;
  size_t draw(bench::Rng& rng) const {
    double u = double(rng.next() >> 11) * 0x1.0p-53;
    size_t s = size_t(std::exp2(lo + u * span));
    return s < min ? min : s > max ? max : s;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 11) bench::usage_exit(kUsage, "too many arguments");
  const unsigned producers = unsigned(bench::arg_u64(argc, argv, 1, "producers", 2, 1, 256, kUsage));
  const unsigned workers = unsigned(bench::arg_u64(argc, argv, 2, "workers", 2, 1, 256, kUsage));
  const unsigned consumers = unsigned(bench::arg_u64(argc, argv, 3, "consumers", 2, 1, 256, kUsage));
  const uint64_t per_producer = bench::arg_u64(argc, argv, 4, "blocks_per_producer", 300000, 1, 1000000000, kUsage);
  const uint64_t min_size = bench::arg_u64(argc, argv, 5, "min_size", 16, 1, 1 << 24, kUsage);
  const uint64_t max_size = bench::arg_u64(argc, argv, 6, "max_size", 32768, min_size, 1 << 24, kUsage);
  const uint64_t batch = bench::arg_u64(argc, argv, 7, "batch", 64, 1, 65536, kUsage);
  const uint64_t idle_every = bench::arg_u64(argc, argv, 8, "idle_every", 50, 0, 1000000, kUsage);
  const uint64_t idle_us = bench::arg_u64(argc, argv, 9, "idle_us", 500, 0, 1000000, kUsage);
  const uint64_t seed = bench::arg_u64(argc, argv, 10, "seed", 1, 0, UINT64_MAX, kUsage);
  const double live_bound = double(producers + workers + 64.0 * (workers + consumers)) * double(batch) * double(max_size);
  if (live_bound > 16.0 * (1ull << 30)) bench::usage_exit(kUsage, "live memory bound exceeds 16 GiB");

  const Sizes sizes{std::log2(double(min_size)), std::log2(double(max_size) + 1) - std::log2(double(min_size)),
                    size_t(min_size), size_t(max_size)};
  bench::BatchQueue<Batch> requests(64 * size_t{workers}), responses(64 * size_t{consumers});
  requests.set_producers(producers);
  responses.set_producers(workers);
  std::vector<uint64_t> done(consumers, 0);

  auto producer = [&](unsigned index) {
    bench::Rng rng(seed * 7919 + index);
    uint64_t tag = uint64_t{index} << 40, batches = 0;
    Batch b;
    b.reserve(batch);
    for (uint64_t i = 0; i < per_producer; ++i) {
      size_t size = sizes.draw(rng);
      void* p = std::malloc(size);
      bench::check_alloc(p, size, "pipeline");
      bench::fill_block(p, size, ++tag);
      b.push_back(Block{p, uint32_t(size), tag});
      if (b.size() == batch || i + 1 == per_producer) {
        requests.push(std::move(b));
        b = Batch();
        b.reserve(batch);
        if (idle_every != 0 && ++batches % idle_every == 0 && idle_us != 0)
          std::this_thread::sleep_for(std::chrono::microseconds(idle_us));
      }
    }
    requests.producer_done();
  };
  auto worker = [&](unsigned index) {
    bench::Rng rng(seed * 104729 + index);
    uint64_t tag = (uint64_t{index} + 1024) << 40;
    Batch in, out;
    while (requests.pop(in)) {
      out.clear();
      out.reserve(in.size());
      for (const Block& req : in) {
        bench::check_block(req.p, req.size, req.tag, "pipeline");
        size_t size = sizes.draw(rng);
        void* p = std::malloc(size);
        bench::check_alloc(p, size, "pipeline");
        bench::fill_block(p, size, ++tag);
        std::free(req.p);
        out.push_back(Block{p, uint32_t(size), tag});
      }
      responses.push(std::move(out));
      out = Batch();
    }
    responses.producer_done();
  };
  auto consumer = [&](unsigned index) {
    Batch b;
    uint64_t n = 0;
    while (responses.pop(b)) {
      for (const Block& blk : b) {
        bench::check_block(blk.p, blk.size, blk.tag, "pipeline");
        std::free(blk.p);
      }
      n += b.size();
    }
    done[index] = n;
  };

  const double start = bench::now_seconds();
  std::vector<std::thread> threads;
  for (unsigned c = 0; c < consumers; ++c) threads.emplace_back(consumer, c);
  for (unsigned w = 0; w < workers; ++w) threads.emplace_back(worker, w);
  for (unsigned p = 0; p < producers; ++p) threads.emplace_back(producer, p);
  for (std::thread& t : threads) t.join();
  const double elapsed = bench::now_seconds() - start;

  uint64_t total = 0;
  for (uint64_t n : done) total += n;
  if (total != per_producer * producers) {
    std::fprintf(stderr, "pipeline: %" PRIu64 " responses freed, expected %" PRIu64 "\n", total, per_producer * producers);
    return 1;
  }
  std::printf("pipeline: %u producers -> %u workers -> %u consumers, %" PRIu64 " requests, sizes = [%" PRIu64
              ", %" PRIu64 "] log-uniform, batch = %" PRIu64 ", pause %" PRIu64 " us every %" PRIu64 " batches\n",
              producers, workers, consumers, total, min_size, max_size, batch, idle_us, idle_every);
  std::printf("Elapsed = %.3f s\n", elapsed);
  bench::print_throughput(double(total), elapsed);
  bench::print_peak_rss();
  return 0;
}
