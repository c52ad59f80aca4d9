// madoguchi/bot/text.hpp: the text pipeline — normalize, detect the language, tokenize.
//
//   normalize: UTF-8 check, ICU NFKC + case folding (full/half width, case, compatibility
//              forms), Japanese long-vowel and wave-dash variants, white space collapsed.
//   locale:    "ja" when the text has kana or kanji, else "en".
//   tokenize:  Japanese with MeCab (base forms, content words), English with a word
//              breaker and the Snowball stemmer; designer terms (the user dictionary) stay
//              whole; synonyms map to one canonical term; character n-grams back up
//              words MeCab does not know.
//
// Thread-safety: a TextPipeline is immutable once created and every const member function
// may be called from any number of threads at once (per-thread MeCab taggers and stemmers
// are taken from an internal pool).
#pragma once

#include <madoguchi/status.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace madoguchi::bot {
inline namespace v1 {

struct TextOptions {
  // MeCab system dictionary. Empty: the dictionary the project is tested with
  // (mecab-ipadic-utf8, /var/lib/mecab/dic/ipadic-utf8), or $MADOGUCHI_MECAB_DICDIR.
  std::string mecab_dicdir;
  // Shop terms that must stay one token ("さくらポイント", "Sakura Express"). Any case/width.
  std::vector<std::string> user_terms;
  // Groups of words or phrases that mean the same; every member maps to the group's first.
  std::vector<std::vector<std::string>> synonyms;
};

enum class TokenKind : int {
  kWord = 0,      // a dictionary word (Japanese base form or English stem)
  kUserTerm = 1,  // a term from the user dictionary, kept whole
  kUnknown = 2,   // a word MeCab does not know; its character n-grams back it up
};

struct Token {
  std::string text;  // normalized term: base form (ja) or stem (en)
  TokenKind kind = TokenKind::kWord;
  bool content = true;  // false for function words (particles, auxiliaries, stop words)
};

struct Analysis {
  std::string normalized;     // the normalized text, synonyms mapped to their group's first
  std::string folded;         // the normalized text before synonyms (what regex rules see)
  std::string locale;         // "ja" or "en"
  std::vector<Token> tokens;  // every word in order, function words flagged
};

class TextPipeline {
 public:
  static Result<std::shared_ptr<const TextPipeline>> create(TextOptions options = {});
  ~TextPipeline();
  TextPipeline(const TextPipeline&) = delete;
  TextPipeline& operator=(const TextPipeline&) = delete;

  // Normalized text. Errors: kInvalidArgument for invalid UTF-8 (with the byte offset).
  Result<std::string> normalize(std::string_view utf8) const;

  // Normalize, detect the locale, tokenize.
  Result<Analysis> analyze(std::string_view utf8) const;

  // "ja" if the text has hiragana, katakana (half-width too) or kanji; "en" otherwise.
  static std::string_view detect_locale(std::string_view utf8) noexcept;

  const std::string& mecab_dicdir() const noexcept;

  struct Impl;

 private:
  explicit TextPipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Byte offset of the first invalid UTF-8 sequence, or npos when the text is valid. Truncated
// sequences, overlong forms, surrogates and code points over U+10FFFF are invalid; the C API
// checks its arguments with the same function (madoguchi/detail/utf8.hpp).
std::size_t find_invalid_utf8(std::string_view text) noexcept;

}  // namespace v1
}  // namespace madoguchi::bot
