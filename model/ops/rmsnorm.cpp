// CpuOps: RMSNorm (the model's norm in Qwen3, and the per-head q/k norm).
#include <algorithm>
#include <cmath>

#include "model/cpu_ops.h"
#include "model/ops/cpu_common.h"

namespace polaris {

using cpu::kColChunk;
using cpu::num_chunks;

// forward (per row x of C values):
//   rstd = 1/sqrt(sum(x^2)/C + eps),  out = x * rstd * weight
// backward (g = dout * weight):
//   din     += rstd * (g - x * rstd^2 * mean(g * x))
//   dweight += sum_rows(dout * x * rstd)
// Row sums are accumulated in double.
float cpu::rmsnorm_row(float* out, const float* x, const float* weight, int C, float eps) {
  double ss = 0.0;
  for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
  const float r = (float)(1.0 / std::sqrt(ss / C + (double)eps));
  for (int c = 0; c < C; c++) out[c] = (x[c] * r) * weight[c];  // out may alias x
  return r;
}

void cpu::rmsnorm_row_backward(float* din, const float* d, const float* x, const float* weight,
                               float r, int C) {
  double gx = 0.0;
  for (int c = 0; c < C; c++) gx += (double)(d[c] * weight[c]) * x[c];
  const float k = (float)(gx / C) * r * r;
  for (int c = 0; c < C; c++) din[c] += r * (d[c] * weight[c] - x[c] * k);
}

void CpuOps::rmsnorm_forward(Buf out_buf, float* rstd, CBuf in_buf, CBuf weight_buf, int N,
                             int C, float eps) {
  float* out = out_buf.f32();
  const float *in = in_buf.f32(), *weight = weight_buf.f32();
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float r = cpu::rmsnorm_row(out + (size_t)i * C, in + (size_t)i * C, weight, C, eps);
    if (rstd) rstd[i] = r;
  }
}

void CpuOps::rmsnorm_backward(Buf din_buf, float* dweight, CBuf dout_buf, CBuf in_buf,
                              CBuf weight_buf, const float* rstd, int N, int C) {
  float* din = din_buf.f32();
  const float *dout = dout_buf.f32(), *in = in_buf.f32(), *weight = weight_buf.f32();
  if (din) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
      cpu::rmsnorm_row_backward(din + (size_t)i * C, dout + (size_t)i * C, in + (size_t)i * C,
                                weight, rstd[i], C);
  }
  if (dweight) {
    const int chunks = num_chunks(C, kColChunk);
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < chunks; ch++) {
      const int c0 = ch * kColChunk, c1 = std::min(C, c0 + kColChunk);
      float dw[kColChunk] = {0};
      for (int i = 0; i < N; i++) {
        const float* x = in + (size_t)i * C;
        const float* d = dout + (size_t)i * C;
        const float r = rstd[i];
        for (int c = c0; c < c1; c++) dw[c - c0] += d[c] * (x[c] * r);
      }
      for (int c = c0; c < c1; c++) dweight[c] += dw[c - c0];
    }
  }
}

}  // namespace polaris
