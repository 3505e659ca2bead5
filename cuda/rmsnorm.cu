// RMSNorm (and the fused residual add + RMSNorm) for CudaOps.
//
// Course note.
//   Math, per row x of C values (bf16 in memory, fp32 in registers):
//     rstd = 1 / sqrt(sum(x^2) / C + eps),  out = (x * rstd) * weight  (rounded once)
//   Backward, with g = dout * weight:
//     din     += rstd * (g - x * rstd^2 * mean(g * x))   (ADDED, as every norm's din)
//     dweight += sum_rows(dout * x * rstd)
//   Fused add: residual = bf16(a + b) is stored first and rstd is that of the
//   stored (rounded) residual, which is what the backward reads.
//
//   Work split (as cuda/layernorm.cu).
//   - Forward, din: one block per row (grid N), up to 512 threads; thread t
//     owns the vector groups t, t + blockDim, ... of 8 bf16 (16-byte accesses
//     when C % 8 == 0 and the pointers are 16-byte aligned; else 1 bf16); one
//     block_sum per row (fixed tree: deterministic). The second pass re-reads
//     the row (L1/L2 hits); each thread reads back only the elements it wrote,
//     so the fused variant is right when residual aliases a or b, for any C.
//   - dweight: no atomics. Kernel 1, grid (ceil(C/256), chunks): one column per
//     thread, its rows of one chunk summed in row order into an fp32 partial
//     [chunks, C] (context scratch); kernel 2 adds the partials of each column
//     in chunk order into dweight. Chunks depend on N only (rows::row_chunks):
//     the same bits on any GPU, every run.
//
//   Bytes and flops per element: forward reads 2 B, writes 2 B (fused add:
//   reads 4 B, writes 4 B), ~4 flops; backward: din kernel 8 B (dout, in, din
//   read; din written), dweight kernel 4 B more, ~8 flops. Memory-bound (an
//   H100's ridge is ~300 flop/B): Llama-style N = 16384, C = 4096 (67 M
//   elements): forward 268 MB ≈ 80 us, fused add 537 MB ≈ 160 us, backward
//   805 MB ≈ 240 us at 3.35 TB/s.
#include <string>

#include "cuda/context.cuh"
#include "cuda/row_common.cuh"

namespace polaris {

namespace {

using rows::kRowThreads;
using rows::load_bf16;
using rows::store_bf16;

// Threads (= columns) per block of the weight-gradient kernels.
using rows::kColThreads;

// One block per row. ADD: row = bf16(a + b), stored to residual; else row = a.
template <int VEC, bool ADD>
__global__ void __launch_bounds__(kRowThreads)
    rmsnorm_forward_kernel(bf16* out, float* rstd, bf16* residual, const bf16* a, const bf16* b,
                           const bf16* weight, int C, float eps) {
  __shared__ float reduce[32];
  const size_t base = size_t(blockIdx.x) * size_t(C);
  const int groups = C / VEC;
  const bf16* x = ADD ? residual + base : a + base;

  float sq = 0.f;
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float v[VEC];
    rows::load_norm_input<VEC, ADD>(v, ADD ? residual + base : nullptr, a + base,
                                    ADD ? b + base : nullptr, g);
#pragma unroll
    for (int k = 0; k < VEC; ++k) sq += v[k] * v[k];
  }
  const float r = 1.f / sqrtf(block_sum(sq, reduce) / float(C) + eps);

  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float v[VEC], w[VEC];
    load_bf16<VEC>(x + size_t(g) * VEC, v);
    load_bf16<VEC>(weight + size_t(g) * VEC, w);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = (v[k] * r) * w[k];
    store_bf16<VEC>(out + base + size_t(g) * VEC, v);
  }
  if (threadIdx.x == 0 && rstd) rstd[blockIdx.x] = r;
}

// din += rstd * (g - x * rstd^2 * mean(g * x)), one block per row.
template <int VEC>
__global__ void __launch_bounds__(kRowThreads)
    rmsnorm_backward_din_kernel(bf16* din, const bf16* dout, const bf16* in, const bf16* weight,
                                const float* rstd, int C) {
  __shared__ float reduce[32];
  const size_t base = size_t(blockIdx.x) * size_t(C);
  const int groups = C / VEC;
  const float r = rstd[blockIdx.x];

  float sum_gx = 0.f;
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float d[VEC], x[VEC], w[VEC];
    load_bf16<VEC>(dout + base + size_t(g) * VEC, d);
    load_bf16<VEC>(in + base + size_t(g) * VEC, x);
    load_bf16<VEC>(weight + size_t(g) * VEC, w);
#pragma unroll
    for (int k = 0; k < VEC; ++k) sum_gx += (d[k] * w[k]) * x[k];
  }
  const float k_row = (block_sum(sum_gx, reduce) / float(C)) * r * r;

  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float d[VEC], x[VEC], w[VEC], acc[VEC];
    load_bf16<VEC>(dout + base + size_t(g) * VEC, d);
    load_bf16<VEC>(in + base + size_t(g) * VEC, x);
    load_bf16<VEC>(weight + size_t(g) * VEC, w);
    load_bf16<VEC>(din + base + size_t(g) * VEC, acc);
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[k] += r * (d[k] * w[k] - x[k] * k_row);
    store_bf16<VEC>(din + base + size_t(g) * VEC, acc);
  }
}

// Kernel 1 of dweight: partial sums of one row chunk (blockIdx.y), one column
// per thread.
__global__ void __launch_bounds__(kColThreads)
    rmsnorm_weight_partials_kernel(float* dweight_part, const bf16* dout, const bf16* in,
                                   const float* rstd, int N, int C, int rows_per_chunk) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int chunk = blockIdx.y;
  const int i0 = chunk * rows_per_chunk, i1 = min(N, i0 + rows_per_chunk);
  float dw = 0.f;
#pragma unroll 4
  for (int i = i0; i < i1; ++i) {
    const size_t at = size_t(i) * size_t(C) + size_t(c);
    dw += to_f32(dout[at]) * (to_f32(in[at]) * rstd[i]);
  }
  dweight_part[size_t(chunk) * size_t(C) + size_t(c)] = dw;
}

template <bool ADD>
void launch_rmsnorm_forward(CudaContext& ctx, const char* op, bf16* out, float* rstd,
                            bf16* residual, const bf16* a, const bf16* b, const bf16* weight,
                            int N, int C, float eps) {
  const bool wide = rows::can_use_wide(C, {out, residual, a, b, weight});
  const int vec = wide ? rows::kWideVec : 1;
  const int threads = rows::row_threads(C / vec);
  if (wide)
    rmsnorm_forward_kernel<rows::kWideVec, ADD>
        <<<N, threads, 0, ctx.stream>>>(out, rstd, residual, a, b, weight, C, eps);
  else
    rmsnorm_forward_kernel<1, ADD>
        <<<N, threads, 0, ctx.stream>>>(out, rstd, residual, a, b, weight, C, eps);
  check_launch(op, shape_str("N", N, "C", C, "vec", vec));
}

}  // namespace

void CudaOps::rmsnorm_forward(Buf out, float* rstd, CBuf in, CBuf weight, int N, int C,
                              float eps) {
  const char* op = "rmsnorm_forward";
  bf16* o = bf16_ptr(out, op);
  const bf16* x = bf16_ptr(in, op);
  const bf16* w = bf16_ptr(weight, op);
  if (N <= 0 || C <= 0) return;
  launch_rmsnorm_forward<false>(context(), op, o, rstd, nullptr, x, nullptr, w, N, C, eps);
}

void CudaOps::add_rmsnorm_forward(Buf residual, Buf out, float* rstd, CBuf a, CBuf b,
                                  CBuf weight, int N, int C, float eps) {
  const char* op = "add_rmsnorm_forward";
  bf16* res = bf16_ptr(residual, op);
  bf16* o = bf16_ptr(out, op);
  const bf16* pa = bf16_ptr(a, op);
  const bf16* pb = bf16_ptr(b, op);
  const bf16* w = bf16_ptr(weight, op);
  if (N <= 0 || C <= 0) return;
  launch_rmsnorm_forward<true>(context(), op, o, rstd, res, pa, pb, w, N, C, eps);
}

void CudaOps::rmsnorm_backward(Buf din, float* dweight, CBuf dout, CBuf in, CBuf weight,
                               const float* rstd, int N, int C) {
  const char* op = "rmsnorm_backward";
  bf16* dx = bf16_ptr(din, op);
  const bf16* d = bf16_ptr(dout, op);
  const bf16* x = bf16_ptr(in, op);
  const bf16* w = bf16_ptr(weight, op);
  if (N <= 0 || C <= 0) return;
  CudaContext& ctx = context();

  if (dx) {
    const bool wide = rows::can_use_wide(C, {dx, d, x, w});
    const int vec = wide ? rows::kWideVec : 1;
    const int threads = rows::row_threads(C / vec);
    if (wide)
      rmsnorm_backward_din_kernel<rows::kWideVec>
          <<<N, threads, 0, ctx.stream>>>(dx, d, x, w, rstd, C);
    else
      rmsnorm_backward_din_kernel<1><<<N, threads, 0, ctx.stream>>>(dx, d, x, w, rstd, C);
    check_launch("rmsnorm_backward (din)", shape_str("N", N, "C", C, "vec", vec));
  }

  if (dweight) {
    const rows::RowChunks rc = rows::row_chunks(N);
    float* partials = static_cast<float*>(
        ctx.ensure_scratch(size_t(rc.chunks) * size_t(C) * sizeof(float)));
    const dim3 grid(grid_for(size_t(C), kColThreads), unsigned(rc.chunks));
    rmsnorm_weight_partials_kernel<<<grid, kColThreads, 0, ctx.stream>>>(
        partials, d, x, rstd, N, C, rc.rows_per_chunk);
    check_launch("rmsnorm_backward (dweight partials)",
                 shape_str("N", N, "C", C, "chunks", rc.chunks));
    rows::sum_column_partials_kernel<<<grid_for(size_t(C), kColThreads), kColThreads, 0,
                                  ctx.stream>>>(dweight, partials, rc.chunks, C);
    check_launch("rmsnorm_backward (dweight sum)",
                 shape_str("N", N, "C", C, "chunks", rc.chunks));
  }
}

}  // namespace polaris
