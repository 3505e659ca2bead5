// CpuOps: AdamW over the flat fp32 parameters.
#include <cmath>

#include "model/cpu_ops.h"
#include "model/ops/cpu_common.h"
#include "src/common/error.h"

namespace polaris {

using cpu::kParallelMin;

// AdamW (decoupled weight decay), step t (1-based):
//   g = grad * grad_scale
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   mhat = m / (1 - beta1^t);      vhat = v / (1 - beta2^t)
//   param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param)
// The CPU's weights are fp32: a copy, when the master is a buffer of its own
// (a ZeRO shard, Transformer::shard_master), receives the exact values.
void CpuOps::adamw_update(float* params, Buf copy, const float* grads, float* m, float* v,
                          size_t n, const AdamWArgs& a) {
  float* copy_f32 = copy ? copy.f32() : nullptr;  // an Error for any other dtype
  const float b1 = a.beta1, b2 = a.beta2;
  const float bc1 = (float)(1.0 - std::pow((double)b1, a.step));
  const float bc2 = (float)(1.0 - std::pow((double)b2, a.step));
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    const float g = grads[i] * a.grad_scale;
    const float mi = b1 * m[i] + (1.f - b1) * g;
    const float vi = b2 * v[i] + (1.f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    params[i] -= a.learning_rate * (mhat / (std::sqrt(vhat) + a.epsilon) +
                                    a.weight_decay * params[i]);
    if (copy_f32) copy_f32[i] = params[i];
  }
}

// An fp32 copy holds the params exactly: nothing to round.
void CpuOps::round_weight_copy(Buf copy, const float* params, size_t n, const AdamWArgs&) {
  if (copy) this->copy(copy, params, n);
}

}  // namespace polaris
