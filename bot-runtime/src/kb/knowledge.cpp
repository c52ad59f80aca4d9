// The CSV/TSV sheet format, file loading and validation of knowledge bases.
#include <madoguchi/bot/knowledge.hpp>
#include <madoguchi/bot/text.hpp>

#include <unicode/regex.h>
#include <unicode/unistr.h>

#include "kb/json_locate.hpp"
#include "text/blank.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace madoguchi::bot {
inline namespace v1 {

const std::string* LocalizedText::get(std::string_view locale, std::string_view fallback) const {
  if (by_locale.empty()) return nullptr;
  if (auto it = by_locale.find(locale); it != by_locale.end()) return &it->second;
  if (!fallback.empty()) {
    if (auto it = by_locale.find(fallback); it != by_locale.end()) return &it->second;
  }
  if (auto it = by_locale.find(std::string_view()); it != by_locale.end()) return &it->second;
  return &by_locale.begin()->second;
}

const Entry* KnowledgeBase::find(std::string_view id) const {
  for (const auto& e : entries) {
    if (e.id == id) return &e;
  }
  return nullptr;
}

namespace {

// One RFC 4180 record: fields split by `delim`, "quoted" fields may hold delimiters,
// doubled quotes and line breaks. `line` is advanced past the record's physical lines.
// Spaces and tabs around a quoted field are allowed (hand-written files have them); any
// other text beside its quotes is an error, since where the field ends is then a guess.
Result<std::vector<std::string>> read_record(std::string_view text, std::size_t& pos, char delim,
                                             std::size_t& line, const std::string& source) {
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;
  bool closed = false;  // the field's closing quote has been read
  std::size_t start_line = line;
  auto blank = [](std::string_view s) { return s.find_first_not_of(" \t") == std::string_view::npos; };
  auto error = [&](const std::string& what) {
    return invalid_argument(source + ":" + std::to_string(line) + ": field " + std::to_string(fields.size() + 1) +
                            ": " + what);
  };
  while (pos < text.size()) {
    char c = text[pos];
    if (quoted) {
      if (c == '"') {
        if (pos + 1 < text.size() && text[pos + 1] == '"') {
          field += '"';
          pos += 2;
          continue;
        }
        quoted = false;
        closed = true;
        ++pos;
        continue;
      }
      if (c == '\r' && pos + 1 < text.size() && text[pos + 1] == '\n') {
        ++pos;  // a line break in a field is "\n", whatever the file's line ends
        continue;
      }
      if (c == '\n') ++line;
      field += c;
      ++pos;
      continue;
    }
    if (c == '"') {
      if (closed) {
        return error("a quote after the field's closing quote (double a quote inside a quoted field: \"say \"\"hi\"\"\")");
      }
      if (!blank(field)) {
        return error("a quote inside an unquoted field (quote the whole field and double the quote: \"say \"\"hi\"\"\")");
      }
      field.clear();  // the spaces before the opening quote
      quoted = true;
      ++pos;
      continue;
    }
    if (c == delim) {
      fields.push_back(std::move(field));
      field.clear();
      closed = false;
      ++pos;
      continue;
    }
    if (c == '\r' && pos + 1 < text.size() && text[pos + 1] == '\n') {
      ++pos;
      continue;
    }
    if (c == '\n') {
      ++pos;
      ++line;
      fields.push_back(std::move(field));
      return fields;
    }
    if (closed && c != ' ' && c != '\t') {
      return error("text after the field's closing quote (put the whole field inside the quotes)");
    }
    if (!closed) field += c;
    ++pos;
  }
  if (quoted) {
    return invalid_argument(source + ":" + std::to_string(start_line) +
                            ": a quoted field is never closed (missing \")");
  }
  fields.push_back(std::move(field));
  ++line;
  return fields;
}

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace

Result<KnowledgeBase> parse_knowledge_sheet(std::string_view text, std::string_view source_name,
                                            char delimiter) {
  std::string source(source_name.empty() ? "<string>" : source_name);
  if (std::size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    return invalid_argument(source + ":" + std::to_string(detail::line_of_offset(text, bad)) +
                            ": invalid UTF-8 at byte " + std::to_string(bad) + " (export the sheet as UTF-8)");
  }
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // spreadsheet BOM
  std::size_t pos = 0;
  std::size_t line = 1;
  MDG_ASSIGN_OR_RETURN(auto header, read_record(text, pos, delimiter, line, source));
  int col_id = -1, col_question = -1, col_tags = -1, col_follow = -1;
  std::vector<std::pair<int, std::string>> answer_cols;  // column -> locale
  std::set<std::string> seen_columns;
  for (std::size_t c = 0; c < header.size(); ++c) {
    std::string name = trim(header[c]);
    int ci = static_cast<int>(c);
    if (!name.empty() && !seen_columns.insert(name).second) {
      return invalid_argument(source + ":1: the column \"" + name + "\" appears twice in the header; keep one" +
                              (name == "question" ? " (a second question goes on a row of its own, with the same id)" : ""));
    }
    if (name == "id") col_id = ci;
    else if (name == "question") col_question = ci;
    else if (name == "tags") col_tags = ci;
    else if (name == "follow_ups") col_follow = ci;
    else if (name == "answer") answer_cols.emplace_back(ci, "");
    else if (name.rfind("answer_", 0) == 0 && name.size() > 7) answer_cols.emplace_back(ci, name.substr(7));
    else if (!name.empty()) {
      return invalid_argument(source + ":1: unknown column \"" + name +
                              "\" (known: id, question, answer, answer_<locale>, tags, follow_ups)");
    }
  }
  if (col_id < 0 || col_question < 0 || answer_cols.empty()) {
    return invalid_argument(source + ":1: the header needs the columns id, question and an answer column "
                            "(answer_ja, answer_en or answer), e.g. \"id,question,answer_ja,answer_en,tags\"");
  }

  KnowledgeBase kb;
  kb.source = source;
  std::unordered_map<std::string, std::size_t> by_id;
  // Where each entry's answer in each locale was set: (entry index, locale) -> line.
  std::map<std::pair<std::size_t, std::string>, std::size_t> answer_line;
  std::string last_id;
  while (pos < text.size()) {
    std::size_t row_line = line;
    MDG_ASSIGN_OR_RETURN(auto row, read_record(text, pos, delimiter, line, source));
    bool blank = true;
    for (const auto& f : row) blank = blank && trim(f).empty();
    if (blank) continue;
    if (row.size() > header.size()) {
      return invalid_argument(source + ":" + std::to_string(row_line) + ": " + std::to_string(row.size()) +
                              " fields but the header has " + std::to_string(header.size()) +
                              " (quote fields that contain the delimiter)");
    }
    row.resize(header.size());
    std::string id = trim(row[static_cast<std::size_t>(col_id)]);
    if (id.empty()) id = last_id;  // a blank id continues the entry above
    if (id.empty()) {
      return invalid_argument(source + ":" + std::to_string(row_line) + ": the row has no id");
    }
    last_id = id;
    auto [it, inserted] = by_id.emplace(id, kb.entries.size());
    if (inserted) {
      Entry e;
      e.id = id;
      e.source = source + ":" + std::to_string(row_line);
      kb.entries.push_back(std::move(e));
    }
    Entry& entry = kb.entries[it->second];
    std::string q = trim(row[static_cast<std::size_t>(col_question)]);
    if (!q.empty()) entry.questions.push_back(std::move(q));
    for (const auto& [col, locale] : answer_cols) {
      std::string a = trim(row[static_cast<std::size_t>(col)]);
      if (a.empty()) continue;
      auto [ait, fresh] = entry.answer.by_locale.emplace(locale, a);
      if (fresh) answer_line[{it->second, locale}] = row_line;
      if (!fresh && ait->second != a) {
        return invalid_argument(source + ":" + std::to_string(row_line) + ": entry '" + id +
                                "' has a different answer" + (locale.empty() ? "" : "_" + locale) +
                                " than on an earlier row (" + source + ":" +
                                std::to_string(answer_line[{it->second, locale}]) + "); keep one answer per entry");
      }
    }
    auto split_list = [](std::string_view s, std::vector<std::string>& out) {
      std::size_t start = 0;
      while (start <= s.size()) {
        std::size_t end = s.find(';', start);
        if (end == std::string_view::npos) end = s.size();
        std::string item = trim(s.substr(start, end - start));
        if (!item.empty() && std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
        start = end + 1;
      }
    };
    if (col_tags >= 0) split_list(row[static_cast<std::size_t>(col_tags)], entry.tags);
    if (col_follow >= 0) split_list(row[static_cast<std::size_t>(col_follow)], entry.follow_ups);
  }
  if (kb.entries.empty()) {
    return invalid_argument(source + ": the sheet has a header but no entries");
  }
  return kb;
}

namespace {
constexpr std::size_t kMaxKnowledgeBytes = std::size_t{256} << 20;  // "256 MiB" in the messages
}  // namespace

Result<KnowledgeBase> parse_knowledge(std::string_view text, KnowledgeFormat format, std::string_view source_name) {
  if (text.size() > kMaxKnowledgeBytes) {
    std::string source(source_name.empty() ? "<string>" : source_name);
    return resource_exhausted(source + ": the knowledge base is " + std::to_string(text.size()) +
                              " bytes; at most 256 MiB are read");
  }
  switch (format) {
    case KnowledgeFormat::kJson: return parse_knowledge_json(text, source_name);
    case KnowledgeFormat::kCsv: return parse_knowledge_sheet(text, source_name, ',');
    case KnowledgeFormat::kTsv: return parse_knowledge_sheet(text, source_name, '\t');
  }
  return invalid_argument("unknown knowledge base format " + std::to_string(static_cast<int>(format)));
}

Result<KnowledgeBase> load_knowledge_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
    return invalid_argument(path + ": not a file (a folder?); give the knowledge base's .json, .csv or .tsv file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open the knowledge base file (check the path)");
  in.seekg(0, std::ios::end);
  const auto end = in.tellg();
  if (end < 0) return unavailable(path + ": cannot tell the file's size (read error)");
  auto size = static_cast<std::size_t>(end);
  if (size > kMaxKnowledgeBytes) {
    return resource_exhausted(path + ": the file is " + std::to_string(size >> 20) +
                              " MiB; knowledge bases over 256 MiB are refused");
  }
  in.seekg(0);
  std::string text(size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  if (!in) return unavailable(path + ": read error");
  auto ends_with = [&](std::string_view suffix) {
    return path.size() >= suffix.size() &&
           std::equal(suffix.rbegin(), suffix.rend(), path.rbegin(),
                      [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); });
  };
  if (ends_with(".csv")) return parse_knowledge(text, KnowledgeFormat::kCsv, path);
  if (ends_with(".tsv")) return parse_knowledge(text, KnowledgeFormat::kTsv, path);
  if (ends_with(".json")) return parse_knowledge(text, KnowledgeFormat::kJson, path);
  return invalid_argument(path + ": unknown knowledge base format; use .json, .csv or .tsv");
}

Status apply_setting(KnowledgeBase& kb, std::string_view key, std::string_view value) {
  std::string v(value);
  auto num = [&](double& out) -> Status {
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0') return invalid_argument("setting " + std::string(key) + ": '" + v + "' is not a number");
    // strtod reads "nan" and "inf" too; no clamp can bring NaN into range.
    if (!std::isfinite(d)) return invalid_argument("setting " + std::string(key) + ": '" + v + "' is not a finite number");
    out = d;
    return Status::ok();
  };
  auto integer = [&](int& out) -> Status {
    double d = 0;
    MDG_RETURN_IF_ERROR(num(d));
    if (d != std::floor(d) || d < -1e6 || d > 1e6) {
      return invalid_argument("setting " + std::string(key) + ": '" + v + "' is not a whole number in range");
    }
    out = static_cast<int>(d);
    return Status::ok();
  };
  auto boolean = [&](bool& out) -> Status {
    if (v == "true" || v == "1" || v == "on") out = true;
    else if (v == "false" || v == "0" || v == "off") out = false;
    else return invalid_argument("setting " + std::string(key) + ": '" + v + "' is not true/false");
    return Status::ok();
  };
  auto& r = kb.ranking;
  auto& p = kb.policy;
  if (key == "ranking.k1") return num(r.k1);
  if (key == "ranking.b") return num(r.b);
  if (key == "ranking.question_weight") return num(r.question_weight);
  if (key == "ranking.answer_weight") return num(r.answer_weight);
  if (key == "ranking.classifier") return boolean(r.classifier);
  if (key == "ranking.bm25_weight") return num(r.bm25_weight);
  if (key == "ranking.epochs") return integer(r.epochs);
  if (key == "ranking.average") return boolean(r.average);
  if (key == "ranking.l2") return num(r.l2);
  if (key == "ranking.learning_rate") return num(r.learning_rate);
  if (key == "ranking.shortlist") return integer(r.shortlist);
  if (key == "ranking.null_logit") return num(r.null_logit);
  if (key == "policy.answer_threshold") return num(p.answer_threshold);
  if (key == "policy.clarify_threshold") return num(p.clarify_threshold);
  if (key == "policy.clarify_margin") return num(p.clarify_margin);
  if (key == "policy.max_clarify_options") return integer(p.max_clarify_options);
  if (key == "policy.max_failed_turns") return integer(p.max_failed_turns);
  if (key == "policy.severity_handoff") return num(p.severity_handoff);
  if (key == "policy.handoff_out_of_scope") return boolean(p.handoff_out_of_scope);
  return invalid_argument("unknown setting '" + std::string(key) +
                          "' (ranking.k1, ranking.b, ranking.question_weight, ranking.answer_weight, "
                          "ranking.classifier, ranking.bm25_weight, ranking.epochs, ranking.average, ranking.l2, ranking.learning_rate, "
                          "ranking.shortlist, ranking.null_logit, policy.answer_threshold, "
                          "policy.clarify_threshold, policy.clarify_margin, policy.max_clarify_options, "
                          "policy.max_failed_turns, policy.severity_handoff, policy.handoff_out_of_scope)");
}

namespace {

// Where a regular expression repeats a group that itself holds a repetition ("(a+)+",
// "(\w+\s?)*"): the byte offset of the outer quantifier, or npos. Such a pattern can
// backtrack for a time exponential in the length of some texts. Atomic groups "(?>...)" and
// possessive quantifiers ("a++") do not backtrack and are not counted. A heuristic over the
// pattern's text: it does not see overlapping alternatives such as "(a|aa)*".
std::size_t nested_repetition(std::string_view p) {
  std::vector<std::pair<bool, bool>> groups{{false, false}};  // (holds a repetition, atomic)
  // The quantifier at p[i], if any: its length (0: none) and whether it repeats without
  // bound or more than once; a trailing '+' makes it possessive.
  auto quantifier = [&](std::size_t i, bool& repeats, bool& possessive) -> std::size_t {
    repeats = possessive = false;
    if (i >= p.size()) return 0;
    std::size_t n = 0;
    if (p[i] == '*' || p[i] == '+') {
      repeats = true;
      n = 1;
    } else if (p[i] == '?') {
      n = 1;
    } else if (p[i] == '{') {
      std::size_t close = p.find('}', i);
      if (close == std::string_view::npos) return 0;
      // {n}, {n,} or {n,m}: the most it allows ("" for no bound).
      const std::string_view body = p.substr(i + 1, close - i - 1);
      const std::size_t comma = body.find(',');
      const std::string_view most = comma == std::string_view::npos ? body : body.substr(comma + 1);
      repeats = most.empty() || (most != "0" && most != "1");
      n = close - i + 1;
    }
    if (n && i + n < p.size() && (p[i + n] == '+' || p[i + n] == '?')) {
      possessive = p[i + n] == '+';
      ++n;
    }
    return n;
  };
  for (std::size_t i = 0; i < p.size();) {
    const char c = p[i];
    if (c == '\\') {
      const char e = i + 1 < p.size() ? p[i + 1] : '\0';
      if (e == 'Q') {  // \Q...\E: literal text
        std::size_t end = p.find("\\E", i + 2);
        i = end == std::string_view::npos ? p.size() : end + 2;
      } else if ((e == 'p' || e == 'P' || e == 'x' || e == 'N') && i + 2 < p.size() && p[i + 2] == '{') {
        // \p{L}, \x{41}, \N{...}: one atom, whose braces are no quantifier
        std::size_t close = p.find('}', i + 3);
        i = close == std::string_view::npos ? p.size() : close + 1;
      } else {
        i += 2;
      }
    } else if (c == '[') {  // a set, maybe with sets inside: one atom
      int depth = 0;
      for (; i < p.size(); ++i) {
        if (p[i] == '\\') {
          ++i;
        } else if (p[i] == '[') {
          ++depth;
        } else if (p[i] == ']' && --depth == 0) {
          break;
        }
      }
      ++i;
    } else if (c == '(') {
      groups.push_back({false, p.substr(i, 3) == "(?>"});
      ++i;
      continue;
    } else if (c == ')' && groups.size() > 1) {
      auto [inner, atomic] = groups.back();
      groups.pop_back();
      bool repeats = false, possessive = false;
      const std::size_t q = quantifier(i + 1, repeats, possessive);
      if (inner && !atomic && repeats && !possessive) return i + 1;
      groups.back().first = groups.back().first || (inner && !atomic) || (repeats && !possessive);
      i += 1 + q;
      continue;
    } else {
      ++i;
    }
    // After an atom (a character, an escape, a set): its quantifier, if any.
    bool repeats = false, possessive = false;
    const std::size_t q = quantifier(i, repeats, possessive);
    if (repeats && !possessive) groups.back().first = true;
    i += q;
  }
  return std::string_view::npos;
}

}  // namespace

std::vector<Diagnostic> validate_knowledge(const KnowledgeBase& kb) {
  std::vector<Diagnostic> out;
  auto error = [&](std::string where, std::string message) {
    out.push_back({Diagnostic::Severity::kError, std::move(where), std::move(message)});
  };
  for (std::size_t g = 0; g < kb.synonyms.size(); ++g) {
    for (const auto& word : kb.synonyms[g]) {
      if (detail::blank_text(word)) {
        error(kb.source + ": synonyms[" + std::to_string(g) + "]",
              "an empty word: the group's other words would be replaced by it, that is deleted, in every message; remove it");
      }
    }
  }
  std::unordered_set<std::string> ids;
  for (const auto& e : kb.entries) {
    if (!ids.insert(e.id).second) {
      error(e.source, "duplicate id '" + e.id + "' (every entry needs its own id)");
    }
  }
  for (const auto& e : kb.entries) {
    if (e.questions.empty()) error(e.source, "entry '" + e.id + "' has no questions");
    if (e.answer.empty()) error(e.source, "entry '" + e.id + "' has no answer");
    for (const auto& [locale, text] : e.answer.by_locale) {
      if (detail::blank_text(text)) {
        error(e.source, "entry '" + e.id + "' has an empty answer" + (locale.empty() ? "" : " in '" + locale + "'"));
      }
    }
    for (std::size_t i = 0; i < e.questions.size(); ++i) {
      const auto& q = e.questions[i];
      if (detail::blank_text(q)) error(e.source, "question " + std::to_string(i + 1) + " is empty");
    }
    for (const auto& f : e.follow_ups) {
      if (!ids.contains(f)) error(e.source, "follow-up '" + f + "' is not an entry id");
    }
  }
  std::unordered_set<std::string> rule_ids;
  for (const auto& r : kb.rules) {
    if (r.id.empty()) error(r.source, "the rule's id is empty");
    if (!rule_ids.insert(r.id).second) error(r.source, "duplicate rule id '" + r.id + "'");
    const auto& w = r.when;
    if (w.any.empty() && w.all.empty() && w.regex.empty() && w.previous_answer.empty() &&
        w.slots.empty() && !w.turn_min && !w.turn_max && w.locale.empty()) {
      error(r.source, "\"when\" has no condition that selects messages (add any, all, regex, locale, "
                      "previous_answer, slots or turn)");
    }
    if (!w.regex.empty()) {
      UErrorCode err = U_ZERO_ERROR;
      UParseError perr{};
      icu::UnicodeString pattern = icu::UnicodeString::fromUTF8(w.regex);
      std::unique_ptr<icu::RegexPattern> p(icu::RegexPattern::compile(pattern, UREGEX_CASE_INSENSITIVE, perr, err));
      if (U_FAILURE(err)) {
        error(r.source, "regex \"" + w.regex + "\" does not compile: " + u_errorName(err) + " at offset " +
                            std::to_string(perr.offset) + " (ICU regular expression syntax)");
      } else if (std::size_t at = nested_repetition(w.regex); at != std::string_view::npos) {
        out.push_back({Diagnostic::Severity::kWarning, r.source,
                       "regex \"" + w.regex + "\" repeats a repetition (at offset " + std::to_string(at) +
                           "): some messages make it backtrack for an exponential time, and its search "
                           "then gives up and does not match; write it without the inner repetition "
                           "(\"(a+)+\" is \"a+\"), or make the group atomic, \"(?>...)\""});
      }
    }
    if (!w.previous_answer.empty() && !ids.contains(w.previous_answer)) {
      error(r.source, "previous_answer '" + w.previous_answer + "' is not an entry id");
    }
    if (w.turn_min && w.turn_max && *w.turn_min > *w.turn_max) {
      error(r.source, "turn.min is greater than turn.max: the rule can never fire");
    }
    for (const auto& k : w.all) {
      if (std::find(w.none.begin(), w.none.end(), k) != w.none.end()) {
        error(r.source, "keyword '" + k + "' is in both \"all\" and \"none\": the rule can never fire");
      }
    }
    const auto& t = r.then;
    if (t.answer.empty() && t.reply.empty() && t.ask.empty() && !t.handoff && t.set_slots.empty()) {
      error(r.source, "\"then\" does nothing (add answer, reply, ask, set_slots or handoff)");
    }
    if (!t.answer.empty() && !ids.contains(t.answer)) {
      error(r.source, "answer '" + t.answer + "' is not an entry id");
    }
    if (!t.ask.empty() && t.options.empty()) error(r.source, "\"ask\" has no options");
    for (const auto& o : t.options) {
      if (!ids.contains(o.answer)) error(r.source, "ask option answer '" + o.answer + "' is not an entry id");
    }
  }
  return out;
}

}  // namespace v1
}  // namespace madoguchi::bot
