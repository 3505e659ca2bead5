// CpuOps: the MLP activations, GELU (GPT-2) and SwiGLU (Qwen3).
#include <cmath>

#include "model/cpu_ops.h"
#include "model/ops/cpu_common.h"

namespace polaris {

using cpu::kParallelMin;

// GELU, tanh approximation:
//   u = sqrt(2/pi) * (x + 0.044715 x^3),  out = 0.5 x (1 + tanh(u))
//   dout/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3*0.044715 x^2)
// backward: din = dout * dout/dx (written; din may alias dout)
namespace {
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
}

void CpuOps::gelu_forward(Buf out_buf, CBuf in_buf, size_t n) {
  float* out = out_buf.f32();
  const float* in = in_buf.f32();
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    const float x = in[i];
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    out[i] = 0.5f * x * (1.f + std::tanh(u));
  }
}

void CpuOps::gelu_backward(Buf din_buf, CBuf dout_buf, CBuf in_buf, size_t n) {
  if (!din_buf) return;
  float* din = din_buf.f32();
  const float *dout = dout_buf.f32(), *in = in_buf.f32();
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    const float x = in[i];
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    const float t = std::tanh(u);
    const float grad = 0.5f * (1.f + t) +
                       0.5f * x * (1.f - t * t) * kGeluScale * (1.f + 3.f * 0.044715f * x * x);
    din[i] = dout[i] * grad;
  }
}

// SwiGLU on gate_up [N, 2F] (row i: gate = columns 0..F-1, up = F..2F-1):
//   s = sigmoid(gate), silu = gate * s, out = silu * up
// backward (written): dup   = dout * silu
//                     dgate = dout * up * s * (1 + gate * (1 - s))
void CpuOps::swiglu_forward(Buf out_buf, CBuf gate_up_buf, int N, int F) {
  float* out = out_buf.f32();
  const float* gate_up = gate_up_buf.f32();
#pragma omp parallel for schedule(static) if ((size_t)N * F >= kParallelMin)
  for (int i = 0; i < N; i++) {
    const float* gate = gate_up + (size_t)i * 2 * F;
    const float* up = gate + F;
    float* o = out + (size_t)i * F;
    for (int j = 0; j < F; j++) {
      const float g = gate[j];
      const float s = 1.f / (1.f + std::exp(-g));
      o[j] = (g * s) * up[j];
    }
  }
}

void CpuOps::swiglu_backward(Buf dgate_up_buf, CBuf dout_buf, CBuf gate_up_buf, int N, int F) {
  if (!dgate_up_buf) return;
  float* dgate_up = dgate_up_buf.f32();
  const float *dout = dout_buf.f32(), *gate_up = gate_up_buf.f32();
#pragma omp parallel for schedule(static) if ((size_t)N * F >= kParallelMin)
  for (int i = 0; i < N; i++) {
    const float* gate = gate_up + (size_t)i * 2 * F;
    const float* up = gate + F;
    const float* d = dout + (size_t)i * F;
    float* dgate = dgate_up + (size_t)i * 2 * F;
    float* dup = dgate + F;
    for (int j = 0; j < F; j++) {
      const float g = gate[j], u = up[j];  // read before writing: dgate_up may alias gate_up
      const float s = 1.f / (1.f + std::exp(-g));
      dup[j] = d[j] * (g * s);
      dgate[j] = d[j] * u * (s * (1.f + g * (1.f - s)));
    }
  }
}

}  // namespace polaris
