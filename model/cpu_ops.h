// CpuOps: the fp32 CPU reference implementation of Ops (model/ops.h).
//
// Plain loops parallelised with OpenMP; the forward and backward math of every
// op is written in a comment above it. One op family per file:
//   model/cpu_ops.cpp            memory, elementwise, embedding, norms,
//                                activations, loss, optimizer
//   model/cpu_ops_matmul.cpp     linear layers
//   model/cpu_ops_attention.cpp  rotary embedding and attention
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

  float* alloc(size_t n) override;
  int32_t* alloc_int(size_t n) override;
  void release(void* p) override;
  void upload(float* dst, const float* host_src, size_t n) override;
  void upload_int(int32_t* dst, const int32_t* host_src, size_t n) override;
  void download(float* host_dst, const float* src, size_t n) override;
  void zero(float* p, size_t n) override;
  void copy(float* dst, const float* src, size_t n) override;
  void add(float* out, const float* a, const float* b, size_t n) override;
  void accumulate(float* dst, const float* src, size_t n) override;
  void scale(float* x, float s, size_t n) override;
  double sum_squares(const float* x, size_t n) override;

  void embedding_forward(float* out, const int32_t* tokens, const int32_t* positions,
                         const float* token_table, const float* position_table, int N,
                         int C) override;
  void embedding_backward(float* dtoken_table, float* dposition_table, const float* dout,
                          const int32_t* tokens, const int32_t* positions, int N,
                          int C) override;

  void layernorm_forward(float* out, float* mean, float* rstd, const float* in,
                         const float* weight, const float* bias, int N, int C,
                         float eps) override;
  void layernorm_backward(float* din, float* dweight, float* dbias, const float* dout,
                          const float* in, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override;
  void rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight, int N,
                       int C, float eps) override;
  void rmsnorm_backward(float* din, float* dweight, const float* dout, const float* in,
                        const float* weight, const float* rstd, int N, int C) override;

  void matmul_forward(float* out, const float* in, const float* weight, const float* bias,
                      int N, int IC, int OC) override;
  void matmul_backward(float* din, float* dweight, float* dbias, const float* dout,
                       const float* in, const float* weight, int N, int IC, int OC) override;

  void rope_forward(float* out, const float* in, const int32_t* positions, int N, int heads,
                    int head_dim, float theta) override;
  void rope_backward(float* din, const float* dout, const int32_t* positions, int N, int heads,
                     int head_dim, float theta) override;

  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                         const int32_t* doc_ids, const AttentionShape& shape) override;
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                          const float* k, const float* v, const float* out, const float* lse,
                          const int32_t* doc_ids, const AttentionShape& shape) override;

  void scatter_rows(float* table, const float* rows, const int32_t* row_index, int n,
                    int width) override;
  void attention_decode(float* out, const float* q, const float* k_cache, const float* v_cache,
                        const int32_t* lengths, int S, int max_len, int num_heads,
                        int num_kv_heads, int head_dim) override;

  void gelu_forward(float* out, const float* in, size_t n) override;
  void gelu_backward(float* din, const float* dout, const float* in, size_t n) override;
  void swiglu_forward(float* out, const float* gate, const float* up, size_t n) override;
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                       const float* up, size_t n) override;

  void cross_entropy(const LossArgs& args) override;

  void adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
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
