// guarded_check — guarded sampling (core/guarded.h) from a program's side, run under
// LD_PRELOAD with HAKMEM_GUARD=N by tests/preload/guarded.sh:
//
//   guarded_check api        (N = 1) guarded blocks behave as blocks: sizes, alignment,
//                            realloc, calloc, malloc_usable_size, the slot limit, threads, fork
//   guarded_check wild       a segfault outside the pool: the default action (no report)
//   guarded_check handler    the program's own SIGSEGV handler, installed before the
//                            allocator's (a constructor): faults outside the pool reach it,
//                            faults inside are still reported
//   guarded_check hammer     (N = 10) threads allocating, filling, checking and freeing blocks
//                            of every size, crosswise: a correct program reports nothing
// Prints "ok" and exits 0 when every check holds; "FAIL ..." and exits 1 otherwise.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"

#define CHECK(c, ...)                                        \
  do {                                                       \
    if (!(c)) {                                              \
      printf("FAIL line %d: %s: ", __LINE__, #c);            \
      printf(__VA_ARGS__);                                   \
      printf("\n");                                          \
      exit(1);                                               \
    }                                                        \
  } while (0)

static void* volatile sink;
static void (*stats_get)(hak_stats_t*);

static hak_stats_t stats(void) {
  hak_stats_t s;
  memset(&s, 0, sizeof s);
  stats_get(&s);
  return s;
}

static void fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i) p[i] = (unsigned char)(seed + i * 7);
}
static int filled(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != (unsigned char)(seed + i * 7)) return 0;
  return 1;
}

static void* thread_churn(void* arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  void* held[64] = {0};
  size_t len[64] = {0};
  for (int i = 0; i < 20000; ++i) {
    seed = seed * 1103515245u + 12345u;
    int k = (seed >> 8) % 64;
    if (held[k]) {
      if (!filled(held[k], len[k], (unsigned)k)) {
        printf("FAIL: block %p (%zu bytes) lost its contents\n", held[k], len[k]);
        exit(1);
      }
      free(held[k]);
      held[k] = NULL;
    } else {
      size_t n = (seed >> 12) % 5 == 0 ? (seed >> 16) % 40000 : (seed >> 16) % 600;
      held[k] = (seed & 1) ? malloc(n) : calloc(1, n);
      len[k] = n;
      if (!held[k]) {
        printf("FAIL: malloc(%zu) returned NULL\n", n);
        exit(1);
      }
      fill(held[k], n, (unsigned)k);
    }
  }
  for (int k = 0; k < 64; ++k) free(held[k]);
  return NULL;
}

static int check_api(void) {
  hak_stats_t s0 = stats();
  CHECK(s0.guard_rate == 1, "guard_rate %lu (run with HAKMEM_GUARD=1)", (unsigned long)s0.guard_rate);
  // With N = 1 every allocation of at most 16 KiB is guarded while a slot is free.
  size_t sizes[] = {0, 1, 15, 16, 100, 4095, 4096, 4097, 16384};
  void* p[9];
  for (int i = 0; i < 9; ++i) {
    p[i] = malloc(sizes[i]);
    CHECK(p[i] != NULL, "malloc(%zu)", sizes[i]);
    CHECK(((uintptr_t)p[i] & 15) == 0, "malloc(%zu) = %p is not 16-byte aligned", sizes[i], p[i]);
    CHECK(malloc_usable_size(p[i]) == sizes[i], "usable size %zu of a guarded %zu-byte block",
          malloc_usable_size(p[i]), sizes[i]);
    fill(p[i], sizes[i], 3);
  }
  hak_stats_t s1 = stats();
  CHECK(s1.guarded_allocs - s0.guarded_allocs == 9, "%lu blocks guarded, 9 expected",
        (unsigned long)(s1.guarded_allocs - s0.guarded_allocs));
  // Placement in turn: flush with the end of its pages, then with the start.
  void* a = malloc(100);
  void* b = malloc(100);
  CHECK(((uintptr_t)a & 4095) == 4096 - 112 || ((uintptr_t)b & 4095) == 4096 - 112, "no block flush with its guard after: %p %p", a, b);
  CHECK(((uintptr_t)a & 4095) == 0 || ((uintptr_t)b & 4095) == 0, "no block flush with its guard before: %p %p", a, b);
  free(a);
  free(b);
  for (int i = 0; i < 9; ++i) {
    CHECK(filled(p[i], sizes[i], 3), "guarded block %d lost its contents", i);
    free(p[i]);
  }
  CHECK(stats().guarded_live == s0.guarded_live, "guarded blocks still live after their frees");
  // Alignment.
  size_t aligns[] = {32, 64, 256, 4096};
  for (int i = 0; i < 4; ++i) {
    void* q = NULL;
    CHECK(posix_memalign(&q, aligns[i], 200) == 0 && q != NULL, "posix_memalign(%zu)", aligns[i]);
    CHECK(((uintptr_t)q & (aligns[i] - 1)) == 0, "posix_memalign(%zu) = %p", aligns[i], q);
    memset(q, 1, 200);
    free(q);
  }
  CHECK(stats().guarded_allocs - s1.guarded_allocs >= 6, "aligned blocks were not guarded");
  // calloc reads zero, realloc keeps the contents both ways (to a guarded block and out).
  unsigned char* c = calloc(100, 10);
  CHECK(c != NULL, "calloc");
  for (int i = 0; i < 1000; ++i) CHECK(c[i] == 0, "calloc'ed byte %d is %d", i, c[i]);
  fill(c, 1000, 9);
  c = realloc(c, 3000);
  CHECK(c != NULL && filled(c, 1000, 9), "realloc up lost the contents");
  c = realloc(c, 50);
  CHECK(c != NULL && filled(c, 50, 9), "realloc down lost the contents");
  c = realloc(c, 100000);  // a span: a span slot of the pool
  CHECK(c != NULL && filled(c, 50, 9), "realloc to a span lost the contents");
  c = realloc(c, 400000);  // above the span slots' bound: out of the pool
  CHECK(c != NULL && filled(c, 50, 9), "realloc to a big span lost the contents");
  free(c);
  // A Mid block above 16 KiB takes a span slot too.
  hak_stats_t m0 = stats();
  void* mid = malloc(20000);
  CHECK(mid != NULL && stats().guarded_allocs == m0.guarded_allocs + 1, "a 20000-byte block was not guarded");
  CHECK(malloc_usable_size(mid) == 20000, "usable size %zu of a guarded 20000-byte block", malloc_usable_size(mid));
  fill(mid, 20000, 4);
  CHECK(filled(mid, 20000, 4), "the 20000-byte guarded block lost its contents");
  free(mid);
  // Spans up to 256 KiB: 4 span slots; a fifth live span is served as usual. calloc of a
  // span reads zero, also in a slot used before (its pages went back at free).
  for (int round = 0; round < 2; ++round) {
    hak_stats_t t0 = stats();
    unsigned char* sp[5];
    for (int i = 0; i < 5; ++i) {
      size_t n = 40000 + 50000 * (size_t)i;  // 40 000 .. 240 000 bytes
      sp[i] = calloc(1, n);
      CHECK(sp[i] != NULL, "calloc of a %zu-byte span", n);
      for (size_t k = 0; k < n; k += 997) CHECK(sp[i][k] == 0, "calloc'ed span byte %zu is %d", k, sp[i][k]);
      CHECK(malloc_usable_size(sp[i]) >= n, "usable size of a %zu-byte span", n);
      fill(sp[i], n, (unsigned)(20 + i));
    }
    hak_stats_t t1 = stats();
    CHECK(t1.guarded_allocs - t0.guarded_allocs == 4, "%lu spans guarded, 4 expected (the span slots)",
          (unsigned long)(t1.guarded_allocs - t0.guarded_allocs));
    CHECK(malloc_usable_size(sp[0]) == 40000, "a guarded span's usable size is %zu, not the 40000 asked for",
          malloc_usable_size(sp[0]));
    for (int i = 0; i < 5; ++i) {
      CHECK(filled(sp[i], 40000 + 50000 * (size_t)i, (unsigned)(20 + i)), "span %d lost its contents", i);
      free(sp[i]);
    }
  }
  // More live blocks than slots: the rest are served as usual.
  void* many[40];
  hak_stats_t s2 = stats();
  for (int i = 0; i < 40; ++i) {
    many[i] = malloc(64);
    CHECK(many[i] != NULL, "malloc(64) #%d", i);
    fill(many[i], 64, (unsigned)i);
  }
  hak_stats_t s3 = stats();
  CHECK(s3.guarded_live - s2.guarded_live <= 16, "%lu guarded live: more than the slots",
        (unsigned long)(s3.guarded_live - s2.guarded_live));
  CHECK(s3.guarded_full > s2.guarded_full, "a full pool was not counted");
  for (int i = 0; i < 40; ++i) {
    CHECK(filled(many[i], 64, (unsigned)i), "block %d lost its contents", i);
    free(many[i]);
  }
  // Threads, blocks freed crosswise.
  pthread_t t[4];
  for (int i = 0; i < 4; ++i) CHECK(pthread_create(&t[i], NULL, thread_churn, (void*)(uintptr_t)(i + 1)) == 0, "thread");
  for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
  // fork: the child frees the parent's guarded block, allocates its own, and exits cleanly.
  unsigned char* f = malloc(300);
  fill(f, 300, 5);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    if (!filled(f, 300, 5)) _exit(2);
    free(f);
    for (int i = 0; i < 50; ++i) {
      void* x = malloc((size_t)i * 37);
      if (!x) _exit(3);
      free(x);
    }
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the forked child failed (status %d)", st);
  CHECK(filled(f, 300, 5), "the parent's block changed");
  free(f);
  return 0;
}

// The program's own handler, installed by a constructor before the allocator's first call.
static volatile sig_atomic_t g_want_handler;
static void program_handler(int sig) {
  (void)sig;
  static const char m[] = "program handler\n";
  if (write(1, m, sizeof m - 1) < 0) _exit(5);
  _exit(7);
}
__attribute__((constructor(101))) static void install_early(void) {
  const char* mode = getenv("GUARDED_CHECK_HANDLER");
  if (mode && *mode == '1') {
    g_want_handler = 1;
    signal(SIGSEGV, program_handler);
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: guarded_check api|wild|handler-wild|handler-pool|hammer\n");
    return 2;
  }
  stats_get = (void (*)(hak_stats_t*))dlsym(RTLD_DEFAULT, "hak_stats_get");
  if (!stats_get) {
    printf("FAIL: not running on hakmem (hak_stats_get not found)\n");
    return 1;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  const char* m = argv[1];
  if (strcmp(m, "api") == 0) {
    check_api();
  } else if (strcmp(m, "wild") == 0 || strcmp(m, "handler-wild") == 0) {
    sink = malloc(10);  // the allocator (and its handler) set up
    volatile uintptr_t wild = 64;
    *(volatile int*)wild = 1;
    printf("FAIL: the wild write did not fault\n");
    return 1;
  } else if (strcmp(m, "handler-pool") == 0) {
    char* volatile q = malloc(10);
    free(q);
    ((volatile char*)q)[0] = 1;  // a use after free in the pool: reported, whatever the program's handler
    printf("FAIL: the use after free did not fault\n");
    return 1;
  } else if (strcmp(m, "hammer") == 0) {
    pthread_t t[6];
    for (int i = 0; i < 6; ++i) CHECK(pthread_create(&t[i], NULL, thread_churn, (void*)(uintptr_t)(i + 11)) == 0, "thread");
    for (int i = 0; i < 6; ++i) pthread_join(t[i], NULL);
    CHECK(stats().guarded_allocs > 100, "only %lu blocks guarded", (unsigned long)stats().guarded_allocs);
  } else {
    fprintf(stderr, "usage: guarded_check api|wild|handler-wild|handler-pool|hammer\n");
    return 2;
  }
  printf("ok\n");
  return 0;
}
