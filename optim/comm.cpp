// Comm implementations (see comm.h): SingleProcessComm and MpiComm.
#include "optim/comm.h"

// C API only (no deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

#ifdef POLARIS_HAVE_NCCL
#include "cuda/nccl_comm.h"
#endif
#include "optim/watchdog.h"
#include "optim/zero.h"
#include "src/common/error.h"

namespace polaris {

void SingleProcessComm::gather_to_root(const float* shard, float* full,
                                       const std::vector<ShardRange>& ranges) {
  require(ranges.size() == 1, "gather_to_root: a single process has one range");
  std::copy(shard, shard + ranges[0].size(), full + ranges[0].begin);
}

void SingleProcessComm::reduce_add_to(const float* in, float* root_accum, size_t n, int) {
  if (in == root_accum) return;  // in place: the only rank's part is the sum
  for (size_t i = 0; i < n; ++i) root_accum[i] += in[i];
}

bool nccl_available() {
#ifdef POLARIS_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

bool launched_by_mpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"})
    if (std::getenv(name)) return true;
  return false;
}

double global_sum(Comm* comm, double value) {
  if (comm) comm->all_reduce_sum(&value, 1);
  return value;
}

namespace {

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw Error(std::string(call) + " failed: " + text);
}

void finalize_mpi_at_exit() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

// Ranks agree on a fatal error over their own communicator, so the failing
// ranks' calls never meet a collective that healthy ranks are blocked in.
MPI_Comm g_error_comm = MPI_COMM_NULL;

// How long a failing rank waits for the others to fail too. Errors in the
// flags, the files or the config are found by every rank within moments of
// each other; a rank still running after this is healthy (or stuck in a
// collective waiting for this one), and the job is aborted.
constexpr double kAgreeSeconds = 5.0;

// "error: rank 1: <problem>" from "error: <problem>".
std::string with_rank(const std::string& line, int rank) {
  const std::string prefix = "error: ";
  const std::string tag = "rank " + std::to_string(rank) + ": ";
  return line.compare(0, prefix.size(), prefix) == 0 ? prefix + tag + line.substr(prefix.size())
                                                    : tag + line;
}

}  // namespace

// Every failing rank offers a hash of its error line; if all ranks offer one
// within kAgreeSeconds, the job ends cleanly: one line from rank 0 when the
// lines are the same, else one line per rank naming it. Otherwise only some
// ranks failed, and this one prints its line with its rank and aborts the
// job, so the others, maybe blocked in a collective, do not hang.
void report_fatal_error_across_ranks(const std::string& line) {
  int initialized = 0, finalized = 0, rank = 0, world = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
  }
  if (world <= 1 || g_error_comm == MPI_COMM_NULL) {
    std::fprintf(stderr, "%s\n", line.c_str());
    return;
  }
  std::fflush(stdout);
  const uint64_t hash = std::hash<std::string>()(line);
  // max(h) and max(~h) = ~min(h): all ranks' lines hash alike iff they meet.
  uint64_t mine[2] = {hash, ~hash}, all[2] = {0, 0};
  MPI_Request request;
  bool agreed = false;
  if (MPI_Iallreduce(mine, all, 2, MPI_UINT64_T, MPI_MAX, g_error_comm, &request) == MPI_SUCCESS) {
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
           kAgreeSeconds) {
      int done = 0;
      if (MPI_Test(&request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
      if (done) {
        agreed = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  if (agreed) {
    const bool same = all[0] == ~all[1];
    if (!same)
      std::fprintf(stderr, "%s\n", with_rank(line, rank).c_str());
    else if (rank == 0)
      std::fprintf(stderr, "%s\n", line.c_str());
    return;  // run_main returns 1; MPI_Finalize runs at exit
  }
  std::fprintf(stderr, "%s\n", with_rank(line, rank).c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

namespace {

class MpiComm : public Comm {
 public:
  MpiComm() {
    if (!launched_by_mpirun()) return;  // a plain process: world of 1, no MPI at all
    int initialized = 0;
    check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
    require(!initialized, "MPI is already initialised in this process (make_comm called twice)");
    // MPI_THREAD_MULTIPLE: the watchdog's heartbeat thread (optim/watchdog.h)
    // calls MPI while the training thread is inside a collective.
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    std::atexit(finalize_mpi_at_exit);
    // Return codes instead of aborting inside MPI, so every failure is an Error.
    check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN),
              "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world_), "MPI_Comm_size");
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &g_error_comm), "MPI_Comm_dup");
    active_ = true;
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string name() const override { return active_ ? "mpi" : "mpi (not under mpirun: 1 rank)"; }

  void all_reduce_sum(float* data, size_t n) override { all_reduce(data, n, MPI_FLOAT, MPI_SUM); }
  void all_reduce_sum(double* data, size_t n) override { all_reduce(data, n, MPI_DOUBLE, MPI_SUM); }
  void all_reduce_max(double* data, size_t n) override { all_reduce(data, n, MPI_DOUBLE, MPI_MAX); }

  // One chunked MPI_Bcast of bytes per owner rank r over ranges[r], rooted
  // at r.
  void all_gather(void* buffer, size_t element_bytes,
                  const std::vector<ShardRange>& ranges) override {
    check_ranges(ranges, "all_gather");
    require(element_bytes > 0, "all_gather: elements of 0 bytes");
    CollectiveWait wait;
    if (!active_) return;
    char* bytes = static_cast<char*>(buffer);
    for (int r = 0; r < world_; ++r) {
      const size_t begin = ranges[size_t(r)].begin * element_bytes;
      const size_t size = ranges[size_t(r)].size() * element_bytes;
      for (size_t done = 0; done < size; done += kChunk)
        check_mpi(MPI_Bcast(bytes + begin + done, int(std::min(kChunk, size - done)), MPI_BYTE, r,
                            MPI_COMM_WORLD),
                  "MPI_Bcast");
    }
  }

  void gather_to_root(const float* shard, float* full,
                      const std::vector<ShardRange>& ranges) override {
    check_ranges(ranges, "gather_to_root");
    CollectiveWait wait;
    if (rank_ == 0)
      std::copy(shard, shard + ranges[0].size(), full + ranges[0].begin);
    if (!active_) return;
    for (int r = 1; r < world_; ++r) {
      const ShardRange& range = ranges[size_t(r)];
      for (size_t done = 0; done < range.size(); done += kChunk) {
        const int count = int(std::min(kChunk, range.size() - done));
        if (rank_ == r)
          check_mpi(MPI_Send(shard + done, count, MPI_FLOAT, 0, r, MPI_COMM_WORLD), "MPI_Send");
        else if (rank_ == 0)
          check_mpi(MPI_Recv(full + range.begin + done, count, MPI_FLOAT, r, r, MPI_COMM_WORLD,
                             MPI_STATUS_IGNORE),
                    "MPI_Recv");
      }
    }
  }

  void barrier() override {
    CollectiveWait wait;
    if (active_) check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }

  void broadcast_bytes(void* data, size_t n, int root) override {
    if (!active_) return;
    CollectiveWait wait;
    char* bytes = static_cast<char*>(data);
    for (size_t done = 0; done < n; done += kChunk)
      check_mpi(MPI_Bcast(bytes + done, int(std::min(kChunk, n - done)), MPI_BYTE, root,
                          MPI_COMM_WORLD),
                "MPI_Bcast");
  }

  // The root adds its own part into the accumulator first, then reduces in
  // place into it: accum = (accum + in_root) + sum of the others' in, with
  // no temporary of the bucket's size.
  void reduce_add_to(const float* in, float* root_accum, size_t n, int root) override {
    if (rank_ == root && in != root_accum)
      for (size_t i = 0; i < n; ++i) root_accum[i] += in[i];
    if (!active_) return;
    CollectiveWait wait;
    for (size_t done = 0; done < n; done += kChunk) {
      const int count = int(std::min(kChunk, n - done));
      if (rank_ == root)
        check_mpi(MPI_Reduce(MPI_IN_PLACE, root_accum + done, count, MPI_FLOAT, MPI_SUM, root,
                             MPI_COMM_WORLD),
                  "MPI_Reduce");
      else
        check_mpi(MPI_Reduce(in + done, nullptr, count, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD),
                  "MPI_Reduce");
    }
  }

  void require_same(const std::string& what, const std::string& value) override {
    if (!active_) return;
    CollectiveWait wait;
    // Every rank's value, gathered to every rank: lengths, then the bytes.
    const int length = int(value.size());
    std::vector<int> lengths(size_t(world_), 0), offsets(size_t(world_), 0);
    check_mpi(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD),
              "MPI_Allgather");
    for (int r = 1; r < world_; ++r) offsets[size_t(r)] = offsets[size_t(r - 1)] + lengths[size_t(r - 1)];
    std::string all(size_t(offsets.back() + lengths.back()), '\0');
    check_mpi(MPI_Allgatherv(value.data(), length, MPI_CHAR, &all[0], lengths.data(),
                             offsets.data(), MPI_CHAR, MPI_COMM_WORLD),
              "MPI_Allgatherv");
    auto of = [&](int r) { return all.substr(size_t(offsets[size_t(r)]), size_t(lengths[size_t(r)])); };
    for (int r = 1; r < world_; ++r)
      if (of(r) != of(0))
        throw Error("ranks disagree on " + what + " (rank 0: '" + of(0) + "', rank " +
                    std::to_string(r) + ": '" + of(r) + "'); every rank must be given the same value");
  }

 private:
  static constexpr size_t kChunk = size_t(1) << 28;  // elements per MPI call (int counts)

  void all_reduce(void* data, size_t n, MPI_Datatype type, MPI_Op op) {
    if (!active_) return;
    CollectiveWait wait;
    int type_size = 0;
    check_mpi(MPI_Type_size(type, &type_size), "MPI_Type_size");
    char* bytes = static_cast<char*>(data);
    for (size_t done = 0; done < n; done += kChunk)
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, bytes + done * size_t(type_size),
                              int(std::min(kChunk, n - done)), type, op, MPI_COMM_WORLD),
                "MPI_Allreduce");
  }

  void check_ranges(const std::vector<ShardRange>& ranges, const char* call) const {
    require(int(ranges.size()) == world_, std::string(call) + ": " +
                                              std::to_string(ranges.size()) + " ranges for " +
                                              std::to_string(world_) + " ranks");
    for (size_t r = 1; r < ranges.size(); ++r)
      require(ranges[r].begin == ranges[r - 1].end,
              std::string(call) + ": shard ranges do not tile the buffer");
  }

  bool active_ = false;
  int rank_ = 0, world_ = 1;
};

}  // namespace

std::unique_ptr<Comm> make_comm(const std::string& flag_value) {
  if (flag_value.empty() || flag_value == "none")
    return std::unique_ptr<Comm>(new SingleProcessComm());
  if (flag_value == "mpi") return std::unique_ptr<Comm>(new MpiComm());
  if (flag_value == "nccl")
#ifdef POLARIS_HAVE_NCCL
    return make_nccl_comm(std::unique_ptr<Comm>(new MpiComm()));
#else
    throw Error("--comm nccl: this build has no NCCL (the CUDA toolkit's nccl.h and libnccl); "
                "use --comm mpi");
#endif
  throw Error("--comm must be none, mpi or nccl, got '" + flag_value + "'");
}

}  // namespace polaris
