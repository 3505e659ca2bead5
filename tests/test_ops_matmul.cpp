// CudaOps' linear layers (cuda/matmul.cu) against the CPU reference:
// matmul_forward, matmul_gelu_forward, matmul_backward, matmul_backward_gelu,
// on shapes that are and are not multiples of any tile (N = 1, 7, 129;
// IC = 33; OC = 65, 771), with and without bias, plus pointers that are not
// 16-byte aligned, null gradient outputs, and bitwise determinism of the
// backward.
//
// Tolerances. Inputs are bf16-exact and identical on both sides, and a
// product of two bf16 values is exact in fp32; both sides accumulate in fp32,
// in different orders (cuBLASLt's tensor-core tiles vs the CPU's SIMD lanes),
// which moves a sum of K terms by about sqrt(K) * 2^-24 of its typical size:
// negligible here. What remains:
//   - bf16 outputs (out, pre, din) are rounded once to bf16 on the GPU:
//     relative error <= 2^-9, so rtol = 2^-8 (a factor 2 of margin). Outputs
//     near zero (cancellation) get an absolute floor of 1e-3 of the typical
//     output magnitude (the rms of the expected values, ~ sqrt(K) * s_a * s_b
//     for K products of scale s_a * s_b): far above the fp32 reordering error,
//     far below the O(1)-of-typical error of any indexing or transposition bug.
//   - fp32 outputs (dweight, dbias) have no bf16 rounding at all; the
//     tensor cores' fp32 accumulation may truncate rather than round, so
//     rtol = 1e-3, atol = 1e-3 of typical, still far below a real bug.
//   - GELU outputs (out of matmul_gelu_forward, dpre): one bf16 rounding of
//     the result, plus (unfused path, OC or IC not a multiple of 8) a second
//     rounding of pre or of dout @ W before the GELU, amplified by at most
//     |x gelu'(x) / gelu(x)| ~ 1.3 for x > 0; and cuBLASLt's epilogue may use
//     the hardware tanh approximation (relative error ~ 2^-11), whose error in
//     gelu'(x) = ... (1 - tanh^2) ... is amplified up to ~7x for |x| <= 4.
//     So rtol = 2^-6 and atol = 1e-2 of typical: still ~100x below a bug.
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
using Vec = std::vector<float>;

struct Shape {
  int N, IC, OC;
};
const Shape kShapes[] = {{1, 8, 8}, {7, 33, 65}, {64, 64, 64}, {129, 96, 771}, {256, 768, 2304}};

constexpr double kBf16Rtol = 1.0 / 256;    // 2^-8: one bf16 rounding, margin 2
constexpr double kBf16Atol = 1e-3;         // x typical magnitude
constexpr double kF32Rtol = 1e-3;          // fp32 outputs
constexpr double kF32Atol = 1e-3;          // x typical magnitude
constexpr double kGeluRtol = 1.0 / 64;     // 2^-6: see the note at the top
constexpr double kGeluAtol = 1e-2;         // x typical magnitude

std::string shape_name(const Shape& s, bool bias) {
  return "N=" + std::to_string(s.N) + " IC=" + std::to_string(s.IC) +
         " OC=" + std::to_string(s.OC) + (bias ? " bias" : " no-bias");
}

// The typical magnitude of a result: its rms (1 for an all-zero vector).
double typical(const Vec& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  const double r = v.empty() ? 0 : std::sqrt(s / double(v.size()));
  return r > 0 ? r : 1;
}

// Host inputs of one case; weights ~ N(0, 1/sqrt(IC)) so outputs are O(1).
struct Inputs {
  Shape s;
  Vec in, weight, bias, dout, pre, dweight0, dbias0;
  Inputs(const Shape& shape, uint32_t seed) : s(shape) {
    const size_t N = s.N, IC = s.IC, OC = s.OC;
    in = random_vector(N * IC, seed + 1);
    weight = random_vector(OC * IC, seed + 2, 1.f / std::sqrt(float(IC)));
    bias = random_vector(OC, seed + 3, 0.5f);
    dout = random_vector(N * OC, seed + 4);
    pre = random_vector(N * IC, seed + 5, 1.5f);  // the GELU input of matmul_backward_gelu
    dweight0 = random_vector(OC * IC, seed + 6);  // non-zero: gradients accumulate
    dbias0 = random_vector(OC, seed + 7);
  }
};

// ---- forward ---------------------------------------------------------------------

TEST(CudaMatmul, ForwardMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  uint32_t seed = 100;
  for (const Shape& s : kShapes) {
    for (bool use_bias : {false, true}) {
      const std::string name = shape_name(s, use_bias);
      SCOPED_TRACE(name);
      Inputs x(s, seed += 10);
      const size_t n_out = size_t(s.N) * s.OC;

      DeviceBuffer c_in(cpu, x.in, DType::f32), c_w(cpu, x.weight, DType::f32),
          c_b(cpu, x.bias, DType::f32), c_out(cpu, n_out, DType::f32);
      cpu.matmul_forward(c_out, c_in, c_w, use_bias ? CBuf(c_b) : CBuf(), s.N, s.IC, s.OC);
      const Vec want = c_out.download();

      DeviceBuffer g_in(*gpu, x.in, DType::bf16), g_w(*gpu, x.weight, DType::bf16),
          g_b(*gpu, x.bias, DType::bf16), g_out(*gpu, n_out, DType::bf16);
      g_out.poison();
      gpu->matmul_forward(g_out, g_in, g_w, use_bias ? CBuf(g_b) : CBuf(), s.N, s.IC, s.OC);
      expect_close("matmul_forward", name, g_out.download(), want, kBf16Atol * typical(want),
                   kBf16Rtol);
    }
  }
}

TEST(CudaMatmul, GeluForwardMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  uint32_t seed = 200;
  for (const Shape& s : kShapes) {
    for (bool use_bias : {false, true}) {
      const std::string name = shape_name(s, use_bias);
      SCOPED_TRACE(name);
      Inputs x(s, seed += 10);
      const size_t n_out = size_t(s.N) * s.OC;

      DeviceBuffer c_in(cpu, x.in, DType::f32), c_w(cpu, x.weight, DType::f32),
          c_b(cpu, x.bias, DType::f32), c_pre(cpu, n_out, DType::f32),
          c_out(cpu, n_out, DType::f32);
      cpu.matmul_gelu_forward(c_pre, c_out, c_in, c_w, use_bias ? CBuf(c_b) : CBuf(), s.N, s.IC,
                              s.OC);
      const Vec want_pre = c_pre.download(), want_out = c_out.download();

      DeviceBuffer g_in(*gpu, x.in, DType::bf16), g_w(*gpu, x.weight, DType::bf16),
          g_b(*gpu, x.bias, DType::bf16), g_pre(*gpu, n_out, DType::bf16),
          g_out(*gpu, n_out, DType::bf16);
      g_pre.poison();
      g_out.poison();
      gpu->matmul_gelu_forward(g_pre, g_out, g_in, g_w, use_bias ? CBuf(g_b) : CBuf(), s.N,
                               s.IC, s.OC);
      expect_close("matmul_gelu_forward (pre)", name, g_pre.download(), want_pre,
                   kBf16Atol * typical(want_pre), kBf16Rtol);
      expect_close("matmul_gelu_forward (out)", name, g_out.download(), want_out,
                   kGeluAtol * typical(want_pre), kGeluRtol);
    }
  }
}

// ---- backward --------------------------------------------------------------------

// The GPU side of one backward case, run twice for the determinism check.
struct GpuBackward {
  DeviceBuffer in, weight, dout, pre, din, dweight, dbias;
  GpuBackward(Ops& gpu, const Inputs& x)
      : in(gpu, x.in, DType::bf16),
        weight(gpu, x.weight, DType::bf16),
        dout(gpu, x.dout, DType::bf16),
        pre(gpu, x.pre, DType::bf16),
        din(gpu, size_t(x.s.N) * x.s.IC, DType::bf16),
        dweight(gpu, x.dweight0, DType::f32),
        dbias(gpu, x.dbias0, DType::f32) {}
  // Resets the accumulated gradients to their prefill and poisons din.
  void prepare(Ops& gpu, const Inputs& x) {
    gpu.upload(dweight, x.dweight0.data(), x.dweight0.size());
    gpu.upload(dbias, x.dbias0.data(), x.dbias0.size());
    din.poison();
  }
};

struct Want {
  Vec din, dweight, dbias;
};

// The CPU reference: din (or dpre) from zero (alloc_buf zero-fills), dweight
// and dbias from their prefill (dbias untouched when !with_dbias).
Want cpu_backward(const Inputs& x, bool gelu, bool with_dbias) {
  CpuOps cpu;
  const Shape& s = x.s;
  DeviceBuffer in(cpu, x.in, DType::f32), w(cpu, x.weight, DType::f32),
      dout(cpu, x.dout, DType::f32), pre(cpu, x.pre, DType::f32),
      din(cpu, size_t(s.N) * s.IC, DType::f32), dw(cpu, x.dweight0, DType::f32),
      db(cpu, x.dbias0, DType::f32);
  float* dbias = with_dbias ? db.f32() : nullptr;
  if (gelu)
    cpu.matmul_backward_gelu(din, dw.f32(), dbias, dout, in, pre, w, s.N, s.IC, s.OC);
  else
    cpu.matmul_backward(din, dw.f32(), dbias, dout, in, w, s.N, s.IC, s.OC);
  return {din.download(), dw.download(), db.download()};
}

// Runs the GPU backward (through the GELU when `gelu`) on g after resetting
// its gradients; null outputs where the flags say so.
void gpu_backward(Ops& gpu, GpuBackward& g, const Inputs& x, bool gelu, bool with_din,
                  bool with_dweight, bool with_dbias) {
  g.prepare(gpu, x);
  const Shape& s = x.s;
  Buf din = with_din ? Buf(g.din) : Buf();
  float* dweight = with_dweight ? g.dweight.f32() : nullptr;
  float* dbias = with_dbias ? g.dbias.f32() : nullptr;
  if (gelu)
    gpu.matmul_backward_gelu(din, dweight, dbias, g.dout, g.in, g.pre, g.weight, s.N, s.IC, s.OC);
  else
    gpu.matmul_backward(din, dweight, dbias, g.dout, g.in, g.weight, s.N, s.IC, s.OC);
}

void expect_din(bool gelu, const std::string& name, const Vec& got, const Vec& want) {
  if (gelu)
    expect_close("matmul_backward_gelu (dpre)", name, got, want, kGeluAtol * typical(want),
                 kGeluRtol);
  else
    expect_close("matmul_backward (din)", name, got, want, kBf16Atol * typical(want), kBf16Rtol);
}

void check_backward(bool gelu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const std::string op = gelu ? "matmul_backward_gelu" : "matmul_backward";
  uint32_t seed = gelu ? 400 : 300;
  for (const Shape& s : kShapes) {
    // "bias": the dbias pointer is given (else dbias must keep its prefill).
    for (bool use_bias : {false, true}) {
      const std::string name = shape_name(s, use_bias);
      SCOPED_TRACE(name);
      Inputs x(s, seed += 10);
      const Want want = cpu_backward(x, gelu, use_bias);

      GpuBackward g(*gpu, x);
      auto run = [&]() {
        gpu_backward(*gpu, g, x, gelu, true, true, use_bias);
        return std::vector<Vec>{g.din.download(), g.dweight.download(), g.dbias.download()};
      };
      const std::vector<Vec> first = run();
      expect_din(gelu, name, first[0], want.din);
      expect_close(op + " (dweight, accumulated)", name, first[1], want.dweight,
                   kF32Atol * typical(want.dweight), kF32Rtol);
      expect_close(op + " (dbias, accumulated)", name, first[2], want.dbias,
                   use_bias ? kF32Atol * typical(want.dbias) : 0.0, use_bias ? kF32Rtol : 0.0);

      // Determinism: the same inputs give the same bits.
      const std::vector<Vec> second = run();
      EXPECT_TRUE(bitwise_equal(first[0], second[0])) << op << " " << name << ": din differs";
      EXPECT_TRUE(bitwise_equal(first[1], second[1])) << op << " " << name << ": dweight differs";
      EXPECT_TRUE(bitwise_equal(first[2], second[2])) << op << " " << name << ": dbias differs";
    }
  }
}

TEST(CudaMatmul, BackwardMatchesCpu) { check_backward(/*gelu=*/false); }
TEST(CudaMatmul, BackwardGeluMatchesCpu) { check_backward(/*gelu=*/true); }

// Each output alone: the others are null and stay untouched (din keeps its
// poison, the gradients their prefill).
TEST(CudaMatmul, BackwardNullOutputsAreSkipped) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const Shape s{129, 96, 771};
  for (bool gelu : {false, true}) {
    const std::string name = shape_name(s, true) + (gelu ? " gelu" : "");
    SCOPED_TRACE(name);
    Inputs x(s, gelu ? 510 : 500);
    const Want want = cpu_backward(x, gelu, true);
    GpuBackward g(*gpu, x);
    for (int which = 0; which < 3; ++which) {
      gpu_backward(*gpu, g, x, gelu, which == 0, which == 1, which == 2);
      const Vec din = g.din.download(), dw = g.dweight.download(), db = g.dbias.download();
      if (which == 0) {
        expect_din(gelu, name, din, want.din);
      } else {
        for (float v : din) ASSERT_TRUE(std::isnan(v)) << name << ": din written although null";
      }
      if (which == 1)
        expect_close("dweight alone", name, dw, want.dweight, kF32Atol * typical(want.dweight),
                     kF32Rtol);
      else
        EXPECT_TRUE(bitwise_equal(dw, x.dweight0)) << name << ": dweight changed although null";
      if (which == 2)
        expect_close("dbias alone", name, db, want.dbias, kF32Atol * typical(want.dbias),
                     kF32Rtol);
      else
        EXPECT_TRUE(bitwise_equal(db, x.dbias0)) << name << ": dbias changed although null";
    }
  }
}

// Pointers into the middle of buffers (parameters are slices of one flat
// buffer; q/k/v biases start anywhere): 2- and 4-byte aligned only, with
// IC, OC multiples of 8 so the fused GELU epilogues are tried as well.
TEST(CudaMatmul, UnalignedPointers) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  const Shape s{33, 40, 24};
  const std::string name = shape_name(s, true) + " unaligned";
  Inputs x(s, 600);
  const size_t n_out = size_t(s.N) * s.OC, n_din = size_t(s.N) * s.IC;

  // An offset view of a fresh GPU buffer, filled from host (or poisoned).
  struct View {
    DeviceBuffer buf;
    Buf at;
    size_t n;
    View(Ops& ops, size_t count, size_t offset, DType t)
        : buf(ops, count + offset, t), at(buf.buf + offset), n(count) {}
    View(Ops& ops, const Vec& host, size_t offset, DType t) : View(ops, host.size(), offset, t) {
      buf.ops->upload(at, host.data(), n);
    }
    Vec download() const {
      Vec h(n);
      buf.ops->download(h.data(), at, n);
      return h;
    }
  };

  // Forward (plain and GELU) against the CPU.
  DeviceBuffer c_in(cpu, x.in, DType::f32), c_w(cpu, x.weight, DType::f32),
      c_b(cpu, x.bias, DType::f32), c_pre(cpu, n_out, DType::f32), c_out(cpu, n_out, DType::f32);
  cpu.matmul_gelu_forward(c_pre, c_out, c_in, c_w, c_b, s.N, s.IC, s.OC);
  const Vec want_pre = c_pre.download(), want_out = c_out.download();

  View g_in(*gpu, x.in, 3, DType::bf16), g_w(*gpu, x.weight, 1, DType::bf16),
      g_b(*gpu, x.bias, 1, DType::bf16), g_pre(*gpu, n_out, 5, DType::bf16),
      g_out(*gpu, n_out, 7, DType::bf16);
  g_pre.buf.poison();
  gpu->matmul_forward(g_pre.at, g_in.at, g_w.at, g_b.at, s.N, s.IC, s.OC);
  expect_close("matmul_forward", name, g_pre.download(), want_pre, kBf16Atol * typical(want_pre),
               kBf16Rtol);
  g_pre.buf.poison();
  g_out.buf.poison();
  gpu->matmul_gelu_forward(g_pre.at, g_out.at, g_in.at, g_w.at, g_b.at, s.N, s.IC, s.OC);
  expect_close("matmul_gelu_forward (pre)", name, g_pre.download(), want_pre,
               kBf16Atol * typical(want_pre), kBf16Rtol);
  expect_close("matmul_gelu_forward (out)", name, g_out.download(), want_out,
               kGeluAtol * typical(want_pre), kGeluRtol);

  // Backward (plain and GELU).
  for (bool gelu : {false, true}) {
    SCOPED_TRACE(gelu ? "gelu" : "plain");
    const Want want = cpu_backward(x, gelu, true);
    View g_dout(*gpu, x.dout, 3, DType::bf16), g_pre_in(*gpu, x.pre, 1, DType::bf16),
        g_din(*gpu, n_din, 1, DType::bf16), g_dw(*gpu, x.dweight0, 1, DType::f32),
        g_db(*gpu, x.dbias0, 3, DType::f32);
    g_din.buf.poison();
    if (gelu)
      gpu->matmul_backward_gelu(g_din.at, g_dw.at.f32(), g_db.at.f32(), g_dout.at, g_in.at,
                                g_pre_in.at, g_w.at, s.N, s.IC, s.OC);
    else
      gpu->matmul_backward(g_din.at, g_dw.at.f32(), g_db.at.f32(), g_dout.at, g_in.at, g_w.at,
                           s.N, s.IC, s.OC);
    expect_din(gelu, name, g_din.download(), want.din);
    expect_close("dweight", name, g_dw.download(), want.dweight,
                 kF32Atol * typical(want.dweight), kF32Rtol);
    expect_close("dbias", name, g_db.download(), want.dbias, kF32Atol * typical(want.dbias),
                 kF32Rtol);
  }
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): forward against a naive double sum;
// backward against central differences, din written, dweight/dbias
// accumulating, null gradients skipped; the GELU-fused defaults (Ops, in
// model/ops/ops_defaults.cpp) equal to their composition and to central
// differences; bits independent of the thread count.

using test::dot;
using test::expect_doubled;
using test::expect_grad;
using test::expect_same_bits_across_threads;
using test::expect_written;
using test::randn;

TEST(CpuMatmul, ForwardMatchesNaive) {
  CpuOps ops;
  for (bool with_bias : {true, false}) {
    const int N = 70, IC = 33, OC = 67;  // edges of the 4x4 tiles and 64x64 blocks
    Vec x = randn(N * IC, 1), w = randn(OC * IC, 2), b = randn(OC, 3), out(N * OC);
    ops.matmul_forward(out.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, IC, OC);
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++) {
        double s = with_bias ? b[o] : 0;
        for (int i = 0; i < IC; i++) s += (double)x[n * IC + i] * w[o * IC + i];
        ASSERT_NEAR(out[n * OC + o], s, 1e-4) << n << "," << o;
      }
  }
}

TEST(CpuMatmul, Backward) {
  CpuOps ops;
  for (bool with_bias : {true, false}) {
    const int N = 9, IC = 7, OC = 10;
    Vec x = randn(N * IC, 1), w = randn(OC * IC, 2), b = randn(OC, 3), dout = randn(N * OC, 4);
    Vec out(N * OC);
    auto L = [&] {
      ops.matmul_forward(out.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, IC, OC);
      return dot(out, dout);
    };
    Vec dx(N * IC), dw(OC * IC), db(OC);
    ops.matmul_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, dout.data(), x.data(), w.data(), N, IC, OC);
    expect_grad("matmul din", x, dx, L);
    expect_grad("matmul dweight", w, dw, L);
    if (with_bias) expect_grad("matmul dbias", b, db, L);
    Vec dx2 = dx, dw2 = dw, db2 = db;
    ops.matmul_backward(dx2.data(), dw2.data(), with_bias ? db2.data() : nullptr, dout.data(), x.data(), w.data(), N, IC, OC);
    expect_written("din", dx, dx2);
    expect_doubled("dweight", dw, dw2);
    if (with_bias) expect_doubled("dbias", db, db2);
    Vec dw3(OC * IC);
    ops.matmul_backward(nullptr, dw3.data(), nullptr, dout.data(), x.data(), w.data(), N, IC, OC);
    EXPECT_TRUE(bitwise_equal(dw3, dw));
  }
}

// matmul_gelu_forward (the Ops default): pre = matmul_forward, out =
// gelu_forward(pre): the same bits as the two calls.
TEST(CpuMatmul, GeluForwardEqualsComposition) {
  CpuOps ops;
  for (bool with_bias : {true, false}) {
    const int N = 9, IC = 33, OC = 10;
    const Vec x = randn(N * IC, 1), w = randn(OC * IC, 2), b = randn(OC, 3);
    const float* bias = with_bias ? b.data() : nullptr;
    Vec pre(N * OC), out(N * OC);
    ops.matmul_forward(pre.data(), x.data(), w.data(), bias, N, IC, OC);
    ops.gelu_forward(out.data(), pre.data(), size_t(N) * OC);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    Vec fpre(N * OC, nan), fout(N * OC, nan);
    ops.matmul_gelu_forward(fpre.data(), fout.data(), x.data(), w.data(), bias, N, IC, OC);
    EXPECT_TRUE(bitwise_equal(fpre, pre)) << "pre, bias " << with_bias;
    EXPECT_TRUE(bitwise_equal(fout, out)) << "out, bias " << with_bias;
  }
}

// matmul_backward_gelu (the Ops default), for a matmul whose input was
// in = gelu(pre): the same bits as matmul_backward then gelu_backward; dpre
// against central differences of L(pre) = sum(dout * matmul(gelu(pre))), as
// are dweight and dbias; dpre written, dweight/dbias accumulating; a null
// dpre leaves the weight gradients as they were.
TEST(CpuMatmul, BackwardGeluEqualsCompositionAndDifferences) {
  CpuOps ops;
  for (bool with_bias : {true, false}) {
    const int N = 9, IC = 7, OC = 10;
    Vec pre = randn(N * IC, 1, 2.f), w = randn(OC * IC, 2), b = randn(OC, 3),
        dout = randn(N * OC, 4);
    Vec in(N * IC), out(N * OC);
    auto L = [&] {
      ops.gelu_forward(in.data(), pre.data(), size_t(N) * IC);
      ops.matmul_forward(out.data(), in.data(), w.data(), with_bias ? b.data() : nullptr, N, IC, OC);
      return dot(out, dout);
    };
    L();
    // the composition
    Vec dmid(N * IC), want_dpre(N * IC), want_dw(OC * IC), want_db(OC);
    ops.matmul_backward(dmid.data(), want_dw.data(), with_bias ? want_db.data() : nullptr,
                        dout.data(), in.data(), w.data(), N, IC, OC);
    ops.gelu_backward(want_dpre.data(), dmid.data(), pre.data(), size_t(N) * IC);

    Vec dpre(N * IC, 7.f), dw(OC * IC), db(OC);  // dpre written: the prefill must vanish
    ops.matmul_backward_gelu(dpre.data(), dw.data(), with_bias ? db.data() : nullptr,
                             dout.data(), in.data(), pre.data(), w.data(), N, IC, OC);
    EXPECT_TRUE(bitwise_equal(dpre, want_dpre)) << "dpre, bias " << with_bias;
    EXPECT_TRUE(bitwise_equal(dw, want_dw)) << "dweight, bias " << with_bias;
    EXPECT_TRUE(bitwise_equal(db, want_db)) << "dbias, bias " << with_bias;

    expect_grad("matmul_backward_gelu dpre", pre, dpre, L, 1e-3f);
    expect_grad("matmul_backward_gelu dweight", w, dw, L);
    if (with_bias) expect_grad("matmul_backward_gelu dbias", b, db, L);
    L();  // `in` of the unperturbed pre again

    Vec dpre2 = dpre, dw2 = dw, db2 = db;
    ops.matmul_backward_gelu(dpre2.data(), dw2.data(), with_bias ? db2.data() : nullptr,
                             dout.data(), in.data(), pre.data(), w.data(), N, IC, OC);
    expect_written("dpre", dpre, dpre2);
    expect_doubled("dweight", dw, dw2);
    if (with_bias) expect_doubled("dbias", db, db2);
    Vec dw3(OC * IC);
    ops.matmul_backward_gelu(nullptr, dw3.data(), nullptr, dout.data(), in.data(), pre.data(),
                             w.data(), N, IC, OC);
    EXPECT_TRUE(bitwise_equal(dw3, dw));
  }
}

TEST(CpuMatmul, DeterministicAcrossThreadCounts) {
  CpuOps ops;
  const int N = 131, IC = 70, OC = 90;
  Vec x = randn(N * IC, 1), w = randn(OC * IC, 2), dout = randn(N * OC, 3);
  expect_same_bits_across_threads("matmul", [&] {
    Vec out(N * OC), dx(N * IC), dw(OC * IC), db(OC);
    ops.matmul_forward(out.data(), x.data(), w.data(), db.data(), N, IC, OC);
    ops.matmul_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, IC, OC);
    Vec all = out;
    all.insert(all.end(), dx.begin(), dx.end());
    all.insert(all.end(), dw.begin(), dw.end());
    all.insert(all.end(), db.begin(), db.end());
    return all;
  });
}

}  // namespace
}  // namespace polaris
