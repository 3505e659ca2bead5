// Flash attention on tensor cores (forward and deterministic backward) for
// CudaOps, and the dispatch of CudaOps::attention_forward/backward between it
// and the simple CUDA-core kernels of cuda/attention.cu.
//
// Course note.
//   Math (as cuda/attention.cu, whose note derives it): per batch row b, query
//   head h, kv head g = h / (H / KVH), query t, visible keys S(t) =
//   [doc_start(t), t] (documents are contiguous runs of a row), scale =
//   1/sqrt(D). Forward: x = scale q_t.k_s, lse_t = log sum_S exp(x),
//   out_t = sum_S exp(x - lse_t) v_s. Backward: Delta_t = dout_t.out_t,
//   dP = dout_t.v_s, dS = P (dP - Delta_t), dq = scale sum_s dS k_s,
//   dk = scale sum_{h in g, t} dS q_t, dv = sum_{h in g, t} P dout_t.
//   Scores are kept in base 2 (x log2 e, exp2f); lse is stored in base e,
//   fp32 [B, H, T].
//
//   Instructions (sm_80, so the same code runs on A100 and H100):
//   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (bf16 in, fp32
//   accumulate), ldmatrix.x4 (and .trans for operands whose reduction dim is
//   the tile's row dim: V in P V, K in dS K, Q and dO in the dK/dV products),
//   cp.async.cg 16-byte copies global -> shared (zero-fill for rows past T),
//   two buffers so tile i+1 streams in while tile i is multiplied.
//
//   Tiles. Every kernel has 4 warps (128 threads) and each warp owns 16 rows
//   of the "M" side of its products, so every product is warp-local and P /
//   dS never touch shared memory: the mma accumulator fragment of S (rows
//   g, g+8; columns 2q, 2q+1 of each 8-column block, g = lane/4, q = lane%4)
//   is exactly the A fragment of the next mma after a bf16 pack.
//   - forward: a CTA per (64 queries, head, batch row), warp w owns queries
//     16w..16w+15; key tiles of 64 (Bc = Br = 64: the causal diagonal is one
//     tile, and 64 keys make the P V product k = 64 deep, 4 mma k-steps).
//     Grid (ceil(T/64), H, B), the last (heaviest) query tiles first.
//     Per thread: S = 8 n-blocks x 4 = 32 fp32, O = D/2 fp32, m and l of 2
//     rows; Q, K, V fragments are re-read with ldmatrix at each use.
//   - dQ: a CTA per (64 queries, head, batch row), the forward's structure:
//     per key tile S = Q K^T, P = exp2(S - lse), dP = dO V^T,
//     dS = P (dP - Delta), dQ += dS K in registers. dQ is NOT reduced across
//     CTAs: one CTA owns a query tile's dq rows and loops over its key tiles
//     in increasing order, so dq is written once, deterministically. (This
//     recomputes Q K^T and dO V^T once more than a single-pass backward: 7
//     instead of 5 T^2 D products, the price of no atomics and no partials.)
//   - dK/dV: a CTA per (64 keys, kv head, batch row), warp w owns keys
//     16w..16w+15 and keeps dK, dV (2 x D/2 fp32) in registers while it
//     loops over the group's query heads and, for each, the query tiles of
//     Bq queries (Bq = 64 for D = 64, 32 for D = 128 to keep 2 x 64 fp32
//     accumulators plus S^T, dP^T under 255 registers) from the key tile
//     onward to the end of the last key's document (a binary search over
//     doc_start). It computes the transposed products S^T = K Q^T,
//     dP^T = V dO^T, so keys are the mma rows and dV += P^T dO,
//     dK += dS^T Q need no exchange. Written once at the end: deterministic,
//     no float atomics anywhere. Delta = rowsum(dO o O) is precomputed by a
//     small kernel (a warp per token and head) into fp32 scratch [B, H, T].
//   - Skipping: per query tile the key range is [doc_start(first query),
//     last query]; tiles wholly before it or after the causal limit are never
//     loaded. A tile with every (query, key) visible (k0 + 63 <= t0 and
//     k0 >= doc_start(last query)) skips the elementwise mask; partial tiles
//     mask s <= t && s >= doc_start(t). Rows past T get doc_start = INT_MAX
//     (fully masked, never written).
//
//   Shared memory (bytes; a tile of R rows of D bf16 is R*D*2):
//     forward  Q 64xD + 2 x (K 64xD + V 64xD)        = 40 KiB (D=64), 80 KiB (D=128)
//     dQ       Q, dO 64xD + 2 x (K, V 64xD)          = 48 KiB, 96 KiB
//     dK/dV    K, V 64xD + 2 x (Q, dO BqxD) + stats  = 49.5 KiB, 64.8 KiB
//   Registers (ptxas -v, sm_80 / sm_90a; no spills, 255 is the cap at 128
//   threads): forward 155/154 (D=64), 240/246 (D=128); dQ 195/202, 245/246;
//   dK/dV 222/210, 254/252; Delta 30/28. So 2 CTAs (8 warps) per SM for
//   D=128, also the shared-memory limit of the dQ kernel.
//   Bank conflicts: a row is D/8 = 8 or 16 chunks of 16 bytes; chunk c of
//   row r is stored at chunk c ^ (r & 7) of that row (an XOR swizzle). An
//   ldmatrix phase reads the same logical chunk of 8 consecutive rows: after
//   the swizzle they sit in 8 different 16-byte bank groups (rows are a
//   multiple of 128 bytes apart), so every ldmatrix (plain or .trans) and
//   every cp.async store is conflict-free, with no padding.
//
//   Flops and bytes. Forward per (query tile, key tile): 2 x 64x64xD x 2 =
//   1 MFLOP (D=64) / 2.1 MFLOP (D=128) against 2 x 64xD x 2 bytes of K and V
//   from L2 (16 / 32 KiB): 64 flop per byte of L2 traffic, and from HBM each
//   K/V tile is read by T/64 query tiles per head (mostly L2 hits). Causal
//   totals: forward 4 B H T^2 D / 2 flops, backward counted as 2.5x (the
//   FlashAttention convention; the kernels here execute 3.5x: see dQ).
//   Qwen3-4B, B=2, T=2048, H=32, D=128: forward 68.7 GFLOP -> 69 us at the
//   H100's 989 TFLOP/s dense bf16. mma.sync cannot reach that peak on an H100
//   (it is the wgmma/TMA path that does): roughly 60-70% of it at best, and
//   this kernel (4 warps, no warp specialisation, exp2 on the critical path,
//   ldmatrix of Q every tile, 2 CTAs per SM at D=128) should land at about
//   200-350 TFLOP/s forward and 120-220 backward (by the 2.5x count); on an
//   A100 (312 TFLOP/s peak) ~150-200 forward. Unmeasured when written.
//
//   Precision: scores, softmax statistics, Delta and every accumulator are
//   fp32; P (forward, dV) and dS (dQ, dK) are rounded to bf16 to feed the
//   mma, which is the main difference from the fp32 simple kernels (the row
//   sum l uses the unrounded P). Outputs are rounded to bf16 once.
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "cuda/attention_kernels.h"
#include "cuda/cudnn_attention.h"
#include "cuda/context.cuh"

namespace polaris {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBR = 64;   // query rows per forward / dQ CTA (16 per warp)
constexpr int kBC = 64;   // key rows per key tile (forward, dQ) and per dK/dV CTA
constexpr int kDeltaWarps = 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kBR == kWarps * 16 && kBC == kWarps * 16, "a warp owns 16 mma rows");
static_assert(kBC % 16 == 0 && kBR % 16 == 0, "mma k-steps of 16");

// dK/dV query tile: 64 rows for D = 64, 32 for D = 128 (registers).
template <int D>
struct FlashCfg {
  static_assert(D == 64 || D == 128, "flash head dims");
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static constexpr int kBQ = D == 64 ? 64 : 32;
  static constexpr int kTile64 = 64 * D * 2;     // bytes of a 64-row tile
  static constexpr int kTileBQ = kBQ * D * 2;
  static constexpr int kFwdSmem = kTile64 * 5;   // Q + 2 x (K, V)
  static constexpr int kDqSmem = kTile64 * 6;    // Q, dO + 2 x (K, V)
  static constexpr int kStatsBytes = 2 * 3 * kBQ * 4;  // 2 buffers of lse2, delta, doc_start
  static constexpr int kDkdvSmem = kTile64 * 2 + kTileBQ * 4 + kStatsBytes;
  static_assert(kBQ % 16 == 0, "query tile of whole mma k-steps");
};

struct FlashParams {
  bf16* out;            // [B*T, H*D] dense
  float* lse_out;       // [B, H, T] or null
  const bf16* q;        // rows q_row apart
  const bf16* k;        // rows k_row apart
  const bf16* v;        // rows v_row apart
  const bf16* dout;     // [B*T, H*D] dense
  const float* lse;     // [B, H, T]
  const float* delta;   // [B, H, T]
  bf16* dq;             // rows q_row apart, or null
  bf16* dk;             // rows k_row apart, or null
  bf16* dv;             // rows v_row apart, or null
  const int* doc_start; // [B*T] or null
  int T, H, KVH, group;
  long long q_row, k_row, v_row;
  float scale, scale_log2;
};

// ---- PTX wrappers -----------------------------------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; src_bytes 0 fills zeros (and reads nothing).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a (16x16, row) * b (16x8, col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two fp32 -> one register of two bf16 (lo in the low half, as mma expects).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// The fp32 accumulators of n-blocks 2kk and 2kk + 1 (16 columns; rows g and
// g + 8 of the warp's 16) as the bf16 A fragment of k-step kk of the next
// product: the accumulator layout is the A layout, so no exchange is needed.
template <int N>
__device__ __forceinline__ void pack_a_fragment(uint32_t (&a)[4], const float (&acc)[N][4],
                                                int kk) {
  a[0] = pack_bf16(acc[2 * kk][0], acc[2 * kk][1]);
  a[1] = pack_bf16(acc[2 * kk][2], acc[2 * kk][3]);
  a[2] = pack_bf16(acc[2 * kk + 1][0], acc[2 * kk + 1][1]);
  a[3] = pack_bf16(acc[2 * kk + 1][2], acc[2 * kk + 1][3]);
}

// ---- swizzled tiles -------------------------------------------------------------

// Byte offset of 16-byte chunk `chunk` of row `row` in a tile of D-wide rows.
template <int D>
__host__ __device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return uint32_t((row * FlashCfg<D>::kChunks + (chunk ^ (row & 7))) * 16);
}

// ROWS rows of D bf16 from src (row r at src + r*ld) into the tile at `tile`
// (a shared address); rows >= rows_valid become zeros. `safe` is any valid
// global address (the zero-fill copies read nothing, but need an address).
template <int D, int ROWS>
__device__ __forceinline__ void load_tile(uint32_t tile, const bf16* src, long long ld,
                                          int rows_valid, const bf16* safe) {
  constexpr int CH = FlashCfg<D>::kChunks;
  static_assert((ROWS * CH) % kThreads == 0, "whole copy rounds");
#pragma unroll
  for (int round = 0; round < ROWS * CH / kThreads; ++round) {
    const int i = round * kThreads + int(threadIdx.x);
    const int r = i / CH, c = i % CH;
    const bool ok = r < rows_valid;
    cp_async16(tile + swz<D>(r, c), ok ? src + r * ld + c * 8 : safe, ok);
  }
}

// The tiles the kernels stage, by what they hold (cp.async, rows past T
// zero-filled; the caller commits the group; T is the kernel's copy of p.T,
// so every bound is computed from one value):
//   K and V rows [k0, k0 + kBC) into sK, sV; kb, vb point at key 0 of this
//   batch row's kv head;
template <int D>
__device__ __forceinline__ void load_kv_tiles(uint32_t sK, uint32_t sV, const FlashParams& p,
                                              int T, const bf16* kb, const bf16* vb, int k0) {
  load_tile<D, kBC>(sK, kb + k0 * p.k_row, p.k_row, T - k0, p.k);
  load_tile<D, kBC>(sV, vb + k0 * p.v_row, p.v_row, T - k0, p.v);
}
//   Q and dO rows [q0, q0 + ROWS) of head h of the batch row starting at
//   token row0 into sQ, sO.
template <int D, int ROWS>
__device__ __forceinline__ void load_q_do_tiles(uint32_t sQ, uint32_t sO, const FlashParams& p,
                                                int T, long long row0, int h, int q0) {
  const long long HD = (long long)p.H * D;
  load_tile<D, ROWS>(sQ, p.q + (row0 + q0) * p.q_row + (long long)h * D, p.q_row, T - q0, p.q);
  load_tile<D, ROWS>(sO, p.dout + (row0 + q0) * HD + (long long)h * D, HD, T - q0, p.dout);
}

// Fragment addresses (per lane) of the three ways a tile is read:
//   A operand, rows r0..r0+15 of the tile, reduction columns 16kk..16kk+15;
__device__ __forceinline__ int a_row(int lane) { return lane & 15; }
__device__ __forceinline__ int a_chunk(int lane, int kk) { return kk * 2 + (lane >> 4); }
//   B operand with the tile's rows as n (two n-blocks of 8: rows n0..n0+15),
//   reduction over columns 16kk.. (K in Q K^T): regs {b0, b1} of n-block 0,
//   then of n-block 1;
__device__ __forceinline__ int bn_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
__device__ __forceinline__ int bn_chunk(int lane, int kk) { return kk * 2 + ((lane >> 3) & 1); }
//   B operand with the tile's rows as the reduction (rows k0..k0+15) and
//   columns n0..n0+15 as n, through ldmatrix.trans (V in P V).
__device__ __forceinline__ int bt_row(int lane) { return (lane & 7) + (((lane >> 3) & 1) << 3); }
__device__ __forceinline__ int bt_chunk(int lane, int nn) { return nn * 2 + (lane >> 4); }

// ---- forward --------------------------------------------------------------------

template <int D>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(const FlashParams p) {
  using C = FlashCfg<D>;
  constexpr int NS = kBC / 8;  // score n-blocks per warp row block
  constexpr int NO = D / 8;    // output n-blocks
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sQ = smem_u32(smem);
  const uint32_t sK = sQ + C::kTile64;          // + buf * kTile64
  const uint32_t sV = sK + 2 * C::kTile64;      // + buf * kTile64

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, tq = lane & 3;
  const int T = p.T;
  const int qt = int(gridDim.x) - 1 - int(blockIdx.x);  // heaviest tiles first
  const int h = blockIdx.y, b = blockIdx.z, kvh = h / p.group;
  const int t0 = qt * kBR;
  const long long row0 = (long long)b * T;
  const int* ds = p.doc_start ? p.doc_start + row0 : nullptr;
  const int tlast = min(t0 + kBR, T) - 1;
  const int ds_last = ds ? ds[tlast] : 0;
  const int kt_begin = (ds ? ds[t0] : 0) / kBC, kt_end = tlast / kBC + 1;

  const bf16* qb = p.q + row0 * p.q_row + (long long)h * D;
  const bf16* kb = p.k + row0 * p.k_row + (long long)kvh * D;
  const bf16* vb = p.v + row0 * p.v_row + (long long)kvh * D;
  load_tile<D, kBR>(sQ, qb + t0 * p.q_row, p.q_row, T - t0, p.q);
  load_kv_tiles<D>(sK, sV, p, T, kb, vb, kt_begin * kBC);
  cp_async_commit();

  // This thread's two query rows (mma rows g and g + 8 of the warp's 16).
  const int ta = t0 + warp * 16 + g, tb = ta + 8;
  const int dsa = ta < T ? (ds ? ds[ta] : 0) : INT_MAX;
  const int dsb = tb < T ? (ds ? ds[tb] : 0) : INT_MAX;

  float o[NO][4];
#pragma unroll
  for (int j = 0; j < NO; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  for (int kt = kt_begin; kt < kt_end; ++kt) {
    const uint32_t buf = uint32_t((kt - kt_begin) & 1) * C::kTile64;
    if (kt + 1 < kt_end)
      load_kv_tiles<D>(sK + (C::kTile64 - buf), sV + (C::kTile64 - buf), p, T, kb, vb,
                       (kt + 1) * kBC);
    cp_async_commit();  // possibly empty: keeps the group count uniform
    cp_async_wait<1>();
    __syncthreads();
    const int k0 = kt * kBC;

    // S = Q K^T (warp rows 16w.., all 64 keys)
    float s[NS][4];
#pragma unroll
    for (int j = 0; j < NS; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      ldsm_x4(a, sQ + swz<D>(warp * 16 + a_row(lane), a_chunk(lane, kk)));
#pragma unroll
      for (int nj = 0; nj < kBC / 16; ++nj) {
        uint32_t bb[4];
        ldsm_x4(bb, sK + buf + swz<D>(nj * 16 + bn_row(lane), bn_chunk(lane, kk)));
        mma_bf16(s[2 * nj], a, bb[0], bb[1]);
        mma_bf16(s[2 * nj + 1], a, bb[2], bb[3]);
      }
    }

    // Base-2 scores, masked where the tile is not wholly visible.
    const bool full = k0 + kBC - 1 <= t0 && k0 >= ds_last;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < NS; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[j][e] * p.scale_log2;
        if (!full) {
          const int key = k0 + j * 8 + 2 * tq + (e & 1);
          const int t = e < 2 ? ta : tb, d0 = e < 2 ? dsa : dsb;
          if (key > t || key < d0) x = -INFINITY;
        }
        s[j][e] = x;
      }
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    // The 4 lanes of a quad share the rows.
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    // A row with nothing visible yet keeps m = -inf: subtract 0 instead.
    const float mu0 = mn0 == -INFINITY ? 0.f : mn0, mu1 = mn1 == -INFINITY ? 0.f : mn1;
    const float c0 = exp2f(m0 - mu0), c1 = exp2f(m1 - mu1);
    m0 = mn0;
    m1 = mn1;
    float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      s[j][0] = exp2f(s[j][0] - mu0);
      s[j][1] = exp2f(s[j][1] - mu0);
      s[j][2] = exp2f(s[j][2] - mu1);
      s[j][3] = exp2f(s[j][3] - mu1);
      rs0 += s[j][0] + s[j][1];
      rs1 += s[j][2] + s[j][3];
    }
    l0 = l0 * c0 + rs0;  // per-lane partial row sums (quad-reduced at the end)
    l1 = l1 * c1 + rs1;
#pragma unroll
    for (int j = 0; j < NO; ++j) {
      o[j][0] *= c0;
      o[j][1] *= c0;
      o[j][2] *= c1;
      o[j][3] *= c1;
    }
    // O += P V, P rounded to bf16 (the accumulator fragment is the A fragment).
#pragma unroll
    for (int kk = 0; kk < kBC / 16; ++kk) {
      uint32_t a[4];
      pack_a_fragment(a, s, kk);
#pragma unroll
      for (int nn = 0; nn < D / 16; ++nn) {
        uint32_t bb[4];
        ldsm_x4_t(bb, sV + buf + swz<D>(kk * 16 + bt_row(lane), bt_chunk(lane, nn)));
        mma_bf16(o[2 * nn], a, bb[0], bb[1]);
        mma_bf16(o[2 * nn + 1], a, bb[2], bb[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's prefetch
  }
  cp_async_wait<0>();

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const long long HD = (long long)p.H * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = r ? tb : ta;
    if (t >= T) continue;
    const float l = r ? l1 : l0, m = r ? m1 : m0;
    const float inv = 1.f / l;  // l >= 1: key t itself is always visible
    bf16* orow = p.out + (row0 + t) * HD + (long long)h * D;
#pragma unroll
    for (int j = 0; j < NO; ++j) {
      const __nv_bfloat162 v2 = __floats2bfloat162_rn(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
      *reinterpret_cast<__nv_bfloat162*>(orow + j * 8 + 2 * tq) = v2;
    }
    if (p.lse_out && tq == 0)
      p.lse_out[((long long)b * p.H + h) * T + t] = (m + log2f(l)) * kLn2;
  }
}

// ---- backward: Delta ------------------------------------------------------------

// Delta[b, h, t] = sum_d dout[n, h*D + d] * out[n, h*D + d]: a warp per (n, h).
__global__ void __launch_bounds__(kDeltaWarps * 32)
    flash_delta_kernel(float* __restrict__ delta, const bf16* __restrict__ dout,
                       const bf16* __restrict__ out, long long N, int T, int H, int D) {
  const long long item = (long long)blockIdx.x * kDeltaWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (item >= N * H) return;  // warp-uniform
  const long long n = item / H;
  const int h = int(item % H);
  const size_t off = size_t(n) * H * D + size_t(h) * D;
  float acc = 0.f;
  for (int d = 2 * lane; d < D; d += 64) {  // D even (64 or 128)
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dout + off + d));
    const float2 c = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(out + off + d));
    acc = fmaf(a.x, c.x, acc);
    acc = fmaf(a.y, c.y, acc);
  }
  acc = warp_sum(acc);
  if (lane == 0) {
    const long long b = n / T, t = n % T;
    delta[(b * H + h) * T + t] = acc;
  }
}

// ---- backward: dQ ---------------------------------------------------------------

template <int D>
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(const FlashParams p) {
  using C = FlashCfg<D>;
  constexpr int NS = kBC / 8;
  constexpr int NO = D / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sQ = smem_u32(smem);
  const uint32_t sO = sQ + C::kTile64;      // dO
  const uint32_t sK = sO + C::kTile64;      // + buf
  const uint32_t sV = sK + 2 * C::kTile64;  // + buf

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, tq = lane & 3;
  const int T = p.T;
  const int qt = int(gridDim.x) - 1 - int(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, kvh = h / p.group;
  const int t0 = qt * kBR;
  const long long row0 = (long long)b * T;
  const int* ds = p.doc_start ? p.doc_start + row0 : nullptr;
  const int tlast = min(t0 + kBR, T) - 1;
  const int ds_last = ds ? ds[tlast] : 0;
  const int kt_begin = (ds ? ds[t0] : 0) / kBC, kt_end = tlast / kBC + 1;

  const bf16* kb = p.k + row0 * p.k_row + (long long)kvh * D;
  const bf16* vb = p.v + row0 * p.v_row + (long long)kvh * D;
  load_q_do_tiles<D, kBR>(sQ, sO, p, T, row0, h, t0);
  load_kv_tiles<D>(sK, sV, p, T, kb, vb, kt_begin * kBC);
  cp_async_commit();

  const int ta = t0 + warp * 16 + g, tb = ta + 8;
  const int dsa = ta < T ? (ds ? ds[ta] : 0) : INT_MAX;
  const int dsb = tb < T ? (ds ? ds[tb] : 0) : INT_MAX;
  const float* lse_h = p.lse + ((long long)b * p.H + h) * T;
  const float* delta_h = p.delta + ((long long)b * p.H + h) * T;
  const float la = ta < T ? lse_h[ta] * kLog2e : 0.f, lb = tb < T ? lse_h[tb] * kLog2e : 0.f;
  const float da = ta < T ? delta_h[ta] : 0.f, db = tb < T ? delta_h[tb] : 0.f;

  float acc[NO][4];
#pragma unroll
  for (int j = 0; j < NO; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

  for (int kt = kt_begin; kt < kt_end; ++kt) {
    const uint32_t buf = uint32_t((kt - kt_begin) & 1) * C::kTile64;
    if (kt + 1 < kt_end)
      load_kv_tiles<D>(sK + (C::kTile64 - buf), sV + (C::kTile64 - buf), p, T, kb, vb,
                       (kt + 1) * kBC);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int k0 = kt * kBC;

    float s[NS][4], dp[NS][4];
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      dp[j][0] = dp[j][1] = dp[j][2] = dp[j][3] = 0.f;
    }
    // S = Q K^T and dP = dO V^T (kk not unrolled for D = 128: the unrolled
    // loop's hoisted addresses pushed ptxas past 255 registers)
#pragma unroll(D == 64 ? 4 : 1)
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4], ao[4];
      ldsm_x4(a, sQ + swz<D>(warp * 16 + a_row(lane), a_chunk(lane, kk)));
      ldsm_x4(ao, sO + swz<D>(warp * 16 + a_row(lane), a_chunk(lane, kk)));
#pragma unroll
      for (int nj = 0; nj < kBC / 16; ++nj) {
        uint32_t bb[4];
        ldsm_x4(bb, sK + buf + swz<D>(nj * 16 + bn_row(lane), bn_chunk(lane, kk)));
        mma_bf16(s[2 * nj], a, bb[0], bb[1]);
        mma_bf16(s[2 * nj + 1], a, bb[2], bb[3]);
        ldsm_x4(bb, sV + buf + swz<D>(nj * 16 + bn_row(lane), bn_chunk(lane, kk)));
        mma_bf16(dp[2 * nj], ao, bb[0], bb[1]);
        mma_bf16(dp[2 * nj + 1], ao, bb[2], bb[3]);
      }
    }
    // P = exp2(x - lse2) (masked), dS = P (dP - Delta), kept in s.
    const bool full = k0 + kBC - 1 <= t0 && k0 >= ds_last;
#pragma unroll
    for (int j = 0; j < NS; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + j * 8 + 2 * tq + (e & 1);
        const int t = e < 2 ? ta : tb, d0 = e < 2 ? dsa : dsb;
        const bool vis = full || (key <= t && key >= d0);
        const float pr = vis ? exp2f(s[j][e] * p.scale_log2 - (e < 2 ? la : lb)) : 0.f;
        s[j][e] = pr * (dp[j][e] - (e < 2 ? da : db));
      }
    }
    // dQ += dS K (dS rounded to bf16)
#pragma unroll
    for (int kk = 0; kk < kBC / 16; ++kk) {
      uint32_t a[4];
      pack_a_fragment(a, s, kk);
#pragma unroll
      for (int nn = 0; nn < D / 16; ++nn) {
        uint32_t bb[4];
        ldsm_x4_t(bb, sK + buf + swz<D>(kk * 16 + bt_row(lane), bt_chunk(lane, nn)));
        mma_bf16(acc[2 * nn], a, bb[0], bb[1]);
        mma_bf16(acc[2 * nn + 1], a, bb[2], bb[3]);
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = r ? tb : ta;
    if (t >= T) continue;
    bf16* row = p.dq + (row0 + t) * p.q_row + (long long)h * D;
#pragma unroll
    for (int j = 0; j < NO; ++j)
      *reinterpret_cast<__nv_bfloat162*>(row + j * 8 + 2 * tq) =
          __floats2bfloat162_rn(acc[j][2 * r] * p.scale, acc[j][2 * r + 1] * p.scale);
  }
}

// ---- backward: dK, dV -----------------------------------------------------------

// One past the last query that sees key k_last: the start of the first
// document after k_last's (doc_start is non-decreasing along a row).
__device__ __forceinline__ int query_end(const int* ds, int k_last, int T) {
  if (!ds) return T;
  int lo = k_last + 1, hi = T;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (ds[mid] > k_last) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_dkdv_kernel(const FlashParams p) {
  using C = FlashCfg<D>;
  constexpr int BQ = C::kBQ;
  constexpr int NS = BQ / 8;  // S^T n-blocks (queries)
  constexpr int NO = D / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sK = smem_u32(smem);
  const uint32_t sV = sK + C::kTile64;
  const uint32_t sQ = sV + C::kTile64;    // + buf * kTileBQ
  const uint32_t sO = sQ + 2 * C::kTileBQ;  // dO, + buf * kTileBQ
  float* st_lse = reinterpret_cast<float*>(smem + 2 * C::kTile64 + 4 * C::kTileBQ);  // [2][BQ]
  float* st_delta = st_lse + 2 * BQ;                                                 // [2][BQ]
  int* st_ds = reinterpret_cast<int*>(st_delta + 2 * BQ);                            // [2][BQ]
  __shared__ int s_qend;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, tq = lane & 3;
  const int T = p.T;
  const int k0 = blockIdx.x * kBC;  // early keys see the most queries: launched first
  const int kvh = blockIdx.y, b = blockIdx.z;
  const long long row0 = (long long)b * T;
  const int* ds = p.doc_start ? p.doc_start + row0 : nullptr;
  const int k_last = min(k0 + kBC, T) - 1;
  if (threadIdx.x == 0) s_qend = query_end(ds, k_last, T);

  load_kv_tiles<D>(sK, sV, p, T, p.k + row0 * p.k_row + (long long)kvh * D,
                   p.v + row0 * p.v_row + (long long)kvh * D, k0);
  __syncthreads();  // s_qend
  const int q_end = s_qend;
  const int qt_begin = k0 / BQ, n_qt = (q_end + BQ - 1) / BQ - qt_begin;
  const int n_iter = p.group * n_qt;

  // Stage query tile `it` (head, tile) into buffer `buf`.
  auto issue = [&](int it, int buf) {
    const int h = kvh * p.group + it / n_qt;
    const int q0 = (qt_begin + it % n_qt) * BQ;
    load_q_do_tiles<D, BQ>(sQ + buf * C::kTileBQ, sO + buf * C::kTileBQ, p, T, row0, h, q0);
    const long long bh = ((long long)b * p.H + h) * T;
    for (int i = threadIdx.x; i < BQ; i += kThreads) {
      const int t = q0 + i;
      const bool ok = t < T;
      st_lse[buf * BQ + i] = ok ? p.lse[bh + t] * kLog2e : 0.f;
      st_delta[buf * BQ + i] = ok ? p.delta[bh + t] : 0.f;
      st_ds[buf * BQ + i] = ok ? (ds ? ds[t] : 0) : INT_MAX;
    }
  };
  if (n_iter > 0) issue(0, 0);
  cp_async_commit();  // K, V and the first query tile

  const int sa = k0 + warp * 16 + g, sb = sa + 8;  // this thread's two keys
  float dk[NO][4], dv[NO][4];
#pragma unroll
  for (int j = 0; j < NO; ++j) {
    dk[j][0] = dk[j][1] = dk[j][2] = dk[j][3] = 0.f;
    dv[j][0] = dv[j][1] = dv[j][2] = dv[j][3] = 0.f;
  }

  for (int it = 0; it < n_iter; ++it) {
    const int bi = it & 1;
    if (it + 1 < n_iter) issue(it + 1, bi ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const uint32_t qbuf = sQ + bi * C::kTileBQ, obuf = sO + bi * C::kTileBQ;
    const float* lse2 = st_lse + bi * BQ;
    const float* dlt = st_delta + bi * BQ;
    const int* dsq = st_ds + bi * BQ;
    const int q0 = (qt_begin + it % n_qt) * BQ;

    // S^T = K Q^T, dP^T = V dO^T (the warp's 16 keys x BQ queries)
    float s[NS][4], dp[NS][4];
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      dp[j][0] = dp[j][1] = dp[j][2] = dp[j][3] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4], av[4];
      ldsm_x4(a, sK + swz<D>(warp * 16 + a_row(lane), a_chunk(lane, kk)));
      ldsm_x4(av, sV + swz<D>(warp * 16 + a_row(lane), a_chunk(lane, kk)));
#pragma unroll
      for (int nj = 0; nj < BQ / 16; ++nj) {
        uint32_t bb[4];
        ldsm_x4(bb, qbuf + swz<D>(nj * 16 + bn_row(lane), bn_chunk(lane, kk)));
        mma_bf16(s[2 * nj], a, bb[0], bb[1]);
        mma_bf16(s[2 * nj + 1], a, bb[2], bb[3]);
        ldsm_x4(bb, obuf + swz<D>(nj * 16 + bn_row(lane), bn_chunk(lane, kk)));
        mma_bf16(dp[2 * nj], av, bb[0], bb[1]);
        mma_bf16(dp[2 * nj + 1], av, bb[2], bb[3]);
      }
    }
    // P^T (masked) into s, dS^T into dp.
    const bool full = k0 + kBC - 1 <= q0 && q0 + BQ <= T && k0 >= dsq[BQ - 1];
#pragma unroll
    for (int j = 0; j < NS; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = j * 8 + 2 * tq + (e & 1);  // query within the tile
        const int key = e < 2 ? sa : sb;
        const bool vis = full || (key <= q0 + qi && key >= dsq[qi]);
        const float pr = vis ? exp2f(s[j][e] * p.scale_log2 - lse2[qi]) : 0.f;
        s[j][e] = pr;
        dp[j][e] = pr * (dp[j][e] - dlt[qi]);
      }
    }
    // dV += P^T dO, dK += dS^T Q (P and dS rounded to bf16)
#pragma unroll
    for (int kk = 0; kk < BQ / 16; ++kk) {
      uint32_t ap[4];
      pack_a_fragment(ap, s, kk);
      uint32_t ad[4];
      pack_a_fragment(ad, dp, kk);
#pragma unroll
      for (int nn = 0; nn < D / 16; ++nn) {
        uint32_t bb[4];
        ldsm_x4_t(bb, obuf + swz<D>(kk * 16 + bt_row(lane), bt_chunk(lane, nn)));
        mma_bf16(dv[2 * nn], ap, bb[0], bb[1]);
        mma_bf16(dv[2 * nn + 1], ap, bb[2], bb[3]);
        ldsm_x4_t(bb, qbuf + swz<D>(kk * 16 + bt_row(lane), bt_chunk(lane, nn)));
        mma_bf16(dk[2 * nn], ad, bb[0], bb[1]);
        mma_bf16(dk[2 * nn + 1], ad, bb[2], bb[3]);
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int s_ = r ? sb : sa;
    if (s_ >= T) continue;
    if (p.dk) {
      bf16* row = p.dk + (row0 + s_) * p.k_row + (long long)kvh * D;
#pragma unroll
      for (int j = 0; j < NO; ++j)
        *reinterpret_cast<__nv_bfloat162*>(row + j * 8 + 2 * tq) =
            __floats2bfloat162_rn(dk[j][2 * r] * p.scale, dk[j][2 * r + 1] * p.scale);
    }
    if (p.dv) {
      bf16* row = p.dv + (row0 + s_) * p.v_row + (long long)kvh * D;
#pragma unroll
      for (int j = 0; j < NO; ++j)
        *reinterpret_cast<__nv_bfloat162*>(row + j * 8 + 2 * tq) =
            __floats2bfloat162_rn(dv[j][2 * r], dv[j][2 * r + 1]);
    }
  }
}

// ---- host side ---------------------------------------------------------------------

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// The flash kernels take head_dim 64/128 and 16-byte aligned rows (cp.async
// and the bf16x2 stores); null pointers are not checked here.
bool flash_shape_ok(const AttentionShape& sh) {
  return (sh.head_dim == 64 || sh.head_dim == 128) && sh.q_row() % 8 == 0 &&
         sh.k_row() % 8 == 0 && sh.v_row() % 8 == 0 && sh.B <= 65535 &&
         sh.num_heads <= 65535 && sh.num_kv_heads <= 65535;
}
bool aligned_all(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (p && !aligned16(p)) return false;
  return true;
}

template <class Kernel>
void allow_smem(Kernel kernel, int bytes, const char* op, const std::string& shape) {
  if (bytes <= 48 * 1024) return;
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
             std::string(op) + ": cudaFuncSetAttribute(max dynamic shared memory " +
                 std::to_string(bytes) + " B) (" + shape + ")");
}

FlashParams base_params(const AttentionShape& sh) {
  FlashParams p{};
  p.T = sh.T;
  p.H = sh.num_heads;
  p.KVH = sh.num_kv_heads;
  p.group = sh.num_heads / sh.num_kv_heads;
  p.q_row = sh.q_row();
  p.k_row = sh.k_row();
  p.v_row = sh.v_row();
  p.scale = 1.f / std::sqrt(float(sh.head_dim));
  p.scale_log2 = kLog2e * p.scale;
  return p;
}

template <int D>
void launch_flash_forward(CudaContext& c, const FlashParams& p, int B, const std::string& shape) {
  const char* op = "attention_forward";
  const int smem = FlashCfg<D>::kFwdSmem;
  allow_smem(flash_forward_kernel<D>, smem, op, shape);
  const dim3 grid(grid_for(size_t(p.T), kBR), p.H, B);
  flash_forward_kernel<D><<<grid, kThreads, smem, c.stream>>>(p);
  check_launch(op, shape + " (flash)");
}

template <int D>
void launch_flash_backward(CudaContext& c, const FlashParams& p, int B, const std::string& shape) {
  const char* op = "attention_backward";
  if (p.dq) {
    const int smem = FlashCfg<D>::kDqSmem;
    allow_smem(flash_dq_kernel<D>, smem, op, shape);
    const dim3 grid(grid_for(size_t(p.T), kBR), p.H, B);
    flash_dq_kernel<D><<<grid, kThreads, smem, c.stream>>>(p);
    check_launch(op, shape + " (flash dq)");
  }
  if (p.dk || p.dv) {
    const int smem = FlashCfg<D>::kDkdvSmem;
    allow_smem(flash_dkdv_kernel<D>, smem, op, shape);
    const dim3 grid(grid_for(size_t(p.T), kBC), p.KVH, B);
    flash_dkdv_kernel<D><<<grid, kThreads, smem, c.stream>>>(p);
    check_launch(op, shape + " (flash dk/dv)");
  }
}

}  // namespace

// ---- CudaOps members ---------------------------------------------------------------

// "cudnn" needs the library in this build; a shape cuDNN's graph cannot
// express (packed documents, head_dim outside its set) still runs, on flash
// when it qualifies, else on the simple kernels.
void CudaOps::set_attention(const std::string& impl) {
  if (impl != "flash" && impl != "simple" && impl != "cudnn")
    throw Error("--attention must be flash, cudnn or simple, got '" + impl + "'");
  if (impl == "cudnn") {
    std::string why;
    cudnn_attention_supported(AttentionShape{1, 1, 1, 1, 64}, nullptr, &why);
    if (why.find("without cuDNN") != std::string::npos)
      throw Error("--attention cudnn: " + why);
  }
  attention_impl_ = impl;
}

void CudaOps::attention_forward(Buf out, float* lse, CBuf q, CBuf k, CBuf v,
                                const int32_t* doc_ids, const AttentionShape& sh) {
  const char* op = "attention_forward";
  check_attention_shape(sh, op);
  if (sh.B == 0 || sh.T == 0) return;
  CudaContext& c = context();
  FlashParams p = base_params(sh);
  p.out = bf16_ptr(out, op);
  p.lse_out = lse;
  p.q = bf16_ptr(q, op);
  p.k = bf16_ptr(k, op);
  p.v = bf16_ptr(v, op);
  if (attention_impl_ == "cudnn" && cudnn_attention_supported(sh, doc_ids, nullptr) && p.out &&
      aligned_all({p.out, p.q, p.k, p.v}))
    return cudnn_attention_forward(c, out, lse, q, k, v, doc_ids, sh);
  const bool flash = attention_impl_ != "simple" && flash_shape_ok(sh) && p.out && p.q && p.k &&
                     p.v && aligned_all({p.out, p.q, p.k, p.v});
  if (!flash) {
    simple_attention_forward(c, out, lse, q, k, v, doc_ids, sh);
    return;
  }
  const std::string shape = attention_shape_string(sh);
  if (doc_ids) {
    // Scratch is shared by every op: take the pointer now, use it in this op only.
    int* doc_start = static_cast<int*>(c.ensure_scratch(size_t(sh.B) * sh.T * sizeof(int)));
    attention_doc_start(c, doc_start, doc_ids, sh.B, sh.T, op, shape);
    p.doc_start = doc_start;
  }
  if (sh.head_dim == 64) launch_flash_forward<64>(c, p, sh.B, shape);
  else launch_flash_forward<128>(c, p, sh.B, shape);
}

void CudaOps::attention_backward(Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q, CBuf k, CBuf v,
                                 CBuf out, const float* lse, const int32_t* doc_ids,
                                 const AttentionShape& sh) {
  const char* op = "attention_backward";
  check_attention_shape(sh, op);
  if (sh.B == 0 || sh.T == 0) return;
  CudaContext& c = context();
  FlashParams p = base_params(sh);
  p.dq = bf16_ptr(dq, op);
  p.dk = bf16_ptr(dk, op);
  p.dv = bf16_ptr(dv, op);
  p.dout = bf16_ptr(dout, op);
  p.q = bf16_ptr(q, op);
  p.k = bf16_ptr(k, op);
  p.v = bf16_ptr(v, op);
  const bf16* out_p = bf16_ptr(out, op);
  p.lse = lse;
  if (attention_impl_ == "cudnn" && cudnn_attention_supported(sh, doc_ids, nullptr) && p.dout &&
      out_p && lse && aligned_all({p.dq, p.dk, p.dv, p.dout, p.q, p.k, p.v, out_p}))
    return cudnn_attention_backward(c, dq, dk, dv, dout, q, k, v, out, lse, doc_ids, sh);
  const bool flash = attention_impl_ != "simple" && flash_shape_ok(sh) && p.dout && p.q && p.k &&
                     p.v && out_p && lse &&
                     aligned_all({p.dq, p.dk, p.dv, p.dout, p.q, p.k, p.v, out_p});
  if (!flash) {  // also the path that reports missing arguments
    simple_attention_backward(c, dq, dk, dv, dout, q, k, v, out, lse, doc_ids, sh);
    return;
  }
  if (!p.dq && !p.dk && !p.dv) return;
  const std::string shape = attention_shape_string(sh);
  // Scratch: Delta [B, H, T] fp32, then doc_start [B*T] int (one call: the
  // scratch may move when grown).
  const size_t N = size_t(sh.B) * sh.T;
  const size_t delta_bytes = (N * sh.num_heads * sizeof(float) + 255) & ~size_t(255);
  char* scratch =
      static_cast<char*>(c.ensure_scratch(delta_bytes + (doc_ids ? N * sizeof(int) : 0)));
  float* delta = reinterpret_cast<float*>(scratch);
  p.delta = delta;
  if (doc_ids) {
    int* doc_start = reinterpret_cast<int*>(scratch + delta_bytes);
    attention_doc_start(c, doc_start, doc_ids, sh.B, sh.T, op, shape);
    p.doc_start = doc_start;
  }
  const size_t items = N * sh.num_heads;
  flash_delta_kernel<<<grid_for(items, kDeltaWarps), kDeltaWarps * 32, 0, c.stream>>>(
      delta, p.dout, out_p, (long long)N, sh.T, sh.num_heads, sh.head_dim);
  check_launch(op, shape + " (flash delta)");
  if (sh.head_dim == 64) launch_flash_backward<64>(c, p, sh.B, shape);
  else launch_flash_backward<128>(c, p, sh.B, shape);
}

}  // namespace polaris
