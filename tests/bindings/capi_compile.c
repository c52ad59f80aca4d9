/* capi_compile.c: madoguchi.h compiles as strict C99 (-std=c99 -pedantic -Wall -Wextra
 * -Werror), every function has the signature written here, every one is exported by the
 * library (the program links), and the _INIT macros initialize every field. */
#include <madoguchi.h>
#include <madoguchi.h> /* twice: include guard */

#include <stdio.h>
#include <string.h>

typedef void (*any_fn)(void);

int main(void) {
  /* The whole API, with its types. A change of signature breaks this build. */
  const char *(*p_version)(void) = mdg_version;
  unsigned int (*p_version_number)(void) = mdg_version_number;
  unsigned int (*p_features)(void) = mdg_features;
  const char *(*p_error_last)(void) = mdg_error_last;
  int (*p_error_last_code)(void) = mdg_error_last_code;
  void (*p_error_clear)(void) = mdg_error_clear;
  const char *(*p_strerror)(int) = mdg_strerror;
  void (*p_buf_dispose)(mdg_buf *) = mdg_buf_dispose;
  int (*p_bot_options_init)(mdg_bot_options *, unsigned int) = mdg_bot_options_init;
  int (*p_bot_open_file)(mdg_bot **, const char *, const mdg_bot_options *) = mdg_bot_open_file;
  int (*p_bot_open_string)(mdg_bot **, const char *, size_t, int, const char *, const mdg_bot_options *) =
      mdg_bot_open_string;
  int (*p_bot_reload_file)(mdg_bot *, const char *) = mdg_bot_reload_file;
  int (*p_bot_reload_string)(mdg_bot *, const char *, size_t, int, const char *) = mdg_bot_reload_string;
  int (*p_bot_info_json)(mdg_buf *, const mdg_bot *) = mdg_bot_info_json;
  void (*p_bot_free)(mdg_bot *) = mdg_bot_free;
  int (*p_bot_ask)(mdg_reply **, mdg_bot *, mdg_conversation *, const char *, size_t) = mdg_bot_ask;
  int (*p_conversation_new)(mdg_conversation **) = mdg_conversation_new;
  void (*p_conversation_free)(mdg_conversation *) = mdg_conversation_free;
  int (*p_conversation_set_locale)(mdg_conversation *, const char *) = mdg_conversation_set_locale;
  int (*p_conversation_set_fallback_locale)(mdg_conversation *, const char *) = mdg_conversation_set_fallback_locale;
  int (*p_conversation_set_visitor)(mdg_conversation *, const char *, const char *) = mdg_conversation_set_visitor;
  int (*p_conversation_set_slot)(mdg_conversation *, const char *, const char *) = mdg_conversation_set_slot;
  int (*p_conversation_slot)(mdg_buf *, const mdg_conversation *, const char *) = mdg_conversation_slot;
  int (*p_conversation_hand_back)(mdg_conversation *) = mdg_conversation_hand_back;
  int (*p_conversation_add_turn)(mdg_conversation *, const char *, const char *, size_t) = mdg_conversation_add_turn;
  int (*p_conversation_turn)(const mdg_conversation *) = mdg_conversation_turn;
  int (*p_conversation_handed_off)(const mdg_conversation *) = mdg_conversation_handed_off;
  int (*p_conversation_json)(mdg_buf *, const mdg_conversation *) = mdg_conversation_json;
  int (*p_reply_decision)(const mdg_reply *) = mdg_reply_decision;
  const char *(*p_decision_name)(int) = mdg_decision_name;
  const char *(*p_reply_text)(const mdg_reply *, size_t *) = mdg_reply_text;
  const char *(*p_reply_entry)(const mdg_reply *) = mdg_reply_entry;
  const char *(*p_reply_locale)(const mdg_reply *) = mdg_reply_locale;
  const char *(*p_reply_reason)(const mdg_reply *) = mdg_reply_reason;
  size_t (*p_reply_candidate_count)(const mdg_reply *) = mdg_reply_candidate_count;
  const mdg_candidate *(*p_reply_candidate)(const mdg_reply *, size_t) = mdg_reply_candidate;
  size_t (*p_reply_option_count)(const mdg_reply *) = mdg_reply_option_count;
  const mdg_option *(*p_reply_option)(const mdg_reply *, size_t) = mdg_reply_option;
  int (*p_reply_json)(mdg_buf *, const mdg_reply *) = mdg_reply_json;
  int (*p_reply_handoff_json)(mdg_buf *, const mdg_reply *) = mdg_reply_handoff_json;
  int (*p_reply_explain)(mdg_buf *, const mdg_reply *) = mdg_reply_explain;
  void (*p_reply_free)(mdg_reply *) = mdg_reply_free;
  int (*p_client_options_init)(mdg_client_options *, unsigned int) = mdg_client_options_init;
  int (*p_client_new)(mdg_client **, const mdg_client_options *) = mdg_client_new;
  int (*p_client_connect)(mdg_client *) = mdg_client_connect;
  int (*p_client_send)(mdg_message_id *, mdg_client *, const char *, size_t) = mdg_client_send;
  int (*p_client_send_attachments)(mdg_message_id *, mdg_client *, const char *, size_t,
                                   const mdg_attachment *const *, size_t) = mdg_client_send_attachments;
  int (*p_client_typing)(mdg_client *, int) = mdg_client_typing;
  int (*p_client_mark_read)(mdg_client *, int64_t) = mdg_client_mark_read;
  int (*p_client_poll)(mdg_client *, int, size_t) = mdg_client_poll;
  int (*p_client_state)(int *, const mdg_client *) = mdg_client_state;
  int (*p_client_conversation)(mdg_buf *, const mdg_client *) = mdg_client_conversation;
  int (*p_client_last_seq)(int64_t *, const mdg_client *) = mdg_client_last_seq;
  int (*p_client_pending)(size_t *, const mdg_client *) = mdg_client_pending;
  int (*p_client_close)(mdg_client *, int) = mdg_client_close;
  void (*p_client_free)(mdg_client *) = mdg_client_free;
  mdg_log_cb log_cb = NULL;
  mdg_event_cb event_cb = NULL;

  size_t n = 0;
  mdg_bot_options bot_options = MDG_BOT_OPTIONS_INIT;
  mdg_client_options client_options = MDG_CLIENT_OPTIONS_INIT;
  mdg_buf buf = MDG_BUF_INIT;
  mdg_message_id id;
  mdg_event event;
  mdg_attachment attachment;
  mdg_candidate candidate;
  mdg_option option;

#define TAKE(p) \
  do {                \
    if ((p) == NULL) return 1; \
    ++n;              \
  } while (0)
  TAKE(p_version); TAKE(p_version_number); TAKE(p_features); TAKE(p_error_last); TAKE(p_error_last_code);
  TAKE(p_error_clear); TAKE(p_strerror); TAKE(p_buf_dispose); TAKE(p_bot_options_init); TAKE(p_bot_open_file);
  TAKE(p_bot_open_string); TAKE(p_bot_reload_file); TAKE(p_bot_reload_string); TAKE(p_bot_info_json);
  TAKE(p_bot_free); TAKE(p_bot_ask); TAKE(p_conversation_new); TAKE(p_conversation_free);
  TAKE(p_conversation_set_locale); TAKE(p_conversation_set_fallback_locale); TAKE(p_conversation_set_visitor);
  TAKE(p_conversation_set_slot); TAKE(p_conversation_slot); TAKE(p_conversation_hand_back);
  TAKE(p_conversation_add_turn); TAKE(p_conversation_turn); TAKE(p_conversation_handed_off);
  TAKE(p_conversation_json); TAKE(p_reply_decision); TAKE(p_decision_name); TAKE(p_reply_text);
  TAKE(p_reply_entry); TAKE(p_reply_locale); TAKE(p_reply_reason); TAKE(p_reply_candidate_count);
  TAKE(p_reply_candidate); TAKE(p_reply_option_count); TAKE(p_reply_option); TAKE(p_reply_json);
  TAKE(p_reply_handoff_json); TAKE(p_reply_explain); TAKE(p_reply_free); TAKE(p_client_options_init);
  TAKE(p_client_new); TAKE(p_client_connect); TAKE(p_client_send); TAKE(p_client_send_attachments);
  TAKE(p_client_typing); TAKE(p_client_mark_read); TAKE(p_client_poll); TAKE(p_client_state);
  TAKE(p_client_conversation); TAKE(p_client_last_seq); TAKE(p_client_pending); TAKE(p_client_close);
  TAKE(p_client_free);
#undef TAKE
  (void)log_cb;
  (void)event_cb;
  memset(&id, 0, sizeof id);
  memset(&event, 0, sizeof event);
  memset(&attachment, 0, sizeof attachment);
  memset(&candidate, 0, sizeof candidate);
  memset(&option, 0, sizeof option);
  if (bot_options.version != MDG_BOT_OPTIONS_VERSION || client_options.version != MDG_CLIENT_OPTIONS_VERSION) return 1;
  if (client_options.jitter_percent != 30 || buf.ptr != NULL || MDG_NTS != SIZE_MAX) return 1;
  if (p_version_number() != MDG_VERSION_NUMBER) return 1;
  printf("madoguchi %s: %u functions, C99\n", p_version(), (unsigned)n);
  return 0;
}
