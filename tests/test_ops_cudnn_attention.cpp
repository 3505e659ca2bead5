// cuDNN fused attention (cuda/cudnn_attention.cu) against the CPU reference:
//   - forward (out, lse) and backward (dq, dk, dv) for head_dim {64, 128} x
//     GQA ratio {1, 2, 4, 8} (H = 8) x T {1, 17, 127, 1000}, B = 2, causal;
//   - q, k, v as column ranges of one fused [N, Q + 2 KV] buffer with dq,
//     dk, dv written into a fused gradient buffer of the same layout;
//   - the backward twice: bitwise identical (cuDNN's deterministic form);
//     a call asking only for dq gives the same dq bits;
//   - packed documents and other unsupported shapes: supported() says no,
//     with a reason, and the forward throws one Error line.
// Skips without a GPU, and compiles to a single skipping test without cuDNN
// (POLARIS_HAVE_CUDNN unset) or without CUDA.
//
// Inputs are bf16-exact (random_vector) so both backends see the same values;
// the backward gets the CPU forward's out (rounded to bf16) and lse on both
// sides, so each comparison measures one op's own arithmetic.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tests/ops_compare.h"

#if defined(POLARIS_HAVE_CUDA) && defined(POLARIS_HAVE_CUDNN)
#include "cuda/cudnn_attention.h"
#include "src/common/error.h"
#include "tests/cpu_op_checks.h"
#endif

namespace polaris {
namespace {

#if !(defined(POLARIS_HAVE_CUDA) && defined(POLARIS_HAVE_CUDNN))

TEST(CudnnAttention, Skipped) { GTEST_SKIP() << "built without CUDA or cuDNN (POLARIS_HAVE_CUDNN)"; }

#else

using test::bitwise_equal;
using test::DeviceBuffer;
using test::DeviceInts;
using test::expect_close;
using test::random_vector;
using test::round_bf16;
using Vec = std::vector<float>;

// Tolerances. bf16 keeps 8 significant bits: one rounding errs by <= 2^-9
// relative (half an ulp; an ulp is 2^-8..2^-7 of the value).
//
// out: cuDNN computes S = QK^T and the softmax in fp32 but feeds P to the
// second matmul as bf16 (one rounding per P element, 2^-9 relative), then
// rounds out once. The P roundings are independent, so out's error is
// ~2^-9 * sqrt(sum_s (P_s v_s)^2) <= 2^-9 * max|v| ~ 2^-9 * 4 = 0.008 in the
// worst case and ~10x less typically; plus out's own rounding (2^-9 of
// |out|). atol 4e-3, rtol 2^-6 (a factor 4 over one rounding). A dropped or
// extra key (wrong mask) moves an output by ~|v| / T_visible, >= 4e-3 for
// T <= 1000 typically and far more for the short rows; a wrong scale or a
// wrong kv head moves every output by O(0.1).
constexpr double kOutAtol = 4e-3, kOutRtol = 1.0 / 64;
// lse: fp32 on both sides (no bf16 rounding). cuDNN's exp/log run on the fast
// (exp2-based) units: a few ulps of fp32, ~1e-6 relative on the sum, for
// |lse| <~ 10: atol 2e-4, rtol 1e-4. A log2 instead of ln would be off by 30%.
constexpr double kLseAtol = 2e-4, kLseRtol = 1e-4;
// dq, dk, dv: cuDNN rounds P and dS to bf16 before the tensor-core matmuls
// (2^-9 relative each) and rounds the result once. A gradient element sums
// up to G * T such products (G query heads per kv head); independent
// roundings add like a random walk, ~2^-9 * sqrt(#terms) * typical term,
// which for these random inputs is a few bf16 ulps of the tensor's largest
// elements, not of each element (cancelling sums can be small). So the
// absolute part scales with the tensor: atol = 2^-6 * max|want| (8 x 2^-9),
// rtol 2^-5. A wrong mask, scale or head mapping errs by far more (whole
// rows of dk/dv go wrong, or every element by a constant factor).
constexpr double kGradAtolOfMax = 1.0 / 64, kGradRtol = 1.0 / 32;

struct Case {
  int B = 2, T = 1, H = 8, KVH = 8, D = 64;
  bool fused = false;  // q, k, v (and dq, dk, dv) as column ranges of one buffer
  uint32_t seed = 1;
};

std::string describe(const Case& c) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
         " KVH=" + std::to_string(c.KVH) + " D=" + std::to_string(c.D) +
         (c.fused ? " fused-qkv" : "");
}

double max_abs(const Vec& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

// Interleaves dense q [N, Q], k [N, KV], v [N, KV] into rows of [N, Q + 2 KV].
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

CudaOps& cuda_of(Ops& ops) { return dynamic_cast<CudaOps&>(ops); }

void check_case(Ops& gpu_ops, const Case& c) {
  SCOPED_TRACE(describe(c));
  CudaOps& gpu = cuda_of(gpu_ops);
  CpuOps cpu;
  const std::string sh = describe(c);
  const size_t N = size_t(c.B) * c.T, Q = size_t(c.H) * c.D, KV = size_t(c.KVH) * c.D;
  const size_t W = Q + 2 * KV;
  const size_t stats = size_t(c.B) * c.H * c.T;
  const Vec hq = random_vector(N * Q, c.seed);
  const Vec hk = random_vector(N * KV, c.seed + 1);
  const Vec hv = random_vector(N * KV, c.seed + 2);
  const Vec hdout = random_vector(N * Q, c.seed + 3);

  // ---- CPU reference (dense) ----
  const AttentionShape dense{c.B, c.T, c.H, c.KVH, c.D};
  DeviceBuffer cq(cpu, hq, DType::f32), ck(cpu, hk, DType::f32), cv(cpu, hv, DType::f32);
  DeviceBuffer cout_(cpu, N * Q, DType::f32), clse(cpu, stats, DType::f32);
  cpu.attention_forward(cout_, clse.f32(), cq, ck, cv, nullptr, dense);
  const Vec want_out = cout_.download(), want_lse = clse.download();
  Vec out_bf = want_out;
  for (float& x : out_bf) x = round_bf16(x);
  DeviceBuffer cout_bf(cpu, out_bf, DType::f32), cdout(cpu, hdout, DType::f32);
  DeviceBuffer cdq(cpu, N * Q, DType::f32), cdk(cpu, N * KV, DType::f32),
      cdv(cpu, N * KV, DType::f32);
  cpu.attention_backward(cdq, cdk, cdv, cdout, cq, ck, cv, cout_bf, clse.f32(), nullptr, dense);
  const Vec want_dq = cdq.download(), want_dk = cdk.download(), want_dv = cdv.download();

  // ---- cuDNN ----
  AttentionShape shape = dense;
  std::string why;
  ASSERT_TRUE(cudnn_attention_supported(shape, nullptr, &why)) << sh << ": " << why;
  DeviceBuffer qkv(gpu, c.fused ? N * W : 1, DType::bf16), dqkv(gpu, c.fused ? N * W : 1, DType::bf16);
  DeviceBuffer q(gpu, hq, DType::bf16), k(gpu, hk, DType::bf16), v(gpu, hv, DType::bf16);
  DeviceBuffer dq(gpu, N * Q, DType::bf16), dk(gpu, N * KV, DType::bf16), dv(gpu, N * KV, DType::bf16);
  CBuf q_in = q, k_in = k, v_in = v;
  Buf dq_out = dq, dk_out = dk, dv_out = dv;
  if (c.fused) {
    const Vec f = fuse(hq, hk, hv, N, Q, KV);
    gpu.upload(qkv.buf, f.data(), f.size());
    shape.q_stride = shape.k_stride = shape.v_stride = int(W);
    ASSERT_TRUE(cudnn_attention_supported(shape, nullptr, &why)) << sh << ": " << why;
    q_in = qkv.buf;
    k_in = qkv.buf + Q;
    v_in = qkv.buf + Q + KV;
    dq_out = dqkv.buf;
    dk_out = dqkv.buf + Q;
    dv_out = dqkv.buf + Q + KV;
  }

  DeviceBuffer gout(gpu, N * Q, DType::bf16), glse(gpu, stats, DType::f32);
  gout.poison();
  glse.poison();
  cudnn_attention_forward(gpu, gout, glse.f32(), q_in, k_in, v_in, nullptr, shape);
  expect_close("cudnn attention out", sh, gout.download(), want_out, kOutAtol, kOutRtol);
  expect_close("cudnn attention lse", sh, glse.download(), want_lse, kLseAtol, kLseRtol);

  // Backward from the CPU's out and lse (the same on both sides).
  DeviceBuffer gout_bf(gpu, out_bf, DType::bf16), gdout(gpu, hdout, DType::bf16);
  DeviceBuffer glse_ref(gpu, want_lse, DType::f32);
  auto run_backward = [&](Buf a, Buf b, Buf d) {
    if (c.fused) {
      dqkv.poison();
    } else {
      dq.poison();
      dk.poison();
      dv.poison();
    }
    cudnn_attention_backward(gpu, a, b, d, gdout, q_in, k_in, v_in, gout_bf, glse_ref.f32(),
                             nullptr, shape);
  };
  auto grads = [&](Vec& hdq, Vec& hdk, Vec& hdv) {
    if (c.fused) {
      const Vec f = dqkv.download();
      hdq = columns(f, N, W, 0, Q);
      hdk = columns(f, N, W, Q, KV);
      hdv = columns(f, N, W, Q + KV, KV);
    } else {
      hdq = dq.download();
      hdk = dk.download();
      hdv = dv.download();
    }
  };
  run_backward(dq_out, dk_out, dv_out);
  Vec got_dq, got_dk, got_dv;
  grads(got_dq, got_dk, got_dv);
  expect_close("cudnn attention dq", sh, got_dq, want_dq, kGradAtolOfMax * max_abs(want_dq), kGradRtol);
  expect_close("cudnn attention dk", sh, got_dk, want_dk, kGradAtolOfMax * max_abs(want_dk), kGradRtol);
  expect_close("cudnn attention dv", sh, got_dv, want_dv, kGradAtolOfMax * max_abs(want_dv), kGradRtol);
  if (c.fused) {  // every column of the fused gradient buffer is written
    const Vec f = dqkv.download();
    EXPECT_TRUE(std::none_of(f.begin(), f.end(), [](float x) { return std::isnan(x); })) << sh;
  }

  // Deterministic: the same bits again; only dq asked for: the same dq bits.
  run_backward(dq_out, dk_out, dv_out);
  Vec again_dq, again_dk, again_dv;
  grads(again_dq, again_dk, again_dv);
  EXPECT_TRUE(bitwise_equal(got_dq, again_dq)) << sh << ": dq differs between runs";
  EXPECT_TRUE(bitwise_equal(got_dk, again_dk)) << sh << ": dk differs between runs";
  EXPECT_TRUE(bitwise_equal(got_dv, again_dv)) << sh << ": dv differs between runs";
  run_backward(dq_out, Buf(), Buf());
  Vec only_dq, unused_dk, unused_dv;
  grads(only_dq, unused_dk, unused_dv);
  EXPECT_TRUE(bitwise_equal(got_dq, only_dq)) << sh << ": dq alone differs";
}

TEST(CudnnAttention, ForwardBackwardMatchCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  uint32_t seed = 100;
  for (int D : {64, 128})
    for (int group : {1, 2, 4, 8})
      for (int T : {1, 17, 127, 1000}) {
        Case c;
        c.T = T;
        c.D = D;
        c.KVH = c.H / group;
        c.seed = seed += 10;
        check_case(*gpu, c);
        if (HasFatalFailure()) return;
      }
}

TEST(CudnnAttention, FusedQkvStrides) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (int group : {1, 4})
    for (int T : {17, 127}) {
      Case c;
      c.T = T;
      c.KVH = c.H / group;
      c.fused = true;
      c.seed = 7 + T + group;
      check_case(*gpu, c);
      if (HasFatalFailure()) return;
    }
}

// The cases the caller must route to the own kernels: supported() says no
// with a reason, and calling anyway is one Error line, not a crash.
TEST(CudnnAttention, UnsupportedShapesFallBack) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CudaOps& ops = cuda_of(*gpu);
  const AttentionShape shape{1, 8, 2, 2, 64};
  const size_t N = 8, Q = 128;
  std::vector<int32_t> docs = {0, 0, 0, 1, 1, 2, 2, 2};
  DeviceInts gdoc(ops, docs);
  std::string why;
  EXPECT_FALSE(cudnn_attention_supported(shape, gdoc, &why));
  EXPECT_NE(why.find("packed documents"), std::string::npos) << why;

  DeviceBuffer q(ops, random_vector(N * Q, 3), DType::bf16), out(ops, N * Q, DType::bf16);
  DeviceBuffer lse(ops, 2 * N, DType::f32);
  try {
    cudnn_attention_forward(ops, out, lse.f32(), q, q, q, gdoc, shape);
    ADD_FAILURE() << "packed documents: expected an Error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_NE(m.find("cudnn_attention_forward"), std::string::npos) << m;
  }

  AttentionShape odd = shape;
  odd.head_dim = 36;  // not a multiple of 8
  EXPECT_FALSE(cudnn_attention_supported(odd, nullptr, &why));
  EXPECT_NE(why.find("head_dim"), std::string::npos) << why;
  AttentionShape wide = shape;
  wide.head_dim = 256;
  EXPECT_FALSE(cudnn_attention_supported(wide, nullptr, &why));
  AttentionShape bad_group = shape;
  bad_group.num_heads = 3;
  EXPECT_FALSE(cudnn_attention_supported(bad_group, nullptr, &why));
  AttentionShape odd_stride = shape;
  odd_stride.q_stride = 132;  // 264-byte rows: not 16-byte multiples
  EXPECT_FALSE(cudnn_attention_supported(odd_stride, nullptr, &why));
  AttentionShape huge = shape;
  huge.B = 64;
  huge.num_heads = huge.num_kv_heads = 32;
  huge.T = 8192;  // dP workspace 64 * 32 * 8192^2 * 2 bytes
  EXPECT_FALSE(cudnn_attention_supported(huge, nullptr, &why));
  EXPECT_NE(why.find("workspace"), std::string::npos) << why;
}

#endif  // POLARIS_HAVE_CUDA && POLARIS_HAVE_CUDNN

}  // namespace
}  // namespace polaris
