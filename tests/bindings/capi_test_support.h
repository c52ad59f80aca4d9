/* What the C tests of madoguchi.h share: checks that report and go on, a scratch directory,
 * the real madoguchi-hub as a child process on 127.0.0.1 (port 0), and a recorder of client
 * events that the test thread waits on with a timeout.
 *
 * Callbacks only record; every check runs on the test thread after waiting (with a generous
 * timeout) for what it needs. Nothing asserts on timing.
 *
 * C99 + POSIX (pthreads, posix_spawn). Every function is static: each test program includes
 * this header once. */
#ifndef MDG_CAPI_TEST_SUPPORT_H
#define MDG_CAPI_TEST_SUPPORT_H

#include <madoguchi.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Each program uses part of what is here. */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

#ifndef MDG_SOURCE_DIR
#error "MDG_SOURCE_DIR must name the repository"
#endif
#ifndef MDG_HUB_EXE
#define MDG_HUB_EXE "madoguchi-hub (not built: configure with MDG_BUILD_SAMPLES=ON)"
#endif

#define SHOP_KB MDG_SOURCE_DIR "/samples/kb/shop.json"
#define WAIT_MS 30000 /* the longest single wait */

/* ---- checks ----------------------------------------------------------------------------- */

static int g_failures = 0;
static int g_checks = 0;
static const char *g_test = "";

static void check_report(int ok, const char *file, int line, const char *what, const char *fmt, ...) {
  ++g_checks;
  if (ok) return;
  ++g_failures;
  fprintf(stderr, "%s:%d: [%s] CHECK failed: %s", file, line, g_test, what);
  if (fmt != NULL && *fmt != '\0') {
    va_list ap;
    va_start(ap, fmt);
    fputs(" -- ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
  }
  fputc('\n', stderr);
}

#define CHECK(cond) check_report((cond) != 0, __FILE__, __LINE__, #cond, NULL)
#define CHECK_MSG(cond, ...) check_report((cond) != 0, __FILE__, __LINE__, #cond, __VA_ARGS__)
/* An int call and the code it must return; on a mismatch, says what mdg_error_last() said. */
#define CHECK_RC(expr, expected)                                                                   \
  do {                                                                                             \
    int rc_ = (expr);                                                                              \
    check_report(rc_ == (expected), __FILE__, __LINE__, #expr " == " #expected,                    \
                 "got %d (%s): %s", rc_, mdg_strerror(rc_), mdg_error_last());                     \
  } while (0)
#define CHECK_OK(expr) CHECK_RC(expr, MDG_OK)
/* The last error mentions `needle`. */
#define CHECK_ERROR_SAYS(needle)                                                                   \
  check_report(strstr(mdg_error_last(), (needle)) != NULL, __FILE__, __LINE__,                     \
               "mdg_error_last() mentions \"" needle "\"", "it says: %s", mdg_error_last())
#define REQUIRE(cond)                                                                              \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      check_report(0, __FILE__, __LINE__, #cond, "(required: stopping) %s", mdg_error_last());     \
      exit(finish());                                                                              \
    }                                                                                              \
  } while (0)

static int finish(void) {
  fprintf(stderr, "%d check(s), %d failure(s)\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

static int contains(const char *haystack, const char *needle) {
  return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* ---- time and files ---------------------------------------------------------------------- */

static struct timespec deadline_after(int ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec += 1;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

static char g_tmpdir[512];

/* A scratch directory for this run (removed by remove_tmpdir). */
static const char *make_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  snprintf(g_tmpdir, sizeof g_tmpdir, "%s/mdg-capi-XXXXXX", base != NULL && *base != '\0' ? base : "/tmp");
  if (mkdtemp(g_tmpdir) == NULL) {
    perror("mkdtemp");
    exit(2);
  }
  return g_tmpdir;
}

static void remove_tmpdir(void) {
  char cmd[600];
  if (g_tmpdir[0] == '\0') return;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmpdir);
}

static void tmp_path(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", g_tmpdir, name); }

static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  char *data;
  long n;
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  data = (char *)malloc((size_t)n + 1);
  if (data == NULL || fread(data, 1, (size_t)n, f) != (size_t)n) {
    free(data);
    fclose(f);
    return NULL;
  }
  data[n] = '\0';
  fclose(f);
  if (size != NULL) *size = (size_t)n;
  return data;
}

static int write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return -1;
  fputs(text, f);
  return fclose(f);
}

/* ---- the hub ----------------------------------------------------------------------------- */

typedef struct hub_process {
  pid_t pid;
  int port;
  int out_fd;
  char log_path[600];
  char store_path[600];
} hub_process;

/* Starts madoguchi-hub on 127.0.0.1, port 0, with the sample shop knowledge base, a store in
 * the scratch directory and the agent sato:pw; waits for "listening on http://127.0.0.1:PORT". */
static int hub_start(hub_process *hub) {
  posix_spawn_file_actions_t fa;
  int pipefd[2];
  char buf[4096];
  size_t have = 0;
  const char *marker = "listening on http://127.0.0.1:";
  struct timespec start;
  char *argv[16];
  int rc;

  memset(hub, 0, sizeof *hub);
  hub->pid = -1;
  tmp_path(hub->log_path, sizeof hub->log_path, "hub.log");
  tmp_path(hub->store_path, sizeof hub->store_path, "hub.db");
  if (pipe(pipefd) != 0) return -1;
  argv[0] = (char *)MDG_HUB_EXE;
  argv[1] = (char *)"--kb";
  argv[2] = (char *)SHOP_KB;
  argv[3] = (char *)"--store";
  argv[4] = hub->store_path;
  argv[5] = (char *)"--host";
  argv[6] = (char *)"127.0.0.1";
  argv[7] = (char *)"--port";
  argv[8] = (char *)"0";
  argv[9] = (char *)"--agent";
  argv[10] = (char *)"sato:pw";
  argv[11] = (char *)"--secret";
  argv[12] = (char *)"capi-test-secret-0123456789";
  argv[13] = NULL;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_addclose(&fa, pipefd[0]);
  posix_spawn_file_actions_addclose(&fa, pipefd[1]);
  posix_spawn_file_actions_addopen(&fa, 2, hub->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  rc = posix_spawn(&hub->pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  if (rc != 0) {
    fprintf(stderr, "cannot start %s: %s\n", argv[0], strerror(rc));
    close(pipefd[0]);
    hub->pid = -1;
    return -1;
  }
  hub->out_fd = pipefd[0];
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    struct pollfd p;
    struct timespec now;
    const char *at;
    ssize_t got;
    long waited;
    buf[have] = '\0';
    at = strstr(buf, marker);
    if (at != NULL && strchr(at, '\n') != NULL) {
      hub->port = atoi(at + strlen(marker));
      return hub->port > 0 ? 0 : -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    waited = (long)(now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L;
    if (waited > 60000 || have + 1 >= sizeof buf) break;
    p.fd = hub->out_fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 200) <= 0) continue;
    got = read(hub->out_fd, buf + have, sizeof buf - 1 - have);
    if (got <= 0) break;
    have += (size_t)got;
  }
  fprintf(stderr, "the hub did not start; its log is %s\n", hub->log_path);
  return -1;
}

static void hub_url(const hub_process *hub, char *out, size_t size) {
  snprintf(out, size, "ws://127.0.0.1:%d/v1/visitor", hub->port);
}

/* SIGTERM, and the end of the process. */
static void hub_stop(hub_process *hub) {
  int status;
  if (hub->pid <= 0) return;
  kill(hub->pid, SIGTERM);
  waitpid(hub->pid, &status, 0);
  close(hub->out_fd);
  hub->pid = -1;
}

/* ---- recording client events -------------------------------------------------------------- */

#define MAX_EVENTS 512

typedef struct recorded_event {
  int kind;
  int state;
  int64_t seq;
  int64_t last_seq;
  int duplicate;
  int typing;
  size_t attachment_count;
  char id[80];
  char from[16];
  char event[48];
  char error[48];
  char conversation[80];
  char text[256];
  size_t text_size;
  char bot_json[512];
  char frame_json[512];
  /* ev->bot and ev->data (1.2): has_bot / has_data say whether they were set. */
  int has_bot;
  char decision[16];
  char entry[48];
  size_t option_count;
  char options[3][2][128]; /* the first three: entry, label */
  size_t suggestion_count;
  char suggestions[3][2][128];
  size_t follow_up_count;
  int has_data;
  char reason[64];
  int64_t queue_position;
  char data_agent[48];
  pthread_t thread;
} recorded_event;

typedef struct recorder {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  recorded_event events[MAX_EVENTS];
  int count;
  int dropped;
  mdg_client *client;        /* for what a test does from its callback */
  int close_rc_in_callback;  /* mdg_client_close() from the callback: 1 = not tried */
  int free_in_callback;      /* free the client from the callback on this kind (-1: never) */
  int freed;                 /* set after mdg_client_free() returned inside the callback */
  int log_lines;
} recorder;

static void recorder_init(recorder *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->close_rc_in_callback = 1;
  r->free_in_callback = -1;
}

static void recorder_destroy(recorder *r) {
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
}

static void copy_str(char *dst, size_t size, const char *src) {
  snprintf(dst, size, "%s", src != NULL ? src : "(null)");
}

static void record_event(const mdg_event *ev, void *userdata) {
  recorder *r = (recorder *)userdata;
  recorded_event e;
  memset(&e, 0, sizeof e);
  e.kind = ev->kind;
  e.state = ev->state;
  e.seq = ev->seq;
  e.last_seq = ev->last_seq;
  e.duplicate = ev->duplicate;
  e.typing = ev->typing;
  e.attachment_count = ev->attachment_count;
  copy_str(e.id, sizeof e.id, ev->id);
  copy_str(e.from, sizeof e.from, ev->from);
  copy_str(e.event, sizeof e.event, ev->event);
  copy_str(e.error, sizeof e.error, ev->error);
  copy_str(e.conversation, sizeof e.conversation, ev->conversation);
  e.text_size = ev->text_size;
  memcpy(e.text, ev->text, ev->text_size < sizeof e.text - 1 ? ev->text_size : sizeof e.text - 1);
  copy_str(e.bot_json, sizeof e.bot_json, ev->bot_json);
  copy_str(e.frame_json, sizeof e.frame_json, ev->frame_json);
  if (ev->bot != NULL) {
    const mdg_bot_info *b = ev->bot;
    size_t i;
    e.has_bot = 1;
    copy_str(e.decision, sizeof e.decision, b->decision);
    copy_str(e.entry, sizeof e.entry, b->entry);
    e.option_count = b->option_count;
    for (i = 0; i < b->option_count && i < 3; ++i) {
      copy_str(e.options[i][0], sizeof e.options[i][0], b->options[i]->entry);
      copy_str(e.options[i][1], sizeof e.options[i][1], b->options[i]->label);
      if (strlen(b->options[i]->label) != b->options[i]->label_size) e.options[i][1][0] = '\0';
    }
    e.suggestion_count = b->suggestion_count;
    for (i = 0; i < b->suggestion_count && i < 3; ++i) {
      copy_str(e.suggestions[i][0], sizeof e.suggestions[i][0], b->suggestions[i]->entry);
      copy_str(e.suggestions[i][1], sizeof e.suggestions[i][1], b->suggestions[i]->label);
    }
    e.follow_up_count = b->follow_up_count;
    if ((b->option_count == 0) != (b->options == NULL) || (b->suggestion_count == 0) != (b->suggestions == NULL) ||
        (b->follow_up_count == 0) != (b->follow_ups == NULL)) {
      e.decision[0] = '\0'; /* an array that disagrees with its count: the checks on decision fail */
    }
  }
  if (ev->data != NULL) {
    e.has_data = 1;
    copy_str(e.reason, sizeof e.reason, ev->data->reason);
    e.queue_position = ev->data->queue_position;
    copy_str(e.data_agent, sizeof e.data_agent, ev->data->agent);
  }
  e.thread = pthread_self();
  if (ev->kind == MDG_EVENT_WELCOME && r->client != NULL && r->close_rc_in_callback == 1) {
    r->close_rc_in_callback = mdg_client_close(r->client, 1000);
  }
  pthread_mutex_lock(&r->mu);
  if (r->count < MAX_EVENTS) {
    r->events[r->count++] = e;
  } else {
    ++r->dropped;
  }
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (r->free_in_callback == ev->kind && r->client != NULL) {
    mdg_client *c = r->client;
    r->client = NULL;
    mdg_client_free(c);
    pthread_mutex_lock(&r->mu);
    r->freed = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
  }
}

static void record_log(int level, const char *msg, void *userdata) {
  recorder *r = (recorder *)userdata;
  (void)level;
  (void)msg;
  pthread_mutex_lock(&r->mu);
  ++r->log_lines;
  pthread_mutex_unlock(&r->mu);
}

typedef int (*event_pred)(const recorded_event *e, const void *arg);

/* The index of the first event at or after `from` that matches, or -1 (lock held). */
static int find_locked(recorder *r, int from, event_pred pred, const void *arg) {
  int i;
  for (i = from < 0 ? 0 : from; i < r->count; ++i) {
    if (pred(&r->events[i], arg)) return i;
  }
  return -1;
}

/* Waits up to WAIT_MS for a matching event at or after `from`; its index, or -1. */
static int wait_event(recorder *r, int from, event_pred pred, const void *arg) {
  struct timespec until = deadline_after(WAIT_MS);
  int found;
  pthread_mutex_lock(&r->mu);
  while ((found = find_locked(r, from, pred, arg)) < 0) {
    if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) {
      found = find_locked(r, from, pred, arg);
      break;
    }
  }
  pthread_mutex_unlock(&r->mu);
  return found;
}

/* A copy of event i (taken under the lock). */
static recorded_event event_at(recorder *r, int i) {
  recorded_event e;
  pthread_mutex_lock(&r->mu);
  e = r->events[i];
  pthread_mutex_unlock(&r->mu);
  return e;
}

static int event_count(recorder *r) {
  int n;
  pthread_mutex_lock(&r->mu);
  n = r->count;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static int is_kind(const recorded_event *e, const void *kind) { return e->kind == *(const int *)kind; }
static int is_ack_of(const recorded_event *e, const void *id) {
  return e->kind == MDG_EVENT_ACK && strcmp(e->id, (const char *)id) == 0;
}
static int is_bot_message(const recorded_event *e, const void *unused) {
  (void)unused;
  return e->kind == MDG_EVENT_MESSAGE && strcmp(e->from, "bot") == 0;
}
static int is_event_named(const recorded_event *e, const void *name) {
  return e->kind == MDG_EVENT_EVENT && strcmp(e->event, (const char *)name) == 0;
}
static int is_state(const recorded_event *e, const void *state) {
  return e->kind == MDG_EVENT_STATE && e->state == *(const int *)state;
}

#endif /* MDG_CAPI_TEST_SUPPORT_H */
