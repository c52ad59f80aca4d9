#include <madoguchi/detail/utf8.hpp>

#include <doctest/doctest.h>

#include <string_view>

using madoguchi::detail::find_invalid_utf8;
using namespace std::string_view_literals;

namespace {

constexpr std::size_t kValid = std::string_view::npos;

struct Case {
  std::string_view what;
  std::string_view text;
  std::size_t invalid_at;  // the first byte of the first bad sequence, or kValid
};

constexpr Case kCases[] = {
    {"empty", "", kValid},
    {"ASCII with a NUL", "a\0b"sv, kValid},
    {"U+0080 and U+07FF", "\xc2\x80 \xdf\xbf", kValid},
    {"U+0800 and U+FFFF", "\xe0\xa0\x80 \xef\xbf\xbf", kValid},
    {"U+D7FF and U+E000, around the surrogates", "\xed\x9f\xbf \xee\x80\x80", kValid},
    {"U+10000 and U+10FFFF", "\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf", kValid},
    {"Japanese and an emoji", "返品したい 😀", kValid},
    {"truncated at the end", "ab\xf0\x9f\x98", 2},
    {"truncated by ASCII", "ab\xe3\x81" "c", 2},
    {"a stray continuation byte", "返\xbf", 3},
    {"FE", "x\xfe", 1},
    {"FF", "x\xff", 1},
    {"overlong C0", "\xc0\xaf", 0},
    {"overlong C1", "\xc1\xbf", 0},
    {"overlong E0", "\xe0\x9f\xbf", 0},
    {"overlong F0", "\xf0\x8f\xbf\xbf", 0},
    {"the first surrogate", "\xed\xa0\x80", 0},
    {"the last surrogate", "ok \xed\xbf\xbf", 3},
    {"U+110000", "\xf4\x90\x80\x80", 0},
    {"lead byte F5", "\xf5\x80\x80\x80", 0},
    {"lead byte F7", "\xf7\xbf\xbf\xbf", 0},
    {"the first of several", "a\xc3\xa9\xff\xff", 3},
};

}  // namespace

TEST_SUITE("common.utf8") {
  TEST_CASE("find_invalid_utf8 gives the offset of the first ill-formed sequence, or npos") {
    for (const Case& c : kCases) {
      CAPTURE(c.what);
      CHECK(find_invalid_utf8(c.text) == c.invalid_at);
    }
  }
}
