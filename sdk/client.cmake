# madoguchi::client — the live-chat clients (docs/client.md): the visitor's Client
# (madoguchi/client.hpp) and the support agent's AgentClient (madoguchi/agent_client.hpp), both
# on one Connection: libwebsockets on its own network thread, an outbox persisted with
# simdjson + JsonWriter.
# include()d from sdk/CMakeLists.txt after madoguchi::core. Needs mdg_add_library
# (cmake/MadoguchiLibrary.cmake); the including directory's include/ and src/ are the client's
# (sdk/include, sdk/src). It links neither ICU nor MeCab: an app that only chats stays small.
#
# libwebsockets, simdjson and Threads are PRIVATE; a static mdg_client still needs them at the
# consumer's link step, so the package config has to find them too.
include(GNUInstallDirs)
find_package(libwebsockets CONFIG REQUIRED)
find_package(simdjson CONFIG REQUIRED)
find_package(Threads REQUIRED)

# add_library(mdg_client ...), alias madoguchi::client, EXPORT_NAME client, PIC, C++20,
# warnings, and install(TARGETS ... EXPORT madoguchi-targets) when MDG_INSTALL. The header
# is installed with the rest of sdk/include (sdk/CMakeLists.txt).
mdg_add_library(mdg_client NAME client SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/src/client/agent_client.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/client/client.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/client/connection.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/client/state_file.cpp)
target_link_libraries(mdg_client
  PUBLIC madoguchi::core
  PRIVATE websockets_shared simdjson::simdjson Threads::Threads)
