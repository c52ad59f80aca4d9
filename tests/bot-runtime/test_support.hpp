// Shared helpers for the bot runtime tests.
#pragma once

#include <madoguchi/bot/bot.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>

namespace mdg_test {

inline std::string source_path(const std::string& rel) { return std::string(MDG_SOURCE_DIR) + "/" + rel; }
inline std::string data_path(const std::string& rel) { return std::string(MDG_TEST_DATA_DIR) + "/" + rel; }

// The sample shop bot, built once for the whole test run (a Bot is immutable and thread-safe).
inline std::shared_ptr<const madoguchi::bot::Bot> shop_bot() {
  static std::shared_ptr<const madoguchi::bot::Bot> bot = [] {
    auto kb = madoguchi::bot::load_knowledge_file(source_path("samples/kb/shop.json"));
    REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
    auto b = madoguchi::bot::Bot::create(std::move(*kb));
    REQUIRE_MESSAGE(b.is_ok(), b.status().to_string());
    return *b;
  }();
  return bot;
}

inline std::shared_ptr<const madoguchi::bot::Bot> bot_from_json(const std::string& json) {
  auto kb = madoguchi::bot::parse_knowledge_json(json, "test.json");
  REQUIRE_MESSAGE(kb.is_ok(), kb.status().to_string());
  auto b = madoguchi::bot::Bot::create(std::move(*kb));
  REQUIRE_MESSAGE(b.is_ok(), b.status().to_string());
  return *b;
}

}  // namespace mdg_test
