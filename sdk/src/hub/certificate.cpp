#include "hub/certificate.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <ctime>
#include <memory>

namespace madoguchi::hub::detail {
namespace {

struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const noexcept { X509_free(x); }
};

struct KeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};

// Never asks for a passphrase: an encrypted key is refused instead of a prompt at start.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

struct Asn1TimeFree {
  void operator()(ASN1_TIME* t) const noexcept { ASN1_TIME_free(t); }
};

// Seconds since 1970-01-01 UTC, counted by OpenSSL (no time zone or timegm() involved).
bool to_seconds(const ASN1_TIME* t, std::int64_t& out) {
  std::unique_ptr<ASN1_TIME, Asn1TimeFree> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0, seconds = 0;
  if (t == nullptr || !epoch || ASN1_TIME_diff(&days, &seconds, epoch.get(), t) != 1) return false;
  out = static_cast<std::int64_t>(days) * 86400 + seconds;
  return true;
}

std::string utc_date(std::int64_t seconds) {
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
#if defined(_WIN32)
  gmtime_s(&tm, &t);
#else
  gmtime_r(&t, &tm);
#endif
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

// The first certificate of a PEM file.
Result<std::unique_ptr<X509, X509Free>> read_first_certificate(const std::string& pem_path) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_file(pem_path.c_str(), "r"));
  if (!bio) return unavailable("TLS certificate " + pem_path + ": cannot be read");
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return invalid_argument("TLS certificate " + pem_path + ": no PEM certificate in it");
  return cert;
}

}  // namespace

Result<CertificateDates> read_certificate_dates(const std::string& pem_path) {
  MDG_ASSIGN_OR_RETURN(auto cert, read_first_certificate(pem_path));
  CertificateDates d;
  if (!to_seconds(X509_get0_notBefore(cert.get()), d.not_before) ||
      !to_seconds(X509_get0_notAfter(cert.get()), d.not_after)) {
    return invalid_argument("TLS certificate " + pem_path + ": its validity dates cannot be read");
  }
  return d;
}

Status check_key_matches(const std::string& cert_path, const std::string& key_path) {
  MDG_ASSIGN_OR_RETURN(auto cert, read_first_certificate(cert_path));
  std::unique_ptr<BIO, BioFree> key_bio(BIO_new_file(key_path.c_str(), "r"));
  if (!key_bio) return unavailable("TLS key " + key_path + ": cannot be read (does the hub's user have read access?)");
  bool asked = false;
  std::unique_ptr<EVP_PKEY, KeyFree> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, &asked));
  ERR_clear_error();
  if (!key && asked) {
    return invalid_argument("TLS key " + key_path +
                            ": encrypted with a passphrase, which the hub cannot ask for; give it the key without one "
                            "(openssl pkey -in KEY -out KEY.plain), readable by the hub's user only");
  }
  if (!key) return invalid_argument("TLS key " + key_path + ": no PEM private key in it");
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return invalid_argument("TLS key " + key_path + ": not the key of the certificate " + cert_path +
                            " (give the pair that was issued together)");
  }
  return Status::ok();
}

std::string certificate_warning(const std::string& pem_path, const CertificateDates& dates, std::int64_t now,
                                int soon_days) {
  const std::string what = "TLS certificate " + pem_path;
  if (now >= dates.not_after) {
    return what + " expired on " + utc_date(dates.not_after) +
           ": browsers and clients refuse wss:// and https:// to this hub; renew it and restart the hub";
  }
  if (now < dates.not_before) {
    return what + " is not valid before " + utc_date(dates.not_before) +
           ": clients refuse it until then (is this machine's clock right?)";
  }
  const std::int64_t left = dates.not_after - now;
  if (left < static_cast<std::int64_t>(soon_days) * 86400) {
    const std::int64_t days = left / 86400;
    return what + " expires on " + utc_date(dates.not_after) + ", in " +
           (days == 0 ? std::string("less than a day") : std::to_string(days) + (days == 1 ? " day" : " days")) +
           "; renew it and restart the hub";
  }
  return {};
}

}  // namespace madoguchi::hub::detail
