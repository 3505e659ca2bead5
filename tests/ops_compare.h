// Shared pieces of the tests that compare CudaOps against the CPU reference
// (tests/test_ops_*.cpp):
//   - gpu_ops(): the CUDA backend, or a GTEST_SKIP with the reason (no CUDA in
//     this build, no device visible);
//   - inputs rounded to bf16 on the host, so both backends see the same values
//     and the comparison measures only the op's own rounding;
//   - outputs poisoned (NaN) before the op runs, so an element the kernel never
//     writes fails instead of passing on a stale value;
//   - columns(): a column range of a fused [N, W] buffer (q|k|v), dense;
//   - expect_close(): per element |got - want| <= atol + rtol * |want|; on
//     failure one line with the op, the shape, the worst index, got and want.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_ops.h"
#include "model/ops.h"
#ifdef POLARIS_HAVE_CUDA
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#endif

namespace polaris {
namespace test {

// The CUDA backend for this test, or null after GTEST_SKIP (use the macro).
inline std::unique_ptr<Ops> make_gpu_ops(std::string* why) {
#ifdef POLARIS_HAVE_CUDA
  std::vector<CudaDevice> devices = cuda_devices(why);
  if (devices.empty()) return nullptr;
  return std::unique_ptr<Ops>(new CudaOps(0));
#else
  *why = "this build has no CUDA toolkit (POLARIS_HAVE_CUDA unset)";
  return nullptr;
#endif
}

#define POLARIS_GPU_OPS_OR_SKIP(var)                                         \
  std::string var##_why;                                                   \
  std::unique_ptr<::polaris::Ops> var = ::polaris::test::make_gpu_ops(&var##_why); \
  if (!var) GTEST_SKIP() << "no GPU: " << var##_why

// Round-to-nearest-even fp32 -> bf16 -> fp32, as the device does.
inline float round_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u) return x;
  bits += 0x7fffu + ((bits >> 16) & 1u);
  bits &= 0xffff0000u;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.f,
                                        bool bf16_exact = true) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = bf16_exact ? round_bf16(dist(rng)) : dist(rng);
  return v;
}

inline std::vector<int32_t> random_ints(size_t n, uint32_t seed, int lo, int hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(rng);
  return v;
}

// A buffer of n elements of `dtype` in `ops` memory, released on scope exit.
struct DeviceBuffer {
  Ops* ops = nullptr;
  Buf buf;
  size_t n = 0;
  DeviceBuffer(Ops& o, size_t count, DType dtype) : ops(&o), buf(o.alloc_buf(count, dtype)), n(count) {}
  DeviceBuffer(Ops& o, const std::vector<float>& host, DType dtype)
      : DeviceBuffer(o, host.size(), dtype) {
    o.upload(buf, host.data(), host.size());
  }
  ~DeviceBuffer() { ops->release(buf.ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* f32() const { return buf.f32(); }
  operator Buf() const { return buf; }
  operator CBuf() const { return CBuf(buf); }
  std::vector<float> download() const {
    std::vector<float> host(n);
    ops->download(host.data(), buf, n);
    return host;
  }
  // Fills with NaN so unwritten elements show up.
  void poison() {
    std::vector<float> nan(n, std::numeric_limits<float>::quiet_NaN());
    ops->upload(buf, nan.data(), n);
  }
};

struct DeviceInts {
  Ops* ops;
  int32_t* ptr;
  DeviceInts(Ops& o, const std::vector<int32_t>& host) : ops(&o), ptr(o.alloc_int(host.size())) {
    o.upload_int(ptr, host.data(), host.size());
  }
  ~DeviceInts() { ops->release(ptr); }
  DeviceInts(const DeviceInts&) = delete;
  DeviceInts& operator=(const DeviceInts&) = delete;
  operator int32_t*() const { return ptr; }
};

// Columns [c0, c0 + width) of every row of a [N, W] matrix.
inline std::vector<float> columns(const std::vector<float>& m, size_t N, size_t W, size_t c0,
                                  size_t width) {
  std::vector<float> out(N * width);
  for (size_t n = 0; n < N; ++n)
    std::copy(m.begin() + n * W + c0, m.begin() + n * W + c0 + width, out.begin() + n * width);
  return out;
}

// |got - want| <= atol + rtol * |want| for every element; NaN anywhere fails.
inline void expect_close(const std::string& op, const std::string& shape,
                         const std::vector<float>& got, const std::vector<float>& want,
                         double atol, double rtol) {
  ASSERT_EQ(got.size(), want.size()) << op << " " << shape << ": sizes differ";
  size_t worst = 0;
  double worst_excess = -1;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i]));
    const double allowed = atol + rtol * std::fabs(double(want[i]));
    const bool fails = !(err <= allowed);  // NaN fails
    if (fails) ++bad;
    const double excess = std::isnan(err) ? std::numeric_limits<double>::infinity() : err - allowed;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  EXPECT_EQ(bad, 0u) << op << " " << shape << ": " << bad << " of " << got.size()
                     << " elements out of tolerance (atol " << atol << ", rtol " << rtol
                     << "); worst at index " << worst << ": got " << got[worst] << ", expected "
                     << want[worst];
}

}  // namespace test
}  // namespace polaris
