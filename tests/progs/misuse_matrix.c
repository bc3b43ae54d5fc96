// misuse_matrix — one memory error per case, written from the attacker's side: the error
// first, then the program goes on. scripts/misuse_table.sh runs every case under every
// variant's libhakmem.so and tells from the markers on stdout when the error was caught:
//
//   misuse_matrix CASE
//     the error ........................ aborted here: "at the call"
//     prints "went-on", then the later chances a checker gets (malloc_trim(0), which flushes
//     the thread's cache; mallocs of the same size, which hand the block out again; exit) ...
//                                        aborted here: "later"
//     prints "survived" and exits 0 ...  "not caught"
//   misuse_matrix --list                 the cases, one per line: name<TAB>description
//
// Sizes: Tiny 32 B, Mid 3000 B, span 100 000 B, Large 8 MiB.
#define _GNU_SOURCE
#include <alloca.h>
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Warray-bounds"

static void* volatile sink;
static void keep(void* p) { sink = p; }
// The compiler must not know where p came from (it may drop a write past a malloc'ed size).
#define LAUNDER(p) __asm__ volatile("" : "+r"(p))
// ... nor drop the writes into a block that is freed next (dead stores before free).
#define WRITTEN(p) __asm__ volatile("" : : "r"(p) : "memory")
static void mark(const char* m) {
  if (write(1, m, strlen(m)) < 0) _exit(3);
}

static size_t g_size;  // the block size the later phase allocates again

static void double_free(size_t n) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  free(p);
  free(p);
}
static void double_free_later(size_t n) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  void* others[8];
  for (int i = 0; i < 8; ++i) keep(others[i] = malloc(n));
  free(p);
  for (int i = 0; i < 8; ++i) free(others[i]);
  free(p);
}
static void double_free_interleaved(size_t n) {
  g_size = n;
  char* a = malloc(n);
  char* b = malloc(n);
  keep(a);
  keep(b);
  free(a);
  free(b);
  free(a);
  free(b);
}
static void double_free_after_reuse(size_t n) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  free(p);
  char* q = malloc(n);  // the same block again, most likely
  keep(q);
  free(q);
  free(p);
}
static void interior_free(size_t n, size_t off) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  LAUNDER(p);
  memset(p, 0x11, n);
  WRITTEN(p);
  free(p + off);
}
static void overflow(size_t n, size_t by) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  LAUNDER(p);
  // A one-byte overflow writes a string's terminator past the block (the commonest one; the
  // canaries never hold a zero byte, so the row does not depend on the process's random key).
  memset(p, 0x22, n + by);
  if (by == 1) p[n] = 0;
  WRITTEN(p);
  free(p);
}
static void underflow(size_t n) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  LAUNDER(p);
  memset(p - 16, 0x33, 16);
  WRITTEN(p);
  free(p);
}
static void use_after_free(size_t n, size_t off, size_t len) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  LAUNDER(p);
  free(p);
  memset(p + off, 0x44, len);
  WRITTEN(p);
}
static void underflow_by(size_t n, size_t by) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  LAUNDER(p);
  memset(p - by, 0x35, 1);
  WRITTEN(p);
  free(p);
}
static void overflow_memcpy(size_t n, size_t by) {
  g_size = n;
  static char src[16384 + 4096];
  char* p = malloc(n);
  keep(p);
  LAUNDER(p);
  memcpy(p, src, n + by);
  WRITTEN(p);
  free(p);
}
static void use_after_free_reused(size_t n) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  LAUNDER(p);
  free(p);
  char* q = malloc(n);  // under most allocators the same block, in use again
  keep(q);
  memset(p, 0, n);      // zeroing through the stale pointer
  WRITTEN(p);
  free(q);
}
// The C++ operators, by their mangled names: hakmem's under LD_PRELOAD, libstdc++'s otherwise.
static void* cxx_op(const char* name) {
  void* f = dlsym(RTLD_DEFAULT, name);
  if (f == NULL && dlopen("libstdc++.so.6", RTLD_NOW | RTLD_GLOBAL) != NULL) f = dlsym(RTLD_DEFAULT, name);
  if (f == NULL) _exit(3);
  return f;
}
static void delete_mismatch(size_t n, int array_new) {
  void* (*new_op)(size_t) = (void* (*)(size_t))cxx_op(array_new ? "_Znam" : "_Znwm");
  void (*delete_op)(void*) = (void (*)(void*))cxx_op(array_new ? "_ZdlPv" : "_ZdaPv");
  g_size = n;
  void* p = new_op(n);
  keep(p);
  delete_op(p);
}
static void* free_arg(void* p) {
  free(p);
  return NULL;
}
static void double_free_cross_thread(size_t n) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  pthread_t t;
  if (pthread_create(&t, NULL, free_arg, p) != 0 || pthread_join(t, NULL) != 0) _exit(3);
  free(p);
}
static void double_free_key_wiped(size_t n) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  free(p);
  ((void* volatile*)p)[1] = NULL;  // the program clears the second word of the freed block
  free(p);
}
static void realloc_freed(size_t n) {
  g_size = n;
  char* p = malloc(n);
  keep(p);
  free(p);
  keep(realloc(p, n));
}

static int g_static_block[16];

// Every case: its name, what it does (the table's row), and the error.
static void run_df_tiny(void) { double_free(32); }
static void run_df_mid(void) { double_free(3000); }
static void run_df_span(void) { double_free(100000); }
static void run_df_large(void) { double_free(8u << 20); }
static void run_df_later_tiny(void) { double_free_later(32); }
static void run_df_later_mid(void) { double_free_later(3000); }
static void run_df_interleaved(void) { double_free_interleaved(48); }
static void run_df_reuse(void) { double_free_after_reuse(64); }
static void run_df_cross_thread(void) { double_free_cross_thread(48); }
static void run_df_key_wiped(void) { double_free_key_wiped(48); }
static void run_realloc_freed_tiny(void) { realloc_freed(32); }
static void run_realloc_freed_span(void) { realloc_freed(100000); }
static void run_interior_tiny(void) { interior_free(64, 16); }
static void run_unaligned_tiny(void) { interior_free(64, 1); }
static void run_interior_mid(void) { interior_free(3000, 512); }
static void run_interior_span(void) { interior_free(100000, 4096); }
static void run_interior_large(void) { interior_free(8u << 20, 4096); }
static void run_free_stack(void) { char buf[64]; keep(buf); free(buf); }
static void run_free_alloca(void) { char* a = alloca(128); keep(a); free(a); }
static void run_free_static(void) { free(g_static_block); }
static void run_free_wild(void) { free((void*)(uintptr_t)0x5a5a5a5a5000ull); }
static void run_overflow_1_tiny(void) { overflow(40, 1); }
static void run_overflow_32_tiny(void) { overflow(48, 32); }
static void run_overflow_1_span(void) { overflow(100000, 1); }
static void run_underflow_tiny(void) { underflow(64); }
static void run_uaf_link_tiny(void) { use_after_free(32, 0, 8); }
static void run_uaf_body_tiny(void) { use_after_free(64, 24, 16); }
static void run_uaf_span(void) { use_after_free(100000, 64, 64); }
static void run_underflow_1_tiny(void) { underflow_by(64, 1); }
static void run_overflow_memcpy_mid(void) { overflow_memcpy(3000, 64); }
static void run_uaf_zero_mid(void) { use_after_free(3000, 0, 3000); }
static void run_uaf_reused_tiny(void) { use_after_free_reused(64); }
static void run_delete_new_array_tiny(void) { delete_mismatch(40, 1); }
static void run_delete_array_new_mid(void) { delete_mismatch(3000, 0); }

static const struct {
  const char* name;
  const char* what;
  void (*run)(void);
} kCases[] = {
    {"df_tiny", "`free` twice in a row: Tiny (32 B)", run_df_tiny},
    {"df_mid", "`free` twice in a row: Mid (3000 B)", run_df_mid},
    {"df_span", "`free` twice in a row: span (100 000 B)", run_df_span},
    {"df_large", "`free` twice in a row: Large (8 MiB)", run_df_large},
    {"df_later_tiny", "double free after 8 other frees: Tiny", run_df_later_tiny},
    {"df_later_mid", "double free after 8 other frees: Mid", run_df_later_mid},
    {"df_interleaved", "double frees of two blocks interleaved (a b a b): Tiny", run_df_interleaved},
    {"df_reuse", "double free after the block was handed out and freed again: Tiny", run_df_reuse},
    {"df_cross_thread", "double free: first `free` on another thread (which then exits): Tiny", run_df_cross_thread},
    {"df_key_wiped", "double free after the program cleared the freed block's second word: Tiny", run_df_key_wiped},
    {"realloc_freed_tiny", "`realloc` of a freed block: Tiny", run_realloc_freed_tiny},
    {"realloc_freed_span", "`realloc` of a freed block: span", run_realloc_freed_span},
    {"interior_tiny", "`free` of a pointer 16 bytes into a block: Tiny (64 B)", run_interior_tiny},
    {"unaligned_tiny", "`free` of a pointer 1 byte into a block: Tiny", run_unaligned_tiny},
    {"interior_mid", "`free` of a pointer 512 bytes into a block: Mid", run_interior_mid},
    {"interior_span", "`free` of a pointer 4096 bytes into a block: span", run_interior_span},
    {"interior_large", "`free` of a pointer 4096 bytes into a block: Large", run_interior_large},
    {"free_stack", "`free` of a stack address", run_free_stack},
    {"free_alloca", "`free` of an `alloca` block", run_free_alloca},
    {"free_static", "`free` of a static object", run_free_static},
    {"free_wild", "`free` of a wild address", run_free_wild},
    {"overflow_1_tiny", "overflow by 1 byte, then `free`: Tiny (40 B)", run_overflow_1_tiny},
    {"overflow_32_tiny", "overflow by 32 bytes, then `free`: Tiny (48 B)", run_overflow_32_tiny},
    {"overflow_1_span", "overflow by 1 byte, then `free`: span", run_overflow_1_span},
    {"underflow_tiny", "underflow by 16 bytes (the previous block), then `free`: Tiny", run_underflow_tiny},
    {"uaf_link_tiny", "write of a freed block's first word: Tiny", run_uaf_link_tiny},
    {"uaf_body_tiny", "write into a freed block past its first 16 bytes: Tiny (64 B)", run_uaf_body_tiny},
    {"uaf_span", "write into a freed block: span", run_uaf_span},
    {"underflow_1_tiny", "underflow by 1 byte, then `free`: Tiny (64 B)", run_underflow_1_tiny},
    {"overflow_memcpy_mid", "overflow by 64 bytes with `memcpy`, then `free`: Mid (3000 B)", run_overflow_memcpy_mid},
    {"uaf_zero_mid", "freed block zeroed with `memset`: Mid (3000 B)", run_uaf_zero_mid},
    {"uaf_reused_tiny", "freed block zeroed after it was handed out again: Tiny (64 B)", run_uaf_reused_tiny},
    {"delete_new_array_tiny", "`delete` of a block `new[]` made: Tiny (40 B)", run_delete_new_array_tiny},
    {"delete_array_new_mid", "`delete[]` of a block `new` made: Mid (3000 B)", run_delete_array_new_mid},
};
#define NCASES (sizeof kCases / sizeof kCases[0])

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: misuse_matrix CASE | --list\n");
    return 2;
  }
  if (strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < NCASES; ++i) printf("%s\t%s\n", kCases[i].name, kCases[i].what);
    return 0;
  }
  for (size_t i = 0; i < NCASES; ++i) {
    if (strcmp(argv[1], kCases[i].name) != 0) continue;
    keep(malloc(1));  // the allocator is set up before the error
    kCases[i].run();
    mark("went-on\n");
    malloc_trim(0);
    for (int k = 0; k < 64; ++k) keep(malloc(g_size ? g_size : 32));
    mark("survived\n");
    return 0;
  }
  fprintf(stderr, "misuse_matrix: no case %s (--list shows them)\n", argv[1]);
  return 2;
}
