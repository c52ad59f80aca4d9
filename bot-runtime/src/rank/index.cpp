#include "rank/index.hpp"

#include "rank/features.hpp"
#include "rank/parallel.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <random>

namespace madoguchi::bot::detail {
namespace {

RankingSettings clamped(RankingSettings s) {
  s.k1 = std::clamp(s.k1, 0.0, 3.0);
  s.b = std::clamp(s.b, 0.0, 1.0);
  s.question_weight = std::clamp(s.question_weight, 0.0, 10.0);
  s.answer_weight = std::clamp(s.answer_weight, 0.0, 10.0);
  s.bm25_weight = std::clamp(s.bm25_weight, 0.0, 20.0);
  s.epochs = std::clamp(s.epochs, 1, 50);
  s.l2 = std::clamp(s.l2, 0.0, 1.0);
  s.learning_rate = std::clamp(s.learning_rate, 1e-4, 50.0);
  s.shortlist = std::clamp(s.shortlist, 2, 200);
  s.null_logit = std::clamp(s.null_logit, -20.0, 20.0);
  return s;
}

float bm25_idf(std::size_t n_docs, std::size_t df) {
  double n = static_cast<double>(n_docs), d = static_cast<double>(df);
  return static_cast<float>(std::log(1.0 + (n - d + 0.5) / (d + 0.5)));
}

// A key whose order as an unsigned integer is the ranking order of (score, entry): higher
// score first, then lower entry. The order is strict, so the k best do not depend on the
// order the entries were scored in, and comparing one integer instead of a float and a
// tie-break makes choosing the best of a thousand entries several times faster.
std::uint64_t rank_key(float score, std::uint32_t entry) noexcept {
  auto bits = std::bit_cast<std::uint32_t>(score + 0.0f);  // + 0: -0 and 0 are one score
  bits = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
  return (std::uint64_t{bits} << 32) | ~entry;
}
std::uint32_t key_entry(std::uint64_t key) noexcept { return ~static_cast<std::uint32_t>(key); }

// The keys (rank_key()) of the k touched entries of `s` that score(EntryScore) ranks
// highest, greatest first.
template <typename Score>
void best_touched(const Scratch& s, std::size_t k, Score score, std::vector<std::uint64_t>& keys) {
  keys.clear();
  for (auto e : s.touched_entries) keys.push_back(rank_key(score(s.entry[e]), e));
  if (keys.size() > k) {
    std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k), keys.end(), std::greater<>());
    keys.resize(k);
  }
  std::sort(keys.begin(), keys.end(), std::greater<>());
}

// Each candidate's p: the softmax of the logits, with a null class of logit `tau` beside them.
// (`exps` is a buffer for the exponentials, so that each is computed once.)
void set_softmax(std::vector<Ranked>& cands, float tau, std::vector<double>& exps) {
  float m = tau;
  for (const auto& c : cands) m = std::max(m, c.z);
  double denom = std::exp(static_cast<double>(tau - m));
  exps.clear();
  for (const auto& c : cands) denom += exps.emplace_back(std::exp(static_cast<double>(c.z - m)));
  for (std::size_t i = 0; i < cands.size(); ++i) cands[i].p = static_cast<float>(exps[i] / denom);
}

// Divides feature values by the L2 norm whose square is `norm_sq` (nothing when it is 0).
void scale_to_unit(std::vector<std::pair<std::uint32_t, float>>& features, double norm_sq) {
  if (norm_sq <= 0) return;
  const auto inv = static_cast<float>(1.0 / std::sqrt(norm_sq));
  for (auto& f : features) f.second *= inv;
}

// Calibration needs this many held-out questions, and uses at most kMaxHeldOut.
constexpr std::size_t kMinHeldOut = 30, kMaxHeldOut = 3000;

// Features in more entries than this (or 0.5% of the entries, if more) get no weights.
constexpr std::size_t kMaxEntriesPerFeature = 160;

// A feature with weights for more entries than this does not make those entries candidates
// by itself: it adds to the entries that BM25 or rarer features brought. In a large knowledge
// base, "how" or " the" would otherwise put hundreds of entries in every ranking.
constexpr std::size_t kNominateMaxEntries = 32;

// Contiguous ranges of feature ids, one per thread, whose weights that thread alone updates
// in training. Weights of neighbouring ids lie side by side in memory, so threads rarely
// write to the same cache line. The ranges start with about equal work (the estimate given
// per feature) and are moved now and then so that the threads take about equal time: which
// thread updates a weight changes nothing in the result, only how long it takes.
class FeatureRanges {
 public:
  FeatureRanges(std::vector<double> work, unsigned parts)
      : prefix_(work.size() + 1, 0.0), bound_(parts + 1), time_(parts, 0.0) {
    for (std::size_t f = 0; f < work.size(); ++f) prefix_[f + 1] = prefix_[f] + work[f];
    for (unsigned j = 0; j <= parts; ++j) bound_[j] = at_work(prefix_.back() * j / parts, 0, work.size());
    bound_[parts] = UINT32_MAX;  // with one part, every id, whatever the size
  }

  bool owns(unsigned part, std::uint32_t f) const noexcept { return f >= bound_[part] && f < bound_[part + 1]; }

  // Time part `part` took; each part's own thread reports it.
  void took(unsigned part, std::chrono::steady_clock::duration d) noexcept {
    time_[part] += std::chrono::duration<double>(d).count();
  }

  // Every kWindow calls, moves the bounds so that each part would have taken the same time,
  // assuming the time per unit of work measured in each part holds across it.
  void rebalance() {
    const auto parts = static_cast<unsigned>(time_.size());
    if (parts < 2 || ++calls_ % kWindow != 0) return;
    const std::size_t n = prefix_.size() - 1;
    std::vector<std::size_t> lo(parts), hi(parts);
    double total = 0;
    for (unsigned j = 0; j < parts; ++j) {
      lo[j] = std::min<std::size_t>(bound_[j], n);
      hi[j] = std::min<std::size_t>(bound_[j + 1], n);
      total += time_[j];
    }
    std::vector<std::uint32_t> next(bound_);
    double before = 0;  // time of the parts before j
    unsigned j = 0;
    for (unsigned k = 1; k < parts; ++k) {
      const double target = total * k / parts;
      while (j + 1 < parts && before + time_[j] < target) before += time_[j++];
      const double work = prefix_[hi[j]] - prefix_[lo[j]];
      const double share = time_[j] > 0 ? std::clamp((target - before) / time_[j], 0.0, 1.0) : 0.5;
      next[k] = std::max(next[k - 1], at_work(prefix_[lo[j]] + share * work, lo[j], hi[j]));
    }
    bound_ = std::move(next);
    std::fill(time_.begin(), time_.end(), 0.0);
  }

 private:
  static constexpr unsigned kWindow = 16;

  // The first id in [lo, hi] at which the work before it reaches `w`.
  std::uint32_t at_work(double w, std::size_t lo, std::size_t hi) const {
    auto it = std::lower_bound(prefix_.begin() + static_cast<std::ptrdiff_t>(lo),
                               prefix_.begin() + static_cast<std::ptrdiff_t>(hi), w);
    return static_cast<std::uint32_t>(it - prefix_.begin());
  }

  std::vector<double> prefix_;        // work of the ids before each id
  std::vector<std::uint32_t> bound_;  // part j owns [bound_[j], bound_[j + 1])
  std::vector<double> time_;          // seconds per part since the last move
  unsigned calls_ = 0;
};

// Examples scored together with the same weights in training (see Index::train): one below
// kMinBatchedExamples, where training is quick anyway and stays exactly sequential SGD, and
// otherwise one per kExamplesPerBatchItem examples, up to kMaxBatch.
constexpr std::size_t kMinBatchedExamples = 2048, kExamplesPerBatchItem = 512, kMaxBatch = 64;

std::size_t training_batch(std::size_t examples) {
  if (examples < kMinBatchedExamples) return 1;
  return std::min(examples / kExamplesPerBatchItem, kMaxBatch);
}

// Words of a bit set of `n` bits.
constexpr std::size_t bit_words(std::size_t n) { return (n + 63) / 64; }

// Calls f(i) for every bit i set in the `n` bits at `words`, in increasing order.
template <typename F>
void for_each_bit(const std::uint64_t* words, std::size_t n, F&& f) {
  for (std::size_t w = 0; w < bit_words(n); ++w) {
    for (std::uint64_t m = words[w]; m != 0; m &= m - 1) f(w * 64 + static_cast<std::size_t>(std::countr_zero(m)));
  }
}

}  // namespace

// A training example: one question of one entry.
struct Index::Example {
  std::uint32_t entry;
  std::uint32_t doc;
  std::vector<std::pair<std::uint32_t, float>> features;
  std::vector<std::pair<std::uint32_t, float>> bm25;  // leave-one-out shortlist
  // The weights of its common features (those with weights for more than
  // kNominateMaxEntries entries) that its ranking adds up or its update may change: for each
  // such feature, in the order of `features`, one bit per weight (bit_words() words), set
  // when the weight's entry is the example's own or one that its BM25 shortlist or its rarer
  // features reach (every entry, when those reach fewer than a shortlist). In training
  // these entries never change, so each step skips the common features' other weights,
  // which are most of the weights an example meets, without looking at them.
  std::vector<std::uint64_t> reach;
  // For each of `features`: where its bits start in `reach`, or kNoReach for a rarer feature
  // (so that a training thread finds the bits of the features it updates without looking
  // at the others).
  std::vector<std::uint32_t> reach_at;
  static constexpr std::uint32_t kNoReach = UINT32_MAX;
};

// Averaged SGD state kept across calls, so that training can go on after the calibration.
struct Index::Trainer {
  // Lazy averaging: acc sums step * update, so the mean of the weights over all steps so far
  // is w - acc / step (which generalizes better than the last weights).
  std::vector<float> acc;  // by weight slot (WeightTable::slots())
  float step = 1.0f;
  int passes = 0;  // passes done: the learning rate decays with them
  std::mt19937 rng{20261125u};

  // A new averaging window and learning-rate schedule; the weights and the shuffling go on.
  void restart() {
    std::fill(acc.begin(), acc.end(), 0.0f);
    step = 1.0f;
    passes = 0;
  }
};

Result<std::unique_ptr<Index>> Index::build(const KnowledgeBase& kb, const TextPipeline& text,
                                            const RankingSettings& settings, unsigned threads) {
  auto index = std::unique_ptr<Index>(new Index());
  Index& ix = *index;
  ix.settings_ = clamped(settings);
  ix.entry_count_ = kb.entries.size();

  std::vector<Analysis> analyses;  // question docs, kept for training
  std::vector<std::string> terms;
  auto term_id = [&ix](const std::string& t) {
    auto [it, inserted] = ix.term_ids_.try_emplace(t, static_cast<std::uint32_t>(ix.term_ids_.size()));
    if (inserted) {
      ix.questions_.postings.emplace_back();
      ix.answers_.postings.emplace_back();
    }
    return it->second;
  };
  // Document lengths by document, for each field: the postings take them in below.
  std::vector<float> question_lens, answer_lens;
  auto add_doc = [&](Field& field, std::vector<float>& lens, std::uint32_t doc,
                     const std::vector<std::string>& doc_terms) {
    std::unordered_map<std::uint32_t, float> tf;
    for (const auto& t : doc_terms) tf[term_id(t)] += 1.0f;
    std::vector<std::pair<std::uint32_t, float>> sorted(tf.begin(), tf.end());
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [tid, f] : sorted) field.postings[tid].push_back({doc, f});
    lens.push_back(static_cast<float>(doc_terms.size()));
  };

  // Text analysis, the costliest part of reading an entry, runs on every thread; the
  // postings are then filled in entry order, so term ids do not depend on the threads.
  struct Text {
    const std::string* text;
    std::uint32_t entry;
    bool question;
  };
  std::vector<Text> texts;
  for (std::uint32_t e = 0; e < kb.entries.size(); ++e) {
    for (const auto& q : kb.entries[e].questions) texts.push_back({&q, e, true});
    for (const auto& [locale, answer] : kb.entries[e].answer.by_locale) texts.push_back({&answer, e, false});
  }
  std::vector<Result<Analysis>> analyzed(texts.size(), Result<Analysis>(Analysis{}));
  parallel_for(texts.size(), threads, 64, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) analyzed[i] = text.analyze(*texts[i].text);
  });

  std::size_t next = 0;  // in texts
  for (std::uint32_t e = 0; e < kb.entries.size(); ++e) {
    const Entry& entry = kb.entries[e];
    for (; next < texts.size() && texts[next].entry == e && texts[next].question; ++next) {
      auto& a = analyzed[next];
      if (!a) {
        return invalid_argument(entry.source + ": question \"" + *texts[next].text + "\": " + a.status().message());
      }
      terms.clear();
      bm25_terms(*a, terms);
      auto doc = static_cast<std::uint32_t>(ix.doc_entry_.size());
      add_doc(ix.questions_, question_lens, doc, terms);
      ix.doc_entry_.push_back(e);
      analyses.push_back(std::move(*a));
    }
    terms.clear();
    for (; next < texts.size() && texts[next].entry == e; ++next) {
      auto& a = analyzed[next];
      if (!a) return invalid_argument(entry.source + ": answer: " + a.status().message());
      bm25_terms(*a, terms);
      a = Analysis{};
    }
    add_doc(ix.answers_, answer_lens, e, terms);
  }
  analyzed.clear();

  for (auto [f, lens] : {std::pair{&ix.questions_, &question_lens}, std::pair{&ix.answers_, &answer_lens}}) {
    const std::size_t n = lens->size();
    double total = 0;
    for (float l : *lens) total += l;
    const float avg_len = n ? std::max(1.0f, static_cast<float>(total / static_cast<double>(n))) : 1.0f;
    f->idf.resize(f->postings.size());
    for (std::size_t t = 0; t < f->postings.size(); ++t) f->idf[t] = bm25_idf(n, f->postings[t].size());
    // k1, b and the lengths are fixed from here on: each posting keeps its BM25 term-frequency
    // part, so that scoring is one multiplication by the idf.
    const float k1 = static_cast<float>(ix.settings_.k1), b = static_cast<float>(ix.settings_.b);
    for (auto& plist : f->postings) {
      for (auto& p : plist) {
        float norm_len = 1 - b + b * (*lens)[p.doc] / avg_len;
        p.tf = p.tf * (k1 + 1) / (p.tf + k1 * norm_len);
      }
    }
  }
  ix.max_idf_ = bm25_idf(std::max<std::size_t>(1, ix.doc_entry_.size()), 0);

  const Index* self = &ix;
  ix.scratch_.set_factory([self]() {
    auto s = std::make_unique<Scratch>();
    s->doc_score.assign(self->doc_entry_.size(), 0.0f);
    s->entry.assign(self->entry_count_, EntryScore{});
    return s;
  });

  if (analyses.empty()) return index;
  const bool model = ix.settings_.classifier;
  // One training example per question; with the model, its features are filled in with the
  // vocabulary below, and the rest once the calibration split is known.
  std::vector<Example> examples(analyses.size());
  if (model) {
    ix.gamma_ = static_cast<float>(ix.settings_.bm25_weight);
    // Feature vocabulary and document frequencies over the questions. Each question's
    // features are counted on every thread; the ids are then given in question order, and
    // the question's example keeps (id, group weight · (1 + ln tf)).
    std::vector<std::vector<WeightedKey>> question_features(analyses.size());
    parallel_for(analyses.size(), threads, 64, [&](std::size_t begin, std::size_t end) {
      std::vector<WeightedKey> keys;
      for (std::size_t d = begin; d < end; ++d) {
        keys.clear();
        model_features(analyses[d], keys);
        count_features(keys, question_features[d]);
      }
    });
    std::vector<std::uint32_t> df;
    std::vector<std::vector<std::uint32_t>> entry_features(kb.entries.size());
    for (std::size_t d = 0; d < analyses.size(); ++d) {
      for (const auto& k : question_features[d]) {
        auto [it, inserted] = ix.feature_ids_.try_emplace(k.key, static_cast<std::uint32_t>(ix.feature_ids_.size()));
        if (inserted) df.push_back(0);
        ++df[it->second];
        entry_features[ix.doc_entry_[d]].push_back(it->second);
        examples[d].features.emplace_back(it->second, k.weight);
      }
      std::vector<WeightedKey>().swap(question_features[d]);
    }
    double n = static_cast<double>(analyses.size());
    ix.feature_idf_.resize(df.size());
    for (std::size_t f = 0; f < df.size(); ++f) {
      ix.feature_idf_[f] = static_cast<float>(std::log((n + 1.0) / (df[f] + 1.0)) + 1.0);
    }
    // A weight exists for every (feature, entry) pair seen in the entry's questions, except
    // for features found in very many entries: in a large knowledge base ("what", "the")
    // they tell little apart and would make every question touch every entry.
    std::vector<std::uint32_t> entry_df(df.size(), 0);
    for (auto& fs : entry_features) {
      std::sort(fs.begin(), fs.end());
      fs.erase(std::unique(fs.begin(), fs.end()), fs.end());
      for (auto f : fs) ++entry_df[f];
    }
    const auto max_entries = static_cast<std::uint32_t>(
        std::max<std::size_t>(kMaxEntriesPerFeature, kb.entries.size() / 200));
    for (auto& count : entry_df) count = count <= max_entries ? count : 0;
    ix.weights_.allot(entry_df);
    std::vector<std::uint32_t> next_slot(df.size());  // entries in increasing order in each feature
    for (std::uint32_t f = 0; f < df.size(); ++f) next_slot[f] = ix.weights_.start(f);
    for (std::uint32_t e = 0; e < entry_features.size(); ++e) {
      for (auto f : entry_features[e]) {
        if (entry_df[f] != 0) ix.weights_.slots()[next_slot[f]++].entry = e;
      }
    }
  }

  // Calibration: hold out every fourth question of entries that have four or more, train
  // on the rest, fit the confidence on the held-out ones, then train on everything.
  const auto n_docs = static_cast<std::uint32_t>(analyses.size());
  std::vector<std::uint32_t> train_set, held_out, all(n_docs);
  for (std::uint32_t i = 0; i < n_docs; ++i) all[i] = i;
  {
    std::vector<std::uint32_t> seen(ix.entry_count_, 0), total(ix.entry_count_, 0);
    for (auto e : ix.doc_entry_) ++total[e];
    std::size_t rich = 0;  // questions that entries with four or more would give
    for (auto t : total) rich += t >= 4 ? t / 4 : 0;
    // An FAQ with few questions an entry (1-3) holds out the second question of entries
    // that have two or three, so that its confidence is calibrated too.
    const bool sparse = rich < kMinHeldOut;
    for (std::uint32_t i = 0; i < n_docs; ++i) {
      std::uint32_t e = ix.doc_entry_[i];
      bool hold = total[e] >= 4 ? seen[e] % 4 == 3 : (sparse && total[e] >= 2 && seen[e] == 1);
      ++seen[e];
      (hold ? held_out : train_set).push_back(i);
    }
  }
  if (held_out.size() > kMaxHeldOut) {  // an even stride keeps every part of the KB
    std::vector<std::uint32_t> thinned;
    for (std::size_t i = 0; i < kMaxHeldOut; ++i) thinned.push_back(held_out[i * held_out.size() / kMaxHeldOut]);
    std::vector<std::uint8_t> keep_flag(n_docs, 0);
    for (auto i : thinned) keep_flag[i] = 1;
    for (auto i : held_out) {
      if (!keep_flag[i]) train_set.push_back(i);
    }
    held_out = std::move(thinned);
  }
  const bool calibrate = held_out.size() >= kMinHeldOut;
  if (!model && !calibrate) return index;

  // Examples: features and the leave-one-out BM25 shortlist (without the model, only the
  // held-out questions are needed), each on its own, so on every thread.
  const std::vector<std::uint32_t>& prepare = model ? all : held_out;
  parallel_for(prepare.size(), threads, 256, [&](std::size_t begin, std::size_t end) {
    auto lease = ix.scratch_.take();
    Scratch& s = *lease;
    auto keep = static_cast<std::size_t>(ix.settings_.shortlist) * 2;
    // The shortlist is built in a reused buffer: with a large KB a common word touches
    // many entries, and each example must keep only its `keep` best, not their capacity.
    std::vector<std::uint64_t> shortlist;
    for (std::size_t i = begin; i < end; ++i) {
      const std::uint32_t d = prepare[i];
      Example& ex = examples[d];
      ex.entry = ix.doc_entry_[d];
      ex.doc = d;
      if (model) ix.apply_idf(ex.features);
      ix.score_bm25(analyses[d], s, d);
      best_touched(s, keep, [](const EntryScore& es) { return es.bm25; }, shortlist);
      ex.bm25.clear();
      ex.bm25.reserve(shortlist.size());
      for (auto key : shortlist) ex.bm25.emplace_back(key_entry(key), s.entry[key_entry(key)].bm25);
      ix.reset(s);
      if (model) ix.find_reach(ex, s);
    }
  });
  analyses.clear();
  auto scratch = ix.scratch_.take();
  Scratch& s = *scratch;
  // With calibration: train on the questions not held out, calibrate that model on the
  // held-out ones, then go on training from the weights reached, over every question, for
  // half as many passes (with the learning rate and the averaging started again).
  // Without: train on every question.
  Trainer trainer;
  // Training runs on several threads when its examples come in batches.
  Team team(model && training_batch(all.size()) > 1 ? worker_count(threads, all.size(), kExamplesPerBatchItem) : 1);
  if (model && calibrate) {
    ix.train(examples, train_set, ix.settings_.epochs, trainer, team);
    const std::vector<ClassWeight> raw = ix.weights_.slots();  // before averaging, to go on from
    ix.average(trainer);
    ix.calibrate(examples, held_out, s);
    ix.weights_.slots() = raw;
    trainer.restart();
    ix.train(examples, all, (ix.settings_.epochs + 1) / 2, trainer, team);
  } else if (calibrate) {
    ix.calibrate(examples, held_out, s);
  } else if (model) {
    ix.train(examples, all, ix.settings_.epochs, trainer, team);
  }
  if (model) {
    ix.average(trainer);
    // Pairs the training never moved add nothing: drop them to keep postings short.
    ix.weights_.erase_if([](const ClassWeight& cw) { return std::fabs(cw.w) < 1e-6f; });
  }
  return index;
}

void Index::add_linear(const std::vector<std::pair<std::uint32_t, float>>& features, Scratch& s,
                       const std::uint64_t* reach) const {
  // Features in few entries (and BM25, before this) bring the candidates; the common ones
  // then add to those, unless there are fewer than a shortlist of them.
  for (const auto& [f, x] : features) {
    if (weights_[f].size() > kNominateMaxEntries) continue;
    for (const auto& cw : weights_[f]) s.touch(cw.entry).linear += x * cw.w;
  }
  const bool few = s.touched_entries.size() < static_cast<std::size_t>(settings_.shortlist);
  for (const auto& [f, x] : features) {
    const auto ws = weights_[f];
    if (ws.size() <= kNominateMaxEntries) continue;
    auto add = [&, x = x](std::size_t k) {
      if (few) {
        s.touch(ws[k].entry).linear += x * ws[k].w;
      } else if (EntryScore& es = s.entry[ws[k].entry]; es.touched) {
        es.linear += x * ws[k].w;
      }
    };
    if (reach) {
      for_each_bit(reach, ws.size(), add);
      reach += bit_words(ws.size());
    } else {
      for (std::size_t k = 0; k < ws.size(); ++k) add(k);
    }
  }
}

void Index::find_reach(Example& ex, Scratch& s) const {
  // The entries the example's ranking reaches are the ones forward() touches without a
  // reach: its BM25 shortlist and what add_linear() brings (every common feature's entries
  // too when the rest bring fewer than a shortlist).
  for (const auto& [e, b] : ex.bm25) s.touch(e);
  add_linear(ex.features, s);
  ex.reach.clear();
  ex.reach_at.assign(ex.features.size(), Example::kNoReach);
  for (std::size_t i = 0; i < ex.features.size(); ++i) {
    const auto ws = weights_[ex.features[i].first];
    if (ws.size() <= kNominateMaxEntries) continue;
    const std::size_t base = ex.reach.size();
    ex.reach_at[i] = static_cast<std::uint32_t>(base);
    ex.reach.resize(base + bit_words(ws.size()), 0);
    for (std::size_t k = 0; k < ws.size(); ++k) {
      if (ws[k].entry == ex.entry || s.entry[ws[k].entry].touched) {
        ex.reach[base + k / 64] |= std::uint64_t{1} << (k % 64);
      }
    }
  }
  reset(s);
}

void Index::forward(const Example& ex, Scratch& s) const {
  for (const auto& [e, b] : ex.bm25) s.touch(e).bm25 = b;
  add_linear(ex.features, s, ex.reach.data());
}

void Index::train(const std::vector<Example>& examples, std::vector<std::uint32_t> order, int passes, Trainer& t,
                  Team& team) {
  if (t.acc.empty()) t.acc.assign(weights_.weights(), 0.0f);
  const std::size_t batch = training_batch(order.size());
  const unsigned threads = team.size();
  // Per thread: a scoring scratch, the candidates, and the gradient by entry (zero outside
  // the example at hand). Per example of the batch: its gradient as (entry, value) pairs.
  // Each vector that a thread grows has a cache line of its own: two threads growing
  // neighbouring vectors would pass the line back and forth at every element.
  struct alignas(64) Candidates {
    std::vector<Ranked> list;
  };
  struct alignas(64) Gradient {
    std::vector<std::pair<std::uint32_t, float>> by_entry;
  };
  std::vector<Pool<Scratch>::Lease> scratch;
  for (unsigned i = 0; i < threads; ++i) scratch.push_back(scratch_.take());
  std::vector<Candidates> cands(threads);
  std::vector<std::vector<float>> grad(threads, std::vector<float>(entry_count_, 0.0f));
  std::vector<Gradient> batch_grad(batch);
  const float tau = static_cast<float>(settings_.null_logit);
  const auto shortlist = static_cast<std::size_t>(settings_.shortlist);
  // Each thread updates the weights of one range of feature ids (see FeatureRanges).
  std::vector<double> work(threads > 1 ? weights_.features() : 0, 0.0);
  if (threads > 1) {
    for (auto idx : order) {
      for (const auto& [f, x] : examples[idx].features) work[f] += static_cast<double>(weights_[f].size());
    }
  }
  FeatureRanges ranges(std::move(work), threads);

  // The gradient of example `idx`'s loss with the weights as they are, into `out`.
  auto gradient = [&](std::uint32_t idx, unsigned thread, std::vector<std::pair<std::uint32_t, float>>& out) {
    const Example& ex = examples[idx];
    Scratch& s = *scratch[thread];
    std::vector<Ranked>& cs = cands[thread].list;
    forward(ex, s);
    s.touch(ex.entry);
    top_k(s, shortlist, cs, tau);
    bool has_gold = false;
    for (const auto& c : cs) has_gold = has_gold || c.entry == ex.entry;
    if (!has_gold) {
      const EntryScore& gold = s.entry[ex.entry];
      cs.push_back({ex.entry, logit(gold), gold.bm25, 0});
      set_softmax(cs, tau, s.exps);
    }
    out.clear();
    for (const auto& c : cs) out.emplace_back(c.entry, (c.entry == ex.entry ? 1.0f : 0.0f) - c.p);
    reset(s);
  };

  for (int pass = 0; pass < passes; ++pass, ++t.passes) {
    for (std::size_t i = order.size(); i > 1; --i) {  // Fisher-Yates: the same order everywhere
      std::size_t j = t.rng() % i;
      std::swap(order[i - 1], order[j]);
    }
    const float lr = static_cast<float>(settings_.learning_rate / (1.0 + 0.3 * t.passes));
    // The decay of an implicit (proximal) step: in (0, 1] whatever lr and l2, where 1 - lr*l2
    // would turn negative for large ones and flip the weights' signs until they overflow.
    const float decay = 1.0f / (1.0f + lr * static_cast<float>(settings_.l2));
    for (std::size_t b0 = 0; b0 < order.size(); b0 += batch) {
      const std::size_t n = std::min(batch, order.size() - b0);
      // Every example of the batch is scored with the weights of the batch's start (any
      // thread takes any example)...
      std::atomic<std::size_t> next{0};
      team.run([&](unsigned thread) {
        for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
          gradient(order[b0 + i], thread, batch_grad[i].by_entry);
        }
      });
      // ...then their updates are made in the batch's order, each thread making those of
      // the features it owns, so every weight sees the same updates whatever the threads.
      team.run([&](unsigned thread) {
        const auto started = std::chrono::steady_clock::now();
        std::vector<float>& g = grad[thread];
        for (std::size_t i = 0; i < n; ++i) {
          const Example& ex = examples[order[b0 + i]];
          const float step = t.step + static_cast<float>(i);
          for (const auto& [e, v] : batch_grad[i].by_entry) g[e] = v;
          // Only candidates have a gradient, and of a common feature's weights only those
          // in the example's reach can belong to one.
          for (std::size_t j = 0; j < ex.features.size(); ++j) {
            const auto [f, x] = ex.features[j];
            if (!ranges.owns(thread, f)) continue;
            const auto ws = weights_[f];
            float* us = t.acc.data() + weights_.start(f);
            auto update = [&, x = x](std::size_t k) {
              float gk = g[ws[k].entry];
              if (gk == 0.0f) return;
              float delta = ws[k].w * (decay - 1.0f) + lr * gk * x;
              ws[k].w += delta;
              us[k] += step * delta;
            };
            if (ex.reach_at[j] != Example::kNoReach) {
              for_each_bit(ex.reach.data() + ex.reach_at[j], ws.size(), update);
            } else {
              for (std::size_t k = 0; k < ws.size(); ++k) update(k);
            }
          }
          for (const auto& [e, v] : batch_grad[i].by_entry) g[e] = 0.0f;
        }
        ranges.took(thread, std::chrono::steady_clock::now() - started);
      });
      t.step += static_cast<float>(n);
      ranges.rebalance();
    }
  }
}

void Index::average(const Trainer& t) {
  if (!settings_.average || t.acc.empty()) return;
  auto& slots = weights_.slots();
  for (std::size_t k = 0; k < slots.size(); ++k) slots[k].w -= t.acc[k] / t.step;
}

float Index::confidence(float p, float z, float z_other) const noexcept {
  if (!calibrated_) return p;
  float t = cal_[0] * p + cal_[1] * (z - z_other) + cal_[2] * z + cal_[3];
  return 1.0f / (1.0f + std::exp(-t));
}

float Index::runner_up(const std::vector<Ranked>& cands, std::size_t touched) const noexcept {
  // Every entry that no term or feature reached has logit 0 (no BM25 part, no weight).
  float z = cands.size() > 1 ? cands[1].z : 0.0f;
  if (touched < entry_count_) z = std::max(z, 0.0f);
  return z;
}

void Index::calibrate(const std::vector<Example>& examples, const std::vector<std::uint32_t>& held_out, Scratch& s) {
  struct Point {
    float x[3];
    float y;
  };
  std::vector<Point> pts;
  std::vector<Ranked> cands;
  const float tau = static_cast<float>(settings_.null_logit);
  for (auto idx : held_out) {
    const Example& ex = examples[idx];
    forward(ex, s);
    top_k(s, static_cast<std::size_t>(settings_.shortlist), cands, tau);
    const std::size_t touched = s.touched_entries.size();
    reset(s);
    if (cands.empty()) {
      pts.push_back({{0, 0, 0}, 0});
      continue;
    }
    const float z_other = runner_up(cands, touched);
    pts.push_back({{cands[0].p, cands[0].z - z_other, cands[0].z}, cands[0].entry == ex.entry ? 1.0f : 0.0f});
  }
  // Logistic regression on three features (Platt scaling), fitted by Newton's method with
  // a small ridge so that it converges whatever the scale of the logits. The three features
  // all grow with the evidence for the first candidate, so their coefficients may not be
  // negative: correlated as they are, a free fit can give one a negative weight that the
  // held-out points barely constrain, and a message scored beyond their range (an exact
  // question, a single candidate) would then get less confidence the better it matches.
  // Such a coefficient is held at 0 and the others fitted again (at most three times).
  auto fit = [&pts](const bool (&fixed)[4], double (&w)[4]) {
    w[0] = fixed[0] ? 0 : 1;
    w[1] = w[2] = w[3] = 0;
    for (int it = 0; it < 30; ++it) {
      double g[4] = {0, 0, 0, 0};
      double h[4][4] = {};
      for (const auto& p : pts) {
        const double x[4] = {p.x[0], p.x[1], p.x[2], 1.0};
        double t = w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + w[3];
        double q = 1.0 / (1.0 + std::exp(-t));
        double d = q - p.y, v = q * (1 - q);
        for (int a = 0; a < 4; ++a) {
          g[a] += d * x[a];
          for (int b = 0; b < 4; ++b) h[a][b] += v * x[a] * x[b];
        }
      }
      for (int a = 0; a < 4; ++a) {
        g[a] += 1e-2 * w[a];
        h[a][a] += 1e-2;
        if (fixed[a]) {  // no step: its row says step = 0
          for (int b = 0; b < 4; ++b) h[a][b] = a == b ? 1.0 : 0.0;
          g[a] = 0;
        }
      }
      // Solve h * step = g (Gaussian elimination with partial pivoting).
      double m[4][5];
      for (int a = 0; a < 4; ++a) {
        for (int b = 0; b < 4; ++b) m[a][b] = h[a][b];
        m[a][4] = g[a];
      }
      for (int c = 0; c < 4; ++c) {
        int piv = c;
        for (int r = c + 1; r < 4; ++r) {
          if (std::fabs(m[r][c]) > std::fabs(m[piv][c])) piv = r;
        }
        for (int k = 0; k < 5; ++k) std::swap(m[c][k], m[piv][k]);
        if (std::fabs(m[c][c]) < 1e-12) continue;
        for (int r = 0; r < 4; ++r) {
          if (r == c) continue;
          double f = m[r][c] / m[c][c];
          for (int k = c; k < 5; ++k) m[r][k] -= f * m[c][k];
        }
      }
      double change = 0;
      for (int a = 0; a < 4; ++a) {
        double step = std::fabs(m[a][a]) < 1e-12 ? 0.0 : m[a][4] / m[a][a];
        w[a] -= step;
        change = std::max(change, std::fabs(step));
      }
      if (change < 1e-6) break;
    }
  };
  bool fixed[4] = {false, false, false, false};
  double w[4];
  fit(fixed, w);
  for (int round = 0; round < 3; ++round) {
    int worst = -1;
    for (int a = 0; a < 3; ++a) {
      if (!fixed[a] && w[a] < 0 && (worst < 0 || w[a] < w[worst])) worst = a;
    }
    if (worst < 0) break;
    fixed[worst] = true;
    fit(fixed, w);
  }
  for (int k = 0; k < 4; ++k) cal_[k] = static_cast<float>(w[k]);
  calibrated_ = true;
  calibration_examples_ = pts.size();
}

void Index::vectorize(const Analysis& a, Scratch& s) const {
  s.keys.clear();
  model_features(a, s.keys);
  count_features(s.keys, s.counted);
  std::vector<std::pair<std::uint32_t, float>>& out = s.features;
  out.clear();
  // Unknown features still count in the norm: a text mostly unlike the KB scores low.
  const auto unknown_idf = static_cast<float>(std::log(static_cast<double>(doc_entry_.size()) + 1.0) + 1.0);
  double norm = 0;
  for (const auto& [key, value] : s.counted) {
    auto it = feature_ids_.find(key);
    float v;
    if (it != feature_ids_.end()) {
      v = value * feature_idf_[it->second];
      out.emplace_back(it->second, v);
    } else {
      v = value * unknown_idf;
    }
    norm += static_cast<double>(v) * v;
  }
  scale_to_unit(out, norm);
}

void Index::apply_idf(std::vector<std::pair<std::uint32_t, float>>& features) const {
  double norm = 0;
  for (auto& [f, v] : features) {
    v *= feature_idf_[f];
    norm += static_cast<double>(v) * v;
  }
  scale_to_unit(features, norm);
}

void Index::score_bm25(const Analysis& a, Scratch& s, std::uint32_t skip_doc) const {
  s.terms.clear();
  bm25_terms(a, s.terms);
  std::sort(s.terms.begin(), s.terms.end());
  s.terms.erase(std::unique(s.terms.begin(), s.terms.end()), s.terms.end());
  float norm = 0;
  std::vector<std::uint32_t> ids;
  ids.reserve(s.terms.size());
  for (const auto& t : s.terms) {
    auto it = term_ids_.find(t);
    if (it == term_ids_.end()) {
      norm += max_idf_;
      continue;
    }
    ids.push_back(it->second);
    norm += questions_.idf[it->second];
  }
  if (norm <= 0) return;
  for (auto tid : ids) {
    float idf = questions_.idf[tid];
    for (const auto& p : questions_.postings[tid]) {
      if (p.doc == skip_doc) continue;
      float sc = idf * p.tf;
      if (s.doc_score[p.doc] == 0.0f) s.touched_docs.push_back(p.doc);
      s.doc_score[p.doc] += sc;
    }
  }
  const auto qw = static_cast<float>(settings_.question_weight);
  for (auto d : s.touched_docs) {
    std::uint32_t e = doc_entry_[d];
    float v = qw * s.doc_score[d] / norm;
    EntryScore& es = s.touch(e);
    es.bm25 = std::max(es.bm25, v);
  }
  if (settings_.answer_weight > 0) {
    const auto aw = static_cast<float>(settings_.answer_weight);
    for (auto tid : ids) {
      float idf = answers_.idf[tid];
      for (const auto& p : answers_.postings[tid]) {
        s.touch(p.doc).bm25 += aw * idf * p.tf / norm;
      }
    }
  }
}

void Index::reset(Scratch& s) const {
  for (auto d : s.touched_docs) s.doc_score[d] = 0.0f;
  for (auto e : s.touched_entries) s.entry[e] = EntryScore{};
  s.touched_docs.clear();
  s.touched_entries.clear();
}

void Index::top_k(Scratch& s, std::size_t k, std::vector<Ranked>& out, double null_logit) const {
  // `better` is a strict total order (ties by entry), so the k kept do not depend on the
  // order of the touched list.
  best_touched(s, k, [this](const EntryScore& es) { return logit(es); }, s.ranking);
  out.clear();
  for (auto key : s.ranking) {
    const EntryScore& es = s.entry[key_entry(key)];
    out.push_back({key_entry(key), logit(es), es.bm25, 0.0f});
  }
  set_softmax(out, static_cast<float>(null_logit), s.exps);
}

std::vector<Ranked> Index::rank(const Analysis& a, std::size_t k) const {
  auto lease = scratch_.take();
  Scratch& s = *lease;
  score_bm25(a, s, UINT32_MAX);  // first: BM25 brings candidates that add_linear() counts
  if (!weights_.empty()) {
    vectorize(a, s);
    add_linear(s.features, s);
  }
  std::vector<Ranked> out;
  top_k(s, static_cast<std::size_t>(settings_.shortlist), out, settings_.null_logit);
  const float z_other = out.empty() ? 0.0f : runner_up(out, s.touched_entries.size());
  reset(s);
  if (out.size() > k) out.resize(k);
  if (out.empty()) return out;
  // The first candidate's confidence is calibrated; the others share what it leaves, in
  // proportion to their softmax probability (the null class takes its share too), so the
  // confidences never sum to more than 1. None is more likely right than the first: when the
  // first is unsure and the second close behind in the softmax, the share could exceed it.
  const float p1 = out[0].p;
  const float c1 = confidence(p1, out[0].z, z_other);
  const float rest = 1.0f - p1 > 1e-12f ? (1.0f - c1) / (1.0f - p1) : 0.0f;
  out[0].p = c1;
  for (std::size_t i = 1; i < out.size(); ++i) out[i].p = std::min({out[i].p * rest, 1.0f - c1, c1});
  return out;
}

std::size_t Index::weights() const noexcept {
  return weights_.weights();
}

std::size_t Index::memory_bytes() const noexcept {
  std::size_t bytes = 0;
  for (const Field* f : {&questions_, &answers_}) {
    for (const auto& p : f->postings) bytes += p.capacity() * sizeof(Posting) + sizeof(p);
    bytes += f->idf.capacity() * sizeof(float);
  }
  for (const auto& [t, id] : term_ids_) bytes += t.capacity() + sizeof(id) + 32;
  bytes += doc_entry_.capacity() * sizeof(std::uint32_t);
  bytes += feature_ids_.size() * (sizeof(std::uint64_t) + sizeof(std::uint32_t) + 16);
  bytes += feature_idf_.capacity() * sizeof(float);
  bytes += weights_.memory_bytes();
  return bytes;
}

}  // namespace madoguchi::bot::detail
