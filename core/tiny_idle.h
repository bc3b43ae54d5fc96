// tiny_idle.h — which size classes a thread has left idle: the spells of its TLS lists.
//
// Holds, per thread (t_spells in tiny_heap.cpp): the thread's count of refills, a ring of
// spells in the order they began (class, stamp = that count then), and per class the stamp
// and kind of its current spell and the count after its last refill.
// May call: nothing (header-only; size_class.h for the class count). tiny_heap.cpp acts on
// what it reports: it flushes an expired class's list and gives back its emptied run.
//
// A class begins a spell
//   - kSpellIdle at each of its refills: it may go idle from here (a batch allocated, used
//     and freed whole, its blocks all back on the list without an overflow);
//   - kSpellFreeing when its frees overflow twice with no refill between (tiny_cache_overflow's
//     freer branch: it frees what it does not allocate, often other threads' blocks).
// A spell lasts until the class refills again or kIdleRefills of the thread's refills (of other
// classes) have passed: then next_expired hands the class over, with the kind of its spell.
// An expired freeing spell gives everything back; an idle one only if every block the class's
// runs have out is on the thread's list (tiny_heap.cpp: a class holding live blocks is in use,
// and its list stays). Without this a batch leaves its last run and a list of blocks in every
// class it used until the next decay pass: 128 classes in the batch bench, 15 MiB for batches
// of at most 6.4 MB (docs/BENCHMARKS.md, "Idle classes give their runs back").
//
// The ring holds kIdleRing spells; a spell that finds it full waits for the decay pass (which
// flushes every list). Stale entries (the class refilled or began another spell since) are
// skipped by their stamp.
#ifndef HAKMEM_TINY_IDLE_H
#define HAKMEM_TINY_IDLE_H

#include <stdint.h>

#include "size_class.h"

namespace hak {

// Refills of other classes after which a class in a spell is handed over (next_expired).
inline constexpr uint32_t kIdleRefills = 16;

enum SpellKind : uint8_t { kSpellNone = 0, kSpellIdle = 1, kSpellFreeing = 2 };

struct IdleSpells {
  static constexpr uint32_t kIdleRing = 64;  // one spell per refill: ≥ kIdleRefills + room for freeing ones

  uint32_t refills;                          // the thread's refills, wrapping
  uint32_t head, tail;                       // ring positions, free-running
  uint32_t ring_stamp[kIdleRing];
  uint8_t ring_cls[kIdleRing];
  uint8_t kind[kNumClasses + 1];             // the current spell's kind (kSpellNone: none)
  uint32_t stamp[kNumClasses + 1];           // the current spell's stamp
  uint32_t last_refill[kNumClasses + 1];     // `refills` right after the class's last refill

  // A refill of cls: counted, and the class's spell begins anew (kSpellIdle). Returns true if
  // the thread's previous refill was this class's too (a streak: the class allocates a batch).
  bool refill(int cls) {
    const bool streak = last_refill[cls] != 0 && last_refill[cls] == refills;
    last_refill[cls] = ++refills;
    kind[cls] = kSpellNone;
    begin(cls, kSpellIdle);
    return streak;
  }

  // The class begins a spell of kind k, unless it is in one of that kind or a stronger one.
  void begin(int cls, SpellKind k) {
    if (kind[cls] >= k) return;
    kind[cls] = k;
    stamp[cls] = refills;
    if (tail - head < kIdleRing) {
      ring_cls[tail % kIdleRing] = uint8_t(cls);
      ring_stamp[tail % kIdleRing] = refills;
      ++tail;
    }
  }

  bool pending() const { return head != tail; }

  // The next class whose spell has lasted kIdleRefills refills, its spell ended (*k: its
  // kind); 0 when there is none yet.
  int next_expired(SpellKind* k) {
    while (head != tail) {
      const uint32_t i = head % kIdleRing;
      if (refills - ring_stamp[i] < kIdleRefills) return 0;
      ++head;
      const int c = ring_cls[i];
      if (kind[c] == kSpellNone || stamp[c] != ring_stamp[i]) continue;  // refilled, or a newer spell
      *k = SpellKind(kind[c]);
      kind[c] = kSpellNone;
      return c;
    }
    return 0;
  }
};

}  // namespace hak

#endif  // HAKMEM_TINY_IDLE_H
