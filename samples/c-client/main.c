/* c-client: madoguchi from C99 through madoguchi.h alone.
 *
 *   c-client --kb samples/kb/shop.json "送料はいくらですか"            ask the bot in this process
 *   c-client --url ws://127.0.0.1:8080/v1/visitor "送料はいくらですか"  chat with a running hub
 *
 * Both may be given. Questions go into one conversation, in order. With --url, the events are
 * polled on this thread (MDG_DISPATCH_POLL) until the hub has answered every question. */
#include <madoguchi.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what, int rc) {
  fprintf(stderr, "c-client: %s: %s (%s)\n", what, mdg_error_last(), mdg_strerror(rc));
  return 1;
}

/* Ask the bot every question, printing the answer and why. */
static int ask_bot(const char *kb, char **questions, int count) {
  mdg_bot *bot = NULL;
  mdg_conversation *conv = NULL;
  int i, rc;
  if ((rc = mdg_bot_open_file(&bot, kb, NULL)) != MDG_OK) return fail(kb, rc);
  if ((rc = mdg_conversation_new(&conv)) != MDG_OK) {
    mdg_bot_free(bot);
    return fail("conversation", rc);
  }
  for (i = 0; i < count && rc == MDG_OK; ++i) {
    mdg_reply *reply = NULL;
    mdg_buf buf = MDG_BUF_INIT;
    size_t size = 0;
    const char *text;
    if ((rc = mdg_bot_ask(&reply, bot, conv, questions[i], MDG_NTS)) != MDG_OK) {
      fail(questions[i], rc);
      break;
    }
    text = mdg_reply_text(reply, &size);
    printf("> %s\n%.*s\n", questions[i], (int)size, text);
    {
      size_t k, options = mdg_reply_option_count(reply);
      for (k = 0; k < options; ++k) { /* a clarification's choices: the next question may be "1" */
        const mdg_option *o = mdg_reply_option(reply, k);
        printf("  %d) %.*s  (%s)\n", (int)k + 1, (int)o->label_size, o->label, o->entry);
      }
    }
    if (mdg_reply_explain(&buf, reply) == MDG_OK) printf("%s", buf.ptr);
    mdg_buf_dispose(&buf);
    if (mdg_reply_handoff_json(&buf, reply) == MDG_OK) printf("hand-off:   %s\n", buf.ptr);
    mdg_buf_dispose(&buf);
    printf("\n");
    mdg_reply_free(reply);
  }
  mdg_conversation_free(conv);
  mdg_bot_free(bot);
  return rc == MDG_OK ? 0 : 1;
}

struct chat {
  int answers; /* messages from the bot or an agent */
  int errors;
};

/* What a bot message offers: a clarification's options, numbered as a visitor would pick
 * them (mdg_client_choose() sends a pick), and an answer's related questions. */
static void print_bot(const mdg_bot_info *bot) {
  size_t i;
  for (i = 0; i < bot->option_count; ++i) {
    printf("  %d) %s  (%s)\n", (int)i + 1, bot->options[i]->label, bot->options[i]->entry);
  }
  for (i = 0; i < bot->suggestion_count; ++i) {
    printf("  %s %s  (%s)\n", i == 0 ? "related:" : "        ", bot->suggestions[i]->label,
           bot->suggestions[i]->entry);
  }
}

/* An event's data, in words. */
static void print_event(const char *name, const mdg_event_data *d) {
  printf("[event] %s", name);
  if (d->reason[0] != '\0') printf(": %s", d->reason);
  if (d->queue_position > 0) printf(", number %ld in the queue", (long)d->queue_position);
  if (d->agent[0] != '\0') printf(": %s", d->agent);
  if (d->from[0] != '\0' || d->to[0] != '\0') printf(": from %s to %s", d->from, d->to);
  if (d->by[0] != '\0') printf(" by %s", d->by);
  printf("\n");
}

/* Runs on this thread, inside mdg_client_poll(). The event is valid only during the call. */
static void on_event(const mdg_event *ev, void *userdata) {
  static const char *const states[] = {"connecting", "connected", "disconnected: retrying after a pause", "closed"};
  struct chat *chat = (struct chat *)userdata;
  switch (ev->kind) {
    case MDG_EVENT_STATE: /* a hub that is down shows as connecting, disconnected, again */
      if (ev->state >= MDG_STATE_CONNECTING && ev->state <= MDG_STATE_CLOSED) printf("[state] %s\n", states[ev->state]);
      break;
    case MDG_EVENT_WELCOME: printf("[welcome] conversation %s\n", ev->conversation); break;
    case MDG_EVENT_ACK: printf("[ack] %s stored as #%ld\n", ev->id, (long)ev->seq); break;
    case MDG_EVENT_MESSAGE:
      printf("[%s #%ld] %.*s\n", ev->from, (long)ev->seq, (int)ev->text_size, ev->text);
      if (ev->bot != NULL) print_bot(ev->bot);
      if (strcmp(ev->from, "visitor") != 0) ++chat->answers;
      break;
    case MDG_EVENT_EVENT: print_event(ev->event, ev->data); break;
    case MDG_EVENT_ERROR:
      printf("[error] %s: %s\n", ev->error, ev->error_message);
      ++chat->errors;
      break;
    default: break;
  }
  fflush(stdout);
}

static int chat_with_hub(const char *url, const char *state, char **questions, int count) {
  mdg_client_options opts = MDG_CLIENT_OPTIONS_INIT;
  mdg_client *client = NULL;
  struct chat chat = {0, 0};
  int i, rc, waited_ms = 0;
  opts.url = url;
  opts.state_path = state; /* NULL: memory only */
  opts.locale = "ja";
  opts.dispatch = MDG_DISPATCH_POLL;
  opts.on_event = on_event;
  opts.userdata = &chat;
  if ((rc = mdg_client_new(&client, &opts)) != MDG_OK) return fail(url, rc);
  for (i = 0; i < count; ++i) { /* queued in the outbox, sent once connected */
    mdg_message_id id;
    if ((rc = mdg_client_send(&id, client, questions[i], MDG_NTS)) != MDG_OK) break;
    printf("[sent] %s: %s\n", id.str, questions[i]);
  }
  if (rc == MDG_OK) rc = mdg_client_connect(client);
  if (rc != MDG_OK) {
    fail("send", rc);
    mdg_client_free(client);
    return 1;
  }
  while (chat.answers < count && chat.errors == 0 && waited_ms < 30000) {
    if (mdg_client_poll(client, 100, 0) < 0) break;
    waited_ms += 100; /* at most; enough for a deadline */
  }
  rc = mdg_client_close(client, 5000);
  if (rc != MDG_OK) fail("close", rc);
  mdg_client_free(client);
  return chat.answers >= count && chat.errors == 0 && rc == MDG_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *kb = NULL, *url = NULL, *state = NULL;
  int i, rc = 0;
  for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (strcmp(argv[i], "--") == 0) { /* what follows are questions, even if they start with -- */
      ++i;
      break;
    }
    if (strcmp(argv[i], "--kb") != 0 && strcmp(argv[i], "--url") != 0 && strcmp(argv[i], "--state") != 0) {
      fprintf(stderr, "c-client: unknown option %s (--kb, --url, --state; -- before a question that starts with --)\n",
              argv[i]);
      return 2;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "c-client: %s needs a value\n", argv[i]);
      return 2;
    }
    if (strcmp(argv[i], "--kb") == 0) {
      kb = argv[i + 1];
    } else if (strcmp(argv[i], "--url") == 0) {
      url = argv[i + 1];
    } else {
      state = argv[i + 1];
    }
  }
  if (i >= argc || (kb == NULL && url == NULL)) {
    fprintf(stderr, "usage: c-client [--kb KB] [--url ws://HOST:PORT/v1/visitor [--state FILE]] QUESTION...\n"
                    "libmadoguchi %s\n", mdg_version());
    return 2;
  }
  if (mdg_version_number() < MDG_VERSION_NUMBER) {
    fprintf(stderr, "c-client: built with madoguchi.h %s, running with the older %s\n", MDG_VERSION_STRING,
            mdg_version());
    return 1;
  }
  if (kb != NULL) rc |= ask_bot(kb, argv + i, argc - i);
  if (url != NULL) rc |= chat_with_hub(url, state, argv + i, argc - i);
  return rc;
}
