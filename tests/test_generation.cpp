// The generation engine (model/kv_cache.h, model/scheduler.h) on the CPU:
//   - the paged KV cache alone: blocks taken as sequences grow, reference
//     counts under fork, copy-on-write of a shared partial block (its rows
//     copied in every layer, the full shared blocks left shared), the free
//     list, pool growth keeping the contents, and the cap;
//   - sampled log-probs equal a teacher-forced forward over the same tokens;
//   - a sequence's tokens (and log-probs, bitwise) do not depend on the
//     batch, the block size, prefix sharing, preemption (a cache far too
//     small for the batch, where every request still completes) or the
//     lock-step baseline; another seed gives other tokens (negative control);
//   - sharing a group's prompt lowers the cache's peak, and the lock-step
//     baseline reserves more than the paged engine ever uses;
//   - a backend out of memory while the cache grows: the pool is capped where
//     it is and the scheduler preempts (same tokens) instead of failing;
//   - with bf16 storage (the CPU emulation of the GPU's types, and the GPU
//     itself when there is one): log-probs within bf16 tolerance of the same
//     backend's teacher-forced forward, under sharing and preemption.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "model/cpu_ops.h"
#include "model/kv_cache.h"
#include "model/scheduler.h"
#include "model/transformer.h"
#include "src/common/error.h"
#include "tests/bf16_cpu_ops.h"
#include "tests/ops_compare.h"
#include "tests/test_util.h"

namespace polaris {
namespace {

// ---------------------------------------------------------------------------
// KV cache

// Row r of layer l's keys holds 1000 l + 10 r + c in column c (values: minus that).
void fill(CpuOps& ops, KVCache& cache, int layers, int kv_dim, int32_t row) {
  for (int l = 0; l < layers; ++l)
    for (int c = 0; c < kv_dim; ++c) {
      cache.keys(l).f32()[size_t(row) * kv_dim + c] = float(1000 * l + 10 * row + c);
      cache.values(l).f32()[size_t(row) * kv_dim + c] = -float(1000 * l + 10 * row + c);
    }
}

float key_at(KVCache& cache, int layer, int kv_dim, int32_t row, int c) {
  return cache.keys(layer).f32()[size_t(row) * kv_dim + c];
}

TEST(KVCache, BlocksRefcountsCopyOnWriteAndFreeList) {
  CpuOps ops;
  const int layers = 2, kv_dim = 3, bs = 4;
  KVCache cache(ops, layers, kv_dim, bs, /*initial_blocks=*/2, /*max_blocks=*/6);
  EXPECT_EQ(cache.capacity(), 2);
  EXPECT_EQ(cache.available(), 6);
  EXPECT_EQ(cache.block_bytes(), size_t(2 * layers * bs * kv_dim * 4));

  // A prompt of 6 tokens: two blocks, rows consecutive within a block.
  BlockTable prompt;
  std::vector<int32_t> rows;
  for (int t = 0; t < 6; ++t) {
    EXPECT_EQ(cache.blocks_needed(prompt, 1), t % bs == 0 ? 1 : 0) << t;
    rows.push_back(cache.append(prompt));
    fill(ops, cache, layers, kv_dim, rows.back());
  }
  ASSERT_EQ(prompt.blocks.size(), 2u);
  EXPECT_EQ(prompt.length, 6);
  for (int t = 0; t < 6; ++t) EXPECT_EQ(rows[t], prompt.blocks[t / bs] * bs + t % bs);
  EXPECT_EQ(cache.used(), 2);

  // Two forks share both blocks.
  BlockTable a = cache.fork(prompt), b = cache.fork(prompt);
  EXPECT_EQ(cache.refcount(prompt.blocks[0]), 3);
  EXPECT_EQ(cache.refcount(prompt.blocks[1]), 3);
  EXPECT_EQ(cache.used(), 2);
  // a diverges inside the shared partial block: copy-on-write of its 2 rows.
  EXPECT_EQ(cache.blocks_needed(a, 1), 1);
  EXPECT_EQ(cache.blocks_needed(a, 3), 2);  // the copy, then a block edge
  const int32_t row_a = cache.append(a);
  ASSERT_NE(a.blocks[1], prompt.blocks[1]);
  EXPECT_EQ(a.blocks[0], prompt.blocks[0]);  // the full block stays shared
  EXPECT_EQ(row_a, a.blocks[1] * bs + 2);
  EXPECT_EQ(cache.refcount(prompt.blocks[1]), 2);
  EXPECT_EQ(cache.refcount(a.blocks[1]), 1);
  EXPECT_EQ(cache.refcount(prompt.blocks[0]), 3);
  for (int l = 0; l < layers; ++l)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < kv_dim; ++c) {
        const int32_t from = prompt.blocks[1] * bs + r, to = a.blocks[1] * bs + r;
        EXPECT_EQ(key_at(cache, l, kv_dim, to, c), key_at(cache, l, kv_dim, from, c));
        EXPECT_EQ(cache.values(l).f32()[size_t(to) * kv_dim + c],
                  cache.values(l).f32()[size_t(from) * kv_dim + c]);
      }
  // a's next row is in its own block now: no copy, no new block.
  EXPECT_EQ(cache.blocks_needed(a, 1), 0);
  EXPECT_EQ(cache.append(a), a.blocks[1] * bs + 3);
  EXPECT_EQ(cache.used(), 3);

  // Freeing: a block goes back when its last holder lets go.
  cache.free(prompt);
  EXPECT_TRUE(prompt.blocks.empty());
  EXPECT_EQ(cache.used(), 3);  // b still holds both prompt blocks
  const int32_t shared_tail = b.blocks[1];
  cache.free(b);
  EXPECT_EQ(cache.used(), 2);
  EXPECT_EQ(cache.refcount(shared_tail), 0);
  // The free list hands the most recently freed block out first.
  BlockTable c;
  cache.append(c);
  EXPECT_EQ(c.blocks[0], shared_tail);
  cache.free(c);
  cache.free(a);
  EXPECT_EQ(cache.used(), 0);

  // Growth up to the cap keeps the contents; past it append refuses.
  BlockTable big;
  std::vector<int32_t> big_rows;
  for (int t = 0; t < 6 * bs; ++t) {
    big_rows.push_back(cache.append(big));
    ASSERT_GE(big_rows.back(), 0) << t;
    fill(ops, cache, layers, kv_dim, big_rows.back());
  }
  EXPECT_EQ(cache.capacity(), 6);
  EXPECT_EQ(cache.available(), 0);
  EXPECT_EQ(cache.peak_used(), 6);
  for (int32_t r : big_rows) EXPECT_EQ(key_at(cache, 1, kv_dim, r, 2), float(1000 + 10 * r + 2));
  const BlockTable before = big;
  EXPECT_EQ(cache.append(big), -1);
  EXPECT_EQ(big.blocks, before.blocks);
  EXPECT_EQ(big.length, before.length);
  cache.free(big);
  EXPECT_EQ(cache.available(), 6);
  EXPECT_THROW(KVCache(ops, layers, kv_dim, 0, 1, 1), Error);
}

// Growth copies the pools: rows written before it read back after it.
TEST(KVCache, GrowthKeepsRows) {
  CpuOps ops;
  KVCache cache(ops, 1, 2, 2, 1, 10);
  BlockTable t;
  std::vector<int32_t> rows;
  for (int i = 0; i < 19; ++i) {
    rows.push_back(cache.append(t));
    fill(ops, cache, 1, 2, rows.back());
    for (int32_t r : rows) ASSERT_EQ(key_at(cache, 0, 2, r, 1), float(10 * r + 1)) << i;
  }
  EXPECT_EQ(cache.capacity(), 10);  // 1, 2, 3, 4, 6, 9, then the cap
}

// A CPU backend with a memory budget: allocations past it fail, as a GPU's
// cudaMalloc would.
class LimitedOps : public CpuOps {
 public:
  size_t budget = size_t(-1), used = 0;
  Buf alloc_buf(size_t n, DType dtype) override {
    const size_t bytes = std::max<size_t>(n, 1) * dtype_size(dtype);
    if (used + bytes > budget) throw Error("out of memory (test budget)");
    Buf b = CpuOps::alloc_buf(n, dtype);
    used += bytes;
    sizes_[b.ptr] = bytes;
    return b;
  }
  void release(const void* p) override {
    auto it = sizes_.find(p);
    if (it != sizes_.end()) {
      used -= it->second;
      sizes_.erase(it);
    }
    CpuOps::release(p);
  }

 private:
  std::map<const void*, size_t> sizes_;
};

TEST(KVCache, OutOfMemoryCapsThePool) {
  LimitedOps ops;
  KVCache cache(ops, 2, 3, 4, 2, 100);
  ops.budget = ops.used + 100;  // less than one layer's grown pool (144 bytes)
  BlockTable t;
  for (int i = 0; i < 8; ++i) ASSERT_GE(cache.append(t), 0);
  EXPECT_EQ(cache.append(t), -1);  // the growth failed: no block, no throw
  EXPECT_EQ(cache.max_blocks(), 2);
  EXPECT_EQ(cache.available(), 0);
  EXPECT_FALSE(cache.ensure_free(1));
  cache.free(t);
  EXPECT_TRUE(cache.ensure_free(2));
}

// ---------------------------------------------------------------------------
// The scheduler

struct Fixture {
  ModelConfig config = qwen3_config(23, 16, 2, 4, 2, 6, 24, false);
  CpuOps ops;
  std::unique_ptr<Transformer> model;
  Fixture() {
    model.reset(new Transformer(config, ops));
    model->set_params(random_params(*model, 51));
  }
};

// Lengths 5, 8, 2, 11: with blocks of 4, prompts ending inside a block (copy
// on write for the group) and on a block edge.
std::vector<std::vector<int32_t>> prompts() {
  return {{1, 2, 3, 4, 5}, {7, 7, 1, 0, 9, 3, 3, 2}, {4, 12}, {22, 5, 8, 16, 3, 1, 9, 9, 2, 6, 0}};
}

SamplingParams sampling() {
  SamplingParams sp;
  sp.temperature = 1.f;
  sp.max_new_tokens = 10;
  sp.seed = 1234;
  return sp;
}

void expect_same(const std::vector<Completion>& got, const std::vector<Completion>& want,
                 const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i].tokens) << what << " sequence " << i;
    EXPECT_EQ(got[i].logprobs, want[i].logprobs) << what << " sequence " << i;
    EXPECT_EQ(got[i].stopped, want[i].stopped) << what << " sequence " << i;
  }
}

TEST(Generation, LogprobsEqualTeacherForcedForward) {
  Fixture f;
  const auto ps = prompts();
  const int G = 3;
  for (float temperature : {1.f, 0.6f}) {
    SamplingParams sp = sampling();
    sp.temperature = temperature;
    sp.top_p = temperature < 1.f ? 0.9f : 1.f;
    EngineOptions engine;
    engine.block_size = 4;
    const std::vector<Completion> out = generate_groups(*f.model, ps, G, sp, 0, engine);
    ASSERT_EQ(out.size(), ps.size() * G);
    for (size_t i = 0; i < out.size(); ++i) {
      const auto& prompt = ps[i / G];
      std::vector<int32_t> seq = prompt;
      seq.insert(seq.end(), out[i].tokens.begin(), out[i].tokens.end());
      const LossOutputs lo = f.model->forward(Batch::from_token_rows(seq, 1, int(seq.size())));
      ASSERT_EQ(out[i].logprobs.size(), out[i].tokens.size());
      ASSERT_EQ(out[i].tokens.size(), size_t(sp.max_new_tokens));
      for (size_t j = 0; j < out[i].tokens.size(); ++j)
        EXPECT_NEAR(out[i].logprobs[j], lo.logprobs[prompt.size() - 1 + j], 1e-5)
            << "sequence " << i << " token " << j << " T " << temperature;
    }
  }
}

TEST(Generation, TokensIndependentOfBatchBlocksSharingAndPreemption) {
  Fixture f;
  const auto ps = prompts();
  const int G = 4;
  const SamplingParams sp = sampling();
  GenerationStats base_stats;
  EngineOptions base_engine;
  base_engine.block_size = 4;
  base_engine.stats = &base_stats;
  const std::vector<Completion> base = generate_groups(*f.model, ps, G, sp, 0, base_engine);
  EXPECT_EQ(base_stats.preemptions, 0u);
  EXPECT_EQ(base_stats.shared_prompts, ps.size() * (G - 1));
  EXPECT_EQ(base_stats.prefill_passes, 1u);  // every prompt in one packed forward
  base_engine.stats = nullptr;

  // G copies of each prompt through generate(): the same streams.
  std::vector<std::vector<int32_t>> repeated;
  for (const auto& p : ps)
    for (int j = 0; j < G; ++j) repeated.push_back(p);
  expect_same(generate(*f.model, repeated, sp, 0, base_engine), base, "repeated prompts");

  for (int block_size : {1, 3, 64}) {
    EngineOptions e = base_engine;
    e.block_size = block_size;
    expect_same(generate_groups(*f.model, ps, G, sp, 0, e), base, "block size");
  }
  {
    EngineOptions e = base_engine;
    e.share_prefix = false;
    GenerationStats stats;
    e.stats = &stats;
    expect_same(generate_groups(*f.model, ps, G, sp, 0, e), base, "no prefix sharing");
    EXPECT_EQ(stats.shared_prompts, 0u);
    // Sharing stores each prompt once: a lower peak.
    EXPECT_LT(base_stats.peak_cache_bytes, stats.peak_cache_bytes);
  }
  for (int max_batch : {1, 3, 5}) {
    SamplingParams small = sp;
    small.max_batch = max_batch;
    expect_same(generate_groups(*f.model, ps, G, small, 0, base_engine), base, "max_batch");
  }
  {
    EngineOptions e = base_engine;
    e.max_prefill_tokens = 3;  // one prompt per prefill
    expect_same(generate_groups(*f.model, ps, G, sp, 0, e), base, "prefill budget");
  }
  // Each prompt alone, numbered by first_index.
  for (size_t k = 0; k < ps.size(); ++k) {
    const std::vector<Completion> alone =
        generate_groups(*f.model, {ps[k]}, G, sp, k * G, base_engine);
    expect_same(alone, {base.begin() + k * G, base.begin() + (k + 1) * G}, "alone");
  }
  // A cache of one sequence at full length (11 + 10 - 1 = 20 tokens: 5
  // blocks) for 16 sequences: preemption and recomputation, every request
  // completes with the same tokens.
  for (int block_size : {4, 3}) {
    EngineOptions e = base_engine;
    e.block_size = block_size;
    e.max_cache_tokens = 1;  // raised to one full sequence
    GenerationStats stats;
    e.stats = &stats;
    expect_same(generate_groups(*f.model, ps, G, sp, 0, e), base, "tiny cache");
    EXPECT_GT(stats.preemptions, 0u) << block_size;
    EXPECT_LE(stats.reserved_cache_bytes,
              size_t((20 + block_size - 1) / block_size) * size_t(block_size) * 2 *
                  f.config.num_layers * f.config.kv_dim() * 4);
  }
  {
    EngineOptions e = base_engine;
    e.max_cache_tokens = 24;  // a few sequences at once
    GenerationStats stats;
    e.stats = &stats;
    expect_same(generate_groups(*f.model, ps, G, sp, 0, e), base, "small cache");
    EXPECT_GT(stats.preemptions, 0u);
  }
  // The lock-step baseline: a full-length slot per sequence, prompts fed
  // token by token: the same tokens, more memory reserved.
  {
    EngineOptions e = base_engine;
    e.lockstep = true;
    GenerationStats stats;
    e.stats = &stats;
    expect_same(generate_groups(*f.model, ps, G, sp, 0, e), base, "lock-step");
    EXPECT_EQ(stats.prefill_passes, 0u);
    EXPECT_GT(stats.reserved_cache_bytes, base_stats.peak_cache_bytes);
  }
  // Negative control: another seed draws other tokens.
  SamplingParams other = sp;
  other.seed = 99;
  const std::vector<Completion> different = generate_groups(*f.model, ps, G, other, 0, base_engine);
  int same = 0;
  for (size_t i = 0; i < base.size(); ++i) same += different[i].tokens == base[i].tokens;
  EXPECT_LT(same, int(base.size()) / 2);
  // The G completions of a group differ from each other (own streams).
  EXPECT_NE(base[0].tokens, base[1].tokens);
}

// The backend runs out of memory while the cache grows: requests still
// complete, by preemption, with the same tokens.
TEST(Generation, OutOfMemoryPreemptsInsteadOfFailing) {
  LimitedOps ops;
  const ModelConfig config = qwen3_config(23, 16, 2, 4, 2, 6, 24, false);
  Transformer model(config, ops);
  model.set_params(random_params(model, 51));
  const auto ps = prompts();
  const int G = 4;
  const SamplingParams sp = sampling();
  EngineOptions engine;
  engine.block_size = 4;
  engine.share_prefix = false;  // 68 blocks at the peak, and the largest prefill
  const std::vector<Completion> base = generate_groups(model, ps, G, sp, 0, engine);
  // Room for the first 64-block pool and little more: the growth past 64
  // fails.
  ops.budget = ops.used + 64 * size_t(2 * 2 * 4 * config.kv_dim() * 4) + 2000;
  GenerationStats stats;
  engine.stats = &stats;
  engine.max_prefill_tokens = 32;
  expect_same(generate_groups(model, ps, G, sp, 0, engine), base, "out of memory");
  EXPECT_GT(stats.preemptions, 0u);
  EXPECT_EQ(stats.reserved_cache_bytes, size_t(64) * 2 * 2 * 4 * config.kv_dim() * 4);
}

// Sequences that end early (a stop token) free their blocks and their
// place goes to waiting ones; stop decisions are the same under preemption.
TEST(Generation, StopsUnderPreemptionAndContinuousBatching) {
  Fixture f;
  const auto ps = prompts();
  SamplingParams sp = sampling();
  sp.max_new_tokens = 12;
  const std::vector<Completion> free_run = generate_groups(*f.model, ps, 3, sp);
  sp.stop_tokens = {free_run[0].tokens[2], free_run[4].tokens[1]};
  sp.max_batch = 2;
  const std::vector<Completion> cut = generate_groups(*f.model, ps, 3, sp);
  EngineOptions tiny;
  tiny.block_size = 2;
  tiny.max_cache_tokens = 1;
  GenerationStats stats;
  tiny.stats = &stats;
  expect_same(generate_groups(*f.model, ps, 3, sp, 0, tiny), cut, "tiny cache with stops");
  int stopped = 0;
  for (size_t i = 0; i < cut.size(); ++i) {
    const auto& full = free_run[i].tokens;
    auto it = std::find_first_of(full.begin(), full.end(), sp.stop_tokens.begin(),
                                 sp.stop_tokens.end());
    const std::vector<int32_t> want(full.begin(), it == full.end() ? full.end() : it + 1);
    EXPECT_EQ(cut[i].tokens, want) << i;
    EXPECT_EQ(cut[i].stopped, it != full.end()) << i;
    stopped += cut[i].stopped;
  }
  EXPECT_GE(stopped, 2);
}

// The engine on a bf16 backend: every sampled token's log-prob against the
// backend's own teacher-forced forward over the same tokens.
void check_bf16_logprobs(Ops& ops) {
  const ModelConfig config = qwen3_config(97, 64, 2, 4, 2, 32, 96, true);
  Transformer model(config, ops);
  model.set_params(random_params(model, 5));
  const auto ps = prompts();
  SamplingParams sp = sampling();
  const int G = 3;
  for (size_t cache_tokens : {size_t(0), size_t(1)}) {  // roomy, then preempting
    EngineOptions engine;
    engine.block_size = 4;
    engine.max_cache_tokens = cache_tokens;
    GenerationStats stats;
    engine.stats = &stats;
    const std::vector<Completion> out = generate_groups(model, ps, G, sp, 0, engine);
    EXPECT_EQ(stats.shared_prompts > 0, true);
    double worst = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      const auto& prompt = ps[i / G];
      std::vector<int32_t> seq = prompt;
      seq.insert(seq.end(), out[i].tokens.begin(), out[i].tokens.end());
      const LossOutputs lo = model.forward(Batch::from_token_rows(seq, 1, int(seq.size())));
      ASSERT_EQ(out[i].tokens.size(), size_t(sp.max_new_tokens));
      for (size_t j = 0; j < out[i].tokens.size(); ++j)
        worst = std::max(worst, std::fabs(double(out[i].logprobs[j]) -
                                          lo.logprobs[prompt.size() - 1 + j]));
    }
    EXPECT_LT(worst, 5e-2) << ops.name() << " cache tokens " << cache_tokens;
    if (cache_tokens) {
      EXPECT_GT(stats.preemptions, 0u);
    }
  }
}

TEST(Generation, Bf16LogprobsMatchTeacherForcedForward) {
  test::Bf16CpuOps ops;
  check_bf16_logprobs(ops);
}

TEST(Generation, GpuLogprobsMatchTeacherForcedForward) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  check_bf16_logprobs(*gpu);
}

TEST(Generation, RejectsBadRequests) {
  Fixture f;
  SamplingParams sp = sampling();
  EXPECT_THROW(generate_groups(*f.model, prompts(), 0, sp), Error);
  EXPECT_THROW(generate_groups(*f.model, {{1, 99}}, 2, sp), Error);  // token outside the vocabulary
  EngineOptions e;
  e.block_size = 0;
  EXPECT_THROW(generate_groups(*f.model, prompts(), 2, sp, 0, e), Error);
  e = EngineOptions();
  e.max_prefill_tokens = 0;
  EXPECT_THROW(generate_groups(*f.model, prompts(), 2, sp, 0, e), Error);
  sp.max_new_tokens = 30;  // 11 + 30 - 1 > 32 positions
  EXPECT_THROW(generate_groups(*f.model, prompts(), 2, sp), Error);
  EXPECT_TRUE(generate_groups(*f.model, {}, 2, sampling()).empty());
}

}  // namespace
}  // namespace polaris
