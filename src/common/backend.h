// Choosing the Ops implementation a program runs on (--backend cpu|cuda).
#pragma once
#include <memory>
#include <string>

#include "model/ops.h"

namespace polaris {

// "cpu": the fp32 reference (model/cpu_ops.h). "cuda": the GPU Ops
// (cuda/cuda_ops.h) on the node-local rank's GPU, or an Error naming
// --backend and what to do. "auto" (the default): cuda when a GPU is
// visible, else cpu.
std::unique_ptr<Ops> make_ops(const std::string& backend);
// "auto" -> "cuda" when a GPU is visible to this build, else "cpu"; other
// names unchanged.
std::string resolve_backend(const std::string& backend);

}  // namespace polaris
