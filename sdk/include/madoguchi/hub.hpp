// madoguchi/hub.hpp: the hub — the server side of live chat (docs/protocol.md).
//
// One process serves visitors (/v1/visitor) and agents (/v1/agent) on one port, plus
// /healthz, /metrics and, optionally, static files (the web widget and agent console). Each
// conversation is a state machine: bot -> waiting (handed off, in the queue) -> agent ->
// closed, and back to the bot. Every message is stored before it is acknowledged.
//
//   auto hub = madoguchi::hub::Hub::create(config, bot, std::move(store));
//   (*hub)->run();   // serves until stop()
//
// Thread-safety: run() serves on the calling thread; stop() and port() may be called from
// any thread (stop() from a signal handler too). Everything else happens on the serving thread.
#pragma once

#include <madoguchi/bot/bot.hpp>
#include <madoguchi/log.hpp>
#include <madoguchi/status.hpp>
#include <madoguchi/store.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace madoguchi::hub {
inline namespace v1 {

// An agent's login. Set one of password and password_hash: the hash (from
// hash_agent_password()) is the form to keep in a config file; a plain password is for
// development, and Hub::create() logs a warning for it.
struct AgentAccount {
  std::string name;
  std::string password;
  std::string password_hash;  // "$scrypt$ln=15,r=8,p=1$<salt>$<key>"
};

struct HubConfig {
  static constexpr std::size_t kMaxAgentNameBytes = 128;  // of an AgentAccount's name
  std::string host = "127.0.0.1";  // address to listen on ("0.0.0.0" or "::" for all, "localhost")
  int port = 8080;                 // 0: any free port (see Hub::port())
  std::string secret;              // HMAC key for visitor tokens; at least 16 bytes
  std::vector<AgentAccount> agents;
  std::vector<std::string> allowed_origins;  // browser Origin allow-list; empty: any
  std::string static_dir;                    // served at "/" when set
  std::string tls_cert;                      // PEM files: wss:// and https:// when both are set
  std::string tls_key;
  std::size_t max_frame_bytes = 64 * 1024;
  double rate_per_second = 20;  // frames a connection may send on average
  double rate_burst = 40;       // ... and in a burst
  std::int64_t token_ttl_ms = 30LL * 24 * 3600 * 1000;
  // New conversations (a visitor's hello without a token) one client address may start, on
  // average per minute and at once; beyond, the hello gets rate_limited. 0 per minute: no
  // limit. IPv6 addresses count by /64. Loopback, private and link-local addresses are not
  // limited: the site's own network (a reverse proxy counts as its clients only when it is
  // in trusted_proxies).
  double new_conversations_per_minute = 30;
  double new_conversations_burst = 30;
  // Addresses of reverse proxies whose X-Forwarded-For header is believed: a connection from
  // one of them counts as coming from the last address that header names (for the limits per
  // address and the logs). Others' X-Forwarded-For is ignored.
  std::vector<std::string> trusted_proxies;
  // The hub keeps the conversations in use in memory (record and the bot's context). One with
  // no visitor connected is dropped after this long unused, or sooner, least recently used
  // first, when more than max_cached_conversations are held; it is read back from the store
  // when used again (the bot's context then comes back from the transcript, without slots).
  std::int64_t conversation_idle_ms = 30LL * 60 * 1000;
  std::size_t max_cached_conversations = 100000;
  // An agent with no connection for this long (after the last one closed, or since the hub
  // started) leaves the conversations it holds: they go back to the queue, and their visitors
  // get agent_left and their place. 0: they wait for the agent whatever the time.
  std::int64_t agent_grace_ms = 2LL * 60 * 1000;
  // Threads on which the bot answers, 1..kMaxBotThreads. The serving thread reads, stores and
  // sends while they think; a conversation's questions all go to one of them, answered in order.
  static constexpr unsigned kMaxBotThreads = 64;
  unsigned bot_threads = 1;
  Logger logger;
};

class Hub {
 public:
  static Result<std::unique_ptr<Hub>> create(HubConfig config, std::shared_ptr<const bot::Bot> bot,
                                             std::unique_ptr<Store> store);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Serves until stop(); then closes every connection (close code 1001) and returns.
  Status run();
  // Asks run() to return; safe from any thread and from a signal handler.
  void stop() noexcept;
  // Answers with `bot` from now on (a knowledge base reloaded while serving): the serving
  // thread takes it up at its next turn, before it handles that turn's messages. Safe from
  // any thread (not from a signal handler). Conversations keep their context; a null `bot`
  // is ignored.
  void set_bot(std::shared_ptr<const bot::Bot> bot);
  // The port the hub listens on (useful with port 0); 0 before it listens.
  int port() const noexcept;

  struct Impl;

 private:
  explicit Hub(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Agent password hashes: scrypt with a random salt, in the PHC string format
// "$scrypt$ln=<cost>,r=8,p=1$<salt>$<key>" (base64 without padding). The cost is log2 of
// scrypt's N: 15 takes 32 MiB and 0.1-0.2 s of one core for each login, which the hub
// checks on a thread of its own (docs/hub.md, "Agent accounts"); 18 takes 256 MiB, the most
// the hub lets a check take.
constexpr int kMinPasswordCost = 10, kMaxPasswordCost = 18, kDefaultPasswordCost = 15;
// Errors: kInvalidArgument (empty password, cost out of range), kInternal (no memory or
// randomness).
Result<std::string> hash_agent_password(std::string_view password, int cost = kDefaultPasswordCost);

// Visitor tokens (docs/protocol.md, Authentication).
std::string make_visitor_token(std::string_view secret, std::string_view conversation, std::int64_t expires_ms);
// The conversation of a valid, unexpired token; kInvalidArgument (forged, malformed) or
// kDeadlineExceeded (expired) otherwise.
Result<std::string> check_visitor_token(std::string_view secret, std::string_view token, std::int64_t now_ms);

}  // namespace v1
}  // namespace madoguchi::hub
