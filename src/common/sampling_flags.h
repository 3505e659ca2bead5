// The generation flags every program that samples takes (polaris_sample,
// polaris_eval, polaris_train --mode grpo), declared once here so the three
// programs agree on their defaults, ranges and messages: the sampling cuts
// (model/sampler.h) --top-k, --top-p, --min-p, read and checked once, and
// --cuda-graphs (model/decode_graphs.h, read by parse_cuda_graphs).
#pragma once
#include <vector>

#include "src/common/cli.h"

namespace polaris {

struct SamplingCuts {
  int top_k = 0;      // 0: no cut
  float top_p = 1.f;  // (0, 1]; 1: no cut
  float min_p = 0.f;  // [0, 1]; 0: no cut
};

// The three flag rows, with the program's scope and check bits (cli.h).
std::vector<FlagSpec> sampling_cut_flags(unsigned scope = 0, unsigned checks = 0);

// Their values; an Error naming the flag when one is out of range.
SamplingCuts read_sampling_cuts(const Flags& flags);

// The --cuda-graphs row.
std::vector<FlagSpec> cuda_graphs_flags(unsigned scope = 0, unsigned checks = 0);

}  // namespace polaris
