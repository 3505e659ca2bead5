// The transformer, written once against Ops (model/ops.h).
//
// One class runs GPT-2 and Qwen3 on any Ops implementation:
//   forward            weighted next-token loss, per-token log-probabilities
//   forward_backward   the same plus gradients (ADDED into grads())
//   forward_logits     every position's logits (checks against references)
//   decode_step        one token per sequence against a KV cache (sampling)
//
// Per layer (pre-norm):  x += o( attention( rope( qk_norm( q k v (norm(x)) ) ) ) )
//                        x += mlp( norm(x) )
// with GPT-2's LayerNorm / GELU / learned positions or Qwen3's RMSNorm /
// SwiGLU / RoPE + per-head q,k RMSNorm chosen by the config.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/ops.h"
#include "model/params.h"

namespace polaris {

// B rows of T tokens. targets[i] is the token predicted at position i (-1:
// none); weights[i] is that prediction's loss weight (0 masks it, and in
// policy-gradient training it carries the advantage). positions restart in
// each packed document and doc_ids keep attention inside a document.
struct Batch {
  int B = 0, T = 0;
  std::vector<int32_t> tokens, targets, positions, doc_ids;
  std::vector<float> weights;
  std::vector<float> entropy_weights;  // empty: no entropy term

  // Plain rows: positions 0..T-1, one document per row, targets = next token
  // (the last position of a row predicts nothing), weight 1 elsewhere.
  static Batch from_token_rows(const std::vector<int32_t>& tokens, int B, int T);
  void validate(int vocab_size, int max_positions) const;  // throws Error
};

// The loss comes back as a sum and its weight rather than only their ratio:
// gradient accumulation and data parallelism normalise by the weight of the
// whole global batch, which one pass cannot know.
struct LossOutputs {
  double loss_sum = 0;              // sum_i weight_i * -logprob_i - entropy_weight_i * H_i (unscaled)
  double weight_sum = 0;            // sum_i weight_i over rows with a target
  std::vector<float> logprobs;      // [B*T] log p(target), 0 where no target
  std::vector<float> entropies;     // [B*T] entropy of the predicted distribution
  // The mean weighted loss of this pass (0 when nothing is weighted).
  double mean_loss() const { return weight_sum > 0 ? loss_sum / weight_sum : 0; }
};

class Transformer {
 public:
  Transformer(const ModelConfig& config, Ops& ops);
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return config_; }
  const ParamLayout& layout() const { return layout_; }
  Ops& ops() { return ops_; }
  size_t num_params() const { return layout_.total; }

  float* params() { return params_; }   // in Ops memory
  float* grads() { return grads_; }     // in Ops memory
  void set_params(const std::vector<float>& host_params);
  std::vector<float> get_params() const;
  std::vector<float> get_grads() const;
  void zero_grads();

  // Loss only (no gradients).
  LossOutputs forward(const Batch& batch);
  // grads += d(loss_scale * sum_i loss_i)/dparams.
  LossOutputs forward_backward(const Batch& batch, float loss_scale);
  // logits [B*T, V] of every position, on the host.
  std::vector<float> forward_logits(const Batch& batch);

  // ---- KV-cache decoding ----
  // Reserves a cache of `slots` sequences of up to max_len tokens each.
  void reserve_kv_cache(int slots, int max_len);
  int kv_cache_max_len() const { return cache_max_len_; }
  int kv_cache_slots() const { return cache_slots_; }
  // Feeds token[s] at position[s] for cache slot slot[s] (s < S) and returns
  // the next-token logits [S, V] on the host. Positions of a slot must be fed
  // in order 0, 1, 2, ... (a slot is reused by starting again at 0).
  std::vector<float> decode_step(const std::vector<int32_t>& tokens,
                                 const std::vector<int32_t>& positions,
                                 const std::vector<int32_t>& slots);
  // Bytes of activation storage a training pass (forward + backward) over
  // `tokens` tokens allocates, without allocating: for memory checks before
  // a run starts.
  static size_t activation_bytes(const ModelConfig& config, size_t tokens);

 private:
  struct Activations;
  LossOutputs run(const Batch& batch, bool backward, float loss_scale, float* logits_out);
  void ensure_activations(int B, int T);
  // Pieces of a layer shared by the training pass and decode_step.
  float* param(size_t offset) const { return offset == kAbsent ? nullptr : params_ + offset; }
  float* grad(size_t offset) const { return offset == kAbsent ? nullptr : grads_ + offset; }
  // The family's norm (RMSNorm, or LayerNorm with its mean saved).
  void norm_forward(float* out, float* mean, float* rstd, const float* in, size_t weight,
                    size_t bias, int N);
  // Its backward, adding into din and the norm's parameter gradients.
  void norm_backward(float* din, const float* dout, const float* in, const float* mean,
                     const float* rstd, size_t weight, size_t bias, int N);
  // q, k, v projections, then Qwen3's q/k norms and RoPE; sets q_out and
  // k_out to the tensors attention reads.
  void qkv_forward(Activations& a, int layer_slot, const LayerOffsets& w, const int32_t* positions,
                   int N, const float** q_out, const float** k_out);
  // MLP of norm2 into out (GPT-2: GELU; Qwen3: SwiGLU).
  void mlp_forward(Activations& a, int layer_slot, const LayerOffsets& w, float* out, int N);
  // The final norm of x into final_norm.
  void final_norm_forward(Activations& a, const float* x, int N);

  ModelConfig config_;
  ParamLayout layout_;
  Ops& ops_;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  std::unique_ptr<Activations> acts_;         // training / scoring
  std::unique_ptr<Activations> decode_acts_;  // one layer's scratch for decode_step
  // KV cache: per layer, keys then values, each [slots, max_len, kv_dim].
  std::vector<float*> key_cache_, value_cache_;
  int cache_slots_ = 0, cache_max_len_ = 0;
};

}  // namespace polaris
