// bench_queue.h — a bounded multi-producer multi-consumer queue of batches for the threaded
// benchmarks (xthread, pipeline): a mutex and two condition variables, one transfer per batch,
// which keeps the lock out of the per-block cost. Header only; the benchmarks may use the
// whole C++ runtime.
#ifndef HAKMEM_BENCH_QUEUE_H
#define HAKMEM_BENCH_QUEUE_H

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace bench {

template <class Batch>
class BatchQueue {
 public:
  explicit BatchQueue(size_t capacity) : capacity_(capacity) {}
  void push(Batch&& b) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return q_.size() < capacity_; });
    q_.push_back(std::move(b));
    not_empty_.notify_one();
  }
  // Returns false when the queue is empty and every producer is done.
  bool pop(Batch& out) {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return !q_.empty() || producers_left_ == 0; });
    if (q_.empty()) return false;
    out = std::move(q_.front());
    q_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void set_producers(unsigned n) { producers_left_ = n; }
  void producer_done() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--producers_left_ == 0) not_empty_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Batch> q_;
  size_t capacity_;
  unsigned producers_left_ = 0;
};

}  // namespace bench

#endif  // HAKMEM_BENCH_QUEUE_H
