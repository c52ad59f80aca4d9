// Finds where a JSON text stops being valid JSON, for error messages that name a line.
// simdjson says *that* a document is malformed; this says *where* (only on the error path).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace madoguchi::bot::detail {

struct JsonErrorLocation {
  bool found = false;
  std::size_t line = 0;    // 1-based
  std::size_t column = 0;  // 1-based, in bytes
  std::string what;
};

JsonErrorLocation locate_json_error(std::string_view text);

// 1-based line of a byte offset.
std::size_t line_of_offset(std::string_view text, std::size_t offset);

}  // namespace madoguchi::bot::detail
