// The proof of the model code (model/transformer.cpp, model/sampler.cpp) on
// the CPU reference ops:
//   - whole-model gradients against double central finite differences, for
//     Qwen3 (tied/untied, head_dim != hidden/heads, MQA and MHA) and GPT-2,
//     on packed rows with signed weights and an entropy term;
//   - packing: [A | B] in one row == A and B as separate rows;
//   - prefill + decode through the paged KV cache == forward_logits at every position;
//   - the sampler: greedy, determinism, batch independence, stop tokens,
//     logprobs, sample_token statistics (chi-square), top_k, top_p;
//   - Batch::validate errors; gradient accumulation.
// Tiny shapes throughout: the whole file runs in a few seconds.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <random>
#include <vector>

#include "model/cpu_ops.h"
#include "model/params.h"
#include "model/scheduler.h"
#include "model/transformer.h"
#include "src/common/error.h"
#include "tests/test_util.h"

using namespace polaris;

namespace {

// These shapes are tiny, so each op is a few microseconds of work; on a
// loaded machine OpenMP threads that spin waiting for a descheduled peer turn
// that into seconds. The ops are thread-count independent (model/cpu_ops.h;
// the Cpu*.DeterministicAcrossThreadCounts tests in tests/test_ops_*.cpp check
// it), so these tests run on one thread unless OMP_NUM_THREADS asks
// otherwise.
const bool kOneThread = [] {
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
  return true;
}();

// Two rows: row 0 packs three documents (lengths 2, 3, rest) with positions
// restarting; row 1 is one document. Targets: the next token inside a
// document, -1 at each document's end and at a couple of other places.
// Weights are signed (policy gradient), some zero; entropy weights optional.
Batch packed_batch(int vocab, int T, uint64_t seed, bool with_entropy) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> token(0, vocab - 1);
  std::uniform_real_distribution<float> weight(-1.f, 1.5f);
  std::uniform_real_distribution<float> entropy(-0.4f, 0.4f);
  const int B = 2;
  Batch b;
  b.B = B;
  b.T = T;
  const size_t N = size_t(B) * T;
  b.tokens.resize(N);
  b.targets.assign(N, -1);
  b.positions.resize(N);
  b.doc_ids.resize(N);
  b.weights.assign(N, 0.f);
  for (auto& t : b.tokens) t = token(rng);
  // document boundaries per row
  std::vector<std::vector<int>> lengths = {{2, 3, T - 5}, {T}};
  for (int r = 0; r < B; ++r) {
    int start = 0, doc = 0;
    for (int len : lengths[r]) {
      for (int t = 0; t < len; ++t) {
        size_t i = size_t(r) * T + start + t;
        b.positions[i] = t;
        b.doc_ids[i] = doc;
        if (t + 1 < len) {
          b.targets[i] = b.tokens[i + 1];
          b.weights[i] = weight(rng);
        }
      }
      start += len;
      ++doc;
    }
  }
  // a masked target (weight 0) and a dropped target (-1) inside a document
  b.weights[size_t(1) * T + 1] = 0.f;
  b.targets[size_t(1) * T + 3] = -1;
  b.weights[size_t(1) * T + 3] = 0.f;
  if (with_entropy) {
    b.entropy_weights.resize(N);
    for (auto& e : b.entropy_weights) e = entropy(rng);
  }
  return b;
}

double objective(Transformer& model, const Batch& batch, float scale) {
  return model.forward(batch).loss_sum * double(scale);
}

struct GradCheckResult {
  double worst = 0;  // worst |fd - analytic| / max(max|grad| of tensor, floor)
  std::string worst_name;
  int checked = 0;
};

// Central differences on a sample of entries of every tensor.
GradCheckResult check_gradients(const ModelConfig& config, const Batch& batch, float scale,
                                uint64_t seed, int samples_per_tensor = 10) {
  CpuOps ops;
  Transformer model(config, ops);
  std::vector<float> params = random_params(model, seed);
  model.set_params(params);
  model.zero_grads();
  LossOutputs fb = model.forward_backward(batch, scale);
  LossOutputs f = model.forward(batch);
  EXPECT_NEAR(fb.loss_sum, f.loss_sum, 1e-6 * (1 + std::fabs(f.loss_sum)));
  std::vector<float> grads = model.get_grads();
  double global_max = 0;
  for (float g : grads) global_max = std::max(global_max, double(std::fabs(g)));
  EXPECT_GT(global_max, 0);
  std::mt19937_64 rng(seed + 99);
  const double eps = 2e-3;
  GradCheckResult result;
  for (const TensorInfo& t : model.layout().tensors) {
    if (t.name == "lm_head" && config.tied_embeddings) continue;
    double max_grad = 0;
    const std::vector<size_t> picks = gradient_check_picks(grads, t, samples_per_tensor, rng, &max_grad);
    // The finite differences of an fp32 loss carry ~1e-4 absolute noise, so
    // errors are relative to the tensor's largest gradient but to no less
    // than 2% of the model's largest. GPT-2's key bias has a true gradient of
    // zero (a constant added to every key leaves the softmax unchanged):
    // backward must give (nearly) exactly zero there.
    const double denom = std::max(max_grad, 2e-2 * global_max);
    if (t.name.find("attn.k.bias") != std::string::npos) {
      EXPECT_LT(max_grad, 1e-5 * global_max) << t.name << " should have a zero gradient";
    }
    for (size_t i : picks) {
      std::vector<float> p = params;
      const float plus = float(params[i] + eps), minus = float(params[i] - eps);
      p[i] = plus;
      model.set_params(p);
      const double f_plus = objective(model, batch, scale);
      p[i] = minus;
      model.set_params(p);
      const double f_minus = objective(model, batch, scale);
      const double fd = (f_plus - f_minus) / (double(plus) - double(minus));
      const double err = std::fabs(fd - grads[i]) / denom;
      ++result.checked;
      if (err > result.worst) result.worst = err, result.worst_name = t.name;
      EXPECT_LT(err, 1e-2) << t.name << "[" << i - t.offset << "]: finite difference " << fd
                           << " vs backward " << grads[i] << " (max |grad| " << max_grad << ")";
    }
  }
  model.set_params(params);
  return result;
}

void run_grad_check(const ModelConfig& config, bool with_entropy, uint64_t seed) {
  Batch batch = packed_batch(config.vocab_size, 6, seed, with_entropy);
  GradCheckResult r = check_gradients(config, batch, 0.37f, seed);
  EXPECT_GT(r.checked, 0);
  std::printf("  %s%s: %d entries, worst relative error %.2e (%s)\n", config.describe().c_str(),
              with_entropy ? " +entropy" : "", r.checked, r.worst, r.worst_name.c_str());
}

}  // namespace

// ---------------------------------------------------------------------------
// Gradients

TEST(TransformerGradients, Qwen3TiedHeadDimNotHiddenOverHeads) {
  // heads 4, kv 2 (GQA), head_dim 6 != 16/4
  run_grad_check(qwen3_config(23, 16, 2, 4, 2, 6, 24, true), false, 1);
  run_grad_check(qwen3_config(23, 16, 2, 4, 2, 6, 24, true), true, 2);
}

TEST(TransformerGradients, Qwen3UntiedSingleKvHead) {
  run_grad_check(qwen3_config(23, 16, 2, 4, 1, 8, 20, false), true, 3);
}

TEST(TransformerGradients, Qwen3Yarn) {
  ModelConfig c = qwen3_config(23, 16, 2, 4, 2, 6, 24, true);
  c.rope_scaling.type = RopeType::Yarn;
  c.rope_scaling.factor = 4.f;
  c.rope_scaling.original_max_positions = 4;
  c.rope_scaling.attention_factor = float(yarn_mscale(4.0));
  run_grad_check(c, false, 5);
}

TEST(TransformerGradients, Qwen3UntiedKvHeadsEqualHeads) {
  run_grad_check(qwen3_config(23, 16, 2, 2, 2, 4, 24, false), false, 4);
}

TEST(TransformerGradients, Gpt2) {
  run_grad_check(gpt2_config(23, 16, 2, 4), false, 5);
  run_grad_check(gpt2_config(23, 16, 2, 4), true, 6);
}

TEST(TransformerGradients, AccumulationAdds) {
  for (const ModelConfig& config :
       {qwen3_config(23, 16, 2, 4, 2, 6, 24, false), gpt2_config(23, 16, 2, 4)}) {
    CpuOps ops;
    Transformer model(config, ops);
    model.set_params(random_params(model, 11));
    Batch batch = packed_batch(config.vocab_size, 6, 12, true);
    model.zero_grads();
    model.forward_backward(batch, 0.5f);
    std::vector<float> once = model.get_grads();
    model.forward_backward(batch, 0.5f);
    std::vector<float> twice = model.get_grads();
    double max_abs = 0;
    for (float g : once) max_abs = std::max(max_abs, double(std::fabs(g)));
    ASSERT_GT(max_abs, 0);
    for (size_t i = 0; i < once.size(); ++i)
      ASSERT_NEAR(twice[i], 2.0 * once[i], 1e-5 * max_abs) << "parameter " << i;
    // zero_grads really zeroes, and the same batch gives the same bits again
    model.zero_grads();
    for (float g : model.get_grads()) ASSERT_EQ(g, 0.f);
    model.forward_backward(batch, 0.5f);
    EXPECT_EQ(model.get_grads(), once);
    // a loss scale scales the gradient
    model.zero_grads();
    model.forward_backward(batch, 1.5f);
    std::vector<float> tripled = model.get_grads();
    for (size_t i = 0; i < once.size(); ++i)
      ASSERT_NEAR(tripled[i], 3.0 * once[i], 1e-5 * max_abs) << "parameter " << i;
  }
}

// Recomputation changes what is stored, not what is computed: the loss and
// every gradient are bitwise those of the run that keeps everything.
TEST(TransformerGradients, RecomputeGivesTheSameBits) {
  for (const ModelConfig& config :
       {qwen3_config(23, 16, 3, 4, 2, 6, 24, false), gpt2_config(23, 16, 3, 4)}) {
    CpuOps ops;
    Transformer model(config, ops);
    model.set_params(random_params(model, 5));
    Batch batch = packed_batch(config.vocab_size, 7, 3, true);
    model.zero_grads();
    const double loss = model.forward_backward(batch, 0.25f).loss_sum;
    const std::vector<float> reference = model.get_grads();
    for (Recompute mode : {Recompute::mlp, Recompute::layer}) {
      model.set_recompute(mode);
      model.zero_grads();
      EXPECT_EQ(model.forward_backward(batch, 0.25f).loss_sum, loss);
      EXPECT_EQ(model.get_grads(), reference) << "recompute mode " << int(mode);
    }
    // and it needs less activation memory
    const size_t tokens = 1024;
    EXPECT_LT(Transformer::activation_bytes(config, tokens, DType::f32, Recompute::mlp),
              Transformer::activation_bytes(config, tokens, DType::f32, Recompute::none));
    EXPECT_LT(Transformer::activation_bytes(config, tokens, DType::f32, Recompute::layer),
              Transformer::activation_bytes(config, tokens, DType::f32, Recompute::mlp));
  }
  EXPECT_THROW(parse_recompute("some"), Error);
}

TEST(TransformerLoss, LossSumMatchesLogprobsAndEntropies) {
  ModelConfig config = qwen3_config(23, 16, 2, 4, 2, 6, 24, true);
  CpuOps ops;
  Transformer model(config, ops);
  model.set_params(random_params(model, 21));
  Batch batch = packed_batch(config.vocab_size, 8, 22, true);
  LossOutputs out = model.forward(batch);
  double expected = 0, weight = 0;
  for (size_t i = 0; i < batch.tokens.size(); ++i) {
    if (batch.targets[i] < 0) {
      EXPECT_EQ(out.logprobs[i], 0.f);
      continue;
    }
    EXPECT_LT(out.logprobs[i], 0.f);
    EXPECT_GT(out.entropies[i], 0.f);
    EXPECT_LE(out.entropies[i], std::log(double(config.vocab_size)) + 1e-5);
    expected += batch.weights[i] * -double(out.logprobs[i]) -
                batch.entropy_weights[i] * double(out.entropies[i]);
    weight += batch.weights[i];
  }
  EXPECT_NEAR(out.loss_sum, expected, 1e-5 * (1 + std::fabs(expected)));
  EXPECT_NEAR(out.weight_sum, weight, 1e-6);
  // logprobs agree with log_softmax of forward_logits
  std::vector<float> logits = model.forward_logits(batch);
  const int V = config.vocab_size;
  for (size_t i = 0; i < batch.tokens.size(); ++i) {
    if (batch.targets[i] < 0) continue;
    const float* row = logits.data() + i * V;
    double mx = *std::max_element(row, row + V), sum = 0;
    for (int j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
    EXPECT_NEAR(out.logprobs[i], row[batch.targets[i]] - mx - std::log(sum), 1e-5);
  }
}

// The LM head runs over chunks of rows when the vocabulary is large (about
// 4M logits at a time). A batch of 2 rows x 12 tokens with V = 200,001 gives
// 20-row chunks (the first spanning the row boundary); each row alone
// fits in one chunk. Log-probs, logits and the summed gradients must agree.
TEST(TransformerLoss, LmHeadChunksOverRowsForLargeVocabularies) {
  ModelConfig config = qwen3_config(200001, 8, 1, 2, 1, 4, 8, true);
  CpuOps ops;
  Transformer model(config, ops);
  model.set_params(random_params(model, 71));
  const int T = 12, V = config.vocab_size;
  std::mt19937_64 rng(72);
  std::uniform_int_distribution<int> token(0, V - 1);
  std::vector<int32_t> tokens(2 * T);
  for (auto& t : tokens) t = token(rng);
  Batch both = Batch::from_token_rows(tokens, 2, T);
  for (size_t i = 0; i < both.weights.size(); ++i) both.weights[i] *= 0.5f + 0.1f * float(i % 7);
  auto row = [&](int r) {
    Batch b = Batch::from_token_rows({tokens.begin() + r * T, tokens.begin() + (r + 1) * T}, 1, T);
    for (int t = 0; t < T; ++t) b.weights[t] = both.weights[size_t(r) * T + t];
    return b;
  };
  model.zero_grads();
  LossOutputs all = model.forward_backward(both, 1.f);
  std::vector<float> g_all = model.get_grads();
  model.zero_grads();
  LossOutputs r0 = model.forward_backward(row(0), 1.f);
  LossOutputs r1 = model.forward_backward(row(1), 1.f);
  std::vector<float> g_rows = model.get_grads();
  for (int t = 0; t < T; ++t) {
    EXPECT_NEAR(all.logprobs[t], r0.logprobs[t], 1e-5) << t;
    EXPECT_NEAR(all.logprobs[T + t], r1.logprobs[t], 1e-5) << t;
  }
  EXPECT_NEAR(all.loss_sum, r0.loss_sum + r1.loss_sum, 1e-4 * std::fabs(all.loss_sum));
  double max_abs = 0, max_err = 0;
  for (size_t i = 0; i < g_all.size(); ++i) {
    max_abs = std::max(max_abs, double(std::fabs(g_rows[i])));
    max_err = std::max(max_err, double(std::fabs(g_all[i] - g_rows[i])));
  }
  EXPECT_GT(max_abs, 0);
  EXPECT_LT(max_err, 1e-4 * max_abs);
  std::vector<float> logits = model.forward_logits(both);
  std::vector<float> logits1 = model.forward_logits(row(1));
  double logit_err = 0;
  for (size_t i = 0; i < logits1.size(); ++i)
    logit_err = std::max(logit_err, double(std::fabs(logits[size_t(T) * V + i] - logits1[i])));
  EXPECT_LT(logit_err, 1e-5);
}

// ---------------------------------------------------------------------------
// Packing: [A | B] in one row, positions restarting and distinct doc_ids,
// gives the same per-token log-probabilities as A and B as separate rows.

namespace {

Batch single_document(const std::vector<int32_t>& tokens, int32_t last_target) {
  const int T = int(tokens.size());
  Batch b = Batch::from_token_rows(tokens, 1, T);
  b.targets[T - 1] = last_target;
  b.weights[T - 1] = 1.f;
  return b;
}

void check_packing(const ModelConfig& config) {
  CpuOps ops;
  Transformer model(config, ops);
  model.set_params(random_params(model, 31));
  std::vector<int32_t> A = {3, 17, 5, 9}, Bdoc = {11, 2, 2, 20, 7};
  const int32_t a_next = 4, b_next = 13;
  LossOutputs ra = model.forward(single_document(A, a_next));
  LossOutputs rb = model.forward(single_document(Bdoc, b_next));

  Batch packed;
  packed.B = 1;
  packed.T = int(A.size() + Bdoc.size());
  for (size_t t = 0; t < A.size(); ++t) {
    packed.tokens.push_back(A[t]);
    packed.targets.push_back(t + 1 < A.size() ? A[t + 1] : a_next);
    packed.positions.push_back(int32_t(t));
    packed.doc_ids.push_back(7);
  }
  for (size_t t = 0; t < Bdoc.size(); ++t) {
    packed.tokens.push_back(Bdoc[t]);
    packed.targets.push_back(t + 1 < Bdoc.size() ? Bdoc[t + 1] : b_next);
    packed.positions.push_back(int32_t(t));
    packed.doc_ids.push_back(8);
  }
  packed.weights.assign(packed.tokens.size(), 1.f);
  LossOutputs rp = model.forward(packed);
  for (size_t t = 0; t < A.size(); ++t) {
    EXPECT_NEAR(rp.logprobs[t], ra.logprobs[t], 1e-5) << config.family_name() << " A " << t;
    EXPECT_NEAR(rp.entropies[t], ra.entropies[t], 1e-5) << config.family_name() << " A " << t;
  }
  for (size_t t = 0; t < Bdoc.size(); ++t) {
    EXPECT_NEAR(rp.logprobs[A.size() + t], rb.logprobs[t], 1e-5) << config.family_name() << " B "
                                                                 << t;
    EXPECT_NEAR(rp.entropies[A.size() + t], rb.entropies[t], 1e-5);
  }
  EXPECT_NEAR(rp.loss_sum, ra.loss_sum + rb.loss_sum, 1e-4);

  // Without doc_ids, B would see A: its log-probs must change (the mask matters).
  Batch unmasked = packed;
  unmasked.doc_ids.clear();
  LossOutputs ru = model.forward(unmasked);
  double diff = 0;
  for (size_t t = 0; t < Bdoc.size(); ++t)
    diff = std::max(diff, double(std::fabs(ru.logprobs[A.size() + t] - rb.logprobs[t])));
  EXPECT_GT(diff, 1e-3) << "doc_ids had no effect";
  // ... while A, a prefix, is unchanged by causality.
  for (size_t t = 0; t < A.size(); ++t) EXPECT_NEAR(ru.logprobs[t], ra.logprobs[t], 1e-5);

  // Packed gradients = the sum of the separate documents' gradients.
  model.zero_grads();
  model.forward_backward(packed, 1.f);
  std::vector<float> g_packed = model.get_grads();
  model.zero_grads();
  model.forward_backward(single_document(A, a_next), 1.f);
  model.forward_backward(single_document(Bdoc, b_next), 1.f);
  std::vector<float> g_sep = model.get_grads();
  double max_abs = 0;
  for (float g : g_sep) max_abs = std::max(max_abs, double(std::fabs(g)));
  for (size_t i = 0; i < g_sep.size(); ++i)
    ASSERT_NEAR(g_packed[i], g_sep[i], 1e-4 * max_abs) << config.family_name() << " param " << i;
}

}  // namespace

TEST(TransformerPacking, TwoDocumentsInOneRowEqualSeparateRows) {
  check_packing(qwen3_config(23, 16, 2, 4, 2, 6, 24, false));
  check_packing(gpt2_config(23, 16, 2, 4));
}

// ---------------------------------------------------------------------------
// prefill + decode over the paged KV cache == forward_logits

namespace {

std::vector<float> logits_of(Transformer& model, const std::vector<int32_t>& tokens) {
  return model.forward_logits(Batch::from_token_rows(tokens, 1, int(tokens.size())));
}

void check_decode(const ModelConfig& config) {
  CpuOps ops;
  Transformer model(config, ops);
  model.set_params(random_params(model, 41));
  const int V = config.vocab_size;
  std::vector<std::vector<int32_t>> seqs = {
      {1, 5, 9, 2, 22, 7, 7}, {4, 0, 13, 8}, {19, 3, 3, 11, 6, 15}, {2, 21, 10, 12, 1}};
  std::vector<std::vector<float>> reference;
  for (auto& s : seqs) reference.push_back(logits_of(model, s));
  // Blocks of 3 rows: sequences cross block edges; the pool starts at one
  // block and grows while sequences run.
  std::unique_ptr<KVCache> cache = model.make_kv_cache(3, 1, 64);
  std::vector<BlockTable> tables(seqs.size());

  // Prefill: the first `start[s]` tokens of every sequence packed in one
  // forward, listed in a shuffled order; the logits of each one's last row.
  const std::vector<size_t> start = {3, 1, 4, 2};
  const std::vector<int> order = {2, 0, 3, 1};
  std::vector<int32_t> tokens, positions, doc_ids, rows, logit_rows;
  for (int s : order) {
    for (size_t t = 0; t < start[s]; ++t) {
      tokens.push_back(seqs[s][t]);
      positions.push_back(int32_t(t));
      doc_ids.push_back(s);
      rows.push_back(cache->append(tables[s]));
    }
    logit_rows.push_back(int32_t(tokens.size()) - 1);
  }
  std::vector<float> l = model.prefill(*cache, tokens, positions, doc_ids, rows, logit_rows);
  ASSERT_EQ(l.size(), order.size() * V);
  for (size_t k = 0; k < order.size(); ++k) {
    const int s = order[k];
    for (int j = 0; j < V; ++j)
      ASSERT_NEAR(l[k * V + j], reference[s][(start[s] - 1) * V + j], 1e-4)
          << config.family_name() << " prefill seq " << s;
  }

  // Decode the rest, one token per sequence per step, sequences leaving as
  // they end (different lengths in each call).
  std::vector<size_t> fed = start;
  for (int step = 0; step < 8; ++step) {
    std::vector<int32_t> tok, pos, row;
    std::vector<const BlockTable*> tabs;
    std::vector<int> who;
    for (int s : {1, 3, 0, 2}) {
      if (fed[s] >= seqs[s].size()) continue;
      tok.push_back(seqs[s][fed[s]]);
      pos.push_back(int32_t(fed[s]));
      row.push_back(cache->append(tables[s]));
      tabs.push_back(&tables[s]);
      who.push_back(s);
    }
    if (who.empty()) break;
    l = model.decode(*cache, tok, pos, row, tabs);
    ASSERT_EQ(l.size(), who.size() * V);
    for (size_t k = 0; k < who.size(); ++k) {
      const int s = who[k];
      for (int j = 0; j < V; ++j)
        ASSERT_NEAR(l[k * V + j], reference[s][fed[s] * V + j], 1e-4)
            << config.family_name() << " seq " << s << " pos " << fed[s];
      ++fed[s];
    }
  }
  for (size_t s = 0; s < seqs.size(); ++s) EXPECT_EQ(fed[s], seqs[s].size());
  // Every block is back once the tables are freed.
  for (BlockTable& t : tables) cache->free(t);
  EXPECT_EQ(cache->used(), 0);
  // Bad inputs are errors, not crashes.
  BlockTable t;
  const int32_t r = cache->append(t);
  EXPECT_THROW(model.decode(*cache, {int32_t(V)}, {0}, {r}, {&t}), Error);
  EXPECT_THROW(model.decode(*cache, {1}, {1}, {r}, {&t}), Error);  // table ends at position 0
  EXPECT_THROW(model.decode(*cache, {1}, {0}, {-1}, {&t}), Error);
  EXPECT_THROW(model.decode(*cache, {1, 2}, {0}, {r}, {&t}), Error);
  EXPECT_THROW(model.prefill(*cache, {1}, {config.context_limit()}, {0}, {r}, {0}), Error);
  EXPECT_THROW(model.prefill(*cache, {1}, {0}, {0}, {r}, {1}), Error);
}

// `c` with YaRN: factor 8 over a 4-position original context, and
// max_positions 4, so the test sequences (up to 7 tokens) run past the
// trained length as Polaris's long generations do (context_limit 32).
ModelConfig with_yarn(ModelConfig c) {
  c.max_positions = 4;
  c.rope_scaling.type = RopeType::Yarn;
  c.rope_scaling.factor = 8.f;
  c.rope_scaling.original_max_positions = 4;
  c.rope_scaling.attention_factor = float(yarn_mscale(8.0));
  return c;
}

}  // namespace

TEST(TransformerDecode, MatchesForwardLogitsQwen3) {
  check_decode(qwen3_config(23, 16, 2, 4, 2, 6, 24, false));
  check_decode(qwen3_config(23, 16, 2, 4, 1, 8, 20, true));
}

// Decoding past max_positions with YaRN: the KV cache's rotated keys equal
// the full forward's, and positions beyond the scaled context are refused.
TEST(TransformerDecode, MatchesForwardLogitsQwen3Yarn) {
  const ModelConfig c = with_yarn(qwen3_config(23, 16, 2, 4, 2, 6, 24, false));
  ASSERT_EQ(c.context_limit(), 32);
  check_decode(c);
  // Without YaRN the same 7-token sequence is beyond the model's 4 positions.
  ModelConfig plain = c;
  plain.rope_scaling = RopeScaling();
  CpuOps ops;
  Transformer model(plain, ops);
  model.set_params(random_params(model, 41));
  EXPECT_ERROR(logits_of(model, {1, 5, 9, 2, 22, 7, 7}), "beyond the model's 4 positions");
}

TEST(TransformerDecode, MatchesForwardLogitsGpt2) { check_decode(gpt2_config(23, 16, 2, 4)); }

// ---------------------------------------------------------------------------
// Sampler

namespace {

struct SamplerFixture {
  ModelConfig config;
  CpuOps ops;
  std::unique_ptr<Transformer> model;
  explicit SamplerFixture(const ModelConfig& c) : config(c) {
    model.reset(new Transformer(config, ops));
    model->set_params(random_params(*model, 51));
  }
};

std::vector<std::vector<int32_t>> some_prompts() {
  return {{1, 2, 3}, {7}, {4, 4, 9, 12, 0}, {22, 5}, {8, 16, 3, 1}};
}

}  // namespace

TEST(Sampler, GreedyEqualsArgmaxOfForwardLogits) {
  for (const ModelConfig& config :
       {qwen3_config(23, 16, 2, 4, 2, 6, 24, false), gpt2_config(23, 16, 2, 4)}) {
    SamplerFixture f(config);
    SamplingParams greedy;
    greedy.temperature = 0.f;
    greedy.max_new_tokens = 8;
    auto prompts = some_prompts();
    std::vector<Completion> out = generate(*f.model, prompts, greedy);
    ASSERT_EQ(out.size(), prompts.size());
    const int V = config.vocab_size;
    for (size_t p = 0; p < prompts.size(); ++p) {
      ASSERT_EQ(out[p].tokens.size(), 8u);
      EXPECT_FALSE(out[p].stopped);
      std::vector<int32_t> seq = prompts[p];
      for (int32_t token : out[p].tokens) {
        std::vector<float> l = logits_of(*f.model, seq);
        const float* last = l.data() + (seq.size() - 1) * V;
        EXPECT_EQ(token, int32_t(std::max_element(last, last + V) - last))
            << config.family_name() << " prompt " << p << " step " << seq.size();
        seq.push_back(token);
      }
    }
  }
}

TEST(Sampler, DeterministicAndBatchIndependent) {
  SamplerFixture f(qwen3_config(23, 16, 2, 4, 2, 6, 24, false));
  auto prompts = some_prompts();
  SamplingParams sp;
  sp.temperature = 1.f;
  sp.max_new_tokens = 7;
  sp.seed = 1234;
  sp.max_batch = 8;
  std::vector<Completion> all = generate(*f.model, prompts, sp);
  std::vector<Completion> again = generate(*f.model, prompts, sp);
  for (size_t p = 0; p < prompts.size(); ++p) {
    EXPECT_EQ(all[p].tokens, again[p].tokens);
    EXPECT_EQ(all[p].logprobs, again[p].logprobs);
  }
  // another seed gives other samples
  SamplingParams other = sp;
  other.seed = 99;
  std::vector<Completion> different = generate(*f.model, prompts, other);
  int same = 0;
  for (size_t p = 0; p < prompts.size(); ++p) same += different[p].tokens == all[p].tokens;
  EXPECT_LT(same, int(prompts.size()));

  auto expect_same = [&](const std::vector<Completion>& got, size_t offset, const char* what) {
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_EQ(got[k].tokens, all[offset + k].tokens) << what << " prompt " << offset + k;
      ASSERT_EQ(got[k].logprobs.size(), all[offset + k].logprobs.size());
      for (size_t j = 0; j < got[k].logprobs.size(); ++j)
        EXPECT_NEAR(got[k].logprobs[j], all[offset + k].logprobs[j], 1e-5) << what;
    }
  };
  // one sequence per decode batch
  SamplingParams one = sp;
  one.max_batch = 1;
  expect_same(generate(*f.model, prompts, one), 0, "max_batch=1");
  SamplingParams two = sp;
  two.max_batch = 2;
  expect_same(generate(*f.model, prompts, two), 0, "max_batch=2");
  // each prompt alone, numbered by first_index
  for (size_t p = 0; p < prompts.size(); ++p)
    expect_same(generate(*f.model, {prompts[p]}, sp, p), p, "alone");
  // a sub-range of the prompts
  expect_same(generate(*f.model, {prompts.begin() + 2, prompts.end()}, sp, 2), 2, "tail");
}

TEST(Sampler, StopTokensEndASequenceAndAreIncluded) {
  SamplerFixture f(gpt2_config(23, 16, 2, 4));
  SamplingParams sp;
  sp.temperature = 1.f;
  sp.max_new_tokens = 12;
  sp.seed = 5;
  auto prompts = some_prompts();
  std::vector<Completion> free_run = generate(*f.model, prompts, sp);
  // stop on the 4th token of prompt 0's free run: every sequence is cut at
  // the first occurrence of that token (same samples up to there).
  const int32_t stop = free_run[0].tokens[3];
  SamplingParams stopping = sp;
  stopping.stop_tokens = {stop, 999};
  std::vector<Completion> cut = generate(*f.model, prompts, stopping);
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto& full = free_run[p].tokens;
    auto it = std::find(full.begin(), full.end(), stop);
    if (it == full.end()) {
      EXPECT_FALSE(cut[p].stopped);
      EXPECT_EQ(cut[p].tokens, full);
    } else {
      EXPECT_TRUE(cut[p].stopped) << p;
      std::vector<int32_t> prefix(full.begin(), it + 1);
      EXPECT_EQ(cut[p].tokens, prefix) << p;
      EXPECT_EQ(cut[p].tokens.back(), stop);
      EXPECT_EQ(cut[p].logprobs.size(), cut[p].tokens.size());
    }
  }
  EXPECT_TRUE(cut[0].stopped);
  EXPECT_LE(cut[0].tokens.size(), 4u);
}

TEST(Sampler, LogprobsEqualTeacherForcedLogprobs) {
  for (const ModelConfig& config :
       {qwen3_config(23, 16, 2, 4, 1, 8, 20, true), gpt2_config(23, 16, 2, 4)}) {
    SamplerFixture f(config);
    auto prompts = some_prompts();
    for (float temperature : {1.f, 0.7f}) {
      SamplingParams sp;
      sp.temperature = temperature;
      sp.top_k = temperature < 1.f ? 5 : 0;
      sp.max_new_tokens = 6;
      sp.seed = 77;
      std::vector<Completion> out = generate(*f.model, prompts, sp);
      for (size_t p = 0; p < prompts.size(); ++p) {
        std::vector<int32_t> seq = prompts[p];
        seq.insert(seq.end(), out[p].tokens.begin(), out[p].tokens.end());
        Batch b = Batch::from_token_rows(seq, 1, int(seq.size()));
        LossOutputs lo = f.model->forward(b);
        ASSERT_EQ(out[p].logprobs.size(), out[p].tokens.size());
        for (size_t j = 0; j < out[p].tokens.size(); ++j)
          EXPECT_NEAR(out[p].logprobs[j], lo.logprobs[prompts[p].size() - 1 + j], 1e-4)
              << config.family_name() << " prompt " << p << " token " << j;
      }
    }
  }
}

TEST(Sampler, RejectsBadRequests) {
  SamplerFixture f(gpt2_config(23, 16, 2, 4, 16));
  SamplingParams sp;
  sp.max_new_tokens = 15;
  EXPECT_THROW(generate(*f.model, {{1, 2, 3}}, sp), Error);  // needs 17 > 16 positions
  sp.max_new_tokens = 4;
  EXPECT_THROW(generate(*f.model, {{}}, sp), Error);
  sp.top_p = 0.f;
  EXPECT_THROW(generate(*f.model, {{1}}, sp), Error);
}

namespace {

const std::vector<float> kRow = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f};

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  std::vector<double> p(logits.size());
  double mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((logits[i] - mx) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

// chi-square of `draws` samples against probabilities `p` (0 entries must not occur).
double chi_square(const SamplingParams& sp, const std::vector<double>& p, int draws,
                  uint64_t stream) {
  std::vector<int> counts(p.size(), 0);
  for (int i = 0; i < draws; ++i) {
    int32_t t = sample_token(kRow.data(), int(kRow.size()), sp, stream, uint64_t(i));
    EXPECT_GE(t, 0);
    EXPECT_LT(t, int32_t(p.size()));
    if (p[t] == 0) {
      ADD_FAILURE() << "drew token " << t << " of probability 0";
      return 1e9;
    }
    ++counts[t];
  }
  double chi = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    if (p[j] == 0) continue;
    const double expected = draws * p[j];
    chi += (counts[j] - expected) * (counts[j] - expected) / expected;
  }
  return chi;
}

}  // namespace

TEST(SampleToken, FrequenciesFollowSoftmax) {
  SamplingParams sp;
  sp.temperature = 1.f;
  // 5 degrees of freedom: P(chi2 > 25) ~ 1.4e-4
  EXPECT_LT(chi_square(sp, softmax(kRow, 1.0), 20000, 42), 25.0);
  sp.temperature = 0.5f;
  EXPECT_LT(chi_square(sp, softmax(kRow, 0.5), 20000, 43), 25.0);
  sp.temperature = 2.f;
  EXPECT_LT(chi_square(sp, softmax(kRow, 2.0), 20000, 44), 25.0);
}

TEST(SampleToken, TopKKeepsOnlyTheKMostLikely) {
  SamplingParams sp;
  sp.top_k = 2;
  std::vector<double> p = softmax(kRow, 1.0);
  // tokens 3 (logit 2.0) and 0 (logit 1.0), renormalised
  std::vector<double> cut(p.size(), 0.0);
  cut[3] = p[3] / (p[3] + p[0]);
  cut[0] = p[0] / (p[3] + p[0]);
  EXPECT_LT(chi_square(sp, cut, 20000, 45), 15.0);  // 1 dof: P(> 15) ~ 1e-4
  sp.top_k = 1;
  for (int i = 0; i < 200; ++i) EXPECT_EQ(sample_token(kRow.data(), 6, sp, 1, i), 3);
}

TEST(SampleToken, TopPKeepsTheSmallestSetReachingP) {
  std::vector<double> p = softmax(kRow, 1.0);
  // sorted: 3, 0, 1, 4, 2, 5
  const std::vector<int> order = {3, 0, 1, 4, 2, 5};
  double c1 = p[3], c2 = c1 + p[0], c3 = c2 + p[1];
  struct Case {
    float top_p;
    int keep;
  };
  for (Case c : {Case{float(0.5 * c1), 1}, Case{float(0.5 * (c1 + c2)), 2},
                 Case{float(0.5 * (c2 + c3)), 3}, Case{float(c3 + 0.5 * p[4]), 4}}) {
    SamplingParams sp;
    sp.top_p = c.top_p;
    std::vector<double> cut(p.size(), 0.0);
    double mass = 0;
    for (int k = 0; k < c.keep; ++k) mass += p[order[k]];
    for (int k = 0; k < c.keep; ++k) cut[order[k]] = p[order[k]] / mass;
    const double chi = chi_square(sp, cut, 20000, 46 + c.keep);
    EXPECT_LT(chi, 25.0) << "top_p " << c.top_p << " keep " << c.keep;
  }
  // top_k and top_p together: top_k first, then top_p over the renormalised rest
  SamplingParams both;
  both.top_k = 3;
  both.top_p = float(0.5 * (p[3] / c3 + (p[3] + p[0]) / c3));  // between 1 and 2 of the 3
  std::vector<double> cut(p.size(), 0.0);
  cut[3] = p[3] / c2;
  cut[0] = p[0] / c2;
  EXPECT_LT(chi_square(both, cut, 20000, 60), 15.0);
}

TEST(SampleToken, TemperatureZeroIsArgmax) {
  SamplingParams sp;
  sp.temperature = 0.f;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sample_token(kRow.data(), 6, sp, i, i), 3);
  std::vector<float> row = {0.f, -1.f, 5.f, 4.9f, 5.f};  // tie: the lowest id
  EXPECT_EQ(sample_token(row.data(), 5, sp, 0, 0), 2);
  // deterministic for a fixed (stream, counter)
  SamplingParams warm;
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(sample_token(kRow.data(), 6, warm, 9, i), sample_token(kRow.data(), 6, warm, 9, i));
}

// ---------------------------------------------------------------------------
// Batch validation

TEST(BatchValidate, RejectsBadBatches) {
  ModelConfig config = qwen3_config(23, 16, 1, 2, 1, 4, 8, true);
  CpuOps ops;
  Transformer model(config, ops);
  model.set_params(random_params(model, 61));
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6};
  Batch good = Batch::from_token_rows(tokens, 2, 3);
  EXPECT_NO_THROW(good.validate(23, 32));
  EXPECT_NO_THROW(model.forward(good));

  auto expect_bad = [&](Batch b, const char* what) {
    EXPECT_THROW(b.validate(23, 32), Error) << what;
    EXPECT_THROW(model.forward(b), Error) << what;
    EXPECT_THROW(model.forward_backward(b, 1.f), Error) << what;
  };
  Batch b = good;
  b.tokens[4] = 23;
  expect_bad(b, "token == vocab");
  b = good;
  b.tokens[0] = -1;
  expect_bad(b, "negative token");
  b = good;
  b.targets[1] = 40;
  expect_bad(b, "target beyond vocab");
  b = good;
  b.positions[2] = 32;
  expect_bad(b, "position == max_positions");
  b = good;
  b.positions[2] = -1;
  expect_bad(b, "negative position");
  b = good;
  b.weights.pop_back();
  expect_bad(b, "weights size");
  b = good;
  b.targets.push_back(1);
  expect_bad(b, "targets size");
  b = good;
  b.positions.pop_back();
  expect_bad(b, "positions size");
  b = good;
  b.doc_ids.resize(5);
  expect_bad(b, "doc_ids size");
  b = good;
  b.entropy_weights.assign(7, 0.f);
  expect_bad(b, "entropy_weights size");
  b = good;
  b.T = 4;
  expect_bad(b, "B*T mismatch");
  b = good;
  b.B = 0;
  expect_bad(b, "B = 0");
  EXPECT_THROW(Batch::from_token_rows(tokens, 2, 4), Error);
  // the message names the problem
  try {
    Batch bad = good;
    bad.tokens[4] = 23;
    bad.validate(23, 32);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("23"), std::string::npos) << e.what();
  }
  // GPT-2: a position beyond the learned table
  ModelConfig g = gpt2_config(23, 16, 1, 2, 8);
  Transformer gm(g, ops);
  Batch long_row = Batch::from_token_rows(std::vector<int32_t>(9, 1), 1, 9);
  EXPECT_THROW(gm.forward(long_row), Error);
}
