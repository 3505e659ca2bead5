// The integer arithmetic that defines a sampled token (model/sampler.h),
// shared by the CPU sampler (model/sampler.cpp) and the GPU one
// (cuda/sampling.cu): the same source on both sides, so both pick the same
// token from the same logits.
//
// A row's distribution: x_i = (logit_i - max) / T in float; weight
// q_i = floor(exp(x_i) * 2^shift) in integers (0 below cutoff(shift)), so
// every sum is exact and no choice depends on the order of a summation. The
// float steps are written so no compiler may fuse them: on the device with
// the round-to-nearest intrinsics (__fmul_rn, ... are never contracted into
// FMAs), on the host under POLARIS_EXP_OPTIONS (fp-contract=off). IEEE
// single precision then gives the same bits on both.
//
// Per-row constants that need a library call (min_p_floor's log) are
// computed on the host only and handed to the kernel.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "src/common/host_device.h"
#include "src/common/mix.h"

// GCC inlines only between functions with equal options, so every host
// function that inlines exp_nonpositive carries these: no contraction into
// FMAs (vector and scalar code compute the same bits) and no trapping math
// (lets loops turn the selects into vector blends; values unchanged).
#if defined(__CUDACC__)
#define POLARIS_EXP_OPTIONS
#else
#define POLARIS_EXP_OPTIONS __attribute__((optimize("no-trapping-math", "fp-contract=off")))
#endif

// One float (double) operation, rounded to nearest, never fused.
#if defined(__CUDA_ARCH__)
#define POLARIS_FADD(a, b) __fadd_rn(a, b)
#define POLARIS_FSUB(a, b) __fsub_rn(a, b)
#define POLARIS_FMUL(a, b) __fmul_rn(a, b)
#define POLARIS_DMUL(a, b) __dmul_rn(a, b)
#define POLARIS_DADD(a, b) __dadd_rn(a, b)
#else
#define POLARIS_FADD(a, b) ((a) + (b))
#define POLARIS_FSUB(a, b) ((a) - (b))
#define POLARIS_FMUL(a, b) ((a) * (b))
#define POLARIS_DMUL(a, b) ((a) * (b))
#define POLARIS_DADD(a, b) ((a) + (b))
#endif

namespace polaris {

// One row's draw (model/sampler.h: SamplingParams without the stop rules,
// plus the row's random stream and draw number).
struct SampleRowParams {
  float temperature = 1.f;  // 0 (or NaN): greedy
  float top_p = 1.f;        // (0, 1]; 1: no cut
  int32_t top_k = 0;        // 0: no cut
  float min_p = 0.f;        // [0, 1]; 0: no cut
  uint64_t stream = 0, counter = 0;
};

namespace sampling_detail {

POLARIS_HOST_DEVICE inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
#endif
}

POLARIS_HOST_DEVICE inline float bits_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
#endif
}

// exp(x) for x <= 0 in float (Cephes' expf: range reduction by ln 2 in two
// parts, degree-6 polynomial, 2^n from the exponent bits), about 1 ulp;
// 0 below -87 and for NaN. Plain arithmetic: loops vectorise it and its
// value never depends on a libm.
POLARIS_HOST_DEVICE inline POLARIS_EXP_OPTIONS float exp_nonpositive(float x) {
  const float clamped = x > -87.f ? x : -87.f;
  const float n = POLARIS_FSUB(POLARIS_FADD(POLARIS_FMUL(clamped, 1.44269504088896341f), 12582912.f),
                               12582912.f);  // round to an integer
  float r = POLARIS_FSUB(clamped, POLARIS_FMUL(n, 0.693359375f));
  r = POLARIS_FSUB(r, POLARIS_FMUL(n, -2.12194440e-4f));
  float p = 1.9875691500e-4f;
  p = POLARIS_FADD(POLARIS_FMUL(p, r), 1.3981999507e-3f);
  p = POLARIS_FADD(POLARIS_FMUL(p, r), 8.3334519073e-3f);
  p = POLARIS_FADD(POLARIS_FMUL(p, r), 4.1665795894e-2f);
  p = POLARIS_FADD(POLARIS_FMUL(p, r), 1.6666665459e-1f);
  p = POLARIS_FADD(POLARIS_FMUL(p, r), 5.0000001201e-1f);
  const float y = POLARIS_FADD(POLARIS_FADD(POLARIS_FMUL(POLARIS_FMUL(p, r), r), r), 1.f);
  const float scale = bits_float(uint32_t(int32_t(n) + 127) << 23);
  return x > -87.f ? POLARIS_FMUL(y, scale) : 0.f;
}

// Largest id of the row + 1 -> the fixed-point shift: weights are at most
// 2^shift and V of them sum below 2^62.
POLARIS_HOST_DEVICE inline int weight_shift(int V) {
  int bits = 0;
  while (bits < 62 && (int64_t(1) << bits) <= int64_t(V)) ++bits;
  return 62 - bits;
}

// x = (logit - max) * (1 / temperature): 0 for the max itself, -inf for -inf
// and NaN logits. inv_temperature = 1.f / temperature (one float division).
POLARIS_HOST_DEVICE inline float scaled_inv(float logit, float max_logit, float inv_temperature) {
  if (!(logit > -INFINITY)) return -INFINITY;  // -inf and NaN
  if (logit == max_logit) return 0.f;
  return POLARIS_FMUL(POLARIS_FSUB(logit, max_logit), inv_temperature);
}

POLARIS_HOST_DEVICE inline float scaled(float logit, float max_logit, float temperature) {
  return scaled_inv(logit, max_logit, 1.f / temperature);
}

// Tokens with x below this get weight 0 (exp(x) * 2^shift < 1/e).
POLARIS_HOST_DEVICE inline float cutoff(int shift) {
  return float(-POLARIS_DADD(POLARIS_DMUL(double(shift), 0.6931471805599453), 1.0));
}

// floor(e * 2^shift) for e = exp_nonpositive(x): fixed_scale(shift) = 2^shift.
POLARIS_HOST_DEVICE inline double fixed_scale(int shift) { return double(uint64_t(1) << shift); }
POLARIS_HOST_DEVICE inline uint64_t fixed_point(float e, double scale) {
  return uint64_t(double(e) * scale);  // exact product (a power of two), then truncation
}

// floor(exp(x) * 2^shift); 0 for every x < cutoff(shift).
POLARIS_HOST_DEVICE inline POLARIS_EXP_OPTIONS uint64_t weight(float x, int shift) {
  if (!(x >= cutoff(shift))) return 0;
  return fixed_point(exp_nonpositive(x), fixed_scale(shift));
}

// The full 128-bit product a * b.
struct U128 {
  uint64_t hi, lo;
};
POLARIS_HOST_DEVICE inline U128 multiply_wide(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return {__umul64hi(a, b), a * b};
#else
  const unsigned __int128 p = (unsigned __int128)a * b;
  return {uint64_t(p >> 64), uint64_t(p)};
#endif
}

// The draw: an integer uniform in [0, total) from (stream, counter):
// 53 random bits b, then floor(b * total / 2^53).
POLARIS_HOST_DEVICE inline uint64_t uniform_below(uint64_t total, uint64_t stream, uint64_t counter) {
  const uint64_t bits = mix64(mix64(stream) ^ (counter * 0xd1b54a32d192ed03ull)) >> 11;
  const U128 p = multiply_wide(bits, total);  // < 2^115
  return (p.hi << 11) | (p.lo >> 53);
}

// The top_p cut keeps the shortest prefix whose weight sum reaches
// need = ceil(top_p * total), clamped to [1, total], computed exactly:
// top_p = m * 2^-s (m the 24-bit significand, s >= 24 for top_p < 1), so
// need = ceil(m * total / 2^s) with m * total < 2^86 held in 128 bits.
POLARIS_HOST_DEVICE inline uint64_t top_p_need(float top_p, uint64_t total) {
  if (!(top_p < 1.f)) return total;  // NaN included: no cut
  if (!(top_p > 0.f)) return 1;
  const uint32_t bits = float_bits(top_p);
  const uint32_t biased = bits >> 23, fraction = bits & 0x7fffffu;
  const uint64_t m = biased ? (fraction | 0x800000u) : fraction;
  const int s = biased ? 150 - int(biased) : 149;  // top_p = m * 2^-s
  const U128 p = multiply_wide(m, total);
  uint64_t quotient;
  bool remainder;
  if (s >= 128) {
    quotient = 0;
    remainder = true;  // p > 0
  } else if (s >= 64) {
    const int t = s - 64;
    quotient = t == 0 ? p.hi : p.hi >> t;
    remainder = p.lo != 0 || (t > 0 && (p.hi & ((uint64_t(1) << t) - 1)) != 0);
  } else {  // 24 <= s < 64: the quotient is below 2^62
    quotient = (p.hi << (64 - s)) | (p.lo >> s);
    remainder = (p.lo & ((uint64_t(1) << s) - 1)) != 0;
  }
  const uint64_t need = quotient + (remainder ? 1 : 0);
  if (need < 1) return 1;
  return need >= total ? total : need;
}

// ---- the sampling order as one integer (the GPU's radix select) ----------
// key(logit, id) ascends in the sampling order: decreasing logit, then
// increasing id. High 32 bits: the logit's bits mapped so larger floats give
// smaller keys (-0 counts as +0, as the order compares logits with ==);
// low 32 bits: the id. NaN logits are never keyed (they are never candidates).
POLARIS_HOST_DEVICE inline uint64_t order_key(float logit, int32_t id) {
  const uint32_t bits = float_bits(logit == 0.f ? 0.f : logit);
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (uint64_t(~ascending) << 32) | uint32_t(id);
}

POLARIS_HOST_DEVICE inline float key_logit(uint64_t key) {
  const uint32_t ascending = ~uint32_t(key >> 32);
  return bits_float((ascending & 0x80000000u) ? (ascending & 0x7fffffffu) : ~ascending);
}

POLARIS_HOST_DEVICE inline int32_t key_id(uint64_t key) { return int32_t(uint32_t(key)); }

// The 8-bit digits of a key, most significant first (digit 0 .. 7).
constexpr int kKeyDigits = 8;
constexpr int kDigitBins = 256;
POLARIS_HOST_DEVICE inline uint32_t key_digit(uint64_t key, int digit) {
  return uint32_t(key >> (56 - 8 * digit)) & 0xffu;
}
// The digits above `digit` (0 for digit 0): keys sharing them form the group
// a radix pass over `digit` histograms.
POLARIS_HOST_DEVICE inline uint64_t key_prefix(uint64_t key, int digit) {
  return digit == 0 ? 0 : key >> (64 - 8 * digit);
}

}  // namespace sampling_detail
}  // namespace polaris
