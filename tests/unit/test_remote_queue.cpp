// test_remote_queue.cpp — remote free (tiny_heap.h): blocks allocated by thread A and freed by
// thread B reach A's runs through their remote queues (B's tiny_flush, on overflow or at
// thread exit), A's next refill drains them, and no block is lost or duplicated on the way:
// the runs' counters reconcile (slab_is_valid / tiny_heap_is_valid) at every step.
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdlib.h>

#include "decay_thread.h"
#include "hakmem.h"
#include "canary.h"
#include "shared_pool.h"
#include "tiny_heap.h"
#include "seed_heap.h"

using namespace hak;

// These tests follow blocks into their runs: the release variant's seed heap, which serves each
// class's first blocks (seed_heap.h; tested in test_seed_heap.cpp), is off in this program.
__attribute__((constructor)) static void seed_off() { seed_disable(); }

namespace {

// Blocks of the 448-byte class in every variant (the secure one adds kCanaryTail to a request).
constexpr size_t kSize = 448 - kCanaryTail;
const int kCls = size_to_class(448);
constexpr int kMaxBlocks = 2048;
constexpr int kMaxRuns = 64;

void* g_freed[kMaxBlocks];  // blocks handed to thread B
int g_nfreed;
void* g_pins[kMaxRuns];     // one live block per run, so no run becomes empty and leaves
Slab* g_runs[kMaxRuns];
int g_nruns;

int run_index(Slab* s) {
  for (int i = 0; i < g_nruns; ++i)
    if (g_runs[i] == s) return i;
  return -1;
}

// Thread A (the test thread): allocates n blocks, pins one per run, hands the rest to B.
void allocate_in_a(int n) {
  g_nfreed = g_nruns = 0;
  for (int i = 0; i < n; ++i) {
    void* p = hak_malloc(kSize);
    cr_assert_not_null(p);
    Slab* s = slab_of_block(p);
    if (run_index(s) < 0) {
      cr_assert_lt(g_nruns, kMaxRuns);
      g_runs[g_nruns] = s;
      g_pins[g_nruns++] = p;
    } else {
      g_freed[g_nfreed++] = p;
    }
  }
  // A's own list of the class goes back to the runs: A's later mallocs must refill.
  tiny_flush(kCls, t_cache[kCls].count());
  cr_assert(tiny_heap_is_valid());
}

uint32_t remote_length(const Slab* s) {
  uint32_t n = 0;
  for (void* b = reinterpret_cast<void*>(s->remote.load() & ~kRemoteNotified); b != nullptr;
       b = link_load(b))
    ++n;
  return n;
}

bool on_pending_list(const Slab* s) {
  for (Slab* p = s->owner->pending.load(); p != nullptr; p = p->pending_next)
    if (p == s) return true;
  return false;
}

struct BResult {
  uint32_t max_count;      // longest B's list got
  uint32_t count_at_end;   // B's list after the frees (before exit / explicit flush)
  uint32_t count_after;    // after the explicit flush
  bool flush_all;
};

void* thread_b(void* arg) {
  auto* r = static_cast<BResult*>(arg);
  for (int i = 0; i < g_nfreed; ++i) {
    hak_free(g_freed[i]);
    if (t_cache[kCls].count() > r->max_count) r->max_count = t_cache[kCls].count();
  }
  r->count_at_end = t_cache[kCls].count();
  if (r->flush_all) {
    tiny_flush(kCls, t_cache[kCls].count());
    r->count_after = t_cache[kCls].count();
  }
  return nullptr;  // exit: the rest of B's list is flushed
}

void run_b(BResult* r) {
  pthread_t t;
  cr_assert_eq(pthread_create(&t, nullptr, thread_b, r), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
}

// After B: every freed block sits in its run's remote queue; counters reconcile.
void check_all_in_remote_queues() {
  uint64_t queued = 0;
  for (int i = 0; i < g_nruns; ++i) {
    Slab* s = g_runs[i];
    uint32_t n = remote_length(s);
    queued += n;
    if (n != 0) {
      cr_assert(s->remote.load() & kRemoteNotified, "run %d has remote blocks but is not flagged", i);
      cr_assert(on_pending_list(s), "run %d has remote blocks but is not on its owner's pending list", i);
    }
    cr_assert(slab_is_valid(s), "run %d does not reconcile while blocks are remote", i);
  }
  cr_assert_eq(queued, uint64_t(g_nfreed), "%lu blocks in remote queues, %d freed by B", (unsigned long)queued,
               g_nfreed);
  // Every freed block is in exactly one queue.
  for (int i = 0; i < g_nfreed; ++i) {
    Slab* s = slab_of_block(g_freed[i]);
    bool found = false;
    for (void* b = reinterpret_cast<void*>(s->remote.load() & ~kRemoteNotified); b; b = link_load(b))
      if (b == g_freed[i]) found = true;
    cr_assert(found, "freed block %d is not in its run's remote queue", i);
  }
}

int cmp_ptr(const void* a, const void* b) {
  uintptr_t x = *static_cast<const uintptr_t*>(a), y = *static_cast<const uintptr_t*>(b);
  return x < y ? -1 : x > y;
}

void* g_again[4 * kMaxBlocks];

// A allocates until it has seen every block B freed (bounded); nothing comes back twice.
void check_a_gets_them_back() {
  qsort(g_freed, size_t(g_nfreed), sizeof(void*), cmp_ptr);
  static bool seen[kMaxBlocks];
  for (int i = 0; i < g_nfreed; ++i) seen[i] = false;
  uint64_t capacity = 0;
  for (int i = 0; i < g_nruns; ++i) capacity += g_runs[i]->capacity;
  int bound = int(capacity) + 2 * int(t_cache[kCls].cap);
  cr_assert_lt(bound, 4 * kMaxBlocks);
  int found = 0, n = 0;
  while (found < g_nfreed && n < bound) {
    void* p = hak_malloc(kSize);
    cr_assert_not_null(p);
    g_again[n++] = p;
    void** hit = static_cast<void**>(bsearch(&p, g_freed, size_t(g_nfreed), sizeof(void*), cmp_ptr));
    if (hit != nullptr) {
      size_t k = size_t(hit - g_freed);
      cr_assert_not(seen[k], "block %p handed out twice", p);
      seen[k] = true;
      ++found;
    }
  }
  cr_assert_eq(found, g_nfreed, "after %d mallocs A got back only %d of the %d blocks B freed", n, found, g_nfreed);
  for (int i = 0; i < g_nruns; ++i) {
    cr_assert_eq(remote_length(g_runs[i]), 0u, "run %d still has remote blocks", i);
    cr_assert(slab_is_valid(g_runs[i]));
  }
  cr_assert(tiny_heap_is_valid());
  for (int i = 0; i < n; ++i) hak_free(g_again[i]);
  for (int i = 0; i < g_nruns; ++i) hak_free(g_pins[i]);
  cr_assert(tiny_heap_is_valid());
}

}  // namespace

Test(remote_queue, overflow_and_thread_exit_push_remotely_and_the_owner_drains) {
  uint32_t cap = class_cache_cap(kCls);
  allocate_in_a(int(3 * cap));
  cr_assert_gt(uint32_t(g_nfreed), cap, "B must free more than its cap to overflow");
  uint64_t used0 = 0;
  for (int i = 0; i < g_nruns; ++i) used0 += g_runs[i]->used;
  BResult r{};
  run_b(&r);
  cr_assert_eq(r.max_count, cap, "B's list grew to its cap, then overflowed");
  cr_assert_lt(r.count_at_end, uint32_t(g_nfreed), "B's overflow flushed blocks out of its list");
  cr_assert_leq(r.count_at_end, cap);
  uint64_t used1 = 0;
  for (int i = 0; i < g_nruns; ++i) used1 += g_runs[i]->used;
  cr_assert_eq(used1, used0, "remote blocks stay counted as used until the owner drains them");
  check_all_in_remote_queues();
  check_a_gets_them_back();
}

Test(remote_queue, explicit_flush_from_a_live_thread_pushes_everything_remotely) {
  allocate_in_a(200);
  BResult r{};
  r.flush_all = true;
  run_b(&r);
  cr_assert_eq(r.count_after, 0u, "tiny_flush emptied B's list");
  check_all_in_remote_queues();
  check_a_gets_them_back();
}

namespace {
void* g_orphans[256];
void* alloc_and_exit(void*) {
  for (void*& p : g_orphans) p = hak_malloc(kSize);
  return nullptr;
}
}  // namespace

Test(remote_queue, frees_to_an_exited_threads_runs_are_collected_by_trim) {
  pthread_t t;
  cr_assert_eq(pthread_create(&t, nullptr, alloc_and_exit, nullptr), 0);
  pthread_join(t, nullptr);
  Slab* s = slab_of_block(g_orphans[0]);
  cr_assert_not_null(s->owner, "the run stays with the exited thread's (cached) heap");
  cr_assert_eq(s->owner->live, false);
  hak_stats_t st0;
  hak_stats_get(&st0);
  for (void* p : g_orphans) hak_free(p);
  tiny_flush(kCls, t_cache[kCls].count());  // main's list → the runs' remote queues
  cr_assert_gt(remote_length(s), 0u, "the main thread's frees went to the remote queue");
  hak_trim();
  hak_stats_t st1;
  hak_stats_get(&st1);
  cr_assert_lt(st1.slabs_in_use, st0.slabs_in_use, "trim drained the cached heap and released its empty runs");
  cr_assert(s->cls == 0 || (s->used == 0 && s->owner == nullptr), "the orphaned run was handed back");
}

// Many threads free each other's blocks at once; at the end every thread's runs reconcile and
// nothing is lost (each thread gets back as many blocks as it handed out).
namespace {
constexpr int kPeers = 4, kPerPeer = 3000;
void* g_slots[kPeers][kPerPeer];
pthread_barrier_t g_barrier;
std::atomic<int> g_bad{0};

void* peer(void* arg) {
  int me = int(reinterpret_cast<intptr_t>(arg));
  for (int round = 0; round < 3; ++round) {
    for (void*& p : g_slots[me]) {
      p = hak_malloc(kSize);
      if (p == nullptr || region_map_lookup(p) != kCls) g_bad++;
    }
    pthread_barrier_wait(&g_barrier);
    for (void* p : g_slots[(me + 1 + round) % kPeers]) hak_free(p);  // a neighbour's blocks
    pthread_barrier_wait(&g_barrier);
  }
  tiny_flush(kCls, t_cache[kCls].count());
  // Drain what arrived for this thread's runs: allocating refills after draining pending runs.
  void* p = hak_malloc(kSize);
  hak_free(p);
  if (!tiny_heap_is_valid()) g_bad++;
  return nullptr;
}
}  // namespace

Test(remote_queue, all_to_all_frees_reconcile) {
  // The idle-decay thread may start during the exchange (the peers give back many slots): its
  // creation leaves blocks of its own in use, which are not the peers'. Started here, before
  // the count, they are in st0.
  decay_thread_wake();
  hak_trim();
  hak_stats_t st0;
  hak_stats_get(&st0);
  pthread_barrier_init(&g_barrier, nullptr, kPeers);
  pthread_t th[kPeers];
  for (int i = 0; i < kPeers; ++i)
    cr_assert_eq(pthread_create(&th[i], nullptr, peer, reinterpret_cast<void*>(intptr_t(i))), 0);
  for (pthread_t& t : th) pthread_join(t, nullptr);
  cr_assert_eq(g_bad.load(), 0, "a peer saw a bad block or an invalid heap");
  hak_trim();
  cr_assert(tiny_heap_is_valid());
  // Every block came back: once the exited threads' heaps are collected, no run of theirs
  // is still in use (a lost block would keep its run assigned).
  hak_stats_t st1;
  hak_stats_get(&st1);
  cr_assert_leq(st1.slabs_in_use, st0.slabs_in_use, "runs in use %lu > %lu before: blocks were lost",
                (unsigned long)st1.slabs_in_use, (unsigned long)st0.slabs_in_use);
}

namespace hak::detail {
extern std::atomic<uint64_t> g_next_decay_ns;  // decay.cpp: the next pass's time
}

// A run whose blocks all came back through remote frees stays with its owner (the thread
// allocates what others free, and would carve again at once): the owner's next block of the
// class comes from it. The decay pass gives it back when the class was not refilled since the
// pass before. Other threads' frees are the only way such a run empties.
namespace {
constexpr int kRunBlocks = 4096;
void* g_first_run[kRunBlocks];  // every block of the owner's first run of the class
int g_nfirst;
void* g_rest[4 * kRunBlocks];   // blocks of its other runs, which stay live
int g_nrest;
Slab* g_first;

void* free_first_run(void*) {
  for (int i = 0; i < g_nfirst; ++i) hak_free(g_first_run[i]);
  return nullptr;  // exit: the list goes back to the runs' remote queues
}

// How many of the n blocks in `all` are run s's.
uint32_t blocks_of(const Slab* s, void* const* all, int n) {
  uint32_t k = 0;
  for (int j = 0; j < n; ++j) k += slab_of_block(all[j]) == s;
  return k;
}

// The test thread allocates three and a half runs' worth of the class; the first run all of
// whose blocks it holds is freed by another thread, while a run it holds part of stays on
// its avail list (so that the run the remote frees empty is not the class's last, which a
// local flush would keep too). The pending remote frees are left to the next drain.
void fill_a_run_and_free_it_elsewhere() {
  hak::detail::g_next_decay_ns.store(UINT64_MAX);  // no pass but the test's own
  static void* all[4 * kRunBlocks];
  const int per_run = int(class_run_slabs(kCls) * kSlabSize / class_to_size(kCls));
  const int n = 3 * per_run + per_run / 2;
  cr_assert_leq(n, 4 * kRunBlocks);
  for (int i = 0; i < n; ++i) cr_assert_not_null(all[i] = hak_malloc(kSize));
  g_first = nullptr;
  for (int i = 0; i < n && g_first == nullptr; ++i) {
    Slab* s = slab_of_block(all[i]);
    const uint32_t held = blocks_of(s, all, n);
    if (held == s->capacity) g_first = s;
  }
  cr_assert_not_null(g_first, "a run was handed out whole");
  g_nfirst = g_nrest = 0;
  for (int i = 0; i < n; ++i) {
    if (slab_of_block(all[i]) == g_first) g_first_run[g_nfirst++] = all[i];
    else g_rest[g_nrest++] = all[i];
  }
  // Nothing of the class cached or reserved here, and no block back in the head run: the
  // next malloc refills, and drains before it would carve.
  while (t_cache[kCls].count() != 0) {
    cr_assert_lt(g_nrest, 4 * kRunBlocks);
    g_rest[g_nrest++] = hak_malloc(kSize);
  }
  tiny_drop_reserved(kCls);
  // Another run of the class, part of whose blocks the test holds, is available.
  ThreadHeap* h = tiny_current_heap();
  bool other = false;
  for (Slab* r = h->avail[kCls].head; r != nullptr; r = r->next) other |= r != g_first && r->used != 0;
  cr_assert(other, "no other available run: the emptied run would be the class's last");
  pthread_t t;
  cr_assert_eq(pthread_create(&t, nullptr, free_first_run, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
  cr_assert_eq(remote_length(g_first), uint32_t(g_nfirst), "the frees wait in the run's remote queue");
}

void free_the_rest() {
  for (int i = 0; i < g_nrest; ++i) hak_free(g_rest[i]);
  cr_assert(tiny_heap_is_valid());
}
}  // namespace

Test(remote_queue, a_run_emptied_by_remote_frees_stays_with_its_owner_and_serves_its_next_refill) {
  fill_a_run_and_free_it_elsewhere();
  ThreadHeap* h = tiny_current_heap();
  // The refill drains the pending run: empty, but kept (another run of the class is
  // available, so a local flush would have given it back).
  const uint64_t runs = shared_pool_stats().runs_assigned;
  void* p = hak_malloc(kSize);
  cr_assert_not_null(p);
  cr_assert_eq(slab_of_block(p), g_first, "the next block comes from the run the remote frees emptied");
  cr_assert_eq(shared_pool_stats().runs_assigned, runs, "runs assigned changed across the malloc");
  cr_assert_eq(g_first->owner, h);
  cr_assert_eq(int(g_first->cls), kCls);
  cr_assert_eq(remote_length(g_first), 0u);
  cr_assert(tiny_heap_is_valid());
  hak_free(p);
  free_the_rest();
}

Test(remote_queue, a_run_emptied_by_remote_frees_goes_back_at_the_second_decay_pass_without_a_refill) {
  fill_a_run_and_free_it_elsewhere();
  ThreadHeap* h = tiny_current_heap();
  // The class refilled since the last pass: the pass drains the run and keeps it, empty.
  tiny_decay_thread();
  cr_assert_eq(remote_length(g_first), 0u, "the pass drained the pending run");
  cr_assert_eq(g_first->owner, h, "kept: the class refilled since the previous pass");
  cr_assert_eq(int(g_first->cls), kCls);
  cr_assert_eq(g_first->used, 0u);
  // No refill since: the next pass gives it back to the pool.
  tiny_decay_thread();
  cr_assert(g_first->cls != kCls || g_first->owner != h, "an empty run outlived a pass without a refill");
  cr_assert(tiny_heap_is_valid());
  free_the_rest();
}

// A burst of runs that remote frees empty at once: the owner keeps kKeptEmptyRuns of them,
// the rest go back to the pool at the drain (a thread that then goes idle holds no more).
namespace {
constexpr int kBurstRuns = 10;
void* g_burst[(kBurstRuns + 2) * kRunBlocks];
int g_nburst;
void* free_burst(void*) {
  for (int i = 0; i < g_nburst; ++i) hak_free(g_burst[i]);
  return nullptr;
}
}  // namespace

Test(remote_queue, a_burst_emptied_by_remote_frees_keeps_a_bounded_number_of_runs) {
  hak::detail::g_next_decay_ns.store(UINT64_MAX);
  const int per_run = int(class_run_slabs(kCls) * kSlabSize / class_to_size(kCls));
  const int n = (kBurstRuns + 1) * per_run + per_run / 2;
  static void* all[(kBurstRuns + 2) * kRunBlocks];
  static void* pins[2 * kRunBlocks];
  int npins = 0, whole = 0;
  for (int i = 0; i < n; ++i) cr_assert_not_null(all[i] = hak_malloc(kSize));
  // Another thread frees every run the test holds whole; the test keeps the blocks of the
  // others (a run in use, so that no emptied run is the class's last, and whose own remote
  // queue stays empty: the refill must drain the pending list).
  g_nburst = 0;
  Slab* seen[kBurstRuns + 4];
  int nseen = 0;
  for (int i = 0; i < n; ++i) {
    Slab* s = slab_of_block(all[i]);
    bool known = false;
    for (int k = 0; k < nseen; ++k) known |= seen[k] == s;
    if (known) continue;
    cr_assert_lt(nseen, kBurstRuns + 4);
    seen[nseen++] = s;
    const uint32_t held = blocks_of(s, all, n);
    whole += held == s->capacity;
    for (int j = 0; j < n; ++j) {
      if (slab_of_block(all[j]) != s) continue;
      if (held == s->capacity) g_burst[g_nburst++] = all[j];
      else pins[npins++] = all[j];
    }
  }
  cr_assert_geq(whole, kBurstRuns, "%d runs held whole", whole);
  while (t_cache[kCls].count() != 0) {
    cr_assert_lt(npins, 2 * kRunBlocks);
    pins[npins++] = hak_malloc(kSize);
  }
  tiny_drop_reserved(kCls);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, nullptr, free_burst, nullptr), 0);
  cr_assert_eq(pthread_join(t, nullptr), 0);
  ThreadHeap* h = tiny_current_heap();
  const uint64_t runs0 = shared_pool_stats().runs_assigned;
  void* p = hak_malloc(kSize);  // the refill drains every pending run
  cr_assert_not_null(p);
  int empty = 0;
  for (Slab* r = h->avail[kCls].head; r != nullptr; r = r->next) empty += r->used == 0;
  cr_assert_eq(empty, kKeptEmptyRuns - 1, "%d empty runs left, not %d kept less the one malloc took", empty,
               kKeptEmptyRuns);
  cr_assert_eq(shared_pool_stats().runs_assigned, runs0 - uint64_t(whole - kKeptEmptyRuns),
               "the runs beyond the kept ones went back to the pool");
  cr_assert(tiny_heap_is_valid());
  hak_free(p);
  for (int i = 0; i < npins; ++i) hak_free(pins[i]);
}
