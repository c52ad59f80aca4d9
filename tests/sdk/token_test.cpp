#include <madoguchi/hub.hpp>

#include <doctest/doctest.h>

using namespace madoguchi::hub;

TEST_SUITE("hub.token") {
  TEST_CASE("a token names its conversation until it expires") {
    const std::string secret = "0123456789abcdef-secret";
    std::string token = make_visitor_token(secret, "c_abc", 2000);
    auto ok = check_visitor_token(secret, token, 1000);
    REQUIRE(ok.is_ok());
    CHECK(*ok == "c_abc");
    SUBCASE("expired") {
      auto r = check_visitor_token(secret, token, 3000);
      REQUIRE_FALSE(r.is_ok());
      CHECK(r.status().code() == madoguchi::ErrorCode::kDeadlineExceeded);
    }
    SUBCASE("forged: another secret, a changed signature, another conversation") {
      CHECK_FALSE(check_visitor_token("another secret, 16+ bytes", token, 1000).is_ok());
      std::string changed = token;
      changed.back() = changed.back() == '0' ? '1' : '0';
      CHECK_FALSE(check_visitor_token(secret, changed, 1000).is_ok());
      std::string other = token;
      other.replace(other.find("c_abc"), 5, "c_xyz");
      CHECK_FALSE(check_visitor_token(secret, other, 1000).is_ok());
    }
    SUBCASE("malformed") {
      CHECK_FALSE(check_visitor_token(secret, "", 0).is_ok());
      CHECK_FALSE(check_visitor_token(secret, "v1.", 0).is_ok());
      CHECK_FALSE(check_visitor_token(secret, "v2.c.1.ab", 0).is_ok());
      CHECK_FALSE(check_visitor_token(secret, "v1..1.ab", 0).is_ok());
    }
  }
}
