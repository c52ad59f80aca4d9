// Visitor tokens: v1.<conversation>.<expires_ms>.<hex HMAC-SHA256(secret, "v1.<conversation>.<expires_ms>")>
#include <madoguchi/hub.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>

namespace madoguchi::hub {
inline namespace v1 {
namespace {

std::string hmac_hex(std::string_view secret, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

}  // namespace

std::string make_visitor_token(std::string_view secret, std::string_view conversation, std::int64_t expires_ms) {
  std::string body = "v1.";
  body += conversation;
  body += '.';
  body += std::to_string(expires_ms);
  return body + "." + hmac_hex(secret, body);
}

Result<std::string> check_visitor_token(std::string_view secret, std::string_view token, std::int64_t now_ms) {
  std::size_t last = token.rfind('.');
  if (token.substr(0, 3) != "v1." || last == std::string_view::npos || last < 4) {
    return invalid_argument("malformed token");
  }
  std::string_view body = token.substr(0, last);
  std::string_view mac = token.substr(last + 1);
  std::string expected = hmac_hex(secret, body);
  if (mac.size() != expected.size() || CRYPTO_memcmp(mac.data(), expected.data(), mac.size()) != 0) {
    return invalid_argument("the token's signature does not match");
  }
  std::size_t dot = body.rfind('.');
  std::string_view conversation = body.substr(3, dot - 3);
  std::string_view expires = body.substr(dot + 1);
  std::int64_t exp = 0;
  auto [p, ec] = std::from_chars(expires.data(), expires.data() + expires.size(), exp);
  if (ec != std::errc() || p != expires.data() + expires.size() || conversation.empty()) {
    return invalid_argument("malformed token");
  }
  if (exp < now_ms) return Status(ErrorCode::kDeadlineExceeded, "the token has expired");
  return std::string(conversation);
}

}  // namespace v1
}  // namespace madoguchi::hub
