# Installs the build tree into a scratch prefix, then configures, builds and runs a
# consumer project against that prefix alone (with the build's own sanitizer flags).
file(REMOVE_RECURSE ${MDG_WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${MDG_BINARY_DIR} --prefix ${MDG_WORK_DIR}/prefix
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${MDG_CONSUMER_SOURCE} -B ${MDG_WORK_DIR}/build -G ${MDG_GENERATOR}
  -DCMAKE_PREFIX_PATH=${MDG_WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_CXX_FLAGS=${MDG_CXX_FLAGS}" "-DCMAKE_C_FLAGS=${MDG_C_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${MDG_LINK_FLAGS}"
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer configure failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${MDG_WORK_DIR}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer build failed: ${rc}")
endif()
execute_process(COMMAND ${MDG_WORK_DIR}/build/consumer ${MDG_KB} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer run failed: ${rc}")
endif()
execute_process(COMMAND ${MDG_WORK_DIR}/build/consumer_c ${MDG_KB} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer_c run failed: ${rc}")
endif()
