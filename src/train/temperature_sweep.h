// Polaris's temperature search between training stages: as RL sharpens the
// policy its samples grow alike, so each stage raises the sampling
// temperature until the rollouts are diverse again without losing accuracy.
// `polaris_eval --temperature-sweep LO:HI:STEP` samples every problem K times
// at each temperature and reports, per temperature:
//   accuracy   mean correctness over all samples (avg@K)
//   diversity  distinct n-grams across a problem's K completions, averaged
//              over problems: |set of the n-grams of all K completions| /
//              (number of those n-grams), with token n-grams (n = 4) taken
//              within each completion. 1: no n-gram repeats anywhere in the
//              group; 1/K: the K completions are identical (and repeat-free).
// and recommends one temperature by the rule below.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace polaris {

constexpr int kSweepNgram = 4;

// "LO:HI:STEP" -> LO, LO + STEP, ..., HI (inclusive; the count is rounded so
// 1.4:1.6:0.05 gives 5 values). Throws Error naming `flag` on a bad range.
std::vector<double> parse_temperature_sweep(const std::string& flag, const std::string& text);

// Distinct n-gram ratio of one group of completions (0 when no completion
// has n tokens).
double distinct_ngram_ratio(const std::vector<std::vector<int32_t>>& group, int n);

struct SweepPoint {
  double temperature = 0, accuracy = 0, diversity = 0;
};

// The recommended point: the highest diversity among the temperatures whose
// accuracy is within `tolerance` of the best accuracy (ties: the earlier
// point, the lower temperature of an ascending sweep). Polaris's rule in words — the most diverse temperature that
// does not cost accuracy. Requires a non-empty sweep.
size_t recommend_temperature(const std::vector<SweepPoint>& points, double tolerance);

}  // namespace polaris
