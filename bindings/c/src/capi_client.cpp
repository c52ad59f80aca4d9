// capi_client.cpp: the live-chat client of madoguchi.h over madoguchi::Client (client.hpp).
//
// The C callback and its userdata live in a Relay shared by the handle and the Client's
// on_event/logger closures. mdg_client_free() first marks the Relay stopped, so that nothing
// reaches the app after it returns, even when it is called from a callback (the network
// thread then ends by itself and only drops what is left).
#include "capi_internal.hpp"

#include <madoguchi/client.hpp>
#include <madoguchi/protocol.hpp>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace mdg_capi;

namespace {

struct Relay {
  mdg_event_cb on_event = nullptr;
  mdg_log_cb log_cb = nullptr;
  void* userdata = nullptr;
  std::atomic<bool> stopped{false};
};

// The Relay whose callback runs on this thread (mdg_client_close from it: MDG_EBUSY).
thread_local const Relay* tl_in_callback = nullptr;

int to_state(madoguchi::ConnectionState s) noexcept {
  switch (s) {
    case madoguchi::ConnectionState::kConnecting: return MDG_STATE_CONNECTING;
    case madoguchi::ConnectionState::kConnected: return MDG_STATE_CONNECTED;
    case madoguchi::ConnectionState::kDisconnected: return MDG_STATE_DISCONNECTED;
    case madoguchi::ConnectionState::kClosed: return MDG_STATE_CLOSED;
  }
  return MDG_STATE_CLOSED;
}

int to_kind(madoguchi::ClientEvent::Kind k) noexcept {
  using K = madoguchi::ClientEvent::Kind;
  switch (k) {
    case K::kState: return MDG_EVENT_STATE;
    case K::kWelcome: return MDG_EVENT_WELCOME;
    case K::kMessage: return MDG_EVENT_MESSAGE;
    case K::kEvent: return MDG_EVENT_EVENT;
    case K::kAck: return MDG_EVENT_ACK;
    case K::kTyping: return MDG_EVENT_TYPING;
    case K::kRead: return MDG_EVENT_READ;
    case K::kError: return MDG_EVENT_ERROR;
  }
  return MDG_EVENT_ERROR;
}

// Builds the C view of one event (pointing into `e` and local copies) and runs the callback.
void deliver(const Relay& relay, const madoguchi::ClientEvent& e) {
  if (relay.on_event == nullptr || relay.stopped.load()) return;
  using K = madoguchi::ClientEvent::Kind;
  const madoguchi::protocol::Frame& f = e.frame;
  const bool has_frame = e.kind != K::kState;
  const std::string frame_json = has_frame ? madoguchi::protocol::encode(f) : std::string();
  const std::string error_code = e.kind == K::kError ? std::string(madoguchi::protocol::to_string(f.error)) : std::string();
  std::vector<mdg_attachment> attachments;
  attachments.reserve(f.attachments.size());
  for (const auto& a : f.attachments) {
    attachments.push_back(mdg_attachment{a.name.c_str(), a.type.c_str(), a.size, a.url.c_str()});
  }
  std::vector<const mdg_attachment*> attachment_ptrs;
  attachment_ptrs.reserve(attachments.size());
  for (const auto& a : attachments) attachment_ptrs.push_back(&a);

  // The bot's options and suggestions as mdg_options, one array of each and one of pointers
  // to them (the form mdg_bot_info hands out).
  const madoguchi::protocol::BotInfo& b = e.bot;
  std::vector<mdg_option> choices;
  choices.reserve(b.options.size() + b.suggestions.size());
  for (const auto* list : {&b.options, &b.suggestions}) {
    for (const auto& o : *list) choices.push_back(mdg_option{o.label.c_str(), o.label.size(), o.entry.c_str()});
  }
  std::vector<const mdg_option*> choice_ptrs;
  choice_ptrs.reserve(choices.size());
  for (const auto& c : choices) choice_ptrs.push_back(&c);
  std::vector<const char*> follow_ups;
  follow_ups.reserve(b.follow_ups.size());
  for (const auto& id : b.follow_ups) follow_ups.push_back(id.c_str());
  auto array_or_null = [](auto& v, std::size_t at, std::size_t count) { return count ? v.data() + at : nullptr; };
  const mdg_bot_info bot{b.decision.c_str(),
                         b.entry.c_str(),
                         array_or_null(choice_ptrs, 0, b.options.size()),
                         b.options.size(),
                         array_or_null(choice_ptrs, b.options.size(), b.suggestions.size()),
                         b.suggestions.size(),
                         array_or_null(follow_ups, 0, follow_ups.size()),
                         follow_ups.size()};
  const madoguchi::protocol::EventData& d = e.data;
  const mdg_event_data data{d.reason.c_str(), d.queue_position.value_or(0), d.agent.c_str(),
                            d.from.c_str(),   d.to.c_str(),                  d.by.c_str()};

  mdg_event ev{};
  ev.kind = to_kind(e.kind);
  ev.state = to_state(e.state);
  ev.conversation = f.conversation.c_str();
  ev.conversation_state = e.kind == K::kWelcome ? f.state.c_str() : "";
  ev.id = f.id.c_str();
  ev.seq = f.seq.value_or(0);
  ev.last_seq = f.last_seq.value_or(0);
  ev.at = f.at;
  ev.from = f.from.c_str();
  ev.agent = f.agent.c_str();
  ev.text = f.text.c_str();
  ev.text_size = f.text.size();
  ev.attachments = attachment_ptrs.empty() ? nullptr : attachment_ptrs.data();
  ev.attachment_count = attachment_ptrs.size();
  ev.bot_json = f.bot_json.c_str();
  ev.event = f.event.c_str();
  ev.data_json = e.kind == K::kEvent ? (f.data_json.empty() ? "{}" : f.data_json.c_str()) : "";
  ev.duplicate = f.duplicate ? 1 : 0;
  ev.typing = e.kind == K::kTyping && f.state == "start" ? 1 : 0;
  ev.error = error_code.c_str();
  ev.error_message = e.kind == K::kError ? f.message.c_str() : "";
  ev.frame_json = frame_json.c_str();
  ev.bot = e.kind == K::kMessage && !f.bot_json.empty() ? &bot : nullptr;
  ev.data = e.kind == K::kEvent ? &data : nullptr;

  const Relay* outer = tl_in_callback;
  tl_in_callback = &relay;
  relay.on_event(&ev, relay.userdata);
  tl_in_callback = outer;
}

madoguchi::Logger relay_logger(const std::shared_ptr<Relay>& relay, int level) {
  madoguchi::Logger logger = make_logger(relay->log_cb, level, relay->userdata);
  if (logger.sink) {  // the same sink, silent once the client is stopped
    logger.sink = [relay, sink = std::move(logger.sink)](madoguchi::LogLevel lvl, std::string_view message) {
      if (!relay->stopped.load()) sink(lvl, message);
    };
  }
  return logger;
}

int copy_id(mdg_message_id* out, const std::string& id) {
  if (out == nullptr) return MDG_OK;
  if (id.size() >= sizeof out->str) return set_error(MDG_EINTERNAL, "a message id longer than mdg_message_id holds");
  std::memcpy(out->str, id.c_str(), id.size() + 1);
  return MDG_OK;
}

}  // namespace

struct mdg_client {
  std::shared_ptr<Relay> relay;
  std::unique_ptr<madoguchi::Client> client;
};

namespace {

int send_message(const char* function, mdg_message_id* out, mdg_client* c, const char* text, std::size_t size,
                 std::vector<madoguchi::protocol::Attachment> attachments) {
  if (out != nullptr) out->str[0] = '\0';
  if (c == nullptr) return null_argument(function, "client");
  auto t = text_arg(function, "text", text, size);
  if (!t) return mdg_error_last_code();
  auto id = c->client->send(*t, std::move(attachments));
  if (!id) return set_error(id.status());
  return copy_id(out, *id);
}

}  // namespace

extern "C" {

MDG_EXTERN(int) mdg_client_options_init(mdg_client_options* opts, unsigned int version) {
  if (opts == nullptr) return null_argument("mdg_client_options_init", "opts");
  if (int rc = check_options_version("mdg_client_options_init", version, MDG_CLIENT_OPTIONS_VERSION); rc != MDG_OK) {
    return rc;
  }
  const mdg_client_options defaults = MDG_CLIENT_OPTIONS_INIT;
  *opts = defaults;
  opts->version = version;
  return MDG_OK;
}

MDG_EXTERN(int) mdg_client_new(mdg_client** out, const mdg_client_options* opts) {
  return guard("mdg_client_new", [&]() -> int {
    constexpr const char* fn = "mdg_client_new";
    if (out == nullptr) return null_argument(fn, "out");
    *out = nullptr;
    if (opts == nullptr) return null_argument(fn, "opts");
    if (int rc = check_options_version(fn, opts->version, MDG_CLIENT_OPTIONS_VERSION); rc != MDG_OK) return rc;
    if (opts->url == nullptr) return null_argument(fn, "opts->url");
    if (int rc = check_utf8(fn, "opts->url", opts->url); rc != MDG_OK) return rc;
    if (opts->locale != nullptr) {
      if (int rc = check_utf8(fn, "opts->locale", opts->locale); rc != MDG_OK) return rc;
    }
    if (opts->dispatch != MDG_DISPATCH_CALLBACK && opts->dispatch != MDG_DISPATCH_POLL) {
      return set_error(MDG_EINVAL, std::string(fn) + ": dispatch " + std::to_string(opts->dispatch) +
                                       " is neither MDG_DISPATCH_CALLBACK nor MDG_DISPATCH_POLL");
    }
    if (opts->backoff_ms == nullptr && opts->backoff_count > 0) return null_argument(fn, "opts->backoff_ms");

    auto relay = std::make_shared<Relay>();
    relay->on_event = opts->on_event;
    relay->log_cb = opts->log_cb;
    relay->userdata = opts->userdata;

    madoguchi::ClientConfig cfg;
    cfg.url = opts->url;
    cfg.state_path = str_or_empty(opts->state_path);
    cfg.locale = str_or_empty(opts->locale);
    if (opts->visitor != nullptr) {
      for (const char* const* kv = opts->visitor; *kv != nullptr; kv += 2) {
        if (kv[1] == nullptr) {
          return set_error(MDG_EINVAL, std::string(fn) + ": visitor attribute '" + kv[0] +
                                           "' has no value (the list is key, value, ..., NULL)");
        }
        if (int rc = check_utf8(fn, "a visitor attribute", kv[0]); rc != MDG_OK) return rc;
        if (int rc = check_utf8(fn, "a visitor attribute", kv[1]); rc != MDG_OK) return rc;
        cfg.visitor[kv[0]] = kv[1];
      }
    }
    if (opts->backoff_ms != nullptr && opts->backoff_count > 0) {
      cfg.backoff_ms.assign(opts->backoff_ms, opts->backoff_ms + opts->backoff_count);
    }
    cfg.jitter_percent = opts->jitter_percent;
    cfg.dispatch = opts->dispatch == MDG_DISPATCH_POLL ? madoguchi::Dispatch::kPoll : madoguchi::Dispatch::kCallback;
    cfg.on_event = [relay](const madoguchi::ClientEvent& e) {
      try {
        deliver(*relay, e);
      } catch (...) {
        // Out of memory while building the C view of an event: the event is dropped.
      }
    };
    cfg.logger = relay_logger(relay, opts->log_level);

    auto client = madoguchi::Client::create(std::move(cfg));
    if (!client) return set_error(client.status());
    auto handle = std::make_unique<mdg_client>();
    handle->relay = std::move(relay);
    handle->client = std::move(*client);
    *out = handle.release();
    return MDG_OK;
  });
}

MDG_EXTERN(int) mdg_client_connect(mdg_client* c) {
  return guard("mdg_client_connect", [&]() -> int {
    if (c == nullptr) return null_argument("mdg_client_connect", "client");
    return set_error(c->client->start());
  });
}

MDG_EXTERN(int) mdg_client_send(mdg_message_id* out, mdg_client* c, const char* text, std::size_t size) {
  return guard("mdg_client_send", [&]() -> int { return send_message("mdg_client_send", out, c, text, size, {}); });
}

MDG_EXTERN(int) mdg_client_send_attachments(mdg_message_id* out, mdg_client* c, const char* text, std::size_t size,
                                            const mdg_attachment* const* attachments, std::size_t count) {
  return guard("mdg_client_send_attachments", [&]() -> int {
    constexpr const char* fn = "mdg_client_send_attachments";
    if (out != nullptr) out->str[0] = '\0';
    if (attachments == nullptr && count > 0) return null_argument(fn, "attachments");
    if (count > 16) {
      return set_error(MDG_EINVAL, std::string(fn) + ": " + std::to_string(count) +
                                       " attachments; a message has at most 16");
    }
    std::vector<madoguchi::protocol::Attachment> list;
    for (std::size_t i = 0; i < count; ++i) {
      const mdg_attachment* a = attachments[i];
      if (a == nullptr) return set_error(MDG_EINVAL, std::string(fn) + ": attachments[" + std::to_string(i) + "] is NULL");
      for (const char* field : {a->name, a->type, a->url}) {
        if (int rc = check_utf8(fn, "an attachment's name, type or url", str_or_empty(field)); rc != MDG_OK) return rc;
      }
      list.push_back({str_or_empty(a->name), str_or_empty(a->type), a->size, str_or_empty(a->url)});
    }
    return send_message(fn, out, c, text, size, std::move(list));
  });
}

MDG_EXTERN(int) mdg_client_choose(mdg_message_id* out, mdg_client* c, const char* entry, const char* label) {
  return guard("mdg_client_choose", [&]() -> int {
    constexpr const char* fn = "mdg_client_choose";
    if (out != nullptr) out->str[0] = '\0';
    if (c == nullptr) return null_argument(fn, "client");
    if (entry == nullptr) return null_argument(fn, "entry");
    if (label == nullptr) return null_argument(fn, "label");
    if (int rc = check_utf8(fn, "entry", entry); rc != MDG_OK) return rc;
    if (int rc = check_utf8(fn, "label", label); rc != MDG_OK) return rc;
    auto id = c->client->choose({label, entry});
    if (!id) return set_error(id.status());
    return copy_id(out, *id);
  });
}

MDG_EXTERN(int) mdg_client_typing(mdg_client* c, int active) {
  return guard("mdg_client_typing", [&]() -> int {
    if (c == nullptr) return null_argument("mdg_client_typing", "client");
    return set_error(c->client->typing(active != 0));
  });
}

MDG_EXTERN(int) mdg_client_mark_read(mdg_client* c, std::int64_t seq) {
  return guard("mdg_client_mark_read", [&]() -> int {
    if (c == nullptr) return null_argument("mdg_client_mark_read", "client");
    return set_error(c->client->mark_read(seq));
  });
}

MDG_EXTERN(int) mdg_client_poll(mdg_client* c, int timeout_ms, std::size_t max) {
  return guard("mdg_client_poll", [&]() -> int {
    if (c == nullptr) return null_argument("mdg_client_poll", "client");
    // A callback may free `c` during poll(): nothing of it is used afterwards.
    std::size_t n = c->client->poll(timeout_ms, max == 0 ? SIZE_MAX : max);
    return static_cast<int>(std::min<std::size_t>(n, INT_MAX));
  });
}

MDG_EXTERN(int) mdg_client_state(int* out, const mdg_client* c) {
  return guard("mdg_client_state", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_client_state", "out");
    if (c == nullptr) return null_argument("mdg_client_state", "client");
    *out = to_state(c->client->state());
    return MDG_OK;
  });
}

MDG_EXTERN(int) mdg_client_conversation(mdg_buf* out, const mdg_client* c) {
  return guard("mdg_client_conversation", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_client_conversation", "out");
    *out = mdg_buf MDG_BUF_INIT;
    if (c == nullptr) return null_argument("mdg_client_conversation", "client");
    return put_buf(out, c->client->conversation());
  });
}

MDG_EXTERN(int) mdg_client_last_seq(std::int64_t* out, const mdg_client* c) {
  return guard("mdg_client_last_seq", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_client_last_seq", "out");
    if (c == nullptr) return null_argument("mdg_client_last_seq", "client");
    *out = c->client->last_seq();
    return MDG_OK;
  });
}

MDG_EXTERN(int) mdg_client_pending(std::size_t* out, const mdg_client* c) {
  return guard("mdg_client_pending", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_client_pending", "out");
    if (c == nullptr) return null_argument("mdg_client_pending", "client");
    *out = c->client->pending();
    return MDG_OK;
  });
}

MDG_EXTERN(int) mdg_client_close(mdg_client* c, int timeout_ms) {
  return guard("mdg_client_close", [&]() -> int {
    if (c == nullptr) return null_argument("mdg_client_close", "client");
    if (tl_in_callback == c->relay.get()) {
      return set_error(MDG_EBUSY,
                       "mdg_client_close: called from the client's own callback, it would wait for itself; close "
                       "from another thread, or after mdg_client_poll() returns (mdg_client_free() is allowed here)");
    }
    return set_error(c->client->close(timeout_ms));
  });
}

MDG_EXTERN(void) mdg_client_free(mdg_client* c) {
  if (c == nullptr) return;
  std::unique_ptr<mdg_client> owned(c);
  owned->relay->stopped.store(true);
  try {
    owned->client.reset();  // close(0), or from a callback: the network thread ends by itself
  } catch (...) {
    // ~Client does not throw; nothing may leave a void C function anyway.
  }
}

}  // extern "C"
