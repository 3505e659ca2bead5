#include "src/train/trainer.h"

#include <chrono>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "optim/clip.h"
#include "optim/watchdog.h"
#include "optim/sharded_gradients.h"
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
    options.comm->attach(model.ops());
    comm_ = collective_comm(options.comm);
  }
  const size_t total = model.num_params();
  if (options.zero_stage == 0)
    ranges_.assign(size_t(world_), ShardRange{0, total});
  else
    ranges_ = zero_shard_ranges(total, world_);
  if (options.comm && world_ > 1)
    options.comm->require_same("the model (model file or --init): its parameter count",
                               uint64_t(total));
  if (options.zero_stage == 2)
    sharded_.reset(new ShardedGradients(model, comm_, ranges_, rank_));
  if (world_ > 1 || options.zero_stage > 0)
    std::printf("data parallel: %d rank%s over %s | %s\n", world_, world_ == 1 ? "" : "s",
                options.comm ? options.comm->name().c_str() : "none",
                describe_zero_memory(total, world_, options.zero_stage,
                                     model.ops().activation_dtype(),
                                     sharded_ ? sharded_->scratch_floats() : 0)
                    .c_str());
  const ShardRange mine = shard();
  // ZeRO-1/2: the fp32 master of this rank's shard only, beside the full
  // weights (also on the CPU, whose weights are otherwise the master: one
  // path for every backend, which the CPU tests then exercise).
  if (options.zero_stage > 0) model.shard_master(mine.begin, mine.end);
  optimizer_.reset(new AdamW(model.ops(), model.layout(), mine.begin, mine.end, options.adamw));
}

Trainer::~Trainer() = default;

Comm* collective_comm(Comm* comm) {
  return comm && (comm->world_size() > 1 || comm->device_buffers()) ? comm : nullptr;
}

std::string memory_report_per_rank(const Transformer& model, const TrainerOptions& options,
                                   size_t tokens) {
  Comm* comm = collective_comm(options.comm);
  const int world = options.comm ? options.comm->world_size() : 1;
  const size_t bucket =
      options.zero_stage == 2 ? ShardedGradients::scratch_floats(model, comm) : 0;
  const ZeroMemory zero = zero_memory_per_rank(model.num_params(), world, options.zero_stage,
                                               model.ops().activation_dtype(), bucket);
  return model.memory_report(tokens, zero.grads / 4, zero.moments / 4, zero.master / 4);
}

std::vector<float> Trainer::master_params() {
  const ShardRange mine = shard();
  if (model_.master_begin() == 0 && model_.master_end() == model_.num_params())
    return model_.get_params();
  std::vector<float> shard_host(mine.size()), full(rank_ == 0 ? model_.num_params() : 0);
  model_.ops().download(shard_host.data(), model_.params(), mine.size());
  comm_->gather_to_root(shard_host.data(), full.data(), ranges_);
  return full;
}

void Trainer::restore_weight_copy() {
  optimizer_->round_copy(model_.params(), model_.weight_copy());
  if (comm_ && options_.zero_stage > 0) all_gather_weights();
}

size_t Trainer::peak_gradient_bytes() const {
  if (sharded_) return sharded_->peak_bytes();
  return model_.holds_full_gradient() ? 4 * model_.num_params() : 0;
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
// counter that no longer moves). r may be a list, r1,r2:s:stop (several
// ranks stuck at once). The watchdog test (tests/cli/watchdog.sh) checks that
// the whole job then ends, naming a stuck rank and its phase.
void maybe_injected_stall(int rank, int step) {
  const char* env = std::getenv("POLARIS_STALL_RANK");
  if (!env) return;
  const std::string spec = env;
  const size_t colon = spec.find(':');
  int stall_step = -1;
  char how[8] = {0};
  if (colon == std::string::npos ||
      std::sscanf(spec.c_str() + colon + 1, "%d:%7s", &stall_step, how) != 2 || stall_step != step)
    return;
  bool stalls = false;
  std::stringstream ranks(spec.substr(0, colon));
  for (std::string item; std::getline(ranks, item, ',');)
    stalls = stalls || std::atoi(item.c_str()) == rank;
  if (!stalls) return;
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
  // ZeRO-2: each backward's segments are reduce-scattered into this rank's
  // shard as they close; otherwise the backward adds into the full buffer.
  if (sharded_)
    sharded_->zero();
  else
    model_.zero_grads();
  double loss_sum = 0;
  for (const Batch& batch : micro_batches) {
    OpsRange range(model_.ops(), "micro-batch");
    WatchdogPhase watched("forward+backward");
    maybe_injected_stall(rank_, step_count() + 1);
    stats.outputs.push_back(
        model_.forward_backward(batch, float(1.0 / loss_normaliser), sharded_.get()));
    loss_sum += stats.outputs.back().loss_sum;
    stats.tokens += (long long)batch.B * batch.T;
  }
  Comm* comm = comm_;
  if (sharded_ && comm) {
    // Stage 2 reduces during each backward: a rank with fewer micro-batches
    // than another adds empty passes, so every rank issues the same
    // collectives.
    double passes = double(micro_batches.size());
    comm->all_reduce_max(&passes, 1);
    for (size_t i = micro_batches.size(); i < size_t(passes); ++i) sharded_->add_empty_pass();
  }
  const size_t total = model_.num_params();
  const ShardRange mine = shard();
  if (comm) {
    double sums[2] = {loss_sum, double(stats.tokens)};
    comm->all_reduce_sum(sums, 2);
    loss_sum = sums[0];
    stats.tokens = (long long)sums[1];
  }
  stats.loss = loss_sum / loss_normaliser;
  // A host comm (MPI) with device buffers (the CUDA backend with --comm
  // mpi) stages them through the host.
  const bool staged = comm && !model_.ops().host_memory() && !comm->device_buffers();
  auto collective_on = [&](float* buffer, void (*collective)(Comm&, float*, size_t,
                                                              const std::vector<ShardRange>&)) {
    if (!staged) return collective(*comm, buffer, total, ranges_);
    std::vector<float> host(total);
    model_.ops().download(host.data(), buffer, total);
    collective(*comm, host.data(), total, ranges_);
    model_.ops().upload(buffer, host.data(), total);
  };
  std::unique_ptr<OpsRange> phase(new OpsRange(model_.ops(), "communication + grad norm"));
  std::unique_ptr<WatchdogPhase> watched(new WatchdogPhase("gradient reduction"));
  const float* grads = nullptr;  // this rank's range of the reduced gradient
  if (sharded_) {
    grads = sharded_->finish();
  } else {
    if (comm && options_.zero_stage == 0)
      collective_on(model_.grads(), [](Comm& c, float* g, size_t n, const std::vector<ShardRange>&) {
        c.all_reduce_sum(g, n);
      });
    if (comm && options_.zero_stage == 1)  // each owner's range reduced in place on it
      collective_on(model_.grads(), [](Comm& c, float* g, size_t, const std::vector<ShardRange>& r) {
        for (int owner = 0; owner < c.world_size(); ++owner) {
          float* part = g + r[size_t(owner)].begin;
          c.reduce_add_to(part, owner == c.rank() ? part : nullptr, r[size_t(owner)].size(), owner);
        }
        c.wait_all();
      });
    grads = model_.grads() + mine.begin;
  }
  // The global norm (optim/clip.h): from this rank's range, the sums of
  // squares added over the shards when the ranks hold different ranges.
  double sum_sq = model_.ops().sum_squares(grads, mine.size());
  if (comm && options_.zero_stage > 0) comm->all_reduce_sum(&sum_sq, 1);
  stats.grad_norm = std::sqrt(sum_sq);
  require(std::isfinite(stats.grad_norm),
          "training diverged: the gradient norm is not finite at step " +
              std::to_string(step_count() + 1) + " (lower --lr)");
  stats.lr = options_.schedule.lr_at(step_count());
  // The weights (bf16 on the GPU; the fp32 copy beside a sharded master on
  // the CPU) are refreshed by AdamW for this rank's range; the ranges other
  // ranks updated arrive by the all-gather.
  const Buf copy = model_.weight_copy();
  phase.reset();
  phase.reset(new OpsRange(model_.ops(), "optimizer"));
  watched.reset();
  watched.reset(new WatchdogPhase("optimizer"));
  optimizer_->step_range(model_.params(), grads, stats.lr,
                         clip_scale(stats.grad_norm, options_.grad_clip), copy);
  phase.reset();
  watched.reset();
  if (comm && options_.zero_stage > 0) {
    OpsRange gather_range(model_.ops(), "communication: all-gather");
    WatchdogPhase gather_watched("weight all-gather");
    all_gather_weights();
  }
  stats.step = step_count();
  if (stats.step == 1) report_gradient_memory();
  if (profiling && stats.step == options_.profile_warmup + options_.profile_steps)
    model_.ops().profiler_stop();
  stats.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                 .count();
  return stats;
}

// Every owner's range of the weights to every rank, in the weights' dtype
// (2 bytes a parameter for bf16). A host comm with device weights (--comm
// mpi on the CUDA backend) stages them through the host: bf16 values are
// exactly the top 16 bits of their fp32 download, so 2 bytes a parameter
// cross between ranks there too.
void Trainer::all_gather_weights() {
  const Buf weights = model_.weights();
  const size_t total = model_.num_params();
  if (model_.ops().host_memory() || comm_->device_buffers())
    return comm_->all_gather(weights.ptr, dtype_size(weights.dtype), ranges_);
  // Only this rank's range goes out; the others arrive by the gather.
  const ShardRange mine = shard();
  std::vector<float> host(total);
  model_.ops().download(host.data() + mine.begin, weights + mine.begin, mine.size());
  if (weights.dtype == DType::bf16) {
    std::vector<uint16_t> bits(total);
    for (size_t i = mine.begin; i < mine.end; ++i) {
      uint32_t word;
      std::memcpy(&word, &host[i], 4);
      bits[i] = uint16_t(word >> 16);
    }
    comm_->all_gather(bits.data(), 2, ranges_);
    for (size_t i = 0; i < total; ++i) {
      const uint32_t word = uint32_t(bits[i]) << 16;
      std::memcpy(&host[i], &word, 4);
    }
  } else {
    comm_->all_gather(host.data(), 4, ranges_);
  }
  model_.ops().upload(weights, host.data(), total);
}

void Trainer::report_gradient_memory() {
  if (world_ == 1 && options_.zero_stage == 0) return;
  double peak = double(peak_gradient_bytes());
  if (comm_) comm_->all_reduce_max(&peak, 1);
  const size_t formula =
      zero_memory_per_rank(model_.num_params(), world_, options_.zero_stage,
                           model_.ops().activation_dtype(),
                           sharded_ ? sharded_->scratch_floats() : 0)
          .grads;
  std::printf("gradient memory per rank: peak %.0f bytes measured (the largest rank), "
              "ZeRO-%d formula %zu bytes, full fp32 gradient %zu bytes\n",
              peak, options_.zero_stage, formula, 4 * model_.num_params());
}

double total_target_weight(const std::vector<Batch>& batches) {
  double total = 0;
  for (const Batch& b : batches)
    for (size_t i = 0; i < b.targets.size(); ++i)
      if (b.targets[i] >= 0) total += b.weights[i];
  return total;
}

}  // namespace polaris
