// madoguchi-bot: the bot designer's command line.
//
//   madoguchi-bot ask  --kb KB [--json] ["text"]     answer and explain (a chat REPL without text)
//   madoguchi-bot eval --kb KB --questions SET.jsonl [--json] [--misses N]
//   madoguchi-bot lint --kb KB
//
// Common options: --mecab-dicdir DIR, --set section.name=value (e.g. policy.answer_threshold=0.5).
#include "eval_set.hpp"

#include <madoguchi/bot/bot.hpp>
#include <madoguchi/bot/knowledge.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using namespace madoguchi;
using namespace madoguchi::bot;

constexpr const char* kUsage =
    "usage:\n"
    "  madoguchi-bot ask  --kb KB [--json] [TEXT]        answer TEXT and explain; without TEXT, chat\n"
    "  madoguchi-bot eval --kb KB --questions SET.jsonl [--json] [--misses N]\n"
    "  madoguchi-bot lint --kb KB\n"
    "options:\n"
    "  --kb FILE            knowledge base (.json, .csv or .tsv)\n"
    "  --mecab-dicdir DIR   MeCab dictionary (default: mecab-ipadic-utf8)\n"
    "  --set KEY=VALUE      override a setting, e.g. --set policy.answer_threshold=0.5\n"
    "  --json               machine-readable output\n"
    "  --misses N           eval: print up to N wrong answers\n";

struct Args {
  std::string command;
  std::string kb;
  std::string questions;
  std::string dicdir;
  std::vector<std::pair<std::string, std::string>> sets;
  std::vector<std::string> text;
  bool json = false;
  int misses = 0;
};

int usage_error(const std::string& message) {
  std::fprintf(stderr, "madoguchi-bot: %s\n\n%s", message.c_str(), kUsage);
  return 2;
}

Result<std::shared_ptr<const Bot>> open_bot(const Args& args) {
  MDG_ASSIGN_OR_RETURN(auto kb, load_knowledge_file(args.kb));
  for (const auto& [k, v] : args.sets) MDG_RETURN_IF_ERROR(apply_setting(kb, k, v));
  BotOptions options;
  options.text.mecab_dicdir = args.dicdir;
  // The bot's warnings (a regex that gave up on a message, a pattern lint would flag) go to
  // standard error, beside the answers on standard output.
  options.logger.min_level = madoguchi::LogLevel::kWarning;
  options.logger.sink = [](madoguchi::LogLevel level, std::string_view message) {
    const auto name = madoguchi::to_string(level);
    std::fprintf(stderr, "madoguchi-bot: %.*s: %.*s\n", static_cast<int>(name.size()), name.data(),
                 static_cast<int>(message.size()), message.data());
  };
  return Bot::create(std::move(kb), std::move(options));
}

void print_reply(const Reply& r) {
  std::printf("%s\n", r.text.c_str());
  for (std::size_t i = 0; i < r.options.size(); ++i) {
    std::printf("  %zu) %s\n", i + 1, r.options[i].label.c_str());
  }
  // An answer's follow-ups, as a visitor's app offers them (not numbered: typing a number
  // here picks a clarification option only).
  std::string related;
  for (const auto& s : r.suggestions) related += (related.empty() ? "" : " / ") + s.label;
  if (!related.empty()) std::printf("  related: %s\n", related.c_str());
}

int cmd_ask(const Args& args) {
  auto bot = open_bot(args);
  if (!bot) {
    std::fprintf(stderr, "madoguchi-bot: %s\n", bot.status().to_string().c_str());
    return 1;
  }
  Conversation conv;
  auto one = [&](const std::string& text) -> bool {
    auto reply = (*bot)->respond(conv, text);
    if (!reply) {
      std::fprintf(stderr, "madoguchi-bot: %s\n", reply.status().to_string().c_str());
      return false;
    }
    if (args.json) {
      std::printf("%s\n", reply->to_json().c_str());
    } else {
      print_reply(*reply);
      std::printf("\n");
      std::fputs(reply->explain().c_str(), stdout);
      if (reply->handoff) std::printf("hand-off:   %s\n", reply->handoff->to_json().c_str());
    }
    return true;
  };
  if (!args.text.empty()) {
    std::string text;
    for (const auto& t : args.text) text += (text.empty() ? "" : " ") + t;
    return one(text) ? 0 : 1;
  }
  bool tty = isatty(0);
  if (tty) {
    const auto& kb = (*bot)->knowledge();
    std::printf("madoguchi-bot: %s (%zu entries). Type a question; Ctrl-D to quit.\n", kb.name.c_str(),
                kb.entries.size());
  }
  std::string line;
  while (true) {
    if (tty) {
      std::printf("> ");
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // a file with CRLF line ends
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    one(line);
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size()))) ;
  idx = std::min(v.size() - 1, idx == 0 ? 0 : idx - 1);
  return v[idx];
}

int cmd_eval(const Args& args) {
  if (args.questions.empty()) return usage_error("eval needs --questions SET.jsonl");
  auto set = cli::read_eval_set(args.questions);
  if (!set) {
    std::fprintf(stderr, "madoguchi-bot: %s\n", set.status().to_string().c_str());
    return 1;
  }
  auto bot = open_bot(args);
  if (!bot) {
    std::fprintf(stderr, "madoguchi-bot: %s\n", bot.status().to_string().c_str());
    return 1;
  }
  for (const auto& q : *set) {
    if (q.expect && !(*bot)->knowledge().find(*q.expect)) {
      std::fprintf(stderr, "madoguchi-bot: %s:%zu: expected entry '%s' is not in the knowledge base\n",
                   args.questions.c_str(), q.line, q.expect->c_str());
      return 1;
    }
  }
  std::size_t in_scope = 0, oos = 0, correct = 0, oos_not_answered = 0, not_answered = 0, handoffs = 0;
  std::size_t clarified = 0;
  double rr_sum = 0;
  std::vector<double> latency_us;
  latency_us.reserve(set->size());
  int misses_left = args.misses;
  for (const auto& q : *set) {
    Conversation conv;  // every question on its own
    auto t0 = std::chrono::steady_clock::now();
    auto reply = (*bot)->respond(conv, q.text);
    auto t1 = std::chrono::steady_clock::now();
    latency_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    if (!reply) {
      std::fprintf(stderr, "madoguchi-bot: %s:%zu: %s\n", args.questions.c_str(), q.line,
                   reply.status().to_string().c_str());
      return 1;
    }
    bool answered = reply->decision == Decision::kAnswer;
    if (!answered) ++not_answered;
    if (reply->decision == Decision::kHandoff) ++handoffs;
    if (reply->decision == Decision::kClarify) ++clarified;
    bool ok;
    if (q.expect) {
      ++in_scope;
      ok = answered && reply->entry_id == *q.expect;
      if (ok) ++correct;
      for (std::size_t i = 0; i < reply->candidates.size() && i < 5; ++i) {
        if (reply->candidates[i].entry_id == *q.expect) {
          rr_sum += 1.0 / static_cast<double>(i + 1);
          break;
        }
      }
    } else {
      ++oos;
      ok = !answered;
      if (ok) ++oos_not_answered;
    }
    if (!ok && misses_left > 0) {
      --misses_left;
      std::printf("miss  %s:%zu  \"%s\"  expected %s, got %s %s (%s)", args.questions.c_str(), q.line,
                  q.text.c_str(), q.expect ? q.expect->c_str() : "(out of scope)",
                  std::string(to_string(reply->decision)).c_str(), reply->entry_id.c_str(), reply->reason.c_str());
      if (!reply->candidates.empty()) {
        std::printf("  top: %s %.3f", reply->candidates[0].entry_id.c_str(), reply->candidates[0].confidence);
      }
      std::printf("\n");
    }
  }
  auto ratio = [](std::size_t a, std::size_t b) { return b ? static_cast<double>(a) / static_cast<double>(b) : 0.0; };
  double top1 = ratio(correct, in_scope);
  double mrr5 = in_scope ? rr_sum / static_cast<double>(in_scope) : 0.0;
  double oos_recall = ratio(oos_not_answered, oos);
  double oos_precision = ratio(oos_not_answered, not_answered);
  double handoff_rate = ratio(handoffs, set->size());
  double p50 = percentile(latency_us, 0.50), p99 = percentile(latency_us, 0.99);
  auto st = (*bot)->stats();
  std::printf("knowledge base   %s: %zu entries, %zu questions, built in %.0f ms, ~%.1f MiB\n",
              (*bot)->knowledge().name.c_str(), st.entries, st.questions, st.build_ms,
              static_cast<double>(st.memory_bytes) / (1024.0 * 1024.0));
  std::printf("questions        %zu (%zu in scope, %zu out of scope)\n", set->size(), in_scope, oos);
  std::printf("top-1 accuracy   %.4f  (in-scope questions answered with the expected entry)\n", top1);
  std::printf("MRR@5            %.4f\n", mrr5);
  std::printf("out-of-scope     recall %.4f  precision %.4f\n", oos_recall, oos_precision);
  std::printf("hand-off rate    %.4f   clarify rate %.4f\n", handoff_rate, ratio(clarified, set->size()));
  std::printf("latency          p50 %.1f us  p99 %.1f us\n", p50, p99);
  if (args.json) {
    std::printf("{\"top1\":%.6f,\"mrr5\":%.6f,\"oos_precision\":%.6f,\"oos_recall\":%.6f,\"handoff_rate\":%.6f,"
                "\"p50_us\":%.3f,\"p99_us\":%.3f,\"questions\":%zu}\n",
                top1, mrr5, oos_precision, oos_recall, handoff_rate, p50, p99, set->size());
  }
  return 0;
}

int cmd_lint(const Args& args) {
  auto kb = load_knowledge_file(args.kb);
  if (!kb) {
    std::fprintf(stderr, "madoguchi-bot: %s\n", kb.status().to_string().c_str());
    return 1;
  }
  for (const auto& [k, v] : args.sets) {
    if (auto st = apply_setting(*kb, k, v); !st) {
      std::fprintf(stderr, "madoguchi-bot: %s\n", st.to_string().c_str());
      return 1;
    }
  }
  std::vector<Diagnostic> diags = validate_knowledge(*kb);
  std::size_t errors = 0;
  for (const auto& d : diags) errors += d.severity == Diagnostic::Severity::kError;
  if (errors == 0) {
    BotOptions options;
    options.text.mecab_dicdir = args.dicdir;
    auto bot = Bot::create(*kb, options);
    if (!bot) {
      std::fprintf(stderr, "madoguchi-bot: %s\n", bot.status().to_string().c_str());
      return 1;
    }
    const auto& text = (*bot)->text();
    // Duplicate or conflicting questions (same text after normalization).
    std::map<std::string, std::vector<std::string>> seen;
    std::set<std::string> locales;
    for (const auto& e : kb->entries) {
      for (const auto& [loc, a] : e.answer.by_locale) {
        if (!loc.empty()) locales.insert(loc);
      }
    }
    // Locales the bot does not tell messages apart by: a visitor's message is never taken as
    // one of them, so their texts show only as a fallback, and rules on them never fire.
    auto odd_locale = [&](const std::string& loc, const std::string& where) {
      if (loc.empty() || loc == "ja" || loc == "en") return;
      std::string lower;
      for (char c : loc) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const std::string hint = lower.rfind("ja", 0) == 0 ? "; write 'ja'" : lower.rfind("en", 0) == 0 ? "; write 'en'" : "";
      diags.push_back({Diagnostic::Severity::kWarning, where,
                       "locale '" + loc + "' is not one the bot detects in messages (ja, en): texts in it show only "
                       "as a fallback, and rules on it never fire" + hint});
    };
    // A group of one word replaces nothing: most often a flat list, ["返金", "払い戻し"],
    // where a list of groups, [["返金", "払い戻し"]], was meant.
    for (std::size_t g = 0; g < kb->synonyms.size(); ++g) {
      if (kb->synonyms[g].size() == 1) {
        diags.push_back({Diagnostic::Severity::kWarning, kb->source + ": synonyms[" + std::to_string(g) + "]",
                         "a group of one word (\"" + kb->synonyms[g][0] +
                             "\") replaces nothing; a group is a list of words: [[\"返金\", \"払い戻し\"]]"});
      }
    }
    for (const auto& loc : locales) odd_locale(loc, kb->source);
    odd_locale(kb->default_locale, kb->source + ": default_locale");
    for (const auto& r : kb->rules) odd_locale(r.when.locale, r.source);
    for (const auto& e : kb->entries) {
      for (const auto& q : e.questions) {
        // Same words after normalization, synonyms and dropping punctuation: the same question.
        auto an = text.analyze(q);
        if (!an) continue;
        std::string key;
        for (const auto& t : an->tokens) key += (key.empty() ? "" : " ") + t.text;
        if (!key.empty()) {
          seen[key].push_back(e.id);
        } else {
          diags.push_back({Diagnostic::Severity::kWarning, e.source,
                           "question \"" + q + "\" has no words the bot can match (only punctuation, symbols or "
                           "spaces): no message can find the entry by it; write it in words"});
        }
      }
      for (const auto& loc : locales) {
        if (!e.answer.by_locale.contains(loc) && !e.answer.by_locale.contains("")) {
          diags.push_back({Diagnostic::Severity::kWarning, e.source, "no answer in locale '" + loc + "'"});
        }
      }
      std::set<std::string> q_locales;
      for (const auto& q : e.questions) q_locales.insert(std::string(TextPipeline::detect_locale(q)));
      for (const auto& loc : locales) {
        if (!q_locales.contains(loc)) {
          diags.push_back({Diagnostic::Severity::kWarning, e.source,
                           "no question in locale '" + loc + "': visitors asking in it will find it only by luck"});
        }
      }
    }
    for (const auto& [q, ids] : seen) {
      std::set<std::string> distinct(ids.begin(), ids.end());
      if (distinct.size() > 1) {
        std::string list;
        for (const auto& id : distinct) list += (list.empty() ? "" : ", ") + id;
        diags.push_back({Diagnostic::Severity::kWarning, kb->source,
                         "question \"" + q + "\" is in several entries (" + list + "): they conflict"});
      } else if (ids.size() > 1) {
        diags.push_back({Diagnostic::Severity::kWarning, kb->source,
                         "question \"" + q + "\" appears " + std::to_string(ids.size()) + " times in entry '" +
                             ids.front() + "'"});
      }
    }
    // Rules that can never fire: shadowed by an earlier rule with the same condition whose
    // action ends the turn. (Keywords that normalize to nothing fail Bot::create above.)
    for (std::size_t i = 0; i < kb->rules.size(); ++i) {
      const auto& r = kb->rules[i];
      if (!r.enabled) {
        diags.push_back({Diagnostic::Severity::kWarning, r.source, "rule is disabled"});
      }
      for (std::size_t j = 0; j < kb->rules.size(); ++j) {
        const auto& o = kb->rules[j];
        if (j == i || !o.enabled || o.priority < r.priority || (o.priority == r.priority && j > i)) continue;
        bool same = o.when.any == r.when.any && o.when.all == r.when.all && o.when.none == r.when.none &&
                    o.when.regex == r.when.regex && o.when.locale == r.when.locale &&
                    o.when.previous_answer == r.when.previous_answer && o.when.slots == r.when.slots &&
                    o.when.turn_min == r.when.turn_min && o.when.turn_max == r.when.turn_max &&
                    (o.then.handoff || !o.then.answer.empty() || !o.then.reply.empty() || !o.then.ask.empty());
        if (same) {
          diags.push_back({Diagnostic::Severity::kWarning, r.source,
                           "can never fire: rule '" + o.id + "' has the same condition and is checked first"});
        }
      }
    }
    // Questions the bot answers with another entry.
    for (const auto& e : kb->entries) {
      for (const auto& q : e.questions) {
        auto c = (*bot)->rank(q, 1);
        if (c && !c->empty() && c->front().entry_id != e.id) {
          diags.push_back({Diagnostic::Severity::kWarning, e.source,
                           "question \"" + q + "\" ranks entry '" + c->front().entry_id + "' first"});
        }
      }
    }
  }
  std::size_t warnings = 0;
  for (const auto& d : diags) {
    bool err = d.severity == Diagnostic::Severity::kError;
    warnings += !err;
    std::printf("%s: %s: %s\n", err ? "error" : "warning", d.where.c_str(), d.message.c_str());
  }
  std::printf("%zu error(s), %zu warning(s): %s\n", errors, warnings, args.kb.c_str());
  return errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("no command");
  Args args;
  args.command = argv[1];
  if (args.command == "-h" || args.command == "--help" || args.command == "help") {
    std::printf("%s", kUsage);
    return 0;
  }
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&](const char* name) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)name;
      return argv[++i];
    };
    if (a == "--kb" || a == "--questions" || a == "--mecab-dicdir" || a == "--set" || a == "--misses") {
      const char* v = need(a.c_str());
      if (!v) return usage_error(a + " needs a value");
      if (a == "--kb") args.kb = v;
      else if (a == "--questions") args.questions = v;
      else if (a == "--mecab-dicdir") args.dicdir = v;
      else if (a == "--misses") {
        char* end = nullptr;
        const long n = std::strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < 0 || n > 1000000) return usage_error("--misses needs a whole number, 0 or more");
        args.misses = static_cast<int>(n);
      }
      else {
        std::string kv = v;
        auto eq = kv.find('=');
        if (eq == std::string::npos) return usage_error("--set needs KEY=VALUE");
        args.sets.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
      }
    } else if (a == "--json") {
      args.json = true;
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("unknown option " + a);
    } else {
      args.text.push_back(a);
    }
  }
  if (args.command != "ask" && args.command != "eval" && args.command != "lint") {
    return usage_error("unknown command '" + args.command + "' (ask, eval, lint)");
  }
  if (!args.text.empty() && args.command != "ask") {
    return usage_error(args.command + " takes no text (\"" + args.text.front() + "\"); only ask does");
  }
  if (args.kb.empty()) return usage_error("--kb KB is required");
  if (args.command == "ask") return cmd_ask(args);
  if (args.command == "eval") return cmd_eval(args);
  if (args.command == "lint") return cmd_lint(args);
  return usage_error("unknown command '" + args.command + "'");
}
