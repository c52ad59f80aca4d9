// madoguchi::Client: the visitor's live-chat client (docs/client.md).
//
// The connection, the outbox, back-off and event dispatch are Connection's
// (client/connection.hpp); this file adds what the visitor endpoint says: the hello with the
// conversation token, the welcome, and one conversation's messages numbered by seq.
#include <madoguchi/client.hpp>

#include "client/connection.hpp"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

namespace madoguchi {
inline namespace v1 {

std::string_view to_string(ConnectionState state) noexcept {
  switch (state) {
    case ConnectionState::kConnecting: return "connecting";
    case ConnectionState::kConnected: return "connected";
    case ConnectionState::kDisconnected: return "disconnected";
    case ConnectionState::kClosed: return "closed";
  }
  return "?";
}

namespace {

using detail::client::PersistedState;
using protocol::Frame;
using protocol::FrameType;

constexpr const char* kClientName = "madoguchi-cpp/0.1";

}  // namespace

struct Client::Impl final : detail::client::EventConnection<ClientEvent> {
  // Takes what the hello says from `c`; the rest of it is in `base` (Connection's).
  Impl(detail::client::ConnectionConfig base, ClientConfig c)
      : EventConnection(std::move(base), std::move(c.on_event)),
        locale(std::move(c.locale)),
        visitor(std::move(c.visitor)) {}

  // ---- constant: any thread -----------------------------------------------------------
  const std::string locale;
  const std::map<std::string, std::string> visitor;

  // ---- shared: guarded by mu_ -----------------------------------------------------------
  std::string token;
  std::string conversation;
  std::int64_t last_seq = 0;  // the highest seq delivered to on_event (persisted)

  // ---- network thread only ------------------------------------------------------------
  std::int64_t seen_seq = 0;  // the highest seq taken in (dedupe)

  void save_locked(PersistedState& s) const override {
    s.token = token;
    s.conversation = conversation;
    s.last_seq = last_seq;
  }

  // The app has had the event: its seq counts as delivered.
  void delivered_locked(const ClientEvent& ev) override {
    bool numbered = ev.kind == ClientEvent::Kind::kMessage || ev.kind == ClientEvent::Kind::kEvent ||
                    ev.kind == ClientEvent::Kind::kAck;
    if (numbered && ev.frame.seq && *ev.frame.seq > last_seq) {
      last_seq = *ev.frame.seq;
      mark_dirty_locked();
    }
  }

  // ---- frames from the hub ------------------------------------------------------------
  std::string hello_json() override {
    Frame h;
    h.type = FrameType::kHello;
    {
      std::lock_guard lock(mu_);
      if (!token.empty()) {
        h.token = token;
        h.last_seq = last_seq;
      }
    }
    h.locale = locale;
    for (const auto& [k, v] : visitor) h.visitor.emplace(k, v);
    h.client = kClientName;
    if (logs(LogLevel::kDebug)) {
      log(LogLevel::kDebug, h.token.empty() ? std::string("hello: a new conversation")
                                            : "hello: resuming after seq " + std::to_string(*h.last_seq));
    }
    return protocol::encode(h);
  }

  void on_frame(Frame& f) override {
    switch (f.type) {
      case FrameType::kWelcome: return on_welcome(f);
      case FrameType::kMessage:
      case FrameType::kEvent: return on_numbered(f);
      case FrameType::kTyping: return emit(ClientEvent::Kind::kTyping, f);
      case FrameType::kRead: return emit(ClientEvent::Kind::kRead, f);
      default:
        if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "ignored a " + std::string(protocol::to_string(f.type)) + " frame");
        return;
    }
  }

  void on_welcome(const Frame& f) {
    std::string warning;  // logged without holding mu_ (the sink may call back in)
    {
      std::lock_guard lock(mu_);
      if (f.conversation != conversation) {
        if (!conversation.empty()) warning = "the hub started a new conversation " + f.conversation;
        conversation = f.conversation;
        last_seq = 0;
        seen_seq = 0;
      }
      if (!f.token.empty()) token = f.token;
      if (f.last_seq && *f.last_seq < seen_seq) {
        warning = "the hub's last seq (" + std::to_string(*f.last_seq) + ") is below the client's (" +
                  std::to_string(seen_seq) + "): the hub lost messages; following it";
        seen_seq = *f.last_seq;
        last_seq = std::min(last_seq, *f.last_seq);
      }
      seen_seq = std::max(seen_seq, last_seq);
    }
    if (!warning.empty()) log(LogLevel::kWarning, warning);
    persist_or_report();
    welcomed(f);
  }

  void on_acked(const Frame& ack, const detail::client::OutboxEntry* msg) override {
    if (ack.seq) seen_seq = std::max(seen_seq, *ack.seq);
    if (msg) emit(ClientEvent::Kind::kAck, ack);
  }

  void on_numbered(const Frame& f) {
    const auto kind = f.type == FrameType::kMessage ? ClientEvent::Kind::kMessage : ClientEvent::Kind::kEvent;
    if (!f.seq) return emit(kind, f);  // not stored (queue_position)
    if (*f.seq <= seen_seq) {
      if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "dropped seq " + std::to_string(*f.seq) + " (already seen)");
      return;
    }
    seen_seq = *f.seq;
    // Our own message, stored by an earlier connection whose ack was lost: it is the ack.
    if (f.from == "visitor" && ack_from_replay(f)) return;
    emit(kind, f);
  }
};

// ---- Client ---------------------------------------------------------------------------

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  if (impl_) impl_->owner_gone();
}

Result<std::unique_ptr<Client>> Client::create(ClientConfig config) {
  MDG_ASSIGN_OR_RETURN(auto base, detail::client::connection_config("client", "/v1/visitor", config));
  protocol::DecodeLimits limits;
  if (config.visitor.size() > limits.max_visitor_attributes) {
    return invalid_argument("client: at most " + std::to_string(limits.max_visitor_attributes) + " visitor attributes");
  }
  std::size_t visitor_bytes = 0;
  for (const auto& [k, v] : config.visitor) visitor_bytes += k.size() + v.size();
  if (visitor_bytes > limits.max_visitor_bytes) {
    return invalid_argument("client: the visitor attributes are over " + std::to_string(limits.max_visitor_bytes) +
                            " bytes of names and values (the hub refuses the hello)");
  }
  auto impl = std::make_shared<Impl>(std::move(base), std::move(config));
  MDG_ASSIGN_OR_RETURN(auto loaded, impl->open_state_file());
  if (loaded) {
    // An agent's replies name their conversation; sent from here they would go out as the
    // visitor's own messages.
    bool agent_file = std::any_of(loaded->outbox.begin(), loaded->outbox.end(),
                                  [](const auto& m) { return !m.conversation.empty(); });
    if (agent_file) {
      return invalid_argument(impl->config().state_path +
                              ": an agent client's state file (replies that name a conversation); a visitor "
                              "client needs a file of its own");
    }
    impl->token = std::move(loaded->token);
    impl->conversation = std::move(loaded->conversation);
    impl->last_seq = loaded->last_seq;
  }
  impl->seen_seq = impl->last_seq;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Status Client::start() { return impl_->start(); }

Result<std::string> Client::send(std::string_view text, std::vector<protocol::Attachment> attachments) {
  return impl_->enqueue_message({}, text, std::move(attachments));
}

Result<std::string> Client::choose(const protocol::BotOption& option) {
  if (option.entry.empty() || option.label.empty()) {
    return invalid_argument("choose(): the option needs its entry and its label (one of ClientEvent::bot.options)");
  }
  return impl_->enqueue_message({}, option.label, {}, option.entry);
}

Status Client::typing(bool active) { return impl_->send_typing({}, active); }

Status Client::mark_read(std::int64_t seq) { return impl_->send_read({}, seq); }

std::size_t Client::poll(int timeout_ms, std::size_t max) {
  std::shared_ptr<Impl> self = impl_;  // on_event may destroy this Client
  return self->poll(timeout_ms, max);
}

ConnectionState Client::state() const { return impl_->current_state(); }

std::string Client::conversation() const { return impl_->with_lock([this] { return impl_->conversation; }); }

std::int64_t Client::last_seq() const { return impl_->with_lock([this] { return impl_->last_seq; }); }

std::size_t Client::pending() const { return impl_->pending(); }

Status Client::close(int timeout_ms) { return impl_->close(timeout_ms); }

}  // namespace v1
}  // namespace madoguchi
