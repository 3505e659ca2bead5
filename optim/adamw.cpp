#include "optim/adamw.h"

#include <algorithm>
#include <string>

#include "src/common/error.h"

namespace polaris {

AdamW::AdamW(Ops& ops, const ParamLayout& layout, size_t begin, size_t end,
             const AdamWConfig& config)
    : ops_(ops), config_(config), begin_(begin), end_(end) {
  require(begin <= end && end <= layout.total,
          "AdamW: range [" + std::to_string(begin) + ", " + std::to_string(end) +
              ") is not inside the " + std::to_string(layout.total) + " parameters");
  require(config.beta1 >= 0.f && config.beta1 < 1.f, "AdamW: beta1 must be in [0, 1)");
  require(config.beta2 >= 0.f && config.beta2 < 1.f, "AdamW: beta2 must be in [0, 1)");
  require(config.eps > 0.f, "AdamW: eps must be > 0");
  require(config.weight_decay >= 0.f, "AdamW: weight_decay must be >= 0");

  // The tensors tile [0, total) in offset order (model/params.h); cut each
  // to the range and merge neighbours with the same decay flag.
  size_t covered = 0;
  for (const TensorInfo& t : layout.tensors) {
    require(t.offset == covered, "AdamW: parameter layout has a gap or overlap at tensor '" +
                                     t.name + "'");
    covered = t.offset + t.numel;
    const size_t lo = std::max(begin, t.offset), hi = std::min(end, t.offset + t.numel);
    if (lo >= hi) continue;
    if (!runs_.empty() && runs_.back().end == lo && runs_.back().decay == t.weight_decay)
      runs_.back().end = hi;
    else
      runs_.push_back({lo, hi, t.weight_decay});
  }
  require(covered == layout.total, "AdamW: parameter layout does not cover its total");

  if (size() > 0) {
    m_ = ops_.alloc(size());  // zero-filled
    v_ = ops_.alloc(size());
  }
}

AdamW::~AdamW() {
  if (m_) ops_.release(m_);
  if (v_) ops_.release(v_);
}

AdamWArgs AdamW::args_for(const Run& r, float lr, float grad_scale) const {
  AdamWArgs args;
  args.learning_rate = lr;
  args.beta1 = config_.beta1;
  args.beta2 = config_.beta2;
  args.epsilon = config_.eps;
  args.grad_scale = grad_scale;
  args.step = step_;
  args.stochastic_rounding = config_.stochastic_rounding;
  args.weight_decay = r.decay ? config_.weight_decay : 0.f;
  // A rounding stream per (step, run): the same on a resumed run, different
  // between steps and between the runs of one step.
  args.rounding_seed = (uint64_t(step_) << 40) ^ uint64_t(r.begin);
  return args;
}

void AdamW::step(float* params, const float* grads, float lr, float grad_scale, Buf copy) {
  step_range(params + begin_, grads + begin_, lr, grad_scale, copy);
}

void AdamW::step_range(float* range_params, const float* range_grads, float lr, float grad_scale,
                       Buf copy) {
  step_++;
  for (const Run& r : runs_) {
    const size_t local = r.begin - begin_;
    ops_.adamw_update(range_params + local, copy ? copy + r.begin : Buf(), range_grads + local,
                      m_ + local, v_ + local, r.end - r.begin, args_for(r, lr, grad_scale));
  }
}

void AdamW::round_copy(const float* range_params, Buf copy) const {
  if (!copy || step_ == 0) return;
  for (const Run& r : runs_)
    ops_.round_weight_copy(copy + r.begin, range_params + (r.begin - begin_), r.end - r.begin,
                           args_for(r, 0.f, 1.f));
}

std::vector<float> AdamW::moments_host(int which) const {
  require(which == 0 || which == 1, "AdamW::moments_host: which must be 0 (m) or 1 (v)");
  std::vector<float> out(size());
  if (size() > 0) ops_.download(out.data(), which == 0 ? m_ : v_, size());
  return out;
}

void AdamW::set_state(int step, const std::vector<float>& m, const std::vector<float>& v) {
  require(step >= 0, "AdamW::set_state: negative step " + std::to_string(step));
  require(m.size() == size() && v.size() == size(),
          "AdamW::set_state: moments hold " + std::to_string(m.size()) + " and " +
              std::to_string(v.size()) + " values, the optimizer range has " +
              std::to_string(size()));
  if (size() > 0) {
    ops_.upload(m_, m.data(), size());
    ops_.upload(v_, v.data(), size());
  }
  step_ = step;
}

}  // namespace polaris
