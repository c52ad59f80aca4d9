// Clients' addresses (private): which one a connection counts as, and the rate of new
// conversations each may start. See docs/hub.md, "Limits".
#pragma once

#include <madoguchi/status.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

namespace madoguchi::hub::detail {

// An IPv4 or IPv6 address in text, in its canonical form; an IPv4-mapped IPv6 address
// ("::ffff:127.0.0.1", as a dual-stack socket shows IPv4 clients) becomes plain IPv4. Empty
// when `text` is not an address.
std::string canonical_address(std::string_view text);

// The client a trusted proxy names: the last entry of an X-Forwarded-For header (the one the
// proxy itself added), with a port or IPv6 brackets taken off ("203.0.113.7:4711",
// "[2001:db8::5]:443"); canonical. Empty when there is none or it is not an address.
std::string forwarded_client(std::string_view header);

// The key a canonical address is limited by: an IPv4 address itself; for IPv6, its /64
// ("2001:db8:1:2::/64"), since one machine or home usually has a whole /64 to pick from.
std::string limit_key(std::string_view address);

// Loopback (127.0.0.0/8, ::1), private (10/8, 172.16/12, 192.168/16, fc00::/7) and link-local
// (169.254/16, fe80::/10) addresses: the machine itself, or the site's own network (a reverse
// proxy, a container network), which the limits on new conversations leave alone.
bool is_local_network(std::string_view address);

// 127.0.0.0/8 and ::1.
bool is_loopback(std::string_view address);

// The address the hub listens on, from HubConfig::host: an IPv4 or IPv6 address of this
// machine ("0.0.0.0" or "::" for every interface), a network interface's name ("eth0"), or
// "localhost" (127.0.0.1). Anything else
// is an error that says what to give: libwebsockets would take a host name or an address
// this machine does not have as an interface that does not exist, and listen nowhere.
Result<std::string> listen_address(std::string_view host);

// A browser origin as browsers send it in the Origin header: "scheme://host[:port]", the
// scheme and host in lower case, without a default port (80 for http, 443 for https) or a
// trailing "/". An allow-list entry is brought to that form ("https://Shop.example.com/"
// is "https://shop.example.com"); one that has no scheme, or a path, is an error that says
// what to write, since it could never match.
Result<std::string> canonical_origin(std::string_view origin);

// A token bucket per key: `per_minute` on average, `burst` at once. Keys whose bucket is full
// again are forgotten when the table grows; past kMaxKeys busy ones, half of them are.
class AddressBuckets {
 public:
  AddressBuckets(double per_minute, double burst) : per_second_(per_minute / 60.0), burst_(burst) {}

  // Takes one token of `key` at `now_s` (seconds, any steady origin). When there is none,
  // returns false and the seconds until there is one.
  bool take(const std::string& key, double now_s, double& retry_after_s);

  // True for the first refusal of `key` since its bucket was last full, so that a flood is
  // logged once.
  bool first_refusal(const std::string& key);

  static constexpr std::size_t kMaxKeys = 100000;

 private:
  struct Bucket {
    double tokens;
    double last_s;
    bool refused = false;
  };

  double per_second_, burst_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace madoguchi::hub::detail
