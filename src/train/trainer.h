// Trainer: one optimizer step = gradient accumulation over micro-batches,
// global-norm clipping, AdamW at the scheduled learning rate.
//
// Micro-batches ADD their gradients; each is run with loss scale
// 1 / loss_normaliser, so the accumulated gradient is that of
//   loss = sum over all micro-batches of sum_i weight_i * -log p_i  / loss_normaliser
// (pre-training and SFT pass the total target weight, making it the mean
// per-token loss; GRPO passes its token count, since its weights carry
// signed advantages). Used by every training loop (pretrain, SFT, GRPO).
#pragma once
#include <memory>
#include <vector>

#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/schedule.h"

namespace polaris {

struct TrainerOptions {
  LrSchedule schedule;
  AdamWConfig adamw;
  float grad_clip = 1.f;  // max global gradient norm; <= 0 disables
};

struct StepStats {
  int step = 0;           // 1-based index of the step just taken
  double loss = 0;        // sum of weighted losses / loss_normaliser
  float lr = 0;
  double grad_norm = 0;   // before clipping
  long long tokens = 0;   // tokens processed (B*T over the micro-batches)
  double ms = 0;          // wall time of the step
  std::vector<LossOutputs> outputs;  // per micro-batch log-probs and entropies
};

class Trainer {
 public:
  Trainer(Transformer& model, const TrainerOptions& options);
  StepStats step(const std::vector<Batch>& micro_batches, double loss_normaliser);
  int step_count() const { return optimizer_->step_count(); }
  AdamW& optimizer() { return *optimizer_; }
  const TrainerOptions& options() const { return options_; }

 private:
  Transformer& model_;
  TrainerOptions options_;
  std::unique_ptr<AdamW> optimizer_;
};

// The batch's total loss weight over positions that have a target.
double total_target_weight(const std::vector<Batch>& batches);

}  // namespace polaris
