// prof.cpp — the heap profiler's table, dumps and reports (see prof.h).
#include "prof.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

#include "diag.h"
#include "fork_locks.h"
#include "options.h"
#include "os.h"
#include "size_class.h"
#include "stack_trace.h"

namespace hak {

HAK_TLS int64_t t_prof_left;
HAK_TLS int32_t t_prof_class_left[kNumClasses + 1];

namespace {

// A bit per count (size classes, then the thread's own): it runs a gap of the profiler's
// current period of profiling, not a count left from an earlier one or a new thread's 0.
// t_period: the period the thread's bits belong to (g_period: ++ each time profiling starts).
constexpr uint32_t kNumCounters = kNumClasses + 2;
HAK_TLS uint64_t t_armed[(kNumCounters + 63) / 64];
HAK_TLS uint64_t t_rng;
HAK_TLS uint32_t t_period;
std::atomic<uint32_t> g_period{0};

constexpr uint32_t kRecordMagic = 0x50524f46u;  // "PROF"
constexpr uint32_t kHeads = kProfBuckets * 2;    // hash chains
constexpr size_t kPathMax = 4096;

struct Record {  // at the start of a sampled block's span
  Record* prev;
  Record* next;
  uint64_t size;   // bytes asked for
  double weight;   // bytes the sample stands for (sampler_weight, at the mean of its time)
  uint32_t bucket;
  uint32_t magic;
};
static_assert(sizeof(Record) + 16 <= kProfLead, "the record and the span header fit in the lead");

struct Bucket {
  uint64_t hash;
  uint64_t size_key;  // sizes in (size_key - step, size_key]
  uint64_t inuse_objs, inuse_bytes, alloc_objs, alloc_bytes;
  uint64_t peak_objs, peak_bytes;  // at the last saved peak
  double inuse_weight;             // sum of the live samples' weights
  uint32_t next;                   // hash chain (0 = end: bucket 0 is never chained)
  uint32_t depth;
  uintptr_t pcs[kProfFrames];
};

std::atomic<uint64_t> g_mean{0};  // bytes per sample; 0 = off
std::atomic<int>& g_lock_word = g_fork_locks.prof;
std::atomic<int> g_dump_pending{0};  // a signal found the lock taken: the holder dumps
uint32_t* g_heads = nullptr;         // kHeads chain heads
Bucket* g_buckets = nullptr;         // kProfBuckets; bucket 0 collects what found the table full
uint32_t g_used = 1;                 // buckets handed out (bucket 0 from the start)
uint64_t g_dropped = 0;              // samples filed under bucket 0
std::atomic<uint64_t> g_sampled{0};  // samples taken by this process (a fork child inherits them)
Record* g_live = nullptr;            // live samples, newest first
double g_live_weight = 0, g_peak_weight = 0;
int g_signal = 0;
uint32_t g_signal_seq = 0;
pid_t g_init_pid = 0, g_main_pid = 0;
bool g_leaks = false;
__attribute__((section(".lbss.hakmem"))) char g_exit_path[kPathMax];  // HAKMEM_PROF_AT_EXIT, "" when unset (big: after the small globals)

bool try_lock() {
  int expect = 0;
  return g_lock_word.compare_exchange_strong(expect, 1, std::memory_order_acquire, std::memory_order_relaxed);
}
void lock_raw() {
  while (!try_lock()) sched_yield();
}
void unlock_raw() { g_lock_word.store(0, std::memory_order_release); }

bool tables_ready() {  // under the lock, or before other threads can see the profiler on
  if (g_buckets != nullptr) return true;
  size_t heads = (sizeof(uint32_t) * kHeads + 4095) & ~size_t(4095);
  size_t bytes = heads + sizeof(Bucket) * kProfBuckets;
  auto* m = static_cast<char*>(os_map(bytes));  // zeroed; pages resident as buckets are used
  if (m == nullptr) return false;
  g_heads = reinterpret_cast<uint32_t*>(m);
  g_buckets = reinterpret_cast<Bucket*>(m + heads);
  g_buckets[0].depth = 1;
  g_buckets[0].pcs[0] = 1;  // pprof needs a frame: an address no code has
  return true;
}

uint64_t size_key(uint64_t n) {
  if (n <= 64) return (n + 15) & ~uint64_t(15);
  int e = 63 - __builtin_clzll(n);
  uint64_t step = uint64_t(1) << (e - 3);
  return (n + step - 1) & ~(step - 1);
}

uint64_t stack_hash(const uintptr_t* pcs, int depth, uint64_t key) {
  uint64_t h = key * 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < depth; ++i) {
    h ^= pcs[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return h | 1;
}

// The bucket of (stack, size key), made if new; 0 when the table is full. Under the lock.
uint32_t bucket_of(const uintptr_t* pcs, int depth, uint64_t key) {
  uint64_t h = stack_hash(pcs, depth, key);
  uint32_t* head = &g_heads[h % kHeads];
  for (uint32_t i = *head; i != 0; i = g_buckets[i].next) {
    const Bucket& b = g_buckets[i];
    if (b.hash == h && b.size_key == key && b.depth == uint32_t(depth) &&
        memcmp(b.pcs, pcs, sizeof(uintptr_t) * size_t(depth)) == 0)
      return i;
  }
  if (g_used == kProfBuckets) {
    ++g_dropped;
    return 0;
  }
  uint32_t i = g_used++;
  Bucket& b = g_buckets[i];
  b.hash = h;
  b.size_key = key;
  b.depth = uint32_t(depth);
  memcpy(b.pcs, pcs, sizeof(uintptr_t) * size_t(depth));
  b.next = *head;
  *head = i;
  return i;
}

// A new peak of the estimated live bytes, 10 % past the last saved one: keep every bucket's
// live counts as the peak profile's.
void maybe_save_peak() {
  if (g_live_weight <= g_peak_weight * 1.1) return;
  g_peak_weight = g_live_weight;
  for (uint32_t i = 0; i < g_used; ++i) {
    g_buckets[i].peak_objs = g_buckets[i].inuse_objs;
    g_buckets[i].peak_bytes = g_buckets[i].inuse_bytes;
  }
}

// ---------------------------------------------------------------------------------------
// Writing a profile: a buffer on the stack, write(2), no allocation.
struct Writer {
  int fd;
  bool ok = true;
  size_t len = 0;
  char buf[4096];

  void flush() {
    size_t off = 0;
    while (ok && off < len) {
      ssize_t w = write(fd, buf + off, len - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) ok = false;
      else off += size_t(w);
    }
    len = 0;
  }
  void put(const char* s, size_t n) {
    while (n != 0) {
      if (len == sizeof buf) flush();
      size_t k = sizeof buf - len < n ? sizeof buf - len : n;
      memcpy(buf + len, s, k);
      len += k;
      s += k;
      n -= k;
    }
  }
  // " 0x" and 16 hex digits, as gperftools writes addresses (pprof expects the width).
  void put_addr(uintptr_t a) {
    char t[19] = {' ', '0', 'x'};
    for (int i = 0; i < 16; ++i) t[18 - i] = "0123456789abcdef"[(a >> (4 * i)) & 15];
    put(t, sizeof t);
  }
  template <typename... A>
  void putf(const char* fmt, A... a) {
    char line[256];
    size_t n = diag_format(line, sizeof line, fmt, a...);
    put(line, n);
  }
};

// The profile, under the lock.
void write_profile_locked(Writer& w, bool peak) {
  uint64_t t[4] = {0, 0, 0, 0};
  for (uint32_t i = 0; i < g_used; ++i) {
    const Bucket& b = g_buckets[i];
    t[0] += peak ? b.peak_objs : b.inuse_objs;
    t[1] += peak ? b.peak_bytes : b.inuse_bytes;
    t[2] += b.alloc_objs;
    t[3] += b.alloc_bytes;
  }
  w.putf("heap profile: %lu: %lu [%lu: %lu] @ heap_v2/%lu\n", (unsigned long)t[0], (unsigned long)t[1],
         (unsigned long)t[2], (unsigned long)t[3], (unsigned long)g_mean.load(std::memory_order_relaxed));
  for (uint32_t i = 0; i < g_used; ++i) {
    const Bucket& b = g_buckets[i];
    uint64_t objs = peak ? b.peak_objs : b.inuse_objs, bytes = peak ? b.peak_bytes : b.inuse_bytes;
    if (objs == 0 && b.alloc_objs == 0) continue;
    w.putf("%lu: %lu [%lu: %lu] @", (unsigned long)objs, (unsigned long)bytes, (unsigned long)b.alloc_objs,
           (unsigned long)b.alloc_bytes);
    for (uint32_t f = 0; f < b.depth; ++f) w.put_addr(b.pcs[f]);
    w.put("\n", 1);
  }
  // The mappings, for pprof to find the code of each address.
  w.put("\nMAPPED_LIBRARIES:\n", 19);
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char chunk[2048];
    for (;;) {
      ssize_t r = read(fd, chunk, sizeof chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      w.put(chunk, size_t(r));
    }
    close(fd);
  }
}

int dump_locked(const char* path, bool peak) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  Writer w;
  w.fd = fd;
  write_profile_locked(w, peak);
  w.flush();
  int saved = errno;
  close(fd);
  if (!w.ok) {
    errno = saved;
    return -1;
  }
  return 0;
}

// HAKMEM_PROF_SIGNAL's dump: <HAKMEM_PROF_AT_EXIT or "hakmem">.<pid>.<n>.heap.
void signal_dump_locked() {
  char path[kPathMax + 64];
  diag_format(path, sizeof path, "%s.%d.%u.heap", g_exit_path[0] != 0 ? g_exit_path : "hakmem", int(getpid()),
              ++g_signal_seq);
  dump_locked(path, false);
}

void on_signal(int) {
  int saved = errno;
  if (g_buckets != nullptr) {
    if (try_lock()) {
      signal_dump_locked();
      unlock_raw();
    } else {
      g_dump_pending.store(1, std::memory_order_relaxed);  // the holder dumps when it unlocks
    }
  }
  errno = saved;
}

void unlock_and_run_pending() {
  unlock_raw();
  if (HAK_UNLIKELY(g_dump_pending.load(std::memory_order_relaxed) != 0) && g_dump_pending.exchange(0) != 0) {
    lock_raw();
    signal_dump_locked();
    unlock_raw();
  }
}

// path, with "%p" replaced by the pid; otherwise a process other than the one the option was
// meant for (a forked child, or a program started by the one HAKMEM_PROF_PID names) writes
// path.<pid>, so that children do not overwrite their parent's profile.
void exit_path(char* out, size_t cap, const char* suffix) {
  pid_t pid = getpid();
  const char* p = strstr(g_exit_path, "%p");
  if (p != nullptr) {
    char head[kPathMax];
    size_t n = size_t(p - g_exit_path);
    memcpy(head, g_exit_path, n);
    head[n] = 0;
    diag_format(out, cap, "%s%d%s%s", head, int(pid), p + 2, suffix);
  } else if (pid != g_init_pid || (g_main_pid != 0 && pid != g_main_pid)) {
    diag_format(out, cap, "%s.%d%s", g_exit_path, int(pid), suffix);
  } else {
    diag_format(out, cap, "%s%s", g_exit_path, suffix);
  }
}

}  // namespace

void prof_init(pid_t pid) {
  const Options& o = options();
  g_init_pid = pid;
  if (const char* s = os_getenv("HAKMEM_PROF_PID")) g_main_pid = pid_t(options_parse_u64(s));
  bool at_exit = false;  // g_exit_path is not read unless set: its page stays untouched
  if (const char* s = os_getenv("HAKMEM_PROF_AT_EXIT")) {
    size_t n = strlen(s);
    if (n < kPathMax) memcpy(g_exit_path, s, n + 1);
    else diag_print("HAKMEM_PROF_AT_EXIT: path too long (%zu bytes), ignored", n);
    at_exit = n != 0 && n < kPathMax;
  }
  g_leaks = o.prof_leaks;
  bool on = o.prof || o.prof_leaks || at_exit;
  if (!on) return;
  uint64_t mean = o.prof_sample != 0 ? o.prof_sample : kProfDefaultMean;
  if (mean > kSamplerMaxMean) mean = kSamplerMaxMean;
  if (!tables_ready()) {
    diag_print("heap profiler: cannot map its table; profiling stays off");
    return;
  }
  stack_own_frame(0);  // finds the library's own code now, outside any lock (stack_trace.h)
  if (o.prof_signal > 0 && o.prof_signal < 65) {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(int(o.prof_signal), &sa, nullptr) == 0) g_signal = int(o.prof_signal);
  }
  g_period.fetch_add(1, std::memory_order_relaxed);
  g_mean.store(mean, std::memory_order_release);
  alloc_prof_set(true);
}

bool prof_sample_now(size_t n, uint32_t counter, int64_t* next) {
  uint64_t mean = g_mean.load(std::memory_order_relaxed);
  uint32_t bit = counter == kProfThreadCounter ? kNumCounters - 1 : counter;
  uint64_t& word = t_armed[bit >> 6];
  const uint64_t m = uint64_t(1) << (bit & 63);
  if (HAK_UNLIKELY(mean == 0)) {  // switching off (prof_set)
    *next = kSamplerOffBytes;
    return false;
  }
  const uint32_t period = g_period.load(std::memory_order_relaxed);
  if (HAK_UNLIKELY(t_period != period)) {  // counts from before this period: fresh first gaps
    t_period = period;
    memset(t_armed, 0, sizeof t_armed);
  }
  if (t_rng == 0) t_rng = os_random_u64() | 1;
  if (!(word & m)) {
    // The count's first gap (or the first since profiling started): the allocation that ran
    // it out is sampled only if the gap falls inside it.
    word |= m;
    int64_t g = sampler_gap(mean, &t_rng);
    if (uint64_t(g) > n) {
      *next = g - int64_t(n);
      return false;
    }
  }
  *next = sampler_gap(mean, &t_rng);
  return true;
}

void prof_record_alloc(void* span_start, void* block, size_t n, size_t align) {
  (void)block;
  (void)align;
  uintptr_t raw[kProfFrames + 16];
  int got = stack_capture_any(raw, kProfFrames + 16);
  int first = stack_own_prefix(raw, got);
  int depth = got - first < kProfFrames ? got - first : kProfFrames;
  if (depth <= 0) {  // no frame at all (no frame pointers): file it under the caller's address
    raw[0] = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
    first = 0;
    depth = 1;
  }
  const uintptr_t* pcs = raw + first;
  uint64_t key = size_key(n);
  auto* r = static_cast<Record*>(span_start);
  r->size = n;
  r->weight = sampler_weight(double(n), double(g_mean.load(std::memory_order_relaxed) | 1));
  r->magic = kRecordMagic;
  lock_raw();
  uint32_t i = bucket_of(pcs, depth, key);
  Bucket& b = g_buckets[i];
  r->bucket = i;
  ++b.inuse_objs;
  b.inuse_bytes += n;
  ++b.alloc_objs;
  b.alloc_bytes += n;
  g_sampled.fetch_add(1, std::memory_order_relaxed);
  b.inuse_weight += r->weight;
  r->prev = nullptr;
  r->next = g_live;
  if (g_live != nullptr) g_live->prev = r;
  g_live = r;
  g_live_weight += r->weight;
  maybe_save_peak();
  unlock_and_run_pending();
}

void prof_record_free(void* span_start) {
  auto* r = static_cast<Record*>(span_start);
  if (HAK_UNLIKELY(r->magic != kRecordMagic || r->bucket >= kProfBuckets))
    hak_fatal("corrupted heap-profile record %p (the span before a sampled block was overwritten)", span_start);
  lock_raw();
  Bucket& b = g_buckets[r->bucket];
  --b.inuse_objs;
  b.inuse_bytes -= r->size;
  b.inuse_weight -= r->weight;
  if (r->prev != nullptr) r->prev->next = r->next;
  else g_live = r->next;
  if (r->next != nullptr) r->next->prev = r->prev;
  g_live_weight -= r->weight;
  unlock_and_run_pending();
  r->magic = 0;
}

size_t prof_requested_size(const void* span_start) {
  const auto* r = static_cast<const Record*>(span_start);
  if (HAK_UNLIKELY(r->magic != kRecordMagic))
    hak_fatal("corrupted heap-profile record %p (the span before a sampled block was overwritten)", span_start);
  return size_t(r->size);
}

size_t prof_set(size_t mean) {
  if (mean > kSamplerMaxMean) mean = kSamplerMaxMean;
  lock_raw();
  bool ok = mean == 0 || tables_ready();
  unlock_raw();
  if (!ok) return SIZE_MAX;
  if (mean != 0) stack_own_frame(0);
  if (mean == 0) alloc_prof_set(false);
  size_t old = size_t(g_mean.exchange(mean, std::memory_order_acq_rel));
  if (mean != 0) {
    if (old == 0) g_period.fetch_add(1, std::memory_order_relaxed);
    alloc_prof_set(true);
  }
  return old;
}

int prof_dump(const char* path, bool peak) {
  if (path == nullptr) {
    errno = EINVAL;
    return -1;
  }
  lock_raw();
  int rc;
  if (g_buckets == nullptr) {
    errno = ENOENT;  // never profiled: no table
    rc = -1;
  } else {
    rc = dump_locked(path, peak);
  }
  int saved = errno;
  unlock_and_run_pending();
  errno = saved;
  return rc;
}

void prof_leak_report(int max_stacks) {
  constexpr int kMaxTop = 64;
  if (max_stacks > kMaxTop) max_stacks = kMaxTop;
  uint32_t top[kMaxTop];
  double top_w[kMaxTop];
  int ntop = 0;
  uint64_t samples = 0, stacks = 0;
  double total = 0, total_objs = 0;
  uint64_t mean = g_mean.load(std::memory_order_relaxed);
  lock_raw();
  for (uint32_t i = 0; g_buckets != nullptr && i < g_used; ++i) {
    const Bucket& b = g_buckets[i];
    if (b.inuse_objs == 0) continue;
    ++stacks;
    samples += b.inuse_objs;
    total += b.inuse_weight;
    total_objs += b.inuse_weight * double(b.inuse_objs) / double(b.inuse_bytes | 1);
    // Insertion into the top list, largest first.
    int at = ntop;
    while (at > 0 && top_w[at - 1] < b.inuse_weight) --at;
    if (at >= max_stacks) continue;
    if (ntop < max_stacks) ++ntop;
    for (int k = ntop - 1; k > at; --k) {
      top[k] = top[k - 1];
      top_w[k] = top_w[k - 1];
    }
    top[at] = i;
    top_w[at] = b.inuse_weight;
  }
  unlock_and_run_pending();
  if (stacks == 0) {
    diag_print("leak report: no sampled block is live at exit (one sample per %lu bytes allocated on average)",
               (unsigned long)mean);
    return;
  }
  diag_print("leak report: about %lu bytes in %lu blocks still live at exit, from %lu stacks (%lu sampled blocks, "
             "one sample per %lu bytes allocated on average)",
             (unsigned long)total, (unsigned long)(total_objs + 0.5), (unsigned long)stacks, (unsigned long)samples,
             (unsigned long)mean);
  for (int k = 0; k < ntop; ++k) {
    const Bucket& b = g_buckets[top[k]];  // buckets are never taken back: safe without the lock
    double objs = b.inuse_weight * double(b.inuse_objs) / double(b.inuse_bytes | 1);
    diag_print("about %lu bytes in %lu blocks of ~%lu bytes (%lu sampled) allocated at:", (unsigned long)b.inuse_weight,
               (unsigned long)(objs + 0.5), (unsigned long)(b.inuse_bytes / b.inuse_objs), (unsigned long)b.inuse_objs);
    if (top[k] == 0) diag_print("  (stacks beyond the table's %u buckets)", kProfBuckets);
    else stack_print(b.pcs, int(b.depth), 0);
  }
  if (stacks > uint64_t(ntop)) diag_print("... and %lu more stacks", (unsigned long)(stacks - uint64_t(ntop)));
}

void prof_at_exit() {
  if (g_buckets == nullptr) return;
  // A process that never took a sample (a wrapper such as timeout or sh, which allocates a
  // few KiB) writes no profile: it would only overwrite the program's.
  if (g_exit_path[0] != 0 && g_sampled.load(std::memory_order_relaxed) != 0) {
    char path[kPathMax + 64];
    exit_path(path, sizeof path, "");
    if (prof_dump(path, false) != 0) diag_print("heap profile: cannot write %s (errno %d)", path, errno);
    exit_path(path, sizeof path, ".peak");
    if (prof_dump(path, true) != 0) diag_print("heap profile: cannot write %s (errno %d)", path, errno);
  }
  if (g_leaks) prof_leak_report(20);
}

void prof_lock() { lock_raw(); }
void prof_unlock() { unlock_raw(); }
void prof_reinit_after_fork() {
  // Stored only if set: a store to a page the parent wrote before fork() copies it.
  if (g_dump_pending.load(std::memory_order_relaxed) != 0) g_dump_pending.store(0, std::memory_order_relaxed);
  unlock_raw();
}

}  // namespace hak
