// Model configuration: the shape of a decoder-only transformer.
//
// Two families share one code path (model/transformer.cpp) and differ only in
// the switches below:
//   GPT-2: learned positions, LayerNorm with bias, GELU-tanh MLP, biases on
//          every linear, tied LM head.
//   Qwen3: RoPE, RMSNorm, grouped-query attention, RMSNorm on each q and k
//          head, SwiGLU MLP, no biases, tied or untied LM head.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/rope.h"

namespace polaris {

enum class Family : int32_t { GPT2 = 1, Qwen3 = 2 };

// Upper bounds ModelConfig::validate enforces on every config read from a
// file (model.bin, config.json, checkpoints): far above any published model,
// low enough that the sizes derived from them cannot overflow 64 bits.
constexpr int kMaxVocabSize = 1 << 24;
constexpr int kMaxHiddenSize = 1 << 16;
constexpr int kMaxLayers = 1024;
constexpr int kMaxHeads = 1024;
constexpr int kMaxHeadDim = 1024;
constexpr int kMaxIntermediateSize = 1 << 20;
constexpr int kMaxPositions = 1 << 30;  // Qwen3 has no position table

struct ModelConfig {
  Family family = Family::Qwen3;
  int vocab_size = 0;
  int hidden_size = 0;         // C
  int num_layers = 0;          // L
  int num_heads = 0;           // query heads
  int num_kv_heads = 0;        // key/value heads (== num_heads for GPT-2)
  int head_dim = 0;            // D (GPT-2: hidden_size / num_heads)
  int intermediate_size = 0;   // MLP width F
  int max_positions = 0;       // GPT-2: rows of the position table; Qwen3: longest trained context
  float rope_theta = 10000.f;  // Qwen3 only
  RopeScaling rope_scaling;    // Qwen3 only: YaRN past the trained context (model/rope.h)
  float norm_eps = 1e-6f;
  bool tied_embeddings = true;

  bool is_gpt2() const { return family == Family::GPT2; }
  bool is_qwen3() const { return family == Family::Qwen3; }
  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  RopeParams rope() const { return rope_params(rope_theta, rope_scaling, head_dim); }
  // Positions a sequence may use: max_positions, or with YaRN the scaled
  // context original_max_positions * factor when that is longer (at most
  // kMaxPositions). Generation and forward passes check against this.
  int context_limit() const;

  // Throws Error naming `source` (a file or preset) when a field is impossible
  // or over the bounds above.
  void validate(const std::string& source) const;
  std::string family_name() const { return is_gpt2() ? "gpt2" : "qwen3"; }
  std::string describe() const;  // one line: family, layers, width, heads, vocab
};

// Named shapes: gpt2-124M/350M/774M/1.5B, qwen3-0.6B/1.7B/4B/8B, and the tiny
// presets used by tests and demos (gpt2-tiny, qwen3-tiny, qwen3-demo). Error on an unknown name.
ModelConfig config_from_preset(const std::string& name);
std::vector<std::string> preset_names();  // sorted, as the unknown-preset error lists them

}  // namespace polaris
