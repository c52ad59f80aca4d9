/* capi_agent.c: the support agent's client of madoguchi.h (mdg_agent_*, since 1.3), from C,
 * against a real madoguchi-hub on 127.0.0.1 with the agent sato:pw; and freeing a client or an
 * agent client while one of its callbacks is still running.
 *
 * A visitor (mdg_client) asks for a person; the agent sees the conversation in the queue,
 * takes it with the bot's hand-off package and the transcript, replies, reads the visitor's
 * answer, and hands the conversation back to the bot. Wrong credentials are final. The suite
 * runs this program as it is and under ASan/UBSan (the asan preset). It prints each failed
 * check and exits 1 if any failed. */
#define _POSIX_C_SOURCE 200809L

#include "capi_test_support.h"

/* ---- recording agent events ---------------------------------------------------------------- */

typedef struct agent_record {
  int kind;
  int state;
  char conversation[80];
  char agent[48];
  /* frame (message, event, ack, typing, read, error) */
  int has_frame;
  int frame_kind;
  char id[80];
  char from[16];
  char frame_agent[48];
  char text[256];
  char event[48];
  char error[48];
  int64_t seq;
  /* queue */
  size_t queue_count;
  char queue_conversation[80];
  char queue_state[16];
  char queue_agent[48];
  int queue_reason_set;
  /* conversation */
  char conversation_state[16];
  int handoff_has_reason;
  size_t transcript_count;
  int transcript_has_question; /* a visitor message "担当者と話したい" among them */
  int transcript_ordered;      /* seqs increase */
  int resumed;
  int frame_json_set;
} agent_record;

typedef struct agent_recorder {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  agent_record events[MAX_EVENTS];
  int count;
  mdg_agent *agent;         /* tries mdg_agent_close() from the welcome */
  int close_rc_in_callback; /* 1 = not tried */
} agent_recorder;

static void agent_recorder_init(agent_recorder *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->close_rc_in_callback = 1;
}

static void agent_recorder_destroy(agent_recorder *r) {
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
}

static void record_agent_event(const mdg_agent_event *ev, void *userdata) {
  agent_recorder *r = (agent_recorder *)userdata;
  agent_record e;
  size_t i;
  memset(&e, 0, sizeof e);
  e.kind = ev->kind;
  e.state = ev->state;
  copy_str(e.conversation, sizeof e.conversation, ev->conversation);
  copy_str(e.agent, sizeof e.agent, ev->agent);
  if (ev->frame != NULL) {
    e.has_frame = 1;
    e.frame_kind = ev->frame->kind;
    copy_str(e.id, sizeof e.id, ev->frame->id);
    copy_str(e.from, sizeof e.from, ev->frame->from);
    copy_str(e.frame_agent, sizeof e.frame_agent, ev->frame->agent);
    copy_str(e.text, sizeof e.text, ev->frame->text);
    copy_str(e.event, sizeof e.event, ev->frame->event);
    copy_str(e.error, sizeof e.error, ev->frame->error);
    e.seq = ev->frame->seq;
  }
  e.queue_count = ev->queue_count;
  if ((ev->queue == NULL) != (ev->queue_count == 0)) e.queue_count = 9999; /* disagrees with its count */
  if (ev->queue_count > 0 && ev->queue != NULL) {
    copy_str(e.queue_conversation, sizeof e.queue_conversation, ev->queue[0]->conversation);
    copy_str(e.queue_state, sizeof e.queue_state, ev->queue[0]->state);
    copy_str(e.queue_agent, sizeof e.queue_agent, ev->queue[0]->agent);
    e.queue_reason_set = ev->queue[0]->reason[0] != '\0';
  }
  copy_str(e.conversation_state, sizeof e.conversation_state, ev->conversation_state);
  e.handoff_has_reason = contains(ev->handoff_json, "\"reason\"");
  e.transcript_count = ev->transcript_count;
  e.transcript_ordered = (ev->transcript == NULL) == (ev->transcript_count == 0);
  for (i = 0; i < ev->transcript_count; ++i) {
    const mdg_event *t = ev->transcript[i];
    if (t->kind == MDG_EVENT_MESSAGE && strcmp(t->from, "visitor") == 0 && strcmp(t->text, "担当者と話したい") == 0) {
      e.transcript_has_question = 1;
    }
    if (i > 0 && t->seq <= ev->transcript[i - 1]->seq) e.transcript_ordered = 0;
  }
  e.resumed = ev->resumed;
  e.frame_json_set = ev->frame_json[0] != '\0';
  if (ev->kind == MDG_AGENT_EVENT_WELCOME && r->agent != NULL && r->close_rc_in_callback == 1) {
    r->close_rc_in_callback = mdg_agent_close(r->agent, 1000);
  }
  pthread_mutex_lock(&r->mu);
  if (r->count < MAX_EVENTS) r->events[r->count++] = e;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

typedef int (*agent_pred)(const agent_record *e, const void *arg);

/* Waits up to WAIT_MS for a matching event at or after `from`; a copy of it in *out and its
 * index, or -1. */
static int wait_agent(agent_recorder *r, int from, agent_pred pred, const void *arg, agent_record *out) {
  struct timespec until = deadline_after(WAIT_MS);
  int found = -1, i;
  pthread_mutex_lock(&r->mu);
  for (;;) {
    for (i = from; i < r->count && found < 0; ++i) {
      if (pred(&r->events[i], arg)) found = i;
    }
    if (found >= 0 || pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) break;
  }
  if (found < 0) { /* one last look after the time-out */
    for (i = from; i < r->count && found < 0; ++i) {
      if (pred(&r->events[i], arg)) found = i;
    }
  }
  if (found >= 0 && out != NULL) *out = r->events[found];
  pthread_mutex_unlock(&r->mu);
  return found;
}

static int agent_kind(const agent_record *e, const void *kind) { return e->kind == *(const int *)kind; }
static int agent_state(const agent_record *e, const void *state) {
  return e->kind == MDG_AGENT_EVENT_STATE && e->state == *(const int *)state;
}
static int queue_has(const agent_record *e, const void *conversation) {
  return e->kind == MDG_AGENT_EVENT_QUEUE && e->queue_count == 1 && strcmp(e->queue_conversation, (const char *)conversation) == 0;
}
static int conversation_of(const agent_record *e, const void *conversation) {
  return e->kind == MDG_AGENT_EVENT_CONVERSATION && strcmp(e->conversation, (const char *)conversation) == 0;
}
static int agent_ack_of(const agent_record *e, const void *id) {
  return e->kind == MDG_AGENT_EVENT_ACK && strcmp(e->id, (const char *)id) == 0;
}
static int visitor_says(const agent_record *e, const void *text) {
  return e->kind == MDG_AGENT_EVENT_MESSAGE && strcmp(e->from, "visitor") == 0 && strcmp(e->text, (const char *)text) == 0;
}
static int agent_event_named(const agent_record *e, const void *name) {
  return e->kind == MDG_AGENT_EVENT_EVENT && strcmp(e->event, (const char *)name) == 0;
}
static int agent_error(const agent_record *e, const void *code) {
  return e->kind == MDG_AGENT_EVENT_ERROR && strcmp(e->error, (const char *)code) == 0;
}
static int agent_message_from_agent(const recorded_event *e, const void *text) {
  return e->kind == MDG_EVENT_MESSAGE && strcmp(e->from, "agent") == 0 && strcmp(e->text, (const char *)text) == 0;
}

static void agent_url(const hub_process *hub, char *out, size_t size) {
  snprintf(out, size, "ws://127.0.0.1:%d/v1/agent", hub->port);
}

/* ---- the options and misuse ------------------------------------------------------------------ */

static void test_agent_offline(void) {
  mdg_agent_options o;
  mdg_agent *a = NULL;
  mdg_message_id id;
  int state = -1;
  size_t pending = 99;
  mdg_buf buf = MDG_BUF_INIT;
  g_test = "agent: options and misuse";

  CHECK(mdg_version_number() >= 0x010300);
  CHECK_OK(mdg_agent_options_init(&o, MDG_AGENT_OPTIONS_VERSION));
  CHECK(o.jitter_percent == 30 && o.dispatch == MDG_DISPATCH_CALLBACK && o.log_level == MDG_LOG_INFO);
  CHECK_RC(mdg_agent_options_init(&o, 99), MDG_EVERSION);
  CHECK_RC(mdg_agent_options_init(NULL, MDG_AGENT_OPTIONS_VERSION), MDG_EINVAL);

  CHECK_OK(mdg_agent_options_init(&o, MDG_AGENT_OPTIONS_VERSION));
  CHECK_RC(mdg_agent_new(&a, &o), MDG_EINVAL); /* no url */
  CHECK_ERROR_SAYS("opts->url");
  CHECK(a == NULL);
  o.url = "ws://127.0.0.1:9/v1/agent";
  o.agent = "sato";
  CHECK_RC(mdg_agent_new(&a, &o), MDG_EINVAL); /* no password */
  CHECK_ERROR_SAYS("opts->password");
  o.password = "pw";
  o.dispatch = 7;
  CHECK_RC(mdg_agent_new(&a, &o), MDG_EINVAL);
  CHECK_ERROR_SAYS("dispatch");
  o.dispatch = MDG_DISPATCH_POLL;
  o.url = "http://example.com/";
  CHECK_RC(mdg_agent_new(&a, &o), MDG_EINVAL);
  o.url = "ws://127.0.0.1:9/v1/agent";
  CHECK_OK(mdg_agent_new(&a, &o));
  REQUIRE(a != NULL);

  /* Not connected: actions are refused, a reply is queued. */
  CHECK_RC(mdg_agent_take(a, "c_x"), MDG_EUNAVAILABLE);
  CHECK_RC(mdg_agent_refresh_queue(a), MDG_EUNAVAILABLE);
  CHECK_RC(mdg_agent_take(a, NULL), MDG_EINVAL);
  CHECK_RC(mdg_agent_take(NULL, "c_x"), MDG_EINVAL);
  CHECK_RC(mdg_agent_transfer(a, "c_x", NULL), MDG_EINVAL);
  CHECK_RC(mdg_agent_take(a, "c_\xff"), MDG_EINVAL);
  CHECK_ERROR_SAYS("UTF-8");
  CHECK_OK(mdg_agent_typing(a, "c_x", 1)); /* ignored */
  CHECK_RC(mdg_agent_send(&id, a, "c_x", "", MDG_NTS), MDG_EINVAL);
  CHECK(id.str[0] == '\0');
  CHECK_OK(mdg_agent_send(&id, a, "c_x", "offline reply", MDG_NTS));
  CHECK(strncmp(id.str, "m-", 2) == 0);
  CHECK_OK(mdg_agent_pending(&pending, a));
  CHECK(pending == 1);
  CHECK_OK(mdg_agent_state(&state, a));
  CHECK(state == MDG_STATE_DISCONNECTED);
  CHECK_OK(mdg_agent_queue_json(&buf, a));
  CHECK(strcmp(buf.ptr, "[]") == 0);
  mdg_buf_dispose(&buf);
  CHECK_OK(mdg_agent_conversations_json(&buf, a));
  CHECK(strcmp(buf.ptr, "[]") == 0);
  mdg_buf_dispose(&buf);
  CHECK(mdg_agent_poll(a, 0, 0) == 0);
  CHECK_RC(mdg_agent_close(a, 0), MDG_ETIMEDOUT); /* the reply is left (and lost: no state_path) */
  CHECK_RC(mdg_agent_send(&id, a, "c_x", "after close", MDG_NTS), MDG_ECLOSED);
  mdg_agent_free(a);
  mdg_agent_free(NULL);
}

/* ---- live ---------------------------------------------------------------------------------- */

static void test_agent_wrong_password(const hub_process *hub) {
  char url[128];
  mdg_agent_options o;
  mdg_agent *a = NULL;
  static agent_recorder rec;
  agent_record e;
  int closed = MDG_STATE_CLOSED;
  g_test = "agent: wrong credentials are final";
  agent_url(hub, url, sizeof url);
  agent_recorder_init(&rec);
  CHECK_OK(mdg_agent_options_init(&o, MDG_AGENT_OPTIONS_VERSION));
  o.url = url;
  o.agent = "sato";
  o.password = "not the password";
  o.on_event = record_agent_event;
  o.userdata = &rec;
  CHECK_OK(mdg_agent_new(&a, &o));
  REQUIRE(a != NULL);
  CHECK_OK(mdg_agent_connect(a));
  CHECK(wait_agent(&rec, 0, agent_error, "unauthorized", &e) >= 0);
  CHECK(e.has_frame && e.frame_kind == MDG_EVENT_ERROR);
  CHECK(wait_agent(&rec, 0, agent_state, &closed, NULL) >= 0);
  CHECK_OK(mdg_agent_close(a, 1000));
  mdg_agent_free(a);
  agent_recorder_destroy(&rec);
}

static void test_agent_live(const hub_process *hub) {
  char vurl[128], aurl[128], state_path[600], conversation[80];
  mdg_client_options vo = MDG_CLIENT_OPTIONS_INIT;
  mdg_agent_options o;
  mdg_client *visitor = NULL;
  mdg_agent *a = NULL;
  static recorder vrec; /* static: together they are too big for a thread's stack */
  static agent_recorder rec;
  agent_record e;
  mdg_message_id vid, reply, thanks;
  mdg_buf buf = MDG_BUF_INIT;
  int welcome = MDG_AGENT_EVENT_WELCOME, closed = MDG_STATE_CLOSED, visitor_welcome = MDG_EVENT_WELCOME;
  int i_welcome, i_conv;
  size_t pending = 99;
  g_test = "agent: live chat";

  hub_url(hub, vurl, sizeof vurl);
  agent_url(hub, aurl, sizeof aurl);
  tmp_path(state_path, sizeof state_path, "agent.json");
  agent_recorder_init(&rec);
  recorder_init(&vrec);

  CHECK_OK(mdg_agent_options_init(&o, MDG_AGENT_OPTIONS_VERSION));
  o.url = aurl;
  o.agent = "sato";
  o.password = "pw";
  o.state_path = state_path;
  o.on_event = record_agent_event;
  o.userdata = &rec;
  CHECK_OK(mdg_agent_new(&a, &o));
  REQUIRE(a != NULL);
  rec.agent = a; /* the callback tries mdg_agent_close() on the welcome */
  CHECK_OK(mdg_agent_connect(a));
  i_welcome = wait_agent(&rec, 0, agent_kind, &welcome, &e);
  REQUIRE(i_welcome >= 0);
  CHECK(strcmp(e.agent, "sato") == 0);
  CHECK(e.state == MDG_STATE_CONNECTED);
  CHECK(!e.has_frame);
  CHECK(rec.close_rc_in_callback == MDG_EBUSY);

  /* A visitor asks for a person: the bot hands off. */
  vo.url = vurl;
  vo.locale = "ja";
  vo.on_event = record_event;
  vo.userdata = &vrec;
  CHECK_OK(mdg_client_new(&visitor, &vo));
  REQUIRE(visitor != NULL);
  CHECK_OK(mdg_client_send(&vid, visitor, "担当者と話したい", MDG_NTS));
  CHECK_OK(mdg_client_connect(visitor));
  REQUIRE(wait_event(&vrec, 0, is_kind, &visitor_welcome) >= 0);
  CHECK(wait_event(&vrec, 0, is_event_named, "handoff_started") >= 0);
  CHECK_OK(mdg_client_conversation(&buf, visitor));
  snprintf(conversation, sizeof conversation, "%s", buf.ptr);
  mdg_buf_dispose(&buf);

  /* The agent sees it waiting, takes it, and gets the package and the transcript. */
  REQUIRE(wait_agent(&rec, i_welcome, queue_has, conversation, &e) >= 0);
  CHECK(strcmp(e.queue_state, "waiting") == 0);
  CHECK(e.queue_reason_set);
  CHECK(e.frame_json_set);
  CHECK_OK(mdg_agent_take(a, conversation));
  i_conv = wait_agent(&rec, 0, conversation_of, conversation, &e);
  REQUIRE(i_conv >= 0);
  CHECK(strcmp(e.conversation_state, "agent") == 0);
  CHECK(e.handoff_has_reason);
  CHECK(e.transcript_count >= 2);
  CHECK(e.transcript_has_question);
  CHECK(e.transcript_ordered);
  CHECK(e.resumed == 0);
  CHECK(!e.has_frame);
  CHECK(wait_event(&vrec, 0, is_event_named, "agent_joined") >= 0);

  /* A reply reaches the visitor; the visitor's answer reaches the agent. */
  CHECK_OK(mdg_agent_send(&reply, a, conversation, "担当の佐藤です。ご用件をどうぞ。", MDG_NTS));
  CHECK(wait_agent(&rec, 0, agent_ack_of, reply.str, &e) >= 0);
  CHECK(strcmp(e.conversation, conversation) == 0);
  CHECK(e.has_frame && e.frame_kind == MDG_EVENT_ACK && e.seq > 0);
  CHECK(wait_event(&vrec, 0, agent_message_from_agent, "担当の佐藤です。ご用件をどうぞ。") >= 0);
  CHECK_OK(mdg_client_send(&thanks, visitor, "注文を変更したいです", MDG_NTS));
  CHECK(wait_agent(&rec, i_conv, visitor_says, "注文を変更したいです", &e) >= 0);
  CHECK(strcmp(e.conversation, conversation) == 0);
  CHECK(e.frame_kind == MDG_EVENT_MESSAGE && e.seq > 0);
  CHECK_OK(mdg_agent_typing(a, conversation, 1));
  CHECK_OK(mdg_agent_mark_read(a, conversation, e.seq));
  CHECK_RC(mdg_agent_mark_read(a, conversation, -1), MDG_EINVAL);

  CHECK_OK(mdg_agent_conversations_json(&buf, a));
  CHECK(contains(buf.ptr, conversation));
  mdg_buf_dispose(&buf);
  CHECK_OK(mdg_agent_queue_json(&buf, a));
  CHECK(buf.ptr[0] == '[' && contains(buf.ptr, "\"agent\":\"sato\""));
  mdg_buf_dispose(&buf);

  /* Taking a conversation someone holds already, or one that does not exist: an error event. */
  CHECK_OK(mdg_agent_take(a, "c_00000000000000000000000000"));
  CHECK(wait_agent(&rec, 0, agent_error, "not_found", NULL) >= 0);

  /* Back to the bot. */
  CHECK_OK(mdg_agent_hand_back(a, conversation));
  CHECK(wait_agent(&rec, i_conv, agent_event_named, "handed_back", &e) >= 0);
  CHECK(strcmp(e.conversation, conversation) == 0);
  CHECK(wait_event(&vrec, 0, is_event_named, "handed_back") >= 0);
  CHECK_OK(mdg_agent_conversations_json(&buf, a));
  CHECK(strcmp(buf.ptr, "[]") == 0);
  mdg_buf_dispose(&buf);

  CHECK_OK(mdg_agent_close(a, 5000));
  CHECK_OK(mdg_agent_pending(&pending, a));
  CHECK(pending == 0);
  CHECK(wait_agent(&rec, 0, agent_state, &closed, NULL) >= 0);
  mdg_agent_free(a);
  CHECK_OK(mdg_client_close(visitor, 5000));
  mdg_client_free(visitor);
  recorder_destroy(&vrec);
  agent_recorder_destroy(&rec);
}

/* ---- freeing while a callback runs ----------------------------------------------------------- */

/* The first state event's callback waits until main has called _free(), lets it wait a little
 * more, then calls a function of the handle: allowed from a callback. _free() must wait for it
 * (before 1.3, mdg_client_free() cleared the handle first and this crashed). */
typedef struct busy_callback {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int entered, freeing, called;
  mdg_client *client;
  mdg_agent *agent;
} busy_callback;

static void sleep_ms(int ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static void busy_enter(busy_callback *b) {
  pthread_mutex_lock(&b->mu);
  b->entered = 1;
  pthread_cond_broadcast(&b->cv);
  while (!b->freeing) pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
  sleep_ms(100); /* main is inside _free() by now, or about to be */
}

static void busy_client_event(const mdg_event *ev, void *userdata) {
  busy_callback *b = (busy_callback *)userdata;
  size_t n = 0;
  if (ev->kind != MDG_EVENT_STATE || b->entered) return;
  busy_enter(b);
  b->called = mdg_client_pending(&n, b->client) == MDG_OK ? 1 : 2;
}

static void busy_agent_event(const mdg_agent_event *ev, void *userdata) {
  busy_callback *b = (busy_callback *)userdata;
  size_t n = 0;
  if (ev->kind != MDG_AGENT_EVENT_STATE || b->entered) return;
  busy_enter(b);
  b->called = mdg_agent_pending(&n, b->agent) == MDG_OK ? 1 : 2;
}

static void busy_wait_entered(busy_callback *b) {
  pthread_mutex_lock(&b->mu);
  while (!b->entered) pthread_cond_wait(&b->cv, &b->mu);
  b->freeing = 1;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

static void test_free_during_callback(void) {
  busy_callback b;
  mdg_client_options co = MDG_CLIENT_OPTIONS_INIT;
  mdg_agent_options ao = MDG_AGENT_OPTIONS_INIT;
  g_test = "free while a callback runs";

  memset(&b, 0, sizeof b);
  pthread_mutex_init(&b.mu, NULL);
  pthread_cond_init(&b.cv, NULL);
  co.url = "ws://127.0.0.1:9/v1/visitor"; /* nobody listens: state events come anyway */
  co.on_event = busy_client_event;
  co.userdata = &b;
  CHECK_OK(mdg_client_new(&b.client, &co));
  REQUIRE(b.client != NULL);
  CHECK_OK(mdg_client_connect(b.client));
  busy_wait_entered(&b);
  mdg_client_free(b.client);
  CHECK(b.called != 0); /* the callback had finished when _free() returned */

  memset(&b, 0, sizeof b);
  pthread_mutex_init(&b.mu, NULL);
  pthread_cond_init(&b.cv, NULL);
  ao.url = "ws://127.0.0.1:9/v1/agent";
  ao.agent = "sato";
  ao.password = "pw";
  ao.on_event = busy_agent_event;
  ao.userdata = &b;
  CHECK_OK(mdg_agent_new(&b.agent, &ao));
  REQUIRE(b.agent != NULL);
  CHECK_OK(mdg_agent_connect(b.agent));
  busy_wait_entered(&b);
  mdg_agent_free(b.agent);
  CHECK(b.called != 0);
  pthread_mutex_destroy(&b.mu);
  pthread_cond_destroy(&b.cv);
}

int main(void) {
  hub_process hub;
  make_tmpdir();
  test_agent_offline();
  test_free_during_callback();
  g_test = "hub";
  REQUIRE(hub_start(&hub) == 0);
  test_agent_wrong_password(&hub);
  test_agent_live(&hub);
  hub_stop(&hub);
  remove_tmpdir();
  return finish();
}
