// test_seed_heap.cpp — the seed heap (seed_heap.h): a class's first blocks packed together in
// the release variant, then runs; reuse of freed seed blocks; the quota that sends a class in
// steady use to its runs; bad frees of seed blocks reported at the call; aligned requests never
// served from it; threads, fork, statistics, a full seed. The secure and debug variants never
// use it.
//
// Criterion's start-up fills the seed (80 KiB of blocks before the first test), so each test
// runs its scenario in a fresh process: this program again (/proc/self/exe), told by
// HAKMEM_TEST_SEED which scenario to run from a constructor, before Criterion allocates
// anything. Criterion's own checks stay in the parent; the child exits 0, or 1 with a message,
// or aborts (the death tests).
#include <criterion/criterion.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "../api/death_test.h"
#include "hakmem.h"
#include "region_map.h"
#include "seed_heap.h"
#include "size_class.h"

using namespace hak;

namespace {

bool in_seed(const void* p) { return region_map_lookup(p) == kRegionSeed; }

// A request of exactly class size `bytes` (the secure variant adds its canary: canary.h).
void* alloc_class(size_t bytes) { return hak_malloc(bytes - kCanaryTail); }

// In a scenario: a failed check ends the process with status 1 and says why.
__attribute__((format(printf, 2, 3))) void check(bool ok, const char* fmt, ...) {
  if (ok) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  _exit(1);
}

// ---------------------------------------------------------------------------------------
// The scenarios, each run in a fresh process.

void first_blocks_packed() {
  const size_t sizes[] = {400, 720, 2624, 768};
  void* p[4];
  for (int i = 0; i < 4; ++i) {
    int cls = size_to_class(sizes[i]);
    check(seed_serves(cls) == kSeedHeap, "class %d (%zu B): seed_serves %d", cls, sizes[i], int(seed_serves(cls)));
    p[i] = alloc_class(sizes[i]);
    check(p[i] != nullptr, "malloc failed");
    memset(p[i], 0xA0 + i, sizes[i] - kCanaryTail);
  }
  for (int i = 0; i < 4; ++i) {
    if (!kSeedHeap) {
      check(region_map_lookup(p[i]) == size_to_class(sizes[i]), "secure/debug: block %d not in a run of its class", i);
      continue;
    }
    check(in_seed(p[i]), "block %d (%zu B) at %p: region map says %d, not the seed", i, sizes[i], p[i],
          int(region_map_lookup(p[i])));
    check(reinterpret_cast<uintptr_t>(p[i]) % 16 == 0, "block %d not 16-byte aligned", i);
    check(hak_usable_size(p[i]) == sizes[i], "usable size %zu of block %d, want its class size %zu", hak_usable_size(p[i]), i,
          sizes[i]);
    if (i > 0) {
      // Packed: each block right after what was carved before it, in the same 128 KiB.
      check(static_cast<char*>(p[i]) >= static_cast<char*>(p[i - 1]) + sizes[i - 1], "block %d overlaps block %d", i, i - 1);
      check(static_cast<char*>(p[i]) - static_cast<char*>(p[0]) < ptrdiff_t(kSeedBytes), "block %d far from block 0", i);
    }
  }
  for (int i = 0; i < 4; ++i) {
    for (size_t k = 0; k < sizes[i] - kCanaryTail; ++k)
      check(static_cast<unsigned char*>(p[i])[k] == 0xA0 + i, "block %d byte %zu overwritten", i, k);
    hak_free(p[i]);
  }
}

void quota_then_runs() {
  const size_t size = 336;  // quota 12
  const int cls = size_to_class(size);
  uint32_t from_seed = 0;
  void* last = nullptr;
  for (int i = 0; i < 200; ++i) {
    void* p = alloc_class(size);
    check(p != nullptr, "malloc failed");
    if (in_seed(p)) {
      check(kSeedHeap && from_seed < seed_quota(cls), "block %d from the seed past the quota %u", i, seed_quota(cls));
      check(last == nullptr || p == last, "the freed seed block is not the class's next one");
      ++from_seed;
      last = p;
    } else {
      check(region_map_lookup(p) == cls, "after the seed, not the class's own run");
      last = nullptr;
    }
    hak_free(p);
  }
  check(from_seed == (kSeedHeap ? seed_quota(cls) : 0u), "%u blocks from the seed, want %u", from_seed,
        kSeedHeap ? seed_quota(cls) : 0u);
  check(!seed_serves(cls), "the class has not left the seed");
  void* p = alloc_class(size);
  check(region_map_lookup(p) == cls, "the class went back to the seed");
  hak_free(p);
}

void realloc_calloc() {
  char* p = static_cast<char*>(alloc_class(560));
  check(in_seed(p), "not a seed block");
  memset(p, 7, 560);
  char* q = static_cast<char*>(hak_realloc(p, 400));  // fits, wastes less than half: kept
  check(q == p, "realloc to 400 moved the block");
  char* r = static_cast<char*>(hak_realloc(q, 3000));  // moved, contents kept
  check(r != nullptr && r != q, "realloc to 3000");
  for (int i = 0; i < 400; ++i) check(r[i] == 7, "byte %d lost by realloc", i);
  // The 560-byte block realloc freed is the class's next seed block: calloc zeroes it.
  char* z = static_cast<char*>(hak_calloc(1, 560));
  check(z == p, "calloc did not get the block realloc freed");
  for (int i = 0; i < 560; ++i) check(z[i] == 0, "calloc byte %d not zero", i);
  hak_free(z);
  hak_free(r);
}

void aligned_not_seed() {
  void* p = hak_aligned_alloc(64, 640);
  check(p != nullptr && reinterpret_cast<uintptr_t>(p) % 64 == 0, "aligned_alloc(64, 640)");
  check(!in_seed(p), "an aligned block came from the seed");
  hak_free(p);
}

void* seed_block(size_t size) {
  void* p = alloc_class(size);
  check(in_seed(p), "%zu-byte block not from the seed", size);
  return p;
}

void double_free() {
  void* p = seed_block(624);
  hak_free(p);
  hak_free(p);
}
void double_free_after_reuse() {
  void* a = seed_block(624);
  void* b = seed_block(624);
  hak_free(a);
  hak_free(b);
  void* c = alloc_class(624);  // b again
  check(c == b, "LIFO reuse");
  hak_free(c);
  hak_free(b);
}
void free_interior() { hak_free(static_cast<char*>(seed_block(624)) + 32); }
void free_unaligned() { hak_free(static_cast<char*>(seed_block(624)) + 1); }
// A pointer into the gap the seed leaves before a block it aligns (a 48-byte block, then a
// 128-byte one on the next 64-byte boundary): inside no block.
void free_in_gap() {
  char* a = static_cast<char*>(seed_block(48));
  if (reinterpret_cast<uintptr_t>(a + 48) % 64 == 0) a = static_cast<char*>(seed_block(48));
  char* b = static_cast<char*>(seed_block(128));
  check(b >= a + 64, "no gap between the 48-byte block %p and the 128-byte block %p", static_cast<void*>(a),
        static_cast<void*>(b));
  hak_free(a + 48);
}
void free_past_carved() { hak_free(static_cast<char*>(seed_block(624)) + 64 * 1024); }
void realloc_freed() {
  void* p = seed_block(624);
  hak_free(p);
  hak_realloc(p, 100);
}
void usable_freed() {
  void* p = seed_block(624);
  hak_free(p);
  (void)hak_usable_size(p);
}
void link_overwritten() {
  void* a = seed_block(624);
  void* b = seed_block(624);
  hak_free(a);
  hak_free(b);                                    // b links to a
  *static_cast<uintptr_t*>(b) = 0x123456789ab0;  // written after free
  (void)alloc_class(624);
}

void link_to_itself() {
  void* a = seed_block(624);
  hak_free(a);
  *static_cast<void**>(a) = a;  // written after free: the list would hand a out twice
  void* x = alloc_class(624);
  void* y = alloc_class(624);
  check(x != y, "the same block handed out twice");
}

void* churn(void* arg) {
  unsigned seed = unsigned(reinterpret_cast<uintptr_t>(arg));
  std::vector<std::pair<unsigned char*, size_t>> live;
  for (int i = 0; i < 20000; ++i) {
    if (live.size() < 64 && (live.empty() || rand_r(&seed) % 3 != 0)) {
      size_t n = 1 + rand_r(&seed) % 4096;
      auto* p = static_cast<unsigned char*>(hak_malloc(n));
      check(p != nullptr, "malloc(%zu) failed", n);
      check(!in_seed(p), "a second thread's %zu-byte block came from the seed", n);
      memset(p, int(n & 255), n);
      live.emplace_back(p, n);
    } else {
      size_t k = rand_r(&seed) % live.size();
      auto [p, n] = live[k];
      for (size_t j = 0; j < n; j += 97) check(p[j] == (n & 255), "block %p (%zu B) overwritten at %zu", p, n, j);
      hak_free(p);
      live[k] = live.back();
      live.pop_back();
    }
  }
  for (auto [p, n] : live) hak_free(p);
  return nullptr;
}

void* free_two_then_churn(void* arg) {
  void** two = static_cast<void**>(arg);
  hak_free(two[0]);  // seed blocks the main thread allocated
  hak_free(two[1]);
  return churn(reinterpret_cast<void*>(uintptr_t(two[0]) >> 4));
}

void threads() {
  // Seed blocks of four classes, allocated while the process has one thread, freed by other
  // threads while all of them allocate and free (none of the threads' blocks from the seed).
  void* blocks[4][2];
  const size_t sizes[4] = {208, 304, 432, 592};
  size_t bytes = 0;
  for (int i = 0; i < 4; ++i)
    for (int k = 0; k < 2; ++k) {
      blocks[i][k] = kSeedHeap ? seed_block(sizes[i]) : alloc_class(sizes[i]);
      bytes += kSeedHeap ? sizes[i] : 0;
    }
  hak_stats_t before;
  hak_stats_get(&before);
  pthread_t t[4];
  for (int i = 0; i < 4; ++i) check(pthread_create(&t[i], nullptr, free_two_then_churn, blocks[i]) == 0, "thread");
  for (auto& x : t) pthread_join(x, nullptr);
  hak_stats_t st;
  hak_stats_get(&st);
  check(st.seed_in_use_bytes == before.seed_in_use_bytes - bytes,
        "seed bytes in use %lu after the threads freed its %zu bytes of blocks, %lu before", (unsigned long)st.seed_in_use_bytes,
        bytes, (unsigned long)before.seed_in_use_bytes);
  check(st.seed_mapped_bytes == (kSeedHeap ? kSeedBytes : 0), "seed_mapped_bytes %lu", (unsigned long)st.seed_mapped_bytes);
  // The process has had other threads: every class takes runs now, the main thread's too.
  for (size_t n : sizes) {
    void* p = alloc_class(n);
    check(!in_seed(p) && !seed_serves(size_to_class(n)), "a %zu-byte block from the seed after the threads", n);
    hak_free(p);
  }
  check(st.mapped_bytes == st.tiny_mapped_bytes + st.arena_mapped_bytes + st.large_mapped_bytes + st.seed_mapped_bytes,
        "mapped_bytes is not the sum of its parts");
}

// Two threads' first small blocks never share a cache line (a run belongs to one thread; the
// seed, which packs blocks whatever asks, serves only before the second thread): a thread's
// own counters in a 16-48-byte block would otherwise be written back and forth between CPUs.
struct Lines {
  size_t size;
  std::vector<uintptr_t> lines;
};
void* take_lines(void* arg) {
  auto* l = static_cast<Lines*>(arg);
  for (int i = 0; i < 64; ++i) {
    void* p = hak_malloc(l->size);
    check(p != nullptr, "malloc(%zu)", l->size);
    memset(p, 0x3C, l->size);
    l->lines.push_back(reinterpret_cast<uintptr_t>(p) / 64);
    l->lines.push_back((reinterpret_cast<uintptr_t>(p) + l->size - 1) / 64);
  }
  return nullptr;
}
void threads_lines_apart() {
  void* before = kSeedHeap ? seed_block(48) : alloc_class(48);  // the main thread's first blocks: from the seed (release)
  const size_t sizes[] = {16, 32, 48};
  for (size_t n : sizes) {
    Lines a{n, {}}, b{n, {}};
    pthread_t ta, tb;
    check(pthread_create(&ta, nullptr, take_lines, &a) == 0 && pthread_create(&tb, nullptr, take_lines, &b) == 0, "thread");
    pthread_join(ta, nullptr);
    pthread_join(tb, nullptr);
    for (uintptr_t x : a.lines)
      for (uintptr_t y : b.lines) check(x != y, "two threads' %zu-byte blocks share the cache line %#lx", n, (unsigned long)(x * 64));
  }
  hak_free(before);
}

void* wait_for_pipe(void* arg) {
  char c;
  (void)!read(*static_cast<int*>(arg), &c, 1);
  return nullptr;
}

void fork_child() {
  void* keep = kSeedHeap ? seed_block(1216) : alloc_class(1216);
  // A second thread (it allocates nothing), so that fork takes and re-initialises the seed's lock.
  int fds[2];
  check(pipe(fds) == 0, "pipe");
  pthread_t t;
  check(pthread_create(&t, nullptr, wait_for_pipe, &fds[0]) == 0, "thread");
  pid_t pid = fork();
  check(pid >= 0, "fork");
  if (pid == 0) {
    void* a = alloc_class(1216);
    void* b = alloc_class(1696);
    check(a != nullptr && b != nullptr, "malloc in the child");
    // glibc's child of a threaded process does not read as single-threaded: runs, not the seed.
    check(!__libc_single_threaded, "the child of a threaded process reads as single-threaded");
    check(!in_seed(a) && !in_seed(b), "the child's blocks are seed blocks");
    memset(a, 1, 1216 - kCanaryTail);
    hak_free(keep);
    hak_free(a);
    hak_free(b);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %#x)", status);
  (void)!write(fds[1], "x", 1);
  pthread_join(t, nullptr);
  hak_free(keep);
}

// A fork child of a process with one thread (a shell's) has one thread too: its blocks come
// from the seed, its copy of the parent's.
void fork_single_threaded() {
  void* keep = kSeedHeap ? seed_block(1312) : alloc_class(1312);
  pid_t pid = fork();
  check(pid >= 0, "fork");
  if (pid == 0) {
    void* a = alloc_class(1328);
    check(a != nullptr && in_seed(a) == kSeedHeap, "the child's block %s a seed block", kSeedHeap ? "is not" : "is");
    memset(a, 1, 1328 - kCanaryTail);
    hak_free(keep);
    hak_free(a);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %#x)", status);
  hak_free(keep);
}

void statistics() {
  hak_stats_t before, during, after;
  hak_stats_get(&before);
  void* p = seed_block(1504);
  hak_stats_get(&during);
  check(during.seed_mapped_bytes == kSeedBytes, "seed_mapped_bytes %lu", (unsigned long)during.seed_mapped_bytes);
  check(during.seed_in_use_bytes - before.seed_in_use_bytes == 1504, "seed_in_use_bytes grew by %lu",
        (unsigned long)(during.seed_in_use_bytes - before.seed_in_use_bytes));
  check(during.mid_in_use_bytes - before.mid_in_use_bytes == 1504, "mid_in_use_bytes grew by %lu (its class's tier)",
        (unsigned long)(during.mid_in_use_bytes - before.mid_in_use_bytes));
  void* q = seed_block(400);
  hak_stats_t tiny;
  hak_stats_get(&tiny);
  check(tiny.tiny_in_use_bytes - during.tiny_in_use_bytes == 400, "tiny_in_use_bytes grew by %lu",
        (unsigned long)(tiny.tiny_in_use_bytes - during.tiny_in_use_bytes));
  hak_free(q);
  hak_free(p);
  hak_stats_get(&after);
  check(after.seed_in_use_bytes == before.seed_in_use_bytes, "seed_in_use_bytes after the free");
}

// Each seed block sits at the alignment a run of its class would give it (the largest power of
// two dividing its size, up to a cache line), whatever was carved before it: an array of
// per-thread 64-byte counters must not share a line between two threads' counters.
void aligned_as_in_runs() {
  const size_t sizes[] = {48, 128, 16, 64, 96, 32, 4096, 80, 192, 1216, 256, 624};
  for (size_t n : sizes) {
    void* p = alloc_class(n);
    check(p != nullptr, "malloc(%zu)", n);
    if (!kSeedHeap) continue;
    check(in_seed(p), "%zu-byte block not from the seed", n);
    size_t want = n & (~n + 1);
    if (want > 64) want = 64;
    check(reinterpret_cast<uintptr_t>(p) % want == 0, "%zu-byte seed block at %p: not %zu-byte aligned", n, p, want);
    memset(p, 0x5C, n - kCanaryTail);
  }
}

void full_seed() {
  // Two blocks of every class from 16 B to 4 KiB: 0.5 MiB, more than the seed holds.
  std::vector<void*> blocks;
  size_t seeded = 0;
  for (int round = 0; round < 2; ++round)
    for (int c = 1; c < kSeedClasses; ++c) {
      size_t n = class_to_size(c);
      void* p = alloc_class(n);
      check(p != nullptr, "malloc(%zu)", n);
      memset(p, c, n - kCanaryTail);
      if (in_seed(p)) seeded += n;
      else check(region_map_lookup(p) == c, "a %zu-byte block neither from the seed nor from its class's run", n);
      blocks.push_back(p);
    }
  if (kSeedHeap) check(seeded > kSeedBytes - 16 * 1024, "the seed did not fill up (%zu bytes of blocks)", seeded);
  else check(seeded == 0, "secure/debug used the seed");
  for (size_t i = 0; i < blocks.size(); ++i) {
    int c = int(i % (kSeedClasses - 1)) + 1;
    check(static_cast<unsigned char*>(blocks[i])[0] == c, "block of class %d overwritten", c);
    hak_free(blocks[i]);
  }
}

// The seed's last bytes: a class aligned to 64 bytes no longer fits, one aligned to 16 still
// does. The 64-byte class closes (its block comes from a run, its next ones too) while the
// 48-byte class carves the seed's last 48 bytes, and nothing is carved past the seed's end.
void aligned_does_not_fit() {
  void* first = alloc_class(16);
  check(first != nullptr, "malloc(16)");
  if (!kSeedHeap) return;
  check(in_seed(first), "the first 16-byte block not from the seed");
  // The seed's end: the first 64 KiB unit after it that the region map does not give the seed.
  uintptr_t end = (reinterpret_cast<uintptr_t>(first) & ~(kRegionUnit - 1)) + kRegionUnit;
  while (region_map_lookup(reinterpret_cast<void*>(end)) == kRegionSeed) end += kRegionUnit;
  uintptr_t cur = reinterpret_cast<uintptr_t>(first) + 16;  // the next byte the seed carves
  auto take = [&](size_t n) {
    void* p = alloc_class(n);
    check(p != nullptr, "malloc(%zu)", n);
    memset(p, 0x3D, n - kCanaryTail);
    if (!in_seed(p)) return false;  // the class's quota is used up (or it no longer fits)
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    check(a >= cur && a + n <= end, "seed block %p (%zu B) outside [%#lx, %#lx)", p, n, (unsigned long)cur, (unsigned long)end);
    cur = a + n;
    return true;
  };
  // Blocks of the 16-byte-aligned classes (odd multiples of 16, up to 1008 bytes: carved with
  // no padding) until 48 bytes are left, the largest that fits first.
  bool used_up[64] = {};
  while (end - cur > 48) {
    size_t best = 0;
    for (int n = 1008; n >= 16; n -= 32)
      if (!used_up[n / 16] && size_t(n) <= end - cur - 48) {
        best = n;
        break;
      }
    check(best != 0, "no 16-byte-aligned class left with %lu bytes to fill", (unsigned long)(end - cur));
    if (!take(best)) used_up[best / 16] = true;
  }
  check(end - cur == 48, "%lu bytes left, not 48", (unsigned long)(end - cur));
  // 64 bytes, carved at a 64-byte boundary: no room. A run's block, now and at the next call.
  for (int i = 0; i < 2; ++i) {
    void* p = alloc_class(64);
    check(p != nullptr && !in_seed(p) && region_map_lookup(p) == 4 /* the 64-byte class */, "64-byte block %d: %p not from its run", i, p);
  }
  // 48 bytes still fit: the seed's last block, flush with its end.
  void* p = alloc_class(48);
  check(p != nullptr && in_seed(p) && reinterpret_cast<uintptr_t>(p) + 48 == end, "48-byte block %p: not the seed's last (end %#lx)", p, (unsigned long)end);
  // Nothing is left: the next 16-byte block comes from its run.
  void* q = alloc_class(16);
  check(q != nullptr && !in_seed(q), "16-byte block %p from a full seed", q);
}

struct Scenario {
  const char* name;
  void (*fn)();
};
const Scenario kScenarios[] = {
    {"first_blocks_packed", first_blocks_packed}, {"quota_then_runs", quota_then_runs},
    {"realloc_calloc", realloc_calloc},           {"aligned_not_seed", aligned_not_seed},
    {"double_free", double_free},                 {"double_free_after_reuse", double_free_after_reuse},
    {"free_interior", free_interior},             {"free_unaligned", free_unaligned},
    {"free_past_carved", free_past_carved},       {"free_in_gap", free_in_gap},       {"realloc_freed", realloc_freed},
    {"usable_freed", usable_freed},               {"link_overwritten", link_overwritten},
    {"link_to_itself", link_to_itself},
    {"threads", threads},                         {"fork_child", fork_child},
    {"statistics", statistics},                   {"full_seed", full_seed},
    {"aligned_as_in_runs", aligned_as_in_runs},   {"aligned_does_not_fit", aligned_does_not_fit},   {"threads_lines_apart", threads_lines_apart},   {"fork_single_threaded", fork_single_threaded},
};

// Before Criterion's main: the scenario HAKMEM_TEST_SEED names, then exit.
__attribute__((constructor)) void scenario_main() {
  const char* name = getenv("HAKMEM_TEST_SEED");
  if (name == nullptr) return;
  for (const Scenario& s : kScenarios)
    if (strcmp(s.name, name) == 0) {
      s.fn();
      _exit(0);
    }
  fprintf(stderr, "no scenario %s\n", name);
  _exit(2);
}

// Runs a scenario in a fresh process; returns its stderr, its wait status in *status.
std::string run(const char* name, int* status) {
  return death_test::run_child(
      [name] {
        setenv("HAKMEM_TEST_SEED", name, 1);
        execl("/proc/self/exe", "test_seed_heap", static_cast<char*>(nullptr));
        _exit(127);
      },
      status);
}

void expect_ok(const char* name) {
  int status = 0;
  std::string err = run(name, &status);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status %#x; stderr: %s", name, status, err.c_str());
}

// Release: the scenario must abort with a hakmem message containing `message`. Secure and
// debug: the scenario's first check fails (no seed block), which is all there is to test.
void expect_abort(const char* name, const char* message) {
  int status = 0;
  std::string err = run(name, &status);
  if (!kSeedHeap) {
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1 && err.find("not from the seed") != std::string::npos,
              "%s: status %#x; stderr: %s", name, status, err.c_str());
    return;
  }
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: expected abort(), status %#x; stderr: %s", name, status,
            err.c_str());
  cr_assert(err.find("hakmem: ") != std::string::npos && err.find(message) != std::string::npos,
            "%s: expected a message containing \"%s\", got: %s", name, message, err.c_str());
}

}  // namespace

Test(seed_heap, first_blocks_of_different_classes_are_packed) { expect_ok("first_blocks_packed"); }
Test(seed_heap, freed_blocks_are_reused_until_the_quota_then_runs) { expect_ok("quota_then_runs"); }
Test(seed_heap, realloc_and_calloc_of_seed_blocks) {
  if (kSeedHeap) expect_ok("realloc_calloc");
}
Test(seed_heap, aligned_requests_never_come_from_it) { expect_ok("aligned_not_seed"); }
Test(seed_heap, double_free_at_the_call) {
  expect_abort("double_free", "double free (block of size class 39, 624 bytes)");
  expect_abort("double_free_after_reuse", "double free (block of size class 39, 624 bytes)");
}
Test(seed_heap, interior_and_unaligned_pointers_at_the_call) {
  expect_abort("free_interior", "invalid pointer (inside a 624-byte block of size class 39, not at its start)");
  expect_abort("free_unaligned", "invalid pointer (inside a 624-byte block of size class 39, not at its start)");
  expect_abort("free_past_carved", "invalid pointer (in hakmem's seed heap, not the start of a block)");
  expect_abort("free_in_gap", "invalid pointer (in hakmem's seed heap, not the start of a block)");
}
Test(seed_heap, realloc_and_usable_size_of_a_freed_seed_block) {
  expect_abort("realloc_freed", "realloc(0x");
  expect_abort("usable_freed", "malloc_usable_size(0x");
}
Test(seed_heap, a_link_written_after_free_is_reported_by_the_next_malloc) {
  expect_abort("link_overwritten", "corrupted free list (size class 39)");
  expect_abort("link_to_itself", "corrupted free list (size class 39)");
}
Test(seed_heap, other_threads_free_its_blocks_and_never_allocate_from_it) { expect_ok("threads"); }
Test(seed_heap, fork_child_of_a_threaded_process_frees_seed_blocks) { expect_ok("fork_child"); }
Test(seed_heap, fork_child_of_a_single_threaded_process_allocates_from_it) { expect_ok("fork_single_threaded"); }
Test(seed_heap, statistics_count_its_blocks) {
  if (kSeedHeap) expect_ok("statistics");
}
Test(seed_heap, a_full_seed_sends_every_class_to_its_runs) { expect_ok("full_seed"); }
Test(seed_heap, blocks_are_aligned_as_in_their_runs) { expect_ok("aligned_as_in_runs"); }
Test(seed_heap, a_class_that_no_longer_fits_closes_while_less_aligned_ones_carve_on) { expect_ok("aligned_does_not_fit"); }
Test(seed_heap, two_threads_blocks_never_share_a_cache_line) { expect_ok("threads_lines_apart"); }
