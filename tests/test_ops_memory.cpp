// CudaOps memory and elementwise ops (cuda/memory.cu) against the CPU
// reference and against exact host formulas:
//   - upload/download round trips: fp32 exact (inf, NaN, -0, subnormals kept);
//     bf16 rounds to nearest even exactly as round_bf16, NaN stays NaN;
//   - copy in every dtype direction, into offset (2-byte aligned) buffers;
//   - zero of a whole buffer and of a sub-range;
//   - add in all 8 dtype combinations, with out aliasing a and b;
//   - accumulate and scale bitwise equal to the CPU;
//   - sum_squares within 1e-9 relative of the CPU and bitwise repeatable.
// Sizes 1, 7 and 1000003 (not a multiple of any block or chunk).
//
// The last section ("CPU reference") tests CpuOps alone and runs without a
// GPU: against direct formulas, central differences and compositions of
// other ops (tests/cpu_op_checks.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tests/cpu_op_checks.h"
#include "tests/ops_compare.h"

namespace polaris {
namespace {

using test::DeviceBuffer;
using test::expect_close;
using test::random_vector;
using test::round_bf16;

const size_t kSizes[] = {1, 7, 1000003};

uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
float from_bits(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// Every element bitwise equal (NaN equal to any NaN).
void expect_same_bits(const std::string& what, const std::vector<float>& got,
                      const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = std::isnan(want[i]) ? std::isnan(got[i]) : bits_of(got[i]) == bits_of(want[i]);
    if (!same && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " elements differ; first at " << first << ": got " << got[first]
                     << ", expected " << want[first];
}

// Values a round trip must keep (fp32) or round in a known way (bf16):
// signed zeros, infinities, NaNs (one with its payload only in the low 16
// bits, which a plain truncation would turn into inf), subnormals, the
// largest float (rounds to inf in bf16), and exact bf16 ties.
std::vector<float> special_values() {
  const float inf = std::numeric_limits<float>::infinity();
  return {0.f,
          -0.f,
          inf,
          -inf,
          std::numeric_limits<float>::quiet_NaN(),
          from_bits(0x7f800001u),  // signalling NaN, payload in the low bits
          from_bits(0xff800001u),
          std::numeric_limits<float>::denorm_min(),
          -std::numeric_limits<float>::denorm_min(),
          std::numeric_limits<float>::min(),
          std::numeric_limits<float>::max(),
          -std::numeric_limits<float>::max(),
          1.f + 0x1p-8f,        // tie between 1 and 1 + 2^-7: rounds to even (1)
          1.f + 3 * 0x1p-8f,    // tie: rounds to even (1 + 2^-6)
          -(1.f + 0x1p-8f),
          1.f + 0x1p-8f + 0x1p-20f,  // just above the tie: rounds up
          3.14159265f,
          -2.71828182f,
          65504.f,
          1e-30f};
}

std::vector<float> values_with_specials(size_t n, uint32_t seed) {
  std::vector<float> v = random_vector(n, seed, 3.f, /*bf16_exact=*/false);
  const std::vector<float> s = special_values();
  for (size_t i = 0; i < s.size() && i < n; ++i) v[(i * 7919) % n] = s[i];
  return v;
}

std::vector<float> rounded(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = std::isnan(v[i]) ? v[i] : round_bf16(v[i]);
  return r;
}

std::string n_str(size_t n) { return "n=" + std::to_string(n); }

TEST(OpsMemory, UploadDownloadF32IsExact) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (size_t n : kSizes) {
    const std::vector<float> host = values_with_specials(n, 1 + uint32_t(n));
    DeviceBuffer buf(*gpu, host, DType::f32);
    expect_same_bits("upload/download fp32 " + n_str(n), buf.download(), host);
  }
}

TEST(OpsMemory, UploadBf16RoundsToNearestEven) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (size_t n : kSizes) {
    const std::vector<float> host = values_with_specials(n, 2 + uint32_t(n));
    DeviceBuffer buf(*gpu, host, DType::bf16);
    expect_same_bits("upload/download bf16 " + n_str(n), buf.download(), rounded(host));
  }
  // The specials one by one, with what they must become.
  const std::vector<float> s = special_values();
  DeviceBuffer buf(*gpu, s, DType::bf16);
  const std::vector<float> got = buf.download();
  EXPECT_TRUE(std::isnan(got[4]) && std::isnan(got[5]) && std::isnan(got[6]))
      << "NaN must stay NaN in bf16";
  EXPECT_EQ(got[2], std::numeric_limits<float>::infinity());
  EXPECT_EQ(got[10], std::numeric_limits<float>::infinity()) << "FLT_MAX rounds to inf";
  EXPECT_EQ(got[12], 1.f) << "ties round to even";
  EXPECT_EQ(got[13], 1.f + 0x1p-6f) << "ties round to even";
  EXPECT_EQ(got[15], 1.f + 0x1p-7f);
  EXPECT_TRUE(std::signbit(got[1]) && got[1] == 0.f) << "-0 keeps its sign";
}

TEST(OpsMemory, UploadIntRoundTrip) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (size_t n : kSizes) {
    const std::vector<int32_t> host = test::random_ints(n, 3, -2000000000, 2000000000);
    int32_t* dev = gpu->alloc_int(n);
    gpu->upload_int(dev, host.data(), n);
    // Read back through an fp32 view of the same bytes: the bits must match.
    std::vector<float> back(n);
    gpu->download(back.data(), CBuf(reinterpret_cast<const float*>(dev)), n);
    std::vector<int32_t> got(n);
    std::memcpy(got.data(), back.data(), n * 4);
    gpu->release(dev);
    EXPECT_EQ(got, host) << n_str(n);
  }
}

TEST(OpsMemory, AllocIsZeroFilled) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (DType t : {DType::f32, DType::bf16}) {
    DeviceBuffer buf(*gpu, 1000003, t);
    const std::vector<float> got = buf.download();
    expect_same_bits(std::string("alloc_buf ") + dtype_name(t), got,
                     std::vector<float>(got.size(), 0.f));
  }
  // n == 0 still gives a usable (non-null) pointer that release accepts.
  Buf empty = gpu->alloc_buf(0, DType::bf16);
  EXPECT_NE(empty.ptr, nullptr);
  gpu->release(empty.ptr);
  gpu->release(nullptr);  // a no-op
}

TEST(OpsMemory, CopyConvertsBetweenDtypes) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (size_t n : kSizes) {
    const std::vector<float> host = values_with_specials(n, 4 + uint32_t(n));
    const std::vector<float> host_bf16 = rounded(host);
    DeviceBuffer f32(*gpu, host, DType::f32);
    DeviceBuffer bf(*gpu, host, DType::bf16);
    const std::string shape = n_str(n);
    {
      DeviceBuffer dst(*gpu, n, DType::bf16);
      dst.poison();
      gpu->copy(dst, f32, n);
      expect_same_bits("copy fp32->bf16 " + shape, dst.download(), host_bf16);
    }
    {
      DeviceBuffer dst(*gpu, n, DType::f32);
      dst.poison();
      gpu->copy(dst, bf, n);
      expect_same_bits("copy bf16->fp32 " + shape, dst.download(), host_bf16);
    }
    {
      DeviceBuffer dst(*gpu, n, DType::f32);
      dst.poison();
      gpu->copy(dst, f32, n);
      expect_same_bits("copy fp32->fp32 " + shape, dst.download(), host);
    }
    {
      DeviceBuffer dst(*gpu, n, DType::bf16);
      dst.poison();
      gpu->copy(dst, bf, n);
      expect_same_bits("copy bf16->bf16 " + shape, dst.download(), host_bf16);
    }
    // Copying a buffer onto itself is a no-op.
    gpu->copy(f32, f32, n);
    expect_same_bits("copy onto itself " + shape, f32.download(), host);
  }
}

// Offsets that leave a bf16 pointer only 2-byte aligned, and a copy between
// parts of buffers: elements outside the range are untouched.
TEST(OpsMemory, CopyAtOffsets) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  const size_t n = 1001, off_src = 3, off_dst = 5, count = 990;
  const std::vector<float> src_host = random_vector(n, 5, 2.f, /*bf16_exact=*/false);
  const std::vector<float> dst_host = random_vector(n, 6, 2.f, /*bf16_exact=*/true);
  for (DType ts : {DType::f32, DType::bf16}) {
    for (DType td : {DType::f32, DType::bf16}) {
      DeviceBuffer src(*gpu, src_host, ts);
      DeviceBuffer dst(*gpu, dst_host, td);
      gpu->copy(Buf(dst) + off_dst, CBuf(src) + off_src, count);
      std::vector<float> want = dst_host;
      for (size_t i = 0; i < count; ++i) {
        const float x = src_host[off_src + i];
        want[off_dst + i] = (ts == DType::bf16 || td == DType::bf16) ? round_bf16(x) : x;
      }
      expect_same_bits(std::string("copy at offsets ") + dtype_name(ts) + "->" + dtype_name(td),
                       dst.download(), want);
    }
  }
}

TEST(OpsMemory, ZeroWholeAndRange) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (size_t n : kSizes) {
    for (DType t : {DType::f32, DType::bf16}) {
      const std::vector<float> host = random_vector(n, 7, 1.f);  // bf16-exact
      DeviceBuffer buf(*gpu, host, t);
      const std::string what = std::string("zero ") + dtype_name(t) + " " + n_str(n);
      if (n > 4) {
        gpu->zero(Buf(buf) + 2, n - 4);
        std::vector<float> want = host;
        for (size_t i = 2; i < n - 2; ++i) want[i] = 0.f;
        expect_same_bits(what + " (range)", buf.download(), want);
      }
      gpu->zero(buf, n);
      expect_same_bits(what, buf.download(), std::vector<float>(n, 0.f));
    }
  }
}

// out = a + b: the sum is formed in fp32 and rounded once into out's dtype.
// Inputs are bf16-exact, so the GPU must equal the CPU's fp32 sum (rounded to
// bf16 when out is bf16) bit for bit: there is one rounding and no freedom.
TEST(OpsMemory, AddAllDtypesMatchesCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  const DType types[] = {DType::f32, DType::bf16};
  for (size_t n : kSizes) {
    const std::vector<float> a = random_vector(n, 8, 1.f), b = random_vector(n, 9, 0.3f);
    DeviceBuffer ca(cpu, a, DType::f32), cb(cpu, b, DType::f32), cout(cpu, n, DType::f32);
    cpu.add(cout, ca, cb, n);
    const std::vector<float> sum = cout.download();
    for (DType to : types)
      for (DType ta : types)
        for (DType tb : types) {
          DeviceBuffer ga(*gpu, a, ta), gb(*gpu, b, tb), gout(*gpu, n, to);
          gout.poison();
          gpu->add(gout, ga, gb, n);
          const std::vector<float> want = to == DType::bf16 ? rounded(sum) : sum;
          expect_same_bits(std::string("add ") + dtype_name(to) + "=" + dtype_name(ta) + "+" +
                               dtype_name(tb) + " " + n_str(n),
                           gout.download(), want);
        }
  }
}

TEST(OpsMemory, AddInPlace) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  for (size_t n : kSizes) {
    const std::vector<float> a = random_vector(n, 10, 1.f), b = random_vector(n, 11, 1.f);
    std::vector<float> sum(n);
    for (size_t i = 0; i < n; ++i) sum[i] = a[i] + b[i];
    for (DType t : {DType::f32, DType::bf16}) {
      const std::vector<float> want = t == DType::bf16 ? rounded(sum) : sum;
      const std::string what = std::string("add in place ") + dtype_name(t) + " " + n_str(n);
      {
        DeviceBuffer ga(*gpu, a, t), gb(*gpu, b, t);
        gpu->add(ga, ga, gb, n);  // out aliases a
        expect_same_bits(what + " (out = a)", ga.download(), want);
      }
      {
        DeviceBuffer ga(*gpu, a, t), gb(*gpu, b, t);
        gpu->add(gb, ga, gb, n);  // out aliases b
        expect_same_bits(what + " (out = b)", gb.download(), want);
      }
      {
        // The residual stream case: bf16 residual += fp32 branch output.
        DeviceBuffer ga(*gpu, a, t), gb(*gpu, b, DType::f32);
        gpu->add(ga, ga, gb, n);
        expect_same_bits(what + " (out = a, b fp32)", ga.download(), want);
      }
    }
  }
}

// accumulate and scale are one fp32 operation per element: bitwise equal to
// the CPU.
TEST(OpsMemory, AccumulateAndScaleMatchCpu) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  for (size_t n : kSizes) {
    const std::vector<float> x = random_vector(n, 12, 1.f, false);
    const std::vector<float> y = random_vector(n, 13, 0.01f, false);
    DeviceBuffer gx(*gpu, x, DType::f32), gy(*gpu, y, DType::f32);
    DeviceBuffer cx(cpu, x, DType::f32), cy(cpu, y, DType::f32);
    gpu->accumulate(gx.f32(), gy.f32(), n);
    cpu.accumulate(cx.f32(), cy.f32(), n);
    expect_same_bits("accumulate " + n_str(n), gx.download(), cx.download());
    gpu->accumulate(gx.f32(), gy.f32(), n);  // twice: it adds, it does not write
    cpu.accumulate(cx.f32(), cy.f32(), n);
    expect_same_bits("accumulate twice " + n_str(n), gx.download(), cx.download());
    gpu->scale(gx.f32(), -0.37f, n);
    cpu.scale(cx.f32(), -0.37f, n);
    expect_same_bits("scale " + n_str(n), gx.download(), cx.download());
  }
}

// Both sides accumulate x_i^2 (exact in double for fp32 x) in double, in
// different orders: the difference is a few double roundings per partial
// sum, below n * 2^-53 ~ 1e-10 relative for n = 1e6: 1e-9 leaves room.
TEST(OpsMemory, SumSquaresMatchesCpuAndRepeats) {
  POLARIS_GPU_OPS_OR_SKIP(gpu);
  CpuOps cpu;
  EXPECT_EQ(gpu->sum_squares(nullptr, 0), 0.0);
  for (size_t n : {size_t(1), size_t(7), size_t(8191), size_t(8192 * 3 + 5), size_t(1000003),
                   size_t(4000037)}) {
    const std::vector<float> x = random_vector(n, 14 + uint32_t(n), 0.02f, false);
    DeviceBuffer gx(*gpu, x, DType::f32), cx(cpu, x, DType::f32);
    const double got = gpu->sum_squares(gx.f32(), n);
    const double want = cpu.sum_squares(cx.f32(), n);
    EXPECT_NEAR(got, want, 1e-9 * want) << "sum_squares " << n_str(n);
    // A second run (and a run after the scratch was grown by a larger call)
    // gives the same bits: the grid and the order depend only on n.
    const double again = gpu->sum_squares(gx.f32(), n);
    EXPECT_EQ(std::memcmp(&got, &again, sizeof(double)), 0)
        << "sum_squares " << n_str(n) << " not repeatable: " << got << " vs " << again;
  }
  // Part of a buffer (an offset pointer) and a known value: n ones.
  const std::vector<float> ones(100003, 1.f);
  DeviceBuffer g1(*gpu, ones, DType::f32);
  EXPECT_EQ(gpu->sum_squares(g1.f32() + 3, 100000), 100000.0);
}

// ---- CPU reference ----
//
// CpuOps alone (runs without a GPU): allocation, transfers and the elementwise
// ops against direct formulas; sum_squares against a double sum, and its bits
// independent of the thread count.

using test::bitwise_equal;
using test::expect_same_bits_across_threads;
using test::randn;
using Vec = std::vector<float>;
using IVec = std::vector<int32_t>;

TEST(CpuMemory, AllocTransferAndElementwise) {
  CpuOps ops;
  EXPECT_EQ(ops.name(), "cpu");
  float* p = ops.alloc(1000);
  int32_t* ip = ops.alloc_int(1000);
  for (int i = 0; i < 1000; i++) {
    ASSERT_EQ(p[i], 0.f);
    ASSERT_EQ(ip[i], 0);
  }
  Vec a = randn(1000, 1), b = randn(1000, 2), h(1000);
  ops.upload(p, a.data(), 1000);
  ops.download(h.data(), p, 1000);
  EXPECT_TRUE(bitwise_equal(a, h));
  IVec ia(1000, 7), ih(1000);
  ops.upload_int(ip, ia.data(), 1000);
  std::memcpy(ih.data(), ip, 1000 * sizeof(int32_t));
  EXPECT_EQ(ia, ih);
  ops.zero(p, 1000);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(p[i], 0.f);
  ops.release(p);
  ops.release(ip);

  Vec out(1000);
  ops.add(out.data(), a.data(), b.data(), 1000);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(out[i], a[i] + b[i]);
  Vec c = a;
  ops.add(c.data(), c.data(), b.data(), 1000);  // aliasing
  EXPECT_TRUE(bitwise_equal(c, out));
  c = a;
  ops.accumulate(c.data(), b.data(), 1000);
  EXPECT_TRUE(bitwise_equal(c, out));
  ops.copy(c.data(), a.data(), 1000);
  EXPECT_TRUE(bitwise_equal(c, a));
  ops.scale(c.data(), 0.5f, 1000);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(c[i], a[i] * 0.5f);
}

TEST(CpuMemory, SumSquares) {
  CpuOps ops;
  Vec x = randn(100003, 3);
  double ref = 0;
  for (float v : x) ref += (double)v * v;
  EXPECT_NEAR(ops.sum_squares(x.data(), x.size()), ref, 1e-9 * ref);
  EXPECT_EQ(ops.sum_squares(x.data(), 0), 0.0);
}

TEST(CpuMemory, SumSquaresDeterministicAcrossThreadCounts) {
  CpuOps ops;
  Vec x = randn(1000003, 5);
  expect_same_bits_across_threads("sum_squares", [&] {
    const double s = ops.sum_squares(x.data(), x.size());
    Vec bits(2);
    std::memcpy(bits.data(), &s, sizeof s);
    return bits;
  });
}

}  // namespace
}  // namespace polaris
