# The ABI check must catch what it is there for (cmake -P). From the committed baseline it makes
# baselines that the built library breaks (or extends), and runs bindings/c/abi/abi.cmake on each:
#   - a function the baseline has and the library lost           -> must fail: INCOMPATIBLE
#   - a struct field that moved (mdg_bot_options.mecab_dicdir)    -> must fail: INCOMPATIBLE
#   - an enumerator whose value the library changed               -> must fail: INCOMPATIBLE
#   - the same breaks with an older soname (the major was bumped)  -> must pass
#   - a function the library added                                -> must pass (an addition)
#   - a field appended to mdg_event (abidiff.suppr allows it)      -> must pass
# Prints "abi self-test: ok" when all of them behave.
cmake_minimum_required(VERSION 3.20)
foreach(var LIB HEADERS SOURCE_DIR BASELINE ABIDW ABIDIFF WORK SCRIPT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "abi_selftest.cmake: -D${var}=... is missing")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
string(REGEX REPLACE "[.]xml$" ".constants" baseline_constants ${BASELINE})
file(READ ${BASELINE} xml)
file(READ ${baseline_constants} constants)

function(run_check name xml constants expect)
  set(dir ${WORK}/${name})
  file(MAKE_DIRECTORY ${dir})
  file(WRITE ${dir}/baseline.xml "${xml}")
  file(WRITE ${dir}/baseline.constants "${constants}")
  execute_process(
    COMMAND ${CMAKE_COMMAND} -DMODE=check -DLIB=${LIB} -DHEADERS=${HEADERS} -DSOURCE_DIR=${SOURCE_DIR}
      -DBASELINE=${dir}/baseline.xml -DABIDW=${ABIDW} -DABIDIFF=${ABIDIFF} -DWORK=${dir}/work -P ${SCRIPT}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(all "${out}${err}")
  if(expect STREQUAL "fail")
    if(rc EQUAL 0 OR NOT all MATCHES "INCOMPATIBLE")
      message(FATAL_ERROR "abi self-test ${name}: the check should have failed (rc ${rc}):\n${all}")
    endif()
  else()
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "abi self-test ${name}: the check should have passed (rc ${rc}):\n${all}")
    endif()
  endif()
  foreach(needle IN LISTS ARGN)
    string(FIND "${all}" "${needle}" at)
    if(at LESS 0)
      message(FATAL_ERROR "abi self-test ${name}: the report does not mention '${needle}':\n${all}")
    endif()
  endforeach()
  message(STATUS "abi self-test ${name}: rc ${rc} as expected")
endfunction()

# A function that the library no longer exports.
string(REPLACE "  <elf-function-symbols>\n"
  "  <elf-function-symbols>\n    <elf-symbol name='mdg_removed_for_the_test' version='MADOGUCHI_1' is-default-version='yes' type='func-type' binding='global-binding' visibility='default-visibility' is-defined='yes'/>\n"
  removed "${xml}")
if(removed STREQUAL xml)
  message(FATAL_ERROR "abi self-test: the baseline has no <elf-function-symbols>")
endif()
run_check(removed_function "${removed}" "${constants}" fail mdg_removed_for_the_test "bump MDG_VERSION_MAJOR")

# A field at another offset: the struct's layout changed.
string(REGEX REPLACE "layout-offset-in-bits='[0-9]+'>(\n +<var-decl name='mecab_dicdir')"
  "layout-offset-in-bits='96'>\\1" moved "${xml}")
if(moved STREQUAL xml)
  message(FATAL_ERROR "abi self-test: mdg_bot_options.mecab_dicdir is not in the baseline")
endif()
run_check(moved_field "${moved}" "${constants}" fail "mecab_dicdir")

# An error code that changed its value.
string(REPLACE "MDG_EINVAL -1\n" "MDG_EINVAL -100\n" changed_constants "${constants}")
run_check(changed_constant "${xml}" "${changed_constants}" fail "MDG_EINVAL -100 (now MDG_EINVAL -1)")

# Both, against the baseline of an older major version: allowed.
string(REGEX REPLACE "soname='libmadoguchi[.]so[.][0-9]+'" "soname='libmadoguchi.so.0'" old_major "${removed}")
run_check(major_bump "${old_major}" "${changed_constants}" pass "major version changed")

# A function the baseline does not have yet: an addition.
string(REGEX REPLACE "    <elf-symbol name='mdg_client_pending'[^\n]*\n" "" added "${xml}")
string(FIND "${added}" "    <function-decl name='mdg_client_pending'" from)
string(SUBSTRING "${added}" ${from} -1 tail)
string(FIND "${tail}" "</function-decl>\n" to)
math(EXPR to "${to} + 17")
string(SUBSTRING "${tail}" ${to} -1 tail)
string(SUBSTRING "${added}" 0 ${from} head)
set(added "${head}${tail}")
run_check(added_function "${added}" "${constants}" pass "compatible additions" "mdg_client_pending")

# mdg_event without its last field (data): the library appended one, which abidiff.suppr allows.
string(REGEX MATCH "<data-member access='public' layout-offset-in-bits='([0-9]+)'>\n +<var-decl name='data'[^\n]*\n +</data-member>\n +"
  last_member "${xml}")
set(last_offset ${CMAKE_MATCH_1})
if(NOT last_member)
  message(FATAL_ERROR "abi self-test: mdg_event.data is not in the baseline")
endif()
string(REPLACE "${last_member}" "" shorter "${xml}")
string(REGEX REPLACE "(<class-decl name='mdg_event' size-in-bits=')[0-9]+'" "\\1${last_offset}'" shorter "${shorter}")
run_check(appended_field "${shorter}" "${constants}" pass "matches the baseline")

message("abi self-test: ok")
