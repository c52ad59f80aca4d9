// madoguchi/bot/knowledge.hpp: the knowledge base a bot designer writes — FAQ entries,
// rules, the shop's terms and synonyms, and the policy's thresholds.
//
// Two formats (docs/knowledge-format.md): the JSON file of DESIGN.md, and a CSV/TSV sheet
// (id, question, answer_ja, answer_en, tags), one question per row. Loading checks every
// field; an error names the source, the line or entry, what is wrong and how to fix it.
//
// Thread-safety: plain values; copy freely, share as const.
#pragma once

#include <madoguchi/status.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace madoguchi::bot {
inline namespace v1 {

// Text in one or more locales ("ja", "en", ...). A plain string in the file is stored
// under the empty locale and serves every locale.
struct LocalizedText {
  std::map<std::string, std::string, std::less<>> by_locale;

  bool empty() const noexcept { return by_locale.empty(); }
  // The text for `locale`, else for `fallback`, else the locale-free text, else any; nullptr if empty.
  const std::string* get(std::string_view locale, std::string_view fallback = {}) const;
};

struct Entry {
  std::string id;
  std::vector<std::string> questions;  // the ways visitors ask it, any language
  LocalizedText answer;
  std::vector<std::string> tags;
  std::vector<std::string> follow_ups;  // ids of related entries
  std::string source;                   // "shop.json: entry 3" or "faq.csv:12", for messages
};

// A rule's condition: every part that is set must hold.
struct RuleCondition {
  std::vector<std::string> any;   // at least one keyword occurs
  std::vector<std::string> all;   // every keyword occurs
  std::vector<std::string> none;  // no keyword occurs
  std::string regex;              // ICU regular expression, searched in the normalized text
  std::string locale;             // "ja" / "en"
  std::string previous_answer;    // the entry the bot answered in the previous turn
  std::map<std::string, std::string, std::less<>> slots;  // slot == value ("*": slot is set)
  std::optional<int> turn_min;    // 1 = the visitor's first message
  std::optional<int> turn_max;
};

struct AskOption {
  LocalizedText label;
  std::string answer;  // entry id the option leads to
};

struct RuleAction {
  std::string answer;       // answer with this entry
  LocalizedText reply;      // reply with this text
  LocalizedText ask;        // ask with options
  std::vector<AskOption> options;
  std::map<std::string, std::string, std::less<>> set_slots;
  std::optional<std::string> handoff;  // hand off with this reason
};

struct Rule {
  std::string id;
  int priority = 0;  // higher first; equal priorities keep file order
  RuleCondition when;
  RuleAction then;
  bool enabled = true;
  std::string source;
};

// Retrieval parameters (docs/ranking.md). Out-of-range values are clamped when a bot is built.
struct RankingSettings {
  double k1 = 1.2;               // BM25 term-frequency saturation, [0, 3]
  double b = 0.75;               // BM25 length normalization, [0, 1]
  double question_weight = 1.0;  // weight of the best-matching question of an entry
  double answer_weight = 0.25;   // weight of the entry's answer text
  bool classifier = true;        // train the linear model over word and character n-grams
  double bm25_weight = 2.0;      // weight of the BM25 part in the model's logit, [0, 20]
  int epochs = 6;                // training passes of the linear model, [1, 50]
  bool average = true;           // average the weights over all training steps
  double l2 = 1e-5;              // L2 regularization of the linear model, [0, 1]
  double learning_rate = 5.0;    // SGD step, [1e-4, 50]
  int shortlist = 24;            // candidates the model competes against in training, [2, 200]
  double null_logit = 2.0;       // evidence a candidate must beat to be believed (calibration)
};

// When to answer, clarify or hand off (docs/policy.md).
struct PolicySettings {
  double answer_threshold = 0.50;   // calibrated confidence to answer with the top entry
  double clarify_threshold = 0.20;  // confidence for the top entry to be offered as an option
  double clarify_margin = 0.10;     // clarify when top - second < margin (both offered)
  int max_clarify_options = 3;
  int max_failed_turns = 2;         // hand off after this many failed turns in a row
  double severity_handoff = 0.6;    // hand off when the severity score reaches this
  bool handoff_out_of_scope = true; // out of scope: hand off (true) or say "I don't know" (false)
};

// Words that raise the triage scores; built-in lists cover Japanese and English.
struct TriageLexicon {
  std::vector<std::string> anger;
  std::vector<std::string> urgency;
  std::vector<std::string> money;
};

// Texts the bot says in its own voice.
struct Messages {
  LocalizedText clarify;   // "Did you mean one of these?"
  LocalizedText handoff;   // "I'll connect you with a person."
  LocalizedText fallback;  // "Sorry, I don't know that one."
};

struct KnowledgeBase {
  std::string name;
  std::string default_locale = "ja";
  std::vector<Entry> entries;
  std::vector<Rule> rules;
  std::vector<std::string> dictionary;                 // user dictionary terms
  std::vector<std::vector<std::string>> synonyms;      // groups; the first is canonical
  RankingSettings ranking;
  PolicySettings policy;
  TriageLexicon triage;
  Messages messages;
  std::string source;  // file name or "<string>"

  const Entry* find(std::string_view id) const;
};

// A problem found by lint, or a warning while loading.
struct Diagnostic {
  enum class Severity { kWarning, kError };
  Severity severity = Severity::kWarning;
  std::string where;    // "shop.json: entry 'returns-window'"
  std::string message;  // what is wrong and how to fix it
};

// Parses the JSON knowledge format. `source_name` is used in error messages.
Result<KnowledgeBase> parse_knowledge_json(std::string_view json, std::string_view source_name);

// Parses a CSV (',') or TSV ('\t') sheet: header `id,question,answer_ja,answer_en,tags`
// (any order; extra `answer_<locale>` columns allowed), one question per row.
Result<KnowledgeBase> parse_knowledge_sheet(std::string_view text, std::string_view source_name,
                                            char delimiter);

// The formats of a knowledge base (docs/knowledge-format.md).
enum class KnowledgeFormat : int {
  kJson = 0,  // parse_knowledge_json
  kCsv = 1,   // parse_knowledge_sheet with ','
  kTsv = 2,   // parse_knowledge_sheet with '\t'
};

// Parses a knowledge base held in memory with the parser of `format`; `source_name` is used
// in error messages ("<string>" when empty). Texts over 256 MiB are refused before they are
// read (kResourceExhausted), as by load_knowledge_file.
Result<KnowledgeBase> parse_knowledge(std::string_view text, KnowledgeFormat format, std::string_view source_name);

// Loads a file by extension: .json, .csv, .tsv (any case). Sizes over 256 MiB are refused.
Result<KnowledgeBase> load_knowledge_file(const std::string& path);

// Overrides one setting by name, as `madoguchi-bot --set` and host configs do:
// "ranking.k1", "ranking.classifier", "policy.answer_threshold", ... (docs/knowledge-format.md).
Status apply_setting(KnowledgeBase& kb, std::string_view key, std::string_view value);

// Checks that hold for every knowledge base: ids, references, answers per locale,
// regexes that compile, rules that can fire. Errors stop a bot from being built.
std::vector<Diagnostic> validate_knowledge(const KnowledgeBase& kb);

}  // namespace v1
}  // namespace madoguchi::bot
