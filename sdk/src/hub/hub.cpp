// The hub: libwebsockets server, conversation state machine, bot in the loop, store first.
//
// Everything below runs on the serving thread (lws is single-threaded): sessions,
// conversations and the store are touched only from that thread, except for the bot's memory
// of a conversation, which a bot thread uses while it answers (see BotThreads). stop() only
// sets a flag and wakes the loop with lws_cancel_service(), which is safe from any thread.
//
// The event loop is libev's (epoll on Linux), run by the hub as a "foreign" loop for lws, when
// libwebsockets' libev plugin is installed; otherwise lws's own poll() loop, whose every turn
// costs time in proportion to the number of connections. (Not libuv: with lws 4.1's libuv
// plugin a connection closed with lws_close_reason() loses its close frame, and clients see
// 1006 instead of the protocol's close codes.)
//
// Group commit: lws callbacks only queue the frames they receive. After each turn of the
// event loop (one service() call, which handles every socket that was ready), drain()
// handles all queued frames inside one store batch and ends it with one commit. Replies are
// only queued on their sessions meanwhile; lws writes them in the next turn, so nothing
// (acknowledgement, bot answer, forwarded message) leaves the hub before it is durable. A
// visitor's message is stored and acknowledged in its turn; the bot answers it on a bot
// thread meanwhile, and the answer is stored in the batch of a later turn. If the
// commit fails, the frames queued in that turn are taken back and their sessions closed with
// an internal error: the clients reconnect and resend, as after any connection loss.
#include <madoguchi/hub.hpp>
#include <madoguchi/protocol.hpp>

#include <madoguchi/detail/json_writer.hpp>

#include "hub/addresses.hpp"
#include "hub/certificate.hpp"
#include "hub/login_limits.hpp"
#include "hub/password.hpp"
#include "hub/static_root.hpp"

#include <libwebsockets.h>
#include <simdjson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <arpa/inet.h>
#include <ev.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace madoguchi::hub {
inline namespace v1 {
namespace {

using protocol::ErrorKind;
using protocol::Frame;
using protocol::FrameType;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Decodes a frame the hub encoded itself (a stored message, a frame on its way to agents).
// Such a frame is larger than the client's was: the hub adds seq, from and at, and fills in
// attachments' fields. The limits on what clients send would refuse a message that came in
// just under them, and it would be missing from every replay and transcript.
std::variant<Frame, protocol::DecodeError> decode_own(std::string_view json) {
  static const protocol::DecodeLimits kNoLimits{SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX};
  return protocol::decode(json, kNoLimits);
}

// What the inbox holds for a binary frame (its bytes are not kept). No text frame can be
// this: it is not valid UTF-8.
constexpr std::string_view kBinaryFrame = "\xff binary";

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A connection being closed is closed once its peer has sent nothing for kCloseQuietS, or
// kCloseLingerS after the close began whatever the peer does (see Impl::close()); checked
// every kCloseCheckUs.
constexpr double kCloseQuietS = 0.2, kCloseLingerS = 2.0;
constexpr lws_usec_t kCloseCheckUs = 50 * LWS_US_PER_MS;

// A turn that leaves at most kLingerQuestions questions out to the bot waits up to kLinger
// for their answers, which then share the turn's commit (see drain()).
constexpr std::size_t kLingerQuestions = 16;
constexpr std::chrono::microseconds kLinger{1000};

// The 32 characters of the hub's ids: digits and lower-case letters without i, l, o and u.
constexpr char kIdAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

// Random identifier characters from OpenSSL's CSPRNG.
std::string random_id(std::string_view prefix, std::size_t n) {
  std::vector<unsigned char> bytes(n);
  if (RAND_bytes(bytes.data(), static_cast<int>(n)) != 1) {
    // The CSPRNG failed: fall back to the clock, still unique within this process.
    static std::atomic<std::uint64_t> counter{0};
    std::uint64_t v = static_cast<std::uint64_t>(now_ms()) * 1000003u + counter++;
    for (auto& b : bytes) {
      b = static_cast<unsigned char>(v);
      v = v * 6364136223846793005u + 1442695040888963407u;
    }
  }
  std::string id(prefix);
  for (unsigned char b : bytes) id += kIdAlphabet[b & 31];
  return id;
}

// The ids of the bot's messages ("b-" + 20 characters of kIdAlphabet) come from a
// generator seeded once from the CSPRNG: they must be unique, not secret (a visitor's token
// grants access, not an id), and a CSPRNG call per message cost a system call each (OpenSSL
// checks the process id to notice a fork).
class MessageIds {
 public:
  MessageIds() {
    std::array<std::uint32_t, 8> seed{};
    if (RAND_bytes(reinterpret_cast<unsigned char*>(seed.data()), static_cast<int>(sizeof seed)) != 1) {
      std::random_device rd;
      for (auto& v : seed) v = rd();
    }
    std::seed_seq seq(seed.begin(), seed.end());
    rng_.seed(seq);
  }
  std::string next() {
    std::string id = "b-";
    for (std::uint64_t bits : {rng_(), rng_()}) {
      for (int i = 0; i < 10; ++i, bits >>= 5) id += kIdAlphabet[bits & 31];
    }
    return id;
  }

 private:
  std::mt19937_64 rng_;
};

// Frames waiting for the WRITEABLE callback, oldest first: a vector and a read position.
// std::deque allocates about 600 bytes as soon as it is constructed; an idle connection's
// queue holds no memory at all.
class FrameQueue {
 public:
  bool empty() const noexcept { return head_ == frames_.size(); }
  std::size_t size() const noexcept { return frames_.size() - head_; }
  std::size_t bytes() const noexcept { return bytes_; }  // of the frames waiting
  std::string& front() { return frames_[head_]; }
  void push_back(std::string frame) {
    bytes_ += frame.size();
    frames_.push_back(std::move(frame));
  }
  void pop_front() {
    bytes_ -= frames_[head_].size();
    std::string().swap(frames_[head_]);
    if (++head_ < frames_.size()) return;
    head_ = 0;
    if (frames_.capacity() > 8) {
      std::vector<std::string>().swap(frames_);  // after a burst (a replay), give the memory back
    } else {
      frames_.clear();
    }
  }
  // Keeps the first n frames waiting and drops the rest.
  void truncate(std::size_t n) {
    for (std::size_t i = head_ + std::min(n, size()); i < frames_.size(); ++i) bytes_ -= frames_[i].size();
    frames_.resize(head_ + std::min(n, size()));
  }

 private:
  std::vector<std::string> frames_;
  std::size_t head_ = 0;
  std::size_t bytes_ = 0;
};

struct Session {
  lws* wsi = nullptr;
  bool agent_endpoint = false;
  bool authenticated = false;
  std::string conversation;  // visitor: its conversation
  std::string agent;         // agent: its name
  std::string peer;          // the client's address (for logs)
  std::string peer_key;      // what limits per address count it as (detail::limit_key)
  std::string acting_on;     // the conversation of the agent's action being handled (errors name it)
  std::uint64_t login = 0;   // agent: its hello's credentials are being checked (LoginChecks)
  std::string login_name;    // ... for this name
  FrameQueue out;
  // A resumed visitor's replay goes out a page at a time, the next when the socket has taken
  // the last (so a connection that does not read holds one page, not the whole transcript).
  // Meanwhile whatever else it is sent waits in `held`, to follow the replay in seq order.
  bool replaying = false;
  std::int64_t replay_after = 0;  // the last seq replayed
  std::int64_t replay_until = 0;  // the conversation's last seq at the hello: later ones are held
  FrameQueue held;
  std::string rx;
  std::size_t rx_bytes = 0;        // bytes of the frame being received (rx: a text frame's)
  std::vector<std::string> inbox;  // whole frames received, not yet handled
  std::size_t inbox_bytes = 0;
  bool ready = false;              // listed in Hub::Impl::ready
  bool touched = false;            // sent to in the open batch: out[out_mark...] is its part
  std::size_t out_mark = 0;
  double tokens = 0;
  double last_refill = 0;
  int violations = 0;
  bool closing = false;
  bool quiet = false;        // closing, and the peer has sent nothing for kCloseQuietS
  double closing_since = 0;  // steady_seconds() when closing began
  double last_heard = 0;     // steady_seconds() of the peer's last frame since closing began, else of the close
  int close_code = 0;
};

struct Conversation : std::enable_shared_from_this<Conversation> {
  ConversationRecord record;
  // The bot's memory of the conversation. A bot thread holds bot_mu while it answers; the
  // serving thread takes it to change `bot` once the conversation may have questions out.
  std::mutex bot_mu;
  bot::Conversation bot;
  double last_used = 0;  // steady_seconds()
  // Raised by the serving thread whenever the state changes (an agent takes the conversation,
  // the bot hands it off, it closes...): an answer to a question asked before is dropped, and
  // a bot thread skips such a question instead of answering it into `bot`.
  std::atomic<std::uint64_t> bot_epoch{0};
  // A conversation has one question with the bot threads at a time (serving thread): the
  // ones the visitor sends meanwhile wait here, so that an answer that hands the conversation
  // off is taken up before the bot reads the next question, which then goes to the person.
  struct Question {
    std::uint64_t epoch = 0;  // bot_epoch when the visitor asked
    std::string text;
    std::string frame_id;
  };
  std::vector<Question> questions;  // rarely more than one; a vector holds no memory when empty
  bool asking = false;               // one of its questions is with the bot threads
  int told_position = 0;             // waiting: the queue_position its visitors were told last

  // Questions out to the bot or waiting for it: the conversation must stay in memory.
  bool asked() const noexcept { return asking || !questions.empty(); }
};

// Results a worker thread finished and the serving thread has not taken yet (BotThreads'
// answers, LoginChecks' checks). Added under the owner's mutex; the serving thread asks at
// every turn of its loop, which costs one atomic load while there are none.
template <typename T>
class Finished {
 public:
  // Under the owner's mutex.
  void push(T item) {
    items_.push_back(std::move(item));
    any_.store(true, std::memory_order_release);
  }
  std::size_t size() const noexcept { return items_.size(); }  // under the owner's mutex

  // Those finished since the last call, in the order they were pushed.
  std::vector<T> take(std::mutex& owner_mu) {
    std::vector<T> out;
    if (!any_.load(std::memory_order_acquire)) return out;
    std::lock_guard lock(owner_mu);
    out.swap(items_);
    any_.store(false, std::memory_order_relaxed);
    return out;
  }

 private:
  std::vector<T> items_;
  std::atomic<bool> any_{false};
};

// The bot answers on threads of its own, so that the serving thread goes on reading, storing
// and sending while it thinks (docs/hub.md, "Threads"). A conversation always goes to the
// same thread, whose questions are answered one after another: a conversation's answers come
// in the order of its questions. Finished answers wait in a list that the serving thread
// takes; `wake` (lws_cancel_service) tells it there is something to take, unless it is
// waiting for them in wait_done().
class BotThreads {
 public:
  struct Job {
    std::shared_ptr<Conversation> conversation;
    std::uint64_t epoch = 0;  // the conversation's bot_epoch when asked
    std::shared_ptr<const bot::Bot> bot;
    std::string text;
    std::string frame_id;  // the visitor's message, for an error frame
  };
  struct Done {
    std::shared_ptr<Conversation> conversation;
    std::uint64_t epoch = 0;
    Result<bot::Reply> reply;
    std::string frame_id;
    std::string text;                      // the question
    bot::Conversation::Checkpoint before;  // the bot's memory before it answered
  };

  // `threads` >= 1. Throws std::system_error when a thread cannot be started (after
  // stopping those that were).
  BotThreads(unsigned threads, std::function<void()> wake) : wake_(std::move(wake)) {
    for (unsigned i = 0; i < threads; ++i) lanes_.push_back(std::make_unique<Lane>());
    try {
      for (auto& lane : lanes_) lane->thread = std::thread([this, l = lane.get()]() { serve(*l); });
    } catch (...) {
      stop();
      throw;
    }
  }
  BotThreads(const BotThreads&) = delete;
  BotThreads& operator=(const BotThreads&) = delete;
  // Answers the questions already given, then stops.
  ~BotThreads() { stop(); }

  // `lane_key`: the conversation's id (the lane is chosen by it).
  void submit(std::string_view lane_key, Job job) {
    Lane& lane = *lanes_[std::hash<std::string_view>{}(lane_key) % lanes_.size()];
    {
      std::lock_guard lock(lane.mu);
      lane.jobs.push_back(std::move(job));
    }
    lane.wake.notify_one();
  }

  // Waits until `n` answers are finished and not taken yet, or for `timeout`.
  void wait_done(std::size_t n, std::chrono::microseconds timeout) {
    std::unique_lock lock(done_mu_);
    waiting_ = true;
    done_cv_.wait_for(lock, timeout, [&]() { return done_.size() >= n; });
    waiting_ = false;
  }

  // The answers finished since the last call, in the order each lane finished them.
  std::vector<Done> take_done() { return done_.take(done_mu_); }

 private:
  struct Lane {
    std::mutex mu;
    std::condition_variable wake;
    std::deque<Job> jobs;  // under mu
    bool stop = false;     // under mu
    std::thread thread;
  };

  void stop() {
    for (auto& lane : lanes_) {
      {
        std::lock_guard lock(lane->mu);
        lane->stop = true;
      }
      lane->wake.notify_one();
    }
    for (auto& lane : lanes_) {
      if (lane->thread.joinable()) lane->thread.join();
    }
  }

  void serve(Lane& lane) {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(lane.mu);
        lane.wake.wait(lock, [&]() { return lane.stop || !lane.jobs.empty(); });
        if (lane.jobs.empty()) return;  // stopping, and every question answered
        job = std::move(lane.jobs.front());
        lane.jobs.pop_front();
      }
      // Skipped when the conversation changed since: answered() drops it for its epoch.
      Result<bot::Reply> reply = internal_error("not answered: the conversation changed first");
      bot::Conversation::Checkpoint before;
      if (job.conversation->bot_epoch.load(std::memory_order_acquire) == job.epoch) {
        try {
          std::lock_guard lock(job.conversation->bot_mu);
          before = job.conversation->bot.checkpoint();
          reply = job.bot->respond(job.conversation->bot, job.text);
        } catch (const std::exception& e) {
          reply = internal_error(std::string("the bot failed: ") + e.what());
        }
      }
      bool wake_loop = false, waiting = false;
      {
        std::lock_guard lock(done_mu_);
        waiting = waiting_;
        wake_loop = done_.size() == 0 && !waiting;
        done_.push({std::move(job.conversation), job.epoch, std::move(reply), std::move(job.frame_id),
                    std::move(job.text), std::move(before)});
      }
      if (waiting) done_cv_.notify_one();
      if (wake_loop) wake_();
    }
  }

  std::function<void()> wake_;
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  Finished<Done> done_;   // under done_mu_
  bool waiting_ = false;  // under done_mu_: the serving thread is in wait_done()
  std::vector<std::unique_ptr<Lane>> lanes_;  // last: their threads use the rest
};

// Process-wide: lws logs through one emit function.
std::mutex g_log_mu;
Logger g_lws_logger;

// At most kLwsLinesPerSecond lines a second reach the logger: out of file descriptors, lws
// retries accept() in a tight loop and logs each failure (some 170,000 lines a second).
constexpr int kLwsLinesPerSecond = 20;
double g_lws_window = 0;   // steady seconds: the start of the current second
int g_lws_lines = 0;       // lines emitted in it
long g_lws_dropped = 0;    // lines dropped since the last one emitted

void lws_log_emit(int level, const char* line) {
  std::lock_guard lock(g_log_mu);
  const double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (now - g_lws_window >= 1.0) {
    g_lws_window = now;
    g_lws_lines = 0;
  }
  if (++g_lws_lines > kLwsLinesPerSecond) {
    ++g_lws_dropped;
    return;
  }
  LogLevel l = level == LLL_ERR ? LogLevel::kError : level == LLL_WARN ? LogLevel::kWarning : LogLevel::kDebug;
  std::string_view s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
  std::string text = "lws: " + std::string(s);
  if (g_lws_dropped > 0) {
    text += " (" + std::to_string(g_lws_dropped) + " more lws line(s) dropped before this one: over " +
            std::to_string(kLwsLinesPerSecond) + " a second)";
    g_lws_dropped = 0;
  }
  g_lws_logger.log(l, text);
}

int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);

// rx_buffer_size: libwebsockets gives every connection a receive buffer of this size for its
// whole life. Most chat frames are well under 1 KiB; a longer one arrives in pieces, which
// the RECEIVE callback joins (up to max_frame_bytes). tx_packet_size: the most one send()
// writes; without it the rx size would also cut every outgoing frame over 1 KiB into pieces
// that lws buffers and sends on later writable events.
constexpr std::size_t kRxBufferBytes = 1024;
// Seconds a new connection has to be accepted by a hello (a visitor's, or an agent's whose
// password check may be turned away with rate_limited and tried again).
constexpr int kHelloTimeoutS = 30;
constexpr std::size_t kTxPacketBytes = 256 * 1024;

const lws_protocols kProtocols[] = {
    {"madoguchi.v1", callback, 0, kRxBufferBytes, 0, nullptr, kTxPacketBytes},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

// The messages and events a `conversation` frame carries to an agent at most: the last ones,
// within a size the clients take (madoguchi::AgentClient: frames up to 4 MiB).
constexpr std::size_t kTranscriptMessages = 10000, kTranscriptBytes = 2u << 20;
// ... and the hand-off package and those messages together at most this.
constexpr std::size_t kConversationFrameBytes = 3u << 20;
// Frames of a resumed visitor's replay read and queued at a time (at most 64 KiB each).
constexpr std::size_t kReplayPage = 32;
// The most a connection may have waiting to be sent before it is closed (it does not read).
constexpr std::size_t kMaxQueuedBytes = 16u << 20;
// With more than this waiting to be sent, the connection's next frames wait in its inbox
// until the socket has taken it: an agent's client that takes again a dozen long
// conversations at once (a `conversation` frame holds up to ~2.3 MiB) gets them one after
// another, instead of all at once past kMaxQueuedBytes and a close.
constexpr std::size_t kPauseQueuedBytes = kMaxQueuedBytes / 4;
constexpr int kCloseTryAgainLater = 1013;  // RFC 6455, as registered by IANA

// Places in the queue are counted up to here (queue_position; further back, none is told).
constexpr std::size_t kQueuePositions = 10000;

// Types of static files beyond those libwebsockets knows (html, css, js, images, fonts, json):
// without them a module script, a WebAssembly file or a source map is answered 415.
// (A list: each names the next.)
constexpr lws_protocol_vhost_options kTypeJson{nullptr, nullptr, ".json", "application/json"};
constexpr lws_protocol_vhost_options kTypeManifest{&kTypeJson, nullptr, ".webmanifest", "application/manifest+json"};
constexpr lws_protocol_vhost_options kTypeAvif{&kTypeManifest, nullptr, ".avif", "image/avif"};
constexpr lws_protocol_vhost_options kTypeWebp{&kTypeAvif, nullptr, ".webp", "image/webp"};
constexpr lws_protocol_vhost_options kTypeMap{&kTypeWebp, nullptr, ".map", "application/json"};
constexpr lws_protocol_vhost_options kTypeWasm{&kTypeMap, nullptr, ".wasm", "application/wasm"};
constexpr lws_protocol_vhost_options kStaticTypes{&kTypeWasm, nullptr, ".mjs", "text/javascript"};

// A queue frame lists this many waiting conversations at most, and as many with an agent.
constexpr std::size_t kQueueEntries = 500;

// Password checks one address may have waiting or running, of LoginChecks::kMaxWaiting (8).
constexpr int kLoginChecksPerPeer = 4;
// retry_after_ms of a hello turned away because LoginChecks has kMaxWaiting checks waiting.
constexpr std::int64_t kLoginRetryMs = 1000;

// Agents' passwords kept as scrypt hashes take a tenth of a second or so each to check, which the
// serving thread must not spend: a thread of its own checks them, one after another, and the
// serving thread takes the answers up like the bot's (`wake`, then take_done()). Only so many
// checks wait at once; a hello beyond them is answered rate_limited, so that a stream of
// wrong passwords costs the other agents no more than a wait.
class LoginChecks {
 public:
  static constexpr std::size_t kMaxWaiting = 8;

  struct Done {
    std::uint64_t login;
    bool ok;
  };

  explicit LoginChecks(std::function<void()> wake) : wake_(std::move(wake)) {
    thread_ = std::thread([this]() { serve(); });
  }
  LoginChecks(const LoginChecks&) = delete;
  LoginChecks& operator=(const LoginChecks&) = delete;
  ~LoginChecks() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
    for (auto& job : jobs_) OPENSSL_cleanse(job.password.data(), job.password.size());
  }

  // False when kMaxWaiting checks are waiting already. `hash` must outlive the check. With
  // `answer`, the check of `hash` only takes its time and `answer` is the result: a plain
  // password, compared already, answered as late as a hashed one.
  bool submit(std::uint64_t login, std::string password, const detail::PasswordHash* hash,
              std::optional<bool> answer = std::nullopt) {
    {
      std::lock_guard lock(mu_);
      if (jobs_.size() + busy_ >= kMaxWaiting) {
        OPENSSL_cleanse(password.data(), password.size());
        return false;
      }
      jobs_.push_back({login, std::move(password), hash, answer});
    }
    cv_.notify_one();
    return true;
  }

  std::vector<Done> take_done() { return done_.take(mu_); }

 private:
  struct Job {
    std::uint64_t login;
    std::string password;
    const detail::PasswordHash* hash;
    std::optional<bool> answer;
  };

  void serve() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&]() { return stop_ || !jobs_.empty(); });
        if (stop_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        busy_ = 1;
      }
      const bool matches = detail::password_matches(job.password, *job.hash);
      const bool ok = job.answer.value_or(matches);
      OPENSSL_cleanse(job.password.data(), job.password.size());
      {
        std::lock_guard lock(mu_);
        busy_ = 0;
        done_.push({job.login, ok});
      }
      wake_();
    }
  }

  std::function<void()> wake_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;      // under mu_
  std::size_t busy_ = 0;      // under mu_: a check under way
  Finished<Done> done_;       // under mu_
  bool stop_ = false;         // under mu_
  std::thread thread_;        // last: started once the rest is ready
};

// A name from the network, fit for a log line: printable ASCII, at most 64 characters.
std::string loggable(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, 64)) out += c >= 0x20 && c < 0x7f ? c : '?';
  if (name.size() > 64) out += "...";
  return out;
}

// Equal strings, in a time that does not depend on where they differ.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char da[EVP_MAX_MD_SIZE], db[EVP_MAX_MD_SIZE];
  unsigned int la = 0, lb = 0;
  if (EVP_Digest(a.data(), a.size(), da, &la, EVP_sha256(), nullptr) != 1 ||
      EVP_Digest(b.data(), b.size(), db, &lb, EVP_sha256(), nullptr) != 1) {
    return false;
  }
  return la == lb && CRYPTO_memcmp(da, db, la) == 0;
}

}  // namespace

struct Hub::Impl {
  HubConfig cfg;
  std::shared_ptr<const bot::Bot> bot;
  std::unique_ptr<Store> store;
  lws_context* ctx = nullptr;
  lws_vhost* vhost = nullptr;
  struct EvLoopDeleter {
    void operator()(struct ev_loop* loop) const noexcept { ev_loop_destroy(loop); }
  };
  std::unique_ptr<struct ev_loop, EvLoopDeleter> loop;  // set: lws runs on it; else on its own poll()
  std::atomic<bool> stop_requested{false};
  std::atomic<int> bound_port{0};
  std::mutex next_bot_mu;
  std::shared_ptr<const bot::Bot> next_bot;  // set_bot(): taken up by the serving thread
  std::uint64_t bot_replacements = 0;
  std::vector<lws_http_mount> mounts;
  std::optional<detail::StaticRoot> static_root;  // with static_dir
  std::unordered_set<std::string> trusted_proxies;  // canonical addresses
  std::optional<detail::AddressBuckets> new_conversations;  // with a limit
  std::optional<detail::CertificateDates> tls_dates;  // with tls_cert

  std::unordered_map<lws*, std::unique_ptr<Session>> sessions;
  std::unordered_set<lws*> closing;  // sessions waiting for their peer to go quiet
  struct CloseCheck {
    lws_sorted_usec_list_t sul;  // scheduled while `closing` is not empty
    Impl* impl;
  } close_check{{}, this};
  std::unordered_map<std::string, std::vector<Session*>> visitors_of;  // conversation -> sessions
  std::unordered_map<std::string, std::vector<Session*>> agents_by_name;
  // Shared with the bot threads while they answer in them.
  std::unordered_map<std::string, std::shared_ptr<Conversation>> conversations;
  std::unique_ptr<BotThreads> bot_threads;  // see BotThreads
  // Agent logins: the parsed hash of each account of cfg.agents (none for a plain password),
  // a decoy that unknown names are checked against, and the checks under way.
  std::vector<std::optional<detail::PasswordHash>> agent_hashes;
  std::optional<detail::PasswordHash> decoy_hash;
  std::unique_ptr<LoginChecks> login_checks;  // when an account has a hash
  std::unordered_map<std::uint64_t, Session*> logging_in;
  // Password checks waiting or running, by the address that asked (and each check's
  // address): one address may hold at most kLoginChecksPerPeer of LoginChecks' places, so a
  // flood of wrong passwords from one place cannot keep every agent out.
  std::unordered_map<std::string, int> checks_by_peer;  // by peer_key
  struct CheckOf {
    std::string peer_key;
    std::string name;
  };
  std::unordered_map<std::uint64_t, CheckOf> check_of;      // by login
  std::set<std::pair<std::string, std::string>> checking;   // (peer_key, name) with a check under way
  bool warned_forwarded = false;  // about X-Forwarded-For from a proxy not in trusted_proxies
  bool warned_unreadable_forwarded = false;
  bool warned_local_visitors = false;  // about new conversations from a private address
  // Agents who may hold conversations and have no connection: since when (steady_seconds()).
  std::unordered_map<std::string, double> agents_gone;
  std::uint64_t next_login = 0;
  std::uint64_t logins_ok = 0, logins_refused = 0, logins_busy = 0, logins_throttled = 0;
  detail::LoginLimits login_limits;
  std::size_t bot_pending = 0;              // questions given to the bot threads, not finished

  // Group commit (see the top of this file).
  std::vector<Session*> ready;    // sessions with frames in their inbox
  bool batch_open = false;
  std::vector<Session*> touched;  // sessions sent to while the batch is open
  std::unordered_set<std::string> written;  // conversations written to while the batch is open
  Status batch_failure = Status::ok();      // a conversation's update or a write failed in the open batch

  // Metrics.
  std::uint64_t frames_received = 0, messages_stored = 0, duplicates = 0;
  std::uint64_t commits = 0, failed_commits = 0, conversations_evicted = 0;
  std::string store_failing;  // the last commit's error, until a commit succeeds (/healthz)
  std::map<std::string, std::uint64_t> errors_sent;
  std::map<std::string, std::uint64_t> bot_replies;

  MessageIds message_ids;  // the serving thread's

  ~Impl() {
    bot_threads.reset();  // they wake the loop through ctx
    login_checks.reset();
    lws_sul_cancel(&close_check.sul);
    if (ctx) lws_context_destroy(ctx);  // stops lws's watchers on the loop; then `loop` goes
  }

  // One turn of the event loop: waits for sockets or a timer, then handles all that are ready.
  bool service() {
    if (loop) {
      ev_run(loop.get(), EVRUN_ONCE);
      return true;
    }
    return lws_service(ctx, 0) >= 0;
  }

  // ---- sending --------------------------------------------------------------------------
  // Queues a frame for `s`; while it is replaying, after the replay (`now`: at once, for the
  // replay itself and for error frames, which carry no seq).
  void send(Session& s, std::string json, bool now = false) {
    if (s.closing) return;
    if (batch_open && !s.touched) {
      s.touched = true;
      s.out_mark = s.out.size();
      touched.push_back(&s);
    }
    if (s.replaying && !now) {
      s.held.push_back(std::move(json));
    } else {
      s.out.push_back(std::move(json));
      lws_callback_on_writable(s.wsi);
    }
    if (s.out.bytes() + s.held.bytes() > kMaxQueuedBytes) {
      // A peer that does not read (a stalled tab or console, or one that never will) would
      // hold the hub's memory without end. What it has not taken is dropped: it reconnects
      // and resumes from the last seq it has.
      cfg.logger.log(LogLevel::kWarning, who(s) + ": over " + std::to_string(kMaxQueuedBytes >> 20) +
                                             " MiB waiting to be sent; closing the connection");
      s.out = FrameQueue();
      s.held = FrameQueue();
      s.out_mark = 0;
      close(s, kCloseTryAgainLater);
    }
  }
  void send(Session& s, const Frame& f) { send(s, protocol::encode(f)); }
  void send_error(Session& s, ErrorKind kind, std::string message, std::string id = {}) {
    ++errors_sent[std::string(protocol::to_string(kind))];
    Frame e = protocol::make_error(kind, std::move(message), std::move(id));
    e.conversation = s.acting_on;  // the answer to an agent's action on it
    send(s, protocol::encode(e), true);
    if (int code = protocol::close_code(kind)) close(s, code);
  }
  // Closes after the frames already queued. The socket is closed only once the peer has been
  // quiet for kCloseQuietUs (or after kCloseLingerS): closing it while the peer is still
  // sending (a flood) makes the kernel answer with a reset, which destroys whatever the peer
  // had not read yet, the error frames and the close frame included.
  void close(Session& s, int code) {
    if (s.closing) return;
    // A replay cut short: what waited behind it must not go out with seqs above the frames
    // the client has not had (it would count them as seen). It reconnects and resumes.
    s.replaying = false;
    s.held = FrameQueue();
    s.closing = true;
    s.close_code = code;
    s.closing_since = s.last_heard = steady_seconds();
    if (closing.empty()) lws_sul_schedule(ctx, 0, &close_check.sul, check_closing, kCloseCheckUs);
    closing.insert(s.wsi);
    lws_callback_on_writable(s.wsi);
  }
  static void check_closing(lws_sorted_usec_list_t* sul) {
    Impl& im = *lws_container_of(sul, CloseCheck, sul)->impl;
    const double now = steady_seconds();
    for (auto it = im.closing.begin(); it != im.closing.end();) {
      auto found = im.sessions.find(*it);
      if (found == im.sessions.end()) {
        it = im.closing.erase(it);
        continue;
      }
      Session& s = *found->second;
      if (now - s.last_heard >= kCloseQuietS || now - s.closing_since >= kCloseLingerS) {
        s.quiet = true;
        lws_callback_on_writable(s.wsi);
        it = im.closing.erase(it);
      } else {
        ++it;
      }
    }
    if (!im.closing.empty()) lws_sul_schedule(im.ctx, 0, &im.close_check.sul, check_closing, kCloseCheckUs);
  }
  void to_visitors(const std::string& conversation, const std::string& json, const Session* except = nullptr) {
    auto it = visitors_of.find(conversation);
    if (it == visitors_of.end()) return;
    for (Session* s : it->second) {
      if (s != except) send(*s, json);
    }
  }
  void to_agent(const std::string& agent, const std::string& json, const Session* except = nullptr) {
    auto it = agents_by_name.find(agent);
    if (it == agents_by_name.end()) return;
    for (Session* s : it->second) {
      if (s != except) send(*s, json);
    }
  }
  void to_all_agents(const std::string& json) {
    for (auto& [name, list] : agents_by_name) {
      for (Session* s : list) send(*s, json);
    }
  }

  // ---- conversations --------------------------------------------------------------------
  Result<Conversation*> load(const std::string& id) {
    if (auto it = conversations.find(id); it != conversations.end()) {
      it->second->last_used = steady_seconds();
      return it->second.get();
    }
    MDG_ASSIGN_OR_RETURN(auto rec, store->find_conversation(id));
    if (!rec) return not_found("no conversation " + id);
    auto conv = std::make_shared<Conversation>();
    conv->record = std::move(*rec);
    // The hello's locale is the visitor's language when a message does not tell; a message
    // with letters is answered in its own language (docs/protocol.md).
    if (!conv->record.locale.empty()) conv->bot.set_fallback_locale(conv->record.locale);
    // The bot answers a visitor's message after it is stored and acknowledged, in a later
    // commit: if the hub stopped in between (a crash), the conversation ends with that message
    // (or several), unanswered. They are asked again below.
    // The bot's memory comes back from the conversation's last messages (seqs are 1, 2, ...):
    // events and the bot's own messages included, several times the turns it keeps.
    constexpr std::int64_t kRecalled = 5 * static_cast<std::int64_t>(bot::Conversation::kMaxTurns);
    MDG_ASSIGN_OR_RETURN(auto stored, store->messages_after(id, std::max<std::int64_t>(0, conv->record.last_seq - kRecalled),
                                                            static_cast<std::size_t>(kRecalled)));
    // The visitor's messages the bot has not answered, when the conversation is with it: each
    // is asked again, in order. The bot answers one message at a time, in order, each with
    // one message, so after the last event or agent's message, of the visitor's messages the
    // last (questions - answers) are unanswered: two quick questions can be stored before
    // the first answer, and a crash can come before the second's.
    std::vector<std::pair<std::int64_t, Frame>> unanswered;
    if (conv->record.state == "bot") {
      if (stored.empty() || stored.back().seq != conv->record.last_seq) {
        // Not in the window read above (a gap in seqs): read the last one alone.
        if (conv->record.last_seq > 0) {
          MDG_ASSIGN_OR_RETURN(auto tail, store->messages_after(id, conv->record.last_seq - 1, 1));
          stored.insert(stored.end(), tail.begin(), tail.end());
        }
      }
      std::vector<const StoredMessage*> questions;  // newest first
      std::size_t answers = 0;
      for (auto m = stored.rbegin();
           m != stored.rend() && m->kind == "message" && (m->sender == "visitor" || m->sender == "bot"); ++m) {
        if (m->sender == "visitor") {
          questions.push_back(&*m);
        } else {
          ++answers;
        }
      }
      for (std::size_t i = 0; i + answers < questions.size(); ++i) {
        auto f = decode_own(questions[i]->body_json);
        if (auto* frame = std::get_if<Frame>(&f)) unanswered.emplace_back(questions[i]->seq, std::move(*frame));
      }
      std::reverse(unanswered.begin(), unanswered.end());
    }
    const std::int64_t first_unanswered =
        unanswered.empty() ? std::numeric_limits<std::int64_t>::max() : unanswered.front().first;
    // The bot's memory of the conversation comes back from the store (after a restart, or
    // when the conversation left memory).
    for (const auto& m : stored) {
      if (m.kind != "message" || m.seq >= first_unanswered) continue;
      auto f = decode_own(m.body_json);
      if (auto* frame = std::get_if<Frame>(&f)) {
        conv->bot.add_turn({m.sender.rfind("agent", 0) == 0 ? "agent" : m.sender, frame->text, "", bot::Decision::kReply});
      }
    }
    if (conv->record.state == "waiting" || conv->record.state == "agent") conv->bot.hand_back();
    conv->last_used = steady_seconds();
    Conversation* raw = conv.get();
    conversations.emplace(id, std::move(conv));
    if (!unanswered.empty()) {
      cfg.logger.log(LogLevel::kInfo, "conversation " + id + ": " + std::to_string(unanswered.size()) +
                                          " message(s) left unanswered; the bot answers them now");
    }
    for (auto& [seq, frame] : unanswered) ask_bot(*raw, bot_text(frame), frame.id);
    return raw;
  }

  // Stores c.record. Its updated_ms is the time the conversation entered the queue (see
  // handoff): other changes leave it, so that a conversation put back in the queue keeps
  // its place among those handed off after it.
  Status save(Conversation& c) {
    if (batch_open) written.insert(c.record.id);
    Status st = store->update_conversation(c.record);
    // The record in memory has moved on, and the turn may have stored and announced its
    // events: the whole turn is given up at its end (abort_batch), as if its commit had
    // failed, so that the store, memory and every client agree again.
    if (!st && batch_open && batch_failure.is_ok()) batch_failure = st;
    return st;
  }

  // Stores a frame (without seq) and returns it with its seq, ready to send.
  Result<std::pair<std::int64_t, std::string>> store_frame(Conversation& c, Frame f, std::string sender,
                                                           std::string kind) {
    f.seq.reset();
    f.at = now_ms();           // the time stored: never the client's
    f.conversation.clear();    // a message's conversation is the one it is stored in
    NewMessage m;
    // Messages typed by a person carry their client's id: a resend is stored once.
    bool typed = kind == "message" && (sender == "visitor" || sender.rfind("agent:", 0) == 0);
    if (typed) m.client_id = f.id;
    m.sender = std::move(sender);
    m.kind = std::move(kind);
    m.body_json = protocol::encode(f);
    m.created_ms = f.at;
    if (batch_open) written.insert(c.record.id);
    const std::string who = m.sender;
    auto appended = store->append(c.record.id, m);
    if (!appended) {
      // As for a failed update (save()): the turn is given up whole at its end, so that no
      // action commits without its event (a take without agent_joined, a hand-off without
      // handoff_started) and memory and the store agree again.
      if (batch_open && batch_failure.is_ok()) batch_failure = appended.status();
      return appended.status();
    }
    auto& r = *appended;
    if (r.duplicate) {
      // A resend is its sender's own: the same id from someone else in the conversation (the
      // visitor's "m-1" and an agent's) is another message, which must not be taken for it.
      auto earlier = store->messages_after(c.record.id, r.seq - 1, 1);
      if (earlier && !earlier->empty() && earlier->front().sender != who) {
        return Status(ErrorCode::kInvalidArgument, "message: the id \"" + f.id +
                                                       "\" is another sender's in this conversation; send it with a new id");
      }
    }
    if (!r.duplicate) ++messages_stored;
    c.record.last_seq = std::max(c.record.last_seq, r.seq);
    f.seq = r.seq;
    return std::make_pair(r.duplicate ? -r.seq : r.seq, protocol::encode(f));
  }

  Result<std::string> store_event(Conversation& c, std::string event, std::string data_json) {
    Frame f;
    f.type = FrameType::kEvent;
    f.event = std::move(event);
    f.data_json = std::move(data_json);
    MDG_ASSIGN_OR_RETURN(auto stored, store_frame(c, std::move(f), "system", "event"));
    return stored.second;
  }

  // The "reason" of a stored hand-off package.
  static std::string handoff_reason(const std::string& handoff_json) {
    if (handoff_json.empty()) return {};
    thread_local simdjson::dom::parser parser;
    std::string_view reason;
    if (parser.parse(handoff_json)["reason"].get_string().get(reason) != simdjson::SUCCESS) return {};
    return std::string(reason);
  }

  // The conversations in `state`, best first (none when the store fails).
  std::vector<ConversationRecord> in_state(const char* state, std::size_t limit) {
    auto list = store->conversations_in_state(state, limit);
    return list ? std::move(*list) : std::vector<ConversationRecord>{};
  }

  // The queue frame's conversations: the first kQueueEntries of `waiting` (best first), then
  // those with an agent.
  std::string queue_json(const std::vector<ConversationRecord>& waiting) {
    madoguchi::detail::JsonWriter w;
    auto entry = [&w](const ConversationRecord& r) {
      w.begin_object().field("conversation", r.id).field("state", r.state).field("priority", r.priority);
      w.field("reason", handoff_reason(r.handoff_json));
      w.field("locale", r.locale).field("since", static_cast<std::int64_t>(r.updated_ms));
      if (!r.assigned_agent.empty()) w.field("agent", r.assigned_agent);
      w.end_object();
    };
    w.begin_array();
    for (std::size_t i = 0; i < std::min(waiting.size(), kQueueEntries); ++i) entry(waiting[i]);
    for (const auto& r : in_state("agent", kQueueEntries)) entry(r);
    w.end_array();
    return w.take();
  }
  std::string queue_json() { return queue_json(in_state("waiting", kQueueEntries)); }

  // The queue changed: the agents get it again, and the visitors waiting in it their new
  // places (queue_position events, not stored).
  void broadcast_queue() {
    const std::vector<ConversationRecord> waiting = in_state("waiting", kQueuePositions);
    tell_queue_positions(waiting);
    if (agents_by_name.empty()) return;
    Frame q;
    q.type = FrameType::kQueue;
    q.conversations_json = queue_json(waiting);
    to_all_agents(protocol::encode(q));
  }

  int queue_position(const std::string& id) {
    const std::vector<ConversationRecord> waiting = in_state("waiting", kQueuePositions);
    for (std::size_t i = 0; i < waiting.size(); ++i) {
      if (waiting[i].id == id) return static_cast<int>(i + 1);
    }
    return 0;
  }

  static std::string position_event(int position) {
    Frame e;
    e.type = FrameType::kEvent;
    e.event = "queue_position";
    madoguchi::detail::JsonWriter w;
    w.begin_object().field("queue_position", position).end_object();
    e.data_json = w.take();
    return protocol::encode(e);
  }

  // Sends a queue_position event to the visitors of `c` unless they were told `position` last.
  void tell_position(Conversation& c, int position) {
    auto v = visitors_of.find(c.record.id);
    if (v == visitors_of.end() || v->second.empty()) {
      c.told_position = 0;  // nobody heard it: whoever connects is told the place then
      return;
    }
    if (position <= 0 || position == c.told_position) return;
    c.told_position = position;
    const std::string json = position_event(position);
    for (Session* s : v->second) send(*s, json);
  }

  void tell_queue_positions(const std::vector<ConversationRecord>& waiting) {
    for (std::size_t i = 0; i < waiting.size(); ++i) {
      if (!visitors_of.contains(waiting[i].id)) continue;
      auto c = conversations.find(waiting[i].id);
      if (c != conversations.end()) tell_position(*c->second, static_cast<int>(i + 1));
    }
  }

  // ---- the bot --------------------------------------------------------------------------
  // What the bot is asked for a visitor's message: its text, or for a picked option the
  // option's entry, as if the visitor had typed its first question.
  std::string bot_text(const Frame& f) const {
    if (f.choice.empty()) return f.text;
    const bot::Entry* e = bot->entry(f.choice);
    if (e == nullptr) return f.text;
    return e->questions.empty() ? f.choice : e->questions.front();
  }

  // Gives the question to a bot thread, or keeps it until the conversation's question before
  // is answered; answered() stores and sends the answer in a later turn of the loop.
  void ask_bot(Conversation& c, std::string text, std::string frame_id) {
    Conversation::Question q{c.bot_epoch.load(std::memory_order_relaxed), std::move(text), std::move(frame_id)};
    if (c.asking) return c.questions.push_back(std::move(q));
    give_bot(c, std::move(q));
  }

  void give_bot(Conversation& c, Conversation::Question q) {
    c.asking = true;
    ++bot_pending;
    bot_threads->submit(c.record.id, {c.shared_from_this(), q.epoch, bot, std::move(q.text), std::move(q.frame_id)});
  }

  // The conversation's next waiting question: to the bot, or, when the conversation changed
  // hands since the visitor asked it, into the bot's memory as said to the person.
  void next_question(Conversation& c) {
    while (!c.questions.empty()) {
      Conversation::Question q = std::move(c.questions.front());
      c.questions.erase(c.questions.begin());
      if (q.epoch == c.bot_epoch.load(std::memory_order_relaxed)) return give_bot(c, std::move(q));
      remember_visitor(c, std::move(q.text));
    }
  }

  // A visitor's message the bot does not answer (the conversation is with a person), kept in
  // the bot's memory so that a later hand-off's transcript has it.
  static void remember_visitor(Conversation& c, std::string text) {
    std::lock_guard lock(c.bot_mu);
    c.bot.add_turn({"visitor", std::move(text), "", bot::Decision::kReply});
  }

  // A bot thread's answer: stored and sent, unless the conversation changed hands meanwhile;
  // then the conversation's next question goes to the bot.
  void answered(BotThreads::Done& done) {
    --bot_pending;
    Conversation& c = *done.conversation;
    c.asking = false;
    // Dropped from memory after a failed commit: load() asks again if the question is left.
    auto it = conversations.find(c.record.id);
    if (it == conversations.end() || it->second != done.conversation) return;
    take_answer(c, done);
    next_question(c);
  }

  void take_answer(Conversation& c, BotThreads::Done& done) {
    // The state changed while the bot thought (an agent took the conversation): the question
    // is the person's now, and an answer the bot gave is taken back out of its memory.
    if (done.epoch != c.bot_epoch.load(std::memory_order_relaxed)) {
      if (done.reply.is_ok()) {
        // The visitor's message stays in the bot's memory where it was said (before what the
        // person said since); the answer goes.
        std::lock_guard lock(c.bot_mu);
        c.bot.rewind(done.before, true);
        // The rewind put back the failed turns and hand-off of before the question; a person
        // who has had the conversation since, and gave it back or closed it, had them forgotten.
        if (c.record.state == "bot" || c.record.state == "closed") c.bot.hand_back();
      } else {
        remember_visitor(c, std::move(done.text));
      }
      return;
    }
    Status st = done.reply ? bot_turn(c, *done.reply) : done.reply.status();
    if (st) return;
    cfg.logger.log(LogLevel::kError, "bot: " + st.message());
    if (auto v = visitors_of.find(c.record.id); v != visitors_of.end()) {
      for (Session* s : std::vector<Session*>(v->second)) {  // send_error() may close one
        send_error(*s, ErrorKind::kInternal, "the bot could not answer; a person will", done.frame_id);
      }
    }
  }

  Status bot_turn(Conversation& c, const bot::Reply& reply) {
    ++bot_replies[std::string(bot::to_string(reply.decision))];
    Frame f;
    f.type = FrameType::kMessage;
    f.id = message_ids.next();
    f.from = "bot";
    f.text = reply.text;
    madoguchi::detail::JsonWriter w;
    w.begin_object().field("decision", bot::to_string(reply.decision));
    if (!reply.entry_id.empty()) w.field("entry", reply.entry_id);
    w.key("follow_ups").begin_array();
    for (const auto& id : reply.follow_ups) w.value(id);
    w.end_array();
    for (const auto& [key, list] : {std::pair{"options", &reply.options}, std::pair{"suggestions", &reply.suggestions}}) {
      w.key(key).begin_array();
      for (const auto& o : *list) w.begin_object().field("label", o.label).field("entry", o.entry_id).end_object();
      w.end_array();
    }
    w.end_object();
    f.bot_json = w.take();
    MDG_ASSIGN_OR_RETURN(auto stored, store_frame(c, std::move(f), "bot", "message"));
    to_visitors(c.record.id, stored.second);
    if (reply.decision == bot::Decision::kHandoff && reply.handoff) {
      const auto& t = reply.triage;
      c.record.state = "waiting";
      c.bot_epoch.fetch_add(1, std::memory_order_release);
      c.record.priority = 0.6 * t.severity + 0.2 * t.complexity + 0.2 * t.effort;
      c.record.handoff_json = reply.handoff->to_json();
      c.record.updated_ms = now_ms();  // waiting since
      MDG_RETURN_IF_ERROR(save(c));
      madoguchi::detail::JsonWriter d;
      c.told_position = queue_position(c.record.id);
      d.begin_object().field("reason", reply.reason).field("queue_position", c.told_position).end_object();
      MDG_ASSIGN_OR_RETURN(auto ev, store_event(c, "handoff_started", d.take()));
      to_visitors(c.record.id, ev);
      cfg.logger.log(LogLevel::kInfo, "conversation " + c.record.id + " handed off: " + reply.reason);
      broadcast_queue();
    }
    return Status::ok();
  }

  // ---- frames from visitors -------------------------------------------------------------
  void visitor_hello(Session& s, const Frame& f) {
    Conversation* c = nullptr;
    if (!f.token.empty()) {
      auto id = check_visitor_token(cfg.secret, f.token, now_ms());
      if (!id) return send_error(s, ErrorKind::kUnauthorized, "hello: " + id.status().message());
      auto loaded = load(*id);
      if (!loaded && loaded.status().code() == ErrorCode::kNotFound) {
        return send_error(s, ErrorKind::kUnauthorized, "hello: the token's conversation does not exist");
      }
      if (!loaded) {
        // The store failed, not the token: a refusal would be final for the client, which
        // would then never send its outbox. Turned away like this, it says hello again later.
        cfg.logger.log(LogLevel::kError, "store: " + loaded.status().message());
        return send_error(s, ErrorKind::kInternal, "hello: the conversation could not be read; try again");
      }
      c = *loaded;
    } else {
      if (new_conversations && !warned_local_visitors && detail::is_local_network(s.peer) &&
          !detail::is_loopback(s.peer)) {
        warned_local_visitors = true;
        cfg.logger.log(LogLevel::kInfo, "visitors from " + s.peer + " (a private address) start conversations without "
                                            "limit; if it is a reverse proxy or a NAT in front of the hub, list it in "
                                            "trusted_proxies (with X-Forwarded-For) so that its clients are limited one by one");
      }
      if (double wait_s = 0; new_conversations && !detail::is_local_network(s.peer) &&
                             !new_conversations->take(s.peer_key, steady_seconds(), wait_s)) {
        if (new_conversations->first_refusal(s.peer_key)) {
          char rate[32];
          std::snprintf(rate, sizeof rate, "%g", cfg.new_conversations_per_minute);
          cfg.logger.log(LogLevel::kWarning, "new conversations from " + s.peer_key + " are over " + rate +
                                                 " a minute: their hellos get rate_limited");
        }
        const auto ms = static_cast<std::int64_t>(std::ceil(wait_s * 1000));
        Frame e = protocol::make_error(ErrorKind::kRateLimited, "hello: too many new conversations from this address; "
                                                                "try again in " + std::to_string((ms + 999) / 1000) + " s");
        e.retry_after_ms = ms;
        ++errors_sent["rate_limited"];
        return send(s, e);
      }
      ConversationRecord rec;
      rec.id = random_id("c_", 26);
      rec.state = "bot";
      rec.locale = f.locale;
      madoguchi::detail::JsonWriter w;
      w.begin_object();
      for (const auto& [k, v] : f.visitor) w.field(k, v);
      w.end_object();
      rec.visitor_json = w.take();
      rec.created_ms = rec.updated_ms = now_ms();
      if (batch_open) written.insert(rec.id);
      if (auto st = store->create_conversation(rec); !st) {
        cfg.logger.log(LogLevel::kError, "store: " + st.message());
        return send_error(s, ErrorKind::kInternal, "the conversation could not be stored; try again");
      }
      auto loaded = load(rec.id);
      if (!loaded) return send_error(s, ErrorKind::kInternal, "the conversation could not be loaded");
      c = *loaded;
      std::lock_guard lock(c->bot_mu);
      for (const auto& [k, v] : f.visitor) c->bot.visitor()[k] = v;
    }
    s.authenticated = true;
    lws_set_timeout(s.wsi, NO_PENDING_TIMEOUT, 0);
    s.conversation = c->record.id;
    visitors_of[s.conversation].push_back(&s);
    Frame w;
    w.type = FrameType::kWelcome;
    w.conversation = c->record.id;
    w.token = make_visitor_token(cfg.secret, c->record.id, now_ms() + cfg.token_ttl_ms);
    w.state = c->record.state;
    w.last_seq = c->record.last_seq;
    send(s, w);
    start_replay(s, f.last_seq.value_or(0), c->record.last_seq);
    // The place in the queue now, which the replayed handoff_started may no longer tell.
    if (c->record.state == "waiting") {
      if (int position = queue_position(c->record.id); position > 0) {
        c->told_position = position;
        send(s, position_event(position));
      }
    }
  }

  // Sends a resumed visitor the frames after `after` up to `until` (the conversation's last
  // seq now): the first page now, the others as the socket takes them (replay_page from the
  // WRITEABLE callback). Frames stored meanwhile are held and follow the replay, so none
  // comes twice (the replay's pages, read later, would have them too).
  void start_replay(Session& s, std::int64_t after, std::int64_t until) {
    s.replaying = true;
    s.replay_after = after;
    s.replay_until = until;
    replay_page(s);
  }

  void replay_page(Session& s) {
    auto page = store->messages_after(s.conversation, s.replay_after, kReplayPage);
    if (!page) {
      cfg.logger.log(LogLevel::kError, "store: " + page.status().message());
      // Closed, not left open: a frame sent after this one would carry a higher seq, and a
      // client that took it would count the frames it missed as seen. It reconnects and
      // asks for them again.
      send_error(s, ErrorKind::kInternal, "the conversation could not be read; reconnect to retry");
      return close(s, 1011);
    }
    for (const auto& m : *page) {
      if (m.seq > s.replay_until) break;  // held, in s.held
      auto f = decode_own(m.body_json);
      if (auto* frame = std::get_if<Frame>(&f)) {
        frame->seq = m.seq;
        send(s, protocol::encode(*frame), true);
      }
      s.replay_after = m.seq;
    }
    if (page->size() == kReplayPage && s.replay_after < s.replay_until) {
      lws_callback_on_writable(s.wsi);  // the next page once this one is written
      return;
    }
    s.replaying = false;
    while (!s.held.empty()) {
      send(s, std::move(s.held.front()), true);
      s.held.pop_front();
    }
  }

  // Acknowledges a stored message; `signed_seq` < 0 means a resend of seq -signed_seq
  // (store_frame's convention). Returns true for a resend.
  bool acknowledge(Session& s, const std::string& id, std::int64_t signed_seq) {
    Frame ack;
    ack.type = FrameType::kAck;
    ack.id = id;
    ack.duplicate = signed_seq < 0;
    ack.seq = ack.duplicate ? -signed_seq : signed_seq;
    send(s, ack);
    return ack.duplicate;
  }

  void visitor_message(Session& s, Frame f) {
    auto loaded = load(s.conversation);
    if (!loaded) return send_error(s, ErrorKind::kInternal, "the conversation could not be loaded", f.id);
    Conversation& c = **loaded;
    f.from = "visitor";
    f.agent.clear();
    f.bot_json.clear();
    auto stored = store_frame(c, f, "visitor", "message");
    if (!stored && stored.status().code() == ErrorCode::kInvalidArgument) {
      return send_error(s, ErrorKind::kConflict, stored.status().message(), f.id);
    }
    if (!stored) {
      cfg.logger.log(LogLevel::kError, "store: " + stored.status().message());
      return send_error(s, ErrorKind::kInternal, "the message was not stored; send it again", f.id);
    }
    bool duplicate = acknowledge(s, f.id, stored->first);
    if (duplicate) {
      ++duplicates;
      return;
    }
    to_visitors(c.record.id, stored->second, &s);
    if (!c.record.assigned_agent.empty()) to_agent(c.record.assigned_agent, with_conversation(stored->second, c.record.id));
    if (c.record.state == "closed") {
      c.record.state = "bot";
      if (auto st = save(c); !st) cfg.logger.log(LogLevel::kError, "store: " + st.message());
    }
    if (c.record.state != "bot") return remember_visitor(c, std::move(f.text));
    ask_bot(c, bot_text(f), f.id);
  }

  // Adds "conversation" to an encoded frame for agents.
  static std::string with_conversation(const std::string& json, const std::string& conversation) {
    auto f = decode_own(json);
    if (auto* frame = std::get_if<Frame>(&f)) {
      frame->conversation = conversation;
      return protocol::encode(*frame);
    }
    return json;
  }

  // A message needs text, or attachments (docs/protocol.md); true (after the error) if it has
  // neither.
  bool refused_empty(Session& s, const Frame& f) {
    if (!f.text.empty() || !f.attachments.empty()) return false;
    send_error(s, ErrorKind::kBadFrame, "message: \"text\" is empty; write something, or attach a file", f.id);
    return true;
  }

  // A read receipt must name a seq the conversation has; false (after the error) if not.
  bool read_seq_ok(Session& s, const Conversation& c, const Frame& f) {
    const std::int64_t seq = f.seq.value_or(0);
    if (seq >= 1 && seq <= c.record.last_seq) return true;
    send_error(s, ErrorKind::kBadFrame,
               "read: \"seq\" " + std::to_string(seq) + " is not in the conversation (its last seq is " +
                   std::to_string(c.record.last_seq) + ")");
    return false;
  }

  void on_visitor_frame(Session& s, Frame f) {
    if (!s.authenticated && f.type != FrameType::kHello) {
      return send_error(s, ErrorKind::kUnauthorized, "send hello first", f.id);
    }
    switch (f.type) {
      case FrameType::kHello:
        if (s.authenticated) return send_error(s, ErrorKind::kConflict, "hello: already said");
        return visitor_hello(s, f);
      case FrameType::kMessage:
        if (refused_empty(s, f)) return;
        return visitor_message(s, std::move(f));
      case FrameType::kTyping:
      case FrameType::kRead: {
        auto loaded = load(s.conversation);
        if (!loaded) return;
        if (f.type == FrameType::kRead && !read_seq_ok(s, **loaded, f)) return;
        f.from = "visitor";
        if (!(*loaded)->record.assigned_agent.empty()) {
          f.conversation = s.conversation;
          to_agent((*loaded)->record.assigned_agent, protocol::encode(f));
        }
        return;
      }
      default:
        return send_error(s, ErrorKind::kBadFrame,
                          std::string(protocol::to_string(f.type)) + ": not a frame a visitor sends");
    }
  }

  // ---- frames from agents ---------------------------------------------------------------
  Result<Conversation*> agent_conversation(Session& s, const Frame& f, bool must_be_assigned) {
    auto loaded = load(f.conversation);
    if (!loaded) return Status(ErrorCode::kNotFound, std::string(protocol::to_string(f.type)) + ": no conversation " + f.conversation);
    if (must_be_assigned && (*loaded)->record.assigned_agent != s.agent) {
      return Status(ErrorCode::kInvalidArgument, std::string(protocol::to_string(f.type)) + ": the conversation is not assigned to you (take it first)");
    }
    return *loaded;
  }

  // The seq of the reply `f` (by its client id) if this agent stored it in f.conversation
  // before; 0 if not, or if the store cannot tell.
  std::int64_t stored_agent_reply(Session& s, const Frame& f) {
    auto seq = store->find_message(f.conversation, f.id);
    if (!seq || !*seq) return 0;
    auto stored = store->messages_after(f.conversation, **seq - 1, 1);
    if (!stored || stored->empty() || stored->front().sender != "agent:" + s.agent) return 0;
    return **seq;
  }

  void agent_error(Session& s, const Status& st, const std::string& id = {}) {
    send_error(s, st.code() == ErrorCode::kNotFound ? ErrorKind::kNotFound : ErrorKind::kForbidden, st.message(), id);
  }

  // Handed back or closed: the hand-off is over, and its package and priority go with it (a
  // take from the bot, or a later hand-off, must not show the old reason and transcript, nor
  // queue the conversation ahead of others with an old severity).
  static void forget_handoff(Conversation& c) {
    c.record.handoff_json.clear();
    c.record.priority = 0;
  }

  void set_state(Conversation& c, std::string state, std::string agent) {
    if (state != "waiting") c.told_position = 0;
    c.record.state = std::move(state);
    c.bot_epoch.fetch_add(1, std::memory_order_release);
    c.record.assigned_agent = std::move(agent);
    if (auto st = save(c); !st) cfg.logger.log(LogLevel::kError, "store: " + st.message());
  }

  // Stores an event and sends it to the visitors, the assigned agent and `also` (an agent who
  // just gave the conversation away).
  void announce(Conversation& c, const std::string& event, const std::string& data, const std::string& also = {}) {
    auto ev = store_event(c, event, data);
    if (!ev) {
      cfg.logger.log(LogLevel::kError, "store: " + ev.status().message());
      return;
    }
    to_visitors(c.record.id, *ev);
    std::string for_agents = with_conversation(*ev, c.record.id);
    if (!c.record.assigned_agent.empty()) to_agent(c.record.assigned_agent, for_agents);
    if (!also.empty() && also != c.record.assigned_agent) to_agent(also, for_agents);
  }

  static std::string agent_data(std::string_view key, std::string_view value) {
    madoguchi::detail::JsonWriter w;
    w.begin_object().field(key, value).end_object();
    return w.take();
  }

  // An agent's hello. Addresses and names with too many failed logins wait first
  // (LoginLimits). A hash is checked on the LoginChecks thread (finish_login() answers), and
  // so is a name no account has when any account has a hash, so that a refusal takes as long
  // whether the name exists or not; a plain password is compared at once, and then answered
  // as late as a hash when any account has one, so that its name does not show either.
  void agent_hello(Session& s, Frame f) {
    // One agent a connection: the session is listed under its agent's name (agents_by_name).
    if (s.authenticated) return send_error(s, ErrorKind::kConflict, "hello: already said");
    if (s.login != 0) {
      // The first one's check is under way: it goes on, and its answer comes.
      return send_error(s, ErrorKind::kConflict, "hello: already said; wait for its welcome");
    }
    // No account has a longer name (Hub::create); such a name is not counted or checked.
    if (f.agent.size() > HubConfig::kMaxAgentNameBytes) {
      ++logins_refused;
      return send_error(s, ErrorKind::kUnauthorized, "hello: unknown agent or wrong password");
    }
    if (checking.contains({s.peer_key, f.agent})) {
      // One check at a time for a name from an address, so that each failure makes the next
      // try wait (LoginLimits) before another guess is made.
      ++logins_busy;
      Frame e = protocol::make_error(ErrorKind::kRateLimited, "hello: a login as this agent from this address is "
                                                              "being checked; try again shortly");
      e.retry_after_ms = kLoginRetryMs;
      ++errors_sent["rate_limited"];
      return send(s, e);
    }
    if (const auto wait = login_limits.wait(s.peer_key, f.agent, std::chrono::steady_clock::now()); wait.count() > 0) {
      ++logins_throttled;
      Frame e = protocol::make_error(ErrorKind::kRateLimited,
                                     "hello: too many failed logins from this address or for this agent; try again in " +
                                         std::to_string((wait.count() + 999) / 1000) + " s");
      e.retry_after_ms = wait.count();
      ++errors_sent["rate_limited"];
      return send(s, e);
    }
    const detail::PasswordHash* hash = nullptr;
    std::optional<bool> answer;  // of a plain password
    bool known = false;
    for (std::size_t i = 0; i < cfg.agents.size(); ++i) {
      if (cfg.agents[i].name != f.agent) continue;
      known = true;
      if (agent_hashes[i]) {
        hash = &*agent_hashes[i];
      } else {
        answer = same_secret(cfg.agents[i].password, f.password);
      }
    }
    if ((!known || answer) && decoy_hash) hash = &*decoy_hash;
    if (!hash) return finish_hello(s, f.agent, answer.value_or(false));
    const std::uint64_t login = ++next_login;
    const bool peer_full = checks_by_peer[s.peer_key] >= kLoginChecksPerPeer;
    if (peer_full || !login_checks->submit(login, std::move(f.password), hash, answer)) {
      if (checks_by_peer[s.peer_key] == 0) checks_by_peer.erase(s.peer_key);
      ++logins_busy;
      Frame e = protocol::make_error(ErrorKind::kRateLimited, "hello: too many logins are being checked; try again shortly");
      e.retry_after_ms = kLoginRetryMs;
      ++errors_sent["rate_limited"];
      return send(s, e);
    }
    ++checks_by_peer[s.peer_key];
    checking.emplace(s.peer_key, f.agent);
    check_of.emplace(login, CheckOf{s.peer_key, f.agent});
    s.login = login;
    s.login_name = f.agent;
    logging_in.emplace(login, &s);
  }

  // A check of LoginChecks is done: answers the hello, if its connection is still open.
  void finish_login(const LoginChecks::Done& done) {
    if (auto p = check_of.find(done.login); p != check_of.end()) {  // counted until done, even if its agent left
      if (--checks_by_peer[p->second.peer_key] <= 0) checks_by_peer.erase(p->second.peer_key);
      checking.erase({p->second.peer_key, p->second.name});
      // Counted here, where the answer is known, even if the agent went away meanwhile.
      note_login(p->second.peer_key, p->second.name, done.ok);
      check_of.erase(p);
    }
    auto it = logging_in.find(done.login);
    if (it == logging_in.end()) return;  // the agent went away meanwhile
    Session& s = *it->second;
    logging_in.erase(it);
    s.login = 0;
    if (!s.closing) finish_hello(s, std::exchange(s.login_name, {}), done.ok, true);
  }

  // Counts a login's result for LoginLimits, and logs each wait when it starts.
  void note_login(const std::string& peer_key, const std::string& name, bool ok) {
    if (ok) return login_limits.succeeded(peer_key, name);
    const auto started = login_limits.failed(peer_key, name, std::chrono::steady_clock::now());
    using Limits = detail::LoginLimits;
    if (started.pair) {
      cfg.logger.log(LogLevel::kWarning, std::to_string(Limits::kPair.free) + " failed logins in a row for \"" +
                                             loggable(name) + "\" from " + peer_key +
                                             ": its next tries there wait, twice as long after each failure");
    }
    if (started.address) {
      cfg.logger.log(LogLevel::kWarning, std::to_string(Limits::kAddress.free) + " failed agent logins from " + peer_key +
                                             ": its next tries wait, except as agents who logged in from there");
    }
    if (started.name) {
      cfg.logger.log(LogLevel::kWarning, std::to_string(Limits::kName.free) + " failed logins in a row for \"" +
                                             loggable(name) +
                                             "\": its next tries wait, except from addresses it logged in from");
    }
  }

  // `counted`: the result went to note_login() already (a check of LoginChecks).
  void finish_hello(Session& s, const std::string& name, bool ok, bool counted = false) {
    if (!counted) note_login(s.peer_key, name, ok);
    if (!ok) {
      ++logins_refused;
      cfg.logger.log(LogLevel::kWarning, "agent login refused for \"" + loggable(name) + "\" from " + s.peer);
      return send_error(s, ErrorKind::kUnauthorized, "hello: unknown agent or wrong password");
    }
    ++logins_ok;
    s.authenticated = true;
    lws_set_timeout(s.wsi, NO_PENDING_TIMEOUT, 0);
    s.agent = name;
    agents_by_name[s.agent].push_back(&s);
    agents_gone.erase(s.agent);
    Frame w;
    w.type = FrameType::kWelcome;
    w.agent = s.agent;
    send(s, w);
    Frame q;
    q.type = FrameType::kQueue;
    q.conversations_json = queue_json();
    send(s, q);
  }

  void on_agent_frame(Session& s, Frame f) {
    if (!s.authenticated && f.type != FrameType::kHello) {
      return send_error(s, ErrorKind::kUnauthorized, "send hello with your credentials first");
    }
    // An error in answer to an action on a conversation names it (docs/protocol.md).
    const bool action = f.type == FrameType::kTake || f.type == FrameType::kTransfer ||
                        f.type == FrameType::kHandBack || f.type == FrameType::kClose;
    struct ActingOn {
      std::string& slot;
      ~ActingOn() { slot.clear(); }
    } acting{s.acting_on};
    if (action) s.acting_on = f.conversation;
    switch (f.type) {
      case FrameType::kHello:
        return agent_hello(s, std::move(f));
      case FrameType::kQueue: {
        Frame q;
        q.type = FrameType::kQueue;
        q.conversations_json = queue_json();
        return send(s, q);
      }
      case FrameType::kTake: {
        auto c = agent_conversation(s, f, false);
        if (!c) return agent_error(s, c.status());
        Conversation& conv = **c;
        if (conv.record.state == "agent" && conv.record.assigned_agent != s.agent) {
          return send_error(s, ErrorKind::kConflict, "take: " + conv.record.assigned_agent + " has it");
        }
        if (conv.record.state == "closed") return send_error(s, ErrorKind::kConflict, "take: the conversation is closed");
        if (f.resume && (conv.record.state != "agent" || conv.record.assigned_agent != s.agent)) {
          // The agent's client taking again what it held: not if it moved on meanwhile.
          return send_error(s, ErrorKind::kConflict, "take: you no longer hold the conversation (it is " +
                                                         conv.record.state + ")");
        }
        bool joined = conv.record.assigned_agent != s.agent;
        // Taken from the bot, never handed off: should the agent's grace run out, it waits in
        // the queue from now (its package and priority are those of no hand-off: none, 0).
        if (conv.record.state == "bot") conv.record.updated_ms = now_ms();
        set_state(conv, "agent", s.agent);
        if (joined) announce(conv, "agent_joined", agent_data("agent", s.agent));
        Frame out;
        out.type = FrameType::kConversation;
        out.conversation = conv.record.id;
        out.state = conv.record.state;
        out.handoff_json = conv.record.handoff_json;
        // The conversation's last messages and events, at most kTranscriptMessages and
        // kTranscriptBytes of them (a longer conversation's older ones stay in the store), so
        // that the frame stays within what clients take.
        auto msgs = store->messages_after(
            conv.record.id, std::max<std::int64_t>(0, conv.record.last_seq - static_cast<std::int64_t>(kTranscriptMessages)),
            kTranscriptMessages);
        if (!msgs) {
          cfg.logger.log(LogLevel::kError, "store: " + msgs.status().message());
          send_error(s, ErrorKind::kInternal, "take: the conversation's messages could not be read; take it again");
          return broadcast_queue();
        }
        std::vector<std::string> frames;
        for (const auto& m : *msgs) {
          auto d = decode_own(m.body_json);
          if (auto* fr = std::get_if<Frame>(&d)) {
            fr->seq = m.seq;
            frames.push_back(protocol::encode(*fr));
          }
        }
        // The package counts too (its transcript is bounded: bot::Conversation::kMaxTranscriptBytes).
        const std::size_t budget =
            std::min(kTranscriptBytes, kConversationFrameBytes - std::min(kConversationFrameBytes, out.handoff_json.size()));
        std::size_t first = frames.size(), bytes = 0;
        while (first > 0 && bytes + frames[first - 1].size() + 1 <= budget) bytes += frames[--first].size() + 1;
        madoguchi::detail::JsonWriter w;
        w.begin_array();
        for (std::size_t i = first; i < frames.size(); ++i) w.raw(frames[i]);
        w.end_array();
        out.messages_json = w.take();
        send(s, out);
        return broadcast_queue();
      }
      case FrameType::kMessage: {
        if (refused_empty(s, f)) return;
        auto c = agent_conversation(s, f, true);
        if (!c) {
          // The resend of a reply this agent stored before it lost the conversation (its ack
          // was lost, then the grace ran out, or the conversation was closed or handed back):
          // acknowledged as a duplicate, as any resend, not refused.
          if (auto seq = stored_agent_reply(s, f); seq > 0) return (void)acknowledge(s, f.id, -seq);
          return agent_error(s, c.status(), f.id);
        }
        Conversation& conv = **c;
        Frame m = f;
        m.conversation.clear();
        m.from = "agent";
        m.agent = s.agent;
        m.bot_json.clear();
        auto stored = store_frame(conv, m, "agent:" + s.agent, "message");
        if (!stored && stored.status().code() == ErrorCode::kInvalidArgument) {
          return send_error(s, ErrorKind::kConflict, stored.status().message(), f.id);
        }
        if (!stored) return send_error(s, ErrorKind::kInternal, "the message was not stored; send it again", f.id);
        bool duplicate = acknowledge(s, f.id, stored->first);
        if (duplicate) return;
        {
          std::lock_guard lock(conv.bot_mu);
          conv.bot.add_turn({"agent", f.text, "", bot::Decision::kReply});
        }
        to_visitors(conv.record.id, stored->second);
        return to_agent(s.agent, with_conversation(stored->second, conv.record.id), &s);
      }
      case FrameType::kTyping:
      case FrameType::kRead: {
        auto c = agent_conversation(s, f, true);
        if (!c) return agent_error(s, c.status());
        if (f.type == FrameType::kRead && !read_seq_ok(s, **c, f)) return;
        f.from = "agent";
        f.conversation.clear();
        return to_visitors((*c)->record.id, protocol::encode(f));
      }
      case FrameType::kHandBack:
      case FrameType::kClose:
      case FrameType::kTransfer: {
        auto c = agent_conversation(s, f, true);
        if (!c) return agent_error(s, c.status());
        Conversation& conv = **c;
        if (f.type == FrameType::kTransfer) {
          bool known = std::any_of(cfg.agents.begin(), cfg.agents.end(), [&](const AgentAccount& a) { return a.name == f.to; });
          if (!known) return send_error(s, ErrorKind::kNotFound, "transfer: no agent " + f.to);
          if (f.to == s.agent) return send_error(s, ErrorKind::kConflict, "transfer: the conversation is yours already");
          madoguchi::detail::JsonWriter w;
          w.begin_object().field("from", s.agent).field("to", f.to).end_object();
          set_state(conv, "agent", f.to);
          announce(conv, "transferred", w.take(), s.agent);
          // Given to an agent with no connection: the grace runs from now (for all that agent
          // holds: the clock is the agent's, and an earlier start would cut this one short).
          if (!agents_by_name.contains(f.to)) agents_gone[f.to] = steady_seconds();
        } else if (f.type == FrameType::kHandBack) {
          announce(conv, "handed_back", agent_data("agent", s.agent));
          forget_handoff(conv);
          set_state(conv, "bot", "");
          std::lock_guard lock(conv.bot_mu);
          conv.bot.hand_back();
        } else {
          announce(conv, "conversation_closed", agent_data("by", "agent"));
          forget_handoff(conv);
          set_state(conv, "closed", "");
          // A visitor who writes again reopens it with the bot, which starts afresh, as after a
          // restart (failed turns and the hand-off are not read back from the store).
          std::lock_guard lock(conv.bot_mu);
          conv.bot.hand_back();
        }
        return broadcast_queue();
      }
      default:
        return send_error(s, ErrorKind::kBadFrame,
                          std::string(protocol::to_string(f.type)) + ": not a frame an agent sends");
    }
  }

  // ---- one turn of the event loop --------------------------------------------------------
  void enqueue(Session& s, std::string frame) {
    s.inbox_bytes += frame.size();
    s.inbox.push_back(std::move(frame));
    if (s.inbox_bytes > kMaxQueuedBytes) {
      // It sends on while it does not read what it is sent (see backed_up()).
      cfg.logger.log(LogLevel::kWarning, who(s) + ": over " + std::to_string(kMaxQueuedBytes >> 20) +
                                             " MiB received and not handled while it does not read; closing the connection");
      s.inbox.clear();
      s.inbox_bytes = 0;
      close(s, kCloseTryAgainLater);
      return;
    }
    mark_ready(s);
  }
  void mark_ready(Session& s) {
    if (!s.ready) {
      s.ready = true;
      ready.push_back(&s);
    }
  }
  // Its next frames wait until the socket has taken what it was sent (kPauseQueuedBytes).
  static bool backed_up(const Session& s) noexcept { return s.out.bytes() + s.held.bytes() > kPauseQueuedBytes; }
  // The connection, for log lines: "agent sato", "visitor of c_...".
  static std::string who(const Session& s) {
    if (s.agent_endpoint) return s.agent.empty() ? "agent (not signed in)" : "agent " + s.agent;
    return s.conversation.empty() ? "visitor (no hello)" : "visitor of " + s.conversation;
  }

  // The bot that set_bot() left, if any, answers from this turn on.
  void take_up_new_bot() {
    std::shared_ptr<const bot::Bot> fresh;
    {
      std::lock_guard lock(next_bot_mu);
      fresh = std::move(next_bot);
    }
    if (!fresh) return;
    bot = std::move(fresh);
    ++bot_replacements;
    const auto stats = bot->stats();
    cfg.logger.log(LogLevel::kInfo, "now answering with a new knowledge base: " + std::to_string(stats.entries) +
                                        " entries, " + std::to_string(stats.questions) + " questions");
  }

  // Handles every frame received in this turn and every answer the bot threads finished
  // inside one store batch (group commit).
  void drain() {
    if (login_checks) {
      for (const auto& done : login_checks->take_done()) finish_login(done);
    }
    std::vector<BotThreads::Done> answers = bot_threads->take_done();
    if (ready.empty() && answers.empty()) return;
    std::vector<Session*> turn;
    turn.swap(ready);
    open_batch();
    for (auto& done : answers) answered(done);
    for (Session* s : turn) {
      s->ready = false;
      // Frames arrive only in lws_service(), never while they are handled here.
      std::vector<std::string> frames;
      frames.swap(s->inbox);
      s->inbox_bytes = 0;
      std::size_t i = 0;
      for (; i < frames.size() && !s->closing && !backed_up(*s); ++i) on_frame(*s, frames[i]);
      if (i < frames.size() && !s->closing) {
        // The rest waits for the socket (SERVER_WRITEABLE marks it ready again).
        for (; i < frames.size(); ++i) {
          s->inbox_bytes += frames[i].size();
          s->inbox.push_back(std::move(frames[i]));
        }
      }
    }
    // Under light load a turn carries a question or a few: their answers take the bot some
    // tens of microseconds, and waiting for them lets them share this commit instead of
    // costing one more. Under heavy load the turn goes on, and the serving thread with it.
    if (batch_open && bot_pending > 0 && bot_pending <= kLingerQuestions) {
      bot_threads->wait_done(bot_pending, kLinger);
      for (auto& done : bot_threads->take_done()) answered(done);
    }
    (void)close_batch();
  }

  // A turn's writes go into one store batch (group commit): open_batch() before them, then
  // close_batch(), which commits them, or gives the whole turn up (lose_turn) and returns
  // false. Without a batch (begin_batch failed), each write is committed on its own.
  void open_batch() {
    if (auto st = store->begin_batch(); !st) {
      cfg.logger.log(LogLevel::kWarning, "store: " + st.message() + "; this turn's writes are committed one by one");
    } else {
      batch_open = true;
    }
  }
  bool close_batch() {
    bool committed = true;
    if (batch_open) {
      batch_open = false;
      ++commits;
      if (!batch_failure.is_ok()) {
        // One of the turn's writes failed on its own after others had gone in: the turn is
        // given up whole, as if its commit had failed.
        if (!store->abort_batch()) (void)store->end_batch();
        lose_turn(batch_failure);
        batch_failure = Status::ok();
        committed = false;
      } else if (auto st = store->end_batch(); !st) {
        lose_turn(st);
        committed = false;
      } else {
        store_failing.clear();
      }
    }
    for (Session* s : touched) s->touched = false;
    touched.clear();
    written.clear();
    return committed;
  }

  // The commit failed: nothing of this turn is stored, so nothing of it may be sent.
  void lose_turn(const Status& st) {
    ++failed_commits;
    stored_base.reset();
    store_failing = st.message();
    cfg.logger.log(LogLevel::kError, "store: " + st.message() + "; the " + std::to_string(touched.size()) +
                                         " connection(s) involved are closed and will resend");
    for (Session* s : touched) {
      s->out.truncate(s->out_mark);
      send_error(*s, ErrorKind::kInternal, "the hub could not store the last messages; reconnect and send them again");
      close(*s, 1011);
    }
    // The records in memory of the conversations this turn wrote to ran ahead of the store:
    // read them again when next used (load() asks the bot again a question left unanswered).
    // The others stay, with the questions they have out to the bot: dropping them would drop
    // those answers too, and their visitors, whose connections are not closed, would wait.
    for (const auto& id : written) conversations.erase(id);
  }

  // Drops conversations no visitor is connected to and with no question out to the bot: idle
  // ones, then the least recently used while there are more than the cap. Everything they
  // hold is in the store.
  void evict(double now) {
    const double idle = static_cast<double>(cfg.conversation_idle_ms) / 1000.0;
    std::vector<std::pair<double, std::string>> unwatched;
    for (auto it = conversations.begin(); it != conversations.end();) {
      if (visitors_of.contains(it->first) || it->second->asked()) {
        ++it;
      } else if (now - it->second->last_used >= idle) {
        it = conversations.erase(it);
        ++conversations_evicted;
      } else {
        unwatched.emplace_back(it->second->last_used, it->first);
        ++it;
      }
    }
    if (conversations.size() <= cfg.max_cached_conversations) return;
    std::size_t excess = conversations.size() - cfg.max_cached_conversations;
    excess = std::min(excess, unwatched.size());
    std::partial_sort(unwatched.begin(), unwatched.begin() + static_cast<std::ptrdiff_t>(excess), unwatched.end());
    for (std::size_t i = 0; i < excess; ++i) {
      conversations.erase(unwatched[i].second);
      ++conversations_evicted;
    }
  }

  // ---- one frame ------------------------------------------------------------------------
  void on_frame(Session& s, std::string_view text) {
    ++frames_received;
    protocol::DecodeLimits limits;
    limits.max_frame_bytes = cfg.max_frame_bytes;
    const bool binary = text == kBinaryFrame;
    auto decoded = binary ? std::variant<Frame, protocol::DecodeError>(protocol::DecodeError{
                                ErrorKind::kBadFrame, "binary frames are not part of the protocol; send text", {}, {}})
                          : protocol::decode(text, limits);
    // Token bucket: rate_per_second on average, rate_burst at once. A dropped frame is
    // answered with rate_limited (naming its id); a connection that keeps on is closed.
    double now = steady_seconds();
    s.tokens = std::min(cfg.rate_burst, s.tokens + (now - s.last_refill) * cfg.rate_per_second);
    s.last_refill = now;
    // A client that paused until its whole burst came back is not flooding: the count of
    // dropped frames that closes the connection starts again.
    if (s.tokens >= cfg.rate_burst) s.violations = 0;
    // An error about an agent's frame names its conversation, as far as it could be read.
    const std::string* about = nullptr;
    if (auto* f = std::get_if<Frame>(&decoded)) about = &f->conversation;
    if (auto* err = std::get_if<protocol::DecodeError>(&decoded)) about = &err->conversation;
    if (s.tokens < 1.0) {
      std::string id;
      if (auto* f = std::get_if<Frame>(&decoded)) id = f->id;
      Frame e = protocol::make_error(ErrorKind::kRateLimited, "too many frames; this one was dropped", id);
      if (s.agent_endpoint && about) e.conversation = *about;
      e.retry_after_ms = static_cast<std::int64_t>(1000.0 / std::max(1.0, cfg.rate_per_second)) + 1;
      ++errors_sent["rate_limited"];
      send(s, e);
      if (++s.violations > static_cast<int>(cfg.rate_burst) * 2) close(s, 1008);
      return;
    }
    s.tokens -= 1.0;
    if (auto* err = std::get_if<protocol::DecodeError>(&decoded)) {
      if (s.agent_endpoint) s.acting_on = err->conversation;
      send_error(s, err->kind, err->message, err->id);
      s.acting_on.clear();
      return;
    }
    Frame& f = std::get<Frame>(decoded);
    if (f.type == FrameType::kPing) {  // before hello too, on both endpoints
      Frame pong;
      pong.type = FrameType::kPong;
      pong.id = f.id;
      return send(s, pong);
    }
    if (s.agent_endpoint) {
      on_agent_frame(s, std::move(f));
    } else {
      on_visitor_frame(s, std::move(f));
    }
  }

  void forget(Session& s) {
    if (s.login != 0) logging_in.erase(s.login);
    if (s.ready) std::erase(ready, &s);
    if (s.touched) std::erase(touched, &s);
    auto drop = [&s](std::unordered_map<std::string, std::vector<Session*>>& index, const std::string& key) {
      auto it = index.find(key);
      if (it == index.end()) return;
      std::erase(it->second, &s);
      if (it->second.empty()) index.erase(it);
    };
    if (!s.conversation.empty()) drop(visitors_of, s.conversation);
    if (!s.agent.empty()) {
      drop(agents_by_name, s.agent);
      if (!agents_by_name.contains(s.agent)) agents_gone.emplace(s.agent, steady_seconds());
    }
  }

  // The conversations of agents who have had no connection for agent_grace_ms go back to
  // the queue: `agent_left` to their visitors, then their places and the queue.
  void requeue_abandoned(double now) {
    if (cfg.agent_grace_ms <= 0 || agents_gone.empty()) return;
    const double grace = static_cast<double>(cfg.agent_grace_ms) / 1000.0;
    std::vector<std::string> gone;
    // An agent whose password is being checked (at most 8 checks at once) is coming back: its
    // grace waits for the answer.
    auto logging_in_as = [this](const std::string& name) {
      return std::any_of(checking.begin(), checking.end(), [&](const auto& pair) { return pair.second == name; });
    };
    for (auto it = agents_gone.begin(); it != agents_gone.end();) {
      if (now - it->second >= grace && !logging_in_as(it->first)) {
        gone.push_back(it->first);
        it = agents_gone.erase(it);
      } else {
        ++it;
      }
    }
    if (gone.empty()) return;
    // Each conversation's state and its agent_left go into the store together.
    open_batch();
    std::unordered_set<std::string> moved;
    for (auto& name : gone) {
      // A page at a time: those put back are no longer the agent's, so the next page starts
      // with the rest. A page with nothing new (their updates failing) ends the loop.
      for (bool progress = true; progress;) {
        auto held = store->conversations_of_agent(name, kQueuePositions);
        if (!held) {
          cfg.logger.log(LogLevel::kError, "store: " + held.status().message());
          // Tried again at the sweeper's next tick: forgetting the agent would leave its
          // conversations with it until it came back and went away again.
          agents_gone.try_emplace(name, now - grace);
          break;
        }
        progress = false;
        for (const auto& r : *held) {
          if (!moved.insert(r.id).second) continue;
          progress = true;
          auto c = load(r.id);
          if (!c) {
            cfg.logger.log(LogLevel::kError, "store: " + c.status().message());
            continue;
          }
          cfg.logger.log(LogLevel::kInfo, "conversation " + r.id + " back in the queue: " + r.assigned_agent +
                                              " has had no connection for " + std::to_string(cfg.agent_grace_ms) + " ms");
          set_state(**c, "waiting", "");
          announce(**c, "agent_left", agent_data("agent", r.assigned_agent));
        }
        progress = progress && held->size() == kQueuePositions;
      }
    }
    if (!close_batch()) {
      // Nothing of it is stored: tried again at the sweeper's next tick.
      for (auto& name : gone) agents_gone.try_emplace(name, now - grace);
      return;
    }
    if (!moved.empty()) broadcast_queue();
  }

  // The agents of conversations held when the hub starts have no connection yet.
  void count_agents_gone() {
    auto agents = store->agents_holding();
    if (!agents) {
      cfg.logger.log(LogLevel::kError, "store: " + agents.status().message() +
                                           "; conversations held by agents stay with them until they log in and leave");
      return;
    }
    for (auto& name : *agents) {
      if (!agents_by_name.contains(name)) agents_gone.try_emplace(std::move(name), steady_seconds());
    }
  }

  std::string metrics() {
    std::size_t visitors = 0, agents = 0;
    for (const auto& [wsi, s] : sessions) (s->agent_endpoint ? agents : visitors) += 1;
    std::string m;
    auto line = [&m](std::string_view name, std::string_view labels, double v) {
      m += name;
      m += labels;
      m += ' ';
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", v);
      m += buf;
      m += '\n';
    };
    m += "# HELP madoguchi_connections Open WebSocket connections.\n# TYPE madoguchi_connections gauge\n";
    line("madoguchi_connections", "{endpoint=\"visitor\"}", static_cast<double>(visitors));
    line("madoguchi_connections", "{endpoint=\"agent\"}", static_cast<double>(agents));
    m += "# HELP madoguchi_frames_received_total Frames received from clients.\n# TYPE madoguchi_frames_received_total counter\n";
    line("madoguchi_frames_received_total", "", static_cast<double>(frames_received));
    m += "# HELP madoguchi_messages_stored_total Messages and events stored by this process.\n# TYPE madoguchi_messages_stored_total counter\n";
    line("madoguchi_messages_stored_total", "", static_cast<double>(messages_stored));
    m += "# HELP madoguchi_duplicates_total Resent messages recognized by their client id.\n# TYPE madoguchi_duplicates_total counter\n";
    line("madoguchi_duplicates_total", "", static_cast<double>(duplicates));
    m += "# HELP madoguchi_bot_replacements_total Knowledge bases taken up while serving (Hub::set_bot).\n# TYPE madoguchi_bot_replacements_total counter\n";
    line("madoguchi_bot_replacements_total", "", static_cast<double>(bot_replacements));
    m += "# HELP madoguchi_agent_logins_total Agents' hellos, by result (busy: too many being checked; throttled: too many failures).\n# TYPE madoguchi_agent_logins_total counter\n";
    line("madoguchi_agent_logins_total", "{result=\"ok\"}", static_cast<double>(logins_ok));
    line("madoguchi_agent_logins_total", "{result=\"refused\"}", static_cast<double>(logins_refused));
    line("madoguchi_agent_logins_total", "{result=\"busy\"}", static_cast<double>(logins_busy));
    line("madoguchi_agent_logins_total", "{result=\"throttled\"}", static_cast<double>(logins_throttled));
    m += "# HELP madoguchi_store_commits_total Store batches committed (one per turn of the event loop with frames).\n# TYPE madoguchi_store_commits_total counter\n";
    line("madoguchi_store_commits_total", "", static_cast<double>(commits));
    m += "# HELP madoguchi_store_failed_commits_total Store batches that could not be committed.\n# TYPE madoguchi_store_failed_commits_total counter\n";
    line("madoguchi_store_failed_commits_total", "", static_cast<double>(failed_commits));
    m += "# HELP madoguchi_conversations_cached Conversations held in memory.\n# TYPE madoguchi_conversations_cached gauge\n";
    line("madoguchi_conversations_cached", "", static_cast<double>(conversations.size()));
    m += "# HELP madoguchi_conversations_evicted_total Conversations dropped from memory (they stay in the store).\n# TYPE madoguchi_conversations_evicted_total counter\n";
    line("madoguchi_conversations_evicted_total", "", static_cast<double>(conversations_evicted));
    m += "# HELP madoguchi_errors_total Error frames sent, by code.\n# TYPE madoguchi_errors_total counter\n";
    for (const auto& [code, n] : errors_sent) line("madoguchi_errors_total", "{code=\"" + code + "\"}", static_cast<double>(n));
    m += "# HELP madoguchi_bot_replies_total Bot replies, by decision.\n# TYPE madoguchi_bot_replies_total counter\n";
    for (const auto& [d, n] : bot_replies) line("madoguchi_bot_replies_total", "{decision=\"" + d + "\"}", static_cast<double>(n));
    m += "# HELP madoguchi_bot_pending Visitors' questions given to the bot threads and not answered yet.\n# TYPE madoguchi_bot_pending gauge\n";
    line("madoguchi_bot_pending", "", static_cast<double>(bot_pending));
    if (tls_dates) {
      m += "# HELP madoguchi_tls_certificate_not_after_seconds When the TLS certificate expires (Unix time).\n# TYPE madoguchi_tls_certificate_not_after_seconds gauge\n";
      line("madoguchi_tls_certificate_not_after_seconds", "", static_cast<double>(tls_dates->not_after));
    }
    if (auto waiting = store->count_in_state("waiting")) {
      m += "# HELP madoguchi_conversations_waiting Conversations handed off and waiting for an agent.\n# TYPE madoguchi_conversations_waiting gauge\n";
      line("madoguchi_conversations_waiting", "", static_cast<double>(*waiting));
    }
    if (auto n = messages_in_store()) {
      m += "# HELP madoguchi_store_messages Messages in the store.\n# TYPE madoguchi_store_messages gauge\n";
      line("madoguchi_store_messages", "", static_cast<double>(*n));
    }
    return m;
  }

  // The messages (and events) in the store: counted once, then kept up with what this hub
  // stores, so that a scrape does not make the serving thread count millions of rows.
  // Counted again after a turn was given up (its writes are not in the store).
  std::optional<std::int64_t> messages_in_store() {
    if (!stored_base) {
      auto n = store->count_messages();
      if (!n) return std::nullopt;
      stored_base = *n;
      stored_base_at = messages_stored;
    }
    return *stored_base + static_cast<std::int64_t>(messages_stored - stored_base_at);
  }
  std::optional<std::int64_t> stored_base;  // count_messages() when messages_stored was stored_base_at
  std::uint64_t stored_base_at = 0;

  // The address a connection counts as (Session::peer, peer_key), given the socket's peer
  // address in s.peer and the request's X-Forwarded-For header.
  void set_client_address(Session& s, const std::string& forwarded_for) {
    if (!forwarded_for.empty()) {
      if (trusted_proxies.contains(s.peer)) {
        // Behind a reverse proxy of the config: the client is the one it names. A header it
        // cannot read counts as one unknown client, never as the proxy (local, so unlimited).
        auto client = detail::forwarded_client(forwarded_for);
        if (client.empty()) {
          if (!warned_unreadable_forwarded) {
            warned_unreadable_forwarded = true;
            cfg.logger.log(LogLevel::kWarning, "X-Forwarded-For from the trusted proxy " + s.peer + " names no address (\"" +
                                                   loggable(forwarded_for) + "\"); such connections count as one client");
          }
          client = "unknown-client-of-" + s.peer;
        }
        s.peer = std::move(client);
      } else if (!warned_forwarded) {
        warned_forwarded = true;
        cfg.logger.log(LogLevel::kWarning, "connections from " + s.peer + " carry X-Forwarded-For, which is ignored: if " +
                                               s.peer + " is a reverse proxy, list it in trusted_proxies, or every client "
                                               "behind it counts as one address (agents' login limits, new conversations)");
      }
    }
    s.peer_key = detail::limit_key(s.peer);
  }

  int http(lws* wsi, std::string_view uri) {
    std::string body;
    unsigned int status = HTTP_STATUS_OK;
    const char* type = "text/plain; charset=utf-8";
    if (uri == "/healthz") {
      // 503 while the hub stops (a load balancer sends new visitors elsewhere) and while the
      // store's commits fail (nothing new can be acknowledged).
      if (stop_requested) {
        status = HTTP_STATUS_SERVICE_UNAVAILABLE;
        body = "stopping\n";
      } else if (!store_failing.empty()) {
        status = HTTP_STATUS_SERVICE_UNAVAILABLE;
        body = "store failing: " + store_failing + "\n";
      } else {
        body = "ok\n";
      }
    } else if (uri == "/metrics") {
      body = metrics();
      type = "text/plain; version=0.0.4; charset=utf-8";
    } else {
      status = HTTP_STATUS_NOT_FOUND;
      body = "not found\n";
    }
    // HEAD: the headers a GET would get (its Content-Length included), and no body, which
    // a client keeping the connection would read as the start of the next response.
    const bool head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
    std::vector<unsigned char> buf(LWS_PRE + 1024 + body.size());
    unsigned char* start = buf.data() + LWS_PRE;
    unsigned char* p = start;
    unsigned char* end = buf.data() + buf.size() - 1;
    if (lws_add_http_common_headers(wsi, status, type, body.size(), &p, end)) return 1;
    if (lws_finalize_write_http_header(wsi, start, &p, end)) return 1;
    if (!head) {
      std::memcpy(p, body.data(), body.size());
      if (lws_write(wsi, p, body.size(), LWS_WRITE_HTTP_FINAL) != static_cast<int>(body.size())) return 1;
    }
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }
};

namespace {

std::string header(lws* wsi, lws_token_indexes h) {
  int len = lws_hdr_total_length(wsi, h);
  if (len <= 0) return {};
  std::string out(static_cast<std::size_t>(len) + 1, '\0');
  if (lws_hdr_copy(wsi, out.data(), len + 1, h) < 0) return {};
  out.resize(static_cast<std::size_t>(len));
  return out;
}

int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len) {
  auto* impl = static_cast<Hub::Impl*>(lws_context_user(lws_get_context(wsi)));
  switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
      std::string uri = header(wsi, WSI_TOKEN_GET_URI);
      if (uri != "/v1/visitor" && uri != "/v1/agent") return 1;
      if (!impl->cfg.allowed_origins.empty()) {
        std::string origin = header(wsi, WSI_TOKEN_ORIGIN);
        // Compared in the form the list is kept in (detail::canonical_origin).
        auto canonical = origin.empty() ? Result<std::string>(std::string()) : detail::canonical_origin(origin);
        if (!origin.empty() && (!canonical || std::find(impl->cfg.allowed_origins.begin(), impl->cfg.allowed_origins.end(),
                                                        *canonical) == impl->cfg.allowed_origins.end())) {
          impl->cfg.logger.log(LogLevel::kWarning, "refused a connection from origin " + loggable(origin));
          return 1;
        }
      }
      return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
      // A connection that never says hello (or whose hello is never accepted) is closed, so
      // that silent ones cannot use up the file descriptors; cleared once authenticated.
      lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, kHelloTimeoutS);
      auto s = std::make_unique<Session>();
      s->wsi = wsi;
      char peer[64] = "";
      if (lws_get_peer_simple(wsi, peer, sizeof peer) != nullptr) s->peer = detail::canonical_address(peer);
      impl->set_client_address(*s, header(wsi, WSI_TOKEN_X_FORWARDED_FOR));
      s->agent_endpoint = header(wsi, WSI_TOKEN_GET_URI) == "/v1/agent";
      s->tokens = impl->cfg.rate_burst;
      s->last_refill = steady_seconds();
      if (impl->stop_requested) {
        impl->send_error(*s, ErrorKind::kShuttingDown, "the hub is stopping; reconnect later");
      }
      if (impl->cfg.logger.min_level <= LogLevel::kDebug) {
        impl->cfg.logger.log(LogLevel::kDebug, std::string(s->agent_endpoint ? "agent" : "visitor") +
                                                   " connection from " + s->peer);
      }
      impl->sessions.emplace(wsi, std::move(s));
      return 0;
    }
    case LWS_CALLBACK_RECEIVE: {
      auto it = impl->sessions.find(wsi);
      if (it == impl->sessions.end()) return -1;
      Session& s = *it->second;
      if (s.closing) {  // dropped; the close waits until the peer stops sending
        s.last_heard = steady_seconds();
        return 0;
      }
      // A binary frame is measured like a text frame (its size, then the rate limit as one
      // frame, at its end), but its bytes are not kept. libwebsockets hands a large frame over
      // in many pieces.
      const bool binary = lws_frame_is_binary(wsi);
      if (s.rx_bytes + len > impl->cfg.max_frame_bytes) {
        s.rx.clear();
        s.rx_bytes = 0;
        impl->send_error(s, ErrorKind::kTooLarge,
                         "the frame is over " + std::to_string(impl->cfg.max_frame_bytes) + " bytes");
        return 0;
      }
      s.rx_bytes += len;
      if (!binary) s.rx.append(static_cast<const char*>(in), len);
      if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0) return 0;
      std::string frame = binary ? std::string(kBinaryFrame) : std::move(s.rx);
      s.rx.clear();
      s.rx_bytes = 0;
      impl->enqueue(s, std::move(frame));
      return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
      auto it = impl->sessions.find(wsi);
      if (it == impl->sessions.end()) return -1;
      Session& s = *it->second;
      if (!s.out.empty()) {
        std::string& msg = s.out.front();
        std::vector<unsigned char> buf(LWS_PRE + msg.size());
        std::memcpy(buf.data() + LWS_PRE, msg.data(), msg.size());
        if (lws_write(wsi, buf.data() + LWS_PRE, msg.size(), LWS_WRITE_TEXT) < static_cast<int>(msg.size())) return -1;
        s.out.pop_front();
        if (!s.inbox.empty() && !s.closing && !impl->backed_up(s)) impl->mark_ready(s);
        if (s.out.empty() && s.replaying && !s.closing) impl->replay_page(s);
        if (!s.out.empty() || s.closing) lws_callback_on_writable(wsi);
        return 0;
      }
      if (s.replaying && !s.closing) {
        impl->replay_page(s);
        return 0;
      }
      if (s.closing && s.quiet) {
        lws_close_reason(wsi, static_cast<lws_close_status>(s.close_code), nullptr, 0);
        return -1;
      }
      return 0;
    }

    case LWS_CALLBACK_CLOSED: {
      auto it = impl->sessions.find(wsi);
      if (it != impl->sessions.end()) {
        if (impl->cfg.logger.min_level <= LogLevel::kDebug) {
          const Session& gone = *it->second;
          impl->cfg.logger.log(LogLevel::kDebug, impl->who(gone) + " from " + gone.peer + ": connection closed");
        }
        impl->forget(*it->second);
        impl->sessions.erase(it);
      }
      impl->closing.erase(wsi);
      return 0;
    }
    case LWS_CALLBACK_FILTER_HTTP_CONNECTION: {
      // Every HTTP request, before libwebsockets serves a static file for it.
      const std::string_view uri(static_cast<const char*>(in), len);
      if (impl->static_root && !impl->static_root->allows(uri)) {
        impl->cfg.logger.log(LogLevel::kWarning, "refused static file " + loggable(uri) +
                                                     ": a symbolic link takes it outside the static folder");
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, nullptr);
        return 1;
      }
      return 0;
    }
    case LWS_CALLBACK_HTTP:
      return impl->http(wsi, std::string_view(static_cast<const char*>(in)));
    default:
      break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

}  // namespace

Hub::Hub(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Hub::~Hub() = default;

Result<std::unique_ptr<Hub>> Hub::create(HubConfig config, std::shared_ptr<const bot::Bot> bot,
                                         std::unique_ptr<Store> store) {
  if (!bot) return invalid_argument("hub: no bot");
  if (!store) return invalid_argument("hub: no store");
  if (config.secret.size() < 16) {
    return invalid_argument("hub: the token secret must be at least 16 bytes (set \"secret\" in the config)");
  }
  if (config.port < 0 || config.port > 65535) return invalid_argument("hub: port must be 0..65535");
  MDG_ASSIGN_OR_RETURN(config.host, detail::listen_address(config.host));
  for (auto& origin : config.allowed_origins) {
    MDG_ASSIGN_OR_RETURN(origin, detail::canonical_origin(origin));
  }
  if (config.rate_per_second <= 0 || config.rate_burst < 1) return invalid_argument("hub: rate limits must be positive");
  if (config.conversation_idle_ms < 0) return invalid_argument("hub: conversation_idle_ms must be 0 or more");
  if (config.agent_grace_ms < 0) return invalid_argument("hub: agent_grace_ms must be 0 or more");
  if (config.bot_threads < 1 || config.bot_threads > HubConfig::kMaxBotThreads) {
    return invalid_argument("hub: bot_threads must be 1.." + std::to_string(HubConfig::kMaxBotThreads));
  }
  if (config.new_conversations_per_minute < 0 ||
      (config.new_conversations_per_minute > 0 && config.new_conversations_burst < 1)) {
    return invalid_argument("hub: new_conversations_per_minute must be 0 (no limit) or more, and "
                            "new_conversations_burst at least 1");
  }
  for (const auto& a : config.agents) {
    if (a.name.size() > HubConfig::kMaxAgentNameBytes) {
      return invalid_argument("hub: agent name \"" + a.name.substr(0, 40) + "...\" is over " +
                              std::to_string(HubConfig::kMaxAgentNameBytes) + " bytes");
    }
  }
  for (const auto& proxy : config.trusted_proxies) {
    if (detail::canonical_address(proxy).empty()) {
      return invalid_argument("hub: trusted_proxies: \"" + proxy + "\" is not an IPv4 or IPv6 address");
    }
  }
  if (config.tls_cert.empty() != config.tls_key.empty()) {
    return invalid_argument("hub: TLS needs both a certificate and a key file");
  }
  std::vector<std::optional<detail::PasswordHash>> agent_hashes;
  std::vector<std::string> plain;
  for (const AgentAccount& a : config.agents) {
    const std::string who = "hub: agent \"" + a.name + "\": ";
    if (a.name.empty()) return invalid_argument("hub: an agent account has no name");
    if (std::count_if(config.agents.begin(), config.agents.end(), [&](const AgentAccount& b) { return b.name == a.name; }) > 1) {
      return invalid_argument(who + "two accounts have this name");
    }
    if (a.password.empty() == a.password_hash.empty()) {
      return invalid_argument(who + "set either password_hash (madoguchi-hub --hash-password makes it) or password");
    }
    if (a.password_hash.empty()) {
      plain.push_back(a.name);
      agent_hashes.emplace_back();
      continue;
    }
    auto hash = detail::parse_password_hash(a.password_hash);
    if (!hash) return invalid_argument(who + "password_hash: " + hash.status().message());
    agent_hashes.emplace_back(std::move(*hash));
  }
  auto impl = std::make_unique<Impl>();
  impl->cfg = std::move(config);
  for (const auto& proxy : impl->cfg.trusted_proxies) impl->trusted_proxies.insert(detail::canonical_address(proxy));
  if (impl->cfg.new_conversations_per_minute > 0) {
    impl->new_conversations.emplace(impl->cfg.new_conversations_per_minute, impl->cfg.new_conversations_burst);
  }
  impl->agent_hashes = std::move(agent_hashes);
  for (const auto& h : impl->agent_hashes) {
    if (h && !impl->decoy_hash) impl->decoy_hash = detail::decoy_hash(*h);
  }
  const std::string& host = impl->cfg.host;
  const bool loopback = host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
  if (!impl->cfg.agents.empty() && impl->cfg.tls_cert.empty() && !loopback) {
    impl->cfg.logger.log(LogLevel::kWarning, "agents log in over ws:// on " + (host.empty() ? "every interface" : host) +
                                                 ": their passwords cross the network in clear; serve wss:// "
                                                 "(tls_cert, tls_key) or listen on 127.0.0.1 behind a TLS proxy");
  }
  if (!impl->cfg.tls_cert.empty()) {
    // libwebsockets serves an expired certificate without a word: say it, and show its end
    // in /metrics for an alert before it comes.
    auto dates = detail::read_certificate_dates(impl->cfg.tls_cert);
    if (!dates) return dates.status();
    if (auto st = detail::check_key_matches(impl->cfg.tls_cert, impl->cfg.tls_key); !st) return st;
    impl->tls_dates = *dates;
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    if (auto warning = detail::certificate_warning(impl->cfg.tls_cert, *dates, now.count()); !warning.empty()) {
      impl->cfg.logger.log(LogLevel::kWarning, warning);
    }
  }
  if (!plain.empty()) {
    std::string names;
    for (const auto& n : plain) names += (names.empty() ? "" : ", ") + n;
    impl->cfg.logger.log(LogLevel::kWarning, "agent accounts with a plain password: " + names +
                                                 "; keep a password_hash in the config instead (madoguchi-hub --hash-password)");
  }
  impl->bot = std::move(bot);
  impl->store = std::move(store);
  {
    std::lock_guard lock(g_log_mu);
    g_lws_logger = impl->cfg.logger;
  }
  // With a logger that takes debug lines (madoguchi-hub --verbose), libwebsockets' notices too.
  lws_set_log_level(LLL_ERR | LLL_WARN | (impl->cfg.logger.min_level <= LogLevel::kDebug ? LLL_NOTICE : 0),
                    lws_log_emit);

  lws_context_creation_info info;
  std::memset(&info, 0, sizeof info);
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                 LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
  if (!impl->cfg.tls_cert.empty()) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.user = impl.get();
  info.protocols = kProtocols;
  // libev first; lws's poll() loop if its libev plugin (libwebsockets-evlib-ev) is missing.
  // The loop is declared before the context is made and destroyed after it (see ~Impl).
  if (std::unique_ptr<struct ev_loop, Impl::EvLoopDeleter> loop(ev_loop_new(EVFLAG_AUTO)); loop) {
    void* foreign_loops[1] = {loop.get()};
    info.options |= LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = foreign_loops;
    impl->ctx = lws_create_context(&info);
    info.options &= ~static_cast<std::uint64_t>(LWS_SERVER_OPTION_LIBEV);
    info.foreign_loops = nullptr;
    if (impl->ctx) {
      impl->loop = std::move(loop);
    } else {
      impl->cfg.logger.log(LogLevel::kWarning,
                           "hub: libwebsockets could not use libev (is libwebsockets-evlib-ev installed?); "
                           "serving with poll(), which is slower with many connections");
    }
  }
  if (!impl->ctx) impl->ctx = lws_create_context(&info);
  if (!impl->ctx) return unavailable("hub: libwebsockets could not create a context");

  lws_context_creation_info vh;
  std::memset(&vh, 0, sizeof vh);
  vh.options = info.options;
  vh.port = impl->cfg.port;
  vh.iface = impl->cfg.host.c_str();
  // libwebsockets 4.1 built with IPv6 binds an IPv4 address given as iface as [::] — every
  // interface, v4 and v6 — (the address lands in the IPv6 socket address's flowinfo): an IPv4
  // host gets an IPv4-only socket.
  if (in_addr v4{}; inet_pton(AF_INET, impl->cfg.host.c_str(), &v4) == 1) {
    vh.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  }
  vh.protocols = kProtocols;
  vh.vhost_name = "madoguchi";
  if (!impl->cfg.tls_cert.empty()) {
    vh.ssl_cert_filepath = impl->cfg.tls_cert.c_str();
    vh.ssl_private_key_filepath = impl->cfg.tls_key.c_str();
  }
  if (!impl->cfg.static_dir.empty()) {
    auto root = detail::StaticRoot::open(impl->cfg.static_dir);
    if (!root) return root.status();
    impl->static_root = std::move(*root);
    // /healthz and /metrics stay with the callback; everything else under / is a file.
    impl->mounts.resize(3);
    std::memset(impl->mounts.data(), 0, sizeof(lws_http_mount) * impl->mounts.size());
    const char* paths[] = {"/healthz", "/metrics"};
    for (int i = 0; i < 2; ++i) {
      auto& m = impl->mounts[static_cast<std::size_t>(i)];
      m.mountpoint = paths[i];
      m.mountpoint_len = static_cast<unsigned char>(std::strlen(paths[i]));
      m.origin = "madoguchi.v1";
      m.origin_protocol = LWSMPRO_CALLBACK;
    }
    auto& f = impl->mounts[2];
    f.mountpoint = "/";
    f.mountpoint_len = 1;
    f.origin = impl->cfg.static_dir.c_str();
    f.def = "index.html";
    f.origin_protocol = LWSMPRO_FILE;
    f.extra_mimetypes = &kStaticTypes;
    // A browser keeps a file and asks again after a minute, with its ETag (304 if unchanged):
    // a deploy shows within a minute, and a page view does not download the widget again.
    f.cache_max_age = 60;
    f.cache_reusable = 1;
    f.cache_revalidate = 1;
    impl->mounts[0].mount_next = &impl->mounts[1];
    impl->mounts[1].mount_next = &impl->mounts[2];
    vh.mounts = impl->mounts.data();
  }
  impl->vhost = lws_create_vhost(impl->ctx, &vh);
  if (!impl->vhost) {
    return unavailable("hub: cannot listen on " + impl->cfg.host + ":" + std::to_string(impl->cfg.port) +
                       " (is the port in use, or the TLS files unreadable?)");
  }
  impl->bound_port = lws_get_vhost_listen_port(impl->vhost);
  try {
    impl->bot_threads = std::make_unique<BotThreads>(impl->cfg.bot_threads, [ctx = impl->ctx]() { lws_cancel_service(ctx); });
  } catch (const std::system_error& e) {
    return unavailable(std::string("hub: cannot start the bot's threads: ") + e.what());
  }
  if (impl->decoy_hash) {
    try {
      impl->login_checks = std::make_unique<LoginChecks>([ctx = impl->ctx]() { lws_cancel_service(ctx); });
    } catch (const std::system_error& e) {
      return unavailable(std::string("hub: cannot start the thread that checks agents' passwords: ") + e.what());
    }
  }
  return std::unique_ptr<Hub>(new Hub(std::move(impl)));
}

int Hub::port() const noexcept { return impl_->bound_port.load(); }

void Hub::stop() noexcept {
  impl_->stop_requested = true;
  if (impl_->ctx) lws_cancel_service(impl_->ctx);
}

void Hub::set_bot(std::shared_ptr<const bot::Bot> bot) {
  if (!bot) return;
  {
    std::lock_guard lock(impl_->next_bot_mu);
    impl_->next_bot = std::move(bot);
  }
  if (impl_->ctx) lws_cancel_service(impl_->ctx);
}

namespace {
// Wakes the loop every `period`; with `sweep` set, also drops idle conversations from memory.
struct Ticker {
  lws_sorted_usec_list_t sul;
  lws_context* ctx;
  lws_usec_t period;
  Hub::Impl* sweep;
  static void tick(lws_sorted_usec_list_t* sul) {
    auto* t = lws_container_of(sul, Ticker, sul);
    if (t->sweep) {
      const double now = steady_seconds();
      t->sweep->evict(now);
      t->sweep->requeue_abandoned(now);
    }
    lws_sul_schedule(t->ctx, 0, &t->sul, tick, t->period);
  }
};
}  // namespace

Status Hub::run() {
  Impl& im = *impl_;
  im.cfg.logger.log(LogLevel::kInfo, "hub listening on port " + std::to_string(port()));
  Ticker sweeper{};
  sweeper.ctx = im.ctx;
  // A quarter of the idle time or of the agents' grace, within 50 ms .. 10 s.
  const std::int64_t shortest = im.cfg.agent_grace_ms > 0 ? std::min(im.cfg.conversation_idle_ms, im.cfg.agent_grace_ms)
                                                          : im.cfg.conversation_idle_ms;
  sweeper.period = std::clamp<lws_usec_t>(static_cast<lws_usec_t>(shortest) * LWS_US_PER_MS / 4,
                                          50 * LWS_US_PER_MS, 10 * LWS_US_PER_SEC);
  im.count_agents_gone();
  (void)im.messages_in_store();  // counted now, not at the first scrape
  sweeper.sweep = &im;
  lws_sul_schedule(im.ctx, 0, &sweeper.sul, Ticker::tick, sweeper.period);
  // On libev, libwebsockets 4.1 arms its timer only when a timer fires, not when a sooner one
  // is scheduled from a socket callback: such a timer (a close waiting for quiet, lws's own
  // timeouts) would wait for the next one due, up to the sweeper's 10 s. A timer every 50 ms
  // keeps that wait short.
  Ticker heartbeat{};
  heartbeat.ctx = im.ctx;
  heartbeat.period = 50 * LWS_US_PER_MS;
  if (im.loop) lws_sul_schedule(im.ctx, 0, &heartbeat.sul, Ticker::tick, heartbeat.period);
  while (!im.stop_requested) {
    if (!im.service()) break;
    im.take_up_new_bot();
    im.drain();
  }
  lws_sul_cancel(&sweeper.sul);
  // The answers the bot threads are still thinking of are stored and sent first (the
  // heartbeat goes on waking the loop meanwhile).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  im.drain();
  while (im.bot_pending > 0 && std::chrono::steady_clock::now() < deadline) {
    if (!im.service()) break;
    im.drain();
  }
  lws_sul_cancel(&heartbeat.sul);
  // Graceful shutdown: every connection gets shutting_down and close code 1001.
  for (auto& [wsi, s] : im.sessions) {
    if (!s->closing) im.send_error(*s, ErrorKind::kShuttingDown, "the hub is stopping; reconnect later");
  }
  // Wakes the loop while the hub stops (the heartbeat again, on either loop), so that the
  // deadline is noticed.
  lws_sul_schedule(im.ctx, 0, &heartbeat.sul, Ticker::tick, heartbeat.period);
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!im.sessions.empty() && std::chrono::steady_clock::now() < deadline) {
    if (!im.service()) break;
    im.drain();
  }
  lws_sul_cancel(&heartbeat.sul);
  im.cfg.logger.log(LogLevel::kInfo, "hub stopped");
  return Status::ok();
}

}  // namespace v1
}  // namespace madoguchi::hub
