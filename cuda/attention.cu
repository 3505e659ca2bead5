// Causal attention (training forward and backward) and KV-cache row writes for
// CudaOps: a simple fused attention on CUDA cores (no tensor cores yet; the
// tensor-core flash attention is a later step).
//
// Course note.
//   Math, per batch row b, query head h (kv head g = h / (H / KVH)) and
//   query t; S(t) = {s <= t : doc[s] == doc[t]} (documents are contiguous
//   runs of a row, so S(t) = [doc_start(t), t]); scale = 1/sqrt(D):
//     forward   x_ts = scale * q_t . k_s,  lse_t = log sum_{s in S(t)} exp(x_ts)
//               P_ts = exp(x_ts - lse_t),  out_t = sum_s P_ts v_s
//     backward  Delta_t = dout_t . out_t            (= sum_s P_ts dP_ts)
//               dP_ts = dout_t . v_s,  dS_ts = P_ts (dP_ts - Delta_t)
//               dq_t = scale * sum_s dS_ts k_s
//               dk_s = scale * sum_{h in group(g)} sum_t dS_ts q_t
//               dv_s = sum_{h in group(g)} sum_t P_ts dout_t
//   The forward never stores P: it runs an online softmax (running max m and
//   running sum l in fp32, rescaling the output accumulator when m grows), and
//   saves lse so the backward can recompute P_ts = exp(x_ts - lse_t) exactly.
//   Scores are kept in base 2 (x * log2(e), exp2f), lse is stored in base e.
//
//   Work split (kWarps = 4 warps a block, kRowsPerWarp = 4 rows a warp,
//   tiles of kTile = 32 = one per lane):
//   - forward: a block per (16 queries, head, batch row), grid
//     (ceil(T/16), H, B), the last (heaviest, causal) query tiles launched
//     first. Warp w owns queries t0 + w, t0 + w + 4, ... (interleaved so the
//     causal work is even across warps); their q, as fp32, sits in shared
//     memory laid out [d][4 queries] so one 16-byte broadcast load serves the
//     warp's four queries. The block walks key tiles of 32 from the first key
//     of the first query's document to its last query: the tile of K and V
//     (bf16, rows padded to DB + 2 so lanes reading different rows hit
//     different banks) is staged in shared memory by the whole block. Then
//     each warp: (1) lane j computes the scores of key j for its 4 queries
//     (DB fp32 FMAs each), masked (causal and document), (2) the online
//     softmax update with a warp max, (3) P goes through shared memory and
//     every lane accumulates its DB/32 output dims (pairs 2*lane + 64c) over
//     the 32 keys. The head dim is a template bucket DB in {64, 128, 256} (D
//     <= DB, zero-padded in shared memory; padding adds exact zeros), so the
//     4 x DB/32 accumulators live in registers.
//   - backward, four kernels, deterministic (every output element is owned
//     by one thread and summed in a fixed order; no atomics):
//     (a) doc_start per token (a block per row, max-scan of run starts; also
//         used by the forward), (b) Delta per (b, h, t) (a warp per row and
//         head) into the context scratch, (c) dq: the forward's structure,
//         scoring q.k and dout.v per (query, key), dS through shared memory,
//         dq += dS k (written with q's row stride), (d) dk/dv: a block per
//         (16 keys, kv head, batch row); warp w owns 4 keys (k, v fp32 in
//         shared memory), the block walks the group's query heads, then query
//         tiles of 32 from the keys onward (q and dout staged), lane j scores
//         query j against the warp's keys, then every lane accumulates its
//         dims of dk and dv; written once at the end with k's/v's row stride.
//   - scatter_rows writes new keys/values into the paged KV cache (a row
//     index of -1 is a padded decode row: skipped); decode
//     attention over it is cuda/paged_attention.cu.
//
//   Flops and bytes. Forward, causal: QK^T and PV are each 2*D flops per
//   (t, s) pair and there are ~T^2/2 pairs: 4*B*H*T^2*D/2 = 2*B*H*T^2*D flops.
//   Backward recomputes QK^T and does dP, dQ, dK, dV: 5 such products,
//   2.5x the forward. The compulsory HBM traffic is small: q, k, v, out read
//   or written once (2 bytes each), plus 4-byte lse. GPT-2 small, B = 8, T =
//   1024, H = 12, D = 64: forward 12.9 GFLOP against ~50 MB — arithmetic
//   intensity ~250 flop/B, next to the H100's ridge (989 TFLOP/s bf16 /
//   3.35 TB/s ≈ 300 flop/B): on tensor cores the op is compute bound (~13 us
//   at peak, ~25 us realistic). Here the math runs as fp32 FMAs on CUDA cores
//   (67 TFLOP/s peak on an H100) with every operand read from shared memory:
//   the score loop issues 3 shared loads and 2 conversions per 8 FMAs, the
//   accumulation loop 2 loads per 8 FMAs, and each key tile costs two
//   __syncthreads with its global loads not overlapped (no double buffering),
//   so the kernel is bound by shared-memory bandwidth, instruction issue and
//   load latency — expect ~15-25 TFLOP/s, i.e. 0.5-0.9 ms for that forward,
//   some 40x from the tensor-core roofline. K/V tiles are re-read once per
//   16-query block (T/16 times per head, from L2), ~T^2*D/8 bytes per head.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/attention_kernels.h"
#include "cuda/context.cuh"

namespace polaris {

namespace {

constexpr int kWarps = 4;                       // warps per block (fwd, dq, dk/dv)
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 4;                 // queries (fwd, dq) / keys (dk/dv) per warp
constexpr int kBlockRows = kWarps * kRowsPerWarp;  // 16 rows per block
constexpr int kTile = 32;                       // staged keys / queries per tile: one per lane
constexpr int kDocThreads = 1024;               // doc_start scan: one block per row
constexpr int kDeltaWarps = 4;                  // Delta: a warp per (token, head)
constexpr int kScatterThreads = 256;
constexpr int kMaxHeadDim = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Minimum resident blocks per SM in __launch_bounds__: caps registers at
// 65536 / (128 * n) (128 for 4, 170 for 3). Without it ptxas (CUDA 13)
// aimed at 64-72 registers for some buckets and spilled; with it every
// bucket fits with no spill (ptxas -v: 85-137 registers).
constexpr int kMinBlocksFwd = 4;   // forward and dq
constexpr int kMinBlocksDkdv = 3;  // dk/dv: two accumulator sets

static_assert(kRowsPerWarp == 4, "the per-warp rows are read as one float4");
static_assert(kTile == 32, "a tile row per lane");
static_assert(kBlockRows == kWarps * kRowsPerWarp, "block rows");
static_assert(kDocThreads == 1024, "the doc_start scan has 32 full warps");

// Shared memory of the tiled kernels for head-dim bucket DB (bytes):
//   cols  [kWarps][DB][4] fp32: each warp's 4 rows, transposed (float4 per dim)
//   pbuf  [kWarps][kTile][4] fp32: P or dS of each warp's rows against the tile
//   tile  [kTile][DB + 2] bf16: a staged tile (row pad: conflict-free per-lane rows)
template <int DB>
struct Smem {
  static_assert(DB == 64 || DB == 128 || DB == 256, "head-dim bucket");
  static constexpr int kTileStride = DB + 2;  // bf16 per staged row (odd word count)
  static constexpr size_t kCols = size_t(kWarps) * DB * kRowsPerWarp * sizeof(float);
  static constexpr size_t kPbuf = size_t(kWarps) * kTile * kRowsPerWarp * sizeof(float);
  static constexpr size_t kTileBytes = size_t(kTile) * kTileStride * sizeof(bf16);
  static constexpr size_t kQueryStats = 3 * kTile * sizeof(float);  // dk/dv: lse, delta, start
  static_assert(kCols % 16 == 0 && kPbuf % 16 == 0 && kTileBytes % 16 == 0, "16-byte carving");
  static constexpr size_t forward = kCols + kPbuf + 2 * kTileBytes;
  static constexpr size_t dq = 2 * kCols + kPbuf + 2 * kTileBytes;
  static constexpr size_t dkdv = 2 * kCols + 2 * kPbuf + kQueryStats + 2 * kTileBytes;
};

// The smallest bucket holding head_dim (1..256).
inline int head_bucket(int D) { return D <= 64 ? 64 : D <= 128 ? 128 : 256; }

// Row r of a [rows, ld] matrix (64-bit offsets).
__host__ __device__ inline size_t row_offset(long long r, long long ld) { return size_t(r * ld); }

__device__ __forceinline__ float2 pair_f32(const bf16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

__device__ __forceinline__ float4 load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}

// acc[r] += cols[d][r] * row[d] + cols[d + 1][r] * row[d + 1] for a warp's 4
// rows r (cols laid out [d][4] in fp32, row a bf16 tile row): the step, and
// the fma order, of every dot product in this file.
static_assert(kRowsPerWarp == 4, "dot4_step reads a warp's rows as one float4");
__device__ __forceinline__ void dot4_step(float acc[4], const bf16* row, const float* cols, int d) {
  const float2 x = pair_f32(row + d);
  const float4 a = load4(cols + d * 4);
  const float4 b = load4(cols + (d + 1) * 4);
  acc[0] = fmaf(a.x, x.x, fmaf(b.x, x.y, acc[0]));
  acc[1] = fmaf(a.y, x.x, fmaf(b.y, x.y, acc[1]));
  acc[2] = fmaf(a.z, x.x, fmaf(b.z, x.y, acc[2]));
  acc[3] = fmaf(a.w, x.x, fmaf(b.w, x.y, acc[3]));
}

// Stages rows [0, rows) x columns [0, D) of a bf16 matrix with row stride ld
// into a [kTile][DB + 2] shared tile; rows >= `rows` and columns >= D become
// zeros (so masked or padded entries are exact zeros, never NaN garbage).
// wide: 16-byte loads (D % 8 == 0, ld % 8 == 0, src 16-byte aligned).
template <int DB>
__device__ __forceinline__ void stage_tile(bf16* tile, const bf16* src, long long ld, int rows,
                                           int D, bool wide) {
  constexpr int TS = Smem<DB>::kTileStride;
  if (wide) {
    constexpr int kChunks = DB / 8;
    for (int i = threadIdx.x; i < kTile * kChunks; i += blockDim.x) {
      const int r = i / kChunks, c = (i % kChunks) * 8;
      uint4 raw = make_uint4(0u, 0u, 0u, 0u);
      if (r < rows && c < D) raw = *reinterpret_cast<const uint4*>(src + row_offset(r, ld) + c);
      // The padded row is only 4-byte aligned: four word stores.
      uint32_t* dst = reinterpret_cast<uint32_t*>(tile + r * TS + c);
      dst[0] = raw.x;
      dst[1] = raw.y;
      dst[2] = raw.z;
      dst[3] = raw.w;
    }
  } else {
    const bf16 zero = __ushort_as_bfloat16((unsigned short)0);
#pragma unroll 4
    for (int i = threadIdx.x; i < kTile * DB; i += blockDim.x) {
      const int r = i / DB, c = i % DB;
      tile[r * TS + c] = (r < rows && c < D) ? src[row_offset(r, ld) + c] : zero;
    }
  }
}

// Warp-private: row i of this warp into cols[d][i] (fp32) for d < DB; a null
// row (beyond T) and columns >= D give zeros.
template <int DB>
__device__ __forceinline__ void stage_cols(float* cols, const bf16* row, int i, int D, int lane) {
  for (int d = lane; d < DB; d += 32)
    cols[d * kRowsPerWarp + i] = (row && d < D) ? to_f32(row[d]) : 0.f;
}

// ---- doc_start: the first token of each token's document ---------------------
// doc_start[t] = max over s <= t of (s if s == 0 or doc[s] != doc[s-1] else 0):
// an inclusive max-scan of run starts, 1024 tokens a step with a carry.
__global__ void __launch_bounds__(kDocThreads)
    doc_start_kernel(int* __restrict__ doc_start, const int32_t* __restrict__ doc_ids, int T) {
  __shared__ int warp_total[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int32_t* doc = doc_ids + row_offset(blockIdx.x, T);
  int* start = doc_start + row_offset(blockIdx.x, T);
  int carry = 0;
  for (int base = 0; base < T; base += kDocThreads) {
    const int t = base + threadIdx.x;
    int v = 0;
    if (t < T) v = (t == 0 || doc[t] != doc[t - 1]) ? t : 0;
    for (int off = 1; off < 32; off <<= 1) {
      const int o = __shfl_up_sync(0xffffffffu, v, off);
      if (lane >= off) v = max(v, o);
    }
    if (lane == 31) warp_total[warp] = v;
    __syncthreads();
    if (warp == 0) {
      int w = warp_total[lane];
      for (int off = 1; off < 32; off <<= 1) {
        const int o = __shfl_up_sync(0xffffffffu, w, off);
        if (lane >= off) w = max(w, o);
      }
      warp_total[lane] = w;
    }
    __syncthreads();
    if (warp > 0) v = max(v, warp_total[warp - 1]);
    v = max(v, carry);
    if (t < T) start[t] = v;
    carry = max(carry, warp_total[31]);
    __syncthreads();  // warp_total is rewritten by the next step
  }
}

// ---- forward ------------------------------------------------------------------

struct ForwardParams {
  bf16* out;              // [B*T, H*D]
  float* lse;             // [B, H, T] or null
  const bf16* q;          // rows q_row apart
  const bf16* k;          // rows k_row apart
  const bf16* v;          // rows v_row apart
  const int* doc_start;   // [B*T] or null (one document per row)
  int T, H, KVH, D;
  long long q_row, k_row, v_row;
  float scale_log2;       // log2(e) / sqrt(D)
  bool wide_k, wide_v;
};

template <int DB>
__global__ void __launch_bounds__(kThreads, kMinBlocksFwd)
    attention_forward_kernel(const ForwardParams p) {
  using L = Smem<DB>;
  constexpr int TS = L::kTileStride;
  constexpr int NP = DB / 64;  // bf16 pairs of output dims per lane
  extern __shared__ __align__(16) unsigned char smem[];
  float* qcols = reinterpret_cast<float*>(smem);
  float* pbuf = reinterpret_cast<float*>(smem + L::kCols);
  bf16* ktile = reinterpret_cast<bf16*>(smem + L::kCols + L::kPbuf);
  bf16* vtile = ktile + kTile * TS;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int T = p.T, D = p.D;
  const int qtile = gridDim.x - 1 - blockIdx.x;  // heaviest tiles first
  const int h = blockIdx.y, b = blockIdx.z, kvh = h / (p.H / p.KVH);
  const int t0 = qtile * kBlockRows;
  const size_t row0 = row_offset(b, T);  // token index of (b, 0)
  float* my_cols = qcols + warp * DB * kRowsPerWarp;
  float* my_p = pbuf + warp * kTile * kRowsPerWarp;

  int tq[kRowsPerWarp], start[kRowsPerWarp];
  bool valid[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    tq[i] = t0 + i * kWarps + warp;
    valid[i] = tq[i] < T;
    start[i] = (valid[i] && p.doc_start) ? p.doc_start[row0 + tq[i]] : 0;
    const bf16* qrow =
        valid[i] ? p.q + row_offset(row0 + tq[i], p.q_row) + size_t(h) * D : nullptr;
    stage_cols<DB>(my_cols, qrow, i, D, lane);
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][2 * NP];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < 2 * NP; ++c) acc[i][c] = 0.f;
  }

  const int key_begin = p.doc_start ? p.doc_start[row0 + t0] : 0;
  const int key_end = min(t0 + kBlockRows, T);  // one past the block's last query
  for (int k0 = key_begin; k0 < key_end; k0 += kTile) {
    __syncthreads();  // the previous tile is no longer read
    const int rows = min(kTile, T - k0);
    stage_tile<DB>(ktile, p.k + row_offset(row0 + k0, p.k_row) + size_t(kvh) * D, p.k_row, rows,
                   D, p.wide_k);
    stage_tile<DB>(vtile, p.v + row_offset(row0 + k0, p.v_row) + size_t(kvh) * D, p.v_row, rows,
                   D, p.wide_v);
    __syncthreads();

    bool active = false;  // does any of this warp's queries see a key of the tile?
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i)
      active |= valid[i] && k0 <= tq[i] && k0 + kTile > start[i];
    if (!active) continue;  // warp-uniform

    // (1) lane j: scores of key k0 + j against the warp's 4 queries.
    float sc[kRowsPerWarp] = {0.f, 0.f, 0.f, 0.f};
    const bf16* krow = ktile + lane * TS;
#pragma unroll 8
    for (int d = 0; d < DB; d += 2) dot4_step(sc, krow, my_cols, d);
    // (2) online softmax, per query.
    const int s = k0 + lane;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const bool ok = valid[i] && s <= tq[i] && s >= start[i];
      const float x = ok ? sc[i] * p.scale_log2 : -INFINITY;
      const float m_new = fmaxf(m[i], warp_max(x));
      float corr = 1.f, pij = 0.f;
      if (m_new != -INFINITY) {  // warp-uniform
        corr = exp2f(m[i] - m_new);  // 0 while m[i] is still -inf
        pij = exp2f(x - m_new);      // 0 for a masked key
      }
      m[i] = m_new;
      l[i] = l[i] * corr + pij;  // per-lane partial; corr is uniform over the warp
#pragma unroll
      for (int c = 0; c < 2 * NP; ++c) acc[i][c] *= corr;
      my_p[lane * kRowsPerWarp + i] = pij;
    }
    __syncwarp();
    // (3) acc += P v over the tile's keys; lane owns dims 2*lane + 64c (+1).
#pragma unroll 4
    for (int j = 0; j < kTile; ++j) {
      const float4 pj = load4(my_p + j * kRowsPerWarp);
      const bf16* vrow = vtile + j * TS + 2 * lane;
#pragma unroll
      for (int c = 0; c < NP; ++c) {
        const float2 vv = pair_f32(vrow + 64 * c);
        acc[0][2 * c] = fmaf(pj.x, vv.x, acc[0][2 * c]);
        acc[0][2 * c + 1] = fmaf(pj.x, vv.y, acc[0][2 * c + 1]);
        acc[1][2 * c] = fmaf(pj.y, vv.x, acc[1][2 * c]);
        acc[1][2 * c + 1] = fmaf(pj.y, vv.y, acc[1][2 * c + 1]);
        acc[2][2 * c] = fmaf(pj.z, vv.x, acc[2][2 * c]);
        acc[2][2 * c + 1] = fmaf(pj.z, vv.y, acc[2][2 * c + 1]);
        acc[3][2 * c] = fmaf(pj.w, vv.x, acc[3][2 * c]);
        acc[3][2 * c + 1] = fmaf(pj.w, vv.y, acc[3][2 * c + 1]);
      }
    }
    __syncwarp();  // my_p is rewritten by the next tile
  }

  const size_t out_row = size_t(p.H) * D;
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const float total = warp_sum(l[i]);  // > 0: a query always sees itself
    if (!valid[i]) continue;
    const float inv = 1.f / total;
    bf16* o = p.out + row_offset(row0 + tq[i], out_row) + size_t(h) * D;
#pragma unroll
    for (int c = 0; c < NP; ++c) {
      const int d = 2 * lane + 64 * c;
      if (d < D) o[d] = to_bf16(acc[i][2 * c] * inv);
      if (d + 1 < D) o[d + 1] = to_bf16(acc[i][2 * c + 1] * inv);
    }
    if (lane == 0 && p.lse) p.lse[(size_t(b) * p.H + h) * T + tq[i]] = (m[i] + log2f(total)) * kLn2;
  }
}

// ---- backward -----------------------------------------------------------------

// Delta[b, h, t] = dout_t . out_t over head h's D dims (dout, out dense [N, H*D]).
__global__ void __launch_bounds__(kDeltaWarps * 32)
    attention_delta_kernel(float* __restrict__ delta, const bf16* __restrict__ dout,
                           const bf16* __restrict__ out, int N, int T, int H, int D) {
  const int lane = threadIdx.x & 31;
  const size_t item = size_t(blockIdx.x) * kDeltaWarps + (threadIdx.x >> 5);  // token * H + head
  if (item >= size_t(N) * H) return;  // whole warps leave together
  const size_t n = item / H;
  const int h = int(item % H);
  const size_t off = n * size_t(H) * D + size_t(h) * D;
  float sum = 0.f;
  for (int d = lane; d < D; d += 32) sum = fmaf(to_f32(dout[off + d]), to_f32(out[off + d]), sum);
  sum = warp_sum(sum);
  if (lane == 0) {
    const size_t b = n / T, t = n % T;
    delta[(b * H + h) * T + t] = sum;
  }
}

struct BackwardParams {
  bf16* dq;               // rows q_row apart (dq kernel)
  bf16* dk;               // rows k_row apart, or null (dk/dv kernel)
  bf16* dv;               // rows v_row apart, or null (dk/dv kernel)
  const bf16* dout;       // [B*T, H*D]
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const float* lse;       // [B, H, T]
  const float* delta;     // [B, H, T]
  const int* doc_start;   // [B*T] or null
  int T, H, KVH, D;
  long long q_row, k_row, v_row;
  float scale;            // 1/sqrt(D)
  float scale_log2;       // log2(e) / sqrt(D)
  bool wide_q, wide_k, wide_v, wide_dout;
};

// dq_t = scale * sum_s dS_ts k_s: the forward's decomposition.
template <int DB>
__global__ void __launch_bounds__(kThreads, kMinBlocksFwd)
    attention_dq_kernel(const BackwardParams p) {
  using L = Smem<DB>;
  constexpr int TS = L::kTileStride;
  constexpr int NP = DB / 64;
  extern __shared__ __align__(16) unsigned char smem[];
  float* qcols = reinterpret_cast<float*>(smem);
  float* gcols = reinterpret_cast<float*>(smem + L::kCols);  // dout
  float* pbuf = reinterpret_cast<float*>(smem + 2 * L::kCols);
  bf16* ktile = reinterpret_cast<bf16*>(smem + 2 * L::kCols + L::kPbuf);
  bf16* vtile = ktile + kTile * TS;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int T = p.T, D = p.D;
  const int qtile = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z, kvh = h / (p.H / p.KVH);
  const int t0 = qtile * kBlockRows;
  const size_t row0 = row_offset(b, T);
  const size_t dense_row = size_t(p.H) * D;
  float* my_q = qcols + warp * DB * kRowsPerWarp;
  float* my_g = gcols + warp * DB * kRowsPerWarp;
  float* my_ds = pbuf + warp * kTile * kRowsPerWarp;

  int tq[kRowsPerWarp], start[kRowsPerWarp];
  bool valid[kRowsPerWarp];
  float lse2[kRowsPerWarp], dlt[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    tq[i] = t0 + i * kWarps + warp;
    valid[i] = tq[i] < T;
    start[i] = (valid[i] && p.doc_start) ? p.doc_start[row0 + tq[i]] : 0;
    const size_t stat = (size_t(b) * p.H + h) * T + tq[i];
    lse2[i] = valid[i] ? p.lse[stat] * kLog2e : 0.f;
    dlt[i] = valid[i] ? p.delta[stat] : 0.f;
    const bf16* qrow =
        valid[i] ? p.q + row_offset(row0 + tq[i], p.q_row) + size_t(h) * D : nullptr;
    const bf16* grow =
        valid[i] ? p.dout + row_offset(row0 + tq[i], dense_row) + size_t(h) * D : nullptr;
    stage_cols<DB>(my_q, qrow, i, D, lane);
    stage_cols<DB>(my_g, grow, i, D, lane);
  }

  float acc[kRowsPerWarp][2 * NP];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i)
#pragma unroll
    for (int c = 0; c < 2 * NP; ++c) acc[i][c] = 0.f;

  const int key_begin = p.doc_start ? p.doc_start[row0 + t0] : 0;
  const int key_end = min(t0 + kBlockRows, T);
  for (int k0 = key_begin; k0 < key_end; k0 += kTile) {
    __syncthreads();
    const int rows = min(kTile, T - k0);
    stage_tile<DB>(ktile, p.k + row_offset(row0 + k0, p.k_row) + size_t(kvh) * D, p.k_row, rows,
                   D, p.wide_k);
    stage_tile<DB>(vtile, p.v + row_offset(row0 + k0, p.v_row) + size_t(kvh) * D, p.v_row, rows,
                   D, p.wide_v);
    __syncthreads();

    bool active = false;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i)
      active |= valid[i] && k0 <= tq[i] && k0 + kTile > start[i];
    if (!active) continue;

    // lane j: x = q . k_j and dP = dout . v_j for the warp's 4 queries.
    float sc[kRowsPerWarp] = {0.f, 0.f, 0.f, 0.f};
    float dp[kRowsPerWarp] = {0.f, 0.f, 0.f, 0.f};
    const bf16* krow = ktile + lane * TS;
    const bf16* vrow = vtile + lane * TS;
#pragma unroll 8
    for (int d = 0; d < DB; d += 2) {
      dot4_step(sc, krow, my_q, d);
      dot4_step(dp, vrow, my_g, d);
    }
    const int s = k0 + lane;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const bool ok = valid[i] && s <= tq[i] && s >= start[i];
      const float pij = ok ? exp2f(sc[i] * p.scale_log2 - lse2[i]) : 0.f;
      my_ds[lane * kRowsPerWarp + i] = ok ? pij * (dp[i] - dlt[i]) : 0.f;
    }
    __syncwarp();
#pragma unroll 4
    for (int j = 0; j < kTile; ++j) {
      const float4 dsj = load4(my_ds + j * kRowsPerWarp);
      const bf16* kr = ktile + j * TS + 2 * lane;
#pragma unroll
      for (int c = 0; c < NP; ++c) {
        const float2 kk = pair_f32(kr + 64 * c);
        acc[0][2 * c] = fmaf(dsj.x, kk.x, acc[0][2 * c]);
        acc[0][2 * c + 1] = fmaf(dsj.x, kk.y, acc[0][2 * c + 1]);
        acc[1][2 * c] = fmaf(dsj.y, kk.x, acc[1][2 * c]);
        acc[1][2 * c + 1] = fmaf(dsj.y, kk.y, acc[1][2 * c + 1]);
        acc[2][2 * c] = fmaf(dsj.z, kk.x, acc[2][2 * c]);
        acc[2][2 * c + 1] = fmaf(dsj.z, kk.y, acc[2][2 * c + 1]);
        acc[3][2 * c] = fmaf(dsj.w, kk.x, acc[3][2 * c]);
        acc[3][2 * c + 1] = fmaf(dsj.w, kk.y, acc[3][2 * c + 1]);
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    if (!valid[i]) continue;
    bf16* o = p.dq + row_offset(row0 + tq[i], p.q_row) + size_t(h) * D;
#pragma unroll
    for (int c = 0; c < NP; ++c) {
      const int d = 2 * lane + 64 * c;
      if (d < D) o[d] = to_bf16(acc[i][2 * c] * p.scale);
      if (d + 1 < D) o[d + 1] = to_bf16(acc[i][2 * c + 1] * p.scale);
    }
  }
}

// dk_s, dv_s for 16 keys of one kv head, summed over the group's query heads
// (outer loop, in head order) and the queries t >= s of s's document (tiles
// in order): a fixed order, so the bits are the same on every run.
template <int DB>
__global__ void __launch_bounds__(kThreads, kMinBlocksDkdv)
    attention_dkdv_kernel(const BackwardParams p) {
  using L = Smem<DB>;
  constexpr int TS = L::kTileStride;
  constexpr int NP = DB / 64;
  extern __shared__ __align__(16) unsigned char smem[];
  float* kcols = reinterpret_cast<float*>(smem);
  float* vcols = reinterpret_cast<float*>(smem + L::kCols);
  float* pbuf = reinterpret_cast<float*>(smem + 2 * L::kCols);
  float* dsbuf = reinterpret_cast<float*>(smem + 2 * L::kCols + L::kPbuf);
  float* q_lse2 = reinterpret_cast<float*>(smem + 2 * L::kCols + 2 * L::kPbuf);
  float* q_delta = q_lse2 + kTile;
  int* q_start = reinterpret_cast<int*>(q_delta + kTile);
  bf16* qtile = reinterpret_cast<bf16*>(smem + 2 * L::kCols + 2 * L::kPbuf + L::kQueryStats);
  bf16* gtile = qtile + kTile * TS;  // dout

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int T = p.T, D = p.D, H = p.H;
  const int group = H / p.KVH;
  const int kvh = blockIdx.y, b = blockIdx.z;
  const int s0 = blockIdx.x * kBlockRows;  // the first tiles (most queries) launch first
  const int s_last = min(s0 + kBlockRows, T) - 1;
  const size_t row0 = row_offset(b, T);
  const long long dense_row = (long long)H * D;
  float* my_k = kcols + warp * DB * kRowsPerWarp;
  float* my_v = vcols + warp * DB * kRowsPerWarp;
  float* my_p = pbuf + warp * kTile * kRowsPerWarp;
  float* my_ds = dsbuf + warp * kTile * kRowsPerWarp;

  int sk[kRowsPerWarp];
  bool valid[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    sk[i] = s0 + i * kWarps + warp;
    valid[i] = sk[i] < T;
    const bf16* krow =
        valid[i] ? p.k + row_offset(row0 + sk[i], p.k_row) + size_t(kvh) * D : nullptr;
    const bf16* vrow =
        valid[i] ? p.v + row_offset(row0 + sk[i], p.v_row) + size_t(kvh) * D : nullptr;
    stage_cols<DB>(my_k, krow, i, D, lane);
    stage_cols<DB>(my_v, vrow, i, D, lane);
  }
  const int warp_first_key = sk[0];

  float dk[kRowsPerWarp][2 * NP], dv[kRowsPerWarp][2 * NP];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i)
#pragma unroll
    for (int c = 0; c < 2 * NP; ++c) dk[i][c] = dv[i][c] = 0.f;

  for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
    const size_t stat0 = (size_t(b) * H + h) * T;
    for (int t0 = s0; t0 < T; t0 += kTile) {
      // Documents are runs: once query t0's document starts after the
      // block's last key, no later query sees any of its keys.
      if (p.doc_start && p.doc_start[row0 + t0] > s_last) break;  // block-uniform
      __syncthreads();
      const int rows = min(kTile, T - t0);
      stage_tile<DB>(qtile, p.q + row_offset(row0 + t0, p.q_row) + size_t(h) * D, p.q_row, rows,
                     D, p.wide_q);
      stage_tile<DB>(gtile, p.dout + row_offset(row0 + t0, dense_row) + size_t(h) * D, dense_row,
                     rows, D, p.wide_dout);
      if (threadIdx.x < kTile) {
        const int t = t0 + threadIdx.x;
        const bool in = t < T;
        q_lse2[threadIdx.x] = in ? p.lse[stat0 + t] * kLog2e : 0.f;
        q_delta[threadIdx.x] = in ? p.delta[stat0 + t] : 0.f;
        q_start[threadIdx.x] = !in ? INT_MAX : p.doc_start ? p.doc_start[row0 + t] : 0;
      }
      __syncthreads();

      // Causal skip: the warp's keys all come after the tile's last query.
      if (!valid[0] || warp_first_key > t0 + kTile - 1) continue;  // warp-uniform

      // lane j: x = q_j . k_i and dP = dout_j . v_i for the warp's 4 keys.
      float sc[kRowsPerWarp] = {0.f, 0.f, 0.f, 0.f};
      float dp[kRowsPerWarp] = {0.f, 0.f, 0.f, 0.f};
      const bf16* qrow = qtile + lane * TS;
      const bf16* grow = gtile + lane * TS;
#pragma unroll 8
      for (int d = 0; d < DB; d += 2) {
        dot4_step(sc, qrow, my_k, d);
        dot4_step(dp, grow, my_v, d);
      }
      const int t = t0 + lane;
      const float my_lse2 = q_lse2[lane], my_delta = q_delta[lane];
      const int my_start = q_start[lane];  // INT_MAX beyond T: masks the lane
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const bool ok = valid[i] && t >= sk[i] && my_start <= sk[i];
        const float pij = ok ? exp2f(sc[i] * p.scale_log2 - my_lse2) : 0.f;
        my_p[lane * kRowsPerWarp + i] = pij;
        my_ds[lane * kRowsPerWarp + i] = ok ? pij * (dp[i] - my_delta) : 0.f;
      }
      __syncwarp();
      // dv_i += P_ij dout_j, dk_i += dS_ij q_j; lane owns dims 2*lane + 64c (+1).
#pragma unroll 2
      for (int j = 0; j < kTile; ++j) {
        const float4 pj = load4(my_p + j * kRowsPerWarp);
        const float4 dsj = load4(my_ds + j * kRowsPerWarp);
        const bf16* qr = qtile + j * TS + 2 * lane;
        const bf16* gr = gtile + j * TS + 2 * lane;
#pragma unroll
        for (int c = 0; c < NP; ++c) {
          const float2 qq = pair_f32(qr + 64 * c);
          const float2 gg = pair_f32(gr + 64 * c);
          dv[0][2 * c] = fmaf(pj.x, gg.x, dv[0][2 * c]);
          dv[0][2 * c + 1] = fmaf(pj.x, gg.y, dv[0][2 * c + 1]);
          dv[1][2 * c] = fmaf(pj.y, gg.x, dv[1][2 * c]);
          dv[1][2 * c + 1] = fmaf(pj.y, gg.y, dv[1][2 * c + 1]);
          dv[2][2 * c] = fmaf(pj.z, gg.x, dv[2][2 * c]);
          dv[2][2 * c + 1] = fmaf(pj.z, gg.y, dv[2][2 * c + 1]);
          dv[3][2 * c] = fmaf(pj.w, gg.x, dv[3][2 * c]);
          dv[3][2 * c + 1] = fmaf(pj.w, gg.y, dv[3][2 * c + 1]);
          dk[0][2 * c] = fmaf(dsj.x, qq.x, dk[0][2 * c]);
          dk[0][2 * c + 1] = fmaf(dsj.x, qq.y, dk[0][2 * c + 1]);
          dk[1][2 * c] = fmaf(dsj.y, qq.x, dk[1][2 * c]);
          dk[1][2 * c + 1] = fmaf(dsj.y, qq.y, dk[1][2 * c + 1]);
          dk[2][2 * c] = fmaf(dsj.z, qq.x, dk[2][2 * c]);
          dk[2][2 * c + 1] = fmaf(dsj.z, qq.y, dk[2][2 * c + 1]);
          dk[3][2 * c] = fmaf(dsj.w, qq.x, dk[3][2 * c]);
          dk[3][2 * c + 1] = fmaf(dsj.w, qq.y, dk[3][2 * c + 1]);
        }
      }
      __syncwarp();
    }
  }

#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    if (!valid[i]) continue;
    bf16* ok = p.dk ? p.dk + row_offset(row0 + sk[i], p.k_row) + size_t(kvh) * D : nullptr;
    bf16* ov = p.dv ? p.dv + row_offset(row0 + sk[i], p.v_row) + size_t(kvh) * D : nullptr;
#pragma unroll
    for (int c = 0; c < NP; ++c) {
      const int d = 2 * lane + 64 * c;
      if (ok && d < D) ok[d] = to_bf16(dk[i][2 * c] * p.scale);
      if (ok && d + 1 < D) ok[d + 1] = to_bf16(dk[i][2 * c + 1] * p.scale);
      if (ov && d < D) ov[d] = to_bf16(dv[i][2 * c]);
      if (ov && d + 1 < D) ov[d + 1] = to_bf16(dv[i][2 * c + 1]);
    }
  }
}

// ---- decoding -------------------------------------------------------------------

// table[row_index[i] * width + c] = rows[i * rows_stride + c]
__global__ void __launch_bounds__(kScatterThreads)
    scatter_rows_kernel(bf16* __restrict__ table, const bf16* __restrict__ rows,
                        long long rows_stride, const int32_t* __restrict__ row_index, int n,
                        int width) {
  const size_t total = size_t(n) * width;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const size_t i = e / width, c = e % width;
    const int32_t row = row_index[i];
    if (row >= 0) table[row_offset(row, width) + c] = rows[row_offset(i, rows_stride) + c];
  }
}

// ---- host helpers -----------------------------------------------------------------

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// 16-byte loads of rows of D bf16 that start at `base` and are `ld` apart.
bool wide_rows(const void* base, long long ld, int D) {
  return aligned16(base) && D % 8 == 0 && ld % 8 == 0;
}

std::string attention_shape_str(const AttentionShape& sh) {
  return shape_str("B", sh.B, "T", sh.T, "H", sh.num_heads, "KVH", sh.num_kv_heads) + " " +
         shape_str("D", sh.head_dim, "q_row", sh.q_row(), "k_row", sh.k_row(), "v_row",
                   sh.v_row());
}

void check_shape(const AttentionShape& sh, const char* op) {
  const std::string where = std::string(op) + " (" + attention_shape_str(sh) + "): ";
  require(sh.B >= 0 && sh.T >= 0, where + "negative B or T");
  require(sh.num_heads > 0 && sh.num_kv_heads > 0 && sh.num_heads % sh.num_kv_heads == 0,
          where + "num_heads must be a positive multiple of num_kv_heads");
  require(sh.head_dim > 0 && sh.head_dim <= kMaxHeadDim,
          where + "head_dim must be in 1.." + std::to_string(kMaxHeadDim));
  require(sh.q_row() >= sh.num_heads * sh.head_dim &&
              sh.k_row() >= sh.num_kv_heads * sh.head_dim &&
              sh.v_row() >= sh.num_kv_heads * sh.head_dim,
          where + "a row stride is smaller than its heads");
  require(sh.B <= 65535 && sh.num_heads <= 65535, where + "B and num_heads must be <= 65535");
}

// Kernels above 48 KiB of dynamic shared memory must opt in.
template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes, const char* op, const std::string& shape) {
  if (bytes <= 48 * 1024) return;
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
             std::string(op) + ": cudaFuncSetAttribute(max dynamic shared memory " +
                 std::to_string(bytes) + " B) (" + shape + ")");
}

void launch_doc_start(CudaContext& c, int* doc_start, const int32_t* doc_ids, int B, int T,
                      const char* op, const std::string& shape) {
  doc_start_kernel<<<B, kDocThreads, 0, c.stream>>>(doc_start, doc_ids, T);
  check_launch(op, shape + " (doc_start)");
}

template <int DB>
void launch_forward(CudaContext& c, const ForwardParams& p, int B, const std::string& shape) {
  const char* op = "attention_forward";
  const size_t smem = Smem<DB>::forward;
  allow_smem(attention_forward_kernel<DB>, smem, op, shape);
  const dim3 grid(grid_for(p.T, kBlockRows), p.H, B);
  attention_forward_kernel<DB><<<grid, kThreads, smem, c.stream>>>(p);
  check_launch(op, shape);
}

template <int DB>
void launch_backward(CudaContext& c, const BackwardParams& p, int B, const std::string& shape) {
  const char* op = "attention_backward";
  if (p.dq) {
    const size_t smem = Smem<DB>::dq;
    allow_smem(attention_dq_kernel<DB>, smem, op, shape);
    const dim3 grid(grid_for(p.T, kBlockRows), p.H, B);
    attention_dq_kernel<DB><<<grid, kThreads, smem, c.stream>>>(p);
    check_launch(op, shape + " (dq)");
  }
  if (p.dk || p.dv) {
    const size_t smem = Smem<DB>::dkdv;
    allow_smem(attention_dkdv_kernel<DB>, smem, op, shape);
    const dim3 grid(grid_for(p.T, kBlockRows), p.KVH, B);
    attention_dkdv_kernel<DB><<<grid, kThreads, smem, c.stream>>>(p);
    check_launch(op, shape + " (dk/dv)");
  }
}

}  // namespace

// ---- shared with cuda/flash_attention.cu (cuda/attention_kernels.h) -------------

std::string attention_shape_string(const AttentionShape& sh) { return attention_shape_str(sh); }

void check_attention_shape(const AttentionShape& sh, const char* op) { check_shape(sh, op); }

void attention_doc_start(CudaContext& c, int* doc_start, const int32_t* doc_ids, int B, int T,
                         const char* op, const std::string& shape) {
  launch_doc_start(c, doc_start, doc_ids, B, T, op, shape);
}

// ---- the simple kernels' entry points (CudaOps::attention_forward/backward
// dispatch here, cuda/flash_attention.cu) ----------------------------------------------

void simple_attention_forward(CudaContext& ctx, Buf out, float* lse, CBuf q, CBuf k, CBuf v,
                              const int32_t* doc_ids, const AttentionShape& sh) {
  const char* op = "attention_forward";
  check_shape(sh, op);
  if (sh.B == 0 || sh.T == 0) return;
  const std::string shape = attention_shape_str(sh);
  CudaContext& c = ctx;
  ForwardParams p{};
  p.out = bf16_ptr(out, op);
  p.lse = lse;
  p.q = bf16_ptr(q, op);
  p.k = bf16_ptr(k, op);
  p.v = bf16_ptr(v, op);
  if (!p.out || !p.q || !p.k || !p.v)
    throw Error(std::string(op) + " (" + shape + "): out, q, k and v are required");
  p.T = sh.T;
  p.H = sh.num_heads;
  p.KVH = sh.num_kv_heads;
  p.D = sh.head_dim;
  p.q_row = sh.q_row();
  p.k_row = sh.k_row();
  p.v_row = sh.v_row();
  p.scale_log2 = kLog2e / std::sqrt(float(sh.head_dim));
  p.wide_k = wide_rows(p.k, p.k_row, p.D);
  p.wide_v = wide_rows(p.v, p.v_row, p.D);
  if (doc_ids) {
    // Scratch is shared by every op: take the pointer now, use it in this op only.
    int* doc_start = static_cast<int*>(c.ensure_scratch(size_t(sh.B) * sh.T * sizeof(int)));
    launch_doc_start(c, doc_start, doc_ids, sh.B, sh.T, op, shape);
    p.doc_start = doc_start;
  }
  switch (head_bucket(p.D)) {
    case 64: launch_forward<64>(c, p, sh.B, shape); break;
    case 128: launch_forward<128>(c, p, sh.B, shape); break;
    default: launch_forward<256>(c, p, sh.B, shape); break;
  }
}

void simple_attention_backward(CudaContext& ctx, Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q,
                               CBuf k, CBuf v, CBuf out, const float* lse,
                               const int32_t* doc_ids, const AttentionShape& sh) {
  const char* op = "attention_backward";
  check_shape(sh, op);
  if (sh.B == 0 || sh.T == 0) return;
  BackwardParams p{};
  p.dq = bf16_ptr(dq, op);
  p.dk = bf16_ptr(dk, op);
  p.dv = bf16_ptr(dv, op);
  if (!p.dq && !p.dk && !p.dv) return;
  p.dout = bf16_ptr(dout, op);
  p.q = bf16_ptr(q, op);
  p.k = bf16_ptr(k, op);
  p.v = bf16_ptr(v, op);
  const bf16* out_p = bf16_ptr(out, op);
  const std::string shape = attention_shape_str(sh);
  if (!p.dout || !p.q || !p.k || !p.v || !out_p || !lse)
    throw Error(std::string(op) + " (" + shape + "): dout, q, k, v, out and lse are required");
  CudaContext& c = ctx;
  p.lse = lse;
  p.T = sh.T;
  p.H = sh.num_heads;
  p.KVH = sh.num_kv_heads;
  p.D = sh.head_dim;
  p.q_row = sh.q_row();
  p.k_row = sh.k_row();
  p.v_row = sh.v_row();
  p.scale = 1.f / std::sqrt(float(sh.head_dim));
  p.scale_log2 = kLog2e * p.scale;
  p.wide_q = wide_rows(p.q, p.q_row, p.D);
  p.wide_k = wide_rows(p.k, p.k_row, p.D);
  p.wide_v = wide_rows(p.v, p.v_row, p.D);
  p.wide_dout = wide_rows(p.dout, (long long)p.H * p.D, p.D);

  // Scratch: Delta [B, H, T] fp32, then doc_start [B*T] int. The scratch is
  // shared by every op and may move when grown: one call, pointer used here only.
  const size_t N = size_t(sh.B) * sh.T;
  const size_t delta_bytes = (N * sh.num_heads * sizeof(float) + 255) & ~size_t(255);
  const size_t bytes = delta_bytes + (doc_ids ? N * sizeof(int) : 0);
  char* scratch = static_cast<char*>(c.ensure_scratch(bytes));
  float* delta = reinterpret_cast<float*>(scratch);
  p.delta = delta;
  if (doc_ids) {
    int* doc_start = reinterpret_cast<int*>(scratch + delta_bytes);
    launch_doc_start(c, doc_start, doc_ids, sh.B, sh.T, op, shape);
    p.doc_start = doc_start;
  }
  const size_t items = N * sh.num_heads;
  attention_delta_kernel<<<unsigned((items + kDeltaWarps - 1) / kDeltaWarps), kDeltaWarps * 32, 0,
                           c.stream>>>(delta, p.dout, out_p, int(N), sh.T, sh.num_heads, p.D);
  check_launch(op, shape + " (delta)");
  switch (head_bucket(p.D)) {
    case 64: launch_backward<64>(c, p, sh.B, shape); break;
    case 128: launch_backward<128>(c, p, sh.B, shape); break;
    default: launch_backward<256>(c, p, sh.B, shape); break;
  }
}

void CudaOps::scatter_rows(Buf table, CBuf rows, int rows_stride, const int32_t* row_index,
                           int n, int width) {
  const char* op = "scatter_rows";
  const std::string shape = shape_str("n", n, "width", width, "rows_stride", rows_stride);
  require(n >= 0 && width >= 0 && rows_stride >= width,
          std::string(op) + " (" + shape + "): bad sizes (rows_stride must be >= width)");
  if (n == 0 || width == 0) return;
  bf16* t = bf16_ptr(table, op);
  const bf16* r = bf16_ptr(rows, op);
  if (!t || !r || !row_index)
    throw Error(std::string(op) + " (" + shape + "): table, rows and row_index are required");
  const size_t total = size_t(n) * width;
  const unsigned blocks = unsigned(std::min<size_t>(grid_for(total, kScatterThreads), 1u << 16));
  scatter_rows_kernel<<<blocks, kScatterThreads, 0, context().stream>>>(t, r, rows_stride,
                                                                        row_index, n, width);
  check_launch(op, shape);
}

}  // namespace polaris
