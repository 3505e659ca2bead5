// Hugging Face checkpoints <-> our config and flat parameters.
//
// A Hugging Face model directory holds config.json and either model.safetensors or
// shards listed in model.safetensors.index.json ("weight_map": tensor -> file).
// Supported: model_type "qwen3" (Qwen3ForCausalLM) and "gpt2" (GPT2LMHeadModel),
// tensors in F32, BF16 or F16 (widened exactly to fp32).
//
// Name mapping (one table, used for import, export and gradients):
//   Qwen3                                        ours
//   model.embed_tokens.weight [V, C]             embed_tokens
//   model.layers.{i}.input_layernorm.weight      layers.{i}.attn_norm.weight
//   model.layers.{i}.self_attn.{q,k,v,o}_proj    layers.{i}.attn.{q,k,v,o}.weight
//   model.layers.{i}.self_attn.{q,k}_norm        layers.{i}.attn.{q,k}_norm.weight
//   model.layers.{i}.post_attention_layernorm    layers.{i}.mlp_norm.weight
//   model.layers.{i}.mlp.{gate,up,down}_proj     layers.{i}.mlp.{gate,up,down}.weight
//   model.norm.weight                            final_norm.weight
//   lm_head.weight (untied only)                 lm_head
//   GPT-2 (with or without the "transformer." prefix)
//   wte.weight, wpe.weight                       embed_tokens, embed_positions
//   h.{i}.ln_1.{weight,bias}                     layers.{i}.attn_norm.*
//   h.{i}.attn.c_attn.weight [C, 3C] (Conv1D)    q, k, v weights: split the columns, transpose
//   h.{i}.attn.c_attn.bias [3C]                  q, k, v biases
//   h.{i}.attn.c_proj.{weight,bias} (Conv1D)     layers.{i}.attn.o.* (weight transposed)
//   h.{i}.ln_2.*                                 layers.{i}.mlp_norm.*
//   h.{i}.mlp.c_fc.* [C, F], h.{i}.mlp.c_proj.* [F, C] (Conv1D)   mlp.up.*, mlp.down.*
//   ln_f.*                                       final_norm.*
// Conv1D stores [in, out]; ours is [out, in], so those weights are transposed.
// With tied embeddings a present lm_head.weight must equal the embedding; buffers
// (attn.bias, attn.masked_bias, rotary_emb.inv_freq) are ignored; any other
// unknown tensor, a missing tensor or a wrong shape is an Error naming the file
// and the tensor.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/model_file.h"
#include "model/safetensors.h"

namespace polaris {

// Named tensors spread over one or more .safetensors files.
class HfTensors {
 public:
  // One file.
  explicit HfTensors(SafetensorsFile file);
  explicit HfTensors(const std::string& safetensors_path)
      : HfTensors(SafetensorsFile(safetensors_path)) {}
  // DIR/model.safetensors, or the shards DIR/model.safetensors.index.json lists.
  static HfTensors from_dir(const std::string& dir);

  bool has(const std::string& name) const { return where_.count(name) > 0; }
  // Error "<file>: tensor <name> is missing" when absent.
  const SafetensorsEntry& entry(const std::string& name) const;
  void read_f32(const std::string& name, float* out) const;
  std::vector<float> read_f32(const std::string& name) const;
  // The file holding `name` (the index file for a missing one).
  const std::string& file_of(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  HfTensors() = default;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;
  std::string source_;  // the file (or index) error messages name
};

// Parses a config.json (model_type qwen3 or gpt2) and validates the result.
ModelConfig read_hf_config(const std::string& config_json_path);
// Writes a config.json transformers can load (atomically).
void write_hf_config(const std::string& config_json_path, const ModelConfig& config,
                     FileDType dtype);

// HF-named tensors -> our flat layout (fp32, build_param_layout(config).total values).
// Used for weights and equally for gradients (e.g. a fixture's grads.safetensors:
// with tied embeddings HF's embed_tokens / wte gradient already is the sum over
// both uses, which is exactly our embed_tokens gradient; Conv1D grads transpose).
std::vector<float> hf_named_tensors_to_flat(const ModelConfig& config, const HfTensors& tensors);
std::vector<float> hf_named_tensors_to_flat(const ModelConfig& config,
                                            const SafetensorsFile& file);

// Our flat layout -> HF-named tensors (Conv1D transposed back, q/k/v fused for
// GPT-2, no lm_head.weight when tied). data() points into `params` or into owned.
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  const float* external = nullptr;
  std::vector<float> owned;
  const float* data() const { return owned.empty() ? external : owned.data(); }
};
std::vector<HfTensor> flat_to_hf_named_tensors(const ModelConfig& config,
                                               const std::vector<float>& params);

// config.json + weights -> config and flat fp32 parameters.
LoadedModel read_hf_dir(const std::string& dir);
// Creates `dir` if needed; writes model.safetensors (dtype F32, BF16 or F16) and
// config.json.
void write_hf_dir(const std::string& dir, const ModelConfig& config,
                  const std::vector<float>& params, FileDType dtype = FileDType::F32);

}  // namespace polaris
