// Small UTF-8 helpers shared by the bot runtime (private).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace madoguchi::bot::detail {

// Decodes the code point at text[i] (text must be valid UTF-8) and advances i.
inline char32_t next_code_point(std::string_view text, std::size_t& i) noexcept {
  auto c = static_cast<unsigned char>(text[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
  char32_t cp = c & (0x3F >> extra);
  ++i;
  for (int k = 0; k < extra && i < text.size(); ++k, ++i) {
    cp = (cp << 6) | (static_cast<unsigned char>(text[i]) & 0x3F);
  }
  return cp;
}

// True when pred(code point) holds for a code point of `text` (valid UTF-8).
template <typename Pred>
bool any_code_point(std::string_view text, Pred pred) {
  for (std::size_t i = 0; i < text.size();) {
    if (pred(next_code_point(text, i))) return true;
  }
  return false;
}

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline bool is_hiragana(char32_t c) noexcept { return c >= 0x3041 && c <= 0x309F; }
inline bool is_katakana(char32_t c) noexcept {
  return (c >= 0x30A0 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF);
}
inline bool is_kanji(char32_t c) noexcept {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || c == 0x3005 ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x2FFFF);
}
// Half-width katakana (U+FF66..U+FF9F), as typed before normalization folds it: a raw
// question "ｻｲｽﾞ ｺｳｶﾝ" is Japanese too.
inline bool is_half_width_katakana(char32_t c) noexcept { return c >= 0xFF66 && c <= 0xFF9F; }
inline bool is_japanese(char32_t c) noexcept {
  return is_hiragana(c) || is_katakana(c) || is_kanji(c) || is_half_width_katakana(c);
}
inline bool is_ascii_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
inline bool is_ascii(std::string_view s) noexcept {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// True when s[pos, pos+len) is not glued to ASCII letters or digits on either side: an
// English keyword "hi" must not match inside "this"; Japanese text has no such boundary.
inline bool at_word_boundary(std::string_view s, std::size_t pos, std::size_t len) noexcept {
  bool left_ok = pos == 0 || !is_ascii_alnum(s[pos - 1]) || !is_ascii_alnum(s[pos]);
  std::size_t end = pos + len;
  bool right_ok = end >= s.size() || !is_ascii_alnum(s[end]) || !is_ascii_alnum(s[end - 1]);
  return left_ok && right_ok;
}

// True when `needle` occurs in `hay` at a word boundary (see at_word_boundary).
inline bool contains_term(std::string_view hay, std::string_view needle) noexcept {
  if (needle.empty()) return false;
  for (std::size_t pos = hay.find(needle); pos != std::string_view::npos;
       pos = hay.find(needle, pos + 1)) {
    if (at_word_boundary(hay, pos, needle.size())) return true;
  }
  return false;
}

}  // namespace madoguchi::bot::detail
