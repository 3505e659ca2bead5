// Loop constants and small helpers shared by the CPU reference ops
// (model/ops/*.cpp); not part of any interface.
#pragma once
#include <cstddef>

#include "model/rope.h"

namespace polaris {
namespace cpu {

// Column-chunk width for parameter-gradient sums over rows: each thread owns
// a chunk of columns and walks the rows in order (deterministic, and each
// row segment it reads is contiguous).
constexpr int kColChunk = 64;

// Elementwise loops shorter than this run on one thread: starting a
// parallel region costs more than the work, and on a busy machine waiting
// threads can stall far longer than that.
constexpr size_t kParallelMin = size_t(1) << 15;

inline int num_chunks(int n, int chunk) { return (n + chunk - 1) / chunk; }

// RMSNorm of one row of C values: out = x * rstd * weight; returns rstd.
// Shared by rmsnorm_forward and the fused q/k norm + RoPE.
float rmsnorm_row(float* out, const float* x, const float* weight, int C, float eps);
// din += rstd * (g - x * rstd^2 * mean(g * x)), g = dout * weight (one row).
void rmsnorm_row_backward(float* din, const float* dout, const float* x, const float* weight,
                          float rstd, int C);
// RoPE cos/sin of position `pos` for the D/2 frequencies, times the
// attention scale (fp32, as HF).
void rope_tables(float* cosv, float* sinv, int pos, int D, const RopeParams& rope);
// Rotates one head of D values (out may alias in); `inverse` applies R^T.
void rope_row(float* out, const float* in, const float* cosv, const float* sinv, int D,
              bool inverse);

}  // namespace cpu
}  // namespace polaris
