# Finds LibTorch and the libraries from Debian's archive. Required: LibTorch, yaml-cpp,
# nlohmann-json, CLI11, spdlog/fmt. Optional ones set IRIS_HAVE_<X> and a compile definition.

# A CUDA-enabled LibTorch probes the installed GPUs at configure time unless the architectures
# are given; that probe fails on machines without a GPU. Default to Ampere and Hopper.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
find_package(Torch REQUIRED)
if(DEFINED CAFFE2_USE_CUDA AND CAFFE2_USE_CUDA)
  set(IRIS_TORCH_HAS_CUDA ON)
else()
  set(IRIS_TORCH_HAS_CUDA OFF)
endif()
# TorchConfig looks its libraries up with find_library(... PATHS <prefix>/lib), which searches
# the system folders first: with Debian's libtorch-dev also installed, the wheel build would link
# Debian's libc10 1.13 next to the wheel's libtorch and crash at start. Use the copy inside the
# LibTorch we found whenever it has one.
set(IRIS_TORCH_LIBRARIES "")
foreach(lib ${TORCH_LIBRARIES})
  if(IS_ABSOLUTE "${lib}")
    get_filename_component(lib_name "${lib}" NAME)
    if(EXISTS "${TORCH_INSTALL_PREFIX}/lib/${lib_name}")
      set(lib "${TORCH_INSTALL_PREFIX}/lib/${lib_name}")
    endif()
  endif()
  list(APPEND IRIS_TORCH_LIBRARIES "${lib}")
endforeach()
set(TORCH_LIBRARIES ${IRIS_TORCH_LIBRARIES})

# The PyPI wheel keeps CUDA, cuDNN and NCCL in sibling packages (site-packages/nvidia/*/lib)
# that libtorch_cuda finds through its own RPATH. The linker must resolve them there too, not
# in an older system copy (the CUDA toolkit ships its own libnccl).
file(GLOB IRIS_TORCH_WHEEL_LIB_DIRS LIST_DIRECTORIES true "${TORCH_INSTALL_PREFIX}/../nvidia/*/lib")
foreach(dir ${IRIS_TORCH_WHEEL_LIB_DIRS})
  add_link_options("LINKER:-rpath-link,${dir}")
endforeach()
list(PREPEND CMAKE_BUILD_RPATH ${IRIS_TORCH_WHEEL_LIB_DIRS})

# TorchConfig adds flags like -D_GLIBCXX_USE_CXX11_ABI through TORCH_CXX_FLAGS; keep them global
# so every target (and the precompiled header) agrees on the ABI.
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${TORCH_CXX_FLAGS}")

find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(Threads REQUIRED)

set(IRIS_HAVE_OPENCV OFF)
if(IRIS_WITH_OPENCV)
  # Debian ships OpenCV's CMake package only with the all-modules libopencv-dev; find the four
  # modules we use directly so their -dev packages alone suffice.
  find_path(OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
  set(OpenCV_LIBS "")
  set(OpenCV_FOUND ${OPENCV_INCLUDE_DIR})
  foreach(module core imgproc imgcodecs videoio)
    find_library(OPENCV_${module}_LIBRARY opencv_${module})
    if(OPENCV_${module}_LIBRARY)
      list(APPEND OpenCV_LIBS ${OPENCV_${module}_LIBRARY})
    else()
      set(OpenCV_FOUND OFF)
    endif()
  endforeach()
  set(OpenCV_INCLUDE_DIRS ${OPENCV_INCLUDE_DIR})
  if(OpenCV_FOUND)
    set(IRIS_HAVE_OPENCV ON)
  else()
    message(WARNING "OpenCV not found: image and video files are off (scripts/install-deps.sh installs it)")
  endif()
endif()

set(IRIS_HAVE_NIFTI OFF)
if(IRIS_WITH_NIFTI)
  find_path(NIFTI_INCLUDE_DIR nifti2_io.h PATH_SUFFIXES nifti)
  find_library(NIFTI_LIBRARY NAMES nifti2)
  find_library(ZNZ_LIBRARY NAMES znz)
  if(NIFTI_INCLUDE_DIR AND NIFTI_LIBRARY AND ZNZ_LIBRARY)
    set(IRIS_HAVE_NIFTI ON)
    add_library(iris_nifti INTERFACE)
    target_include_directories(iris_nifti SYSTEM INTERFACE ${NIFTI_INCLUDE_DIR})
    target_link_libraries(iris_nifti INTERFACE ${NIFTI_LIBRARY} ${ZNZ_LIBRARY} z m)
  else()
    message(WARNING "niftilib not found: NIfTI volumes are off (scripts/install-deps.sh installs it)")
  endif()
endif()

set(IRIS_HAVE_PLOT OFF)
if(IRIS_WITH_PLOT)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(PLPLOT QUIET IMPORTED_TARGET plplot-c++)
  endif()
  if(PLPLOT_FOUND)
    set(IRIS_HAVE_PLOT ON)
  else()
    message(WARNING "PLplot not found: reports are written without PNG plots")
  endif()
endif()

set(IRIS_HAVE_SQLITE OFF)
if(IRIS_WITH_SQLITE)
  find_package(SQLite3 QUIET)
  if(SQLite3_FOUND)
    set(IRIS_HAVE_SQLITE ON)
  else()
    message(WARNING "SQLite3 not found: runs.db index is off")
  endif()
endif()

include(IrisDist)

# true/false spellings for generated C++ headers.
foreach(flag IRIS_TORCH_HAS_CUDA IRIS_HAVE_OPENCV IRIS_HAVE_NIFTI IRIS_HAVE_PLOT IRIS_HAVE_SQLITE
             IRIS_HAVE_DIST IRIS_HAVE_NCCL)
  if(${flag})
    set(${flag}_BOOL true)
  else()
    set(${flag}_BOOL false)
  endif()
endforeach()

# LibTorch's include folder carries its own copy of fmt's headers (a newer major version than
# Debian's libfmt, which spdlog is built against). None of LibTorch's public headers include fmt,
# so put a folder holding only Debian's fmt first on the include path: our code then compiles
# against the headers that match the fmt library it links.
get_target_property(IRIS_FMT_INCLUDE fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
list(GET IRIS_FMT_INCLUDE 0 IRIS_FMT_INCLUDE)
set(IRIS_FMT_OVERRIDE ${CMAKE_BINARY_DIR}/fmt-include)
file(MAKE_DIRECTORY ${IRIS_FMT_OVERRIDE})
file(CREATE_LINK ${IRIS_FMT_INCLUDE}/fmt ${IRIS_FMT_OVERRIDE}/fmt SYMBOLIC)
include_directories(BEFORE SYSTEM ${IRIS_FMT_OVERRIDE})
