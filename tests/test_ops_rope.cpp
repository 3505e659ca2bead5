// CudaOps RoPE and Qwen3's fused q/k RMSNorm + RoPE (cuda/rope.cu) against
// the CPU reference:
//   - rope_forward / rope_backward for N in {1, 9, 130} x heads 1..4 x
//     head_dim in {8, 64, 128}, positions up to 4000, theta 1e4 and 1e6, and
//     YaRN (factor 4 over 1024 positions: per-pair frequencies, scaled cos/sin);
//     separate output and in place (out == in, din == dout); din is WRITTEN
//     (the GPU's is poisoned first);
//   - qk_norm_rope_forward: q and k read as column ranges of a fused
//     [N, (H + 2 KVH) D] qkv buffer (in_stride = (H + 2 KVH) D), GQA shapes;
//     dense q_out / k_out and the rstds;
//   - qk_norm_rope_backward: dq, dk WRITTEN into the fused layout (the v
//     columns must stay untouched), dq_weight / dk_weight ACCUMULATED onto
//     nonzero values, the same rstd on both sides; null weight gradients; a
//     second GPU run is bitwise identical (the weight gradients reduce in a
//     fixed order); with plain RoPE and with YaRN.
//
// Inputs are bf16-exact (random_vector), so both backends see the same values
// and a difference is the op's own: the GPU computes in fp32 and rounds each
// bf16 output once; the CPU reference is fp32 with no output rounding.
//
// The last section ("CPU reference") tests CpuOps alone and runs without a
// GPU: against direct formulas, central differences and compositions of
// other ops (tests/cpu_op_checks.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "model/ops/cpu_common.h"
#include "tests/cpu_op_checks.h"
#include "tests/ops_compare.h"

namespace polaris {
namespace {

using test::bitwise_equal;
using test::columns;
using test::DeviceBuffer;
using test::DeviceInts;
using test::expect_close;
using test::random_ints;
using test::random_vector;
using test::round_bf16;
using Vec = std::vector<float>;

constexpr int kNs[] = {1, 9, 130};
constexpr int kHeadDims[] = {8, 64, 128};
constexpr int kMaxPos = 4000;
constexpr float kEps = 1e-6f;

// One rounding to bf16 (8 significant bits, round to nearest): relative error
// < 2^-8 of the value; the fp32 difference between the backends adds to it and
// is what the atols below bound.
constexpr double kBf16Rtol = 1.0 / 256;

// RoPE: both sides build inv_freq with the same fp32 roundings (the GPU's
// double pow rounded to fp32 equals glibc's powf for theta 1e4 / 1e6 and these
// head_dims; checked bitwise when this test was written), so the fp32 angle has
// the same bits and only cos/sin differ: <= ~3 fp32 ulps of 1 (~2e-7), times
// |x1| + |x2| <= ~10 for these N(0, 1) inputs: ~2e-6; atol 1e-5 is 5x that.
// (Were inv_freq one ulp apart, the angle at position 4000 would differ by up
// to 4000 * 2^-23 ~ 5e-4 rad, i.e. errors ~2e-3 here: this test would see it.)
constexpr double kRopeAtol = 1e-5;

// q/k norm + RoPE forward: rstd from an fp32 warp-tree sum of D squares (~1e-6
// relative to the CPU's double sum) scales outputs of size |x rstd w| <= ~10:
// ~1e-5; plus the cos/sin term above; atol 5e-5.
constexpr double kQkOutAtol = 5e-5;
constexpr double kRstdAtol = 1e-7, kRstdRtol = 1e-5;  // fp32 vs fp32, ~1e-6 apart
// backward: din = rstd (g - x rstd^2 mean(g x)); the fp32 sum of D products g x
// errs by <= ~10 * 2^-24 of sum |g x| (<= ~40 D here), moving din by <= ~1e-4
// in the worst case (typically 1e-6); atol 1e-4.
constexpr double kQkDinAtol = 1e-4;

RopeParams plain_rope(float theta) { return rope_params(theta, RopeScaling(), 2); }

// YaRN as Qwen3 configs use it (factor 4), over a 1024-position original
// context so the test's positions (up to 4000) run past it.
RopeScaling yarn_scaling(float factor, int original) {
  RopeScaling s;
  s.type = RopeType::Yarn;
  s.factor = factor;
  s.original_max_positions = original;
  s.attention_factor = float(yarn_mscale(factor));
  return s;
}
RopeParams yarn_rope(int D) { return rope_params(1e6f, yarn_scaling(4.f, 1024), D); }

// Plain theta 1e4, plain theta 1e6, YaRN, chosen by `which` (mod 3).
RopeParams test_rope(int which, int D) {
  switch (which % 3) {
    case 0: return plain_rope(1e4f);
    case 1: return plain_rope(1e6f);
    default: return yarn_rope(D);
  }
}

std::string rope_name(const RopeParams& rope) {
  return std::string(rope.yarn ? " yarn" : "") + " theta=" + std::to_string((long long)rope.theta);
}

std::string rope_shape(int N, int heads, int D, const RopeParams& rope) {
  return "N=" + std::to_string(N) + " heads=" + std::to_string(heads) +
         " head_dim=" + std::to_string(D) + rope_name(rope);
}

TEST(OpsRope, ForwardBackwardMatchCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : kNs)
    for (int heads = 1; heads <= 4; ++heads)
      for (int D : kHeadDims) {
        const RopeParams rope = test_rope(N + heads, D);
        const std::string shape = rope_shape(N, heads, D, rope);
        const uint32_t seed = uint32_t(N * 1009 + heads * 101 + D);
        const size_t n = size_t(N) * heads * D;
        const Vec x = random_vector(n, seed);
        const Vec dout = random_vector(n, seed + 1);
        const std::vector<int32_t> pos = random_ints(N, seed + 2, 0, kMaxPos);

        // CPU reference (outputs start at zero: the backward is written).
        DeviceInts cpos(cpu, pos);
        DeviceBuffer cx(cpu, x, DType::f32), cd(cpu, dout, DType::f32);
        DeviceBuffer cout_(cpu, n, DType::f32), cdin(cpu, n, DType::f32);
        cpu.rope_forward(cout_, cx, cpos, N, heads, D, rope);
        cpu.rope_backward(cdin, cd, cpos, N, heads, D, rope);
        const Vec want_out = cout_.download(), want_din = cdin.download();

        DeviceInts gpos(*gpu, pos);
        DeviceBuffer gx(*gpu, x, DType::bf16), gd(*gpu, dout, DType::bf16);
        DeviceBuffer gout(*gpu, n, DType::bf16), gdin(*gpu, n, DType::bf16);
        gout.poison();
        gdin.poison();
        gpu->rope_forward(gout, gx, gpos, N, heads, D, rope);
        gpu->rope_backward(gdin, gd, gpos, N, heads, D, rope);
        expect_close("rope_forward", shape, gout.download(), want_out, kRopeAtol, kBf16Rtol);
        expect_close("rope_backward", shape, gdin.download(), want_din, kRopeAtol, kBf16Rtol);

        // In place: out == in, din == dout.
        gpu->rope_forward(gx, gx, gpos, N, heads, D, rope);
        gpu->rope_backward(gd, gd, gpos, N, heads, D, rope);
        expect_close("rope_forward in place", shape, gx.download(), want_out, kRopeAtol,
                     kBf16Rtol);
        expect_close("rope_backward in place", shape, gd.download(), want_din, kRopeAtol,
                     kBf16Rtol);
      }
}

// A (H, KVH) GQA/MQA/MHA set; head_dim from kHeadDims.
struct QkHeads {
  int H, KVH;
};
constexpr QkHeads kQkHeads[] = {{1, 1}, {4, 2}, {3, 1}, {4, 4}};

std::string qk_shape(int N, QkHeads h, int D) {
  return "N=" + std::to_string(N) + " H=" + std::to_string(h.H) + " KVH=" +
         std::to_string(h.KVH) + " head_dim=" + std::to_string(D);
}

TEST(OpsRope, QkNormRopeForwardMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : kNs)
    for (QkHeads h : kQkHeads)
      for (int D : kHeadDims) {
        const RopeParams rope = test_rope(N + h.H + h.KVH, D);
        const std::string shape = qk_shape(N, h, D) + rope_name(rope);
        const uint32_t seed = uint32_t(N * 7919 + h.H * 131 + h.KVH * 17 + D);
        const int stride = (h.H + 2 * h.KVH) * D;
        const size_t nq = size_t(N) * h.H * D, nk = size_t(N) * h.KVH * D;
        const Vec qkv = random_vector(size_t(N) * stride, seed, 2.f);
        Vec qw = random_vector(D, seed + 1, 0.3f), kw = random_vector(D, seed + 2, 0.3f);
        for (float& w : qw) w = round_bf16(w + 1.f);
        for (float& w : kw) w = round_bf16(w + 1.f);
        const std::vector<int32_t> pos = random_ints(N, seed + 3, 0, kMaxPos);

        DeviceInts cpos(cpu, pos);
        DeviceBuffer cqkv(cpu, qkv, DType::f32), cqw(cpu, qw, DType::f32), ckw(cpu, kw, DType::f32);
        DeviceBuffer cq(cpu, nq, DType::f32), ck(cpu, nk, DType::f32);
        DeviceBuffer cqr(cpu, size_t(N) * h.H, DType::f32), ckr(cpu, size_t(N) * h.KVH, DType::f32);
        cpu.qk_norm_rope_forward(cq, ck, cqr.f32(), ckr.f32(), cqkv.buf, cqkv.buf + size_t(h.H) * D,
                                 stride, cqw, ckw, cpos, N, h.H, h.KVH, D, kEps, rope);

        DeviceInts gpos(*gpu, pos);
        DeviceBuffer gqkv(*gpu, qkv, DType::bf16), gqw(*gpu, qw, DType::bf16),
            gkw(*gpu, kw, DType::bf16);
        DeviceBuffer gq(*gpu, nq, DType::bf16), gk(*gpu, nk, DType::bf16);
        DeviceBuffer gqr(*gpu, size_t(N) * h.H, DType::f32), gkr(*gpu, size_t(N) * h.KVH, DType::f32);
        gq.poison();
        gk.poison();
        gqr.poison();
        gkr.poison();
        gpu->qk_norm_rope_forward(gq, gk, gqr.f32(), gkr.f32(), gqkv.buf,
                                  gqkv.buf + size_t(h.H) * D, stride, gqw, gkw, gpos, N, h.H,
                                  h.KVH, D, kEps, rope);

        expect_close("qk_norm_rope_forward q_out", shape, gq.download(), cq.download(),
                     kQkOutAtol, kBf16Rtol);
        expect_close("qk_norm_rope_forward k_out", shape, gk.download(), ck.download(),
                     kQkOutAtol, kBf16Rtol);
        expect_close("qk_norm_rope_forward q_rstd", shape, gqr.download(), cqr.download(),
                     kRstdAtol, kRstdRtol);
        expect_close("qk_norm_rope_forward k_rstd", shape, gkr.download(), ckr.download(),
                     kRstdAtol, kRstdRtol);
      }
}

TEST(OpsRope, QkNormRopeBackwardMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : kNs)
    for (QkHeads h : kQkHeads)
      for (int D : kHeadDims) {
        const RopeParams rope = test_rope(N + h.H + h.KVH, D);
        const std::string shape = qk_shape(N, h, D) + rope_name(rope);
        const uint32_t seed = uint32_t(N * 6007 + h.H * 113 + h.KVH * 29 + D);
        const int stride = (h.H + 2 * h.KVH) * D;
        const size_t nq = size_t(N) * h.H * D, nk = size_t(N) * h.KVH * D;
        const size_t nfused = size_t(N) * stride;
        const Vec qkv = random_vector(nfused, seed, 2.f);
        Vec qw = random_vector(D, seed + 1, 0.3f), kw = random_vector(D, seed + 2, 0.3f);
        for (float& w : qw) w = round_bf16(w + 1.f);
        for (float& w : kw) w = round_bf16(w + 1.f);
        const std::vector<int32_t> pos = random_ints(N, seed + 3, 0, kMaxPos);
        const Vec dq_out = random_vector(nq, seed + 4), dk_out = random_vector(nk, seed + 5);
        const Vec dqw0 = random_vector(D, seed + 6), dkw0 = random_vector(D, seed + 7);

        // The CPU's forward gives the rstds; both backends get the same values.
        DeviceInts cpos(cpu, pos);
        DeviceBuffer cqkv(cpu, qkv, DType::f32), cqw(cpu, qw, DType::f32), ckw(cpu, kw, DType::f32);
        DeviceBuffer cq(cpu, nq, DType::f32), ck(cpu, nk, DType::f32);
        DeviceBuffer cqr(cpu, size_t(N) * h.H, DType::f32), ckr(cpu, size_t(N) * h.KVH, DType::f32);
        cpu.qk_norm_rope_forward(cq, ck, cqr.f32(), ckr.f32(), cqkv.buf, cqkv.buf + size_t(h.H) * D,
                                 stride, cqw, ckw, cpos, N, h.H, h.KVH, D, kEps, rope);
        const Vec q_rstd = cqr.download(), k_rstd = ckr.download();

        DeviceBuffer cdq_out(cpu, dq_out, DType::f32), cdk_out(cpu, dk_out, DType::f32);
        DeviceBuffer cdqkv(cpu, nfused, DType::f32);  // zero: the backward writes
        DeviceBuffer cdqw(cpu, dqw0, DType::f32), cdkw(cpu, dkw0, DType::f32);
        cpu.qk_norm_rope_backward(cdqkv.buf, cdqkv.buf + size_t(h.H) * D, cdqw.f32(), cdkw.f32(),
                                  cdq_out, cdk_out, cqkv.buf, cqkv.buf + size_t(h.H) * D, stride,
                                  cqw, ckw, cqr.f32(), ckr.f32(), cpos, N, h.H, h.KVH, D, rope);
        const Vec want_dqkv = cdqkv.download();

        DeviceInts gpos(*gpu, pos);
        DeviceBuffer gqkv(*gpu, qkv, DType::bf16), gqw(*gpu, qw, DType::bf16),
            gkw(*gpu, kw, DType::bf16);
        DeviceBuffer gqr(*gpu, q_rstd, DType::f32), gkr(*gpu, k_rstd, DType::f32);
        DeviceBuffer gdq_out(*gpu, dq_out, DType::bf16), gdk_out(*gpu, dk_out, DType::bf16);
        DeviceBuffer gdqkv(*gpu, nfused, DType::bf16);
        DeviceBuffer gdqw(*gpu, dqw0, DType::f32), gdkw(*gpu, dkw0, DType::f32);
        auto run = [&](bool weights) {
          gdqkv.poison();
          gpu->upload(gdqw.buf, dqw0.data(), dqw0.size());
          gpu->upload(gdkw.buf, dkw0.data(), dkw0.size());
          gpu->qk_norm_rope_backward(gdqkv.buf, gdqkv.buf + size_t(h.H) * D,
                                     weights ? gdqw.f32() : nullptr,
                                     weights ? gdkw.f32() : nullptr, gdq_out, gdk_out, gqkv.buf,
                                     gqkv.buf + size_t(h.H) * D, stride, gqw, gkw, gqr.f32(),
                                     gkr.f32(), gpos, N, h.H, h.KVH, D, rope);
        };
        run(true);
        const Vec got_dqkv = gdqkv.download(), got_dqw = gdqw.download(),
                  got_dkw = gdkw.download();

        const int qcols = h.H * D, kcols = h.KVH * D;
        expect_close("qk_norm_rope_backward dq", shape, columns(got_dqkv, N, stride, 0, qcols),
                     columns(want_dqkv, N, stride, 0, qcols), kQkDinAtol, kBf16Rtol);
        expect_close("qk_norm_rope_backward dk", shape,
                     columns(got_dqkv, N, stride, qcols, kcols),
                     columns(want_dqkv, N, stride, qcols, kcols), kQkDinAtol, kBf16Rtol);
        // The v columns are not the op's: still the poison.
        const Vec v_cols = columns(got_dqkv, N, stride, qcols + kcols, kcols);
        size_t written = 0;
        for (float v : v_cols) written += !std::isnan(v);
        EXPECT_EQ(written, 0u) << "qk_norm_rope_backward " << shape << " wrote into the v columns";

        // Weight gradients: fp32 sums over rows = N*H (or N*KVH) terms
        // dy x rstd of size <= ~4 (typically ~1). The CPU adds them one by one,
        // each addition rounding by <= 2^-24 of a partial sum that grows like
        // sqrt(rows); the GPU's tree errs less. atol 4 * 2^-24 * rows^1.5
        // (+1e-5 for the accumulated prefill of size ~3) covers that with
        // margin and is far below one missing row's contribution (~1).
        for (int which = 0; which < 2; ++which) {
          const double rows = double(N) * (which ? h.KVH : h.H);
          const double atol = 4.0 * std::ldexp(1.0, -24) * std::pow(rows, 1.5) + 1e-5;
          expect_close(which ? "qk_norm_rope_backward dk_weight" : "qk_norm_rope_backward dq_weight",
                       shape, which ? got_dkw : got_dqw,
                       which ? cdkw.download() : cdqw.download(), atol, 1e-5);
        }

        // Deterministic: a second run gives the same bits.
        run(true);
        EXPECT_TRUE(bitwise_equal(gdqkv.download(), got_dqkv)) << "dq/dk not deterministic " << shape;
        EXPECT_TRUE(bitwise_equal(gdqw.download(), got_dqw)) << "dq_weight not deterministic " << shape;
        EXPECT_TRUE(bitwise_equal(gdkw.download(), got_dkw)) << "dk_weight not deterministic " << shape;

        // Null weight gradients: dq, dk unchanged, the (re-uploaded) weights untouched.
        run(false);
        EXPECT_TRUE(bitwise_equal(gdqkv.download(), got_dqkv)) << "dq/dk differ without dweight " << shape;
        EXPECT_TRUE(bitwise_equal(gdqw.download(), dqw0)) << "null dq_weight was written " << shape;
        EXPECT_TRUE(bitwise_equal(gdkw.download(), dkw0)) << "null dk_weight was written " << shape;
      }
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): rope_forward against the rotation in
// double, rope_backward against central differences (written, null skipped),
// both in place; qk_norm_rope_forward equal to rmsnorm_forward + rope_forward
// on a dense copy of the strided q/k columns, qk_norm_rope_backward against
// central differences with dq/dk written into the fused layout.

using test::dot;
using test::expect_doubled;
using test::expect_grad;
using test::expect_written;
using test::randn;
using IVec = std::vector<int32_t>;

TEST(CpuRope, ForwardMatchesRotation) {
  CpuOps ops;
  const int N = 5, H = 3, D = 16;
  const float theta = 10000.f;
  IVec pos = {0, 1, 7, 100, 4000};
  Vec x = randn(N * H * D, 1), out(N * H * D);
  ops.rope_forward(out.data(), x.data(), pos.data(), N, H, D, plain_rope(theta));
  for (int n = 0; n < N; n++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < D / 2; i++) {
        const double a = pos[n] * std::pow((double)theta, -2.0 * i / D);
        const float* xi = &x[(n * H + h) * D];
        const double e1 = xi[i] * std::cos(a) - xi[i + D / 2] * std::sin(a);
        const double e2 = xi[i + D / 2] * std::cos(a) + xi[i] * std::sin(a);
        // fp32 angles (as Hugging Face computes them) lose ~pos * 1e-7 rad
        const double tol = 1e-5 + 4e-7 * pos[n];
        EXPECT_NEAR(out[(n * H + h) * D + i], e1, tol);
        EXPECT_NEAR(out[(n * H + h) * D + i + D / 2], e2, tol);
      }
  // in place
  Vec y = x;
  ops.rope_forward(y.data(), y.data(), pos.data(), N, H, D, plain_rope(theta));
  EXPECT_TRUE(bitwise_equal(y, out));
}

TEST(CpuRope, Backward) {
  CpuOps ops;
  const int N = 4, H = 2, D = 8;
  IVec pos = {3, 0, 11, 5};
  for (const RopeParams& rope : {plain_rope(1e6f), rope_params(1e4f, yarn_scaling(4.f, 8), D)}) {
    SCOPED_TRACE(rope_name(rope));
    Vec x = randn(N * H * D, 1), dout = randn(N * H * D, 2), out(N * H * D);
    auto L = [&] {
      ops.rope_forward(out.data(), x.data(), pos.data(), N, H, D, rope);
      return dot(out, dout);
    };
    Vec dx(N * H * D);
    ops.rope_backward(dx.data(), dout.data(), pos.data(), N, H, D, rope);
    expect_grad("rope din", x, dx, L);
    Vec dx2 = dx;
    ops.rope_backward(dx2.data(), dout.data(), pos.data(), N, H, D, rope);
    expect_written("rope din", dx, dx2);
    ops.rope_backward(nullptr, dout.data(), pos.data(), N, H, D, rope);  // skipped
  }
}

// YaRN against its formula, written out here in double from the paper's
// definitions (not through model/rope.cpp): per pair i of D,
//   p_i = theta^(2i/D); d(r) = D ln(L / (2 pi r)) / (2 ln theta)
//   low = max(floor(d(beta_fast)), 0), high = min(ceil(d(beta_slow)), D - 1)
//   ramp = clamp((i - low) / (high - low), 0, 1)
//   inv_freq_i = ramp / (s p_i) + (1 - ramp) / p_i;  mscale = 0.1 ln s + 1.
// The op's cos/sin tables at position 1 give inv_freq_i = atan2(sin, cos) and
// mscale = hypot(sin, cos); at position 3000 (past L) the rotation itself is
// checked. Qwen3-0.6B's shape (D = 128, theta 1e6) with Qwen's YaRN setting
// (factor 4 over 32768): low = 23, high = 40, so pair 0 keeps its frequency and
// pair 63 is divided by 4 (a plain-RoPE op would fail both checks).
TEST(CpuRope, YarnMatchesFormula) {
  struct Case {
    int D;
    double theta, factor;
    int L;
    bool truncate;
    int expect_low, expect_high;  // -1: not checked
  };
  const Case cases[] = {{128, 1e6, 4.0, 32768, true, 23, 40},
                        {64, 1e4, 8.0, 2048, true, -1, -1},
                        {64, 1e4, 2.5, 4096, false, -1, -1}};
  const double pi = 3.14159265358979323846;
  for (const Case& c : cases) {
    const std::string name = "D=" + std::to_string(c.D) + " factor=" + std::to_string(c.factor);
    RopeScaling s = yarn_scaling(float(c.factor), c.L);
    s.truncate = c.truncate;
    const RopeParams rope = rope_params(float(c.theta), s, c.D);
    auto dim = [&](double r) { return c.D * std::log(c.L / (2 * pi * r)) / (2 * std::log(c.theta)); };
    double low = dim(32), high = dim(1);
    if (c.truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0);
    high = std::min(high, double(c.D - 1));
    if (c.expect_low >= 0) {
      EXPECT_EQ(low, c.expect_low) << name;
      EXPECT_EQ(high, c.expect_high) << name;
    }
    const double mscale = 0.1 * std::log(c.factor) + 1.0;
    const int half = c.D / 2;
    std::vector<double> want(half);
    for (int i = 0; i < half; ++i) {
      const double p = std::pow(c.theta, 2.0 * i / c.D);
      const double ramp = std::min(1.0, std::max(0.0, (i - low) / (high - low)));
      want[i] = ramp / (c.factor * p) + (1 - ramp) / p;
    }
    Vec cs(half), sn(half);
    cpu::rope_tables(cs.data(), sn.data(), 1, c.D, rope);
    for (int i = 0; i < half; ++i) {
      EXPECT_NEAR(std::atan2(sn[i], cs[i]), want[i], 1e-6 * want[i] + 1e-9) << name << " pair " << i;
      EXPECT_NEAR(std::hypot(sn[i], cs[i]), mscale, 1e-6) << name << " pair " << i;
    }
    if (c.expect_low >= 0) {  // the anchors named above
      EXPECT_NEAR(std::atan2(sn[0], cs[0]), 1.0, 3e-7) << name;
      EXPECT_NEAR(std::atan2(sn[half - 1], cs[half - 1]),
                  std::pow(c.theta, -2.0 * (half - 1) / c.D) / c.factor, 1e-12) << name;
    }
    // The rotation at a position past L, one head.
    CpuOps ops;
    const int pos = 3000;
    const Vec x = randn(c.D, 7);
    Vec out(c.D);
    ops.rope_forward(out.data(), x.data(), &pos, 1, 1, c.D, rope);
    for (int i = 0; i < half; ++i) {
      const double a = pos * want[i];
      const double e1 = mscale * (x[i] * std::cos(a) - x[i + half] * std::sin(a));
      const double e2 = mscale * (x[i + half] * std::cos(a) + x[i] * std::sin(a));
      const double tol = 1e-5 + 4e-7 * pos;  // fp32 angles, as transformers computes them
      EXPECT_NEAR(out[i], e1, tol) << name << " pair " << i;
      EXPECT_NEAR(out[i + half], e2, tol) << name << " pair " << i;
    }
  }
  // Plain RoPE is YaRN's negative control: same theta, unscaled, unit scale.
  Vec cs(64), sn(64);
  cpu::rope_tables(cs.data(), sn.data(), 1, 128, plain_rope(1e6f));
  EXPECT_NEAR(std::hypot(sn[63], cs[63]), 1.0, 1e-6);
  EXPECT_NEAR(std::atan2(sn[63], cs[63]), std::pow(1e6, -126.0 / 128), 1e-12);
}

// transformers' default attention factors: mscale(s) = 0.1 ln s + 1 (1 for
// s <= 1), and the mscale / mscale_all_dim ratio DeepSeek-style configs use.
TEST(CpuRope, YarnMscale) {
  EXPECT_DOUBLE_EQ(yarn_mscale(4.0), 0.1 * std::log(4.0) + 1.0);
  EXPECT_DOUBLE_EQ(yarn_mscale(1.0), 1.0);
  EXPECT_DOUBLE_EQ(yarn_mscale(0.5), 1.0);
  EXPECT_DOUBLE_EQ(yarn_mscale(40.0, 0.707), 0.1 * 0.707 * std::log(40.0) + 1.0);
}

// out == in (rope_forward) and din == dout (rope_backward): the same bits as
// into a separate buffer.
TEST(CpuRope, InPlace) {
  CpuOps ops;
  const int N = 5, H = 3, D = 16;
  IVec pos = {0, 1, 7, 100, 4000};
  for (int which = 0; which < 3; ++which) {
    const RopeParams rope = test_rope(which, D);
    const Vec x = randn(N * H * D, 1), dout = randn(N * H * D, 2);
    Vec out(N * H * D), din(N * H * D);
    ops.rope_forward(out.data(), x.data(), pos.data(), N, H, D, rope);
    ops.rope_backward(din.data(), dout.data(), pos.data(), N, H, D, rope);
    Vec y = x, g = dout;
    ops.rope_forward(y.data(), y.data(), pos.data(), N, H, D, rope);
    ops.rope_backward(g.data(), g.data(), pos.data(), N, H, D, rope);
    EXPECT_TRUE(bitwise_equal(y, out)) << "rope_forward in place" << rope_name(rope);
    EXPECT_TRUE(bitwise_equal(g, din)) << "rope_backward in place" << rope_name(rope);
  }
}

// q and k as column ranges of a fused [N, (H + 2 KVH) D] qkv buffer: q at
// column 0, k at column H*D, in_stride = (H + 2 KVH) D (the v columns follow).
struct CpuQkCase {
  int N, H, KVH, D;
};
constexpr CpuQkCase kCpuQkCases[] = {{3, 4, 2, 8}, {2, 3, 1, 16}, {4, 2, 2, 8}};

// Norm weights near 1 (as trained ones are).
Vec qk_norm_weight(int D, uint32_t seed) {
  Vec w = randn(D, seed, 0.3f);
  for (float& x : w) x += 1.f;
  return w;
}

// q_out = rope(rmsnorm(q) * q_weight), the same for k: the same bits as
// rmsnorm_forward (one row per head) then rope_forward on a dense copy of the
// q (k) columns; the rstds likewise; null rstds change nothing else.
TEST(CpuRope, QkNormRopeForwardEqualsComposition) {
  CpuOps ops;
  const float eps = 1e-6f;
  for (const CpuQkCase& c : kCpuQkCases) {
    const RopeParams rope = c.D == 16 ? rope_params(1e6f, yarn_scaling(4.f, 64), c.D) : plain_rope(1e6f);
    const int N = c.N, H = c.H, KVH = c.KVH, D = c.D;
    const int stride = (H + 2 * KVH) * D, qcols = H * D, kcols = KVH * D;
    const std::string shape = qk_shape(N, {H, KVH}, D);
    const Vec qkv = randn(size_t(N) * stride, 1, 2.f);
    const Vec qw = qk_norm_weight(D, 2), kw = qk_norm_weight(D, 3);
    const IVec pos = random_ints(N, 4, 0, 4000);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    Vec q_out(N * qcols, nan), k_out(N * kcols, nan), q_rstd(N * H, nan), k_rstd(N * KVH, nan);
    ops.qk_norm_rope_forward(q_out.data(), k_out.data(), q_rstd.data(), k_rstd.data(), qkv.data(),
                             qkv.data() + qcols, stride, qw.data(), kw.data(), pos.data(), N, H,
                             KVH, D, eps, rope);
    for (int which = 0; which < 2; ++which) {
      const int heads = which ? KVH : H;
      const Vec x = columns(qkv, N, stride, which ? qcols : 0, heads * D);
      Vec normed(x.size()), want(x.size()), rstd(size_t(N) * heads);
      ops.rmsnorm_forward(normed.data(), rstd.data(), x.data(), (which ? kw : qw).data(),
                          N * heads, D, eps);
      ops.rope_forward(want.data(), normed.data(), pos.data(), N, heads, D, rope);
      EXPECT_TRUE(bitwise_equal(which ? k_out : q_out, want)) << (which ? "k_out " : "q_out ") << shape;
      EXPECT_TRUE(bitwise_equal(which ? k_rstd : q_rstd, rstd)) << (which ? "k_rstd " : "q_rstd ") << shape;
    }
    Vec q_out2(N * qcols, nan), k_out2(N * kcols, nan);
    ops.qk_norm_rope_forward(q_out2.data(), k_out2.data(), nullptr, nullptr, qkv.data(),
                             qkv.data() + qcols, stride, qw.data(), kw.data(), pos.data(), N, H,
                             KVH, D, eps, rope);
    EXPECT_TRUE(bitwise_equal(q_out2, q_out)) << "q_out without rstd " << shape;
    EXPECT_TRUE(bitwise_equal(k_out2, k_out)) << "k_out without rstd " << shape;
  }
}

// dq, dk WRITTEN with row stride in_stride into the fused layout (the v
// columns untouched), against central differences over the whole fused buffer
// of L = sum(dq_out * q_out) + sum(dk_out * k_out); dq_weight, dk_weight
// against central differences too, and ACCUMULATING; null gradients skipped.
TEST(CpuRope, QkNormRopeBackward) {
  CpuOps ops;
  const float eps = 1e-6f;
  for (const CpuQkCase& c : kCpuQkCases) {
    const RopeParams rope = c.D == 16 ? rope_params(1e4f, yarn_scaling(8.f, 32), c.D) : plain_rope(1e4f);
    const int N = c.N, H = c.H, KVH = c.KVH, D = c.D;
    const int stride = (H + 2 * KVH) * D, qcols = H * D, kcols = KVH * D;
    const std::string shape = qk_shape(N, {H, KVH}, D);
    Vec qkv = randn(size_t(N) * stride, 11, 1.5f);
    Vec qw = qk_norm_weight(D, 12), kw = qk_norm_weight(D, 13);
    const IVec pos = random_ints(N, 14, 0, 200);
    const Vec dq_out = randn(size_t(N) * qcols, 15), dk_out = randn(size_t(N) * kcols, 16);
    Vec q_out(N * qcols), k_out(N * kcols), q_rstd(N * H), k_rstd(N * KVH);
    auto L = [&] {
      ops.qk_norm_rope_forward(q_out.data(), k_out.data(), q_rstd.data(), k_rstd.data(),
                               qkv.data(), qkv.data() + qcols, stride, qw.data(), kw.data(),
                               pos.data(), N, H, KVH, D, eps, rope);
      return dot(q_out, dq_out) + dot(k_out, dk_out);
    };
    // dq = dqkv[:, 0:qcols], dk = dqkv[:, qcols:qcols+kcols] (null: skipped)
    auto backward = [&](float* dqkv, float* dq_weight, float* dk_weight) {
      ops.qk_norm_rope_backward(dqkv, dqkv ? dqkv + qcols : nullptr, dq_weight, dk_weight,
                                dq_out.data(), dk_out.data(), qkv.data(), qkv.data() + qcols,
                                stride, qw.data(), kw.data(), q_rstd.data(), k_rstd.data(),
                                pos.data(), N, H, KVH, D, rope);
    };
    L();
    const float kPrefill = 7.f;  // written: gone from the q/k columns, kept in the v columns
    Vec dqkv(size_t(N) * stride, kPrefill), dqw(D), dkw(D);
    backward(dqkv.data(), dqw.data(), dkw.data());
    Vec grad = dqkv;  // the gradient of L over the fused buffer: 0 in the v columns
    for (int n = 0; n < N; ++n)
      for (int j = qcols + kcols; j < stride; ++j) {
        ASSERT_EQ(dqkv[size_t(n) * stride + j], kPrefill) << "v column " << j << " written, " << shape;
        grad[size_t(n) * stride + j] = 0.f;
      }
    expect_grad(("qk_norm_rope dq/dk " + shape).c_str(), qkv, grad, L);
    expect_grad(("qk_norm_rope dq_weight " + shape).c_str(), qw, dqw, L);
    expect_grad(("qk_norm_rope dk_weight " + shape).c_str(), kw, dkw, L);
    L();  // the rstds of the unperturbed inputs again

    Vec dqkv2 = dqkv, dqw2 = dqw, dkw2 = dkw;
    backward(dqkv2.data(), dqw2.data(), dkw2.data());
    expect_written("dq/dk", dqkv, dqkv2);
    expect_doubled("dq_weight", dqw, dqw2);
    expect_doubled("dk_weight", dkw, dkw2);
    Vec dqkv3(size_t(N) * stride, kPrefill);
    backward(dqkv3.data(), nullptr, nullptr);
    EXPECT_TRUE(bitwise_equal(dqkv3, dqkv)) << "dq/dk without weight gradients " << shape;
    Vec dqw3(D), dkw3(D);
    backward(nullptr, dqw3.data(), dkw3.data());
    EXPECT_TRUE(bitwise_equal(dqw3, dqw)) << "dq_weight without dq/dk " << shape;
    EXPECT_TRUE(bitwise_equal(dkw3, dkw)) << "dk_weight without dq/dk " << shape;
  }
}

}  // namespace
}  // namespace polaris
