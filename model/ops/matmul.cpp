// CpuOps: linear layers (the CPU side of the matmul family).
//
// forward:  out[N, OC] = in[N, IC] @ weight[OC, IC]^T + bias[OC]
// backward: din[N, IC]      = dout[N, OC] @ weight[OC, IC]   (written)
//           dweight[OC, IC] += dout^T[OC, N] @ in[N, IC]
//           dbias[OC]       += sum over rows of dout
//
// All three products are computed by one kernel, cpu_matmul_nt:
//   C[m, p] (+)= sum_k A[m, k] * B[p, k]     (A [M, K], B [P, K], both row-major)
// i.e. every output is a dot product of two contiguous rows:
//   forward:  A = in,     B = weight,   K = IC
//   din:      A = dout,   B = weight^T, K = OC  (weight transposed into scratch)
//   dweight:  A = dout^T, B = in^T,     K = N   (both transposed into scratch)
// The transposes cost O(N*C) memory traffic against O(N*C*C) flops.
// Exception: for a large weight (the LM head, [V, C] with V ~ 152k) and few
// rows (one logits chunk), transposing the weight per call costs as much as
// the product, so din uses din_rows() instead, which reads the weight in place.
//
// The kernel: C is cut into 64 x 64 blocks, distributed over threads
// (parallel over output blocks, so every output element is one dot product
// summed by one thread in a fixed order: deterministic for any thread count).
// Inside a block, 4 x 4 register tiles: 16 accumulators, each step of k loads
// 4 values of A and 4 of B for 16 multiply-adds; the k loop is an
// `omp simd` reduction the compiler vectorises.
#include <algorithm>
#include <memory>

#include "model/cpu_ops.h"

namespace polaris {

namespace {

constexpr int kBlockM = 64, kBlockP = 64;

// acc[r][c] = dot(A row r, B row c) for a 4 x 4 tile.
__attribute__((always_inline)) inline void tile_4x4(const float* a0, const float* a1, const float* a2, const float* a3,
                     const float* b0, const float* b1, const float* b2, const float* b3, int K,
                     float acc[4][4]) {
  float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
#pragma omp simd reduction(+ : c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, \
                               c30, c31, c32, c33)
  for (int k = 0; k < K; k++) {
    const float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
    const float y0 = b0[k], y1 = b1[k], y2 = b2[k], y3 = b3[k];
    c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
    c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
    c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
    c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
  }
  acc[0][0] = c00; acc[0][1] = c01; acc[0][2] = c02; acc[0][3] = c03;
  acc[1][0] = c10; acc[1][1] = c11; acc[1][2] = c12; acc[1][3] = c13;
  acc[2][0] = c20; acc[2][1] = c21; acc[2][2] = c22; acc[2][3] = c23;
  acc[3][0] = c30; acc[3][1] = c31; acc[3][2] = c32; acc[3][3] = c33;
}

// dot(a, b) over K (edges of the 4 x 4 tiling)
__attribute__((always_inline)) inline float dot(const float* a, const float* b, int K) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int k = 0; k < K; k++) s += a[k] * b[k];
  return s;
}

// dst[cols, rows] = src[rows, cols]^T, in 32 x 32 blocks (parallel over row blocks)
void transpose(float* dst, const float* src, int rows, int cols) {
  constexpr int kT = 32;
  const int row_blocks = (rows + kT - 1) / kT;
#pragma omp parallel for schedule(static)
  for (int rb = 0; rb < row_blocks; rb++) {
    const int r0 = rb * kT, r1 = std::min(rows, r0 + kT);
    for (int c0 = 0; c0 < cols; c0 += kT) {
      const int c1 = std::min(cols, c0 + kT);
      for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
    }
  }
}

// One kBlockM x kBlockP block of C (rows [m0, m1), columns [p0, p1)).
// On x86-64 with GCC it is compiled for AVX-512, AVX2 and baseline SSE2 and
// the loader picks the best the CPU has (the Makefile builds for baseline
// x86-64). The vector width fixes the order of the simd reductions, so bits
// can differ between machines with different vector units; on one machine
// they never depend on the thread count.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void matmul_block(float* C, const float* A, const float* B, const float* bias, int P, int K,
                  bool accumulate, int m0, int m1, int p0, int p1) {
  // C = acc + bias (or C + (acc + bias) when accumulating)
  auto store = [&](int m, int p, float acc) {
    float& c = C[(size_t)m * P + p];
    const float v = bias ? acc + bias[p] : acc;
    c = accumulate ? c + v : v;
  };
  int m = m0;
  for (; m + 4 <= m1; m += 4) {
    const float* a = A + (size_t)m * K;
    int p = p0;
    for (; p + 4 <= p1; p += 4) {
      const float* b = B + (size_t)p * K;
      float acc[4][4];
      tile_4x4(a, a + K, a + 2 * (size_t)K, a + 3 * (size_t)K, b, b + K, b + 2 * (size_t)K,
               b + 3 * (size_t)K, K, acc);
      for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) store(m + r, p + c, acc[r][c]);
    }
    for (; p < p1; p++)
      for (int r = 0; r < 4; r++) store(m + r, p, dot(a + (size_t)r * K, B + (size_t)p * K, K));
  }
  for (; m < m1; m++)
    for (int p = p0; p < p1; p++) store(m, p, dot(A + (size_t)m * K, B + (size_t)p * K, K));
}

// din[N, IC] += dout[N, OC] @ weight[OC, IC] without transposing the weight:
// each (row block, column block) tile of din is owned by one thread, which
// sums over o = 0..OC-1 in order (acc[n, :] += dout[n, o] * weight[o, :]), so
// every element's sum order is fixed: deterministic for any thread count.
// Vectorised across columns, which does not reorder any element's sum.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void din_tile(float* din, const float* dout, const float* weight, int IC, int OC, int n0, int n1,
              int c0, int c1, float* acc) {
  const int width = c1 - c0;
  std::fill(acc, acc + (size_t)(n1 - n0) * width, 0.0f);
  int o = 0;
  // Four weight rows per pass: each accumulator is loaded and stored once per
  // four multiply-adds, which are still added one after another in o order.
  for (; o + 4 <= OC; o += 4) {
    const float* w0 = weight + (size_t)o * IC + c0;
    const float *w1 = w0 + IC, *w2 = w1 + IC, *w3 = w2 + IC;
    for (int n = n0; n < n1; n++) {
      const float* d = dout + (size_t)n * OC + o;
      const float d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3];
      float* a = acc + (size_t)(n - n0) * width;
#pragma omp simd
      for (int c = 0; c < width; c++) {
        float x = a[c];
        x += d0 * w0[c];
        x += d1 * w1[c];
        x += d2 * w2[c];
        x += d3 * w3[c];
        a[c] = x;
      }
    }
  }
  for (; o < OC; o++) {
    const float* w = weight + (size_t)o * IC + c0;
    for (int n = n0; n < n1; n++) {
      const float d = dout[(size_t)n * OC + o];
      float* a = acc + (size_t)(n - n0) * width;
#pragma omp simd
      for (int c = 0; c < width; c++) a[c] += d * w[c];
    }
  }
  for (int n = n0; n < n1; n++)
    for (int c = c0; c < c1; c++) din[(size_t)n * IC + c] = acc[(size_t)(n - n0) * width + c - c0];
}

void din_rows(float* din, const float* dout, const float* weight, int N, int IC, int OC) {
  // 16 x 256 tile: a 16 KB accumulator that stays in L1 while weight rows stream by
  constexpr int kRows = 16, kCols = 256;
  const int nblocks = (N + kRows - 1) / kRows, cblocks = (IC + kCols - 1) / kCols;
#pragma omp parallel
  {
    std::unique_ptr<float[]> acc(new float[kRows * kCols]);
#pragma omp for collapse(2) schedule(static)
    for (int nb = 0; nb < nblocks; nb++)
      for (int cb = 0; cb < cblocks; cb++)
        din_tile(din, dout, weight, IC, OC, nb * kRows, std::min(N, (nb + 1) * kRows),
                 cb * kCols, std::min(IC, (cb + 1) * kCols), acc.get());
  }
}

// Weights of at least this many elements (64 MB: LM heads, not layer
// matrices) take din_rows; smaller ones are cheaper to transpose.
constexpr size_t kInPlaceWeight = size_t(1) << 24;

}  // namespace

void cpu_matmul_nt(float* C, const float* A, const float* B, const float* bias, int M, int P,
                   int K, bool accumulate) {
  const int mblocks = (M + kBlockM - 1) / kBlockM, pblocks = (P + kBlockP - 1) / kBlockP;
#pragma omp parallel for collapse(2) schedule(static)
  for (int mb = 0; mb < mblocks; mb++)
    for (int pb = 0; pb < pblocks; pb++)
      matmul_block(C, A, B, bias, P, K, accumulate, mb * kBlockM,
                   std::min(M, (mb + 1) * kBlockM), pb * kBlockP,
                   std::min(P, (pb + 1) * kBlockP));
}

void CpuOps::matmul_forward(Buf out, CBuf in, CBuf weight, CBuf bias, int N, int IC, int OC) {
  cpu_matmul_nt(out.f32(), in.f32(), weight.f32(), bias.f32(), N, OC, IC, /*accumulate=*/false);
}

void CpuOps::matmul_backward(Buf din_buf, float* dweight, float* dbias, CBuf dout_buf,
                             CBuf in_buf, CBuf weight_buf, int N, int IC, int OC) {
  float* din = din_buf.f32();
  const float *dout = dout_buf.f32(), *in = in_buf.f32(), *weight = weight_buf.f32();
  if (din && (size_t)IC * OC >= kInPlaceWeight) {
    din_rows(din, dout, weight, N, IC, OC);
  } else if (din) {  // din[N, IC] = dout[N, OC] @ (weight^T)[IC, OC]^T
    std::unique_ptr<float[]> wt(new float[(size_t)IC * OC]);
    transpose(wt.get(), weight, OC, IC);
    cpu_matmul_nt(din, dout, wt.get(), nullptr, N, IC, OC, /*accumulate=*/false);
  }
  if (dweight) {  // dweight[OC, IC] += (dout^T)[OC, N] @ (in^T)[IC, N]^T
    std::unique_ptr<float[]> dt(new float[(size_t)OC * N]), it(new float[(size_t)IC * N]);
    transpose(dt.get(), dout, N, OC);
    transpose(it.get(), in, N, IC);
    cpu_matmul_nt(dweight, dt.get(), it.get(), nullptr, OC, IC, N, /*accumulate=*/true);
  }
  if (dbias) {  // dbias[o] += sum_n dout[n, o]: parallel over column chunks, rows in order
    constexpr int kChunk = 64;
    const int chunks = (OC + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < chunks; ch++) {
      const int o0 = ch * kChunk, o1 = std::min(OC, o0 + kChunk);
      float acc[kChunk] = {0};
      for (int n = 0; n < N; n++) {
        const float* d = dout + (size_t)n * OC;
        for (int o = o0; o < o1; o++) acc[o - o0] += d[o];
      }
      for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
    }
  }
}

}  // namespace polaris
