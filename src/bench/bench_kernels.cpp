// Micro-benchmark of the CUDA ops (CudaOps, cuda/*.cu) at the shapes the
// transformer runs them at, forward and backward:
//   GPT-2 124M : N = B*T = 16*1024 tokens, C = 768, H = 12, D = 64, V = 50,257
//   Qwen3-4B   : N = 2*2048 tokens, C = 2560, H = 32, KVH = 8, D = 128,
//                F = 9728, V = 151,936
// The LM head and the loss run per row chunk as model/transformer.cpp does
// them: min(N, 2^25 / V) rows (667 for GPT-2, 220 for Qwen3).
//
// Timing: 3 warm-up calls, synchronize, 20 timed calls, synchronize; the
// figure is the mean time of one call. Each row prints the achieved rate
// against an H100 SXM's peak:
//   - memory-bound ops: GB/s of the bytes an ideal kernel must move (every
//     input read once, every output written once, accumulated outputs read
//     and written), against 3.35 TB/s of HBM3;
//   - matmuls and attention: TFLOP/s against 989 TFLOP/s dense bf16; a
//     matmul is 2*N*IC*OC flops forward, 4*N*IC*OC backward (din and
//     dweight); causal attention counts only the pairs s <= t:
//     4*D flops per (query head, pair) forward (q.k and p.v), 10*D backward
//     (q.k again, dout.v, dq, dk, dv) - the FlashAttention convention.
//
// Usage: bench_kernels [SUBSTRING]   runs only the rows whose op or shape
// contains SUBSTRING (e.g. "attention", "qwen3").
// Without a GPU (a build with no CUDA, or no visible device) it prints one
// line saying why and exits 0, so `make bench` passes on CPU-only machines.
// Exit status 1 when an op failed (its row shows the error).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "model/ops.h"
#ifdef POLARIS_HAVE_CUDA
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#endif

using namespace polaris;

// Everything below needs the CUDA ops; a build without them only says so.
#ifdef POLARIS_HAVE_CUDA
namespace {

constexpr double kPeakBytesPerSecond = 3.35e12;  // H100 SXM HBM3
constexpr double kPeakFlopsPerSecond = 989e12;   // H100 SXM dense bf16
constexpr int kWarmupCalls = 3;
constexpr int kTimedCalls = 20;
constexpr size_t kBf16 = 2, kF32 = 4, kI32 = 4;

// The LM head's row chunk in model/transformer.cpp (a 2^25-element logits budget).
int logit_rows(int N, int V) {
  return int(std::min<size_t>(size_t(N), std::max<size_t>(1, (size_t(1) << 25) / size_t(V))));
}

std::string fmt(const char* format, double a, double b = 0, double c = 0, double d = 0,
                double e = 0, double f = 0) {
  char text[256];
  std::snprintf(text, sizeof text, format, a, b, c, d, e, f);
  return text;
}

// Fast deterministic pseudo-random numbers in [-1, 1) (splitmix64): the
// values do not matter for timing, only that they are finite and varied.
uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Device buffers of one benchmark section, released when it ends, filled
// from one reused host chunk of random numbers (uploads of up to 1e9
// elements without a host copy of that size).
class Arena {
 public:
  explicit Arena(Ops& ops) : ops_(ops), chunk_(random_chunk()) {}
  ~Arena() {
    for (const void* p : owned_) ops_.release(p);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Activation-dtype (bf16) buffer: random, or zero-filled.
  Buf act(size_t n, bool random = true) { return fill(ops_.alloc_activations(n), n, random); }
  // fp32 buffer: random, or zero-filled (gradients that accumulate, moments).
  float* f32(size_t n, bool random = false) {
    return fill(ops_.alloc_buf(n, DType::f32), n, random).f32();
  }
  int32_t* ints(const std::vector<int32_t>& host) {
    int32_t* p = ops_.alloc_int(host.size());
    owned_.push_back(p);
    ops_.upload_int(p, host.data(), host.size());
    return p;
  }

 private:
  Buf fill(Buf b, size_t n, bool random) {
    owned_.push_back(b.ptr);
    if (!random) return b;
    for (size_t off = 0; off < n; off += chunk_.size()) {
      const size_t count = std::min(chunk_.size(), n - off);
      // A different start in the chunk for each piece, so a buffer does not
      // repeat with the chunk's period exactly.
      const size_t start = (off / chunk_.size() * 7919) % (chunk_.size() - count + 1);
      ops_.upload(b + off, chunk_.data() + start, count);
    }
    return b;
  }

  // 2^24 values in [-1, 1), made once.
  static const std::vector<float>& random_chunk() {
    static const std::vector<float> chunk = [] {
      std::vector<float> c(size_t(1) << 24);
      uint64_t state = 12345;
      for (float& x : c)
        x = float(int64_t(splitmix(state) >> 40) - (int64_t(1) << 23)) / float(1 << 23);
      return c;
    }();
    return chunk;
  }

  Ops& ops_;
  const std::vector<float>& chunk_;
  std::vector<const void*> owned_;
};

class Bench {
 public:
  Bench(Ops& ops, std::string filter) : ops_(ops), filter_(std::move(filter)) {}

  int failures() const { return failures_; }
  bool wanted(const std::string& op, const std::string& shape) const {
    return filter_.empty() || op.find(filter_) != std::string::npos ||
           shape.find(filter_) != std::string::npos;
  }
  static void header() {
    std::printf("%-30s %-44s %10s %12s %7s\n", "op", "shape", "time us", "achieved",
                "% peak");
  }
  void section(const std::string& title) { std::printf("\n-- %s\n", title.c_str()); }

  // A memory-bound op moving `bytes` per call.
  void bytes(const std::string& op, const std::string& shape, double bytes,
             const std::function<void()>& call, const std::string& note = "") {
    if (!wanted(op, shape)) return;
    double us = 0;
    if (!time(op, shape, call, &us)) return;
    const double rate = bytes / (us * 1e-6);
    std::printf("%-30s %-44s %10.1f %7.0f GB/s %6.1f%%%s%s\n", op.c_str(), shape.c_str(), us,
                rate / 1e9, 100 * rate / kPeakBytesPerSecond, note.empty() ? "" : "  ",
                note.c_str());
  }
  // A compute-bound op doing `flops` per call.
  void flops(const std::string& op, const std::string& shape, double flops,
             const std::function<void()>& call, const std::string& note = "") {
    if (!wanted(op, shape)) return;
    double us = 0;
    if (!time(op, shape, call, &us)) return;
    const double rate = flops / (us * 1e-6);
    std::printf("%-30s %-44s %10.1f %5.0f TFLOP/s %6.1f%%%s%s\n", op.c_str(), shape.c_str(), us,
                rate / 1e12, 100 * rate / kPeakFlopsPerSecond, note.empty() ? "" : "  ",
                note.c_str());
  }

 private:
  bool time(const std::string& op, const std::string& shape, const std::function<void()>& call,
            double* us) {
    try {
      for (int i = 0; i < kWarmupCalls; ++i) call();
      ops_.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kTimedCalls; ++i) call();
      ops_.synchronize();
      const auto t1 = std::chrono::steady_clock::now();
      *us = std::chrono::duration<double, std::micro>(t1 - t0).count() / kTimedCalls;
      std::fflush(stdout);
      return true;
    } catch (const std::exception& e) {
      ++failures_;
      std::printf("%-30s %-44s FAILED: %s\n", op.c_str(), shape.c_str(), e.what());
      std::fflush(stdout);
      return false;
    }
  }

  Ops& ops_;
  std::string filter_;
  int failures_ = 0;
};

// Tokens uniform in [0, V); positions 0..T-1 in every row.
std::vector<int32_t> random_tokens(int N, int V, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(N));
  for (int32_t& x : t) x = int32_t(splitmix(seed) % uint64_t(V));
  return t;
}
std::vector<int32_t> row_positions(int B, int T) {
  std::vector<int32_t> p(size_t(B) * T);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) p[size_t(b) * T + t] = t;
  return p;
}
size_t distinct(const std::vector<int32_t>& v) {
  return std::unordered_set<int32_t>(v.begin(), v.end()).size();
}

struct Model {
  const char* tag;  // "gpt2-124M" / "qwen3-4B": part of every shape string
  bool qwen;
  int B, T, C, H, KVH, D, F, V;
  int N() const { return B * T; }
  int Q() const { return H * D; }
  int KV() const { return KVH * D; }
  int QKV() const { return Q() + 2 * KV(); }
};

// ---------------------------------------------------------------------------
// Matmuls: every projection of one layer and one LM head chunk.

void bench_matmuls(Bench& bench, Ops& ops, const Model& m) {
  Arena arena(ops);
  const int N = m.N(), C = m.C, F = m.F, QKV = m.QKV(), Q = m.Q();
  const std::string tag = std::string(m.tag) + " ";
  struct Proj {
    const char* name;
    int IC, OC;
    bool bias, gelu;
  };
  std::vector<Proj> projections = {
      {"qkv", C, QKV, !m.qwen, false},
      {"o", Q, C, !m.qwen, false},
      {m.qwen ? "gate|up" : "up (+gelu)", C, m.qwen ? 2 * F : F, !m.qwen, !m.qwen},
      {"down", F, C, !m.qwen, false},
  };
  for (const Proj& p : projections) {
    const std::string shape =
        tag + fmt("N=%.0f IC=%.0f OC=%.0f", N, p.IC, p.OC) + (p.bias ? " +bias" : "");
    const std::string fwd = std::string("matmul fwd ") + p.name;
    const std::string bwd = std::string("matmul bwd ") + p.name;
    if (!bench.wanted(fwd, shape) && !bench.wanted(bwd, shape)) continue;
    Buf in = arena.act(size_t(N) * p.IC), w = arena.act(size_t(p.OC) * p.IC);
    Buf bias = p.bias ? arena.act(size_t(p.OC)) : Buf();
    Buf out = arena.act(size_t(N) * p.OC, false);
    Buf pre = p.gelu ? arena.act(size_t(N) * p.OC, false) : Buf();
    Buf dout = arena.act(size_t(N) * p.OC), din = arena.act(size_t(N) * p.IC, false);
    float* dw = arena.f32(size_t(p.OC) * p.IC);
    float* db = p.bias ? arena.f32(size_t(p.OC)) : nullptr;
    const double flops = 2.0 * N * p.IC * p.OC;
    if (p.gelu) {
      bench.flops(fwd, shape, flops, [&] { ops.matmul_gelu_forward(pre, out, in, w, bias, N, p.IC, p.OC); });
      // GPT-2's backward through the GELU is the down projection's
      // (matmul_backward_gelu: dpre = gelu'(pre) * (dout @ W)); the up
      // projection's own backward is a plain matmul_backward.
      bench.flops(bwd, shape, 2 * flops, [&] {
        ops.matmul_backward(din, dw, db, dout, in, w, N, p.IC, p.OC);
      });
    } else {
      bench.flops(fwd, shape, flops, [&] { ops.matmul_forward(out, in, w, bias, N, p.IC, p.OC); });
      if (!m.qwen && std::string(p.name) == "down") {
        // The down projection's input is gelu(pre) with pre [N, F] (IC = F).
        // din serves as dpre (written).
        Buf gelu_pre = arena.act(size_t(N) * p.IC);
        bench.flops(bwd + " (+dgelu)", shape, 2 * flops, [&] {
          ops.matmul_backward_gelu(din, dw, db, dout, in, gelu_pre, w, N, p.IC, p.OC);
        });
      } else {
        bench.flops(bwd, shape, 2 * flops, [&] {
          ops.matmul_backward(din, dw, db, dout, in, w, N, p.IC, p.OC);
        });
      }
    }
  }

  // The LM head, one chunk of rows (tied weight [V, C], no bias).
  const int R = logit_rows(N, m.V);
  const std::string shape = tag + fmt("chunk rows=%.0f C=%.0f V=%.0f", R, C, m.V);
  if (!bench.wanted("matmul fwd lm head", shape) && !bench.wanted("matmul bwd lm head", shape))
    return;
  Buf x = arena.act(size_t(R) * C), w = arena.act(size_t(m.V) * C);
  Buf logits = arena.act(size_t(R) * m.V), dx = arena.act(size_t(R) * C, false);
  float* dw = arena.f32(size_t(m.V) * C);
  const double flops = 2.0 * R * C * m.V;
  const int chunks = (N + R - 1) / R;
  bench.flops("matmul fwd lm head", shape, flops,
              [&] { ops.matmul_forward(logits, x, w, nullptr, R, C, m.V); },
              fmt("(%.0f chunks a step)", chunks));
  // The fp32 weight gradient is read and written whole by every chunk: a
  // floor of 8*V*C bytes at HBM speed, whatever the flops.
  const double dw_bytes = 8.0 * m.V * C;
  bench.flops("matmul bwd lm head", shape, 2 * flops,
              [&] { ops.matmul_backward(dx, dw, nullptr, logits, x, w, R, C, m.V); },
              fmt("(dW fp32 r+w %.2f GB: floor %.0f us at HBM peak)", dw_bytes / 1e9,
                  dw_bytes / kPeakBytesPerSecond * 1e6));
}

// ---------------------------------------------------------------------------
// Norms: plain and residual-add + norm, forward; backward.

void bench_norms(Bench& bench, Ops& ops, const Model& m) {
  Arena arena(ops);
  const int N = m.N(), C = m.C;
  const size_t NC = size_t(N) * C;
  const std::string shape = std::string(m.tag) + fmt(" N=%.0f C=%.0f", N, C);
  const char* name = m.qwen ? "rmsnorm" : "layernorm";
  if (!bench.wanted(name, shape) && !bench.wanted(std::string("add+") + name, shape)) return;
  Buf in = arena.act(NC), b = arena.act(NC), out = arena.act(NC, false);
  Buf residual = arena.act(NC, false), dout = arena.act(NC), din = arena.act(NC, false);
  Buf weight = arena.act(C), bias = arena.act(C);
  float* mean = arena.f32(N);
  float* rstd = arena.f32(N);
  float* dweight = arena.f32(C);
  float* dbias = arena.f32(C);
  const float eps = 1e-5f;
  // forward: read x, write out (bf16), write the stats (fp32)
  const double stats = (m.qwen ? 1.0 : 2.0) * N * kF32;
  const double param_bytes = (m.qwen ? 1.0 : 2.0) * C * kBf16;
  if (m.qwen) {
    bench.bytes("rmsnorm fwd", shape, 2.0 * NC * kBf16 + stats + param_bytes,
                [&] { ops.rmsnorm_forward(out, rstd, in, weight, N, C, eps); });
    bench.bytes("add+rmsnorm fwd", shape, 4.0 * NC * kBf16 + stats + param_bytes,
                [&] { ops.add_rmsnorm_forward(residual, out, rstd, in, b, weight, N, C, eps); });
    // restore the stats of `in` for the backward
    ops.rmsnorm_forward(out, rstd, in, weight, N, C, eps);
    // backward: read dout and x, din read + written (it adds), stats; the
    // weight gradient is read + written once (fp32)
    bench.bytes("rmsnorm bwd", shape, 4.0 * NC * kBf16 + stats + param_bytes + 2.0 * C * kF32,
                [&] { ops.rmsnorm_backward(din, dweight, dout, in, weight, rstd, N, C); });
  } else {
    bench.bytes("layernorm fwd", shape, 2.0 * NC * kBf16 + stats + param_bytes,
                [&] { ops.layernorm_forward(out, mean, rstd, in, weight, bias, N, C, eps); });
    bench.bytes("add+layernorm fwd", shape, 4.0 * NC * kBf16 + stats + param_bytes, [&] {
      ops.add_layernorm_forward(residual, out, mean, rstd, in, b, weight, bias, N, C, eps);
    });
    ops.layernorm_forward(out, mean, rstd, in, weight, bias, N, C, eps);
    bench.bytes("layernorm bwd", shape, 4.0 * NC * kBf16 + stats + param_bytes + 4.0 * C * kF32,
                [&] {
                  ops.layernorm_backward(din, dweight, dbias, dout, in, weight, mean, rstd, N, C);
                });
  }
}

// ---------------------------------------------------------------------------
// RoPE, and Qwen3's per-head q/k RMSNorm + RoPE on the fused qkv rows.

void bench_rope(Bench& bench, Ops& ops, const Model& m) {
  Arena arena(ops);
  const int N = m.N(), Q = m.Q(), KV = m.KV(), QKV = m.QKV();
  const std::string tag = m.tag;
  const float eps = 1e-6f;
  const RopeParams rope = rope_params(1e6f, RopeScaling(), m.D);
  int32_t* positions = arena.ints(row_positions(m.B, m.T));
  {
    const std::string shape = tag + fmt(" N=%.0f heads=%.0f D=%.0f (q)", N, m.H, m.D);
    if (bench.wanted("rope fwd", shape) || bench.wanted("rope bwd", shape)) {
      Buf in = arena.act(size_t(N) * Q), out = arena.act(size_t(N) * Q, false);
      const double bytes = 2.0 * N * Q * kBf16 + N * kI32;
      bench.bytes("rope fwd", shape, bytes,
                  [&] { ops.rope_forward(out, in, positions, N, m.H, m.D, rope); });
      bench.bytes("rope bwd", shape, bytes,
                  [&] { ops.rope_backward(out, in, positions, N, m.H, m.D, rope); });
    }
  }
  const std::string shape =
      tag + fmt(" N=%.0f H=%.0f KVH=%.0f D=%.0f stride=%.0f", N, m.H, m.KVH, m.D, QKV);
  if (!bench.wanted("qk_norm_rope fwd", shape) && !bench.wanted("qk_norm_rope bwd", shape)) return;
  Buf qkv = arena.act(size_t(N) * QKV), dqkv = arena.act(size_t(N) * QKV, false);
  Buf q_out = arena.act(size_t(N) * Q, false), k_out = arena.act(size_t(N) * KV, false);
  Buf dq_out = arena.act(size_t(N) * Q), dk_out = arena.act(size_t(N) * KV);
  Buf q_weight = arena.act(m.D), k_weight = arena.act(m.D);
  float* q_rstd = arena.f32(size_t(N) * m.H);
  float* k_rstd = arena.f32(size_t(N) * m.KVH);
  float* dq_weight = arena.f32(m.D);
  float* dk_weight = arena.f32(m.D);
  const double qk = double(N) * (Q + KV);          // q and k elements
  const double rstd_bytes = double(N) * (m.H + m.KVH) * kF32;
  bench.bytes("qk_norm_rope fwd", shape, 2.0 * qk * kBf16 + rstd_bytes + N * kI32, [&] {
    ops.qk_norm_rope_forward(q_out, k_out, q_rstd, k_rstd, qkv, CBuf(qkv) + size_t(Q), QKV,
                             q_weight, k_weight, positions, N, m.H, m.KVH, m.D, eps, rope);
  });
  // backward: read dq_out/dk_out and q/k, write dq/dk, read the rstd
  bench.bytes("qk_norm_rope bwd", shape, 3.0 * qk * kBf16 + rstd_bytes + N * kI32, [&] {
    ops.qk_norm_rope_backward(dqkv, dqkv + size_t(Q), dq_weight, dk_weight, dq_out, dk_out, qkv,
                              CBuf(qkv) + size_t(Q), QKV, q_weight, k_weight, q_rstd, k_rstd,
                              positions, N, m.H, m.KVH, m.D, rope);
  });
}

// ---------------------------------------------------------------------------
// Attention, with the layouts of model/transformer.cpp: GPT-2 reads q, k, v
// as column ranges of the fused qkv rows; Qwen3 reads the dense rotated q, k
// and v from the qkv rows.

void bench_attention(Bench& bench, Ops& ops, const Model& m) {
  Arena arena(ops);
  const int N = m.N(), Q = m.Q(), KV = m.KV(), QKV = m.QKV();
  const std::string shape = std::string(m.tag) +
                            fmt(" B=%.0f T=%.0f H=%.0f KVH=%.0f D=%.0f", m.B, m.T, m.H, m.KVH, m.D);
  if (!bench.wanted("attention fwd", shape) && !bench.wanted("attention bwd", shape)) return;
  AttentionShape s{m.B, m.T, m.H, m.KVH, m.D};
  Buf qkv = arena.act(size_t(N) * QKV), dqkv = arena.act(size_t(N) * QKV, false);
  Buf out = arena.act(size_t(N) * Q, false), dout = arena.act(size_t(N) * Q);
  float* lse = arena.f32(size_t(m.B) * m.H * m.T);
  CBuf q = qkv, k = CBuf(qkv) + size_t(Q), v = CBuf(qkv) + size_t(Q + KV);
  Buf dq = dqkv, dk = dqkv + size_t(Q), dv = dqkv + size_t(Q + KV);
  s.v_stride = QKV;
  if (m.qwen) {
    Buf qr = arena.act(size_t(N) * Q), kr = arena.act(size_t(N) * KV);
    q = qr;
    k = kr;
    dq = arena.act(size_t(N) * Q, false);
    dk = arena.act(size_t(N) * KV, false);
    s.q_stride = Q;
    s.k_stride = KV;
  } else {
    s.q_stride = s.k_stride = QKV;
  }
  const double pairs = double(m.B) * m.H * m.T * (m.T + 1) / 2;
  bench.flops("attention fwd", shape, 4.0 * m.D * pairs,
              [&] { ops.attention_forward(out, lse, q, k, v, nullptr, s); });
  bench.flops("attention bwd", shape, 10.0 * m.D * pairs, [&] {
    ops.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, nullptr, s);
  });
}

// ---------------------------------------------------------------------------
// MLP activations: GELU on [N, 4C] (GPT-2), SwiGLU on [N, 2F] (Qwen3).

void bench_activations(Bench& bench, Ops& ops, const Model& m) {
  Arena arena(ops);
  const int N = m.N();
  if (m.qwen) {
    const int F = m.F;
    const std::string shape = std::string(m.tag) + fmt(" N=%.0f F=%.0f", N, F);
    if (!bench.wanted("swiglu fwd", shape) && !bench.wanted("swiglu bwd", shape)) return;
    const double NF = double(N) * F;
    Buf gate_up = arena.act(size_t(N) * 2 * F), out = arena.act(size_t(N) * F, false);
    Buf dout = arena.act(size_t(N) * F), dgate_up = arena.act(size_t(N) * 2 * F, false);
    bench.bytes("swiglu fwd", shape, 3.0 * NF * kBf16,
                [&] { ops.swiglu_forward(out, gate_up, N, F); });
    bench.bytes("swiglu bwd", shape, 5.0 * NF * kBf16,
                [&] { ops.swiglu_backward(dgate_up, dout, gate_up, N, F); });
  } else {
    const size_t n = size_t(N) * 4 * m.C;
    const std::string shape = std::string(m.tag) + fmt(" n=N*4C=%.0f", double(n));
    if (!bench.wanted("gelu fwd", shape) && !bench.wanted("gelu bwd", shape)) return;
    Buf in = arena.act(n), out = arena.act(n, false), dout = arena.act(n), din = arena.act(n, false);
    bench.bytes("gelu fwd", shape, 2.0 * n * kBf16, [&] { ops.gelu_forward(out, in, n); });
    bench.bytes("gelu bwd", shape, 3.0 * n * kBf16, [&] { ops.gelu_backward(din, dout, in, n); });
  }
}

// ---------------------------------------------------------------------------
// Cross-entropy over one LM-head chunk of logits (bf16), loss only and loss +
// dlogits in place, as the transformer calls it.

void bench_cross_entropy(Bench& bench, Ops& ops, const Model& m) {
  Arena arena(ops);
  const int R = logit_rows(m.N(), m.V);
  const std::string shape = std::string(m.tag) + fmt(" chunk rows=%.0f V=%.0f", R, m.V);
  if (!bench.wanted("cross_entropy", shape)) return;
  Buf logits = arena.act(size_t(R) * m.V);
  int32_t* targets = arena.ints(random_tokens(R, m.V, 7));
  float* weights = arena.f32(R);
  std::vector<float> ones(static_cast<size_t>(R), 1.f);
  ops.upload(weights, ones.data(), ones.size());
  float* losses = arena.f32(R);
  float* logprobs = arena.f32(R);
  float* entropies = arena.f32(R);
  LossArgs args;
  args.logits = logits;
  args.targets = targets;
  args.weights = weights;
  args.scale = 1.f / float(m.N());
  args.N = R;
  args.V = m.V;
  args.losses = losses;
  args.logprobs = logprobs;
  args.entropies = entropies;
  const double logit_bytes = double(R) * m.V * kBf16;
  const double row_bytes = double(R) * (kI32 + 4 * kF32);
  bench.bytes("cross_entropy fwd", shape, logit_bytes + row_bytes,
              [&] { ops.cross_entropy(args); });
  args.dlogits = logits;  // in place: the logits become their gradient
  bench.bytes("cross_entropy fwd+bwd", shape, 2 * logit_bytes + row_bytes,
              [&] { ops.cross_entropy(args); });
}

// ---------------------------------------------------------------------------
// Embedding: token (+ position for GPT-2) lookup; deterministic scatter-add.

void bench_embedding(Bench& bench, Ops& ops, const Model& m) {
  Arena arena(ops);
  const int N = m.N(), C = m.C;
  const std::string shape = std::string(m.tag) + fmt(" N=%.0f C=%.0f V=%.0f", N, C, m.V) +
                            (m.qwen ? "" : " +pos");
  if (!bench.wanted("embedding fwd", shape) && !bench.wanted("embedding bwd", shape)) return;
  const std::vector<int32_t> tokens_host = random_tokens(N, m.V, 3);
  int32_t* tokens = arena.ints(tokens_host);
  int32_t* positions = arena.ints(row_positions(m.B, m.T));
  Buf table = arena.act(size_t(m.V) * C), out = arena.act(size_t(N) * C, false);
  Buf pos_table = m.qwen ? Buf() : arena.act(size_t(m.T) * C);
  Buf dout = arena.act(size_t(N) * C);
  float* dtable = arena.f32(size_t(m.V) * C);
  float* dpos = m.qwen ? nullptr : arena.f32(size_t(m.T) * C);
  // forward: gather N rows (+ N position rows, mostly cache hits: counted
  // once as T rows), write N rows; ids
  const double pos_rows = m.qwen ? 0 : double(m.T);
  const double ids = double(N) * kI32 * (m.qwen ? 1 : 2);
  bench.bytes("embedding fwd", shape, (2.0 * N + pos_rows) * C * kBf16 + ids, [&] {
    ops.embedding_forward(out, tokens, m.qwen ? nullptr : positions, table, pos_table, N, C);
  });
  // backward: read dout; every distinct row touched is read and written in
  // fp32 (the accumulated gradient)
  const double rows_touched = double(distinct(tokens_host)) + pos_rows;
  bench.bytes("embedding bwd", shape, double(N) * C * kBf16 + rows_touched * C * 2 * kF32 + ids,
              [&] {
                ops.embedding_backward(dtable, dpos, dout, tokens, m.qwen ? nullptr : positions,
                                       N, C);
              });
}

// ---------------------------------------------------------------------------
// AdamW over all parameters (fp32 master, grads, moments; bf16 copy), and the
// gradient norm's sum of squares.

void bench_optimizer(Bench& bench, Ops& ops, size_t n, const char* label) {
  const std::string shape = fmt("n=%.0f", double(n)) + " (" + label + ")";
  if (!bench.wanted("adamw", shape) && !bench.wanted("sum_squares", shape)) return;
  Arena arena(ops);
  float* params = arena.f32(n, true);
  float* grads = arena.f32(n, true);
  float* mom = arena.f32(n);
  float* var = arena.f32(n);
  Buf copy = arena.act(n, false);
  AdamWArgs args;
  args.learning_rate = 1e-4f;
  args.weight_decay = 0.1f;
  args.step = 10;
  args.rounding_seed = 42;
  // read param, grad, m, v (fp32); write param, m, v (fp32) and the bf16 copy
  bench.bytes("adamw", shape, double(n) * (7 * kF32 + kBf16),
              [&] { ops.adamw_update(params, copy, grads, mom, var, n, args); });
  double sink = 0;
  // sum_squares returns to the host: its time includes the stream wait
  bench.bytes("sum_squares", shape, double(n) * kF32, [&] { sink += ops.sum_squares(grads, n); },
              "(includes the host round trip)");
  (void)sink;
}

void run_model(Bench& bench, Ops& ops, const Model& m) {
  bench.section(std::string(m.tag) + fmt(": N=%.0f tokens (B=%.0f T=%.0f)", m.N(), m.B, m.T));
  bench_matmuls(bench, ops, m);
  bench_norms(bench, ops, m);
  if (m.qwen) bench_rope(bench, ops, m);
  bench_attention(bench, ops, m);
  bench_activations(bench, ops, m);
  bench_cross_entropy(bench, ops, m);
  bench_embedding(bench, ops, m);
}

}  // namespace
#endif  // POLARIS_HAVE_CUDA

int main(int argc, char** argv) {
#ifndef POLARIS_HAVE_CUDA
  (void)argc;
  (void)argv;
  std::printf("bench_kernels: skipped: this build has no CUDA backend (nvcc, cudart or "
              "cuBLASLt not found at build time)\n");
  return 0;
#else
  std::string why_none;
  const std::vector<CudaDevice> devices = cuda_devices(&why_none);
  if (devices.empty()) {
    std::printf("bench_kernels: skipped: no usable GPU (%s)\n", why_none.c_str());
    return 0;
  }
  const std::string filter = argc > 1 ? argv[1] : "";
  try {
    CudaOps ops(0);
    const CudaDevice& d = devices[0];
    std::printf("bench_kernels: %s (sm_%d%d, %.0f GiB); %d warm-up + %d timed calls per row; "
                "%% of H100 SXM peak: %.2f TB/s HBM, %.0f TFLOP/s dense bf16\n",
                d.name.c_str(), d.major, d.minor, double(d.memory_bytes) / double(1ull << 30),
                kWarmupCalls, kTimedCalls, kPeakBytesPerSecond / 1e12, kPeakFlopsPerSecond / 1e12);
    if (const char* sync = std::getenv("POLARIS_CUDA_SYNC"))
      if (std::string(sync) == "1")
        std::printf("warning: POLARIS_CUDA_SYNC=1 synchronises after every launch: times are "
                    "inflated\n");
    if (!filter.empty()) std::printf("rows matching '%s'\n", filter.c_str());
    Bench bench(ops, filter);
    Bench::header();
    const Model gpt2{"gpt2-124M", false, 16, 1024, 768, 12, 12, 64, 3072, 50257};
    const Model qwen3{"qwen3-4B", true, 2, 2048, 2560, 32, 8, 128, 9728, 151936};
    run_model(bench, ops, gpt2);
    run_model(bench, ops, qwen3);
    bench.section("optimizer: AdamW and the gradient norm over all parameters");
    bench_optimizer(bench, ops, 124439808, "GPT-2 124M");
    bench_optimizer(bench, ops, 1000000000, "1B");
    if (bench.failures()) {
      std::printf("\nbench_kernels: %d op(s) FAILED\n", bench.failures());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::printf("bench_kernels: error: %s\n", e.what());
    return 1;
  }
#endif
}
