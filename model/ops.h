// Ops: the interface the transformer is written against.
//
// The forward, backward and decode step of the model exist once
// (model/transformer.cpp) and call only these functions. One implementation
// in this build:
//   CpuOps  (model/cpu_ops.cpp): fp32, plain loops with OpenMP, the math of
//           each op written above it; the reference any other
//           implementation would be tested against.
// A CUDA implementation (device pointers, same interface) is not in this
// build; see cuda/README.md for what exists there.
//
// Conventions every implementation keeps:
//   - Pointers are in the implementation's memory (host for CPU, device for
//     CUDA); alloc/upload/download move data across.
//   - Activations are row-major [N, C] with N = B*T tokens. Attention inputs
//     are [N, heads * head_dim] with the heads of one token side by side.
//   - Linear weights are [out, in]: out = in @ weight^T + bias.
//   - Backward ops ADD into every gradient they produce (parameter gradients
//     accumulate over micro-batches; input gradients meet at residual joins),
//     so callers zero what must start from zero. A null gradient pointer
//     means "not needed".
//   - Forward and backward are deterministic: the same inputs give the same
//     bits whatever the thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace polaris {

struct AttentionShape {
  int B = 0, T = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
};

// One fused pass of the weighted next-token loss over N rows of V logits.
//   p = softmax(logits_i);  logprob_i = log p[target_i];  H_i = -sum_j p_j log p_j
//   loss_i = weight_i * (-logprob_i) - entropy_weight_i * H_i
// and, when dlogits is given, d(scale * sum_i loss_i)/dlogits:
//   dlogits_ij = scale * (weight_i * (p_j - [j == target_i])
//                         + entropy_weight_i * p_j * (log p_j + H_i))
// A target < 0 contributes nothing (loss, logprob and entropy 0, zero gradient).
// dlogits may alias logits (the logits are then overwritten by their gradient).
struct LossArgs {
  const float* logits = nullptr;         // [N, V]
  const int32_t* targets = nullptr;      // [N]
  const float* weights = nullptr;        // [N] or null (all ones)
  const float* entropy_weights = nullptr;// [N] or null (no entropy term)
  float scale = 1.f;
  int N = 0, V = 0;
  float* losses = nullptr;               // [N] out (not scaled)
  float* logprobs = nullptr;             // [N] out, or null
  float* entropies = nullptr;            // [N] out, or null
  float* dlogits = nullptr;              // [N, V] out (overwritten), or null
};

struct AdamWArgs {
  float learning_rate = 0.f;
  float beta1 = 0.9f, beta2 = 0.95f, epsilon = 1e-8f;
  float weight_decay = 0.f;   // decoupled: param -= lr * wd * param
  float grad_scale = 1.f;     // multiplies every gradient first (clipping)
  int step = 1;               // 1-based, for bias correction
};

class Ops {
 public:
  virtual ~Ops() = default;
  virtual std::string name() const = 0;

  // ---- memory -------------------------------------------------------------
  virtual float* alloc(size_t n) = 0;          // zero-filled
  virtual int32_t* alloc_int(size_t n) = 0;    // zero-filled
  virtual void release(void* p) = 0;
  virtual void upload(float* dst, const float* host_src, size_t n) = 0;
  virtual void upload_int(int32_t* dst, const int32_t* host_src, size_t n) = 0;
  virtual void download(float* host_dst, const float* src, size_t n) = 0;
  virtual void zero(float* p, size_t n) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  // out = a + b (the residual join; out may alias a or b)
  virtual void add(float* out, const float* a, const float* b, size_t n) = 0;
  // dst += src
  virtual void accumulate(float* dst, const float* src, size_t n) = 0;
  // x *= s
  virtual void scale(float* x, float s, size_t n) = 0;
  // sum_i x_i^2 in double precision (gradient norms)
  virtual double sum_squares(const float* x, size_t n) = 0;

  // ---- embedding ----------------------------------------------------------
  // out[i] = token_table[tokens[i]] (+ position_table[positions[i]] when given)
  virtual void embedding_forward(float* out, const int32_t* tokens, const int32_t* positions,
                                 const float* token_table, const float* position_table,
                                 int N, int C) = 0;
  virtual void embedding_backward(float* dtoken_table, float* dposition_table,
                                  const float* dout, const int32_t* tokens,
                                  const int32_t* positions, int N, int C) = 0;

  // ---- normalisation ------------------------------------------------------
  // LayerNorm: out = (x - mean) * rstd * weight + bias, rstd = 1/sqrt(var + eps)
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* in,
                                 const float* weight, const float* bias, int N, int C,
                                 float eps) = 0;
  virtual void layernorm_backward(float* din, float* dweight, float* dbias, const float* dout,
                                  const float* in, const float* weight, const float* mean,
                                  const float* rstd, int N, int C) = 0;
  // RMSNorm: out = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps)
  // (also the per-head q/k norm of Qwen3: N = tokens * heads, C = head_dim)
  virtual void rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight,
                               int N, int C, float eps) = 0;
  virtual void rmsnorm_backward(float* din, float* dweight, const float* dout, const float* in,
                                const float* weight, const float* rstd, int N, int C) = 0;

  // ---- linear layers ------------------------------------------------------
  // out[N, OC] = in[N, IC] @ weight[OC, IC]^T + bias[OC] (bias may be null)
  virtual void matmul_forward(float* out, const float* in, const float* weight,
                              const float* bias, int N, int IC, int OC) = 0;
  // din += dout @ weight;  dweight += dout^T @ in;  dbias += sum_rows(dout)
  virtual void matmul_backward(float* din, float* dweight, float* dbias, const float* dout,
                               const float* in, const float* weight, int N, int IC, int OC) = 0;

  // ---- rotary position embedding -------------------------------------------
  // Rotates pairs (x[i], x[i + D/2]) of every head by angle pos * theta^(-2i/D)
  // (the "rotate_half" convention of Qwen/Llama).
  virtual void rope_forward(float* out, const float* in, const int32_t* positions, int N,
                            int heads, int head_dim, float theta) = 0;
  // din += R(pos)^T dout
  virtual void rope_backward(float* din, const float* dout, const int32_t* positions, int N,
                             int heads, int head_dim, float theta) = 0;

  // ---- attention ----------------------------------------------------------
  // Causal softmax attention within each document of a row: token t attends
  // to s <= t with doc_ids[s] == doc_ids[t] (doc_ids null: one document per
  // row). Query head h reads key/value head h / (num_heads / num_kv_heads).
  //   out = softmax(q k^T / sqrt(D)) v;  lse[b, h, t] = log-sum-exp of the scores
  virtual void attention_forward(float* out, float* lse, const float* q, const float* k,
                                 const float* v, const int32_t* doc_ids,
                                 const AttentionShape& shape) = 0;
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout,
                                  const float* q, const float* k, const float* v,
                                  const float* out, const float* lse, const int32_t* doc_ids,
                                  const AttentionShape& shape) = 0;

  // ---- decoding with a KV cache (sampling) ---------------------------------
  // table[row_index[i], :] = rows[i, :] for i < n (writes new keys/values
  // into the cache; rows of the table are `width` floats).
  virtual void scatter_rows(float* table, const float* rows, const int32_t* row_index, int n,
                            int width) = 0;
  // One new query per sequence s against its cache:
  //   q [S, num_heads*D]; k_cache, v_cache [S, max_len, num_kv_heads*D];
  //   lengths[s] = cached positions to attend to (the new token's included).
  //   out[s] = softmax(q_s K_s^T / sqrt(D)) V_s over the first lengths[s] rows.
  virtual void attention_decode(float* out, const float* q, const float* k_cache,
                                const float* v_cache, const int32_t* lengths, int S,
                                int max_len, int num_heads, int num_kv_heads,
                                int head_dim) = 0;

  // ---- MLP activations ----------------------------------------------------
  // GELU, tanh approximation (GPT-2's "gelu_new")
  virtual void gelu_forward(float* out, const float* in, size_t n) = 0;
  virtual void gelu_backward(float* din, const float* dout, const float* in, size_t n) = 0;
  // SwiGLU: out = silu(gate) * up
  virtual void swiglu_forward(float* out, const float* gate, const float* up, size_t n) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                               const float* up, size_t n) = 0;

  // ---- loss ---------------------------------------------------------------
  virtual void cross_entropy(const LossArgs& args) = 0;

  // ---- optimizer ----------------------------------------------------------
  // AdamW on n parameters with their fp32 moments m, v.
  virtual void adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                            const AdamWArgs& args) = 0;
};

}  // namespace polaris
