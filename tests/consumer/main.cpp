// Built against the installed package only: find_package(madoguchi), madoguchi::bot.
#include <madoguchi/bot/bot.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  auto kb = madoguchi::bot::load_knowledge_file(argv[1]);
  if (!kb) {
    std::fprintf(stderr, "%s\n", kb.status().to_string().c_str());
    return 1;
  }
  auto bot = madoguchi::bot::Bot::create(std::move(*kb));
  if (!bot) {
    std::fprintf(stderr, "%s\n", bot.status().to_string().c_str());
    return 1;
  }
  madoguchi::bot::Conversation conv;
  auto reply = (*bot)->respond(conv, "送料はいくらですか");
  if (!reply) return 1;
  std::printf("consumer: answered %s\n", reply->entry_id.c_str());
  return 0;
}
