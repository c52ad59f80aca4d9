# madoguchi::store — the hub's message store: the Store interface (madoguchi/store.hpp) and its
# SQLite implementation. include()d from sdk/CMakeLists.txt; every path is relative to this
# file, so it works from any including directory. Needs mdg_set_warnings (MadoguchiWarnings)
# and the madoguchi::common target defined before it.
#
# SQLite is linked PRIVATE; a static mdg_store still needs it at the consumer's link step, so
# the package config (cmake/madoguchi-config.cmake.in) has to find_dependency(SQLite3) too.
include(GNUInstallDirs)
find_package(SQLite3 REQUIRED)

add_library(mdg_store STATIC ${CMAKE_CURRENT_LIST_DIR}/src/store/sqlite_store.cpp)
add_library(madoguchi::store ALIAS mdg_store)
set_target_properties(mdg_store PROPERTIES
  EXPORT_NAME store
  OUTPUT_NAME madoguchi-store
  POSITION_INDEPENDENT_CODE ON)
target_include_directories(mdg_store PUBLIC
  $<BUILD_INTERFACE:${CMAKE_CURRENT_LIST_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_features(mdg_store PUBLIC cxx_std_20)
target_link_libraries(mdg_store
  PUBLIC madoguchi::common
  PRIVATE SQLite::SQLite3)
mdg_set_warnings(mdg_store)

if(MDG_INSTALL)
  install(TARGETS mdg_store EXPORT madoguchi-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES ${CMAKE_CURRENT_LIST_DIR}/include/madoguchi/store.hpp
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/madoguchi)
endif()
