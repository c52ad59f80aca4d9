// madoguchi/detail/json_writer.hpp: a minimal streaming JSON writer shared by the modules
// (bot replies, hand-off packages, protocol frames). Not part of the stable API.
// Strings are written as given: callers pass valid UTF-8.
#pragma once

#include <cstdint>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

namespace madoguchi::detail {

class JsonWriter {
 public:
  JsonWriter& begin_object() { sep(); out_ += '{'; first_ = true; return *this; }
  JsonWriter& end_object() { out_ += '}'; first_ = false; return *this; }
  JsonWriter& begin_array() { sep(); out_ += '['; first_ = true; return *this; }
  JsonWriter& end_array() { out_ += ']'; first_ = false; return *this; }
  JsonWriter& key(std::string_view k) {
    sep();
    quote(k);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  JsonWriter& value(std::string_view s) { sep(); quote(s); return *this; }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(bool b) { sep(); out_ += b ? "true" : "false"; return *this; }
  JsonWriter& value(int v) { sep(); out_ += std::to_string(v); return *this; }
  JsonWriter& value(std::size_t v) { sep(); out_ += std::to_string(v); return *this; }
  JsonWriter& value(double v) {
    sep();
    if (!std::isfinite(v)) {  // JSON has no NaN or infinity: the document stays valid
      out_ += "null";
      return *this;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    out_ += buf;
    return *this;
  }
  JsonWriter& value(std::int64_t v) { sep(); out_ += std::to_string(v); return *this; }
  JsonWriter& null() { sep(); out_ += "null"; return *this; }
  // Inserts already-serialized JSON (an object or array produced elsewhere) as a value.
  JsonWriter& raw(std::string_view json) { sep(); out_ += json; return *this; }
  template <typename T>
  JsonWriter& field(std::string_view k, const T& v) { key(k); return value(v); }

  std::string take() { return std::move(out_); }

 private:
  void sep() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_) out_ += ',';
    first_ = false;
  }
  void quote(std::string_view s) {
    out_ += '"';
    for (char c : s) {
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
            out_ += buf;
          } else {
            out_ += c;
          }
      }
    }
    out_ += '"';
  }

  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace madoguchi::detail
