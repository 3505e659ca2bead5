// Sampling: choosing each next token from a row of logits.
// (The decode loop that feeds the model is the scheduler, model/scheduler.h.)
// Token choice per sequence:
//   temperature 0 -> argmax (greedy; ties: the lowest id)
//   otherwise     -> softmax(logits / temperature) over the tokens in
//                    decreasing probability (ties: the lower id first), cut
//                    in this order, each cut renormalising what is left:
//                      top_k  the top_k most likely (0: no cut);
//                      top_p  the smallest prefix whose mass reaches top_p;
//                      min_p  the tokens with p >= min_p * p(most likely);
//                    then one draw walks that order.
// Weights are integers (sampling_detail below: exp((logit - max) / T) in
// float, then fixed point with the largest = 2^shift; tokens below 2^-shift
// of the likeliest get 0), so every sum is exact and no draw depends on the
// order of a summation: sample_token finds the cuts and the drawn token by
// partial selection within probability buckets (x = (logit - max) / T in
// steps of 1/16) instead of sorting the vocabulary, and picks exactly the
// token the full sort would (tests/test_sampling.cpp keeps that sort as the
// oracle). The draw: u uniform in [0, kept weight sum), the first token in
// the order whose running sum exceeds u.
// Each sequence draws from its own counter-based stream: stream =
// sequence_stream(seed, index), counter = the number of tokens it has
// generated, so a sequence's samples depend only on the seed, its index and
// its own tokens, never on what else is in the batch, the batch size or the
// thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/sampling_math.h"

namespace polaris {

struct SamplingParams {
  float temperature = 1.f;
  float top_p = 1.f;                   // (0, 1]; 1: no cut
  int top_k = 0;                       // 0: no cut
  float min_p = 0.f;                   // [0, 1]; 0: no cut
  int max_new_tokens = 64;
  std::vector<int32_t> stop_tokens;    // generation ends after emitting one
  // Generation also ends once the bytes generated so far contain one of
  // these (a match may span tokens); the token that completes it is the
  // last one kept. Needs token_bytes (e.g. Tokenizer::token_bytes).
  std::vector<std::string> stop_strings;
  std::function<std::string(int32_t)> token_bytes;
  uint64_t seed = 0;
  int max_batch = 256;                 // sequences decoded together
  // Called after each step of the generation engine (model/scheduler.h: a
  // prefill and/or a decode): progress for a caller's watchdog
  // (polaris_train's GRPO passes watchdog_tick, optim/watchdog.h).
  std::function<void()> on_step;
};

struct Completion {
  std::vector<int32_t> tokens;         // generated tokens (the stop token included)
  std::vector<float> logprobs;         // log p(token) under the model (temperature 1,
                                       // no cuts): what PPO ratios compare against
  bool stopped = false;                // ended on a stop token or stop string (not on the length limit)
  int stop_string = -1;                // index into stop_strings of the match that ended it, or -1
};

// Picks a token from one row of logits; counter numbers the draws of a
// stream. With `logprob`, also writes log p(token) under the model's
// temperature-1 distribution (no cuts), as Completion::logprobs holds.
// NaN logits count as -inf; a row of only -inf (or NaN) is an error.
// Thread-safe (scratch memory is per thread).
int32_t sample_token(const float* logits, int V, const SampleRowParams& row,
                     float* logprob = nullptr);
int32_t sample_token(const float* logits, int V, const SamplingParams& params, uint64_t stream,
                     uint64_t counter, float* logprob = nullptr);

// One draw's parameters: params' cuts with (stream, counter).
SampleRowParams row_params(const SamplingParams& params, uint64_t stream, uint64_t counter);

// sample_token over n rows in parallel (OpenMP; rows are independent, so the
// result does not depend on the thread count): tokens[i] (and logprobs[i]
// when not null) from rows[i] with params[i]. A failing row throws its
// Error after every row ran.
void sample_token_rows(int32_t* tokens, float* logprobs, const float* const* rows,
                       const SampleRowParams* params, int n, int V);

// The random stream of sequence `index` under `seed`.
uint64_t sequence_stream(uint64_t seed, uint64_t index);

// The pieces that define the distribution (sampling_detail:: weight_shift,
// scaled, weight, cutoff, uniform_below, top_p_need, ...) are in
// model/sampling_math.h, shared with the GPU sampler (cuda/sampling.cu);
// tests rebuild the distribution from them with a full sort
// (tests/test_sampling.cpp). Only min_p_floor needs a libm call: it is
// computed on the host for both.
namespace sampling_detail {
// min_p keeps the tokens with x >= this (log(min_p); -inf for 0).
float min_p_floor(float min_p);
}  // namespace sampling_detail

}  // namespace polaris
