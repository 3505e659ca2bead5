// CudaOps RMSNorm (cuda/rmsnorm.cu) against the CPU reference:
//   - forward: out and rstd for N in {1, 7, 130} x C in {5, 96, 771, 2560}
//     (C = 5 and 771 take the scalar path, 96 and 2560 the 16-byte one), and
//     with no rstd requested;
//   - backward: din ADDED onto a nonzero din, dweight ACCUMULATED onto nonzero
//     values, the same rstd on both sides; a second GPU run is bitwise
//     identical (dweight reduces in a fixed order);
//   - fused add + RMSNorm: the residual is bf16(a + b) exactly and the norm is
//     that of the rounded residual, with residual separate, aliasing a and
//     aliasing b.
//
// Inputs are bf16-exact (random_vector), so both backends see the same values
// and a difference is the op's own: the GPU computes in fp32 and rounds each
// bf16 output once (relative error <= 2^-9); the CPU reference is fp32 with
// double row sums and no output rounding.
//
// The last section ("CPU reference") tests CpuOps alone and runs without a
// GPU: against direct formulas, central differences and compositions of
// other ops (tests/cpu_op_checks.h).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "tests/cpu_op_checks.h"
#include "tests/ops_compare.h"

namespace polaris {
namespace {

using test::bitwise_equal;
using test::DeviceBuffer;
using test::expect_close;
using test::random_vector;
using test::round_bf16;
using Vec = std::vector<float>;

constexpr float kEps = 1e-6f;
constexpr int kNs[] = {1, 7, 130};
constexpr int kCs[] = {5, 96, 771, 2560};

// Output rounded once to bf16: relative error <= 2^-9; rtol 2^-8 leaves a
// factor 2. The absolute part covers the fp32 sum of squares: the block-tree
// sum errs by ~(C/threads + log2 threads) * 2^-24 relative (~1e-6), which
// moves x * rstd * weight by ~1e-5 at most here; atol 1e-4 is 10x that and
// far below a wrong element.
constexpr double kOutAtol = 1e-4, kOutRtol = 1.0 / 256;
// rstd stays fp32 (no bf16 rounding): ~1e-6 relative from the sum; 1e-5 is 10x.
constexpr double kStatAtol = 1e-6, kStatRtol = 1e-5;

std::string shape(int N, int C) { return "N=" + std::to_string(N) + " C=" + std::to_string(C); }

// Normal(offset, scale) values, bf16-exact.
Vec inputs(size_t n, uint32_t seed, float scale, float offset) {
  Vec v = random_vector(n, seed, scale);
  for (float& x : v) x = round_bf16(x + offset);
  return v;
}

TEST(OpsRmsNorm, ForwardMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : kNs)
    for (int C : kCs) {
      const uint32_t seed = uint32_t(N * 10007 + C);
      const Vec x = inputs(size_t(N) * C, seed, 1.f, 0.5f);
      const Vec w = random_vector(C, seed + 1);

      DeviceBuffer cx(cpu, x, DType::f32), cw(cpu, w, DType::f32);
      DeviceBuffer cout_(cpu, size_t(N) * C, DType::f32), crstd(cpu, N, DType::f32);
      cpu.rmsnorm_forward(cout_, crstd.f32(), cx, cw, N, C, kEps);

      DeviceBuffer gx(*gpu, x, DType::bf16), gw(*gpu, w, DType::bf16);
      DeviceBuffer gout(*gpu, size_t(N) * C, DType::bf16), grstd(*gpu, N, DType::f32);
      gout.poison();
      grstd.poison();
      gpu->rmsnorm_forward(gout, grstd.f32(), gx, gw, N, C, kEps);

      expect_close("rmsnorm_forward out", shape(N, C), gout.download(), cout_.download(),
                   kOutAtol, kOutRtol);
      expect_close("rmsnorm_forward rstd", shape(N, C), grstd.download(), crstd.download(),
                   kStatAtol, kStatRtol);
    }
}

// No rstd requested: only out is written.
TEST(OpsRmsNorm, ForwardWithoutRstd) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int C : {5, 96, 771}) {
    const int N = 7;
    const Vec x = inputs(size_t(N) * C, 41u + C, 3.f, 0.f);
    const Vec w = random_vector(C, 42u + C);
    DeviceBuffer cx(cpu, x, DType::f32), cw(cpu, w, DType::f32);
    DeviceBuffer cout_(cpu, size_t(N) * C, DType::f32);
    cpu.rmsnorm_forward(cout_, nullptr, cx, cw, N, C, kEps);

    DeviceBuffer gx(*gpu, x, DType::bf16), gw(*gpu, w, DType::bf16);
    DeviceBuffer gout(*gpu, size_t(N) * C, DType::bf16);
    gout.poison();
    gpu->rmsnorm_forward(gout, nullptr, gx, gw, N, C, kEps);
    expect_close("rmsnorm_forward out (no rstd)", shape(N, C), gout.download(),
                 cout_.download(), kOutAtol, kOutRtol);
  }
}

TEST(OpsRmsNorm, BackwardMatchesCpuAccumulatesAndIsDeterministic) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : kNs)
    for (int C : kCs) {
      const uint32_t seed = uint32_t(N * 7919 + C);
      const Vec x = inputs(size_t(N) * C, seed, 1.f, 0.5f);
      const Vec w = random_vector(C, seed + 1);
      const Vec dout = random_vector(size_t(N) * C, seed + 2);
      const Vec din0 = random_vector(size_t(N) * C, seed + 3);  // din is ADDED to
      const Vec dw0 = random_vector(C, seed + 4, 1.f, false);   // fp32 gradient

      // The rstd both sides use: the CPU forward's.
      DeviceBuffer cx(cpu, x, DType::f32), cw(cpu, w, DType::f32);
      DeviceBuffer cfwd(cpu, size_t(N) * C, DType::f32), crstd(cpu, N, DType::f32);
      cpu.rmsnorm_forward(cfwd, crstd.f32(), cx, cw, N, C, kEps);
      const Vec rstd = crstd.download();

      DeviceBuffer cdout(cpu, dout, DType::f32), cdin(cpu, din0, DType::f32),
          cdw(cpu, dw0, DType::f32);
      cpu.rmsnorm_backward(cdin, cdw.f32(), cdout, cx, cw, crstd.f32(), N, C);

      DeviceBuffer gx(*gpu, x, DType::bf16), gw(*gpu, w, DType::bf16),
          gdout(*gpu, dout, DType::bf16), grstd(*gpu, rstd, DType::f32);
      Vec got_din[2], got_dw[2];
      for (int run = 0; run < 2; ++run) {
        DeviceBuffer gdin(*gpu, din0, DType::bf16), gdw(*gpu, dw0, DType::f32);
        gpu->rmsnorm_backward(gdin, gdw.f32(), gdout, gx, gw, grstd.f32(), N, C);
        got_din[run] = gdin.download();
        got_dw[run] = gdw.download();
      }

      // din = bf16(din0 + delta): one rounding of the sum (rtol 2^-8, a factor
      // 2 over 2^-9); delta's fp32 row mean(g * x) errs by ~1e-6 relative,
      // times rstd^2 |x| ~ a few: atol 1e-4 is >10x that.
      expect_close("rmsnorm_backward din", shape(N, C), got_din[0], cdin.download(), 1e-4,
                   1.0 / 256);
      // dweight: an fp32 sum over N rows of terms of size ~1 (dout * x * rstd),
      // in different orders (row chunks on the GPU, FMA contraction). Its
      // rounding error is at worst ~N^1.5 * 2^-24 (~1e-4 at N = 130); atol
      // 1e-4 * sqrt(N) covers it, while a missing or doubled row is off by
      // O(1). rtol 1e-5 covers the final add onto the prefilled value.
      expect_close("rmsnorm_backward dweight", shape(N, C), got_dw[0], cdw.download(),
                   1e-4 * std::sqrt(double(N)), 1e-5);

      EXPECT_TRUE(bitwise_equal(got_din[0], got_din[1])) << "din not deterministic " << shape(N, C);
      EXPECT_TRUE(bitwise_equal(got_dw[0], got_dw[1])) << "dweight not deterministic " << shape(N, C);
    }
}

// Null gradients are skipped: din only, then dweight only.
TEST(OpsRmsNorm, BackwardSkipsNullGradients) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  const int N = 130, C = 771;
  const Vec x = inputs(size_t(N) * C, 81, 1.f, 0.f);
  const Vec w = random_vector(C, 82);
  const Vec dout = random_vector(size_t(N) * C, 83);
  const Vec din0 = random_vector(size_t(N) * C, 84);
  const Vec dw0 = random_vector(C, 85, 1.f, false);

  DeviceBuffer cx(cpu, x, DType::f32), cw(cpu, w, DType::f32);
  DeviceBuffer cfwd(cpu, size_t(N) * C, DType::f32), crstd(cpu, N, DType::f32);
  cpu.rmsnorm_forward(cfwd, crstd.f32(), cx, cw, N, C, kEps);
  DeviceBuffer cdout(cpu, dout, DType::f32), cdin(cpu, din0, DType::f32),
      cdw(cpu, dw0, DType::f32);
  cpu.rmsnorm_backward(cdin, nullptr, cdout, cx, cw, crstd.f32(), N, C);
  cpu.rmsnorm_backward(nullptr, cdw.f32(), cdout, cx, cw, crstd.f32(), N, C);

  DeviceBuffer gx(*gpu, x, DType::bf16), gw(*gpu, w, DType::bf16),
      gdout(*gpu, dout, DType::bf16), grstd(*gpu, crstd.download(), DType::f32),
      gdin(*gpu, din0, DType::bf16), gdw(*gpu, dw0, DType::f32);
  gpu->rmsnorm_backward(gdin, nullptr, gdout, gx, gw, grstd.f32(), N, C);
  gpu->rmsnorm_backward(nullptr, gdw.f32(), gdout, gx, gw, grstd.f32(), N, C);
  // Tolerances as in BackwardMatchesCpuAccumulatesAndIsDeterministic.
  expect_close("rmsnorm_backward din (only)", shape(N, C), gdin.download(), cdin.download(),
               1e-4, 1.0 / 256);
  expect_close("rmsnorm_backward dweight (only)", shape(N, C), gdw.download(), cdw.download(),
               1e-4 * std::sqrt(double(N)), 1e-5);
}

TEST(OpsRmsNorm, FusedAddMatchesRoundedResidualThenNorm) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  enum Alias { kNone, kA, kB };
  for (Alias alias : {kNone, kA, kB})
    for (int N : kNs)
      for (int C : kCs) {
        const std::string where =
            shape(N, C) + (alias == kA ? " residual=a" : alias == kB ? " residual=b" : "");
        const uint32_t seed = uint32_t(N * 104729 + C + 17 * alias);
        const Vec a = inputs(size_t(N) * C, seed, 1.f, 0.25f);
        const Vec b = random_vector(size_t(N) * C, seed + 1, 0.5f);
        const Vec w = random_vector(C, seed + 2);

        // The reference: the residual the GPU stores (a + b in fp32, rounded
        // once to bf16, as round_bf16 does), normalised by the CPU.
        Vec residual(a.size());
        for (size_t i = 0; i < a.size(); ++i) residual[i] = round_bf16(a[i] + b[i]);
        DeviceBuffer cres(cpu, residual, DType::f32), cw(cpu, w, DType::f32);
        DeviceBuffer cout_(cpu, size_t(N) * C, DType::f32), crstd(cpu, N, DType::f32);
        cpu.rmsnorm_forward(cout_, crstd.f32(), cres, cw, N, C, kEps);

        DeviceBuffer ga(*gpu, a, DType::bf16), gb(*gpu, b, DType::bf16),
            gw(*gpu, w, DType::bf16);
        DeviceBuffer gres(*gpu, size_t(N) * C, DType::bf16);
        DeviceBuffer gout(*gpu, size_t(N) * C, DType::bf16), grstd(*gpu, N, DType::f32);
        gres.poison();
        gout.poison();
        grstd.poison();
        DeviceBuffer& res_buf = alias == kA ? ga : alias == kB ? gb : gres;
        gpu->add_rmsnorm_forward(res_buf, gout, grstd.f32(), ga, gb, gw, N, C, kEps);

        // The residual is exact: the same fp32 sum rounded the same way.
        expect_close("add_rmsnorm_forward residual", where, res_buf.download(), residual, 0, 0);
        expect_close("add_rmsnorm_forward out", where, gout.download(), cout_.download(),
                     kOutAtol, kOutRtol);
        expect_close("add_rmsnorm_forward rstd", where, grstd.download(), crstd.download(),
                     kStatAtol, kStatRtol);
      }
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): forward against the formula in double,
// backward against central differences, din/dweight accumulating, a null
// dweight skipped; the fused add + RMSNorm default (Ops, in
// model/ops/ops_defaults.cpp) equal to add then rmsnorm_forward with the
// residual separate or aliasing a or b; bits independent of the thread count.

using test::dot;
using test::expect_doubled;
using test::expect_grad;
using test::expect_same_bits_across_threads;
using test::randn;

TEST(CpuRmsNorm, ForwardBackward) {
  CpuOps ops;
  const int N = 6, C = 16;
  Vec x = randn(N * C, 1), w = randn(C, 2), dout = randn(N * C, 4), out(N * C), rstd(N);
  auto L = [&] {
    ops.rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
    return dot(out, dout);
  };
  L();
  for (int i = 0; i < N; i++) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += (double)x[i * C + c] * x[i * C + c];
    const double r = 1 / std::sqrt(ss / C + 1e-6);
    EXPECT_NEAR(rstd[i], r, 1e-6 * r);
    for (int c = 0; c < C; c++) EXPECT_NEAR(out[i * C + c], x[i * C + c] * r * w[c], 1e-5);
  }
  Vec dx(N * C), dw(C);
  ops.rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
  expect_grad("rmsnorm din", x, dx, L);
  expect_grad("rmsnorm dweight", w, dw, L);
  L();
  Vec dx2 = dx, dw2 = dw;
  ops.rmsnorm_backward(dx2.data(), dw2.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
  expect_doubled("din", dx, dx2);
  expect_doubled("dweight", dw, dw2);
  Vec dx3(N * C);
  ops.rmsnorm_backward(dx3.data(), nullptr, dout.data(), x.data(), w.data(), rstd.data(), N, C);
  EXPECT_TRUE(bitwise_equal(dx3, dx));
}

// add_rmsnorm_forward (the Ops default): residual = a + b, then
// rmsnorm_forward of the residual: the same bits as the two calls, whether
// residual is its own buffer or aliases a or b.
TEST(CpuRmsNorm, FusedAddEqualsComposition) {
  CpuOps ops;
  const int N = 6, C = 37;
  const float eps = 1e-6f;
  const Vec a = randn(N * C, 1, 2.f), b = randn(N * C, 2, 0.5f), w = randn(C, 3);
  Vec residual(N * C), out(N * C), rstd(N);
  ops.add(residual.data(), a.data(), b.data(), size_t(N) * C);
  ops.rmsnorm_forward(out.data(), rstd.data(), residual.data(), w.data(), N, C, eps);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const char* alias : {"separate", "a", "b"}) {
    Vec fa = a, fb = b, fres(N * C, nan), fout(N * C, nan), frstd(N, nan);
    Vec& res = alias[0] == 'a' ? fa : alias[0] == 'b' ? fb : fres;
    ops.add_rmsnorm_forward(res.data(), fout.data(), frstd.data(), fa.data(), fb.data(),
                            w.data(), N, C, eps);
    EXPECT_TRUE(bitwise_equal(res, residual)) << "residual, residual = " << alias;
    EXPECT_TRUE(bitwise_equal(fout, out)) << "out, residual = " << alias;
    EXPECT_TRUE(bitwise_equal(frstd, rstd)) << "rstd, residual = " << alias;
  }
}

TEST(CpuRmsNorm, DeterministicAcrossThreadCounts) {
  CpuOps ops;
  const int N = 100, C = 150;
  Vec x = randn(N * C, 1), w = randn(C, 2), dout = randn(N * C, 4);
  expect_same_bits_across_threads("rmsnorm", [&] {
    Vec out(N * C), rstd(N), dx(N * C), dw(C);
    ops.rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
    ops.rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
    Vec all = out;
    for (const Vec* v : {&rstd, &dx, &dw}) all.insert(all.end(), v->begin(), v->end());
    return all;
  });
}

}  // namespace
}  // namespace polaris
