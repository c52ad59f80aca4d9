#include <madoguchi/store.hpp>

#include <doctest/doctest.h>

#include "temp_dir.hpp"
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using madoguchi::ErrorCode;
using madoguchi::Status;
using madoguchi::Result;
using namespace madoguchi::hub;

namespace {

namespace fs = std::filesystem;

// Builds "m7" from ("m", 7). Not "m" + std::to_string(7): GCC 12 at -O3 warns on that (a false -Wrestrict in
// operator+(const char*, std::string&&)).
std::string numbered(std::string_view prefix, int n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

bool mentions(const Status& s, const std::string& what) {
  return s.message().find(what) != std::string::npos;
}

// Every test's files live in a directory of their own.
struct TempDir : mdg_test::TempDir {
  TempDir() : mdg_test::TempDir("madoguchi-store-test") {}
};

std::unique_ptr<Store> open_ok(const std::string& path, SqliteStoreOptions options = {}) {
  auto store = open_sqlite_store(path, options);
  REQUIRE_MESSAGE(store.is_ok(), store.status().to_string());
  return std::move(store).value();
}

ConversationRecord conversation(const std::string& id, const std::string& state = "bot",
                                double priority = 0, std::int64_t updated_ms = 1000) {
  ConversationRecord r;
  r.id = id;
  r.state = state;
  r.locale = "ja";
  r.visitor_json = R"({"name":"佐藤","plan":"gold"})";
  r.priority = priority;
  r.created_ms = 1000;
  r.updated_ms = updated_ms;
  return r;
}

NewMessage message(const std::string& client_id, const std::string& text,
                   const std::string& sender = "visitor") {
  NewMessage m;
  m.client_id = client_id;
  m.sender = sender;
  m.kind = "message";
  m.body_json = R"({"text":")" + text + R"("})";
  m.created_ms = 2000;
  return m;
}

std::int64_t append_ok(Store& store, const std::string& conversation_id, const NewMessage& m) {
  auto r = store.append(conversation_id, m);
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  CHECK_FALSE(r->duplicate);
  return r->seq;
}

std::int64_t count_ok(Store& store) {
  auto n = store.count_messages();
  REQUIRE_MESSAGE(n.is_ok(), n.status().to_string());
  return *n;
}

// Runs SQL on a file with the SQLite C API directly, outside any Store.
void raw_sql(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  const std::string error = sqlite3_errmsg(db);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, error);
}

// The first column of the first row of a query on a file opened read-only, outside any Store.
std::string raw_value(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK, sqlite3_errmsg(db));
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  const std::string value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

}  // namespace

TEST_SUITE("hub.store") {
  TEST_CASE("conversations are created, found and updated") {
    TempDir dir;
    auto store = open_ok(dir.file("hub.db"));

    ConversationRecord c = conversation("c-1");
    c.last_seq = 42;  // owned by the store: ignored
    REQUIRE_MESSAGE(store->create_conversation(c).is_ok(), "create");

    auto found = store->find_conversation("c-1");
    REQUIRE_MESSAGE(found.is_ok(), found.status().to_string());
    REQUIRE(found->has_value());
    const ConversationRecord& got = **found;
    CHECK(got.id == "c-1");
    CHECK(got.state == "bot");
    CHECK(got.locale == "ja");
    CHECK(got.visitor_json == R"({"name":"佐藤","plan":"gold"})");
    CHECK(got.assigned_agent.empty());
    CHECK(got.handoff_json.empty());
    CHECK(got.created_ms == 1000);
    CHECK(got.updated_ms == 1000);
    CHECK(got.last_seq == 0);

    SUBCASE("a missing conversation is nullopt, not an error") {
      auto none = store->find_conversation("nope");
      REQUIRE(none.is_ok());
      CHECK_FALSE(none->has_value());
    }

    SUBCASE("an existing id cannot be created twice") {
      Status s = store->create_conversation(conversation("c-1", "waiting"));
      CHECK(s.code() == ErrorCode::kInvalidArgument);
      CHECK(mentions(s, "c-1"));
      CHECK(mentions(s, "already exists"));
      CHECK((*store->find_conversation("c-1"))->state == "bot");
    }

    SUBCASE("update replaces the mutable fields and keeps created_ms and last_seq") {
      REQUIRE(store->append("c-1", message("m1", "hello")).is_ok());
      ConversationRecord u = got;
      u.state = "agent";
      u.locale = "en";
      u.visitor_json = R"({"name":"Sato"})";
      u.assigned_agent = "agent:tanaka";
      u.priority = 2.5;
      u.handoff_json = R"({"reason":"asked for a person"})";
      u.created_ms = 7;   // ignored
      u.updated_ms = 5000;
      u.last_seq = 99;    // ignored
      REQUIRE_MESSAGE(store->update_conversation(u).is_ok(), "update");
      auto after = store->find_conversation("c-1");
      REQUIRE(after.is_ok());
      REQUIRE(after->has_value());
      CHECK((*after)->state == "agent");
      CHECK((*after)->locale == "en");
      CHECK((*after)->visitor_json == R"({"name":"Sato"})");
      CHECK((*after)->assigned_agent == "agent:tanaka");
      CHECK((*after)->priority == doctest::Approx(2.5));
      CHECK((*after)->handoff_json == R"({"reason":"asked for a person"})");
      CHECK((*after)->created_ms == 1000);
      CHECK((*after)->updated_ms == 5000);
      CHECK((*after)->last_seq == 1);
    }

    SUBCASE("updating a missing conversation is kNotFound") {
      Status s = store->update_conversation(conversation("ghost"));
      CHECK(s.code() == ErrorCode::kNotFound);
      CHECK(mentions(s, "ghost"));
    }
  }

  TEST_CASE("append numbers each conversation's messages 1, 2, 3 independently") {
    TempDir dir;
    auto store = open_ok(dir.file("hub.db"));
    REQUIRE(store->create_conversation(conversation("a")).is_ok());
    REQUIRE(store->create_conversation(conversation("b")).is_ok());

    CHECK(append_ok(*store, "a", message("a1", "one")) == 1);
    CHECK(append_ok(*store, "a", message("a2", "two")) == 2);
    CHECK(append_ok(*store, "b", message("b1", "one")) == 1);
    CHECK(append_ok(*store, "a", message("", "hub-made", "bot")) == 3);
    CHECK(append_ok(*store, "b", message("", "joined", "system")) == 2);

    CHECK((*store->find_conversation("a"))->last_seq == 3);
    CHECK((*store->find_conversation("b"))->last_seq == 2);
    CHECK(count_ok(*store) == 5);

    SUBCASE("appending to a missing conversation is kNotFound and stores nothing") {
      auto r = store->append("ghost", message("g1", "boo"));
      CHECK(r.status().code() == ErrorCode::kNotFound);
      CHECK(mentions(r.status(), "ghost"));
      CHECK(count_ok(*store) == 5);
    }
  }

  TEST_CASE("a resent client id is stored once") {
    TempDir dir;
    auto store = open_ok(dir.file("hub.db"));
    REQUIRE(store->create_conversation(conversation("a")).is_ok());
    REQUIRE(store->create_conversation(conversation("b")).is_ok());

    CHECK(append_ok(*store, "a", message("m-7f3a", "first")) == 1);
    CHECK(append_ok(*store, "a", message("m-other", "second")) == 2);

    SUBCASE("the same id again gives the first seq, duplicate = true, and no new row") {
      auto again = store->append("a", message("m-7f3a", "first, resent with other text"));
      REQUIRE_MESSAGE(again.is_ok(), again.status().to_string());
      CHECK(again->seq == 1);
      CHECK(again->duplicate);
      CHECK(count_ok(*store) == 2);
      CHECK((*store->find_conversation("a"))->last_seq == 2);
      auto all = store->messages_after("a", 0, 10);
      REQUIRE(all.is_ok());
      REQUIRE(all->size() == 2);
      CHECK((*all)[0].body_json == R"({"text":"first"})");  // the first body is kept
      // the next new message continues without a gap
      CHECK(append_ok(*store, "a", message("m-new", "third")) == 3);
    }

    SUBCASE("the same client id in another conversation is a different message") {
      CHECK(append_ok(*store, "b", message("m-7f3a", "first in b")) == 1);
      CHECK(count_ok(*store) == 3);
    }

    SUBCASE("hub-made messages (empty client id) are never duplicates") {
      CHECK(append_ok(*store, "a", message("", "x", "bot")) == 3);
      CHECK(append_ok(*store, "a", message("", "x", "bot")) == 4);
      CHECK(count_ok(*store) == 4);
    }

    SUBCASE("find_message gives a client id's seq in its conversation, and nothing elsewhere") {
      auto found = store->find_message("a", "m-other");
      REQUIRE(found.is_ok());
      CHECK(*found == std::optional<std::int64_t>(2));
      for (auto [conv, id] : {std::pair{"b", "m-7f3a"}, std::pair{"a", "m-none"}, std::pair{"a", ""},
                              std::pair{"no-such", "m-7f3a"}}) {
        CAPTURE(conv);
        CAPTURE(id);
        auto none = store->find_message(conv, id);
        REQUIRE(none.is_ok());
        CHECK_FALSE(none->has_value());
      }
    }
  }

  TEST_CASE("messages_after pages through a conversation in seq order") {
    TempDir dir;
    auto store = open_ok(dir.file("hub.db"));
    REQUIRE(store->create_conversation(conversation("a")).is_ok());
    REQUIRE(store->create_conversation(conversation("b")).is_ok());
    for (int i = 1; i <= 5; ++i) {
      append_ok(*store, "a", message(numbered("a", i), numbered("a", i)));
      append_ok(*store, "b", message(numbered("b", i), numbered("b", i)));
    }
    NewMessage event;
    event.sender = "system";
    event.kind = "event";
    event.body_json = "{\"event\":\"handoff_started\",\n\"reason\":\"返品の相談\"}";
    event.created_ms = 3000;
    CHECK(append_ok(*store, "a", event) == 6);

    SUBCASE("from the start with a limit") {
      auto page = store->messages_after("a", 0, 2);
      REQUIRE_MESSAGE(page.is_ok(), page.status().to_string());
      REQUIRE(page->size() == 2);
      CHECK((*page)[0].seq == 1);
      CHECK((*page)[1].seq == 2);
      CHECK((*page)[0].conversation_id == "a");
      CHECK((*page)[0].client_id == "a1");
      CHECK((*page)[0].sender == "visitor");
      CHECK((*page)[0].kind == "message");
      CHECK((*page)[0].body_json == R"({"text":"a1"})");
      CHECK((*page)[0].created_ms == 2000);
    }
    SUBCASE("the rest after a seq, fewer than the limit") {
      auto page = store->messages_after("a", 3, 100);
      REQUIRE(page.is_ok());
      REQUIRE(page->size() == 3);
      CHECK((*page)[0].seq == 4);
      CHECK((*page)[1].seq == 5);
      CHECK((*page)[2].seq == 6);
      CHECK((*page)[2].client_id.empty());
      CHECK((*page)[2].kind == "event");
      CHECK((*page)[2].body_json == event.body_json);  // byte for byte, UTF-8 and newline included
    }
    SUBCASE("nothing after the last seq, and nothing for limit 0") {
      auto none = store->messages_after("a", 6, 10);
      REQUIRE(none.is_ok());
      CHECK(none->empty());
      auto zero = store->messages_after("a", 0, 0);
      REQUIRE(zero.is_ok());
      CHECK(zero->empty());
    }
    SUBCASE("the largest limit means all") {
      auto all = store->messages_after("b", 0, std::numeric_limits<std::size_t>::max());
      REQUIRE(all.is_ok());
      REQUIRE(all->size() == 5);
      for (std::size_t i = 0; i < all->size(); ++i) {
        CHECK((*all)[i].seq == static_cast<std::int64_t>(i + 1));
        CHECK((*all)[i].conversation_id == "b");
      }
    }
    SUBCASE("an unknown conversation is kNotFound") {
      auto r = store->messages_after("ghost", 0, 10);
      CHECK(r.status().code() == ErrorCode::kNotFound);
    }
  }

  TEST_CASE("conversations_in_state orders by priority, then the longest waiting") {
    TempDir dir;
    auto store = open_ok(dir.file("hub.db"));
    REQUIRE(store->create_conversation(conversation("low-old", "waiting", 0, 100)).is_ok());
    REQUIRE(store->create_conversation(conversation("high-new", "waiting", 5, 900)).is_ok());
    REQUIRE(store->create_conversation(conversation("high-old", "waiting", 5, 200)).is_ok());
    REQUIRE(store->create_conversation(conversation("mid", "waiting", 1.5, 50)).is_ok());
    REQUIRE(store->create_conversation(conversation("busy", "agent", 9, 10)).is_ok());
    REQUIRE(store->create_conversation(conversation("talking", "bot", 9, 10)).is_ok());

    auto queue = store->conversations_in_state("waiting", 10);
    REQUIRE_MESSAGE(queue.is_ok(), queue.status().to_string());
    REQUIRE(queue->size() == 4);
    CHECK((*queue)[0].id == "high-old");
    CHECK((*queue)[1].id == "high-new");
    CHECK((*queue)[2].id == "mid");
    CHECK((*queue)[3].id == "low-old");

    auto top2 = store->conversations_in_state("waiting", 2);
    REQUIRE(top2.is_ok());
    REQUIRE(top2->size() == 2);
    CHECK((*top2)[1].id == "high-new");

    SUBCASE("a state change moves a conversation between queues") {
      ConversationRecord taken = (*queue)[0];
      taken.state = "agent";
      taken.assigned_agent = "agent:suzuki";
      REQUIRE(store->update_conversation(taken).is_ok());
      auto waiting = store->conversations_in_state("waiting", 10);
      REQUIRE(waiting.is_ok());
      CHECK(waiting->size() == 3);
      auto agent = store->conversations_in_state("agent", 10);
      REQUIRE(agent.is_ok());
      REQUIRE(agent->size() == 2);
      CHECK((*agent)[0].id == "busy");  // priority 9 before 5
      CHECK((*agent)[1].id == "high-old");
    }
    SUBCASE("no conversation in a state is an empty list") {
      auto closed = store->conversations_in_state("closed", 10);
      REQUIRE(closed.is_ok());
      CHECK(closed->empty());
    }
  }

  TEST_CASE("count_in_state, agents_holding and conversations_of_agent, in SQLite and in the interface's defaults") {
    // Forwards only what a Store must implement, so that the two methods are the defaults.
    class Minimal final : public Store {
     public:
      explicit Minimal(Store& inner) : inner_(inner) {}
      Status create_conversation(const ConversationRecord& r) override { return inner_.create_conversation(r); }
      Result<std::optional<ConversationRecord>> find_conversation(std::string_view id) override {
        return inner_.find_conversation(id);
      }
      Status update_conversation(const ConversationRecord& r) override { return inner_.update_conversation(r); }
      Result<AppendResult> append(std::string_view c, const NewMessage& m) override { return inner_.append(c, m); }
      Result<std::vector<StoredMessage>> messages_after(std::string_view c, std::int64_t after, std::size_t limit) override {
        return inner_.messages_after(c, after, limit);
      }
      Result<std::vector<ConversationRecord>> conversations_in_state(std::string_view state, std::size_t limit) override {
        return inner_.conversations_in_state(state, limit);
      }
      Result<std::int64_t> count_messages() override { return inner_.count_messages(); }

     private:
      Store& inner_;
    };
    TempDir dir;
    auto sqlite = open_ok(dir.file("hub.db"));
    Minimal minimal(*sqlite);
    auto held = [](const std::string& id, const std::string& agent, double priority, std::int64_t since) {
      ConversationRecord r = conversation(id, "agent", priority, since);
      r.assigned_agent = agent;
      return r;
    };
    REQUIRE(sqlite->create_conversation(held("s-late", "sato", 1, 900)).is_ok());
    REQUIRE(sqlite->create_conversation(held("z-1", "suzuki", 1, 100)).is_ok());
    REQUIRE(sqlite->create_conversation(held("s-urgent", "sato", 5, 950)).is_ok());
    REQUIRE(sqlite->create_conversation(held("s-early", "sato", 1, 100)).is_ok());
    REQUIRE(sqlite->create_conversation(conversation("w-1", "waiting")).is_ok());
    REQUIRE(sqlite->create_conversation(conversation("w-2", "waiting")).is_ok());
    REQUIRE(sqlite->create_conversation(conversation("b-1", "bot")).is_ok());
    ConversationRecord was_satos = held("s-closed", "sato", 9, 10);
    was_satos.state = "closed";  // still names its agent, but is no longer held
    REQUIRE(sqlite->create_conversation(was_satos).is_ok());

    for (Store* store : {static_cast<Store*>(sqlite.get()), static_cast<Store*>(&minimal)}) {
      CAPTURE(store == sqlite.get());
      auto counted = [store](std::string_view state) {
        auto n = store->count_in_state(state);
        REQUIRE_MESSAGE(n.is_ok(), n.status().to_string());
        return *n;
      };
      CHECK(counted("agent") == 4);
      CHECK(counted("waiting") == 2);
      CHECK(counted("bot") == 1);
      CHECK(counted("closed") == 1);
      auto ids = [store](std::string_view agent, std::size_t limit) {
        auto list = store->conversations_of_agent(agent, limit);
        REQUIRE_MESSAGE(list.is_ok(), list.status().to_string());
        std::vector<std::string> out;
        for (const auto& r : *list) out.push_back(r.id);
        return out;
      };
      CHECK(ids("sato", 10) == std::vector<std::string>{"s-urgent", "s-early", "s-late"});
      CHECK(ids("sato", 2) == std::vector<std::string>{"s-urgent", "s-early"});
      CHECK(ids("suzuki", 10) == std::vector<std::string>{"z-1"});
      CHECK(ids("tanaka", 10).empty());
      CHECK(ids("sato", 0).empty());
      auto agents = store->agents_holding();
      REQUIRE(agents.is_ok());
      std::sort(agents->begin(), agents->end());
      CHECK(*agents == std::vector<std::string>{"sato", "suzuki"});  // once each; not the closed one's
    }
    auto bad = sqlite->count_in_state("lost");
    REQUIRE_FALSE(bad.is_ok());
    CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
    CHECK(mentions(bad.status(), "state 'lost' is not one of bot, waiting, agent, closed"));
  }

  TEST_CASE("everything is still there after the store is closed and reopened") {
    TempDir dir;
    const std::string path = dir.file("hub.db");
    {
      auto store = open_ok(path);
      ConversationRecord c = conversation("c-1", "waiting", 3, 1234);
      c.handoff_json = R"({"reason":"angry"})";
      REQUIRE(store->create_conversation(c).is_ok());
      REQUIRE(store->create_conversation(conversation("c-2")).is_ok());
      for (int i = 1; i <= 20; ++i) append_ok(*store, "c-1", message(numbered("m", i), "x"));
      append_ok(*store, "c-2", message("", "bot says hi", "bot"));
    }  // the Store is destroyed: the connection is closed
    CHECK(fs::exists(path));

    auto store = open_ok(path);
    auto c = store->find_conversation("c-1");
    REQUIRE(c.is_ok());
    REQUIRE(c->has_value());
    CHECK((*c)->state == "waiting");
    CHECK((*c)->priority == doctest::Approx(3));
    CHECK((*c)->updated_ms == 1234);
    CHECK((*c)->handoff_json == R"({"reason":"angry"})");
    CHECK((*c)->last_seq == 20);
    CHECK(count_ok(*store) == 21);
    auto all = store->messages_after("c-1", 0, 100);
    REQUIRE(all.is_ok());
    REQUIRE(all->size() == 20);
    CHECK(all->back().client_id == "m20");

    // numbering and idempotency carry over the restart
    auto resent = store->append("c-1", message("m20", "x"));
    REQUIRE(resent.is_ok());
    CHECK(resent->duplicate);
    CHECK(resent->seq == 20);
    CHECK(append_ok(*store, "c-1", message("m21", "x")) == 21);
    CHECK(append_ok(*store, "c-2", message("", "again", "bot")) == 2);
  }

  TEST_CASE("a store of schema version 1 is migrated: last_seq comes from the messages, numbering goes on") {
    TempDir dir;
    const std::string path = dir.file("hub.db");
    // What a version-1 build wrote (its schema, verbatim): last_seq a column of the row.
    raw_sql(path, R"sql(
CREATE TABLE conversations (
  id             TEXT    NOT NULL PRIMARY KEY,
  state          TEXT    NOT NULL,
  locale         TEXT    NOT NULL DEFAULT '',
  visitor_json   TEXT    NOT NULL DEFAULT '',
  assigned_agent TEXT    NOT NULL DEFAULT '',
  priority       REAL    NOT NULL DEFAULT 0,
  handoff_json   TEXT    NOT NULL DEFAULT '',
  created_ms     INTEGER NOT NULL,
  updated_ms     INTEGER NOT NULL,
  last_seq       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_state ON conversations (state, priority DESC, updated_ms, id);
CREATE TABLE messages (
  conversation_id TEXT    NOT NULL REFERENCES conversations (id),
  seq             INTEGER NOT NULL,
  client_id       TEXT    NOT NULL DEFAULT '',
  sender          TEXT    NOT NULL,
  kind            TEXT    NOT NULL,
  body_json       TEXT    NOT NULL,
  created_ms      INTEGER NOT NULL,
  PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_by_client_id ON messages (conversation_id, client_id)
  WHERE client_id <> '';
PRAGMA user_version = 1;
INSERT INTO conversations VALUES ('c-1', 'waiting', 'ja', '{}', '', 2.5, '', 1, 2, 2);
INSERT INTO conversations VALUES ('c-2', 'bot', 'en', '{}', '', 0, '', 1, 2, 0);
INSERT INTO messages VALUES ('c-1', 1, 'm1', 'visitor', 'message', '{"text":"a"}', 1);
INSERT INTO messages VALUES ('c-1', 2, '', 'bot', 'message', '{"text":"b"}', 2);
)sql");
    auto store = open_ok(path);
    auto c = store->find_conversation("c-1");
    REQUIRE(c.is_ok());
    REQUIRE(c->has_value());
    CHECK((*c)->state == "waiting");
    CHECK((*c)->priority == doctest::Approx(2.5));
    CHECK((*c)->last_seq == 2);
    auto waiting = store->conversations_in_state("waiting", 10);
    REQUIRE(waiting.is_ok());
    REQUIRE(waiting->size() == 1);
    CHECK(waiting->front().last_seq == 2);
    auto resent = store->append("c-1", message("m1", "a"));
    REQUIRE(resent.is_ok());
    CHECK(resent->duplicate);
    CHECK(resent->seq == 1);
    CHECK(append_ok(*store, "c-1", message("m3", "c")) == 3);
    CHECK(append_ok(*store, "c-2", message("", "hi", "bot")) == 1);
    store.reset();

    // The file now says version 3 (both steps ran), without the column.
    CHECK(raw_value(path, "PRAGMA user_version") == "3");
    CHECK(raw_value(path, "SELECT count(*) FROM pragma_table_info('conversations') WHERE name = 'last_seq'") == "0");
    CHECK(raw_value(path, "SELECT group_concat(name) FROM pragma_index_info('messages_by_client_id')") ==
          "client_id,conversation_id");
  }

  TEST_CASE("a store of schema version 2 is migrated: the client id index is ordered by client id, ids stay unique") {
    TempDir dir;
    const std::string path = dir.file("hub.db");
    // What a version-2 build wrote (its schema, verbatim).
    raw_sql(path, R"sql(
CREATE TABLE conversations (
  id             TEXT    NOT NULL PRIMARY KEY,
  state          TEXT    NOT NULL,
  locale         TEXT    NOT NULL DEFAULT '',
  visitor_json   TEXT    NOT NULL DEFAULT '',
  assigned_agent TEXT    NOT NULL DEFAULT '',
  priority       REAL    NOT NULL DEFAULT 0,
  handoff_json   TEXT    NOT NULL DEFAULT '',
  created_ms     INTEGER NOT NULL,
  updated_ms     INTEGER NOT NULL
);
CREATE INDEX conversations_by_state ON conversations (state, priority DESC, updated_ms, id);
CREATE TABLE messages (
  conversation_id TEXT    NOT NULL REFERENCES conversations (id),
  seq             INTEGER NOT NULL,
  client_id       TEXT    NOT NULL DEFAULT '',
  sender          TEXT    NOT NULL,
  kind            TEXT    NOT NULL,
  body_json       TEXT    NOT NULL,
  created_ms      INTEGER NOT NULL,
  PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_by_client_id ON messages (conversation_id, client_id)
  WHERE client_id <> '';
PRAGMA user_version = 2;
INSERT INTO conversations VALUES ('c-1', 'bot', 'ja', '{}', '', 0, '', 1, 2);
INSERT INTO conversations VALUES ('c-2', 'bot', 'en', '{}', '', 0, '', 1, 2);
INSERT INTO messages VALUES ('c-1', 1, 'm1', 'visitor', 'message', '{"text":"a"}', 1);
INSERT INTO messages VALUES ('c-1', 2, '', 'bot', 'message', '{"text":"b"}', 2);
INSERT INTO messages VALUES ('c-2', 1, 'm1', 'visitor', 'message', '{"text":"c"}', 3);
)sql");
    auto store = open_ok(path);
    // The same client id in two conversations is two messages; in one, a resend.
    auto resent = store->append("c-2", message("m1", "c"));
    REQUIRE(resent.is_ok());
    CHECK(resent->duplicate);
    CHECK(resent->seq == 1);
    CHECK(append_ok(*store, "c-1", message("m2", "d")) == 3);
    CHECK(append_ok(*store, "c-2", message("m2", "e")) == 2);
    auto again = store->append("c-1", message("m2", "d"));
    REQUIRE(again.is_ok());
    CHECK(again->duplicate);
    CHECK(again->seq == 3);
    auto messages = store->messages_after("c-1", 0, 10);
    REQUIRE(messages.is_ok());
    CHECK(messages->size() == 3);
    store.reset();

    CHECK(raw_value(path, "PRAGMA user_version") == "3");
    CHECK(raw_value(path, "SELECT group_concat(name) FROM pragma_index_info('messages_by_client_id')") ==
          "client_id,conversation_id");
    CHECK(raw_value(path, "SELECT count(*) FROM messages") == "5");
  }

  TEST_CASE("synchronous=NORMAL and :memory: stores work the same") {
    SUBCASE("synchronous_full = false") {
      TempDir dir;
      SqliteStoreOptions options;
      options.synchronous_full = false;
      auto store = open_ok(dir.file("hub.db"), options);
      REQUIRE(store->create_conversation(conversation("a")).is_ok());
      CHECK(append_ok(*store, "a", message("1", "x")) == 1);
    }
    SUBCASE(":memory:") {
      auto store = open_ok(":memory:");
      REQUIRE(store->create_conversation(conversation("a")).is_ok());
      CHECK(append_ok(*store, "a", message("1", "x")) == 1);
      CHECK(append_ok(*store, "a", message("2", "y")) == 2);
      CHECK(count_ok(*store) == 2);
    }
  }

  TEST_CASE("two stores on one file, appending from four threads, number without gaps") {
    TempDir dir;
    const std::string path = dir.file("hub.db");
    auto first = open_ok(path);
    auto second = open_ok(path);
    REQUIRE(first->create_conversation(conversation("a")).is_ok());
    REQUIRE(first->create_conversation(conversation("b")).is_ok());

    constexpr int kThreads = 4;
    constexpr int kPerThread = 200;  // alternating between the two conversations
    struct Outcome {
      std::vector<std::pair<std::string, std::int64_t>> seqs;  // conversation, seq
      std::vector<std::string> errors;
    };
    std::vector<Outcome> outcomes(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        Store& store = (t % 2 == 0) ? *first : *second;
        Outcome& out = outcomes[static_cast<std::size_t>(t)];
        for (int i = 0; i < kPerThread; ++i) {
          const std::string conv = (i % 2 == 0) ? "a" : "b";
          auto r = store.append(conv, message(numbered(numbered("t", t) + "-", i), "x"));
          if (!r.is_ok()) {
            out.errors.push_back(r.status().to_string());
          } else if (r->duplicate) {
            out.errors.push_back("unexpected duplicate");
          } else {
            out.seqs.emplace_back(conv, r->seq);
          }
        }
      });
    }
    for (auto& th : threads) th.join();

    std::map<std::string, std::set<std::int64_t>> seen;
    std::size_t total = 0;
    for (const Outcome& out : outcomes) {
      for (const std::string& e : out.errors) FAIL_CHECK(e);
      for (const auto& item : out.seqs) {  // not a structured binding: clang 14 cannot capture it
        CHECK_MESSAGE(seen[item.first].insert(item.second).second, "seq ", item.second,
                      " given twice in ", item.first);
        ++total;
      }
    }
    constexpr std::int64_t kPerConversation = kThreads * kPerThread / 2;
    CHECK(total == static_cast<std::size_t>(kThreads * kPerThread));
    for (const std::string conv : {"a", "b"}) {
      REQUIRE(seen[conv].size() == static_cast<std::size_t>(kPerConversation));
      CHECK(*seen[conv].begin() == 1);
      CHECK(*seen[conv].rbegin() == kPerConversation);  // 400 distinct values in 1..400: no gaps
      auto stored = first->messages_after(conv, 0, 1000);
      REQUIRE(stored.is_ok());
      REQUIRE(stored->size() == static_cast<std::size_t>(kPerConversation));
      for (std::size_t i = 0; i < stored->size(); ++i) {
        CHECK((*stored)[i].seq == static_cast<std::int64_t>(i + 1));
      }
      CHECK((*second->find_conversation(conv))->last_seq == kPerConversation);
    }
    CHECK(count_ok(*second) == kThreads * kPerThread);
  }

  TEST_CASE("stores opened at the same moment on a new file agree on one schema") {
    TempDir dir;
    const std::string path = dir.file("hub.db");
    constexpr int kOpeners = 4;
    std::vector<std::unique_ptr<Store>> stores(kOpeners);
    std::vector<std::string> errors(kOpeners);
    std::vector<std::thread> threads;
    for (int t = 0; t < kOpeners; ++t) {
      threads.emplace_back([&, t] {
        auto opened = open_sqlite_store(path);
        const auto i = static_cast<std::size_t>(t);
        if (opened.is_ok()) {
          stores[i] = std::move(opened).value();
        } else {
          errors[i] = opened.status().to_string();
        }
      });
    }
    for (auto& th : threads) th.join();
    for (const std::string& e : errors) CHECK_MESSAGE(e.empty(), e);
    for (const auto& s : stores) REQUIRE(s != nullptr);

    REQUIRE(stores[0]->create_conversation(conversation("a")).is_ok());
    for (int t = 0; t < kOpeners; ++t) {
      CHECK(append_ok(*stores[static_cast<std::size_t>(t)], "a", message(numbered("m", t), "x")) ==
            t + 1);
    }
  }

  TEST_CASE("racing resends of the same client ids through two stores are stored once") {
    TempDir dir;
    const std::string path = dir.file("hub.db");
    auto first = open_ok(path);
    auto second = open_ok(path);
    REQUIRE(first->create_conversation(conversation("a")).is_ok());

    constexpr int kIds = 150;
    std::vector<madoguchi::Result<AppendResult>> from_first;
    std::vector<madoguchi::Result<AppendResult>> from_second;
    auto run = [](Store& store, std::vector<madoguchi::Result<AppendResult>>& out) {
      for (int i = 0; i < kIds; ++i) out.push_back(store.append("a", message(numbered("m", i), "x")));
    };
    std::thread t1(run, std::ref(*first), std::ref(from_first));
    std::thread t2(run, std::ref(*second), std::ref(from_second));
    t1.join();
    t2.join();

    REQUIRE(from_first.size() == static_cast<std::size_t>(kIds));
    REQUIRE(from_second.size() == static_cast<std::size_t>(kIds));
    std::set<std::int64_t> seqs;
    for (int i = 0; i < kIds; ++i) {
      const auto& x = from_first[static_cast<std::size_t>(i)];
      const auto& y = from_second[static_cast<std::size_t>(i)];
      REQUIRE_MESSAGE(x.is_ok(), x.status().to_string());
      REQUIRE_MESSAGE(y.is_ok(), y.status().to_string());
      CHECK(x->seq == y->seq);
      CHECK(x->duplicate != y->duplicate);  // exactly one of the two stored it
      seqs.insert(x->seq);
    }
    CHECK(seqs.size() == static_cast<std::size_t>(kIds));
    CHECK(*seqs.rbegin() == kIds);
    CHECK(count_ok(*first) == kIds);
  }

  TEST_CASE("bad input is refused with kInvalidArgument and stores nothing") {
    TempDir dir;
    auto store = open_ok(dir.file("hub.db"));
    REQUIRE(store->create_conversation(conversation("a")).is_ok());

    CHECK(store->create_conversation(conversation("")).code() == ErrorCode::kInvalidArgument);
    CHECK(store->update_conversation(conversation("")).code() == ErrorCode::kInvalidArgument);
    CHECK(store->find_conversation("").status().code() == ErrorCode::kInvalidArgument);
    CHECK(store->messages_after("", 0, 10).status().code() == ErrorCode::kInvalidArgument);

    auto empty_conv = store->append("", message("m1", "x"));
    CHECK(empty_conv.status().code() == ErrorCode::kInvalidArgument);
    CHECK(mentions(empty_conv.status(), "conversation id is empty"));

    NewMessage no_body = message("m1", "x");
    no_body.body_json.clear();
    auto r = store->append("a", no_body);
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(mentions(r.status(), "body_json is empty"));
    CHECK(mentions(r.status(), "store " + dir.file("hub.db") + ": append: "));

    NewMessage bad_kind = message("m1", "x");
    bad_kind.kind = "note";
    CHECK(store->append("a", bad_kind).status().code() == ErrorCode::kInvalidArgument);
    NewMessage no_sender = message("m1", "x");
    no_sender.sender.clear();
    CHECK(store->append("a", no_sender).status().code() == ErrorCode::kInvalidArgument);

    Status bad_state = store->create_conversation(conversation("b", "queued"));
    CHECK(bad_state.code() == ErrorCode::kInvalidArgument);
    CHECK(mentions(bad_state, "bot, waiting, agent, closed"));
    CHECK(store->conversations_in_state("queued", 10).status().code() == ErrorCode::kInvalidArgument);
    CHECK(store->create_conversation(conversation("b", "bot", std::nan(""))).code() ==
          ErrorCode::kInvalidArgument);

    CHECK(count_ok(*store) == 0);
    CHECK((*store->find_conversation("a"))->last_seq == 0);
    CHECK_FALSE(store->find_conversation("b")->has_value());
  }

  TEST_CASE("a path that cannot hold a store is refused with a clear error") {
    TempDir dir;

    SUBCASE("an empty path") {
      auto r = open_sqlite_store("");
      CHECK(r.status().code() == ErrorCode::kInvalidArgument);
      CHECK(mentions(r.status(), ":memory:"));
    }
    SUBCASE("a directory that does not exist") {
      const std::string path = (dir.path() / "no-such-dir" / "hub.db").string();
      auto r = open_sqlite_store(path);
      CHECK(r.status().code() == ErrorCode::kNotFound);
      CHECK(mentions(r.status(), "store " + path + ": open: "));
      CHECK(mentions(r.status(), "does not exist"));
      CHECK(mentions(r.status(), "mkdir -p"));
      CHECK_FALSE(fs::exists(dir.path() / "no-such-dir"));
    }
    SUBCASE("a directory instead of a file") {
      auto r = open_sqlite_store(dir.path().string());
      CHECK(r.status().code() == ErrorCode::kInvalidArgument);
      CHECK(mentions(r.status(), "is a directory"));
    }
    SUBCASE("a file that is not a SQLite database") {
      const std::string path = dir.file("garbage.db");
      {
        std::ofstream out(path, std::ios::binary);
        std::mt19937 rng(42);
        for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(rng() & 0xff));
      }
      const auto size_before = fs::file_size(path);
      auto r = open_sqlite_store(path);
      REQUIRE_FALSE(r.is_ok());
      CHECK(r.status().code() == ErrorCode::kInvalidArgument);
      CHECK(mentions(r.status(), "store " + path + ": open"));
      CHECK(mentions(r.status(), "not a database"));
      CHECK(mentions(r.status(), "new file"));
      CHECK(fs::file_size(path) == size_before);  // left as it was
    }
    SUBCASE("a text file") {
      const std::string path = dir.file("notes.txt");
      { std::ofstream(path) << "this is not a database, just some notes\n"; }
      auto r = open_sqlite_store(path);
      CHECK(r.status().code() == ErrorCode::kInvalidArgument);
      CHECK(mentions(r.status(), "not a database"));
    }
    SUBCASE("a database from a newer build (user_version 999)") {
      const std::string path = dir.file("future.db");
      raw_sql(path, "PRAGMA user_version = 999;");
      auto r = open_sqlite_store(path);
      CHECK(r.status().code() == ErrorCode::kInvalidArgument);
      CHECK(mentions(r.status(), "store schema version 999 is newer than this build supports"));
      CHECK(mentions(r.status(), path));
    }
    SUBCASE("a database of another program") {
      const std::string path = dir.file("other.db");
      raw_sql(path, "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);");
      auto r = open_sqlite_store(path);
      CHECK(r.status().code() == ErrorCode::kInvalidArgument);
      CHECK(mentions(r.status(), "another program"));
      CHECK_FALSE(fs::exists(path + "-wal"));  // not switched to WAL: left as it was
    }
    SUBCASE("a database of another program that sets a user_version of its own") {
      for (const char* version : {"1", "2", "3", "-1"}) {
        CAPTURE(version);
        const std::string path = dir.file(std::string("other-") + version + ".db");
        raw_sql(path, (std::string("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL); PRAGMA user_version = ") +
                       version + ";")
                          .c_str());
        auto r = open_sqlite_store(path);
        CHECK(r.status().code() == ErrorCode::kInvalidArgument);
        CHECK(mentions(r.status(), "a SQLite database of another program (schema version " + std::string(version)));
        // Left as it was: still in rollback-journal mode (byte 18 of the header: 1, where WAL is 2).
        std::ifstream file(path, std::ios::binary);
        char header[20] = {};
        file.read(header, sizeof header);
        CHECK(header[18] == 1);
      }
    }
  }

  TEST_CASE("a file the process may only read is refused at open, not at the first write") {
    // SQLite opens such a file read-only without a word; before, the store opened it and
    // every write then failed with kInternal.
    TempDir dir;
    const std::string path = dir.file("hub.db");
    {
      auto store = open_ok(path);
      REQUIRE(store->create_conversation(conversation("a")).is_ok());
    }
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                    fs::perms::others_read | fs::perms::others_exec);
    fs::permissions(path, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
    auto check = [&path]() {
      auto r = open_sqlite_store(path);
      return !r.is_ok() && r.status().code() == ErrorCode::kUnavailable &&
             mentions(r.status(), "the file can only be read by this process") &&
             mentions(r.status(), "needs write access to the file and to its directory");
    };
    if (geteuid() != 0) {
      CHECK(check());
    } else {
      // Root writes whatever the permissions say: the check runs as nobody, in a child.
      const pid_t child = fork();
      REQUIRE(child >= 0);
      if (child == 0) _exit(setgid(65534) != 0 || setuid(65534) != 0 ? 2 : check() ? 0 : 1);
      int status = 0;
      REQUIRE(waitpid(child, &status, 0) == child);
      REQUIRE(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
    }
  }

  TEST_CASE("a database held locked by another writer gives kUnavailable naming the operation") {
    TempDir dir;
    const std::string path = dir.file("hub.db");
    SqliteStoreOptions options;
    options.busy_timeout_ms = 50;
    auto store = open_ok(path, options);
    REQUIRE(store->create_conversation(conversation("a")).is_ok());

    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    auto r = store->append("a", message("m1", "x"));
    sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(other);

    CHECK(r.status().code() == ErrorCode::kUnavailable);
    CHECK(mentions(r.status(), "store " + path + ": append: database is locked"));
    CHECK(mentions(r.status(), "busy_timeout_ms"));

    // the failed call changed nothing, and the store works once the lock is gone
    CHECK(count_ok(*store) == 0);
    CHECK(append_ok(*store, "a", message("m1", "x")) == 1);
  }

  TEST_CASE("a batch groups writes into one commit") {
    TempDir dir;
    const std::string path = dir.file("hub.db");
    auto store = open_ok(path);
    REQUIRE(store->create_conversation(conversation("a")).is_ok());
    auto reader = open_ok(path);  // another connection: sees only committed writes

    REQUIRE(store->begin_batch().is_ok());
    REQUIRE(store->create_conversation(conversation("b")).is_ok());
    CHECK(append_ok(*store, "a", message("m1", "one")) == 1);
    CHECK(append_ok(*store, "a", message("m2", "two")) == 2);
    CHECK(append_ok(*store, "b", message("", "hi", "bot")) == 1);

    SUBCASE("later calls in the batch see its writes; other connections do not, until the end") {
      auto resent = store->append("a", message("m1", "one"));
      REQUIRE(resent.is_ok());
      CHECK(resent->duplicate);
      CHECK(resent->seq == 1);
      CHECK(count_ok(*store) == 3);
      CHECK(count_ok(*reader) == 0);
      REQUIRE(store->end_batch().is_ok());
      CHECK(count_ok(*reader) == 3);
      auto b = reader->find_conversation("b");
      REQUIRE(b.is_ok());
      CHECK(b->has_value());
    }
    SUBCASE("a failed call inside the batch changes nothing and leaves the rest of the batch") {
      auto missing = store->append("nope", message("m9", "x"));
      CHECK(missing.status().code() == ErrorCode::kNotFound);
      auto bad = store->append("a", NewMessage{});
      CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
      CHECK(append_ok(*store, "a", message("m3", "three")) == 3);
      REQUIRE(store->end_batch().is_ok());
      CHECK(count_ok(*reader) == 4);
    }
    SUBCASE("a batch that never ends is not stored") {
      store.reset();  // the connection closes with the batch open
      auto reopened = open_ok(path);
      CHECK(count_ok(*reopened) == 0);
      auto b = reopened->find_conversation("b");
      REQUIRE(b.is_ok());
      CHECK_FALSE(b->has_value());
      CHECK(append_ok(*reopened, "a", message("m1", "one")) == 1);
    }
  }

  TEST_CASE("batch calls in the wrong order are refused") {
    auto store = open_ok(":memory:");
    auto end = store->end_batch();
    CHECK(end.code() == ErrorCode::kInvalidArgument);
    CHECK(mentions(end, "begin_batch"));
    REQUIRE(store->begin_batch().is_ok());
    auto again = store->begin_batch();
    CHECK(again.code() == ErrorCode::kInvalidArgument);
    CHECK(mentions(again, "end_batch"));
    CHECK(store->end_batch().is_ok());
    CHECK(store->end_batch().code() == ErrorCode::kInvalidArgument);
    CHECK(store->abort_batch().code() == ErrorCode::kInvalidArgument);
  }

  TEST_CASE("abort_batch gives the batch up: none of its writes happened, and the next batch works") {
    TempDir dir;
    auto store = open_ok(dir.file("hub.db"));
    REQUIRE(store->create_conversation(conversation("a")).is_ok());
    CHECK(append_ok(*store, "a", message("m-kept", "kept")) == 1);
    REQUIRE(store->begin_batch().is_ok());
    CHECK(append_ok(*store, "a", message("m-given-up", "given up")) == 2);
    REQUIRE(store->update_conversation(conversation("a", "waiting")).is_ok());
    REQUIRE(store->abort_batch().is_ok());
    CHECK(count_ok(*store) == 1);
    CHECK((*store->find_conversation("a"))->state == "bot");
    CHECK((*store->find_conversation("a"))->last_seq == 1);
    REQUIRE(store->begin_batch().is_ok());
    CHECK(append_ok(*store, "a", message("m-given-up", "again")) == 2);  // not a duplicate: it was never stored
    REQUIRE(store->end_batch().is_ok());
    auto reopened = open_ok(dir.file("hub.db"));
    CHECK(count_ok(*reopened) == 2);
  }

  TEST_CASE("a full disk that rolls the batch back fails the rest of the batch, which is then stored not at all") {
    // SQLite undoes the whole transaction, not only the write that failed. Before, the
    // batch's later calls each took a transaction of their own (so part of the batch became
    // durable, with seqs given out a second time) and abort_batch() said nothing.
    TempDir dir;
    const std::string path = dir.file("hub.db");
    auto store = open_ok(path);
    REQUIRE(store->create_conversation(conversation("a")).is_ok());
    REQUIRE(store->create_conversation(conversation("b")).is_ok());
    NewMessage big = message("", "");
    big.body_json = R"({"text":")" + std::string(1 << 20, 'x') + R"("})";

    for (const bool abort : {false, true}) {
      CAPTURE(abort);
      const std::int64_t before = count_ok(*store);
      const std::int64_t b_seq = (*store->find_conversation("b"))->last_seq;
      REQUIRE(store->begin_batch().is_ok());
      {
        // The disk: files may not grow past 4 MiB while the batch writes (the process ignores
        // SIGXFSZ, so a write past it fails with EFBIG).
        struct FileSizeLimit {
          rlimit saved{};
          void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
          FileSizeLimit() {
            getrlimit(RLIMIT_FSIZE, &saved);
            rlimit small = saved;
            small.rlim_cur = 4 << 20;
            setrlimit(RLIMIT_FSIZE, &small);
          }
          ~FileSizeLimit() {
            setrlimit(RLIMIT_FSIZE, &saved);
            std::signal(SIGXFSZ, old_handler);
          }
        } limit;
        Status failed;
        for (int i = 0; i < 64 && failed.is_ok(); ++i) {
          if (auto r = store->append("a", big); !r) failed = r.status();
        }
        REQUIRE_FALSE(failed.is_ok());
      }
      // The disk has room again; the batch is lost all the same, so every call of it fails.
      auto later = store->append("b", message("bot-1", "later in the turn", "bot"));
      REQUIRE_FALSE(later.is_ok());
      CHECK(later.status().code() == ErrorCode::kUnavailable);
      CHECK(mentions(later.status(), "roll the whole batch back"));
      CHECK_FALSE(store->update_conversation(conversation("b", "waiting")).is_ok());
      CHECK_FALSE(store->messages_after("a", 0, 10).is_ok());
      if (abort) {
        CHECK(store->abort_batch().is_ok());  // none of its writes happened: what it promises
      } else {
        Status ended = store->end_batch();
        CHECK(ended.code() == ErrorCode::kUnavailable);
        CHECK(mentions(ended, "none of its writes happened"));
      }
      // Nothing of the batch is stored, and the store goes on.
      auto reopened = open_ok(path);
      CHECK(count_ok(*reopened) == before);
      CHECK((*reopened->find_conversation("b"))->state == "bot");
      CHECK(append_ok(*store, "b", message("bot-next-" + std::to_string(b_seq), "next turn", "bot")) == b_seq + 1);
    }
  }

  TEST_CASE("another thread's calls wait for the batch to end") {
    TempDir dir;
    auto store = open_ok(dir.file("hub.db"));
    REQUIRE(store->create_conversation(conversation("a")).is_ok());
    REQUIRE(store->begin_batch().is_ok());
    CHECK(append_ok(*store, "a", message("m1", "mine")) == 1);
    std::atomic<bool> done{false};
    std::int64_t other_seq = 0;
    std::thread other([&] {
      auto r = store->append("a", message("t1", "theirs"));
      if (r.is_ok()) other_seq = r->seq;
      done = true;
    });
    // The other thread cannot finish while the batch is open (it would have to join it).
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK_FALSE(done.load());
    CHECK(append_ok(*store, "a", message("m2", "mine")) == 2);
    REQUIRE(store->end_batch().is_ok());
    other.join();
    CHECK(other_seq == 3);
  }

  TEST_CASE("the WAL is copied back into the database while the store stays open") {
    // Past 2000 WAL pages (8 MB) a thread of the store's own checkpoints, not the commit.
    // Also for a store opened by a relative path in a process that then changes its directory
    // (as daemons do): the checkpoint thread, which opens its connection later, finds the
    // file all the same. Before, it found none and never copied anything back.
    TempDir dir;
    const fs::path cwd = fs::current_path();
    for (const bool relative : {false, true}) {
      CAPTURE(relative);
      const std::string name = relative ? "relative.db" : "hub.db";
      const std::string path = dir.file(name);
      {
        if (relative) fs::current_path(dir.path());
        auto store = open_ok(relative ? name : path, SqliteStoreOptions{false, 5000});
        fs::current_path(relative ? fs::path("/") : cwd);
        REQUIRE(store->create_conversation(conversation("a")).is_ok());
        const std::string text(16 * 1024, 'x');
        for (int batch = 0; batch < 60; ++batch) {  // 1200 messages of 16 KiB: about 20 MB
          REQUIRE(store->begin_batch().is_ok());
          for (int i = 0; i < 20; ++i) append_ok(*store, "a", message(numbered("m", batch * 20 + i), text));
          REQUIRE(store->end_batch().is_ok());
        }
        bool copied = false;
        for (int i = 0; i < 500 && !copied; ++i) {
          copied = std::filesystem::file_size(path) > 4 * 1024 * 1024;  // a pass copies >= 2000 pages
          if (!copied) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        CHECK(copied);
        CHECK(count_ok(*store) == 1200);
        auto last = store->messages_after("a", 1199, 10);
        REQUIRE(last.is_ok());
        REQUIRE(last->size() == 1);
        CHECK(last->front().client_id == "m1199");
      }
      fs::current_path(cwd);
      auto reopened = open_ok(path);
      CHECK(count_ok(*reopened) == 1200);
      CHECK(raw_value(path, "PRAGMA integrity_check") == "ok");
    }
  }
}
