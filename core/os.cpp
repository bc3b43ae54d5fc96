// os.cpp — every syscall hakmem makes. See os.h for the contract of each function.
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

extern char** environ;

namespace hak {
namespace {

size_t g_page_size = 4096;
bool g_secure = false;
bool g_os_ready = false;
std::atomic<uint64_t> g_mmap_calls{0}, g_munmap_calls{0}, g_madvise_calls{0};
std::atomic<uint64_t> g_mapped{0}, g_peak_mapped{0};

void account_mapped(size_t bytes) {
  uint64_t now = g_mapped.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  uint64_t peak = g_peak_mapped.load(std::memory_order_relaxed);
  while (now > peak && !g_peak_mapped.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
// Fault injection (debug variant): the N-th and later mappings fail; 0 = off.
std::atomic<uint64_t> g_fault_nth{0};

bool fault_injected() {
  if constexpr (kDebug) {
    uint64_t nth = g_fault_nth.load(std::memory_order_relaxed);
    if (nth != 0 && g_mmap_calls.load(std::memory_order_relaxed) + 1 >= nth) return true;
  }
  return false;
}

}  // namespace

void os_init() {
  // The process's first touch of the page of the library's small globals, as a write (an
  // atomic add of 0, one `lock xadd`): a read first would map the zero page, and the write
  // just after would fault a second time (docs/BENCHMARKS.md, "Short processes: writes first").
  if (__atomic_fetch_add(reinterpret_cast<unsigned char*>(&g_os_ready), 0, __ATOMIC_RELAXED)) return;
  long ps = sysconf(_SC_PAGESIZE);
  if (ps > 0) g_page_size = size_t(ps);
  g_secure = getauxval(AT_SECURE) != 0;
  g_os_ready = true;
}

size_t os_page_size() { return g_page_size; }

uint64_t os_random_u64() {
  uint64_t v = 0;
  long got = syscall(SYS_getrandom, &v, sizeof v, 1 /* GRND_NONBLOCK */);
  if (got == long(sizeof v)) return v;
  // Early boot or a seccomp filter: the kernel's 16 AT_RANDOM bytes (glibc uses them for the
  // stack guard and pointer guard, so they are mixed, never used as they are), the clock and
  // where this library was loaded.
  uint64_t h = 0x9e3779b97f4a7c15ull ^ os_now_ns() ^ reinterpret_cast<uintptr_t>(&g_page_size);
  if (const auto* r = reinterpret_cast<const uint64_t*>(getauxval(AT_RANDOM))) h ^= r[0] * 0xff51afd7ed558ccdull ^ r[1];
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  return h;
}
bool os_is_secure() { return g_secure; }

void* os_map(size_t size) {
  if (fault_injected()) return nullptr;
  g_mmap_calls.fetch_add(1, std::memory_order_relaxed);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  account_mapped(size);
  return p;
}

void* os_map_aligned(size_t size, size_t align) {
  if (align <= g_page_size) return os_map(size);
  if (size + align < size) return nullptr;
  // Try the exact size first: the kernel often hands out aligned addresses when the previous
  // mapping ended on one. Otherwise over-map by `align` and trim both ends.
  void* p = os_map(size);
  if (p == nullptr) return nullptr;
  if ((uintptr_t(p) & (align - 1)) == 0) return p;
  os_unmap(p, size);
  char* raw = static_cast<char*>(os_map(size + align));
  if (raw == nullptr) return nullptr;
  char* aligned = reinterpret_cast<char*>((uintptr_t(raw) + align - 1) & ~(uintptr_t(align) - 1));
  size_t head = size_t(aligned - raw), tail = align - head;
  if (head) os_unmap(raw, head);
  if (tail) os_unmap(aligned + size, tail);
  return aligned;
}

void* os_reserve(size_t size) {
  g_mmap_calls.fetch_add(1, std::memory_order_relaxed);
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

bool os_make_writable(void* p, size_t size) { return mprotect(p, size, PROT_READ | PROT_WRITE) == 0; }
bool os_make_readonly(void* p, size_t size) { return mprotect(p, size, PROT_READ) == 0; }
void os_unreserve(void* p, size_t size) {
  g_munmap_calls.fetch_add(1, std::memory_order_relaxed);
  munmap(p, size);
}

bool os_protect(void* p, size_t size, bool rw) {
  return mprotect(p, size, rw ? PROT_READ | PROT_WRITE : PROT_NONE) == 0;
}

uint32_t os_thread_id() { return uint32_t(syscall(SYS_gettid)); }

void os_unmap(void* p, size_t size) {
  g_munmap_calls.fetch_add(1, std::memory_order_relaxed);
  g_mapped.fetch_sub(size, std::memory_order_relaxed);
  munmap(p, size);
}

void os_decommit(void* p, size_t size) {
  if (size == 0) return;
  g_madvise_calls.fetch_add(1, std::memory_order_relaxed);
  madvise(p, size, MADV_DONTNEED);
}

bool os_residency(const void* p, size_t size, unsigned char* vec) {
  return mincore(const_cast<void*>(p), size, vec) == 0;
}

bool os_remap_in_place(void* p, size_t old_size, size_t new_size) {
  void* r = mremap(p, old_size, new_size, 0);
  if (r == MAP_FAILED) return false;
  account_mapped(new_size - old_size);
  return true;
}

bool os_remap_move(void* from, size_t size, void* to) {
  void* r = mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  if (r == MAP_FAILED) return false;
  // `to`'s old pages are gone and `from` is unmapped: net, size bytes fewer are mapped.
  g_munmap_calls.fetch_add(1, std::memory_order_relaxed);
  g_mapped.fetch_sub(size, std::memory_order_relaxed);
  return true;
}

void os_futex_wait(uint32_t* word, uint32_t expected, uint64_t timeout_ns) {
  struct timespec ts = {time_t(timeout_ns / 1000000000ull), long(timeout_ns % 1000000000ull)};
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, timeout_ns != 0 ? &ts : nullptr, nullptr, 0);
}

void os_futex_wake(uint32_t* word) { syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0); }

bool os_start_thread(void* (*fn)(void*), const char* name) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  // The new thread inherits the creator's mask: block everything around the creation.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  bool ok = pthread_create(&t, &attr, fn, nullptr) == 0;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  // Named by its creator, so the name is there before anyone looks (glibc writes
  // /proc/self/task/<tid>/comm: no allocation).
  if (ok) pthread_setname_np(t, name);
  return ok;
}

uint64_t os_minor_faults() {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? uint64_t(ru.ru_minflt) : 0;
}

static int g_stderr_copy = -1;  // os_stderr_keep

void os_stderr_keep() {
  if (g_stderr_copy < 0) g_stderr_copy = fcntl(2, F_DUPFD_CLOEXEC, 64);
}

void os_write_stderr(const char* buf, size_t len) {
  int fd = 2;
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EBADF && fd == 2 && g_stderr_copy >= 0) {  // the program closed its stderr
        fd = g_stderr_copy;
        continue;
      }
      return;
    }
    buf += n;
    len -= size_t(n);
  }
}

const char* os_getenv(const char* name) {
  if (g_secure || environ == nullptr) return nullptr;
  size_t n = strlen(name);
  // The first byte first: a start-up reads a dozen options, and strncmp on every entry of a
  // shell's environment was 21 000 instructions of each process's ~400 000 (cat, callgrind).
  for (char** e = environ; *e != nullptr; ++e) {
    if ((*e)[0] == name[0] && strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
  }
  return nullptr;
}

uint64_t os_now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

OsCounters os_counters() {
  return {g_mmap_calls.load(std::memory_order_relaxed), g_munmap_calls.load(std::memory_order_relaxed),
          g_madvise_calls.load(std::memory_order_relaxed), g_mapped.load(std::memory_order_relaxed),
          g_peak_mapped.load(std::memory_order_relaxed)};
}

uint64_t os_process_rss() {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* s = buf;
  while (*s && *s != ' ') ++s;  // skip the size field
  while (*s == ' ') ++s;
  uint64_t pages = 0;
  while (*s >= '0' && *s <= '9') pages = pages * 10 + uint64_t(*s++ - '0');
  return pages * g_page_size;
}

bool os_read_safely(const void* p, void* out, size_t n) {
  struct iovec local = {out, n}, remote = {const_cast<void*>(p), n};
  ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
  if (got == ssize_t(n)) return true;
  if (got < 0 && errno == EFAULT) return false;
  // Refused (seccomp, no ptrace rights): write(2) from an unreadable buffer fails with EFAULT.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  bool ok = write(fds[1], p, n) == ssize_t(n) && read(fds[0], out, n) == ssize_t(n);
  close(fds[0]);
  close(fds[1]);
  return ok;
}

bool os_brk_heap(uintptr_t* lo, uintptr_t* hi) {
  static std::atomic<uintptr_t> start_brk{0};
  uintptr_t start = start_brk.load(std::memory_order_relaxed);
  if (start == 0) {
    // Field 47 of /proc/self/stat (Linux ≥ 3.5); the command name (field 2) may hold spaces
    // and parentheses, so count from the last ')'.
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    const char* s = strrchr(buf, ')');
    if (s == nullptr) return false;
    int field = 2;
    for (; *s != '\0' && field < 47; ++s) {
      if (*s == ' ') ++field;
    }
    while (*s >= '0' && *s <= '9') start = start * 10 + uintptr_t(*s++ - '0');
    if (start == 0) return false;
    start_brk.store(start, std::memory_order_relaxed);
  }
  *lo = start;
  *hi = uintptr_t(syscall(SYS_brk, 0));
  return true;
}

void os_fault_injection_set(uint64_t nth) {
  if constexpr (kDebug) {
    // Count from now: the nth-next mapping and every later one fail.
    g_fault_nth.store(nth == 0 ? 0 : g_mmap_calls.load(std::memory_order_relaxed) + nth, std::memory_order_relaxed);
  }
}

}  // namespace hak
