// The hub in this process, over a real SQLite file, with real clients on 127.0.0.1: group
// commit when a commit fails, and conversations leaving memory and coming back.
#include <madoguchi/bot/bot.hpp>
#include <madoguchi/client.hpp>
#include <madoguchi/hub.hpp>
#include <madoguchi/store.hpp>

#include <doctest/doctest.h>

#include "bot-runtime/test_support.hpp"
#include "sdk/live_chat_support.hpp"
#include "temp_dir.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace madoguchi;
using Kind = ClientEvent::Kind;
using namespace std::chrono_literals;

namespace {


// The real SQLite store, whose next commits can be made to report failure. A failed
// end_batch() still commits underneath: the worst case for the hub, which cannot know whether
// the batch reached the disk, so it must neither send the turn's replies nor store anything
// twice when the clients resend.
class CommitFailingStore final : public hub::Store {
 public:
  explicit CommitFailingStore(std::unique_ptr<hub::Store> inner) : inner_(std::move(inner)) {}
  std::atomic<int> fail_commits{0};
  std::atomic<int> fail_updates{0};  // the next updates fail alone (a full disk), the batch goes on
  std::atomic<int> commits{0};

  Status create_conversation(const hub::ConversationRecord& r) override { return inner_->create_conversation(r); }
  Result<std::optional<hub::ConversationRecord>> find_conversation(std::string_view id) override {
    return inner_->find_conversation(id);
  }
  Status update_conversation(const hub::ConversationRecord& r) override {
    if (fail_updates > 0) {
      --fail_updates;
      return Status(ErrorCode::kResourceExhausted, "store test: update_conversation: disk full (injected)");
    }
    return inner_->update_conversation(r);
  }
  std::atomic<int> fail_event_appends{0};  // the next events' appends fail alone, the batch goes on
  Result<hub::AppendResult> append(std::string_view id, const hub::NewMessage& m) override {
    if (m.kind == "event" && fail_event_appends > 0) {
      --fail_event_appends;
      return Status(ErrorCode::kResourceExhausted, "store test: append: disk full (injected)");
    }
    return inner_->append(id, m);
  }
  Result<std::vector<hub::StoredMessage>> messages_after(std::string_view id, std::int64_t after,
                                                         std::size_t limit) override {
    return inner_->messages_after(id, after, limit);
  }
  Result<std::vector<hub::ConversationRecord>> conversations_in_state(std::string_view state,
                                                                      std::size_t limit) override {
    return inner_->conversations_in_state(state, limit);
  }
  Result<std::int64_t> count_messages() override { return inner_->count_messages(); }
  Result<std::optional<std::int64_t>> find_message(std::string_view id, std::string_view client_id) override {
    return inner_->find_message(id, client_id);
  }
  Status begin_batch() override { return inner_->begin_batch(); }
  Status abort_batch() override { return inner_->abort_batch(); }
  Status end_batch() override {
    MDG_RETURN_IF_ERROR(inner_->end_batch());
    ++commits;
    if (fail_commits > 0) {
      --fail_commits;
      return Status(ErrorCode::kInternal, "store test: end_batch: disk I/O error (injected)");
    }
    return Status::ok();
  }

 private:
  std::unique_ptr<hub::Store> inner_;
};

// A hub serving on its own thread until the object is destroyed.
class InProcessHub {
 public:
  InProcessHub(hub::HubConfig config, std::unique_ptr<hub::Store> store) {
    config.port = 0;
    config.secret = "a test secret of 32 bytes.......";
    auto h = hub::Hub::create(std::move(config), mdg_test::shop_bot(), std::move(store));
    REQUIRE_MESSAGE(h.is_ok(), h.status().to_string());
    hub_ = std::move(*h);
    thread_ = std::thread([this] { (void)hub_->run(); });
  }
  ~InProcessHub() {
    hub_->stop();
    thread_.join();
  }
  InProcessHub(const InProcessHub&) = delete;
  InProcessHub& operator=(const InProcessHub&) = delete;

  std::string url() const { return "ws://127.0.0.1:" + std::to_string(hub_->port()) + "/v1/visitor"; }
  int port() const { return hub_->port(); }

  std::string get(const std::string& path) const { return mdg_test::http_get(hub_->port(), path); }
  double metric(const std::string& name) const { return mdg_test::metric(hub_->port(), name); }

 private:
  std::unique_ptr<hub::Hub> hub_;
  std::thread thread_;
};

using mdg_test::ack_of;
using mdg_test::count;
using mdg_test::eventually;
using mdg_test::is_bot;
using Recorder = mdg_test::Recorder<ClientEvent>;

std::unique_ptr<Client> visitor(const std::string& url, const std::string& state_path, Recorder& rec) {
  ClientConfig cfg;
  cfg.url = url;
  cfg.state_path = state_path;
  cfg.locale = "ja";
  cfg.backoff_ms = {50, 100};
  cfg.on_event = [&rec](const ClientEvent& e) { rec(e); };
  auto c = Client::create(std::move(cfg));
  REQUIRE_MESSAGE(c.is_ok(), c.status().to_string());
  REQUIRE((*c)->start());
  return std::move(*c);
}

// A message as the hub stores it: a visitor's (its client id kept) or the bot's.
hub::NewMessage stored_message(const std::string& sender, const std::string& id, const std::string& text) {
  protocol::Frame f;
  f.type = protocol::FrameType::kMessage;
  f.id = id;
  f.from = sender;
  f.text = text;
  f.at = 1;
  hub::NewMessage m;
  m.client_id = sender == "visitor" ? id : "";
  m.sender = sender;
  m.kind = "message";
  m.body_json = protocol::encode(f);
  m.created_ms = 1;
  return m;
}

// Appends `messages` to `conversation` in the store at `path` (no hub running), in one commit.
void store_messages(const std::string& path, const std::string& conversation,
                    const std::vector<hub::NewMessage>& messages) {
  auto store = hub::open_sqlite_store(path);
  REQUIRE(store.is_ok());
  REQUIRE((*store)->begin_batch().is_ok());
  for (const auto& m : messages) REQUIRE((*store)->append(conversation, m).is_ok());
  REQUIRE((*store)->end_batch().is_ok());
}

// An agent logged in to the hub on `port` (its welcome received), its events in `rec`.
std::unique_ptr<AgentClient> logged_in_agent(int port, const std::string& name, const std::string& password,
                                             mdg_test::Recorder<AgentEvent>& rec) {
  auto agent = mdg_test::make_client(
      mdg_test::agent_config("ws://127.0.0.1:" + std::to_string(port) + "/v1/agent", name, password, rec));
  REQUIRE(agent->start());
  REQUIRE(rec.wait([](const auto& evs) {
    return mdg_test::find(evs, [](const AgentEvent& e) { return e.kind == AgentEvent::Kind::kWelcome; }) >= 0;
  }));
  return agent;
}

// A visitor's conversation from a first run of the hub on the store at `path` (the visitor's
// token stays in `state`): "返品したい", acknowledged and answered.
std::string first_conversation(const std::string& path, const std::string& state) {
  auto sqlite = hub::open_sqlite_store(path);
  REQUIRE(sqlite.is_ok());
  InProcessHub hub({}, std::move(*sqlite));
  Recorder rec;
  auto client = visitor(hub.url(), state, rec);
  auto id = client->send("返品したい");
  REQUIRE(id.is_ok());
  REQUIRE(rec.wait([&](const auto& evs) { return count(evs, ack_of(*id)) == 1 && count(evs, is_bot) == 1; }));
  REQUIRE(client->close(5000));
  return client->conversation();
}

// `pairs` visitor questions ("question N", id visitor-N), each with the bot's answer ("answer N").
std::vector<hub::NewMessage> question_answer_turns(int pairs) {
  std::vector<hub::NewMessage> turns;
  for (int i = 0; i < pairs; ++i) {
    const std::string n = std::to_string(i);
    turns.push_back(stored_message("visitor", "visitor-" + n, "question " + n));
    turns.push_back(stored_message("bot", "bot-" + n, "answer " + n));
  }
  return turns;
}

// A hub on the real SQLite store (`path`, in `dir`) whose failures a test injects (`faulty`).
struct FaultyHub {
  mdg_test::TempDir dir{"madoguchi-hub-test"};
  const std::string path = dir.file("hub.db");
  std::unique_ptr<CommitFailingStore> store = open_faulty(path);
  CommitFailingStore& faulty = *store;
  InProcessHub hub;

  explicit FaultyHub(hub::HubConfig cfg = {}) : hub(std::move(cfg), std::move(store)) {}

  static std::unique_ptr<CommitFailingStore> open_faulty(const std::string& path) {
    auto sqlite = hub::open_sqlite_store(path);
    REQUIRE(sqlite.is_ok());
    return std::make_unique<CommitFailingStore>(std::move(*sqlite));
  }
};

// A conversation whose first run stored `left` after its first question and answer, as a
// crash leaves it; the hub comes back on the store, the visitor resumes, and once it has had
// `answers` bot messages (replayed ones included), what the store holds.
std::vector<hub::StoredMessage> stored_after_answers(const std::vector<hub::NewMessage>& left, long answers) {
  mdg_test::TempDir dir("madoguchi-hub-test");
  const std::string path = dir.file("hub.db");
  const std::string state = dir.file("visitor.json");
  const std::string conversation = first_conversation(path, state);
  store_messages(path, conversation, left);
  {
    auto sqlite = hub::open_sqlite_store(path);
    REQUIRE(sqlite.is_ok());
    InProcessHub hub({}, std::move(*sqlite));
    Recorder rec;
    auto client = visitor(hub.url(), state, rec);
    REQUIRE(rec.wait([&](const auto& evs) { return count(evs, is_bot) == answers; }));
    REQUIRE(client->close(5000));
  }
  auto check = hub::open_sqlite_store(path);
  REQUIRE(check.is_ok());
  auto msgs = (*check)->messages_after(conversation, 0, 100);
  REQUIRE(msgs.is_ok());
  return *msgs;
}

}  // namespace

TEST_SUITE("sdk.hub") {
  TEST_CASE("hub: a failed commit sends nothing of its turn, and the resent message is stored once") {
    FaultyHub fx;
    const auto& [dir, path, faulty, hub] = std::tie(fx.dir, fx.path, fx.faulty, fx.hub);

    Recorder rec;
    auto client = visitor(hub.url(), dir.file("visitor.json"), rec);
    REQUIRE(rec.wait([](const auto& evs) { return count(evs, [](const ClientEvent& e) { return e.kind == Kind::kWelcome; }) == 1; }));

    faulty.fail_commits = 1;  // the turn that stores the message "fails"
    auto id = client->send("送料はいくらですか");
    REQUIRE(id.is_ok());
    REQUIRE(rec.wait([&](const auto& evs) { return count(evs, ack_of(*id)) == 1 && count(evs, is_bot) >= 1; }));
    CHECK(client->close(5000));
    CHECK(faulty.fail_commits == 0);

    auto evs = rec.events();
    // The first attempt's ack and answer were never sent: the visitor saw an internal error and
    // a reconnect, then one ack (a duplicate: the first commit had in fact reached the disk).
    CHECK(count(evs, [](const ClientEvent& e) { return e.kind == Kind::kError && e.frame.error == protocol::ErrorKind::kInternal; }) == 1);
    CHECK(count(evs, [](const ClientEvent& e) { return e.kind == Kind::kWelcome; }) == 2);
    CHECK(count(evs, ack_of(*id)) == 1);
    CHECK(count(evs, is_bot) == 1);  // the stored answer, replayed after the reconnect

    auto check = hub::open_sqlite_store(path);
    REQUIRE(check.is_ok());
    auto msgs = (*check)->messages_after(client->conversation(), 0, 100);
    REQUIRE(msgs.is_ok());
    int visitor_copies = 0;
    for (const auto& m : *msgs) visitor_copies += m.client_id == *id ? 1 : 0;
    CHECK(visitor_copies == 1);
  }

  TEST_CASE("hub: a failed commit leaves the other conversations in memory, with their questions") {
    // Only the conversations the failed turn wrote to ran ahead of the store. Dropping the
    // others too dropped the answers the bot was working on for them, and their visitors,
    // whose connections stay open, waited for ever.
    FaultyHub fx;
    const auto& [dir, faulty, hub] = std::tie(fx.dir, fx.faulty, fx.hub);
    Recorder rec_a, rec_b;
    auto a = visitor(hub.url(), dir.file("a.json"), rec_a);
    auto b = visitor(hub.url(), dir.file("b.json"), rec_b);
    auto first = a->send("送料はいくらですか");
    REQUIRE(first.is_ok());
    REQUIRE(rec_a.wait([&](const auto& evs) { return count(evs, ack_of(*first)) == 1 && count(evs, is_bot) == 1; }));
    REQUIRE(rec_b.wait([](const auto& evs) { return count(evs, [](const ClientEvent& e) { return e.kind == Kind::kWelcome; }) == 1; }));
    CHECK(hub.metric("madoguchi_conversations_cached") == 2);

    faulty.fail_commits = 1;  // B's turn "fails"; A's conversation is not in it
    auto id = b->send("返品したいです");
    REQUIRE(id.is_ok());
    REQUIRE(rec_b.wait([&](const auto& evs) { return count(evs, ack_of(*id)) == 1 && count(evs, is_bot) == 1; }));
    CHECK(hub.metric("madoguchi_store_failed_commits_total") == 1);
    CHECK(hub.metric("madoguchi_conversations_cached") == 2);  // A's never left; B's came back
    auto second = a->send("How do I return an item?");
    REQUIRE(second.is_ok());
    REQUIRE(rec_a.wait([&](const auto& evs) { return count(evs, ack_of(*second)) == 1 && count(evs, is_bot) == 2; }));
    CHECK(count(rec_a.events(), [](const ClientEvent& e) { return e.kind == Kind::kWelcome; }) == 1);
    CHECK(a->close(5000));
    CHECK(b->close(5000));
  }

  TEST_CASE("hub: a conversation's update that fails alone gives up the whole turn, store and memory agree") {
    // The hand-off's update fails (a full disk) after the turn stored the visitor's message,
    // the bot's reply and handoff_started: none of them may stay, or the store would hold a
    // hand-off of a conversation still with the bot.
    FaultyHub fx;
    const auto& [dir, path, faulty, hub] = std::tie(fx.dir, fx.path, fx.faulty, fx.hub);
    Recorder rec;
    auto client = visitor(hub.url(), dir.file("visitor.json"), rec);
    REQUIRE(rec.wait([](const auto& evs) { return count(evs, [](const ClientEvent& e) { return e.kind == Kind::kWelcome; }) == 1; }));
    faulty.fail_updates = 1;
    auto id = client->send("担当者と話したい");
    REQUIRE(id.is_ok());
    auto handed_off = [](const ClientEvent& e) { return e.kind == Kind::kEvent && e.frame.event == "handoff_started"; };
    REQUIRE(rec.wait([&](const auto& evs) { return count(evs, ack_of(*id)) == 1 && count(evs, handed_off) == 1; }));
    CHECK(client->close(5000));
    auto evs = rec.events();
    CHECK(count(evs, [](const ClientEvent& e) { return e.kind == Kind::kError && e.frame.error == protocol::ErrorKind::kInternal; }) == 1);
    CHECK(count(evs, [](const ClientEvent& e) { return e.kind == Kind::kWelcome; }) == 2);  // it reconnected and resent
    CHECK(hub.metric("madoguchi_store_failed_commits_total") == 1);
    auto check = hub::open_sqlite_store(path);
    REQUIRE(check.is_ok());
    auto rec_after = (*check)->find_conversation(client->conversation());
    REQUIRE(rec_after.is_ok());
    REQUIRE(rec_after->has_value());
    CHECK((*rec_after)->state == "waiting");
    auto msgs = (*check)->messages_after(client->conversation(), 0, 100);
    REQUIRE(msgs.is_ok());
    int handoffs = 0, copies = 0;
    for (const auto& m : *msgs) {
      handoffs += m.body_json.find("handoff_started") != std::string::npos ? 1 : 0;
      copies += m.client_id == *id ? 1 : 0;
    }
    CHECK(handoffs == 1);
    CHECK(copies == 1);
  }

  TEST_CASE("hub: an event that cannot be stored gives up its turn, so a take never commits without agent_joined") {
    using AKind = AgentEvent::Kind;
    hub::HubConfig cfg;
    cfg.agents = {{"sato", "pw", ""}};
    FaultyHub fx(cfg);
    const auto& [dir, path, faulty, hub] = std::tie(fx.dir, fx.path, fx.faulty, fx.hub);
    Recorder rec;
    auto client = visitor(hub.url(), dir.file("visitor.json"), rec);
    auto id = client->send("担当者と話したい");
    REQUIRE(id.is_ok());
    auto handed_off = [](const ClientEvent& e) { return e.kind == Kind::kEvent && e.frame.event == "handoff_started"; };
    REQUIRE(rec.wait([&](const auto& evs) { return count(evs, handed_off) == 1; }));
    mdg_test::Recorder<AgentEvent> arec;
    auto sato = logged_in_agent(hub.port(), "sato", "pw", arec);
    faulty.fail_event_appends = 1;
    REQUIRE(sato->take(client->conversation()));
    // The turn was given up: the agent's connection is closed (1011) and the client connects
    // again; nothing of the take was stored.
    REQUIRE(mdg_test::eventually([&] { return hub.metric("madoguchi_store_failed_commits_total") == 1; }));
    CHECK(mdg_test::stored_state(path, client->conversation()) == "waiting");
    for (const auto& m : mdg_test::stored_messages(path, client->conversation())) {
      CHECK(m.body_json.find("agent_joined") == std::string::npos);
    }
    // Taken again once the store takes writes: it goes through.
    REQUIRE(arec.wait([](const auto& evs) { return count(evs, [](const AgentEvent& e) { return e.kind == AKind::kWelcome; }) == 2; }));
    REQUIRE(sato->take(client->conversation()));
    REQUIRE(arec.wait([](const auto& evs) { return count(evs, [](const AgentEvent& e) { return e.kind == AKind::kConversation; }) == 1; }));
    CHECK(sato->close(5000));
    CHECK(client->close(5000));
  }

  TEST_CASE("hub: /healthz says 503 while the store's commits fail, and ok again after one succeeds") {
    FaultyHub fx;
    const auto& [dir, faulty, hub] = std::tie(fx.dir, fx.faulty, fx.hub);
    CHECK(hub.get("/healthz").rfind("HTTP/1.1 200", 0) == 0);

    faulty.fail_commits = 1000000;  // every commit "fails" from now on
    Recorder rec;
    auto client = visitor(hub.url(), dir.file("visitor.json"), rec);
    REQUIRE(client->send("送料はいくらですか").is_ok());
    REQUIRE(eventually([&] { return hub.get("/healthz").rfind("HTTP/1.1 503", 0) == 0; }));
    const std::string failing = hub.get("/healthz");
    CHECK(failing.find("store failing: store test: end_batch: disk I/O error (injected)") != std::string::npos);

    faulty.fail_commits = 0;  // the disk is back: the client's resend commits
    REQUIRE(rec.wait([&](const auto& evs) { return count(evs, is_bot) >= 1; }));
    CHECK(eventually([&] { return hub.get("/healthz").rfind("HTTP/1.1 200", 0) == 0; }));
    CHECK(client->close(5000));
  }

  TEST_CASE("hub: many visitors at once share commits") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    auto sqlite = hub::open_sqlite_store(dir.file("hub.db"));
    REQUIRE(sqlite.is_ok());
    auto store = std::make_unique<CommitFailingStore>(std::move(*sqlite));
    CommitFailingStore& counted = *store;
    InProcessHub hub({}, std::move(store));

    constexpr int kVisitors = 20;
    std::vector<std::unique_ptr<Recorder>> recs;
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<std::string> ids;
    for (int i = 0; i < kVisitors; ++i) {
      recs.push_back(std::make_unique<Recorder>());
      clients.push_back(visitor(hub.url(), "", *recs.back()));
      auto id = clients.back()->send(i % 2 ? "送料はいくらですか" : "How do I return an item?");
      REQUIRE(id.is_ok());
      ids.push_back(*id);
    }
    for (int i = 0; i < kVisitors; ++i) {
      REQUIRE(recs[static_cast<std::size_t>(i)]->wait(
          [&](const auto& evs) { return count(evs, ack_of(ids[static_cast<std::size_t>(i)])) == 1 && count(evs, is_bot) == 1; }));
    }
    // Each visitor needed a hello (a new conversation), a message and its answer (which shares
    // the message's commit when the bot answers within the turn's wait, and takes one of its
    // own otherwise). Frames arriving in one turn share a commit, so there are at most that
    // many commits; how many fewer depends on timing and is not asserted.
    CHECK(counted.commits.load() <= 3 * kVisitors);
    CHECK(hub.metric("madoguchi_store_commits_total") == doctest::Approx(counted.commits.load()));
    CHECK(hub.metric("madoguchi_store_failed_commits_total") == 0);
    for (auto& c : clients) CHECK(c->close(5000));
  }

  TEST_CASE("hub: conversations leave memory when idle and come back from the store") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    auto sqlite = hub::open_sqlite_store(dir.file("hub.db"));
    REQUIRE(sqlite.is_ok());
    hub::HubConfig cfg;
    cfg.conversation_idle_ms = 200;
    InProcessHub hub(cfg, std::move(*sqlite));

    const std::string state = dir.file("visitor.json");
    std::string conversation;
    std::int64_t last_seq = 0;
    {
      Recorder rec;
      auto client = visitor(hub.url(), state, rec);
      auto id = client->send("返品したい");
      REQUIRE(id.is_ok());
      REQUIRE(rec.wait([&](const auto& evs) { return count(evs, ack_of(*id)) == 1 && count(evs, is_bot) == 1; }));
      // Connected: kept however long it is idle.
      std::this_thread::sleep_for(400ms);
      CHECK(hub.metric("madoguchi_conversations_cached") == 1);
      REQUIRE(client->close(5000));
      conversation = client->conversation();
      last_seq = client->last_seq();
    }
    REQUIRE(eventually([&] { return hub.metric("madoguchi_conversations_cached") == 0; }));
    CHECK(hub.metric("madoguchi_conversations_evicted_total") >= 1);

    // The same visitor comes back (its token in the state file): the conversation is read
    // from the store, numbering goes on, and the bot answers.
    Recorder rec;
    auto client = visitor(hub.url(), state, rec);
    auto id = client->send("送料はいくらですか");
    REQUIRE(id.is_ok());
    REQUIRE(rec.wait([&](const auto& evs) { return count(evs, ack_of(*id)) == 1 && count(evs, is_bot) == 1; }));
    CHECK(client->conversation() == conversation);
    auto evs = rec.events();
    for (const auto& e : evs) {
      if (e.kind == Kind::kAck && e.frame.id == *id) CHECK(*e.frame.seq == last_seq + 1);
    }
    CHECK(hub.metric("madoguchi_conversations_cached") == 1);
    CHECK(client->close(5000));
  }

  TEST_CASE("hub: beyond max_cached_conversations the least recently used leave memory") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    auto sqlite = hub::open_sqlite_store(dir.file("hub.db"));
    REQUIRE(sqlite.is_ok());
    hub::HubConfig cfg;
    cfg.max_cached_conversations = 2;
    cfg.conversation_idle_ms = 400;  // also sets how often the hub looks (every 100 ms)
    InProcessHub hub(cfg, std::move(*sqlite));

    std::vector<std::unique_ptr<Recorder>> recs;
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 4; ++i) {
      recs.push_back(std::make_unique<Recorder>());
      clients.push_back(visitor(hub.url(), "", *recs.back()));
      REQUIRE(recs.back()->wait([](const auto& evs) { return count(evs, [](const ClientEvent& e) { return e.kind == Kind::kWelcome; }) == 1; }));
    }
    // All four are connected: none may leave, whatever the cap.
    std::this_thread::sleep_for(250ms);
    CHECK(hub.metric("madoguchi_conversations_cached") == 4);
    for (auto& c : clients) CHECK(c->close(5000));
    REQUIRE(eventually([&] { return hub.metric("madoguchi_conversations_cached") <= 2; }));
    REQUIRE(eventually([&] { return hub.metric("madoguchi_conversations_cached") == 0; }));
  }

  TEST_CASE("hub: a message acknowledged but left unanswered by a crash is answered when the visitor comes back") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    const std::string path = dir.file("hub.db");
    const std::string state = dir.file("visitor.json");
    const std::string conversation = first_conversation(path, state);
    // What a crash leaves between the commit of a visitor's message (acknowledged) and the
    // commit of the bot's answer: the message, stored last.
    store_messages(path, conversation, {stored_message("visitor", "m-before-the-crash", "送料はいくらですか")});
    auto sqlite = hub::open_sqlite_store(path);
    REQUIRE(sqlite.is_ok());
    InProcessHub hub({}, std::move(*sqlite));
    Recorder rec;
    auto client = visitor(hub.url(), state, rec);  // the same visitor: its token in the state file
    REQUIRE(rec.wait([&](const auto& evs) { return count(evs, is_bot) == 1; }));
    CHECK(client->conversation() == conversation);
    REQUIRE(client->close(5000));

    auto check = hub::open_sqlite_store(path);
    REQUIRE(check.is_ok());
    auto msgs = (*check)->messages_after(conversation, 0, 100);
    REQUIRE(msgs.is_ok());
    REQUIRE(msgs->size() == 4);  // question, answer, the question left, its answer: once
    CHECK((*msgs)[2].client_id == "m-before-the-crash");
    CHECK((*msgs)[3].sender == "bot");
    CHECK((*msgs)[3].body_json.find("送料") != std::string::npos);
  }

  TEST_CASE("hub: several messages left unanswered by a crash are each answered, in order") {
    auto msgs = stored_after_answers({stored_message("visitor", "m-first-left", "送料はいくらですか"),
                                      stored_message("visitor", "m-second-left", "How do I return an item?")},
                                     2);
    REQUIRE(msgs.size() == 6);  // the first run's two, the two left, then an answer to each
    CHECK(msgs[4].sender == "bot");
    CHECK(msgs[4].body_json.find("送料") != std::string::npos);
    CHECK(msgs[5].sender == "bot");
    CHECK(msgs[5].body_json.find("\"entry\":\"returns-window\"") != std::string::npos);
  }

  TEST_CASE("hub: of two quick questions, the one a crash left unanswered after the other's answer is answered") {
    // Both questions were stored in one commit, the first's answer in the next, and the hub
    // was killed before the second's: the conversation ends with an answer, yet one is owed.
    auto msgs = stored_after_answers({stored_message("visitor", "m-quick-1", "送料はいくらですか"),
                                      stored_message("visitor", "m-quick-2", "How do I return an item?"),
                                      stored_message("bot", "b-quick-1", "送料は全国一律550円です。")},
                                     2);  // the stored answer, replayed, and the one owed
    REQUIRE(msgs.size() == 6);  // the first run's two, the three stored, one answer
    CHECK(msgs[5].sender == "bot");
    CHECK(msgs[5].body_json.find("\"entry\":\"returns-window\"") != std::string::npos);
  }

  TEST_CASE("hub: a long conversation comes back into memory with its last turns, not its first") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    const std::string path = dir.file("hub.db");
    const std::string state = dir.file("visitor.json");
    const std::string conversation = first_conversation(path, state);
    // 1,500 more turns, as months of visits would leave them: more than the hub reads back.
    store_messages(path, conversation, question_answer_turns(1500));
    {
      auto sqlite = hub::open_sqlite_store(path);
      REQUIRE(sqlite.is_ok());
      InProcessHub hub({}, std::move(*sqlite));
      Recorder rec;
      auto client = visitor(hub.url(), state, rec);  // the same visitor: its token in the state file
      auto id = client->send("担当者と話したい");
      REQUIRE(id.is_ok());
      REQUIRE(rec.wait([&](const auto& evs) { return mdg_test::answer_to(evs, *id) >= 0; }));
      CHECK(client->conversation() == conversation);
      REQUIRE(client->close(5000));
    }
    // The hand-off package shows what the bot remembered: the last turns before the request.
    auto check = hub::open_sqlite_store(path);
    REQUIRE(check.is_ok());
    auto rec = (*check)->find_conversation(conversation);
    REQUIRE(rec.is_ok());
    REQUIRE(rec->has_value());
    const std::string& handoff = (*rec)->handoff_json;
    CHECK(handoff.find("\"question 1499\"") != std::string::npos);
    CHECK(handoff.find("\"answer 1499\"") != std::string::npos);
    CHECK(handoff.find("\"question 0\"") == std::string::npos);
    CHECK(handoff.find("担当者と話したい") != std::string::npos);
  }

  TEST_CASE("hub: a resumed visitor gets what it missed a page at a time, in order, before anything new") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    const std::string path = dir.file("hub.db");
    const std::string state = dir.file("visitor.json");
    const std::string conversation = first_conversation(path, state);
    store_messages(path, conversation, question_answer_turns(150));  // many replay pages, stored while it was away
    auto sqlite = hub::open_sqlite_store(path);
    REQUIRE(sqlite.is_ok());
    InProcessHub hub({}, std::move(*sqlite));
    Recorder rec;
    auto client = visitor(hub.url(), state, rec);  // resumes after the first run's last seq
    const std::int64_t before = client->last_seq();
    auto id = client->send("送料はいくらですか");  // sent right after the welcome, during the replay
    REQUIRE(id.is_ok());
    REQUIRE(rec.wait([&](const auto& evs) { return mdg_test::answer_to(evs, *id) >= 0; }));
    REQUIRE(client->close(5000));
    // Every missed frame came once, in seq order, then the ack and the answer (a frame out of
    // order would have been dropped by the client as already seen).
    std::vector<std::int64_t> seqs;
    for (const auto& e : rec.events()) {
      if ((e.kind == Kind::kMessage || e.kind == Kind::kEvent || e.kind == Kind::kAck) && e.frame.seq) seqs.push_back(*e.frame.seq);
    }
    REQUIRE(seqs.size() >= 300 + 2);
    CHECK(std::is_sorted(seqs.begin(), seqs.end()));
    CHECK(std::adjacent_find(seqs.begin(), seqs.end()) == seqs.end());
    CHECK(seqs.front() == before + 1);
    CHECK(seqs[299] == before + 300);
  }

  TEST_CASE("hub: an agent taking a long conversation gets its last messages, within a frame clients take") {
    using AKind = AgentEvent::Kind;
    mdg_test::TempDir dir("madoguchi-hub-test");
    const std::string path = dir.file("hub.db");
    const std::string conversation = first_conversation(path, dir.file("visitor.json"));
    std::vector<hub::NewMessage> long_ones;  // 3,000 of about 1 KB: more than a conversation frame carries
    for (int i = 0; i < 3000; ++i) {
      const std::string n = std::to_string(i);
      long_ones.push_back(stored_message("visitor", "visitor-" + n, "question " + n + " " + std::string(1000, 'x')));
    }
    store_messages(path, conversation, long_ones);
    auto sqlite = hub::open_sqlite_store(path);
    REQUIRE(sqlite.is_ok());
    hub::HubConfig cfg;
    cfg.agents = {{"sato", "pw", ""}};
    InProcessHub hub(cfg, std::move(*sqlite));
    mdg_test::Recorder<AgentEvent> rec;
    auto sato = logged_in_agent(hub.port(), "sato", "pw", rec);
    REQUIRE(sato->take(conversation));
    auto is_conversation = [](const AgentEvent& e) { return e.kind == AKind::kConversation; };
    REQUIRE(rec.wait([&](const auto& evs) { return mdg_test::find(evs, is_conversation) >= 0; }));
    const auto evs = rec.events();
    const AgentEvent& taken = evs[static_cast<std::size_t>(mdg_test::find(evs, is_conversation))];
    CHECK(taken.frame.messages_json.size() <= 2u << 20);
    REQUIRE(taken.transcript.size() > 100);
    CHECK(taken.transcript.size() < 3000);
    CHECK(*taken.transcript.front().seq > 1);  // the oldest stay in the store
    CHECK(taken.transcript.back().event == "agent_joined");  // the newest come
    CHECK(taken.transcript[taken.transcript.size() - 2].text.rfind("question 2999 ", 0) == 0);
    CHECK(sato->close(2000));
  }

  TEST_CASE("hub: bot_threads is 1 to 64") {
    static_assert(hub::HubConfig::kMaxBotThreads == 64);
    for (unsigned n : {0u, hub::HubConfig::kMaxBotThreads + 1}) {
      hub::HubConfig cfg;
      cfg.port = 0;
      cfg.secret = "a test secret of 32 bytes.......";
      cfg.bot_threads = n;
      auto store = hub::open_sqlite_store(":memory:");
      REQUIRE(store.is_ok());
      auto h = hub::Hub::create(cfg, mdg_test::shop_bot(), std::move(*store));
      REQUIRE_FALSE(h.is_ok());
      CHECK(h.status().code() == ErrorCode::kInvalidArgument);
      CHECK(h.status().message().find("bot_threads") != std::string::npos);
    }
  }

  TEST_CASE("hub: listens on its host address only") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    auto sqlite = hub::open_sqlite_store(dir.file("hub.db"));
    REQUIRE(sqlite.is_ok());
    hub::HubConfig cfg;  // host 127.0.0.1
    InProcessHub hub(cfg, std::move(*sqlite));
    CHECK(hub.metric("madoguchi_store_commits_total") >= 0);  // it serves on 127.0.0.1
    // Another socket may take the same port on another address (127.0.0.2 is loopback too on
    // Linux) unless the hub holds every address ([::] or 0.0.0.0).
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(hub.port()));
    REQUIRE(::inet_pton(AF_INET, "127.0.0.2", &addr.sin_addr) == 1);
    const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int err = errno;
    ::close(fd);
    CHECK_MESSAGE(rc == 0, "127.0.0.2:", hub.port(), " is taken (errno ", err, "): the hub listens on every address");
  }

  TEST_CASE("hub: agents log in with scrypt password hashes, checked off the serving thread") {
    auto hash = hub::hash_agent_password("s3cret pw", hub::kMinPasswordCost);
    REQUIRE_MESSAGE(hash.is_ok(), hash.status().to_string());
    CHECK(hash->rfind("$scrypt$ln=10,r=8,p=1$", 0) == 0);
    auto again = hub::hash_agent_password("s3cret pw", hub::kMinPasswordCost);
    REQUIRE(again.is_ok());
    CHECK(*again != *hash);  // a salt of its own
    hub::HubConfig cfg;
    cfg.agents = {{"sato", "", *hash},
                  // RFC 7914, section 12: scrypt("pleaseletmein", "SodiumChloride", N = 16384, r = 8,
                  // p = 1), 64 bytes
                  {"rfc", "",
                   "$scrypt$ln=14,r=8,p=1$U29kaXVtQ2hsb3JpZGU$cCO9yzr9c0hGHAbNgf046/2o+7qQT44+qbVD9lRdofLVQylVYT8Pz2LUl"
                   "wUkKpr55h6F3A1lHkDfzwF7RVdYhw"},
                  {"suzuki", "pw2", ""}};
    auto store = hub::open_sqlite_store(":memory:");
    REQUIRE(store.is_ok());
    InProcessHub hub(cfg, std::move(*store));
    const std::string url = "ws://127.0.0.1:" + std::to_string(hub.port()) + "/v1/agent";
    auto welcomed = [&url](const std::string& name, const std::string& password) {
      using AKind = AgentEvent::Kind;
      mdg_test::Recorder<AgentEvent> rec;
      auto agent = mdg_test::make_client(mdg_test::agent_config(url, name, password, rec));
      REQUIRE(agent->start());
      auto welcome = [](const AgentEvent& e) { return e.kind == AKind::kWelcome; };
      REQUIRE(rec.wait([&](const auto& evs) {
        return mdg_test::find(evs, welcome) >= 0 || mdg_test::find(evs, mdg_test::state_is(ConnectionState::kClosed)) >= 0;
      }));
      const auto evs = rec.events();
      const bool ok = mdg_test::find(evs, welcome) >= 0;
      if (!ok) {
        CHECK(mdg_test::find(evs, [](const AgentEvent& e) {
                return e.kind == AKind::kError && e.frame.error == protocol::ErrorKind::kUnauthorized;
              }) >= 0);
      }
      CHECK(agent->close(2000));
      return ok;
    };
    CHECK(welcomed("sato", "s3cret pw"));
    CHECK_FALSE(welcomed("sato", "s3cret pw "));
    CHECK_FALSE(welcomed("nobody", "s3cret pw"));  // checked against a decoy, refused the same way
    CHECK(welcomed("rfc", "pleaseletmein"));
    CHECK_FALSE(welcomed("rfc", "PleaseLetMeIn"));
    CHECK(welcomed("suzuki", "pw2"));  // a plain password, compared at once
    CHECK_FALSE(welcomed("suzuki", "pw"));
    CHECK(hub.metric("madoguchi_agent_logins_total{result=\"ok\"}") == 3);
    CHECK(hub.metric("madoguchi_agent_logins_total{result=\"refused\"}") == 4);
    CHECK(hub.metric("madoguchi_agent_logins_total{result=\"busy\"}") == 0);
  }

  TEST_CASE("hub: agent accounts are checked when the hub is made") {
    auto refused = [](std::vector<hub::AgentAccount> agents) {
      hub::HubConfig cfg;
      cfg.port = 0;
      cfg.secret = "a test secret of 32 bytes.......";
      cfg.agents = std::move(agents);
      auto store = hub::open_sqlite_store(":memory:");
      REQUIRE(store.is_ok());
      auto h = hub::Hub::create(cfg, mdg_test::shop_bot(), std::move(*store));
      REQUIRE_FALSE(h.is_ok());
      CHECK(h.status().code() == ErrorCode::kInvalidArgument);
      return h.status().message();
    };
    const std::string salt = "c2FsdHNhbHQ", key = "O1vB+2h1/2Fvx2tFQ7ELtadFd4FFHyFHDpHVFBrGTeM";
    CHECK(refused({{"", "pw", ""}}).find("no name") != std::string::npos);
    CHECK(refused({{"sato", "", ""}}).find("either password_hash") != std::string::npos);
    CHECK(refused({{"sato", "pw", "$scrypt$ln=10,r=8,p=1$" + salt + "$" + key}}).find("either") != std::string::npos);
    CHECK(refused({{"sato", "pw", ""}, {"sato", "pw2", ""}}).find("two accounts") != std::string::npos);
    const std::string bad[][2] = {
        {"$2b$12$abcdefghijklmnopqrstuv", "must start with \"$scrypt$\""},
        {"$scrypt$ln=10,r=8,p=1$" + salt, "three parts"},
        {"$scrypt$ln=10,r=8$" + salt + "$" + key, "ln=<log2 N>,r=<r>,p=<p>"},
        {"$scrypt$ln=9,r=8,p=1$" + salt + "$" + key, "out of range"},
        {"$scrypt$ln=20,r=8,p=1$" + salt + "$" + key, "MiB for each login"},
        {"$scrypt$ln=10,r=8,p=1$c2FsdA$" + key, "the salt"},            // 4 bytes
        {"$scrypt$ln=10,r=8,p=1$" + salt + "$" + key + "=", "the key"},  // padding
        {"$scrypt$ln=10,r=8,p=1$" + salt + "$" + key.substr(0, 20), "the key"},
    };
    for (const auto& [hash, reason] : bad) {
      CAPTURE(hash);
      const std::string message = refused({{"sato", "", hash}});
      CHECK(message.find("agent \"sato\": password_hash: ") != std::string::npos);
      CHECK(message.find(reason) != std::string::npos);
    }
    CHECK_FALSE(hub::hash_agent_password("").is_ok());
    CHECK_FALSE(hub::hash_agent_password("pw", hub::kMinPasswordCost - 1).is_ok());
    CHECK_FALSE(hub::hash_agent_password("pw", hub::kMaxPasswordCost + 1).is_ok());
    static_assert(128 * 8 * (1 << hub::kMaxPasswordCost) == 256 << 20);  // what the hub accepts: r = 8
  }

  TEST_CASE("hub: agents turned away while passwords are being checked come back and get in") {
    // Sixteen agents log in at once with a cost-15 hash (about 0.1-0.3 s a check here): the
    // hub checks 8 at a time and answers the others rate_limited; their clients connect again
    // after the back-off and say hello again, until every one is welcomed.
    auto hash = hub::hash_agent_password("team pw");
    REQUIRE(hash.is_ok());
    hub::HubConfig cfg;
    cfg.agents = {{"team", "", *hash}};
    auto store = hub::open_sqlite_store(":memory:");
    REQUIRE(store.is_ok());
    InProcessHub hub(cfg, std::move(*store));
    const std::string url = "ws://127.0.0.1:" + std::to_string(hub.port()) + "/v1/agent";
    constexpr int kAgents = 16;
    std::vector<std::unique_ptr<mdg_test::Recorder<AgentEvent>>> recs;
    std::vector<std::unique_ptr<AgentClient>> agents;
    for (int i = 0; i < kAgents; ++i) {
      recs.push_back(std::make_unique<mdg_test::Recorder<AgentEvent>>());
      agents.push_back(mdg_test::make_client(mdg_test::agent_config(url, "team", "team pw", *recs.back())));
    }
    for (auto& a : agents) REQUIRE(a->start());
    for (auto& rec : recs) {
      CHECK(rec->wait([](const auto& evs) {
        return mdg_test::find(evs, [](const AgentEvent& e) { return e.kind == AgentEvent::Kind::kWelcome; }) >= 0;
      }));
    }
    for (auto& a : agents) CHECK(a->state() == ConnectionState::kConnected);
    CHECK(hub.metric("madoguchi_agent_logins_total{result=\"ok\"}") == kAgents);
    CHECK(hub.metric("madoguchi_agent_logins_total{result=\"refused\"}") == 0);
    // Whether some were turned away depends on how quickly they came; usually 8 of them.
    MESSAGE("hellos turned away while 8 were checked: ", hub.metric("madoguchi_agent_logins_total{result=\"busy\"}"));
    for (auto& a : agents) CHECK(a->close(2000));
  }

  TEST_CASE("hub: warns about plain passwords, and about agents logging in over ws:// beyond loopback") {
    auto warnings = [](const std::string& host, std::vector<hub::AgentAccount> agents) {
      auto lines = std::make_shared<std::vector<std::string>>();
      hub::HubConfig cfg;
      cfg.host = host;
      cfg.port = 0;
      cfg.secret = "a test secret of 32 bytes.......";
      cfg.agents = std::move(agents);
      cfg.logger.sink = [lines](LogLevel level, std::string_view line) {
        if (level == LogLevel::kWarning) lines->emplace_back(line);
      };
      auto store = hub::open_sqlite_store(":memory:");
      REQUIRE(store.is_ok());
      auto h = hub::Hub::create(cfg, mdg_test::shop_bot(), std::move(*store));
      REQUIRE_MESSAGE(h.is_ok(), h.status().to_string());
      std::string all;
      for (const auto& l : *lines) all += l + "\n";
      return all;
    };
    auto hash = hub::hash_agent_password("pw", hub::kMinPasswordCost);
    REQUIRE(hash.is_ok());
    const std::string local_plain = warnings("127.0.0.1", {{"sato", "pw", ""}, {"suzuki", "", *hash}});
    CHECK(local_plain.find("agent accounts with a plain password: sato;") != std::string::npos);
    CHECK(local_plain.find("in clear") == std::string::npos);
    CHECK(warnings("127.0.0.1", {{"suzuki", "", *hash}}).empty());
    const std::string everywhere = warnings("0.0.0.0", {{"suzuki", "", *hash}});
    CHECK(everywhere.find("agents log in over ws:// on 0.0.0.0: their passwords cross the network in clear") !=
          std::string::npos);
    CHECK(warnings("0.0.0.0", {}).empty());  // no agent, nothing to say
  }

  TEST_CASE("hub: an agent gone for agent_grace_ms leaves its conversations to the queue") {
    using AKind = AgentEvent::Kind;
    hub::HubConfig cfg;
    cfg.agents = {{"sato", "pw", ""}, {"suzuki", "pw2", ""}};
    cfg.agent_grace_ms = 300;
    auto store = hub::open_sqlite_store(":memory:");
    REQUIRE(store.is_ok());
    InProcessHub hub(cfg, std::move(*store));
    const std::string agent_url = "ws://127.0.0.1:" + std::to_string(hub.port()) + "/v1/agent";
    mdg_test::TempDir dir("madoguchi-hub-test");
    Recorder vrec;
    auto v = visitor(hub.url(), dir.file("visitor.json"), vrec);
    auto asked = v->send("担当者と話したい");
    REQUIRE(asked.is_ok());
    auto is_event = [](const std::string& name) {
      return [name](const ClientEvent& e) { return e.kind == Kind::kEvent && e.frame.event == name; };
    };
    REQUIRE(vrec.wait([&](const auto& evs) { return count(evs, is_event("handoff_started")) == 1; }));
    const std::string conversation = v->conversation();

    mdg_test::Recorder<AgentEvent> srec;
    auto sato = logged_in_agent(hub.port(), "sato", "pw", srec);
    REQUIRE(sato->take(conversation));
    REQUIRE(vrec.wait([&](const auto& evs) { return count(evs, is_event("agent_joined")) == 1; }));
    // A second visitor is handed off (with the same priority) while sato has the first.
    Recorder wrec;
    auto w = visitor(hub.url(), dir.file("second.json"), wrec);
    REQUIRE(w->send("担当者と話したい").is_ok());
    REQUIRE(wrec.wait([&](const auto& evs) { return count(evs, is_event("handoff_started")) == 1; }));
    REQUIRE(sato->close(2000));  // sato goes away and does not come back

    REQUIRE(vrec.wait([&](const auto& evs) { return count(evs, is_event("agent_left")) == 1; }));
    const auto evs = vrec.events();
    const long left = mdg_test::find(evs, is_event("agent_left"));
    CHECK(evs[static_cast<std::size_t>(left)].data.agent == "sato");
    CHECK(evs[static_cast<std::size_t>(left)].frame.seq.has_value());  // stored, like every event
    REQUIRE(vrec.wait([&](const auto& e) { return mdg_test::find(e, is_event("queue_position"), left) >= 0; }));
    const auto after = vrec.events();
    // Back at the head of the queue: it was handed off before the second visitor.
    CHECK(after[static_cast<std::size_t>(mdg_test::find(after, is_event("queue_position"), left))].data.queue_position == 1);
    REQUIRE(wrec.wait([&](const auto& e) {
      return !e.empty() && e.back().kind == Kind::kEvent && e.back().frame.event == "queue_position" &&
             e.back().data.queue_position == 2;
    }));

    // Another agent finds it waiting, and takes it.
    mdg_test::Recorder<AgentEvent> zrec;
    auto suzuki = mdg_test::make_client(mdg_test::agent_config(agent_url, "suzuki", "pw2", zrec));
    REQUIRE(suzuki->start());
    REQUIRE(zrec.wait([&](const auto& zevs) {
      return mdg_test::find(zevs, [&](const AgentEvent& e) {
               return e.kind == AKind::kQueue && std::any_of(e.queue.begin(), e.queue.end(), [&](const QueueEntry& q) {
                        return q.conversation == conversation && q.state == "waiting" && q.agent.empty();
                      });
             }) >= 0;
    }));
    REQUIRE(suzuki->take(conversation));
    REQUIRE(vrec.wait([&](const auto& e) { return count(e, is_event("agent_joined")) == 2; }));
    CHECK(suzuki->close(2000));
    CHECK(v->close(2000));
    CHECK(w->close(2000));
  }

  TEST_CASE("hub: agents gone give back all their conversations, past the first 10,000 held") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    const std::string path = dir.file("hub.db");
    constexpr int kSuzukis = 10000;  // the most the hub reads of a state at once
    {
      auto sqlite = hub::open_sqlite_store(path);
      REQUIRE(sqlite.is_ok());
      hub::Store& store = **sqlite;
      REQUIRE(store.begin_batch().is_ok());
      auto held = [&](const std::string& id, const std::string& agent, double priority) {
        hub::ConversationRecord r;
        r.id = id;
        r.state = "agent";
        r.assigned_agent = agent;
        r.priority = priority;
        r.created_ms = r.updated_ms = 1000;
        REQUIRE(store.create_conversation(r).is_ok());
      };
      for (int i = 0; i < kSuzukis; ++i) held("z-" + std::to_string(i), "suzuki", 1);
      held("sato-1", "sato", 0);  // last in the order of held conversations
      REQUIRE(store.end_batch().is_ok());
    }
    hub::HubConfig cfg;
    cfg.agents = {{"sato", "pw", ""}, {"suzuki", "pw2", ""}};
    cfg.agent_grace_ms = 100;  // neither comes back
    auto sqlite = hub::open_sqlite_store(path);
    REQUIRE(sqlite.is_ok());
    InProcessHub hub(cfg, std::move(*sqlite));
    CHECK(eventually([&] { return hub.metric("madoguchi_conversations_waiting") == kSuzukis + 1; }, 120s));
  }

  TEST_CASE("hub: after a restart, the grace of the agents holding conversations runs from the start") {
    mdg_test::TempDir dir("madoguchi-hub-test");
    const std::string path = dir.file("hub.db");
    hub::HubConfig cfg;
    cfg.agents = {{"sato", "pw", ""}};
    cfg.agent_grace_ms = 300;
    std::string conversation;
    auto is_event = [](const std::string& name) {
      return [name](const ClientEvent& e) { return e.kind == Kind::kEvent && e.frame.event == name; };
    };
    {
      auto sqlite = hub::open_sqlite_store(path);
      REQUIRE(sqlite.is_ok());
      InProcessHub hub(cfg, std::move(*sqlite));
      Recorder vrec;
      auto v = visitor(hub.url(), dir.file("visitor.json"), vrec);
      REQUIRE(v->send("担当者と話したい").is_ok());
      REQUIRE(vrec.wait([&](const auto& evs) { return count(evs, is_event("handoff_started")) == 1; }));
      conversation = v->conversation();
      mdg_test::Recorder<AgentEvent> srec;
      auto sato = logged_in_agent(hub.port(), "sato", "pw", srec);
      REQUIRE(sato->take(conversation));
      REQUIRE(vrec.wait([&](const auto& evs) { return count(evs, is_event("agent_joined")) == 1; }));
      // The hub stops with sato still holding the conversation (the clients go with it).
      (void)sato->close(0);
      (void)v->close(0);
    }
    auto sqlite = hub::open_sqlite_store(path);
    REQUIRE(sqlite.is_ok());
    InProcessHub hub(cfg, std::move(*sqlite));
    Recorder vrec;
    auto v = visitor(hub.url(), dir.file("visitor.json"), vrec);  // the same visitor comes back
    REQUIRE(vrec.wait([&](const auto& evs) { return count(evs, is_event("agent_left")) == 1; }));
    CHECK(v->conversation() == conversation);
    CHECK(v->close(2000));
    CHECK(eventually([&] { return hub.metric("madoguchi_conversations_waiting") == 1; }));
  }
}
