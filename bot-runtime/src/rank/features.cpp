#include "rank/features.hpp"

#include "text/utf8.hpp"

#include <algorithm>
#include <cmath>

namespace madoguchi::bot::detail {
namespace {

// Appends the character n-grams of `text` (code points) to `sink`.
template <typename Sink>
void char_ngrams(std::string_view text, std::size_t n, Sink&& sink) {
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < text.size();) {
    starts.push_back(i);
    next_code_point(text, i);
  }
  starts.push_back(text.size());
  std::size_t count = starts.size() - 1;
  if (count < n) {
    if (count > 0) sink(text);
    return;
  }
  for (std::size_t i = 0; i + n <= count; ++i) {
    sink(text.substr(starts[i], starts[i + n] - starts[i]));
  }
}

}  // namespace

void bm25_terms(const Analysis& a, std::vector<std::string>& out) {
  for (const auto& t : a.tokens) {
    if (!t.content) continue;
    out.push_back(t.text);
    if (t.kind == TokenKind::kUnknown) {
      // MeCab does not know the word: its character bigrams let a partial spelling match.
      char_ngrams(t.text, 2, [&](std::string_view g) {
        if (g.size() < t.text.size()) {
          std::string term(1, '#');
          term.append(g);
          out.push_back(std::move(term));
        }
      });
    }
  }
}

void model_features(const Analysis& a, std::vector<WeightedKey>& out) {
  const auto& toks = a.tokens;
  for (std::size_t i = 0; i < toks.size(); ++i) {
    const auto& t = toks[i];
    // Every word, function words too: "how", "can", "what" tell intents apart here,
    // although BM25 leaves them out.
    out.push_back({feature_key('w', t.text), 1.0f});
    if (i + 1 < toks.size()) {
      std::string bigram = t.text;
      bigram += ' ';
      bigram += toks[i + 1].text;
      out.push_back({feature_key('b', bigram), 0.8f});
    }
  }
  // Character n-grams: 2-grams of Japanese text (spelling variants, segmentation errors),
  // 4-grams of ASCII words with boundary marks (morphology, typos).
  const std::string& s = a.normalized;
  std::string run;
  auto flush_run = [&]() {
    if (!run.empty()) {
      char_ngrams(run, 2, [&](std::string_view g) { out.push_back({feature_key('j', g), 0.5f}); });
      run.clear();
    }
  };
  for (std::size_t i = 0; i < s.size();) {
    std::size_t start = i;
    char32_t c = next_code_point(s, i);
    if (is_japanese(c) || c == 0x30FC) {
      run.append(s, start, i - start);
    } else {
      flush_run();
    }
  }
  flush_run();
  // Every ASCII word of the text as written (not stemmed, function words too), between
  // boundary marks: " order " gives " ord", "orde", "rder", "der ". Words of one or two
  // letters give none.
  auto word_char = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '\''; };
  std::string padded;
  for (std::size_t i = 0; i < s.size();) {
    if (!word_char(s[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < s.size() && word_char(s[j])) ++j;
    if (j - i >= 3) {
      padded.assign(1, ' ').append(s, i, j - i).push_back(' ');
      for (std::size_t k = 0; k + 4 <= padded.size(); ++k) {
        out.push_back({feature_key('c', std::string_view(padded).substr(k, 4)), 0.4f});
      }
    }
    i = j;
  }
}

void count_features(std::vector<WeightedKey>& keys, std::vector<WeightedKey>& out) {
  std::sort(keys.begin(), keys.end(), [](const auto& x, const auto& y) { return x.key < y.key; });
  out.clear();
  for (std::size_t i = 0; i < keys.size();) {
    std::size_t j = i;
    float tf = 0;
    while (j < keys.size() && keys[j].key == keys[i].key) tf += 1.0f, ++j;
    out.push_back({keys[i].key, keys[i].weight * (1.0f + std::log(tf))});
    i = j;
  }
}

}  // namespace madoguchi::bot::detail
