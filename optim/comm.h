// Comm: the collectives data-parallel training needs, over ranks that each
// hold a full copy of the flat parameter buffer (DESIGN.md: ZeRO shards are
// contiguous ranges of it).
//
//   SingleProcessComm  world 1: every collective is a no-op (or a copy).
//   MpiComm            OpenMPI over MPI_COMM_WORLD, host (CPU) memory.
//   NcclComm           (cuda/nccl_comm.h) NCCL on device buffers for the
//                      float collectives, on its own CUDA stream; the rest
//                      (doubles, checks, checkpoint gathers) over MPI.
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
class Ops;          // model/ops.h

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
  // In place over the whole buffer of elements of `element_bytes` bytes
  // (2: the bf16 weights; 4: fp32): every rank's ranges[r] part (in
  // elements) is copied from rank r to all ranks. ZeRO-1/2 gathers the
  // weights each owner updated this way, 2 bytes a parameter on the wire
  // with bf16 weights. MPI: a chunked MPI_Bcast of bytes from each owner
  // rank in turn (no MPI_Allgatherv: its int counts and displacements
  // overflow past 2^31 bytes); NCCL: one ncclBroadcast per owner in a group
  // (ncclAllGather wants equal counts; the shards differ by one).
  virtual void all_gather(void* buffer, size_t element_bytes,
                          const std::vector<ShardRange>& ranges) = 0;
  // Rank r's shard (ranges[r].size() floats) lands at full + ranges[r].begin
  // on rank 0 only; `full` is read only on rank 0 (others may pass null). For
  // checkpoints: only the writer holds the whole buffer. MPI: chunked
  // MPI_Send / MPI_Recv, one owner after another.
  virtual void gather_to_root(const float* shard, float* full,
                              const std::vector<ShardRange>& ranges) = 0;
  virtual void barrier() = 0;
  // data[0, n) from rank root to every rank (host memory).
  virtual void broadcast_bytes(void* data, size_t n, int root) = 0;

  // ---- ZeRO-2's bucketed reduction (optim/sharded_gradients.h) ----
  // The sum over ranks of in[0, n) is ADDED into root_accum[0, n) on rank
  // `root` (other ranks pass null). On the root, in == root_accum reduces in
  // place: the root's own part is already there and is counted once (ZeRO-1
  // reduces each owner's range of the full gradient buffer this way). An asynchronous comm (NCCL) only issues
  // it, ordered after the work already issued on the compute stream: `in`
  // must stay unchanged and root_accum untouched until a fence taken after
  // it has been waited for.
  virtual void reduce_add_to(const float* in, float* root_accum, size_t n, int root) = 0;
  // A marker after every collective issued so far; wait_fence(f) makes work
  // issued afterwards on the compute stream wait for them. Blocking comms
  // (MPI) finish each collective before returning: 0 and a no-op.
  virtual uint64_t fence() { return 0; }
  virtual void wait_fence(uint64_t) {}
  // The host waits until every collective issued so far is done, and the
  // compute stream is ordered after them (asynchronous comms poll for
  // errors meanwhile: a dead peer ends this rank instead of hanging it).
  virtual void wait_all() {}
  // True when the float collectives read and write device buffers (NCCL);
  // false: host memory (a device backend stages through the host).
  virtual bool device_buffers() const { return false; }
  // Binds the comm to the Ops the model runs on, once, before the first
  // collective on its buffers (NCCL: its GPU, and the stream to order
  // against). Every rank must call it.
  virtual void attach(Ops&) {}

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
  void all_gather(void*, size_t, const std::vector<ShardRange>&) override {}
  void gather_to_root(const float* shard, float* full,
                      const std::vector<ShardRange>& ranges) override;
  void barrier() override {}
  void broadcast_bytes(void*, size_t, int) override {}
  void reduce_add_to(const float* in, float* root_accum, size_t n, int root) override;
  void require_same(const std::string&, const std::string&) override {}
};

// Prints a fatal error line as described above ("Failure"); without an MPI
// job of 2 or more ranks, simply prints it on stderr.
void report_fatal_error_across_ranks(const std::string& line);

// True when this process was started by mpirun or srun (OMPI_COMM_WORLD_SIZE,
// PMI_SIZE or SLURM_STEP_NUM_TASKS is set in the environment).
bool launched_by_mpirun();

// "mpi": MpiComm (MPI_Init on first use; a plain process, not started by
// mpirun, is a world of 1). "none" or "": SingleProcessComm. "nccl": an
// NcclComm over an MpiComm (its communicator is made by attach, on the
// model's GPU); an Error in a build without NCCL. Anything else: Error
// naming --comm. MPI is initialised at most once per process.
std::unique_ptr<Comm> make_comm(const std::string& flag_value);
// Whether this build has NCCL (cuda/nccl_comm.h): --comm nccl is then the
// default for the CUDA backend under mpirun.
bool nccl_available();

// The sum over ranks of a local value (nullptr comm: the value itself).
// Loops use it for the GLOBAL loss normaliser (total target weight or token
// count over every rank's micro-batches), so each rank's gradient is already
// divided by the global count and the all-reduce SUM gives the mean.
double global_sum(Comm* comm, double value);

}  // namespace polaris
