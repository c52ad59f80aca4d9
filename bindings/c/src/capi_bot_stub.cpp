// capi_bot_stub.cpp: the bot functions of madoguchi.h in a library built without the bot
// (-DMDG_BUILD_BOT=OFF: a chat-only app does not carry ICU and MeCab). The ABI is the same as
// the full library's; every bot function fails with MDG_ENOTSUP, the _free functions do
// nothing (no handle can exist) and getters return their "no reply" values.
#include "capi_internal.hpp"

using namespace mdg_capi;

namespace {

int not_built(const char* function) noexcept {
  return set_error(MDG_ENOTSUP, std::string_view(function).empty()
                                    ? "built without the bot"
                                    : function);
}

// "mdg_bot_ask: this libmadoguchi was built without the bot (MDG_BUILD_BOT=OFF)"
#define MDG_NOT_BUILT(fn) not_built(fn ": this libmadoguchi was built without the bot (MDG_BUILD_BOT=OFF)")

}  // namespace

extern "C" {

MDG_EXTERN(unsigned int) mdg_features(void) { return MDG_FEATURE_CLIENT; }

MDG_EXTERN(int) mdg_bot_options_init(mdg_bot_options*, unsigned int) { return MDG_NOT_BUILT("mdg_bot_options_init"); }

MDG_EXTERN(int) mdg_bot_open_file(mdg_bot** out, const char*, const mdg_bot_options*) {
  if (out != nullptr) *out = nullptr;
  return MDG_NOT_BUILT("mdg_bot_open_file");
}

MDG_EXTERN(int) mdg_bot_open_string(mdg_bot** out, const char*, std::size_t, int, const char*,
                                    const mdg_bot_options*) {
  if (out != nullptr) *out = nullptr;
  return MDG_NOT_BUILT("mdg_bot_open_string");
}

MDG_EXTERN(int) mdg_bot_reload_file(mdg_bot*, const char*) { return MDG_NOT_BUILT("mdg_bot_reload_file"); }

MDG_EXTERN(int) mdg_bot_reload_string(mdg_bot*, const char*, std::size_t, int, const char*) {
  return MDG_NOT_BUILT("mdg_bot_reload_string");
}

MDG_EXTERN(int) mdg_bot_info_json(mdg_buf* out, const mdg_bot*) {
  if (out != nullptr) *out = mdg_buf MDG_BUF_INIT;
  return MDG_NOT_BUILT("mdg_bot_info_json");
}

MDG_EXTERN(void) mdg_bot_free(mdg_bot*) {}

MDG_EXTERN(int) mdg_bot_ask(mdg_reply** out, mdg_bot*, mdg_conversation*, const char*, std::size_t) {
  if (out != nullptr) *out = nullptr;
  return MDG_NOT_BUILT("mdg_bot_ask");
}

MDG_EXTERN(int) mdg_conversation_new(mdg_conversation** out) {
  if (out != nullptr) *out = nullptr;
  return MDG_NOT_BUILT("mdg_conversation_new");
}

MDG_EXTERN(void) mdg_conversation_free(mdg_conversation*) {}

MDG_EXTERN(int) mdg_conversation_set_locale(mdg_conversation*, const char*) {
  return MDG_NOT_BUILT("mdg_conversation_set_locale");
}

MDG_EXTERN(int) mdg_conversation_set_fallback_locale(mdg_conversation*, const char*) {
  return MDG_NOT_BUILT("mdg_conversation_set_fallback_locale");
}

MDG_EXTERN(int) mdg_conversation_set_visitor(mdg_conversation*, const char*, const char*) {
  return MDG_NOT_BUILT("mdg_conversation_set_visitor");
}

MDG_EXTERN(int) mdg_conversation_set_slot(mdg_conversation*, const char*, const char*) {
  return MDG_NOT_BUILT("mdg_conversation_set_slot");
}

MDG_EXTERN(int) mdg_conversation_slot(mdg_buf* out, const mdg_conversation*, const char*) {
  if (out != nullptr) *out = mdg_buf MDG_BUF_INIT;
  return MDG_NOT_BUILT("mdg_conversation_slot");
}

MDG_EXTERN(int) mdg_conversation_hand_back(mdg_conversation*) { return MDG_NOT_BUILT("mdg_conversation_hand_back"); }

MDG_EXTERN(int) mdg_conversation_add_turn(mdg_conversation*, const char*, const char*, std::size_t) {
  return MDG_NOT_BUILT("mdg_conversation_add_turn");
}

MDG_EXTERN(int) mdg_conversation_turn(const mdg_conversation*) { return MDG_NOT_BUILT("mdg_conversation_turn"); }

MDG_EXTERN(int) mdg_conversation_handed_off(const mdg_conversation*) {
  return MDG_NOT_BUILT("mdg_conversation_handed_off");
}

MDG_EXTERN(int) mdg_conversation_json(mdg_buf* out, const mdg_conversation*) {
  if (out != nullptr) *out = mdg_buf MDG_BUF_INIT;
  return MDG_NOT_BUILT("mdg_conversation_json");
}

MDG_EXTERN(int) mdg_reply_decision(const mdg_reply*) { return MDG_NOT_BUILT("mdg_reply_decision"); }

MDG_EXTERN(const char*) mdg_reply_text(const mdg_reply*, std::size_t* size) {
  if (size != nullptr) *size = 0;
  return nullptr;
}

MDG_EXTERN(const char*) mdg_reply_entry(const mdg_reply*) { return nullptr; }
MDG_EXTERN(const char*) mdg_reply_locale(const mdg_reply*) { return nullptr; }
MDG_EXTERN(const char*) mdg_reply_reason(const mdg_reply*) { return nullptr; }
MDG_EXTERN(std::size_t) mdg_reply_candidate_count(const mdg_reply*) { return 0; }
MDG_EXTERN(const mdg_candidate*) mdg_reply_candidate(const mdg_reply*, std::size_t) { return nullptr; }
MDG_EXTERN(std::size_t) mdg_reply_option_count(const mdg_reply*) { return 0; }
MDG_EXTERN(const mdg_option*) mdg_reply_option(const mdg_reply*, std::size_t) { return nullptr; }

MDG_EXTERN(int) mdg_reply_json(mdg_buf* out, const mdg_reply*) {
  if (out != nullptr) *out = mdg_buf MDG_BUF_INIT;
  return MDG_NOT_BUILT("mdg_reply_json");
}

MDG_EXTERN(int) mdg_reply_handoff_json(mdg_buf* out, const mdg_reply*) {
  if (out != nullptr) *out = mdg_buf MDG_BUF_INIT;
  return MDG_NOT_BUILT("mdg_reply_handoff_json");
}

MDG_EXTERN(int) mdg_reply_explain(mdg_buf* out, const mdg_reply*) {
  if (out != nullptr) *out = mdg_buf MDG_BUF_INIT;
  return MDG_NOT_BUILT("mdg_reply_explain");
}

MDG_EXTERN(void) mdg_reply_free(mdg_reply*) {}

}  // extern "C"
