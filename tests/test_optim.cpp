// Tests for optim/: LR schedules, AdamW (math, decay mask, ranges, state),
// gradient clipping, and gradient accumulation with the real Transformer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/cpu_ops.h"
#include "model/params.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "src/common/error.h"
#include "tests/test_util.h"

namespace polaris {
namespace {

// ---- helpers -----------------------------------------------------------------

// A hand-made layout: tensors of the given sizes and decay flags, in order.
ParamLayout make_layout(const std::vector<std::pair<size_t, bool>>& tensors) {
  ParamLayout L;
  for (size_t i = 0; i < tensors.size(); i++) {
    TensorInfo t;
    t.name = "t" + std::to_string(i);
    t.offset = L.total;
    t.numel = tensors[i].first;
    t.shape = {(int64_t)t.numel};
    t.weight_decay = tensors[i].second;
    L.tensors.push_back(t);
    L.total += t.numel;
  }
  return L;
}

std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// A flat buffer in CpuOps memory, released on scope exit.
struct Buffer {
  Ops& ops;
  float* ptr;
  size_t n;
  Buffer(Ops& o, const std::vector<float>& host) : ops(o), ptr(o.alloc(host.size())), n(host.size()) {
    ops.upload(ptr, host.data(), n);
  }
  ~Buffer() { ops.release(ptr); }
  std::vector<float> host() const {
    std::vector<float> out(n);
    ops.download(out.data(), ptr, n);
    return out;
  }
  void set(const std::vector<float>& host) { ops.upload(ptr, host.data(), n); }
};

// ---- schedules ---------------------------------------------------------------

TEST(Schedule, WarmupIsLinearFromMaxOverW) {
  for (const char* kind : {"cosine", "linear", "constant"}) {
    LrSchedule s = make_schedule(kind, 1.0f, 0.1f, 10, 110);
    EXPECT_FLOAT_EQ(s.lr_at(0), 0.1f) << kind;
    EXPECT_FLOAT_EQ(s.lr_at(4), 0.5f) << kind;
    EXPECT_FLOAT_EQ(s.lr_at(9), 1.0f) << kind;
    EXPECT_FLOAT_EQ(s.lr_at(10), 1.0f) << kind;  // first decay step: p = 0
  }
}

TEST(Schedule, CosineKeyValues) {
  LrSchedule s = make_schedule("cosine", 2.0f, 0.1f, 10, 110);
  EXPECT_FLOAT_EQ(s.lr_at(60), 0.2f + 0.5f * 1.8f);  // p = 0.5: midway
  EXPECT_NEAR(s.lr_at(35), 0.2 + 0.9 * (1 + std::cos(M_PI * 0.25)), 1e-6);
  EXPECT_FLOAT_EQ(s.lr_at(110), 0.2f);  // end value min_lr
  EXPECT_FLOAT_EQ(s.lr_at(500), 0.2f);  // stays there
  EXPECT_GT(s.lr_at(109), 0.2f);
}

TEST(Schedule, LinearKeyValues) {
  LrSchedule s = make_schedule("linear", 2.0f, 0.1f, 10, 110);
  EXPECT_FLOAT_EQ(s.lr_at(60), 1.1f);
  EXPECT_FLOAT_EQ(s.lr_at(35), 2.0f - 1.8f * 0.25f);
  EXPECT_FLOAT_EQ(s.lr_at(110), 0.2f);
  EXPECT_FLOAT_EQ(s.lr_at(1000), 0.2f);
}

TEST(Schedule, ConstantStaysAtMax) {
  LrSchedule s = make_schedule("constant", 3e-4f, 0.1f, 5, 50);
  for (int step = 5; step < 60; step++) EXPECT_FLOAT_EQ(s.lr_at(step), 3e-4f);
}

TEST(Schedule, NoWarmupStartsAtMax) {
  LrSchedule s = make_schedule("cosine", 1.0f, 0.0f, 0, 100);
  EXPECT_FLOAT_EQ(s.lr_at(0), 1.0f);
  EXPECT_FLOAT_EQ(s.lr_at(100), 0.0f);
  // warmup == total: all warmup, then min_lr
  LrSchedule w = make_schedule("linear", 1.0f, 0.5f, 4, 4);
  EXPECT_FLOAT_EQ(w.lr_at(3), 1.0f);
  EXPECT_FLOAT_EQ(w.lr_at(4), 0.5f);
}

TEST(Schedule, WarmupRisesThenDecayIsMonotonic) {
  for (const char* kind : {"cosine", "linear"}) {
    LrSchedule s = make_schedule(kind, 1e-3f, 0.1f, 20, 200);
    for (int step = 1; step < 20; step++) EXPECT_GT(s.lr_at(step), s.lr_at(step - 1)) << kind;
    for (int step = 21; step <= 200; step++) EXPECT_LT(s.lr_at(step), s.lr_at(step - 1)) << kind;
    for (int step = 0; step < 250; step++) {
      EXPECT_LE(s.lr_at(step), 1e-3f) << kind;
      EXPECT_GT(s.lr_at(step), 0.f) << kind;
    }
  }
}

TEST(Schedule, ValidationNamesTheFlag) {
  EXPECT_NE(error_of([] { make_schedule("step", 1, 0.1f, 0, 10); }).find("--lr-schedule"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule("cosine", -1, 0.1f, 0, 10); }).find("--lr"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule("cosine", 1, -0.1f, 0, 10); }).find("--min-lr-fraction"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule("cosine", 1, 0.1f, -1, 10); }).find("--warmup-steps"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule("cosine", 1, 0.1f, 11, 10); }).find("--warmup-steps"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule("cosine", 1, 0.1f, 0, 0); }).find("--steps"),
            std::string::npos);
}

// ---- AdamW -------------------------------------------------------------------

// One scalar over 3 steps against the formulas computed in double by hand:
// bias correction and decoupled decay included, with a grad_scale.
TEST(AdamW, MatchesHandComputedScalar) {
  CpuOps ops;
  ParamLayout L = make_layout({{1, true}});
  AdamWConfig cfg;  // beta1 0.9, beta2 0.95, eps 1e-8, wd 0.1
  AdamW opt(ops, L, 0, 1, cfg);

  const double lr = 0.01, gs = 0.5;
  const double grads[3] = {0.4, -0.2, 1.0};
  double p = 1.5, m = 0, v = 0;
  Buffer param(ops, {(float)p}), grad(ops, {0.f});
  for (int t = 1; t <= 3; t++) {
    grad.set({(float)grads[t - 1]});
    opt.step(param.ptr, grad.ptr, (float)lr, (float)gs);
    const double g = gs * grads[t - 1];
    m = 0.9 * m + 0.1 * g;
    v = 0.95 * v + 0.05 * g * g;
    const double mhat = m / (1 - std::pow(0.9, t)), vhat = v / (1 - std::pow(0.95, t));
    p -= lr * (mhat / (std::sqrt(vhat) + 1e-8) + 0.1 * p);
    EXPECT_NEAR(param.host()[0], p, 1e-6) << "step " << t;
    EXPECT_NEAR(opt.moments_host(0)[0], m, 1e-7) << "step " << t;
    EXPECT_NEAR(opt.moments_host(1)[0], v, 1e-8) << "step " << t;
    EXPECT_EQ(opt.step_count(), t);
  }
}

TEST(AdamW, FirstStepByHand) {
  CpuOps ops;
  ParamLayout L = make_layout({{1, true}});
  AdamW opt(ops, L, 0, 1);
  Buffer param(ops, {1.5f}), grad(ops, {0.4f});
  opt.step(param.ptr, grad.ptr, 0.01f, 0.5f);
  // g' = 0.2; m^ = 0.2, v^ = 0.04 -> m^/sqrt(v^) = 1; decay 0.1*1.5
  EXPECT_NEAR(param.host()[0], 1.5 - 0.01 * (1.0 + 0.15), 1e-6);
}

// With zero gradients the Adam term is 0, so decayed tensors shrink by
// (1 - lr*wd) and every other tensor is unchanged -- on the real layout.
TEST(AdamW, DecayOnlyWhereLayoutSaysSo) {
  // The untied case: its LM head is a matrix (decayed), its embedding not.
  for (const std::string preset : {"qwen3-tiny", "gpt2-tiny", "qwen3-tiny untied"}) {
    CpuOps ops;
    ModelConfig config = config_from_preset(preset.substr(0, preset.find(' ')));
    config.tied_embeddings = preset.find("untied") == std::string::npos;
    ParamLayout L = build_param_layout(config);
    std::vector<float> init(L.total);
    init_params(config, L, 7, init.data());
    Buffer params(ops, init), grads(ops, std::vector<float>(L.total, 0.f));

    const float lr = 0.5f, wd = 0.1f;
    AdamWConfig cfg;
    cfg.weight_decay = wd;
    AdamW opt(ops, L, 0, L.total, cfg);
    opt.step(params.ptr, grads.ptr, lr);
    std::vector<float> out = params.host();

    int decayed = 0, kept = 0;
    for (const TensorInfo& t : L.tensors) {
      const bool is_matrix_weight = t.name.find("norm") == std::string::npos &&
                                    t.name.find("bias") == std::string::npos &&
                                    t.name.find("embed") == std::string::npos;
      EXPECT_EQ(t.weight_decay, is_matrix_weight) << preset << " " << t.name;
      for (size_t i = t.offset; i < t.offset + t.numel; i++) {
        const float expect = t.weight_decay ? init[i] - lr * wd * init[i] : init[i];
        ASSERT_FLOAT_EQ(out[i], expect) << preset << " " << t.name << " [" << i - t.offset << "]";
      }
      (t.weight_decay ? decayed : kept)++;
    }
    EXPECT_GT(decayed, 0) << preset;
    EXPECT_GT(kept, 0) << preset;
    if (!config.tied_embeddings) {
      ASSERT_GE(L.find("lm_head"), 0);
      EXPECT_TRUE(L.tensors[size_t(L.find("lm_head"))].weight_decay);
    }
  }
}

// A range that cuts through tensors updates exactly [begin, end), and inside
// it gives the same bits as an optimizer over the whole buffer.
TEST(AdamW, RangeTouchesOnlyItsRange) {
  CpuOps ops;
  ParamLayout L = make_layout({{10, false}, {24, true}, {7, false}, {16, true}, {5, false}});
  const size_t begin = 13, end = 50;  // inside tensor 1 .. inside tensor 3
  std::vector<float> init = random_vector(L.total, 1);
  Buffer p_range(ops, init), p_full(ops, init);
  Buffer grads(ops, random_vector(L.total, 2));

  AdamW ranged(ops, L, begin, end), full(ops, L, 0, L.total);
  EXPECT_EQ(ranged.size(), end - begin);
  for (int s = 0; s < 3; s++) {
    grads.set(random_vector(L.total, 10 + s));
    ranged.step(p_range.ptr, grads.ptr, 1e-2f, 0.7f);
    full.step(p_full.ptr, grads.ptr, 1e-2f, 0.7f);
  }
  std::vector<float> a = p_range.host(), b = p_full.host();
  for (size_t i = 0; i < L.total; i++) {
    if (i < begin || i >= end) {
      EXPECT_EQ(a[i], init[i]) << i;
    } else {
      EXPECT_NE(a[i], init[i]) << i;
      EXPECT_EQ(a[i], b[i]) << i;
    }
  }
  std::vector<float> m_full = full.moments_host(0), m_range = ranged.moments_host(0);
  ASSERT_EQ(m_range.size(), end - begin);
  for (size_t i = begin; i < end; i++) EXPECT_EQ(m_range[i - begin], m_full[i]);
}

TEST(AdamW, RejectsBadRangeAndState) {
  CpuOps ops;
  ParamLayout L = make_layout({{8, true}});
  EXPECT_THROW(AdamW(ops, L, 0, 9), Error);
  EXPECT_THROW(AdamW(ops, L, 5, 4), Error);
  AdamWConfig bad;
  bad.beta2 = 1.f;
  EXPECT_THROW(AdamW(ops, L, 0, 8, bad), Error);
  AdamW opt(ops, L, 2, 6);
  EXPECT_THROW(opt.set_state(1, std::vector<float>(8), std::vector<float>(8)), Error);
  EXPECT_THROW(opt.set_state(-1, std::vector<float>(4), std::vector<float>(4)), Error);
  EXPECT_THROW(opt.moments_host(2), Error);
}

// 3 steps, export, import into a fresh AdamW, 2 more steps == 5 steps, bitwise.
TEST(AdamW, StateRoundTripIsBitwise) {
  CpuOps ops;
  ParamLayout L = make_layout({{12, false}, {30, true}, {6, false}});
  std::vector<float> init = random_vector(L.total, 3);
  const LrSchedule sched = make_schedule("cosine", 1e-2f, 0.1f, 2, 5);

  Buffer p_ref(ops, init), grads(ops, std::vector<float>(L.total));
  AdamW ref(ops, L, 0, L.total);
  for (int s = 0; s < 5; s++) {
    grads.set(random_vector(L.total, 100 + s));
    ref.step(p_ref.ptr, grads.ptr, sched.lr_at(s), 0.9f);
  }

  Buffer p(ops, init);
  std::vector<float> m, v, saved_params;
  int saved_step = 0;
  {
    AdamW first(ops, L, 0, L.total);
    for (int s = 0; s < 3; s++) {
      grads.set(random_vector(L.total, 100 + s));
      first.step(p.ptr, grads.ptr, sched.lr_at(s), 0.9f);
    }
    m = first.moments_host(0);
    v = first.moments_host(1);
    saved_step = first.step_count();
    saved_params = p.host();
  }
  EXPECT_EQ(saved_step, 3);
  Buffer p2(ops, saved_params);
  AdamW resumed(ops, L, 0, L.total);
  resumed.set_state(saved_step, m, v);
  for (int s = 3; s < 5; s++) {
    grads.set(random_vector(L.total, 100 + s));
    resumed.step(p2.ptr, grads.ptr, sched.lr_at(s), 0.9f);
  }
  EXPECT_EQ(resumed.step_count(), 5);
  std::vector<float> a = p2.host(), b = p_ref.host();
  for (size_t i = 0; i < L.total; i++) ASSERT_EQ(a[i], b[i]) << i;
  EXPECT_EQ(resumed.moments_host(0), ref.moments_host(0));
  EXPECT_EQ(resumed.moments_host(1), ref.moments_host(1));
}

// ---- clipping ----------------------------------------------------------------

TEST(Clip, NormAndScale) {
  CpuOps ops;
  Buffer g(ops, {3.f, 0.f, -4.f});
  EXPECT_DOUBLE_EQ(global_grad_norm(ops, g.ptr, 3), 5.0);
  EXPECT_FLOAT_EQ(clip_scale(5.0, 1.0f), (float)(1.0 / (5.0 + 1e-6)));
  EXPECT_FLOAT_EQ(clip_scale(0.5, 1.0f), 1.f);   // under the limit: untouched
  EXPECT_FLOAT_EQ(clip_scale(0.0, 1.0f), 1.f);
  EXPECT_FLOAT_EQ(clip_scale(100.0, 0.f), 1.f);  // max_norm <= 0: off
  EXPECT_FLOAT_EQ(clip_scale(100.0, -1.f), 1.f);
  // The clipped gradient has norm max_norm (up to the 1e-6 guard).
  EXPECT_NEAR(5.0 * clip_scale(5.0, 2.0f), 2.0, 1e-6);
}

// Passing the clip scale as grad_scale equals stepping on pre-scaled grads,
// and the gradient buffer itself is left as it was.
TEST(Clip, GradScaleEqualsScaledGradients) {
  CpuOps ops;
  ParamLayout L = make_layout({{20, true}, {4, false}});
  std::vector<float> init = random_vector(L.total, 4), g = random_vector(L.total, 5, 3.f);
  Buffer pa(ops, init), pb(ops, init), ga(ops, g), gb(ops, g);
  const float scale = clip_scale(global_grad_norm(ops, ga.ptr, L.total), 1.0f);
  ASSERT_LT(scale, 1.f);
  ops.scale(gb.ptr, scale, L.total);
  AdamW a(ops, L, 0, L.total), b(ops, L, 0, L.total);
  a.step(pa.ptr, ga.ptr, 1e-2f, scale);
  b.step(pb.ptr, gb.ptr, 1e-2f, 1.f);
  std::vector<float> x = pa.host(), y = pb.host();
  for (size_t i = 0; i < L.total; i++) EXPECT_NEAR(x[i], y[i], 1e-6f) << i;
  EXPECT_EQ(ga.host(), g);
}

// ---- gradient accumulation -------------------------------------------------

// Micro-batches ADD into grads; a loss scale of 1/(total weight of the whole
// batch) makes the sum the mean over the batch. Two micro-batches of B=2
// must give the gradient of one batch of B=4, even when the micro-batches
// carry different loss weight (masked tokens).
TEST(GradAccum, TwoMicroBatchesEqualOneBatch) {
  ModelConfig config = config_from_preset("qwen3-tiny");
  const int B = 4, T = 16;
  std::mt19937 rng(11);
  std::vector<int32_t> tokens(B * T);
  for (auto& t : tokens) t = (int32_t)(rng() % config.vocab_size);
  Batch full = Batch::from_token_rows(tokens, B, T);
  // Mask the first 5 predictions of row 0 and give row 3 weight 2, so the
  // two halves have different weight sums.
  for (int t = 0; t < 5; t++) full.weights[t] = 0.f;
  for (int t = 0; t < T; t++) full.weights[3 * T + t] *= 2.f;

  auto half = [&](int first_row) {
    std::vector<int32_t> rows(tokens.begin() + first_row * T, tokens.begin() + (first_row + 2) * T);
    Batch b = Batch::from_token_rows(rows, 2, T);
    b.weights.assign(full.weights.begin() + first_row * T, full.weights.begin() + (first_row + 2) * T);
    return b;
  };
  auto weight_of = [](const Batch& b) {
    double w = 0;
    for (size_t i = 0; i < b.targets.size(); i++)
      if (b.targets[i] >= 0) w += b.weights[i];
    return w;
  };
  Batch micro[2] = {half(0), half(2)};
  const double total_weight = weight_of(full);
  ASSERT_DOUBLE_EQ(weight_of(micro[0]) + weight_of(micro[1]), total_weight);
  ASSERT_NE(weight_of(micro[0]), weight_of(micro[1]));

  CpuOps ops;
  Transformer model(config, ops);
  std::vector<float> init(model.num_params());
  init_params(config, model.layout(), 3, init.data());
  model.set_params(init);

  model.zero_grads();
  LossOutputs one = model.forward_backward(full, (float)(1.0 / total_weight));
  std::vector<float> g_full = model.get_grads();

  model.zero_grads();
  double loss_sum = 0, weight_sum = 0;
  for (const Batch& mb : micro) {
    LossOutputs o = model.forward_backward(mb, (float)(1.0 / total_weight));
    loss_sum += o.loss_sum;
    weight_sum += o.weight_sum;
  }
  std::vector<float> g_acc = model.get_grads();

  EXPECT_NEAR(weight_sum, one.weight_sum, 1e-9);
  EXPECT_NEAR(loss_sum / weight_sum, one.mean_loss(), 1e-5);
  double diff2 = 0, ref2 = 0, max_abs = 0;
  for (size_t i = 0; i < g_full.size(); i++) {
    diff2 += (double)(g_acc[i] - g_full[i]) * (g_acc[i] - g_full[i]);
    ref2 += (double)g_full[i] * g_full[i];
    max_abs = std::max(max_abs, (double)std::fabs(g_full[i]));
  }
  ASSERT_GT(ref2, 0.0);
  EXPECT_LT(std::sqrt(diff2 / ref2), 1e-5);
  for (size_t i = 0; i < g_full.size(); i++)
    ASSERT_NEAR(g_acc[i], g_full[i], 1e-5 * max_abs) << i;
}

}  // namespace
}  // namespace polaris
