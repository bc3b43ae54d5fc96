// test_threads.cpp — multithreaded behaviour (issue 2, "Multithreaded"): cross-thread frees at
// a high rate, thousands of short-lived threads, a thread whose first operation is a free,
// threads that exit with live objects, and fork() while other threads allocate.
//
// Worker threads never call cr_assert (Criterion asserts belong to the test's own thread):
// they record the first failure with fail() and stop; the test thread then asserts on it.
#include <criterion/criterion.h>

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "api_test_util.h"

static std::atomic<bool> g_failed{false};
static char g_fail_msg[1024];

__attribute__((format(printf, 1, 2))) static void fail(const char* fmt, ...) {
  if (g_failed.exchange(true)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_fail_msg, sizeof g_fail_msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "FAILURE: %s\n", g_fail_msg);
}
#define ASSERT_NO_THREAD_FAILURE() cr_assert(!g_failed.load(), "%s", g_fail_msg)

// A block carries its size and seed in its first 16 bytes (when it is that big) and a pattern
// over its first 256 and last 64 bytes, checked before it is freed.
struct Tag { uint64_t n, seed; };

static void stamp(void* p, size_t n, uint64_t seed) {
  uint8_t* b = (uint8_t*)p;
  if (n >= sizeof(Tag)) {
    Tag t = {n, seed};
    memcpy(b, &t, sizeof t);
    size_t head = std::min(n, (size_t)256);
    for (size_t i = sizeof(Tag); i < head; i++) b[i] = pattern_byte(seed, i);
    size_t tail = n > 64 ? n - 64 : 0;
    for (size_t i = std::max(tail, head); i < n; i++) b[i] = pattern_byte(seed, i);
  } else {
    for (size_t i = 0; i < n; i++) b[i] = pattern_byte(seed, i);
  }
}

static bool verify(const void* p, size_t n, uint64_t seed, const char* where) {
  const uint8_t* b = (const uint8_t*)p;
  if (n >= sizeof(Tag)) {
    Tag t;
    memcpy(&t, b, sizeof t);
    if (t.n != n || t.seed != seed) {
      fail("%s: block %p header corrupted: size %lu seed %lu, want %zu %lu", where, p,
           (unsigned long)t.n, (unsigned long)t.seed, n, (unsigned long)seed);
      return false;
    }
    size_t head = std::min(n, (size_t)256);
    for (size_t i = sizeof(Tag); i < head; i++)
      if (b[i] != pattern_byte(seed, i)) {
        fail("%s: block %p (%zu bytes) corrupted at byte %zu", where, p, n, i);
        return false;
      }
    size_t tail = n > 64 ? n - 64 : 0;
    for (size_t i = std::max(tail, head); i < n; i++)
      if (b[i] != pattern_byte(seed, i)) {
        fail("%s: block %p (%zu bytes) corrupted at byte %zu", where, p, n, i);
        return false;
      }
    return true;
  }
  for (size_t i = 0; i < n; i++)
    if (b[i] != pattern_byte(seed, i)) {
      fail("%s: block %p (%zu bytes) corrupted at byte %zu", where, p, n, i);
      return false;
    }
  return true;
}

static bool check_malloc_result(void* p, size_t n, const char* where) {
  if (!p) {
    fail("%s: malloc(%zu) returned NULL", where, n);
    return false;
  }
  if ((uintptr_t)p % required_alignment(n)) {
    fail("%s: malloc(%zu) = %p misaligned", where, n, p);
    return false;
  }
  return true;
}

// Sizes: mostly 8..4096, some up to 64 KiB, a few up to 1 MiB.
static size_t mixed_size(Rng& r) {
  uint64_t x = r.below(1000);
  if (x < 900) return r.range(8, 4096);
  if (x < 990) return r.range(4097, 65536);
  return r.range(65537, 1u << 20);
}

static pthread_t start_thread(void* (*fn)(void*), void* arg) {
  pthread_t t;
  int rc = pthread_create(&t, nullptr, fn, arg);
  cr_assert_eq(rc, 0, "pthread_create failed: %s", strerror(rc));
  return t;
}

// --------------------------------------------------------------------------------------------
// Cross-thread frees: one producer, 1-3 consumers, bounded SPSC rings.

struct Item { void* p; size_t n; uint64_t seed; };

struct Ring {
  static constexpr size_t kCap = 4096;
  Item slot[kCap];
  alignas(64) std::atomic<size_t> head{0};  // consumer
  alignas(64) std::atomic<size_t> tail{0};  // producer
  bool push(const Item& it) {
    size_t t = tail.load(std::memory_order_relaxed);
    if (t - head.load(std::memory_order_acquire) == kCap) return false;
    slot[t % kCap] = it;
    tail.store(t + 1, std::memory_order_release);
    return true;
  }
  bool pop(Item* it) {
    size_t h = head.load(std::memory_order_relaxed);
    if (h == tail.load(std::memory_order_acquire)) return false;
    *it = slot[h % kCap];
    head.store(h + 1, std::memory_order_release);
    return true;
  }
};

struct XferCtx {
  Ring* rings;
  int consumers;
  size_t blocks;
  std::atomic<size_t> freed_remote{0};
};
struct ConsumerArg { XferCtx* ctx; int id; };

static void* producer_main(void* a) {
  XferCtx* c = (XferCtx*)a;
  Rng r(0xC0FFEE);
  for (size_t i = 0; i < c->blocks && !g_failed.load(std::memory_order_relaxed); i++) {
    size_t n = mixed_size(r);
    void* p = malloc(n);
    if (!check_malloc_result(p, n, "producer")) break;
    stamp(p, n, i);
    if (i % 8 == 7) {  // some blocks freed locally, interleaved with the remote ones
      verify(p, n, i, "producer local free");
      free(p);
      continue;
    }
    Ring& ring = c->rings[i % c->consumers];
    while (!ring.push({p, n, i})) sched_yield();
  }
  for (int k = 0; k < c->consumers; k++)
    while (!c->rings[k].push({nullptr, 0, 0})) sched_yield();
  return nullptr;
}

static void* consumer_main(void* a) {
  ConsumerArg* ca = (ConsumerArg*)a;
  Ring& ring = ca->ctx->rings[ca->id];
  // Hold a window of blocks and free them in a scrambled order, so the owner's slabs see
  // bursts of remote frees while it keeps allocating.
  enum { W = 512 };
  Item window[W];
  size_t have = 0, freed = 0;
  Rng r(ca->id + 1);
  for (;;) {
    Item it;
    if (!ring.pop(&it)) {
      sched_yield();
      continue;
    }
    if (!it.p) break;
    if (have < W) {
      window[have++] = it;
      continue;
    }
    size_t k = r.below(W);
    Item out = window[k];
    window[k] = it;
    if (!verify(out.p, out.n, out.seed, "consumer")) break;
    free(out.p);
    freed++;
  }
  for (size_t k = 0; k < have; k++) {
    verify(window[k].p, window[k].n, window[k].seed, "consumer drain");
    free(window[k].p);
    freed++;
  }
  ca->ctx->freed_remote += freed;
  return nullptr;
}

static void cross_thread_frees(int consumers, size_t blocks) {
  std::vector<Ring> rings(consumers);
  XferCtx ctx;
  ctx.rings = rings.data();
  ctx.consumers = consumers;
  ctx.blocks = blocks;
  std::vector<ConsumerArg> args(consumers);
  std::vector<pthread_t> ts;
  for (int k = 0; k < consumers; k++) {
    args[k] = {&ctx, k};
    ts.push_back(start_thread(consumer_main, &args[k]));
  }
  pthread_t prod = start_thread(producer_main, &ctx);
  pthread_join(prod, nullptr);
  for (pthread_t t : ts) pthread_join(t, nullptr);
  ASSERT_NO_THREAD_FAILURE();
  size_t expect = blocks - blocks / 8;
  cr_assert_eq(ctx.freed_remote.load(), expect, "consumers freed %zu blocks, want %zu",
               ctx.freed_remote.load(), expect);
  // The producer's memory is reusable afterwards by this thread.
  std::vector<void*> v;
  Rng r(7);
  for (int i = 0; i < 100000; i++) {
    size_t n = r.range(8, 4096);
    void* p = malloc(n);
    cr_assert_not_null(p);
    stamp(p, n, i);
    v.push_back(p);
  }
  Rng r2(7);
  for (int i = 0; i < 100000; i++) {
    size_t n = r2.range(8, 4096);
    verify(v[i], n, i, "after cross-thread run");
    free(v[i]);
  }
  ASSERT_NO_THREAD_FAILURE();
}

Test(threads, cross_thread_free_one_consumer, .timeout = 180) {
  cross_thread_frees(1, 800000);
}

Test(threads, cross_thread_free_three_consumers, .timeout = 180) {
  cross_thread_frees(3, 1500000);
}

// --------------------------------------------------------------------------------------------
// Thousands of short-lived threads.

struct Shared {
  std::mutex mu;
  std::vector<Item> bin;     // blocks a later thread frees (maybe as its first operation)
  std::vector<Item> leaked;  // blocks the main thread frees after the wave
};
static Shared* g_shared;
struct ShortArg { int id; };

static void* short_thread_main(void* a) {
  int id = ((ShortArg*)a)->id;
  Rng r(id * 7919 + 1);
  if (id % 3 == 0) {  // first operation of this thread: free a block another thread made
    Item it = {nullptr, 0, 0};
    {
      std::lock_guard<std::mutex> g(g_shared->mu);
      if (!g_shared->bin.empty()) {
        it = g_shared->bin.back();
        g_shared->bin.pop_back();
      }
    }
    if (it.p) {
      verify(it.p, it.n, it.seed, "short thread first free");
      free(it.p);
    }
  }
  enum { K = 24 };
  Item mine[K];
  for (int k = 0; k < K; k++) {
    size_t n = (k == 0 && id % 8 == 0) ? r.range(65536, 600000) : r.range(1, 8192);
    if (k == 1 && id % 50 == 0) n = r.range(1u << 20, 3u << 20);
    void* p = (k % 5 == 4) ? calloc(1, n) : malloc(n);
    if (!check_malloc_result(p, n, "short thread")) return nullptr;
    uint64_t seed = ((uint64_t)id << 20) | (uint64_t)k;
    stamp(p, n, seed);
    mine[k] = {p, n, seed};
  }
  // Free half here, hand a quarter to a later thread, leak a quarter to the main thread.
  std::vector<Item> to_bin, to_main;
  for (int k = 0; k < K; k++) {
    switch (k % 4) {
      case 0: case 1:
        verify(mine[k].p, mine[k].n, mine[k].seed, "short thread own free");
        free(mine[k].p);
        break;
      case 2: to_bin.push_back(mine[k]); break;
      case 3: to_main.push_back(mine[k]); break;
    }
  }
  std::lock_guard<std::mutex> g(g_shared->mu);
  for (auto& it : to_bin) g_shared->bin.push_back(it);
  for (auto& it : to_main) g_shared->leaked.push_back(it);
  return nullptr;
}

Test(threads, thousands_of_short_lived_threads, .timeout = 240) {
  Shared sh;
  g_shared = &sh;
  enum { TOTAL = 4000, WAVE = 50 };
  std::vector<ShortArg> args(TOTAL);
  for (int base = 0; base < TOTAL && !g_failed.load(); base += WAVE) {
    pthread_t ts[WAVE];
    for (int i = 0; i < WAVE; i++) {
      args[base + i].id = base + i;
      ts[i] = start_thread(short_thread_main, &args[base + i]);
    }
    for (int i = 0; i < WAVE; i++) pthread_join(ts[i], nullptr);
    for (auto& it : sh.leaked) {
      verify(it.p, it.n, it.seed, "main frees leaked block");
      free(it.p);
    }
    sh.leaked.clear();
    // Keep the bin bounded: the main thread frees the oldest blocks.
    if (sh.bin.size() > 4000) {
      for (size_t i = 0; i < 2000; i++) {
        verify(sh.bin[i].p, sh.bin[i].n, sh.bin[i].seed, "main frees binned block");
        free(sh.bin[i].p);
      }
      sh.bin.erase(sh.bin.begin(), sh.bin.begin() + 2000);
    }
  }
  ASSERT_NO_THREAD_FAILURE();
  for (auto& it : sh.bin) {
    verify(it.p, it.n, it.seed, "final bin");
    free(it.p);
  }
  ASSERT_NO_THREAD_FAILURE();
  if (linked_with_hakmem()) {
    hak_stats_t st;
    hak_stats_get(&st);
    cr_log_info("after 4000 threads: threads_live=%lu threads_cached=%lu mapped=%lu MiB",
                (unsigned long)st.threads_live, (unsigned long)st.threads_cached,
                (unsigned long)(st.mapped_bytes >> 20));
    cr_assert_leq(st.threads_live, 4u, "hak_stats: %lu thread heaps live after every thread "
                  "but main exited", (unsigned long)st.threads_live);
    cr_assert_leq(st.threads_live + st.threads_cached, 2u * WAVE + 8,
                  "hak_stats: %lu live + %lu cached thread heaps after 4000 threads in waves "
                  "of %d: exited threads' heaps are not reused", (unsigned long)st.threads_live,
                  (unsigned long)st.threads_cached, (int)WAVE);
  }
}

// --------------------------------------------------------------------------------------------
// A thread whose first operation is a free (or realloc / usable_size) of another thread's block.

struct FirstOpArg { void* p; size_t n; int op; void* out; };

static void* first_op_main(void* a) {
  FirstOpArg* f = (FirstOpArg*)a;
  switch (f->op) {
    case 0:
      free(f->p);
      break;
    case 1:
      free(nullptr);
      break;
    case 2:
      f->out = realloc(f->p, f->n * 2 + 1);
      if (f->out) verify(f->out, f->n, 99, "realloc as first operation");
      else fail("realloc(%zu -> %zu) as a thread's first operation returned NULL", f->n, f->n * 2 + 1);
      break;
    case 3:
      if (malloc_usable_size(f->p) < f->n)
        fail("malloc_usable_size as a thread's first operation: %zu < %zu",
             malloc_usable_size(f->p), f->n);
      break;
    case 4:
      ::operator delete(f->p, f->n);
      break;
  }
  return nullptr;
}

Test(threads, first_operation_of_a_thread_is_free, .timeout = 60) {
  const size_t sizes[] = {1, 16, 100, 1024, 1025, 8000, 65536, 300000, 1u << 20, 5u << 20};
  for (int round = 0; round < 20; round++) {
    for (size_t n : sizes) {
      for (int op = 0; op < 5; op++) {
        FirstOpArg f = {nullptr, n, op, nullptr};
        f.p = op == 4 ? ::operator new(n) : malloc(n);
        cr_assert_not_null(f.p);
        stamp(f.p, n, 99);
        pthread_t t = start_thread(first_op_main, &f);
        pthread_join(t, nullptr);
        ASSERT_NO_THREAD_FAILURE();
        if (op == 1 || op == 3) free(f.p);
        if (op == 2) free(f.out);
      }
    }
  }
  // The main thread still allocates normally.
  for (size_t n : sizes) {
    void* p = malloc(n);
    cr_assert_not_null(p);
    stamp(p, n, 5);
    cr_assert(verify(p, n, 5, "main after first-op threads"), "%s", g_fail_msg);
    free(p);
  }
}

// --------------------------------------------------------------------------------------------
// Threads that exit with live objects; other threads free them later.

struct LiveArg { int id; std::vector<Item>* out; };

static void* alloc_and_exit_main(void* a) {
  LiveArg* la = (LiveArg*)a;
  Rng r(la->id + 100);
  for (int i = 0; i < 6000; i++) {
    size_t n = mixed_size(r);
    if (i % 1000 == 999) n = r.range(1u << 20, 4u << 20);
    void* p = malloc(n);
    if (!check_malloc_result(p, n, "exiting thread")) return nullptr;
    uint64_t seed = ((uint64_t)la->id << 32) | (uint64_t)i;
    stamp(p, n, seed);
    la->out->push_back({p, n, seed});
  }
  return nullptr;
}

static void* free_list_main(void* a) {
  std::vector<Item>* v = (std::vector<Item>*)a;
  for (auto& it : *v) {
    if (!verify(it.p, it.n, it.seed, "freeing an exited thread's block")) return nullptr;
    free(it.p);
  }
  return nullptr;
}

Test(threads, thread_exit_with_live_objects, .timeout = 120) {
  enum { T = 8 };
  for (int round = 0; round < 3; round++) {
    std::vector<std::vector<Item>> blocks(T);
    for (auto& v : blocks) v.reserve(6000);
    std::vector<LiveArg> args(T);
    std::vector<pthread_t> ts;
    for (int i = 0; i < T; i++) {
      args[i] = {round * T + i, &blocks[i]};
      ts.push_back(start_thread(alloc_and_exit_main, &args[i]));
    }
    for (pthread_t t : ts) pthread_join(t, nullptr);
    ASSERT_NO_THREAD_FAILURE();
    // New threads allocate while the orphans are live (they may reuse the exited heaps).
    std::vector<std::vector<Item>> fresh(T);
    std::vector<LiveArg> fargs(T);
    ts.clear();
    for (int i = 0; i < T; i++) {
      fargs[i] = {1000 + round * T + i, &fresh[i]};
      ts.push_back(start_thread(alloc_and_exit_main, &fargs[i]));
    }
    for (pthread_t t : ts) pthread_join(t, nullptr);
    ASSERT_NO_THREAD_FAILURE();
    // Main frees the even threads' orphans; other threads free the odd ones and the fresh ones.
    for (int i = 0; i < T; i += 2) free_list_main(&blocks[i]);
    ASSERT_NO_THREAD_FAILURE();
    ts.clear();
    for (int i = 1; i < T; i += 2) ts.push_back(start_thread(free_list_main, &blocks[i]));
    for (int i = 0; i < T; i++) ts.push_back(start_thread(free_list_main, &fresh[i]));
    for (pthread_t t : ts) pthread_join(t, nullptr);
    ASSERT_NO_THREAD_FAILURE();
  }
  int r = malloc_trim(0);
  cr_assert(r == 0 || r == 1);
}

// --------------------------------------------------------------------------------------------
// fork() while other threads allocate.

enum { kForkSlots = 1024 };
static std::atomic<Item*> g_fork_slots[kForkSlots];
static std::atomic<bool> g_stop_allocators{false};

static void* fork_allocator_main(void* a) {
  uint64_t id = (uint64_t)(uintptr_t)a;
  Rng r(id * 31 + 5);
  uint64_t seq = 0;
  while (!g_stop_allocators.load(std::memory_order_relaxed)) {
    size_t n = mixed_size(r);
    if (r.below(200) == 0) n = r.range(1u << 20, 3u << 20);
    Item* it = (Item*)malloc(sizeof(Item));
    void* p = malloc(n);
    if (!check_malloc_result(p, n, "fork allocator") || !it) break;
    uint64_t seed = (id << 48) | seq++;
    stamp(p, n, seed);
    *it = {p, n, seed};
    Item* old = g_fork_slots[r.below(kForkSlots)].exchange(it, std::memory_order_acq_rel);
    if (old) {
      if (!verify(old->p, old->n, old->seed, "fork allocator")) break;
      free(old->p);
      free(old);
    }
  }
  return nullptr;
}

static void* child_thread_main(void*) {
  Rng r(77);
  for (int i = 0; i < 2000; i++) {
    size_t n = mixed_size(r);
    void* p = malloc(n);
    if (!p) return (void*)1;
    memset(p, 0x3c, n);
    free(p);
  }
  return nullptr;
}

// Runs in the child: must not use Criterion; reports through the exit status.
static void child_work() {
  // Free everything the parent's (now absent) threads left in the slots.
  for (int i = 0; i < kForkSlots; i++) {
    Item* it = g_fork_slots[i].load();
    if (!it) continue;
    if (!verify(it->p, it->n, it->seed, "child frees parent thread's block")) _exit(3);
    free(it->p);
    free(it);
  }
  Rng r(getpid());
  std::vector<void*> v;
  for (int i = 0; i < 20000; i++) {
    size_t n = i % 100 == 0 ? r.range(65536, 3u << 20) : r.range(0, 2048);
    void* p = malloc(n);
    if (!p) _exit(4);
    memset(p, 0x5a, n);
    v.push_back(p);
    if (i % 3 == 0) {
      size_t k = r.below(v.size());
      free(v[k]);
      v[k] = v.back();
      v.pop_back();
    }
  }
  for (void* p : v) free(p);
  void* big = malloc(16u << 20);
  if (!big) _exit(5);
  memset(big, 1, 16u << 20);
  free(big);
  pthread_t t;
  if (pthread_create(&t, nullptr, child_thread_main, nullptr) != 0) _exit(6);
  void* rv = nullptr;
  pthread_join(t, &rv);
  if (rv) _exit(7);
  _exit(g_failed.load() ? 8 : 0);
}

// Forks, runs child_work in the child; waits up to timeout_s. Returns a description of the
// failure, or nullptr.
static const char* fork_and_wait(int timeout_s, int* status_out) {
  pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) child_work();
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    int st = 0;
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      *status_out = st;
      return (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? nullptr : "child failed";
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - t0.tv_sec > timeout_s) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return "child did not finish in time (deadlock after fork?)";
    }
    usleep(2000);
  }
}

struct ForkFromThreadArg { const char* err; int status; };
static void* fork_from_thread_main(void* a) {
  ForkFromThreadArg* f = (ForkFromThreadArg*)a;
  f->err = fork_and_wait(30, &f->status);
  return nullptr;
}

Test(threads, fork_while_other_threads_allocate, .timeout = 240) {
  g_stop_allocators = false;
  pthread_t ts[3];
  for (int i = 0; i < 3; i++) ts[i] = start_thread(fork_allocator_main, (void*)(uintptr_t)(i + 1));
  usleep(20000);
  for (int round = 0; round < 20; round++) {
    int status = 0;
    const char* err;
    if (round % 4 == 3) {  // sometimes fork from a thread other than main
      ForkFromThreadArg f = {nullptr, 0};
      pthread_t t = start_thread(fork_from_thread_main, &f);
      pthread_join(t, nullptr);
      err = f.err;
      status = f.status;
    } else {
      err = fork_and_wait(30, &status);
    }
    if (err) {
      g_stop_allocators = true;
      for (pthread_t t : ts) pthread_join(t, nullptr);
    }
    cr_assert_null(err, "fork round %d: %s (status: exited=%d code=%d signaled=%d sig=%d)", round,
                   err, WIFEXITED(status), WEXITSTATUS(status), WIFSIGNALED(status),
                   WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    usleep(5000);
  }
  g_stop_allocators = true;
  for (pthread_t t : ts) pthread_join(t, nullptr);
  ASSERT_NO_THREAD_FAILURE();
  for (int i = 0; i < kForkSlots; i++) {
    Item* it = g_fork_slots[i].exchange(nullptr);
    if (!it) continue;
    cr_assert(verify(it->p, it->n, it->seed, "parent final"), "%s", g_fail_msg);
    free(it->p);
    free(it);
  }
}
