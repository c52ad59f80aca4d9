// The client's state file (docs/client.md): one small JSON object, written atomically.
//
//   {"token": "...", "conversation": "c_...", "last_seq": 14,
//    "outbox": [{"id": "m-...", "text": "...", "attachments": [{"name", "type", "size", "url"}],
//                "choice": "entry-id"}]}          ("choice" only for a picked clarification option)
//
// An agent client keeps only the outbox, each message with its "conversation".
//
// Private to mdg_client. Plain functions; safe from any thread (callers serialise writes to
// one path).
#pragma once

#include <madoguchi/protocol.hpp>
#include <madoguchi/status.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace madoguchi::detail::client {

struct OutboxEntry {
  std::string id;
  std::string conversation;  // an agent's message: the conversation it goes to; empty for a visitor
  std::string text;
  std::vector<protocol::Attachment> attachments;
  std::string choice;  // a picked clarification option: its entry id (Client::choose)
};

struct PersistedState {
  std::string token;
  std::string conversation;
  std::int64_t last_seq = 0;
  std::vector<OutboxEntry> outbox;
};

// The state in `path`; std::nullopt when there is no such file. A file that exists but cannot
// be read is kUnavailable; one that is not a valid state file is kInvalidArgument, and the
// message names the file and says it may hold unsent messages.
Result<std::optional<PersistedState>> read_state_file(const std::string& path);

// The JSON text of a state.
std::string serialize_state(const PersistedState& state);

// Writes `path` so that a crash leaves either the old or the new content: "<path>.tmp" is
// written and fsync'ed, renamed over `path`, and the directory is fsync'ed.
Status write_file_atomically(const std::string& path, std::string_view content);

// An exclusive advisory lock (flock) on "<state_path>.lock", held until release() or
// destruction. Two clients (in one process or two) cannot hold it at once.
class FileLock {
 public:
  FileLock() = default;
  ~FileLock() { release(); }
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept {
    if (this != &other) {
      release();
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  static Result<FileLock> acquire(const std::string& state_path);
  void release() noexcept;

 private:
  int fd_ = -1;
};

}  // namespace madoguchi::detail::client
