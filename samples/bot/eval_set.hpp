// Reads an evaluation set (JSON Lines: {"text": ..., "expect": "entry-id" | null}).
#pragma once

#include <madoguchi/status.hpp>

#include <optional>
#include <string>
#include <vector>

namespace madoguchi::cli {

struct EvalQuestion {
  std::string text;
  std::optional<std::string> expect;  // nullopt: out of scope
  std::size_t line = 0;
};

Result<std::vector<EvalQuestion>> read_eval_set(const std::string& path);

}  // namespace madoguchi::cli
