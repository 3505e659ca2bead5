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

#include "tests/attention_cases.h"

#if defined(POLARIS_HAVE_CUDA) && defined(POLARIS_HAVE_CUDNN)
#include "cuda/cudnn_attention.h"
#include "src/common/error.h"
#endif

namespace polaris {
namespace {

#if !(defined(POLARIS_HAVE_CUDA) && defined(POLARIS_HAVE_CUDNN))

TEST(CudnnAttention, Skipped) { GTEST_SKIP() << "built without CUDA or cuDNN (POLARIS_HAVE_CUDNN)"; }

#else

using test::AttentionImpl;
using test::AttentionReference;
using test::bitwise_equal;
using test::DeviceBuffer;
using test::DeviceInts;
using test::expect_close;
using test::GpuAttention;
using test::GpuAttentionResult;
using test::max_abs;
using test::random_vector;
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

// cuDNN's cases: 8 query heads, causal rows without documents.
struct Case : test::AttentionCase {
  Case() { H = KVH = 8; }
};

CudaOps& cuda_of(Ops& ops) { return dynamic_cast<CudaOps&>(ops); }

void check_case(Ops& gpu_ops, const Case& c) {
  SCOPED_TRACE(describe(c));
  CudaOps& gpu = cuda_of(gpu_ops);
  const std::string sh = describe(c);
  const AttentionReference want = attention_reference(c);
  GpuAttention g(gpu, c, want);
  std::string why;
  ASSERT_TRUE(cudnn_attention_supported(g.shape, nullptr, &why)) << sh << ": " << why;
  AttentionImpl cudnn;
  cudnn.forward = [&gpu](Buf out, float* lse, CBuf q, CBuf k, CBuf v, const int32_t* doc,
                         const AttentionShape& shape) {
    cudnn_attention_forward(gpu, out, lse, q, k, v, doc, shape);
  };
  cudnn.backward = [&gpu](Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q, CBuf k, CBuf v, CBuf out,
                          const float* lse, const int32_t* doc, const AttentionShape& shape) {
    cudnn_attention_backward(gpu, dq, dk, dv, dout, q, k, v, out, lse, doc, shape);
  };
  const GpuAttentionResult got = run_gpu_attention(g, cudnn, sh);
  expect_close("cudnn attention out", sh, got.out, want.out, kOutAtol, kOutRtol);
  expect_close("cudnn attention lse", sh, got.lse, want.lse, kLseAtol, kLseRtol);
  expect_close("cudnn attention dq", sh, got.dq, want.dq, kGradAtolOfMax * max_abs(want.dq),
               kGradRtol);
  expect_close("cudnn attention dk", sh, got.dk, want.dk, kGradAtolOfMax * max_abs(want.dk),
               kGradRtol);
  expect_close("cudnn attention dv", sh, got.dv, want.dv, kGradAtolOfMax * max_abs(want.dv),
               kGradRtol);

  // Only dq asked for: the same dq bits.
  g.backward(cudnn, /*want_q=*/true, /*want_kv=*/false);
  Vec only_dq, unused_dk, unused_dv;
  g.download_grads(only_dq, unused_dk, unused_dv);
  EXPECT_TRUE(bitwise_equal(got.dq, only_dq)) << sh << ": dq alone differs";
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
