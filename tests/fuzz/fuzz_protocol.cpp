// The protocol codec on arbitrary bytes: a frame or a decode error, never a crash; and
// whatever decodes encodes to a frame that decodes to the same value.
#include <madoguchi/protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace madoguchi::protocol;
  auto r = decode(std::string_view(reinterpret_cast<const char*>(data), size));
  if (const auto* f = std::get_if<Frame>(&r)) {
    auto again = decode(encode(*f));
    const auto* g = std::get_if<Frame>(&again);
    if (!g || !(*g == *f)) std::abort();  // the codec must round-trip what it accepts
  }
  return 0;
}
