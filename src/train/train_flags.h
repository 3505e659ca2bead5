// polaris_train's flags, each declared once (train_flags.cpp): parsing,
// --help, the per-mode checks, the cross-rank check and the resume check
// all read this table. Adding a flag is adding a row (and reading it where
// the run uses it, in src/train/options.cpp or GrpoOptions::from_flags).
#pragma once
#include <string>
#include <vector>

#include "src/common/cli.h"

namespace polaris {

// FlagSpec::scope bits: the modes that read a flag, and what else it needs.
enum TrainScope : unsigned {
  kPretrain = 1,
  kSft = 2,
  kGrpo = 4,
  kAnyMode = kPretrain | kSft | kGrpo,
  kTaskOnly = 8,     // read only with a built-in --task
  kDataOnly = 16,    // read only without one (the task is the data)
  kValidation = 32,  // read only when there is a validation set
};

// FlagSpec::checks bits.
enum TrainCheck : unsigned {
  kSameOnRanks = 1,   // every mpirun rank must be given the same value
  kSameOnResume = 2,  // --resume must be given the value the checkpoint was saved with
  // Every rank must be given the same input: the same sizes and contents of
  // the files the value names (or the same value when it names no file), not
  // the same path (data/input_fingerprint.h).
  kSameInput = 4,
};

const std::vector<FlagSpec>& train_flag_table();

// Errors for flags the run would ignore: "--group-size does not apply to
// --mode sft", "--train-examples applies only with a built-in --task", ...
void reject_foreign_flags(const Flags& flags, const std::string& mode);

// polaris_train --help: the usage lines and one line per flag with its modes.
std::string train_usage();

}  // namespace polaris
