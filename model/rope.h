// RoPE's frequencies: plain rotary embedding, or scaled by YaRN so a model
// runs past the context it was trained on.
//
// Plain RoPE rotates pair i < D/2 of a head by angle pos * inv_freq_i with
//   p_i = theta^(2i/D),  inv_freq_i = 1 / p_i.
// YaRN ("Yet another RoPE extensioN", Peng et al. 2023), with factor s and the
// pretrained context L, keeps the fast-rotating pairs (many turns within L:
// they already saw every angle) and divides the slow ones by s (they never
// completed a turn within L, so longer contexts would show them new angles):
//   d(r)    = D ln(L / (2 pi r)) / (2 ln theta)   the pair that turns r times in L
//   low     = max(floor(d(beta_fast)), 0),  high = min(ceil(d(beta_slow)), D - 1)
//             (no floor/ceil when truncate is false; high += 0.001 if equal)
//   ramp_i  = clamp((i - low) / (high - low), 0, 1)
//   keep_i  = 1 - ramp_i                          (1: extrapolate, 0: interpolate)
//   inv_freq_i = 1 / (s p_i) * (1 - keep_i) + 1 / p_i * keep_i
// and multiplies cos and sin by the attention factor
//   mscale = 0.1 ln(s) + 1  (s > 1; else 1)
// so every q.k logit is scaled by mscale^2 (the softmax sharpening that offsets
// the longer context's flatter attention). These are transformers' semantics
// (rope_type "yarn" in config.json's rope_scaling / rope_parameters): the
// attention factor is config's attention_factor when given, else
// mscale(s, mscale) / mscale(s, mscale_all_dim) when both are given, else
// mscale(s); L is original_max_position_embeddings, else max_position_embeddings.
// All arithmetic per pair is fp32 in that order, as transformers computes it.
#pragma once
#include <cstdint>
#include <string>

#include "src/common/host_device.h"

namespace polaris {

enum class RopeType : int32_t { Default = 0, Yarn = 1 };

// A model's RoPE scaling, as config.json and model.bin store it. Unused (and
// all at these defaults) for plain RoPE.
struct RopeScaling {
  RopeType type = RopeType::Default;
  float factor = 1.f;              // s: how many times the pretrained context
  int original_max_positions = 0;  // L: the pretrained context
  float beta_fast = 32.f;          // pairs turning more than this often in L keep their frequency
  float beta_slow = 1.f;           // pairs turning less than this often are divided by s
  float attention_factor = 1.f;    // cos/sin multiplier (resolved: never "absent")
  bool truncate = true;            // floor/ceil the correction range

  bool is_yarn() const { return type == RopeType::Yarn; }
  const char* type_name() const { return is_yarn() ? "yarn" : "default"; }
  // Throws Error "<source>: <key>.<field> ..." on an impossible value (key:
  // the config object's name, rope_scaling or rope_parameters).
  void validate(const std::string& source, int head_dim,
                const std::string& key = "rope_scaling") const;
  bool operator==(const RopeScaling& o) const;
};

// 0.1 * mscale * ln(s) + 1 for s > 1, else 1 (transformers' get_mscale).
double yarn_mscale(double factor, double mscale = 1.0);

// What the RoPE ops need: theta and, for YaRN, the ramp and the cos/sin scale.
struct RopeParams {
  float theta = 10000.f;
  bool yarn = false;
  float factor = 1.f;
  float ramp_low = 0.f;   // low
  float ramp_span = 1.f;  // high - low (nonzero)
  float attention_scale = 1.f;
};

// The ops' parameters for head dimension D (plain RoPE: theta alone).
RopeParams rope_params(float theta, const RopeScaling& scaling, int head_dim);

// inv_freq_i from the fp32 power p_i = theta^(2i/D); the same bits on the host
// and the device given the same p_i.
POLARIS_HOST_DEVICE inline float rope_inv_freq_from_power(float p, int i, const RopeParams& r) {
  const float extrapolated = 1.0f / p;
  if (!r.yarn) return extrapolated;
  const float interpolated = 1.0f / (r.factor * p);
  float ramp = ((float)i - r.ramp_low) / r.ramp_span;
  ramp = ramp < 0.f ? 0.f : (ramp > 1.f ? 1.f : ramp);
  const float keep = 1.f - ramp;
#if defined(__CUDA_ARCH__)  // no fused multiply-add: the CPU rounds each product
  return __fadd_rn(__fmul_rn(interpolated, 1.f - keep), __fmul_rn(extrapolated, keep));
#else
  return interpolated * (1.f - keep) + extrapolated * keep;
#endif
}

}  // namespace polaris
