# IRIS — the two commands of the README:
#   make demo   install what is missing, build, run the main job end to end
#   make test   install what is missing, build, run the test suite
#
# Variables:
#   TORCH=venv|system   LibTorch from the pinned PyPI wheel in .venv (default, CPU+CUDA) or
#                       Debian's libtorch-dev 1.13 (CPU only, no Python)
#   BUILD_TYPE=Release  CMake build type
#   CTEST_ARGS=...      extra ctest arguments, e.g. CTEST_ARGS='-L core' or '-LE slow'
#   DEMO_OUT=demo-out   where `make demo` writes

TORCH ?= venv
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CTEST_ARGS ?=
DEMO_OUT ?= demo-out

ifeq ($(TORCH),system)
  BUILD_DIR ?= build-system
  TORCH_PREFIX_CMD := true
else ifeq ($(TORCH),venv)
  BUILD_DIR ?= build
  TORCH_PREFIX_CMD := .venv/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)'
else
  $(error TORCH must be venv or system, not '$(TORCH)')
endif

# ccache keyed on paths relative to the checkout, so fresh clones reuse earlier compilations.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true
export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime
# Looked up when configuring, after `deps` has installed ccache on a fresh machine.
CMAKE_LAUNCHER := $$(command -v ccache >/dev/null 2>&1 && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

IRIS := $(BUILD_DIR)/iris

.PHONY: all deps configure build test demo format clean
all: build

deps:
	@scripts/install-deps.sh --torch $(TORCH)

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_LAUNCHER) \
	  -DCMAKE_PREFIX_PATH="$$($(TORCH_PREFIX_CMD))" $(CMAKE_ARGS)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) $(CTEST_ARGS)

demo: build
	$(IRIS) version
	$(IRIS) doctor --runs $(DEMO_OUT)
	$(IRIS) data inspect /usr/share/mricron/templates
	rm -rf $(DEMO_OUT)/iris $(DEMO_OUT)/study
	$(IRIS) demo --out $(DEMO_OUT)

format:
	clang-format -i $$(git ls-files '*.h' '*.cpp')

clean:
	rm -rf $(BUILD_DIR)
