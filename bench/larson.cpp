// larson — the Larson server benchmark.
//
// After P.-A. Larson and M. Krishnan, "Memory Allocation for Long-Running Server
// Applications", ISMM 1998, in the form used by mimalloc-bench (this is an independent
// implementation of the published description). It models a server whose worker threads each
// hold a set of live objects of random sizes, replace them at random, and are themselves
// replaced over time: an object is often freed by a different thread than the one that
// allocated it.
//
//   larson <seconds> <min_size> <max_size> <chunks_per_thread> <rounds> <seed> <threads>
//
// * There are <threads> lanes running at once. Each lane owns <chunks_per_thread> slots, filled
//   by the main thread before the clock starts (so the first frees are already cross-thread).
// * A lane's thread repeats <rounds> x <chunks_per_thread> operations: pick a random slot, check
//   and free its block, allocate a block of random size in [min_size, max_size], fill it.
//   Then it starts a NEW thread that takes over the lane's slots and exits: blocks allocated by
//   one thread are freed by its successor.
// * After <seconds>, a stop flag is raised; each lane's current thread notices it within 256
//   operations and finishes. The main thread checks and frees every remaining block.
// * One operation = one free + one malloc. Throughput = operations / elapsed wall time.
//   If max_size < min_size the two are swapped (the original smoke command relies on it).
//
// Memory is bounded by threads x chunks_per_thread x max_size (checked up front).
// Each block carries a pattern (bench_util.h) that is verified before it is freed; a mismatch
// ends the run with "MEMORY CHECK FAILED" and exit status 3, before any throughput is printed.
//
// Smoke command (the original hakmem's): larson_hakmem 1 5 1 1000 100 10000 42
#include "bench_util.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace {

const char kUsage[] =
    "usage: larson <seconds> <min_size> <max_size> <chunks_per_thread> <rounds> <seed> "
    "<threads>\n"
    "  seconds            run time, 0.01-3600 (fractions allowed)\n"
    "  min_size max_size  block size range in bytes, 1-268435456 (swapped if max < min)\n"
    "  chunks_per_thread  live blocks per thread, 1-10000000\n"
    "  rounds             a thread does rounds x chunks operations, then hands over to a new "
    "thread, 1-1000000000\n"
    "  seed               random seed\n"
    "  threads            concurrent threads, 1-4096\n"
    "example (smoke): larson 1 5 1 1000 100 10000 42\n";

struct Slot {
  char* p;
  size_t size;
  uint64_t tag;
};

struct Config {
  double seconds;
  size_t min_size, max_size;
  size_t chunks;
  uint64_t rounds;
  uint64_t seed;
  unsigned threads;
};

// One lane: the state a chain of threads passes from one to the next. Only the lane's current
// thread touches it; thread creation orders the hand-over (happens-before).
struct Lane {
  unsigned index;
  std::vector<Slot> slots;
  bench::Rng rng{0};
  uint64_t next_tag = 0;
  uint64_t ops = 0;
  uint64_t threads_started = 0;
};

Config g_cfg;
std::atomic<bool> g_stop{false};
std::mutex g_done_mu;
std::condition_variable g_done_cv;
unsigned g_lanes_done = 0;

// A tag unique across lanes: lane index in the top 16 bits, a per-lane counter below.
uint64_t new_tag(Lane* lane) { return (uint64_t{lane->index} << 48) | lane->next_tag++; }

void replace_block(Lane* lane, Slot& s) {
  bench::check_block(s.p, s.size, s.tag, "larson");
  std::free(s.p);
  size_t size = lane->rng.range(g_cfg.min_size, g_cfg.max_size);
  char* p = static_cast<char*>(std::malloc(size));
  bench::check_alloc(p, size, "larson");
  s.p = p;
  s.size = size;
  s.tag = new_tag(lane);
  bench::fill_block(p, size, s.tag);
  bench::escape(p);
}

void lane_thread(Lane* lane) {
  for (;;) {
    const uint64_t batch = g_cfg.rounds * g_cfg.chunks;
    for (uint64_t i = 0; i < batch; ++i) {
      if ((i & 255) == 0 && g_stop.load(std::memory_order_relaxed)) break;
      replace_block(lane, lane->slots[lane->rng.below(g_cfg.chunks)]);
      ++lane->ops;
    }
    if (g_stop.load(std::memory_order_relaxed)) break;
    // Hand the lane to a new thread. If the system refuses one (thread limit), keep going here.
    try {
      ++lane->threads_started;
      std::thread(lane_thread, lane).detach();
      return;
    } catch (const std::system_error&) {
      --lane->threads_started;
    }
  }
  std::lock_guard<std::mutex> lock(g_done_mu);
  ++g_lanes_done;
  g_done_cv.notify_one();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) bench::usage_exit(kUsage, argc == 1 ? nullptr : "expected 7 arguments");
  const uint64_t kMaxSize = uint64_t{1} << 28;
  g_cfg.seconds = bench::arg_seconds(argc, argv, 1, "seconds", 1, 0.01, 3600, kUsage);
  g_cfg.min_size = bench::arg_u64(argc, argv, 2, "min_size", 0, 1, kMaxSize, kUsage);
  g_cfg.max_size = bench::arg_u64(argc, argv, 3, "max_size", 0, 1, kMaxSize, kUsage);
  g_cfg.chunks = bench::arg_u64(argc, argv, 4, "chunks_per_thread", 0, 1, 10000000, kUsage);
  g_cfg.rounds = bench::arg_u64(argc, argv, 5, "rounds", 0, 1, 1000000000, kUsage);
  g_cfg.seed = bench::arg_u64(argc, argv, 6, "seed", 0, 0, UINT64_MAX, kUsage);
  g_cfg.threads = bench::arg_u64(argc, argv, 7, "threads", 0, 1, 4096, kUsage);
  if (g_cfg.max_size < g_cfg.min_size) std::swap(g_cfg.min_size, g_cfg.max_size);
  const double bound = double(g_cfg.threads) * double(g_cfg.chunks) * double(g_cfg.max_size);
  if (bound > 64.0 * (1ull << 30))
    bench::usage_exit(kUsage, "threads x chunks_per_thread x max_size exceeds 64 GiB");

  // The main thread fills every lane (the "warm-up" of the original).
  std::vector<Lane> lanes(g_cfg.threads);
  for (unsigned t = 0; t < g_cfg.threads; ++t) {
    Lane& lane = lanes[t];
    lane.index = t;
    lane.rng = bench::Rng(g_cfg.seed * 1000003 + t);
    lane.slots.resize(g_cfg.chunks);
    for (Slot& s : lane.slots) {
      s.size = lane.rng.range(g_cfg.min_size, g_cfg.max_size);
      s.p = static_cast<char*>(std::malloc(s.size));
      bench::check_alloc(s.p, s.size, "larson");
      s.tag = new_tag(&lane);
      bench::fill_block(s.p, s.size, s.tag);
    }
  }

  const double start = bench::now_seconds();
  unsigned started = 0;
  for (Lane& lane : lanes) {
    try {
      lane.threads_started = 1;
      std::thread(lane_thread, &lane).detach();
      ++started;
    } catch (const std::system_error& e) {
      std::fprintf(stderr, "larson: cannot start thread %u of %u: %s\n", started + 1,
                   g_cfg.threads, e.what());
      std::exit(1);
    }
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(g_cfg.seconds));
  g_stop.store(true, std::memory_order_relaxed);
  {
    std::unique_lock<std::mutex> lock(g_done_mu);
    g_done_cv.wait(lock, [] { return g_lanes_done == g_cfg.threads; });
  }
  const double elapsed = bench::now_seconds() - start;

  uint64_t ops = 0, threads_started = 0;
  for (Lane& lane : lanes) {
    ops += lane.ops;
    threads_started += lane.threads_started;
    for (Slot& s : lane.slots) {
      bench::check_block(s.p, s.size, s.tag, "larson");
      std::free(s.p);
    }
  }

  std::printf("Larson: threads = %u, sizes = [%zu, %zu], chunks/thread = %zu, rounds = %" PRIu64
              ", seed = %" PRIu64 "\n",
              g_cfg.threads, g_cfg.min_size, g_cfg.max_size, g_cfg.chunks, g_cfg.rounds,
              g_cfg.seed);
  std::printf("Elapsed = %.3f s\n", elapsed);
  std::printf("Operations = %" PRIu64 " (free + malloc pairs), threads created = %" PRIu64 "\n",
              ops, threads_started);
  bench::print_throughput(double(ops), elapsed);
  bench::print_peak_rss();
  return 0;
}
