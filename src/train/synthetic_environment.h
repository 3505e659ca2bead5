// Built-in synthetic tasks as training data (--task NAME with --mode sft) and
// as RL environments (--task NAME with --mode grpo), character vocabulary.
//
//   addition        "47+38=" -> "85"                        (2 digits)
//   addition-trace  "47+38=" -> "7+8=15,4+3+1=8:85"   (2 digits; SFT
//                   demonstrations slip on a carry at --task-slip-rate)
//   addition-trace-3  the same with 3-digit operands
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/packing.h"
#include "src/train/rl_environment.h"

namespace polaris {

std::vector<std::string> synthetic_task_names();
// `count` demonstrations: <bos> prompt (weight 0) then the target and <eos>
// (weight 1), from the training split, or with held_out from the held-out
// problems (the ones make_synthetic_environment evaluates on), e.g. for a
// validation loss.
std::vector<PackSequence> synthetic_sft_sequences(const std::string& task, size_t count,
                                                  bool held_out, double slip_rate,
                                                  uint64_t seed);
// train_size training problems and eval_size held-out ones, fixed by seed.
std::unique_ptr<RlEnvironment> make_synthetic_environment(const std::string& task,
                                                          size_t train_size, size_t eval_size,
                                                          uint64_t seed);

}  // namespace polaris
