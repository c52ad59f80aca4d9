# madoguchi::store — the hub's message store: the Store interface (madoguchi/store.hpp) and its
# SQLite implementation. include()d from sdk/CMakeLists.txt; every path is relative to this
# file. Needs mdg_add_library (cmake/MadoguchiLibrary.cmake) and madoguchi::common, and the
# including directory's include/ is the store's (sdk/include).
#
# SQLite is linked PRIVATE; a static mdg_store still needs it at the consumer's link step, so
# the package config (cmake/madoguchi-config.cmake.in) has to find_dependency(SQLite3) too.
include(GNUInstallDirs)
find_package(SQLite3 REQUIRED)

mdg_add_library(mdg_store NAME store SOURCES ${CMAKE_CURRENT_LIST_DIR}/src/store/sqlite_store.cpp)
target_link_libraries(mdg_store
  PUBLIC madoguchi::common
  PRIVATE SQLite::SQLite3)
