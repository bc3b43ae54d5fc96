// test_shared_pool.cpp — the shared pool (shared_pool.h): every acquire stage, the release
// mirror, SuperSlab retirement at the decay pass, revival, trim and the statistics.
//
// The tests acquire runs for fake owners (ThreadHeap objects no thread uses) of classes the
// test process hardly uses otherwise (768 B and 640 B blocks), and start with
// shared_pool_trim() (empty SuperSlabs retired). Pointer arrays are static, so the tests
// themselves do not allocate between the steps they check.
#include <criterion/criterion.h>

#include <pthread.h>
#include <string.h>

#include <atomic>

#include "free_link.h"
#include "shared_pool.h"
#include "tiny_heap.h"

using namespace hak;

namespace {

ThreadHeap g_owner_a, g_owner_b;

const int kC = size_to_class(768);  // single-slab Tiny classes
const int kD = size_to_class(640);

int class_with_run(int k) {
  for (int c = 1; c <= kNumClasses; ++c)
    if (class_run_slabs(c) == k) return c;
  return 0;
}

Slab* acq(int cls, ThreadHeap* owner) {
  Slab* s = shared_pool_acquire(cls, owner);
  cr_assert_not_null(s, "shared_pool_acquire(%d) failed", cls);
  cr_assert_eq(s->cls, cls);
  cr_assert_eq(s->owner, owner);
  cr_assert_eq(s->used, 0u);
  cr_assert_eq(s->nfree, 0u);
  cr_assert_eq(s->bump, slab_data_start(superslab_of_slab(s), slab_index_in_superslab(s)), "a run starts uncarved");
  cr_assert_eq(s->list, kListNone);
  cr_assert_eq(region_map_lookup(s->bump), cls);
  return s;
}

SharedPoolStats stats() { return shared_pool_stats(); }
int slot(Slab* s) { return slab_index_in_superslab(s); }
uint64_t free_mask(SuperSlab* ss) { return ss->state.load() & kAllSlotsFree; }

// Acquires runs of cls into `out` until `new_superslabs` more SuperSlabs have been mapped.
// Returns how many runs it took.
int fill_until_mapped(int cls, Slab** out, int cap, uint64_t new_superslabs) {
  uint64_t target = stats().superslabs_mapped + new_superslabs;
  int n = 0;
  while (stats().superslabs_mapped < target) {
    cr_assert_lt(n, cap, "no new SuperSlab after %d runs", n);
    out[n++] = acq(cls, &g_owner_a);
  }
  return n;
}

// Indices into runs[0..n) of the runs that lie in ss.
int runs_in(SuperSlab* ss, Slab** runs, int n, int* idx) {
  int k = 0;
  for (int i = 0; i < n; ++i)
    if (runs[i] != nullptr && superslab_of_slab(runs[i]) == ss) idx[k++] = i;
  return k;
}

Slab* g_runs[10 * kSlabsPerSuperSlab + 8];

}  // namespace

// No empty runs are kept per class: a released run's slots are free at once, for any class.
Test(shared_pool, a_released_run_gives_its_slots_back_at_once) {
  shared_pool_trim();
  SharedPoolStats st0 = stats();
  Slab* s = acq(kC, &g_owner_a);
  cr_assert_eq(stats().runs_assigned, st0.runs_assigned + 1);
  // Carve a few blocks and give them back, as a heap would before releasing the run.
  size_t size = class_to_size(kC);
  for (int i = 0; i < 3; ++i) {
    s->bump += size;
    s->nfree++;
  }
  cr_assert(slab_is_valid(s));
  SuperSlab* ss = superslab_of_slab(s);
  const int at = slot(s);
  shared_pool_release(s);
  cr_assert_eq(stats().runs_assigned, st0.runs_assigned, "the released run is no longer assigned");
  cr_assert_eq(region_map_lookup(slab_data_start(ss, at)), kRegionFreeSlab, "its slot is unassigned");
  cr_assert((free_mask(ss) >> at) & 1, "its slot is free again");
  cr_assert((ss->dirty_free.load() >> at) & 1, "and counted resident until the decay pass");
  Slab* again = acq(kD, &g_owner_b);  // checks: new owner and class, blocks to be carved anew
  cr_assert_eq(stats().runs_assigned, st0.runs_assigned + 1);
  shared_pool_release(again);
  cr_assert(shared_pool_is_valid());
}

Test(shared_pool, stage2_claims_consecutive_slots_of_the_current_superslab_and_stage3_maps) {
  shared_pool_trim();
  uint64_t mmaps0 = stats().superslabs_mapped;
  int n = fill_until_mapped(kC, g_runs, int(sizeof g_runs / sizeof g_runs[0]), 1);
  cr_assert_eq(stats().superslabs_mapped, mmaps0 + 1, "stage 3 maps one SuperSlab");
  Slab* first = g_runs[n - 1];
  SuperSlab* ss = superslab_of_slab(first);
  cr_assert_eq(superslab_list_head(), ss, "the run that needed a new SuperSlab lives in it");
  cr_assert_eq(slot(first), 0, "a fresh SuperSlab is claimed from slot 0");
  for (int i = 1; i <= 6; ++i) {
    Slab* s = acq(kC, &g_owner_a);
    cr_assert_eq(superslab_of_slab(s), ss, "stage 2 keeps using the current SuperSlab");
    cr_assert_eq(slot(s), i, "slots are claimed in order");
  }
  cr_assert_eq(stats().superslabs_mapped, mmaps0 + 1, "no mapping while the current one has room");
  // A multi-slab class claims contiguous slots of the same SuperSlab.
  int m = class_with_run(3);
  Slab* big = acq(m, &g_owner_a);
  cr_assert_eq(superslab_of_slab(big), ss);
  cr_assert_eq(slot(big), 7);
  cr_assert_eq(big->run_len, 3);
  cr_assert_eq(acq(kC, &g_owner_a), &ss->slabs[10]);
  cr_assert(shared_pool_is_valid());
}

Test(shared_pool, stage1_reuses_released_slots_of_an_older_superslab) {
  shared_pool_trim();
  int n = fill_until_mapped(kC, g_runs, int(sizeof g_runs / sizeof g_runs[0]), 2);
  SuperSlab* b = superslab_of_slab(g_runs[n - 1]);  // current
  SuperSlab* a = b->next_all;                         // the one mapped before: all ours
  int idx[kSlabsPerSuperSlab];
  cr_assert_eq(runs_in(a, g_runs, n, idx), kSlabsPerSuperSlab, "the older new SuperSlab is entirely ours");
  cr_assert_eq(free_mask(a), 0u);
  uint64_t runs0 = stats().runs_assigned;
  Slab* by_slot[kSlabsPerSuperSlab];
  for (int i = 0; i < kSlabsPerSuperSlab; ++i) by_slot[slot(g_runs[idx[i]])] = g_runs[idx[i]];
  for (int s : {5, 9, 10}) shared_pool_release(by_slot[s]);
  cr_assert_eq(stats().runs_assigned, runs0 - 3);
  cr_assert_eq(free_mask(a), (1ull << 5) | (1ull << 9) | (1ull << 10));
  uint64_t mapped0 = stats().superslabs_mapped;
  // Another class is served from a's free slots, first fit.
  Slab* d1 = acq(kD, &g_owner_b);
  cr_assert_eq(superslab_of_slab(d1), a, "stage 1 takes the SuperSlab with released slots");
  cr_assert_eq(slot(d1), 5);
  int m2 = class_with_run(2);
  Slab* d2 = acq(m2, &g_owner_b);
  cr_assert_eq(superslab_of_slab(d2), a, "a stays on the partial stack while it has free slots");
  cr_assert_eq(slot(d2), 9, "a two-slab run fits slots 9..10");
  cr_assert_eq(free_mask(a), 0u);
  Slab* d3 = acq(kD, &g_owner_b);
  cr_assert_eq(superslab_of_slab(d3), b, "a full SuperSlab leaves the partial stack; stage 2 serves");
  cr_assert_eq(stats().superslabs_mapped, mapped0);
  cr_assert(shared_pool_is_valid());
}

// Stage 1 looks past SuperSlabs whose free slots are too few or too scattered for the run it
// needs before stage 3 maps memory: several such SuperSlabs on top of the partial stack, one
// with room below them.
Test(shared_pool, stage1_looks_past_superslabs_without_room_before_mapping) {
  shared_pool_trim();
  const int kFragmented = kPartialTries + 2;
  int n = fill_until_mapped(kC, g_runs, int(sizeof g_runs / sizeof g_runs[0]), kFragmented + 2);
  // The SuperSlabs mapped for this test, newest first: the current one, then room, then the
  // fragmented ones.
  SuperSlab* cur = superslab_of_slab(g_runs[n - 1]);
  SuperSlab* room = cur->next_all;
  while (free_mask(cur) != 0) acq(kD, &g_owner_a);  // the current SuperSlab is full too
  Slab* by_slot[kSlabsPerSuperSlab];
  int idx[kSlabsPerSuperSlab];
  cr_assert_eq(runs_in(room, g_runs, n, idx), kSlabsPerSuperSlab);
  for (int i = 0; i < kSlabsPerSuperSlab; ++i) by_slot[slot(g_runs[idx[i]])] = g_runs[idx[i]];
  for (int s = 12; s < 16; ++s) shared_pool_release(by_slot[s]);  // four free slots in a row
  SuperSlab* frag = room;
  for (int f = 0; f < kFragmented; ++f) {  // pushed after `room`: above it on the stack
    frag = frag->next_all;
    cr_assert_eq(runs_in(frag, g_runs, n, idx), kSlabsPerSuperSlab);
    for (int i = 0; i < kSlabsPerSuperSlab; ++i) by_slot[slot(g_runs[idx[i]])] = g_runs[idx[i]];
    for (int s : {3, 7, 11}) shared_pool_release(by_slot[s]);  // single free slots
  }
  uint64_t mapped0 = stats().superslabs_mapped;
  int m4 = class_with_run(4);
  cr_assert_neq(m4, 0);
  Slab* r = acq(m4, &g_owner_b);
  cr_assert_eq(superslab_of_slab(r), room, "a four-slab run came from a new SuperSlab, not the one with room");
  cr_assert_eq(slot(r), 12);
  cr_assert_eq(stats().superslabs_mapped, mapped0, "mapped memory while a listed SuperSlab had room");
  // The fragmented ones are still listed: single-slab runs are served from them.
  Slab* one = acq(kD, &g_owner_b);
  cr_assert_neq(superslab_of_slab(one), room);
  cr_assert_eq(stats().superslabs_mapped, mapped0);
  cr_assert(shared_pool_is_valid());
}

Test(shared_pool, empty_superslabs_stay_until_the_decay_pass_retires_them_then_revival) {
  shared_pool_trim();
  int n = fill_until_mapped(kC, g_runs, int(sizeof g_runs / sizeof g_runs[0]), 3);
  SuperSlab* c = superslab_of_slab(g_runs[n - 1]);
  SuperSlab* b = c->next_all;
  SuperSlab* a = b->next_all;
  int ia[kSlabsPerSuperSlab], ib[kSlabsPerSuperSlab];
  cr_assert_eq(runs_in(a, g_runs, n, ia), kSlabsPerSuperSlab);
  cr_assert_eq(runs_in(b, g_runs, n, ib), kSlabsPerSuperSlab);
  // Mark one block of a and of b: they must read zero once decommitted.
  char* pa = g_runs[ia[3]]->bump;
  char* pb = g_runs[ib[3]]->bump;
  memset(pa, 0x5A, 64);
  memset(pb, 0x5A, 64);
  SharedPoolStats st0 = stats();

  for (int i : ia) shared_pool_release(g_runs[i]);
  cr_assert_eq(free_mask(a), kAllSlotsFree);
  cr_assert_eq(a->state.load(), kAllSlotsFree, "an empty SuperSlab stays mapped");
  cr_assert_eq(stats().runs_assigned, st0.runs_assigned - kSlabsPerSuperSlab);
  for (int i : ib) shared_pool_release(g_runs[i]);
  cr_assert_eq(a->state.load(), kAllSlotsFree, "a second empty one does not retire the first");
  cr_assert_eq(b->state.load(), kAllSlotsFree);
  cr_assert_eq(stats().superslabs_retired, st0.superslabs_retired);
  cr_assert_eq(pa[0], 0x5A, "not decommitted yet");
  cr_assert_eq(pb[0], 0x5A);
  // Stage 1 finds their slots while they wait: the next run is cut from a or b.
  Slab* again = acq(kD, &g_owner_b);
  cr_assert(superslab_of_slab(again) == a || superslab_of_slab(again) == b,
            "an empty SuperSlab is not offered to stage 1");
  SuperSlab* used = superslab_of_slab(again);
  SuperSlab* idle = used == a ? b : a;
  char* pidle = idle == a ? pa : pb;

  // The decay pass retires the one still empty: decommitted, header mapped.
  cr_assert(shared_pool_decommit_free_slots());
  cr_assert_eq(idle->state.load(), kRetiredBit, "the decay pass left an empty SuperSlab mapped");
  cr_assert_eq(used->state.load() & kRetiredBit, 0u, "the one in use was retired");
  cr_assert_eq(stats().superslabs_retired, st0.superslabs_retired + 1);
  cr_assert_eq(stats().superslabs_mapped, st0.superslabs_mapped, "retired SuperSlabs stay mapped (headers)");
  cr_assert_eq(idle->magic, kSuperSlabMagic);
  cr_assert_eq(pidle[0], 0, "its data pages were decommitted");

  shared_pool_release(again);
  cr_assert(shared_pool_trim(), "trim has an empty SuperSlab to release");
  cr_assert_eq(used->state.load(), kRetiredBit, "trim retires every empty SuperSlab");
  cr_assert_eq(stats().superslabs_retired, st0.superslabs_retired + 2);
  cr_assert_eq(stats().runs_assigned, st0.runs_assigned - 2 * kSlabsPerSuperSlab);
  cr_assert(shared_pool_is_valid());

  // Revival: once the current SuperSlab is full, stage 3 takes a retired one, maps nothing.
  SharedPoolStats st1 = stats();
  Slab* s = nullptr;
  for (int i = 0; i < 2 * kSlabsPerSuperSlab; ++i) {
    s = acq(kC, &g_owner_b);
    if (superslab_of_slab(s) == a || superslab_of_slab(s) == b) break;
    s = nullptr;
  }
  cr_assert_not_null(s, "no retired SuperSlab was revived");
  SuperSlab* r = superslab_of_slab(s);
  cr_assert_eq(stats().superslabs_mapped, st1.superslabs_mapped, "revival maps nothing");
  cr_assert_eq(stats().superslabs_retired, st1.superslabs_retired - 1);
  cr_assert_eq(r->state.load() & kRetiredBit, 0u);
  cr_assert_eq(slot(s), 0);
  cr_assert_eq(free_mask(r), kAllSlotsFree & ~1ull, "a revived SuperSlab has all other slots free");
  cr_assert_eq(s->bump[0], 0, "revived memory reads as zero");
  cr_assert(shared_pool_is_valid());
}

Test(shared_pool, trim_with_nothing_to_release_reports_false) {
  shared_pool_trim();
  cr_assert_not(shared_pool_trim(), "a second trim has nothing left to release");
}

// Several threads acquire and release runs of two classes at once (stages 1–2 lock-free,
// stage 3 locked). Every run must be handed to one owner at a time, whole.
namespace {
constexpr int kThreads = 4, kIters = 3000, kHeld = 12;
ThreadHeap g_thread_owner[kThreads];
std::atomic<int> g_errors{0};
char g_error_msg[256];

void* churn(void* arg) {
  int t = int(reinterpret_cast<intptr_t>(arg));
  ThreadHeap* me = &g_thread_owner[t];
  Slab* held[kHeld] = {};
  uint64_t rng = 0x9E3779B97F4A7C15ull * uint64_t(t + 1);
  for (int i = 0; i < kIters && g_errors.load() == 0; ++i) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    int k = int(rng % kHeld);
    if (held[k] != nullptr) {
      Slab* s = held[k];
      uint64_t stamp = *reinterpret_cast<uint64_t*>(s->bump - 16);
      if (s->owner != me || stamp != uint64_t(t) << 32 ||
          region_map_lookup(s->bump - 16) != s->cls) {
        if (g_errors.fetch_add(1) == 0)
          snprintf(g_error_msg, sizeof g_error_msg, "thread %d: run %p changed hands (owner %p, stamp %lx)", t,
                   static_cast<void*>(s), static_cast<void*>(s->owner), (unsigned long)stamp);
        break;
      }
      s->bump -= 16;  // back to empty
      shared_pool_release(s);
      held[k] = nullptr;
    } else {
      int cls = (rng >> 20) & 1 ? kC : kD;
      Slab* s = shared_pool_acquire(cls, me);
      if (s == nullptr || s->used != 0 || s->owner != me) {
        g_errors.fetch_add(1);
        break;
      }
      // Use the run's first 16 bytes (not a real block carve; the test only stamps them).
      *reinterpret_cast<uint64_t*>(s->bump) = uint64_t(t) << 32;
      s->bump += 16;
      held[k] = s;
    }
  }
  for (Slab*& s : held)
    if (s != nullptr) {
      s->bump -= 16;
      shared_pool_release(s);
    }
  return nullptr;
}
}  // namespace

Test(shared_pool, concurrent_acquire_and_release_never_share_a_run) {
  pthread_t th[kThreads];
  for (int t = 0; t < kThreads; ++t)
    cr_assert_eq(pthread_create(&th[t], nullptr, churn, reinterpret_cast<void*>(intptr_t(t))), 0);
  for (pthread_t& t : th) pthread_join(t, nullptr);
  cr_assert_eq(g_errors.load(), 0, "%s", g_error_msg);
  cr_assert(shared_pool_is_valid());
}
