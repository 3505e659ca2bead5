// Checkpoints of a training run: --checkpoint-dir D [--checkpoint-every K]
// [--keep-last N] [--resume].
//
// With --checkpoint-dir a run always checkpoints at its end, and every K
// steps with --checkpoint-every K, whether it started fresh or resumed.
// --resume continues from D's newest checkpoint; on an empty (or missing)
// D it says so and starts from the beginning, writing checkpoints there, so
// one command line both starts a run and continues it after a crash.
//
// A checkpoint (checkpoint/checkpoint.h) holds the weights, every rank's
// AdamW moments (gathered to rank 0, stored per ZeRO shard), and the run
// state each loop needs to continue exactly: the step, the data order's
// position, GRPO's prompt order and sampling streams (and its frozen
// reference model as an extra tensor). On --resume the moments are
// re-sharded onto this run's ranks, so a run may resume with another
// number of processes or ZeRO stage; flags that change the math (--batch,
// --seq, --lr, ...) must match the checkpoint's, and so must the tokenizer
// the run's ids come from (recorded in state.json: data/tokenizer_id.h).
//
// Every rank calls save() and resume() (they are collective); rank 0 writes.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/train/options.h"
#include "src/train/trainer.h"

namespace polaris {

struct ResumedRun {
  std::string path;                                       // the checkpoint directory
  int step = 0;                                           // optimizer steps already taken
  nlohmann::json state;                                   // the loop's own state
  std::map<std::string, std::vector<float>> extra_tensors;
  // A number of the loop's state; Error naming state.json when it is absent.
  double number(const std::string& key) const;
};

class RunCheckpoints {
 public:
  explicit RunCheckpoints(const TrainOptions& options);
  bool enabled() const { return !dir_.empty(); }
  // After loop step `step` (1-based): is a checkpoint due?
  bool due(int step) const;
  // The tokenizer the run's ids come from, recorded in each checkpoint and
  // compared on --resume: options.tokenizer_id (--tokenizer's, or the model
  // file's) unless the loop knows better (pretraining with neither: the one
  // the shards record, source "--data PATTERN's tokenizer"). Call before resume().
  void use_tokenizer(const TokenizerId& id, const std::string& source);
  // That tokenizer; after resume(), the checkpoint's when the run had none.
  const TokenizerId& tokenizer() const { return tokenizer_; }
  // Collective. `loop_state` is the loop's position (data order, RNG...).
  void save(int step, const Transformer& model, Trainer& trainer, const nlohmann::json& loop_state,
            const std::map<std::string, std::vector<float>>& extra_tensors = {});
  // With --resume and a checkpoint in the directory: loads weights and
  // optimizer state into model and trainer and returns the loop's state.
  // Without --resume: nothing (and an Error if the directory already holds
  // a run, so a fresh run never mixes with an old one).
  std::optional<ResumedRun> resume(Transformer& model, Trainer& trainer);

 private:
  const TrainOptions& options_;
  std::string dir_;
  int every_ = 0, keep_last_ = 0;
  bool resume_ = false;
  TokenizerId tokenizer_;
  std::string tokenizer_source_;
};

}  // namespace polaris
