// CudaOps::adamw_update (cuda/adamw.cu) against the CPU reference:
//   - master params, m and v after 3 steps (grad_scale, weight decay);
//   - the bf16 copy rounded to nearest equals round_bf16(master) exactly;
//   - the stochastically rounded copy is the bf16 value just below or just
//     above the master (within one ulp), is repeatable for a seed and changes
//     with it, and is unbiased: over many equal values its mean is the value;
//   - a copy that is not bf16 is an error naming the op.
//
// The last section ("CPU reference") tests CpuOps alone and runs without a
// GPU: against direct formulas, central differences and compositions of
// other ops (tests/cpu_op_checks.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "src/common/error.h"
#include "tests/cpu_op_checks.h"
#include "tests/ops_compare.h"

namespace polaris {
namespace {

using test::DeviceBuffer;
using test::expect_close;
using test::random_vector;
using test::round_bf16;

uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
float from_bits(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}
// The bf16 values on either side of x: truncated toward zero, and one bf16
// ulp further from zero (equal when x is a bf16 value).
float bf16_toward_zero(float x) { return from_bits(bits_of(x) & 0xffff0000u); }
float bf16_away_from_zero(float x) {
  const float lo = bf16_toward_zero(x);
  return lo == x ? x : from_bits(bits_of(lo) + 0x10000u);
}

AdamWArgs step_args(int step) {
  AdamWArgs a;
  a.learning_rate = 1e-2f;
  a.beta1 = 0.9f;
  a.beta2 = 0.95f;
  a.epsilon = 1e-8f;
  a.weight_decay = 0.1f;
  a.grad_scale = 0.5f;
  a.step = step;
  a.stochastic_rounding = false;
  a.rounding_seed = 0;
  return a;
}

// Tolerances. The kernel performs the reference's fp32 operations in the
// reference's order, each rounded to nearest (no FMA contraction), so with
// the CPU built without contraction the results are bitwise equal. The
// tolerance leaves room for a CPU build that contracts a*b + c into FMAs:
// each of the ~10 operations per step may then differ by an ulp (6e-8
// relative), over 3 steps: 1e-6 relative. m can cancel (beta1*m and
// (1-beta1)*g of opposite signs), so it also gets an absolute floor of a few
// ulps of its terms (|terms| <~ 0.1: ulp ~ 7e-9): 5e-8. The parameters move
// by lr * O(1) = 1e-2 a step: a few ulps of that is 5e-9, plus 1e-6 relative.
TEST(OpsAdamW, ThreeStepsMatchCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (size_t n : {size_t(1), size_t(7), size_t(1000003)}) {
    const std::vector<float> p0 = random_vector(n, 21, 1.f, /*bf16_exact=*/false);
    DeviceBuffer gp(*gpu, p0, DType::f32), gm(*gpu, n, DType::f32), gv(*gpu, n, DType::f32);
    DeviceBuffer cp(cpu, p0, DType::f32), cm(cpu, n, DType::f32), cv(cpu, n, DType::f32);
    for (int step = 1; step <= 3; ++step) {
      const std::vector<float> g = random_vector(n, 100 + step, 0.2f, false);
      DeviceBuffer gg(*gpu, g, DType::f32), cg(cpu, g, DType::f32);
      const AdamWArgs args = step_args(step);
      gpu->adamw_update(gp.f32(), nullptr, gg.f32(), gm.f32(), gv.f32(), n, args);
      cpu.adamw_update(cp.f32(), nullptr, cg.f32(), cm.f32(), cv.f32(), n, args);
    }
    const std::string shape = "n=" + std::to_string(n) + " after 3 steps";
    expect_close("adamw params", shape, gp.download(), cp.download(), 5e-9, 1e-6);
    expect_close("adamw m", shape, gm.download(), cm.download(), 5e-8, 1e-6);
    expect_close("adamw v", shape, gv.download(), cv.download(), 0, 1e-6);
  }
}

// Round to nearest: the copy is exactly round_bf16 of the updated master.
TEST(OpsAdamW, Bf16CopyRoundToNearest) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (size_t n : {size_t(1), size_t(7), size_t(1000003)}) {
    const std::vector<float> p0 = random_vector(n, 31, 1.f, false);
    const std::vector<float> g = random_vector(n, 32, 0.2f, false);
    DeviceBuffer gp(*gpu, p0, DType::f32), gm(*gpu, n, DType::f32), gv(*gpu, n, DType::f32);
    DeviceBuffer gg(*gpu, g, DType::f32), copy(*gpu, n, DType::bf16);
    copy.poison();
    gpu->adamw_update(gp.f32(), copy, gg.f32(), gm.f32(), gv.f32(), n, step_args(1));
    const std::vector<float> master = gp.download(), got = copy.download();
    std::vector<float> want(n);
    for (size_t i = 0; i < n; ++i) want[i] = round_bf16(master[i]);
    expect_close("adamw bf16 copy (nearest)", "n=" + std::to_string(n), got, want, 0, 0);
  }
}

// Stochastic rounding: each copy element is one of the two bf16 neighbours
// of its master value (so within one bf16 ulp), both neighbours occur, the
// bits repeat for the same seed and change with another.
TEST(OpsAdamW, Bf16CopyStochastic) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const size_t n = 1000003;
  const std::vector<float> p0 = random_vector(n, 41, 1.f, false);
  const std::vector<float> g = random_vector(n, 42, 0.2f, false);
  DeviceBuffer gp(*gpu, p0, DType::f32), gm(*gpu, n, DType::f32), gv(*gpu, n, DType::f32);
  DeviceBuffer gg(*gpu, g, DType::f32), copy(*gpu, n, DType::bf16);
  copy.poison();
  AdamWArgs args = step_args(1);
  args.stochastic_rounding = true;
  args.rounding_seed = 0x1234567890abcdefull;
  gpu->adamw_update(gp.f32(), copy, gg.f32(), gm.f32(), gv.f32(), n, args);
  const std::vector<float> master = gp.download(), got = copy.download();
  size_t not_neighbour = 0, first_bad = 0, differs_from_nearest = 0, inexact = 0;
  for (size_t i = 0; i < n; ++i) {
    const float lo = bf16_toward_zero(master[i]), hi = bf16_away_from_zero(master[i]);
    if (!(got[i] == lo || got[i] == hi) && not_neighbour++ == 0) first_bad = i;
    if (got[i] != round_bf16(master[i])) ++differs_from_nearest;
    if (lo != master[i]) ++inexact;
  }
  EXPECT_EQ(not_neighbour, 0u) << "first at " << first_bad << ": master " << master[first_bad]
                               << ", copy " << got[first_bad];
  // Round to nearest would agree everywhere; stochastic rounding picks the
  // farther neighbour with probability (distance to the nearer) / ulp, on
  // average 1/4 of the inexact values.
  EXPECT_GT(differs_from_nearest, inexact / 5) << "stochastic rounding looks like round to nearest";
  EXPECT_LT(differs_from_nearest, inexact / 3);

  // Same seed, same master (lr = 0 keeps it), same bits; another seed changes them.
  args.learning_rate = 0.f;
  args.weight_decay = 0.f;
  args.step = 2;
  DeviceBuffer copy2(*gpu, n, DType::bf16);
  gpu->adamw_update(gp.f32(), copy2, gg.f32(), gm.f32(), gv.f32(), n, args);
  expect_close("adamw stochastic copy, same seed", "n=1000003", copy2.download(), got, 0, 0);
  args.rounding_seed ^= 1;
  gpu->adamw_update(gp.f32(), copy2, gg.f32(), gm.f32(), gv.f32(), n, args);
  const std::vector<float> other = copy2.download();
  size_t changed = 0;
  for (size_t i = 0; i < n; ++i) changed += other[i] != got[i];
  EXPECT_GT(changed, inexact / 10) << "the seed does not change the rounding";
}

// round_weight_copy draws the same rounding bits as adamw_update with the same
// args: a resumed run rebuilds the bf16 weights bit for bit from the master.
TEST(OpsAdamW, RoundWeightCopyEqualsTheStepsCopy) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const size_t n = 70001;
  DeviceBuffer gp(*gpu, random_vector(n, 51, 1.f, false), DType::f32);
  DeviceBuffer gg(*gpu, random_vector(n, 52, 0.2f, false), DType::f32);
  DeviceBuffer gm(*gpu, n, DType::f32), gv(*gpu, n, DType::f32);
  DeviceBuffer copy(*gpu, n, DType::bf16), rebuilt(*gpu, n, DType::bf16);
  for (bool stochastic : {true, false}) {
    AdamWArgs args = step_args(3);
    args.stochastic_rounding = stochastic;
    args.rounding_seed = (uint64_t(3) << 40) ^ 12345;
    gpu->adamw_update(gp.f32(), copy, gg.f32(), gm.f32(), gv.f32(), n, args);
    rebuilt.poison();
    gpu->round_weight_copy(rebuilt, gp.f32(), n, args);
    expect_close(stochastic ? "round_weight_copy (stochastic)" : "round_weight_copy (nearest)",
                 "n=70001", rebuilt.download(), copy.download(), 0, 0);
  }
}

// Unbiased: n equal master values v = 1 + 0.3 ulp (ulp of bf16 at 1 is 2^-7)
// with lr = 0 (the master stays v). Each copy is 1 (p = 0.7) or 1 + 2^-7
// (p = 0.3); the mean is v up to sampling noise, sigma = ulp * sqrt(0.21 / n),
// checked at 6 sigma. Round to nearest would give 1, off by 0.3 ulp. The same
// for the negative value.
TEST(OpsAdamW, Bf16StochasticCopyIsUnbiased) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const size_t n = size_t(1) << 20;
  const double ulp = 0x1p-7;
  for (float sign : {1.f, -1.f}) {
    const float value = sign * float(1.0 + 0.3 * ulp);
    DeviceBuffer gp(*gpu, std::vector<float>(n, value), DType::f32);
    DeviceBuffer gg(*gpu, std::vector<float>(n, 0.01f), DType::f32);
    DeviceBuffer gm(*gpu, n, DType::f32), gv(*gpu, n, DType::f32), copy(*gpu, n, DType::bf16);
    AdamWArgs args = step_args(1);
    args.learning_rate = 0.f;
    args.weight_decay = 0.f;
    args.stochastic_rounding = true;
    args.rounding_seed = 77;
    gpu->adamw_update(gp.f32(), copy, gg.f32(), gm.f32(), gv.f32(), n, args);
    const std::vector<float> master = gp.download(), got = copy.download();
    ASSERT_EQ(master[0], value) << "lr = 0 must leave the master unchanged";
    double sum = 0;
    size_t up = 0;
    for (float c : got) {
      sum += c;
      up += std::fabs(c) > 1.f;
    }
    const double mean = sum / double(n);
    const double sigma = ulp * std::sqrt(0.21 / double(n));
    EXPECT_NEAR(mean, double(value), 6 * sigma) << "stochastic rounding is biased (value " << value
                                                << ", " << up << " of " << n << " rounded up)";
    EXPECT_NEAR(double(up) / double(n), 0.3, 6 * std::sqrt(0.21 / double(n)));
  }
}

TEST(OpsAdamW, CopyMustBeBf16) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  DeviceBuffer p(*gpu, 4, DType::f32), g(*gpu, 4, DType::f32), m(*gpu, 4, DType::f32),
      v(*gpu, 4, DType::f32), copy(*gpu, 4, DType::f32);
  try {
    gpu->adamw_update(p.f32(), copy, g.f32(), m.f32(), v.f32(), 4, step_args(1));
    ADD_FAILURE() << "an fp32 copy was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adamw_update"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): AdamW against a hand-computed two-step
// example, and its weight decay decoupled from the gradient.

using Vec = std::vector<float>;

// The CPU's weights are fp32: a copy (the weights beside a ZeRO-sharded
// master) receives the params exactly, from adamw_update and from
// round_weight_copy; a copy of another dtype is an error.
TEST(CpuAdamW, Fp32CopyReceivesTheParamsExactly) {
  CpuOps ops;
  std::vector<float> p = {1.f, 2.f}, copy = {0.f, 0.f}, g = {0.5f, -0.25f}, m(2), v(2);
  AdamWArgs a;
  a.learning_rate = 0.1f;
  ops.round_weight_copy(nullptr, p.data(), 2, a);
  ops.adamw_update(p.data(), copy.data(), g.data(), m.data(), v.data(), 2, a);
  EXPECT_NE(p, (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(copy, p);
  std::vector<float> rebuilt = {0.f, 0.f};
  ops.round_weight_copy(rebuilt.data(), p.data(), 2, a);
  EXPECT_EQ(rebuilt, p);
  uint16_t bf16[2] = {0, 0};
  EXPECT_THROW(ops.round_weight_copy(Buf(bf16, DType::bf16), p.data(), 2, a), Error);
  EXPECT_THROW(ops.adamw_update(p.data(), Buf(bf16, DType::bf16), g.data(), m.data(), v.data(), 2, a),
               Error);
}

TEST(CpuAdamW, TwoSteps) {
  // By hand, lr 0.1, beta1 0.9, beta2 0.95, eps 1e-8, grad_scale 2, grads 0.5 then -0.25:
  //   step 1: g = 1;    m = 0.1,  v = 0.05; mhat = 1, vhat = 1  -> p = 1 - 0.1 = 0.9
  //   step 2: g = -0.5; m = 0.04, v = 0.06; mhat = 0.04/0.19, vhat = 0.06/0.0975
  //           p = 0.9 - 0.1 * 0.210526 / 0.784465 = 0.873163
  CpuOps ops;
  float p = 1.f, m = 0.f, v = 0.f;
  AdamWArgs a;
  a.learning_rate = 0.1f, a.beta1 = 0.9f, a.beta2 = 0.95f, a.epsilon = 1e-8f, a.grad_scale = 2.f;
  float g = 0.5f;
  a.step = 1;
  ops.adamw_update(&p, nullptr, &g, &m, &v, 1, a);
  EXPECT_NEAR(p, 0.9f, 1e-6);
  EXPECT_NEAR(m, 0.1f, 1e-7);
  EXPECT_NEAR(v, 0.05f, 1e-7);
  g = -0.25f;
  a.step = 2;
  ops.adamw_update(&p, nullptr, &g, &m, &v, 1, a);
  EXPECT_NEAR(m, 0.04f, 1e-7);
  EXPECT_NEAR(v, 0.06f, 1e-7);
  EXPECT_NEAR(p, 0.8731630565, 1e-6);
}

TEST(CpuAdamW, WeightDecayIsDecoupled) {
  // With a zero gradient the moments stay zero and only the decay acts:
  // p -= lr * wd * p, whatever the gradient scale or the moments' bias correction.
  CpuOps ops;
  Vec p = {2.f, -3.f, 0.5f}, g(3, 0.f), m(3, 0.f), v(3, 0.f);
  AdamWArgs a;
  a.learning_rate = 0.01f, a.weight_decay = 0.1f, a.step = 5, a.grad_scale = 7.f;
  Vec expect = p;
  for (auto& x : expect) x -= 0.01f * (0.1f * x);
  ops.adamw_update(p.data(), nullptr, g.data(), m.data(), v.data(), 3, a);
  for (int i = 0; i < 3; i++) EXPECT_FLOAT_EQ(p[i], expect[i]);
  // with a gradient: the decay term is lr * wd * p, not folded into the
  // gradient (it would then be normalised by sqrt(v))
  Vec p1 = {2.f}, g1 = {1.f}, m1 = {0.f}, v1 = {0.f};
  a.step = 1, a.grad_scale = 1.f;
  ops.adamw_update(p1.data(), nullptr, g1.data(), m1.data(), v1.data(), 1, a);
  EXPECT_NEAR(p1[0], 2.f - 0.01f * (1.f + 0.1f * 2.f), 1e-6);
}

}  // namespace
}  // namespace polaris
