// madoguchi/log.hpp: the one logging sink a host gives the library.
//
// Library code never prints. It calls the Logger the host set; without one, nothing is
// written. The sink may be called from any thread the library runs on and must not block.
// Message bodies, tokens and credentials are never logged at kInfo or above.
#pragma once

#include <functional>
#include <string_view>

namespace madoguchi {
inline namespace v1 {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

constexpr std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}

struct Logger {
  std::function<void(LogLevel, std::string_view)> sink;  // empty: discard
  LogLevel min_level = LogLevel::kInfo;

  bool enabled(LogLevel level) const noexcept { return sink && level >= min_level; }
  void log(LogLevel level, std::string_view message) const {
    if (enabled(level)) sink(level, message);
  }
};

}  // namespace v1
}  // namespace madoguchi
