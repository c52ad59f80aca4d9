// madoguchi-store-bench: what storing a chat message costs in the hub's SQLite store, next to
// the least SQLite can do for the same messages in the same run.
//
// The hub stores each answered message twice (the visitor's, with its client id, and the bot's)
// and commits once per turn of its event loop, whatever the turn holds (group commit). This
// program does the same with the public Store API: C conversations, then turns of B messages
// spread over them round-robin (each conversation one visitor message and one bot answer at a
// time), each turn inside begin_batch() ... end_batch(). The peer: one prepared INSERT a message
// into a bare table (conversation, seq, body), one transaction a turn, same journal (WAL) and
// synchronous setting, same file system. The ratio of CPU time per message is what to read.
//
//   madoguchi-store-bench                           # 1,000 and 10,000 conversations
//   madoguchi-store-bench --conversations 1000 --turns 100 --batch 600 --durability full
//
// Last line: one JSON object with every figure. Exit status 0, or 2 for a bad option.
#include <madoguchi/store.hpp>

#include <sqlite3.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;
using madoguchi::hub::NewMessage;

struct Options {
  std::vector<std::size_t> conversations{1000, 10000};
  std::size_t turns = 60;
  std::size_t batch = 600;  // messages per turn (commit): the hub's closed loop at 1k visitors
  bool full = false;        // synchronous FULL (fsync every commit) instead of NORMAL
  fs::path dir;
};

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// The client id of the `message`-th message stored, to conversation `conversation`: ids sort
// by the time they were made, as madoguchi::Client makes them (docs/protocol.md); here the
// count of messages stands for the time.
std::string client_id(std::size_t message, std::size_t conversation) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "m-%012zu-%zu", message, conversation);
  return buf;
}

// A message body as the hub stores it: a protocol frame without its seq.
std::string body(std::size_t conversation, std::size_t n, bool visitor) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                visitor ? R"({"v":1,"type":"message","id":"m-%zu-%zu","from":"visitor","text":"送料はいくらですか。北海道への配送も同じですか","at":1764201600000})"
                        : R"({"v":1,"type":"message","id":"b-%zu-%zu","from":"bot","text":"送料は全国一律550円（税込）です。5,000円以上のご注文で無料になります。","at":1764201600000,"bot":{"decision":"answer","entry":"shipping-fee","follow_ups":[],"options":[]}})",
                conversation, n);
  return buf;
}

// Conversation ids like the hub's: "c_" and 26 random letters and digits, so that the
// conversations a turn touches lie anywhere in the indexes (a run of neighbouring ids would
// share index pages, which the hub's random ids do not).
std::string conversation_id(std::size_t c) {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
  std::uint64_t x = 0x9e3779b97f4a7c15ULL * (c + 1);
  std::string id = "c_";
  for (int i = 0; i < 26; ++i) {
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 32;
    id += kAlphabet[x % 32];
  }
  return id;
}

struct Figures {
  double cpu_us_per_msg = 0, wall_us_per_msg = 0, commit_ms = 0;
};

Figures run_store(const fs::path& file, std::size_t conversations, const Options& o) {
  madoguchi::hub::SqliteStoreOptions so;
  so.synchronous_full = o.full;
  auto opened = madoguchi::hub::open_sqlite_store(file.string(), so);
  if (!opened) {
    std::fprintf(stderr, "madoguchi-store-bench: %s\n", opened.status().to_string().c_str());
    std::exit(1);
  }
  auto& store = **opened;
  std::vector<std::string> ids;
  for (std::size_t c = 0; c < conversations; ++c) {
    madoguchi::hub::ConversationRecord r;
    r.id = conversation_id(c);
    r.state = "bot";
    r.locale = "ja";
    r.created_ms = r.updated_ms = 1764201600000;
    if (auto st = store.create_conversation(r); !st) std::exit(1);
    ids.push_back(r.id);
  }
  std::size_t next = 0, messages = 0;
  std::vector<std::size_t> count(conversations, 0);
  double commit_s = 0;
  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t t = 0; t < o.turns; ++t) {
    if (auto st = store.begin_batch(); !st) std::exit(1);
    for (std::size_t i = 0; i < o.batch; i += 2) {
      const std::size_t c = next++ % conversations;
      const std::size_t n = count[c]++;
      NewMessage v;
      v.client_id = client_id(messages, c);
      v.sender = "visitor";
      v.kind = "message";
      v.body_json = body(c, n, true);
      v.created_ms = 1764201600000;
      NewMessage b = v;
      b.client_id.clear();
      b.sender = "bot";
      b.body_json = body(c, n, false);
      if (!store.append(ids[c], v) || !store.append(ids[c], b)) std::exit(1);
      messages += 2;
    }
    const auto c0 = std::chrono::steady_clock::now();
    if (auto st = store.end_batch(); !st) std::exit(1);
    commit_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {(cpu_seconds() - cpu0) * 1e6 / static_cast<double>(messages), wall * 1e6 / static_cast<double>(messages),
          commit_s * 1e3 / static_cast<double>(o.turns)};
}

void check(int rc, sqlite3* db, const char* what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return;
  std::fprintf(stderr, "madoguchi-store-bench: peer: %s: %s\n", what, sqlite3_errmsg(db));
  std::exit(1);
}

// The peer: the same messages, one INSERT each into a bare table.
Figures run_peer(const fs::path& file, std::size_t conversations, const Options& o) {
  sqlite3* raw = nullptr;
  check(sqlite3_open(file.c_str(), &raw), raw, "open");
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, sqlite3_close);
  check(sqlite3_exec(raw, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr), raw, "WAL");
  check(sqlite3_exec(raw, o.full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", nullptr, nullptr, nullptr),
        raw, "synchronous");
  check(sqlite3_exec(raw, "CREATE TABLE m (conversation TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL)", nullptr,
                     nullptr, nullptr),
        raw, "create");
  sqlite3_stmt* st = nullptr;
  check(sqlite3_prepare_v2(raw, "INSERT INTO m VALUES (?, ?, ?)", -1, &st, nullptr), raw, "prepare");
  std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> insert(st, sqlite3_finalize);
  std::vector<std::string> ids;
  for (std::size_t c = 0; c < conversations; ++c) ids.push_back(conversation_id(c));
  std::vector<std::int64_t> seq(conversations, 0);
  std::size_t next = 0, messages = 0;
  double commit_s = 0;
  auto put = [&](std::size_t c, const std::string& text) {
    sqlite3_bind_text(st, 1, ids[c].data(), static_cast<int>(ids[c].size()), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, ++seq[c]);
    sqlite3_bind_text(st, 3, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    check(sqlite3_step(st), raw, "insert");
    sqlite3_reset(st);
  };
  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t t = 0; t < o.turns; ++t) {
    check(sqlite3_exec(raw, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), raw, "begin");
    for (std::size_t i = 0; i < o.batch; i += 2) {
      const std::size_t c = next++ % conversations;
      put(c, body(c, static_cast<std::size_t>(seq[c]), true));
      put(c, body(c, static_cast<std::size_t>(seq[c]), false));
      messages += 2;
    }
    const auto c0 = std::chrono::steady_clock::now();
    check(sqlite3_exec(raw, "COMMIT", nullptr, nullptr, nullptr), raw, "commit");
    commit_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {(cpu_seconds() - cpu0) * 1e6 / static_cast<double>(messages), wall * 1e6 / static_cast<double>(messages),
          commit_s * 1e3 / static_cast<double>(o.turns)};
}

int usage(const char* why) {
  std::fprintf(stderr,
               "madoguchi-store-bench: %s\n"
               "usage: madoguchi-store-bench [--conversations N,N,...] [--turns N] [--batch N]\n"
               "                             [--durability process|full] [--dir DIR]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "-h" || a == "--help") return usage("the hub's message store against bare SQLite inserts"), 0;
    if (i + 1 >= argc) return usage("every option takes a value");
    const std::string v = argv[++i];
    auto number = [&](std::size_t& out) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n == 0) return false;
      out = static_cast<std::size_t>(n);
      return true;
    };
    if (a == "--conversations") {
      o.conversations.clear();
      for (std::size_t at = 0; at <= v.size();) {
        std::size_t comma = v.find(',', at);
        if (comma == std::string::npos) comma = v.size();
        char* end = nullptr;
        const std::string part = v.substr(at, comma - at);
        const unsigned long long n = std::strtoull(part.c_str(), &end, 10);
        if (part.empty() || *end != '\0' || n == 0) return usage("--conversations takes numbers above 0, comma-separated");
        o.conversations.push_back(static_cast<std::size_t>(n));
        at = comma + 1;
      }
    } else if (a == "--turns") {
      if (!number(o.turns)) return usage("--turns takes a number above 0");
    } else if (a == "--batch") {
      if (!number(o.batch) || o.batch % 2 != 0) return usage("--batch takes an even number above 0");
    } else if (a == "--durability") {
      if (v != "process" && v != "full") return usage("--durability is process or full");
      o.full = v == "full";
    } else if (a == "--dir") {
      o.dir = v;
    } else {
      return usage(("unknown option " + std::string(a)).c_str());
    }
  }
  std::error_code ec;
  const bool own_dir = o.dir.empty();
  if (own_dir) {
    char tmpl[] = "/tmp/madoguchi-store-bench-XXXXXX";
    if (!mkdtemp(tmpl)) return usage("cannot create a temporary directory");
    o.dir = tmpl;
  }
  std::printf("turns of %zu messages (%zu answered questions), %zu turns, synchronous %s, in %s\n", o.batch,
              o.batch / 2, o.turns, o.full ? "FULL" : "NORMAL", o.dir.c_str());
  std::printf("%13s %22s %22s %9s %12s\n", "conversations", "store µs/msg cpu(wall)", "peer µs/msg cpu(wall)",
              "ratio", "commit ms");
  std::string json = "{\"bench\":\"madoguchi-store-bench\",\"batch\":" + std::to_string(o.batch) +
                     ",\"turns\":" + std::to_string(o.turns) + ",\"durability\":\"" + (o.full ? "full" : "process") +
                     "\",\"runs\":[";
  for (std::size_t k = 0; k < o.conversations.size(); ++k) {
    const std::size_t n = o.conversations[k];
    const Figures s = run_store(o.dir / ("store-" + std::to_string(n) + ".db"), n, o);
    const Figures p = run_peer(o.dir / ("peer-" + std::to_string(n) + ".db"), n, o);
    const double ratio = s.cpu_us_per_msg / p.cpu_us_per_msg;
    std::printf("%13zu %11.1f (%7.1f) %12.1f (%7.1f) %8.2fx %5.1f / %4.1f\n", n, s.cpu_us_per_msg, s.wall_us_per_msg,
                p.cpu_us_per_msg, p.wall_us_per_msg, ratio, s.commit_ms, p.commit_ms);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "%s{\"conversations\":%zu,\"store\":{\"cpu_us_per_msg\":%.2f,\"wall_us_per_msg\":%.2f,\"commit_ms\":%.3f},"
                  "\"peer\":{\"cpu_us_per_msg\":%.2f,\"wall_us_per_msg\":%.2f,\"commit_ms\":%.3f},\"cpu_ratio\":%.3f}",
                  k ? "," : "", n, s.cpu_us_per_msg, s.wall_us_per_msg, s.commit_ms, p.cpu_us_per_msg, p.wall_us_per_msg,
                  p.commit_ms, ratio);
    json += buf;
  }
  json += "]}";
  std::printf("%s\n", json.c_str());
  if (own_dir) fs::remove_all(o.dir, ec);
  return 0;
}
