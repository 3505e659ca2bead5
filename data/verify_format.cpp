// Format reward: the response thinks once, first, then answers.
//
//   [whitespace] <think> reasoning </think> answer
//
// Exactly one "<think>" and one "</think>", the block at the start, and an
// answer with at least one non-whitespace byte after it. Rewarding this shape
// early in RL keeps the model from drifting into answers without reasoning or
// into reasoning that never ends.
#include <cctype>

#include "data/verifier.h"

namespace polaris {

static size_t count_occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) count++;
  return count;
}

static bool is_blank(const std::string& text) {
  for (unsigned char c : text)
    if (!std::isspace(c)) return false;
  return true;
}

bool check_format(const std::string& response) {
  if (count_occurrences(response, "<think>") != 1 || count_occurrences(response, "</think>") != 1)
    return false;
  size_t first = 0;
  while (first < response.size() && std::isspace(static_cast<unsigned char>(response[first]))) first++;
  if (response.compare(first, 7, "<think>") != 0) return false;
  size_t close = response.find("</think>");
  if (close < first) return false;
  return !is_blank(response.substr(close + 8));
}

VerifierResult verify_format(const std::string& response) {
  VerifierResult result;
  result.format_ok = check_format(response);
  result.correct = result.format_ok;
  result.reward = result.format_ok ? 1.0 : 0.0;
  result.extracted = answer_region(response);
  return result;
}

}  // namespace polaris
