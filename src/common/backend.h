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
// `attention` (--attention flash|cudnn|simple) picks the CUDA backend's
// attention kernels; the CPU has one reference and ignores it.
std::unique_ptr<Ops> make_ops(const std::string& backend, const std::string& attention = "flash");
// "auto" -> "cuda" when a GPU is visible to this build, else "cpu"; other
// names unchanged.
std::string resolve_backend(const std::string& backend);

}  // namespace polaris
