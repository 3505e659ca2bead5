// Ops::sample_rows: CudaOps' batched sampler (cuda/sampling.cu) against the
// CPU's sample_token (model/sampler.cpp), token for token:
//   - V in {1, 2, 1000, 50257, 151936}, fp32 and bf16 logits, rows of every
//     shape (random at two scales, flat, many ties with +-0, -inf and NaN
//     entries, a few large logits, one finite logit), temperatures 0, 0.3,
//     1, 1.6, top_k 0, 1, 50, V, V + 5, top_p 1, 0.9, 1e-7, min_p 0, 0.05,
//     1, rows strided and picked out of order, more rows than the grid;
//   - the tokens must be EQUAL; the log-probs within one float rounding
//     (kLogprobTol below); outputs poisoned before each run;
//   - a second run gives the same bits; a row with no finite logit throws;
//   - a tiny model's decode logits (Transformer::decode_logits) sampled in place;
//   - negative control: the next draw number (counter + 1) disagrees with
//     the CPU on many rows, so agreement above is not vacuous.
// Without a GPU those skip. The CPU section runs everywhere: the shared
// arithmetic of model/sampling_math.h (the order key and its digits, the
// exact integer top_p, the draw), the radix select of the kernel emulated on
// the host with those pieces against a sort, and the Ops default (the CPU
// backend's sample_rows) against sample_token.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "model/sampler.h"
#include "model/sampling_math.h"
#include "model/transformer.h"
#include "src/common/error.h"
#include "tests/cpu_op_checks.h"
#include "tests/logit_rows.h"
#include "tests/ops_compare.h"
#include "tests/test_util.h"

namespace polaris {
namespace {

using namespace sampling_detail;
using test::DeviceBuffer;
using test::round_bf16;

const float kInf = std::numeric_limits<float>::infinity();

// Both backends compute (l - max) as the same float and the sum of the same
// float exps in double (GPU: another order, relative error <= V * 2^-53 ~
// 2e-11) and log in double (1 ulp): the doubles differ by ~1e-11, so the
// float log-probs differ by at most one rounding, 2^-23 * max(1, |lp|).
double logprob_tolerance(double want) { return std::ldexp(1.0, -23) * std::max(1.0, std::fabs(want)); }

std::string describe(const SampleRowParams& p) {
  return "T " + std::to_string(p.temperature) + " top_k " + std::to_string(p.top_k) + " top_p " +
         std::to_string(p.top_p) + " min_p " + std::to_string(p.min_p) + " stream " +
         std::to_string(p.stream) + " counter " + std::to_string(p.counter);
}

// n rows of V logits, `stride` apart, in a host buffer; row_indices lists
// them in reverse, so the i-th draw reads row n - 1 - i.
struct Batch {
  int V = 0, stride = 0, n = 0;
  std::vector<float> logits;
  std::vector<LogitShape> shapes;
  std::vector<int32_t> row_indices;
  std::vector<SampleRowParams> params;
};

Batch make_batch(int V, int n, bool bf16, uint64_t seed) {
  Batch b;
  b.V = V;
  b.stride = V + 3;
  b.n = n;
  b.logits.assign(size_t(n) * b.stride, std::nanf(""));  // the padding is never read
  const float temperatures[] = {0.f, 0.3f, 1.f, 1.6f};
  const int top_ks[] = {0, 1, 50, V, V + 5};
  const float top_ps[] = {1.f, 0.9f, 1e-7f};
  const float min_ps[] = {0.f, 0.05f, 0.f, 1.f};
  for (int r = 0; r < n; ++r) {
    const LogitShape shape = LogitShape(r % int(LogitShape::count));
    b.shapes.push_back(shape);
    std::vector<float> row = logit_row(V, shape, 2.f, seed * 1000003 + uint64_t(r));
    if (bf16)
      for (float& l : row) l = round_bf16(l);
    std::copy(row.begin(), row.end(), b.logits.begin() + size_t(r) * b.stride);
  }
  for (int i = 0; i < n; ++i) {
    b.row_indices.push_back(n - 1 - i);
    SampleRowParams p;
    p.temperature = temperatures[i % 4];
    p.top_k = top_ks[(i / 4) % 5];
    p.top_p = top_ps[i % 3];
    p.min_p = min_ps[(i / 3) % 4];
    p.stream = seed * 7919 + uint64_t(i);
    p.counter = uint64_t(i % 13);
    b.params.push_back(p);
  }
  return b;
}

// sample_token on each listed row: the oracle.
void cpu_reference(const Batch& b, std::vector<int32_t>* tokens, std::vector<float>* logprobs) {
  tokens->assign(size_t(b.n), -1);
  logprobs->assign(size_t(b.n), 0.f);
  for (int i = 0; i < b.n; ++i)
    (*tokens)[size_t(i)] = sample_token(b.logits.data() + size_t(b.row_indices[size_t(i)]) * b.stride,
                                        b.V, b.params[size_t(i)], &(*logprobs)[size_t(i)]);
}

// Runs ops.sample_rows on the batch (logits uploaded as `dtype`), outputs poisoned first.
void run_ops(Ops& ops, const Batch& b, DType dtype, std::vector<int32_t>* tokens,
             std::vector<float>* logprobs) {
  DeviceBuffer logits(ops, b.logits, dtype);
  tokens->assign(size_t(b.n), -7);
  logprobs->assign(size_t(b.n), std::nanf(""));
  ops.sample_rows(tokens->data(), logprobs->data(), logits, b.stride, b.row_indices.data(),
                  b.params.data(), b.n, b.V);
}

void expect_same_draws(const std::string& op, const Batch& b, DType dtype,
                       const std::vector<int32_t>& got, const std::vector<float>& got_lp,
                       const std::vector<int32_t>& want, const std::vector<float>& want_lp) {
  int bad = 0;
  for (int i = 0; i < b.n; ++i) {
    const size_t k = size_t(i);
    const bool token_ok = got[k] == want[k];
    const bool lp_ok = std::fabs(double(got_lp[k]) - double(want_lp[k])) <=
                       logprob_tolerance(want_lp[k]);  // NaN fails
    if (token_ok && lp_ok) continue;
    if (++bad > 8) continue;  // the first few, in full
    ADD_FAILURE() << op << " V=" << b.V << " n=" << b.n << " " << dtype_name(dtype) << " row "
                  << i << " (" << logit_shape_name(b.shapes[size_t(b.row_indices[k])]) << ", "
                  << describe(b.params[k]) << "): got token " << got[k] << " logprob "
                  << got_lp[k] << ", expected token " << want[k] << " logprob " << want_lp[k];
  }
  EXPECT_EQ(bad, 0) << op << " V=" << b.V << " " << dtype_name(dtype) << ": " << bad << " of "
                    << b.n << " rows differ";
}

// ---------------------------------------------------------------------------
// CPU: the shared arithmetic

TEST(SamplingMath, OrderKeyAscendsInTheSamplingOrder) {
  std::mt19937_64 rng(3);
  std::vector<float> logits = {0.f, -0.f, kInf, -kInf, 1.f, -1.f, 1e-45f, -1e-45f,
                               std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()};
  std::normal_distribution<float> normal(0.f, 5.f);
  for (int i = 0; i < 3000; ++i) logits.push_back(i % 3 ? normal(rng) : std::round(normal(rng)));
  const int n = int(logits.size());
  std::vector<int32_t> by_order(static_cast<size_t>(n)), by_key(static_cast<size_t>(n));
  std::iota(by_order.begin(), by_order.end(), 0);
  by_key = by_order;
  std::sort(by_order.begin(), by_order.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  std::sort(by_key.begin(), by_key.end(),
            [&](int32_t a, int32_t b) { return order_key(logits[a], a) < order_key(logits[b], b); });
  EXPECT_EQ(by_key, by_order);
  for (int i = 0; i < n; ++i) {
    const uint64_t key = order_key(logits[i], i);
    EXPECT_EQ(key_id(key), i);
    const float back = key_logit(key);
    EXPECT_EQ(float_bits(back), float_bits(logits[i] == 0.f ? 0.f : logits[i])) << logits[i];
    uint64_t rebuilt = 0;  // the digits, most significant first, are the key
    for (int d = 0; d < kKeyDigits; ++d) {
      ASSERT_LT(key_digit(key, d), uint32_t(kDigitBins));
      EXPECT_EQ(key_prefix(key, d), rebuilt) << "digit " << d;
      rebuilt = (rebuilt << 8) | key_digit(key, d);
    }
    EXPECT_EQ(rebuilt, key);
  }
}

// ceil(top_p * total) from frexp and 128-bit integers: an independent route
// to the same exact value (top_p = f * 2^e, f in [0.5, 1) has 24 bits).
uint64_t need_reference(float top_p, uint64_t total) {
  int e = 0;
  const double f = std::frexp(double(top_p), &e);
  const unsigned __int128 m = (unsigned __int128)std::ldexp(f, 24);
  const int s = 24 - e;  // top_p = m / 2^s
  const unsigned __int128 p = m * total;
  unsigned __int128 q = s >= 128 ? 0 : p >> s;
  if (s >= 128 ? p != 0 : (q << s) != p) q += 1;
  if (q < 1) return 1;
  return q >= total ? total : uint64_t(q);
}

TEST(SamplingMath, TopPNeedIsExact) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  int checked = 0;
  for (int i = 0; i < 20000; ++i) {
    float top_p = unit(rng);
    if (i % 5 == 0) top_p = std::ldexp(top_p, -int(rng() % 140));  // tiny, denormal
    if (!(top_p > 0.f)) continue;
    const int bits = 1 + int(rng() % 62);
    const uint64_t total = 1 + (rng() >> (64 - bits));
    ASSERT_EQ(top_p_need(top_p, total), need_reference(top_p, total))
        << "top_p " << top_p << " total " << total;
    if (total < (uint64_t(1) << 40)) {  // long double holds the 64-bit product exactly
      long double need = std::ceil((long double)top_p * (long double)total);
      need = std::max<long double>(1, std::min<long double>(need, (long double)total));
      ASSERT_EQ(top_p_need(top_p, total), uint64_t(need)) << "top_p " << top_p << " total " << total;
    }
    ++checked;
  }
  EXPECT_GT(checked, 19000);
  const uint64_t big = (uint64_t(1) << 62) - 1;  // odd: halves round up
  EXPECT_EQ(top_p_need(0.5f, big), (big + 1) / 2);
  EXPECT_EQ(top_p_need(0.75f, big), uint64_t((3 * (unsigned __int128)big + 3) / 4));
  EXPECT_EQ(top_p_need(1.f, big), big);
  EXPECT_EQ(top_p_need(std::nanf(""), big), big);  // no cut
  EXPECT_EQ(top_p_need(1e-30f, big), 1u);
  EXPECT_EQ(top_p_need(std::nextafter(1.f, 0.f), 10), 10u);
}

TEST(SamplingMath, UniformBelowStaysInRange) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t total = 1 + (rng() >> (2 + rng() % 62));
    const uint64_t u = uniform_below(total, rng(), rng());
    ASSERT_LT(u, total);
  }
  EXPECT_EQ(uniform_below(1, 123, 456), 0u);
  // the top of the range is reachable: 53 random bits of all ones
  const uint64_t big = uint64_t(1) << 61;
  uint64_t most = 0;
  for (uint64_t c = 0; c < 5000; ++c) most = std::max(most, uniform_below(big, 9, c));
  EXPECT_GT(most, big - big / 1000);
}

// The kernel's radix select, emulated on the host with the same pieces: the
// first key (ascending) at which the running measure exceeds target. A
// digit's histogram covers the keys sharing the digits fixed so far.
uint64_t radix_select(const std::vector<uint64_t>& keys, const std::vector<uint64_t>& measure,
                      uint64_t target) {
  uint64_t prefix = 0;
  for (int d = 0; d < kKeyDigits; ++d) {
    std::vector<uint64_t> mass(kDigitBins, 0), count(kDigitBins, 0), first(kDigitBins, ~uint64_t(0));
    for (size_t i = 0; i < keys.size(); ++i) {
      if (key_prefix(keys[i], d) != prefix) continue;
      const uint32_t b = key_digit(keys[i], d);
      mass[b] += measure[i];
      count[b] += 1;
      first[b] = std::min(first[b], keys[i]);
    }
    uint64_t before = 0;
    int bin = -1;
    for (int b = 0; b < kDigitBins && bin < 0; ++b) {
      if (target < before + mass[b]) bin = b;
      else before += mass[b];
    }
    if (bin < 0) return ~uint64_t(0);
    target -= before;
    if (count[size_t(bin)] == 1) return first[size_t(bin)];
    prefix = (prefix << 8) | uint64_t(bin);
  }
  return ~uint64_t(0);
}

TEST(SamplingMath, RadixSelectFindsTheRunningSumCrossing) {
  std::mt19937_64 rng(17);
  for (int trial = 0; trial < 60; ++trial) {
    const int n = 1 + int(rng() % 3000);
    // normal, wide, flat, ties
    const std::vector<float> logits = logit_row(n, LogitShape(trial % 4), 2.f, rng());
    const float max_logit = *std::max_element(logits.begin(), logits.end());
    std::vector<uint64_t> keys, weights;  // per id
    for (int i = 0; i < n; ++i) {
      keys.push_back(order_key(logits[size_t(i)], i));
      weights.push_back(trial % 2 ? weight(scaled(logits[size_t(i)], max_logit, 0.7f),
                                           weight_shift(n))
                                  : 1);  // by count (top_k) or by weight
    }
    std::vector<uint64_t> sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    std::vector<uint64_t> shuffled = keys, measure;  // the compacted keys come in any order
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    for (uint64_t key : shuffled) measure.push_back(weights[size_t(key_id(key))]);
    uint64_t total = 0;
    for (uint64_t w : weights) total += w;
    ASSERT_GT(total, 0u);
    for (int t = 0; t < 20; ++t) {
      const uint64_t target = t == 0 ? 0 : t == 1 ? total - 1 : rng() % total;
      uint64_t running = 0, want = 0;
      for (uint64_t key : sorted) {
        running += weights[size_t(key_id(key))];
        if (running > target) {
          want = key;
          break;
        }
      }
      ASSERT_EQ(radix_select(shuffled, measure, target), want) << "n " << n << " target " << target;
    }
  }
}

// The kernel's row procedure (cuda/sampling.cu, step for step), on the host
// with the emulated radix select: candidates as order keys in any order, the
// top_k boundary by count, the top_p boundary and the draw by mass, the kept
// mass as (key <= limit and x >= min_p's floor). It must pick sample_token's
// token: this checks the decomposition on any machine; the GPU tests check
// the kernel.
int32_t emulate_kernel_row(const float* logits, int V, const SampleRowParams& p, uint64_t seed) {
  float M = 0.f;
  int argmax = -1;
  for (int j = 0; j < V; ++j)
    if (logits[j] > -kInf && (argmax < 0 || logits[j] > M)) M = logits[j], argmax = j;
  if (argmax < 0) return -1;
  if (!(p.temperature > 0.f)) return argmax;
  const float inv = 1.f / p.temperature, floor_x = min_p_floor(p.min_p);
  const int shift = weight_shift(V);
  const float cut = cutoff(shift);
  auto x_of = [&](uint64_t key) { return scaled_inv(key_logit(key), M, inv); };
  auto q_of = [&](uint64_t key) { return fixed_point(exp_nonpositive(x_of(key)), fixed_scale(shift)); };
  std::vector<uint64_t> keys;
  for (int j = 0; j < V; ++j)
    if (scaled_inv(logits[j], M, inv) >= cut) keys.push_back(order_key(logits[j], j));
  std::shuffle(keys.begin(), keys.end(), std::mt19937_64(seed));  // the compaction's order
  std::vector<uint64_t> ones(keys.size(), 1), mass;
  for (uint64_t key : keys) mass.push_back(q_of(key));
  auto totals = [&](uint64_t limit, bool with_min_p, uint64_t* sum, uint64_t* count) {
    *sum = *count = 0;
    for (uint64_t key : keys)
      if (key <= limit && (!with_min_p || x_of(key) >= floor_x)) *sum += q_of(key), *count += 1;
  };
  const uint64_t n = keys.size();
  const bool top_k_cut = p.top_k > 0 && uint64_t(p.top_k) < n;
  const uint64_t K = top_k_cut ? uint64_t(p.top_k) : n;
  uint64_t limit = ~uint64_t(0), k_total, k_min_p, ignored;
  if (top_k_cut) limit = radix_select(keys, ones, K - 1);
  totals(limit, false, &k_total, &ignored);
  totals(limit, true, &ignored, &k_min_p);
  bool cut_any = k_min_p < K;
  if (p.top_p < 1.f) {
    const uint64_t p_key = radix_select(keys, mass, top_p_need(p.top_p, k_total) - 1);
    if (p_key < limit) limit = p_key, cut_any = true;
  }
  uint64_t kept_total = k_total;
  if (cut_any) totals(limit, true, &kept_total, &ignored);
  return key_id(radix_select(keys, mass, uniform_below(kept_total, p.stream, p.counter)));
}

TEST(SamplingMath, KernelProcedurePicksSampleTokensToken) {
  int rows = 0;
  for (int V : {1, 2, 7, 1000, 20000}) {
    const Batch b = make_batch(V, V > 10000 ? 48 : 160, V == 1000, uint64_t(V) + 40);
    std::vector<int32_t> want;
    std::vector<float> want_lp;
    cpu_reference(b, &want, &want_lp);
    for (int i = 0; i < b.n; ++i, ++rows) {
      const float* row = b.logits.data() + size_t(b.row_indices[size_t(i)]) * b.stride;
      ASSERT_EQ(emulate_kernel_row(row, V, b.params[size_t(i)], uint64_t(i)), want[size_t(i)])
          << "V " << V << " row " << i << " (" << logit_shape_name(b.shapes[size_t(b.row_indices[size_t(i)])])
          << ", " << describe(b.params[size_t(i)]) << ")";
    }
  }
  EXPECT_GT(rows, 500);
}

// ---------------------------------------------------------------------------
// CPU: the Ops default (CpuOps' sample_rows) is sample_token, row for row.

TEST(CpuSampling, DefaultEqualsSampleToken) {
  CpuOps ops;
  for (int V : {1, 2, 1000, 50257}) {
    const Batch b = make_batch(V, V > 10000 ? 24 : 80, false, uint64_t(V));
    std::vector<int32_t> got, want;
    std::vector<float> got_lp, want_lp;
    run_ops(ops, b, DType::f32, &got, &got_lp);
    cpu_reference(b, &want, &want_lp);
    EXPECT_EQ(got, want) << "V " << V;
    EXPECT_TRUE(test::bitwise_equal(got_lp, want_lp)) << "V " << V;
  }
  // a row with no finite logit: sample_token's error
  std::vector<float> dead(8, -kInf);
  const int32_t row = 0;
  SampleRowParams p;
  int32_t token = 0;
  EXPECT_THROW(ops.sample_rows(&token, nullptr, dead.data(), 8, &row, &p, 1, 8), Error);
}

// ---------------------------------------------------------------------------
// GPU against the CPU

TEST(OpsSampling, SameTokensAsTheCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  struct Case {
    int V, n;
  };
  // n = 600 > the grid (one block per SM): blocks take several rows.
  for (const Case c : {Case{1, 40}, Case{2, 80}, Case{1000, 600}, Case{50257, 96}, Case{151936, 64}}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      const Batch b = make_batch(c.V, c.n, dtype == DType::bf16, uint64_t(c.V) + 1);
      std::vector<int32_t> want, got, again;
      std::vector<float> want_lp, got_lp, again_lp;
      cpu_reference(b, &want, &want_lp);
      run_ops(*gpu, b, dtype, &got, &got_lp);
      expect_same_draws("sample_rows", b, dtype, got, got_lp, want, want_lp);
      run_ops(*gpu, b, dtype, &again, &again_lp);
      EXPECT_EQ(again, got) << "V " << c.V << " " << dtype_name(dtype) << ": a second run differs";
      EXPECT_TRUE(test::bitwise_equal(again_lp, got_lp)) << "V " << c.V << ": log-probs differ";
    }
  }
}

TEST(OpsSampling, TokensWithoutLogprobsAndErrors) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const Batch b = make_batch(5000, 48, true, 99);
  std::vector<int32_t> want;
  std::vector<float> want_lp;
  cpu_reference(b, &want, &want_lp);
  DeviceBuffer logits(*gpu, b.logits, DType::bf16);
  std::vector<int32_t> got(size_t(b.n), -7);
  gpu->sample_rows(got.data(), nullptr, logits, b.stride, b.row_indices.data(), b.params.data(),
                   b.n, b.V);
  EXPECT_EQ(got, want);
  // a row of -inf and NaN only: the CPU's error
  std::vector<float> dead(64, -kInf);
  dead[3] = std::nanf("");
  DeviceBuffer dead_logits(*gpu, dead, DType::f32);
  const int32_t row = 0;
  SampleRowParams p;
  int32_t token = 0;
  EXPECT_THROW(gpu->sample_rows(&token, nullptr, dead_logits, 64, &row, &p, 1, 64), Error);
}

// A model's own decode logits (bf16, in the buffer Transformer::decode_logits
// leaves on the device): sampled where they are, and downloaded by the CPU.
TEST(OpsSampling, DecodeLogitsOfAModel) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const ModelConfig config = qwen3_config(3000, 64, 2, 4, 2, 32, 96, false);
  Transformer model(config, *gpu);
  model.set_params(random_params(model, 8));
  const int V = config.vocab_size, S = 6;
  std::unique_ptr<KVCache> cache = model.make_kv_cache(16, 8, 64);
  std::vector<BlockTable> tables(S);
  std::vector<int32_t> tokens, positions, rows;
  std::vector<const BlockTable*> tabs;
  for (int s = 0; s < S; ++s) {
    tokens.push_back(int32_t(17 * s + 3));
    positions.push_back(0);
    rows.push_back(cache->append(tables[size_t(s)]));
    tabs.push_back(&tables[size_t(s)]);
  }
  const CBuf logits = model.decode_logits(*cache, tokens, positions, rows, tabs);
  std::vector<float> host(size_t(S) * V);
  gpu->download(host.data(), logits, host.size());
  Batch b;
  b.V = V;
  b.stride = V;
  b.n = 4 * S;
  b.logits = host;
  const float temperatures[] = {0.f, 0.7f, 1.f, 1.3f};
  for (int i = 0; i < b.n; ++i) {
    b.shapes.push_back(LogitShape::normal);
    b.row_indices.push_back(i % S);
    SampleRowParams p;
    p.temperature = temperatures[i / S];
    p.top_k = i % 3 == 0 ? 40 : 0;
    p.top_p = i % 2 ? 0.9f : 1.f;
    p.min_p = i % 5 == 0 ? 0.02f : 0.f;
    p.stream = uint64_t(i);
    p.counter = uint64_t(i * 3);
    b.params.push_back(p);
  }
  std::vector<int32_t> want(size_t(b.n)), got(size_t(b.n), -7);
  std::vector<float> want_lp(size_t(b.n)), got_lp(size_t(b.n), std::nanf(""));
  cpu_reference(b, &want, &want_lp);
  gpu->sample_rows(got.data(), got_lp.data(), logits, V, b.row_indices.data(), b.params.data(),
                   b.n, V);
  expect_same_draws("sample_rows (decode logits)", b, DType::bf16, got, got_lp, want, want_lp);
}

// Negative control: draws one counter later disagree with the CPU on many
// rows, so the comparison above can fail.
TEST(OpsSampling, NegativeControlAnotherDrawDisagrees) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  Batch b = make_batch(1000, 200, false, 5);
  std::vector<int32_t> want;
  std::vector<float> want_lp;
  cpu_reference(b, &want, &want_lp);
  for (SampleRowParams& p : b.params) p.counter += 1;
  std::vector<int32_t> got;
  std::vector<float> got_lp;
  run_ops(*gpu, b, DType::f32, &got, &got_lp);
  int differ = 0;
  for (int i = 0; i < b.n; ++i) differ += got[size_t(i)] != want[size_t(i)];
  EXPECT_GT(differ, b.n / 10);
}

}  // namespace
}  // namespace polaris
