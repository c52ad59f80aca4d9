// Agent password hashes: scrypt (RFC 7914) through OpenSSL, written in the PHC string format
// "$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<key>", base64 without padding.
#include "hub/password.hpp"

#include <madoguchi/hub.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <cstdint>

namespace madoguchi::hub {
namespace {

constexpr int kR = 8, kP = 1;                        // what hash_agent_password() writes
constexpr int kMaxLog2N = 20;                        // in a hash the hub reads (with a smaller r)
constexpr std::size_t kSaltBytes = 16, kKeyBytes = 32;
constexpr std::uint64_t kMaxMemory = 256ull << 20;   // 128 · r · N · p, the memory scrypt takes
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(const std::vector<unsigned char>& bytes) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  return out;
}

// Strict: the alphabet above, no padding, no bits left over.
bool unbase64(std::string_view text, std::vector<unsigned char>& out) {
  out.clear();
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const char* at = c ? std::char_traits<char>::find(kAlphabet, 64, c) : nullptr;
    if (!at) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(at - kAlphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<unsigned char>((acc >> bits) & 0xff));
    }
  }
  return bits < 6 && (acc & ((1u << bits) - 1)) == 0;
}

bool derive(std::string_view password, const detail::PasswordHash& h, std::vector<unsigned char>& key) {
  key.assign(h.key.size(), 0);
  const std::uint64_t n = std::uint64_t{1} << h.log2_n;
  return EVP_PBE_scrypt(password.data(), password.size(), h.salt.data(), h.salt.size(), n,
                        static_cast<std::uint64_t>(h.r), static_cast<std::uint64_t>(h.p), 2 * kMaxMemory,
                        key.data(), key.size()) == 1;
}

bool random_bytes(std::vector<unsigned char>& out, std::size_t n) {
  out.assign(n, 0);
  return RAND_bytes(out.data(), static_cast<int>(n)) == 1;
}

// "name=<integer>" at the front of `params` (then a comma or the end); advances past it.
bool take_param(std::string_view& params, std::string_view name, int& value) {
  if (params.substr(0, name.size() + 1) != std::string(name) + "=") return false;
  params.remove_prefix(name.size() + 1);
  auto [end, ec] = std::from_chars(params.data(), params.data() + params.size(), value);
  if (ec != std::errc() || end == params.data()) return false;
  params.remove_prefix(static_cast<std::size_t>(end - params.data()));
  if (!params.empty()) {
    if (params.front() != ',') return false;
    params.remove_prefix(1);
  }
  return true;
}

}  // namespace

namespace detail {

Result<PasswordHash> parse_password_hash(std::string_view text) {
  const std::string how = " (make one with `madoguchi-hub --hash-password`)";
  constexpr std::string_view kPrefix = "$scrypt$";
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    return invalid_argument("not an scrypt hash: it must start with \"$scrypt$\"" + how);
  }
  text.remove_prefix(kPrefix.size());
  const std::size_t d1 = text.find('$');
  const std::size_t d2 = d1 == std::string_view::npos ? d1 : text.find('$', d1 + 1);
  if (d2 == std::string_view::npos || text.find('$', d2 + 1) != std::string_view::npos) {
    return invalid_argument("an scrypt hash has three parts after \"$scrypt$\": parameters, salt and key, "
                            "separated by '$'" + how);
  }
  PasswordHash h;
  std::string_view params = text.substr(0, d1);
  if (!take_param(params, "ln", h.log2_n) || !take_param(params, "r", h.r) || !take_param(params, "p", h.p) ||
      !params.empty()) {
    return invalid_argument("the parameters must read \"ln=<log2 N>,r=<r>,p=<p>\"" + how);
  }
  if (h.log2_n < kMinPasswordCost || h.log2_n > kMaxLog2N || h.r < 1 || h.r > 64 || h.p < 1 || h.p > 16) {
    return invalid_argument("parameters out of range: ln must be " + std::to_string(kMinPasswordCost) + ".." +
                            std::to_string(kMaxLog2N) + ", r 1..64, p 1..16");
  }
  const std::uint64_t memory = 128ull * static_cast<std::uint64_t>(h.r) * (std::uint64_t{1} << h.log2_n) *
                               static_cast<std::uint64_t>(h.p);
  if (memory > kMaxMemory) {
    return invalid_argument("the parameters need " + std::to_string(memory >> 20) +
                            " MiB for each login; at most " + std::to_string(kMaxMemory >> 20) + " MiB");
  }
  if (!unbase64(text.substr(d1 + 1, d2 - d1 - 1), h.salt) || h.salt.size() < 8 || h.salt.size() > 64) {
    return invalid_argument("the salt must be 8 to 64 bytes in base64 without padding" + how);
  }
  if (!unbase64(text.substr(d2 + 1), h.key) || h.key.size() < 16 || h.key.size() > 64) {
    return invalid_argument("the key must be 16 to 64 bytes in base64 without padding" + how);
  }
  return h;
}

bool password_matches(std::string_view password, const PasswordHash& hash) {
  std::vector<unsigned char> key;
  if (!derive(password, hash, key)) return false;
  return CRYPTO_memcmp(key.data(), hash.key.data(), key.size()) == 0;
}

PasswordHash decoy_hash(const PasswordHash& like) {
  PasswordHash h = like;
  // Without random bytes, a fixed salt and key do as well: nothing derives to all zeros.
  if (!random_bytes(h.salt, like.salt.size())) h.salt.assign(like.salt.size(), 0);
  if (!random_bytes(h.key, like.key.size())) h.key.assign(like.key.size(), 0);
  return h;
}

}  // namespace detail

inline namespace v1 {

Result<std::string> hash_agent_password(std::string_view password, int log2_n) {
  if (password.empty()) return invalid_argument("hash_agent_password: the password is empty");
  if (log2_n < kMinPasswordCost || log2_n > kMaxPasswordCost) {
    return invalid_argument("hash_agent_password: the cost (log2 of scrypt's N) must be " +
                            std::to_string(kMinPasswordCost) + ".." + std::to_string(kMaxPasswordCost));
  }
  detail::PasswordHash h;
  h.log2_n = log2_n;
  h.r = kR;
  h.p = kP;
  h.key.resize(kKeyBytes);
  if (!random_bytes(h.salt, kSaltBytes)) return internal_error("hash_agent_password: no random bytes for the salt");
  if (!derive(password, h, h.key)) {
    return internal_error("hash_agent_password: scrypt failed (out of memory?)");
  }
  return "$scrypt$ln=" + std::to_string(h.log2_n) + ",r=" + std::to_string(h.r) + ",p=" + std::to_string(h.p) +
         "$" + base64(h.salt) + "$" + base64(h.key);
}

}  // namespace v1
}  // namespace madoguchi::hub
