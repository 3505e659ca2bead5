// RL dataset: prompts with verifiable answers, from JSONL.
//
// Each line is an object with
//   "problem" or "prompt"  string, the question shown to the model
//   "answer"               string or number (the math reference), and/or
//   "numbers" (or "nums") + "target"   integers, for Countdown
//   "kind"                 optional: "math" or "countdown"; when absent,
//                          countdown if numbers and target are present, else math
//   "pass_rate"            optional number in [0, 1] (how often a reference
//                          model solves it; used to filter/curriculum)
// Other fields are kept untouched in `record`. Bad lines are Errors
// "FILE:LINE: problem" (see jsonl_reader.h), or skipped and counted with skip_bad.
//
// `reference` is what verify(kind, response, reference) expects (verifier.h):
// the answer for math, {"numbers": [...], "target": N} for Countdown.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/chat.h"

namespace polaris {

struct RlExample {
  std::string prompt;
  std::string kind;           // "math" or "countdown"
  nlohmann::json reference;   // passed to verify()
  std::optional<double> pass_rate;
  nlohmann::json record;      // the whole line, extra fields included
  size_t line = 0;
};

struct RlDataset {
  std::string path;
  std::vector<RlExample> examples;
  size_t skipped_lines = 0;

  static RlDataset load(const std::string& path, bool skip_bad = false);
};

// The conversation to sample from: an optional system message, then the prompt
// as the user's message. Render it with render_generation_prompt (chat.h).
std::vector<ChatMessage> rl_prompt_messages(const RlExample& example,
                                            const std::string& system_prompt = "");

}  // namespace polaris
