// CudaOps recordings (model/ops.h "recording"): the ops issued between
// record_begin and record_end are captured from the context's stream into a
// CUDA graph, instantiated once, and replayed with one cudaGraphLaunch.
//
// Course note.
//   Why. A decode step of Qwen3-0.6B issues ~13 kernels a layer (norm, qkv
//   GEMM, q/k norm + RoPE, two cache scatters, paged attention and its
//   combine, o GEMM, add + norm, gate|up GEMM, SwiGLU, down GEMM, add) over
//   28 layers: ~360 launches. Each costs the host ~2-5 us to issue and leaves
//   the GPU a gap when the host falls behind; at small batch the kernels
//   themselves last a few us, so the step is bound by launches, not by HBM
//   (reading the 1.2 GB of bf16 weights takes 0.36 ms at 3.35 TB/s; 360
//   launches at ~4 us take ~1.4 ms). A graph launch hands the whole step to
//   the device at once: one host call, and the device runs the nodes back to
//   back (~1 us apart).
//   How. cudaStreamBeginCapture in thread-local mode: the kernels, memsets
//   and device-to-device copies issued on the stream by this thread become
//   graph nodes instead of running, and any potentially unsafe call from
//   this thread (cudaMalloc, a synchronous copy, a stream wait) fails and
//   invalidates the capture. Our own ops that would do one (upload,
//   download, alloc, release, synchronize, sum_squares, growing the scratch)
//   refuse first with an Error naming themselves (refuse_while_capturing),
//   so a misuse reads as "download: not allowed while ops are being
//   recorded" rather than as a broken capture. Other threads (OpenMP workers
//   on the host) are not affected: thread-local rather than global mode.
//   Everything an op chose on the host is frozen: kernel arguments (the
//   pointers), grid sizes, the cuBLASLt algorithm and its workspace (the
//   context's, allocated once), the paged-attention split count. So a
//   recording is valid only for the same call sequence with the same
//   arguments; the caller (model/decode_graphs.h) keys recordings by shape,
//   keeps its buffers in place, runs the sequence once eagerly first (matmul
//   plans, scratch growth) and forgets recordings whose memory moved. The
//   context's scratch is the one buffer the caller cannot see: its
//   reallocation count is stored with each graph, and replay() refuses
//   (returns false) a graph captured before the last one.
//   Cost. Capture + instantiation of a ~400-node graph is ~1-3 ms of host
//   time, paid once per (batch bucket, table width) and cache layout; the
//   graph's executable holds a few hundred KiB of host and device memory.
//   POLARIS_CUDA_SYNC=1 (every launch waits) cannot wait inside a capture:
//   check_launch skips its wait while capturing, and replay() waits instead.
#include <string>

#include "cuda/context.cuh"
#include "cuda/cuda_ops.h"

namespace polaris {

void CudaOps::record_begin() {
  CudaContext& c = context();
  require(!c.capturing, "record_begin: a recording is already under way");
  cuda_check(cudaStreamBeginCapture(c.stream, cudaStreamCaptureModeThreadLocal),
             "record_begin: cudaStreamBeginCapture");
  c.capturing = true;
  note_capture(true);
}

Ops::Recording CudaOps::record_end() {
  CudaContext& c = context();
  require(c.capturing, "record_end: no recording is under way");
  c.capturing = false;
  note_capture(false);
  cudaGraph_t graph = nullptr;
  cuda_check(cudaStreamEndCapture(c.stream, &graph), "record_end: cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);  // the executable graph is independent of it
  cuda_check(status, "record_end: cudaGraphInstantiate");
  const Recording id = c.next_graph++;
  c.graphs[id] = CudaContext::Graph{exec, c.scratch_moves};
  return id;
}

void CudaOps::record_cancel() {
  CudaContext& c = context();
  if (!c.capturing) return;
  c.capturing = false;
  note_capture(false);
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(c.stream, &graph);  // fails when the capture was invalidated: fine
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();  // leave no stale error for the next launch check
}

bool CudaOps::replay(Recording r) {
  CudaContext& c = context();
  c.refuse_while_capturing("replay");
  const auto it = c.graphs.find(r);
  require(it != c.graphs.end(), "replay: no recording " + std::to_string(r));
  if (it->second.scratch_moves != c.scratch_moves) return false;  // its scratch was freed
  cuda_check(cudaGraphLaunch(it->second.exec, c.stream), "replay: cudaGraphLaunch");
  if (sync_every_launch())
    cuda_check(cudaStreamSynchronize(c.stream),
               "replay: a recorded op failed while running (cudaStreamSynchronize)");
  return true;
}

void CudaOps::forget(Recording r) {
  CudaContext& c = context();
  const auto it = c.graphs.find(r);
  if (it == c.graphs.end()) return;
  // A launch still in flight keeps its own reference: destroying is safe.
  cuda_check(cudaGraphExecDestroy(it->second.exec), "forget: cudaGraphExecDestroy");
  c.graphs.erase(it);
}

}  // namespace polaris
