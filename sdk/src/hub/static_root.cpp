#include "hub/static_root.hpp"

#include <system_error>

namespace madoguchi::hub::detail {

namespace fs = std::filesystem;

Result<StaticRoot> StaticRoot::open(const std::string& dir) {
  std::error_code ec;
  fs::path root = fs::canonical(dir, ec);
  if (ec) return invalid_argument("static: " + dir + ": " + ec.message() + " (the folder of the web pages to serve)");
  if (!fs::is_directory(root, ec)) return invalid_argument("static: " + dir + ": not a folder");
  return StaticRoot(fs::path(dir));
}

bool StaticRoot::allows(std::string_view uri) const {
  std::error_code ec;
  const fs::path root = fs::canonical(dir_, ec);
  if (ec) return true;  // the folder is gone: libwebsockets finds nothing either
  fs::path path = dir_ / fs::path(std::string(uri)).relative_path();
  // A folder is served by its index.html (the mount's default page).
  if (uri.empty() || uri.back() == '/' || fs::is_directory(path, ec)) path /= "index.html";
  const fs::path real = fs::canonical(path, ec);
  if (ec) return true;  // nothing there (or a dangling link): a 404 either way
  const fs::path inside = real.lexically_relative(root);
  return !inside.empty() && *inside.begin() != "..";
}

}  // namespace madoguchi::hub::detail
