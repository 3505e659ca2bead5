#include "src/train/temperature_sweep.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "src/common/error.h"

namespace polaris {

std::vector<double> parse_temperature_sweep(const std::string& flag, const std::string& text) {
  double v[3];
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t colon = i < 2 ? text.find(':', at) : text.size();
    const std::string part = colon == std::string::npos ? "" : text.substr(at, colon - at);
    size_t used = 0;
    try {
      v[i] = part.empty() ? NAN : std::stod(part, &used);
    } catch (const std::exception&) {
      v[i] = NAN;
    }
    require(!part.empty() && used == part.size() && std::isfinite(v[i]),
            "flag --" + flag + ": '" + text + "' is not LO:HI:STEP (e.g. 1.4:1.6:0.05)");
    at = colon + 1;
  }
  const double lo = v[0], hi = v[1], step = v[2];
  require(lo >= 0 && hi >= lo && step > 0,
          "flag --" + flag + ": need 0 <= LO <= HI and STEP > 0, got '" + text + "'");
  const double count = std::floor((hi - lo) / step + 1e-6) + 1;
  require(count <= 1000, "flag --" + flag + ": more than 1000 temperatures in '" + text + "'");
  std::vector<double> temperatures;
  for (int i = 0; i < int(count); ++i) temperatures.push_back(lo + i * step);
  return temperatures;
}

double distinct_ngram_ratio(const std::vector<std::vector<int32_t>>& group, int n) {
  std::set<std::vector<int32_t>> distinct;
  size_t total = 0;
  for (const std::vector<int32_t>& tokens : group)
    for (size_t i = 0; i + size_t(n) <= tokens.size(); ++i) {
      distinct.insert(std::vector<int32_t>(tokens.begin() + long(i), tokens.begin() + long(i) + n));
      ++total;
    }
  return total == 0 ? 0.0 : double(distinct.size()) / double(total);
}

size_t recommend_temperature(const std::vector<SweepPoint>& points, double tolerance) {
  require(!points.empty(), "recommend_temperature: empty sweep");
  double best = points[0].accuracy;
  for (const SweepPoint& p : points) best = std::max(best, p.accuracy);
  size_t pick = points.size();
  for (size_t i = 0; i < points.size(); ++i) {
    if (points[i].accuracy < best - tolerance) continue;
    if (pick == points.size() || points[i].diversity > points[pick].diversity) pick = i;
  }
  return pick;
}

}  // namespace polaris
