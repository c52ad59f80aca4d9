// terminal-agent: a support agent's console in the terminal, on madoguchi::AgentClient.
//
//   terminal-agent --url ws://127.0.0.1:8080/v1/agent --agent NAME [--password PW] [--state FILE] [--verbose]
//
// The password comes from --password or the environment variable MADOGUCHI_AGENT_PASSWORD.
// The queue of handed-off conversations is printed whenever it changes. Commands are read line
// by line from standard input (a pipe works as well as a terminal):
//   take N           take conversation N of the queue (or its id); shows the hand-off package
//   any other text   a reply to the visitor of the current conversation
//   /transfer NAME   give the current conversation to agent NAME
//   /back            hand it back to the bot
//   /close           close it
//   /queue           ask for the queue again
//   /help, /quit     (end of input quits too)
// With --state, replies typed while the hub is unreachable survive a restart of the program.
#include <madoguchi/agent_client.hpp>

#include "terminal_text.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

using namespace madoguchi;

constexpr const char* kHelp =
    "commands:\n"
    "  take N           take conversation N of the queue (or its id) and show its hand-off package\n"
    "  TEXT             reply to the visitor of the current conversation\n"
    "  /transfer NAME   give the current conversation to agent NAME\n"
    "  /back            hand the current conversation back to the bot\n"
    "  /close           close the current conversation\n"
    "  /queue           show the queue again\n"
    "  /help            this text\n"
    "  /quit            leave (end of input too)";

std::mutex g_mu;                // output lines, and the two fields below
std::vector<QueueEntry> g_queue;  // as last printed: "take N" counts in it
std::string g_current;          // the conversation replies go to
std::string g_wanted;           // the conversation the last "take" asked for
std::atomic<AgentClient*> g_client{nullptr};
std::atomic<bool> g_refused{false};  // the hub refused the login: the program ends
std::condition_variable g_queued;    // the first queue came, or a take was answered (g_mu)
bool g_have_queue = false;
bool g_take_answered = true;  // the last take's conversation frame (or an error) came
const bool g_piped = !isatty(STDIN_FILENO);  // commands come from a script, not a person

using samples::printable;

void print(const std::string& text) {
  std::lock_guard lock(g_mu);
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
}

std::string fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string joined(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

// One stored or live frame of a conversation, on one line.
std::string describe(const protocol::Frame& f) {
  std::string line = f.seq ? "#" + std::to_string(*f.seq) + " " : std::string();
  if (f.type == protocol::FrameType::kEvent) {
    return line + "-- " + f.event + (f.data_json.empty() ? "" : " " + printable(f.data_json));
  }
  line += printable(f.from == "agent" && !f.agent.empty() ? f.agent : f.from) + "> " + printable(f.text);
  for (const auto& a : f.attachments) line += " [" + printable(a.name) + " " + printable(a.url) + "]";
  return line;
}

std::string queue_text(const std::vector<QueueEntry>& queue) {
  if (queue.empty()) return "== queue: empty";
  std::string out = "== queue: " + std::to_string(queue.size()) + " conversation(s)";
  for (std::size_t i = 0; i < queue.size(); ++i) {
    const QueueEntry& q = queue[i];
    out += "\n  " + std::to_string(i + 1) + ". " + q.conversation + "  " + q.state +
           (q.agent.empty() ? "" : "(" + q.agent + ")") + "  priority " + fixed(q.priority) + "  " +
           (q.locale.empty() ? "-" : printable(q.locale)) + "  " + printable(q.reason);
  }
  return out;
}

// The conversation frame of a take: its hand-off package and transcript. `current`: replies
// go to it from now on.
std::string package_text(const AgentEvent& e, bool current) {
  const HandoffPackage& p = e.handoff;
  std::ostringstream out;
  out << "== conversation " << e.frame.conversation << " (" << e.frame.state << ")\n";
  out << "   reason:     " << (p.reason.empty() ? "-" : printable(p.reason)) << "\n";
  out << "   locale:     " << (p.locale.empty() ? "-" : printable(p.locale)) << "\n";
  out << "   triage:     severity " << fixed(p.severity) << ", complexity " << fixed(p.complexity) << ", effort "
      << fixed(p.effort) << (p.signals.empty() ? "" : " (" + joined(p.signals) + ")") << "\n";
  out << "   rules:      " << (p.rules_fired.empty() ? "-" : joined(p.rules_fired)) << "\n";
  out << "   candidates:";
  if (p.candidates.empty()) out << " none (nothing in the knowledge base matched)\n";
  for (std::size_t i = 0; i < p.candidates.size(); ++i) {
    const auto& c = p.candidates[i];
    out << (i == 0 ? " " : "               ") << i + 1 << ". " << c.entry << " (confidence " << fixed(c.confidence)
        << ", score " << fixed(c.score) << ")\n";
  }
  std::vector<std::string> attrs;
  for (const auto& [k, v] : p.visitor) attrs.push_back(printable(k) + "=" + printable(v));
  out << "   visitor:    " << (attrs.empty() ? "-" : joined(attrs)) << "\n";
  out << "   transcript:";
  for (const auto& f : e.transcript) out << "\n     " << describe(f);
  if (current) {
    out << "\n== replying in " << e.frame.conversation << " (type to reply; /help)";
  } else {
    // Transferred to this agent, or taken by its client again: replies still go where they went.
    out << "\n== yours now; replies still go to " << g_current << " (take " << e.frame.conversation
        << " to reply in this one)";
  }
  return out.str();
}

void on_event(const AgentEvent& e) {
  const protocol::Frame& f = e.frame;
  switch (e.kind) {
    case AgentEvent::Kind::kState:
      print("-- " + std::string(to_string(e.state)));
      break;
    case AgentEvent::Kind::kWelcome:
      print("-- signed in as " + f.agent);
      break;
    case AgentEvent::Kind::kQueue: {
      std::lock_guard lock(g_mu);
      g_queue = e.queue;
      g_have_queue = true;
      g_queued.notify_all();
      std::printf("%s\n", queue_text(e.queue).c_str());
      std::fflush(stdout);
      break;
    }
    case AgentEvent::Kind::kConversation: {
      bool chosen;
      {
        std::lock_guard lock(g_mu);
        chosen = f.conversation == g_wanted || g_current.empty();
        if (chosen) g_current = f.conversation;
        if (f.conversation == g_wanted) {
          g_wanted.clear();
          g_take_answered = true;
          g_queued.notify_all();
        }
      }
      if (e.resumed && !chosen) {
        print("== conversation " + f.conversation + " resumed");
      } else {
        std::string text;
        {
          std::lock_guard lock(g_mu);
          text = package_text(e, chosen);
        }
        print(text);
      }
      break;
    }
    case AgentEvent::Kind::kMessage:
    case AgentEvent::Kind::kEvent: {
      print("[" + f.conversation + "] " + describe(f));
      AgentClient* client = g_client.load();
      if (!client) break;
      if (f.from == "visitor" && f.seq) (void)client->mark_read(f.conversation, *f.seq);
      // Handed back, closed or transferred away: replies can no longer go there.
      auto mine = client->conversations();
      std::lock_guard lock(g_mu);
      if (g_current == f.conversation && std::find(mine.begin(), mine.end(), f.conversation) == mine.end()) {
        g_current.clear();
        std::printf("== no current conversation: take one from the queue\n");
        std::fflush(stdout);
      }
      break;
    }
    case AgentEvent::Kind::kAck:
      print("-- delivered #" + std::to_string(f.seq.value_or(0)) + (f.duplicate ? " (earlier)" : ""));
      break;
    case AgentEvent::Kind::kTyping:
      if (f.state == "start") print("[" + f.conversation + "] -- visitor is typing...");
      break;
    case AgentEvent::Kind::kRead:
      break;
    case AgentEvent::Kind::kError:
      print("!! " + std::string(protocol::to_string(f.error)) + ": " + f.message);
      {
        std::lock_guard lock(g_mu);
        g_take_answered = true;  // whatever it answers, a script waiting for a take goes on
        if (f.error == protocol::ErrorKind::kUnauthorized || f.error == protocol::ErrorKind::kUnsupportedVersion) {
          g_refused = true;  // the client stops; so does the program, at the next line
        }
        g_queued.notify_all();
      }
      break;
  }
}

int usage() {
  std::fprintf(stderr,
               "usage: terminal-agent --url ws://HOST:PORT/v1/agent --agent NAME [--password PW] [--state FILE] "
               "[--verbose]\n(the password may also come from MADOGUCHI_AGENT_PASSWORD)\n");
  return 2;
}

void report(const Status& st) {
  if (!st) print("!! " + st.to_string());
}

std::string current() {
  std::lock_guard lock(g_mu);
  return g_current;
}

// Runs one command line; false to quit.
bool command(AgentClient& client, const std::string& line) {
  if (line.empty()) return true;
  if (line == "/quit") return false;
  if (line == "/help") {
    print(kHelp);
    return true;
  }
  if (line == "/queue") {
    report(client.refresh_queue());
    return true;
  }
  if (line == "take" || line == "/take" || line.rfind("take ", 0) == 0 || line.rfind("/take ", 0) == 0) {
    std::string which = line.find(' ') == std::string::npos ? std::string() : line.substr(line.find(' ') + 1);
    which.erase(0, which.find_first_not_of(" \t"));
    which.erase(which.find_last_not_of(" \t\r") + 1);
    if (which.empty()) {
      print("!! take what? take N (its number in the queue) or take c_... (a conversation id)");
      return true;
    }
    std::string id = which;
    if (auto n = madoguchi::samples::typed_number(which); n || which.find_first_not_of("0123456789") == std::string::npos) {
      std::lock_guard lock(g_mu);
      if (!n || *n < 1 || *n > g_queue.size()) {
        std::printf("!! no conversation %s in the queue (/queue shows it)\n", printable(which).c_str());
        std::fflush(stdout);
        return true;
      }
      id = g_queue[*n - 1].conversation;
    }
    {
      std::lock_guard lock(g_mu);
      g_wanted = id;
      g_take_answered = false;
    }
    Status taken = client.take(id);
    report(taken);
    if (taken && g_piped) {
      // A script's next line is most often the reply: it goes to the taken conversation.
      std::unique_lock lock(g_mu);
      g_queued.wait_for(lock, std::chrono::seconds(15), [] { return g_take_answered || g_refused.load(); });
    }
    return true;
  }
  if (line[0] == '/') {
    std::string conv = current();
    bool known = line == "/back" || line == "/close" || line.rfind("/transfer ", 0) == 0;
    if (!known) {
      print("!! unknown command " + line + " (/help lists them)");
    } else if (conv.empty()) {
      print("!! no current conversation: take one first (take N)");
    } else if (line == "/back") {
      report(client.hand_back(conv));
    } else if (line == "/close") {
      report(client.close_conversation(conv));
    } else {
      report(client.transfer(conv, line.substr(10)));
    }
    return true;
  }
  std::string conv = current();
  if (conv.empty()) {
    print("!! no current conversation: take one first (take N)");
    return true;
  }
  auto id = client.send(conv, line);
  if (!id) print("!! " + id.status().to_string());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  AgentClientConfig cfg;
  bool verbose = false;
  if (const char* pw = std::getenv("MADOGUCHI_AGENT_PASSWORD")) cfg.password = pw;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") return usage(), 0;
    if (a == "--verbose") {
      verbose = true;
      continue;
    }
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "--url") cfg.url = v;
    else if (a == "--agent") cfg.agent = v;
    else if (a == "--password") cfg.password = v;
    else if (a == "--state") cfg.state_path = v;
    else return usage();
  }
  if (cfg.url.empty() || cfg.agent.empty()) return usage();
  cfg.on_event = on_event;
  cfg.logger.min_level = verbose ? LogLevel::kDebug : LogLevel::kWarning;
  cfg.logger.sink = [](LogLevel level, std::string_view msg) {
    std::lock_guard lock(g_mu);
    std::fprintf(stderr, "[%s] %.*s\n", std::string(to_string(level)).c_str(), static_cast<int>(msg.size()), msg.data());
  };

  auto client = AgentClient::create(cfg);
  if (!client) {
    std::fprintf(stderr, "terminal-agent: %s\n", client.status().to_string().c_str());
    return 1;
  }
  AgentClient& c = **client;
  g_client = &c;
  if (c.pending() > 0) print("-- " + std::to_string(c.pending()) + " repl(ies) from last time will be sent");
  if (auto st = c.start(); !st) {
    std::fprintf(stderr, "terminal-agent: %s\n", st.to_string().c_str());
    return 1;
  }
  if (g_piped) {
    // Commands piped in come at once: "take 1" needs the queue, a reply the connection.
    std::unique_lock lock(g_mu);
    if (!g_queued.wait_for(lock, std::chrono::seconds(15), [] { return g_have_queue || g_refused.load(); })) {
      std::fprintf(stderr, "terminal-agent: no queue from the hub after 15 s; the commands may fail\n");
    }
  }
  std::string line;
  while (!g_refused && std::getline(std::cin, line) && command(c, line)) {
  }
  Status st = c.close(5000);
  g_client = nullptr;
  if (g_refused) {
    std::fprintf(stderr, "terminal-agent: the hub refused the login (see above)\n");
    return 1;
  }
  if (!st) {
    std::fprintf(stderr, "terminal-agent: %s\n", st.to_string().c_str());
    return st.code() == ErrorCode::kDeadlineExceeded ? 3 : 1;
  }
  return 0;
}
