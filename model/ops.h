// Ops: the interface the transformer is written against.
//
// The forward, backward and decode step of the model exist once
// (model/transformer.cpp) and call only these functions. Two implementations:
//   CpuOps  (model/ops/*.cpp): fp32, plain loops with OpenMP, the math of
//           each op written above it; the oracle every other implementation
//           is tested against.
//   CudaOps (cuda/*.cu): bf16 weights, activations and activation gradients,
//           fp32 accumulation in every kernel, fp32 parameter gradients,
//           master weights and AdamW moments; cuBLASLt matmuls.
//
// Typed buffers. An implementation picks the storage type of weights and
// activations (activation_dtype()); the transformer never assumes one. Buffers
// of that type travel as Buf / CBuf (a pointer and its dtype; `b + n` moves n
// elements, whatever their size). Everything that is fp32 on every backend —
// parameter gradients, master weights, AdamW moments, per-row statistics
// (mean, rstd, lse), losses — stays a plain float*. A float* converts to an
// fp32 Buf implicitly, so fp32 code reads as before.
//
// Conventions every implementation keeps:
//   - Pointers are in the implementation's memory (host for CPU, device for
//     CUDA); upload/download move data across, converting to and from fp32.
//   - Activations are row-major [N, C] with N = B*T tokens. Attention inputs
//     are [N, heads * head_dim] with the heads of one token side by side; a
//     row stride lets q, k and v be column ranges of one fused qkv buffer.
//   - Linear weights are [out, in]: out = in @ weight^T + bias.
//   - Parameter gradients (float*) ACCUMULATE (+=): they sum over micro-batches.
//   - Activation gradients are WRITTEN (=) — it saves the memset pass a sum
//     would need — except the input gradient of a norm, which is ADDED: that is
//     where the residual stream's gradient meets the branch's. A written
//     gradient may alias the gradient it is computed from where an op says so.
//   - A null gradient pointer means "not needed".
//   - Forward and backward are deterministic: the same inputs give the same
//     bits whatever the thread count (no float atomics on the GPU either).
//   - Fusions that pay on a GPU (residual add + norm, matmul + GELU, ...) are
//     members with a default composed from the plain ops, so the CPU reference
//     is their oracle. A fusion with no default says so and CpuOps implements
//     it from the same row helpers as the plain ops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/rope.h"
#include "model/sampling_math.h"

namespace polaris {

enum class DType : uint8_t { f32, bf16 };

inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::f32 ? "fp32" : "bf16"; }

// Throws an Error naming `what` (model/ops_dtype.cpp: keeps this header free
// of the error machinery).
[[noreturn]] void dtype_mismatch(const char* what, DType have, DType want);

// A typed view of Ops memory. Null when ptr is null.
struct Buf {
  void* ptr = nullptr;
  DType dtype = DType::f32;

  Buf() = default;
  Buf(std::nullptr_t) {}
  Buf(float* p) : ptr(p), dtype(DType::f32) {}
  Buf(void* p, DType t) : ptr(p), dtype(t) {}

  explicit operator bool() const { return ptr != nullptr; }
  // n elements further on (null stays null).
  Buf operator+(size_t n) const {
    return ptr ? Buf(static_cast<char*>(ptr) + n * dtype_size(dtype), dtype) : Buf();
  }
  // The pointer as fp32; throws when the buffer holds another type.
  float* f32() const {
    if (dtype != DType::f32) dtype_mismatch("f32()", dtype, DType::f32);
    return static_cast<float*>(ptr);
  }
};

// A read-only typed view. Any Buf converts to one.
struct CBuf {
  const void* ptr = nullptr;
  DType dtype = DType::f32;

  CBuf() = default;
  CBuf(std::nullptr_t) {}
  CBuf(const float* p) : ptr(p), dtype(DType::f32) {}
  CBuf(const void* p, DType t) : ptr(p), dtype(t) {}
  CBuf(Buf b) : ptr(b.ptr), dtype(b.dtype) {}

  explicit operator bool() const { return ptr != nullptr; }
  CBuf operator+(size_t n) const {
    return ptr ? CBuf(static_cast<const char*>(ptr) + n * dtype_size(dtype), dtype) : CBuf();
  }
  const float* f32() const {
    if (dtype != DType::f32) dtype_mismatch("f32()", dtype, DType::f32);
    return static_cast<const float*>(ptr);
  }
};

// Causal attention over B rows of T tokens. The *_stride fields are the
// elements between consecutive tokens' rows of q, k, v (and of their
// gradients); 0 means dense (heads * head_dim), so q, k and v can be column
// ranges of one [N, Q + 2 KV] projection.
struct AttentionShape {
  int B = 0, T = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int q_stride = 0, k_stride = 0, v_stride = 0;

  int q_row() const { return q_stride ? q_stride : num_heads * head_dim; }
  int k_row() const { return k_stride ? k_stride : num_kv_heads * head_dim; }
  int v_row() const { return v_stride ? v_stride : num_kv_heads * head_dim; }
};

// A paged KV cache as attention_decode reads it (one layer): the pools hold
// num_blocks blocks of block_size rows of num_kv_heads * head_dim; sequence
// s owns blocks block_table[s * table_width ...] in order (entries past its
// length are not read) and attends to its first lengths[s] rows.
struct PagedKV {
  CBuf keys, values;                  // [num_blocks, block_size, KVH * D]
  const int32_t* block_table = nullptr;  // [S, table_width] (Ops memory)
  const int32_t* lengths = nullptr;      // [S] (Ops memory)
  int table_width = 0, block_size = 0;
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
  CBuf logits;                           // [N, V] (activation dtype)
  const int32_t* targets = nullptr;      // [N]
  const float* weights = nullptr;        // [N] or null (all ones)
  const float* entropy_weights = nullptr;// [N] or null (no entropy term)
  float scale = 1.f;
  int N = 0, V = 0;
  float* losses = nullptr;               // [N] out (not scaled)
  float* logprobs = nullptr;             // [N] out, or null
  float* entropies = nullptr;            // [N] out, or null
  Buf dlogits;                           // [N, V] out (written), or null
};

struct AdamWArgs {
  float learning_rate = 0.f;
  float beta1 = 0.9f, beta2 = 0.95f, epsilon = 1e-8f;
  float weight_decay = 0.f;   // decoupled: param -= lr * wd * param
  float grad_scale = 1.f;     // multiplies every gradient first (clipping)
  int step = 1;               // 1-based, for bias correction
  // Rounding of the low-precision copy of the weights (AdamW's `copy`):
  // stochastic rounding keeps updates smaller than half a bf16 ulp alive on
  // average; seed it per step so a resumed run rounds the same way.
  bool stochastic_rounding = true;
  uint64_t rounding_seed = 0;
};

class Ops {
 public:
  virtual ~Ops() = default;
  virtual std::string name() const = 0;
  // The storage type of weights, activations and activation gradients.
  virtual DType activation_dtype() const = 0;
  // True when buffers are ordinary host memory (MPI can send them as they are).
  virtual bool host_memory() const = 0;
  // Waits until every op issued so far has finished (timing, profiling).
  virtual void synchronize() {}

  // ---- profiling (NVTX ranges and the profiler's capture window on the
  // GPU; nothing on the CPU). Ranges nest; OpsRange pairs them.
  virtual void range_push(const char* name) {}
  virtual void range_pop() {}
  virtual void profiler_start() {}
  virtual void profiler_stop() {}
  // The most memory this backend has held at once (0 where not tracked).
  virtual size_t peak_memory_bytes() const { return 0; }

  // ---- recording (CUDA graphs on the GPU; nothing on the CPU) ---------------
  // A backend that can record captures the ops issued between record_begin
  // and record_end, without running them, into a recording that replay()
  // issues again as one launch: the same ops with the same arguments and
  // pointers, reading whatever the memory holds at replay time. What it
  // saves is the per-op launch cost (hundreds of small kernels per decode
  // step). The rules while recording:
  //   - nothing may wait for the device or change memory: upload*, download,
  //     alloc_*, release, synchronize, sum_squares, and an op that would grow
  //     the backend's scratch throw an Error naming the op (the caller then
  //     calls record_cancel). Inputs go into fixed buffers before replay();
  //     outputs are read after it.
  //   - everything an op decides on the host from its arguments (algorithms,
  //     split counts, grid sizes) is frozen into the recording: a recording is
  //     valid only for calls with the same arguments. Run the sequence once
  //     unrecorded first, so every one-time setup (matmul plans, scratch
  //     growth) happens outside the recording.
  // A recording owns nothing it points at; its user keeps those buffers in
  // place or forgets it. replay() returns false, doing nothing, when memory
  // the backend owns and the recording uses (its scratch) has moved since
  // recording: forget it and record again.
  using Recording = int64_t;
  virtual bool can_record() const { return false; }
  virtual void record_begin();  // throws where !can_record()
  virtual Recording record_end();
  virtual void record_cancel() {}  // ends a recording begun, keeping nothing (never throws)
  virtual bool replay(Recording r);
  virtual void forget(Recording r) {}

  // ---- memory -------------------------------------------------------------
  virtual Buf alloc_buf(size_t n, DType dtype) = 0;  // zero-filled
  virtual int32_t* alloc_int(size_t n) = 0;          // zero-filled
  virtual void release(const void* p) = 0;
  float* alloc(size_t n) { return alloc_buf(n, DType::f32).f32(); }
  Buf alloc_activations(size_t n) { return alloc_buf(n, activation_dtype()); }
  // Host fp32 <-> Ops memory of any dtype (rounded to nearest on the way in).
  virtual void upload(Buf dst, const float* host_src, size_t n) = 0;
  virtual void upload_int(int32_t* dst, const int32_t* host_src, size_t n) = 0;
  virtual void download(float* host_dst, CBuf src, size_t n) = 0;
  virtual void zero(Buf p, size_t n) = 0;
  // dst = src, converting between dtypes (round to nearest).
  virtual void copy(Buf dst, CBuf src, size_t n) = 0;
  // out = a + b (the residual join; out may alias a or b)
  virtual void add(Buf out, CBuf a, CBuf b, size_t n) = 0;
  // dst += src (fp32 gradients)
  virtual void accumulate(float* dst, const float* src, size_t n) = 0;
  // x *= s (fp32 gradients)
  virtual void scale(float* x, float s, size_t n) = 0;
  // sum_i x_i^2 in double precision (gradient norms)
  virtual double sum_squares(const float* x, size_t n) = 0;

  // ---- embedding ----------------------------------------------------------
  // out[i] = token_table[tokens[i]] (+ position_table[positions[i]] when given)
  virtual void embedding_forward(Buf out, const int32_t* tokens, const int32_t* positions,
                                 CBuf token_table, CBuf position_table, int N, int C) = 0;
  // dtoken_table[tokens[i]] += dout[i]; dposition_table[positions[i]] += dout[i]
  virtual void embedding_backward(float* dtoken_table, float* dposition_table, CBuf dout,
                                  const int32_t* tokens, const int32_t* positions, int N,
                                  int C) = 0;

  // ---- normalisation ------------------------------------------------------
  // LayerNorm: out = (x - mean) * rstd * weight + bias, rstd = 1/sqrt(var + eps)
  virtual void layernorm_forward(Buf out, float* mean, float* rstd, CBuf in, CBuf weight,
                                 CBuf bias, int N, int C, float eps) = 0;
  // din += ..., dweight += ..., dbias += ...
  virtual void layernorm_backward(Buf din, float* dweight, float* dbias, CBuf dout, CBuf in,
                                  CBuf weight, const float* mean, const float* rstd, int N,
                                  int C) = 0;
  // RMSNorm: out = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps)
  virtual void rmsnorm_forward(Buf out, float* rstd, CBuf in, CBuf weight, int N, int C,
                               float eps) = 0;
  virtual void rmsnorm_backward(Buf din, float* dweight, CBuf dout, CBuf in, CBuf weight,
                                const float* rstd, int N, int C) = 0;
  // Fused residual join + norm: residual = a + b; out = norm(residual).
  // residual may alias a or b. Defaults: add, then the norm.
  virtual void add_layernorm_forward(Buf residual, Buf out, float* mean, float* rstd, CBuf a,
                                     CBuf b, CBuf weight, CBuf bias, int N, int C, float eps);
  virtual void add_rmsnorm_forward(Buf residual, Buf out, float* rstd, CBuf a, CBuf b,
                                   CBuf weight, int N, int C, float eps);

  // ---- linear layers ------------------------------------------------------
  // out[N, OC] = in[N, IC] @ weight[OC, IC]^T + bias[OC] (bias may be null).
  // q, k, v (and Qwen3's gate, up) are one call: their weights are adjacent
  // rows of the flat parameters (model/params.h).
  virtual void matmul_forward(Buf out, CBuf in, CBuf weight, CBuf bias, int N, int IC,
                              int OC) = 0;
  // din = dout @ weight (written);  dweight += dout^T @ in;  dbias += sum_rows(dout)
  virtual void matmul_backward(Buf din, float* dweight, float* dbias, CBuf dout, CBuf in,
                               CBuf weight, int N, int IC, int OC) = 0;
  // GELU epilogue: pre = in @ weight^T + bias; out = gelu(pre).
  // Default: matmul_forward, then gelu_forward.
  virtual void matmul_gelu_forward(Buf pre, Buf out, CBuf in, CBuf weight, CBuf bias, int N,
                                   int IC, int OC);
  // The backward of a matmul whose input was gelu(pre), through the GELU:
  //   dpre = gelu'(pre) * (dout @ weight) (written); dweight, dbias as matmul_backward.
  // Default: matmul_backward into dpre, then gelu_backward in place.
  virtual void matmul_backward_gelu(Buf dpre, float* dweight, float* dbias, CBuf dout, CBuf in,
                                    CBuf pre, CBuf weight, int N, int IC, int OC);

  // ---- rotary position embedding -------------------------------------------
  // Rotates pairs (x[i], x[i + D/2]) of every head by angle pos * inv_freq_i
  // (the "rotate_half" convention of Qwen/Llama), inv_freq_i = theta^(-2i/D) or
  // YaRN's blend, cos/sin times rope.attention_scale (model/rope.h). out may alias in.
  virtual void rope_forward(Buf out, CBuf in, const int32_t* positions, int N, int heads,
                            int head_dim, const RopeParams& rope) = 0;
  // din = R(pos)^T dout (written; din may alias dout)
  virtual void rope_backward(Buf din, CBuf dout, const int32_t* positions, int N, int heads,
                             int head_dim, const RopeParams& rope) = 0;
  // Qwen3's per-head q/k RMSNorm then RoPE, reading q and k as column ranges
  // of rows `in_stride` apart (the fused qkv projection) and writing dense
  // q_out [N, H*D], k_out [N, KVH*D]; q_rstd [N*H], k_rstd [N*KVH]:
  //   q_out = rope(rmsnorm(q) * q_weight), the same for k.
  // No default (the inputs are strided); CpuOps composes the row helpers of
  // its rmsnorm and rope.
  virtual void qk_norm_rope_forward(Buf q_out, Buf k_out, float* q_rstd, float* k_rstd, CBuf q,
                                    CBuf k, int in_stride, CBuf q_weight, CBuf k_weight,
                                    const int32_t* positions, int N, int heads, int kv_heads,
                                    int head_dim, float eps, const RopeParams& rope) = 0;
  // Its backward: dq, dk (rows `in_stride` apart, written) from the gradients
  // of q_out and k_out; dq_weight, dk_weight accumulate.
  virtual void qk_norm_rope_backward(Buf dq, Buf dk, float* dq_weight, float* dk_weight,
                                     CBuf dq_out, CBuf dk_out, CBuf q, CBuf k, int in_stride,
                                     CBuf q_weight, CBuf k_weight, const float* q_rstd,
                                     const float* k_rstd, const int32_t* positions, int N,
                                     int heads, int kv_heads, int head_dim, const RopeParams& rope) = 0;

  // ---- attention ----------------------------------------------------------
  // Causal softmax attention within each document of a row: token t attends
  // to s <= t with doc_ids[s] == doc_ids[t] (doc_ids null: one document per
  // row). A document is one contiguous run of a row (as packing makes them):
  // kernels may find a token's first visible key by scanning back to the
  // start of its run. Query head h reads key/value head h / (num_heads /
  // num_kv_heads).
  //   out = softmax(q k^T / sqrt(D)) v (dense [N, H*D]);
  //   lse[b, h, t] = log-sum-exp of the scaled scores
  virtual void attention_forward(Buf out, float* lse, CBuf q, CBuf k, CBuf v,
                                 const int32_t* doc_ids, const AttentionShape& shape) = 0;
  // dq, dk, dv written, with the strides of q, k, v.
  virtual void attention_backward(Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q, CBuf k, CBuf v,
                                  CBuf out, const float* lse, const int32_t* doc_ids,
                                  const AttentionShape& shape) = 0;

  // ---- decoding with a paged KV cache (sampling, model/kv_cache.h) ----------
  // table[row_index[i], :] = rows[i * rows_stride + :width] for i < n (writes
  // new keys/values into the cache; rows of the table are `width` wide). A
  // negative row_index[i] skips row i (a padded row of a decode bucket).
  virtual void scatter_rows(Buf table, CBuf rows, int rows_stride, const int32_t* row_index,
                            int n, int width) = 0;
  // One new query per sequence s against its cached keys and values, read
  // through its block table (see PagedKV):
  //   q [S, q_stride] (the heads in the first num_heads*D columns);
  //   key j < lengths[s] of sequence s is row (j % block_size) of block
  //   block_table[s * table_width + j / block_size] of the pools;
  //   out[s] = softmax(q_s K_s^T / sqrt(D)) V_s over its lengths[s] keys
  //   (the new token's included; no key at all: zeros).
  virtual void attention_decode(Buf out, CBuf q, int q_stride, const PagedKV& cache, int S,
                                int num_heads, int num_kv_heads, int head_dim) = 0;

  // ---- sampling (model/sampler.h) --------------------------------------------
  // The next token of n sequences from their rows of logits, in Ops memory:
  //   tokens[i] = sample_token(logits + row_indices[i] * row_stride, V, params[i])
  //   logprobs[i] = log p(tokens[i]) under softmax(row) at temperature 1, no
  //                 cuts (when logprobs is not null)
  // tokens, logprobs, row_indices and params are HOST memory: a decode step
  // moves n tokens across, not n * V logits. Every implementation picks
  // exactly sample_token's token for the same (fp32-converted) logits — the
  // integer weights and the draw are model/sampling_math.h's — so generation
  // is reproducible across backends; a log-prob may differ in its last bit
  // (a sum of exps in another order). A row with no finite logit throws
  // sample_token's Error. Default: download the rows, sample_token on each
  // (parallel over rows).
  virtual void sample_rows(int32_t* tokens, float* logprobs, CBuf logits, int row_stride,
                           const int32_t* row_indices, const SampleRowParams* params, int n,
                           int V);

  // ---- MLP activations ----------------------------------------------------
  // GELU, tanh approximation (GPT-2's "gelu_new"). out may alias in.
  virtual void gelu_forward(Buf out, CBuf in, size_t n) = 0;
  // din = dout * gelu'(in) (written; din may alias dout)
  virtual void gelu_backward(Buf din, CBuf dout, CBuf in, size_t n) = 0;
  // SwiGLU on the fused gate|up projection gate_up [N, 2F] (gate in columns
  // 0..F-1, up in F..2F-1): out [N, F] = silu(gate) * up.
  virtual void swiglu_forward(Buf out, CBuf gate_up, int N, int F) = 0;
  // dgate_up [N, 2F] written.
  virtual void swiglu_backward(Buf dgate_up, CBuf dout, CBuf gate_up, int N, int F) = 0;

  // ---- loss ---------------------------------------------------------------
  virtual void cross_entropy(const LossArgs& args) = 0;

  // ---- optimizer ----------------------------------------------------------
  // AdamW on n fp32 master parameters with their fp32 moments m, v. When
  // `copy` is given (a backend whose weights are not fp32), it receives the
  // updated parameters in its dtype, rounded as args says.
  virtual void adamw_update(float* params, Buf copy, const float* grads, float* m, float* v,
                            size_t n, const AdamWArgs& args) = 0;
  // copy = params in copy's dtype, rounded exactly as adamw_update rounds its
  // copy with the same args (stochastic_rounding, rounding_seed): a resumed
  // run rebuilds the weights the uninterrupted run had. No-op on a backend
  // whose weights are the fp32 params themselves (copy null).
  virtual void round_weight_copy(Buf copy, const float* params, size_t n,
                                 const AdamWArgs& args) = 0;
};

// Names the ops issued during its lifetime in a profiler timeline.
class OpsRange {
 public:
  OpsRange(Ops& ops, const char* name) : ops_(ops) { ops_.range_push(name); }
  ~OpsRange() { ops_.range_pop(); }
  OpsRange(const OpsRange&) = delete;
  OpsRange& operator=(const OpsRange&) = delete;

 private:
  Ops& ops_;
};

}  // namespace polaris
