// madoguchi/agent_client.hpp: the live-chat client for support agents (docs/client.md,
// docs/protocol.md "Agent frames").
//
// An AgentClient keeps one WebSocket connection to a hub's /v1/agent endpoint, logged in with
// the agent's name and password, and works exactly like the visitor's Client underneath:
//   - the queue of handed-off conversations comes as an event whenever it changes;
//   - take() assigns a conversation to the agent; the hub answers with the conversation: the
//     hand-off package (reason, triage scores, the bot's candidates, visitor attributes) and
//     the stored messages (the last 10,000 at most, within 2 MiB);
//   - send() puts a reply in an outbox (in state_path too when set); it leaves the outbox only
//     on the hub's ack and is resent with the same client id after a reconnect, so it reaches
//     the visitor exactly once;
//   - after a reconnect the client takes the conversations it holds again, and hands on only
//     the frames it had not delivered yet: every frame is delivered once (dedupe by seq, per
//     conversation).
// Wrong credentials are final: the client surfaces `unauthorized`, stops reconnecting and
// moves to kClosed.
//
// Threading: as Client (madoguchi/client.hpp). One network thread runs the libwebsockets loop;
// every public member function is safe from any thread; on_event runs on the network thread
// (Dispatch::kCallback) or on the thread that calls poll() (Dispatch::kPoll), never two at once.
#pragma once

#include <madoguchi/client.hpp>
#include <madoguchi/log.hpp>
#include <madoguchi/protocol.hpp>
#include <madoguchi/status.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace madoguchi {
inline namespace v1 {

// One conversation of the hub's queue: handed off and waiting, or with an agent.
struct QueueEntry {
  std::string conversation;
  std::string state;     // "waiting" or "agent"
  double priority = 0;   // higher first (from the hand-off's triage scores)
  std::string locale;    // "ja", "en", ...
  std::string reason;    // why the bot handed off
  std::int64_t since = 0;  // ms since the epoch: when it was handed off (waiting since)
  std::string agent;     // who has it (state "agent"); empty while waiting
};

// The bot's hand-off package (docs/policy.md, "Hand-off package"), read from its JSON. Fields
// missing from the JSON stay empty; the JSON itself is in AgentEvent::frame.handoff_json.
struct HandoffPackage {
  struct Turn {
    std::string role;      // "visitor", "bot", "agent"
    std::string text;
    std::string entry;     // the entry a bot turn answered with
    std::string decision;  // "answer", "clarify", "handoff", ...
  };
  struct Candidate {
    std::string entry;
    double confidence = 0;  // calibrated, 0..1
    double score = 0;       // the ranking model's score
    double bm25 = 0;
  };
  std::string reason;
  std::string locale;
  std::vector<Turn> transcript;       // as the bot saw it when it handed off
  std::vector<Candidate> candidates;  // the bot's best guesses, best first (empty when nothing matched)
  std::vector<std::string> rules_fired;
  double severity = 0, complexity = 0, effort = 0;  // triage scores, 0..1
  std::vector<std::string> signals;                 // what raised them ("anger:...", "urgency:...")
  std::map<std::string, std::string> slots;
  std::map<std::string, std::string> visitor;       // visitor attributes from the visitor's hello
};

// One thing that happened. Plain value; copy freely.
struct AgentEvent {
  enum class Kind {
    kState,         // the connection state changed: `state`
    kWelcome,       // the hub accepted the credentials: `frame.agent`
    kQueue,         // `queue` is the whole queue now (after welcome, refresh_queue(), and every change)
    kConversation,  // the hub sent a conversation (after take()): `frame`, `handoff`, `transcript`, `resumed`
    kMessage,       // `frame` is a message of `frame.conversation` (the visitor, the bot, another agent)
    kEvent,         // `frame` is an event of `frame.conversation` (agent_joined, transferred, handed_back, ...)
    kAck,           // `frame.id` (an id send() returned) is stored as `frame.seq` in `frame.conversation`
    kTyping,        // `frame`: the visitor of `frame.conversation` is typing (state start|stop)
    kRead,          // `frame.seq`: the visitor of `frame.conversation` has read up to there
    kError,         // `frame` is an error frame (from the hub, or made by the client: see docs/client.md)
  } kind = Kind::kState;
  ConnectionState state = ConnectionState::kDisconnected;  // the state after this event
  protocol::Frame frame;
  std::vector<QueueEntry> queue;            // kQueue
  HandoffPackage handoff;                   // kConversation (empty when the bot never handed off)
  std::vector<protocol::Frame> transcript;  // kConversation: the stored messages and events, by seq (the last 10,000 at most, within 2 MiB)
  protocol::EventData data;                 // kEvent: frame.data_json read (agent names, reason...)
  // kConversation: the agent holds the conversation and this client had delivered it before (a
  // take() again, or the automatic one after a reconnect). `transcript` is still whole; the
  // frames in it that were not delivered yet follow as kMessage/kEvent events. A conversation
  // taken again after the agent let it go (handed back, transferred, closed) is not resumed.
  bool resumed = false;
};

// Settings of an AgentClient, checked once by AgentClient::create().
struct AgentClientConfig {
  // ws://host[:port]/v1/agent or wss://host[:port]/v1/agent (the path defaults to /v1/agent).
  std::string url;
  std::string agent;     // the agent's name, as configured in the hub
  std::string password;  // never logged; use wss:// outside development
  // A file for the outbox (replies not yet acknowledged); empty: memory only (the outbox then
  // survives reconnects but not an app restart). "<state_path>.lock" is kept beside it.
  std::string state_path;
  // Reconnect delays and jitter, as ClientConfig.
  std::vector<int> backoff_ms = {500, 1000, 2000, 4000, 8000, 16000, 30000};
  int jitter_percent = 30;  // 0..100
  Dispatch dispatch = Dispatch::kCallback;
  // Receives every AgentEvent (may be empty). It must not block for long, must not throw (an
  // exception is caught and logged), and may call any AgentClient function except close() from
  // the network thread (kCallback). The AgentClient may be destroyed from it.
  std::function<void(const AgentEvent&)> on_event;
  // Diagnostics. No message text, password or token is logged above kDebug (the password never).
  Logger logger;
};

// The support agent's side of live chat.
//
// Thread-safety: every member function may be called from any thread, concurrently.
// Lifetime: the destructor implies close(0); replies still in the outbox stay in state_path.
//
// Actions (take, transfer, hand_back, close_conversation, refresh_queue) need a connection:
// while not connected they fail with kUnavailable and nothing is sent. Their answer comes as
// events (kConversation, kEvent, kQueue) or as a kError (`conflict`, `forbidden`, `not_found`).
class AgentClient {
 public:
  // Checks the config (url, agent name and password not empty, back-off, jitter), reads
  // state_path when it exists and locks it. Errors: kInvalidArgument, or kUnavailable when the
  // state file cannot be read or another client uses it. Does not connect.
  static Result<std::unique_ptr<AgentClient>> create(AgentClientConfig config);

  ~AgentClient();
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  // Starts the network thread, which connects (and keeps reconnecting). Errors as Client::start().
  Status start();

  // Asks the hub for the queue again (it also comes by itself whenever it changes): kQueue.
  Status refresh_queue();
  // Assigns `conversation` to this agent (from the queue: waiting, or still with the bot). The
  // hub answers with kConversation, and the visitor sees agent_joined. Taking a conversation
  // this agent has already is allowed: it fetches the conversation again (resumed).
  Status take(std::string_view conversation);
  // Queues a reply to the visitor of `conversation` (which this agent must hold) and returns
  // its client id; kAck names it when the hub has stored it. Works offline too: the outbox is
  // sent after the next welcome. Errors: kInvalidArgument (empty conversation, or a message the
  // hub would refuse), kUnavailable (state_path cannot be written), kClosed.
  Result<std::string> send(std::string_view conversation, std::string_view text,
                           std::vector<protocol::Attachment> attachments = {});
  // Typing indicator and read receipt for the visitor; only while connected, else ignored.
  Status typing(std::string_view conversation, bool active);
  Status mark_read(std::string_view conversation, std::int64_t seq);
  // Gives the conversation to another agent (by name); everyone gets the `transferred` event.
  Status transfer(std::string_view conversation, std::string_view to);
  // Gives the conversation back to the bot; `handed_back`.
  Status hand_back(std::string_view conversation);
  // Closes the conversation (not the connection: that is close()); `conversation_closed`.
  Status close_conversation(std::string_view conversation);

  // As Client::poll().
  std::size_t poll(int timeout_ms, std::size_t max = SIZE_MAX);

  ConnectionState state() const;
  // The last queue the hub sent.
  std::vector<QueueEntry> queue() const;
  // The conversations this agent holds, as far as this client knows: taken (or transferred to
  // it) and not handed back, transferred away or closed since.
  std::vector<std::string> conversations() const;
  // The number of replies in the outbox (sent or not, not yet acknowledged).
  std::size_t pending() const;

  // As Client::close(): flushes the outbox until timeout_ms, closes the connection and joins the
  // network thread; kDeadlineExceeded when replies are left (they stay in state_path).
  Status close(int timeout_ms);

  struct Impl;

 private:
  explicit AgentClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace v1
}  // namespace madoguchi
