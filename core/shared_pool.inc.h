// shared_pool.inc.h — host: shared_pool.cpp. The lock-free stack behind stage 1 (the partial stack).
//
// TaggedStack: a Treiber stack whose head packs the node pointer (47-bit user address, 8-byte
// aligned: 44 significant bits) with a 20-bit version, so a pop that raced with pop+push (ABA)
// fails its CAS unless exactly 2^20 operations happened in between.
// Nodes live in SuperSlab headers, which are never unmapped, so reading a stale node's link
// never faults; a stale link is discarded by the failed CAS.
#ifndef HAK_IN_SHARED_POOL_CPP
#error "shared_pool.inc.h is part of shared_pool.cpp"
#endif

template <class T, T* T::*Next>
class TaggedStack {
  static_assert(alignof(T) >= 8, "nodes are packed without their three low bits");

 public:
  void push(T* node) {
    uint64_t old = head_.load(std::memory_order_relaxed);
    for (;;) {
      __atomic_store_n(&(node->*Next), ptr(old), __ATOMIC_RELAXED);
      uint64_t want = pack(node, old);
      if (head_.compare_exchange_weak(old, want, std::memory_order_release, std::memory_order_relaxed)) return;
    }
  }
  T* pop() {
    uint64_t old = head_.load(std::memory_order_acquire);
    for (;;) {
      T* node = ptr(old);
      if (node == nullptr) return nullptr;
      T* next = __atomic_load_n(&(node->*Next), __ATOMIC_RELAXED);
      if (head_.compare_exchange_weak(old, pack(next, old), std::memory_order_acquire, std::memory_order_acquire))
        return node;
    }
  }
  bool empty() const { return ptr(head_.load(std::memory_order_relaxed)) == nullptr; }
  void reset() { head_.store(0, std::memory_order_relaxed); }

 private:
  static constexpr unsigned kTagShift = 44;
  static constexpr uint64_t kPtrMask = (uint64_t(1) << kTagShift) - 1;
  static T* ptr(uint64_t v) { return reinterpret_cast<T*>((v & kPtrMask) << 3); }
  static uint64_t pack(T* p, uint64_t old) {
    return (reinterpret_cast<uint64_t>(p) >> 3) | (((old >> kTagShift) + 1) << kTagShift);
  }
  std::atomic<uint64_t> head_{0};
};
