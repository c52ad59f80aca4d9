// Agent password hashes (private): scrypt in the PHC string format, see docs/hub.md.
#pragma once

#include <madoguchi/status.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace madoguchi::hub::detail {

struct PasswordHash {
  int log2_n = 0;
  int r = 0;
  int p = 0;
  std::vector<unsigned char> salt;
  std::vector<unsigned char> key;
};

// Reads "$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<key>" (base64 without padding). The error
// says which part is wrong and how a good hash is made.
Result<PasswordHash> parse_password_hash(std::string_view text);

// Does `password` give `hash`'s key? Takes as long as making the hash, whatever the answer.
bool password_matches(std::string_view password, const PasswordHash& hash);

// A hash with `hash`'s parameters and a random salt and key, which no password matches:
// checking a login of an unknown agent against it takes as long as against a real one.
PasswordHash decoy_hash(const PasswordHash& like);

}  // namespace madoguchi::hub::detail
