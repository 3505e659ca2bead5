// CpuOps: the fp32 CPU reference implementation of Ops (model/ops.h).
//
// Plain loops parallelised with OpenMP; the forward and backward math of every
// op is written in a comment above it. Weights and activations are fp32
// (activation_dtype() == fp32): a bf16 buffer given to CpuOps is an error. One
// op family per file, named as its kernel file in cuda/ and its test:
//   model/ops/memory.cpp      alloc, upload/download, zero, copy, add, ...
//   model/ops/embedding.cpp   token (+ position) embedding
//   model/ops/layernorm.cpp   LayerNorm
//   model/ops/rmsnorm.cpp     RMSNorm
//   model/ops/matmul.cpp      linear layers
//   model/ops/rope.cpp        RoPE, and Qwen3's q/k RMSNorm + RoPE
//   model/ops/attention.cpp   causal attention (training and decode)
//   model/ops/activation.cpp  GELU, SwiGLU
//   model/ops/classifier.cpp  the fused softmax cross-entropy
//   model/ops/adamw.cpp       AdamW
//
// Determinism: no reduction's order depends on the thread schedule. Every
// output element (and every parameter-gradient element) is produced by one
// thread in a fixed loop order, or from fixed-size chunks reduced in a fixed
// order, so results are bitwise identical for any OMP_NUM_THREADS.
#pragma once
#include "model/ops.h"

namespace polaris {

class CpuOps : public Ops {
 public:
  std::string name() const override { return "cpu"; }
  DType activation_dtype() const override { return DType::f32; }
  bool host_memory() const override { return true; }

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

  void matmul_forward(Buf out, CBuf in, CBuf weight, CBuf bias, int N, int IC,
                      int OC) override;
  void matmul_backward(Buf din, float* dweight, float* dbias, CBuf dout, CBuf in, CBuf weight,
                       int N, int IC, int OC) override;

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
  void scatter_rows(Buf table, CBuf rows, int rows_stride, const int32_t* row_index, int n,
                    int width) override;
  void attention_decode(Buf out, CBuf q, int q_stride, const PagedKV& cache, int S,
                        int num_heads, int num_kv_heads, int head_dim) override;

  void gelu_forward(Buf out, CBuf in, size_t n) override;
  void gelu_backward(Buf din, CBuf dout, CBuf in, size_t n) override;
  void swiglu_forward(Buf out, CBuf gate_up, int N, int F) override;
  void swiglu_backward(Buf dgate_up, CBuf dout, CBuf gate_up, int N, int F) override;

  void cross_entropy(const LossArgs& args) override;

  void adamw_update(float* params, Buf copy, const float* grads, float* m, float* v, size_t n,
                    const AdamWArgs& args) override;
  void round_weight_copy(Buf copy, const float* params, size_t n,
                         const AdamWArgs& args) override;

};

// The matmul kernel every linear-layer pass reduces to (exposed for the
// benchmark and tests): C[m, p] (+)= bias[p] + sum_k A[m, k] * B[p, k]
// for A [M, K], B [P, K], C [M, P], all row-major. Each C element is one
// dot product computed by one thread, so the result is thread-count
// independent. bias may be null; accumulate adds into C instead of writing.
void cpu_matmul_nt(float* C, const float* A, const float* B, const float* bias, int M, int P,
                   int K, bool accumulate);

}  // namespace polaris
