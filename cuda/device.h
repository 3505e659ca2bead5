// CUDA devices: what this machine has, with every runtime call checked.
//
// The CUDA Ops (bf16 kernels behind model/ops.h) are not part of this build;
// this file is what the programs use to say precisely why --backend cuda
// cannot run here, and the first piece every later CUDA file builds on
// (cuda_check turns a cudaError_t into a polaris::Error naming the call).
#pragma once
#include <string>
#include <vector>

namespace polaris {

struct CudaDevice {
  int index = 0;
  std::string name;
  size_t memory_bytes = 0;
  int major = 0, minor = 0;  // compute capability
};

// The visible devices; empty when there are none (no driver, no GPU).
// `why_none` receives the runtime's reason when the list is empty.
std::vector<CudaDevice> cuda_devices(std::string* why_none);

}  // namespace polaris
