# Polaris engine build.
#
#   make          every program into build/ (CUDA sources too when nvcc exists)
#   make test     install deps, build, run every test; ends "N passed, N failed, N skipped"
#   make demo     the built-in default job: a tiny Qwen3-style model learns addition
#   make demo-rl  pre-train a tiny model on a verifiable task, then GRPO it
#   make bench    CPU benchmarks (tokenizer, ops)
#   make deps     apt-get the Debian packages the build needs, when missing
#   make fuzz     libFuzzer + ASan + UBSan on every parser, FUZZ_SECONDS (600) each
#                 (FUZZ_TARGETS="model_bin verifiers" for some); builds into
#                 build/fuzz/ with clang, leaving the normal build alone. What it
#                 finds goes, minimised, into tests/fuzz_corpus/<target>/, which
#                 make test replays with g++ (fuzz/README.md)
#
# Conventions (add a file, the Makefile finds it):
#   model/ optim/ data/ checkpoint/ src/common/ src/train/ *.cpp -> build/libpolaris.a
#   cuda/*.cu                                      -> build/libpolaris_cuda.a (only with nvcc)
#   src/polaris_*.cpp                              -> build/polaris_*   (one program each)
#   src/bench/bench_*.cpp                          -> build/bench_*
#   tests/test_*.cpp                               -> build/tests/test_* (GoogleTest)
#   tests/cli/*.sh                                 -> shell tests run by tests/run_tests.sh
#   fuzz/fuzz_*.cpp                                -> build/fuzz/fuzz_* (make fuzz), and into
#                                                     build/tests/test_fuzz_corpus (replay)

CXX      ?= g++
NVCC     ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
BUILD    := build
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++17 -fopenmp -Wall -Wextra -Wno-unused-parameter -I. -MMD -MP
LDLIBS   := -lpcre2-8 -lutf8proc -lpthread
# HDF5 (checkpoint/): Debian's serial build
CXXFLAGS += -I/usr/include/hdf5/serial
LDLIBS   += -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5
JOBS     ?= $(shell nproc)
# Quiet build lines ("CXX model/transformer.cpp"); make V=1 shows the commands.
Q        := $(if $(V),,@)

# OpenMPI (optim/comm.cpp): flags from the wrapper compiler, else pkg-config.
# Without mpirun the programs still run as one process and never call MPI.
MPI_CFLAGS := $(shell mpicxx --showme:compile 2>/dev/null || pkg-config --cflags ompi-cxx 2>/dev/null)
MPI_LIBS   := $(shell mpicxx --showme:link 2>/dev/null || pkg-config --libs ompi-cxx 2>/dev/null)
CXXFLAGS   += $(MPI_CFLAGS)
LDLIBS     += $(MPI_LIBS)

LIB_SRCS  := $(wildcard model/*.cpp model/ops/*.cpp optim/*.cpp data/*.cpp checkpoint/*.cpp src/common/*.cpp src/train/*.cpp)
LIB_OBJS  := $(LIB_SRCS:%.cpp=$(BUILD)/obj/%.o)
PROG_SRCS := $(wildcard src/polaris_*.cpp)
PROGS     := $(PROG_SRCS:src/%.cpp=$(BUILD)/%)
BENCH_SRCS:= $(wildcard src/bench/bench_*.cpp)
BENCHES   := $(BENCH_SRCS:src/bench/%.cpp=$(BUILD)/%)
TEST_SRCS := $(wildcard tests/test_*.cpp)
TESTS     := $(TEST_SRCS:tests/%.cpp=$(BUILD)/tests/%)
# Fuzz targets (fuzz/fuzz_<name>.cpp) and their shared part (fuzz/target.cpp).
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.cpp) fuzz/target.cpp

# CUDA: compiled whenever nvcc exists so CI proves the kernels build; the
# programs link it only when the CUDA runtime library is found too
# (POLARIS_HAVE_CUDA). nvcc on PATH may be a wrapper script outside the
# toolkit (/usr/local/bin/nvcc), so the toolkit is the first candidate that
# has cuda_runtime.h: $CUDA_HOME, nvcc's parent, /usr/local/cuda.
CUDA_SRCS := $(wildcard cuda/*.cu)
ifneq ($(NVCC),)
CUDA_HOME := $(firstword $(foreach dir,$(CUDA_HOME) $(patsubst %/bin/nvcc,%,$(NVCC)) /usr/local/cuda,\
               $(if $(wildcard $(dir)/include/cuda_runtime.h),$(dir))))
CUDART_DIR := $(patsubst %/libcudart.so,%,$(firstword $(wildcard \
               $(CUDA_HOME)/lib64/libcudart.so $(CUDA_HOME)/lib/libcudart.so \
               $(CUDA_HOME)/targets/x86_64-linux/lib/libcudart.so)))
CUDA_OBJS := $(CUDA_SRCS:%.cu=$(BUILD)/obj/%.o)
CUDA_KERNELS := $(BUILD)/libpolaris_cuda.a
# CUDA_ARCHS=90a builds for the H100 only (run/gpu_check.sh); the default
# proves every kernel for the A100 (sm_80) and the H100 (sm_90a).
CUDA_ARCHS ?= 80 90a
# Static checks: host and device warnings are errors, and ptxas fails on any
# register spill (--warn-on-spills + --warning-as-error).
NVCCFLAGS := -O3 -std=c++17 -I. -MMD -MP -lineinfo \
             $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
             -Werror all-warnings -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-Werror \
             -Xptxas --warn-on-spills,--warning-as-error
CUBLASLT_LIB := $(firstword $(wildcard $(CUDART_DIR)/libcublasLt.so))
ifneq ($(and $(CUDART_DIR),$(CUBLASLT_LIB)),)
CUDA_LIB  := $(CUDA_KERNELS)
CXXFLAGS  += -DPOLARIS_HAVE_CUDA -I$(CUDA_HOME)/include
LDLIBS    += -L$(CUDART_DIR) -Wl,-rpath,$(CUDART_DIR) -lcublasLt -lcudart
# cuDNN's fused attention (cuda/cudnn_attention.cu) when its header and
# library are there; otherwise that path reports itself unavailable.
ifneq ($(and $(wildcard $(CUDA_HOME)/include/cudnn.h),$(wildcard $(CUDART_DIR)/libcudnn.so)),)
NVCCFLAGS += -DPOLARIS_HAVE_CUDNN
CXXFLAGS  += -DPOLARIS_HAVE_CUDNN
LDLIBS    += -lcudnn
endif
# NCCL (cuda/nccl_comm.cu: --comm nccl) when its header and library are there.
ifneq ($(and $(wildcard $(CUDA_HOME)/include/nccl.h),$(wildcard $(CUDART_DIR)/libnccl.so)),)
NVCCFLAGS += -DPOLARIS_HAVE_NCCL
CXXFLAGS  += -DPOLARIS_HAVE_NCCL
LDLIBS    += -lnccl
endif
endif
endif

# The CUDA library and the main one refer to each other (CudaOps uses the
# library's errors; the programs' backend choice makes CudaOps): one group.
LINK_INPUTS = $(filter %.o,$^) -Wl,--start-group $(filter %.a,$^) -Wl,--end-group

all: $(PROGS) $(BENCHES) $(CUDA_KERNELS)

$(BUILD)/libpolaris.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	@echo "  AR   $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(@D)
	@echo "  CXX  $<"
	$(Q)$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/obj/cuda/%.o: cuda/%.cu
	@mkdir -p $(@D)
	@echo "  NVCC $<"
	$(Q)$(NVCC) $(NVCCFLAGS) -MF $(@:.o=.d) -c $< -o $@

$(CUDA_KERNELS): $(CUDA_OBJS)
	@mkdir -p $(@D)
	@echo "  AR   $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/polaris_%: $(BUILD)/obj/src/polaris_%.o $(CUDA_LIB) $(BUILD)/libpolaris.a
	@echo "  LINK $@"
	$(Q)$(CXX) $(CXXFLAGS) $(LINK_INPUTS) -o $@ $(LDLIBS)

$(BUILD)/bench_%: $(BUILD)/obj/src/bench/bench_%.o $(CUDA_LIB) $(BUILD)/libpolaris.a
	@echo "  LINK $@"
	$(Q)$(CXX) $(CXXFLAGS) $(LINK_INPUTS) -o $@ $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/test_%.o $(CUDA_LIB) $(BUILD)/libpolaris.a
	@mkdir -p $(@D)
	@echo "  LINK $@"
	$(Q)$(CXX) $(CXXFLAGS) $(LINK_INPUTS) -o $@ -lgtest_main -lgtest $(LDLIBS)

# The corpus replay and the verifiers' cost test run the fuzz targets
# themselves, compiled by g++.
$(BUILD)/tests/test_fuzz_corpus $(BUILD)/tests/test_verifier_cost: $(FUZZ_SRCS:%.cpp=$(BUILD)/obj/%.o)

tests-build: $(TESTS) $(PROGS) $(CUDA_KERNELS)

# Debian packages the build and tests need; installed only when one is missing.
DEB_PACKAGES := g++ make libopenmpi-dev openmpi-bin libhdf5-dev nlohmann-json3-dev \
                libpcre2-dev libutf8proc-dev libgtest-dev python3
# $(call apt-install-missing,PACKAGES): a recipe line installing those not installed.
apt-install-missing = @missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
deps:
	$(call apt-install-missing,$(DEB_PACKAGES))

test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) tests-build
	@bash tests/run_tests.sh

demo: deps
	@$(MAKE) --no-print-directory -j$(JOBS) $(BUILD)/polaris_train
	$(BUILD)/polaris_train

demo-rl: deps
	@$(MAKE) --no-print-directory -j$(JOBS) $(BUILD)/polaris_train $(BUILD)/polaris_eval
	bash run/demo_rl.sh

# The reference figures: Hugging Face tokenizers' Node binding (the Rust
# library, prebuilt for linux-x64) from the npm registry, into build/npm.
TOKENIZERS_NPM := tokenizers@0.23.2
bench: deps
	@$(MAKE) --no-print-directory -j$(JOBS) $(BENCHES)
	@if [ ! -f $(BUILD)/npm/node_modules/tokenizers/package.json ] && command -v npm >/dev/null; then \
	  echo "installing $(TOKENIZERS_NPM) (npm) for the reference figures"; \
	  npm install --silent --no-audit --no-fund --prefix $(BUILD)/npm $(TOKENIZERS_NPM) >/dev/null \
	    || echo "npm install failed: the benchmarks print our figures only"; \
	fi
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

# ---- make fuzz ----
# The parsers' library (data/, model/, checkpoint/) compiled again by clang
# with coverage for libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer
# (any UB report aborts), one binary per fuzz/fuzz_<name>.cpp. The verifiers'
# cost bound is scaled by POLARIS_FUZZ_SLOWDOWN for the sanitizers' overhead.
FUZZ_CXX      ?= clang++
FUZZ_SECONDS  ?= 600
FUZZ_BUILD    := $(BUILD)/fuzz
FUZZ_NAMES    := $(patsubst fuzz/fuzz_%.cpp,%,$(wildcard fuzz/fuzz_*.cpp))
FUZZ_TARGETS  ?= $(FUZZ_NAMES)
FUZZ_SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CXXFLAGS := -O1 -g -fno-omit-frame-pointer $(FUZZ_SANITIZE) -std=c++17 -fopenmp -I. \
                 -I/usr/include/hdf5/serial -MMD -MP -DPOLARIS_LIBFUZZER -DPOLARIS_FUZZ_SLOWDOWN=5
FUZZ_LDLIBS   := -lpcre2-8 -lutf8proc -lpthread -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5
FUZZ_LIB_OBJS := $(patsubst %.cpp,$(FUZZ_BUILD)/obj/%.o,\
                   $(wildcard data/*.cpp model/*.cpp model/ops/*.cpp checkpoint/*.cpp))
FUZZ_DEB_PACKAGES := clang libclang-rt-dev libomp-dev

$(FUZZ_BUILD)/obj/%.o: %.cpp
	@mkdir -p $(@D)
	@echo "  FUZZ $<"
	$(Q)$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libpolaris_fuzz.a: $(FUZZ_LIB_OBJS)
	@echo "  AR   $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/fuzz/fuzz_%.o $(FUZZ_BUILD)/obj/fuzz/target.o $(FUZZ_BUILD)/libpolaris_fuzz.a
	@echo "  LINK $@"
	$(Q)$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer $^ -o $@ $(FUZZ_LDLIBS)

fuzz-deps:
	$(call apt-install-missing,$(FUZZ_DEB_PACKAGES))

fuzz: deps fuzz-deps
	@$(MAKE) --no-print-directory -j$(JOBS) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
	@bash fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Per-kernel registers, shared memory and spills as ptxas reports them.
cuda-report:
	@bash run/cuda_report.sh "$(NVCC)" "$(filter-out -MMD -MP,$(NVCCFLAGS))" $(CUDA_SRCS)

clean:
	rm -rf $(BUILD)

.PHONY: all deps test demo demo-rl bench clean tests-build cuda-report fuzz fuzz-deps
.SECONDARY:

# Header dependencies (-MMD -MP) of both the C++ and the nvcc objects.
-include $(shell find $(BUILD)/obj $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
