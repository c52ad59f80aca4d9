// Query and question features shared by the BM25 index and the linear model (private).
#pragma once

#include <madoguchi/bot/text.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace madoguchi::bot::detail {

// FNV-1a over a feature kind and its text: the key of a feature in the model.
inline std::uint64_t feature_key(char kind, std::string_view text) noexcept {
  std::uint64_t h = 14695981039346656037ull;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  mix(static_cast<unsigned char>(kind));
  for (char c : text) mix(static_cast<unsigned char>(c));
  return h;
}

struct WeightedKey {
  std::uint64_t key;
  float weight;  // group weight before tf-idf
};

// BM25 terms: content tokens (user terms, words) and character bigrams of unknown words.
void bm25_terms(const Analysis& a, std::vector<std::string>& out);

// Linear-model features: content unigrams, token bigrams, character n-grams.
void model_features(const Analysis& a, std::vector<WeightedKey>& out);

// The features of a text counted: one per distinct key, in key order, with the value
// group weight · (1 + ln tf) that the idf then multiplies.
void count_features(std::vector<WeightedKey>& keys, std::vector<WeightedKey>& out);

}  // namespace madoguchi::bot::detail
