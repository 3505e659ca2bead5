#include "src/common/sampling_flags.h"

namespace polaris {

std::vector<FlagSpec> sampling_cut_flags(unsigned scope, unsigned checks) {
  using T = FlagType;
  return {
      {"top-k", T::integer, "K", "0", "keep the K likeliest tokens (0: no cut)", scope, checks},
      {"top-p", T::number, "P", "1",
       "keep the smallest set of tokens with probability >= P (1: no cut)", scope, checks},
      {"min-p", T::number, "P", "0",
       "keep the tokens at least P times as likely as the likeliest (0: no cut)", scope, checks},
  };
}

SamplingCuts read_sampling_cuts(const Flags& flags) {
  const int top_k = flags.integer("top-k");
  require(top_k >= 0, "flag --top-k must be >= 0 (0: no cut)");
  const double top_p = flags.number("top-p");
  require(top_p > 0 && top_p <= 1, "flag --top-p must be in (0, 1] (1: no cut)");
  const double min_p = flags.number("min-p");
  require(min_p >= 0 && min_p <= 1, "flag --min-p must be in [0, 1] (0: no cut)");
  SamplingCuts cuts;
  cuts.top_k = top_k;
  cuts.top_p = float(top_p);
  cuts.min_p = float(min_p);
  return cuts;
}

std::vector<FlagSpec> cuda_graphs_flags(unsigned scope, unsigned checks) {
  return {{"cuda-graphs", FlagType::text, "on|off", "on",
           "GPU decode steps replayed from CUDA graphs, one per batch bucket (off: op by op)",
           scope, checks}};
}

}  // namespace polaris
