// early_alloc.c — allocation before main and in constructors/destructors, and foreign
// (glibc-allocated) pointers passed to the interposed free/realloc/malloc_usable_size.
// Run under LD_PRELOAD=libhakmem.so by tests/preload/early_alloc.sh; also correct without it.
// Prints "early_alloc: OK (hakmem)" or "... (system malloc)"; exits non-zero on any failure.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// glibc's allocator under its own names: makes pointers hakmem did not allocate.
extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);

static int failures;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "early_alloc: FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fputc('\n', stderr);                                 \
      failures++;                                          \
    }                                                      \
  } while (0)

static void fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}
static int same(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed + i * 7)) return 0;
  return 1;
}

// Every entry point as the process's first calls, from a constructor that runs before libc's
// stdio is used by main and before other constructors of this program.
static void exercise(const char* where) {
  free(NULL);
  static const size_t sizes[] = {0, 1, 16, 100, 1024, 1025, 5000, 70000, 300000, 2u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    unsigned char* p = malloc(n);
    CHECK(p != NULL, "%s: malloc(%zu) returned NULL", where, n);
    if (!p) continue;
    CHECK(((uintptr_t)p & (n >= 16 ? 15 : 7)) == 0, "%s: malloc(%zu) = %p misaligned", where, n, (void*)p);
    CHECK(malloc_usable_size(p) >= n, "%s: usable size of malloc(%zu) is %zu", where, n,
          malloc_usable_size(p));
    fill(p, n, (unsigned)n);
    unsigned char* q = realloc(p, n * 3 + 1);
    CHECK(q && same(q, n, (unsigned)n), "%s: realloc(%zu -> %zu) lost contents", where, n, n * 3 + 1);
    free(q);
    unsigned char* z = calloc(1, n);
    CHECK(z != NULL, "%s: calloc(%zu) failed", where, n);
    for (size_t k = 0; z && k < n; k++)
      if (z[k]) { CHECK(0, "%s: calloc(%zu) not zeroed at %zu", where, n, k); break; }
    free(z);
    void* a = NULL;
    CHECK(posix_memalign(&a, 4096, n) == 0 && ((uintptr_t)a & 4095) == 0,
          "%s: posix_memalign(4096, %zu) failed", where, n);
    free(a);
    a = aligned_alloc(64, n);
    CHECK(a && ((uintptr_t)a & 63) == 0, "%s: aligned_alloc(64, %zu) failed", where, n);
    free(a);
  }
}

// Foreign pointers: allocated by glibc's allocator, released through the interposed API.
static void foreign(const char* where) {
  static const size_t sizes[] = {1, 24, 200, 4000, 100000, 1u << 20, 6u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    unsigned char* p = __libc_malloc(n);
    CHECK(p != NULL, "%s: __libc_malloc(%zu) failed", where, n);
    fill(p, n, 3);
    CHECK(malloc_usable_size(p) >= n, "%s: malloc_usable_size(glibc block %zu) = %zu", where, n,
          malloc_usable_size(p));
    free(p);  // must go to glibc

    p = __libc_malloc(n);
    fill(p, n, 5);
    unsigned char* q = realloc(p, 2 * n + 100);
    CHECK(q && same(q, n, 5), "%s: realloc of a glibc block (%zu -> %zu) lost contents", where, n,
          2 * n + 100);
    q = realloc(q, n / 3 + 1);
    CHECK(q && same(q, n / 3 + 1, 5), "%s: shrinking realloc of a glibc block lost contents", where);
    free(q);

    free(__libc_calloc(n, 1));
    void* m = __libc_memalign(4096, n);
    CHECK(m && ((uintptr_t)m & 4095) == 0, "%s: __libc_memalign failed", where);
    CHECK(malloc_usable_size(m) >= n, "%s: usable size of a glibc memalign block", where);
    free(m);
    void* r = __libc_realloc(NULL, n);
    void* r0 = realloc(r, 0);  // frees (glibc semantics), returns NULL
    CHECK(r0 == NULL, "%s: realloc(glibc block, 0) returned %p", where, r0);
  }
}

static void* thread_main(void* arg) {
  exercise((const char*)arg);
  return NULL;
}

static char* early_strings[64];

__attribute__((constructor(101))) static void early_ctor(void) {
  exercise("constructor(101)");
  foreign("constructor(101)");
  for (int i = 0; i < 64; i++) early_strings[i] = strdup("allocated in constructor(101)");
  // setenv grows environ with realloc; getenv reads it back.
  char name[32], value[32];
  for (int i = 0; i < 200; i++) {
    snprintf(name, sizeof name, "HAKMEM_EARLY_%d", i);
    snprintf(value, sizeof value, "v%d", i * 3);
    setenv(name, value, 1);
  }
  for (int i = 0; i < 200; i += 37) {
    snprintf(name, sizeof name, "HAKMEM_EARLY_%d", i);
    snprintf(value, sizeof value, "v%d", i * 3);
    const char* got = getenv(name);
    CHECK(got && strcmp(got, value) == 0, "getenv(%s) after setenv in a constructor", name);
  }
  // A thread created inside a constructor.
  pthread_t t;
  CHECK(pthread_create(&t, NULL, thread_main, "thread from constructor") == 0, "pthread_create");
  pthread_join(t, NULL);
}

__attribute__((constructor(200))) static void later_ctor(void) {
  for (int i = 0; i < 64; i += 2) {
    free(early_strings[i]);
    early_strings[i] = NULL;
  }
}

__attribute__((destructor)) static void dtor(void) {
  // Allocation during teardown, after main returned.
  exercise("destructor");
  for (int i = 0; i < 64; i++) free(early_strings[i]);
  if (failures) {
    fprintf(stderr, "early_alloc: %d failures (in destructor)\n", failures);
    _exit(1);
  }
}

static void at_exit_handler(void) {
  char* s = malloc(1000);
  memset(s, 1, 1000);
  free(s);
}

int main(void) {
  atexit(at_exit_handler);
  exercise("main");
  foreign("main");
  for (int i = 1; i < 64; i += 2)
    CHECK(strcmp(early_strings[i], "allocated in constructor(101)") == 0,
          "string allocated in a constructor was overwritten");
  int hak = dlsym(RTLD_DEFAULT, "hak_malloc") != NULL;
  if (failures) {
    fprintf(stderr, "early_alloc: %d failures\n", failures);
    return 1;
  }
  printf("early_alloc: OK (%s)\n", hak ? "hakmem" : "system malloc");
  return 0;
}
