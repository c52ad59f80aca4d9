// capi_live.hpp: what the visitor's client (capi_client.cpp) and the agent's
// (capi_agent.cpp) share: the C view of a protocol frame, the relay between a handle and its
// C callbacks, and the checks of their common options.
#pragma once

#include "capi_internal.hpp"

#include <madoguchi/client.hpp>
#include <madoguchi/log.hpp>
#include <madoguchi/protocol.hpp>

#include <atomic>
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
