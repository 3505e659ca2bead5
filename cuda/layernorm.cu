// LayerNorm (and the fused residual add + LayerNorm) for CudaOps.
//
// Course note.
//   Math, per row x of C values (bf16 in memory, fp32 in registers):
//     mean = sum(x) / C,  var = sum((x - mean)^2) / C  (two passes: no
//     cancellation when |mean| >> std),  rstd = 1 / sqrt(var + eps)
//     xhat = (x - mean) * rstd,  out = xhat * weight + bias   (rounded once)
//   Backward, with g = dout * weight:
//     din     += rstd * (g - mean(g) - xhat * mean(g * xhat))   (ADDED: the
//                residual stream's gradient meets the branch's here)
//     dweight += sum_rows(dout * xhat),  dbias += sum_rows(dout)
//   Fused add: residual = bf16(a + b) is stored first and the statistics are
//   those of the stored (rounded) residual, which is what the backward reads.
//
//   Work split.
//   - Forward, din: one block per row (grid N), up to 512 threads; thread t
//     owns the vector groups t, t + blockDim, ... of 8 bf16 (16-byte loads when
//     C % 8 == 0 and the pointers are 16-byte aligned; else 1 bf16). Row sums
//     go through block_sum (fixed tree: deterministic). The passes re-read the
//     row from global memory (L1/L2 hits after the first); each thread reads
//     back only elements it wrote itself, so the fused variant is correct when
//     residual aliases a or b, and any C works (no shared-memory row limit).
//   - dweight/dbias: no atomics. Kernel 1, grid (ceil(C/256), chunks): thread
//     = one column, summing its rows of one chunk in row order into an fp32
//     partial [chunks, C] (context scratch). Kernel 2: one thread per column
//     adds the partials in chunk order and ADDS the total into dweight/dbias.
//     The chunking depends on N only (rows::row_chunks), so the bits are the
//     same on any GPU and on every run.
//
//   Bytes and flops, per element (N*C elements): forward reads 2 B, writes 2 B
//   (the fused add: reads 4 B, writes 4 B — against 6 B + 4 B unfused), ~8 flops.
//   Backward: the din kernel reads dout, in, din and writes din (8 B), the
//   parameter kernel reads dout and in again (4 B) + 8 B per chunk and column
//   of partials: 12 B, ~12 flops. Arithmetic intensity ~1 flop/B, far below an
//   H100's ridge (989 TFLOP/s / 3.35 TB/s ≈ 300 flop/B), so memory-bound:
//   GPT-2 small, N = 16384, C = 768 (12.6 M elements): forward 50 MB ≈ 15 us,
//   fused add 100 MB ≈ 30 us, backward 150 MB ≈ 45 us at 3.35 TB/s.
//   (A fused din + dweight kernel would save the 4 B re-read; later.)
#include <string>

#include "cuda/context.cuh"
#include "cuda/row_common.cuh"

namespace polaris {

namespace {

using rows::kRowThreads;
using rows::load_bf16;
using rows::load_bf16_or;
using rows::store_bf16;

using rows::kColThreads;

// One block per row. ADD: row = bf16(a + b), stored to residual; else row = a.
template <int VEC, bool ADD>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_forward_kernel(bf16* out, float* mean, float* rstd, bf16* residual, const bf16* a,
                             const bf16* b, const bf16* weight, const bf16* bias, int C,
                             float eps) {
  __shared__ float reduce[32];
  const size_t base = size_t(blockIdx.x) * size_t(C);
  const int groups = C / VEC;
  // The row every pass after the first reads (the fused variant: the stored
  // residual, each thread only its own elements, written in pass 1).
  const bf16* x = ADD ? residual + base : a + base;

  float sum = 0.f;
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float v[VEC];
    rows::load_norm_input<VEC, ADD>(v, ADD ? residual + base : nullptr, a + base,
                                    ADD ? b + base : nullptr, g);
#pragma unroll
    for (int k = 0; k < VEC; ++k) sum += v[k];
  }
  const float m = block_sum(sum, reduce) / float(C);

  float sq = 0.f;
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float v[VEC];
    load_bf16<VEC>(x + size_t(g) * VEC, v);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float d = v[k] - m;
      sq += d * d;
    }
  }
  const float var = block_sum(sq, reduce) / float(C);
  const float r = 1.f / sqrtf(var + eps);

  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float v[VEC], w[VEC], bb[VEC];
    load_bf16<VEC>(x + size_t(g) * VEC, v);
    load_bf16<VEC>(weight + size_t(g) * VEC, w);
    load_bf16_or<VEC>(bias ? bias + size_t(g) * VEC : nullptr, bb, 0.f);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = ((v[k] - m) * r) * w[k] + bb[k];
    store_bf16<VEC>(out + base + size_t(g) * VEC, v);
  }
  if (threadIdx.x == 0) {
    if (mean) mean[blockIdx.x] = m;
    if (rstd) rstd[blockIdx.x] = r;
  }
}

// din += rstd * (g - mean(g) - xhat * mean(g * xhat)), one block per row.
template <int VEC>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_backward_din_kernel(bf16* din, const bf16* dout, const bf16* in,
                                  const bf16* weight, const float* mean, const float* rstd,
                                  int C) {
  __shared__ float reduce[32];
  const size_t base = size_t(blockIdx.x) * size_t(C);
  const int groups = C / VEC;
  const float m = mean[blockIdx.x], r = rstd[blockIdx.x];

  float sum_g = 0.f, sum_gx = 0.f;
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float d[VEC], x[VEC], w[VEC];
    load_bf16<VEC>(dout + base + size_t(g) * VEC, d);
    load_bf16<VEC>(in + base + size_t(g) * VEC, x);
    load_bf16<VEC>(weight + size_t(g) * VEC, w);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float gk = d[k] * w[k];
      sum_g += gk;
      sum_gx += gk * ((x[k] - m) * r);
    }
  }
  const float g_mean = block_sum(sum_g, reduce) / float(C);
  const float gx_mean = block_sum(sum_gx, reduce) / float(C);

  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    float d[VEC], x[VEC], w[VEC], acc[VEC];
    load_bf16<VEC>(dout + base + size_t(g) * VEC, d);
    load_bf16<VEC>(in + base + size_t(g) * VEC, x);
    load_bf16<VEC>(weight + size_t(g) * VEC, w);
    load_bf16<VEC>(din + base + size_t(g) * VEC, acc);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float xhat = (x[k] - m) * r;
      acc[k] += r * (d[k] * w[k] - g_mean - xhat * gx_mean);
    }
    store_bf16<VEC>(din + base + size_t(g) * VEC, acc);
  }
}

// Kernel 1 of dweight/dbias: partial sums of one row chunk (blockIdx.y) for
// one column per thread. Either output may be null.
__global__ void __launch_bounds__(kColThreads)
    layernorm_param_partials_kernel(float* dweight_part, float* dbias_part, const bf16* dout,
                                    const bf16* in, const float* mean, const float* rstd, int N,
                                    int C, int rows_per_chunk) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int chunk = blockIdx.y;
  const int i0 = chunk * rows_per_chunk, i1 = min(N, i0 + rows_per_chunk);
  float dw = 0.f, db = 0.f;
#pragma unroll 4
  for (int i = i0; i < i1; ++i) {
    const size_t at = size_t(i) * size_t(C) + size_t(c);
    const float d = to_f32(dout[at]);
    dw += d * ((to_f32(in[at]) - mean[i]) * rstd[i]);
    db += d;
  }
  const size_t out_at = size_t(chunk) * size_t(C) + size_t(c);
  if (dweight_part) dweight_part[out_at] = dw;
  if (dbias_part) dbias_part[out_at] = db;
}

// Launches the forward (plain: residual, b null; fused: ADD).
template <bool ADD>
void launch_layernorm_forward(CudaContext& ctx, const char* op, bf16* out, float* mean,
                              float* rstd, bf16* residual, const bf16* a, const bf16* b,
                              const bf16* weight, const bf16* bias, int N, int C, float eps) {
  const bool wide = rows::can_use_wide(C, {out, residual, a, b, weight, bias});
  const int vec = wide ? rows::kWideVec : 1;
  const int threads = rows::row_threads(C / vec);
  if (wide)
    layernorm_forward_kernel<rows::kWideVec, ADD><<<N, threads, 0, ctx.stream>>>(
        out, mean, rstd, residual, a, b, weight, bias, C, eps);
  else
    layernorm_forward_kernel<1, ADD><<<N, threads, 0, ctx.stream>>>(out, mean, rstd, residual,
                                                                      a, b, weight, bias, C, eps);
  check_launch(op, shape_str("N", N, "C", C, "vec", vec));
}

}  // namespace

void CudaOps::layernorm_forward(Buf out, float* mean, float* rstd, CBuf in, CBuf weight,
                                CBuf bias, int N, int C, float eps) {
  const char* op = "layernorm_forward";
  bf16* o = bf16_ptr(out, op);
  const bf16* x = bf16_ptr(in, op);
  const bf16* w = bf16_ptr(weight, op);
  const bf16* bb = bf16_ptr(bias, op);
  if (N <= 0 || C <= 0) return;
  launch_layernorm_forward<false>(context(), op, o, mean, rstd, nullptr, x, nullptr, w, bb, N,
                                  C, eps);
}

void CudaOps::add_layernorm_forward(Buf residual, Buf out, float* mean, float* rstd, CBuf a,
                                    CBuf b, CBuf weight, CBuf bias, int N, int C, float eps) {
  const char* op = "add_layernorm_forward";
  bf16* res = bf16_ptr(residual, op);
  bf16* o = bf16_ptr(out, op);
  const bf16* pa = bf16_ptr(a, op);
  const bf16* pb = bf16_ptr(b, op);
  const bf16* w = bf16_ptr(weight, op);
  const bf16* bb = bf16_ptr(bias, op);
  if (N <= 0 || C <= 0) return;
  launch_layernorm_forward<true>(context(), op, o, mean, rstd, res, pa, pb, w, bb, N, C, eps);
}

void CudaOps::layernorm_backward(Buf din, float* dweight, float* dbias, CBuf dout, CBuf in,
                                 CBuf weight, const float* mean, const float* rstd, int N,
                                 int C) {
  const char* op = "layernorm_backward";
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
      layernorm_backward_din_kernel<rows::kWideVec>
          <<<N, threads, 0, ctx.stream>>>(dx, d, x, w, mean, rstd, C);
    else
      layernorm_backward_din_kernel<1><<<N, threads, 0, ctx.stream>>>(dx, d, x, w, mean, rstd, C);
    check_launch("layernorm_backward (din)", shape_str("N", N, "C", C, "vec", vec));
  }

  if (dweight || dbias) {
    const rows::RowChunks rc = rows::row_chunks(N);
    const size_t part = size_t(rc.chunks) * size_t(C);
    float* scratch = static_cast<float*>(
        ctx.ensure_scratch(part * sizeof(float) * ((dweight ? 1 : 0) + (dbias ? 1 : 0))));
    float* dw_part = dweight ? scratch : nullptr;
    float* db_part = dbias ? scratch + (dweight ? part : 0) : nullptr;
    const dim3 grid(grid_for(size_t(C), kColThreads), unsigned(rc.chunks));
    layernorm_param_partials_kernel<<<grid, kColThreads, 0, ctx.stream>>>(
        dw_part, db_part, d, x, mean, rstd, N, C, rc.rows_per_chunk);
    check_launch("layernorm_backward (weight/bias partials)",
                 shape_str("N", N, "C", C, "chunks", rc.chunks));
    const unsigned cols = grid_for(size_t(C), kColThreads);
    if (dweight) {
      rows::sum_column_partials_kernel<<<cols, kColThreads, 0, ctx.stream>>>(dweight, dw_part,
                                                                          rc.chunks, C);
      check_launch("layernorm_backward (dweight sum)",
                   shape_str("N", N, "C", C, "chunks", rc.chunks));
    }
    if (dbias) {
      rows::sum_column_partials_kernel<<<cols, kColThreads, 0, ctx.stream>>>(dbias, db_part,
                                                                          rc.chunks, C);
      check_launch("layernorm_backward (dbias sum)",
                   shape_str("N", N, "C", C, "chunks", rc.chunks));
    }
  }
}

}  // namespace polaris
