// capi_client.cpp: the live-chat client of madoguchi.h over madoguchi::Client (client.hpp).
//
// The C callback and its userdata live in a Relay shared by the handle and the Client's
// on_event/logger closures. mdg_client_free() first marks the Relay stopped, so that nothing
// reaches the app after it returns, even when it is called from a callback (the network
// thread then ends by itself and only drops what is left).
#include "capi_live.hpp"
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

using ClientRelay = Relay<mdg_event_cb>;

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

// Builds the C view of one event (pointing into `e`) and runs the callback.
void deliver(const ClientRelay& relay, const madoguchi::ClientEvent& e) {
  if (relay.on_event == nullptr || relay.stopped.load()) return;
  const int state = to_state(e.state);
  const FrameView view = e.kind == madoguchi::ClientEvent::Kind::kState
                             ? FrameView(state)
                             : FrameView(e.frame, to_kind(e.kind), state, e.bot, e.data);
  run_callback(relay, view.event());
}

}  // namespace

struct mdg_client {
  std::shared_ptr<ClientRelay> relay;
  std::unique_ptr<madoguchi::Client> client;
};

namespace {

int send_message(const char* function, mdg_message_id* out, mdg_client* c, const char* text, std::size_t size,
                 std::vector<madoguchi::protocol::Attachment> attachments) {
  if (out != nullptr) out->str[0] = '\0';
  if (c == nullptr) return null_argument(function, "client");
  auto t = text_arg(function, "text", text, size);
  if (!t) return mdg_error_last_code();
  if (int rc = check_utf8(function, "text", *t); rc != MDG_OK) return rc;
  auto id = c->client->send(*t, std::move(attachments));
  if (!id) return set_error(id.status());
  return copy_id(out, *id);
}

}  // namespace

extern "C" {

MDG_EXTERN(int) mdg_client_options_init(mdg_client_options* opts, unsigned int version) {
  const mdg_client_options defaults = MDG_CLIENT_OPTIONS_INIT;
  return options_init("mdg_client_options_init", opts, version, MDG_CLIENT_OPTIONS_VERSION, defaults);
}

MDG_EXTERN(int) mdg_client_new(mdg_client** out, const mdg_client_options* opts) {
  return guard("mdg_client_new", [&]() -> int {
    constexpr const char* fn = "mdg_client_new";
    if (int rc = check_new_arguments(fn, out, opts, MDG_CLIENT_OPTIONS_VERSION); rc != MDG_OK) return rc;
    if (opts->url == nullptr) return null_argument(fn, "opts->url");
    if (int rc = check_utf8(fn, "opts->url", opts->url); rc != MDG_OK) return rc;
    if (opts->locale != nullptr) {
      if (int rc = check_utf8(fn, "opts->locale", opts->locale); rc != MDG_OK) return rc;
    }
    if (int rc = check_connection_options(fn, opts->dispatch, opts->backoff_ms, opts->backoff_count); rc != MDG_OK) {
      return rc;
    }

    madoguchi::ClientConfig cfg;
    cfg.url = opts->url;
    cfg.state_path = str_or_empty(opts->state_path);
    cfg.locale = str_or_empty(opts->locale);
    if (opts->visitor != nullptr) {
      for (const char* const* kv = opts->visitor; *kv != nullptr; kv += 2) {
        if (int rc = check_utf8(fn, "a visitor attribute", kv[0]); rc != MDG_OK) return rc;
        if (kv[1] == nullptr) {
          return set_error(MDG_EINVAL, std::string(fn) + ": visitor attribute '" + kv[0] +
                                           "' has no value (the list is key, value, ..., NULL)");
        }
        if (int rc = check_utf8(fn, "a visitor attribute", kv[1]); rc != MDG_OK) return rc;
        cfg.visitor[kv[0]] = kv[1];
      }
    }
    return live_new(out, *opts, std::move(cfg), deliver);
  });
}

MDG_EXTERN(int) mdg_client_connect(mdg_client* c) { return live_connect("mdg_client_connect", "client", c); }

MDG_EXTERN(int) mdg_client_send(mdg_message_id* out, mdg_client* c, const char* text, std::size_t size) {
  return guard("mdg_client_send", [&]() -> int { return send_message("mdg_client_send", out, c, text, size, {}); });
}

MDG_EXTERN(int) mdg_client_send_attachments(mdg_message_id* out, mdg_client* c, const char* text, std::size_t size,
                                            const mdg_attachment* const* attachments, std::size_t count) {
  return guard("mdg_client_send_attachments", [&]() -> int {
    constexpr const char* fn = "mdg_client_send_attachments";
    if (out != nullptr) out->str[0] = '\0';
    auto list = attachments_arg(fn, attachments, count);
    if (!list) return mdg_error_last_code();
    return send_message(fn, out, c, text, size, std::move(*list));
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
  return live_poll("mdg_client_poll", "client", c, timeout_ms, max);
}

MDG_EXTERN(int) mdg_client_state(int* out, const mdg_client* c) {
  return live_state("mdg_client_state", "client", out, c);
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
  return live_pending("mdg_client_pending", "client", out, c);
}

MDG_EXTERN(int) mdg_client_close(mdg_client* c, int timeout_ms) {
  return live_close("mdg_client_close", "client", c, timeout_ms);
}

MDG_EXTERN(void) mdg_client_free(mdg_client* c) { live_free(c); }

}  // extern "C"
