// CudaOps: rotary position embedding (RoPE) and Qwen3's fused per-head q/k
// RMSNorm + RoPE.
//
// ---- the math ----------------------------------------------------------------
// RoPE ("rotate_half", Qwen/Llama): for every head of token n (position
// p = positions[n]) and pair i < D/2 of its D = head_dim values:
//   inv_freq_i = 1 / theta^(2i/D)  (or YaRN's per-pair blend, model/rope.h)
//   angle = p * inv_freq_i,  c = cos(angle) m,  s = sin(angle) m
//   (m: YaRN's attention factor, 1 for plain RoPE)
//   out[i]       = x[i] c - x[i + D/2] s
//   out[i + D/2] = x[i + D/2] c + x[i] s
// backward, the transposed rotation R^T (din written):
//   din[i]       = d[i] c + d[i + D/2] s
//   din[i + D/2] = d[i + D/2] c - d[i] s
// The frequencies are computed as the CPU reference does (exponent 2i/D in
// fp32, the power rounded to fp32, 1/x in fp32; the CPU's powf and our
// double-precision pow rounded to fp32 agree bitwise for the usual theta and D),
// so the fp32 angle p * inv_freq has the same bits on both sides and only
// cos/sin differ (a few fp32 ulps). Were inv_freq off by one ulp, the angle
// would be off by p * 2^-24 relative — 2.4e-4 rad at p = 4000 — which is why
// the table is not computed with powf's 2-ulp device version. YaRN's blend is
// the shared host/device rope_inv_freq_from_power, with explicit roundings.
//
// q/k norm + RoPE (Qwen3), per (token, head) row x of D values read with row
// stride in_stride (q and k are column ranges of the fused qkv projection):
//   rstd = 1 / sqrt(mean(x^2) + eps);  y = (x rstd) w;  out = R y   (bf16, dense)
// backward, with dy = R^T dout:
//   g = dy w;  din = rstd (g - x rstd^2 mean(g x))       (written, stride in_stride)
//   dw += sum over all rows (token, head) of dy x rstd   (fp32, accumulated)
// The normalised y stays in fp32 registers: the output is rounded to bf16 once.
//
// ---- the decomposition ---------------------------------------------------------
// rope_forward / rope_backward (one kernel, `inverse` flips the sign of sin):
//   a grid-stride loop over (token, pair i); each thread computes sin/cos once
//   and rotates that pair in every head of the token. For a fixed head,
//   consecutive threads touch consecutive bf16 values (coalesced). The
//   inv_freq table (D/2 floats) is built once per block in shared memory.
// qk_norm_rope forward: one warp per (token, head) row, 8 rows per 256-thread
//   block; lane l holds pairs i = l, l + 32, ... (D <= 256: at most 4 pairs per
//   lane, in registers). Sum of squares by warp_sum, then normalise, scale,
//   rotate, store. q rows [0, N*H) then k rows [N*H, N*H + N*KVH).
// qk_norm_rope backward: the same warp-per-row layout; each block owns a
//   fixed chunk of 64 consecutive rows of q or of k (never both), each lane
//   sums dy x rstd of its columns over its warp's rows in registers, the 8
//   warps are summed in shared memory in warp order and the block's [D]
//   partial goes to scratch; a second kernel adds the partials of each column
//   in block order (one block per column, fixed-order block_sum) into dw. The
//   chunking depends on N, H, KVH only, so the bits are the same on any GPU.
//
// ---- bytes, flops, roofline (H100: 3.35 TB/s HBM, 989 TFLOP/s bf16) -------------
// RoPE: 2 B read + 2 B written per element, ~3 flops per element plus one
//   sincos per (token, pair) — ~0.75 flop/B, far below the ridge (~300 flop/B
//   for bf16 tensor cores, ~20 for fp32 CUDA cores): memory bound. N = 16384,
//   H = 16, D = 128: 33.5M elements, 134 MB moved, ~40 us at 3.35 TB/s.
// q/k norm + RoPE forward: per element 2 B in, 2 B out (weights and positions
//   are cached), ~8 flops + one sincos per pair: memory bound. Qwen3-0.6B-like
//   N = 16384, H = 16, KVH = 8, D = 128: 50M elements, 200 MB, ~60 us.
// backward: 2 B dout + 2 B x in, 2 B din out per element, plus the partials
//   (4 B * D per 64 rows, ~1/100 of the traffic): ~300 MB, ~90 us.
// Limits: head_dim even; <= 512 for rope, <= 256 for qk_norm_rope.
#include <cuda_runtime.h>

#include <string>

#include "cuda/context.cuh"

namespace polaris {

namespace {

constexpr int kRopeThreads = 256;
constexpr int kRopeMaxHalf = 256;  // rope_forward/backward: head_dim <= 512
static_assert(kRopeThreads % 32 == 0, "whole warps");

constexpr int kQkThreads = 256;
constexpr int kQkWarps = kQkThreads / 32;           // rows in flight per block
constexpr int kQkPairsPerLane = 4;                  // head_dim <= 2 * 32 * 4 = 256
constexpr int kQkMaxHeadDim = 2 * 32 * kQkPairsPerLane;
constexpr int kQkRowsPerWarp = 8;                   // backward: rows a warp sums
constexpr int kQkRowsPerBlock = kQkWarps * kQkRowsPerWarp;  // backward row chunk
constexpr int kFinalizeThreads = 256;
static_assert(kQkThreads % 32 == 0 && kQkThreads <= 1024, "whole warps");
static_assert(kFinalizeThreads % 32 == 0, "block_sum needs whole warps");

// inv_freq_i with the CPU reference's roundings: the exponent 2i/D is an fp32
// quotient, the power theta^(2i/D) is rounded to fp32 (computed in double so it
// is the correctly rounded fp32 value, as glibc's powf gives), then the
// reciprocal (or YaRN's blend) in IEEE fp32.
__device__ __forceinline__ float rope_inv_freq(int i, int D, const RopeParams& rope) {
  const float e = (float)(2 * i) / (float)D;
  const float p = (float)pow((double)rope.theta, (double)e);
  return rope_inv_freq_from_power(p, i, rope);
}

// Fills table[0, half) with inv_freq; every thread of the block must call it.
__device__ __forceinline__ void fill_inv_freq(float* table, int half, int D,
                                              const RopeParams& rope) {
  for (int i = threadIdx.x; i < half; i += blockDim.x) table[i] = rope_inv_freq(i, D, rope);
  __syncthreads();
}

// cos and sin of `angle`, times the attention scale.
__device__ __forceinline__ void scaled_sincos(float angle, float scale, float* s, float* c) {
  sincosf(angle, s, c);
  *s *= scale;
  *c *= scale;
}

// Offset of element `col` of head `head` of token `token` in a buffer whose
// rows (tokens) are `row_stride` elements apart.
__host__ __device__ __forceinline__ size_t head_offset(int token, int head, int D,
                                                       size_t row_stride) {
  return (size_t)token * row_stride + (size_t)head * D;
}

// One (token, pair) per thread iteration, looping over the heads.
// inverse = false: out = R x; inverse = true: out = R^T x. out may alias in
// (each element is read before it is written, by the same thread).
__global__ __launch_bounds__(kRopeThreads) void rope_kernel(bf16* out, const bf16* in,
                                                            const int32_t* positions, int N,
                                                            int heads, int D, RopeParams rope,
                                                            bool inverse) {
  __shared__ float inv_freq[kRopeMaxHalf];
  const int half = D / 2;
  fill_inv_freq(inv_freq, half, D, rope);
  const size_t items = (size_t)N * half;
  const size_t row = (size_t)heads * D;
  for (size_t item = (size_t)blockIdx.x * blockDim.x + threadIdx.x; item < items;
       item += (size_t)gridDim.x * blockDim.x) {
    const int n = (int)(item / half), i = (int)(item % half);
    const float angle = (float)positions[n] * inv_freq[i];
    float s, c;
    scaled_sincos(angle, rope.attention_scale, &s, &c);
    if (inverse) s = -s;
    for (int h = 0; h < heads; ++h) {
      const size_t base = head_offset(n, h, D, row);
      const float x1 = to_f32(in[base + i]), x2 = to_f32(in[base + i + half]);
      out[base + i] = to_bf16(x1 * c - x2 * s);
      out[base + i + half] = to_bf16(x2 * c + x1 * s);
    }
  }
}

// Which (token, head) of q or k the fused kernels' row r is: q rows
// [0, N*H) in token-major order, then k rows [N*H, N*H + N*KVH).
struct QkRow {
  bool is_k;
  int token, head;
  size_t dense;  // index of the row in q_out/q_rstd (or k_out/k_rstd)
};
__host__ __device__ __forceinline__ QkRow qk_row(size_t r, int N, int H, int KVH) {
  const size_t q_rows = (size_t)N * H;
  QkRow row;
  row.is_k = r >= q_rows;
  row.dense = row.is_k ? r - q_rows : r;
  const int heads = row.is_k ? KVH : H;
  row.token = (int)(row.dense / heads);
  row.head = (int)(row.dense % heads);
  return row;
}

struct QkForwardArgs {
  bf16* q_out;
  bf16* k_out;
  float* q_rstd;
  float* k_rstd;
  const bf16* q;
  const bf16* k;
  int in_stride;
  const bf16* q_weight;
  const bf16* k_weight;
  const int32_t* positions;
  int N, H, KVH, D;
  float eps;
  RopeParams rope;
};

__global__ __launch_bounds__(kQkThreads) void qk_norm_rope_forward_kernel(QkForwardArgs a) {
  __shared__ float inv_freq[kQkMaxHeadDim / 2];
  const int D = a.D, half = D / 2;
  fill_inv_freq(inv_freq, half, D, a.rope);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const size_t rows = (size_t)a.N * (a.H + a.KVH);
  for (size_t r = (size_t)blockIdx.x * kQkWarps + warp; r < rows;
       r += (size_t)gridDim.x * kQkWarps) {
    const QkRow row = qk_row(r, a.N, a.H, a.KVH);
    const bf16* x = (row.is_k ? a.k : a.q) + head_offset(row.token, row.head, D, a.in_stride);
    const bf16* w = row.is_k ? a.k_weight : a.q_weight;
    bf16* o = (row.is_k ? a.k_out : a.q_out) + row.dense * D;
    float x1[kQkPairsPerLane], x2[kQkPairsPerLane];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < kQkPairsPerLane; ++k) {
      const int i = lane + 32 * k;
      x1[k] = i < half ? to_f32(x[i]) : 0.f;
      x2[k] = i < half ? to_f32(x[i + half]) : 0.f;
      ss += x1[k] * x1[k] + x2[k] * x2[k];
    }
    ss = warp_sum(ss);
    const float rstd = (float)(1.0 / sqrt((double)ss / D + (double)a.eps));
    if (lane == 0) {
      float* rstd_out = row.is_k ? a.k_rstd : a.q_rstd;
      if (rstd_out) rstd_out[row.dense] = rstd;
    }
    const float pos = (float)a.positions[row.token];
#pragma unroll
    for (int k = 0; k < kQkPairsPerLane; ++k) {
      const int i = lane + 32 * k;
      if (i < half) {
        const float y1 = (x1[k] * rstd) * to_f32(w[i]);
        const float y2 = (x2[k] * rstd) * to_f32(w[i + half]);
        float s, c;
        scaled_sincos(pos * inv_freq[i], a.rope.attention_scale, &s, &c);
        o[i] = to_bf16(y1 * c - y2 * s);
        o[i + half] = to_bf16(y2 * c + y1 * s);
      }
    }
  }
}

struct QkBackwardArgs {
  bf16* dq;  // stride in_stride, or null
  bf16* dk;
  const bf16* dq_out;  // dense
  const bf16* dk_out;
  const bf16* q;  // stride in_stride
  const bf16* k;
  int in_stride;
  const bf16* q_weight;
  const bf16* k_weight;
  const float* q_rstd;
  const float* k_rstd;
  const int32_t* positions;
  int N, H, KVH, D;
  RopeParams rope;
  int q_blocks;     // blocks [0, q_blocks) own q rows, the rest k rows
  float* partials;  // [blocks, D] weight-gradient partials, or null (no dw needed)
};

// Block b owns rows [chunk * 64, chunk * 64 + 64) of q (b < q_blocks) or of k;
// warp w sums rows w, w + 8, ... of the chunk.
__global__ __launch_bounds__(kQkThreads) void qk_norm_rope_backward_kernel(QkBackwardArgs a) {
  __shared__ float inv_freq[kQkMaxHeadDim / 2];
  __shared__ float warp_dw[kQkWarps][kQkMaxHeadDim];
  const int D = a.D, half = D / 2;
  fill_inv_freq(inv_freq, half, D, a.rope);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const bool is_k = (int)blockIdx.x >= a.q_blocks;
  const int chunk = is_k ? (int)blockIdx.x - a.q_blocks : (int)blockIdx.x;
  const int heads = is_k ? a.KVH : a.H;
  const size_t rows = (size_t)a.N * heads;
  const bf16* x_base = is_k ? a.k : a.q;
  const bf16* w = is_k ? a.k_weight : a.q_weight;
  const bf16* dout_base = is_k ? a.dk_out : a.dq_out;
  bf16* din_base = is_k ? a.dk : a.dq;
  const float* rstd_base = is_k ? a.k_rstd : a.q_rstd;

  float w1[kQkPairsPerLane], w2[kQkPairsPerLane];
  float dw1[kQkPairsPerLane], dw2[kQkPairsPerLane];
#pragma unroll
  for (int k = 0; k < kQkPairsPerLane; ++k) {
    const int i = lane + 32 * k;
    w1[k] = i < half ? to_f32(w[i]) : 0.f;
    w2[k] = i < half ? to_f32(w[i + half]) : 0.f;
    dw1[k] = 0.f;
    dw2[k] = 0.f;
  }

  for (int j = 0; j < kQkRowsPerWarp; ++j) {
    const size_t r = (size_t)chunk * kQkRowsPerBlock + (size_t)j * kQkWarps + warp;
    if (r >= rows) break;
    const int token = (int)(r / heads), head = (int)(r % heads);
    const bf16* x = x_base + head_offset(token, head, D, a.in_stride);
    const bf16* d = dout_base + r * D;
    const float rstd = rstd_base[r];
    const float pos = (float)a.positions[token];
    float x1[kQkPairsPerLane], x2[kQkPairsPerLane], g1[kQkPairsPerLane], g2[kQkPairsPerLane];
    float gx = 0.f;
#pragma unroll
    for (int k = 0; k < kQkPairsPerLane; ++k) {
      const int i = lane + 32 * k;
      x1[k] = x2[k] = g1[k] = g2[k] = 0.f;
      if (i < half) {
        float s, c;
        scaled_sincos(pos * inv_freq[i], a.rope.attention_scale, &s, &c);
        const float d1 = to_f32(d[i]), d2 = to_f32(d[i + half]);
        const float dy1 = d1 * c + d2 * s;  // R^T dout
        const float dy2 = d2 * c - d1 * s;
        x1[k] = to_f32(x[i]);
        x2[k] = to_f32(x[i + half]);
        g1[k] = dy1 * w1[k];
        g2[k] = dy2 * w2[k];
        gx += g1[k] * x1[k] + g2[k] * x2[k];
        dw1[k] += dy1 * (x1[k] * rstd);
        dw2[k] += dy2 * (x2[k] * rstd);
      }
    }
    if (din_base) {
      gx = warp_sum(gx);
      const float kk = (gx / D) * rstd * rstd;
      bf16* dx = din_base + head_offset(token, head, D, a.in_stride);
#pragma unroll
      for (int k = 0; k < kQkPairsPerLane; ++k) {
        const int i = lane + 32 * k;
        if (i < half) {
          dx[i] = to_bf16(rstd * (g1[k] - x1[k] * kk));
          dx[i + half] = to_bf16(rstd * (g2[k] - x2[k] * kk));
        }
      }
    }
  }

  if (!a.partials) return;  // uniform over the block
#pragma unroll
  for (int k = 0; k < kQkPairsPerLane; ++k) {
    const int i = lane + 32 * k;
    if (i < half) {
      warp_dw[warp][i] = dw1[k];
      warp_dw[warp][i + half] = dw2[k];
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float sum = 0.f;
#pragma unroll
    for (int wi = 0; wi < kQkWarps; ++wi) sum += warp_dw[wi][c];
    a.partials[(size_t)blockIdx.x * D + c] = sum;
  }
}

// dweight[c] += sum over b < blocks of partials[b * D + c], in a fixed order:
// thread t sums blocks t, t + blockDim, ... then block_sum. One block per column.
__global__ __launch_bounds__(kFinalizeThreads) void weight_grad_finalize_kernel(
    float* dweight, const float* partials, int blocks, int D) {
  __shared__ float shared[32];
  const int c = blockIdx.x;
  float sum = 0.f;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) sum += partials[(size_t)b * D + c];
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) dweight[c] += sum;
}

// Blocks for a grid-stride loop: enough to fill the GPU twice over, no more
// than the work needs.
unsigned capped_grid(size_t work_blocks, const CudaContext& ctx, int blocks_per_sm) {
  const size_t cap = (size_t)(ctx.sm_count > 0 ? ctx.sm_count : 132) * blocks_per_sm;
  size_t g = work_blocks < cap ? work_blocks : cap;
  return (unsigned)(g > 0 ? g : 1);
}

void check_rope_shape(const char* op, int N, int heads, int head_dim, int max_head_dim,
                      const RopeParams& rope) {
  require(N >= 0 && heads > 0, std::string(op) + ": bad shape " +
                                   shape_str("N", N, "heads", heads, "head_dim", head_dim));
  require(head_dim >= 2 && head_dim % 2 == 0 && head_dim <= max_head_dim,
          std::string(op) + ": head_dim " + std::to_string(head_dim) +
              " must be even and at most " + std::to_string(max_head_dim));
  require(rope.theta > 0.f && rope.attention_scale > 0.f && rope.factor > 0.f &&
              rope.ramp_span != 0.f,
          std::string(op) + ": rope theta, factor and attention scale must be positive");
}

void launch_rope(CudaContext& ctx, const char* op, bf16* out, const bf16* in,
                 const int32_t* positions, int N, int heads, int head_dim,
                 const RopeParams& rope, bool inverse) {
  check_rope_shape(op, N, heads, head_dim, 2 * kRopeMaxHalf, rope);
  if (N == 0) return;
  const size_t items = (size_t)N * (head_dim / 2);
  const unsigned grid = capped_grid(grid_for(items, kRopeThreads), ctx, 16);
  rope_kernel<<<grid, kRopeThreads, 0, ctx.stream>>>(out, in, positions, N, heads, head_dim,
                                                     rope, inverse);
  check_launch(op, shape_str("N", N, "heads", heads, "head_dim", head_dim));
}

}  // namespace

void CudaOps::rope_forward(Buf out, CBuf in, const int32_t* positions, int N, int heads,
                           int head_dim, const RopeParams& rope) {
  launch_rope(context(), "rope_forward", bf16_ptr(out, "rope_forward"),
              bf16_ptr(in, "rope_forward"), positions, N, heads, head_dim, rope, false);
}

void CudaOps::rope_backward(Buf din, CBuf dout, const int32_t* positions, int N, int heads,
                            int head_dim, const RopeParams& rope) {
  if (!din) return;
  launch_rope(context(), "rope_backward", bf16_ptr(din, "rope_backward"),
              bf16_ptr(dout, "rope_backward"), positions, N, heads, head_dim, rope, true);
}

void CudaOps::qk_norm_rope_forward(Buf q_out, Buf k_out, float* q_rstd, float* k_rstd, CBuf q,
                                   CBuf k, int in_stride, CBuf q_weight, CBuf k_weight,
                                   const int32_t* positions, int N, int heads, int kv_heads,
                                   int head_dim, float eps, const RopeParams& rope) {
  const char* op = "qk_norm_rope_forward";
  check_rope_shape(op, N, heads, head_dim, kQkMaxHeadDim, rope);
  require(kv_heads > 0 && in_stride >= heads * head_dim && in_stride >= kv_heads * head_dim,
          std::string(op) + ": bad shape " +
              shape_str("heads", heads, "kv_heads", kv_heads, "head_dim", head_dim,
                        "in_stride", in_stride));
  if (N == 0) return;
  CudaContext& ctx = context();
  QkForwardArgs a;
  a.q_out = bf16_ptr(q_out, op);
  a.k_out = bf16_ptr(k_out, op);
  a.q_rstd = q_rstd;
  a.k_rstd = k_rstd;
  a.q = bf16_ptr(q, op);
  a.k = bf16_ptr(k, op);
  a.in_stride = in_stride;
  a.q_weight = bf16_ptr(q_weight, op);
  a.k_weight = bf16_ptr(k_weight, op);
  a.positions = positions;
  a.N = N;
  a.H = heads;
  a.KVH = kv_heads;
  a.D = head_dim;
  a.eps = eps;
  a.rope = rope;
  if (!a.q_out || !a.k_out || !a.q || !a.k || !a.q_weight || !a.k_weight || !positions)
    throw Error(std::string(op) + ": null input or output (" +
                shape_str("N", N, "heads", heads, "kv_heads", kv_heads, "head_dim", head_dim) +
                ")");
  const size_t rows = (size_t)N * (heads + kv_heads);
  const unsigned grid = capped_grid(grid_for(rows, kQkWarps), ctx, 8);
  qk_norm_rope_forward_kernel<<<grid, kQkThreads, 0, ctx.stream>>>(a);
  check_launch(op, shape_str("N", N, "heads", heads, "kv_heads", kv_heads, "head_dim", head_dim));
}

void CudaOps::qk_norm_rope_backward(Buf dq, Buf dk, float* dq_weight, float* dk_weight,
                                    CBuf dq_out, CBuf dk_out, CBuf q, CBuf k, int in_stride,
                                    CBuf q_weight, CBuf k_weight, const float* q_rstd,
                                    const float* k_rstd, const int32_t* positions, int N,
                                    int heads, int kv_heads, int head_dim,
                                    const RopeParams& rope) {
  const char* op = "qk_norm_rope_backward";
  check_rope_shape(op, N, heads, head_dim, kQkMaxHeadDim, rope);
  require(kv_heads > 0 && in_stride >= heads * head_dim && in_stride >= kv_heads * head_dim,
          std::string(op) + ": bad shape " +
              shape_str("heads", heads, "kv_heads", kv_heads, "head_dim", head_dim,
                        "in_stride", in_stride));
  if (N == 0) return;
  if (!dq && !dk && !dq_weight && !dk_weight) return;
  CudaContext& ctx = context();
  const std::string shape =
      shape_str("N", N, "heads", heads, "kv_heads", kv_heads, "head_dim", head_dim);
  QkBackwardArgs a;
  a.dq = bf16_ptr(dq, op);
  a.dk = bf16_ptr(dk, op);
  a.dq_out = bf16_ptr(dq_out, op);
  a.dk_out = bf16_ptr(dk_out, op);
  a.q = bf16_ptr(q, op);
  a.k = bf16_ptr(k, op);
  a.in_stride = in_stride;
  a.q_weight = bf16_ptr(q_weight, op);
  a.k_weight = bf16_ptr(k_weight, op);
  a.q_rstd = q_rstd;
  a.k_rstd = k_rstd;
  a.positions = positions;
  a.N = N;
  a.H = heads;
  a.KVH = kv_heads;
  a.D = head_dim;
  a.rope = rope;
  if (!a.dq_out || !a.dk_out || !a.q || !a.k || !a.q_weight || !a.k_weight || !q_rstd ||
      !k_rstd || !positions)
    throw Error(std::string(op) + ": null input (" + shape + ")");
  // Row chunks: a function of the shape only (determinism across GPUs).
  const size_t q_blocks = grid_for((size_t)N * heads, kQkRowsPerBlock);
  const size_t k_blocks = grid_for((size_t)N * kv_heads, kQkRowsPerBlock);
  const size_t blocks = q_blocks + k_blocks;
  require(blocks <= 0x7fffffffu, std::string(op) + ": too many rows " + shape);
  a.q_blocks = (int)q_blocks;
  a.partials = nullptr;
  if (dq_weight || dk_weight)
    a.partials = static_cast<float*>(ctx.ensure_scratch(blocks * head_dim * sizeof(float)));
  qk_norm_rope_backward_kernel<<<(unsigned)blocks, kQkThreads, 0, ctx.stream>>>(a);
  check_launch(op, shape);
  if (dq_weight) {
    weight_grad_finalize_kernel<<<head_dim, kFinalizeThreads, 0, ctx.stream>>>(
        dq_weight, a.partials, (int)q_blocks, head_dim);
    check_launch("qk_norm_rope_backward (dq_weight)", shape);
  }
  if (dk_weight) {
    weight_grad_finalize_kernel<<<head_dim, kFinalizeThreads, 0, ctx.stream>>>(
        dk_weight, a.partials + q_blocks * head_dim, (int)k_blocks, head_dim);
    check_launch("qk_norm_rope_backward (dk_weight)", shape);
  }
}

}  // namespace polaris
