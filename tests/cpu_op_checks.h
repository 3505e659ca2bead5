// Shared pieces of the CPU reference op tests (the "CPU reference" section of
// each tests/test_ops_<family>.cpp):
//   - every backward against double-precision central differences of
//     L = sum(dout * out) (or the loss itself for cross_entropy): expect_grad;
//   - backward accumulates (a second call doubles the gradient: expect_doubled)
//     or writes (a second call gives the same values: expect_written), and
//     skips null gradient pointers;
//   - forward values against naive direct formulas;
//   - bitwise determinism across thread counts: expect_same_bits_across_threads.
// Each test makes its own CpuOps (a plain object: nothing to share).
#pragma once
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "model/cpu_ops.h"

namespace polaris {
namespace test {

// N(0, scale) fp32 values (not rounded to bf16: the CPU reference is fp32).
inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += (double)a[i] * b[i];
  return s;
}

inline double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float x : a) m = std::max(m, (double)std::fabs(x));
  return m;
}

inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct ThreadCount {  // restores the OpenMP thread count when it goes out of scope
  int saved = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
};

// Compares the analytic gradient of L with respect to x against central
// differences, element by element: num_i = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)
// (with the step actually representable in fp32). L runs the fp32 forward and
// reduces in double; the error allowed is tol * max|analytic|.
inline void expect_grad(const char* what, std::vector<float>& x,
                        const std::vector<float>& analytic, const std::function<double()>& L,
                        float eps = 1e-2f, double tol = 1e-3) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  ThreadCount one(1);  // many tiny forwards: skip the thread start-up cost
  const double scale = max_abs(analytic);
  ASSERT_GT(scale, 0.0) << what << ": gradient is all zero, the check proves nothing";
  double worst = 0;
  size_t worst_i = 0;
  double worst_num = 0;
  for (size_t i = 0; i < x.size(); i++) {
    const float orig = x[i];
    x[i] = orig + eps;
    const double xp = x[i], lp = L();
    x[i] = orig - eps;
    const double xm = x[i], lm = L();
    x[i] = orig;
    const double num = (lp - lm) / (xp - xm);
    const double err = std::fabs(num - analytic[i]);
    if (err > worst) worst = err, worst_i = i, worst_num = num;
  }
  EXPECT_LE(worst, tol * scale) << what << ": element " << worst_i << " analytic "
                                << analytic[worst_i] << " numeric " << worst_num
                                << " (max |grad| " << scale << ")";
}

// a second call adds the same gradient again: g2 == 2 * g1 (up to rounding:
// ops that scatter-add row by row, like embedding_backward, round each add).
// For parameter gradients and the norms' din (model/ops.h: they accumulate).
inline void expect_doubled(const char* what, const std::vector<float>& once,
                           const std::vector<float>& twice) {
  ASSERT_EQ(once.size(), twice.size());
  const double tol = 1e-6 * std::max(1.0, max_abs(once));
  for (size_t i = 0; i < once.size(); i++)
    ASSERT_NEAR(twice[i], 2.0 * once[i], tol) << what << " element " << i;
}

// a written gradient: a second call into a buffer holding the first result
// gives the same values again (nothing is added)
inline void expect_written(const char* what, const std::vector<float>& once,
                           const std::vector<float>& twice) {
  ASSERT_EQ(once.size(), twice.size());
  for (size_t i = 0; i < once.size(); i++)
    ASSERT_EQ(twice[i], once[i]) << what << " element " << i << " (written, not added)";
}

// run() (returning everything it computed, as floats) gives the same bits on
// 1, 2 and 4 OpenMP threads (model/cpu_ops.h: no reduction's order depends on
// the thread schedule).
template <typename F>
void expect_same_bits_across_threads(const char* what, F run) {
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 4}) {
    ThreadCount tc(threads);
    results.push_back(run());
  }
  for (size_t i = 1; i < results.size(); i++)
    EXPECT_TRUE(bitwise_equal(results[0], results[i])) << what << ": thread count changes bits";
}

}  // namespace test
}  // namespace polaris
