#include <madoguchi/bot/knowledge.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

using namespace madoguchi::bot;
using madoguchi::ErrorCode;

namespace {

bool mentions(const madoguchi::Status& s, const std::string& what) {
  return s.message().find(what) != std::string::npos;
}

constexpr const char* kGood = R"({
  "name": "t",
  "default_locale": "ja",
  "dictionary": ["さくらポイント"],
  "synonyms": [["返品", "返却"]],
  "settings": {"ranking": {"k1": 1.5}, "policy": {"answer_threshold": 0.6}},
  "entries": [
    {"id": "returns", "questions": ["返品はできますか", "Can I return an item?"],
     "answer": {"ja": "30日以内です。", "en": "Within 30 days."}, "tags": ["returns"], "follow_ups": ["refund"]},
    {"id": "refund", "questions": "返金はいつですか", "answer": "5営業日以内です。"}
  ],
  "rules": [
    {"id": "human", "priority": 10, "when": {"any": ["担当者", "human"]}, "then": {"handoff": "asked for a person"}}
  ]
})";

}  // namespace

TEST_SUITE("bot.knowledge") {
  TEST_CASE("the JSON format of DESIGN.md loads") {
    auto kb = parse_knowledge_json(kGood, "good.json");
    REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
    CHECK(kb->name == "t");
    REQUIRE(kb->entries.size() == 2);
    CHECK(kb->entries[0].questions.size() == 2);
    CHECK(*kb->entries[0].answer.get("en") == "Within 30 days.");
    CHECK(*kb->entries[1].answer.get("en") == "5営業日以内です。");  // locale-free answer serves all
    CHECK(kb->entries[1].questions.size() == 1);                     // a string is a one-question list
    CHECK(kb->ranking.k1 == doctest::Approx(1.5));
    CHECK(kb->policy.answer_threshold == doctest::Approx(0.6));
    REQUIRE(kb->rules.size() == 1);
    CHECK(kb->rules[0].then.handoff.value() == "asked for a person");
    CHECK(validate_knowledge(*kb).empty());
  }

  TEST_CASE("a byte order mark before the JSON is skipped, a non-ASCII character is named, a folder is refused") {
    auto kb = parse_knowledge_json("\xEF\xBB\xBF" R"({"name":"bom","entries":[{"id":"a","questions":["q"],"answer":"A"}]})",
                                   "bom.json");
    REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
    CHECK(kb->name == "bom");
    // A full-width bracket typed with a Japanese input method: named whole, with its code point.
    auto full_width = parse_knowledge_json(R"({"name":"x","entries":［]})", "fw.json");
    REQUIRE_FALSE(full_width.is_ok());
    CHECK(full_width.status().message() ==
          "fw.json:1:23: malformed JSON: unexpected character '［' (U+FF3B) where a value should start "
          "(JSON takes ASCII punctuation: [ { \" , :)");
    auto folder = load_knowledge_file(std::filesystem::temp_directory_path().string());
    REQUIRE_FALSE(folder.is_ok());
    CHECK(folder.status().message().find("not a file (a folder?)") != std::string::npos);
  }

  TEST_CASE("a key twice in one JSON object, or a column twice in a sheet's header, is an error, not a loss") {
    auto twice = parse_knowledge_json(
        R"({"name":"k","entries":[{"id":"a","questions":["q1"],"questions":["q2"],"answer":"A"}]})", "dk.json");
    REQUIRE_FALSE(twice.is_ok());
    CHECK(twice.status().message() ==
          "dk.json: entries[0]: the key \"questions\" appears twice in one object; a JSON object takes each key once "
          "(merge the two, or move one elsewhere)");
    auto top = parse_knowledge_json(R"({"name":"k","entries":[],"entries":[]})", "top.json");
    REQUIRE_FALSE(top.is_ok());
    CHECK(top.status().message().find("the top-level object: the key \"entries\" appears twice") != std::string::npos);
    auto sheet = parse_knowledge("id,question,question,answer_en\na,q1,q2,A\n", KnowledgeFormat::kCsv, "dup.csv");
    REQUIRE_FALSE(sheet.is_ok());
    CHECK(sheet.status().message() == "dup.csv:1: the column \"question\" appears twice in the header; keep one "
                                      "(a second question goes on a row of its own, with the same id)");
  }

  TEST_CASE("malformed JSON names the line and column") {
    auto kb = parse_knowledge_json("{\n  \"entries\": [\n    {\"id\": \"a\",}\n  ]\n}", "bad.json");
    REQUIRE_FALSE(kb.is_ok());
    CHECK(kb.status().code() == ErrorCode::kInvalidArgument);
    CHECK(mentions(kb.status(), "bad.json:3:"));
    CHECK(mentions(kb.status(), "trailing comma"));
    SUBCASE("truncated file") {
      auto t = parse_knowledge_json("{\"entries\": [", "t.json");
      REQUIRE_FALSE(t.is_ok());
      CHECK(mentions(t.status(), "t.json:1:"));
    }
    SUBCASE("a number out of range, a lone surrogate") {
      auto big = parse_knowledge_json("{\"name\": \"x\",\n \"settings\": {\"ranking\": {\"k1\": 1e400}}}", "big.json");
      REQUIRE_FALSE(big.is_ok());
      CHECK(big.status().message() == "big.json:2:33: malformed JSON: number out of range (a double goes to about 1.8e308)");
      auto lone = parse_knowledge_json(R"({"name": "x\ud800"})", "lone.json");
      REQUIRE_FALSE(lone.is_ok());
      CHECK(mentions(lone.status(), "lone.json:1:"));
      CHECK(mentions(lone.status(), "high surrogate"));
    }
    SUBCASE("numbers JSON does not allow, and integers too large, are placed too") {
      const std::pair<std::string, std::string> cases[] = {
          {"05", "n.json:1:25: malformed JSON: invalid number: no leading zeros (write 5, not 05)"},
          {"-01", "n.json:1:25: malformed JSON: invalid number: no leading zeros"},
          {"1.", "n.json:1:25: malformed JSON: invalid number: digits must follow the decimal point"},
          {"1.e5", "n.json:1:25: malformed JSON: invalid number: digits must follow the decimal point"},
          {"1e", "n.json:1:25: malformed JSON: invalid number: digits must follow the exponent"},
          {"99999999999999999999", "n.json:1:25: malformed JSON: integer too large"},
      };
      for (const auto& [number, error] : cases) {
        CAPTURE(number);
        auto n = parse_knowledge_json(R"({"rules": [{"priority": )" + number + R"(}]})", "n.json");
        REQUIRE_FALSE(n.is_ok());
        CHECK(mentions(n.status(), error));
      }
    }
  }

  TEST_CASE("unknown fields are errors that list the known ones") {
    auto kb = parse_knowledge_json(R"({"entries": [{"id": "a", "questions": ["q"], "answer": "x", "answr": "y"}]})", "u.json");
    REQUIRE_FALSE(kb.is_ok());
    CHECK(mentions(kb.status(), "entry 'a'"));
    CHECK(mentions(kb.status(), "unknown field \"answr\""));
    CHECK(mentions(kb.status(), "known fields"));
    auto top = parse_knowledge_json(R"({"entries": [], "rulez": []})", "u.json");
    REQUIRE_FALSE(top.is_ok());
    CHECK(mentions(top.status(), "rulez"));
  }

  TEST_CASE("wrong types and missing fields say what was expected") {
    auto kb = parse_knowledge_json(R"({"entries": [{"id": "a", "questions": 3, "answer": "x"}]})", "w.json");
    REQUIRE_FALSE(kb.is_ok());
    CHECK(mentions(kb.status(), "entry 'a' (entries[0]).questions: expected a list of strings, found a number"));
    auto missing = parse_knowledge_json(R"({"entries": [{"questions": ["q"], "answer": "x"}]})", "m.json");
    REQUIRE_FALSE(missing.is_ok());
    CHECK(mentions(missing.status(), "entries[0]: missing \"id\""));
  }

  TEST_CASE("a rule's text, question or option that would show nothing is an error") {
    // {} once got through, and asking that rule's question crashed the bot.
    const std::string head = R"({"entries": [{"id": "a", "questions": ["aaa"], "answer": "A"}], "rules": [{"id": "m", "when": {"any": ["menu"]}, "then": )";
    const std::pair<std::string, std::string> cases[] = {
        {R"({"ask": {"text": "Which?", "options": [{"label": {}, "answer": "a"}]}})", "(rules[0]).then.ask.options[0].label: an empty object"},
        {R"({"ask": {"text": {}, "options": [{"label": "A", "answer": "a"}]}, "set_slots": {"x": "1"}})", "(rules[0]).then.ask.text: an empty object"},
        {R"({"reply": {"ja": "  "}})", "(rules[0]).then.reply.ja: the text is blank"},
        {R"({"reply": ""})", "(rules[0]).then.reply: the text is blank"},
    };
    for (const auto& [then, error] : cases) {
      CAPTURE(then);
      auto kb = parse_knowledge_json(head + then + "}]}", "r.json");
      REQUIRE_FALSE(kb.is_ok());
      CHECK(mentions(kb.status(), error));
    }
    auto messages = parse_knowledge_json(R"({"entries": [{"id": "a", "questions": ["aaa"], "answer": "A"}], "messages": {"fallback": {}}})", "m.json");
    REQUIRE_FALSE(messages.is_ok());
    CHECK(mentions(messages.status(), "messages.fallback: an empty object"));
  }

  TEST_CASE("an empty condition or answer id is an error, not a condition left out") {
    // "previous_answer": "" once read as no condition at all: the rule fired on any message.
    const std::string head = R"({"entries": [{"id": "a", "questions": ["aaa"], "answer": "A"}], "rules": [{"id": "m", )";
    const std::pair<std::string, std::string> cases[] = {
        {R"("when": {"previous_answer": "", "any": ["x"]}, "then": {"reply": "r"})",
         "(rules[0]).when.previous_answer: empty: give an entry id, or leave the key out"},
        {R"("when": {"locale": "", "any": ["x"]}, "then": {"reply": "r"})", "(rules[0]).when.locale: empty: give a locale"},
        {R"("when": {"regex": "", "any": ["x"]}, "then": {"reply": "r"})", "(rules[0]).when.regex: empty: give a pattern"},
        {R"("when": {"any": ["x"]}, "then": {"answer": ""})", "(rules[0]).then.answer: empty: give an entry id"},
    };
    for (const auto& [rule, error] : cases) {
      CAPTURE(rule);
      auto kb = parse_knowledge_json(head + rule + "}]}", "e.json");
      REQUIRE_FALSE(kb.is_ok());
      CHECK(mentions(kb.status(), error));
    }
  }

  TEST_CASE("invalid UTF-8 in a file") {
    std::string text = R"({"entries": [{"id": "a", "questions": ["q)" "\xff" R"("], "answer": "x"}]})";
    auto kb = parse_knowledge_json(text, "enc.json");
    REQUIRE_FALSE(kb.is_ok());
    CHECK(mentions(kb.status(), "invalid UTF-8"));
    // The offset is the file's, a byte order mark included (as the sheet's are).
    const std::string with_mark = "\xEF\xBB\xBF" + text;
    const auto bad = with_mark.find('\xff');
    auto marked = parse_knowledge_json(with_mark, "enc.json");
    REQUIRE_FALSE(marked.is_ok());
    CHECK(mentions(marked.status(), "invalid UTF-8 at byte " + std::to_string(bad)));
  }

  TEST_CASE("validation: duplicate ids, dangling references, bad regex, impossible rules, empty synonyms") {
    auto kb = parse_knowledge_json(R"({
      "synonyms": [["送料", "配送料"], [" ", "fee"]],
      "entries": [
        {"id": "a", "questions": ["q1"], "answer": "x", "follow_ups": ["nope"]},
        {"id": "a", "questions": ["q2"], "answer": "y"},
        {"id": "b", "questions": [""], "answer": "z"},
        {"id": "c", "questions": ["q3"], "answer": {"ja": "", "en": "x"}}
      ],
      "rules": [
        {"id": "r1", "when": {"regex": "(unclosed"}, "then": {"reply": "x"}},
        {"id": "r2", "when": {"any": ["x"]}, "then": {"answer": "missing"}},
        {"id": "r3", "when": {"turn": {"min": 3, "max": 1}}, "then": {"reply": "x"}},
        {"id": "r4", "when": {"all": ["k"], "none": ["k"]}, "then": {"reply": "x"}},
        {"id": "r5", "when": {"any": ["k"]}, "then": {}}
      ]
    })", "v.json");
    REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
    auto diags = validate_knowledge(*kb);
    std::string all;
    for (const auto& d : diags) all += d.where + ": " + d.message + "\n";
    CHECK(all.find("duplicate id 'a'") != std::string::npos);
    CHECK(all.find("follow-up 'nope'") != std::string::npos);
    CHECK(all.find("question 1 is empty") != std::string::npos);
    CHECK(all.find("empty answer in 'ja'") != std::string::npos);
    CHECK(all.find("does not compile") != std::string::npos);
    CHECK(all.find("answer 'missing' is not an entry id") != std::string::npos);
    CHECK(all.find("turn.min is greater than turn.max") != std::string::npos);
    CHECK(all.find("both \"all\" and \"none\"") != std::string::npos);
    CHECK(all.find("does nothing") != std::string::npos);
    CHECK(all.find("v.json: synonyms[1]: an empty word") != std::string::npos);
    CHECK(all.find("synonyms[0]") == std::string::npos);
  }

  TEST_CASE("validation: a text of only full-width spaces, controls or zero-width characters is blank") {
    // Such text normalizes to nothing: a synonym "　" deleted its group's words from every
    // message, and an answer "　" showed the visitor nothing.
    auto kb = parse_knowledge_json(R"({
      "synonyms": [["\u3000", "返金", "払い戻し"], ["送料", "\u200b"]],
      "entries": [
        {"id": "a", "questions": ["\u0001"], "answer": "x"},
        {"id": "b", "questions": ["q"], "answer": {"ja": "\u3000\u3000", "en": "x"}},
        {"id": "c", "questions": ["返金\u3000"], "answer": "\u00a0ok"}
      ]
    })", "w.json");
    REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
    std::string all;
    for (const auto& d : validate_knowledge(*kb)) all += d.where + ": " + d.message + "\n";
    CAPTURE(all);
    CHECK(all.find("w.json: synonyms[0]: an empty word") != std::string::npos);
    CHECK(all.find("w.json: synonyms[1]: an empty word") != std::string::npos);
    CHECK(all.find("question 1 is empty") != std::string::npos);
    CHECK(all.find("entry 'b' has an empty answer in 'ja'") != std::string::npos);
    CHECK(all.find("entry 'c'") == std::string::npos);
    auto reply = parse_knowledge_json(
        R"({"entries": [{"id": "a", "questions": ["q"], "answer": "A"}], "rules": [{"id": "m", "when": {"any": ["menu"]}, "then": {"reply": "\u3000"}}]})",
        "r.json");
    REQUIRE_FALSE(reply.is_ok());
    CHECK(mentions(reply.status(), "(rules[0]).then.reply: the text is blank"));
  }

  TEST_CASE("a regex that repeats a repetition is warned about") {
    // (pattern, warned): JSON-escaped patterns.
    const std::vector<std::pair<std::string, bool>> patterns{
        {R"(^(a+)+$)", true},
        {R"((\\w+\\s?)*$)", true},
        {R"(^((ab)*c)+$)", true},
        {R"((x{2,})*y)", true},
        {R"((?:a*b*)+c)", true},
        {R"((?>a+)+b)", false},    // atomic: no backtracking into it
        {R"((a++)+b)", false},     // possessive
        {R"([(a+)]+b)", false},    // a set, not a group
        {R"(\\(a+\\)+)", false},  // escaped parentheses
        {R"((ab?)+c)", false},
        {R"(^\\s*(お?支払い?|決済|payments?|pay)\\s*(について|のこと|は|\\?|\\.|。)*\\s*$)", false},
        {R"(sm-\\d{6})", false},
        {R"(\\Q(a+)+\\E)", false},  // quoted: literal text
        {R"((a|aa)*b)", false},   // overlapping alternatives: not seen (docs/rules.md)
        {R"(^(\\p{L}+\\s?)+$)", true},  // a property's braces are no quantifier
        {R"(^(\\p{Han})+$)", false},
        {R"(^(\\x{41})+$)", false},
        {R"(^(\\P{L}\\N{DIGIT ONE})*$)", false},
    };
    std::string json = R"({"name":"t","default_locale":"en","entries":[{"id":"a","questions":["q"],"answer":"x"}],"rules":[)";
    for (std::size_t i = 0; i < patterns.size(); ++i) {
      if (i) json += ',';
      json.append(R"({"id":"r)").append(std::to_string(i)).append(R"(","when":{"regex":")");
      json.append(patterns[i].first).append(R"("},"then":{"reply":"x"}})");
    }
    json += "]}";
    auto kb = parse_knowledge_json(json, "n.json");
    REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
    auto diags = validate_knowledge(*kb);
    for (std::size_t i = 0; i < patterns.size(); ++i) {
      const std::string where = "n.json: rule 'r" + std::to_string(i) + "' (rules[" + std::to_string(i) + "])";
      const bool warned = std::any_of(diags.begin(), diags.end(), [&](const Diagnostic& d) {
        return d.where == where && d.severity == Diagnostic::Severity::kWarning &&
               d.message.find("repeats a repetition") != std::string::npos;
      });
      CAPTURE(patterns[i].first);
      CHECK(warned == patterns[i].second);
    }
    CHECK(std::none_of(diags.begin(), diags.end(),
                       [](const Diagnostic& d) { return d.severity == Diagnostic::Severity::kError; }));
    const Diagnostic* first = nullptr;
    for (const auto& d : diags) {
      if (d.where.find("rules[0]") != std::string::npos) first = &d;
    }
    REQUIRE(first);
    CHECK(first->message ==
          R"x(regex "^(a+)+$" repeats a repetition (at offset 5): some messages make it backtrack for an exponential time, )x"
          R"x(and its search then gives up and does not match; write it without the inner repetition ("(a+)+" is "a+"), )x"
          R"x(or make the group atomic, "(?>...)")x");
  }

  TEST_CASE("the CSV sheet: quoting, continuation rows, tags") {
    const char* csv =
        "\xEF\xBB\xBFid,question,answer_ja,answer_en,tags\n"
        "returns,返品できますか,30日以内です。,\"Within 30 days, unused.\",returns;policy\n"
        ",\"Can I \"\"return\"\" it?\",,,\n"
        "refund,返金は？,5日,\"Five\ndays\",\n";
    auto kb = parse_knowledge_sheet(csv, "faq.csv", ',');
    REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
    REQUIRE(kb->entries.size() == 2);
    CHECK(kb->entries[0].questions.size() == 2);
    CHECK(kb->entries[0].questions[1] == "Can I \"return\" it?");
    CHECK(*kb->entries[0].answer.get("en") == "Within 30 days, unused.");
    CHECK(kb->entries[0].tags.size() == 2);
    CHECK(*kb->entries[1].answer.get("en") == "Five\ndays");
  }

  TEST_CASE("CSV errors name the line") {
    struct Case {
      const char* csv;
      const char* error;  // a part of the message
    };
    const Case cases[] = {
        {"q,a\nx,y\n", "s.csv:1: unknown column \"q\""},
        {"id,question,answer\na,\"open,x\n", "s.csv:2: a quoted field is never closed"},
        {"id,question,answer\na,q,x,extra\n", "s.csv:2:"},
        {"id,question,answer\na,q1,x\na,q2,y\n", "different answer"},
        // The earlier row named is the one with the answer, not the entry's first.
        {"id,question,answer_ja\na,q1,\n,q2,first\n,q3,other\n",
         "s.csv:4: entry 'a' has a different answer_ja than on an earlier row (s.csv:3)"},
        // Text beside a quoted field's quotes: where the field ends would be a guess.
        {"id,question,answer\na,\"quoted\" and not,x\n",
         "s.csv:2: field 2: text after the field's closing quote (put the whole field inside the quotes)"},
        {"id,question,answer\na,\"say \"hi\"\",x\n", "s.csv:2: field 2: text after the field's closing quote"},
        {"id,question,answer\na,\"one\" \"two\",x\n", "s.csv:2: field 2: a quote after the field's closing quote"},
        {"id,question,answer\na,q,say \"hi\"\n", "s.csv:2: field 3: a quote inside an unquoted field"},
        {"id,question,answer\na,q,\"two\nlines\"x\n", "s.csv:3: field 3: text after"},  // where the text is
    };
    for (const auto& c : cases) {
      CAPTURE(c.csv);
      auto kb = parse_knowledge_sheet(c.csv, "s.csv", ',');
      REQUIRE_FALSE(kb.is_ok());
      CHECK(mentions(kb.status(), c.error));
    }
    // Spaces around the quotes are allowed; a CRLF inside a quoted field is a line break.
    auto spaced = parse_knowledge_sheet("id,question,answer_en\r\na, \"q, spaced\" ,\"one\r\ntwo\"\r\n", "s.csv", ',');
    REQUIRE_MESSAGE(spaced.is_ok(), spaced.status().to_string());
    CHECK(spaced->entries[0].questions[0] == "q, spaced");
    CHECK(*spaced->entries[0].answer.get("en") == "one\ntwo");
    auto tsv = parse_knowledge_sheet("id\tquestion\tanswer_en\na\thow, really?\tlike this\n", "s.tsv", '\t');
    REQUIRE(tsv.is_ok());
    CHECK(tsv->entries[0].questions[0] == "how, really?");
  }

  TEST_CASE("text in memory: parse_knowledge picks the parser of the format and refuses over 256 MiB") {
    auto json = parse_knowledge(kGood, KnowledgeFormat::kJson, "kb.json");
    REQUIRE(json.is_ok());
    CHECK(json->source == "kb.json");
    CHECK(json->entries.size() == 2);
    auto csv = parse_knowledge("id,question,answer\na,how, really?,x\n", KnowledgeFormat::kCsv, "");
    REQUIRE_FALSE(csv.is_ok());  // the comma splits the question: 4 fields
    CHECK(mentions(csv.status(), "<string>:2:"));
    auto tsv = parse_knowledge("id\tquestion\tanswer\na\thow, really?\tx\n", KnowledgeFormat::kTsv, "");
    REQUIRE(tsv.is_ok());
    CHECK(tsv->source == "<string>");
    CHECK(tsv->entries[0].questions[0] == "how, really?");
    // Refused before it is read: the bytes are never touched.
    const std::size_t huge = (std::size_t{256} << 20) + 1;
    std::unique_ptr<char[]> bytes(new char[huge]);
    auto big = parse_knowledge(std::string_view(bytes.get(), huge), KnowledgeFormat::kJson, "huge.json");
    REQUIRE_FALSE(big.is_ok());
    CHECK(big.status().code() == ErrorCode::kResourceExhausted);
    CHECK(big.status().message() == "huge.json: the knowledge base is 268435457 bytes; at most 256 MiB are read");
  }

  TEST_CASE("files: missing, unknown extension") {
    auto missing = load_knowledge_file("/nonexistent/kb.json");
    REQUIRE_FALSE(missing.is_ok());
    CHECK(missing.status().code() == ErrorCode::kNotFound);
    auto path = (std::filesystem::temp_directory_path() / "mdg-knowledge-test.txt").string();
    std::ofstream(path) << "id,question,answer\n";
    auto ext = load_knowledge_file(path);
    std::filesystem::remove(path);
    REQUIRE_FALSE(ext.is_ok());
    CHECK(mentions(ext.status(), "use .json, .csv or .tsv"));
  }

  TEST_CASE("settings can be overridden by name") {
    KnowledgeBase kb;
    CHECK(apply_setting(kb, "policy.answer_threshold", "0.7").is_ok());
    CHECK(kb.policy.answer_threshold == doctest::Approx(0.7));
    CHECK(apply_setting(kb, "ranking.classifier", "false").is_ok());
    CHECK_FALSE(kb.ranking.classifier);
    CHECK_FALSE(apply_setting(kb, "policy.answer_threshold", "high").is_ok());
    for (const char* odd : {"nan", "inf", "-infinity"}) {
      auto st = apply_setting(kb, "policy.answer_threshold", odd);
      CHECK(st.code() == ErrorCode::kInvalidArgument);
      CHECK(mentions(st, "not a finite number"));
    }
    CHECK(kb.policy.answer_threshold == doctest::Approx(0.7));
    auto unknown = apply_setting(kb, "policy.nope", "1");
    REQUIRE_FALSE(unknown.is_ok());
    CHECK(mentions(unknown, "policy.answer_threshold"));
  }
}
