// What the terminal samples print of other people's text, and how they read a number typed
// to pick something (header only; samples/terminal-chat and samples/terminal-agent).
#pragma once

#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace madoguchi::samples {

// `text` (UTF-8, from someone else) made safe to print on a terminal: ESC, the other C0 and
// C1 control characters and DEL are shown as \xHH / \u00HH instead of acting (clearing the
// screen, setting the title, moving the cursor back over a line to fake an event), and a
// line break is followed by an indent, so that no text can pass for a line of the program.
inline std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    char buf[8];
    if (c == '\n') {
      out += "\n    ";
    } else if (c == '\t') {
      out += c;
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(text[i + 1])));
      out += buf;
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// The number `line` is, around spaces, in ASCII or full-width digits (a Japanese input method
// types "１"); nothing when it is something else or too large to be a choice.
inline std::optional<std::size_t> typed_number(std::string_view line) {
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
  if (line.empty()) return std::nullopt;
  std::size_t n = 0;
  for (std::size_t i = 0; i < line.size();) {
    unsigned digit;
    if (line[i] >= '0' && line[i] <= '9') {
      digit = static_cast<unsigned>(line[i] - '0');
      i += 1;
    } else if (line.substr(i, 2) == "\xEF\xBC" && i + 2 < line.size() &&
               static_cast<unsigned char>(line[i + 2]) >= 0x90 && static_cast<unsigned char>(line[i + 2]) <= 0x99) {
      digit = static_cast<unsigned>(static_cast<unsigned char>(line[i + 2]) - 0x90);  // U+FF10..U+FF19
      i += 3;
    } else {
      return std::nullopt;
    }
    if (n > 100000) return std::nullopt;
    n = n * 10 + digit;
  }
  return n;
}

}  // namespace madoguchi::samples
