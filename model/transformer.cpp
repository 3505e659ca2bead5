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
// scratch gradient buffers shared by all layers. Tensors in the backend's
// activation dtype are Bufs; per-row statistics are fp32.

Recompute parse_recompute(const std::string& name) {
  if (name == "none") return Recompute::none;
  if (name == "mlp") return Recompute::mlp;
  if (name == "layer") return Recompute::layer;
  throw Error("--recompute must be none, mlp or layer, got '" + name + "'");
}

struct Transformer::Activations {
  Ops* ops;             // nullptr: only count the bytes (activation_bytes)
  DType dtype;          // of activations
  std::vector<const void*> owned;
  size_t capacity = 0;  // tokens
  size_t bytes = 0;     // allocated so far

  struct Layer {
    Buf input;                                 // residual stream entering the layer
    Buf norm1;
    float *norm1_mean, *norm1_rstd;
    Buf qkv;                                   // [N, Q + 2 KV]
    Buf q_rotated, k_rotated;                  // Qwen3: after q/k norm + RoPE
    float *q_rstd, *k_rstd;
    Buf attention;
    float* lse;
    Buf middle;                                // residual after attention
    Buf norm2;
    float *norm2_mean, *norm2_rstd;
    Buf hidden;                                // GPT-2: pre-GELU [N, F]; Qwen3: gate|up [N, 2F]
    Buf activation;                            // [N, F]
  };
  std::vector<Layer> layers;
  Buf output;                                  // residual after the last layer
  Buf final_norm;
  float *final_mean, *final_rstd;
  Buf branch;                                  // o-projection / MLP-down output
  Buf logits;                                  // [logit_rows, V]
  int logit_rows = 0;
  // inputs
  int32_t *tokens, *targets, *positions, *doc_ids;
  float *weights, *entropy_weights, *losses, *logprobs, *entropies;
  // gradient scratch (activation dtype)
  Buf d_residual, d_norm, d_attention, d_qkv, d_q_rotated, d_k_rotated, d_hidden, d_activation,
      d_final;

  Activations(Ops* o, DType t) : ops(o), dtype(t) {}
  ~Activations() {
    for (const void* p : owned) ops->release(p);
  }
  Buf typed(size_t n, DType t) {
    n = std::max<size_t>(n, 1);
    bytes += n * dtype_size(t);
    if (!ops) return Buf();
    Buf b = ops->alloc_buf(n, t);
    owned.push_back(b.ptr);
    return b;
  }
  Buf act(size_t n) { return typed(n, dtype); }
  float* f(size_t n) { return ops ? typed(n, DType::f32).f32() : (typed(n, DType::f32), nullptr); }
  int32_t* i(size_t n) {
    n = std::max<size_t>(n, 1);
    bytes += n * sizeof(int32_t);
    if (!ops) return nullptr;
    int32_t* p = ops->alloc_int(n);
    owned.push_back(p);
    return p;
  }

  // stored_layers: how many layers keep their own activations (all for
  // training; 1 for decoding, where layers reuse one set). With
  // recomputation, what is recomputed lives once, in a shared set.
  void allocate(const ModelConfig& c, size_t N, int stored_layers, bool with_gradients,
                Recompute mode) {
    capacity = N;
    const size_t C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), F = c.intermediate_size;
    const size_t H = c.num_heads, KVH = c.num_kv_heads;
    const bool qwen = c.is_qwen3();
    const size_t hidden = qwen ? 2 * F : F;
    auto attention_part = [&](Layer& l) {
      l.norm1 = act(N * C);
      l.norm1_mean = f(N);
      l.norm1_rstd = f(N);
      l.qkv = act(N * (Q + 2 * KV));
      l.q_rotated = qwen ? act(N * Q) : Buf();
      l.k_rotated = qwen ? act(N * KV) : Buf();
      l.q_rstd = qwen ? f(N * H) : nullptr;
      l.k_rstd = qwen ? f(N * KVH) : nullptr;
      l.attention = act(N * Q);
      l.lse = f(N * H);
      l.middle = act(N * C);
    };
    auto mlp_part = [&](Layer& l) {
      l.norm2 = act(N * C);
      l.norm2_mean = f(N);
      l.norm2_rstd = f(N);
      l.hidden = act(N * hidden);
      l.activation = act(N * F);
    };
    layers.resize(stored_layers);
    Layer shared{};
    if (mode == Recompute::layer) attention_part(shared);
    if (mode != Recompute::none) mlp_part(shared);
    for (Layer& l : layers) {
      l.input = act(N * C);
      if (mode == Recompute::layer) {
        const Buf input = l.input;
        l = shared;
        l.input = input;
        continue;
      }
      attention_part(l);
      if (mode == Recompute::mlp) {
        l.norm2 = shared.norm2;
        l.norm2_mean = shared.norm2_mean;
        l.norm2_rstd = shared.norm2_rstd;
        l.hidden = shared.hidden;
        l.activation = shared.activation;
      } else {
        mlp_part(l);
      }
    }
    output = act(N * C);
    final_norm = act(N * C);
    final_mean = f(N);
    final_rstd = f(N);
    branch = act(N * C);
    // The LM head runs over row chunks so [N, V] logits never exist at once
    // (Qwen3's V = 151,936 would need 1.2 GB for 2,048 tokens). A 2^25-float
    // budget: 220 rows for Qwen3, so the per-chunk cost of reading the [V, C]
    // head weight is spread over enough rows.
    logit_rows = int(std::min<size_t>(N, std::max<size_t>(1, (size_t(1) << 25) / c.vocab_size)));
    logits = act(size_t(logit_rows) * c.vocab_size);
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
    d_residual = act(N * C);
    d_norm = act(N * C);
    d_attention = act(N * Q);
    d_qkv = act(N * (Q + 2 * KV));
    d_q_rotated = qwen ? act(N * Q) : Buf();
    d_k_rotated = qwen ? act(N * KV) : Buf();
    d_hidden = act(N * hidden);
    d_activation = qwen ? act(N * F) : Buf();
    d_final = act(N * C);
  }
};

// ---------------------------------------------------------------------------

Transformer::Transformer(const ModelConfig& config, Ops& ops)
    : config_(config), layout_(build_param_layout(config)), ops_(ops) {
  config_.validate("model config");
  for (int li = 0; li < config_.num_layers; ++li)
    layer_names_.push_back({"layer " + std::to_string(li) + " forward",
                            "layer " + std::to_string(li) + " backward"});
  master_ = ops_.alloc(layout_.total);
  master_end_ = layout_.total;
  weights_ = ops_.activation_dtype() == DType::f32 ? Buf(master_)
                                                    : ops_.alloc_activations(layout_.total);
}

Transformer::~Transformer() {
  recordings_.reset();
  acts_.reset();
  decode_acts_.reset();
  if (decode_logits_) ops_.release(decode_logits_.ptr);
  if (block_tables_) ops_.release(block_tables_);
  if (weights_.ptr != master_) ops_.release(weights_.ptr);
  ops_.release(master_);
  if (grads_) ops_.release(grads_);
}

void Transformer::set_params(const std::vector<float>& host) {
  require(host.size() == layout_.total, "parameters: expected " + std::to_string(layout_.total) +
                                            " values, got " + std::to_string(host.size()));
  ops_.upload(master_, host.data() + master_begin_, master_end_ - master_begin_);
  if (weights_.ptr != master_) ops_.upload(weights_, host.data(), host.size());
}

void Transformer::shard_master(size_t begin, size_t end) {
  require(begin <= end && end <= layout_.total,
          "shard_master: [" + std::to_string(begin) + ", " + std::to_string(end) +
              ") is not inside the " + std::to_string(layout_.total) + " parameters");
  require(master_begin_ == 0 && master_end_ == layout_.total,
          "shard_master: the master is already sharded");
  float* shard = ops_.alloc(end - begin);
  ops_.copy(shard, master_ + begin, end - begin);
  if (weights_.ptr != master_) ops_.release(master_);  // else the buffer stays, as weights_
  master_ = shard;
  master_begin_ = begin;
  master_end_ = end;
}

void Transformer::sync_weights(size_t begin, size_t end) {
  if (weights_.ptr == master_ || end <= begin) return;
  require(begin >= master_begin_ && end <= master_end_,
          "sync_weights: [" + std::to_string(begin) + ", " + std::to_string(end) +
              ") is outside the master's range");
  ops_.copy(weights_ + begin, master_ + (begin - master_begin_), end - begin);
}

void Transformer::set_recompute(Recompute mode) {
  if (mode == recompute_) return;
  recompute_ = mode;
  acts_.reset();  // reallocated in the new arrangement on the next pass
}

std::vector<float> Transformer::get_params() const {
  require(master_begin_ == 0 && master_end_ == layout_.total,
          "get_params: the master holds only a ZeRO shard (gather it: Trainer::master_params)");
  std::vector<float> host(layout_.total);
  ops_.download(host.data(), master_, host.size());
  return host;
}

std::vector<float> Transformer::get_grads() const {
  std::vector<float> host(layout_.total, 0.f);
  if (grads_) ops_.download(host.data(), grads_, host.size());
  return host;
}

float* Transformer::grads() {
  if (!grads_) grads_ = ops_.alloc(layout_.total);  // zero-filled
  return grads_;
}

void Transformer::zero_grads() { ops_.zero(grads(), layout_.total); }

// ---------------------------------------------------------------------------
// Gradient segments (model/gradient_sink.h).

size_t Transformer::layer_begin(int layer) const { return layout_.layers[size_t(layer)].attn_norm_weight; }

size_t Transformer::layer_end(int layer) const {
  return layer + 1 < config_.num_layers ? layer_begin(layer + 1) : layout_.final_norm_weight;
}

std::vector<GradientSegment> Transformer::gradient_segments(const ParamLayout& layout) {
  const std::vector<LayerOffsets>& layers = layout.layers;
  std::vector<GradientSegment> segments = {{layout.final_norm_weight, layout.total}};
  for (size_t li = layers.size(); li-- > 0;) {
    const size_t end = li + 1 < layers.size() ? layers[li + 1].attn_norm_weight
                                              : layout.final_norm_weight;
    segments.push_back({layers[li].mlp_norm_weight, end});
    segments.push_back({layers[li].attn_norm_weight, layers[li].mlp_norm_weight});
  }
  segments.push_back({0, layers[0].attn_norm_weight});
  return segments;
}

std::vector<GradientSegment> Transformer::gradient_segments() const {
  return gradient_segments(layout_);
}

size_t Transformer::gradient_scratch_floats() const {
  const std::vector<GradientSegment> segments = gradient_segments();
  const bool tied = layout_.lm_head == layout_.embed_tokens;
  size_t largest = 0;
  for (size_t i = 0; i + (tied ? 1 : 0) < segments.size(); ++i)
    largest = std::max(largest, segments[i].size());
  return largest + (tied ? segments.back().size() : 0);
}

void Transformer::open_segment(size_t begin, size_t end) {
  if (!sink_) return;
  open_segments_.push_back({begin, end, sink_->open(begin, end)});
}

void Transformer::close_segment(size_t begin, size_t end) {
  if (!sink_) return;
  for (size_t i = 0; i < open_segments_.size(); ++i)
    if (open_segments_[i].begin == begin && open_segments_[i].end == end) {
      open_segments_.erase(open_segments_.begin() + long(i));
      sink_->close(begin, end);
      return;
    }
  throw Error("gradient segment [" + std::to_string(begin) + ", " + std::to_string(end) +
              ") closed without being open");
}

float* Transformer::grad(size_t offset) const {
  if (offset == kAbsent) return nullptr;
  if (!sink_) return grads_ + offset;
  for (const OpenSegment& s : open_segments_)
    if (offset >= s.begin && offset < s.end) return s.base + (offset - s.begin);
  throw Error("the backward wrote the gradient at " + std::to_string(offset) +
              " outside every open segment (model/gradient_sink.h)");
}

size_t Transformer::activation_bytes(const ModelConfig& config, size_t tokens, DType dtype,
                                     Recompute mode) {
  Activations counter(nullptr, dtype);
  counter.allocate(config, tokens, config.num_layers, /*with_gradients=*/true, mode);
  return counter.bytes;
}

std::string Transformer::memory_report(size_t tokens, size_t gradient_floats,
                                       size_t moment_floats, size_t master_floats) const {
  const double GiB = 1024.0 * 1024.0 * 1024.0;
  const DType t = ops_.activation_dtype();
  const double weights = double(layout_.total) * dtype_size(t);
  const double master =
      master_floats != kAbsent ? double(master_floats) * 4
      : weights_.ptr == master_ ? 0
                                : double(master_end_ - master_begin_) * 4;
  const double grads = double(gradient_floats == kAbsent ? layout_.total : gradient_floats) * 4;
  const double moments =
      double(moment_floats == kAbsent ? 2 * layout_.total : moment_floats) * 4;
  const double acts = double(activation_bytes(config_, tokens, t, recompute_));
  const char* modes[] = {"none", "mlp", "layer"};
  char line[512];
  std::snprintf(line, sizeof line,
                "memory (%s): weights %.2f GiB (%s) | master %.2f GiB | gradients %.2f GiB | "
                "activations %.2f GiB for %zu tokens (--recompute %s) | AdamW moments %.2f GiB",
                ops_.name().c_str(), weights / GiB, dtype_name(t), master / GiB, grads / GiB,
                acts / GiB, tokens, modes[int(recompute_)], moments / GiB);
  return line;
}

void Transformer::ensure_activations(int B, int T) {
  size_t N = size_t(B) * T;
  if (acts_ && acts_->capacity >= N) return;
  acts_.reset();
  acts_.reset(new Activations(&ops_, ops_.activation_dtype()));
  acts_->allocate(config_, N, config_.num_layers, /*with_gradients=*/true, recompute_);
}

LossOutputs Transformer::forward(const Batch& batch) { return run(batch, false, 1.f, nullptr); }

LossOutputs Transformer::forward_backward(const Batch& batch, float loss_scale,
                                          GradientSink* sink) {
  if (!sink) grads();  // the full buffer, allocated once
  sink_ = sink;
  open_segments_.clear();
  try {
    LossOutputs out = run(batch, true, loss_scale, nullptr);
    sink_ = nullptr;
    return out;
  } catch (...) {
    sink_ = nullptr;
    open_segments_.clear();
    throw;
  }
}

std::vector<float> Transformer::forward_logits(const Batch& batch) {
  std::vector<float> logits(size_t(batch.B) * batch.T * config_.vocab_size);
  run(batch, false, 1.f, logits.data());
  return logits;
}

// ---------------------------------------------------------------------------
// Forward pieces shared by training (run) and generation (cached_forward).

void Transformer::norm_forward(Buf out, float* mean, float* rstd, CBuf in, size_t weight,
                               size_t bias, int N) {
  if (config_.is_qwen3())
    ops_.rmsnorm_forward(out, rstd, in, param(weight), N, config_.hidden_size, config_.norm_eps);
  else
    ops_.layernorm_forward(out, mean, rstd, in, param(weight), param(bias), N,
                           config_.hidden_size, config_.norm_eps);
}

void Transformer::add_norm_forward(Buf residual, Buf out, float* mean, float* rstd, CBuf a,
                                   CBuf b, size_t weight, size_t bias, int N) {
  if (config_.is_qwen3())
    ops_.add_rmsnorm_forward(residual, out, rstd, a, b, param(weight), N, config_.hidden_size,
                             config_.norm_eps);
  else
    ops_.add_layernorm_forward(residual, out, mean, rstd, a, b, param(weight), param(bias), N,
                               config_.hidden_size, config_.norm_eps);
}

void Transformer::norm_backward(Buf din, CBuf dout, CBuf in, const float* mean,
                                const float* rstd, size_t weight, size_t bias, int N) {
  if (config_.is_qwen3())
    ops_.rmsnorm_backward(din, grad(weight), dout, in, param(weight), rstd, N,
                          config_.hidden_size);
  else
    ops_.layernorm_backward(din, grad(weight), grad(bias), dout, in, param(weight), mean, rstd, N,
                            config_.hidden_size);
}

void Transformer::qkv_forward(Activations& a, int slot, int layer, const int32_t* positions,
                              int N, CBuf* q_out, CBuf* k_out, int* q_stride, int* k_stride) {
  const ModelConfig& c = config_;
  const LayerOffsets& w = layout_.layers[layer];
  Activations::Layer& l = a.layers[slot];
  const int C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), QKV = Q + 2 * KV;
  // q, k, v weights (and biases) are adjacent: one [QKV, C] GEMM.
  ops_.matmul_forward(l.qkv, l.norm1, param(w.q_weight), param(w.q_bias), N, C, QKV);
  *q_out = l.qkv;
  *k_out = CBuf(l.qkv) + Q;
  *q_stride = *k_stride = QKV;
  if (!c.is_qwen3()) return;
  ops_.qk_norm_rope_forward(l.q_rotated, l.k_rotated, l.q_rstd, l.k_rstd, l.qkv,
                            CBuf(l.qkv) + Q, QKV, param(w.q_norm_weight),
                            param(w.k_norm_weight), positions, N, c.num_heads, c.num_kv_heads,
                            c.head_dim, c.norm_eps, c.rope());
  *q_out = l.q_rotated;
  *k_out = l.k_rotated;
  *q_stride = Q;
  *k_stride = KV;
}

void Transformer::mlp_up_forward(Activations& a, int slot, int layer, int N) {
  const int C = config_.hidden_size, F = config_.intermediate_size;
  const LayerOffsets& w = layout_.layers[layer];
  Activations::Layer& l = a.layers[slot];
  if (config_.is_qwen3()) {
    // gate and up weights are adjacent: one [2F, C] GEMM into gate|up rows.
    ops_.matmul_forward(l.hidden, l.norm2, param(w.gate_weight), nullptr, N, C, 2 * F);
    ops_.swiglu_forward(l.activation, l.hidden, N, F);
  } else {
    ops_.matmul_gelu_forward(l.hidden, l.activation, l.norm2, param(w.up_weight),
                             param(w.up_bias), N, C, F);
  }
}

void Transformer::mlp_down_forward(Activations& a, int slot, int layer, int N) {
  const LayerOffsets& w = layout_.layers[layer];
  ops_.matmul_forward(a.branch, a.layers[slot].activation, param(w.down_weight),
                      param(w.down_bias), N, config_.intermediate_size, config_.hidden_size);
}

// From norm1 (in place) through attention, the o projection, the fused
// residual + norm2, and the MLP's up part.
void Transformer::layer_forward_to_mlp(Activations& a, int li, const int32_t* doc_ids, int N) {
  const ModelConfig& c = config_;
  const LayerOffsets& w = layout_.layers[li];
  Activations::Layer& l = a.layers[li];
  CBuf q_in, k_in;
  AttentionShape shape = shape_;
  qkv_forward(a, li, li, a.positions, N, &q_in, &k_in, &shape.q_stride, &shape.k_stride);
  shape.v_stride = c.q_dim() + 2 * c.kv_dim();
  const CBuf v_in = CBuf(l.qkv) + c.q_dim() + c.kv_dim();
  ops_.attention_forward(l.attention, l.lse, q_in, k_in, v_in, doc_ids, shape);
  ops_.matmul_forward(a.branch, l.attention, param(w.o_weight), param(w.o_bias), N, c.q_dim(),
                      c.hidden_size);
  add_norm_forward(l.middle, l.norm2, l.norm2_mean, l.norm2_rstd, l.input, a.branch,
                   w.mlp_norm_weight, w.mlp_norm_bias, N);
  mlp_up_forward(a, li, li, N);
}

void Transformer::recompute_layer(Activations& a, int li, const int32_t* doc_ids, int N) {
  const LayerOffsets& w = layout_.layers[li];
  Activations::Layer& l = a.layers[li];
  if (recompute_ == Recompute::layer) {
    norm_forward(l.norm1, l.norm1_mean, l.norm1_rstd, l.input, w.attn_norm_weight,
                 w.attn_norm_bias, N);
    layer_forward_to_mlp(a, li, doc_ids, N);
  } else if (recompute_ == Recompute::mlp) {
    norm_forward(l.norm2, l.norm2_mean, l.norm2_rstd, l.middle, w.mlp_norm_weight,
                 w.mlp_norm_bias, N);
    mlp_up_forward(a, li, li, N);
  }
}

// ---------------------------------------------------------------------------
// The forward and backward pass. `param(offset)` is a weight, `grad(offset)` its
// gradient, null when the family has no such tensor.

LossOutputs Transformer::run(const Batch& batch, bool backward, float loss_scale,
                             float* logits_out) {
  batch.validate(config_.vocab_size, config_.context_limit());
  ensure_activations(batch.B, batch.T);
  Activations& a = *acts_;
  const ModelConfig& c = config_;
  const int B = batch.B, T = batch.T, N = B * T;
  const int C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), QKV = Q + 2 * KV;
  const int F = c.intermediate_size, V = c.vocab_size, D = c.head_dim;
  const bool qwen = c.is_qwen3();
  shape_ = AttentionShape{B, T, c.num_heads, c.num_kv_heads, D};

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
  std::unique_ptr<OpsRange> phase(new OpsRange(ops_, backward ? "forward" : "forward (no grad)"));
  ops_.embedding_forward(a.layers[0].input, a.tokens, a.positions, param(layout_.embed_tokens),
                         param(layout_.embed_positions), N, C);
  {
    const LayerOffsets& w0 = layout_.layers[0];
    Activations::Layer& l0 = a.layers[0];
    norm_forward(l0.norm1, l0.norm1_mean, l0.norm1_rstd, l0.input, w0.attn_norm_weight,
                 w0.attn_norm_bias, N);
  }
  for (int li = 0; li < c.num_layers; ++li) {
    OpsRange layer_range(ops_, layer_names_[li].forward.c_str());
    Activations::Layer& l = a.layers[li];
    layer_forward_to_mlp(a, li, doc_ids, N);
    mlp_down_forward(a, li, li, N);
    // The residual join fused with the next norm (the next layer's norm1, or
    // the final norm).
    if (li + 1 < c.num_layers) {
      const LayerOffsets& wn = layout_.layers[li + 1];
      Activations::Layer& next = a.layers[li + 1];
      add_norm_forward(next.input, next.norm1, next.norm1_mean, next.norm1_rstd, l.middle,
                       a.branch, wn.attn_norm_weight, wn.attn_norm_bias, N);
    } else {
      add_norm_forward(a.output, a.final_norm, a.final_mean, a.final_rstd, l.middle, a.branch,
                       layout_.final_norm_weight, layout_.final_norm_bias, N);
    }
  }

  // ---- LM head and loss, chunk by chunk; in training each chunk's logits
  // are turned into their gradient in place and pushed through the head.
  // The head's gradient segment opens here: the tail (untied), or the
  // embeddings, which the tied head shares (model/gradient_sink.h).
  const bool tied = layout_.lm_head == layout_.embed_tokens;
  const GradientSegment embeddings = {0, layer_begin(0)};
  const GradientSegment tail = {layout_.final_norm_weight, layout_.total};
  const GradientSegment head = tied ? embeddings : tail;
  if (backward) open_segment(head.begin, head.end);
  phase.reset();
  phase.reset(new OpsRange(ops_, "lm head + loss"));
  for (int start = 0; start < N; start += a.logit_rows) {
    const int rows = std::min(a.logit_rows, N - start);
    const CBuf x = CBuf(a.final_norm) + size_t(start) * C;
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
    loss.dlogits = backward ? a.logits : Buf();
    ops_.cross_entropy(loss);
    if (backward)  // d_final rows written chunk by chunk
      ops_.matmul_backward(a.d_final + size_t(start) * C, grad(layout_.lm_head), nullptr,
                           a.logits, x, param(layout_.lm_head), rows, C, V);
  }

  phase.reset();
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
  // dx: the gradient of the residual stream, walking down. Norm backwards
  // add into it (the residual join); everything else is written.
  OpsRange backward_range(ops_, "backward");
  Buf dx = a.d_residual;
  ops_.zero(dx, size_t(N) * C);
  if (tied) open_segment(tail.begin, tail.end);
  norm_backward(dx, a.d_final, a.output, a.final_mean, a.final_rstd, layout_.final_norm_weight,
                layout_.final_norm_bias, N);
  close_segment(tail.begin, tail.end);
  for (int li = c.num_layers - 1; li >= 0; --li) {
    const LayerOffsets& w = layout_.layers[li];
    Activations::Layer& l = a.layers[li];
    OpsRange layer_range(ops_, layer_names_[li].backward.c_str());
    recompute_layer(a, li, doc_ids, N);
    open_segment(w.mlp_norm_weight, layer_end(li));
    // MLP branch: dx is the gradient of the layer output = of its MLP branch.
    if (qwen) {
      ops_.matmul_backward(a.d_activation, grad(w.down_weight), nullptr, dx, l.activation,
                           param(w.down_weight), N, F, C);
      ops_.swiglu_backward(a.d_hidden, a.d_activation, l.hidden, N, F);
      ops_.matmul_backward(a.d_norm, grad(w.gate_weight), nullptr, a.d_hidden, l.norm2,
                           param(w.gate_weight), N, C, 2 * F);
    } else {
      ops_.matmul_backward_gelu(a.d_hidden, grad(w.down_weight), grad(w.down_bias), dx,
                                l.activation, l.hidden, param(w.down_weight), N, F, C);
      ops_.matmul_backward(a.d_norm, grad(w.up_weight), grad(w.up_bias), a.d_hidden, l.norm2,
                           param(w.up_weight), N, C, F);
    }
    norm_backward(dx, a.d_norm, l.middle, l.norm2_mean, l.norm2_rstd, w.mlp_norm_weight,
                  w.mlp_norm_bias, N);
    close_segment(w.mlp_norm_weight, layer_end(li));
    open_segment(layer_begin(li), w.mlp_norm_weight);
    // Attention branch: dx is now the gradient of the middle residual.
    ops_.matmul_backward(a.d_attention, grad(w.o_weight), grad(w.o_bias), dx, l.attention,
                         param(w.o_weight), N, Q, C);
    AttentionShape shape = shape_;
    shape.v_stride = QKV;
    const Buf dv = a.d_qkv + size_t(Q + KV);
    const CBuf v = CBuf(l.qkv) + size_t(Q + KV);
    if (qwen) {
      shape.q_stride = Q;
      shape.k_stride = KV;
      ops_.attention_backward(a.d_q_rotated, a.d_k_rotated, dv, a.d_attention, l.q_rotated,
                              l.k_rotated, v, l.attention, l.lse, doc_ids, shape);
      ops_.qk_norm_rope_backward(a.d_qkv, a.d_qkv + size_t(Q), grad(w.q_norm_weight),
                                 grad(w.k_norm_weight), a.d_q_rotated, a.d_k_rotated, l.qkv,
                                 CBuf(l.qkv) + size_t(Q), QKV, param(w.q_norm_weight),
                                 param(w.k_norm_weight), l.q_rstd, l.k_rstd, a.positions, N,
                                 c.num_heads, c.num_kv_heads, D, c.rope());
    } else {
      shape.q_stride = shape.k_stride = QKV;
      ops_.attention_backward(a.d_qkv, a.d_qkv + size_t(Q), dv, a.d_attention, l.qkv,
                              CBuf(l.qkv) + size_t(Q), v, l.attention, l.lse, doc_ids, shape);
    }
    ops_.matmul_backward(a.d_norm, grad(w.q_weight), grad(w.q_bias), a.d_qkv, l.norm1,
                         param(w.q_weight), N, C, QKV);
    norm_backward(dx, a.d_norm, l.input, l.norm1_mean, l.norm1_rstd, w.attn_norm_weight,
                  w.attn_norm_bias, N);
    close_segment(layer_begin(li), w.mlp_norm_weight);
  }
  if (!tied) open_segment(embeddings.begin, embeddings.end);
  ops_.embedding_backward(grad(layout_.embed_tokens), grad(layout_.embed_positions), dx, a.tokens,
                          a.positions, N, C);
  close_segment(embeddings.begin, embeddings.end);
  return out;
}

// ---------------------------------------------------------------------------
// Generation over a paged KV cache: the same layer math, with every token's
// key and value stored in the cache; prefill attends within its packed
// sequences (attention_forward), decode to each sequence's cached tokens
// (attention_decode through the block tables). One layer's scratch serves
// every layer (nothing is kept for a backward).

std::unique_ptr<KVCache> Transformer::make_kv_cache(int block_size, int initial_blocks,
                                                    int max_blocks) {
  return std::unique_ptr<KVCache>(new KVCache(ops_, config_.num_layers, config_.kv_dim(),
                                              block_size, initial_blocks, max_blocks));
}

std::vector<float> Transformer::prefill(KVCache& cache, const std::vector<int32_t>& tokens,
                                        const std::vector<int32_t>& positions,
                                        const std::vector<int32_t>& doc_ids,
                                        const std::vector<int32_t>& cache_rows,
                                        const std::vector<int32_t>& logit_rows) {
  require(doc_ids.size() == tokens.size(), "prefill: one doc id per token");
  return cached_forward(cache, tokens, positions, doc_ids, cache_rows, {}, logit_rows);
}

CBuf Transformer::decode_logits(KVCache& cache, const std::vector<int32_t>& tokens,
                                const std::vector<int32_t>& positions,
                                const std::vector<int32_t>& cache_rows,
                                const std::vector<const BlockTable*>& tables) {
  require(tables.size() == tokens.size(), "decode: one block table per token");
  // Every row's logits at once (the LM head of a training pass runs in row
  // chunks; a decode step samples all S rows together).
  if (decode_logits_rows_ < tokens.size()) {
    if (decode_logits_) ops_.release(decode_logits_.ptr);
    decode_logits_rows_ = std::max(tokens.size(), 2 * decode_logits_rows_);
    decode_logits_ = ops_.alloc_activations(decode_logits_rows_ * size_t(config_.vocab_size));
  }
  std::vector<int32_t> all(tokens.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = int32_t(i);
  cached_forward(cache, tokens, positions, {}, cache_rows, tables, all);
  return decode_logits_;
}

std::vector<float> Transformer::decode(KVCache& cache, const std::vector<int32_t>& tokens,
                                       const std::vector<int32_t>& positions,
                                       const std::vector<int32_t>& cache_rows,
                                       const std::vector<const BlockTable*>& tables) {
  const CBuf logits = decode_logits(cache, tokens, positions, cache_rows, tables);
  std::vector<float> host(tokens.size() * size_t(config_.vocab_size));
  ops_.download(host.data(), logits, host.size());
  return host;
}

void Transformer::set_decode_mode(DecodeMode mode) {
  decode_mode_ = mode;
  if (mode != DecodeMode::recorded) recordings_.reset();  // nothing to replay any more
}

std::vector<float> Transformer::cached_forward(KVCache& cache, const std::vector<int32_t>& tokens,
                                               const std::vector<int32_t>& positions,
                                               const std::vector<int32_t>& doc_ids,
                                               const std::vector<int32_t>& cache_rows,
                                               const std::vector<const BlockTable*>& tables,
                                               const std::vector<int32_t>& logit_rows) {
  const ModelConfig& c = config_;
  const int N = int(tokens.size());
  const bool decoding = !tables.empty();
  require(N > 0 && positions.size() == tokens.size() && cache_rows.size() == tokens.size(),
          "generation: tokens, positions and cache rows must have one entry per token");
  const int C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), QKV = Q + 2 * KV;
  const int V = c.vocab_size, D = c.head_dim, bs = cache.block_size();
  const int64_t pool_rows = int64_t(cache.capacity()) * bs;
  for (int i = 0; i < N; ++i) {
    require(tokens[i] >= 0 && tokens[i] < V, "generation: token id out of vocabulary");
    require(positions[i] >= 0 && positions[i] < c.context_limit(),
            "generation: position " + std::to_string(positions[i]) + " is beyond the model's " +
                std::to_string(c.context_limit()) + " positions");
    require(cache_rows[i] >= 0 && cache_rows[i] < pool_rows, "generation: cache row out of range");
  }
  for (int32_t r : logit_rows) require(r >= 0 && r < N, "generation: logit row out of range");
  // A decode step may run padded to M rows (model/decode_graphs.h): the N
  // real rows first, then rows that read token 0 at position 0, write no
  // cache row (-1) and attend to nothing (length 0).
  const bool record = decoding && decode_mode_ == DecodeMode::recorded && ops_.can_record();
  const bool padded = record || (decoding && decode_mode_ == DecodeMode::padded);
  const int M = padded ? decode_batch_bucket(N) : N;
  if (!decode_acts_ || decode_acts_->capacity < size_t(M)) {
    decode_acts_.reset();
    decode_acts_.reset(new Activations(&ops_, ops_.activation_dtype()));
    decode_acts_->allocate(c, M, 1, /*with_gradients=*/false, Recompute::none);
    decode_buffer_moves_ += 1;
  }
  Activations& a = *decode_acts_;
  Activations::Layer& l = a.layers[0];
  int32_t* rows_d = a.targets;  // an int buffer of M entries, free here
  std::vector<int32_t> in_tokens(tokens), in_positions(positions), in_rows(cache_rows);
  in_tokens.resize(size_t(M), 0);
  in_positions.resize(size_t(M), 0);
  in_rows.resize(size_t(M), -1);
  ops_.upload_int(a.tokens, in_tokens.data(), M);
  ops_.upload_int(a.positions, in_positions.data(), M);
  ops_.upload_int(rows_d, in_rows.data(), M);
  PagedKV paged;
  if (decoding) {
    // Block tables [M, width] and lengths (in a.doc_ids, unused by decode).
    int width = 1;
    std::vector<int32_t> lengths(size_t(M), 0);
    for (int s = 0; s < N; ++s) {
      const BlockTable& t = *tables[size_t(s)];
      require(t.length == positions[s] + 1 && int64_t(t.blocks.size()) * bs >= t.length,
              "decode: a block table does not end at its token's position");
      lengths[s] = t.length;
      width = std::max(width, int(t.blocks.size()));
    }
    if (padded) width = decode_width_bucket(width);
    std::vector<int32_t> flat(size_t(M) * width, 0);
    for (int s = 0; s < N; ++s)
      std::copy(tables[size_t(s)]->blocks.begin(), tables[size_t(s)]->blocks.end(),
                flat.begin() + size_t(s) * width);
    if (block_tables_size_ < flat.size()) {
      if (block_tables_) ops_.release(block_tables_);
      block_tables_size_ = std::max(flat.size(), 2 * block_tables_size_);
      block_tables_ = ops_.alloc_int(block_tables_size_);
      decode_buffer_moves_ += 1;
    }
    ops_.upload_int(block_tables_, flat.data(), flat.size());
    ops_.upload_int(a.doc_ids, lengths.data(), M);
    paged.block_table = block_tables_;
    paged.lengths = a.doc_ids;
    paged.table_width = width;
    paged.block_size = bs;
  } else {
    ops_.upload_int(a.doc_ids, doc_ids.data(), N);
  }

  OpsRange range(ops_, decoding ? "decode step" : "prefill");
  Buf x = a.output;
  // Embedding and layers over the M rows: no host reads or allocations in
  // here (a recording holds exactly these ops).
  auto layers = [&] {
    ops_.embedding_forward(x, a.tokens, a.positions, param(layout_.embed_tokens),
                           param(layout_.embed_positions), M, C);
    for (int li = 0; li < c.num_layers; ++li) {
      const LayerOffsets& w = layout_.layers[li];
      norm_forward(l.norm1, l.norm1_mean, l.norm1_rstd, x, w.attn_norm_weight,
                   w.attn_norm_bias, M);
      CBuf q_in, k_in;
      AttentionShape shape{1, M, c.num_heads, c.num_kv_heads, D};
      qkv_forward(a, 0, li, a.positions, M, &q_in, &k_in, &shape.q_stride, &shape.k_stride);
      shape.v_stride = QKV;
      const CBuf v_in = CBuf(l.qkv) + size_t(Q + KV);
      ops_.scatter_rows(cache.keys(li), k_in, shape.k_stride, rows_d, M, KV);
      ops_.scatter_rows(cache.values(li), v_in, QKV, rows_d, M, KV);
      if (decoding) {
        paged.keys = cache.keys(li);
        paged.values = cache.values(li);
        ops_.attention_decode(l.attention, q_in, shape.q_stride, paged, M, c.num_heads,
                              c.num_kv_heads, D);
      } else {
        ops_.attention_forward(l.attention, l.lse, q_in, k_in, v_in, a.doc_ids, shape);
      }
      ops_.matmul_forward(a.branch, l.attention, param(w.o_weight), param(w.o_bias), M, Q, C);
      add_norm_forward(x, l.norm2, l.norm2_mean, l.norm2_rstd, x, a.branch, w.mlp_norm_weight,
                       w.mlp_norm_bias, M);
      mlp_up_forward(a, 0, li, M);
      mlp_down_forward(a, 0, li, M);
      ops_.add(x, x, a.branch, size_t(M) * C);
    }
  };
  if (record) {
    if (!recordings_) recordings_.reset(new DecodeRecordings(ops_));
    recordings_->use_layout({cache.pools_id(), decode_buffer_moves_});
    recordings_->run(M, paged.table_width, layers);
  } else {
    layers();
  }
  // The final norm and the LM head only for the rows whose logits are wanted
  // (a prompt's last token), gathered into a.branch.
  const int R = int(logit_rows.size());
  if (R == 0) return {};
  CBuf rows = x;
  if (!decoding) {
    for (int r = 0; r < R; ++r)
      ops_.copy(a.branch + size_t(r) * C, CBuf(x) + size_t(logit_rows[r]) * C, size_t(C));
    rows = a.branch;
  }
  norm_forward(a.final_norm, a.final_mean, a.final_rstd, rows, layout_.final_norm_weight,
               layout_.final_norm_bias, R);
  if (decoding) {  // all rows into decode_logits_, left in Ops memory
    ops_.matmul_forward(decode_logits_, a.final_norm, param(layout_.lm_head), nullptr, R, C, V);
    return {};
  }
  std::vector<float> logits(size_t(R) * V);
  for (int start = 0; start < R; start += a.logit_rows) {
    const int n = std::min(a.logit_rows, R - start);
    ops_.matmul_forward(a.logits, CBuf(a.final_norm) + size_t(start) * C, param(layout_.lm_head),
                        nullptr, n, C, V);
    ops_.download(logits.data() + size_t(start) * V, a.logits, size_t(n) * V);
  }
  return logits;
}

}  // namespace polaris
