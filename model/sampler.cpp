#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "src/common/error.h"

namespace polaris {

namespace {

// e[i] = exp(logits[i] - max) for the whole row (-inf and NaN give 0).
POLARIS_EXP_OPTIONS void exp_row(
    const float* logits, int V, float max_logit, float* e) {
#pragma omp simd
  for (int i = 0; i < V; ++i) {
    const float l = logits[i];
    e[i] = sampling_detail::exp_nonpositive(l == max_logit ? 0.f : l - max_logit);
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
  uint64_t q_of(size_t i) const { return fixed_point(s.e[i], scale); }

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

int32_t sample_token(const float* logits, int V, const SampleRowParams& params, float* logprob) {
  const uint64_t stream = params.stream, counter = params.counter;
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
  Buckets buckets{s, row_mode ? logits : nullptr, n, fixed_scale(shift),
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

SampleRowParams row_params(const SamplingParams& params, uint64_t stream, uint64_t counter) {
  SampleRowParams row;
  row.temperature = params.temperature;
  row.top_p = params.top_p;
  row.top_k = params.top_k;
  row.min_p = params.min_p;
  row.stream = stream;
  row.counter = counter;
  return row;
}

int32_t sample_token(const float* logits, int V, const SamplingParams& params, uint64_t stream,
                     uint64_t counter, float* logprob) {
  return sample_token(logits, V, row_params(params, stream, counter), logprob);
}

void sample_token_rows(int32_t* tokens, float* logprobs, const float* const* rows,
                       const SampleRowParams* params, int n, int V) {
  std::vector<std::string> errors(static_cast<size_t>(std::max(n, 0)));
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
  for (int i = 0; i < n; ++i) {
    try {
      tokens[i] = sample_token(rows[i], V, params[i], logprobs ? logprobs + i : nullptr);
    } catch (const std::exception& e) {
      errors[size_t(i)] = e.what();
    }
  }
  for (const std::string& e : errors) require(e.empty(), e);
}

}  // namespace polaris
