#include "client/state_file.hpp"

#include <madoguchi/detail/json_writer.hpp>

#include <simdjson.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace madoguchi::detail::client {
namespace {

namespace fs = std::filesystem;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

Status corrupt(const std::string& path, const std::string& what) {
  return invalid_argument(path + ": not a valid madoguchi client state file (" + what +
                          "). It may hold unsent messages, so it was left untouched: repair it, or move it "
                          "away to start a new conversation (docs/client.md)");
}

// Reads an optional string member; false (and `what` set) when it has another type.
bool opt_string(simdjson::dom::object obj, std::string_view key, std::string& out, std::string& what) {
  simdjson::dom::element e;
  if (obj[key].get(e) != simdjson::SUCCESS || e.is_null()) return true;
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) {
    what = "\"" + std::string(key) + "\" must be a string";
    return false;
  }
  out.assign(s);
  return true;
}

bool opt_int(simdjson::dom::object obj, std::string_view key, std::int64_t& out, std::string& what) {
  simdjson::dom::element e;
  if (obj[key].get(e) != simdjson::SUCCESS || e.is_null()) return true;
  if (e.get_int64().get(out) != simdjson::SUCCESS) {
    what = "\"" + std::string(key) + "\" must be an integer";
    return false;
  }
  return true;
}

Status fsync_directory_of(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  // Best effort: the rename has happened, so the file holds the new state. Reporting a
  // failure here would tell the app that a message it can find in the file was not queued.
  if (fd < 0) return Status::ok();
  ::fsync(fd);
  ::close(fd);
  return Status::ok();
}

}  // namespace

Result<std::optional<PersistedState>> read_state_file(const std::string& path) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return unavailable(path + ": cannot check the client state file (" + ec.message() + ")");
  }
  if (!fs::exists(st)) return std::optional<PersistedState>();
  if (fs::is_directory(st)) return invalid_argument(path + ": is a directory, not a client state file");

  std::ifstream in(path, std::ios::binary);
  if (!in) return unavailable(path + ": cannot read the client state file (" + errno_text(errno) + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return unavailable(path + ": cannot read the client state file");
  simdjson::padded_string text(ss.str());  // outlives every element read from it

  simdjson::dom::parser parser;
  simdjson::dom::object root;
  auto err = parser.parse(text).get_object().get(root);
  if (err != simdjson::SUCCESS) return corrupt(path, std::string("not a JSON object: ") + simdjson::error_message(err));

  PersistedState s;
  std::string what;
  if (!opt_string(root, "token", s.token, what) || !opt_string(root, "conversation", s.conversation, what) ||
      !opt_int(root, "last_seq", s.last_seq, what)) {
    return corrupt(path, what);
  }
  if (s.last_seq < 0) return corrupt(path, "\"last_seq\" must not be negative");

  simdjson::dom::element outbox;
  if (root["outbox"].get(outbox) == simdjson::SUCCESS && !outbox.is_null()) {
    simdjson::dom::array arr;
    if (outbox.get_array().get(arr) != simdjson::SUCCESS) return corrupt(path, "\"outbox\" must be a list");
    std::size_t index = 0;
    for (simdjson::dom::element item : arr) {
      const std::string where = "outbox[" + std::to_string(index++) + "]";
      simdjson::dom::object m;
      if (item.get_object().get(m) != simdjson::SUCCESS) return corrupt(path, where + " must be an object");
      OutboxEntry entry;
      std::string_view id, text_value;
      if (m["id"].get_string().get(id) != simdjson::SUCCESS || !protocol::valid_client_id(id)) {
        return corrupt(path, where + ": \"id\" must be a client message id (1-64 of A-Z a-z 0-9 _ -)");
      }
      if (m["text"].get_string().get(text_value) != simdjson::SUCCESS) {
        return corrupt(path, where + ": \"text\" must be a string");
      }
      entry.id.assign(id);
      entry.text.assign(text_value);
      if (!opt_string(m, "conversation", entry.conversation, what) || !opt_string(m, "choice", entry.choice, what)) {
        return corrupt(path, where + ": " + what);
      }
      simdjson::dom::element atts;
      if (m["attachments"].get(atts) == simdjson::SUCCESS && !atts.is_null()) {
        simdjson::dom::array list;
        if (atts.get_array().get(list) != simdjson::SUCCESS) return corrupt(path, where + ": \"attachments\" must be a list");
        for (simdjson::dom::element a : list) {
          simdjson::dom::object ao;
          if (a.get_object().get(ao) != simdjson::SUCCESS) {
            return corrupt(path, where + ": each attachment must be an object");
          }
          protocol::Attachment att;
          if (!opt_string(ao, "name", att.name, what) || !opt_string(ao, "type", att.type, what) ||
              !opt_int(ao, "size", att.size, what) || !opt_string(ao, "url", att.url, what)) {
            return corrupt(path, where + ": attachment: " + what);
          }
          entry.attachments.push_back(std::move(att));
        }
      }
      // What send() refuses, the hub would refuse too: such a message would be sent again at
      // every connection and hold up every message behind it.
      protocol::Frame f;
      f.type = protocol::FrameType::kMessage;
      f.id = entry.id;
      f.conversation = entry.conversation;
      f.text = entry.text;
      f.attachments = entry.attachments;
      f.choice = entry.choice;
      if (entry.text.empty() && entry.attachments.empty()) {
        return corrupt(path, where + ": the message is empty (text or at least one attachment is needed)");
      }
      auto checked = protocol::decode(protocol::encode(f));
      if (auto* refused = std::get_if<protocol::DecodeError>(&checked)) {
        return corrupt(path, where + ": the hub would refuse this message: " + refused->message);
      }
      for (const auto& earlier : s.outbox) {
        if (earlier.id == entry.id) return corrupt(path, where + ": the id \"" + entry.id + "\" is an earlier message's");
      }
      s.outbox.push_back(std::move(entry));
    }
  }
  return std::optional<PersistedState>(std::move(s));
}

std::string serialize_state(const PersistedState& s) {
  madoguchi::detail::JsonWriter w;
  w.begin_object().field("token", s.token).field("conversation", s.conversation);
  w.key("last_seq").value(s.last_seq);
  w.key("outbox").begin_array();
  for (const auto& m : s.outbox) {
    w.begin_object().field("id", m.id);
    if (!m.conversation.empty()) w.field("conversation", m.conversation);
    w.field("text", m.text).key("attachments").begin_array();
    for (const auto& a : m.attachments) {
      w.begin_object().field("name", a.name).field("type", a.type);
      w.key("size").value(a.size);
      w.field("url", a.url).end_object();
    }
    w.end_array();
    if (!m.choice.empty()) w.field("choice", m.choice);
    w.end_object();
  }
  w.end_array().end_object();
  std::string out = w.take();
  out += '\n';
  return out;
}

Status write_file_atomically(const std::string& path, std::string_view content) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return unavailable(tmp + ": cannot write the client state (" + errno_text(errno) + ")");
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return unavailable(tmp + ": cannot write the client state (" + errno_text(e) + ")");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return unavailable(tmp + ": cannot flush the client state to disk (" + errno_text(e) + ")");
  }
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return unavailable(tmp + ": cannot write the client state (" + errno_text(e) + ")");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return unavailable(path + ": cannot replace the client state file (" + errno_text(e) + ")");
  }
  return fsync_directory_of(path);
}

Result<FileLock> FileLock::acquire(const std::string& state_path) {
  const std::string path = state_path + ".lock";
  FileLock lock;
  lock.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock.fd_ < 0) return unavailable(path + ": cannot open the state lock file (" + errno_text(errno) + ")");
  while (::flock(lock.fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      return unavailable(state_path + ": another madoguchi client is using this state file (" + path +
                         " is locked); close it first");
    }
    return unavailable(path + ": cannot lock the state file (" + errno_text(errno) + ")");
  }
  return lock;
}

void FileLock::release() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);  // drops the flock
    fd_ = -1;
  }
}

}  // namespace madoguchi::detail::client
