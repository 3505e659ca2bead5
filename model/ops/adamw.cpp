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
void CpuOps::adamw_update(float* params, Buf copy, const float* grads, float* m, float* v,
                          size_t n, const AdamWArgs& a) {
  // fp32 weights are their own master copy; the CPU stores no other dtype.
  require(!copy, "cpu adamw_update: the CPU backend keeps no low-precision weight copy");
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
  }
}

// The CPU's weights are the fp32 params: there is no copy to round.
void CpuOps::round_weight_copy(Buf copy, const float* params, size_t n, const AdamWArgs& args) {
  require(!copy, "cpu round_weight_copy: the CPU backend keeps no low-precision weight copy");
}

}  // namespace polaris
