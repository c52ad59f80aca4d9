// Whether a text shows anything (private).
#pragma once

#include "text/utf8.hpp"

#include <unicode/uchar.h>

#include <string_view>

namespace madoguchi::bot::detail {

// True when `text` (valid UTF-8) shows nothing and normalizes to nothing: every character
// is white space (the ideographic space U+3000 and NEL included), a control character, or
// one that normalization drops (zero-width space, byte order mark, soft hyphen...).
inline bool blank_text(std::string_view text) {
  return !any_code_point(text, [](char32_t c) {
    const auto u = static_cast<UChar32>(c);
    return !(u_isUWhiteSpace(u) || u_iscntrl(u) || u_hasBinaryProperty(u, UCHAR_DEFAULT_IGNORABLE_CODE_POINT));
  });
}

}  // namespace madoguchi::bot::detail
