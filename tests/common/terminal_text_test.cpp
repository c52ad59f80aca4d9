// The terminal samples' handling of other people's text and of typed numbers
// (samples/common/terminal_text.hpp).
#include "terminal_text.hpp"

#include <doctest/doctest.h>

using madoguchi::samples::printable;
using madoguchi::samples::typed_number;

TEST_SUITE("samples.terminal_text") {
  TEST_CASE("a visitor's control characters are shown, not obeyed") {
    // Clearing the agent's screen, setting the window title, faking an event line.
    CHECK(printable("hi \x1b[2J\x1b]0;PWNED\x07 ok") == "hi \\x1b[2J\\x1b]0;PWNED\\x07 ok");
    CHECK(printable("a\r[fake] #99 -- conversation_closed") == "a\\x0d[fake] #99 -- conversation_closed");
    CHECK(printable("one\ntwo") == "one\n    two");  // no line of its own at the margin
    CHECK(printable("\xC2\x9B" "31m") == "\\u009b31m");  // C1 CSI
    CHECK(printable("送料\tは？ é") == "送料\tは？ é");
  }

  TEST_CASE("a typed number, in ASCII or full-width digits") {
    CHECK(typed_number("2") == 2u);
    CHECK(typed_number(" ２ ") == 2u);
    CHECK(typed_number("１２") == 12u);
    CHECK_FALSE(typed_number("2a"));
    CHECK_FALSE(typed_number(""));
    CHECK_FALSE(typed_number("99999999999999999999999"));  // not a choice, and no overflow
  }
}
