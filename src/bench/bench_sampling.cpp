// bench_sampling: milliseconds per sampled token at Qwen3's vocabulary
// (V = 151936), the previous full-sort sampler beside model/sampler.cpp's
// partial selection, for plain temperature sampling, top-k 50 and top-p 0.95,
// on one thread, each with the temperature-1 log-probability as generate()
// takes it.
//   build/bench_sampling [--rows N]   (N random logit rows per case; default 64)
// Rows: N(0, 3^2) logits with a few large ones (a language model's look: most
// of the mass on a handful of tokens, a long tail).
// With a GPU, CudaOps::sample_rows (cuda/sampling.cu) on the same rows
// (repeated to 256 if fewer), all sampled in one call from bf16 logits as
// the engine holds them: rows/s,
// the GB/s of logits it reads (one V * 2-byte row per draw) against the
// H100's 3.35 TB/s, and how many tokens equal the CPU's (must be all).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/sampler.h"
#include "tests/full_sort_sampler.h"
#ifdef POLARIS_HAVE_CUDA
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#endif

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

// The GPU's figures for one case: all rows in one sample_rows call (bf16
// logits), the best of a few timed repetitions. Null `gpu`: prints nothing.
void gpu_row(Ops* gpu, const std::vector<std::vector<float>>& data, const SamplingParams& p) {
  if (!gpu) return;
  // At least 256 rows (the engine's default batch): the CPU's rows repeated,
  // each draw its own counter.
  const int rows = std::max(256, int(data.size())), V = int(data[0].size());
  std::vector<float> flat;
  for (int r = 0; r < rows; ++r)
    flat.insert(flat.end(), data[size_t(r) % data.size()].begin(), data[size_t(r) % data.size()].end());
  const Buf logits = gpu->alloc_buf(flat.size(), DType::bf16);
  gpu->upload(logits, flat.data(), flat.size());
  gpu->download(flat.data(), logits, flat.size());  // the bf16 values, for the CPU's tokens
  std::vector<int32_t> index(static_cast<size_t>(rows)), tokens(static_cast<size_t>(rows));
  std::vector<float> logprobs(static_cast<size_t>(rows));
  std::vector<SampleRowParams> params(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    index[size_t(r)] = r;
    params[size_t(r)] = row_params(p, 1, uint64_t(r));
  }
  double best = 1e30;
  for (int rep = 0; rep < 6; ++rep) {  // the first warms the scratch
    gpu->synchronize();
    const auto t0 = Clock::now();
    gpu->sample_rows(tokens.data(), logprobs.data(), logits, V, index.data(), params.data(), rows, V);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rep > 0) best = std::min(best, s);
  }
  gpu->release(logits.ptr);
  int agree = 0;
  for (int r = 0; r < rows; ++r)
    agree += tokens[size_t(r)] == sample_token(flat.data() + size_t(r) * V, V, params[size_t(r)]);
  const double gbs = double(rows) * V * 2 / best / 1e9;
  std::printf("%-22s %12s %12.4f %9s %5d/%d   %.0f rows/s, %.0f GB/s (%.1f%% of 3.35 TB/s)\n",
              "  gpu, bf16, batched", "", 1e3 * best / rows, "", agree, rows, rows / best, gbs,
              100 * gbs / 3350);
}

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
  std::unique_ptr<Ops> gpu;
#ifdef POLARIS_HAVE_CUDA
  std::string why;
  if (!cuda_devices(&why).empty()) gpu.reset(new CudaOps(0));
#endif
  std::printf("bench_sampling: V = %d, %d rows per case, one thread, ms per token "
              "(with the temperature-1 logprob)\n", V, rows);
  if (gpu)
    std::printf("gpu lines: ms per token of one sample_rows call over the batch, tokens equal "
                "to the CPU's on the same bf16 logits, rows/s, GB/s of logits read (one row "
                "per draw)\n");
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
    gpu_row(gpu.get(), data, p);
  }
  return 0;
}
