// omp.h stand-in for compilers without OpenMP: the pragmas are ignored and we run on one thread.
#pragma once
static inline int omp_get_max_threads() { return 1; }
static inline int omp_get_thread_num() { return 0; }
