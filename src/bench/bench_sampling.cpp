// bench_sampling: milliseconds per sampled token at Qwen3's vocabulary
// (V = 151936), the previous full-sort sampler beside model/sampler.cpp's
// partial selection, for plain temperature sampling, top-k 50 and top-p 0.95,
// on one thread, each with the temperature-1 log-probability as generate()
// takes it.
//   build/bench_sampling [--rows N]   (N random logit rows per case; default 64)
// Rows: N(0, 3^2) logits with a few large ones (a language model's look: most
// of the mass on a handful of tokens, a long tail).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "model/sampler.h"
#include "src/common/mix.h"

using namespace polaris;

namespace {

// The previous sampler: sort (partially, to top_k) by (logit desc, id asc),
// double weights, walk; then log-softmax at temperature 1 (another pass).
int32_t full_sort_sample(const float* logits, int V, const SamplingParams& params,
                         uint64_t stream, uint64_t counter, float* logprob) {
  auto log_softmax = [&](int32_t token, float max_logit) {
    double sum = 0;
    for (int j = 0; j < V; ++j) sum += std::exp(double(logits[j] - max_logit));
    *logprob = float(logits[token] - max_logit - std::log(sum));
    return token;
  };
  if (params.temperature <= 0.f) {
    const int32_t token = int32_t(std::max_element(logits, logits + V) - logits);
    return log_softmax(token, logits[token]);
  }
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  int keep = (params.top_k > 0 && params.top_k < V) ? params.top_k : V;
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
  const float max_logit = logits[order[0]];
  std::vector<double> weight(keep);
  double total = 0;
  for (int i = 0; i < keep; ++i)
    total += weight[i] = std::exp(double(logits[order[i]] - max_logit) / params.temperature);
  if (params.top_p < 1.f) {
    double mass = 0;
    int cut = keep;
    for (int i = 0; i < keep; ++i) {
      mass += weight[i] / total;
      if (mass >= params.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    total = std::accumulate(weight.begin(), weight.begin() + keep, 0.0);
  }
  const uint64_t bits = mix64(mix64(stream) ^ (counter * 0xd1b54a32d192ed03ull));
  double u = double(bits >> 11) * (1.0 / 9007199254740992.0) * total;
  int32_t token = order[keep - 1];
  for (int i = 0; i < keep; ++i) {
    u -= weight[i];
    if (u < 0) {
      token = order[i];
      break;
    }
  }
  return log_softmax(token, max_logit);
}

using Clock = std::chrono::steady_clock;

}  // namespace

int main(int argc, char** argv) {
  int rows = 64;
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--rows")) rows = std::max(1, std::atoi(argv[i + 1]));
  const int V = 151936;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.f, 3.f);
  std::vector<std::vector<float>> data(rows, std::vector<float>(V));
  for (auto& row : data) {
    for (float& l : row) l = normal(rng);
    for (int k = 0; k < 8; ++k) row[rng() % V] = 14.f + float(k);
  }
  struct Case {
    const char* name;
    float temperature;
    int top_k;
    float top_p;
  };
  const Case cases[] = {{"temperature 1.0", 1.f, 0, 1.f},
                        {"temperature 0.6", 0.6f, 0, 1.f},
                        {"top-k 50 (T 0.7)", 0.7f, 50, 1.f},
                        {"top-p 0.95 (T 1.0)", 1.f, 0, 0.95f},
                        {"top-p 0.95 (T 0.6)", 0.6f, 0, 0.95f},
                        {"greedy", 0.f, 0, 1.f}};
  std::printf("bench_sampling: V = %d, %d rows per case, one thread, ms per token "
              "(with the temperature-1 logprob)\n", V, rows);
  std::printf("%-22s %12s %12s %9s %8s\n", "case", "full sort", "new", "speedup", "agree");
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    float lp = 0;
    double t_old = 0, t_new = 0;
    int agree = 0;
    std::vector<int32_t> old_tokens(rows);
    sample_token(data[0].data(), V, p, 1, 0, &lp);  // warm the scratch memory
    auto t0 = Clock::now();
    for (int r = 0; r < rows; ++r)
      old_tokens[r] = full_sort_sample(data[r].data(), V, p, 1, r, &lp);
    t_old = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / rows;
    t0 = Clock::now();
    for (int r = 0; r < rows; ++r) agree += sample_token(data[r].data(), V, p, 1, r, &lp) == old_tokens[r];
    t_new = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / rows;
    std::printf("%-22s %12.3f %12.3f %8.1fx %5d/%d\n", c.name, t_old, t_new, t_old / t_new, agree,
                rows);
  }
  return 0;
}
