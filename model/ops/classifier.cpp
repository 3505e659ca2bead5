// CpuOps: the fused softmax cross-entropy of the LM head (the "classifier").
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "model/cpu_ops.h"
#include "src/common/error.h"

namespace polaris {

// Weighted next-token cross-entropy with an optional entropy term (see LossArgs):
//   lse = log sum_j exp(l_j),  log p_j = l_j - lse,  logprob = log p[target]
//   H = -sum_j p_j log p_j = lse - sum_j p_j l_j
//   loss = w * (-logprob) - ew * H
//   dlogits_j = scale * (w * (p_j - [j == target]) + ew * p_j * (log p_j + H))
// One row per iteration (parallel over rows). Row sums are in double. The
// gradient loop reads l_j and then writes dlogits_j at the same index, so
// dlogits may alias logits. weights null is read as all ones.
void CpuOps::cross_entropy(const LossArgs& a) {
  const int N = a.N, V = a.V;
  const float* logits = a.logits.f32();
  float* dlogits = a.dlogits.f32();
  for (int i = 0; i < N; i++)
    require(a.targets[i] < V, "cross_entropy: target " + std::to_string(a.targets[i]) +
                                  " out of range for vocabulary size " + std::to_string(V));
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float* l = logits + (size_t)i * V;
    float* dl = dlogits ? dlogits + (size_t)i * V : nullptr;
    const int target = a.targets[i];
    if (target < 0) {  // ignored row
      a.losses[i] = 0.f;
      if (a.logprobs) a.logprobs[i] = 0.f;
      if (a.entropies) a.entropies[i] = 0.f;
      if (dl) std::memset(dl, 0, (size_t)V * sizeof(float));
      continue;
    }
    float maxv = l[0];
    for (int j = 1; j < V; j++) maxv = std::max(maxv, l[j]);
    double sum = 0.0, sum_el = 0.0;
    for (int j = 0; j < V; j++) {
      const double e = std::exp((double)l[j] - maxv);
      sum += e;
      sum_el += e * ((double)l[j] - maxv);
    }
    const double lse = maxv + std::log(sum);
    const double H = std::log(sum) - sum_el / sum;  // lse - sum p l, shifted by maxv
    const double logprob = (double)l[target] - lse;
    const float w = a.weights ? a.weights[i] : 1.f;
    const float ew = a.entropy_weights ? a.entropy_weights[i] : 0.f;
    a.losses[i] = (float)(w * -logprob - ew * H);
    if (a.logprobs) a.logprobs[i] = (float)logprob;
    if (a.entropies) a.entropies[i] = (float)H;
    if (dl) {
      for (int j = 0; j < V; j++) {
        const double logp = (double)l[j] - lse;
        const double p = std::exp(logp);
        double g = w * (p - (j == target ? 1.0 : 0.0));
        if (ew != 0.f) g += ew * p * (logp + H);
        dl[j] = (float)(a.scale * g);
      }
    }
  }
}

}  // namespace polaris
