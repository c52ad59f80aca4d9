// The JSON codec of the live-chat protocol (docs/protocol.md).
#include <madoguchi/protocol.hpp>

#include <madoguchi/detail/json_writer.hpp>

#include <simdjson.h>

#include <array>
#include <utility>

namespace madoguchi::protocol {
inline namespace v1 {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

constexpr std::array<std::pair<FrameType, std::string_view>, 16> kTypes = {{
    {FrameType::kHello, "hello"},         {FrameType::kWelcome, "welcome"},
    {FrameType::kMessage, "message"},     {FrameType::kAck, "ack"},
    {FrameType::kTyping, "typing"},       {FrameType::kRead, "read"},
    {FrameType::kEvent, "event"},         {FrameType::kPing, "ping"},
    {FrameType::kPong, "pong"},           {FrameType::kError, "error"},
    {FrameType::kQueue, "queue"},         {FrameType::kTake, "take"},
    {FrameType::kTransfer, "transfer"},   {FrameType::kHandBack, "hand_back"},
    {FrameType::kClose, "close"},         {FrameType::kConversation, "conversation"},
}};

struct ErrorInfo {
  ErrorKind kind;
  std::string_view code;
  int close;
};
constexpr std::array<ErrorInfo, 13> kErrors = {{
    {ErrorKind::kBadJson, "bad_json", 0},
    {ErrorKind::kBadFrame, "bad_frame", 0},
    {ErrorKind::kUnknownType, "unknown_type", 0},
    {ErrorKind::kUnsupportedVersion, "unsupported_version", 1002},
    {ErrorKind::kInvalidUtf8, "invalid_utf8", 1007},
    {ErrorKind::kTooLarge, "too_large", 1009},
    {ErrorKind::kRateLimited, "rate_limited", 0},
    {ErrorKind::kUnauthorized, "unauthorized", 1008},
    {ErrorKind::kForbidden, "forbidden", 0},
    {ErrorKind::kNotFound, "not_found", 0},
    {ErrorKind::kConflict, "conflict", 0},
    {ErrorKind::kInternal, "internal", 0},
    {ErrorKind::kShuttingDown, "shutting_down", 1001},
}};

// Reads the fields of one frame object, stopping at the first problem.
class Reader {
 public:
  Reader(object obj, std::string_view type_name) : obj_(obj), type_(type_name) {}

  bool ok() const noexcept { return error_.empty(); }
  const std::string& error() const noexcept { return error_; }

  bool has(std::string_view key) {
    element e;
    return obj_[key].get(e) == simdjson::SUCCESS && !e.is_null();
  }

  // A required string must not be empty, unless `allow_empty` (a message's text).
  void string(std::string_view key, std::string& out, bool required, std::string_view hint = {},
              bool allow_empty = false) {
    if (!ok()) return;
    element e;
    if (obj_[key].get(e) != simdjson::SUCCESS || e.is_null()) {
      if (required) fail(key, "missing", hint);
      return;
    }
    std::string_view s;
    if (e.get_string().get(s) != simdjson::SUCCESS) return fail(key, "must be a string", hint);
    if (required && !allow_empty && s.empty()) return fail(key, "must not be empty", hint);
    out.assign(s);
  }

  void integer(std::string_view key, std::optional<std::int64_t>& out, bool required, std::int64_t min = 0) {
    if (!ok()) return;
    element e;
    if (obj_[key].get(e) != simdjson::SUCCESS || e.is_null()) {
      if (required) fail(key, "missing", "a whole number");
      return;
    }
    std::int64_t v;
    if (e.get_int64().get(v) != simdjson::SUCCESS) {
      std::uint64_t u;
      if (e.get_uint64().get(u) == simdjson::SUCCESS) return fail(key, "is too large", {});
      return fail(key, "must be a whole number", {});
    }
    if (v < min) return fail(key, "must be at least " + std::to_string(min), {});
    out = v;
  }

  void integer(std::string_view key, std::int64_t& out) {
    std::optional<std::int64_t> v;
    integer(key, v, false);
    if (v) out = *v;
  }

  void boolean(std::string_view key, bool& out) {
    if (!ok()) return;
    element e;
    if (obj_[key].get(e) != simdjson::SUCCESS || e.is_null()) return;
    if (e.get_bool().get(out) != simdjson::SUCCESS) fail(key, "must be true or false", {});
  }

  // Nested JSON kept as text; `want_array` selects array or object.
  void nested(std::string_view key, std::string& out, bool want_array) {
    if (!ok()) return;
    element e;
    if (obj_[key].get(e) != simdjson::SUCCESS || e.is_null()) return;
    if (want_array ? !e.is_array() : !e.is_object()) {
      return fail(key, want_array ? "must be a list" : "must be an object", {});
    }
    out = simdjson::minify(e);
  }

  // A message's "agent": {"name": "sato"} (docs/protocol.md).
  void agent_name(std::string& out) {
    if (!ok()) return;
    element e;
    if (obj_["agent"].get(e) != simdjson::SUCCESS || e.is_null()) return;
    std::string_view name;
    if (e["name"].get_string().get(name) != simdjson::SUCCESS) {
      return fail("agent", "must be an object with \"name\"", {});
    }
    out.assign(name);
  }

  void attachments(std::vector<Attachment>& out, std::size_t max) {
    if (!ok()) return;
    element e;
    if (obj_["attachments"].get(e) != simdjson::SUCCESS || e.is_null()) return;
    array arr;
    if (e.get_array().get(arr) != simdjson::SUCCESS) return fail("attachments", "must be a list", {});
    if (arr.size() > max) return fail("attachments", "has more than " + std::to_string(max) + " items", {});
    for (element item : arr) {
      object a;
      if (item.get_object().get(a) != simdjson::SUCCESS) {
        return fail("attachments", "items must be objects with name, type, size, url", {});
      }
      Reader r(a, type_);
      Attachment att;
      std::optional<std::int64_t> size;
      r.string("name", att.name, true);
      r.string("type", att.type, false);
      r.integer("size", size, false);
      r.string("url", att.url, false);
      if (!r.ok()) {
        error_ = "attachment " + r.error_.substr(r.error_.find(':') + 2);
        return;
      }
      att.size = size.value_or(0);
      out.push_back(std::move(att));
    }
  }

  void visitor(std::map<std::string, std::string, std::less<>>& out, std::size_t max, std::size_t max_bytes) {
    if (!ok()) return;
    element e;
    if (obj_["visitor"].get(e) != simdjson::SUCCESS || e.is_null()) return;
    object o;
    if (e.get_object().get(o) != simdjson::SUCCESS) return fail("visitor", "must be an object of strings", {});
    if (o.size() > max) return fail("visitor", "has more than " + std::to_string(max) + " attributes", {});
    std::size_t bytes = 0;
    for (auto field : o) {
      std::string_view v;
      if (field.value.get_string().get(v) != simdjson::SUCCESS) {
        return fail("visitor", "attribute \"" + std::string(field.key) + "\" must be a string", {});
      }
      bytes += field.key.size() + v.size();
      if (bytes > max_bytes) {
        return fail("visitor", "is over " + std::to_string(max_bytes) + " bytes of names and values",
                    "keep ids and short labels; the hub keeps them with the conversation");
      }
      out.emplace(std::string(field.key), std::string(v));
    }
  }

  void fail(std::string_view key, std::string_view what, std::string_view hint) {
    error_ = std::string(type_) + ": ";
    error_ += what == "missing" ? "missing \"" + std::string(key) + "\"" : "\"" + std::string(key) + "\" " + std::string(what);
    if (!hint.empty()) {
      error_ += " (";
      error_ += hint;
      error_ += ")";
    }
  }

 private:
  object obj_;
  std::string_view type_;
  std::string error_;
};

}  // namespace

std::string_view to_string(FrameType type) noexcept {
  for (const auto& [t, name] : kTypes) {
    if (t == type) return name;
  }
  return "?";
}

std::optional<FrameType> frame_type_from_string(std::string_view name) noexcept {
  for (const auto& [t, n] : kTypes) {
    if (n == name) return t;
  }
  return std::nullopt;
}

std::string_view to_string(ErrorKind kind) noexcept {
  for (const auto& e : kErrors) {
    if (e.kind == kind) return e.code;
  }
  return "internal";
}

std::optional<ErrorKind> error_kind_from_string(std::string_view code) noexcept {
  for (const auto& e : kErrors) {
    if (e.code == code) return e.kind;
  }
  return std::nullopt;
}

int close_code(ErrorKind kind) noexcept {
  for (const auto& e : kErrors) {
    if (e.kind == kind) return e.close;
  }
  return 0;
}

bool valid_client_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

std::string string_field(object o, std::string_view key) {
  std::string_view v;
  return o[key].get_string().get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
}

// A T read from the JSON object in `json` by `read(object, T&)`; a default T when the text
// is empty, not JSON or not an object.
template <class T, class Read>
T read_object(std::string_view json, Read&& read) {
  T out;
  // One parser per thread, as in decode(), kept with its buffers: a client reads the bot
  // part of every bot message and the data of every event. (`read` copies what it keeps.)
  thread_local simdjson::dom::parser parser;
  object o;
  if (!json.empty() && parser.parse(json).get_object().get(o) == simdjson::SUCCESS) read(o, out);
  return out;
}

}  // namespace

BotInfo parse_bot_info(std::string_view bot_json) {
  return read_object<BotInfo>(bot_json, [](object o, BotInfo& b) {
    b.decision = string_field(o, "decision");
    b.entry = string_field(o, "entry");
    array list;
    if (o["follow_ups"].get_array().get(list) == simdjson::SUCCESS) {
      for (element e : list) {
        std::string_view id;
        if (e.get_string().get(id) == simdjson::SUCCESS) b.follow_ups.emplace_back(id);
      }
    }
    for (auto [key, out] : {std::pair{"options", &b.options}, std::pair{"suggestions", &b.suggestions}}) {
      if (o[key].get_array().get(list) != simdjson::SUCCESS) continue;
      for (element e : list) {
        object opt;
        if (e.get_object().get(opt) != simdjson::SUCCESS) continue;
        BotOption option{string_field(opt, "label"), string_field(opt, "entry")};
        if (!option.entry.empty()) out->push_back(std::move(option));
      }
    }
  });
}

EventData parse_event_data(std::string_view data_json) {
  return read_object<EventData>(data_json, [](object o, EventData& d) {
    d.reason = string_field(o, "reason");
    d.agent = string_field(o, "agent");
    d.from = string_field(o, "from");
    d.to = string_field(o, "to");
    d.by = string_field(o, "by");
    std::int64_t position = 0;
    if (o["queue_position"].get_int64().get(position) == simdjson::SUCCESS) d.queue_position = position;
  });
}

Frame make_error(ErrorKind kind, std::string message, std::string id) {
  Frame f;
  f.type = FrameType::kError;
  f.error = kind;
  f.message = std::move(message);
  f.id = std::move(id);
  return f;
}

std::variant<Frame, DecodeError> decode(std::string_view text, const DecodeLimits& limits) {
  auto fail = [](ErrorKind kind, std::string message, std::string id = {}) -> std::variant<Frame, DecodeError> {
    return DecodeError{kind, std::move(message), std::move(id), {}};
  };
  if (text.size() > limits.max_frame_bytes) {
    return fail(ErrorKind::kTooLarge, "the frame is " + std::to_string(text.size()) + " bytes; the limit is " +
                                          std::to_string(limits.max_frame_bytes));
  }
  // One parser per thread: simdjson parsers are not thread-safe, and reusing one avoids an
  // allocation per frame.
  thread_local simdjson::dom::parser parser;
  element root;
  auto err = parser.parse(text.data(), text.size(), true).get(root);
  if (err == simdjson::UTF8_ERROR) return fail(ErrorKind::kInvalidUtf8, "the frame is not valid UTF-8");
  if (err != simdjson::SUCCESS) {
    return fail(ErrorKind::kBadJson, std::string("the frame is not valid JSON: ") + simdjson::error_message(err));
  }
  object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) {
    return fail(ErrorKind::kBadJson, "a frame must be a JSON object with \"v\" and \"type\"");
  }
  // The client message id and the conversation first, so that errors about the frame can
  // name them.
  std::string id, conversation;
  {
    std::string_view s;
    if (obj["id"].get_string().get(s) == simdjson::SUCCESS) id.assign(s);
    if (obj["conversation"].get_string().get(s) == simdjson::SUCCESS) conversation.assign(s);
  }
  auto fail_frame = [&](ErrorKind kind, std::string message) -> std::variant<Frame, DecodeError> {
    return DecodeError{kind, std::move(message), id, conversation};
  };
  std::int64_t version = 0;
  if (obj["v"].get_int64().get(version) != simdjson::SUCCESS) {
    return fail_frame(ErrorKind::kBadFrame, "missing \"v\" (the protocol version, 1)");
  }
  if (version != kVersion) {
    return fail_frame(ErrorKind::kUnsupportedVersion,
                      "protocol version " + std::to_string(version) + " is not supported (this hub speaks 1)");
  }
  std::string_view type_name;
  if (obj["type"].get_string().get(type_name) != simdjson::SUCCESS) {
    return fail_frame(ErrorKind::kBadFrame, "missing \"type\" (a string such as \"message\")");
  }
  auto type = frame_type_from_string(type_name);
  if (!type) return fail_frame(ErrorKind::kUnknownType, "unknown frame type \"" + std::string(type_name) + "\"");

  Frame f;
  f.type = *type;
  Reader r(obj, type_name);
  r.string("conversation", f.conversation, false);
  switch (f.type) {
    case FrameType::kHello:
      r.string("token", f.token, false);
      r.integer("last_seq", f.last_seq, false);
      r.string("locale", f.locale, false);
      r.string("client", f.client, false);
      r.string("agent", f.agent, false);
      r.string("password", f.password, false);
      r.visitor(f.visitor, limits.max_visitor_attributes, limits.max_visitor_bytes);
      break;
    case FrameType::kWelcome:
      r.string("token", f.token, false);
      r.string("state", f.state, false);
      r.string("agent", f.agent, false);
      r.integer("last_seq", f.last_seq, false);
      break;
    case FrameType::kMessage:
      r.string("id", f.id, true, "a client message id: 1-64 of A-Z a-z 0-9 _ -");
      r.attachments(f.attachments, limits.max_attachments);
      r.string("text", f.text, f.attachments.empty(), "the message text", true);
      r.string("choice", f.choice, false);
      r.integer("seq", f.seq, false, 1);
      r.string("from", f.from, false);
      r.agent_name(f.agent);
      r.integer("at", f.at);
      r.nested("bot", f.bot_json, false);
      if (r.ok() && !valid_client_id(f.id)) {
        return DecodeError{ErrorKind::kBadFrame, "message: \"id\" must be 1-64 of A-Z a-z 0-9 _ -", {}, conversation};
      }
      break;
    case FrameType::kAck:
      r.string("id", f.id, true);
      r.integer("seq", f.seq, true, 1);
      r.boolean("duplicate", f.duplicate);
      break;
    case FrameType::kTyping:
      r.string("state", f.state, true, "\"start\" or \"stop\"");
      r.string("from", f.from, false);
      if (r.ok() && f.state != "start" && f.state != "stop") {
        return fail_frame(ErrorKind::kBadFrame, "typing: \"state\" must be \"start\" or \"stop\"");
      }
      break;
    case FrameType::kRead:
      r.integer("seq", f.seq, true, 0);
      r.string("from", f.from, false);
      break;
    case FrameType::kEvent:
      r.string("event", f.event, true);
      r.integer("seq", f.seq, false, 1);
      r.integer("at", f.at);
      r.nested("data", f.data_json, false);
      break;
    case FrameType::kPing:
    case FrameType::kPong:
      r.string("id", f.id, false);
      break;
    case FrameType::kError: {
      std::string code;
      r.string("id", f.id, false);
      r.string("code", code, true);
      r.string("message", f.message, false);
      r.integer("retry_after_ms", f.retry_after_ms, false);
      if (r.ok()) f.error = error_kind_from_string(code).value_or(ErrorKind::kInternal);
      break;
    }
    case FrameType::kQueue:
      r.nested("conversations", f.conversations_json, true);
      break;
    case FrameType::kTake:
      r.string("conversation", f.conversation, true);
      r.boolean("resume", f.resume);
      break;
    case FrameType::kHandBack:
    case FrameType::kClose:
      r.string("conversation", f.conversation, true);
      break;
    case FrameType::kTransfer:
      r.string("conversation", f.conversation, true);
      r.string("to", f.to, true, "the agent to transfer to");
      break;
    case FrameType::kConversation:
      r.string("conversation", f.conversation, true);
      r.string("state", f.state, false);
      r.nested("handoff", f.handoff_json, false);
      r.nested("messages", f.messages_json, true);
      break;
  }
  if (!r.ok()) return fail_frame(ErrorKind::kBadFrame, r.error());
  return f;
}

std::string encode(const Frame& f) {
  madoguchi::detail::JsonWriter w;
  w.begin_object().field("v", kVersion).field("type", to_string(f.type));
  auto opt_string = [&w](std::string_view key, const std::string& v) {
    if (!v.empty()) w.field(key, v);
  };
  auto opt_int = [&w](std::string_view key, const std::optional<std::int64_t>& v) {
    if (v) w.key(key).value(*v);
  };
  auto opt_raw = [&w](std::string_view key, const std::string& json) {
    if (!json.empty()) w.key(key).raw(json);
  };
  opt_string("conversation", f.conversation);
  switch (f.type) {
    case FrameType::kHello:
      opt_string("token", f.token);
      opt_int("last_seq", f.last_seq);
      opt_string("locale", f.locale);
      opt_string("client", f.client);
      opt_string("agent", f.agent);
      opt_string("password", f.password);
      if (!f.visitor.empty()) {
        w.key("visitor").begin_object();
        for (const auto& [k, v] : f.visitor) w.field(k, v);
        w.end_object();
      }
      break;
    case FrameType::kWelcome:
      opt_string("token", f.token);
      opt_string("state", f.state);
      opt_string("agent", f.agent);
      opt_int("last_seq", f.last_seq);
      break;
    case FrameType::kMessage:
      opt_int("seq", f.seq);
      w.field("id", f.id);
      opt_string("from", f.from);
      if (!f.agent.empty()) w.key("agent").begin_object().field("name", f.agent).end_object();
      if (f.at) w.key("at").value(f.at);
      w.field("text", f.text);
      if (!f.attachments.empty()) {
        w.key("attachments").begin_array();
        for (const auto& a : f.attachments) {
          w.begin_object().field("name", a.name).field("type", a.type).key("size").value(a.size);
          w.field("url", a.url).end_object();
        }
        w.end_array();
      }
      opt_string("choice", f.choice);
      opt_raw("bot", f.bot_json);
      break;
    case FrameType::kAck:
      w.field("id", f.id);
      opt_int("seq", f.seq);
      w.field("duplicate", f.duplicate);
      break;
    case FrameType::kTyping:
      opt_string("from", f.from);
      w.field("state", f.state);
      break;
    case FrameType::kRead:
      opt_string("from", f.from);
      opt_int("seq", f.seq);
      break;
    case FrameType::kEvent:
      opt_int("seq", f.seq);
      if (f.at) w.key("at").value(f.at);
      w.field("event", f.event);
      opt_raw("data", f.data_json);
      break;
    case FrameType::kPing:
    case FrameType::kPong:
      opt_string("id", f.id);
      break;
    case FrameType::kError:
      w.field("code", to_string(f.error)).field("message", f.message);
      opt_string("id", f.id);
      opt_int("retry_after_ms", f.retry_after_ms);
      break;
    case FrameType::kQueue:
      opt_raw("conversations", f.conversations_json);
      break;
    case FrameType::kTake:
      if (f.resume) w.field("resume", true);
      break;
    case FrameType::kHandBack:
    case FrameType::kClose:
      break;
    case FrameType::kTransfer:
      w.field("to", f.to);
      break;
    case FrameType::kConversation:
      opt_string("state", f.state);
      opt_raw("handoff", f.handoff_json);
      opt_raw("messages", f.messages_json);
      break;
  }
  w.end_object();
  return w.take();
}

}  // namespace v1
}  // namespace madoguchi::protocol
