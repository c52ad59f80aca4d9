// Visitor messages of arbitrary bytes through the whole bot (normalization, MeCab, rules,
// ranking, policy, JSON output) on the sample shop knowledge base: a reply or an error.
#include <madoguchi/bot/bot.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

namespace {
std::shared_ptr<const madoguchi::bot::Bot> g_bot;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto kb = madoguchi::bot::load_knowledge_file(MDG_SHOP_KB);
  if (!kb) {
    std::fprintf(stderr, "%s\n", kb.status().to_string().c_str());
    std::abort();
  }
  auto bot = madoguchi::bot::Bot::create(std::move(*kb));
  if (!bot) {
    std::fprintf(stderr, "%s\n", bot.status().to_string().c_str());
    std::abort();
  }
  g_bot = *bot;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  madoguchi::bot::Conversation conv;
  // Two turns: the second sees the first one's context (previous answer, options).
  for (int turn = 0; turn < 2; ++turn) {
    auto reply = g_bot->respond(conv, text);
    if (!reply) break;
    (void)reply->to_json();
  }
  return 0;
}
