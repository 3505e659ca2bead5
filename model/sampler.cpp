#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "src/common/error.h"
#include "src/common/mix.h"

namespace polaris {

namespace {

double uniform01(uint64_t stream, uint64_t counter) {
  uint64_t bits = mix64(mix64(stream) ^ (counter * 0xd1b54a32d192ed03ull));
  return double(bits >> 11) * (1.0 / 9007199254740992.0);  // 53 bits in [0, 1)
}

float log_softmax_at(const float* logits, int V, int index) {
  float max_logit = *std::max_element(logits, logits + V);
  double sum = 0;
  for (int j = 0; j < V; ++j) sum += std::exp(double(logits[j] - max_logit));
  return float(logits[index] - max_logit - std::log(sum));
}

}  // namespace

int32_t sample_token(const float* logits, int V, const SamplingParams& params, uint64_t stream,
                     uint64_t counter) {
  if (params.temperature <= 0.f) return int32_t(std::max_element(logits, logits + V) - logits);
  // Candidates in decreasing probability; ties broken by id for determinism.
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
  for (int i = 0; i < keep; ++i) {
    weight[i] = std::exp(double(logits[order[i]] - max_logit) / params.temperature);
    total += weight[i];
  }
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
  double u = uniform01(stream, counter) * total;
  for (int i = 0; i < keep; ++i) {
    u -= weight[i];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

std::vector<Completion> generate(Transformer& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const SamplingParams& params, uint64_t first_index) {
  const int V = model.config().vocab_size;
  require(params.max_new_tokens > 0, "sampling: max new tokens must be positive");
  require(params.temperature >= 0.f, "sampling: temperature must be >= 0");
  require(params.top_p > 0.f && params.top_p <= 1.f, "sampling: top_p must be in (0, 1]");
  std::vector<Completion> results(prompts.size());
  const int batch = std::max(1, params.max_batch);
  for (size_t begin = 0; begin < prompts.size(); begin += size_t(batch)) {
    const int S = int(std::min(prompts.size() - begin, size_t(batch)));
    size_t longest = 0;
    for (int s = 0; s < S; ++s) {
      require(!prompts[begin + s].empty(), "sampling: a prompt is empty");
      longest = std::max(longest, prompts[begin + s].size());
    }
    // The last sampled token is never fed back, so it needs no position.
    const int max_len = int(longest) + params.max_new_tokens - 1;
    require(max_len <= model.config().max_positions,
            "sampling: prompt plus max new tokens (" + std::to_string(max_len) +
                ") exceeds the model's " + std::to_string(model.config().max_positions) +
                " positions");
    if (model.kv_cache_max_len() < max_len || model.kv_cache_slots() < S)
      model.reserve_kv_cache(S, max_len);
    std::vector<int> fed(S, 0);  // tokens fed so far per sequence
    std::vector<bool> done(S, false);
    while (true) {
      std::vector<int32_t> tokens, positions, slots;
      std::vector<int> who;
      for (int s = 0; s < S; ++s) {
        if (done[s]) continue;
        const auto& prompt = prompts[begin + s];
        const auto& generated = results[begin + s].tokens;
        int32_t next = fed[s] < int(prompt.size()) ? prompt[fed[s]]
                                                   : generated[fed[s] - prompt.size()];
        tokens.push_back(next);
        positions.push_back(fed[s]);
        slots.push_back(s);
        who.push_back(s);
      }
      if (who.empty()) break;
      std::vector<float> logits = model.decode_step(tokens, positions, slots);
      for (size_t i = 0; i < who.size(); ++i) {
        const int s = who[i];
        const auto& prompt = prompts[begin + s];
        Completion& out = results[begin + s];
        fed[s] += 1;
        if (fed[s] < int(prompt.size())) continue;  // still reading the prompt
        const float* row = logits.data() + i * size_t(V);
        const uint64_t stream = params.seed * 0x9e3779b97f4a7c15ull + first_index + begin + s;
        int32_t token = sample_token(row, V, params, stream, out.tokens.size());
        out.tokens.push_back(token);
        out.logprobs.push_back(log_softmax_at(row, V, token));
        if (std::find(params.stop_tokens.begin(), params.stop_tokens.end(), token) !=
            params.stop_tokens.end()) {
          out.stopped = true;
          done[s] = true;
        } else if (int(out.tokens.size()) >= params.max_new_tokens) {
          done[s] = true;
        }
      }
    }
  }
  return results;
}

}  // namespace polaris
