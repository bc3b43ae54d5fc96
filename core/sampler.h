// sampler.h — when the heap profiler takes its next sample: a per-thread count of the bytes
// allocated down to the next sample point.
//
// The points form a Poisson process over the bytes a thread allocates: the gaps between them
// are drawn from an exponential distribution whose mean is the sampling interval (512 KiB by
// default), and an allocation is sampled when a point falls inside it, so a block of n bytes is
// sampled with probability 1 - exp(-n / mean) whatever the blocks around it. That is the
// model pprof's heap_v2 profiles assume when they scale samples back up (the same scheme as
// tcmalloc's sampler, a gap drawn as -mean·ln(u)). After a sampled allocation the next gap
// starts at its end (the process is memoryless, so nothing is lost).
//
// The counts are per thread and per size class (t_prof_class_left), plus one per thread for
// everything else (spans, aligned requests: t_prof_left). Each count runs its own Poisson
// process of the same rate over its own bytes, which samples every allocation with the same
// probability as one process over all of them would (a Poisson process split by a rule that
// does not look at it stays Poisson at the same rate on each part).
// The counts run only while the profiler is on (alloc_prof_on(), size_class.h). Off, malloc
// keeps no count and tests nothing more than it did before the profiler: the switch is the
// bound of its size compare (alloc_direct_max(): 0 while on sends every request to the
// counted path; docs/BENCHMARKS.md, "The profiler off"). Switched on at run time
// (hak_prof_set), every thread counts from its next allocation on; a count left over from an
// earlier period of profiling, or never started (a new thread's 0), draws a fresh first gap
// when it runs out (prof_sample_now). While the profiler is switching off, a count that runs
// out is reset to kSamplerOffBytes.
// Gaps stay below 2^31 (counts are 32-bit): the mean is at most kSamplerMaxMean.
//
// May call: size_class.h (the switch). Used by hakmem.cpp and prof.cpp.
#ifndef HAKMEM_SAMPLER_H
#define HAKMEM_SAMPLER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hakmem_build_flags.h"
#include "size_class.h"

namespace hak {


inline constexpr int64_t kSamplerOffBytes = int64_t(1) << 20;
inline constexpr uint64_t kSamplerMaxMean = uint64_t(64) << 20;  // P(gap ≥ 2^30) = e^-16

// Bytes this thread may allocate outside its size classes before the next sample point
// (prof.cpp defines it).
extern HAK_TLS int64_t t_prof_left;
// Bytes this thread may allocate of each size class before the next sample point.
extern HAK_TLS int32_t t_prof_class_left[kNumClasses + 1];

// Counts n bytes down on t_prof_left while the profiler is on; true when the count ran out
// (prof_sample_now decides).
HAK_FAST_PATH bool prof_countdown(size_t n) {
  if (HAK_LIKELY(!alloc_prof_on())) return false;
  t_prof_left = int64_t(uint64_t(t_prof_left) - n);
  return HAK_UNLIKELY(t_prof_left < 0);
}

// Natural logarithm of x > 0, to about 1e-9 relative: x = m·2^e with m in [sqrt(1/2),
// sqrt(2)), ln m = 2·atanh((m - 1) / (m + 1)) by its series. No libm: the library depends on
// libc alone.
inline double sampler_ln(double x) {
  uint64_t bits;
  memcpy(&bits, &x, 8);
  int e = int((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((uint64_t(1) << 52) - 1)) | (uint64_t(1023) << 52);  // m in [1, 2)
  double m;
  memcpy(&m, &bits, 8);
  if (m > 1.4142135623730951) {
    m *= 0.5;
    ++e;
  }
  double t = (m - 1) / (m + 1), t2 = t * t, term = t, sum = 0;
  for (int k = 1; k <= 19; k += 2) {
    sum += term / k;
    term *= t2;
  }
  return 2 * sum + e * 0.6931471805599453;
}

// e^-x for x ≥ 0, to about 1e-12 relative: e^-x = 2^-k · e^-r with r in [0, ln 2).
inline double sampler_exp_neg(double x) {
  if (x > 700) return 0;
  int k = int(x / 0.6931471805599453);
  double r = x - k * 0.6931471805599453, term = 1, sum = 1;
  for (int i = 1; i <= 16; ++i) {
    term *= -r / i;
    sum += term;
  }
  uint64_t bits = uint64_t(1023 - k) << 52;  // 2^-k (k ≤ 1010)
  double scale;
  memcpy(&scale, &bits, 8);
  return sum * scale;
}

// A gap drawn from the exponential distribution of mean `mean` bytes, from a 64-bit
// xorshift state (never 0). At least 1 byte, at most 2^30.
inline int64_t sampler_gap(uint64_t mean, uint64_t* state) {
  uint64_t s = *state;
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  *state = s;
  double u = (double((s >> 11) + 1)) * 0x1.0p-53;  // (0, 1]
  double g = -sampler_ln(u) * double(mean);
  if (g < 1) return 1;
  if (g > 0x1.0p30) return int64_t(1) << 30;
  return int64_t(g);
}

// The bytes a sample of an n-byte block stands for: n / (1 - e^(-n/mean)), the inverse of its
// chance of being sampled (pprof's heap_v2 unsampling).
inline double sampler_weight(double n, double mean) {
  if (n <= 0) return 0;
  double p = 1 - sampler_exp_neg(n / mean);
  return p > 0 ? n / p : n;
}

}  // namespace hak

#endif  // HAKMEM_SAMPLER_H
