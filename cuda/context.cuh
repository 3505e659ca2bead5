// The shared CUDA plumbing every kernel file of CudaOps uses:
//   - CudaContext: the device, the one stream every op runs on, the cuBLASLt
//     handle and workspace, the matmul plan cache (cuda/matmul.cu);
//   - checks that turn any CUDA / cuBLASLt status into one polaris::Error line
//     naming the op and its shape;
//   - bf16 <-> fp32 helpers and the dtype checks of the typed buffers;
//   - warp and block reductions in fp32.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "cuda/cuda_ops.h"
#include "src/common/error.h"

namespace polaris {

using bf16 = __nv_bfloat16;

struct MatmulPlanCache;  // cuda/matmul.cu
// Deletes the cache where its type is complete (cuda/matmul.cu), so the
// context can own it through an incomplete type.
struct MatmulPlanCacheDeleter {
  void operator()(MatmulPlanCache* p) const;
};

struct CudaContext {
  int device = 0;
  int sm_count = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  void* workspace = nullptr;  // cuBLASLt workspace
  size_t workspace_bytes = 0;
  std::unique_ptr<MatmulPlanCache, MatmulPlanCacheDeleter> matmul_plans;
  // Reusable device scratch for reductions (sum_squares, norm weight
  // gradients, decode attention's split partials): grown on demand, never
  // shrunk. scratch_moves counts its reallocations: a recording made before
  // the last one points at freed memory.
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
  uint64_t scratch_moves = 0;
  void* ensure_scratch(size_t bytes);
  // Recordings (cuda/graph.cu): the instantiated graphs by id, each with the
  // scratch_moves it was captured under; `capturing` while the stream is
  // being captured.
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    uint64_t scratch_moves = 0;
  };
  std::map<int64_t, Graph> graphs;
  int64_t next_graph = 1;
  bool capturing = false;
  // Throws an Error naming `op` while the stream is being captured: `op`
  // would wait for the device or move memory, which a recording cannot hold.
  void refuse_while_capturing(const char* op) const;
  // Device memory high-water mark (total - free), sampled after every
  // allocation by note_memory_use (cuda/profiling.cu).
  size_t peak_bytes = 0;
  void note_memory_use();

  explicit CudaContext(int device);
  ~CudaContext();
};

// "<what>: <CUDA's message>" as an Error when status is not cudaSuccess.
void cuda_check(cudaError_t status, const std::string& what);
// The same for cuBLASLt statuses.
void cublas_check(cublasStatus_t status, const std::string& what);
// After a kernel launch: a bad configuration (or an earlier asynchronous
// fault) becomes an Error naming the op and its shape. POLARIS_CUDA_SYNC=1
// also synchronises, so a fault is reported by the op that caused it
// (except while this thread captures a recording: a capture cannot wait;
// the replay synchronises instead).
void check_launch(const char* op, const std::string& shape);
// POLARIS_CUDA_SYNC=1 (a debugging mode: every launch waits for the device).
bool sync_every_launch();
// Captures under way on this thread (check_launch must not synchronise).
void note_capture(bool started);

// "N=4096 C=768" style shape strings for error lines.
std::string shape_str(const char* n1, long long v1, const char* n2 = nullptr, long long v2 = 0,
                      const char* n3 = nullptr, long long v3 = 0, const char* n4 = nullptr,
                      long long v4 = 0);

// The bf16 pointer of a typed buffer; an Error naming the op when it is not bf16.
bf16* bf16_ptr(Buf b, const char* op);
const bf16* bf16_ptr(CBuf b, const char* op);

inline unsigned grid_for(size_t n, unsigned block) { return unsigned((n + block - 1) / block); }

// ---- device helpers ---------------------------------------------------------

__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ bf16 to_bf16(float x) { return __float2bfloat16_rn(x); }

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset >>= 1)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `shared` holds 32 floats. The order of the sum is
// fixed by the thread layout, so the result is deterministic.
__device__ __forceinline__ float block_sum(float x, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_sum(x);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  x = lane < warps ? shared[lane] : 0.f;
  return warp_sum(x);
}
__device__ __forceinline__ float block_max(float x, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  x = lane < warps ? shared[lane] : -INFINITY;
  return warp_max(x);
}

// A counter-based hash (splitmix64 finaliser): per-element random bits for
// stochastic rounding without any generator state.
__host__ __device__ __forceinline__ uint32_t hash_u32(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return uint32_t((x ^ (x >> 31)) >> 16);
}

// fp32 -> bf16 with stochastic rounding: add 16 random bits below the bf16
// mantissa, then truncate. E[result] = x for finite x (no overflow to inf
// beyond what round-to-nearest would do: values whose rounding up would
// overflow are rounded to nearest instead).
__device__ __forceinline__ bf16 to_bf16_stochastic(float x, uint32_t random16) {
  uint32_t bits = __float_as_uint(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return __float2bfloat16_rn(x);  // inf / nan
  uint32_t rounded = (bits + (random16 & 0xffffu)) & 0xffff0000u;
  if ((rounded & 0x7f800000u) == 0x7f800000u) return __float2bfloat16_rn(x);
  return __ushort_as_bfloat16((unsigned short)(rounded >> 16));
}

}  // namespace polaris
