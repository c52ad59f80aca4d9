# mdg_add_library(<target> NAME <name> SOURCES <files>...): a madoguchi library the way every
# module builds one — alias madoguchi::<name>, file libmadoguchi-<name>, the calling
# directory's include/ (public) and src/ (private), C++20, the project's warnings, and
# installed into the madoguchi-targets export. Link libraries and definitions stay with the caller.
function(mdg_add_library target)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES" ${ARGN})
  add_library(${target} ${ARG_SOURCES})
  add_library(madoguchi::${ARG_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES
    EXPORT_NAME ${ARG_NAME}
    OUTPUT_NAME madoguchi-${ARG_NAME}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}
    POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${target}
    PUBLIC
      $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_compile_features(${target} PUBLIC cxx_std_20)
  mdg_set_warnings(${target})
  if(MDG_INSTALL)
    install(TARGETS ${target} EXPORT madoguchi-targets
      ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
      LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
      RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endfunction()
