// CudaOps LayerNorm (cuda/layernorm.cu) against the CPU reference:
//   - forward: out, mean, rstd for N in {1, 7, 130} x C in {5, 96, 771, 2560}
//     (C = 5 and 771 take the scalar path, 96 and 2560 the 16-byte one), and
//     with no bias and no statistics requested;
//   - backward: din ADDED onto a nonzero din, dweight/dbias ACCUMULATED onto
//     nonzero values, the same statistics on both sides; a second GPU run is
//     bitwise identical (the weight gradients reduce in a fixed order);
//   - fused add + LayerNorm: the residual is bf16(a + b) exactly and the norm
//     is that of the rounded residual, with residual separate, aliasing a and
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

constexpr float kEps = 1e-5f;
constexpr int kNs[] = {1, 7, 130};
constexpr int kCs[] = {5, 96, 771, 2560};

// Output rounded once to bf16: relative error <= 2^-9; rtol 2^-8 leaves a
// factor 2. The absolute part covers the fp32 statistics: the block-tree sums
// err by ~(C/threads + log2 threads) * 2^-24 relative (~2e-6 of |mean| ~ 2
// here), which moves xhat * weight by ~2e-5 at most; atol 1e-4 is 5x that
// and far below a wrong element (O(0.1) or more).
constexpr double kOutAtol = 1e-4, kOutRtol = 1.0 / 256;
// Statistics stay fp32 (no bf16 rounding): the same tree-sum error, ~1e-6
// relative; 1e-5 is 10x that.
constexpr double kStatAtol = 1e-6, kStatRtol = 1e-5;

std::string shape(int N, int C) { return "N=" + std::to_string(N) + " C=" + std::to_string(C); }

// Normal(offset, scale) values, bf16-exact: a nonzero mean exercises the
// two-pass variance.
Vec inputs(size_t n, uint32_t seed, float scale, float offset) {
  Vec v = random_vector(n, seed, scale);
  for (float& x : v) x = round_bf16(x + offset);
  return v;
}

TEST(OpsLayerNorm, ForwardMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : kNs)
    for (int C : kCs) {
      const uint32_t seed = uint32_t(N * 10007 + C);
      const Vec x = inputs(size_t(N) * C, seed, 1.f, 2.f);
      const Vec w = random_vector(C, seed + 1);
      const Vec b = random_vector(C, seed + 2, 0.5f);

      DeviceBuffer cx(cpu, x, DType::f32), cw(cpu, w, DType::f32), cb(cpu, b, DType::f32);
      DeviceBuffer cout_(cpu, size_t(N) * C, DType::f32), cmean(cpu, N, DType::f32),
          crstd(cpu, N, DType::f32);
      cpu.layernorm_forward(cout_, cmean.f32(), crstd.f32(), cx, cw, cb, N, C, kEps);

      DeviceBuffer gx(*gpu, x, DType::bf16), gw(*gpu, w, DType::bf16), gb(*gpu, b, DType::bf16);
      DeviceBuffer gout(*gpu, size_t(N) * C, DType::bf16), gmean(*gpu, N, DType::f32),
          grstd(*gpu, N, DType::f32);
      gout.poison();
      gmean.poison();
      grstd.poison();
      gpu->layernorm_forward(gout, gmean.f32(), grstd.f32(), gx, gw, gb, N, C, kEps);

      expect_close("layernorm_forward out", shape(N, C), gout.download(), cout_.download(),
                   kOutAtol, kOutRtol);
      expect_close("layernorm_forward mean", shape(N, C), gmean.download(), cmean.download(),
                   kStatAtol, kStatRtol);
      expect_close("layernorm_forward rstd", shape(N, C), grstd.download(), crstd.download(),
                   kStatAtol, kStatRtol);
    }
}

// No bias, no statistics: out = xhat * weight, and the null outputs are skipped.
TEST(OpsLayerNorm, ForwardWithoutBiasOrStats) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int C : {5, 96, 771}) {
    const int N = 7;
    const Vec x = inputs(size_t(N) * C, 31u + C, 2.f, -1.f);
    const Vec w = random_vector(C, 32u + C);
    DeviceBuffer cx(cpu, x, DType::f32), cw(cpu, w, DType::f32);
    DeviceBuffer cout_(cpu, size_t(N) * C, DType::f32);
    cpu.layernorm_forward(cout_, nullptr, nullptr, cx, cw, nullptr, N, C, kEps);

    DeviceBuffer gx(*gpu, x, DType::bf16), gw(*gpu, w, DType::bf16);
    DeviceBuffer gout(*gpu, size_t(N) * C, DType::bf16);
    gout.poison();
    gpu->layernorm_forward(gout, nullptr, nullptr, gx, gw, nullptr, N, C, kEps);
    expect_close("layernorm_forward out (no bias)", shape(N, C), gout.download(),
                 cout_.download(), kOutAtol, kOutRtol);
  }
}

TEST(OpsLayerNorm, BackwardMatchesCpuAccumulatesAndIsDeterministic) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : kNs)
    for (int C : kCs) {
      const uint32_t seed = uint32_t(N * 7919 + C);
      const Vec x = inputs(size_t(N) * C, seed, 1.f, 2.f);
      const Vec w = random_vector(C, seed + 1);
      const Vec dout = random_vector(size_t(N) * C, seed + 2);
      const Vec din0 = random_vector(size_t(N) * C, seed + 3);  // din is ADDED to
      const Vec dw0 = random_vector(C, seed + 4, 1.f, false);   // fp32 gradients
      const Vec db0 = random_vector(C, seed + 5, 1.f, false);

      // The statistics both sides use: the CPU forward's.
      DeviceBuffer cx(cpu, x, DType::f32), cw(cpu, w, DType::f32);
      DeviceBuffer cfwd(cpu, size_t(N) * C, DType::f32), cmean(cpu, N, DType::f32),
          crstd(cpu, N, DType::f32);
      cpu.layernorm_forward(cfwd, cmean.f32(), crstd.f32(), cx, cw, nullptr, N, C, kEps);
      const Vec mean = cmean.download(), rstd = crstd.download();

      DeviceBuffer cdout(cpu, dout, DType::f32), cdin(cpu, din0, DType::f32),
          cdw(cpu, dw0, DType::f32), cdb(cpu, db0, DType::f32);
      cpu.layernorm_backward(cdin, cdw.f32(), cdb.f32(), cdout, cx, cw, cmean.f32(), crstd.f32(),
                             N, C);

      DeviceBuffer gx(*gpu, x, DType::bf16), gw(*gpu, w, DType::bf16),
          gdout(*gpu, dout, DType::bf16), gmean(*gpu, mean, DType::f32),
          grstd(*gpu, rstd, DType::f32);
      Vec got_din[2], got_dw[2], got_db[2];
      for (int run = 0; run < 2; ++run) {
        DeviceBuffer gdin(*gpu, din0, DType::bf16), gdw(*gpu, dw0, DType::f32),
            gdb(*gpu, db0, DType::f32);
        gpu->layernorm_backward(gdin, gdw.f32(), gdb.f32(), gdout, gx, gw, gmean.f32(),
                                grstd.f32(), N, C);
        got_din[run] = gdin.download();
        got_dw[run] = gdw.download();
        got_db[run] = gdb.download();
      }

      // din = bf16(din0 + delta): one rounding of the sum (rtol 2^-8, a factor
      // 2 over 2^-9); delta's fp32 row means (mean(g), mean(g * xhat)) err by
      // ~1e-6 relative, times rstd ~1 and |xhat| <= ~4: atol 1e-4 is >10x that.
      expect_close("layernorm_backward din", shape(N, C), got_din[0], cdin.download(), 1e-4,
                   1.0 / 256);
      // dweight, dbias: fp32 sums over N rows of terms of size ~1 (dout * xhat,
      // dout: bf16-exact inputs, no bf16 rounding of the result), in different
      // orders (row chunks on the GPU, FMA contraction). The rounding error of
      // such a sum is at worst ~N^1.5 * 2^-24 (~1e-4 at N = 130); atol
      // 1e-4 * sqrt(N) covers it (and the typical ~N * 2^-24), while a missing
      // or doubled row is off by O(1). rtol 1e-5 covers the final add onto the
      // prefilled value.
      const double param_atol = 1e-4 * std::sqrt(double(N));
      expect_close("layernorm_backward dweight", shape(N, C), got_dw[0], cdw.download(),
                   param_atol, 1e-5);
      expect_close("layernorm_backward dbias", shape(N, C), got_db[0], cdb.download(),
                   param_atol, 1e-5);

      EXPECT_TRUE(bitwise_equal(got_din[0], got_din[1])) << "din not deterministic " << shape(N, C);
      EXPECT_TRUE(bitwise_equal(got_dw[0], got_dw[1])) << "dweight not deterministic " << shape(N, C);
      EXPECT_TRUE(bitwise_equal(got_db[0], got_db[1])) << "dbias not deterministic " << shape(N, C);
    }
}

// Null gradients are skipped: din only, then dweight only.
TEST(OpsLayerNorm, BackwardSkipsNullGradients) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  const int N = 130, C = 96;
  const Vec x = inputs(size_t(N) * C, 71, 1.f, 0.5f);
  const Vec w = random_vector(C, 72);
  const Vec dout = random_vector(size_t(N) * C, 73);
  const Vec din0 = random_vector(size_t(N) * C, 74);
  const Vec dw0 = random_vector(C, 75, 1.f, false);

  DeviceBuffer cx(cpu, x, DType::f32), cw(cpu, w, DType::f32);
  DeviceBuffer cfwd(cpu, size_t(N) * C, DType::f32), cmean(cpu, N, DType::f32),
      crstd(cpu, N, DType::f32);
  cpu.layernorm_forward(cfwd, cmean.f32(), crstd.f32(), cx, cw, nullptr, N, C, kEps);
  DeviceBuffer cdout(cpu, dout, DType::f32), cdin(cpu, din0, DType::f32),
      cdw(cpu, dw0, DType::f32);
  cpu.layernorm_backward(cdin, nullptr, nullptr, cdout, cx, cw, cmean.f32(), crstd.f32(), N, C);
  cpu.layernorm_backward(nullptr, cdw.f32(), nullptr, cdout, cx, cw, cmean.f32(), crstd.f32(),
                         N, C);

  DeviceBuffer gx(*gpu, x, DType::bf16), gw(*gpu, w, DType::bf16),
      gdout(*gpu, dout, DType::bf16), gmean(*gpu, cmean.download(), DType::f32),
      grstd(*gpu, crstd.download(), DType::f32), gdin(*gpu, din0, DType::bf16),
      gdw(*gpu, dw0, DType::f32);
  gpu->layernorm_backward(gdin, nullptr, nullptr, gdout, gx, gw, gmean.f32(), grstd.f32(), N, C);
  gpu->layernorm_backward(nullptr, gdw.f32(), nullptr, gdout, gx, gw, gmean.f32(), grstd.f32(),
                          N, C);
  // Tolerances as in BackwardMatchesCpuAccumulatesAndIsDeterministic.
  expect_close("layernorm_backward din (only)", shape(N, C), gdin.download(), cdin.download(),
               1e-4, 1.0 / 256);
  expect_close("layernorm_backward dweight (only)", shape(N, C), gdw.download(), cdw.download(),
               1e-4 * std::sqrt(double(N)), 1e-5);
}

TEST(OpsLayerNorm, FusedAddMatchesRoundedResidualThenNorm) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  enum Alias { kNone, kA, kB };
  for (Alias alias : {kNone, kA, kB})
    for (int N : kNs)
      for (int C : kCs) {
        const std::string where =
            shape(N, C) + (alias == kA ? " residual=a" : alias == kB ? " residual=b" : "");
        const uint32_t seed = uint32_t(N * 104729 + C + 17 * alias);
        const Vec a = inputs(size_t(N) * C, seed, 1.f, 1.f);
        const Vec b = random_vector(size_t(N) * C, seed + 1, 0.5f);
        const Vec w = random_vector(C, seed + 2);
        const Vec bias = random_vector(C, seed + 3, 0.5f);

        // The reference: the residual the GPU stores (a + b in fp32, rounded
        // once to bf16, as round_bf16 does), normalised by the CPU.
        Vec residual(a.size());
        for (size_t i = 0; i < a.size(); ++i) residual[i] = round_bf16(a[i] + b[i]);
        DeviceBuffer cres(cpu, residual, DType::f32), cw(cpu, w, DType::f32),
            cbias(cpu, bias, DType::f32);
        DeviceBuffer cout_(cpu, size_t(N) * C, DType::f32), cmean(cpu, N, DType::f32),
            crstd(cpu, N, DType::f32);
        cpu.layernorm_forward(cout_, cmean.f32(), crstd.f32(), cres, cw, cbias, N, C, kEps);

        DeviceBuffer ga(*gpu, a, DType::bf16), gb(*gpu, b, DType::bf16),
            gw(*gpu, w, DType::bf16), gbias(*gpu, bias, DType::bf16);
        DeviceBuffer gres(*gpu, size_t(N) * C, DType::bf16);
        DeviceBuffer gout(*gpu, size_t(N) * C, DType::bf16), gmean(*gpu, N, DType::f32),
            grstd(*gpu, N, DType::f32);
        gres.poison();
        gout.poison();
        gmean.poison();
        grstd.poison();
        DeviceBuffer& res_buf = alias == kA ? ga : alias == kB ? gb : gres;
        gpu->add_layernorm_forward(res_buf, gout, gmean.f32(), grstd.f32(), ga, gb, gw, gbias,
                                   N, C, kEps);

        // The residual is exact: the same fp32 sum rounded the same way.
        expect_close("add_layernorm_forward residual", where, res_buf.download(), residual, 0,
                     0);
        expect_close("add_layernorm_forward out", where, gout.download(), cout_.download(),
                     kOutAtol, kOutRtol);
        expect_close("add_layernorm_forward mean", where, gmean.download(), cmean.download(),
                     kStatAtol, kStatRtol);
        expect_close("add_layernorm_forward rstd", where, grstd.download(), crstd.download(),
                     kStatAtol, kStatRtol);
      }
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): forward against the formula in double;
// backward against central differences, din/dweight/dbias accumulating, null
// gradients skipped; the fused add + LayerNorm default (Ops, in
// model/ops/ops_defaults.cpp) equal to add then layernorm_forward with the
// residual separate or aliasing a or b; bits independent of the thread count.

using test::dot;
using test::expect_doubled;
using test::expect_grad;
using test::expect_same_bits_across_threads;
using test::randn;

TEST(CpuLayerNorm, ForwardMatchesFormula) {
  CpuOps ops;
  const int N = 4, C = 37;
  Vec x = randn(N * C, 1, 3.f), w = randn(C, 2), b = randn(C, 3), out(N * C), mean(N), rstd(N);
  for (auto& v : x) v += 2.f;
  ops.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
  for (int i = 0; i < N; i++) {
    double m = 0, var = 0;
    for (int c = 0; c < C; c++) m += x[i * C + c];
    m /= C;
    for (int c = 0; c < C; c++) var += (x[i * C + c] - m) * (x[i * C + c] - m);
    var /= C;
    const double r = 1 / std::sqrt(var + 1e-5);
    EXPECT_NEAR(mean[i], m, 1e-5);
    EXPECT_NEAR(rstd[i], r, 1e-5 * r);
    for (int c = 0; c < C; c++)
      EXPECT_NEAR(out[i * C + c], (x[i * C + c] - m) * r * w[c] + b[c], 1e-5);
  }
}

TEST(CpuLayerNorm, Backward) {
  CpuOps ops;
  const int N = 5, C = 12;
  Vec x = randn(N * C, 1), w = randn(C, 2), b = randn(C, 3), dout = randn(N * C, 4);
  Vec out(N * C), mean(N), rstd(N);
  auto L = [&] {
    ops.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
    return dot(out, dout);
  };
  L();
  Vec dx(N * C), dw(C), db(C);
  ops.layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  expect_grad("layernorm din", x, dx, L, 1e-2f);
  expect_grad("layernorm dweight", w, dw, L);
  expect_grad("layernorm dbias", b, db, L);
  L();
  Vec dx2 = dx, dw2 = dw, db2 = db;
  ops.layernorm_backward(dx2.data(), dw2.data(), db2.data(), dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  expect_doubled("din", dx, dx2);
  expect_doubled("dweight", dw, dw2);
  expect_doubled("dbias", db, db2);
  Vec dw3(C);
  ops.layernorm_backward(nullptr, dw3.data(), nullptr, dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  EXPECT_TRUE(bitwise_equal(dw3, dw));
}

// add_layernorm_forward (the Ops default): residual = a + b, then
// layernorm_forward of the residual: the same bits as the two calls, whether
// residual is its own buffer or aliases a or b.
TEST(CpuLayerNorm, FusedAddEqualsComposition) {
  CpuOps ops;
  const int N = 5, C = 37;
  const float eps = 1e-5f;
  const Vec a = randn(N * C, 1, 2.f), b = randn(N * C, 2, 0.5f), w = randn(C, 3),
            bias = randn(C, 4);
  Vec residual(N * C), out(N * C), mean(N), rstd(N);
  ops.add(residual.data(), a.data(), b.data(), size_t(N) * C);
  ops.layernorm_forward(out.data(), mean.data(), rstd.data(), residual.data(), w.data(),
                        bias.data(), N, C, eps);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const char* alias : {"separate", "a", "b"}) {
    Vec fa = a, fb = b, fres(N * C, nan), fout(N * C, nan), fmean(N, nan), frstd(N, nan);
    Vec& res = alias[0] == 'a' ? fa : alias[0] == 'b' ? fb : fres;
    ops.add_layernorm_forward(res.data(), fout.data(), fmean.data(), frstd.data(), fa.data(),
                              fb.data(), w.data(), bias.data(), N, C, eps);
    EXPECT_TRUE(bitwise_equal(res, residual)) << "residual, residual = " << alias;
    EXPECT_TRUE(bitwise_equal(fout, out)) << "out, residual = " << alias;
    EXPECT_TRUE(bitwise_equal(fmean, mean)) << "mean, residual = " << alias;
    EXPECT_TRUE(bitwise_equal(frstd, rstd)) << "rstd, residual = " << alias;
  }
}

TEST(CpuLayerNorm, DeterministicAcrossThreadCounts) {
  CpuOps ops;
  const int N = 100, C = 150;
  Vec x = randn(N * C, 1), w = randn(C, 2), b = randn(C, 3), dout = randn(N * C, 4);
  expect_same_bits_across_threads("layernorm", [&] {
    Vec out(N * C), mean(N), rstd(N), dx(N * C), dw(C), db(C);
    ops.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
    ops.layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
    Vec all = out;
    for (const Vec* v : {&mean, &rstd, &dx, &dw, &db}) all.insert(all.end(), v->begin(), v->end());
    return all;
  });
}

}  // namespace
}  // namespace polaris
