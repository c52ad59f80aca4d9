#include "kb/json_locate.hpp"
#include "text/utf8.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <system_error>

namespace madoguchi::bot::detail {
namespace {

class Checker {
 public:
  explicit Checker(std::string_view s) : s_(s) {}

  bool run() {
    ws();
    if (!value(0)) return false;
    ws();
    if (i_ != s_.size()) return fail("unexpected text after the end of the JSON value");
    return true;
  }

  std::size_t pos() const { return i_; }
  const std::string& what() const { return what_; }

 private:
  // The whole character at byte `i` (the text is valid UTF-8), quoted, with its code point
  // when it is not ASCII: 'x', or '［' (U+FF3B).
  std::string character_at(std::size_t i) const {
    std::size_t end = i;
    const char32_t cp = next_code_point(s_, end);
    std::string out(1, '\'');
    out.append(s_.substr(i, end - i));
    out.push_back('\'');
    if (cp < 0x80) return out;
    char hex[16];
    std::snprintf(hex, sizeof hex, " (U+%04X)", static_cast<unsigned>(cp));
    out.append(hex);
    return out;
  }

  bool fail(std::string what) {
    what_ = std::move(what);
    return false;
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return fail("invalid literal (expected true, false or null)");
    i_ += word.size();
    return true;
  }
  bool string() {
    ++i_;  // opening quote
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character inside a string (escape it, e.g. \\n)");
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size()) break;
        char e = s_[i_];
        if (e == 'u') {
          unsigned unit = 0;
          if (!hex4(i_ + 1, unit)) return fail("bad \\u escape (needs 4 hex digits)");
          i_ += 4;
          // UTF-16 surrogates come in pairs: \uD83D\uDE00, never one alone.
          if (unit >= 0xDC00 && unit <= 0xDFFF) return fail("a \\u escape of a lone low surrogate (\\uDC00-\\uDFFF)");
          if (unit >= 0xD800 && unit <= 0xDBFF) {
            unsigned low = 0;
            if (s_.substr(i_ + 1, 2) != "\\u" || !hex4(i_ + 3, low) || low < 0xDC00 || low > 0xDFFF) {
              return fail("a \\u escape of a high surrogate (\\uD800-\\uDBFF) without the low one after it");
            }
            i_ += 6;
          }
        } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
          return fail(std::string("unknown escape \\") + e);
        }
      }
      ++i_;
    }
    return fail("unterminated string (missing closing \")");
  }
  // The number grammar of RFC 8259: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  bool number() {
    const std::size_t start = i_;
    auto digits = [this] {
      const std::size_t from = i_;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      return i_ > from;
    };
    auto refuse = [this, start](const std::string& what) {  // placed at the number's start
      i_ = start;
      return fail(what);
    };
    auto invalid = [&refuse](const char* what) { return refuse(std::string("invalid number: ") + what); };
    if (s_[i_] == '-') ++i_;
    if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) return invalid("a digit must come first");
    if (s_[i_] == '0' && i_ + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))) {
      return invalid("no leading zeros (write 5, not 05)");
    }
    digits();
    bool whole = true;
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      whole = false;
      if (!digits()) return invalid("digits must follow the decimal point (write 1.0 or 1)");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      whole = false;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return invalid("digits must follow the exponent");
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + i_;
    if (whole) {  // the parser keeps whole numbers as 64-bit integers
      std::int64_t i = 0;
      std::uint64_t u = 0;
      if (std::from_chars(first, last, i).ec != std::errc() && std::from_chars(first, last, u).ec != std::errc()) {
        return refuse("integer too large (whole numbers go from -9223372036854775808 to 18446744073709551615)");
      }
      return true;
    }
    double value = 0;
    if (std::from_chars(first, last, value).ec == std::errc::result_out_of_range) {
      return refuse("number out of range (a double goes to about 1.8e308)");
    }
    return true;
  }
  // The 4 hex digits at `at` as a number; false if they are not there.
  bool hex4(std::size_t at, unsigned& out) const {
    if (at + 4 > s_.size()) return false;
    out = 0;
    for (std::size_t k = at; k < at + 4; ++k) {
      const auto c = static_cast<unsigned char>(s_[k]);
      if (!std::isxdigit(c)) return false;
      out = out * 16 + static_cast<unsigned>(std::isdigit(c) ? c - '0' : (std::tolower(c) - 'a' + 10));
    }
    return true;
  }
  bool value(int depth) {
    if (depth > 512) return fail("nesting deeper than 512 levels");
    if (i_ >= s_.size()) return fail("unexpected end of the text (a value is missing)");
    char c = s_[i_];
    switch (c) {
      case '{': return object(depth);
      case '[': return array(depth);
      case '"': return string();
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default:
        if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) return number();
        return fail("unexpected character " + character_at(i_) + " where a value should start" +
                    (static_cast<unsigned char>(c) >= 0x80 ? " (JSON takes ASCII punctuation: [ { \" , :)" : ""));
    }
  }
  bool object(int depth) {
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return true;
    }
    while (true) {
      ws();
      if (i_ >= s_.size() || s_[i_] != '"') return fail("expected a \"key\" in the object (a trailing comma?)");
      if (!string()) return false;
      ws();
      if (i_ >= s_.size() || s_[i_] != ':') return fail("expected ':' after the key");
      ++i_;
      ws();
      if (!value(depth + 1)) return false;
      ws();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return true;
      }
      return fail("expected ',' or '}' in the object (a missing comma?)");
    }
  }
  bool array(int depth) {
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return true;
    }
    while (true) {
      ws();
      if (i_ < s_.size() && s_[i_] == ']') return fail("trailing comma before ']'");
      if (!value(depth + 1)) return false;
      ws();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return true;
      }
      return fail("expected ',' or ']' in the array (a missing comma?)");
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::string what_;
};

}  // namespace

std::size_t line_of_offset(std::string_view text, std::size_t offset) {
  std::size_t line = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') ++line;
  }
  return line;
}

JsonErrorLocation locate_json_error(std::string_view text) {
  Checker c(text);
  JsonErrorLocation loc;
  if (c.run()) return loc;
  loc.found = true;
  std::size_t p = std::min(c.pos(), text.size());
  loc.line = line_of_offset(text, p);
  std::size_t line_start = text.rfind('\n', p == 0 ? 0 : p - 1);
  line_start = (line_start == std::string_view::npos || p == 0) ? 0 : line_start + 1;
  loc.column = p - line_start + 1;
  loc.what = c.what();
  return loc;
}

}  // namespace madoguchi::bot::detail
