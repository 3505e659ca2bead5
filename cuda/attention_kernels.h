// The attention implementations behind CudaOps::attention_forward/backward
// (the dispatch is in cuda/flash_attention.cu):
//   - simple_attention_*: the CUDA-core fused attention of cuda/attention.cu,
//     any head_dim in 1..256, any row stride and alignment;
//   - the flash kernels (tensor cores, head_dim 64 and 128) live in
//     cuda/flash_attention.cu and fall back to the simple ones for shapes
//     they cannot take.
// Same arguments and semantics as the Ops members (model/ops.h).
#pragma once
#include <cstdint>
#include <string>

#include "model/ops.h"

namespace polaris {

struct CudaContext;

void simple_attention_forward(CudaContext& ctx, Buf out, float* lse, CBuf q, CBuf k, CBuf v,
                              const int32_t* doc_ids, const AttentionShape& shape);
void simple_attention_backward(CudaContext& ctx, Buf dq, Buf dk, Buf dv, CBuf dout, CBuf q,
                               CBuf k, CBuf v, CBuf out, const float* lse,
                               const int32_t* doc_ids, const AttentionShape& shape);

// Helpers of cuda/attention.cu shared with the flash kernels.
std::string attention_shape_string(const AttentionShape& shape);
// Throws an Error naming `op` and the shape for an invalid shape.
void check_attention_shape(const AttentionShape& shape, const char* op);
// doc_start[b*T + t] = the first token of t's document in row b (B blocks on
// the context's stream).
void attention_doc_start(CudaContext& ctx, int* doc_start, const int32_t* doc_ids, int B, int T,
                         const char* op, const std::string& shape);

}  // namespace polaris
