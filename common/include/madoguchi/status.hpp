// madoguchi/status.hpp: the error vocabulary of every madoguchi module.
//
// Fallible functions return Status or Result<T>; both are [[nodiscard]]. Library code
// never throws across a module boundary and never prints: the message of a Status says
// what went wrong, where (file, line, entry) and, where it can, how to fix it.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace madoguchi {
inline namespace v1 {

enum class ErrorCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // the caller's input is wrong (bad JSON, bad UTF-8, unknown field...)
  kNotFound = 2,         // a file, entry or dictionary does not exist
  kUnavailable = 3,      // a resource cannot be reached now (network, dictionary load)
  kDeadlineExceeded = 4,
  kClosed = 5,           // the object was closed
  kInternal = 6,         // a bug or a third-party failure we could not classify
  kResourceExhausted = 7 // a size or rate limit was hit
};

constexpr std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kDeadlineExceeded: return "deadline exceeded";
    case ErrorCode::kClosed: return "closed";
    case ErrorCode::kInternal: return "internal error";
    case ErrorCode::kResourceExhausted: return "resource exhausted";
  }
  return "unknown error";
}

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }

  bool is_ok() const noexcept { return code_ == ErrorCode::kOk; }
  explicit operator bool() const noexcept { return is_ok(); }
  ErrorCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // "invalid argument: shop.json:12: ..." for logs and CLI output.
  std::string to_string() const {
    if (is_ok()) return "ok";
    std::string s(madoguchi::to_string(code_));
    if (!message_.empty()) {
      s += ": ";
      s += message_;
    }
    return s;
  }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string message) {
  return {ErrorCode::kInvalidArgument, std::move(message)};
}
inline Status not_found(std::string message) { return {ErrorCode::kNotFound, std::move(message)}; }
inline Status internal_error(std::string message) { return {ErrorCode::kInternal, std::move(message)}; }
inline Status unavailable(std::string message) { return {ErrorCode::kUnavailable, std::move(message)}; }
inline Status resource_exhausted(std::string message) {
  return {ErrorCode::kResourceExhausted, std::move(message)};
}

// Result<T>: a T or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}              // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {         // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).is_ok() && "Result built from an ok Status");
  }

  bool is_ok() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return is_ok(); }

  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace v1
}  // namespace madoguchi

#define MDG_CONCAT_INNER_(a, b) a##b
#define MDG_CONCAT_(a, b) MDG_CONCAT_INNER_(a, b)

// Return the Status from the enclosing function when `expr` is not ok.
#define MDG_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::madoguchi::Status mdg_status_ = (expr);     \
    if (!mdg_status_.is_ok()) return mdg_status_; \
  } while (0)

// MDG_ASSIGN_OR_RETURN(auto x, make_x()): bind the value or return the error.
#define MDG_ASSIGN_OR_RETURN(lhs, expr) \
  MDG_ASSIGN_OR_RETURN_IMPL_(MDG_CONCAT_(mdg_result_, __LINE__), lhs, expr)
#define MDG_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.is_ok()) return tmp.status();           \
  lhs = std::move(tmp).value()
