// The sampler before partial selection and integer weights: sort (partially,
// to top_k) by (logit desc, id asc), double weights summed in that order, a
// top_p cut, then one draw walking the order. Kept as the agreement oracle
// for model/sampler.cpp (tests/test_sampling.cpp) and as the "before" figure
// of src/bench/bench_sampling.cpp. temperature > 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "model/sampler.h"
#include "src/common/mix.h"

namespace polaris {

inline int32_t full_sort_sample(const float* logits, int V, const SamplingParams& params,
                                uint64_t stream, uint64_t counter) {
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
  for (int i = 0; i < keep; ++i) {
    u -= weight[i];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

}  // namespace polaris
