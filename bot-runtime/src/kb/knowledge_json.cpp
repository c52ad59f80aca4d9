// The JSON knowledge format (docs/knowledge-format.md), read with simdjson's DOM API.
#include <madoguchi/bot/knowledge.hpp>
#include <madoguchi/bot/text.hpp>

#include "kb/json_locate.hpp"
#include "text/blank.hpp"

#include <simdjson.h>

#include <algorithm>
#include <initializer_list>

namespace madoguchi::bot {
inline namespace v1 {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

// The first key that an object of `e` has twice, as "where: the key \"k\"" (where: a path
// such as entries[2].answer), or empty. simdjson keeps both, and a lookup finds the first, so
// the second one's text would be lost without a word.
std::string repeated_key(element e, const std::string& path) {
  object o;
  if (e.get_object().get(o) == simdjson::SUCCESS) {
    std::vector<std::string_view> keys;
    for (auto field : o) keys.push_back(field.key);
    std::sort(keys.begin(), keys.end());
    if (auto twice = std::adjacent_find(keys.begin(), keys.end()); twice != keys.end()) {
      return (path.empty() ? std::string("the top-level object") : path) + ": the key \"" + std::string(*twice) + "\"";
    }
    for (auto field : o) {
      auto found = repeated_key(field.value, path.empty() ? std::string(field.key) : path + "." + std::string(field.key));
      if (!found.empty()) return found;
    }
    return {};
  }
  array a;
  if (e.get_array().get(a) == simdjson::SUCCESS) {
    std::size_t i = 0;
    for (auto v : a) {
      auto found = repeated_key(v, path + "[" + std::to_string(i++) + "]");
      if (!found.empty()) return found;
    }
  }
  return {};
}

std::string join_keys(std::initializer_list<std::string_view> keys) {
  std::string s;
  for (auto k : keys) {
    if (!s.empty()) s += ", ";
    s += k;
  }
  return s;
}

// Reads one JSON document into a KnowledgeBase, remembering where it is for messages.
class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  Status error(const std::string& where, const std::string& what) const {
    return invalid_argument(source_ + ": " + where + ": " + what);
  }

  Status check_keys(object obj, const std::string& where,
                    std::initializer_list<std::string_view> known) const {
    for (auto field : obj) {
      if (std::find(known.begin(), known.end(), field.key) == known.end()) {
        return error(where, "unknown field \"" + std::string(field.key) +
                                "\" (known fields: " + join_keys(known) + ")");
      }
    }
    return Status::ok();
  }

  Result<std::string> string(element e, const std::string& where) const {
    std::string_view s;
    if (e.get_string().get(s) != simdjson::SUCCESS) {
      return error(where, "expected a string, found " + type_name(e));
    }
    return std::string(s);
  }

  // A string that may not be empty where it is given: "" would read as not given at all (a
  // condition "previous_answer": "" would hold for every message).
  Result<std::string> given_string(element e, const std::string& where, std::string_view what) const {
    MDG_ASSIGN_OR_RETURN(auto s, string(e, where));
    if (s.empty()) return error(where, "empty: give " + std::string(what) + ", or leave the key out");
    return s;
  }

  Result<std::vector<std::string>> strings(element e, const std::string& where) const {
    std::vector<std::string> out;
    if (e.is_string()) {  // a single string is a one-element list
      MDG_ASSIGN_OR_RETURN(auto s, string(e, where));
      out.push_back(std::move(s));
      return out;
    }
    array arr;
    if (e.get_array().get(arr) != simdjson::SUCCESS) {
      return error(where, "expected a list of strings, found " + type_name(e));
    }
    std::size_t i = 0;
    for (element item : arr) {
      MDG_ASSIGN_OR_RETURN(auto s, string(item, where + "[" + std::to_string(i) + "]"));
      out.push_back(std::move(s));
      ++i;
    }
    return out;
  }

  // As localized(), for text the bot shows (a rule's reply, question and options, the
  // messages): {} or a blank text is an error here, since it would show nothing.
  Result<LocalizedText> shown_text(element e, const std::string& where) const {
    MDG_ASSIGN_OR_RETURN(auto t, localized(e, where));
    if (t.by_locale.empty()) {
      return error(where, "an empty object: give the text in at least one locale (e.g. {\"ja\": \"...\"})");
    }
    for (const auto& [locale, text] : t.by_locale) {
      if (detail::blank_text(text)) {
        return error(locale.empty() ? where : where + "." + locale, "the text is blank: the visitor would see nothing");
      }
    }
    return t;
  }

  Result<LocalizedText> localized(element e, const std::string& where) const {
    LocalizedText t;
    if (e.is_string()) {
      MDG_ASSIGN_OR_RETURN(auto s, string(e, where));
      t.by_locale.emplace("", std::move(s));
      return t;
    }
    object obj;
    if (e.get_object().get(obj) != simdjson::SUCCESS) {
      return error(where, "expected a string or an object of locale -> string "
                          "(e.g. {\"ja\": \"...\", \"en\": \"...\"}), found " + type_name(e));
    }
    for (auto field : obj) {
      std::string locale(field.key);
      MDG_ASSIGN_OR_RETURN(auto s, string(field.value, where + "." + locale));
      t.by_locale.emplace(std::move(locale), std::move(s));
    }
    return t;
  }

  Result<double> number(element e, const std::string& where) const {
    double d;
    if (e.get_double().get(d) != simdjson::SUCCESS) {
      return error(where, "expected a number, found " + type_name(e));
    }
    return d;
  }

  Result<int> integer(element e, const std::string& where) const {
    int64_t v;
    if (e.get_int64().get(v) != simdjson::SUCCESS || v < INT32_MIN || v > INT32_MAX) {
      return error(where, "expected a whole number, found " + type_name(e));
    }
    return static_cast<int>(v);
  }

  Result<bool> boolean(element e, const std::string& where) const {
    bool b;
    if (e.get_bool().get(b) != simdjson::SUCCESS) {
      return error(where, "expected true or false, found " + type_name(e));
    }
    return b;
  }

  Result<std::map<std::string, std::string, std::less<>>> string_map(element e, const std::string& where) const {
    std::map<std::string, std::string, std::less<>> m;
    object obj;
    if (e.get_object().get(obj) != simdjson::SUCCESS) {
      return error(where, "expected an object of name -> string, found " + type_name(e));
    }
    for (auto field : obj) {
      MDG_ASSIGN_OR_RETURN(auto v, string(field.value, where + "." + std::string(field.key)));
      m.emplace(std::string(field.key), std::move(v));
    }
    return m;
  }

  static std::string type_name(element e) {
    switch (e.type()) {
      case simdjson::dom::element_type::ARRAY: return "a list";
      case simdjson::dom::element_type::OBJECT: return "an object";
      case simdjson::dom::element_type::INT64:
      case simdjson::dom::element_type::UINT64:
      case simdjson::dom::element_type::DOUBLE: return "a number";
      case simdjson::dom::element_type::STRING: return "a string";
      case simdjson::dom::element_type::BOOL: return "true/false";
      case simdjson::dom::element_type::NULL_VALUE: return "null";
    }
    return "a value";
  }

  Status read_entry(element e, std::size_t index, KnowledgeBase& kb) const {
    std::string where = "entries[" + std::to_string(index) + "]";
    object obj;
    if (e.get_object().get(obj) != simdjson::SUCCESS) return error(where, "expected an object");
    Entry entry;
    element v;
    if (obj["id"].get(v) != simdjson::SUCCESS) {
      return error(where, "missing \"id\" (every entry needs a unique id, e.g. \"returns-window\")");
    }
    MDG_ASSIGN_OR_RETURN(entry.id, string(v, where + ".id"));
    if (entry.id.empty()) return error(where, "\"id\" is empty");
    where = "entry '" + entry.id + "' (entries[" + std::to_string(index) + "])";
    MDG_RETURN_IF_ERROR(check_keys(obj, where, {"id", "questions", "answer", "tags", "follow_ups"}));
    if (obj["questions"].get(v) != simdjson::SUCCESS) {
      return error(where, "missing \"questions\" (list the ways visitors ask this)");
    }
    MDG_ASSIGN_OR_RETURN(entry.questions, strings(v, where + ".questions"));
    if (obj["answer"].get(v) != simdjson::SUCCESS) {
      return error(where, "missing \"answer\" (a string, or {\"ja\": ..., \"en\": ...})");
    }
    MDG_ASSIGN_OR_RETURN(entry.answer, localized(v, where + ".answer"));
    if (obj["tags"].get(v) == simdjson::SUCCESS) {
      MDG_ASSIGN_OR_RETURN(entry.tags, strings(v, where + ".tags"));
    }
    if (obj["follow_ups"].get(v) == simdjson::SUCCESS) {
      MDG_ASSIGN_OR_RETURN(entry.follow_ups, strings(v, where + ".follow_ups"));
    }
    entry.source = source_ + ": " + where;
    kb.entries.push_back(std::move(entry));
    return Status::ok();
  }

  Status read_condition(element e, const std::string& where, RuleCondition& c) const {
    object obj;
    if (e.get_object().get(obj) != simdjson::SUCCESS) return error(where, "expected an object");
    MDG_RETURN_IF_ERROR(check_keys(obj, where, {"any", "all", "none", "regex", "locale",
                                                "previous_answer", "slots", "turn"}));
    for (auto field : obj) {
      std::string w = where + "." + std::string(field.key);
      if (field.key == "any") {
        MDG_ASSIGN_OR_RETURN(c.any, strings(field.value, w));
      } else if (field.key == "all") {
        MDG_ASSIGN_OR_RETURN(c.all, strings(field.value, w));
      } else if (field.key == "none") {
        MDG_ASSIGN_OR_RETURN(c.none, strings(field.value, w));
      } else if (field.key == "regex") {
        MDG_ASSIGN_OR_RETURN(c.regex, given_string(field.value, w, "a pattern"));
      } else if (field.key == "locale") {
        MDG_ASSIGN_OR_RETURN(c.locale, given_string(field.value, w, "a locale such as \"ja\" or \"en\""));
      } else if (field.key == "previous_answer") {
        MDG_ASSIGN_OR_RETURN(c.previous_answer, given_string(field.value, w, "an entry id"));
      } else if (field.key == "slots") {
        MDG_ASSIGN_OR_RETURN(c.slots, string_map(field.value, w));
      } else if (field.key == "turn") {
        object t;
        if (field.value.get_object().get(t) != simdjson::SUCCESS) {
          return error(w, "expected {\"min\": N, \"max\": M}");
        }
        MDG_RETURN_IF_ERROR(check_keys(t, w, {"min", "max"}));
        element n;
        if (t["min"].get(n) == simdjson::SUCCESS) {
          MDG_ASSIGN_OR_RETURN(c.turn_min, integer(n, w + ".min"));
        }
        if (t["max"].get(n) == simdjson::SUCCESS) {
          MDG_ASSIGN_OR_RETURN(c.turn_max, integer(n, w + ".max"));
        }
      }
    }
    return Status::ok();
  }

  Status read_action(element e, const std::string& where, RuleAction& a) const {
    object obj;
    if (e.get_object().get(obj) != simdjson::SUCCESS) return error(where, "expected an object");
    MDG_RETURN_IF_ERROR(check_keys(obj, where, {"answer", "reply", "ask", "set_slots", "handoff"}));
    for (auto field : obj) {
      std::string w = where + "." + std::string(field.key);
      if (field.key == "answer") {
        MDG_ASSIGN_OR_RETURN(a.answer, given_string(field.value, w, "an entry id"));
      } else if (field.key == "reply") {
        MDG_ASSIGN_OR_RETURN(a.reply, shown_text(field.value, w));
      } else if (field.key == "set_slots") {
        MDG_ASSIGN_OR_RETURN(a.set_slots, string_map(field.value, w));
      } else if (field.key == "handoff") {
        MDG_ASSIGN_OR_RETURN(auto reason, string(field.value, w));
        a.handoff = std::move(reason);
      } else if (field.key == "ask") {
        object ask;
        if (field.value.get_object().get(ask) != simdjson::SUCCESS) {
          return error(w, "expected {\"text\": ..., \"options\": [...]}");
        }
        MDG_RETURN_IF_ERROR(check_keys(ask, w, {"text", "options"}));
        element v;
        if (ask["text"].get(v) != simdjson::SUCCESS) return error(w, "missing \"text\" (the question to ask)");
        MDG_ASSIGN_OR_RETURN(a.ask, shown_text(v, w + ".text"));
        array opts;
        if (ask["options"].get(v) != simdjson::SUCCESS || v.get_array().get(opts) != simdjson::SUCCESS) {
          return error(w, "missing \"options\" (a list of {\"label\": ..., \"answer\": \"entry-id\"})");
        }
        std::size_t i = 0;
        for (element o : opts) {
          std::string ow = w + ".options[" + std::to_string(i++) + "]";
          object oo;
          if (o.get_object().get(oo) != simdjson::SUCCESS) return error(ow, "expected an object");
          MDG_RETURN_IF_ERROR(check_keys(oo, ow, {"label", "answer"}));
          AskOption opt;
          element x;
          if (oo["label"].get(x) != simdjson::SUCCESS) return error(ow, "missing \"label\"");
          MDG_ASSIGN_OR_RETURN(opt.label, shown_text(x, ow + ".label"));
          if (oo["answer"].get(x) != simdjson::SUCCESS) return error(ow, "missing \"answer\" (an entry id)");
          MDG_ASSIGN_OR_RETURN(opt.answer, string(x, ow + ".answer"));
          a.options.push_back(std::move(opt));
        }
      }
    }
    return Status::ok();
  }

  Status read_rule(element e, std::size_t index, KnowledgeBase& kb) const {
    std::string where = "rules[" + std::to_string(index) + "]";
    object obj;
    if (e.get_object().get(obj) != simdjson::SUCCESS) return error(where, "expected an object");
    Rule rule;
    element v;
    if (obj["id"].get(v) != simdjson::SUCCESS) return error(where, "missing \"id\"");
    MDG_ASSIGN_OR_RETURN(rule.id, string(v, where + ".id"));
    where = "rule '" + rule.id + "' (rules[" + std::to_string(index) + "])";
    MDG_RETURN_IF_ERROR(check_keys(obj, where, {"id", "priority", "when", "then", "enabled"}));
    if (obj["priority"].get(v) == simdjson::SUCCESS) {
      MDG_ASSIGN_OR_RETURN(rule.priority, integer(v, where + ".priority"));
    }
    if (obj["enabled"].get(v) == simdjson::SUCCESS) {
      MDG_ASSIGN_OR_RETURN(rule.enabled, boolean(v, where + ".enabled"));
    }
    if (obj["when"].get(v) != simdjson::SUCCESS) {
      return error(where, "missing \"when\" (the condition, e.g. {\"any\": [\"human\"]})");
    }
    MDG_RETURN_IF_ERROR(read_condition(v, where + ".when", rule.when));
    if (obj["then"].get(v) != simdjson::SUCCESS) {
      return error(where, "missing \"then\" (the action, e.g. {\"handoff\": \"asked for a person\"})");
    }
    MDG_RETURN_IF_ERROR(read_action(v, where + ".then", rule.then));
    rule.source = source_ + ": " + where;
    kb.rules.push_back(std::move(rule));
    return Status::ok();
  }

  Status read_settings(element e, KnowledgeBase& kb) const {
    const std::string where = "settings";
    object obj;
    if (e.get_object().get(obj) != simdjson::SUCCESS) return error(where, "expected an object");
    MDG_RETURN_IF_ERROR(check_keys(obj, where, {"ranking", "policy"}));
    element v;
    if (obj["ranking"].get(v) == simdjson::SUCCESS) {
      object r;
      const std::string w = "settings.ranking";
      if (v.get_object().get(r) != simdjson::SUCCESS) return error(w, "expected an object");
      MDG_RETURN_IF_ERROR(check_keys(r, w, {"k1", "b", "question_weight", "answer_weight", "classifier",
                                            "bm25_weight", "epochs", "average", "l2", "learning_rate", "shortlist", "null_logit"}));
      auto& s = kb.ranking;
      for (auto f : r) {
        std::string fw = w + "." + std::string(f.key);
        if (f.key == "k1") { MDG_ASSIGN_OR_RETURN(s.k1, number(f.value, fw)); }
        else if (f.key == "b") { MDG_ASSIGN_OR_RETURN(s.b, number(f.value, fw)); }
        else if (f.key == "question_weight") { MDG_ASSIGN_OR_RETURN(s.question_weight, number(f.value, fw)); }
        else if (f.key == "answer_weight") { MDG_ASSIGN_OR_RETURN(s.answer_weight, number(f.value, fw)); }
        else if (f.key == "classifier") { MDG_ASSIGN_OR_RETURN(s.classifier, boolean(f.value, fw)); }
        else if (f.key == "bm25_weight") { MDG_ASSIGN_OR_RETURN(s.bm25_weight, number(f.value, fw)); }
        else if (f.key == "epochs") { MDG_ASSIGN_OR_RETURN(s.epochs, integer(f.value, fw)); }
        else if (f.key == "average") { MDG_ASSIGN_OR_RETURN(s.average, boolean(f.value, fw)); }
        else if (f.key == "l2") { MDG_ASSIGN_OR_RETURN(s.l2, number(f.value, fw)); }
        else if (f.key == "learning_rate") { MDG_ASSIGN_OR_RETURN(s.learning_rate, number(f.value, fw)); }
        else if (f.key == "shortlist") { MDG_ASSIGN_OR_RETURN(s.shortlist, integer(f.value, fw)); }
        else if (f.key == "null_logit") { MDG_ASSIGN_OR_RETURN(s.null_logit, number(f.value, fw)); }
      }
    }
    if (obj["policy"].get(v) == simdjson::SUCCESS) {
      object p;
      const std::string w = "settings.policy";
      if (v.get_object().get(p) != simdjson::SUCCESS) return error(w, "expected an object");
      MDG_RETURN_IF_ERROR(check_keys(p, w, {"answer_threshold", "clarify_threshold", "clarify_margin",
                                            "max_clarify_options", "max_failed_turns", "severity_handoff",
                                            "handoff_out_of_scope"}));
      auto& s = kb.policy;
      for (auto f : p) {
        std::string fw = w + "." + std::string(f.key);
        if (f.key == "answer_threshold") { MDG_ASSIGN_OR_RETURN(s.answer_threshold, number(f.value, fw)); }
        else if (f.key == "clarify_threshold") { MDG_ASSIGN_OR_RETURN(s.clarify_threshold, number(f.value, fw)); }
        else if (f.key == "clarify_margin") { MDG_ASSIGN_OR_RETURN(s.clarify_margin, number(f.value, fw)); }
        else if (f.key == "max_clarify_options") { MDG_ASSIGN_OR_RETURN(s.max_clarify_options, integer(f.value, fw)); }
        else if (f.key == "max_failed_turns") { MDG_ASSIGN_OR_RETURN(s.max_failed_turns, integer(f.value, fw)); }
        else if (f.key == "severity_handoff") { MDG_ASSIGN_OR_RETURN(s.severity_handoff, number(f.value, fw)); }
        else if (f.key == "handoff_out_of_scope") { MDG_ASSIGN_OR_RETURN(s.handoff_out_of_scope, boolean(f.value, fw)); }
      }
    }
    return Status::ok();
  }

  Status read_root(element root, KnowledgeBase& kb) const {
    object obj;
    if (root.get_object().get(obj) != simdjson::SUCCESS) {
      return error("top level", "expected an object with \"entries\" (see docs/knowledge-format.md)");
    }
    MDG_RETURN_IF_ERROR(check_keys(obj, "top level", {"name", "default_locale", "entries", "rules", "dictionary",
                                                      "synonyms", "settings", "triage", "messages"}));
    element v;
    if (obj["name"].get(v) == simdjson::SUCCESS) { MDG_ASSIGN_OR_RETURN(kb.name, string(v, "name")); }
    if (obj["default_locale"].get(v) == simdjson::SUCCESS) {
      MDG_ASSIGN_OR_RETURN(kb.default_locale, string(v, "default_locale"));
    }
    array arr;
    if (obj["entries"].get(v) != simdjson::SUCCESS) {
      return error("top level", "missing \"entries\" (the list of FAQ entries)");
    }
    if (v.get_array().get(arr) != simdjson::SUCCESS) return error("entries", "expected a list");
    std::size_t i = 0;
    for (element e : arr) MDG_RETURN_IF_ERROR(read_entry(e, i++, kb));
    if (obj["rules"].get(v) == simdjson::SUCCESS) {
      if (v.get_array().get(arr) != simdjson::SUCCESS) return error("rules", "expected a list");
      i = 0;
      for (element e : arr) MDG_RETURN_IF_ERROR(read_rule(e, i++, kb));
    }
    if (obj["dictionary"].get(v) == simdjson::SUCCESS) {
      MDG_ASSIGN_OR_RETURN(kb.dictionary, strings(v, "dictionary"));
    }
    if (obj["synonyms"].get(v) == simdjson::SUCCESS) {
      if (v.get_array().get(arr) != simdjson::SUCCESS) {
        return error("synonyms", "expected a list of groups, e.g. [[\"返品\", \"返却\"]]");
      }
      i = 0;
      for (element g : arr) {
        MDG_ASSIGN_OR_RETURN(auto group, strings(g, "synonyms[" + std::to_string(i++) + "]"));
        kb.synonyms.push_back(std::move(group));
      }
    }
    if (obj["settings"].get(v) == simdjson::SUCCESS) MDG_RETURN_IF_ERROR(read_settings(v, kb));
    if (obj["triage"].get(v) == simdjson::SUCCESS) {
      object t;
      if (v.get_object().get(t) != simdjson::SUCCESS) return error("triage", "expected an object");
      MDG_RETURN_IF_ERROR(check_keys(t, "triage", {"anger", "urgency", "money"}));
      if (t["anger"].get(v) == simdjson::SUCCESS) { MDG_ASSIGN_OR_RETURN(kb.triage.anger, strings(v, "triage.anger")); }
      if (t["urgency"].get(v) == simdjson::SUCCESS) { MDG_ASSIGN_OR_RETURN(kb.triage.urgency, strings(v, "triage.urgency")); }
      if (t["money"].get(v) == simdjson::SUCCESS) { MDG_ASSIGN_OR_RETURN(kb.triage.money, strings(v, "triage.money")); }
    }
    if (obj["messages"].get(v) == simdjson::SUCCESS) {
      object m;
      if (v.get_object().get(m) != simdjson::SUCCESS) return error("messages", "expected an object");
      MDG_RETURN_IF_ERROR(check_keys(m, "messages", {"clarify", "handoff", "fallback"}));
      if (m["clarify"].get(v) == simdjson::SUCCESS) { MDG_ASSIGN_OR_RETURN(kb.messages.clarify, shown_text(v, "messages.clarify")); }
      if (m["handoff"].get(v) == simdjson::SUCCESS) { MDG_ASSIGN_OR_RETURN(kb.messages.handoff, shown_text(v, "messages.handoff")); }
      if (m["fallback"].get(v) == simdjson::SUCCESS) { MDG_ASSIGN_OR_RETURN(kb.messages.fallback, shown_text(v, "messages.fallback")); }
    }
    return Status::ok();
  }

 private:
  std::string source_;
};

}  // namespace

Result<KnowledgeBase> parse_knowledge_json(std::string_view json, std::string_view source_name) {
  std::string source(source_name.empty() ? "<string>" : source_name);
  // A byte order mark, which some editors on Windows write (RFC 8259 lets a parser ignore it).
  // Byte offsets in messages are the file's, the mark included.
  std::size_t skipped = 0;
  if (json.substr(0, 3) == "\xEF\xBB\xBF") {
    json.remove_prefix(3);
    skipped = 3;
  }
  if (std::size_t bad = find_invalid_utf8(json); bad != std::string_view::npos) {
    return invalid_argument(source + ":" + std::to_string(detail::line_of_offset(json, bad)) +
                            ": invalid UTF-8 at byte " + std::to_string(bad + skipped) +
                            " (save the file as UTF-8)");
  }
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  element root;
  if (auto err = parser.parse(padded).get(root); err != simdjson::SUCCESS) {
    auto loc = detail::locate_json_error(json);
    if (loc.found) {
      return invalid_argument(source + ":" + std::to_string(loc.line) + ":" + std::to_string(loc.column) +
                              ": malformed JSON: " + loc.what);
    }
    return invalid_argument(source + ": malformed JSON: " + simdjson::error_message(err));
  }
  if (auto twice = repeated_key(root, ""); !twice.empty()) {
    return invalid_argument(source + ": " + twice + " appears twice in one object; a JSON object takes each key once "
                                                   "(merge the two, or move one elsewhere)");
  }
  KnowledgeBase kb;
  kb.source = source;
  Reader reader(source);
  MDG_RETURN_IF_ERROR(reader.read_root(root, kb));
  return kb;
}

}  // namespace v1
}  // namespace madoguchi::bot
