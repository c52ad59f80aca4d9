// madoguchi/protocol.hpp: frames of the live-chat protocol, version 1 (docs/protocol.md),
// and their JSON codec.
//
// A Frame is one flat value for every frame type: the fields a type uses are listed in
// docs/protocol.md; the others stay empty. decode() checks the version, the type, each
// field's JSON type and the fields a type requires, and says what is wrong in words a client
// developer can act on. encode() writes only the fields the type uses.
//
// Thread-safety: plain values and free functions; decode() and encode() may run on any
// number of threads at once.
#pragma once

#include <madoguchi/status.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace madoguchi::protocol {
inline namespace v1 {

inline constexpr int kVersion = 1;
inline constexpr std::string_view kSubprotocol = "madoguchi.v1";

enum class FrameType : int {
  kHello,
  kWelcome,
  kMessage,
  kAck,
  kTyping,
  kRead,
  kEvent,
  kPing,
  kPong,
  kError,
  kQueue,
  kTake,
  kTransfer,
  kHandBack,
  kClose,
  kConversation,
};
std::string_view to_string(FrameType type) noexcept;
std::optional<FrameType> frame_type_from_string(std::string_view name) noexcept;

// Error codes of `error` frames.
enum class ErrorKind : int {
  kBadJson,
  kBadFrame,
  kUnknownType,
  kUnsupportedVersion,
  kInvalidUtf8,
  kTooLarge,
  kRateLimited,
  kUnauthorized,
  kForbidden,
  kNotFound,
  kConflict,
  kInternal,
  kShuttingDown,
};
std::string_view to_string(ErrorKind kind) noexcept;
std::optional<ErrorKind> error_kind_from_string(std::string_view code) noexcept;
// The WebSocket close code that goes with an error, or 0 when the connection stays open.
int close_code(ErrorKind kind) noexcept;

struct Attachment {
  std::string name;
  std::string type;  // MIME type
  std::int64_t size = 0;
  std::string url;
  bool operator==(const Attachment&) const = default;
};

struct Frame {
  FrameType type = FrameType::kPing;
  std::string id;            // client message id (message, ack, error) or ping id
  std::string conversation;  // welcome; agent frames
  std::string token;         // hello (visitor), welcome
  std::string text;          // message
  std::vector<Attachment> attachments;
  std::string choice;        // message: entry id of a picked clarification option
  std::optional<std::int64_t> seq;       // message, event, ack, read
  std::optional<std::int64_t> last_seq;  // hello, welcome
  std::int64_t at = 0;       // message, event: milliseconds since the epoch
  std::string state;         // typing: start|stop; welcome/conversation: bot|waiting|agent|closed
  std::string from;          // message, typing, read: visitor|bot|agent
  std::string agent;         // hello (agent name), message from an agent, welcome on /v1/agent
  std::string password;      // hello on /v1/agent
  std::string to;            // transfer: agent name
  std::string locale;        // hello
  std::string client;        // hello: client name/version
  std::map<std::string, std::string, std::less<>> visitor;  // hello: visitor attributes
  std::string event;         // event: handoff_started, agent_joined, ...
  bool duplicate = false;    // ack
  bool resume = false;       // take: only if this agent holds the conversation already
  ErrorKind error = ErrorKind::kInternal;  // error: the code
  std::string message;       // error: what is wrong
  std::optional<std::int64_t> retry_after_ms;  // error: rate_limited
  // Nested JSON carried as text (a JSON object or array), written as it is:
  std::string data_json;           // event: data
  std::string bot_json;            // message from the bot: decision, entry, follow_ups, options
  std::string handoff_json;        // conversation: the hand-off package
  std::string conversations_json;  // queue: the list of conversations
  std::string messages_json;       // conversation: the stored frames

  bool operator==(const Frame&) const = default;
};

struct DecodeLimits {
  std::size_t max_frame_bytes = 64 * 1024;
  std::size_t max_attachments = 16;
  std::size_t max_visitor_attributes = 64;
  std::size_t max_visitor_bytes = 4096;  // hello: the attributes' names and values together
};

// A decoding failure: the error frame to send back (kind + message, and the client message
// id when it could be read).
struct DecodeError {
  ErrorKind kind = ErrorKind::kBadFrame;
  std::string message;
  std::string id;
  std::string conversation;  // the frame's, when it has one that could be read
};

// One option of a bot's clarification: what the visitor is shown, and the entry it stands for.
struct BotOption {
  std::string label;  // the text to show (and what the transcript says the visitor picked)
  std::string entry;  // the knowledge base entry: send it back as a message's `choice`
  bool operator==(const BotOption&) const = default;
};

// What a message from the bot carries besides its text: Frame::bot_json, read.
struct BotInfo {
  std::string decision;                 // "answer", "reply", "clarify", "handoff", "fallback"
  std::string entry;                    // answer: the entry it answered with
  std::vector<std::string> follow_ups;  // answer: ids of entries a visitor often asks next
  std::vector<BotOption> options;       // clarify: the choices, in order (numbered from 1)
  std::vector<BotOption> suggestions;   // answer: related questions to offer next, picked the same way
  bool operator==(const BotInfo&) const = default;
};

// The data of an event frame: Frame::data_json, read. Which fields an event has:
// docs/protocol.md ("Events"); the others stay empty.
struct EventData {
  std::string reason;                          // handoff_started: why the bot handed off
  std::optional<std::int64_t> queue_position;  // handoff_started, queue_position: 1 = next
  std::string agent;                           // agent_joined, agent_left, handed_back
  std::string from, to;                        // transferred: agent names
  std::string by;                              // conversation_closed: who closed it ("agent")
  bool operator==(const EventData&) const = default;
};

// Read Frame::bot_json and Frame::data_json. Lenient, like every reader of the protocol: a
// missing field, one of another type, or text that is not a JSON object leaves the fields
// empty; unknown fields are ignored.
BotInfo parse_bot_info(std::string_view bot_json);
EventData parse_event_data(std::string_view data_json);

// Parses one frame. On failure the DecodeError says what to answer.
std::variant<Frame, DecodeError> decode(std::string_view text, const DecodeLimits& limits = {});

// Serialises a frame as one JSON object (with "v" and "type").
std::string encode(const Frame& frame);

// An `error` frame for a decoding failure or any other refusal.
Frame make_error(ErrorKind kind, std::string message, std::string id = {});

// True when `id` is a valid client message id: 1 to 64 of A-Z a-z 0-9 _ -.
bool valid_client_id(std::string_view id) noexcept;

}  // namespace v1
}  // namespace madoguchi::protocol
