// The protocol codec on arbitrary bytes: a frame or a decode error, never a crash; and
// whatever decodes encodes to a frame that decodes to the same value. The readers of a bot
// message's details and of an event's data take the same bytes, and a decoded frame's.
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
    (void)parse_bot_info(f->bot_json);
    (void)parse_event_data(f->data_json);
  }
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const auto& o : parse_bot_info(text).options) {
    if (o.entry.empty()) std::abort();  // an option without its entry is left out
  }
  (void)parse_event_data(text);
  return 0;
}
