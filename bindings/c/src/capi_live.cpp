// capi_live.cpp: FrameView, the mdg_event of one protocol frame, and the rest of what the
// visitor's and the agent's clients share.
#include "capi_live.hpp"

#include <cstring>
#include <utility>

namespace mdg_capi {

thread_local const void* tl_in_callback = nullptr;

int copy_id(mdg_message_id* out, const std::string& id) noexcept {
  if (out == nullptr) return MDG_OK;
  if (id.size() >= sizeof out->str) return set_error(MDG_EINTERNAL, "a message id longer than mdg_message_id holds");
  std::memcpy(out->str, id.c_str(), id.size() + 1);
  return MDG_OK;
}

int check_connection_options(const char* function, int dispatch, const int* backoff_ms,
                             std::size_t backoff_count) noexcept {
  if (dispatch != MDG_DISPATCH_CALLBACK && dispatch != MDG_DISPATCH_POLL) {
    return set_error(MDG_EINVAL, std::string(function) + ": dispatch " + std::to_string(dispatch) +
                                     " is neither MDG_DISPATCH_CALLBACK nor MDG_DISPATCH_POLL");
  }
  if (backoff_ms == nullptr && backoff_count > 0) return null_argument(function, "opts->backoff_ms");
  return MDG_OK;
}

std::optional<std::vector<madoguchi::protocol::Attachment>> attachments_arg(const char* fn,
                                                                           const mdg_attachment* const* attachments,
                                                                           std::size_t count) {
  if (attachments == nullptr && count > 0) {
    null_argument(fn, "attachments");
    return std::nullopt;
  }
  if (count > 16) {
    set_error(MDG_EINVAL, std::string(fn) + ": " + std::to_string(count) + " attachments; a message has at most 16");
    return std::nullopt;
  }
  std::vector<madoguchi::protocol::Attachment> list;
  for (std::size_t i = 0; i < count; ++i) {
    const mdg_attachment* a = attachments[i];
    if (a == nullptr) {
      set_error(MDG_EINVAL, std::string(fn) + ": attachments[" + std::to_string(i) + "] is NULL");
      return std::nullopt;
    }
    for (const char* field : {a->name, a->type, a->url}) {
      if (check_utf8(fn, "an attachment's name, type or url", str_or_empty(field)) != MDG_OK) return std::nullopt;
    }
    list.push_back({str_or_empty(a->name), str_or_empty(a->type), a->size, str_or_empty(a->url)});
  }
  return list;
}

int to_state(madoguchi::ConnectionState s) noexcept {
  switch (s) {
    case madoguchi::ConnectionState::kConnecting: return MDG_STATE_CONNECTING;
    case madoguchi::ConnectionState::kConnected: return MDG_STATE_CONNECTED;
    case madoguchi::ConnectionState::kDisconnected: return MDG_STATE_DISCONNECTED;
    case madoguchi::ConnectionState::kClosed: return MDG_STATE_CLOSED;
  }
  return MDG_STATE_CLOSED;
}

int frame_kind(madoguchi::protocol::FrameType type) noexcept {
  using T = madoguchi::protocol::FrameType;
  switch (type) {
    case T::kMessage: return MDG_EVENT_MESSAGE;
    case T::kAck: return MDG_EVENT_ACK;
    case T::kTyping: return MDG_EVENT_TYPING;
    case T::kRead: return MDG_EVENT_READ;
    case T::kError: return MDG_EVENT_ERROR;
    case T::kWelcome: return MDG_EVENT_WELCOME;
    default: return MDG_EVENT_EVENT;
  }
}

FrameView::FrameView(int state) {
  ev_.kind = MDG_EVENT_STATE;
  ev_.state = state;
  for (const char** s : {&ev_.conversation, &ev_.conversation_state, &ev_.id, &ev_.from, &ev_.agent, &ev_.text,
                         &ev_.bot_json, &ev_.event, &ev_.data_json, &ev_.error, &ev_.error_message, &ev_.frame_json}) {
    *s = "";
  }
}

FrameView::FrameView(const madoguchi::protocol::Frame& f, int kind, int state)
    : FrameView(f, kind, state,
                kind == MDG_EVENT_MESSAGE && !f.bot_json.empty() ? madoguchi::protocol::parse_bot_info(f.bot_json)
                                                                 : madoguchi::protocol::BotInfo{},
                kind == MDG_EVENT_EVENT ? madoguchi::protocol::parse_event_data(f.data_json)
                                        : madoguchi::protocol::EventData{}) {}

FrameView::FrameView(const madoguchi::protocol::Frame& f, int kind, int state, madoguchi::protocol::BotInfo bot,
                     madoguchi::protocol::EventData data)
    : b_(std::move(bot)), d_(std::move(data)), frame_json_(madoguchi::protocol::encode(f)) {
  if (kind == MDG_EVENT_ERROR) error_code_ = std::string(madoguchi::protocol::to_string(f.error));
  attachments_.reserve(f.attachments.size());
  for (const auto& a : f.attachments) {
    attachments_.push_back(mdg_attachment{a.name.c_str(), a.type.c_str(), a.size, a.url.c_str()});
  }
  attachment_ptrs_.reserve(attachments_.size());
  for (const auto& a : attachments_) attachment_ptrs_.push_back(&a);

  // The bot's options and suggestions as mdg_options, one array of each and one of pointers
  // to them (the form mdg_bot_info hands out).
  choices_.reserve(b_.options.size() + b_.suggestions.size());
  for (const auto* list : {&b_.options, &b_.suggestions}) {
    for (const auto& o : *list) choices_.push_back(mdg_option{o.label.c_str(), o.label.size(), o.entry.c_str()});
  }
  choice_ptrs_.reserve(choices_.size());
  for (const auto& c : choices_) choice_ptrs_.push_back(&c);
  follow_ups_.reserve(b_.follow_ups.size());
  for (const auto& id : b_.follow_ups) follow_ups_.push_back(id.c_str());
  auto array_or_null = [](auto& v, std::size_t at, std::size_t count) { return count ? v.data() + at : nullptr; };
  bot_ = mdg_bot_info{b_.decision.c_str(),
                      b_.entry.c_str(),
                      array_or_null(choice_ptrs_, 0, b_.options.size()),
                      b_.options.size(),
                      array_or_null(choice_ptrs_, b_.options.size(), b_.suggestions.size()),
                      b_.suggestions.size(),
                      array_or_null(follow_ups_, 0, follow_ups_.size()),
                      follow_ups_.size()};
  data_ = mdg_event_data{d_.reason.c_str(), d_.queue_position.value_or(0), d_.agent.c_str(),
                         d_.from.c_str(),   d_.to.c_str(),                  d_.by.c_str()};

  ev_.kind = kind;
  ev_.state = state;
  ev_.conversation = f.conversation.c_str();
  ev_.conversation_state = kind == MDG_EVENT_WELCOME ? f.state.c_str() : "";
  ev_.id = f.id.c_str();
  ev_.seq = f.seq.value_or(0);
  ev_.last_seq = f.last_seq.value_or(0);
  ev_.at = f.at;
  ev_.from = f.from.c_str();
  ev_.agent = f.agent.c_str();
  ev_.text = f.text.c_str();
  ev_.text_size = f.text.size();
  ev_.attachments = attachment_ptrs_.empty() ? nullptr : attachment_ptrs_.data();
  ev_.attachment_count = attachment_ptrs_.size();
  ev_.bot_json = f.bot_json.c_str();
  ev_.event = f.event.c_str();
  ev_.data_json = kind == MDG_EVENT_EVENT ? (f.data_json.empty() ? "{}" : f.data_json.c_str()) : "";
  ev_.duplicate = f.duplicate ? 1 : 0;
  ev_.typing = kind == MDG_EVENT_TYPING && f.state == "start" ? 1 : 0;
  ev_.error = error_code_.c_str();
  ev_.error_message = kind == MDG_EVENT_ERROR ? f.message.c_str() : "";
  ev_.frame_json = frame_json_.c_str();
  ev_.bot = kind == MDG_EVENT_MESSAGE && !f.bot_json.empty() ? &bot_ : nullptr;
  ev_.data = kind == MDG_EVENT_EVENT ? &data_ : nullptr;
}

}  // namespace mdg_capi
