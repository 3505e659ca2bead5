// CudaOps memory and elementwise ops: alloc_buf / alloc_int / release,
// upload / upload_int / download (fp32 on the host, any dtype on the device),
// zero, copy (dtype-converting), add, accumulate, scale, sum_squares.
//
// Course note.
//   Math: copy  dst_i = round(src_i)            (round to nearest even into bf16)
//         add   out_i = round(a_i + b_i)        (the sum in fp32, then rounded)
//         accumulate dst_i += src_i, scale x_i *= s   (fp32)
//         sum_squares  S = sum_i x_i^2          (accumulated in double)
//   Work split: the elementwise kernels give one element to one thread, 256
//   threads a block, grid-stride loops (the grid is fixed by n alone and capped
//   at kMaxBlocks; each element's result does not depend on the grid anyway).
//   Loads are scalar: coalesced 4-byte (fp32) or 2-byte (bf16) accesses, simple
//   and correct for any n and any alignment (Buf + offset can be 2-byte aligned).
//   sum_squares is a deterministic two-pass reduction: pass 1 gives block b the
//   contiguous chunk [b*kChunk, (b+1)*kChunk) (kChunk = 8192 elements; each of
//   256 threads sums its strided elements in a fixed order, then a fixed tree
//   sums the block); pass 2, one block, sums the partials in a fixed order.
//   The grid depends only on n, so the result is bitwise the same on any GPU
//   and on every run. The accumulation is in double: one DFMA per 4 bytes
//   read, far below the FP64 rate of an A100/H100 (9.7/67 TFLOP/s), so it
//   stays memory bound.
//   Bytes per element moved (reads + writes):
//     copy f32->bf16 6, bf16->f32 6, same dtype (cudaMemcpy) 2x size;
//     add bf16 (all bf16) 6, f32 12; accumulate 12; scale 8; sum_squares 4;
//     zero (cudaMemset) size.
//   Flops: at most 2 per element: every op here is memory bound. Roofline on
//   an H100 (3.35 TB/s HBM): e.g. add of 768 x 8192 bf16 residuals = 37.7 MB
//   -> ~11 us; accumulate of 124M fp32 gradients = 1.5 GB -> ~0.44 ms;
//   sum_squares of 124M fp32 = 0.5 GB -> ~0.15 ms. Scalar loads reach ~80-90%
//   of that; vector (16-byte) loads would close the rest.
//   upload/download of bf16 convert on the host (round to nearest even, NaN
//   kept a NaN) in chunks through a small staging buffer: host<->device copies
//   are PCIe bound (tens of GB/s), so host conversion costs nothing that matters.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/context.cuh"

namespace polaris {

namespace {

constexpr unsigned kBlock = 256;
constexpr unsigned kMaxBlocks = 1u << 16;  // grid-stride beyond 16.7M elements
constexpr size_t kSumChunk = 8192;         // sum_squares: elements per block (pass 1)
constexpr unsigned kSumBlock = 256;        // sum_squares: threads per block (both passes)
constexpr size_t kStagingElements = size_t(1) << 22;  // host conversion chunk (4M)
static_assert(kSumChunk % kSumBlock == 0, "each thread of a sum_squares block gets whole strides");
static_assert(kSumBlock % 32 == 0 && kSumBlock <= 1024, "whole warps");

unsigned elementwise_grid(size_t n) {
  return unsigned(std::min<size_t>(grid_for(n, kBlock), kMaxBlocks));
}

std::string gib(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GiB", double(bytes) / double(size_t(1) << 30));
  return text;
}

std::string n_str(size_t n) { return shape_str("n", (long long)n); }

// fp32 -> bf16 bits, round to nearest even as __float2bfloat16_rn: finite
// values that round past the largest bf16 become inf; NaN stays a (quiet) NaN
// (truncating a NaN whose payload is in the low 16 bits would make it inf).
inline uint16_t host_to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u) {
    const bool nan = (bits & 0x007fffffu) != 0;
    return uint16_t((bits >> 16) | (nan ? 0x0040u : 0u));
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

inline float host_from_bf16(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

// Throws the out-of-memory line: what was asked, what is free, what to lower.
[[noreturn]] void malloc_failed(const char* op, size_t bytes, cudaError_t status,
                                const std::string& what) {
  cudaGetLastError();  // not sticky: clear it so the next launch check is clean
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  cudaGetLastError();
  throw Error(std::string("CUDA: ") + op + ": cudaMalloc of " + gib(bytes) + " (" + what +
              ") failed: " + cudaGetErrorString(status) + " (free " + gib(free_bytes) + " of " +
              gib(total_bytes) + "); lower memory with --batch, --seq or --recompute layer");
}

void* device_alloc(CudaContext& c, const char* op, size_t bytes, const std::string& what) {
  c.refuse_while_capturing(op);
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status != cudaSuccess) malloc_failed(op, bytes, status, what);
  const std::string where = std::string(op) + ": ";
  try {
    cuda_check(cudaMemsetAsync(p, 0, bytes, c.stream), where + "cudaMemsetAsync (" + what + ")");
    cuda_check(cudaStreamSynchronize(c.stream), where + "cudaStreamSynchronize (" + what + ")");
    c.note_memory_use();
  } catch (...) {
    cudaFree(p);
    throw;
  }
  return p;
}

// ---- kernels -----------------------------------------------------------------

template <class Tout, class Tin>
__global__ __launch_bounds__(kBlock) void convert_kernel(Tout* __restrict__ dst,
                                                         const Tin* __restrict__ src, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = from_f32<Tout>(to_f32(src[i]));
}

// out may alias a or b: each thread reads its element of a and b before it
// writes the same element of out (so no __restrict__ here).
template <class To, class Ta, class Tb>
__global__ __launch_bounds__(kBlock) void add_kernel(To* out, const Ta* a, const Tb* b, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = from_f32<To>(to_f32(a[i]) + to_f32(b[i]));
}

// dst may equal src (then dst doubles), so no __restrict__.
__global__ __launch_bounds__(kBlock) void accumulate_kernel(float* dst, const float* src,
                                                            size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] += src[i];
}

__global__ __launch_bounds__(kBlock) void scale_kernel(float* __restrict__ x, float s, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) x[i] *= s;
}

// Sum over the block in double, in an order fixed by the thread layout; the
// result is valid in thread 0. `shared` holds kSumBlock / 32 doubles.
__device__ __forceinline__ double block_sum_double(double x, double* shared) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  if (warp == 0) {
    constexpr int warps = kSumBlock / 32;
    x = lane < warps ? shared[lane] : 0.0;
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}

// Pass 1: block b sums x_i^2 over its chunk [b*kSumChunk, min(n, (b+1)*kSumChunk)).
__global__ __launch_bounds__(kSumBlock) void sum_squares_partial_kernel(
    double* __restrict__ partial, const float* __restrict__ x, size_t n) {
  __shared__ double shared[kSumBlock / 32];
  const size_t lo = size_t(blockIdx.x) * kSumChunk;
  const size_t hi = min(n, lo + kSumChunk);
  double s = 0.0;
  for (size_t i = lo + threadIdx.x; i < hi; i += kSumBlock) {
    const double xi = double(x[i]);
    s += xi * xi;
  }
  s = block_sum_double(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Pass 2 (one block): result[0] = sum of the `count` partials, fixed order.
__global__ __launch_bounds__(kSumBlock) void sum_partials_kernel(double* __restrict__ result,
                                                                 const double* __restrict__ partial,
                                                                 size_t count) {
  __shared__ double shared[kSumBlock / 32];
  double s = 0.0;
  for (size_t i = threadIdx.x; i < count; i += kSumBlock) s += partial[i];
  s = block_sum_double(s, shared);
  if (threadIdx.x == 0) result[0] = s;
}

template <class Tout, class Tin>
void launch_convert(CudaContext& c, void* dst, const void* src, size_t n) {
  convert_kernel<Tout, Tin><<<elementwise_grid(n), kBlock, 0, c.stream>>>(
      static_cast<Tout*>(dst), static_cast<const Tin*>(src), n);
}

template <class To, class Ta>
void launch_add_b(CudaContext& c, To* out, const Ta* a, CBuf b, size_t n) {
  if (b.dtype == DType::bf16)
    add_kernel<<<elementwise_grid(n), kBlock, 0, c.stream>>>(out, a, static_cast<const bf16*>(b.ptr), n);
  else
    add_kernel<<<elementwise_grid(n), kBlock, 0, c.stream>>>(out, a, static_cast<const float*>(b.ptr), n);
}

template <class To>
void launch_add_a(CudaContext& c, To* out, CBuf a, CBuf b, size_t n) {
  if (a.dtype == DType::bf16)
    launch_add_b(c, out, static_cast<const bf16*>(a.ptr), b, n);
  else
    launch_add_b(c, out, static_cast<const float*>(a.ptr), b, n);
}

}  // namespace

// ---- allocation --------------------------------------------------------------

Buf CudaOps::alloc_buf(size_t n, DType dtype) {
  const size_t bytes = std::max<size_t>(n, 1) * dtype_size(dtype);
  const std::string what = n_str(n) + " " + dtype_name(dtype);
  return Buf(device_alloc(context(), "alloc_buf", bytes, what), dtype);
}

int32_t* CudaOps::alloc_int(size_t n) {
  const size_t bytes = std::max<size_t>(n, 1) * sizeof(int32_t);
  return static_cast<int32_t*>(device_alloc(context(), "alloc_int", bytes, n_str(n) + " int32"));
}

void CudaOps::release(const void* p) {
  if (!p) return;
  context().refuse_while_capturing("release");
  // An op still queued may use the buffer.
  cuda_check(cudaStreamSynchronize(context().stream), "release: cudaStreamSynchronize");
  cuda_check(cudaFree(const_cast<void*>(p)), "release: cudaFree");
}

// ---- host <-> device ---------------------------------------------------------

void CudaOps::upload(Buf dst, const float* host_src, size_t n) {
  if (n == 0) return;
  CudaContext& c = context();
  c.refuse_while_capturing("upload");
  const std::string shape = n_str(n);
  if (dst.dtype == DType::f32) {
    cuda_check(cudaMemcpyAsync(dst.ptr, host_src, n * sizeof(float), cudaMemcpyHostToDevice,
                               c.stream),
               "upload: cudaMemcpyAsync (" + shape + " fp32)");
    cuda_check(cudaStreamSynchronize(c.stream), "upload: cudaStreamSynchronize (" + shape + ")");
    return;
  }
  // bf16: round on the host, chunk by chunk through a staging buffer.
  std::vector<uint16_t> staging(std::min(n, kStagingElements));
  uint16_t* out = static_cast<uint16_t*>(dst.ptr);
  for (size_t lo = 0; lo < n; lo += staging.size()) {
    const size_t count = std::min(staging.size(), n - lo);
    for (size_t i = 0; i < count; ++i) staging[i] = host_to_bf16(host_src[lo + i]);
    cuda_check(cudaMemcpyAsync(out + lo, staging.data(), count * sizeof(uint16_t),
                               cudaMemcpyHostToDevice, c.stream),
               "upload: cudaMemcpyAsync (" + shape + " bf16)");
    // The staging buffer is refilled next: wait for this chunk to be read.
    cuda_check(cudaStreamSynchronize(c.stream), "upload: cudaStreamSynchronize (" + shape + ")");
  }
}

void CudaOps::upload_int(int32_t* dst, const int32_t* host_src, size_t n) {
  if (n == 0) return;
  CudaContext& c = context();
  c.refuse_while_capturing("upload_int");
  const std::string shape = n_str(n);
  cuda_check(cudaMemcpyAsync(dst, host_src, n * sizeof(int32_t), cudaMemcpyHostToDevice, c.stream),
             "upload_int: cudaMemcpyAsync (" + shape + ")");
  cuda_check(cudaStreamSynchronize(c.stream), "upload_int: cudaStreamSynchronize (" + shape + ")");
}

void CudaOps::download(float* host_dst, CBuf src, size_t n) {
  if (n == 0) return;
  CudaContext& c = context();
  c.refuse_while_capturing("download");
  const std::string shape = n_str(n);
  if (src.dtype == DType::f32) {
    cuda_check(cudaMemcpyAsync(host_dst, src.ptr, n * sizeof(float), cudaMemcpyDeviceToHost,
                               c.stream),
               "download: cudaMemcpyAsync (" + shape + " fp32)");
    cuda_check(cudaStreamSynchronize(c.stream), "download: cudaStreamSynchronize (" + shape + ")");
    return;
  }
  std::vector<uint16_t> staging(std::min(n, kStagingElements));
  const uint16_t* in = static_cast<const uint16_t*>(src.ptr);
  for (size_t lo = 0; lo < n; lo += staging.size()) {
    const size_t count = std::min(staging.size(), n - lo);
    cuda_check(cudaMemcpyAsync(staging.data(), in + lo, count * sizeof(uint16_t),
                               cudaMemcpyDeviceToHost, c.stream),
               "download: cudaMemcpyAsync (" + shape + " bf16)");
    cuda_check(cudaStreamSynchronize(c.stream), "download: cudaStreamSynchronize (" + shape + ")");
    for (size_t i = 0; i < count; ++i) host_dst[lo + i] = host_from_bf16(staging[i]);
  }
}

// ---- device-side memory ops --------------------------------------------------

void CudaOps::zero(Buf p, size_t n) {
  if (n == 0) return;
  cuda_check(cudaMemsetAsync(p.ptr, 0, n * dtype_size(p.dtype), context().stream),
             "zero: cudaMemsetAsync (" + n_str(n) + " " + dtype_name(p.dtype) + ")");
}

void CudaOps::copy(Buf dst, CBuf src, size_t n) {
  if (n == 0) return;
  CudaContext& c = context();
  const std::string shape = n_str(n) + " " + dtype_name(src.dtype) + "->" + dtype_name(dst.dtype);
  if (dst.dtype == src.dtype) {
    if (dst.ptr == src.ptr) return;
    const size_t bytes = n * dtype_size(dst.dtype);
    const char* d = static_cast<const char*>(dst.ptr);
    const char* s = static_cast<const char*>(src.ptr);
    if (d < s + bytes && s < d + bytes)
      throw Error("copy: source and destination overlap (" + shape + ")");
    cuda_check(cudaMemcpyAsync(dst.ptr, src.ptr, bytes, cudaMemcpyDeviceToDevice, c.stream),
               "copy: cudaMemcpyAsync (" + shape + ")");
    return;
  }
  if (dst.dtype == DType::bf16)
    launch_convert<bf16, float>(c, dst.ptr, src.ptr, n);
  else
    launch_convert<float, bf16>(c, dst.ptr, src.ptr, n);
  check_launch("copy", shape);
}

void CudaOps::add(Buf out, CBuf a, CBuf b, size_t n) {
  if (n == 0) return;
  CudaContext& c = context();
  if (out.dtype == DType::bf16)
    launch_add_a(c, static_cast<bf16*>(out.ptr), a, b, n);
  else
    launch_add_a(c, static_cast<float*>(out.ptr), a, b, n);
  check_launch("add", n_str(n) + " " + dtype_name(out.dtype) + "=" + dtype_name(a.dtype) + "+" +
                          dtype_name(b.dtype));
}

void CudaOps::accumulate(float* dst, const float* src, size_t n) {
  if (n == 0) return;
  accumulate_kernel<<<elementwise_grid(n), kBlock, 0, context().stream>>>(dst, src, n);
  check_launch("accumulate", n_str(n));
}

void CudaOps::scale(float* x, float s, size_t n) {
  if (n == 0) return;
  scale_kernel<<<elementwise_grid(n), kBlock, 0, context().stream>>>(x, s, n);
  check_launch("scale", n_str(n));
}

double CudaOps::sum_squares(const float* x, size_t n) {
  if (n == 0) return 0.0;
  CudaContext& c = context();
  c.refuse_while_capturing("sum_squares");  // its result is read on the host
  const size_t blocks = (n + kSumChunk - 1) / kSumChunk;
  const std::string shape = n_str(n);
  // Too many blocks for a 1-D grid would take n > 1.7e13 elements.
  if (blocks > 0x7fffffffull) throw Error("sum_squares: too many elements (" + shape + ")");
  double* partial = static_cast<double*>(c.ensure_scratch((blocks + 1) * sizeof(double)));
  double* result = partial + blocks;
  sum_squares_partial_kernel<<<unsigned(blocks), kSumBlock, 0, c.stream>>>(partial, x, n);
  check_launch("sum_squares", shape);
  sum_partials_kernel<<<1, kSumBlock, 0, c.stream>>>(result, partial, blocks);
  check_launch("sum_squares (partials)", shape + " " + shape_str("blocks", (long long)blocks));
  double host = 0.0;
  cuda_check(cudaMemcpyAsync(&host, result, sizeof(double), cudaMemcpyDeviceToHost, c.stream),
             "sum_squares: cudaMemcpyAsync (" + shape + ")");
  cuda_check(cudaStreamSynchronize(c.stream), "sum_squares: cudaStreamSynchronize (" + shape + ")");
  return host;
}

}  // namespace polaris
