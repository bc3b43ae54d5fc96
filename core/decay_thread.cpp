// decay_thread.cpp — the idle-decay thread (see decay_thread.h).
#include "decay_thread.h"

#include <atomic>

#include "os.h"

namespace hak {
namespace {

enum State : uint32_t { kOff = 0, kStarting, kTicking, kParked, kUnavailable };

std::atomic<uint32_t> g_state{kOff};
DecayWorker g_worker = nullptr;
bool g_enabled = false;

uint32_t* state_word() { return reinterpret_cast<uint32_t*>(&g_state); }

void* decay_main(void*) {
  for (;;) {
    os_futex_wait(state_word(), kTicking, kDecayThreadTickNs);
    if (g_worker(os_now_ns())) continue;
    // Nothing left to wait for: park, unless a wake came in meanwhile (it set kTicking again
    // after we looked, so the exchange below fails and we tick once more).
    uint32_t s = kTicking;
    if (g_state.compare_exchange_strong(s, kParked, std::memory_order_acq_rel)) {
      while (g_state.load(std::memory_order_acquire) == kParked) os_futex_wait(state_word(), kParked, 0);
    }
  }
  return nullptr;
}

}  // namespace

void decay_thread_set_worker(DecayWorker fn, bool enabled) {
  g_worker = fn;
  g_enabled = enabled && fn != nullptr;
  if (!g_enabled) g_state.store(kUnavailable, std::memory_order_relaxed);
}

void decay_thread_wake() {
  uint32_t s = g_state.load(std::memory_order_relaxed);
  if (s == kTicking || s == kStarting || s == kUnavailable) return;
  if (s == kParked) {
    if (g_state.compare_exchange_strong(s, kTicking, std::memory_order_acq_rel)) os_futex_wake(state_word());
    return;
  }
  if (!g_enabled || !g_state.compare_exchange_strong(s, kStarting, std::memory_order_acq_rel)) return;
  bool ok = os_start_thread(decay_main, "hakmem-decay");
  g_state.store(ok ? kTicking : kUnavailable, std::memory_order_release);
}

void decay_thread_wake_for(size_t held_bytes) {
  if (held_bytes < kDecayThreadStartBytes && g_state.load(std::memory_order_relaxed) == kOff) return;
  decay_thread_wake();
}

bool decay_thread_available() {
  return g_enabled && g_state.load(std::memory_order_relaxed) != kUnavailable;
}

void decay_thread_reinit_after_fork() {
  // Stored only if it changes: a store to a page the parent wrote before fork() copies it.
  const uint32_t s = g_state.load(std::memory_order_relaxed);
  if (s != kUnavailable && s != kOff) g_state.store(kOff, std::memory_order_relaxed);
}

}  // namespace hak
