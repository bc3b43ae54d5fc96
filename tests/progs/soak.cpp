// soak.cpp — long randomized differential soak (scripts/soak.sh), for use under LD_PRELOAD.
//
//   soak SECONDS [THREADS=4] [SEED=from the clock]
//
// THREADS driver threads each run rounds of the differential model of tests/api/diff_model.h
// (every API call checked against the model; each driver has a worker thread that frees
// blocks handed to it and hands back blocks it allocated; fork checks), one new seed per
// round, until the time is up. A sampler records the resident set every 250 ms. At the end it
// prints the rounds, ops and RSS figures (start/min/max/end, and the peak of the first and
// last thirds after a warm-up) and exits 0, 1 on a check failure (the failing seed is printed:
// HAKMEM_DIFF_SEED=<seed> out/<v>/tests/test_differential --filter '*/custom' replays it, in
// a process of its own), or 3 if the resident set grew: last-third peak > 1.25 × first-third
// peak + 32 MiB. Every round frees everything it allocated, so a heap that returns memory
// keeps a flat profile.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "../api/diff_model.h"

namespace {

std::atomic<bool> g_stop{false};
std::atomic<uint64_t> g_rounds{0}, g_ops{0}, g_forks{0}, g_crossed{0};
std::mutex g_err_mu;
char g_err[1200];
bool g_failed = false;

double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

size_t rss_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, res = 0;
  if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
  fclose(f);
  return size_t(res) * size_t(sysconf(_SC_PAGESIZE));
}

void driver(int id, uint64_t base_seed) {
  for (uint64_t round = 0; !g_stop.load(std::memory_order_relaxed); ++round) {
    uint64_t seed = diff::mix64(base_seed + (uint64_t(id) << 40) + round);
    diff::RunConfig cfg;
    cfg.ops = 40000;
    cfg.max_live = 2000;
    cfg.max_bytes = 32u << 20;
    cfg.handoff_every = 500;
    cfg.forks = round % 4 == 0 ? 1 : 0;  // forks from a busy multi-threaded process
    diff::RunResult res = diff::run_differential(seed, cfg);
    g_ops += res.ops_done;
    g_forks += res.forks;
    g_crossed += res.blocks_crossed;
    if (!res.ok) {
      std::lock_guard<std::mutex> lk(g_err_mu);
      if (!g_failed) {
        g_failed = true;
        snprintf(g_err, sizeof g_err, "driver %d round %llu: %s (replay: HAKMEM_DIFF_SEED=%llu)", id,
                 (unsigned long long)round, res.error, (unsigned long long)seed);
      }
      g_stop = true;
      return;
    }
    ++g_rounds;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s SECONDS [THREADS=4] [SEED]\n", argv[0]);
    return 2;
  }
  double seconds = atof(argv[1]);
  int threads = argc > 2 ? atoi(argv[2]) : 4;
  uint64_t seed = argc > 3 ? strtoull(argv[3], nullptr, 0) : uint64_t(time(nullptr));
  bool on_hakmem = dlsym(RTLD_DEFAULT, "hak_malloc") != nullptr;
  printf("soak: %.0f s, %d driver threads (+%d workers), seed %llu, allocator: %s\n", seconds, threads, threads,
         (unsigned long long)seed, on_hakmem ? "hakmem" : "not hakmem (LD_PRELOAD missing?)");
  fflush(stdout);

  std::vector<size_t> samples;
  samples.reserve(size_t(seconds * 4) + 16);
  size_t start_rss = rss_bytes();
  double t0 = now_s();
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) ts.emplace_back(driver, i, seed);
  double next_report = t0 + 30;
  while (!g_stop.load()) {
    usleep(250000);
    samples.push_back(rss_bytes());
    double t = now_s();
    if (t - t0 >= seconds) break;
    if (t >= next_report) {
      printf("  %4.0f s: %llu rounds, %llu ops, rss %.1f MiB\n", t - t0, (unsigned long long)g_rounds.load(),
             (unsigned long long)g_ops.load(), double(samples.back()) / 1048576.0);
      fflush(stdout);
      next_report += 30;
    }
  }
  g_stop = true;
  for (auto& t : ts) t.join();
  double elapsed = now_s() - t0;
  size_t end_rss = rss_bytes();
  if (g_failed) {
    printf("soak: FAIL: %s\n", g_err);
    return 1;
  }
  size_t mn = start_rss, mx = start_rss;
  for (size_t s : samples) {
    mn = s < mn ? s : mn;
    mx = s > mx ? s : mx;
  }
  // Drift: after a warm-up (first 10% of the samples), compare the peaks of the first and
  // last thirds.
  size_t warm = samples.size() / 10, rest = samples.size() - warm, third = rest / 3;
  size_t first_peak = 0, last_peak = 0;
  for (size_t i = 0; i < third; ++i) first_peak = samples[warm + i] > first_peak ? samples[warm + i] : first_peak;
  for (size_t i = samples.size() - third; i < samples.size(); ++i) last_peak = samples[i] > last_peak ? samples[i] : last_peak;
  bool grew = third > 0 && double(last_peak) > 1.25 * double(first_peak) + 32.0 * 1048576.0;
  auto mib = [](size_t b) { return double(b) / 1048576.0; };
  printf("soak: %.1f s, %llu rounds, %llu ops (%.0f ops/s), %llu forks, %llu blocks crossed threads\n", elapsed,
         (unsigned long long)g_rounds.load(), (unsigned long long)g_ops.load(), double(g_ops.load()) / elapsed,
         (unsigned long long)g_forks.load(), (unsigned long long)g_crossed.load());
  printf("soak: rss start %.1f MiB, min %.1f, max %.1f, end %.1f (%zu samples)\n", mib(start_rss), mib(mn), mib(mx),
         mib(end_rss), samples.size());
  printf("soak: rss drift: first-third peak %.1f MiB, last-third peak %.1f MiB: %s\n", mib(first_peak), mib(last_peak),
         third == 0 ? "too short to judge" : grew ? "GREW beyond 1.25x + 32 MiB" : "flat (within 1.25x + 32 MiB)");
  return grew ? 3 : 0;
}
