// parallel_for(): the independent parts of building an index, on several threads (private).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
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
  std::mutex error_mu;
  std::exception_ptr error;
  auto work = [&]() noexcept {
    try {
      while (!failed.load(std::memory_order_relaxed)) {
        std::size_t begin = next.fetch_add(grain, std::memory_order_relaxed);
        if (begin >= n) return;
        body(begin, std::min(n, begin + grain));
      }
    } catch (...) {
      std::lock_guard lock(error_mu);
      if (!error) error = std::current_exception();
      failed.store(true, std::memory_order_relaxed);
    }
  };
  {
    // Joined when this block ends. (std::thread rather than std::jthread, which the C++
    // libraries of some mobile toolchains do not have yet.)
    struct Helpers {
      std::vector<std::thread> running;
      ~Helpers() {
        for (auto& t : running) t.join();
      }
    } helpers;
    helpers.running.reserve(threads - 1);
    for (unsigned t = 1; t < threads; ++t) {
      try {
        helpers.running.emplace_back(work);
      } catch (const std::system_error&) {
        break;  // no more threads: the ones running take the remaining blocks
      }
    }
    work();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace madoguchi::bot::detail
