// superslab.h — what a SuperSlab and a slab look like.
//
// A SuperSlab is a 2 MiB-aligned region of 32 slabs × 64 KiB. Its first 4 KiB hold this
// header (the slab metadata of all 32 slabs, and the out-bitmaps of runs of few blocks);
// slab 0's blocks start after it. A slab run (1 to 4 contiguous slabs, as many as its class
// needs for a small tail: run_slabs_of in size_class.h) holds blocks of one size class;
// runs of *different* classes share a SuperSlab. The region map marks each 64 KiB unit of a
// run with the run's class id, and each unassigned unit kRegionFreeSlab.
//
//   SuperSlab (2 MiB)
//   ┌──────────┬──────────────┬──────────────┬─────┬──────────────┐
//   │ header   │ slab 0 data  │ slab 1       │ ... │ slab 31      │
//   │ 4 KiB    │ 60 KiB       │ 64 KiB       │     │ 64 KiB       │
//   └──────────┴──────────────┴──────────────┴─────┴──────────────┘
//
// A new SuperSlab is cut from freed Large memory when the page heap holds an aligned 2 MiB of
// it (large_take_aligned: resident pages, none faulted in beside the memory kept), else mapped.
//
// A block is in exactly one place: a thread's TLS list, its run (a carved block whose out-bit
// is clear; owner only), its run's remote queue (pushed by other threads, drained by the
// owner), never-carved space (bump..end), or in use by the program. `used` counts blocks out
// of the run (TLS lists, remote queue, in use): used + nfree + uncarved blocks == capacity.
// A run keeps no list of its free blocks: its out-bitmap is that set. A refill takes the
// lowest clear bits (address order, from `scan` on) and links those blocks into the TLS list
// with stores; a flush clears bits. Walking an in-block free list instead was a chain of
// dependent loads of blocks long out of cache (a batch allocated after its class sat unused:
// 28 % of tiny_refill's samples on one load), and every flushed block was written once more.
#ifndef HAKMEM_SUPERSLAB_H
#define HAKMEM_SUPERSLAB_H

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "hakmem_build_flags.h"
#include "region_map.h"
#include "size_class.h"

namespace hak {

struct ThreadHeap;

inline constexpr size_t kSuperSlabSize = 2 * 1024 * 1024;
inline constexpr int kSlabsPerSuperSlab = 32;
inline constexpr size_t kSuperSlabHeader = 4096;  // slab 0's data starts here
inline constexpr uint64_t kSuperSlabMagic = 0x68616b6d53536c62ull;  // "hakmSSlb"
inline constexpr uint64_t kAllSlotsFree = 0xFFFFFFFFull;
inline constexpr uint64_t kRetiredBit = 1ull << 32;

// A run's out-bitmap: one bit per block, set while the block is out of the run (in a TLS
// cache, on a remote chain, or in use), clear while it is back in the run or not yet carved.
// Only the run's owner reads or writes it. It is the run's set of free blocks, and how a
// release build catches a double free or a corrupted link on the paths that move blocks
// between runs and caches (flush, remote drain) without touching the malloc/free fast paths.
// 4096 bits: a slab of 16-byte blocks; a run of several slabs has at most 1024 blocks
// (run_slabs_of).
// The 32 bitmaps are interleaved word by word (word w of slot i at w × 32 + i), so the pages
// a SuperSlab touches follow its largest bitmap in use, not the number of slots: one 4 KiB
// page holds the first 16 words of every slot (runs of blocks ≥ 64 B), the whole area (16 KiB)
// is touched only by runs of 16-byte blocks.
// Runs of at most kHeaderBitsWords × 64 blocks (every class of 352 B and up)
// keep their bitmap in the spare end of the header page instead, interleaved the same way
// (SuperSlab::head_bits): a SuperSlab whose runs are all of such classes never touches the
// bitmap mapping, which saves a resident page per 2 MiB (0.2 % of the payload).
inline constexpr size_t kRunBitsWords = kSlabSize / 16 / 64;
inline constexpr size_t kOutBitsBytes = kSlabsPerSuperSlab * kRunBitsWords * 8;  // 16 KiB
// Secure and debug variants: a second bitmap of the same shape after the out-bitmaps, one bit
// per block set while the block is out through operator new[] (so that delete of it, or
// delete[] of a block new did not make, is reported: hakmem.cpp, delete_kind_check). Every
// run keeps it there, header-resident out-bitmap or not.
inline constexpr bool kArrayBits = kSecure || kDebug;
inline constexpr size_t kBitsMappingBytes = kOutBitsBytes * (kArrayBits ? 2 : 1);
inline constexpr uint32_t kHeaderBitsWords = uint32_t(kHeaderBitsBlocks / 64);

// Which list of its owner's heap a slab run is on.
inline constexpr uintptr_t kRemoteNotified = 1;

enum SlabList : uint8_t { kListNone = 0, kListAvail = 1, kListFull = 2 };

// Metadata of one 64 KiB slab. Only the head slab of a run carries block state; the others
// only point back to it (run_head).
struct Slab {
  uint32_t nfree;             // carved blocks back in the run (clear out-bits below bump)
  uint32_t scan;              // out-bitmap word from which a refill looks for clear bits
  char* bump;                 // next never-carved block
  char* end;                  // end of the carvable area: bump + k × size ≤ end
  char* start;                // first block of the run (every slab of the run holds it)
  uint64_t* out_bits;         // the run's out-bitmap (below)
  Slab* next;                 // owner's list
  Slab* prev;
  ThreadHeap* owner;          // heap that may carve and free locally; nullptr when unowned
  // Blocks freed by other threads: an MPSC stack whose word also carries kRemoteNotified
  // (bit 0): set while the run sits on its owner's pending list. Only the pending-list
  // consumer clears it, so a run is on that list at most once.
  std::atomic<uintptr_t> remote;
  Slab* pending_next;         // link in the owner heap's pending list
  uint32_t used;              // blocks out of the slab (owner-only)
  uint32_t capacity;          // blocks in the run
  uint8_t cls;                // size class id, 0 when unassigned
  uint8_t run_len;            // slabs in the run (head only)
  uint8_t run_head;           // index of the run's head slab (every slab of the run)
  uint8_t list;               // SlabList
  // run_purge.h: the pages inside its free blocks went back, and no block has come back since
  // (the flush and the remote drain clear it). Owner only.
  uint8_t purged;
};

struct SuperSlab {
  uint64_t magic;
  // Low 32 bits: slot i is free (assignable) when bit i is set. kRetiredBit: decommitted and
  // waiting in the pool's retired list; claims fail. Claimed and released with CAS.
  std::atomic<uint64_t> state;
  SuperSlab* next_partial;          // link in the shared pool's partial stack
  std::atomic<bool> in_partial;     // on the partial stack (keeps it there at most once)
  SuperSlab* next_retired;          // link in the retired list (under the pool lock)
  SuperSlab* next_all;              // every SuperSlab ever mapped (never unlinked)
  // Slots released since their pages were last decommitted (resident but free).
  std::atomic<uint32_t> dirty_free;
  // The out-bitmaps of the 32 slots (kRunBitsWords words each), in a mapping of their own.
  uint64_t* out_bits;
  Slab slabs[kSlabsPerSuperSlab];
  // The first kHeaderBitsWords words of each slot's bitmap, for runs that need no more
  // (run_bits_in_header); interleaved as in the mapping.
  uint64_t head_bits[kHeaderBitsWords * kSlabsPerSuperSlab];
};
static_assert(sizeof(SuperSlab) <= kSuperSlabHeader, "SuperSlab header must fit its page");
static_assert(kHeaderBitsBlocks % 64 == 0 && kBitsPageBlocks * kSlabsPerSuperSlab / 8 <= 4096,
              "header bitmaps hold whole words; kBitsPageBlocks bits of every slot fit one page");

// Whether the runs of class cls keep their out-bitmap in the header page (head_bits): the
// longest run of the class (not starting at slot 0) has at most kHeaderBitsWords × 64 blocks.
inline bool run_bits_in_header(int cls) {
  return size_t(class_run_slabs(cls)) * kSlabSize / class_to_size(cls) <= kHeaderBitsWords * 64;
}
// Where the out-bitmap of a run of class cls in slot idx of ss lives (interleaved: out_word).
inline uint64_t* run_bits_home(SuperSlab* ss, int idx, int cls) {
  return (run_bits_in_header(cls) ? ss->head_bits : ss->out_bits) + idx;
}

HAK_FAST_PATH SuperSlab* superslab_of(const void* p) {
  return reinterpret_cast<SuperSlab*>(reinterpret_cast<uintptr_t>(p) & ~(uintptr_t(kSuperSlabSize) - 1));
}
HAK_FAST_PATH int slab_index_of(const void* p) {
  return int((reinterpret_cast<uintptr_t>(p) >> 16) & (kSlabsPerSuperSlab - 1));
}
// The run head whose blocks include p (p must be inside an assigned run).
HAK_FAST_PATH Slab* slab_of_block(const void* p) {
  SuperSlab* ss = superslab_of(p);
  return &ss->slabs[ss->slabs[slab_index_of(p)].run_head];
}
inline SuperSlab* superslab_of_slab(const Slab* s) { return superslab_of(s); }
inline int slab_index_in_superslab(const Slab* s) { return int(s - superslab_of(s)->slabs); }

// First byte of slab `idx`'s data.
inline char* slab_data_start(SuperSlab* ss, int idx) {
  return reinterpret_cast<char*>(ss) + (idx == 0 ? kSuperSlabHeader : size_t(idx) * kSlabSize);
}
// First block of run s (s is its head slab), and its out-bitmap.
inline char* run_data_start(const Slab* s) { return s->start; }
inline uint64_t* run_out_bits(const Slab* s) { return s->out_bits; }
// Word w of an out-bitmap (run_out_bits), bits 64w .. 64w+63.
HAK_FAST_PATH uint64_t& out_word(uint64_t* bits, uint32_t w) { return bits[size_t(w) * kSlabsPerSuperSlab]; }
HAK_FAST_PATH uint64_t out_word(const uint64_t* bits, uint32_t w) { return bits[size_t(w) * kSlabsPerSuperSlab]; }
// Words of s's out-bitmap that its blocks use (a header-resident bitmap has no more).
inline uint32_t run_bits_words(const Slab* s) { return (s->capacity + 63) / 64; }
// Block indices of one run, with its geometry in registers (for loops over a run's blocks).
struct RunIndex {
  const char* start;
  const char* end;
  uint64_t recip;
  size_t size;
  RunIndex() = default;
  explicit RunIndex(const Slab* s)
      : start(s->start), end(s->end), recip(detail::kTables.recip[s->cls]), size(class_to_size(s->cls)) {}
  // Index of block b, or UINT32_MAX when b is not the start of one of the run's blocks.
  HAK_FAST_PATH uint32_t operator()(const void* b) const {
    const char* c = static_cast<const char*>(b);
    if (c < start || c >= end) return UINT32_MAX;
    size_t off = size_t(c - start);
    uint32_t i = uint32_t((uint64_t(off) * recip) >> 40);
    return size_t(i) * size == off ? i : UINT32_MAX;
  }
};
HAK_FAST_PATH uint32_t run_block_index(const Slab* s, const void* b) { return RunIndex(s)(b); }

// Word w of run s's new[] bitmap (kArrayBits), interleaved as the out-bitmap mapping.
inline uint64_t* run_array_word(Slab* s, uint32_t w) {
  SuperSlab* ss = superslab_of(s);
  return ss->out_bits + kOutBitsBytes / 8 + size_t(w) * kSlabsPerSuperSlab + size_t(s - ss->slabs);
}

// Whether p, inside a run of class cls (the region map said so), is the start of one of its
// blocks: its offset from the run's start (held by every slab of the run) passes
// class_starts_block. p in the SuperSlab header before a run at the first slab is at most
// 4 KiB before the run's start: its offset, cut to 32 bits, is within 4 KiB of 2^32 and
// fails. One slab lookup and the test. Free's check when the region map is in its two-level
// form, and the slow path's second look at a pointer the flat form's test (region_run_offset +
// class_starts_block_in, hak_free_api.inc.h) turned away.
HAK_FAST_PATH bool block_start_in_run(const void* p, int cls) {
  const Slab& t = superslab_of(p)->slabs[slab_index_of(p)];
  return class_starts_block(unsigned(cls), uint32_t(static_cast<const char*>(p) - t.start));
}

// Maps a fresh SuperSlab, registers it in the region map and publishes it with the slots in
// `claimed` already taken (so the caller's first run cannot be lost to a concurrent retire).
// nullptr on OOM.
SuperSlab* superslab_create(uint32_t claimed = 0);
// Re-arms a retired SuperSlab (its header survived; its data pages read as zero), with the
// slots in `claimed` already taken.
void superslab_revive(SuperSlab* ss, uint32_t claimed = 0);
// Decommits the data pages of a SuperSlab whose state was CASed to kRetiredBit.
void superslab_decommit(SuperSlab* ss);

// Claims `k` contiguous free slots, resident ones (dirty_free) first, else the first that fit;
// returns the first index or -1. Lock-free.
int superslab_claim(SuperSlab* ss, int k);
// Returns slots [idx, idx + k) to the free mask; returns the new state.
uint64_t superslab_unclaim(SuperSlab* ss, int idx, int k);
// Claims whichever slots of `mask` are free; returns the claimed bits. Lock-free.
uint32_t superslab_claim_bits(SuperSlab* ss, uint32_t mask);
// Returns claimed slots `bits` to the free mask; returns the new state.
uint64_t superslab_unclaim_bits(SuperSlab* ss, uint32_t bits);
// Decommits the data pages of the (claimed, unassigned) slots in `bits`.
void superslab_decommit_slots(SuperSlab* ss, uint32_t bits);

// Turns claimed slots [idx, idx+k) into an empty run of class `cls` owned by `owner`:
// resets the metadata and points the region map at the class.
Slab* slab_run_init(SuperSlab* ss, int idx, int cls, ThreadHeap* owner);
// Re-arms an empty run of the same class for a new owner (blocks are carved anew).
void slab_run_reset(Slab* s, ThreadHeap* owner);
// Run s is being set up (slab_run_init). A run at a SuperSlab's first slab is 4 KiB shorter
// than its class's other runs, and the block-aligned pointer into its tail (s->end, past its
// last block) passes free's block-start test, whose bound is a full run's block count
// (class_starts_block; 125 of the 158 classes have such a tail). This stores the free-block
// key there, so free's key check sends that pointer to the cold check (tiny_suspect_check),
// which reports it at the call: no instruction on the fast path. The cost is the write: the
// run's last page is touched at set-up, one page fault and 4 KiB resident per first-slab run
// whose last page nothing else has touched yet (a fresh SuperSlab's; `bash -c :` 160 -> 161
// faults). Stored at the carve that reaches the end instead, it left the pointer open for as
// long as the run was not carved whole: most first-slab runs, and the next malloc would hand
// it out (docs/BENCHMARKS.md). Nothing else writes the tail while the run lives (bump_return
// and slab_run_reset keep `end`; a slot's pages are decommitted only once no run holds it, and
// run_purge.h decommits only pages inside free blocks, all below `end`).
void run_seal_tail(Slab* s);
// Unassigns a run (region map → kRegionFreeSlab, metadata cleared). Slots stay claimed.
void slab_run_unassign(Slab* s);

// Debug checker: the counters of an owned run reconcile. Returns false (and reports what is
// wrong) if not. Reads the out-bitmap: call it from the owner.
bool slab_is_valid(const Slab* s);
// The slot states agree with the runs. With `owner`, only that heap's runs are looked at
// (safe while other threads claim and release slots: only the owner releases its runs).
bool superslab_is_valid(const SuperSlab* ss, const ThreadHeap* owner = nullptr);

// Every SuperSlab ever mapped, newest first (for statistics and trim).
SuperSlab* superslab_list_head();

}  // namespace hak

#endif  // HAKMEM_SUPERSLAB_H
