// CpuOps: token (+ learned position) embedding.
#include "model/cpu_ops.h"
#include "model/ops/cpu_common.h"

#include <algorithm>

namespace polaris {

using cpu::kColChunk;
using cpu::num_chunks;

// forward:  out[i, :] = token_table[tokens[i], :] (+ position_table[positions[i], :])
// backward: dtoken_table[tokens[i], :] += dout[i, :]
//           dposition_table[positions[i], :] += dout[i, :]
// The backward is a scatter-add: parallel over column chunks, rows in order,
// so repeated tokens accumulate in the same order for any thread count.
void CpuOps::embedding_forward(Buf out_buf, const int32_t* tokens, const int32_t* positions,
                               CBuf token_buf, CBuf position_buf, int N, int C) {
  float* out = out_buf.f32();
  const float *token_table = token_buf.f32(), *position_table = position_buf.f32();
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    float* o = out + (size_t)i * C;
    const float* te = token_table + (size_t)tokens[i] * C;
    if (position_table) {
      const float* pe = position_table + (size_t)positions[i] * C;
      for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    } else {
      for (int c = 0; c < C; c++) o[c] = te[c];
    }
  }
}

void CpuOps::embedding_backward(float* dtoken_table, float* dposition_table, CBuf dout_buf,
                                const int32_t* tokens, const int32_t* positions, int N, int C) {
  if (!dtoken_table && !dposition_table) return;
  const float* dout = dout_buf.f32();
  const int chunks = num_chunks(C, kColChunk);
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < chunks; ch++) {
    const int c0 = ch * kColChunk, c1 = std::min(C, c0 + kColChunk);
    for (int i = 0; i < N; i++) {
      const float* d = dout + (size_t)i * C;
      if (dtoken_table) {
        float* dt = dtoken_table + (size_t)tokens[i] * C;
        for (int c = c0; c < c1; c++) dt[c] += d[c];
      }
      if (dposition_table && positions) {
        float* dp = dposition_table + (size_t)positions[i] * C;
        for (int c = c0; c < c1; c++) dp[c] += d[c];
      }
    }
  }
}

}  // namespace polaris
