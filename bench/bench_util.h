// bench_util.h — helpers shared by the benchmark programs in bench/ (header only).
//
// Every benchmark is one .cpp file built twice: <name>_hakmem (libhakmem.a linked in) and
// <name>_system (plain libc malloc, so LD_PRELOAD can switch allocators). What they share:
//
//   * argument parsing that rejects junk: usage on stderr and exit 2 on a bad, non-numeric or
//     out-of-range argument (arg_u64, arg_seconds);
//   * memory checks, so a broken allocator cannot look fast: every block gets a pattern derived
//     from a per-allocation tag (fill_block) that is read back before the block is freed
//     (check_block); a NULL or misaligned result is also an error (check_alloc). On failure the
//     program prints "MEMORY CHECK FAILED: ..." on stderr and exits with kExitMemoryError (3)
//     at once, before any throughput line is printed;
//   * an optimisation barrier (escape) so the compiler cannot delete a malloc/free pair;
//   * a small fast PRNG (Rng), a monotonic clock (now_seconds), peak RSS (peak_rss_kib) and
//     the common output lines ("Throughput = N ops/s", "Peak RSS = N KiB") that
//     scripts/bench_compare.sh parses.
//
// The pattern covers the whole block for blocks under 8 bytes and three 8-byte windows (head,
// middle, tail) for larger ones: one block handed out twice, or two live blocks overlapping
// by a window, are caught, while the check costs the same few stores for 64 B and for 1 MiB.
#ifndef HAKMEM_BENCH_UTIL_H
#define HAKMEM_BENCH_UTIL_H

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace bench {

inline constexpr int kExitUsage = 2;        // bad command line
inline constexpr int kExitMemoryError = 3;  // the allocator returned bad memory

// ---------------------------------------------------------------------------------------------
// Command line.

// Prints the usage text and an optional reason, then exits with status 2.
[[noreturn]] inline void usage_exit(const char* usage, const char* reason = nullptr) {
  if (reason != nullptr) std::fprintf(stderr, "error: %s\n", reason);
  std::fprintf(stderr, "%s", usage);
  std::exit(kExitUsage);
}

// argv[index] as an unsigned integer in [lo, hi], or `def` when the argument is absent.
// Accepts decimal digits only (no sign, no suffix, no hex), so "10M", "-1" and "abc" are errors.
inline uint64_t arg_u64(int argc, char** argv, int index, const char* name, uint64_t def,
                        uint64_t lo, uint64_t hi, const char* usage) {
  if (index >= argc) return def;
  const char* s = argv[index];
  char reason[256];
  bool digits = *s != '\0';
  for (const char* c = s; *c != '\0'; ++c) digits = digits && *c >= '0' && *c <= '9';
  if (!digits) {
    std::snprintf(reason, sizeof reason, "%s: '%s' is not a non-negative integer", name, s);
    usage_exit(usage, reason);
  }
  errno = 0;
  unsigned long long v = std::strtoull(s, nullptr, 10);
  if (errno == ERANGE || v < lo || v > hi) {
    std::snprintf(reason, sizeof reason, "%s: %s is out of range [%" PRIu64 ", %" PRIu64 "]",
                  name, s, lo, hi);
    usage_exit(usage, reason);
  }
  return v;
}

// argv[index] as a duration in seconds (decimal, e.g. "1" or "0.25") in [lo, hi].
inline double arg_seconds(int argc, char** argv, int index, const char* name, double def,
                          double lo, double hi, const char* usage) {
  if (index >= argc) return def;
  const char* s = argv[index];
  char reason[256];
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  bool plain = *s >= '0' && *s <= '9';  // no sign, no "inf"/"nan", no leading blanks
  if (!plain || end == s || *end != '\0' || errno == ERANGE || !(v >= lo && v <= hi)) {
    std::snprintf(reason, sizeof reason, "%s: '%s' is not a number of seconds in [%g, %g]",
                  name, s, lo, hi);
    usage_exit(usage, reason);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Optimisation barrier: the compiler must assume `p` escapes and that memory may be read, so
// it cannot fold or remove the malloc/free around it.
inline void escape(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

// ---------------------------------------------------------------------------------------------
// Random numbers: splitmix64 to seed, xorshift64* to run (a few cycles per number, which keeps
// the benchmark's own cost small next to the allocator's).
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(mix64(seed) | 1) {}
  uint64_t next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [0, n) (n > 0); the multiply-shift avoids a division.
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  // Uniform in [lo, hi] (lo <= hi).
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
};

// ---------------------------------------------------------------------------------------------
// Time and memory.
inline double now_seconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Peak resident set size of this process so far, in KiB (getrusage ru_maxrss).
inline long peak_rss_kib() {
  rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  return ru.ru_maxrss;
}

// Minor page faults of this process so far (getrusage ru_minflt).
inline long minor_faults() {
  rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

// Current resident set size in bytes (second field of /proc/self/statm, in pages).
inline long long current_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long long size = 0, resident = -1;
  if (std::fscanf(f, "%lld %lld", &size, &resident) != 2) resident = -1;
  std::fclose(f);
  return resident < 0 ? -1 : resident * static_cast<long long>(sysconf(_SC_PAGESIZE));
}

// ---------------------------------------------------------------------------------------------
// Memory checks.

// The pattern of the block tagged `tag` is a sequence of 8-byte words, word j (bytes 8j to
// 8j+7) being key ^ j * C, with key derived from the tag: different for every tag and every
// position, so a block handed out twice or a shifted copy does not match. Blocks of 8 bytes or
// more get it in three 8-byte windows — head, middle and tail (the tail window may straddle two
// words and may overlap the others on small blocks; they agree where they overlap); smaller
// blocks get every byte.
inline uint64_t pattern_word(uint64_t key, size_t j) { return key ^ (uint64_t{j} * 0xD6E8FEB86659FD93ull); }
inline uint8_t pattern_byte(uint64_t key, size_t i) {
  return static_cast<uint8_t>(pattern_word(key, i >> 3) >> (8 * (i & 7)));
}
// The 8 pattern bytes starting at offset o, as a little-endian word.
inline uint64_t pattern_window(uint64_t key, size_t o) {
  const unsigned r = o & 7;
  const uint64_t lo = pattern_word(key, o >> 3);
  if (r == 0) return lo;
  return (lo >> (8 * r)) | (pattern_word(key, (o >> 3) + 1) << (64 - 8 * r));
}
inline size_t pattern_middle(size_t n) { return ((n / 2) & ~size_t{7}) <= n - 8 ? (n / 2) & ~size_t{7} : 0; }

[[noreturn]] inline void memory_error(const char* what, const void* p, size_t n, uint64_t tag,
                                      size_t offset, unsigned got, unsigned want) {
  std::fprintf(stderr,
               "MEMORY CHECK FAILED: %s: block %p (size %zu, tag %" PRIu64 ") byte %zu is 0x%02x, "
               "expected 0x%02x; the allocator returned overlapping or corrupted memory\n",
               what, p, n, tag, offset, got, want);
  std::fflush(stderr);
  std::_Exit(kExitMemoryError);  // at once: the heap is not trustworthy, other threads run
}

// Writes the pattern of `tag` into the block.
inline void fill_block(void* p, size_t n, uint64_t tag) {
  uint8_t* b = static_cast<uint8_t*>(p);
  const uint64_t key = mix64(tag);
  if (n < 8) {
    for (size_t i = 0; i < n; ++i) b[i] = pattern_byte(key, i);
    return;
  }
  const size_t offsets[3] = {0, pattern_middle(n), n - 8};
  for (size_t o : offsets) {
    uint64_t w = pattern_window(key, o);
    std::memcpy(b + o, &w, 8);
  }
}

// Reports the first differing byte of an 8-byte window.
[[noreturn]] inline void word_error(const char* what, const uint8_t* b, size_t n, uint64_t tag,
                                    size_t o, uint64_t got, uint64_t want) {
  size_t k = 0;
  while (k < 7 && uint8_t(got >> (8 * k)) == uint8_t(want >> (8 * k))) ++k;
  memory_error(what, b, n, tag, o + k, uint8_t(got >> (8 * k)), uint8_t(want >> (8 * k)));
}

// Verifies the pattern written by fill_block(p, n, tag); exits with status 3 on a mismatch.
// `what` names the benchmark for the message.
inline void check_block(const void* p, size_t n, uint64_t tag, const char* what) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  const uint64_t key = mix64(tag);
  if (n < 8) {
    for (size_t i = 0; i < n; ++i)
      if (b[i] != pattern_byte(key, i)) [[unlikely]]
        memory_error(what, p, n, tag, i, b[i], pattern_byte(key, i));
    return;
  }
  const size_t offsets[3] = {0, pattern_middle(n), n - 8};
  for (size_t o : offsets) {
    uint64_t got, want = pattern_window(key, o);
    std::memcpy(&got, b + o, 8);
    if (got != want) [[unlikely]] word_error(what, b, n, tag, o, got, want);
  }
}

// A malloc result must be non-NULL and aligned to 16 bytes (8 for requests of 8 bytes or less,
// the smallest alignment C allows there on x86-64).
inline void check_alloc(const void* p, size_t n, const char* what) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  size_t align = n <= 8 ? 8 : 16;
  if (p == nullptr || (a & (align - 1)) != 0) [[unlikely]] {
    std::fprintf(stderr,
                 "MEMORY CHECK FAILED: %s: malloc(%zu) returned %p (%s)\n", what, n, p,
                 p == nullptr ? "out of memory" : "misaligned");
    std::fflush(stderr);
    std::_Exit(kExitMemoryError);
  }
}

// ---------------------------------------------------------------------------------------------
// Output. scripts/bench_compare.sh reads "Throughput = <number> ops/s".
inline void print_throughput(double ops, double seconds) {
  std::printf("Throughput = %.0f ops/s\n", seconds > 0 ? ops / seconds : 0.0);
}
inline void print_peak_rss() { std::printf("Peak RSS = %ld KiB\n", peak_rss_kib()); }

}  // namespace bench

#endif  // HAKMEM_BENCH_UTIL_H
