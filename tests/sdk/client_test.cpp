// madoguchi::Client against a real hub: the madoguchi-hub executable runs as a child process
// (port 0, a temporary store), so that it can be killed and restarted under the client.
//
// Callbacks only record events; every assertion is made on the test thread after waiting
// (with a timeout) for the events it needs.
#include <madoguchi/client.hpp>
#include <madoguchi/store.hpp>

#include <doctest/doctest.h>

#include "sdk/live_chat_support.hpp"
#include "temp_dir.hpp"
#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace madoguchi;
using Kind = ClientEvent::Kind;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

// Generous: sanitizer builds are several times slower.
constexpr auto kWait = 30s;

// Every test's files live in a directory of their own.
struct TempDir : mdg_test::TempDir {
  TempDir() : mdg_test::TempDir("madoguchi-client-test") {}
};

using mdg_test::ack_of;
using mdg_test::answer_to;
using mdg_test::count;
using mdg_test::find;
using mdg_test::free_port;
using mdg_test::HubProcess;
using mdg_test::is_bot;
using mdg_test::make_client;
using mdg_test::state_is;
using mdg_test::visitor_config;
using Recorder = mdg_test::Recorder<ClientEvent>;

// The ack of `id`, then a bot reply after it.
bool answered(const std::vector<ClientEvent>& evs, const std::string& id) { return answer_to(evs, id) >= 0; }

// Visitor messages stored by the hub, by client id (read after the hub stopped).
std::map<std::string, int> stored_visitor_ids(const std::string& store_path, const std::string& conversation) {
  std::map<std::string, int> ids;
  for (const auto& m : mdg_test::stored_messages(store_path, conversation)) {
    if (m.kind == "message" && m.sender == "visitor") ++ids[m.client_id];
  }
  return ids;
}

// The ids in the outbox of a state file.
std::vector<std::string> outbox_ids(const std::string& state_path) {
  simdjson::dom::parser parser;
  simdjson::padded_string text(mdg_test::read_file(state_path));
  simdjson::dom::array outbox;
  REQUIRE(parser.parse(text)["outbox"].get_array().get(outbox) == simdjson::SUCCESS);
  std::vector<std::string> ids;
  for (auto m : outbox) {
    std::string_view id;
    REQUIRE(m["id"].get_string().get(id) == simdjson::SUCCESS);
    ids.emplace_back(id);
  }
  return ids;
}

}  // namespace

TEST_SUITE("sdk.client") {
  TEST_CASE("client: connects, asks, and gets the ack before the bot's answer") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Recorder rec;
    std::atomic<Client*> self{nullptr};
    std::mutex close_mu;
    std::vector<Status> close_from_callback;
    auto cfg = visitor_config(hub.url(), "", rec);
    cfg.on_event = [&](const ClientEvent& e) {
      if (e.kind == Kind::kWelcome && self.load()) {
        Status st = self.load()->close(0);  // refused: it would wait for itself
        std::lock_guard lock(close_mu);
        close_from_callback.push_back(st);
      }
      rec(e);
    };
    auto client = make_client(std::move(cfg));
    self = client.get();
    CHECK(client->state() == ConnectionState::kDisconnected);
    REQUIRE(client->start());
    CHECK(client->start().code() == ErrorCode::kInvalidArgument);
    REQUIRE(rec.wait([](const auto& seen) { return find(seen, state_is(ConnectionState::kConnected)) >= 0; }));
    CHECK(client->state() == ConnectionState::kConnected);
    CHECK(client->conversation().rfind("c_", 0) == 0);

    auto id = client->send("送料はいくらですか");
    REQUIRE_MESSAGE(id.is_ok(), id.status().to_string());
    CHECK(protocol::valid_client_id(*id));
    REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, *id); }));

    auto evs = rec.events();
    long ack = find(evs, ack_of(*id));
    long bot = find(evs, is_bot, ack + 1);
    CHECK(evs[static_cast<std::size_t>(ack)].frame.seq.has_value());
    CHECK_FALSE(evs[static_cast<std::size_t>(ack)].frame.duplicate);
    const auto& reply = evs[static_cast<std::size_t>(bot)].frame;
    CAPTURE(reply.bot_json);
    CHECK(reply.bot_json.find("\"entry\":\"shipping-fee\"") != std::string::npos);
    CHECK(reply.seq > evs[static_cast<std::size_t>(ack)].frame.seq);
    CHECK(count(evs, ack_of(*id)) == 1);
    CHECK(client->pending() == 0);

    // Callbacks ran on the network thread, never on this one.
    auto threads = rec.threads();
    CHECK(threads.size() == 1);
    CHECK(threads.count(std::this_thread::get_id()) == 0);
    {
      std::lock_guard lock(close_mu);
      REQUIRE(close_from_callback.size() == 1);
      CHECK(close_from_callback[0].code() == ErrorCode::kInvalidArgument);
    }
    CHECK(client->typing(true));
    CHECK(client->mark_read(*reply.seq));
    CHECK(client->mark_read(-1).code() == ErrorCode::kInvalidArgument);

    self = nullptr;
    CHECK(client->close(5000));
    CHECK(client->last_seq() == *reply.seq);  // delivered (the thread is joined: every callback returned)
    CHECK(client->state() == ConnectionState::kClosed);
    CHECK(client->send("もう一度").status().code() == ErrorCode::kClosed);
    CHECK(client->close(0));  // twice is fine
    CHECK(client->start().code() == ErrorCode::kClosed);
    REQUIRE(rec.wait([](const auto& seen) { return find(seen, state_is(ConnectionState::kClosed)) >= 0; }));
  }

  TEST_CASE("client: Dispatch::kPoll runs every event on the thread that polls") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Recorder rec;
    auto cfg = visitor_config(hub.url(), "", rec);
    cfg.dispatch = Dispatch::kPoll;
    auto client = make_client(std::move(cfg));
    REQUIRE(client->start());
    auto id = client->send("送料はいくらですか");
    REQUIRE(id.is_ok());
    // Nothing runs until this thread polls.
    auto deadline = std::chrono::steady_clock::now() + kWait;
    std::size_t ran = 0;
    while (!answered(rec.events(), *id) && std::chrono::steady_clock::now() < deadline) ran += client->poll(100);
    auto evs = rec.events();
    REQUIRE(answered(evs, *id));
    CHECK(ran == evs.size());
    CHECK(rec.threads() == std::set<std::thread::id>{std::this_thread::get_id()});
    CHECK(find(evs, state_is(ConnectionState::kConnected)) < find(evs, ack_of(*id)));
    CHECK(client->poll(0, 0) == 0);
    CHECK(client->close(5000));
    // The closing state change is queued too.
    while (client->poll(0) > 0) {
    }
    CHECK(find(rec.events(), state_is(ConnectionState::kClosed)) >= 0);
    CHECK(client->poll(-1) == 0);  // closed and drained: returns at once
  }

  TEST_CASE("client: a message sent while the hub is down arrives once when it starts") {
    TempDir dir;
    const int port = free_port();
    const std::string url = "ws://127.0.0.1:" + std::to_string(port) + "/v1/visitor";
    Recorder rec;
    auto client = make_client(visitor_config(url, dir.file("state.json"), rec));
    REQUIRE(client->start());
    // The first attempt fails: nobody listens yet.
    REQUIRE(rec.wait([](const auto& seen) { return find(seen, state_is(ConnectionState::kDisconnected)) >= 0; }));
    auto id = client->send("送料はいくらですか");
    REQUIRE(id.is_ok());
    CHECK(client->pending() == 1);
    CHECK(outbox_ids(dir.file("state.json")) == std::vector<std::string>{*id});

    HubProcess hub;
    hub.start(dir.file("hub.db"), port, dir.file("hub.log"));
    REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, *id); }));
    CHECK(count(rec.events(), ack_of(*id)) == 1);
    CHECK(client->pending() == 0);
    const std::string conversation = client->conversation();
    CHECK(client->close(5000));
    // The message left the state file with the write after its ack was delivered.
    CHECK(outbox_ids(dir.file("state.json")).empty());
    hub.kill(SIGTERM);
    auto stored = stored_visitor_ids(dir.file("hub.db"), conversation);
    CHECK(stored == std::map<std::string, int>{{*id, 1}});
  }

  TEST_CASE("client: the hub is killed mid-conversation, the client resumes by seq and nothing comes twice") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    const int port = hub.port();
    Recorder rec;
    auto a = make_client(visitor_config(hub.url(), dir.file("a.json"), rec));
    REQUIRE(a->start());
    auto q1 = a->send("送料はいくらですか");
    REQUIRE(q1.is_ok());
    REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, *q1); }));

    hub.kill(SIGKILL);
    REQUIRE(rec.wait([](const auto& seen) { return find(seen, state_is(ConnectionState::kDisconnected)) >= 0; }));
    auto q2 = a->send("返品したいです");  // offline
    REQUIRE(q2.is_ok());
    CHECK(a->pending() == 1);

    // While A is away, the conversation goes on: a second hub on another port (same store,
    // same secret) serves a second visitor connection (another tab, from a copy of A's state)
    // whose message and its answer A must get by replay.
    std::string q3;
    {
      std::string b_state = dir.file("b.json");
      {
        auto ids = outbox_ids(dir.file("a.json"));
        REQUIRE(ids.size() == 1);
        // B gets A's token and last seq, but not A's outbox.
        std::string text = mdg_test::read_file(dir.file("a.json"));
        text = text.substr(0, text.find("\"outbox\"")) + "\"outbox\":[]}";
        std::ofstream(b_state, std::ios::binary) << text;
      }
      HubProcess other;
      other.start(dir.file("hub.db"), 0, dir.file("hub2.log"));
      Recorder rec_b;
      auto b = make_client(visitor_config(other.url(), b_state, rec_b));
      CHECK(b->conversation() == a->conversation());
      REQUIRE(b->start());
      auto sent = b->send("支払い方法を教えてください");
      REQUIRE(sent.is_ok());
      q3 = *sent;
      REQUIRE(rec_b.wait([&](const auto& seen) { return answered(seen, q3); }));
      CHECK(b->close(5000));
      other.kill(SIGTERM);
    }
    CHECK(a->state() != ConnectionState::kConnected);

    hub.start(dir.file("hub.db"), port, dir.file("hub.log"));  // the same port again
    REQUIRE(rec.wait([&](const auto& seen) {
      long again = find(seen, state_is(ConnectionState::kConnected), find(seen, state_is(ConnectionState::kDisconnected)));
      return again >= 0 && answered(seen, *q2) &&
             find(seen, [&](const ClientEvent& e) { return e.kind == Kind::kMessage && e.frame.id == q3; }, again) >= 0;
    }));
    const std::string conversation = a->conversation();
    CHECK(a->pending() == 0);
    CHECK(a->close(5000));

    // Every seq of the conversation reached A exactly once, in order, without a gap: q3 and
    // its answer by replay after the reconnect, then q2's ack and answer.
    auto evs = rec.events();
    std::vector<std::int64_t> seqs;
    for (const auto& e : evs) {
      if ((e.kind == Kind::kAck || e.kind == Kind::kMessage || e.kind == Kind::kEvent) && e.frame.seq) {
        seqs.push_back(*e.frame.seq);
      }
    }
    CAPTURE(seqs.size());
    REQUIRE(!seqs.empty());
    for (std::size_t i = 0; i < seqs.size(); ++i) CHECK(seqs[i] == static_cast<std::int64_t>(i + 1));
    CHECK(count(evs, ack_of(*q1)) == 1);
    CHECK(count(evs, ack_of(*q2)) == 1);
    CHECK(count(evs, [&](const ClientEvent& e) { return e.frame.id == q3; }) == 1);
    CHECK(find(evs, [&](const ClientEvent& e) { return e.frame.id == q3; }) < find(evs, ack_of(*q2)));
    CHECK(count(evs, state_is(ConnectionState::kConnected)) == 2);
    CHECK(a->last_seq() == seqs.back());
    hub.kill(SIGTERM);
    auto stored = stored_visitor_ids(dir.file("hub.db"), conversation);
    CHECK(stored == std::map<std::string, int>{{*q1, 1}, {*q2, 1}, {q3, 1}});
  }

  TEST_CASE("client: frames the hub replays after a reconnect are dropped when already received") {
    // kPoll without polling: the frames wait in the queue, undelivered, so the client resumes
    // from seq 0 and the hub replays what the client already holds.
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    const int port = hub.port();
    Recorder rec;
    auto cfg = visitor_config(hub.url(), dir.file("state.json"), rec);
    cfg.dispatch = Dispatch::kPoll;
    auto client = make_client(std::move(cfg));
    REQUIRE(client->start());
    auto q1 = client->send("送料はいくらですか");
    REQUIRE(q1.is_ok());
    // No event runs without poll(): watch the client's own state instead.
    auto until = [&](const std::function<bool()>& done) {
      auto deadline = std::chrono::steady_clock::now() + kWait;
      while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
      return done();
    };
    REQUIRE(until([&] { return client->pending() == 0; }));  // acknowledged
    CHECK(client->last_seq() == 0);                          // but nothing delivered yet
    hub.kill(SIGKILL);
    REQUIRE(until([&] { return client->state() == ConnectionState::kDisconnected; }));
    hub.start(dir.file("hub.db"), port, dir.file("hub.log"));
    // Still nothing delivered: the hello of the new connection says last_seq 0.
    REQUIRE(until([&] { return client->state() == ConnectionState::kConnected; }));
    // The replay (from seq 0) holds q1 itself and its answer: each must come out once.
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (!answered(rec.events(), *q1) && std::chrono::steady_clock::now() < deadline) client->poll(100);
    CHECK(client->close(5000));
    while (client->poll(0) > 0) {
    }
    auto evs = rec.events();
    REQUIRE(answered(evs, *q1));
    auto per_seq = mdg_test::seq_counts(evs);
    mdg_test::check_each_seq_once(per_seq);
    CHECK(count(evs, [](const ClientEvent& e) { return e.kind == Kind::kMessage && e.frame.from == "visitor"; }) == 0);
    CHECK(client->last_seq() == per_seq.rbegin()->first);
    hub.kill(SIGTERM);
  }

  TEST_CASE("client: an outbox message the replay brings back is acknowledged by it") {
    // Two state files with the same token and the same unsent message: B delivers it, then A
    // resumes and finds it in the replay (the case of an ack lost with a dying connection).
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Recorder rec;
    std::string q;
    {
      auto first = make_client(visitor_config(hub.url(), dir.file("a.json"), rec));
      REQUIRE(first->start());
      REQUIRE(rec.wait([](const auto& seen) { return find(seen, state_is(ConnectionState::kConnected)) >= 0; }));
      CHECK(first->close(5000));
      CHECK(first->send("x").status().code() == ErrorCode::kClosed);
    }
    {
      auto offline = make_client(visitor_config(hub.url(), dir.file("a.json"), rec));
      auto sent = offline->send("送料はいくらですか");
      REQUIRE(sent.is_ok());
      q = *sent;
      CHECK(offline->close(0).code() == ErrorCode::kDeadlineExceeded);
    }
    fs::copy_file(dir.file("a.json"), dir.file("b.json"));
    {
      Recorder rec_b;
      auto b = make_client(visitor_config(hub.url(), dir.file("b.json"), rec_b));
      REQUIRE(b->start());
      REQUIRE(rec_b.wait([&](const auto& seen) { return answered(seen, q); }));
      CHECK(b->close(5000));
    }
    Recorder rec_a;
    auto a = make_client(visitor_config(hub.url(), dir.file("a.json"), rec_a));
    CHECK(a->pending() == 1);
    REQUIRE(a->start());
    REQUIRE(rec_a.wait([&](const auto& seen) { return answered(seen, q); }));
    CHECK(a->close(5000));
    auto evs = rec_a.events();
    long ack = find(evs, ack_of(q));
    CHECK(evs[static_cast<std::size_t>(ack)].frame.duplicate);
    CHECK(count(evs, ack_of(q)) == 1);
    CHECK(count(evs, [&](const ClientEvent& e) { return e.kind == Kind::kMessage && e.frame.id == q; }) == 0);
    CHECK(a->pending() == 0);
    CHECK(outbox_ids(dir.file("a.json")).empty());
  }

  TEST_CASE("client: a refused token closes the client and keeps its outbox") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    const std::string state = dir.file("state.json");
    std::ofstream(state, std::ios::binary)
        << R"({"token":"v1.c_00000000000000000000000000.99999999999999.00","conversation":"c_00000000000000000000000000",)"
        << R"("last_seq":3,"outbox":[{"id":"m-1","text":"hello","attachments":[]}]})";
    Recorder rec;
    auto client = make_client(visitor_config(hub.url(), state, rec));
    REQUIRE(client->start());
    REQUIRE(rec.wait([](const auto& seen) { return find(seen, state_is(ConnectionState::kClosed)) >= 0; }));
    auto evs = rec.events();
    long err = find(evs, [](const ClientEvent& e) { return e.kind == Kind::kError; });
    REQUIRE(err >= 0);
    CHECK(evs[static_cast<std::size_t>(err)].frame.error == protocol::ErrorKind::kUnauthorized);
    CHECK(client->state() == ConnectionState::kClosed);
    auto again = client->send("still there?");
    CHECK(again.status().code() == ErrorCode::kClosed);
    CHECK(again.status().message().find("unauthorized") != std::string::npos);
    const Status closed = client->close(0);
    CHECK(closed.code() == ErrorCode::kDeadlineExceeded);
    // Not "sent by the next client that opens it": that one would be refused too.
    CHECK(closed.message().find("the hub refused this conversation (unauthorized") != std::string::npos);
    CHECK(closed.message().find("remove it to start a new conversation") != std::string::npos);
    CHECK(count(rec.events(), state_is(ConnectionState::kConnecting)) == 1);  // no retry
    CHECK(outbox_ids(state) == std::vector<std::string>{"m-1"});
  }

  TEST_CASE("client: an ack the app never had keeps its message in the state file, and comes again") {
    // Dispatch::kPoll, and the app stops before it polls the ack: the next client must give it
    // the ack, not its own message back as a new one in the replay.
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    const std::string state = dir.file("state.json");
    std::string id;
    {
      Recorder rec;
      auto cfg = visitor_config(hub.url(), state, rec);
      cfg.dispatch = Dispatch::kPoll;
      auto first = make_client(std::move(cfg));
      REQUIRE(first->start());
      auto sent = first->send("送料はいくらですか");
      REQUIRE(sent.is_ok());
      id = *sent;
      // The ack has come when the message leaves the outbox; nothing is polled.
      const auto deadline = std::chrono::steady_clock::now() + kWait;
      while (first->pending() != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
      REQUIRE(first->pending() == 0);
      CHECK(first->close(5000));
      CHECK(rec.events().empty());
    }
    CHECK(outbox_ids(state) == std::vector<std::string>{id});

    Recorder rec;
    auto client = make_client(visitor_config(hub.url(), state, rec));
    REQUIRE(client->start());
    REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, id); }));
    CHECK(client->close(5000));
    auto evs = rec.events();
    CHECK(count(evs, ack_of(id)) == 1);
    CHECK(evs[static_cast<std::size_t>(find(evs, ack_of(id)))].frame.duplicate);
    CHECK(count(evs, [&](const ClientEvent& e) { return e.kind == Kind::kMessage && e.frame.id == id; }) == 0);
    CHECK(outbox_ids(state).empty());
    hub.kill(SIGTERM);
    CHECK(stored_visitor_ids(dir.file("hub.db"), client->conversation()) == std::map<std::string, int>{{id, 1}});
  }

  TEST_CASE("client: a send() racing close() is either in the state file or refused") {
    // Whatever the interleaving: every id send() returned is in the state file after close(),
    // close() counts exactly those, and a send() after it is refused with kClosed.
    TempDir dir;
    const int port = free_port();  // nobody listens: nothing is acknowledged
    const std::string url = "ws://127.0.0.1:" + std::to_string(port) + "/v1/visitor";
    for (int round = 0; round < 20; ++round) {
      const std::string state = dir.file("state-" + std::to_string(round) + ".json");
      Recorder rec;
      auto client = make_client(visitor_config(url, state, rec));
      std::vector<std::string> ids;
      std::atomic<bool> go{false};
      std::thread sender([&] {
        while (!go.load()) std::this_thread::yield();
        for (;;) {
          auto r = client->send("round " + std::to_string(round));
          if (!r) {
            CHECK(r.status().code() == ErrorCode::kClosed);
            return;
          }
          ids.push_back(*r);
        }
      });
      go = true;
      while (client->pending() == 0) std::this_thread::yield();  // the sender is under way
      Status closed = client->close(0);
      sender.join();
      CHECK(closed.code() == ErrorCode::kDeadlineExceeded);
      CHECK(closed.message().find(std::to_string(ids.size()) + " message(s)") == 0);
      CHECK(outbox_ids(state) == ids);
    }
  }

  TEST_CASE("client: after an app restart the persisted outbox is sent, each message once") {
    TempDir dir;
    const int port = free_port();
    const std::string url = "ws://127.0.0.1:" + std::to_string(port) + "/v1/visitor";
    const std::string state = dir.file("state.json");
    std::string id1, id2;
    {
      Recorder rec;
      auto first = make_client(visitor_config(url, state, rec));
      REQUIRE(first->start());
      auto r1 = first->send("送料はいくらですか");
      auto r2 = first->send("返品したいです");
      REQUIRE(r1.is_ok());
      REQUIRE(r2.is_ok());
      id1 = *r1;
      id2 = *r2;
      CHECK(first->pending() == 2);
      // While it lives, nobody else may use its state file.
      Recorder other;
      auto second = Client::create(visitor_config(url, state, other));
      REQUIRE_FALSE(second.is_ok());
      CHECK(second.status().code() == ErrorCode::kUnavailable);
      CHECK(second.status().message().find(state) != std::string::npos);
    }  // destroyed: close(0), the hub never came
    CHECK(outbox_ids(state) == std::vector<std::string>{id1, id2});

    Recorder rec;
    auto client = make_client(visitor_config(url, state, rec));
    CHECK(client->pending() == 2);
    REQUIRE(client->start());
    HubProcess hub;
    hub.start(dir.file("hub.db"), port, dir.file("hub.log"));
    REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, id1) && answered(seen, id2); }));
    auto evs = rec.events();
    CHECK(find(evs, ack_of(id1)) < find(evs, ack_of(id2)));  // in order
    CHECK(count(evs, ack_of(id1)) == 1);
    CHECK(count(evs, ack_of(id2)) == 1);
    CHECK(client->pending() == 0);
    const std::string conversation = client->conversation();
    CHECK(client->close(5000));
    hub.kill(SIGTERM);
    CHECK(stored_visitor_ids(dir.file("hub.db"), conversation) == std::map<std::string, int>{{id1, 1}, {id2, 1}});
  }

  TEST_CASE("client: a clarification's options arrive read, and a pick made offline survives an app restart") {
    TempDir dir;
    const int port = free_port();
    const std::string url = "ws://127.0.0.1:" + std::to_string(port) + "/v1/visitor";
    const std::string state = dir.file("state.json");
    protocol::BotOption picked;
    {
      HubProcess hub;
      hub.start(dir.file("hub.db"), port, dir.file("hub.log"));
      Recorder rec;
      auto client = make_client(visitor_config(url, state, rec));
      REQUIRE(client->start());
      auto id = client->send("ポイントのこと");
      REQUIRE(id.is_ok());
      REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, *id); }));
      auto evs = rec.events();
      const ClientEvent& reply = evs[static_cast<std::size_t>(answer_to(evs, *id))];
      CAPTURE(reply.frame.bot_json);
      CHECK(reply.bot.decision == "clarify");
      REQUIRE(reply.bot.options.size() >= 2);
      for (const auto& o : reply.bot.options) {
        CHECK_FALSE(o.label.empty());
        CHECK(o.entry.rfind("points-", 0) == 0);
      }
      picked = reply.bot.options[1];
      CHECK(client->choose({"", "points-use"}).status().code() == ErrorCode::kInvalidArgument);
      CHECK(client->choose({picked.label, ""}).status().code() == ErrorCode::kInvalidArgument);
      CHECK(client->close(5000));
      hub.kill(SIGTERM);
    }
    // Picked while the hub is down, and the app quits before it comes back.
    std::string choice_id;
    {
      Recorder rec;
      auto client = make_client(visitor_config(url, state, rec));
      REQUIRE(client->start());
      auto id = client->choose(picked);
      REQUIRE_MESSAGE(id.is_ok(), id.status().to_string());
      choice_id = *id;
      CHECK(client->pending() == 1);
    }
    CHECK(outbox_ids(state) == std::vector<std::string>{choice_id});
    CHECK(mdg_test::read_file(state).find("\"choice\":\"" + picked.entry + "\"") != std::string::npos);

    HubProcess hub;
    hub.start(dir.file("hub.db"), port, dir.file("hub.log"));
    Recorder rec;
    auto client = make_client(visitor_config(url, state, rec));
    REQUIRE(client->start());
    REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, choice_id); }));
    auto evs = rec.events();
    const ClientEvent& answer = evs[static_cast<std::size_t>(answer_to(evs, choice_id))];
    CAPTURE(answer.frame.bot_json);
    CHECK(answer.bot.decision == "answer");
    CHECK(answer.bot.entry == picked.entry);
    CHECK(answer.bot.options.empty());
    CHECK(count(evs, ack_of(choice_id)) == 1);
    // The answer offers its entry's follow-ups, and one is picked the same way.
    REQUIRE_FALSE(answer.bot.suggestions.empty());
    REQUIRE(answer.bot.suggestions.size() == answer.bot.follow_ups.size());
    for (std::size_t i = 0; i < answer.bot.suggestions.size(); ++i) {
      CHECK(answer.bot.suggestions[i].entry == answer.bot.follow_ups[i]);
      CHECK_FALSE(answer.bot.suggestions[i].label.empty());
    }
    const protocol::BotOption related = answer.bot.suggestions.back();
    auto related_id = client->choose(related);
    REQUIRE(related_id.is_ok());
    REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, *related_id); }));
    evs = rec.events();
    CHECK(evs[static_cast<std::size_t>(answer_to(evs, *related_id))].bot.entry == related.entry);
    const std::string conversation = client->conversation();
    CHECK(client->close(5000));
    hub.kill(SIGTERM);
    // The transcript shows what the visitor picked, as it was labelled.
    bool stored = false;
    for (const auto& m : mdg_test::stored_messages(dir.file("hub.db"), conversation)) {
      if (m.client_id == choice_id) stored = m.body_json.find(picked.label) != std::string::npos;
    }
    CHECK(stored);
  }

  TEST_CASE("client: a hand-off's events arrive with their data read") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Recorder rec;
    auto client = make_client(visitor_config(hub.url(), "", rec));
    REQUIRE(client->start());
    auto id = client->send("担当者と話したい");
    REQUIRE(id.is_ok());
    REQUIRE(rec.wait([&](const auto& seen) {
      return answered(seen, *id) &&
             find(seen, [](const ClientEvent& e) { return e.kind == Kind::kEvent && e.frame.event == "handoff_started"; }) >= 0;
    }));
    auto evs = rec.events();
    const ClientEvent& reply = evs[static_cast<std::size_t>(answer_to(evs, *id))];
    CHECK(reply.bot.decision == "handoff");
    const ClientEvent& started = evs[static_cast<std::size_t>(
        find(evs, [](const ClientEvent& e) { return e.kind == Kind::kEvent && e.frame.event == "handoff_started"; }))];
    CAPTURE(started.frame.data_json);
    CHECK(started.data.reason == "visitor asked for a person");
    CHECK(started.data.queue_position == 1);
    CHECK(started.data.agent.empty());
    CHECK(client->close(5000));
  }

  TEST_CASE("client: the client may be destroyed from its own callback") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Recorder rec;
    std::mutex mu;
    std::unique_ptr<Client> holder;
    auto cfg = visitor_config(hub.url(), dir.file("state.json"), rec);
    cfg.on_event = [&](const ClientEvent& e) {
      if (e.kind == Kind::kWelcome) {
        std::lock_guard lock(mu);
        holder.reset();  // the network thread finishes by itself
      }
      rec(e);  // after: the test thread wakes up on it
    };
    {
      std::lock_guard lock(mu);
      holder = make_client(std::move(cfg));
      REQUIRE(holder->start());
    }
    REQUIRE(rec.wait([](const auto& seen) { return find(seen, [](const ClientEvent& e) { return e.kind == Kind::kWelcome; }) >= 0; }));
    {
      std::lock_guard lock(mu);
      CHECK(holder == nullptr);
    }
    // The state file is released once the network thread is gone.
    Recorder rec2;
    auto deadline = std::chrono::steady_clock::now() + kWait;
    Result<std::unique_ptr<Client>> next = Client::create(visitor_config(hub.url(), dir.file("state.json"), rec2));
    while (!next.is_ok() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
      next = Client::create(visitor_config(hub.url(), dir.file("state.json"), rec2));
    }
    REQUIRE_MESSAGE(next.is_ok(), next.status().to_string());
    CHECK_FALSE((*next)->conversation().empty());  // the welcome was persisted
    auto evs = rec.events();
    CHECK(evs.back().kind == Kind::kWelcome);  // nothing after the destruction
  }

  TEST_CASE("client: a corrupt state file is a clear error and is left alone") {
    TempDir dir;
    const std::string state = dir.file("state.json");
    Recorder rec;
    auto expect_refused = [&](const std::string& content, const std::string& mention) {
      {
        std::ofstream out(state, std::ios::binary | std::ios::trunc);
        out << content;
      }
      auto c = Client::create(visitor_config("ws://127.0.0.1:9/v1/visitor", state, rec));
      REQUIRE_FALSE(c.is_ok());
      CHECK(c.status().code() == ErrorCode::kInvalidArgument);
      CAPTURE(c.status().message());
      CHECK(c.status().message().find(state) != std::string::npos);
      CHECK(c.status().message().find(mention) != std::string::npos);
      CHECK(mdg_test::read_file(state) == content);
    };
    SUBCASE("not JSON") { expect_refused(R"({"token": "v1.x", "outbox": [)", "not a JSON object"); }
    SUBCASE("a bad message id") {
      expect_refused(R"({"outbox": [{"id": "m-1", "text": "a"}, {"id": "no spaces", "text": "b"}]})", "outbox[1]");
    }
    SUBCASE("a field of the wrong type") { expect_refused(R"({"last_seq": "12"})", "last_seq"); }
    // Messages the hub would refuse: each was sent again at every connection, and the ones
    // behind it never went out.
    SUBCASE("a message over the hub's frame limit") {
      expect_refused(R"({"outbox": [{"id": "m-1", "text": ")" + std::string(70000, 'a') + R"("}]})",
                     "outbox[0]: the hub would refuse this message");
    }
    SUBCASE("an empty message") { expect_refused(R"({"outbox": [{"id": "m-1", "text": ""}]})", "outbox[0]: the message is empty"); }
    SUBCASE("two messages with one id") {
      expect_refused(R"({"outbox": [{"id": "m-1", "text": "a"}, {"id": "m-1", "text": "b"}]})",
                     "outbox[1]: the id \"m-1\" is an earlier message's");
    }
  }

  TEST_CASE("client: a client destroyed from on_event in poll() gets no event after it") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    std::unique_ptr<Client> client;
    int after = 0;
    bool destroyed = false;
    Recorder rec;
    auto cfg = visitor_config(hub.url(), dir.file("state.json"), rec);
    cfg.dispatch = Dispatch::kPoll;
    cfg.on_event = [&](const ClientEvent& e) {
      if (destroyed) {
        ++after;
        return;
      }
      if (e.kind == Kind::kAck) {
        destroyed = true;
        client.reset();
      }
    };
    client = make_client(std::move(cfg));
    REQUIRE(client->start());
    REQUIRE(client->send("送料はいくらですか").is_ok());
    // Wait until the ack and the bot's answer are both queued, then poll them in one go.
    Client* raw = client.get();
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (mdg_test::metric(hub.port(), "madoguchi_messages_stored_total") < 2 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    std::this_thread::sleep_for(200ms);  // the frames reach the client
    while (!destroyed && std::chrono::steady_clock::now() < deadline) raw->poll(100);
    CHECK(destroyed);
    CHECK(after == 0);  // the bot's answer, queued behind the ack, was not delivered
  }

  TEST_CASE("client: a poll() of a client inside its own poll() returns 0, also through another client's") {
    // A's callback polls B, whose callback polls A: that inner A.poll() once locked the
    // mutex its outer call held, on the same thread.
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    std::unique_ptr<Client> a, b;
    std::vector<std::size_t> inner;  // what A.poll() returned inside B's callbacks
    Recorder rec_a, rec_b;
    auto cfg_a = visitor_config(hub.url(), "", rec_a);
    auto cfg_b = visitor_config(hub.url(), "", rec_b);
    cfg_a.dispatch = cfg_b.dispatch = Dispatch::kPoll;
    cfg_a.on_event = [&](const ClientEvent& e) {
      rec_a(e);
      b->poll(0);
    };
    cfg_b.on_event = [&](const ClientEvent& e) {
      rec_b(e);
      inner.push_back(a->poll(0));
    };
    a = make_client(std::move(cfg_a));
    b = make_client(std::move(cfg_b));
    REQUIRE(a->start());
    REQUIRE(b->start());
    // Both connected, with their events queued: A's poll delivers them all, B's from inside.
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline &&
           (a->state() != ConnectionState::kConnected || b->state() != ConnectionState::kConnected)) {
      std::this_thread::sleep_for(10ms);
    }
    REQUIRE(a->state() == ConnectionState::kConnected);
    REQUIRE(b->state() == ConnectionState::kConnected);
    a->poll(0);
    CHECK(find(rec_b.events(), state_is(ConnectionState::kConnected)) >= 0);
    REQUIRE_FALSE(inner.empty());
    CHECK(std::all_of(inner.begin(), inner.end(), [](std::size_t n) { return n == 0; }));
    CHECK(a->close(5000));
    CHECK(b->close(5000));
  }

  TEST_CASE("client: typing and read receipts at any rate never hold the outbox up") {
    TempDir dir;
    HubProcess hub;
    hub.start(dir.file("hub.db"), 0, dir.file("hub.log"));
    Recorder rec;
    auto client = make_client(visitor_config(hub.url(), "", rec));
    REQUIRE(client->start());
    auto first = client->send("送料はいくらですか");
    REQUIRE(first.is_ok());
    REQUIRE(rec.wait([&](const auto& seen) { return answered(seen, *first); }));
    // An app marking each message of a long replay read, and sending typing at every key:
    // 200 read receipts and 200 typing frames were written one by one at the client's 10
    // frames a second before any message behind them.
    for (int i = 0; i < 200; ++i) {
      REQUIRE(client->mark_read(client->last_seq()));
      REQUIRE(client->typing(i % 2 == 0));
    }
    auto second = client->send("返品できますか");
    REQUIRE(second.is_ok());
    REQUIRE(rec.wait([&](const auto& seen) { return find(seen, ack_of(*second)) >= 0; }));
    // Once the message is in, the hub has had a few indicators, not the 400 (40 s of them).
    const double frames = mdg_test::metric(hub.port(), "madoguchi_frames_received_total");
    CAPTURE(frames);
    CHECK(frames > 0);
    CHECK(frames < 100);
    CHECK(client->mark_read(0));  // nothing read yet: nothing sent (the hub refuses seq 0)
    CHECK(client->mark_read(-1).code() == ErrorCode::kInvalidArgument);
    CHECK(client->close(5000));
  }

  TEST_CASE("client: close() with messages unsent returns kDeadlineExceeded and keeps them in the file") {
    TempDir dir;
    const std::string state = dir.file("state.json");
    const std::string url = "ws://127.0.0.1:" + std::to_string(free_port()) + "/v1/visitor";
    Recorder rec;
    auto client = make_client(visitor_config(url, state, rec));
    REQUIRE(client->start());
    auto id = client->send("送料はいくらですか");
    REQUIRE(id.is_ok());
    auto t0 = std::chrono::steady_clock::now();
    Status st = client->close(300);
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(st.code() == ErrorCode::kDeadlineExceeded);
    CHECK(st.message().find(state) != std::string::npos);
    CHECK(took >= 250ms);
    CHECK(took < 10s);
    CHECK(client->pending() == 1);
    CHECK(client->send("later").status().code() == ErrorCode::kClosed);
    CHECK(outbox_ids(state) == std::vector<std::string>{*id});
    client.reset();
    auto again = make_client(visitor_config(url, state, rec));
    CHECK(again->pending() == 1);
    CHECK(again->close(0).code() == ErrorCode::kDeadlineExceeded);  // never started
  }

  TEST_CASE("client: message ids sort by the time they were made") {
    Recorder rec;
    auto client = make_client(visitor_config("ws://127.0.0.1:" + std::to_string(free_port()) + "/v1/visitor", "", rec));
    // The time part: ms since 1970 as 9 base-36 digits.
    auto millis = [](std::string_view id) {
      std::uint64_t t = 0;
      for (char ch : id.substr(2, 9)) t = t * 36 + static_cast<std::uint64_t>(ch <= '9' ? ch - '0' : ch - 'a' + 10);
      return static_cast<std::int64_t>(t);
    };
    auto now_ms = []() {
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
    const std::int64_t before = now_ms();
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) {
      if (i > 0) std::this_thread::sleep_for(3ms);
      auto id = client->send("id " + std::to_string(i));
      REQUIRE(id.is_ok());
      ids.push_back(*id);
    }
    const std::int64_t after = now_ms();
    std::set<std::string> distinct(ids.begin(), ids.end());
    CHECK(distinct.size() == ids.size());
    for (const auto& id : ids) {
      CAPTURE(id);
      REQUIRE(id.size() == 24);
      CHECK(id.substr(0, 2) == "m-");
      CHECK(id.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz", 2) == std::string::npos);
      CHECK(millis(id) >= before);
      CHECK(millis(id) <= after);
    }
    CHECK(std::is_sorted(ids.begin(), ids.end()));  // 3 ms apart: the time digits differ
    CHECK(client->close(0).code() == ErrorCode::kDeadlineExceeded);
  }

  TEST_CASE("client: configuration and messages the hub would refuse are refused up front") {
    Recorder rec;
    for (const char* url : {"http://127.0.0.1:8080/v1/visitor", "ws://", "ws://host:99999/", "ws://host:x/"}) {
      CAPTURE(url);
      auto c = Client::create(visitor_config(url, "", rec));
      REQUIRE_FALSE(c.is_ok());
      CHECK(c.status().code() == ErrorCode::kInvalidArgument);
    }
    auto cfg = visitor_config("ws://127.0.0.1:9", "", rec);
    cfg.backoff_ms = {};
    CHECK(Client::create(cfg).status().code() == ErrorCode::kInvalidArgument);
    cfg.backoff_ms = {100, 0};
    CHECK(Client::create(cfg).status().code() == ErrorCode::kInvalidArgument);
    cfg.backoff_ms = {100};
    cfg.jitter_percent = 101;
    CHECK(Client::create(cfg).status().code() == ErrorCode::kInvalidArgument);

    auto client = make_client(visitor_config("ws://127.0.0.1:9", "", rec));
    CHECK(client->send("").status().code() == ErrorCode::kInvalidArgument);
    CHECK(client->send("\xff\xfe").status().code() == ErrorCode::kInvalidArgument);
    CHECK(client->send(std::string(70000, 'a')).status().code() == ErrorCode::kInvalidArgument);
    CHECK(client->send("", {protocol::Attachment{"photo.jpg", "image/jpeg", 120334, "https://cdn.example/p/1.jpg"}}).is_ok());
    CHECK(client->pending() == 1);
    CHECK(client->typing(true));  // not connected: ignored
  }

  TEST_CASE("client: the longest back-off waits, and does not overflow into a retry at once") {
    // INT_MAX ms with 20 % jitter once came out as a negative wait: a retry every millisecond.
    Recorder rec;
    auto cfg = visitor_config("ws://127.0.0.1:" + std::to_string(free_port()) + "/v1/visitor", "", rec);
    cfg.backoff_ms = {std::numeric_limits<int>::max()};
    cfg.jitter_percent = 20;
    auto client = make_client(std::move(cfg));
    REQUIRE(client->start());
    REQUIRE(rec.wait([](const auto& seen) { return count(seen, state_is(ConnectionState::kDisconnected)) >= 1; }));
    std::this_thread::sleep_for(300ms);
    CHECK(count(rec.events(), state_is(ConnectionState::kConnecting)) == 1);
    CHECK(client->close(0));
  }
}
