// POLARIS_HOST_DEVICE: marks a small function that host code and CUDA
// kernels share (the same source, so both compute the same bits); write it
// with `inline`. Nothing when the compiler is not nvcc.
#pragma once

#if defined(__CUDACC__)
#define POLARIS_HOST_DEVICE __host__ __device__
#else
#define POLARIS_HOST_DEVICE
#endif
