/* capi_test.c: every function of madoguchi.h, used right and used wrong, from C.
 *
 * The bot part runs on an inline knowledge base and on samples/kb/shop.json; the live-chat part
 * talks to a real madoguchi-hub on 127.0.0.1 (port 0, its own SQLite file). The suite runs
 * this program as it is, under ASan/UBSan (the asan preset) and under valgrind (memcheck,
 * leaks are errors). It prints each failed check and exits 1 if any failed. */
#define _POSIX_C_SOURCE 200809L

#include "capi_test_support.h"

/* A small knowledge base (docs/knowledge-format.md), with a rule that hands off. */
static const char MINI_KB[] =
    "{\n"
    "  \"name\": \"mini-shop\",\n"
    "  \"default_locale\": \"ja\",\n"
    "  \"entries\": [\n"
    "    {\"id\": \"returns-window\",\n"
    "     \"questions\": [\"返品はできますか\", \"商品を返品したい\", \"Can I return an item?\"],\n"
    "     \"answer\": {\"ja\": \"商品到着後30日以内であれば返品できます。\", \"en\": \"You can return items within 30 days of delivery.\"},\n"
    "     \"follow_ups\": [\"refund-timing\"]},\n"
    "    {\"id\": \"refund-timing\",\n"
    "     \"questions\": [\"返金はいつですか\", \"When will I get my refund?\"],\n"
    "     \"answer\": {\"ja\": \"返品の到着後、5営業日以内に返金します。\", \"en\": \"We refund you within 5 business days.\"}},\n"
    "    {\"id\": \"shipping-fee\",\n"
    "     \"questions\": [\"送料はいくらですか\", \"How much is shipping?\"],\n"
    "     \"answer\": {\"ja\": \"送料は全国一律550円です。\", \"en\": \"Shipping is 550 yen anywhere in Japan.\"}}\n"
    "  ],\n"
    "  \"rules\": [\n"
    "    {\"id\": \"ask-for-person\", \"priority\": 100,\n"
    "     \"when\": {\"any\": [\"オペレーター\", \"担当者\", \"human\"]},\n"
    "     \"then\": {\"handoff\": \"visitor asked for a person\"}}\n"
    "  ]\n"
    "}\n";

/* The same, with one more entry (what a reload brings). */
static char *mini_kb_plus_gift(void) {
  const char *extra =
      "    {\"id\": \"gift-wrapping\",\n"
      "     \"questions\": [\"ギフト包装はできますか\", \"Do you gift wrap?\"],\n"
      "     \"answer\": {\"ja\": \"ギフト包装は1点330円です。\", \"en\": \"Gift wrapping is 330 yen.\"}},\n";
  const char *at = strstr(MINI_KB, "    {\"id\": \"shipping-fee\"");
  size_t head = (size_t)(at - MINI_KB);
  char *kb = (char *)malloc(sizeof MINI_KB + strlen(extra));
  memcpy(kb, MINI_KB, head);
  strcpy(kb + head, extra);
  strcat(kb, at);
  return kb;
}

static mdg_bot *open_mini(void) {
  mdg_bot *bot = NULL;
  CHECK_OK(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, MDG_KB_JSON, "mini.json", NULL));
  REQUIRE(bot != NULL);
  return bot;
}

static mdg_reply *ask(mdg_bot *bot, mdg_conversation *conv, const char *text) {
  mdg_reply *reply = NULL;
  CHECK_OK(mdg_bot_ask(&reply, bot, conv, text, MDG_NTS));
  REQUIRE(reply != NULL);
  return reply;
}

/* ---- versions and errors -------------------------------------------------------------- */

static void *other_thread_error(void *arg) {
  int *out = (int *)arg;
  out[0] = strcmp(mdg_error_last(), "") == 0;
  out[1] = mdg_error_last_code() == MDG_OK;
  mdg_buf_dispose(NULL);
  CHECK_RC(mdg_bot_open_file(NULL, "x.json", NULL), MDG_EINVAL);
  out[2] = contains(mdg_error_last(), "out");
  return NULL;
}

static void test_version_and_errors(void) {
  int codes[] = {MDG_OK, MDG_EINVAL, MDG_ENOTFOUND, MDG_EUNAVAILABLE, MDG_ETIMEDOUT, MDG_ECLOSED,
                 MDG_EINTERNAL, MDG_ENOMEM, MDG_ELIMIT, MDG_EBUSY, MDG_ENOTSUP, MDG_EVERSION};
  size_t i, j;
  pthread_t t;
  int seen[3] = {0, 0, 0};
  g_test = "version and errors";

  CHECK(strcmp(mdg_version(), MDG_VERSION_STRING) == 0);
  CHECK(mdg_version_number() == MDG_VERSION_NUMBER);
  CHECK((mdg_version_number() >> 16) == MDG_VERSION_MAJOR);
  CHECK((mdg_features() & MDG_FEATURE_BOT) != 0);
  CHECK((mdg_features() & MDG_FEATURE_CLIENT) != 0);

  for (i = 0; i < sizeof codes / sizeof codes[0]; ++i) {
    CHECK(mdg_strerror(codes[i]) != NULL && *mdg_strerror(codes[i]) != '\0');
    for (j = 0; j < i; ++j) CHECK(strcmp(mdg_strerror(codes[i]), mdg_strerror(codes[j])) != 0);
  }
  CHECK(strcmp(mdg_strerror(-12345), "unknown error") == 0);
  CHECK(strcmp(mdg_strerror(42), "unknown error") == 0);

  /* Never NULL, "" before any failure, per thread, and cleared on request. */
  mdg_error_clear();
  CHECK(mdg_error_last() != NULL && strcmp(mdg_error_last(), "") == 0);
  CHECK(mdg_error_last_code() == MDG_OK);
  CHECK_RC(mdg_bot_open_file(NULL, "x.json", NULL), MDG_EINVAL);
  CHECK(mdg_error_last_code() == MDG_EINVAL);
  CHECK_ERROR_SAYS("mdg_bot_open_file");
  REQUIRE(pthread_create(&t, NULL, other_thread_error, seen) == 0);
  pthread_join(t, NULL);
  CHECK_MSG(seen[0] && seen[1], "a new thread starts without an error");
  CHECK(seen[2]);
  CHECK(mdg_error_last_code() == MDG_EINVAL); /* this thread's error is still there */
  CHECK_ERROR_SAYS("`out` is NULL");
  /* A successful call leaves it as it was. */
  CHECK(mdg_version() != NULL);
  CHECK(mdg_error_last_code() == MDG_EINVAL);
  mdg_error_clear();
  CHECK(strcmp(mdg_error_last(), "") == 0 && mdg_error_last_code() == MDG_OK);
}

static void test_buffers_and_options(void) {
  mdg_buf buf = MDG_BUF_INIT;
  mdg_bot_options bo = MDG_BOT_OPTIONS_INIT;
  mdg_bot_options bo2;
  mdg_client_options co = MDG_CLIENT_OPTIONS_INIT;
  mdg_client_options co2;
  mdg_bot *bot = (mdg_bot *)&bo; /* a value that must be overwritten with NULL on failure */
  g_test = "buffers and options";

  mdg_buf_dispose(NULL);
  mdg_buf_dispose(&buf); /* empty */
  CHECK(buf.ptr == NULL && buf.size == 0);

  CHECK(bo.version == MDG_BOT_OPTIONS_VERSION && bo.log_level == MDG_LOG_INFO && bo.settings == NULL);
  memset(&bo2, 0xab, sizeof bo2);
  CHECK_OK(mdg_bot_options_init(&bo2, MDG_BOT_OPTIONS_VERSION));
  CHECK(bo2.version == bo.version && bo2.mecab_dicdir == NULL && bo2.max_message_bytes == 0 &&
        bo2.settings == NULL && bo2.log_cb == NULL && bo2.log_level == MDG_LOG_INFO && bo2.userdata == NULL);
  CHECK_RC(mdg_bot_options_init(NULL, MDG_BOT_OPTIONS_VERSION), MDG_EINVAL);
  CHECK_RC(mdg_bot_options_init(&bo2, 0), MDG_EVERSION);
  CHECK_RC(mdg_bot_options_init(&bo2, MDG_BOT_OPTIONS_VERSION + 1), MDG_EVERSION);
  CHECK_ERROR_SAYS("newer");

  CHECK(co.version == MDG_CLIENT_OPTIONS_VERSION && co.jitter_percent == 30 && co.dispatch == MDG_DISPATCH_CALLBACK);
  memset(&co2, 0xab, sizeof co2);
  CHECK_OK(mdg_client_options_init(&co2, MDG_CLIENT_OPTIONS_VERSION));
  CHECK(co2.url == NULL && co2.on_event == NULL && co2.jitter_percent == 30 && co2.log_level == MDG_LOG_INFO);
  CHECK_RC(mdg_client_options_init(NULL, 1), MDG_EINVAL);
  CHECK_RC(mdg_client_options_init(&co2, 0), MDG_EVERSION);
  CHECK_RC(mdg_client_options_init(&co2, 1000), MDG_EVERSION);

  /* An options struct that was never initialized, or from a newer header. */
  bo.version = 0;
  CHECK_RC(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, MDG_KB_JSON, NULL, &bo), MDG_EVERSION);
  CHECK(bot == NULL);
  CHECK_ERROR_SAYS("_INIT");
  bo.version = 7;
  CHECK_RC(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, MDG_KB_JSON, NULL, &bo), MDG_EVERSION);
}

/* ---- the bot ---------------------------------------------------------------------------- */

static void test_bot_open(void) {
  mdg_bot *bot = NULL;
  mdg_bot_options opts = MDG_BOT_OPTIONS_INIT;
  const char *settings[] = {"policy.answer_threshold=0.4", "ranking.k1=1.1", NULL};
  const char *bad_setting[] = {"nonsense", NULL};
  const char *unknown_setting[] = {"policy.no_such_thing=1", NULL};
  const char *csv = "id,question,answer_ja,answer_en\n"
                    "shipping-fee,送料はいくらですか,送料は550円です。,Shipping is 550 yen.\n"
                    ",How much is shipping?,,\n"
                    "returns,返品できますか,30日以内なら返品できます。,Within 30 days.\n";
  mdg_buf info = MDG_BUF_INIT;
  recorder logs;
  char *huge;
  char path[600];
  g_test = "bot: open";
  recorder_init(&logs);

  CHECK_RC(mdg_bot_open_file(NULL, SHOP_KB, NULL), MDG_EINVAL);
  bot = open_mini(); /* non-NULL: must be reset on failure */
  mdg_bot_free(bot);
  CHECK_RC(mdg_bot_open_file(&bot, NULL, NULL), MDG_EINVAL);
  CHECK(bot == NULL);
  CHECK_RC(mdg_bot_open_file(&bot, "/nonexistent/kb.json", NULL), MDG_ENOTFOUND);
  CHECK_ERROR_SAYS("/nonexistent/kb.json");
  CHECK_RC(mdg_bot_open_file(&bot, MDG_SOURCE_DIR "/README.md", NULL), MDG_EINVAL); /* not .json/.csv/.tsv */
  tmp_path(path, sizeof path, "broken.json");
  write_file(path, "{\n  \"entries\": [\n    {\"id\": \"x\",}\n  ]\n}\n");
  CHECK_RC(mdg_bot_open_file(&bot, path, NULL), MDG_EINVAL);
  CHECK_ERROR_SAYS("broken.json:3:");
  CHECK(bot == NULL);

  /* From a string: formats, source names, sizes. */
  CHECK_RC(mdg_bot_open_string(&bot, "{\"entries\": [", MDG_NTS, MDG_KB_JSON, "faq.json", NULL), MDG_EINVAL);
  CHECK_ERROR_SAYS("faq.json:1:");
  CHECK_RC(mdg_bot_open_string(&bot, "{\"entries\": [", MDG_NTS, MDG_KB_JSON, NULL, NULL), MDG_EINVAL);
  CHECK_ERROR_SAYS("<string>");
  CHECK_RC(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, 3, NULL, NULL), MDG_EINVAL);
  CHECK_ERROR_SAYS("format");
  CHECK_RC(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, -1, NULL, NULL), MDG_EINVAL);
  CHECK_RC(mdg_bot_open_string(&bot, NULL, 10, MDG_KB_JSON, NULL, NULL), MDG_EINVAL);
  CHECK_ERROR_SAYS("`text` is NULL");
  CHECK_RC(mdg_bot_open_string(&bot, NULL, 0, MDG_KB_JSON, NULL, NULL), MDG_EINVAL); /* empty text */
  CHECK_RC(mdg_bot_open_string(&bot, MINI_KB, (size_t)PTRDIFF_MAX + 1, MDG_KB_JSON, NULL, NULL), MDG_EINVAL);
  CHECK_ERROR_SAYS("larger than any object");
  CHECK_RC(mdg_bot_open_string(&bot, "{\"entries\": []}", MDG_NTS, MDG_KB_JSON, NULL, NULL), MDG_EINVAL);
  CHECK_ERROR_SAYS("no entries");
  CHECK_RC(mdg_bot_open_string(&bot, "{\"entries\": [{\"id\": \"\xff\"}]}", MDG_NTS, MDG_KB_JSON, NULL, NULL), MDG_EINVAL);
  CHECK_ERROR_SAYS("UTF-8");
  /* Only the first `size` bytes count: a prefix of the knowledge base is malformed JSON. */
  CHECK_RC(mdg_bot_open_string(&bot, MINI_KB, 40, MDG_KB_JSON, NULL, NULL), MDG_EINVAL);
  /* Over 256 MiB: refused before it is read (the bytes are never touched). */
  huge = (char *)malloc(((size_t)256 << 20) + 1);
  REQUIRE(huge != NULL);
  CHECK_RC(mdg_bot_open_string(&bot, huge, ((size_t)256 << 20) + 1, MDG_KB_JSON, "huge.json", NULL), MDG_ELIMIT);
  CHECK_ERROR_SAYS("256 MiB");
  free(huge);
  CHECK(bot == NULL);

  CHECK_OK(mdg_bot_open_string(&bot, csv, strlen(csv), MDG_KB_CSV, "faq.csv", NULL));
  if (bot != NULL) {
    mdg_reply *r = ask(bot, NULL, "How much is shipping?");
    CHECK(mdg_reply_decision(r) == MDG_DECISION_ANSWER);
    CHECK(strcmp(mdg_reply_entry(r), "shipping-fee") == 0);
    mdg_reply_free(r);
    mdg_bot_free(bot);
    bot = NULL;
  }
  {
    char *tsv = strdup(csv);
    char *p;
    for (p = tsv; *p != '\0'; ++p) {
      if (*p == ',') *p = '\t';
    }
    CHECK_OK(mdg_bot_open_string(&bot, tsv, MDG_NTS, MDG_KB_TSV, "faq.tsv", NULL));
    mdg_bot_free(bot);
    bot = NULL;
    CHECK_RC(mdg_bot_open_string(&bot, tsv, MDG_NTS, MDG_KB_CSV, "faq.tsv", NULL), MDG_EINVAL);
    free(tsv);
  }

  /* Options: settings, logging. */
  opts.settings = bad_setting;
  CHECK_RC(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, MDG_KB_JSON, NULL, &opts), MDG_EINVAL);
  CHECK_ERROR_SAYS("section.key=value");
  opts.settings = unknown_setting;
  CHECK_RC(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, MDG_KB_JSON, NULL, &opts), MDG_EINVAL);
  CHECK_ERROR_SAYS("policy.no_such_thing");
  opts.settings = settings;
  opts.log_cb = record_log;
  opts.log_level = MDG_LOG_DEBUG;
  opts.userdata = &logs;
  opts.max_message_bytes = 64;
  CHECK_OK(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, MDG_KB_JSON, NULL, &opts));
  CHECK_MSG(logs.log_lines > 0, "the bot logs that it is ready");
  if (bot != NULL) {
    mdg_reply *r = ask(bot, NULL, "返品はできますか。返品はできますか。返品はできますか。返品はできますか。");
    CHECK_MSG(contains(mdg_reply_reason(r), "cut to 64 bytes"), "reason: %s", mdg_reply_reason(r));
    mdg_reply_free(r);
    CHECK_OK(mdg_bot_info_json(&info, bot));
    CHECK(contains(info.ptr, "\"name\":\"mini-shop\""));
    CHECK(contains(info.ptr, "\"generation\":1"));
    CHECK(contains(info.ptr, "\"entries\":3"));
    CHECK(contains(info.ptr, "\"entry_ids\":[\"returns-window\",\"refund-timing\",\"shipping-fee\"]"));
    CHECK(info.size == strlen(info.ptr));
    mdg_buf_dispose(&info);
    CHECK(info.ptr == NULL && info.size == 0);
    mdg_buf_dispose(&info); /* twice: a no-op */
  }
  mdg_bot_free(bot);
  bot = NULL;
  opts.log_level = MDG_LOG_OFF;
  logs.log_lines = 0;
  opts.settings = NULL;
  CHECK_OK(mdg_bot_open_string(&bot, MINI_KB, MDG_NTS, MDG_KB_JSON, NULL, &opts));
  CHECK(logs.log_lines == 0);
  mdg_bot_free(bot);
  mdg_bot_free(NULL);
  recorder_destroy(&logs);
}

static void test_bot_ask(mdg_bot *shop) {
  mdg_bot *bot = open_mini();
  mdg_conversation *conv = NULL;
  mdg_reply *r;
  mdg_reply *r2 = (mdg_reply *)&r;
  mdg_buf buf = MDG_BUF_INIT;
  const mdg_candidate *c;
  const mdg_option *o;
  size_t size = 99, i;
  char *big;
  static const char with_nul[] = "送料\0はいくらですか";
  g_test = "bot: ask";

  CHECK_OK(mdg_conversation_new(&conv));
  REQUIRE(conv != NULL);
  CHECK(mdg_conversation_turn(conv) == 0);
  CHECK(mdg_conversation_handed_off(conv) == 0);

  r = ask(bot, conv, "返品はできますか");
  CHECK(mdg_reply_decision(r) == MDG_DECISION_ANSWER);
  CHECK(strcmp(mdg_decision_name(mdg_reply_decision(r)), "answer") == 0);
  CHECK(strcmp(mdg_reply_entry(r), "returns-window") == 0);
  CHECK(strcmp(mdg_reply_locale(r), "ja") == 0);
  CHECK(strcmp(mdg_reply_reason(r), "confident") == 0);
  CHECK(strcmp(mdg_reply_text(r, &size), "商品到着後30日以内であれば返品できます。") == 0);
  CHECK(size == strlen(mdg_reply_text(r, NULL)));
  CHECK(mdg_reply_candidate_count(r) >= 1 && mdg_reply_candidate_count(r) <= 5);
  c = mdg_reply_candidate(r, 0);
  REQUIRE(c != NULL);
  CHECK(strcmp(c->entry, "returns-window") == 0);
  CHECK(c->confidence > 0.5 && c->confidence <= 1.0);
  for (i = 1; i < mdg_reply_candidate_count(r); ++i) {
    CHECK(mdg_reply_candidate(r, i)->confidence <= mdg_reply_candidate(r, i - 1)->confidence);
  }
  CHECK(mdg_reply_candidate(r, mdg_reply_candidate_count(r)) == NULL);
  CHECK(mdg_reply_candidate(r, (size_t)-1) == NULL);
  CHECK(mdg_reply_option_count(r) == 0 && mdg_reply_option(r, 0) == NULL);
  CHECK_OK(mdg_reply_json(&buf, r));
  CHECK(contains(buf.ptr, "\"decision\":\"answer\"") && contains(buf.ptr, "\"follow_ups\":[\"refund-timing\"]"));
  mdg_buf_dispose(&buf);
  CHECK_OK(mdg_reply_explain(&buf, r));
  CHECK(contains(buf.ptr, "normalized: 返品はできますか"));
  CHECK(contains(buf.ptr, "decision:   answer (confident) -> returns-window"));
  CHECK(contains(buf.ptr, "1. returns-window"));
  mdg_buf_dispose(&buf);
  buf.ptr = (char *)"not NULL";
  CHECK_RC(mdg_reply_handoff_json(&buf, r), MDG_ENOTFOUND);
  CHECK(buf.ptr == NULL && buf.size == 0);
  CHECK_ERROR_SAYS("decision: answer");
  mdg_reply_free(r);
  CHECK(mdg_conversation_turn(conv) == 1);

  /* English follows the detected language. */
  r = ask(bot, conv, "When will I get my refund?");
  CHECK(strcmp(mdg_reply_entry(r), "refund-timing") == 0);
  CHECK(strcmp(mdg_reply_locale(r), "en") == 0);
  mdg_reply_free(r);

  /* Visitor attributes and slots go into the hand-off package. */
  CHECK_OK(mdg_conversation_set_visitor(conv, "customer_id", "c-42"));
  CHECK_OK(mdg_conversation_set_visitor(conv, "plan", "gold"));
  CHECK_OK(mdg_conversation_set_visitor(conv, "plan", NULL)); /* removed */
  CHECK_OK(mdg_conversation_set_slot(conv, "order_id", "A-1001"));
  r = ask(bot, conv, "オペレーターと話したい");
  CHECK(mdg_reply_decision(r) == MDG_DECISION_HANDOFF);
  CHECK(strcmp(mdg_reply_reason(r), "visitor asked for a person") == 0);
  CHECK(strcmp(mdg_reply_entry(r), "") == 0);
  CHECK_OK(mdg_reply_handoff_json(&buf, r));
  CHECK(contains(buf.ptr, "\"reason\":\"visitor asked for a person\""));
  CHECK(contains(buf.ptr, "\"visitor\":{\"customer_id\":\"c-42\"}"));
  CHECK(contains(buf.ptr, "\"slots\":{\"order_id\":\"A-1001\"}"));
  CHECK(contains(buf.ptr, "\"transcript\":[{\"role\":\"visitor\",\"text\":\"返品はできますか\""));
  CHECK(contains(buf.ptr, "\"rules_fired\":[\"ask-for-person\"]"));
  mdg_buf_dispose(&buf);
  CHECK_OK(mdg_reply_explain(&buf, r));
  CHECK(contains(buf.ptr, "rules:      ask-for-person"));
  mdg_buf_dispose(&buf);
  mdg_reply_free(r);
  CHECK(mdg_conversation_handed_off(conv) == 1);
  CHECK(mdg_conversation_turn(conv) == 3);

  /* Invalid UTF-8: an error, and the conversation is not changed. */
  r2 = (mdg_reply *)&r;
  CHECK_RC(mdg_bot_ask(&r2, bot, conv, "\xe8\xbf\x94\xff", 4), MDG_EINVAL);
  CHECK(r2 == NULL);
  CHECK_ERROR_SAYS("mdg_bot_ask: message: invalid UTF-8 at byte 3");
  CHECK_RC(mdg_bot_ask(&r2, bot, conv, "\xc0\xaf", MDG_NTS), MDG_EINVAL); /* overlong */
  CHECK_RC(mdg_bot_ask(&r2, bot, conv, "\xed\xa0\x80", MDG_NTS), MDG_EINVAL); /* a surrogate */
  CHECK(mdg_conversation_turn(conv) == 3);

  /* Text with a NUL byte inside: the size says where it ends. */
  r = ask(bot, NULL, "x");
  mdg_reply_free(r);
  CHECK_OK(mdg_bot_ask(&r, bot, conv, with_nul, sizeof with_nul - 1));
  mdg_reply_free(r);
  CHECK(mdg_conversation_turn(conv) == 4);

  /* Empty text: a graceful fallback. (NULL, 0) is the empty text. */
  CHECK_OK(mdg_bot_ask(&r, bot, NULL, NULL, 0));
  CHECK(mdg_reply_decision(r) == MDG_DECISION_FALLBACK);
  CHECK(strcmp(mdg_reply_reason(r), "empty message") == 0);
  mdg_reply_free(r);
  CHECK_RC(mdg_bot_ask(&r2, bot, NULL, NULL, 3), MDG_EINVAL);

  /* A huge message (4 MiB) is cut to max_message_bytes (16 KiB by default). */
  big = (char *)malloc((size_t)4 << 20);
  REQUIRE(big != NULL);
  for (i = 0; i + 3 <= ((size_t)4 << 20); i += 3) memcpy(big + i, "送", 3);
  CHECK_OK(mdg_bot_ask(&r, bot, NULL, big, i));
  CHECK_MSG(contains(mdg_reply_reason(r), "(message cut to 16384 bytes)"), "reason: %s", mdg_reply_reason(r));
  mdg_reply_free(r);
  free(big);

  /* A clarifying question with options, answered by number (shop.json's payment-vague rule). */
  {
    mdg_conversation *pay = NULL;
    CHECK_OK(mdg_conversation_new(&pay));
    r = ask(shop, pay, "支払い");
    CHECK(mdg_reply_decision(r) == MDG_DECISION_CLARIFY);
    CHECK(mdg_reply_option_count(r) == 4);
    o = mdg_reply_option(r, 1);
    REQUIRE(o != NULL);
    CHECK(strcmp(o->entry, "payment-konbini") == 0);
    CHECK(strcmp(o->label, "コンビニ払い") == 0 && o->label_size == strlen("コンビニ払い"));
    CHECK(mdg_reply_option(r, 4) == NULL);
    mdg_reply_free(r);
    r = ask(shop, pay, "2");
    CHECK(mdg_reply_decision(r) == MDG_DECISION_ANSWER);
    CHECK(strcmp(mdg_reply_entry(r), "payment-konbini") == 0);
    mdg_reply_free(r);
    mdg_conversation_free(pay);
  }

  /* Wrong use of ask and of replies. */
  CHECK_RC(mdg_bot_ask(NULL, bot, conv, "x", 1), MDG_EINVAL);
  CHECK_RC(mdg_bot_ask(&r2, NULL, conv, "x", 1), MDG_EINVAL);
  CHECK_ERROR_SAYS("`bot` is NULL");
  CHECK(r2 == NULL);
  CHECK(mdg_reply_decision(NULL) == MDG_EINVAL);
  CHECK(mdg_reply_text(NULL, &size) == NULL && size == 0);
  CHECK(mdg_reply_entry(NULL) == NULL && mdg_reply_locale(NULL) == NULL && mdg_reply_reason(NULL) == NULL);
  CHECK(mdg_reply_candidate_count(NULL) == 0 && mdg_reply_candidate(NULL, 0) == NULL);
  CHECK(mdg_reply_option_count(NULL) == 0 && mdg_reply_option(NULL, 0) == NULL);
  CHECK_RC(mdg_reply_json(&buf, NULL), MDG_EINVAL);
  CHECK_RC(mdg_reply_json(NULL, NULL), MDG_EINVAL);
  CHECK_RC(mdg_reply_handoff_json(&buf, NULL), MDG_EINVAL);
  CHECK_RC(mdg_reply_handoff_json(NULL, NULL), MDG_EINVAL);
  CHECK_RC(mdg_reply_explain(&buf, NULL), MDG_EINVAL);
  CHECK_RC(mdg_reply_explain(NULL, NULL), MDG_EINVAL);
  CHECK(strcmp(mdg_decision_name(MDG_DECISION_FALLBACK), "fallback") == 0);
  CHECK(strcmp(mdg_decision_name(5), "unknown") == 0 && strcmp(mdg_decision_name(-1), "unknown") == 0);
  mdg_reply_free(NULL);

  /* A reply outlives its bot and its conversation. */
  r = ask(bot, conv, "送料はいくらですか");
  mdg_conversation_free(conv);
  mdg_bot_free(bot);
  CHECK(strcmp(mdg_reply_entry(r), "shipping-fee") == 0);
  CHECK_OK(mdg_reply_json(&buf, r));
  mdg_buf_dispose(&buf);
  mdg_reply_free(r);
}

static void test_conversation(mdg_bot *shop) {
  mdg_conversation *conv = NULL;
  mdg_conversation *c2 = (mdg_conversation *)&conv;
  mdg_bot *bot = open_mini();
  mdg_bot *missing = NULL;
  mdg_buf buf = MDG_BUF_INIT;
  mdg_reply *r;
  g_test = "bot: conversation";

  CHECK_RC(mdg_conversation_new(NULL), MDG_EINVAL);
  CHECK_OK(mdg_conversation_new(&conv));
  REQUIRE(conv != NULL);

  /* A pinned locale wins over detection; "" unpins it. */
  CHECK_OK(mdg_conversation_set_locale(conv, "en"));
  r = ask(bot, conv, "送料はいくらですか");
  CHECK(strcmp(mdg_reply_locale(r), "en") == 0);
  CHECK(strcmp(mdg_reply_text(r, NULL), "Shipping is 550 yen anywhere in Japan.") == 0);
  mdg_reply_free(r);
  CHECK_OK(mdg_conversation_set_locale(conv, NULL));
  CHECK_OK(mdg_conversation_set_fallback_locale(conv, "en"));
  CHECK_OK(mdg_conversation_set_fallback_locale(conv, ""));

  /* Slots. */
  CHECK_OK(mdg_conversation_set_slot(conv, "order_id", "A-1"));
  CHECK_OK(mdg_conversation_slot(&buf, conv, "order_id"));
  CHECK(buf.ptr != NULL && strcmp(buf.ptr, "A-1") == 0 && buf.size == 3);
  mdg_buf_dispose(&buf);
  CHECK_OK(mdg_conversation_set_slot(conv, "order_id", NULL));
  buf.ptr = (char *)"junk";
  CHECK_RC(mdg_conversation_slot(&buf, conv, "order_id"), MDG_ENOTFOUND);
  CHECK(buf.ptr == NULL);
  CHECK_ERROR_SAYS("order_id");
  CHECK_RC(mdg_conversation_slot(&buf, conv, NULL), MDG_EINVAL);
  CHECK_RC(mdg_conversation_slot(NULL, conv, "x"), MDG_EINVAL);

  /* Hand-off, an agent's turn, hand back. */
  r = ask(bot, conv, "担当者と話したい");
  CHECK(mdg_reply_decision(r) == MDG_DECISION_HANDOFF);
  mdg_reply_free(r);
  CHECK(mdg_conversation_handed_off(conv) == 1);
  CHECK_OK(mdg_conversation_add_turn(conv, "agent", "担当の佐藤です。", MDG_NTS));
  CHECK_RC(mdg_conversation_add_turn(conv, "agent", "\xff", 1), MDG_EINVAL);
  CHECK_RC(mdg_conversation_add_turn(conv, NULL, "x", 1), MDG_EINVAL);
  CHECK_RC(mdg_conversation_add_turn(conv, "", "x", 1), MDG_EINVAL);
  CHECK_RC(mdg_conversation_add_turn(conv, "agent", NULL, 5), MDG_EINVAL);
  CHECK_OK(mdg_conversation_hand_back(conv));
  CHECK(mdg_conversation_handed_off(conv) == 0);
  CHECK_OK(mdg_conversation_json(&buf, conv));
  CHECK(contains(buf.ptr, "\"turn\":2"));
  CHECK(contains(buf.ptr, "\"handed_off\":false"));
  CHECK(contains(buf.ptr, "{\"role\":\"agent\",\"text\":\"担当の佐藤です。\""));
  CHECK(contains(buf.ptr, "\"previous_answer\":\"\""));
  mdg_buf_dispose(&buf);

  /* The same conversation goes on with another bot. */
  r = ask(shop, conv, "送料はいくらですか");
  CHECK(strcmp(mdg_reply_entry(r), "shipping-fee") == 0);
  mdg_reply_free(r);
  CHECK(mdg_conversation_turn(conv) == 3);

  /* Invalid UTF-8 anywhere is refused, and changes nothing. */
  CHECK_RC(mdg_conversation_set_visitor(conv, "name", "\xe3\x81"), MDG_EINVAL);
  CHECK_ERROR_SAYS("not valid UTF-8");
  CHECK_RC(mdg_conversation_set_visitor(conv, "\xff", "x"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_set_slot(conv, "order", "\xc0\x80"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_set_locale(conv, "\xf5"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_set_fallback_locale(conv, "\xed\xa0\x80"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_add_turn(conv, "\xff", "x", 1), MDG_EINVAL);
  CHECK_RC(mdg_conversation_slot(&buf, conv, "order"), MDG_ENOTFOUND);
  CHECK_RC(mdg_conversation_slot(&buf, conv, "ord\xff"), MDG_EINVAL); /* not "not set" */
  CHECK_ERROR_SAYS("`key` is not valid UTF-8 (byte 3)");
  /* A message that quotes the caller's bytes stays UTF-8. */
  CHECK_RC(mdg_bot_open_file(&missing, "/nonexistent/\xff.json", NULL), MDG_ENOTFOUND);
  CHECK_ERROR_SAYS("/nonexistent/\xef\xbf\xbd.json");

  /* NULL conversations. */
  CHECK_RC(mdg_conversation_set_locale(NULL, "ja"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_set_fallback_locale(NULL, "ja"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_set_visitor(NULL, "k", "v"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_set_visitor(conv, NULL, "v"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_set_slot(NULL, "k", "v"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_set_slot(conv, NULL, "v"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_slot(&buf, NULL, "k"), MDG_EINVAL);
  CHECK_RC(mdg_conversation_hand_back(NULL), MDG_EINVAL);
  CHECK_RC(mdg_conversation_add_turn(NULL, "agent", "x", 1), MDG_EINVAL);
  CHECK_RC(mdg_conversation_turn(NULL), MDG_EINVAL);
  CHECK_RC(mdg_conversation_handed_off(NULL), MDG_EINVAL);
  CHECK_RC(mdg_conversation_json(&buf, NULL), MDG_EINVAL);
  CHECK_RC(mdg_conversation_json(NULL, conv), MDG_EINVAL);
  (void)c2;
  mdg_conversation_free(NULL);
  mdg_conversation_free(conv);
  mdg_bot_free(bot);
}

/* Two threads on one conversation: every call either runs or fails with MDG_EBUSY; the
 * conversation counts exactly the turns that ran. */
typedef struct shared_conv {
  mdg_bot *bot;
  mdg_conversation *conv;
  int ok;
  int busy;
  int other;
} shared_conv;

static void *hammer_conversation(void *arg) {
  shared_conv *s = (shared_conv *)arg;
  int i;
  for (i = 0; i < 40; ++i) {
    mdg_reply *r = NULL;
    int rc = mdg_bot_ask(&r, s->bot, s->conv, "送料はいくらですか", MDG_NTS);
    if (rc == MDG_OK) {
      ++s->ok;
    } else if (rc == MDG_EBUSY) {
      ++s->busy;
    } else {
      ++s->other;
    }
    mdg_reply_free(r);
  }
  return NULL;
}

static void test_conversation_misuse(void) {
  shared_conv a, b;
  pthread_t ta, tb;
  g_test = "bot: one conversation on two threads";
  memset(&a, 0, sizeof a);
  a.bot = open_mini();
  CHECK_OK(mdg_conversation_new(&a.conv));
  b = a;
  REQUIRE(pthread_create(&ta, NULL, hammer_conversation, &a) == 0);
  REQUIRE(pthread_create(&tb, NULL, hammer_conversation, &b) == 0);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  CHECK(a.other == 0 && b.other == 0);
  CHECK(a.ok + a.busy == 40 && b.ok + b.busy == 40);
  CHECK_MSG(mdg_conversation_turn(a.conv) == a.ok + b.ok, "turns %d, answered %d", mdg_conversation_turn(a.conv),
            a.ok + b.ok);
  mdg_conversation_free(a.conv);
  mdg_bot_free(a.bot);
}

static void test_reload(void) {
  mdg_bot *bot = open_mini();
  mdg_conversation *conv = NULL;
  mdg_reply *before, *r;
  mdg_buf info = MDG_BUF_INIT;
  char *plus = mini_kb_plus_gift();
  g_test = "bot: reload";

  CHECK_OK(mdg_conversation_new(&conv));
  before = ask(bot, conv, "ギフト包装はできますか");
  CHECK(strcmp(mdg_reply_entry(before), "gift-wrapping") != 0);

  CHECK_OK(mdg_bot_reload_string(bot, plus, strlen(plus), MDG_KB_JSON, "plus.json"));
  r = ask(bot, conv, "ギフト包装はできますか");
  CHECK(mdg_reply_decision(r) == MDG_DECISION_ANSWER);
  CHECK(strcmp(mdg_reply_entry(r), "gift-wrapping") == 0);
  mdg_reply_free(r);
  CHECK(mdg_conversation_turn(conv) == 2); /* the conversation went on across the swap */
  CHECK_OK(mdg_bot_info_json(&info, bot));
  CHECK(contains(info.ptr, "\"generation\":2") && contains(info.ptr, "\"entries\":4"));
  CHECK(contains(info.ptr, "\"source\":\"plus.json\""));
  mdg_buf_dispose(&info);

  /* A bad knowledge base changes nothing. */
  CHECK_RC(mdg_bot_reload_string(bot, "{\"entries\": 3}", MDG_NTS, MDG_KB_JSON, "bad.json"), MDG_EINVAL);
  CHECK_ERROR_SAYS("bad.json");
  CHECK_RC(mdg_bot_reload_file(bot, "/nonexistent/kb.json"), MDG_ENOTFOUND);
  CHECK_RC(mdg_bot_reload_string(bot, MINI_KB, MDG_NTS, 9, NULL), MDG_EINVAL);
  r = ask(bot, conv, "ギフト包装はできますか");
  CHECK(strcmp(mdg_reply_entry(r), "gift-wrapping") == 0);
  mdg_reply_free(r);
  CHECK_OK(mdg_bot_info_json(&info, bot));
  CHECK(contains(info.ptr, "\"generation\":2"));
  mdg_buf_dispose(&info);

  /* From a file. */
  CHECK_OK(mdg_bot_reload_file(bot, SHOP_KB));
  r = ask(bot, conv, "のしは付けられますか");
  CHECK_MSG(strcmp(mdg_reply_entry(r), "noshi") == 0, "entry %s", mdg_reply_entry(r));
  mdg_reply_free(r);
  CHECK_OK(mdg_bot_info_json(&info, bot));
  CHECK(contains(info.ptr, "\"generation\":3") && contains(info.ptr, "\"entries\":56"));
  mdg_buf_dispose(&info);

  CHECK_RC(mdg_bot_reload_file(NULL, SHOP_KB), MDG_EINVAL);
  CHECK_RC(mdg_bot_reload_file(bot, NULL), MDG_EINVAL);
  CHECK_RC(mdg_bot_reload_string(NULL, MINI_KB, MDG_NTS, MDG_KB_JSON, NULL), MDG_EINVAL);
  CHECK_RC(mdg_bot_reload_string(bot, NULL, 1, MDG_KB_JSON, NULL), MDG_EINVAL);
  CHECK_RC(mdg_bot_info_json(&info, NULL), MDG_EINVAL);
  CHECK_RC(mdg_bot_info_json(NULL, bot), MDG_EINVAL);

  /* The reply from before the reloads is unchanged. */
  CHECK(strcmp(mdg_reply_entry(before), "gift-wrapping") != 0);
  mdg_bot_free(bot);
  CHECK(mdg_reply_text(before, NULL) != NULL);
  mdg_reply_free(before);
  mdg_conversation_free(conv);
  free(plus);
}

/* ---- the client without a hub ----------------------------------------------------------- */

static void test_client_offline(void) {
  mdg_client_options o = MDG_CLIENT_OPTIONS_INIT;
  mdg_client *c = NULL, *c2 = NULL;
  mdg_message_id id, id2;
  mdg_attachment photo = {"photo.jpg", "image/jpeg", 120334, "https://cdn.example/p/1.jpg"};
  const mdg_attachment *atts[17];
  const char *visitor_odd[] = {"customer_id", NULL};
  const char *visitor[] = {"customer_id", "c-42", "plan", "gold", NULL};
  int backoff_bad[] = {100, 0};
  int backoff[] = {50, 100};
  char state_path[600];
  char *saved;
  char *big;
  size_t pending = 99;
  int state = -1;
  int64_t last = -1;
  mdg_buf conv = MDG_BUF_INIT;
  int i;
  g_test = "client: options and offline use";
  tmp_path(state_path, sizeof state_path, "offline.json");

  CHECK_RC(mdg_client_new(NULL, &o), MDG_EINVAL);
  CHECK_RC(mdg_client_new(&c, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL); /* no url */
  CHECK_ERROR_SAYS("url");
  o.url = "http://127.0.0.1:1/v1/visitor";
  CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
  o.url = "ws://127.0.0.1:1/v1/visitor";
  o.version = 0;
  CHECK_RC(mdg_client_new(&c, &o), MDG_EVERSION);
  o.version = MDG_CLIENT_OPTIONS_VERSION;
  o.dispatch = 7;
  CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
  o.dispatch = MDG_DISPATCH_CALLBACK;
  o.visitor = visitor_odd;
  CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
  CHECK_ERROR_SAYS("customer_id");
  {
    const char *visitor_bad[] = {"name", "\xff", NULL};
    o.visitor = visitor_bad;
    CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
    CHECK_ERROR_SAYS("UTF-8");
    o.visitor = NULL;
    o.locale = "\xe3";
    CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
    o.locale = NULL;
  }
  o.visitor = visitor;
  o.backoff_ms = backoff_bad;
  o.backoff_count = 2;
  CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
  o.backoff_ms = NULL;
  CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
  o.backoff_ms = backoff;
  o.jitter_percent = 101;
  CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
  o.jitter_percent = 30;
  CHECK(c == NULL);

  /* A state file that is not ours is never overwritten. */
  write_file(state_path, "{\"outbox\": 12}");
  o.state_path = state_path;
  CHECK_RC(mdg_client_new(&c, &o), MDG_EINVAL);
  CHECK_ERROR_SAYS("offline.json");
  remove(state_path);

  /* Nobody listens on port 1: the client stays offline, and the outbox keeps what is sent. */
  CHECK_OK(mdg_client_new(&c, &o));
  REQUIRE(c != NULL);
  CHECK_RC(mdg_client_new(&c2, &o), MDG_EUNAVAILABLE); /* the state file is locked */
  CHECK(c2 == NULL);
  CHECK_OK(mdg_client_state(&state, c));
  CHECK(state == MDG_STATE_DISCONNECTED);
  CHECK_OK(mdg_client_send(&id, c, "送料はいくらですか", MDG_NTS));
  CHECK(strncmp(id.str, "m-", 2) == 0 && strlen(id.str) > 2 && strlen(id.str) <= 64);
  CHECK_OK(mdg_client_send(NULL, c, "返品したいです", MDG_NTS)); /* the id is optional */
  CHECK_OK(mdg_client_pending(&pending, c));
  CHECK(pending == 2);
  saved = read_file(state_path, NULL);
  CHECK_MSG(contains(saved, "送料はいくらですか") && contains(saved, id.str), "state file: %s", saved ? saved : "(none)");
  free(saved);

  /* Messages the hub would refuse. */
  CHECK_RC(mdg_client_send(&id2, c, "", 0), MDG_EINVAL);
  CHECK(id2.str[0] == '\0');
  CHECK_RC(mdg_client_send(&id2, c, "\xff\xfe", 2), MDG_EINVAL);
  CHECK_ERROR_SAYS("mdg_client_send: `text` is not valid UTF-8 (byte 0)");
  CHECK_RC(mdg_client_send(&id2, c, NULL, 4), MDG_EINVAL);
  CHECK_RC(mdg_client_send(&id2, NULL, "x", 1), MDG_EINVAL);
  big = (char *)malloc(70 * 1024);
  memset(big, 'a', 70 * 1024);
  CHECK_RC(mdg_client_send(&id2, c, big, 70 * 1024), MDG_EINVAL);
  free(big);
  for (i = 0; i < 17; ++i) atts[i] = &photo;
  CHECK_RC(mdg_client_send_attachments(&id2, c, "", 0, atts, 17), MDG_EINVAL);
  CHECK_RC(mdg_client_send_attachments(&id2, c, "x", 1, NULL, 2), MDG_EINVAL);
  atts[1] = NULL;
  CHECK_RC(mdg_client_send_attachments(&id2, c, "x", 1, atts, 2), MDG_EINVAL);
  CHECK_ERROR_SAYS("attachments[1]");
  {
    mdg_attachment bad = {"\xff.jpg", "image/jpeg", 1, "https://x"};
    atts[1] = &bad;
    CHECK_RC(mdg_client_send_attachments(&id2, c, "x", 1, atts, 2), MDG_EINVAL);
    CHECK_ERROR_SAYS("UTF-8");
  }
  /* A pick without its entry or label, or not UTF-8. */
  CHECK_RC(mdg_client_choose(&id2, c, "", "ポイントの使い方"), MDG_EINVAL);
  CHECK(id2.str[0] == '\0');
  CHECK_RC(mdg_client_choose(&id2, c, "points-use", ""), MDG_EINVAL);
  CHECK_RC(mdg_client_choose(&id2, c, NULL, "x"), MDG_EINVAL);
  CHECK_RC(mdg_client_choose(&id2, c, "points-use", NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_choose(&id2, c, "points-use", "\xff"), MDG_EINVAL);
  CHECK_ERROR_SAYS("UTF-8");
  CHECK_RC(mdg_client_choose(&id2, NULL, "points-use", "x"), MDG_EINVAL);
  CHECK_OK(mdg_client_pending(&pending, c));
  CHECK(pending == 2);

  /* Indicators are ignored while offline; a negative seq is wrong. */
  CHECK_OK(mdg_client_typing(c, 1));
  CHECK_OK(mdg_client_mark_read(c, 3));
  CHECK_RC(mdg_client_mark_read(c, -1), MDG_EINVAL);
  CHECK_RC(mdg_client_poll(c, 0, 0), 0); /* callback dispatch: nothing to poll */
  CHECK_OK(mdg_client_last_seq(&last, c));
  CHECK(last == 0);
  CHECK_OK(mdg_client_conversation(&conv, c));
  CHECK(conv.ptr != NULL && conv.size == 0 && conv.ptr[0] == '\0');
  mdg_buf_dispose(&conv);

  CHECK_OK(mdg_client_connect(c));
  CHECK_RC(mdg_client_connect(c), MDG_EINVAL); /* started already */
  /* close cannot flush: the messages stay in the state file. */
  CHECK_RC(mdg_client_close(c, 300), MDG_ETIMEDOUT);
  CHECK_ERROR_SAYS("offline.json");
  CHECK_RC(mdg_client_close(c, 0), MDG_ETIMEDOUT); /* the same answer again */
  CHECK_OK(mdg_client_state(&state, c));
  CHECK(state == MDG_STATE_CLOSED);
  CHECK_RC(mdg_client_send(&id2, c, "x", 1), MDG_ECLOSED);
  CHECK_RC(mdg_client_connect(c), MDG_ECLOSED);
  mdg_client_free(c);
  mdg_client_free(NULL);

  /* NULL handles and outputs. */
  CHECK_RC(mdg_client_connect(NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_typing(NULL, 1), MDG_EINVAL);
  CHECK_RC(mdg_client_mark_read(NULL, 1), MDG_EINVAL);
  CHECK_RC(mdg_client_poll(NULL, 0, 0), MDG_EINVAL);
  CHECK_RC(mdg_client_state(&state, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_state(NULL, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_conversation(&conv, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_conversation(NULL, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_last_seq(&last, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_last_seq(NULL, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_pending(&pending, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_pending(NULL, NULL), MDG_EINVAL);
  CHECK_RC(mdg_client_close(NULL, 0), MDG_EINVAL);
  CHECK_RC(mdg_client_send_attachments(&id2, NULL, "x", 1, NULL, 0), MDG_EINVAL);
}

/* ---- the client with a hub -------------------------------------------------------------- */

static int poll_until(mdg_client *c, recorder *r, int from, event_pred pred, const void *arg) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int found;
    int n = mdg_client_poll(c, 100, 0);
    CHECK(n >= 0);
    pthread_mutex_lock(&r->mu);
    found = find_locked(r, from, pred, arg);
    pthread_mutex_unlock(&r->mu);
    if (found >= 0) return found;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L > WAIT_MS) return -1;
  }
}

static void test_client_live(const hub_process *hub) {
  char url[128];
  char state_path[600];
  char offline_state[600];
  char conversation_id[80];
  mdg_client_options o = MDG_CLIENT_OPTIONS_INIT;
  const char *visitor[] = {"customer_id", "c-42", NULL};
  int backoff[] = {50, 100, 200};
  mdg_attachment photo = {"photo.jpg", "image/jpeg", 120334, "https://cdn.example/p/1.jpg"};
  const mdg_attachment *atts[1];
  recorder rec;
  mdg_client *c = NULL;
  mdg_message_id id, id_att, id_nul, id_human;
  static const char with_nul[] = "送料は\0いくらですか";
  int welcome = MDG_EVENT_WELCOME, connected = MDG_STATE_CONNECTED, closed = MDG_STATE_CLOSED;
  int i_ack, i_bot, i, state = -1;
  size_t pending = 99;
  int64_t last_seq = -1, seq_before;
  mdg_buf conv = MDG_BUF_INIT;
  recorded_event e;
  pthread_t me = pthread_self();
  g_test = "client: live chat (callbacks)";

  hub_url(hub, url, sizeof url);
  tmp_path(state_path, sizeof state_path, "visitor.json");
  tmp_path(offline_state, sizeof offline_state, "offline.json");
  recorder_init(&rec);
  o.url = url;
  o.state_path = state_path;
  o.locale = "ja";
  o.visitor = visitor;
  o.backoff_ms = backoff;
  o.backoff_count = 3;
  o.on_event = record_event;
  o.log_cb = record_log;
  o.userdata = &rec;
  CHECK_OK(mdg_client_new(&c, &o));
  REQUIRE(c != NULL);
  rec.client = c; /* the callback tries mdg_client_close() on the welcome */

  CHECK_OK(mdg_client_send(&id, c, "送料はいくらですか", MDG_NTS)); /* before connecting */
  CHECK_OK(mdg_client_connect(c));
  CHECK(wait_event(&rec, 0, is_kind, &welcome) >= 0);
  CHECK(wait_event(&rec, 0, is_state, &connected) >= 0);
  i_ack = wait_event(&rec, 0, is_ack_of, id.str);
  REQUIRE(i_ack >= 0);
  i_bot = wait_event(&rec, i_ack, is_bot_message, NULL);
  REQUIRE(i_bot >= 0);
  e = event_at(&rec, i_bot);
  CHECK(e.seq > event_at(&rec, i_ack).seq);
  CHECK_MSG(contains(e.bot_json, "\"entry\":\"shipping-fee\""), "bot_json %s", e.bot_json);
  /* ev->bot: the same, read; the entry's follow-ups come as suggestions with a title each */
  CHECK(e.has_bot && !e.has_data);
  CHECK_MSG(strcmp(e.decision, "answer") == 0 && strcmp(e.entry, "shipping-fee") == 0, "bot %s %s", e.decision,
            e.entry);
  CHECK(e.option_count == 0);
  CHECK_MSG(e.suggestion_count == 2 && e.follow_up_count == 2, "%zu suggestions, %zu follow-ups", e.suggestion_count,
            e.follow_up_count);
  CHECK_MSG(strcmp(e.suggestions[0][0], "free-shipping-threshold") == 0 && strcmp(e.suggestions[1][0], "anshin-express") == 0,
            "suggestions %s, %s", e.suggestions[0][0], e.suggestions[1][0]);
  CHECK(e.suggestions[0][1][0] != '\0' && contains(e.bot_json, e.suggestions[0][1]));
  CHECK(!event_at(&rec, i_ack).has_bot && !event_at(&rec, i_ack).has_data);
  CHECK(contains(e.text, "送料"));
  CHECK(e.text_size == strlen(e.text));
  CHECK(contains(e.frame_json, "\"type\":\"message\""));
  CHECK(!pthread_equal(e.thread, me)); /* callbacks run on the network thread */
  e = event_at(&rec, wait_event(&rec, 0, is_kind, &welcome));
  CHECK(strlen(e.conversation) > 2 && strncmp(e.conversation, "c_", 2) == 0);
  snprintf(conversation_id, sizeof conversation_id, "%s", e.conversation);
  CHECK_MSG(rec.close_rc_in_callback == MDG_EBUSY, "close from the callback: %d", rec.close_rc_in_callback);

  CHECK_OK(mdg_client_state(&state, c));
  CHECK(state == MDG_STATE_CONNECTED);
  CHECK_OK(mdg_client_conversation(&conv, c));
  CHECK(conv.ptr != NULL && strcmp(conv.ptr, conversation_id) == 0);
  mdg_buf_dispose(&conv);
  CHECK_OK(mdg_client_typing(c, 1));
  CHECK_OK(mdg_client_typing(c, 0));
  CHECK_OK(mdg_client_mark_read(c, event_at(&rec, i_bot).seq));

  /* Attachments only, and text with a NUL byte. */
  atts[0] = &photo;
  CHECK_OK(mdg_client_send_attachments(&id_att, c, NULL, 0, atts, 1));
  CHECK_OK(mdg_client_send(&id_nul, c, with_nul, sizeof with_nul - 1));
  CHECK(wait_event(&rec, 0, is_ack_of, id_att.str) >= 0);
  CHECK(wait_event(&rec, 0, is_ack_of, id_nul.str) >= 0);

  /* The bot's answer to each of them has come once the last one has. */
  i = wait_event(&rec, wait_event(&rec, 0, is_ack_of, id_nul.str), is_bot_message, NULL);
  CHECK(i >= 0);

  /* A clarification, and the visitor picks its option by entry. */
  CHECK_OK(mdg_client_send(&id, c, "ポイントのこと", MDG_NTS));
  i = wait_event(&rec, wait_event(&rec, 0, is_ack_of, id.str), is_bot_message, NULL);
  REQUIRE(i >= 0);
  e = event_at(&rec, i);
  CHECK_MSG(contains(e.bot_json, "\"decision\":\"clarify\"") && contains(e.bot_json, "\"entry\":\"points-expiry\""),
            "bot_json %s", e.bot_json);
  /* The pick is made from ev->bot's options, as an app without a JSON parser would. */
  CHECK_MSG(e.has_bot && strcmp(e.decision, "clarify") == 0 && e.option_count >= 2 && e.option_count <= 3,
            "bot %s, %zu options", e.decision, e.option_count);
  for (i = 0; i < (int)e.option_count && strcmp(e.options[i][0], "points-expiry") != 0; ++i) {
  }
  REQUIRE(i < (int)e.option_count);
  CHECK(e.options[i][1][0] != '\0' && contains(e.bot_json, e.options[i][1]));
  CHECK_OK(mdg_client_choose(&id, c, e.options[i][0], e.options[i][1]));
  i = wait_event(&rec, wait_event(&rec, 0, is_ack_of, id.str), is_bot_message, NULL);
  REQUIRE(i >= 0);
  e = event_at(&rec, i);
  CHECK_MSG(contains(e.bot_json, "\"decision\":\"answer\"") && contains(e.bot_json, "\"entry\":\"points-expiry\""),
            "bot_json %s", e.bot_json);

  CHECK_OK(mdg_client_pending(&pending, c));
  CHECK(pending == 0);
  CHECK_OK(mdg_client_close(c, 5000));
  CHECK_OK(mdg_client_close(c, 5000));
  CHECK(wait_event(&rec, 0, is_state, &closed) >= 0);
  CHECK_OK(mdg_client_last_seq(&last_seq, c));
  CHECK(i >= 0 && last_seq >= event_at(&rec, i).seq);
  CHECK_RC(mdg_client_send(NULL, c, "x", 1), MDG_ECLOSED);
  i = event_count(&rec);
  mdg_client_free(c);
  CHECK(event_count(&rec) == i); /* nothing after close */
  CHECK(rec.dropped == 0);
  recorder_destroy(&rec);

  /* ---- poll dispatch, resuming the same conversation from the state file ---- */
  g_test = "client: live chat (poll)";
  recorder_init(&rec);
  o.dispatch = MDG_DISPATCH_POLL;
  o.log_cb = NULL;
  c = NULL;
  CHECK_OK(mdg_client_new(&c, &o));
  REQUIRE(c != NULL);
  rec.client = c;
  CHECK_OK(mdg_client_last_seq(&seq_before, c));
  CHECK(seq_before == last_seq); /* persisted */
  CHECK_OK(mdg_client_connect(c));
  i = poll_until(c, &rec, 0, is_kind, &welcome);
  REQUIRE(i >= 0);
  e = event_at(&rec, i);
  CHECK(strcmp(e.conversation, conversation_id) == 0); /* resumed, not a new conversation */
  CHECK_MSG(contains(e.frame_json, "\"state\":\"bot\""), "welcome %s", e.frame_json);
  CHECK(pthread_equal(e.thread, me));                  /* delivered on the polling thread */
  CHECK_MSG(rec.close_rc_in_callback == MDG_EBUSY, "close from a poll callback: %d", rec.close_rc_in_callback);
  CHECK_OK(mdg_client_send(&id, c, "返品したいです", MDG_NTS));
  i_ack = poll_until(c, &rec, 0, is_ack_of, id.str);
  CHECK(i_ack >= 0);
  i_bot = poll_until(c, &rec, i_ack, is_bot_message, NULL);
  CHECK(i_bot >= 0);
  /* A person: the bot hands off and the hub says so. */
  CHECK_OK(mdg_client_send(&id_human, c, "担当者と話したい", MDG_NTS));
  i_ack = poll_until(c, &rec, 0, is_ack_of, id_human.str);
  CHECK(i_ack >= 0);
  i = poll_until(c, &rec, i_ack, is_event_named, "handoff_started");
  REQUIRE(i >= 0);
  e = event_at(&rec, i);
  CHECK(e.has_data && !e.has_bot);
  CHECK_MSG(contains(e.reason, "person") && e.queue_position >= 1, "reason \"%s\", queue position %lld", e.reason,
            (long long)e.queue_position);
  i = poll_until(c, &rec, i_ack, is_bot_message, NULL);
  CHECK(i >= 0 && contains(event_at(&rec, i).bot_json, "\"decision\":\"handoff\""));
  CHECK(i >= 0 && strcmp(event_at(&rec, i).decision, "handoff") == 0);
  /* Nothing that was delivered before the restart comes again. */
  for (i = 0; i < event_count(&rec); ++i) {
    e = event_at(&rec, i);
    CHECK_MSG(e.seq == 0 || e.seq > seq_before || e.kind == MDG_EVENT_WELCOME, "seq %lld again",
              (long long)e.seq);
    CHECK(pthread_equal(e.thread, me));
  }
  /* Freeing the client from its own poll callback: poll returns, no event follows. */
  rec.free_in_callback = MDG_EVENT_ACK;
  CHECK_OK(mdg_client_send(&id, c, "ありがとう", MDG_NTS));
  i = poll_until(c, &rec, 0, is_ack_of, id.str);
  CHECK(i >= 0);
  CHECK(rec.freed == 1 && rec.client == NULL);
  recorder_destroy(&rec);

  /* ---- freed from a callback on the network thread ---- */
  g_test = "client: free from the network thread";
  recorder_init(&rec);
  o.dispatch = MDG_DISPATCH_CALLBACK;
  o.state_path = NULL;
  c = NULL;
  CHECK_OK(mdg_client_new(&c, &o));
  REQUIRE(c != NULL);
  rec.close_rc_in_callback = 0; /* do not try close here */
  rec.client = c;
  rec.free_in_callback = MDG_EVENT_WELCOME;
  CHECK_OK(mdg_client_connect(c));
  {
    struct timespec until = deadline_after(WAIT_MS);
    pthread_mutex_lock(&rec.mu);
    while (!rec.freed && pthread_cond_timedwait(&rec.cv, &rec.mu, &until) != ETIMEDOUT) {
    }
    CHECK(rec.freed == 1);
    pthread_mutex_unlock(&rec.mu);
  }
  recorder_destroy(&rec);

  /* ---- the messages the offline test left behind are delivered now, exactly once ---- */
  g_test = "client: an outbox from an earlier run";
  recorder_init(&rec);
  o.state_path = offline_state;
  c = NULL;
  CHECK_OK(mdg_client_new(&c, &o));
  REQUIRE(c != NULL);
  CHECK_OK(mdg_client_pending(&pending, c));
  CHECK(pending == 2);
  CHECK_OK(mdg_client_connect(c));
  CHECK(wait_event(&rec, 0, is_bot_message, NULL) >= 0);
  CHECK_OK(mdg_client_close(c, 10000));
  CHECK_OK(mdg_client_pending(&pending, c));
  CHECK(pending == 0);
  mdg_client_free(c);
  recorder_destroy(&rec);
}

int main(void) {
  mdg_bot *shop = NULL;
  hub_process hub;
  make_tmpdir();

  test_version_and_errors();
  test_buffers_and_options();
  test_bot_open();
  CHECK_OK(mdg_bot_open_file(&shop, SHOP_KB, NULL));
  REQUIRE(shop != NULL);
  test_bot_ask(shop);
  test_conversation(shop);
  test_conversation_misuse();
  test_reload();
  mdg_bot_free(shop);

  test_client_offline();
  g_test = "hub";
  REQUIRE(hub_start(&hub) == 0);
  test_client_live(&hub);
  hub_stop(&hub);

  remove_tmpdir();
  return finish();
}
