#include "src/train/trainer.h"

#include <chrono>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "optim/clip.h"
#include "optim/watchdog.h"
#include "src/common/error.h"

namespace polaris {

Trainer::Trainer(Transformer& model, const TrainerOptions& options)
    : model_(model), options_(options) {
  options_.schedule.validate();
  require(options.zero_stage >= 0 && options.zero_stage <= 2,
          "--zero must be 0, 1 or 2, got " + std::to_string(options.zero_stage));
  if (options.comm) {
    rank_ = options.comm->rank();
    world_ = options.comm->world_size();
  }
  const size_t total = model.num_params();
  if (options.zero_stage == 0)
    ranges_.assign(size_t(world_), ShardRange{0, total});
  else
    ranges_ = zero_shard_ranges(total, world_);
  if (options.comm && world_ > 1)
    options.comm->require_same("the model's parameter count", uint64_t(total));
  if (world_ > 1 || options.zero_stage > 0)
    std::printf("data parallel: %d rank%s over %s | %s\n", world_, world_ == 1 ? "" : "s",
                options.comm ? options.comm->name().c_str() : "none",
                describe_zero_memory(total, world_, options.zero_stage).c_str());
  const ShardRange mine = shard();
  optimizer_.reset(new AdamW(model.ops(), model.layout(), mine.begin, mine.end, options.adamw));
  if (options.zero_stage == 2) grad_shard_.resize(mine.size());
}

namespace {

// Test hook: POLARIS_FAIL_RANK=r makes rank r throw at its first optimizer
// step, while the other ranks wait in the gradient all-reduce (the failure
// test, tests/cli/mpi_failure.sh, checks the whole job then ends).
void maybe_injected_fault(int rank) {
  const char* env = std::getenv("POLARIS_FAIL_RANK");
  if (env && *env && std::atoi(env) == rank)
    throw Error("injected fault on rank " + std::to_string(rank) + " (POLARIS_FAIL_RANK)");
}

// Test hook: POLARIS_STALL_RANK=r:s:stop makes rank r stop itself (SIGSTOP:
// it cannot speak, heartbeats included) in its first micro-batch of step s;
// r:s:hang makes it sleep there forever (it still sends heartbeats, with a
// counter that no longer moves). The watchdog test (tests/cli/watchdog.sh)
// checks that the whole job then ends, naming the rank and the phase.
void maybe_injected_stall(int rank, int step) {
  const char* env = std::getenv("POLARIS_STALL_RANK");
  int stall_rank = -1, stall_step = -1;
  char how[8] = {0};
  if (!env || std::sscanf(env, "%d:%d:%7s", &stall_rank, &stall_step, how) != 3) return;
  if (stall_rank != rank || stall_step != step) return;
  if (std::string(how) == "stop") std::raise(SIGSTOP);
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace

StepStats Trainer::step(const std::vector<Batch>& micro_batches, double loss_normaliser) {
  require(!micro_batches.empty() || world_ > 1, "trainer: a step needs at least one micro-batch");
  require(loss_normaliser > 0, "trainer: the loss normaliser must be positive");
  if (step_count() == 0) maybe_injected_fault(rank_);
  const bool profiling = options_.profile_steps > 0;
  if (profiling && step_count() == options_.profile_warmup) model_.ops().profiler_start();
  auto start = std::chrono::steady_clock::now();
  StepStats stats;
  model_.zero_grads();
  double loss_sum = 0;
  for (const Batch& batch : micro_batches) {
    OpsRange range(model_.ops(), "micro-batch");
    WatchdogPhase watched("forward+backward");
    maybe_injected_stall(rank_, step_count() + 1);
    stats.outputs.push_back(model_.forward_backward(batch, float(1.0 / loss_normaliser)));
    loss_sum += stats.outputs.back().loss_sum;
    stats.tokens += (long long)batch.B * batch.T;
  }
  Comm* comm = world_ > 1 ? options_.comm : nullptr;
  float* grads = model_.grads();
  const size_t total = model_.num_params();
  const ShardRange mine = shard();
  if (comm) {
    double sums[2] = {loss_sum, double(stats.tokens)};
    comm->all_reduce_sum(sums, 2);
    loss_sum = sums[0];
    stats.tokens = (long long)sums[1];
  }
  stats.loss = loss_sum / loss_normaliser;
  // The comm works on host memory: device buffers (the CUDA backend with
  // --comm mpi) are staged through the host.
  const bool staged = comm && !model_.ops().host_memory();
  auto all_reduce_grads = [&]() {
    if (!staged) return comm->all_reduce_sum(grads, total);
    std::vector<float> host(total);
    model_.ops().download(host.data(), grads, total);
    comm->all_reduce_sum(host.data(), total);
    model_.ops().upload(grads, host.data(), total);
  };
  std::unique_ptr<OpsRange> phase(new OpsRange(model_.ops(), "communication + grad norm"));
  std::unique_ptr<WatchdogPhase> watched(new WatchdogPhase("gradient reduction"));
  if (options_.zero_stage < 2) {
    if (comm) all_reduce_grads();
    stats.grad_norm = global_grad_norm(model_.ops(), grads, total);
  } else {
    if (comm) {
      if (staged) {
        std::vector<float> host(total);
        model_.ops().download(host.data(), grads, total);
        comm->reduce_scatter_sum(host.data(), grad_shard_.data(), ranges_);
      } else {
        comm->reduce_scatter_sum(grads, grad_shard_.data(), ranges_);
      }
      model_.ops().upload(grads + mine.begin, grad_shard_.data(), mine.size());
    }
    // Only [mine.begin, mine.end) of grads holds the reduced gradient now.
    double sum_sq = model_.ops().sum_squares(grads + mine.begin, mine.size());
    if (comm) comm->all_reduce_sum(&sum_sq, 1);
    stats.grad_norm = std::sqrt(sum_sq);
  }
  require(std::isfinite(stats.grad_norm),
          "training diverged: the gradient norm is not finite at step " +
              std::to_string(step_count() + 1) + " (lower --lr)");
  stats.lr = options_.schedule.lr_at(step_count());
  // The backend's weight copy (bf16 on the GPU) is refreshed by AdamW for
  // this rank's range; the ranges other ranks updated arrive by all-gather.
  const Buf copy = model_.weight_copy();
  phase.reset();
  phase.reset(new OpsRange(model_.ops(), "optimizer"));
  watched.reset();
  watched.reset(new WatchdogPhase("optimizer"));
  optimizer_->step(model_.params(), model_.grads(), stats.lr,
                   clip_scale(stats.grad_norm, options_.grad_clip), copy);
  phase.reset();
  watched.reset();
  if (comm && options_.zero_stage > 0) {
    OpsRange gather_range(model_.ops(), "communication: all-gather");
    WatchdogPhase gather_watched("parameter all-gather");
    float* master = model_.params();
    if (staged) {
      std::vector<float> host(total);
      model_.ops().download(host.data(), master, total);
      comm->all_gather(host.data(), ranges_);
      model_.ops().upload(master, host.data(), total);
    } else {
      comm->all_gather(master, ranges_);
    }
    for (int r = 0; r < world_; ++r)
      if (r != rank_) model_.sync_weights(ranges_[r].begin, ranges_[r].end);
  }
  stats.step = step_count();
  if (profiling && stats.step == options_.profile_warmup + options_.profile_steps)
    model_.ops().profiler_stop();
  stats.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                 .count();
  return stats;
}

double total_target_weight(const std::vector<Batch>& batches) {
  double total = 0;
  for (const Batch& b : batches)
    for (size_t i = 0; i < b.targets.size(); ++i)
      if (b.targets[i] >= 0) total += b.weights[i];
  return total;
}

}  // namespace polaris
