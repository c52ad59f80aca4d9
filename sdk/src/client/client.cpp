// madoguchi::Client: the visitor's live-chat client (docs/client.md).
//
// Two worlds meet here:
//   - the network thread (run()) owns the lws context, the connection and every field under
//     "network thread only"; every lws call happens on it, from lws callbacks and sul timers;
//   - public calls, from any thread, touch only the fields under `mu` and wake the loop with
//     lws_cancel_service() (the one lws call that is safe from another thread), made while
//     holding `mu` so that the context cannot be destroyed under it.
// Lock order: life_mu -> poll_mu -> persist_mu -> mu. No lock is held while on_event runs.
#include <madoguchi/client.hpp>

#include "client/state_file.hpp"

#include <libwebsockets.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <utility>

namespace madoguchi {
inline namespace v1 {

std::string_view to_string(ConnectionState state) noexcept {
  switch (state) {
    case ConnectionState::kConnecting: return "connecting";
    case ConnectionState::kConnected: return "connected";
    case ConnectionState::kDisconnected: return "disconnected";
    case ConnectionState::kClosed: return "closed";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
using detail::client::OutboxEntry;
using detail::client::PersistedState;
using protocol::ErrorKind;
using protocol::Frame;
using protocol::FrameType;

constexpr const char* kClientName = "madoguchi-cpp/0.1";
// The client paces its own frames well under the hub's default limit (20/s, bursts of 40), so
// that flushing a long outbox does not get frames dropped with rate_limited.
constexpr double kSendRatePerSecond = 10.0;
constexpr double kSendBurst = 20.0;
constexpr std::size_t kMaxIncomingFrame = 4u << 20;
constexpr int kCloseHandshakeMs = 1000;
constexpr int kLastSeqFlushMs = 20;

struct ParsedUrl {
  bool tls = false;
  std::string host;
  int port = 0;
  std::string path;
  std::string host_header;  // host[:port], [v6][:port]
};

Result<ParsedUrl> parse_url(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return invalid_argument("client: url \"" + std::string(url) + "\": " + std::string(why) +
                            " (expected ws://host:port/v1/visitor or wss://...)");
  };
  ParsedUrl u;
  std::string_view rest;
  if (url.rfind("ws://", 0) == 0) {
    rest = url.substr(5);
    u.port = 80;
  } else if (url.rfind("wss://", 0) == 0) {
    rest = url.substr(6);
    u.tls = true;
    u.port = 443;
  } else {
    return bad("the scheme must be ws:// or wss://");
  }
  std::size_t host_end;
  if (!rest.empty() && rest.front() == '[') {
    std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("unterminated [IPv6 address]");
    u.host.assign(rest.substr(1, close - 1));
    host_end = close + 1;
  } else {
    host_end = std::min(rest.find(':'), rest.find('/'));
    if (host_end == std::string_view::npos) host_end = rest.size();
    u.host.assign(rest.substr(0, host_end));
  }
  if (u.host.empty()) return bad("no host");
  rest = rest.substr(host_end);
  if (!rest.empty() && rest.front() == ':') {
    std::size_t digits_end = rest.find('/');
    std::string_view digits = rest.substr(1, digits_end == std::string_view::npos ? std::string_view::npos : digits_end - 1);
    if (digits.empty() || digits.size() > 5 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return bad("the port must be a number");
    }
    u.port = std::stoi(std::string(digits));
    if (u.port < 1 || u.port > 65535) return bad("the port must be 1..65535");
    rest = digits_end == std::string_view::npos ? std::string_view() : rest.substr(digits_end);
  }
  u.path = rest.empty() ? std::string("/v1/visitor") : std::string(rest);
  if (u.path.front() != '/') return bad("the path must start with /");
  u.host_header = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  if (u.port != (u.tls ? 443 : 80)) u.host_header += ":" + std::to_string(u.port);
  return u;
}

// lws logs through one process-wide function: its lines go to the Logger of the client that
// started last (and nowhere once that client is gone).
std::mutex g_log_mu;
Logger g_log;
std::uint64_t g_log_owner = 0;
std::atomic<std::uint64_t> g_next_client_id{1};

void lws_log_emit(int level, const char* line) {
  std::lock_guard lock(g_log_mu);
  LogLevel l = level == LLL_ERR ? LogLevel::kError : level == LLL_WARN ? LogLevel::kWarning : LogLevel::kDebug;
  if (!g_log.enabled(l)) return;
  std::string_view s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
  g_log.log(l, "client: lws: " + std::string(s));
}

int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);

const lws_protocols kProtocols[] = {
    {"madoguchi.v1", callback, 0, 0, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

// WebSocket keepalive: a ping after 20 s of silence, hang up (and reconnect) after 40 s.
const lws_retry_bo_t kIdlePolicy = {nullptr, 0, 0, 20, 40, 0};

// The Impl whose network thread this is (null elsewhere), to refuse close() from a callback.
thread_local const void* tl_network_impl = nullptr;
// The Impl whose poll() runs on this thread, to make poll() from on_event a no-op.
thread_local const void* tl_polling_impl = nullptr;

}  // namespace

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  struct Timer {
    lws_sorted_usec_list_t sul;  // first member: a sul pointer is a Timer pointer
    Impl* self = nullptr;
    void (Impl::*fn)() = nullptr;
  };
  struct Queued {
    OutboxEntry msg;
    bool committed = false;  // written to state_path (send() returned); only these are sent
  };

  ClientConfig cfg;
  ParsedUrl url;
  std::uint64_t client_id = g_next_client_id++;
  detail::client::FileLock state_lock;

  // ---- shared: guarded by mu ----------------------------------------------------------
  mutable std::mutex mu;
  std::condition_variable events_cv;
  std::deque<Queued> outbox;
  std::string token;
  std::string conversation;
  std::int64_t last_seq = 0;  // the highest seq delivered to on_event (persisted)
  bool last_seq_dirty = false;
  ConnectionState state = ConnectionState::kDisconnected;
  std::deque<std::string> control;  // typing/read frames for the network thread
  bool stop_requested = false;
  Clock::time_point close_deadline;
  bool refused = false;  // the hub refused the conversation (unauthorized...)
  std::string refusal;
  bool closed = false;          // close() has finished
  lws_context* ctx = nullptr;   // non-null while the loop runs
  std::deque<ClientEvent> events;  // kPoll
  std::mt19937_64 id_rng;

  std::mutex persist_mu;  // one state-file write at a time, snapshots in order
  std::mutex life_mu;     // start() and close()
  std::mutex poll_mu;     // one poll() at a time
  std::thread thread;
  bool started = false;   // under life_mu
  std::atomic<bool> suppress_events{false};  // the Client was destroyed from a callback

  // ---- network thread only ------------------------------------------------------------
  lws_context* nctx = nullptr;
  lws* wsi = nullptr;
  bool conn_active = false;  // a connection exists (connecting or established)
  bool established = false;
  bool hello_sent = false;
  bool welcomed = false;
  bool closing_ws = false;
  std::set<std::string> sent_ids;  // outbox ids written on this connection
  std::deque<std::string> tx;      // control frames to write
  std::string rx;
  std::int64_t seen_seq = 0;       // the highest seq taken in (dedupe)
  std::size_t attempt = 0;         // retries since the last welcome
  bool reconnect_pending = false;
  bool paused = false;             // outbox sending paused after rate_limited/internal
  bool shutting_down = false;
  bool finishing = false;
  bool deadline_passed = false;
  bool loop_done = false;
  bool destroying = false;
  double tokens = kSendBurst;
  Clock::time_point refilled = Clock::now();
  std::mt19937 jitter_rng{std::random_device{}()};
  Timer reconnect_timer{}, deadline_timer{}, pace_timer{}, resume_timer{}, guard_timer{}, flush_timer{};

  Impl(ClientConfig c, ParsedUrl u) : cfg(std::move(c)), url(std::move(u)) {
    std::random_device rd;
    std::seed_seq seed{rd(), rd(), rd(), rd(),
                       static_cast<unsigned>(Clock::now().time_since_epoch().count()),
                       static_cast<unsigned>(client_id)};
    id_rng.seed(seed);
  }

  ~Impl() {
    if (thread.joinable()) thread.detach();  // unreachable: close() joins, callbacks detach
    std::lock_guard lock(g_log_mu);
    if (g_log_owner == client_id) {
      g_log = Logger{};
      g_log_owner = 0;
    }
  }

  void log(LogLevel level, const std::string& message) const { cfg.logger.log(level, "client: " + message); }
  bool logs(LogLevel level) const { return cfg.logger.enabled(level); }

  // ---- state file ---------------------------------------------------------------------
  PersistedState snapshot_locked() const {
    PersistedState s;
    s.token = token;
    s.conversation = conversation;
    s.last_seq = last_seq;
    s.outbox.reserve(outbox.size());
    for (const auto& q : outbox) s.outbox.push_back(q.msg);
    return s;
  }

  // Writes the current state (with persist_mu held by the caller).
  Status persist_held() {
    if (cfg.state_path.empty()) {
      std::lock_guard lock(mu);
      last_seq_dirty = false;
      return Status::ok();
    }
    std::string json;
    {
      std::lock_guard lock(mu);
      if (closed) return Status::ok();  // the state file belongs to the next client now
      json = detail::client::serialize_state(snapshot_locked());
      last_seq_dirty = false;
    }
    Status st = detail::client::write_file_atomically(cfg.state_path, json);
    if (!st) {
      std::lock_guard lock(mu);
      last_seq_dirty = true;  // try again on the next change
    }
    return st;
  }

  Status persist() {
    std::lock_guard lock(persist_mu);
    return persist_held();
  }

  // Persists from the network thread; a failure is logged and surfaced as a kError event
  // (the state in memory is still right and the next change writes it again).
  void persist_or_report() {
    Status st = persist();
    if (st) return;
    log(LogLevel::kError, st.message());
    ClientEvent ev;
    ev.kind = ClientEvent::Kind::kError;
    ev.frame = protocol::make_error(ErrorKind::kInternal, st.message());
    emit(std::move(ev));
  }

  // ---- events -------------------------------------------------------------------------
  ConnectionState current_state() const {
    std::lock_guard lock(mu);
    return state;
  }

  void emit(ClientEvent ev) {
    if (suppress_events) return;
    ev.state = current_state();
    if (cfg.dispatch == Dispatch::kPoll) {
      std::lock_guard lock(mu);
      events.push_back(std::move(ev));
      events_cv.notify_all();
      return;
    }
    deliver(ev);
    bool dirty;
    {
      std::lock_guard lock(mu);
      dirty = last_seq_dirty;
    }
    if (dirty && nctx && !destroying) schedule(flush_timer, kLastSeqFlushMs, &Impl::on_flush_timer);
  }

  void emit(ClientEvent::Kind kind, const Frame& f) {
    ClientEvent ev;
    ev.kind = kind;
    ev.frame = f;
    emit(std::move(ev));
  }

  // Runs on_event, then counts the event's seq as delivered.
  void deliver(const ClientEvent& ev) {
    if (cfg.on_event) {
      try {
        cfg.on_event(ev);
      } catch (const std::exception& e) {
        log(LogLevel::kError, std::string("on_event threw: ") + e.what());
      } catch (...) {
        log(LogLevel::kError, "on_event threw");
      }
    }
    bool numbered = ev.kind == ClientEvent::Kind::kMessage || ev.kind == ClientEvent::Kind::kEvent ||
                    ev.kind == ClientEvent::Kind::kAck;
    if (numbered && ev.frame.seq) {
      std::lock_guard lock(mu);
      if (*ev.frame.seq > last_seq) {
        last_seq = *ev.frame.seq;
        last_seq_dirty = true;
      }
    }
  }

  void set_state(ConnectionState s) {
    {
      std::lock_guard lock(mu);
      if (state == s) return;
      state = s;
    }
    if (logs(LogLevel::kInfo)) log(LogLevel::kInfo, std::string(to_string(s)));
    ClientEvent ev;
    ev.kind = ClientEvent::Kind::kState;
    emit(std::move(ev));
  }

  // ---- public calls (any thread) -------------------------------------------------------
  void wake_locked() {
    if (ctx) lws_cancel_service(ctx);
  }

  Status start() {
    if (tl_network_impl == this) return invalid_argument("start(): the client is already started");
    std::lock_guard life(life_mu);
    {
      std::lock_guard lock(mu);
      if (closed || stop_requested) return Status(ErrorCode::kClosed, "start(): the client is closed");
    }
    if (started) return invalid_argument("start(): the client is already started");
    {
      std::lock_guard lock(g_log_mu);
      g_log = cfg.logger;
      g_log_owner = client_id;
    }
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    std::promise<Status> ready;
    std::future<Status> result = ready.get_future();
    thread = std::thread([self = shared_from_this(), p = std::move(ready)]() mutable { self->run(p); });
    Status st = result.get();
    if (!st) {
      thread.join();
      return st;
    }
    started = true;
    return Status::ok();
  }

  std::string new_id_locked() {
    static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    std::string id = "m-";
    std::uniform_int_distribution<int> pick(0, 35);
    for (int i = 0; i < 22; ++i) id += kAlphabet[pick(id_rng)];
    return id;
  }

  Status closed_status_locked() const {
    if (refused) return Status(ErrorCode::kClosed, "the hub refused the conversation: " + refusal);
    return Status(ErrorCode::kClosed, "the client is closed");
  }

  Result<std::string> send(std::string_view text, std::vector<protocol::Attachment> attachments) {
    // Refuse now what the hub would refuse later: such a message would stay in the outbox.
    if (text.empty() && attachments.empty()) {
      return invalid_argument("send(): the message is empty (text or at least one attachment is needed)");
    }
    Frame m;
    m.type = FrameType::kMessage;
    m.id = "m-0000000000000000000000";
    m.text.assign(text);
    m.attachments = std::move(attachments);
    auto checked = protocol::decode(protocol::encode(m));
    if (auto* err = std::get_if<protocol::DecodeError>(&checked)) {
      return invalid_argument("send(): the hub would refuse this message: " + err->message);
    }

    std::lock_guard persist_lock(persist_mu);
    std::string id;
    {
      std::lock_guard lock(mu);
      if (closed || stop_requested || refused) return closed_status_locked();
      id = new_id_locked();
      Queued q;
      q.msg.id = id;
      q.msg.text = std::move(m.text);
      q.msg.attachments = std::move(m.attachments);
      outbox.push_back(std::move(q));
    }
    Status st = persist_held();
    {
      std::lock_guard lock(mu);
      if (!st) {
        auto it = std::find_if(outbox.begin(), outbox.end(), [&](const Queued& q) { return q.msg.id == id; });
        if (it != outbox.end()) outbox.erase(it);
        return Status(st.code(), "send(): the message was not queued: " + st.message());
      }
      for (auto& q : outbox) {
        if (q.msg.id == id) q.committed = true;
      }
      wake_locked();
    }
    if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "queued " + id);
    return id;
  }

  Status control_frame(Frame f) {
    std::lock_guard lock(mu);
    if (state != ConnectionState::kConnected || stop_requested) return Status::ok();
    control.push_back(protocol::encode(f));
    wake_locked();
    return Status::ok();
  }

  std::size_t poll(int timeout_ms, std::size_t max) {
    if (cfg.dispatch != Dispatch::kPoll || max == 0 || tl_polling_impl == this) return 0;
    std::lock_guard turn(poll_mu);
    std::unique_lock lock(mu);
    auto ready = [this] { return !events.empty() || closed; };
    if (timeout_ms < 0) {
      events_cv.wait(lock, ready);
    } else if (timeout_ms > 0) {
      events_cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
    }
    std::size_t n = 0;
    tl_polling_impl = this;
    while (n < max && !events.empty()) {
      ClientEvent ev = std::move(events.front());
      events.pop_front();
      lock.unlock();
      deliver(ev);
      ++n;
      lock.lock();
    }
    tl_polling_impl = nullptr;
    bool dirty = last_seq_dirty && !closed;
    lock.unlock();
    if (dirty) {
      if (Status st = persist(); !st) log(LogLevel::kError, st.message());
    }
    return n;
  }

  std::size_t committed_pending_locked() const {
    std::size_t n = 0;
    for (const auto& q : outbox) n += q.committed ? 1 : 0;
    return n;
  }

  Status close(int timeout_ms) {
    if (tl_network_impl == this) {
      return invalid_argument(
          "close() was called from on_event on the client's network thread; it would wait for itself. "
          "Call it from another thread, or use Dispatch::kPoll");
    }
    std::lock_guard life(life_mu);
    if (thread.joinable()) {
      {
        std::lock_guard lock(mu);
        if (!stop_requested) {
          stop_requested = true;
          close_deadline = Clock::now() + std::chrono::milliseconds(std::max(0, timeout_ms));
        }
        wake_locked();
      }
      thread.join();
    }
    {
      std::lock_guard lock(mu);
      stop_requested = true;
      state = ConnectionState::kClosed;
    }
    bool dirty;
    {
      std::lock_guard lock(mu);
      dirty = last_seq_dirty && !closed;
    }
    if (dirty) {
      if (Status st = persist(); !st) log(LogLevel::kError, st.message());
    }
    std::size_t left;
    {
      std::lock_guard lock(mu);
      closed = true;
      left = committed_pending_locked();
      events_cv.notify_all();
    }
    state_lock.release();
    if (left == 0) return Status::ok();
    std::string where = cfg.state_path.empty()
                            ? std::string("they are lost: the client has no state_path")
                            : "they stay in " + cfg.state_path + " and are sent by the next client that opens it";
    return Status(ErrorCode::kDeadlineExceeded,
                  std::to_string(left) + " message(s) not acknowledged by the hub before the deadline; " + where);
  }

  // The Client is destroyed from its own callback: the network thread finishes by itself
  // (without flushing) and releases this Impl when it ends.
  void abandon_from_callback() {
    suppress_events = true;
    {
      std::lock_guard lock(mu);
      stop_requested = true;
      close_deadline = Clock::now();
      wake_locked();
    }
    if (thread.joinable()) thread.detach();
  }

  // ---- network thread -----------------------------------------------------------------
  void schedule(Timer& t, int ms, void (Impl::*fn)()) {
    t.self = this;
    t.fn = fn;
    lws_sul_schedule(nctx, 0, &t.sul, &Impl::on_timer, static_cast<lws_usec_t>(std::max(0, ms)) * LWS_US_PER_MS);
  }

  static void on_timer(lws_sorted_usec_list_t* sul) {
    auto* t = reinterpret_cast<Timer*>(sul);
    (t->self->*(t->fn))();
  }

  void cancel_timers() {
    for (Timer* t : {&reconnect_timer, &deadline_timer, &pace_timer, &resume_timer, &guard_timer, &flush_timer}) {
      lws_sul_cancel(&t->sul);
    }
  }

  void run(std::promise<Status>& ready) {
    tl_network_impl = this;
    lws_context_creation_info info;
    std::memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = kProtocols;
    info.user = this;
    info.fd_limit_per_thread = 16;
    if (url.tls) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    nctx = lws_create_context(&info);
    if (!nctx) {
      tl_network_impl = nullptr;
      ready.set_value(unavailable("start(): libwebsockets could not create a client context"));
      return;
    }
    {
      std::lock_guard lock(mu);
      ctx = nctx;
    }
    ready.set_value(Status::ok());

    connect_now();
    on_wakeup();  // a close() may have come already
    while (!loop_done) {
      if (lws_service(nctx, 0) < 0) {
        log(LogLevel::kError, "the libwebsockets loop failed; the client stops");
        break;
      }
    }

    cancel_timers();
    {
      std::lock_guard lock(mu);
      ctx = nullptr;
    }
    destroying = true;
    lws_context_destroy(nctx);
    nctx = nullptr;
    wsi = nullptr;
    bool dirty;
    {
      std::lock_guard lock(mu);
      dirty = last_seq_dirty;
    }
    if (dirty) {
      if (Status st = persist(); !st) log(LogLevel::kError, st.message());
    }
    set_state(ConnectionState::kClosed);
    if (suppress_events) state_lock.release();  // abandoned: nobody will call close()
    tl_network_impl = nullptr;
  }

  void connect_now() {
    reconnect_pending = false;
    lws_sul_cancel(&reconnect_timer.sul);
    if (refused || loop_done || finishing) return;
    reset_connection();
    set_state(ConnectionState::kConnecting);
    lws_client_connect_info ci;
    std::memset(&ci, 0, sizeof ci);
    ci.context = nctx;
    ci.address = url.host.c_str();
    ci.port = url.port;
    ci.path = url.path.c_str();
    ci.host = url.host_header.c_str();
    ci.origin = nullptr;
    ci.protocol = "madoguchi.v1";
    ci.local_protocol_name = "madoguchi.v1";
    ci.ietf_version_or_minus_one = -1;
    ci.ssl_connection = url.tls ? LCCSCF_USE_SSL : 0;
    ci.retry_and_idle_policy = &kIdlePolicy;
    ci.pwsi = &wsi;
    conn_active = true;
    wsi = nullptr;
    if (logs(LogLevel::kDebug)) {
      log(LogLevel::kDebug, "connecting to " + url.host + ":" + std::to_string(url.port) + url.path);
    }
    if (!lws_client_connect_via_info(&ci)) on_gone(nullptr, "the connection could not be started");
  }

  void reset_connection() {
    established = false;
    hello_sent = false;
    welcomed = false;
    closing_ws = false;
    paused = false;
    sent_ids.clear();
    tx.clear();
    rx.clear();
    lws_sul_cancel(&resume_timer.sul);
    lws_sul_cancel(&pace_timer.sul);
  }

  // The connection `w` failed or ended (idempotent; stale wsis are ignored).
  void on_gone(lws* w, std::string_view why) {
    if (destroying || !conn_active) return;
    if (w && wsi && w != wsi) return;
    conn_active = false;
    wsi = nullptr;
    reset_connection();
    if (logs(LogLevel::kInfo)) log(LogLevel::kInfo, "connection ended: " + std::string(why));
    if (finishing) {
      finish_loop();
      return;
    }
    if (refused) return;
    set_state(ConnectionState::kDisconnected);
    schedule_reconnect();
  }

  void schedule_reconnect() {
    if (reconnect_pending) return;
    reconnect_pending = true;
    const auto& table = cfg.backoff_ms;
    int base = table[std::min(attempt, table.size() - 1)];
    ++attempt;
    double j = cfg.jitter_percent / 100.0;
    double factor = j > 0 ? std::uniform_real_distribution<double>(1.0 - j, 1.0 + j)(jitter_rng) : 1.0;
    int delay = std::max(1, static_cast<int>(base * factor));
    if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "retrying in " + std::to_string(delay) + " ms");
    schedule(reconnect_timer, delay, &Impl::on_reconnect_timer);
  }

  void on_reconnect_timer() {
    reconnect_pending = false;
    connect_now();
  }

  bool has_unsent() {
    std::lock_guard lock(mu);
    for (const auto& q : outbox) {
      if (!q.committed) return false;
      if (!sent_ids.count(q.msg.id)) return true;
    }
    return false;
  }

  std::optional<OutboxEntry> next_unsent() {
    std::lock_guard lock(mu);
    for (const auto& q : outbox) {
      if (!q.committed) return std::nullopt;
      if (!sent_ids.count(q.msg.id)) return q.msg;
    }
    return std::nullopt;
  }

  bool has_write_work() {
    if (closing_ws || !hello_sent) return true;
    if (!welcomed) return false;
    return !tx.empty() || (!paused && has_unsent());
  }

  void want_write() {
    if (wsi && established && has_write_work()) lws_callback_on_writable(wsi);
  }

  std::string hello_json() {
    Frame h;
    h.type = FrameType::kHello;
    {
      std::lock_guard lock(mu);
      if (!token.empty()) {
        h.token = token;
        h.last_seq = last_seq;
      }
    }
    h.locale = cfg.locale;
    for (const auto& [k, v] : cfg.visitor) h.visitor.emplace(k, v);
    h.client = kClientName;
    if (logs(LogLevel::kDebug)) {
      log(LogLevel::kDebug, h.token.empty() ? std::string("hello: a new conversation")
                                            : "hello: resuming after seq " + std::to_string(*h.last_seq));
    }
    return protocol::encode(h);
  }

  int on_writeable(lws* w) {
    if (w != wsi) return 0;
    if (closing_ws) {
      lws_close_reason(w, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
      return -1;
    }
    if (!has_write_work()) return 0;
    auto now = Clock::now();
    tokens = std::min(kSendBurst, tokens + std::chrono::duration<double>(now - refilled).count() * kSendRatePerSecond);
    refilled = now;
    if (tokens < 1.0) {
      int wait_ms = static_cast<int>((1.0 - tokens) / kSendRatePerSecond * 1000.0) + 1;
      schedule(pace_timer, wait_ms, &Impl::on_pace_timer);
      return 0;
    }
    std::string out;
    std::string id;
    if (!hello_sent) {
      out = hello_json();
      hello_sent = true;
    } else if (!tx.empty()) {
      out = std::move(tx.front());
      tx.pop_front();
    } else if (auto m = paused ? std::nullopt : next_unsent()) {
      Frame f;
      f.type = FrameType::kMessage;
      f.id = m->id;
      f.text = std::move(m->text);
      f.attachments = std::move(m->attachments);
      out = protocol::encode(f);
      id = m->id;
      sent_ids.insert(id);
    } else {
      return 0;
    }
    tokens -= 1.0;
    std::vector<unsigned char> buf(LWS_PRE + out.size());
    std::memcpy(buf.data() + LWS_PRE, out.data(), out.size());
    if (lws_write(w, buf.data() + LWS_PRE, out.size(), LWS_WRITE_TEXT) < static_cast<int>(out.size())) return -1;
    if (!id.empty() && logs(LogLevel::kDebug)) log(LogLevel::kDebug, "sent " + id);
    want_write();
    return 0;
  }

  void on_pace_timer() { want_write(); }
  void on_resume_timer() {
    paused = false;
    want_write();
  }
  void on_guard_timer() { finish_loop(); }

  // Ends the loop. lws_service() may go on waiting after a timer callback returns (it polls
  // until the next timer, or up to its idle limit): wake it so that run() sees loop_done now.
  void finish_loop() {
    loop_done = true;
    if (nctx) lws_cancel_service(nctx);
  }
  void on_deadline_timer() {
    deadline_passed = true;
    check_shutdown_done();
  }
  void on_flush_timer() {
    bool dirty;
    {
      std::lock_guard lock(mu);
      dirty = last_seq_dirty;
    }
    if (dirty) persist_or_report();
  }

  // lws_cancel_service() from a public call: take the queued work.
  void on_wakeup() {
    std::deque<std::string> ctl;
    bool stop;
    Clock::time_point deadline;
    {
      std::lock_guard lock(mu);
      ctl.swap(control);
      stop = stop_requested;
      deadline = close_deadline;
    }
    if (welcomed) {
      for (auto& c : ctl) tx.push_back(std::move(c));
    }
    if (stop && !shutting_down) begin_shutdown(deadline);
    want_write();
    check_shutdown_done();
  }

  bool outbox_empty() {
    std::lock_guard lock(mu);
    return committed_pending_locked() == 0;
  }

  void begin_shutdown(Clock::time_point deadline) {
    shutting_down = true;
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (remaining <= 0) {
      deadline_passed = true;
      return;
    }
    schedule(deadline_timer, static_cast<int>(std::min<long long>(remaining, 24LL * 3600 * 1000)), &Impl::on_deadline_timer);
    // Flush what we can: do not wait for the back-off to end.
    if (!conn_active && !refused && !outbox_empty()) connect_now();
  }

  void check_shutdown_done() {
    if (!shutting_down || finishing) return;
    if (!(deadline_passed || refused || outbox_empty())) return;
    finishing = true;
    reconnect_pending = false;
    lws_sul_cancel(&reconnect_timer.sul);
    if (conn_active && established && wsi) {
      closing_ws = true;
      lws_callback_on_writable(wsi);
      schedule(guard_timer, kCloseHandshakeMs, &Impl::on_guard_timer);
    } else {
      finish_loop();
    }
  }

  // ---- frames from the hub ------------------------------------------------------------
  void on_frame(std::string_view text) {
    protocol::DecodeLimits limits;
    limits.max_frame_bytes = kMaxIncomingFrame;
    auto decoded = protocol::decode(text, limits);
    if (auto* err = std::get_if<protocol::DecodeError>(&decoded)) {
      log(LogLevel::kWarning, "ignored a frame from the hub: " + err->message);
      return;
    }
    Frame& f = std::get<Frame>(decoded);
    switch (f.type) {
      case FrameType::kWelcome: return on_welcome(f);
      case FrameType::kAck: return on_ack(f);
      case FrameType::kMessage:
      case FrameType::kEvent: return on_numbered(f);
      case FrameType::kTyping: return emit(ClientEvent::Kind::kTyping, f);
      case FrameType::kRead: return emit(ClientEvent::Kind::kRead, f);
      case FrameType::kError: return on_error(f);
      case FrameType::kPong: return;
      default:
        if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "ignored a " + std::string(protocol::to_string(f.type)) + " frame");
        return;
    }
  }

  void on_welcome(const Frame& f) {
    std::string warning;  // logged without holding mu (the sink may call back in)
    {
      std::lock_guard lock(mu);
      if (f.conversation != conversation) {
        if (!conversation.empty()) warning = "the hub started a new conversation " + f.conversation;
        conversation = f.conversation;
        last_seq = 0;
        seen_seq = 0;
      }
      if (!f.token.empty()) token = f.token;
      if (f.last_seq && *f.last_seq < seen_seq) {
        warning = "the hub's last seq (" + std::to_string(*f.last_seq) + ") is below the client's (" +
                  std::to_string(seen_seq) + "): the hub lost messages; following it";
        seen_seq = *f.last_seq;
        last_seq = std::min(last_seq, *f.last_seq);
      }
      seen_seq = std::max(seen_seq, last_seq);
    }
    if (!warning.empty()) log(LogLevel::kWarning, warning);
    persist_or_report();
    attempt = 0;
    welcomed = true;
    set_state(ConnectionState::kConnected);
    emit(ClientEvent::Kind::kWelcome, f);
    want_write();
  }

  // Removes `id` from the outbox; true if it was there.
  bool remove_from_outbox(const std::string& id) {
    std::lock_guard lock(mu);
    auto it = std::find_if(outbox.begin(), outbox.end(), [&](const Queued& q) { return q.msg.id == id; });
    if (it == outbox.end()) return false;
    outbox.erase(it);
    return true;
  }

  bool in_outbox(const std::string& id) {
    std::lock_guard lock(mu);
    return std::any_of(outbox.begin(), outbox.end(), [&](const Queued& q) { return q.msg.id == id; });
  }

  void on_ack(const Frame& f) {
    sent_ids.erase(f.id);
    if (f.seq) seen_seq = std::max(seen_seq, *f.seq);
    if (!remove_from_outbox(f.id)) {
      if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "ack for " + f.id + ", no longer in the outbox");
      return;
    }
    persist_or_report();
    emit(ClientEvent::Kind::kAck, f);
    check_shutdown_done();
  }

  void on_numbered(const Frame& f) {
    const auto kind = f.type == FrameType::kMessage ? ClientEvent::Kind::kMessage : ClientEvent::Kind::kEvent;
    if (!f.seq) return emit(kind, f);  // not stored (queue_position)
    if (*f.seq <= seen_seq) {
      if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "dropped seq " + std::to_string(*f.seq) + " (already seen)");
      return;
    }
    seen_seq = *f.seq;
    if (f.type == FrameType::kMessage && f.from == "visitor" && !f.id.empty() && remove_from_outbox(f.id)) {
      // Our own message, stored by an earlier connection whose ack was lost: it is the ack.
      sent_ids.erase(f.id);
      persist_or_report();
      Frame ack;
      ack.type = FrameType::kAck;
      ack.id = f.id;
      ack.seq = f.seq;
      ack.duplicate = true;
      emit(ClientEvent::Kind::kAck, ack);
      check_shutdown_done();
      return;
    }
    emit(kind, f);
  }

  void on_error(const Frame& f) {
    if (logs(LogLevel::kWarning)) {
      log(LogLevel::kWarning, "the hub answered " + std::string(protocol::to_string(f.error)) + ": " + f.message);
    }
    emit(ClientEvent::Kind::kError, f);
    switch (f.error) {
      case ErrorKind::kUnauthorized:
      case ErrorKind::kUnsupportedVersion: {
        {
          std::lock_guard lock(mu);
          refused = true;
          refusal = std::string(protocol::to_string(f.error)) + ": " + f.message;
        }
        reconnect_pending = false;
        lws_sul_cancel(&reconnect_timer.sul);
        closing_ws = true;
        want_write();
        set_state(ConnectionState::kClosed);
        check_shutdown_done();
        return;
      }
      case ErrorKind::kRateLimited:
      case ErrorKind::kInternal:
        if (!f.id.empty() && in_outbox(f.id)) {
          // Not stored: send it again after a pause.
          sent_ids.erase(f.id);
          paused = true;
          int ms = f.error == ErrorKind::kRateLimited ? static_cast<int>(f.retry_after_ms.value_or(1000))
                                                      : cfg.backoff_ms.front();
          schedule(resume_timer, std::clamp(ms, 1, 60000), &Impl::on_resume_timer);
        }
        return;
      case ErrorKind::kBadJson:
      case ErrorKind::kBadFrame:
      case ErrorKind::kTooLarge:
      case ErrorKind::kInvalidUtf8:
        if (!f.id.empty() && remove_from_outbox(f.id)) {
          // The hub will never take it: keeping it would block every later close().
          log(LogLevel::kError, "the hub refused message " + f.id + " for good; it left the outbox (see the kError event)");
          sent_ids.erase(f.id);
          persist_or_report();
          check_shutdown_done();
        }
        return;
      default:
        return;
    }
  }

  int on_receive(lws* w, const void* in, std::size_t len) {
    if (w != wsi) return 0;
    if (lws_frame_is_binary(w)) {
      if (lws_is_final_fragment(w)) log(LogLevel::kWarning, "ignored a binary frame from the hub");
      rx.clear();
      return 0;
    }
    if (rx.size() + len > kMaxIncomingFrame) {
      log(LogLevel::kError, "a frame from the hub is over " + std::to_string(kMaxIncomingFrame) + " bytes; reconnecting");
      return -1;
    }
    rx.append(static_cast<const char*>(in), len);
    if (!lws_is_final_fragment(w) || lws_remaining_packet_payload(w) > 0) return 0;
    std::string text = std::move(rx);
    rx.clear();
    on_frame(text);
    return 0;
  }

  int on_callback(lws* w, lws_callback_reasons reason, void* in, std::size_t len) {
    switch (reason) {
      case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (!destroying) on_wakeup();
        return 0;
      case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (w != wsi) return -1;
        established = true;
        if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "WebSocket open; sending hello");
        lws_callback_on_writable(w);
        return 0;
      case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(w);
      case LWS_CALLBACK_CLIENT_RECEIVE:
        return on_receive(w, in, len);
      case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        std::string why = in ? std::string(static_cast<const char*>(in), strnlen(static_cast<const char*>(in), 256))
                             : std::string("connection error");
        on_gone(w, why);
        return 0;
      }
      case LWS_CALLBACK_CLIENT_CLOSED:
        on_gone(w, "closed");
        return 0;
      case LWS_CALLBACK_WSI_DESTROY:
        if (w == wsi) on_gone(w, "connection destroyed");
        return 0;
      default:
        return 0;
    }
  }
};

namespace {

int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len) {
  lws_context* ctx = lws_get_context(wsi);
  auto* impl = ctx ? static_cast<Client::Impl*>(lws_context_user(ctx)) : nullptr;
  if (!impl) return lws_callback_http_dummy(wsi, reason, user, in, len);
  int r = impl->on_callback(wsi, reason, in, len);
  if (r != 0) return r;
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

}  // namespace

// ---- Client ---------------------------------------------------------------------------

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  if (!impl_) return;
  if (tl_network_impl == impl_.get()) {
    impl_->abandon_from_callback();
    return;
  }
  (void)impl_->close(0);
}

Result<std::unique_ptr<Client>> Client::create(ClientConfig config) {
  MDG_ASSIGN_OR_RETURN(ParsedUrl url, parse_url(config.url));
  if (config.backoff_ms.empty()) return invalid_argument("client: backoff_ms must have at least one delay");
  for (int ms : config.backoff_ms) {
    if (ms <= 0) return invalid_argument("client: every backoff_ms delay must be > 0 (got " + std::to_string(ms) + ")");
  }
  if (config.jitter_percent < 0 || config.jitter_percent > 100) {
    return invalid_argument("client: jitter_percent must be 0..100 (got " + std::to_string(config.jitter_percent) + ")");
  }
  protocol::DecodeLimits limits;
  if (config.visitor.size() > limits.max_visitor_attributes) {
    return invalid_argument("client: at most " + std::to_string(limits.max_visitor_attributes) + " visitor attributes");
  }
  auto impl = std::make_shared<Impl>(std::move(config), std::move(url));
  if (!impl->cfg.state_path.empty()) {
    MDG_ASSIGN_OR_RETURN(impl->state_lock, detail::client::FileLock::acquire(impl->cfg.state_path));
    MDG_ASSIGN_OR_RETURN(auto loaded, detail::client::read_state_file(impl->cfg.state_path));
    if (loaded) {
      impl->token = std::move(loaded->token);
      impl->conversation = std::move(loaded->conversation);
      impl->last_seq = loaded->last_seq;
      for (auto& m : loaded->outbox) {
        Impl::Queued q;
        q.msg = std::move(m);
        q.committed = true;
        impl->outbox.push_back(std::move(q));
      }
    }
  }
  impl->seen_seq = impl->last_seq;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Status Client::start() { return impl_->start(); }

Result<std::string> Client::send(std::string_view text, std::vector<protocol::Attachment> attachments) {
  return impl_->send(text, std::move(attachments));
}

Status Client::typing(bool active) {
  Frame f;
  f.type = FrameType::kTyping;
  f.state = active ? "start" : "stop";
  return impl_->control_frame(std::move(f));
}

Status Client::mark_read(std::int64_t seq) {
  if (seq < 0) return invalid_argument("mark_read(): seq must be >= 0");
  Frame f;
  f.type = FrameType::kRead;
  f.seq = seq;
  return impl_->control_frame(std::move(f));
}

std::size_t Client::poll(int timeout_ms, std::size_t max) {
  std::shared_ptr<Impl> self = impl_;  // on_event may destroy this Client
  return self->poll(timeout_ms, max);
}

ConnectionState Client::state() const { return impl_->current_state(); }

std::string Client::conversation() const {
  std::lock_guard lock(impl_->mu);
  return impl_->conversation;
}

std::int64_t Client::last_seq() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_seq;
}

std::size_t Client::pending() const {
  std::lock_guard lock(impl_->mu);
  return impl_->outbox.size();
}

Status Client::close(int timeout_ms) { return impl_->close(timeout_ms); }

}  // namespace v1
}  // namespace madoguchi
