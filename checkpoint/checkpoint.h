// Checkpoints: the model, the optimizer (one shard per ZeRO rank, or one for
// the whole buffer), the run state and extra tensors, in one directory per step.
//
//   DIR/step_00000123/model.h5      "params" fp32 [total], the config as root
//                                   attributes, "tensors/<name>" {offset, shape}
//   DIR/step_00000123/optimizer.h5  "shard_<i>" groups {begin, end, step} with m, v
//   DIR/step_00000123/state.json    the run state (human-readable), and the
//                                   tokenizer the run's ids came from, when
//                                   known: "tokenizer": {"vocab_size": 512,
//                                   "sha256": "<64 hex>"} (data/tokenizer_id.h)
//   DIR/step_00000123/extra.h5      one fp32 dataset per extra tensor
//   DIR/step_00000123/manifest.json every other file's name, size and SHA-256,
//                                   written last; verified before HDF5 opens any file
//   DIR/latest                      "step_00000123\n", the newest complete one
//
// Writes are crash-safe: everything goes into DIR/step_00000123.tmp/, each file
// is fsynced, manifest.json is written over them, the directory is renamed into
// place, and only then is DIR/latest replaced (tmp + rename). A crash leaves at
// worst a *.tmp directory, which readers ignore and the next write removes (or,
// while an existing step is being rewritten, its *.old copy, which
// latest_checkpoint falls back to).
// See checkpoint/README.md.
#pragma once
#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "data/tokenizer_id.h"
#include "model/config.h"

namespace polaris {

// AdamW's state for the range [begin, end) of the flat buffer (AdamW::step_count,
// AdamW::moments_host(0) and (1)); m and v hold end - begin values each.
struct OptimizerShard {
  size_t begin = 0, end = 0;
  int step = 0;
  std::vector<float> m, v;
};

struct Checkpoint {
  ModelConfig config;
  std::vector<float> params;              // the full flat buffer, fp32
  std::vector<OptimizerShard> optimizer;  // one per rank (ZeRO) or one for the whole buffer
  nlohmann::json state;                   // run state: step, mode, data/sampler positions, RNG, ...
  std::map<std::string, std::vector<float>> extra_tensors;  // e.g. "reference_params" (GRPO)
  // The tokenizer that made the run's token ids; unrecorded when the run had
  // none (a built-in task) or the checkpoint predates the record.
  TokenizerId tokenizer;
};

// The directory name of a step: "step_00000123".
std::string checkpoint_name(int step);

// Writes DIR/step_<step>/ atomically, points DIR/latest at it, then prunes the
// older step directories to the keep_last newest (keep_last <= 0 keeps all; the
// one just written is always kept). Validates the checkpoint first (config,
// params size, shard ranges and moment sizes). Error naming the file on failure.
void write_checkpoint(const std::string& dir, int step, const Checkpoint& checkpoint,
                      int keep_last);

// The path of the checkpoint DIR/latest names, or, when there is no DIR/latest,
// of the newest complete step directory; "" when there is none (or no DIR).
// When DIR/latest names a missing directory (a crash while a step was being
// rewritten), its complete "<name>.old" copy, else the newest complete step
// directory. Error when DIR/latest names an incomplete directory, or a missing
// one with neither fallback.
std::string latest_checkpoint(const std::string& dir);

// Verifies a step directory against its manifest.json before anything else
// reads it: every file in the directory is listed, every listed file exists
// with the listed size and SHA-256. Only file reads, never HDF5 (a corrupt
// HDF5 file can crash the library). Error naming the file on a mismatch;
// false (nothing checked) when there is no manifest.json (an older build's
// checkpoint, which readers accept with a one-line warning on stdout).
bool verify_checkpoint(const std::string& path);

// Writes PATH/manifest.json over the other files of PATH (write_checkpoint
// does this last, before the atomic rename). Exposed for tests and tools.
void write_checkpoint_manifest(const std::string& path);

// latest_checkpoint(dir), verified; when it fails verification (or DIR/latest
// names a step directory that lacks a file), the newest older step directory
// that is complete and verifies. Each checkpoint passed over is appended to
// *skipped (when given) as "step_N: <why>". "" when dir holds no checkpoint;
// Error (the newest one's problem) when none verifies.
std::string latest_verified_checkpoint(const std::string& dir, std::vector<std::string>* skipped);

// Reads and checks a step directory. With verify (the default), the manifest
// first (verify_checkpoint; a checkpoint without one is read after a warning).
// Each problem is one Error line naming the file: size or checksum mismatch,
// file not listed or listed but missing, missing file, unreadable/truncated
// HDF5, missing dataset or attribute, wrong shape or dtype, config
// inconsistent with the params or tensor table, shard outside the buffer,
// non-finite weights (naming the tensor), invalid JSON.
Checkpoint read_checkpoint(const std::string& path, bool verify = true);

// A step directory's state.json (read_checkpoint's last part): bounded JSON,
// an object whose run fields have their types and ranges. Error naming the file.
nlohmann::json read_checkpoint_state(const std::string& file);

// The tokenizer record of a state.json read by read_checkpoint_state
// (unrecorded when it has none). Error naming `file` when it is malformed.
TokenizerId checkpoint_state_tokenizer(const nlohmann::json& state, const std::string& file);

// Re-partitions optimizer shards onto new contiguous ranges (e.g. a run saved
// with 2 ZeRO ranks resumed on 3). `from` must tile one contiguous span (any
// order), every target range must lie inside it, and all steps must agree.
std::vector<OptimizerShard> reshard(const std::vector<OptimizerShard>& from,
                                    const std::vector<std::pair<size_t, size_t>>& to_ranges);

}  // namespace polaris
