// CpuOps: LayerNorm.
#include <algorithm>
#include <cmath>

#include "model/cpu_ops.h"
#include "model/ops/cpu_common.h"

namespace polaris {

using cpu::kColChunk;
using cpu::num_chunks;

// ---- LayerNorm ---------------------------------------------------------------

// forward (per row x of C values):
//   mean = sum(x)/C, var = sum((x-mean)^2)/C, rstd = 1/sqrt(var + eps)
//   xhat = (x - mean) * rstd,  out = xhat * weight + bias
// backward (g = dout * weight):
//   din   += rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dweight += sum_rows(dout * xhat),  dbias += sum_rows(dout)
// Row statistics are accumulated in double.
void CpuOps::layernorm_forward(Buf out_buf, float* mean, float* rstd, CBuf in_buf,
                               CBuf weight_buf, CBuf bias_buf, int N, int C, float eps) {
  float* out = out_buf.f32();
  const float *in = in_buf.f32(), *weight = weight_buf.f32(), *bias = bias_buf.f32();
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float* x = in + (size_t)i * C;
    double s = 0.0;
    for (int c = 0; c < C; c++) s += x[c];
    const float m = (float)(s / C);
    double v = 0.0;
    for (int c = 0; c < C; c++) {
      const double d = (double)x[c] - m;
      v += d * d;
    }
    const float r = (float)(1.0 / std::sqrt(v / C + (double)eps));
    float* o = out + (size_t)i * C;
    for (int c = 0; c < C; c++) {
      const float xhat = (x[c] - m) * r;
      o[c] = xhat * weight[c] + (bias ? bias[c] : 0.f);
    }
    if (mean) mean[i] = m;
    if (rstd) rstd[i] = r;
  }
}

void CpuOps::layernorm_backward(Buf din_buf, float* dweight, float* dbias, CBuf dout_buf,
                                CBuf in_buf, CBuf weight_buf, const float* mean,
                                const float* rstd, int N, int C) {
  float* din = din_buf.f32();
  const float *dout = dout_buf.f32(), *in = in_buf.f32(), *weight = weight_buf.f32();
  if (din) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
      const float* x = in + (size_t)i * C;
      const float* d = dout + (size_t)i * C;
      const float m = mean[i], r = rstd[i];
      double g_mean = 0.0, gx_mean = 0.0;
      for (int c = 0; c < C; c++) {
        const float g = d[c] * weight[c];
        g_mean += g;
        gx_mean += (double)g * ((x[c] - m) * r);
      }
      const float gm = (float)(g_mean / C), gxm = (float)(gx_mean / C);
      float* dx = din + (size_t)i * C;
      for (int c = 0; c < C; c++) {
        const float xhat = (x[c] - m) * r;
        dx[c] += r * (d[c] * weight[c] - gm - xhat * gxm);
      }
    }
  }
  if (dweight || dbias) {
    const int chunks = num_chunks(C, kColChunk);
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < chunks; ch++) {
      const int c0 = ch * kColChunk, c1 = std::min(C, c0 + kColChunk);
      float dw[kColChunk] = {0}, db[kColChunk] = {0};
      for (int i = 0; i < N; i++) {
        const float* x = in + (size_t)i * C;
        const float* d = dout + (size_t)i * C;
        const float m = mean[i], r = rstd[i];
        for (int c = c0; c < c1; c++) {
          dw[c - c0] += d[c] * ((x[c] - m) * r);
          db[c - c0] += d[c];
        }
      }
      for (int c = c0; c < c1; c++) {
        if (dweight) dweight[c] += dw[c - c0];
        if (dbias) dbias[c] += db[c - c0];
      }
    }
  }
}

}  // namespace polaris
