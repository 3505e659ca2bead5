// Profiling hooks of CudaOps: NVTX ranges (named spans in Nsight Systems'
// timeline: every layer's forward and backward, the loss, the optimizer, the
// communication), the profiler's capture window (cudaProfilerStart/Stop, so
// `nsys profile --capture-range=cudaProfilerApi` records only the steps
// `polaris_train --profile` marks), and the device memory high-water mark.
// No kernels. NVTX 3 is header-only; a range costs ~100 ns with no profiler
// attached.
#include <cuda_profiler_api.h>
#include <nvtx3/nvToolsExt.h>

#include "cuda/context.cuh"

namespace polaris {

void CudaOps::range_push(const char* name) { nvtxRangePushA(name); }
void CudaOps::range_pop() { nvtxRangePop(); }

void CudaOps::profiler_start() {
  synchronize();  // the window starts with an idle stream
  cuda_check(cudaProfilerStart(), "cudaProfilerStart");
}

void CudaOps::profiler_stop() {
  synchronize();
  cuda_check(cudaProfilerStop(), "cudaProfilerStop");
}

// The peak of (total - free) device memory as sampled at every allocation
// (cuda/memory.cu calls note_memory_use): what this process and the CUDA
// context hold, the figure nvidia-smi would show at the worst moment.
size_t CudaOps::peak_memory_bytes() const { return context_->peak_bytes; }

void CudaContext::note_memory_use() {
  size_t free_bytes = 0, total_bytes = 0;
  cuda_check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  if (total_bytes - free_bytes > peak_bytes) peak_bytes = total_bytes - free_bytes;
}

}  // namespace polaris
