// CudaOps::attention_decode: one new query per sequence against its keys and
// values in the paged KV cache (model/kv_cache.h), read through the block
// table in place.
//
// Course note.
//   Math, per sequence s and query head h (kv head g = h / group), its L
//   cached keys j (row j % bs of block table[s][j / bs]); scale = 1/sqrt(D):
//     x_j = scale q . k_j,   out = sum_j exp(x_j - m) v_j / sum_j exp(x_j - m)
//   as an online softmax in base 2 (running max m, running sum l, the
//   accumulator rescaled when m grows), everything fp32, bf16 in and out.
//   Split over the sequence ("split-K"): the keys are cut into `splits`
//   chunks handled by different blocks, each leaving (m_z, l_z, acc_z); a
//   second kernel combines them in chunk order:
//     M = max_z m_z,  out = sum_z acc_z 2^(m_z - M) / sum_z l_z 2^(m_z - M)
//   (deterministic: fixed order, no atomics).
//
//   Work split. A block (8 warps) per (kv head, sequence, chunk): the group's
//   query heads are together, so each key/value tile is read from HBM once
//   for all of them. The block stages 32 keys and their values (bf16, D <=
//   DB wide) in shared memory; warp w serves query head w / parts and keys
//   w % parts, w % parts + parts, ... of each tile, parts = 8 / heads in the
//   block (a group of 2 heads: 4 warps per head). Lanes own dims lane + 32e,
//   a score is a warp_sum. At the end the warps of one head merge their
//   (m, l, acc) in warp order; with one chunk the block writes the output,
//   else the chunk's partial goes to scratch for the combine kernel. A group
//   larger than 8 heads takes several blocks (head passes).
//   The number of chunks fills the machine when few sequences decode (batch
//   1 of a long context): about 2 blocks per SM, chunks of at least 256 keys.
//   It is a function of (S, table width, block size) only, never of the
//   lengths, which live on the device: a decode step replayed from a CUDA
//   graph (model/decode_graphs.h: S and the width padded to buckets) keeps
//   its split count valid for every step of its bucket. A sequence of
//   length 0 (a padded row) gets zeros; chunks past a sequence's length
//   leave an empty partial (m = -inf) the combine skips.
//
//   Bytes and roofline (H100, 3.35 TB/s). The op reads each cached key and
//   value once: 4 L KVH D bytes per sequence (bf16), plus q and out. Flops are
//   4 L H D: 2 H/KVH flops a byte (Qwen3-0.6B: 2), far under the ridge
//   (~300): memory bound. Qwen3-0.6B (KVH 8, D 128, 28 layers) with 768
//   cached tokens reads 768 * 4 KiB = 3 MiB a layer-sequence... i.e. 84 MiB
//   per sequence per step over all layers: ~25 us at 3.35 TB/s. Staging
//   through shared memory costs one extra shared-memory pass; the tile loads
//   are not double-buffered, so expect 50-70% of the bound.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/context.cuh"
#include "cuda/cuda_ops.h"

namespace polaris {

namespace {

constexpr int kWarps = 8;          // per block
constexpr int kThreads = kWarps * 32;
constexpr int kTileKeys = 32;      // keys staged per tile
constexpr int kKeysPerStep = 4;    // keys a warp scores together
constexpr int kMinChunk = 256;     // keys per chunk at least
constexpr int kCombineThreads = 128;
// Resident blocks per SM asked of ptxas: caps registers at 128 a thread.
// Without it ptxas (CUDA 13, sm_90a) aimed at 48 for the 256 bucket and spilled.
constexpr int kMinBlocks = 2;
constexpr int kMaxHeadDim = 256;
constexpr float kLog2e = 1.4426950408889634f;

struct PagedParams {
  bf16* out;                   // [S, H*D]
  float* partial;              // [S, H, splits, D + 2] (acc, m, l) when splits > 1
  const bf16* q;               // [S, q_stride]
  const bf16* keys;            // pools [blocks, bs, KVH*D]
  const bf16* values;
  const int32_t* table;        // [S, width]
  const int32_t* lengths;      // [S]
  int width, bs, H, KVH, D, group, heads_per_pass, passes, splits, chunk;
  long long q_stride;
  float scale_log2;
};

template <int DB>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    paged_decode_kernel(const PagedParams p) {
  constexpr int NE = DB / 32;  // dims per lane: lane + 32e
  __shared__ bf16 k_tile[kTileKeys][DB];
  __shared__ bf16 v_tile[kTileKeys][DB];
  __shared__ float part_m[kWarps], part_l[kWarps];
  __shared__ float part_acc[kWarps][DB];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kvh = blockIdx.x / p.passes, pass = blockIdx.x % p.passes;
  const int s = blockIdx.y, z = blockIdx.z, D = p.D;
  const int first_head = kvh * p.group + pass * p.heads_per_pass;
  const int heads = min(p.heads_per_pass, p.group - pass * p.heads_per_pass);
  const int parts = kWarps / p.heads_per_pass;  // warps per head
  const int my_head = warp / parts, my_part = warp % parts;
  const bool active = my_head < heads;
  const int h = first_head + my_head;
  const int len = max(p.lengths[s], 0);
  const int begin = z * p.chunk, end = min(len, begin + p.chunk);
  const size_t kv_row = size_t(p.KVH) * D;
  const int32_t* blocks = p.table + size_t(s) * p.width;

  float q[NE], acc[NE];
  const bf16* qs = p.q + size_t(s) * p.q_stride + size_t(active ? h : first_head) * D;
#pragma unroll
  for (int e = 0; e < NE; ++e) {
    const int d = lane + 32 * e;
    q[e] = d < D ? to_f32(qs[d]) : 0.f;
    acc[e] = 0.f;
  }
  float m = -INFINITY, l = 0.f;  // uniform over the warp
  for (int t0 = begin; t0 < end; t0 += kTileKeys) {
    const int n = min(kTileKeys, end - t0);
    __syncthreads();  // the previous tile is consumed
    for (int i = threadIdx.x; i < kTileKeys * DB; i += kThreads) {
      const int r = i / DB, d = i % DB;
      bf16 kx = __float2bfloat16_rn(0.f), vx = kx;
      if (r < n && d < D) {
        const int j = t0 + r;
        const size_t row = size_t(blocks[j / p.bs]) * p.bs + size_t(j % p.bs);
        kx = p.keys[row * kv_row + size_t(kvh) * D + d];
        vx = p.values[row * kv_row + size_t(kvh) * D + d];
      }
      k_tile[r][d] = kx;
      v_tile[r][d] = vx;
    }
    __syncthreads();
    if (!active) continue;
    for (int u0 = my_part * kKeysPerStep; u0 < n; u0 += parts * kKeysPerStep) {
      float x[kKeysPerStep];
      float x_max = -INFINITY;
#pragma unroll
      for (int u = 0; u < kKeysPerStep; ++u) {
        float part = 0.f;
#pragma unroll
        for (int e = 0; e < NE; ++e) part = fmaf(q[e], to_f32(k_tile[u0 + u][lane + 32 * e]), part);
        x[u] = u0 + u < n ? warp_sum(part) * p.scale_log2 : -INFINITY;
        x_max = fmaxf(x_max, x[u]);
      }
      const float m_new = fmaxf(m, x_max);  // finite: key u0 < n exists
      const float corr = exp2f(m - m_new);
      l *= corr;
#pragma unroll
      for (int e = 0; e < NE; ++e) acc[e] *= corr;
#pragma unroll
      for (int u = 0; u < kKeysPerStep; ++u) {
        const float pj = u0 + u < n ? exp2f(x[u] - m_new) : 0.f;
        l += pj;
#pragma unroll
        for (int e = 0; e < NE; ++e) acc[e] = fmaf(pj, to_f32(v_tile[u0 + u][lane + 32 * e]), acc[e]);
      }
      m = m_new;
    }
  }
  if (lane == 0) {
    part_m[warp] = m;
    part_l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < NE; ++e) part_acc[warp][lane + 32 * e] = acc[e];
  __syncthreads();
  // Merge each head's warps in warp order; thread i serves (head, dim) pairs.
  for (int i = threadIdx.x; i < heads * D; i += kThreads) {
    const int hh = i / D, d = i % D, w0 = hh * parts;
    float m_all = -INFINITY;
    for (int w = w0; w < w0 + parts; ++w) m_all = fmaxf(m_all, part_m[w]);
    float num = 0.f, den = 0.f;
    for (int w = w0; w < w0 + parts; ++w) {
      if (part_m[w] == -INFINITY) continue;  // the warp saw no key
      const float f = exp2f(part_m[w] - m_all);
      num = fmaf(part_acc[w][d], f, num);
      den = fmaf(part_l[w], f, den);
    }
    const int head = first_head + hh;
    if (p.splits == 1) {
      p.out[size_t(s) * p.H * D + size_t(head) * D + d] = to_bf16(den > 0.f ? num / den : 0.f);
    } else {
      float* part = p.partial + ((size_t(s) * p.H + head) * p.splits + z) * size_t(D + 2);
      part[d] = num;
      if (d == 0) {
        part[D] = m_all;
        part[D + 1] = den;
      }
    }
  }
}

// out = the chunks' partial softmaxes combined in chunk order. A block per
// (head, sequence).
__global__ void __launch_bounds__(kCombineThreads)
    paged_combine_kernel(bf16* __restrict__ out, const float* __restrict__ partial, int H, int D,
                         int splits) {
  const int h = blockIdx.x, s = blockIdx.y;
  const float* base = partial + (size_t(s) * H + h) * splits * size_t(D + 2);
  float m_all = -INFINITY;
  for (int z = 0; z < splits; ++z) m_all = fmaxf(m_all, base[size_t(z) * (D + 2) + D]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float num = 0.f, den = 0.f;
    for (int z = 0; z < splits; ++z) {
      const float* part = base + size_t(z) * (D + 2);
      if (part[D] == -INFINITY) continue;  // an empty chunk
      const float f = exp2f(part[D] - m_all);
      num = fmaf(part[d], f, num);
      den = fmaf(part[D + 1], f, den);
    }
    out[size_t(s) * H * D + size_t(h) * D + d] = to_bf16(den > 0.f ? num / den : 0.f);
  }
}

template <int DB>
void launch(CudaContext& c, const PagedParams& p, int S, const char* op,
            const std::string& shape) {
  const dim3 grid(unsigned(p.KVH * p.passes), unsigned(S), unsigned(p.splits));
  paged_decode_kernel<DB><<<grid, kThreads, 0, c.stream>>>(p);
  check_launch(op, shape);
  if (p.splits > 1) {
    paged_combine_kernel<<<dim3(unsigned(p.H), unsigned(S)), kCombineThreads, 0, c.stream>>>(
        p.out, p.partial, p.H, p.D, p.splits);
    check_launch(op, shape + " (combine)");
  }
}

}  // namespace

void CudaOps::attention_decode(Buf out, CBuf q, int q_stride, const PagedKV& cache, int S,
                               int num_heads, int num_kv_heads, int head_dim) {
  const char* op = "attention_decode";
  const std::string shape =
      shape_str("S", S, "H", num_heads, "KVH", num_kv_heads, "D", head_dim) + " " +
      shape_str("block_size", cache.block_size, "table_width", cache.table_width, "q_stride",
                q_stride);
  const std::string where = std::string(op) + " (" + shape + "): ";
  require(S >= 0, where + "negative S");
  require(num_heads > 0 && num_kv_heads > 0 && num_heads % num_kv_heads == 0,
          where + "num_heads must be a positive multiple of num_kv_heads");
  require(head_dim > 0 && head_dim <= kMaxHeadDim,
          where + "head_dim must be in 1.." + std::to_string(kMaxHeadDim));
  require(cache.block_size > 0 && cache.table_width > 0,
          where + "block size and table width must be positive");
  const int q_row = q_stride ? q_stride : num_heads * head_dim;
  require(q_row >= num_heads * head_dim, where + "q_stride is smaller than its heads");
  require(S <= 65535, where + "S must be <= 65535");
  if (S == 0) return;
  PagedParams p{};
  p.out = bf16_ptr(out, op);
  p.q = bf16_ptr(q, op);
  p.keys = bf16_ptr(cache.keys, op);
  p.values = bf16_ptr(cache.values, op);
  p.table = cache.block_table;
  p.lengths = cache.lengths;
  require(p.out && p.q && p.keys && p.values && p.table && p.lengths,
          where + "out, q, the pools, the block table and lengths are required");
  p.width = cache.table_width;
  p.bs = cache.block_size;
  p.H = num_heads;
  p.KVH = num_kv_heads;
  p.D = head_dim;
  p.group = num_heads / num_kv_heads;
  p.heads_per_pass = std::min(p.group, kWarps);
  // warps per head must divide the block evenly: round heads per pass to a divisor of 8
  while (kWarps % p.heads_per_pass != 0) --p.heads_per_pass;
  p.passes = (p.group + p.heads_per_pass - 1) / p.heads_per_pass;
  p.q_stride = q_row;
  p.scale_log2 = kLog2e / std::sqrt(float(head_dim));
  CudaContext& c = context();
  // Chunks: ~2 blocks per SM in all, each at least kMinChunk keys of the
  // longest possible sequence (width * block_size), a multiple of the tile.
  const long long longest = (long long)p.width * p.bs;
  const long long blocks = (long long)num_kv_heads * p.passes * S;
  const long long want = std::max(1LL, 2LL * (c.sm_count > 0 ? c.sm_count : 132) / blocks);
  const long long by_length = (longest + kMinChunk - 1) / kMinChunk;
  p.splits = int(std::max(1LL, std::min({want, by_length, 64LL})));
  p.chunk = int(((longest + p.splits - 1) / p.splits + kTileKeys - 1) / kTileKeys * kTileKeys);
  if (p.splits > 1)
    p.partial = static_cast<float*>(c.ensure_scratch(size_t(S) * num_heads * p.splits *
                                                     size_t(head_dim + 2) * sizeof(float)));
  const int DB = head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : 256;
  switch (DB) {
    case 64: launch<64>(c, p, S, op, shape); break;
    case 128: launch<128>(c, p, S, op, shape); break;
    default: launch<256>(c, p, S, op, shape); break;
  }
}

}  // namespace polaris
