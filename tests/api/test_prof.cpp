// The heap profiler through its API (hakmem.h: hak_prof_set, hak_prof_dump,
// hak_prof_dump_peak, hak_prof_leak_report), linked with libhakmem.a:
//   - with a mean of 1 byte every allocation of 16 bytes or more is sampled (1 - e^-16), so
//     every block below is a sampled span: each allocation function's contract still holds
//     (sizes, alignment, zeroing, realloc's copy, usable size, C++ new/delete), and the
//     profile counts exactly the blocks held;
//   - the switch: the previous mean returned, off means no block is sampled, the mean's bound;
//   - the dumps: the gperftools header, errors (no profile yet, a bad path, NULL), the peak;
//   - threads sampling at once; a double free of a sampled block reported at the call.
// Precise figures at the default mean are tests/preload/prof.sh's (accuracy against
// google-pprof); this file checks the mechanics.
#include <criterion/criterion.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "canary.h"
#include "death_test.h"
#include "hakmem.h"

namespace {

void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

std::string tmp_path(const char* name) {
  return std::string("/tmp/hakmem_test_prof_") + std::to_string(getpid()) + "_" + name;
}

std::string read_file(const std::string& path) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  close(fd);
  return out;
}

struct Header {
  unsigned long inuse_objs, inuse_bytes, alloc_objs, alloc_bytes, mean;
};

// Dumps (live or peak) and parses the profile's first line.
Header dump(bool peak = false) {
  std::string path = tmp_path(peak ? "peak" : "live");
  int rc = peak ? hak_prof_dump_peak(path.c_str()) : hak_prof_dump(path.c_str());
  cr_assert_eq(rc, 0, "dump failed: errno %d", errno);
  std::string text = read_file(path);
  unlink(path.c_str());
  Header h{};
  cr_assert_eq(sscanf(text.c_str(), "heap profile: %lu: %lu [%lu: %lu] @ heap_v2/%lu", &h.inuse_objs, &h.inuse_bytes,
                      &h.alloc_objs, &h.alloc_bytes, &h.mean),
               5, "bad header: %.80s", text.c_str());
  cr_assert(text.find("\nMAPPED_LIBRARIES:\n") != std::string::npos, "no MAPPED_LIBRARIES section");
  return h;
}

bool is_sampled_span(void* p) {
  // A sampled block is a span of its own: its usable size runs to the end of its page(s).
  size_t u = malloc_usable_size(p);
  return ((reinterpret_cast<uintptr_t>(p) + u) & 4095) == 0;
}

}  // namespace

Test(prof, dump_before_profiling_fails_with_enoent) {
  errno = 0;
  cr_assert_eq(hak_prof_dump(tmp_path("none").c_str()), -1);
  cr_assert_eq(errno, ENOENT);
}

Test(prof, every_allocation_function_works_on_sampled_blocks) {
  cr_assert_eq(hak_prof_set(1), 0u, "the profiler was off");
  std::vector<void*> held;
  for (size_t n : {16, 100, 1000, 5000, 40000, 300000, 3000000}) {
    auto* p = static_cast<unsigned char*>(malloc(n));
    cr_assert_not_null(p);
    cr_assert(is_sampled_span(p), "malloc(%zu) not sampled", n);
    cr_assert_geq(malloc_usable_size(p), n);
    cr_assert_eq(reinterpret_cast<uintptr_t>(p) & 15, 0u);
    memset(p, 0xAB, n);
    held.push_back(p);
  }
  auto* z = static_cast<unsigned char*>(calloc(100, 7));
  cr_assert(is_sampled_span(z));
  for (int i = 0; i < 700; ++i) cr_assert_eq(z[i], 0);
  held.push_back(z);
  for (size_t a : {32, 64, 256, 4096, 65536}) {
    void* p = aligned_alloc(a, 200);
    cr_assert_not_null(p);
    cr_assert_eq(reinterpret_cast<uintptr_t>(p) % a, 0u, "aligned_alloc(%zu)", a);
    cr_assert(is_sampled_span(p), "aligned_alloc(%zu) not sampled", a);
    void* q = nullptr;
    cr_assert_eq(posix_memalign(&q, a, 5000), 0);
    cr_assert_eq(reinterpret_cast<uintptr_t>(q) % a, 0u);
    held.push_back(p);
    held.push_back(q);
  }
  // realloc of a sampled block: a new block with the contents, growing and shrinking.
  auto* r = static_cast<unsigned char*>(malloc(64));
  for (int i = 0; i < 64; ++i) r[i] = static_cast<unsigned char>(i);
  r = static_cast<unsigned char*>(realloc(r, 100000));
  cr_assert_not_null(r);
  for (int i = 0; i < 64; ++i) cr_assert_eq(r[i], i);
  r = static_cast<unsigned char*>(realloc(r, 32));
  for (int i = 0; i < 32; ++i) cr_assert_eq(r[i], i);
  held.push_back(r);
  // C++: new and new[] (delete of each below).
  auto* one = new long[40];
  auto* obj = new std::string(100, 'x');
  escape(one);
  Header h = dump();
  cr_assert_geq(h.inuse_objs, held.size() + 3, "%lu live samples for %zu blocks", h.inuse_objs, held.size() + 3);
  cr_assert_eq(h.mean, 1u);
  unsigned long before = h.inuse_objs;
  for (void* p : held) free(p);
  delete[] one;
  delete obj;
  h = dump();
  cr_assert_leq(h.inuse_objs + held.size() + 3, before + 2, "frees not counted: %lu live before, %lu after", before,
                h.inuse_objs);
  Header peak = dump(true);
  cr_assert_geq(peak.inuse_objs, h.inuse_objs);
  hak_prof_leak_report(5);
  cr_assert_eq(hak_prof_set(0), 1u);
}

Test(prof, the_switch_and_the_mean) {
  cr_assert_eq(hak_prof_set(4096), 0u);
  cr_assert_eq(hak_prof_set(size_t(1) << 40), 4096u);
  cr_assert_eq(hak_prof_set(1), size_t(64) << 20, "the mean is at most 64 MiB");
  void* on = malloc(200);
  cr_assert(is_sampled_span(on));
  cr_assert_eq(hak_prof_set(0), 1u);
  // Off: the class's count, drawn at a mean of 1 byte, runs out at once and finds it off.
  for (int i = 0; i < 1000; ++i) {
    void* p = malloc(200);
    cr_assert(!is_sampled_span(p), "sampled while off");
    cr_assert_eq(malloc_usable_size(p), hak::kCanary ? 200u : 208u);  // secure: the size asked for (canary.h)
    free(p);
  }
  free(on);  // sampled while on, freed while off: still counted out
  cr_assert_eq(dump().inuse_objs, 0u);
}

Test(prof, dump_errors) {
  hak_prof_set(1 << 20);
  errno = 0;
  cr_assert_eq(hak_prof_dump("/nonexistent-dir/x.heap"), -1);
  cr_assert_eq(errno, ENOENT);
  errno = 0;
  cr_assert_eq(hak_prof_dump(nullptr), -1);
  cr_assert_eq(errno, EINVAL);
  hak_prof_set(0);
}

Test(prof, threads_sample_at_once) {
  hak_prof_set(64);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([t] {
      std::vector<void*> v;
      for (int i = 0; i < 20000; ++i) {
        void* p = malloc(16 + size_t((i * 7 + t) % 2000));
        memset(p, t, 16);
        v.push_back(p);
        if (v.size() > 100) {
          free(v.front());
          v.erase(v.begin());
        }
      }
      for (void* p : v) free(p);
    });
  }
  for (auto& t : ts) t.join();
  Header h = dump();
  cr_assert_gt(h.alloc_objs, 10000u, "only %lu samples of 80 000 allocations at a mean of 64 bytes", h.alloc_objs);
  cr_assert_lt(h.inuse_objs, 50u, "%lu samples still live after every block was freed", h.inuse_objs);
  hak_prof_set(0);
}

Test(prof, double_free_of_a_sampled_block_is_reported_at_the_call) {
  death_test::expect_abort("double free of a sampled block", "double free of a span block", [] {
    hak_prof_set(1);
    void* p = malloc(48);
    escape(p);
    free(p);
    free(p);
  });
}

Test(prof, large_realloc_moves_its_sample_along) {
  // Counted by bytes: the test framework's own small allocations come and go meanwhile.
  hak_prof_set(1);
  const unsigned long mib = 1ul << 20;
  unsigned long base = dump().inuse_bytes;
  cr_assert_lt(base, mib);
  size_t n = size_t(2) << 20;
  auto* p = static_cast<unsigned char*>(malloc(n));
  for (size_t i = 0; i < n; i += 4096) p[i] = static_cast<unsigned char>(i >> 12);
  cr_assert_geq(dump().inuse_bytes, n);
  // Grown (in place or by moving pages), shrunk, grown again: one live sample, at the new
  // size, and the contents kept.
  for (size_t m : {size_t(6) << 20, size_t(24) << 20, size_t(3) << 20, size_t(40) << 20}) {
    p = static_cast<unsigned char*>(realloc(p, m));
    cr_assert_not_null(p);
    for (size_t i = 0; i < n && i < m; i += 4096) cr_assert_eq(p[i], static_cast<unsigned char>(i >> 12));
    unsigned long live = dump().inuse_bytes;
    cr_assert(live >= m && live < m + mib, "after realloc to %zu: %lu live bytes sampled", m, live);
    n = m < n ? m : n;
  }
  free(p);
  unsigned long after = dump().inuse_bytes;
  cr_assert_lt(after, mib, "%lu live bytes sampled after the free", after);
  hak_prof_set(0);
}

// Off, malloc keeps no count (sampler.h); switched on at run time, a thread that was already
// running samples at the mean from its next allocations, off again it samples nothing, and on
// once more (another period: counts left over from the first draw fresh gaps) at the new mean.
// 200 000 blocks of 64 bytes at a mean of 4096: about 3 125 samples (p = 1 - e^(-1/64) each,
// standard deviation 55); the bounds are ±15 %, more than 8 deviations.
Test(prof, switched_on_at_run_time_a_running_thread_samples_at_the_mean) {
  std::atomic<int> step{0};
  std::atomic<int> done{0};
  auto churn = [](int n) {
    std::vector<void*> v(64);
    for (int i = 0; i < n; ++i) {
      void*& slot = v[size_t(i) & 63];
      free(slot);
      slot = malloc(64);
      escape(slot);
    }
    for (void* p : v) free(p);
  };
  std::thread t([&] {
    churn(100000);  // off: no count kept
    done = 1;
    for (int s = 1; s <= 3; ++s) {
      while (step.load() != s) sched_yield();
      churn(200000);
      done = s + 1;
    }
  });
  auto wait_done = [&](int d) {
    while (done.load() != d) sched_yield();
  };
  wait_done(1);
  cr_assert_eq(hak_prof_set(4096), 0u);
  unsigned long a0 = dump().alloc_objs;
  step = 1;
  wait_done(2);
  unsigned long a1 = dump().alloc_objs;
  cr_assert(a1 - a0 > 2650 && a1 - a0 < 3600, "%lu samples of 200 000 blocks of 64 bytes at a mean of 4096 (about 3 125)",
            a1 - a0);
  cr_assert_eq(hak_prof_set(0), 4096u);
  a1 = dump().alloc_objs;  // with the samples of the last dump's own reading (read_file)
  step = 2;
  wait_done(3);
  unsigned long a2 = dump().alloc_objs;
  cr_assert_eq(a2, a1, "%lu samples while off", a2 - a1);
  cr_assert_eq(hak_prof_set(8192), 0u);
  step = 3;
  wait_done(4);
  unsigned long a3 = dump().alloc_objs;
  cr_assert(a3 - a2 > 1320 && a3 - a2 < 1800, "%lu samples of 200 000 blocks of 64 bytes at a mean of 8192 (about 1 560)",
            a3 - a2);
  t.join();
  hak_prof_set(0);
}
