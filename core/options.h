// options.h — hakmem's few environment options, in one table, read once at start-up.
//
// Every option is listed in docs/TUNING.md. In setuid/setgid programs (AT_SECURE) the
// environment is ignored and every option keeps its default. HAKMEM_VERBOSE=1 prints the
// effective values and the build flags at start-up.
#ifndef HAKMEM_OPTIONS_H
#define HAKMEM_OPTIONS_H

#include <stdint.h>

#include "hakmem_build_flags.h"

namespace hak {

// Guarded sampling's rate when HAKMEM_GUARD is not set: off in release and debug, one
// allocation in a million in the secure variant: each sample costs two mprotect calls, which
// take the process's mapping lock (1 in 5000 cost Larson 13-40 %, 1 in 50 000 up to 12 %,
// 1 in a million 1-4 %: docs/BENCHMARKS.md, "Guarded sampling").
inline constexpr uint64_t kGuardDefaultRate = kSecure ? 1000000 : 0;

struct Options {
  bool stats;           // HAKMEM_STATS=1: print the statistics table at exit
  bool verbose;         // HAKMEM_VERBOSE=1: print options and build flags at start-up
  uint64_t fault_mmap;  // HAKMEM_FAULT_MMAP=N (debug variant): the N-th and later mmaps fail
  uint64_t check;       // HAKMEM_CHECK=N (debug variant): whole-heap check every N-th slow path
  bool decay_thread;    // HAKMEM_DECAY_THREAD=0: never start the idle-decay thread (default 1)
  uint64_t guard;       // HAKMEM_GUARD=N: guard one allocation in N (guarded.h); 0 = off
  bool prof;            // HAKMEM_PROF=1: heap profiler on (prof.h)
  uint64_t prof_sample; // HAKMEM_PROF_SAMPLE=N: bytes per sample on average (0 = the default, 512 KiB)
  bool prof_leaks;      // HAKMEM_PROF_LEAKS=1: leak report at exit (turns the profiler on)
  uint64_t prof_signal; // HAKMEM_PROF_SIGNAL=N: signal N dumps the live profile (0 = none)
};

// The decimal number s starts with (0 if none): how every numeric option is read.
uint64_t options_parse_u64(const char* s);

// Reads the environment (os_init must have run). Idempotent.
void options_init();
const Options& options();
// Prints the option table with effective values and the build flags to stderr.
void options_print();

}  // namespace hak

#endif  // HAKMEM_OPTIONS_H
