// capi_compile.cpp: madoguchi.h compiles as C++ too (C++11 and later, with the project's
// warnings: no old-style casts, no shadowing...), and its _INIT macros are valid C++.
#include <madoguchi.h>

#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(std::is_standard_layout<mdg_buf>::value, "mdg_buf is a C struct");
static_assert(std::is_standard_layout<mdg_event>::value, "mdg_event is a C struct");
static_assert(std::is_trivially_copyable<mdg_client_options>::value, "options are plain C structs");
static_assert(sizeof(mdg_message_id) > 64, "a message id has up to 64 characters and a NUL");

namespace {

void on_event(const mdg_event* event, void* userdata) {
  (void)event;
  (void)userdata;
}

void on_log(int level, const char* msg, void* userdata) {
  (void)level;
  (void)msg;
  (void)userdata;
}

}  // namespace

int main() {
  mdg_bot_options bo = MDG_BOT_OPTIONS_INIT;
  mdg_client_options co = MDG_CLIENT_OPTIONS_INIT;
  mdg_buf buf = MDG_BUF_INIT;
  co.on_event = on_event;
  co.log_cb = on_log;
  bo.log_cb = on_log;
  mdg_bot* bot = nullptr;
  int rc = mdg_bot_open_string(&bot, "{", MDG_NTS, MDG_KB_JSON, "x.json", &bo);
  if (rc != MDG_EINVAL && rc != MDG_ENOTSUP) return 1;
  if (bot != nullptr || buf.ptr != nullptr) return 1;
  mdg_client* client = nullptr;
  co.url = "ws://127.0.0.1:1/v1/visitor";
  co.dispatch = MDG_DISPATCH_POLL;
  if (mdg_client_new(&client, &co) != MDG_OK) return 1;
  mdg_client_free(client);
  mdg_buf_dispose(&buf);
  if (std::strcmp(mdg_version(), MDG_VERSION_STRING) != 0) return 1;
  std::printf("madoguchi %s: C++%ld\n", mdg_version(), static_cast<long>(__cplusplus));
  return 0;
}
