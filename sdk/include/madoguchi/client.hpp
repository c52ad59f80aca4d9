// madoguchi/client.hpp: the live-chat client for visitors (docs/client.md, docs/protocol.md).
//
// A Client keeps one WebSocket connection to a hub's /v1/visitor endpoint and never loses a
// message the app gave it:
//   - send() puts the message in an outbox, written to `state_path` before send() returns, and
//     the message leaves the outbox only when the hub acknowledges it (`ack`). After every
//     reconnect, and after an app restart with the same state_path, the outbox is resent in
//     order with the same client ids; the hub stores each id once, so each message arrives
//     exactly once.
//   - Incoming frames are numbered (`seq`); the client sends the highest seq it delivered in
//     `hello` and drops any frame it already has, so a reconnect resumes where it stopped.
//   - The connection comes back by itself, with exponential back-off and jitter.
//
// Threading: the client owns one network thread (started by start()) that runs the
// libwebsockets loop; every libwebsockets call happens there. Every public member function is
// safe to call from any thread at any time (each one says what it does when called from the
// client's own callback). Events reach the app through ClientConfig::on_event, either on the
// network thread (Dispatch::kCallback) or on whatever thread calls poll() (Dispatch::kPoll).
// Callbacks never run concurrently with each other.
#pragma once

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

// Where on_event runs.
enum class Dispatch {
  kCallback,  // on the network thread, as frames arrive; must not block
  kPoll,      // queued; run by poll() on the calling thread (UI loops, bindings)
};

enum class ConnectionState {
  kConnecting,    // a connection attempt (or the hello/welcome exchange) is under way
  kConnected,     // the hub sent `welcome`: messages flow
  kDisconnected,  // not started yet, or the connection was lost and a retry is scheduled
  kClosed,        // close() was called, or the hub refused the conversation (see Client)
};

std::string_view to_string(ConnectionState state) noexcept;

// One thing that happened. Plain value; copy freely.
struct ClientEvent {
  enum class Kind {
    kState,    // the connection state changed: `state`
    kWelcome,  // the hub accepted hello: `frame` is the welcome (conversation, state, last_seq)
    kMessage,  // `frame` is a message of the conversation (bot, agent, or the visitor elsewhere)
    kEvent,    // `frame` is an event (handoff_started, agent_joined, queue_position, ...)
    kAck,      // `frame.id` (an id send() returned) is stored as `frame.seq`; it left the outbox
    kTyping,   // `frame` is the other side's typing indicator
    kRead,     // `frame.seq`: the other side has read up to there
    kError,    // `frame` is an error frame (from the hub, or made by the client: see docs/client.md)
  } kind = Kind::kState;
  ConnectionState state = ConnectionState::kDisconnected;  // the state after this event
  protocol::Frame frame;
  // kMessage from the bot: frame.bot_json read: its decision and, for a clarification, the
  // options to show (pick one with Client::choose()).
  protocol::BotInfo bot;
  // kEvent: frame.data_json read: the hand-off reason, the queue position, agent names...
  protocol::EventData data;
};

// Settings of a Client, checked once by Client::create().
struct ClientConfig {
  // ws://host[:port]/v1/visitor or wss://host[:port]/v1/visitor (the path defaults to /v1/visitor).
  std::string url;
  // A file for the outbox, the conversation token and the last seq; empty: memory only (an app
  // restart then loses unsent messages and starts a new conversation). The client also keeps
  // "<state_path>.lock" beside it so that two clients cannot share one state file.
  std::string state_path;
  std::string locale;                         // sent in hello: "ja", "en", ...
  std::map<std::string, std::string> visitor;  // sent in hello: attributes shown to agents
  // Reconnect delays: the n-th retry in a row waits backoff_ms[min(n, size-1)] milliseconds,
  // give or take jitter_percent. A welcome starts the table again. Each value must be > 0.
  std::vector<int> backoff_ms = {500, 1000, 2000, 4000, 8000, 16000, 30000};
  int jitter_percent = 30;  // 0..100
  Dispatch dispatch = Dispatch::kCallback;
  // Receives every ClientEvent (may be empty). It must not block for long, must not throw (an
  // exception is caught and logged), and may call any Client function except close() from the
  // network thread (kCallback). The Client may be destroyed from it.
  std::function<void(const ClientEvent&)> on_event;
  // Diagnostics (libwebsockets' own lines too). No message text or token is logged above kDebug.
  Logger logger;
};

// The visitor side of a live chat.
//
// Thread-safety: every member function may be called from any thread, concurrently.
// Lifetime: the destructor implies close(0); messages still in the outbox stay in state_path.
//
// Refusals: when the hub answers hello with `unauthorized` (a forged or expired token) or
// `unsupported_version`, the client surfaces the error (a kError event), stops reconnecting and
// moves to kClosed; send() then fails with kClosed. It does not start a new conversation by
// itself: the outbox stays in state_path for the app to decide (docs/client.md).
class Client {
 public:
  // Checks the config, reads state_path when it exists and locks it. Errors: kInvalidArgument
  // for a bad url, back-off table or jitter, or a corrupt state file (the message names the
  // file: it may hold unsent messages, so it is never overwritten silently); kUnavailable when
  // the state file cannot be read or another Client uses it. Does not connect.
  static Result<std::unique_ptr<Client>> create(ClientConfig config);

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts the network thread, which connects (and keeps reconnecting). Errors: kInvalidArgument
  // if already started, kClosed after close(), kUnavailable if libwebsockets cannot start.
  // From a callback: allowed (it fails with kInvalidArgument, as the client is started).
  Status start();

  // Queues a message and returns its client id. The message is in the outbox, and written to
  // state_path, when this returns; it is sent as soon as the client is connected (before
  // start(), or while offline, it waits). Errors: kInvalidArgument when the hub would refuse the
  // message (empty without attachments, not UTF-8, over 64 KiB, more than 16 attachments...);
  // kUnavailable if state_path cannot be written (the message was not queued); kClosed after
  // close() or a refusal by the hub. From a callback: allowed.
  Result<std::string> send(std::string_view text, std::vector<protocol::Attachment> attachments = {});

  // Queues the visitor's pick of a clarification option (one of ClientEvent::bot.options): a
  // message whose text is the option's label, as the transcript will show it, and whose
  // `choice` is its entry, so that the bot answers with that entry whatever the label says and
  // whatever was said since. The same outbox and guarantees as send(), the choice included.
  // Errors: as send(); kInvalidArgument when the option has no entry or no label.
  Result<std::string> choose(const protocol::BotOption& option);

  // Tells the other side the visitor is typing (true) or stopped (false). Only while connected;
  // otherwise ignored and ok. From a callback: allowed.
  Status typing(bool active);

  // Tells the other side the visitor has seen everything up to `seq` (>= 0; else
  // kInvalidArgument). Only while connected; otherwise ignored and ok. From a callback: allowed.
  Status mark_read(std::int64_t seq);

  // kPoll: waits up to timeout_ms (0: do not wait, < 0: wait forever) for events, then runs up
  // to `max` queued events' on_event on this thread, in order; returns how many ran. kCallback:
  // returns 0 at once. Concurrent poll() calls take turns; poll() from inside on_event
  // returns 0.
  std::size_t poll(int timeout_ms, std::size_t max = SIZE_MAX);

  // The connection state now. From any thread, including callbacks.
  ConnectionState state() const;
  // The conversation id from the last welcome (persisted); empty before the first one.
  std::string conversation() const;
  // The highest seq delivered to on_event (persisted; sent as last_seq in hello).
  std::int64_t last_seq() const;
  // The number of messages in the outbox (sent or not, not yet acknowledged).
  std::size_t pending() const;

  // Stops the client: tries to flush the outbox until timeout_ms (connecting at once if it is
  // waiting to retry), closes the connection, stops and joins the network thread. Returns ok
  // when the outbox is empty, kDeadlineExceeded otherwise (the messages stay in state_path and
  // are sent by the next Client that opens it). Safe to call more than once. From an on_event
  // callback on the network thread (kCallback) it fails with kInvalidArgument, as it would wait
  // for itself; from a kPoll callback it is allowed.
  Status close(int timeout_ms);

  struct Impl;

 private:
  explicit Client(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace v1
}  // namespace madoguchi
