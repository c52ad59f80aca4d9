/*
 * madoguchi.h: the C interface of madoguchi (窓口), and its only stable ABI.
 *
 * One header, one library (libmadoguchi.so.1), for programs in C and for the bindings of
 * other languages (Swift, Kotlin, C#, Python...). It covers:
 *
 *   - the FAQ bot: open a knowledge base (a file, or text in memory), ask it within a
 *     conversation, explain a reply, get the hand-off package as JSON, reload the knowledge
 *     base while other threads are answering;          mdg_bot_*, mdg_conversation_*, mdg_reply_*
 *   - the visitor's live-chat client: connect to a hub, send (with an outbox that never
 *     loses a message), typing indicators, read receipts, every event through a callback on
 *     the network thread or polled on the caller's thread, close.            mdg_client_*
 *   - the support agent's live-chat client (since 1.3): log in to a hub, follow the queue of
 *     handed-off conversations, take one with the bot's hand-off package and the transcript,
 *     reply (with the same outbox), transfer, hand back to the bot, close.     mdg_agent_*
 *
 * The guide with complete examples is docs/c-api.md. The rules every function follows:
 *
 * Errors.    Every function that can fail returns int: MDG_OK (0) or a negative MDG_E* code.
 *            mdg_error_last() then tells what went wrong, in words (per thread).
 *            mdg_strerror(code) is the fixed text of a code. Functions that return a value
 *            instead (getters) say what they return for bad arguments.
 * Handles.   Every type is opaque and made by mdg_<object>_new() or _open*(); it is released
 *            with mdg_<object>_free(), and every _free() accepts NULL.
 * Outputs.   A single out-parameter comes first and is named `out`. It is written only on
 *            success (on failure, handles are set to NULL and buffers to {NULL, 0}).
 * Ownership. Inputs are copied before the call returns: the caller may reuse or free them.
 *            Text the library gives back is either borrowed (a `const char *` whose lifetime
 *            is stated at the function) or owned by the caller as an mdg_buf, released with
 *            mdg_buf_dispose() (never free()).
 * Text.      Every string is UTF-8. Where text can contain a NUL byte (what visitors type,
 *            answers, replies), it comes with an explicit size in bytes; pass MDG_NTS as the
 *            size for a NUL-terminated string. Every string the library returns is also
 *            NUL-terminated. Identifiers, locales, paths and URLs are NUL-terminated.
 * Structs.   Option structs are versioned: start from MDG_<X>_OPTIONS_INIT, or call
 *            mdg_<x>_options_init() (for languages without C macros), then set fields. New
 *            fields are only ever appended, with a new version number. Structs the library
 *            hands out (mdg_candidate, mdg_option, mdg_event, mdg_bot_info, mdg_event_data,
 *            mdg_agent_event, mdg_queue_entry) are read through pointers only
 *            (never in arrays, never by sizeof); new fields are appended there too. mdg_buf,
 *            mdg_message_id and mdg_attachment, which callers allocate, never change.
 * Threads.   Each function states its thread-safety. In short: an mdg_bot, an mdg_client and
 *            an mdg_agent may be used from any number of threads at once; an mdg_conversation from one
 *            thread at a time; an mdg_reply is immutable.
 * Exceptions and aborts. No C++ exception ever leaves the library; it never prints, never
 *            exits, and never installs signal handlers. Logging goes to a callback you set.
 * Versions.  The library follows semantic versioning of this ABI: the major version is the
 *            soname (libmadoguchi.so.1) and changes only with an incompatible change; a minor
 *            version only adds. A program built with version 1.N needs 1.N or later at run
 *            time: compare mdg_version_number() with MDG_VERSION_NUMBER at start-up. A changed
 *            meaning gets a new name (_v2); old names keep working.
 */
#ifndef MADOGUCHI_H
#define MADOGUCHI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Export and version ------------------------------------------------------------------ */

#if defined(_WIN32) && defined(MDG_BUILDING_LIBRARY)
#define MDG_EXTERN(type) __declspec(dllexport) type
#elif defined(_WIN32) && !defined(MDG_STATIC)
#define MDG_EXTERN(type) __declspec(dllimport) type
#elif defined(__GNUC__)
#define MDG_EXTERN(type) __attribute__((visibility("default"))) type
#else
#define MDG_EXTERN(type) type
#endif

#define MDG_VERSION_MAJOR 1
#define MDG_VERSION_MINOR 3
#define MDG_VERSION_PATCH 0
#define MDG_VERSION_STRING "1.3.0"
/* 0xMMmmpp: major, minor, patch; compare with mdg_version_number(). */
#define MDG_VERSION_NUMBER ((MDG_VERSION_MAJOR << 16) | (MDG_VERSION_MINOR << 8) | MDG_VERSION_PATCH)

/* The library's version, "1.3.0" (static storage). Any thread. */
MDG_EXTERN(const char *) mdg_version(void);
/* The library's MDG_VERSION_NUMBER: the version running, which may be newer than the header
 * the program was built with. Any thread. */
MDG_EXTERN(unsigned int) mdg_version_number(void);

/* What this build of the library contains: a bit set of MDG_FEATURE_*. A library built
 * without the bot (a chat-only app) answers every bot function with MDG_ENOTSUP. Any thread. */
#define MDG_FEATURE_BOT 0x1u    /* mdg_bot_*, mdg_conversation_*, mdg_reply_* */
#define MDG_FEATURE_CLIENT 0x2u /* mdg_client_*, and mdg_agent_* since 1.3 */
MDG_EXTERN(unsigned int) mdg_features(void);

/* ---- Errors ------------------------------------------------------------------------------ */

/* Return codes. Append-only: values never change, new codes get new numbers. */
typedef enum mdg_error_code {
  MDG_OK = 0,
  MDG_EINVAL = -1,       /* a bad argument: NULL where a value is needed, invalid UTF-8, a
                            malformed knowledge base, a bad option, a message the hub refuses */
  MDG_ENOTFOUND = -2,    /* a file, entry or value does not exist */
  MDG_EUNAVAILABLE = -3, /* a resource cannot be used now: a file cannot be read or written, a
                            state file is in use, the network thread cannot start */
  MDG_ETIMEDOUT = -4,    /* a deadline passed (mdg_client_close with messages left) */
  MDG_ECLOSED = -5,      /* the object is closed */
  MDG_EINTERNAL = -6,    /* a bug or an unexpected third-party failure */
  MDG_ENOMEM = -7,       /* out of memory */
  MDG_ELIMIT = -8,       /* a size limit was hit */
  MDG_EBUSY = -9,        /* not allowed now: from inside a callback, or a conversation that is
                            in use on another thread */
  MDG_ENOTSUP = -10,     /* not in this build (see mdg_features()) */
  MDG_EVERSION = -11     /* an options struct of a version this library does not know */
} mdg_error_code;

/* What the last failing call on this thread said: a NUL-terminated UTF-8 message, never NULL
 * ("" when no call has failed on this thread). Owned by the library; valid until the next
 * madoguchi call on the same thread. Successful calls leave it unchanged. Any thread (each
 * thread has its own). */
MDG_EXTERN(const char *) mdg_error_last(void);
/* The code that goes with mdg_error_last() (MDG_OK when none). Any thread. */
MDG_EXTERN(int) mdg_error_last_code(void);
/* Forgets this thread's last error. Any thread. */
MDG_EXTERN(void) mdg_error_clear(void);
/* The fixed text of a code ("invalid argument", ...), static storage; "unknown error" for a
 * code it does not know. Any thread. */
MDG_EXTERN(const char *) mdg_strerror(int code);

/* ---- Buffers ----------------------------------------------------------------------------- */

/* Text the caller owns: `size` bytes at `ptr`, followed by a NUL byte that `size` does not
 * count. Release it with mdg_buf_dispose(). A buffer the library filled always has a ptr (an
 * empty text is "" with size 0); {NULL, 0} holds nothing: before a call, after a failed one,
 * after mdg_buf_dispose(). */
typedef struct mdg_buf {
  char *ptr;
  size_t size;
} mdg_buf;

#define MDG_BUF_INIT {NULL, 0}

/* Frees buf->ptr and sets *buf to {NULL, 0}. NULL, and a buffer already disposed of, are
 * no-ops. Any thread (one call per buffer). */
MDG_EXTERN(void) mdg_buf_dispose(mdg_buf *buf);

/* The size argument of a NUL-terminated string: the library calls strlen(). */
#define MDG_NTS SIZE_MAX

/* ---- Logging ----------------------------------------------------------------------------- */

typedef enum mdg_log_level {
  MDG_LOG_DEBUG = 0,
  MDG_LOG_INFO = 1,
  MDG_LOG_WARNING = 2,
  MDG_LOG_ERROR = 3,
  MDG_LOG_OFF = 4 /* as a minimum level: nothing */
} mdg_log_level;

/* Receives the library's diagnostics: `msg` is NUL-terminated UTF-8, valid only during the
 * call. It may run on any thread the library runs on (a client's network thread, a thread
 * that reloads a bot) and must not block for long nor call back into the object that logs.
 * Message bodies, tokens and passwords are never logged above MDG_LOG_DEBUG. */
typedef void (*mdg_log_cb)(int level, const char *msg, void *userdata);

/* ========================================================================================== */
/* The bot                                                                                    */
/* ========================================================================================== */

/* A bot: a knowledge base, built into an index and a model, that answers visitors. Made by
 * mdg_bot_open_file() or mdg_bot_open_string(); mdg_bot_reload_*() swaps in a new knowledge
 * base atomically while other threads keep asking.
 * Thread-safety: every mdg_bot function may be called from any number of threads at once,
 * except mdg_bot_free(), which must be the last call on the handle. */
typedef struct mdg_bot mdg_bot;

/* One visitor's conversation with a bot: the turns so far, slots, failed turns. It is not
 * tied to one mdg_bot: the same conversation goes on across a reload, or with another bot.
 * Thread-safety: one thread at a time. A call made while another thread is using the same
 * conversation fails with MDG_EBUSY instead of corrupting it. */
typedef struct mdg_conversation mdg_conversation;

/* The bot's reply to one message. Immutable: any thread, any number at once. It owns
 * everything it points to and stays valid after its bot and conversation are freed, until
 * mdg_reply_free(). */
typedef struct mdg_reply mdg_reply;

/* Knowledge base formats (docs/knowledge-format.md). */
typedef enum mdg_kb_format {
  MDG_KB_JSON = 0,
  MDG_KB_CSV = 1, /* a spreadsheet exported as CSV: id, question, answer_ja, answer_en, ... */
  MDG_KB_TSV = 2
} mdg_kb_format;

#define MDG_BOT_OPTIONS_VERSION 1

/* Settings of a bot. Versioned: start from MDG_BOT_OPTIONS_INIT or mdg_bot_options_init(). */
typedef struct mdg_bot_options {
  unsigned int version;         /* MDG_BOT_OPTIONS_VERSION */
  /* The MeCab system dictionary. NULL: $MADOGUCHI_MECAB_DICDIR, else mecab-ipadic-utf8. */
  const char *mecab_dicdir;
  /* Longer messages are cut at a character boundary. 0: the default, 16 KiB. */
  size_t max_message_bytes;
  /* Settings that override the knowledge base's, each "section.key=value" as
   * `madoguchi-bot --set` takes them ("policy.answer_threshold=0.6"); a NULL-terminated
   * array, or NULL. They apply again on every reload. */
  const char *const *settings;
  mdg_log_cb log_cb;            /* NULL: no logging */
  int log_level;                /* the lowest level passed to log_cb: MDG_LOG_INFO by default */
  void *userdata;               /* passed to log_cb */
} mdg_bot_options;

#define MDG_BOT_OPTIONS_INIT {MDG_BOT_OPTIONS_VERSION, NULL, 0, NULL, NULL, MDG_LOG_INFO, NULL}

/* Sets *opts to the defaults of `version` (MDG_BOT_OPTIONS_VERSION). MDG_EVERSION for a version
 * this library does not know, MDG_EINVAL for NULL. Any thread. */
MDG_EXTERN(int) mdg_bot_options_init(mdg_bot_options *opts, unsigned int version);

/* Loads a knowledge base file (.json, .csv or .tsv by its extension; at most 256 MiB), checks
 * it, and builds a bot. opts may be NULL (defaults). On success *out is a new bot (free it with
 * mdg_bot_free()). Errors: MDG_EINVAL (a malformed or invalid knowledge base: the message names
 * the file, the line or entry, and how to fix it), MDG_ENOTFOUND / MDG_EUNAVAILABLE (the file
 * cannot be read), MDG_ELIMIT, MDG_EVERSION, MDG_ENOTSUP. Any thread. */
MDG_EXTERN(int) mdg_bot_open_file(mdg_bot **out, const char *path, const mdg_bot_options *opts);

/* As mdg_bot_open_file(), from `size` bytes of text (MDG_NTS: NUL-terminated) in `format`.
 * `source_name` names it in error messages ("faq.json"); NULL: "<string>". */
MDG_EXTERN(int) mdg_bot_open_string(mdg_bot **out, const char *text, size_t size, int format,
                                    const char *source_name, const mdg_bot_options *opts);

/* Builds a bot from another knowledge base (with the options the bot was opened with) and
 * swaps it in atomically: asks already running finish with the old one, later asks use the new
 * one, conversations go on. On failure nothing changes and the old knowledge base keeps
 * answering. Any thread, concurrently with asks; concurrent reloads take turns (each builds,
 * then swaps, in the order they got their turn). */
MDG_EXTERN(int) mdg_bot_reload_file(mdg_bot *bot, const char *path);
MDG_EXTERN(int) mdg_bot_reload_string(mdg_bot *bot, const char *text, size_t size, int format,
                                      const char *source_name);

/* The bot's knowledge base and index as one JSON object, owned by the caller:
 * {"name", "source", "default_locale", "generation" (1, +1 per reload), "entries" (count),
 *  "questions", "rules", "entry_ids": [...], "memory_bytes", "build_ms"}. Any thread. */
MDG_EXTERN(int) mdg_bot_info_json(mdg_buf *out, const mdg_bot *bot);

/* Releases the handle (and the knowledge base, once no ask is using it). Replies and
 * conversations stay valid. NULL: no-op. It must be the last call on `bot`: asks and reloads
 * running on other threads must have returned. */
MDG_EXTERN(void) mdg_bot_free(mdg_bot *bot);

/* Answers one visitor message: rules, retrieval, policy (docs/policy.md), and updates `conv`.
 * `text` is `size` bytes of UTF-8 (it may contain NUL; MDG_NTS: NUL-terminated); a message
 * longer than max_message_bytes is cut, and the reply's reason says so. `conv` may be NULL:
 * the message is then asked in a fresh conversation of its own. On success *out is a new
 * reply (free it with mdg_reply_free()). Errors: MDG_EINVAL (invalid UTF-8, with the byte
 * offset; the conversation is not changed), MDG_EBUSY (conv in use on another thread).
 * Thread-safety: `bot` from any thread; `conv` from one thread at a time. */
MDG_EXTERN(int) mdg_bot_ask(mdg_reply **out, mdg_bot *bot, mdg_conversation *conv,
                            const char *text, size_t size);

/* ---- Conversations ----------------------------------------------------------------------- */
/* Thread-safety of every mdg_conversation_* function: any thread, one at a time per
 * conversation (a call while another thread uses the same conversation: MDG_EBUSY). Errors:
 * MDG_EINVAL for a NULL conversation, key or role. Strings are copied. */

/* A new, empty conversation (free it with mdg_conversation_free()). Any thread. */
MDG_EXTERN(int) mdg_conversation_new(mdg_conversation **out);
/* NULL: no-op. Not while another thread uses it. */
MDG_EXTERN(void) mdg_conversation_free(mdg_conversation *conv);

/* Pins the reply language ("ja", "en"), overriding detection; NULL or "" unpins. */
MDG_EXTERN(int) mdg_conversation_set_locale(mdg_conversation *conv, const char *locale);
/* The visitor's language for messages that do not tell (no letters); detection still wins
 * for messages with letters. NULL or "" clears it. */
MDG_EXTERN(int) mdg_conversation_set_fallback_locale(mdg_conversation *conv, const char *locale);
/* Sets a visitor attribute shown to agents in the hand-off package ("customer_id"); a NULL
 * value removes it. */
MDG_EXTERN(int) mdg_conversation_set_visitor(mdg_conversation *conv, const char *key, const char *value);
/* Sets a slot that rules can test ("order_id"); a NULL value removes it. */
MDG_EXTERN(int) mdg_conversation_set_slot(mdg_conversation *conv, const char *key, const char *value);
/* A slot's value (rules set slots too), owned by the caller. MDG_ENOTFOUND when it is not set. */
MDG_EXTERN(int) mdg_conversation_slot(mdg_buf *out, const mdg_conversation *conv, const char *key);
/* A person hands the conversation back to the bot: the hand-off and failed turns are forgotten. */
MDG_EXTERN(int) mdg_conversation_hand_back(mdg_conversation *conv);
/* Records a turn said by someone else (role "agent") so that the transcript stays whole. */
MDG_EXTERN(int) mdg_conversation_add_turn(mdg_conversation *conv, const char *role, const char *text,
                                          size_t size);
/* The number of visitor messages answered so far (>= 0), or a negative MDG_E* code. */
MDG_EXTERN(int) mdg_conversation_turn(const mdg_conversation *conv);
/* 1 when the bot has handed the conversation off, 0 when not, or a negative MDG_E* code. */
MDG_EXTERN(int) mdg_conversation_handed_off(const mdg_conversation *conv);
/* The conversation as one JSON object, owned by the caller: {"turn", "failed_turns",
 * "handed_off", "previous_answer", "locale", "fallback_locale", "slots", "visitor",
 * "transcript": [{"role", "text", "entry"?, "decision"}]}. */
MDG_EXTERN(int) mdg_conversation_json(mdg_buf *out, const mdg_conversation *conv);

/* ---- Replies ----------------------------------------------------------------------------- */
/* Thread-safety of every mdg_reply_* function but mdg_reply_free(): any thread, any number at
 * once (a reply does not change). Pointers they return are borrowed from the reply and valid
 * until mdg_reply_free(). */

typedef enum mdg_decision {
  MDG_DECISION_ANSWER = 0,  /* answered with an entry (mdg_reply_entry) */
  MDG_DECISION_REPLY = 1,   /* a rule replied with its own text */
  MDG_DECISION_CLARIFY = 2, /* asked which of a few entries the visitor means (the options) */
  MDG_DECISION_HANDOFF = 3, /* handed off to a person (mdg_reply_handoff_json) */
  MDG_DECISION_FALLBACK = 4 /* said it does not know */
} mdg_decision;

/* A candidate entry, best first. Owned by its reply. */
typedef struct mdg_candidate {
  const char *entry;  /* the entry id */
  double confidence;  /* calibrated, 0..1 */
  double score;       /* the ranking model's raw score */
  double bm25;        /* the BM25 part of the score */
} mdg_candidate;

/* A clarification option. Owned by its reply. */
typedef struct mdg_option {
  const char *label;  /* what to show: the entry's title in the reply's language */
  size_t label_size;
  const char *entry;  /* the entry id it leads to */
} mdg_option;

/* The reply's mdg_decision, or a negative MDG_E* code (NULL reply). */
MDG_EXTERN(int) mdg_reply_decision(const mdg_reply *reply);
/* The name of a decision ("answer", "clarify", ...), static storage; "unknown" otherwise. */
MDG_EXTERN(const char *) mdg_decision_name(int decision);

/* The reply's strings, borrowed from the reply (valid until mdg_reply_free()), never NULL for
 * a reply ("" when not set); NULL for a NULL reply. `size`, when not NULL, receives the length.
 *   text:   what to show the visitor (may contain NUL in theory: use the size)
 *   entry:  the entry answered with (MDG_DECISION_ANSWER), else ""
 *   locale: the reply's language ("ja", "en")
 *   reason: why ("confident", "out of scope", "visitor asked for a person", ...) */
MDG_EXTERN(const char *) mdg_reply_text(const mdg_reply *reply, size_t *size);
MDG_EXTERN(const char *) mdg_reply_entry(const mdg_reply *reply);
MDG_EXTERN(const char *) mdg_reply_locale(const mdg_reply *reply);
MDG_EXTERN(const char *) mdg_reply_reason(const mdg_reply *reply);

/* Candidates from retrieval, best first (at most 5; none when a rule decided). The count is 0
 * for a NULL reply; mdg_reply_candidate() returns NULL when `index` is out of range. */
MDG_EXTERN(size_t) mdg_reply_candidate_count(const mdg_reply *reply);
MDG_EXTERN(const mdg_candidate *) mdg_reply_candidate(const mdg_reply *reply, size_t index);

/* Clarification options (MDG_DECISION_CLARIFY, or a rule's question), in order: the visitor
 * may answer with the option's number ("1") or its label. */
MDG_EXTERN(size_t) mdg_reply_option_count(const mdg_reply *reply);
MDG_EXTERN(const mdg_option *) mdg_reply_option(const mdg_reply *reply, size_t index);

/* The whole reply as one JSON object (decision, text, entry, candidates, rules_fired,
 * follow_ups, triage, tokens, normalized, handoff...: docs/policy.md "Reply JSON"), owned by
 * the caller. */
MDG_EXTERN(int) mdg_reply_json(mdg_buf *out, const mdg_reply *reply);
/* The hand-off package as JSON (reason, locale, transcript, candidates, rules fired, triage,
 * slots, visitor attributes: docs/policy.md "Hand-off package"), owned by the caller.
 * MDG_ENOTFOUND when the reply did not hand off. */
MDG_EXTERN(int) mdg_reply_handoff_json(mdg_buf *out, const mdg_reply *reply);
/* Why the bot decided as it did, as lines of text for people (normalized text, tokens, rules,
 * candidates with scores, triage, decision), as `madoguchi-bot ask` prints it; owned by the
 * caller. */
MDG_EXTERN(int) mdg_reply_explain(mdg_buf *out, const mdg_reply *reply);

/* NULL: no-op. */
MDG_EXTERN(void) mdg_reply_free(mdg_reply *reply);

/* ========================================================================================== */
/* The live-chat client                                                                       */
/* ========================================================================================== */

/* A visitor's live-chat client (docs/client.md): one WebSocket connection to a hub's
 * /v1/visitor, kept alive by its own network thread, with an outbox that never loses a
 * message (written to state_path before mdg_client_send() returns, resent after reconnects,
 * stored exactly once by the hub).
 * Thread-safety: every mdg_client function may be called from any thread at once, except
 * mdg_client_free(), which must be the last call on the handle. */
typedef struct mdg_client mdg_client;

/* Where callbacks run. */
typedef enum mdg_dispatch {
  MDG_DISPATCH_CALLBACK = 0, /* on the client's network thread, as frames arrive (the default) */
  MDG_DISPATCH_POLL = 1      /* queued, and run by mdg_client_poll() on the thread that calls it */
} mdg_dispatch;

typedef enum mdg_state {
  MDG_STATE_CONNECTING = 0,   /* a connection attempt (or the hello/welcome exchange) is under way */
  MDG_STATE_CONNECTED = 1,    /* the hub sent `welcome`: messages flow */
  MDG_STATE_DISCONNECTED = 2, /* not connected yet, or waiting to retry */
  MDG_STATE_CLOSED = 3        /* closed, or the hub refused the conversation for good */
} mdg_state;

typedef enum mdg_event_kind {
  MDG_EVENT_STATE = 0,   /* the connection state changed: `state` */
  MDG_EVENT_WELCOME = 1, /* the hub accepted the hello: conversation, conversation_state, last_seq */
  MDG_EVENT_MESSAGE = 2, /* a message: seq, id, from, agent, text, attachments, bot_json, at */
  MDG_EVENT_EVENT = 3,   /* a conversation event: event (handoff_started, agent_joined,
                            queue_position, conversation_closed...), data_json, seq, at */
  MDG_EVENT_ACK = 4,     /* id (an id mdg_client_send() gave) is stored as seq; duplicate */
  MDG_EVENT_TYPING = 5,  /* the other side started (typing = 1) or stopped (0) typing; from */
  MDG_EVENT_READ = 6,    /* the other side has read up to seq; from */
  MDG_EVENT_ERROR = 7    /* the hub refused something, or the client failed: error, error_message,
                            id (of the message concerned, if any) */
} mdg_event_kind;

/* An attachment's metadata (the hub stores no file). Callers fill it to send: it never changes
 * (a later version would add a new struct and a new function). */
typedef struct mdg_attachment {
  const char *name;
  const char *type;   /* MIME type */
  int64_t size;       /* bytes */
  const char *url;
} mdg_attachment;

/* Since 1.2. What a message from the bot carries besides its text: its bot_json, read, so that
 * an app can show a clarification's choices or an answer's related questions, and send the
 * pick with mdg_client_choose(), without a JSON parser. Strings are never NULL ("" when the
 * message does not carry them); arrays are NULL when their count is 0. */
typedef struct mdg_bot_info {
  const char *decision;                 /* "answer", "reply", "clarify", "handoff", "fallback" */
  const char *entry;                    /* answer: the entry it answered with */
  const mdg_option *const *options;     /* clarify: option_count choices, in order (show them
                                           numbered from 1) */
  size_t option_count;
  const mdg_option *const *suggestions; /* answer: suggestion_count related questions, picked
                                           the same way */
  size_t suggestion_count;
  const char *const *follow_ups;        /* answer: ids of the entries visitors often ask next */
  size_t follow_up_count;
} mdg_bot_info;

/* Since 1.2. An event's data_json, read (docs/protocol.md, "Events"): each event fills the
 * fields it has; the others are "" (0 for queue_position). */
typedef struct mdg_event_data {
  const char *reason;     /* handoff_started: why the bot handed off */
  int64_t queue_position; /* handoff_started, queue_position: 1 = next; 0 when not given */
  const char *agent;      /* agent_joined, agent_left, handed_back: the agent's name */
  const char *from;       /* transferred: the agent who passed the conversation on */
  const char *to;         /* transferred: the agent who took it */
  const char *by;         /* conversation_closed: who closed it ("agent") */
} mdg_event_data;

/* One thing that happened, given to mdg_event_cb. Every pointer in it, and the struct itself,
 * are valid only during the callback: copy what you keep. Every string is NUL-terminated and
 * never NULL ("" when the event does not carry it). */
typedef struct mdg_event {
  int kind;                  /* mdg_event_kind */
  int state;                 /* mdg_state after this event */
  const char *conversation;  /* the conversation id (welcome) */
  const char *conversation_state; /* welcome: "bot", "waiting", "agent" or "closed" */
  const char *id;            /* message / ack: the message id; error: the id it is about */
  int64_t seq;               /* message, event, ack, read: the hub's number; 0 when none */
  int64_t last_seq;          /* welcome: the conversation's highest seq */
  int64_t at;                /* message, event: ms since the Unix epoch, UTC; 0 when none */
  const char *from;          /* message, typing, read: "visitor", "bot" or "agent" */
  const char *agent;         /* message from an agent: the agent's name */
  const char *text;          /* message: the text (UTF-8, may contain NUL: use text_size) */
  size_t text_size;
  const mdg_attachment *const *attachments; /* message: attachment_count pointers */
  size_t attachment_count;
  const char *bot_json;      /* message from the bot: {"decision", "entry", "follow_ups", "options", "suggestions"} */
  const char *event;         /* event: its name */
  const char *data_json;     /* event: its data as a JSON object ("{}" when none) */
  int duplicate;             /* ack: 1 when the hub had stored this id before (a resend) */
  int typing;                /* typing: 1 started, 0 stopped */
  const char *error;         /* error: the code ("unauthorized", "rate_limited", "internal", ...) */
  const char *error_message; /* error: what is wrong */
  const char *frame_json;    /* the protocol frame as JSON (docs/protocol.md); "" for state changes */
  /* Since 1.2 (a program that reads them needs mdg_version_number() >= 0x010200): */
  const mdg_bot_info *bot;     /* message from the bot: bot_json, read; NULL otherwise */
  const mdg_event_data *data;  /* event: data_json, read; NULL otherwise */
} mdg_event;

/* Receives every event of a client, one at a time, never two at once, in the order of the
 * frames (an ack comes before the bot's reply it causes). With MDG_DISPATCH_CALLBACK it runs on
 * the network thread: keep it short and do not block. From it you may call any function of the
 * client except mdg_client_close() (MDG_EBUSY); mdg_client_free() is allowed (no event follows;
 * the network thread then ends by itself without flushing, and the outbox stays in
 * state_path). */
typedef void (*mdg_event_cb)(const mdg_event *event, void *userdata);

#define MDG_CLIENT_OPTIONS_VERSION 1

/* Settings of a client. Versioned: start from MDG_CLIENT_OPTIONS_INIT or mdg_client_options_init(). */
typedef struct mdg_client_options {
  unsigned int version;      /* MDG_CLIENT_OPTIONS_VERSION */
  /* ws://host[:port]/v1/visitor or wss://... (the path defaults to /v1/visitor). Required. */
  const char *url;
  /* A file for the outbox, the conversation token and the last seq (and "<state_path>.lock"
   * beside it). NULL: memory only; an app restart then starts a new conversation and loses
   * unsent messages. */
  const char *state_path;
  const char *locale;        /* sent in hello: "ja", "en"; NULL: none */
  /* Visitor attributes shown to agents: key, value, key, value, ..., NULL. NULL: none. */
  const char *const *visitor;
  /* Reconnect delays in ms: the n-th retry in a row waits backoff_ms[min(n, count - 1)], give
   * or take jitter_percent. NULL / 0: 500 ms doubling to 30 s. Each value must be > 0. */
  const int *backoff_ms;
  size_t backoff_count;
  int jitter_percent;        /* 0..100; 30 by default */
  int dispatch;              /* mdg_dispatch; MDG_DISPATCH_CALLBACK by default */
  mdg_event_cb on_event;     /* NULL: events are dropped */
  mdg_log_cb log_cb;         /* NULL: no logging */
  int log_level;             /* the lowest level passed to log_cb: MDG_LOG_INFO by default */
  void *userdata;            /* passed to on_event and log_cb */
} mdg_client_options;

#define MDG_CLIENT_OPTIONS_INIT \
  {MDG_CLIENT_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL, 0, 30, MDG_DISPATCH_CALLBACK, NULL, NULL, MDG_LOG_INFO, NULL}

/* Sets *opts to the defaults of `version`. MDG_EVERSION for a version this library does not
 * know, MDG_EINVAL for NULL. Any thread. */
MDG_EXTERN(int) mdg_client_options_init(mdg_client_options *opts, unsigned int version);

/* Checks the options, reads state_path when it exists and locks it. Does not connect: call
 * mdg_client_connect(). On success *out is a new client (free it with mdg_client_free()).
 * Errors: MDG_EINVAL (a bad url, back-off or jitter, a corrupt state file: it is never
 * overwritten, as it may hold unsent messages), MDG_EUNAVAILABLE (the state file cannot be
 * read, or another client uses it), MDG_EVERSION, MDG_ENOTSUP. Any thread. */
MDG_EXTERN(int) mdg_client_new(mdg_client **out, const mdg_client_options *opts);

/* Starts the network thread, which connects and keeps reconnecting with back-off. Errors:
 * MDG_EINVAL when already started, MDG_ECLOSED after close, MDG_EUNAVAILABLE. Any thread. */
MDG_EXTERN(int) mdg_client_connect(mdg_client *client);

/* A message id, as mdg_client_send() gives it: 1 to 64 characters of A-Z a-z 0-9 _ -. */
typedef struct mdg_message_id {
  char str[72]; /* NUL-terminated */
} mdg_message_id;

/* Queues a message of `size` bytes of UTF-8 (MDG_NTS: NUL-terminated). When this returns it is
 * in the outbox (and written to state_path); it is sent when connected, and leaves the outbox
 * on its MDG_EVENT_ACK. Works before mdg_client_connect() and offline. `out` (may be NULL)
 * receives its id, which the ack names. Errors: MDG_EINVAL when the hub would refuse it (empty,
 * not UTF-8, over 64 KiB...), MDG_EUNAVAILABLE (state_path cannot be written: not queued),
 * MDG_ECLOSED. Any thread, callbacks included. */
MDG_EXTERN(int) mdg_client_send(mdg_message_id *out, mdg_client *client, const char *text, size_t size);
/* As mdg_client_send(), with `count` attachments (metadata only, at most 16; the text may then
 * be empty). The attachment structs are copied. */
MDG_EXTERN(int) mdg_client_send_attachments(mdg_message_id *out, mdg_client *client, const char *text,
                                            size_t size, const mdg_attachment *const *attachments,
                                            size_t count);

/* Since 1.1. Queues the visitor's pick of one of the options (a clarification) or suggestions
 * (an answer's related questions) of a bot message: an mdg_option of its `bot` (since 1.2),
 * or an {"label": ..., "entry": ...} of the "options" or "suggestions" of its bot_json. The
 * message's text is the label (what the transcript shows) and its "choice" the entry, so the bot answers with that entry whatever
 * the label says and whatever was said since (docs/client.md). Both are NUL-terminated UTF-8.
 * Outbox, `out` and errors as mdg_client_send(); MDG_EINVAL also for an empty entry or label. */
MDG_EXTERN(int) mdg_client_choose(mdg_message_id *out, mdg_client *client, const char *entry, const char *label);

/* Tells the other side the visitor is typing (active != 0) or stopped. Only while connected;
 * otherwise ignored (MDG_OK). Any thread. */
MDG_EXTERN(int) mdg_client_typing(mdg_client *client, int active);
/* Tells the other side the visitor has seen everything up to `seq` (>= 0; 0 sends nothing).
 * Only while connected; otherwise ignored (MDG_OK). Typing and read receipts are sent as
 * state: the last typing state and the highest seq, never holding the outbox up
 * (docs/client.md). Any thread. */
MDG_EXTERN(int) mdg_client_mark_read(mdg_client *client, int64_t seq);

/* MDG_DISPATCH_POLL: waits up to timeout_ms (0: not at all, < 0: until an event comes) for
 * events, then runs up to `max` queued events' callbacks on this thread (0: all that are
 * queued). Returns how many ran (>= 0) or a negative MDG_E* code. With MDG_DISPATCH_CALLBACK,
 * and from inside a callback, it returns 0 at once. Any thread; concurrent polls take turns. */
MDG_EXTERN(int) mdg_client_poll(mdg_client *client, int timeout_ms, size_t max);

/* Snapshots, from any thread (callbacks included). */
MDG_EXTERN(int) mdg_client_state(int *out, const mdg_client *client);          /* mdg_state */
MDG_EXTERN(int) mdg_client_conversation(mdg_buf *out, const mdg_client *client); /* "" before the first welcome */
MDG_EXTERN(int) mdg_client_last_seq(int64_t *out, const mdg_client *client);   /* highest seq delivered */
MDG_EXTERN(int) mdg_client_pending(size_t *out, const mdg_client *client);     /* messages in the outbox */

/* Flushes the outbox until timeout_ms passes (connecting at once if it waits to retry), closes
 * the connection, and stops and joins the network thread. With MDG_DISPATCH_CALLBACK no
 * callback runs after it returns; with MDG_DISPATCH_POLL the events queued until then (the
 * last one is the change to MDG_STATE_CLOSED) are still handed out by mdg_client_poll().
 * MDG_OK when the outbox is empty; MDG_ETIMEDOUT when messages are left (they stay in
 * state_path for the next client that opens it; without state_path they are lost). A second
 * call gives the same answer. From inside one of this client's callbacks (either dispatch):
 * MDG_EBUSY, as it would wait for itself. Any thread. */
MDG_EXTERN(int) mdg_client_close(mdg_client *client, int timeout_ms);

/* Closes without waiting (as mdg_client_close(client, 0)) unless closed already, and releases
 * the handle; no callback (event or log) runs after it returns, and queued events are dropped.
 * A callback already running on the network thread finishes first (it may still call the
 * client's functions meanwhile; since 1.3: before, it could find the handle half released).
 * NULL: no-op. It must be the last call on `client`, with no other call on it still running on
 * another thread. From the client's own callback: allowed, see mdg_event_cb. */
MDG_EXTERN(void) mdg_client_free(mdg_client *client);

/* ========================================================================================== */
/* The support agent's live-chat client (since 1.3)                                           */
/* ========================================================================================== */

/* A support agent's live-chat client (docs/client.md, "AgentClient"): one WebSocket connection
 * to a hub's /v1/agent, logged in with the agent's name and password and kept alive by its own
 * network thread, as mdg_client's. Replies go through the same kind of outbox: written to
 * state_path before mdg_agent_send() returns, resent after reconnects, stored exactly once by
 * the hub. After a reconnect the client takes the conversations it holds again and hands on
 * only the frames it had not delivered yet. Wrong credentials are final: an MDG_AGENT_EVENT_ERROR
 * "unauthorized", then MDG_STATE_CLOSED.
 * A program that uses these functions needs mdg_version_number() >= 0x010300.
 * Thread-safety: every mdg_agent function may be called from any thread at once, except
 * mdg_agent_free(), which must be the last call on the handle. */
typedef struct mdg_agent mdg_agent;

typedef enum mdg_agent_event_kind {
  MDG_AGENT_EVENT_STATE = 0,        /* the connection state changed: `state` */
  MDG_AGENT_EVENT_WELCOME = 1,      /* the hub accepted the credentials: agent */
  MDG_AGENT_EVENT_QUEUE = 2,        /* queue: the whole queue now (after welcome, after
                                       mdg_agent_refresh_queue(), and at every change) */
  MDG_AGENT_EVENT_CONVERSATION = 3, /* the hub sent a conversation (after mdg_agent_take()):
                                       conversation, conversation_state, handoff_json,
                                       transcript, resumed */
  MDG_AGENT_EVENT_MESSAGE = 4,      /* frame: a message of `conversation` (the visitor, the bot,
                                       another agent) */
  MDG_AGENT_EVENT_EVENT = 5,        /* frame: an event of `conversation` (agent_joined,
                                       transferred, handed_back, conversation_closed...) */
  MDG_AGENT_EVENT_ACK = 6,          /* frame: its id (one mdg_agent_send() gave) is stored as seq */
  MDG_AGENT_EVENT_TYPING = 7,       /* frame: the visitor of `conversation` started or stopped typing */
  MDG_AGENT_EVENT_READ = 8,         /* frame: the visitor of `conversation` has read up to seq */
  MDG_AGENT_EVENT_ERROR = 9         /* frame: the hub refused something (conflict, forbidden,
                                       not_found, unauthorized...), or the client failed */
} mdg_agent_event_kind;

/* One conversation of the hub's queue: handed off and waiting, or with an agent. Owned by its
 * event. */
typedef struct mdg_queue_entry {
  const char *conversation;
  const char *state;    /* "waiting" or "agent" */
  double priority;      /* higher first (from the hand-off's triage scores) */
  const char *locale;   /* "ja", "en", ... */
  const char *reason;   /* why the bot handed off */
  int64_t since;        /* ms since the Unix epoch: when it was handed off */
  const char *agent;    /* who has it (state "agent"); "" while waiting */
} mdg_queue_entry;

/* One thing that happened, given to mdg_agent_event_cb. Every pointer in it, and the struct
 * itself, are valid only during the callback: copy what you keep. Strings are NUL-terminated
 * and never NULL ("" when the event does not carry them); arrays are NULL when their count is
 * 0. The frames of a conversation (`frame`, `transcript`) are read as a visitor's client reads
 * them: an mdg_event each, whose kind is MDG_EVENT_MESSAGE, _EVENT, _ACK, _TYPING, _READ or
 * _ERROR, with `bot` and `data` filled in as there. */
typedef struct mdg_agent_event {
  int kind;                         /* mdg_agent_event_kind */
  int state;                        /* mdg_state after this event */
  const char *conversation;         /* conversation, message, event, ack, typing, read: which one */
  const mdg_event *frame;           /* message, event, ack, typing, read, error: the frame; NULL
                                       for state, welcome, queue and conversation */
  const char *agent;                /* welcome: the agent's name, as the hub knows it */
  const mdg_queue_entry *const *queue; /* queue: queue_count entries, highest priority first */
  size_t queue_count;
  const char *conversation_state;   /* conversation: "bot", "waiting", "agent" or "closed" */
  const char *handoff_json;         /* conversation: the bot's hand-off package (reason, locale,
                                       transcript, candidates with scores, rules fired, triage,
                                       slots, visitor: docs/policy.md); "{}" when the bot never
                                       handed off */
  const mdg_event *const *transcript; /* conversation: the stored messages and events, by seq
                                       (the last 10,000 at most, within 2 MiB) */
  size_t transcript_count;
  int resumed;                      /* conversation: 1 when this client had delivered it before
                                       (a take again, or the automatic one after a reconnect):
                                       the frames of `transcript` it had not delivered yet follow
                                       as message and event events */
  const char *frame_json;           /* the protocol frame as JSON (docs/protocol.md); "" for
                                       state changes */
} mdg_agent_event;

/* Receives every event of an agent client, one at a time, on the thread `dispatch` says, in
 * the order of the frames, except that a conversation's messages and events that come while
 * the client takes it again (after a reconnect or a transfer) follow that take's answer
 * (docs/client.md, "Which conversations the agent holds"): as mdg_event_cb (from it, any mdg_agent function but
 * mdg_agent_close(), which gives MDG_EBUSY; mdg_agent_free() is allowed). */
typedef void (*mdg_agent_event_cb)(const mdg_agent_event *event, void *userdata);

#define MDG_AGENT_OPTIONS_VERSION 1

/* Settings of an agent client. Versioned: start from MDG_AGENT_OPTIONS_INIT or
 * mdg_agent_options_init(). */
typedef struct mdg_agent_options {
  unsigned int version;      /* MDG_AGENT_OPTIONS_VERSION */
  /* ws://host[:port]/v1/agent or wss://... (the path defaults to /v1/agent). Required. */
  const char *url;
  const char *agent;         /* the agent's name, as configured in the hub. Required. */
  const char *password;      /* Required; copied, never logged. Use wss:// beyond loopback. */
  /* A file for the outbox of replies not yet acknowledged (and "<state_path>.lock" beside it).
   * NULL: memory only (the outbox survives reconnects but not an app restart). */
  const char *state_path;
  const int *backoff_ms;     /* reconnect delays, as mdg_client_options */
  size_t backoff_count;
  int jitter_percent;        /* 0..100; 30 by default */
  int dispatch;              /* mdg_dispatch; MDG_DISPATCH_CALLBACK by default */
  mdg_agent_event_cb on_event; /* NULL: events are dropped */
  mdg_log_cb log_cb;         /* NULL: no logging */
  int log_level;             /* the lowest level passed to log_cb: MDG_LOG_INFO by default */
  void *userdata;            /* passed to on_event and log_cb */
} mdg_agent_options;

#define MDG_AGENT_OPTIONS_INIT \
  {MDG_AGENT_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL, 0, 30, MDG_DISPATCH_CALLBACK, NULL, NULL, MDG_LOG_INFO, NULL}

/* Sets *opts to the defaults of `version`. MDG_EVERSION for a version this library does not
 * know, MDG_EINVAL for NULL. Any thread. */
MDG_EXTERN(int) mdg_agent_options_init(mdg_agent_options *opts, unsigned int version);

/* Checks the options (url, agent and password not empty, back-off, jitter), reads state_path
 * when it exists and locks it. Does not connect: call mdg_agent_connect(). On success *out is
 * a new agent client (free it with mdg_agent_free()). Errors as mdg_client_new(). Any thread. */
MDG_EXTERN(int) mdg_agent_new(mdg_agent **out, const mdg_agent_options *opts);

/* Starts the network thread, which connects, logs in and keeps reconnecting with back-off.
 * Errors as mdg_client_connect(). Any thread. */
MDG_EXTERN(int) mdg_agent_connect(mdg_agent *agent);

/* The actions below need a connection: while not connected they fail with MDG_EUNAVAILABLE and
 * nothing is sent. Their answer comes as events (conversation, event, queue) or as an
 * MDG_AGENT_EVENT_ERROR ("conflict", "forbidden", "not_found"). `conversation` and `to` are
 * NUL-terminated. Any thread, callbacks included. */

/* Asks the hub for the queue again (it also comes by itself whenever it changes). */
MDG_EXTERN(int) mdg_agent_refresh_queue(mdg_agent *agent);
/* Assigns `conversation` to this agent (waiting, or still with the bot); the hub answers with
 * MDG_AGENT_EVENT_CONVERSATION and the visitor sees agent_joined. Taking one this agent has
 * already fetches it again (resumed). */
MDG_EXTERN(int) mdg_agent_take(mdg_agent *agent, const char *conversation);
/* Gives the conversation to another agent, by name (everyone gets the `transferred` event). */
MDG_EXTERN(int) mdg_agent_transfer(mdg_agent *agent, const char *conversation, const char *to);
/* Gives the conversation back to the bot (`handed_back`). */
MDG_EXTERN(int) mdg_agent_hand_back(mdg_agent *agent, const char *conversation);
/* Closes the conversation, not the connection (`conversation_closed`). */
MDG_EXTERN(int) mdg_agent_close_conversation(mdg_agent *agent, const char *conversation);

/* Queues a reply of `size` bytes of UTF-8 (MDG_NTS: NUL-terminated) to the visitor of
 * `conversation`, which this agent must hold. When this returns it is in the outbox (and in
 * state_path); it is sent when connected and leaves the outbox on its MDG_AGENT_EVENT_ACK.
 * Works offline too. `out` (may be NULL) receives its id, which the ack names. Errors:
 * MDG_EINVAL (an empty conversation, or a message the hub would refuse), MDG_EUNAVAILABLE
 * (state_path cannot be written: not queued), MDG_ECLOSED. Any thread, callbacks included. */
MDG_EXTERN(int) mdg_agent_send(mdg_message_id *out, mdg_agent *agent, const char *conversation,
                               const char *text, size_t size);
/* As mdg_agent_send(), with `count` attachments (metadata only, at most 16; the text may then
 * be empty). */
MDG_EXTERN(int) mdg_agent_send_attachments(mdg_message_id *out, mdg_agent *agent, const char *conversation,
                                           const char *text, size_t size,
                                           const mdg_attachment *const *attachments, size_t count);

/* Typing indicator (active != 0: started) and read receipt (up to `seq` >= 0) for the visitor
 * of `conversation`. Only while connected; otherwise ignored (MDG_OK). Any thread. */
MDG_EXTERN(int) mdg_agent_typing(mdg_agent *agent, const char *conversation, int active);
MDG_EXTERN(int) mdg_agent_mark_read(mdg_agent *agent, const char *conversation, int64_t seq);

/* As mdg_client_poll(). */
MDG_EXTERN(int) mdg_agent_poll(mdg_agent *agent, int timeout_ms, size_t max);

/* Snapshots, from any thread (callbacks included). */
MDG_EXTERN(int) mdg_agent_state(int *out, const mdg_agent *agent);       /* mdg_state */
MDG_EXTERN(int) mdg_agent_pending(size_t *out, const mdg_agent *agent);  /* replies in the outbox */
/* The last queue the hub sent, as a JSON array of {"conversation", "state", "priority",
 * "locale", "reason", "since", "agent"}, owned by the caller. */
MDG_EXTERN(int) mdg_agent_queue_json(mdg_buf *out, const mdg_agent *agent);
/* The conversations this agent holds, as far as the client knows (taken or transferred to it,
 * and not handed back, transferred away or closed since), as a JSON array of ids. */
MDG_EXTERN(int) mdg_agent_conversations_json(mdg_buf *out, const mdg_agent *agent);

/* As mdg_client_close(): flushes the outbox until timeout_ms, closes the connection and joins
 * the network thread; MDG_ETIMEDOUT when replies are left (they stay in state_path);
 * MDG_EBUSY from the agent client's own callback. Any thread. */
MDG_EXTERN(int) mdg_agent_close(mdg_agent *agent, int timeout_ms);

/* As mdg_client_free(). NULL: no-op. */
MDG_EXTERN(void) mdg_agent_free(mdg_agent *agent);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MADOGUCHI_H */
