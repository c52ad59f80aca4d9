// What madoguchi::Client and madoguchi::AgentClient share (docs/client.md): one network thread
// running the libwebsockets loop, one WebSocket to a hub that comes back by itself with
// back-off, an outbox of messages that leave it only on the hub's `ack` (kept in a state file
// when there is one), paced writes, control frames, a flushing shutdown, and events delivered
// on the network thread (Dispatch::kCallback) or queued for poll() (Dispatch::kPoll).
//
// A client derives from EventConnection<its event type> and adds what its endpoint says: the
// hello, what each frame from the hub means, and what else it keeps in the state file.
//
// Two worlds meet here:
//   - the network thread (run()) owns the lws context, the connection and every member under
//     "network thread only"; every lws call happens on it, from lws callbacks and sul timers;
//   - public calls, from any thread, touch only the members guarded by `mu_` and wake the loop
//     with lws_cancel_service() (the one lws call that is safe from another thread), made while
//     holding `mu_` so that the context cannot be destroyed under it.
// Lock order: life_mu_ -> poll_mu_ -> persist_mu_ -> mu_. No lock is held while an event's
// callback runs. A derived class guards its own shared members with mu_ too.
//
// Private to mdg_client.
#pragma once

#include "client/state_file.hpp"

#include <madoguchi/client.hpp>
#include <madoguchi/log.hpp>
#include <madoguchi/protocol.hpp>
#include <madoguchi/status.hpp>

#include <libwebsockets.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace madoguchi::detail::client {

struct ParsedUrl {
  bool tls = false;
  std::string host;
  int port = 0;
  std::string path;
  std::string host_header;  // host[:port], [v6][:port]
};

// What Connection needs from a client's config.
struct ConnectionConfig {
  std::string name;        // "client", "agent client": starts every log line and refusal
  ParsedUrl url;
  std::string state_path;  // empty: memory only
  std::vector<int> backoff_ms;
  int jitter_percent = 30;
  Dispatch dispatch = Dispatch::kCallback;
  Logger logger;
};

// The checks of create() common to both clients: the url (ws://host[:port][/path] or wss://...,
// the path defaulting to `default_path`), the back-off table and the jitter. `what` names the
// config ("client", "agent client") in the messages.
Result<ParsedUrl> check_connection_settings(std::string_view what, std::string_view url, std::string_view default_path,
                                            const std::vector<int>& backoff_ms, int jitter_percent);

// A ConnectionConfig from a client's config (ClientConfig, AgentClientConfig), checked.
template <class ClientConfigT>
Result<ConnectionConfig> connection_config(std::string name, std::string_view default_path, const ClientConfigT& c) {
  ConnectionConfig base;
  MDG_ASSIGN_OR_RETURN(base.url, check_connection_settings(name, c.url, default_path, c.backoff_ms, c.jitter_percent));
  base.name = std::move(name);
  base.state_path = c.state_path;
  base.backoff_ms = c.backoff_ms;
  base.jitter_percent = c.jitter_percent;
  base.dispatch = c.dispatch;
  base.logger = c.logger;
  return base;
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(ConnectionConfig config);
  virtual ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // ---- public side: any thread ---------------------------------------------------------
  // Locks state_path and reads it (create() time). The caller takes what it keeps from the
  // returned state; its outbox is loaded here.
  Result<std::optional<PersistedState>> open_state_file();

  Status start();
  // Checks a message as the hub would, gives it a client id, appends it to the outbox and writes
  // the state file before returning (docs/client.md, "Sending: the outbox"). `conversation` is
  // empty for a visitor; `choice` is the entry id of a picked clarification option (or empty).
  Result<std::string> enqueue_message(std::string conversation, std::string_view text,
                                      std::vector<protocol::Attachment> attachments,
                                      std::string_view choice = {});
  // A frame for the current connection only (typing, read, agent actions), written after the
  // welcome. While not connected: ignored (ok) when `need_connection` is false, else
  // kUnavailable. After close() or a refusal: kClosed when `need_connection`, else ok.
  Status queue_frame(const protocol::Frame& frame, bool need_connection);
  // Typing (`active`: started, else stopped) and read receipts (seq >= 0, else
  // kInvalidArgument), queued as queue_frame(f, false). `conversation` is empty for a visitor.
  Status send_typing(std::string_view conversation, bool active);
  Status send_read(std::string_view conversation, std::int64_t seq);
  std::size_t poll(int timeout_ms, std::size_t max);
  ConnectionState current_state() const;
  std::size_t pending() const;
  Status close(int timeout_ms);
  // The client object that owns this connection is destroyed: close(0); or, from its own
  // callback on the network thread, the thread finishes by itself (without flushing) and
  // releases this object when it ends.
  void owner_gone();
  // True on this connection's network thread (its callbacks in kCallback).
  bool on_network_thread() const;
  // The settings it was made with (constant: any thread).
  const ConnectionConfig& config() const { return cfg_; }
  // Runs `read` under mu_: how a client's getters read its shared members.
  template <class F>
  auto with_lock(F&& read) const {
    std::lock_guard lock(mu_);
    return read();
  }

  // lws glue (network thread).
  int on_callback(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);

 protected:
  // ---- what a client adds (network thread) ---------------------------------------------
  virtual std::string hello_json() = 0;
  // Every decoded frame from the hub except ack, error and pong, which Connection handles.
  virtual void on_frame(protocol::Frame& frame) = 0;
  // The hub acknowledged `ack.id`. `msg` is the outbox message that left the outbox now (it
  // stays in the state file until the app has the ack: see ack_delivered), or null when it
  // had left before (a resend's second ack).
  virtual void on_acked(const protocol::Frame& ack, const OutboxEntry* msg) = 0;
  // Events for the app: an error frame (from the hub, or made here: kind internal for a state
  // file that cannot be written), and a change of current_state().
  virtual void emit_error(const protocol::Frame& error) = 0;
  virtual void emit_state() = 0;
  // Under mu_: fills what the client keeps in the state file besides the outbox.
  virtual void save_locked(PersistedState& state) const = 0;

  // ---- helpers for a client (network thread unless said) --------------------------------
  // The hub accepted the hello: the back-off starts again, frames flow, state kConnected.
  void accept_welcome();
  // A message of ours the hub shows us (a replay, a transcript) while it is still in the
  // outbox: it was stored by an earlier connection whose ack was lost, so it counts as the ack
  // (duplicate: true). Returns true when it was ours.
  bool ack_from_replay(const protocol::Frame& message);
  // Writes the state file now; a failure is logged and surfaced through emit_error.
  void persist_or_report();
  // Under mu_: the app has had the kAck of `id` (on the thread that delivered it): the
  // message leaves the state file with the next write.
  void ack_delivered_locked(const std::string& id);
  // Under mu_: something worth writing to the state file soon, but not at once.
  void mark_dirty_locked() { dirty_ = true; }
  // Writes a frame on this connection (after the welcome), before outbox messages.
  void send_now(std::string frame);
  // Runs `deliver` (which calls the app's callback) on the network thread, or queues it for
  // poll(). Every event goes through here, in order.
  void dispatch(std::function<void()> deliver);
  // Calls the app's callback, catching and logging what it throws.
  template <class Event>
  void call(const std::function<void(const Event&)>& on_event, const Event& event) const {
    if (!on_event) return;
    try {
      on_event(event);
    } catch (const std::exception& e) {
      log(LogLevel::kError, std::string("on_event threw: ") + e.what());
    } catch (...) {
      log(LogLevel::kError, "on_event threw");
    }
  }
  void want_write();
  void log(LogLevel level, const std::string& message) const;
  bool logs(LogLevel level) const { return cfg_.logger.enabled(level); }

  const ConnectionConfig cfg_;
  mutable std::mutex mu_;

 private:
  struct Timer {
    lws_sorted_usec_list_t sul;  // first member: a sul pointer is a Timer pointer
    Connection* self = nullptr;
    void (Connection::*fn)() = nullptr;
  };
  struct Queued {
    OutboxEntry msg;
    bool committed = false;  // written to state_path (enqueue returned); only these are sent
  };
  using Clock = std::chrono::steady_clock;

  // ---- shared: guarded by mu_ -----------------------------------------------------------
  std::condition_variable events_cv_;
  std::deque<Queued> outbox_;
  // Messages the hub has acknowledged whose kAck the app has not had yet. They stay in the
  // state file until it has: if the app stops first (a crash, or kPoll events never polled),
  // the next client sends them again and gets their ack (duplicate), where it would otherwise
  // get its own message back in the replay as a new one.
  std::deque<OutboxEntry> acked_;
  ConnectionState state_ = ConnectionState::kDisconnected;
  bool dirty_ = false;              // the state file is behind (written soon)
  std::deque<std::string> control_;  // frames for the network thread
  // Typing and read receipts by conversation ("" for a visitor's), to be written: the last
  // typing state and the highest seq read. Kept as state, not as frames, so that an app that
  // calls typing() at every key or mark_read() for every message of a replay sends each at
  // most once per turn and never holds the outbox up (see on_writeable).
  struct Indicators {
    std::optional<bool> typing;
    std::int64_t read = 0;  // 0: none
  };
  std::map<std::string, Indicators> indicators_in_;
  bool stop_requested_ = false;
  Clock::time_point close_deadline_;
  bool refused_ = false;  // the hub refused the hello (unauthorized...)
  std::string refusal_;
  bool closed_ = false;          // close() has finished
  lws_context* ctx_ = nullptr;   // non-null while the loop runs
  std::deque<std::function<void()>> events_;  // kPoll
  std::mt19937_64 id_rng_;

  std::mutex persist_mu_;  // one state-file write at a time, snapshots in order
  std::mutex life_mu_;     // start() and close()
  std::mutex poll_mu_;     // one poll() at a time
  std::thread thread_;
  bool started_ = false;   // under life_mu_
  std::atomic<bool> suppress_events_{false};  // destroyed from a callback
  FileLock state_lock_;
  const std::uint64_t id_;

  // ---- network thread only ------------------------------------------------------------
  lws_context* nctx_ = nullptr;
  lws* wsi_ = nullptr;
  bool conn_active_ = false;  // a connection exists (connecting or established)
  bool established_ = false;
  bool hello_sent_ = false;
  bool welcomed_ = false;
  bool closing_ws_ = false;
  std::set<std::string> sent_ids_;  // outbox ids written on this connection
  std::deque<std::string> tx_;      // control frames to write
  std::map<std::string, Indicators> indicators_;  // typing and read receipts to write
  bool last_was_indicator_ = false;  // the last frame written was one of indicators_
  std::string rx_;
  std::size_t attempt_ = 0;         // retries since the last welcome
  // The next connect waits at least this long: the retry_after_ms of a hello the hub turned
  // away with rate_limited (at most kMaxHelloRetryAfterMs).
  int hello_retry_after_ms_ = 0;
  static constexpr std::int64_t kMaxHelloRetryAfterMs = 300000;
  bool reconnect_pending_ = false;
  bool paused_ = false;             // outbox sending paused after rate_limited/internal
  bool shutting_down_ = false;
  bool finishing_ = false;
  bool deadline_passed_ = false;
  bool loop_done_ = false;
  bool destroying_ = false;
  double tokens_;
  Clock::time_point refilled_ = Clock::now();
  std::mt19937 jitter_rng_{std::random_device{}()};
  Timer reconnect_timer_{}, deadline_timer_{}, pace_timer_{}, resume_timer_{}, guard_timer_{}, flush_timer_{};

  Status persist();
  Status persist_held();
  void set_state(ConnectionState s);
  void wake_locked();
  std::string new_id_locked();
  Status closed_status_locked() const;
  std::size_t committed_pending_locked() const;
  bool outbox_empty();
  // Takes message `id` out of the outbox (into acked_ with `acked`).
  std::optional<OutboxEntry> remove_from_outbox(const std::string& id, bool acked = false);
  bool in_outbox(const std::string& id);
  bool has_unsent();
  std::optional<OutboxEntry> next_unsent();
  bool has_write_work();
  // The next typing or read frame of indicators_ (which must not be empty), taken out of it.
  std::string take_indicator();

  void schedule(Timer& t, int ms, void (Connection::*fn)());
  static void on_timer(lws_sorted_usec_list_t* sul);
  void cancel_timers();
  void run(std::promise<Status>& ready);
  void connect_now();
  void reset_connection();
  void on_gone(lws* w, std::string_view why);
  void schedule_reconnect();
  void on_reconnect_timer();
  int on_writeable(lws* w);
  void on_pace_timer();
  void on_resume_timer();
  void on_guard_timer();
  void finish_loop();
  void on_deadline_timer();
  void on_flush_timer();
  void on_wakeup();
  void begin_shutdown(Clock::time_point deadline);
  void check_shutdown_done();
  void on_text(std::string_view text);
  void on_ack(const protocol::Frame& f);
  void on_error(const protocol::Frame& f);
  int on_receive(lws* w, const void* in, std::size_t len);
};

// A Connection that delivers events of type Event (ClientEvent, AgentEvent: a `kind` with
// kState and kError, the `state` after it, and a protocol `frame`) to the app's on_event.
template <class Event>
class EventConnection : public Connection {
 public:
  EventConnection(ConnectionConfig base, std::function<void(const Event&)> on_event)
      : Connection(std::move(base)), on_event_(std::move(on_event)) {}

 protected:
  // Stamps the state and dispatches (network thread).
  void emit(Event ev) {
    ev.state = current_state();
    dispatch([this, ev = std::move(ev)] { deliver(ev); });
  }
  // A frame as an event of `kind`, its JSON parts read into the fields the event type has:
  // a bot message's `bot` (ClientEvent), an event's `data` (ClientEvent, AgentEvent).
  void emit(typename Event::Kind kind, const protocol::Frame& f) {
    Event ev;
    ev.kind = kind;
    ev.frame = f;
    if constexpr (requires { ev.bot; }) {
      if (kind == Event::Kind::kMessage && !f.bot_json.empty()) ev.bot = protocol::parse_bot_info(f.bot_json);
    }
    if constexpr (requires { ev.data; }) {
      if (kind == Event::Kind::kEvent) ev.data = protocol::parse_event_data(f.data_json);
    }
    emit(std::move(ev));
  }
  // Runs on_event (on the network thread or in poll()), then, in one step under mu_, what
  // the app now has: an ack's message leaves the state file and delivered_locked() counts
  // the event. (In two steps, a state file written between them, by a send() on another
  // thread, would lack the message and still have the old seq: after a crash there, the
  // replay would bring the visitor's own message back as a new one.)
  void deliver(const Event& ev) {
    call(on_event_, ev);
    std::lock_guard lock(mu_);
    if (ev.kind == Event::Kind::kAck) ack_delivered_locked(ev.frame.id);
    delivered_locked(ev);
  }
  // Under mu_: the app has had `ev`.
  virtual void delivered_locked(const Event& /*ev*/) {}

  void emit_state() override {
    Event ev;
    ev.kind = Event::Kind::kState;
    emit(std::move(ev));
  }
  void emit_error(const protocol::Frame& f) override { emit(Event::Kind::kError, f); }
  // The hub's welcome, once the client has taken in what it says: connected (accept_welcome),
  // the kWelcome event, and the queued frames written.
  void welcomed(const protocol::Frame& welcome) {
    accept_welcome();
    emit(Event::Kind::kWelcome, welcome);
    want_write();
  }

 private:
  const std::function<void(const Event&)> on_event_;
};

}  // namespace madoguchi::detail::client
