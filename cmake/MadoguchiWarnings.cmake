# mdg_set_warnings(target): the project's warning set; -Werror with MDG_WERROR (CI turns it on).
function(mdg_set_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE
      -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
      -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual
      $<$<BOOL:${MDG_WERROR}>:-Werror>)
  endif()
endfunction()
