// prof.h — the heap profiler: which call stacks hold the heap's bytes, in every build.
//
// When it is on (HAKMEM_PROF=1, HAKMEM_PROF_AT_EXIT=path, HAKMEM_PROF_LEAKS=1, or
// hak_prof_set at run time; docs/TUNING.md), one allocation per `mean` bytes a thread
// allocates on average is sampled (sampler.h): the block is served as a span of its own
// (kSpanMagicSampled, whatever its size, as tcmalloc gives each sampled object a span) whose
// first bytes hold the sample's record, so free finds the record without a lookup and a
// block that was not sampled never reaches this file. A record names its bucket: one call
// stack (at most kProfFrames frames, the library's own left out) and one size range (1/8 of a
// power of two), with the bucket's live and cumulative counts and its counts at the last peak.
//
//   sampled span:  [ record | (padding) | span header | block ... ]
//   buckets:       a table of kProfBuckets in a mapping of their own, touched as they are
//                  used (about 600 bytes each; bucket 0 collects the samples of stacks that
//                  found the table full), hashed by stack and size
//
// Memory: the buckets in use (at most kProfBuckets, 9.6 MiB), and for each live sample the
// rest of its span's page (a sampled 16-byte block holds a 4 KiB page: at one sample per
// 512 KiB, under 1 % of the heap). Nothing here calls malloc; one lock (a spin lock, taken
// only by samples, frees of sampled blocks and dumps) keeps the table.
//
// Dumps are gperftools heap profiles (heap_v2: one line per bucket with its sampled live
// and cumulative objects and bytes, then MAPPED_LIBRARIES: and /proc/self/maps), which
// google-pprof reads and scales back up; the peak profile holds the buckets' counts at the
// moment the estimated live bytes were highest (saved when they grow 10 % past the last
// saved peak, tcmalloc's rule). The leak report prints the stacks still live at exit, scaled
// to bytes.
//
// May call: sampler, stack_trace, os, diag, options, fork_locks (its lock word). Called by hakmem.cpp.
#ifndef HAKMEM_PROF_H
#define HAKMEM_PROF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hakmem_build_flags.h"
#include "sampler.h"

namespace hak {

inline constexpr int kProfFrames = 64;                  // frames kept per stack
inline constexpr uint32_t kProfBuckets = 16384;         // stack × size buckets at most
inline constexpr uint64_t kProfDefaultMean = 512 << 10;  // bytes per sample on average
// A sampled block starts at least this far into its span: its record, then the span header.
inline constexpr size_t kProfLead = 64;

// Reads the options and, if one turns profiling on, sets it up (the signal handler too).
// Called once, at initialisation, by process `pid` (HAKMEM_PROF_PID and the at-exit dump
// tell a forked child by it).
void prof_init(pid_t pid);

// The count of the thread's outside-the-classes allocations (t_prof_left); the classes' are
// their ids.
inline constexpr uint32_t kProfThreadCounter = 0xFFFF;

// Count `counter` ran out at an allocation of n bytes: says whether this allocation is to be
// sampled, and sets *next to the count's new value (the next gap; kSamplerOffBytes while the
// profiler is off).
bool prof_sample_now(size_t n, uint32_t counter, int64_t* next);

// Sampled block `block` (n bytes asked for, aligned to `align`) was just allocated in a span
// starting at span_start (kProfLead bytes at least before it). Takes the caller's stack.
void prof_record_alloc(void* span_start, void* block, size_t n, size_t align);

// The sampled block of the span starting at span_start is being freed.
void prof_record_free(void* span_start);

// The bytes asked for by the sampled block of the span starting at span_start.
size_t prof_requested_size(const void* span_start);

// Sets the mean bytes per sample (0 = off); returns the previous one (0 if it was off), or
// SIZE_MAX if the table could not be mapped.
size_t prof_set(size_t mean);

// Writes the live (peak = false) or peak profile to path. 0, or -1 with errno set.
int prof_dump(const char* path, bool peak);

// Prints the stacks of sampled blocks still live, largest first, scaled to bytes (at most
// `max_stacks` of them), to stderr.
void prof_leak_report(int max_stacks);

// At exit: HAKMEM_PROF_AT_EXIT's profiles, HAKMEM_PROF_LEAKS's report.
void prof_at_exit();

void prof_lock();
void prof_unlock();
void prof_reinit_after_fork();

}  // namespace hak

#endif  // HAKMEM_PROF_H
