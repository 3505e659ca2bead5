#include "src/common/backend.h"

#include "model/cpu_ops.h"
#ifdef POLARIS_HAVE_CUDA
#include "cuda/device.h"
#endif
#include "src/common/error.h"

namespace polaris {

std::unique_ptr<Ops> make_ops(const std::string& backend) {
  if (backend == "cpu") return std::unique_ptr<Ops>(new CpuOps());
  if (backend == "cuda") {
    std::string found = "this build was made without nvcc";
#ifdef POLARIS_HAVE_CUDA
    std::string why_none;
    std::vector<CudaDevice> devices = cuda_devices(&why_none);
    found = devices.empty() ? "no usable GPU here (" + why_none + ")"
                            : std::to_string(devices.size()) + " GPU(s) here, the first " +
                                  devices[0].name;
#endif
    throw Error("--backend cuda: the CUDA ops are not part of this build (" + found +
                "); use --backend cpu");
  }
  throw Error("--backend must be cpu or cuda, got '" + backend + "'");
}

}  // namespace polaris
