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
#include <random>
#include <vector>

#include "model/sampler.h"
#include "tests/full_sort_sampler.h"

using namespace polaris;

namespace {

// The previous sampler (tests/full_sort_sampler.h), then log-softmax at
// temperature 1 (another pass), as generate() needs; temperature 0: argmax.
int32_t full_sort_sample(const float* logits, int V, const SamplingParams& params,
                         uint64_t stream, uint64_t counter, float* logprob) {
  const int32_t token = params.temperature <= 0.f
                            ? int32_t(std::max_element(logits, logits + V) - logits)
                            : full_sort_sample(logits, V, params, stream, counter);
  const float max_logit = *std::max_element(logits, logits + V);
  double sum = 0;
  for (int j = 0; j < V; ++j) sum += std::exp(double(logits[j] - max_logit));
  *logprob = float(logits[token] - max_logit - std::log(sum));
  return token;
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
