// terminal-chat: talk to a madoguchi hub as a visitor, from the terminal.
//
//   terminal-chat --url ws://127.0.0.1:8080/v1/visitor [--state FILE] [--locale ja] [--verbose]
//
// Each line typed is sent as a message; bot and agent messages, events and errors are
// printed as they come. When the bot asks which of a few things you mean, or offers related
// questions after an answer, it lists them numbered: type the number to pick one (sent as the
// option itself, Client::choose()). With --state, the conversation and unsent messages survive
// a restart: type while the hub is down, quit, come back later, and they are delivered once.
// Commands: /read (mark everything read), /quit (or end of input).
#include <madoguchi/client.hpp>

#include "terminal_text.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace madoguchi;

using samples::printable;

std::mutex g_out;  // events print from the client's network thread, prompts from main
std::mutex g_options_mu;
std::vector<protocol::BotOption> g_options;  // the last bot message's options or suggestions, from 1

// Whether the last message typed has had an answer (from the bot or a person), so that the
// program does not end on the end of its input before the answer is shown.
std::mutex g_answer_mu;
std::condition_variable g_answer_cv;
std::string g_last_id;        // the last message sent
std::int64_t g_last_seq = 0;  // its seq, once acknowledged
bool g_answered = true;
bool g_refused = false;  // the hub refused the conversation (a token it does not take)

void print(const std::string& line) {
  std::lock_guard lock(g_out);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// An event as a visitor would like to read it.
std::string describe(const std::string& event, const protocol::EventData& d, const std::string& data_json) {
  auto in_queue = [&] {
    return d.queue_position ? "you are number " + std::to_string(*d.queue_position) + " in the queue" : std::string();
  };
  if (event == "handoff_started") {
    std::string s = "passing you to a person";
    if (!d.reason.empty()) s += " (" + d.reason + ")";
    return d.queue_position ? s + "; " + in_queue() : s;
  }
  if (event == "queue_position" && d.queue_position) return in_queue();
  if (event == "agent_joined") return printable(d.agent) + " joined the conversation";
  if (event == "agent_left") return printable(d.agent) + " left the conversation";
  if (event == "transferred") return printable(d.from) + " passed the conversation to " + printable(d.to);
  if (event == "handed_back") return printable(d.agent) + " handed the conversation back to the bot";
  if (event == "conversation_closed") return "the conversation was closed" + (d.by.empty() ? "" : " by the " + d.by);
  std::string out = event;
  if (!data_json.empty()) out.append(" ").append(printable(data_json));
  return out;
}

void on_event(const ClientEvent& e) {
  const protocol::Frame& f = e.frame;
  switch (e.kind) {
    case ClientEvent::Kind::kState:
      print("-- " + std::string(to_string(e.state)));
      break;
    case ClientEvent::Kind::kWelcome:
      print("-- conversation " + f.conversation + " (" + f.state + ")");
      break;
    case ClientEvent::Kind::kMessage: {
      std::string who = f.from == "agent" && !f.agent.empty() ? f.agent : f.from;
      std::string line = printable(who) + "> " + printable(f.text);
      for (const auto& a : f.attachments) line += "\n   [" + printable(a.name) + " " + printable(a.url) + "]";
      // A clarification's options, or an answer's related questions: numbered, to pick.
      const auto& choices = e.bot.options.empty() ? e.bot.suggestions : e.bot.options;
      if (!e.bot.suggestions.empty() && e.bot.options.empty()) line += "\n   related:";
      for (std::size_t i = 0; i < choices.size(); ++i) {
        line += "\n   " + std::to_string(i + 1) + ") " + choices[i].label;
      }
      if (f.from != "visitor") {  // what the bot or a person says next replaces the choices
        std::lock_guard lock(g_options_mu);
        g_options = choices;
      }
      print(line);
      if (f.from != "visitor" && f.seq) {
        std::lock_guard lock(g_answer_mu);
        if (g_last_seq > 0 && *f.seq > g_last_seq) g_answered = true;
        g_answer_cv.notify_all();
      }
      break;
    }
    case ClientEvent::Kind::kEvent:
      print("-- " + describe(f.event, e.data, f.data_json));
      break;
    case ClientEvent::Kind::kAck: {
      if (f.duplicate) print("-- (delivered earlier: " + f.id + ")");
      std::lock_guard lock(g_answer_mu);
      if (f.id == g_last_id && f.seq) g_last_seq = *f.seq;
      break;
    }
    case ClientEvent::Kind::kTyping:
      if (f.state == "start") print("-- " + f.from + " is typing...");
      break;
    case ClientEvent::Kind::kRead:
      break;
    case ClientEvent::Kind::kError: {
      print("!! " + std::string(protocol::to_string(f.error)) + ": " + f.message);
      if (f.error == protocol::ErrorKind::kUnauthorized || f.error == protocol::ErrorKind::kUnsupportedVersion) {
        std::lock_guard lock(g_answer_mu);
        g_refused = true;  // the client stops; so does the program, at the next line
        g_answer_cv.notify_all();
      }
      break;
    }
  }
}

bool refused() {
  std::lock_guard lock(g_answer_mu);
  return g_refused;
}

int usage() {
  std::fprintf(stderr,
               "usage: terminal-chat --url ws://HOST:PORT/v1/visitor [--state FILE] [--locale ja|en] [--verbose]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  ClientConfig cfg;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "-h" || a == "--help") return usage(), 0;
    if (a == "--verbose") {
      verbose = true;
      continue;
    }
    const char* v = value();
    if (!v) return usage();
    if (a == "--url") cfg.url = v;
    else if (a == "--state") cfg.state_path = v;
    else if (a == "--locale") cfg.locale = v;
    else return usage();
  }
  if (cfg.url.empty()) return usage();
  cfg.on_event = on_event;
  cfg.logger.min_level = verbose ? LogLevel::kDebug : LogLevel::kWarning;
  cfg.logger.sink = [](LogLevel level, std::string_view msg) {
    std::lock_guard lock(g_out);
    std::fprintf(stderr, "[%s] %.*s\n", std::string(to_string(level)).c_str(), static_cast<int>(msg.size()), msg.data());
  };

  auto client = Client::create(cfg);
  if (!client) {
    std::fprintf(stderr, "terminal-chat: %s\n", client.status().to_string().c_str());
    return 1;
  }
  Client& c = **client;
  if (c.pending() > 0) print("-- " + std::to_string(c.pending()) + " message(s) from last time will be sent");
  if (auto st = c.start(); !st) {
    std::fprintf(stderr, "terminal-chat: %s\n", st.to_string().c_str());
    return 1;
  }
  std::string line;
  bool eof = true;
  while (!refused() && std::getline(std::cin, line)) {
    if (line == "/quit") {
      eof = false;
      break;
    }
    if (line == "/read") {
      (void)c.mark_read(c.last_seq());
      continue;
    }
    if (line.empty()) continue;
    std::optional<protocol::BotOption> picked;
    {
      std::lock_guard lock(g_options_mu);
      const auto n = samples::typed_number(line);  // "2" or, from a Japanese input method, "２"
      if (n && *n >= 1 && *n <= g_options.size()) {
        picked = g_options[*n - 1];
        g_options.clear();
      }
    }
    {
      std::lock_guard lock(g_answer_mu);  // before the ack can come
      auto id = picked ? c.choose(*picked) : c.send(line);
      if (!id) {
        print("!! " + id.status().to_string());
        continue;
      }
      g_last_id = *id;
      g_last_seq = 0;
      g_answered = false;
    }
  }
  if (eof && !refused()) {
    // Input piped in, or Ctrl-D: the answer to the last message is shown before the end.
    std::unique_lock lock(g_answer_mu);
    g_answer_cv.wait_for(lock, std::chrono::seconds(10), [] { return g_answered || g_refused; });
  }
  Status st = c.close(5000);
  if (refused()) {
    std::fprintf(stderr, "terminal-chat: the hub refused the conversation (see above)\n");
    return 1;
  }
  if (!st) {
    std::fprintf(stderr, "terminal-chat: %s\n", st.to_string().c_str());
    return st.code() == ErrorCode::kDeadlineExceeded ? 3 : 1;
  }
  return 0;
}
