// The transformer on a backend that stores weights and activations in bf16
// (tests/bf16_cpu_ops.h: the CPU reference on fp32 copies, every output
// rounded to bf16 as the GPU stores it), against the fp32 CPU backend.
//
// What this proves without a GPU: the transformer's typed plumbing — bf16
// element offsets (the fused qkv columns, LM-head chunks, KV-cache slots),
// which buffers stay fp32, the fp32 master with its bf16 copy refreshed by
// AdamW — computes the same model; and how far bf16 storage alone moves the
// loss, the gradients, decoding and a short training run, which is the
// tolerance the GPU checks (polaris_check --backend cuda, the CPU-vs-GPU
// curve in run/gpu_check.sh) can expect beyond kernel differences.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/cpu_ops.h"
#include "model/transformer.h"
#include "optim/schedule.h"
#include "src/train/trainer.h"
#include "tests/bf16_cpu_ops.h"
#include "tests/test_util.h"

namespace polaris {
namespace {

// Two rows of T tokens; row 0 packs two documents (positions restart).
Batch two_rows(int vocab, int T, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> tokens(2 * T);
  for (int32_t& t : tokens) t = int32_t(rng() % vocab);
  Batch b = Batch::from_token_rows(tokens, 2, T);
  const int split = T / 3;
  for (int t = split; t < T; ++t) {
    b.doc_ids[t] = 1;
    b.positions[t] = t - split;
  }
  b.targets[split - 1] = -1;  // no prediction across the document boundary
  b.weights[split - 1] = 0.f;
  return b;
}

struct Pair {
  CpuOps fp32_ops;
  test::Bf16CpuOps bf16_ops;
  Transformer fp32, bf16;
  explicit Pair(const ModelConfig& c) : fp32(c, fp32_ops), bf16(c, bf16_ops) {
    const std::vector<float> p = random_params(fp32, 7);
    fp32.set_params(p);
    bf16.set_params(p);
  }
};

std::vector<ModelConfig> configs() {
  return {qwen3_config(41, 32, 2, 4, 2, 8, 48, false), gpt2_config(41, 32, 2, 4)};
}

TEST(TransformerBf16, LossAndGradientsTrackFp32) {
  for (const ModelConfig& c : configs()) {
    Pair m(c);
    const Batch batch = two_rows(c.vocab_size, 24, 3);
    m.fp32.zero_grads();
    m.bf16.zero_grads();
    const LossOutputs a = m.fp32.forward_backward(batch, 1.f);
    const LossOutputs b = m.bf16.forward_backward(batch, 1.f);
    // Each stored activation carries a relative error up to 2^-9; through two
    // layers the loss (a mean of ~45 log-probabilities) moves ~1e-3 relative.
    EXPECT_NEAR(b.mean_loss(), a.mean_loss(), 2e-2 * std::fabs(a.mean_loss())) << c.describe();
    const std::vector<float> ga = m.fp32.get_grads(), gb = m.bf16.get_grads();
    // Per tensor: the bf16 gradient points the same way (cosine > 0.99) and
    // has the same size within 10%: bf16 rounding of activations and of the
    // activation gradients, never a wrong or missing term (a wrong offset or
    // dtype gives cosine near 0). Tensors whose true gradient is zero (the
    // key bias: softmax ignores a constant added to every score) hold only
    // rounding noise and are skipped.
    double total = 0;
    for (float g : ga) total += double(g) * g;
    for (const TensorInfo& t : m.fp32.layout().tensors) {
      double dot = 0, na = 0, nb = 0;
      for (size_t i = t.offset; i < t.offset + t.numel; ++i) {
        dot += double(ga[i]) * gb[i];
        na += double(ga[i]) * ga[i];
        nb += double(gb[i]) * gb[i];
      }
      if (na <= 1e-10 * total) continue;
      EXPECT_GT(dot / std::sqrt(na * nb), 0.99) << c.describe() << " " << t.name;
      EXPECT_NEAR(std::sqrt(nb / na), 1.0, 0.1) << c.describe() << " " << t.name;
    }
  }
}

TEST(TransformerBf16, RecomputeGivesTheSameBitsInBf16) {
  for (const ModelConfig& c : configs()) {
    test::Bf16CpuOps ops;
    Transformer model(c, ops);
    model.set_params(random_params(model, 9));
    const Batch batch = two_rows(c.vocab_size, 20, 4);
    model.zero_grads();
    const double loss = model.forward_backward(batch, 1.f).loss_sum;
    const std::vector<float> reference = model.get_grads();
    for (Recompute mode : {Recompute::mlp, Recompute::layer}) {
      model.set_recompute(mode);
      model.zero_grads();
      EXPECT_EQ(model.forward_backward(batch, 1.f).loss_sum, loss);
      EXPECT_EQ(model.get_grads(), reference) << c.describe() << " mode " << int(mode);
    }
  }
}

// Decoding with a bf16 KV cache (the cache rows, the strided q of GPT-2's
// fused qkv) gives the logits of the bf16 full forward, up to the different
// order of the same roundings.
TEST(TransformerBf16, DecodeMatchesForwardLogits) {
  for (const ModelConfig& c : configs()) {
    test::Bf16CpuOps ops;
    Transformer model(c, ops);
    model.set_params(random_params(model, 11));
    const int T = 9;
    std::vector<int32_t> tokens(T);
    for (int t = 0; t < T; ++t) tokens[t] = (5 * t + 3) % c.vocab_size;
    const std::vector<float> full = model.forward_logits(Batch::from_token_rows(tokens, 1, T));
    // Blocks of 4 rows: the strided decode reads cross block edges.
    std::unique_ptr<KVCache> cache = model.make_kv_cache(4, 4, 4);
    BlockTable table;
    for (int t = 0; t < T; ++t) {
      const int32_t row = cache->append(table);
      const std::vector<float> step = model.decode(*cache, {tokens[t]}, {t}, {row}, {&table});
      double worst = 0, scale = 0;
      for (int v = 0; v < c.vocab_size; ++v) {
        worst = std::max(worst, std::fabs(double(step[v]) - full[size_t(t) * c.vocab_size + v]));
        scale = std::max(scale, std::fabs(double(full[size_t(t) * c.vocab_size + v])));
      }
      EXPECT_LT(worst, 3e-2 * std::max(1.0, scale)) << c.describe() << " position " << t;
    }
  }
}

// 30 AdamW steps on one batch: the bf16 model (fp32 master, bf16 copy
// refreshed by each step) follows the fp32 model's loss curve.
TEST(TransformerBf16, TrainingCurveTracksFp32) {
  for (const ModelConfig& c : configs()) {
    Pair m(c);
    TrainerOptions options;
    options.schedule.kind = "constant";
    options.schedule.max_lr = 3e-3f;
    options.schedule.total_steps = 30;
    Trainer fp32(m.fp32, options), bf16(m.bf16, options);
    const std::vector<Batch> batch = {two_rows(c.vocab_size, 24, 5)};
    const double weight = total_target_weight(batch);
    double first = 0, last_fp32 = 0, last_bf16 = 0;
    for (int step = 0; step < 30; ++step) {
      const StepStats a = fp32.step(batch, weight), b = bf16.step(batch, weight);
      if (step == 0) first = a.loss;
      last_fp32 = a.loss;
      last_bf16 = b.loss;
      EXPECT_NEAR(b.loss, a.loss, 0.05 * a.loss) << c.describe() << " step " << step + 1;
    }
    EXPECT_LT(last_fp32, 0.8 * first) << c.describe() << ": the fp32 run did not learn";
    EXPECT_LT(last_bf16, 0.8 * first) << c.describe() << ": the bf16 run did not learn";
    // The bf16 weights are the master rounded to nearest (this backend's
    // AdamW copy), so the two never drift apart by more than storage.
    const std::vector<float> master = m.bf16.get_params();
    std::vector<float> weights(master.size());
    m.bf16.ops().download(weights.data(), m.bf16.weights(), weights.size());
    for (size_t i = 0; i < master.size(); ++i)
      ASSERT_EQ(weights[i], test::round_bf16(master[i])) << c.describe() << " parameter " << i;
  }
}

}  // namespace
}  // namespace polaris
