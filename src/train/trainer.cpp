#include "src/train/trainer.h"

#include <chrono>
#include <cmath>

#include "optim/clip.h"
#include "src/common/error.h"

namespace polaris {

Trainer::Trainer(Transformer& model, const TrainerOptions& options)
    : model_(model), options_(options) {
  options_.schedule.validate();
  optimizer_.reset(new AdamW(model.ops(), model.layout(), 0, model.num_params(), options.adamw));
}

StepStats Trainer::step(const std::vector<Batch>& micro_batches, double loss_normaliser) {
  require(!micro_batches.empty(), "trainer: a step needs at least one micro-batch");
  require(loss_normaliser > 0, "trainer: the loss normaliser must be positive");
  auto start = std::chrono::steady_clock::now();
  StepStats stats;
  model_.zero_grads();
  double loss_sum = 0;
  for (const Batch& batch : micro_batches) {
    stats.outputs.push_back(model_.forward_backward(batch, float(1.0 / loss_normaliser)));
    loss_sum += stats.outputs.back().loss_sum;
    stats.tokens += (long long)batch.B * batch.T;
  }
  stats.loss = loss_sum / loss_normaliser;
  stats.grad_norm = global_grad_norm(model_.ops(), model_.grads(), model_.num_params());
  require(std::isfinite(stats.grad_norm),
          "training diverged: the gradient norm is not finite at step " +
              std::to_string(step_count() + 1) + " (lower --lr)");
  stats.lr = options_.schedule.lr_at(step_count());
  optimizer_->step(model_.params(), model_.grads(), stats.lr,
                   clip_scale(stats.grad_norm, options_.grad_clip));
  stats.step = step_count();
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
