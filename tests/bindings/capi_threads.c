/* capi_threads.c: 8 threads ask one shared mdg_bot at the same time while another thread
 * reloads its knowledge base again and again (samples/kb/shop.json, and the same with one more
 * entry, from a string).
 *
 * What must hold whatever the interleaving (nothing here depends on timing):
 *   - every ask succeeds, and the questions both knowledge bases answer get the same entry;
 *   - the probe question, which only the second knowledge base knows, is answered with the
 *     probe entry or not at all: never with anything else;
 *   - each thread's conversation goes on across every swap (its turn count is its asks);
 *   - after the last reload, the bot is the last knowledge base, and the generation counts
 *     every reload.
 * The askers start before the first reload and stop only after the last one, so asks and
 * reloads overlap. Run under ASan/UBSan too (the asan preset). */
#define _POSIX_C_SOURCE 200809L

#include "capi_test_support.h"

#define ASKERS 8
#define RELOADS 6
#define MIN_ROUNDS 3

typedef struct question {
  const char *text;
  const char *entry;
} question;

static const question QUESTIONS[] = {
    {"送料はいくらですか", "shipping-fee"},
    {"返品はできますか", "returns-window"},
    {"How much is shipping?", "shipping-fee"},
    {"パスワードを忘れました", "password-reset"},
    {"のしは付けられますか", "noshi"},
};
#define QUESTION_COUNT (sizeof QUESTIONS / sizeof QUESTIONS[0])
static const char PROBE[] = "窓口テストの合言葉を教えてください";
static const char PROBE_ENTRY[] = "capi-probe";

typedef struct shared {
  mdg_bot *bot;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int started; /* askers that have answered once */
  int reloads_done;
} shared;

typedef struct asker {
  shared *s;
  int index;
  int asks;
  int rounds;
  int probe_answered;
  int failures;
  int turns_at_end;
  char first_failure[512];
} asker;

static void asker_fail(asker *a, const char *fmt, const char *detail) {
  if (a->failures++ == 0) snprintf(a->first_failure, sizeof a->first_failure, fmt, detail);
}

static int reloads_done(shared *s) {
  int done;
  pthread_mutex_lock(&s->mu);
  done = s->reloads_done;
  pthread_mutex_unlock(&s->mu);
  return done;
}

static void *ask_loop(void *arg) {
  asker *a = (asker *)arg;
  mdg_conversation *conv = NULL;
  size_t q = (size_t)a->index;
  if (mdg_conversation_new(&conv) != MDG_OK) {
    asker_fail(a, "mdg_conversation_new: %s", mdg_error_last());
    return NULL;
  }
  for (;;) {
    size_t i;
    for (i = 0; i < QUESTION_COUNT; ++i, ++q) {
      const question *want = &QUESTIONS[q % QUESTION_COUNT];
      mdg_reply *r = NULL;
      /* A fresh conversation for the checked questions (a conversation's history can change
       * an answer), the long-lived one for the probe. */
      if (mdg_bot_ask(&r, a->s->bot, NULL, want->text, MDG_NTS) != MDG_OK) {
        asker_fail(a, "mdg_bot_ask: %s", mdg_error_last());
        continue;
      }
      ++a->asks;
      if (mdg_reply_decision(r) != MDG_DECISION_ANSWER || strcmp(mdg_reply_entry(r), want->entry) != 0) {
        asker_fail(a, "wrong answer to %s", want->text);
      }
      mdg_reply_free(r);
    }
    {
      mdg_reply *r = NULL;
      if (mdg_bot_ask(&r, a->s->bot, conv, PROBE, MDG_NTS) != MDG_OK) {
        asker_fail(a, "mdg_bot_ask (probe): %s", mdg_error_last());
      } else {
        const char *entry = mdg_reply_entry(r);
        ++a->asks;
        if (mdg_reply_decision(r) == MDG_DECISION_ANSWER) {
          if (strcmp(entry, PROBE_ENTRY) == 0) {
            ++a->probe_answered;
          } else {
            asker_fail(a, "the probe was answered with %s", entry);
          }
        }
        mdg_reply_free(r);
      }
    }
    if (++a->rounds == 1) {
      pthread_mutex_lock(&a->s->mu);
      ++a->s->started;
      pthread_cond_broadcast(&a->s->cv);
      pthread_mutex_unlock(&a->s->mu);
    }
    if (a->rounds >= MIN_ROUNDS && reloads_done(a->s)) break;
  }
  a->turns_at_end = mdg_conversation_turn(conv);
  mdg_conversation_free(conv);
  return NULL;
}

typedef struct reloader {
  shared *s;
  const char *with_probe;
  int failures;
  char first_failure[512];
} reloader;

static void *reload_loop(void *arg) {
  reloader *rl = (reloader *)arg;
  shared *s = rl->s;
  int i;
  pthread_mutex_lock(&s->mu);
  while (s->started < ASKERS) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  /* with the probe, without, ..., and with the probe last */
  for (i = 0; i < RELOADS; ++i) {
    int rc = i % 2 == 0 || i == RELOADS - 1
                 ? mdg_bot_reload_string(s->bot, rl->with_probe, strlen(rl->with_probe), MDG_KB_JSON, "probe.json")
                 : mdg_bot_reload_file(s->bot, SHOP_KB);
    if (rc != MDG_OK && rl->failures++ == 0) {
      snprintf(rl->first_failure, sizeof rl->first_failure, "reload %d: %s", i, mdg_error_last());
    }
  }
  pthread_mutex_lock(&s->mu);
  s->reloads_done = 1;
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* shop.json with one more entry, the probe. */
static char *kb_with_probe(void) {
  size_t size;
  char *shop = read_file(SHOP_KB, &size);
  const char *probe_entry =
      "\"entries\": [\n    {\"id\": \"capi-probe\", \"questions\": [\"窓口テストの合言葉を教えてください\"],"
      " \"answer\": \"ひらけごま\"},";
  char *at;
  char *out;
  if (shop == NULL) return NULL;
  at = strstr(shop, "\"entries\": [");
  if (at == NULL) {
    free(shop);
    return NULL;
  }
  out = (char *)malloc(size + strlen(probe_entry) + 1);
  memcpy(out, shop, (size_t)(at - shop));
  strcpy(out + (at - shop), probe_entry);
  strcat(out, at + strlen("\"entries\": ["));
  free(shop);
  return out;
}

int main(void) {
  shared s;
  asker askers[ASKERS];
  pthread_t threads[ASKERS];
  pthread_t reload_thread;
  reloader rl;
  mdg_reply *r = NULL;
  mdg_buf info = MDG_BUF_INIT;
  int i, asks = 0, probes = 0;
  char expect[64];
  g_test = "8 askers + 1 reloader";

  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  memset(&rl, 0, sizeof rl);
  rl.s = &s;
  rl.with_probe = kb_with_probe();
  REQUIRE(rl.with_probe != NULL);
  CHECK_OK(mdg_bot_open_file(&s.bot, SHOP_KB, NULL));
  REQUIRE(s.bot != NULL);

  REQUIRE(pthread_create(&reload_thread, NULL, reload_loop, &rl) == 0);
  for (i = 0; i < ASKERS; ++i) {
    memset(&askers[i], 0, sizeof askers[i]);
    askers[i].s = &s;
    askers[i].index = i;
    REQUIRE(pthread_create(&threads[i], NULL, ask_loop, &askers[i]) == 0);
  }
  pthread_join(reload_thread, NULL);
  for (i = 0; i < ASKERS; ++i) pthread_join(threads[i], NULL);

  CHECK_MSG(rl.failures == 0, "%s", rl.first_failure);
  for (i = 0; i < ASKERS; ++i) {
    CHECK_MSG(askers[i].failures == 0, "asker %d: %d failure(s), first: %s", i, askers[i].failures,
              askers[i].first_failure);
    CHECK(askers[i].rounds >= MIN_ROUNDS);
    CHECK_MSG(askers[i].turns_at_end == askers[i].rounds, "asker %d: %d turns, %d rounds", i,
              askers[i].turns_at_end, askers[i].rounds);
    asks += askers[i].asks;
    probes += askers[i].probe_answered;
  }

  /* The last reload had the probe. */
  CHECK_OK(mdg_bot_ask(&r, s.bot, NULL, PROBE, MDG_NTS));
  CHECK(r != NULL && strcmp(mdg_reply_entry(r), PROBE_ENTRY) == 0);
  mdg_reply_free(r);
  CHECK_OK(mdg_bot_info_json(&info, s.bot));
  snprintf(expect, sizeof expect, "\"generation\":%d", 1 + RELOADS);
  CHECK_MSG(contains(info.ptr, expect), "%s", info.ptr);
  mdg_buf_dispose(&info);

  fprintf(stderr, "%d asks on %d threads across %d reloads; the probe was answered %d time(s)\n", asks, ASKERS,
          RELOADS, probes);
  mdg_bot_free(s.bot);
  free((char *)rl.with_probe);
  pthread_mutex_destroy(&s.mu);
  pthread_cond_destroy(&s.cv);
  return finish();
}
