// free_link.h — the two words of a free Tiny/Mid block: its link, and the free-block key.
//
// Every list of free blocks (a thread's TLS cache, a remote chain) is linked through the
// blocks' first word.
//
// Every variant: the second word of a block holds kFreeKey while the block is free (free
// stores it, the malloc pop clears it), as glibc's tcache does (its `key` field, glibc 2.29).
// free() reads the word first: a block that already holds the key was freed before, and a cold
// check (tiny_suspect_check) confirms it — the block is on this thread's list of its class, or
// back in its run — before a double free is reported; a match it cannot confirm (another
// thread's cache, a remote queue, or a program that stored the value itself) lets the free go
// on, and the flush checks the block then. So the key needs no secrecy: a forged one costs
// its forger a slow free, never a report or a corrupted list, and an erased one only delays
// the report to the flush. A constant (glibc's is random since 2.34 because its first key, the
// tcache's address, leaked a heap pointer; a constant leaks nothing) is an immediate operand:
// no load. Cost: a compare and a store per free, a store per malloc (free_link.h's key_*).
//
// Secure and debug variants (kHardenLinks): the word never holds the next pointer in the clear,
//
//     stored = next ^ (address of the word >> 12) ^ g_link_key
//
// glibc's safe-linking (glibc 2.32; Itkin, "Safe-Linking", Check Point Research 2020) with a
// per-process random key on top, so that neither a heap address nor a guess of the layout
// lets a program (or an attacker) forge a link: a use-after-free write or an overflow from
// the previous block turns the link into noise rather than a pointer of its author's choice.
// malloc's pop checks that the link it follows is 8-byte aligned, as every block is (7 in 8
// random overwrites are reported there, before the bad pointer is handed out), and free
// catches a block freed twice in a row (p == its list's head). Cost: 7 instructions per free,
// 7 per malloc, 2-10 % on the benchmark table (docs/BENCHMARKS.md "Hardening") — over the 2 %
// the release variant allows itself, hence a variant of its own (out/secure).
//
// Every variant: the flush of a TLS list back to the runs checks each link it follows against
// the region map and each block's slot in its run (start of a block, carved, out of the run:
// the run's out-bitmap, superslab.h); the remote drain checks the chains it takes the same
// way. Those paths touch the metadata anyway. (A run keeps its free blocks in that bitmap, not
// in a list: no link of a block back in its run is ever followed.)
//
// Debug variant under valgrind: a free block is NOACCESS to memcheck (valgrind_support.h);
// link_load and link_store open its first word for the one access and close it again.
#ifndef HAKMEM_FREE_LINK_H
#define HAKMEM_FREE_LINK_H

#include <stdint.h>

#include "hakmem_build_flags.h"
#include "valgrind_support.h"

namespace hak {

// Set once by hak_init, before the first block is linked; never change afterwards (a forked
// child keeps its parent's key along with its parent's lists).
extern uintptr_t g_link_key;
// The free-block key: not a pointer (high bits set), not a typical integer, not a common double
// (a NaN pattern) or text. It is the sign extension of a 32-bit value, so that x86-64 compares
// and stores it as an immediate operand: one instruction each, no register.
inline constexpr uintptr_t kFreeKey = 0xFFFFFFFFA9D24D65ull;

HAK_FAST_PATH uintptr_t link_mask(const void* b) {
  if constexpr (kHardenLinks) return (reinterpret_cast<uintptr_t>(b) >> 12) ^ g_link_key;
  return 0;
}
// The next block after b (nullptr at the end of the list), unchecked.
HAK_FAST_PATH void* link_load(const void* b) {
  if constexpr (kValgrind) vg_defined(b, sizeof(uintptr_t));
  void* next = reinterpret_cast<void*>(*static_cast<const uintptr_t*>(b) ^ link_mask(b));
  if constexpr (kValgrind) vg_noaccess(b, sizeof(uintptr_t));
  return next;
}
HAK_FAST_PATH void link_store(void* b, const void* next) {
  if constexpr (kValgrind) vg_undefined(b, sizeof(uintptr_t));
  *static_cast<uintptr_t*>(b) = reinterpret_cast<uintptr_t>(next) ^ link_mask(b);
  if constexpr (kValgrind) vg_noaccess(b, sizeof(uintptr_t));
}
// A decoded link every block satisfies: 8-byte aligned (nullptr included).
HAK_FAST_PATH bool link_plausible(const void* next) { return (reinterpret_cast<uintptr_t>(next) & 7) == 0; }

// The free-block key word (the second word of every block: classes are 16 bytes and up).
HAK_FAST_PATH uintptr_t* key_word(void* b) { return static_cast<uintptr_t*>(b) + 1; }
// Whether b holds the key (was freed and not handed out since, or a program wrote the value).
HAK_FAST_PATH bool key_held(void* b) {
  if constexpr (kValgrind) vg_defined(key_word(b), sizeof(uintptr_t));
  bool held = *key_word(b) == kFreeKey;
  if constexpr (kValgrind) vg_noaccess(key_word(b), sizeof(uintptr_t));
  return held;
}
// Whether a live block (one the program still holds, as realloc and sized delete see it) holds
// the key: read without telling memcheck anything, so false under memcheck (which reports the
// misuse itself, and to which the word of a block of fewer than 16 requested bytes is NOACCESS).
HAK_FAST_PATH bool key_held_live(const void* b) {
  if constexpr (kValgrind) {
    if (vg_running()) return false;
  }
  return *(static_cast<const uintptr_t*>(b) + 1) == kFreeKey;
}
// free: the block is free from now on. Under valgrind the word is closed again (the whole
// block is NOACCESS once free: valgrind_support.h).
HAK_FAST_PATH void key_set(void* b) {
  if constexpr (kValgrind) vg_undefined(key_word(b), sizeof(uintptr_t));
  *key_word(b) = kFreeKey;
  if constexpr (kValgrind) vg_noaccess(key_word(b), sizeof(uintptr_t));
}
// malloc: the block is the program's again. (Under valgrind the allocation announces the
// block right after, which makes the word undefined, as malloc'ed memory is.)
HAK_FAST_PATH void key_clear(void* b) {
  if constexpr (kValgrind) vg_undefined(key_word(b), sizeof(uintptr_t));
  *key_word(b) = 0;
}

// Secure variant: a free block of 32 bytes or more (class 2 and up) also holds kFreeWordPoison in
// its third and fourth words, stored by free and by the refill that links a block it carves;
// malloc's pop (and a refill taking blocks back from their run) checks them and the key: a
// write into a free block's first 32 bytes is reported when the block would be handed out
// again (write_after_free), instead of being handed to the program with it. A constant that
// fits an immediate (no load); the first word is the link, checked by safe-linking.
inline constexpr bool kPoisonFree = kSecure;
inline constexpr uintptr_t kFreeWordPoison = 0xFFFFFFFFB7E15163ull;

HAK_FAST_PATH void poison_set(void* b, int cls) {
  if (cls >= 2) {
    static_cast<uintptr_t*>(b)[2] = kFreeWordPoison;
    static_cast<uintptr_t*>(b)[3] = kFreeWordPoison;
  }
}
// Whether free block b still holds the key (and the poison, from class 2 on).
HAK_FAST_PATH bool free_words_intact(const void* b, int cls) {
  const auto* w = static_cast<const uintptr_t*>(b);
  if (HAK_UNLIKELY(w[1] != kFreeKey)) return false;
  return cls < 2 || ((w[2] ^ kFreeWordPoison) | (w[3] ^ kFreeWordPoison)) == 0;
}
// Reports the first word of free block b (of class cls) that was written while it was free;
// `where` says when it was found.
[[noreturn]] HAK_SLOW_PATH void write_after_free(const void* b, int cls, const char* where);

// Sets g_link_key from the OS's random source. Called once by hak_init.
void link_key_init();

// Reports a link that failed a check and aborts: block b (of size class cls) links to next
// (b == nullptr: next is the head of the list).
[[noreturn]] HAK_SLOW_PATH void link_corrupted(const void* b, const void* next, int cls);

}  // namespace hak

#endif  // HAKMEM_FREE_LINK_H
