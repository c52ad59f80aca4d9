# The ABI check of libmadoguchi (cmake -P; docs/c-api.md, "ABI stability").
#
#   MODE=check   dumps the built library's ABI and compares it with the committed baseline:
#                fails when the change is incompatible and the major version (the soname)
#                is the same; passes, with a note, when the ABI only grew or the major
#                version was bumped.
#   MODE=update  rewrites the baseline from the built library.
#
# Inputs: LIB (libmadoguchi.so), HEADERS (bindings/c/include), SOURCE_DIR (the repository),
# BASELINE (the committed XML), ABIDW, ABIDIFF (abigail-tools), WORK (a scratch directory).
#
# abidiff runs with abidiff.suppr (next to this script): the fields appended at the end of the
# structs that madoguchi.h says may grow. Whatever else it reports as removed or changed is
# incompatible; only additions are compatible. Because abidiff's suppression also hides a
# field that moved or changed type in those structs when nothing was inserted, the script
# checks them itself: the baseline's fields (name, offset, type) must be the first fields of
# the struct now, in the same order.
#
# Only what madoguchi.h declares is compared: abidw reads the exported functions alone
# (--exported-interfaces-only) and keeps the types defined under HEADERS (--headers-dir,
# --drop-private-types: the opaque handles stay declarations); it writes no source locations,
# compiler directories, parameter names or DT_NEEDED, and the translation units' paths are
# made relative to the repository, so that the dump is the same whichever tree, compiler flags
# or sanitizers built the library (its DWARF for madoguchi.h comes from the -g that
# bindings/c/CMakeLists.txt always adds).
#
# Constants are not in the DWARF of a C library (enumerators used only as values are not
# emitted), so the baseline has a second part, <BASELINE without .xml>.constants: every
# enumerator of madoguchi.h and every MDG_FEATURE_* bit with its value. A constant that changes its value or disappears is
# an incompatible change too; a new one is an addition. Every enumerator in madoguchi.h is
# written with an explicit value.
cmake_minimum_required(VERSION 3.20)

foreach(var LIB HEADERS SOURCE_DIR BASELINE ABIDW ABIDIFF WORK MODE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "abi.cmake: -D${var}=... is missing")
  endif()
endforeach()

set(update_command "cmake --build --preset dev --target mdg_c_abi_baseline")

file(MAKE_DIRECTORY ${WORK})
set(current ${WORK}/current.abi.xml)
execute_process(
  COMMAND ${ABIDW}
    --headers-dir ${HEADERS}
    --drop-private-types
    --drop-undefined-syms
    --no-corpus-path
    --no-comp-dir-path
    --no-show-locs
    --no-elf-needed
    --no-parameter-names
    --exported-interfaces-only
    --type-id-style hash
    --out-file ${current}.raw
    ${LIB}
  RESULT_VARIABLE rc
  ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "abidw failed (${rc}) on ${LIB}:\n${err}")
endif()
file(READ ${current}.raw dump)
string(REPLACE " path='${SOURCE_DIR}/" " path='" dump "${dump}")
file(WRITE ${current} "${dump}")

# The enumerators of madoguchi.h: "NAME VALUE" lines, sorted.
file(STRINGS ${HEADERS}/madoguchi.h enum_lines REGEX "^[ ]+MDG_[A-Z0-9_]+[ ]*(=|,|$)")
set(constants "")
foreach(line IN LISTS enum_lines)
  if(NOT line MATCHES "^[ ]+(MDG_[A-Z0-9_]+)[ ]*=[ ]*(-?[0-9]+)")
    message(FATAL_ERROR "madoguchi.h: write the value of every enumerator (an ABI constant): ${line}")
  endif()
  list(APPEND constants "${CMAKE_MATCH_1} ${CMAKE_MATCH_2}")
endforeach()
# ... and the feature bits.
file(STRINGS ${HEADERS}/madoguchi.h define_lines REGEX "^#define MDG_FEATURE_[A-Z0-9_]+ ")
foreach(line IN LISTS define_lines)
  if(NOT line MATCHES "^#define (MDG_FEATURE_[A-Z0-9_]+) (0x[0-9a-fA-F]+)u")
    message(FATAL_ERROR "madoguchi.h: a feature bit is written 0x...u: ${line}")
  endif()
  list(APPEND constants "${CMAKE_MATCH_1} ${CMAKE_MATCH_2}")
endforeach()
list(SORT constants)
string(REPLACE ";" "\n" constants_text "${constants}")
string(REGEX REPLACE "[.]xml$" ".constants" baseline_constants ${BASELINE})
file(WRITE ${WORK}/current.constants "${constants_text}\n")

# The soname of a dump: libmadoguchi.so.<major>.
function(read_soname file out)
  file(STRINGS ${file} line LIMIT_COUNT 1 REGEX "soname='[^']*'")
  string(REGEX MATCH "soname='([^']*)'" _ "${line}")
  set(${out} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()
read_soname(${current} current_soname)
if(current_soname STREQUAL "")
  message(FATAL_ERROR "abidw wrote no soname for ${LIB}: was it linked with one?")
endif()

if(MODE STREQUAL "update")
  file(COPY_FILE ${current} ${BASELINE} ONLY_IF_DIFFERENT)
  file(COPY_FILE ${WORK}/current.constants ${baseline_constants} ONLY_IF_DIFFERENT)
  message(STATUS "ABI baseline of ${current_soname} written to ${BASELINE} and ${baseline_constants}; commit them")
  return()
endif()

if(NOT EXISTS ${BASELINE} OR NOT EXISTS ${baseline_constants})
  message(FATAL_ERROR "no ABI baseline at ${BASELINE}: write one with `${update_command}` and commit it")
endif()
read_soname(${BASELINE} baseline_soname)
if(NOT current_soname STREQUAL baseline_soname)
  message(STATUS
    "abi: the major version changed (${baseline_soname} -> ${current_soname}): incompatible changes "
    "are allowed. Write the new baseline with `${update_command}` and commit it.")
  return()
endif()

# Constants: each one of the baseline must still be there with the same value.
file(STRINGS ${baseline_constants} old_constants)
set(constant_breaks "")
set(constant_additions "")
foreach(entry IN LISTS old_constants)
  if(NOT entry IN_LIST constants)
    string(REGEX REPLACE " .*" "" name "${entry}")
    set(now "gone")
    foreach(c IN LISTS constants)
      if(c MATCHES "^${name} ")
        set(now "now ${c}")
      endif()
    endforeach()
    string(APPEND constant_breaks "  ${entry} (${now})\n")
  endif()
endforeach()
foreach(entry IN LISTS constants)
  if(NOT entry IN_LIST old_constants)
    string(APPEND constant_additions "  ${entry}\n")
  endif()
endforeach()

# The fields of a struct in a dump, as "offset name type-id" items, in order.
function(struct_fields dump name out)
  string(FIND "${dump}" "<class-decl name='${name}' size-in-bits=" at)
  if(at LESS 0)
    set(${out} "" PARENT_SCOPE)
    return()
  endif()
  string(SUBSTRING "${dump}" ${at} -1 rest)
  string(FIND "${rest}" "</class-decl>" end)
  string(SUBSTRING "${rest}" 0 ${end} body)
  string(REGEX MATCHALL "layout-offset-in-bits='[0-9]+'>[\n ]+<var-decl name='[^']+' type-id='[^']+'" members "${body}")
  set(fields "")
  foreach(m IN LISTS members)
    string(REGEX REPLACE "layout-offset-in-bits='([0-9]+)'>[\n ]+<var-decl name='([^']+)' type-id='([^']+)'"
      "\\1 \\2 \\3" item "${m}")
    list(APPEND fields "${item}")
  endforeach()
  set(${out} "${fields}" PARENT_SCOPE)
endfunction()

file(READ ${BASELINE} baseline_dump)
set(struct_breaks "")
foreach(name mdg_bot_options mdg_client_options mdg_event mdg_candidate mdg_option mdg_bot_info mdg_event_data)
  struct_fields("${baseline_dump}" ${name} old_fields)
  struct_fields("${dump}" ${name} new_fields)
  list(LENGTH old_fields n_old)
  list(LENGTH new_fields n_new)
  if(n_new EQUAL 0)
    continue()  # declared only in this library's DWARF (its code never reads the fields)
  endif()
  if(n_new LESS n_old)
    string(APPEND struct_breaks "  ${name}: ${n_old} field(s) in the baseline, ${n_new} now\n")
    continue()
  endif()
  if(n_old GREATER 0)
    list(SUBLIST new_fields 0 ${n_old} prefix)
    if(NOT prefix STREQUAL old_fields)
      string(REPLACE ";" ", " was "${old_fields}")
      string(REPLACE ";" ", " now "${prefix}")
      string(APPEND struct_breaks "  ${name}: fields changed (offset name type):\n    was: ${was}\n    now: ${now}\n")
    endif()
  endif()
endforeach()

get_filename_component(script_dir ${CMAKE_CURRENT_LIST_FILE} DIRECTORY)
execute_process(
  COMMAND ${ABIDIFF} --no-corpus-path --no-show-locs --suppressions ${script_dir}/abidiff.suppr
    ${BASELINE} ${current}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE report
  ERROR_VARIABLE err)
# abidiff's exit status is a bit set: 1 error, 2 usage error, 4 the ABI changed,
# 8 the change is incompatible.
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "abidiff did not run: ${rc}\n${err}")
endif()
math(EXPR error_bits "${rc} & 3")
math(EXPR changed "${rc} & 4")
math(EXPR incompatible "${rc} & 8")
if(error_bits)
  message(FATAL_ERROR "abidiff failed (${rc}):\n${err}\n${report}")
endif()
# abidiff calls only a few changes "incompatible" (bit 8: a removed symbol); a changed
# function or type (a field inserted or moved, a parameter changed) only sets "changed" (bit 4),
# as do additions. So any removed or changed function, variable or symbol in the summary counts
# as incompatible too; what the suppressions allow (abidiff.suppr) is not counted.
string(REGEX MATCHALL "([0-9]+) Removed, ([0-9]+) Changed" removed_changed "${report}")
foreach(m IN LISTS removed_changed)
  if(NOT m MATCHES "^0 Removed, 0 Changed$")
    set(incompatible 1)
  endif()
endforeach()
string(REGEX MATCHALL "symbols? changes summary: ([0-9]+) Removed" removed_symbols "${report}")
foreach(m IN LISTS removed_symbols)
  if(NOT m MATCHES ": 0 Removed$")
    set(incompatible 1)
  endif()
endforeach()
if(struct_breaks)
  set(incompatible 1)
  string(APPEND report "Structs that may only grow at the end changed otherwise:\n${struct_breaks}")
endif()
if(constant_breaks)
  set(incompatible 1)
  string(APPEND report "Constants of madoguchi.h changed or removed:\n${constant_breaks}")
endif()
if(constant_additions)
  set(changed 1)
  string(APPEND report "Constants added to madoguchi.h:\n${constant_additions}")
endif()
if(incompatible)
  message(FATAL_ERROR
    "abi: INCOMPATIBLE change to the C ABI of ${current_soname} without a major version bump.\n"
    "${report}\n"
    "Programs built against ${baseline_soname} would break. Either undo the change (add a new "
    "function or a _v2 instead; append fields to option structs with a new *_OPTIONS_VERSION), "
    "or bump MDG_VERSION_MAJOR in bindings/c/include/madoguchi.h (a new soname) and then write "
    "the new baseline with `${update_command}`.")
endif()
if(changed)
  message(STATUS
    "abi: compatible additions to ${current_soname}:\n${report}\n"
    "Bump MDG_VERSION_MINOR if this is a release, and record them in the baseline with "
    "`${update_command}`, so that later changes are checked against them too.")
  return()
endif()
message(STATUS "abi: ${current_soname} matches the baseline")
