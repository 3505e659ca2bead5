// The flat parameter layout.
//
// Every parameter lives in one contiguous buffer, layer-major:
//   embed_tokens [V, C], embed_positions [P, C] (GPT-2),
//   layer 0's tensors, layer 1's, ...,
//   final_norm.weight [C] (+ .bias for GPT-2), lm_head [V, C] (untied only).
// Within a layer: attn_norm, q, k, v weights, then (GPT-2) their biases, so
// q/k/v are one [Q + 2 KV, C] matrix and one bias, computed by one GEMM;
// q_norm, k_norm (Qwen3), o,
// mlp_norm, then the MLP (Qwen3: gate, up, down; GPT-2: up, down with biases).
// Linear weights are [out, in] (row-major), so y = x W^T (+ b).
//
// ZeRO shards are contiguous ranges of this buffer and checkpoints store each
// tensor's name, offset and shape, so this order is a file-format contract.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace polaris {

constexpr size_t kAbsent = static_cast<size_t>(-1);

struct TensorInfo {
  std::string name;
  size_t offset = 0;
  std::vector<int64_t> shape;
  size_t numel = 0;
  // AdamW's decoupled weight decay applies to matrices only: not to norms,
  // biases or embeddings (their scale carries meaning decay would erase).
  bool weight_decay = false;
};

// Offsets into the flat buffer of one layer's tensors; kAbsent where the
// family has no such tensor.
struct LayerOffsets {
  size_t attn_norm_weight = kAbsent, attn_norm_bias = kAbsent;
  size_t q_weight = kAbsent, q_bias = kAbsent;
  size_t k_weight = kAbsent, k_bias = kAbsent;
  size_t v_weight = kAbsent, v_bias = kAbsent;
  size_t q_norm_weight = kAbsent, k_norm_weight = kAbsent;
  size_t o_weight = kAbsent, o_bias = kAbsent;
  size_t mlp_norm_weight = kAbsent, mlp_norm_bias = kAbsent;
  size_t gate_weight = kAbsent;  // Qwen3 only
  size_t up_weight = kAbsent, up_bias = kAbsent;
  size_t down_weight = kAbsent, down_bias = kAbsent;
};

struct ParamLayout {
  std::vector<TensorInfo> tensors;
  size_t total = 0;
  size_t embed_tokens = kAbsent, embed_positions = kAbsent;
  std::vector<LayerOffsets> layers;
  size_t final_norm_weight = kAbsent, final_norm_bias = kAbsent;
  size_t lm_head = kAbsent;  // == embed_tokens when tied

  // Index of the tensor called `name`, or -1.
  int find(const std::string& name) const;
};

ParamLayout build_param_layout(const ModelConfig& config);

// model.bin version 1 stored GPT-2's q/k/v biases after each weight
// (q.w q.b k.w k.b v.w v.b); reorders such parameters into this layout.
void reorder_from_v1_layout(const ModelConfig& config, const ParamLayout& layout,
                            std::vector<float>& params);

// Throws one line naming `source` and the tensor when a weight is NaN or
// infinite: such a model would load, then train to "diverged" or sample
// token 0 forever, far from the file that caused it.
void require_finite_params(const ParamLayout& layout, const std::vector<float>& params,
                           const std::string& source);

// Deterministic random initialisation (GPT-2 style: N(0, 0.02), output
// projections scaled by 1/sqrt(2L), norms at 1, biases at 0).
void init_params(const ModelConfig& config, const ParamLayout& layout, uint64_t seed,
                 float* params);

}  // namespace polaris
