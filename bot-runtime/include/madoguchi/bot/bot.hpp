// madoguchi/bot/bot.hpp: the bot — rules first, then retrieval, then a policy that answers,
// asks to clarify, or hands off to a person with the whole context.
//
//   auto kb = madoguchi::bot::load_knowledge_file("shop.json");
//   auto bot = madoguchi::bot::Bot::create(std::move(*kb));
//   madoguchi::bot::Conversation conv;
//   auto reply = (*bot)->respond(conv, "返品したいです");
//
// Thread-safety: a Bot is immutable once created; respond() and rank() may run on many
// threads at once. A Conversation belongs to one visitor and is not synchronized: use it
// from one thread at a time. To reload a knowledge base while answering, build a new Bot
// and swap a std::shared_ptr<const Bot> (conversations keep working across the swap).
#pragma once

#include <madoguchi/bot/knowledge.hpp>
#include <madoguchi/bot/text.hpp>
#include <madoguchi/log.hpp>
#include <madoguchi/status.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace madoguchi::bot {
inline namespace v1 {

enum class Decision : int {
  kAnswer = 0,    // answered with an entry
  kReply = 1,     // a rule replied with its own text
  kClarify = 2,   // asked which of a few entries the visitor means
  kHandoff = 3,   // handed off to a person
  kFallback = 4,  // said it does not know (hand-off disabled for out-of-scope questions)
};
std::string_view to_string(Decision d) noexcept;

struct Candidate {
  std::string entry_id;
  double confidence = 0;  // calibrated, 0..1: comparable across knowledge bases
  double score = 0;       // the model's raw score (logit)
  double bm25 = 0;        // BM25 part of the score over the query's idf mass (about 0..1, can exceed 1)
};

struct Triage {
  double complexity = 0;  // 0..1: long, several questions, many failed turns
  double severity = 0;    // 0..1: anger, urgency, money at stake
  double effort = 0;      // 0..1: how hard the visitor has worked already (turns, repeats)
  std::vector<std::string> signals;  // "anger:最悪", "money:refund", ...
};

struct Option {
  std::string label;
  std::string entry_id;
};

struct Turn {
  std::string role;  // "visitor" or "bot"
  std::string text;
  std::string entry_id;  // what the bot answered with, if anything
  Decision decision = Decision::kAnswer;
};

// Everything a person needs to take over: serialises to JSON for the hub and agents.
struct HandoffPackage {
  std::string reason;
  std::string locale;
  std::vector<Turn> transcript;
  std::vector<Candidate> candidates;
  std::vector<std::string> rules_fired;
  Triage triage;
  std::map<std::string, std::string, std::less<>> slots;
  std::map<std::string, std::string, std::less<>> visitor;  // visitor attributes from the host
  std::string to_json() const;
};

struct Explanation {
  std::string normalized;
  std::vector<Token> tokens;
  std::vector<std::string> rules_checked;  // rules whose conditions were evaluated
};

struct Reply {
  Decision decision = Decision::kFallback;
  std::string text;      // what to show the visitor
  std::string entry_id;  // kAnswer: the entry
  std::string locale;
  std::vector<Option> options;              // kClarify or a rule's ask
  std::vector<Candidate> candidates;        // best first
  std::vector<std::string> rules_fired;
  std::vector<std::string> follow_ups;      // entry ids related to the answer
  // kAnswer: the follow-ups that are in the knowledge base, each titled in the reply locale as
  // a clarification option is: questions to offer next ("related: ..."), picked like options.
  std::vector<Option> suggestions;
  std::string reason;                       // why: "confident", "out of scope", "visitor asked for a person"
  Triage triage;
  Explanation explanation;
  std::optional<HandoffPackage> handoff;    // kHandoff
  std::string to_json() const;              // the whole reply as one JSON object
  // The explanation `madoguchi-bot ask` prints (docs/cli.md): the normalized text and its
  // locale, the tokens, the rules fired, the candidates, triage and the decision, one line
  // each (the candidates one line each), every line ending in '\n'.
  std::string explain() const;
};

// One visitor's conversation with the bot: turns, slots, what was answered, failures.
class Conversation {
 public:
  int turn() const noexcept { return visitor_turns_; }
  const std::vector<Turn>& transcript() const noexcept { return transcript_; }
  const std::string& previous_answer() const noexcept { return previous_answer_; }
  int failed_turns() const noexcept { return failed_turns_; }
  const std::string& locale() const noexcept { return locale_; }
  void set_locale(std::string locale) { locale_ = std::move(locale); }  // overrides detection
  // The visitor's language for messages that do not tell (no letters, or empty) when no
  // earlier reply does; detection still wins for messages with letters.
  const std::string& fallback_locale() const noexcept { return fallback_locale_; }
  void set_fallback_locale(std::string locale) { fallback_locale_ = std::move(locale); }
  std::map<std::string, std::string, std::less<>>& slots() noexcept { return slots_; }
  const std::map<std::string, std::string, std::less<>>& slots() const noexcept { return slots_; }
  std::map<std::string, std::string, std::less<>>& visitor() noexcept { return visitor_; }
  const std::map<std::string, std::string, std::less<>>& visitor() const noexcept { return visitor_; }
  bool handed_off() const noexcept { return handed_off_; }
  // Back to the bot after a person handled it: failures are forgotten.
  void hand_back() noexcept { handed_off_ = false; failed_turns_ = 0; }
  // Records a turn said by someone else (an agent) so the transcript stays whole.
  void add_turn(Turn turn);

  // What a respond() call changes, saved just before it, so that a reply the host does not use
  // can be taken back: a host that asked on another thread and found, once the reply came,
  // that a person had taken the conversation over meanwhile. After a respond() that returned a
  // reply (a failed one changes nothing), rewind() removes the two turns it added after
  // checkpoint() (turns added after them stay) and puts back the context it changed: slots,
  // previous answer, failed turns, turn count, pending options, hand-off flag and the language
  // of the previous message. (With kMaxTurns turns or kMaxTranscriptBytes already there, the
  // oldest ones that respond() pushed out stay out.)
  class Checkpoint {
   private:
    friend class Conversation;
    std::uint64_t turns_added = 0;
    std::map<std::string, std::string, std::less<>> slots;
    std::string previous_answer;
    std::string last_locale;
    std::vector<std::pair<std::string, std::string>> pending_options;
    int visitor_turns = 0;
    int failed_turns = 0;
    bool handed_off = false;
  };
  Checkpoint checkpoint() const;
  // With `keep_message`, the visitor's turn stays where it is and only the bot's goes: the
  // message was said, to someone else (the hub's person who took over).
  void rewind(const Checkpoint& cp, bool keep_message = false);
  // The state as one JSON object: turn, failed_turns, handed_off, previous_answer, locale,
  // fallback_locale, slots, visitor and the transcript, written as in HandoffPackage::to_json
  // (docs/policy.md, "Conversation JSON"; what mdg_conversation_json returns).
  std::string to_json() const;

  // The transcript keeps the last kMaxTurns turns (visitor, bot and agent turns alike), and
  // of those the last whose texts hold at most kMaxTranscriptBytes (the newest turn stays
  // whatever its size), so that a conversation that goes on for days, or a visitor who
  // pastes long texts, holds bounded memory and gives a hand-off package of bounded size; a
  // host that needs every message keeps them itself (the hub's store does).
  static constexpr std::size_t kMaxTurns = 200;
  static constexpr std::size_t kMaxTranscriptBytes = 256 * 1024;

 private:
  friend class Bot;
  std::vector<Turn> transcript_;
  std::map<std::string, std::string, std::less<>> slots_;
  std::map<std::string, std::string, std::less<>> visitor_;
  std::string previous_answer_;
  std::string locale_;       // set by the host: overrides detection
  std::string fallback_locale_;  // set by the host: when the message does not tell
  std::string last_locale_;  // the language of the previous message
  std::vector<std::pair<std::string, std::string>> pending_options_;  // (entry, label) offered last
  std::uint64_t turns_added_ = 0;  // every turn ever added, the dropped ones included
  int visitor_turns_ = 0;
  int failed_turns_ = 0;
  bool handed_off_ = false;
};

struct BotOptions {
  TextOptions text;  // MeCab dictionary; the KB's dictionary and synonyms are added
  Logger logger;
  std::size_t max_message_bytes = 16 * 1024;  // longer messages are cut at a character boundary
  // Threads that create() uses to analyze the texts, prepare the model's training examples and
  // train it (0: one per hardware thread, at most 8; 1: the calling thread only). The bot is
  // the same either way. Each thread's MeCab lattice and scoring scratch stay in the bot's pools.
  unsigned build_threads = 0;
};

struct BotStats {
  std::size_t entries = 0;
  std::size_t questions = 0;
  std::size_t terms = 0;
  std::size_t features = 0;
  std::size_t weights = 0;
  std::size_t memory_bytes = 0;  // estimate of the index and model
  double build_ms = 0;
};

class Bot {
 public:
  // Validates the knowledge base (validate_knowledge), builds the index and trains the model.
  static Result<std::shared_ptr<const Bot>> create(KnowledgeBase kb, BotOptions options = {});
  ~Bot();
  Bot(const Bot&) = delete;
  Bot& operator=(const Bot&) = delete;

  // One visitor message in a conversation: rules, retrieval, policy. Updates `conv`.
  // Errors: kInvalidArgument for invalid UTF-8 (an empty message gets a graceful reply).
  Result<Reply> respond(Conversation& conv, std::string_view text) const;

  // The top `k` entries for a text, without rules or policy.
  Result<std::vector<Candidate>> rank(std::string_view text, std::size_t k = 5) const;

  const KnowledgeBase& knowledge() const noexcept;
  // The knowledge base's entry with this id, or nullptr; a hash lookup (KnowledgeBase::find
  // goes through the entries one by one).
  const Entry* entry(std::string_view id) const noexcept;
  const TextPipeline& text() const noexcept;
  BotStats stats() const noexcept;

  struct Impl;

 private:
  explicit Bot(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace v1
}  // namespace madoguchi::bot
