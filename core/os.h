// os.h — the only door to the operating system (mmap, munmap, madvise, write, environment,
// clocks). Nothing else in core/ makes a syscall. None of these functions allocates.
#ifndef HAKMEM_OS_H
#define HAKMEM_OS_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem_build_flags.h"

namespace hak {

// Reads the page size, AT_SECURE and the environment options. Idempotent; called from
// hak_init before anything else here.
void os_init();

// The OS page size, read at run time (4 KiB, 16 KiB and 64 KiB kernels all exist).
size_t os_page_size();

// Maps `size` bytes (a multiple of the page size) of zeroed read-write memory.
// Returns nullptr when the OS refuses (or the debug fault-injection hook says it does).
void* os_map(size_t size);

// Maps `size` bytes aligned to `align` (a power of two ≥ the page size, size a multiple of
// the page size): over-maps and trims the excess. nullptr on failure.
void* os_map_aligned(size_t size, size_t align);

// Reserves `size` bytes of read-only address space that reads as zero (MAP_NORESERVE): it
// costs no memory and, being read-only, no commit charge even under strict overcommit.
// nullptr when refused (RLIMIT_AS).
void* os_reserve(size_t size);

// Makes [p, p+size) of a reservation writable (page-aligned). False when the OS refuses.
bool os_make_writable(void* p, size_t size);
// Makes [p, p+size) read-only again (page-aligned). False when the OS refuses.
bool os_make_readonly(void* p, size_t size);
// Returns a whole reservation (it counts in no mapped-bytes statistic, unlike os_unmap's).
void os_unreserve(void* p, size_t size);

// Returns a mapping made by one of the functions above (whole or a page-aligned part).
void os_unmap(void* p, size_t size);

// Makes [p, p + size) readable and writable (rw) or inaccessible. Page-aligned. false on failure.
bool os_protect(void* p, size_t size, bool rw);

// The calling thread's kernel id (gettid).
uint32_t os_thread_id();

// Gives the physical pages of [p, p+size) back; the range stays mapped and reads as zero.
// p and size must be page-aligned.
void os_decommit(void* p, size_t size);

// Which pages of [p, p + size) are resident: vec[i] & 1 for page i (mincore). False when the
// kernel refuses. p page-aligned. A syscall: for cold paths that reuse memory (a chunk cut
// from freed Large memory), never to classify a pointer (DESIGN.md: no mincore).
bool os_residency(const void* p, size_t size, unsigned char* vec);

// Grows the mapping [p, p + old_size) in place to new_size bytes (the address space after it
// must be free: mremap without MREMAP_MAYMOVE). False when it is not. Sizes page multiples.
bool os_remap_in_place(void* p, size_t old_size, size_t new_size);

// Moves the pages of [from, from + size) to [to, to + size) without copying them
// (mremap MREMAP_FIXED): whatever was mapped at `to` is dropped, `from` is unmapped. Both
// ranges page-aligned and disjoint. False when the kernel refuses (the range spans mappings
// of different kinds, or out of memory); then nothing changed.
bool os_remap_move(void* from, size_t size, void* to);

// Futex on a 32-bit word of this process (private): wait while *word == expected, at most
// timeout_ns (0: no limit); wake wakes every waiter.
void os_futex_wait(uint32_t* word, uint32_t expected, uint64_t timeout_ns);
void os_futex_wake(uint32_t* word);

// Starts a detached thread running fn(nullptr) with every signal blocked (it never runs a
// handler of the program's) and a small stack; `name` is its name in /proc (≤ 15 chars).
// False when the thread cannot be created (out of resources, a sandbox forbids it).
bool os_start_thread(void* (*fn)(void*), const char* name);

// Minor page faults of the process so far (getrusage), for the statistics.
uint64_t os_minor_faults();

// Writes to stderr, retrying on EINTR and short writes. Never allocates.
void os_write_stderr(const char* buf, size_t len);
// Keeps a private copy of fd 2 (close-on-exec), which os_write_stderr falls back to once the
// program has closed its stderr: coreutils close it in an atexit handler, before the exit-time
// statistics table (HAKMEM_STATS=1, the only caller) is printed.
void os_stderr_keep();

// Value of an environment variable as read at start-up (nullptr if unset, or if the program
// runs with AT_SECURE — setuid/setgid — where hakmem ignores its environment).
const char* os_getenv(const char* name);
bool os_is_secure();

// Copies n bytes from p into out if every byte is readable (process_vm_readv on ourselves, or
// a pipe where that is refused); false otherwise. Never faults. For rare paths only.
bool os_read_safely(const void* p, void* out, size_t n);

// The main program break heap (where glibc's main arena lives): [start_brk, current break).
// false when /proc/self/stat cannot be read.
bool os_brk_heap(uintptr_t* lo, uintptr_t* hi);

// The process's resident set in bytes (/proc/self/statm), 0 if unreadable.
uint64_t os_process_rss();

// 64 random bits from the kernel (getrandom, non-blocking); if the kernel refuses, a mix of
// the auxiliary vector's AT_RANDOM bytes, the clock and an address (never fails).
uint64_t os_random_u64();

// Monotonic clock in nanoseconds (vDSO, no syscall on Linux/x86-64).
uint64_t os_now_ns();

// Counters of the calls above (for hak_stats_get).
struct OsCounters {
  uint64_t mmap_calls, munmap_calls, madvise_calls;
  uint64_t mapped_bytes, peak_mapped_bytes;  // through os_map/os_map_aligned, net of os_unmap
};
OsCounters os_counters();

// Debug variant only (a no-op in release): from the N-th os_map/os_map_aligned call after
// this one on, every mapping fails, until os_fault_injection_set(0). HAKMEM_FAULT_MMAP=N sets
// it at start-up (options.h). Used by the fault-injection tests.
void os_fault_injection_set(uint64_t nth);

}  // namespace hak

#endif  // HAKMEM_OS_H
