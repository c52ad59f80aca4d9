/* capi_chat_only.c: libmadoguchi built without the bot (the chat-only variant of a full build,
 * as -DMDG_BUILD_BOT=OFF makes it): the same functions, every bot function fails with
 * MDG_ENOTSUP and says why, and the client works. */
#define _POSIX_C_SOURCE 200809L

#include "capi_test_support.h"

int main(void) {
  mdg_bot *bot = (mdg_bot *)&g_checks;
  mdg_conversation *conv = (mdg_conversation *)&g_checks;
  mdg_reply *reply = (mdg_reply *)&g_checks;
  mdg_bot_options bo = MDG_BOT_OPTIONS_INIT;
  mdg_client_options co = MDG_CLIENT_OPTIONS_INIT;
  mdg_client *client = NULL;
  mdg_buf buf = MDG_BUF_INIT;
  mdg_message_id id;
  size_t size = 7, pending = 0;
  g_test = "chat-only library";

  CHECK(mdg_features() == MDG_FEATURE_CLIENT);
  CHECK(strcmp(mdg_version(), MDG_VERSION_STRING) == 0);

  CHECK_RC(mdg_bot_open_file(&bot, SHOP_KB, NULL), MDG_ENOTSUP);
  CHECK(bot == NULL);
  CHECK_ERROR_SAYS("MDG_BUILD_BOT=OFF");
  CHECK_ERROR_SAYS("mdg_bot_open_file");
  CHECK(mdg_error_last_code() == MDG_ENOTSUP);
  CHECK_RC(mdg_bot_open_string(&bot, "{}", MDG_NTS, MDG_KB_JSON, NULL, &bo), MDG_ENOTSUP);
  CHECK_RC(mdg_bot_options_init(&bo, MDG_BOT_OPTIONS_VERSION), MDG_ENOTSUP);
  CHECK_RC(mdg_bot_reload_file(NULL, SHOP_KB), MDG_ENOTSUP);
  CHECK_RC(mdg_bot_reload_string(NULL, "{}", MDG_NTS, MDG_KB_JSON, NULL), MDG_ENOTSUP);
  buf.ptr = (char *)"junk";
  CHECK_RC(mdg_bot_info_json(&buf, NULL), MDG_ENOTSUP);
  CHECK(buf.ptr == NULL);
  CHECK_RC(mdg_bot_ask(&reply, NULL, NULL, "x", 1), MDG_ENOTSUP);
  CHECK(reply == NULL);
  CHECK_RC(mdg_conversation_new(&conv), MDG_ENOTSUP);
  CHECK(conv == NULL);
  CHECK_RC(mdg_conversation_set_locale(NULL, "ja"), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_set_fallback_locale(NULL, "ja"), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_set_visitor(NULL, "k", "v"), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_set_slot(NULL, "k", "v"), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_slot(&buf, NULL, "k"), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_hand_back(NULL), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_add_turn(NULL, "agent", "x", 1), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_turn(NULL), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_handed_off(NULL), MDG_ENOTSUP);
  CHECK_RC(mdg_conversation_json(&buf, NULL), MDG_ENOTSUP);
  CHECK_RC(mdg_reply_decision(NULL), MDG_ENOTSUP);
  CHECK_RC(mdg_reply_json(&buf, NULL), MDG_ENOTSUP);
  CHECK_RC(mdg_reply_handoff_json(&buf, NULL), MDG_ENOTSUP);
  CHECK_RC(mdg_reply_explain(&buf, NULL), MDG_ENOTSUP);
  CHECK(mdg_reply_text(NULL, &size) == NULL && size == 0);
  CHECK(mdg_reply_entry(NULL) == NULL && mdg_reply_locale(NULL) == NULL && mdg_reply_reason(NULL) == NULL);
  CHECK(mdg_reply_candidate_count(NULL) == 0 && mdg_reply_candidate(NULL, 0) == NULL);
  CHECK(mdg_reply_option_count(NULL) == 0 && mdg_reply_option(NULL, 0) == NULL);
  CHECK(strcmp(mdg_decision_name(MDG_DECISION_HANDOFF), "handoff") == 0);
  mdg_bot_free(NULL);
  mdg_conversation_free(NULL);
  mdg_reply_free(NULL);

  /* The client is all there. */
  co.url = "ws://127.0.0.1:1/v1/visitor";
  CHECK_OK(mdg_client_new(&client, &co));
  REQUIRE(client != NULL);
  CHECK_OK(mdg_client_send(&id, client, "こんにちは", MDG_NTS));
  CHECK_OK(mdg_client_pending(&pending, client));
  CHECK(pending == 1);
  CHECK_RC(mdg_client_close(client, 0), MDG_ETIMEDOUT);
  mdg_client_free(client);
  return finish();
}
