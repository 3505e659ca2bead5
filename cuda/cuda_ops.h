// CudaOps: the CUDA implementation of Ops (model/ops.h).
//
// Storage: weights, activations and activation gradients in bf16; parameter
// gradients, master weights, AdamW moments and per-row statistics in fp32.
// Every kernel accumulates in fp32. Every op is issued on one CUDA stream
// (the context's), in order, so the transformer needs no synchronisation of
// its own; download() and sum_squares() wait for the stream.
//
// One file per op family, each holding its kernels and its CudaOps members:
//   cuda/memory.cu      alloc, upload/download (with dtype conversion), zero,
//                       copy, add, accumulate, scale, sum_squares
//   cuda/embedding.cu   embedding forward, deterministic backward
//   cuda/layernorm.cu   LayerNorm (and add + LayerNorm) forward/backward
//   cuda/rmsnorm.cu     RMSNorm (and add + RMSNorm) forward/backward
//   cuda/matmul.cu      cuBLASLt matmuls with bias / GELU / dGELU / bias-grad epilogues
//   cuda/rope.cu        RoPE, and Qwen3's per-head q/k RMSNorm + RoPE
//   cuda/attention.cu   fused attention forward/backward, KV-cache row writes
//   cuda/paged_attention.cu  decode attention over the paged KV cache
//   cuda/flash_attention.cu  tensor-core flash attention; attention dispatch
//   cuda/activation.cu  GELU and SwiGLU
//   cuda/classifier.cu  fused softmax cross-entropy over bf16 logits
//   cuda/sampling.cu    next-token sampling of a batch of rows (sample_token's exact choice)
//   cuda/adamw.cu       fused AdamW with stochastic rounding to bf16
//   cuda/profiling.cu   NVTX ranges, the profiler capture window, peak memory
//   cuda/graph.cu       recordings: stream capture into CUDA graphs, replay
//
// This header is plain C++ (no CUDA types) so host code and tests include it;
// the CUDA state lives in CudaContext (cuda/context.cuh).
#pragma once
#include <memory>
#include <string>

#include "model/ops.h"

namespace polaris {

struct CudaContext;

class CudaOps : public Ops {
 public:
  // Uses device `device` (throws an Error naming it when it cannot).
  explicit CudaOps(int device = 0);
  ~CudaOps() override;

  std::string name() const override { return "cuda"; }
  DType activation_dtype() const override { return DType::bf16; }
  bool host_memory() const override { return false; }
  void synchronize() override;
  void range_push(const char* name) override;   // cuda/profiling.cu
  void range_pop() override;
  void profiler_start() override;
  void profiler_stop() override;
  size_t peak_memory_bytes() const override;
  CudaContext& context() { return *context_; }

  bool can_record() const override { return true; }  // cuda/graph.cu
  void record_begin() override;
  Recording record_end() override;
  void record_cancel() override;
  bool replay(Recording r) override;
  void forget(Recording r) override;

  Buf alloc_buf(size_t n, DType dtype) override;
  int32_t* alloc_int(size_t n) override;
  void release(const void* p) override;
  void upload(Buf dst, const float* host_src, size_t n) override;
  void upload_int(int32_t* dst, const int32_t* host_src, size_t n) override;
  void download(float* host_dst, CBuf src, size_t n) override;
  void zero(Buf p, size_t n) override;
  void copy(Buf dst, CBuf src, size_t n) override;
  void add(Buf out, CBuf a, CBuf b, size_t n) override;
  void accumulate(float* dst, const float* src, size_t n) override;
  void scale(float* x, float s, size_t n) override;
  double sum_squares(const float* x, size_t n) override;

  void embedding_forward(Buf out, const int32_t* tokens, const int32_t* positions,
                         CBuf token_table, CBuf position_table, int N, int C) override;
  void embedding_backward(float* dtoken_table, float* dposition_table, CBuf dout,
                          const int32_t* tokens, const int32_t* positions, int N,
                          int C) override;

  void layernorm_forward(Buf out, float* mean, float* rstd, CBuf in, CBuf weight, CBuf bias,
                         int N, int C, float eps) override;
  void layernorm_backward(Buf din, float* dweight, float* dbias, CBuf dout, CBuf in,
                          CBuf weight, const float* mean, const float* rstd, int N,
                          int C) override;
  void rmsnorm_forward(Buf out, float* rstd, CBuf in, CBuf weight, int N, int C,
                       float eps) override;
  void rmsnorm_backward(Buf din, float* dweight, CBuf dout, CBuf in, CBuf weight,
                        const float* rstd, int N, int C) override;
  void add_layernorm_forward(Buf residual, Buf out, float* mean, float* rstd, CBuf a, CBuf b,
                             CBuf weight, CBuf bias, int N, int C, float eps) override;
  void add_rmsnorm_forward(Buf residual, Buf out, float* rstd, CBuf a, CBuf b, CBuf weight,
                           int N, int C, float eps) override;

  void matmul_forward(Buf out, CBuf in, CBuf weight, CBuf bias, int N, int IC,
                      int OC) override;
  void matmul_backward(Buf din, float* dweight, float* dbias, CBuf dout, CBuf in, CBuf weight,
                       int N, int IC, int OC) override;
  void matmul_gelu_forward(Buf pre, Buf out, CBuf in, CBuf weight, CBuf bias, int N, int IC,
                           int OC) override;
  void matmul_backward_gelu(Buf dpre, float* dweight, float* dbias, CBuf dout, CBuf in,
                            CBuf pre, CBuf weight, int N, int IC, int OC) override;

  void rope_forward(Buf out, CBuf in, const int32_t* positions, int N, int heads, int head_dim,
                    const RopeParams& rope) override;
  void rope_backward(Buf din, CBuf dout, const int32_t* positions, int N, int heads,
                     int head_dim, const RopeParams& rope) override;
  void qk_norm_rope_forward(Buf q_out, Buf k_out, float* q_rstd, float* k_rstd, CBuf q, CBuf k,
                            int in_stride, CBuf q_weight, CBuf k_weight,
                            const int32_t* positions, int N, int heads, int kv_heads,
                            int head_dim, float eps, const RopeParams& rope) override;
  void qk_norm_rope_backward(Buf dq, Buf dk, float* dq_weight, float* dk_weight, CBuf dq_out,
                             CBuf dk_out, CBuf q, CBuf k, int in_stride, CBuf q_weight,
                             CBuf k_weight, const float* q_rstd, const float* k_rstd,
                             const int32_t* positions, int N, int heads, int kv_heads,
                             int head_dim, const RopeParams& rope) override;

  void attention_forward(Buf out, float* lse, CBuf q, CBuf k, CBuf v, const int32_t* doc_ids,
                         const AttentionShape& shape) override;
  void attention_backward(Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q, CBuf k, CBuf v, CBuf out,
                          const float* lse, const int32_t* doc_ids,
                          const AttentionShape& shape) override;
  // Attention implementation (cuda/flash_attention.cu): "flash" (default:
  // tensor cores for head_dim 64/128, else the simple kernels) or "simple".
  void set_attention(const std::string& impl);
  std::string attention() const { return attention_impl_; }
  void scatter_rows(Buf table, CBuf rows, int rows_stride, const int32_t* row_index, int n,
                    int width) override;
  void attention_decode(Buf out, CBuf q, int q_stride, const PagedKV& cache, int S,
                        int num_heads, int num_kv_heads, int head_dim) override;

  void sample_rows(int32_t* tokens, float* logprobs, CBuf logits, int row_stride,
                   const int32_t* row_indices, const SampleRowParams* params, int n,
                   int V) override;

  void gelu_forward(Buf out, CBuf in, size_t n) override;
  void gelu_backward(Buf din, CBuf dout, CBuf in, size_t n) override;
  void swiglu_forward(Buf out, CBuf gate_up, int N, int F) override;
  void swiglu_backward(Buf dgate_up, CBuf dout, CBuf gate_up, int N, int F) override;

  void cross_entropy(const LossArgs& args) override;

  void adamw_update(float* params, Buf copy, const float* grads, float* m, float* v, size_t n,
                    const AdamWArgs& args) override;
  void round_weight_copy(Buf copy, const float* params, size_t n,
                         const AdamWArgs& args) override;

 private:
  std::unique_ptr<CudaContext> context_;
  std::string attention_impl_ = "flash";
};

}  // namespace polaris
