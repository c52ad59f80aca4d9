// capi_common.cpp: versions, errors, buffers and logging of the C API (madoguchi.h).
#include "capi_internal.hpp"

#include <madoguchi/detail/utf8.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace mdg_capi {
namespace {

struct LastError {
  std::string message;
  const char* fallback = nullptr;  // a static text when `message` could not be stored
  int code = MDG_OK;
};

LastError& last_error() noexcept {
  thread_local LastError error;
  return error;
}

}  // namespace

int set_error(int code, std::string_view message) noexcept {
  LastError& e = last_error();
  e.code = code;
  try {
    // A message may quote what the caller passed (a key, a path): bytes that are not UTF-8
    // become U+FFFD, so that the message stays the UTF-8 the header promises.
    e.message.clear();
    for (std::string_view rest = message; !rest.empty();) {
      const std::size_t bad = madoguchi::detail::find_invalid_utf8(rest);
      if (bad == std::string_view::npos) {
        e.message.append(rest);
        break;
      }
      e.message.append(rest.substr(0, bad)).append("\xEF\xBF\xBD");
      rest.remove_prefix(bad + 1);
    }
    e.fallback = nullptr;
  } catch (...) {
    e.fallback = mdg_strerror(code);
  }
  return code;
}

int to_code(madoguchi::ErrorCode code) noexcept {
  using madoguchi::ErrorCode;
  switch (code) {
    case ErrorCode::kOk: return MDG_OK;
    case ErrorCode::kInvalidArgument: return MDG_EINVAL;
    case ErrorCode::kNotFound: return MDG_ENOTFOUND;
    case ErrorCode::kUnavailable: return MDG_EUNAVAILABLE;
    case ErrorCode::kDeadlineExceeded: return MDG_ETIMEDOUT;
    case ErrorCode::kClosed: return MDG_ECLOSED;
    case ErrorCode::kInternal: return MDG_EINTERNAL;
    case ErrorCode::kResourceExhausted: return MDG_ELIMIT;
  }
  return MDG_EINTERNAL;
}

int set_error(const madoguchi::Status& status) noexcept {
  int code = to_code(status.code());
  if (code == MDG_OK) return MDG_OK;
  if (status.message().empty()) return set_error(code, mdg_strerror(code));
  return set_error(code, status.message());
}

int null_argument(const char* function, const char* name) noexcept {
  try {
    return set_error(MDG_EINVAL, std::string(function) + ": `" + name + "` is NULL");
  } catch (...) {
    return set_error(MDG_EINVAL, "an argument is NULL");
  }
}

std::optional<std::string_view> text_arg(const char* function, const char* name, const char* text,
                                         std::size_t size) noexcept {
  if (text == nullptr) {
    if (size == 0) return std::string_view();
    null_argument(function, name);
    return std::nullopt;
  }
  if (size == MDG_NTS) return std::string_view(text);
  if (size > static_cast<std::size_t>(PTRDIFF_MAX)) {
    try {
      set_error(MDG_EINVAL, std::string(function) + ": the size of `" + name + "` (" + std::to_string(size) +
                                ") is larger than any object can be");
    } catch (...) {
      set_error(MDG_EINVAL, "a size is larger than any object can be");
    }
    return std::nullopt;
  }
  return std::string_view(text, size);
}

int check_utf8(const char* function, const char* name, std::string_view text) noexcept {
  std::size_t at = madoguchi::detail::find_invalid_utf8(text);
  if (at == std::string_view::npos) return MDG_OK;
  try {
    return set_error(MDG_EINVAL, std::string(function) + ": `" + name + "` is not valid UTF-8 (byte " +
                                     std::to_string(at) + ")");
  } catch (...) {
    return set_error(MDG_EINVAL, "a string is not valid UTF-8");
  }
}

int put_buf(mdg_buf* out, std::string_view bytes) noexcept {
  auto* p = static_cast<char*>(std::malloc(bytes.size() + 1));
  if (p == nullptr) return set_error(MDG_ENOMEM, "out of memory for a result buffer");
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
  p[bytes.size()] = '\0';
  out->ptr = p;
  out->size = bytes.size();
  return MDG_OK;
}

int check_options_version(const char* function, unsigned int version, unsigned int known) noexcept {
  if (version >= 1 && version <= known) return MDG_OK;
  try {
    if (version == 0) {
      return set_error(MDG_EVERSION, std::string(function) +
                                         ": the options' `version` is 0 (start from the _INIT macro or call _options_init())");
    }
    return set_error(MDG_EVERSION, std::string(function) + ": options version " + std::to_string(version) +
                                       " is newer than this library knows (" + std::to_string(known) +
                                       "): the program was built with a newer madoguchi.h");
  } catch (...) {
    return set_error(MDG_EVERSION, "unknown options version");
  }
}

madoguchi::Logger make_logger(mdg_log_cb cb, int level, void* userdata) {
  madoguchi::Logger logger;
  if (cb == nullptr || level >= MDG_LOG_OFF) return logger;
  logger.min_level = level <= MDG_LOG_DEBUG ? madoguchi::LogLevel::kDebug : static_cast<madoguchi::LogLevel>(level);
  logger.sink = [cb, userdata](madoguchi::LogLevel lvl, std::string_view message) {
    try {
      std::string line(message);
      cb(static_cast<int>(lvl), line.c_str(), userdata);
    } catch (...) {
      // A line that cannot be copied is dropped: logging never fails the caller.
    }
  };
  return logger;
}

}  // namespace mdg_capi

using namespace mdg_capi;

extern "C" {

MDG_EXTERN(const char*) mdg_version(void) { return MDG_VERSION_STRING; }

MDG_EXTERN(unsigned int) mdg_version_number(void) { return MDG_VERSION_NUMBER; }

MDG_EXTERN(const char*) mdg_error_last(void) {
  const LastError& e = last_error();
  if (e.code == MDG_OK) return "";
  return e.fallback != nullptr ? e.fallback : e.message.c_str();
}

MDG_EXTERN(int) mdg_error_last_code(void) { return last_error().code; }

MDG_EXTERN(void) mdg_error_clear(void) {
  LastError& e = last_error();
  e.code = MDG_OK;
  e.fallback = nullptr;
  e.message.clear();
}

MDG_EXTERN(const char*) mdg_strerror(int code) {
  switch (code) {
    case MDG_OK: return "ok";
    case MDG_EINVAL: return "invalid argument";
    case MDG_ENOTFOUND: return "not found";
    case MDG_EUNAVAILABLE: return "unavailable";
    case MDG_ETIMEDOUT: return "deadline exceeded";
    case MDG_ECLOSED: return "closed";
    case MDG_EINTERNAL: return "internal error";
    case MDG_ENOMEM: return "out of memory";
    case MDG_ELIMIT: return "size limit exceeded";
    case MDG_EBUSY: return "busy";
    case MDG_ENOTSUP: return "not supported by this build";
    case MDG_EVERSION: return "unknown options version";
    default: return "unknown error";
  }
}

// One definition for both builds (with the bot, and chat-only): the names are bot::to_string's.
MDG_EXTERN(const char*) mdg_decision_name(int decision) {
  switch (decision) {
    case MDG_DECISION_ANSWER: return "answer";
    case MDG_DECISION_REPLY: return "reply";
    case MDG_DECISION_CLARIFY: return "clarify";
    case MDG_DECISION_HANDOFF: return "handoff";
    case MDG_DECISION_FALLBACK: return "fallback";
    default: return "unknown";
  }
}

MDG_EXTERN(void) mdg_buf_dispose(mdg_buf* buf) {
  if (buf == nullptr) return;
  std::free(buf->ptr);
  buf->ptr = nullptr;
  buf->size = 0;
}

}  // extern "C"
