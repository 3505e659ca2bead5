#include "model/config.h"

#include <cmath>
#include <algorithm>
#include <map>
#include <sstream>

#include "src/common/error.h"

namespace polaris {

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](int value, const char* field) {
    require(value > 0, source + ": config field " + field + " must be positive, got " +
                           std::to_string(value));
  };
  require(family == Family::GPT2 || family == Family::Qwen3,
          source + ": unknown model family " + std::to_string(int(family)));
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_layers, "num_layers");
  positive(num_heads, "num_heads");
  positive(num_kv_heads, "num_kv_heads");
  positive(head_dim, "head_dim");
  positive(intermediate_size, "intermediate_size");
  positive(max_positions, "max_positions");
  require(num_heads % num_kv_heads == 0,
          source + ": num_heads (" + std::to_string(num_heads) +
              ") must be a multiple of num_kv_heads (" + std::to_string(num_kv_heads) + ")");
  require(std::isfinite(norm_eps) && norm_eps > 0.f && norm_eps < 1.f,
          source + ": norm_eps must be in (0, 1), got " + std::to_string(norm_eps));
  // Each weight matrix is indexed with 32-bit ints inside the ops: a header
  // whose shapes overflow that is corrupt (the 8B preset's largest is 6e8).
  auto fits = [&](long long rows, long long cols, const char* what) {
    require(rows * cols < (1ll << 31), source + ": " + what + " (" + std::to_string(rows) + " x " +
                                           std::to_string(cols) + ") is too large");
  };
  fits(num_heads, head_dim, "num_heads x head_dim");
  fits(num_kv_heads, head_dim, "num_kv_heads x head_dim");
  fits(vocab_size, hidden_size, "the embedding");
  fits(hidden_size, intermediate_size, "the MLP");
  fits(hidden_size, (long long)num_heads * head_dim, "the attention projection");
  // Sane upper bounds, far above any published model: a corrupt or hostile
  // header must fail here, before layouts are built or buffers allocated.
  auto at_most = [&](int value, int limit, const char* field) {
    require(value <= limit, source + ": config field " + field + " = " + std::to_string(value) +
                                " is over the limit of " + std::to_string(limit));
  };
  at_most(vocab_size, kMaxVocabSize, "vocab_size");
  at_most(hidden_size, kMaxHiddenSize, "hidden_size");
  at_most(num_layers, kMaxLayers, "num_layers");
  at_most(num_heads, kMaxHeads, "num_heads");
  at_most(num_kv_heads, num_heads, "num_kv_heads (at most num_heads)");
  at_most(head_dim, kMaxHeadDim, "head_dim");
  at_most(intermediate_size, kMaxIntermediateSize, "intermediate_size");
  at_most(max_positions, kMaxPositions, "max_positions");
  if (is_gpt2()) {
    fits(max_positions, hidden_size, "the position table");  // only GPT-2 learns one
    require(num_kv_heads == num_heads, source + ": GPT-2 has num_kv_heads == num_heads");
    require(head_dim * num_heads == hidden_size,
            source + ": GPT-2 needs head_dim * num_heads == hidden_size");
    require(tied_embeddings, source + ": GPT-2 ties its LM head to the token embedding");
  } else {
    require(head_dim % 2 == 0, source + ": RoPE needs an even head_dim, got " +
                                   std::to_string(head_dim));
    require(std::isfinite(rope_theta) && rope_theta > 0.f,
            source + ": rope_theta must be a positive finite number");
    rope_scaling.validate(source, head_dim);
  }
  if (is_gpt2())
    require(!rope_scaling.is_yarn(), source + ": rope_scaling: GPT-2 has no RoPE to scale");
}

int ModelConfig::context_limit() const {
  if (!rope_scaling.is_yarn()) return max_positions;
  const double scaled = std::ceil(double(rope_scaling.original_max_positions) *
                                  double(rope_scaling.factor));
  return int(std::min<double>(std::max<double>(max_positions, scaled), kMaxPositions));
}

std::string ModelConfig::describe() const {
  std::ostringstream out;
  out << family_name() << " layers=" << num_layers << " hidden=" << hidden_size
      << " heads=" << num_heads << "/" << num_kv_heads << " head_dim=" << head_dim
      << " mlp=" << intermediate_size << " vocab=" << vocab_size
      << (tied_embeddings ? " tied" : " untied");
  return out.str();
}

namespace {

ModelConfig gpt2(int layers, int hidden, int heads) {
  ModelConfig c;
  c.family = Family::GPT2;
  c.vocab_size = 50257;
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = heads;
  c.head_dim = hidden / heads;
  c.intermediate_size = 4 * hidden;
  c.max_positions = 1024;
  c.norm_eps = 1e-5f;
  c.tied_embeddings = true;
  return c;
}

// Qwen3 shapes as published in each model's config.json.
ModelConfig qwen3(int layers, int hidden, int heads, int kv_heads, int mlp, bool tied) {
  ModelConfig c;
  c.family = Family::Qwen3;
  c.vocab_size = 151936;
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = 128;
  c.intermediate_size = mlp;
  c.max_positions = 40960;
  c.rope_theta = 1000000.f;
  c.norm_eps = 1e-6f;
  c.tied_embeddings = tied;
  return c;
}

const std::map<std::string, ModelConfig>& presets() {
  static const std::map<std::string, ModelConfig> table = [] {
    std::map<std::string, ModelConfig> t;
    t["gpt2-124M"] = gpt2(12, 768, 12);
    t["gpt2-350M"] = gpt2(24, 1024, 16);
    t["gpt2-774M"] = gpt2(36, 1280, 20);
    t["gpt2-1.5B"] = gpt2(48, 1600, 25);
    t["qwen3-0.6B"] = qwen3(28, 1024, 16, 8, 3072, true);
    t["qwen3-1.7B"] = qwen3(28, 2048, 16, 8, 6144, true);
    t["qwen3-4B"] = qwen3(36, 2560, 32, 8, 9728, true);
    t["qwen3-8B"] = qwen3(36, 4096, 32, 8, 12288, false);
    ModelConfig gt = gpt2(2, 64, 4);
    gt.vocab_size = 384;
    gt.max_positions = 128;
    t["gpt2-tiny"] = gt;
    ModelConfig qt = qwen3(2, 128, 4, 2, 256, true);
    qt.vocab_size = 512;
    qt.head_dim = 32;
    qt.max_positions = 256;
    t["qwen3-tiny"] = qt;
    // The built-in demos' model: character vocabulary, short rows, and a
    // fast-turning RoPE base that tells nearby digits apart.
    ModelConfig demo = qwen3(2, 96, 4, 2, 256, true);
    demo.vocab_size = 64;
    demo.head_dim = 24;
    demo.max_positions = 64;
    demo.rope_theta = 10000.f;
    t["qwen3-demo"] = demo;
    return t;
  }();
  return table;
}

}  // namespace

ModelConfig config_from_preset(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    std::string known;
    for (const std::string& p : preset_names()) known += (known.empty() ? "" : ", ") + p;
    throw Error("unknown model preset '" + name + "' (known: " + known + ")");
  }
  return it->second;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (auto& p : presets()) names.push_back(p.first);
  return names;
}

}  // namespace polaris
