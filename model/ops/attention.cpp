// CpuOps: causal attention (training) and KV-cache attention (decoding).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "model/cpu_ops.h"

namespace polaris {

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
//   dq_t = scale * sum_s dS_ts k_s          (gradients written, not added)
//   dk_s = scale * sum_t dS_ts q_t          (summed over the group's query heads)
//   dv_s = sum_t P_ts dout_t                (summed over the group's query heads)
// q, k, v (and dq, dk, dv) rows are shape.q_row() / k_row() / v_row() apart
// (column ranges of the fused qkv projection); out and dout are dense.
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

void CpuOps::attention_forward(Buf out_buf, float* lse, CBuf q_buf, CBuf k_buf, CBuf v_buf,
                               const int32_t* doc_ids, const AttentionShape& sh) {
  const int B = sh.B, T = sh.T, H = sh.num_heads, KVH = sh.num_kv_heads, D = sh.head_dim;
  const int group = H / KVH;
  float* out = out_buf.f32();
  const float *q = q_buf.f32(), *k = k_buf.f32(), *v = v_buf.f32();
  const size_t qstride = sh.q_row(), kstride = sh.k_row(), vstride = sh.v_row();
  const size_t ostride = (size_t)H * D;
  const float scale = 1.f / std::sqrt((float)D);
#pragma omp parallel
  {
    std::vector<float> p(T);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        const int kvh = h / group;
        const int32_t* doc = doc_ids ? doc_ids + (size_t)b * T : nullptr;
        int first = 0;  // the first key of t's document (documents are contiguous runs)
        for (int t = 0; t < T; t++) {
          if (doc && t > 0 && doc[t] != doc[t - 1]) first = t;
          const float* qt = q + ((size_t)b * T + t) * qstride + (size_t)h * D;
          float maxv = -INFINITY;
          // Keys before `first` are masked: they would add exact zeros (sum
          // starts at 0.f, +0.f keeps its bits), so starting there changes no
          // bit, and a packed prefill of many prompts costs the sum of their
          // squares, not the square of the sum.
          for (int s = first; s <= t; s++) {
            if (!visible(doc, s, t)) { p[s] = -INFINITY; continue; }
            const float* ks = k + ((size_t)b * T + s) * kstride + (size_t)kvh * D;
            p[s] = scale * dotf(qt, ks, D);
            maxv = std::max(maxv, p[s]);
          }
          float sum = 0.f;
          for (int s = first; s <= t; s++) {
            p[s] = std::exp(p[s] - maxv);  // masked: exp(-inf) = 0
            sum += p[s];
          }
          const float inv = 1.f / sum;
          float* ot = out + ((size_t)b * T + t) * ostride + (size_t)h * D;
          for (int d = 0; d < D; d++) ot[d] = 0.f;
          for (int s = first; s <= t; s++) {
            if (p[s] == 0.f) continue;
            const float* vs = v + ((size_t)b * T + s) * vstride + (size_t)kvh * D;
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

void CpuOps::attention_backward(Buf dq_buf, Buf dk_buf, Buf dv_buf, CBuf dout_buf, CBuf q_buf,
                                CBuf k_buf, CBuf v_buf, CBuf out_buf, const float* lse,
                                const int32_t* doc_ids, const AttentionShape& sh) {
  const int B = sh.B, T = sh.T, H = sh.num_heads, KVH = sh.num_kv_heads, D = sh.head_dim;
  const int group = H / KVH;
  float *dq = dq_buf.f32(), *dk = dk_buf.f32(), *dv = dv_buf.f32();
  const float *dout = dout_buf.f32(), *q = q_buf.f32(), *k = k_buf.f32(), *v = v_buf.f32();
  const float* out = out_buf.f32();
  const size_t qstride = sh.q_row(), kstride = sh.k_row(), vstride = sh.v_row();
  const size_t ostride = (size_t)H * D;
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
            const size_t ooff = ((size_t)b * T + t) * ostride + (size_t)h * D;
            const float* qt = q + qoff;
            const float* dot_ = dout + ooff;
            const float delta = dotf(dot_, out + ooff, D);
            const float lse_t = lse[((size_t)b * H + h) * T + t];
            std::fill(dq_acc.begin(), dq_acc.end(), 0.f);
            for (int s = 0; s <= t; s++) {
              if (!visible(doc, s, t)) continue;
              const float* ks = k + ((size_t)b * T + s) * kstride + (size_t)kvh * D;
              const float* vs = v + ((size_t)b * T + s) * vstride + (size_t)kvh * D;
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
              for (int d = 0; d < D; d++) dq[qoff + d] = scale * dq_acc[d];
          }
        }
        for (int s = 0; s < T; s++) {
          const size_t koff = ((size_t)b * T + s) * kstride + (size_t)kvh * D;
          const size_t voff = ((size_t)b * T + s) * vstride + (size_t)kvh * D;
          for (int d = 0; d < D; d++) {
            if (dk) dk[koff + d] = scale * dk_acc[(size_t)s * D + d];
            if (dv) dv[voff + d] = dv_acc[(size_t)s * D + d];
          }
        }
      }
    }
  }
}

// ---- decoding with a KV cache ------------------------------------------------------

// table[row_index[i], :] = rows[i * rows_stride + (0..width-1)]
void CpuOps::scatter_rows(Buf table, CBuf rows, int rows_stride, const int32_t* row_index, int n,
                          int width) {
  float* t = table.f32();
  const float* r = rows.f32();
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++)
    if (row_index[i] >= 0)
      std::memcpy(t + (size_t)row_index[i] * width, r + (size_t)i * rows_stride,
                  (size_t)width * sizeof(float));
}

// One query per sequence s against its L = lengths[s] cached rows, row j
// read through the block table (block j / block_size, row j % block_size):
//   x_j = scale * q_s . k_j,  out_s = sum_j softmax(x)_j v_j   (j < L)
// Same arithmetic, in the same order, as one row of attention_forward, so a
// decoded token matches the packed prefill bitwise: a sequence's tokens do
// not depend on whether its keys came from a prefill, a decode step or a
// recomputation after preemption.
void CpuOps::attention_decode(Buf out_buf, CBuf q_buf, int q_stride, const PagedKV& cache, int S,
                              int num_heads, int num_kv_heads, int head_dim) {
  float* out = out_buf.f32();
  const float *q = q_buf.f32(), *k_pool = cache.keys.f32(), *v_pool = cache.values.f32();
  const int H = num_heads, KVH = num_kv_heads, D = head_dim, group = H / KVH;
  const int bs = cache.block_size;
  const size_t kvstride = (size_t)KVH * D;
  const float scale = 1.f / std::sqrt((float)D);
  int longest = 0;
  for (int s = 0; s < S; s++) longest = std::max(longest, cache.lengths[s]);
#pragma omp parallel
  {
    std::vector<float> p(longest);
    std::vector<size_t> row(longest);  // pool row offset of key j
#pragma omp for collapse(2) schedule(static)
    for (int s = 0; s < S; s++) {
      for (int h = 0; h < H; h++) {
        const int kvh = h / group, L = cache.lengths[s];
        const int32_t* blocks = cache.block_table + (size_t)s * cache.table_width;
        for (int j = 0; j < L; j++)
          row[j] = ((size_t)blocks[j / bs] * bs + j % bs) * kvstride + (size_t)kvh * D;
        const float* qs = q + (size_t)s * q_stride + (size_t)h * D;
        float maxv = -INFINITY;
        for (int j = 0; j < L; j++) {
          p[j] = scale * dotf(qs, k_pool + row[j], D);
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
          const float* vj = v_pool + row[j];
#pragma omp simd
          for (int d = 0; d < D; d++) os[d] += w * vj[d];
        }
      }
    }
  }
}

}  // namespace polaris
