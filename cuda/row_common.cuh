// Helpers shared by the row-wise bf16 kernels (cuda/layernorm.cu,
// cuda/rmsnorm.cu, cuda/embedding.cu):
//   - vector access: VEC consecutive bf16 values as fp32 (VEC = 8 is one
//     16-byte load/store; VEC = 1 is the scalar fallback for any C);
//   - the host-side choice of VEC (C % 8 == 0 and every pointer 16-byte
//     aligned) and of the threads per row;
//   - the row chunking of the deterministic parameter-gradient reductions
//     (depends on N only, so the summation order — hence the bits — is the
//     same on every GPU).
// Only inline functions: every including file gets the same definitions.
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "cuda/context.cuh"

namespace polaris {
namespace rows {

// Threads of a one-block-per-row kernel (the __launch_bounds__ of them all).
constexpr int kRowThreads = 512;
static_assert(kRowThreads % 32 == 0 && kRowThreads <= 1024, "block_sum needs whole warps");
// Threads of the column kernels (a norm's weight gradient: one column each).
constexpr int kColThreads = 256;
static_assert(kColThreads % 32 == 0, "whole warps");
// The wide access: 8 bf16 = 16 bytes.
constexpr int kWideVec = 8;

// ---- device: VEC bf16 <-> fp32 ----------------------------------------------

template <int VEC>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&v)[VEC]) {
  static_assert(VEC == 1 || VEC == kWideVec, "VEC is 1 or 8");
  if constexpr (VEC == 1) {
    v[0] = to_f32(*p);
  } else {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int k = 0; k < VEC / 2; ++k) {
      const float2 f = __bfloat1622float2(pairs[k]);
      v[2 * k] = f.x;
      v[2 * k + 1] = f.y;
    }
  }
}

// Rounds each value to nearest bf16 (once) and stores them.
template <int VEC>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&v)[VEC]) {
  static_assert(VEC == 1 || VEC == kWideVec, "VEC is 1 or 8");
  if constexpr (VEC == 1) {
    *p = to_bf16(v[0]);
  } else {
    uint4 raw;
    __nv_bfloat162* pairs = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
    for (int k = 0; k < VEC / 2; ++k) pairs[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
    *reinterpret_cast<uint4*>(p) = raw;
  }
}

// VEC values of an optional bf16 vector (null: `fill`).
template <int VEC>
__device__ __forceinline__ void load_bf16_or(const bf16* p, float (&v)[VEC], float fill) {
  if (p) {
    load_bf16<VEC>(p, v);
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = fill;
  }
}

// x rounded to bf16 and back: the value a bf16 buffer will hold.
__device__ __forceinline__ float round_to_bf16(float x) { return to_f32(to_bf16(x)); }

// Vector group g of a norm's input row, on the first pass over it. ADD (the
// fused residual join): v = bf16(a + b), also stored to the residual row —
// later passes read it back from there, each thread only its own groups.
// Otherwise v = a. Row pointers (a, b, residual) start at the row.
template <int VEC, bool ADD>
__device__ __forceinline__ void load_norm_input(float (&v)[VEC], bf16* residual, const bf16* a,
                                                const bf16* b, int g) {
  const size_t at = size_t(g) * VEC;
  load_bf16<VEC>(a + at, v);
  if constexpr (ADD) {
    float u[VEC];
    load_bf16<VEC>(b + at, u);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = round_to_bf16(v[k] + u[k]);
    store_bf16<VEC>(residual + at, v);  // exact: v is bf16
  }
}

// Kernel 2 of a norm's weight (or bias) gradient: dst[c] += the sum over row
// chunks, in chunk order, of partials[chunk, c]. One column per thread.
// (static: each norm's file launches its own copy.)
static __global__ void __launch_bounds__(kColThreads)
    sum_column_partials_kernel(float* dst, const float* partials, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.f;
  for (int k = 0; k < chunks; ++k) s += partials[size_t(k) * size_t(C) + size_t(c)];
  dst[c] += s;
}

// ---- host: launch shapes ----------------------------------------------------

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Whether rows of C bf16 values at these pointers (null ones ignored) can be
// read and written 8 at a time: C % 8 == 0 keeps every row start 16-byte
// aligned when the base pointer is.
inline bool can_use_wide(int C, std::initializer_list<const void*> pointers) {
  if (C % kWideVec != 0) return false;
  for (const void* p : pointers)
    if (!aligned16(p)) return false;
  return true;
}

// Threads for one block per row of `groups` vector groups: whole warps, at
// most kRowThreads (then each thread loops over several groups).
inline int row_threads(int groups) {
  const int warps = (groups + 31) / 32;
  return std::min(std::max(warps, 1) * 32, kRowThreads);
}

// Row chunks of a deterministic column reduction over N rows (the norm weight
// gradients): `chunks` blocks of rows, each `rows_per_chunk` long (the last
// one shorter), none empty. A function of N alone, never of the GPU, so the
// order of every sum is fixed. At most kMaxChunks partial rows of scratch; at
// least kMinRows rows per chunk so small N does not pay for many partials.
struct RowChunks {
  int rows_per_chunk = 1;
  int chunks = 1;
};
inline RowChunks row_chunks(int N) {
  constexpr int kMaxChunks = 128, kMinRows = 8;
  RowChunks r;
  const int want = std::max(1, std::min(kMaxChunks, (N + kMinRows - 1) / kMinRows));
  r.rows_per_chunk = std::max(1, (N + want - 1) / want);
  r.chunks = std::max(1, (N + r.rows_per_chunk - 1) / r.rows_per_chunk);
  return r;
}

}  // namespace rows
}  // namespace polaris
