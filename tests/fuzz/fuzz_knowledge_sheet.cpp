// The CSV/TSV sheet loader on arbitrary bytes (the first byte picks the delimiter).
#include <madoguchi/bot/knowledge.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  char delimiter = (data[0] & 1) ? '\t' : ',';
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto kb = madoguchi::bot::parse_knowledge_sheet(text, "fuzz.csv", delimiter);
  if (kb.is_ok()) (void)madoguchi::bot::validate_knowledge(*kb);
  return 0;
}
