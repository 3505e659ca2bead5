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
#include "tests/ops_compare.h"

namespace polaris {
namespace {

using test::DeviceBuffer;
using test::DeviceInts;
using test::expect_close;
using test::random_vector;
using test::round_bf16;
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

double max_abs(const Vec& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}
double grad_atol(const Vec& want) { return kGradMaxFactor * max_abs(want) + kGradAtolFloor; }

struct Case {
  int B = 2, T = 1, H = 2, KVH = 2, D = 64;
  bool docs = false;
  bool strided = false;
  bool vs_simple = false;  // also run set_attention("simple") and compare
  uint32_t seed = 1;
  std::vector<int32_t> doc_ids;  // explicit [B*T] layout, else make_docs
};

std::string describe(const Case& c) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
         " KVH=" + std::to_string(c.KVH) + " D=" + std::to_string(c.D) +
         (c.docs ? " docs" : "") + (c.strided ? " fused-qkv" : "");
}

// Per row: 1-9 documents (at most T), contiguous runs of varied length, ids
// increasing by 1-3 from a random first id.
std::vector<int32_t> make_docs(int B, int T, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> doc(size_t(B) * T);
  for (int b = 0; b < B; ++b) {
    const int ndocs = std::min(T, 1 + int(rng() % 9));
    std::vector<int> cuts;
    while (int(cuts.size()) < ndocs - 1) {
      const int c = 1 + int(rng() % unsigned(T - 1));
      if (std::find(cuts.begin(), cuts.end(), c) == cuts.end()) cuts.push_back(c);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.push_back(T);
    int id = int(rng() % 10), prev = 0;
    for (int c : cuts) {
      for (int t = prev; t < c; ++t) doc[size_t(b) * T + t] = id;
      id += 1 + int(rng() % 3);
      prev = c;
    }
  }
  return doc;
}

std::vector<int32_t> docs_from_starts(int T, const std::vector<int>& starts, int first_id) {
  std::vector<int32_t> doc(T);
  int id = first_id;
  for (int t = 0; t < T; ++t) {
    if (t > 0 && std::find(starts.begin(), starts.end(), t) != starts.end()) ++id;
    doc[t] = id;
  }
  return doc;
}

// Dense [N, Q], [N, KV], [N, KV] interleaved into rows of [N, Q + 2 KV].
Vec fuse(const Vec& q, const Vec& k, const Vec& v, size_t N, size_t Q, size_t KV) {
  const size_t W = Q + 2 * KV;
  Vec f(N * W);
  for (size_t n = 0; n < N; ++n) {
    std::copy(q.begin() + n * Q, q.begin() + (n + 1) * Q, f.begin() + n * W);
    std::copy(k.begin() + n * KV, k.begin() + (n + 1) * KV, f.begin() + n * W + Q);
    std::copy(v.begin() + n * KV, v.begin() + (n + 1) * KV, f.begin() + n * W + Q + KV);
  }
  return f;
}
Vec columns(const Vec& m, size_t N, size_t W, size_t c0, size_t width) {
  Vec out(N * width);
  for (size_t n = 0; n < N; ++n)
    std::copy(m.begin() + n * W + c0, m.begin() + n * W + c0 + width, out.begin() + n * width);
  return out;
}

#ifdef POLARIS_HAVE_CUDA
void use(Ops& gpu, const char* impl) { dynamic_cast<CudaOps&>(gpu).set_attention(impl); }
#else
void use(Ops&, const char*) {}
#endif

struct GpuResult {
  Vec out, lse, dq, dk, dv;
};

// Forward + backward on the GPU with implementation `impl`; the backward
// runs twice and must give the same bits.
GpuResult run_gpu(Ops& gpu, const Case& c, const char* impl, const Vec& hq, const Vec& hk,
                  const Vec& hv, const Vec& hdout, const Vec& out_bf, const Vec& lse_in,
                  const std::vector<int32_t>& hdoc) {
  use(gpu, impl);
  const std::string sh = describe(c) + " " + impl;
  const size_t N = size_t(c.B) * c.T, Q = size_t(c.H) * c.D, KV = size_t(c.KVH) * c.D;
  const size_t W = Q + 2 * KV, stats = size_t(c.B) * c.H * c.T;
  AttentionShape shape{c.B, c.T, c.H, c.KVH, c.D};
  // Inputs: dense, or column ranges of one fused buffer (8-element aligned
  // strides when Q + 2 KV is: the flash path takes them).
  DeviceBuffer qkv(gpu, c.strided ? fuse(hq, hk, hv, N, Q, KV) : Vec(1), DType::bf16);
  DeviceBuffer q(gpu, c.strided ? Vec(1) : hq, DType::bf16);
  DeviceBuffer k(gpu, c.strided ? Vec(1) : hk, DType::bf16);
  DeviceBuffer v(gpu, c.strided ? Vec(1) : hv, DType::bf16);
  DeviceBuffer dqkv(gpu, c.strided ? N * W : 1, DType::bf16);
  DeviceBuffer dq(gpu, c.strided ? 1 : N * Q, DType::bf16);
  DeviceBuffer dk(gpu, c.strided ? 1 : N * KV, DType::bf16);
  DeviceBuffer dv(gpu, c.strided ? 1 : N * KV, DType::bf16);
  if (c.strided) shape.q_stride = shape.k_stride = shape.v_stride = int(W);
  const CBuf qi = c.strided ? CBuf(qkv.buf) : CBuf(q.buf);
  const CBuf ki = c.strided ? CBuf(qkv.buf + Q) : CBuf(k.buf);
  const CBuf vi = c.strided ? CBuf(qkv.buf + Q + KV) : CBuf(v.buf);
  const Buf dqo = c.strided ? dqkv.buf : dq.buf;
  const Buf dko = c.strided ? dqkv.buf + Q : dk.buf;
  const Buf dvo = c.strided ? dqkv.buf + Q + KV : dv.buf;
  DeviceInts gdoc(gpu, hdoc);
  const int32_t* doc = c.docs ? gdoc.ptr : nullptr;

  GpuResult r;
  DeviceBuffer gout(gpu, N * Q, DType::bf16), glse(gpu, stats, DType::f32);
  gout.poison();
  glse.poison();
  gpu.attention_forward(gout, glse.f32(), qi, ki, vi, doc, shape);
  r.out = gout.download();
  r.lse = glse.download();

  DeviceBuffer gout_bf(gpu, out_bf, DType::bf16), gdout(gpu, hdout, DType::bf16);
  DeviceBuffer glse_in(gpu, lse_in, DType::f32);
  auto backward = [&](Vec& hdq, Vec& hdk, Vec& hdv) {
    if (c.strided) {
      dqkv.poison();
    } else {
      dq.poison();
      dk.poison();
      dv.poison();
    }
    gpu.attention_backward(dqo, dko, dvo, gdout, qi, ki, vi, gout_bf, glse_in.f32(), doc, shape);
    if (c.strided) {
      const Vec f = dqkv.download();
      EXPECT_TRUE(std::none_of(f.begin(), f.end(), [](float x) { return std::isnan(x); }))
          << sh << ": an element of the fused dq|dk|dv buffer was not written";
      hdq = columns(f, N, W, 0, Q);
      hdk = columns(f, N, W, Q, KV);
      hdv = columns(f, N, W, Q + KV, KV);
    } else {
      hdq = dq.download();
      hdk = dk.download();
      hdv = dv.download();
    }
  };
  backward(r.dq, r.dk, r.dv);
  Vec dq2, dk2, dv2;
  backward(dq2, dk2, dv2);
  auto same = [](const Vec& a, const Vec& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(r.dq, dq2)) << sh << ": dq differs between two runs";
  EXPECT_TRUE(same(r.dk, dk2)) << sh << ": dk differs between two runs";
  EXPECT_TRUE(same(r.dv, dv2)) << sh << ": dv differs between two runs";
  use(gpu, "flash");
  return r;
}

void check_case(Ops& gpu, const Case& c) {
  SCOPED_TRACE(describe(c));
  CpuOps cpu;
  const std::string sh = describe(c);
  const size_t N = size_t(c.B) * c.T, Q = size_t(c.H) * c.D, KV = size_t(c.KVH) * c.D;
  const size_t stats = size_t(c.B) * c.H * c.T;
  const Vec hq = random_vector(N * Q, c.seed);
  const Vec hk = random_vector(N * KV, c.seed + 1);
  const Vec hv = random_vector(N * KV, c.seed + 2);
  const Vec hdout = random_vector(N * Q, c.seed + 3);
  const std::vector<int32_t> hdoc = !c.docs                ? std::vector<int32_t>{0}
                                    : !c.doc_ids.empty() ? c.doc_ids
                                                         : make_docs(c.B, c.T, c.seed + 4);

  // CPU reference (dense, fp32).
  const AttentionShape dense{c.B, c.T, c.H, c.KVH, c.D};
  DeviceBuffer cq(cpu, hq, DType::f32), ck(cpu, hk, DType::f32), cv(cpu, hv, DType::f32);
  DeviceBuffer cout_(cpu, N * Q, DType::f32), clse(cpu, stats, DType::f32);
  DeviceInts cdoc(cpu, hdoc);
  const int32_t* cdoc_ptr = c.docs ? cdoc.ptr : nullptr;
  cpu.attention_forward(cout_, clse.f32(), cq, ck, cv, cdoc_ptr, dense);
  const Vec want_out = cout_.download(), want_lse = clse.download();
  Vec out_bf = want_out;
  for (float& x : out_bf) x = round_bf16(x);
  DeviceBuffer cout_bf(cpu, out_bf, DType::f32), cdout(cpu, hdout, DType::f32);
  DeviceBuffer cdq(cpu, N * Q, DType::f32), cdk(cpu, N * KV, DType::f32),
      cdv(cpu, N * KV, DType::f32);
  cpu.attention_backward(cdq, cdk, cdv, cdout, cq, ck, cv, cout_bf, clse.f32(), cdoc_ptr, dense);
  const Vec want_dq = cdq.download(), want_dk = cdk.download(), want_dv = cdv.download();

  const GpuResult f = run_gpu(gpu, c, "flash", hq, hk, hv, hdout, out_bf, want_lse, hdoc);
  expect_close("flash attention_forward out", sh, f.out, want_out, kOutAtol, kOutRtol);
  expect_close("flash attention_forward lse", sh, f.lse, want_lse, kLseAtol, kLseRtol);
  expect_close("flash attention_backward dq", sh, f.dq, want_dq, grad_atol(want_dq), kGradRtol);
  expect_close("flash attention_backward dk", sh, f.dk, want_dk, grad_atol(want_dk), kGradRtol);
  expect_close("flash attention_backward dv", sh, f.dv, want_dv, grad_atol(want_dv), kGradRtol);
  if (!c.vs_simple) return;
  // Flash vs simple: the simple kernels are fp32 throughout (within the
  // tolerances above of the CPU), so the two agree within the same bounds.
  const GpuResult s = run_gpu(gpu, c, "simple", hq, hk, hv, hdout, out_bf, want_lse, hdoc);
  expect_close("flash vs simple out", sh, f.out, s.out, kOutAtol, kOutRtol);
  expect_close("flash vs simple lse", sh, f.lse, s.lse, kLseAtol, kLseRtol);
  expect_close("flash vs simple dq", sh, f.dq, s.dq, grad_atol(s.dq), kGradRtol);
  expect_close("flash vs simple dk", sh, f.dk, s.dk, grad_atol(s.dk), kGradRtol);
  expect_close("flash vs simple dv", sh, f.dv, s.dv, grad_atol(s.dv), kGradRtol);
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
    c.strided = true;
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
