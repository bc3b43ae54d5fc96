// valgrind_client.cpp — run by tests/preload/valgrind_client.sh under valgrind's memcheck,
// with LD_PRELOAD of a libhakmem.so and hakmem's own malloc running (valgrind told not to
// replace it: --soname-synonyms=somalloc=nouserintercepts). No hakmem linked in.
//
//   valgrind_client bugs    writes into a 32-byte block and into a 100 KiB block after
//                           freeing them, reads the first word of the 32-byte one, and leaks
//                           a 777-byte block (its only pointer dropped); exits 0. Memcheck
//                           must report the two invalid writes and the invalid read (inside
//                           blocks that were free'd) and the leak.
//   valgrind_client clean   every allocation function, realloc in place and moving, reuse of
//                           freed blocks (TLS lists, flushes, refills), frees from other
//                           threads, malloc_trim; reads what it wrote, branching on it (so
//                           memcheck checks the definedness hakmem reported); frees
//                           everything. Memcheck must report nothing. Exits 1 on a wrong value.
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>

namespace {

// Hides a pointer from the compiler, so that it keeps accesses after free (undefined
// behaviour it could otherwise drop) and does not pair up or elide allocations.
template <class T>
T* opaque(T* p) {
  asm volatile("" : "+r"(p));
  return p;
}

int g_failures = 0;
uint64_t g_sink;

void check(bool ok, const char* what, size_t n) {
  if (!ok) {
    fprintf(stderr, "valgrind_client: FAIL: %s (%zu bytes)\n", what, n);
    ++g_failures;
  }
}

unsigned char pat(size_t n, size_t i) { return (unsigned char)(n * 31 + i * 7 + 1); }

void fill(void* p, size_t n, size_t from = 0) {
  auto* c = static_cast<unsigned char*>(p);
  for (size_t i = from; i < n; ++i) c[i] = pat(n, i);
}
// Branches on every byte: memcheck reports a byte hakmem left undefined.
bool holds(const void* p, size_t n, size_t pattern_n) {
  auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (c[i] != pat(pattern_n, i)) return false;
  return true;
}
bool zero(const void* p, size_t n) {
  auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (c[i] != 0) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
__attribute__((noinline)) void leak_a_block() {
  // The block is the second of its size class's run, so no allocator metadata happens to
  // point at it (the first block of a run can be where the previous run ends).
  void* keep = malloc(777);
  void* lost = malloc(777);
  memset(opaque(lost), 0x55, 777);
  free(opaque(keep));
  lost = nullptr;  // the only pointer to it
}

int bugs() {
  char* small = opaque(static_cast<char*>(malloc(32)));
  char* small_alias = opaque(small);
  memset(small, 1, 32);
  free(small);
  small_alias[20] = 7;  // use after free: 20 bytes inside the 32-byte block
  // and a read of its first word (where hakmem keeps the free-list link)
  g_sink = *reinterpret_cast<volatile uint64_t*>(small_alias);

  char* big = opaque(static_cast<char*>(malloc(100 * 1024)));
  char* big_alias = opaque(big);
  memset(big, 1, 100 * 1024);
  free(big);
  big_alias[5000] = 7;  // use after free: 5,000 bytes inside the 102,400-byte block

  leak_a_block();
  // Clobber the stack below us, where a copy of the leaked pointer could linger.
  char scratch[4096];
  memset(opaque(scratch), 0, sizeof scratch);
  printf("valgrind_client: bugs done\n");
  return 0;
}

// ---------------------------------------------------------------------------------------
const size_t kSizes[] = {0,    1,     8,     15,    16,         17,              24,     100,   777,
                         1024, 1025,  4000,  32768, 32769,      100000,          262144, 1 << 20,
                         (1 << 20) + 1, 3 << 20};

void plain_and_usable() {
  for (size_t n : kSizes) {
    void* p = malloc(n);
    check(p != nullptr, "malloc", n);
    fill(p, n);
    check(holds(p, n, n), "malloc: contents", n);
    // Under memcheck hakmem reports the requested size (as memcheck's own malloc does): all
    // of it may be used.
    size_t u = malloc_usable_size(p);
    check(u >= n, "malloc_usable_size", n);
    fill(p, u);
    check(holds(p, u, u), "malloc_usable_size: contents", u);
    free(p);
  }
}

void zeroed() {
  for (size_t n : kSizes) {
    // A block with contents, freed: calloc may get it back and must zero it.
    void* d = malloc(n);
    fill(d, n);
    free(d);
    void* p = calloc(1, n);
    check(p != nullptr, "calloc", n);
    check(zero(p, n), "calloc: zeroed", n);
    free(p);
  }
}

void reallocs() {
  // In place: 100 → class 112; 110 and 60 keep the block. Then moving: Tiny → Mid → span →
  // span in place → Tiny. After each step the kept prefix must hold the last fill.
  struct Step {
    size_t to;
    bool refill;
  };
  const Step steps[] = {{110, true}, {60, false}, {5000, true}, {200000, true}, {150000, false}, {10, false}};
  size_t valid = 100, pattern_n = 100;
  char* p = static_cast<char*>(malloc(100));
  fill(p, 100);
  for (const Step& st : steps) {
    p = static_cast<char*>(realloc(p, st.to));
    valid = valid < st.to ? valid : st.to;
    check(p != nullptr && holds(p, valid, pattern_n), "realloc keeps the prefix", st.to);
    if (st.refill) {
      fill(p, st.to);
      valid = pattern_n = st.to;
    }
  }
  free(p);
  // realloc(nullptr, n) and realloc(p, 0); reallocarray.
  p = static_cast<char*>(realloc(nullptr, 40));
  fill(p, 40);
  check(realloc(p, 0) == nullptr, "realloc(p, 0)", 0);
  p = static_cast<char*>(reallocarray(nullptr, 10, 30));
  fill(p, 300);
  p = static_cast<char*>(reallocarray(p, 20, 30));
  check(holds(p, 300, 300), "reallocarray", 600);
  free(p);
}

void aligned() {
  void* p = nullptr;
  check(posix_memalign(&p, 64, 100) == 0 && (uintptr_t(p) & 63) == 0, "posix_memalign 64", 100);
  fill(p, 100);
  free(p);
  struct {
    size_t align, n;
  } cases[] = {{16, 3}, {256, 3}, {4096, 5000}, {8192, 100}, {1 << 21, 100}};
  for (auto c : cases) {
    p = aligned_alloc(c.align, c.n);
    check(p != nullptr && (uintptr_t(p) & (c.align - 1)) == 0, "aligned_alloc", c.n);
    fill(p, c.n);
    check(holds(p, c.n, c.n), "aligned_alloc: contents", c.n);
    free(p);
    p = memalign(c.align, c.n);
    fill(p, c.n);
    free(p);
  }
  p = valloc(10);
  fill(p, 10);
  free(p);
  p = pvalloc(10);
  fill(p, 4096);
  free(p);
}

void cxx() {
  int* a = new int[100];
  for (int i = 0; i < 100; ++i) a[i] = i;
  long sum = 0;
  for (int i = 0; i < 100; ++i) sum += a[i];
  check(sum == 4950, "new int[100]", 400);
  delete[] a;
  auto* s = new std::nothrow_t;
  delete s;
  char* c = new (std::align_val_t(128)) char[300];
  check((uintptr_t(c) & 127) == 0, "aligned new", 300);
  fill(c, 300);
  ::operator delete[](c, std::align_val_t(128));
  void* v = ::operator new(50000, std::nothrow);
  fill(v, 50000);
  ::operator delete(v, size_t(50000));
}

// Many blocks of a few classes: TLS lists overflow and flush, refills take from run free lists.
void churn() {
  static void* blocks[6000];
  const size_t sizes[] = {48, 48, 200, 3000};
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 6000; ++i) {
      size_t n = sizes[(i + round) % 4];
      blocks[i] = malloc(n);
      fill(blocks[i], n);
    }
    for (int i = 0; i < 6000; ++i) {
      int j = (i * 7919) % 6000;  // freed out of order
      size_t n = sizes[(j + round) % 4];
      check(holds(blocks[j], n, n), "churn: contents", n);
      free(blocks[j]);
    }
  }
}

// Blocks freed by other threads (remote queues, drained by their owners), threads exiting
// with blocks cached (flushed at exit).
constexpr int kThreads = 4, kPerThread = 1500;
void* g_handoff[kThreads][kPerThread];

void* worker(void* arg) {
  long t = long(arg);
  void* mine[kPerThread];
  for (int i = 0; i < kPerThread; ++i) {
    size_t n = 16 + size_t((i * 37 + t * 11) % 2000);
    mine[i] = malloc(n);
    fill(mine[i], n);
    g_handoff[t][i] = malloc(n);
    fill(g_handoff[t][i], n);
  }
  for (int i = 0; i < kPerThread; ++i) {
    size_t n = 16 + size_t((i * 37 + t * 11) % 2000);
    check(holds(mine[i], n, n), "thread: contents", n);
    free(mine[i]);
  }
  return nullptr;
}

void threads() {
  pthread_t th[kThreads];
  for (long t = 0; t < kThreads; ++t) pthread_create(&th[t], nullptr, worker, reinterpret_cast<void*>(t));
  for (int t = 0; t < kThreads; ++t) pthread_join(th[t], nullptr);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      size_t n = 16 + size_t((i * 37 + t * 11) % 2000);
      check(holds(g_handoff[t][i], n, n), "handoff: contents", n);
      free(g_handoff[t][i]);
    }
  }
  // Reuse what came back.
  for (int i = 0; i < 2000; ++i) {
    void* p = malloc(16 + size_t(i % 2000));
    fill(p, 16 + size_t(i % 2000));
    free(p);
  }
}

int clean() {
  plain_and_usable();
  zeroed();
  reallocs();
  aligned();
  cxx();
  churn();
  threads();
  malloc_trim(0);
  churn();
  if (g_failures != 0) return 1;
  printf("valgrind_client: clean done\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "bugs") == 0) return bugs();
  if (strcmp(mode, "clean") == 0) return clean();
  fprintf(stderr, "usage: %s bugs|clean\n", argv[0]);
  return 2;
}
