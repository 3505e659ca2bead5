// Token (+ position) embedding for CudaOps.
//
// Course note.
//   Math: out[i, :] = token_table[tokens[i], :] (+ position_table[positions[i], :]),
//   the two bf16 values summed in fp32 and rounded once.
//   Backward (scatter-add into fp32 parameter gradients, ACCUMULATED):
//     dtoken_table[tokens[i], :] += dout[i, :],  dposition_table[positions[i], :] += dout[i, :]
//
//   Work split.
//   - Forward: one block per row (grid N), up to 512 threads over the row's
//     columns, 8 bf16 (16 bytes) per access when C % 8 == 0 and the pointers
//     are 16-byte aligned, else 1. Reads 2 B (4 B with positions) and writes
//     2 B per element, no flops to speak of: a copy, memory-bound. GPT-2
//     small, N = 16384, C = 768: 75 MB ≈ 23 us at an H100's 3.35 TB/s.
//   - Backward: deterministic without atomics. One thread per column c (grid
//     ceil(C/64) blocks of 64) walks all N rows in order, so every table
//     element receives its rows' values in increasing i — the CPU reference's
//     order, bitwise the same sums. Two tokens in a batch that are equal hit
//     the same table row, so the walk is a chain of dependent read-modify-
//     writes; to keep several in flight it takes rows 8 at a time: within a
//     group (the tokens are the same for every thread, so the branch is
//     warp-uniform) each distinct table row is read once, the group's rows
//     for it are added in order in registers, and it is written once — the
//     same additions in the same order as one row at a time.
//     Cost: reads dout once (2 B per element) and each touched table element
//     once per group it appears in (4 B read + 4 B write); the time is bound by
//     latency, not bandwidth: N / 8 dependent round trips per thread (~1 us
//     each), e.g. N = 16384 -> ~2 ms, and only C threads of parallelism.
//     A faster deterministic version (stable sort of (token, i), then one warp
//     per distinct token summing its rows in order) can come later; it would
//     make this ~N*C*2 B of traffic at full bandwidth.
//   Token ids must lie in [0, rows of the table); nothing checks them here
//   (the table size is not an argument), as in the CPU reference.
#include <string>

#include "cuda/context.cuh"
#include "cuda/row_common.cuh"

namespace polaris {

namespace {

using rows::kRowThreads;
using rows::load_bf16;
using rows::store_bf16;

// Backward: threads (= columns) per block, and rows taken per step.
constexpr int kBackThreads = 64;
constexpr int kBackGroup = 8;
static_assert(kBackThreads % 32 == 0, "whole warps");
static_assert(kBackGroup >= 1 && kBackGroup <= 16, "the group lives in registers");

template <int VEC>
__global__ void __launch_bounds__(kRowThreads)
    embedding_forward_kernel(bf16* out, const int32_t* tokens, const int32_t* positions,
                             const bf16* token_table, const bf16* position_table, int C) {
  const int groups = C / VEC;
  const size_t row = blockIdx.x;
  const bf16* te = token_table + size_t(tokens[row]) * size_t(C);
  const bf16* pe = position_table ? position_table + size_t(positions[row]) * size_t(C) : nullptr;
  bf16* o = out + row * size_t(C);
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float v[VEC];
    load_bf16<VEC>(te + size_t(g) * VEC, v);
    if (pe) {
      float p[VEC];
      load_bf16<VEC>(pe + size_t(g) * VEC, p);
#pragma unroll
      for (int k = 0; k < VEC; ++k) v[k] += p[k];
    }
    store_bf16<VEC>(o + size_t(g) * VEC, v);
  }
}

// table[index[i], c] += dout[i, c] for i = 0 .. N-1 in order; thread = column c.
__global__ void __launch_bounds__(kBackThreads)
    embedding_backward_kernel(float* table, const bf16* dout, const int32_t* index, int N,
                              int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  int i = 0;
  for (; i + kBackGroup <= N; i += kBackGroup) {
    int row[kBackGroup], first[kBackGroup];
    float d[kBackGroup], acc[kBackGroup];
#pragma unroll
    for (int j = 0; j < kBackGroup; ++j) {
      row[j] = index[i + j];
      d[j] = to_f32(dout[size_t(i + j) * size_t(C) + size_t(c)]);
    }
    // first[j]: the earliest j' <= j in the group with the same table row.
#pragma unroll
    for (int j = 0; j < kBackGroup; ++j) {
      first[j] = j;
#pragma unroll
      for (int k = 0; k < j; ++k)
        if (first[j] == j && row[k] == row[j]) first[j] = k;
    }
    // Read each distinct table row once (independent loads, all in flight).
#pragma unroll
    for (int j = 0; j < kBackGroup; ++j)
      acc[j] = first[j] == j ? table[size_t(row[j]) * size_t(C) + size_t(c)] : 0.f;
    // For each distinct table row (slot k), add the group's rows for it in
    // increasing j: the order of one row at a time.
#pragma unroll
    for (int k = 0; k < kBackGroup; ++k) {
#pragma unroll
      for (int j = k; j < kBackGroup; ++j)
        if (first[j] == k) acc[k] += d[j];
    }
#pragma unroll
    for (int j = 0; j < kBackGroup; ++j)
      if (first[j] == j) table[size_t(row[j]) * size_t(C) + size_t(c)] = acc[j];
  }
  for (; i < N; ++i)
    table[size_t(index[i]) * size_t(C) + size_t(c)] +=
        to_f32(dout[size_t(i) * size_t(C) + size_t(c)]);
}

}  // namespace

void CudaOps::embedding_forward(Buf out, const int32_t* tokens, const int32_t* positions,
                                CBuf token_table, CBuf position_table, int N, int C) {
  const char* op = "embedding_forward";
  bf16* o = bf16_ptr(out, op);
  const bf16* te = bf16_ptr(token_table, op);
  const bf16* pe = bf16_ptr(position_table, op);
  if (pe && !positions)
    throw Error(std::string(op) + ": a position table needs positions (" +
                shape_str("N", N, "C", C) + ")");
  if (N <= 0 || C <= 0) return;
  CudaContext& ctx = context();
  const bool wide = rows::can_use_wide(C, {o, te, pe});
  const int vec = wide ? rows::kWideVec : 1;
  const int threads = rows::row_threads(C / vec);
  if (wide)
    embedding_forward_kernel<rows::kWideVec>
        <<<N, threads, 0, ctx.stream>>>(o, tokens, positions, te, pe, C);
  else
    embedding_forward_kernel<1><<<N, threads, 0, ctx.stream>>>(o, tokens, positions, te, pe, C);
  check_launch(op, shape_str("N", N, "C", C, "vec", vec));
}

void CudaOps::embedding_backward(float* dtoken_table, float* dposition_table, CBuf dout,
                                 const int32_t* tokens, const int32_t* positions, int N, int C) {
  const char* op = "embedding_backward";
  const bf16* d = bf16_ptr(dout, op);
  if (N <= 0 || C <= 0) return;
  CudaContext& ctx = context();
  const unsigned blocks = grid_for(size_t(C), kBackThreads);
  if (dtoken_table) {
    embedding_backward_kernel<<<blocks, kBackThreads, 0, ctx.stream>>>(dtoken_table, d, tokens,
                                                                       N, C);
    check_launch("embedding_backward (token table)", shape_str("N", N, "C", C));
  }
  // As the CPU reference: no positions, no position gradient.
  if (dposition_table && positions) {
    embedding_backward_kernel<<<blocks, kBackThreads, 0, ctx.stream>>>(dposition_table, d,
                                                                       positions, N, C);
    check_launch("embedding_backward (position table)", shape_str("N", N, "C", C));
  }
}

}  // namespace polaris
