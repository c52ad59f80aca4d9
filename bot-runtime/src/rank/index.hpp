// The retrieval index: BM25 over each entry's questions and answer text, and a linear model
// over word and character n-grams trained on the questions at load time (docs/ranking.md).
#pragma once

#include <madoguchi/bot/bot.hpp>
#include <madoguchi/bot/knowledge.hpp>
#include <madoguchi/bot/text.hpp>

#include "rank/features.hpp"
#include "text/pool.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace madoguchi::bot::detail {

struct Posting {
  std::uint32_t doc;
  // While the index is built, the term's frequency in the document; then its BM25
  // term-frequency part tf·(k1 + 1) / (tf + k1·(1 − b + b·|d|/avgdl)).
  float tf;
};

struct ClassWeight {
  std::uint32_t entry;
  float w;
};

// The linear model's weights by feature, all in one array: feature f's are the slots
// [start(f), start(f + 1)), sorted by entry. One block instead of a vector per feature keeps
// a feature's weights next to its neighbours' (training's threads each update a range of
// features, and do not share cache lines inside it) and costs no allocation per feature.
class WeightTable {
 public:
  // Features 0..counts.size()-1, with counts[f] weights each (entries and values to be set).
  void allot(const std::vector<std::uint32_t>& counts) {
    start_.assign(counts.size() + 1, 0);
    for (std::size_t f = 0; f < counts.size(); ++f) start_[f + 1] = start_[f] + counts[f];
    slots_.assign(start_.back(), ClassWeight{0, 0.0f});
  }
  bool empty() const noexcept { return start_.empty(); }  // no model
  std::size_t features() const noexcept { return start_.empty() ? 0 : start_.size() - 1; }
  std::size_t weights() const noexcept { return slots_.size(); }
  std::size_t size(std::uint32_t f) const noexcept { return start_[f + 1] - start_[f]; }
  std::uint32_t start(std::uint32_t f) const noexcept { return start_[f]; }
  std::span<ClassWeight> operator[](std::uint32_t f) noexcept { return {slots_.data() + start_[f], size(f)}; }
  std::span<const ClassWeight> operator[](std::uint32_t f) const noexcept {
    return {slots_.data() + start_[f], size(f)};
  }
  std::vector<ClassWeight>& slots() noexcept { return slots_; }  // every weight, feature by feature
  // Drops the weights for which `drop` is true, keeping the order.
  template <typename Drop>
  void erase_if(Drop drop) {
    std::size_t out = 0;
    for (std::size_t f = 0; f + 1 < start_.size(); ++f) {
      const std::uint32_t begin = start_[f], end = start_[f + 1];
      start_[f] = static_cast<std::uint32_t>(out);
      for (std::uint32_t k = begin; k < end; ++k) {
        if (!drop(slots_[k])) slots_[out++] = slots_[k];
      }
    }
    if (!start_.empty()) start_.back() = static_cast<std::uint32_t>(out);
    slots_.resize(out);
    slots_.shrink_to_fit();
  }
  std::size_t memory_bytes() const noexcept {
    return start_.capacity() * sizeof(std::uint32_t) + slots_.capacity() * sizeof(ClassWeight);
  }

 private:
  std::vector<std::uint32_t> start_;  // features + 1 offsets into slots_; empty without a model
  std::vector<ClassWeight> slots_;
};

// What one call has gathered for an entry; the logit is linear + gamma * bm25.
struct EntryScore {
  float linear = 0;  // the linear model's part
  float bm25 = 0;    // normalized BM25
  bool touched = false;
};

// Per-call scratch: dense accumulators with the list of touched slots to reset. Aligned to a
// cache line, so that the scratches of two threads never share one.
struct alignas(64) Scratch {
  std::vector<float> doc_score;
  std::vector<EntryScore> entry;  // by entry; one place, so that a touch costs one cache line
  std::vector<std::uint32_t> touched_docs;
  std::vector<std::uint32_t> touched_entries;
  std::vector<std::string> terms;
  std::vector<WeightedKey> keys;
  std::vector<WeightedKey> counted;
  std::vector<std::pair<std::uint32_t, float>> features;  // feature id, value
  std::vector<std::uint64_t> ranking;  // entries to rank (see rank_key())
  std::vector<double> exps;            // softmax

  // An entry's accumulator, marked as scored in this call so that reset() clears it.
  EntryScore& touch(std::uint32_t e) {
    EntryScore& es = entry[e];
    if (!es.touched) {
      es.touched = true;
      touched_entries.push_back(e);
    }
    return es;
  }
};

class Team;

struct Ranked {
  std::uint32_t entry;
  float z;     // logit
  float bm25;  // normalized BM25
  float p;     // confidence
};

class Index {
 public:
  // Text analysis and the training examples are prepared on `threads` threads (0: one per
  // hardware thread); the index and model are the same whatever the number.
  static Result<std::unique_ptr<Index>> build(const KnowledgeBase& kb, const TextPipeline& text,
                                              const RankingSettings& settings, unsigned threads = 1);

  // Candidates for an analysed text, best first, at most `k`.
  std::vector<Ranked> rank(const Analysis& a, std::size_t k) const;

  std::size_t terms() const noexcept { return term_ids_.size(); }
  std::size_t features() const noexcept { return feature_ids_.size(); }
  std::size_t weights() const noexcept;
  std::size_t questions() const noexcept { return doc_entry_.size(); }
  std::size_t memory_bytes() const noexcept;
  bool calibrated() const noexcept { return calibrated_; }
  std::size_t calibration_examples() const noexcept { return calibration_examples_; }

 private:
  struct Field {
    std::vector<std::vector<Posting>> postings;  // by term id; the lengths are in the tf parts
    std::vector<float> idf;                      // by term id
  };

  // The features of an analysis as (id, tf-idf value), L2-normalized; unknown ones dropped.
  void vectorize(const Analysis& a, Scratch& s) const;
  // A question's counted features by id (all in the vocabulary): each times its idf, then
  // L2-normalized, as vectorize() would give them.
  void apply_idf(std::vector<std::pair<std::uint32_t, float>>& features) const;
  // Accumulates normalized BM25 per entry into s.entry[e].bm25 (touched list); `skip_doc`
  // leaves one question out (training). Returns nothing; entries are marked touched.
  void score_bm25(const Analysis& a, Scratch& s, std::uint32_t skip_doc) const;
  void reset(Scratch& s) const;
  void top_k(Scratch& s, std::size_t k, std::vector<Ranked>& out, double null_logit) const;
  struct Example;
  struct Trainer;
  // `passes` passes of softmax regression over (null, top candidates) on the examples `order`
  // lists, going on from the weights and the state in `t`; batches of examples are shared by
  // the team's threads, with the same result whatever their number.
  void train(const std::vector<Example>& examples, std::vector<std::uint32_t> order, int passes, Trainer& t,
             Team& team);
  // Replaces the weights by their mean over the training so far (with settings.average).
  void average(const Trainer& t);
  // Fills ex.reach (its BM25 shortlist and features must be set, the weights allotted).
  void find_reach(Example& ex, Scratch& s) const;
  // Logits of every entry for an example's features plus its BM25 shortlist.
  void forward(const Example& ex, Scratch& s) const;
  // Adds the linear model's score of (feature id, value) pairs to the entries' `linear`.
  // Entries with a BM25 part must be touched before (see kNominateMaxEntries). With
  // `reach` (an example's, see Example::reach), the common features add only the weights
  // it names: the same sums, since the others are of entries left untouched.
  void add_linear(const std::vector<std::pair<std::uint32_t, float>>& features, Scratch& s,
                  const std::uint64_t* reach = nullptr) const;
  // Fits the confidence calibration on questions held out of training.
  void calibrate(const std::vector<Example>& examples, const std::vector<std::uint32_t>& held_out, Scratch& s);
  float confidence(float p, float z, float z_other) const noexcept;
  // The logit the first of `cands` (best first) is compared with in its confidence: the
  // second-highest of all entries, the second candidate's or 0, the logit of every entry
  // that the message did not reach (`touched` entries were scored).
  float runner_up(const std::vector<Ranked>& cands, std::size_t touched) const noexcept;
  float logit(const EntryScore& es) const noexcept { return es.linear + gamma_ * es.bm25; }

  RankingSettings settings_;
  std::size_t entry_count_ = 0;
  std::unordered_map<std::string, std::uint32_t> term_ids_;
  Field questions_;
  Field answers_;  // one document per entry: every locale's answer text
  std::vector<std::uint32_t> doc_entry_;  // question doc -> entry
  float max_idf_ = 1;

  std::unordered_map<std::uint64_t, std::uint32_t> feature_ids_;
  std::vector<float> feature_idf_;
  WeightTable weights_;  // by feature id
  float gamma_ = 1.0f;  // weight of normalized BM25 in the logit: bm25_weight with the model, else 1

  // Confidence = sigmoid(cal_[0]*p + cal_[1]*(z - z_other) + cal_[2]*z + cal_[3]), fitted on
  // held-out questions; the identity on p until fitted.
  float cal_[4] = {0, 0, 0, 0};
  bool calibrated_ = false;
  std::size_t calibration_examples_ = 0;

  mutable Pool<Scratch> scratch_{nullptr};
};

}  // namespace madoguchi::bot::detail
