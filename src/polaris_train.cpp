// polaris_train: pre-train, fine-tune (SFT) or RL-post-train (GRPO) a model.
//
//   polaris_train                      the built-in default: a tiny model learns addition
//   polaris_train model.bin --data 'shards/train_*.bin' --val-data 'shards/val_*.bin' ...
//   polaris_train --init qwen3-tiny --data ...
//   polaris_train model.bin --mode sft  --data chat.jsonl --tokenizer tokenizer.json
//   polaris_train model.bin --mode grpo --data problems.jsonl --tokenizer tokenizer.json
// Flags: src/train/train_flags.cpp (--help), README.md "polaris_train".
#include <cstdio>

#include "optim/watchdog.h"
#include "src/common/cli.h"
#include "src/common/threads.h"
#include "src/train/loops.h"
#include "src/train/train_flags.h"

int main(int argc, char** argv) {
  polaris::configure_openmp(argv);  // first: before the OpenMP runtime reads its settings
  if (polaris::wants_help(argc, argv)) {
    std::fputs(polaris::train_usage().c_str(), stdout);
    return 0;
  }
  return polaris::run_main([&] {
    if (argc == 1) return polaris::run_builtin_demo();
    polaris::TrainOptions options = polaris::parse_train_options(argc, argv);
    polaris::Watchdog watchdog(options.rank_timeout);
    if (options.mode == "sft") return polaris::run_sft(options);
    if (options.mode == "grpo") return polaris::run_grpo(options);
    return polaris::run_pretrain(options);
  });
}
