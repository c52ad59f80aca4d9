# python.binding (cmake -P): installs bindings/python the way a user does, offline, into a fresh
# virtual environment, then runs its tests with that environment's python.
#
#   python3 -m venv --system-site-packages --without-pip VENV   (Debian's python3: PEP 668 forbids
#                                                                installing into it; the venv
#                                                                sees its pytest and websockets)
#   VENV/bin/python -m pip install --no-index bindings/python    (Debian's pip; the in-tree build
#                                                                backend needs no download)
#   VENV/bin/python -m pytest tests/bindings/python
#
# Inputs: PYTHON (/usr/bin/python3), SOURCE_DIR, VENV, LIBRARY (libmadoguchi.so), HUB
# (madoguchi-hub), C_CLIENT (samples/c-client), PRELOAD (the ASan runtime for a sanitized
# library, or empty).
cmake_minimum_required(VERSION 3.20)
foreach(var PYTHON SOURCE_DIR VENV LIBRARY HUB C_CLIENT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake: -D${var}=... is missing")
  endif()
endforeach()

file(REMOVE_RECURSE ${VENV})
execute_process(COMMAND ${PYTHON} -m venv --system-site-packages --without-pip ${VENV} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "python -m venv failed (${rc}); Debian needs python3-venv")
endif()

set(pip_env PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1)
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env ${pip_env}
    ${VENV}/bin/python -m pip install --no-index --quiet ${SOURCE_DIR}/bindings/python
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "pip install bindings/python failed (${rc}); Debian needs python3-pip")
endif()
message(STATUS "installed bindings/python into ${VENV}")

set(test_env
  MADOGUCHI_LIBRARY=${LIBRARY}
  MADOGUCHI_HUB=${HUB}
  MADOGUCHI_C_CLIENT=${C_CLIENT}
  MADOGUCHI_SOURCE_DIR=${SOURCE_DIR}
  PYTHONDONTWRITEBYTECODE=1)
if(PRELOAD)
  list(APPEND test_env LD_PRELOAD=${PRELOAD} ASAN_OPTIONS=detect_leaks=0)
endif()
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env ${test_env}
    ${VENV}/bin/python -m pytest -q -p no:cacheprovider -o console_output_style=classic
      ${SOURCE_DIR}/tests/bindings/python
  WORKING_DIRECTORY ${VENV}
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the Python binding's tests failed (${rc})")
endif()
