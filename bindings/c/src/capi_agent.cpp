// capi_agent.cpp: the support agent's live-chat client of madoguchi.h over
// madoguchi::AgentClient (agent_client.hpp). Built like capi_client.cpp: a Relay between the
// handle and the C callbacks, and each event's C view built on the stack for the callback.
#include "capi_internal.hpp"
#include "capi_live.hpp"

#include <madoguchi/agent_client.hpp>
#include <madoguchi/detail/json_writer.hpp>
#include <madoguchi/protocol.hpp>

#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace mdg_capi;

namespace {

using AgentRelay = Relay<mdg_agent_event_cb>;

int to_agent_kind(madoguchi::AgentEvent::Kind k) noexcept {
  using K = madoguchi::AgentEvent::Kind;
  switch (k) {
    case K::kState: return MDG_AGENT_EVENT_STATE;
    case K::kWelcome: return MDG_AGENT_EVENT_WELCOME;
    case K::kQueue: return MDG_AGENT_EVENT_QUEUE;
    case K::kConversation: return MDG_AGENT_EVENT_CONVERSATION;
    case K::kMessage: return MDG_AGENT_EVENT_MESSAGE;
    case K::kEvent: return MDG_AGENT_EVENT_EVENT;
    case K::kAck: return MDG_AGENT_EVENT_ACK;
    case K::kTyping: return MDG_AGENT_EVENT_TYPING;
    case K::kRead: return MDG_AGENT_EVENT_READ;
    case K::kError: return MDG_AGENT_EVENT_ERROR;
  }
  return MDG_AGENT_EVENT_ERROR;
}

// The mdg_event kind of the frame an agent event carries (message, event, ack, typing,
// read, error); -1 for the kinds that carry none in `frame`.
int frame_event_kind(madoguchi::AgentEvent::Kind k) noexcept {
  using K = madoguchi::AgentEvent::Kind;
  switch (k) {
    case K::kMessage: return MDG_EVENT_MESSAGE;
    case K::kEvent: return MDG_EVENT_EVENT;
    case K::kAck: return MDG_EVENT_ACK;
    case K::kTyping: return MDG_EVENT_TYPING;
    case K::kRead: return MDG_EVENT_READ;
    case K::kError: return MDG_EVENT_ERROR;
    default: return -1;
  }
}

// Builds the C view of one event (pointing into `e`) and runs the callback.
void deliver(const AgentRelay& relay, const madoguchi::AgentEvent& e) {
  if (relay.on_event == nullptr || relay.stopped.load()) return;
  using K = madoguchi::AgentEvent::Kind;
  const madoguchi::protocol::Frame& f = e.frame;
  const int state = to_state(e.state);
  const int frame_kind_of_event = frame_event_kind(e.kind);
  std::unique_ptr<FrameView> frame;
  if (frame_kind_of_event >= 0) {
    frame = std::make_unique<FrameView>(
        f, frame_kind_of_event, state,
        e.kind == K::kMessage && !f.bot_json.empty() ? madoguchi::protocol::parse_bot_info(f.bot_json)
                                                     : madoguchi::protocol::BotInfo{},
        e.data);
  }
  std::vector<mdg_queue_entry> queue;
  std::vector<const mdg_queue_entry*> queue_ptrs;
  if (e.kind == K::kQueue) {
    queue.reserve(e.queue.size());
    for (const auto& q : e.queue) {
      queue.push_back(mdg_queue_entry{q.conversation.c_str(), q.state.c_str(), q.priority, q.locale.c_str(),
                                      q.reason.c_str(), q.since, q.agent.c_str()});
    }
    for (const auto& q : queue) queue_ptrs.push_back(&q);
  }
  std::vector<std::unique_ptr<FrameView>> transcript;
  std::vector<const mdg_event*> transcript_ptrs;
  if (e.kind == K::kConversation) {
    transcript.reserve(e.transcript.size());
    transcript_ptrs.reserve(e.transcript.size());
    for (const auto& t : e.transcript) {
      transcript.push_back(std::make_unique<FrameView>(t, frame_kind(t.type), state));
      transcript_ptrs.push_back(&transcript.back()->event());
    }
  }
  const std::string frame_json = e.kind == K::kState ? std::string() : madoguchi::protocol::encode(f);

  mdg_agent_event ev{};
  ev.kind = to_agent_kind(e.kind);
  ev.state = state;
  ev.conversation = f.conversation.c_str();
  ev.frame = frame ? &frame->event() : nullptr;
  ev.agent = e.kind == K::kWelcome ? f.agent.c_str() : "";
  ev.queue = queue_ptrs.empty() ? nullptr : queue_ptrs.data();
  ev.queue_count = queue_ptrs.size();
  ev.conversation_state = e.kind == K::kConversation ? f.state.c_str() : "";
  ev.handoff_json = e.kind != K::kConversation ? "" : f.handoff_json.empty() ? "{}" : f.handoff_json.c_str();
  ev.transcript = transcript_ptrs.empty() ? nullptr : transcript_ptrs.data();
  ev.transcript_count = transcript_ptrs.size();
  ev.resumed = e.kind == K::kConversation && e.resumed ? 1 : 0;
  ev.frame_json = frame_json.c_str();
  run_callback(relay, ev);
}

}  // namespace

struct mdg_agent {
  std::shared_ptr<AgentRelay> relay;
  std::unique_ptr<madoguchi::AgentClient> client;
};

namespace {

// A conversation id argument: not NULL, UTF-8.
int conversation_arg(const char* function, const char* conversation) noexcept {
  if (conversation == nullptr) return null_argument(function, "conversation");
  return check_utf8(function, "conversation", conversation);
}

// The body of the functions that act on one conversation.
template <typename Act>
int act(const char* function, mdg_agent* a, const char* conversation, Act&& action) {
  return guard(function, [&]() -> int {
    if (a == nullptr) return null_argument(function, "agent");
    if (int rc = conversation_arg(function, conversation); rc != MDG_OK) return rc;
    return set_error(action(*a->client, std::string_view(conversation)));
  });
}

int send_reply(const char* function, mdg_message_id* out, mdg_agent* a, const char* conversation, const char* text,
               std::size_t size, const mdg_attachment* const* attachments, std::size_t count) {
  if (out != nullptr) out->str[0] = '\0';
  if (a == nullptr) return null_argument(function, "agent");
  if (int rc = conversation_arg(function, conversation); rc != MDG_OK) return rc;
  auto t = text_arg(function, "text", text, size);
  if (!t) return mdg_error_last_code();
  if (int rc = check_utf8(function, "text", *t); rc != MDG_OK) return rc;
  auto list = attachments_arg(function, attachments, count);
  if (!list) return mdg_error_last_code();
  auto id = a->client->send(conversation, *t, std::move(*list));
  if (!id) return set_error(id.status());
  return copy_id(out, *id);
}

}  // namespace

extern "C" {

MDG_EXTERN(int) mdg_agent_options_init(mdg_agent_options* opts, unsigned int version) {
  const mdg_agent_options defaults = MDG_AGENT_OPTIONS_INIT;
  return options_init("mdg_agent_options_init", opts, version, MDG_AGENT_OPTIONS_VERSION, defaults);
}

MDG_EXTERN(int) mdg_agent_new(mdg_agent** out, const mdg_agent_options* opts) {
  return guard("mdg_agent_new", [&]() -> int {
    constexpr const char* fn = "mdg_agent_new";
    if (int rc = check_new_arguments(fn, out, opts, MDG_AGENT_OPTIONS_VERSION); rc != MDG_OK) return rc;
    if (opts->url == nullptr) return null_argument(fn, "opts->url");
    if (opts->agent == nullptr) return null_argument(fn, "opts->agent");
    if (opts->password == nullptr) return null_argument(fn, "opts->password");
    for (auto [name, value] : {std::pair{"opts->url", opts->url}, std::pair{"opts->agent", opts->agent},
                               std::pair{"opts->password", opts->password}}) {
      if (int rc = check_utf8(fn, name, value); rc != MDG_OK) return rc;
    }
    if (int rc = check_connection_options(fn, opts->dispatch, opts->backoff_ms, opts->backoff_count); rc != MDG_OK) {
      return rc;
    }

    madoguchi::AgentClientConfig cfg;
    cfg.url = opts->url;
    cfg.agent = opts->agent;
    cfg.password = opts->password;
    cfg.state_path = str_or_empty(opts->state_path);
    return live_new(out, *opts, std::move(cfg), deliver);
  });
}

MDG_EXTERN(int) mdg_agent_connect(mdg_agent* a) { return live_connect("mdg_agent_connect", "agent", a); }

MDG_EXTERN(int) mdg_agent_refresh_queue(mdg_agent* a) {
  return guard("mdg_agent_refresh_queue", [&]() -> int {
    if (a == nullptr) return null_argument("mdg_agent_refresh_queue", "agent");
    return set_error(a->client->refresh_queue());
  });
}

MDG_EXTERN(int) mdg_agent_take(mdg_agent* a, const char* conversation) {
  return act("mdg_agent_take", a, conversation,
             [](madoguchi::AgentClient& c, std::string_view id) { return c.take(id); });
}

MDG_EXTERN(int) mdg_agent_transfer(mdg_agent* a, const char* conversation, const char* to) {
  if (to == nullptr) return null_argument("mdg_agent_transfer", "to");
  if (int rc = check_utf8("mdg_agent_transfer", "to", to); rc != MDG_OK) return rc;
  return act("mdg_agent_transfer", a, conversation,
             [to](madoguchi::AgentClient& c, std::string_view id) { return c.transfer(id, to); });
}

MDG_EXTERN(int) mdg_agent_hand_back(mdg_agent* a, const char* conversation) {
  return act("mdg_agent_hand_back", a, conversation,
             [](madoguchi::AgentClient& c, std::string_view id) { return c.hand_back(id); });
}

MDG_EXTERN(int) mdg_agent_close_conversation(mdg_agent* a, const char* conversation) {
  return act("mdg_agent_close_conversation", a, conversation,
             [](madoguchi::AgentClient& c, std::string_view id) { return c.close_conversation(id); });
}

MDG_EXTERN(int) mdg_agent_send(mdg_message_id* out, mdg_agent* a, const char* conversation, const char* text,
                               std::size_t size) {
  return guard("mdg_agent_send", [&]() -> int {
    return send_reply("mdg_agent_send", out, a, conversation, text, size, nullptr, 0);
  });
}

MDG_EXTERN(int) mdg_agent_send_attachments(mdg_message_id* out, mdg_agent* a, const char* conversation,
                                           const char* text, std::size_t size,
                                           const mdg_attachment* const* attachments, std::size_t count) {
  return guard("mdg_agent_send_attachments", [&]() -> int {
    return send_reply("mdg_agent_send_attachments", out, a, conversation, text, size, attachments, count);
  });
}

MDG_EXTERN(int) mdg_agent_typing(mdg_agent* a, const char* conversation, int active) {
  return act("mdg_agent_typing", a, conversation,
             [active](madoguchi::AgentClient& c, std::string_view id) { return c.typing(id, active != 0); });
}

MDG_EXTERN(int) mdg_agent_mark_read(mdg_agent* a, const char* conversation, std::int64_t seq) {
  return act("mdg_agent_mark_read", a, conversation,
             [seq](madoguchi::AgentClient& c, std::string_view id) { return c.mark_read(id, seq); });
}

MDG_EXTERN(int) mdg_agent_poll(mdg_agent* a, int timeout_ms, std::size_t max) {
  return live_poll("mdg_agent_poll", "agent", a, timeout_ms, max);
}

MDG_EXTERN(int) mdg_agent_state(int* out, const mdg_agent* a) {
  return live_state("mdg_agent_state", "agent", out, a);
}

MDG_EXTERN(int) mdg_agent_pending(std::size_t* out, const mdg_agent* a) {
  return live_pending("mdg_agent_pending", "agent", out, a);
}

MDG_EXTERN(int) mdg_agent_queue_json(mdg_buf* out, const mdg_agent* a) {
  return guard("mdg_agent_queue_json", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_agent_queue_json", "out");
    *out = mdg_buf MDG_BUF_INIT;
    if (a == nullptr) return null_argument("mdg_agent_queue_json", "agent");
    madoguchi::detail::JsonWriter w;
    w.begin_array();
    for (const auto& q : a->client->queue()) {
      w.begin_object()
          .field("conversation", q.conversation)
          .field("state", q.state)
          .field("priority", q.priority)
          .field("locale", q.locale)
          .field("reason", q.reason)
          .field("since", q.since)
          .field("agent", q.agent)
          .end_object();
    }
    w.end_array();
    return put_buf(out, w.take());
  });
}

MDG_EXTERN(int) mdg_agent_conversations_json(mdg_buf* out, const mdg_agent* a) {
  return guard("mdg_agent_conversations_json", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_agent_conversations_json", "out");
    *out = mdg_buf MDG_BUF_INIT;
    if (a == nullptr) return null_argument("mdg_agent_conversations_json", "agent");
    madoguchi::detail::JsonWriter w;
    w.begin_array();
    for (const auto& id : a->client->conversations()) w.value(id);
    w.end_array();
    return put_buf(out, w.take());
  });
}

MDG_EXTERN(int) mdg_agent_close(mdg_agent* a, int timeout_ms) {
  return live_close("mdg_agent_close", "agent", a, timeout_ms);
}

MDG_EXTERN(void) mdg_agent_free(mdg_agent* a) { live_free(a); }

}  // extern "C"
