// madoguchi::AgentClient and madoguchi::Client together against the real hub: the
// madoguchi-hub executable runs as a child process (a temporary SQLite store, agents sato and
// suzuki), so that it can be killed and restarted under both clients; and the terminal-agent
// sample driven through a pipe.
//
// Callbacks only record events; every assertion is made on the test thread after waiting
// (with a generous timeout) for the events it needs.
#include <madoguchi/agent_client.hpp>
#include <madoguchi/client.hpp>
#include <madoguchi/store.hpp>

#include <doctest/doctest.h>

#include "sdk/live_chat_support.hpp"
#include "temp_dir.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef MDG_TERMINAL_AGENT_EXE  // samples not built: the pipe test fails and says so
#define MDG_TERMINAL_AGENT_EXE "terminal-agent (not built: configure with MDG_BUILD_SAMPLES=ON)"
#endif

using namespace madoguchi;
using namespace std::chrono_literals;
using mdg_test::ack_of;
using mdg_test::agent_config;
using mdg_test::answer_to;
using mdg_test::check_each_seq_once;
using mdg_test::count;
using mdg_test::find;
using mdg_test::HubProcess;
using mdg_test::is_bot;
using mdg_test::is_numbered;
using mdg_test::make_client;
using mdg_test::seq_counts;
using mdg_test::state_is;
using mdg_test::visitor_config;
using AKind = AgentEvent::Kind;
using VKind = ClientEvent::Kind;
using VisitorRecorder = mdg_test::Recorder<ClientEvent>;
using AgentRecorder = mdg_test::Recorder<AgentEvent>;

namespace {

const std::string kHumanJa = "担当者と話したい";
const std::string kAngryEn = "This is ridiculous, refund me immediately!!!";

struct TempDir : mdg_test::TempDir {
  TempDir() : mdg_test::TempDir("madoguchi-agent-test") {}
};

// A visitor connected to the hub, with its events.
struct Visitor {
  VisitorRecorder rec;
  std::unique_ptr<Client> client;

  Visitor(const HubProcess& hub, const std::string& state_path = {}, std::map<std::string, std::string> attrs = {},
          std::string locale = "ja") {
    auto cfg = visitor_config(hub.url(), state_path, rec);
    for (auto& [k, v] : attrs) cfg.visitor[k] = v;
    cfg.locale = std::move(locale);
    client = make_client(std::move(cfg));
    REQUIRE(client->start());
  }

  // Sends `text` and waits for its ack and the bot's reply after it; returns the reply.
  protocol::Frame ask(const std::string& text) {
    auto id = client->send(text);
    REQUIRE_MESSAGE(id.is_ok(), id.status().to_string());
    long bot = -1;
    REQUIRE_MESSAGE(rec.wait([&](const auto& evs) {
      bot = answer_to(evs, *id);
      return bot >= 0;
    }),
                    "no answer to " << text);
    return rec.events()[static_cast<std::size_t>(bot)].frame;
  }

  // Waits for the event `name` (after index `from`) and returns it.
  protocol::Frame event(const std::string& name, long from = 0) {
    auto is = [&](const ClientEvent& e) { return e.kind == VKind::kEvent && e.frame.event == name; };
    REQUIRE_MESSAGE(rec.wait([&](const auto& evs) { return find(evs, is, from) >= 0; }), "no " << name << " event");
    auto evs = rec.events();
    return evs[static_cast<std::size_t>(find(evs, is, from))].frame;
  }

  // How many times the message with client id `id` reached this visitor.
  long received(const std::string& id) {
    return count(rec.events(), [&](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.id == id; });
  }
};

std::string decision(const protocol::Frame& bot_message) {
  const std::string& j = bot_message.bot_json;
  auto at = j.find("\"decision\":\"");
  if (at == std::string::npos) return {};
  at += 12;
  return j.substr(at, j.find('"', at) - at);
}

auto conversation_of(const std::string& c) {
  return [c](const AgentEvent& e) { return e.kind == AKind::kConversation && e.frame.conversation == c; };
}
auto event_in(const std::string& c, const std::string& name) {
  return [c, name](const AgentEvent& e) {
    return e.kind == AKind::kEvent && e.frame.conversation == c && e.frame.event == name;
  };
}
auto error_of(protocol::ErrorKind kind) {
  return [kind](const auto& e) { return e.kind == std::decay_t<decltype(e)>::Kind::kError && e.frame.error == kind; };
}

// Waits for the first event matching `pred` and returns a copy of it.
template <class Event, class Pred>
Event wait_for(mdg_test::Recorder<Event>& rec, Pred pred, const char* what) {
  REQUIRE_MESSAGE(rec.wait([&](const auto& evs) { return find(evs, pred) >= 0; }), "waited in vain for " << std::string(what));
  auto evs = rec.events();
  return evs[static_cast<std::size_t>(find(evs, pred))];
}

// The last queue an agent received.
std::vector<QueueEntry> last_queue(const std::vector<AgentEvent>& evs) {
  for (auto it = evs.rbegin(); it != evs.rend(); ++it) {
    if (it->kind == AKind::kQueue) return it->queue;
  }
  return {};
}

const QueueEntry* entry_of(const std::vector<QueueEntry>& queue, const std::string& c) {
  auto it = std::find_if(queue.begin(), queue.end(), [&](const QueueEntry& q) { return q.conversation == c; });
  return it == queue.end() ? nullptr : &*it;
}

// Every (conversation, seq) an agent was given as a message, event or ack, with how often.
std::map<std::pair<std::string, std::int64_t>, int> agent_seqs(const std::vector<AgentEvent>& evs) {
  std::map<std::pair<std::string, std::int64_t>, int> seen;
  for (const auto& e : evs) {
    if (is_numbered(e)) ++seen[{e.frame.conversation, *e.frame.seq}];
  }
  return seen;
}

void check_each_once(const std::map<std::pair<std::string, std::int64_t>, int>& seen) {
  for (const auto& [key, n] : seen) {
    CAPTURE(key.first);
    CAPTURE(key.second);
    CHECK(n == 1);
  }
}

// How many times the store holds agent messages with client id `id` in `conversation`.
int stored_count(const std::string& store_path, const std::string& conversation, const std::string& id) {
  auto msgs = mdg_test::stored_messages(store_path, conversation);
  return static_cast<int>(std::count_if(msgs.begin(), msgs.end(), [&](const hub::StoredMessage& m) {
    return m.kind == "message" && m.client_id == id;
  }));
}

std::unique_ptr<AgentClient> start_agent(const HubProcess& hub, const std::string& name, const std::string& password,
                                         AgentRecorder& rec) {
  auto agent = make_client(agent_config(hub.agent_url(), name, password, rec));
  REQUIRE(agent->start());
  wait_for(rec, [](const AgentEvent& e) { return e.kind == AKind::kWelcome; }, "welcome");
  return agent;
}

}  // namespace

TEST_SUITE("sdk.agent_client") {
  TEST_CASE("agent client: the bot answers, clarifies and hands off, then agents take, reply, transfer, hand back and close") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));

    // Visitor A (hello locale ja): answers to a Japanese and an English question, a
    // clarification, then a request for a person.
    Visitor a(hub, "", {{"plan", "gold"}});
    auto ja = a.ask("送料はいくらですか");
    CHECK(decision(ja) == "answer");
    CHECK(ja.bot_json.find("\"entry\":\"shipping-fee\"") != std::string::npos);
    auto en = a.ask("How much is shipping?");
    CHECK(decision(en) == "answer");
    CHECK(en.bot_json.find("\"entry\":\"shipping-fee\"") != std::string::npos);
    CHECK(en.text.find("Shipping is") == 0);  // the hello's locale only fills in: English in, English out
    auto vague = a.ask("支払いについて");
    CAPTURE(vague.bot_json);
    CHECK(decision(vague) == "clarify");
    CHECK(vague.bot_json.find("\"options\":[{\"label\":") != std::string::npos);
    CHECK(vague.bot_json.find("\"entry\":\"payment-credit-card\"") != std::string::npos);
    auto human = a.ask(kHumanJa);
    CHECK(decision(human) == "handoff");
    auto started = a.event("handoff_started");
    CHECK(started.data_json.find("visitor asked for a person") != std::string::npos);
    const std::string conv_a = a.client->conversation();

    // Visitor B (hello locale en): an answer in English, then an angry message hands off on
    // severity, after retrieval (so with candidates).
    Visitor b(hub, "", {}, "en");
    auto en_b = b.ask("How much is shipping?");
    CHECK(decision(en_b) == "answer");
    CHECK(en_b.bot_json.find("\"entry\":\"shipping-fee\"") != std::string::npos);
    CHECK(en_b.text.find("Shipping is") == 0);
    CHECK(decision(b.ask(kAngryEn)) == "handoff");
    b.event("handoff_started");
    const std::string conv_b = b.client->conversation();

    // sato sees both in the queue, the more urgent first.
    AgentRecorder rs;
    auto sato = start_agent(hub, "sato", "pw", rs);
    REQUIRE(rs.wait([&](const auto& evs) {
      auto q = last_queue(evs);
      return entry_of(q, conv_a) && entry_of(q, conv_b);
    }));
    auto queue = last_queue(rs.events());
    const QueueEntry* qa = entry_of(queue, conv_a);
    const QueueEntry* qb = entry_of(queue, conv_b);
    REQUIRE(qa);
    REQUIRE(qb);
    CHECK(qa->state == "waiting");
    CHECK(qa->reason == "visitor asked for a person");
    CHECK(qa->locale == "ja");
    CHECK(qa->agent.empty());
    CHECK(qa->since > 0);
    CHECK(qb->reason.find("high severity") == 0);
    CHECK(qb->locale == "en");
    CHECK(qb->priority > qa->priority);
    CHECK(qb - queue.data() < qa - queue.data());  // highest priority first
    CHECK(sato->queue().size() == queue.size());

    // Taking A: the package and the stored messages.
    REQUIRE(sato->take(conv_a));
    auto taken = wait_for(rs, conversation_of(conv_a), "conversation A");
    CHECK_FALSE(taken.resumed);
    CHECK(taken.frame.state == "agent");
    CHECK(taken.handoff.reason == "visitor asked for a person");
    CHECK(taken.handoff.locale == "ja");
    CHECK(taken.handoff.rules_fired == std::vector<std::string>{"human-request"});
    // A rule handed off, and the bot still ranked the message: its guesses come along.
    CHECK(taken.frame.handoff_json.find("\"candidates\":[") != std::string::npos);
    for (const auto& c : taken.handoff.candidates) {
      CHECK_FALSE(c.entry.empty());
      CHECK(c.confidence >= 0);
      CHECK(c.confidence <= 1);
    }
    CHECK(taken.handoff.visitor["customer_id"] == "c-42");
    CHECK(taken.handoff.visitor["plan"] == "gold");
    CHECK(taken.frame.handoff_json.find("\"triage\"") != std::string::npos);
    auto turn_is = [&](const std::string& role, const std::string& text) {
      return std::any_of(taken.handoff.transcript.begin(), taken.handoff.transcript.end(),
                         [&](const HandoffPackage::Turn& t) { return t.role == role && t.text == text; });
    };
    CHECK(turn_is("visitor", "送料はいくらですか"));
    CHECK(turn_is("visitor", kHumanJa));
    CHECK(turn_is("bot", human.text));
    // The stored messages: every visitor message and bot answer, in seq order.
    std::vector<std::string> visitor_texts;
    std::int64_t previous = 0;
    for (const auto& f : taken.transcript) {
      REQUIRE(f.seq);
      CHECK(*f.seq > previous);
      previous = *f.seq;
      CHECK(f.conversation == conv_a);
      if (f.type == protocol::FrameType::kMessage && f.from == "visitor") visitor_texts.push_back(f.text);
    }
    CHECK(visitor_texts == std::vector<std::string>{"送料はいくらですか", "How much is shipping?", "支払いについて", kHumanJa});
    CHECK(std::any_of(taken.transcript.begin(), taken.transcript.end(),
                      [&](const protocol::Frame& f) { return f.seq == human.seq && f.from == "bot"; }));
    CHECK(a.event("agent_joined").data_json.find("\"sato\"") != std::string::npos);
    CHECK(sato->conversations() == std::vector<std::string>{conv_a});

    // Taking B: the bot's candidates with their scores, and the triage that sent it.
    REQUIRE(sato->take(conv_b));
    auto taken_b = wait_for(rs, conversation_of(conv_b), "conversation B");
    const HandoffPackage& pb = taken_b.handoff;
    CHECK(pb.reason.find("high severity") == 0);
    CHECK(pb.severity > 0.5);
    CHECK_FALSE(pb.signals.empty());
    REQUIRE(pb.candidates.size() >= 2);
    CHECK_FALSE(pb.candidates[0].entry.empty());
    CHECK(pb.candidates[0].confidence > 0);
    CHECK(pb.candidates[0].confidence <= 1);
    CHECK(pb.candidates[0].confidence >= pb.candidates[1].confidence);  // best first
    CHECK(pb.candidates[0].score != 0);
    CHECK(std::any_of(pb.transcript.begin(), pb.transcript.end(),
                      [](const HandoffPackage::Turn& t) { return t.role == "visitor" && t.text == kAngryEn; }));

    // sato's reply reaches the visitor exactly once, with the ack's seq.
    auto reply = sato->send(conv_a, "担当の佐藤です。ご用件をどうぞ。");
    REQUIRE(reply.is_ok());
    auto reply_ack = wait_for(rs, ack_of(*reply), "ack of sato's reply");
    CHECK(reply_ack.frame.conversation == conv_a);
    CHECK_FALSE(reply_ack.frame.duplicate);
    auto from_sato = wait_for(a.rec, [&](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.id == *reply; },
                              "sato's reply at the visitor");
    CHECK(from_sato.frame.from == "agent");
    CHECK(from_sato.frame.agent == "sato");
    CHECK(from_sato.frame.seq == reply_ack.frame.seq);
    CHECK(sato->pending() == 0);

    // The visitor answers; typing and read go both ways.
    REQUIRE(sato->typing(conv_a, true));
    wait_for(a.rec, [](const ClientEvent& e) { return e.kind == VKind::kTyping && e.frame.from == "agent"; }, "typing");
    auto v_msg = a.client->send("注文の状況を知りたいです");
    REQUIRE(v_msg.is_ok());
    auto at_sato = wait_for(rs, [&](const AgentEvent& e) { return e.kind == AKind::kMessage && e.frame.id == *v_msg; },
                            "the visitor's message at sato");
    CHECK(at_sato.frame.conversation == conv_a);
    CHECK(at_sato.frame.from == "visitor");
    REQUIRE(sato->mark_read(conv_a, *at_sato.frame.seq));
    wait_for(a.rec, [&](const ClientEvent& e) { return e.kind == VKind::kRead && e.frame.seq == at_sato.frame.seq; },
             "read receipt");

    // Transfer to suzuki: the visitor and both agents get the event; suzuki gets the package.
    AgentRecorder rz;
    auto suzuki = start_agent(hub, "suzuki", "pw2", rz);
    REQUIRE(sato->transfer(conv_a, "suzuki"));
    auto moved = a.event("transferred");
    CHECK(moved.data_json.find("\"from\":\"sato\"") != std::string::npos);
    CHECK(moved.data_json.find("\"to\":\"suzuki\"") != std::string::npos);
    auto transferred = wait_for(rz, event_in(conv_a, "transferred"), "transferred at suzuki");
    CHECK(transferred.data.from == "sato");
    CHECK(transferred.data.to == "suzuki");
    auto at_suzuki = wait_for(rz, conversation_of(conv_a), "conversation A at suzuki");
    CHECK(at_suzuki.handoff.reason == "visitor asked for a person");
    CHECK(std::any_of(at_suzuki.transcript.begin(), at_suzuki.transcript.end(),
                      [&](const protocol::Frame& f) { return f.id == *reply && f.agent == "sato"; }));
    wait_for(rs, event_in(conv_a, "transferred"), "transferred at sato");
    CHECK(sato->conversations() == std::vector<std::string>{conv_b});
    CHECK(suzuki->conversations() == std::vector<std::string>{conv_a});

    // sato may no longer write there: refused, and the message leaves the outbox.
    auto late = sato->send(conv_a, "まだ担当です");
    REQUIRE(late.is_ok());
    auto refused = wait_for(rs, error_of(protocol::ErrorKind::kForbidden), "forbidden");
    CHECK(refused.frame.id == *late);
    CHECK(mdg_test::eventually([&] { return sato->pending() == 0; }));

    auto reply2 = suzuki->send(conv_a, "鈴木が引き継ぎました。");
    REQUIRE(reply2.is_ok());
    wait_for(a.rec, [&](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.id == *reply2; },
             "suzuki's reply at the visitor");

    // Hand back: the bot answers again.
    REQUIRE(suzuki->hand_back(conv_a));
    auto back = a.event("handed_back");
    CHECK(back.data_json.find("\"suzuki\"") != std::string::npos);
    wait_for(rz, event_in(conv_a, "handed_back"), "handed_back at suzuki");
    CHECK(suzuki->conversations().empty());
    long mark = static_cast<long>(a.rec.events().size());
    auto again = a.ask("送料はいくらですか");
    CHECK(decision(again) == "answer");
    CHECK(again.bot_json.find("\"entry\":\"shipping-fee\"") != std::string::npos);
    CHECK(find(a.rec.events(), is_bot, mark) >= 0);

    // Close B.
    REQUIRE(sato->close_conversation(conv_b));
    auto closed = b.event("conversation_closed");
    CHECK(closed.data_json.find("\"by\":\"agent\"") != std::string::npos);
    wait_for(rs, event_in(conv_b, "conversation_closed"), "conversation_closed at sato");
    CHECK(sato->conversations().empty());

    CHECK(sato->close(5000));
    CHECK(suzuki->close(5000));
    CHECK(a.client->close(5000));
    CHECK(b.client->close(5000));
    hub.kill(SIGTERM);

    // Nothing came twice, to anyone; every reply is stored once.
    check_each_once(agent_seqs(rs.events()));
    check_each_once(agent_seqs(rz.events()));
    check_each_seq_once(seq_counts(a.rec.events()));
    check_each_seq_once(seq_counts(b.rec.events()));
    CHECK(a.received(*reply) == 1);
    CHECK(a.received(*reply2) == 1);
    CHECK(a.received(*late) == 0);
    CHECK(stored_count(dir.file("hub.db"), conv_a, *reply) == 1);
    CHECK(stored_count(dir.file("hub.db"), conv_a, *late) == 0);
    // Callbacks ran on each client's network thread, never on this one.
    CHECK(rs.threads().size() == 1);
    CHECK(rs.threads().count(std::this_thread::get_id()) == 0);
  }

  TEST_CASE("agent client: a second hand-off's transcript has what was said to the person, and no answer the visitor never got") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Visitor v(hub);

    // Two messages at once: the first asks for a person, so the bot must not answer the
    // second (it is the person's now), not even into its memory of the conversation.
    auto human = v.client->send(kHumanJa);
    auto second = v.client->send("送料はいくらですか");
    REQUIRE(human.is_ok());
    REQUIRE(second.is_ok());
    v.event("handoff_started");
    const std::string conv = v.client->conversation();
    auto evs = v.rec.events();
    const long first_bot = find(evs, is_bot);
    REQUIRE(first_bot >= 0);
    const std::string handoff_text = evs[static_cast<std::size_t>(first_bot)].frame.text;
    CHECK(decision(evs[static_cast<std::size_t>(first_bot)].frame) == "handoff");

    // With the person: the visitor writes, the agent replies, then hands back to the bot.
    AgentRecorder rs;
    auto sato = start_agent(hub, "sato", "pw", rs);
    REQUIRE(sato->take(conv));
    wait_for(rs, conversation_of(conv), "the conversation at sato");
    auto said = v.client->send("注文の状況を知りたいです");
    REQUIRE(said.is_ok());
    wait_for(rs, [&](const AgentEvent& e) { return e.kind == AKind::kMessage && e.frame.id == *said; },
             "the visitor's message at sato");
    auto reply = sato->send(conv, "担当の佐藤です。");
    REQUIRE(reply.is_ok());
    wait_for(v.rec, [&](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.id == *reply; },
             "sato's reply at the visitor");
    REQUIRE(sato->hand_back(conv));
    v.event("handed_back");

    // A person again: the new package has the whole conversation, in order.
    const long mark = static_cast<long>(rs.events().size());
    auto again = v.ask(kHumanJa);
    CHECK(decision(again) == "handoff");
    REQUIRE(sato->take(conv));
    REQUIRE(rs.wait([&](const auto& es) { return find(es, conversation_of(conv), mark) >= 0; }));
    auto agent_evs = rs.events();
    const HandoffPackage& package = agent_evs[static_cast<std::size_t>(find(agent_evs, conversation_of(conv), mark))].handoff;
    std::vector<std::pair<std::string, std::string>> turns;
    for (const auto& t : package.transcript) turns.emplace_back(t.role, t.text);
    const std::vector<std::pair<std::string, std::string>> expected{
        {"visitor", kHumanJa},           {"bot", handoff_text},     {"visitor", "送料はいくらですか"},
        {"visitor", "注文の状況を知りたいです"}, {"agent", "担当の佐藤です。"}, {"visitor", kHumanJa},
        {"bot", again.text}};
    CHECK(turns == expected);
    // The bot answered nothing but the two requests for a person.
    CHECK(count(v.rec.events(), is_bot) == 2);

    CHECK(sato->close(5000));
    CHECK(v.client->close(5000));
  }

  TEST_CASE("agent client: a wrong password is refused once, kClosed, no reconnecting") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    AgentRecorder rec;
    auto agent = make_client(agent_config(hub.agent_url(), "sato", "wrong", rec));
    REQUIRE(agent->start());
    REQUIRE(rec.wait([](const auto& evs) { return find(evs, state_is(ConnectionState::kClosed)) >= 0; }));
    auto evs = rec.events();
    CHECK(find(evs, error_of(protocol::ErrorKind::kUnauthorized)) >= 0);
    CHECK(find(evs, [](const AgentEvent& e) { return e.kind == AKind::kWelcome; }) < 0);
    CHECK(agent->state() == ConnectionState::kClosed);
    auto take = agent->take("c_00000000000000000000000000");
    CHECK(take.code() == ErrorCode::kClosed);
    CHECK(take.message().find("unauthorized") != std::string::npos);
    CHECK(agent->send("c_00000000000000000000000000", "hello").status().code() == ErrorCode::kClosed);
    CHECK(agent->typing("c_00000000000000000000000000", true));  // ignored
    CHECK(agent->close(0));
    CHECK(count(rec.events(), state_is(ConnectionState::kConnecting)) == 1);  // no retry
  }

  TEST_CASE("agent client: a hello the hub makes wait is said again after its retry_after_ms, not at each back-off") {
    // Five wrong passwords for sato from here make the next try wait a second (docs/hub.md):
    // the client with the right one is turned away once, then gets in, without retrying
    // every 50 ms of its back-off meanwhile.
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    for (int i = 0; i < 5; ++i) {
      AgentRecorder wrong;
      auto agent = make_client(agent_config(hub.agent_url(), "sato", "wrong", wrong));
      REQUIRE(agent->start());
      REQUIRE(wrong.wait([](const auto& evs) { return find(evs, state_is(ConnectionState::kClosed)) >= 0; }));
    }
    AgentRecorder rec;
    auto agent = make_client(agent_config(hub.agent_url(), "sato", "pw", rec));
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(agent->start());
    wait_for(rec, [](const AgentEvent& e) { return e.kind == AKind::kWelcome; }, "welcome");
    CHECK(std::chrono::steady_clock::now() - start >= 900ms);  // the wait was 1 s from the last failure
    auto evs = rec.events();
    CHECK(count(evs, error_of(protocol::ErrorKind::kRateLimited)) == 1);
    CHECK(count(evs, state_is(ConnectionState::kConnecting)) == 2);
    CHECK(agent->close(5000));
  }

  TEST_CASE("agent client: configuration and calls the hub would refuse are refused up front") {
    TempDir dir;
    AgentRecorder rec;
    auto cfg = agent_config("ws://127.0.0.1:9", "sato", "pw", rec);
    for (const char* url : {"http://127.0.0.1:8080/v1/agent", "ws://", "ws://host:x/"}) {
      CAPTURE(url);
      cfg.url = url;
      CHECK(AgentClient::create(cfg).status().code() == ErrorCode::kInvalidArgument);
    }
    cfg.url = "ws://127.0.0.1:9";
    cfg.agent = "";
    CHECK(AgentClient::create(cfg).status().code() == ErrorCode::kInvalidArgument);
    cfg.agent = "sato";
    cfg.password = "";
    CHECK(AgentClient::create(cfg).status().code() == ErrorCode::kInvalidArgument);
    cfg.password = "pw";
    cfg.backoff_ms = {};
    CHECK(AgentClient::create(cfg).status().code() == ErrorCode::kInvalidArgument);
    cfg.backoff_ms = {100};

    // A visitor's state file is not an agent's.
    const std::string visitor_state = dir.file("visitor.json");
    std::ofstream(visitor_state, std::ios::binary) << R"({"token":"v1.x","outbox":[{"id":"m-1","text":"hi"}]})";
    cfg.state_path = visitor_state;
    auto wrong_file = AgentClient::create(cfg);
    CHECK(wrong_file.status().code() == ErrorCode::kInvalidArgument);
    CHECK(wrong_file.status().message().find(visitor_state) != std::string::npos);

    // An agent's outbox survives in its state file, each reply with its conversation.
    cfg.state_path = dir.file("agent.json");
    std::string id;
    {
      auto agent = make_client(cfg);
      CHECK(agent->send("", "x").status().code() == ErrorCode::kInvalidArgument);
      CHECK(agent->send("c_1", "").status().code() == ErrorCode::kInvalidArgument);
      CHECK(agent->send("c_1", "\xff\xfe").status().code() == ErrorCode::kInvalidArgument);
      CHECK(agent->take("").code() == ErrorCode::kInvalidArgument);
      CHECK(agent->transfer("c_1", "").code() == ErrorCode::kInvalidArgument);
      CHECK(agent->mark_read("c_1", -1).code() == ErrorCode::kInvalidArgument);
      CHECK(agent->take("c_1").code() == ErrorCode::kUnavailable);  // not connected
      CHECK(agent->typing("c_1", true));                             // ignored while offline
      auto sent = agent->send("c_1", "お待たせしました");
      REQUIRE(sent.is_ok());
      id = *sent;
      CHECK(agent->pending() == 1);
      CHECK(agent->close(0).code() == ErrorCode::kDeadlineExceeded);
    }
    CHECK(mdg_test::read_file(cfg.state_path).find("\"id\":\"" + id + "\",\"conversation\":\"c_1\"") != std::string::npos);
    {
      auto reopened = make_client(cfg);
      CHECK(reopened->pending() == 1);
    }
    // ...and not a visitor's: its replies would go out as the visitor's own messages.
    VisitorRecorder visitor_rec;
    auto as_visitor = Client::create(visitor_config("ws://127.0.0.1:9/v1/visitor", cfg.state_path, visitor_rec));
    CHECK(as_visitor.status().code() == ErrorCode::kInvalidArgument);
    CHECK(as_visitor.status().message().find("an agent client's state file") != std::string::npos);
  }

  TEST_CASE("agent client: the hub is killed and restarted, the agent comes back, nothing twice, the offline reply once") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    const int port = hub.port();

    Visitor v(hub, dir.file("visitor.json"));
    CHECK(decision(v.ask(kHumanJa)) == "handoff");
    const std::string conv = v.client->conversation();
    AgentRecorder rs;
    auto sato = start_agent(hub, "sato", "pw", rs);
    REQUIRE(sato->take(conv));
    wait_for(rs, conversation_of(conv), "conversation");
    auto r1 = sato->send(conv, "担当の佐藤です。");
    REQUIRE(r1.is_ok());
    wait_for(v.rec, [&](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.id == *r1; }, "first reply");
    wait_for(rs, ack_of(*r1), "ack of the first reply");  // the visitor may get it before the agent's ack

    hub.kill(SIGKILL);
    REQUIRE(rs.wait([](const auto& evs) { return find(evs, state_is(ConnectionState::kDisconnected)) >= 0; }));
    REQUIRE(v.rec.wait([](const auto& evs) { return find(evs, state_is(ConnectionState::kDisconnected)) >= 0; }));
    // Both write while the hub is down.
    auto r2 = sato->send(conv, "ただいま確認しております。");
    REQUIRE(r2.is_ok());
    CHECK(sato->pending() == 1);
    CHECK(sato->take(conv).code() == ErrorCode::kUnavailable);
    auto v2 = v.client->send("まだですか");
    REQUIRE(v2.is_ok());

    hub.start(dir.file("hub.db"), port, dir.file("hub.log"));
    // The offline reply reaches the visitor; the visitor's offline message reaches the agent;
    // the agent took the conversation again by itself.
    wait_for(v.rec, [&](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.id == *r2; }, "offline reply");
    wait_for(rs, [&](const AgentEvent& e) { return e.kind == AKind::kMessage && e.frame.id == *v2; }, "offline visitor message");
    auto resumed = wait_for(rs, [&](const AgentEvent& e) { return conversation_of(conv)(e) && e.resumed; }, "resumed");
    CHECK(std::any_of(resumed.transcript.begin(), resumed.transcript.end(),
                      [&](const protocol::Frame& f) { return f.id == *r1; }));
    wait_for(rs, ack_of(*r2), "ack of the offline reply");
    CHECK(sato->pending() == 0);
    CHECK(sato->conversations() == std::vector<std::string>{conv});
    CHECK(count(rs.events(), state_is(ConnectionState::kConnected)) == 2);

    // Still the agent's: a reply after the restart goes through too.
    auto r3 = sato->send(conv, "確認できました。");
    REQUIRE(r3.is_ok());
    wait_for(v.rec, [&](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.id == *r3; }, "reply after restart");

    CHECK(sato->close(5000));
    CHECK(v.client->close(5000));
    hub.kill(SIGTERM);
    auto evs = rs.events();
    check_each_once(agent_seqs(evs));
    CHECK(count(evs, [&](const AgentEvent& e) { return e.kind == AKind::kMessage && e.frame.id == *v2; }) == 1);
    CHECK(count(evs, ack_of(*r2)) == 1);
    check_each_seq_once(seq_counts(v.rec.events()));
    for (const auto& id : {*r1, *r2, *r3}) {
      CAPTURE(id);
      CHECK(v.received(id) == 1);
      CHECK(stored_count(dir.file("hub.db"), conv, id) == 1);
    }
  }

  TEST_CASE("agent client: after a reconnect, what was missed comes before what arrived live during the re-take") {
    // The agent's callbacks run on its network thread, so blocking in one holds the client
    // still. While the hub restarts, the agent is held until the visitor's message sent
    // meanwhile is stored (so that it is missed); at the next welcome, until a second message
    // is stored, which the hub then sends the agent live, before the answer to its re-take.
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    const int port = hub.port();
    Visitor v(hub);
    CHECK(decision(v.ask(kHumanJa)) == "handoff");
    const std::string conv = v.client->conversation();

    std::promise<std::string> missed_promise;
    std::shared_future<std::string> missed_id = missed_promise.get_future().share();
    std::string live_id;
    std::atomic<int> phase{0};  // 1: the hub is down; 2: the agent is held until missed_id is stored
    AgentRecorder rs;
    auto cfg = agent_config(hub.agent_url(), "sato", "pw", rs);
    cfg.on_event = [&](const AgentEvent& e) {
      rs(e);
      if (e.kind == AKind::kState && e.state == ConnectionState::kDisconnected && phase == 1) {
        phase = 2;
        const std::string id = missed_id.get();
        CHECK(v.rec.wait([&](const auto& evs) { return find(evs, ack_of(id)) >= 0; }));
      } else if (e.kind == AKind::kWelcome && phase == 2) {
        phase = 3;
        auto sent = v.client->send("もしもし、聞こえますか");
        REQUIRE(sent.is_ok());
        live_id = *sent;
        CHECK(v.rec.wait([&](const auto& evs) { return find(evs, ack_of(live_id)) >= 0; }));
      }
    };
    auto sato = make_client(std::move(cfg));
    REQUIRE(sato->start());
    wait_for(rs, [](const AgentEvent& e) { return e.kind == AKind::kWelcome; }, "welcome");
    REQUIRE(sato->take(conv));
    wait_for(rs, conversation_of(conv), "conversation");

    phase = 1;
    hub.kill(SIGKILL);
    auto missed = v.client->send("まだですか");
    REQUIRE(missed.is_ok());
    missed_promise.set_value(*missed);
    hub.start(dir.file("hub.db"), port, dir.file("hub.log"));
    wait_for(rs, [&](const AgentEvent& e) { return e.kind == AKind::kMessage && e.frame.id == *missed; }, "missed message");
    wait_for(rs, [&](const AgentEvent& e) { return e.kind == AKind::kMessage && e.frame.id == live_id; }, "live message");
    CHECK(phase == 3);

    // From the second welcome on: the re-take's answer, then the frames by seq.
    auto evs = rs.events();
    const long welcome2 = find(evs, [](const AgentEvent& e) { return e.kind == AKind::kWelcome; },
                               find(evs, [](const AgentEvent& e) { return e.kind == AKind::kWelcome; }) + 1);
    REQUIRE(welcome2 > 0);
    const long resumed = find(evs, [&](const AgentEvent& e) { return conversation_of(conv)(e) && e.resumed; }, welcome2);
    REQUIRE(resumed > 0);
    std::vector<std::int64_t> seqs;
    for (long i = welcome2; i < static_cast<long>(evs.size()); ++i) {
      const auto& e = evs[static_cast<std::size_t>(i)];
      if ((e.kind == AKind::kMessage || e.kind == AKind::kEvent) && e.frame.conversation == conv && e.frame.seq) {
        CHECK_MESSAGE(i > resumed, "seq " << *e.frame.seq << " came before the re-take's answer");
        seqs.push_back(*e.frame.seq);
      }
    }
    CHECK(seqs.size() >= 2);
    CHECK(std::is_sorted(seqs.begin(), seqs.end()));
    check_each_once(agent_seqs(evs));
    CHECK(sato->close(5000));
    CHECK(v.client->close(5000));
    hub.kill(SIGTERM);
  }

  TEST_CASE("agent client: terminal-agent through a pipe runs commands written before it connected") {
    // A script's commands arrive at once: "take 1" once came before the queue and failed.
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Visitor v(hub, "", {});
    CHECK(decision(v.ask(kHumanJa)) == "handoff");
    const std::string conv = v.client->conversation();
    mdg_test::ChildProcess agent;
    agent.spawn({MDG_TERMINAL_AGENT_EXE, "--url", hub.agent_url(), "--agent", "sato", "--password", "pw"},
                dir.file("agent.log"), true);
    agent.write("take 1\nお待たせしました。\n");
    auto output = [&] { return agent.output() + "\n--- its log:\n" + mdg_test::read_file(dir.file("agent.log")); };
    REQUIRE_MESSAGE(agent.read_until("== replying in " + conv, 60s), output());
    auto reply = wait_for(v.rec, [](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.from == "agent"; },
                          "the agent's reply");
    CHECK(reply.frame.text == "お待たせしました。");
  }

  TEST_CASE("agent client: terminal-agent through a pipe takes, replies and hands back") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Visitor v(hub, "", {{"plan", "gold"}});
    CHECK(decision(v.ask("送料はいくらですか")) == "answer");
    CHECK(decision(v.ask(kHumanJa)) == "handoff");
    const std::string conv = v.client->conversation();

    mdg_test::ChildProcess agent;
    agent.spawn({MDG_TERMINAL_AGENT_EXE, "--url", hub.agent_url(), "--agent", "sato", "--password", "pw"},
                dir.file("agent.log"), true);
    auto output = [&] { return agent.output() + "\n--- its log:\n" + mdg_test::read_file(dir.file("agent.log")); };
    // The queue, with the conversation, its priority, locale and reason.
    REQUIRE_MESSAGE(agent.read_until("1. " + conv + "  waiting  priority ", 60s), output());
    REQUIRE_MESSAGE(agent.read_until("ja  visitor asked for a person", 30s), output());

    std::size_t from = agent.output().size();
    agent.write("take 1\n");
    REQUIRE_MESSAGE(agent.read_until("== replying in " + conv, 30s, from), output());
    std::string package = agent.output().substr(from);
    CAPTURE(package);
    CHECK(package.find("reason:     visitor asked for a person") != std::string::npos);
    CHECK(package.find("triage:     severity ") != std::string::npos);
    CHECK(package.find("rules:      human-request") != std::string::npos);
    CHECK(package.find("candidates:") != std::string::npos);
    CHECK(package.find("visitor:    customer_id=c-42, plan=gold") != std::string::npos);
    CHECK(package.find("visitor> 送料はいくらですか") != std::string::npos);
    CHECK(package.find("visitor> " + kHumanJa) != std::string::npos);
    CHECK(package.find("bot> ") != std::string::npos);

    agent.write("お待たせしました。担当の佐藤です。\n");
    auto reply = wait_for(v.rec, [](const ClientEvent& e) { return e.kind == VKind::kMessage && e.frame.from == "agent"; },
                          "the agent's reply");
    CHECK(reply.frame.text == "お待たせしました。担当の佐藤です。");
    CHECK(reply.frame.agent == "sato");
    REQUIRE_MESSAGE(agent.read_until("-- delivered #" + std::to_string(*reply.frame.seq), 30s, from), output());

    from = agent.output().size();
    auto question = v.client->send("注文番号がわかりません");
    REQUIRE(question.is_ok());
    REQUIRE_MESSAGE(agent.read_until("[" + conv + "] #", 30s, from), output());
    REQUIRE_MESSAGE(agent.read_until("visitor> 注文番号がわかりません", 30s, from), output());

    from = agent.output().size();
    agent.write("/help\n");
    REQUIRE_MESSAGE(agent.read_until("/transfer NAME", 30s, from), output());

    agent.write("/back\n");
    v.event("handed_back");
    REQUIRE_MESSAGE(agent.read_until("-- handed_back", 30s, from), output());
    REQUIRE_MESSAGE(agent.read_until("== no current conversation", 30s, from), output());
    long mark = static_cast<long>(v.rec.events().size());
    CHECK(decision(v.ask("送料はいくらですか")) == "answer");
    CHECK(find(v.rec.events(), is_bot, mark) >= 0);

    agent.close_stdin();  // end of input: the program flushes and quits
    int status = agent.wait_exit(30s);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(v.received(reply.frame.id) == 1);
    CHECK(v.client->close(5000));
    hub.kill(SIGTERM);
  }
}
