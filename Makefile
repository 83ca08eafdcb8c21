# kvgpt Makefile
#   make train_gpt     the trainer (nvcc when found, else g++; the CPU backend is always in)
#   make eval_gpt      the evaluator (perplexity protocols, extrapolation, reversal, Q/K, KV memory)
#   make test          build and run the whole test suite (C++ CPU tests, CUDA tests, Python tests)
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
OMP_OK := $(shell echo '#include <omp.h>\nint main(){return omp_get_max_threads();}' | $(CXX) -fopenmp -x c++ - -o /dev/null 2>/dev/null && echo yes)
ifeq ($(OMP_OK),yes)
  OMP_FLAGS := -fopenmp
else
  $(info note: OpenMP not found: the CPU backend will run on one thread)
  OMP_FLAGS := -I$(CURDIR)/llmc/no_omp
endif

CXXFLAGS ?= -O3 -std=c++17 -Wall -Wno-unused-function $(CPU_ARCH) $(OMP_FLAGS)
HEADERS := $(wildcard llmc/*.h attention/*.h)

ifeq ($(NVCC),)
  $(info note: nvcc not found: building the CPU-only trainer with $(CXX))
  BUILD = $(CXX) $(CXXFLAGS) -x c++
  LINK :=
  CUDA_TESTS :=
else
  NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_GENCODE) -Xcompiler "$(CPU_ARCH) $(OMP_FLAGS) -Wall -Wno-unused-function"
  BUILD = $(NVCC) $(NVCCFLAGS)
  LINK := -lgomp
  CUDA_TESTS := test/test_cuda
endif

.PHONY: all test clean data
all: train_gpt eval_gpt

train_gpt: train_gpt.cu $(HEADERS)
	$(BUILD) train_gpt.cu -o $@ $(LINK)

eval_gpt: eval_gpt.cu $(HEADERS)
	$(BUILD) eval_gpt.cu -o $@ $(LINK)

test/test_kvgpt: test/test_kvgpt.cpp test/testlib.h $(HEADERS)
	$(CXX) $(CXXFLAGS) test/test_kvgpt.cpp -o $@

test/test_cuda: test/test_cuda.cu test/testlib.h $(HEADERS) $(wildcard llmc/*.cuh)
	$(NVCC) $(NVCCFLAGS) test/test_cuda.cu -o $@ -lgomp

test: train_gpt eval_gpt test/test_kvgpt $(CUDA_TESTS)
	PYTHON=$(PYTHON) bash test/run_all.sh

data:
	for t in gpt-neox-20b gpt2; do \
	  $(PYTHON) data/tinyshakespeare.py --tokenizer $$t && \
	  $(PYTHON) data/eval_sets.py wikitext --path data/corpora/wikitext-2/test.txt --tokenizer $$t && \
	  $(PYTHON) data/eval_sets.py reversal --tokenizer $$t || exit 1; done

clean:
	rm -f train_gpt eval_gpt test/test_kvgpt test/test_cuda train_log.jsonl
