// diff_model.h — the randomized differential model shared by tests/api/test_differential.cpp
// (Criterion, deterministic seeds), tests/progs/soak.cpp (scripts/soak.sh, under LD_PRELOAD)
// and tests/fuzz/fuzz_ops.cpp (libFuzzer). Header-only, no Criterion, no hakmem symbols: it
// calls the plain C and C++ allocation API, whichever allocator provides it.
//
//   Op       one API call with its arguments (type, size, alignment, which live block)
//   Model    the live blocks (pointer, requested size, alignment, fill seed, how allocated);
//            apply(op) performs the call and checks the result against the model: non-NULL
//            for every valid request, alignment, malloc_usable_size ≥ size, calloc zeroed,
//            realloc kept the prefix, every block's contents intact when it is touched, freed
//            with the deallocator matching its allocation; size overflows fail with ENOMEM.
//   gen_op   a random Op (sizes over every tier, biased to small; power-of-two alignments)
//   decode_op  an Op from fuzzer bytes
//   Worker   a second thread with its own Model: blocks handed to it are verified and freed
//            there (cross-thread frees), and it hands back blocks it allocated
//   run_forked_check  fork; the child verifies every live block, works, exits; parent waits
//
// Block contents: byte i of a block with seed s is byte (i & 7) of pattern_word(s, i >> 3), so
// a pattern is position-dependent and per block, and realloc's extension continues it.
#ifndef HAKMEM_DIFF_MODEL_H
#define HAKMEM_DIFF_MODEL_H

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="  // overflow cases are deliberate
#endif
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace diff {

// ---------------------------------------------------------------------------------------
// Randomness and patterns.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Rng {  // splitmix64
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() { return mix64(s += 0x9E3779B97F4A7C15ull); }
  size_t below(size_t n) { return n ? size_t(next() % n) : 0; }
  size_t range(size_t lo, size_t hi) { return lo + below(hi - lo + 1); }  // inclusive
  bool chance(unsigned per_mille) { return below(1000) < per_mille; }
};

inline uint64_t pattern_word(uint64_t seed, size_t k) {
  uint64_t w = (seed + uint64_t(k)) * 0x9E3779B97F4A7C15ull;
  return w ^ (w >> 29);
}
inline uint8_t pattern_byte(uint64_t seed, size_t i) { return uint8_t(pattern_word(seed, i >> 3) >> (8 * (i & 7))); }

// Writes the pattern into bytes [from, to).
inline void fill_range(void* p, size_t from, size_t to, uint64_t seed) {
  uint8_t* b = static_cast<uint8_t*>(p);
  size_t i = from;
  for (; i < to && (i & 7); ++i) b[i] = pattern_byte(seed, i);
  for (; i + 8 <= to; i += 8) {
    uint64_t w = pattern_word(seed, i >> 3);
    memcpy(b + i, &w, 8);
  }
  for (; i < to; ++i) b[i] = pattern_byte(seed, i);
}

// First index in [from, to) whose byte is not the pattern, or SIZE_MAX.
inline size_t check_range(const void* p, size_t from, size_t to, uint64_t seed) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  size_t i = from;
  for (; i < to && (i & 7); ++i)
    if (b[i] != pattern_byte(seed, i)) return i;
  for (; i + 8 <= to; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    if (w != pattern_word(seed, i >> 3)) {
      for (size_t j = i;; ++j)
        if (b[j] != pattern_byte(seed, j)) return j;
    }
  }
  for (; i < to; ++i)
    if (b[i] != pattern_byte(seed, i)) return i;
  return SIZE_MAX;
}

// The bytes of a block of n bytes that carry the pattern ("tracked"): all of them up to
// kFullCheck; beyond it, one 8-byte word every kStride bytes and the last kEdge bytes. Big
// blocks are thus filled and checked sparsely (a 16 MiB block costs ~1000 page touches, not
// 16 MiB of writes), and the set depends only on n, so realloc's prefix check stays exact.
inline constexpr size_t kFullCheck = 64 * 1024;
inline constexpr size_t kEdge = 4096;
inline constexpr size_t kStride = 16 * 1024 + 8;  // word-aligned, walks through page offsets

// Calls f(lo, hi) for each tracked range of a block of n bytes that lies in [from, to).
template <class F>
inline size_t for_tracked(size_t n, size_t from, size_t to, F f) {
  auto clip = [&](size_t lo, size_t hi) -> size_t {
    if (lo < from) lo = from;
    if (hi > to) hi = to;
    return lo < hi ? f(lo, hi) : SIZE_MAX;
  };
  if (n <= kFullCheck) return clip(0, n);
  size_t tail = n - kEdge > kFullCheck ? n - kEdge : kFullCheck;
  size_t at = clip(0, kFullCheck);
  if (at != SIZE_MAX) return at;
  size_t i = kFullCheck;
  if (from > i) i += (from - i) / kStride * kStride;
  for (; i + 8 <= n && i < to; i += kStride) {  // words up to n, not tail: realloc never splits one
    at = clip(i, i + 8);
    if (at != SIZE_MAX) return at;
  }
  return clip(tail, n);
}

// Writes the pattern into the tracked bytes of [from, n) of a block of n bytes.
inline void fill_tracked(void* p, size_t n, size_t from, uint64_t seed) {
  for_tracked(n, from, n, [&](size_t lo, size_t hi) {
    fill_range(p, lo, hi, seed);
    return SIZE_MAX;
  });
}

// Checks the tracked bytes (of a block of n bytes) below `limit`: first bad index or SIZE_MAX.
inline size_t check_tracked(const void* p, size_t n, size_t limit, uint64_t seed) {
  return for_tracked(n, 0, limit, [&](size_t lo, size_t hi) { return check_range(p, lo, hi, seed); });
}

// First non-zero tracked byte of a block of n bytes, or SIZE_MAX.
inline size_t check_zero(const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  return for_tracked(n, 0, n, [&](size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i)
      if (b[i]) return i;
    return SIZE_MAX;
  });
}

// ---------------------------------------------------------------------------------------
// Operations.
enum OpType : uint8_t {
  kMalloc, kCalloc, kRealloc, kReallocNull, kReallocZero, kReallocArray,
  kPosixMemalign, kAlignedAlloc, kMemalign, kValloc, kPvalloc,
  kNew, kNewArray, kNewNothrow, kNewAligned, kNewArrayAligned, kNewAlignedNothrow,
  kFree, kUsable, kOverflow, kCheckAll,
  kOpCount
};

inline const char* op_name(int t) {
  static const char* const names[kOpCount] = {
      "malloc", "calloc", "realloc", "realloc(NULL)", "realloc(p,0)", "reallocarray",
      "posix_memalign", "aligned_alloc", "memalign", "valloc", "pvalloc",
      "new", "new[]", "new(nothrow)", "new(align)", "new[](align)", "new(align,nothrow)",
      "free", "malloc_usable_size", "overflow", "check_all"};
  return t >= 0 && t < kOpCount ? names[t] : "?";
}

struct Op {
  uint8_t type = kMalloc;
  uint8_t variant = 0;  // deallocator form, calloc split, overflow case
  size_t size = 0;
  size_t align = 16;    // a power of two
  size_t index = 0;     // which live block (modulo the live count)
};

inline bool is_alloc_op(uint8_t t) { return t <= kNewAlignedNothrow && t != kRealloc && t != kReallocZero; }

// How a block was allocated (decides its deallocator).
enum Kind : uint8_t { kC, kCxxNew, kCxxNewArray, kCxxNewAligned, kCxxNewArrayAligned };

struct Block {
  void* p;
  size_t size;   // bytes requested (and filled)
  size_t align;  // alignment asked for (0: the default)
  uint64_t seed;
  uint8_t kind;
};

// Keeps the compiler from folding an allocation whose result it can predict (clang removes
// calloc(huge) == NULL checks, never calling calloc).
inline size_t opaque(size_t n) {
  asm volatile("" : "+r"(n));
  return n;
}
inline void* escape(void* p) {
  asm volatile("" : : "g"(p) : "memory");
  return p;
}

inline size_t page_size() {
  static const size_t ps = size_t(sysconf(_SC_PAGESIZE));
  return ps;
}

// ---------------------------------------------------------------------------------------
// Random operations.
inline constexpr size_t kEdgeSizes[] = {
    0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 127, 128, 129, 159, 160, 161, 1023, 1024, 1025,
    1280, 4095, 4096, 4097, 8192, 32767, 32768, 32769, 65520, 65536, 65537, 131072,
    (1u << 20) - 16, (1u << 20) - 15, 1u << 20, (1u << 20) + 1, 2u << 20, (2u << 20) + 4096};

inline size_t gen_size(Rng& r, size_t max_size) {
  size_t r1000 = r.below(1000), n;
  if (r1000 < 550) n = r.range(0, 128);
  else if (r1000 < 800) n = r.range(129, 1024);
  else if (r1000 < 900) n = r.range(1025, 32768);
  else if (r1000 < 940) n = kEdgeSizes[r.below(sizeof(kEdgeSizes) / sizeof(kEdgeSizes[0]))];
  else if (r1000 < 985) n = r.range(32769, 1u << 20);
  else if (r1000 < 997) n = r.range((1u << 20) + 1, 4u << 20);
  else n = r.range((4u << 20) + 1, 16u << 20);
  return n <= max_size ? n : r.range(0, max_size);
}

inline size_t gen_align(Rng& r, size_t max_size) {
  unsigned shift = r.chance(50) ? unsigned(r.range(13, 20)) : unsigned(r.range(3, 12));
  size_t a = size_t(1) << shift;
  while (a > 8 && a > max_size) a >>= 1;
  return a;
}

// A random op. Allocations and frees balance around half of max_live.
inline Op gen_op(Rng& r, size_t live, size_t max_live, size_t max_size) {
  Op op;
  op.index = size_t(r.next() >> 1);
  op.variant = uint8_t(r.next());
  op.size = gen_size(r, max_size);
  op.align = gen_align(r, max_size);
  size_t x = r.below(1000);
  if (x < 3) { op.type = kOverflow; return op; }
  if (x < 4) {  // every live block: about once per 10000 ops
    op.type = r.chance(100) ? kCheckAll : kUsable;
    return op;
  }
  if (x < 120) {  // neutral: realloc, usable size
    static const uint8_t neutral[] = {kRealloc, kRealloc, kRealloc, kRealloc, kReallocArray, kUsable, kUsable};
    op.type = neutral[r.below(sizeof(neutral))];
    return op;
  }
  if (r.below(max_live) < live) {
    op.type = r.chance(30) ? kReallocZero : kFree;
    return op;
  }
  static const uint8_t allocs[] = {
      kMalloc, kMalloc, kMalloc, kMalloc, kMalloc, kMalloc, kMalloc, kMalloc, kCalloc, kCalloc,
      kCalloc, kReallocNull, kPosixMemalign, kAlignedAlloc, kMemalign, kValloc, kPvalloc,
      kNew, kNew, kNew, kNewArray, kNewArray, kNewNothrow, kNewAligned, kNewArrayAligned,
      kNewAlignedNothrow};
  op.type = allocs[r.below(sizeof(allocs))];
  if (op.type == kValloc || op.type == kPvalloc) op.size = r.chance(700) ? r.range(0, 3 * page_size()) : op.size;
  return op;
}

// An op from fuzzer bytes (consumes 1 to 5 bytes): sizes ≤ max_size, alignments ≤ 64 KiB.
inline Op decode_op(const uint8_t*& data, size_t& left, size_t max_size) {
  auto take = [&]() -> uint8_t {
    if (left == 0) return 0;
    --left;
    return *data++;
  };
  Op op;
  uint8_t t = take();
  op.type = uint8_t(t % kOpCount);
  op.variant = uint8_t(t / kOpCount);
  uint8_t s0 = take(), s1 = take();
  unsigned raw = unsigned(s0) | unsigned(s1) << 8;
  switch (s0 >> 6) {  // tier, from the top bits of the first size byte
    case 0: op.size = raw & 0xFF; break;                                // 0..255
    case 1: op.size = (raw & 0x3FFF) >> 2; break;                       // ≤ 4 KiB
    case 2: op.size = size_t(raw & 0x3FFF) * 4; break;                  // ≤ 64 KiB
    default: op.size = size_t(raw & 0x3FFF) * 64 + (raw & 63); break;  // ≤ 1 MiB
  }
  if (op.size > max_size) op.size %= max_size + 1;
  uint8_t a = take();
  op.align = size_t(1) << (3 + a % 14);
  op.index = take();
  return op;
}

// ---------------------------------------------------------------------------------------
// The model.
class Model {
 public:
  Model(size_t max_live, size_t max_bytes, uint64_t seed) : max_live_(max_live), max_bytes_(max_bytes), seeds_(seed) {
    blocks_.reserve(max_live + 64);
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  bool failed() const { return failed_; }
  const char* error() const { return err_; }
  size_t live() const { return blocks_.size(); }
  size_t live_bytes() const { return live_bytes_; }
  uint64_t ops() const { return ops_; }
  const Block& block(size_t i) const { return blocks_[i]; }

  // Test-only self check (proves the checks can fail): corrupt one byte of a live block.
  void sabotage(size_t i) {
    if (blocks_.empty()) return;
    Block& b = blocks_[i % blocks_.size()];
    if (b.size == 0) return;
    static_cast<uint8_t*>(b.p)[b.size <= kFullCheck ? b.size / 2 : 17] ^= 0x40;  // a tracked byte
  }

  bool apply(const Op& op) {
    if (failed_) return false;
    ++ops_;
    uint8_t t = op.type;
    size_t size = op.size;
    // Stay within the bounds: a full model frees instead of allocating.
    if ((t == kRealloc || t == kReallocArray || t == kUsable || t == kFree || t == kReallocZero) && blocks_.empty()) t = kMalloc;
    if (is_alloc_op(t) && blocks_.size() >= max_live_) t = kFree;
    if (is_alloc_op(t) || t == kRealloc || t == kReallocArray) {
      while (live_bytes_ + size > max_bytes_ && !blocks_.empty()) {
        if (!free_block(pick(op.index + ops_), op.variant)) return false;
      }
      if (live_bytes_ + size > max_bytes_) size = 0;
      if (is_alloc_op(t) && blocks_.size() >= max_live_) t = kFree;
      if ((t == kRealloc || t == kReallocArray) && blocks_.empty()) t = kMalloc;
    }
    switch (t) {
      case kMalloc: return accept(malloc(size), size, 0, kC, false, "malloc");
      case kCalloc: return op_calloc(size, op.variant);
      case kReallocNull: return accept(realloc(nullptr, size), size, 0, kC, false, "realloc(NULL)");
      case kPosixMemalign: {
        size_t a = op.align < sizeof(void*) ? sizeof(void*) : op.align;
        void* p = reinterpret_cast<void*>(uintptr_t(0x5a5a));
        int rc = posix_memalign(&p, a, size);
        if (rc != 0) return fail("posix_memalign(%zu, %zu) returned %d", a, size, rc);
        return accept(p, size, a, kC, false, "posix_memalign");
      }
      case kAlignedAlloc: return accept(aligned_alloc(op.align, size), size, op.align, kC, false, "aligned_alloc");
      case kMemalign: return accept(memalign(op.align, size), size, op.align, kC, false, "memalign");
      case kValloc: return accept(valloc(size), size, page_size(), kC, false, "valloc");
      case kPvalloc: {
        size_t rounded = (size + page_size() - 1) & ~(page_size() - 1);
        if (rounded == 0) rounded = page_size();
        return accept(pvalloc(size), rounded, page_size(), kC, false, "pvalloc");
      }
      case kNew: {
        void* p;
        try {
          p = ::operator new(size);
        } catch (const std::bad_alloc&) {
          return fail("operator new(%zu) threw std::bad_alloc", size);
        }
        return accept(p, size, 0, kCxxNew, false, "operator new");
      }
      case kNewArray: {
        void* p;
        try {
          p = ::operator new[](size);
        } catch (const std::bad_alloc&) {
          return fail("operator new[](%zu) threw std::bad_alloc", size);
        }
        return accept(p, size, 0, kCxxNewArray, false, "operator new[]");
      }
      case kNewNothrow: return accept(::operator new(size, std::nothrow), size, 0, kCxxNew, false, "operator new(nothrow)");
      case kNewAligned: {
        void* p;
        try {
          p = ::operator new(size, std::align_val_t(op.align));
        } catch (const std::bad_alloc&) {
          return fail("operator new(%zu, align %zu) threw std::bad_alloc", size, op.align);
        }
        return accept(p, size, op.align, kCxxNewAligned, false, "operator new(align)");
      }
      case kNewArrayAligned: {
        void* p;
        try {
          p = ::operator new[](size, std::align_val_t(op.align));
        } catch (const std::bad_alloc&) {
          return fail("operator new[](%zu, align %zu) threw std::bad_alloc", size, op.align);
        }
        return accept(p, size, op.align, kCxxNewArrayAligned, false, "operator new[](align)");
      }
      case kNewAlignedNothrow:
        return accept(::operator new(size, std::align_val_t(op.align), std::nothrow), size, op.align, kCxxNewAligned,
                      false, "operator new(align, nothrow)");
      case kRealloc: return op_realloc(pick(op.index), size, 0, false);
      case kReallocArray: return op_realloc(pick(op.index), size, op.variant, true);
      case kReallocZero: return op_realloc_zero(pick(op.index));
      case kFree: return free_block(pick(op.index), op.variant);
      case kUsable: return op_usable(pick(op.index));
      case kOverflow: return op_overflow(op.variant, op.index);
      case kCheckAll: return check_all();
      default: return fail("unknown op %u", unsigned(t));
    }
  }

  // Verifies every live block.
  bool check_all() {
    for (size_t i = 0; i < blocks_.size(); ++i)
      if (!check(blocks_[i], "check_all")) return false;
    return !failed_;
  }

  // Verifies and frees every live block.
  bool free_all() {
    while (!blocks_.empty() && !failed_) free_block(blocks_.size() - 1, uint8_t(ops_));
    return !failed_;
  }

  // Forgets every block without freeing it (after a failure, or in a fork child).
  void forget_all() {
    blocks_.clear();
    live_bytes_ = 0;
  }

  // Removes block i from the model (to hand it to another thread).
  Block take(size_t i) {
    i = pick(i);
    Block b = blocks_[i];
    blocks_[i] = blocks_.back();
    blocks_.pop_back();
    live_bytes_ -= b.size;
    return b;
  }

  // Adds a block allocated elsewhere (verified first).
  bool adopt(const Block& b) {
    if (!check(b, "adopt")) return false;
    blocks_.push_back(b);
    live_bytes_ += b.size;
    return true;
  }

  bool fail(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    if (failed_) return false;
    failed_ = true;
    int n = snprintf(err_, sizeof err_, "op %llu: ", (unsigned long long)ops_);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_ + n, sizeof err_ - size_t(n), fmt, ap);
    va_end(ap);
    return false;
  }

 private:
  size_t pick(size_t index) const { return blocks_.empty() ? 0 : index % blocks_.size(); }

  static size_t required_alignment(size_t n) { return n >= 16 ? 16 : 8; }

  bool check(const Block& b, const char* when) {
    size_t at = check_tracked(b.p, b.size, b.size, b.seed);
    if (at != SIZE_MAX) {
      return fail("%s: block %p (%zu bytes, align %zu, kind %u) corrupted at byte %zu: %02x, expected %02x", when, b.p,
                  b.size, b.align, unsigned(b.kind), at, static_cast<const uint8_t*>(b.p)[at], pattern_byte(b.seed, at));
    }
    return true;
  }

  bool check_shape(void* p, size_t size, size_t align, const char* what) {
    size_t need = align > required_alignment(size) ? align : required_alignment(size);
    if (uintptr_t(p) & (need - 1)) return fail("%s(%zu, align %zu) = %p: not %zu-byte aligned", what, size, align, p, need);
    size_t us = malloc_usable_size(p);
    if (us < size) return fail("%s(%zu) = %p: malloc_usable_size %zu < size", what, size, p, us);
    return true;
  }

  bool accept(void* p, size_t size, size_t align, uint8_t kind, bool zeroed, const char* what) {
    if (p == nullptr) return fail("%s(%zu, align %zu) returned NULL (errno %d)", what, size, align, errno);
    if (!check_shape(p, size, align, what)) return false;
    if (zeroed) {
      size_t at = check_zero(p, size);
      if (at != SIZE_MAX) return fail("%s(%zu) = %p: byte %zu is %02x, not zero", what, size, p, at, static_cast<uint8_t*>(p)[at]);
    }
    uint64_t seed = seeds_.next() | 1;
    fill_tracked(p, size, 0, seed);
    blocks_.push_back(Block{p, size, align, seed, kind});
    live_bytes_ += size;
    return true;
  }

  bool op_calloc(size_t size, uint8_t variant) {
    static const size_t elems[] = {1, 2, 8, 16, 24, 4096};
    size_t e = elems[variant % 6], count;
    if (size == 0) {
      count = variant & 8 ? 0 : 1;
      e = variant & 8 ? 7 : 0;
    } else {
      if (size % e != 0) e = 1;
      count = size / e;
    }
    return accept(calloc(count, e), count * e, 0, kC, true, "calloc");
  }

  // The deallocator that matches the block's allocation; `variant` picks among its forms.
  static void release(const Block& b, uint8_t variant) {
    std::align_val_t al{b.align};
    switch (b.kind) {
      case kC: free(b.p); break;
      case kCxxNew:
        if (variant % 3 == 0) ::operator delete(b.p);
        else if (variant % 3 == 1) ::operator delete(b.p, b.size);
        else ::operator delete(b.p, std::nothrow);
        break;
      case kCxxNewArray:
        if (variant % 2 == 0) ::operator delete[](b.p);
        else ::operator delete[](b.p, b.size);
        break;
      case kCxxNewAligned:
        if (variant % 3 == 0) ::operator delete(b.p, al);
        else if (variant % 3 == 1) ::operator delete(b.p, b.size, al);
        else ::operator delete(b.p, al, std::nothrow);
        break;
      case kCxxNewArrayAligned:
        if (variant % 2 == 0) ::operator delete[](b.p, al);
        else ::operator delete[](b.p, b.size, al);
        break;
    }
  }

 public:
  // Verifies and frees block i.
  bool free_block(size_t i, uint8_t variant) {
    if (blocks_.empty()) return true;
    Block b = take(i);
    if (!check(b, "free")) return false;
    release(b, variant);
    return true;
  }

 private:
  bool op_realloc(size_t i, size_t size, uint8_t variant, bool array) {
    Block& b = blocks_[i];
    if (b.kind != kC) return free_block(i, variant);  // realloc is for malloc'd blocks only
    if (!check(b, array ? "reallocarray" : "realloc")) return false;
    size_t old = b.size;
    if (size == 0) size = 1;
    void* q;
    if (array) {
      static const size_t elems[] = {1, 2, 4, 8, 16, 24};
      size_t e = elems[variant % 6];
      if (size % e != 0) e = 1;
      q = reallocarray(b.p, size / e, e);
    } else {
      q = realloc(b.p, size);
    }
    const char* what = array ? "reallocarray" : "realloc";
    if (q == nullptr) return fail("%s(%p, %zu) returned NULL (errno %d)", what, b.p, size, errno);
    if (!check_shape(q, size, 0, what)) return false;
    size_t keep = old < size ? old : size;
    size_t at = check_tracked(q, old, keep, b.seed);  // what was tracked and kept
    if (at != SIZE_MAX) {
      return fail("%s(%p, %zu → %zu) = %p lost the contents at byte %zu", what, b.p, old, size, q, at);
    }
    // Track the new size: the grown part, and a shrunk block's new tail.
    if (size > old) fill_tracked(q, size, old, b.seed);
    else if (size > kFullCheck) fill_range(q, size - kEdge > kFullCheck ? size - kEdge : kFullCheck, size, b.seed);
    live_bytes_ = live_bytes_ - old + size;
    b.p = q;
    b.size = size;
    b.align = 0;  // realloc keeps only the default alignment
    return true;
  }

  bool op_realloc_zero(size_t i) {
    if (blocks_[i].kind != kC) return free_block(i, 0);
    Block b = take(i);
    if (!check(b, "realloc(p, 0)")) return false;
    void* q = realloc(b.p, 0);  // frees (glibc and hakmem return NULL)
    if (q != nullptr) return accept(q, 0, 0, kC, false, "realloc(p, 0)");
    return true;
  }

  bool op_usable(size_t i) {
    Block& b = blocks_[i];
    size_t us = malloc_usable_size(b.p);
    if (us < b.size) return fail("malloc_usable_size(%p) = %zu < %zu", b.p, us, b.size);
    // The slack is the program's to use: write it (continuing the pattern); an overstated
    // usable size then corrupts a neighbour, which its own check reports.
    size_t end = us - b.size > 65536 ? b.size + 65536 : us;
    fill_range(b.p, b.size, end, b.seed);
    return check(b, "malloc_usable_size");
  }

  // Requests that overflow must fail cleanly, leaving the block they name untouched.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#endif
  bool op_overflow(uint8_t variant, size_t index) {
    const size_t huge = opaque(SIZE_MAX - 4096 * size_t(variant % 7));
    errno = 0;
    switch (variant % 9) {
      case 0: {
        void* p = escape(malloc(huge));
        if (p != nullptr || errno != ENOMEM) return fail("malloc(%zu) = %p errno %d, want NULL/ENOMEM", huge, p, errno);
        return true;
      }
      case 1: {
        void* p = escape(calloc(opaque(SIZE_MAX / 2 + 2), 2));
        if (p != nullptr || errno != ENOMEM) return fail("calloc overflow = %p errno %d, want NULL/ENOMEM", p, errno);
        return true;
      }
      case 2:
      case 3: {
        if (blocks_.empty() || blocks_[pick(index)].kind != kC) return true;
        Block& b = blocks_[pick(index)];
        void* q = (variant % 9) == 2 ? reallocarray(b.p, opaque(SIZE_MAX / 4), 8) : realloc(b.p, opaque(size_t(PTRDIFF_MAX) + 1));
        if (q != nullptr || errno != ENOMEM)
          return fail("%s(%p, overflow) = %p errno %d, want NULL/ENOMEM", (variant % 9) == 2 ? "reallocarray" : "realloc", b.p, q, errno);
        return check(b, "after a failed realloc");
      }
      case 4: {
        void* p = reinterpret_cast<void*>(uintptr_t(0x1234));
        int rc = posix_memalign(&p, 64, huge);
        if (rc != ENOMEM || p != reinterpret_cast<void*>(uintptr_t(0x1234)))
          return fail("posix_memalign(64, %zu) = %d (out %p), want ENOMEM and out untouched", huge, rc, p);
        return true;
      }
      case 5: {
        void* p = escape(aligned_alloc(4096, huge));
        if (p != nullptr || errno != ENOMEM) return fail("aligned_alloc(4096, %zu) = %p errno %d", huge, p, errno);
        return true;
      }
      case 6: {
        void* p = reinterpret_cast<void*>(uintptr_t(0x1234));
        int rc = posix_memalign(&p, opaque(24), 16);
        if (rc != EINVAL) return fail("posix_memalign(24, 16) = %d, want EINVAL", rc);
        return true;
      }
      case 7: {
        bool threw = false;
        try {
          void* p = escape(::operator new(huge));  // clang may drop an unused new/delete pair
          ::operator delete(p);
        } catch (const std::bad_alloc&) {
          threw = true;
        }
        if (!threw) return fail("operator new(%zu) did not throw std::bad_alloc", huge);
        void* p = escape(::operator new(huge, std::nothrow));
        if (p != nullptr) return fail("operator new(%zu, nothrow) = %p, want nullptr", huge, p);
        return true;
      }
      default: {
        void* p = escape(pvalloc(huge));
        if (p != nullptr || errno != ENOMEM) return fail("pvalloc(%zu) = %p errno %d, want NULL/ENOMEM", huge, p, errno);
        return true;
      }
    }
  }
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

  size_t max_live_, max_bytes_;
  Rng seeds_;
  std::vector<Block> blocks_;
  size_t live_bytes_ = 0;
  uint64_t ops_ = 0;
  bool failed_ = false;
  char err_[768] = {0};
};

// Runs `n` random ops on the model.
inline bool run_random(Model& m, Rng& r, uint64_t n, size_t max_live, size_t max_size) {
  for (uint64_t i = 0; i < n; ++i)
    if (!m.apply(gen_op(r, m.live(), max_live, max_size))) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// Cross-thread frees: a second thread with its own model. hand_over() gives it blocks (which
// it verifies and frees, or keeps and frees later) and a job of random ops; collect() waits for
// the job and takes back the blocks it allocated. Jobs run while the caller goes on, so both
// threads allocate and free at the same time; what each model holds at each step does not
// depend on the timing (only addresses do), so a seed reproduces the same operations.
class Worker {
 public:
  Worker(size_t max_live, size_t max_bytes, size_t max_size, uint64_t seed)
      : model_(max_live, max_bytes, seed ^ 0x5157), max_live_(max_live), max_size_(max_size),
        th_([this] { loop(); }) {}
  ~Worker() { stop(); }

  // Starts a job: adopt `blocks`, then `ops` random ops from `seed`, then give back `give`.
  void hand_over(std::vector<Block>&& blocks, uint64_t ops, uint64_t seed, size_t give) {
    std::unique_lock<std::mutex> lk(mu_);
    inbox_ = std::move(blocks);
    job_ops_ = ops;
    job_seed_ = seed;
    job_give_ = give;
    has_job_ = true;
    busy_ = true;
    cv_.notify_all();
  }

  // Waits for the current job; appends the blocks handed back. False if the worker failed.
  bool collect(std::vector<Block>& out) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [this] { return !busy_; });
    for (const Block& b : outbox_) out.push_back(b);
    outbox_.clear();
    return !model_.failed();
  }

  const char* error() const { return model_.error(); }

  // Ends the thread (after the current job); its remaining blocks are verified and freed.
  bool stop() {
    if (!th_.joinable()) return !model_.failed();
    {
      std::unique_lock<std::mutex> lk(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    th_.join();
    return !model_.failed();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [this] { return has_job_ || stop_; });
      if (has_job_) {
        has_job_ = false;
        std::vector<Block> in = std::move(inbox_);
        inbox_.clear();
        uint64_t ops = job_ops_, seed = job_seed_;
        size_t give = job_give_;
        lk.unlock();
        std::vector<Block> back;
        run_job(in, ops, seed, give, back);
        lk.lock();
        outbox_ = std::move(back);
        busy_ = false;
        cv_.notify_all();
        continue;
      }
      if (stop_) break;
    }
    lk.unlock();
    model_.free_all();
  }

  void run_job(std::vector<Block>& in, uint64_t ops, uint64_t seed, size_t give, std::vector<Block>& back) {
    // Half of the incoming blocks are freed at once (a burst of remote frees), the rest join
    // the worker's model and are freed later by its random ops.
    for (size_t i = 0; i < in.size() && !model_.failed(); ++i) {
      if (!model_.adopt(in[i])) {
        for (size_t j = i + 1; j < in.size(); ++j) model_.adopt(in[j]);  // keep track even after a failure
        break;
      }
      if (i % 2 == 0) model_.free_block(model_.live() - 1, uint8_t(i));
    }
    Rng r(seed);
    if (!model_.failed()) run_random(model_, r, ops, max_live_, max_size_);
    while (give-- > 0 && model_.live() > 0 && !model_.failed()) back.push_back(model_.take(r.next() >> 1));
  }

  Model model_;
  size_t max_live_, max_size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Block> inbox_, outbox_;
  uint64_t job_ops_ = 0, job_seed_ = 0;
  size_t job_give_ = 0;
  bool has_job_ = false, busy_ = false, stop_ = false;
  std::thread th_;  // last: starts after the members above exist
};

// ---------------------------------------------------------------------------------------
// Fork: the child verifies every live block of `m` (its copy), runs `child_ops` random ops on
// it (and some on a new thread), verifies and frees everything, and exits 0 (1 on a check
// failure, printing why). The parent waits up to `timeout_s` seconds (a child stuck on a lock
// held across fork is killed and reported). Returns an empty string on success, else why.
inline const char* run_forked_check(Model& m, uint64_t seed, uint64_t child_ops, size_t max_live, size_t max_size,
                                    int timeout_s, char* why, size_t why_len) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(why, why_len, "fork failed: errno %d", errno);
    return why;
  }
  if (pid == 0) {
    int rc = 0;
    if (!m.check_all()) rc = 1;
    Rng r(seed);
    if (rc == 0 && !run_random(m, r, child_ops, max_live, max_size)) rc = 1;
    if (rc == 0) {
      // A thread in the child: its heap is new or a reused one from before the fork.
      Model tm(max_live / 4 + 1, 8u << 20, seed ^ 0x77);
      bool ok = true;
      std::thread t([&] {
        Rng tr(seed ^ 0x99);
        ok = run_random(tm, tr, child_ops / 4, max_live / 4 + 1, max_size) && tm.free_all();
      });
      t.join();
      if (!ok) {
        char buf[900];
        int n = snprintf(buf, sizeof buf, "fork child thread: %s\n", tm.error());
        if (write(2, buf, size_t(n)) < 0) {}
        _exit(1);
      }
    }
    if (rc == 0 && !m.free_all()) rc = 1;
    if (rc != 0) {
      char buf[900];
      int n = snprintf(buf, sizeof buf, "fork child: %s\n", m.error());
      if (write(2, buf, size_t(n)) < 0) {}
    }
    _exit(rc);
  }
  int status = 0;
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {
      snprintf(why, why_len, "waitpid failed: errno %d", errno);
      return why;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - t0.tv_sec > timeout_s) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      snprintf(why, why_len, "fork child still running after %d s (deadlock after fork?): killed", timeout_s);
      return why;
    }
    usleep(2000);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFSIGNALED(status)) snprintf(why, why_len, "fork child killed by signal %d", WTERMSIG(status));
  else snprintf(why, why_len, "fork child exited with %d (its check failed; see stderr)", WEXITSTATUS(status));
  return why;
}

// ---------------------------------------------------------------------------------------
// One complete run: `ops` random ops from `seed` on a model, with a worker thread taking and
// giving blocks every `handoff_every` ops and `forks` fork checks spread over the run. Used
// by the Criterion test (one seed per test) and by the soak (many seeds per thread).
struct RunConfig {
  uint64_t ops = 200000;
  size_t max_live = 3000;
  size_t max_bytes = 48u << 20;
  size_t max_size = 16u << 20;
  uint64_t handoff_every = 1000;
  size_t handoff_blocks = 24;
  int forks = 3;
  int fork_timeout_s = 30;
  uint64_t sabotage_at = 0;  // > 0: corrupt a block after that many ops (proves the checks fail)
};

struct RunResult {
  bool ok = true;
  char error[1024] = {0};
  uint64_t ops_done = 0, handoffs = 0, forks = 0, blocks_crossed = 0;
};

inline RunResult run_differential(uint64_t seed, const RunConfig& cfg) {
  RunResult res;
  Model m(cfg.max_live, cfg.max_bytes, seed);
  Worker w(cfg.max_live / 2, cfg.max_bytes / 2, cfg.max_size, seed ^ 0xabcdef);
  Rng r(seed);
  bool job_pending = false;
  uint64_t fork_every = cfg.forks > 0 ? cfg.ops / uint64_t(cfg.forks + 1) : 0;
  auto failed = [&](const char* who, const char* msg) {
    res.ok = false;
    snprintf(res.error, sizeof res.error, "seed %llu: %s: %s", (unsigned long long)seed, who, msg);
  };
  for (uint64_t i = 1; i <= cfg.ops && res.ok; ++i) {
    if (!m.apply(gen_op(r, m.live(), cfg.max_live, cfg.max_size))) {
      failed("main thread", m.error());
      break;
    }
    if (cfg.sabotage_at != 0 && i == cfg.sabotage_at) m.sabotage(size_t(r.next()));
    if (cfg.handoff_every != 0 && i % cfg.handoff_every == 0) {
      if (job_pending) {
        std::vector<Block> back;
        if (!w.collect(back)) {
          failed("worker thread", w.error());
          break;
        }
        for (const Block& b : back) {
          if (!m.adopt(b)) break;
          ++res.blocks_crossed;
        }
        if (m.failed()) {
          failed("main thread (block from the worker)", m.error());
          break;
        }
      }
      std::vector<Block> out;
      size_t n = cfg.handoff_blocks < m.live() ? cfg.handoff_blocks : m.live();
      for (size_t k = 0; k < n; ++k) out.push_back(m.take(size_t(r.next() >> 1)));
      res.blocks_crossed += out.size();
      w.hand_over(std::move(out), cfg.handoff_every / 2, r.next(), cfg.handoff_blocks);
      job_pending = true;
      ++res.handoffs;
    }
    if (fork_every != 0 && i % fork_every == 0 && res.forks < uint64_t(cfg.forks)) {
      char why[256];
      const char* e = run_forked_check(m, r.next(), 3000, cfg.max_live, cfg.max_size, cfg.fork_timeout_s, why, sizeof why);
      ++res.forks;
      if (*e) failed("fork", e);
    }
    res.ops_done = i;
  }
  if (job_pending) {
    std::vector<Block> back;
    bool wok = w.collect(back);
    if (res.ok && !wok) failed("worker thread", w.error());
    for (const Block& b : back) {
      if (res.ok && !m.adopt(b)) failed("main thread (block from the worker)", m.error());
    }
  }
  if (!w.stop() && res.ok) failed("worker thread (final free)", w.error());
  if (res.ok && !(m.check_all() && m.free_all())) failed("main thread (final check)", m.error());
  if (!res.ok) m.forget_all();
  return res;
}

}  // namespace diff

#endif  // HAKMEM_DIFF_MODEL_H
