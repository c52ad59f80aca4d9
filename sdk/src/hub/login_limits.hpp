// Failed agent logins (private): how long an address, or an agent's name, waits before its
// next try. See docs/hub.md, "Agent accounts".
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace madoguchi::hub::detail {

// Failures in a row are counted three ways: for one name from one address (someone guessing
// one agent's password), for an address (someone trying many names) and for a name (guesses
// spread over many addresses). Past a number of free failures, each further failure doubles
// the wait before the next try, up to a most. An address that has logged in as an agent is
// held back only by the count for that name from that address: a stream of wrong guesses
// from elsewhere does not keep that agent out (guesses from the same address, others behind
// the same NAT or an untrusted proxy included, do). A success clears the counts of its name
// (from that address, and over all addresses), not the address's own; kForget without a
// failure clears any. Only the serving thread uses it.
class LoginLimits {
 public:
  using Clock = std::chrono::steady_clock;

  struct Rule {
    int free;                       // failures in a row before the first wait
    std::chrono::milliseconds most;  // the longest wait
  };
  static constexpr Rule kPair{5, std::chrono::minutes(5)};
  static constexpr Rule kAddress{30, std::chrono::minutes(5)};
  static constexpr Rule kName{20, std::chrono::minutes(1)};
  static constexpr std::chrono::milliseconds kFirstWait{1000};
  static constexpr std::chrono::minutes kForget{15};
  // Keys tracked at most, of each kind; past that the longest quiet are dropped.
  static constexpr std::size_t kMaxTracked = 10000;
  // Addresses remembered per agent for having logged in.
  static constexpr std::size_t kMaxTrustedPerName = 32;

  // How long `peer` must wait before it may try `name` (zero: now).
  std::chrono::milliseconds wait(std::string_view peer, std::string_view name, Clock::time_point now) const;

  // Which waits a failure started, to log each once.
  struct Started {
    bool pair = false;
    bool address = false;
    bool name = false;
  };

  // A wrong password, or a name no agent has.
  Started failed(std::string_view peer, std::string_view name, Clock::time_point now);

  void succeeded(std::string_view peer, std::string_view name);

 private:
  struct Record {
    int failures = 0;
    Clock::time_point last{};   // of the last failure
    Clock::time_point until{};  // no try before this
  };
  using Records = std::unordered_map<std::string, Record>;

  static std::chrono::milliseconds left(const Records& records, const std::string& key, Clock::time_point now);
  // Counts a failure; true when it is the one that starts the waits.
  static bool count(Records& records, const std::string& key, Rule rule, Clock::time_point now);
  static std::string pair_key(std::string_view peer, std::string_view name);
  bool trusted(std::string_view peer, std::string_view name) const;

  Records by_pair_, by_peer_, by_name_;
  std::unordered_map<std::string, std::unordered_set<std::string>> trusted_;  // name → addresses
};

}  // namespace madoguchi::hub::detail
