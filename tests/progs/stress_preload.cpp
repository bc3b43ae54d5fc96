// stress_preload.cpp — deterministic multithreaded allocator stress test in the style of
// mimalloc's test/test-stress.c, for use under LD_PRELOAD (no hakmem linked in).
//
//   stress_preload [threads=8] [scale=100] [iterations=10] [seed=1]
//
// Each iteration starts `threads` fresh threads; each does `scale * 100` random operations
// on its own list of blocks: allocate (malloc, calloc, posix_memalign, new[], every tier),
// free, realloc (contents checked), and swap a block with a shared array of atomic slots, so
// blocks are freed by other threads, including threads of later iterations (their owner has
// exited). Every block carries a header and a pattern checked before it is freed or moved.
// The random streams are fixed by the seed; only the interleaving varies between runs.
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <new>
#include <vector>

namespace {

struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return (size_t)(next() % n); }
  bool chance(unsigned percent) { return below(100) < percent; }
};

enum Kind : uint32_t { K_MALLOC, K_CALLOC, K_MEMALIGN, K_NEW_ARRAY, K_ALIGNED_NEW };

// Header at the start of every block (blocks are at least sizeof(Header) bytes).
struct Header {
  uint64_t size;
  uint64_t cookie;  // seed ^ size ^ kind, re-derived on check
  uint32_t kind;
  uint32_t align;
};
constexpr uint64_t kMagic = 0x48414b4d454d5354ull;  // "HAKMEMST"

uint8_t pat(uint64_t cookie, size_t i) { return (uint8_t)(cookie ^ (i * 0x3B) ^ (i >> 7)); }

[[noreturn]] void die(const char* what, const void* p, size_t n, size_t at) {
  fprintf(stderr, "stress_preload: FAIL: %s (block %p, %zu bytes, byte %zu)\n", what, p, n, at);
  fflush(stderr);
  _exit(2);
}

void stamp(void* p, size_t n, uint64_t seed, Kind k, uint32_t align) {
  Header h = {n, seed ^ n ^ ((uint64_t)k << 56) ^ kMagic, k, align};
  memcpy(p, &h, sizeof h);
  uint8_t* b = (uint8_t*)p;
  size_t head = n < 512 ? n : 512;
  for (size_t i = sizeof h; i < head; i++) b[i] = pat(h.cookie, i);
  for (size_t i = (n > 512 + 64 ? n - 64 : head); i < n; i++) b[i] = pat(h.cookie, i);
  for (size_t i = 4096; i < n; i += 4096) b[i] = pat(h.cookie, i);
}

// Checks the block; returns its header.
Header check(const void* p, const char* where) {
  Header h;
  memcpy(&h, p, sizeof h);
  if (h.size < sizeof(Header) || h.size > (64u << 20) || h.kind > K_ALIGNED_NEW ||
      ((h.cookie ^ h.size ^ ((uint64_t)h.kind << 56) ^ kMagic) >> 56) != 0)
    die(where, p, h.size, 0);
  const uint8_t* b = (const uint8_t*)p;
  size_t n = h.size;
  size_t head = n < 512 ? n : 512;
  for (size_t i = sizeof h; i < head; i++)
    if (b[i] != pat(h.cookie, i)) die(where, p, n, i);
  for (size_t i = (n > 512 + 64 ? n - 64 : head); i < n; i++)
    if (b[i] != pat(h.cookie, i)) die(where, p, n, i);
  for (size_t i = 4096; i < n; i += 4096)
    if (b[i] != pat(h.cookie, i)) die(where, p, n, i);
  if (h.align && ((uintptr_t)p & (h.align - 1))) die("misaligned block", p, n, 0);
  return h;
}

size_t pick_size(Rng& r) {
  uint64_t x = r.below(10000);
  if (x < 8000) return sizeof(Header) + r.below(1024);          // tiny
  if (x < 9500) return 1024 + r.below(63 * 1024);               // small/mid
  if (x < 9980) return 64 * 1024 + r.below(960 * 1024);         // mid, up to 1 MiB
  return (1u << 20) + r.below(7u << 20);                        // large, up to 8 MiB
}

void* allocate(Rng& r, uint64_t seed) {
  size_t n = pick_size(r);
  Kind k = (Kind)r.below(5);
  uint32_t align = 0;
  void* p = nullptr;
  switch (k) {
    case K_MALLOC: p = malloc(n); break;
    case K_CALLOC: {
      p = calloc(1, n);
      if (!p) break;
      const uint8_t* b = (const uint8_t*)p;
      for (size_t i = 0; i < n; i += (i < 4096 ? 1 : 4093))
        if (b[i]) die("calloc block not zeroed", p, n, i);
      break;
    }
    case K_MEMALIGN:
      align = 16u << r.below(9);  // 16 .. 4096
      if (posix_memalign(&p, align, n) != 0) p = nullptr;
      break;
    case K_NEW_ARRAY: p = new (std::nothrow) uint8_t[n]; break;
    case K_ALIGNED_NEW:
      align = 32u << r.below(7);  // 32 .. 2048
      p = ::operator new[](n, std::align_val_t(align), std::nothrow);
      break;
  }
  if (!p) die("allocation failed", nullptr, n, 0);
  if (!align && ((uintptr_t)p & 15)) die("malloc result not 16-byte aligned", p, n, 0);
  stamp(p, n, seed, k, align);
  return p;
}

void release(void* p, const char* where) {
  Header h = check(p, where);
  switch (h.kind) {
    case K_MALLOC: case K_CALLOC: case K_MEMALIGN: free(p); break;
    case K_NEW_ARRAY: delete[] (uint8_t*)p; break;
    case K_ALIGNED_NEW: ::operator delete[](p, std::align_val_t(h.align)); break;
  }
}

void* resize(Rng& r, void* p, uint64_t seed) {
  Header h = check(p, "before realloc");
  if (h.kind == K_NEW_ARRAY || h.kind == K_ALIGNED_NEW) return p;  // not realloc-able
  size_t n = pick_size(r);
  uint8_t* q = (uint8_t*)realloc(p, n);
  if (!q) die("realloc failed", p, n, 0);
  Header h2;
  memcpy(&h2, q, sizeof h2);
  if (h2.size != h.size || h2.cookie != h.cookie) die("realloc lost the header", q, n, 0);
  size_t keep = n < h.size ? n : h.size;
  size_t head = keep < 512 ? keep : 512;
  for (size_t i = sizeof(Header); i < head; i++)
    if (q[i] != pat(h.cookie, i)) die("realloc lost the contents", q, n, i);
  stamp(q, n, seed, K_MALLOC, 0);
  return q;
}

int g_threads = 8, g_scale = 100, g_iters = 10;
uint64_t g_seed = 1;
constexpr size_t kTransfers = 1000;
std::atomic<void*> g_transfer[kTransfers];
std::atomic<uint64_t> g_ops{0};

struct ThreadArg { int iter, id; };

void* worker(void* a) {
  ThreadArg* ta = (ThreadArg*)a;
  Rng r{g_seed * 1000003u + (uint64_t)ta->iter * 1009u + (uint64_t)ta->id};
  std::vector<void*> mine;
  mine.reserve(256);
  size_t ops = (size_t)g_scale * 100;
  uint64_t seq = ((uint64_t)ta->iter << 40) | ((uint64_t)ta->id << 32);
  for (size_t i = 0; i < ops; i++) {
    uint64_t x = r.below(100);
    if (x < 40 || mine.empty()) {
      mine.push_back(allocate(r, seq++));
    } else if (x < 70) {
      size_t k = r.below(mine.size());
      release(mine[k], "free");
      mine[k] = mine.back();
      mine.pop_back();
    } else if (x < 80) {
      size_t k = r.below(mine.size());
      mine[k] = resize(r, mine[k], seq++);
    } else {  // swap a block with a shared slot
      size_t k = r.below(mine.size());
      check(mine[k], "before transfer");
      void* got = g_transfer[r.below(kTransfers)].exchange(mine[k], std::memory_order_acq_rel);
      if (got) {
        check(got, "received by transfer");
        mine[k] = got;
      } else {
        mine[k] = mine.back();
        mine.pop_back();
      }
    }
    // Keep the working set bounded: the list holds ~100 blocks per thread on average.
    if (mine.size() > 400) {
      for (size_t j = 0; j < 200; j++) release(mine[j], "trim list");
      mine.erase(mine.begin(), mine.begin() + 200);
    }
  }
  // Most blocks die with the thread; some are left in the transfer slots for others.
  for (void* p : mine) release(p, "thread end");
  g_ops.fetch_add(ops);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_threads = atoi(argv[1]);
  if (argc > 2) g_scale = atoi(argv[2]);
  if (argc > 3) g_iters = atoi(argv[3]);
  if (argc > 4) g_seed = strtoull(argv[4], nullptr, 10);
  if (g_threads < 1 || g_scale < 1 || g_iters < 1) {
    fprintf(stderr, "usage: %s [threads] [scale] [iterations] [seed]\n", argv[0]);
    return 2;
  }
  std::vector<pthread_t> ts(g_threads);
  std::vector<ThreadArg> args(g_threads);
  for (int it = 0; it < g_iters; it++) {
    for (int t = 0; t < g_threads; t++) {
      args[t] = {it, t};
      if (pthread_create(&ts[t], nullptr, worker, &args[t]) != 0) {
        fprintf(stderr, "stress_preload: pthread_create failed\n");
        return 1;
      }
    }
    for (int t = 0; t < g_threads; t++) pthread_join(ts[t], nullptr);
  }
  size_t left = 0;
  for (auto& slot : g_transfer) {
    void* p = slot.exchange(nullptr);
    if (p) {
      release(p, "final transfer slots");
      left++;
    }
  }
  malloc_trim(0);
  bool hak = dlsym(RTLD_DEFAULT, "hak_malloc") != nullptr;
  printf("stress_preload: OK threads=%d scale=%d iterations=%d ops=%lu transferred-left=%zu (%s)\n",
         g_threads, g_scale, g_iters, (unsigned long)g_ops.load(), left,
         hak ? "hakmem" : "system malloc");
  return 0;
}
