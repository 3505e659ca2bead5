// CpuOps: rotary position embedding, and Qwen3's per-head q/k RMSNorm + RoPE.
#include <algorithm>
#include <cmath>
#include <vector>

#include "model/cpu_ops.h"
#include "model/ops/cpu_common.h"

namespace polaris {

// For every head of row n (position p = positions[n]) and i < D/2:
//   inv_freq_i = 1 / theta^(2i/D)  (or YaRN's blend, model/rope.h),  angle = p * inv_freq_i,
//   c = cos(angle) * m,  s = sin(angle) * m   (m: YaRN's attention factor, else 1)
//   out[i]       = x[i] * c - x[i + D/2] * s
//   out[i + D/2] = x[i + D/2] * c + x[i] * s
// backward (the transposed rotation, written):
//   din[i]       = dout[i] * c + dout[i + D/2] * s
//   din[i + D/2] = dout[i + D/2] * c - dout[i] * s
// Computed in float32 exactly as Hugging Face does (inv_freq, the angle and
// cos/sin, then the scale, all in float32), so logits match transformers' to ~1e-6.
void cpu::rope_tables(float* cosv, float* sinv, int pos, int D, const RopeParams& rope) {
  const int half = D / 2;
  for (int i = 0; i < half; i++) {
    const float power = std::pow(rope.theta, (float)(2 * i) / (float)D);
    const float inv_freq = rope_inv_freq_from_power(power, i, rope);
    const float angle = (float)pos * inv_freq;
    cosv[i] = std::cos(angle) * rope.attention_scale;
    sinv[i] = std::sin(angle) * rope.attention_scale;
  }
}

void cpu::rope_row(float* out, const float* x, const float* c, const float* s, int D,
                   bool inverse) {
  const int half = D / 2;
  const float sign = inverse ? -1.f : 1.f;
  for (int i = 0; i < half; i++) {
    const float x1 = x[i], x2 = x[i + half];  // read both first: out may alias in
    out[i] = x1 * c[i] - sign * x2 * s[i];
    out[i + half] = x2 * c[i] + sign * x1 * s[i];
  }
}

namespace {

// row(n, cos, sin) for every row n < N, with the rotation tables of its
// position (computed once a row: every head of the row shares them), rows
// split statically over the threads.
template <typename Row>
void for_each_rope_row(const int32_t* positions, int N, int D, const RopeParams& rope,
                       const Row& row) {
  const int half = D / 2;
#pragma omp parallel
  {
    std::vector<float> c(half), s(half);
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      cpu::rope_tables(c.data(), s.data(), positions[n], D, rope);
      row(n, c.data(), s.data());
    }
  }
}

// Applies rope_row to `heads` heads of every row (row n's heads start at
// n * stride); the rotation depends only on the row's position.
void rope_rows(float* out, int out_stride, const float* in, int in_stride,
               const int32_t* positions, int N, int heads, int D, const RopeParams& rope, bool inverse) {
  for_each_rope_row(positions, N, D, rope, [&](int n, const float* c, const float* s) {
    for (int h = 0; h < heads; h++)
      cpu::rope_row(out + (size_t)n * out_stride + (size_t)h * D,
                    in + (size_t)n * in_stride + (size_t)h * D, c, s, D, inverse);
  });
}

}  // namespace

void CpuOps::rope_forward(Buf out, CBuf in, const int32_t* positions, int N, int heads,
                          int head_dim, const RopeParams& rope) {
  rope_rows(out.f32(), heads * head_dim, in.f32(), heads * head_dim, positions, N, heads,
            head_dim, rope, /*inverse=*/false);
}

void CpuOps::rope_backward(Buf din, CBuf dout, const int32_t* positions, int N, int heads,
                           int head_dim, const RopeParams& rope) {
  if (!din) return;
  rope_rows(din.f32(), heads * head_dim, dout.f32(), heads * head_dim, positions, N, heads,
            head_dim, rope, /*inverse=*/true);
}

// q/k norm + RoPE, per token n and head h of q (and of k):
//   y = rmsnorm(x) * weight  (x: the head's D values, row n at n * in_stride)
//   out = R(pos_n) y
// backward: dy = R^T dout; dx = rstd * (g - x rstd^2 mean(g x)), g = dy * weight;
//           dweight += dy * x * rstd
// Composed from the same row helpers as rmsnorm_* and rope_*, so it is their
// composition exactly.
namespace {

void qk_norm_rope_one(float* out, float* rstd, const float* x, int in_stride, const float* weight,
                      const int32_t* positions, int N, int heads, int D, float eps, const RopeParams& rope) {
  for_each_rope_row(positions, N, D, rope, [&](int n, const float* c, const float* s) {
    for (int h = 0; h < heads; h++) {
      float* o = out + ((size_t)n * heads + h) * D;
      const float r = cpu::rmsnorm_row(o, x + (size_t)n * in_stride + (size_t)h * D, weight, D,
                                       eps);
      if (rstd) rstd[(size_t)n * heads + h] = r;
      cpu::rope_row(o, o, c, s, D, /*inverse=*/false);
    }
  });
}

void qk_norm_rope_one_backward(float* dx, float* dweight, const float* dout, const float* x,
                               int in_stride, const float* weight, const float* rstd,
                               const int32_t* positions, int N, int heads, int D, const RopeParams& rope) {
  // dy = R^T dout for every head, kept for the weight gradient.
  std::vector<float> dy((size_t)N * heads * D);
  rope_rows(dy.data(), heads * D, dout, heads * D, positions, N, heads, D, rope, true);
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
      for (int h = 0; h < heads; h++) {
        float* d = dx + (size_t)n * in_stride + (size_t)h * D;
        std::fill(d, d + D, 0.f);  // written, not added
        cpu::rmsnorm_row_backward(d, dy.data() + ((size_t)n * heads + h) * D,
                                  x + (size_t)n * in_stride + (size_t)h * D, weight,
                                  rstd[(size_t)n * heads + h], D);
      }
  }
  if (dweight) {  // one thread per column, rows in order
#pragma omp parallel for schedule(static)
    for (int c = 0; c < D; c++) {
      float acc = 0.f;
      for (int n = 0; n < N; n++)
        for (int h = 0; h < heads; h++)
          acc += dy[((size_t)n * heads + h) * D + c] *
                 (x[(size_t)n * in_stride + (size_t)h * D + c] * rstd[(size_t)n * heads + h]);
      dweight[c] += acc;
    }
  }
}

}  // namespace

void CpuOps::qk_norm_rope_forward(Buf q_out, Buf k_out, float* q_rstd, float* k_rstd, CBuf q,
                                  CBuf k, int in_stride, CBuf q_weight, CBuf k_weight,
                                  const int32_t* positions, int N, int heads, int kv_heads,
                                  int head_dim, float eps, const RopeParams& rope) {
  qk_norm_rope_one(q_out.f32(), q_rstd, q.f32(), in_stride, q_weight.f32(), positions, N, heads,
                   head_dim, eps, rope);
  qk_norm_rope_one(k_out.f32(), k_rstd, k.f32(), in_stride, k_weight.f32(), positions, N,
                   kv_heads, head_dim, eps, rope);
}

void CpuOps::qk_norm_rope_backward(Buf dq, Buf dk, float* dq_weight, float* dk_weight,
                                   CBuf dq_out, CBuf dk_out, CBuf q, CBuf k, int in_stride,
                                   CBuf q_weight, CBuf k_weight, const float* q_rstd,
                                   const float* k_rstd, const int32_t* positions, int N,
                                   int heads, int kv_heads, int head_dim, const RopeParams& rope) {
  qk_norm_rope_one_backward(dq.f32(), dq_weight, dq_out.f32(), q.f32(), in_stride,
                            q_weight.f32(), q_rstd, positions, N, heads, head_dim, rope);
  qk_norm_rope_one_backward(dk.f32(), dk_weight, dk_out.f32(), k.f32(), in_stride,
                            k_weight.f32(), k_rstd, positions, N, kv_heads, head_dim, rope);
}

}  // namespace polaris
