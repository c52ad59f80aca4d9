#include "eval_set.hpp"

#include <madoguchi/detail/utf8.hpp>

#include <simdjson.h>

#include <filesystem>
#include <fstream>

namespace madoguchi::cli {

Result<std::vector<EvalQuestion>> read_eval_set(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
    return invalid_argument(path + ": not a file (a folder?); give the evaluation set's .jsonl file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open the evaluation set");
  std::vector<EvalQuestion> out;
  simdjson::dom::parser parser;
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (n == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a byte order mark
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto where = path + ":" + std::to_string(n);
    if (std::size_t bad = madoguchi::detail::find_invalid_utf8(line); bad != std::string::npos) {
      return invalid_argument(where + ": invalid UTF-8 at byte " + std::to_string(bad) + " of the line (save the file as UTF-8)");
    }
    simdjson::dom::element doc;
    if (parser.parse(line).get(doc) != simdjson::SUCCESS) {
      return invalid_argument(where + ": not a JSON object (one {\"text\": ..., \"expect\": ...} per line)");
    }
    EvalQuestion q;
    q.line = n;
    std::string_view text;
    if (doc["text"].get_string().get(text) != simdjson::SUCCESS) {
      return invalid_argument(where + ": missing \"text\" (a string)");
    }
    q.text = std::string(text);
    simdjson::dom::element expect;
    if (doc["expect"].get(expect) != simdjson::SUCCESS) {
      return invalid_argument(where + ": missing \"expect\" (an entry id, or null for out of scope)");
    }
    if (!expect.is_null()) {
      std::string_view id;
      if (expect.get_string().get(id) != simdjson::SUCCESS) {
        return invalid_argument(where + ": \"expect\" must be an entry id string or null");
      }
      q.expect = std::string(id);
    }
    out.push_back(std::move(q));
  }
  if (out.empty()) return invalid_argument(path + ": the evaluation set is empty");
  return out;
}

}  // namespace madoguchi::cli
