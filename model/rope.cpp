#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "src/common/error.h"

namespace polaris {

namespace {

// d(r) = D ln(L / (2 pi r)) / (2 ln theta): the pair index that turns r times
// within L positions (pair i turns L / (2 pi p_i) times).
double yarn_correction_dim(double rotations, int D, double theta, int L) {
  const double pi = 3.14159265358979323846;
  return D * std::log(L / (rotations * 2 * pi)) / (2 * std::log(theta));
}

}  // namespace

double yarn_mscale(double factor, double mscale) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

void RopeScaling::validate(const std::string& source, int head_dim,
                           const std::string& key) const {
  auto field = [&](const char* name) { return source + ": " + key + "." + name; };
  require(type == RopeType::Default || type == RopeType::Yarn,
          field("rope_type") + ": unknown type " + std::to_string(int(type)) +
              " (0 default, 1 yarn)");
  if (!is_yarn()) {
    require(*this == RopeScaling(),
            source + ": " + key + " fields are set but rope_type is default");
    return;
  }
  require(std::isfinite(factor) && factor > 0.f,
          field("factor") + " must be a positive number, got " + std::to_string(factor));
  require(original_max_positions > 0, field("original_max_position_embeddings") +
                                          " must be positive, got " +
                                          std::to_string(original_max_positions));
  require(std::isfinite(beta_fast) && beta_fast > 0.f,
          field("beta_fast") + " must be a positive number, got " + std::to_string(beta_fast));
  require(std::isfinite(beta_slow) && beta_slow > 0.f,
          field("beta_slow") + " must be a positive number, got " + std::to_string(beta_slow));
  require(beta_fast > beta_slow, field("beta_fast") + " (" + std::to_string(beta_fast) +
                                     ") must be greater than beta_slow (" +
                                     std::to_string(beta_slow) + ")");
  require(std::isfinite(attention_factor) && attention_factor > 0.f,
          field("attention_factor") + " must be a positive number, got " +
              std::to_string(attention_factor));
  require(head_dim >= 2, source + ": " + key + " needs head_dim >= 2");
}

bool RopeScaling::operator==(const RopeScaling& o) const {
  return type == o.type && factor == o.factor && original_max_positions == o.original_max_positions &&
         beta_fast == o.beta_fast && beta_slow == o.beta_slow &&
         attention_factor == o.attention_factor && truncate == o.truncate;
}

RopeParams rope_params(float theta, const RopeScaling& s, int head_dim) {
  RopeParams r;
  r.theta = theta;
  if (!s.is_yarn()) return r;
  r.yarn = true;
  r.factor = s.factor;
  r.attention_scale = s.attention_factor;
  double low = yarn_correction_dim(s.beta_fast, head_dim, theta, s.original_max_positions);
  double high = yarn_correction_dim(s.beta_slow, head_dim, theta, s.original_max_positions);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(head_dim - 1));
  if (low == high) high += 0.001;  // a step, not a division by zero
  r.ramp_low = float(low);
  r.ramp_span = float(high - low);
  return r;
}

}  // namespace polaris
