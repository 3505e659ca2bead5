// CudaContext and the checks every CUDA file uses (declared in cuda/context.cuh),
// plus the CudaOps constructor, destructor and synchronize().
//
// Course note. Nothing here launches a kernel: this is the host-side plumbing.
//   - One device per CudaOps, one non-blocking stream: every op is issued on
//     it in program order, so ops need no synchronisation among themselves;
//     only the host-visible results (download, sum_squares) wait for it.
//   - cuBLASLt handle + a 32 MiB workspace (enough for the split-K /
//     stream-K kernels cuBLASLt picks for transformer shapes on an H100).
//   - A grow-only scratch buffer for reductions that need partials
//     (sum_squares, norm weight gradients). Growing it synchronises the stream
//     first, so no kernel in flight still reads the old one.
//   - Every CUDA / cuBLASLt status becomes one polaris::Error line naming the
//     op, the call and the shape; POLARIS_CUDA_SYNC=1 makes every launch
//     synchronise so an asynchronous fault is blamed on the op that caused it.
//   - Recordings (cuda/graph.cu): only record_begin starts a capture of the
//     stream, so `capturing` is its capture status; the ops that would wait
//     or move memory ask refuse_while_capturing first, and a scratch
//     reallocation is counted (scratch_moves) so older graphs are refused.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "cuda/context.cuh"
#include "cuda/cudnn_attention.h"

namespace polaris {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt workspace

std::string gib(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GiB", double(bytes) / double(size_t(1) << 30));
  return text;
}

thread_local int captures_on_this_thread = 0;

// Frees everything the context holds; never throws (destructor and the
// constructor's failure path). Errors are ignored: after a sticky fault the
// frees fail too, and there is nothing better to do with them.
void release_context(CudaContext& c) {
  if (c.capturing) {  // an abandoned capture: end it so the stream can be used
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(c.stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    c.capturing = false;
    note_capture(false);
  }
  if (c.stream) cudaStreamSynchronize(c.stream);
  for (auto& entry : c.graphs) cudaGraphExecDestroy(entry.second.exec);
  c.graphs.clear();
  c.matmul_plans.reset();  // through the deleter above
  cudnn_attention_release(c);  // the cuDNN handle and plans kept for this context
  if (c.cublaslt) cublasLtDestroy(c.cublaslt);
  if (c.workspace) cudaFree(c.workspace);
  if (c.scratch) cudaFree(c.scratch);
  if (c.stream) cudaStreamDestroy(c.stream);
  c.cublaslt = nullptr;
  c.workspace = c.scratch = nullptr;
  c.workspace_bytes = c.scratch_bytes = 0;
  c.stream = nullptr;
  cudaGetLastError();  // leave no stale error for whoever comes next
}

}  // namespace

// ---- checks ------------------------------------------------------------------

bool sync_every_launch() {
  static const bool on = [] {
    const char* v = std::getenv("POLARIS_CUDA_SYNC");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

void note_capture(bool started) { captures_on_this_thread += started ? 1 : -1; }

void cuda_check(cudaError_t status, const std::string& what) {
  if (status == cudaSuccess) return;
  // Clear the (non-sticky) last error so the next check_launch does not blame
  // an innocent kernel for it.
  cudaGetLastError();
  throw Error("CUDA: " + what + " failed: " + cudaGetErrorString(status));
}

void cublas_check(cublasStatus_t status, const std::string& what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error("cuBLASLt: " + what + " failed: " + cublasLtGetStatusString(status) +
              " (status " + std::to_string(int(status)) + ")");
}

void check_launch(const char* op, const std::string& shape) {
  const std::string where = std::string(op) + (shape.empty() ? "" : " (" + shape + ")");
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw Error("CUDA: " + where + ": kernel launch failed: " + cudaGetErrorString(status));
  if (sync_every_launch() && captures_on_this_thread == 0) {
    // check_launch has no stream: synchronise the device (POLARIS_CUDA_SYNC is
    // a debugging mode, speed does not matter).
    status = cudaDeviceSynchronize();
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw Error("CUDA: " + where + ": kernel failed while running: " +
                  cudaGetErrorString(status));
    }
  }
}

std::string shape_str(const char* n1, long long v1, const char* n2, long long v2,
                      const char* n3, long long v3, const char* n4, long long v4) {
  std::string s;
  auto put = [&s](const char* name, long long value) {
    if (!name) return;
    if (!s.empty()) s += ' ';
    s += name;
    s += '=';
    s += std::to_string(value);
  };
  put(n1, v1);
  put(n2, v2);
  put(n3, v3);
  put(n4, v4);
  return s;
}

// A null buffer is "not needed" (ops.h) whatever its dtype field says (a
// default-constructed Buf is tagged fp32), so it gives a null pointer.
bf16* bf16_ptr(Buf b, const char* op) {
  if (!b.ptr) return nullptr;
  if (b.dtype != DType::bf16)
    throw Error(std::string(op) + ": expected a bf16 buffer, got " + dtype_name(b.dtype));
  return static_cast<bf16*>(b.ptr);
}

const bf16* bf16_ptr(CBuf b, const char* op) {
  if (!b.ptr) return nullptr;
  if (b.dtype != DType::bf16)
    throw Error(std::string(op) + ": expected a bf16 buffer, got " + dtype_name(b.dtype));
  return static_cast<const bf16*>(b.ptr);
}

// ---- CudaContext -------------------------------------------------------------

CudaContext::CudaContext(int device_index) : device(device_index) {
  try {
    int count = 0;
    cuda_check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (device_index < 0 || device_index >= count)
      throw Error("CUDA: device " + std::to_string(device_index) + " does not exist (" +
                  std::to_string(count) + " visible)");
    const std::string dev = "device " + std::to_string(device_index);
    cuda_check(cudaSetDevice(device_index), "cudaSetDevice(" + dev + ")");
    cuda_check(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device_index),
               "cudaDeviceGetAttribute(multiprocessor count, " + dev + ")");
    cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
               "cudaStreamCreateWithFlags (" + dev + ")");
    cublas_check(cublasLtCreate(&cublaslt), "cublasLtCreate (" + dev + ")");
    cuda_check(cudaMalloc(&workspace, kWorkspaceBytes),
               "cudaMalloc of the " + std::to_string(kWorkspaceBytes >> 20) +
                   " MiB cuBLASLt workspace (" + dev + ")");
    workspace_bytes = kWorkspaceBytes;
  } catch (...) {
    release_context(*this);
    throw;
  }
}

CudaContext::~CudaContext() { release_context(*this); }

void CudaContext::refuse_while_capturing(const char* op) const {
  if (!capturing) return;
  throw Error(std::string(op) +
              ": not allowed while ops are being recorded into a CUDA graph (it waits for the "
              "device or moves memory; run it before record_begin or after record_end)");
}

void* CudaContext::ensure_scratch(size_t bytes) {
  if (bytes <= scratch_bytes && scratch) return scratch;
  refuse_while_capturing("ensure_scratch (growing the reduction scratch)");
  bytes = (bytes + 255) & ~size_t(255);
  if (bytes == 0) bytes = 256;
  scratch_moves += 1;  // recordings that use the old buffer are stale from here on
  // Kernels already queued may still read the old buffer.
  cuda_check(cudaStreamSynchronize(stream), "ensure_scratch: cudaStreamSynchronize");
  if (scratch) cuda_check(cudaFree(scratch), "ensure_scratch: cudaFree");
  scratch = nullptr;
  scratch_bytes = 0;
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    cudaGetLastError();
    throw Error("CUDA: cudaMalloc of " + gib(bytes) + " of reduction scratch failed: " +
                cudaGetErrorString(status) + " (free " + gib(free_bytes) + " of " +
                gib(total_bytes) + ")");
  }
  scratch = p;
  scratch_bytes = bytes;
  note_memory_use();
  return scratch;
}

// ---- CudaOps lifetime --------------------------------------------------------

CudaOps::CudaOps(int device) : context_(new CudaContext(device)) {}

CudaOps::~CudaOps() = default;

void CudaOps::synchronize() {
  context().refuse_while_capturing("synchronize");
  cuda_check(cudaStreamSynchronize(context().stream), "synchronize: cudaStreamSynchronize");
}

}  // namespace polaris
