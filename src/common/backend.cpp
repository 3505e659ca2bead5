#include "src/common/backend.h"

#include <cstdlib>

#include "model/cpu_ops.h"
#ifdef POLARIS_HAVE_CUDA
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#endif
#include "src/common/error.h"

namespace polaris {

#ifdef POLARIS_HAVE_CUDA
namespace {
// One GPU per rank on a node: the node-local rank (Open MPI's or SLURM's)
// modulo the visible devices, so several ranks share GPUs round-robin.
int local_device(size_t count) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"})
    if (const char* v = std::getenv(name)) return int(std::strtol(v, nullptr, 10) % long(count));
  return 0;
}
}  // namespace
#endif

std::string resolve_backend(const std::string& backend) {
  if (backend != "auto") return backend;
#ifdef POLARIS_HAVE_CUDA
  std::string why_none;
  if (!cuda_devices(&why_none).empty()) return "cuda";
#endif
  return "cpu";
}

std::unique_ptr<Ops> make_ops(const std::string& name, const std::string& attention) {
  require(attention == "flash" || attention == "cudnn" || attention == "simple",
          "--attention must be flash, cudnn or simple, got '" + attention + "'");
  const std::string backend = resolve_backend(name);
  if (backend == "cpu") return std::unique_ptr<Ops>(new CpuOps());
  if (backend == "cuda") {
#ifdef POLARIS_HAVE_CUDA
    std::string why_none;
    std::vector<CudaDevice> devices = cuda_devices(&why_none);
    if (!devices.empty()) {
      std::unique_ptr<CudaOps> ops(new CudaOps(local_device(devices.size())));
      ops->set_attention(attention);
      return ops;
    }
    throw Error("--backend cuda: no usable GPU here (" + why_none + "); use --backend cpu");
#else
    throw Error("--backend cuda: this build was made without the CUDA toolkit (nvcc, cudart, "
                "cuBLASLt); use --backend cpu");
#endif
  }
  throw Error("--backend must be auto, cpu or cuda, got '" + backend + "'");
}

}  // namespace polaris
