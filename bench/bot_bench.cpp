// madoguchi-bench: how fast the bot answers, on one thread, next to two peers that index the
// same question texts and run the same queries in the same process (bench/README.md).
//
//   1. Answer latency (p50/p99, µs) and answers per second for knowledge bases of 1k, 10k and
//      100k entries: Bot::respond with a fresh Conversation per query, against Xapian (BM25,
//      OR query) and SQLite FTS5 (bm25(), OR query). Also index build time and memory.
//   2. Japanese tokenization throughput: TextPipeline::analyze against raw MeCab.
//
// Everything is deterministic: the knowledge bases and queries come from the public data sets
// in MDG_BENCH_DATA_DIR, picked by std::mt19937 with a fixed seed and our own index arithmetic.
// A readable table goes to stdout, and the last line is one JSON object with every figure.
//
//   madoguchi-bench [--sizes 1000,10000,100000] [--queries 2000] [--rounds 3] [--quick]
//                   [--data DIR] [--shop FILE] [--mecab-dicdir DIR] [--ja-mb 3]
//                   [--build-threads N] [--xapian inmemory|glass]
#include <madoguchi/bot/bot.hpp>
#include <madoguchi/bot/knowledge.hpp>
#include <madoguchi/bot/text.hpp>

#include <mecab.h>
#include <simdjson.h>
#include <sqlite3.h>
#include <xapian.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#ifdef __linux__
#include <malloc.h>
#include <unistd.h>
#endif

namespace {

namespace fs = std::filesystem;
namespace mb = madoguchi::bot;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kSeed = 20261125u;
constexpr int kSkipExitCode = 77;  // CTest SKIP_RETURN_CODE: the data sets are missing

constexpr const char* kUsage =
    "usage: madoguchi-bench [options]\n"
    "  --sizes N,N,...      knowledge-base sizes in entries (default 1000,10000,100000)\n"
    "  --queries N          queries per size (default 2000, ~20% Japanese)\n"
    "  --rounds N           timed passes over the queries per engine (default 3)\n"
    "  --quick              smoke run: sizes 200,1000, 300 queries, 1 round, 0.25 MB of Japanese\n"
    "  --data DIR           evaluation data (default " MDG_BENCH_DATA_DIR ")\n"
    "  --shop FILE          sample KB whose Japanese questions join the data\n"
    "  --mecab-dicdir DIR   MeCab dictionary (default " MDG_BENCH_MECAB_DICDIR ")\n"
    "  --ja-mb X            MB of Japanese text for the tokenization benchmark (default 3)\n"
    "  --build-threads N    threads that build madoguchi's index (default: one per core, up to 8;\n"
    "                       answers are always timed on one thread)\n"
    "  --xapian BACKEND     inmemory (default) or glass (a temporary directory)\n";

// A benchmark that cannot run: the message goes to stderr, the exit code to the shell.
struct BenchError : std::runtime_error {
  BenchError(const std::string& what, int code = 1) : std::runtime_error(what), exit_code(code) {}
  int exit_code;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double to_double(std::size_t n) { return static_cast<double>(n); }

// ---------------------------------------------------------------------------------------------
// Deterministic choices: the raw 32-bit output of std::mt19937 is fixed by the standard, and
// the index arithmetic is ours, so every platform builds the same knowledge bases.

class Rng {
 public:
  explicit Rng(std::uint32_t seed) : gen_(seed) {}

  // Uniform in [0, n), by rejection so that no value is favoured.
  std::size_t below(std::size_t n) {
    if (n <= 1) return 0;
    constexpr std::uint64_t kRange = std::uint64_t{1} << 32;
    const auto bound = static_cast<std::uint64_t>(n);
    const std::uint64_t limit = kRange - kRange % bound;
    std::uint64_t x = 0;
    do {
      x = static_cast<std::uint64_t>(gen_()) & 0xFFFFFFFFu;
    } while (x >= limit);
    return static_cast<std::size_t>(x % bound);
  }

  template <typename T>
  void shuffle(std::vector<T>& v) {  // Fisher–Yates
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  std::mt19937 gen_;
};

// ---------------------------------------------------------------------------------------------
// Small text helpers.

// Decodes the UTF-8 code point at s[i] and advances i (input assumed valid).
char32_t next_code_point(std::string_view s, std::size_t& i) {
  auto c = static_cast<unsigned char>(s[i++]);
  if (c < 0x80) return c;
  int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
  char32_t cp = c & (0x3Fu >> extra);
  for (int k = 0; k < extra && i < s.size(); ++k, ++i) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3Fu);
  }
  return cp;
}

bool is_ascii_alnum(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Word separators for the FTS5 query: ASCII punctuation and spaces, CJK and full-width
// punctuation. Everything else is part of a term (as for the unicode61 tokenizer).
bool is_separator(char32_t c) {
  if (c < 0x80) return !is_ascii_alnum(c);
  return (c >= 0x3000 && c <= 0x303F) || (c >= 0xFF01 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) ||
         (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65) || c == 0x30FB || c == 0x00A0;
}

std::vector<std::string> split_terms(std::string_view text) {
  std::vector<std::string> terms;
  std::string cur;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t start = i;
    char32_t c = next_code_point(text, i);
    if (is_separator(c)) {
      if (!cur.empty()) terms.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.append(text.substr(start, i - start));
    }
  }
  if (!cur.empty()) terms.push_back(std::move(cur));
  return terms;
}

std::vector<std::string> split_spaces(std::string_view text) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t start = i;
    while (i < text.size() && text[i] != ' ') ++i;
    if (i > start) words.emplace_back(text.substr(start, i - start));
  }
  return words;
}

bool is_japanese_text(std::string_view s) { return mb::TextPipeline::detect_locale(s) == "ja"; }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BenchError("cannot read " + path.string(), kSkipExitCode);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Rows of an RFC 4180 CSV text: quoted fields may hold commas, doubled quotes and newlines.
std::vector<std::vector<std::string>> parse_csv(std::string_view text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      row.push_back(std::move(field));
      field.clear();
      rows.push_back(std::move(row));
      row.clear();
    } else {
      field += c;
    }
  }
  if (!field.empty() || !row.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

// Keeps the first occurrence of each text, in order, and drops texts in `exclude`.
std::vector<std::string> unique_texts(std::vector<std::string> texts,
                                      const std::unordered_set<std::string>& exclude) {
  std::unordered_set<std::string> seen;
  std::vector<std::string> out;
  for (auto& t : texts) {
    if (t.empty() || exclude.contains(t) || !seen.insert(t).second) continue;
    out.push_back(std::move(t));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The data: real questions to index, real queries to ask (never indexed), Japanese lines.

struct Corpus {
  std::vector<std::string> en_questions;  // clinc150 train+val, banking77 train
  std::vector<std::string> ja_questions;  // xsid valid text_ja, shop.json Japanese questions
  std::vector<std::vector<std::string>> en_words;  // words of en_questions, for synthesis
  std::vector<std::vector<std::string>> ja_words;  // xsid valid text_ja_tokenized, for synthesis
  std::vector<std::string> en_queries;  // clinc150 test.jsonl (test + oos_test)
  std::vector<std::string> ja_queries;  // xsid test text_ja
  std::vector<std::string> ja_lines;    // every xsid text_ja and shop Japanese question
};

std::vector<std::string> clinc_texts(simdjson::dom::element doc, const char* split) {
  std::vector<std::string> out;
  simdjson::dom::array rows;
  if (doc[split].get_array().get(rows) != simdjson::SUCCESS) {
    throw BenchError(std::string("clinc150/data_full.json: no \"") + split + "\" list");
  }
  for (simdjson::dom::element row : rows) {
    simdjson::dom::array pair;
    std::string_view text;
    if (row.get_array().get(pair) != simdjson::SUCCESS || pair.size() == 0 ||
        (*pair.begin()).get_string().get(text) != simdjson::SUCCESS) {
      throw BenchError(std::string("clinc150/data_full.json: a row of \"") + split + "\" is not [text, intent]");
    }
    out.emplace_back(text);
  }
  return out;
}

Corpus load_corpus(const fs::path& data, const fs::path& shop) {
  for (const char* f : {"clinc150/data_full.json", "clinc150/test.jsonl", "banking77/train.csv",
                        "xsid/xsid_ja_en.tsv"}) {
    if (!fs::exists(data / f)) {
      throw BenchError("data file " + (data / f).string() + " not found (pass --data DIR)", kSkipExitCode);
    }
  }
  Corpus c;

  // Queries first: they are never indexed.
  simdjson::dom::parser parser;
  {
    std::istringstream lines(read_file(data / "clinc150/test.jsonl"));
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      simdjson::dom::element doc;
      std::string_view text;
      if (parser.parse(line).get(doc) != simdjson::SUCCESS || doc["text"].get_string().get(text) != simdjson::SUCCESS) {
        throw BenchError("clinc150/test.jsonl: a line without \"text\"");
      }
      c.en_queries.emplace_back(text);
    }
  }
  std::vector<std::string> ja_valid, ja_valid_tokenized;
  {
    std::istringstream lines(read_file(data / "xsid/xsid_ja_en.tsv"));
    std::string line;
    std::getline(lines, line);  // header: split id intent text_ja text_ja_tokenized text_en
    while (std::getline(lines, line)) {
      std::vector<std::string> cols;
      std::istringstream fields(line);
      for (std::string f; std::getline(fields, f, '\t');) cols.push_back(f);
      if (cols.size() < 5) continue;
      c.ja_lines.push_back(cols[3]);
      if (cols[0] == "test") {
        c.ja_queries.push_back(cols[3]);
      } else {
        ja_valid.push_back(cols[3]);
        ja_valid_tokenized.push_back(cols[4]);
      }
    }
  }
  std::unordered_set<std::string> queries(c.en_queries.begin(), c.en_queries.end());
  queries.insert(c.ja_queries.begin(), c.ja_queries.end());

  // English questions.
  std::vector<std::string> en;
  {
    simdjson::padded_string json;
    if (simdjson::padded_string::load((data / "clinc150/data_full.json").string()).get(json) != simdjson::SUCCESS) {
      throw BenchError("cannot read clinc150/data_full.json");
    }
    simdjson::dom::element doc;
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) throw BenchError("clinc150/data_full.json: bad JSON");
    for (const char* split : {"train", "val"}) {
      auto texts = clinc_texts(doc, split);
      en.insert(en.end(), texts.begin(), texts.end());
    }
  }
  auto banking = parse_csv(read_file(data / "banking77/train.csv"));
  for (std::size_t i = 1; i < banking.size(); ++i) {  // row 0: text,category
    if (!banking[i].empty()) en.push_back(banking[i][0]);
  }
  c.en_questions = unique_texts(std::move(en), queries);
  for (const auto& q : c.en_questions) c.en_words.push_back(split_spaces(q));

  // Japanese questions: xsid valid (not its test rows), the sample shop's Japanese questions.
  std::vector<std::string> ja = ja_valid;
  for (std::size_t i = 0; i < ja_valid.size(); ++i) {
    if (!queries.contains(ja_valid[i])) c.ja_words.push_back(split_spaces(ja_valid_tokenized[i]));
  }
  if (fs::exists(shop)) {
    auto kb = mb::load_knowledge_file(shop.string());
    if (!kb) throw BenchError("shop KB: " + kb.status().to_string());
    for (const auto& e : kb->entries) {
      for (const auto& q : e.questions) {
        if (!is_japanese_text(q)) continue;
        ja.push_back(q);
        c.ja_lines.push_back(q);
      }
    }
  } else {
    std::fprintf(stderr, "madoguchi-bench: %s not found; using the xsid Japanese texts alone\n",
                 shop.string().c_str());
  }
  c.ja_questions = unique_texts(std::move(ja), queries);
  if (c.en_questions.empty() || c.ja_questions.empty() || c.ja_words.empty() || c.en_queries.empty() ||
      c.ja_queries.empty()) {
    throw BenchError("the data sets are empty");
  }
  return c;
}

// An endless supply of questions in one language: the real ones in a seeded order, then
// synthetic ones that join the first half of one real question to the second half of another.
class QuestionSource {
 public:
  QuestionSource(const std::vector<std::string>& real, const std::vector<std::vector<std::string>>& words,
                 bool japanese, Rng& rng)
      : real_(real), words_(words), japanese_(japanese) {
    order_.resize(real_.size());
    for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
    rng.shuffle(order_);
  }

  std::string next(Rng& rng) {
    if (pos_ < order_.size()) return real_[order_[pos_++]];
    ++synthesized_;
    const auto& a = words_[rng.below(words_.size())];
    const auto& b = words_[rng.below(words_.size())];
    std::vector<std::string_view> parts;
    for (std::size_t i = 0; i < (a.size() + 1) / 2; ++i) parts.push_back(a[i]);
    for (std::size_t i = b.size() / 2; i < b.size(); ++i) parts.push_back(b[i]);
    return join(parts);
  }

  std::size_t synthesized() const { return synthesized_; }

 private:
  // English words join with spaces; Japanese words join directly, except between two
  // ASCII letters or digits (as in xsid's text_ja).
  std::string join(const std::vector<std::string_view>& parts) const {
    std::string out;
    for (auto p : parts) {
      if (p.empty()) continue;
      bool space = !out.empty() &&
                   (!japanese_ || (is_ascii_alnum(static_cast<unsigned char>(out.back())) &&
                                   is_ascii_alnum(static_cast<unsigned char>(p.front()))));
      if (space) out += ' ';
      out.append(p);
    }
    return out;
  }

  const std::vector<std::string>& real_;
  const std::vector<std::vector<std::string>>& words_;
  bool japanese_;
  std::vector<std::size_t> order_;
  std::size_t pos_ = 0;
  std::size_t synthesized_ = 0;
};

struct BenchKb {
  std::vector<std::vector<std::string>> questions;  // by entry
  std::size_t question_count = 0;
  std::size_t ja_entries = 0;
  std::size_t synthesized = 0;
};

// `n` entries, ~20% Japanese; each has 1–3 questions of its language.
BenchKb make_kb(const Corpus& c, std::size_t n) {
  Rng rng(kSeed ^ static_cast<std::uint32_t>(n));
  QuestionSource en(c.en_questions, c.en_words, false, rng);
  QuestionSource ja(c.ja_questions, c.ja_words, true, rng);
  BenchKb kb;
  kb.questions.resize(n);
  for (std::size_t e = 0; e < n; ++e) {
    bool japanese = rng.below(5) == 0;
    std::size_t count = 1 + rng.below(3);
    auto& qs = kb.questions[e];
    while (qs.size() < count) {
      std::string q = japanese ? ja.next(rng) : en.next(rng);
      if (std::find(qs.begin(), qs.end(), q) == qs.end()) qs.push_back(std::move(q));
    }
    kb.question_count += qs.size();
    kb.ja_entries += japanese ? 1 : 0;
  }
  kb.synthesized = en.synthesized() + ja.synthesized();
  return kb;
}

mb::KnowledgeBase to_knowledge_base(const BenchKb& bkb) {
  mb::KnowledgeBase kb;
  kb.name = "bench-" + std::to_string(bkb.questions.size());
  kb.default_locale = "en";
  kb.source = "<bench>";
  kb.entries.reserve(bkb.questions.size());
  for (std::size_t e = 0; e < bkb.questions.size(); ++e) {
    mb::Entry entry;
    entry.id = "e" + std::to_string(e);
    entry.questions = bkb.questions[e];
    entry.answer.by_locale.emplace("", "answer " + std::to_string(e));
    entry.source = "bench: entry " + std::to_string(e);
    kb.entries.push_back(std::move(entry));
  }
  return kb;
}

// ~20% Japanese, in a seeded order; texts repeat when a set is smaller than asked.
std::vector<std::string> make_queries(const Corpus& c, std::size_t n) {
  Rng rng(kSeed + 1);
  std::size_t n_ja = n / 5;
  std::size_t n_en = n - n_ja;
  auto take = [&rng](std::vector<std::string> pool, std::size_t k, std::vector<std::string>& out) {
    rng.shuffle(pool);
    for (std::size_t i = 0; i < k; ++i) out.push_back(pool[i % pool.size()]);
  };
  std::vector<std::string> queries;
  take(c.en_queries, n_en, queries);
  take(c.ja_queries, n_ja, queries);
  rng.shuffle(queries);
  return queries;
}

// ---------------------------------------------------------------------------------------------
// Measurements.

// Anonymous resident memory (the heap, not mapped files such as the MeCab dictionary) in
// bytes: resident minus shared pages of /proc/self/statm; -1 where /proc is not available.
std::int64_t rss_bytes() {
#ifdef __linux__
  std::ifstream statm("/proc/self/statm");
  long long size = 0, resident = 0, shared = 0;
  if (statm >> size >> resident >> shared) {
    return (resident - shared) * static_cast<long long>(sysconf(_SC_PAGESIZE));
  }
#endif
  return -1;
}

// Gives freed heap back to the system so RSS differences show what is still held.
void release_free_memory() {
#if defined(__linux__) && defined(__GLIBC__)
  malloc_trim(0);
#endif
}

struct RssProbe {
  RssProbe() {
    release_free_memory();
    before = rss_bytes();
  }
  // Bytes the process holds now and did not hold at construction; -1 if unknown.
  std::int64_t growth() const {
    release_free_memory();
    std::int64_t after = rss_bytes();
    return before < 0 || after < 0 ? -1 : after - before;
  }
  std::int64_t before;
};

struct BuildStats {
  double ms = 0;
  std::int64_t rss_growth = -1;  // bytes
  std::int64_t rss_fixed = 0;    // part of rss_growth that does not depend on the size
  std::int64_t index_bytes = -1;  // the engine's own figure, where it has one
};

struct RunStats {
  std::vector<double> latencies_us;
  double total_s = 0;
  std::size_t with_results = 0;  // queries that found anything (answered, or a non-empty list)

  double qps() const { return total_s > 0 ? to_double(latencies_us.size()) / total_s : 0; }
  double percentile(double p) const {  // nearest rank
    if (latencies_us.empty()) return 0;
    std::vector<double> v = latencies_us;
    auto rank = static_cast<std::size_t>(std::ceil(p * to_double(v.size())));
    rank = std::clamp<std::size_t>(rank, 1, v.size()) - 1;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(rank), v.end());
    return v[rank];
  }
  double mean() const { return latencies_us.empty() ? 0 : total_s * 1e6 / to_double(latencies_us.size()); }
};

// One timed pass of `query` over every text, appended to `stats`. The caller runs the engines'
// passes in turn, so that a slow spell of the machine hits them alike.
template <typename Fn>
void timed_pass(const std::vector<std::string>& queries, RunStats& stats, Fn&& query) {
  for (const auto& q : queries) {
    auto start = Clock::now();
    bool found = query(q);
    double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
    stats.latencies_us.push_back(us);
    stats.total_s += us * 1e-6;
    stats.with_results += found ? 1 : 0;
  }
}

// Untimed: the first 200 queries, to fault in code, caches and lazily built structures.
template <typename Fn>
void warm_up(const std::vector<std::string>& queries, Fn&& query) {
  for (std::size_t i = 0; i < std::min<std::size_t>(200, queries.size()); ++i) (void)query(queries[i]);
}

// ---------------------------------------------------------------------------------------------
// madoguchi.

struct Madoguchi {
  std::shared_ptr<const mb::Bot> bot;
  BuildStats build;
};

// Heap a bot holds whatever its size: its MeCab model, taggers and lattices, ICU objects. Measured on a one-entry bot, after ICU's process-wide data is loaded.
std::int64_t fixed_bot_rss(const std::string& dicdir) {
  {
    mb::TextOptions options;
    options.mecab_dicdir = dicdir;
    auto warm = mb::TextPipeline::create(options);
    if (!warm) throw BenchError("TextPipeline::create: " + warm.status().to_string());
    (void)(*warm)->analyze("返品したいです");
    (void)(*warm)->analyze("Where is my order?");
  }
  BenchKb one;
  one.questions = {{"返品したいです", "how do I return an item"}};
  RssProbe rss;
  mb::BotOptions options;
  options.text.mecab_dicdir = dicdir;
  auto bot = mb::Bot::create(to_knowledge_base(one), std::move(options));
  if (!bot) throw BenchError("Bot::create: " + bot.status().to_string());
  mb::Conversation conv;
  (void)(*bot)->respond(conv, "返品したいです");
  (void)(*bot)->respond(conv, "how do I return an item");
  return rss.growth();
}

Madoguchi build_madoguchi(const BenchKb& bkb, const std::string& dicdir, unsigned threads, std::int64_t fixed_rss) {
  mb::KnowledgeBase kb = to_knowledge_base(bkb);  // default RankingSettings: the model is trained
  Madoguchi m;
  mb::BotOptions options;
  options.text.mecab_dicdir = dicdir;
  options.build_threads = threads;
  RssProbe rss;
  auto start = Clock::now();
  auto bot = mb::Bot::create(std::move(kb), std::move(options));
  m.build.ms = ms_since(start);
  if (!bot) throw BenchError("Bot::create: " + bot.status().to_string());
  m.bot = std::move(*bot);
  m.build.rss_growth = rss.growth();
  m.build.rss_fixed = fixed_rss;
  m.build.index_bytes = static_cast<std::int64_t>(m.bot->stats().memory_bytes);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Xapian: one document per entry (its questions), English stemmer, CJK n-grams, BM25, OR query.

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "mdg-bench-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
#ifdef __linux__
    if (!mkdtemp(buf.data())) throw BenchError("cannot create a temporary directory");
    path_ = buf.data();
#else
    path_ = fs::temp_directory_path() / ("mdg-bench-" + std::to_string(Clock::now().time_since_epoch().count()));
    fs::create_directories(path_);
#endif
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::int64_t directory_bytes(const fs::path& dir) {
  std::int64_t total = 0;
  for (const auto& f : fs::recursive_directory_iterator(dir)) {
    if (f.is_regular_file()) total += static_cast<std::int64_t>(f.file_size());
  }
  return total;
}

class XapianPeer {
 public:
  XapianPeer(const BenchKb& bkb, bool glass) {
    RssProbe rss;
    auto start = Clock::now();
    if (glass) {
      dir_.emplace();
      db_ = Xapian::WritableDatabase((dir_->path() / "db").string(),
                                     Xapian::DB_CREATE_OR_OVERWRITE | Xapian::DB_BACKEND_GLASS | Xapian::DB_NO_SYNC);
    } else {
      // Xapian::InMemory::open() is deprecated in 1.4; this is the same backend.
      db_ = Xapian::WritableDatabase(std::string(), Xapian::DB_BACKEND_INMEMORY);
    }
    Xapian::TermGenerator tg;
    tg.set_stemmer(Xapian::Stem("english"));
    tg.set_flags(Xapian::TermGenerator::FLAG_CJK_NGRAM);
    for (std::size_t e = 0; e < bkb.questions.size(); ++e) {
      Xapian::Document doc;
      tg.set_document(doc);
      for (const auto& q : bkb.questions[e]) {
        tg.index_text(q);
        tg.increase_termpos();
      }
      db_.replace_document(static_cast<Xapian::docid>(e + 1), doc);
    }
    db_.commit();
    build.ms = ms_since(start);
    build.rss_growth = rss.growth();
    if (dir_) build.index_bytes = directory_bytes(dir_->path());

    qp_.set_stemmer(Xapian::Stem("english"));
    qp_.set_stemming_strategy(Xapian::QueryParser::STEM_SOME);
    qp_.set_default_op(Xapian::Query::OP_OR);
    qp_.set_database(db_);
    enquire_.emplace(db_);
    enquire_->set_weighting_scheme(Xapian::BM25Weight());
  }

  // Top 10; true when anything matched.
  bool query(const std::string& text) {
    Xapian::Query q;
    try {
      q = qp_.parse_query(text, Xapian::QueryParser::FLAG_DEFAULT | Xapian::QueryParser::FLAG_CJK_NGRAM);
    } catch (const Xapian::QueryParserError&) {
      ++parse_errors;
      q = qp_.parse_query(text, Xapian::QueryParser::FLAG_CJK_NGRAM);  // no operators
    }
    enquire_->set_query(q);
    Xapian::MSet mset = enquire_->get_mset(0, 10);
    Xapian::docid best = 0;
    for (auto it = mset.begin(); it != mset.end(); ++it) best = best ? best : *it;
    return best != 0;
  }

  BuildStats build;
  std::size_t parse_errors = 0;

 private:
  std::optional<TempDir> dir_;
  Xapian::WritableDatabase db_;
  Xapian::QueryParser qp_;
  std::optional<Xapian::Enquire> enquire_;
};

// ---------------------------------------------------------------------------------------------
// SQLite FTS5: one row per entry (its questions), porter + unicode61, bm25(), OR of quoted terms.

struct SqliteCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using SqliteDb = std::unique_ptr<sqlite3, SqliteCloser>;
using SqliteStmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

class Fts5Peer {
 public:
  explicit Fts5Peer(const BenchKb& bkb) {
    RssProbe rss;
    auto start = Clock::now();
    sqlite3* raw = nullptr;
    int rc = sqlite3_open(":memory:", &raw);
    db_.reset(raw);
    if (rc != SQLITE_OK) throw BenchError("sqlite3_open: " + std::string(sqlite3_errstr(rc)));
    exec("CREATE VIRTUAL TABLE t USING fts5(q, tokenize = 'porter unicode61')");
    exec("BEGIN");
    SqliteStmt insert = prepare("INSERT INTO t(rowid, q) VALUES (?, ?)");
    std::string text;
    for (std::size_t e = 0; e < bkb.questions.size(); ++e) {
      text.clear();
      for (const auto& q : bkb.questions[e]) {
        if (!text.empty()) text += '\n';
        text += q;
      }
      sqlite3_bind_int64(insert.get(), 1, static_cast<sqlite3_int64>(e + 1));
      sqlite3_bind_text(insert.get(), 2, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
      if (sqlite3_step(insert.get()) != SQLITE_DONE) throw BenchError("FTS5 insert: " + error());
      sqlite3_reset(insert.get());
    }
    exec("COMMIT");
    exec("INSERT INTO t(t) VALUES ('optimize')");
    build.ms = ms_since(start);
    build.rss_growth = rss.growth();
    build.index_bytes = sqlite3_memory_used();
    search_ = prepare("SELECT rowid, bm25(t) FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 10");
  }

  // Top 10; true when anything matched.
  bool query(const std::string& text) {
    match_.clear();
    for (const auto& term : split_terms(text)) {
      if (!match_.empty()) match_ += " OR ";
      match_ += '"';
      match_ += term;  // separators include '"', so no quote needs doubling
      match_ += '"';
    }
    if (match_.empty()) return false;
    sqlite3_stmt* s = search_.get();
    sqlite3_bind_text(s, 1, match_.data(), static_cast<int>(match_.size()), SQLITE_STATIC);
    sqlite3_int64 best = 0;
    int rc = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (best == 0) best = sqlite3_column_int64(s, 0);
      (void)sqlite3_column_double(s, 1);
    }
    if (rc != SQLITE_DONE) ++errors;
    sqlite3_reset(s);
    return best != 0;
  }

  BuildStats build;
  std::size_t errors = 0;

 private:
  std::string error() const { return sqlite3_errmsg(db_.get()); }
  void exec(const char* sql) {
    if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      throw BenchError(std::string("SQLite: ") + sql + ": " + error());
    }
  }
  SqliteStmt prepare(const char* sql) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql, -1, &raw, nullptr) != SQLITE_OK) {
      throw BenchError(std::string("SQLite: ") + sql + ": " + error());
    }
    return SqliteStmt(raw);
  }

  SqliteDb db_;
  SqliteStmt search_;
  std::string match_;
};

// ---------------------------------------------------------------------------------------------
// One knowledge-base size: build the three indexes, run the same queries on each.

struct SizeResult {
  std::size_t entries = 0, questions = 0, ja_entries = 0, synthesized = 0;
  mb::BotStats bot_stats;
  BuildStats mdg_build, xapian_build, fts5_build;
  RunStats mdg, mdg_rank, xapian, fts5;
  std::map<std::string, std::size_t> decisions;
  std::size_t xapian_parse_errors = 0, fts5_errors = 0;
};

SizeResult run_size(const Corpus& corpus, std::size_t n, const std::vector<std::string>& queries, int rounds,
                    const std::string& dicdir, unsigned build_threads, bool xapian_glass, std::int64_t fixed_rss) {
  SizeResult r;
  std::fprintf(stderr, "[%zu entries] building the knowledge base...\n", n);
  BenchKb bkb = make_kb(corpus, n);
  r.entries = n;
  r.questions = bkb.question_count;
  r.ja_entries = bkb.ja_entries;
  r.synthesized = bkb.synthesized;

  std::fprintf(stderr, "[%zu entries] madoguchi: building the index and training the model...\n", n);
  Madoguchi mdg = build_madoguchi(bkb, dicdir, build_threads, fixed_rss);
  r.mdg_build = mdg.build;
  r.bot_stats = mdg.bot->stats();
  std::fprintf(stderr, "[%zu entries] Xapian: indexing...\n", n);
  XapianPeer xapian(bkb, xapian_glass);
  r.xapian_build = xapian.build;
  std::fprintf(stderr, "[%zu entries] FTS5: indexing...\n", n);
  Fts5Peer fts5(bkb);
  r.fts5_build = fts5.build;

  const mb::Bot& bot = *mdg.bot;
  bool count_decisions = true;
  auto respond = [&](const std::string& q) {
    mb::Conversation conv;
    auto reply = bot.respond(conv, q);
    if (!reply) throw BenchError("respond: " + reply.status().to_string());
    if (count_decisions) ++r.decisions[std::string(mb::to_string(reply->decision))];
    return reply->decision == mb::Decision::kAnswer || reply->decision == mb::Decision::kClarify;
  };
  auto rank = [&](const std::string& q) {
    auto c = bot.rank(q, 10);
    if (!c) throw BenchError("rank: " + c.status().to_string());
    return !c->empty();
  };
  auto xq = [&](const std::string& q) { return xapian.query(q); };
  auto fq = [&](const std::string& q) { return fts5.query(q); };

  std::fprintf(stderr, "[%zu entries] running %zu queries x %d round(s) per engine...\n", n, queries.size(),
               rounds);
  count_decisions = false;
  warm_up(queries, respond);
  warm_up(queries, rank);
  warm_up(queries, xq);
  warm_up(queries, fq);
  for (int round = 0; round < rounds; ++round) {  // engines take turns: drift hits them alike
    count_decisions = round == 0;
    timed_pass(queries, r.mdg, respond);
    count_decisions = false;
    timed_pass(queries, r.xapian, xq);
    timed_pass(queries, r.fts5, fq);
    timed_pass(queries, r.mdg_rank, rank);
  }
  r.xapian_parse_errors = xapian.parse_errors;
  r.fts5_errors = fts5.errors;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Japanese tokenization: TextPipeline::analyze against MeCab parsing the same lines.

struct MecabModelDeleter {
  void operator()(MeCab::Model* m) const noexcept { MeCab::deleteModel(m); }
};

struct TokenizeResult {
  std::size_t lines = 0, bytes = 0;
  std::size_t mdg_tokens = 0, mecab_nodes = 0;  // per pass
  double mdg_s = 0, mecab_s = 0;                // over all rounds
  int rounds = 0;
  double mdg_mb_s() const { return mdg_s > 0 ? to_double(bytes) * rounds / 1e6 / mdg_s : 0; }
  double mecab_mb_s() const { return mecab_s > 0 ? to_double(bytes) * rounds / 1e6 / mecab_s : 0; }
};

TokenizeResult run_tokenize(const Corpus& corpus, double target_mb, int rounds, const std::string& dicdir) {
  std::vector<std::string> lines;
  TokenizeResult r;
  const auto target = static_cast<std::size_t>(target_mb * 1e6);
  while (r.bytes < target) {
    for (const auto& l : corpus.ja_lines) {
      lines.push_back(l);
      r.bytes += l.size();
    }
  }
  r.lines = lines.size();
  r.rounds = rounds;

  mb::TextOptions options;
  options.mecab_dicdir = dicdir;
  auto pipeline = mb::TextPipeline::create(options);
  if (!pipeline) throw BenchError("TextPipeline::create: " + pipeline.status().to_string());
  const mb::TextPipeline& text = **pipeline;

  std::string args = "-d " + dicdir;
  std::unique_ptr<MeCab::Model, MecabModelDeleter> model(MeCab::createModel(args.c_str()));
  if (!model) {  // no mecabrc on this system: use the dictionary's own resource file
    args += " -r " + (fs::path(dicdir) / "dicrc").string();
    model.reset(MeCab::createModel(args.c_str()));
  }
  if (!model) throw BenchError("MeCab::createModel(" + args + "): " + MeCab::getLastError());
  std::unique_ptr<MeCab::Tagger> tagger(model->createTagger());
  std::unique_ptr<MeCab::Lattice> lattice(model->createLattice());
  if (!tagger || !lattice) throw BenchError("MeCab: cannot create a tagger");

  auto mdg_pass = [&](std::size_t limit) {
    std::size_t tokens = 0;
    for (std::size_t i = 0; i < limit; ++i) {
      auto a = text.analyze(lines[i]);
      if (!a) throw BenchError("analyze: " + a.status().to_string());
      tokens += a->tokens.size();
    }
    return tokens;
  };
  auto mecab_pass = [&](std::size_t limit) {
    std::size_t nodes = 0;
    for (std::size_t i = 0; i < limit; ++i) {
      lattice->set_sentence(lines[i].data(), lines[i].size());
      if (!tagger->parse(lattice.get())) throw BenchError(std::string("MeCab parse: ") + lattice->what());
      for (const MeCab::Node* node = lattice->bos_node(); node; node = node->next) {
        if (node->stat == MECAB_BOS_NODE || node->stat == MECAB_EOS_NODE) continue;
        // Touch what a tokenizer reads: the surface and the feature string.
        nodes += node->length > 0 && node->feature[0] != '\0' ? 1 : 0;
      }
    }
    return nodes;
  };
  std::size_t warm = std::min<std::size_t>(2000, lines.size());
  (void)mdg_pass(warm);
  (void)mecab_pass(warm);
  for (int round = 0; round < rounds; ++round) {
    auto start = Clock::now();
    r.mdg_tokens = mdg_pass(lines.size());
    r.mdg_s += ms_since(start) / 1e3;
    start = Clock::now();
    r.mecab_nodes = mecab_pass(lines.size());
    r.mecab_s += ms_since(start) / 1e3;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Output: a table for people, one JSON line for tools.

class Json {
 public:
  Json& open(std::string_view key = {}) { return sep(key).raw("{").push(); }
  Json& close() { return pop().raw("}"); }
  Json& open_array(std::string_view key = {}) { return sep(key).raw("[").push(); }
  Json& close_array() { return pop().raw("]"); }
  Json& num(std::string_view key, double v, int digits = 4) {
    if (!std::isfinite(v)) return sep(key).raw("null");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    std::string s = buf;  // trim trailing zeros: 12.5000 -> 12.5
    if (s.find('.') != std::string::npos) {
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    return sep(key).raw(s);
  }
  Json& integer(std::string_view key, std::int64_t v) { return sep(key).raw(std::to_string(v)); }
  Json& str(std::string_view key, std::string_view v) {
    sep(key).raw("\"");
    for (char c : v) {
      if (c == '"' || c == '\\') out_ += '\\';
      if (static_cast<unsigned char>(c) < 0x20) continue;
      out_ += c;
    }
    return raw("\"");
  }
  const std::string& text() const { return out_; }

 private:
  Json& raw(std::string_view s) {
    out_ += s;
    return *this;
  }
  Json& sep(std::string_view key) {
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
    if (!key.empty()) {
      out_ += '"';
      out_ += key;
      out_ += "\":";
    }
    return *this;
  }
  Json& push() {
    first_.push_back(true);
    return *this;
  }
  Json& pop() {
    first_.pop_back();
    return *this;
  }
  std::string out_;
  std::vector<bool> first_;
};

double per_entry(std::int64_t bytes, std::size_t entries) {
  return bytes < 0 || entries == 0 ? std::nan("") : static_cast<double>(bytes) / to_double(entries);
}

// RSS growth of a build without the fixed part; -1 if unknown.
std::int64_t net_rss(const BuildStats& b) { return b.rss_growth < 0 ? -1 : b.rss_growth - b.rss_fixed; }

double ratio(double a, double b) { return b > 0 ? a / b : std::nan(""); }

void json_engine(Json& j, std::string_view key, const RunStats& run, const BuildStats* build, std::size_t entries) {
  j.open(key);
  if (build) {
    j.num("build_ms", build->ms, 1);
    j.integer("rss_growth_bytes", build->rss_growth);
    j.num("rss_bytes_per_entry", per_entry(net_rss(*build), entries), 1);
    j.num("index_bytes_per_entry", per_entry(build->index_bytes, entries), 1);
  }
  j.num("p50_us", run.percentile(0.50), 1).num("p99_us", run.percentile(0.99), 1);
  j.num("mean_us", run.mean(), 1).num("qps", run.qps(), 1);
  j.integer("timed_queries", static_cast<std::int64_t>(run.latencies_us.size()));
  j.num("found_fraction", run.latencies_us.empty() ? 0 : to_double(run.with_results) / to_double(run.latencies_us.size()), 3);
  j.close();
}

std::string human_bytes(double b) {
  if (!std::isfinite(b)) return "n/a";
  char buf[32];
  if (b >= 1e4) {
    std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f B", b);
  }
  return buf;
}

void print_size(const SizeResult& r) {
  std::printf("\n%zu entries, %zu questions (%zu Japanese entries, %zu synthesized questions)\n", r.entries,
              r.questions, r.ja_entries, r.synthesized);
  std::printf("  %-18s %10s %12s %12s %9s %9s %10s %7s\n", "engine", "build ms", "index/entry", "RSS/entry",
              "p50 us", "p99 us", "QPS", "found");
  auto row = [&](const char* name, const RunStats& run, const BuildStats* b) {
    char build_ms[32] = "-";
    if (b) std::snprintf(build_ms, sizeof build_ms, "%.0f", b->ms);
    std::string index = b ? human_bytes(per_entry(b->index_bytes, r.entries)) : "-";
    std::string rss = b ? human_bytes(per_entry(net_rss(*b), r.entries)) : "-";
    double found = run.latencies_us.empty() ? 0 : 100.0 * to_double(run.with_results) / to_double(run.latencies_us.size());
    std::printf("  %-18s %10s %12s %12s %9.1f %9.1f %10.0f %6.1f%%\n", name, build_ms, index.c_str(), rss.c_str(),
                run.percentile(0.50), run.percentile(0.99), run.qps(), found);
  };
  row("madoguchi respond", r.mdg, &r.mdg_build);
  row("madoguchi rank", r.mdg_rank, nullptr);
  row("xapian", r.xapian, &r.xapian_build);
  row("sqlite fts5", r.fts5, &r.fts5_build);
  std::printf("  QPS ratio: madoguchi/xapian %.2fx, madoguchi/fts5 %.2fx   build ratio: madoguchi/xapian %.1fx, "
              "madoguchi/fts5 %.1fx\n",
              ratio(r.mdg.qps(), r.xapian.qps()), ratio(r.mdg.qps(), r.fts5.qps()),
              ratio(r.mdg_build.ms, r.xapian_build.ms), ratio(r.mdg_build.ms, r.fts5_build.ms));
  std::printf("  madoguchi decisions (first pass):");
  for (const auto& [d, count] : r.decisions) std::printf(" %s %zu", d.c_str(), count);
  std::printf("; model: %zu terms, %zu features, %zu weights\n", r.bot_stats.terms, r.bot_stats.features,
              r.bot_stats.weights);
  if (r.xapian_parse_errors || r.fts5_errors) {
    std::printf("  xapian query-syntax fallbacks: %zu, fts5 errors: %zu\n", r.xapian_parse_errors, r.fts5_errors);
  }
}

// ---------------------------------------------------------------------------------------------

struct Options {
  std::vector<std::size_t> sizes{1000, 10000, 100000};
  std::size_t queries = 2000;
  int rounds = 3;
  bool quick = false;
  std::string data = MDG_BENCH_DATA_DIR;
  std::string shop = MDG_BENCH_SHOP_KB;
  std::string dicdir = MDG_BENCH_MECAB_DICDIR;
  double ja_mb = 3.0;
  unsigned build_threads = 0;  // BotOptions::build_threads: 0 is one per core
  bool xapian_glass = false;
};

template <typename T>
T parse_number(std::string_view flag, std::string_view s) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v <= T{}) {
    throw BenchError(std::string(flag) + ": not a positive number: '" + std::string(s) + "'", 2);
  }
  return v;
}

Options parse_args(int argc, char** argv) {
  Options o;
  bool sizes_set = false, queries_set = false, rounds_set = false, ja_set = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= args.size()) throw BenchError(std::string(a) + " needs a value", 2);
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--sizes") {
      o.sizes.clear();
      std::string_view v = value();
      while (!v.empty()) {
        std::size_t comma = v.find(',');
        o.sizes.push_back(parse_number<std::size_t>("--sizes", v.substr(0, comma)));
        v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
      }
      sizes_set = true;
    } else if (a == "--queries") {
      o.queries = parse_number<std::size_t>(a, value());
      queries_set = true;
    } else if (a == "--rounds") {
      o.rounds = parse_number<int>(a, value());
      rounds_set = true;
    } else if (a == "--data") {
      o.data = value();
    } else if (a == "--shop") {
      o.shop = value();
    } else if (a == "--mecab-dicdir") {
      o.dicdir = value();
    } else if (a == "--ja-mb") {
      o.ja_mb = parse_number<double>(a, value());
      ja_set = true;
    } else if (a == "--build-threads") {
      o.build_threads = parse_number<unsigned>(a, value());
    } else if (a == "--xapian") {
      std::string_view v = value();
      if (v != "inmemory" && v != "glass") throw BenchError("--xapian: inmemory or glass", 2);
      o.xapian_glass = v == "glass";
    } else {
      throw BenchError("unknown option '" + std::string(a) + "'\n\n" + kUsage, 2);
    }
  }
  if (o.quick) {  // explicit options still win
    if (!sizes_set) o.sizes = {200, 1000};
    if (!queries_set) o.queries = 300;
    if (!rounds_set) o.rounds = 1;
    if (!ja_set) o.ja_mb = 0.25;
  }
  return o;
}

int run(int argc, char** argv) {
  Options opt = parse_args(argc, argv);
  std::fprintf(stderr, "madoguchi-bench: loading data from %s\n", opt.data.c_str());
  Corpus corpus = load_corpus(opt.data, opt.shop);
  std::vector<std::string> queries = make_queries(corpus, opt.queries);
  std::size_t ja_queries = static_cast<std::size_t>(
      std::count_if(queries.begin(), queries.end(), [](const std::string& q) { return is_japanese_text(q); }));

  const unsigned build_threads =
      opt.build_threads ? opt.build_threads : std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  std::printf("madoguchi-bench: build %s, answers on 1 thread (index built on %u), %zu queries (%zu Japanese), "
              "%d timed round(s), xapian %s\n",
              MDG_BENCH_BUILD_TYPE, build_threads, queries.size(), ja_queries, opt.rounds,
              opt.xapian_glass ? "glass" : "inmemory");
  std::printf("data: %zu en + %zu ja real questions, %zu en + %zu ja query texts; SQLite %s, Xapian %s\n",
              corpus.en_questions.size(), corpus.ja_questions.size(), corpus.en_queries.size(),
              corpus.ja_queries.size(), sqlite3_libversion(), Xapian::version_string());
  std::fflush(stdout);

  const std::int64_t fixed_rss = fixed_bot_rss(opt.dicdir);
  if (fixed_rss >= 0) {
    std::printf("madoguchi fixed RSS per bot (MeCab model and taggers, ICU; subtracted below): %.2f MB\n",
                static_cast<double>(fixed_rss) / 1e6);
  }

  std::vector<SizeResult> results;
  for (std::size_t n : opt.sizes) {
    results.push_back(
        run_size(corpus, n, queries, opt.rounds, opt.dicdir, opt.build_threads, opt.xapian_glass, fixed_rss));
    print_size(results.back());
    std::fflush(stdout);
  }

  std::fprintf(stderr, "tokenization: %.2f MB of Japanese...\n", opt.ja_mb);
  TokenizeResult tok = run_tokenize(corpus, opt.ja_mb, opt.rounds, opt.dicdir);
  std::printf("\nJapanese tokenization: %zu lines, %.2f MB, %d round(s)\n", tok.lines, to_double(tok.bytes) / 1e6,
              tok.rounds);
  std::printf("  %-28s %8.2f MB/s  (%zu tokens per pass)\n", "madoguchi TextPipeline", tok.mdg_mb_s(),
              tok.mdg_tokens);
  std::printf("  %-28s %8.2f MB/s  (%zu nodes per pass)\n", "MeCab (tagger + lattice)", tok.mecab_mb_s(),
              tok.mecab_nodes);
  std::printf("  ratio madoguchi/MeCab: %.2fx\n\n", ratio(tok.mdg_mb_s(), tok.mecab_mb_s()));

  Json j;
  j.open().str("bench", "madoguchi-bench").str("build", MDG_BENCH_BUILD_TYPE).integer("threads", 1);
  j.integer("build_threads", build_threads);
  j.integer("queries", static_cast<std::int64_t>(queries.size()));
  j.integer("ja_queries", static_cast<std::int64_t>(ja_queries)).integer("rounds", opt.rounds);
  j.str("xapian_backend", opt.xapian_glass ? "glass" : "inmemory");
  j.integer("madoguchi_fixed_rss_bytes", fixed_rss);
  j.open_array("sizes");
  for (const auto& r : results) {
    j.open().integer("entries", static_cast<std::int64_t>(r.entries));
    j.integer("questions", static_cast<std::int64_t>(r.questions));
    j.integer("ja_entries", static_cast<std::int64_t>(r.ja_entries));
    j.integer("synthesized_questions", static_cast<std::int64_t>(r.synthesized));
    json_engine(j, "madoguchi", r.mdg, &r.mdg_build, r.entries);
    j.num("madoguchi_stats_build_ms", r.bot_stats.build_ms, 1);
    json_engine(j, "madoguchi_rank", r.mdg_rank, nullptr, r.entries);
    json_engine(j, "xapian", r.xapian, &r.xapian_build, r.entries);
    json_engine(j, "fts5", r.fts5, &r.fts5_build, r.entries);
    j.num("qps_ratio_vs_xapian", ratio(r.mdg.qps(), r.xapian.qps()), 3);
    j.num("qps_ratio_vs_fts5", ratio(r.mdg.qps(), r.fts5.qps()), 3);
    j.num("build_ratio_vs_xapian", ratio(r.mdg_build.ms, r.xapian_build.ms), 3);
    j.num("build_ratio_vs_fts5", ratio(r.mdg_build.ms, r.fts5_build.ms), 3);
    j.open("decisions");
    for (const auto& [d, count] : r.decisions) j.integer(d, static_cast<std::int64_t>(count));
    j.close();
    j.close();
  }
  j.close_array();
  j.open("tokenize_ja").integer("lines", static_cast<std::int64_t>(tok.lines));
  j.integer("bytes", static_cast<std::int64_t>(tok.bytes));
  j.num("madoguchi_mb_s", tok.mdg_mb_s(), 2).num("mecab_mb_s", tok.mecab_mb_s(), 2);
  j.num("ratio", ratio(tok.mdg_mb_s(), tok.mecab_mb_s()), 3);
  j.close();
  j.close();
  std::printf("%s\n", j.text().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const BenchError& e) {
    std::fprintf(stderr, "madoguchi-bench: %s\n", e.what());
    return e.exit_code;
  } catch (const Xapian::Error& e) {
    std::fprintf(stderr, "madoguchi-bench: Xapian: %s\n", e.get_description().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "madoguchi-bench: %s\n", e.what());
    return 1;
  }
}
