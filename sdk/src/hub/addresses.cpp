#include "hub/addresses.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace madoguchi::hub::detail {
namespace {

constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The address's bytes: 4 for IPv4 (an IPv4-mapped IPv6 address too), 16 for IPv6, else 0.
std::size_t parse(std::string_view text, unsigned char (&bytes)[16]) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return 0;
  const std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), bytes) == 1) return 4;
  if (inet_pton(AF_INET6, s.c_str(), bytes) != 1) return 0;
  if (std::memcmp(bytes, kMappedPrefix, 12) == 0) {
    std::memmove(bytes, bytes + 12, 4);
    return 4;
  }
  return 16;
}

}  // namespace

std::string canonical_address(std::string_view text) {
  unsigned char bytes[16];
  char out[INET6_ADDRSTRLEN] = "";
  switch (parse(trimmed(text), bytes)) {
    case 4: return inet_ntop(AF_INET, bytes, out, sizeof out) ? out : "";
    case 16: return inet_ntop(AF_INET6, bytes, out, sizeof out) ? out : "";
    default: return {};
  }
}

std::string forwarded_client(std::string_view header) {
  const auto comma = header.rfind(',');
  std::string_view last = trimmed(comma == std::string_view::npos ? header : header.substr(comma + 1));
  if (!last.empty() && last.front() == '[') {  // "[v6]" or "[v6]:port"
    const auto close = last.find(']');
    if (close == std::string_view::npos) return {};
    return canonical_address(last.substr(1, close - 1));
  }
  // "v4:port" (one colon; an IPv6 address without brackets has several)
  if (const auto colon = last.find(':'); colon != std::string_view::npos && last.find(':', colon + 1) == std::string_view::npos) {
    last = last.substr(0, colon);
  }
  return canonical_address(last);
}

std::string limit_key(std::string_view address) {
  unsigned char bytes[16];
  if (parse(address, bytes) != 16) return std::string(address);
  std::memset(bytes + 8, 0, 8);
  char out[INET6_ADDRSTRLEN] = "";
  if (!inet_ntop(AF_INET6, bytes, out, sizeof out)) return std::string(address);
  return std::string(out) + "/64";
}

bool is_local_network(std::string_view address) {
  unsigned char b[16];
  switch (parse(address, b)) {
    case 4:
      return b[0] == 127 || b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
             (b[0] == 169 && b[1] == 254);
    case 16: {
      static constexpr unsigned char kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
      return std::memcmp(b, kLoopback, 16) == 0 || (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
    }
    default:
      return false;
  }
}

bool is_loopback(std::string_view address) {
  unsigned char b[16];
  static constexpr unsigned char kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  switch (parse(address, b)) {
    case 4: return b[0] == 127;
    case 16: return std::memcmp(b, kLoopback, 16) == 0;
    default: return false;
  }
}

bool AddressBuckets::take(const std::string& key, double now_s, double& retry_after_s) {
  if (buckets_.size() >= kMaxKeys && !buckets_.contains(key)) {
    std::erase_if(buckets_, [&](const auto& kv) {
      return kv.second.tokens + (now_s - kv.second.last_s) * per_second_ >= burst_;
    });
    // All busy (addresses from all over): forget half, which start full again. Memory stays
    // bounded, and the table is scanned once for every kMaxKeys / 2 new keys at most.
    for (auto it = buckets_.begin(); it != buckets_.end() && buckets_.size() > kMaxKeys / 2;) it = buckets_.erase(it);
  }
  auto [it, fresh] = buckets_.try_emplace(key, Bucket{burst_, now_s});
  Bucket& b = it->second;
  if (!fresh) {
    b.tokens = std::min(burst_, b.tokens + (now_s - b.last_s) * per_second_);
    b.last_s = now_s;
    if (b.tokens >= burst_) b.refused = false;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  retry_after_s = (1.0 - b.tokens) / per_second_;
  return false;
}

bool AddressBuckets::first_refusal(const std::string& key) {
  auto it = buckets_.find(key);
  if (it == buckets_.end() || it->second.refused) return false;
  it->second.refused = true;
  return true;
}

Result<std::string> listen_address(std::string_view host) {
  const std::string given(host);
  if (host == "localhost") return std::string("127.0.0.1");
  const std::string hint = " (give 127.0.0.1 for this machine only, 0.0.0.0 or :: for every interface, or one of "
                           "this machine's addresses; the port goes in port)";
  if (host.empty()) return invalid_argument("hub: host is empty" + hint);
  sockaddr_storage addr{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, given.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, given.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    len = sizeof *v6;
  } else if (if_nametoindex(given.c_str()) != 0) {
    return given;  // a network interface of this machine ("lo", "eth0"), as libwebsockets takes it
  } else {
    return invalid_argument("hub: host \"" + given + "\" is not an IP address or a network interface of this machine" + hint);
  }
  // An address this machine does not have cannot be bound: found out now, not by a hub
  // that says it listens and does not.
  const int fd = ::socket(addr.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return given;  // no socket to try with: libwebsockets will tell
  const int bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
  const int err = errno;
  ::close(fd);
  if (bound != 0 && err == EADDRNOTAVAIL) {
    return unavailable("hub: host " + given + " is not an address of this machine" + hint);
  }
  return given;
}

Result<std::string> canonical_origin(std::string_view origin) {
  const std::string given(origin);
  auto refuse = [&](const std::string& why) -> Result<std::string> {
    return invalid_argument("hub: origin \"" + given + "\" " + why +
                            " (write it as browsers send it: https://shop.example.com, with a port only if not the "
                            "default one, and no path)");
  };
  const std::size_t colon = origin.find("://");
  if (colon == std::string_view::npos || colon == 0) return refuse("has no scheme");
  std::string out;
  for (char c : origin) out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  if (!out.empty() && out.back() == '/') out.pop_back();
  const std::size_t host = colon + 3;
  if (host >= out.size()) return refuse("has no host");
  if (out.find_first_of("/?#", host) != std::string::npos) return refuse("has a path");
  const std::string scheme = out.substr(0, colon);
  for (const auto& [name, port] : {std::pair{"https", ":443"}, std::pair{"http", ":80"}}) {
    if (scheme == name && out.size() > std::strlen(port) && out.compare(out.size() - std::strlen(port), std::string::npos, port) == 0) {
      out.resize(out.size() - std::strlen(port));
    }
  }
  return out;
}

}  // namespace madoguchi::hub::detail
