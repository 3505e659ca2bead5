// CudaOps::adamw_update: fused AdamW on fp32 master weights, with the bf16
// copy of the weights written in the same pass.
//
// Course note.
//   Math (per element i, the same fp32 operations in the same order as the CPU
//   reference in model/ops/adamw.cpp):
//     g    = grad_i * grad_scale
//     m_i  = beta1 * m_i + (1 - beta1) * g
//     v_i  = beta2 * v_i + (1 - beta2) * g * g
//     mhat = m_i / bc1,  vhat = v_i / bc2,   bc_k = 1 - beta_k^step (host, double -> float)
//     p_i -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * p_i)
//     copy_i = bf16(p_i): stochastic rounding when args.stochastic_rounding
//              (16 random bits from hash(seed ^ i * odd constant) added below
//              the bf16 mantissa, then truncated: E[copy_i] = p_i), else
//              round to nearest even.
//   Every multiply / add / divide / sqrt uses the IEEE round-to-nearest
//   intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn) so nvcc does not
//   contract them into FMAs: with the CPU built without FMA contraction the
//   two backends give the same bits. It costs nothing here (memory bound).
//   The random bits depend only on (rounding_seed, index within this call), so
//   the rounding is reproducible on any GPU and any launch configuration;
//   callers pass a per-step (and per-tensor-range) seed.
//   Work split: one thread per element, 256 threads a block, grid-stride loop
//   with the grid fixed by n (capped at 65536 blocks).
//   Bytes per element: read p, g, m, v (16), write p, m, v (12), + 2 for the
//   bf16 copy = 30 bytes; ~20 flops. Memory bound: on an H100 (3.35 TB/s),
//   124M parameters (GPT-2 small) = 3.7 GB -> ~1.1 ms; 1.5B -> ~13.5 ms.
#include <algorithm>
#include <cmath>
#include <string>

#include "cuda/context.cuh"

namespace polaris {

namespace {

constexpr unsigned kBlock = 256;
constexpr unsigned kMaxBlocks = 1u << 16;
// Spreads consecutive indices over the hash input (multiplying by an odd
// constant is a bijection on 64 bits, so distinct indices stay distinct).
constexpr uint64_t kIndexMix = 0xD1B54A32D192ED03ull;

struct AdamWKernelArgs {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, grad_scale;
  float bc1, bc2;
  bool stochastic;
  uint64_t seed;
};

// 16 random bits for element i of this call.
__host__ __device__ __forceinline__ uint32_t rounding_bits(uint64_t seed, size_t i) {
  return hash_u32(seed ^ (uint64_t(i) * kIndexMix)) & 0xffffu;
}

__global__ __launch_bounds__(kBlock) void adamw_kernel(float* __restrict__ params,
                                                       bf16* __restrict__ copy,
                                                       const float* __restrict__ grads,
                                                       float* __restrict__ m,
                                                       float* __restrict__ v, size_t n,
                                                       AdamWKernelArgs a) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = __fmul_rn(grads[i], a.grad_scale);
    const float mi = __fadd_rn(__fmul_rn(a.beta1, m[i]), __fmul_rn(a.one_minus_beta1, g));
    const float vi =
        __fadd_rn(__fmul_rn(a.beta2, v[i]), __fmul_rn(__fmul_rn(a.one_minus_beta2, g), g));
    m[i] = mi;
    v[i] = vi;
    const float mhat = __fdiv_rn(mi, a.bc1);
    const float vhat = __fdiv_rn(vi, a.bc2);
    const float p = params[i];
    const float step =
        __fadd_rn(__fdiv_rn(mhat, __fadd_rn(__fsqrt_rn(vhat), a.eps)), __fmul_rn(a.weight_decay, p));
    const float updated = __fsub_rn(p, __fmul_rn(a.lr, step));
    params[i] = updated;
    if (copy)
      copy[i] = a.stochastic ? to_bf16_stochastic(updated, rounding_bits(a.seed, i)) : to_bf16(updated);
  }
}

// copy = round(params) with the same bits adamw_kernel would draw.
__global__ __launch_bounds__(kBlock) void round_copy_kernel(bf16* __restrict__ copy,
                                                            const float* __restrict__ params,
                                                            size_t n, bool stochastic,
                                                            uint64_t seed) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    copy[i] = stochastic ? to_bf16_stochastic(params[i], rounding_bits(seed, i)) : to_bf16(params[i]);
}

}  // namespace

void CudaOps::round_weight_copy(Buf copy, const float* params, size_t n, const AdamWArgs& args) {
  if (n == 0 || !copy) return;
  bf16* copy_ptr = bf16_ptr(copy, "round_weight_copy");
  const unsigned grid = unsigned(std::min<size_t>(grid_for(n, kBlock), kMaxBlocks));
  round_copy_kernel<<<grid, kBlock, 0, context().stream>>>(copy_ptr, params, n,
                                                          args.stochastic_rounding,
                                                          args.rounding_seed);
  check_launch("round_weight_copy", shape_str("n", (long long)n));
}

void CudaOps::adamw_update(float* params, Buf copy, const float* grads, float* m, float* v,
                           size_t n, const AdamWArgs& args) {
  if (n == 0) return;
  if (args.step < 1)
    throw Error("adamw_update: step must be 1 or more (got " + std::to_string(args.step) + ", " +
                shape_str("n", (long long)n) + ")");
  bf16* copy_ptr = bf16_ptr(copy, "adamw_update (copy)");
  AdamWKernelArgs a;
  a.lr = args.learning_rate;
  a.beta1 = args.beta1;
  a.beta2 = args.beta2;
  // As the CPU: (1.f - b1) in fp32, bias corrections in double rounded to float.
  a.one_minus_beta1 = 1.f - args.beta1;
  a.one_minus_beta2 = 1.f - args.beta2;
  a.eps = args.epsilon;
  a.weight_decay = args.weight_decay;
  a.grad_scale = args.grad_scale;
  a.bc1 = float(1.0 - std::pow(double(args.beta1), args.step));
  a.bc2 = float(1.0 - std::pow(double(args.beta2), args.step));
  a.stochastic = args.stochastic_rounding;
  a.seed = args.rounding_seed;
  const unsigned grid = unsigned(std::min<size_t>(grid_for(n, kBlock), kMaxBlocks));
  adamw_kernel<<<grid, kBlock, 0, context().stream>>>(params, copy_ptr, grads, m, v, n, a);
  check_launch("adamw_update", shape_str("n", (long long)n, "copy", copy_ptr ? 1 : 0));
}

}  // namespace polaris
