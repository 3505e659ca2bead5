// The transformer, written once against Ops (model/ops.h).
//
// One class runs GPT-2 and Qwen3 on any Ops implementation:
//   forward            weighted next-token loss, per-token log-probabilities
//   forward_backward   the same plus gradients (ADDED into grads())
//   forward_logits     every position's logits (checks against references)
//   prefill / decode_logits  generation over a paged KV cache (model/kv_cache.h):
//                      packed prompts, then one token per sequence
//
// Per layer (pre-norm):  x += o( attention( rope( qk_norm( qkv(norm(x)) ) ) ) )
//                        x += mlp( norm(x) )
// with GPT-2's LayerNorm / GELU / learned positions or Qwen3's RMSNorm /
// SwiGLU / RoPE + per-head q,k RMSNorm chosen by the config. q, k, v are one
// GEMM (their weights are adjacent rows of the flat parameters), as are
// Qwen3's gate and up; each residual join is fused with the norm after it.
//
// Storage follows the backend (Ops::activation_dtype()): weights and
// activations in that type; parameter gradients and the master weights in
// fp32. On the CPU the weights ARE the master (one fp32 buffer); on the GPU
// the bf16 weights are a copy AdamW refreshes after every step.
//
// Activation recomputation (set_recompute) trades compute for memory:
//   none   every layer keeps every activation its backward reads;
//   mlp    the MLP's activations (norm2, the up/gate projection, the
//          activation) are recomputed in the backward from the stored
//          mid-layer residual: one shared set instead of one per layer;
//   layer  only each layer's input is kept; the whole layer is recomputed.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/decode_graphs.h"
#include "model/gradient_sink.h"
#include "model/kv_cache.h"
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

enum class Recompute { none, mlp, layer };
// "none" | "mlp" | "layer"; throws an Error naming --recompute otherwise.
Recompute parse_recompute(const std::string& name);

class Transformer {
 public:
  Transformer(const ModelConfig& config, Ops& ops);
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return config_; }
  const ParamLayout& layout() const { return layout_; }
  Ops& ops() { return ops_; }
  const Ops& ops() const { return ops_; }
  size_t num_params() const { return layout_.total; }

  // The fp32 master parameters of [master_begin(), master_end()), in Ops
  // memory: params()[i] is parameter master_begin() + i (what the
  // optimizer updates). The whole buffer unless shard_master narrowed it.
  float* params() { return master_; }
  size_t master_begin() const { return master_begin_; }
  size_t master_end() const { return master_end_; }
  // ZeRO-1/2: from now on the master holds only [begin, end) (this rank's
  // shard; 4 S bytes instead of 4 P), kept in a buffer of its own beside
  // the full weights() the forward reads, also where the weights are fp32
  // (the CPU), so every backend runs one sharded path: AdamW updates the
  // shard and writes its range of weight_copy(); the others' ranges arrive
  // by an all-gather of weights(). Once only, before any step.
  void shard_master(size_t begin, size_t end);
  // The full fp32 gradient buffer, in Ops memory: allocated on first use
  // (this call, zero_grads, or a forward_backward without a sink), so a
  // ZeRO-2 run, whose gradients go to a GradientSink, never holds one.
  float* grads();
  bool holds_full_gradient() const { return grads_ != nullptr; }
  // The weights the ops read, in the backend's dtype, the whole buffer
  // (the same memory as params() on fp32 backends until shard_master).
  Buf weights() { return weights_; }
  // weights() when it is a buffer of its own beside the master (bf16
  // backends; any backend after shard_master), else null: what AdamW
  // refreshes alongside the master.
  Buf weight_copy() { return weights_.ptr == master_ ? Buf() : weights_; }
  // Refreshes weights() from params() (round to nearest) over
  // [begin, end), which the master must hold.
  void sync_weights(size_t begin, size_t end);
  void set_recompute(Recompute mode);
  Recompute recompute() const { return recompute_; }
  // All P parameters from the host: the master takes its range, the
  // weights all of them (rounded to nearest).
  void set_params(const std::vector<float>& host_params);
  // The master on the host, P values; an Error once it holds only a shard
  // (Trainer::master_params gathers the shards).
  std::vector<float> get_params() const;
  std::vector<float> get_grads() const;
  void zero_grads();

  // Loss only (no gradients).
  LossOutputs forward(const Batch& batch);
  // grads += d(loss_scale * sum_i loss_i)/dparams: into grads(), or, with a
  // sink, into the buffers it hands out segment by segment
  // (model/gradient_sink.h).
  LossOutputs forward_backward(const Batch& batch, float loss_scale,
                               GradientSink* sink = nullptr);
  // The segments a sink is given, in the order the backward closes them
  // (from the layout alone: memory checks before a model exists).
  std::vector<GradientSegment> gradient_segments() const;
  static std::vector<GradientSegment> gradient_segments(const ParamLayout& layout);
  // The most gradient floats open at once in a backward through a sink (the
  // scratch a sink that copies nothing ahead needs): the largest segment,
  // plus the embeddings when they are tied (open the whole backward).
  size_t gradient_scratch_floats() const;
  // logits [B*T, V] of every position, on the host.
  std::vector<float> forward_logits(const Batch& batch);

  // ---- generation over a paged KV cache ----
  // A cache shaped for this model (its layers, kv_dim and dtype).
  std::unique_ptr<KVCache> make_kv_cache(int block_size, int initial_blocks,
                                         int max_blocks);
  // Prefill: the tokens of several whole sequences packed one after another
  // (doc_ids number them; each a contiguous run with positions from 0). Each
  // token's key and value go to cache row cache_rows[i] (KVCache::append);
  // returns the logits [logit_rows.size(), V] of the listed rows, on the host.
  std::vector<float> prefill(KVCache& cache, const std::vector<int32_t>& tokens,
                             const std::vector<int32_t>& positions,
                             const std::vector<int32_t>& doc_ids,
                             const std::vector<int32_t>& cache_rows,
                             const std::vector<int32_t>& logit_rows);
  // Decode: one token per sequence s at positions[s], its key and value
  // written to cache_rows[s], attending to the tables[s]->length cached
  // tokens of its block table (the new one included); returns the logits
  // [S, V] (row stride V, activation dtype) in Ops memory, for
  // Ops::sample_rows: valid until the next decode_logits.
  CBuf decode_logits(KVCache& cache, const std::vector<int32_t>& tokens,
                     const std::vector<int32_t>& positions,
                     const std::vector<int32_t>& cache_rows,
                     const std::vector<const BlockTable*>& tables);
  // The same logits [S, V] downloaded to the host (fp32): checks and tests.
  std::vector<float> decode(KVCache& cache, const std::vector<int32_t>& tokens,
                            const std::vector<int32_t>& positions,
                            const std::vector<int32_t>& cache_rows,
                            const std::vector<const BlockTable*>& tables);
  // How decode steps run (model/decode_graphs.h): exact, padded to a bucket,
  // or padded and recorded (the default; CUDA graphs on the GPU, exact on a
  // backend that cannot record). --cuda-graphs off sets exact.
  void set_decode_mode(DecodeMode mode);
  DecodeMode decode_mode() const { return decode_mode_; }
  // Recordings made and steps replayed so far (tests, benchmarks).
  size_t decode_steps_recorded() const { return recordings_ ? recordings_->recorded() : 0; }
  size_t decode_steps_replayed() const { return recordings_ ? recordings_->replayed() : 0; }
  // Bytes of activation storage a training pass (forward + backward) over
  // `tokens` tokens allocates, without allocating: for memory checks before
  // a run starts.
  static size_t activation_bytes(const ModelConfig& config, size_t tokens,
                                 DType dtype = DType::f32, Recompute mode = Recompute::none);
  // One line per kind of memory this model holds on its backend (weights,
  // master, gradients, activations for `tokens` tokens, AdamW moments).
  // gradient_floats / moment_floats / master_floats: what this rank holds
  // of them (ZeRO, optim/zero.h: zero_memory_per_rank); the defaults are
  // one process's: the full gradient, two moments of it, and the master as
  // it is now (none apart from fp32 weights).
  std::string memory_report(size_t tokens, size_t gradient_floats = kAbsent,
                            size_t moment_floats = kAbsent,
                            size_t master_floats = kAbsent) const;

 private:
  struct Activations;
  LossOutputs run(const Batch& batch, bool backward, float loss_scale, float* logits_out);
  void ensure_activations(int B, int T);
  // The forward of prefill (tables empty; returns the logit rows on the
  // host) and decode (doc_ids empty; leaves every row's logits in
  // decode_logits_ and returns nothing).
  std::vector<float> cached_forward(KVCache& cache, const std::vector<int32_t>& tokens,
                                    const std::vector<int32_t>& positions,
                                    const std::vector<int32_t>& doc_ids,
                                    const std::vector<int32_t>& cache_rows,
                                    const std::vector<const BlockTable*>& tables,
                                    const std::vector<int32_t>& logit_rows);
  // Pieces of a layer shared by the training pass and generation.
  CBuf param(size_t offset) const { return offset == kAbsent ? CBuf() : CBuf(weights_ + offset); }
  float* grad(size_t offset) const;
  // A segment of the backward (model/gradient_sink.h): open maps its
  // offsets to the sink's buffer until close.
  void open_segment(size_t begin, size_t end);
  void close_segment(size_t begin, size_t end);
  size_t layer_begin(int layer) const;
  size_t layer_end(int layer) const;
  // The family's norm (RMSNorm, or LayerNorm with its mean saved).
  void norm_forward(Buf out, float* mean, float* rstd, CBuf in, size_t weight, size_t bias,
                    int N);
  // residual = a + b, then the family's norm of it (one fused op).
  void add_norm_forward(Buf residual, Buf out, float* mean, float* rstd, CBuf a, CBuf b,
                        size_t weight, size_t bias, int N);
  // Its backward, adding into din and the norm's parameter gradients.
  void norm_backward(Buf din, CBuf dout, CBuf in, const float* mean, const float* rstd,
                     size_t weight, size_t bias, int N);
  // The qkv projection, then Qwen3's q/k norms and RoPE; sets *q_out / *k_out
  // (and their row strides) to the tensors attention reads.
  // (`slot`: which stored layer's activations; `layer`: whose weights.)
  void qkv_forward(Activations& a, int slot, int layer, const int32_t* positions, int N,
                   CBuf* q_out, CBuf* k_out, int* q_stride, int* k_stride);
  // The MLP's up (and gate) projection and activation of norm2.
  void mlp_up_forward(Activations& a, int slot, int layer, int N);
  // The training pass's layer: norm1 must be in place; computes through the
  // attention branch, the fused residual + norm2, and the MLP's up part.
  void layer_forward_to_mlp(Activations& a, int layer, const int32_t* doc_ids, int N);
  // The MLP down projection of `layer` into a.branch.
  void mlp_down_forward(Activations& a, int slot, int layer, int N);
  // Recomputes, before the backward of `layer`, what recompute_ dropped.
  void recompute_layer(Activations& a, int layer, const int32_t* doc_ids, int N);

  ModelConfig config_;
  ParamLayout layout_;
  Ops& ops_;
  Buf weights_;              // backend dtype
  float* master_ = nullptr;  // fp32 (== weights_ on fp32 backends until shard_master)
  size_t master_begin_ = 0, master_end_ = 0;  // the parameters master_ holds
  float* grads_ = nullptr;   // full buffer, allocated by grads() on first use
  struct OpenSegment {
    size_t begin, end;
    float* base;  // gradient of flat position begin + i at base[i]
  };
  GradientSink* sink_ = nullptr;  // of the backward running now (null: grads_)
  std::vector<OpenSegment> open_segments_;
  Recompute recompute_ = Recompute::none;
  AttentionShape shape_;     // of the current training pass
  struct LayerNames {
    std::string forward, backward;  // profiler range names
  };
  std::vector<LayerNames> layer_names_;
  std::unique_ptr<Activations> acts_;         // training / scoring
  std::unique_ptr<Activations> decode_acts_;  // one layer's scratch for generation
  Buf decode_logits_;                         // decode's [S, V] logits (all rows at once)
  size_t decode_logits_rows_ = 0;
  int32_t* block_tables_ = nullptr;           // decode's [S, width] tables (Ops memory)
  size_t block_tables_size_ = 0;
  DecodeMode decode_mode_ = DecodeMode::recorded;
  // Reallocations of decode_acts_ and block_tables_ (recordings point at them).
  uint64_t decode_buffer_moves_ = 0;
  std::unique_ptr<DecodeRecordings> recordings_;  // created on the first recorded step
};

}  // namespace polaris
