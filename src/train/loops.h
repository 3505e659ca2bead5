// The training loops polaris_train runs, one per --mode, plus the built-in
// default it runs with no arguments.
#pragma once
#include "src/train/options.h"
#include "src/train/trainer.h"

namespace polaris {

int run_pretrain(const TrainOptions& options);     // token shards (src/train/pretrain.cpp)
int run_sft(const TrainOptions& options);          // chat JSONL (src/train/sft.cpp)
int run_grpo(const TrainOptions& options);         // RL JSONL + verifier (src/train/grpo.cpp)
int run_builtin_demo();                            // src/train/builtin_demo.cpp

// Before the first step: --recompute, and on a device backend or with data
// parallelism the memory report per rank (weights, master, gradients and
// moments as ZeRO shards them, activations).
void start_run(const TrainOptions& options, Transformer& model);
// After the last: the backend's peak memory (where it tracks one) and the
// trained weights to --out when given (fp32 model.bin: the master, whose
// ZeRO shards the trainer gathers; every rank calls it).
void finish_run(const TrainOptions& options, const Transformer& model, Trainer& trainer);

}  // namespace polaris
