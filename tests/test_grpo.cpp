// GRPO's math (src/train/grpo.h, src/train/grpo.cpp), piece by piece:
//   - group_advantages: hand-computed groups (unbiased n-1 std, +1e-6),
//     centred-only without normalisation, zero-variance groups, independence
//     of groups, bad sizes;
//   - zero_variance_group;
//   - policy_token_terms: the clipped importance-ratio objective per token
//     (which branch the min takes, the asymmetric 0.2/0.28 bounds), the k3 KL
//     value and its weight term;
//   - the whole clipped loss through the whole model: the gradient GRPO gets
//     from the loss op (weights w_t = policy_token_terms(...).weight, entropy
//     weights c, loss scale 1/n) against double central differences of the
//     objective written out directly from the transformer's log-probs and
//     entropies; plus a negative control (ignoring clipping must fail);
//   - StagedValue::parse/at and GrpoOptions::from_flags errors.
// Tiny shapes: the file runs in about a second on one thread.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_ops.h"
#include "model/params.h"
#include "model/transformer.h"
#include "src/common/cli.h"
#include "src/common/error.h"
#include "src/train/grpo.h"
#include "src/train/train_flags.h"
#include "tests/test_util.h"

using namespace polaris;

namespace {

// Tiny ops are dominated by OpenMP overhead on a loaded machine; the CPU ops
// are thread-count independent, so run on one thread unless told otherwise.
const bool kOneThread = [] {
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
  return true;
}();

// ---------------------------------------------------------------------------
// group_advantages / zero_variance_group

TEST(GroupAdvantages, HandComputedStdNormalised) {
  // Group {1, 0, 0, 1}: mean 0.5, squared deviations 4 * 0.25 = 1,
  // unbiased std sqrt(1/3) = 0.57735.
  std::vector<double> a = group_advantages({1, 0, 0, 1}, 4, true);
  const double s = std::sqrt(1.0 / 3.0) + 1e-6;
  ASSERT_EQ(a.size(), 4u);
  EXPECT_NEAR(a[0], 0.5 / s, 1e-12);
  EXPECT_NEAR(a[1], -0.5 / s, 1e-12);
  EXPECT_NEAR(a[2], -0.5 / s, 1e-12);
  EXPECT_NEAR(a[3], 0.5 / s, 1e-12);
  EXPECT_NEAR(a[0], 0.866024, 1e-5);  // 0.5 * sqrt(3), less the epsilon's effect

  // Group {2, 4, 9}: mean 5, deviations -3, -1, 4, sum of squares 26,
  // unbiased std sqrt(13) (the biased one would be sqrt(26/3)).
  a = group_advantages({2, 4, 9}, 3, true);
  const double s3 = std::sqrt(13.0) + 1e-6;
  EXPECT_NEAR(a[0], -3 / s3, 1e-12);
  EXPECT_NEAR(a[1], -1 / s3, 1e-12);
  EXPECT_NEAR(a[2], 4 / s3, 1e-12);
}

TEST(GroupAdvantages, WithoutNormalisationCentred) {
  std::vector<double> a = group_advantages({2, 4, 9}, 3, false);
  EXPECT_DOUBLE_EQ(a[0], -3);
  EXPECT_DOUBLE_EQ(a[1], -1);
  EXPECT_DOUBLE_EQ(a[2], 4);
  a = group_advantages({1, 0, 0, 0}, 4, false);
  EXPECT_DOUBLE_EQ(a[0], 0.75);
  EXPECT_DOUBLE_EQ(a[1], -0.25);
}

TEST(GroupAdvantages, ZeroVarianceGroupIsAllZero) {
  for (bool normalise : {true, false}) {
    std::vector<double> a = group_advantages({1, 1, 1, 1, 0, 0, 0, 0, 0.3, 0.3, 0.3, 0.3}, 4,
                                             normalise);
    for (double x : a) EXPECT_EQ(x, 0.0) << "normalise " << normalise;
  }
}

TEST(GroupAdvantages, GroupsAreIndependent) {
  const std::vector<double> g1 = {1, 0, 0, 1}, g2 = {0.2, 0.9, 0.5, 0.1}, g3 = {5, 5, 5, 5};
  std::vector<double> all = g1;
  all.insert(all.end(), g2.begin(), g2.end());
  all.insert(all.end(), g3.begin(), g3.end());
  for (bool normalise : {true, false}) {
    std::vector<double> a = group_advantages(all, 4, normalise);
    std::vector<double> a1 = group_advantages(g1, 4, normalise);
    std::vector<double> a2 = group_advantages(g2, 4, normalise);
    std::vector<double> a3 = group_advantages(g3, 4, normalise);
    for (int i = 0; i < 4; ++i) {
      EXPECT_DOUBLE_EQ(a[i], a1[i]);
      EXPECT_DOUBLE_EQ(a[4 + i], a2[i]);
      EXPECT_DOUBLE_EQ(a[8 + i], a3[i]);
    }
    // Each group's advantages sum to zero.
    for (int g = 0; g < 3; ++g)
      EXPECT_NEAR(a[4 * g] + a[4 * g + 1] + a[4 * g + 2] + a[4 * g + 3], 0.0, 1e-12);
  }
  // Changing one group's rewards leaves the others' advantages alone.
  std::vector<double> changed = all;
  changed[5] = 7;
  std::vector<double> a = group_advantages(all, 4, true), b = group_advantages(changed, 4, true);
  for (int i : {0, 1, 2, 3, 8, 9, 10, 11}) EXPECT_DOUBLE_EQ(a[i], b[i]);
  EXPECT_NE(a[4], b[4]);
}

TEST(GroupAdvantages, BadSizesThrow) {
  EXPECT_THROW(group_advantages({1, 0, 1}, 2, true), Error);   // not whole groups
  EXPECT_THROW(group_advantages({1, 0, 1, 0}, 0, true), Error);
  EXPECT_THROW(group_advantages({1, 0, 1, 0}, -2, true), Error);
  EXPECT_THROW(group_advantages({1, 0, 1, 0, 1}, 4, false), Error);
  EXPECT_TRUE(group_advantages({}, 4, true).empty());
}

TEST(ZeroVarianceGroup, DetectsEqualRewards) {
  const std::vector<double> r = {1, 1, 0, 1, 0, 0, 0.5, 0.5, 0.5};
  EXPECT_FALSE(zero_variance_group(r, 0, 3));
  EXPECT_FALSE(zero_variance_group(r, 3, 3));
  EXPECT_TRUE(zero_variance_group(r, 6, 3));
  EXPECT_TRUE(zero_variance_group(r, 0, 2));  // {1, 1}
  EXPECT_TRUE(zero_variance_group({0, 0, 0, 0}, 0, 4));
  EXPECT_FALSE(zero_variance_group({0, 0, 0, 1e-9}, 0, 4));
}

// ---------------------------------------------------------------------------
// policy_token_terms

GrpoOptions options_with(float clip_low, float clip_high, float kl = 0.f) {
  GrpoOptions o = GrpoOptions::defaults();
  o.clip_low = clip_low;
  o.clip_high = clip_high;
  o.kl_coef = kl;
  return o;
}

// ---------------------------------------------------------------------------
// In-batch substitution (Polaris's dynamic sampling)

// Kept when informative groups are MORE than a third of the batch.
TEST(InBatchSubstitution, KeepsStepAboveOneThirdInformative) {
  EXPECT_FALSE(substitution_keeps_step(0, 8));
  EXPECT_FALSE(substitution_keeps_step(2, 8));
  EXPECT_TRUE(substitution_keeps_step(3, 8));   // 3/8 > 1/3
  EXPECT_FALSE(substitution_keeps_step(3, 9));  // exactly a third: skipped
  EXPECT_TRUE(substitution_keeps_step(4, 9));
  EXPECT_TRUE(substitution_keeps_step(9, 9));
}

// Groups of 2; informative groups 1 and 4 of 6. Informative groups stay put;
// the four uninformative ones become copies of 1 and 4, each copied twice
// (spread evenly); the same seed gives the same plan, and some other seed a
// different order of copies.
TEST(InBatchSubstitution, CopiesInformativeGroupsEvenlyAndDeterministically) {
  const std::vector<double> rewards = {0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1};
  const std::vector<int> plan = substitution_sources(rewards, 2, 7);
  ASSERT_EQ(plan.size(), 6u);
  EXPECT_EQ(plan[1], 1);
  EXPECT_EQ(plan[4], 4);
  int copies[6] = {0};
  for (int g : {0, 2, 3, 5}) {
    ASSERT_TRUE(plan[size_t(g)] == 1 || plan[size_t(g)] == 4) << "group " << g << " -> " << plan[size_t(g)];
    ++copies[plan[size_t(g)]];
  }
  EXPECT_EQ(copies[1], 2);
  EXPECT_EQ(copies[4], 2);
  EXPECT_EQ(substitution_sources(rewards, 2, 7), plan);
  bool other_order = false;
  for (uint64_t seed = 0; seed < 32 && !other_order; ++seed)
    other_order = substitution_sources(rewards, 2, seed)[0] != plan[0];
  EXPECT_TRUE(other_order) << "the seed does not change which copy goes where";
  // Uneven counts: 5 uninformative over 2 informative -> copied 3 and 2 times.
  const std::vector<double> r7 = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  const std::vector<int> p7 = substitution_sources(r7, 2, 3);
  EXPECT_EQ(std::count(p7.begin(), p7.end(), 2) + std::count(p7.begin(), p7.end(), 5), 7);
  const auto twos = std::count(p7.begin(), p7.end(), 2);
  EXPECT_TRUE(twos == 3 || twos == 4) << twos;  // itself plus 2 or 3 copies
}

// Nothing informative: every group -1 (dropped). All informative: identity.
TEST(InBatchSubstitution, NoneOrAllInformative) {
  EXPECT_EQ(substitution_sources({1, 1, 0, 0, 2, 2}, 2, 1), (std::vector<int>{-1, -1, -1}));
  EXPECT_EQ(substitution_sources({1, 0, 0, 1, 2, 1}, 2, 1), (std::vector<int>{0, 1, 2}));
  EXPECT_THROW(substitution_sources({1, 0, 0}, 2, 1), Error);
}

TEST(PolicyTokenTerms, DefaultBoundsAreAsymmetric) {
  GrpoOptions o = GrpoOptions::defaults();
  EXPECT_FLOAT_EQ(o.clip_low, 0.2f);
  EXPECT_FLOAT_EQ(o.clip_high, 0.28f);
  EXPECT_EQ(o.kl_coef, 0.f);
}

TEST(PolicyTokenTerms, InsideClipRangeIsUnclipped) {
  const GrpoOptions o = GrpoOptions::defaults();
  for (double A : {1.5, -0.7}) {
    const float lp = -1.0f, old = -1.1f;  // ratio exp(0.1) = 1.105
    const double ratio = std::exp(double(lp) - double(old));
    PolicyTokenTerms t = policy_token_terms(lp, old, A, nullptr, o);
    EXPECT_FALSE(t.clipped) << A;
    EXPECT_NEAR(t.weight, ratio * A, 1e-6) << A;
    EXPECT_NEAR(t.objective, ratio * A, 1e-12) << A;
    EXPECT_EQ(t.kl, 0.0);
  }
  // ratio exactly 1 (the first mini-batch): weight = A.
  PolicyTokenTerms t = policy_token_terms(-2.f, -2.f, 0.9, nullptr, o);
  EXPECT_FALSE(t.clipped);
  EXPECT_FLOAT_EQ(t.weight, 0.9f);
  EXPECT_DOUBLE_EQ(t.objective, 0.9);
}

TEST(PolicyTokenTerms, PositiveAdvantageAboveHighBoundIsClipped) {
  const GrpoOptions o = GrpoOptions::defaults();  // 0.2 / 0.28
  const double A = 2.0;
  // ratio exp(0.3) = 1.35 > 1.28
  PolicyTokenTerms t = policy_token_terms(-0.7f, -1.0f, A, nullptr, o);
  EXPECT_TRUE(t.clipped);
  EXPECT_EQ(t.weight, 0.f);
  EXPECT_NEAR(t.objective, (1.0 + 0.28) * A, 1e-6);
  // ratio 1.25 is inside the asymmetric upper bound (would be clipped by a
  // symmetric 0.2).
  t = policy_token_terms(float(std::log(1.25)), 0.f, A, nullptr, o);
  EXPECT_FALSE(t.clipped);
  EXPECT_NEAR(t.weight, 1.25 * A, 1e-5);
  t = policy_token_terms(float(std::log(1.25)), 0.f, A, nullptr, options_with(0.2f, 0.2f));
  EXPECT_TRUE(t.clipped);
  EXPECT_NEAR(t.objective, 1.2 * A, 1e-6);
}

TEST(PolicyTokenTerms, NegativeAdvantageBelowLowBoundIsClipped) {
  const GrpoOptions o = GrpoOptions::defaults();
  const double A = -1.5;
  // ratio exp(-0.4) = 0.67 < 0.8
  PolicyTokenTerms t = policy_token_terms(-1.4f, -1.0f, A, nullptr, o);
  EXPECT_TRUE(t.clipped);
  EXPECT_EQ(t.weight, 0.f);
  EXPECT_NEAR(t.objective, (1.0 - 0.2) * A, 1e-6);
  // ratio 0.82: inside
  t = policy_token_terms(float(std::log(0.82)), 0.f, A, nullptr, o);
  EXPECT_FALSE(t.clipped);
  EXPECT_NEAR(t.weight, 0.82 * A, 1e-5);
}

// Dual clip: for A < 0 the objective is at least c A, so a ratio that ran
// far above 1 on a bad answer adds no gradient; positive advantages and
// ratios below c are untouched.
TEST(PolicyTokenTerms, DualClipBoundsNegativeAdvantages) {
  GrpoOptions o = GrpoOptions::defaults();
  o.clip_ratio_c = 3.f;
  const double A = -1.0;
  PolicyTokenTerms t = policy_token_terms(float(std::log(5.0)), 0.f, A, nullptr, o);  // ratio 5
  EXPECT_TRUE(t.clipped);
  EXPECT_EQ(t.weight, 0.f);
  EXPECT_NEAR(t.objective, 3.0 * A, 1e-12);
  t = policy_token_terms(float(std::log(2.0)), 0.f, A, nullptr, o);  // ratio 2 < c
  EXPECT_FALSE(t.clipped);
  EXPECT_NEAR(t.weight, 2.0 * A, 1e-5);
  t = policy_token_terms(float(std::log(5.0)), 0.f, 1.0, nullptr, o);  // A > 0: upper clip only
  EXPECT_NEAR(t.objective, 1.28, 1e-6);
  o.clip_ratio_c = 0.f;  // off: the plain clipped objective, r A
  t = policy_token_terms(float(std::log(5.0)), 0.f, A, nullptr, o);
  EXPECT_FALSE(t.clipped);
  EXPECT_NEAR(t.objective, 5.0 * A, 1e-5);
}

TEST(PolicyTokenTerms, MinPicksUnclippedOnTheOtherSide) {
  const GrpoOptions o = GrpoOptions::defaults();
  // A > 0 with ratio < 1 - clip_low: r A < clip(r) A, the min keeps r A and
  // its gradient (the policy may still raise a token it lowered too far).
  const double ratio = std::exp(-0.5);  // 0.607
  PolicyTokenTerms t = policy_token_terms(-1.5f, -1.0f, 1.0, nullptr, o);
  EXPECT_FALSE(t.clipped);
  EXPECT_NEAR(t.weight, ratio, 1e-6);
  EXPECT_NEAR(t.objective, ratio, 1e-6);
  // A < 0 with ratio > 1 + clip_high: likewise unclipped.
  const double high = std::exp(0.5);
  t = policy_token_terms(-0.5f, -1.0f, -2.0, nullptr, o);
  EXPECT_FALSE(t.clipped);
  EXPECT_NEAR(t.weight, -2.0 * high, 1e-5);
  EXPECT_NEAR(t.objective, -2.0 * high, 1e-5);
}

TEST(PolicyTokenTerms, ZeroAdvantage) {
  PolicyTokenTerms t = policy_token_terms(-0.2f, -1.0f, 0.0, nullptr, GrpoOptions::defaults());
  EXPECT_FALSE(t.clipped);
  EXPECT_EQ(t.weight, 0.f);
  EXPECT_EQ(t.objective, 0.0);
}

TEST(PolicyTokenTerms, K3KlValueAndWeight) {
  const float beta = 0.05f;
  const GrpoOptions o = options_with(0.2f, 0.28f, beta);
  const float lp = -1.2f, old = -1.25f, ref = -0.9f;
  const double A = 0.8;
  const double d = double(ref) - double(lp);  // 0.3
  const double k3 = std::exp(d) - d - 1.0;
  PolicyTokenTerms t = policy_token_terms(lp, old, A, &ref, o);
  EXPECT_NEAR(t.kl, k3, 1e-12);
  EXPECT_NEAR(t.kl, 0.0498588, 1e-6);  // e^0.3 - 1.3
  const double ratio = std::exp(double(lp) - double(old));
  EXPECT_NEAR(t.weight, ratio * A - beta * (1.0 - std::exp(d)), 1e-6);
  // The KL weight term stays when the policy term is clipped.
  t = policy_token_terms(-0.7f, -1.0f, 2.0, &ref, o);
  EXPECT_TRUE(t.clipped);
  const double d2 = double(ref) - double(-0.7f);
  EXPECT_NEAR(t.weight, -beta * (1.0 - std::exp(d2)), 1e-7);
  EXPECT_NEAR(t.kl, std::exp(d2) - d2 - 1.0, 1e-12);
  // k3 is >= 0 and 0 when the policy equals the reference.
  t = policy_token_terms(ref, old, A, &ref, o);
  EXPECT_EQ(t.kl, 0.0);
  // No reference, or beta 0: no KL at all.
  t = policy_token_terms(lp, old, A, nullptr, o);
  EXPECT_EQ(t.kl, 0.0);
  EXPECT_NEAR(t.weight, ratio * A, 1e-6);
  t = policy_token_terms(lp, old, A, &ref, options_with(0.2f, 0.28f, 0.f));
  EXPECT_EQ(t.kl, 0.0);
  EXPECT_NEAR(t.weight, ratio * A, 1e-6);
}

// ---------------------------------------------------------------------------
// The clipped objective's gradient through the whole model

// vocab 20, hidden 16, 2 layers, 2 heads over 1 KV head of dim 8, MLP 32, untied.
ModelConfig tiny_qwen3() { return qwen3_config(20, 16, 2, 2, 1, 8, 32, false); }

// Two packed rows of rollouts, as grpo.cpp lays them out: each document is
// prompt + completion, positions restart per document, the last token of a
// document predicts nothing. `policy` marks the positions that predict a
// completion token (the tokens the objective sums over); each carries its
// rollout's advantage.
struct RolloutBatch {
  Batch batch;
  std::vector<size_t> policy;      // positions (flat) of completion predictions
  std::vector<double> advantage;   // per entry of `policy`
};

RolloutBatch rollout_batch(int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> token(0, vocab - 1);
  const int B = 2, T = 9;
  // (prompt length, completion length, advantage) per document, row by row.
  struct Doc {
    int prompt, completion;
    double advantage;
  };
  const std::vector<std::vector<Doc>> rows = {{{2, 2, 1.3}, {2, 3, -0.9}},
                                              {{3, 4, 0.7}, {1, 1, -1.6}}};
  RolloutBatch rb;
  Batch& b = rb.batch;
  b.B = B;
  b.T = T;
  const size_t N = size_t(B) * T;
  b.tokens.resize(N);
  b.targets.assign(N, -1);
  b.positions.assign(N, 0);
  b.doc_ids.assign(N, -1);
  b.weights.assign(N, 0.f);
  for (auto& t : b.tokens) t = token(rng);
  for (int r = 0; r < B; ++r) {
    int start = 0, doc = 0;
    for (const Doc& d : rows[r]) {
      const int length = d.prompt + d.completion;
      for (int j = 0; j < length; ++j) {
        const size_t at = size_t(r) * T + start + j;
        b.positions[at] = j;
        b.doc_ids[at] = doc;
        if (j + 1 < length) b.targets[at] = b.tokens[at + 1];
        // completion token k (position prompt + k) is predicted at prompt + k - 1
        if (j >= d.prompt - 1 && j + 1 < length) {
          rb.policy.push_back(at);
          rb.advantage.push_back(d.advantage);
        }
      }
      start += length;
      ++doc;
    }
    for (int j = start; j < T; ++j) b.doc_ids[size_t(r) * T + j] = doc;  // padding
  }
  return rb;
}

struct Objective {
  double value = 0;
  std::vector<bool> clipped;  // per policy token
};

// The objective written out from the model's log-probs and entropies:
//   L = (1/n) sum_t [ -min(r_t A_t, clip(r_t) A_t) + beta k3_t ] - c (1/n) sum_t H_t
Objective grpo_objective(Transformer& model, const RolloutBatch& rb,
                         const std::vector<float>& old_lp, const std::vector<float>& ref_lp,
                         const GrpoOptions& o) {
  LossOutputs out = model.forward(rb.batch);
  Objective result;
  const double n = double(rb.policy.size());
  for (size_t k = 0; k < rb.policy.size(); ++k) {
    const size_t at = rb.policy[k];
    const double lp = out.logprobs[at], A = rb.advantage[k];
    const double r = std::exp(lp - double(old_lp[k]));
    const double rc = std::min(std::max(r, 1.0 - o.clip_low), 1.0 + o.clip_high);
    const double d = double(ref_lp[k]) - lp;
    const double k3 = std::exp(d) - d - 1.0;
    result.value += (-std::min(r * A, rc * A) + o.kl_coef * k3) / n;
    result.value -= o.entropy_coef * double(out.entropies[at]) / n;
    result.clipped.push_back(rc * A < r * A);
  }
  return result;
}

enum class WeightMode { Grpo, IgnoreClipping, AdvantageOnly };

// The gradient GRPO's update computes: loss-op weights from
// policy_token_terms, entropy weights c on the policy tokens, scale 1/n.
std::vector<float> analytic_gradient(Transformer& model, const RolloutBatch& rb,
                                     const std::vector<float>& old_lp,
                                     const std::vector<float>& ref_lp, const GrpoOptions& o,
                                     WeightMode mode, int* clipped_count) {
  LossOutputs current = model.forward(rb.batch);
  Batch b = rb.batch;
  b.entropy_weights.assign(b.weights.size(), 0.f);
  *clipped_count = 0;
  for (size_t k = 0; k < rb.policy.size(); ++k) {
    const size_t at = rb.policy[k];
    PolicyTokenTerms t =
        policy_token_terms(current.logprobs[at], old_lp[k], rb.advantage[k], &ref_lp[k], o);
    *clipped_count += t.clipped;
    float w = t.weight;
    if (mode == WeightMode::IgnoreClipping) {
      // the unclipped branch everywhere (plus the KL term)
      const double ratio = std::exp(double(current.logprobs[at]) - double(old_lp[k]));
      const double d = double(ref_lp[k]) - double(current.logprobs[at]);
      w = float(ratio * rb.advantage[k] - o.kl_coef * (1.0 - std::exp(d)));
    } else if (mode == WeightMode::AdvantageOnly) {
      w = float(rb.advantage[k]);
    }
    b.weights[at] = w;
    b.entropy_weights[at] = o.entropy_coef;
  }
  model.zero_grads();
  model.forward_backward(b, float(1.0 / double(rb.policy.size())));
  return model.get_grads();
}

struct Comparison {
  double worst = 0;
  std::string worst_name;
  int checked = 0, skipped = 0;
};

class GrpoGradient : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = tiny_qwen3();
    model_.reset(new Transformer(config_, ops_));
    params_ = random_params(*model_, 17);
    model_->set_params(params_);
    rb_ = rollout_batch(config_.vocab_size, 5);
    // Old log-probs: current + offsets in [-0.4, 0.4], so ratios span
    // [0.67, 1.49] across both clip bounds; a reference near the policy.
    LossOutputs out = model_->forward(rb_.batch);
    std::mt19937_64 rng(23);
    std::uniform_real_distribution<float> offset(-0.4f, 0.4f), ref_offset(-0.5f, 0.5f);
    for (size_t at : rb_.policy) {
      old_lp_.push_back(out.logprobs[at] + offset(rng));
      ref_lp_.push_back(out.logprobs[at] + ref_offset(rng));
    }
    options_.kl_coef = 0.1f;
    options_.entropy_coef = 0.05f;
  }

  // Double central differences of the objective for a sample of every
  // tensor's entries (its largest-gradient entry included), against `grads`.
  // Entries whose +-eps step moves a token across a clip boundary are
  // skipped (the objective has a kink there).
  Comparison compare(const std::vector<std::vector<float>>& analytic,
                     std::vector<Comparison>* per_mode) {
    const std::vector<float>& grads = analytic[0];
    std::mt19937_64 rng(99);
    const double eps = 1e-3;
    double global_max = 0;
    for (float g : grads) global_max = std::max(global_max, double(std::fabs(g)));
    per_mode->assign(analytic.size(), Comparison());
    for (const TensorInfo& t : model_->layout().tensors) {
      double max_grad = 0;
      const std::vector<size_t> picks = gradient_check_picks(grads, t, 8, rng, &max_grad);
      // fp32 forward noise: errors relative to the tensor's largest gradient,
      // floored at 2% of the model's largest.
      const double denom = std::max(max_grad, 2e-2 * global_max);
      for (size_t i : picks) {
        std::vector<float> p = params_;
        const float plus = float(params_[i] + eps), minus = float(params_[i] - eps);
        p[i] = plus;
        model_->set_params(p);
        Objective f_plus = grpo_objective(*model_, rb_, old_lp_, ref_lp_, options_);
        p[i] = minus;
        model_->set_params(p);
        Objective f_minus = grpo_objective(*model_, rb_, old_lp_, ref_lp_, options_);
        if (f_plus.clipped != f_minus.clipped || f_plus.clipped != clipped_at_start_) {
          for (auto& c : *per_mode) ++c.skipped;
          continue;
        }
        const double fd = (f_plus.value - f_minus.value) / (double(plus) - double(minus));
        for (size_t m = 0; m < analytic.size(); ++m) {
          const double err = std::fabs(fd - analytic[m][i]) / denom;
          Comparison& c = (*per_mode)[m];
          ++c.checked;
          if (err > c.worst) c.worst = err, c.worst_name = t.name + "[" + std::to_string(i - t.offset) + "]";
        }
      }
    }
    model_->set_params(params_);
    return (*per_mode)[0];
  }

  CpuOps ops_;
  ModelConfig config_;
  std::unique_ptr<Transformer> model_;
  std::vector<float> params_;
  RolloutBatch rb_;
  std::vector<float> old_lp_, ref_lp_;
  GrpoOptions options_ = GrpoOptions::defaults();
  std::vector<bool> clipped_at_start_;
};

TEST_F(GrpoGradient, ClippedLossMatchesFiniteDifferencesThroughTheModel) {
  ASSERT_GE(rb_.policy.size(), 8u);
  Objective start = grpo_objective(*model_, rb_, old_lp_, ref_lp_, options_);
  clipped_at_start_ = start.clipped;
  int clipped = 0;
  std::vector<std::vector<float>> analytic;
  analytic.push_back(analytic_gradient(*model_, rb_, old_lp_, ref_lp_, options_, WeightMode::Grpo,
                                       &clipped));
  // The setup must exercise both branches, with advantages of both signs.
  const int n = int(rb_.policy.size());
  EXPECT_GT(clipped, 0) << "no token clipped: the check proves nothing about clipping";
  EXPECT_LT(clipped, n) << "every token clipped";
  int clipped_pos = 0, clipped_neg = 0;
  for (int k = 0; k < n; ++k)
    if (start.clipped[k]) (rb_.advantage[k] > 0 ? clipped_pos : clipped_neg) += 1;
  EXPECT_EQ(clipped_pos + clipped_neg, clipped);  // grpo_objective agrees with policy_token_terms
  EXPECT_GT(clipped_pos, 0);
  EXPECT_GT(clipped_neg, 0);
  int ignored = 0;
  analytic.push_back(analytic_gradient(*model_, rb_, old_lp_, ref_lp_, options_,
                                       WeightMode::IgnoreClipping, &ignored));
  analytic.push_back(analytic_gradient(*model_, rb_, old_lp_, ref_lp_, options_,
                                       WeightMode::AdvantageOnly, &ignored));

  std::vector<Comparison> per_mode;
  compare(analytic, &per_mode);
  const Comparison& grpo = per_mode[0];
  EXPECT_GT(grpo.checked, 100);
  EXPECT_LT(grpo.skipped, grpo.checked / 10);
  EXPECT_LT(grpo.worst, 2e-2) << "worst at " << grpo.worst_name;
  // Negative controls: the same comparison must fail when the weights ignore
  // the clipping (so the check can see a clipping bug), or use the bare
  // advantage (no ratio, no clipping, no KL).
  EXPECT_GT(per_mode[1].worst, 0.1) << "ignoring clipping passed the check";
  EXPECT_GT(per_mode[2].worst, 0.1) << "weight = A passed the check";
  std::printf("clipped %d of %d tokens; checked %d entries (%d skipped at a clip boundary); "
              "worst relative error %.2e (%s); ignoring clipping %.2e; weight = A %.2e\n",
              clipped, n, grpo.checked, grpo.skipped, grpo.worst, grpo.worst_name.c_str(),
              per_mode[1].worst, per_mode[2].worst);
}

// ---------------------------------------------------------------------------
// StagedValue

TEST(StagedValue, ParsesStagesAndLooksUp) {
  StagedValue v = StagedValue::parse("temperature-schedule", "0:1.0,50:1.1");
  ASSERT_EQ(v.stages.size(), 2u);
  EXPECT_DOUBLE_EQ(v.at(0), 1.0);
  EXPECT_DOUBLE_EQ(v.at(49), 1.0);
  EXPECT_DOUBLE_EQ(v.at(50), 1.1);
  EXPECT_DOUBLE_EQ(v.at(1000), 1.1);
  v = StagedValue::parse("max-response-schedule", "0:256,10:512,20:1024");
  EXPECT_DOUBLE_EQ(v.at(9), 256);
  EXPECT_DOUBLE_EQ(v.at(10), 512);
  EXPECT_DOUBLE_EQ(v.at(25), 1024);
  // A first stage after step 0: its value holds before it too.
  v = StagedValue::parse("temperature-schedule", "5:0.9,8:1.2");
  EXPECT_DOUBLE_EQ(v.at(0), 0.9);
  EXPECT_DOUBLE_EQ(v.at(8), 1.2);
}

TEST(StagedValue, BareValueIsConstant) {
  StagedValue v = StagedValue::parse("temperature-schedule", "0.7");
  ASSERT_EQ(v.stages.size(), 1u);
  EXPECT_DOUBLE_EQ(v.at(0), 0.7);
  EXPECT_DOUBLE_EQ(v.at(12345), 0.7);
  EXPECT_DOUBLE_EQ(StagedValue::constant(3.0).at(7), 3.0);
}

TEST(StagedValue, ErrorsNameTheFlag) {
  const std::string flag = "temperature-schedule";
  for (const std::string bad : {"50:1.0,10:1.1", "0:1.0,0:1.1", "garbage", "0:abc", "x:1.0",
                                "1.0x", "-5:1.0", "", ",", "0:1.0,,5:2"}) {
    const std::string message = error_of([&] { StagedValue::parse(flag, bad); });
    EXPECT_NE(message, "") << "'" << bad << "' parsed";
    EXPECT_NE(message.find("--" + flag), std::string::npos)
        << "'" << bad << "': message does not name the flag: " << message;
  }
  EXPECT_NE(error_of([&] { StagedValue::parse(flag, "50:1.0,10:1.1"); }).find("increase"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// GrpoOptions::from_flags

GrpoOptions options_from(std::vector<std::string> args) {
  args.insert(args.begin(), "polaris_train");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(&a[0]);
  return GrpoOptions::from_flags(Flags(int(argv.size()), argv.data(), train_flag_table()));
}

TEST(GrpoOptions, Defaults) {
  GrpoOptions o = options_from({});
  EXPECT_EQ(o.group_size, 8);
  EXPECT_FLOAT_EQ(o.clip_low, 0.2f);
  EXPECT_FLOAT_EQ(o.clip_high, 0.28f);
  EXPECT_TRUE(o.std_normalize);
  EXPECT_EQ(o.dynamic_sampling, DynamicSampling::Off);
  EXPECT_DOUBLE_EQ(o.temperature.at(0), 1.0);
  EXPECT_DOUBLE_EQ(o.max_response.at(0), 256);
}

TEST(GrpoOptions, ParsesFlags) {
  GrpoOptions o = options_from({"--group-size", "4", "--clip-low", "0.1", "--clip-high", "0.3",
                                "--kl-coef", "0.02", "--no-std-normalize", "--dynamic-sampling",
                                "--temperature-schedule", "0:1.0,10:1.2", "--max-response", "16"});
  EXPECT_EQ(o.group_size, 4);
  EXPECT_FLOAT_EQ(o.clip_low, 0.1f);
  EXPECT_FLOAT_EQ(o.clip_high, 0.3f);
  EXPECT_FLOAT_EQ(o.kl_coef, 0.02f);
  EXPECT_FALSE(o.std_normalize);
  EXPECT_EQ(o.dynamic_sampling, DynamicSampling::Refill);
  EXPECT_DOUBLE_EQ(o.temperature.at(10), 1.2);
  EXPECT_DOUBLE_EQ(o.max_response.at(3), 16);
  EXPECT_EQ(options_from({"--dynamic-sampling-mode", "substitute"}).dynamic_sampling,
            DynamicSampling::Substitute);
  EXPECT_EQ(options_from({"--dynamic-sampling-mode", "refill", "--max-refills", "2"}).dynamic_sampling,
            DynamicSampling::Refill);
}

TEST(GrpoOptions, Errors) {
  struct Case {
    std::vector<std::string> args;
    std::string flag;
  };
  const std::vector<Case> cases = {
      {{"--group-size", "1"}, "--group-size"},
      {{"--group-size", "0"}, "--group-size"},
      {{"--clip-low", "1.5"}, "--clip-low"},
      {{"--clip-low", "0"}, "--clip-low"},
      {{"--clip-high", "-0.1"}, "--clip-high"},
      {{"--kl-coef", "-1"}, "--kl-coef"},
      {{"--prompts-per-step", "0"}, "--prompts-per-step"},
      {{"--temperature", "0"}, "--temperature"},
      {{"--temperature-schedule", "garbage"}, "--temperature-schedule"},
      {{"--max-response", "0"}, "--max-response"},
      {{"--max-response-schedule", "0:0"}, "--max-response"},
      {{"--dynamic-sampling-mode", "sometimes"}, "--dynamic-sampling-mode"},
      {{"--dynamic-sampling-mode", "substitute", "--max-refills", "2"}, "--max-refills"},
      {{"--max-refills", "2"}, "--max-refills"},
  };
  for (const Case& c : cases) {
    const std::string message = error_of([&] { options_from(c.args); });
    EXPECT_NE(message, "") << c.args[0] << " " << c.args[1] << " accepted";
    EXPECT_NE(message.find(c.flag), std::string::npos)
        << c.args[0] << " " << c.args[1] << ": '" << message << "' does not name " << c.flag;
  }
}

}  // namespace
