#include "hub/addresses.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace madoguchi::hub::detail {

std::string canonical_address(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return {};
  const std::string s(text);
  char out[INET6_ADDRSTRLEN] = "";
  unsigned char bytes[16];
  if (inet_pton(AF_INET, s.c_str(), bytes) == 1) return inet_ntop(AF_INET, bytes, out, sizeof out) ? out : "";
  if (inet_pton(AF_INET6, s.c_str(), bytes) == 1) return inet_ntop(AF_INET6, bytes, out, sizeof out) ? out : "";
  return {};
}

bool is_loopback(std::string_view address) {
  unsigned char bytes[16];
  const std::string s(address);
  if (inet_pton(AF_INET, s.c_str(), bytes) == 1) return bytes[0] == 127;
  if (inet_pton(AF_INET6, s.c_str(), bytes) != 1) return false;
  static constexpr unsigned char kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(bytes, kLoopback, 16) == 0 || (std::memcmp(bytes, kMapped, 12) == 0 && bytes[12] == 127);
}

std::string forwarded_client(std::string_view header) {
  const auto comma = header.rfind(',');
  return canonical_address(comma == std::string_view::npos ? header : header.substr(comma + 1));
}

bool AddressBuckets::take(const std::string& address, double now_s, double& retry_after_s) {
  if (buckets_.size() > kPruneAbove) {
    std::erase_if(buckets_, [&](const auto& kv) {
      return kv.second.tokens + (now_s - kv.second.last_s) * per_second_ >= burst_;
    });
  }
  auto [it, fresh] = buckets_.try_emplace(address, Bucket{burst_, now_s});
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

bool AddressBuckets::first_refusal(const std::string& address) {
  auto it = buckets_.find(address);
  if (it == buckets_.end() || it->second.refused) return false;
  it->second.refused = true;
  return true;
}

}  // namespace madoguchi::hub::detail
