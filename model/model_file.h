// model.bin: a model's config and flat parameters in one file.
//
// Layout (all little-endian):
//   header: 256 int32 words (1024 bytes)
//     [0]  magic 20240601
//     [1]  version 1
//     [2]  family (1 GPT-2, 2 Qwen3)
//     [3]  dtype of the parameters (0 fp32, 1 bf16)
//     [4]  vocab_size          [5]  hidden_size        [6]  num_layers
//     [7]  num_heads           [8]  num_kv_heads       [9]  head_dim
//     [10] intermediate_size   [11] max_positions      [12] tied_embeddings (0/1)
//     [13] rope_theta (fp32 bit pattern)                [14] norm_eps (fp32 bit pattern)
//     [15] parameter count, low 32 bits                 [16] high 32 bits
//     [17] RoPE scaling (0 none, 1 YaRN); for YaRN (all zero otherwise):
//     [18] factor (fp32 bits)   [19] original_max_positions
//     [20] beta_fast (fp32 bits)   [21] beta_slow (fp32 bits)
//     [22] attention_factor (fp32 bits)   [23] truncate (0/1)
//     [24..32] the tokenizer the model was converted or trained with
//              (data/tokenizer_id.h; all zero when none was recorded)
//     [33..255] zero (reserved)
//   Words 17-32 were reserved (zero) before: older files read as plain RoPE
//   with no tokenizer record, and an older build refuses a newer file (a
//   nonzero reserved word) instead of running it unscaled.
//   then the flat parameters in the layout of model/params.h (build_param_layout
//   of the header's config): count * 4 bytes (fp32) or count * 2 bytes (bf16,
//   rounded to nearest even when written, widened exactly when read).
//
// The file ends exactly after the parameters. read_model_bin checks everything:
// magic, version, family, dtype, config fields (ModelConfig::validate), the
// parameter count against the config's layout, truncation and trailing bytes;
// each failure is one Error line naming the file. write_model_bin writes
// "<path>.tmp" and renames it, so a failed write leaves no model.bin behind.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer_id.h"
#include "model/config.h"

namespace polaris {

constexpr int32_t kModelBinMagic = 20240601;
// Version 2: q/k/v biases adjacent (model/params.h); version 1 files are
// still read (reordered on load).
constexpr int32_t kModelBinVersion = 2;
constexpr int kModelBinHeaderWords = 256;
constexpr int kModelBinTokenizerWord = 24;  // first of TokenizerId::kWords words

struct LoadedModel {
  ModelConfig config;
  std::vector<float> params;  // fp32, build_param_layout(config).total values
  TokenizerId tokenizer;      // the recorded tokenizer (unrecorded: none)
};

// bf16 = false: fp32 parameters; true: bf16 (half the size, ~3 significant digits).
void write_model_bin(const std::string& path, const ModelConfig& config,
                     const std::vector<float>& params, bool bf16,
                     const TokenizerId& tokenizer = TokenizerId());
LoadedModel read_model_bin(const std::string& path);
// Only the header: config and stored dtype (for --info without loading weights).
// Checks everything read_model_bin does except reading the parameters.
ModelConfig read_model_bin_config(const std::string& path, bool* bf16 = nullptr,
                                  TokenizerId* tokenizer = nullptr);

}  // namespace polaris
