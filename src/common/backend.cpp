#include "src/common/backend.h"

#include "model/cpu_ops.h"
#include "src/common/error.h"

namespace polaris {

std::unique_ptr<Ops> make_ops(const std::string& backend) {
  if (backend == "cpu") return std::unique_ptr<Ops>(new CpuOps());
  if (backend == "cuda")
    throw Error("--backend cuda: this build has no CUDA Ops (the CUDA engine is not part of it "
                "yet); use --backend cpu");
  throw Error("--backend must be cpu or cuda, got '" + backend + "'");
}

}  // namespace polaris
