// overlap_malloc.c — a deliberately BROKEN allocator, for testing the benchmarks.
//
//   LD_PRELOAD=out/<v>/bench/overlap_malloc.so out/<v>/bench_random_mixed_system 100000 256
//
// Every second malloc() called directly from the main program's own code returns the block
// that the previous such call returned, if that block is still live and large enough: two live
// objects then share memory, the classic symptom of a corrupted free list. A benchmark that
// checks its memory must stop with an error instead of printing a throughput figure;
// tests/preload/bench_detects_broken_allocator.sh asserts that it does.
//
// Calls from libc, the dynamic loader and the C++ runtime (thread start-up, operator new of
// std::thread state, stdio buffers) are served correctly, so that the failure the test sees is
// the benchmark's own check and not an unrelated crash. The caller is told apart by its return
// address: inside an executable segment of the main program or not (found once with
// dl_iterate_phdr). Real allocation is forwarded to glibc (__libc_malloc/__libc_free); a block
// handed out twice is freed only on its second free(), so glibc never sees a double free.
#define _GNU_SOURCE
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <malloc.h>

extern void* __libc_malloc(size_t size);
extern void __libc_free(void* ptr);

// Executable address ranges of the main program.
#define MAX_RANGES 8
static uintptr_t g_lo[MAX_RANGES], g_hi[MAX_RANGES];
static int g_nranges = 0;

static int find_main_program(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  (void)data;
  // The first object listed is the main program.
  for (int i = 0; i < info->dlpi_phnum && g_nranges < MAX_RANGES; ++i) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    g_lo[g_nranges] = info->dlpi_addr + ph->p_vaddr;
    g_hi[g_nranges] = g_lo[g_nranges] + ph->p_memsz;
    ++g_nranges;
  }
  return 1;  // stop after the first object
}

__attribute__((constructor)) static void overlap_init(void) {
  dl_iterate_phdr(find_main_program, NULL);
}

static int from_main_program(const void* ret) {
  uintptr_t a = (uintptr_t)ret;
  for (int i = 0; i < g_nranges; ++i)
    if (a >= g_lo[i] && a < g_hi[i]) return 1;
  return 0;
}

// State shared by all threads, under a spin lock (speed does not matter here).
static int g_lock = 0;
static void lock(void) {
  while (__atomic_exchange_n(&g_lock, 1, __ATOMIC_ACQUIRE)) {
  }
}
static void unlock(void) { __atomic_store_n(&g_lock, 0, __ATOMIC_RELEASE); }

static void* g_previous = NULL;  // last block handed to the program, while it is live
static unsigned long g_calls = 0;
#define MAX_SHARED 4096
static void* g_shared[MAX_SHARED];  // blocks handed out twice and not yet freed once

void* malloc(size_t size) {
  if (!from_main_program(__builtin_return_address(0))) return __libc_malloc(size);
  lock();
  void* p = NULL;
  if ((++g_calls & 1) == 0 && g_previous != NULL && malloc_usable_size(g_previous) >= size) {
    for (int i = 0; i < MAX_SHARED; ++i) {
      if (g_shared[i] == NULL) {
        g_shared[i] = g_previous;
        p = g_previous;  // the bug: the same block again
        break;
      }
    }
  }
  if (p == NULL) {
    p = __libc_malloc(size);
    g_previous = p;
  }
  unlock();
  return p;
}

void free(void* ptr) {
  if (ptr == NULL) return;
  lock();
  if (ptr == g_previous) g_previous = NULL;
  for (int i = 0; i < MAX_SHARED; ++i) {
    if (g_shared[i] == ptr) {  // first of two frees of a shared block: keep it
      g_shared[i] = NULL;
      unlock();
      return;
    }
  }
  unlock();
  __libc_free(ptr);
}
