// CudaOps: the MLP activations, GELU (GPT-2) and SwiGLU (Qwen3).
//
// ---- the math (fp32 in registers, bf16 in memory, one rounding per output) ---
// GELU, tanh approximation ("gelu_new"), exactly the CPU reference's formula:
//   u = sqrt(2/pi) (x + 0.044715 x^3),  out = 0.5 x (1 + tanh(u))
//   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
//   din = dout * gelu'(x)                              (written; may alias dout)
// SwiGLU on the fused projection gate_up [N, 2F] (gate = columns 0..F-1 of a
// row, up = columns F..2F-1):
//   s = sigmoid(g) = 1 / (1 + exp(-g)),  out [N, F] = (g s) u
//   dup   = dout * g s
//   dgate = dout * u * s (1 + g (1 - s))               (dgate_up [N, 2F] written)
//
// ---- the decomposition ---------------------------------------------------------
// Elementwise grid-stride loops. When every pointer is 16-byte aligned (and,
// for SwiGLU, F % 8 == 0 so every row starts aligned), a thread moves 8 bf16
// (one 16-byte load/store per operand); the remainder of GELU's flat array is
// done one element at a time. Otherwise everything is scalar (any n, any F).
// A thread reads all its inputs before writing, so in-place use is safe.
//
// ---- bytes, flops, roofline (H100: 3.35 TB/s HBM, 989 TFLOP/s bf16) -------------
// GELU forward: 2 B in + 2 B out per element, ~10 flops + one tanh: ~3 flop/B,
//   memory bound (the fp32 CUDA-core ridge is ~20 flop/B). GPT-2 124M MLP at
//   N = 16384: 50M elements, 200 MB, ~60 us. backward: 6 B per element, ~90 us.
// SwiGLU forward: 4 B in + 2 B out per output, ~6 flops + one exp: memory bound.
//   Qwen3-0.6B (F = 3072) at N = 16384: 50M outputs, 300 MB, ~90 us.
//   backward: 6 B in + 4 B out per output, ~150 us.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/context.cuh"

namespace polaris {

namespace {

constexpr int kActThreads = 256;
constexpr int kVec = 8;  // bf16 per 16-byte access
static_assert(kActThreads % 32 == 0, "whole warps");
static_assert(kVec * sizeof(bf16) == 16, "one uint4 per vector");

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi), as the CPU

// ---- device math (the CPU reference's expressions, in the same order) ---------

__device__ __forceinline__ float gelu_value(float x) {
  const float u = kGeluScale * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.f + tanhf(u));
}

__device__ __forceinline__ float gelu_grad(float x) {
  const float u = kGeluScale * (x + 0.044715f * x * x * x);
  const float t = tanhf(u);
  return 0.5f * (1.f + t) +
         0.5f * x * (1.f - t * t) * kGeluScale * (1.f + 3.f * 0.044715f * x * x);
}

__device__ __forceinline__ float sigmoid(float g) { return 1.f / (1.f + expf(-g)); }

// ---- 8 x bf16 <-> fp32 --------------------------------------------------------

__device__ __forceinline__ void load8(const bf16* p, float (&v)[kVec]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int k = 0; k < kVec / 2; ++k) {
    const float2 f = __bfloat1622float2(pairs[k]);
    v[2 * k] = f.x;
    v[2 * k + 1] = f.y;
  }
}

__device__ __forceinline__ void store8(bf16* p, const float (&v)[kVec]) {
  uint4 raw;
  __nv_bfloat162* pairs = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int k = 0; k < kVec / 2; ++k) pairs[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
  *reinterpret_cast<uint4*>(p) = raw;
}

__device__ __forceinline__ size_t thread_index() {
  return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t thread_count() { return (size_t)gridDim.x * blockDim.x; }

// ---- kernels ------------------------------------------------------------------

// out = gelu(in) over n elements; VEC: the first n / 8 * 8 elements 8 at a time.
template <bool VEC>
__global__ __launch_bounds__(kActThreads) void gelu_forward_kernel(bf16* out, const bf16* in,
                                                                   size_t n) {
  size_t done = 0;
  if constexpr (VEC) {
    const size_t groups = n / kVec;
    for (size_t g = thread_index(); g < groups; g += thread_count()) {
      float v[kVec];
      load8(in + g * kVec, v);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[k] = gelu_value(v[k]);
      store8(out + g * kVec, v);
    }
    done = groups * kVec;
  }
  for (size_t i = done + thread_index(); i < n; i += thread_count())
    out[i] = to_bf16(gelu_value(to_f32(in[i])));
}

// din = dout * gelu'(in); din may alias dout.
template <bool VEC>
__global__ __launch_bounds__(kActThreads) void gelu_backward_kernel(bf16* din, const bf16* dout,
                                                                    const bf16* in, size_t n) {
  size_t done = 0;
  if constexpr (VEC) {
    const size_t groups = n / kVec;
    for (size_t g = thread_index(); g < groups; g += thread_count()) {
      float d[kVec], x[kVec];
      load8(dout + g * kVec, d);
      load8(in + g * kVec, x);
#pragma unroll
      for (int k = 0; k < kVec; ++k) d[k] = d[k] * gelu_grad(x[k]);
      store8(din + g * kVec, d);
    }
    done = groups * kVec;
  }
  for (size_t i = done + thread_index(); i < n; i += thread_count())
    din[i] = to_bf16(to_f32(dout[i]) * gelu_grad(to_f32(in[i])));
}

// Element e of the [N, F] output: row e / F, column e % F. With VEC, F % 8 == 0
// and a thread handles the 8 consecutive columns of one row starting at e = 8 g.
template <bool VEC>
__global__ __launch_bounds__(kActThreads) void swiglu_forward_kernel(bf16* out,
                                                                     const bf16* gate_up,
                                                                     size_t NF, int F) {
  constexpr int W = VEC ? kVec : 1;
  for (size_t e = thread_index() * W; e < NF; e += thread_count() * W) {
    const size_t row = e / F, col = e % F;
    const bf16* gate = gate_up + row * 2 * F + col;
    const bf16* up = gate + F;
    if constexpr (VEC) {
      float g[kVec], u[kVec];
      load8(gate, g);
      load8(up, u);
#pragma unroll
      for (int k = 0; k < kVec; ++k) g[k] = (g[k] * sigmoid(g[k])) * u[k];
      store8(out + e, g);
    } else {
      const float g = to_f32(*gate), u = to_f32(*up);
      out[e] = to_bf16((g * sigmoid(g)) * u);
    }
  }
}

template <bool VEC>
__global__ __launch_bounds__(kActThreads) void swiglu_backward_kernel(bf16* dgate_up,
                                                                      const bf16* dout,
                                                                      const bf16* gate_up,
                                                                      size_t NF, int F) {
  constexpr int W = VEC ? kVec : 1;
  for (size_t e = thread_index() * W; e < NF; e += thread_count() * W) {
    const size_t row = e / F, col = e % F;
    const size_t gate_at = row * 2 * F + col, up_at = gate_at + F;
    if constexpr (VEC) {
      float d[kVec], g[kVec], u[kVec], dg[kVec], du[kVec];
      load8(dout + e, d);
      load8(gate_up + gate_at, g);
      load8(gate_up + up_at, u);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const float s = sigmoid(g[k]);
        du[k] = d[k] * (g[k] * s);
        dg[k] = d[k] * u[k] * (s * (1.f + g[k] * (1.f - s)));
      }
      store8(dgate_up + gate_at, dg);
      store8(dgate_up + up_at, du);
    } else {
      const float d = to_f32(dout[e]), g = to_f32(gate_up[gate_at]), u = to_f32(gate_up[up_at]);
      const float s = sigmoid(g);
      dgate_up[gate_at] = to_bf16(d * u * (s * (1.f + g * (1.f - s))));
      dgate_up[up_at] = to_bf16(d * (g * s));
    }
  }
}

// ---- host ---------------------------------------------------------------------

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Blocks for `work` items (threads' iterations): enough to fill the GPU a few
// times over, no more than the work needs.
unsigned act_grid(size_t work, const CudaContext& ctx) {
  const size_t cap = (size_t)(ctx.sm_count > 0 ? ctx.sm_count : 132) * 16;
  const size_t need = grid_for(work, kActThreads);
  const size_t g = need < cap ? need : cap;
  return (unsigned)(g > 0 ? g : 1);
}

}  // namespace

void CudaOps::gelu_forward(Buf out, CBuf in, size_t n) {
  const char* op = "gelu_forward";
  bf16* o = bf16_ptr(out, op);
  const bf16* x = bf16_ptr(in, op);
  if (n == 0) return;
  if (!o || !x)
    throw Error(std::string(op) + ": null buffer (" + shape_str("n", (long long)n) + ")");
  CudaContext& ctx = context();
  if (aligned16(o) && aligned16(x) && n >= (size_t)kVec) {
    gelu_forward_kernel<true><<<act_grid(n / kVec, ctx), kActThreads, 0, ctx.stream>>>(o, x, n);
  } else {
    gelu_forward_kernel<false><<<act_grid(n, ctx), kActThreads, 0, ctx.stream>>>(o, x, n);
  }
  check_launch(op, shape_str("n", (long long)n));
}

void CudaOps::gelu_backward(Buf din, CBuf dout, CBuf in, size_t n) {
  const char* op = "gelu_backward";
  if (!din || n == 0) return;
  bf16* dx = bf16_ptr(din, op);
  const bf16* d = bf16_ptr(dout, op);
  const bf16* x = bf16_ptr(in, op);
  if (!d || !x)
    throw Error(std::string(op) + ": null buffer (" + shape_str("n", (long long)n) + ")");
  CudaContext& ctx = context();
  if (aligned16(dx) && aligned16(d) && aligned16(x) && n >= (size_t)kVec) {
    gelu_backward_kernel<true>
        <<<act_grid(n / kVec, ctx), kActThreads, 0, ctx.stream>>>(dx, d, x, n);
  } else {
    gelu_backward_kernel<false><<<act_grid(n, ctx), kActThreads, 0, ctx.stream>>>(dx, d, x, n);
  }
  check_launch(op, shape_str("n", (long long)n));
}

void CudaOps::swiglu_forward(Buf out, CBuf gate_up, int N, int F) {
  const char* op = "swiglu_forward";
  bf16* o = bf16_ptr(out, op);
  const bf16* gu = bf16_ptr(gate_up, op);
  require(N >= 0 && F >= 0, std::string(op) + ": bad shape " + shape_str("N", N, "F", F));
  if (N == 0 || F == 0) return;
  if (!o || !gu)
    throw Error(std::string(op) + ": null buffer (" + shape_str("N", N, "F", F) + ")");
  CudaContext& ctx = context();
  const size_t NF = (size_t)N * F;
  if (F % kVec == 0 && aligned16(o) && aligned16(gu)) {
    swiglu_forward_kernel<true>
        <<<act_grid(NF / kVec, ctx), kActThreads, 0, ctx.stream>>>(o, gu, NF, F);
  } else {
    swiglu_forward_kernel<false><<<act_grid(NF, ctx), kActThreads, 0, ctx.stream>>>(o, gu, NF, F);
  }
  check_launch(op, shape_str("N", N, "F", F));
}

void CudaOps::swiglu_backward(Buf dgate_up, CBuf dout, CBuf gate_up, int N, int F) {
  const char* op = "swiglu_backward";
  require(N >= 0 && F >= 0, std::string(op) + ": bad shape " + shape_str("N", N, "F", F));
  if (!dgate_up || N == 0 || F == 0) return;
  bf16* dgu = bf16_ptr(dgate_up, op);
  const bf16* d = bf16_ptr(dout, op);
  const bf16* gu = bf16_ptr(gate_up, op);
  if (!d || !gu)
    throw Error(std::string(op) + ": null buffer (" + shape_str("N", N, "F", F) + ")");
  CudaContext& ctx = context();
  const size_t NF = (size_t)N * F;
  if (F % kVec == 0 && aligned16(dgu) && aligned16(d) && aligned16(gu)) {
    swiglu_backward_kernel<true>
        <<<act_grid(NF / kVec, ctx), kActThreads, 0, ctx.stream>>>(dgu, d, gu, NF, F);
  } else {
    swiglu_backward_kernel<false>
        <<<act_grid(NF, ctx), kActThreads, 0, ctx.stream>>>(dgu, d, gu, NF, F);
  }
  check_launch(op, shape_str("N", N, "F", F));
}

}  // namespace polaris
