// madoguchi::AgentClient: the support agent's live-chat client (docs/client.md).
//
// The connection, the outbox, back-off and event dispatch are Connection's
// (client/connection.hpp); this file adds what the agent endpoint says: the hello with
// credentials, the queue, the conversations the agent holds, and one seq window per
// conversation so that no frame is delivered twice across reconnects and re-takes.
#include <madoguchi/agent_client.hpp>

#include "client/connection.hpp"

#include <simdjson.h>

#include <algorithm>
#include <set>
#include <utility>

namespace madoguchi {
inline namespace v1 {
namespace {

using detail::client::PersistedState;
using protocol::Frame;
using protocol::FrameType;

constexpr const char* kClientName = "madoguchi-cpp-agent/0.1";

// ---- reading the JSON the hub nests in its frames -----------------------------------------

std::string get_string(simdjson::dom::object o, std::string_view key) {
  std::string_view v;
  if (o[key].get_string().get(v) != simdjson::SUCCESS) return {};
  return std::string(v);
}

double get_number(simdjson::dom::object o, std::string_view key) {
  double v = 0;
  if (o[key].get_double().get(v) != simdjson::SUCCESS) return 0;
  return v;
}

std::vector<std::string> get_strings(simdjson::dom::object o, std::string_view key) {
  std::vector<std::string> out;
  simdjson::dom::array arr;
  if (o[key].get_array().get(arr) != simdjson::SUCCESS) return out;
  for (auto e : arr) {
    std::string_view s;
    if (e.get_string().get(s) == simdjson::SUCCESS) out.emplace_back(s);
  }
  return out;
}

std::map<std::string, std::string> get_map(simdjson::dom::object o, std::string_view key) {
  std::map<std::string, std::string> out;
  simdjson::dom::object m;
  if (o[key].get_object().get(m) != simdjson::SUCCESS) return out;
  for (auto field : m) {
    std::string_view s;
    if (field.value.get_string().get(s) == simdjson::SUCCESS) out.emplace(std::string(field.key), std::string(s));
  }
  return out;
}

// Runs `each` on every object of a JSON array (nothing when it is not one).
template <class F>
void each_object(simdjson::simdjson_result<simdjson::dom::element> list, F&& each) {
  simdjson::dom::array arr;
  if (list.get_array().get(arr) != simdjson::SUCCESS) return;
  for (auto e : arr) {
    simdjson::dom::object o;
    if (e.get_object().get(o) == simdjson::SUCCESS) each(o);
  }
}

std::vector<QueueEntry> parse_queue(simdjson::dom::parser& parser, const std::string& json) {
  std::vector<QueueEntry> out;
  if (json.empty()) return out;
  each_object(parser.parse(json), [&](simdjson::dom::object o) {
    QueueEntry q;
    q.conversation = get_string(o, "conversation");
    q.state = get_string(o, "state");
    q.priority = get_number(o, "priority");
    q.locale = get_string(o, "locale");
    q.reason = get_string(o, "reason");
    q.since = static_cast<std::int64_t>(get_number(o, "since"));
    q.agent = get_string(o, "agent");
    if (!q.conversation.empty()) out.push_back(std::move(q));
  });
  return out;
}

HandoffPackage parse_handoff(simdjson::dom::parser& parser, const std::string& json) {
  HandoffPackage p;
  simdjson::dom::object o;
  if (json.empty() || parser.parse(json).get_object().get(o) != simdjson::SUCCESS) return p;
  p.reason = get_string(o, "reason");
  p.locale = get_string(o, "locale");
  p.rules_fired = get_strings(o, "rules_fired");
  p.slots = get_map(o, "slots");
  p.visitor = get_map(o, "visitor");
  simdjson::dom::object triage;
  if (o["triage"].get_object().get(triage) == simdjson::SUCCESS) {
    p.severity = get_number(triage, "severity");
    p.complexity = get_number(triage, "complexity");
    p.effort = get_number(triage, "effort");
    p.signals = get_strings(triage, "signals");
  }
  each_object(o["transcript"], [&](simdjson::dom::object t) {
    p.transcript.push_back({get_string(t, "role"), get_string(t, "text"), get_string(t, "entry"), get_string(t, "decision")});
  });
  each_object(o["candidates"], [&](simdjson::dom::object c) {
    p.candidates.push_back({get_string(c, "entry"), get_number(c, "confidence"), get_number(c, "score"), get_number(c, "bm25")});
  });
  return p;
}

// The stored frames of a `conversation` frame, each with `conversation` set.
std::vector<Frame> parse_transcript(simdjson::dom::parser& parser, const std::string& json, const std::string& conversation) {
  std::vector<Frame> out;
  if (json.empty()) return out;
  protocol::DecodeLimits limits;
  limits.max_frame_bytes = json.size();
  each_object(parser.parse(json), [&](simdjson::dom::object o) {
    auto decoded = protocol::decode(simdjson::to_string(o), limits);
    if (auto* f = std::get_if<Frame>(&decoded)) {
      f->conversation = conversation;
      out.push_back(std::move(*f));
    }
  });
  return out;
}

Frame frame_for(FrameType type, std::string_view conversation) {
  Frame f;
  f.type = type;
  f.conversation.assign(conversation);
  return f;
}

Status need_conversation(std::string_view what, std::string_view conversation) {
  if (conversation.empty()) return invalid_argument(std::string(what) + "(): the conversation id is empty");
  return Status::ok();
}

// The seqs of one conversation this client has delivered: all up to `upto`, and some above it
// (a frame can come before the ones below it: the ack of a reply resent after a reconnect
// comes before the re-take that brings what was missed).
struct SeqWindow {
  std::int64_t upto = 0;
  std::set<std::int64_t> above;

  // True the first time `seq` is seen.
  bool record(std::int64_t seq) {
    if (seq <= upto || !above.insert(seq).second) return false;
    while (!above.empty() && *above.begin() == upto + 1) {
      ++upto;
      above.erase(above.begin());
    }
    return true;
  }
};

}  // namespace

struct AgentClient::Impl final : detail::client::EventConnection<AgentEvent> {
  // Takes the credentials from `c`; the rest of it is in `base` (Connection's).
  Impl(detail::client::ConnectionConfig base, AgentClientConfig c)
      : EventConnection(std::move(base), std::move(c.on_event)),
        agent(std::move(c.agent)),
        password(std::move(c.password)) {}

  // ---- constant: any thread -----------------------------------------------------------
  const std::string agent;
  const std::string password;

  // ---- shared: guarded by mu_ -----------------------------------------------------------
  std::vector<QueueEntry> queue;
  std::set<std::string> held;  // conversations this agent holds

  // ---- network thread only ------------------------------------------------------------
  simdjson::dom::parser parser;
  std::map<std::string, SeqWindow> windows;  // per conversation
  std::set<std::string> known;               // conversations delivered as kConversation
  bool resync = false;                       // welcomed: take the held conversations again on the queue
  // Conversations the client itself takes again (after a reconnect, or after a transfer to
  // this agent: take with `resume`), whose kConversation or error has not come yet. Their
  // live frames wait here and follow it, so that what happened while the agent was away (in
  // the transcript) comes before them.
  std::map<std::string, std::vector<Frame>> awaiting;
  static constexpr std::size_t kMaxAwaiting = 10000;  // frames of one conversation; then they go on

  void save_locked(PersistedState&) const override {}  // the outbox is all an agent keeps

  void hold(const std::string& conversation) {
    std::lock_guard lock(mu_);
    held.insert(conversation);
  }

  // The agent's part in `conversation` ended: no more of its frames come here, until it is
  // taken again (then as a first take, with the whole transcript).
  void forget(const std::string& conversation) {
    {
      std::lock_guard lock(mu_);
      held.erase(conversation);
    }
    windows.erase(conversation);
    known.erase(conversation);
  }

  // ---- events -------------------------------------------------------------------------
  void emit_numbered(const Frame& f) {
    emit(f.type == FrameType::kMessage ? AgentEvent::Kind::kMessage : AgentEvent::Kind::kEvent, f);
  }

  // ---- frames from the hub ------------------------------------------------------------
  std::string hello_json() override {
    Frame h;
    h.type = FrameType::kHello;
    h.agent = agent;
    h.password = password;
    h.client = kClientName;
    if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "hello as agent " + agent);
    return protocol::encode(h);
  }

  void on_frame(Frame& f) override {
    switch (f.type) {
      case FrameType::kWelcome:
        // The last connection's takes will not be answered: what they held goes on now.
        for (auto it = awaiting.begin(); it != awaiting.end();) it = release(it);
        resync = true;
        return welcomed(f);
      case FrameType::kQueue: return on_queue(f);
      case FrameType::kConversation: return on_conversation(f);
      case FrameType::kMessage:
      case FrameType::kEvent: return on_live(f);
      case FrameType::kTyping: return emit(AgentEvent::Kind::kTyping, f);
      case FrameType::kRead: return emit(AgentEvent::Kind::kRead, f);
      default:
        if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "ignored a " + std::string(protocol::to_string(f.type)) + " frame");
        return;
    }
  }

  void on_queue(const Frame& f) {
    AgentEvent ev;
    ev.kind = AgentEvent::Kind::kQueue;
    ev.frame = f;
    ev.queue = parse_queue(parser, f.conversations_json);
    std::set<std::string> mine;
    {
      std::lock_guard lock(mu_);
      queue = ev.queue;
      mine = held;
    }
    if (resync) {
      // The first queue after a welcome: take again what this agent still has, so that what
      // happened while it was away comes in; forget what the queue shows elsewhere. One it
      // does not list (it lists so many) is taken again too: the hub refuses a `resume` take
      // of what this agent no longer holds.
      resync = false;
      for (const auto& c : mine) {
        auto q = std::find_if(ev.queue.begin(), ev.queue.end(), [&](const QueueEntry& e) { return e.conversation == c; });
        if (q == ev.queue.end() || (q->state == "agent" && q->agent == agent)) {
          take_now(c);
        } else {
          forget(c);
        }
      }
    }
    emit(std::move(ev));
  }

  // Takes again `conversation`, which this agent holds; its live frames wait for the answer.
  void take_now(const std::string& conversation) {
    awaiting.try_emplace(conversation);
    Frame take = frame_for(FrameType::kTake, conversation);
    take.resume = true;
    send_now(protocol::encode(take));
  }

  // Stops waiting for `it`'s kConversation and delivers the frames held for it.
  std::map<std::string, std::vector<Frame>>::iterator release(std::map<std::string, std::vector<Frame>>::iterator it) {
    std::vector<Frame> frames = std::move(it->second);
    auto next = awaiting.erase(it);
    for (auto& f : frames) on_live(f);
    return next;
  }

  // The hub refused an action on a conversation (its error names it). When it is the
  // client's own take: the frames held for it go on, and a refused `resume` (conflict,
  // not_found) means the agent no longer holds the conversation, which is no error of the
  // app's: the queue shows where it went.
  void emit_error(const Frame& error) override {
    auto it = error.id.empty() && !error.conversation.empty() ? awaiting.find(error.conversation) : awaiting.end();
    if (it == awaiting.end()) return EventConnection::emit_error(error);
    const std::string c = it->first;
    const bool gone = error.error == protocol::ErrorKind::kConflict || error.error == protocol::ErrorKind::kNotFound;
    if (gone) {
      if (logs(LogLevel::kInfo)) log(LogLevel::kInfo, "no longer holds " + c + ": " + error.message);
    } else {
      EventConnection::emit_error(error);
    }
    release(it);
    if (gone) forget(c);
  }

  void on_conversation(Frame& f) {
    const std::string c = f.conversation;
    AgentEvent ev;
    ev.kind = AgentEvent::Kind::kConversation;
    ev.handoff = parse_handoff(parser, f.handoff_json);
    ev.transcript = parse_transcript(parser, f.messages_json, c);
    ev.resumed = !known.insert(c).second;
    if (f.state == "agent") hold(c);
    SeqWindow& window = windows[c];
    std::vector<Frame> missed;
    for (const auto& m : ev.transcript) {
      if (!m.seq) continue;
      bool fresh = window.record(*m.seq);
      // A reply of ours still in the outbox was stored before its ack got lost: the ack.
      if (m.from == "agent" && ack_from_replay(m)) continue;
      if (fresh && ev.resumed) missed.push_back(m);
    }
    ev.frame = std::move(f);
    emit(std::move(ev));
    for (const auto& m : missed) emit_numbered(m);
    // What came live while the take was on its way, less what the transcript had.
    if (auto it = awaiting.find(c); it != awaiting.end()) release(it);
  }

  // A message or event of a conversation, as it happens.
  void on_live(const Frame& f) {
    if (auto it = awaiting.find(f.conversation); it != awaiting.end() && f.seq) {
      it->second.push_back(f);
      if (it->second.size() >= kMaxAwaiting) release(it);
      return;
    }
    if (f.seq && !f.conversation.empty() && !windows[f.conversation].record(*f.seq)) {
      if (logs(LogLevel::kDebug)) {
        log(LogLevel::kDebug, "dropped seq " + std::to_string(*f.seq) + " of " + f.conversation + " (already seen)");
      }
      return;
    }
    if (f.from == "agent" && ack_from_replay(f)) return;
    if (f.type == FrameType::kEvent) follow(f);
    emit_numbered(f);
  }

  // Keeps `held` in step with the conversation's events.
  void follow(const Frame& f) {
    if (f.event == "handed_back" || f.event == "conversation_closed") return forget(f.conversation);
    if (f.event != "transferred") return;
    simdjson::dom::object data;
    if (parser.parse(f.data_json).get_object().get(data) != simdjson::SUCCESS) return;
    if (get_string(data, "to") == agent) {
      hold(f.conversation);
      // Fetch what the other agent had: the package and the messages (kConversation).
      take_now(f.conversation);
    } else if (get_string(data, "from") == agent) {
      forget(f.conversation);
    }
  }

  void on_acked(const Frame& ack, const detail::client::OutboxEntry* msg) override {
    if (!msg) return;  // acknowledged before (a resend's second ack)
    if (ack.seq) windows[msg->conversation].record(*ack.seq);
    Frame f = ack;
    f.conversation = msg->conversation;
    emit(AgentEvent::Kind::kAck, f);
  }
};

// ---- AgentClient --------------------------------------------------------------------------

AgentClient::AgentClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

AgentClient::~AgentClient() {
  if (impl_) impl_->owner_gone();
}

Result<std::unique_ptr<AgentClient>> AgentClient::create(AgentClientConfig config) {
  MDG_ASSIGN_OR_RETURN(auto base, detail::client::connection_config("agent client", "/v1/agent", config));
  if (config.agent.empty()) return invalid_argument("agent client: the agent name is empty");
  if (config.password.empty()) return invalid_argument("agent client: the password is empty");
  auto impl = std::make_shared<Impl>(std::move(base), std::move(config));
  MDG_ASSIGN_OR_RETURN(auto loaded, impl->open_state_file());
  if (loaded) {
    bool visitor_file = !loaded->token.empty() || std::any_of(loaded->outbox.begin(), loaded->outbox.end(),
                                                              [](const auto& m) { return m.conversation.empty(); });
    if (visitor_file) {
      return invalid_argument(impl->config().state_path +
                              ": a visitor client's state file (a token, or messages without a conversation); an "
                              "agent client needs a file of its own");
    }
  }
  return std::unique_ptr<AgentClient>(new AgentClient(std::move(impl)));
}

Status AgentClient::start() { return impl_->start(); }

Status AgentClient::refresh_queue() { return impl_->queue_frame(frame_for(FrameType::kQueue, {}), true); }

Status AgentClient::take(std::string_view conversation) {
  MDG_RETURN_IF_ERROR(need_conversation("take", conversation));
  return impl_->queue_frame(frame_for(FrameType::kTake, conversation), true);
}

Result<std::string> AgentClient::send(std::string_view conversation, std::string_view text,
                                      std::vector<protocol::Attachment> attachments) {
  MDG_RETURN_IF_ERROR(need_conversation("send", conversation));
  return impl_->enqueue_message(std::string(conversation), text, std::move(attachments));
}

Status AgentClient::typing(std::string_view conversation, bool active) {
  MDG_RETURN_IF_ERROR(need_conversation("typing", conversation));
  return impl_->send_typing(conversation, active);
}

Status AgentClient::mark_read(std::string_view conversation, std::int64_t seq) {
  MDG_RETURN_IF_ERROR(need_conversation("mark_read", conversation));
  return impl_->send_read(conversation, seq);
}

Status AgentClient::transfer(std::string_view conversation, std::string_view to) {
  MDG_RETURN_IF_ERROR(need_conversation("transfer", conversation));
  if (to.empty()) return invalid_argument("transfer(): the agent to transfer to is empty");
  Frame f = frame_for(FrameType::kTransfer, conversation);
  f.to.assign(to);
  return impl_->queue_frame(f, true);
}

Status AgentClient::hand_back(std::string_view conversation) {
  MDG_RETURN_IF_ERROR(need_conversation("hand_back", conversation));
  return impl_->queue_frame(frame_for(FrameType::kHandBack, conversation), true);
}

Status AgentClient::close_conversation(std::string_view conversation) {
  MDG_RETURN_IF_ERROR(need_conversation("close_conversation", conversation));
  return impl_->queue_frame(frame_for(FrameType::kClose, conversation), true);
}

std::size_t AgentClient::poll(int timeout_ms, std::size_t max) {
  std::shared_ptr<Impl> self = impl_;  // on_event may destroy this AgentClient
  return self->poll(timeout_ms, max);
}

ConnectionState AgentClient::state() const { return impl_->current_state(); }

std::vector<QueueEntry> AgentClient::queue() const { return impl_->with_lock([this] { return impl_->queue; }); }

std::vector<std::string> AgentClient::conversations() const {
  return impl_->with_lock([this] { return std::vector<std::string>(impl_->held.begin(), impl_->held.end()); });
}

std::size_t AgentClient::pending() const { return impl_->pending(); }

Status AgentClient::close(int timeout_ms) { return impl_->close(timeout_ms); }

}  // namespace v1
}  // namespace madoguchi
