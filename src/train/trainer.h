// Trainer: one optimizer step = gradient accumulation over micro-batches,
// global-norm clipping, AdamW at the scheduled learning rate.
//
// Micro-batches ADD their gradients; each is run with loss scale
// 1 / loss_normaliser, so the accumulated gradient is that of
//   loss = sum over all micro-batches of sum_i weight_i * -log p_i  / loss_normaliser
// (pre-training and SFT pass the total target weight, making it the mean
// per-token loss; GRPO passes its token count, since its weights carry
// signed advantages). Used by every training loop (pretrain, SFT, GRPO).
//
// Data parallel (options.comm with more than one rank): every rank runs its
// own micro-batches, and the caller passes the GLOBAL loss normaliser (summed
// over ranks, global_sum in optim/comm.h), so the SUM over ranks of the local
// gradients is the gradient of the global loss. Then, by options.zero_stage
// (optim/zero.h):
//   0  all-reduce the gradient, AdamW on the whole buffer on every rank;
//   1  after the last micro-batch, reduce each rank's range of the full
//      local gradient to that rank (in place: a reduce-scatter, half the
//      bytes of an all-reduce), AdamW on this rank's shard (moments for the
//      shard only; its fp32 master too: Transformer::shard_master),
//      all-gather the weights (bf16 on the GPU: 2 bytes a parameter);
//   2  no full gradient: each backward hands its gradients, segment by
//      segment as they are finished, to ShardedGradients
//      (optim/sharded_gradients.h), which reduces them at once into the
//      owners' shards, accumulating over the micro-batches; AdamW on the
//      shard, all-gather the weights.
// The clipping norm is that of the reduced gradient (under stages 1 and 2
// the shards' sums of squares are summed over ranks). StepStats.loss and .tokens
// are global. A rank may pass an empty micro-batch list: it contributes a
// zero gradient (GRPO ranks whose groups were all dropped).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/comm.h"
#include "optim/zero.h"
#include "optim/schedule.h"

namespace polaris {
class ShardedGradients;
}

namespace polaris {

struct TrainerOptions {
  LrSchedule schedule;
  AdamWConfig adamw;
  float grad_clip = 1.f;  // max global gradient norm; <= 0 disables
  Comm* comm = nullptr;   // data-parallel ranks; nullptr: one process
  int zero_stage = 0;     // 0, 1 or 2 (see above)
  // --profile: steps profile_warmup+1 .. profile_warmup+profile_steps run
  // between Ops::profiler_start and profiler_stop (0: no capture window).
  int profile_warmup = 0, profile_steps = 0;
};

struct StepStats {
  int step = 0;           // 1-based index of the step just taken
  double loss = 0;        // sum of weighted losses / loss_normaliser
  float lr = 0;
  double grad_norm = 0;   // before clipping
  long long tokens = 0;   // tokens processed (B*T over the micro-batches, all ranks)
  double ms = 0;          // wall time of the step
  std::vector<LossOutputs> outputs;  // per micro-batch log-probs and entropies
};

class Trainer {
 public:
  Trainer(Transformer& model, const TrainerOptions& options);
  ~Trainer();
  StepStats step(const std::vector<Batch>& micro_batches, double loss_normaliser);
  int step_count() const { return optimizer_->step_count(); }
  AdamW& optimizer() { return *optimizer_; }
  const TrainerOptions& options() const { return options_; }
  // This rank's optimizer range: the whole buffer at stage 0.
  ShardRange shard() const { return ranges_[size_t(rank_)]; }
  // The whole fp32 master on rank 0 (collective: every rank calls it).
  // Under ZeRO-1/2 the shards are gathered to rank 0 and the other ranks
  // get an empty vector; otherwise every rank gets its own full copy.
  std::vector<float> master_params();
  // After a resume set the master and the optimizer state: the weights as
  // the uninterrupted run had them (this rank's range rounded as the last
  // step rounded it, then, under ZeRO-1/2, the all-gather).
  void restore_weight_copy();
  // Bytes of fp32 gradient this rank has held at most: the full buffer at
  // stages 0 and 1, the shard and its scratch at stage 2 (measured).
  size_t peak_gradient_bytes() const;

 private:
  Transformer& model_;
  TrainerOptions options_;
  std::unique_ptr<AdamW> optimizer_;
  int rank_ = 0, world_ = 1;
  Comm* comm_ = nullptr;  // options.comm when collectives run (several ranks, or NCCL)
  std::vector<ShardRange> ranges_;  // every rank's shard (stage 0: one range per rank = all)
  std::unique_ptr<ShardedGradients> sharded_;  // stage 2
  // Every owner's range of the weights to all ranks (ZeRO-1/2).
  void all_gather_weights();
  // After the first step (every buffer taken by then): one line with the
  // measured peak gradient memory (the largest over ranks) and the formula.
  void report_gradient_memory();
};

// The comm a Trainer runs its collectives over: `comm` with several ranks,
// or a device comm (NCCL runs even on one rank, so a one-GPU run takes the
// multi-GPU path); null otherwise.
Comm* collective_comm(Comm* comm);

// Per rank at the start of a run: the model's memory report with the
// gradient and Adam moment sizes of ZeRO stage `options.zero_stage`
// (optim/zero.h, with stage 2's bucket scratch) over `options.comm`.
std::string memory_report_per_rank(const Transformer& model, const TrainerOptions& options,
                                   size_t tokens);

// The batch's total loss weight over positions that have a target.
double total_target_weight(const std::vector<Batch>& batches);

}  // namespace polaris
