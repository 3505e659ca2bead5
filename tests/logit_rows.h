// Rows of logits shaped to stress a sampler: the inputs of the sampler's
// CPU tests (tests/test_sampling.cpp) and of the GPU-against-CPU tests of
// Ops::sample_rows (tests/test_ops_sampling.cpp).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace polaris {

enum class LogitShape {
  normal,      // N(0, scale)
  wide,        // N(0, 4 scale): few tokens above the weight cutoff
  flat,        // every logit equal
  ties,        // few distinct values (rounded to 1/2; -0 and +0 among them)
  neg_inf,     // 30% -inf
  nan,         // 5% NaN
  peaked,      // a language model's look: five logits far above the rest
  one_finite,  // a single finite logit
  count
};

inline const char* logit_shape_name(LogitShape s) {
  static const char* names[] = {"normal", "wide",   "flat",   "ties",
                                "neg_inf", "nan", "peaked", "one_finite"};
  return names[int(s)];
}

// V logits of `shape` from `seed` (the rows with -inf or NaN keep one
// finite logit, 0.5, at least).
inline std::vector<float> logit_row(int V, LogitShape shape, float scale, uint64_t seed) {
  const float inf = std::numeric_limits<float>::infinity();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, shape == LogitShape::wide ? 4.f * scale : scale);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  std::vector<float> row(static_cast<size_t>(V));
  for (float& l : row) l = normal(rng);
  switch (shape) {
    case LogitShape::flat:
      for (float& l : row) l = 0.75f;
      break;
    case LogitShape::ties:
      for (float& l : row) l = std::round(l * 2.f) / 2.f;
      break;
    case LogitShape::neg_inf:
      for (float& l : row)
        if (unit(rng) < 0.3f) l = -inf;
      break;
    case LogitShape::nan:
      for (float& l : row)
        if (unit(rng) < 0.05f) l = std::nanf("");
      break;
    case LogitShape::peaked:
      for (int k = 0; k < 5; ++k) row[rng() % size_t(V)] = 6.f * scale + float(k);
      break;
    case LogitShape::one_finite:
      for (float& l : row) l = -inf;
      break;
    default:
      break;
  }
  if (shape == LogitShape::neg_inf || shape == LogitShape::nan || shape == LogitShape::one_finite)
    row[rng() % size_t(V)] = 0.5f;
  return row;
}

}  // namespace polaris
