#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "src/common/error.h"

namespace polaris {

float LrSchedule::lr_at(int step) const {
  if (step < warmup_steps) return max_lr * (float)(step + 1) / (float)warmup_steps;
  if (kind == "constant") return max_lr;
  const double min_lr = (double)max_lr * min_lr_fraction;
  const int decay_steps = total_steps - warmup_steps;
  double p = decay_steps > 0 ? (double)(step - warmup_steps) / decay_steps : 1.0;
  p = std::min(1.0, std::max(0.0, p));
  if (kind == "linear") return (float)(max_lr - (max_lr - min_lr) * p);
  const double pi = 3.14159265358979323846;
  return (float)(min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(pi * p)));
}

void LrSchedule::validate() const {
  require(kind == "cosine" || kind == "linear" || kind == "constant",
          "--lr-schedule: unknown schedule '" + kind + "' (expected cosine, linear or constant)");
  require(std::isfinite(max_lr) && max_lr >= 0.f,
          "--lr: learning rate must be a finite number >= 0, got " + std::to_string(max_lr));
  require(std::isfinite(min_lr_fraction) && min_lr_fraction >= 0.f && min_lr_fraction <= 1.f,
          "--min-lr-fraction: must be in [0, 1], got " + std::to_string(min_lr_fraction));
  require(warmup_steps >= 0,
          "--warmup-steps: must be >= 0, got " + std::to_string(warmup_steps));
  require(total_steps >= 1, "--steps: must be >= 1, got " + std::to_string(total_steps));
  require(warmup_steps <= total_steps,
          "--warmup-steps: " + std::to_string(warmup_steps) + " warmup steps exceed --steps " +
              std::to_string(total_steps));
}

LrSchedule make_schedule(const std::string& kind, float max_lr, float min_lr_fraction,
                         int warmup_steps, int total_steps) {
  LrSchedule s;
  s.kind = kind;
  s.max_lr = max_lr;
  s.min_lr_fraction = min_lr_fraction;
  s.warmup_steps = warmup_steps;
  s.total_steps = total_steps;
  s.validate();
  return s;
}

}  // namespace polaris
