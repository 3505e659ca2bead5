// Attention forward/backward throughput of CudaOps, flash (tensor cores,
// cuda/flash_attention.cu) against simple (CUDA cores, cuda/attention.cu):
//   Qwen3-4B  B=2 T=2048 H=32 KVH=8 D=128
//   Qwen3-4B  B=2 T=8192 H=32 KVH=8 D=128
//   GPT-2     B=8 T=1024 H=12 KVH=12 D=64
// Causal flops count only the pairs s <= t (the FlashAttention convention):
// forward 4*B*H*T^2*D/2, backward 2.5x the forward. TFLOP/s against the
// H100 SXM's 989 TFLOP/s dense bf16. run/bench_attention.py prints PyTorch
// SDPA's figures (flash and cuDNN backends) for the same shapes.
//
// Timing: 2 warm-up calls, synchronize, N timed calls (10, 5 for T=8192),
// synchronize; the mean time of one call.
// Without a GPU it prints one line and exits 0.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "model/ops.h"
#ifdef POLARIS_HAVE_CUDA
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#endif

using namespace polaris;

#ifdef POLARIS_HAVE_CUDA
namespace {

constexpr double kPeakFlopsPerSecond = 989e12;  // H100 SXM dense bf16

struct Shape {
  const char* name;
  int B, T, H, KVH, D;
};

// Deterministic pseudo-random values in [-1, 1) (a cheap LCG; the values
// only need to be ordinary).
std::vector<float> fill(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t x = seed * 2654435761u + 1u;
  for (float& f : v) {
    x = x * 1664525u + 1013904223u;
    f = float(x >> 8) * (2.f / 16777216.f) - 1.f;
  }
  return v;
}

double time_ms(Ops& ops, int calls, const std::function<void()>& fn) {
  for (int i = 0; i < 2; ++i) fn();
  ops.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) fn();
  ops.synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / calls;
}

void bench_shape(CudaOps& ops, const Shape& s) {
  const size_t N = size_t(s.B) * s.T, Q = size_t(s.H) * s.D, KV = size_t(s.KVH) * s.D;
  Buf q = ops.alloc_buf(N * Q, DType::bf16), k = ops.alloc_buf(N * KV, DType::bf16),
      v = ops.alloc_buf(N * KV, DType::bf16), out = ops.alloc_buf(N * Q, DType::bf16),
      dout = ops.alloc_buf(N * Q, DType::bf16), dq = ops.alloc_buf(N * Q, DType::bf16),
      dk = ops.alloc_buf(N * KV, DType::bf16), dv = ops.alloc_buf(N * KV, DType::bf16);
  Buf lse = ops.alloc_buf(size_t(s.B) * s.H * s.T, DType::f32);
  {
    std::vector<float> h = fill(N * Q, 1);
    ops.upload(q, h.data(), h.size());
    h = fill(N * Q, 2);
    ops.upload(dout, h.data(), h.size());
    h = fill(N * KV, 3);
    ops.upload(k, h.data(), h.size());
    h = fill(N * KV, 4);
    ops.upload(v, h.data(), h.size());
  }
  const AttentionShape sh{s.B, s.T, s.H, s.KVH, s.D};
  const double fwd_flops = 4.0 * s.B * s.H * double(s.T) * s.T * s.D / 2;
  const double bwd_flops = 2.5 * fwd_flops;
  const int calls = s.T >= 8192 ? 5 : 10;
  for (const char* impl : {"flash", "simple"}) {
    ops.set_attention(impl);
    const double f = time_ms(ops, calls, [&] {
      ops.attention_forward(out, lse.f32(), q, k, v, nullptr, sh);
    });
    const double b = time_ms(ops, calls, [&] {
      ops.attention_backward(dq, dk, dv, dout, q, k, v, out, lse.f32(), nullptr, sh);
    });
    const double ft = fwd_flops / (f * 1e-3) / 1e12, bt = bwd_flops / (b * 1e-3) / 1e12;
    std::printf("%-10s B=%d T=%-5d H=%-2d KVH=%-2d D=%-3d %-6s  fwd %8.3f ms %7.1f TFLOP/s "
                "(%4.1f%%)  bwd %8.3f ms %7.1f TFLOP/s (%4.1f%%)\n",
                s.name, s.B, s.T, s.H, s.KVH, s.D, impl, f, ft,
                100.0 * ft * 1e12 / kPeakFlopsPerSecond, b, bt,
                100.0 * bt * 1e12 / kPeakFlopsPerSecond);
    std::fflush(stdout);
  }
  ops.set_attention("flash");
  for (Buf x : {q, k, v, out, dout, dq, dk, dv, lse}) ops.release(x.ptr);
}

}  // namespace
#endif  // POLARIS_HAVE_CUDA

int main() {
#ifndef POLARIS_HAVE_CUDA
  std::printf("bench_attention: skipped: this build has no CUDA backend\n");
  return 0;
#else
  std::string why_none;
  const std::vector<CudaDevice> devices = cuda_devices(&why_none);
  if (devices.empty()) {
    std::printf("bench_attention: skipped: no usable GPU (%s)\n", why_none.c_str());
    return 0;
  }
  try {
    CudaOps ops(0);
    const CudaDevice& d = devices[0];
    std::printf("bench_attention: %s (sm_%d%d); causal flops (fwd 4*B*H*T^2*D/2, bwd 2.5x); "
                "%% of %.0f TFLOP/s dense bf16 (H100 SXM)\n",
                d.name.c_str(), d.major, d.minor, kPeakFlopsPerSecond / 1e12);
    for (const Shape& s : {Shape{"qwen3-4B", 2, 2048, 32, 8, 128},
                           Shape{"qwen3-4B", 2, 8192, 32, 8, 128},
                           Shape{"gpt2-124M", 8, 1024, 12, 12, 64}})
      bench_shape(ops, s);
    return 0;
  } catch (const std::exception& e) {
    std::printf("bench_attention: error: %s\n", e.what());
    return 1;
  }
#endif
}
