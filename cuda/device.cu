// Device discovery (see device.h). No kernels here: host-side runtime calls
// only, each return code checked.
#include "cuda/device.h"

#include <cuda_runtime.h>

#include "src/common/error.h"

namespace polaris {

namespace {

void cuda_check(cudaError_t status, const char* call) {
  if (status != cudaSuccess)
    throw Error(std::string("CUDA: ") + call + " failed: " + cudaGetErrorString(status));
}

}  // namespace

std::vector<CudaDevice> cuda_devices(std::string* why_none) {
  std::vector<CudaDevice> devices;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (why_none) *why_none = cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return devices;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, i), "cudaGetDeviceProperties");
    devices.push_back({i, prop.name, prop.totalGlobalMem, prop.major, prop.minor});
  }
  if (devices.empty() && why_none) *why_none = "no CUDA device is visible";
  return devices;
}

}  // namespace polaris
