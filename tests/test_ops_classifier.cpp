// CudaOps fused softmax cross-entropy (cuda/classifier.cu) against the CPU
// reference, for N in {1, 3, 17} x V in {5, 1000, 50257} and N = 2 x
// V = 151936 (Qwen3's vocabulary), each with:
//   - plain: no weights, no entropy term; every output requested;
//   - weighted: signed per-row weights, entropy weights (some zero), ignored
//     rows (target -1: loss, logprob, entropy 0 and an all-zero gradient row);
//   - the same with dlogits ALIASING logits (the logits are overwritten by
//     their gradient);
//   - losses only (logprobs, entropies, dlogits null);
// and a second GPU run bitwise identical (fixed-order block reductions).
// A target >= V (a caller bug the CPU rejects) gives NaN loss and gradient row.
//
// Inputs are bf16-exact (random_vector), so both backends see the same
// logits; the GPU reduces in fp32 and rounds each gradient once to bf16, the
// CPU reduces in double.
//
// The last section ("CPU reference") tests CpuOps alone and runs without a
// GPU: against direct formulas, central differences and compositions of
// other ops (tests/cpu_op_checks.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/cpu_op_checks.h"
#include "tests/ops_compare.h"

namespace polaris {
namespace {

using test::bitwise_equal;
using test::DeviceBuffer;
using test::DeviceInts;
using test::expect_close;
using test::random_ints;
using test::random_vector;
using Vec = std::vector<float>;
using IVec = std::vector<int32_t>;

constexpr float kScale = 0.37f;
// One rounding to bf16 (8 significant bits, round to nearest): relative error
// < 2^-8 of the value.
constexpr double kBf16Rtol = 1.0 / 256;
// fp32 row sums: each GPU thread adds <= 149 terms then a 10-level tree, so S
// and T (the sums of exp and of exp * logit) err by <= ~160 * 2^-24 ~ 1e-5
// relative (typically ~1e-7). log S, log p_j inherit it as an absolute error
// (<= ~1e-5), H = log S - T / S as <= ~1e-5 * (1 + |T / S|) <= ~2e-4 (|T/S| is
// an average logit gap, <= ~20 here). Hence, for the fp32 outputs:
constexpr double kStatAtol = 2e-4, kStatRtol = 1e-5;  // logprob, entropy
// and the loss w (-logprob) - ew H: kStatAtol * (|w| + |ew|).
// The gradient p_j (w + ew (log p_j + H)) - w [j == t] is proportional to p_j
// (the error of p_j = exp(log p_j) is relative), so its tolerance is per
// element: bf16 rounding + scale p_j (|w| + |ew| (1 + |log p_j| + |H|)) * 1e-4,
// which holds the fp32 errors above with 5-10x margin while staying far below
// p_j itself (a wrong p_j or a missing term fails). Ignored rows must be 0.
constexpr double kGradRel = 1e-4;

struct LossCase {
  int N, V;
  bool weighted;  // weights, entropy weights and ignored rows
};

std::string shape_of(const LossCase& c, const char* variant) {
  return "N=" + std::to_string(c.N) + " V=" + std::to_string(c.V) + " " + variant;
}

struct LossInputs {
  Vec logits, weights, entropy_weights;
  IVec targets;
};

LossInputs make_inputs(const LossCase& c) {
  const uint32_t seed = uint32_t(c.N * 100003 + c.V);
  LossInputs in;
  in.logits = random_vector(size_t(c.N) * c.V, seed, 2.f);
  in.targets = random_ints(c.N, seed + 1, 0, c.V - 1);
  if (c.weighted) {
    std::mt19937 rng(seed + 2);
    std::uniform_real_distribution<float> w(-1.f, 2.f), ew(0.f, 0.5f);
    in.weights.resize(c.N);
    in.entropy_weights.resize(c.N);
    for (int i = 0; i < c.N; ++i) {
      in.weights[i] = w(rng);
      in.entropy_weights[i] = i % 3 == 2 ? 0.f : ew(rng);
    }
    if (c.N > 1) in.targets[1] = -1;
    if (c.N > 10) in.targets[10] = -1;
  }
  return in;
}

struct LossOutputs {
  Vec losses, logprobs, entropies, dlogits;
};

// Runs cross_entropy on `ops` (logits in `dtype`); outputs poisoned first.
// alias: dlogits is the logits buffer; losses_only: the optional outputs null.
LossOutputs run_loss(Ops& ops, DType dtype, const LossCase& c, const LossInputs& in, bool alias,
                     bool losses_only) {
  const size_t nv = size_t(c.N) * c.V;
  DeviceBuffer logits(ops, in.logits, dtype);
  DeviceInts targets(ops, in.targets);
  std::unique_ptr<DeviceBuffer> w, ew, dl;
  if (c.weighted) {
    w.reset(new DeviceBuffer(ops, in.weights, DType::f32));
    ew.reset(new DeviceBuffer(ops, in.entropy_weights, DType::f32));
  }
  DeviceBuffer losses(ops, c.N, DType::f32), logprobs(ops, c.N, DType::f32),
      entropies(ops, c.N, DType::f32);
  losses.poison();
  logprobs.poison();
  entropies.poison();
  if (!alias && !losses_only) {
    dl.reset(new DeviceBuffer(ops, nv, dtype));
    dl->poison();
  }
  LossArgs a;
  a.logits = logits;
  a.targets = targets;
  a.weights = w ? w->f32() : nullptr;
  a.entropy_weights = ew ? ew->f32() : nullptr;
  a.scale = kScale;
  a.N = c.N;
  a.V = c.V;
  a.losses = losses.f32();
  if (!losses_only) {
    a.logprobs = logprobs.f32();
    a.entropies = entropies.f32();
    a.dlogits = alias ? logits.buf : dl->buf;
  }
  ops.cross_entropy(a);
  LossOutputs out;
  out.losses = losses.download();
  if (!losses_only) {
    out.logprobs = logprobs.download();
    out.entropies = entropies.download();
    out.dlogits = alias ? logits.download() : dl->download();
  }
  return out;
}

// The per-element gradient check described at the top (softmax statistics
// recomputed in double on the host, for the tolerance only).
void expect_dlogits_close(const std::string& shape, const LossCase& c, const LossInputs& in,
                          const Vec& got, const Vec& want) {
  ASSERT_EQ(got.size(), want.size());
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (int i = 0; i < c.N; ++i) {
    const float* l = in.logits.data() + size_t(i) * c.V;
    const bool ignored = in.targets[i] < 0;
    double M = l[0], S = 0, T = 0;
    for (int j = 1; j < c.V; ++j) M = std::max(M, (double)l[j]);
    for (int j = 0; j < c.V; ++j) {
      const double e = std::exp(l[j] - M);
      S += e;
      T += e * (l[j] - M);
    }
    const double logS = std::log(S), H = logS - T / S;
    const double w = c.weighted ? std::fabs(in.weights[i]) : 1.0;
    const double ew = c.weighted ? std::fabs(in.entropy_weights[i]) : 0.0;
    for (int j = 0; j < c.V; ++j) {
      const size_t k = size_t(i) * c.V + j;
      const double logp = l[j] - M - logS, p = std::exp(logp);
      const double allowed =
          ignored ? 0.0
                  : kBf16Rtol * std::fabs(want[k]) +
                        kScale * p * (w + ew * (1 + std::fabs(logp) + std::fabs(H))) * kGradRel;
      const double err = std::fabs(double(got[k]) - double(want[k]));
      if (!(err <= allowed)) ++bad;
      const double excess = std::isnan(err) ? std::numeric_limits<double>::infinity() : err - allowed;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = k;
      }
    }
  }
  EXPECT_EQ(bad, 0u) << "cross_entropy dlogits " << shape << ": " << bad << " of " << got.size()
                     << " elements out of tolerance; worst at row " << worst / c.V << " column "
                     << worst % c.V << ": got " << got[worst] << ", expected " << want[worst];
}

double max_abs(const Vec& v, double fallback) {
  if (v.empty()) return fallback;
  double m = 0;
  for (float x : v) m = std::max(m, (double)std::fabs(x));
  return m;
}

void expect_stats_close(const std::string& shape, const LossInputs& in,
                        const LossOutputs& got, const LossOutputs& want) {
  const double loss_atol =
      kStatAtol * (max_abs(in.weights, 1.0) + max_abs(in.entropy_weights, 0.0));
  expect_close("cross_entropy losses", shape, got.losses, want.losses, loss_atol, kStatRtol);
  if (!got.logprobs.empty()) {
    expect_close("cross_entropy logprobs", shape, got.logprobs, want.logprobs, kStatAtol,
                 kStatRtol);
    expect_close("cross_entropy entropies", shape, got.entropies, want.entropies, kStatAtol,
                 kStatRtol);
  }
}

void check_case(Ops& gpu, CpuOps& cpu, const LossCase& c) {
  const LossInputs in = make_inputs(c);
  const LossOutputs want = run_loss(cpu, DType::f32, c, in, false, false);

  const char* variant = c.weighted ? "weighted" : "plain";
  const LossOutputs got = run_loss(gpu, DType::bf16, c, in, false, false);
  expect_stats_close(shape_of(c, variant), in, got, want);
  expect_dlogits_close(shape_of(c, variant), c, in, got.dlogits, want.dlogits);

  const LossOutputs again = run_loss(gpu, DType::bf16, c, in, false, false);
  EXPECT_TRUE(bitwise_equal(again.losses, got.losses) && bitwise_equal(again.logprobs, got.logprobs) &&
              bitwise_equal(again.entropies, got.entropies) &&
              bitwise_equal(again.dlogits, got.dlogits))
      << "cross_entropy not deterministic " << shape_of(c, variant);

  const LossOutputs aliased = run_loss(gpu, DType::bf16, c, in, true, false);
  expect_stats_close(shape_of(c, "aliased"), in, aliased, want);
  expect_dlogits_close(shape_of(c, "aliased"), c, in, aliased.dlogits, want.dlogits);

  const LossOutputs only = run_loss(gpu, DType::bf16, c, in, false, true);
  expect_stats_close(shape_of(c, "losses only"), in, only, want);
}

TEST(OpsClassifier, CrossEntropyMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (int N : {1, 3, 17})
    for (int V : {5, 1000, 50257})
      for (bool weighted : {false, true}) check_case(*gpu, cpu, LossCase{N, V, weighted});
}

TEST(OpsClassifier, CrossEntropyQwenVocabulary) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (bool weighted : {false, true}) check_case(*gpu, cpu, LossCase{2, 151936, weighted});
}

// A target >= V is a caller bug (the CPU throws; the transformer validates
// targets on the host first). The kernel cannot throw: it makes that row NaN
// (loss, logprob, entropy and the whole gradient row) and leaves the others be.
TEST(OpsClassifier, OutOfRangeTargetIsNaN) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const LossCase c{3, 1000, false};
  LossInputs in = make_inputs(c);
  in.targets = {5, 1000, -1};
  const LossOutputs got = run_loss(*gpu, DType::bf16, c, in, false, false);
  EXPECT_TRUE(std::isfinite(got.losses[0]) && got.losses[0] > 0);
  EXPECT_TRUE(std::isnan(got.losses[1]) && std::isnan(got.logprobs[1]) &&
              std::isnan(got.entropies[1]));
  EXPECT_EQ(got.losses[2], 0.f);
  size_t nan_in_row1 = 0, nonzero_in_row2 = 0, finite_in_row0 = 0;
  for (int j = 0; j < c.V; ++j) {
    finite_in_row0 += std::isfinite(got.dlogits[j]);
    nan_in_row1 += std::isnan(got.dlogits[size_t(c.V) + j]);
    nonzero_in_row2 += got.dlogits[2 * size_t(c.V) + j] != 0.f;
  }
  EXPECT_EQ(finite_in_row0, size_t(c.V));
  EXPECT_EQ(nan_in_row1, size_t(c.V));
  EXPECT_EQ(nonzero_in_row2, 0u);
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): cross_entropy's losses, logprobs and
// entropies against log-softmax in double (ignored targets give zeros, a huge
// logit stays finite); dlogits against central differences of the scaled
// loss, with and without the entropy term, written, and aliasing logits.

using test::expect_grad;
using test::randn;

TEST(CpuClassifier, CrossEntropyForwardMatchesLogSoftmax) {
  CpuOps ops;
  const int N = 5, V = 13;
  Vec logits = randn(N * V, 1, 3.f), w = {1.f, 0.5f, 0.f, -2.f, 1.f}, ew = {0.1f, 0.f, 0.3f, 0.f, -0.2f};
  IVec targets = {3, 0, 12, -1, 7};
  Vec losses(N), lp(N), ent(N);
  LossArgs a;
  a.logits = logits.data(), a.targets = targets.data(), a.weights = w.data();
  a.entropy_weights = ew.data(), a.N = N, a.V = V;
  a.losses = losses.data(), a.logprobs = lp.data(), a.entropies = ent.data();
  ops.cross_entropy(a);
  for (int i = 0; i < N; i++) {
    if (targets[i] < 0) {
      EXPECT_EQ(losses[i], 0.f);
      EXPECT_EQ(lp[i], 0.f);
      EXPECT_EQ(ent[i], 0.f);
      continue;
    }
    double z = 0;
    for (int j = 0; j < V; j++) z += std::exp((double)logits[i * V + j]);
    double H = 0;
    for (int j = 0; j < V; j++) {
      const double p = std::exp((double)logits[i * V + j]) / z;
      H -= p * std::log(p);
    }
    const double logprob = std::log(std::exp((double)logits[i * V + targets[i]]) / z);
    EXPECT_NEAR(lp[i], logprob, 1e-5);
    EXPECT_NEAR(ent[i], H, 1e-5);
    EXPECT_NEAR(losses[i], -w[i] * logprob - ew[i] * H, 1e-5);
  }
  // a huge logit stays finite (stable log-softmax)
  logits[0] = 1e4f;
  ops.cross_entropy(a);
  EXPECT_TRUE(std::isfinite(losses[0]));
  EXPECT_NEAR(lp[0], targets[0] == 0 ? 0.0 : logits[targets[0]] - 1e4, 1e-2);
}

TEST(CpuClassifier, CrossEntropyBackward) {
  CpuOps ops;
  const int N = 6, V = 11;
  for (bool entropy : {false, true}) {
    Vec logits = randn(N * V, 1, 2.f), w = {1.f, 0.5f, -1.5f, 2.f, 1.f, 0.7f};
    Vec ew = {0.2f, -0.3f, 0.5f, 0.1f, 1.f, 0.4f};
    IVec targets = {3, -1, 10, 0, -5, 7};
    Vec losses(N), dl(N * V);
    LossArgs a;
    a.logits = logits.data(), a.targets = targets.data(), a.weights = w.data();
    a.entropy_weights = entropy ? ew.data() : nullptr, a.N = N, a.V = V, a.scale = 0.37f;
    a.losses = losses.data();
    auto L = [&] {
      LossArgs f = a;
      f.dlogits = nullptr;
      ops.cross_entropy(f);
      double s = 0;
      for (float x : losses) s += x;
      return a.scale * s;
    };
    a.dlogits = dl.data();
    std::fill(dl.begin(), dl.end(), 123.f);  // overwritten, not accumulated
    ops.cross_entropy(a);
    for (int i : {1, 4})  // ignored rows: zero gradient, zero loss
      for (int j = 0; j < V; j++) ASSERT_EQ(dl[i * V + j], 0.f);
    EXPECT_EQ(losses[1], 0.f);
    expect_grad(entropy ? "cross_entropy dlogits (entropy)" : "cross_entropy dlogits", logits, dl, L, 1e-3f);
    // dlogits aliasing logits gives the same bits
    ops.cross_entropy(a);
    Vec alias = logits, losses2(N);
    LossArgs b = a;
    b.logits = alias.data(), b.dlogits = alias.data(), b.losses = losses2.data();
    ops.cross_entropy(b);
    EXPECT_TRUE(bitwise_equal(alias, dl));
    EXPECT_TRUE(bitwise_equal(losses2, losses));
  }
}

}  // namespace
}  // namespace polaris
