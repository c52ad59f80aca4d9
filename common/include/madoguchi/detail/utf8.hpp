// madoguchi/detail/utf8.hpp: the one UTF-8 check of every module (the bot runtime's
// bot::find_invalid_utf8 and the C API's argument checks). Not part of the stable API.
#pragma once

#include <cstddef>
#include <string_view>

namespace madoguchi::detail {

// The byte offset of the first ill-formed sequence in `text`, or npos when it is all valid
// UTF-8. Well-formed means the byte ranges of the Unicode Standard's Table 3-7, so truncated
// sequences, stray continuation bytes, overlong forms (C0, C1, E0 80-9F, F0 80-8F),
// surrogates (ED A0-BF) and code points over U+10FFFF (F4 90-BF, F5-FF) are all invalid.
// The offset is that of the sequence's first byte.
inline std::size_t find_invalid_utf8(std::string_view text) noexcept {
  const std::size_t n = text.size();
  auto byte = [text](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = byte(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // over U+10FFFF
    } else {
      return i;
    }
    if (len > n - i || byte(i + 1) < lo || byte(i + 1) > hi) return i;
    for (std::size_t k = 2; k < len; ++k) {
      if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

}  // namespace madoguchi::detail
