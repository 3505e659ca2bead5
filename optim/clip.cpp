#include "optim/clip.h"

#include <algorithm>
#include <cmath>

namespace polaris {

double global_grad_norm(Ops& ops, const float* grads, size_t n) {
  return std::sqrt(ops.sum_squares(grads, n));
}

float clip_scale(double norm, float max_norm) {
  if (max_norm <= 0.f) return 1.f;
  return (float)std::min(1.0, (double)max_norm / (norm + 1e-6));
}

}  // namespace polaris
