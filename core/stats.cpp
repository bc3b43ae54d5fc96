// stats.cpp — statistics gathered on demand (see stats.h).
#include "stats.h"

#include <string.h>

#include <atomic>

#include "diag.h"
#include "guarded.h"
#include "large.h"
#include "os.h"
#include "page_arena.h"
#include "seed_heap.h"
#include "shared_pool.h"
#include "superslab.h"
#include "tiny_heap.h"

namespace hak {
namespace {
std::atomic<uint64_t> g_remote_frees{0};
}

void stats_add_remote_frees(uint64_t n) { g_remote_frees.fetch_add(n, std::memory_order_relaxed); }

void stats_classes(ClassStats out[kNumClasses + 1]) {
  memset(out, 0, sizeof(ClassStats) * (kNumClasses + 1));
  for (SuperSlab* ss = superslab_list_head(); ss != nullptr; ss = ss->next_all) {
    if (ss->state.load(std::memory_order_acquire) & kRetiredBit) continue;
    for (int i = 0; i < kSlabsPerSuperSlab; ++i) {
      const Slab& s = ss->slabs[i];
      uint8_t cls = __atomic_load_n(&s.cls, __ATOMIC_RELAXED);
      if (cls == 0 || cls > kNumClasses || s.run_head != i) continue;
      out[cls].runs += 1;
      out[cls].blocks_out += __atomic_load_n(&s.used, __ATOMIC_RELAXED);
      out[cls].capacity += __atomic_load_n(&s.capacity, __ATOMIC_RELAXED);
    }
  }
  // The seed's blocks of each class (seed_heap.h) count with the class's own.
  uint64_t seed_out[kSeedClasses] = {}, seed_carved[kSeedClasses] = {};
  seed_class_stats(seed_out, seed_carved);
  for (int c = 1; c < kSeedClasses; ++c) {
    out[c].blocks_out += seed_out[c];
    out[c].capacity += seed_carved[c];
  }
}

void stats_collect(hak_stats_t* out) {
  memset(out, 0, sizeof(*out));
  SharedPoolStats sp = shared_pool_stats();
  ArenaStats ar = arena_stats();
  LargeStats lg = large_stats();
  TinyStats ti = tiny_stats();
  OsCounters oc = os_counters();
  ClassStats cs[kNumClasses + 1];
  stats_classes(cs);
  for (int c = 1; c <= kNumClasses; ++c) {
    uint64_t bytes = cs[c].blocks_out * class_to_size(c);
    if (class_is_mid(c)) out->mid_in_use_bytes += bytes;
    else out->tiny_in_use_bytes += bytes;
  }
  out->tiny_mapped_bytes = sp.superslabs_mapped * kSuperSlabSize;
  out->arena_mapped_bytes = ar.mapped_bytes;
  out->large_mapped_bytes = lg.live_bytes + lg.cached_bytes;
  out->large_cached_bytes = lg.cached_bytes;
  SeedStats se = seed_stats();
  out->seed_mapped_bytes = se.mapped_bytes;
  out->seed_in_use_bytes = se.in_use_bytes;
  out->mapped_bytes = out->tiny_mapped_bytes + out->arena_mapped_bytes + out->large_mapped_bytes + out->seed_mapped_bytes;
  out->superslabs_live = sp.superslabs_mapped - sp.superslabs_retired;
  out->superslabs_retired = sp.superslabs_retired;
  out->slabs_in_use = sp.runs_assigned;
  out->arena_chunks = ar.chunks;
  out->arena_used_bytes = ar.used_bytes;
  out->large_live = lg.live;
  out->large_live_bytes = lg.live_bytes;
  out->threads_live = ti.heaps_live;
  out->threads_cached = ti.heaps_cached;
  out->madvise_calls = oc.madvise_calls;
  out->mmap_calls = oc.mmap_calls;
  out->munmap_calls = oc.munmap_calls;
  out->peak_mapped_bytes = oc.peak_mapped_bytes;
  out->remote_frees = g_remote_frees.load(std::memory_order_relaxed);
  out->process_rss_bytes = os_process_rss();
  out->minor_page_faults = os_minor_faults();
  out->large_free_extents = lg.cached;
  out->large_recent_peak_bytes = lg.recent_peak_bytes;
  GuardedStats gs = guarded_stats();
  out->guard_rate = guarded_rate();
  out->guarded_allocs = gs.allocs;
  out->guarded_live = gs.live;
  out->guarded_full = gs.full;
}

void stats_print() {
  hak_stats_t s;
  stats_collect(&s);
  ClassStats cs[kNumClasses + 1];
  stats_classes(cs);
  auto ul = [](uint64_t v) { return (unsigned long)v; };
  diag_print("stats: tier   in use (B)    mapped (B)");
  diag_print("stats: tiny   %12lu  %12lu  (SuperSlabs, shared with mid)", ul(s.tiny_in_use_bytes), ul(s.tiny_mapped_bytes));
  diag_print("stats: mid    %12lu", ul(s.mid_in_use_bytes));
  if (s.seed_mapped_bytes != 0)
    diag_print("stats: seed   %12lu  %12lu  (each class's first blocks, packed; in tiny's and mid's in use too)", ul(s.seed_in_use_bytes),
               ul(s.seed_mapped_bytes));
  diag_print("stats: spans  %12lu  %12lu  (page arena, %lu chunks)", ul(s.arena_used_bytes), ul(s.arena_mapped_bytes),
             ul(s.arena_chunks));
  diag_print("stats: large  %12lu  %12lu  (%lu live, %lu B cached in %lu free extents, recent peak %lu B)",
             ul(s.large_live_bytes), ul(s.large_mapped_bytes), ul(s.large_live), ul(s.large_cached_bytes),
             ul(s.large_free_extents), ul(s.large_recent_peak_bytes));
  diag_print("stats: mapped %lu B (peak %lu B), process resident %lu B, minor page faults %lu", ul(s.mapped_bytes),
             ul(s.peak_mapped_bytes), ul(s.process_rss_bytes), ul(s.minor_page_faults));
  diag_print("stats: superslabs live %lu retired %lu, slab runs %lu; threads live %lu cached %lu",
             ul(s.superslabs_live), ul(s.superslabs_retired), ul(s.slabs_in_use), ul(s.threads_live),
             ul(s.threads_cached));
  diag_print("stats: remote frees %lu; mmap %lu munmap %lu madvise %lu", ul(s.remote_frees), ul(s.mmap_calls),
             ul(s.munmap_calls), ul(s.madvise_calls));
  if (s.guard_rate != 0)
    diag_print("stats: guarded sampling 1 in %lu: %lu blocks guarded, %lu live, %lu samples found every slot in use",
               ul(s.guard_rate), ul(s.guarded_allocs), ul(s.guarded_live), ul(s.guarded_full));
  diag_print("stats: class   size   runs   blocks out   bytes out    capacity");
  for (int c = 1; c <= kNumClasses; ++c) {
    if (cs[c].runs == 0 && cs[c].capacity == 0) continue;  // capacity: the seed's blocks of the class
    diag_print("stats: %5d %6lu %6lu %12lu %11lu %11lu", c, ul(class_to_size(c)), ul(cs[c].runs),
               ul(cs[c].blocks_out), ul(cs[c].blocks_out * class_to_size(c)), ul(cs[c].capacity));
  }
}

void stats_write_xml(void (*emit)(const char* line, void* ctx), void* ctx) {
  hak_stats_t s;
  stats_collect(&s);
  ClassStats cs[kNumClasses + 1];
  stats_classes(cs);
  char line[256];
  auto ul = [](uint64_t v) { return (unsigned long)v; };
  emit("<malloc version=\"1\">\n", ctx);
  emit("<heap nr=\"0\">\n<sizes>\n", ctx);
  // glibc lists its free chunks by size range; here: each class's free blocks (capacity of
  // its runs minus the blocks out of them).
  uint64_t free_count = 0, free_bytes = 0;
  for (int c = 1; c <= kNumClasses; ++c) {
    if (cs[c].runs == 0 && cs[c].capacity == 0) continue;  // capacity: the seed's blocks of the class
    uint64_t n = cs[c].capacity - cs[c].blocks_out, size = class_to_size(c);
    diag_format(line, sizeof(line), "<size from=\"%lu\" to=\"%lu\" total=\"%lu\" count=\"%lu\"/>\n",
                ul(c == 1 ? 1 : class_to_size(c - 1) + 1), ul(size), ul(n * size), ul(n));
    emit(line, ctx);
    free_count += n;
    free_bytes += n * size;
  }
  emit("</sizes>\n", ctx);
  diag_format(line, sizeof(line), "<total type=\"fast\" count=\"0\" size=\"0\"/>\n<total type=\"rest\" count=\"%lu\" size=\"%lu\"/>\n",
              ul(free_count), ul(free_bytes));
  emit(line, ctx);
  uint64_t heap = s.tiny_mapped_bytes + s.arena_mapped_bytes + s.seed_mapped_bytes;
  diag_format(line, sizeof(line), "<system type=\"current\" size=\"%lu\"/>\n<system type=\"max\" size=\"%lu\"/>\n",
              ul(heap), ul(s.peak_mapped_bytes));
  emit(line, ctx);
  diag_format(line, sizeof(line), "<aspace type=\"total\" size=\"%lu\"/>\n<aspace type=\"mprotect\" size=\"%lu\"/>\n</heap>\n",
              ul(heap), ul(heap));
  emit(line, ctx);
  diag_format(line, sizeof(line), "<total type=\"fast\" count=\"0\" size=\"0\"/>\n<total type=\"rest\" count=\"%lu\" size=\"%lu\"/>\n",
              ul(free_count), ul(free_bytes));
  emit(line, ctx);
  diag_format(line, sizeof(line), "<total type=\"mmap\" count=\"%lu\" size=\"%lu\"/>\n", ul(s.large_live),
              ul(s.large_live_bytes));
  emit(line, ctx);
  diag_format(line, sizeof(line), "<system type=\"current\" size=\"%lu\"/>\n<system type=\"max\" size=\"%lu\"/>\n",
              ul(s.mapped_bytes), ul(s.peak_mapped_bytes));
  emit(line, ctx);
  diag_format(line, sizeof(line), "<aspace type=\"total\" size=\"%lu\"/>\n<aspace type=\"mprotect\" size=\"%lu\"/>\n</malloc>\n",
              ul(s.mapped_bytes), ul(s.mapped_bytes));
  emit(line, ctx);
}

}  // namespace hak
