// capi_bot.cpp: the bot of madoguchi.h over madoguchi::bot (bot.hpp, knowledge.hpp).
//
// An mdg_bot owns a swapped std::shared_ptr<const Bot> (CurrentBot): an ask takes it once and
// answers with that snapshot, a reload builds a new Bot and stores it. Conversations are plain
// madoguchi::bot::Conversation values, with a flag that turns use from two threads at once
// into MDG_EBUSY.
#include "capi_internal.hpp"

#include <madoguchi/bot/bot.hpp>
#include <madoguchi/bot/knowledge.hpp>
#include <madoguchi/detail/json_writer.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

using namespace mdg_capi;
namespace bot = madoguchi::bot;

namespace {

// What a bot is opened with, and every reload reuses.
struct BotConfig {
  std::string mecab_dicdir;
  std::size_t max_message_bytes = 0;
  std::vector<std::pair<std::string, std::string>> settings;
  madoguchi::Logger logger;
};

// The knowledge base in `text`: bot::parse_knowledge, with the format of madoguchi.h.
madoguchi::Result<bot::KnowledgeBase> parse_string(std::string_view text, int format, const char* source_name) {
  std::string_view source = source_name != nullptr ? source_name : "";  // "<string>" when empty
  switch (format) {
    case MDG_KB_JSON: return bot::parse_knowledge(text, bot::KnowledgeFormat::kJson, source);
    case MDG_KB_CSV: return bot::parse_knowledge(text, bot::KnowledgeFormat::kCsv, source);
    case MDG_KB_TSV: return bot::parse_knowledge(text, bot::KnowledgeFormat::kTsv, source);
    default:
      return madoguchi::invalid_argument("unknown knowledge base format " + std::to_string(format) +
                                         " (MDG_KB_JSON, MDG_KB_CSV or MDG_KB_TSV)");
  }
}

madoguchi::Result<std::shared_ptr<const bot::Bot>> build(bot::KnowledgeBase kb, const BotConfig& config) {
  for (const auto& [key, value] : config.settings) MDG_RETURN_IF_ERROR(bot::apply_setting(kb, key, value));
  bot::BotOptions options;
  options.text.mecab_dicdir = config.mecab_dicdir;
  options.logger = config.logger;
  if (config.max_message_bytes > 0) options.max_message_bytes = config.max_message_bytes;
  return bot::Bot::create(std::move(kb), std::move(options));
}

// Reads the options (NULL: defaults) into a BotConfig.
int read_options(const char* function, const mdg_bot_options* opts, BotConfig& config) {
  if (opts == nullptr) return MDG_OK;
  if (int rc = check_options_version(function, opts->version, MDG_BOT_OPTIONS_VERSION); rc != MDG_OK) return rc;
  config.mecab_dicdir = str_or_empty(opts->mecab_dicdir);
  config.max_message_bytes = opts->max_message_bytes;
  if (opts->settings != nullptr) {
    for (const char* const* s = opts->settings; *s != nullptr; ++s) {
      std::string_view item(*s);
      auto eq = item.find('=');
      if (eq == std::string_view::npos || eq == 0) {
        return set_error(MDG_EINVAL, std::string(function) + ": setting '" + std::string(item) +
                                         "' is not section.key=value (e.g. policy.answer_threshold=0.6)");
      }
      config.settings.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    }
  }
  config.logger = make_logger(opts->log_cb, opts->log_level, opts->userdata);
  return MDG_OK;
}

// The bot that asks use, replaced by reloads. A mutex, not std::atomic<std::shared_ptr>: the
// C++ libraries of Android and iOS (libc++) do not have that one, and libstdc++ 12's releases
// its internal lock with a relaxed store after a load, which does not order the load before a
// later store on weak-memory CPUs (ThreadSanitizer reports it as a race). Held for a pointer
// copy; the bot a store replaces is destroyed after the lock is released.
class CurrentBot {
 public:
  std::shared_ptr<const bot::Bot> load() const {
    std::lock_guard lock(mu_);
    return bot_;
  }
  // The bot and its generation (1 for the first, +1 per store), read together.
  std::pair<std::shared_ptr<const bot::Bot>, std::uint64_t> load_with_generation() const {
    std::lock_guard lock(mu_);
    return {bot_, generation_};
  }
  // Swaps in `next`; returns its generation.
  std::uint64_t store(std::shared_ptr<const bot::Bot> next) {
    std::shared_ptr<const bot::Bot> previous;
    std::uint64_t generation;
    {
      std::lock_guard lock(mu_);
      previous = std::exchange(bot_, std::move(next));
      generation = ++generation_;
    }
    return generation;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const bot::Bot> bot_;
  std::uint64_t generation_ = 0;
};

}  // namespace

struct mdg_bot {
  BotConfig config;
  CurrentBot current;
  std::mutex reload_mu;  // reloads take turns, so that generations follow the swaps
};

struct mdg_conversation {
  bot::Conversation conv;
  mutable std::atomic<bool> busy{false};
};

struct mdg_reply {
  bot::Reply reply;
  std::vector<mdg_candidate> candidates;  // point into `reply`
  std::vector<mdg_option> options;
};

namespace {

// Marks a conversation in use for the length of one call; a second thread gets MDG_EBUSY.
class ConversationUse {
 public:
  explicit ConversationUse(const mdg_conversation* c) : c_(c) {
    if (c_ != nullptr) acquired_ = !c_->busy.exchange(true, std::memory_order_acquire);
  }
  ~ConversationUse() {
    if (c_ != nullptr && acquired_) c_->busy.store(false, std::memory_order_release);
  }
  ConversationUse(const ConversationUse&) = delete;
  ConversationUse& operator=(const ConversationUse&) = delete;
  int check(const char* function) const {
    if (c_ == nullptr || acquired_) return MDG_OK;
    return set_error(MDG_EBUSY, std::string(function) + ": the conversation is in use on another thread "
                                                        "(a conversation is used by one thread at a time)");
  }

 private:
  const mdg_conversation* c_;
  bool acquired_ = false;
};

int open_bot(mdg_bot** out, madoguchi::Result<bot::KnowledgeBase> kb, BotConfig config) {
  if (!kb) return set_error(kb.status());
  auto built = build(std::move(*kb), config);
  if (!built) return set_error(built.status());
  auto handle = std::make_unique<mdg_bot>();
  handle->config = std::move(config);
  handle->current.store(std::move(*built));
  *out = handle.release();
  return MDG_OK;
}

int reload(mdg_bot* b, madoguchi::Result<bot::KnowledgeBase> kb) {
  if (!kb) return set_error(kb.status());
  std::lock_guard lock(b->reload_mu);
  auto built = build(std::move(*kb), b->config);
  if (!built) return set_error(built.status());
  const std::uint64_t gen = b->current.store(std::move(*built));
  b->config.logger.log(madoguchi::LogLevel::kInfo, "knowledge base reloaded (generation " + std::to_string(gen) + ")");
  return MDG_OK;
}

}  // namespace

extern "C" {

MDG_EXTERN(unsigned int) mdg_features(void) { return MDG_FEATURE_BOT | MDG_FEATURE_CLIENT; }

MDG_EXTERN(int) mdg_bot_options_init(mdg_bot_options* opts, unsigned int version) {
  const mdg_bot_options defaults = MDG_BOT_OPTIONS_INIT;
  return options_init("mdg_bot_options_init", opts, version, MDG_BOT_OPTIONS_VERSION, defaults);
}

MDG_EXTERN(int) mdg_bot_open_file(mdg_bot** out, const char* path, const mdg_bot_options* opts) {
  return guard("mdg_bot_open_file", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_bot_open_file", "out");
    *out = nullptr;
    if (path == nullptr) return null_argument("mdg_bot_open_file", "path");
    BotConfig config;
    if (int rc = read_options("mdg_bot_open_file", opts, config); rc != MDG_OK) return rc;
    return open_bot(out, bot::load_knowledge_file(path), std::move(config));
  });
}

MDG_EXTERN(int) mdg_bot_open_string(mdg_bot** out, const char* text, std::size_t size, int format,
                                    const char* source_name, const mdg_bot_options* opts) {
  return guard("mdg_bot_open_string", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_bot_open_string", "out");
    *out = nullptr;
    auto t = text_arg("mdg_bot_open_string", "text", text, size);
    if (!t) return mdg_error_last_code();
    BotConfig config;
    if (int rc = read_options("mdg_bot_open_string", opts, config); rc != MDG_OK) return rc;
    return open_bot(out, parse_string(*t, format, source_name), std::move(config));
  });
}

MDG_EXTERN(int) mdg_bot_reload_file(mdg_bot* b, const char* path) {
  return guard("mdg_bot_reload_file", [&]() -> int {
    if (b == nullptr) return null_argument("mdg_bot_reload_file", "bot");
    if (path == nullptr) return null_argument("mdg_bot_reload_file", "path");
    return reload(b, bot::load_knowledge_file(path));
  });
}

MDG_EXTERN(int) mdg_bot_reload_string(mdg_bot* b, const char* text, std::size_t size, int format,
                                      const char* source_name) {
  return guard("mdg_bot_reload_string", [&]() -> int {
    if (b == nullptr) return null_argument("mdg_bot_reload_string", "bot");
    auto t = text_arg("mdg_bot_reload_string", "text", text, size);
    if (!t) return mdg_error_last_code();
    return reload(b, parse_string(*t, format, source_name));
  });
}

MDG_EXTERN(int) mdg_bot_info_json(mdg_buf* out, const mdg_bot* b) {
  return guard("mdg_bot_info_json", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_bot_info_json", "out");
    *out = mdg_buf MDG_BUF_INIT;
    if (b == nullptr) return null_argument("mdg_bot_info_json", "bot");
    // One read: a reload between two would give one generation's number with another's entries.
    auto [current, generation] = b->current.load_with_generation();
    const auto& kb = current->knowledge();
    auto stats = current->stats();
    madoguchi::detail::JsonWriter w;
    w.begin_object();
    w.field("name", kb.name);
    w.field("source", kb.source);
    w.field("default_locale", kb.default_locale);
    w.field("generation", static_cast<std::int64_t>(generation));
    w.field("entries", kb.entries.size());
    w.field("questions", stats.questions);
    w.field("rules", kb.rules.size());
    w.key("entry_ids").begin_array();
    for (const auto& e : kb.entries) w.value(e.id);
    w.end_array();
    w.field("memory_bytes", stats.memory_bytes);
    w.field("build_ms", stats.build_ms);
    w.end_object();
    return put_buf(out, w.take());
  });
}

MDG_EXTERN(void) mdg_bot_free(mdg_bot* b) { std::unique_ptr<mdg_bot> owned(b); }

MDG_EXTERN(int) mdg_bot_ask(mdg_reply** out, mdg_bot* b, mdg_conversation* conv, const char* text,
                            std::size_t size) {
  return guard("mdg_bot_ask", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_bot_ask", "out");
    *out = nullptr;
    if (b == nullptr) return null_argument("mdg_bot_ask", "bot");
    auto t = text_arg("mdg_bot_ask", "text", text, size);
    if (!t) return mdg_error_last_code();
    ConversationUse use(conv);
    if (int rc = use.check("mdg_bot_ask"); rc != MDG_OK) return rc;
    std::shared_ptr<const bot::Bot> current = b->current.load();
    bot::Conversation one_off;
    auto reply = current->respond(conv != nullptr ? conv->conv : one_off, *t);
    if (!reply) return set_error(madoguchi::Status(reply.status().code(), "mdg_bot_ask: " + reply.status().message()));
    auto r = std::make_unique<mdg_reply>();
    r->reply = std::move(*reply);
    r->candidates.reserve(r->reply.candidates.size());
    for (const auto& c : r->reply.candidates) {
      r->candidates.push_back(mdg_candidate{c.entry_id.c_str(), c.confidence, c.score, c.bm25});
    }
    r->options.reserve(r->reply.options.size());
    for (const auto& o : r->reply.options) {
      r->options.push_back(mdg_option{o.label.c_str(), o.label.size(), o.entry_id.c_str()});
    }
    *out = r.release();
    return MDG_OK;
  });
}

// ---- conversations ------------------------------------------------------------------------

MDG_EXTERN(int) mdg_conversation_new(mdg_conversation** out) {
  return guard("mdg_conversation_new", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_conversation_new", "out");
    *out = std::make_unique<mdg_conversation>().release();
    return MDG_OK;
  });
}

MDG_EXTERN(void) mdg_conversation_free(mdg_conversation* conv) { std::unique_ptr<mdg_conversation> owned(conv); }

#define MDG_CONVERSATION_CALL(fn, conv, body)         \
  return guard(fn, [&]() -> int {                              \
    if ((conv) == nullptr) return null_argument(fn, "conv"); \
    ConversationUse use(conv);                        \
    if (int rc = use.check(fn); rc != MDG_OK) return rc; \
    body                                              \
  })

MDG_EXTERN(int) mdg_conversation_set_locale(mdg_conversation* conv, const char* locale) {
  MDG_CONVERSATION_CALL("mdg_conversation_set_locale", conv, {
    if (int rc = check_utf8("mdg_conversation_set_locale", "locale", str_or_empty(locale)); rc != MDG_OK) return rc;
    conv->conv.set_locale(str_or_empty(locale));
    return MDG_OK;
  });
}

MDG_EXTERN(int) mdg_conversation_set_fallback_locale(mdg_conversation* conv, const char* locale) {
  MDG_CONVERSATION_CALL("mdg_conversation_set_fallback_locale", conv, {
    if (int rc = check_utf8("mdg_conversation_set_fallback_locale", "locale", str_or_empty(locale)); rc != MDG_OK) {
      return rc;
    }
    conv->conv.set_fallback_locale(str_or_empty(locale));
    return MDG_OK;
  });
}

namespace {
// map[key] = value, or key erased when value is NULL: a visitor attribute or a slot.
int set_or_erase(const char* function, std::map<std::string, std::string, std::less<>>& map, const char* key,
                 const char* value) {
  if (key == nullptr) return null_argument(function, "key");
  if (int rc = check_utf8(function, "key", key); rc != MDG_OK) return rc;
  if (value == nullptr) {
    map.erase(std::string(key));
    return MDG_OK;
  }
  if (int rc = check_utf8(function, "value", value); rc != MDG_OK) return rc;
  map[key] = value;
  return MDG_OK;
}
}  // namespace

MDG_EXTERN(int) mdg_conversation_set_visitor(mdg_conversation* conv, const char* key, const char* value) {
  MDG_CONVERSATION_CALL("mdg_conversation_set_visitor", conv, {
    return set_or_erase("mdg_conversation_set_visitor", conv->conv.visitor(), key, value);
  });
}

MDG_EXTERN(int) mdg_conversation_set_slot(mdg_conversation* conv, const char* key, const char* value) {
  MDG_CONVERSATION_CALL("mdg_conversation_set_slot", conv, {
    return set_or_erase("mdg_conversation_set_slot", conv->conv.slots(), key, value);
  });
}

MDG_EXTERN(int) mdg_conversation_slot(mdg_buf* out, const mdg_conversation* conv, const char* key) {
  if (out != nullptr) *out = mdg_buf MDG_BUF_INIT;
  MDG_CONVERSATION_CALL("mdg_conversation_slot", conv, {
    if (out == nullptr) return null_argument("mdg_conversation_slot", "out");
    if (key == nullptr) return null_argument("mdg_conversation_slot", "key");
    if (int rc = check_utf8("mdg_conversation_slot", "key", key); rc != MDG_OK) return rc;
    const auto& slots = conv->conv.slots();
    auto it = slots.find(std::string_view(key));
    if (it == slots.end()) {
      return set_error(MDG_ENOTFOUND, "mdg_conversation_slot: slot '" + std::string(key) + "' is not set");
    }
    return put_buf(out, it->second);
  });
}

MDG_EXTERN(int) mdg_conversation_hand_back(mdg_conversation* conv) {
  MDG_CONVERSATION_CALL("mdg_conversation_hand_back", conv, {
    conv->conv.hand_back();
    return MDG_OK;
  });
}

MDG_EXTERN(int) mdg_conversation_add_turn(mdg_conversation* conv, const char* role, const char* text,
                                          std::size_t size) {
  MDG_CONVERSATION_CALL("mdg_conversation_add_turn", conv, {
    if (role == nullptr || *role == '\0') return null_argument("mdg_conversation_add_turn", "role");
    auto t = text_arg("mdg_conversation_add_turn", "text", text, size);
    if (!t) return mdg_error_last_code();
    if (int rc = check_utf8("mdg_conversation_add_turn", "role", role); rc != MDG_OK) return rc;
    if (int rc = check_utf8("mdg_conversation_add_turn", "text", *t); rc != MDG_OK) return rc;
    bot::Turn turn;
    turn.role = role;
    turn.text = std::string(*t);
    turn.decision = bot::Decision::kReply;
    conv->conv.add_turn(std::move(turn));
    return MDG_OK;
  });
}

MDG_EXTERN(int) mdg_conversation_turn(const mdg_conversation* conv) {
  MDG_CONVERSATION_CALL("mdg_conversation_turn", conv, { return conv->conv.turn(); });
}

MDG_EXTERN(int) mdg_conversation_handed_off(const mdg_conversation* conv) {
  MDG_CONVERSATION_CALL("mdg_conversation_handed_off", conv, { return conv->conv.handed_off() ? 1 : 0; });
}

MDG_EXTERN(int) mdg_conversation_json(mdg_buf* out, const mdg_conversation* conv) {
  if (out != nullptr) *out = mdg_buf MDG_BUF_INIT;
  MDG_CONVERSATION_CALL("mdg_conversation_json", conv, {
    if (out == nullptr) return null_argument("mdg_conversation_json", "out");
    return put_buf(out, conv->conv.to_json());
  });
}

#undef MDG_CONVERSATION_CALL

// ---- replies ------------------------------------------------------------------------------

MDG_EXTERN(int) mdg_reply_decision(const mdg_reply* r) {
  if (r == nullptr) return null_argument("mdg_reply_decision", "reply");
  return static_cast<int>(r->reply.decision);
}

MDG_EXTERN(const char*) mdg_reply_text(const mdg_reply* r, std::size_t* size) {
  if (size != nullptr) *size = r != nullptr ? r->reply.text.size() : 0;
  return r != nullptr ? r->reply.text.c_str() : nullptr;
}

MDG_EXTERN(const char*) mdg_reply_entry(const mdg_reply* r) { return r != nullptr ? r->reply.entry_id.c_str() : nullptr; }

MDG_EXTERN(const char*) mdg_reply_locale(const mdg_reply* r) { return r != nullptr ? r->reply.locale.c_str() : nullptr; }

MDG_EXTERN(const char*) mdg_reply_reason(const mdg_reply* r) { return r != nullptr ? r->reply.reason.c_str() : nullptr; }

MDG_EXTERN(std::size_t) mdg_reply_candidate_count(const mdg_reply* r) {
  return r != nullptr ? r->candidates.size() : 0;
}

MDG_EXTERN(const mdg_candidate*) mdg_reply_candidate(const mdg_reply* r, std::size_t index) {
  if (r == nullptr || index >= r->candidates.size()) return nullptr;
  return &r->candidates[index];
}

MDG_EXTERN(std::size_t) mdg_reply_option_count(const mdg_reply* r) { return r != nullptr ? r->options.size() : 0; }

MDG_EXTERN(const mdg_option*) mdg_reply_option(const mdg_reply* r, std::size_t index) {
  if (r == nullptr || index >= r->options.size()) return nullptr;
  return &r->options[index];
}

MDG_EXTERN(int) mdg_reply_json(mdg_buf* out, const mdg_reply* r) {
  return guard("mdg_reply_json", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_reply_json", "out");
    *out = mdg_buf MDG_BUF_INIT;
    if (r == nullptr) return null_argument("mdg_reply_json", "reply");
    return put_buf(out, r->reply.to_json());
  });
}

MDG_EXTERN(int) mdg_reply_handoff_json(mdg_buf* out, const mdg_reply* r) {
  return guard("mdg_reply_handoff_json", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_reply_handoff_json", "out");
    *out = mdg_buf MDG_BUF_INIT;
    if (r == nullptr) return null_argument("mdg_reply_handoff_json", "reply");
    if (!r->reply.handoff) {
      return set_error(MDG_ENOTFOUND, std::string("mdg_reply_handoff_json: the reply did not hand off (decision: ") +
                                          std::string(bot::to_string(r->reply.decision)) + ")");
    }
    return put_buf(out, r->reply.handoff->to_json());
  });
}

MDG_EXTERN(int) mdg_reply_explain(mdg_buf* out, const mdg_reply* r) {
  return guard("mdg_reply_explain", [&]() -> int {
    if (out == nullptr) return null_argument("mdg_reply_explain", "out");
    *out = mdg_buf MDG_BUF_INIT;
    if (r == nullptr) return null_argument("mdg_reply_explain", "reply");
    return put_buf(out, r->reply.explain());
  });
}

MDG_EXTERN(void) mdg_reply_free(mdg_reply* r) { std::unique_ptr<mdg_reply> owned(r); }

}  // extern "C"
