// Connection: the network thread, the WebSocket, back-off, the outbox and event dispatch that
// madoguchi::Client and madoguchi::AgentClient share (see connection.hpp).
#include "client/connection.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

namespace madoguchi::detail::client {
namespace {

using Clock = std::chrono::steady_clock;
using protocol::ErrorKind;
using protocol::Frame;
using protocol::FrameType;

// A client paces its own frames well under the hub's default limit (20/s, bursts of 40), so
// that flushing a long outbox does not get frames dropped with rate_limited.
constexpr double kSendRatePerSecond = 10.0;
constexpr double kSendBurst = 20.0;
constexpr std::size_t kMaxIncomingFrame = 4u << 20;
constexpr int kCloseHandshakeMs = 1000;
constexpr int kDirtyFlushMs = 20;

Result<ParsedUrl> parse_url(std::string_view what, std::string_view url, std::string_view default_path) {
  auto bad = [&](std::string_view why) {
    return invalid_argument(std::string(what) + ": url \"" + std::string(url) + "\": " + std::string(why) +
                            " (expected ws://host:port" + std::string(default_path) + " or wss://...)");
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
  u.path = rest.empty() ? std::string(default_path) : std::string(rest);
  if (u.path.front() != '/') return bad("the path must start with /");
  u.host_header = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  if (u.port != (u.tls ? 443 : 80)) u.host_header += ":" + std::to_string(u.port);
  return u;
}

// lws logs through one process-wide function: its lines go to the Logger of the connection that
// started last (and nowhere once that one is gone).
std::mutex g_log_mu;
Logger g_log;
std::string g_log_name;
std::uint64_t g_log_owner = 0;
std::atomic<std::uint64_t> g_next_id{1};

void lws_log_emit(int level, const char* line) {
  std::lock_guard lock(g_log_mu);
  LogLevel l = level == LLL_ERR ? LogLevel::kError : level == LLL_WARN ? LogLevel::kWarning : LogLevel::kDebug;
  if (!g_log.enabled(l)) return;
  std::string_view s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
  g_log.log(l, g_log_name + ": lws: " + std::string(s));
}

int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len) {
  lws_context* ctx = lws_get_context(wsi);
  auto* conn = ctx ? static_cast<Connection*>(lws_context_user(ctx)) : nullptr;
  if (!conn) return lws_callback_http_dummy(wsi, reason, user, in, len);
  int r = conn->on_callback(wsi, reason, in, len);
  if (r != 0) return r;
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

const lws_protocols kProtocols[] = {
    {"madoguchi.v1", callback, 0, 0, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

// WebSocket keepalive: a ping after 20 s of silence, hang up (and reconnect) after 40 s.
const lws_retry_bo_t kIdlePolicy = {nullptr, 0, 0, 20, 40, 0};

// The Connection whose network thread this is (null elsewhere), to refuse close() from a callback.
thread_local const Connection* tl_network = nullptr;
// The poll() calls running on this thread, innermost first (a callback of one client may poll
// another), to make a poll() of a client from inside its own poll() a no-op.
struct PollFrame {
  const Connection* connection;
  const PollFrame* outer;
};
thread_local const PollFrame* tl_polling = nullptr;

bool polling_on_this_thread(const Connection* c) noexcept {
  for (const PollFrame* f = tl_polling; f != nullptr; f = f->outer) {
    if (f->connection == c) return true;
  }
  return false;
}

}  // namespace

Result<ParsedUrl> check_connection_settings(std::string_view what, std::string_view url, std::string_view default_path,
                                            const std::vector<int>& backoff_ms, int jitter_percent) {
  MDG_ASSIGN_OR_RETURN(ParsedUrl parsed, parse_url(what, url, default_path));
  const std::string name(what);
  if (backoff_ms.empty()) return invalid_argument(name + ": backoff_ms must have at least one delay");
  for (int ms : backoff_ms) {
    if (ms <= 0) return invalid_argument(name + ": every backoff_ms delay must be > 0 (got " + std::to_string(ms) + ")");
  }
  if (jitter_percent < 0 || jitter_percent > 100) {
    return invalid_argument(name + ": jitter_percent must be 0..100 (got " + std::to_string(jitter_percent) + ")");
  }
  return parsed;
}

Connection::Connection(ConnectionConfig config) : cfg_(std::move(config)), id_(g_next_id++), tokens_(kSendBurst) {
  std::random_device rd;
  std::seed_seq seed{rd(), rd(), rd(), rd(), static_cast<unsigned>(Clock::now().time_since_epoch().count()),
                     static_cast<unsigned>(id_)};
  id_rng_.seed(seed);
}

Connection::~Connection() {
  if (thread_.joinable()) thread_.detach();  // unreachable: close() joins, callbacks detach
  std::lock_guard lock(g_log_mu);
  if (g_log_owner == id_) {
    g_log = Logger{};
    g_log_owner = 0;
  }
}

void Connection::log(LogLevel level, const std::string& message) const { cfg_.logger.log(level, cfg_.name + ": " + message); }

bool Connection::on_network_thread() const { return tl_network == this; }

// ---- the state file -------------------------------------------------------------------

Result<std::optional<PersistedState>> Connection::open_state_file() {
  if (cfg_.state_path.empty()) return std::optional<PersistedState>();
  MDG_ASSIGN_OR_RETURN(state_lock_, FileLock::acquire(cfg_.state_path));
  MDG_ASSIGN_OR_RETURN(auto loaded, read_state_file(cfg_.state_path));
  if (loaded) {
    std::lock_guard lock(mu_);
    for (const auto& m : loaded->outbox) {
      Queued q;
      q.msg = m;
      q.committed = true;
      outbox_.push_back(std::move(q));
    }
  }
  return loaded;
}

// Writes the current state (with persist_mu_ held by the caller).
Status Connection::persist_held() {
  if (cfg_.state_path.empty()) {
    std::lock_guard lock(mu_);
    dirty_ = false;
    return Status::ok();
  }
  std::string json;
  {
    std::lock_guard lock(mu_);
    if (closed_) return Status::ok();  // the state file belongs to the next client now
    PersistedState s;
    save_locked(s);
    s.outbox.reserve(acked_.size() + outbox_.size());
    s.outbox.insert(s.outbox.end(), acked_.begin(), acked_.end());  // sent before the rest
    for (const auto& q : outbox_) s.outbox.push_back(q.msg);
    json = serialize_state(s);
    dirty_ = false;
  }
  Status st = write_file_atomically(cfg_.state_path, json);
  if (!st) {
    std::lock_guard lock(mu_);
    dirty_ = true;  // try again on the next change
  }
  return st;
}

Status Connection::persist() {
  std::lock_guard lock(persist_mu_);
  return persist_held();
}

void Connection::persist_or_report() {
  Status st = persist();
  if (st) return;
  log(LogLevel::kError, st.message());
  emit_error(protocol::make_error(ErrorKind::kInternal, st.message()));
}

// ---- events ---------------------------------------------------------------------------

ConnectionState Connection::current_state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::size_t Connection::pending() const {
  std::lock_guard lock(mu_);
  return outbox_.size();
}

void Connection::dispatch(std::function<void()> deliver) {
  if (suppress_events_) return;
  if (cfg_.dispatch == Dispatch::kPoll) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(deliver));
    events_cv_.notify_all();
    return;
  }
  deliver();
  bool dirty;
  {
    std::lock_guard lock(mu_);
    dirty = dirty_;
  }
  // Scheduled once: a stream of events less than kDirtyFlushMs apart (a long replay) must not
  // push the write back until it stops.
  if (dirty && nctx_ && !destroying_ && lws_dll2_is_detached(&flush_timer_.sul.list)) {
    schedule(flush_timer_, kDirtyFlushMs, &Connection::on_flush_timer);
  }
}

void Connection::set_state(ConnectionState s) {
  {
    std::lock_guard lock(mu_);
    if (state_ == s) return;
    state_ = s;
  }
  if (logs(LogLevel::kInfo)) log(LogLevel::kInfo, std::string(to_string(s)));
  emit_state();
}

// ---- public calls (any thread) ----------------------------------------------------------

void Connection::wake_locked() {
  if (ctx_) lws_cancel_service(ctx_);
}

Status Connection::start() {
  if (on_network_thread()) return invalid_argument("start(): the " + cfg_.name + " is already started");
  std::lock_guard life(life_mu_);
  {
    std::lock_guard lock(mu_);
    if (closed_ || stop_requested_) return Status(ErrorCode::kClosed, "start(): the " + cfg_.name + " is closed");
  }
  if (started_) return invalid_argument("start(): the " + cfg_.name + " is already started");
  {
    std::lock_guard lock(g_log_mu);
    g_log = cfg_.logger;
    g_log_name = cfg_.name;
    g_log_owner = id_;
  }
  lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
  std::promise<Status> ready;
  std::future<Status> result = ready.get_future();
  thread_ = std::thread([self = shared_from_this(), p = std::move(ready)]() mutable { self->run(p); });
  Status st = result.get();
  if (!st) {
    thread_.join();
    return st;
  }
  started_ = true;
  return Status::ok();
}

std::string Connection::new_id_locked() {
  // "m-", the time in ms since 1970 as 9 base-36 digits, then 13 random ones: ids sort by
  // the time they were made, so that the hub's index of client ids grows at its end
  // (docs/protocol.md); 13 random digits (67 bits) keep ids made in the same ms apart.
  static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  constexpr std::size_t kTimeDigits = 9, kRandomDigits = 13;
  std::string id = "m-";
  id.resize(2 + kTimeDigits + kRandomDigits);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  auto t = static_cast<std::uint64_t>(std::max<std::int64_t>(0, ms));
  for (std::size_t i = 2 + kTimeDigits; i > 2; t /= 36) id[--i] = kAlphabet[t % 36];
  std::uniform_int_distribution<int> pick(0, 35);
  for (std::size_t i = 2 + kTimeDigits; i < id.size(); ++i) id[i] = kAlphabet[pick(id_rng_)];
  return id;
}

Status Connection::closed_status_locked() const {
  if (refused_) return Status(ErrorCode::kClosed, "the hub refused the " + cfg_.name + ": " + refusal_);
  return Status(ErrorCode::kClosed, "the " + cfg_.name + " is closed");
}

Result<std::string> Connection::enqueue_message(std::string conversation, std::string_view text,
                                                std::vector<protocol::Attachment> attachments,
                                                std::string_view choice) {
  // Refuse now what the hub would refuse later: such a message would stay in the outbox.
  if (text.empty() && attachments.empty()) {
    return invalid_argument("send(): the message is empty (text or at least one attachment is needed)");
  }
  Frame m;
  m.type = FrameType::kMessage;
  m.id = "m-0000000000000000000000";
  m.conversation = std::move(conversation);
  m.text.assign(text);
  m.attachments = std::move(attachments);
  m.choice.assign(choice);
  auto checked = protocol::decode(protocol::encode(m));
  if (auto* err = std::get_if<protocol::DecodeError>(&checked)) {
    return invalid_argument("send(): the hub would refuse this message: " + err->message);
  }

  std::lock_guard persist_lock(persist_mu_);
  std::string id;
  {
    std::lock_guard lock(mu_);
    if (closed_ || stop_requested_ || refused_) return closed_status_locked();
    id = new_id_locked();
    Queued q;
    q.msg.id = id;
    q.msg.conversation = std::move(m.conversation);
    q.msg.text = std::move(m.text);
    q.msg.attachments = std::move(m.attachments);
    q.msg.choice = std::move(m.choice);
    outbox_.push_back(std::move(q));
  }
  Status st = persist_held();
  {
    std::lock_guard lock(mu_);
    if (!st) {
      auto it = std::find_if(outbox_.begin(), outbox_.end(), [&](const Queued& q) { return q.msg.id == id; });
      if (it != outbox_.end()) outbox_.erase(it);
      return Status(st.code(), "send(): the message was not queued: " + st.message());
    }
    for (auto& q : outbox_) {
      if (q.msg.id == id) q.committed = true;
    }
    wake_locked();
  }
  if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "queued " + id);
  return id;
}

Status Connection::queue_frame(const Frame& frame, bool need_connection) {
  std::lock_guard lock(mu_);
  if (closed_ || stop_requested_ || refused_) return need_connection ? closed_status_locked() : Status::ok();
  if (state_ != ConnectionState::kConnected) {
    if (!need_connection) return Status::ok();
    return unavailable(std::string(protocol::to_string(frame.type)) + ": the " + cfg_.name +
                       " is not connected to the hub; try again when it is (state " + std::string(to_string(state_)) + ")");
  }
  control_.push_back(protocol::encode(frame));
  wake_locked();
  return Status::ok();
}

Status Connection::send_typing(std::string_view conversation, bool active) {
  std::lock_guard lock(mu_);
  if (closed_ || stop_requested_ || refused_ || state_ != ConnectionState::kConnected) return Status::ok();
  indicators_in_[std::string(conversation)].typing = active;
  wake_locked();
  return Status::ok();
}

Status Connection::send_read(std::string_view conversation, std::int64_t seq) {
  if (seq < 0) return invalid_argument("mark_read(): seq must be >= 0");
  if (seq == 0) return Status::ok();  // nothing read yet (the hub's seqs start at 1)
  std::lock_guard lock(mu_);
  if (closed_ || stop_requested_ || refused_ || state_ != ConnectionState::kConnected) return Status::ok();
  auto& read = indicators_in_[std::string(conversation)].read;
  read = std::max(read, seq);
  wake_locked();
  return Status::ok();
}

std::string Connection::take_indicator() {
  auto it = indicators_.begin();
  Frame f;
  f.conversation = it->first;
  if (it->second.typing) {
    f.type = FrameType::kTyping;
    f.state = *it->second.typing ? "start" : "stop";
    it->second.typing.reset();
  } else {
    f.type = FrameType::kRead;
    f.seq = it->second.read;
    it->second.read = 0;
  }
  if (!it->second.typing && it->second.read == 0) indicators_.erase(it);
  return protocol::encode(f);
}

std::size_t Connection::poll(int timeout_ms, std::size_t max) {
  if (cfg_.dispatch != Dispatch::kPoll || max == 0 || polling_on_this_thread(this)) return 0;
  std::lock_guard turn(poll_mu_);
  std::unique_lock lock(mu_);
  auto ready = [this] { return !events_.empty() || closed_; };
  if (timeout_ms < 0) {
    events_cv_.wait(lock, ready);
  } else if (timeout_ms > 0) {
    events_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
  }
  std::size_t n = 0;
  const PollFrame frame{this, tl_polling};
  tl_polling = &frame;
  while (n < max && !events_.empty() && !suppress_events_) {
    std::function<void()> deliver = std::move(events_.front());
    events_.pop_front();
    lock.unlock();
    deliver();
    ++n;
    lock.lock();
  }
  if (suppress_events_) events_.clear();
  tl_polling = frame.outer;
  bool dirty = dirty_ && !closed_;
  lock.unlock();
  if (dirty) {
    if (Status st = persist(); !st) log(LogLevel::kError, st.message());
  }
  return n;
}

std::size_t Connection::committed_pending_locked() const {
  std::size_t n = 0;
  for (const auto& q : outbox_) n += q.committed ? 1 : 0;
  return n;
}

Status Connection::close(int timeout_ms) {
  if (on_network_thread()) {
    return invalid_argument("close() was called from on_event on the " + cfg_.name +
                            "'s network thread; it would wait for itself. Call it from another thread, or use "
                            "Dispatch::kPoll");
  }
  std::lock_guard life(life_mu_);
  if (thread_.joinable()) {
    {
      std::lock_guard lock(mu_);
      if (!stop_requested_) {
        stop_requested_ = true;
        close_deadline_ = Clock::now() + std::chrono::milliseconds(std::max(0, timeout_ms));
      }
      wake_locked();
    }
    thread_.join();
  }
  std::size_t left;
  {
    // A send() writing the state file right now finishes first and is counted; one that
    // comes after finds the client closed. Without this, a message could be written after
    // the lock is released (into the next client's file) or not at all, and send() would
    // still return its id.
    std::lock_guard persist_lock(persist_mu_);
    bool dirty;
    {
      std::lock_guard lock(mu_);
      stop_requested_ = true;
      state_ = ConnectionState::kClosed;
      dirty = dirty_ && !closed_;
    }
    if (dirty) {
      if (Status st = persist_held(); !st) log(LogLevel::kError, st.message());
    }
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      left = committed_pending_locked();
      events_cv_.notify_all();
    }
    state_lock_.release();
  }
  if (left == 0) return Status::ok();
  std::string refusal;
  {
    std::lock_guard lock(mu_);
    if (refused_) refusal = refusal_;
  }
  std::string where;
  if (cfg_.state_path.empty()) {
    where = "they are lost: the " + cfg_.name + " has no state_path";
  } else if (!refusal.empty()) {
    // The next client on this file would be refused the same way (docs/client.md, Refusals).
    where = "they stay in " + cfg_.state_path + ", but the hub refused this conversation (" + refusal +
            "): read them from the file if they matter, then remove it to start a new conversation";
  } else {
    where = "they stay in " + cfg_.state_path + " and are sent by the next " + cfg_.name + " that opens it";
  }
  return Status(ErrorCode::kDeadlineExceeded,
                std::to_string(left) + " message(s) not acknowledged by the hub before the deadline; " + where);
}

void Connection::owner_gone() {
  // No event reaches the app after this, also not one that a poll() running on this thread
  // (the Client destroyed from its on_event) has still to deliver.
  suppress_events_ = true;
  if (!on_network_thread()) {
    (void)close(0);
    return;
  }
  {
    std::lock_guard lock(mu_);
    stop_requested_ = true;
    close_deadline_ = Clock::now();
    wake_locked();
  }
  if (thread_.joinable()) thread_.detach();
}

// ---- the outbox -------------------------------------------------------------------------

std::optional<OutboxEntry> Connection::remove_from_outbox(const std::string& id, bool acked) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(outbox_.begin(), outbox_.end(), [&](const Queued& q) { return q.msg.id == id; });
  if (it == outbox_.end()) return std::nullopt;
  OutboxEntry msg = std::move(it->msg);
  outbox_.erase(it);
  // In the same critical section: a state file written meanwhile (a send() on another
  // thread) has the message in one list or the other, never in neither.
  if (acked) acked_.push_back(msg);
  return msg;
}

bool Connection::in_outbox(const std::string& id) {
  std::lock_guard lock(mu_);
  return std::any_of(outbox_.begin(), outbox_.end(), [&](const Queued& q) { return q.msg.id == id; });
}

bool Connection::outbox_empty() {
  std::lock_guard lock(mu_);
  return committed_pending_locked() == 0;
}

bool Connection::has_unsent() { return next_unsent().has_value(); }

std::optional<OutboxEntry> Connection::next_unsent() {
  std::lock_guard lock(mu_);
  for (const auto& q : outbox_) {
    if (!q.committed) return std::nullopt;
    if (!sent_ids_.count(q.msg.id)) return q.msg;
  }
  return std::nullopt;
}

// ---- network thread ---------------------------------------------------------------------

void Connection::schedule(Timer& t, int ms, void (Connection::*fn)()) {
  t.self = this;
  t.fn = fn;
  lws_sul_schedule(nctx_, 0, &t.sul, &Connection::on_timer, static_cast<lws_usec_t>(std::max(0, ms)) * LWS_US_PER_MS);
}

void Connection::on_timer(lws_sorted_usec_list_t* sul) {
  auto* t = reinterpret_cast<Timer*>(sul);
  (t->self->*(t->fn))();
}

void Connection::cancel_timers() {
  for (Timer* t : {&reconnect_timer_, &deadline_timer_, &pace_timer_, &resume_timer_, &guard_timer_, &flush_timer_}) {
    lws_sul_cancel(&t->sul);
  }
}

void Connection::run(std::promise<Status>& ready) {
  tl_network = this;
  lws_context_creation_info info;
  std::memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = kProtocols;
  info.user = this;
  info.fd_limit_per_thread = 16;
  if (cfg_.url.tls) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  nctx_ = lws_create_context(&info);
  if (!nctx_) {
    tl_network = nullptr;
    ready.set_value(unavailable("start(): libwebsockets could not create a client context"));
    return;
  }
  {
    std::lock_guard lock(mu_);
    ctx_ = nctx_;
  }
  ready.set_value(Status::ok());

  connect_now();
  on_wakeup();  // a close() may have come already
  while (!loop_done_) {
    if (lws_service(nctx_, 0) < 0) {
      log(LogLevel::kError, "the libwebsockets loop failed; the " + cfg_.name + " stops");
      break;
    }
  }

  cancel_timers();
  {
    std::lock_guard lock(mu_);
    ctx_ = nullptr;
  }
  destroying_ = true;
  lws_context_destroy(nctx_);
  nctx_ = nullptr;
  wsi_ = nullptr;
  bool dirty;
  {
    std::lock_guard lock(mu_);
    dirty = dirty_;
  }
  if (dirty) {
    if (Status st = persist(); !st) log(LogLevel::kError, st.message());
  }
  set_state(ConnectionState::kClosed);
  if (suppress_events_) state_lock_.release();  // abandoned: nobody will call close()
  tl_network = nullptr;
}

void Connection::connect_now() {
  reconnect_pending_ = false;
  lws_sul_cancel(&reconnect_timer_.sul);
  if (refused_ || loop_done_ || finishing_) return;
  reset_connection();
  set_state(ConnectionState::kConnecting);
  lws_client_connect_info ci;
  std::memset(&ci, 0, sizeof ci);
  ci.context = nctx_;
  ci.address = cfg_.url.host.c_str();
  ci.port = cfg_.url.port;
  ci.path = cfg_.url.path.c_str();
  ci.host = cfg_.url.host_header.c_str();
  ci.origin = nullptr;
  ci.protocol = "madoguchi.v1";
  ci.local_protocol_name = "madoguchi.v1";
  ci.ietf_version_or_minus_one = -1;
  ci.ssl_connection = cfg_.url.tls ? LCCSCF_USE_SSL : 0;
  ci.retry_and_idle_policy = &kIdlePolicy;
  ci.pwsi = &wsi_;
  conn_active_ = true;
  wsi_ = nullptr;
  if (logs(LogLevel::kDebug)) {
    log(LogLevel::kDebug, "connecting to " + cfg_.url.host + ":" + std::to_string(cfg_.url.port) + cfg_.url.path);
  }
  if (!lws_client_connect_via_info(&ci)) on_gone(nullptr, "the connection could not be started");
}

void Connection::reset_connection() {
  established_ = false;
  hello_sent_ = false;
  welcomed_ = false;
  closing_ws_ = false;
  paused_ = false;
  sent_ids_.clear();
  tx_.clear();
  indicators_.clear();
  rx_.clear();
  lws_sul_cancel(&resume_timer_.sul);
  lws_sul_cancel(&pace_timer_.sul);
}

// The connection `w` failed or ended (idempotent; stale wsis are ignored).
void Connection::on_gone(lws* w, std::string_view why) {
  if (destroying_ || !conn_active_) return;
  if (w && wsi_ && w != wsi_) return;
  conn_active_ = false;
  wsi_ = nullptr;
  reset_connection();
  if (logs(LogLevel::kInfo)) log(LogLevel::kInfo, "connection ended: " + std::string(why));
  if (finishing_) {
    finish_loop();
    return;
  }
  if (refused_) return;
  set_state(ConnectionState::kDisconnected);
  schedule_reconnect();
}

void Connection::schedule_reconnect() {
  if (reconnect_pending_) return;
  reconnect_pending_ = true;
  const auto& table = cfg_.backoff_ms;
  int base = table[std::min(attempt_, table.size() - 1)];
  ++attempt_;
  double j = cfg_.jitter_percent / 100.0;
  double factor = j > 0 ? std::uniform_real_distribution<double>(1.0 - j, 1.0 + j)(jitter_rng_) : 1.0;
  // In double, and then within an int: a back-off of INT_MAX ms with jitter above 1 must not
  // overflow into a negative wait, that is an immediate retry.
  auto to_ms = [](double ms) { return static_cast<int>(std::clamp(ms, 1.0, static_cast<double>(INT_MAX))); };
  int delay = to_ms(base * factor);
  if (const int after = std::exchange(hello_retry_after_ms_, 0); after > 0) {
    // Not before the hub's time; spread over up to jitter_percent more, so that clients it
    // turned away together do not all come back at the same moment.
    const double spread = j > 0 ? std::uniform_real_distribution<double>(1.0, 1.0 + j)(jitter_rng_) : 1.0;
    delay = std::max(delay, to_ms(after * spread));
  }
  if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "retrying in " + std::to_string(delay) + " ms");
  schedule(reconnect_timer_, delay, &Connection::on_reconnect_timer);
}

void Connection::on_reconnect_timer() {
  reconnect_pending_ = false;
  connect_now();
}

bool Connection::has_write_work() {
  if (closing_ws_ || !hello_sent_) return true;
  if (!welcomed_) return false;
  return !tx_.empty() || !indicators_.empty() || (!paused_ && has_unsent());
}

void Connection::want_write() {
  if (wsi_ && established_ && has_write_work()) lws_callback_on_writable(wsi_);
}

void Connection::send_now(std::string frame) {
  if (!welcomed_) return;
  tx_.push_back(std::move(frame));
  want_write();
}

void Connection::accept_welcome() {
  attempt_ = 0;
  welcomed_ = true;
  set_state(ConnectionState::kConnected);
}

int Connection::on_writeable(lws* w) {
  if (w != wsi_) return 0;
  if (closing_ws_) {
    lws_close_reason(w, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
    return -1;
  }
  if (!has_write_work()) return 0;
  auto now = Clock::now();
  tokens_ = std::min(kSendBurst, tokens_ + std::chrono::duration<double>(now - refilled_).count() * kSendRatePerSecond);
  refilled_ = now;
  if (tokens_ < 1.0) {
    int wait_ms = static_cast<int>((1.0 - tokens_) / kSendRatePerSecond * 1000.0) + 1;
    schedule(pace_timer_, wait_ms, &Connection::on_pace_timer);
    return 0;
  }
  std::string out;
  std::string id;
  if (!hello_sent_) {
    out = hello_json();
    hello_sent_ = true;
  } else if (!tx_.empty()) {
    out = std::move(tx_.front());
    tx_.pop_front();
  } else if (!indicators_.empty() && !(last_was_indicator_ && !paused_ && has_unsent())) {
    // Indicators and outbox messages take turns: neither holds the other up.
    out = take_indicator();
    last_was_indicator_ = true;
  } else if (auto m = paused_ ? std::nullopt : next_unsent()) {
    last_was_indicator_ = false;
    Frame f;
    f.type = FrameType::kMessage;
    f.id = m->id;
    f.conversation = std::move(m->conversation);
    f.text = std::move(m->text);
    f.attachments = std::move(m->attachments);
    f.choice = std::move(m->choice);
    out = protocol::encode(f);
    id = m->id;
    sent_ids_.insert(id);
  } else {
    return 0;
  }
  tokens_ -= 1.0;
  std::vector<unsigned char> buf(LWS_PRE + out.size());
  std::memcpy(buf.data() + LWS_PRE, out.data(), out.size());
  if (lws_write(w, buf.data() + LWS_PRE, out.size(), LWS_WRITE_TEXT) < static_cast<int>(out.size())) return -1;
  if (!id.empty() && logs(LogLevel::kDebug)) log(LogLevel::kDebug, "sent " + id);
  want_write();
  return 0;
}

void Connection::on_pace_timer() { want_write(); }

void Connection::on_resume_timer() {
  paused_ = false;
  want_write();
}

void Connection::on_guard_timer() { finish_loop(); }

// Ends the loop. lws_service() may go on waiting after a timer callback returns (it polls until
// the next timer, or up to its idle limit): wake it so that run() sees loop_done_ now.
void Connection::finish_loop() {
  loop_done_ = true;
  if (nctx_) lws_cancel_service(nctx_);
}

void Connection::on_deadline_timer() {
  deadline_passed_ = true;
  check_shutdown_done();
}

void Connection::on_flush_timer() {
  bool dirty;
  {
    std::lock_guard lock(mu_);
    dirty = dirty_;
  }
  if (dirty) persist_or_report();
}

// lws_cancel_service() from a public call: take the queued work.
void Connection::on_wakeup() {
  std::deque<std::string> ctl;
  std::map<std::string, Indicators> ind;
  bool stop;
  Clock::time_point deadline;
  {
    std::lock_guard lock(mu_);
    ctl.swap(control_);
    ind.swap(indicators_in_);
    stop = stop_requested_;
    deadline = close_deadline_;
  }
  if (welcomed_) {
    for (auto& c : ctl) tx_.push_back(std::move(c));
    for (auto& [conversation, in] : ind) {
      Indicators& pending = indicators_[conversation];
      if (in.typing) pending.typing = in.typing;
      pending.read = std::max(pending.read, in.read);
    }
  }
  if (stop && !shutting_down_) begin_shutdown(deadline);
  want_write();
  check_shutdown_done();
}

void Connection::begin_shutdown(Clock::time_point deadline) {
  shutting_down_ = true;
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (remaining <= 0) {
    deadline_passed_ = true;
    return;
  }
  schedule(deadline_timer_, static_cast<int>(std::min<long long>(remaining, 24LL * 3600 * 1000)),
           &Connection::on_deadline_timer);
  // Flush what we can: do not wait for the back-off to end.
  if (!conn_active_ && !refused_ && !outbox_empty()) connect_now();
}

void Connection::check_shutdown_done() {
  if (!shutting_down_ || finishing_) return;
  if (!(deadline_passed_ || refused_ || outbox_empty())) return;
  finishing_ = true;
  reconnect_pending_ = false;
  lws_sul_cancel(&reconnect_timer_.sul);
  if (conn_active_ && established_ && wsi_) {
    closing_ws_ = true;
    lws_callback_on_writable(wsi_);
    schedule(guard_timer_, kCloseHandshakeMs, &Connection::on_guard_timer);
  } else {
    finish_loop();
  }
}

// ---- frames from the hub ------------------------------------------------------------------

void Connection::on_text(std::string_view text) {
  protocol::DecodeLimits limits;
  limits.max_frame_bytes = kMaxIncomingFrame;
  auto decoded = protocol::decode(text, limits);
  if (auto* err = std::get_if<protocol::DecodeError>(&decoded)) {
    log(LogLevel::kWarning, "ignored a frame from the hub: " + err->message);
    return;
  }
  Frame& f = std::get<Frame>(decoded);
  switch (f.type) {
    case FrameType::kAck: return on_ack(f);
    case FrameType::kError: return on_error(f);
    case FrameType::kPong: return;
    default: return on_frame(f);
  }
}

void Connection::on_ack(const Frame& f) {
  sent_ids_.erase(f.id);
  auto msg = remove_from_outbox(f.id, true);  // into acked_: still in the state file, which needs no write now
  if (!msg) {
    if (logs(LogLevel::kDebug)) log(LogLevel::kDebug, "ack for " + f.id + ", no longer in the outbox");
    on_acked(f, nullptr);
    return;
  }
  on_acked(f, &*msg);
  check_shutdown_done();
}

void Connection::ack_delivered_locked(const std::string& id) {
  auto it = std::find_if(acked_.begin(), acked_.end(), [&](const OutboxEntry& m) { return m.id == id; });
  if (it == acked_.end()) return;
  acked_.erase(it);
  mark_dirty_locked();
}

bool Connection::ack_from_replay(const Frame& message) {
  if (message.type != FrameType::kMessage || message.id.empty()) return false;
  auto msg = remove_from_outbox(message.id, true);  // in the state file until the app has the ack
  if (!msg) return false;
  sent_ids_.erase(message.id);
  Frame ack;
  ack.type = FrameType::kAck;
  ack.id = message.id;
  ack.seq = message.seq;
  ack.duplicate = true;
  on_acked(ack, &*msg);
  check_shutdown_done();
  return true;
}

void Connection::on_error(const Frame& f) {
  if (logs(LogLevel::kWarning)) {
    log(LogLevel::kWarning, "the hub answered " + std::string(protocol::to_string(f.error)) + ": " + f.message);
  }
  emit_error(f);
  switch (f.error) {
    case ErrorKind::kUnauthorized:
    case ErrorKind::kUnsupportedVersion: {
      {
        std::lock_guard lock(mu_);
        refused_ = true;
        refusal_ = std::string(protocol::to_string(f.error)) + ": " + f.message;
      }
      reconnect_pending_ = false;
      lws_sul_cancel(&reconnect_timer_.sul);
      closing_ws_ = true;
      want_write();
      set_state(ConnectionState::kClosed);
      check_shutdown_done();
      return;
    }
    case ErrorKind::kRateLimited:
    case ErrorKind::kInternal:
      if (!welcomed_ && f.id.empty()) {
        // The hello itself was turned away (a hub busy checking agents' passwords, too many
        // new conversations or failed logins from here, or a store that failed): connect again
        // after the back-off, and not before the hub's retry_after_ms, which says hello again.
        if (f.error == ErrorKind::kRateLimited && f.retry_after_ms) {
          hello_retry_after_ms_ = static_cast<int>(std::clamp<std::int64_t>(*f.retry_after_ms, 0, kMaxHelloRetryAfterMs));
        }
        closing_ws_ = true;
        want_write();
        return;
      }
      if (!f.id.empty() && in_outbox(f.id)) {
        // Not stored: send it again after a pause.
        sent_ids_.erase(f.id);
        paused_ = true;
        int ms = f.error == ErrorKind::kRateLimited ? static_cast<int>(f.retry_after_ms.value_or(1000))
                                                    : cfg_.backoff_ms.front();
        schedule(resume_timer_, std::clamp(ms, 1, 60000), &Connection::on_resume_timer);
      }
      return;
    case ErrorKind::kBadJson:
    case ErrorKind::kBadFrame:
    case ErrorKind::kTooLarge:
    case ErrorKind::kInvalidUtf8:
    case ErrorKind::kForbidden:
    case ErrorKind::kNotFound:
    case ErrorKind::kConflict:
      if (!f.id.empty() && remove_from_outbox(f.id)) {
        // The hub will never take it: keeping it would block every later close().
        log(LogLevel::kError, "the hub refused message " + f.id + " for good; it left the outbox (see the kError event)");
        sent_ids_.erase(f.id);
        persist_or_report();
        check_shutdown_done();
      }
      return;
    default:
      return;
  }
}

int Connection::on_receive(lws* w, const void* in, std::size_t len) {
  if (w != wsi_) return 0;
  if (lws_frame_is_binary(w)) {
    if (lws_is_final_fragment(w)) log(LogLevel::kWarning, "ignored a binary frame from the hub");
    rx_.clear();
    return 0;
  }
  if (rx_.size() + len > kMaxIncomingFrame) {
    log(LogLevel::kError, "a frame from the hub is over " + std::to_string(kMaxIncomingFrame) + " bytes; reconnecting");
    return -1;
  }
  rx_.append(static_cast<const char*>(in), len);
  if (!lws_is_final_fragment(w) || lws_remaining_packet_payload(w) > 0) return 0;
  std::string text = std::move(rx_);
  rx_.clear();
  on_text(text);
  return 0;
}

int Connection::on_callback(lws* w, lws_callback_reasons reason, void* in, std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
      if (!destroying_) on_wakeup();
      return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      if (w != wsi_) return -1;
      established_ = true;
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
      if (w == wsi_) on_gone(w, "connection destroyed");
      return 0;
    default:
      return 0;
  }
}

}  // namespace madoguchi::detail::client
