// The JSON knowledge loader and validation on arbitrary bytes: an error or a knowledge
// base, never a crash, a leak or undefined behaviour.
#include <madoguchi/bot/knowledge.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto kb = madoguchi::bot::parse_knowledge_json(text, "fuzz.json");
  if (kb.is_ok()) (void)madoguchi::bot::validate_knowledge(*kb);
  return 0;
}
