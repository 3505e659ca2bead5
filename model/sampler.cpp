#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "src/common/error.h"
#include "src/common/mix.h"

namespace polaris {

namespace {

// exp(x) for x <= 0 in float (Cephes' expf: range reduction by ln 2 in two
// parts, degree-6 polynomial, 2^n from the exponent bits), about 1 ulp;
// 0 below -87 and for NaN. Plain arithmetic, so loops vectorise it and its
// value never depends on the machine's libm.
// The exp code is compiled with the same options wherever it runs (GCC
// inlines only between functions with equal options): no trapping math
// (lets loops turn the selects into vector blends; values unchanged) and no
// contraction into FMAs (so vector and scalar code compute the same bits).
#define POLARIS_EXP_OPTIONS __attribute__((optimize("no-trapping-math", "fp-contract=off")))

POLARIS_EXP_OPTIONS inline float exp_nonpositive(float x) {
  const float clamped = x > -87.f ? x : -87.f;
  const float n = (clamped * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round
  float r = clamped - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x > -87.f ? y * scale : 0.f;
}

// e[i] = exp(logits[i] - max) for the whole row (-inf and NaN give 0).
POLARIS_EXP_OPTIONS void exp_row(
    const float* logits, int V, float max_logit, float* e) {
#pragma omp simd
  for (int i = 0; i < V; ++i) {
    const float l = logits[i];
    e[i] = exp_nonpositive(l == max_logit ? 0.f : l - max_logit);
  }
}

// The largest logit (-inf when none is above -inf; NaN never counts).
POLARIS_EXP_OPTIONS float row_max(const float* logits, int V) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int i = 0; i < V; ++i) m = logits[i] > m ? logits[i] : m;
  return m;
}

// Their sum in double, in a fixed order (four running sums).
double sum_row(const float* e, int V) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int i = 0;
  for (; i + 4 <= V; i += 4) {
    s0 += double(e[i]);
    s1 += double(e[i + 1]);
    s2 += double(e[i + 2]);
    s3 += double(e[i + 3]);
  }
  for (; i < V; ++i) s0 += double(e[i]);
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

namespace sampling_detail {

int weight_shift(int V) {
  int bits = 0;
  while (bits < 62 && (int64_t(1) << bits) <= int64_t(V)) ++bits;
  return 62 - bits;
}

float scaled(float logit, float max_logit, float temperature) {
  if (!(logit > -std::numeric_limits<float>::infinity()))  // -inf and NaN
    return -std::numeric_limits<float>::infinity();
  if (logit == max_logit) return 0.f;
  return (logit - max_logit) * (1.f / temperature);
}

float cutoff(int shift) { return float(-(double(shift) * 0.6931471805599453 + 1.0)); }

POLARIS_EXP_OPTIONS uint64_t weight(float x, int shift) {
  if (!(x >= cutoff(shift))) return 0;
  return uint64_t(double(exp_nonpositive(x)) * std::ldexp(1.0, shift));
}

uint64_t uniform_below(uint64_t total, uint64_t stream, uint64_t counter) {
  const uint64_t bits = mix64(mix64(stream) ^ (counter * 0xd1b54a32d192ed03ull)) >> 11;  // 53 bits
  return uint64_t((unsigned __int128)bits * total >> 53);
}

uint64_t top_p_need(float top_p, uint64_t total) {
  if (!(top_p < 1.f)) return total;
  long double need = std::ceil((long double)top_p * (long double)total);
  if (need < 1) return 1;
  return need >= (long double)total ? total : uint64_t(need);
}

float min_p_floor(float min_p) {
  return min_p > 0.f ? float(std::log(double(min_p))) : -std::numeric_limits<float>::infinity();
}

}  // namespace sampling_detail

using namespace sampling_detail;

namespace {

constexpr float kBinsPerUnit = 16;  // buckets of x = (logit - max) / T, 1/16 wide
constexpr uint16_t kNoBin = 0xffff;

// x and its weight's exp for the whole row, as scaled() and weight() compute
// them one at a time (the same float operations, vectorised).
POLARIS_EXP_OPTIONS void scaled_row(
    const float* logits, int V, float max_logit, float temperature, float* x, float* e) {
  const float inv = 1.f / temperature;
#pragma omp simd
  for (int i = 0; i < V; ++i) {
    const float l = logits[i];
    const float xi = l == max_logit ? 0.f : (l - max_logit) * inv;
    x[i] = xi;
    e[i] = exp_nonpositive(xi);
  }
}

struct Entry {
  float logit;
  int32_t id;
  uint64_t q;  // integer weight
};

// The sampling order: decreasing logit, ties by increasing id.
inline bool before(const Entry& a, const Entry& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

struct Scratch {
  std::vector<Entry> cand;       // list mode: the candidates
  std::vector<float> x, e, lse;  // per token (row mode) or per candidate
  std::vector<uint16_t> bin_of;  // kNoBin: not a candidate
  std::vector<uint64_t> mass;    // per bucket
  std::vector<uint32_t> offset;  // bucket -> rank of its first member
  std::vector<Entry> members;    // of bucket `gathered`, partially ordered
  size_t gathered = 0;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Buckets over the candidates: either the whole row (ids = positions) or a
// list of entries (top_k). Bucket b holds the tokens with
// int(-x * kBinsPerUnit) == b, a run of the sampling order since x grows
// with the logit; only the buckets a cut or the draw lands in get ordered.
struct Buckets {
  Scratch& s;
  const float* row;  // null in list mode
  size_t n;
  double scale;
  size_t bins;

  float logit_of(size_t i) const { return row ? row[i] : s.cand[i].logit; }
  int32_t id_of(size_t i) const { return row ? int32_t(i) : s.cand[i].id; }
  uint64_t q_of(size_t i) const { return uint64_t(double(s.e[i]) * scale); }

  Entry* gather(size_t b) {
    if (s.gathered != b) {
      s.members.clear();
      for (size_t i = 0; i < n; ++i)
        if (s.bin_of[i] == b) s.members.push_back({logit_of(i), id_of(i), q_of(i)});
      s.gathered = b;
    }
    return s.members.data();
  }

  // The rank at which the running weight sum (sampling order) exceeds t.
  size_t locate(uint64_t t) {
    for (size_t b = 0; b < bins; ++b) {
      if (t < s.mass[b]) {
        Entry* m = gather(b);
        return s.offset[b] + resolve(m, 0, s.members.size(), t);
      }
      t -= s.mass[b];
    }
    throw Error("sampling: internal error (total)");
  }

  // The weight sum of the first k in the sampling order (0 < k).
  uint64_t prefix_mass(size_t k) {
    uint64_t sum = 0;
    size_t b = 0;
    while (s.offset[b + 1] < k) sum += s.mass[b++];
    const size_t size = s.offset[b + 1] - s.offset[b], j = k - s.offset[b];
    if (j == size) return sum + s.mass[b];
    Entry* m = gather(b);
    std::nth_element(m, m + j, m + size, before);
    for (size_t i = 0; i < j; ++i) sum += m[i].q;
    return sum;
  }

  // Within m[lo, hi): orders it partially and returns the position of the
  // first entry, in the sampling order, at which the running weight sum
  // exceeds t (t < the range's sum); entries before it precede it.
  static size_t resolve(Entry* m, size_t lo, size_t hi, uint64_t t) {
    while (hi - lo > 32) {
      const size_t mid = lo + (hi - lo) / 2;
      std::nth_element(m + lo, m + mid, m + hi, before);
      uint64_t left = 0;
      for (size_t i = lo; i < mid; ++i) left += m[i].q;
      if (t < left) {
        hi = mid;
      } else {
        t -= left;
        lo = mid;
      }
    }
    std::sort(m + lo, m + hi, before);
    for (size_t i = lo; i < hi; ++i) {
      if (t < m[i].q) return i;
      t -= m[i].q;
    }
    throw Error("sampling: internal error (weight sum)");
  }
};

}  // namespace

uint64_t sequence_stream(uint64_t seed, uint64_t index) {
  return seed * 0x9e3779b97f4a7c15ull + index;
}

int32_t sample_token(const float* logits, int V, const SamplingParams& params, uint64_t stream,
                     uint64_t counter, float* logprob) {
  require(V > 0, "sampling: empty row of logits");
  // The max and the argmax (lowest id); NaN never compares greater.
  const float max_logit = row_max(logits, V);
  int32_t argmax = 0;
  while (argmax < V && !(logits[argmax] == max_logit)) ++argmax;
  require(argmax < V && max_logit > -std::numeric_limits<float>::infinity(),
          "sampling: every logit is -inf or NaN");
  const float T = params.temperature;
  const bool greedy = !(T > 0.f);
  Scratch& s = scratch();
  // Row mode: no top_k cut, every token a candidate (vectorised passes);
  // list mode: the top_k first.
  const bool row_mode = !greedy && !(params.top_k > 0 && params.top_k < V);
  if (row_mode) {
    s.x.resize(size_t(V));
    s.e.resize(size_t(V));
    scaled_row(logits, V, max_logit, T, s.x.data(), s.e.data());
  }
  // log-softmax at temperature 1 needs exp(logit - max) of the whole row
  // (summed in double in a fixed order); at temperature 1 in row mode those
  // are the sampling weights' exps already.
  double lse_sum = 0;
  if (logprob) {
    if (row_mode && T == 1.f) {
      lse_sum = sum_row(s.e.data(), V);
    } else {
      s.lse.resize(size_t(V));
      exp_row(logits, V, max_logit, s.lse.data());
      lse_sum = sum_row(s.lse.data(), V);
    }
  }
  auto finish = [&](int32_t token) {
    if (logprob) {
      const float l = logits[token];
      *logprob = float(double(l == max_logit ? 0.f : l - max_logit) - std::log(lse_sum));
    }
    return token;
  };
  if (greedy) return finish(argmax);

  const int shift = weight_shift(V);
  const float cut = cutoff(shift);
  const float floor_x = min_p_floor(params.min_p);
  size_t n = size_t(V);
  if (!row_mode) {
    // Candidates: the tokens with a nonzero weight possible (x >= cut), a
    // prefix of the sampling order, cut to their top_k.
    s.cand.clear();
    const size_t k = size_t(params.top_k);
    if (k <= 4096) {
      // a heap of the best k so far, its front the last in the order
      for (int i = 0; i < V; ++i) {
        const float l = logits[i];
        if (s.cand.size() == k && !(l >= s.cand.front().logit)) continue;  // quick reject
        if (!(scaled(l, max_logit, T) >= cut)) continue;
        const Entry entry{l, i, 0};
        if (s.cand.size() < k) {
          s.cand.push_back(entry);
          std::push_heap(s.cand.begin(), s.cand.end(), before);
        } else if (before(entry, s.cand.front())) {
          std::pop_heap(s.cand.begin(), s.cand.end(), before);
          s.cand.back() = entry;
          std::push_heap(s.cand.begin(), s.cand.end(), before);
        }
      }
    } else {
      for (int i = 0; i < V; ++i)
        if (scaled(logits[i], max_logit, T) >= cut) s.cand.push_back({logits[i], i, 0});
      if (k < s.cand.size()) {
        std::nth_element(s.cand.begin(), s.cand.begin() + k, s.cand.end(), before);
        s.cand.resize(k);
      }
    }
    n = s.cand.size();
    s.x.resize(n);
    s.e.resize(n);
    for (size_t i = 0; i < n; ++i) {
      s.x[i] = scaled(s.cand[i].logit, max_logit, T);
      s.e[i] = exp_nonpositive(s.x[i]);
    }
  }
  // Bucket sums, sizes, the total and min_p's count (min_p keeps x >= floor_x,
  // a prefix of the order).
  Buckets buckets{s, row_mode ? logits : nullptr, n, std::ldexp(1.0, shift),
                  size_t(-cut * kBinsPerUnit) + 2};
  const size_t bins = buckets.bins;
  s.mass.assign(bins, 0);
  s.offset.assign(bins + 1, 0);
  s.bin_of.resize(n);
  s.gathered = size_t(-1);
  uint64_t total = 0;
  size_t candidates = 0, kept_min_p = 0;
  for (size_t i = 0; i < n; ++i) {
    const float x = s.x[i];
    if (!(x >= cut)) {
      s.bin_of[i] = kNoBin;
      continue;
    }
    const size_t b = std::min(bins - 1, size_t(-x * kBinsPerUnit));
    const uint64_t q = buckets.q_of(i);
    s.bin_of[i] = uint16_t(b);
    s.mass[b] += q;
    s.offset[b + 1] += 1;
    total += q;
    ++candidates;
    kept_min_p += x >= floor_x;
  }
  for (size_t b = 0; b < bins; ++b) s.offset[b + 1] += s.offset[b];
  size_t keep = std::min(candidates, kept_min_p);
  if (params.top_p < 1.f)
    keep = std::min(keep, buckets.locate(top_p_need(params.top_p, total) - 1) + 1);
  const uint64_t kept_total = keep == candidates ? total : buckets.prefix_mass(keep);
  const size_t r = buckets.locate(uniform_below(kept_total, stream, counter));
  return finish(s.members[r - s.offset[s.gathered]].id);
}

}  // namespace polaris
