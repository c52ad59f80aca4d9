// The text pipeline: ICU normalization, MeCab for Japanese, word breaking + Snowball for
// English, the user dictionary and synonyms.
#include <madoguchi/bot/text.hpp>
#include <madoguchi/detail/utf8.hpp>

#include "text/pool.hpp"
#include "text/utf8.hpp"

#include <mecab.h>
#include <libstemmer.h>
#include <unicode/uchar.h>
#include <unicode/brkiter.h>
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <bitset>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <unordered_map>
#include <unordered_set>

namespace madoguchi::bot {
inline namespace v1 {

std::size_t find_invalid_utf8(std::string_view text) noexcept { return madoguchi::detail::find_invalid_utf8(text); }

namespace {

using detail::is_ascii;
using detail::is_japanese;
using detail::is_katakana;
using detail::next_code_point;

#ifdef MDG_DEFAULT_MECAB_DICDIR
constexpr const char* kDefaultDicdir = MDG_DEFAULT_MECAB_DICDIR;
#else
constexpr const char* kDefaultDicdir = "/var/lib/mecab/dic/ipadic-utf8";
#endif

// English function words: they carry little meaning for retrieval on their own.
const std::unordered_set<std::string_view>& english_stop_words() {
  static const std::unordered_set<std::string_view> words = {
      "a",     "an",    "the",   "is",    "are",  "was",   "were",  "be",   "been", "am",
      "i",     "me",    "my",    "we",    "our",  "you",   "your",  "it",   "its",  "this",
      "that",  "these", "those", "to",    "of",   "in",    "on",    "at",   "for",  "with",
      "and",   "or",    "do",    "does",  "did",  "can",   "could", "would", "will", "shall",
      "should", "may",  "might", "there", "here", "please", "so",   "if",   "by",   "as",
      "from",  "about", "into",  "just",  "im",   "ive",   "id",    "ill",  "u",    "us",
      "he",    "she",   "they",  "them",  "his",  "her",   "their", "what", "how",  "when",
      "where", "which", "who",   "why",   "have", "has",   "had",   "get",  "got",  "some",
      "any",   "all",   "be",    "s",     "t",    "d",     "m",     "ll",   "re",   "ve"};
  return words;
}

// Japanese base forms that are too common to mean anything in a shop question. Called for
// every content word, so most words leave after one byte: all but two of the list are kana
// (UTF-8 lead byte 0xE3), and most content words are kanji.
bool is_japanese_stop_word(std::string_view w) {
  static const auto kana = [] {
    std::array<std::string_view, 28> words = {
        "する", "ある", "いる", "なる", "れる", "られる", "せる", "させる", "こと", "もの",
        "よう", "ため", "ない", "の", "ん", "です", "ます", "くださる", "いただく", "おる",
        "てる", "ちゃう", "しまう", "みる", "くる", "いく", "もらう", "やる"};
    std::sort(words.begin(), words.end());
    return words;
  }();
  if (w.empty()) return false;
  // 何 is a pronoun, and so a function word, on its own ("何ですか"); before a counter
  // ("何日", "何歳") ipadic tags it as a number, which would make it a content word.
  if (static_cast<unsigned char>(w[0]) != 0xE3) return w == "下さる" || w == "頂く" || w == "何";
  return std::binary_search(kana.begin(), kana.end(), w);
}

// The ipadic parts of speech the tokenizer tells apart (feature field 0).
enum class Pos {
  kNoun,       // 名詞
  kContent,    // 動詞 形容詞 副詞 感動詞 連体詞
  kSymbol,     // 記号
  kParticle,   // 助詞
  kAuxiliary,  // 助動詞
  kOther,      // 接頭詞 (prefixes), 接続詞, フィラー, その他
};

// One pass over a handful of short strings instead of a comparison per part of speech.
Pos classify_pos(std::string_view pos) noexcept {
  static constexpr std::pair<std::string_view, Pos> kTable[] = {
      {"名詞", Pos::kNoun},       {"動詞", Pos::kContent},     {"助詞", Pos::kParticle},
      {"助動詞", Pos::kAuxiliary}, {"記号", Pos::kSymbol},      {"形容詞", Pos::kContent},
      {"副詞", Pos::kContent},    {"感動詞", Pos::kContent},    {"連体詞", Pos::kContent}};
  for (const auto& [name, kind] : kTable) {
    if (pos.size() == name.size() && std::memcmp(pos.data(), name.data(), name.size()) == 0) return kind;
  }
  return Pos::kOther;
}

struct MecabWorker {
  std::unique_ptr<MeCab::Tagger> tagger;
  std::unique_ptr<MeCab::Lattice> lattice;
};

struct StemmerDeleter {
  void operator()(sb_stemmer* s) const noexcept { sb_stemmer_delete(s); }
};
struct Stemmer {
  std::unique_ptr<sb_stemmer, StemmerDeleter> stemmer;
};

struct WordBreaker {
  std::unique_ptr<icu::BreakIterator> it;
};

// Whether `s` is the literal: a comparison the compiler unrolls, for the loop over MeCab's nodes.
template <std::size_t N>
bool is(std::string_view s, const char (&literal)[N]) noexcept {
  return s.size() == N - 1 && std::memcmp(s.data(), literal, N - 1) == 0;
}

// Splits a NUL-terminated MeCab feature string ("名詞,サ変接続,*,*,*,*,返品,ヘンピン,...")
// into its first N fields in one pass, without measuring the rest of the string: the
// reading and pronunciation after the base form are never looked at.
template <std::size_t N>
std::size_t split_feature(const char* feature, std::array<std::string_view, N>& out) {
  std::size_t n = 0;
  const char* start = feature;
  for (const char* p = feature;; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0xE0 && (p[1] & 0x80) && (p[2] & 0x80)) {
      p += 2;  // a three-byte character (most of Japanese): neither ',' nor the end
      continue;
    }
    if (c == ',' || c == '\0') {
      out[n++] = std::string_view(start, static_cast<std::size_t>(p - start));
      if (c == '\0' || n == N) break;
      start = p + 1;
    }
  }
  return n;
}

}  // namespace

struct TextPipeline::Impl {
  std::string dicdir;
  std::unique_ptr<MeCab::Model> model;
  const icu::Normalizer2* nfkc_cf = nullptr;
  std::unique_ptr<icu::BreakIterator> word_breaker_prototype;
  mutable detail::Pool<MecabWorker> mecab_pool{nullptr};
  mutable detail::Pool<Stemmer> stemmer_pool{nullptr};
  mutable detail::Pool<WordBreaker> breaker_pool{nullptr};

  // User dictionary: normalized terms grouped by their first character, longest first.
  std::unordered_map<char32_t, std::vector<std::string>> user_terms;
  // Synonyms: normalized alias -> canonical, grouped by the alias's first character, longest first.
  std::unordered_map<char32_t, std::vector<std::pair<std::string, std::string>>> synonyms;
  // A filter on first characters (a bit per code point modulo 4096): most positions of a
  // text start no term or alias and are passed over without a map look-up.
  std::bitset<4096> term_start;
  std::bitset<4096> synonym_start;

  Result<std::string> normalize(std::string_view text) const;
  void apply_synonyms(std::string& text) const;
  void tokenize_english(std::string_view text, std::vector<Token>& out) const;
  void add_english_word(std::string_view word, std::vector<Token>& out, Stemmer* stemmer) const;
  // `terms`: user-dictionary terms in `text` as (byte offset, size), in order, each a token
  // of its own; MeCab reads the rest with the terms' edges as word boundaries.
  Status tokenize_japanese(std::string_view text, std::vector<Token>& out,
                           std::span<const std::pair<std::size_t, std::size_t>> terms = {}) const;
};

TextPipeline::TextPipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TextPipeline::~TextPipeline() = default;

const std::string& TextPipeline::mecab_dicdir() const noexcept { return impl_->dicdir; }

Result<std::shared_ptr<const TextPipeline>> TextPipeline::create(TextOptions options) {
  auto impl = std::make_unique<Impl>();

  UErrorCode uerr = U_ZERO_ERROR;
  impl->nfkc_cf = icu::Normalizer2::getNFKCCasefoldInstance(uerr);
  if (U_FAILURE(uerr)) {
    return internal_error(std::string("ICU NFKC_Casefold normalizer: ") + u_errorName(uerr));
  }
  impl->word_breaker_prototype.reset(
      icu::BreakIterator::createWordInstance(icu::Locale::getRoot(), uerr));
  if (U_FAILURE(uerr)) {
    return internal_error(std::string("ICU word break iterator: ") + u_errorName(uerr));
  }

  impl->dicdir = options.mecab_dicdir;
  if (impl->dicdir.empty()) {
    if (const char* env = std::getenv("MADOGUCHI_MECAB_DICDIR"); env && *env) {
      impl->dicdir = env;
    } else {
      impl->dicdir = kDefaultDicdir;
    }
  }
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(impl->dicdir) / "sys.dic", ec)) {
    return not_found("MeCab dictionary not found: '" + impl->dicdir +
                     "' has no sys.dic; install mecab-ipadic-utf8 (scripts/install-deps) or "
                     "name a dictionary folder with --mecab-dicdir / MADOGUCHI_MECAB_DICDIR");
  }
  // -r /dev/null would break on platforms without it; point mecabrc at the dictionary's own
  // dicrc, which MeCab accepts as a resource file.
  std::string args = "-d " + impl->dicdir + " -r " + (std::filesystem::path(impl->dicdir) / "dicrc").string();
  impl->model.reset(MeCab::createModel(args.c_str()));
  if (!impl->model) {
    return unavailable("MeCab could not load the dictionary '" + impl->dicdir +
                       "': " + MeCab::getLastError());
  }

  MeCab::Model* model = impl->model.get();
  impl->mecab_pool.set_factory([model]() -> std::unique_ptr<MecabWorker> {
    auto w = std::make_unique<MecabWorker>();
    w->tagger.reset(model->createTagger());
    w->lattice.reset(model->createLattice());
    if (!w->tagger || !w->lattice) return nullptr;
    return w;
  });
  impl->stemmer_pool.set_factory([]() -> std::unique_ptr<Stemmer> {
    auto s = std::make_unique<Stemmer>();
    s->stemmer.reset(sb_stemmer_new("english", "UTF_8"));
    if (!s->stemmer) return nullptr;
    return s;
  });
  const icu::BreakIterator* proto = impl->word_breaker_prototype.get();
  impl->breaker_pool.set_factory([proto]() -> std::unique_ptr<WordBreaker> {
    auto b = std::make_unique<WordBreaker>();
    b->it.reset(proto->clone());
    if (!b->it) return nullptr;
    return b;
  });

  // Check once that everything the pools make can be made, so that analyze() fails early.
  {
    auto w = impl->mecab_pool.take();
    if (!w) return unavailable("MeCab could not create a tagger: " + std::string(MeCab::getLastError()));
    auto s = impl->stemmer_pool.take();
    if (!s) return internal_error("libstemmer has no English stemmer");
  }

  std::vector<std::string> user_terms;
  for (const auto& term : options.user_terms) {
    auto norm = impl->normalize(term);
    if (!norm) return invalid_argument("user dictionary term: " + norm.status().message());
    if (!norm->empty()) user_terms.push_back(std::move(*norm));
  }

  for (std::size_t g = 0; g < options.synonyms.size(); ++g) {
    const auto& group = options.synonyms[g];
    if (group.size() < 2) continue;
    auto canonical = impl->normalize(group[0]);
    if (!canonical) return invalid_argument("synonym group " + std::to_string(g + 1) + ": " +
                                            canonical.status().message());
    if (canonical->empty()) {
      return invalid_argument("synonym group " + std::to_string(g + 1) +
                              ": the first word is empty once normalized; the others would be deleted from every "
                              "message (put the word they stand for first)");
    }
    for (std::size_t k = 1; k < group.size(); ++k) {
      auto alias = impl->normalize(group[k]);
      if (!alias) return invalid_argument("synonym group " + std::to_string(g + 1) + ": " +
                                          alias.status().message());
      if (alias->empty() || *alias == *canonical) continue;
      std::size_t at = 0;
      char32_t first = next_code_point(*alias, at);
      impl->synonym_start.set(first & 4095u);
      impl->synonyms[first].emplace_back(std::move(*alias), *canonical);
    }
    // The canonical form matches as itself, so that an alias inside it ("プリンタ" in
    // "プリンター", "promo" in "promo code") is not replaced within it.
    std::size_t at = 0;
    char32_t first = next_code_point(*canonical, at);
    impl->synonym_start.set(first & 4095u);
    impl->synonyms[first].emplace_back(*canonical, *canonical);
  }
  for (auto& [first, aliases] : impl->synonyms) {
    std::stable_sort(aliases.begin(), aliases.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
  // User terms are looked for in text whose synonyms are already mapped: map theirs too.
  for (auto& term : user_terms) {
    impl->apply_synonyms(term);
    std::size_t at = 0;
    char32_t first = next_code_point(term, at);
    impl->term_start.set(first & 4095u);
    impl->user_terms[first].push_back(std::move(term));
  }
  for (auto& [first, terms] : impl->user_terms) {
    std::sort(terms.begin(), terms.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    terms.erase(std::unique(terms.begin(), terms.end()), terms.end());
  }

  return std::shared_ptr<const TextPipeline>(new TextPipeline(std::move(impl)));
}

// The last step of normalization, one character at a time: white space (line separators
// included) collapsed and trimmed, control characters dropped, wave dashes and apostrophes
// unified, and a dash right after katakana read as the long-vowel mark ("ケ-キ" is "ケーキ")
// unless a Latin letter or a digit follows it ("Tシャツ-M" keeps its hyphen).
class Emitter {
 public:
  explicit Emitter(std::string& out) : out_(out) {}

  void put(char32_t c, std::string_view bytes) {
    if (c >= 0x3041 && !pending_space_) {  // kana, kanji and the like: kept as they are
      out_.append(bytes);
      prev_ = c;
      long_vowel_dash_ = false;
      return;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0x3000 || c == 0x85 ||
        c == 0x2028 || c == 0x2029) {
      pending_space_ = !out_.empty();
      prev_ = ' ';  // a dash after a space is not a long vowel ("マイページ - ログイン")
      long_vowel_dash_ = false;
      return;
    }
    if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return;  // C0 and C1 controls, DEL
    if (c == 0x301C || c == 0x2053) {
      c = '~';
      bytes = "~";
    }
    if (c == 0x2019 || c == 0x2018 || c == 0x02BC) {  // typographic apostrophes: "can’t" is "can't"
      c = '\'';
      bytes = "'";
    }
    if (long_vowel_dash_ && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      out_.resize(out_.size() - 3);  // the ー was a hyphen before a size, a model number...
      out_ += '-';
    }
    long_vowel_dash_ = false;
    bool dash = c == '-' || (c >= 0x2010 && c <= 0x2015) || c == 0x2212;
    if (dash && (is_katakana(prev_) || prev_ == 0x30FC)) {
      c = 0x30FC;
      bytes = "\xE3\x83\xBC";  // ー
      long_vowel_dash_ = true;
    }
    if (pending_space_) {
      out_ += ' ';
      pending_space_ = false;
    }
    out_.append(bytes);
    prev_ = c;
  }

  // Characters at or above U+3041 that put() would keep as they are, `last` the final one.
  void put_kept(std::string_view bytes, char32_t last) {
    if (pending_space_) {
      out_ += ' ';
      pending_space_ = false;
    }
    out_.append(bytes);
    prev_ = last;
    long_vowel_dash_ = false;
  }

 private:
  std::string& out_;
  char32_t prev_ = 0;
  bool pending_space_ = false;
  bool long_vowel_dash_ = false;  // the last character written is a dash made ー
};

// The code point of a well-formed three-byte UTF-8 sequence at text[i], else 0.
inline char32_t three_byte_at(std::string_view text, std::size_t i) noexcept {
  if (i + 2 >= text.size()) return 0;
  const auto b0 = static_cast<unsigned char>(text[i]), b1 = static_cast<unsigned char>(text[i + 1]),
             b2 = static_cast<unsigned char>(text[i + 2]);
  if (b0 < 0xE0 || b0 >= 0xF0 || (b1 & 0xC0) != 0x80 || (b2 & 0xC0) != 0x80) return 0;
  return (static_cast<char32_t>(b0 & 0x0F) << 12) | (static_cast<char32_t>(b1 & 0x3F) << 6) |
         static_cast<char32_t>(b2 & 0x3F);
}

// Kana, kanji and CJK punctuation that NFKC_Casefold leaves as they are.
inline bool stable_cjk(char32_t c) noexcept {
  return (c >= 0x3000 && c <= 0x3035) || (c >= 0x3041 && c <= 0x3096) || c == 0x309D || c == 0x309E ||
         (c >= 0x30A1 && c <= 0x30FE) || (c >= 0x3400 && c <= 0x9FFF);
}

// NFKC + case folding without ICU for the text most messages are made of: ASCII, full-width
// ASCII, and the kana, kanji and CJK punctuation that NFKC_Casefold leaves unchanged.
// Returns false when the text has anything else (or is not valid UTF-8): ICU takes over.
static bool fold_common(std::string_view text, std::string& out) {
  out.clear();
  out.reserve(text.size());
  Emitter em(out);
  for (std::size_t i = 0; i < text.size();) {
    auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      char a = (b >= 'A' && b <= 'Z') ? static_cast<char>(b - 'A' + 'a') : static_cast<char>(b);
      em.put(static_cast<unsigned char>(a), std::string_view(&a, 1));
      ++i;
      continue;
    }
    const char32_t c = three_byte_at(text, i);
    if (c == 0) return false;  // 2- and 4-byte sequences, or broken ones: let the full path decide
    if (c >= 0x3041 && stable_cjk(c)) {  // a run of kana and kanji goes in one piece
      std::size_t end = i + 3;
      char32_t last = c;
      for (char32_t d; (d = three_byte_at(text, end)) >= 0x3041 && stable_cjk(d); end += 3) last = d;
      em.put_kept(text.substr(i, end - i), last);
      i = end;
      continue;
    }
    if (c >= 0xFF01 && c <= 0xFF5E) {  // full-width ASCII
      char a = static_cast<char>(c - 0xFEE0);
      if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
      em.put(static_cast<unsigned char>(a), std::string_view(&a, 1));
    } else if (stable_cjk(c)) {
      em.put(c, text.substr(i, 3));
    } else {
      return false;
    }
    i += 3;
  }
  return true;
}

Result<std::string> TextPipeline::Impl::normalize(std::string_view text) const {
  std::string out;
  if (fold_common(text, out)) return out;
  if (std::size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    return invalid_argument("invalid UTF-8 at byte " + std::to_string(bad) +
                            ": send text encoded as UTF-8");
  }
  // UTF-8 in, UTF-8 out: no round trip through UTF-16.
  std::string folded;
  folded.reserve(text.size() + 16);
  UErrorCode err = U_ZERO_ERROR;
  icu::StringByteSink<std::string> sink(&folded);
  nfkc_cf->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink, nullptr, err);
  if (U_FAILURE(err)) return internal_error(std::string("ICU normalize: ") + u_errorName(err));
  out.clear();
  out.reserve(folded.size());
  Emitter em(out);
  for (std::size_t i = 0; i < folded.size();) {
    std::size_t start = i;
    char32_t c = next_code_point(folded, i);
    em.put(c, std::string_view(folded).substr(start, i - start));
  }
  return out;
}

Result<std::string> TextPipeline::normalize(std::string_view utf8) const {
  return impl_->normalize(utf8);
}

std::string_view TextPipeline::detect_locale(std::string_view utf8) noexcept {
  return detail::any_code_point(utf8, detail::is_japanese) ? "ja" : "en";
}

void TextPipeline::Impl::apply_synonyms(std::string& text) const {
  if (synonyms.empty()) return;
  // One left-to-right pass; at each character the longest alias that starts there wins.
  std::string out;
  bool changed = false;
  std::size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    std::size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    std::size_t at = i;
    char32_t cp = next_code_point(text, at);
    const std::pair<std::string, std::string>* hit = nullptr;
    auto bucket = synonym_start.test(cp & 4095u) ? synonyms.find(cp) : synonyms.end();
    if (bucket != synonyms.end()) {
      for (const auto& pair : bucket->second) {
        const std::string& alias = pair.first;
        if (text.compare(i, alias.size(), alias) == 0 && detail::at_word_boundary(text, i, alias.size())) {
          hit = &pair;
          break;
        }
      }
    }
    if (hit && hit->first == hit->second) {  // a canonical form: kept as it is
      if (changed) out += hit->second;
      i += hit->first.size();
      continue;
    }
    if (hit) {
      if (!changed) out.assign(text, 0, i);
      changed = true;
      out += hit->second;
      i += hit->first.size();
      continue;
    }
    if (changed) out.append(text, i, len);
    i += len;
  }
  if (changed) text = std::move(out);
}

void TextPipeline::Impl::add_english_word(std::string_view word, std::vector<Token>& out,
                                          Stemmer* stemmer) const {
  // "order's" -> "order"; other apostrophes go: "don't" -> "dont".
  std::string w(word);
  if (w.size() > 2 && w.compare(w.size() - 2, 2, "'s") == 0) w.resize(w.size() - 2);
  w.erase(std::remove(w.begin(), w.end(), '\''), w.end());
  if (w.empty()) return;
  Token t;
  t.content = !english_stop_words().contains(w);
  if (stemmer) {
    const sb_symbol* stem = sb_stemmer_stem(stemmer->stemmer.get(),
                                            reinterpret_cast<const sb_symbol*>(w.data()),
                                            static_cast<int>(w.size()));
    if (stem) {
      t.text.assign(reinterpret_cast<const char*>(stem),
                    static_cast<std::size_t>(sb_stemmer_length(stemmer->stemmer.get())));
    }
  }
  if (t.text.empty()) t.text = std::move(w);
  out.push_back(std::move(t));
}

void TextPipeline::Impl::tokenize_english(std::string_view text, std::vector<Token>& out) const {
  auto stemmer = stemmer_pool.take();
  if (is_ascii(text)) {
    std::size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && !detail::is_ascii_alnum(text[i])) ++i;
      std::size_t start = i;
      while (i < text.size() && (detail::is_ascii_alnum(text[i]) ||
                                 (text[i] == '\'' && i + 1 < text.size() &&
                                  detail::is_ascii_alnum(text[i + 1]) && i > start))) {
        ++i;
      }
      if (i > start) add_english_word(text.substr(start, i - start), out, stemmer ? &*stemmer : nullptr);
    }
    return;
  }
  // Other scripts and accented Latin: ICU's word breaker (UAX #29).
  auto breaker = breaker_pool.take();
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  if (!breaker) return;
  breaker->it->setText(u);
  int32_t start = breaker->it->first();
  for (int32_t end = breaker->it->next(); end != icu::BreakIterator::DONE;
       start = end, end = breaker->it->next()) {
    if (breaker->it->getRuleStatus() == UBRK_WORD_NONE) continue;
    std::string word;
    u.tempSubStringBetween(start, end).toUTF8String(word);
    // ICU keeps "60,000" and "3.5" whole, where the ASCII path above splits them at the
    // punctuation: split them the same way, so that one é or emoji elsewhere in a message
    // does not change how its numbers match.
    std::size_t from = 0;
    for (std::size_t i = 0; i <= word.size(); ++i) {
      const bool cut = i == word.size() || word[i] == ',' || word[i] == '.';
      if (!cut) continue;
      if (i > from) add_english_word(std::string_view(word).substr(from, i - from), out, stemmer ? &*stemmer : nullptr);
      from = i + 1;
    }
  }
}

Status TextPipeline::Impl::tokenize_japanese(std::string_view text, std::vector<Token>& out,
                                             std::span<const std::pair<std::size_t, std::size_t>> terms) const {
  auto worker = mecab_pool.take();
  if (!worker) return unavailable("MeCab could not create a tagger");
  MeCab::Lattice* lattice = worker->lattice.get();
  lattice->set_sentence(text.data(), text.size());
  // MeCab reads the words around a term in their sentence ("さくらポイントはいつまで": は is a
  // particle after a noun), where cutting the text at the term left "はいつまで" to be read as
  // はい ("yes") and つま ("wife"). Only the term's edges are constrained: whatever nodes MeCab
  // makes inside it become the one term token.
  for (const auto& [at, size] : terms) {
    lattice->set_boundary_constraint(at, MECAB_TOKEN_BOUNDARY);
    lattice->set_boundary_constraint(at + size, MECAB_TOKEN_BOUNDARY);
  }
  if (!worker->tagger->parse(lattice)) {
    return internal_error(std::string("MeCab parse failed: ") + lattice->what());
  }
  std::array<std::string_view, 7> f;  // f[6] is the base form
  auto term = terms.begin();
  auto told = terms.end();  // the last term given its token
  for (const MeCab::Node* node = lattice->bos_node(); node; node = node->next) {
    if (node->stat == MECAB_BOS_NODE || node->stat == MECAB_EOS_NODE) continue;
    std::string_view surface(node->surface, node->length);
    if (surface.empty()) continue;
    const auto offset = static_cast<std::size_t>(node->surface - text.data());
    while (term != terms.end() && term->first + term->second <= offset) ++term;
    if (term != terms.end() && offset >= term->first) {  // a node of a term: the term's token once
      if (told != term) out.push_back(Token{std::string(text.substr(term->first, term->second)), TokenKind::kUserTerm, true});
      told = term;
      continue;
    }
    std::size_t nf = split_feature(node->feature, f);
    const Pos pos = classify_pos(nf > 0 ? f[0] : std::string_view());
    std::string_view pos1 = nf > 1 ? f[1] : std::string_view();
    if (pos == Pos::kSymbol || pos == Pos::kParticle || pos == Pos::kAuxiliary) {
      // Particles and auxiliaries are kept (flagged) for bigram features; symbols are not.
      if (pos == Pos::kSymbol) continue;
      out.push_back(Token{std::string(nf > 6 && !is(f[6], "*") ? f[6] : surface), TokenKind::kWord, false});
      continue;
    }

    // Latin words inside Japanese text go through the English path (stemming).
    if (is_ascii(surface)) {
      bool has_alnum = std::any_of(surface.begin(), surface.end(), detail::is_ascii_alnum);
      if (has_alnum) tokenize_english(surface, out);
      continue;
    }
    // Symbols ipadic does not know ("♪", "♡", "¥") come as nouns: a word needs a letter or a digit.
    if (!detail::any_code_point(surface, [](char32_t c) { return u_isalnum(static_cast<UChar32>(c)) != 0; })) continue;
    const bool unknown = node->stat == MECAB_UNK_NODE;
    const std::string_view word = unknown || nf <= 6 || is(f[6], "*") ? surface : f[6];
    bool content_pos = pos == Pos::kContent || pos == Pos::kNoun;
    if (is(pos1, "非自立") || is(pos1, "接尾") || is(pos1, "代名詞")) content_pos = false;
    if (pos == Pos::kNoun && is(pos1, "接尾") && nf > 2 && (is(f[2], "サ変接続") || is(f[2], "一般"))) {
      content_pos = true;
    }
    out.push_back(Token{std::string(word), unknown ? TokenKind::kUnknown : TokenKind::kWord,
                        content_pos && !is_japanese_stop_word(word)});
  }
  return Status::ok();
}

Result<Analysis> TextPipeline::analyze(std::string_view utf8) const {
  Analysis a;
  MDG_ASSIGN_OR_RETURN(a.normalized, impl_->normalize(utf8));
  a.tokens.reserve(a.normalized.size() / 3 + 4);
  a.folded = a.normalized;
  impl_->apply_synonyms(a.normalized);
  a.locale = std::string(detect_locale(a.normalized));
  const std::string& s = a.normalized;

  // Japanese text goes to MeCab whole, its user-dictionary terms (longest match first) as
  // word boundaries. Other text is cut at the terms, and the gaps are tokenized on their own.
  std::vector<std::pair<std::size_t, std::size_t>> term_spans;
  const bool japanese = a.locale == "ja";
  auto tokenize_gap = [&](std::size_t begin, std::size_t end) -> Status {
    if (japanese) return Status::ok();
    if (end <= begin) return Status::ok();
    std::string_view gap(s.data() + begin, end - begin);
    const bool whole = begin == 0 && end == s.size();  // no user term: the text's own locale
    if ((whole ? std::string_view(a.locale) : detect_locale(gap)) == "ja") return impl_->tokenize_japanese(gap, a.tokens);
    impl_->tokenize_english(gap, a.tokens);
    return Status::ok();
  };
  std::size_t gap_start = 0;
  std::size_t i = impl_->user_terms.empty() ? s.size() : 0;  // no dictionary: one gap
  while (i < s.size()) {
    std::size_t matched = 0;
    std::size_t at = i;
    char32_t cp = next_code_point(s, at);
    if (impl_->term_start.test(cp & 4095u)) {
      auto it = impl_->user_terms.find(cp);
      if (it != impl_->user_terms.end()) {
        for (const auto& term : it->second) {
          if (s.compare(i, term.size(), term) == 0 && detail::at_word_boundary(s, i, term.size())) {
            matched = term.size();
            MDG_RETURN_IF_ERROR(tokenize_gap(gap_start, i));
            if (japanese) {
              term_spans.emplace_back(i, term.size());
            } else {
              a.tokens.push_back(Token{term, TokenKind::kUserTerm, true});
            }
            break;
          }
        }
      }
    }
    if (matched) {
      i += matched;
      gap_start = i;
    } else {
      // Advance one code point.
      auto c = static_cast<unsigned char>(s[i]);
      i += c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    }
  }
  MDG_RETURN_IF_ERROR(tokenize_gap(gap_start, s.size()));
  if (japanese) MDG_RETURN_IF_ERROR(impl_->tokenize_japanese(s, a.tokens, term_spans));
  return a;
}

}  // namespace v1
}  // namespace madoguchi::bot
