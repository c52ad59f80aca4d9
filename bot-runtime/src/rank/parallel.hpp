// parallel_for() and Team: the independent parts of building an index, on several threads
// (private).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace madoguchi::bot::detail {

// Threads used when none were asked for: one per hardware thread, up to this many (each
// keeps a MeCab lattice and a scoring scratch in the bot's pools afterwards).
constexpr unsigned kMaxDefaultThreads = 8;

// The threads to use when `requested` were asked for (0: the default above) for `items`
// items handed out `grain` at a time: no more than there are blocks.
inline unsigned worker_count(unsigned requested, std::size_t items, std::size_t grain) noexcept {
  unsigned threads =
      requested ? requested : std::clamp(std::thread::hardware_concurrency(), 1u, kMaxDefaultThreads);
  std::size_t blocks = (items + grain - 1) / std::max<std::size_t>(1, grain);
  return static_cast<unsigned>(std::clamp<std::size_t>(blocks, 1, threads));
}

// A fixed set of threads that run one task after another, all of them on every thread:
// training's mini-batches make thousands of parallel steps a few hundred microseconds long,
// too short to start threads for each. Between tasks the helpers spin (yielding) for a
// while before they sleep, so that the next task reaches them without a wake-up.
// (std::thread rather than std::jthread, which the C++ libraries of some mobile toolchains
// do not have yet.)
class Team {
 public:
  // `threads` counts the calling thread; if a helper cannot be started, the team is smaller.
  explicit Team(unsigned threads) {
    helpers_.reserve(threads > 1 ? threads - 1 : 0);
    for (unsigned i = 1; i < threads; ++i) {
      try {
        helpers_.emplace_back([this, i]() { serve(i); });
      } catch (const std::system_error&) {
        break;
      }
    }
  }
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;
  ~Team() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    for (auto& t : helpers_) t.join();
  }

  unsigned size() const noexcept { return static_cast<unsigned>(helpers_.size()) + 1; }

  // Calls task(i) for every i in [0, size()), i = 0 on the calling thread, and returns when
  // every call has returned; the first exception thrown is rethrown here.
  template <typename Task>
  void run(Task&& task) {
    if (helpers_.empty()) {
      task(0u);
      return;
    }
    task_ = [](void* t, unsigned i) { (*static_cast<std::remove_reference_t<Task>*>(t))(i); };
    context_ = &task;
    pending_.store(size() - 1, std::memory_order_relaxed);
    {
      std::lock_guard lock(mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    call(0);
    for (int spin = 0; spin < kSpins && pending_.load(std::memory_order_acquire) != 0; ++spin) {
      std::this_thread::yield();
    }
    std::unique_lock lock(mu_);
    done_.wait(lock, [this]() { return pending_.load(std::memory_order_acquire) == 0; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  static constexpr int kSpins = 2000;

  void call(unsigned i) noexcept {
    try {
      task_(context_, i);
    } catch (...) {
      std::lock_guard lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void serve(unsigned i) {
    std::uint64_t seen = 0;
    for (;;) {
      for (int spin = 0; spin < kSpins && generation_.load(std::memory_order_acquire) == seen; ++spin) {
        std::this_thread::yield();
      }
      {
        std::unique_lock lock(mu_);
        start_.wait(lock, [&]() { return generation_.load(std::memory_order_acquire) != seen; });
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
      }
      call(i);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard lock(mu_);
        done_.notify_one();
      }
    }
  }

  std::mutex mu_;
  std::condition_variable start_, done_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<unsigned> pending_{0};
  bool stop_ = false;  // under mu_
  void (*task_)(void*, unsigned) = nullptr;
  void* context_ = nullptr;
  std::exception_ptr error_;  // under mu_
  std::vector<std::thread> helpers_;  // last: started once the rest is ready
};

// Calls body(begin, end) for consecutive blocks of `grain` items covering [0, n), from
// `threads` threads (the calling thread among them), and returns when every block is done.
// Which thread runs a block is not fixed, so `body` must write only to its own items: then
// the results do not depend on the number of threads. If `body` throws, no further block
// starts and the first exception is rethrown here; if a thread cannot be started, the
// others do its share.
template <typename Body>
void parallel_for(std::size_t n, unsigned threads, std::size_t grain, Body&& body) {
  grain = std::max<std::size_t>(1, grain);
  threads = worker_count(threads, n, grain);
  if (n == 0) return;
  if (threads == 1) {
    body(std::size_t{0}, n);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  Team team(threads);
  team.run([&](unsigned) {
    try {
      while (!failed.load(std::memory_order_relaxed)) {
        std::size_t begin = next.fetch_add(grain, std::memory_order_relaxed);
        if (begin >= n) return;
        body(begin, std::min(n, begin + grain));
      }
    } catch (...) {
      failed.store(true, std::memory_order_relaxed);
      throw;  // Team::run rethrows the first
    }
  });
}

}  // namespace madoguchi::bot::detail
