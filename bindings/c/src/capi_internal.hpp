// capi_internal.hpp: what every extern "C" function of madoguchi.h shares — the thread-local
// last error, the one guard that keeps C++ exceptions inside the library, argument checks,
// owned output buffers and the bridge from a C log callback to madoguchi::Logger.
#pragma once

#include <madoguchi.h>

#include <madoguchi/log.hpp>
#include <madoguchi/status.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <string_view>

namespace mdg_capi {

// Records `message` as this thread's last error and returns `code`. Never throws: if the
// message cannot be stored, a fixed text is used.
int set_error(int code, std::string_view message) noexcept;
// The MDG_E* code of a Status, recorded with its message.
int set_error(const madoguchi::Status& status) noexcept;
int to_code(madoguchi::ErrorCode code) noexcept;

// Runs the body of an extern "C" function that returns int. Every exception is caught here:
// std::bad_alloc becomes MDG_ENOMEM, anything else MDG_EINTERNAL.
template <class F>
int guard(const char* function, F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return set_error(MDG_ENOMEM, std::string_view(function).empty() ? "out of memory" : function);
  } catch (const std::exception& e) {
    try {
      return set_error(MDG_EINTERNAL, std::string(function) + ": " + e.what());
    } catch (...) {
      return set_error(MDG_EINTERNAL, function);
    }
  } catch (...) {
    return set_error(MDG_EINTERNAL, function);
  }
}

// "mdg_bot_ask: `text` is NULL"
int null_argument(const char* function, const char* name) noexcept;

// The text of a (pointer, size) argument: size MDG_NTS means NUL-terminated; (NULL, 0) is the
// empty text. nullopt (and the error recorded) for NULL with a size, or a size no object can have.
std::optional<std::string_view> text_arg(const char* function, const char* name, const char* text,
                                         std::size_t size) noexcept;

// MDG_OK, or MDG_EINVAL ("<function>: `<name>` is not valid UTF-8 (byte N)") recorded; the
// check is madoguchi::detail::find_invalid_utf8, the bot runtime's too.
int check_utf8(const char* function, const char* name, std::string_view text) noexcept;

// Copies `bytes` into a new mdg_buf (malloc'ed, NUL-terminated). MDG_ENOMEM on failure.
int put_buf(mdg_buf* out, std::string_view bytes) noexcept;

// Checks the `version` field of an options struct against what this library knows.
int check_options_version(const char* function, unsigned int version, unsigned int known) noexcept;

// The start of mdg_client_new and mdg_agent_new: `out` and `opts` given (`*out` set to NULL),
// and `opts` of a version this library knows.
template <typename Handle, typename Options>
int check_new_arguments(const char* function, Handle** out, const Options* opts, unsigned int known) noexcept {
  if (out == nullptr) return null_argument(function, "out");
  *out = nullptr;
  if (opts == nullptr) return null_argument(function, "opts");
  return check_options_version(function, opts->version, known);
}

// What every mdg_*_options_init does: `*opts` = `defaults` (the header's *_INIT) with
// `version`, once the version is one this library knows.
template <typename Options>
int options_init(const char* function, Options* opts, unsigned int version, unsigned int known,
                 const Options& defaults) noexcept {
  if (opts == nullptr) return null_argument(function, "opts");
  if (int rc = check_options_version(function, version, known); rc != MDG_OK) return rc;
  *opts = defaults;
  opts->version = version;
  return MDG_OK;
}

// A Logger that passes lines at or above `level` to a C callback.
madoguchi::Logger make_logger(mdg_log_cb cb, int level, void* userdata);

// A copy of a NUL-terminated string argument, "" for NULL.
inline std::string str_or_empty(const char* s) { return s ? std::string(s) : std::string(); }

}  // namespace mdg_capi
