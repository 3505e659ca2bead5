#include "model/hf_import.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "data/json_input.h"
#include "model/params.h"
#include "src/common/error.h"

namespace polaris {

namespace {

using json = nlohmann::json;

// config.json and model.safetensors.index.json: bounded (data/json_input.h).
json read_json_file(const std::string& path) {
  return polaris::read_json_file(path, kJsonConfigMaxBytes, "a JSON model file");
}

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

}  // namespace

// ---------------------------------------------------------------------------
// HfTensors

HfTensors::HfTensors(SafetensorsFile file) {
  source_ = file.path();
  for (const std::string& n : file.names()) where_[n] = 0;
  files_.push_back(std::move(file));
}

HfTensors HfTensors::from_dir(const std::string& dir) {
  const std::string single = join(dir, "model.safetensors");
  const std::string index = join(dir, "model.safetensors.index.json");
  if (is_file(single)) return HfTensors(SafetensorsFile(single));
  if (!is_file(index)) {
    std::string extra = is_file(join(dir, "pytorch_model.bin"))
                            ? " (pytorch_model.bin is not supported: save with safetensors)"
                            : "";
    throw Error(dir + ": no model.safetensors or model.safetensors.index.json" + extra);
  }
  json j = read_json_file(index);
  require(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
          index + ": missing object \"weight_map\"");
  HfTensors t;
  t.source_ = index;
  std::map<std::string, size_t> file_index;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    require(it.value().is_string(),
            index + ": weight_map entry for " + it.key() + " must be a file name");
    const std::string file = it.value().get<std::string>();
    require(!file.empty() && file.find('/') == std::string::npos,
            index + ": weight_map entry for " + it.key() + " names a bad file '" + file + "'");
    auto f = file_index.find(file);
    if (f == file_index.end()) {
      f = file_index.emplace(file, t.files_.size()).first;
      t.files_.emplace_back(join(dir, file));
    }
    t.where_[it.key()] = f->second;
  }
  // Every tensor of every shard must be where the index places it: a tensor
  // the index does not list, or one stored twice, means shards and index
  // disagree, and either copy could be the intended one.
  for (size_t i = 0; i < t.files_.size(); ++i)
    for (const std::string& name : t.files_[i].names()) {
      auto listed = t.where_.find(name);
      require(listed != t.where_.end(), t.files_[i].path() + ": holds tensor " + name +
                                            ", which is not in the weight_map of " + index);
      require(listed->second == i, t.files_[i].path() + ": holds tensor " + name + ", which " +
                                       index + " places in " + t.files_[listed->second].path());
    }
  return t;
}

const SafetensorsEntry& HfTensors::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(source_ + ": tensor " + name + " is missing");
  const SafetensorsFile& f = files_[it->second];
  if (!f.has(name))
    throw Error(f.path() + ": tensor " + name + " is missing (" + source_ +
                " says it is in this file)");
  return f.entry(name);
}

void HfTensors::read_f32(const std::string& name, float* out) const {
  entry(name);
  files_[where_.at(name)].read_f32(name, out);
}

std::vector<float> HfTensors::read_f32(const std::string& name) const {
  std::vector<float> out(entry(name).numel);
  read_f32(name, out.data());
  return out;
}

const std::string& HfTensors::file_of(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? source_ : files_[it->second].path();
}

std::vector<std::string> HfTensors::names() const {
  std::vector<std::string> out;
  for (auto& w : where_) out.push_back(w.first);
  return out;
}

// ---------------------------------------------------------------------------
// config.json

namespace {

struct ConfigReader {
  const json& j;
  const std::string& path;
  std::string prefix = "";  // "rope_scaling." for a nested object's fields

  std::string field(const std::string& key) const { return "field \"" + prefix + key + "\""; }
  bool present(const char* key) const { return j.contains(key) && !j[key].is_null(); }
  int get_int(const char* key) const {
    require(present(key), path + ": missing " + field(key));
    const json& v = j[key];
    require(v.is_number_integer() && v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX,
            path + ": " + field(key) + " must be an integer, got " + v.dump());
    return int(v.get<int64_t>());
  }
  int get_int(const char* key, int fallback) const {
    return present(key) ? get_int(key) : fallback;
  }
  float get_float(const json& v, const std::string& key) const {
    require(v.is_number(), path + ": " + field(key) + " must be a number, got " + v.dump());
    return float(v.get<double>());
  }
  float get_float(const char* key, float fallback) const {
    return present(key) ? get_float(j[key], key) : fallback;
  }
  bool get_bool(const char* key, bool fallback) const {
    if (!present(key)) return fallback;
    require(j[key].is_boolean(), path + ": " + field(key) + " must be true or false");
    return j[key].get<bool>();
  }
  std::string get_string(const char* key, const std::string& fallback) const {
    if (!present(key)) return fallback;
    require(j[key].is_string(), path + ": " + field(key) + " must be a string");
    return j[key].get<std::string>();
  }
};

// A rope_scaling / rope_parameters object (`key`) with transformers' meaning
// (model/rope.h): rope_type (or the older "type") "default" or "yarn"; for
// YaRN, factor (required), original_max_position_embeddings (default
// max_positions), beta_fast (32), beta_slow (1), truncate (true), and the
// attention factor: attention_factor, else mscale / mscale_all_dim, else
// 0.1 ln(factor) + 1. Sets c.rope_theta too when the object carries it.
void read_rope_object(const json& rp, const std::string& key, const std::string& path,
                      ModelConfig& c) {
  require(rp.is_object(), path + ": field \"" + key + "\" must be an object, got " + rp.dump());
  ConfigReader r{rp, path, key + "."};
  if (r.present("rope_theta")) c.rope_theta = r.get_float(rp["rope_theta"], "rope_theta");
  const std::string type = r.get_string("rope_type", r.get_string("type", "default"));
  if (type == "default") return;
  require(type == "yarn", path + ": " + r.field("rope_type") + " '" + type +
                              "' is not supported (default, yarn)");
  RopeScaling& s = c.rope_scaling;
  s = RopeScaling();
  s.type = RopeType::Yarn;
  require(r.present("factor"), path + ": missing " + r.field("factor") + " (YaRN needs it)");
  s.factor = r.get_float(rp["factor"], "factor");
  s.original_max_positions = r.get_int("original_max_position_embeddings", c.max_positions);
  s.beta_fast = r.get_float("beta_fast", 32.f);
  s.beta_slow = r.get_float("beta_slow", 1.f);
  s.truncate = r.get_bool("truncate", true);
  const float mscale = r.get_float("mscale", 0.f);
  const float mscale_all_dim = r.get_float("mscale_all_dim", 0.f);
  if (r.present("attention_factor"))
    s.attention_factor = r.get_float(rp["attention_factor"], "attention_factor");
  else if (mscale != 0.f && mscale_all_dim != 0.f)
    s.attention_factor = float(yarn_mscale(s.factor, mscale) / yarn_mscale(s.factor, mscale_all_dim));
  else
    s.attention_factor = float(yarn_mscale(s.factor));
  s.validate(path, c.head_dim, key);
}

// The shortest decimal that reads back as `f`, as a double (so 1e-6f is written
// as 1e-06, not 9.99999997e-07).
double float_for_json(float f) {
  char buf[64];
  for (int precision = 1; precision <= 9; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, double(f));
    if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
  }
  return double(f);
}

const char* torch_dtype_name(FileDType dtype) {
  switch (dtype) {
    case FileDType::BF16: return "bfloat16";
    case FileDType::F16: return "float16";
    default: return "float32";
  }
}

}  // namespace

ModelConfig read_hf_config(const std::string& path) {
  json j = read_json_file(path);
  require(j.is_object(), path + ": expected a JSON object");
  ConfigReader r{j, path};
  const std::string type = r.get_string("model_type", "");
  ModelConfig c;
  if (type == "qwen3") {
    c.family = Family::Qwen3;
    c.hidden_size = r.get_int("hidden_size");
    c.num_layers = r.get_int("num_hidden_layers");
    c.num_heads = r.get_int("num_attention_heads");
    c.num_kv_heads = r.get_int("num_key_value_heads", c.num_heads);
    // head_dim when given (an integer), else 128: transformers' Qwen3Config
    // default, which is NOT hidden_size / num_heads (a missing or null key
    // both mean the default).
    c.head_dim = r.get_int("head_dim", 128);
    c.intermediate_size = r.get_int("intermediate_size");
    c.vocab_size = r.get_int("vocab_size");
    c.max_positions = r.get_int("max_position_embeddings", 32768);
    c.norm_eps = r.get_float("rms_norm_eps", 1e-6f);
    c.tied_embeddings = r.get_bool("tie_word_embeddings", false);  // Qwen3Config default
    // RoPE base and scaling: hub checkpoints write a top-level rope_theta and
    // rope_scaling; transformers >= 5 writes rope_parameters (theta included).
    // Plain RoPE and YaRN are supported.
    c.rope_theta = 10000.f;
    if (r.present("rope_theta")) c.rope_theta = r.get_float(j["rope_theta"], "rope_theta");
    for (const char* key : {"rope_parameters", "rope_scaling"})
      if (r.present(key)) read_rope_object(j[key], key, path, c);
    const std::string act = r.get_string("hidden_act", "silu");
    require(act == "silu", path + ": hidden_act '" + act + "' is not supported (Qwen3 uses silu)");
    require(!r.get_bool("attention_bias", false),
            path + ": attention_bias true is not supported (Qwen3 has no biases)");
    require(!r.get_bool("use_sliding_window", false),
            path + ": use_sliding_window true is not supported");
  } else if (type == "gpt2") {
    c.family = Family::GPT2;
    c.hidden_size = r.get_int("n_embd");
    c.num_layers = r.get_int("n_layer");
    c.num_heads = r.get_int("n_head");
    c.num_kv_heads = c.num_heads;
    c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
    c.intermediate_size = r.get_int("n_inner", 4 * c.hidden_size);
    c.vocab_size = r.get_int("vocab_size");
    c.max_positions = r.get_int("n_positions", r.get_int("n_ctx", 1024));
    c.norm_eps = r.get_float("layer_norm_epsilon", 1e-5f);
    c.tied_embeddings = r.get_bool("tie_word_embeddings", true);
    const std::string act = r.get_string("activation_function", "gelu_new");
    require(act == "gelu_new" || act == "gelu_pytorch_tanh",
            path + ": activation_function '" + act + "' is not supported (gelu_new)");
    require(r.get_bool("scale_attn_weights", true),
            path + ": scale_attn_weights false is not supported");
    require(!r.get_bool("scale_attn_by_inverse_layer_idx", false),
            path + ": scale_attn_by_inverse_layer_idx is not supported");
  } else {
    throw Error(path + ": model_type '" + type + "' is not supported (qwen3, gpt2)");
  }
  c.validate(path);
  return c;
}

void write_hf_config(const std::string& path, const ModelConfig& c, FileDType dtype) {
  c.validate(path);
  nlohmann::ordered_json j;
  if (c.is_qwen3()) {
    j["architectures"] = {"Qwen3ForCausalLM"};
    j["model_type"] = "qwen3";
    j["attention_bias"] = false;
    j["attention_dropout"] = 0.0;
    j["head_dim"] = c.head_dim;
    j["hidden_act"] = "silu";
    j["hidden_size"] = c.hidden_size;
    j["initializer_range"] = 0.02;
    j["intermediate_size"] = c.intermediate_size;
    j["max_position_embeddings"] = c.max_positions;
    j["max_window_layers"] = c.num_layers;
    j["num_attention_heads"] = c.num_heads;
    j["num_hidden_layers"] = c.num_layers;
    j["num_key_value_heads"] = c.num_kv_heads;
    j["rms_norm_eps"] = float_for_json(c.norm_eps);
    // Both spellings: top-level rope_theta / rope_scaling for transformers 4.x,
    // rope_parameters for 5.x. YaRN's attention factor is written resolved.
    j["rope_theta"] = float_for_json(c.rope_theta);
    nlohmann::ordered_json rope = {{"rope_theta", float_for_json(c.rope_theta)},
                                   {"rope_type", c.rope_scaling.type_name()}};
    if (c.rope_scaling.is_yarn()) {
      const RopeScaling& s = c.rope_scaling;
      nlohmann::ordered_json yarn = {
          {"rope_type", "yarn"},
          {"factor", float_for_json(s.factor)},
          {"original_max_position_embeddings", s.original_max_positions},
          {"beta_fast", float_for_json(s.beta_fast)},
          {"beta_slow", float_for_json(s.beta_slow)},
          {"attention_factor", float_for_json(s.attention_factor)},
          {"truncate", s.truncate}};
      for (auto& [name, value] : yarn.items())
        if (name != "rope_type") rope[name] = value;
      j["rope_scaling"] = yarn;
    }
    j["rope_parameters"] = rope;
    j["sliding_window"] = nullptr;
    j["tie_word_embeddings"] = c.tied_embeddings;
    j["use_cache"] = true;
    j["use_sliding_window"] = false;
    j["vocab_size"] = c.vocab_size;
  } else {
    j["architectures"] = {"GPT2LMHeadModel"};
    j["model_type"] = "gpt2";
    j["activation_function"] = "gelu_new";
    j["attn_pdrop"] = 0.0;
    j["embd_pdrop"] = 0.0;
    j["initializer_range"] = 0.02;
    j["layer_norm_epsilon"] = float_for_json(c.norm_eps);
    j["n_ctx"] = c.max_positions;
    j["n_embd"] = c.hidden_size;
    j["n_head"] = c.num_heads;
    if (c.intermediate_size == 4 * c.hidden_size) j["n_inner"] = nullptr;
    else j["n_inner"] = c.intermediate_size;
    j["n_layer"] = c.num_layers;
    j["n_positions"] = c.max_positions;
    j["resid_pdrop"] = 0.0;
    j["scale_attn_by_inverse_layer_idx"] = false;
    j["scale_attn_weights"] = true;
    j["tie_word_embeddings"] = true;
    j["use_cache"] = true;
    j["vocab_size"] = c.vocab_size;
  }
  j["torch_dtype"] = torch_dtype_name(dtype);
  j["dtype"] = torch_dtype_name(dtype);
  const std::string text = j.dump(2) + "\n";
  AtomicFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

// ---------------------------------------------------------------------------
// The name mapping

namespace {

// One HF tensor and where its values live in the flat buffer. Plain: the HF
// tensor's values are split into dst.size() consecutive equal chunks, each
// copied to its destination. Conv1D: the HF tensor is [in, parts * out] and part p
// (columns p*out .. p*out+out-1) is stored transposed, [out, in], at dst[p].
struct Mapping {
  std::string hf_name;
  std::vector<int64_t> hf_shape;
  std::vector<size_t> dst;
  bool conv1d = false;
  int64_t in = 0, out = 0;
};

std::vector<Mapping> build_mappings(const ModelConfig& c, const ParamLayout& L,
                                    const std::string& gpt2_prefix) {
  std::vector<Mapping> m;
  const int64_t C = c.hidden_size, V = c.vocab_size, F = c.intermediate_size;
  const int64_t Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim;
  auto plain = [&](const std::string& name, std::vector<int64_t> shape, std::vector<size_t> dst) {
    Mapping x;
    x.hf_name = name;
    x.hf_shape = std::move(shape);
    x.dst = std::move(dst);
    m.push_back(x);
  };
  auto conv = [&](const std::string& name, int64_t in, int64_t out, std::vector<size_t> dst) {
    Mapping x;
    x.hf_name = name;
    x.hf_shape = {in, out * int64_t(dst.size())};
    x.dst = std::move(dst);
    x.conv1d = true;
    x.in = in;
    x.out = out;
    m.push_back(x);
  };
  if (c.is_qwen3()) {
    plain("model.embed_tokens.weight", {V, C}, {L.embed_tokens});
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      const LayerOffsets& o = L.layers[i];
      plain(p + "input_layernorm.weight", {C}, {o.attn_norm_weight});
      plain(p + "self_attn.q_proj.weight", {Q, C}, {o.q_weight});
      plain(p + "self_attn.k_proj.weight", {KV, C}, {o.k_weight});
      plain(p + "self_attn.v_proj.weight", {KV, C}, {o.v_weight});
      plain(p + "self_attn.q_norm.weight", {D}, {o.q_norm_weight});
      plain(p + "self_attn.k_norm.weight", {D}, {o.k_norm_weight});
      plain(p + "self_attn.o_proj.weight", {C, Q}, {o.o_weight});
      plain(p + "post_attention_layernorm.weight", {C}, {o.mlp_norm_weight});
      plain(p + "mlp.gate_proj.weight", {F, C}, {o.gate_weight});
      plain(p + "mlp.up_proj.weight", {F, C}, {o.up_weight});
      plain(p + "mlp.down_proj.weight", {C, F}, {o.down_weight});
    }
    plain("model.norm.weight", {C}, {L.final_norm_weight});
    if (!c.tied_embeddings) plain("lm_head.weight", {V, C}, {L.lm_head});
  } else {
    const std::string& t = gpt2_prefix;
    plain(t + "wte.weight", {V, C}, {L.embed_tokens});
    plain(t + "wpe.weight", {c.max_positions, C}, {L.embed_positions});
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string p = t + "h." + std::to_string(i) + ".";
      const LayerOffsets& o = L.layers[i];
      plain(p + "ln_1.weight", {C}, {o.attn_norm_weight});
      plain(p + "ln_1.bias", {C}, {o.attn_norm_bias});
      conv(p + "attn.c_attn.weight", C, C, {o.q_weight, o.k_weight, o.v_weight});
      plain(p + "attn.c_attn.bias", {3 * C}, {o.q_bias, o.k_bias, o.v_bias});
      conv(p + "attn.c_proj.weight", C, C, {o.o_weight});
      plain(p + "attn.c_proj.bias", {C}, {o.o_bias});
      plain(p + "ln_2.weight", {C}, {o.mlp_norm_weight});
      plain(p + "ln_2.bias", {C}, {o.mlp_norm_bias});
      conv(p + "mlp.c_fc.weight", C, F, {o.up_weight});
      plain(p + "mlp.c_fc.bias", {F}, {o.up_bias});
      conv(p + "mlp.c_proj.weight", F, C, {o.down_weight});
      plain(p + "mlp.c_proj.bias", {C}, {o.down_bias});
    }
    plain(t + "ln_f.weight", {C}, {L.final_norm_weight});
    plain(t + "ln_f.bias", {C}, {L.final_norm_bias});
  }
  return m;
}

size_t numel_of(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  return n;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Buffers some checkpoints carry that are not parameters.
bool ignorable(const std::string& name) {
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") ||
         ends_with(name, "rotary_emb.inv_freq");
}

}  // namespace

std::vector<float> hf_named_tensors_to_flat(const ModelConfig& config, const HfTensors& tensors) {
  const ParamLayout layout = build_param_layout(config);
  const std::string prefix =
      config.is_gpt2() && tensors.has("transformer.wte.weight") ? "transformer." : "";
  const std::vector<Mapping> maps = build_mappings(config, layout, prefix);
  // Every tensor the config needs must be there with its shape before the
  // flat buffer is allocated: the files' sizes, checked against their headers,
  // then bound what a config.json with absurd sizes can make us allocate.
  for (const Mapping& m : maps) {
    const SafetensorsEntry& e = tensors.entry(m.hf_name);
    if (e.shape != m.hf_shape)
      throw Error(tensors.file_of(m.hf_name) + ": tensor " + m.hf_name + " has shape " +
                  shape_string(e.shape) + ", the config (" + config.describe() + ") needs " +
                  shape_string(m.hf_shape));
  }
  std::vector<float> flat(layout.total);
  std::vector<float> tmp;
  std::set<std::string> used;
  for (const Mapping& m : maps) {
    const SafetensorsEntry& e = tensors.entry(m.hf_name);
    used.insert(m.hf_name);
    if (!m.conv1d && m.dst.size() == 1) {
      tensors.read_f32(m.hf_name, flat.data() + m.dst[0]);
      continue;
    }
    tmp.resize(e.numel);
    tensors.read_f32(m.hf_name, tmp.data());
    const size_t parts = m.dst.size();
    if (!m.conv1d) {
      const size_t chunk = e.numel / parts;
      for (size_t p = 0; p < parts; ++p)
        std::copy(tmp.begin() + p * chunk, tmp.begin() + (p + 1) * chunk, flat.begin() + m.dst[p]);
      continue;
    }
    const size_t in = size_t(m.in), out = size_t(m.out), row = parts * out;
    for (size_t p = 0; p < parts; ++p) {
      float* dst = flat.data() + m.dst[p];
      for (size_t o = 0; o < out; ++o)
        for (size_t i = 0; i < in; ++i) dst[o * in + i] = tmp[i * row + p * out + o];
    }
  }
  for (const std::string& name : tensors.names()) {
    if (used.count(name) || ignorable(name)) continue;
    if (name == "lm_head.weight" && config.tied_embeddings) {
      // A tied checkpoint may still store the head: it must be the embedding.
      const SafetensorsEntry& e = tensors.entry(name);
      const std::vector<int64_t> want = {config.vocab_size, config.hidden_size};
      require(e.shape == want, tensors.file_of(name) + ": tensor lm_head.weight has shape " +
                                   shape_string(e.shape) + ", expected " + shape_string(want));
      std::vector<float> head = tensors.read_f32(name);
      require(std::equal(head.begin(), head.end(), flat.begin() + layout.embed_tokens,
                         [](float a, float b) { return a == b || (a != a && b != b); }),
              tensors.file_of(name) +
                  ": tensor lm_head.weight differs from the token embedding but the config "
                  "ties them (tie_word_embeddings)");
      continue;
    }
    throw Error(tensors.file_of(name) + ": unexpected tensor " + name + " (not part of a " +
                config.describe() + " model)");
  }
  return flat;
}

std::vector<float> hf_named_tensors_to_flat(const ModelConfig& config,
                                            const SafetensorsFile& file) {
  return hf_named_tensors_to_flat(config, HfTensors(file));
}

std::vector<HfTensor> flat_to_hf_named_tensors(const ModelConfig& config,
                                               const std::vector<float>& params) {
  const ParamLayout layout = build_param_layout(config);
  require(params.size() == layout.total,
          "flat_to_hf_named_tensors: got " + std::to_string(params.size()) +
              " parameters, the config's layout has " + std::to_string(layout.total));
  std::vector<HfTensor> out;
  for (const Mapping& m : build_mappings(config, layout, "transformer.")) {
    HfTensor t;
    t.name = m.hf_name;
    t.shape = m.hf_shape;
    const size_t parts = m.dst.size(), numel = numel_of(m.hf_shape);
    if (!m.conv1d && parts == 1) {
      t.external = params.data() + m.dst[0];
    } else if (!m.conv1d) {
      const size_t chunk = numel / parts;
      t.owned.resize(numel);
      for (size_t p = 0; p < parts; ++p)
        std::copy(params.begin() + m.dst[p], params.begin() + m.dst[p] + chunk,
                  t.owned.begin() + p * chunk);
    } else {
      const size_t in = size_t(m.in), o_n = size_t(m.out), row = parts * o_n;
      t.owned.resize(numel);
      for (size_t p = 0; p < parts; ++p) {
        const float* src = params.data() + m.dst[p];
        for (size_t o = 0; o < o_n; ++o)
          for (size_t i = 0; i < in; ++i) t.owned[i * row + p * o_n + o] = src[o * in + i];
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Directories

LoadedModel read_hf_dir(const std::string& dir) {
  if (!is_dir(dir)) {
    struct stat st;
    throw Error(dir + (::stat(dir.c_str(), &st) == 0 ? ": not a directory (expected a Hugging Face model directory)"
                                                      : ": no such directory"));
  }
  LoadedModel m;
  m.config = read_hf_config(join(dir, "config.json"));
  m.params = hf_named_tensors_to_flat(m.config, HfTensors::from_dir(dir));
  require_finite_params(build_param_layout(m.config), m.params, dir);
  return m;
}

void write_hf_dir(const std::string& dir, const ModelConfig& config,
                  const std::vector<float>& params, FileDType dtype) {
  require(dtype == FileDType::F32 || dtype == FileDType::BF16 || dtype == FileDType::F16,
          dir + ": can only write F32, BF16 or F16 weights");
  config.validate(dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  require(!ec && is_dir(dir), dir + ": cannot create directory: " + ec.message());
  // A sharded checkpoint already there would sit beside the new single file
  // and a loader might read either: refuse rather than leave two models.
  require(!is_file(join(dir, "model.safetensors.index.json")),
          dir + ": holds a sharded checkpoint (model.safetensors.index.json); export into an "
                "empty directory");
  std::vector<HfTensor> tensors = flat_to_hf_named_tensors(config, params);
  std::vector<SafetensorsTensor> st;
  for (const HfTensor& t : tensors) st.push_back({t.name, t.shape, t.data(), dtype});
  write_safetensors(join(dir, "model.safetensors"), st, {{"format", "pt"}});
  write_hf_config(join(dir, "config.json"), config, dtype);
}

}  // namespace polaris
