// Pool<T>: per-call scratch objects (MeCab lattices, stemmers) shared by threads.
// take() hands out an object no other thread holds; it returns to the pool when the
// lease ends. Objects are created on demand, so the pool grows to the peak concurrency.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace madoguchi::bot::detail {

template <typename T>
class Pool {
 public:
  using Factory = std::function<std::unique_ptr<T>()>;

  class Lease {
   public:
    Lease(Pool* pool, std::unique_ptr<T> item) : pool_(pool), item_(std::move(item)) {}
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease() {
      if (item_) pool_->give_back(std::move(item_));
    }
    explicit operator bool() const noexcept { return item_ != nullptr; }
    T& operator*() const noexcept { return *item_; }
    T* operator->() const noexcept { return item_.get(); }

   private:
    Pool* pool_;
    std::unique_ptr<T> item_;
  };

  explicit Pool(Factory factory) : factory_(std::move(factory)) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Sets how new objects are made; call before the pool is shared between threads.
  void set_factory(Factory factory) { factory_ = std::move(factory); }

  // An empty lease when the factory fails.
  Lease take() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        auto item = std::move(free_.back());
        free_.pop_back();
        return Lease(this, std::move(item));
      }
    }
    return Lease(this, factory_());
  }

 private:
  void give_back(std::unique_ptr<T> item) {
    std::lock_guard lock(mu_);
    free_.push_back(std::move(item));
  }

  Factory factory_;
  std::mutex mu_;
  std::vector<std::unique_ptr<T>> free_;
};

}  // namespace madoguchi::bot::detail
