// polaris_train's options: every flag, its default, and the checks that
// turn a bad value into one line naming the flag.
#pragma once
#include "model/transformer.h"
#include <cstdint>
#include <memory>
#include <string>

#include "model/model_file.h"
#include "optim/comm.h"
#include "src/common/cli.h"
#include "src/train/trainer.h"

namespace polaris {

struct TrainOptions {
  std::string model_path;      // positional model.bin (or empty with --init)
  std::string init_preset;     // --init PRESET: a fresh random model
  std::string mode = "pretrain";
  std::string data, val_data;  // token shard patterns (pretrain) or JSONL (sft, grpo)
  std::string tokenizer;       // tokenizer.json (sft, grpo; pretrain: checked against the shards)
  // The tokenizer the run's token ids must come from (data/tokenizer_id.h):
  // --tokenizer's, else the one the model file records (unrecorded: neither).
  // Checked against the shards' record, and written into --out.
  TokenizerId tokenizer_id;
  std::string tokenizer_source;  // "--tokenizer PATH" or "the model file PATH's tokenizer"
  std::string backend = "cpu";      // resolved: "cpu" or "cuda" (--backend auto picks)
  Recompute recompute = Recompute::none;
  std::string attention = "flash";  // --attention: the CUDA backend's kernels
  std::string log_path, out_path;
  int steps = 100, batch = 8, seq = 256, grad_accum = 1;
  int val_every = 100, val_batches = 8, print_every = 1;
  uint64_t seed = 1337;
  // --rank-timeout: seconds without progress on every rank before the
  // watchdog ends a multi-rank job (optim/watchdog.h); 0 disables it.
  double rank_timeout = 600;
  TrainerOptions trainer;
  // Every flag as given, for the mode-specific ones (SFT and GRPO read theirs).
  std::shared_ptr<const Flags> flags;
  // Data-parallel ranks (--comm; never null). trainer.comm points at it.
  std::shared_ptr<Comm> comm;
  int rank() const { return comm ? comm->rank() : 0; }
  int world_size() const { return comm ? comm->world_size() : 1; }
};

// Parses argv (after the program name). Throws Error on an unknown flag or
// a bad value; --comm nccl (which needs the CUDA backend, not in this build)
// ends in a line saying so.
//
// One flag set serves every mode, so once --mode is known a flag the run
// would ignore is an error naming it ("--group-size does not apply to --mode
// sft"): the GRPO flags (--prompts-per-step ... --no-std-normalize) outside
// grpo; --seq, --grad-accum, --val-data, --val-every, --val-batches and
// --task-slip-rate in grpo; --task, --task-slip-rate, --train-examples
// and --skip-bad in pretrain. --tokenizer must be the tokenizer the model
// file records, when it records one. With a built-in --task, --data,
// --tokenizer, --val-data, --skip-bad, --eval-data, --system-prompt and
// --max-prompt do not apply; without one, --task-slip-rate, --train-examples
// and --eval-problems do not.
//
// It also sets up data parallelism: --comm (default mpi when started by
// mpirun, none otherwise) makes the Comm (MPI_Init happens here), checks that
// every rank was given the same --steps, --batch, --seq, --grad-accum, --lr,
// --zero, --seed and --rank-timeout, and the same inputs (the model file,
// --init, --data, --val-data, --tokenizer, --eval-data, --pass-rates, --task,
// --system-prompt: a fingerprint of their contents, data/input_fingerprint.h),
// and on ranks other than 0 sends stdout to /dev/null and
// drops --log and --out: only rank 0 prints and writes files.
TrainOptions parse_train_options(int argc, char** argv);

// The model a run starts from: model.bin, or --init PRESET|config.json with
// --seed. starting_config reads only its shape (model.bin's header), so a run
// can check it fits in memory before allocating the weights.
ModelConfig starting_config(const TrainOptions& options);
LoadedModel starting_model(const TrainOptions& options);

}  // namespace polaris
