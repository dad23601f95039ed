// A bound on costly work running at once in the process (Argon2 checks, photo decodes): a
// counting semaphore whose callers either wait a bounded time for a place or are refused.
#pragma once
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace doppel::services {

class WorkSlots {
 public:
  explicit WorkSlots(int slots) : free_(slots) {}
  WorkSlots(const WorkSlots&) = delete;
  WorkSlots& operator=(const WorkSlots&) = delete;

  bool try_acquire() { return acquire_within(std::chrono::milliseconds(0)); }
  // False when no place came free within `wait`.
  bool acquire_within(std::chrono::milliseconds wait) {
    std::unique_lock lock(mutex_);
    if (!freed_.wait_for(lock, wait, [this] { return free_ > 0; })) return false;
    --free_;
    return true;
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      ++free_;
    }
    freed_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable freed_;
  int free_;
};

// The server-wide places for decoding photos (a 40-megapixel photo takes ~300 MB while it is
// decoded): two at once, whichever request or intake step asks.
inline WorkSlots& photo_decode_slots() {
  static WorkSlots slots(2);
  return slots;
}

// Holds a place of `slots` for a scope; `held()` is false when none came free in time.
class WorkSlot {
 public:
  WorkSlot(WorkSlots& slots, std::chrono::milliseconds wait)
      : slots_(slots), held_(slots.acquire_within(wait)) {}
  ~WorkSlot() {
    if (held_) slots_.release();
  }
  WorkSlot(const WorkSlot&) = delete;
  WorkSlot& operator=(const WorkSlot&) = delete;
  bool held() const { return held_; }

 private:
  WorkSlots& slots_;
  bool held_;
};

}  // namespace doppel::services
