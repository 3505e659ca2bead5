// cuDNN's fused causal attention (flash-attention forward and backward through
// the cuDNN 9 backend graph API) as an alternative to cuda/attention.cu's own
// kernels. The course note is at the top of cuda/cudnn_attention.cu.
//
// Plain C++ (no CUDA or cuDNN types) so host code and the tests include it.
// Every function exists in every build: without POLARIS_HAVE_CUDNN,
// cudnn_attention_supported() says "built without cuDNN" and the others throw.
//
// Use: ask cudnn_attention_supported() first and fall back to the own kernels
// when it returns false (the reason says why). The math, the layouts and the
// written-gradient semantics are exactly Ops::attention_forward /
// attention_backward's (model/ops.h); lse is fp32 [B, H, T], natural log.
#pragma once
#include <cstdint>
#include <string>

#include "cuda/cuda_ops.h"
#include "model/ops.h"

namespace polaris {

struct CudaContext;

// True when cuDNN can run this shape; otherwise false with the reason in
// *why (may be null). Pure host check, no device work: head_dim (multiple of
// 8, <= 128), GQA (num_heads a multiple of num_kv_heads), row strides
// (multiples of 8 elements: 16-byte rows for the tensor-core loads), packed
// documents (doc_ids non-null: not supported, see the note), the backward's
// dP workspace (B * H * T^2 * 2 bytes must stay under 1 GiB).
bool cudnn_attention_supported(const AttentionShape& shape, const int32_t* doc_ids,
                               std::string* why);

// Ops::attention_forward on cuDNN: out dense [N, H*D] bf16, lse fp32 [B, H, T]
// (or null: not needed).
// q, k, v bf16 with the shape's row strides. Throws an Error naming the op
// and the shape when the shape is unsupported or cuDNN fails.
void cudnn_attention_forward(CudaContext& ctx, Buf out, float* lse, CBuf q, CBuf k, CBuf v,
                             const int32_t* doc_ids, const AttentionShape& shape);

// Ops::attention_backward on cuDNN: dq, dk, dv WRITTEN with the strides of
// q, k, v (a null one is computed into scratch and dropped). Deterministic.
void cudnn_attention_backward(CudaContext& ctx, Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q,
                              CBuf k, CBuf v, CBuf out, const float* lse,
                              const int32_t* doc_ids, const AttentionShape& shape);

// The same through a CudaOps (for code that holds the Ops, e.g. the tests).
inline void cudnn_attention_forward(CudaOps& ops, Buf out, float* lse, CBuf q, CBuf k, CBuf v,
                                    const int32_t* doc_ids, const AttentionShape& shape) {
  cudnn_attention_forward(ops.context(), out, lse, q, k, v, doc_ids, shape);
}
inline void cudnn_attention_backward(CudaOps& ops, Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q,
                                     CBuf k, CBuf v, CBuf out, const float* lse,
                                     const int32_t* doc_ids, const AttentionShape& shape) {
  cudnn_attention_backward(ops.context(), dq, dk, dv, dout, q, k, v, out, lse, doc_ids, shape);
}

// Frees the cuDNN handle, the cached plans and their workspaces held for
// this context (call it before the context's device memory goes away, e.g.
// from ~CudaContext; harmless when nothing is held or without cuDNN).
void cudnn_attention_release(CudaContext& ctx);

}  // namespace polaris
