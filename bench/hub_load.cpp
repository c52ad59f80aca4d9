// madoguchi-hub-load: capacity of a live-chat server under many concurrent visitors
// (bench/README.md, "Capacity").
//
// One libwebsockets client context on one thread opens N visitor connections to a server on
// this machine and sends chat messages over them:
//
//   hub mode   /v1/visitor of madoguchi-hub, speaking docs/protocol.md: hello -> welcome, then
//              `message` frames with client ids. Round trip = message written -> its `ack`,
//              and message written -> the bot's reply (`message` from "bot").
//   echo mode  any WebSocket echo server (bench/peers/ws-echo.js): the same `message` frames,
//              round trip = written -> the same frame back.
//
// Phases: connect N (a bounded number of handshakes at a time), hold them idle, then an
// open-loop phase at a fixed aggregate rate (message k goes to connection k mod N) and/or a
// closed-loop phase (each connection sends its next message when the previous one is
// answered, at most --conn-rate a second, the hub's per-connection limit), then drain.
// Given the server's pid it samples /proc/<pid>/status (VmRSS) before connecting, with the
// connections idle and under load, and /proc/<pid>/stat (utime + stime) around each phase's
// measurement window: RSS per idle connection and server CPU time per message.
//
// Only loopback servers: the host must resolve to 127.0.0.0/8 or ::1. Everything is bounded by
// flags (connections, seconds). A table goes to stdout, and the last line is one JSON object.
//
//   madoguchi-hub-load --url ws://127.0.0.1:8080/v1/visitor --connections 1000 --rate 2000
//                      --duration 20 --closed 20 --server-pid PID --kb samples/kb/shop.json
//                      --questions samples/kb/shop-eval.jsonl
#include <madoguchi/bot/bot.hpp>
#include <madoguchi/bot/knowledge.hpp>
#include <madoguchi/detail/json_writer.hpp>

#include <libwebsockets.h>
#include <simdjson.h>
#include <ev.h>

#include <algorithm>
#include <arpa/inet.h>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <netdb.h>
#include <optional>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

namespace mb = madoguchi::bot;
using madoguchi::detail::JsonWriter;
using Clock = std::chrono::steady_clock;

constexpr int kUsageExitCode = 2;
constexpr int kIncompleteExitCode = 3;  // --require-all and something was not answered
constexpr std::size_t kMaxConnections = 60000;
constexpr double kMaxSeconds = 3600;

constexpr const char* kUsage =
    "usage: madoguchi-hub-load --url ws://127.0.0.1:PORT/v1/visitor [options]\n"
    "  --url URL            ws:// URL of a server on this machine (loopback only)\n"
    "  --mode hub|echo      hub: madoguchi protocol (hello, ack, bot reply); echo: frame comes back\n"
    "                       (default hub)\n"
    "  --connections N      concurrent visitor connections (default 100, at most 60000)\n"
    "  --handshakes N       connections being opened at once (default 128)\n"
    "  --idle S             seconds to hold the connections idle before loading (default 2)\n"
    "  --rate R             open-loop phase: R messages a second over all connections (0: none;\n"
    "                       default 0)\n"
    "  --duration S         measured seconds of the open-loop phase (default 10)\n"
    "  --closed S           measured seconds of a closed-loop (max throughput) phase (0: none;\n"
    "                       default 0)\n"
    "  --warmup S           unmeasured seconds at the start of each phase (default 2)\n"
    "  --conn-rate R        at most R messages a second on one connection in the closed loop\n"
    "                       (default 18: the hub allows 20 on average)\n"
    "  --drain S            after the last phase, wait up to S seconds for answers (default 10)\n"
    "  --server-pid PID     the server process: RSS and CPU time are read from /proc/PID\n"
    "  --questions FILE     JSON Lines {\"text\", \"expect\"}: the messages (in-scope ones)\n"
    "  --kb FILE            keep only the questions this knowledge base's bot answers\n"
    "  --label TEXT         a name for this run in the output\n"
    "  --loop poll|ev       the client's event loop: poll() (lws's default; each wake-up costs\n"
    "                       time in proportion to the connections) or libev (epoll), as the hub\n"
    "                       uses it (default poll)\n"
    "  --require-all        exit 3 unless every connection opened and every message was\n"
    "                       acknowledged and answered, with no error frame\n";

// A run that cannot go on: the message goes to stderr, the exit code to the shell.
struct LoadError : std::runtime_error {
  explicit LoadError(const std::string& what, int code = 1) : std::runtime_error(what), exit_code(code) {}
  int exit_code;
};

// ---------------------------------------------------------------------------------------------
// Options.

struct Options {
  std::string url;
  std::string host;
  int port = 0;
  std::string path = "/v1/visitor";
  bool echo = false;
  std::size_t connections = 100;
  std::size_t handshakes = 128;
  double idle_s = 2;
  double rate = 0;
  double duration_s = 10;
  double closed_s = 0;
  double warmup_s = 2;
  double conn_rate = 18;
  double drain_s = 10;
  int server_pid = 0;
  std::string questions;
  std::string kb;
  std::string label;
  bool require_all = false;
  bool ev = false;  // --loop ev
};

template <typename T>
T parse_number(std::string_view flag, std::string_view text) {
  T v{};
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || p != end) throw LoadError(std::string(flag) + ": not a number: " + std::string(text), kUsageExitCode);
  return v;
}

double parse_seconds(std::string_view flag, std::string_view text) {
  double v = parse_number<double>(flag, text);
  if (!(v >= 0 && v <= kMaxSeconds)) {
    throw LoadError(std::string(flag) + ": between 0 and " + std::to_string(static_cast<int>(kMaxSeconds)) + " seconds",
                    kUsageExitCode);
  }
  return v;
}

// ws://HOST:PORT/PATH; IPv6 hosts in brackets.
void parse_url(Options& o) {
  std::string_view u = o.url;
  if (u.substr(0, 5) != "ws://") throw LoadError("--url: only ws:// URLs (a server on this machine)", kUsageExitCode);
  u.remove_prefix(5);
  std::size_t slash = u.find('/');
  std::string_view authority = u.substr(0, slash);
  o.path = slash == std::string_view::npos ? "/" : std::string(u.substr(slash));
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw LoadError("--url: unclosed [ in the host", kUsageExitCode);
    o.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
  } else {
    std::size_t colon = authority.rfind(':');
    o.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (o.host.empty()) throw LoadError("--url: no host", kUsageExitCode);
  o.port = port.empty() ? 80 : parse_number<int>("--url port", port);
  if (o.port <= 0 || o.port > 65535) throw LoadError("--url: port 1..65535", kUsageExitCode);
}

// Every address the host resolves to must be a loopback address.
void require_loopback(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
    throw LoadError("cannot resolve " + host + ": " + gai_strerror(rc), kUsageExitCode);
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);
  for (const addrinfo* a = found; a; a = a->ai_next) {
    bool loopback = false;
    if (a->ai_family == AF_INET) {
      sockaddr_in sin{};
      std::memcpy(&sin, a->ai_addr, sizeof sin);
      loopback = (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
    } else if (a->ai_family == AF_INET6) {
      sockaddr_in6 sin6{};
      std::memcpy(&sin6, a->ai_addr, sizeof sin6);
      static constexpr unsigned char kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
      loopback = std::memcmp(&sin6.sin6_addr, kLoop6, 16) == 0;
    }
    if (!loopback) {
      throw LoadError(host + " is not a loopback address: this load generator only talks to servers on this machine",
                      kUsageExitCode);
    }
  }
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) throw LoadError(std::string(a) + " needs a value", kUsageExitCode);
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--url") {
      o.url = value();
    } else if (a == "--mode") {
      std::string_view v = value();
      if (v != "hub" && v != "echo") throw LoadError("--mode: hub or echo", kUsageExitCode);
      o.echo = v == "echo";
    } else if (a == "--connections") {
      o.connections = parse_number<std::size_t>(a, value());
    } else if (a == "--handshakes") {
      o.handshakes = std::max<std::size_t>(1, parse_number<std::size_t>(a, value()));
    } else if (a == "--idle") {
      o.idle_s = parse_seconds(a, value());
    } else if (a == "--rate") {
      o.rate = parse_number<double>(a, value());
    } else if (a == "--duration") {
      o.duration_s = parse_seconds(a, value());
    } else if (a == "--closed") {
      o.closed_s = parse_seconds(a, value());
    } else if (a == "--warmup") {
      o.warmup_s = parse_seconds(a, value());
    } else if (a == "--conn-rate") {
      o.conn_rate = parse_number<double>(a, value());
    } else if (a == "--drain") {
      o.drain_s = parse_seconds(a, value());
    } else if (a == "--server-pid") {
      o.server_pid = parse_number<int>(a, value());
    } else if (a == "--questions") {
      o.questions = value();
    } else if (a == "--kb") {
      o.kb = value();
    } else if (a == "--label") {
      o.label = value();
    } else if (a == "--loop") {
      std::string_view v = value();
      if (v != "poll" && v != "ev") throw LoadError("--loop: poll or ev", kUsageExitCode);
      o.ev = v == "ev";
    } else if (a == "--require-all") {
      o.require_all = true;
    } else {
      throw LoadError("unknown option '" + std::string(a) + "'\n\n" + kUsage, kUsageExitCode);
    }
  }
  if (o.url.empty()) throw LoadError(std::string("--url is required\n\n") + kUsage, kUsageExitCode);
  parse_url(o);
  require_loopback(o.host);
  if (o.connections == 0 || o.connections > kMaxConnections) {
    throw LoadError("--connections: 1.." + std::to_string(kMaxConnections), kUsageExitCode);
  }
  if (!(o.rate >= 0 && o.rate <= 1e6)) throw LoadError("--rate: 0..1000000 messages a second", kUsageExitCode);
  if (!(o.conn_rate > 0 && o.conn_rate <= 1e6)) throw LoadError("--conn-rate: more than 0", kUsageExitCode);
  if (o.rate > 0 && o.duration_s <= 0) throw LoadError("--rate needs --duration > 0", kUsageExitCode);
  if (o.questions.empty()) throw LoadError("--questions FILE is required (e.g. samples/kb/shop-eval.jsonl)", kUsageExitCode);
  return o;
}

// ---------------------------------------------------------------------------------------------
// The messages: in-scope questions of an evaluation set, optionally only those the bot answers.

struct Questions {
  std::vector<std::string> texts;
  std::size_t in_scope = 0;  // in the file
  std::size_t japanese = 0;  // among texts
};

Questions load_questions(const std::string& path, const std::string& kb_path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError("cannot read " + path);
  Questions q;
  simdjson::dom::parser parser;
  std::vector<std::string> candidates;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    simdjson::dom::element doc;
    std::string_view text;
    if (parser.parse(line).get(doc) != simdjson::SUCCESS || doc["text"].get_string().get(text) != simdjson::SUCCESS) {
      throw LoadError(path + ": a line is not {\"text\": ...}");
    }
    simdjson::dom::element expect;
    bool out_of_scope = doc["expect"].get(expect) == simdjson::SUCCESS && expect.is_null();
    if (!out_of_scope && !text.empty()) candidates.emplace_back(text);
  }
  q.in_scope = candidates.size();
  if (kb_path.empty()) {
    q.texts = std::move(candidates);
  } else {
    // The bot hands a conversation off after failed turns in a row, and then stays silent:
    // keep the questions it answers, each asked in a fresh conversation.
    auto kb = mb::load_knowledge_file(kb_path);
    if (!kb) throw LoadError("--kb: " + kb.status().to_string());
    auto bot = mb::Bot::create(std::move(*kb));
    if (!bot) throw LoadError("--kb: " + bot.status().to_string());
    for (auto& text : candidates) {
      mb::Conversation conv;
      auto reply = (*bot)->respond(conv, text);
      if (reply && reply->decision == mb::Decision::kAnswer) q.texts.push_back(std::move(text));
    }
  }
  for (const auto& t : q.texts) q.japanese += mb::TextPipeline::detect_locale(t) == "ja" ? 1 : 0;
  if (q.texts.empty()) throw LoadError(path + ": no usable question");
  return q;
}

// ---------------------------------------------------------------------------------------------
// The server process, from /proc.

struct ProcSample {
  bool ok = false;
  std::int64_t rss_bytes = 0;
  double cpu_s = 0;  // utime + stime
};

ProcSample sample_process(int pid) {
  ProcSample s;
  if (pid <= 0) return s;
  const std::string base = "/proc/" + std::to_string(pid);
  {
    std::ifstream status(base + "/status");
    bool rss = false;
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) {
        s.rss_bytes = std::strtoll(line.c_str() + 6, nullptr, 10) * 1024;
        rss = true;
        break;
      }
    }
    if (!rss) return s;
  }
  std::ifstream stat_file(base + "/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  std::size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return s;
  // Fields after the command: state(3) ppid(4) ... utime(14) stime(15).
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  double ticks = 0;
  for (int n = 3; n <= 15 && fields >> field; ++n) {
    if (n == 14 || n == 15) ticks += std::strtod(field.c_str(), nullptr);
  }
  s.cpu_s = ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  s.ok = true;
  return s;
}

double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// Linux pressure stall information: microseconds during which some task waited for the CPU
// (or for I/O), machine-wide; -1 where /proc/pressure is missing. Around a window it tells how
// contended the machine was (by the server and this generator too, and by anything else).
double pressure_total_us(const char* resource) {
  std::ifstream in(std::string("/proc/pressure/") + resource);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("some ", 0) != 0) continue;
    std::size_t at = line.find("total=");
    if (at != std::string::npos) return std::strtod(line.c_str() + at + 6, nullptr);
  }
  return -1;
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a.empty() ? "n/a" : a + " " + b + " " + c;
}

// The hub's counters from GET /metrics (docs/hub.md), by a blocking HTTP/1.0 request on
// loopback; used at phase boundaries only. Empty when the server does not answer.
struct HubCounters {
  bool ok = false;
  double commits = 0;   // madoguchi_store_commits_total
  double stored = 0;    // madoguchi_messages_stored_total
  double frames = 0;    // madoguchi_frames_received_total
};

HubCounters scrape_metrics(const std::string& host, int port) {
  HubCounters c;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return c;
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);
  int fd = socket(found->ai_family, SOCK_STREAM, 0);
  if (fd < 0) return c;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, found->ai_addr, found->ai_addrlen) != 0) return c;
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: " + host + "\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return c;
  std::string body;
  char buf[8192];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) body.append(buf, static_cast<std::size_t>(n));
  std::istringstream lines(body);
  for (std::string line; std::getline(lines, line);) {
    auto value = [&line](std::string_view name, double& out) {
      if (line.size() > name.size() && line.compare(0, name.size(), name) == 0 && line[name.size()] == ' ') {
        out = std::strtod(line.c_str() + name.size() + 1, nullptr);
        return true;
      }
      return false;
    };
    c.ok |= value("madoguchi_store_commits_total", c.commits);
    value("madoguchi_messages_stored_total", c.stored);
    value("madoguchi_frames_received_total", c.frames);
  }
  return c;
}

// Raises the soft open-files limit to what N connections need; fails if the hard limit is lower.
struct FdLimit {
  rlim_t before = 0;
  rlim_t after = 0;
};

FdLimit raise_fd_limit(std::size_t connections) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) throw LoadError("getrlimit(RLIMIT_NOFILE) failed");
  FdLimit r{rl.rlim_cur, rl.rlim_cur};
  const auto need = static_cast<rlim_t>(connections + 64);
  if (rl.rlim_cur >= need) return r;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
    throw LoadError(std::to_string(connections) + " connections need " + std::to_string(need) +
                    " open files; the hard limit is " + std::to_string(rl.rlim_max) + " (raise it: ulimit -Hn)");
  }
  rl.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) throw LoadError("setrlimit(RLIMIT_NOFILE) failed");
  r.after = need;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Latencies and phases.

struct Samples {
  std::vector<double> ms;
  double quantile(double q) const {  // nearest rank
    if (ms.empty()) return std::nan("");
    std::vector<double> v = ms;
    std::size_t rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    rank = std::clamp<std::size_t>(rank, 1, v.size()) - 1;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(rank), v.end());
    return v[rank];
  }
  double max() const { return ms.empty() ? std::nan("") : *std::max_element(ms.begin(), ms.end()); }
};

struct Phase {
  std::string name;      // "open" or "closed"
  double target = 0;     // messages a second (open loop), 0 for closed
  double start = 0;      // phase start (warm-up begins), seconds since the run began
  double measure = 0;    // measurement window [measure, end)
  double end = 0;
  std::uint64_t sent = 0;      // written in the window
  std::uint64_t answered = 0;  // answers received in the window (throughput)
  std::uint64_t acked = 0;     // acks received in the window
  Samples ack, reply, lag;     // of messages written in the window; lag: written - due (open loop)
  ProcSample server_start, server_end;
  HubCounters hub_start, hub_end;  // hub mode: /metrics around the window
  double cpu_pressure_start = -1, cpu_pressure_end = -1, io_pressure_start = -1, io_pressure_end = -1;
  // Share of the window during which some task waited for the CPU (or for I/O).
  double cpu_pressure() const {
    return cpu_pressure_start < 0 || seconds() <= 0 ? std::nan("") : (cpu_pressure_end - cpu_pressure_start) / 1e6 / seconds();
  }
  double io_pressure() const {
    return io_pressure_start < 0 || seconds() <= 0 ? std::nan("") : (io_pressure_end - io_pressure_start) / 1e6 / seconds();
  }
  std::int64_t server_rss_peak = 0;
  double client_cpu_start = 0, client_cpu_end = 0;
  double seconds() const { return end - measure; }
  double rate() const { return seconds() > 0 ? static_cast<double>(answered) / seconds() : 0; }
  double server_cpu() const { return server_end.cpu_s - server_start.cpu_s; }
  bool counters() const { return hub_start.ok && hub_end.ok; }
  double commits() const { return counters() ? hub_end.commits - hub_start.commits : std::nan(""); }
  double stored_per_commit() const {
    return counters() && commits() > 0 ? (hub_end.stored - hub_start.stored) / commits() : std::nan("");
  }
};

// ---------------------------------------------------------------------------------------------
// The load generator.

struct Outstanding {
  std::uint64_t number = 0;  // the n of "m-<conn>-<n>"
  double written = 0;
  double due = 0;
  int phase = -1;  // index of the phase whose window it was written in, -1: none
  bool acked = false;
};

enum class ConnState { kWaiting, kConnecting, kHello, kReady, kClosing, kDone };

struct Conn {
  std::uint32_t index = 0;
  lws* wsi = nullptr;
  ConnState state = ConnState::kWaiting;
  bool hello_pending = false;
  std::deque<double> due;  // messages to write (their due times), oldest first
  std::deque<Outstanding> outstanding;
  std::uint64_t next_number = 0;
  std::size_t next_question = 0;
  double last_write = -1e9;
  bool handed_off = false;  // the bot handed the conversation off: reconnect for a fresh one
  bool scheduled = false;   // in the closed loop's timer heap
  std::string rx;           // a frame arriving in pieces
};

// The id of message `n` of connection `conn`: "m-<time>-<conn>-<n>", where <time> is the
// time in ms as 9 base-36 digits, so that ids sort by time like madoguchi::Client's
// (docs/protocol.md) and land at the end of the hub's client id index as theirs do.
std::string message_id(std::uint32_t conn, std::uint64_t n) {
  static constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::string id = "m-000000000-";
  auto t = static_cast<std::uint64_t>(std::max<std::int64_t>(0, ms));
  for (std::size_t i = 11; i > 2; t /= 36) id[--i] = kDigits[t % 36];
  return id + std::to_string(conn) + "-" + std::to_string(n);
}

// A string member of a frame; empty when it is missing or not a string.
std::string_view string_field(simdjson::dom::element frame, std::string_view key) {
  std::string_view v;
  if (frame[key].get_string().get(v) != simdjson::SUCCESS) return {};
  return v;
}

Phase make_phase(std::string name, double target) {
  Phase p;
  p.name = std::move(name);
  p.target = target;
  return p;
}

int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);

const lws_protocols kProtocols[] = {
    {"madoguchi.v1", callback, 0, 4096, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

class Load {
 public:
  Load(Options opt, Questions questions) : opt_(std::move(opt)), questions_(std::move(questions)) {
    conns_.resize(opt_.connections);
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      conns_[i].index = static_cast<std::uint32_t>(i);
      conns_[i].next_question = (i * 7) % questions_.texts.size();
    }
  }
  ~Load() {
    if (ctx_) {
      lws_sul_cancel(&tick_.sul);
      lws_context_destroy(ctx_);
    }
    if (ev_loop_) ev_loop_destroy(ev_loop_);  // after the context, which stopped its watchers
  }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  int run();
  int on_callback(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);

 private:
  enum class Stage { kConnect, kIdle, kLoad, kDrain, kClose, kFinished };

  double now() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  // The sul is the first member: a sul pointer is a Tick pointer.
  struct Tick {
    lws_sorted_usec_list_t sul;
    Load* self;
  };
  static void on_tick(lws_sorted_usec_list_t* sul) { reinterpret_cast<Tick*>(sul)->self->tick(); }
  void schedule_tick(double seconds) {
    tick_.self = this;
    lws_sul_schedule(ctx_, 0, &tick_.sul, on_tick, static_cast<lws_usec_t>(std::max(0.0, seconds) * 1e6));
  }

  void tick();
  void open_more();
  void open(Conn& c);
  void want_write(Conn& c) {
    if (c.wsi) lws_callback_on_writable(c.wsi);
  }
  int on_writeable(Conn& c);
  int on_frame(Conn& c, const char* data, std::size_t len);
  void on_gone(Conn& c, std::string_view why);
  void answered(Conn& c, double t);
  void ready_to_send(Conn& c, double t);
  void start_stage(Stage s, double t);
  Phase* current_phase(double t) {
    if (stage_ != Stage::kLoad || phase_ >= phases_.size()) return nullptr;
    Phase& p = phases_[phase_];
    return t >= p.measure && t < p.end ? &p : nullptr;
  }
  void count_error(const std::string& what) { ++errors_[what]; }
  std::size_t ready_count() const { return ready_; }
  void print_report(const ProcSample& before, const ProcSample& idle, double idle_at, const FdLimit& fd) const;
  bool complete() const;

  Options opt_;
  Questions questions_;
  std::vector<Conn> conns_;
  lws_context* ctx_ = nullptr;
  struct ev_loop* ev_loop_ = nullptr;  // --loop ev: lws runs on this (foreign) loop
  Tick tick_{};
  Clock::time_point t0_ = Clock::now();
  simdjson::dom::parser parser_;
  std::vector<char> scratch_;  // a whole frame plus simdjson's padding

  Stage stage_ = Stage::kConnect;
  double stage_started_ = 0;
  std::size_t next_to_open_ = 0;
  std::size_t opening_ = 0;  // handshakes in progress
  std::size_t ready_ = 0;
  std::size_t opened_ = 0;   // reached ready at least once
  std::size_t failed_ = 0;   // never opened, or lost during the run
  std::size_t reconnects_ = 0;
  std::size_t handoffs_ = 0;
  std::vector<std::uint32_t> reopen_;  // handed off: open again with a fresh conversation

  std::vector<Phase> phases_;
  std::size_t phase_ = 0;
  double open_next_due_ = 0;  // open loop: due time of the next message
  std::uint64_t open_k_ = 0;  // open loop: number of the next message
  using Timer = std::pair<double, std::uint32_t>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;  // closed loop

  std::uint64_t sent_total_ = 0, acked_total_ = 0, answered_total_ = 0, skipped_ = 0;
  std::uint64_t unsent_ = 0, lost_ = 0;  // lost: written on a connection that broke, or refused
  std::uint64_t after_handoff_ = 0;     // written after a hand-off: acknowledged, never answered
  std::uint64_t unanswered() const { return sent_total_ - answered_total_ - lost_ - after_handoff_; }
  std::map<std::string, std::uint64_t> errors_;
  std::map<std::string, std::uint64_t> decisions_;
  double connect_seconds_ = 0;
  std::int64_t rss_peak_ = 0;
  double last_rss_sample_ = 0;
};

Load* g_load = nullptr;

int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len) {
  if (g_load) {
    int r = g_load->on_callback(wsi, reason, in, len);
    if (r != 0) return r;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

void Load::open(Conn& c) {
  lws_client_connect_info ci;
  std::memset(&ci, 0, sizeof ci);
  ci.context = ctx_;
  ci.address = opt_.host.c_str();
  ci.port = opt_.port;
  ci.path = opt_.path.c_str();
  ci.host = opt_.host.c_str();
  ci.origin = nullptr;
  ci.protocol = "madoguchi.v1";
  ci.local_protocol_name = "madoguchi.v1";
  ci.ietf_version_or_minus_one = -1;
  ci.opaque_user_data = &c;
  ci.pwsi = &c.wsi;
  c.state = ConnState::kConnecting;
  c.rx.clear();
  c.handed_off = false;
  ++opening_;
  if (!lws_client_connect_via_info(&ci)) {
    c.wsi = nullptr;
    on_gone(c, "connect failed at once");
  }
}

void Load::open_more() {
  while (opening_ < opt_.handshakes && next_to_open_ < conns_.size()) open(conns_[next_to_open_++]);
  while (opening_ < opt_.handshakes && !reopen_.empty() && stage_ != Stage::kClose && stage_ != Stage::kFinished) {
    Conn& c = conns_[reopen_.back()];
    reopen_.pop_back();
    ++reconnects_;
    open(c);
  }
}

// The connection ended (error, close by the server, or our own close).
void Load::on_gone(Conn& c, std::string_view why) {
  if (c.state == ConnState::kDone || c.state == ConnState::kWaiting) return;
  const bool was_opening = c.state == ConnState::kConnecting || c.state == ConnState::kHello;
  if (was_opening) --opening_;
  if (c.state == ConnState::kReady) --ready_;
  c.wsi = nullptr;
  c.rx.clear();
  const bool expected = c.state == ConnState::kClosing || stage_ == Stage::kClose || stage_ == Stage::kFinished;
  if (c.handed_off && !expected) {
    // Closed to start a fresh conversation; messages still due are written there. Those
    // written after the one that was handed off are stored but the bot stays silent on them.
    after_handoff_ += c.outstanding.size();
    c.outstanding.clear();
    c.state = ConnState::kWaiting;
    reopen_.push_back(c.index);
    open_more();
    return;
  }
  if (!expected) {
    ++failed_;
    count_error(std::string(was_opening ? "connect: " : "closed: ") + std::string(why));
    lost_ += c.outstanding.size();
  }
  unsent_ += c.due.size();
  c.outstanding.clear();
  c.due.clear();
  c.state = ConnState::kDone;
  open_more();
}

void Load::ready_to_send(Conn& c, double t) {
  // Closed loop: the next message when the previous one is answered, paced by --conn-rate.
  if (stage_ != Stage::kLoad || phase_ >= phases_.size() || phases_[phase_].name != "closed") return;
  if (c.state != ConnState::kReady || c.handed_off || !c.outstanding.empty() || !c.due.empty() || c.scheduled) return;
  double at = std::max(t, c.last_write + 1.0 / opt_.conn_rate);
  if (at <= t) {
    c.due.push_back(t);
    want_write(c);
  } else {
    c.scheduled = true;
    timers_.emplace(at, c.index);
  }
}

void Load::answered(Conn& c, double t) {
  Outstanding o = c.outstanding.front();
  c.outstanding.pop_front();
  ++answered_total_;
  if (Phase* p = current_phase(t)) ++p->answered;
  if (o.phase >= 0) phases_[static_cast<std::size_t>(o.phase)].reply.ms.push_back((t - o.written) * 1e3);
  ready_to_send(c, t);
}

int Load::on_frame(Conn& c, const char* data, std::size_t len) {
  const double t = now();
  if (scratch_.size() < len + simdjson::SIMDJSON_PADDING) scratch_.resize(len + simdjson::SIMDJSON_PADDING);
  std::memcpy(scratch_.data(), data, len);
  simdjson::dom::element f;
  if (parser_.parse(scratch_.data(), len, false).get(f) != simdjson::SUCCESS) {
    count_error("a frame that is not JSON");
    return 0;
  }
  const std::string_view type = string_field(f, "type");
  const std::string_view id = string_field(f, "id");

  auto own_number = [&c](std::string_view frame_id) -> std::optional<std::uint64_t> {
    // "m-<time>-<conn>-<n>" (message_id())
    const std::size_t first = frame_id.find('-', 2), dash = frame_id.rfind('-');
    if (frame_id.substr(0, 2) != "m-" || first == std::string_view::npos || dash <= first) return std::nullopt;
    std::uint32_t conn = 0;
    std::uint64_t n = 0;
    if (std::from_chars(frame_id.data() + first + 1, frame_id.data() + dash, conn).ec != std::errc() ||
        conn != c.index) {
      return std::nullopt;
    }
    if (std::from_chars(frame_id.data() + dash + 1, frame_id.data() + frame_id.size(), n).ec != std::errc()) {
      return std::nullopt;
    }
    return n;
  };

  if (opt_.echo) {
    if (type != "message") return count_error("echo: unexpected frame"), 0;
    auto n = own_number(id);
    if (!n || c.outstanding.empty() || c.outstanding.front().number != *n) {
      count_error("echo: out of order or unknown id");
      return 0;
    }
    Outstanding& o = c.outstanding.front();
    ++acked_total_;
    if (Phase* p = current_phase(t)) ++p->acked;
    if (o.phase >= 0) phases_[static_cast<std::size_t>(o.phase)].ack.ms.push_back((t - o.written) * 1e3);
    answered(c, t);
    return 0;
  }

  if (type == "welcome") {
    if (c.state != ConnState::kHello) return count_error("welcome: not after hello"), 0;
    c.state = ConnState::kReady;
    --opening_;
    ++ready_;
    if (c.next_number == 0) ++opened_;
    if (!c.due.empty()) want_write(c);
    ready_to_send(c, t);
    open_more();
    return 0;
  }
  if (type == "ack") {
    auto n = own_number(id);
    auto it = std::find_if(c.outstanding.begin(), c.outstanding.end(), [](const Outstanding& o) { return !o.acked; });
    if (!n || it == c.outstanding.end() || it->number != *n) {
      count_error("ack: out of order or unknown id");
      return 0;
    }
    bool duplicate = false;
    if (f["duplicate"].get_bool().get(duplicate) == simdjson::SUCCESS && duplicate) count_error("ack: duplicate");
    it->acked = true;
    ++acked_total_;
    if (Phase* p = current_phase(t)) ++p->acked;
    if (it->phase >= 0) phases_[static_cast<std::size_t>(it->phase)].ack.ms.push_back((t - it->written) * 1e3);
    return 0;
  }
  if (type == "message") {
    if (string_field(f, "from") != "bot") return 0;
    std::string_view decision;
    if (f.at_pointer("/bot/decision").get_string().get(decision) != simdjson::SUCCESS) decision = "?";
    ++decisions_[std::string(decision)];
    if (c.outstanding.empty() || !c.outstanding.front().acked) {
      count_error("bot reply before the ack of its message");
      return 0;
    }
    if (decision == "handoff") c.handed_off = true;
    answered(c, t);
    return 0;
  }
  if (type == "event") {
    if (string_field(f, "event") == "handoff_started") {
      // The bot is silent in this conversation from now on: start a fresh one.
      ++handoffs_;
      c.handed_off = true;
      if (c.wsi) {
        lws_close_reason(c.wsi, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
        return -1;
      }
    }
    return 0;
  }
  if (type == "error") {
    count_error("error frame: " + std::string(string_field(f, "code")));
    if (auto n = own_number(id)) {
      auto it = std::find_if(c.outstanding.begin(), c.outstanding.end(),
                             [&](const Outstanding& o) { return o.number == *n; });
      if (it != c.outstanding.end()) {
        ++lost_;
        c.outstanding.erase(it);
        ready_to_send(c, t);
      }
    }
    return 0;
  }
  return 0;  // typing, read, pong...
}

int Load::on_writeable(Conn& c) {
  if (c.state == ConnState::kClosing) {
    lws_close_reason(c.wsi, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
    return -1;
  }
  std::string text;
  bool message = false;
  if (c.hello_pending) {
    c.hello_pending = false;
    text = R"({"v":1,"type":"hello","client":"madoguchi-hub-load"})";
  } else if (c.state == ConnState::kReady && !c.due.empty() && !c.handed_off) {
    std::uint64_t n = ++c.next_number;
    const std::string& q = questions_.texts[c.next_question];
    c.next_question = (c.next_question + 1) % questions_.texts.size();
    JsonWriter w;
    w.begin_object().field("v", 1).field("type", "message");
    w.field("id", message_id(c.index, n)).field("text", q).end_object();
    text = w.take();
    message = true;
  } else {
    return 0;
  }
  std::vector<unsigned char> buf(LWS_PRE + text.size());
  std::memcpy(buf.data() + LWS_PRE, text.data(), text.size());
  if (lws_write(c.wsi, buf.data() + LWS_PRE, text.size(), LWS_WRITE_TEXT) < static_cast<int>(text.size())) return -1;
  if (message) {
    const double t = now();
    Outstanding o;
    o.number = c.next_number;
    o.written = t;
    o.due = c.due.front();
    c.due.pop_front();
    c.last_write = t;
    ++sent_total_;
    if (Phase* p = current_phase(t)) {
      o.phase = static_cast<int>(p - phases_.data());
      ++p->sent;
      if (p->name == "open") p->lag.ms.push_back((t - o.due) * 1e3);
    }
    c.outstanding.push_back(o);
  }
  if (!c.due.empty() && !c.handed_off) want_write(c);
  return 0;
}

int Load::on_callback(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
  auto* c = static_cast<Conn*>(lws_get_opaque_user_data(wsi));
  switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      if (!c) return -1;
      if (opt_.echo) {
        c->state = ConnState::kReady;
        --opening_;
        ++ready_;
        if (c->next_number == 0) ++opened_;
        ready_to_send(*c, now());
        open_more();
      } else {
        c->state = ConnState::kHello;
        c->hello_pending = true;
        lws_callback_on_writable(wsi);
      }
      return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
      return c ? on_writeable(*c) : -1;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
      if (!c) return -1;
      const bool whole = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
      if (whole && c->rx.empty()) return on_frame(*c, static_cast<const char*>(in), len);
      c->rx.append(static_cast<const char*>(in), len);
      if (!whole) return 0;
      std::string frame = std::move(c->rx);
      c->rx.clear();
      return on_frame(*c, frame.data(), frame.size());
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
      if (c) {
        std::string why = in ? std::string(static_cast<const char*>(in), strnlen(static_cast<const char*>(in), 200))
                             : std::string("connection error");
        on_gone(*c, why);
      }
      return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
      if (c) on_gone(*c, "closed by the server");
      return 0;
    default:
      return 0;
  }
}

void Load::start_stage(Stage s, double t) {
  stage_ = s;
  stage_started_ = t;
}

// Runs every few milliseconds: open-loop sends, closed-loop timers, stage changes, RSS peaks.
void Load::tick() {
  const double t = now();
  double next = 0.05;
  switch (stage_) {
    case Stage::kConnect:
      open_more();
      if (next_to_open_ == conns_.size() && opening_ == 0) {
        connect_seconds_ = t - stage_started_;
        start_stage(Stage::kIdle, t);
      }
      break;
    case Stage::kIdle:
      if (t - stage_started_ >= opt_.idle_s) start_stage(Stage::kLoad, t);
      break;
    case Stage::kLoad: {
      open_more();
      if (phase_ < phases_.size() && phases_[phase_].start == 0 && phases_[phase_].end == 0) {
        Phase& p = phases_[phase_];
        p.start = t;
        p.measure = t + opt_.warmup_s;
        p.end = p.measure + (p.name == "open" ? opt_.duration_s : opt_.closed_s);
        open_next_due_ = t;
        if (p.name == "closed") {
          // Start every connection within one pacing interval, not all at once.
          for (auto& c : conns_) {
            if (c.scheduled) continue;
            c.scheduled = true;
            timers_.emplace(t + (static_cast<double>(c.index) / static_cast<double>(conns_.size())) / opt_.conn_rate,
                            c.index);
          }
        }
      }
      if (phase_ >= phases_.size()) {
        start_stage(Stage::kDrain, t);
        break;
      }
      Phase& p = phases_[phase_];
      if (!p.server_start.ok && t >= p.measure) {
        if (!opt_.echo) p.hub_start = scrape_metrics(opt_.host, opt_.port);
        p.server_start = sample_process(opt_.server_pid);
        p.client_cpu_start = self_cpu_s();
        p.cpu_pressure_start = pressure_total_us("cpu");
        p.io_pressure_start = pressure_total_us("io");
      }
      if (p.name == "open") {
        const double interval = 1.0 / p.target;
        while (open_next_due_ <= t && open_next_due_ < p.end) {
          Conn& c = conns_[open_k_ % conns_.size()];
          ++open_k_;
          if (c.state == ConnState::kReady || c.state == ConnState::kWaiting || c.state == ConnState::kConnecting ||
              c.state == ConnState::kHello) {
            c.due.push_back(open_next_due_);
            want_write(c);
          } else {
            ++skipped_;
          }
          open_next_due_ += interval;
        }
        next = 0.002;
      } else {
        while (!timers_.empty() && timers_.top().first <= t) {
          Conn& c = conns_[timers_.top().second];
          timers_.pop();
          c.scheduled = false;
          if (c.state == ConnState::kReady && c.outstanding.empty() && c.due.empty() && !c.handed_off) {
            c.due.push_back(t);
            want_write(c);
          }
        }
        next = timers_.empty() ? 0.002 : std::clamp(timers_.top().first - t, 0.0005, 0.002);
      }
      if (opt_.server_pid > 0 && t - last_rss_sample_ >= 1.0) {
        last_rss_sample_ = t;
        auto s = sample_process(opt_.server_pid);
        rss_peak_ = std::max(rss_peak_, s.rss_bytes);
        p.server_rss_peak = std::max(p.server_rss_peak, s.rss_bytes);
      }
      if (t >= p.end) {
        p.server_end = sample_process(opt_.server_pid);
        p.client_cpu_end = self_cpu_s();
        p.cpu_pressure_end = pressure_total_us("cpu");
        p.io_pressure_end = pressure_total_us("io");
        if (!opt_.echo) p.hub_end = scrape_metrics(opt_.host, opt_.port);
        p.end = t;
        p.server_rss_peak = std::max(p.server_rss_peak, p.server_end.rss_bytes);
        ++phase_;
        while (!timers_.empty()) {
          conns_[timers_.top().second].scheduled = false;
          timers_.pop();
        }
        next = 0.0005;
      }
      break;
    }
    case Stage::kDrain: {
      open_more();
      std::size_t waiting = 0;
      for (const auto& c : conns_) waiting += c.outstanding.size() + c.due.size();
      if (waiting == 0 || t - stage_started_ >= opt_.drain_s) {
        for (auto& c : conns_) {
          if (c.wsi && c.state != ConnState::kDone) {
            c.state = ConnState::kClosing;
            lws_callback_on_writable(c.wsi);
          }
        }
        start_stage(Stage::kClose, t);
      }
      break;
    }
    case Stage::kClose: {
      bool open = std::any_of(conns_.begin(), conns_.end(), [](const Conn& c) { return c.wsi != nullptr; });
      if (!open || t - stage_started_ >= 5) start_stage(Stage::kFinished, t);
      break;
    }
    case Stage::kFinished:
      return;
  }
  schedule_tick(next);
}

bool Load::complete() const {
  return failed_ == 0 && opened_ == conns_.size() && lost_ == 0 && errors_.empty() && skipped_ == 0 && unsent_ == 0 &&
         sent_total_ == answered_total_ && sent_total_ == acked_total_ && after_handoff_ == 0;
}

std::string fmt(double v, int digits) {
  if (std::isnan(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

void Load::print_report(const ProcSample& before, const ProcSample& idle, double idle_at, const FdLimit& fd) const {
  const double n = static_cast<double>(conns_.size());
  const bool rss = before.ok && idle.ok;
  const double per_conn = rss ? static_cast<double>(idle.rss_bytes - before.rss_bytes) / n : std::nan("");
  std::printf("madoguchi-hub-load: %s mode, %s%s, %zu connections (%zu opened, %zu failed, %zu reconnects), "
              "connected in %.1f s\n",
              opt_.echo ? "echo" : "hub", opt_.url.c_str(), opt_.label.empty() ? "" : (" [" + opt_.label + "]").c_str(),
              conns_.size(), opened_, failed_, reconnects_, connect_seconds_);
  std::printf("messages: %zu questions (%zu Japanese) of %zu in scope; open files limit %llu%s; load average %s\n",
              questions_.texts.size(), questions_.japanese, questions_.in_scope,
              static_cast<unsigned long long>(fd.after), fd.after != fd.before ? " (raised)" : "", load_average().c_str());
  if (rss) {
    std::printf("server RSS: %.1f MB before connecting, %.1f MB with %zu idle connections (after %.1f s): "
                "%.2f KiB per idle connection; peak under load %.1f MB\n",
                static_cast<double>(before.rss_bytes) / 1e6, static_cast<double>(idle.rss_bytes) / 1e6, conns_.size(),
                idle_at, per_conn / 1024.0, static_cast<double>(rss_peak_) / 1e6);
  }
  std::printf("  %-8s %8s %9s %9s %9s %9s %9s %9s %9s %8s %11s %11s %9s %9s %9s\n", "phase", "target", "msg/s",
              "ack p50", "ack p99", "ack max", "rep p50", "rep p99", "rep max", "lag p99", "srv CPU/msg",
              "cli CPU/msg", "RSS MB", "commits/s", "per commit");
  for (const auto& p : phases_) {
    const double msgs = static_cast<double>(p.answered);
    const double srv = p.server_start.ok && p.server_end.ok && msgs > 0 ? p.server_cpu() / msgs * 1e6 : std::nan("");
    const double cli = msgs > 0 ? (p.client_cpu_end - p.client_cpu_start) / msgs * 1e6 : std::nan("");
    std::printf("  %-8s %8s %9.0f %9s %9s %9s %9s %9s %9s %8s %9s µs %9s µs %9s %9s %9s\n", p.name.c_str(),
                p.target > 0 ? fmt(p.target, 0).c_str() : "max", p.rate(), fmt(p.ack.quantile(0.5), 2).c_str(),
                fmt(p.ack.quantile(0.99), 2).c_str(), fmt(p.ack.max(), 1).c_str(),
                fmt(p.reply.quantile(0.5), 2).c_str(), fmt(p.reply.quantile(0.99), 2).c_str(),
                fmt(p.reply.max(), 1).c_str(), fmt(p.lag.quantile(0.99), 1).c_str(), fmt(srv, 1).c_str(),
                fmt(cli, 1).c_str(), fmt(static_cast<double>(p.server_end.rss_bytes) / 1e6, 1).c_str(),
                fmt(p.commits() / p.seconds(), 0).c_str(), fmt(p.stored_per_commit(), 1).c_str());
  }
  std::printf("  latencies in ms: written -> ack, written -> %s; lag: written - due (open loop); "
              "CPU per answered message; per commit: messages stored per store commit\n",
              opt_.echo ? "echo (ack = reply)" : "bot reply");
  for (const auto& p : phases_) {
    std::printf("  %s: some task waited for a CPU %s %% and for I/O %s %% of the window (/proc/pressure)\n",
                p.name.c_str(), fmt(p.cpu_pressure() * 100, 0).c_str(), fmt(p.io_pressure() * 100, 0).c_str());
  }
  std::printf("totals: %llu sent, %llu acked, %llu answered, %llu unanswered, %llu lost, %llu unsent, %llu skipped, "
              "%zu hand-offs (%llu written after one)\n",
              static_cast<unsigned long long>(sent_total_), static_cast<unsigned long long>(acked_total_),
              static_cast<unsigned long long>(answered_total_), static_cast<unsigned long long>(unanswered()),
              static_cast<unsigned long long>(lost_), static_cast<unsigned long long>(unsent_),
              static_cast<unsigned long long>(skipped_), handoffs_, static_cast<unsigned long long>(after_handoff_));
  if (!decisions_.empty()) {
    std::printf("bot decisions:");
    for (const auto& [d, count] : decisions_) std::printf(" %s %llu", d.c_str(), static_cast<unsigned long long>(count));
    std::printf("\n");
  }
  for (const auto& [what, count] : errors_) {
    std::printf("error: %s: %llu\n", what.c_str(), static_cast<unsigned long long>(count));
  }

  auto num = [](JsonWriter& w, std::string_view key, double v) {
    if (std::isnan(v)) {
      w.key(key).null();
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3f", v);
      w.key(key).raw(buf);
    }
  };
  auto count = [](JsonWriter& w, std::string_view key, std::uint64_t v) {
    w.key(key).raw(std::to_string(v));
  };
  JsonWriter w;
  w.begin_object().field("bench", "madoguchi-hub-load").field("mode", opt_.echo ? "echo" : "hub");
  w.field("label", opt_.label).field("url", opt_.url);
  count(w, "connections", conns_.size());
  count(w, "opened", opened_);
  count(w, "failed", failed_);
  count(w, "reconnects", reconnects_);
  num(w, "connect_s", connect_seconds_);
  count(w, "questions", questions_.texts.size());
  count(w, "questions_ja", questions_.japanese);
  count(w, "fd_limit", fd.after);
  w.field("fd_limit_raised", fd.after != fd.before);
  w.field("load_average", load_average());
  w.field("server_pid", opt_.server_pid);
  num(w, "rss_before_bytes", before.ok ? static_cast<double>(before.rss_bytes) : std::nan(""));
  num(w, "rss_idle_bytes", idle.ok ? static_cast<double>(idle.rss_bytes) : std::nan(""));
  num(w, "rss_per_idle_conn_bytes", per_conn);
  num(w, "rss_peak_bytes", opt_.server_pid > 0 ? static_cast<double>(rss_peak_) : std::nan(""));
  num(w, "conn_rate_cap", opt_.conn_rate);
  w.key("phases").begin_array();
  for (const auto& p : phases_) {
    const double msgs = static_cast<double>(p.answered);
    w.begin_object().field("name", p.name);
    num(w, "target_rate", p.target > 0 ? p.target : std::nan(""));
    num(w, "seconds", p.seconds());
    count(w, "sent", p.sent);
    count(w, "acked", p.acked);
    count(w, "answered", p.answered);
    num(w, "messages_per_s", p.rate());
    num(w, "ack_p50_ms", p.ack.quantile(0.5));
    num(w, "ack_p99_ms", p.ack.quantile(0.99));
    num(w, "ack_max_ms", p.ack.max());
    num(w, "reply_p50_ms", p.reply.quantile(0.5));
    num(w, "reply_p99_ms", p.reply.quantile(0.99));
    num(w, "reply_max_ms", p.reply.max());
    num(w, "lag_p99_ms", p.lag.quantile(0.99));
    const bool cpu = p.server_start.ok && p.server_end.ok;
    num(w, "server_cpu_s", cpu ? p.server_cpu() : std::nan(""));
    num(w, "server_cpu_us_per_msg", cpu && msgs > 0 ? p.server_cpu() / msgs * 1e6 : std::nan(""));
    num(w, "server_cpu_share", cpu && p.seconds() > 0 ? p.server_cpu() / p.seconds() : std::nan(""));
    num(w, "client_cpu_us_per_msg", msgs > 0 ? (p.client_cpu_end - p.client_cpu_start) / msgs * 1e6 : std::nan(""));
    num(w, "rss_bytes", p.server_end.ok ? static_cast<double>(p.server_end.rss_bytes) : std::nan(""));
    num(w, "rss_peak_bytes", p.server_end.ok ? static_cast<double>(p.server_rss_peak) : std::nan(""));
    num(w, "commits", p.commits());
    num(w, "commits_per_s", p.seconds() > 0 ? p.commits() / p.seconds() : std::nan(""));
    num(w, "stored_per_commit", p.stored_per_commit());
    num(w, "cpu_pressure", p.cpu_pressure());
    num(w, "io_pressure", p.io_pressure());
    w.end_object();
  }
  w.end_array();
  count(w, "sent", sent_total_);
  count(w, "acked", acked_total_);
  count(w, "answered", answered_total_);
  count(w, "unanswered", unanswered());
  count(w, "unsent", unsent_);
  count(w, "after_handoff", after_handoff_);
  count(w, "lost", lost_);
  count(w, "skipped", skipped_);
  count(w, "handoffs", handoffs_);
  w.key("decisions").begin_object();
  for (const auto& [d, c] : decisions_) count(w, d, c);
  w.end_object();
  w.key("errors").begin_object();
  for (const auto& [e, c] : errors_) count(w, e, c);
  w.end_object();
  w.field("complete", complete());
  w.end_object();
  std::printf("%s\n", w.take().c_str());
  std::fflush(stdout);
}

int Load::run() {
  const FdLimit fd = raise_fd_limit(opt_.connections);
  if (fd.after != fd.before) {
    std::fprintf(stderr, "madoguchi-hub-load: open files limit raised from %llu to %llu\n",
                 static_cast<unsigned long long>(fd.before), static_cast<unsigned long long>(fd.after));
  }
  if (opt_.rate > 0) phases_.push_back(make_phase("open", opt_.rate));
  if (opt_.closed_s > 0) phases_.push_back(make_phase("closed", 0));
  if (opt_.rate > 0 && opt_.rate / static_cast<double>(opt_.connections) > opt_.conn_rate) {
    std::fprintf(stderr, "madoguchi-hub-load: warning: %.1f messages a second per connection is over --conn-rate %.1f\n",
                 opt_.rate / static_cast<double>(opt_.connections), opt_.conn_rate);
  }

  lws_set_log_level(LLL_ERR, nullptr);
  lws_context_creation_info info;
  std::memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = kProtocols;
  // 0: lws sizes its fd tables for the whole (raised) limit; a smaller figure would make it
  // look every socket up by a linear search.
  info.fd_limit_per_thread = 0;
  info.timeout_secs = 60;
  void* foreign_loops[1] = {nullptr};
  if (opt_.ev) {
    ev_loop_ = ev_loop_new(EVFLAG_AUTO);
    if (!ev_loop_) throw LoadError("libev: ev_loop_new failed");
    foreign_loops[0] = ev_loop_;
    info.options |= LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = foreign_loops;
  }
  info.connect_timeout_secs = 60;
  ctx_ = lws_create_context(&info);
  if (!ctx_) {
    throw LoadError(opt_.ev ? "libwebsockets could not create a client context on libev (is its plugin, "
                              "libwebsockets-evlib-ev, installed?)"
                            : "libwebsockets could not create a client context");
  }

  const ProcSample before = sample_process(opt_.server_pid);
  if (opt_.server_pid > 0 && !before.ok) throw LoadError("cannot read /proc/" + std::to_string(opt_.server_pid));
  std::fprintf(stderr, "madoguchi-hub-load: opening %zu connections to %s\n", conns_.size(), opt_.url.c_str());
  t0_ = Clock::now();
  start_stage(Stage::kConnect, 0);
  schedule_tick(0);
  ProcSample idle;
  double idle_at = 0;
  Stage seen = stage_;
  while (stage_ != Stage::kFinished) {
    if (opt_.ev) {
      ev_run(ev_loop_, EVRUN_ONCE);
    } else if (lws_service(ctx_, 0) < 0) {
      throw LoadError("the libwebsockets loop failed");
    }
    if (stage_ != seen) {
      if (seen == Stage::kIdle) {
        // The end of the idle hold: the server with every connection open and nothing to do.
        idle = sample_process(opt_.server_pid);
        idle_at = opt_.idle_s;
        std::fprintf(stderr, "madoguchi-hub-load: %zu connections open; loading\n", ready_count());
      }
      if (stage_ == Stage::kIdle) std::fprintf(stderr, "madoguchi-hub-load: connected in %.1f s\n", connect_seconds_);
      seen = stage_;
    }
  }
  print_report(before, idle, idle_at, fd);
  return opt_.require_all && !complete() ? kIncompleteExitCode : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options opt = parse_args(argc, argv);
    Questions q = load_questions(opt.questions, opt.kb);
    Load load(std::move(opt), std::move(q));
    g_load = &load;
    int rc = load.run();
    g_load = nullptr;
    return rc;
  } catch (const LoadError& e) {
    std::fprintf(stderr, "madoguchi-hub-load: %s\n", e.what());
    return e.exit_code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "madoguchi-hub-load: %s\n", e.what());
    return 1;
  }
}
