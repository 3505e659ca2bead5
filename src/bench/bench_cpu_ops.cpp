// Micro-benchmark of the CPU reference ops at tiny-model shapes:
//   matmul forward / backward at N=1024, C=256, F=1024 (the MLP up-projection),
//   beside a naive triple-loop matmul (the reference) in the same run;
//   causal attention forward / backward at B=8, T=128, H=4, D=32.
// Prints GFLOP/s (best of a few repetitions). Runs in a few seconds.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "model/cpu_ops.h"

using namespace polaris;

namespace {

std::vector<float> randn(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// best seconds per call over `reps` timed calls (after one warm-up call)
double best_seconds(int reps, const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// the reference: out[n, o] = sum_i in[n, i] * w[o, i], plainest loops, one thread
void naive_matmul(float* out, const float* in, const float* w, int N, int IC, int OC) {
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      float s = 0;
      for (int i = 0; i < IC; i++) s += in[(size_t)n * IC + i] * w[(size_t)o * IC + i];
      out[(size_t)n * OC + o] = s;
    }
}

void report(const char* what, double flops, double seconds) {
  std::printf("%-44s %8.2f ms  %7.2f GFLOP/s\n", what, seconds * 1e3, flops / seconds / 1e9);
}

}  // namespace

int main() {
  CpuOps ops;
  std::printf("bench_cpu_ops: %d OpenMP threads\n", omp_get_max_threads());

  {
    const int N = 1024, C = 256, F = 1024;
    auto in = randn((size_t)N * C, 1), w = randn((size_t)F * C, 2), b = randn(F, 3),
         dout = randn((size_t)N * F, 4);
    std::vector<float> out((size_t)N * F), din((size_t)N * C), dw((size_t)F * C), db(F);
    const double flops = 2.0 * N * C * F;
    report("matmul forward  N=1024 IC=256 OC=1024", flops, best_seconds(5, [&] {
             ops.matmul_forward(out.data(), in.data(), w.data(), b.data(), N, C, F);
           }));
    report("matmul backward N=1024 IC=256 OC=1024", 2 * flops, best_seconds(5, [&] {
             ops.matmul_backward(din.data(), dw.data(), db.data(), dout.data(), in.data(),
                                 w.data(), N, C, F);
           }));
    report("matmul forward  IC=1024 OC=256 (down-proj)", flops, best_seconds(5, [&] {
             ops.matmul_forward(in.data(), out.data(), w.data(), nullptr, N, F, C);
           }));
    report("reference: naive 1-thread matmul forward", flops, best_seconds(1, [&] {
             naive_matmul(out.data(), in.data(), w.data(), N, C, F);
           }));
  }

  {
    AttentionShape s;
    s.B = 8, s.T = 128, s.num_heads = 4, s.num_kv_heads = 4, s.head_dim = 32;
    const size_t n = (size_t)s.B * s.T * s.num_heads * s.head_dim;
    auto q = randn(n, 5), k = randn(n, 6), v = randn(n, 7), dout = randn(n, 8);
    std::vector<float> out(n), lse((size_t)s.B * s.num_heads * s.T), dq(n), dk(n), dv(n);
    // causal pairs (t, s <= t) per (b, h); forward 4D flops per pair (q.k, p*v),
    // backward 10D (q.k again, dout.v, dq, dk, dv)
    const double pairs = (double)s.B * s.num_heads * s.T * (s.T + 1) / 2;
    report("attention forward  B=8 T=128 H=4 D=32", 4.0 * s.head_dim * pairs, best_seconds(5, [&] {
             ops.attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), nullptr, s);
           }));
    report("attention backward B=8 T=128 H=4 D=32", 10.0 * s.head_dim * pairs, best_seconds(5, [&] {
             ops.attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(),
                                    k.data(), v.data(), out.data(), lse.data(), nullptr, s);
           }));
  }
  return 0;
}
