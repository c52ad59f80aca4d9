#include "hub/login_limits.hpp"

#include <algorithm>

namespace madoguchi::hub::detail {

using std::chrono::milliseconds;

milliseconds LoginLimits::left(const Records& records, const std::string& key, Clock::time_point now) {
  auto it = records.find(key);
  if (it == records.end() || it->second.until <= now) return milliseconds(0);
  return std::chrono::ceil<milliseconds>(it->second.until - now);
}

bool LoginLimits::count(Records& records, const std::string& key, Rule rule, Clock::time_point now) {
  if (records.size() >= kMaxTracked && !records.contains(key)) {
    std::erase_if(records, [now](const auto& kv) { return now - kv.second.last > kForget; });
    if (records.size() >= kMaxTracked) {  // all recent: the longest quiet goes
      records.erase(std::min_element(records.begin(), records.end(),
                                     [](const auto& a, const auto& b) { return a.second.last < b.second.last; }));
    }
  }
  Record& r = records[key];
  if (r.failures > 0 && now - r.last > kForget) r = Record{};
  ++r.failures;
  r.last = now;
  if (r.failures < rule.free) return false;
  const int doublings = std::min(r.failures - rule.free, 20);
  r.until = now + std::min<milliseconds>(kFirstWait * (std::int64_t{1} << doublings), rule.most);
  return r.failures == rule.free;
}

std::string LoginLimits::pair_key(std::string_view peer, std::string_view name) {
  std::string key(peer);
  key += '\n';  // in neither an address nor a name that got this far
  key += name;
  return key;
}

bool LoginLimits::trusted(std::string_view peer, std::string_view name) const {
  auto it = trusted_.find(std::string(name));
  return it != trusted_.end() && it->second.contains(std::string(peer));
}

milliseconds LoginLimits::wait(std::string_view peer, std::string_view name, Clock::time_point now) const {
  milliseconds w = left(by_pair_, pair_key(peer, name), now);
  if (!trusted(peer, name)) {
    w = std::max({w, left(by_peer_, std::string(peer), now), left(by_name_, std::string(name), now)});
  }
  return w;
}

LoginLimits::Started LoginLimits::failed(std::string_view peer, std::string_view name, Clock::time_point now) {
  Started started;
  started.pair = count(by_pair_, pair_key(peer, name), kPair, now);
  started.address = count(by_peer_, std::string(peer), kAddress, now);
  started.name = count(by_name_, std::string(name), kName, now);
  return started;
}

void LoginLimits::succeeded(std::string_view peer, std::string_view name) {
  // Not the address's count: one account of one's own must not clear the way for guessing
  // the others' names from there.
  by_pair_.erase(pair_key(peer, name));
  by_name_.erase(std::string(name));
  auto& addresses = trusted_[std::string(name)];
  if (addresses.size() >= kMaxTrustedPerName && !addresses.contains(std::string(peer))) addresses.erase(addresses.begin());
  addresses.insert(std::string(peer));
}

}  // namespace madoguchi::hub::detail
