// Learning-rate schedules: linear warmup, then cosine, linear or no decay.
//
// With step 0-based, W = warmup_steps, S = total_steps,
// min_lr = max_lr * min_lr_fraction:
//
//   warmup  (step < W):   lr = max_lr * (step + 1) / W
//   after   (step >= W):  p  = (step - W) / (S - W), clamped to [0, 1]
//                                                  (p = 1 when S == W)
//     cosine:    lr = min_lr + 0.5 * (max_lr - min_lr) * (1 + cos(pi * p))
//     linear:    lr = max_lr - (max_lr - min_lr) * p
//     constant:  lr = max_lr
//
// So lr_at(0) = max_lr / W, lr_at(W - 1) = lr_at(W) = max_lr, and the decay
// reaches min_lr at step S (the step after the last one; lr_at(S - 1) is one
// decay increment above it) and stays there for any later step.
#pragma once
#include <string>

namespace polaris {

struct LrSchedule {
  std::string kind = "cosine";   // cosine | linear | constant
  float max_lr = 3e-4f;
  float min_lr_fraction = 0.1f;  // min_lr = max_lr * min_lr_fraction
  int warmup_steps = 0;
  int total_steps = 1;

  float lr_at(int step) const;
  // Throws Error naming the flag (--lr-schedule, --lr, --min-lr-fraction,
  // --warmup-steps, --steps) of the first impossible field.
  void validate() const;
};

// Builds and validates a schedule.
LrSchedule make_schedule(const std::string& kind, float max_lr, float min_lr_fraction,
                         int warmup_steps, int total_steps);

}  // namespace polaris
