// Misuse is reported with one exact message and abort(): each case runs in a child process
// whose stderr is captured, and the test asserts SIGABRT and the message.
//   every variant: double free and interior pointer of span blocks; double free of Tiny/Mid
//                  blocks at the call (in a row, after other frees, interleaved, after the
//                  block was reused, after it went back to its run; realloc of a freed block:
//                  the free-block key, free_link.h) — those cases end with _exit(0) and no
//                  trim, so a report that comes later fails them; an unaligned pointer at the
//                  call; from another thread, an interior pointer and a never-handed-out
//                  block of Tiny/Mid classes; a free list link overwritten after free; a free
//                  into a SuperSlab slot that holds no slab; stack, static and wild addresses
//                  (free, realloc). Release and secure report the later cases when the
//                  thread's cache goes back to its runs (malloc_trim(0) in these tests; at the
//                  latest at exit: tests/preload/misuse_at_exit.sh); debug at the free itself.
//   secure, debug: an overwritten link reported by the malloc that follows it.
//   debug:         a write into a freed block reported when malloc hands it out again.
#include <criterion/criterion.h>

#include "death_test.h"

// Every case misuses the API on purpose.
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <malloc.h>

#include <new>
#include <string>
#include <thread>

#include "canary.h"
#include "hakmem_build_flags.h"
#include "decay.h"
#include "free_link.h"
#include "region_map.h"
#include "seed_heap.h"
#include "superslab.h"
#include "tiny_heap.h"

extern "C" void* __libc_malloc(size_t);

// The misuse of run blocks is tested here: the release variant's seed heap, which serves each
// class's first blocks (seed_heap.h; its misuse in test_seed_heap.cpp), is off in this program
// rather than left to Criterion's start-up to fill.
__attribute__((constructor)) static void seed_off() { hak::seed_disable(); }

namespace {

void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

using death_test::expect_abort;
using death_test::run_child;

// Two 32-byte blocks freed in turn; returns the second: the head of the class's TLS list,
// whose link word leads to the first.
char* two_cached_blocks() {
  // 28 bytes: the 32-byte class in every variant (the secure one adds 4 for its canary).
  char* a = static_cast<char*>(malloc(28));
  char* b = static_cast<char*>(malloc(28));
  escape(a);
  escape(b);
  free(a);
  free(b);
  return b;
}

}  // namespace

Test(misuse, double_free_of_a_span_block) {
  expect_abort("span double free", "double free of a span block", [] {
    void* p = malloc(100000);
    escape(p);
    free(p);
    free(p);
  });
}

Test(misuse, double_free_of_a_large_block) {
  expect_abort("large double free", "in freed Large memory: double free?", [] {
    void* p = malloc(8 << 20);
    escape(p);
    free(p);
    free(p);
  });
}

Test(misuse, double_free_of_a_large_block_merged_with_its_neighbour) {
  expect_abort("large double free after a merge", "in freed Large memory: double free?", [] {
    char* big = static_cast<char*>(malloc(16 << 20));
    escape(big);
    free(big);
    char* a = static_cast<char*>(malloc(4 << 20));  // both cut from big's free extent
    char* b = static_cast<char*>(malloc(4 << 20));
    escape(a);
    escape(b);
    free(a);
    free(b);  // merges with a and the rest
    free(b);
  });
}

Test(misuse, realloc_of_a_freed_large_block) {
  expect_abort("large realloc after free", "realloc(", [] {
    void* p = malloc(8 << 20);
    escape(p);
    free(p);
    void* q = realloc(p, 16 << 20);
    escape(q);
  });
}

Test(misuse, free_of_a_pointer_inside_a_span_block) {
  expect_abort("span interior pointer", "invalid pointer (no span header", [] {
    char* p = static_cast<char*>(malloc(100000));
    memset(p, 0xAB, 100000);
    free(p + 4096);
  });
}

Test(misuse, free_into_a_superslab_slot_that_holds_no_slab) {
  expect_abort("free into an unassigned slot", "in no live slab", [] {
    // A 64 KiB unit not assigned to any class, in the SuperSlab of a block: start-up may have
    // used every slot of the first one, so take 32 KiB blocks (4-slot runs) until a SuperSlab
    // with free slots shows up.
    for (int n = 0; n < 512; ++n) {
      void* p = malloc(32768 - hak::kCanaryTail);
      escape(p);
      char* ss = reinterpret_cast<char*>(hak::superslab_of(p));
      for (int i = 1; i < hak::kSlabsPerSuperSlab; ++i) {
        char* q = ss + size_t(i) * hak::kSlabSize + 4096;
        if (hak::region_map_lookup(q) == hak::kRegionFreeSlab) free(q);
      }
    }
    _exit(3);  // every slot in use: cannot run this case
  });
}

// The second free of a block is caught by that free: the block holds the free-block key and
// is on the thread's list of its class, or back in its run. Each child exits without a trim.
Test(misuse, double_free_of_a_tiny_block_at_the_call) {
  expect_abort("tiny double free", "double free (block of size class 2, 32 bytes)", [] {
    void* p = malloc(28);
    escape(p);
    free(p);
    free(p);
    _exit(0);
  });
}

Test(misuse, double_free_after_other_frees_at_the_call) {
  expect_abort("delayed double free", "double free (block of size class 6, 96 bytes)", [] {
    void* p = malloc(90);
    escape(p);
    void* others[20];
    for (void*& o : others) escape(o = malloc(90));
    void* other_class[20];
    for (void*& o : other_class) escape(o = malloc(500));
    free(p);
    for (void* o : others) free(o);
    for (void* o : other_class) free(o);
    free(p);
    _exit(0);
  });
}

Test(misuse, interleaved_double_frees_of_mid_blocks_at_the_call) {
  expect_abort("interleaved mid double free", "double free (block of size class", [] {
    void* a = malloc(3000);
    void* b = malloc(3000);
    escape(a);
    escape(b);
    free(a);
    free(b);
    free(a);
    free(b);
    _exit(0);
  });
}

Test(misuse, double_free_after_the_block_was_reused_at_the_call) {
  expect_abort("double free after reuse", "double free (block of size class 4, 64 bytes)", [] {
    char* p = static_cast<char*>(malloc(60));  // the 64-byte class in every variant
    escape(p);
    free(p);
    char* q = static_cast<char*>(malloc(60));  // the same block, handed out again
    escape(q);
    if (q != p) _exit(3);
    memset(q, 0x5A, 64);
    free(q);
    free(p);
    _exit(0);
  });
}

Test(misuse, double_free_of_a_block_back_in_its_run_at_the_call) {
  // The first free's block left the cache (malloc_trim sends it back to its run, which a live
  // block keeps); the second free finds its out-bit clear.
  expect_abort("double free, block in its run", "double free (block of size class", [] {
    void* p = malloc(200);
    void* keep = malloc(200);
    escape(p);
    escape(keep);
    free(p);
    malloc_trim(0);
    free(p);
    _exit(0);
  });
  // Flushed by the cache overflowing instead: blocks enough of the class to pass its cap.
  expect_abort("double free after an overflow", "double free (block of size class", [] {
    static void* blocks[600];
    for (void*& b : blocks) escape(b = malloc(48));
    free(blocks[0]);
    for (int i = 1; i < 600; ++i) free(blocks[i]);
    free(blocks[0]);
    _exit(0);
  });
}

Test(misuse, realloc_of_a_freed_tiny_block_at_the_call) {
  expect_abort("realloc after free", "realloc(", [] {
    void* p = malloc(40);
    escape(p);
    free(p);
    void* q = realloc(p, 40);  // would keep the block in place
    escape(q);
    _exit(0);
  });
}

Test(misuse, unaligned_free_of_a_tiny_block_at_the_call) {
  expect_abort("unaligned free", "invalid pointer (inside a 64-byte block of size class 4, not at its start", [] {
    char* p = static_cast<char*>(malloc(60));  // the 64-byte class in every variant
    escape(p);
    free(p + 8);
    _exit(0);
  });
  expect_abort("unaligned free, odd", "not at its start", [] {
    char* p = static_cast<char*>(malloc(1000));
    escape(p);
    free(p + 1);
    _exit(0);
  });
}

// The key goes with the free: blocks handed out again, whose second word the program never
// writes, are freed without a report (the pop clears it), in every class and after a flush.
Test(misuse, blocks_reused_without_writes_are_not_taken_for_double_frees) {
  int status = 0;
  std::string err = run_child(
      [] {
        for (int round = 0; round < 3; ++round) {
          for (size_t n = 1; n <= 32768; n += n < 256 ? 1 : 97) {
            void* p = malloc(n);
            escape(p);
            free(p);
            void* q = malloc(n);  // the same block: its key word cleared, not written
            escape(q);
            free(q);
          }
          malloc_trim(0);
        }
      },
      &status);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status, err.c_str());
  cr_assert(err.empty(), "stderr: %s", err.c_str());
}

Test(misuse, double_free_from_another_thread) {
  // The second free happens on another thread: the block reaches its run twice, once from
  // this thread's cache and once through the run's remote queue.
  expect_abort("cross-thread double free", "double free (block of size class", [] {
    static void* p;
    p = malloc(48);
    escape(p);
    free(p);
    std::thread([] { free(p); }).join();
    malloc_trim(0);
  });
}

Test(misuse, free_of_a_pointer_inside_a_tiny_block) {
  expect_abort("tiny interior pointer", "invalid pointer (inside a 64-byte block of size class 4, not at its start)", [] {
    char* p = static_cast<char*>(malloc(60));  // the 64-byte class in every variant
    escape(p);
    free(p + 16);
    malloc_trim(0);
  });
}

Test(misuse, free_of_a_pointer_inside_a_block_is_reported_at_the_call_in_every_tier_of_runs) {
  // The offset in the run comes from the region map (region_run_offset): runs of one slab, of
  // several (1152 B: 3 slabs; 1568 B: 4), at a SuperSlab's first slab or later ones. The
  // child ends with _exit(0), no trim: a report at the flush would come too late.
  struct Case {
    size_t size, into;
    const char* message;
  };
  static const Case cases[] = {
      {60, 16, "inside a 64-byte block of size class 4, not at its start"},
      {60, 48, "inside a 64-byte block of size class 4, not at its start"},
      {1140, 1024, "inside a 1152-byte block of size class 68, not at its start"},
      {1560, 32, "inside a 1568-byte block of size class 81, not at its start"},
      {3000, 512, "inside a 3008-byte block of size class 111, not at its start"},
      {20000, 4096, "inside a 20480-byte block of size class 152, not at its start"},
  };
  for (const Case& c : cases) {
    static const Case* cur;
    cur = &c;
    expect_abort("interior pointer at the call", c.message, [] {
      // Enough blocks that some sit in a later run, not only the first one carved.
      char* blocks[64];
      for (char*& b : blocks) {
        b = static_cast<char*>(malloc(cur->size));
        escape(b);
      }
      free(blocks[63] + cur->into);
      _exit(0);
    });
  }
}

Test(misuse, free_of_a_pointer_into_a_superslab_header_at_the_call) {
  // A run at a SuperSlab's first slab starts after the 4 KiB header. 16 bytes before its first
  // block is header; with a 2^18 run window its offset (2^18 - 16) was a multiple of 16, 48 and
  // 688 (a class of 4-slab runs), and release freed it as a block. Now the header reads as
  // offsets from 2^19 - 4 KiB, past every run's blocks (region_map.h): every variant reports it.
  struct Case {
    size_t size;  // the class's block size
    size_t back;  // bytes before the run's first block
  };
  static const Case cases[] = {{16, 16}, {48, 16}, {48, 64}, {688, 16}, {688, 704}, {32768, 16}};
  for (const Case& c : cases) {
    static const Case* cur;
    cur = &c;
    expect_abort("superslab header", "invalid pointer (before the first block of a run", [] {
      // Blocks of the class until one is the first of a run at a SuperSlab's first slab (a
      // fresh SuperSlab gives its first slot first: a few SuperSlabs' worth at most).
      const size_t n = cur->size - hak::kCanaryTail;
      for (size_t bytes = 0; bytes < (size_t(256) << 20); bytes += n) {
        char* p = static_cast<char*>(malloc(n));
        if ((reinterpret_cast<uintptr_t>(p) & (hak::kSuperSlabSize - 1)) == hak::kSuperSlabHeader &&
            hak::region_map_lookup(p) == hak::size_to_class(cur->size)) {  // a run's block, not the seed's
          free(p - cur->back);
          _exit(0);
        }
      }
      _exit(3);  // never found one: the test fails (exit, not abort)
    });
  }
}

Test(misuse, free_of_a_pointer_past_the_last_block_of_a_run_at_the_call) {
  // A run of one 64 KiB slab holds 1365 blocks of 48 bytes, or 65 of 1008, and ends in a
  // 16-byte tail at offset 65520: a multiple of the size, so a divisibility test alone let it
  // through; the run's block count now bounds the test (class_starts_block).
  for (size_t size : {size_t(48), size_t(1008)}) {
    static size_t cur;
    cur = size;
    expect_abort("run tail", "invalid pointer (past the last block of a run", [] {
      const size_t n = cur - hak::kCanaryTail;
      for (size_t bytes = 0; bytes < (size_t(256) << 20); bytes += n) {
        char* p = static_cast<char*>(malloc(n));
        // The first block of a run at a slab other than a SuperSlab's first (not the seed's).
        if ((reinterpret_cast<uintptr_t>(p) & (hak::kSlabSize - 1)) == 0 && hak::region_map_lookup(p) == hak::size_to_class(cur)) {
          free(p + (hak::kSlabSize / cur) * cur);
          _exit(0);
        }
      }
      _exit(3);
    });
  }
}

Test(misuse, free_of_a_pointer_past_the_last_block_of_a_run_at_a_superslabs_first_slab_at_the_call) {
  // A run at a SuperSlab's first slab is 4 KiB shorter than its class's other runs (the header
  // takes its first page), so it holds fewer blocks than the block-start test's bound
  // (class_starts_block: a full run's count). The one block-aligned pointer past its blocks
  // that is still inside the run (its tail) passes that test: release pushed it and the next
  // malloc handed out a block reaching into the next slab. 112 bytes: 548 blocks against 585
  // in a 1-slab run (tail at offset 61376); 912: 139 of 143, 2 slabs; 3008: 85 of 87, 4 slabs;
  // 8192: 7 of 8, a tail of a whole page. Freed at once, while the run is carved only at its
  // start (a key stored when the carve reached the end let this through).
  for (size_t size : {size_t(112), size_t(912), size_t(3008), size_t(8192)}) {
    static size_t cur;
    cur = size;
    expect_abort("first-slab run tail", "invalid pointer (past the last block of a run", [] {
      const int cls = hak::size_to_class(cur);
      if (hak::class_to_size(cls) != cur) _exit(3);
      const size_t run = size_t(hak::class_run_slabs(cls)) * hak::kSlabSize;
      const size_t blocks = (run - hak::kSuperSlabHeader) / cur;
      // The case exists: a tail inside the run, and fewer blocks than a full run's.
      if (blocks * cur == run - hak::kSuperSlabHeader || blocks >= run / cur) _exit(3);
      const size_t n = cur - hak::kCanaryTail;
      for (size_t bytes = 0; bytes < (size_t(256) << 20); bytes += n) {
        char* p = static_cast<char*>(malloc(n));
        if ((reinterpret_cast<uintptr_t>(p) & (hak::kSuperSlabSize - 1)) == hak::kSuperSlabHeader &&
            hak::region_map_lookup(p) == cls) {  // a run's block, not the seed's
          free(p + blocks * cur);
          _exit(0);
        }
      }
      _exit(3);  // never found one: the test fails (exit, not abort)
    });
  }
}

// realloc of a 48-byte block's neighbourhood: 16 bytes before the first block of a run at a
// SuperSlab's first slab (the header), or the tail past a one-slab run's last block (1365
// blocks, a 16-byte tail). Exits 3 if it finds no such run.
namespace {
[[noreturn]] void realloc_near_a_run(bool header) {
  for (size_t bytes = 0; bytes < (size_t(256) << 20); bytes += 48) {
    char* p = static_cast<char*>(malloc(48 - hak::kCanaryTail));
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if ((header ? (a & (hak::kSuperSlabSize - 1)) == hak::kSuperSlabHeader : (a & (hak::kSlabSize - 1)) == 0) &&
        hak::region_map_lookup(p) == hak::size_to_class(48)) {  // a run's block, not the seed's
      void* q = realloc(header ? p - 16 : p + (hak::kSlabSize / 48) * 48, 100);
      escape(q);
      _exit(0);
    }
  }
  _exit(3);
}
}  // namespace

Test(misuse, realloc_of_a_pointer_into_a_superslab_header_or_past_a_run_names_it) {
  // realloc rejects what free rejects, in free's words (it said "inside a block" for both).
  expect_abort("realloc into the header", "realloc(", [] { realloc_near_a_run(true); });
  expect_abort("realloc into the header, named", "before the first block of a run", [] { realloc_near_a_run(true); });
  expect_abort("realloc past a run, named", "invalid pointer (past the last block of a run", [] { realloc_near_a_run(false); });
}

Test(misuse, realloc_of_a_pointer_inside_a_tiny_block) {
  expect_abort("tiny interior realloc", "realloc(", [] {
    char* p = static_cast<char*>(malloc(60));  // the 64-byte class in every variant
    escape(p);
    void* q = realloc(p + 16, 32);
    escape(q);
  });
}

Test(misuse, free_of_a_block_never_handed_out) {
  expect_abort("uncarved block", "never handed out", [] {
    char* p = static_cast<char*>(malloc(48));
    escape(p);
    hak::Slab* s = hak::slab_of_block(p);
    char* last = s->end - hak::class_to_size(s->cls);
    if (last < s->bump) _exit(3);  // the whole run is carved: cannot run this case
    free(last);
    malloc_trim(0);
  });
}

// Release reserves a refill's fresh blocks for later mallocs of the class (tiny_heap.h,
// TlsBump): their out-bits are set as if handed out. A free of the next one is reported when
// the list is flushed, not taken for a good block (which would then go out twice). The other
// variants list those blocks, and catch the free at the call (a double free of a listed block)
// or at the flush (beyond the carved part).
Test(misuse, free_of_a_block_reserved_for_a_later_malloc) {
  expect_abort("reserved block", hak::kBumpCarve ? "invalid pointer (never handed out: reserved for a later malloc)" : "free(", [] {
    const size_t n = 2600;  // a Mid class the test process does not use otherwise
    const int cls = hak::size_to_class(n);
    const size_t size = hak::class_to_size(cls);
    char* p = nullptr;
    for (int i = 0; i < 64; ++i) {
      p = static_cast<char*>(malloc(n));
      escape(p);
      if (!hak::kBumpCarve || hak::t_bump[cls].cur == p + size) break;  // the next one is reserved
    }
    free(p + size);
    malloc_trim(0);
  });
}

Test(misuse, write_after_free_corrupts_a_free_list_link) {
  // A program writes through a dangling pointer into the link word of a cached block; the
  // flush follows the link and finds no block of the class there.
  expect_abort("corrupted link", "corrupted free list (size class 2)", [] {
    char* b = two_cached_blocks();
    memset(b, 0x41, 8);  // use after free
    malloc_trim(0);
  });
}

Test(misuse, write_after_free_links_into_its_own_run) {
  // The flush walks a stretch of one run's blocks without testing each link for alignment: a
  // link overwritten with an address inside the same run, misaligned, must still be named a
  // corrupted list (not an interior free, not a wild access).
  expect_abort("corrupted link, same run", "corrupted free list (size class 2)", [] {
    char* b = two_cached_blocks();
    hak::link_store(b, b + 64 + 8);  // a later block of the run, 8 bytes in
    malloc_trim(0);
  });
  expect_abort("corrupted link, same run, odd", "corrupted free list (size class 2)", [] {
    char* b = two_cached_blocks();
    hak::link_store(b, b + 3);
    malloc_trim(0);
  });
}

Test(misuse, write_after_free_ends_a_flushed_stretch_early) {
  // A stretch of 40 blocks of one run, freed in order; the link of one in the middle is
  // overwritten with nullptr: the flush finds the list shorter than its count.
  expect_abort("list cut short", "ends the list", [] {
    char* p[40];
    for (auto& q : p) {
      q = static_cast<char*>(malloc(28));
      escape(q);
    }
    for (auto* q : p) free(q);
    hak::link_store(p[20], nullptr);  // the list runs p[39] ... p[0]
    malloc_trim(0);
  });
}

Test(misuse, write_after_free_caught_by_malloc_in_the_secure_variant) {
  if (!hak::kHardenLinks) cr_skip_test("the secure and debug variants check every pop");
  expect_abort("corrupted link, pop", "corrupted free list (size class 2)", [] {
    char* b = two_cached_blocks();
    // A link that decodes to a misaligned address (what 7 in 8 random overwrites give).
    hak::link_store(b, reinterpret_cast<void*>(uintptr_t(0x10000041)));
    void* c = malloc(28);
    escape(c);
    _exit(0);
  });
}

Test(misuse, use_after_free_write_reported_on_reuse_in_debug) {
  if (!hak::kDebug) cr_skip_test("the debug variant poisons freed blocks");
  expect_abort("poison", "use after free: 64-byte block", [] {
    char* a = static_cast<char*>(malloc(64 - hak::kCanaryTail));  // the 64-byte class
    escape(a);
    free(a);
    a[40] = 1;  // past the link word
    void* b = malloc(64 - hak::kCanaryTail);
    escape(b);
    _exit(0);
  });
}

Test(misuse, heap_checker_on_every_slow_path_reports_a_broken_invariant) {
  if (!hak::kDebug) cr_skip_test("HAKMEM_CHECK is a debug-variant option");
  expect_abort("HAKMEM_CHECK", "heap check failed (HAKMEM_CHECK=1", [] {
    hak::detail::g_check_every = 1;  // as HAKMEM_CHECK=1 sets it at start-up
    void* p = malloc(32);
    escape(p);
    hak::slab_of_block(p)->used += 1;  // a block the run does not have
    for (int i = 0; i < 100000; ++i) {  // slow paths
      void* q = malloc(size_t(16 + i % 4000));
      escape(q);
      free(q);
    }
  });
}

Test(misuse, free_of_a_stack_address) {
  expect_abort("stack", "invalid pointer (not from malloc", [] {
    alignas(16) char buf[64] = {};
    escape(buf);
    free(buf + 16);
  });
}

Test(misuse, free_of_a_global) {
  expect_abort("global", "invalid pointer (not from malloc", [] {
    alignas(16) static char g[256];
    escape(g);
    free(g + 32);
  });
}

Test(misuse, free_of_a_wild_address) {
  expect_abort("wild", "invalid pointer (not from malloc", [] { free(reinterpret_cast<void*>(uintptr_t(0x5a5a5a5a5a50))); });
}

Test(misuse, realloc_of_a_stack_address) {
  expect_abort("realloc stack", "realloc(", [] {
    alignas(16) char buf[64] = {};
    escape(buf);
    void* q = realloc(buf, 128);
    escape(q);
  });
}

Test(misuse, glibc_blocks_are_still_freed_by_glibc) {
  // Not misuse: blocks of glibc's own malloc (main arena, its own mapping, another thread's
  // arena) handed to hakmem's free and realloc go back to glibc.
  int status = 0;
  std::string err = run_child(
      [] {
        void* a = __libc_malloc(100);
        void* b = __libc_malloc(4 << 20);
        escape(a);
        escape(b);
        a = realloc(a, 200);
        free(a);
        free(b);
        void* c = nullptr;
        std::thread([&c] { c = __libc_malloc(500); }).join();
        escape(c);
        free(c);
      },
      &status);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child ended with status %d: %s", status, err.c_str());
}

Test(misuse, realloc_of_a_freed_span_block) {
  expect_abort("realloc after free", "realloc(", [] {
    void* p = malloc(200000);
    escape(p);
    free(p);
    void* q = realloc(p, 300000);
    escape(q);
  });
}

// Sized delete with a size the block was not allocated for: reported at the call by the
// secure and debug variants (release frees it as usual: C++ passes the size it allocated).
Test(misuse, sized_delete_with_the_wrong_size) {
  if (!hak::kSecure && !hak::kDebug) cr_skip_test("the secure and debug variants check sized deletes");
  // The block holds its class's 112 bytes, or (secure) the 100 asked for: canary.h.
  expect_abort("sized delete, larger", hak::kCanary ? "wrong size (the block holds 100 bytes" : "wrong size (the block holds 112 bytes", [] {
    void* p = ::operator new(100);
    escape(p);
    ::operator delete(p, size_t(5000));
    _exit(0);
  });
  expect_abort("sized delete, smaller", "operator delete(", [] {
    void* p = ::operator new[](100);
    escape(p);
    ::operator delete[](p, size_t(24));
    _exit(0);
  });
  expect_abort("sized delete of a span block", "wrong size", [] {
    void* p = ::operator new(100000);
    escape(p);
    ::operator delete(p, size_t(1000));
    _exit(0);
  });
  expect_abort("aligned sized delete", "wrong size", [] {
    void* p = ::operator new(64, std::align_val_t(256));
    escape(p);
    ::operator delete(p, size_t(300), std::align_val_t(256));
    _exit(0);
  });
}

// Every size with its own size, aligned or not, in every variant: no report.
Test(misuse, sized_deletes_with_the_right_size_are_quiet) {
  int status = 0;
  std::string err = run_child(
      [] {
        for (size_t n = 0; n <= (1u << 20); n += n < 2048 ? 1 : n / 16) {
          void* p = ::operator new(n);
          escape(p);
          ::operator delete(p, n);
          void* q = ::operator new[](n);
          escape(q);
          ::operator delete[](q, n);
          for (size_t a = 32; a <= 4096; a *= 4) {
            void* r = ::operator new(n, std::align_val_t(a));
            escape(r);
            ::operator delete(r, n, std::align_val_t(a));
          }
        }
        // Blocks a miss served from a neighbouring class's cache (tiny_refill's borrow): 96-byte
        // requests handed 112-byte blocks, deleted with their own size.
        static void* keep[100];
        int borrowed = 0;
        for (int round = 0; round < 20; ++round) {
          for (void*& k : keep) escape(k = ::operator new(112));
          for (void* k : keep) ::operator delete(k, size_t(112));
          for (int i = 0; i < 100; ++i) {
            keep[i] = ::operator new(96 - size_t(i % 8));
            escape(keep[i]);
            if (hak::region_map_lookup(keep[i]) != hak::size_to_class(96 - size_t(i % 8) + hak::kCanaryTail)) ++borrowed;
          }
          for (int i = 0; i < 100; ++i) ::operator delete(keep[i], 96 - size_t(i % 8));
        }
        if (borrowed == 0) _exit(4);  // the case did not happen: the test proves nothing
      },
      &status);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status, err.c_str());
  cr_assert(err.empty(), "stderr: %s", err.c_str());
}

// delete of a block new[] made, and delete[] of one it did not (new, malloc): secure and debug,
// at the call, in every tier (Tiny, Mid, span, Large).
Test(misuse, delete_of_a_new_array_block_and_delete_array_of_a_new_block) {
  if (!hak::kSecure && !hak::kDebug) cr_skip_test("the secure and debug variants check new[]/delete pairs");
  const size_t sizes[] = {40, 3000, 100000, size_t(8) << 20};
  for (size_t n : sizes) {
    expect_abort("delete of new[]", "the block was allocated by operator new[] (release it with delete[])", [n] {
      void* p = ::operator new[](n);
      escape(p);
      ::operator delete(p);
    });
    expect_abort("sized delete of new[]", "allocated by operator new[]", [n] {
      void* p = ::operator new[](n);
      escape(p);
      ::operator delete(p, n);
    });
    expect_abort("delete[] of new", "the block was not allocated by operator new[]", [n] {
      void* p = ::operator new(n);
      escape(p);
      ::operator delete[](p);
    });
    expect_abort("delete[] of malloc", "the block was not allocated by operator new[]", [n] {
      void* p = malloc(n);
      escape(p);
      ::operator delete[](p);
    });
  }
  expect_abort("aligned delete of aligned new[]", "allocated by operator new[]", [] {
    void* p = ::operator new[](200, std::align_val_t(64));
    escape(p);
    ::operator delete(p, std::align_val_t(64));
  });
}

// Matching pairs stay quiet, also when a block goes from new[] to new (or malloc) and back, and
// in release, which does not check them.
Test(misuse, matching_new_and_delete_pairs_are_quiet_as_blocks_are_reused) {
  int status = 0;
  std::string err = run_child(
      [] {
        for (int round = 0; round < 50; ++round) {
          for (size_t n : {size_t(16), size_t(40), size_t(700), size_t(3000), size_t(40000), size_t(100000)}) {
            static void* keep[64];
            for (void*& k : keep) escape(k = ::operator new[](n));
            for (void* k : keep) ::operator delete[](k);
            for (void*& k : keep) escape(k = ::operator new(n));  // the same blocks, most of them
            for (void* k : keep) ::operator delete(k);
            for (void*& k : keep) escape(k = ::operator new[](n, std::nothrow));
            for (void* k : keep) ::operator delete[](k, n);
            for (void*& k : keep) escape(k = malloc(n));
            for (void* k : keep) ::operator delete(k);
            void* a = ::operator new[](n, std::align_val_t(256));
            escape(a);
            ::operator delete[](a, std::align_val_t(256));
          }
        }
      },
      &status);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status, err.c_str());
  cr_assert(err.empty(), "stderr: %s", err.c_str());
  if (!hak::kSecure && !hak::kDebug) {
    err = run_child(
        [] {
          void* p = ::operator new[](40);
          escape(p);
          ::operator delete(p);  // release does not check the pair
        },
        &status);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "release reported a new[]/delete pair: %s", err.c_str());
  }
}
