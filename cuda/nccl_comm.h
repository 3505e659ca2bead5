// NcclComm: data-parallel collectives over NCCL on device buffers
// (cuda/nccl_comm.cu). Plain C++: optim/comm.cpp makes it for --comm nccl.
#pragma once
#include <memory>

#include "optim/comm.h"

namespace polaris {

// An NCCL Comm bootstrapped over `host` (an MpiComm): the float
// collectives run on device buffers through NCCL; doubles, checks,
// broadcasts and checkpoint gathers go over `host`. The communicator is made
// by attach(ops) (ops must be CudaOps: its GPU and stream). Only in builds
// with NCCL (POLARIS_HAVE_NCCL, see the Makefile).
std::unique_ptr<Comm> make_nccl_comm(std::unique_ptr<Comm> host);

}  // namespace polaris
