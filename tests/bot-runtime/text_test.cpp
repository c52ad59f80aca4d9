#include <madoguchi/bot/text.hpp>

#include <doctest/doctest.h>

#include <algorithm>

using namespace madoguchi::bot;

namespace {

std::shared_ptr<const TextPipeline> pipeline(TextOptions options = {}) {
  auto p = TextPipeline::create(std::move(options));
  REQUIRE_MESSAGE(p.is_ok(), p.status().to_string());
  return *p;
}

std::vector<std::string> content_terms(const Analysis& a) {
  std::vector<std::string> out;
  for (const auto& t : a.tokens) {
    if (t.content) out.push_back(t.text);
  }
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

TEST_SUITE("bot.text") {
  TEST_CASE("normalization folds width, case and Japanese variants") {
    auto p = pipeline();
    SUBCASE("full-width alphanumerics and case") { CHECK(p->normalize("ＡＢＣ１２３ Straße").value() == "abc123 strasse"); }
    SUBCASE("half-width katakana") { CHECK(p->normalize("ﾍﾝﾋﾟﾝ").value() == "ヘンピン"); }
    SUBCASE("ideographic space and runs of white space collapse") {
      CHECK(p->normalize("  返品\u3000\u3000したい \n ").value() == "返品 したい");
    }
    SUBCASE("a dash after katakana is a long-vowel mark") { CHECK(p->normalize("ケ-キ").value() == "ケーキ"); }
    SUBCASE("a dash after katakana before a Latin letter or a digit stays a hyphen") {
      CHECK(p->normalize("Tシャツ-M").value() == "tシャツ-m");
      CHECK(p->normalize("Ｔシャツ－Ｌサイズ").value() == "tシャツ-lサイズ");
      CHECK(p->normalize("ケース-2個").value() == "ケース-2個");
      CHECK(p->normalize("ケース\u2010m é").value() == "ケース-m é");  // through ICU
      CHECK(p->normalize("コンピュータ-").value() == "コンピューター");
      CHECK(p->normalize("コンピュータ- です").value() == "コンピューター です");
    }
    SUBCASE("runs of kana and kanji keep the rules at their edges") {
      CHECK(p->normalize("\u3000お問い合わせ  ケーキ-ショップ\tの注文ＡＢＣ  ").value() ==
            "お問い合わせ ケーキーショップ の注文abc");
      CHECK(p->normalize("返品 ケ-キ").value() == "返品 ケーキ");
    }
    SUBCASE("wave dash variants") { CHECK(p->normalize("10〜20").value() == p->normalize("10～20").value()); }
    SUBCASE("full-width punctuation") { CHECK(p->normalize("送料は？！").value() == "送料は?!"); }
    SUBCASE("a dash after a space is a dash, not a long vowel") {
      CHECK(p->normalize("マイページ - ログイン").value() == "マイページ - ログイン");
      CHECK(p->normalize("パスワード \u2013 忘れた").value() == "パスワード \u2013 忘れた");
    }
    SUBCASE("typographic apostrophes are apostrophes") {
      CHECK(p->normalize("I can\u2019t log in").value() == "i can't log in");
      CHECK(p->normalize("\u2018ok\u2019 it\u02BCs").value() == "'ok' it's");
    }
    SUBCASE("C1 controls go; line separators are white space") {
      CHECK(p->normalize("返品\u0080したい").value() == "返品したい");
      CHECK(p->normalize("返品\u0085したい\u2028です\u2029").value() == "返品 したい です");
    }
  }

  TEST_CASE("invalid UTF-8 is an error that names the byte") {
    auto p = pipeline();
    auto r = p->normalize(std::string("abc\xff" "def"));
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == madoguchi::ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("byte 3") != std::string::npos);
    CHECK(find_invalid_utf8("\xe3\x81") == 0);          // truncated sequence
    CHECK(find_invalid_utf8("\xc0\xaf") == 0);          // overlong
    CHECK(find_invalid_utf8("\xed\xa0\x80") == 0);      // surrogate
    CHECK(find_invalid_utf8("返品") == std::string::npos);
  }

  TEST_CASE("locale detection") {
    CHECK(TextPipeline::detect_locale("返品したい") == "ja");
    CHECK(TextPipeline::detect_locale("カード") == "ja");
    CHECK(TextPipeline::detect_locale("Can I return this?") == "en");
    CHECK(TextPipeline::detect_locale("PayPayで払える?") == "ja");
    CHECK(TextPipeline::detect_locale("") == "en");
  }

  TEST_CASE("Japanese goes through MeCab to base forms, function words flagged") {
    auto p = pipeline();
    auto a = p->analyze("商品を返品したかったです");
    REQUIRE(a.is_ok());
    CHECK(a->locale == "ja");
    auto terms = content_terms(*a);
    CHECK(has(terms, "商品"));
    CHECK(has(terms, "返品"));
    CHECK_FALSE(has(terms, "を"));
    CHECK_FALSE(has(terms, "です"));
    auto b = p->analyze("届かない");
    REQUIRE(b.is_ok());
    CHECK(has(content_terms(*b), "届く"));  // base form of 届か
  }

  TEST_CASE("何 is a function word before a counter as on its own") {
    auto p = pipeline();
    for (const char* text : {"何日で届きますか", "あなたは何歳ですか", "何がありますか"}) {
      CAPTURE(text);
      auto a = p->analyze(text);
      REQUIRE(a.is_ok());
      CHECK_FALSE(has(content_terms(*a), "何"));
      CHECK(std::any_of(a->tokens.begin(), a->tokens.end(), [](const Token& t) { return t.text == "何"; }));
    }
  }

  TEST_CASE("English is split, stop words flagged and stemmed") {
    auto p = pipeline();
    auto a = p->analyze("How do I return the shoes I ordered?");
    REQUIRE(a.is_ok());
    CHECK(a->locale == "en");
    auto terms = content_terms(*a);
    CHECK(has(terms, "return"));
    CHECK(has(terms, "shoe"));
    CHECK(has(terms, "order"));
    CHECK_FALSE(has(terms, "the"));
    SUBCASE("accented Latin goes through the ICU word breaker") {
      auto c = p->analyze("café crème");
      REQUIRE(c.is_ok());
      CHECK(c->tokens.size() == 2);
    }
    SUBCASE("Latin words inside Japanese are stemmed too") {
      auto c = p->analyze("Ordersを確認");
      REQUIRE(c.is_ok());
      CHECK(has(content_terms(*c), "order"));
    }
  }

  TEST_CASE("symbols and punctuation around words change none of the words") {
    // The same words, however the text around them is decorated: symbols MeCab does not know
    // ("♪", "¥") are not words, and one non-ASCII character in English (which sends the text
    // through ICU's word breaker) does not change how its numbers and contractions split.
    auto p = pipeline();
    auto tokens = [&](const char* text) {
      auto a = p->analyze(text);
      REQUIRE_MESSAGE(a.is_ok(), a.status().to_string());
      std::vector<std::string> out;
      for (const auto& t : a->tokens) out.push_back(t.text);
      return out;
    };
    CHECK(tokens("返品したい♪") == tokens("返品したい"));
    CHECK(tokens("返品したい♡") == tokens("返品したい"));
    CHECK(tokens("返品したい\u2764\uFE0F") == tokens("返品したい"));
    CHECK(tokens("\uFFE55,000以上で送料無料") == tokens("5,000以上で送料無料"));
    CHECK(tokens("My order is 60,000 yen \U0001F64F") == tokens("My order is 60,000 yen"));
    CHECK(tokens("café costs 3.5 dollars") == std::vector<std::string>{"café", "cost", "3", "5", "dollar"});
    CHECK(tokens("I can\u2019t log in \u2014 help") == tokens("I can't log in - help"));
  }

  TEST_CASE("the user dictionary keeps shop terms whole") {
    TextOptions o;
    o.user_terms = {"さくらポイント", "Sakura Express"};
    auto p = pipeline(o);
    auto a = p->analyze("さくらポイントはSAKURA EXPRESSでも貯まりますか");
    REQUIRE(a.is_ok());
    auto terms = content_terms(*a);
    CHECK(has(terms, "さくらポイント"));
    CHECK(has(terms, "sakura express"));
    auto kinds = std::count_if(a->tokens.begin(), a->tokens.end(), [](const Token& t) { return t.kind == TokenKind::kUserTerm; });
    CHECK(kinds == 2);
    SUBCASE("the words after a term are read in their sentence") {
      // Cut off at the term, "はいつまで" was read as はい ("yes") and つま ("wife").
      auto b = p->analyze("さくらポイントはいつまで使えますか");
      REQUIRE(b.is_ok());
      std::vector<std::string> texts;
      for (const auto& t : b->tokens) texts.push_back(t.text);
      CHECK(texts == std::vector<std::string>{"さくらポイント", "は", "いつ", "まで", "使える", "ます", "か"});
      CHECK(b->tokens[0].kind == TokenKind::kUserTerm);
    }
  }

  TEST_CASE("synonyms map to the group's first word") {
    TextOptions o;
    o.synonyms = {{"返品", "返却"}, {"refund", "money back"}};
    auto p = pipeline(o);
    CHECK(has(content_terms(p->analyze("商品を返却したい").value()), "返品"));
    CHECK(has(content_terms(p->analyze("I want my money back").value()), "refund"));
    SUBCASE("English synonyms respect word boundaries") {
      TextOptions o2;
      o2.synonyms = {{"cash", "cod"}};
      auto p2 = pipeline(o2);
      CHECK(p2->analyze("my code").value().normalized == "my code");
    }
    SUBCASE("an alias inside its canonical form is not replaced there") {
      TextOptions o2;
      o2.synonyms = {{"プリンター", "プリンタ"}, {"promo code", "promo"}};
      auto p2 = pipeline(o2);
      CHECK(p2->normalize("プリンタ").value() == "プリンタ");  // normalize() leaves synonyms
      CHECK(p2->analyze("プリンタが動かない").value().normalized == "プリンターが動かない");
      CHECK(p2->analyze("プリンターが動かない").value().normalized == "プリンターが動かない");
      CHECK(p2->analyze("a promo code?").value().normalized == "a promo code?");
      CHECK(p2->analyze("a promo?").value().normalized == "a promo code?");
    }
    SUBCASE("a first word that normalizes to nothing is an error") {
      TextOptions o2;
      o2.synonyms = {{"\u3000\u200b", "返金"}};
      auto p2 = TextPipeline::create(o2);
      REQUIRE_FALSE(p2.is_ok());
      CHECK(p2.status().message().find("synonym group 1: the first word is empty") != std::string::npos);
    }
    SUBCASE("a word that is one group's canonical form and a later group's alias stays") {
      TextOptions o2;
      o2.synonyms = {{"返金", "払い戻し"}, {"払い戻し", "返金"}};
      auto p2 = pipeline(o2);
      CHECK(p2->analyze("返金と払い戻し").value().normalized == "返金と返金");
    }
  }

  TEST_CASE("words MeCab does not know are marked unknown") {
    auto p = pipeline();
    auto a = p->analyze("ポチポチャリーナを買いたい");
    REQUIRE(a.is_ok());
    bool unknown = std::any_of(a->tokens.begin(), a->tokens.end(), [](const Token& t) { return t.kind == TokenKind::kUnknown; });
    CHECK(unknown);
  }

  TEST_CASE("a missing MeCab dictionary is a clear error") {
    TextOptions o;
    o.mecab_dicdir = "/nonexistent/mecab-dic";
    auto p = TextPipeline::create(o);
    REQUIRE_FALSE(p.is_ok());
    CHECK(p.status().code() == madoguchi::ErrorCode::kNotFound);
    CHECK(p.status().message().find("/nonexistent/mecab-dic") != std::string::npos);
    CHECK(p.status().message().find("mecab-ipadic-utf8") != std::string::npos);
  }

  TEST_CASE("empty and blank text") {
    auto p = pipeline();
    auto a = p->analyze("   ");
    REQUIRE(a.is_ok());
    CHECK(a->normalized.empty());
    CHECK(a->tokens.empty());
  }
}
