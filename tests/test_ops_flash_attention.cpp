// CudaOps flash attention (cuda/flash_attention.cu, set_attention("flash"))
// against the CPU reference, and against the simple kernels:
//   - forward (out, lse) and backward (dq, dk, dv) for head_dim 64, 128 (the
//     tensor-core kernels) and 48, 96 (the fallback to cuda/attention.cu),
//     GQA ratio 1, 2, 4, 8, T in {1, 17, 127}, B = 2, with and without packed
//     documents (1-9 documents a row); then T = 1000 and 2048 for a few
//     combinations (key tiles of 64 crossing many query tiles, documents
//     crossing tile edges), document starts at the tile edges (31, 32, 63,
//     64, 65, 127, 128), and q, k, v as column ranges of one fused qkv buffer
//     with dq, dk, dv written into one fused gradient buffer;
//   - every output is poisoned (NaN) first, so an unwritten element fails;
//   - the backward runs twice and must be bitwise identical (no atomics);
//   - flash and simple agree (an extra check, same tolerances);
//   - set_attention accepts "flash" and "simple" only.
//
// Inputs are bf16-exact (random_vector) so both backends see the same values;
// the backward gets the CPU forward's out (rounded to bf16) and lse on both
// sides, so each comparison measures one op's own arithmetic.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "src/common/error.h"
#include "tests/attention_cases.h"

namespace polaris {
namespace {

using test::AttentionReference;
using test::docs_from_starts;
using test::expect_close;
using test::GpuAttention;
using test::GpuAttentionResult;
using test::max_abs;
using test::ops_attention;
using Vec = std::vector<float>;

// Tolerances (bf16 keeps 8 significant bits: one rounding errs by <= 2^-9
// relative, 2^-8 at worst near a binade's bottom).
//
// out: the flash kernel rounds P to bf16 before the P V mma (the row sum l
// is kept from the fp32 P), and rounds out once at the end. The P rounding
// adds sum_s eps_s P_s v_s with |eps_s| <= 2^-9 and independent signs: about
// 2^-9/sqrt(3) * sqrt(sum_s P_s^2) * |v| ~ 1e-3 * |v| for a short document
// (sum P^2 ~ 1), worst case 2^-9 * max|v| ~ 9e-3 for |v| <= 4.5 (normal
// samples). atol 5e-3 covers ~4 sigma of the typical case; a masking bug
// moves outputs by ~|v|/n for n visible keys (>= 1e-2 up to n ~ 100, and
// over many elements at once), rtol 2^-7 covers the final rounding.
constexpr double kOutAtol = 5e-3, kOutRtol = 1.0 / 128;
// lse: fp32 on both sides (the scores are fp32 mma accumulations of exact
// bf16 products; tensor-core fp32 accumulation may truncate the low bits of
// the aligned addends: a few 1e-7 relative on scores of O(1)), |lse| < ~10.
constexpr double kLseAtol = 2e-4, kLseRtol = 1e-5;
// dq, dk, dv: P and dS = P (dP - Delta) are rounded to bf16 before the dV,
// dK and dQ mmas (fp32 accumulation), then each gradient is rounded once
// (rtol 2^-7). The P/dS roundings add independent errors of <= 2^-9
// relative per term: ~2^-9/sqrt(3) * sqrt(sum of squared terms) per element,
// and the terms are largest (and cancel most) for the first keys of long
// documents (dk, dv sum over up to G * T queries), so the absolute error
// follows the scale of the largest gradients, not of each element. A host
// emulation of these kernels (ldmatrix/mma fragments, the same fp32 and
// bf16 roundings; T <= 300, GQA up to 8, documents) showed worst errors
// <= 0.0042 * max|want|, and matched a reference that rounds P and dS to
// bf16 the same way within rtol 2^-7: atol = 8e-3 * max|want| + 1e-4. A masking or tiling bug drops or
// adds whole terms (|P dout| up to ~|dout|) and fails it.
constexpr double kGradMaxFactor = 8e-3, kGradAtolFloor = 1e-4, kGradRtol = 1.0 / 128;

double grad_atol(const Vec& want) { return kGradMaxFactor * max_abs(want) + kGradAtolFloor; }

// A case, and whether to also run set_attention("simple") and compare.
struct Case : test::AttentionCase {
  Case() { max_docs = 9; }
  bool vs_simple = false;
};

#ifdef POLARIS_HAVE_CUDA
void use(Ops& gpu, const char* impl) { dynamic_cast<CudaOps&>(gpu).set_attention(impl); }
#else
void use(Ops&, const char*) {}
#endif

// Forward and backward with implementation `impl` (the backward twice: the
// same bits).
GpuAttentionResult run_gpu(Ops& gpu, const Case& c, const char* impl,
                           const AttentionReference& want) {
  use(gpu, impl);
  GpuAttention g(gpu, c, want);
  const GpuAttentionResult r = run_gpu_attention(g, ops_attention(gpu), describe(c) + " " + impl);
  use(gpu, "flash");
  return r;
}

// The flash results against `want` (the CPU reference, or the simple
// kernels' results: those are fp32 throughout, within these tolerances of
// the CPU, so the two agree within the same bounds).
template <typename Want>
void expect_flash_close(const std::string& against, const std::string& sh,
                        const GpuAttentionResult& f, const Want& want) {
  expect_close("flash vs " + against + " out", sh, f.out, want.out, kOutAtol, kOutRtol);
  expect_close("flash vs " + against + " lse", sh, f.lse, want.lse, kLseAtol, kLseRtol);
  expect_close("flash vs " + against + " dq", sh, f.dq, want.dq, grad_atol(want.dq), kGradRtol);
  expect_close("flash vs " + against + " dk", sh, f.dk, want.dk, grad_atol(want.dk), kGradRtol);
  expect_close("flash vs " + against + " dv", sh, f.dv, want.dv, grad_atol(want.dv), kGradRtol);
}

void check_case(Ops& gpu, const Case& c) {
  SCOPED_TRACE(describe(c));
  const std::string sh = describe(c);
  const AttentionReference want = attention_reference(c);
  const GpuAttentionResult f = run_gpu(gpu, c, "flash", want);
  expect_flash_close("cpu", sh, f, want);
  if (c.vs_simple) expect_flash_close("simple", sh, f, run_gpu(gpu, c, "simple", want));
}

TEST(OpsFlashAttention, SmallShapesMatchCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  uint32_t seed = 1000;
  for (int D : {64, 128, 48, 96})
    for (int group : {1, 2, 4, 8})
      for (int T : {1, 17, 127})
        for (bool docs : {false, true}) {
          Case c;
          c.B = 2;
          c.T = T;
          c.KVH = group == 8 ? 1 : 2;
          c.H = c.KVH * group;
          c.D = D;
          c.docs = docs;
          c.vs_simple = T == 127 && group == 2;
          c.seed = seed += 10;
          check_case(*gpu, c);
        }
}

// Long rows: many key tiles per query tile (forward, dQ) and many query
// tiles per key tile (dK/dV), documents crossing tile edges; a few
// combinations only (the CPU reference is the slow part).
TEST(OpsFlashAttention, LongRowsMatchCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  struct S { int T, H, KVH, D; bool docs; };
  uint32_t seed = 2000;
  for (const S& s : {S{1000, 8, 2, 64, true}, S{1000, 2, 2, 128, false},
                     S{2048, 8, 1, 128, true}, S{2048, 2, 2, 64, false}}) {
    Case c;
    c.B = 2;
    c.T = s.T;
    c.H = s.H;
    c.KVH = s.KVH;
    c.D = s.D;
    c.docs = s.docs;
    c.vs_simple = s.T == 1000;
    c.seed = seed += 10;
    check_case(*gpu, c);
  }
}

// Document starts on and next to the flash tiles' edges (64 queries / keys,
// dK/dV query tiles of 32 for D = 128), one-token documents, a start at the
// last token.
TEST(OpsFlashAttention, DocumentEdgesAtTileEdges) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (int D : {64, 128}) {
    Case c;
    c.B = 2;
    c.T = 300;
    c.H = 4;
    c.KVH = 1;
    c.D = D;
    c.docs = true;
    c.seed = uint32_t(3000 + D);
    c.doc_ids = docs_from_starts(c.T, {1, 2, 31, 32, 63, 64, 65, 127, 128, 200, 299}, 5);
    const std::vector<int32_t> row2 = docs_from_starts(c.T, {33, 96, 191, 192, 256}, 0);
    c.doc_ids.insert(c.doc_ids.end(), row2.begin(), row2.end());
    check_case(*gpu, c);
  }
}

// q, k, v as column ranges of one fused [N, Q + 2 KV] projection (strided
// rows, 16-byte aligned: the flash path), dq, dk, dv into one fused buffer.
TEST(OpsFlashAttention, FusedQkvStrides) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  struct S { int T, H, KVH, D; bool docs; };
  for (const S& s : {S{127, 8, 2, 128, true}, S{200, 4, 4, 64, false}}) {
    Case c;
    c.T = s.T;
    c.H = s.H;
    c.KVH = s.KVH;
    c.D = s.D;
    c.docs = s.docs;
    c.fused = true;
    c.vs_simple = true;
    c.seed = uint32_t(4000 + s.D + s.T);
    check_case(*gpu, c);
  }
}

TEST(OpsFlashAttention, SetAttentionChoices) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
#ifdef POLARIS_HAVE_CUDA
  CudaOps& ops = dynamic_cast<CudaOps&>(*gpu);
  EXPECT_EQ(ops.attention(), "flash");  // the default
  ops.set_attention("simple");
  EXPECT_EQ(ops.attention(), "simple");
  EXPECT_THROW(ops.set_attention("fast"), Error);
  EXPECT_EQ(ops.attention(), "simple");  // unchanged by a refused choice
  ops.set_attention("flash");
  EXPECT_EQ(ops.attention(), "flash");
#endif
}

}  // namespace
}  // namespace polaris
