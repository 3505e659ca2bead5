// CpuOps: rotary position embedding and attention (training and decode).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "model/cpu_ops.h"

namespace polaris {

// ---- rotary position embedding -------------------------------------------------

// For every head of row n (position p = positions[n]) and i < D/2:
//   inv_freq_i = 1 / theta^(2i/D),  angle = p * inv_freq_i,  c = cos(angle), s = sin(angle)
//   out[i]       = x[i] * c - x[i + D/2] * s
//   out[i + D/2] = x[i + D/2] * c + x[i] * s
// backward (the transposed rotation):
//   din[i]       += dout[i] * c + dout[i + D/2] * s
//   din[i + D/2] += dout[i + D/2] * c - dout[i] * s
// Computed in float32 exactly as Hugging Face does (inv_freq, the angle and
// cos/sin all in float32), so logits match transformers' to ~1e-6.
namespace {

void rope_tables(std::vector<float>& cosv, std::vector<float>& sinv, int pos, int D,
                 float theta) {
  const int half = D / 2;
  for (int i = 0; i < half; i++) {
    const float inv_freq = 1.0f / std::pow(theta, (float)(2 * i) / (float)D);
    const float angle = (float)pos * inv_freq;
    cosv[i] = std::cos(angle);
    sinv[i] = std::sin(angle);
  }
}

}  // namespace

void CpuOps::rope_forward(float* out, const float* in, const int32_t* positions, int N,
                          int heads, int head_dim, float theta) {
  const int half = head_dim / 2;
#pragma omp parallel
  {
    std::vector<float> c(half), s(half);
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      rope_tables(c, s, positions[n], head_dim, theta);
      for (int h = 0; h < heads; h++) {
        const float* x = in + ((size_t)n * heads + h) * head_dim;
        float* o = out + ((size_t)n * heads + h) * head_dim;
        for (int i = 0; i < half; i++) {
          const float x1 = x[i], x2 = x[i + half];  // read both first: out may alias in
          o[i] = x1 * c[i] - x2 * s[i];
          o[i + half] = x2 * c[i] + x1 * s[i];
        }
      }
    }
  }
}

void CpuOps::rope_backward(float* din, const float* dout, const int32_t* positions, int N,
                           int heads, int head_dim, float theta) {
  if (!din) return;
  const int half = head_dim / 2;
#pragma omp parallel
  {
    std::vector<float> c(half), s(half);
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      rope_tables(c, s, positions[n], head_dim, theta);
      for (int h = 0; h < heads; h++) {
        const float* d = dout + ((size_t)n * heads + h) * head_dim;
        float* dx = din + ((size_t)n * heads + h) * head_dim;
        for (int i = 0; i < half; i++) {
          const float d1 = d[i], d2 = d[i + half];
          dx[i] += d1 * c[i] + d2 * s[i];
          dx[i + half] += d2 * c[i] - d1 * s[i];
        }
      }
    }
  }
}

// ---- attention -----------------------------------------------------------------

// Causal attention within documents, with grouped-query heads.
// Shapes: q, out [B*T, H*D]; k, v [B*T, KVH*D]; lse [B, H, T]; query head h
// reads kv head h / (H / KVH). Token t sees s in S(t) = {s <= t : doc[s] == doc[t]}.
//
// forward, per (b, h, t), with scale = 1/sqrt(D):
//   x_s = scale * q_t . k_s                 for s in S(t)
//   lse_t = log sum_s exp(x_s),  P_ts = exp(x_s - lse_t)
//   out_t = sum_s P_ts v_s
// backward, recomputing P from lse (flash-attention style):
//   Delta_t = dout_t . out_t                (= sum_s P_ts dP_ts)
//   dP_ts = dout_t . v_s
//   dS_ts = P_ts (dP_ts - Delta_t)
//   dq_t += scale * sum_s dS_ts k_s
//   dk_s += scale * sum_t dS_ts q_t         (summed over the group's query heads)
//   dv_s += sum_t P_ts dout_t               (summed over the group's query heads)
// Forward is parallel over (b, h). Backward is parallel over (b, kv head): the
// group's query heads are looped inside, so the dk/dv sums have a fixed order.
namespace {

inline bool visible(const int32_t* doc, int s, int t) { return !doc || doc[s] == doc[t]; }

inline float dotf(const float* a, const float* b, int D) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int d = 0; d < D; d++) s += a[d] * b[d];
  return s;
}

}  // namespace

void CpuOps::attention_forward(float* out, float* lse, const float* q, const float* k,
                               const float* v, const int32_t* doc_ids,
                               const AttentionShape& sh) {
  const int B = sh.B, T = sh.T, H = sh.num_heads, KVH = sh.num_kv_heads, D = sh.head_dim;
  const int group = H / KVH;
  const size_t qstride = (size_t)H * D, kvstride = (size_t)KVH * D;
  const float scale = 1.f / std::sqrt((float)D);
#pragma omp parallel
  {
    std::vector<float> p(T);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        const int kvh = h / group;
        const int32_t* doc = doc_ids ? doc_ids + (size_t)b * T : nullptr;
        for (int t = 0; t < T; t++) {
          const float* qt = q + ((size_t)b * T + t) * qstride + (size_t)h * D;
          float maxv = -INFINITY;
          for (int s = 0; s <= t; s++) {
            if (!visible(doc, s, t)) { p[s] = -INFINITY; continue; }
            const float* ks = k + ((size_t)b * T + s) * kvstride + (size_t)kvh * D;
            p[s] = scale * dotf(qt, ks, D);
            maxv = std::max(maxv, p[s]);
          }
          float sum = 0.f;
          for (int s = 0; s <= t; s++) {
            p[s] = std::exp(p[s] - maxv);  // masked: exp(-inf) = 0
            sum += p[s];
          }
          const float inv = 1.f / sum;
          float* ot = out + ((size_t)b * T + t) * qstride + (size_t)h * D;
          for (int d = 0; d < D; d++) ot[d] = 0.f;
          for (int s = 0; s <= t; s++) {
            if (p[s] == 0.f) continue;
            const float* vs = v + ((size_t)b * T + s) * kvstride + (size_t)kvh * D;
            const float w = p[s] * inv;
#pragma omp simd
            for (int d = 0; d < D; d++) ot[d] += w * vs[d];
          }
          if (lse) lse[((size_t)b * H + h) * T + t] = maxv + std::log(sum);
        }
      }
    }
  }
}

void CpuOps::attention_backward(float* dq, float* dk, float* dv, const float* dout,
                                const float* q, const float* k, const float* v, const float* out,
                                const float* lse, const int32_t* doc_ids,
                                const AttentionShape& sh) {
  const int B = sh.B, T = sh.T, H = sh.num_heads, KVH = sh.num_kv_heads, D = sh.head_dim;
  const int group = H / KVH;
  const size_t qstride = (size_t)H * D, kvstride = (size_t)KVH * D;
  const float scale = 1.f / std::sqrt((float)D);
#pragma omp parallel
  {
    std::vector<float> dk_acc((size_t)T * D), dv_acc((size_t)T * D), dq_acc(D);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int kvh = 0; kvh < KVH; kvh++) {
        const int32_t* doc = doc_ids ? doc_ids + (size_t)b * T : nullptr;
        std::fill(dk_acc.begin(), dk_acc.end(), 0.f);
        std::fill(dv_acc.begin(), dv_acc.end(), 0.f);
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
          for (int t = 0; t < T; t++) {
            const size_t qoff = ((size_t)b * T + t) * qstride + (size_t)h * D;
            const float* qt = q + qoff;
            const float* dot_ = dout + qoff;
            const float delta = dotf(dot_, out + qoff, D);
            const float lse_t = lse[((size_t)b * H + h) * T + t];
            std::fill(dq_acc.begin(), dq_acc.end(), 0.f);
            for (int s = 0; s <= t; s++) {
              if (!visible(doc, s, t)) continue;
              const size_t kvoff = ((size_t)b * T + s) * kvstride + (size_t)kvh * D;
              const float* ks = k + kvoff;
              const float* vs = v + kvoff;
              const float P = std::exp(scale * dotf(qt, ks, D) - lse_t);
              const float dS = P * (dotf(dot_, vs, D) - delta);
              float* dks = &dk_acc[(size_t)s * D];
              float* dvs = &dv_acc[(size_t)s * D];
              float* dqa = dq_acc.data();
#pragma omp simd
              for (int d = 0; d < D; d++) {
                dqa[d] += dS * ks[d];
                dks[d] += dS * qt[d];
                dvs[d] += P * dot_[d];
              }
            }
            if (dq)
              for (int d = 0; d < D; d++) dq[qoff + d] += scale * dq_acc[d];
          }
        }
        for (int s = 0; s < T; s++) {
          const size_t kvoff = ((size_t)b * T + s) * kvstride + (size_t)kvh * D;
          for (int d = 0; d < D; d++) {
            if (dk) dk[kvoff + d] += scale * dk_acc[(size_t)s * D + d];
            if (dv) dv[kvoff + d] += dv_acc[(size_t)s * D + d];
          }
        }
      }
    }
  }
}

// ---- decoding with a KV cache ------------------------------------------------------

// table[row_index[i], :] = rows[i, :]
void CpuOps::scatter_rows(float* table, const float* rows, const int32_t* row_index, int n,
                          int width) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++)
    std::memcpy(table + (size_t)row_index[i] * width, rows + (size_t)i * width,
                (size_t)width * sizeof(float));
}

// One query per sequence s against the first L = lengths[s] cached rows:
//   x_j = scale * q_s . k_j,  out_s = sum_j softmax(x)_j v_j   (j < L)
// Same arithmetic, in the same order, as one row of attention_forward, so a
// decoded token matches the full forward pass bitwise.
void CpuOps::attention_decode(float* out, const float* q, const float* k_cache,
                              const float* v_cache, const int32_t* lengths, int S, int max_len,
                              int num_heads, int num_kv_heads, int head_dim) {
  const int H = num_heads, KVH = num_kv_heads, D = head_dim, group = H / KVH;
  const size_t kvstride = (size_t)KVH * D;
  const float scale = 1.f / std::sqrt((float)D);
#pragma omp parallel
  {
    std::vector<float> p(max_len);
#pragma omp for collapse(2) schedule(static)
    for (int s = 0; s < S; s++) {
      for (int h = 0; h < H; h++) {
        const int kvh = h / group, L = lengths[s];
        const float* qs = q + ((size_t)s * H + h) * D;
        const float* kc = k_cache + (size_t)s * max_len * kvstride + (size_t)kvh * D;
        const float* vc = v_cache + (size_t)s * max_len * kvstride + (size_t)kvh * D;
        float maxv = -INFINITY;
        for (int j = 0; j < L; j++) {
          p[j] = scale * dotf(qs, kc + (size_t)j * kvstride, D);
          maxv = std::max(maxv, p[j]);
        }
        float sum = 0.f;
        for (int j = 0; j < L; j++) {
          p[j] = std::exp(p[j] - maxv);
          sum += p[j];
        }
        const float inv = 1.f / sum;
        float* os = out + ((size_t)s * H + h) * D;
        for (int d = 0; d < D; d++) os[d] = 0.f;
        for (int j = 0; j < L; j++) {
          if (p[j] == 0.f) continue;
          const float w = p[j] * inv;
          const float* vj = vc + (size_t)j * kvstride;
#pragma omp simd
          for (int d = 0; d < D; d++) os[d] += w * vj[d];
        }
      }
    }
  }
}

}  // namespace polaris
