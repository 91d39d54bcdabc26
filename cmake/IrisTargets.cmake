# iris_add_library(NAME SOURCES ... DEPS ...): one static library per area. Every target reuses
# one precompiled header for <torch/torch.h>, so the heavy header is parsed once per build.

set(IRIS_PCH_HEADER ${PROJECT_SOURCE_DIR}/src/core/torch_pch.h)

function(iris_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(IRIS_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()

# The target that owns the precompiled header; others reuse it.
function(iris_pch_owner target)
  target_precompile_headers(${target} PRIVATE ${IRIS_PCH_HEADER})
endfunction()

function(iris_use_pch target)
  target_precompile_headers(${target} REUSE_FROM iris_pch)
endfunction()

function(iris_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  iris_warnings(${name})
  iris_use_pch(${name})
endfunction()
