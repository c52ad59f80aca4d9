// capi_live.hpp: what the visitor's client (capi_client.cpp) and the agent's
// (capi_agent.cpp) share: the C view of a protocol frame, the relay between a handle and its
// C callbacks, and the checks of their common options.
#pragma once

#include "capi_internal.hpp"

#include <madoguchi/client.hpp>
#include <madoguchi/log.hpp>
#include <madoguchi/protocol.hpp>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mdg_capi {

int to_state(madoguchi::ConnectionState s) noexcept;

// The C callbacks of a client handle, shared by the handle and the C++ client's on_event and
// logger closures. mdg_*_free() first marks it stopped, so that nothing reaches the app after
// it returns, even when it is called from a callback (the network thread then ends by itself
// and only drops what is left).
template <typename EventCb>
struct Relay {
  EventCb on_event = nullptr;
  mdg_log_cb log_cb = nullptr;
  void* userdata = nullptr;
  std::atomic<bool> stopped{false};
};

// The relay whose event callback runs on this thread, if any (mdg_*_close from it: MDG_EBUSY).
extern thread_local const void* tl_in_callback;

// Runs the relay's event callback with `event`, marking this thread as inside it.
template <typename EventCb, typename Event>
void run_callback(const Relay<EventCb>& relay, const Event& event) {
  const void* outer = tl_in_callback;
  tl_in_callback = &relay;
  relay.on_event(&event, relay.userdata);
  tl_in_callback = outer;
}

// The C log callback as a Logger, silent once the relay is stopped.
template <typename EventCb>
madoguchi::Logger relay_logger(const std::shared_ptr<Relay<EventCb>>& relay, int level) {
  madoguchi::Logger logger = make_logger(relay->log_cb, level, relay->userdata);
  if (logger.sink) {
    logger.sink = [relay, sink = std::move(logger.sink)](madoguchi::LogLevel lvl, std::string_view message) {
      if (!relay->stopped.load()) sink(lvl, message);
    };
  }
  return logger;
}

// Writes a message id to `out` (may be NULL).
int copy_id(mdg_message_id* out, const std::string& id) noexcept;

// Makes a Handle (a `relay` and a `client`, see below) from the options both option structs
// have (callbacks, back-off, jitter, dispatch, log level, checked before) and `cfg`, which the
// caller filled with the rest. `deliver(relay, event)` builds an event's C view and runs the
// callback.
template <class Handle, class Opts, class Config, class Deliver>
int live_new(Handle** out, const Opts& opts, Config cfg, Deliver deliver) {
  using RelayType = typename decltype(Handle::relay)::element_type;
  using ClientType = typename decltype(Handle::client)::element_type;
  auto relay = std::make_shared<RelayType>();
  relay->on_event = opts.on_event;
  relay->log_cb = opts.log_cb;
  relay->userdata = opts.userdata;
  if (opts.backoff_ms != nullptr && opts.backoff_count > 0) {
    cfg.backoff_ms.assign(opts.backoff_ms, opts.backoff_ms + opts.backoff_count);
  }
  cfg.jitter_percent = opts.jitter_percent;
  cfg.dispatch = opts.dispatch == MDG_DISPATCH_POLL ? madoguchi::Dispatch::kPoll : madoguchi::Dispatch::kCallback;
  cfg.on_event = [relay, deliver](const auto& e) {
    try {
      deliver(*relay, e);
    } catch (...) {
      // Out of memory while building the C view of an event: the event is dropped.
    }
  };
  cfg.logger = relay_logger(relay, opts.log_level);
  auto client = ClientType::create(std::move(cfg));
  if (!client) return set_error(client.status());
  auto handle = std::make_unique<Handle>();
  handle->relay = std::move(relay);
  handle->client = std::move(*client);
  *out = handle.release();
  return MDG_OK;
}

// What mdg_client_* and mdg_agent_* do alike, for a Handle with a `relay` (shared_ptr<Relay>)
// and a `client` (unique_ptr<Client or AgentClient>); `function` names the C function,
// `object` the handle's parameter ("client", "agent").
template <class Handle>
int live_connect(const char* function, const char* object, Handle* h) {
  return guard(function, [&]() -> int {
    if (h == nullptr) return null_argument(function, object);
    return set_error(h->client->start());
  });
}

template <class Handle>
int live_poll(const char* function, const char* object, Handle* h, int timeout_ms, std::size_t max) {
  return guard(function, [&]() -> int {
    if (h == nullptr) return null_argument(function, object);
    // A callback may free the handle during poll(): nothing of it is used afterwards.
    std::size_t n = h->client->poll(timeout_ms, max == 0 ? SIZE_MAX : max);
    return static_cast<int>(std::min<std::size_t>(n, INT_MAX));
  });
}

template <class Handle>
int live_state(const char* function, const char* object, int* out, const Handle* h) {
  return guard(function, [&]() -> int {
    if (out == nullptr) return null_argument(function, "out");
    if (h == nullptr) return null_argument(function, object);
    *out = to_state(h->client->state());
    return MDG_OK;
  });
}

template <class Handle>
int live_pending(const char* function, const char* object, std::size_t* out, const Handle* h) {
  return guard(function, [&]() -> int {
    if (out == nullptr) return null_argument(function, "out");
    if (h == nullptr) return null_argument(function, object);
    *out = h->client->pending();
    return MDG_OK;
  });
}

template <class Handle>
int live_close(const char* function, const char* object, Handle* h, int timeout_ms) {
  return guard(function, [&]() -> int {
    if (h == nullptr) return null_argument(function, object);
    if (tl_in_callback == h->relay.get()) {
      return set_error(MDG_EBUSY, std::string(function) + ": called from the " + object +
                                      "'s own callback, it would wait for itself; close from another thread, or "
                                      "after its poll returns (freeing it is allowed here)");
    }
    return set_error(h->client->close(timeout_ms));
  });
}

template <class Handle>
void live_free(Handle* h) noexcept {
  if (h == nullptr) return;
  std::unique_ptr<Handle> owned(h);
  owned->relay->stopped.store(true);
  try {
    // A callback already running on the network thread may still call this handle's
    // functions: close first (which waits for it), while the client still exists. From the
    // handle's own callback the destructor lets the network thread end by itself instead.
    if (tl_in_callback != owned->relay.get()) (void)owned->client->close(0);
    owned->client.reset();
  } catch (...) {
    // The clients' destructors do not throw; nothing may leave a void C function anyway.
  }
}

// Checks dispatch and the back-off array of a client's options; MDG_OK or the error recorded.
int check_connection_options(const char* function, int dispatch, const int* backoff_ms,
                             std::size_t backoff_count) noexcept;

// The attachments of a send, checked and copied (at most 16, none NULL, UTF-8 fields).
// nullopt with the error recorded.
std::optional<std::vector<madoguchi::protocol::Attachment>> attachments_arg(const char* function,
                                                                           const mdg_attachment* const* attachments,
                                                                           std::size_t count);

class FrameView {
 public:
  // `kind` is the mdg_event_kind, `state` the mdg_state; `bot` and `data` are the frame's
  // bot_json and data_json, read.
  FrameView(const madoguchi::protocol::Frame& f, int kind, int state, madoguchi::protocol::BotInfo bot,
            madoguchi::protocol::EventData data);
  // As above, reading bot_json and data_json itself.
  FrameView(const madoguchi::protocol::Frame& f, int kind, int state);
  // A state change: no frame.
  explicit FrameView(int state);
  FrameView(const FrameView&) = delete;
  FrameView& operator=(const FrameView&) = delete;

  const mdg_event& event() const noexcept { return ev_; }
  const std::string& frame_json() const noexcept { return frame_json_; }

 private:
  madoguchi::protocol::BotInfo b_;
  madoguchi::protocol::EventData d_;
  std::string frame_json_, error_code_;
  std::vector<mdg_attachment> attachments_;
  std::vector<const mdg_attachment*> attachment_ptrs_;
  std::vector<mdg_option> choices_;
  std::vector<const mdg_option*> choice_ptrs_;
  std::vector<const char*> follow_ups_;
  mdg_bot_info bot_{};
  mdg_event_data data_{};
  mdg_event ev_{};
};

// The mdg_event_kind of a frame that belongs to a conversation (a transcript's, or one the
// hub pushes): message, event, ack, typing, read, error; MDG_EVENT_EVENT for anything else.
int frame_kind(madoguchi::protocol::FrameType type) noexcept;

}  // namespace mdg_capi
