// Clients' addresses (private): which one a connection counts as, and the rate of new
// conversations each may start. See docs/hub.md, "Limits".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

namespace madoguchi::hub::detail {

// An IPv4 or IPv6 address in text, in its canonical form ("::ffff:127.0.0.1" stays IPv6);
// empty when `text` is not one.
std::string canonical_address(std::string_view text);

// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool is_loopback(std::string_view address);

// The client a trusted proxy names: the last address of an X-Forwarded-For header (the one
// the proxy itself added), canonical; empty when there is none or it is not an address.
std::string forwarded_client(std::string_view header);

// A token bucket per address: `per_minute` on average, `burst` at once. Addresses whose
// bucket is full again are forgotten when the table grows, so it holds only the busy ones.
class AddressBuckets {
 public:
  AddressBuckets(double per_minute, double burst) : per_second_(per_minute / 60.0), burst_(burst) {}

  // Takes one token of `address` at `now_s` (seconds, any steady origin). When there is none,
  // returns false and the seconds until there is one.
  bool take(const std::string& address, double now_s, double& retry_after_s);

  // Whether `address` was refused since its bucket was last full; the first refusal of such a
  // run returns true once, so that a flood is logged once.
  bool first_refusal(const std::string& address);

 private:
  struct Bucket {
    double tokens;
    double last_s;
    bool refused = false;
  };
  static constexpr std::size_t kPruneAbove = 100000;

  double per_second_, burst_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace madoguchi::hub::detail
