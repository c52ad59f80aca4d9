// Answer quality floors on public datasets (shared/data) and the sample shop set.
// Deterministic: the model trains with a fixed seed and order; no timing is asserted.
#include "bot-runtime/test_support.hpp"

#include <simdjson.h>

#include <filesystem>
#include <fstream>

using namespace madoguchi::bot;

namespace {

struct Figures {
  double top1 = 0, oos_recall = 0, mrr5 = 0;
  std::size_t in_scope = 0, oos = 0;
};

Figures evaluate(const Bot& bot, const std::string& set_path) {
  std::ifstream in(set_path);
  REQUIRE_MESSAGE(in.good(), set_path);
  simdjson::dom::parser parser;
  Figures f;
  std::size_t correct = 0, oos_ok = 0;
  double rr = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(line).get(doc) == simdjson::SUCCESS);
    std::string_view text = doc["text"].get_string().value();
    simdjson::dom::element expect = doc["expect"].value();
    Conversation conv;
    auto r = bot.respond(conv, text);
    REQUIRE(r.is_ok());
    bool answered = r->decision == Decision::kAnswer;
    if (expect.is_null()) {
      ++f.oos;
      oos_ok += !answered;
    } else {
      ++f.in_scope;
      std::string_view id = expect.get_string().value();
      correct += answered && r->entry_id == id;
      for (std::size_t i = 0; i < r->candidates.size() && i < 5; ++i) {
        if (r->candidates[i].entry_id == id) {
          rr += 1.0 / static_cast<double>(i + 1);
          break;
        }
      }
    }
  }
  f.top1 = f.in_scope ? static_cast<double>(correct) / static_cast<double>(f.in_scope) : 0;
  f.mrr5 = f.in_scope ? rr / static_cast<double>(f.in_scope) : 0;
  f.oos_recall = f.oos ? static_cast<double>(oos_ok) / static_cast<double>(f.oos) : 0;
  return f;
}

std::shared_ptr<const Bot> load(const std::string& path) {
  auto kb = load_knowledge_file(path);
  REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
  auto bot = Bot::create(std::move(*kb));
  REQUIRE_MESSAGE(bot.is_ok(), bot.status().to_string());
  return *bot;
}

bool have_data() { return std::filesystem::exists(mdg_test::data_path("clinc150/kb.json")); }

}  // namespace

TEST_SUITE("bot.accuracy") {
  TEST_CASE("CLINC150 test, full knowledge base") {
    if (!have_data()) {
      MESSAGE("shared/data not found; skipped");
      return;
    }
    auto f = evaluate(*load(mdg_test::data_path("clinc150/kb.json")), mdg_test::data_path("clinc150/test.jsonl"));
    MESSAGE("clinc150 top1=" << f.top1 << " mrr5=" << f.mrr5 << " oos_recall=" << f.oos_recall);
    CHECK(f.in_scope == 4500);
    CHECK(f.oos == 1000);
    CHECK(f.top1 >= 0.90);
    CHECK(f.mrr5 >= 0.94);
    CHECK(f.oos_recall >= 0.62);
  }

  TEST_CASE("CLINC150 test, 10 questions per entry") {
    if (!have_data()) return;
    auto f = evaluate(*load(mdg_test::data_path("clinc150/kb-10.json")), mdg_test::data_path("clinc150/test.jsonl"));
    MESSAGE("clinc150 kb-10 top1=" << f.top1 << " mrr5=" << f.mrr5 << " oos_recall=" << f.oos_recall);
    CHECK(f.top1 >= 0.66);
    CHECK(f.mrr5 >= 0.79);
  }

  TEST_CASE("BANKING77 test with held-out intents") {
    if (!have_data()) return;
    auto f = evaluate(*load(mdg_test::data_path("banking77/kb.json")), mdg_test::data_path("banking77/test.jsonl"));
    MESSAGE("banking77 top1=" << f.top1 << " mrr5=" << f.mrr5 << " oos_recall=" << f.oos_recall);
    CHECK(f.top1 >= 0.89);
    CHECK(f.oos_recall >= 0.35);
  }

  TEST_CASE("xSID Japanese test") {
    if (!have_data()) return;
    auto f = evaluate(*load(mdg_test::data_path("xsid/kb-ja.json")), mdg_test::data_path("xsid/test-ja.jsonl"));
    MESSAGE("xsid ja top1=" << f.top1 << " mrr5=" << f.mrr5 << " oos_recall=" << f.oos_recall);
    CHECK(f.top1 >= 0.90);
    CHECK(f.mrr5 >= 0.94);
  }

  TEST_CASE("the sample shop answers its own questions as they are written, with the linear model and without") {
    // An exact question of the knowledge base is the strongest match a message can be. Its
    // confidence must not fall below the answer threshold because it scores beyond the
    // held-out questions the calibration was fitted on.
    for (bool classifier : {true, false}) {
      CAPTURE(classifier);
      auto kb = load_knowledge_file(mdg_test::source_path("samples/kb/shop.json"));
      REQUIRE(kb.is_ok());
      kb->ranking.classifier = classifier;
      std::vector<std::pair<std::string, std::string>> questions;  // text, entry
      for (const auto& e : kb->entries) {
        for (const auto& q : e.questions) questions.emplace_back(q, e.id);
      }
      auto bot = Bot::create(std::move(*kb));
      REQUIRE(bot.is_ok());
      std::size_t answered = 0;
      for (const auto& [text, entry] : questions) {
        Conversation conv;
        auto r = (*bot)->respond(conv, text);
        REQUIRE(r.is_ok());
        answered += r->decision == Decision::kAnswer && r->entry_id == entry;
      }
      const double share = static_cast<double>(answered) / static_cast<double>(questions.size());
      MESSAGE("classifier=" << classifier << ": " << answered << " of " << questions.size());
      CHECK(share >= 0.99);
    }
  }

  TEST_CASE("sample shop evaluation set") {
    auto f = evaluate(*mdg_test::shop_bot(), mdg_test::source_path("samples/kb/shop-eval.jsonl"));
    MESSAGE("shop top1=" << f.top1 << " mrr5=" << f.mrr5 << " oos_recall=" << f.oos_recall);
    CHECK(f.top1 >= 0.72);
    CHECK(f.mrr5 >= 0.90);
    CHECK(f.oos_recall >= 0.90);
  }
}
