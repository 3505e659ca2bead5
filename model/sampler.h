// Sampling: the decode loop over a KV cache.
//
// Every prompt gets a cache slot; each step feeds one token per unfinished
// sequence (a prompt token while the prompt lasts, then the last sampled
// one) through Transformer::decode_step, so prompts of different lengths
// share the batch. Token choice per sequence:
//   temperature 0 -> argmax (greedy)
//   otherwise     -> softmax(logits / temperature), cut to the top_k most
//                    likely and to the smallest set whose mass reaches top_p,
//                    renormalised, then drawn.
// Each sequence draws from its own counter-based stream (seed, sequence
// index, step), so a sequence's sample does not depend on what else is in
// the batch.
#pragma once
#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace polaris {

struct SamplingParams {
  float temperature = 1.f;
  float top_p = 1.f;
  int top_k = 0;                       // 0: no cut
  int max_new_tokens = 64;
  std::vector<int32_t> stop_tokens;    // generation ends after emitting one
  uint64_t seed = 0;
  int max_batch = 256;                 // sequences decoded together
};

struct Completion {
  std::vector<int32_t> tokens;         // generated tokens (the stop token included)
  std::vector<float> logprobs;         // log p(token) under the model (temperature 1)
  bool stopped = false;                // ended on a stop token (not on the length limit)
};

// `first_index` numbers the prompts for the random streams, so splitting one
// call into several (or over ranks) draws the same samples.
std::vector<Completion> generate(Transformer& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const SamplingParams& params, uint64_t first_index = 0);

// Picks a token from one row of logits (exposed for tests).
int32_t sample_token(const float* logits, int V, const SamplingParams& params, uint64_t stream,
                     uint64_t counter);

}  // namespace polaris
