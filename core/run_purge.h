// run_purge.h — gives back the pages inside the free blocks of a part-used slab run of a
// large class.
//
// A run keeps its pages while any of its blocks is out, so after a program's peak a few live
// blocks scattered over many runs pin every page of them: z3 at its peak held 59 runs of its
// 8 200-byte pages with 409 of 822 blocks out, 3.8 MB of free blocks resident
// (docs/BENCHMARKS.md, "Free pages inside part-used runs"). For blocks of 8 KiB and more every
// free block holds at least one whole page past its head; those pages can go back while the
// block waits in its run, and come back as zero pages when the block is handed out again.
//
// Holds nothing. May call: superslab.h (the run's geometry and out-bitmap), size_class.h,
// free_link.h (what a free block's head holds), os (madvise).
// Owner only: the run's out-bitmap is written by its owner, so the free blocks it reads stay
// free while it runs. Not in the debug variant: its free blocks are poisoned whole and
// checked at reuse (tiny_debug_check_alloc), which a page read back as zeros would fail.
#ifndef HAKMEM_RUN_PURGE_H
#define HAKMEM_RUN_PURGE_H

#include <stddef.h>
#include <stdint.h>

#include "free_link.h"
#include "hakmem_build_flags.h"
#include "superslab.h"

namespace hak {

// Classes whose free blocks are purged: a block of 8 KiB holds at least one whole 4 KiB page
// past its head wherever it starts; smaller ones often none.
inline constexpr uint32_t kPurgeMinBlock = 8192;
inline constexpr bool kRunPurge = !kDebug;

// Bytes at a free block's start that stay resident: its link and the free-block key (free
// checks the key at the call: free_link.h), and in the secure variant the two poison words
// checked at reuse.
inline constexpr size_t kPurgeKeep = kPoisonFree ? 4 * sizeof(uintptr_t) : 2 * sizeof(uintptr_t);

// Decommits the whole pages inside run s's free blocks (carved, out-bit clear) past each
// block's first kPurgeKeep bytes. Returns the bytes given back (0 for a class below
// kPurgeMinBlock, or in the debug variant). The caller owns s.
size_t run_purge_free_pages(Slab* s);

}  // namespace hak

#endif  // HAKMEM_RUN_PURGE_H
