// Choosing the Ops implementation a program runs on (--backend cpu|cuda).
#pragma once
#include <memory>
#include <string>

#include "model/ops.h"

namespace polaris {

// "cpu": the fp32 reference (model/cpu_ops.h). "cuda": the GPU Ops when this
// build has them; otherwise an Error naming --backend and what to do.
std::unique_ptr<Ops> make_ops(const std::string& backend);

}  // namespace polaris
