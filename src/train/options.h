// polaris_train's options: the typed settings a run reads, parsed from the
// flag table (src/train/train_flags.h), with the checks that turn a bad
// value into one line naming the flag.
#pragma once
#include "model/transformer.h"
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "model/model_file.h"
#include "optim/comm.h"
#include "src/common/cli.h"
#include "src/train/grpo.h"
#include "src/train/trainer.h"

namespace polaris {

// The run's settings, typed. Defaults live in the flag table
// (src/train/train_flags.cpp), not here: parse_train_options fills every field.
struct TrainOptions {
  std::string model_path;      // positional model.bin (or empty with --init)
  std::string init_preset;     // --init PRESET: a fresh random model
  std::string mode;
  std::string data, val_data;  // token shard patterns (pretrain) or JSONL (sft, grpo)
  std::string tokenizer;       // tokenizer.json (sft, grpo; pretrain: checked against the shards)
  // The tokenizer the run's token ids must come from (data/tokenizer_id.h):
  // --tokenizer's, else the one the model file records (unrecorded: neither).
  // Checked against the shards' record, and written into --out and the
  // checkpoints (pretraining with neither: the shards' record instead).
  TokenizerId tokenizer_id;
  std::string tokenizer_source;  // "--tokenizer PATH" or "the model file PATH's tokenizer"
  // A built-in --task instead of --data (sft, grpo) and its sizes.
  std::string task;
  int train_examples = 0, eval_problems = 0;
  double task_slip_rate = 0;
  bool skip_bad = false;
  std::string system_prompt, eval_data;  // grpo with JSONL
  int max_prompt = 0;
  std::string backend;         // resolved: "cpu" or "cuda" (--backend auto picks)
  Recompute recompute = Recompute::none;
  DecodeMode decode_mode = DecodeMode::recorded;  // --cuda-graphs
  std::string attention;       // --attention: the CUDA backend's kernels
  std::string log_path, out_path;
  int steps = 0, batch = 0, seq = 0, grad_accum = 0;
  int val_every = 0, val_batches = 0, print_every = 0;
  uint64_t seed = 0;
  // --rank-timeout: seconds without progress on every rank before the
  // watchdog ends a multi-rank job (optim/watchdog.h); 0 disables it.
  double rank_timeout = 0;
  TrainerOptions trainer;
  GrpoOptions grpo;            // --mode grpo
  // Checkpoints (src/train/run_checkpoint.h).
  std::string checkpoint_dir;
  int checkpoint_every = 0, keep_last = 0;
  bool resume = false;
  // The value of each flag a resumed run must share with its checkpoint
  // (kSameOnResume), in Flags::canonical spelling, plus "global-batch"
  // (--batch x ranks) and the effective --warmup-steps.
  std::map<std::string, std::string> resume_identity;
  // Data-parallel ranks (--comm; never null). trainer.comm points at it.
  std::shared_ptr<Comm> comm;
  int rank() const { return comm ? comm->rank() : 0; }
  int world_size() const { return comm ? comm->world_size() : 1; }
};

// Parses argv (after the program name) against train_flag_table()
// (src/train/train_flags.h). Throws Error on an unknown flag, a bad value,
// or a flag the run would ignore ("--group-size does not apply to --mode
// sft"). --tokenizer must be the tokenizer the model file records, when it
// records one.
//
// It also sets up data parallelism: --comm (default under mpirun: nccl with
// --backend cuda in a build with NCCL, else mpi; none otherwise) makes the
// Comm (MPI_Init happens here), checks that every rank was given the same
// value of each kSameOnRanks flag and the same inputs (the model file,
// --init, --data, --val-data, --tokenizer, --eval-data, --pass-rates, --task,
// --system-prompt: a fingerprint of their contents,
// data/input_fingerprint.h), and on ranks other than 0 sends stdout to
// /dev/null and drops --log and --out: only rank 0 prints and writes files.
TrainOptions parse_train_options(int argc, char** argv);
// On ranks other than 0: stdout to /dev/null (errors still reach stderr).
void silence_other_ranks(const Comm& comm);

// The model a run starts from: model.bin, or --init PRESET|config.json with
// --seed. starting_config reads only its shape (model.bin's header), so a run
// can check it fits in memory before allocating the weights.
ModelConfig starting_config(const TrainOptions& options);
// How error lines name that model: its path, or "--init PRESET".
std::string starting_model_name(const TrainOptions& options);
// The error line for a token id past the model's vocabulary, found at
// `where` (a file, FILE:LINE): names the model and, when the ids came
// through --tokenizer, the tokenizer that does not match it.
std::string outside_vocabulary(const TrainOptions& options, const std::string& where, int64_t id,
                               int vocab_size);
LoadedModel starting_model(const TrainOptions& options);

}  // namespace polaris
