// The sampler's token choice (model/sampler.cpp) against the full-sort
// definition, and the decode loop's options:
//   - sample_token == the oracle below (the previous implementation: sort the
//     whole vocabulary by (logit desc, id asc), cut, walk) for the same draw,
//     on many random rows (V up to 151936; ties, -inf and NaN entries,
//     extreme temperatures, top_k 1..V, top_p tiny..1, min_p);
//   - frequencies (chi-square) against softmax with the cuts applied, and a
//     negative control: draws from a neighbouring distribution fail it;
//   - the previous double-precision sampler picks the same token on all but
//     a rounding sliver of draws;
//   - greedy = argmax with the lowest id on ties; logprob = temperature-1
//     log-softmax whatever the cuts;
//   - the same tokens on any thread count; a sequence's samples do not
//     depend on the rest of the batch;
//   - stop strings, also spanning token boundaries.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_ops.h"
#include "model/scheduler.h"
#include "model/transformer.h"
#include "src/common/error.h"
#include "src/common/mix.h"
#include "tests/full_sort_sampler.h"
#include "tests/logit_rows.h"
#include "tests/test_util.h"

using namespace polaris;
using namespace polaris::sampling_detail;

namespace {

const float kInf = std::numeric_limits<float>::infinity();

// The full-sort definition: every token sorted, top_k prefix, top_p prefix
// (by the exact integer weights), min_p prefix, then the draw walks the
// order. Prepared once per row; draw() per (stream, counter).
struct Oracle {
  std::vector<int32_t> order;
  std::vector<uint64_t> q;  // weights in order
  size_t keep = 0;
  uint64_t kept_total = 0;
  int32_t argmax = -1;
  bool greedy = false;

  Oracle(const float* logits, int V, const SamplingParams& p) {
    auto key = [&](int32_t i) { return std::isnan(logits[i]) ? -kInf : logits[i]; };
    float mx = -kInf;
    for (int i = 0; i < V; ++i)
      if (key(i) > mx) mx = key(i), argmax = i;
    greedy = !(p.temperature > 0.f);
    if (greedy) return;
    order.resize(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return key(a) != key(b) ? key(a) > key(b) : a < b;
    });
    keep = (p.top_k > 0 && p.top_k < V) ? size_t(p.top_k) : size_t(V);
    const int shift = weight_shift(V);
    uint64_t total = 0;
    for (size_t i = 0; i < keep; ++i) {
      q.push_back(weight(scaled(logits[order[i]], mx, p.temperature), shift));
      total += q.back();
    }
    size_t cut = keep;
    if (p.top_p < 1.f) {
      const uint64_t need = top_p_need(p.top_p, total);
      uint64_t mass = 0;
      for (size_t i = 0; i < keep; ++i) {
        mass += q[i];
        if (mass >= need) {
          cut = i + 1;
          break;
        }
      }
    }
    size_t min_p_keep = 0;
    const float floor_x = min_p_floor(p.min_p);
    for (size_t i = 0; i < keep; ++i) min_p_keep += scaled(logits[order[i]], mx, p.temperature) >= floor_x;
    keep = std::min(cut, min_p_keep);
    for (size_t i = 0; i < keep; ++i) kept_total += q[i];
  }
  int32_t draw(uint64_t stream, uint64_t counter) const {
    if (greedy) return argmax;
    uint64_t u = uniform_below(kept_total, stream, counter);
    for (size_t i = 0; i < keep; ++i) {
      if (u < q[i]) return order[i];
      u -= q[i];
    }
    return -2;  // unreachable
  }
};

double log_softmax_ref(const std::vector<float>& row, int token) {
  double mx = -1e300;
  for (float l : row)
    if (l > mx) mx = l;
  double sum = 0;
  for (float l : row)
    if (l > -kInf) sum += std::exp(double(l) - mx);
  return double(row[token]) - mx - std::log(sum);
}

std::string describe(int V, int shape, const SamplingParams& p) {
  return "V " + std::to_string(V) + " shape " + std::to_string(shape) + " T " +
         std::to_string(p.temperature) + " top_k " + std::to_string(p.top_k) + " top_p " +
         std::to_string(p.top_p) + " min_p " + std::to_string(p.min_p);
}

}  // namespace

TEST(SamplingOracle, MatchesFullSortOnRandomRows) {
  std::mt19937_64 rng(2024);
  const std::vector<int> sizes = {1, 2, 7, 100, 1000, 20000, 151936};
  const std::vector<float> temperatures = {1e-6f, 0.05f, 0.3f, 0.7f, 1.f, 1.7f, 30.f, 1e6f};
  const std::vector<float> top_ps = {1e-7f, 0.1f, 0.5f, 0.9f, 0.95f, 0.999f, 1.f};
  const std::vector<float> min_ps = {0.f, 0.f, 1e-4f, 0.05f, 0.5f, 1.f};
  int cases = 0, draws = 0;
  for (int V : sizes) {
    const int rows = V >= 100000 ? 4 : V >= 10000 ? 8 : 40;
    for (int r = 0; r < rows; ++r) {
      const int shape = int(rng() % int(LogitShape::count));
      const float scale = std::vector<float>{0.3f, 2.f, 8.f}[rng() % 3];
      std::vector<float> row = logit_row(V, LogitShape(shape), scale, rng());
      // parameter sets per row
      for (int c = 0; c < 4; ++c) {
        SamplingParams p;
        p.temperature = temperatures[rng() % temperatures.size()];
        const int k_pick = int(rng() % 6);
        p.top_k = k_pick == 0 ? 1 : k_pick == 1 ? 50 : k_pick == 2 ? V : k_pick == 3 ? std::max(1, V - 1)
                  : k_pick == 4 ? V + 5 : 0;
        p.top_p = rng() % 2 ? 1.f : top_ps[rng() % top_ps.size()];
        p.min_p = min_ps[rng() % min_ps.size()];
        Oracle oracle(row.data(), V, p);
        const int n = V >= 100000 ? 25 : 60;
        for (int d = 0; d < n; ++d) {
          const uint64_t stream = rng(), counter = rng() % 1000;
          float lp = 0;
          const int32_t got = sample_token(row.data(), V, p, stream, counter, &lp);
          const int32_t want = oracle.draw(stream, counter);
          ASSERT_EQ(got, want) << describe(V, shape, p) << " draw " << d;
          if (d < 3) {
            const double ref = log_softmax_ref(row, got);
            ASSERT_NEAR(lp, ref, 1e-4 * std::max(1.0, std::fabs(ref))) << describe(V, shape, p);
          }
          ++draws;
        }
        ++cases;
      }
    }
  }
  EXPECT_GT(cases, 350);
  EXPECT_GT(draws, 18000);
}

TEST(SamplingOracle, EdgeParameters) {
  // top_k 1 is the argmax; top_p tiny keeps the argmax; min_p 1 keeps the ties of the max
  std::vector<float> row = logit_row(5000, LogitShape::ties, 2.f, 5);
  const int32_t arg = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
  for (int i = 0; i < 100; ++i) {
    SamplingParams k1;
    k1.top_k = 1;
    EXPECT_EQ(sample_token(row.data(), 5000, k1, 3, i), arg);
    SamplingParams tiny;
    tiny.top_p = 1e-9f;
    EXPECT_EQ(sample_token(row.data(), 5000, tiny, 4, i), arg);
    SamplingParams cold;
    cold.temperature = 1e-30f;
    EXPECT_EQ(sample_token(row.data(), 5000, cold, 4, i), arg);
    SamplingParams minp;
    minp.min_p = 1.f;
    const int32_t t = sample_token(row.data(), 5000, minp, 5, i);
    EXPECT_EQ(row[t], row[arg]);
  }
  // +inf logits: only they can be drawn
  std::vector<float> inf_row(300, 0.f);
  inf_row[17] = kInf;
  inf_row[250] = kInf;
  int seen[2] = {0, 0};
  for (int i = 0; i < 400; ++i) {
    SamplingParams p;
    const int32_t t = sample_token(inf_row.data(), 300, p, 8, i);
    ASSERT_TRUE(t == 17 || t == 250) << t;
    ++seen[t == 250];
  }
  EXPECT_GT(seen[0], 100);
  EXPECT_GT(seen[1], 100);
  // nothing finite: an error
  std::vector<float> dead(10, -kInf);
  SamplingParams p;
  EXPECT_THROW(sample_token(dead.data(), 10, p, 0, 0), Error);
}

TEST(SamplingGreedy, ArgmaxWithLowestIdOnTies) {
  SamplingParams greedy;
  greedy.temperature = 0.f;
  std::vector<float> row = {0.f, -1.f, 5.f, 4.9f, 5.f, -kInf, std::nanf("")};
  float lp = 0;
  EXPECT_EQ(sample_token(row.data(), int(row.size()), greedy, 0, 0, &lp), 2);
  EXPECT_NEAR(lp, log_softmax_ref({0.f, -1.f, 5.f, 4.9f, 5.f, -kInf, -kInf}, 2), 1e-6);
  std::mt19937_64 rng(9);
  for (int t = 0; t < 20; ++t) {
    std::vector<float> big = logit_row(151936, LogitShape::ties, 3.f, rng());
    const int32_t want = int32_t(std::max_element(big.begin(), big.end()) - big.begin());
    EXPECT_EQ(sample_token(big.data(), 151936, greedy, rng(), 0), want);
  }
}

TEST(SamplingOracle, PreviousDoubleSamplerAgrees) {
  // Integer weights move a draw only when u falls within rounding of a
  // boundary: the previous sampler agrees on (practically) every draw.
  std::mt19937_64 rng(77);
  int differ = 0, total = 0;
  for (int r = 0; r < 28; ++r) {
    const int V = r < 25 ? 1000 : 151936;
    std::vector<float> row = logit_row(V, LogitShape::normal, 3.f, rng());
    SamplingParams p;
    p.temperature = std::vector<float>{0.6f, 1.f, 1.3f}[r % 3];
    p.top_k = r % 4 == 1 ? 50 : 0;
    p.top_p = r % 4 == 2 ? 0.9f : 1.f;
    const int n = V > 100000 ? 10 : 200;
    for (int d = 0; d < n; ++d, ++total)
      differ += sample_token(row.data(), V, p, 11, d) != full_sort_sample(row.data(), V, p, 11, d);
  }
  EXPECT_LE(differ, 1) << "of " << total;
}

namespace {

std::vector<double> cut_softmax(const std::vector<float>& logits, double T, int top_k, double top_p,
                                double min_p) {
  const int V = int(logits.size());
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  double mx = logits[order[0]];
  std::vector<double> w(V, 0.0);
  const int keep = top_k > 0 ? std::min(top_k, V) : V;
  double sum = 0;
  for (int i = 0; i < keep; ++i) sum += w[order[i]] = std::exp((logits[order[i]] - mx) / T);
  double mass = 0;
  int cut = keep;
  for (int i = 0; i < keep; ++i) {
    mass += w[order[i]] / sum;
    if (mass >= top_p) {
      cut = i + 1;
      break;
    }
  }
  std::vector<double> p(V, 0.0);
  double kept = 0;
  for (int i = 0; i < cut; ++i)
    if (w[order[i]] >= min_p) kept += p[order[i]] = w[order[i]];
  for (double& x : p) x /= kept;
  return p;
}

// chi-square of `draws` samples of `row` against `p`, bins with expectation
// < 5 pooled; returns chi2 / dof-based bound check as (chi2, dof).
std::pair<double, int> chi_square(const std::vector<float>& row, const SamplingParams& sp,
                                  const std::vector<double>& p, int draws, uint64_t stream) {
  std::vector<int> counts(p.size(), 0);
  for (int i = 0; i < draws; ++i) {
    const int32_t t = sample_token(row.data(), int(row.size()), sp, stream, uint64_t(i));
    if (p[t] == 0) {
      ADD_FAILURE() << "drew token " << t << " of probability 0";
      return {1e9, 1};
    }
    ++counts[t];
  }
  double chi = 0, pooled_e = 0, pooled_c = 0;
  int bins = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    if (p[j] == 0) continue;
    const double e = draws * p[j];
    if (e < 5) {
      pooled_e += e;
      pooled_c += counts[j];
      continue;
    }
    chi += (counts[j] - e) * (counts[j] - e) / e;
    ++bins;
  }
  if (pooled_e > 0) {
    chi += (pooled_c - pooled_e) * (pooled_c - pooled_e) / pooled_e;
    ++bins;
  }
  return {chi, std::max(1, bins - 1)};
}

// P(chi2 > bound) is tiny (< ~1e-4) for these dof: mean dof, sd sqrt(2 dof).
double chi_bound(int dof) { return dof + 6.0 * std::sqrt(2.0 * dof) + 10.0; }

}  // namespace

TEST(SamplingFrequencies, FollowCutSoftmax) {
  const std::vector<float> small = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 2.0f, 0.5f};
  const std::vector<float> large = logit_row(2000, LogitShape::normal, 2.f, 31);
  struct Case {
    float T;
    int top_k;
    float top_p, min_p;
  };
  const std::vector<Case> cases = {{1.f, 0, 1.f, 0.f},    {0.5f, 0, 1.f, 0.f},  {2.f, 0, 1.f, 0.f},
                                   {1.f, 3, 1.f, 0.f},    {1.f, 0, 0.6f, 0.f},  {1.f, 0, 1.f, 0.3f},
                                   {0.8f, 5, 0.9f, 0.1f}, {1.3f, 0, 0.95f, 0.f}};
  uint64_t stream = 100;
  for (const Case& c : cases) {
    for (const std::vector<float>* row : {&small, &large}) {
      SamplingParams sp;
      sp.temperature = c.T;
      sp.top_k = c.top_k;
      sp.top_p = c.top_p;
      sp.min_p = c.min_p;
      const auto p = cut_softmax(*row, c.T, c.top_k, c.top_p, c.min_p);
      const auto [chi, dof] = chi_square(*row, sp, p, 20000, ++stream);
      EXPECT_LT(chi, chi_bound(dof)) << "V " << row->size() << " T " << c.T << " k " << c.top_k
                                     << " p " << c.top_p << " min_p " << c.min_p;
    }
  }
}

// Negative control: the same test rejects draws from a neighbouring
// distribution (another temperature, another cut) against the expected one,
// so passing above means something.
TEST(SamplingFrequencies, NegativeControlRejectsAWrongDistribution) {
  const std::vector<float> row = logit_row(2000, LogitShape::normal, 2.f, 31);
  struct Case {
    float drawn_T, expected_T, drawn_min_p, expected_min_p;
  };
  uint64_t stream = 500;
  for (const Case& c : {Case{1.f, 0.85f, 0.f, 0.f}, Case{1.f, 1.2f, 0.f, 0.f},
                        Case{1.f, 1.f, 0.3f, 0.05f}}) {
    SamplingParams sp;
    sp.temperature = c.drawn_T;
    sp.min_p = c.drawn_min_p;
    const auto wrong = cut_softmax(row, c.expected_T, 0, 1.0, c.expected_min_p);
    const auto [chi, dof] = chi_square(row, sp, wrong, 20000, ++stream);
    EXPECT_GT(chi, chi_bound(dof)) << "drawn T " << c.drawn_T << " min_p " << c.drawn_min_p
                                   << " against T " << c.expected_T << " min_p "
                                   << c.expected_min_p;
  }
}

TEST(SamplingDeterminism, SameTokensOnAnyThreadCount) {
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < 16; ++r)
    rows.push_back(logit_row(30000, LogitShape(r % int(LogitShape::count)), 2.f, 1000 + r));
  SamplingParams sp;
  sp.temperature = 0.9f;
  sp.top_p = 0.95f;
  sp.min_p = 0.01f;
  auto run = [&](int threads) {
    std::vector<int32_t> out(rows.size() * 20);
    std::vector<float> lps(out.size());
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int i = 0; i < int(out.size()); ++i)
      out[i] = sample_token(rows[i % rows.size()].data(), 30000, sp, uint64_t(i % 7), uint64_t(i),
                            &lps[i]);
    return std::make_pair(out, lps);
  };
  const auto one = run(1);
  EXPECT_EQ(run(4), one);
  EXPECT_EQ(run(3), one);
}

// ---------------------------------------------------------------------------
// The decode loop: stop strings, batch independence

namespace {

struct Model {
  ModelConfig config = qwen3_config(23, 16, 2, 4, 2, 6, 24, false);
  CpuOps ops;
  std::unique_ptr<Transformer> model;
  Model() {
    model.reset(new Transformer(config, ops));
    model->set_params(random_params(*model, 51));
  }
};

// Token i's bytes: two or three letters, so strings span tokens.
std::string bytes_of(int32_t id) {
  std::string s;
  s += char('a' + id % 5);
  s += char('a' + (id * 7 + 3) % 6);
  if (id % 3 == 0) s += 'z';
  return s;
}

}  // namespace

TEST(SamplingGenerate, StopStringsSpanningTokens) {
  Model m;
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {7}, {4, 4, 9, 12, 0}, {22, 5}};
  SamplingParams sp;
  sp.temperature = 1.f;
  sp.max_new_tokens = 12;
  sp.seed = 3;
  sp.token_bytes = bytes_of;
  const std::vector<Completion> free_run = generate(*m.model, prompts, sp);
  // A stop string across the boundary of prompt 0's 3rd and 4th tokens.
  const std::string a = bytes_of(free_run[0].tokens[2]), b = bytes_of(free_run[0].tokens[3]);
  const std::string across = a.substr(a.size() - 1) + b.substr(0, 2);
  SamplingParams stopping = sp;
  stopping.stop_strings = {"never-there", across};
  const std::vector<Completion> cut = generate(*m.model, prompts, stopping);
  int stopped = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::string text;
    size_t expect_len = free_run[p].tokens.size();
    bool expect_stop = false;
    for (size_t t = 0; t < free_run[p].tokens.size(); ++t) {
      text += bytes_of(free_run[p].tokens[t]);
      if (text.find(across) != std::string::npos) {
        expect_len = t + 1;
        expect_stop = true;
        break;
      }
    }
    std::vector<int32_t> prefix(free_run[p].tokens.begin(), free_run[p].tokens.begin() + expect_len);
    EXPECT_EQ(cut[p].tokens, prefix) << p;
    EXPECT_EQ(cut[p].stopped, expect_stop) << p;
    EXPECT_EQ(cut[p].stop_string, expect_stop ? 1 : -1) << p;
    EXPECT_EQ(cut[p].logprobs.size(), cut[p].tokens.size());
    for (size_t j = 0; j < cut[p].logprobs.size(); ++j)
      EXPECT_EQ(cut[p].logprobs[j], free_run[p].logprobs[j]);
    stopped += expect_stop;
  }
  EXPECT_TRUE(cut[0].stopped);
  EXPECT_LE(cut[0].tokens.size(), 4u);
  EXPECT_GE(stopped, 1);
  // a stop string within one token, and a stop token, whichever comes first
  SamplingParams both = sp;
  both.stop_strings = {b};
  both.stop_tokens = {free_run[0].tokens[1]};
  const std::vector<Completion> first = generate(*m.model, {prompts[0]}, both);
  EXPECT_TRUE(first[0].stopped);
  EXPECT_EQ(first[0].tokens.size(), 2u);
  EXPECT_EQ(first[0].stop_string, -1);
  // stop strings without a detokenizer, or empty: an error
  SamplingParams bad = sp;
  bad.stop_strings = {"x"};
  bad.token_bytes = nullptr;
  EXPECT_THROW(generate(*m.model, prompts, bad), Error);
  bad.token_bytes = bytes_of;
  bad.stop_strings = {""};
  EXPECT_THROW(generate(*m.model, prompts, bad), Error);
}

TEST(SamplingGenerate, SequencesIndependentOfBatchAndThreads) {
  Model m;
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {7}, {4, 4, 9, 12, 0}, {22, 5}};
  {
    SamplingParams sp;
    sp.max_new_tokens = 9;
    sp.seed = 41;
    const std::vector<Completion> all = generate(*m.model, prompts, sp);
    // the first two sequences beside other prompts, each alone, in batches of one, on 1 thread
    std::vector<std::vector<int32_t>> more = {prompts[0], prompts[1], {3, 3, 3, 3, 3, 3}, {9}};
    const std::vector<Completion> mixed = generate(*m.model, more, sp);
    SamplingParams single = sp;
    single.max_batch = 1;
    const std::vector<Completion> ones = generate(*m.model, prompts, single);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<Completion> serial = generate(*m.model, prompts, sp);
    omp_set_num_threads(threads);
    for (size_t p = 0; p < prompts.size(); ++p) {
      const std::vector<Completion> alone = generate(*m.model, {prompts[p]}, sp, p);
      EXPECT_EQ(alone[0].tokens, all[p].tokens) << p;
      EXPECT_EQ(ones[p].tokens, all[p].tokens) << p;
      EXPECT_EQ(serial[p].tokens, all[p].tokens) << p;
      EXPECT_EQ(serial[p].logprobs, all[p].logprobs) << p;
      if (p < 2) {
        EXPECT_EQ(mixed[p].tokens, all[p].tokens) << p;
      }
    }
    SamplingParams other = sp;
    other.seed = 42;
    const std::vector<Completion> diff = generate(*m.model, prompts, other);
    int same = 0;
    for (size_t p = 0; p < prompts.size(); ++p) same += diff[p].tokens == all[p].tokens;
    EXPECT_LT(same, int(prompts.size()));
  }
  SamplingParams cuts;
  cuts.max_new_tokens = 9;
  cuts.seed = 5;
  cuts.top_k = 6;
  cuts.top_p = 0.9f;
  cuts.min_p = 0.05f;
  const std::vector<Completion> all = generate(*m.model, prompts, cuts);
  for (size_t p = 0; p < prompts.size(); ++p)
    EXPECT_EQ(generate(*m.model, {prompts[p]}, cuts, p)[0].tokens, all[p].tokens) << p;
  SamplingParams bad = cuts;
  bad.min_p = 1.5f;
  EXPECT_THROW(generate(*m.model, prompts, bad), Error);
  bad = cuts;
  bad.top_k = -1;
  EXPECT_THROW(generate(*m.model, prompts, bad), Error);
}

// on_step (the watchdog's progress hook) runs once per step of the
// generation engine (a prefill and/or a decode), and changes nothing.
TEST(SamplingGenerate, OnStepRunsOncePerEngineStep) {
  Model m;
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {7}, {4, 4, 9, 12, 0}, {22, 5}};
  SamplingParams sp;
  sp.max_new_tokens = 9;
  sp.seed = 5;
  const std::vector<Completion> plain = generate(*m.model, prompts, sp);
  int calls = 0;
  sp.on_step = [&] { ++calls; };
  GenerationStats stats;
  EngineOptions engine;
  engine.stats = &stats;
  const std::vector<Completion> hooked = generate(*m.model, prompts, sp, 0, engine);
  // A step runs a prefill, a decode or both.
  EXPECT_GE(size_t(calls), std::max(stats.decode_steps, stats.prefill_passes));
  EXPECT_LE(size_t(calls), stats.decode_steps + stats.prefill_passes);
  EXPECT_GE(calls, sp.max_new_tokens - 1);  // one decode per token after the first
  for (size_t p = 0; p < prompts.size(); ++p) EXPECT_EQ(hooked[p].tokens, plain[p].tokens) << p;
}
