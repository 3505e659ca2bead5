#include "model/transformer.h"

#include <algorithm>
#include <cmath>

#include "src/common/error.h"

namespace polaris {

// ---------------------------------------------------------------------------
// Batch

Batch Batch::from_token_rows(const std::vector<int32_t>& tokens, int B, int T) {
  require(tokens.size() == size_t(B) * T, "batch: expected B*T tokens");
  Batch batch;
  batch.B = B;
  batch.T = T;
  batch.tokens = tokens;
  batch.targets.assign(tokens.size(), -1);
  batch.weights.assign(tokens.size(), 0.f);
  batch.positions.resize(tokens.size());
  batch.doc_ids.assign(tokens.size(), 0);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      size_t i = size_t(b) * T + t;
      batch.positions[i] = t;
      if (t + 1 < T) {
        batch.targets[i] = tokens[i + 1];
        batch.weights[i] = 1.f;
      }
    }
  return batch;
}

void Batch::validate(int vocab_size, int max_positions) const {
  const size_t N = size_t(B) * T;
  require(B > 0 && T > 0, "batch: B and T must be positive");
  require(tokens.size() == N && targets.size() == N && positions.size() == N &&
              weights.size() == N && (doc_ids.empty() || doc_ids.size() == N) &&
              (entropy_weights.empty() || entropy_weights.size() == N),
          "batch: every per-token array must hold B*T entries");
  for (size_t i = 0; i < N; ++i) {
    require(tokens[i] >= 0 && tokens[i] < vocab_size,
            "batch: token id " + std::to_string(tokens[i]) + " is outside the vocabulary of " +
                std::to_string(vocab_size));
    require(targets[i] < vocab_size, "batch: target id " + std::to_string(targets[i]) +
                                         " is outside the vocabulary");
    require(positions[i] >= 0 && positions[i] < max_positions,
            "batch: position " + std::to_string(positions[i]) + " is beyond the model's " +
                std::to_string(max_positions) + " positions");
  }
}

// ---------------------------------------------------------------------------
// Activation storage: everything the backward pass reads, per layer, plus
// scratch gradient buffers shared by all layers.

struct Transformer::Activations {
  Ops* ops;             // nullptr: only count the bytes (activation_bytes)
  std::vector<void*> owned;
  size_t capacity = 0;  // tokens
  size_t bytes = 0;     // allocated so far

  struct Layer {
    float *input, *norm1, *norm1_mean, *norm1_rstd;
    float *q, *k, *v;                          // projections
    float *q_normed, *k_normed, *q_rstd, *k_rstd;  // Qwen3 q/k RMSNorm
    float *q_rotated, *k_rotated;              // after RoPE (Qwen3)
    float *attention, *lse;
    float *middle;                             // residual after attention
    float *norm2, *norm2_mean, *norm2_rstd;
    float *gate, *up, *activation;             // MLP (gate: Qwen3 only)
  };
  std::vector<Layer> layers;
  float *output;                               // residual after the last layer
  float *final_norm, *final_mean, *final_rstd;
  float *branch;                               // o-projection / MLP-down output
  float *logits;                               // [logit_rows, V]
  int logit_rows = 0;
  // inputs
  int32_t *tokens, *targets, *positions, *doc_ids;
  float *weights, *entropy_weights, *losses, *logprobs, *entropies;
  // gradient scratch
  float *d_residual, *d_norm, *d_attention, *d_q, *d_k, *d_v, *d_q2, *d_k2;
  float *d_gate, *d_up, *d_activation, *d_final;

  explicit Activations(Ops* o) : ops(o) {}
  ~Activations() {
    for (void* p : owned) ops->release(p);
  }
  float* f(size_t n) {
    n = std::max<size_t>(n, 1);
    bytes += n * sizeof(float);
    if (!ops) return nullptr;
    float* p = ops->alloc(n);
    owned.push_back(p);
    return p;
  }
  int32_t* i(size_t n) {
    n = std::max<size_t>(n, 1);
    bytes += n * sizeof(int32_t);
    if (!ops) return nullptr;
    int32_t* p = ops->alloc_int(n);
    owned.push_back(p);
    return p;
  }

  // stored_layers: how many layers keep their own activations (all for
  // training; 1 for decoding, where layers reuse one set).
  void allocate(const ModelConfig& c, size_t N, int stored_layers, bool with_gradients) {
    capacity = N;
    const size_t C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), F = c.intermediate_size;
    const bool qwen = c.is_qwen3();
    layers.resize(stored_layers);
    for (Layer& l : layers) {
      l.input = f(N * C);
      l.norm1 = f(N * C);
      l.norm1_mean = f(N);
      l.norm1_rstd = f(N);
      l.q = f(N * Q);
      l.k = f(N * KV);
      l.v = f(N * KV);
      l.q_normed = qwen ? f(N * Q) : nullptr;
      l.k_normed = qwen ? f(N * KV) : nullptr;
      l.q_rstd = qwen ? f(N * c.num_heads) : nullptr;
      l.k_rstd = qwen ? f(N * c.num_kv_heads) : nullptr;
      l.q_rotated = qwen ? f(N * Q) : nullptr;
      l.k_rotated = qwen ? f(N * KV) : nullptr;
      l.attention = f(N * Q);
      l.lse = f(N * c.num_heads);
      l.middle = f(N * C);
      l.norm2 = f(N * C);
      l.norm2_mean = f(N);
      l.norm2_rstd = f(N);
      l.gate = qwen ? f(N * F) : nullptr;
      l.up = f(N * F);
      l.activation = f(N * F);
    }
    output = f(N * C);
    final_norm = f(N * C);
    final_mean = f(N);
    final_rstd = f(N);
    branch = f(N * C);
    // The LM head runs over row chunks so [N, V] logits never exist at once
    // (Qwen3's V = 151,936 would need 1.2 GB for 2,048 tokens). A 2^25-float
    // (128 MB) budget: 220 rows for Qwen3, so the per-chunk cost of reading
    // the [V, C] head weight is spread over enough rows.
    logit_rows = int(std::min<size_t>(N, std::max<size_t>(1, (size_t(1) << 25) / c.vocab_size)));
    logits = f(size_t(logit_rows) * c.vocab_size);
    tokens = i(N);
    targets = i(N);
    positions = i(N);
    doc_ids = i(N);
    weights = f(N);
    entropy_weights = f(N);
    losses = f(N);
    logprobs = f(N);
    entropies = f(N);
    if (!with_gradients) return;
    d_residual = f(N * C);
    d_norm = f(N * C);
    d_attention = f(N * Q);
    d_q = f(N * Q);
    d_k = f(N * KV);
    d_v = f(N * KV);
    d_q2 = f(N * Q);
    d_k2 = f(N * KV);
    d_gate = f(N * F);
    d_up = f(N * F);
    d_activation = f(N * F);
    d_final = f(N * C);
  }
};

// ---------------------------------------------------------------------------

Transformer::Transformer(const ModelConfig& config, Ops& ops)
    : config_(config), layout_(build_param_layout(config)), ops_(ops) {
  config_.validate("model config");
  params_ = ops_.alloc(layout_.total);
  grads_ = ops_.alloc(layout_.total);
}

Transformer::~Transformer() {
  acts_.reset();
  decode_acts_.reset();
  for (float* p : key_cache_) ops_.release(p);
  for (float* p : value_cache_) ops_.release(p);
  ops_.release(params_);
  ops_.release(grads_);
}

void Transformer::set_params(const std::vector<float>& host) {
  require(host.size() == layout_.total, "parameters: expected " + std::to_string(layout_.total) +
                                            " values, got " + std::to_string(host.size()));
  ops_.upload(params_, host.data(), host.size());
}

std::vector<float> Transformer::get_params() const {
  std::vector<float> host(layout_.total);
  ops_.download(host.data(), params_, host.size());
  return host;
}

std::vector<float> Transformer::get_grads() const {
  std::vector<float> host(layout_.total);
  ops_.download(host.data(), grads_, host.size());
  return host;
}

void Transformer::zero_grads() { ops_.zero(grads_, layout_.total); }

size_t Transformer::activation_bytes(const ModelConfig& config, size_t tokens) {
  Activations counter(nullptr);
  counter.allocate(config, tokens, config.num_layers, /*with_gradients=*/true);
  return counter.bytes;
}

void Transformer::ensure_activations(int B, int T) {
  size_t N = size_t(B) * T;
  if (acts_ && acts_->capacity >= N) return;
  acts_.reset();
  acts_.reset(new Activations(&ops_));
  acts_->allocate(config_, N, config_.num_layers, /*with_gradients=*/true);
}

LossOutputs Transformer::forward(const Batch& batch) { return run(batch, false, 1.f, nullptr); }

LossOutputs Transformer::forward_backward(const Batch& batch, float loss_scale) {
  return run(batch, true, loss_scale, nullptr);
}

std::vector<float> Transformer::forward_logits(const Batch& batch) {
  std::vector<float> logits(size_t(batch.B) * batch.T * config_.vocab_size);
  run(batch, false, 1.f, logits.data());
  return logits;
}

// ---------------------------------------------------------------------------
// Forward pieces shared by training (run) and decoding (decode_step).

void Transformer::norm_forward(float* out, float* mean, float* rstd, const float* in,
                               size_t weight, size_t bias, int N) {
  if (config_.is_qwen3())
    ops_.rmsnorm_forward(out, rstd, in, param(weight), N, config_.hidden_size, config_.norm_eps);
  else
    ops_.layernorm_forward(out, mean, rstd, in, param(weight), param(bias), N,
                           config_.hidden_size, config_.norm_eps);
}

void Transformer::norm_backward(float* din, const float* dout, const float* in, const float* mean,
                                const float* rstd, size_t weight, size_t bias, int N) {
  if (config_.is_qwen3())
    ops_.rmsnorm_backward(din, grad(weight), dout, in, param(weight), rstd, N,
                          config_.hidden_size);
  else
    ops_.layernorm_backward(din, grad(weight), grad(bias), dout, in, param(weight), mean, rstd, N,
                            config_.hidden_size);
}

void Transformer::qkv_forward(Activations& a, int slot, const LayerOffsets& w,
                              const int32_t* positions, int N, const float** q_out,
                              const float** k_out) {
  const ModelConfig& c = config_;
  Activations::Layer& l = a.layers[slot];
  const int C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim;
  ops_.matmul_forward(l.q, l.norm1, param(w.q_weight), param(w.q_bias), N, C, Q);
  ops_.matmul_forward(l.k, l.norm1, param(w.k_weight), param(w.k_bias), N, C, KV);
  ops_.matmul_forward(l.v, l.norm1, param(w.v_weight), param(w.v_bias), N, C, KV);
  *q_out = l.q;
  *k_out = l.k;
  if (!c.is_qwen3()) return;
  ops_.rmsnorm_forward(l.q_normed, l.q_rstd, l.q, param(w.q_norm_weight), N * c.num_heads, D,
                       c.norm_eps);
  ops_.rmsnorm_forward(l.k_normed, l.k_rstd, l.k, param(w.k_norm_weight), N * c.num_kv_heads, D,
                       c.norm_eps);
  ops_.rope_forward(l.q_rotated, l.q_normed, positions, N, c.num_heads, D, c.rope_theta);
  ops_.rope_forward(l.k_rotated, l.k_normed, positions, N, c.num_kv_heads, D, c.rope_theta);
  *q_out = l.q_rotated;
  *k_out = l.k_rotated;
}

void Transformer::mlp_forward(Activations& a, int slot, const LayerOffsets& w, float* out,
                              int N) {
  const int C = config_.hidden_size, F = config_.intermediate_size;
  Activations::Layer& l = a.layers[slot];
  if (config_.is_qwen3()) {
    ops_.matmul_forward(l.gate, l.norm2, param(w.gate_weight), nullptr, N, C, F);
    ops_.matmul_forward(l.up, l.norm2, param(w.up_weight), nullptr, N, C, F);
    ops_.swiglu_forward(l.activation, l.gate, l.up, size_t(N) * F);
  } else {
    ops_.matmul_forward(l.up, l.norm2, param(w.up_weight), param(w.up_bias), N, C, F);
    ops_.gelu_forward(l.activation, l.up, size_t(N) * F);
  }
  ops_.matmul_forward(out, l.activation, param(w.down_weight), param(w.down_bias), N, F, C);
}

void Transformer::final_norm_forward(Activations& a, const float* x, int N) {
  norm_forward(a.final_norm, a.final_mean, a.final_rstd, x, layout_.final_norm_weight,
               layout_.final_norm_bias, N);
}

// ---------------------------------------------------------------------------
// The forward and backward pass. `param(offset)` is a parameter, `grad(offset)` its
// gradient, null when the family has no such tensor.

LossOutputs Transformer::run(const Batch& batch, bool backward, float loss_scale,
                             float* logits_out) {
  batch.validate(config_.vocab_size, config_.max_positions);
  ensure_activations(batch.B, batch.T);
  Activations& a = *acts_;
  const ModelConfig& c = config_;
  const int B = batch.B, T = batch.T, N = B * T;
  const int C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), F = c.intermediate_size;
  const int V = c.vocab_size, D = c.head_dim;
  const bool qwen = c.is_qwen3();
  AttentionShape shape{B, T, c.num_heads, c.num_kv_heads, D};

  ops_.upload_int(a.tokens, batch.tokens.data(), N);
  ops_.upload_int(a.targets, batch.targets.data(), N);
  ops_.upload_int(a.positions, batch.positions.data(), N);
  const int32_t* doc_ids = nullptr;
  if (!batch.doc_ids.empty()) {
    ops_.upload_int(a.doc_ids, batch.doc_ids.data(), N);
    doc_ids = a.doc_ids;
  }
  ops_.upload(a.weights, batch.weights.data(), N);
  const float* entropy_weights = nullptr;
  if (!batch.entropy_weights.empty()) {
    ops_.upload(a.entropy_weights, batch.entropy_weights.data(), N);
    entropy_weights = a.entropy_weights;
  }

  // ---- forward ----
  ops_.embedding_forward(a.layers[0].input, a.tokens, a.positions, param(layout_.embed_tokens),
                         param(layout_.embed_positions), N, C);
  for (int li = 0; li < c.num_layers; ++li) {
    const LayerOffsets& w = layout_.layers[li];
    Activations::Layer& l = a.layers[li];
    norm_forward(l.norm1, l.norm1_mean, l.norm1_rstd, l.input, w.attn_norm_weight,
                 w.attn_norm_bias, N);
    const float *q_in, *k_in;
    qkv_forward(a, li, w, a.positions, N, &q_in, &k_in);
    ops_.attention_forward(l.attention, l.lse, q_in, k_in, l.v, doc_ids, shape);
    ops_.matmul_forward(a.branch, l.attention, param(w.o_weight), param(w.o_bias), N, Q, C);
    ops_.add(l.middle, l.input, a.branch, size_t(N) * C);
    norm_forward(l.norm2, l.norm2_mean, l.norm2_rstd, l.middle, w.mlp_norm_weight,
                 w.mlp_norm_bias, N);
    mlp_forward(a, li, w, a.branch, N);
    float* next = li + 1 < c.num_layers ? a.layers[li + 1].input : a.output;
    ops_.add(next, l.middle, a.branch, size_t(N) * C);
  }
  final_norm_forward(a, a.output, N);

  // ---- LM head and loss, chunk by chunk; in training each chunk's logits
  // are turned into their gradient in place and pushed through the head.
  if (backward) ops_.zero(a.d_final, size_t(N) * C);
  for (int start = 0; start < N; start += a.logit_rows) {
    const int rows = std::min(a.logit_rows, N - start);
    const float* x = a.final_norm + size_t(start) * C;
    ops_.matmul_forward(a.logits, x, param(layout_.lm_head), nullptr, rows, C, V);
    if (logits_out) ops_.download(logits_out + size_t(start) * V, a.logits, size_t(rows) * V);
    LossArgs loss;
    loss.logits = a.logits;
    loss.targets = a.targets + start;
    loss.weights = a.weights + start;
    loss.entropy_weights = entropy_weights ? entropy_weights + start : nullptr;
    loss.scale = loss_scale;
    loss.N = rows;
    loss.V = V;
    loss.losses = a.losses + start;
    loss.logprobs = a.logprobs + start;
    loss.entropies = a.entropies + start;
    loss.dlogits = backward ? a.logits : nullptr;
    ops_.cross_entropy(loss);
    if (backward) {
      ops_.matmul_backward(a.d_final + size_t(start) * C, grad(layout_.lm_head), nullptr, a.logits,
                           x, param(layout_.lm_head), rows, C, V);
    }
  }

  LossOutputs out;
  std::vector<float> losses(N);
  out.logprobs.resize(N);
  out.entropies.resize(N);
  ops_.download(losses.data(), a.losses, N);
  ops_.download(out.logprobs.data(), a.logprobs, N);
  ops_.download(out.entropies.data(), a.entropies, N);
  for (int i = 0; i < N; ++i) {
    if (batch.targets[i] < 0) continue;
    out.loss_sum += losses[i];
    out.weight_sum += batch.weights[i];
  }
  if (!backward) return out;

  // ---- backward ----
  float* dx = a.d_residual;  // gradient of the residual stream, walking down
  ops_.zero(dx, size_t(N) * C);
  norm_backward(dx, a.d_final, a.output, a.final_mean, a.final_rstd, layout_.final_norm_weight,
                layout_.final_norm_bias, N);
  for (int li = c.num_layers - 1; li >= 0; --li) {
    const LayerOffsets& w = layout_.layers[li];
    Activations::Layer& l = a.layers[li];
    // MLP branch: dx is the gradient of the layer output = of its MLP branch.
    ops_.zero(a.d_activation, size_t(N) * F);
    ops_.matmul_backward(a.d_activation, grad(w.down_weight), grad(w.down_bias), dx, l.activation,
                         param(w.down_weight), N, F, C);
    ops_.zero(a.d_up, size_t(N) * F);
    ops_.zero(a.d_norm, size_t(N) * C);
    if (qwen) {
      ops_.zero(a.d_gate, size_t(N) * F);
      ops_.swiglu_backward(a.d_gate, a.d_up, a.d_activation, l.gate, l.up, size_t(N) * F);
      ops_.matmul_backward(a.d_norm, grad(w.gate_weight), nullptr, a.d_gate, l.norm2,
                           param(w.gate_weight), N, C, F);
      ops_.matmul_backward(a.d_norm, grad(w.up_weight), nullptr, a.d_up, l.norm2, param(w.up_weight),
                           N, C, F);
    } else {
      ops_.gelu_backward(a.d_up, a.d_activation, l.up, size_t(N) * F);
      ops_.matmul_backward(a.d_norm, grad(w.up_weight), grad(w.up_bias), a.d_up, l.norm2,
                           param(w.up_weight), N, C, F);
    }
    norm_backward(dx, a.d_norm, l.middle, l.norm2_mean, l.norm2_rstd, w.mlp_norm_weight,
                  w.mlp_norm_bias, N);
    // Attention branch: dx is now the gradient of the middle residual.
    ops_.zero(a.d_attention, size_t(N) * Q);
    ops_.matmul_backward(a.d_attention, grad(w.o_weight), grad(w.o_bias), dx, l.attention,
                         param(w.o_weight), N, Q, C);
    ops_.zero(a.d_q, size_t(N) * Q);
    ops_.zero(a.d_k, size_t(N) * KV);
    ops_.zero(a.d_v, size_t(N) * KV);
    const float* q_in = qwen ? l.q_rotated : l.q;
    const float* k_in = qwen ? l.k_rotated : l.k;
    ops_.attention_backward(a.d_q, a.d_k, a.d_v, a.d_attention, q_in, k_in, l.v, l.attention,
                            l.lse, doc_ids, shape);
    float* d_q_projection = a.d_q;
    float* d_k_projection = a.d_k;
    if (qwen) {
      // d_q2/d_k2: gradient after undoing RoPE; then through the q/k norms
      // back into d_q/d_k, which now hold the projections' gradients.
      ops_.zero(a.d_q2, size_t(N) * Q);
      ops_.zero(a.d_k2, size_t(N) * KV);
      ops_.rope_backward(a.d_q2, a.d_q, a.positions, N, c.num_heads, D, c.rope_theta);
      ops_.rope_backward(a.d_k2, a.d_k, a.positions, N, c.num_kv_heads, D, c.rope_theta);
      ops_.zero(a.d_q, size_t(N) * Q);
      ops_.zero(a.d_k, size_t(N) * KV);
      ops_.rmsnorm_backward(a.d_q, grad(w.q_norm_weight), a.d_q2, l.q, param(w.q_norm_weight), l.q_rstd,
                            N * c.num_heads, D);
      ops_.rmsnorm_backward(a.d_k, grad(w.k_norm_weight), a.d_k2, l.k, param(w.k_norm_weight), l.k_rstd,
                            N * c.num_kv_heads, D);
    }
    ops_.zero(a.d_norm, size_t(N) * C);
    ops_.matmul_backward(a.d_norm, grad(w.q_weight), grad(w.q_bias), d_q_projection, l.norm1,
                         param(w.q_weight), N, C, Q);
    ops_.matmul_backward(a.d_norm, grad(w.k_weight), grad(w.k_bias), d_k_projection, l.norm1,
                         param(w.k_weight), N, C, KV);
    ops_.matmul_backward(a.d_norm, grad(w.v_weight), grad(w.v_bias), a.d_v, l.norm1, param(w.v_weight), N,
                         C, KV);
    norm_backward(dx, a.d_norm, l.input, l.norm1_mean, l.norm1_rstd, w.attn_norm_weight,
                  w.attn_norm_bias, N);
  }
  ops_.embedding_backward(grad(layout_.embed_tokens), grad(layout_.embed_positions), dx, a.tokens,
                          a.positions, N, C);
  return out;
}

// ---------------------------------------------------------------------------
// KV-cache decoding: the same layer math for one token per sequence, with
// keys and values appended to the cache instead of recomputed.

void Transformer::reserve_kv_cache(int slots, int max_len) {
  require(slots > 0 && max_len > 0, "kv cache: slots and max_len must be positive");
  require(max_len <= config_.max_positions,
          "kv cache: max length " + std::to_string(max_len) + " is beyond the model's " +
              std::to_string(config_.max_positions) + " positions");
  if (slots == cache_slots_ && max_len == cache_max_len_) return;
  for (float* p : key_cache_) ops_.release(p);
  for (float* p : value_cache_) ops_.release(p);
  key_cache_.clear();
  value_cache_.clear();
  const size_t size = size_t(slots) * max_len * config_.kv_dim();
  for (int l = 0; l < config_.num_layers; ++l) {
    key_cache_.push_back(ops_.alloc(size));
    value_cache_.push_back(ops_.alloc(size));
  }
  cache_slots_ = slots;
  cache_max_len_ = max_len;
}

std::vector<float> Transformer::decode_step(const std::vector<int32_t>& tokens,
                                            const std::vector<int32_t>& positions,
                                            const std::vector<int32_t>& slots) {
  const int S = int(tokens.size());
  require(S > 0 && positions.size() == tokens.size() && slots.size() == tokens.size(),
          "decode_step: tokens, positions and slots must have one entry per sequence");
  require(cache_slots_ > 0, "decode_step: reserve_kv_cache first");
  const ModelConfig& c = config_;
  const int C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim();
  const int V = c.vocab_size, D = c.head_dim, M = cache_max_len_;
  std::vector<int32_t> cache_rows(S), lengths(S);
  for (int s = 0; s < S; ++s) {
    require(tokens[s] >= 0 && tokens[s] < V, "decode_step: token id out of vocabulary");
    require(slots[s] >= 0 && slots[s] < cache_slots_, "decode_step: cache slot out of range");
    require(positions[s] >= 0 && positions[s] < M, "decode_step: position " +
                                                       std::to_string(positions[s]) +
                                                       " is beyond the cache length");
    cache_rows[s] = slots[s] * M + positions[s];
    lengths[s] = positions[s] + 1;
  }
  // Decoding reuses one layer's worth of storage (nothing is kept for a backward).
  if (!decode_acts_ || decode_acts_->capacity < size_t(S)) {
    decode_acts_.reset();
    decode_acts_.reset(new Activations(&ops_));
    decode_acts_->allocate(c, S, 1, /*with_gradients=*/false);
  }
  Activations& a = *decode_acts_;
  Activations::Layer& l = a.layers[0];
  int32_t* rows_d = a.targets;  // reuse an int buffer of size S for the cache rows
  int32_t* lengths_d = a.doc_ids;
  ops_.upload_int(a.tokens, tokens.data(), S);
  ops_.upload_int(a.positions, positions.data(), S);
  ops_.upload_int(rows_d, cache_rows.data(), S);
  ops_.upload_int(lengths_d, lengths.data(), S);

  float* x = a.output;
  ops_.embedding_forward(x, a.tokens, a.positions, param(layout_.embed_tokens),
                         param(layout_.embed_positions), S, C);
  for (int li = 0; li < c.num_layers; ++li) {
    const LayerOffsets& w = layout_.layers[li];
    norm_forward(l.norm1, l.norm1_mean, l.norm1_rstd, x, w.attn_norm_weight, w.attn_norm_bias,
                 S);
    const float *q_in, *k_in;
    qkv_forward(a, 0, w, a.positions, S, &q_in, &k_in);
    ops_.scatter_rows(key_cache_[li], k_in, rows_d, S, KV);
    ops_.scatter_rows(value_cache_[li], l.v, rows_d, S, KV);
    // attention_decode reads a run of consecutive slots; a sequence's slot
    // can be anywhere, so each sequence is its own run of one.
    for (int s = 0; s < S; ++s) {
      const size_t slot_offset = size_t(slots[s]) * M * KV;
      ops_.attention_decode(l.attention + size_t(s) * Q, q_in + size_t(s) * Q,
                            key_cache_[li] + slot_offset, value_cache_[li] + slot_offset,
                            lengths_d + s, 1, M, c.num_heads, c.num_kv_heads, D);
    }
    ops_.matmul_forward(a.branch, l.attention, param(w.o_weight), param(w.o_bias), S, Q, C);
    ops_.add(x, x, a.branch, size_t(S) * C);
    norm_forward(l.norm2, l.norm2_mean, l.norm2_rstd, x, w.mlp_norm_weight, w.mlp_norm_bias, S);
    mlp_forward(a, 0, w, a.branch, S);
    ops_.add(x, x, a.branch, size_t(S) * C);
  }
  final_norm_forward(a, x, S);
  std::vector<float> logits(size_t(S) * V);
  for (int start = 0; start < S; start += a.logit_rows) {
    const int rows = std::min(a.logit_rows, S - start);
    ops_.matmul_forward(a.logits, a.final_norm + size_t(start) * C, param(layout_.lm_head), nullptr,
                        rows, C, V);
    ops_.download(logits.data() + size_t(start) * V, a.logits, size_t(rows) * V);
  }
  return logits;
}

}  // namespace polaris
