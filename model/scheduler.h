// The generation engine: continuous batching over a paged KV cache.
//
// Requests are sequences: prompt k's completion j (of G) is sequence
// k * G + j and draws from the random stream sequence_stream(seed,
// first_index + k * G + j) (model/sampler.h), the numbering generate() on G
// copies of each prompt would use. Each step of the scheduler:
//   1. admits waiting sequences while fewer than max_batch run, the cache
//      has the blocks their prefill needs, and the step's prefill budget
//      (max_prefill_tokens) lasts. A fresh sequence whose prompt is already
//      cached (another member of its group ran it) forks the prompt's blocks
//      and samples its first token from the prompt's saved logits: the
//      prompt is computed and stored once per group. Otherwise it joins the
//      step's prefill.
//   2. prefill: every admitted sequence's tokens packed into one forward
//      (documents as contiguous runs), keys and values written to its
//      blocks; a fresh prompt's last logits give its first token(s).
//   3. decode: one token per running sequence (the one it sampled last),
//      oldest first, each taking a cache row (a new block at a block edge,
//      copy-on-write in a shared partial block). When no block is left the
//      cache drops the saved prompts, then preempts the newest sequence: its
//      blocks are freed, it goes back to the front of the queue and is
//      recomputed (prompt + tokens so far, in a prefill) when admitted again.
//      The oldest sequence always advances, so every request completes
//      whenever the cache holds one sequence at full length (the cap is
//      raised to that).
//   4. a sequence that ends (stop token, stop string, max_new_tokens) frees
//      its blocks at once; its place goes to the next waiting one.
// A sequence's tokens depend only on the seed, its stream index and the
// model: not on the batch, the block size, preemption or prefix sharing
// (the CPU attention computes a decoded and a prefilled token's row with the
// same arithmetic; tests/test_generation.cpp checks all four).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/sampler.h"
#include "model/transformer.h"

namespace polaris {

// What a generate call did (benchmarks, tests).
struct GenerationStats {
  size_t prefill_passes = 0, decode_steps = 0;
  size_t prefill_tokens = 0, decoded_tokens = 0;  // tokens through the model
  size_t generated_tokens = 0;                    // tokens sampled
  size_t attended_keys = 0;                       // cached keys read by decode steps
  size_t preemptions = 0;
  size_t shared_prompts = 0;                      // sequences that forked a cached prompt
  size_t peak_cache_bytes = 0;                    // blocks in use at most, in bytes
  size_t reserved_cache_bytes = 0;                // the pool at its largest
};

struct EngineOptions {
  int block_size = 16;            // tokens per KV-cache block
  // Cap on the cache in tokens (rounded up to blocks); 0: room for
  // max_batch sequences at full length. Raised to one full sequence.
  size_t max_cache_tokens = 0;
  int max_prefill_tokens = 8192;  // tokens packed in one prefill (a longer sequence goes alone)
  bool share_prefix = true;       // a group's completions share the prompt's blocks
  // The lock-step baseline (benchmarks): a fixed slot of the full length per
  // sequence (one block), prompts fed token by token through decode steps,
  // the next sequences admitted only when the whole batch has finished, no
  // sharing.
  bool lockstep = false;
  GenerationStats* stats = nullptr;  // filled when given
};

// `first_index` numbers the prompts for the random streams, so splitting one
// call into several (or over ranks) draws the same samples.
std::vector<Completion> generate(Transformer& model,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const SamplingParams& params, uint64_t first_index = 0,
                                 const EngineOptions& engine = EngineOptions());

// G completions of each prompt, the prompt computed and cached once per
// group: result k * G + j is prompt k's completion j, drawn from stream
// first_index + k * G + j (the same samples as generate() on each prompt
// repeated G times).
std::vector<Completion> generate_groups(Transformer& model,
                                        const std::vector<std::vector<int32_t>>& prompts,
                                        int group_size, const SamplingParams& params,
                                        uint64_t first_index = 0,
                                        const EngineOptions& engine = EngineOptions());

}  // namespace polaris
