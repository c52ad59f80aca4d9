// The text pipeline: ICU normalization, MeCab for Japanese, word breaking + Snowball for
// English, the user dictionary and synonyms.
#include <madoguchi/bot/text.hpp>

#include "text/pool.hpp"
#include "text/utf8.hpp"

#include <mecab.h>
#include <libstemmer.h>
#include <unicode/brkiter.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

namespace madoguchi::bot {
inline namespace v1 {

std::size_t find_invalid_utf8(std::string_view text) noexcept {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    char32_t min;
    char32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000, cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

namespace {

using detail::append_utf8;
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

// Japanese base forms that are too common to mean anything in a shop question.
const std::unordered_set<std::string_view>& japanese_stop_words() {
  static const std::unordered_set<std::string_view> words = {
      "する", "ある", "いる", "なる", "れる", "られる", "せる", "させる", "こと", "もの",
      "よう", "ため", "ない", "の",   "ん",   "です",   "ます", "くださる", "下さる", "いただく",
      "頂く", "おる", "てる", "ちゃう", "しまう", "みる", "くる", "いく", "もらう", "やる"};
  return words;
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

// Splits a comma-separated MeCab feature string into at most N fields.
template <std::size_t N>
std::size_t split_feature(std::string_view feature, std::array<std::string_view, N>& out) {
  std::size_t n = 0;
  std::size_t start = 0;
  while (n < N) {
    std::size_t comma = feature.find(',', start);
    if (comma == std::string_view::npos) {
      out[n++] = feature.substr(start);
      break;
    }
    out[n++] = feature.substr(start, comma - start);
    start = comma + 1;
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

  // User dictionary: normalized terms grouped by their first byte, longest first.
  std::unordered_map<unsigned char, std::vector<std::string>> user_terms;
  // Synonyms: normalized alias -> canonical, longest alias first.
  std::vector<std::pair<std::string, std::string>> synonyms;

  Result<std::string> normalize(std::string_view text) const;
  void apply_synonyms(std::string& text) const;
  void tokenize_english(std::string_view text, std::vector<Token>& out) const;
  void add_english_word(std::string_view word, std::vector<Token>& out, Stemmer* stemmer) const;
  Status tokenize_japanese(std::string_view text, std::vector<Token>& out) const;
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

  for (const auto& term : options.user_terms) {
    auto norm = impl->normalize(term);
    if (!norm) return invalid_argument("user dictionary term: " + norm.status().message());
    if (norm->empty()) continue;
    auto& bucket = impl->user_terms[static_cast<unsigned char>((*norm)[0])];
    bucket.push_back(std::move(*norm));
  }
  for (auto& [first, terms] : impl->user_terms) {
    std::sort(terms.begin(), terms.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    terms.erase(std::unique(terms.begin(), terms.end()), terms.end());
  }

  for (std::size_t g = 0; g < options.synonyms.size(); ++g) {
    const auto& group = options.synonyms[g];
    if (group.size() < 2) continue;
    auto canonical = impl->normalize(group[0]);
    if (!canonical) return invalid_argument("synonym group " + std::to_string(g + 1) + ": " +
                                            canonical.status().message());
    for (std::size_t k = 1; k < group.size(); ++k) {
      auto alias = impl->normalize(group[k]);
      if (!alias) return invalid_argument("synonym group " + std::to_string(g + 1) + ": " +
                                          alias.status().message());
      if (alias->empty() || *alias == *canonical) continue;
      impl->synonyms.emplace_back(std::move(*alias), *canonical);
    }
  }
  std::stable_sort(impl->synonyms.begin(), impl->synonyms.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

  return std::shared_ptr<const TextPipeline>(new TextPipeline(std::move(impl)));
}

Result<std::string> TextPipeline::Impl::normalize(std::string_view text) const {
  if (std::size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    return invalid_argument("invalid UTF-8 at byte " + std::to_string(bad) +
                            ": send text encoded as UTF-8");
  }
  std::string folded;
  if (is_ascii(text)) {
    // Fast path: NFKC + case folding of ASCII is lower-casing.
    folded.assign(text);
    for (char& c : folded) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
  } else {
    UErrorCode err = U_ZERO_ERROR;
    icu::UnicodeString src = icu::UnicodeString::fromUTF8(
        icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
    icu::UnicodeString dst = nfkc_cf->normalize(src, err);
    if (U_FAILURE(err)) return internal_error(std::string("ICU normalize: ") + u_errorName(err));
    dst.toUTF8String(folded);
  }

  // Japanese variants NFKC leaves apart, and white space collapsed.
  std::string out;
  out.reserve(folded.size());
  char32_t prev = 0;
  bool pending_space = false;
  for (std::size_t i = 0; i < folded.size();) {
    char32_t c = next_code_point(folded, i);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0x3000) {
      pending_space = !out.empty();
      continue;
    }
    if (c < 0x20 || c == 0x7F) continue;  // control characters
    if (c == 0x301C || c == 0x2053) c = '~';  // wave dash variants
    // Long-vowel mark written with a dash after katakana: "ケーキ" typed as "ケ-キ".
    if ((c == '-' || c == 0x2010 || c == 0x2011 || c == 0x2012 || c == 0x2013 || c == 0x2014 ||
         c == 0x2015 || c == 0x2212) &&
        (is_katakana(prev) || prev == 0x30FC)) {
      c = 0x30FC;
    }
    if (pending_space) {
      out += ' ';
      pending_space = false;
    }
    append_utf8(out, c);
    prev = c;
  }
  return out;
}

Result<std::string> TextPipeline::normalize(std::string_view utf8) const {
  return impl_->normalize(utf8);
}

std::string_view TextPipeline::detect_locale(std::string_view utf8) noexcept {
  for (std::size_t i = 0; i < utf8.size();) {
    if (static_cast<unsigned char>(utf8[i]) < 0x80) {
      ++i;
      continue;
    }
    if (is_japanese(next_code_point(utf8, i))) return "ja";
  }
  return "en";
}

void TextPipeline::Impl::apply_synonyms(std::string& text) const {
  for (const auto& [alias, canonical] : synonyms) {
    std::size_t pos = text.find(alias);
    while (pos != std::string::npos) {
      if (detail::at_word_boundary(text, pos, alias.size())) {
        text.replace(pos, alias.size(), canonical);
        pos = text.find(alias, pos + canonical.size());
      } else {
        pos = text.find(alias, pos + 1);
      }
    }
  }
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
    add_english_word(word, out, stemmer ? &*stemmer : nullptr);
  }
}

Status TextPipeline::Impl::tokenize_japanese(std::string_view text, std::vector<Token>& out) const {
  auto worker = mecab_pool.take();
  if (!worker) return unavailable("MeCab could not create a tagger");
  MeCab::Lattice* lattice = worker->lattice.get();
  lattice->set_sentence(text.data(), text.size());
  if (!worker->tagger->parse(lattice)) {
    return internal_error(std::string("MeCab parse failed: ") + lattice->what());
  }
  std::array<std::string_view, 9> f;
  for (const MeCab::Node* node = lattice->bos_node(); node; node = node->next) {
    if (node->stat == MECAB_BOS_NODE || node->stat == MECAB_EOS_NODE) continue;
    std::string_view surface(node->surface, node->length);
    if (surface.empty()) continue;
    std::size_t nf = split_feature(std::string_view(node->feature), f);
    std::string_view pos = nf > 0 ? f[0] : std::string_view();
    std::string_view pos1 = nf > 1 ? f[1] : std::string_view();
    if (pos == "記号") continue;

    // Latin words inside Japanese text go through the English path (stemming).
    if (is_ascii(surface)) {
      bool has_alnum = std::any_of(surface.begin(), surface.end(), detail::is_ascii_alnum);
      if (has_alnum) tokenize_english(surface, out);
      continue;
    }
    Token t;
    bool unknown = node->stat == MECAB_UNK_NODE;
    std::string_view base = nf > 6 && f[6] != "*" ? f[6] : surface;
    t.text.assign(unknown ? surface : base);
    t.kind = unknown ? TokenKind::kUnknown : TokenKind::kWord;
    bool content_pos = pos == "名詞" || pos == "動詞" || pos == "形容詞" || pos == "副詞" ||
                       pos == "接頭詞" || pos == "感動詞" || pos == "連体詞";
    if (pos1 == "非自立" || pos1 == "接尾" || pos1 == "代名詞" || pos == "接頭詞") content_pos = false;
    if (pos == "名詞" && pos1 == "接尾" && (f[2] == "サ変接続" || f[2] == "一般")) content_pos = true;
    t.content = content_pos && !japanese_stop_words().contains(t.text);
    out.push_back(std::move(t));
  }
  return Status::ok();
}

Result<Analysis> TextPipeline::analyze(std::string_view utf8) const {
  Analysis a;
  MDG_ASSIGN_OR_RETURN(a.normalized, impl_->normalize(utf8));
  impl_->apply_synonyms(a.normalized);
  a.locale = std::string(detect_locale(a.normalized));
  const std::string& s = a.normalized;

  // Cut the text at user-dictionary terms (longest match first), tokenize the gaps.
  auto tokenize_gap = [&](std::size_t begin, std::size_t end) -> Status {
    if (end <= begin) return Status::ok();
    std::string_view gap(s.data() + begin, end - begin);
    if (detect_locale(gap) == "ja") return impl_->tokenize_japanese(gap, a.tokens);
    impl_->tokenize_english(gap, a.tokens);
    return Status::ok();
  };
  std::size_t gap_start = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t matched = 0;
    if (!impl_->user_terms.empty()) {
      auto it = impl_->user_terms.find(static_cast<unsigned char>(s[i]));
      if (it != impl_->user_terms.end()) {
        for (const auto& term : it->second) {
          if (s.compare(i, term.size(), term) == 0 && detail::at_word_boundary(s, i, term.size())) {
            matched = term.size();
            MDG_RETURN_IF_ERROR(tokenize_gap(gap_start, i));
            a.tokens.push_back(Token{term, TokenKind::kUserTerm, true});
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
  return a;
}

}  // namespace v1
}  // namespace madoguchi::bot
