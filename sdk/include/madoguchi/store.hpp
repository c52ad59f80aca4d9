// madoguchi/store.hpp: the hub's message store — conversations and their numbered messages.
//
// The hub writes every message here before it acknowledges it, and replays from here when a
// client reconnects (docs/protocol.md). Store is an interface: open_sqlite_store() gives the
// single-machine implementation; a PostgreSQL or Redis store for several hub nodes is a second
// implementation of the same class (docs/store.md lists what each method must guarantee).
//
// The store does not parse JSON: *_json fields are kept and returned byte for byte.
#pragma once

#include <madoguchi/status.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace madoguchi::hub {
inline namespace v1 {

// One conversation. Plain value; copy freely.
struct ConversationRecord {
  std::string id;              // non-empty, unique
  std::string state;           // "bot" | "waiting" | "agent" | "closed"
  std::string locale;          // "ja", "en", ...
  std::string visitor_json;    // visitor attributes as a JSON object text
  std::string assigned_agent;  // empty while no agent has the conversation
  double priority = 0;         // queue order: higher first; must be finite
  std::string handoff_json;    // last hand-off package JSON, may be empty
  std::int64_t created_ms = 0;  // Unix time in milliseconds, set by the caller
  std::int64_t updated_ms = 0;  // set by the caller; the queue serves older first at equal
                                // priority (the hub sets it at a hand-off: "waiting since")
  std::int64_t last_seq = 0;    // owned by the store: the highest seq appended (0: none yet)
};

// A message or event to append. Plain value.
struct NewMessage {
  std::string client_id;  // client-generated id; empty for hub-generated
  std::string sender;     // "visitor", "bot", "agent:<name>", "system"
  std::string kind;       // "message" | "event"
  std::string body_json;  // JSON object text, non-empty
  std::int64_t created_ms = 0;
};

// A stored message, as messages_after() returns it. Plain value.
struct StoredMessage {
  std::string conversation_id;
  std::int64_t seq = 0;
  std::string client_id;
  std::string sender;
  std::string kind;
  std::string body_json;
  std::int64_t created_ms = 0;
};

struct AppendResult {
  std::int64_t seq = 0;
  bool duplicate = false;  // the client_id was stored before: seq is the earlier one
};

// The store interface.
//
// Thread-safety: implementations are safe to call from any thread, concurrently, and several
// Store objects (in one process or several) may share one database: every guarantee below holds
// across all of them. Strings passed in are copied or fully used before the call returns.
//
// Errors: kInvalidArgument for bad input (empty id, empty body, unknown state or kind, NaN
// priority); kNotFound for a missing conversation; kUnavailable when the database cannot be
// reached or stays locked past the implementation's timeout (retry later); kResourceExhausted
// when the disk or a size limit is full; kInternal otherwise. Every message names the store,
// the operation and the cause. A failed call changed nothing.
class Store {
 public:
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Stores a new conversation with last_seq = 0 (record.last_seq is ignored).
  // kInvalidArgument if a conversation with this id exists.
  virtual Status create_conversation(const ConversationRecord& record) = 0;

  // The conversation, or std::nullopt if there is none with this id.
  virtual Result<std::optional<ConversationRecord>> find_conversation(std::string_view id) = 0;

  // Replaces state, locale, visitor_json, assigned_agent, priority, handoff_json and
  // updated_ms of the conversation record.id; created_ms and last_seq are left alone.
  // kNotFound if there is no such conversation.
  virtual Status update_conversation(const ConversationRecord& record) = 0;

  // Appends a message: it gets the conversation's next seq (1, 2, 3... with no gaps, per
  // conversation) and the conversation's last_seq becomes that seq, atomically. The write is
  // durable when the call returns (inside a batch: when end_batch() returns ok): the hub
  // acknowledges only after it.
  // Idempotent: if message.client_id is non-empty and was stored before in this conversation,
  // nothing is stored and the earlier seq comes back with duplicate = true (the earlier body
  // is kept even if this one differs). updated_ms of the conversation is not changed.
  // kNotFound if the conversation does not exist.
  virtual Result<AppendResult> append(std::string_view conversation_id,
                                      const NewMessage& message) = 0;

  // Up to `limit` messages with seq > after_seq, in seq order (limit 0: none).
  // kNotFound if the conversation does not exist.
  virtual Result<std::vector<StoredMessage>> messages_after(std::string_view conversation_id,
                                                            std::int64_t after_seq,
                                                            std::size_t limit) = 0;

  // Up to `limit` conversations in `state`, by priority descending, then updated_ms
  // ascending (the longest-waiting first), then id.
  virtual Result<std::vector<ConversationRecord>> conversations_in_state(std::string_view state,
                                                                         std::size_t limit) = 0;

  // The number of stored messages in all conversations (for /metrics).
  virtual Result<std::int64_t> count_messages() = 0;

  // The number of conversations in `state` (for /metrics). The default implementation counts
  // what conversations_in_state() returns; a store should count without reading the records.
  virtual Result<std::int64_t> count_in_state(std::string_view state) {
    MDG_ASSIGN_OR_RETURN(auto list, conversations_in_state(state, SIZE_MAX));
    return static_cast<std::int64_t>(list.size());
  }

  // The agents that hold conversations (state "agent"), each once, in no particular order
  // (the hub gives each its grace at start). The default implementation reads them from
  // conversations_in_state("agent").
  virtual Result<std::vector<std::string>> agents_holding() {
    MDG_ASSIGN_OR_RETURN(auto list, conversations_in_state("agent", SIZE_MAX));
    std::vector<std::string> out;
    for (auto& r : list) {
      if (std::find(out.begin(), out.end(), r.assigned_agent) == out.end()) out.push_back(std::move(r.assigned_agent));
    }
    return out;
  }

  // Up to `limit` conversations in state "agent" assigned to `agent`, in the order of
  // conversations_in_state() (the hub puts them back in the queue when the agent is gone).
  // The default implementation filters conversations_in_state("agent").
  virtual Result<std::vector<ConversationRecord>> conversations_of_agent(std::string_view agent,
                                                                         std::size_t limit) {
    MDG_ASSIGN_OR_RETURN(auto list, conversations_in_state("agent", SIZE_MAX));
    std::vector<ConversationRecord> out;
    for (auto& r : list) {
      if (out.size() >= limit) break;
      if (r.assigned_agent == agent) out.push_back(std::move(r));
    }
    return out;
  }

  // The seq of the message stored with `client_id` in the conversation, or std::nullopt if
  // there is none (or the conversation does not exist). The hub acknowledges a resend with it
  // even when it would no longer accept the message (an agent's reply stored before the
  // conversation went to someone else). The default implementation knows none: a store
  // without it makes such a resend get the error a new message would.
  virtual Result<std::optional<std::int64_t>> find_message(std::string_view conversation_id,
                                                           std::string_view client_id) {
    (void)conversation_id;
    (void)client_id;
    return std::optional<std::int64_t>();
  }

  // Group commit. Between begin_batch() and end_batch() on one thread, the writes made through
  // this Store on that thread are grouped: each call still succeeds or fails on its own (a
  // failed call changed nothing) and later calls see its effects, but the writes become durable
  // together, once, when end_batch() returns ok. If end_batch() fails, none of the batch's
  // writes happened. Calls from other threads wait until the batch ends.
  // kInvalidArgument for begin_batch() inside a batch or end_batch() outside one; otherwise
  // the errors of a write. A failed call that undid the batch's earlier writes (SQLite does so
  // on a full disk or an I/O error) makes every later call of the batch fail with
  // kUnavailable, and end_batch() too. The default implementation (for stores without transactions)
  // groups nothing: every write is durable on its own, and both calls return ok.
  virtual Status begin_batch() { return Status::ok(); }
  virtual Status end_batch() { return Status::ok(); }
  // Gives the open batch up: none of its writes happen, and the batch is over. The hub calls
  // it when one of the batch's writes failed on its own (a conversation's update) after others
  // had gone in, so that the store does not keep half a turn. kInvalidArgument outside a
  // batch. The default implementation cannot undo anything: it returns kUnavailable, and the
  // hub then ends the batch with end_batch() instead.
  virtual Status abort_batch() { return Status(ErrorCode::kUnavailable, "store: abort_batch: not supported"); }

 protected:
  Store() = default;
};

// Options of the SQLite store. Defaults are the safe ones.
struct SqliteStoreOptions {
  bool synchronous_full = true;  // fsync on every commit: durable before ack. false: PRAGMA
                                 // synchronous=NORMAL, a power loss may drop the last commits
  int busy_timeout_ms = 5000;    // how long a call waits for another connection's write lock
                                 // before kUnavailable ("database is locked"); negative: 0
};

// Opens (creating if needed) the SQLite database at `path` and returns a Store over it.
// ":memory:" gives a private in-memory database (for tests). The directory must exist.
// Errors: kInvalidArgument for an empty path, a directory, a file that is not a SQLite
// database, a database of another program, or a schema newer than this build; kNotFound if
// the directory does not exist; kUnavailable if the file cannot be opened or stays locked.
// The database is closed when the Store is destroyed.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path,
                                                 SqliteStoreOptions options = {});

}  // namespace v1
}  // namespace madoguchi::hub
