# Distributed training (src/dist) needs three things from the LibTorch in use: the c10d headers,
# the Gloo headers those include (neither the PyPI wheel nor Debian's libtorch-dev ships them;
# Debian's libgloo-dev does, and only the declarations matter since LibTorch carries the
# implementation) and exported ProcessGroupGloo/TCPStore symbols. A small probe program is compiled
# and linked once per build folder; its result is cached.
# Sets IRIS_HAVE_DIST, IRIS_HAVE_NCCL and IRIS_DIST_INCLUDE_DIRS.

set(IRIS_HAVE_DIST OFF)
set(IRIS_HAVE_NCCL OFF)
set(IRIS_DIST_INCLUDE_DIRS "")


if(NOT IRIS_WITH_DIST MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "IRIS_WITH_DIST must be AUTO, ON or OFF, not '${IRIS_WITH_DIST}'")
endif()

if(NOT IRIS_WITH_DIST STREQUAL "OFF")
  find_path(IRIS_GLOO_INCLUDE_DIR gloo/rendezvous/store.h)
  find_file(IRIS_C10D_GLOO_HEADER torch/csrc/distributed/c10d/ProcessGroupGloo.hpp
            PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
  find_library(IRIS_TORCH_CPU_LIBRARY torch_cpu PATHS ${TORCH_INSTALL_PREFIX}/lib NO_DEFAULT_PATH)
  find_library(IRIS_TORCH_CPU_LIBRARY torch_cpu)
  find_library(IRIS_C10_LIBRARY c10 PATHS ${TORCH_INSTALL_PREFIX}/lib NO_DEFAULT_PATH)
  find_library(IRIS_C10_LIBRARY c10)
  set(why "")
  if(NOT IRIS_GLOO_INCLUDE_DIR)
    set(why "Gloo headers not found (Debian: libgloo-dev)")
  elseif(NOT IRIS_C10D_GLOO_HEADER)
    set(why "this LibTorch has no c10d/ProcessGroupGloo.hpp")
  elseif(NOT IRIS_TORCH_CPU_LIBRARY OR NOT IRIS_C10_LIBRARY)
    set(why "libtorch_cpu/libc10 not found")
  else()
    if(NOT DEFINED CACHE{IRIS_DIST_PROBE_OK})
      message(STATUS "Probing c10d (ProcessGroupGloo, TCPStore) in LibTorch ${Torch_VERSION}")
      try_compile(probe_ok ${CMAKE_BINARY_DIR}/dist-probe
        SOURCES ${CMAKE_CURRENT_LIST_DIR}/check_dist.cpp
        CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${TORCH_INCLUDE_DIRS};${IRIS_GLOO_INCLUDE_DIR}"
        COMPILE_DEFINITIONS ${TORCH_CXX_FLAGS} -DUSE_C10D_GLOO
        LINK_LIBRARIES ${IRIS_TORCH_CPU_LIBRARY} ${IRIS_C10_LIBRARY}
        CXX_STANDARD 20
        OUTPUT_VARIABLE probe_output)
      set(IRIS_DIST_PROBE_OK ${probe_ok} CACHE INTERNAL "c10d probe result")
      if(NOT probe_ok)
        file(WRITE ${CMAKE_BINARY_DIR}/dist-probe.log "${probe_output}")
      endif()
    endif()
    if(IRIS_DIST_PROBE_OK)
      set(IRIS_HAVE_DIST ON)
      set(IRIS_DIST_INCLUDE_DIRS ${IRIS_GLOO_INCLUDE_DIR})
    else()
      set(why "the c10d probe did not compile or link (see ${CMAKE_BINARY_DIR}/dist-probe.log)")
    endif()
  endif()
  if(NOT IRIS_HAVE_DIST)
    if(IRIS_WITH_DIST STREQUAL "ON")
      message(FATAL_ERROR "IRIS_WITH_DIST=ON but ${why}")
    endif()
    message(WARNING "distributed training is off: ${why}")
  endif()
endif()

# NCCL: only in CUDA builds of LibTorch that ship ProcessGroupNCCL and its nccl.h.
if(IRIS_HAVE_DIST AND IRIS_TORCH_HAS_CUDA)
  find_file(IRIS_C10D_NCCL_HEADER torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp
            PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
  find_path(IRIS_NCCL_INCLUDE_DIR nccl.h PATHS ${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include)
  find_library(IRIS_TORCH_CUDA_LIBRARY torch_cuda PATHS ${TORCH_INSTALL_PREFIX}/lib NO_DEFAULT_PATH)
  find_library(IRIS_C10_CUDA_LIBRARY c10_cuda PATHS ${TORCH_INSTALL_PREFIX}/lib NO_DEFAULT_PATH)
  if(IRIS_C10D_NCCL_HEADER AND IRIS_NCCL_INCLUDE_DIR AND IRIS_TORCH_CUDA_LIBRARY
     AND IRIS_C10_CUDA_LIBRARY AND CUDAToolkit_INCLUDE_DIRS)
    if(NOT DEFINED CACHE{IRIS_NCCL_PROBE_OK})
      message(STATUS "Probing c10d ProcessGroupNCCL")
      set(rpath_links "")
      foreach(dir ${IRIS_TORCH_WHEEL_LIB_DIRS})
        list(APPEND rpath_links "-Wl,-rpath-link,${dir}")
      endforeach()
      try_compile(probe_ok ${CMAKE_BINARY_DIR}/nccl-probe
        SOURCES ${CMAKE_CURRENT_LIST_DIR}/check_nccl.cpp
        CMAKE_FLAGS
          "-DINCLUDE_DIRECTORIES=${TORCH_INCLUDE_DIRS};${IRIS_NCCL_INCLUDE_DIR};${CUDAToolkit_INCLUDE_DIRS}"
        COMPILE_DEFINITIONS ${TORCH_CXX_FLAGS} -DUSE_C10D_NCCL -DUSE_CUDA
        LINK_OPTIONS ${rpath_links}
        LINK_LIBRARIES ${IRIS_TORCH_CUDA_LIBRARY} ${IRIS_C10_CUDA_LIBRARY} ${IRIS_TORCH_CPU_LIBRARY}
                       ${IRIS_C10_LIBRARY}
        CXX_STANDARD 20
        OUTPUT_VARIABLE probe_output)
      set(IRIS_NCCL_PROBE_OK ${probe_ok} CACHE INTERNAL "ProcessGroupNCCL probe result")
      if(NOT probe_ok)
        file(WRITE ${CMAKE_BINARY_DIR}/nccl-probe.log "${probe_output}")
      endif()
    endif()
    if(IRIS_NCCL_PROBE_OK)
      set(IRIS_HAVE_NCCL ON)
      list(APPEND IRIS_DIST_INCLUDE_DIRS ${IRIS_NCCL_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS})
    endif()
  endif()
endif()
