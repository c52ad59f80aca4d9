// The bot: rules, retrieval, triage and the answer / clarify / hand-off policy.
#include <madoguchi/bot/bot.hpp>

#include <madoguchi/detail/json_writer.hpp>
#include "rank/index.hpp"
#include "text/utf8.hpp"

#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <unordered_map>

namespace madoguchi::bot {
inline namespace v1 {

std::string_view to_string(Decision d) noexcept {
  switch (d) {
    case Decision::kAnswer: return "answer";
    case Decision::kReply: return "reply";
    case Decision::kClarify: return "clarify";
    case Decision::kHandoff: return "handoff";
    case Decision::kFallback: return "fallback";
  }
  return "?";
}

void Conversation::add_turn(Turn turn) {
  transcript_.push_back(std::move(turn));
  ++turns_added_;
  // The oldest turns go while there are more than kMaxTurns or their texts hold more than
  // kMaxTranscriptBytes; the newest stays whatever its size.
  std::size_t bytes = 0;
  for (const auto& t : transcript_) bytes += t.text.size();
  std::size_t drop = 0;
  while (transcript_.size() - drop > 1 && (transcript_.size() - drop > kMaxTurns || bytes > kMaxTranscriptBytes)) {
    bytes -= transcript_[drop++].text.size();
  }
  transcript_.erase(transcript_.begin(), transcript_.begin() + static_cast<std::ptrdiff_t>(drop));
}

Conversation::Checkpoint Conversation::checkpoint() const {
  Checkpoint cp;
  cp.turns_added = turns_added_;
  cp.slots = slots_;
  cp.previous_answer = previous_answer_;
  cp.last_locale = last_locale_;
  cp.pending_options = pending_options_;
  cp.visitor_turns = visitor_turns_;
  cp.failed_turns = failed_turns_;
  cp.handed_off = handed_off_;
  return cp;
}

void Conversation::rewind(const Checkpoint& cp, bool keep_message) {
  // transcript_[i] is turn number turns_added_ - size + i; respond() added numbers
  // cp.turns_added (the visitor's) and cp.turns_added + 1 (the bot's).
  // (A turn already dropped for kMaxTurns or kMaxTranscriptBytes stays counted.)
  const std::uint64_t first = turns_added_ - transcript_.size();
  const std::uint64_t from = keep_message ? cp.turns_added + 1 : cp.turns_added;
  std::uint64_t erased = 0;
  for (std::uint64_t n = cp.turns_added + 2; n-- > from;) {
    if (n >= first && n < turns_added_) {
      transcript_.erase(transcript_.begin() + static_cast<std::ptrdiff_t>(n - first));
      ++erased;
    }
  }
  turns_added_ -= erased;
  slots_ = cp.slots;
  previous_answer_ = cp.previous_answer;
  last_locale_ = cp.last_locale;
  pending_options_ = cp.pending_options;
  visitor_turns_ = cp.visitor_turns;
  failed_turns_ = cp.failed_turns;
  handed_off_ = cp.handed_off;
}

namespace {

using madoguchi::detail::JsonWriter;

// A rule's text in the reply's locale; "" if it has none (the loader refuses {}, but a
// knowledge base built in code may hold one).
std::string text_in(const LocalizedText& t, std::string_view locale, std::string_view fallback) {
  const std::string* s = t.get(locale, fallback);
  return s ? *s : std::string();
}

// The candidates a reply carries (docs/policy.md, step 9), a rule's hand-off included.
constexpr std::size_t kReplyCandidates = 5;

// ICU's limit on the regex searches of one message, in steps of its match engine (a step is
// 10,000 moves): kRegexSteps, plus one per kRegexBytesPerStep bytes of the message, shared
// equally by the rules that have a regex (each gets at least one step), so that however many
// such rules a knowledge base has, a message costs them at most so much. A pattern that runs
// in linear time stays far below its share; a search still going then is taken as not
// matching.
constexpr std::int32_t kRegexSteps = 20, kRegexBytesPerStep = 16;

struct CompiledRule {
  const Rule* rule;
  std::vector<std::string> any, all, none;  // normalized keywords
  std::unique_ptr<icu::RegexPattern> regex;
};

struct Lexicon {
  std::vector<std::string> anger, urgency, money, person;
};

const TriageLexicon& builtin_triage() {
  static const TriageLexicon lex{
      {"最悪", "ふざけ", "怒", "ムカつ", "むかつ", "腹立", "腹が立", "いい加減にして", "詐欺", "許せない",
       "二度と", "ひどすぎ", "酷すぎ", "訴え", "angry", "furious", "ridiculous", "terrible service",
       "worst", "unacceptable", "scam", "disgusting", "outrageous", "lawyer", "sue you", "wtf"},
      {"至急", "大至急", "急ぎ", "今すぐ", "緊急", "今日中", "urgent", "asap", "immediately", "right now",
       "emergency"},
      {"二重", "返金", "請求", "引き落とし", "不正", "過剰", "支払ったのに", "払ったのに", "refund",
       "charged twice", "double charge", "double charged", "overcharged", "unauthorized", "chargeback",
       "money back"}};
  return lex;
}

const std::vector<std::string>& builtin_person_request() {
  static const std::vector<std::string> words = {
      "担当者", "オペレーター", "オペレータ", "有人", "人と話", "人間と話", "スタッフと話", "人に代わ", "人につな",
      "talk to a human", "speak to a human", "talk to a person", "speak to a person", "real person",
      "human agent", "live agent", "talk to someone", "speak to someone", "customer service representative",
      "talk to an agent", "speak to an agent", "operator"};
  return words;
}

// Default texts in the bot's own voice, by locale.
const Messages& builtin_messages() {
  static const Messages m = [] {
    Messages x;
    x.clarify.by_locale = {{"ja", "次のどれについてのご質問でしょうか？"}, {"en", "Did you mean one of these?"}};
    x.handoff.by_locale = {{"ja", "担当者におつなぎします。少々お待ちください。"},
                           {"en", "Let me connect you with a member of our team. One moment, please."}};
    x.fallback.by_locale = {{"ja", "申し訳ありません、その質問にはお答えできません。別の言い方でお試しください。"},
                            {"en", "Sorry, I don't know the answer to that. Could you put it another way?"}};
    return x;
  }();
  return m;
}

const std::string& say(const LocalizedText& kb_text, const LocalizedText& builtin, std::string_view locale,
                       std::string_view fallback_locale) {
  static const std::string empty;
  if (const auto* s = kb_text.get(locale, fallback_locale)) return *s;
  if (const auto* s = builtin.get(locale, "en")) return *s;
  return empty;
}

}  // namespace

struct Bot::Impl {
  KnowledgeBase kb;
  BotOptions options;
  std::shared_ptr<const TextPipeline> text;
  std::unique_ptr<detail::Index> index;
  std::vector<CompiledRule> rules;  // priority order
  std::int32_t regex_rules = 0;      // those with a regex
  Lexicon lexicon;
  std::vector<std::string> entry_titles_ja, entry_titles_en;  // a question to show as an option
  std::unordered_map<std::string_view, const Entry*> entry_by_id;  // views into kb.entries
  double build_ms = 0;

  // `regex_steps`: the limit of its regex search (see kRegexSteps).
  bool rule_matches(const CompiledRule& r, const Analysis& a, const Conversation& conv, std::int32_t regex_steps) const;
  Triage triage(const Analysis& a, const Conversation& conv, std::string_view raw) const;
  const std::string& title(std::uint32_t entry, std::string_view locale) const {
    const auto& ja = entry_titles_ja[entry];
    const auto& en = entry_titles_en[entry];
    if (locale == "ja") return ja.empty() ? en : ja;
    return en.empty() ? ja : en;
  }
  std::vector<Candidate> to_candidates(const std::vector<detail::Ranked>& ranked) const {
    std::vector<Candidate> out;
    out.reserve(ranked.size());
    for (const auto& r : ranked) {
      out.push_back({kb.entries[r.entry].id, static_cast<double>(r.p), static_cast<double>(r.z),
                     static_cast<double>(r.bm25)});
    }
    return out;
  }
};

Bot::Bot(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Bot::~Bot() = default;

const KnowledgeBase& Bot::knowledge() const noexcept { return impl_->kb; }
const Entry* Bot::entry(std::string_view id) const noexcept {
  auto it = impl_->entry_by_id.find(id);
  return it == impl_->entry_by_id.end() ? nullptr : it->second;
}
const TextPipeline& Bot::text() const noexcept { return *impl_->text; }

BotStats Bot::stats() const noexcept {
  BotStats s;
  s.entries = impl_->kb.entries.size();
  s.questions = impl_->index->questions();
  s.terms = impl_->index->terms();
  s.features = impl_->index->features();
  s.weights = impl_->index->weights();
  s.memory_bytes = impl_->index->memory_bytes();
  s.build_ms = impl_->build_ms;
  return s;
}

Result<std::shared_ptr<const Bot>> Bot::create(KnowledgeBase kb, BotOptions options) {
  auto start = std::chrono::steady_clock::now();
  for (const auto& d : validate_knowledge(kb)) {
    if (d.severity == Diagnostic::Severity::kError) return invalid_argument(d.where + ": " + d.message);
    options.logger.log(LogLevel::kWarning, d.where + ": " + d.message);
  }
  if (kb.entries.empty()) return invalid_argument(kb.source + ": the knowledge base has no entries");

  auto impl = std::make_unique<Impl>();
  TextOptions text_options = options.text;
  text_options.user_terms.insert(text_options.user_terms.end(), kb.dictionary.begin(), kb.dictionary.end());
  text_options.synonyms.insert(text_options.synonyms.end(), kb.synonyms.begin(), kb.synonyms.end());
  MDG_ASSIGN_OR_RETURN(impl->text, TextPipeline::create(std::move(text_options)));
  // Thresholds are probabilities; counts are small whole numbers.
  PolicySettings& pol = kb.policy;
  pol.answer_threshold = std::clamp(pol.answer_threshold, 0.0, 1.0);
  pol.clarify_threshold = std::clamp(pol.clarify_threshold, 0.0, 1.0);
  pol.clarify_margin = std::clamp(pol.clarify_margin, 0.0, 1.0);
  pol.severity_handoff = std::clamp(pol.severity_handoff, 0.0, 1.01);
  pol.max_clarify_options = std::clamp(pol.max_clarify_options, 1, 10);
  pol.max_failed_turns = std::clamp(pol.max_failed_turns, 0, 100);
  impl->kb = std::move(kb);
  impl->options = std::move(options);
  const KnowledgeBase& k = impl->kb;
  MDG_ASSIGN_OR_RETURN(impl->index, detail::Index::build(k, *impl->text, k.ranking, impl->options.build_threads));

  auto norm_all = [&](const std::vector<std::string>& words, std::vector<std::string>& out) -> Status {
    for (const auto& w : words) {
      MDG_ASSIGN_OR_RETURN(auto a, impl->text->analyze(w));
      if (!a.normalized.empty()) out.push_back(std::move(a.normalized));
    }
    return Status::ok();
  };
  // Rules in priority order; equal priorities keep file order.
  std::vector<const Rule*> order;
  for (const auto& r : k.rules) {
    if (r.enabled) order.push_back(&r);
  }
  std::stable_sort(order.begin(), order.end(), [](const Rule* a, const Rule* b) { return a->priority > b->priority; });
  for (const Rule* r : order) {
    CompiledRule cr{r, {}, {}, {}, nullptr};
    MDG_RETURN_IF_ERROR(norm_all(r->when.any, cr.any));
    MDG_RETURN_IF_ERROR(norm_all(r->when.all, cr.all));
    MDG_RETURN_IF_ERROR(norm_all(r->when.none, cr.none));
    if ((!r->when.any.empty() && cr.any.empty()) || (!r->when.all.empty() && cr.all.empty())) {
      return invalid_argument(r->source + ": every keyword normalizes to nothing (white space only); "
                              "the rule would fire on every message");
    }
    if (!r->when.regex.empty()) {
      UErrorCode err = U_ZERO_ERROR;
      UParseError perr{};
      cr.regex.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(r->when.regex),
                                                UREGEX_CASE_INSENSITIVE, perr, err));
      if (U_FAILURE(err)) {
        return invalid_argument(r->source + ": regex \"" + r->when.regex + "\" does not compile: " +
                                u_errorName(err) + " at offset " + std::to_string(perr.offset));
      }
    }
    if (cr.regex) ++impl->regex_rules;
    impl->rules.push_back(std::move(cr));
  }
  const TriageLexicon& bt = builtin_triage();
  MDG_RETURN_IF_ERROR(norm_all(bt.anger, impl->lexicon.anger));
  MDG_RETURN_IF_ERROR(norm_all(bt.urgency, impl->lexicon.urgency));
  MDG_RETURN_IF_ERROR(norm_all(bt.money, impl->lexicon.money));
  MDG_RETURN_IF_ERROR(norm_all(k.triage.anger, impl->lexicon.anger));
  MDG_RETURN_IF_ERROR(norm_all(k.triage.urgency, impl->lexicon.urgency));
  MDG_RETURN_IF_ERROR(norm_all(k.triage.money, impl->lexicon.money));
  MDG_RETURN_IF_ERROR(norm_all(builtin_person_request(), impl->lexicon.person));
  for (auto* words : {&impl->lexicon.anger, &impl->lexicon.urgency, &impl->lexicon.money, &impl->lexicon.person}) {
    std::sort(words->begin(), words->end());
    words->erase(std::unique(words->begin(), words->end()), words->end());
  }

  for (const auto& e : k.entries) impl->entry_by_id.emplace(e.id, &e);
  for (const auto& e : k.entries) {
    std::string ja, en;
    for (const auto& q : e.questions) {
      auto& slot = TextPipeline::detect_locale(q) == "ja" ? ja : en;
      if (slot.empty()) slot = q;
    }
    impl->entry_titles_ja.push_back(std::move(ja));
    impl->entry_titles_en.push_back(std::move(en));
  }
  impl->build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  impl->options.logger.log(LogLevel::kInfo, "bot '" + k.name + "' ready: " + std::to_string(k.entries.size()) +
                                                " entries, " + std::to_string(impl->rules.size()) + " rules");
  return std::shared_ptr<const Bot>(new Bot(std::move(impl)));
}

bool Bot::Impl::rule_matches(const CompiledRule& r, const Analysis& a, const Conversation& conv,
                             std::int32_t regex_steps) const {
  const RuleCondition& w = r.rule->when;
  const std::string& s = a.normalized;
  if (!w.locale.empty() && w.locale != a.locale) return false;
  if (!w.previous_answer.empty() && w.previous_answer != conv.previous_answer()) return false;
  int turn = conv.turn() + 1;
  if (w.turn_min && turn < *w.turn_min) return false;
  if (w.turn_max && turn > *w.turn_max) return false;
  for (const auto& [slot, value] : w.slots) {
    auto it = conv.slots().find(slot);
    if (it == conv.slots().end()) return false;
    if (value != "*" && it->second != value) return false;
  }
  if (!r.any.empty() &&
      std::none_of(r.any.begin(), r.any.end(), [&](const std::string& k) { return detail::contains_term(s, k); })) {
    return false;
  }
  for (const auto& k : r.all) {
    if (!detail::contains_term(s, k)) return false;
  }
  for (const auto& k : r.none) {
    if (detail::contains_term(s, k)) return false;
  }
  if (r.regex) {
    UErrorCode err = U_ZERO_ERROR;
    icu::UnicodeString input = icu::UnicodeString::fromUTF8(a.folded);  // as typed: before synonyms
    std::unique_ptr<icu::RegexMatcher> m(r.regex->matcher(input, err));
    if (U_FAILURE(err)) return false;
    // A pattern with nested repetition ("(a+)+$") takes time exponential in the length of
    // some texts: a visitor's message must not hold the bot for minutes.
    m->setTimeLimit(regex_steps, err);
    const bool found = U_SUCCESS(err) && m->find(err);
    if (err == U_REGEX_TIME_OUT) {
      options.logger.log(LogLevel::kWarning,
                         r.rule->source + ": regex \"" + r.rule->when.regex +
                             "\" gave up on a message of " + std::to_string(a.folded.size()) +
                             " bytes (too much backtracking) and is taken as not matching; rewrite it "
                             "without a repetition inside a repetition, such as (a+)+ or (a|aa)*");
      return false;
    }
    if (U_FAILURE(err) || !found) return false;
  }
  return true;
}

Triage Bot::Impl::triage(const Analysis& a, const Conversation& conv, std::string_view raw) const {
  Triage t;
  const std::string& s = a.normalized;
  auto hits = [&](const std::vector<std::string>& words, const char* kind) {
    int n = 0;
    for (const auto& w : words) {
      if (detail::contains_term(s, w)) {
        t.signals.push_back(std::string(kind) + ":" + w);
        ++n;
      }
    }
    return n;
  };
  int anger = hits(lexicon.anger, "anger");
  int urgency = hits(lexicon.urgency, "urgency");
  int money = hits(lexicon.money, "money");
  // Counted after normalization, so full-width ！ counts as well.
  auto bangs = static_cast<std::size_t>(std::count(s.begin(), s.end(), '!'));
  // Added up in tenths: in floating point 0.6 + 0.3 is 0.8999999999999999, which a
  // severity_handoff of 0.9 would not reach although the score shows as 0.9.
  const int tenths = (anger ? 6 : 0) + (anger > 1 ? 1 : 0) + (urgency ? 3 : 0) + (money ? 3 : 0) + (bangs >= 3 ? 1 : 0);
  t.severity = static_cast<double>(std::min(10, tenths)) / 10.0;

  std::size_t questions = static_cast<std::size_t>(std::count(s.begin(), s.end(), '?'));
  std::size_t sentences = 0;
  for (std::size_t i = 0; i < s.size();) {
    char32_t c = detail::next_code_point(s, i);
    if (c == U'。' || c == '.' || c == '?' || c == '!') ++sentences;
  }
  double length = static_cast<double>(s.size()) / 400.0;
  t.complexity = std::min(1.0, length + 0.15 * static_cast<double>(sentences > 1 ? sentences - 1 : 0) +
                                   (questions > 1 ? 0.2 : 0.0) + 0.15 * conv.failed_turns());
  bool repeated = false;
  for (const auto& turn : conv.transcript()) {
    if (turn.role == "visitor" && turn.text == raw) repeated = true;
  }
  t.effort = std::min(1.0, 0.35 * conv.failed_turns() + 0.05 * conv.turn() + (repeated ? 0.3 : 0.0));
  return t;
}

Result<std::vector<Candidate>> Bot::rank(std::string_view text, std::size_t k) const {
  MDG_ASSIGN_OR_RETURN(auto a, impl_->text->analyze(text));
  return impl_->to_candidates(impl_->index->rank(a, k));
}

Result<Reply> Bot::respond(Conversation& conv, std::string_view text) const {
  const Impl& im = *impl_;
  const KnowledgeBase& kb = im.kb;
  const PolicySettings& policy = kb.policy;
  if (std::size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    return invalid_argument("message: invalid UTF-8 at byte " + std::to_string(bad) + " (send UTF-8 text)");
  }
  // Cut very long messages at a character boundary: a 1 MB paste still gets an answer.
  std::string_view raw = text;
  bool truncated = false;
  if (raw.size() > im.options.max_message_bytes) {
    std::size_t cut = im.options.max_message_bytes;
    while (cut > 0 && (static_cast<unsigned char>(raw[cut]) & 0xC0) == 0x80) --cut;
    raw = raw.substr(0, cut);
    truncated = true;
  }
  MDG_ASSIGN_OR_RETURN(Analysis a, im.text->analyze(raw));

  Reply reply;
  // A message without letters ("2", "?", "👍", "。") keeps the conversation's language: a
  // thumbs-up after a Japanese answer is no reason to go on in English.
  const bool has_letters =
      detail::any_code_point(a.normalized, [](char32_t c) { return u_isUAlphabetic(static_cast<UChar32>(c)) != 0; });
  if (!conv.locale().empty()) {
    reply.locale = conv.locale();
  } else if (!has_letters && !conv.last_locale_.empty()) {
    reply.locale = conv.last_locale_;
  } else if (!has_letters && !conv.fallback_locale_.empty()) {
    reply.locale = conv.fallback_locale_;
  } else {
    reply.locale = a.locale;
  }
  if (a.normalized.empty()) reply.locale = conv.fallback_locale_.empty() ? kb.default_locale : conv.fallback_locale_;
  const std::string& loc = reply.locale;
  const std::string& fallback_locale = kb.default_locale;
  reply.explanation.normalized = a.normalized;
  reply.explanation.tokens = a.tokens;
  reply.triage = im.triage(a, conv, raw);

  bool empty_message = false;  // an empty message is not the bot failing
  bool menu = false;           // nor is a designer's menu (a rule's "ask")
  auto finish = [&](Reply& r) -> Reply {
    if (truncated) r.reason += " (message cut to " + std::to_string(im.options.max_message_bytes) + " bytes)";
    conv.add_turn({"visitor", std::string(raw), "", r.decision});
    conv.last_locale_ = r.locale;
    ++conv.visitor_turns_;
    // A failed turn: the bot could not answer. An empty message or a designer's menu
    // (a rule's "ask") is not the bot failing.
    bool failed = (r.decision == Decision::kFallback && !empty_message) ||
                  (r.decision == Decision::kClarify && !menu);
    conv.failed_turns_ = failed ? conv.failed_turns_ + 1 : (r.decision == Decision::kHandoff ? conv.failed_turns_ : 0);
    conv.previous_answer_ = r.decision == Decision::kAnswer ? r.entry_id : std::string();
    conv.pending_options_.clear();
    if (r.decision == Decision::kClarify) {
      for (const auto& o : r.options) conv.pending_options_.push_back({o.entry_id, o.label});
    }
    conv.add_turn({"bot", r.text, r.entry_id, r.decision});
    if (r.decision == Decision::kHandoff) {
      conv.handed_off_ = true;
      HandoffPackage p;
      p.reason = r.reason;
      p.locale = r.locale;
      p.transcript = conv.transcript_;
      p.candidates = r.candidates;
      p.rules_fired = r.rules_fired;
      p.triage = r.triage;
      p.slots = conv.slots_;
      p.visitor = conv.visitor_;
      r.handoff = std::move(p);
    }
    return std::move(r);
  };
  auto answer_with = [&](const std::string& entry_id, std::string reason) {
    auto found = im.entry_by_id.find(entry_id);
    const Entry* e = found == im.entry_by_id.end() ? nullptr : found->second;
    reply.decision = Decision::kAnswer;
    reply.entry_id = entry_id;
    const std::string* t = e ? e->answer.get(loc, fallback_locale) : nullptr;
    reply.text = t ? *t : std::string();
    if (e) {
      reply.follow_ups = e->follow_ups;
      for (const auto& id : e->follow_ups) {
        auto next = im.entry_by_id.find(id);
        if (next == im.entry_by_id.end()) continue;
        const auto index = static_cast<std::uint32_t>(next->second - kb.entries.data());
        reply.suggestions.push_back({im.title(index, loc), id});
      }
    }
    reply.reason = std::move(reason);
  };
  auto hand_off = [&](std::string reason) {
    reply.decision = Decision::kHandoff;
    reply.text = say(kb.messages.handoff, builtin_messages().handoff, loc, fallback_locale);
    reply.reason = std::move(reason);
  };

  if (a.normalized.empty()) {
    empty_message = true;
    reply.decision = Decision::kFallback;
    reply.reason = "empty message";
    reply.text = loc == "ja" ? "ご質問を入力してください。" : "Please type your question.";
    return finish(reply);
  }

  // A reply to a clarification: "1", "2" or the option's text picks the entry.
  if (!conv.pending_options_.empty()) {
    const std::string& s = a.normalized;
    for (std::size_t i = 0; i < conv.pending_options_.size(); ++i) {
      const auto& [entry_id, label] = conv.pending_options_[i];
      bool by_number = s == std::to_string(i + 1);
      bool by_label = false;
      if (!by_number) {
        auto l = im.text->analyze(label);  // the same normalization and synonyms as the message
        by_label = l.is_ok() && l->normalized == s;
      }
      // An option whose entry is gone (the knowledge base was reloaded since) is not taken:
      // the message goes through the rules and the ranking like any other.
      if ((by_number || by_label) && im.entry_by_id.contains(entry_id)) {
        std::string chosen = entry_id;
        answer_with(chosen, "chosen from the clarification");
        return finish(reply);
      }
    }
  }

  // Rules, highest priority first. A rule that only sets slots lets later rules run.
  const auto regex_budget = static_cast<std::int32_t>(
      std::min<std::size_t>(kRegexSteps + raw.size() / kRegexBytesPerStep, INT32_MAX / 2));
  const std::int32_t regex_steps = std::max<std::int32_t>(1, regex_budget / std::max<std::int32_t>(1, im.regex_rules));
  for (const auto& cr : im.rules) {
    reply.explanation.rules_checked.push_back(cr.rule->id);
    if (!im.rule_matches(cr, a, conv, regex_steps)) continue;
    const RuleAction& act = cr.rule->then;
    reply.rules_fired.push_back(cr.rule->id);
    for (const auto& [k, v] : act.set_slots) conv.slots_[k] = v;
    if (act.handoff) {
      // The rule decided, but the person who takes the conversation still sees what the
      // bot made of the message ("まだ届かない…担当者と話したい" is about a late parcel).
      reply.candidates = im.to_candidates(im.index->rank(a, kReplyCandidates));
      if (!act.reply.empty()) {
        reply.decision = Decision::kHandoff;
        reply.reason = *act.handoff;
        reply.text = *act.reply.get(loc, fallback_locale);
      } else {
        hand_off(*act.handoff);
      }
      return finish(reply);
    }
    if (!act.answer.empty()) {
      answer_with(act.answer, "rule " + cr.rule->id);
      return finish(reply);
    }
    if (!act.ask.empty()) {
      menu = true;
      reply.decision = Decision::kClarify;
      reply.reason = "rule " + cr.rule->id;
      reply.text = text_in(act.ask, loc, fallback_locale);
      for (const auto& o : act.options) reply.options.push_back({text_in(o.label, loc, fallback_locale), o.answer});
      return finish(reply);
    }
    if (!act.reply.empty()) {
      reply.decision = Decision::kReply;
      reply.reason = "rule " + cr.rule->id;
      reply.text = text_in(act.reply, loc, fallback_locale);
      return finish(reply);
    }
  }

  // Retrieval.
  auto ranked = im.index->rank(a, kReplyCandidates);
  reply.candidates = im.to_candidates(ranked);

  // Built-in hand-off triggers: an explicit request for a person, high severity.
  for (const auto& w : im.lexicon.person) {
    if (detail::contains_term(a.normalized, w)) {
      hand_off("visitor asked for a person");
      return finish(reply);
    }
  }
  if (reply.triage.severity >= policy.severity_handoff) {
    std::string why = "high severity";
    for (std::size_t i = 0; i < reply.triage.signals.size(); ++i) why += (i == 0 ? " (" : ", ") + reply.triage.signals[i];
    if (!reply.triage.signals.empty()) why += ")";
    hand_off(why);
    return finish(reply);
  }

  double p1 = ranked.empty() ? 0.0 : ranked[0].p;
  double p2 = ranked.size() > 1 ? ranked[1].p : 0.0;
  if (ranked.empty()) {
    p1 = 0;  // nothing matched: out of scope whatever the thresholds say
  }
  if (!ranked.empty() && p1 >= policy.answer_threshold && (p1 - p2 >= policy.clarify_margin || p2 < policy.clarify_threshold)) {
    answer_with(kb.entries[ranked[0].entry].id, "confident");
  } else if (!ranked.empty() && p1 >= policy.clarify_threshold) {
    reply.decision = Decision::kClarify;
    reply.reason = p1 >= policy.answer_threshold ? "close candidates" : "not sure";
    reply.text = say(kb.messages.clarify, builtin_messages().clarify, loc, fallback_locale);
    for (const auto& r : ranked) {
      if (static_cast<int>(reply.options.size()) >= std::max(1, policy.max_clarify_options)) break;
      // Options after the first must be plausible next to it: the confidences of the others
      // share what the first leaves (docs/ranking.md), so they are compared with it.
      if (r.p < p1 / 8 && !reply.options.empty()) break;
      reply.options.push_back({im.title(r.entry, loc), kb.entries[r.entry].id});
    }
  } else if (policy.handoff_out_of_scope) {
    hand_off("out of scope");
  } else {
    reply.decision = Decision::kFallback;
    reply.reason = "out of scope";
    reply.text = say(kb.messages.fallback, builtin_messages().fallback, loc, fallback_locale);
  }
  if ((reply.decision == Decision::kFallback || reply.decision == Decision::kClarify) &&
      conv.failed_turns_ + 1 >= policy.max_failed_turns && policy.max_failed_turns > 0) {
    hand_off(std::to_string(policy.max_failed_turns) + " failed turns in a row");
    reply.options.clear();
  }
  return finish(reply);
}

namespace {

void write_candidates(JsonWriter& w, const std::vector<Candidate>& cands) {
  w.key("candidates").begin_array();
  for (const auto& c : cands) {
    w.begin_object().field("entry", c.entry_id).field("confidence", c.confidence).field("score", c.score)
        .field("bm25", c.bm25).end_object();
  }
  w.end_array();
}

void write_options(JsonWriter& w, std::string_view key, const std::vector<Option>& options) {
  w.key(key).begin_array();
  for (const auto& o : options) w.begin_object().field("label", o.label).field("entry", o.entry_id).end_object();
  w.end_array();
}

void write_strings(JsonWriter& w, std::string_view key, const std::vector<std::string>& v) {
  w.key(key).begin_array();
  for (const auto& s : v) w.value(s);
  w.end_array();
}

void write_map(JsonWriter& w, std::string_view key, const std::map<std::string, std::string, std::less<>>& m) {
  w.key(key).begin_object();
  for (const auto& [k, v] : m) w.field(k, v);
  w.end_object();
}

void write_triage(JsonWriter& w, const Triage& t) {
  w.key("triage").begin_object().field("complexity", t.complexity).field("severity", t.severity)
      .field("effort", t.effort);
  write_strings(w, "signals", t.signals);
  w.end_object();
}

void write_transcript(JsonWriter& w, const std::vector<Turn>& transcript) {
  w.key("transcript").begin_array();
  for (const auto& t : transcript) {
    w.begin_object().field("role", t.role).field("text", t.text);
    if (!t.entry_id.empty()) w.field("entry", t.entry_id);
    w.field("decision", to_string(t.decision)).end_object();
  }
  w.end_array();
}

void write_package(JsonWriter& w, const HandoffPackage& p) {
  w.begin_object().field("reason", p.reason).field("locale", p.locale);
  write_transcript(w, p.transcript);
  write_candidates(w, p.candidates);
  write_strings(w, "rules_fired", p.rules_fired);
  write_triage(w, p.triage);
  write_map(w, "slots", p.slots);
  write_map(w, "visitor", p.visitor);
  w.end_object();
}

}  // namespace

std::string HandoffPackage::to_json() const {
  JsonWriter w;
  write_package(w, *this);
  return w.take();
}

std::string Conversation::to_json() const {
  JsonWriter w;
  w.begin_object().field("turn", visitor_turns_).field("failed_turns", failed_turns_).field("handed_off", handed_off_)
      .field("previous_answer", previous_answer_).field("locale", locale_).field("fallback_locale", fallback_locale_);
  write_map(w, "slots", slots_);
  write_map(w, "visitor", visitor_);
  write_transcript(w, transcript_);
  w.end_object();
  return w.take();
}

std::string Reply::explain() const {
  // printf-style formatting of one line into `out`.
  auto append = [](std::string& out, const char* fmt, auto... args) {
    char buf[256];
    int n = std::snprintf(buf, sizeof buf, fmt, args...);
    if (n < 0) return;
    if (static_cast<std::size_t>(n) < sizeof buf) {
      out.append(buf, static_cast<std::size_t>(n));
    } else {
      std::string big(static_cast<std::size_t>(n), '\0');
      std::snprintf(big.data(), big.size() + 1, fmt, args...);
      out += big;
    }
  };
  std::string s = "normalized: " + explanation.normalized + "  [" + locale + "]\n";
  s += "tokens:    ";
  for (const auto& t : explanation.tokens) {
    const char* mark = t.kind == TokenKind::kUserTerm ? "*" : t.kind == TokenKind::kUnknown ? "?" : "";
    s += t.content ? " " : " (";
    s += t.text + mark;
    s += t.content ? "" : ")";
  }
  s += "\n";
  if (!rules_fired.empty()) {
    s += "rules:     ";
    for (const auto& id : rules_fired) s += " " + id;
    s += "\n";
  }
  if (!candidates.empty()) {
    s += "candidates:\n";
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      const auto& c = candidates[i];
      append(s, "  %zu. %-32s confidence %.3f  score %7.3f  bm25 %.3f\n", i + 1, c.entry_id.c_str(), c.confidence,
             c.score, c.bm25);
    }
  }
  append(s, "triage:     complexity %.2f  severity %.2f  effort %.2f", triage.complexity, triage.severity,
         triage.effort);
  for (const auto& sig : triage.signals) s += "  " + sig;
  s += "\ndecision:   " + std::string(to_string(decision)) + " (" + reason + ")";
  if (!entry_id.empty()) s += " -> " + entry_id;
  s += "\n";
  return s;
}

std::string Reply::to_json() const {
  JsonWriter w;
  w.begin_object().field("decision", to_string(decision)).field("text", text);
  if (!entry_id.empty()) w.field("entry", entry_id);
  w.field("locale", locale).field("reason", reason);
  write_options(w, "options", options);
  write_candidates(w, candidates);
  write_strings(w, "rules_fired", rules_fired);
  write_strings(w, "follow_ups", follow_ups);
  write_options(w, "suggestions", suggestions);
  write_triage(w, triage);
  w.key("tokens").begin_array();
  for (const auto& t : explanation.tokens) {
    w.begin_object().field("text", t.text).field("content", t.content);
    w.field("kind", t.kind == TokenKind::kUserTerm ? "user_term" : t.kind == TokenKind::kUnknown ? "unknown" : "word");
    w.end_object();
  }
  w.end_array();
  w.field("normalized", explanation.normalized);
  if (handoff) {
    w.key("handoff");
    write_package(w, *handoff);
  }
  w.end_object();
  return w.take();
}

}  // namespace v1
}  // namespace madoguchi::bot
