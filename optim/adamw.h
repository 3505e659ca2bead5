// AdamW over a contiguous range of the flat parameter buffer.
//
// For each parameter p with gradient g (t = step, 1-based; s = grad_scale):
//   g' = s * g
//   m  = beta1 * m + (1 - beta1) * g'
//   v  = beta2 * v + (1 - beta2) * g'^2
//   m^ = m / (1 - beta1^t),  v^ = v / (1 - beta2^t)          (bias correction)
//   p -= lr * ( m^ / (sqrt(v^) + eps)  +  wd * p )            (decoupled decay)
// where wd = config.weight_decay for tensors with TensorInfo::weight_decay
// (matrices) and 0 for the rest (norms, biases, embeddings).
//
// One AdamW owns the fp32 moments m, v (allocated through Ops, so in device
// memory on CUDA) of the range [begin, end): the whole buffer in a single
// process, one rank's shard under ZeRO. The range is split at the tensor
// boundaries where the decay flag changes, and each run is one
// Ops::adamw_update call.
#pragma once
#include <cstddef>
#include <vector>

#include "model/ops.h"
#include "model/params.h"

namespace polaris {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // applied only to tensors with TensorInfo::weight_decay
  // How the low-precision weight copy (bf16 on the GPU) is rounded.
  bool stochastic_rounding = true;
};

class AdamW {
 public:
  // Throws Error when the range is not inside [0, layout.total] or the
  // config is impossible (betas outside [0, 1), eps <= 0, weight_decay < 0).
  AdamW(Ops& ops, const ParamLayout& layout, size_t begin, size_t end,
        const AdamWConfig& config = AdamWConfig());
  ~AdamW();
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // One optimizer step. params and grads are the FULL flat buffers in Ops
  // memory; only [begin, end) is read and written. `copy`, when given, is the
  // backend's low-precision copy of the full buffer (Transformer::weights()
  // on bf16 backends): its range receives the updated values. Increments
  // step_count() first, so the first call uses t = 1.
  void step(float* params, const float* grads, float lr, float grad_scale = 1.f,
            Buf copy = Buf());
  // The same step on the range alone: range_params[i] and range_grads[i]
  // are parameter begin() + i (a ZeRO shard of the master and of the
  // gradient, which is all a rank holds of them); `copy` is still the full
  // buffer (its [begin, end) is written).
  void step_range(float* range_params, const float* range_grads, float lr,
                  float grad_scale = 1.f, Buf copy = Buf());

  // Rebuilds copy's [begin, end) from the range's params (range_params[i]
  // is parameter begin() + i) as the last step rounded it (a resumed run's
  // low-precision weights then equal the uninterrupted run's bit for bit).
  // No-op before the first step or without a copy.
  void round_copy(const float* range_params, Buf copy) const;

  int step_count() const { return step_; }
  size_t begin() const { return begin_; }
  size_t end() const { return end_; }
  size_t size() const { return end_ - begin_; }
  const AdamWConfig& config() const { return config_; }

  // ---- checkpoint state ----
  // The moments of the range on the host: which = 0 for m, 1 for v.
  std::vector<float> moments_host(int which) const;
  // Restores the step counter and both moments (each size() floats).
  void set_state(int step, const std::vector<float>& m, const std::vector<float>& v);

 private:
  // A maximal sub-range [begin, end) (absolute offsets) with one decay flag.
  struct Run {
    size_t begin, end;
    bool decay;
  };

  // The per-call arguments of run r at the current step.
  AdamWArgs args_for(const Run& r, float lr, float grad_scale) const;

  Ops& ops_;
  AdamWConfig config_;
  size_t begin_, end_;
  std::vector<Run> runs_;
  float* m_ = nullptr;  // [size()], in Ops memory; m_[i] belongs to param begin_ + i
  float* v_ = nullptr;
  int step_ = 0;
};

}  // namespace polaris
