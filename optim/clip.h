// Gradient clipping by global norm, without rewriting the gradients.
//
//   norm  = sqrt(sum_i g_i^2)                      over every gradient
//   scale = min(1, max_norm / (norm + 1e-6))       (max_norm <= 0: scale = 1)
//
// The scale is handed to AdamW::step as grad_scale, which multiplies each
// gradient as it reads it, so the clipped gradient is never materialised.
// Under ZeRO each rank holds part of the gradient: sum the per-rank
// sum_squares across ranks first, then take the square root.
#pragma once
#include <cstddef>

#include "model/ops.h"

namespace polaris {

// sqrt(sum of squares) of grads[0, n), accumulated in double by Ops.
double global_grad_norm(Ops& ops, const float* grads, size_t n);

// min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0 (clipping off).
float clip_scale(double norm, float max_norm);

}  // namespace polaris
