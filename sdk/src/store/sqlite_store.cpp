// sqlite_store.cpp: the SQLite implementation of madoguchi::hub::Store (docs/store.md).
//
// One connection per Store, guarded by a mutex; every statement is prepared once at open and
// reset after each use. Several Store objects (or processes) may open the same file: SQLite's
// file locks serialize the writers (BEGIN IMMEDIATE waits up to busy_timeout_ms), and WAL mode
// lets readers run beside the writer. Every SQLite error becomes a Status that names the
// operation, the path and sqlite3_errmsg(); nothing here prints or exits.
#include <madoguchi/store.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace madoguchi::hub {
inline namespace v1 {
namespace {

// PRAGMA user_version of the schema this build writes. Raise it with every schema change and
// add the migration from the previous version to migrate().
constexpr std::int64_t kSchemaVersion = 3;

// Version 2: a conversation's last_seq is the highest seq of its messages, read from the
// messages' primary key, instead of a column of the conversation's row that every append
// rewrote (that row's page was written again at every commit).
// Version 3: the client id index is ordered by client id first. Clients make ids that sort by
// time (docs/protocol.md), so a commit's new entries land together at the end of the index
// instead of in one page per conversation.
constexpr const char* kSchemaV3 = R"sql(
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
CREATE UNIQUE INDEX messages_by_client_id ON messages (client_id, conversation_id)
  WHERE client_id <> '';
PRAGMA user_version = 3;
)sql";

constexpr const char* kMigrationV1ToV2 = R"sql(
ALTER TABLE conversations DROP COLUMN last_seq;
PRAGMA user_version = 2;
)sql";

constexpr const char* kMigrationV2ToV3 = R"sql(
DROP INDEX messages_by_client_id;
CREATE UNIQUE INDEX messages_by_client_id ON messages (client_id, conversation_id)
  WHERE client_id <> '';
PRAGMA user_version = 3;
)sql";

// The columns of a conversation's row, then (read_conversation) its last_seq.
constexpr const char* kConversationColumns =
    "id, state, locale, visitor_json, assigned_agent, priority, handoff_json, created_ms, "
    "updated_ms";
constexpr const char* kLastSeq =
    "(SELECT coalesce(max(seq), 0) FROM messages WHERE conversation_id = conversations.id)";

// SQLITE_STATIC without the header's C-style cast: the bound text outlives the statement's use.
const sqlite3_destructor_type kStaticText = nullptr;

struct DbCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

ErrorCode code_for(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY:
      return ErrorCode::kUnavailable;
    case SQLITE_FULL:
    case SQLITE_TOOBIG:
    case SQLITE_NOMEM:
      return ErrorCode::kResourceExhausted;
    case SQLITE_NOTADB:
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
      return ErrorCode::kInvalidArgument;
    default:
      return ErrorCode::kInternal;
  }
}

// What to do about an error, where SQLite's own words do not say it.
std::string hint_for(int rc, int busy_timeout_ms) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "another connection held the database lock for longer than busy_timeout_ms (" +
             std::to_string(busy_timeout_ms) + " ms); retry later or raise busy_timeout_ms";
    case SQLITE_FULL:
      return "the disk is full; free space on the volume that holds the database";
    case SQLITE_TOOBIG:
      return "a value is larger than SQLite's limit; send a smaller message";
    case SQLITE_READONLY:
      return "the store needs write access to the file and to its directory (WAL mode keeps "
             "-wal and -shm files next to it)";
    case SQLITE_CANTOPEN:
      return "check that the directory exists and that this process may read and write the file "
             "and create files next to it";
    case SQLITE_NOTADB:
      return "the file exists but is not a SQLite database (or is encrypted); point the store at a "
             "new file, or move this one away";
    case SQLITE_CORRUPT:
      return "the database file is damaged; restore it from a backup, or try "
             "`sqlite3 FILE .recover`";
    default:
      return {};
  }
}

bool valid_state(std::string_view state) {
  return state == "bot" || state == "waiting" || state == "agent" || state == "closed";
}
bool valid_kind(std::string_view kind) { return kind == "message" || kind == "event"; }

std::int64_t clamp_limit(std::size_t limit) {
  constexpr auto kMax = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(limit, kMax));
}

// One use of a cached statement: binds parameters in order, steps, and resets the statement
// (and clears its bindings) when it goes out of scope, so no read transaction stays open.
class Query {
 public:
  explicit Query(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& text(std::string_view value) {
    static constexpr char kEmpty[] = "";
    // An empty view may have a null data(); SQLite would bind NULL for it.
    const char* data = value.data() != nullptr ? value.data() : kEmpty;
    return check(sqlite3_bind_text64(stmt_, ++index_, data,
                                     static_cast<sqlite3_uint64>(value.size()), kStaticText,
                                     SQLITE_UTF8));
  }
  Query& int64(std::int64_t value) { return check(sqlite3_bind_int64(stmt_, ++index_, value)); }
  Query& real(double value) { return check(sqlite3_bind_double(stmt_, ++index_, value)); }

  // SQLITE_ROW, SQLITE_DONE, or the error of the first failed bind or of the step.
  int step() { return rc_ != SQLITE_OK ? rc_ : sqlite3_step(stmt_); }

  std::string column_text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    if (p == nullptr || n <= 0) return {};
    return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
  }
  std::int64_t column_int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  double column_double(int col) const { return sqlite3_column_double(stmt_, col); }

 private:
  Query& check(int rc) {
    if (rc_ == SQLITE_OK && rc != SQLITE_OK) rc_ = rc;
    return *this;
  }
  sqlite3_stmt* stmt_;
  int index_ = 0;
  int rc_ = SQLITE_OK;
};

ConversationRecord read_conversation(const Query& q) {
  ConversationRecord r;
  r.id = q.column_text(0);
  r.state = q.column_text(1);
  r.locale = q.column_text(2);
  r.visitor_json = q.column_text(3);
  r.assigned_agent = q.column_text(4);
  r.priority = q.column_double(5);
  r.handoff_json = q.column_text(6);
  r.created_ms = q.column_int64(7);
  r.updated_ms = q.column_int64(8);
  r.last_seq = q.column_int64(9);
  return r;
}

// WAL checkpoints away from the writer (docs/store.md, "Checkpoints"). SQLite's automatic
// checkpoint runs inside the COMMIT that takes the WAL past 1000 pages: the committing thread
// (the hub's event loop) copies the pages back into the database and, unless synchronous is
// OFF, waits for two fsyncs. Here a thread of its own, with its own connection, runs PASSIVE
// checkpoints when asked; they neither wait for nor block the writer.
class Checkpointer {
 public:
  explicit Checkpointer(std::string path)
      : path_(std::move(path)), thread_([this](std::stop_token stop) { run(stop); }) {}

  // Asks for a checkpoint (returns at once).
  void request() {
    {
      std::lock_guard lock(mu_);
      requested_ = true;
    }
    cv_.notify_one();
  }

 private:
  void run(std::stop_token stop) {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    DbPtr db(raw);
    if (rc != SQLITE_OK) return;  // the writer's own checkpoints (see on_wal_commit) take over
    // The checkpoint syncs the WAL before and the database after copying. In WAL mode NORMAL
    // and FULL differ only in the sync at each commit, which this connection never makes.
    sqlite3_exec(db.get(), "PRAGMA synchronous = NORMAL", nullptr, nullptr, nullptr);
    std::unique_lock lock(mu_);
    while (cv_.wait(lock, stop, [this] { return requested_; })) {
      requested_ = false;
      lock.unlock();
      // SQLITE_BUSY (another connection is checkpointing) and errors leave the WAL as it is;
      // the next commit asks again.
      (void)sqlite3_wal_checkpoint_v2(db.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      lock.lock();
    }
  }

  const std::string path_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  bool requested_ = false;  // guarded by mu_
  // Last: started when everything it uses is ready, and stopped and joined (std::jthread's
  // destructor) before any of it goes away.
  std::jthread thread_;
};

// The checkpointer is asked to run each time the WAL has grown by kCheckpointPages pages
// (4 KiB each). Under steady writes its passes never quite catch up with the writer, and
// SQLite starts the WAL over only when a write transaction begins with every frame copied
// back: so once the WAL holds kWriterCheckpointPages, the writer runs a checkpoint itself,
// which copies only what came since the last pass, and the WAL starts over. It also does when
// the checkpointer cannot run (no thread, no connection): the WAL stays bounded either way.
constexpr int kCheckpointPages = 2000;
constexpr int kWriterCheckpointPages = 10 * kCheckpointPages;

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, SqliteStoreOptions options)
      : path_(std::move(path)), options_(options) {}
  ~SqliteStore() override {
    if (db_) sqlite3_wal_hook(db_.get(), nullptr, nullptr);  // no checkpointer is made while closing
  }

  // Opens the connection, sets the pragmas, creates or checks the schema, prepares statements.
  Status open();

  Status create_conversation(const ConversationRecord& record) override;
  Result<std::optional<ConversationRecord>> find_conversation(std::string_view id) override;
  Status update_conversation(const ConversationRecord& record) override;
  Result<AppendResult> append(std::string_view conversation_id,
                              const NewMessage& message) override;
  Result<std::vector<StoredMessage>> messages_after(std::string_view conversation_id,
                                                    std::int64_t after_seq,
                                                    std::size_t limit) override;
  Result<std::vector<ConversationRecord>> conversations_in_state(std::string_view state,
                                                                 std::size_t limit) override;
  Result<std::int64_t> count_messages() override;
  Result<std::int64_t> count_in_state(std::string_view state) override;
  Result<std::vector<std::string>> agents_holding() override;
  Result<std::vector<ConversationRecord>> conversations_of_agent(std::string_view agent,
                                                                 std::size_t limit) override;
  Result<std::optional<std::int64_t>> find_message(std::string_view conversation_id,
                                                   std::string_view client_id) override;
  Status begin_batch() override;
  Status end_batch() override;
  Status abort_batch() override;

 private:
  // One call's reads and writes as one atomic step: a transaction of its own (rolled back
  // on scope exit unless commit() succeeded), or, inside the open batch, the batch's. A call
  // inside a batch writes with one statement at most (append: its INSERT), and SQLite undoes
  // a statement that fails by itself while the transaction goes on, so no savepoint is
  // needed around it. Call with mu_ held (enter()).
  class Transaction {
   public:
    explicit Transaction(SqliteStore& store) : store_(store), nested_(store.in_batch_) {}
    ~Transaction() {
      if (!active_ || sqlite3_get_autocommit(store_.db_.get()) != 0) return;
      Query rollback(store_.stmt_.rollback.get());
      (void)rollback.step();  // nothing more to do if even this fails
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    Status begin(std::string_view op) {
      if (nested_) return Status::ok();
      Query q(store_.stmt_.begin.get());
      const int rc = q.step();
      if (rc != SQLITE_DONE) return store_.sqlite_error(rc, op);
      active_ = true;
      return Status::ok();
    }
    Status commit(std::string_view op) {
      if (nested_) return Status::ok();
      Query q(store_.stmt_.commit.get());
      const int rc = q.step();
      if (rc != SQLITE_DONE) return store_.sqlite_error(rc, op);
      active_ = false;
      return Status::ok();
    }

   private:
    SqliteStore& store_;
    const bool nested_;
    bool active_ = false;
  };

  // Ends the open batch (after its COMMIT or ROLLBACK): other threads' calls may go on.
  Status batch_over(std::unique_lock<std::mutex>& lock, Status result) {
    in_batch_ = false;
    batch_owner_ = {};
    lock.unlock();
    batch_ended_.notify_all();
    return result;
  }

  // Inside a batch, whether its transaction is still open. A full disk, an I/O error or a
  // lack of memory makes SQLite roll the whole transaction back, not only the statement that
  // failed: the batch's earlier writes are gone. Every later call of the batch then fails
  // (on its own, in a transaction of its own, it would make part of a batch that is to
  // happen whole or not at all durable), and so does end_batch(); abort_batch() ends it.
  // Call with mu_ held.
  Status batch_alive(std::string_view op) const {
    if (!in_batch_ || sqlite3_get_autocommit(db_.get()) == 0) return Status::ok();
    return {ErrorCode::kUnavailable, "store " + path_ + ": " + std::string(op) +
                                         ": an earlier error in this batch made SQLite roll the whole batch back (none of "
                                         "its writes happened); end it with abort_batch() and write again"};
  }

  // Locks mu_ for one call, after waiting for another thread's batch to end.
  std::unique_lock<std::mutex> lock_for_call() {
    std::unique_lock<std::mutex> lock(mu_);
    batch_ended_.wait(lock, [this] { return !in_batch_ || batch_owner_ == std::this_thread::get_id(); });
    return lock;
  }

  // lock_for_call() for a call of the store's interface, which fails when its batch is lost
  // (batch_alive()).
  Result<std::unique_lock<std::mutex>> enter(std::string_view op) {
    auto lock = lock_for_call();
    MDG_RETURN_IF_ERROR(batch_alive(op));
    return lock;
  }

  Status sqlite_error(int rc, std::string_view op) const {
    const char* msg = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
    std::string text = "store " + path_ + ": " + std::string(op) + ": " + msg;
    const std::string hint = hint_for(rc, options_.busy_timeout_ms);
    if (!hint.empty()) text += "; " + hint;
    return {code_for(rc), std::move(text)};
  }
  Status bad_input(std::string_view op, std::string_view what) const {
    return invalid_argument("store " + path_ + ": " + std::string(op) + ": " + std::string(what));
  }
  Status check_record(std::string_view op, const ConversationRecord& record) const;
  Status check_state(std::string_view op, std::string_view state) const {
    if (valid_state(state)) return Status::ok();
    return bad_input(op, "state '" + std::string(state) + "' is not one of bot, waiting, agent, closed");
  }
  // The one number a `SELECT count(*)` query `q` gives.
  Result<std::int64_t> read_count(Query& q, std::string_view op) const {
    const int rc = q.step();
    if (rc == SQLITE_ROW) return q.column_int64(0);
    return sqlite_error(rc, op);
  }
  // Every row of `q` (conversation columns, then last_seq).
  Result<std::vector<ConversationRecord>> read_conversations(Query& q, std::string_view op) const {
    std::vector<ConversationRecord> out;
    int rc = 0;
    while ((rc = q.step()) == SQLITE_ROW) out.push_back(read_conversation(q));
    if (rc != SQLITE_DONE) return sqlite_error(rc, op);
    return out;
  }
  Status newer_schema(std::int64_t version) const {
    return invalid_argument("store " + path_ + ": open: store schema version " +
                            std::to_string(version) + " is newer than this build supports (" +
                            std::to_string(kSchemaVersion) +
                            "); run a newer madoguchi hub on it, or open another file");
  }

  Status exec(const char* sql, std::string_view op);
  Result<std::string> query_text(const char* sql, std::string_view op);
  // `op` names the operation in an error; empty: "prepare `SQL`".
  Status prepare(StmtPtr& out, const std::string& sql, std::string_view op = {});
  // The schema version and the number of schema objects, read in one snapshot (two separate
  // reads could straddle another connection's schema creation).
  struct SchemaState {
    std::int64_t version = 0;
    std::int64_t objects = 0;
  };
  Result<SchemaState> read_schema_state();
  // A database of another program (version 0 with tables of its own, a negative version, or a
  // version of ours without our tables), refused.
  Status refuse_foreign_database(const SchemaState& state);
  Status migrate();
  // With mu_ held: does the conversation exist?
  Result<bool> exists(std::string_view id, std::string_view op);
  // sqlite3_wal_hook: after every commit, with the WAL's size in pages (mu_ is held).
  static int on_wal_commit(void* self, sqlite3* db, const char* schema, int pages);

  const std::string path_;
  const SqliteStoreOptions options_;
  std::mutex mu_;
  std::condition_variable batch_ended_;
  bool in_batch_ = false;          // guarded by mu_
  std::thread::id batch_owner_;    // guarded by mu_
  DbPtr db_;  // declared before the statements, so it is closed after they are finalized
  struct Statements {
    StmtPtr begin, commit, rollback;
    StmtPtr insert_conversation, find_conversation, update_conversation, conversation_exists;
    StmtPtr last_seq, find_client_id, insert_message;
    StmtPtr messages_after, in_state, count_in_state, agents_holding, of_agent, count_messages;
  } stmt_;
  // Checkpoints (on_wal_commit, with mu_ held): the WAL size that asks for the next pass, and
  // the checkpointer, created by the first commit that needs it. Declared last, so it stops
  // before the statements and the connection go away.
  int checkpoint_at_ = kCheckpointPages;
  std::unique_ptr<Checkpointer> checkpointer_;
};

int SqliteStore::on_wal_commit(void* self, sqlite3* db, const char* schema, int pages) {
  auto* store = static_cast<SqliteStore*>(self);
  if (pages < store->checkpoint_at_ - kCheckpointPages) store->checkpoint_at_ = kCheckpointPages;  // started over
  bool writer_checkpoints = pages >= kWriterCheckpointPages;
  if (!writer_checkpoints && pages >= store->checkpoint_at_) {
    store->checkpoint_at_ = pages + kCheckpointPages;
    try {
      if (!store->checkpointer_) {
        // The name SQLite resolved at open (absolute): the process may have changed its
        // directory since, and path_ may be relative.
        store->checkpointer_ = std::make_unique<Checkpointer>(sqlite3_db_filename(db, schema));
      }
      store->checkpointer_->request();
    } catch (...) {  // no memory or no thread (nothing may cross SQLite's C frames): do it here
      writer_checkpoints = true;
    }
  }
  if (writer_checkpoints) {
    // SQLITE_BUSY while the checkpointer is at it: the next commit tries again.
    (void)sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  }
  return SQLITE_OK;
}

Status SqliteStore::exec(const char* sql, std::string_view op) {
  const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status::ok() : sqlite_error(rc, op);
}

Result<std::string> SqliteStore::query_text(const char* sql, std::string_view op) {
  StmtPtr stmt;
  MDG_RETURN_IF_ERROR(prepare(stmt, sql, op));
  Query q(stmt.get());
  const int rc = q.step();
  if (rc == SQLITE_ROW) return q.column_text(0);
  if (rc == SQLITE_DONE) {
    return internal_error("store " + path_ + ": " + std::string(op) + ": no result");
  }
  return sqlite_error(rc, op);
}

Status SqliteStore::prepare(StmtPtr& out, const std::string& sql, std::string_view op) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size() + 1),
                                    SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  out.reset(raw);
  if (rc != SQLITE_OK) {
    // The first statement of open() reads the file header: a file that is not a database,
    // or that cannot be read, shows up here.
    return sqlite_error(rc, op.empty() ? "prepare `" + sql + "`" : std::string(op));
  }
  return Status::ok();
}

Result<SqliteStore::SchemaState> SqliteStore::read_schema_state() {
  constexpr std::string_view kOp = "open (read schema version)";
  StmtPtr stmt;
  // The first statement on a new connection reads the file: a non-database fails here.
  MDG_RETURN_IF_ERROR(prepare(stmt,
                              "SELECT user_version, (SELECT count(*) FROM sqlite_master WHERE "
                              "name NOT LIKE 'sqlite_%') FROM pragma_user_version",
                              kOp));
  Query q(stmt.get());
  const int rc = q.step();
  if (rc == SQLITE_ROW) return SchemaState{q.column_int64(0), q.column_int64(1)};
  if (rc == SQLITE_DONE) {
    return internal_error("store " + path_ + ": " + std::string(kOp) + ": no result");
  }
  return sqlite_error(rc, kOp);
}

Status SqliteStore::refuse_foreign_database(const SchemaState& state) {
  auto foreign = [&](const std::string& what) {
    return invalid_argument("store " + path_ + ": open: the file is a SQLite database of another program (" + what +
                            "); give the store a file of its own");
  };
  if (state.version == 0) {
    if (state.objects == 0) return Status::ok();  // new: the schema is created
    return foreign(std::to_string(state.objects) + " tables, indexes or views, and no madoguchi schema version");
  }
  if (state.version < 0) return foreign("schema version " + std::to_string(state.version));
  if (state.version > kSchemaVersion) return Status::ok();  // ours, newer: refused as such
  // Versions 1 to kSchemaVersion: other programs set user_version too. Every version of the
  // schema has these columns and the client id index.
  constexpr const char* kOursSql =
      "SELECT (SELECT count(*) FROM pragma_table_info('conversations') WHERE name IN ('id', 'state', "
      "'locale', 'visitor_json', 'assigned_agent', 'priority', 'handoff_json', 'created_ms', 'updated_ms')) = 9 "
      "AND (SELECT count(*) FROM pragma_table_info('messages') WHERE name IN ('conversation_id', 'seq', "
      "'client_id', 'sender', 'kind', 'body_json', 'created_ms')) = 7 "
      "AND EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'messages_by_client_id')";
  MDG_ASSIGN_OR_RETURN(const std::string ours, query_text(kOursSql, "open (read the schema)"));
  if (ours == "1") return Status::ok();
  return foreign("schema version " + std::to_string(state.version) +
                 ", but not the tables of madoguchi's schema of that version");
}

Status SqliteStore::migrate() {
  Transaction tx(*this);
  MDG_RETURN_IF_ERROR(tx.begin("open (create schema)"));
  // Read again under the write lock: another connection may have created the schema meanwhile.
  MDG_ASSIGN_OR_RETURN(const SchemaState state, read_schema_state());
  const std::int64_t version = state.version;
  if (version == kSchemaVersion) return tx.commit("open (create schema)");
  if (version > kSchemaVersion) return newer_schema(version);
  MDG_RETURN_IF_ERROR(refuse_foreign_database(state));
  if (version == 1 || version == 2) {
    // Each step from the file's version on, in the same transaction.
    if (version == 1) MDG_RETURN_IF_ERROR(exec(kMigrationV1ToV2, "open (migrate the schema from version 1 to 2)"));
    MDG_RETURN_IF_ERROR(exec(kMigrationV2ToV3, "open (migrate the schema from version 2 to 3)"));
    return tx.commit("open (migrate the schema to version 3)");
  }
  if (version != 0) {
    return internal_error("store " + path_ + ": no migration from store schema version " +
                          std::to_string(version) + " to " + std::to_string(kSchemaVersion));
  }
  MDG_RETURN_IF_ERROR(exec(kSchemaV3, "open (create schema)"));
  return tx.commit("open (create schema)");
}

Status SqliteStore::open() {
  if (sqlite3_threadsafe() == 0) {
    return internal_error("store " + path_ + ": open: the SQLite library was built without thread "
                          "support (SQLITE_THREADSAFE=0); link one built with it");
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path_.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  db_.reset(raw);  // closed by the deleter even when the open failed
  if (rc != SQLITE_OK) return sqlite_error(rc, "open");
  // A file this process may only read is opened read-only, silently: every write would fail.
  if (sqlite3_db_readonly(db_.get(), "main") == 1) {
    return unavailable("store " + path_ + ": open: the file can only be read by this process; " +
                       hint_for(SQLITE_READONLY, 0));
  }
  sqlite3_extended_result_codes(db_.get(), 1);
  sqlite3_busy_timeout(db_.get(), std::max(0, options_.busy_timeout_ms));

  // The first read of the file: a file that is not a database fails here.
  MDG_ASSIGN_OR_RETURN(const SchemaState state, read_schema_state());
  const std::int64_t version = state.version;
  if (version > kSchemaVersion) return newer_schema(version);
  // Before journal_mode, which is stored in the file: leave another program's database as it was.
  MDG_RETURN_IF_ERROR(refuse_foreign_database(state));

  // Switching to WAL needs the file to itself for a moment: when another connection opening
  // the same new file holds it, SQLite keeps the old mode and says so, or fails with
  // SQLITE_BUSY at once, without the busy handler, when two connections each hold a shared
  // lock and wait for the other's (a deadlock it breaks). WAL is stored in the file, so
  // asking again once the other connection is done finds it set.
  std::string mode;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(0, options_.busy_timeout_ms));
  while (true) {
    auto set = query_text("PRAGMA journal_mode = WAL", "set journal_mode=WAL");
    const bool expired = std::chrono::steady_clock::now() >= deadline;
    if (set.is_ok()) {
      mode = std::move(set).value();
      if (mode == "wal" || mode == "memory" || expired) break;
    } else if ((sqlite3_errcode(db_.get()) & 0xff) != SQLITE_BUSY || expired) {  // the failed step's code
      return set.status();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (mode != "wal" && mode != "memory") {
    return unavailable("store " + path_ + ": set journal_mode=WAL: SQLite kept journal mode '" +
                       mode +
                       "'; WAL needs shared memory, which network file systems do not offer: "
                       "put the database on a local disk");
  }
  MDG_RETURN_IF_ERROR(exec(options_.synchronous_full ? "PRAGMA synchronous = FULL"
                                                     : "PRAGMA synchronous = NORMAL",
                           "set synchronous"));
  MDG_RETURN_IF_ERROR(exec("PRAGMA foreign_keys = ON", "set foreign_keys"));
  // 16 MiB of page cache instead of SQLite's 2 MiB: a hub's batch of a few hundred messages
  // dirties more pages than 2 MiB holds, and SQLite then spills them to the WAL mid-transaction
  // and reads them back.
  MDG_RETURN_IF_ERROR(exec("PRAGMA cache_size = -16384", "set cache_size"));
  // Replaces SQLite's automatic checkpoint (the two share the hook).
  if (mode == "wal") sqlite3_wal_hook(db_.get(), &SqliteStore::on_wal_commit, this);

  MDG_RETURN_IF_ERROR(prepare(stmt_.begin, "BEGIN IMMEDIATE"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.commit, "COMMIT"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.rollback, "ROLLBACK"));
  if (version < kSchemaVersion) MDG_RETURN_IF_ERROR(migrate());

  const std::string columns = kConversationColumns;
  const std::string read_columns = columns + ", " + kLastSeq;
  MDG_RETURN_IF_ERROR(prepare(stmt_.insert_conversation,
                              "INSERT INTO conversations (" + columns +
                                  ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.find_conversation,
                              "SELECT " + read_columns + " FROM conversations WHERE id = ?"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.update_conversation,
                              "UPDATE conversations SET state = ?, locale = ?, visitor_json = ?, "
                              "assigned_agent = ?, priority = ?, handoff_json = ?, updated_ms = ? "
                              "WHERE id = ?"));
  MDG_RETURN_IF_ERROR(
      prepare(stmt_.conversation_exists, "SELECT 1 FROM conversations WHERE id = ?"));
  // A row only when the conversation exists.
  MDG_RETURN_IF_ERROR(prepare(stmt_.last_seq, std::string("SELECT ") + kLastSeq +
                                                  " FROM conversations WHERE id = ?"));
  // `client_id <> ''` lets SQLite use the partial unique index.
  MDG_RETURN_IF_ERROR(prepare(stmt_.find_client_id,
                              "SELECT seq FROM messages WHERE conversation_id = ? AND "
                              "client_id = ? AND client_id <> ''"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.insert_message,
                              "INSERT INTO messages (conversation_id, seq, client_id, sender, "
                              "kind, body_json, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.messages_after,
                              "SELECT conversation_id, seq, client_id, sender, kind, body_json, "
                              "created_ms FROM messages WHERE conversation_id = ? AND seq > ? "
                              "ORDER BY seq LIMIT ?"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.in_state,
                              "SELECT " + read_columns +
                                  " FROM conversations WHERE state = ? "
                                  "ORDER BY priority DESC, updated_ms ASC, id ASC LIMIT ?"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.count_in_state, "SELECT count(*) FROM conversations WHERE state = ?"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.agents_holding,
                              "SELECT DISTINCT assigned_agent FROM conversations WHERE state = 'agent'"));
  // Within the index's range of state 'agent', so it reads the conversations held by agents
  // (not every conversation) and returns them in the index's order.
  MDG_RETURN_IF_ERROR(prepare(stmt_.of_agent,
                              "SELECT " + read_columns +
                                  " FROM conversations WHERE state = 'agent' AND assigned_agent = ? "
                                  "ORDER BY priority DESC, updated_ms ASC, id ASC LIMIT ?"));
  MDG_RETURN_IF_ERROR(prepare(stmt_.count_messages, "SELECT count(*) FROM messages"));
  return Status::ok();
}

Status SqliteStore::check_record(std::string_view op, const ConversationRecord& record) const {
  if (record.id.empty()) return bad_input(op, "conversation id is empty");
  if (!valid_state(record.state)) {
    return bad_input(op, "conversation '" + record.id + "': state '" + record.state +
                             "' is not one of bot, waiting, agent, closed");
  }
  if (!std::isfinite(record.priority)) {
    return bad_input(op, "conversation '" + record.id + "': priority must be a finite number");
  }
  return Status::ok();
}

Result<bool> SqliteStore::exists(std::string_view id, std::string_view op) {
  Query q(stmt_.conversation_exists.get());
  q.text(id);
  const int rc = q.step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return sqlite_error(rc, op);
}

Status SqliteStore::create_conversation(const ConversationRecord& record) {
  constexpr std::string_view kOp = "create_conversation";
  MDG_RETURN_IF_ERROR(check_record(kOp, record));
  MDG_ASSIGN_OR_RETURN(const auto lock, enter(kOp));
  Query q(stmt_.insert_conversation.get());
  q.text(record.id)
      .text(record.state)
      .text(record.locale)
      .text(record.visitor_json)
      .text(record.assigned_agent)
      .real(record.priority)
      .text(record.handoff_json)
      .int64(record.created_ms)
      .int64(record.updated_ms);
  const int rc = q.step();
  if (rc == SQLITE_DONE) return Status::ok();
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
    return bad_input(kOp, "conversation '" + record.id + "' already exists");
  }
  return sqlite_error(rc, kOp);
}

Result<std::optional<ConversationRecord>> SqliteStore::find_conversation(std::string_view id) {
  constexpr std::string_view kOp = "find_conversation";
  if (id.empty()) return bad_input(kOp, "conversation id is empty");
  MDG_ASSIGN_OR_RETURN(const auto lock, enter(kOp));
  Query q(stmt_.find_conversation.get());
  q.text(id);
  const int rc = q.step();
  if (rc == SQLITE_ROW) return std::optional<ConversationRecord>(read_conversation(q));
  if (rc == SQLITE_DONE) return std::optional<ConversationRecord>();
  return sqlite_error(rc, kOp);
}

Status SqliteStore::update_conversation(const ConversationRecord& record) {
  constexpr std::string_view kOp = "update_conversation";
  MDG_RETURN_IF_ERROR(check_record(kOp, record));
  MDG_ASSIGN_OR_RETURN(const auto lock, enter(kOp));
  Query q(stmt_.update_conversation.get());
  q.text(record.state)
      .text(record.locale)
      .text(record.visitor_json)
      .text(record.assigned_agent)
      .real(record.priority)
      .text(record.handoff_json)
      .int64(record.updated_ms)
      .text(record.id);
  const int rc = q.step();
  if (rc != SQLITE_DONE) return sqlite_error(rc, kOp);
  if (sqlite3_changes(db_.get()) == 0) {
    return not_found("store " + path_ + ": " + std::string(kOp) + ": no conversation '" +
                     record.id + "'");
  }
  return Status::ok();
}

Result<AppendResult> SqliteStore::append(std::string_view conversation_id,
                                         const NewMessage& message) {
  constexpr std::string_view kOp = "append";
  if (conversation_id.empty()) return bad_input(kOp, "conversation id is empty");
  const std::string conv(conversation_id);
  if (message.body_json.empty()) {
    return bad_input(kOp, "conversation '" + conv + "': body_json is empty (give a JSON object)");
  }
  if (message.sender.empty()) return bad_input(kOp, "conversation '" + conv + "': sender is empty");
  if (!valid_kind(message.kind)) {
    return bad_input(kOp, "conversation '" + conv + "': kind '" + message.kind +
                              "' is not one of message, event");
  }

  MDG_ASSIGN_OR_RETURN(const auto lock, enter(kOp));
  Transaction tx(*this);
  MDG_RETURN_IF_ERROR(tx.begin(kOp));

  if (!message.client_id.empty()) {
    std::optional<std::int64_t> earlier;
    {
      Query q(stmt_.find_client_id.get());
      q.text(conversation_id).text(message.client_id);
      const int rc = q.step();
      if (rc == SQLITE_ROW) {
        earlier = q.column_int64(0);
      } else if (rc != SQLITE_DONE) {
        return sqlite_error(rc, kOp);
      }
    }
    if (earlier) {
      // Nothing is written; the earlier append was durable when it returned.
      MDG_RETURN_IF_ERROR(tx.commit(kOp));
      return AppendResult{*earlier, true};
    }
  }

  std::int64_t seq = 0;
  {
    Query q(stmt_.last_seq.get());
    q.text(conversation_id);
    const int rc = q.step();
    if (rc == SQLITE_DONE) {
      return not_found("store " + path_ + ": " + std::string(kOp) + ": no conversation '" + conv +
                       "'");
    }
    if (rc != SQLITE_ROW) return sqlite_error(rc, kOp);
    seq = q.column_int64(0) + 1;
  }
  {
    Query q(stmt_.insert_message.get());
    q.text(conversation_id)
        .int64(seq)
        .text(message.client_id)
        .text(message.sender)
        .text(message.kind)
        .text(message.body_json)
        .int64(message.created_ms);
    const int rc = q.step();
    if (rc != SQLITE_DONE) return sqlite_error(rc, kOp);
  }
  MDG_RETURN_IF_ERROR(tx.commit(kOp));
  return AppendResult{seq, false};
}

Result<std::vector<StoredMessage>> SqliteStore::messages_after(std::string_view conversation_id,
                                                               std::int64_t after_seq,
                                                               std::size_t limit) {
  constexpr std::string_view kOp = "messages_after";
  if (conversation_id.empty()) return bad_input(kOp, "conversation id is empty");
  MDG_ASSIGN_OR_RETURN(const auto lock, enter(kOp));
  std::vector<StoredMessage> out;
  {
    Query q(stmt_.messages_after.get());
    q.text(conversation_id).int64(after_seq).int64(clamp_limit(limit));
    int rc = 0;
    while ((rc = q.step()) == SQLITE_ROW) {
      StoredMessage m;
      m.conversation_id = q.column_text(0);
      m.seq = q.column_int64(1);
      m.client_id = q.column_text(2);
      m.sender = q.column_text(3);
      m.kind = q.column_text(4);
      m.body_json = q.column_text(5);
      m.created_ms = q.column_int64(6);
      out.push_back(std::move(m));
    }
    if (rc != SQLITE_DONE) return sqlite_error(rc, kOp);
  }
  if (out.empty()) {
    // Conversations are never deleted, so a separate check tells "nothing new" from "no such".
    MDG_ASSIGN_OR_RETURN(const bool found, exists(conversation_id, kOp));
    if (!found) {
      return not_found("store " + path_ + ": " + std::string(kOp) + ": no conversation '" +
                       std::string(conversation_id) + "'");
    }
  }
  return out;
}

Result<std::vector<ConversationRecord>> SqliteStore::conversations_in_state(
    std::string_view state, std::size_t limit) {
  constexpr std::string_view kOp = "conversations_in_state";
  MDG_RETURN_IF_ERROR(check_state(kOp, state));
  MDG_ASSIGN_OR_RETURN(const auto lock, enter(kOp));
  Query q(stmt_.in_state.get());
  q.text(state).int64(clamp_limit(limit));
  return read_conversations(q, kOp);
}

Result<std::int64_t> SqliteStore::count_in_state(std::string_view state) {
  constexpr std::string_view kOp = "count_in_state";
  MDG_RETURN_IF_ERROR(check_state(kOp, state));
  MDG_ASSIGN_OR_RETURN(const auto lock, enter(kOp));
  Query q(stmt_.count_in_state.get());
  q.text(state);
  return read_count(q, kOp);
}

Result<std::vector<std::string>> SqliteStore::agents_holding() {
  MDG_ASSIGN_OR_RETURN(const auto lock, enter("agents_holding"));
  std::vector<std::string> out;
  Query q(stmt_.agents_holding.get());
  int rc = 0;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back(q.column_text(0));
  if (rc != SQLITE_DONE) return sqlite_error(rc, "agents_holding");
  return out;
}

Result<std::vector<ConversationRecord>> SqliteStore::conversations_of_agent(std::string_view agent,
                                                                            std::size_t limit) {
  constexpr std::string_view kOp = "conversations_of_agent";
  MDG_ASSIGN_OR_RETURN(const auto lock, enter(kOp));
  Query q(stmt_.of_agent.get());
  q.text(agent).int64(clamp_limit(limit));
  return read_conversations(q, kOp);
}

Result<std::int64_t> SqliteStore::count_messages() {
  MDG_ASSIGN_OR_RETURN(const auto lock, enter("count_messages"));
  Query q(stmt_.count_messages.get());
  return read_count(q, "count_messages");
}

Result<std::optional<std::int64_t>> SqliteStore::find_message(std::string_view conversation_id,
                                                               std::string_view client_id) {
  if (client_id.empty()) return std::optional<std::int64_t>();
  MDG_ASSIGN_OR_RETURN(const auto lock, enter("find_message"));
  Query q(stmt_.find_client_id.get());
  q.text(conversation_id).text(client_id);
  const int rc = q.step();
  if (rc == SQLITE_ROW) return std::optional<std::int64_t>(q.column_int64(0));
  if (rc == SQLITE_DONE) return std::optional<std::int64_t>();
  return sqlite_error(rc, "find_message");
}

Status SqliteStore::abort_batch() {
  constexpr std::string_view kOp = "abort_batch";
  auto lock = lock_for_call();
  if (!in_batch_) return bad_input(kOp, "no batch is open on this thread (call begin_batch() first)");
  Status result = Status::ok();
  {
    Query q(stmt_.rollback.get());
    const int rc = q.step();
    // An I/O error can have rolled the transaction back already: then nothing is left open.
    if (rc != SQLITE_DONE && sqlite3_get_autocommit(db_.get()) == 0) result = sqlite_error(rc, kOp);
  }
  return batch_over(lock, std::move(result));
}

Status SqliteStore::begin_batch() {
  constexpr std::string_view kOp = "begin_batch";
  auto lock = lock_for_call();
  if (in_batch_) return bad_input(kOp, "a batch is already open on this thread; call end_batch() first");
  Query q(stmt_.begin.get());
  const int rc = q.step();
  if (rc != SQLITE_DONE) return sqlite_error(rc, kOp);
  in_batch_ = true;
  batch_owner_ = std::this_thread::get_id();
  return Status::ok();
}

Status SqliteStore::end_batch() {
  constexpr std::string_view kOp = "end_batch";
  auto lock = lock_for_call();
  if (!in_batch_) return bad_input(kOp, "no batch is open on this thread (call begin_batch() first)");
  if (Status lost = batch_alive(kOp); !lost) return batch_over(lock, std::move(lost));
  Status result = Status::ok();
  {
    Query q(stmt_.commit.get());
    const int rc = q.step();
    if (rc != SQLITE_DONE) result = sqlite_error(rc, kOp);
  }
  if (!result && sqlite3_get_autocommit(db_.get()) == 0) {
    // COMMIT failed and left the transaction open (SQLITE_BUSY): the batch is given up.
    Query rollback(stmt_.rollback.get());
    (void)rollback.step();
  }
  return batch_over(lock, std::move(result));
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path,
                                                 SqliteStoreOptions options) {
  namespace fs = std::filesystem;
  if (path.empty()) {
    return invalid_argument(
        "store: open: the path is empty; give a database file such as "
        "/var/lib/madoguchi/hub.db, or \":memory:\" for a private in-memory store");
  }
  if (path != ":memory:") {
    const fs::path file(path);
    std::error_code ec;
    if (fs::is_directory(fs::status(file, ec))) {
      return invalid_argument("store " + path +
                              ": open: the path is a directory; give a file inside it, such as " +
                              (file / "hub.db").string());
    }
    const fs::path dir = file.parent_path();
    if (!dir.empty()) {
      const fs::file_status st = fs::status(dir, ec);
      if (st.type() == fs::file_type::not_found) {
        return not_found("store " + path + ": open: directory " + dir.string() +
                         " does not exist; create it (mkdir -p " + dir.string() +
                         ") or choose another path");
      }
      if (fs::exists(st) && !fs::is_directory(st)) {
        return invalid_argument("store " + path + ": open: " + dir.string() +
                                " is not a directory; choose another path");
      }
      // Other cases (no permission to look) are left to SQLite, which says what it could not do.
    }
  }
  auto store = std::make_unique<SqliteStore>(path, options);
  MDG_RETURN_IF_ERROR(store->open());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace v1
}  // namespace madoguchi::hub
