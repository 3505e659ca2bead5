// Comm: the collectives data-parallel training needs, over ranks that each
// hold a full copy of the flat parameter buffer (DESIGN.md: ZeRO shards are
// contiguous ranges of it).
//
//   SingleProcessComm  world 1: every collective is a no-op (or a copy).
//   MpiComm            OpenMPI over MPI_COMM_WORLD, host (CPU) memory.
//   NCCL               needs the CUDA backend: not in this build.
//
// Every rank must call the same collectives in the same order with the same
// sizes. Results are deterministic: the reduction order of a collective is
// fixed by OpenMPI for a given (communicator size, message size), so two runs
// with the same N give the same bits (and for N = 2 a + b == b + a exactly).
// Large buffers go in chunks of 2^28 elements (MPI counts are ints), and the
// ZeRO collectives use no displacements, so models past 2^31 parameters work.
//
// Failure: report_fatal_error_across_ranks (below) is the programs' fatal
// reporter (polaris_train registers it with run_main, src/common/cli.h).
// A failing rank waits up to 5 s for the others to fail too (over a
// communicator of its own, so it never meets a collective the healthy ranks
// are blocked in). When every rank failed with the same line (a bad flag, a
// missing file), rank 0 prints it once and the job exits 1 without an abort;
// different lines are printed once per rank, each naming it. When only some
// ranks failed, each prints "error: rank R: ..." and calls MPI_Abort, so
// the others, maybe blocked in a collective, are ended instead of hanging.
// (mpirun itself still adds a note that a process exited non-zero unless
// started with -q.)
// A rank that hangs instead of failing is the watchdog's (optim/watchdog.h):
// every MPI collective here is marked as a wait (CollectiveWait), and MPI is
// initialised with MPI_THREAD_MULTIPLE for its heartbeat thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace polaris {

struct ShardRange;  // optim/zero.h

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string name() const = 0;

  // In place: data[i] = sum over ranks of data[i].
  virtual void all_reduce_sum(float* data, size_t n) = 0;
  virtual void all_reduce_sum(double* data, size_t n) = 0;
  // In place: data[i] = max over ranks of data[i].
  virtual void all_reduce_max(double* data, size_t n) = 0;
  // in[0, total) on every rank (total = ranges.back().end); out_shard
  // receives the rank-summed ranges[rank()] part (ranges[rank()].size() floats).
  // ranges must tile [0, total) in rank order. MPI: a chunked MPI_Reduce to
  // each owner rank in turn (no MPI_Reduce_scatter: its int total overflows).
  virtual void reduce_scatter_sum(const float* in, float* out_shard,
                                  const std::vector<ShardRange>& ranges) = 0;
  // In place over the whole buffer: every rank's ranges[r] part is copied
  // from rank r to all ranks. MPI: a chunked MPI_Bcast from each owner rank in
  // turn (no MPI_Allgatherv: its int displacements overflow past 2^31).
  virtual void all_gather(float* buffer, const std::vector<ShardRange>& ranges) = 0;
  // Rank r's shard (ranges[r].size() floats) lands at full + ranges[r].begin
  // on rank 0 only; `full` is read only on rank 0 (others may pass null). For
  // checkpoints: only the writer holds the whole buffer. MPI: chunked
  // MPI_Send / MPI_Recv, one owner after another.
  virtual void gather_to_root(const float* shard, float* full,
                              const std::vector<ShardRange>& ranges) = 0;
  virtual void barrier() = 0;

  // Throws Error "ranks disagree on <what> (rank 0: 'a', rank 1: 'b')" on
  // EVERY rank, the same line, when the ranks passed different values (a
  // config check: --batch, ...).
  virtual void require_same(const std::string& what, const std::string& value) = 0;
  void require_same(const std::string& what, uint64_t value) {
    require_same(what, std::to_string(value));
  }
};

class SingleProcessComm : public Comm {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string name() const override { return "none"; }
  void all_reduce_sum(float*, size_t) override {}
  void all_reduce_sum(double*, size_t) override {}
  void all_reduce_max(double*, size_t) override {}
  void reduce_scatter_sum(const float* in, float* out_shard,
                          const std::vector<ShardRange>& ranges) override;
  void all_gather(float*, const std::vector<ShardRange>&) override {}
  void gather_to_root(const float* shard, float* full,
                      const std::vector<ShardRange>& ranges) override;
  void barrier() override {}
  void require_same(const std::string&, const std::string&) override {}
};

// Prints a fatal error line as described above ("Failure"); without an MPI
// job of 2 or more ranks, simply prints it on stderr.
void report_fatal_error_across_ranks(const std::string& line);

// True when this process was started by mpirun (OMPI_COMM_WORLD_SIZE or
// PMI_SIZE is set in the environment).
bool launched_by_mpirun();

// "mpi": MpiComm (MPI_Init on first use; a plain process, not started by
// mpirun, is a world of 1). "none" or "": SingleProcessComm. "nccl": Error
// (needs the CUDA backend, not in this build). Anything else: Error naming
// --comm. MPI is initialised at most once per process.
std::unique_ptr<Comm> make_comm(const std::string& flag_value);

// The sum over ranks of a local value (nullptr comm: the value itself).
// Loops use it for the GLOBAL loss normaliser (total target weight or token
// count over every rank's micro-batches), so each rank's gradient is already
// divided by the global count and the all-reduce SUM gives the mean.
double global_sum(Comm* comm, double value);

}  // namespace polaris
