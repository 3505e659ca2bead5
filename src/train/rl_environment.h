// RlEnvironment: what GRPO and evaluation need from a task.
//
// A task is a list of problems split into a training and an evaluation set.
// For each it gives the prompt as token ids and scores a sampled completion
// (the generated token ids, the stop token included) with a verifier. Two
// implementations:
//   JSONL problems + tokenizer + Qwen3 chat format + data/verifier.h
//     (src/train/jsonl_environment.cpp)
//   built-in synthetic tasks with a character vocabulary, for demos and tests
//     (src/train/synthetic_environment.cpp)
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/packing.h"

namespace polaris {

struct Score {
  double reward = 0;       // what the policy gradient uses
  bool correct = false;    // the final answer is right (accuracy, avg@k, pass@k)
  bool format_ok = false;
  std::string answer;      // the extracted answer ("" when none)
};

enum class Split { Train, Eval };

class RlEnvironment {
 public:
  virtual ~RlEnvironment() = default;
  virtual std::string name() const = 0;
  // Where a problem comes from, for error lines: "FILE:LINE", "--task NAME".
  virtual std::string where(Split split, size_t index) const = 0;
  virtual size_t size(Split split) const = 0;
  virtual std::vector<int32_t> prompt(Split split, size_t index) const = 0;
  virtual Score score(Split split, size_t index, const std::vector<int32_t>& completion) const = 0;
  // Tokens that end a completion (e.g. <|im_end|>, <eos>).
  virtual std::vector<int32_t> stop_tokens() const = 0;
  // Decoded completion text (logs, --keep-correct).
  virtual std::string decode(const std::vector<int32_t>& completion) const = 0;
  // Prompt text as a user would read it (logs, --keep-correct).
  virtual std::string prompt_text(Split split, size_t index) const = 0;
  // Known pass rate of a training problem (from the data file), if any.
  virtual std::optional<double> pass_rate(size_t train_index) const { return std::nullopt; }
};

}  // namespace polaris
