// GRPO: group-relative policy optimisation with in-engine rollouts.
//
// One step:
//   1. rollout  P prompts x G completions from the current weights
//               (model/scheduler.h: the prompt cached once per group),
//               behaviour log-probs kept;
//   2. score    each completion with the task's verifier;
//   3. advantage A = (r - mean_group) / (std_group + 1e-6)   (std optional)
//               dynamic sampling handles groups whose rewards are all equal
//               (A = 0 for every member: no gradient), in one of two modes:
//                 refill      drop them and sample new prompts in their place
//                             (up to --max-refills more rounds; DAPO);
//                 substitute  Polaris's in-batch substitution: when more than
//                             a third of the step's groups are informative,
//                             each uninformative group is replaced by a copy
//                             of an informative one (spread evenly over a
//                             seeded shuffle of them); otherwise the step is
//                             skipped. No extra sampling;
//   4. update   over M mini-batches, the clipped importance-ratio objective
//               per completion token t (ratio r_t = exp(logp_t - logp_old_t)):
//                 J_t = min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A)
//               and, with dual clip (--clip-ratio-c c > 1, Polaris uses 3),
//               for A < 0 also J_t = max(J_t, c A): a token whose ratio ran
//               far above 1 on a bad answer cannot dominate the update;
//               loss = mean_t [ -J_t + beta * k3_t ] - entropy_coef * mean_t H_t
//               with k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1 against
//               a frozen reference model.
// The loss op (model/ops.h) computes sum_t w_t * -logp_t, so the objective
// enters through per-token weights: dloss/dlogp_t = -w_t / n gives
//   w_t = [unclipped branch] r_t A - beta * (1 - exp(ref_t - logp_t))
// (the min picks the clipped branch only when clipping changes the value,
// and there its gradient is zero), and the entropy bonus through the loss
// op's entropy weights.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "src/common/cli.h"

namespace polaris {

// A value that changes at given steps: "0:1.0,50:1.1" is 1.0 from step 0
// and 1.1 from step 50 on (Polaris's per-stage temperatures and response
// lengths).
struct StagedValue {
  std::vector<std::pair<int, double>> stages;
  double at(int step) const;
  // Throws Error naming `flag` when `text` is malformed.
  static StagedValue parse(const std::string& flag, const std::string& text);
  static StagedValue constant(double value) { return {{{0, value}}}; }
};

enum class DynamicSampling { Off, Refill, Substitute };

// The defaults are the flag table's (src/train/train_flags.cpp).
struct GrpoOptions {
  int prompts_per_step = 0;      // P
  int group_size = 0;            // G
  int minibatches = 0;           // optimizer steps per rollout batch
  float clip_low = 0, clip_high = 0;
  float clip_ratio_c = 0;        // dual clip for A < 0; 0: off
  float kl_coef = 0;             // beta; 0: no reference model
  float entropy_coef = 0;
  bool std_normalize = true;
  DynamicSampling dynamic_sampling = DynamicSampling::Off;
  int max_refills = 0;           // refill: extra sampling rounds to refill dropped groups
  StagedValue temperature, max_response;
  float top_p = 0;
  int top_k = 0;       // --top-k (0: no cut)
  float min_p = 0;     // --min-p (0: no cut)
  float eval_temperature = 0;
  int eval_samples = 0;          // k of avg@k
  int eval_every = 0;            // 0: before and after only
  std::string pass_rates_path;   // polaris_eval --pass-rates output: difficulty filter

  // Reads the GRPO rows of polaris_train's flag table; Error naming the flag.
  static GrpoOptions from_flags(const Flags& flags);
  // Every GRPO flag at its default.
  static GrpoOptions defaults();
};

// Group-normalised advantages of rewards laid out group after group.
std::vector<double> group_advantages(const std::vector<double>& rewards, int group_size,
                                     bool std_normalize);
// True when every reward of the group starting at `first` is the same.
bool zero_variance_group(const std::vector<double>& rewards, size_t first, int group_size);

// In-batch substitution keeps a step when informative groups are more than a
// third of all `groups` (counted over every rank).
bool substitution_keeps_step(int informative, int groups);
// For each group of `rewards` (group after group): the group it becomes.
// Informative groups stay themselves; uninformative group k (in order) becomes
// informative group shuffled[k mod n], with `shuffled` the informative groups
// in an order drawn from `seed`, so copies are spread evenly and a seed gives
// the same plan. -1 when there is no informative group to copy (the group is
// dropped; on one rank that only happens when the step is skipped anyway).
std::vector<int> substitution_sources(const std::vector<double>& rewards, int group_size,
                                      uint64_t seed);

// The per-token quantities of the objective above.
struct PolicyTokenTerms {
  float weight = 0;        // loss-op weight w_t
  bool clipped = false;    // the clipped branch was taken
  double objective = 0;    // J_t
  double kl = 0;           // k3_t (0 without a reference)
};
PolicyTokenTerms policy_token_terms(float logprob, float old_logprob, double advantage,
                                    const float* ref_logprob, const GrpoOptions& options);

}  // namespace polaris
