// CudaOps GELU and SwiGLU (cuda/activation.cu) against the CPU reference:
//   - gelu_forward / gelu_backward for n in {1, 7, 1000, 65537}: separate
//     buffers (16-byte aligned: the 8-wide path plus the scalar tail), buffers
//     offset by one element (the scalar path), and in place (out == in,
//     din == dout); din is WRITTEN (the GPU's is poisoned first);
//   - swiglu_forward / swiglu_backward for N in {1, 5, 33} x F in {3, 96, 1000}
//     (F = 3 takes the scalar path, 96 and 1000 the 8-wide one), plus F = 96
//     on offset buffers (scalar); dgate_up [N, 2F] is WRITTEN.
//
// Inputs are bf16-exact (random_vector), so both backends see the same values
// and a difference is the op's own: the GPU computes in fp32 and rounds each
// bf16 output once; the CPU reference is fp32 with no output rounding.
//
// The last section ("CPU reference") tests CpuOps alone and runs without a
// GPU: against direct formulas, central differences and compositions of
// other ops (tests/cpu_op_checks.h).
#include <cmath>
#include <string>
#include <vector>

#include "tests/cpu_op_checks.h"
#include "tests/ops_compare.h"

namespace polaris {
namespace {

using test::DeviceBuffer;
using test::expect_close;
using test::random_vector;
using Vec = std::vector<float>;

// One rounding to bf16 (8 significant bits, round to nearest): relative error
// < 2^-8 of the value; the atols below bound the fp32 difference between the
// backends (the device's tanhf / expf are within 2 ulps, glibc's within 1).
constexpr double kBf16Rtol = 1.0 / 256;
// GELU forward: 0.5 x (1 + tanh u); a tanh off by ~3 ulps (~2e-7) moves it by
// ~0.5 |x| 2e-7 <= ~1e-6 for |x| <= ~10 (inputs N(0, 2), max ~9): atol 5e-6.
constexpr double kGeluAtol = 5e-6;
// GELU backward: the tanh error enters through (1 - t^2) x (1 + 0.134 x^2),
// at most ~3 per unit of tanh error where t is not exactly +-1 (|x| <~ 5), so
// the derivative is off by <= ~1e-6, times |dout| <= ~5: atol 5e-5 (10x).
constexpr double kGeluGradAtol = 5e-5;
// SwiGLU: products of fp32 values and a sigmoid within ~3 ulps: relative
// ~1e-6 of the output, except where 1 + g (1 - s) cancels (g ~ -1.28): there an
// absolute ~2e-7 |g| times |dout up s| <= ~25: ~1e-5; atol 2e-5.
constexpr double kSwigluAtol = 2e-5;

constexpr size_t kGeluNs[] = {1, 7, 1000, 65537};
constexpr int kSwigluNs[] = {1, 5, 33};
constexpr int kSwigluFs[] = {3, 96, 1000};

std::string n_shape(size_t n, int offset) {
  return "n=" + std::to_string(n) + (offset ? " offset=" + std::to_string(offset) : "");
}

TEST(OpsActivation, GeluMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (size_t n : kGeluNs) {
    const uint32_t seed = uint32_t(n * 31 + 7);
    const Vec x = random_vector(n, seed, 2.f);
    const Vec dout = random_vector(n, seed + 1);

    DeviceBuffer cx(cpu, x, DType::f32), cd(cpu, dout, DType::f32);
    DeviceBuffer cout_(cpu, n, DType::f32), cdin(cpu, n, DType::f32);  // zero: din is written
    cpu.gelu_forward(cout_, cx, n);
    cpu.gelu_backward(cdin, cd, cx, n);
    const Vec want_out = cout_.download(), want_din = cdin.download();

    // offset 0: aligned buffers; offset 1: every pointer 2 bytes past 16-byte
    // alignment, so the scalar path runs.
    for (int offset : {0, 1}) {
      const std::string shape = n_shape(n, offset);
      Vec xo(offset, 0.f), doo(offset, 0.f);
      xo.insert(xo.end(), x.begin(), x.end());
      doo.insert(doo.end(), dout.begin(), dout.end());
      DeviceBuffer gx(*gpu, xo, DType::bf16), gd(*gpu, doo, DType::bf16);
      DeviceBuffer gout(*gpu, n + offset, DType::bf16), gdin(*gpu, n + offset, DType::bf16);
      gout.poison();
      gdin.poison();
      gpu->gelu_forward(gout.buf + offset, gx.buf + offset, n);
      gpu->gelu_backward(gdin.buf + offset, gd.buf + offset, gx.buf + offset, n);
      Vec got_out = gout.download(), got_din = gdin.download();
      got_out.erase(got_out.begin(), got_out.begin() + offset);
      got_din.erase(got_din.begin(), got_din.begin() + offset);
      expect_close("gelu_forward", shape, got_out, want_out, kGeluAtol, kBf16Rtol);
      expect_close("gelu_backward", shape, got_din, want_din, kGeluGradAtol, kBf16Rtol);
    }

    // In place: the backward first (it reads the original x), then the forward.
    DeviceBuffer gx(*gpu, x, DType::bf16), gd(*gpu, dout, DType::bf16);
    gpu->gelu_backward(gd, gd, gx, n);
    gpu->gelu_forward(gx, gx, n);
    expect_close("gelu_forward in place", n_shape(n, 0), gx.download(), want_out, kGeluAtol,
                 kBf16Rtol);
    expect_close("gelu_backward in place", n_shape(n, 0), gd.download(), want_din,
                 kGeluGradAtol, kBf16Rtol);
  }
}

std::string nf_shape(int N, int F, int offset) {
  return "N=" + std::to_string(N) + " F=" + std::to_string(F) +
         (offset ? " offset=" + std::to_string(offset) : "");
}

void check_swiglu(Ops& gpu, CpuOps& cpu, int N, int F, int offset) {
  const std::string shape = nf_shape(N, F, offset);
  const uint32_t seed = uint32_t(N * 1013 + F * 7 + offset);
  const size_t nout = size_t(N) * F, nin = 2 * nout;
  const Vec gate_up = random_vector(nin, seed, 1.5f);
  const Vec dout = random_vector(nout, seed + 1);

  DeviceBuffer cgu(cpu, gate_up, DType::f32), cd(cpu, dout, DType::f32);
  DeviceBuffer cout_(cpu, nout, DType::f32), cdgu(cpu, nin, DType::f32);  // zero: written
  cpu.swiglu_forward(cout_, cgu, N, F);
  cpu.swiglu_backward(cdgu, cd, cgu, N, F);

  Vec gu_o(offset, 0.f), d_o(offset, 0.f);
  gu_o.insert(gu_o.end(), gate_up.begin(), gate_up.end());
  d_o.insert(d_o.end(), dout.begin(), dout.end());
  DeviceBuffer ggu(gpu, gu_o, DType::bf16), gd(gpu, d_o, DType::bf16);
  DeviceBuffer gout(gpu, nout + offset, DType::bf16), gdgu(gpu, nin + offset, DType::bf16);
  gout.poison();
  gdgu.poison();
  gpu.swiglu_forward(gout.buf + offset, ggu.buf + offset, N, F);
  gpu.swiglu_backward(gdgu.buf + offset, gd.buf + offset, ggu.buf + offset, N, F);
  Vec got_out = gout.download(), got_dgu = gdgu.download();
  got_out.erase(got_out.begin(), got_out.begin() + offset);
  got_dgu.erase(got_dgu.begin(), got_dgu.begin() + offset);
  expect_close("swiglu_forward", shape, got_out, cout_.download(), kSwigluAtol, kBf16Rtol);
  expect_close("swiglu_backward", shape, got_dgu, cdgu.download(), kSwigluAtol, kBf16Rtol);
}

TEST(OpsActivation, SwigluMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : kSwigluNs)
    for (int F : kSwigluFs) check_swiglu(*gpu, cpu, N, F, 0);
  check_swiglu(*gpu, cpu, 5, 96, 1);  // F % 8 == 0 but misaligned: the scalar path
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): GELU (tanh approximation) and SwiGLU
// forward against their formulas in double, backward against central
// differences and written (SwiGLU's also in place, dgate_up == gate_up).

using test::bitwise_equal;
using test::dot;
using test::expect_grad;
using test::expect_written;
using test::randn;

TEST(CpuActivation, Gelu) {
  CpuOps ops;
  const size_t n = 64;
  Vec x = randn(n, 1, 2.f), dout = randn(n, 2), out(n);
  ops.gelu_forward(out.data(), x.data(), n);
  for (size_t i = 0; i < n; i++) {
    const double xi = x[i];
    const double e = 0.5 * xi * (1 + std::tanh(std::sqrt(2 / M_PI) * (xi + 0.044715 * xi * xi * xi)));
    ASSERT_NEAR(out[i], e, 1e-5);
  }
  auto L = [&] {
    ops.gelu_forward(out.data(), x.data(), n);
    return dot(out, dout);
  };
  Vec dx(n);
  ops.gelu_backward(dx.data(), dout.data(), x.data(), n);
  expect_grad("gelu din", x, dx, L, 1e-3f);
  Vec dx2 = dx;
  ops.gelu_backward(dx2.data(), dout.data(), x.data(), n);
  expect_written("gelu din", dx, dx2);
}

TEST(CpuActivation, SwiGLU) {
  // gate_up rows [gate (F) | up (F)]; the gradient is written into the same layout.
  CpuOps ops;
  const int N = 4, F = 16;
  const size_t n = size_t(N) * F;
  Vec gu = randn(2 * n, 1, 2.f), dout = randn(n, 3), out(n);
  ops.swiglu_forward(out.data(), gu.data(), N, F);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < F; j++) {
      const double g = gu[i * 2 * F + j], u = gu[i * 2 * F + F + j];
      ASSERT_NEAR(out[i * F + j], g / (1 + std::exp(-g)) * u, 1e-5);
    }
  auto L = [&] {
    ops.swiglu_forward(out.data(), gu.data(), N, F);
    return dot(out, dout);
  };
  Vec dgu(2 * n, 7.f);  // written: the prefill must vanish
  ops.swiglu_backward(dgu.data(), dout.data(), gu.data(), N, F);
  expect_grad("swiglu dgate_up", gu, dgu, L, 1e-3f);
  Vec dgu2(2 * n, -3.f);
  ops.swiglu_backward(dgu2.data(), dout.data(), gu.data(), N, F);
  EXPECT_TRUE(bitwise_equal(dgu, dgu2));
  // in place: dgate_up may alias gate_up
  Vec inplace = gu;
  ops.swiglu_backward(inplace.data(), dout.data(), inplace.data(), N, F);
  EXPECT_TRUE(bitwise_equal(inplace, dgu));
}

}  // namespace
}  // namespace polaris
