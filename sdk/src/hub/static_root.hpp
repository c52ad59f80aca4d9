// The folder of static files (private): which request paths may be served from it.
#pragma once

#include <madoguchi/status.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace madoguchi::hub::detail {

// libwebsockets serves the files of the hub's static_dir; a request's path is first checked
// here. A path that resolves, symbolic links followed, to a file outside the folder is
// refused, so that a link put in the folder (by whoever deploys the pages) cannot publish the
// store, its secret or anything else the hub's user may read. Links that stay inside the
// folder are served. The folder itself is resolved again for each request, as libwebsockets
// opens files through it: static_dir may be a link that a deploy switches to a new release.
class StaticRoot {
 public:
  // The folder must exist; the error says which one and why it cannot be used.
  static Result<StaticRoot> open(const std::string& dir);

  // `uri`: the request's path as libwebsockets decoded and cleaned it ("/", "/widget/app.js").
  // True also when no file is there: libwebsockets then answers 404 itself.
  bool allows(std::string_view uri) const;

 private:
  explicit StaticRoot(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;  // as configured
};

}  // namespace madoguchi::hub::detail
