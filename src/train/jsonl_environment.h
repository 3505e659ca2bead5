// The RL environment of real tasks: JSONL problems (data/rl_dataset.h) shown
// to the model in Qwen3's chat format (data/chat.h) and scored by the
// verifiers (data/verifier.h).
//
//   prompt(i)   render_generation_prompt(rl_prompt_messages(example, system_prompt),
//               enable_thinking), tokenized once when the environment is built
//   score(i, c) decode c (a trailing stop token dropped), verify(kind, text,
//               reference, verify options): reward, correct, format_ok and the
//               extracted answer
//   stop tokens <|im_end|> and <|endoftext|>, those the tokenizer has
//   pass_rate   the record's "pass_rate", or the --pass-rates file's entry for
//               its line (read_pass_rates), which wins when both exist
//
// Prompts longer than max_prompt_tokens are dropped (and counted, with a line on
// stdout). Completions may hold ids the tokenizer has no token for (a model's
// vocabulary is often padded past the tokenizer's): they decode to nothing.
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/rl_dataset.h"
#include "data/tokenizer.h"
#include "data/verifier.h"
#include "src/train/rl_environment.h"

namespace polaris {

struct JsonlEnvironmentOptions {
  std::string system_prompt;   // "" = no system message
  bool enable_thinking = true;  // false: the prompt pre-closes an empty think block
  bool skip_bad = false;        // skip and count malformed JSONL lines
  VerifyOptions verify;
  int max_prompt_tokens = 0;    // 0 = no limit; longer prompts are dropped
  std::string pass_rates_path;  // "" = none; else read_pass_rates(path), by train line
  bool quiet = false;           // no summary lines on stdout
};

class JsonlEnvironment : public RlEnvironment {
 public:
  // eval_jsonl may be empty: then the Eval split is the Train split.
  // Throws Error "FILE:LINE: ..." on a bad record (unless skip_bad) and when
  // no prompt is left after the length filter.
  JsonlEnvironment(const Tokenizer& tokenizer, const std::string& train_jsonl,
                   const std::string& eval_jsonl, const JsonlEnvironmentOptions& options);

  std::string name() const override;
  std::string where(Split split, size_t index) const override;
  size_t size(Split split) const override;
  std::vector<int32_t> prompt(Split split, size_t index) const override;
  Score score(Split split, size_t index, const std::vector<int32_t>& completion) const override;
  std::vector<int32_t> stop_tokens() const override { return stop_tokens_; }
  std::string decode(const std::vector<int32_t>& completion) const override;
  std::string prompt_text(Split split, size_t index) const override;
  std::optional<double> pass_rate(size_t train_index) const override;

  // The record behind a problem (its line in the file, kind, reference).
  const RlExample& example(Split split, size_t index) const;
  const std::string& path(Split split) const;
  // Lines dropped: malformed (skip_bad) and over max_prompt_tokens.
  size_t skipped_lines(Split split) const;
  size_t dropped_long(Split split) const;
  const JsonlEnvironmentOptions& options() const { return options_; }

 private:
  struct Problems {
    std::string path;
    std::vector<RlExample> examples;
    std::vector<std::vector<int32_t>> prompts;
    size_t skipped = 0, dropped_long = 0;
  };
  Problems load(const std::string& path) const;
  const Problems& problems(Split split) const;
  const RlExample& checked(Split split, size_t index) const;
  // The completion without a trailing stop token and ids with no token.
  std::string completion_text(const std::vector<int32_t>& completion, bool drop_stop) const;

  Tokenizer tokenizer_;  // copies share one immutable state
  JsonlEnvironmentOptions options_;
  std::vector<int32_t> stop_tokens_;
  Problems train_;
  std::unique_ptr<Problems> eval_;  // null: Eval = Train
  std::map<size_t, double> pass_rates_;
};

std::unique_ptr<RlEnvironment> make_jsonl_environment(const Tokenizer& tokenizer,
                                                      const std::string& train_jsonl,
                                                      const std::string& eval_jsonl,
                                                      const JsonlEnvironmentOptions& options);

// Offline difficulty: polaris_eval --pass-rates writes one JSON object per line,
//   {"line": L, "pass_rate": x}
// L the problem's line in its data file (from 1), x in [0, 1]. Returns line ->
// pass rate. Errors "FILE:LINE: problem": malformed JSON, a missing or bad
// field, a line number given twice; an unreadable or empty file.
std::map<size_t, double> read_pass_rates(const std::string& path);

}  // namespace polaris
