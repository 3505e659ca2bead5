// CpuOps: memory and elementwise ops (fp32 host memory; bf16 buffers are
// refused with an error naming the op). See model/cpu_ops.h.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "model/cpu_ops.h"
#include "model/ops/cpu_common.h"
#include "src/common/error.h"

namespace polaris {

using cpu::kParallelMin;

Buf CpuOps::alloc_buf(size_t n, DType dtype) {
  if (dtype != DType::f32) dtype_mismatch("cpu alloc", dtype, DType::f32);
  void* p = std::calloc(n ? n : 1, sizeof(float));
  if (!p) throw std::bad_alloc();
  return Buf(static_cast<float*>(p));
}

int32_t* CpuOps::alloc_int(size_t n) {
  void* p = std::calloc(n ? n : 1, sizeof(int32_t));
  if (!p) throw std::bad_alloc();
  return static_cast<int32_t*>(p);
}

void CpuOps::release(const void* p) { std::free(const_cast<void*>(p)); }

void CpuOps::upload(Buf dst, const float* src, size_t n) {
  if (n) std::memcpy(dst.f32(), src, n * sizeof(float));
}
void CpuOps::upload_int(int32_t* dst, const int32_t* src, size_t n) {
  if (n) std::memcpy(dst, src, n * sizeof(int32_t));
}
void CpuOps::download(float* dst, CBuf src, size_t n) {
  if (n) std::memcpy(dst, src.f32(), n * sizeof(float));
}
void CpuOps::zero(Buf p, size_t n) {
  if (n) std::memset(p.f32(), 0, n * sizeof(float));
}
void CpuOps::copy(Buf dst, CBuf src, size_t n) {
  if (n && dst.ptr != src.ptr) std::memmove(dst.f32(), src.f32(), n * sizeof(float));
}

// out = a + b (out may alias a or b: each element is read before it is written)
void CpuOps::add(Buf out_buf, CBuf a_buf, CBuf b_buf, size_t n) {
  float* out = out_buf.f32();
  const float *a = a_buf.f32(), *b = b_buf.f32();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// dst += src
void CpuOps::accumulate(float* dst, const float* src, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// x *= s
void CpuOps::scale(float* x, float s, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

// sum_i x_i^2 in double. Fixed chunks of kChunk elements are summed
// sequentially, then the partials are summed in chunk order: the same bits for
// any thread count.
double CpuOps::sum_squares(const float* x, size_t n) {
  constexpr size_t kChunk = 1 << 14;
  const size_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    const size_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
    double s = 0.0;
    for (size_t i = lo; i < hi; i++) s += (double)x[i] * (double)x[i];
    partial[c] = s;
  }
  double total = 0.0;
  for (size_t c = 0; c < chunks; c++) total += partial[c];
  return total;
}

}  // namespace polaris
