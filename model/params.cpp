#include "model/params.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "src/common/error.h"

namespace polaris {

namespace {

struct LayoutBuilder {
  ParamLayout layout;
  size_t add(const std::string& name, std::vector<int64_t> shape, bool decay) {
    TensorInfo t;
    t.name = name;
    t.offset = layout.total;
    t.shape = std::move(shape);
    t.numel = 1;
    for (int64_t d : t.shape) t.numel *= size_t(d);
    t.weight_decay = decay;
    layout.total += t.numel;
    layout.tensors.push_back(t);
    return t.offset;
  }
};

}  // namespace

ParamLayout build_param_layout(const ModelConfig& c) {
  LayoutBuilder b;
  const int64_t C = c.hidden_size, V = c.vocab_size, F = c.intermediate_size;
  const int64_t Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim;
  const bool gpt2 = c.is_gpt2();
  auto& L = b.layout;
  L.embed_tokens = b.add("embed_tokens", {V, C}, false);
  if (gpt2) L.embed_positions = b.add("embed_positions", {c.max_positions, C}, false);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    LayerOffsets o;
    o.attn_norm_weight = b.add(p + "attn_norm.weight", {C}, false);
    if (gpt2) o.attn_norm_bias = b.add(p + "attn_norm.bias", {C}, false);
    // q, k, v weights adjacent (one [Q + 2 KV, C] matrix: one GEMM), then
    // their biases adjacent (one bias vector of that GEMM).
    o.q_weight = b.add(p + "attn.q.weight", {Q, C}, true);
    o.k_weight = b.add(p + "attn.k.weight", {KV, C}, true);
    o.v_weight = b.add(p + "attn.v.weight", {KV, C}, true);
    if (gpt2) {
      o.q_bias = b.add(p + "attn.q.bias", {Q}, false);
      o.k_bias = b.add(p + "attn.k.bias", {KV}, false);
      o.v_bias = b.add(p + "attn.v.bias", {KV}, false);
    }
    if (!gpt2) {
      o.q_norm_weight = b.add(p + "attn.q_norm.weight", {D}, false);
      o.k_norm_weight = b.add(p + "attn.k_norm.weight", {D}, false);
    }
    o.o_weight = b.add(p + "attn.o.weight", {C, Q}, true);
    if (gpt2) o.o_bias = b.add(p + "attn.o.bias", {C}, false);
    o.mlp_norm_weight = b.add(p + "mlp_norm.weight", {C}, false);
    if (gpt2) o.mlp_norm_bias = b.add(p + "mlp_norm.bias", {C}, false);
    if (!gpt2) o.gate_weight = b.add(p + "mlp.gate.weight", {F, C}, true);
    o.up_weight = b.add(p + "mlp.up.weight", {F, C}, true);
    if (gpt2) o.up_bias = b.add(p + "mlp.up.bias", {F}, false);
    o.down_weight = b.add(p + "mlp.down.weight", {C, F}, true);
    if (gpt2) o.down_bias = b.add(p + "mlp.down.bias", {C}, false);
    L.layers.push_back(o);
  }
  L.final_norm_weight = b.add("final_norm.weight", {C}, false);
  if (gpt2) L.final_norm_bias = b.add("final_norm.bias", {C}, false);
  L.lm_head = c.tied_embeddings ? L.embed_tokens : b.add("lm_head", {V, C}, true);
  return L;
}

void reorder_from_v1_layout(const ModelConfig& c, const ParamLayout& layout,
                            std::vector<float>& params) {
  if (!c.is_gpt2()) return;  // Qwen3's layout did not change
  const size_t C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim();
  std::vector<float> block;
  for (const LayerOffsets& o : layout.layers) {
    // v1: q.w q.b k.w k.b v.w v.b, starting where q.weight starts now
    const float* v1 = params.data() + o.q_weight;
    block.assign(v1, v1 + (Q + 2 * KV) * (C + 1));
    const float* q_w = block.data();
    const float* q_b = q_w + Q * C;
    const float* k_w = q_b + Q;
    const float* k_b = k_w + KV * C;
    const float* v_w = k_b + KV;
    const float* v_b = v_w + KV * C;
    float* out = params.data();
    std::copy(q_w, q_w + Q * C, out + o.q_weight);
    std::copy(k_w, k_w + KV * C, out + o.k_weight);
    std::copy(v_w, v_w + KV * C, out + o.v_weight);
    std::copy(q_b, q_b + Q, out + o.q_bias);
    std::copy(k_b, k_b + KV, out + o.k_bias);
    std::copy(v_b, v_b + KV, out + o.v_bias);
  }
}

int ParamLayout::find(const std::string& name) const {
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].name == name) return int(i);
  return -1;
}

void init_params(const ModelConfig& config, const ParamLayout& layout, uint64_t seed,
                 float* params) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 0.02f);
  const float residual_scale = 1.f / std::sqrt(2.f * config.num_layers);
  for (const TensorInfo& t : layout.tensors) {
    float* p = params + t.offset;
    const bool is_norm = t.name.find("norm.weight") != std::string::npos;
    const bool is_bias = t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    const bool is_output_projection = t.name.find("attn.o.weight") != std::string::npos ||
                                      t.name.find("mlp.down.weight") != std::string::npos;
    for (size_t i = 0; i < t.numel; ++i) {
      if (is_norm) p[i] = 1.f;
      else if (is_bias) p[i] = 0.f;
      else p[i] = normal(rng) * (is_output_projection ? residual_scale : 1.f);
    }
  }
}

void require_finite_params(const ParamLayout& layout, const std::vector<float>& params,
                           const std::string& source) {
  for (const TensorInfo& t : layout.tensors)
    for (size_t i = t.offset; i < t.offset + t.numel && i < params.size(); ++i)
      require(std::isfinite(params[i]), source + ": tensor " + t.name + " holds " +
                                            (std::isnan(params[i]) ? "NaN" : "an infinity") +
                                            " at element " + std::to_string(i - t.offset));
}

}  // namespace polaris
