# kvgpt Makefile
#   make train_gpt     the trainer (host code by $(CXX); CUDA kernels by nvcc when found, linked in)
#   make eval_gpt      the evaluator (perplexity protocols, extrapolation, reversal, Q/K, KV memory)
#   make sample_gpt    the generator (prompt -> text, batched prefill + KV-cache decode, timings)
#   make test          build and run the whole test suite (C++ CPU tests, CUDA tests, Python tests)
#   make bench         dev/bench_cpu (FMA peak, matmul, per-step training), dev/bench_decode
#                      (prefill tokens/s, decode ms/step against the measured memory bandwidth)
#                      and dev/bench_attend (the decode attention kernel alone, against the FMA peak)
#   make bench_cuda    dev/cuda/bin/*: one microbenchmark per CUDA kernel (needs nvcc; runs on a GPU)
#   make data          re-create the bundled shards and eval sets (they ship in the repo)
#   make clean
# Optional pieces are probed by compiling, never hard-required. Override CPU_ARCH= for a
# portable binary (default: the build machine's CPU); CUDA archs are always named explicitly.

CXX ?= g++
PYTHON ?= python3
CPU_ARCH ?= -march=native
NVCC ?= $(shell command -v nvcc 2>/dev/null || ( test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc ))
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

# probe: does the compiler take the arch flag and OpenMP?
ARCH_OK := $(shell echo 'int main(){return 0;}' | $(CXX) $(CPU_ARCH) -x c++ - -o /dev/null 2>/dev/null && echo yes)
ifneq ($(ARCH_OK),yes)
  $(info note: $(CXX) rejects '$(CPU_ARCH)'; building without it)
  CPU_ARCH :=
endif
OMP_OK := $(shell printf '#include <omp.h>\nint main(){return omp_get_max_threads();}\n' | $(CXX) -fopenmp -x c++ - -o /dev/null 2>/dev/null && echo yes)
ifeq ($(OMP_OK),yes)
  OMP_FLAGS := -fopenmp
else
  $(info note: OpenMP not found: the CPU backend will run on one thread)
  OMP_FLAGS := -I$(CURDIR)/llmc/no_omp
endif

# probe: OpenBLAS (Debian: libopenblas-dev) for the linear layers; NO_BLAS=1 builds without it
ifeq ($(NO_BLAS),)
  BLAS_OK := $(shell printf '#include <cblas.h>\nextern "C" void openblas_set_num_threads(int);\nextern "C" char* openblas_get_corename(void);\nint main(){float a=1,b=1,c=0; openblas_set_num_threads(1); (void)openblas_get_corename(); cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1); return (int)c - 1;}\n' | $(CXX) -x c++ - -lopenblas -o /dev/null 2>/dev/null && echo yes)
endif
ifeq ($(BLAS_OK),yes)
  BLAS_FLAGS := -DKVGPT_OPENBLAS
  BLAS_LIBS := -lopenblas
else
  $(info note: OpenBLAS not found (apt-get install libopenblas-dev): linear layers use the built-in kernel)
endif

# probe: MPI (Debian: libopenmpi-dev openmpi-bin) for data-parallel training (mpirun -np N
# ./train_gpt); only train_gpt links it. NO_MPI=1 builds without it.
ifeq ($(NO_MPI),)
  # (the C API only: OMPI_SKIP_MPICXX keeps the deprecated C++ bindings, and their library, out)
  MPI_CFLAGS := -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX $(shell pkg-config --cflags ompi-c 2>/dev/null || pkg-config --cflags mpich 2>/dev/null)
  MPI_LIBS_FOUND := $(shell pkg-config --libs ompi-c 2>/dev/null || pkg-config --libs mpich 2>/dev/null)
  MPI_OK := $(shell printf '#include <mpi.h>\nint main(int c,char**v){MPI_Init(&c,&v);return MPI_Finalize();}\n' | $(CXX) $(MPI_CFLAGS) -x c++ - $(MPI_LIBS_FOUND) -o /dev/null 2>/dev/null && echo yes)
endif
ifeq ($(MPI_OK),yes)
  MPI_FLAGS := -DKVGPT_MPI $(MPI_CFLAGS)
  MPI_LIBS := $(MPI_LIBS_FOUND)
else
  $(info note: MPI not found (apt-get install libopenmpi-dev openmpi-bin): train_gpt runs as one process)
endif

# -fno-math-errno: sqrtf and friends may then vectorise (AdamW); results are the same IEEE values
CXXFLAGS ?= -O3 -std=c++17 -fno-math-errno -Wall -Wno-unused-function $(CPU_ARCH) $(OMP_FLAGS) $(BLAS_FLAGS)
HEADERS := $(wildcard llmc/*.h attention/*.h)

# CUDA: the backend (llmc/cuda_backend.cu + cuda_kernels.cuh) is built by nvcc for explicit archs
# into build/cuda_backend.o and linked with the static CUDA runtime and cuBLASLt; the host code
# is always built by $(CXX). The same kernels are also built by $(CXX) for the CPU emulator
# (build/cuda_backend_emu.o -> test/test_cuda_emu), so they are tested on machines without a GPU.
CUDA_SRC := llmc/cuda_backend.cu llmc/cuda_backend.h llmc/cuda_kernels.cuh llmc/cuda_matmul.cuh llmc/cuda_common.h
ifeq ($(NVCC),)
  $(info note: nvcc not found: building CPU-only programs with $(CXX))
  CUDA_OBJ :=
  CUDA_FLAGS :=
  CUDA_LIBS :=
  CUDA_TESTS :=
else
  CUDA_HOME ?= $(abspath $(dir $(NVCC))..)
  CUDA_OBJ := build/cuda_backend.o
  CUDA_FLAGS := -DKVGPT_CUDA -I$(CUDA_HOME)/include
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -ldl -lrt -lpthread -Wl,-rpath,$(CUDA_HOME)/lib64
  CUDA_TESTS := test/test_cuda
  # NCCL (the GPU ranks' all-reduce) when the toolkit's libnccl is there and MPI bootstraps it
  ifeq ($(MPI_OK),yes)
    NCCL_OK := $(shell printf '#include <nccl.h>\nint main(){int v; return ncclGetVersion(&v);}\n' | $(CXX) -I$(CUDA_HOME)/include -x c++ - -L$(CUDA_HOME)/lib64 -lnccl -o /dev/null 2>/dev/null && echo yes)
  endif
  ifeq ($(NCCL_OK),yes)
    MPI_FLAGS += -DKVGPT_NCCL
    MPI_LIBS += -lnccl
  endif
endif
NVCC_FLAGS ?= -O3 -std=c++17 $(CUDA_GENCODE)
BUILD = $(CXX) $(CXXFLAGS) $(CUDA_FLAGS)
LINK = $(BLAS_LIBS) $(CUDA_LIBS)

# build/config.stamp holds what the probes found and the flags they chose; it is rewritten only
# when that changes, and every program depends on it, so installing OpenBLAS (or MPI, or
# changing CXXFLAGS) rebuilds what was built without it instead of leaving the old binaries
BUILD_CONFIG := $(CXX) $(CXXFLAGS) $(CUDA_FLAGS) $(MPI_FLAGS) | $(LINK) $(MPI_LIBS) | $(NVCC) $(NVCC_FLAGS)
$(shell mkdir -p build && { [ "$$(cat build/config.stamp 2>/dev/null)" = '$(BUILD_CONFIG)' ] || printf '%s\n' '$(BUILD_CONFIG)' > build/config.stamp; })
STAMP := build/config.stamp

.PHONY: all test clean data bench bench_cuda bench_cuda_emu
all: train_gpt eval_gpt sample_gpt

build/cuda_backend.o: $(CUDA_SRC) $(STAMP)
	@mkdir -p build
	$(NVCC) $(NVCC_FLAGS) -c llmc/cuda_backend.cu -o $@

build/cuda_backend_emu.o: $(CUDA_SRC) llmc/cuda_emu.h $(STAMP)
	@mkdir -p build
	$(CXX) -O2 -std=c++17 -Wall -Wno-unused-function -U_FORTIFY_SOURCE -DKVGPT_CUDA_EMU -x c++ -c llmc/cuda_backend.cu -o $@

train_gpt: train_gpt.cu $(HEADERS) $(CUDA_OBJ) $(STAMP)
	$(BUILD) $(MPI_FLAGS) -x c++ train_gpt.cu -x none $(CUDA_OBJ) -o $@ $(LINK) $(MPI_LIBS)

eval_gpt: eval_gpt.cu $(HEADERS) $(CUDA_OBJ) $(STAMP)
	$(BUILD) -x c++ eval_gpt.cu -x none $(CUDA_OBJ) -o $@ $(LINK)

sample_gpt: sample_gpt.cu $(HEADERS) $(CUDA_OBJ) $(STAMP)
	$(BUILD) -x c++ sample_gpt.cu -x none $(CUDA_OBJ) -o $@ $(LINK)

test/test_kvgpt: test/test_kvgpt.cpp test/testlib.h $(HEADERS) $(STAMP)
	$(CXX) $(CXXFLAGS) test/test_kvgpt.cpp -o $@ $(BLAS_LIBS)

test/logits_dump: test/logits_dump.cpp $(HEADERS) $(STAMP)
	$(CXX) $(CXXFLAGS) test/logits_dump.cpp -o $@ $(BLAS_LIBS)

dev/bench_cpu: dev/bench_cpu.cpp dev/peaks.h $(HEADERS) $(STAMP)
	$(CXX) $(CXXFLAGS) dev/bench_cpu.cpp -o $@ $(BLAS_LIBS)

dev/bench_decode: dev/bench_decode.cpp dev/peaks.h $(HEADERS) $(CUDA_OBJ) $(STAMP)
	$(BUILD) dev/bench_decode.cpp $(CUDA_OBJ) -o $@ $(LINK)

dev/bench_attend: dev/bench_attend.cpp dev/peaks.h $(HEADERS) $(STAMP)
	$(CXX) $(CXXFLAGS) dev/bench_attend.cpp -o $@

bench: dev/bench_cpu dev/bench_decode dev/bench_attend

# dev/cuda: one microbenchmark per kernel (numbered versions), nvcc only
DEV_CUDA := $(patsubst dev/cuda/%.cu,dev/cuda/bin/%,$(wildcard dev/cuda/*.cu))
dev/cuda/bin/%: dev/cuda/%.cu dev/cuda/common.h $(CUDA_SRC)
	@mkdir -p dev/cuda/bin
	$(NVCC) $(NVCC_FLAGS) $< -o $@ -lcublasLt
# the same benchmarks on the CPU emulator: only their correctness checks mean anything there
# (test/run_bench_checks.sh runs them at small sizes in make test)
DEV_CUDA_EMU := $(patsubst dev/cuda/%.cu,dev/cuda/emu/%,$(wildcard dev/cuda/*.cu))
dev/cuda/emu/%: dev/cuda/%.cu dev/cuda/common.h $(CUDA_SRC) llmc/cuda_emu.h
	@mkdir -p dev/cuda/emu
	$(CXX) -O2 -std=c++17 -U_FORTIFY_SOURCE -DKVGPT_CUDA_EMU -x c++ $< -o $@
bench_cuda_emu: $(DEV_CUDA_EMU)
ifeq ($(NVCC),)
bench_cuda:
	@echo "nvcc not found: the dev/cuda benchmarks need the CUDA toolkit"
else
bench_cuda: $(DEV_CUDA)
endif

test/test_cuda: test/test_cuda.cpp test/testlib.h $(HEADERS) $(CUDA_OBJ) $(STAMP)
	$(BUILD) test/test_cuda.cpp $(CUDA_OBJ) -o $@ $(LINK)

test/test_cuda_emu: test/test_cuda.cpp test/testlib.h $(HEADERS) build/cuda_backend_emu.o $(STAMP)
	$(CXX) $(CXXFLAGS) -U_FORTIFY_SOURCE -DKVGPT_CUDA_EMU test/test_cuda.cpp build/cuda_backend_emu.o -o $@ $(BLAS_LIBS)

# the generator with the emulated device (tests only: sample_gpt -d cuda end to end on the CPU)
sample_gpt_emu: sample_gpt.cu $(HEADERS) build/cuda_backend_emu.o $(STAMP)
	$(CXX) $(CXXFLAGS) -U_FORTIFY_SOURCE -DKVGPT_CUDA_EMU -x c++ sample_gpt.cu -x none build/cuda_backend_emu.o -o $@ $(BLAS_LIBS)
# the decode benchmark with the emulated device (tests only: bench_decode -d cuda runs, its figures mean nothing)
dev/bench_decode_emu: dev/bench_decode.cpp dev/peaks.h $(HEADERS) build/cuda_backend_emu.o $(STAMP)
	$(CXX) $(CXXFLAGS) -U_FORTIFY_SOURCE -DKVGPT_CUDA_EMU dev/bench_decode.cpp build/cuda_backend_emu.o -o $@ $(BLAS_LIBS)
# the trainer with the emulated device (tests only: it runs the CUDA path end to end on the CPU)
train_gpt_emu: train_gpt.cu $(HEADERS) build/cuda_backend_emu.o $(STAMP)
	$(CXX) $(CXXFLAGS) $(filter-out -DKVGPT_NCCL,$(MPI_FLAGS)) -U_FORTIFY_SOURCE -DKVGPT_CUDA_EMU -x c++ train_gpt.cu -x none build/cuda_backend_emu.o -o $@ $(BLAS_LIBS) $(filter-out -lnccl,$(MPI_LIBS))

test: train_gpt eval_gpt sample_gpt train_gpt_emu sample_gpt_emu test/test_kvgpt test/logits_dump test/test_cuda_emu bench_cuda_emu dev/bench_decode dev/bench_decode_emu dev/bench_attend $(CUDA_TESTS)
	PYTHON=$(PYTHON) bash test/run_all.sh

data:
	for t in gpt-neox-20b gpt2; do \
	  $(PYTHON) data/tinyshakespeare.py --tokenizer $$t && \
	  $(PYTHON) data/eval_sets.py wikitext --path data/corpora/wikitext-2/test.txt --tokenizer $$t && \
	  $(PYTHON) data/eval_sets.py reversal --tokenizer $$t && \
	  $(PYTHON) data/eval_sets.py book --path data/corpora/pg-1342-pride-and-prejudice.txt --tokenizer $$t || exit 1; done

clean:
	rm -rf dev/cuda/bin dev/cuda/emu train_gpt eval_gpt sample_gpt train_gpt_emu sample_gpt_emu test/test_kvgpt test/logits_dump test/test_cuda test/test_cuda_emu dev/bench_cpu dev/bench_decode dev/bench_decode_emu dev/bench_attend build train_log.jsonl
