// page_arena.inc.h — host: page_arena.cpp. Bitmap helpers for the arena's page maps.
#ifndef HAK_IN_PAGE_ARENA_CPP
#error "page_arena.inc.h is part of page_arena.cpp"
#endif

inline constexpr size_t kBitmapWords = kArenaPagesPerChunk / 64;

struct PageBitmap {
  uint64_t w[kBitmapWords];

  bool test(size_t i) const { return (w[i >> 6] >> (i & 63)) & 1; }

  // Sets (value = true) or clears bits [first, first + n).
  void assign(size_t first, size_t n, bool value) {
    while (n > 0) {
      size_t bit = first & 63, take = 64 - bit < n ? 64 - bit : n;
      uint64_t mask = (take == 64 ? ~uint64_t(0) : ((uint64_t(1) << take) - 1)) << bit;
      if (value) w[first >> 6] |= mask;
      else w[first >> 6] &= ~mask;
      first += take;
      n -= take;
    }
  }

  // First index ≥ from whose bit equals `value`, or kArenaPagesPerChunk.
  size_t find(size_t from, bool value) const {
    while (from < kArenaPagesPerChunk) {
      uint64_t word = value ? w[from >> 6] : ~w[from >> 6];
      word &= ~uint64_t(0) << (from & 63);
      if (word != 0) return (from & ~size_t(63)) + size_t(__builtin_ctzll(word));
      from = (from & ~size_t(63)) + 64;
    }
    return kArenaPagesPerChunk;
  }

  // First run of n bits equal to `value` from index 1 (first fit), or kArenaPagesPerChunk and
  // *longest = the longest such run (the search has seen them all).
  size_t find_run(size_t n, bool value, size_t* longest = nullptr) const {
    size_t i = find(1, value), best = 0;
    while (i < kArenaPagesPerChunk) {
      size_t end = find(i, !value);
      if (end - i >= n) return i;
      if (end - i > best) best = end - i;
      i = find(end, value);
    }
    if (longest != nullptr) *longest = best;
    return kArenaPagesPerChunk;
  }

  // Number of set bits in [first, first + n).
  size_t count_range(size_t first, size_t n) const {
    size_t c = 0;
    while (n > 0) {
      size_t bit = first & 63, take = 64 - bit < n ? 64 - bit : n;
      uint64_t mask = (take == 64 ? ~uint64_t(0) : ((uint64_t(1) << take) - 1)) << bit;
      c += size_t(__builtin_popcountll(w[first >> 6] & mask));
      first += take;
      n -= take;
    }
    return c;
  }

  size_t count() const {
    size_t c = 0;
    for (uint64_t x : w) c += size_t(__builtin_popcountll(x));
    return c;
  }
};
