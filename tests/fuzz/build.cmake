# Configures and builds tests/fuzz with clang (called by the fuzz.build test).
execute_process(COMMAND ${CMAKE_COMMAND} -S ${MDG_FUZZ_SOURCE} -B ${MDG_FUZZ_BINARY}/build -G ${MDG_GENERATOR}
  -DCMAKE_CXX_COMPILER=${MDG_CLANGXX} -DCMAKE_BUILD_TYPE=RelWithDebInfo
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "fuzz configure failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${MDG_FUZZ_BINARY}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "fuzz build failed: ${rc}")
endif()
