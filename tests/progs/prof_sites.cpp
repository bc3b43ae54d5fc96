// prof_sites — a program with known allocation sites, for the heap profiler's tests
// (tests/preload/prof.sh). Run under LD_PRELOAD of libhakmem.so with the profiler on.
//
//   prof_sites DUMP [fork] [signal]
//
// Four threads run one site each, at once:
//   site_keep_small  keeps 200 MiB live in 64-byte blocks
//   site_keep_8k     keeps 20 MiB live in 8 KiB blocks
//   site_churn       allocates and frees 2 GiB (blocks of 256 B - 64 KiB, at most 16 live)
//   site_leak        leaks 5 MiB in 100-byte blocks (never freed)
// Then main writes the live profile to DUMP (hak_prof_dump, found with dlsym), raises
// SIGUSR2 with "signal" (HAKMEM_PROF_SIGNAL=12 dumps), forks a child that allocates and exits
// with "fork", frees what the keepers hold, and exits: the exit profile, the peak profile and
// the leak report are the library's (HAKMEM_PROF_AT_EXIT, HAKMEM_PROF_LEAKS).
// The pointers live in mmap'd arrays, so that the only heap blocks are the sites'.
// Built with -rdynamic (tests.mk), so that dladdr names the sites in the leak report.
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>

namespace {

constexpr size_t kMiB = size_t(1) << 20;
constexpr size_t kSmallN = 200 * kMiB / 64;
constexpr size_t k8kN = 20 * kMiB / 8192;

void** g_small;
void** g_8k;
// Keeps a block the compiler would otherwise be free to elide (malloc without a use).
inline void escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

void** map_array(size_t n) {
  void* p = mmap(nullptr, n * sizeof(void*), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  return static_cast<void**>(p);
}

void* must(void* p) {
  if (p == nullptr) {
    fprintf(stderr, "prof_sites: out of memory\n");
    exit(1);
  }
  return p;
}

}  // namespace

extern "C" __attribute__((noinline)) void site_keep_small() {
  for (size_t i = 0; i < kSmallN; ++i) {
    g_small[i] = must(malloc(64));
    memset(g_small[i], 1, 8);
  }
}

extern "C" __attribute__((noinline)) void site_keep_8k() {
  for (size_t i = 0; i < k8kN; ++i) {
    g_8k[i] = must(malloc(8192));
    memset(g_8k[i], 2, 8);
  }
}

extern "C" __attribute__((noinline)) void site_churn() {
  void* live[16] = {};
  size_t total = 0, i = 0;
  uint64_t x = 88172645463325252ull;
  while (total < 2048 * kMiB) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t n = size_t(256) << (x % 9);  // 256 B .. 64 KiB
    free(live[i % 16]);
    live[i % 16] = must(malloc(n));
    memset(live[i % 16], 3, 8);
    total += n;
    ++i;
  }
  for (void* p : live) free(p);
}

extern "C" __attribute__((noinline)) void site_leak() {
  for (size_t i = 0; i < 5 * kMiB / 100; ++i) {
    void* p = must(malloc(100));
    memset(p, 4, 8);
    escape(p);
  }
}

namespace {

void* run(void* f) {
  reinterpret_cast<void (*)()>(f)();
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: prof_sites DUMP [fork] [signal]\n");
    return 2;
  }
  bool do_fork = false, do_signal = false;
  for (int i = 2; i < argc; ++i) {
    if (strcmp(argv[i], "fork") == 0) do_fork = true;
    else if (strcmp(argv[i], "signal") == 0) do_signal = true;
    else {
      fprintf(stderr, "usage: prof_sites DUMP [fork] [signal]\n");
      return 2;
    }
  }
  printf("prof_sites: pid %d\n", int(getpid()));
  fflush(stdout);
  g_small = map_array(kSmallN);
  g_8k = map_array(k8kN);
  void (*sites[4])() = {site_keep_small, site_keep_8k, site_churn, site_leak};
  pthread_t t[4];
  for (int i = 0; i < 4; ++i) pthread_create(&t[i], nullptr, run, reinterpret_cast<void*>(sites[i]));
  for (auto& th : t) pthread_join(th, nullptr);

  auto dump = reinterpret_cast<int (*)(const char*)>(dlsym(RTLD_DEFAULT, "hak_prof_dump"));
  if (dump == nullptr) {
    fprintf(stderr, "prof_sites: hak_prof_dump not found (run it under libhakmem.so)\n");
    return 1;
  }
  if (dump(argv[1]) != 0) {
    perror("hak_prof_dump");
    return 1;
  }
  if (do_signal) raise(SIGUSR2);
  if (do_fork) {
    pid_t pid = fork();
    if (pid == 0) {
      void* p = malloc(3 * kMiB);  // above the mean: sampled for sure
      memset(p, 5, 64);
      escape(p);
      exit(0);  // the child's exit profile: DUMP's HAKMEM_PROF_AT_EXIT path .<pid>
    }
    printf("prof_sites: child %d\n", int(pid));
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "prof_sites: child failed\n");
      return 1;
    }
  }
  for (size_t i = 0; i < kSmallN; ++i) free(g_small[i]);
  for (size_t i = 0; i < k8kN; ++i) free(g_8k[i]);
  printf("prof_sites: done\n");
  return 0;
}
