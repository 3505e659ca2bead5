// CUDA devices: what this machine has, with every runtime call checked.
//
// The programs use it to pick the backend (--backend auto) and the rank's GPU,
// and to say precisely why --backend cuda cannot run here.
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
