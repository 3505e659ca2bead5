// bench_generate: the generation engine (model/scheduler.h, continuous
// batching over the paged KV cache, a group's prompt cached once) against
// the lock-step baseline (a full-length cache slot per sequence, prompts fed
// token by token, the next batch only when the whole batch has finished),
// both in one run on the same random-weight model and requests: generated
// tokens per second, the cache's peak bytes in use and bytes reserved, and
// whether both produced the same tokens (they must: same seed, same
// streams).
//   build/bench_generate [--preset qwen3-demo] [--backend cpu|cuda]
//       [--prompts 8] [--group 8] [--prompt-len 32] [--new 32] [--batch 64]
//       [--block-size 16] [--skip-lockstep]
// The workload: `prompts` random prompts of prompt-len tokens, each sampled
// `group` times (temperature 1, no stop token: every sequence generates
// `new` tokens; each group's members stop at the same length, so the
// gains shown are those of prefix sharing, packed prefill and memory, not of
// early finishers). On a GPU it also prints the share of the
// memory-bandwidth bound (--bandwidth GB/s, default 3350, an H100's HBM3):
// per decode step the weights are read once and every running sequence's
// cached keys and values once; and the engine again with its decode steps
// launched op by op instead of replayed from CUDA graphs (--cuda-graphs off,
// model/decode_graphs.h): tokens/s and ms per decode step with and without.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/scheduler.h"
#include "model/transformer.h"
#include "src/common/backend.h"
#include "src/common/cli.h"
#include "src/common/error.h"

using namespace polaris;

namespace {

struct Args {
  std::string preset = "qwen3-demo", backend = "cpu";
  int prompts = 8, group = 8, prompt_len = 32, max_new = 32, batch = 64, block_size = 16;
  double bandwidth_gbs = 3350;
  bool lockstep = true;
};

int positive(const char* flag, const char* value) {
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  require(end && *end == '\0' && v > 0 && v < (1L << 30),
          std::string("--") + flag + ": expected a positive integer, got '" + value + "'");
  return int(v);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--skip-lockstep") {
      a.lockstep = false;
      continue;
    }
    require(i + 1 < argc, flag + ": missing its value");
    const char* v = argv[++i];
    if (flag == "--preset") a.preset = v;
    else if (flag == "--backend") a.backend = v;
    else if (flag == "--prompts") a.prompts = positive("prompts", v);
    else if (flag == "--group") a.group = positive("group", v);
    else if (flag == "--prompt-len") a.prompt_len = positive("prompt-len", v);
    else if (flag == "--new") a.max_new = positive("new", v);
    else if (flag == "--batch") a.batch = positive("batch", v);
    else if (flag == "--block-size") a.block_size = positive("block-size", v);
    else if (flag == "--bandwidth") a.bandwidth_gbs = positive("bandwidth", v);
    else throw Error(flag + ": unknown flag");
  }
  return a;
}

struct Result {
  std::vector<Completion> out;
  GenerationStats stats;
  double seconds = 0;
  size_t replayed = 0;  // decode steps replayed from a recording
};

Result run(Transformer& model, const std::vector<std::vector<int32_t>>& prompts, const Args& a,
           bool lockstep) {
  const size_t replayed_before = model.decode_steps_replayed();
  SamplingParams sp;
  sp.temperature = 1.f;
  sp.max_new_tokens = a.max_new;
  sp.seed = 7;
  sp.max_batch = a.batch;
  EngineOptions engine;
  engine.block_size = a.block_size;
  engine.lockstep = lockstep;
  Result r;
  engine.stats = &r.stats;
  model.ops().synchronize();
  const auto start = std::chrono::steady_clock::now();
  r.out = generate_groups(model, prompts, a.group, sp, 0, engine);
  model.ops().synchronize();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.replayed = model.decode_steps_replayed() - replayed_before;
  return r;
}

int bench(int argc, char** argv) {
  const Args a = parse(argc, argv);
  ModelConfig config = config_from_preset(a.preset);
  config.max_positions = std::max(config.max_positions, a.prompt_len + a.max_new);
  std::unique_ptr<Ops> ops = make_ops(a.backend);
  Transformer model(config, *ops);
  {
    // Random weights at a small scale (a trained model's activations look
    // alike to the engine; only the arithmetic is measured).
    std::vector<float> params(model.num_params());
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.f, 0.02f);
    for (float& p : params) p = normal(rng);
    model.set_params(params);
  }
  std::vector<std::vector<int32_t>> prompts(size_t(a.prompts));
  std::mt19937 rng(2);
  for (auto& p : prompts)
    for (int t = 0; t < a.prompt_len; ++t) p.push_back(int32_t(rng() % uint32_t(config.vocab_size)));

  std::printf("bench_generate: %s on %s, %d prompts x group %d, %d prompt tokens, %d new "
              "tokens each, batch %d, block size %d\n",
              a.preset.c_str(), ops->name().c_str(), a.prompts, a.group, a.prompt_len, a.max_new,
              a.batch, a.block_size);
  run(model, {prompts[0]}, a, false);  // warm-up: allocations, kernels' first launches
  const double weight_bytes = double(model.num_params()) * dtype_size(ops->activation_dtype());
  const double kv_row_bytes =
      2.0 * config.num_layers * config.kv_dim() * dtype_size(ops->activation_dtype());
  auto report = [&](const char* name, const Result& r) {
    const double tokens = double(r.stats.generated_tokens);
    std::printf("%-10s %10.1f tokens/s  %8.3f s  %7.3f ms/decode step  peak cache %9.2f MiB  "
                "reserved %9.2f MiB  prefills %zu  decode steps %zu (%zu replayed)  "
                "preemptions %zu  shared prompts %zu",
                name, tokens / r.seconds, r.seconds,
                1e3 * r.seconds / double(std::max<size_t>(1, r.stats.decode_steps)),
                r.stats.peak_cache_bytes / 1048576.0, r.stats.reserved_cache_bytes / 1048576.0,
                r.stats.prefill_passes, r.stats.decode_steps, r.replayed, r.stats.preemptions,
                r.stats.shared_prompts);
    if (!ops->host_memory()) {
      // The bound: each decode step reads the weights once and every cached
      // key and value it attends to once (prefill is left out: compute bound).
      const double bytes = double(r.stats.decode_steps) * weight_bytes +
                           double(r.stats.attended_keys) * kv_row_bytes;
      const double bound_s = bytes / (a.bandwidth_gbs * 1e9);
      std::printf("  bandwidth bound %.3f s (%.1f%% of it reached)", bound_s,
                  100.0 * bound_s / r.seconds);
    }
    std::printf("\n");
  };
  const Result paged = run(model, prompts, a, false);
  report("paged", paged);
  if (ops->can_record()) {
    // The same engine with its decode steps launched op by op: what the
    // CUDA graphs save (the launch cost of ~13 kernels per layer per step).
    model.set_decode_mode(DecodeMode::exact);
    run(model, {prompts[0]}, a, false);  // warm-up of the exact shapes
    const Result eager = run(model, prompts, a, false);
    model.set_decode_mode(DecodeMode::recorded);
    report("no-graphs", eager);
    size_t same = 0;
    for (size_t i = 0; i < paged.out.size(); ++i) same += paged.out[i].tokens == eager.out[i].tokens;
    std::printf("cuda graphs: %.1f tokens/s with, %.1f without (%.2fx); %.3f vs %.3f ms per "
                "decode step; same tokens %zu/%zu\n",
                double(paged.stats.generated_tokens) / paged.seconds,
                double(eager.stats.generated_tokens) / eager.seconds,
                eager.seconds / paged.seconds,
                1e3 * paged.seconds / double(std::max<size_t>(1, paged.stats.decode_steps)),
                1e3 * eager.seconds / double(std::max<size_t>(1, eager.stats.decode_steps)), same,
                paged.out.size());
  }
  if (a.lockstep) {
    const Result lock = run(model, prompts, a, true);
    report("lock-step", lock);
    size_t same = 0;
    for (size_t i = 0; i < paged.out.size(); ++i) same += paged.out[i].tokens == lock.out[i].tokens;
    std::printf("speedup %.2fx, peak cache %.2fx smaller, same tokens %zu/%zu\n",
                lock.seconds / paged.seconds,
                double(lock.stats.peak_cache_bytes) / std::max<size_t>(1, paged.stats.peak_cache_bytes),
                same, paged.out.size());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main([&] { return bench(argc, argv); });
}
