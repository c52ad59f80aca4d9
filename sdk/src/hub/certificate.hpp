// The dates of the hub's TLS certificate (private), for the warnings at start and /metrics.
#pragma once

#include <madoguchi/status.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace madoguchi::hub::detail {

struct CertificateDates {
  std::int64_t not_before = 0;  // seconds since 1970-01-01 UTC
  std::int64_t not_after = 0;
};

// The first certificate of a PEM file (the server's own; a chain follows it).
Result<CertificateDates> read_certificate_dates(const std::string& pem_path);

// Checks that `key_path` holds a private key OpenSSL can read without asking for a passphrase
// and that it is the key of the first certificate of `cert_path`: libwebsockets would report
// either only as a port it cannot listen on (and an encrypted key would stop the start at a
// passphrase prompt).
Status check_key_matches(const std::string& cert_path, const std::string& key_path);

// What to warn about when `dates` are checked at `now` (seconds since 1970, UTC): an expired
// certificate, one not valid yet, or one that expires within `soon_days`. Empty when none.
std::string certificate_warning(const std::string& pem_path, const CertificateDates& dates, std::int64_t now,
                                int soon_days = 14);

}  // namespace madoguchi::hub::detail
