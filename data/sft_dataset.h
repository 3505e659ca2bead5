// SFT dataset: conversations from JSONL, rendered to token ids and loss weights.
//
// Each line is one of
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
//       (an assistant message may also carry "reasoning_content": "...")
//   {"prompt": "...", "response": "..."}   (optionally "system": "...")
// and must contain at least one assistant message (else nothing is trained).
// Bad lines are Errors "FILE:LINE: problem" (see jsonl_reader.h), or skipped
// and counted with skip_bad.
//
// tokenize_sft renders each conversation with the chat format (chat.h) and
// turns the assistant mask into per-token loss weights, ready for
// pack_sequences (packing.h).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "data/chat.h"
#include "data/packing.h"
#include "data/tokenizer.h"

namespace polaris {

struct SftExample {
  std::vector<ChatMessage> messages;
  size_t line = 0;  // line in the file, for messages
};

struct SftDataset {
  std::string path;
  std::vector<SftExample> examples;
  size_t skipped_lines = 0;

  static SftDataset load(const std::string& path, bool skip_bad = false);
};

// One PackSequence per example: ids of the rendered chat, weights 1.0 on the
// assistant tokens (mask) and 0.0 elsewhere.
std::vector<PackSequence> tokenize_sft(const Tokenizer& tokenizer, const SftDataset& dataset);

}  // namespace polaris
