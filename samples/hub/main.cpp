// madoguchi-hub: the live-chat server with the bot in the loop.
//
//   madoguchi-hub --kb samples/kb/shop.json
//   madoguchi-hub --config hub.json [--port 0] [--agent name:password]...
//   madoguchi-hub --hash-password < password.txt
//
// Command-line flags override the config file; the config file overrides the defaults.
#include <madoguchi/bot/bot.hpp>
#include <madoguchi/hub.hpp>
#include <madoguchi/store.hpp>

#include <simdjson.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <set>
#include <string>
#include <utility>
#include <thread>
#include <vector>

namespace {

using namespace madoguchi;

constexpr const char* kUsage =
    "usage: madoguchi-hub [--config FILE] [--kb FILE] [--store FILE] [--host ADDR] [--port N]\n"
    "                     [--agent NAME:HASH|NAME:PASSWORD]... [--secret S] [--static DIR] [--origin URL]...\n"
    "                     [--tls-cert PEM --tls-key PEM] [--mecab-dicdir DIR] [--durability full|process]\n"
    "                     [--bot-threads N] [--verbose]\n"
    "       madoguchi-hub --hash-password     (reads a password, prints its hash for the config)\n"
    "defaults: --kb samples/kb/shop.json --store madoguchi.db --host 127.0.0.1 --port 8080\n";

hub::Hub* g_hub = nullptr;

void on_signal(int) {
  if (g_hub) g_hub->stop();
}

struct Options {
  std::string config, kb = "samples/kb/shop.json", store = "madoguchi.db", dicdir;
  hub::HubConfig hub;
  bool verbose = false;
  bool fsync_every_commit = true;
  bool port_set = false;
};

int fail(const std::string& message) {
  std::fprintf(stderr, "madoguchi-hub: %s\n", message.c_str());
  return 1;
}

// The terminal's settings while --hash-password reads without echo, for a Ctrl-C to restore.
termios g_saved_tty{};

void restore_tty_and_die(int sig) {
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_tty);  // async-signal-safe, like the rest
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// --hash-password: reads a password from standard input (its first line; without echo, after
// a prompt, from a terminal) and prints its hash for the config's "password_hash".
int hash_password() {
  const bool quiet = isatty(STDIN_FILENO) == 1 && tcgetattr(STDIN_FILENO, &g_saved_tty) == 0;
  if (quiet) {
    std::signal(SIGINT, restore_tty_and_die);
    std::signal(SIGTERM, restore_tty_and_die);
    termios no_echo = g_saved_tty;
    no_echo.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &no_echo);
    std::fprintf(stderr, "password: ");
  }
  std::string password;
  const bool read = static_cast<bool>(std::getline(std::cin, password));
  if (quiet) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_tty);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    std::fprintf(stderr, "\n");
  }
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (!read || password.empty()) return fail("--hash-password: no password on standard input");
  auto hash = hub::hash_agent_password(password);
  if (!hash) return fail(hash.status().to_string());
  std::printf("%s\n", hash->c_str());
  return 0;
}

// Reads the config file (docs/hub.md): the same names as the flags.
Status read_config(const std::string& path, Options& o) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open the config file");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string content = ss.str();
  if (content.rfind("\xEF\xBB\xBF", 0) == 0) content.erase(0, 3);  // a byte order mark
  simdjson::dom::parser parser;
  simdjson::padded_string text(content);  // must outlive every element read from it
  simdjson::dom::element doc;
  if (auto err = parser.parse(text).get(doc); err != simdjson::SUCCESS) {
    return invalid_argument(path + ": malformed JSON: " + simdjson::error_message(err) + " (see docs/hub.md)");
  }
  simdjson::dom::object root;
  if (doc.get_object().get(root) != simdjson::SUCCESS) {
    return invalid_argument(path + ": the config is one JSON object, {\"port\": 8080, ...} (see docs/hub.md)");
  }
  std::set<std::string, std::less<>> seen;
  for (auto field : root) {
    std::string key(field.key);
    if (!seen.insert(key).second) {
      return invalid_argument(path + ": \"" + key + "\" is given twice; keep one of them");
    }
    auto str = [&](std::string& out) -> Status {
      std::string_view v;
      if (field.value.get_string().get(v) != simdjson::SUCCESS) return invalid_argument(path + ": \"" + key + "\" must be a string");
      out.assign(v);
      return Status::ok();
    };
    if (key == "kb") { MDG_RETURN_IF_ERROR(str(o.kb)); }
    else if (key == "store") { MDG_RETURN_IF_ERROR(str(o.store)); }
    else if (key == "host") { MDG_RETURN_IF_ERROR(str(o.hub.host)); }
    else if (key == "secret") { MDG_RETURN_IF_ERROR(str(o.hub.secret)); }
    else if (key == "static") { MDG_RETURN_IF_ERROR(str(o.hub.static_dir)); }
    else if (key == "tls_cert") { MDG_RETURN_IF_ERROR(str(o.hub.tls_cert)); }
    else if (key == "tls_key") { MDG_RETURN_IF_ERROR(str(o.hub.tls_key)); }
    else if (key == "mecab_dicdir") { MDG_RETURN_IF_ERROR(str(o.dicdir)); }
    else if (key == "port") {
      int64_t p;
      if (field.value.get_int64().get(p) != simdjson::SUCCESS || p < 0 || p > 65535) {
        return invalid_argument(path + ": \"port\" must be a whole number, 0 (any free port) to 65535");
      }
      o.hub.port = static_cast<int>(p);
    } else if (key == "bot_threads") {
      int64_t n;
      if (field.value.get_int64().get(n) != simdjson::SUCCESS || n < 1 || n > hub::HubConfig::kMaxBotThreads) {
        return invalid_argument(path + ": \"bot_threads\" must be a whole number, 1 to " +
                                std::to_string(hub::HubConfig::kMaxBotThreads));
      }
      o.hub.bot_threads = static_cast<unsigned>(n);
    } else if (key == "conversation_idle_ms" || key == "max_cached_conversations" || key == "agent_grace_ms") {
      int64_t n;
      if (field.value.get_int64().get(n) != simdjson::SUCCESS || n < 0) {
        return invalid_argument(path + ": \"" + key + "\" must be a whole number, 0 or more");
      }
      if (key == "conversation_idle_ms") o.hub.conversation_idle_ms = n;
      else if (key == "agent_grace_ms") o.hub.agent_grace_ms = n;
      else o.hub.max_cached_conversations = static_cast<std::size_t>(n);
    } else if (key == "agents") {
      simdjson::dom::array arr;
      if (field.value.get_array().get(arr) != simdjson::SUCCESS) return invalid_argument(path + ": \"agents\" must be a list");
      for (auto a : arr) {
        simdjson::dom::object agent;
        if (a.get_object().get(agent) != simdjson::SUCCESS) {
          return invalid_argument(path + ": each agent is an object {\"name\", \"password_hash\"}");
        }
        hub::AgentAccount account;
        for (auto f : agent) {
          const std::string k(f.key);
          std::string_view field_text;
          if (k != "name" && k != "password" && k != "password_hash") {
            return invalid_argument(path + ": unknown agent key \"" + k + "\" (known: name, password_hash, password)");
          }
          if (f.value.get_string().get(field_text) != simdjson::SUCCESS) {
            return invalid_argument(path + ": agent key \"" + k + "\" must be a string");
          }
          (k == "name" ? account.name : k == "password" ? account.password : account.password_hash) = field_text;
        }
        if (account.name.empty() || account.password.empty() == account.password_hash.empty()) {
          return invalid_argument(path + ": each agent needs \"name\" and either \"password_hash\" "
                                  "(from madoguchi-hub --hash-password) or \"password\"");
        }
        o.hub.agents.push_back(std::move(account));
      }
    } else if (key == "new_conversations_per_minute" || key == "new_conversations_burst") {
      double x;
      if (field.value.get_double().get(x) != simdjson::SUCCESS || !(x >= 0) || x > 1e9) {
        return invalid_argument(path + ": \"" + key + "\" must be a number, 0 or more");
      }
      (key == "new_conversations_per_minute" ? o.hub.new_conversations_per_minute : o.hub.new_conversations_burst) = x;
    } else if (key == "trusted_proxies") {
      simdjson::dom::array arr;
      if (field.value.get_array().get(arr) != simdjson::SUCCESS) {
        return invalid_argument(path + ": \"trusted_proxies\" must be a list of addresses");
      }
      for (auto a : arr) {
        std::string_view v;
        if (a.get_string().get(v) != simdjson::SUCCESS) return invalid_argument(path + ": trusted_proxies must be strings");
        o.hub.trusted_proxies.emplace_back(v);
      }
    } else if (key == "origins") {
      simdjson::dom::array arr;
      if (field.value.get_array().get(arr) != simdjson::SUCCESS) return invalid_argument(path + ": \"origins\" must be a list");
      for (auto a : arr) {
        std::string_view v;
        if (a.get_string().get(v) != simdjson::SUCCESS) return invalid_argument(path + ": origins must be strings");
        o.hub.allowed_origins.emplace_back(v);
      }
    } else {
      return invalid_argument(path + ": unknown setting \"" + key +
                              "\" (kb, store, host, port, secret, agents, origins, static, tls_cert, tls_key, mecab_dicdir, bot_threads, conversation_idle_ms, max_cached_conversations, agent_grace_ms, "
                              "new_conversations_per_minute, new_conversations_burst, trusted_proxies)");
    }
  }
  return Status::ok();
}

std::string random_hex(std::size_t bytes) {
  std::random_device rd;
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xFF;
    out += kHex[v >> 4];
    out += kHex[v & 15];
  }
  return out;
}

// Without a configured secret, tokens must still survive a restart: keep one beside the store.
// A file that is there but cannot be used is an error, never replaced: a new secret would
// sign every visitor out, and an unreadable file is more likely a wrong owner than a loss.
Result<std::string> persistent_secret(const std::string& store_path) {
  std::string path = store_path + ".secret";
  if (std::ifstream in(path); in) {
    std::string s;
    std::getline(in, s);
    if (!in && !in.eof()) return unavailable(path + ": cannot read the token secret");
    if (s.size() >= 16) return s;
    std::error_code ec;
    if (std::filesystem::file_size(path, ec) != 0 || ec) {
      return invalid_argument(path + ": the token secret is " + std::to_string(s.size()) +
                              " bytes on its first line; it needs at least 16. Put a longer one there, or delete "
                              "the file to have a new one made (visitors' tokens made with the old one stop working)");
    }
    // Empty: a write that a power cut interrupted before the sync below. No token was made
    // with anything in it, so a new one loses nothing.
    if (::unlink(path.c_str()) != 0) {
      return unavailable(path + ": the token secret file is empty and cannot be replaced (" + std::strerror(errno) + ")");
    }
  } else if (errno != ENOENT) {
    return unavailable(path + ": cannot read the token secret (" + std::strerror(errno) +
                       "); give the hub's user read access, or set secret in the config");
  }
  std::string s = random_hex(32) + "\n";
  // Created readable by its owner alone from the start (not chmod-ed after it was written):
  // whoever reads it can make any visitor's token.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return unavailable(path + ": cannot write the token secret (" + std::strerror(errno) + ")");
  // Synced, with its folder's entry, before any token is made with it.
  const bool written = ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()) && ::fsync(fd) == 0;
  const bool closed = ::close(fd) == 0;
  if (written && closed) {
    const std::string dir = std::filesystem::path(path).parent_path().string();
    if (const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
      (void)::fsync(dfd);
      (void)::close(dfd);
    }
  }
  if (!written || !closed) {
    (void)::unlink(path.c_str());  // ours, and unusable
    return unavailable(path + ": cannot write the token secret");
  }
  s.pop_back();
  return s;
}

// Overwrites a command-line argument in place, so that `ps` and /proc/PID/cmdline (which show
// the process's own argv memory) no longer show it. Until then it was visible: the usage
// and the warning say to keep secrets in the config file.
void hide_argument(char* arg) {
  for (char* p = arg; *p != '\0'; ++p) *p = '*';
}

// Every connection holds a file descriptor, and the usual soft limit (1024) would stop the
// hub near a thousand visitors: raise it to the hard limit. libwebsockets sizes its tables by
// the limit when the hub is created (8 bytes a descriptor each, touched only when used), so
// a limit beyond 2^20 is not taken. Returns what to log.
std::string raise_open_files_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return "open files limit: unknown (getrlimit failed)";
  constexpr rlim_t kMost = rlim_t{1} << 20;
  const rlim_t before = rl.rlim_cur;
  const rlim_t target = rl.rlim_max == RLIM_INFINITY ? kMost : std::min(rl.rlim_max, kMost);
  if (target > before) {
    rl.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      return "open files limit " + std::to_string(before) + ": could not raise it to " + std::to_string(target) +
             "; the hub serves fewer than that many connections";
    }
    return "open files limit raised from " + std::to_string(before) + " to " + std::to_string(target) +
           " (the hard limit; each connection takes one)";
  }
  return "open files limit " + std::to_string(before) + " (the hard limit; each connection takes one)";
}

// The bot for a knowledge-base file: at start and on every reload.
Result<std::shared_ptr<const bot::Bot>> build_bot(const std::string& path, const bot::BotOptions& options) {
  MDG_ASSIGN_OR_RETURN(auto kb, bot::load_knowledge_file(path));
  return bot::Bot::create(std::move(kb), options);
}

// The set holding SIGHUP alone.
sigset_t sighup_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  return set;
}

// SIGHUP reloads the knowledge base: a thread of its own waits for the signal, builds the new
// bot while the hub goes on answering with the old one, and hands it over (Hub::set_bot). A
// knowledge base that does not load or build is logged and the previous one stays.
// SIGHUP must be blocked in every thread (main() blocks it first), so that only sigwait()
// here receives it.
class Reloader {
 public:
  Reloader(hub::Hub& hub, std::string kb_path, bot::BotOptions options, Logger logger)
      : hub_(hub), kb_path_(std::move(kb_path)), options_(std::move(options)), logger_(std::move(logger)),
        thread_([this] { run(); }) {}
  ~Reloader() {
    stopping_ = true;
    pthread_kill(thread_.native_handle(), SIGHUP);
    thread_.join();
  }
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

 private:
  void run() {
    const sigset_t hup = sighup_set();
    for (;;) {
      int sig = 0;
      if (sigwait(&hup, &sig) != 0) continue;
      if (stopping_) return;
      reload();
    }
  }

  void reload() {
    const auto start = std::chrono::steady_clock::now();
    logger_.log(LogLevel::kInfo, "SIGHUP: reloading the knowledge base " + kb_path_);
    auto bot = build_bot(kb_path_, options_);
    if (!bot) {
      logger_.log(LogLevel::kError, "knowledge base not reloaded, still answering with the previous one: " +
                                        bot.status().to_string());
      return;
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    logger_.log(LogLevel::kInfo, "knowledge base " + kb_path_ + " built in " + std::to_string(ms.count()) +
                                     " ms; the hub takes it up at its next turn");
    hub_.set_bot(std::move(*bot));
  }

  hub::Hub& hub_;
  const std::string kb_path_;
  const bot::BotOptions options_;
  const Logger logger_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;  // last: starts once the rest is set
};

}  // namespace

int main(int argc, char** argv) {
  {
    // Before any thread starts, so that every thread inherits it (see Reloader).
    const sigset_t hup = sighup_set();
    pthread_sigmask(SIG_BLOCK, &hup, nullptr);
  }
  Options o;
  // The config file first, so that flags override it.
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--config") o.config = argv[i + 1];
  }
  if (!o.config.empty()) {
    if (auto st = read_config(o.config, o); !st) return fail(st.to_string());
  }
  std::vector<std::string> secrets_on_command_line;  // flags whose value was a secret, for the warning
  // A list given by flags replaces the config file's, as every flag overrides the file.
  bool flag_origins = false, flag_agents = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "-h" || a == "--help") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (a == "--verbose") {
      o.verbose = true;
      continue;
    }
    if (a == "--hash-password") return hash_password();
    const char* v = value();
    if (!v) return fail(a + " needs a value\n" + kUsage);
    if (a == "--config") continue;
    if (a == "--kb") o.kb = v;
    else if (a == "--store") o.store = v;
    else if (a == "--host") o.hub.host = v;
    else if (a == "--port") {
      char* end = nullptr;
      long p = std::strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || p < 0 || p > 65535) {
        return fail("--port " + std::string(v) + ": not a port (a whole number, 0 for any free port, to 65535)\n" + kUsage);
      }
      o.hub.port = static_cast<int>(p);
    }
    else if (a == "--secret") {
      o.hub.secret = v;
      hide_argument(argv[i]);
      secrets_on_command_line.push_back("--secret");
    }
    else if (a == "--static") o.hub.static_dir = v;
    else if (a == "--origin") {
      if (!std::exchange(flag_origins, true)) o.hub.allowed_origins.clear();
      o.hub.allowed_origins.emplace_back(v);
    }
    else if (a == "--tls-cert") o.hub.tls_cert = v;
    else if (a == "--tls-key") o.hub.tls_key = v;
    else if (a == "--mecab-dicdir") o.dicdir = v;
    else if (a == "--bot-threads") {
      char* end = nullptr;
      long n = std::strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || n < 1 || n > hub::HubConfig::kMaxBotThreads) {
        return fail("--bot-threads is a whole number, 1 to " + std::to_string(hub::HubConfig::kMaxBotThreads));
      }
      o.hub.bot_threads = static_cast<unsigned>(n);
    }
    else if (a == "--durability") {
      std::string d = v;
      if (d != "full" && d != "process") return fail("--durability is full or process");
      o.fsync_every_commit = d == "full";
    }
    else if (a == "--agent") {
      std::string s = v;
      auto colon = s.find(':');
      if (colon == std::string::npos || colon == 0) return fail("--agent needs NAME:PASSWORD or NAME:HASH");
      if (!std::exchange(flag_agents, true)) o.hub.agents.clear();
      hub::AgentAccount account;
      account.name = s.substr(0, colon);
      const bool hashed = s.compare(colon + 1, 8, "$scrypt$") == 0;
      (hashed ? account.password_hash : account.password) = s.substr(colon + 1);
      if (!hashed) {
        hide_argument(argv[i] + colon + 1);
        secrets_on_command_line.push_back("--agent " + account.name + ":PASSWORD");
      }
      o.hub.agents.push_back(std::move(account));
    } else {
      return fail("unknown option " + a + "\n" + kUsage);
    }
  }
  o.hub.logger.min_level = o.verbose ? LogLevel::kDebug : LogLevel::kInfo;
  // Lines come from the serving thread, the bot threads and the reload thread at once:
  // gmtime_r, not gmtime's shared buffer.
  o.hub.logger.sink = [](LogLevel level, std::string_view msg) {
    std::time_t t = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&t, &utc);
    char ts[32];
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &utc);
    std::fprintf(stderr, "%s %s %.*s\n", ts, std::string(to_string(level)).c_str(), static_cast<int>(msg.size()), msg.data());
  };

  o.hub.logger.log(LogLevel::kInfo, raise_open_files_limit());
  if (!secrets_on_command_line.empty()) {
    std::string flags;
    for (const auto& f : secrets_on_command_line) flags += (flags.empty() ? "" : ", ") + f;
    o.hub.logger.log(LogLevel::kWarning, "a secret on the command line (" + flags +
                                             ") was visible to other users of this machine (ps) and may be in the "
                                             "shell's history; keep it in the config file instead (docs/hub.md)");
  }

  bot::BotOptions bot_options;
  bot_options.text.mecab_dicdir = o.dicdir;
  bot_options.logger = o.hub.logger;
  auto bot = build_bot(o.kb, bot_options);
  if (!bot) return fail(bot.status().to_string());
  hub::SqliteStoreOptions store_options;
  store_options.synchronous_full = o.fsync_every_commit;
  auto store = hub::open_sqlite_store(o.store, store_options);
  if (!store) return fail(store.status().to_string());
  if (o.hub.secret.empty()) {
    auto secret = persistent_secret(o.store);
    if (!secret) return fail(secret.status().to_string());
    o.hub.secret = *secret;
  }
  std::string generated_password;  // of the account made when none is configured
  if (o.hub.agents.empty()) {
    generated_password = random_hex(6);
    auto hash = hub::hash_agent_password(generated_password);
    if (!hash) return fail(hash.status().to_string());
    o.hub.agents.push_back({"agent", "", std::move(*hash)});
  }
  auto h = hub::Hub::create(o.hub, *bot, std::move(*store));
  if (!h) return fail(h.status().to_string());
  g_hub = h->get();
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  Reloader reloader(**h, o.kb, bot_options, o.hub.logger);
  const char* scheme = o.hub.tls_cert.empty() ? "http" : "https";
  // A URL to open: the loopback address for "any", an IPv6 address in brackets.
  std::string host = o.hub.host == "0.0.0.0" || o.hub.host == "::" || o.hub.host.empty() ? "127.0.0.1" : o.hub.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  std::printf("madoguchi-hub: listening on %s://%s:%d\n", scheme, host.c_str(), (*h)->port());
  if (!generated_password.empty()) {
    std::fprintf(stderr, "madoguchi-hub: agent login: %s / %s (set agents in the config for real use)\n",
                 o.hub.agents[0].name.c_str(), generated_password.c_str());
  }
  std::fflush(stdout);
  auto st = (*h)->run();
  g_hub = nullptr;
  if (!st) return fail(st.to_string());
  return 0;
}
