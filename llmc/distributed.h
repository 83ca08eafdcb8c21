// distributed.h: data-parallel training across processes and nodes, the way llm.c does it. A
// launcher (mpirun with a hostfile, or Slurm's srun) starts one train_gpt per rank; MPI
// bootstraps the ranks and carries the CPU collectives; on GPUs NCCL carries the gradient
// all-reduce. MPI is compiled in when the Makefile finds it (KVGPT_MPI), NCCL when nvcc and
// libnccl are both there (KVGPT_NCCL); neither is ever required.
//
// What the ranks do together (llmc/train.h: train_step_dp, dataloader.h: next_random_batch):
//   - a step is ranks x accum micro-batches, drawn by one seeded RNG that every rank advances
//     the same way; rank r trains micro-batches r, r + N, r + 2N, ... (disjoint windows), so the
//     data order is that of one process with accum N x A, and resumes continue it;
//   - CPU: the gradients are reduce-scattered, each rank updates only its slice of the parameters
//     with only its slice of the AdamW moments (ZeRO-1), then the parameters are all-gathered;
//     GPU: NCCL all-reduces the gradients and every rank runs AdamW on all of them;
//   - rank 0 prints, logs and writes checkpoints (the moments gathered into it); validation
//     batches are shared out and their losses summed in order, so every rank knows the result;
//   - an error on any rank prints that rank's message and aborts every rank (MPI_Abort): nobody
//     waits forever in a collective for a rank that is gone.
// Launched without a launcher, nothing here runs and the program is the one-process trainer.
#pragma once
#include <omp.h>
#include <sched.h>
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>
#include <vector>
#include "utils.h"
#ifdef KVGPT_MPI
#include <mpi.h>
#endif
#if defined(KVGPT_NCCL) && !defined(KVGPT_MPI)
#error "KVGPT_NCCL needs KVGPT_MPI: MPI bootstraps the NCCL communicator"
#endif
#ifdef KVGPT_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

// the world size a launcher announced in the environment (1 when none did)
static int launcher_world_size() {
    for (const char* k : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"}) {
        const char* v = getenv(k);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}
static bool launched_by_mpi() {
    for (const char* k : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK"})
        if (getenv(k)) return true;
    return launcher_world_size() > 1;
}

struct Dist {
    bool on = false;  // launched by an MPI launcher: the data-parallel path runs (with one rank too)
    int rank = 0, size = 1, local_rank = 0, local_size = 1;
    const char* transport = "none";  // what carries the gradients: "MPI", "NCCL", "MPI (CUDA emulator)"
#ifdef KVGPT_NCCL
    ncclComm_t nccl = nullptr;
#endif
};
static Dist g_dist;

#ifdef KVGPT_MPI
#define mpiCheck(call)                                                                                              \
    do {                                                                                                            \
        int rc_ = (call);                                                                                           \
        if (rc_ != MPI_SUCCESS) {                                                                                   \
            char s_[MPI_MAX_ERROR_STRING];                                                                          \
            int n_ = 0;                                                                                             \
            MPI_Error_string(rc_, s_, &n_);                                                                         \
            fail("MPI call failed: %s\n  at %s:%d (%s)", s_, __FILE__, __LINE__, #call);                            \
        }                                                                                                           \
    } while (0)
static void dist_abort_all() { MPI_Abort(MPI_COMM_WORLD, 1); }
static void dist_finalize() {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}
// MPI counts are ints: a vector longer than that would need chunked collectives (not built)
static int mpi_count(size_t n) {
    if (n > (size_t)INT_MAX) fail("internal: %zu elements exceed one MPI collective's int count", n);
    return (int)n;
}
#endif

// Starts MPI when a launcher started this process; call first thing in main. Ranks other than
// 0 print nothing to stdout (their errors still go to stderr, prefixed with their rank).
static Dist& dist_init(int* argc, char*** argv) {
    Dist& d = g_dist;
#ifndef KVGPT_MPI
    (void)argc; (void)argv;
    int n = launcher_world_size();
    if (n > 1)
        fail_hint("install an MPI (Debian: apt-get install libopenmpi-dev openmpi-bin), rebuild with make train_gpt (it finds MPI by "
                  "itself) and launch again; or run a single process without mpirun",
                  "this train_gpt was launched as one of %d ranks, but it was built without MPI: each rank would train alone and "
                  "overwrite the others' checkpoint and log", n);
    return d;
#else
    if (!launched_by_mpi()) return d;
    mpiCheck(MPI_Init(argc, argv));
    atexit(dist_finalize);
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &d.rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &d.size));
    MPI_Comm node;
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d.rank, MPI_INFO_NULL, &node));
    mpiCheck(MPI_Comm_rank(node, &d.local_rank));
    mpiCheck(MPI_Comm_size(node, &d.local_size));
    MPI_Comm_free(&node);
    d.on = true;
    d.transport = "MPI";
    snprintf(g_fail_who, sizeof g_fail_who, "rank %d of %d: ", d.rank, d.size);
    g_fail_hook = dist_abort_all;
    if (d.rank > 0 && !freopen("/dev/null", "w", stdout)) fail("cannot silence stdout: %s", strerror(errno));
    // ranks sharing a node and not pinned by the launcher (--bind-to none) would each start a
    // thread per core: give each its share of the cores instead, unless OMP_NUM_THREADS says
    cpu_set_t mask;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (!getenv("OMP_NUM_THREADS") && d.local_size > 1 && sched_getaffinity(0, sizeof mask, &mask) == 0 && CPU_COUNT(&mask) >= online)
        omp_set_num_threads((int)std::max(1L, online / d.local_size));
    return d;
#endif
}

// true on every rank when every rank passed the same x (settings, data sizes)
static bool dist_all_equal(uint64_t x) {
#ifdef KVGPT_MPI
    if (!g_dist.on) return true;
    std::vector<uint64_t> all(g_dist.size);
    mpiCheck(MPI_Allgather(&x, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD));
    for (uint64_t y : all)
        if (y != all[0]) return false;
#else
    (void)x;
#endif
    return true;
}
// in-place sums across the ranks. The callers give each element one non-zero contributor (the
// rank that computed it), so the sums are exact and the same on every rank.
static void dist_sum(double* x, size_t n) {
#ifdef KVGPT_MPI
    if (g_dist.on) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, x, mpi_count(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
#else
    (void)x; (void)n;
#endif
}
static int dist_max(int x) {
#ifdef KVGPT_MPI
    if (g_dist.on) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
#endif
    return x;
}
// rank r gets in `mine` the element-wise sum over the ranks of full[displs[r] .. + counts[r])
static void dist_reduce_scatter(const float* full, float* mine, const std::vector<int>& counts) {
#ifdef KVGPT_MPI
    mpiCheck(MPI_Reduce_scatter(full, mine, counts.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
#else
    (void)full; (void)mine; (void)counts;
#endif
}
// every rank's slice of `full` copied to every rank (in place)
static void dist_allgather(float* full, const std::vector<int>& counts, const std::vector<int>& displs) {
#ifdef KVGPT_MPI
    mpiCheck(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, full, counts.data(), displs.data(), MPI_FLOAT, MPI_COMM_WORLD));
#else
    (void)full; (void)counts; (void)displs;
#endif
}
// every rank's `mine` into rank 0's `full` (which may be null on the other ranks)
static void dist_gather_to_root(const float* mine, float* full, const std::vector<int>& counts, const std::vector<int>& displs) {
#ifdef KVGPT_MPI
    mpiCheck(MPI_Gatherv(mine, counts[g_dist.rank], MPI_FLOAT, full, counts.data(), displs.data(), MPI_FLOAT, 0, MPI_COMM_WORLD));
#else
    (void)mine; (void)full; (void)counts; (void)displs;
#endif
}

// The replicas must hold the same parameters; a rank whose copy differs (a bug, a bad node) is
// an error before its state is written, not a silently wrong checkpoint
static void dist_check_replicas(const float* params, size_t n, const char* when) {
    if (!g_dist.on) return;
    uint32_t crc = crc32c_update(0, params, n * sizeof(float));
    if (!dist_all_equal(crc))
        fail_hint("report it with the command line: the ranks must apply identical updates",
                  "%s: the ranks' parameters differ (this rank's CRC32C is %08x)", when, crc);
}

#ifdef KVGPT_NCCL
#define ncclCheck(call)                                                                                  \
    do {                                                                                                 \
        ncclResult_t r_ = (call);                                                                        \
        if (r_ != ncclSuccess) fail("NCCL call failed: %s\n  at %s:%d (%s)", ncclGetErrorString(r_), __FILE__, __LINE__, #call); \
    } while (0)
#endif

// GPU ranks: one device per rank on each node, and the NCCL communicator (bootstrapped by MPI)
static void dist_init_device() {
    if (!g_dist.on) return;
#if defined(KVGPT_CUDA_EMU)
    g_dist.transport = "MPI (CUDA emulator: device memory is host memory)";
#elif defined(KVGPT_NCCL)
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < g_dist.local_size)
        fail_hint("start at most one rank per GPU on each node (mpirun -np / --map-by), or train on the CPU with -d cpu",
                  "%d ranks share this node but it has %d CUDA devices", g_dist.local_size, count);
    if (cudaSetDevice(g_dist.local_rank) != cudaSuccess) fail("cannot select CUDA device %d", g_dist.local_rank);
    ncclUniqueId id;
    if (g_dist.rank == 0) ncclCheck(ncclGetUniqueId(&id));
    mpiCheck(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));
    ncclCheck(ncclCommInitRank(&g_dist.nccl, g_dist.size, id, g_dist.rank));
    g_dist.transport = "NCCL";
#else
    fail_hint("install NCCL (the CUDA toolkit's libnccl) and rebuild, or train on the CPU ranks with -d cpu",
              "this train_gpt was built without NCCL: its GPU ranks cannot share gradients");
#endif
}
// sums n floats of device memory across the ranks, in place, queued on the device's stream
static void dist_sum_device(float* dptr, size_t n, void* stream) {
    if (!g_dist.on) return;
#if defined(KVGPT_CUDA_EMU) && defined(KVGPT_MPI)
    (void)stream;  // the emulator's kernels have run when they return
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, dptr, mpi_count(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
#elif defined(KVGPT_NCCL)
    ncclCheck(ncclAllReduce(dptr, dptr, n, ncclFloat, ncclSum, g_dist.nccl, (cudaStream_t)stream));
#else
    (void)dptr; (void)n; (void)stream;
    fail("internal: a device all-reduce in a build without NCCL");
#endif
}
