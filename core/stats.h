// stats.h — the figures behind hak_stats_get, mallinfo2, malloc_stats, malloc_info and
// HAKMEM_STATS=1. Everything here is gathered when asked for (walking SuperSlab headers and
// reading slow-path counters): nothing is counted on the malloc/free fast paths.
#ifndef HAKMEM_STATS_H
#define HAKMEM_STATS_H

#include <stdint.h>

#include "hakmem.h"
#include "size_class.h"

namespace hak {

struct ClassStats {
  uint64_t runs;        // slab runs assigned to the class (including cached empty ones)
  uint64_t blocks_out;  // blocks out of their runs: in use or in thread caches
  uint64_t capacity;    // blocks the runs can hold
};

// Per class id (entry 0 unused), read racily from the SuperSlab headers.
void stats_classes(ClassStats out[kNumClasses + 1]);

// Fills the public struct.
void stats_collect(hak_stats_t* out);

// Prints the summary and the per-class table to stderr.
void stats_print();

// Writes glibc's malloc_info XML form, one line per call of emit (each NUL-terminated).
void stats_write_xml(void (*emit)(const char* line, void* ctx), void* ctx);

// Counter bumped by the flush path (blocks pushed to another thread's remote queue).
void stats_add_remote_frees(uint64_t n);

}  // namespace hak

#endif  // HAKMEM_STATS_H
