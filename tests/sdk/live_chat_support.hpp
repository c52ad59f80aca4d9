// What the live-chat tests share: child processes (the real madoguchi-hub, the terminal
// samples), a free port, a recorder of client events that the test thread waits on, what to
// look for in the events, and the messages the hub stored.
//
// Callbacks only record events; every assertion is made on the test thread after waiting (with
// a generous timeout) for the events it needs.
#pragma once

#include <madoguchi/agent_client.hpp>
#include <madoguchi/client.hpp>
#include <madoguchi/store.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#ifndef MDG_HUB_EXE  // samples not built: the hub tests fail and say so
#define MDG_HUB_EXE "madoguchi-hub (not built: configure with MDG_BUILD_SAMPLES=ON)"
#endif

namespace mdg_test {

using namespace std::chrono_literals;

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A free TCP port on 127.0.0.1 (for a hub that is started later, at a known address).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A program run as a child process: its standard output is read through read_until(), its
// standard error is appended to a log file, and with `with_stdin` write() feeds its standard
// input. Killed (SIGKILL) when the object goes, if it still runs.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { kill(SIGKILL); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  void spawn(std::vector<std::string> args, const std::string& log_path, bool with_stdin = false) {
    REQUIRE(pid_ < 0);
    int out[2];
    int in[2] = {-1, -1};
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    if (with_stdin) {
      REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
      std::signal(SIGPIPE, SIG_IGN);  // a write to a child that died fails instead of killing the test
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (with_stdin) posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, args[0].c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    if (with_stdin) ::close(in[0]);
    if (rc != 0) {
      ::close(out[0]);
      if (with_stdin) ::close(in[1]);
      pid_ = -1;
      FAIL("cannot start " << args[0] << ": " << std::strerror(rc));
    }
    out_ = out[0];
    in_ = in[1];
    output_.clear();
  }

  // Reads standard output until done(everything read so far) holds; false when the timeout
  // passes or the child closes its output first.
  bool read_until(const std::function<bool(const std::string&)>& done, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done(output_)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || out_ < 0) return false;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t got = ::read(out_, buf, sizeof buf);
      if (got <= 0) return done(output_);
      output_.append(buf, static_cast<std::size_t>(got));
    }
    return true;
  }
  // Reads until `text` appears at or after `from` in the output.
  bool read_until(std::string_view text, std::chrono::milliseconds timeout, std::size_t from = 0) {
    return read_until([&](const std::string& out) { return out.find(text, from) != std::string::npos; }, timeout);
  }
  const std::string& output() const { return output_; }

  void write(std::string_view text) {
    REQUIRE(in_ >= 0);
    while (!text.empty()) {
      ssize_t n = ::write(in_, text.data(), text.size());
      REQUIRE_MESSAGE(n > 0, "the child's standard input is closed");
      text.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void close_stdin() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }

  // Waits for the child to end; its waitpid() status, or -1 if it still runs after `timeout`.
  int wait_exit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ >= 0) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        release();
        return status;
      }
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

  // SIGKILL: a crash. SIGTERM: a graceful stop. Waits for the end.
  void kill(int sig) {
    if (pid_ < 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    release();
  }

 private:
  void release() {
    if (out_ >= 0) ::close(out_);
    out_ = -1;
    close_stdin();
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
  std::string output_;
};

// The madoguchi-hub executable as a child process, with agents sato:pw and suzuki:pw2.
// GET `path` from a hub on 127.0.0.1:`port` over a plain socket: the whole response, status
// line first.
inline std::string http_get(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  REQUIRE(::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) response.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return response;
}

// GET /metrics; the value of one metric (with its labels, if any), or -1.
inline double metric(int port, const std::string& name) {
  const std::string body = http_get(port, "/metrics");
  auto at = body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + name.size() + 2));
}

class HubProcess {
 public:
  // Starts the hub on `port` (0: any) with the store at `store` and waits for its
  // "listening on" line. Its log goes to `log_path`.
  void start(const std::string& store, int port, const std::string& log_path) {
    const std::string exe = MDG_HUB_EXE;
    const std::string kb = std::string(MDG_SOURCE_DIR) + "/samples/kb/shop.json";
    child_.spawn({exe, "--kb", kb, "--store", store, "--host", "127.0.0.1", "--port", std::to_string(port), "--agent",
                  "sato:pw", "--agent", "suzuki:pw2", "--secret", "client-test-secret-0123456789"},
                 log_path);
    // "madoguchi-hub: listening on http://127.0.0.1:<port>"
    const std::string marker = "listening on http://127.0.0.1:";
    bool listening = child_.read_until(
        [&](const std::string& out) {
          auto at = out.find(marker);
          return at != std::string::npos && out.find('\n', at) != std::string::npos;
        },
        60s);
    REQUIRE_MESSAGE(listening, "the hub did not start; its log: " << read_file(log_path));
    const std::string& out = child_.output();
    port_ = std::stoi(out.substr(out.find(marker) + marker.size()));
    REQUIRE(port_ > 0);
    if (port != 0) REQUIRE(port_ == port);
  }

  int port() const { return port_; }
  std::string url(std::string_view path = "/v1/visitor") const {
    return "ws://127.0.0.1:" + std::to_string(port_) + std::string(path);
  }
  std::string agent_url() const { return url("/v1/agent"); }

  void kill(int sig) { child_.kill(sig); }

 private:
  ChildProcess child_;
  int port_ = 0;
};

// Every event a client delivered, with the thread it was delivered on.
template <class Event>
class Recorder {
 public:
  void operator()(const Event& e) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
    threads_.insert(std::this_thread::get_id());
    cv_.notify_all();
  }
  // Waits until pred(events) holds; false on timeout.
  bool wait(const std::function<bool(const std::vector<Event>&)>& pred, std::chrono::milliseconds timeout = 30s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(events_); });
  }
  std::vector<Event> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::set<std::thread::id> threads() const {
    std::lock_guard lock(mu_);
    return threads_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
  std::set<std::thread::id> threads_;
};

// Index of the first event matching `pred` at or after `from`, or -1.
template <class Event, class Pred>
long find(const std::vector<Event>& evs, Pred pred, long from = 0) {
  for (long i = std::max(0L, from); i < static_cast<long>(evs.size()); ++i) {
    if (pred(evs[static_cast<std::size_t>(i)])) return i;
  }
  return -1;
}

template <class Event, class Pred>
long count(const std::vector<Event>& evs, Pred pred) {
  long n = 0;
  for (const auto& e : evs) n += pred(e) ? 1 : 0;
  return n;
}

// Polls `pred` until it holds, for what changes without an event to wait on (metrics, a count
// that moves after the event it follows); false if it still does not after `timeout`.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 30s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// Predicates on ClientEvent and AgentEvent alike.
inline auto ack_of(const std::string& id) {
  return [id](const auto& e) { return e.kind == std::decay_t<decltype(e)>::Kind::kAck && e.frame.id == id; };
}
inline auto state_is(madoguchi::ConnectionState s) {
  return [s](const auto& e) { return e.kind == std::decay_t<decltype(e)>::Kind::kState && e.state == s; };
}
inline constexpr auto is_bot = [](const auto& e) {
  return e.kind == std::decay_t<decltype(e)>::Kind::kMessage && e.frame.from == "bot";
};
// A message, event or ack with a seq: a frame the hub stored.
inline constexpr auto is_numbered = [](const auto& e) {
  using Kind = typename std::decay_t<decltype(e)>::Kind;
  return (e.kind == Kind::kMessage || e.kind == Kind::kEvent || e.kind == Kind::kAck) && e.frame.seq.has_value();
};

// Index of the bot's message after the ack of the message `id`, or -1 while there is none.
template <class Event>
long answer_to(const std::vector<Event>& evs, const std::string& id) {
  long ack = find(evs, ack_of(id));
  return ack < 0 ? -1 : find(evs, is_bot, ack + 1);
}

// How many times a visitor was given each seq (one conversation).
inline std::map<std::int64_t, int> seq_counts(const std::vector<madoguchi::ClientEvent>& evs) {
  std::map<std::int64_t, int> seen;
  for (const auto& e : evs) {
    if (is_numbered(e)) ++seen[*e.frame.seq];
  }
  return seen;
}

inline void check_each_seq_once(const std::map<std::int64_t, int>& seen) {
  for (const auto& [seq, n] : seen) {
    CAPTURE(seq);
    CHECK(n == 1);
  }
}

// The messages and events of `conversation` in the hub's store at `store_path` (opened while
// the hub is stopped).
inline std::vector<madoguchi::hub::StoredMessage> stored_messages(const std::string& store_path,
                                                                  const std::string& conversation) {
  auto store = madoguchi::hub::open_sqlite_store(store_path);
  REQUIRE_MESSAGE(store.is_ok(), store.status().to_string());
  auto msgs = (*store)->messages_after(conversation, 0, 10000);
  REQUIRE_MESSAGE(msgs.is_ok(), msgs.status().to_string());
  return std::move(msgs).value();
}

// The state of `conversation` in the hub's store at `store_path`.
inline std::string stored_state(const std::string& store_path, const std::string& conversation) {
  auto store = madoguchi::hub::open_sqlite_store(store_path);
  REQUIRE_MESSAGE(store.is_ok(), store.status().to_string());
  auto rec = (*store)->find_conversation(conversation);
  REQUIRE_MESSAGE(rec.is_ok(), rec.status().to_string());
  REQUIRE(rec->has_value());
  return (*rec)->state;
}

// MDG_CLIENT_TEST_LOG=1: the clients' debug log on stderr.
inline madoguchi::Logger test_logger() {
  madoguchi::Logger logger;
  if (std::getenv("MDG_CLIENT_TEST_LOG")) {
    logger.min_level = madoguchi::LogLevel::kDebug;
    logger.sink = [](madoguchi::LogLevel level, std::string_view line) {
      std::fprintf(stderr, "%s %.*s\n", std::string(to_string(level)).c_str(), static_cast<int>(line.size()), line.data());
    };
  }
  return logger;
}

// A visitor (locale ja, customer_id c-42) that retries quickly and records its events in `rec`.
inline madoguchi::ClientConfig visitor_config(const std::string& url, const std::string& state_path,
                                              Recorder<madoguchi::ClientEvent>& rec) {
  madoguchi::ClientConfig cfg;
  cfg.url = url;
  cfg.state_path = state_path;
  cfg.locale = "ja";
  cfg.visitor = {{"customer_id", "c-42"}};
  cfg.backoff_ms = {50, 100, 200, 400};
  cfg.on_event = [&rec](const madoguchi::ClientEvent& e) { rec(e); };
  cfg.logger = test_logger();
  return cfg;
}

// An agent that retries quickly and records its events in `rec`.
inline madoguchi::AgentClientConfig agent_config(const std::string& url, const std::string& agent,
                                                 const std::string& password, Recorder<madoguchi::AgentEvent>& rec) {
  madoguchi::AgentClientConfig cfg;
  cfg.url = url;
  cfg.agent = agent;
  cfg.password = password;
  cfg.backoff_ms = {50, 100, 200, 400};
  cfg.on_event = [&rec](const madoguchi::AgentEvent& e) { rec(e); };
  cfg.logger = test_logger();
  return cfg;
}

template <class C, class Config>
std::unique_ptr<C> create_or_fail(Config cfg) {
  auto c = C::create(std::move(cfg));
  REQUIRE_MESSAGE(c.is_ok(), c.status().to_string());
  return std::move(c).value();
}
inline std::unique_ptr<madoguchi::Client> make_client(madoguchi::ClientConfig cfg) {
  return create_or_fail<madoguchi::Client>(std::move(cfg));
}
inline std::unique_ptr<madoguchi::AgentClient> make_client(madoguchi::AgentClientConfig cfg) {
  return create_or_fail<madoguchi::AgentClient>(std::move(cfg));
}

}  // namespace mdg_test
