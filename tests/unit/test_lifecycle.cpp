// Lifecycle regressions found in review: allocation from other libraries' thread-exit hooks
// after hakmem's own ran, remote frees into the heaps of exited threads, and malloc_trim
// racing with threads that need a new SuperSlab.
#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "hakmem.h"

namespace {

void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

pthread_key_t g_key;

// A key destructor that keeps its key set for every round glibc runs (4) and allocates each
// time. hakmem's key was created first, so in the last round hakmem's hook has already run.
void allocating_destructor(void* v) {
  long round = reinterpret_cast<long>(v);
  void* p = malloc(48);
  escape(p);
  free(p);
  if (round < 8) pthread_setspecific(g_key, reinterpret_cast<void*>(round + 1));
}

void* keyed_worker(void*) {
  void* p = malloc(32);
  escape(p);
  free(p);
  pthread_setspecific(g_key, reinterpret_cast<void*>(1));
  return nullptr;
}

}  // namespace

Test(lifecycle, malloc_in_the_last_destructor_round_leaks_no_heap) {
  void* p = malloc(16);
  escape(p);
  free(p);  // hakmem set up (its key exists) before ours
  cr_assert_eq(pthread_key_create(&g_key, allocating_destructor), 0);
  hak_stats_t before, after;
  hak_stats_get(&before);
  for (int i = 0; i < 100; ++i) {
    pthread_t t;
    cr_assert_eq(pthread_create(&t, nullptr, keyed_worker, nullptr), 0);
    pthread_join(t, nullptr);
  }
  hak_stats_get(&after);
  cr_assert_eq(after.threads_live, before.threads_live,
               "thread heaps live: %lu before, %lu after 100 exited threads", (unsigned long)before.threads_live,
               (unsigned long)after.threads_live);
  cr_assert_leq(after.slabs_in_use, before.slabs_in_use + 4, "slab runs grew from %lu to %lu",
                (unsigned long)before.slabs_in_use, (unsigned long)after.slabs_in_use);
}

Test(lifecycle, remote_frees_into_exited_threads_heaps_are_returned_without_trim, .timeout = 60) {
  hak_trim();
  hak_stats_t start;
  hak_stats_get(&start);
  constexpr int kThreads = 4, kBlocks = 100000;
  std::vector<void*> blocks(size_t(kThreads) * kBlocks);
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kBlocks; ++i) blocks[size_t(t) * kBlocks + size_t(i)] = malloc(64);
    });
  }
  for (auto& th : producers) th.join();
  hak_stats_t full;
  hak_stats_get(&full);
  for (void* b : blocks) free(b);  // remote frees into the exited producers' heaps
  // Keep reaching slow paths for up to 5 s; decay must collect the parked heaps.
  hak_stats_t now = full;
  for (int ms = 0; ms < 5000 && now.slabs_in_use > start.slabs_in_use + 16; ms += 10) {
    std::vector<void*> churn;
    for (int i = 0; i < 2000; ++i) churn.push_back(malloc(48));  // one class: few runs of its own
    for (void* c : churn) free(c);
    usleep(10000);
    hak_stats_get(&now);
  }
  cr_assert_leq(now.slabs_in_use, start.slabs_in_use + 16,
                "slab runs: %lu at start, %lu when full, still %lu 5 s after every block was freed",
                (unsigned long)start.slabs_in_use, (unsigned long)full.slabs_in_use, (unsigned long)now.slabs_in_use);
}

Test(lifecycle, trim_racing_with_new_superslabs_never_fails_an_allocation, .timeout = 60) {
  std::atomic<bool> stop{false};
  std::atomic<long> nulls{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&] {
      void* held[80];
      while (!stop.load(std::memory_order_relaxed)) {
        for (auto& h : held) {
          h = malloc(32768);
          if (h == nullptr) nulls.fetch_add(1);
        }
        for (auto& h : held) free(h);
      }
    });
  }
  std::thread trimmer([&] {
    while (!stop.load(std::memory_order_relaxed)) malloc_trim(0);
  });
  usleep(3 * 1000 * 1000);
  stop = true;
  for (auto& w : workers) w.join();
  trimmer.join();
  cr_assert_eq(nulls.load(), 0, "malloc returned NULL %ld times while memory was available", nulls.load());
}
