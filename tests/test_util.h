// Helpers shared by the GoogleTest files (header-only; tests/*.cpp include it).
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"
#include "model/transformer.h"
#include "src/common/error.h"

namespace polaris {

// The message of the polaris::Error that `body` throws ("" when it throws none;
// any other exception propagates and fails the test).
template <typename F>
std::string error_of(F body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// EXPECT_ERROR(statement, "part", ...): `statement` throws an Error whose message
// is one line and contains every part.
#define EXPECT_ERROR(body, ...)                                                            \
  do {                                                                                     \
    const std::string msg_ = ::polaris::error_of([&] { body; });                           \
    const std::string shown_ = msg_.empty() ? std::string("<no error>") : msg_;            \
    EXPECT_EQ(msg_.find('\n'), std::string::npos) << "not one line: " << shown_;           \
    for (const std::string& part_ : std::vector<std::string>{__VA_ARGS__})                 \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "'" << part_ << "' not in: " << shown_; \
  } while (0)

// A fresh directory /tmp/<prefix>_XXXXXX, removed with everything in it when the
// object goes away. `dir / "name"` is the path of a file inside it.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix = "polaris") {
    std::string tmpl = "/tmp/" + prefix + "_XXXXXX";
    if (!mkdtemp(&tmpl[0])) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// The entries of tensor t that a finite-difference check perturbs: the one
// with the largest |gradient| (its value goes to *max_grad), then `random`
// uniform picks drawn from rng.
inline std::vector<size_t> gradient_check_picks(const std::vector<float>& grads,
                                                const TensorInfo& t, int random,
                                                std::mt19937_64& rng, double* max_grad) {
  *max_grad = 0;
  size_t argmax = t.offset;
  for (size_t i = t.offset; i < t.offset + t.numel; ++i)
    if (std::fabs(grads[i]) > *max_grad) *max_grad = std::fabs(grads[i]), argmax = i;
  std::vector<size_t> picks = {argmax};
  std::uniform_int_distribution<size_t> pick(t.offset, t.offset + t.numel - 1);
  for (int k = 0; k < random; ++k) picks.push_back(pick(rng));
  return picks;
}

// A tiny Qwen3 shape (RoPE base 1e4, max_positions 32): the qwen3-tiny
// preset's family settings with the sizes given.
inline ModelConfig qwen3_config(int vocab, int hidden, int layers, int heads, int kv_heads,
                                int head_dim, int mlp, bool tied) {
  ModelConfig c = config_from_preset("qwen3-tiny");
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.intermediate_size = mlp;
  c.max_positions = 32;
  c.rope_theta = 10000.f;
  c.tied_embeddings = tied;
  return c;
}

// A tiny GPT-2 shape: the gpt2-tiny preset's family settings (LayerNorm
// eps 1e-5, biases, tied head) with the sizes given.
inline ModelConfig gpt2_config(int vocab, int hidden, int layers, int heads, int max_positions = 32) {
  ModelConfig c = config_from_preset("gpt2-tiny");
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = heads;
  c.head_dim = hidden / heads;
  c.intermediate_size = 4 * hidden;
  c.max_positions = max_positions;
  return c;
}

// Random parameters for `model` large enough that every path carries signal
// (GPT-2's N(0, 0.02) init makes attention nearly uniform and logits nearly
// flat): norm weights 1 + 0.2 N, biases 0.2 N, embeddings 0.8 N, matrices
// 1.2 N / sqrt(fan_in). One normal draw per element, in layout order.
inline std::vector<float> random_params(const Transformer& model, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> p(model.num_params());
  for (const TensorInfo& t : model.layout().tensors) {
    const bool norm = t.name.find("norm") != std::string::npos && t.shape.size() == 1 &&
                      t.name.find("bias") == std::string::npos;
    const bool bias = t.name.find("bias") != std::string::npos;
    // matrices: ~1/sqrt(fan_in) so activations stay O(1)
    const float fan_in = t.shape.size() == 2 ? float(t.shape[1]) : 1.f;
    for (size_t i = t.offset; i < t.offset + t.numel; ++i) {
      if (norm)
        p[i] = 1.f + 0.2f * normal(rng);
      else if (bias)
        p[i] = 0.2f * normal(rng);
      else if (t.name.find("embed") != std::string::npos)
        p[i] = 0.8f * normal(rng);
      else
        p[i] = 1.2f * normal(rng) / std::sqrt(fan_in);
    }
  }
  return p;
}

}  // namespace polaris
