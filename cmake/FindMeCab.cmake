# FindMeCab: MeCab ships neither a pkg-config nor a CMake file on Debian.
# Defines MeCab::MeCab and MECAB_DEFAULT_DICDIR (the dictionary the project is tested with).
find_path(MECAB_INCLUDE_DIR mecab.h)
find_library(MECAB_LIBRARY NAMES mecab)
set(MECAB_DEFAULT_DICDIR "/var/lib/mecab/dic/ipadic-utf8" CACHE PATH
    "MeCab system dictionary used when the host names none")
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MeCab REQUIRED_VARS MECAB_LIBRARY MECAB_INCLUDE_DIR)
if(MeCab_FOUND AND NOT TARGET MeCab::MeCab)
  add_library(MeCab::MeCab UNKNOWN IMPORTED)
  set_target_properties(MeCab::MeCab PROPERTIES
    IMPORTED_LOCATION "${MECAB_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${MECAB_INCLUDE_DIR}")
endif()
mark_as_advanced(MECAB_INCLUDE_DIR MECAB_LIBRARY)
