// CpuOps: memory, elementwise ops, embedding, normalisation, activations,
// the loss and the optimizer. (Linear layers: cpu_ops_matmul.cpp; rope and
// attention: cpu_ops_attention.cpp.) See model/cpu_ops.h for the determinism rule.
#include "model/cpu_ops.h"
#include "src/common/error.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace polaris {

namespace {

// Column-chunk width for parameter-gradient sums over rows: each thread owns
// a chunk of columns and walks the rows in order (deterministic, and each
// row segment it reads is contiguous).
constexpr int kColChunk = 64;

// Elementwise loops shorter than this run on one thread: starting a
// parallel region costs more than the work, and on a busy machine waiting
// threads can stall far longer than that.
constexpr size_t kParallelMin = size_t(1) << 15;

inline int num_chunks(int n, int chunk) { return (n + chunk - 1) / chunk; }

}  // namespace

// ---- memory ------------------------------------------------------------------

float* CpuOps::alloc(size_t n) {
  void* p = std::calloc(n ? n : 1, sizeof(float));
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

int32_t* CpuOps::alloc_int(size_t n) {
  void* p = std::calloc(n ? n : 1, sizeof(int32_t));
  if (!p) throw std::bad_alloc();
  return static_cast<int32_t*>(p);
}

void CpuOps::release(void* p) { std::free(p); }

void CpuOps::upload(float* dst, const float* src, size_t n) {
  if (n) std::memcpy(dst, src, n * sizeof(float));
}
void CpuOps::upload_int(int32_t* dst, const int32_t* src, size_t n) {
  if (n) std::memcpy(dst, src, n * sizeof(int32_t));
}
void CpuOps::download(float* dst, const float* src, size_t n) {
  if (n) std::memcpy(dst, src, n * sizeof(float));
}
void CpuOps::zero(float* p, size_t n) {
  if (n) std::memset(p, 0, n * sizeof(float));
}
void CpuOps::copy(float* dst, const float* src, size_t n) {
  if (n && dst != src) std::memmove(dst, src, n * sizeof(float));
}

// ---- elementwise -------------------------------------------------------------

// out = a + b (out may alias a or b: each element is read before it is written)
void CpuOps::add(float* out, const float* a, const float* b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// dst += src
void CpuOps::accumulate(float* dst, const float* src, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// x *= s
void CpuOps::scale(float* x, float s, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

// sum_i x_i^2 in double. Fixed chunks of kChunk elements are summed
// sequentially, then the partials are summed in chunk order: the same bits for
// any thread count.
double CpuOps::sum_squares(const float* x, size_t n) {
  constexpr size_t kChunk = 1 << 14;
  const size_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    const size_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
    double s = 0.0;
    for (size_t i = lo; i < hi; i++) s += (double)x[i] * (double)x[i];
    partial[c] = s;
  }
  double total = 0.0;
  for (size_t c = 0; c < chunks; c++) total += partial[c];
  return total;
}

// ---- embedding ---------------------------------------------------------------

// forward:  out[i, :] = token_table[tokens[i], :] (+ position_table[positions[i], :])
// backward: dtoken_table[tokens[i], :] += dout[i, :]
//           dposition_table[positions[i], :] += dout[i, :]
// The backward is a scatter-add: parallel over column chunks, rows in order,
// so repeated tokens accumulate in the same order for any thread count.
void CpuOps::embedding_forward(float* out, const int32_t* tokens, const int32_t* positions,
                               const float* token_table, const float* position_table, int N,
                               int C) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    float* o = out + (size_t)i * C;
    const float* te = token_table + (size_t)tokens[i] * C;
    if (position_table) {
      const float* pe = position_table + (size_t)positions[i] * C;
      for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    } else {
      for (int c = 0; c < C; c++) o[c] = te[c];
    }
  }
}

void CpuOps::embedding_backward(float* dtoken_table, float* dposition_table, const float* dout,
                                const int32_t* tokens, const int32_t* positions, int N, int C) {
  if (!dtoken_table && !dposition_table) return;
  const int chunks = num_chunks(C, kColChunk);
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < chunks; ch++) {
    const int c0 = ch * kColChunk, c1 = std::min(C, c0 + kColChunk);
    for (int i = 0; i < N; i++) {
      const float* d = dout + (size_t)i * C;
      if (dtoken_table) {
        float* dt = dtoken_table + (size_t)tokens[i] * C;
        for (int c = c0; c < c1; c++) dt[c] += d[c];
      }
      if (dposition_table && positions) {
        float* dp = dposition_table + (size_t)positions[i] * C;
        for (int c = c0; c < c1; c++) dp[c] += d[c];
      }
    }
  }
}

// ---- LayerNorm ---------------------------------------------------------------

// forward (per row x of C values):
//   mean = sum(x)/C, var = sum((x-mean)^2)/C, rstd = 1/sqrt(var + eps)
//   xhat = (x - mean) * rstd,  out = xhat * weight + bias
// backward (g = dout * weight):
//   din   += rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dweight += sum_rows(dout * xhat),  dbias += sum_rows(dout)
// Row statistics are accumulated in double.
void CpuOps::layernorm_forward(float* out, float* mean, float* rstd, const float* in,
                               const float* weight, const float* bias, int N, int C,
                               float eps) {
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

void CpuOps::layernorm_backward(float* din, float* dweight, float* dbias, const float* dout,
                                const float* in, const float* weight, const float* mean,
                                const float* rstd, int N, int C) {
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

// ---- RMSNorm -----------------------------------------------------------------

// forward (per row x of C values):
//   rstd = 1/sqrt(sum(x^2)/C + eps),  out = x * rstd * weight
// backward (g = dout * weight):
//   din     += rstd * (g - x * rstd^2 * mean(g * x))
//   dweight += sum_rows(dout * x * rstd)
void CpuOps::rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight,
                             int N, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float* x = in + (size_t)i * C;
    double ss = 0.0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    const float r = (float)(1.0 / std::sqrt(ss / C + (double)eps));
    float* o = out + (size_t)i * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] * r) * weight[c];
    if (rstd) rstd[i] = r;
  }
}

void CpuOps::rmsnorm_backward(float* din, float* dweight, const float* dout, const float* in,
                              const float* weight, const float* rstd, int N, int C) {
  if (din) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
      const float* x = in + (size_t)i * C;
      const float* d = dout + (size_t)i * C;
      const float r = rstd[i];
      double gx = 0.0;
      for (int c = 0; c < C; c++) gx += (double)(d[c] * weight[c]) * x[c];
      const float k = (float)(gx / C) * r * r;
      float* dx = din + (size_t)i * C;
      for (int c = 0; c < C; c++) dx[c] += r * (d[c] * weight[c] - x[c] * k);
    }
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

// ---- activations -------------------------------------------------------------

// GELU, tanh approximation:
//   u = sqrt(2/pi) * (x + 0.044715 x^3),  out = 0.5 x (1 + tanh(u))
//   dout/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3*0.044715 x^2)
// backward: din += dout * dout/dx
namespace {
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
}

void CpuOps::gelu_forward(float* out, const float* in, size_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    const float x = in[i];
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    out[i] = 0.5f * x * (1.f + std::tanh(u));
  }
}

void CpuOps::gelu_backward(float* din, const float* dout, const float* in, size_t n) {
  if (!din) return;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    const float x = in[i];
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    const float t = std::tanh(u);
    const float grad = 0.5f * (1.f + t) +
                       0.5f * x * (1.f - t * t) * kGeluScale * (1.f + 3.f * 0.044715f * x * x);
    din[i] += dout[i] * grad;
  }
}

// SwiGLU: s = sigmoid(gate), silu = gate * s, out = silu * up
// backward: dup   += dout * silu
//           dgate += dout * up * s * (1 + gate * (1 - s))
void CpuOps::swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    const float g = gate[i];
    const float s = 1.f / (1.f + std::exp(-g));
    out[i] = (g * s) * up[i];
  }
}

void CpuOps::swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                             const float* up, size_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    const float g = gate[i];
    const float s = 1.f / (1.f + std::exp(-g));
    if (dup) dup[i] += dout[i] * (g * s);
    if (dgate) dgate[i] += dout[i] * up[i] * (s * (1.f + g * (1.f - s)));
  }
}

// ---- loss --------------------------------------------------------------------

// Weighted next-token cross-entropy with an optional entropy term (see LossArgs):
//   lse = log sum_j exp(l_j),  log p_j = l_j - lse,  logprob = log p[target]
//   H = -sum_j p_j log p_j = lse - sum_j p_j l_j
//   loss = w * (-logprob) - ew * H
//   dlogits_j = scale * (w * (p_j - [j == target]) + ew * p_j * (log p_j + H))
// One row per iteration (parallel over rows). Row sums are in double. The
// gradient loop reads l_j and then writes dlogits_j at the same index, so
// dlogits may alias logits. weights null is read as all ones.
void CpuOps::cross_entropy(const LossArgs& a) {
  const int N = a.N, V = a.V;
  for (int i = 0; i < N; i++)
    require(a.targets[i] < V, "cross_entropy: target " + std::to_string(a.targets[i]) +
                                  " out of range for vocabulary size " + std::to_string(V));
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float* l = a.logits + (size_t)i * V;
    float* dl = a.dlogits ? a.dlogits + (size_t)i * V : nullptr;
    const int target = a.targets[i];
    if (target < 0) {  // ignored row
      a.losses[i] = 0.f;
      if (a.logprobs) a.logprobs[i] = 0.f;
      if (a.entropies) a.entropies[i] = 0.f;
      if (dl) std::memset(dl, 0, (size_t)V * sizeof(float));
      continue;
    }
    float maxv = l[0];
    for (int j = 1; j < V; j++) maxv = std::max(maxv, l[j]);
    double sum = 0.0, sum_el = 0.0;
    for (int j = 0; j < V; j++) {
      const double e = std::exp((double)l[j] - maxv);
      sum += e;
      sum_el += e * ((double)l[j] - maxv);
    }
    const double lse = maxv + std::log(sum);
    const double H = std::log(sum) - sum_el / sum;  // lse - sum p l, shifted by maxv
    const double logprob = (double)l[target] - lse;
    const float w = a.weights ? a.weights[i] : 1.f;
    const float ew = a.entropy_weights ? a.entropy_weights[i] : 0.f;
    a.losses[i] = (float)(w * -logprob - ew * H);
    if (a.logprobs) a.logprobs[i] = (float)logprob;
    if (a.entropies) a.entropies[i] = (float)H;
    if (dl) {
      for (int j = 0; j < V; j++) {
        const double logp = (double)l[j] - lse;
        const double p = std::exp(logp);
        double g = w * (p - (j == target ? 1.0 : 0.0));
        if (ew != 0.f) g += ew * p * (logp + H);
        dl[j] = (float)(a.scale * g);
      }
    }
  }
}

// ---- optimizer ---------------------------------------------------------------

// AdamW (decoupled weight decay), step t (1-based):
//   g = grad * grad_scale
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   mhat = m / (1 - beta1^t);      vhat = v / (1 - beta2^t)
//   param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param)
void CpuOps::adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                          const AdamWArgs& a) {
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

}  // namespace polaris
